//! Handing a polling session over to the process where its WebSocket upgrade landed
//! (sticky-free polling over a Redis bus), so that the WebSocket ends up local there
//! instead of relayed over the bus for its whole life.
//!
//! The official client sends its first CONNECT as soon as the Engine.IO session opens,
//! before it probes the upgrade; a session that joined a namespace has sockets in this
//! process's rooms and cannot move. So, on a bus, the owner *holds* a polling session's
//! first CONNECT and the messages after it (`Hold`) for at most `HANDOVER_WAIT`, as
//! `@socket.io/cluster-engine` does (only while other Throng processes are on the bus,
//! counted every 5 s: a lone one holds nothing):
//! - a WebSocket probe that lands here releases them (the upgrade is local);
//! - one that lands on another process (`HandoverAsk`) takes them along: the session,
//!   which has joined no namespace, goes there with them and with what is queued for the
//!   client (`Handover`); requests still on their way here are forwarded there
//!   (`moved`), and a held GET is let go with a noop so that the client polls again;
//! - the wait running out releases them (a client that does not upgrade).
//!
//! A session that has joined a namespace, or is mid-POST, or is closing, is relayed
//! instead (`Relay::relay_tunnel`), as before.
//!
//! On the landing process the bus records the session as adopted by the worker holding
//! the WebSocket as soon as the handover is read, so that requests the owner forwards
//! back are routed there; one that reaches that worker before the session is made
//! there waits for it (`Parked`, at most `PARK_WAIT`, then 400 code 1).
//!
//! Invariants: a session holds at most `MAX_HELD_PACKETS` messages and
//! `MAX_HELD_BYTES` (past either, they run at once and the session is not handed
//! over); held messages run in order, before anything the client sends after them,
//! exactly once, here or where the session went; a session holds only once.

use std::borrow::Cow;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::engineio::packet::{Data, Packet, PacketType};
use crate::engineio::request::ErrorCode;
use crate::engineio::request::Transport;
use crate::engineio::session::{Outbound, Session};
use crate::engineio::sid::Sid;
use crate::http::Request;
use crate::runtime::ConnId;
use crate::worker::Conns;
use crate::ws::CloseCode;

use super::Server;
use super::io::{HandedPacket, Handover, HandoverAsk};

/// How long a first CONNECT is held for a WebSocket to land (released by the first
/// sweep after it: at most 250 ms more).
pub const HANDOVER_WAIT: Duration = Duration::from_millis(300);
/// Messages one session holds at most.
const MAX_HELD_PACKETS: usize = 16;
/// Bytes one session holds at most.
const MAX_HELD_BYTES: usize = 64 << 10;
/// How long a request waits for a session on its way here.
const PARK_WAIT: Duration = Duration::from_secs(1);
/// Requests one worker keeps waiting for sessions on their way (more: 503).
const MAX_PARKED: usize = 1024;

/// A polling request for a session being handed over to this worker, waiting for it.
pub(crate) struct Parked {
    sid: Sid,
    conn: ConnId,
    method: String,
    target: String,
    origin: Option<Vec<u8>>,
    content_type: Option<Vec<u8>>,
    body: Vec<u8>,
    deadline: Instant,
}

impl Parked {
    /// The request as it came.
    fn request(&self) -> Request<'_> {
        Request {
            method: &self.method,
            target: &self.target,
            minor_version: 1,
            host: None,
            upgrade: None,
            connection: None,
            sec_websocket_key: None,
            sec_websocket_version: None,
            origin: self.origin.as_deref(),
            content_length: None,
            content_type: self.content_type.as_deref(),
            transfer_encoding: None,
            access_control_request_headers: None,
            head_len: 0,
        }
    }
}

/// A polling session's hold on its first messages.
#[derive(Default)]
pub(crate) enum Hold {
    /// Nothing held yet; the first CONNECT may be.
    #[default]
    Unused,
    /// Until the deadline kept in `Server::holding`.
    Holding {
        packets: Vec<HandedPacket>,
        bytes: usize,
    },
    /// Released (or never to be used): nothing is held again.
    Over,
}

impl Hold {
    pub fn is_holding(&self) -> bool {
        matches!(self, Hold::Holding { .. })
    }
}

/// `packet` as it travels in a handover, if it is a message.
fn handed(packet: &Packet<'_>) -> Option<HandedPacket> {
    (packet.kind == PacketType::Message).then(|| match &packet.data {
        Data::Text(t) => HandedPacket::new(true, t),
        Data::Binary(b) => HandedPacket::new(false, b),
    })
}

