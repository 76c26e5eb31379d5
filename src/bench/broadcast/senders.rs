//! The sender clients of `throng bench broadcast`, served on the coordinator's thread:
//! each broadcasts `--sample-size` times per step, one at a time (send, wait for its
//! `broadcastResult`, send the next), and counts the broadcasts it receives like any
//! other client.
//!
//! Invariants: a sender has at most one broadcast awaiting its result; the RTT is the
//! arrival of `broadcastResult` minus the `sendTime` (unix ns, a string, as in the
//! original tool) parsed from it, so it also covers the server's parse and fan-out; a
//! result that arrives while nothing is awaited is unexpected; a result older than
//! [`RESULT_TIMEOUT`] fails the step.

use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::bench::fleet::Fleet;
use crate::bench::json::{
    broadcast_result_send_time, is_broadcast, queue_text, shootout_broadcast, shootout_padding,
};
use crate::bench::report::Target;
use crate::bench::sio::ClientProto;
use crate::ws::CloseCode;
use crate::ws::reader::{Payload, Visitor};

use super::receivers::Tally;

/// A broadcast whose `broadcastResult` has not come after this fails the run.
pub(super) const RESULT_TIMEOUT: Duration = Duration::from_secs(10);

/// One sender client's state.
#[derive(Debug, Default)]
pub(super) struct SenderState {
    /// Broadcasts received this step.
    received: u64,
    /// Broadcasts still to send this step.
    left: usize,
    /// When the broadcast awaiting its result was sent.
    waiting_since: Option<Instant>,
    /// Its result arrived in the last read: send the next one.
    result_in: bool,
}

/// Reads a sender's frames: broadcasts are counted, its `broadcastResult` gives an RTT.
struct SenderVisitor<'a> {
    wire: ClientProto,
    st: &'a mut SenderState,
    rtts_us: &'a mut Vec<u64>,
    unexpected: &'a mut u64,
}

impl Visitor for SenderVisitor<'_> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        let p = payload.as_slice();
        if text && is_broadcast(self.wire, p) {
            self.st.received += 1;
            return;
        }
        match broadcast_result_send_time(self.wire, p) {
            Some(sent) if text && self.st.waiting_since.is_some() => {
                let rtt_ns = unix_ns().saturating_sub(sent);
                self.rtts_us.push(rtt_ns.div_ceil(1000));
                self.st.waiting_since = None;
                self.st.result_in = true;
            }
            _ => *self.unexpected += 1,
        }
    }
    fn ping(&mut self, _: &[u8]) {}
    fn pong(&mut self, _: &[u8]) {}
    fn close(&mut self, _: Option<CloseCode>, _: &str) {}
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The sender clients and what they measured in the current step.
pub(super) struct Senders {
    pub(super) fleet: Fleet<SenderState>,
    wire: ClientProto,
    padding: String,
    buf: Vec<u8>,
    /// This step's round trips, in microseconds.
    pub(super) rtts_us: Vec<u64>,
    unexpected: u64,
}

impl Senders {
    /// Senders for `target`, not connected yet; broadcasts carry `padding` bytes.
    pub(super) fn new(target: &Target, sources: usize, padding: usize) -> io::Result<Senders> {
        Ok(Senders {
            fleet: Fleet::new(target.clone(), sources, 0xB0AD_CA57)?,
            wire: target.proto,
            padding: shootout_padding(padding),
            buf: Vec::new(),
            rtts_us: Vec::new(),
            unexpected: 0,
        })
    }

    /// Queues one broadcast from a sender.
    fn send(
        wire: ClientProto,
        st: &mut SenderState,
        out: &mut Vec<u8>,
        buf: &mut Vec<u8>,
        padding: &str,
        key: u32,
    ) {
        shootout_broadcast(wire, buf, unix_ns(), padding);
        queue_text(out, buf, key.to_ne_bytes());
        st.left -= 1;
        st.waiting_since = Some(Instant::now());
    }

