//! A Socket.IO v5 server over Engine.IO v4, as a worker `App`: namespaces with
//! middleware and event handlers (frozen at start, shared by every worker, no lock),
//! sockets per connection, rooms on the fabric, acks both ways, binary attachments.
//!
//! Transports: WebSocket (`/socket.io/?EIO=4&transport=websocket`), HTTP long-polling
//! and the upgrade from polling to WebSocket (`polling.rs`), CORS (`cors.rs`). A
//! session is found by its sid alone, on any connection of any core.
//!
//! State is kept per slot of the worker's connection table: a WebSocket connection's
//! slot, or a polling session's mailbox slot (until an upgrade moves it to the
//! WebSocket's).
//!
//! Rooms: a socket's rooms live in its worker's fabric index under
//! `<namespace>\0<room>`; every socket is also in `<namespace>\0` (the namespace-wide
//! room) and `<namespace>\0<id>` (its own id). Broadcast packets are encoded once and
//! shared by every recipient on every core.
//!
//! Invariants: per connection, at most `Config::max_namespaces` sockets and
//! `Config::max_pending_acks` acks awaited; a connection with no CONNECT within
//! `connect_timeout` is closed; a protocol error closes that connection only.

mod conn;
pub mod cors;
mod cx;
mod farewell;
mod forward;
mod handover;
pub mod io;
mod polling;
pub mod query;
pub mod registry;
mod tunnel;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engineio::packet::{Open, encode_open};
use crate::engineio::request::{ErrorCode, Query, Transport, check_handshake, parse_query};
use crate::engineio::session::{self, Session};
use crate::engineio::sid::{SID_RANDOM_BYTES, Sid};
use crate::http::Request;
use crate::http::response::Answer;
use crate::runtime::ConnId;
use crate::worker::{App, Conns, Outbox};
use crate::ws::{CloseCode, Payload};
use bytes::Bytes;

pub use cors::Cors;
pub use cx::{AckReply, Bin, Cx, Event};
pub use io::{
    Ack, ForwardEvent, Forwarded, ForwardedRequest, HandedPacket, Handover, HandoverAsk, Io,
    IoError, PendingConnect, Relay, Relayed, RelayedAnswer, RelayedRequest, SocketsAction,
    SocketsOp, TunnelEvent, Tunneled,
};
pub use query::{
    Answered, FetchedHandshake, FetchedSocket, Gathered, OnClientAck, Question, Reply, ServerAck,
};
pub use registry::{ConnectError, Handshake, Namespace, Registry};

use conn::ConnState;

/// Workers a Socket.IO server can run: a sid names its worker in one character.
pub use crate::engineio::sid::MAX_WORKERS;

/// The path Socket.IO is served at.
pub const PATH: &str = "/socket.io/";

/// Timing and bounds of a Socket.IO server.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Advertised to clients; the WebSocket message limit is the worker's `max_message`.
    pub max_payload: usize,
    pub connect_timeout: Duration,
    pub max_namespaces: usize,
    pub max_pending_acks: usize,
    /// Attachments per binary packet (Node's decoder allows 10).
    pub max_attachments: usize,
    /// Bytes of a CONNECT's auth kept for the socket.
    pub max_auth_bytes: usize,
    /// Polling sessions one worker holds (more: 503).
    pub max_polling_sessions: usize,
    /// Bytes queued for a polling client that has not fetched them (more: the session
    /// closes). At least `max_payload` plus some room is used, so that one message of
    /// the largest size always fits.
    pub max_polling_queue: usize,
}

impl Default for Config {
    /// Node's defaults.
    fn default() -> Config {
        Config {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_secs(45),
            max_namespaces: 32,
            max_pending_acks: 1024,
            max_attachments: 10,
            max_auth_bytes: 4096,
            max_polling_sessions: 10_000,
            max_polling_queue: 1 << 20,
        }
    }
}

