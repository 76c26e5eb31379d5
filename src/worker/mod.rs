//! One worker per core: the only place where the protocol cores, the runtime and the app
//! meet. `Worker::run` loops: `Driver::turn` → (sweep timers) → flush → (drain on
//! shutdown). Callbacks never write; they append to the cork and the worker writes once
//! per connection after the turn.
//!
//! Time is coarse: deadlines are kept in 100 ms ticks and checked by a sweep every
//! 250 ms (uWebSockets sweeps every 4 s), which costs a few ns per connection and no
//! timer structure per connection.

pub mod conn;
pub mod outbox;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;
use slab::Slab;

use crate::config::Limits;
use crate::http::{Reject, Request};
use crate::runtime::{ConnId, Driver, Sink};
use crate::ws::close::ClosePayload;
use crate::ws::{CloseCode, OpCode, Payload, ReadConfig, Role, Visitor, handshake};

use conn::{Conn, PINGED, Phase, READ_PAUSED, SHUT};
pub use outbox::Outbox;
use outbox::{CORK_BYTES, Pending, seal};

const TICK: Duration = Duration::from_millis(100);
const SWEEP_EVERY: Duration = Duration::from_millis(250);

/// What a server does with messages. One instance per worker, called on that worker's
/// thread only, so it needs no lock.
pub trait App: Send + 'static {
    /// Whether a WebSocket endpoint lives at `path`; others get 404.
    fn serves_path(&self, _path: &str) -> bool {
        true
    }
    /// A complete message from the peer.
    fn on_message(&mut self, out: &mut Outbox<'_>, text: bool, payload: Payload<'_>);
}

/// Counters kept per worker, summed when reported.
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub accepted: u64,
    pub refused_at_capacity: u64,
    pub handshakes_rejected: u64,
    pub protocol_errors: u64,
    pub idle_closed: u64,
    pub closed: u64,
    pub messages_in: u64,
}

/// A worker's state apart from its driver: it is the driver's `Sink`.
pub struct Core<A: App> {
    conns: Slab<Conn>,
    next_generation: u32,
    cork: BytesMut,
    pending: Pending,
    /// Connections whose out-queue should be offered to the kernel again.
    dirty: Vec<ConnId>,
    /// Connections to close after this turn's writes.
    doomed: Vec<ConnId>,
    app: A,
    read_cfg: ReadConfig,
    limits: Limits,
    origin: Instant,
    now: u32,
    pub stats: Stats,
}

fn ticks(d: Duration) -> u32 {
    (d.as_millis() / TICK.as_millis()).clamp(1, u128::from(u32::MAX / 2)) as u32
}

impl<A: App> Core<A> {
    pub fn new(app: A, limits: Limits) -> Self {
        Core {
            conns: Slab::new(),
            next_generation: 0,
            cork: BytesMut::with_capacity(CORK_BYTES),
            pending: Pending::default(),
            dirty: Vec::new(),
            doomed: Vec::new(),
            app,
            read_cfg: ReadConfig {
                role: Role::Server,
                max_message: limits.max_message,
            },
            limits,
            origin: Instant::now(),
            now: 0,
            stats: Stats::default(),
        }
    }

    pub fn connections(&self) -> usize {
        self.conns.len()
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.conns
            .get_mut(id.slot as usize)
            .filter(|c| c.generation == id.generation)
    }

    fn tick_clock(&mut self) {
        self.now = (self.origin.elapsed().as_millis() / TICK.as_millis()) as u32;
    }

