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
//! Plain HTTP (Engine.IO long-polling): an app that serves HTTP at a path
//! (`App::http_body_limit`) gets each request with its whole body (`Content-Length`,
//! bounded: over the limit → 413) in `App::on_http`, and answers it then or later
//! (`Conns::respond`: a held long-poll). Connections are kept alive between requests.
//! A request whose session lives on another worker (`App::owner`) is handed over with
//! its socket and the bytes read so far, through that worker's inbox. Sessions without
//! a socket of their own are mailboxes (`Conns::open_mailbox`, see `conn.rs`).
//!
//! Time is coarse: deadlines are kept in 100 ms ticks and checked by a sweep every
//! 250 ms (uWebSockets sweeps every 4 s), which costs a few ns per connection and no
//! timer structure per connection.

pub mod admission;
pub mod conn;
mod drain;
#[doc(hidden)]
pub mod harness;
pub mod hub;
pub mod ops;
pub mod outbox;
mod outgoing;

use std::io;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};

use crate::config::Limits;
use crate::fabric::Fabric;
use crate::fabric::{Handover, Inbound};
use crate::http::request::{ChunkError, decode_chunked};
use crate::http::response::{Answer, write_response};
use crate::http::{Reject, Request};
use crate::metrics::{CloseReason, RefuseReason};
use crate::runtime::{ConnId, Driver, Sink};
use crate::ws::close::ClosePayload;
use crate::ws::{CloseCode, OpCode, Payload, ReadConfig, Role, Visitor, handshake};

use conn::{
    BODY_PENDING, CLOSE_AFTER, Conn, FABRIC_PAUSED, MAILBOX, OVER_CAP, PINGED, Phase, READ_PAUSED,
    REPLIED, SERVED, SHUT, SLOW,
};
use hub::Hub;
pub use outbox::Outbox;
use outbox::{CORK_BYTES, seal};