impl Server {
    /// Whether message `packet`, which the client sent to polling session `key`, is
    /// held for a handover (else it runs now, after what was held: see `post`). A
    /// session that will never hold costs one look at its state, nothing more.
    pub(super) fn hold(&mut self, key: ConnId, packet: &Packet<'_>, now: Instant) -> bool {
        let Some(state) = self.state(key) else {
            return false;
        };
        let (joined, upgrading) = (state.has_joined(), state.session.is_upgrading());
        let Some(polling) = state.polling.as_mut() else {
            return false;
        };
        let connect = matches!(packet.data, Data::Text(t) if t.first() == Some(&b'0'));
        match &mut polling.hold {
            Hold::Over => false,
            Hold::Holding { packets, bytes, .. } => {
                let Some(handed) = handed(packet) else {
                    return false;
                };
                let room = packets.len() < MAX_HELD_PACKETS
                    && *bytes + handed.data.len() <= MAX_HELD_BYTES;
                if room {
                    *bytes += handed.data.len();
                    packets.push(handed);
                }
                room
            }
            Hold::Unused => {
                if !connect || joined || upgrading || polling.upgraded {
                    return false;
                }
                let Some(handed) = handed(packet) else {
                    return false;
                };
                let can_hand_over = self
                    .registry
                    .io_ref()
                    .relay()
                    .is_some_and(|relay| relay.can_hand_over());
                if !can_hand_over {
                    return false;
                }
                let until = now + HANDOVER_WAIT;
                if let Some(p) = self.state(key).and_then(|s| s.polling.as_mut()) {
                    p.hold = Hold::Holding {
                        bytes: handed.data.len(),
                        packets: vec![handed],
                    };
                }
                self.holding.push((key, until));
                true
            }
        }
    }

    /// Runs what session `key` holds, in order, and holds nothing again.
    pub(super) fn release_hold(&mut self, conns: &mut Conns<'_>, key: ConnId) {
        let Some(polling) = self.state(key).and_then(|s| s.polling.as_mut()) else {
            return;
        };
        if !polling.hold.is_holding() {
            return;
        }
        let Hold::Holding { packets, .. } = std::mem::replace(&mut polling.hold, Hold::Over) else {
            return;
        };
        self.run_messages(conns, key, packets);
    }

    /// Runs client messages `packets` on polling session `key` as a POST would (up to
    /// one that closes the session).
    fn run_messages(&mut self, conns: &mut Conns<'_>, key: ConnId, packets: Vec<HandedPacket>) {
        let now = Instant::now();
        for p in packets {
            let packet = Packet {
                kind: PacketType::Message,
                data: if p.text {
                    Data::Text(&p.data)
                } else {
                    Data::Binary(Cow::Borrowed(&p.data))
                },
            };
            if self.state(key).is_none_or(|s| s.closing)
                || !self.run_packet(conns, key, packet, now)
            {
                return;
            }
        }
        self.try_answer(conns, key);
    }

    /// Sessions whose hold ran out: what they held runs now (a session released
    /// earlier, or gone, is skipped).
    pub(super) fn release_expired_holds(&mut self, conns: &mut Conns<'_>, now: Instant) {
        if self.holding.iter().all(|&(_, until)| until > now) {
            return;
        }
        let (expired, waiting) = std::mem::take(&mut self.holding)
            .into_iter()
            .partition::<Vec<_>, _>(|&(_, until)| until <= now);
        self.holding = waiting;
        for (key, _) in expired {
            self.release_hold(conns, key);
        }
    }

    /// Owner side: the WebSocket upgrade `ask` of one of this worker's sessions landed
    /// on another process: the session goes there if it has joined no namespace, else
    /// the upgrade is relayed.
    pub(super) fn on_handover_ask(&mut self, conns: &mut Conns<'_>, ask: HandoverAsk) {
        let Some(relay) = self.registry.io_ref().relay().cloned() else {
            return;
        };
        let key = self.sids.get(&ask.sid).copied();
        let handover = key.and_then(|key| self.handover_of(conns, key, &ask.sid));
        match (key, handover) {
            (Some(key), Some(handover)) if relay.hand_over(&ask, &handover) => {
                tracing::debug!(sid = %ask.sid.as_str(), "session handed over to where its WebSocket landed");
                self.moved.remember(ask.sid, ask.from, Instant::now());
                if let Some(p) = self.state(key).and_then(|s| s.polling.as_mut()) {
                    p.hold = Hold::Over; // Its messages went with it.
                }
                self.end_session(conns, key, b"6");
            }
            _ => {
                if let Some(key) = key {
                    self.release_hold(conns, key);
                }
                relay.relay_tunnel(ask);
            }
        }
    }