    /// Serves the senders for up to `timeout`; a sender whose result came sends its next.
    pub(super) fn pump(&mut self, timeout: Duration) -> io::Result<()> {
        let Senders {
            fleet,
            wire,
            padding,
            buf,
            rtts_us,
            unexpected,
        } = self;
        let wire = *wire;
        fleet.turn(timeout, |client, st, scratch, rng| {
            let read = client.read(
                scratch,
                rng,
                &mut SenderVisitor {
                    wire,
                    st,
                    rtts_us,
                    unexpected,
                },
            );
            if std::mem::take(&mut st.result_in) && st.left > 0 {
                Senders::send(wire, st, client.out(), buf, padding, rng.next() as u32);
            }
            read
        })?;
        Ok(())
    }

    /// Starts a step: resets the counters and sends each sender's first broadcast.
    pub(super) fn start(&mut self, samples: usize) {
        self.rtts_us.clear();
        self.unexpected = 0;
        let (buf, padding, wire) = (&mut self.buf, &self.padding, self.wire);
        self.fleet.each_open(|client, st, rng| {
            *st = SenderState {
                left: samples,
                ..SenderState::default()
            };
            Senders::send(wire, st, client.out(), buf, padding, rng.next() as u32);
        });
    }

    /// Whether every sender has sent and heard back all its samples; `Err` when one
    /// has waited too long.
    pub(super) fn sampled(&mut self, now: Instant) -> Result<bool, String> {
        let mut done = true;
        let mut late = false;
        self.fleet.each_open(|_, st, _| {
            done &= st.left == 0 && st.waiting_since.is_none();
            late |= st
                .waiting_since
                .is_some_and(|t| now.duration_since(t) > RESULT_TIMEOUT);
        });
        if late {
            return Err(format!("no broadcastResult within {RESULT_TIMEOUT:?}"));
        }
        Ok(done)
    }

    /// Senders that received all `expect` broadcasts.
    pub(super) fn complete(&mut self, expect: u64) -> usize {
        let mut complete = 0;
        self.fleet
            .each_open(|_, st, _| complete += usize::from(st.received >= expect));
        complete
    }

    /// The senders' deliveries this step, those of senders lost meanwhile included.
    pub(super) fn tally(&mut self, expect: u64) -> Tally {
        let mut t = Tally {
            unexpected: self.unexpected,
            ..Tally::default()
        };
        self.fleet
            .each_open(|_, st, _| t.client(st.received, expect));
        for (st, was_open) in self.fleet.take_dropped() {
            if was_open {
                t.client(st.received, expect);
            }
        }
        t
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn senders_time_their_own_results() {
        let mut st = SenderState {
            left: 1,
            waiting_since: Some(Instant::now()),
            ..SenderState::default()
        };
        let (mut rtts, mut unexpected) = (Vec::new(), 0u64);
        let sent = unix_ns() - 3_000_000;
        let mut v = SenderVisitor {
            wire: ClientProto::Ws,
            st: &mut st,
            rtts_us: &mut rtts,
            unexpected: &mut unexpected,
        };
        let mut own = Vec::new();
        shootout_broadcast(ClientProto::Ws, &mut own, sent, "12");
        v.message(true, Payload::Assembled(own.clone()));
        let result =
            String::from_utf8(own)
                .unwrap()
                .replacen("\"broadcast\"", "\"broadcastResult\"", 1);
        v.message(true, Payload::Assembled(result.clone().into_bytes()));
        // A second result while nothing is awaited is unexpected.
        v.message(true, Payload::Assembled(result.into_bytes()));
        assert_eq!(st.received, 1);
        assert!(st.result_in && st.waiting_since.is_none());
        assert_eq!(unexpected, 1);
        assert_eq!(rtts.len(), 1);
        assert!((3_000..1_000_000).contains(&rtts[0]), "{rtts:?}");
    }
}
