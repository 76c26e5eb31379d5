//! Engine.IO's HTTP long-polling transport and the upgrade to WebSocket, for the
//! Socket.IO server.
//!
//! A polling session is a worker mailbox (`Conns::open_mailbox`): it is in rooms and
//! gets broadcasts like a WebSocket connection, and its output comes back through
//! `App::on_mailbox` into the Engine.IO session's queue, from which GETs are answered.
//! Requests find their session by `sid` alone (no cookie); the worker hands a request
//! whose sid names another core to that core first (`App::owner`).
//!
//! Per session at most one GET is held; a second one while it is held gets 400 and
//! ends the session (the first gets `1`). A POST answers `ok` once its packets ran. A
//! server-side close sends `1` after what was sent, in a response of its own, and waits
//! (`CLOSE_WAIT`) for a GET to take it; a client `1` ends a held GET with `6`. A POST
//! for a session lately told `1` gets `ok` (`farewell`): the client sent it before it
//! read the close, and a 400 would make it report a transport error.
//!
//! Upgrade: a WebSocket with the sid is a probe (`probes`); `2probe` → `3probe` and the
//! held GET is released with `6` (then again every sweep while probing); `5` moves the
//! session onto the WebSocket: its queue, its unflushed output and its rooms go there
//! in order (`Outbox::take_over`), and the mailbox is closed.

use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::engineio::jsonp;
use crate::engineio::packet::{Open, PacketError, PacketType, decode_payload, encode_open};
use crate::engineio::request::{ErrorCode, Query, Transport, check_handshake, parse_query};
use crate::engineio::session::{Action, Outbound, Session, Via};
use crate::engineio::sid::{SID_RANDOM_BYTES, Sid};
use crate::http::Request;
use crate::http::request::has_token;
use crate::runtime::ConnId;
use crate::worker::{Conns, Outbox};
use crate::ws::CloseCode;

use super::Server;
use super::conn::ConnState;

/// How long a server-side close waits for a GET to take the close packet (Node's
/// `closeTimeout`).
const CLOSE_WAIT: Duration = Duration::from_secs(30);
/// Packets one POST may carry.
const MAX_PACKETS_PER_POST: usize = 4096;

/// Also for JSONP, as Node sends it.
const TEXT: &str = "text/plain; charset=UTF-8";

/// A polling session's transport state.
pub(crate) struct Polling {
    pub sid: Sid,
    /// The GET waiting for output.
    pub held: Option<HeldGet>,
    /// The WebSocket probing an upgrade.
    pub probe: Option<ConnId>,
    /// A server-side close waits for a GET to take `1` (since then).
    pub closing_since: Option<Instant>,
    /// Moved onto a WebSocket.
    pub upgraded: bool,
    /// The first CONNECT held for a handover (`handover.rs`).
    pub hold: super::handover::Hold,
}

#[derive(Clone)]
pub(crate) struct HeldGet {
    pub conn: ConnId,
    pub jsonp: Option<u32>,
    /// Its CORS answer headers (empty: none).
    pub cors: Box<[u8]>,
}

/// A request's CORS answer headers (empty when CORS is off or the origin not allowed).
fn cors_headers(server: &Server, req: &Request<'_>) -> Vec<u8> {
    server.cors.headers(req.origin)
}

