//! One worker per core: the only place where the protocol cores, the runtime, the fabric
//! and the app meet. `Worker::run` loops: `Driver::turn` → inbox (broadcasts from other
//! workers) → (sweep timers) → flush → (drain on shutdown). Callbacks never write; they
//! append to the cork or queue shared frames, and the worker writes once per connection
//! after the turn (every frame a connection got this turn in one `writev`).
//!
//! Flush order: connections whose own input produced output this turn (replies, acks,
//! a shootout `broadcastResult`) are written at once; everything else (fan-out) joins a
//! round robin (`outgoing.rs`) of which each flush writes `WRITE_BUDGET_CONNS`
//! connections before the loop polls again. A big fan-out is thus written in slices,
//! input keeps being read between them, and a connection reached later gets all the
//! frames queued by then in one `writev`.
//!
//! Slow consumers: a connection whose out-queue (what the kernel refused) exceeds
//! `max_queued_bytes` is no longer read from, loses volatile broadcasts, and is closed
//! with 1008 if it stays over for `slow_consumer_grace`, or at once if broadcasts push
//! it past twice the cap (`hub.rs`). Memory per connection is thereby bounded.
//!
//! Time is coarse: deadlines are kept in 100 ms ticks and checked by a sweep every
//! 250 ms (uWebSockets sweeps every 4 s), which costs a few ns per connection and no
//! timer structure per connection.

pub mod conn;
#[doc(hidden)]
pub mod harness;
pub mod hub;
pub mod outbox;
mod outgoing;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::config::Limits;
use crate::fabric::Fabric;
use crate::http::response::{Answer, write_ok};
use crate::http::{Reject, Request};
use crate::metrics::CloseReason;
use crate::runtime::{ConnId, Driver, Sink};
use crate::ws::close::ClosePayload;
use crate::ws::{CloseCode, OpCode, Payload, ReadConfig, Role, Visitor, handshake};

use conn::{Conn, FABRIC_PAUSED, OVER_CAP, PINGED, Phase, READ_PAUSED, REPLIED, SHUT, SLOW};
use hub::Hub;
pub use outbox::Outbox;
use outbox::{CORK_BYTES, seal};

const TICK: Duration = Duration::from_millis(100);
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// Connections written per flush before the loop polls for input again (a few ms of
/// `writev`s on loopback): a large fan-out is written in slices, and a connection
/// reached in a later slice gets every frame queued by then in one write.
const WRITE_BUDGET_CONNS: usize = 128;
/// At most this many frames for recipients (a 4-byte number each, six to a 32-byte
/// segment; a shared frame itself is held once) wait for later flushes; past it a flush
/// writes more than its budget. 2^22 is about 22 MiB of segments, and 200 broadcasts
/// queued for each of 20,000 connections.
const MAX_DEFERRED_PIECES: usize = 1 << 22;

/// What a server does with messages. One instance per worker, called on that worker's
/// thread only, so it needs no lock.
pub trait App: Send + 'static {
    /// Whether a WebSocket endpoint lives at `path`; others get 404.
    fn serves_path(&self, _path: &str) -> bool {
        true
    }
    /// Any request head at a served path, before the worker answers it (101, or a
    /// refusal): `Err` answers it and closes the connection (an Engine.IO error, say).
    fn check_request(&mut self, _req: &Request<'_>) -> Result<(), Answer> {
        Ok(())
    }
    /// The 101 for `req` is queued on `out`'s connection; frames may follow it.
    fn on_open(&mut self, _out: &mut Outbox<'_>, _req: &Request<'_>) {}
    /// A complete message from the peer.
    fn on_message(&mut self, out: &mut Outbox<'_>, text: bool, payload: Payload<'_>);
    /// The connection is gone, whatever the reason: drop what the app keeps for it.
    fn on_close(&mut self, _id: ConnId) {}
    /// Called every sweep (about every 250 ms) with the time, to run the app's timers.
    fn on_sweep(&mut self, _conns: &mut Conns<'_>, _now: Instant) {}
}

/// What `App::on_sweep` may do to any connection of its worker.
pub struct Conns<'a> {
    hub: &'a mut Hub,
    closes: &'a mut Vec<(ConnId, CloseCode, &'static str)>,
}

