//! Admission control: whether a worker takes a new TCP connection, decided at accept,
//! before the connection gets a slot or any buffer.
//!
//! Two gates, in order:
//! - the connection cap (`Limits::max_connections_per_worker`, `--max-connections` split
//!   over the workers);
//! - a token bucket on new connections (`--accept-rate N`: N a second per worker, burst
//!   N), so that a reconnect storm is let in at a pace the worker can serve while its
//!   existing clients keep being served.
//!
//! A refused connection is answered with one fixed response (`answer`), the same for a
//! WebSocket upgrade and an Engine.IO polling handshake: `503 Service Unavailable` with
//! `Retry-After` and `Connection: close`. The driver writes it and closes the socket;
//! nothing is allocated for it here. Refusals are counted by reason
//! (`throng_refused_total{reason=...}`).
//!
//! Invariants: the bucket never holds more than its burst nor less than zero tokens;
//! time only moves forward for it (an earlier `now` adds nothing).

use std::time::Instant;

use crate::metrics::RefuseReason;

/// A token bucket: `rate` tokens a second, at most `burst` kept. Time is passed in.
#[derive(Clone, Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    /// A full bucket (`burst` tokens) refilled at `per_second`.
    pub fn new(per_second: u32, burst: u32, now: Instant) -> TokenBucket {
        TokenBucket {
            rate: f64::from(per_second),
            burst: f64::from(burst.max(1)),
            tokens: f64::from(burst.max(1)),
            last: now,
        }
    }

    /// Takes one token if there is one.
    pub fn take(&mut self, now: Instant) -> bool {
        if now > self.last {
            let earned = now.duration_since(self.last).as_secs_f64() * self.rate;
            self.tokens = (self.tokens + earned).min(self.burst);
            self.last = now;
        }
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// One worker's gates and the answer a refused connection gets.
#[derive(Clone, Debug)]
pub struct Admission {
    max_connections: usize,
    bucket: Option<TokenBucket>,
    answer: Vec<u8>,
}

impl Admission {
    /// At most `max_connections` held; `accept_rate` new connections a second (burst
    /// the same) if set; refusals tell the client to retry after `retry_after_secs`.
    pub fn new(
        max_connections: usize,
        accept_rate: Option<u32>,
        retry_after_secs: u32,
        now: Instant,
    ) -> Admission {
        Admission {
            max_connections,
            bucket: accept_rate
                .filter(|&n| n > 0)
                .map(|n| TokenBucket::new(n, n, now)),
            answer: busy_answer(retry_after_secs),
        }
    }

    /// Whether a new connection may be taken while `open` are held.
    pub fn admit(&mut self, open: usize, now: Instant) -> Result<(), RefuseReason> {
        if open >= self.max_connections {
            return Err(RefuseReason::MaxConnections);
        }
        match self.bucket.as_mut().map(|b| b.take(now)) {
            Some(false) => Err(RefuseReason::AcceptRate),
            _ => Ok(()),
        }
    }

    /// The bytes a refused connection is sent before it is closed.
    pub fn answer(&self) -> &[u8] {
        &self.answer
    }
}

/// `503 Service Unavailable` with `Retry-After`, closing the connection.
fn busy_answer(retry_after_secs: u32) -> Vec<u8> {
    let body = "server busy: retry later\n";
    format!(
        "HTTP/1.1 503 Service Unavailable\r\nRetry-After: {retry_after_secs}\r\n\
         Content-Type: text/plain\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let t0 = Instant::now();
        let mut b = TokenBucket::new(10, 10, t0);
        assert_eq!((0..20).filter(|_| b.take(t0)).count(), 10);
        // 100 ms later: one more token.
        let t1 = t0 + Duration::from_millis(100);
        assert!(b.take(t1));
        assert!(!b.take(t1));
        // A long pause refills to the burst, no more.
        let t2 = t1 + Duration::from_secs(60);
        assert_eq!((0..20).filter(|_| b.take(t2)).count(), 10);
        // Time going back adds nothing.
        assert!(!b.take(t0));
    }

    #[test]
    fn cap_is_checked_before_the_bucket() {
        let t0 = Instant::now();
        let mut a = Admission::new(2, Some(1), 7, t0);
        assert_eq!(a.admit(2, t0), Err(RefuseReason::MaxConnections));
        assert_eq!(a.admit(0, t0), Ok(()));
        assert_eq!(a.admit(1, t0), Err(RefuseReason::AcceptRate));
        assert_eq!(a.admit(1, t0 + Duration::from_secs(1)), Ok(()));
        let text = String::from_utf8(a.answer().to_vec()).expect("ascii");
        assert!(text.starts_with("HTTP/1.1 503 "));
        assert!(text.contains("\r\nRetry-After: 7\r\n"));
        let (head, body) = text.split_once("\r\n\r\n").expect("head");
        assert!(head.contains(&format!("Content-Length: {}", body.len())));
    }

    #[test]
    fn no_rate_means_only_the_cap() {
        let t0 = Instant::now();
        let mut a = Admission::new(usize::MAX, None, 1, t0);
        assert!((0..100_000).all(|i| a.admit(i, t0).is_ok()));
    }
}