/// One worker's Socket.IO server.
pub struct Server {
    config: Config,
    registry: Arc<Registry>,
    worker: usize,
    /// Indexed by connection slot.
    conns: Vec<Option<ConnState>>,
    /// Polling sessions (and those upgraded from polling) by sid → their slot.
    sids: HashMap<Sid, ConnId>,
    /// Held polling GETs → their session's slot.
    held: HashMap<ConnId, ConnId>,
    /// WebSockets probing an upgrade → the session's slot.
    probes: HashMap<ConnId, ConnId>,
    /// POSTs whose body is still arriving → their session's slot.
    posting: HashMap<ConnId, ConnId>,
    /// Polling requests forwarded to the process owning their session.
    forwarded: HashMap<ConnId, forward::Waiting>,
    /// Polling sessions lately ended with a close packet (their late POSTs get `ok`).
    farewells: farewell::Farewells,
    /// Sessions lately handed over to another process (their requests go there).
    moved: farewell::Moved,
    /// Requests waiting for a session handed over to this worker.
    parked: Vec<handover::Parked>,
    /// Sessions that started holding their first CONNECT, and until when.
    holding: Vec<(ConnId, Instant)>,
    /// WebSockets relayed to the process owning their session → their tunnel.
    tunnels: HashMap<ConnId, tunnel::Tunnel>,
    cors: Arc<Cors>,
    /// Sessions on polling now (bounded by `max_polling_sessions`).
    polling_sessions: usize,
    random: Vec<u8>,
}

impl Server {
    pub fn new(config: Config, registry: Arc<Registry>, worker: usize) -> Server {
        Server {
            config,
            registry,
            worker,
            conns: Vec::new(),
            sids: HashMap::new(),
            held: HashMap::new(),
            probes: HashMap::new(),
            posting: HashMap::new(),
            forwarded: HashMap::new(),
            farewells: farewell::Farewells::new(farewell::GRACE),
            moved: farewell::Moved::new(farewell::MOVED_GRACE),
            parked: Vec::new(),
            holding: Vec::new(),
            tunnels: HashMap::new(),
            cors: Arc::new(Cors::default()),
            polling_sessions: 0,
            random: Vec::new(),
        }
    }

    /// Answers cross-origin polling requests as `cors` says.
    pub fn with_cors(mut self, cors: Arc<Cors>) -> Server {
        self.cors = cors;
        self
    }

    fn put_state(&mut self, id: ConnId, state: ConnState) {
        let slot = id.slot as usize;
        if self.conns.len() <= slot {
            self.conns.resize_with(slot + 1, || None);
        }
        self.conns[slot] = Some(state);
    }

    fn take_state(&mut self, id: ConnId) -> Option<ConnState> {
        let entry = self.conns.get_mut(id.slot as usize)?;
        if entry.as_ref()?.generation != id.generation {
            return None;
        }
        entry.take()
    }

    /// Runs the disconnect handlers of a connection's sockets (it is gone or going).
    fn disconnect_sockets(&self, conns: &mut Conns<'_>, id: ConnId, state: &mut ConnState) {
        let reason = state.close_reason.unwrap_or("transport close");
        let max_acks = self.config.max_pending_acks;
        conns.with(id, |out| {
            state.disconnect_all(out, &self.registry, max_acks, reason);
        });
    }

    /// A session's state is gone from `key`: its sockets leave (disconnect handlers
    /// run) and every map forgets it. Returns the WebSocket probing its upgrade, if any.
    fn release_state(
        &mut self,
        conns: &mut Conns<'_>,
        key: ConnId,
        mut state: ConnState,
    ) -> Option<ConnId> {
        self.disconnect_sockets(conns, key, &mut state);
        let polling_sid = state.polling.as_ref().map(|p| p.sid);
        for sid in [state.ws_sid, polling_sid].into_iter().flatten() {
            if self.sids.get(&sid) == Some(&key) {
                self.sids.remove(&sid);
                if self.is_tagged_elsewhere(&sid) {
                    // A session handed over to this process.
                    self.registry.io_ref().forget_adopted(&sid);
                }
            }
        }
        let polling = state.polling?;
        if !polling.upgraded {
            self.polling_sessions = self.polling_sessions.saturating_sub(1);
        }
        if let Some(held) = polling.held {
            self.held.remove(&held.conn);
        }
        let probe = polling.probe?;
        self.probes.remove(&probe);
        Some(probe)
    }

