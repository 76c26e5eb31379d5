//! The publisher of `throng bench fanout`, served on the coordinator's thread: it keeps
//! at most `--window` publishes unacknowledged and, with `--max-lag`, stays at most that
//! many publishes ahead of the subscribers.
//!
//! Invariants: a publish's sequence number is its pubsub id and its payload stamp;
//! `Shared::sent` is raised before the frames that carry the new sequence numbers are
//! flushed; an ack counts once, and only for a sequence already published; the lag
//! check and the subscriber threads' wake-up follow a flag-then-recheck order (SeqCst),
//! so a stalled publisher is always woken.

use std::io;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::bench::client::{Client, Phase, XorShift};
use crate::bench::fleet::Fleet;
use crate::bench::json::{Incoming, Proto, Publish, SeqSet, classify};
use crate::ws::CloseCode;
use crate::ws::reader::{Payload, Visitor};

use super::{Shared, queue};

/// The publisher's state.
#[derive(Debug)]
pub(super) struct PubState {
    /// Publishes queued; the next one carries this sequence number.
    pub(super) sent: u64,
    /// Distinct acks.
    pub(super) acks: SeqSet,
    /// Shootout: its own broadcasts received back.
    pub(super) own: SeqSet,
    pub(super) own_duplicates: u64,
    /// Times the publisher paused for `--max-lag`.
    pub(super) lag_stalls: u64,
    /// Send times of the publishes in flight, by sequence modulo the window.
    pub(super) in_flight: Vec<(u64, u64)>,
    pub(super) ack_hist: Histogram<u64>,
    /// Publishes sent inside the measured window.
    pub(super) in_window: u64,
    pub(super) unexpected: u64,
    pub(super) errors: u64,
    pub(super) first_error: Option<String>,
    /// The last ack, or the last send that found nothing outstanding.
    pub(super) progress_at: Instant,
}

impl PubState {
    pub(super) fn outstanding(&self) -> u64 {
        self.sent - self.acks.len()
    }
}

/// Reads the publisher's frames: acks and (shootout) its own broadcasts.
struct PubVisitor<'a> {
    proto: Proto,
    st: &'a mut PubState,
    shared: &'a Shared,
    /// Read on the batch's first ack.
    now_ns: Option<u64>,
}

impl Visitor for PubVisitor<'_> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        let st = &mut *self.st;
        if !text {
            st.unexpected += 1;
            return;
        }
        match classify(self.proto, payload.as_slice()) {
            Incoming::Ack(seq) if seq < st.sent && st.acks.insert(seq) => {
                st.progress_at = Instant::now();
                let (s, ns) = st.in_flight[(seq % st.in_flight.len() as u64) as usize];
                if s == seq {
                    let shared = self.shared;
                    let now = *self.now_ns.get_or_insert_with(|| shared.now_ns());
                    let us = (now.saturating_sub(ns) / 1000).max(1);
                    st.ack_hist.saturating_record(us);
                }
            }
            Incoming::Delivery(seq, _) if self.proto.is_shootout() && seq < st.sent => {
                if !st.own.insert(seq) {
                    st.own_duplicates += 1;
                }
            }
            Incoming::Error(reason) => {
                st.errors += 1;
                st.first_error
                    .get_or_insert(format!("server error: {reason}"));
            }
            _ => st.unexpected += 1,
        }
    }
    fn ping(&mut self, _: &[u8]) {}
    fn pong(&mut self, _: &[u8]) {}
    fn close(&mut self, _: Option<CloseCode>, _: &str) {}
}

/// What the publisher needs besides its connection: the message builder and the bounds.
pub(super) struct Gen {
    pub(super) proto: Proto,
    pub(super) publish: Publish,
    pub(super) buf: Vec<u8>,
    pub(super) window: u64,
    /// Publishes the subscribers may trail the publisher by (0: unbounded).
    pub(super) max_lag: u64,
    pub(super) shared: Arc<Shared>,
}

impl Gen {
    /// The sequence every subscriber thread has reached on average per subscriber: the
    /// least, over threads with subscribers, of distinct deliveries / subscribers.
    fn delivered_floor(&self) -> u64 {
        self.shared
            .threads
            .iter()
            .filter_map(|t| {
                let ready = t.ready.load(Ordering::SeqCst) as u64;
                (ready > 0).then(|| t.distinct.load(Ordering::SeqCst) / ready)
            })
            .min()
            .unwrap_or(u64::MAX)
    }

    /// Whether `sent` is `max_lag` or more ahead of the subscribers.
    fn lagging(&self, sent: u64) -> bool {
        self.max_lag > 0 && sent >= self.delivered_floor().saturating_add(self.max_lag)
    }