impl Conns<'_> {
    /// Runs `f` with an `Outbox` on connection `id` (which may be gone: sends to a gone
    /// connection are dropped at the flush).
    pub fn with(&mut self, id: ConnId, f: impl FnOnce(&mut Outbox<'_>)) {
        f(&mut Outbox {
            hub: &mut *self.hub,
            id,
        });
        seal(&mut self.hub.cork, &mut self.hub.outgoing, id);
    }

    /// Starts the close handshake on `id` after what was sent to it.
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &'static str) {
        self.closes.push((id, code, reason));
    }
}

/// Totals a worker reports when it stops (a snapshot of its metrics).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub accepted: u64,
    pub refused_at_capacity: u64,
    pub handshakes_rejected: u64,
    pub protocol_errors: u64,
    pub idle_closed: u64,
    pub slow_consumer_closed: u64,
    pub messages_in: u64,
    pub broadcast_deliveries: u64,
}

impl Stats {
    pub fn add(&mut self, other: &Stats) {
        self.accepted += other.accepted;
        self.refused_at_capacity += other.refused_at_capacity;
        self.handshakes_rejected += other.handshakes_rejected;
        self.protocol_errors += other.protocol_errors;
        self.idle_closed += other.idle_closed;
        self.slow_consumer_closed += other.slow_consumer_closed;
        self.messages_in += other.messages_in;
        self.broadcast_deliveries += other.broadcast_deliveries;
    }
}

/// A worker's state apart from its driver: it is the driver's `Sink`.
pub struct Core<A: App> {
    hub: Hub,
    next_generation: u32,
    /// Connections whose out-queue should be offered to the kernel again.
    dirty: Vec<ConnId>,
    /// Connections to close after this turn's writes.
    doomed: Vec<ConnId>,
    /// Connections over the queue cap, and the tick they went over.
    over_cap: Vec<(ConnId, u32)>,
    /// Scratch for one connection's vectored write.
    iov: Vec<bytes::Bytes>,
    iov_keep: Vec<bool>,
    /// Connections whose own input produced output this turn: written first.
    replied: Vec<ConnId>,
    /// Closes the app asked for during a sweep.
    app_closes: Vec<(ConnId, CloseCode, &'static str)>,
    app: A,
    read_cfg: ReadConfig,
    limits: Limits,
    origin: Instant,
    now: u32,
    draining: bool,
    slow_log: RateLimitedLog,
}

/// At most `PER_SECOND` lines a second; the rest are counted and summarised.
#[derive(Default)]
struct RateLimitedLog {
    window_start: Option<Instant>,
    in_window: u32,
    suppressed: u64,
}

impl RateLimitedLog {
    const PER_SECOND: u32 = 10;

    /// `Some(suppressed since the last line)` when a line may be logged now.
    fn allow(&mut self) -> Option<u64> {
        let now = Instant::now();
        if self
            .window_start
            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
        {
            self.window_start = Some(now);
            self.in_window = 0;
        }
        if self.in_window < Self::PER_SECOND {
            self.in_window += 1;
            Some(std::mem::take(&mut self.suppressed))
        } else {
            self.suppressed += 1;
            None
        }
    }
}

fn ticks(d: Duration) -> u32 {
    (d.as_millis() / TICK.as_millis()).clamp(1, u128::from(u32::MAX / 2)) as u32
}

impl<A: App> Core<A> {
    pub fn new(app: A, limits: Limits, fabric: Arc<Fabric>, index: usize) -> Self {
        Core {
            hub: Hub::new(
                fabric,
                index,
                limits.max_queued_bytes,
                limits.max_rooms_per_connection,
            ),
            next_generation: 0,
            dirty: Vec::new(),
            doomed: Vec::new(),
            over_cap: Vec::new(),
            iov: Vec::new(),
            iov_keep: Vec::new(),
            replied: Vec::new(),
            app_closes: Vec::new(),
            app,
            read_cfg: ReadConfig {
                role: Role::Server,
                max_message: limits.max_message,
            },
            limits,
            origin: Instant::now(),
            now: 0,
            draining: false,
            slow_log: RateLimitedLog::default(),
        }
    }

