//! A fleet: many client connections served by one thread's mio loop, each with a
//! caller-defined state `S`. The `broadcast` and `fanout` modes run one fleet per
//! generator thread and decide what each connection does in a closure passed to
//! [`Fleet::turn`].
//!
//! Invariants:
//! - Connects go through a [`Dialer`] (at most [`CONCURRENCY`] handshakes in progress,
//!   source addresses round robin); a handshake older than [`CONNECT_TIMEOUT`] is failed
//!   by [`Fleet::expire`].
//! - After the caller's closure has read a connection, everything it queued leaves in one
//!   `write` ([`Client::flush`]).
//! - A connection that fails or is closed by the server is removed at once, counted
//!   (`connect_failed` before the handshake completed, `lost` after), and its state is
//!   handed back through [`Fleet::take_dropped`] so the caller can account for it. So
//!   every connect started ends up open, or handshaking, or in `take_dropped` (a connect
//!   that fails at once too, with a fresh state).
//! - The fleet's [`Waker`] token never names a connection.

use std::io;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::client::{Client, Dialer, Phase, XorShift};
use super::report::Target;

/// Handshakes still unfinished after this are failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once, per fleet.
pub const CONCURRENCY: usize = 256;
/// The token of the fleet's waker.
const WAKE: Token = Token(usize::MAX);

/// One connection and its caller-defined state.
#[derive(Debug)]
pub struct Member<S> {
    pub client: Client,
    pub state: S,
}

/// What happened to a fleet's connections so far.
#[derive(Debug, Default)]
pub struct Counts {
    /// Handshakes completed.
    pub opened: usize,
    /// Connects that failed before or during the handshake.
    pub connect_failed: usize,
    /// Open connections that failed or were closed by the server.
    pub lost: usize,
    /// The first error seen, for the summary.
    pub first_error: Option<String>,
}

impl Counts {
    /// Connections open right now.
    pub fn open(&self) -> usize {
        self.opened - self.lost
    }

    fn error(&mut self, what: String) {
        tracing::debug!(error = %what, "connection failed");
        self.first_error.get_or_insert(what);
    }
}

/// Connections, their states and the loop that serves them.
#[derive(Debug)]
pub struct Fleet<S> {
    poll: Poll,
    events: Events,
    scratch: Vec<u8>,
    rng: XorShift,
    dialer: Dialer,
    members: Slab<Member<S>>,
    dropped: Vec<(S, bool)>,
    pub counts: Counts,
}

impl<S> Fleet<S> {
    /// An empty fleet that will connect to `target` from `sources` source addresses.
    pub fn new(target: Target, sources: usize, salt: u64) -> io::Result<Fleet<S>> {
        Ok(Fleet {
            poll: Poll::new()?,
            events: Events::with_capacity(1024),
            scratch: vec![0u8; 256 << 10],
            rng: XorShift::from_time(salt),
            dialer: Dialer::new(target, sources, CONCURRENCY, None),
            members: Slab::new(),
            dropped: Vec::new(),
            counts: Counts::default(),
        })
    }

    /// A waker that makes the current or next [`Fleet::turn`] return early.
    pub fn waker(&self) -> io::Result<Waker> {
        Waker::new(self.poll.registry(), WAKE)
    }

    /// Starts connects, as many as the dialer allows now, until `wanted` have been
    /// started in total; each new connection's state comes from `init`.
    pub fn dial(&mut self, wanted: usize, mut init: impl FnMut() -> S) {
        let now = Instant::now();
        while self.dialer.started < wanted && self.dialer.ready(now).is_ok() {
            let mut client = match self.dialer.dial(&mut self.rng) {
                Ok(c) => c,
                Err(e) => {
                    self.counts.connect_failed += 1;
                    self.counts.error(format!("connect: {e}"));
                    self.dropped.push((init(), false));
                    continue;
                }
            };
            let entry = self.members.vacant_entry();
            let interest = Interest::READABLE | Interest::WRITABLE;
            match self
                .poll
                .registry()
                .register(&mut client.stream, Token(entry.key()), interest)
            {
                Ok(()) => {
                    entry.insert(Member {
                        client,
                        state: init(),
                    });
                }
                Err(e) => {
                    self.dialer.in_progress -= 1;
                    self.counts.connect_failed += 1;
                    self.counts.error(format!("register: {e}"));
                    self.dropped.push((init(), false));
                }
            }
        }
    }

