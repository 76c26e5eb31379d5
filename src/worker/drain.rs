//! Draining a worker for a rolling deploy: its listener is closed already (no new
//! connection reaches it); every client is told to reconnect elsewhere, spread evenly
//! over `--drain-window` so that the herd does not land on the next node at once.
//!
//! Who is told what:
//! - the app first (`App::on_drain`): a Socket.IO polling session is closed the way the
//!   official client treats as a transport loss (an Engine.IO `1`), never with a
//!   Socket.IO DISCONNECT, after which the client would not reconnect;
//! - an open WebSocket the app leaves to the worker gets close 1001 "going away"
//!   (a Socket.IO client reconnects after it too: a transport close);
//! - a mailbox the app leaves to the worker is closed.
//!
//! Polling sessions are told at once, when the drain starts: the listener is closed,
//! so every request a polling client makes on a new TCP connection (the official Node
//! client makes one per request) reaches the next server, which knows no such session
//! and answers 400 (without a Redis bridge to forward it); the sooner the close packet
//! is out, the fewer such requests there are. The WebSockets open when the drain starts
//! are told in slab order, connection `k` of `n` at `window * k / n`. Once the last is told, a last pass ends everything left:
//! sessions made since, idle kept-alive connections and held requests.
//!
//! Invariant: each connection is told at most once per pass; the drain never allocates
//! per connection beyond the one list of ids taken at its start.

use std::time::{Duration, Instant};

use crate::metrics::CloseReason;
use crate::runtime::ConnId;
use crate::ws::CloseCode;

use super::conn::{MAILBOX, Phase};
use super::{App, Conns, Core};

/// A drain in progress.
pub(super) struct Drain {
    queue: Vec<ConnId>,
    told: usize,
    /// The polling sessions told at the start: the last pass waits for them (each ends
    /// when a GET takes its close packet) until the window is over.
    polling: Vec<ConnId>,
    started: Instant,
    window: Duration,
    last_pass_done: bool,
}

impl Drain {
    /// How many of `total` connections are due by `elapsed` into `window`.
    fn due(total: usize, elapsed: Duration, window: Duration) -> usize {
        if window.is_zero() || elapsed >= window {
            return total;
        }
        let share = total as u128 * elapsed.as_nanos() / window.as_nanos();
        (share as usize + 1).min(total)
    }
}

impl<A: App> Core<A> {
    /// Starts a drain over `window`: takes the list of connections to tell.
    pub(super) fn begin_drain(&mut self, window: Duration, now: Instant) {
        self.draining = true;
        let id = |(slot, c): (usize, &super::conn::Conn)| ConnId {
            slot: slot as u32,
            generation: c.generation,
        };
        let mailboxes: Vec<ConnId> = self
            .hub
            .conns
            .iter()
            .filter(|(_, c)| c.has(MAILBOX))
            .map(id)
            .collect();
        let queue = self
            .hub
            .conns
            .iter()
            .filter(|(_, c)| !c.has(MAILBOX) && matches!(c.phase, Phase::Open(_)))
            .map(id)
            .collect();
        for &mailbox in &mailboxes {
            self.send_away(mailbox, false);
        }
        self.drain = Some(Drain {
            queue,
            told: 0,
            polling: mailboxes,
            started: now,
            window,
            last_pass_done: false,
        });
    }

    /// Tells the connections due by `now`; the last pass once all are told.
    pub(super) fn drain_step(&mut self, now: Instant) {
        let Some(drain) = self.drain.as_mut() else {
            return;
        };
        let elapsed = now.saturating_duration_since(drain.started);
        let due = Drain::due(drain.queue.len(), elapsed, drain.window);
        let told = std::mem::replace(&mut drain.told, due);
        let batch: Vec<ConnId> = drain.queue[told..due].to_vec();
        let conns = &self.hub.conns;
        drain.polling.retain(|id| {
            conns
                .get(id.slot as usize)
                .is_some_and(|c| c.generation == id.generation)
        });
        let polling_done = drain.polling.is_empty() || elapsed >= drain.window;
        let last = due == drain.queue.len() && polling_done && !drain.last_pass_done;
        if last {
            drain.last_pass_done = true;
            drain.queue = Vec::new();
            drain.told = 0;
        }
        for id in batch {
            self.send_away(id, false);
        }
        if last {
            let all: Vec<ConnId> = self
                .hub
                .conns
                .iter()
                .map(|(slot, c)| ConnId {
                    slot: slot as u32,
                    generation: c.generation,
                })
                .collect();
            for id in all {
                self.send_away(id, true);
            }
        }
    }

    /// Tells one connection to go; `last`: the window is over, end it now.
    fn send_away(&mut self, id: ConnId, last: bool) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let mailbox = conn.has(MAILBOX);
        let open = matches!(conn.phase, Phase::Open(_));
        let idle = matches!(conn.phase, Phase::Handshake(_) | Phase::Held);
        if (mailbox || open)
            && self
                .app
                .on_drain(&mut Conns { hub: &mut self.hub }, id, last)
        {
            return;
        }
        if mailbox {
            self.doomed.push(id);
        } else if open {
            self.hub.metrics.closed(CloseReason::Shutdown).inc();
            self.begin_close(id.slot as usize, CloseCode::GOING_AWAY, "server going away");
        } else if idle && last {
            self.doomed.push(id);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connections_are_due_evenly_over_the_window() {
        let w = Duration::from_secs(10);
        assert_eq!(Drain::due(100, Duration::ZERO, w), 1);
        assert_eq!(Drain::due(100, Duration::from_secs(5), w), 51);
        assert_eq!(Drain::due(100, Duration::from_millis(9_999), w), 100);
        assert_eq!(Drain::due(100, w, w), 100);
        assert_eq!(Drain::due(0, Duration::ZERO, w), 0);
        assert_eq!(Drain::due(1, Duration::ZERO, w), 1);
        // No window: everyone at once.
        assert_eq!(Drain::due(100, Duration::ZERO, Duration::ZERO), 100);
    }
}