    pub fn connections(&self) -> usize {
        self.hub.conns.len()
    }

    /// Totals so far.
    pub fn stats(&self) -> Stats {
        let m = &self.hub.metrics;
        Stats {
            accepted: m.accepted.get(),
            refused_at_capacity: m.refused_at_capacity.get(),
            handshakes_rejected: m.closed(CloseReason::HandshakeRejected).get(),
            protocol_errors: m.closed(CloseReason::ProtocolError).get(),
            idle_closed: m.closed(CloseReason::IdleTimeout).get(),
            slow_consumer_closed: m.closed(CloseReason::SlowConsumer).get(),
            messages_in: m.messages_in.get(),
            broadcast_deliveries: m.broadcast_deliveries.get(),
        }
    }

    fn conn_mut(&mut self, id: ConnId) -> Option<&mut Conn> {
        self.hub
            .conns
            .get_mut(id.slot as usize)
            .filter(|c| c.generation == id.generation)
    }

    fn tick_clock(&mut self) {
        self.now = (self.origin.elapsed().as_millis() / TICK.as_millis()) as u32;
    }

    /// Request head bytes for a connection in `Handshake`.
    fn on_handshake_bytes(&mut self, id: ConnId, input: &mut [u8]) {
        let Hub {
            conns,
            cork,
            fabric,
            metrics,
            ..
        } = &mut self.hub;
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
        let outcome = match Request::parse(buf, self.limits.max_head) {
            Ok(None) => {
                // Keep the partial head (bounded: parse refuses past max_head).
                if let Phase::Handshake(head) = &mut conn.phase
                    && head.is_empty()
                {
                    head.extend_from_slice(buf);
                }
                return;
            }
            Ok(Some(req)) if req.upgrade.is_none() && req.path() == METRICS_PATH => {
                let body = fabric.render_metrics();
                let mut resp = Vec::with_capacity(body.len() + 128);
                if req.method == "GET" {
                    write_ok(&mut resp, "text/plain; version=0.0.4", body.as_bytes());
                } else {
                    Reject::BadRequest("use GET for /metrics").write_to(&mut resp);
                }
                cork.extend_from_slice(&resp);
                metrics.closed(CloseReason::Http).inc();
                conn.phase = Phase::Linger;
                conn.deadline = self.now + ticks(self.limits.close_timeout);
                return;
            }
            Ok(Some(req)) if !self.app.serves_path(req.path()) => Err(Reject::NotFound),
            Ok(Some(req)) => match self.app.check_request(&req) {
                Err(answer) => {
                    tracing::debug!(status = answer.status, "request refused by the app");
                    let mut resp = Vec::with_capacity(128 + answer.body.len());
                    answer.write_to(&mut resp);
                    cork.extend_from_slice(&resp);
                    metrics.closed(CloseReason::HandshakeRejected).inc();
                    conn.phase = Phase::Linger;
                    conn.deadline = self.now + ticks(self.limits.close_timeout);
                    return;
                }
                Ok(()) => handshake::accept(&req).map(|resp| (resp, req)),
            },
            Err(reject) => Err(reject),
        };
        match outcome {
            Ok((resp, req)) => {
                cork.extend_from_slice(resp.as_bytes());
                conn.phase = Phase::Open(Default::default());
                conn.deadline = self.now + ticks(self.limits.idle_timeout);
                let head_len = req.head_len;
                self.app.on_open(
                    &mut Outbox {
                        hub: &mut self.hub,
                        id,
                    },
                    &req,
                );
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
                metrics.closed(CloseReason::HandshakeRejected).inc();
                let mut resp = Vec::with_capacity(256);
                reject.write_to(&mut resp);
                cork.extend_from_slice(&resp);
                conn.phase = Phase::Linger;
                conn.deadline = self.now + ticks(self.limits.close_timeout);
            }
        }
    }