impl Server {
    /// A plain HTTP request at the Engine.IO path.
    pub(crate) fn on_polling_request(
        &mut self,
        conns: &mut Conns<'_>,
        id: ConnId,
        req: &Request<'_>,
        body: &[u8],
    ) {
        let cors = cors_headers(self, req);
        if req.method == "OPTIONS" && self.cors.enabled() {
            // A preflight carries no cookie and no session: answered from the policy.
            let mut extra = cors;
            extra.extend_from_slice(b"Access-Control-Allow-Methods: GET, POST\r\n");
            if let Some(headers) = req.access_control_request_headers {
                extra.extend_from_slice(b"Access-Control-Allow-Headers: ");
                extra.extend_from_slice(headers);
                extra.extend_from_slice(b"\r\n");
            }
            conns.respond(id, 204, "", &extra, b"");
            return;
        }
        let query = match parse_query(req.target) {
            Ok(q) => q,
            Err(code) => return self.refuse(conns, id, &cors, code),
        };
        let Some(sid_text) = query.sid else {
            if let Err(code) = check_handshake(&query, req.method == "GET", false) {
                return self.refuse(conns, id, &cors, code);
            }
            return self.open_session(conns, id, &cors, &query);
        };
        if query.transport != Transport::Polling {
            return self.refuse(conns, id, &cors, ErrorCode::BadRequest);
        }
        if let Some(sid) = Sid::parse(sid_text).filter(|sid| self.is_foreign(sid)) {
            return self.forward_polling(conns, id, req, body, sid.tag(), cors);
        }
        let sid = Sid::parse(sid_text);
        let Some(key) = sid.and_then(|sid| self.sids.get(&sid).copied()) else {
            let now = Instant::now();
            if let Some(sid) = sid.filter(|sid| self.is_arriving(sid)) {
                // Handed over to this worker, not made here yet: it waits for it.
                return self.park(conns, id, sid, req, body, &cors);
            }
            if let Some(&to) = sid.and_then(|sid| self.moved.get(&sid, now)) {
                // Handed over lately: the request goes where the session is now.
                return self.forward_polling(conns, id, req, body, to, cors);
            }
            if req.method == "POST" && sid.is_some_and(|sid| self.farewells.knows(&sid, now)) {
                // Sent before the client read the close packet: dropped, not refused.
                conns.respond(id, 200, "text/html", &cors, b"ok");
                return;
            }
            return self.refuse(conns, id, &cors, ErrorCode::UnknownSid);
        };
        let Some(state) = self.state(key) else {
            return self.refuse(conns, id, &cors, ErrorCode::UnknownSid);
        };
        if state.session.transport() != Transport::Polling || !query.eio4 {
            // Another transport's session, or another protocol version (Node: 3).
            return self.refuse(conns, id, &cors, ErrorCode::BadRequest);
        }
        match req.method {
            "GET" => self.poll(conns, id, key, query.jsonp, cors),
            "POST" => self.post(conns, id, key, req, body, &cors, query.jsonp),
            _ => self.refuse(conns, id, &cors, ErrorCode::BadRequest),
        }
    }

    pub(super) fn refuse(
        &mut self,
        conns: &mut Conns<'_>,
        id: ConnId,
        cors: &[u8],
        code: ErrorCode,
    ) {
        conns.respond(
            id,
            code.status(),
            "application/json",
            cors,
            code.body().as_bytes(),
        );
    }

    /// The handshake GET: a new session, answered with its open packet.
    fn open_session(&mut self, conns: &mut Conns<'_>, id: ConnId, cors: &[u8], query: &Query<'_>) {
        if self.polling_sessions >= self.config.max_polling_sessions {
            tracing::warn!(
                max = self.config.max_polling_sessions,
                "polling session refused: at the bound on polling sessions per worker"
            );
            conns.respond(
                id,
                503,
                "application/json",
                cors,
                br#"{"code":3,"message":"Bad request"}"#,
            );
            return;
        }
        let now = Instant::now();
        let sid = self.new_sid();
        let mut packet = Vec::with_capacity(160);
        encode_open(
            &Open {
                sid: sid.as_str(),
                can_upgrade: true,
                ping_interval_ms: self.config.ping_interval.as_millis() as u64,
                ping_timeout_ms: self.config.ping_timeout.as_millis() as u64,
                max_payload: self.config.max_payload,
            },
            &mut packet,
        );
        let session = Session::new(Transport::Polling, self.session_config(), now);
        self.add_polling_session(conns, sid, session, super::handover::Hold::Unused, now);
        self.answer_get(conns, id, query.jsonp, cors, &packet);
    }

    /// Polling session `sid` (with `session`, its Engine.IO state) starts here, in a
    /// new mailbox: its key.
    pub(super) fn add_polling_session(
        &mut self,
        conns: &mut Conns<'_>,
        sid: Sid,
        session: Session,
        hold: super::handover::Hold,
        now: Instant,
    ) -> ConnId {
        let key = conns.open_mailbox();
        let mut state = ConnState::new(key.generation, session, now + self.config.connect_timeout);
        state.polling = Some(Box::new(Polling {
            sid,
            held: None,
            probe: None,
            closing_since: None,
            upgraded: false,
            hold,
        }));
        self.put_state(key, state);
        self.sids.insert(sid, key);
        self.polling_sessions += 1;
        key
    }