const TICK: Duration = Duration::from_millis(100);
const SWEEP_EVERY: Duration = Duration::from_millis(250);
/// While draining, the loop wakes at least this often to tell the next connections.
const DRAIN_STEP: Duration = Duration::from_millis(20);
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
    /// It is still in its rooms (others can be told); what is sent to it is dropped.
    fn on_close(&mut self, _conns: &mut Conns<'_>, _id: ConnId) {}
    /// Called every sweep (about every 250 ms) with the time, to run the app's timers.
    fn on_sweep(&mut self, _conns: &mut Conns<'_>, _now: Instant) {}
    /// The worker that must serve `req` (the one owning its session), if not any.
    fn owner(&self, _req: &Request<'_>) -> Option<usize> {
        None
    }
    /// `Some(limit)`: the app serves plain HTTP `req` (not an upgrade) with a body of at
    /// most `limit` bytes (more → 413); `None`: the worker refuses it as before (426).
    fn http_body_limit(&self, _req: &Request<'_>) -> Option<usize> {
        None
    }
    /// The head of plain HTTP request `id` is in, its body is still arriving (once per
    /// request). `on_http` or `on_close` follows.
    fn on_http_head(&mut self, _conns: &mut Conns<'_>, _id: ConnId, _req: &Request<'_>) {}
    /// A plain HTTP request `id` with its whole body. Answer it with `Conns::respond`,
    /// now or later (until then the connection is held).
    fn on_http(&mut self, _conns: &mut Conns<'_>, _id: ConnId, _req: &Request<'_>, _body: &[u8]) {}
    /// A message sent to mailbox `id` (by the app itself or a broadcast), in order.
    fn on_mailbox(&mut self, _conns: &mut Conns<'_>, _id: ConnId, _text: bool, _payload: Bytes) {}
    /// Once, on the worker's thread before it serves: the fabric it is part of (for
    /// handles that reach the workers from other threads).
    fn on_start(&mut self, _fabric: &Arc<Fabric>) {}
    /// A message another thread posted to this worker (`Inbound::App`).
    fn on_app_message(&mut self, _conns: &mut Conns<'_>, _msg: Box<dyn std::any::Any + Send>) {}
    /// Whether `req` (at a served path) would open a new session: refused with 503
    /// while the server drains, so that the client goes to another server.
    fn opens_session(&self, req: &Request<'_>) -> bool {
        req.upgrade.is_some()
    }
    /// The server drains (`drain.rs`): tell `id` (an open connection or a mailbox) to
    /// reconnect elsewhere the way its protocol says, and return `true`; `false` leaves
    /// it to the worker (close 1001; a mailbox is closed). `last`: the drain window is
    /// over: end it now.
    fn on_drain(&mut self, _conns: &mut Conns<'_>, _id: ConnId, _last: bool) -> bool {
        false
    }
}

/// What an app may do to any connection of its worker outside that connection's own
/// callback (timers, HTTP requests, mailboxes).
pub struct Conns<'a> {
    pub(crate) hub: &'a mut Hub,
}

impl Conns<'_> {
    /// Runs `f` with an `Outbox` on connection `id` (which may be gone: sends to a gone
    /// connection are dropped at the flush). Returns the close `f` asked for, if any:
    /// the caller decides what closing means (`Conns::close` for a WebSocket).
    pub fn with(
        &mut self,
        id: ConnId,
        f: impl FnOnce(&mut Outbox<'_>),
    ) -> Option<(CloseCode, &'static str)> {
        debug_assert!(self.hub.cork.is_empty(), "the cork belongs to nobody here");
        let outer = self.hub.close_request.take();
        f(&mut Outbox {
            hub: &mut *self.hub,
            id,
        });
        seal(&mut self.hub.cork, &mut self.hub.outgoing, id);
        self.hub.mark_replied(id);
        std::mem::replace(&mut self.hub.close_request, outer)
    }

    /// Closes `id` after what was sent to it: a WebSocket with `code`, a plain HTTP
    /// connection after its answer, a mailbox at once.
    pub fn close(&mut self, id: ConnId, code: CloseCode, reason: &'static str) {
        self.hub.closes.push((id, code, reason));
    }

    /// Answers the held (or current) plain HTTP request on `id`: status, content type,
    /// `extra` header lines (each ending in CRLF) and body; the connection then waits
    /// for its next request, unless the client asked to close it. `false`: no request
    /// is waiting on `id` (gone, or answered).
    pub fn respond(
        &mut self,
        id: ConnId,
        status: u16,
        content_type: &str,
        extra: &[u8],
        body: &[u8],
    ) -> bool {
        let hub = &mut *self.hub;
        let Some(conn) = hub
            .conns
            .get_mut(id.slot as usize)
            .filter(|c| c.generation == id.generation && matches!(c.phase, Phase::Held))
        else {
            return false;
        };
        let close = conn.has(CLOSE_AFTER);
        if close {
            conn.phase = Phase::Linger;
            conn.deadline = hub.now + hub.close_ticks;
        } else {
            conn.phase = Phase::Handshake(Vec::new());
            conn.deadline = hub.now + hub.keepalive_ticks;
        }
        conn.set(SERVED, true);
        let mut response = Vec::with_capacity(160 + extra.len() + body.len());
        write_response(&mut response, status, content_type, extra, body, close);
        hub.outgoing.push(id, Bytes::from(response), false);
        hub.mark_replied(id);
        true
    }

    /// Whether `id` is a plain HTTP request waiting for its answer.
    pub fn is_held(&self, id: ConnId) -> bool {
        self.hub
            .conns
            .get(id.slot as usize)
            .is_some_and(|c| c.generation == id.generation && matches!(c.phase, Phase::Held))
    }

    /// A new mailbox: a connection without a socket whose output goes to
    /// `App::on_mailbox`. It lives until `close`d.
    pub fn open_mailbox(&mut self) -> ConnId {
        self.hub.open_mailbox()
    }

    /// Whether `id` has output the flush has not handed on yet.
    pub fn has_output(&self, id: ConnId) -> bool {
        self.hub.outgoing.has(id)
    }
}

/// Totals a worker reports when it stops (a snapshot of its metrics).
#[derive(Clone, Copy, Debug, Default)]
pub struct Stats {
    pub accepted: u64,
    pub refused_at_capacity: u64,
    pub refused_for_rate: u64,
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
        self.refused_for_rate += other.refused_for_rate;
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
    /// Requests to hand to the worker owning their session: (conn, worker, bytes read).
    moving: Vec<(ConnId, usize, Vec<u8>)>,
    /// Connections whose out-queue should be offered to the kernel again.
    dirty: Vec<ConnId>,
    /// Connections to close after this turn's writes.
    doomed: Vec<ConnId>,
    /// Connections over the queue cap, and the tick they went over.
    over_cap: Vec<(ConnId, u32)>,
    /// Scratch for one connection's vectored write.
    iov: Vec<bytes::Bytes>,
    iov_keep: Vec<bool>,
    app: A,
    read_cfg: ReadConfig,
    limits: Limits,
    origin: Instant,
    now: u32,
    draining: bool,
    drain: Option<drain::Drain>,
    slow_log: RateLimitedLog,
    admission: admission::Admission,
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
        let mut hub = Hub::new(
            fabric,
            index,
            limits.max_queued_bytes,
            limits.max_rooms_per_connection,
        );
        hub.keepalive_ticks = ticks(limits.handshake_timeout);
        hub.close_ticks = ticks(limits.close_timeout);
        hub.held_ticks = ticks(limits.idle_timeout);
        Core {
            hub,
            moving: Vec::new(),
            dirty: Vec::new(),
            doomed: Vec::new(),
            over_cap: Vec::new(),
            iov: Vec::new(),
            iov_keep: Vec::new(),
            app,
            read_cfg: ReadConfig {
                role: Role::Server,
                max_message: limits.max_message,
            },
            limits,
            origin: Instant::now(),
            now: 0,
            draining: false,
            drain: None,
            slow_log: RateLimitedLog::default(),
            admission: admission::Admission::new(
                limits.max_connections_per_worker,
                limits.accept_rate,
                limits.retry_after_secs,
                Instant::now(),
            ),
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
            refused_at_capacity: m.refused(RefuseReason::MaxConnections).get(),
            refused_for_rate: m.refused(RefuseReason::AcceptRate).get(),
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
        self.hub.now = self.now;
    }

    /// Bytes for a connection in `Handshake`: request heads (and bodies), one request
    /// after another while the connection is kept alive.
    fn on_handshake_bytes(&mut self, id: ConnId, input: &mut [u8]) {
        let now = self.now;
        let request_ticks = ticks(self.limits.handshake_timeout);
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let Phase::Handshake(head) = &mut conn.phase else {
            return;
        };
        let mut owned = Vec::new();
        let from_head = !head.is_empty();
        if !from_head {
            // The first bytes of a request: it has the whole handshake timeout (a
            // kept-alive connection's deadline was set when its last answer went out).
            conn.deadline = now + request_ticks;
        }
        let buf: &mut [u8] = if from_head {
            head.extend_from_slice(input);
            owned = std::mem::take(head);
            &mut owned
        } else {
            input
        };
        let mut start = 0;
        let mut incomplete = false;
        while start < buf.len() {
            match self.on_request(id, &mut buf[start..]) {
                Step::Next(used) => start += used,
                Step::Incomplete => {
                    incomplete = true;
                    break;
                }
                Step::Done => return,
            }
        }
        if !incomplete {
            return;
        }
        // Keep the partial request (bounded by the head and body limits), without
        // copying what was already kept.
        let Some(conn) = self.conn_mut(id) else {
            return;
        };
        let Phase::Handshake(head) = &mut conn.phase else {
            return;
        };
        if from_head {
            owned.drain(..start);
            *head = owned;
        } else {
            head.clear();
            head.extend_from_slice(&input[start..]);
        }
    }

    /// Answers a refused request and closes after the answer.
    fn refuse(&mut self, id: ConnId, response: &[u8], reason: CloseReason) {
        self.hub.cork.extend_from_slice(response);
        self.hub.metrics.closed(reason).inc();
        let deadline = self.now + ticks(self.limits.close_timeout);
        if let Some(conn) = self.conn_mut(id) {
            conn.phase = Phase::Linger;
            conn.deadline = deadline;
        }
    }

    /// One request at the front of `buf`.
    fn on_request(&mut self, id: ConnId, buf: &mut [u8]) -> Step {
        let req = match Request::parse(buf, self.limits.max_head) {
            Ok(None) => return Step::Incomplete,
            Ok(Some(req)) => req,
            Err(reject) => {
                tracing::debug!(
                    status = reject.status(),
                    why = reject.detail(),
                    "request refused"
                );
                let mut resp = Vec::with_capacity(256);
                reject.write_to(&mut resp);
                self.refuse(id, &resp, CloseReason::HandshakeRejected);
                return Step::Done;
            }
        };
        if let Some(resp) = ops::answer(&self.hub.fabric, &req) {
            self.refuse(id, &resp, CloseReason::Http);
            return Step::Done;
        }
        if !self.app.serves_path(req.path()) {
            let mut resp = Vec::with_capacity(256);
            Reject::NotFound.write_to(&mut resp);
            self.refuse(id, &resp, CloseReason::HandshakeRejected);
            return Step::Done;
        }
        if self.draining && self.app.opens_session(&req) {
            let resp = self.admission.answer().to_vec();
            self.refuse(id, &resp, CloseReason::Shutdown);
            return Step::Done;
        }
        if let Some(owner) = self.app.owner(&req)
            && owner != self.hub.index
            && owner < self.hub.fabric.workers()
        {
            // The session lives on `owner`: the socket and everything read so far go
            // there at the flush, and this worker reads no more from it.
            let deadline = self.now + ticks(self.limits.close_timeout);
            if let Some(conn) = self.conn_mut(id) {
                conn.phase = Phase::Moving;
                conn.deadline = deadline;
                self.moving.push((id, owner, buf.to_vec()));
            }
            return Step::Done;
        }
        if req.upgrade.is_none()
            && let Some(limit) = self.app.http_body_limit(&req)
        {
            return self.on_http_request(id, &req, buf, limit);
        }
        if let Err(answer) = self.app.check_request(&req) {
            tracing::debug!(status = answer.status, "request refused by the app");
            let mut resp = Vec::with_capacity(128 + answer.body.len());
            answer.write_to(&mut resp);
            self.refuse(id, &resp, CloseReason::HandshakeRejected);
            return Step::Done;
        }
        match handshake::accept(&req) {
            Ok(resp) => {
                self.hub.cork.extend_from_slice(resp.as_bytes());
                let deadline = self.now + ticks(self.limits.idle_timeout);
                if let Some(conn) = self.conn_mut(id) {
                    conn.phase = Phase::Open(Default::default());
                    conn.deadline = deadline;
                }
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
                let mut resp = Vec::with_capacity(256);
                reject.write_to(&mut resp);
                self.refuse(id, &resp, CloseReason::HandshakeRejected);
            }
        }
        Step::Done
    }

    /// The body of `req` is still arriving: the app hears of the request once.
    fn body_pending(&mut self, id: ConnId, req: &Request<'_>) -> Step {
        let body_deadline = self.now + ticks(self.limits.idle_timeout);
        if let Some(conn) = self.conn_mut(id)
            && !conn.has(BODY_PENDING)
        {
            // A large body on a slow uplink: the idle timeout, once, for all of it.
            conn.set(BODY_PENDING, true);
            conn.deadline = conn.deadline.max(body_deadline);
            self.app
                .on_http_head(&mut Conns { hub: &mut self.hub }, id, req);
        }
        Step::Incomplete
    }

    /// A plain HTTP request the app serves: waits for its body, then hands it over.
    fn on_http_request(&mut self, id: ConnId, req: &Request<'_>, buf: &[u8], limit: usize) -> Step {
        let body_len = match req.body_len() {
            Ok(n) => n,
            Err(reject) => {
                let mut resp = Vec::with_capacity(256);
                reject.write_to(&mut resp);
                self.refuse(id, &resp, CloseReason::HandshakeRejected);
                return Step::Done;
            }
        };
        let too_large = |core: &mut Self| {
            let mut resp = Vec::with_capacity(256);
            Answer {
                status: 413,
                content_type: "text/plain",
                body: b"request body too large".to_vec(),
            }
            .write_to(&mut resp);
            core.refuse(id, &resp, CloseReason::HandshakeRejected);
            Step::Done
        };
        let chunked;
        let (body, end): (&[u8], usize) = if req.is_chunked() {
            // Chunk framing costs bytes too: bounded, or a client could keep sending
            // extensions and padding that never add to the body.
            if buf.len() - req.head_len > limit.saturating_mul(2).saturating_add(64 << 10) {
                return too_large(self);
            }
            match decode_chunked(&buf[req.head_len..], limit) {
                Ok(Some((body, used))) => {
                    chunked = body;
                    (&chunked, req.head_len + used)
                }
                Ok(None) => return self.body_pending(id, req),
                Err(ChunkError::TooLarge) => return too_large(self),
                Err(ChunkError::Malformed) => {
                    let mut resp = Vec::with_capacity(256);
                    Reject::BadRequest("malformed chunked body").write_to(&mut resp);
                    self.refuse(id, &resp, CloseReason::HandshakeRejected);
                    return Step::Done;
                }
            }
        } else {
            if body_len > limit {
                return too_large(self);
            }
            let end = req.head_len + body_len;
            if buf.len() < end {
                return self.body_pending(id, req);
            }
            (&buf[req.head_len..end], end)
        };
        let held_until = self.now + ticks(self.limits.idle_timeout);
        let linger_until = self.now + ticks(self.limits.close_timeout);
        let Some(conn) = self.conn_mut(id) else {
            return Step::Done;
        };
        conn.phase = Phase::Held;
        conn.deadline = held_until;
        conn.set(BODY_PENDING, false);
        conn.set(CLOSE_AFTER, req.wants_close());
        self.app
            .on_http(&mut Conns { hub: &mut self.hub }, id, req, body);
        let Some(conn) = self.conn_mut(id) else {
            return Step::Done;
        };
        match conn.phase {
            Phase::Handshake(_) => Step::Next(end),
            Phase::Held if end < buf.len() => {
                // Another request behind a held one: not supported (no client does it).
                tracing::debug!("request pipelined behind a held request: closing");
                conn.phase = Phase::Linger;
                conn.deadline = linger_until;
                Step::Done
            }
            _ => Step::Done,
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
            // FIN as soon as what is queued is written, even if nothing more is sent.
            self.dirty.push(id);
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
    /// Hands what other threads posted to the app.
    fn app_messages(&mut self) {
        if self.hub.app_messages.is_empty() {
            return;
        }
        for msg in std::mem::take(&mut self.hub.app_messages) {
            let mut conns = Conns { hub: &mut self.hub };
            self.app.on_app_message(&mut conns, msg);
        }
    }

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
            if conn.has(MAILBOX) {
                conn.deadline = u32::MAX;
                continue;
            }
            match conn.phase {
                Phase::Handshake(ref head) if head.is_empty() && conn.has(SERVED) => {
                    // A kept-alive connection with no next request: close quietly.
                    self.doomed.push(id);
                }
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
                // A moving connection whose earlier answers the peer never read.
                Phase::Closing(_) | Phase::Linger | Phase::Held | Phase::Moving => {
                    self.doomed.push(id)
                }
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
        self.app
            .on_sweep(&mut Conns { hub: &mut self.hub }, Instant::now());
        self.apply_closes();
    }

    /// Carries out the closes an app asked for through `Conns::close`.
    fn apply_closes(&mut self) {
        while let Some((id, code, reason)) = self.hub.closes.pop() {
            let close_ticks = ticks(self.limits.close_timeout);
            let now = self.now;
            let Some(conn) = self.conn_mut(id) else {
                continue;
            };
            if conn.has(MAILBOX) {
                self.doomed.push(id);
                continue;
            }
            match conn.phase {
                Phase::Open(_) => {
                    self.hub.metrics.closed(CloseReason::App).inc();
                    self.begin_close(id.slot as usize, code, reason);
                }
                Phase::Handshake(_) | Phase::Held => {
                    conn.phase = Phase::Linger;
                    conn.deadline = now + close_ticks;
                    self.hub.metrics.closed(CloseReason::App).inc();
                    // Offer the queue again: an empty one gets its FIN at once.
                    self.dirty.push(id);
                }
                Phase::Closing(_) | Phase::Linger | Phase::Moving => {}
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
        self.app.on_close(&mut Conns { hub: &mut self.hub }, id);
        self.hub.outgoing.forget(id);
        self.hub.conns.remove(id.slot as usize);
        self.hub.rooms.leave_all(id.slot);
        self.hub.metrics.open.set(self.hub.conns.len() as u64);
    }

    /// Writes this turn's output, retries refused writes, sends FINs, closes the doomed.
    fn flush<D: Driver>(&mut self, driver: &mut D) {
        self.apply_closes();
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
        // write. What waits is bounded. A mailbox's output may answer a held request,
        // which is a reply too: replies are written until none is left.
        let mut write_waiting = |core: &mut Self, id: ConnId| {
            core.hub.outgoing.take(id, &mut iov, &mut keep);
            core.deliver(driver, id, &iov, &keep);
            iov.clear();
            keep.clear();
        };
        let mut replied = Vec::new();
        let mut write_replies = |core: &mut Self, write: &mut dyn FnMut(&mut Self, ConnId)| {
            while !core.hub.replied.is_empty() {
                std::mem::swap(&mut replied, &mut core.hub.replied);
                for &id in &replied {
                    write(core, id);
                }
                replied.clear();
            }
        };
        write_replies(self, &mut write_waiting);
        let mut written = 0;
        while written < WRITE_BUDGET_CONNS || self.hub.outgoing.len() > MAX_DEFERRED_PIECES {
            let Some(id) = self.hub.outgoing.next_ready() else {
                break;
            };
            write_waiting(self, id);
            written += 1;
        }
        write_replies(self, &mut write_waiting);
        self.hub
            .metrics
            .deferred_pieces
            .set(self.hub.outgoing.len() as u64);
        self.iov = iov;
        self.iov_keep = keep;
        self.apply_closes();
        let dirty = std::mem::take(&mut self.dirty);
        for &id in &dirty {
            self.retry(driver, id);
        }
        self.dirty = dirty;
        self.dirty.clear();
        for id in std::mem::take(&mut self.doomed) {
            self.release(driver, id);
        }
        // After the writes: a connection with answers still unwritten (to requests
        // before the one that moves it) waits until they are out.
        if !self.moving.is_empty() {
            let mut waiting = Vec::new();
            for (id, owner, bytes) in std::mem::take(&mut self.moving) {
                let Some(conn) = self.conn_mut(id) else {
                    continue;
                };
                if conn.out.bytes() > 0 || self.hub.outgoing.has(id) {
                    waiting.push((id, owner, bytes));
                } else {
                    self.hand_over(driver, id, owner, bytes);
                }
            }
            self.moving = waiting;
            // Wake the owners now, not at the next flush.
            self.hub.push_backlog_and_notify();
        }
        // Reclaim the cork's chunk now that its pieces are written (no allocation when
        // nothing still refers to it).
        self.hub.cork.reserve(CORK_BYTES);
    }

    /// Gives a connection whose session lives on `owner` to that worker.
    fn hand_over<D: Driver>(
        &mut self,
        driver: &mut D,
        id: ConnId,
        owner: usize,
        mut bytes: Vec<u8>,
    ) {
        if self.conn_mut(id).is_none() {
            return;
        }
        let stream = driver.detach(id, &mut bytes);
        self.hub.outgoing.forget(id);
        self.hub.conns.remove(id.slot as usize);
        self.hub.metrics.handed_over.inc();
        self.hub.metrics.open.set(self.hub.conns.len() as u64);
        if let Some(stream) = stream {
            self.hub.send_to(
                owner,
                Inbound::Handover(Box::new(Handover { stream, bytes })),
            );
        }
    }

    /// Serves a connection another worker handed over, starting with the bytes it read.
    fn adopt<D: Driver>(&mut self, driver: &mut D, handover: Handover) {
        let Handover { stream, mut bytes } = handover;
        if self.hub.conns.len() >= self.limits.max_connections_per_worker {
            // Full: the peer sees its connection closed.
            self.hub.metrics.refused(RefuseReason::MaxConnections).inc();
            return drop(stream);
        }
        let generation = self.hub.next_id_generation();
        let deadline = self.now + ticks(self.limits.handshake_timeout);
        let slot = self.hub.conns.insert(Conn::new(generation, deadline));
        self.hub.metrics.open.set(self.hub.conns.len() as u64);
        let id = ConnId {
            slot: slot as u32,
            generation,
        };
        if let Err(e) = driver.adopt(id, stream) {
            tracing::warn!(error = %e, "cannot adopt a handed-over connection");
            self.hub.conns.remove(slot);
            self.hub.metrics.open.set(self.hub.conns.len() as u64);
            return;
        }
        self.data(id, &mut bytes);
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
        if conn.has(MAILBOX) {
            let mut messages = Vec::new();
            split_messages(bufs, |text, payload| messages.push((text, payload)));
            for (text, payload) in messages {
                self.app
                    .on_mailbox(&mut Conns { hub: &mut self.hub }, id, text, payload);
            }
            return;
        }
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

/// Splits frames this worker encoded (unmasked, unfragmented; a head never spans two
/// pieces) back into messages, for a mailbox. Control frames are skipped.
fn split_messages(bufs: &[Bytes], mut f: impl FnMut(bool, Bytes)) {
    let mut spill = BytesMut::new();
    let mut want = 0usize;
    let mut text = false;
    for piece in bufs {
        let mut piece = piece.clone();
        while !piece.is_empty() {
            if want > 0 {
                let n = want.min(piece.len());
                spill.extend_from_slice(&piece.split_to(n));
                want -= n;
                if want == 0 {
                    f(text, spill.split().freeze());
                }
                continue;
            }
            let Ok(Some(head)) = crate::ws::frame::Header::parse(&piece) else {
                return; // Not a frame this worker wrote: nothing sane to do.
            };
            let _ = piece.split_to(head.len);
            let len = head.payload_len as usize;
            let op = OpCode::from_bits(head.opcode);
            let data = op == Some(OpCode::Text) || op == Some(OpCode::Binary);
            text = op == Some(OpCode::Text);
            if len <= piece.len() {
                let payload = piece.split_to(len);
                if data {
                    f(text, payload);
                }
            } else if data {
                want = len - piece.len();
                spill.extend_from_slice(&piece.split_to(piece.len()));
            } else {
                return;
            }
        }
    }
}

/// What became of one request in a connection's input.
enum Step {
    /// Answered; the next request starts this many bytes on.
    Next(usize),
    /// More bytes are needed.
    Incomplete,
    /// The connection left the request phase (upgraded, held, refused, moving).
    Done,
}

pub use ops::METRICS_PATH;

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
        if let Err(reason) = self.admission.admit(self.hub.conns.len(), Instant::now()) {
            self.hub.metrics.refused(reason).inc();
            tracing::debug!(%peer, reason = reason.label(), "refused at accept (503)");
            return None;
        }
        self.hub.metrics.accepted.inc();
        let generation = self.hub.next_id_generation();
        let deadline = self.now + ticks(self.limits.handshake_timeout);
        let slot = self.hub.conns.insert(Conn::new(generation, deadline));
        self.hub.metrics.open.set(self.hub.conns.len() as u64);
        Some(ConnId {
            slot: slot as u32,
            generation,
        })
    }

    fn data(&mut self, id: ConnId, bytes: &mut [u8]) -> bool {
        let idle = ticks(self.limits.idle_timeout);
        let close_ticks = ticks(self.limits.close_timeout);
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
            Phase::Held => {
                // A request behind a held one: not supported (no client does it).
                tracing::debug!("input while a request is held: closing");
                conn.phase = Phase::Linger;
                conn.deadline = now + close_ticks;
                self.dirty.push(id);
            }
            Phase::Linger | Phase::Moving => {}
        }
        seal(&mut self.hub.cork, &mut self.hub.outgoing, id);
        self.hub.mark_replied(id);
        self.conn_mut(id).is_some_and(|c| {
            !c.has(READ_PAUSED) && !c.has(FABRIC_PAUSED) && !matches!(c.phase, Phase::Moving)
        })
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

    fn refusal(&self) -> &[u8] {
        self.admission.answer()
    }
}

/// A worker: its core and the driver that feeds it.
pub struct Worker<D: Driver, A: App> {
    pub core: Core<A>,
    pub driver: D,
    shutdown: Arc<AtomicBool>,
    drain_timeout: Duration,
    drain_window: Duration,
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
            drain_window: limits.drain_window,
        }
    }

    /// Serves until shutdown is signalled and the drain completes or times out.
    pub fn run(&mut self) -> io::Result<Stats> {
        let mut next_sweep = Instant::now() + SWEEP_EVERY;
        let mut drain_deadline: Option<Instant> = None;
        let fabric = Arc::clone(&self.core.hub.fabric);
        let index = self.core.hub.index;
        crate::fabric::mark_worker_thread();
        self.core.app.on_start(&fabric);
        if let Some(watch) = fabric.room_watch() {
            self.core.hub.rooms.set_watch(watch);
        }
        let mut inbox_waiting = false;
        loop {
            let busy = inbox_waiting || !self.core.hub.outgoing.is_empty();
            let wait = if busy || !fabric.park(index) {
                Duration::ZERO
            } else if drain_deadline.is_some() {
                DRAIN_STEP.min(next_sweep.saturating_duration_since(Instant::now()))
            } else {
                next_sweep.saturating_duration_since(Instant::now())
            };
            let turn = self.driver.turn(Some(wait), &mut self.core);
            fabric.unpark(index);
            turn?;
            inbox_waiting = self.core.hub.drain_inbox();
            self.core.tick_clock();
            for handover in std::mem::take(&mut self.core.hub.handovers) {
                self.core.adopt(&mut self.driver, handover);
            }
            self.core.app_messages();
            if Instant::now() >= next_sweep {
                self.core.sweep();
                next_sweep = Instant::now() + SWEEP_EVERY;
            }
            if drain_deadline.is_none() && self.shutdown.load(Ordering::Relaxed) {
                self.driver.stop_accepting();
                let now = Instant::now();
                self.core.begin_drain(self.drain_window, now);
                drain_deadline = Some(now + self.drain_window + self.drain_timeout);
            }
            if drain_deadline.is_some() {
                self.core.drain_step(Instant::now());
            }
            self.core.flush(&mut self.driver);
            if let Some(deadline) = drain_deadline {
                // Nobody left to tell (clients that left by themselves are skipped).
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