    /// Request head bytes for a connection in `Handshake`.
    fn on_handshake_bytes(&mut self, id: ConnId, input: &mut [u8]) {
        let Core {
            conns,
            cork,
            app,
            limits,
            ..
        } = self;
        let Some(conn) = conns.get_mut(id.slot as usize) else {
            return;
        };
        let Phase::Handshake(head) = &mut conn.phase else {
            return;
        };
        let mut owned;
        let buf: &mut [u8] = if head.is_empty() {
            input
        } else {
            head.extend_from_slice(input);
            owned = std::mem::take(head);
            &mut owned
        };
        let outcome = match Request::parse(buf, limits.max_head) {
            Ok(None) => {
                // Keep the partial head (bounded: parse refuses past max_head).
                if let Phase::Handshake(head) = &mut conn.phase
                    && head.is_empty()
                {
                    head.extend_from_slice(buf);
                }
                return;
            }
            Ok(Some(req)) if !app.serves_path(req.path()) => Err(Reject::NotFound),
            Ok(Some(req)) => handshake::accept(&req).map(|resp| (resp, req.head_len)),
            Err(reject) => Err(reject),
        };
        match outcome {
            Ok((resp, head_len)) => {
                cork.extend_from_slice(resp.as_bytes());
                conn.phase = Phase::Open(Default::default());
                conn.deadline = self.now + ticks(limits.idle_timeout);
                // Frames pipelined behind the head.
                if head_len < buf.len() {
                    self.on_frame_bytes(id, &mut buf[head_len..]);
                }
            }
            Err(reject) => {
                tracing::debug!(
                    status = reject.status(),
                    why = reject.detail(),
                    "handshake refused"
                );
                self.stats.handshakes_rejected += 1;
                let mut resp = Vec::with_capacity(256);
                reject.write_to(&mut resp);
                cork.extend_from_slice(&resp);
                conn.phase = Phase::Linger;
                conn.deadline = self.now + ticks(limits.close_timeout);
            }
        }
    }

    /// WebSocket bytes for a connection in `Open` or `Closing`.
    fn on_frame_bytes(&mut self, id: ConnId, input: &mut [u8]) {
        let Core {
            conns,
            cork,
            pending,
            app,
            read_cfg,
            limits,
            now,
            stats,
            ..
        } = self;
        let Some(conn) = conns.get_mut(id.slot as usize) else {
            return;
        };
        let (reader, closing) = match &mut conn.phase {
            Phase::Open(r) => (r, false),
            Phase::Closing(r) => (r, true),
            _ => return,
        };
        let mut visitor = FrameVisitor {
            out: Outbox { cork, pending, id },
            app,
            closing,
            peer_close: None,
            messages: 0,
        };
        let result = reader.feed(input, read_cfg, &mut visitor);
        let (peer_close, messages) = (visitor.peer_close, visitor.messages);
        stats.messages_in += messages;
        let mut out = Outbox { cork, pending, id };
        match result {
            Err(violation) => {
                tracing::debug!(%violation, "failing connection");
                stats.protocol_errors += 1;
                let payload = ClosePayload::new(violation.close_code(), violation.reason());
                out.frame(OpCode::Close, payload.as_bytes());
            }
            Ok(()) => match peer_close {
                None => return,
                Some(code) if !closing => {
                    let payload = code.map(|c| ClosePayload::new(c, ""));
                    out.frame(
                        OpCode::Close,
                        payload.as_ref().map_or(&[], |p| p.as_bytes()),
                    );
                }
                Some(_) => {}
            },
        }
        conn.phase = Phase::Linger;
        conn.deadline = *now + ticks(limits.close_timeout);
    }

    /// Sends a close and waits for the peer's (idle timeout, shutdown).
    fn begin_close(&mut self, slot: usize, code: CloseCode, reason: &str) {
        let Some(conn) = self.conns.get_mut(slot) else {
            return;
        };
        let reader = match std::mem::replace(&mut conn.phase, Phase::Linger) {
            Phase::Open(r) => r,
            other => {
                conn.phase = other;
                return;
            }
        };
        conn.phase = Phase::Closing(reader);
        conn.deadline = self.now + ticks(self.limits.close_timeout);
        let id = ConnId {
            slot: slot as u32,
            generation: conn.generation,
        };
        let payload = ClosePayload::new(code, reason);
        let mut out = Outbox {
            cork: &mut self.cork,
            pending: &mut self.pending,
            id,
        };
        out.frame(OpCode::Close, payload.as_bytes());
        seal(&mut self.cork, &mut self.pending, id);
    }