    fn answer_get(
        &self,
        conns: &mut Conns<'_>,
        id: ConnId,
        jsonp_index: Option<u32>,
        cors: &[u8],
        payload: &[u8],
    ) -> bool {
        // Polling answers must never be cached by a proxy or the browser.
        let mut extra = Vec::with_capacity(cors.len() + 26);
        extra.extend_from_slice(b"Cache-Control: no-store\r\n");
        extra.extend_from_slice(cors);
        match jsonp_index {
            Some(index) => conns.respond(id, 200, TEXT, &extra, &jsonp::wrap(index, payload)),
            None => conns.respond(id, 200, TEXT, &extra, payload),
        }
    }

    /// A GET on session `key`.
    fn poll(
        &mut self,
        conns: &mut Conns<'_>,
        id: ConnId,
        key: ConnId,
        jsonp: Option<u32>,
        cors: Vec<u8>,
    ) {
        let Some(previous) = self
            .state(key)
            .and_then(|s| s.polling.as_mut())
            .map(|p| p.held.take())
        else {
            return;
        };
        if let Some(first) = previous {
            if conns.is_held(first.conn) {
                // Overlapping GETs: the client is confused; the session ends.
                tracing::debug!("overlapping polling GETs: closing the session");
                if let Some(p) = self.state(key).and_then(|s| s.polling.as_mut()) {
                    p.held = Some(first);
                }
                conns.respond(id, 400, "", b"", b"");
                return self.end_session(conns, key, b"1");
            }
            self.held.remove(&first.conn);
        }
        if let Some(p) = self.state(key).and_then(|s| s.polling.as_mut()) {
            p.held = Some(HeldGet {
                conn: id,
                jsonp,
                cors: cors.into_boxed_slice(),
            });
        }
        self.held.insert(id, key);
        let probed = self.state(key).is_some_and(|s| s.session.is_probed());
        if probed && !conns.has_output(key) {
            // The client pauses polling to finish an upgrade: let this GET go.
            self.release_get(conns, key, b"6");
            return;
        }
        self.try_answer(conns, key);
    }

    /// A POST on session `key`: its packets run in order, then `ok`.
    #[allow(clippy::too_many_arguments)]
    fn post(
        &mut self,
        conns: &mut Conns<'_>,
        id: ConnId,
        key: ConnId,
        req: &Request<'_>,
        body: &[u8],
        cors: &[u8],
        jsonp_index: Option<u32>,
    ) {
        let first_in_progress =
            self.posting.remove(&id).is_none() && self.posting.values().any(|&k| k == key);
        if first_in_progress {
            return self.overlapping_post(conns, id, key);
        }
        let closing = self
            .state(key)
            .and_then(|s| s.polling.as_ref())
            .is_some_and(|p| p.closing_since.is_some());
        if req.content_type.is_some_and(|t| {
            has_token(
                t.split(|&b| b == b';').next().unwrap_or(t),
                "application/octet-stream",
            )
        }) {
            // Engine.IO v4 polling carries text only (binary as base64).
            return self.refuse_post(conns, id, cors, key, "transport error");
        }
        let unwrapped;
        let payload: &[u8] = if jsonp_index.is_some() {
            match jsonp::unwrap_form(body) {
                Some(p) => {
                    unwrapped = p;
                    &unwrapped
                }
                None => return self.refuse_post(conns, id, cors, key, "parse error"),
            }
        } else {
            body
        };
        // Invalid UTF-8 is read as U+FFFD, as Node does.
        let lossy = String::from_utf8_lossy(payload);
        let packets = decode_payload(lossy.as_bytes(), MAX_PACKETS_PER_POST);
        conns.respond(id, 200, "text/html", cors, b"ok");
        if closing {
            return; // Ignored: the session is ending.
        }
        let packets = match packets {
            Ok(packets) => packets,
            // An attachment that does not decode: a Socket.IO error, closed gracefully.
            Err(PacketError::BadBase64) => return self.close_session(conns, key, "parse error"),
            // Not Engine.IO at all: the session ends now (Node).
            Err(_) => return self.end_session(conns, key, b"1"),
        };
        let now = Instant::now();
        for packet in packets {
            if packet.kind == PacketType::Close {
                // The client leaves: a held GET ends with a noop, the session now.
                return self.end_session(conns, key, b"6");
            }
            if packet.kind == PacketType::Ping {
                // Heartbeats go the other way in v4: the session ends now (Node).
                if let Some(state) = self.state(key) {
                    state.close_reason = Some("transport error");
                }
                return self.end_session(conns, key, b"1");
            }
            if self.hold(key, &packet, now) {
                continue; // Until the upgrade lands, here or elsewhere (`handover.rs`).
            }
            if self
                .state(key)
                .and_then(|s| s.polling.as_ref())
                .is_some_and(|p| p.hold.is_holding())
            {
                // No room for more: what was held runs first.
                self.release_hold(conns, key);
            }
            if !self.run_packet(conns, key, packet, now) {
                return;
            }
        }
        self.try_answer(conns, key);
    }