    /// Polls once (up to `timeout`) and lets `on_read` read each ready connection (it
    /// must call `client.read` and return its result); then flushes what it queued.
    /// Returns whether the waker fired.
    pub fn turn<F>(&mut self, timeout: Duration, mut on_read: F) -> io::Result<bool>
    where
        F: FnMut(&mut Client, &mut S, &mut [u8], &mut XorShift) -> io::Result<bool>,
    {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(false),
            Err(e) => return Err(e),
        }
        let mut woken = false;
        for event in self.events.iter() {
            let token = event.token();
            if token == WAKE {
                woken = true;
                continue;
            }
            let Some(m) = self.members.get_mut(token.0) else {
                continue;
            };
            let was_open = m.client.phase == Phase::Open;
            let read = on_read(
                &mut m.client,
                &mut m.state,
                &mut self.scratch,
                &mut self.rng,
            );
            let flushed = m.client.flush();
            let failure = match read {
                Ok(true) if m.client.closed_by_peer() => {
                    Some("the server closed the connection (close frame)".to_string())
                }
                Ok(true) => flushed.err().map(|e| format!("write: {e}")),
                Ok(false) => Some("the server closed the connection (EOF)".to_string()),
                Err(e) => Some(e.to_string()),
            };
            let now_open = m.client.phase == Phase::Open;
            if !was_open && (now_open || failure.is_some()) {
                self.dialer.in_progress -= 1;
            }
            if !was_open && now_open {
                self.counts.opened += 1;
            }
            if let Some(e) = failure {
                if now_open {
                    self.counts.lost += 1;
                } else {
                    self.counts.connect_failed += 1;
                }
                self.counts.error(e);
                let m = self.members.remove(token.0);
                self.dropped.push((m.state, now_open));
            }
        }
        Ok(woken)
    }

    /// Calls `f` on every open connection, then flushes what it queued.
    pub fn each_open(&mut self, mut f: impl FnMut(&mut Client, &mut S, &mut XorShift)) {
        let mut failed = Vec::new();
        for (key, m) in self.members.iter_mut() {
            if m.client.phase != Phase::Open {
                continue;
            }
            f(&mut m.client, &mut m.state, &mut self.rng);
            if let Err(e) = m.client.flush() {
                failed.push((key, format!("write: {e}")));
            }
        }
        for (key, e) in failed {
            self.fail(key, e);
        }
    }

    /// Fails every connection for which `why` gives a reason.
    pub fn fail_where(&mut self, mut why: impl FnMut(&Client, &S) -> Option<String>) {
        let doomed: Vec<(usize, String)> = self
            .members
            .iter()
            .filter_map(|(key, m)| why(&m.client, &m.state).map(|e| (key, e)))
            .collect();
        for (key, e) in doomed {
            self.fail(key, e);
        }
    }

    /// Fails handshakes older than [`CONNECT_TIMEOUT`].
    pub fn expire(&mut self, now: Instant) {
        self.fail_where(|c, _| {
            (c.phase == Phase::Handshaking && now.duration_since(c.started) > CONNECT_TIMEOUT)
                .then(|| format!("no handshake response within {CONNECT_TIMEOUT:?}"))
        });
    }

    fn fail(&mut self, key: usize, e: String) {
        let Some(m) = self.members.try_remove(key) else {
            return;
        };
        let open = m.client.phase == Phase::Open;
        if open {
            self.counts.lost += 1;
        } else {
            self.dialer.in_progress -= 1;
            self.counts.connect_failed += 1;
        }
        self.counts.error(e);
        self.dropped.push((m.state, open));
    }

    /// The states of connections removed since the last call, with whether each was open.
    pub fn take_dropped(&mut self) -> Vec<(S, bool)> {
        std::mem::take(&mut self.dropped)
    }
}