    /// Queues publishes until the window is full or the subscribers lag too far, unless
    /// the run has not started or is over.
    fn top_up(&mut self, st: &mut PubState, client: &mut Client, rng: &mut XorShift) {
        let shared = &*self.shared;
        let until = shared.until_ns.load(Ordering::Relaxed);
        let measure_from = shared.measure_from_ns.load(Ordering::Relaxed);
        let now = shared.now_ns();
        if until == u64::MAX || now >= until {
            return;
        }
        if st.outstanding() == 0 {
            st.progress_at = Instant::now();
        }
        while st.outstanding() < self.window {
            if self.lagging(st.sent) {
                // What to wait for, then the flag, then look again: either this sees a
                // thread's progress or that thread sees the flag and wakes the publisher
                // once it has the deliveries per subscriber that end the stall.
                let wanted = (st.sent + 1).saturating_sub(self.max_lag);
                self.shared.lag_wanted.store(wanted, Ordering::SeqCst);
                self.shared.lag_stalled.store(true, Ordering::SeqCst);
                if self.lagging(st.sent) {
                    st.lag_stalls += 1;
                    break;
                }
            }
            let seq = st.sent;
            self.publish.message(&mut self.buf, seq, now);
            queue(client, &self.buf, rng);
            let slot = (seq % st.in_flight.len() as u64) as usize;
            st.in_flight[slot] = (seq, now);
            st.sent += 1;
            if now >= measure_from {
                st.in_window += 1;
            }
        }
        // Before the flush: a subscriber reading seq finds `sent` above it.
        self.shared.sent.store(st.sent, Ordering::Release);
    }
}

/// The publisher connection and its generator.
pub(super) struct Publisher {
    pub(super) fleet: Fleet<PubState>,
    pub(super) generator: Gen,
}

impl Publisher {
    /// Serves the publisher for up to `timeout`: acks read, window topped up.
    pub(super) fn pump(&mut self, timeout: Duration) -> io::Result<()> {
        let Publisher { fleet, generator } = self;
        let woken = fleet.turn(timeout, |client, st, scratch, rng| {
            let mut v = PubVisitor {
                proto: generator.proto,
                st: &mut *st,
                shared: &generator.shared,
                now_ns: None,
            };
            let read = client.read(scratch, rng, &mut v);
            if client.phase == Phase::Open {
                generator.top_up(st, client, rng);
            }
            read
        })?;
        if woken {
            self.top_up();
        }
        Ok(())
    }

    /// Tops up the (open) publisher's window outside a read: at the start, and when a
    /// subscriber thread woke the publisher from a lag stall.
    pub(super) fn top_up(&mut self) {
        let Publisher { fleet, generator } = self;
        fleet.each_open(|client, st, rng| generator.top_up(st, client, rng));
    }

    /// The publisher's state (read through a closure: it lives in the fleet).
    pub(super) fn with<T>(&mut self, f: impl FnOnce(&PubState) -> T) -> Option<T> {
        let mut f = Some(f);
        let mut out = None;
        self.fleet.each_open(|_, st, _| {
            if let Some(f) = f.take() {
                out = Some(f(st));
            }
        });
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fanout::tests::{delivery, shared};
    use crate::bench::report::latency_histogram;

    #[test]
    fn the_publisher_counts_acks_and_its_own_broadcasts() {
        let mut st = PubState {
            sent: 3,
            acks: SeqSet::default(),
            own: SeqSet::default(),
            own_duplicates: 0,
            lag_stalls: 0,
            in_flight: vec![(0, 100), (1, 200), (2, 300), (u64::MAX, 0)],
            ack_hist: latency_histogram(),
            in_window: 0,
            unexpected: 0,
            errors: 0,
            first_error: None,
            progress_at: Instant::now(),
        };
        let sh = shared(3, (0, u64::MAX));
        let mut v = PubVisitor {
            proto: Proto::Shootout,
            st: &mut st,
            shared: &sh,
            now_ns: Some(5_000_000),
        };
        let own = delivery(Proto::Shootout, 1, 200);
        let result = String::from_utf8(own.clone()).unwrap().replacen(
            "\"broadcast\"",
            "\"broadcastResult\"",
            1,
        );
        v.message(true, Payload::Assembled(own.clone()));
        v.message(true, Payload::Assembled(own));
        v.message(true, Payload::Assembled(result.clone().into_bytes()));
        v.message(true, Payload::Assembled(result.into_bytes())); // a second ack for 1
        assert_eq!(st.own.len(), 1);
        assert_eq!(st.own_duplicates, 1);
        assert_eq!(st.acks.len(), 1);
        assert_eq!(st.unexpected, 1);
        assert_eq!(st.outstanding(), 2);
        assert_eq!(st.ack_hist.len(), 1);
        assert!(st.ack_hist.max() >= 4_999);

        let mut v = PubVisitor {
            proto: Proto::Pubsub,
            st: &mut st,
            shared: &sh,
            now_ns: None,
        };
        v.message(
            true,
            Payload::Assembled(br#"{"op":"published","id":2}"#.to_vec()),
        );
        v.message(
            true,
            Payload::Assembled(br#"{"op":"published","id":7}"#.to_vec()),
        );
        assert_eq!(st.acks.len(), 2);
        assert_eq!(st.unexpected, 2, "an ack for an id never published");
    }
}