    /// Runs one client packet on polling session `key`; `false` if the session is gone
    /// or closing on it.
    pub(super) fn run_packet(
        &mut self,
        conns: &mut Conns<'_>,
        key: ConnId,
        packet: crate::engineio::packet::Packet<'_>,
        now: Instant,
    ) -> bool {
        let fresh = match &packet.data {
            crate::engineio::packet::Data::Text(t) if t.first() == Some(&b'0') => {
                self.random(SID_RANDOM_BYTES)
            }
            _ => Vec::new(),
        };
        let config = self.config;
        let registry = std::sync::Arc::clone(&self.registry);
        let Some(state) = self.state(key) else {
            return false;
        };
        let asked = conns.with(key, |out| {
            state.on_packet(out, &config, &registry, packet, &fresh, now)
        });
        if let Some((_, why)) = asked {
            self.close_session(conns, key, why);
            return false;
        }
        true
    }

    /// The head of a POST whose body is on its way: one POST per session at a time (a
    /// second one → 400, and the session ends, as in Node).
    pub(crate) fn on_post_head(&mut self, conns: &mut Conns<'_>, id: ConnId, req: &Request<'_>) {
        if req.method != "POST" {
            return;
        }
        let Some(key) = parse_query(req.target)
            .ok()
            .and_then(|q| self.session_of(&q))
        else {
            return;
        };
        let on_polling = self
            .state(key)
            .is_some_and(|s| s.polling.is_some() && s.session.transport() == Transport::Polling);
        if !on_polling {
            // A WebSocket session's sid: the whole request gets its 400 (code 3).
            return;
        }
        if self.posting.values().any(|&k| k == key) {
            return self.overlapping_post(conns, id, key);
        }
        self.posting.insert(id, key);
    }

    /// A second POST while one is arriving: 400, the first one's connection is dropped
    /// and the session ends.
    fn overlapping_post(&mut self, conns: &mut Conns<'_>, id: ConnId, key: ConnId) {
        tracing::debug!("overlapping polling POSTs: closing the session");
        conns.respond(id, 400, "", b"", b"");
        let first: Vec<ConnId> = self
            .posting
            .iter()
            .filter(|&(_, &k)| k == key)
            .map(|(&c, _)| c)
            .collect();
        for conn in first {
            self.posting.remove(&conn);
            conns.close(conn, CloseCode::NORMAL, "overlapping POST");
        }
        if let Some(state) = self.state(key) {
            state.close_reason.get_or_insert("transport error");
        }
        self.end_session(conns, key, b"1");
    }

    /// A POST the session cannot take: 400 (code 3), and the session closes.
    fn refuse_post(
        &mut self,
        conns: &mut Conns<'_>,
        id: ConnId,
        cors: &[u8],
        key: ConnId,
        why: &'static str,
    ) {
        self.refuse(conns, id, cors, ErrorCode::BadRequest);
        self.close_session(conns, key, why);
    }

    /// Output for polling session `key` (a message sent to its mailbox).
    pub(crate) fn on_session_output(
        &mut self,
        conns: &mut Conns<'_>,
        key: ConnId,
        text: bool,
        payload: Bytes,
    ) {
        let Some(state) = self.state(key) else {
            return;
        };
        let packet = if text {
            Outbound::Text(payload)
        } else {
            Outbound::Binary(payload)
        };
        match state.session.send(packet) {
            Action::PollReady => self.try_answer(conns, key),
            Action::Close(reason) => {
                tracing::debug!(
                    reason = reason.as_str(),
                    "polling session over its queue bound"
                );
                self.end_session(conns, key, b"1");
            }
            _ => {}
        }
    }