    /// Fires the deadlines that have passed.
    fn sweep(&mut self) {
        let now = self.now;
        let mut expired = Vec::new();
        for (slot, conn) in self.conns.iter() {
            if conn.deadline <= now {
                expired.push(slot);
            }
        }
        for slot in expired {
            let Some(conn) = self.conns.get_mut(slot) else {
                continue;
            };
            let id = ConnId {
                slot: slot as u32,
                generation: conn.generation,
            };
            match conn.phase {
                Phase::Handshake(_) => {
                    let mut resp = Vec::with_capacity(256);
                    Reject::Timeout.write_to(&mut resp);
                    self.cork.extend_from_slice(&resp);
                    seal(&mut self.cork, &mut self.pending, id);
                    conn.phase = Phase::Linger;
                    conn.deadline = now + ticks(self.limits.close_timeout);
                }
                Phase::Open(_) if !conn.has(PINGED) => {
                    conn.set(PINGED, true);
                    conn.deadline = now + ticks(self.limits.idle_timeout);
                    let mut out = Outbox {
                        cork: &mut self.cork,
                        pending: &mut self.pending,
                        id,
                    };
                    out.frame(OpCode::Ping, b"");
                    seal(&mut self.cork, &mut self.pending, id);
                }
                Phase::Open(_) => {
                    self.stats.idle_closed += 1;
                    self.begin_close(slot, CloseCode::GOING_AWAY, "idle timeout");
                }
                Phase::Closing(_) | Phase::Linger => self.doomed.push(id),
            }
        }
    }

    /// Starts a graceful shutdown: 1001 to open connections, drop half-open ones.
    fn begin_drain(&mut self) {
        let slots: Vec<usize> = self.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            let Some(conn) = self.conns.get(slot) else {
                continue;
            };
            match conn.phase {
                Phase::Open(_) => {
                    self.begin_close(slot, CloseCode::GOING_AWAY, "server shutting down")
                }
                Phase::Handshake(_) => self.doomed.push(ConnId {
                    slot: slot as u32,
                    generation: conn.generation,
                }),
                _ => {}
            }
        }
    }

    /// Writes this turn's output, retries refused writes, sends FINs, closes the doomed.
    fn flush<D: Driver>(&mut self, driver: &mut D) {
        let mut pending = std::mem::take(&mut self.pending);
        let mut i = 0;
        while i < pending.ids.len() {
            let id = pending.ids[i];
            let mut j = i + 1;
            while j < pending.ids.len() && pending.ids[j] == id {
                j += 1;
            }
            self.deliver(driver, id, &pending.bufs[i..j]);
            i = j;
        }
        pending.clear();
        self.pending = pending;
        let dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            self.retry(driver, id);
        }
        self.dirty = dirty;
        self.dirty.clear();
        for id in std::mem::take(&mut self.doomed) {
            if self.conn_mut(id).is_some() {
                driver.close(id);
                self.conns.remove(id.slot as usize);
                self.stats.closed += 1;
            }
        }
        // Reclaim the cork's chunk now that its pieces are written (no allocation when
        // nothing still refers to it).
        self.cork.reserve(CORK_BYTES);
    }

    fn deliver<D: Driver>(&mut self, driver: &mut D, id: ConnId, bufs: &[bytes::Bytes]) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if conn.out.is_empty() {
            match driver.write(id, bufs) {
                Ok(n) => conn.out.push_unwritten(bufs, n),
                Err(_) => return self.doomed.push(id),
            }
        } else {
            conn.out.push_unwritten(bufs, 0);
        }
        self.after_write(driver, id);
    }

    fn retry<D: Driver>(&mut self, driver: &mut D, id: ConnId) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if !conn.out.is_empty() {
            match driver.write(id, conn.out.as_slices()) {
                Ok(n) => conn.out.advance(n),
                Err(_) => return self.doomed.push(id),
            }
        }
        self.after_write(driver, id);
    }

    /// Backpressure and the last step of closing, once the writes of a turn are done.
    fn after_write<D: Driver>(&mut self, driver: &mut D, id: ConnId) {
        let max_queued = self.limits.max_queued_bytes;
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let queued = conn.out.bytes();
        if queued > max_queued && !conn.has(READ_PAUSED) {
            conn.set(READ_PAUSED, true);
        } else if queued == 0 && conn.has(READ_PAUSED) {
            conn.set(READ_PAUSED, false);
            driver.resume_read(id);
        }
        if queued == 0 && matches!(conn.phase, Phase::Linger) && !conn.has(SHUT) {
            conn.set(SHUT, true);
            driver.shutdown_write(id);
        }
    }
}