    /// WebSocket bytes for a connection in `Open` or `Closing`.
    fn on_frame_bytes(&mut self, id: ConnId, input: &mut [u8]) {
        let Some(conn) = self.hub.conns.get_mut(id.slot as usize) else {
            return;
        };
        // The reader leaves the slab for the call so that the app may reach every
        // connection (broadcast) while this one's frames are parsed.
        let (mut reader, closing) = match &mut conn.phase {
            Phase::Open(r) => (std::mem::take(r), false),
            Phase::Closing(r) => (std::mem::take(r), true),
            _ => return,
        };
        let mut visitor = FrameVisitor {
            out: Outbox {
                hub: &mut self.hub,
                id,
            },
            app: &mut self.app,
            closing,
            peer_close: None,
            messages: 0,
            app_close: None,
        };
        let result = reader.feed(input, &self.read_cfg, &mut visitor);
        let (peer_close, messages, app_close) =
            (visitor.peer_close, visitor.messages, visitor.app_close);
        let hub = &mut self.hub;
        hub.metrics.messages_in.add(messages);
        let Some(conn) = hub.conns.get_mut(id.slot as usize) else {
            return;
        };
        match &mut conn.phase {
            Phase::Open(r) | Phase::Closing(r) => *r = reader,
            _ => return,
        }
        let mut out = Outbox { hub, id };
        let reason = match result {
            Err(violation) => {
                tracing::debug!(%violation, "failing connection");
                let payload = ClosePayload::new(violation.close_code(), violation.reason());
                out.frame(OpCode::Close, payload.as_bytes());
                CloseReason::ProtocolError
            }
            Ok(()) => match (peer_close, app_close) {
                (Some(_), _) if closing => CloseReason::Peer,
                (Some(code), _) => {
                    let payload = code.map(|c| ClosePayload::new(c, ""));
                    out.frame(
                        OpCode::Close,
                        payload.as_ref().map_or(&[], |p| p.as_bytes()),
                    );
                    CloseReason::Peer
                }
                (None, Some((code, why))) if !closing => {
                    tracing::debug!(code = code.0, why, "app closes connection");
                    out.hub.metrics.closed(CloseReason::App).inc();
                    return self.begin_close(id.slot as usize, code, why);
                }
                (None, _) => return,
            },
        };
        if !(closing && reason == CloseReason::Peer) {
            self.hub.metrics.closed(reason).inc();
        }
        if let Some(conn) = self.hub.conns.get_mut(id.slot as usize) {
            conn.phase = Phase::Linger;
            conn.deadline = self.now + ticks(self.limits.close_timeout);
        }
    }

    /// Sends a close and waits for the peer's (idle timeout, shutdown, app).
    fn begin_close(&mut self, slot: usize, code: CloseCode, reason: &str) {
        let Some(conn) = self.hub.conns.get_mut(slot) else {
            return;
        };
        if !conn.start_closing() {
            return;
        }
        conn.deadline = self.now + ticks(self.limits.close_timeout);
        let id = ConnId {
            slot: slot as u32,
            generation: conn.generation,
        };
        let payload = ClosePayload::new(code, reason);
        let mut out = Outbox {
            hub: &mut self.hub,
            id,
        };
        out.frame(OpCode::Close, payload.as_bytes());
        seal(&mut self.hub.cork, &mut self.hub.outgoing, id);
    }

    /// Closes a slow consumer: drops what it has not been sent (except a frame already
    /// partly written), queues a 1008 close behind it, and stops sending it data.
    fn close_slow(&mut self, id: ConnId) {
        let now = self.now;
        let close_ticks = ticks(self.limits.close_timeout);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if !conn.start_closing() {
            return;
        }
        let queued = conn.out.bytes();
        conn.set(SLOW, true);
        conn.out.truncate_to_front();
        let payload = ClosePayload::new(CloseCode::POLICY_VIOLATION, "slow consumer");
        let head =
            crate::ws::frame::FrameHead::new(true, OpCode::Close, payload.as_bytes().len(), None);
        let mut frame = BytesMut::with_capacity(head.as_bytes().len() + payload.as_bytes().len());
        frame.extend_from_slice(head.as_bytes());
        frame.extend_from_slice(payload.as_bytes());
        conn.out.push_back(frame.freeze());
        conn.deadline = now + close_ticks;
        self.hub.metrics.closed(CloseReason::SlowConsumer).inc();
        self.dirty.push(id);
        if let Some(suppressed) = self.slow_log.allow() {
            tracing::warn!(
                worker = self.hub.index,
                conn = id.slot,
                queued,
                cap = self.limits.max_queued_bytes,
                suppressed,
                "closing slow consumer (1008): outbound queue stayed over --max-queued-bytes"
            );
        }
    }