    /// Answers the held GET of `key` if there is something to send (or the close).
    pub(crate) fn try_answer(&mut self, conns: &mut Conns<'_>, key: ConnId) {
        let max_payload = self.config.max_payload;
        let Some(state) = self.state(key) else {
            return;
        };
        let Some(polling) = state.polling.as_mut() else {
            return;
        };
        let Some(held_conn) = polling.held.as_ref().map(|h| h.conn) else {
            return;
        };
        if !conns.is_held(held_conn) {
            polling.held = None;
            self.held.remove(&held_conn);
            return;
        }
        let closing = polling.closing_since.is_some();
        if closing && conns.has_output(key) {
            return; // The close packet goes after what is still on its way.
        }
        // The close packet travels alone, in the response after the last data: the
        // official client handles a payload's messages a tick later than a close in
        // the same payload, and would see the close first.
        let payload = state.session.take_payload(max_payload);
        let done = closing && payload.is_none();
        let body = match payload {
            Some(p) => p,
            None if done => b"1".to_vec(),
            None => return,
        };
        let Some(held) = state.polling.as_mut().and_then(|p| p.held.take()) else {
            return;
        };
        self.held.remove(&held.conn);
        self.answer_get(conns, held.conn, held.jsonp, &held.cors, &body);
        if done {
            self.say_farewell(key);
            self.drop_session(conns, key);
        }
    }

    /// Ends a held GET of `key` with `packet` (a noop while an upgrade is probed).
    pub(crate) fn release_get(&mut self, conns: &mut Conns<'_>, key: ConnId, packet: &[u8]) {
        let Some(polling) = self.state(key).and_then(|s| s.polling.as_mut()) else {
            return;
        };
        if let Some(held) = polling.held.take() {
            self.held.remove(&held.conn);
            self.answer_get(conns, held.conn, held.jsonp, &held.cors, packet);
        }
    }

    /// A server-side close of a polling session: `1` goes to a GET after what was sent.
    pub(crate) fn close_session(&mut self, conns: &mut Conns<'_>, key: ConnId, why: &'static str) {
        let Some(state) = self.state(key) else {
            return;
        };
        tracing::debug!(why, "closing a polling session");
        state.closing = true;
        state.close_reason.get_or_insert(super::node_reason(why));
        if let Some(polling) = state.polling.as_mut()
            && polling.closing_since.is_none()
        {
            polling.closing_since = Some(Instant::now());
        }
        self.try_answer(conns, key);
    }

    /// Ends session `key` now: a held GET gets `last`, the probe and mailbox close.
    pub(crate) fn end_session(&mut self, conns: &mut Conns<'_>, key: ConnId, last: &[u8]) {
        self.release_get(conns, key, last);
        self.drop_session(conns, key);
    }

    /// Remembers that polling session `key` is told `1` by a deliberate server-side
    /// close (a drain, a forced close): its late POSTs get `ok`. After an error they
    /// get 400, as in Node.
    pub(crate) fn say_farewell(&mut self, key: ConnId) {
        let sid = self
            .state(key)
            .filter(|s| {
                matches!(
                    s.close_reason,
                    Some("server shutting down" | "forced close")
                )
            })
            .and_then(|s| s.polling.as_ref())
            .filter(|p| !p.upgraded)
            .map(|p| p.sid);
        if let Some(sid) = sid {
            self.farewells.remember(sid, (), Instant::now());
        }
    }

    /// Forgets session `key` and closes its mailbox (and a probe).
    pub(crate) fn drop_session(&mut self, conns: &mut Conns<'_>, key: ConnId) {
        let Some(state) = self.take_state(key) else {
            return;
        };
        if let Some(probe) = self.release_state(conns, key, state) {
            conns.close(probe, CloseCode::NORMAL, "session closed");
        }
        conns.close(key, CloseCode::NORMAL, "session closed");
    }

    /// Timers of polling session `key` beyond Socket.IO's (the close wait).
    pub(crate) fn polling_timers(&mut self, conns: &mut Conns<'_>, key: ConnId, now: Instant) {
        let expired = self
            .state(key)
            .and_then(|s| s.polling.as_ref())
            .and_then(|p| p.closing_since)
            .is_some_and(|since| now.duration_since(since) >= CLOSE_WAIT);
        if expired {
            self.drop_session(conns, key);
        }
    }

