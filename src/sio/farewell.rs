//! Sids this worker lately let go, remembered for a short grace with what became of
//! them (`Recent`):
//! - `Farewells`: polling sessions closed on purpose (a drain, a forced close) with a
//!   close packet, so that a POST the client sent before it read the `1` is answered
//!   `ok` instead of 400: the official client takes a failed POST for a transport
//!   error and would report that, not the transport close the server meant (a drain's
//!   clients would see an error where they should see a clean handover);
//! - `Moved`: sessions handed over to the process where their WebSocket landed
//!   (`handover.rs`), so that polling requests still on their way here are forwarded
//!   there.
//!
//! Invariants: at most `CAPACITY` sids are held per table (the oldest go first); a sid
//! is forgotten its table's grace after it was remembered; nothing else is kept per
//! sid.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::engineio::sid::{ProcessTag, Sid};

/// How long an ended session's late POSTs are still answered `ok`.
pub(crate) const GRACE: Duration = Duration::from_secs(10);
/// How long requests for a session handed over are forwarded to its new process.
pub(crate) const MOVED_GRACE: Duration = Duration::from_secs(60);
/// Sids remembered at once, per table and worker.
pub(crate) const CAPACITY: usize = 4096;

/// Sids remembered for `grace` each, with a value.
pub(crate) struct Recent<V> {
    grace: Duration,
    /// Oldest first.
    order: VecDeque<Sid>,
    at: HashMap<Sid, (Instant, V)>,
}

/// Sessions ended with a close packet on purpose.
pub(crate) type Farewells = Recent<()>;
/// Sessions handed over, with the process now serving them.
pub(crate) type Moved = Recent<ProcessTag>;

impl<V> Recent<V> {
    pub fn new(grace: Duration) -> Recent<V> {
        Recent {
            grace,
            order: VecDeque::new(),
            at: HashMap::new(),
        }
    }

    /// Remembers `sid` with `value` from `now` (a sid already known keeps its first).
    pub fn remember(&mut self, sid: Sid, value: V, now: Instant) {
        self.expire(now);
        if self.at.contains_key(&sid) {
            return;
        }
        if self.order.len() == CAPACITY
            && let Some(oldest) = self.order.pop_front()
        {
            self.at.remove(&oldest);
        }
        self.at.insert(sid, (now, value));
        self.order.push_back(sid);
    }

    /// What `sid` was remembered with, if within the grace before `now`.
    pub fn get(&self, sid: &Sid, now: Instant) -> Option<&V> {
        self.at
            .get(sid)
            .filter(|(at, _)| now.duration_since(*at) < self.grace)
            .map(|(_, value)| value)
    }

    /// Whether `sid` is remembered at `now`.
    pub fn knows(&self, sid: &Sid, now: Instant) -> bool {
        self.get(sid, now).is_some()
    }

    /// Forgets the sids whose grace is over.
    pub fn expire(&mut self, now: Instant) {
        while let Some(sid) = self.order.front() {
            match self.at.get(sid) {
                Some((at, _)) if now.duration_since(*at) < self.grace => break,
                _ => {}
            }
            if let Some(sid) = self.order.pop_front() {
                self.at.remove(&sid);
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
        let mut f = Farewells::new(GRACE);
        let t0 = Instant::now();
        f.remember(sid(1), (), t0);
        assert!(f.knows(&sid(1), t0 + GRACE / 2));
        assert!(!f.knows(&sid(2), t0));
        assert!(!f.knows(&sid(1), t0 + GRACE));
        f.expire(t0 + GRACE);
        assert_eq!(f.len(), 0);
    }

    #[test]
    fn a_moved_session_names_its_new_process_for_its_grace() {
        let mut moved = Moved::new(MOVED_GRACE);
        let t0 = Instant::now();
        moved.remember(sid(1), *b"abcdef", t0);
        moved.remember(sid(1), *b"zzzzzz", t0);
        assert_eq!(moved.get(&sid(1), t0 + GRACE), Some(b"abcdef"));
        assert_eq!(moved.get(&sid(1), t0 + MOVED_GRACE), None);
    }

    #[test]
    fn the_oldest_go_first_at_capacity() {
        let mut f = Farewells::new(GRACE);
        let t0 = Instant::now();
        let nth = |n: usize| {
            let mut bytes = [0u8; crate::engineio::sid::SID_RANDOM_BYTES];
            bytes[6..14].copy_from_slice(&(n as u64).to_le_bytes());
            Sid::new(0, bytes)
        };
        for n in 0..CAPACITY + 10 {
            f.remember(nth(n), (), t0);
        }
        assert_eq!(f.len(), CAPACITY);
        assert!(!f.knows(&nth(9), t0));
        assert!(f.knows(&nth(10), t0));
        assert!(f.knows(&nth(CAPACITY + 9), t0));
    }
}