    /// Fires the deadlines that have passed and the slow-consumer grace periods.
    fn sweep(&mut self) {
        let now = self.now;
        let mut expired = Vec::new();
        let mut queued_total = 0u64;
        for (slot, conn) in self.hub.conns.iter() {
            queued_total += conn.out.bytes() as u64;
            if conn.deadline <= now {
                expired.push(slot);
            }
        }
        self.hub.metrics.queued_bytes.set(queued_total);
        self.hub.outgoing.shrink_when_idle();
        self.hub
            .metrics
            .rooms
            .set(self.hub.rooms.room_count() as u64);
        for slot in expired {
            let Some(conn) = self.hub.conns.get_mut(slot) else {
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
                    self.hub.cork.extend_from_slice(&resp);
                    seal(&mut self.hub.cork, &mut self.hub.outgoing, id);
                    conn.phase = Phase::Linger;
                    conn.deadline = now + ticks(self.limits.close_timeout);
                    self.hub
                        .metrics
                        .closed(CloseReason::HandshakeRejected)
                        .inc();
                }
                Phase::Open(_) if !conn.has(PINGED) => {
                    conn.set(PINGED, true);
                    conn.deadline = now + ticks(self.limits.idle_timeout);
                    let mut out = Outbox {
                        hub: &mut self.hub,
                        id,
                    };
                    out.frame(OpCode::Ping, b"");
                    seal(&mut self.hub.cork, &mut self.hub.outgoing, id);
                }
                Phase::Open(_) => {
                    self.hub.metrics.closed(CloseReason::IdleTimeout).inc();
                    self.begin_close(slot, CloseCode::GOING_AWAY, "idle timeout");
                }
                Phase::Closing(_) | Phase::Linger => self.doomed.push(id),
            }
        }
        let grace = ticks(self.limits.slow_consumer_grace);
        let cap = self.limits.max_queued_bytes;
        let mut over = std::mem::take(&mut self.over_cap);
        over.retain(|&(id, since)| {
            let Some(conn) = self.conn_mut(id) else {
                return false;
            };
            if conn.out.bytes() <= cap || !matches!(conn.phase, Phase::Open(_)) {
                conn.set(OVER_CAP, false);
                return false;
            }
            if now.wrapping_sub(since) >= grace {
                self.hub.slow.push(id);
                return false;
            }
            true
        });
        self.over_cap = over;
        let mut closes = std::mem::take(&mut self.app_closes);
        self.app.on_sweep(
            &mut Conns {
                hub: &mut self.hub,
                closes: &mut closes,
            },
            Instant::now(),
        );
        for (id, code, reason) in closes.drain(..) {
            if self.conn_mut(id).is_some() {
                self.hub.metrics.closed(CloseReason::App).inc();
                self.begin_close(id.slot as usize, code, reason);
            }
        }
        self.app_closes = closes;
    }