    /// A WebSocket opened with the sid of polling session `key`: the upgrade starts.
    pub(crate) fn start_probe(&mut self, probe: ConnId, key: ConnId, out: &mut Outbox<'_>) {
        let now = Instant::now();
        let Some(state) = self.state(key) else {
            return out.close(CloseCode::NORMAL, "session gone");
        };
        if !state.session.start_upgrade(now) {
            return out.close(CloseCode::NORMAL, "upgrade refused");
        }
        if let Some(polling) = state.polling.as_mut() {
            polling.probe = Some(probe);
        }
        self.probes.insert(probe, key);
        // The upgrade is local: a CONNECT held for a handover runs now.
        self.release_hold(&mut out.conns(), key);
    }

    /// A message on probing WebSocket `probe` for session `key`.
    pub(crate) fn on_probe_message(
        &mut self,
        out: &mut Outbox<'_>,
        key: ConnId,
        text: bool,
        bytes: &[u8],
    ) {
        let probe = out.id();
        let now = Instant::now();
        let packet = if text {
            crate::engineio::packet::decode_text(bytes).ok()
        } else {
            None
        };
        let action = match (self.state(key), packet) {
            (Some(state), Some(packet)) => state.session.handle_packet(now, Via::Probe, &packet),
            (Some(state), None) => {
                state.session.abort_upgrade();
                Action::AbortUpgrade
            }
            (None, _) => Action::AbortUpgrade,
        };
        match action {
            Action::ProbeReply => {
                out.send(true, b"3probe");
                let mut conns = out.conns();
                if !conns.has_output(key) {
                    self.release_get(&mut conns, key, b"6");
                }
            }
            Action::Upgraded => self.finish_upgrade(out, key),
            _ => {
                self.probes.remove(&probe);
                if let Some(p) = self.state(key).and_then(|s| s.polling.as_mut()) {
                    p.probe = None;
                }
                out.close(CloseCode::NORMAL, "upgrade aborted");
            }
        }
    }

    /// `5` on the probe: the session moves onto this WebSocket, nothing lost.
    fn finish_upgrade(&mut self, out: &mut Outbox<'_>, key: ConnId) {
        let ws = out.id();
        self.probes.remove(&ws);
        let Some(mut state) = self.take_state(key) else {
            return;
        };
        // What polling had not fetched goes first, then what was on its way to the
        // mailbox, then whatever comes next.
        for packet in state.session.take_queue() {
            match packet {
                Outbound::Text(b) => out.send(true, &b),
                Outbound::Binary(b) => out.send_shared(false, b),
            }
        }
        out.take_over(key);
        let held = state.polling.as_mut().and_then(|p| {
            p.probe = None;
            p.upgraded = true;
            p.held.take()
        });
        self.polling_sessions = self.polling_sessions.saturating_sub(1);
        state.generation = ws.generation;
        let closing = state.closing;
        if let Some(p) = state.polling.as_ref() {
            self.sids.insert(p.sid, ws);
        }
        self.put_state(ws, state);
        let mut conns = out.conns();
        if let Some(held) = held {
            self.held.remove(&held.conn);
            self.answer_get(&mut conns, held.conn, held.jsonp, &held.cors, b"6");
        }
        conns.close(key, CloseCode::NORMAL, "upgraded");
        if closing {
            out.close(CloseCode::NORMAL, "server close");
        }
    }

    /// A connection of this worker is gone: forget what referred to it; a polling
    /// session whose held GET it was ends.
    pub(crate) fn forget_conn(&mut self, conns: &mut Conns<'_>, id: ConnId) {
        if let Some(key) = self.posting.remove(&id) {
            // A POST cut short: the client is gone (Node closes the session too).
            if let Some(state) = self.state(key) {
                state.close_reason.get_or_insert("transport close");
            }
            self.drop_session(conns, key);
        }
        if let Some(key) = self.held.remove(&id)
            && let Some(state) = self.state(key)
            && let Some(p) = state.polling.as_mut()
            && p.held.as_ref().is_some_and(|h| h.conn == id)
        {
            // The client dropped its GET: it is gone (Node closes the session too).
            p.held = None;
            state.close_reason.get_or_insert("transport close");
            self.drop_session(conns, key);
        }
        if let Some(key) = self.probes.remove(&id)
            && let Some(state) = self.state(key)
        {
            state.session.abort_upgrade();
            if let Some(p) = state.polling.as_mut() {
                p.probe = None;
            }
        }
    }
}
