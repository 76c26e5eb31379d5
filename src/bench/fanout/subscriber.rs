//! The subscriber threads of `throng bench fanout`: each connects and subscribes its
//! share of the subscribers in a [`Fleet`], then counts deliveries until the publisher
//! sets `stop`, and hands its [`SubStats`] back when joined.
//!
//! Invariants (the receive path is the generator's hot loop):
//! - Nothing is allocated per message: frames are parsed in place by the codec's
//!   `Reader` (client role), recognised by prefix and a fixed-position stamp
//!   ([`classify`]), and recorded in a per-subscriber bit set and a per-thread histogram.
//! - The clock and the shared counters are read once per [`BATCH_REFRESH`] deliveries,
//!   after the bytes were read; the thread's progress is published at the same points,
//!   so a publisher waiting on `--max-lag` is woken promptly (once this thread has
//!   reached what it waits for, not at every read).
//! - A sequence number is accepted only below the count of publishes queued so far, so
//!   a bit set never grows past what was published.
//! - When publishing starts, every subscriber not yet subscribed is failed, so the
//!   expected deliveries are exactly subscribed x published.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use crate::bench::client::Phase;
use crate::bench::fleet::{CONNECT_TIMEOUT, Counts, Fleet};
use crate::bench::json::{Incoming, Proto, Publish, SeqSet, classify};
use crate::bench::report::{Target, latency_histogram};
use crate::ws::CloseCode;
use crate::ws::reader::{Payload, Visitor};

use super::{FanoutArgs, Shared, queue};

/// One subscriber thread's progress.
#[derive(Debug, Default)]
pub(super) struct Progress {
    /// Subscribers subscribed or failed.
    pub(super) settled: AtomicUsize,
    /// Subscribers subscribed (ever; one lost later still counts).
    pub(super) ready: AtomicUsize,
    /// Distinct deliveries received so far.
    pub(super) distinct: AtomicU64,
    /// The thread has seen `publishing` and failed its unsubscribed members.
    pub(super) started: AtomicBool,
}

/// One subscriber.
#[derive(Debug, Default)]
struct SubState {
    /// Subscribed (pubsub) or open (shootout): deliveries are expected.
    ready: bool,
    /// One past the highest sequence received.
    next: u64,
    seen: SeqSet,
}

/// What one subscriber thread (and, summed, the run) saw.
#[derive(Debug)]
pub(super) struct SubStats {
    pub(super) hist: Histogram<u64>,
    /// Deliveries received inside the measured window.
    pub(super) in_window: u64,
    pub(super) distinct: u64,
    pub(super) duplicates: u64,
    pub(super) out_of_order: u64,
    /// Frames that were no delivery, a delivery of a sequence never published, or a
    /// delivery to a subscriber that was not subscribed.
    pub(super) unexpected: u64,
    /// `{"op":"error"}` replies.
    pub(super) errors: u64,
    pub(super) ready: usize,
    /// Subscribers failed before they were subscribed.
    pub(super) failed_unready: usize,
    /// Subscribed subscribers whose connection failed later.
    pub(super) lost_ready: usize,
    pub(super) first_error: Option<String>,
    pub(super) counts: Counts,
}

impl SubStats {
    pub(super) fn new() -> SubStats {
        SubStats {
            hist: latency_histogram(),
            in_window: 0,
            distinct: 0,
            duplicates: 0,
            out_of_order: 0,
            unexpected: 0,
            errors: 0,
            ready: 0,
            failed_unready: 0,
            lost_ready: 0,
            first_error: None,
            counts: Counts::default(),
        }
    }

    pub(super) fn add(&mut self, o: SubStats) {
        let _ = self.hist.add(&o.hist);
        self.in_window += o.in_window;
        self.distinct += o.distinct;
        self.duplicates += o.duplicates;
        self.out_of_order += o.out_of_order;
        self.unexpected += o.unexpected;
        self.errors += o.errors;
        self.ready += o.ready;
        self.failed_unready += o.failed_unready;
        self.lost_ready += o.lost_ready;
        if self.first_error.is_none() {
            self.first_error = o.first_error.or(o.counts.first_error.clone());
        }
    }
}

/// What a read batch needs from the shared state, loaded on its first delivery (after
/// the bytes were read, so every sequence in them is below `sent`) and again every
/// [`BATCH_REFRESH`] deliveries (one `Client::read` may loop over many full reads).
#[derive(Clone, Copy, Debug)]
struct Batch {
    now_ns: u64,
    sent: u64,
    measure_from_ns: u64,
    until_ns: u64,
    /// Deliveries that may still use this reading.
    left: u32,
}

/// Deliveries per clock reading: far fewer than one full read holds.
const BATCH_REFRESH: u32 = 64;

