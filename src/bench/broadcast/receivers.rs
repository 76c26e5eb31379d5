//! The receiver threads of `throng bench broadcast`: each serves a [`Fleet`] of
//! receiving clients, answers the coordinator's commands ([`Cmd`] in, [`Reply`] out)
//! and publishes its progress in atomics ([`Progress`]).
//!
//! Invariants: a receiver only checks that a frame is text and starts with
//! `{"type":"broadcast",` and counts it; counters are reset only on [`Cmd::Step`], which
//! the coordinator sends while no broadcast is in flight, and the reset is published
//! before it is confirmed; a thread stops on [`Cmd::Stop`] or when the coordinator is
//! gone, so it never outlives the run.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use mio::Waker;

use crate::bench::fleet::{Counts, Fleet};
use crate::bench::json::is_broadcast;
use crate::bench::report::Target;
use crate::bench::sio::ClientProto;
use crate::ws::CloseCode;
use crate::ws::reader::{Payload, Visitor};

/// What the coordinator asks of a receiver thread.
#[derive(Debug)]
pub(super) enum Cmd {
    /// Open connections until this many have been started.
    Grow(usize),
    /// Reset every counter; each client must now receive this many broadcasts.
    Step(u64),
    /// Report the step's deliveries.
    Tally,
    Stop,
}

/// A receiver thread's answers.
#[derive(Debug)]
pub(super) enum Reply {
    StepReady,
    Tally(Tally),
}

/// A step's deliveries as one thread (or, summed, the run) counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub(super) struct Tally {
    /// Broadcasts a client should have received and did not.
    pub(super) missing: u64,
    /// Broadcasts a client received beyond the step's count.
    pub(super) extra: u64,
    /// Frames that were no broadcast (or not text).
    pub(super) unexpected: u64,
}

impl Tally {
    /// Accounts for one client that received `count` of `expect`.
    pub(super) fn client(&mut self, count: u64, expect: u64) {
        self.missing += expect.saturating_sub(count);
        self.extra += count.saturating_sub(expect);
    }

    pub(super) fn add(&mut self, o: Tally) {
        self.missing += o.missing;
        self.extra += o.extra;
        self.unexpected += o.unexpected;
    }

    pub(super) fn clean(&self) -> bool {
        *self == Tally::default()
    }
}

/// A receiver thread's progress, read by the coordinator.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Handshakes finished or failed.
    pub(super) settled: AtomicUsize,
    /// Connections open now.
    pub(super) open: AtomicUsize,
    /// Connects failed plus open connections lost.
    pub(super) failed: AtomicUsize,
    /// Open clients that received the whole step.
    pub(super) complete: AtomicUsize,
}

impl Progress {
    fn publish(&self, counts: &Counts, complete: usize) {
        self.settled
            .store(counts.opened + counts.connect_failed, Ordering::Relaxed);
        self.open.store(counts.open(), Ordering::Relaxed);
        self.failed
            .store(counts.connect_failed + counts.lost, Ordering::Relaxed);
        self.complete.store(complete, Ordering::Relaxed);
    }
}

/// Counts one receiver's broadcasts.
struct Count<'a> {
    wire: ClientProto,
    count: &'a mut u64,
    expect: u64,
    complete: &'a mut usize,
    unexpected: &'a mut u64,
}

impl Visitor for Count<'_> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        if !text || !is_broadcast(self.wire, payload.as_slice()) {
            *self.unexpected += 1;
            return;
        }
        *self.count += 1;
        if *self.count == self.expect {
            *self.complete += 1;
        }
    }
    fn ping(&mut self, _: &[u8]) {}
    fn pong(&mut self, _: &[u8]) {}
    fn close(&mut self, _: Option<CloseCode>, _: &str) {}
}

/// A receiver thread: serves its fleet and answers commands until `Stop` (or until the
/// coordinator is gone).
fn receive(
    wire: ClientProto,
    mut fleet: Fleet<u64>,
    cmds: Receiver<Cmd>,
    replies: Sender<Reply>,
    progress: Arc<Progress>,
) -> io::Result<Counts> {
    let mut wanted = 0;
    // No step yet: nothing is expected, nothing completes.
    let mut expect = u64::MAX;
    let mut complete = 0usize;
    let mut unexpected = 0u64;
    let mut dropped = Tally::default();
    let mut next_sweep = Instant::now();
    loop {
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Grow(n)) => wanted = n,
                Ok(Cmd::Step(e)) => {
                    expect = e;
                    fleet.each_open(|_, count, _| *count = 0);
                    complete = 0;
                    unexpected = 0;
                    dropped = Tally::default();
                    // Before the reply: the coordinator must not see the last step's count.
                    progress.publish(&fleet.counts, complete);
                    let _ = replies.send(Reply::StepReady);
                }
                Ok(Cmd::Tally) => {
                    let mut t = dropped;
                    t.unexpected += unexpected;
                    fleet.each_open(|_, count, _| t.client(*count, expect));
                    let _ = replies.send(Reply::Tally(t));
                }
                Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => return Ok(fleet.counts),
                Err(TryRecvError::Empty) => break,
            }
        }
        fleet.dial(wanted, || 0);
        fleet.turn(Duration::from_millis(100), |client, count, scratch, rng| {
            let mut v = Count {
                wire,
                count,
                expect,
                complete: &mut complete,
                unexpected: &mut unexpected,
            };
            client.read(scratch, rng, &mut v)
        })?;
        for (count, was_open) in fleet.take_dropped() {
            if was_open && expect != u64::MAX {
                dropped.client(count, expect);
                if count >= expect {
                    complete -= 1;
                }
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + Duration::from_millis(250);
            fleet.expire(now);
        }
        progress.publish(&fleet.counts, complete);
    }
}