    /// The session a request's sid names, if it lives here.
    fn session_of(&self, query: &Query<'_>) -> Option<ConnId> {
        let sid = Sid::parse(query.sid?)?;
        self.sids.get(&sid).copied()
    }

    /// `n` bytes from the kernel's CSPRNG, fetched 4 KiB at a time.
    fn random(&mut self, n: usize) -> Vec<u8> {
        if self.random.len() < n {
            let mut fresh = vec![0u8; 4096];
            if crate::runtime::system::random_bytes(&mut fresh).is_err() {
                tracing::error!("getrandom failed: ids come from the clock (guessable)");
                clock_bytes(&mut fresh);
            }
            self.random.extend_from_slice(&fresh);
        }
        self.random.split_off(self.random.len() - n)
    }

    fn new_sid(&mut self) -> Sid {
        let mut bytes = [0u8; SID_RANDOM_BYTES];
        bytes.copy_from_slice(&self.random(SID_RANDOM_BYTES));
        match self.registry.io_ref().process_tag() {
            Some(tag) => Sid::tagged(self.worker, tag, bytes),
            None => Sid::new(self.worker, bytes),
        }
    }

    /// Whether `sid` names another process of the bus (handed over here or not).
    fn is_tagged_elsewhere(&self, sid: &Sid) -> bool {
        self.registry
            .io_ref()
            .process_tag()
            .is_some_and(|tag| sid.tag() != *tag)
    }

    /// Whether `sid` is served by another process of the bus: it names another
    /// process and was not handed over to this one.
    fn is_foreign(&self, sid: &Sid) -> bool {
        self.is_tagged_elsewhere(sid) && self.registry.io_ref().adopted_worker(sid).is_none()
    }

    fn state(&mut self, id: ConnId) -> Option<&mut ConnState> {
        self.conns
            .get_mut(id.slot as usize)?
            .as_mut()
            .filter(|c| c.generation == id.generation)
    }

    fn session_config(&self) -> session::Config {
        session::Config {
            ping_interval: self.config.ping_interval,
            ping_timeout: self.config.ping_timeout,
            max_queued_bytes: self
                .config
                .max_polling_queue
                .max(self.config.max_payload.saturating_add(64 << 10)),
            ..session::Config::default()
        }
    }
}

impl Server {
    /// Applies a remote `socketsJoin`/`socketsLeave`/`disconnectSockets` to the
    /// matching sockets of this worker.
    fn apply_sockets_op(&mut self, conns: &mut Conns<'_>, op: &SocketsOp) {
        self.visit_sessions(conns, |state, out, config, registry| {
            state.apply_sockets_op(out, config, registry, op)
        });
    }

    /// Answers this worker's part of `asked` (every socket it addresses here) into
    /// its gather.
    fn answer_asked(&mut self, conns: &mut Conns<'_>, asked: &query::Asked) {
        let mut part = query::Gathered::default();
        self.visit_sessions(conns, |state, out, config, registry| {
            state.answer_asked(out, config, registry, asked, &mut part)
        });
        asked.gather.add(part);
    }