    /// Starts a graceful shutdown: 1001 to open connections, drop half-open ones.
    fn begin_drain(&mut self) {
        self.draining = true;
        let slots: Vec<usize> = self.hub.conns.iter().map(|(slot, _)| slot).collect();
        for slot in slots {
            let Some(conn) = self.hub.conns.get(slot) else {
                continue;
            };
            match conn.phase {
                Phase::Open(_) => {
                    self.hub.metrics.closed(CloseReason::Shutdown).inc();
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

    /// Removes a connection: its socket, its slot, its rooms.
    fn release<D: Driver>(&mut self, driver: &mut D, id: ConnId) {
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if matches!(conn.phase, Phase::Open(_) | Phase::Handshake(_)) {
            let reason = if self.draining {
                CloseReason::Shutdown
            } else {
                CloseReason::Peer
            };
            self.hub.metrics.closed(reason).inc();
        }
        driver.close(id);
        self.app.on_close(id);
        self.hub.outgoing.forget(id);
        self.hub.conns.remove(id.slot as usize);
        self.hub.rooms.leave_all(id.slot);
        self.hub.metrics.open.set(self.hub.conns.len() as u64);
    }

    /// Writes this turn's output, retries refused writes, sends FINs, closes the doomed.
    fn flush<D: Driver>(&mut self, driver: &mut D) {
        for id in std::mem::take(&mut self.hub.slow) {
            self.close_slow(id);
        }
        if self.hub.push_backlog_and_notify() && !self.hub.fabric_paused.is_empty() {
            for id in std::mem::take(&mut self.hub.fabric_paused) {
                if let Some(conn) = self.conn_mut(id) {
                    conn.set(FABRIC_PAUSED, false);
                    if !conn.has(READ_PAUSED) {
                        driver.resume_read(id);
                    }
                }
            }
        }
        let mut iov = std::mem::take(&mut self.iov);
        let mut keep = std::mem::take(&mut self.iov_keep);
        // Replies first: a sender's answer (a shootout `broadcastResult`, an ack, a
        // handshake) never waits for a fan-out. Then a budget of the others, round
        // robin; past the budget the loop polls for input before writing more, so a
        // connection reached later gets this turn's frames and the next turns' in one
        // write. What waits is bounded.
        let mut write_waiting = |core: &mut Self, id: ConnId| {
            core.hub.outgoing.take(id, &mut iov, &mut keep);
            core.deliver(driver, id, &iov, &keep);
            iov.clear();
            keep.clear();
        };
        let mut replied = std::mem::take(&mut self.replied);
        for &id in &replied {
            write_waiting(self, id);
        }
        replied.clear();
        self.replied = replied;
        let mut written = 0;
        while written < WRITE_BUDGET_CONNS || self.hub.outgoing.len() > MAX_DEFERRED_PIECES {
            let Some(id) = self.hub.outgoing.next_ready() else {
                break;
            };
            write_waiting(self, id);
            written += 1;
        }
        self.hub
            .metrics
            .deferred_pieces
            .set(self.hub.outgoing.len() as u64);
        self.iov = iov;
        self.iov_keep = keep;
        let dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            self.retry(driver, id);
        }
        self.dirty = dirty;
        self.dirty.clear();
        for id in std::mem::take(&mut self.doomed) {
            self.release(driver, id);
        }
        // Reclaim the cork's chunk now that its pieces are written (no allocation when
        // nothing still refers to it).
        self.hub.cork.reserve(CORK_BYTES);
    }

    fn deliver<D: Driver>(
        &mut self,
        driver: &mut D,
        id: ConnId,
        bufs: &[bytes::Bytes],
        keep: &[bool],
    ) {
        let metrics = Arc::clone(&self.hub.metrics);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        conn.set(REPLIED, false);
        if conn.has(SLOW) {
            // Condemned: its 1008 close is already queued; data after it is dropped.
            return;
        }
        if conn.out.is_empty() {
            match driver.write(id, bufs) {
                Ok(n) => {
                    metrics.bytes_out.add(n as u64);
                    conn.out.push_unwritten(bufs, keep, n)
                }
                Err(_) => return self.doomed.push(id),
            }
        } else {
            conn.out.push_unwritten(bufs, keep, 0);
        }
        self.after_write(driver, id);
    }

    fn retry<D: Driver>(&mut self, driver: &mut D, id: ConnId) {
        let metrics = Arc::clone(&self.hub.metrics);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        if !conn.out.is_empty() {
            match driver.write(id, conn.out.as_slices()) {
                Ok(n) => {
                    metrics.bytes_out.add(n as u64);
                    conn.out.advance(n)
                }
                Err(_) => return self.doomed.push(id),
            }
        }
        self.after_write(driver, id);
    }

    /// Backpressure and the last step of closing, once the writes of a turn are done.
    fn after_write<D: Driver>(&mut self, driver: &mut D, id: ConnId) {
        let max_queued = self.limits.max_queued_bytes;
        let now = self.now;
        let Some(conn) = self
            .hub
            .conns
            .get_mut(id.slot as usize)
            .filter(|c| c.generation == id.generation)
        else {
            return;
        };
        let queued = conn.out.bytes();
        if queued > max_queued {
            if !conn.has(READ_PAUSED) {
                conn.set(READ_PAUSED, true);
            }
            if !conn.has(OVER_CAP) && matches!(conn.phase, Phase::Open(_)) {
                conn.set(OVER_CAP, true);
                self.over_cap.push((id, now));
            }
        } else if queued == 0 && conn.has(READ_PAUSED) {
            conn.set(READ_PAUSED, false);
            if !conn.has(FABRIC_PAUSED) {
                driver.resume_read(id);
            }
        }
        if queued == 0 && matches!(conn.phase, Phase::Linger) && !conn.has(SHUT) {
            conn.set(SHUT, true);
            driver.shutdown_write(id);
        }
    }
}

/// Where `/metrics` is served (a plain GET, not a WebSocket upgrade).
pub const METRICS_PATH: &str = "/metrics";

/// Routes the reader's events for one connection to the app and the cork.
struct FrameVisitor<'a, A: App> {
    out: Outbox<'a>,
    app: &'a mut A,
    closing: bool,
    peer_close: Option<Option<CloseCode>>,
    messages: u64,
    app_close: Option<(CloseCode, &'static str)>,
}

impl<A: App> Visitor for FrameVisitor<'_, A> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        if !self.closing {
            self.messages += 1;
            self.app.on_message(&mut self.out, text, payload);
            if let Some(request) = self.out.hub.close_request.take() {
                self.app_close = Some(request);
                self.closing = true;
            }
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
        if self.hub.conns.len() >= self.limits.max_connections_per_worker {
            self.hub.metrics.refused_at_capacity.inc();
            tracing::debug!(%peer, "refused: worker at --max-connections");
            return None;
        }
        self.hub.metrics.accepted.inc();
        self.next_generation = self.next_generation.wrapping_add(1);
        let deadline = self.now + ticks(self.limits.handshake_timeout);
        let slot = self
            .hub
            .conns
            .insert(Conn::new(self.next_generation, deadline));
        self.hub.metrics.open.set(self.hub.conns.len() as u64);
        Some(ConnId {
            slot: slot as u32,
            generation: self.next_generation,
        })
    }

    fn data(&mut self, id: ConnId, bytes: &mut [u8]) -> bool {
        let idle = ticks(self.limits.idle_timeout);
        let now = self.now;
        self.hub.metrics.bytes_in.add(bytes.len() as u64);
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
        seal(&mut self.hub.cork, &mut self.hub.outgoing, id);
        if self.hub.outgoing.has(id)
            && let Some(conn) = self.conn_mut(id)
            && !conn.has(REPLIED)
        {
            conn.set(REPLIED, true);
            self.replied.push(id);
        }
        self.conn_mut(id)
            .is_some_and(|c| !c.has(READ_PAUSED) && !c.has(FABRIC_PAUSED))
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
    /// Worker `index` of `fabric`.
    pub fn new(
        driver: D,
        app: A,
        limits: Limits,
        fabric: Arc<Fabric>,
        index: usize,
        shutdown: Arc<AtomicBool>,
    ) -> Self {
        Worker {
            core: Core::new(app, limits, fabric, index),
            driver,
            shutdown,
            drain_timeout: limits.drain_timeout,
        }
    }

    /// Serves until shutdown is signalled and the drain completes or times out.
    pub fn run(&mut self) -> io::Result<Stats> {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let mut drain_deadline: Option<Instant> = None;
        let fabric = Arc::clone(&self.core.hub.fabric);
        let index = self.core.hub.index;
        let mut inbox_waiting = false;
        loop {
            let busy = inbox_waiting || !self.core.hub.outgoing.is_empty();
            let wait = if busy || !fabric.park(index) {
                Duration::ZERO
            } else {
                next_sweep.saturating_duration_since(Instant::now())
            };
            let turn = self.driver.turn(Some(wait), &mut self.core);
            fabric.unpark(index);
            turn?;
            inbox_waiting = self.core.hub.drain_inbox();
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
                if self.core.hub.conns.is_empty() {
                    return Ok(self.core.stats());
                }
                if Instant::now() >= deadline {
                    tracing::warn!(
                        left = self.core.hub.conns.len(),
                        "drain timeout: closing the remaining connections"
                    );
                    return Ok(self.core.stats());
                }
            }
        }
    }
}
