//! Polling sessions this worker closed on purpose (a drain, a forced close) with a
//! close packet, remembered for a short grace so that a POST the client sent before it
//! read the `1` is answered `ok` instead of 400: the official client takes a failed POST for a transport error and
//! would report that, not the transport close the server meant (a drain's clients
//! would see an error where they should see a clean handover).
//!
//! Invariants: at most `CAPACITY` sids are held (the oldest go first); a sid is
//! forgotten `GRACE` after it was ended; nothing else is kept per sid.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::engineio::sid::Sid;

/// How long an ended session's late POSTs are still answered `ok`.
pub(crate) const GRACE: Duration = Duration::from_secs(10);
/// Ended sessions remembered at once, per worker.
pub(crate) const CAPACITY: usize = 4096;

#[derive(Default)]
pub(crate) struct Farewells {
    /// Oldest first.
    order: VecDeque<Sid>,
    ended: HashMap<Sid, Instant>,
}

impl Farewells {
    /// Remembers that session `sid` was sent its close packet at `now`.
    pub fn remember(&mut self, sid: Sid, now: Instant) {
        self.expire(now);
        if self.ended.contains_key(&sid) {
            return;
        }
        if self.order.len() == CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.ended.remove(&oldest);
        }
        self.ended.insert(sid, now);
        self.order.push_back(sid);
    }

    /// Whether `sid` was ended within the grace before `now`.
    pub fn knows(&self, sid: &Sid, now: Instant) -> bool {
        self.ended
            .get(sid)
            .is_some_and(|&at| now.duration_since(at) < GRACE)
    }

    /// Forgets the sids whose grace is over.
    pub fn expire(&mut self, now: Instant) {
        while let Some(sid) = self.order.front() {
            match self.ended.get(sid) {
                Some(&at) if now.duration_since(at) < GRACE => break,
                _ => {}
            }
            if let Some(sid) = self.order.pop_front() {
                self.ended.remove(&sid);
            }
        }
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.order.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sid(n: u8) -> Sid {
        Sid::new(0, [n; crate::engineio::sid::SID_RANDOM_BYTES])
    }

    #[test]
    fn an_ended_session_is_known_for_the_grace_only() {
        let mut f = Farewells::default();
        let t0 = Instant::now();
        f.remember(sid(1), t0);
        assert!(f.knows(&sid(1), t0 + GRACE / 2));
        assert!(!f.knows(&sid(2), t0));
        assert!(!f.knows(&sid(1), t0 + GRACE));
        f.expire(t0 + GRACE);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn the_oldest_go_first_at_capacity() {
        let mut f = Farewells::default();
        let t0 = Instant::now();
        let nth = |n: usize| {
            let mut bytes = [0u8; crate::engineio::sid::SID_RANDOM_BYTES];
            bytes[6..14].copy_from_slice(&(n as u64).to_le_bytes());
            Sid::new(0, bytes)
        };
        for n in 0..CAPACITY + 10 {
            f.remember(nth(n), t0);
        }
        assert_eq!(f.len(), CAPACITY);
        assert!(!f.knows(&nth(9), t0));
        assert!(f.knows(&nth(10), t0));
        assert!(f.knows(&nth(CAPACITY + 9), t0));
    }
}