    /// Session `key` as it would be handed over, if it can be: on polling, not
    /// upgrading or closing, in no namespace, with no POST arriving and no output on
    /// its way to its queue.
    fn handover_of(&mut self, conns: &Conns<'_>, key: ConnId, sid: &Sid) -> Option<Handover> {
        let posting = self.posting.values().any(|&k| k == key);
        let busy = posting || conns.has_output(key);
        let state = self.state(key)?;
        let polling = state.polling.as_ref()?;
        let movable = !busy
            && !state.closing
            && !state.has_joined()
            && state.session.transport() == Transport::Polling
            && !state.session.is_upgrading()
            && !polling.upgraded
            && polling.probe.is_none()
            && polling.closing_since.is_none();
        if !movable {
            return None;
        }
        let inbound = match &polling.hold {
            Hold::Holding { packets, .. } => packets.clone(),
            _ => Vec::new(),
        };
        let outbound = state
            .session
            .queued()
            .map(|p| match p {
                Outbound::Text(b) => HandedPacket::new(true, b),
                Outbound::Binary(b) => HandedPacket::new(false, b),
            })
            .collect();
        Some(Handover {
            sid: sid.as_str().to_string(),
            inbound,
            outbound,
        })
    }

    /// Whether `sid` is on its way to this worker (handed over, not made here yet).
    pub(super) fn is_arriving(&self, sid: &Sid) -> bool {
        !self.sids.contains_key(sid)
            && self.is_tagged_elsewhere(sid)
            && self.registry.io_ref().adopted_worker(sid) == Some(self.worker)
    }

    /// Polling request `req` on `id` for `sid`, a session on its way here: it waits.
    pub(super) fn park(
        &mut self,
        conns: &mut Conns<'_>,
        id: ConnId,
        sid: Sid,
        req: &Request<'_>,
        body: &[u8],
        cors: &[u8],
    ) {
        if self.parked.len() >= MAX_PARKED {
            conns.respond(id, 503, "text/plain", cors, b"too many requests waiting");
            return;
        }
        tracing::debug!(sid = %sid.as_str(), "a request waits for its session, handed over to this worker");
        self.parked.push(Parked {
            sid,
            conn: id,
            method: req.method.to_string(),
            target: req.target.to_string(),
            origin: req.origin.map(<[u8]>::to_vec),
            content_type: req.content_type.map(<[u8]>::to_vec),
            body: body.to_vec(),
            deadline: Instant::now() + PARK_WAIT,
        });
    }

    /// Session `sid` is made here: the requests that waited for it run, in order.
    fn unpark(&mut self, conns: &mut Conns<'_>, sid: &Sid) {
        if self.parked.is_empty() {
            return;
        }
        let (mine, others) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| p.sid == *sid);
        self.parked = others;
        for p in mine {
            self.on_polling_request(conns, p.conn, &p.request(), &p.body);
        }
    }

    /// Requests whose session did not come in time: 400 code 1 (the client opens a
    /// new session); those whose connection closed are forgotten.
    pub(super) fn expire_parked(
        &mut self,
        conns: &mut Conns<'_>,
        now: Instant,
        gone: Option<ConnId>,
    ) {
        if self.parked.is_empty() {
            return;
        }
        let (late, waiting) = std::mem::take(&mut self.parked)
            .into_iter()
            .partition(|p| p.deadline <= now || Some(p.conn) == gone);
        self.parked = waiting;
        for p in late.into_iter().filter(|p| Some(p.conn) != gone) {
            let cors = self.cors.headers(p.origin.as_deref());
            self.refuse(conns, p.conn, &cors, ErrorCode::UnknownSid);
        }
    }

    /// Landing side: `handover` came for relayed connection `conn`, still open (its
    /// tunnel is forgotten already); the session is made here and `conn` becomes its
    /// probe, with the messages the client sent on it meanwhile (`early`).
    pub(super) fn adopt_session(
        &mut self,
        conns: &mut Conns<'_>,
        conn: ConnId,
        handover: Handover,
        early: Vec<(bool, Vec<u8>)>,
    ) {
        let Some(sid) = Sid::parse(&handover.sid) else {
            return conns.close(conn, CloseCode::GOING_AWAY, "session unreachable");
        };
        self.registry.io_ref().adopt(sid, self.worker);
        let now = Instant::now();
        let mut session = Session::new(Transport::Polling, self.session_config(), now);
        for p in handover.outbound {
            let bytes = Bytes::from(p.data);
            session.send(if p.text {
                Outbound::Text(bytes)
            } else {
                Outbound::Binary(bytes)
            });
        }
        let key = self.add_polling_session(conns, sid, session, Hold::Over, now);
        self.run_messages(conns, key, handover.inbound);
        self.unpark(conns, &sid);
        if self.state(key).is_none_or(|s| s.closing) {
            return conns.close(conn, CloseCode::NORMAL, "session closed");
        }
        conns.with(conn, |out| self.start_probe(conn, key, out));
        for (text, data) in early {
            if !self.probes.contains_key(&conn) {
                break;
            }
            conns.with(conn, |out| self.on_probe_message(out, key, text, &data));
        }
    }
}