/// The coordinator's handle on a receiver thread.
pub(super) struct Receivers {
    cmds: Sender<Cmd>,
    waker: Waker,
    pub(super) progress: Arc<Progress>,
    pub(super) handle: JoinHandle<io::Result<Counts>>,
}

impl Receivers {
    /// Starts receiver thread `index` for `target`; its replies go to `replies`.
    pub(super) fn spawn(
        index: usize,
        target: &Target,
        sources: usize,
        replies: &Sender<Reply>,
    ) -> Result<Receivers, String> {
        let fleet: Fleet<u64> =
            Fleet::new(target.clone(), sources, index as u64 + 1).map_err(|e| e.to_string())?;
        let waker = fleet.waker().map_err(|e| e.to_string())?;
        let (cmds, cmd_rx) = mpsc::channel();
        let progress = Arc::new(Progress::default());
        let (p, r, wire) = (progress.clone(), replies.clone(), target.proto);
        let handle = thread::Builder::new()
            .name(format!("bench-bcast-{index}"))
            .spawn(move || receive(wire, fleet, cmd_rx, r, p))
            .map_err(|e| format!("cannot start a generator thread: {e}"))?;
        Ok(Receivers {
            cmds,
            waker,
            progress,
            handle,
        })
    }

    pub(super) fn send(&self, cmd: Cmd) {
        let _ = self.cmds.send(cmd);
        let _ = self.waker.wake();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tallies_count_missing_and_extra_per_client() {
        let mut t = Tally::default();
        t.client(80, 80);
        assert!(t.clean());
        t.client(78, 80);
        t.client(81, 80);
        t.client(0, 80);
        assert_eq!(
            t,
            Tally {
                missing: 82,
                extra: 1,
                unexpected: 0
            }
        );
        let mut sum = Tally::default();
        sum.add(t);
        sum.add(Tally {
            unexpected: 2,
            ..Tally::default()
        });
        assert_eq!((sum.missing, sum.extra, sum.unexpected), (82, 1, 2));
    }

    #[test]
    fn receivers_count_broadcasts_only() {
        let (mut count, mut complete, mut unexpected) = (0u64, 0usize, 0u64);
        let mut v = Count {
            wire: ClientProto::Ws,
            count: &mut count,
            expect: 2,
            complete: &mut complete,
            unexpected: &mut unexpected,
        };
        let b = br#"{"type":"broadcast","payload":{"sendTime":"1"}}"#;
        let r = br#"{"type":"broadcastResult","payload":{"sendTime":"1"}}"#;
        v.message(true, Payload::Assembled(b.to_vec()));
        v.message(true, Payload::Assembled(r.to_vec()));
        v.message(false, Payload::Assembled(b.to_vec()));
        v.message(true, Payload::Assembled(b.to_vec()));
        v.message(true, Payload::Assembled(b.to_vec()));
        assert_eq!((count, complete, unexpected), (3, 1, 2));
    }

    #[test]
    fn socketio_receivers_count_socketio_broadcasts_only() {
        let (mut count, mut complete, mut unexpected) = (0u64, 0usize, 0u64);
        let mut v = Count {
            wire: ClientProto::Socketio,
            count: &mut count,
            expect: 1,
            complete: &mut complete,
            unexpected: &mut unexpected,
        };
        let b = br#"42["broadcast",{"sendTime":"1","padding":""}]"#;
        v.message(true, Payload::Assembled(b.to_vec()));
        v.message(
            true,
            Payload::Assembled(br#"42["broadcastResult",{"sendTime":"1"}]"#.to_vec()),
        );
        v.message(
            true,
            Payload::Assembled(br#"{"type":"broadcast","payload":{}}"#.to_vec()),
        );
        assert_eq!((count, complete, unexpected), (1, 1, 2));
    }
}
