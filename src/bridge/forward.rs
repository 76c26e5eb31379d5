//! Sticky-free polling across processes: this process's tag, the requests it forwards
//! to other owners (`Outbound`), and the requests it serves for other processes.
//!
//! Serving: a forwarded request is replayed on a loopback connection to this process's
//! own listener (`replay.rs`, one loop for all), so that every rule a local client meets
//! (sid check, one GET and one POST at a time, long-poll timing, the worker that owns
//! the session) applies unchanged; the answer goes back to the sender's channel.
//!
//! Invariants: a forwarded request's connection here learns its fate once (`Answered`
//! or `Failed`; `Accepted` before, at most once); `Outbound` holds at most
//! `MAX_OUTBOUND` entries and forgets one after `OUTBOUND_TTL`.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::Bridge;
use super::eio::{self, EioMessage};
use super::replay::Command;
use crate::engineio::sid::{ProcessTag, tag_from};
use crate::runtime::ConnId;
use crate::sio::{ForwardEvent, Forwarded, ForwardedRequest, Registry};

/// Requests this process forwards that wait for an answer at once.
const MAX_OUTBOUND: usize = 16_384;
/// An outbound entry with no answer this long is forgotten (its connection has long
/// been answered 400 here).
const OUTBOUND_TTL: Duration = Duration::from_secs(120);
/// Requests forwarded from here, by id → the worker and connection waiting.
#[derive(Default)]
pub(super) struct Outbound {
    next: AtomicU64,
    waiting: Mutex<HashMap<u64, (usize, ConnId, Instant)>>,
}

impl Outbound {
    /// Registers a request from `reply_to`; `None` when too many are waiting.
    pub fn register(&self, reply_to: (usize, ConnId)) -> Option<u64> {
        let mut waiting = self.waiting.lock().ok()?;
        if waiting.len() >= MAX_OUTBOUND {
            return None;
        }
        let id = self.next.fetch_add(1, Ordering::Relaxed);
        waiting.insert(id, (reply_to.0, reply_to.1, Instant::now()));
        Some(id)
    }

    /// Forgets entries whose answer never came.
    pub fn purge(&self) {
        if let Ok(mut waiting) = self.waiting.lock() {
            waiting.retain(|_, (_, _, since)| since.elapsed() < OUTBOUND_TTL);
        }
    }

    /// Forgets `id` (its connection no longer waits).
    pub fn cancel(&self, id: u64) {
        self.take(id, true);
    }

    /// The waiting connection of `id`; kept unless `done`.
    fn take(&self, id: u64, done: bool) -> Option<(usize, ConnId)> {
        let mut waiting = self.waiting.lock().ok()?;
        let (worker, conn, _) = if done {
            waiting.remove(&id)?
        } else {
            *waiting.get(&id)?
        };
        Some((worker, conn))
    }
}

/// A tag no other process on the bus holds (checked with `count`, which says how
/// many subscribers a channel has), or a random one if the bus cannot be asked.
pub(super) fn pick_tag(mut count: impl FnMut(&str) -> Option<usize>, key: &str) -> ProcessTag {
    let mut tag = random_tag();
    for _ in 0..8 {
        match count(&eio::channel(key, &tag)) {
            Some(0) => return tag,
            Some(_) => tag = random_tag(),
            None => {
                tracing::info!(
                    tag = %String::from_utf8_lossy(&tag),
                    "Redis unreachable at start: the process tag in sids is not checked for clashes"
                );
                return tag;
            }
        }
    }
    tag
}

fn random_tag() -> ProcessTag {
    tag_from(super::random6())
}

/// Publishes `message` on the channel of process `to`.
/// Forwards `request` to process `owner` for the connection `reply_to`; its id.
pub(super) fn forward(
    bridge: &Bridge,
    owner: &ProcessTag,
    request: ForwardedRequest,
    reply_to: (usize, ConnId),
) -> Option<u64> {
    if !bridge.links_up() {
        return None;
    }
    let id = bridge.outbound.register(reply_to)?;
    let from = bridge.tag;
    if !bridge.send_eio(owner, &EioMessage::Request { id, from, request }) {
        bridge.outbound.cancel(id);
        return None;
    }
    bridge
        .counters
        .forwarded_out
        .fetch_add(1, Ordering::Relaxed);
    Some(id)
}

/// A message on this process's own channel.
pub(super) fn on_message(bridge: &Arc<Bridge>, registry: &Registry, bytes: &[u8]) {
    let Some(message) = eio::decode(bytes) else {
        return;
    };
    let (id, event) = match message {
        EioMessage::Request { id, from, request } => return serve(bridge, id, from, request),
        EioMessage::Accepted { id } => (id, ForwardEvent::Accepted),
        EioMessage::Answer { id, answer } => (id, ForwardEvent::Answered(answer)),
        EioMessage::Failed { id } => (id, ForwardEvent::Failed),
        tunneled => return super::tunnel::on_message(bridge, registry, tunneled),
    };
    if matches!(event, ForwardEvent::Failed) {
        bridge
            .counters
            .forward_failures
            .fetch_add(1, Ordering::Relaxed);
    }
    let done = !matches!(event, ForwardEvent::Accepted);
    if let Some((worker, conn)) = bridge.outbound.take(id, done) {
        let _ = registry
            .io()
            .post_app(worker, Box::new(Forwarded { conn, id, event }));
    }
}

/// Serves a request forwarded by process `from` on the replay loop.
fn serve(bridge: &Arc<Bridge>, id: u64, from: ProcessTag, request: ForwardedRequest) {
    bridge.counters.forwarded_in.fetch_add(1, Ordering::Relaxed);
    let command = Command::Request { id, from, request };
    if !super::replayer(bridge).is_some_and(|r| r.send(command)) {
        bridge.send_eio(&from, &EioMessage::Failed { id });
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_in_use_is_not_picked() {
        let mut asked = 0;
        let tag = pick_tag(
            |_| {
                asked += 1;
                Some(usize::from(asked < 3))
            },
            "k",
        );
        assert_eq!(asked, 3);
        assert!(crate::engineio::sid::is_tag(&tag));
        // Unreachable bus: a random tag at once.
        let mut tries = 0;
        pick_tag(
            |_| {
                tries += 1;
                None
            },
            "k",
        );
        assert_eq!(tries, 1);
    }
}