impl Batch {
    fn load(shared: &Shared) -> Batch {
        Batch {
            // `sent` first: a delivery read after this clock reading was sent before it.
            sent: shared.sent.load(Ordering::Acquire),
            now_ns: shared.now_ns(),
            measure_from_ns: shared.measure_from_ns.load(Ordering::Acquire),
            until_ns: shared.until_ns.load(Ordering::Acquire),
            left: BATCH_REFRESH,
        }
    }
}

/// Records one subscriber's reads.
struct SubVisitor<'a> {
    proto: Proto,
    st: &'a mut SubState,
    stats: &'a mut SubStats,
    shared: &'a Shared,
    /// This thread's progress, also published at every batch refresh (none in tests).
    progress: Option<&'a Progress>,
    batch: Option<Batch>,
}

impl SubVisitor<'_> {
    /// The batch reading for one delivery of `seq`, refreshed when it is used up or
    /// older than `seq`.
    fn batch(&mut self, seq: u64) -> Batch {
        let b = match self.batch {
            Some(b) if b.left > 0 && seq < b.sent => b,
            _ => {
                if let Some(p) = self.progress {
                    p.distinct.store(self.stats.distinct, Ordering::SeqCst);
                    self.shared.wake_if_stalled(p);
                }
                Batch::load(self.shared)
            }
        };
        let mut next = b;
        next.left = b.left.saturating_sub(1);
        self.batch = Some(next);
        b
    }

    fn delivery(&mut self, seq: u64, sent_ns: u64) {
        let b = self.batch(seq);
        if !self.st.ready || seq >= b.sent {
            self.stats.unexpected += 1;
            return;
        }
        if !self.st.seen.insert(seq) {
            self.stats.duplicates += 1;
            return;
        }
        self.stats.distinct += 1;
        if seq < self.st.next {
            self.stats.out_of_order += 1;
        } else {
            self.st.next = seq + 1;
        }
        if b.now_ns >= b.measure_from_ns && b.now_ns < b.until_ns {
            self.stats.in_window += 1;
            let us = (b.now_ns.saturating_sub(sent_ns) / 1000).max(1);
            self.stats.hist.saturating_record(us);
        }
    }
}

impl Visitor for SubVisitor<'_> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        if !text {
            self.stats.unexpected += 1;
            return;
        }
        match classify(self.proto, payload.as_slice()) {
            Incoming::Delivery(seq, sent_ns) => self.delivery(seq, sent_ns),
            Incoming::Subscribed if self.proto == Proto::Pubsub && !self.st.ready => {
                self.st.ready = true;
                self.stats.ready += 1;
            }
            Incoming::Error(reason) => {
                self.stats.errors += 1;
                self.stats
                    .first_error
                    .get_or_insert(format!("server error: {reason}"));
            }
            _ => self.stats.unexpected += 1,
        }
    }
    fn ping(&mut self, _: &[u8]) {}
    fn pong(&mut self, _: &[u8]) {}
    fn close(&mut self, _: Option<CloseCode>, _: &str) {}
}

/// Starts subscriber thread `index` with `share` subscribers.
pub(super) fn spawn(
    index: usize,
    share: usize,
    target: &Target,
    args: &FanoutArgs,
    proto: Proto,
    shared: Arc<Shared>,
) -> Result<JoinHandle<io::Result<SubStats>>, String> {
    let fleet =
        Fleet::new(target.clone(), args.sources, index as u64 + 1).map_err(|e| e.to_string())?;
    let topic = args.topic.clone();
    thread::Builder::new()
        .name(format!("bench-fanout-{index}"))
        .spawn(move || subscribe(fleet, shared, index, share, proto, topic))
        .map_err(|e| format!("cannot start a generator thread: {e}"))
}