    /// Runs `f` on every live session of this worker, with its outbox; a session `f`
    /// says it touched is settled (its close applied, polling output answered).
    fn visit_sessions(
        &mut self,
        conns: &mut Conns<'_>,
        mut f: impl FnMut(&mut ConnState, &mut Outbox<'_>, &Config, &Registry) -> bool,
    ) {
        let config = self.config;
        let registry = Arc::clone(&self.registry);
        for slot in 0..self.conns.len() {
            let Some(state) = self.conns[slot].as_mut().filter(|s| !s.closing) else {
                continue;
            };
            let id = ConnId {
                slot: slot as u32,
                generation: state.generation,
            };
            let on_polling = state.session.transport() == Transport::Polling;
            let mut touched = false;
            let asked = conns.with(id, |out| {
                touched = f(state, out, &config, &registry);
            });
            if touched {
                self.settle(conns, id, on_polling, asked);
            }
        }
    }

    /// After work on session `key` outside its own callbacks (`Conns::with`): the close
    /// it asked for is applied as its transport wants (polling: the graceful session
    /// close; WebSocket: the connection closes), else polling output goes to a held GET.
    fn settle(
        &mut self,
        conns: &mut Conns<'_>,
        key: ConnId,
        on_polling: bool,
        asked: Option<(CloseCode, &'static str)>,
    ) {
        match asked {
            Some((_, why)) if on_polling => self.close_session(conns, key, why),
            None if on_polling => self.try_answer(conns, key),
            Some((_, why)) => {
                if let Some(state) = self.state(key) {
                    state.closing = true;
                    state.close_reason.get_or_insert(node_reason(why));
                    conns.close(key, CloseCode::NORMAL, why);
                }
            }
            None => {}
        }
    }
}

/// Fills `buf` from the wall clock and a counter through splitmix64: distinct ids when
/// the kernel's generator fails (never seen on Linux), but not unpredictable ones.
fn clock_bytes(buf: &mut [u8]) {
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64);
    let mut state = nanos ^ COUNTER.fetch_add(1, Ordering::Relaxed).rotate_left(32);
    for chunk in buf.chunks_mut(8) {
        state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        chunk.copy_from_slice(&z.to_le_bytes()[..chunk.len()]);
    }
}

/// The disconnect reason Node gives for a close of the connection `why`.
pub(crate) fn node_reason(why: &'static str) -> &'static str {
    match why {
        "transport close"
        | "transport error"
        | "ping timeout"
        | "parse error"
        | "forced close"
        | "server shutting down" => why,
        // A CONNECT that never came, or a protocol error.
        "connect timeout" => "transport close",
        _ => "parse error",
    }
}

fn refusal(code: ErrorCode) -> Answer {
    Answer {
        status: code.status(),
        content_type: "application/json",
        body: code.body().into_bytes(),
    }
}

impl App for Server {
    fn serves_path(&self, path: &str) -> bool {
        path == PATH
    }

    fn owner(&self, req: &Request<'_>) -> Option<usize> {
        let query = parse_query(req.target).ok()?;
        let sid = Sid::parse(query.sid?)?;
        if self.is_tagged_elsewhere(&sid) {
            // Another process's session is forwarded from whichever worker has it,
            // unless it was handed over here.
            return self.registry.io_ref().adopted_worker(&sid);
        }
        Some(sid.worker())
    }

    fn opens_session(&self, req: &Request<'_>) -> bool {
        req.method == "GET" && parse_query(req.target).is_ok_and(|q| q.sid.is_none())
    }

    fn http_body_limit(&self, _req: &Request<'_>) -> Option<usize> {
        // JSONP bodies are form-encoded: up to three bytes per payload byte.
        Some(self.config.max_payload.saturating_mul(3).saturating_add(16))
    }

    fn on_http(&mut self, conns: &mut Conns<'_>, id: ConnId, req: &Request<'_>, body: &[u8]) {
        let was_posting = self.posting.remove(&id);
        let jsonp = parse_query(req.target).is_ok_and(|q| q.jsonp.is_some());
        if !jsonp && body.len() > self.config.max_payload {
            let cors = self.cors.headers(req.origin);
            conns.respond(id, 413, "text/plain", &cors, b"payload too large");
            return;
        }
        if let Some(key) = was_posting {
            // Back in the table for `post` to see that this POST was the first.
            self.posting.insert(id, key);
        }
        self.on_polling_request(conns, id, req, body);
        self.posting.remove(&id);
    }

    fn on_http_head(&mut self, conns: &mut Conns<'_>, id: ConnId, req: &Request<'_>) {
        self.on_post_head(conns, id, req);
    }

    fn on_mailbox(&mut self, conns: &mut Conns<'_>, id: ConnId, text: bool, payload: Bytes) {
        self.on_session_output(conns, id, text, payload);
    }

    fn check_request(&mut self, req: &Request<'_>) -> Result<(), Answer> {
        let query = parse_query(req.target).map_err(refusal)?;
        if query.transport == Transport::Polling {
            // An upgrade request naming the polling transport.
            return Err(refusal(ErrorCode::BadRequest));
        }
        if query.sid.is_some() {
            if self.foreign_owner(&query).is_some() {
                // Another process's session: relayed there, which checks the rest.
                return if self.can_tunnel() && query.eio4 {
                    Ok(())
                } else {
                    Err(refusal(ErrorCode::UnknownSid))
                };
            }
            // An upgrade of a polling session: it must be here, on polling, and not
            // already probed by another WebSocket.
            let Some(key) = self.session_of(&query) else {
                return Err(refusal(ErrorCode::UnknownSid));
            };
            let upgradable = self.state(key).is_some_and(|s| {
                s.session.transport() == Transport::Polling
                    && !s.session.is_upgrading()
                    && !s.closing
            });
            return if upgradable {
                Ok(())
            } else {
                Err(refusal(ErrorCode::BadRequest))
            };
        }
        check_handshake(&query, req.method == "GET", req.upgrade.is_some()).map_err(refusal)
    }

    fn on_open(&mut self, out: &mut Outbox<'_>, req: &Request<'_>) {
        let now = Instant::now();
        if let Ok(query) = parse_query(req.target)
            && query.sid.is_some()
        {
            if let Some(owner) = self.foreign_owner(&query) {
                return self.open_tunnel(out, req, owner);
            }
            let Some(key) = self.session_of(&query) else {
                return out.close(CloseCode::NORMAL, "session gone");
            };
            return self.start_probe(out.id(), key, out);
        }
        let sid = self.new_sid();
        let mut packet = Vec::with_capacity(128);
        encode_open(
            &Open {
                sid: sid.as_str(),
                can_upgrade: false,
                ping_interval_ms: self.config.ping_interval.as_millis() as u64,
                ping_timeout_ms: self.config.ping_timeout.as_millis() as u64,
                max_payload: self.config.max_payload,
            },
            &mut packet,
        );
        out.send(true, &packet);
        let id = out.id();
        let mut state = ConnState::new(
            id.generation,
            Session::new(Transport::WebSocket, self.session_config(), now),
            now + self.config.connect_timeout,
        );
        // Known so that polling with this sid gets Node's "Bad request" (code 3).
        state.ws_sid = Some(sid);
        self.sids.insert(sid, id);
        self.put_state(id, state);
    }

    fn on_message(&mut self, out: &mut Outbox<'_>, text: bool, payload: Payload<'_>) {
        let id = out.id();
        if let Some(&key) = self.probes.get(&id) {
            return self.on_probe_message(out, key, text, payload.as_slice());
        }
        if self.tunnel_up(out, text, payload.as_slice()) {
            return;
        }
        let config = self.config;
        let registry = Arc::clone(&self.registry);
        let mut fresh_ids = Vec::new();
        // Ids for sockets a CONNECT in this message may create.
        if text && payload.as_slice().get(..2) == Some(b"40") {
            fresh_ids = self.random(SID_RANDOM_BYTES);
        }
        let Some(state) = self.state(id).filter(|s| !s.closing) else {
            return;
        };
        state.on_message(
            out,
            &config,
            &registry,
            text,
            payload.as_slice(),
            &fresh_ids,
            Instant::now(),
        );
        if out.is_closing() {
            state.closing = true;
            state.close_reason.get_or_insert("parse error");
        }
    }

    fn on_close(&mut self, conns: &mut Conns<'_>, id: ConnId) {
        self.forget_forwarded(id);
        self.expire_parked(conns, Instant::now(), Some(id));
        self.forget_tunnel(id);
        self.forget_conn(conns, id);
        if let Some(state) = self.take_state(id) {
            self.release_state(conns, id, state);
        }
    }

    /// A polling session is closed with an Engine.IO `1` (after what is queued; at
    /// once on the last pass), which the official client takes for a transport close
    /// and reconnects after; a WebSocket is left to the worker's close 1001, which it
    /// takes the same way. Never a Socket.IO DISCONNECT: the client would stay away.
    fn on_drain(&mut self, conns: &mut Conns<'_>, id: ConnId, last: bool) -> bool {
        let polling = self
            .state(id)
            .is_some_and(|s| s.session.transport() == Transport::Polling);
        if !polling {
            return false;
        }
        if last {
            if let Some(state) = self.state(id) {
                state.close_reason.get_or_insert("server shutting down");
            }
            self.say_farewell(id);
            self.end_session(conns, id, b"1");
        } else {
            self.close_session(conns, id, "server shutting down");
        }
        true
    }

    fn on_start(&mut self, fabric: &Arc<crate::fabric::Fabric>) {
        self.registry.io_ref().bind(fabric);
    }

    fn on_app_message(&mut self, conns: &mut Conns<'_>, msg: Box<dyn std::any::Any + Send>) {
        let msg = match msg.downcast::<SocketsOp>() {
            Ok(op) => return self.apply_sockets_op(conns, &op),
            Err(msg) => msg,
        };
        let msg = match msg.downcast::<Arc<query::Asked>>() {
            Ok(asked) => return self.answer_asked(conns, &asked),
            Err(msg) => msg,
        };
        let msg = match msg.downcast::<io::Forwarded>() {
            Ok(forwarded) => return self.on_forwarded(conns, *forwarded),
            Err(msg) => msg,
        };
        let msg = match msg.downcast::<io::Tunneled>() {
            Ok(tunneled) => return self.on_tunneled(conns, *tunneled),
            Err(msg) => msg,
        };
        let msg = match msg.downcast::<io::HandoverAsk>() {
            Ok(ask) => return self.on_handover_ask(conns, *ask),
            Err(msg) => msg,
        };
        let Ok(verdict) = msg.downcast::<io::Verdict>() else {
            return;
        };
        let io::Verdict { sid, token, result } = *verdict;
        let Some(key) = self.sids.get(&sid).copied() else {
            return; // The session is gone.
        };
        let fresh = self.random(SID_RANDOM_BYTES);
        let config = self.config;
        let registry = Arc::clone(&self.registry);
        let Some(state) = self.state(key).filter(|s| !s.closing) else {
            return;
        };
        let on_polling = state.session.transport() == Transport::Polling;
        let asked = conns.with(key, |out| {
            state.on_verdict(out, &config, &registry, token, result, &fresh);
        });
        self.settle(conns, key, on_polling, asked);
    }

    fn on_sweep(&mut self, conns: &mut Conns<'_>, now: Instant) {
        self.expire_forwarded(conns, now);
        self.expire_parked(conns, now, None);
        self.release_expired_holds(conns, now);
        self.farewells.expire(now);
        self.moved.expire(now);
        let registry = Arc::clone(&self.registry);
        let max_acks = self.config.max_pending_acks;
        for slot in 0..self.conns.len() {
            let Some(state) = self.conns[slot].as_mut() else {
                continue;
            };
            let id = ConnId {
                slot: slot as u32,
                generation: state.generation,
            };
            let on_polling = state.session.transport() == Transport::Polling;
            if on_polling
                && state
                    .polling
                    .as_ref()
                    .is_some_and(|p| p.closing_since.is_some())
            {
                self.polling_timers(conns, id, now);
                continue;
            }
            let held = state
                .polling
                .as_ref()
                .and_then(|p| p.held.as_ref())
                .is_some_and(|h| conns.is_held(h.conn));
            let probe = state.polling.as_ref().and_then(|p| p.probe);
            let timers = state.on_timer(conns, id, &registry, max_acks, held, now);
            if timers.abort_upgrade
                && let Some(probe) = probe
            {
                self.probes.remove(&probe);
                if let Some(p) = self.state(id).and_then(|s| s.polling.as_mut()) {
                    p.probe = None;
                }
                conns.close(probe, CloseCode::NORMAL, "upgrade timeout");
            }
            if on_polling {
                if let Some(reason) = timers.close {
                    if let Some(state) = self.state(id) {
                        state.close_reason.get_or_insert(node_reason(reason));
                    }
                    if reason == "ping timeout" {
                        self.end_session(conns, id, b"1");
                    } else {
                        self.close_session(conns, id, reason);
                    }
                    continue;
                }
                if timers.release_get {
                    self.release_get(conns, id, b"6");
                }
                if timers.poll_ready {
                    self.try_answer(conns, id);
                }
            } else if let Some(reason) = timers.close
                && let Some(state) = self.state(id)
            {
                state.closing = true;
                state.close_reason.get_or_insert(node_reason(reason));
                conns.close(id, CloseCode::NORMAL, reason);
            }
        }
    }
}