/// Routes the reader's events for one connection to the app and the cork.
struct FrameVisitor<'a, A: App> {
    out: Outbox<'a>,
    app: &'a mut A,
    closing: bool,
    peer_close: Option<Option<CloseCode>>,
    messages: u64,
}

impl<A: App> Visitor for FrameVisitor<'_, A> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        if !self.closing {
            self.messages += 1;
            self.app.on_message(&mut self.out, text, payload);
        }
    }

    fn ping(&mut self, payload: &[u8]) {
        if !self.closing {
            self.out.frame(OpCode::Pong, payload);
        }
    }

    fn pong(&mut self, _payload: &[u8]) {}

    fn close(&mut self, code: Option<CloseCode>, _reason: &str) {
        self.peer_close = Some(code);
    }
}

impl<A: App> Sink for Core<A> {
    fn accepted(&mut self, peer: SocketAddr) -> Option<ConnId> {
        if self.conns.len() >= self.limits.max_connections_per_worker {
            self.stats.refused_at_capacity += 1;
            tracing::debug!(%peer, "refused: worker at --max-connections");
            return None;
        }
        self.stats.accepted += 1;
        self.next_generation = self.next_generation.wrapping_add(1);
        let deadline = self.now + ticks(self.limits.handshake_timeout);
        let slot = self.conns.insert(Conn::new(self.next_generation, deadline));
        Some(ConnId {
            slot: slot as u32,
            generation: self.next_generation,
        })
    }

    fn data(&mut self, id: ConnId, bytes: &mut [u8]) -> bool {
        let idle = ticks(self.limits.idle_timeout);
        let now = self.now;
        let Some(conn) = self.conn_mut(id) else {
            return false;
        };
        match conn.phase {
            Phase::Handshake(_) => self.on_handshake_bytes(id, bytes),
            Phase::Open(_) => {
                conn.set(PINGED, false);
                conn.deadline = now + idle;
                self.on_frame_bytes(id, bytes);
            }
            Phase::Closing(_) => self.on_frame_bytes(id, bytes),
            Phase::Linger => {}
        }
        seal(&mut self.cork, &mut self.pending, id);
        self.conn_mut(id).is_some_and(|c| !c.has(READ_PAUSED))
    }

    fn writable(&mut self, id: ConnId) {
        if self.conn_mut(id).is_some_and(|c| !c.out.is_empty()) {
            self.dirty.push(id);
        }
    }

    fn hangup(&mut self, id: ConnId) {
        if self.conn_mut(id).is_some() {
            self.doomed.push(id);
        }
    }

    fn woken(&mut self) {}
}

/// A worker: its core and the driver that feeds it.
pub struct Worker<D: Driver, A: App> {
    pub core: Core<A>,
    pub driver: D,
    shutdown: Arc<AtomicBool>,
    drain_timeout: Duration,
}

impl<D: Driver, A: App> Worker<D, A> {
    pub fn new(driver: D, app: A, limits: Limits, shutdown: Arc<AtomicBool>) -> Self {
        Worker {
            core: Core::new(app, limits),
            driver,
            shutdown,
            drain_timeout: limits.drain_timeout,
        }
    }

    /// Serves until shutdown is signalled and the drain completes or times out.
    pub fn run(&mut self) -> io::Result<Stats> {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let mut drain_deadline: Option<Instant> = None;
        loop {
            let wait = if self.core.pending.is_empty() {
                next_sweep.saturating_duration_since(Instant::now())
            } else {
                Duration::ZERO
            };
            self.driver.turn(Some(wait), &mut self.core)?;
            self.core.tick_clock();
            if Instant::now() >= next_sweep {
                self.core.sweep();
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
            if drain_deadline.is_none() && self.shutdown.load(Ordering::Relaxed) {
                self.driver.stop_accepting();
                self.core.begin_drain();
                drain_deadline = Some(Instant::now() + self.drain_timeout);
            }
            self.core.flush(&mut self.driver);
            if let Some(deadline) = drain_deadline {
                if self.core.conns.is_empty() {
                    return Ok(self.core.stats);
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        left = self.core.conns.len(),
                        "drain timeout: closing the remaining connections"
                    );
                    return Ok(self.core.stats);
                }
            }
        }
    }
}