/// A subscriber thread: connects and subscribes its share, then counts deliveries until
/// the publisher sets `stop`.
fn subscribe(
    mut fleet: Fleet<SubState>,
    shared: Arc<Shared>,
    index: usize,
    share: usize,
    proto: Proto,
    topic: String,
) -> io::Result<SubStats> {
    let progress = &shared.threads[index];
    let subscribe = Publish::subscribe(&topic);
    let mut stats = SubStats::new();
    let mut started = false;
    let mut next_sweep = Instant::now();
    while !shared.stop.load(Ordering::Acquire) {
        fleet.dial(share, SubState::default);
        if !started && shared.publishing.load(Ordering::Acquire) {
            fleet.fail_where(|_, st| {
                (!st.ready).then(|| "not subscribed when publishing started".to_string())
            });
            started = true;
        }
        fleet.turn(Duration::from_millis(50), |client, st, scratch, rng| {
            let was_open = client.phase == Phase::Open;
            let read = client.read(
                scratch,
                rng,
                &mut SubVisitor {
                    proto,
                    st: &mut *st,
                    stats: &mut stats,
                    shared: &shared,
                    progress: Some(progress),
                    batch: None,
                },
            );
            if !was_open && client.phase == Phase::Open {
                match proto {
                    Proto::Pubsub => queue(client, &subscribe, rng),
                    Proto::Shootout | Proto::SioShootout => {
                        st.ready = true;
                        stats.ready += 1;
                    }
                }
            }
            read
        })?;
        for (st, _) in fleet.take_dropped() {
            if st.ready {
                stats.lost_ready += 1;
            } else {
                stats.failed_unready += 1;
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + Duration::from_millis(250);
            fleet.expire(now);
            fleet.fail_where(|c, st| {
                (c.phase == Phase::Open
                    && !st.ready
                    && now.duration_since(c.started) > CONNECT_TIMEOUT)
                    .then(|| format!("no subscribed reply within {CONNECT_TIMEOUT:?}"))
            });
        }
        progress
            .settled
            .store(stats.ready + stats.failed_unready, Ordering::Relaxed);
        progress.ready.store(stats.ready, Ordering::SeqCst);
        progress.distinct.store(stats.distinct, Ordering::SeqCst);
        progress.started.store(started, Ordering::Release);
        shared.wake_if_stalled(progress);
    }
    // Handshakes or subscribes still pending at the end never subscribed.
    stats.failed_unready += share - (stats.ready + stats.failed_unready).min(share);
    stats.counts = std::mem::take(&mut fleet.counts);
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bench::fanout::tests::{delivery, shared};

    #[test]
    fn subscribers_count_distinct_duplicate_and_reordered_deliveries() {
        let sh = shared(10, (0, u64::MAX));
        let mut st = SubState {
            ready: true,
            ..SubState::default()
        };
        let mut stats = SubStats::new();
        for proto in [Proto::Pubsub, Proto::Shootout, Proto::SioShootout] {
            let mut st = SubState {
                ready: true,
                ..SubState::default()
            };
            let mut v = SubVisitor {
                proto,
                st: &mut st,
                stats: &mut stats,
                shared: &sh,
                progress: None,
                batch: None,
            };
            for seq in [0u64, 1, 3, 2, 3, 9, 10, 11] {
                v.message(true, Payload::Assembled(delivery(proto, seq, 0)));
            }
        }
        // Per protocol: 0 1 3 2 9 distinct, 3 duplicate, 2 reordered, 10 and 11 never
        // published (unexpected).
        assert_eq!(stats.distinct, 15);
        assert_eq!(stats.duplicates, 3);
        assert_eq!(stats.out_of_order, 3);
        assert_eq!(stats.unexpected, 6);
        assert_eq!(stats.in_window, 15);
        assert_eq!(stats.hist.len(), 15);

        // Not subscribed yet: a delivery is unexpected; then the ack makes it ready.
        let mut v = SubVisitor {
            proto: Proto::Pubsub,
            st: &mut st,
            stats: &mut stats,
            shared: &sh,
            progress: None,
            batch: None,
        };
        v.st.ready = false;
        v.message(true, Payload::Assembled(delivery(Proto::Pubsub, 4, 0)));
        v.message(
            true,
            Payload::Assembled(br#"{"op":"subscribed","topic":"t"}"#.to_vec()),
        );
        v.message(true, Payload::Assembled(delivery(Proto::Pubsub, 4, 0)));
        v.message(
            true,
            Payload::Assembled(br#"{"op":"error","reason":"nope"}"#.to_vec()),
        );
        v.message(false, Payload::Assembled(delivery(Proto::Pubsub, 5, 0)));
        assert_eq!(stats.ready, 1);
        assert_eq!(stats.unexpected, 8);
        assert_eq!(stats.distinct, 16);
        assert_eq!(stats.errors, 1);
        assert_eq!(stats.first_error.as_deref(), Some("server error: nope"));
    }

    #[test]
    fn only_deliveries_inside_the_window_are_measured() {
        // A window that has not begun: counted as delivered, not measured.
        let sh = shared(5, (u64::MAX, u64::MAX));
        let mut st = SubState {
            ready: true,
            ..SubState::default()
        };
        let mut stats = SubStats::new();
        let mut v = SubVisitor {
            proto: Proto::Shootout,
            st: &mut st,
            stats: &mut stats,
            shared: &sh,
            progress: None,
            batch: None,
        };
        v.message(true, Payload::Assembled(delivery(Proto::Shootout, 0, 0)));
        assert_eq!((stats.distinct, stats.in_window), (1, 0));
    }
}
