//! One Engine.IO connection's Socket.IO state: its session (heartbeat), its sockets (one
//! per namespace joined), a binary packet waiting for its attachments, and the
//! dispatch of each packet to the namespace's handlers.
//!
//! Any protocol error closes this connection only: a packet that does not parse, a
//! packet for a namespace not joined, a CONNECT for one joined, a client
//! CONNECT_ERROR, a binary frame nobody announced, a text packet while attachments are
//! awaited.

use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use serde_json::value::RawValue;

use std::borrow::Cow;

use crate::engineio::packet::{self as eio, Data, decode_text};
use crate::engineio::session::{Action, Outbound, Session, Via};
use crate::engineio::sid::{SID_RANDOM_BYTES, Sid};
use crate::runtime::ConnId;
use crate::socketio::binary::{AttachmentLimits, Reassembly};
use crate::socketio::packet::{
    EventName, Packet, PacketType, connect_error, connect_ok, disconnect, parse_with_limit,
};
use crate::worker::{Conns, Outbox};
use crate::ws::CloseCode;

use super::Config;
use super::cx::{AckReply, Cx, Elements, Ending, Event, Socket, room_key};
use super::io::{PendingConnect, SocketsAction, SocketsOp};
use super::query::{
    Asked, Asking, ClientAckOnce, FetchedHandshake, FetchedSocket, Gathered, js_date_string,
};
use super::registry::{ConnectError, Handshake, Registry};

pub(crate) struct ConnState {
    pub generation: u32,
    /// A close was asked for: nothing more is sent or handled.
    pub closing: bool,
    pub session: Session,
    /// Set for a session opened by HTTP long-polling (upgraded or not).
    pub polling: Option<Box<super::polling::Polling>>,
    /// A WebSocket-only session's sid (polling sessions keep theirs in `polling`).
    pub ws_sid: Option<Sid>,
    /// Why the connection is closing, for the sockets' disconnect handlers (Node's
    /// reasons); `transport close` when the peer just went away.
    pub close_reason: Option<&'static str>,
    connect_deadline: Option<Instant>,
    sockets: Vec<Socket>,
    /// CONNECTs waiting for deferred middleware.
    pending: Vec<PendingSocket>,
    next_token: u32,
    binary: Reassembly,
}

/// A CONNECT accepted by the middleware so far, waiting for the deferred one.
struct PendingSocket {
    token: u32,
    namespace: usize,
    dyn_name: Option<Arc<str>>,
    auth: Option<Box<str>>,
    deadline: Instant,
}

impl PendingSocket {
    fn name<'r>(&'r self, registry: &'r Registry) -> Option<&'r str> {
        registry.name_of(self.namespace, self.dyn_name.as_deref())
    }
}

/// What a timer run asks of the transport.
#[derive(Default)]
pub(crate) struct Timers {
    /// Close the connection (Engine.IO close reason or Socket.IO's).
    pub close: Option<&'static str>,
    /// Output was queued for polling (a ping): answer a held GET.
    pub poll_ready: bool,
    /// Release a held GET with a noop (an upgrade is being probed).
    pub release_get: bool,
    /// The upgrade timed out: close the probing WebSocket.
    pub abort_upgrade: bool,
}

impl ConnState {
    pub fn new(generation: u32, session: Session, connect_deadline: Instant) -> ConnState {
        ConnState {
            generation,
            closing: false,
            session,
            polling: None,
            ws_sid: None,
            close_reason: None,
            connect_deadline: Some(connect_deadline),
            sockets: Vec::new(),
            pending: Vec::new(),
            next_token: 0,
            binary: Reassembly::new(),
        }
    }

    /// Whether a socket joined a namespace here, or a CONNECT waits for middleware.
    pub fn has_joined(&self) -> bool {
        !self.sockets.is_empty() || !self.pending.is_empty()
    }

    /// One WebSocket message (one Engine.IO packet; a binary frame is a message).
    #[allow(clippy::too_many_arguments)]
    pub fn on_message(
        &mut self,
        out: &mut Outbox<'_>,
        config: &Config,
        registry: &Registry,
        text: bool,
        bytes: &[u8],
        fresh_id: &[u8],
        now: Instant,
    ) {
        let packet = if text {
            let Ok(packet) = decode_text(bytes) else {
                return fail(out, "parse error");
            };
            packet
        } else {
            eio::Packet {
                kind: eio::PacketType::Message,
                data: Data::Binary(Cow::Borrowed(bytes)),
            }
        };
        self.on_packet(out, config, registry, packet, fresh_id, now);
    }

    /// One Engine.IO packet, from either transport.
    pub fn on_packet(
        &mut self,
        out: &mut Outbox<'_>,
        config: &Config,
        registry: &Registry,
        packet: eio::Packet<'_>,
        fresh_id: &[u8],
        now: Instant,
    ) {
        match self.session.handle_packet(now, Via::Current, &packet) {
            Action::Deliver => {}
            Action::Close(reason) => return out.close(CloseCode::NORMAL, reason.as_str()),
            _ => return,
        }
        let message = match packet.data {
            Data::Text(message) => message,
            Data::Binary(bytes) => {
                // A binary message: an attachment of the pending packet.
                return match self.binary.feed_binary(Bytes::copy_from_slice(&bytes)) {
                    Err(_) => fail(out, "binary data without a pending packet"),
                    Ok(None) => {}
                    Ok(Some(done)) => {
                        match parse_with_limit(&done.header, config.max_attachments) {
                            Ok(p) => {
                                self.dispatch(out, config, registry, p, &done.attachments, fresh_id)
                            }
                            Err(_) => fail(out, "invalid Socket.IO packet"),
                        }
                    }
                };
            }
        };
        if self.binary.check_text().is_err() {
            return fail(out, "text packet while attachments are awaited");
        }
        let Ok(p) = parse_with_limit(message, config.max_attachments) else {
            return fail(out, "invalid Socket.IO packet");
        };
        if p.kind.is_binary() && p.attachments > 0 {
            let limits = AttachmentLimits {
                max_attachments: config.max_attachments,
                max_total_bytes: config.max_payload,
            };
            let header = Bytes::copy_from_slice(message);
            if self.binary.begin(header, p.attachments, limits).is_err() {
                fail(out, "bad attachments");
            }
            return;
        }
        self.dispatch(out, config, registry, p, &[], fresh_id);
    }

    /// Runs one parsed packet (a binary one with its attachments).
    fn dispatch(
        &mut self,
        out: &mut Outbox<'_>,
        config: &Config,
        registry: &Registry,
        p: Packet<'_>,
        attachments: &[Bytes],
        fresh_id: &[u8],
    ) {
        let joined = self
            .sockets
            .iter()
            .position(|s| s.name(registry) == Some(p.namespace));
        match (p.kind, joined) {
            (PacketType::Connect, Some(_)) => fail(out, "CONNECT for a namespace joined"),
            (PacketType::Connect, None)
                if self
                    .pending
                    .iter()
                    .any(|w| w.name(registry) == Some(p.namespace)) =>
            {
                fail(out, "CONNECT for a namespace whose CONNECT is pending")
            }
            (PacketType::Connect, None) => self.connect(
                out,
                config,
                registry,
                p.namespace,
                p.payload,
                fresh_id,
                Instant::now(),
            ),
            (PacketType::ConnectError, _) => fail(out, "CONNECT_ERROR from a client"),
            (_, None) => fail(out, "packet for a namespace not joined"),
            (PacketType::Disconnect, Some(i)) => {
                let mut socket = self.sockets.swap_remove(i);
                let max_acks = config.max_pending_acks;
                notify_disconnect(
                    out,
                    registry,
                    max_acks,
                    &mut socket,
                    "client namespace disconnect",
                );
                leave_namespace(out, registry, &socket);
            }
            (PacketType::Event | PacketType::BinaryEvent, Some(i)) => {
                // The parser checked the shape: a non-empty array led by a valid name.
                let (Some(event), Some(elements)) = (
                    p.event.as_ref(),
                    p.payload
                        .and_then(|j| serde_json::from_slice::<Elements<'_>>(j).ok()),
                ) else {
                    return fail(out, "invalid event payload");
                };
                let name = match &event.name {
                    EventName::Str(name) => name.clone(),
                    EventName::Number(text) => Cow::Borrowed(*text),
                };
                let ev = Event {
                    name,
                    elements,
                    ack: p.ack_id,
                    attachments,
                };
                self.run(out, config, registry, i, |cx, ns| {
                    if let Some(handler) = ns.handler(&ev.name) {
                        handler(cx, &ev);
                    }
                });
            }
            (PacketType::Ack | PacketType::BinaryAck, Some(i)) => {
                let Some(id) = p.ack_id else {
                    return fail(out, "ACK without an id");
                };
                let Some(at) = self.sockets[i].acks.iter().position(|a| a.id == id) else {
                    return; // Late or unknown: ignored, as Node does.
                };
                let pending = self.sockets[i].acks.swap_remove(at);
                let elements: Vec<&RawValue> = p
                    .payload
                    .and_then(|j| serde_json::from_slice(j).ok())
                    .unwrap_or_default();
                self.run(out, config, registry, i, move |cx, _| {
                    (pending.callback)(
                        cx,
                        AckReply::Reply {
                            elements: &elements,
                            attachments,
                        },
                    )
                });
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn connect(
        &mut self,
        out: &mut Outbox<'_>,
        config: &Config,
        registry: &Registry,
        namespace: &str,
        auth: Option<&[u8]>,
        fresh_id: &[u8],
        now: Instant,
    ) {
        let Some((index, ns, dynamic)) = registry.find(namespace) else {
            return refuse(out, namespace, ConnectError::new("Invalid namespace"));
        };
        if self.sockets.len() + self.pending.len() >= config.max_namespaces {
            return fail(out, "too many namespaces on one connection");
        }
        let auth: Option<&RawValue> = auth.and_then(|a| serde_json::from_slice(a).ok());
        if let Err(e) = ns.admit(&Handshake { namespace, auth }) {
            return refuse(out, namespace, e);
        }
        let dyn_name: Option<Arc<str>> = dynamic.then(|| namespace.into());
        let kept_auth = auth
            .map(|a| a.get())
            .filter(|a| a.len() <= config.max_auth_bytes)
            .map(Box::from);
        if let Some(deferred) = &ns.deferred {
            let Some(sid) = self.sid() else {
                return refuse(out, namespace, ConnectError::new("no session"));
            };
            self.next_token = self.next_token.wrapping_add(1);
            let token = self.next_token;
            self.pending.push(PendingSocket {
                token,
                namespace: index,
                dyn_name,
                auth: kept_auth,
                deadline: now + config.connect_timeout,
            });
            let pending = PendingConnect {
                io: registry.io(),
                sid,
                token,
                answered: false,
            };
            deferred(&Handshake { namespace, auth }, pending);
            return;
        }
        self.accept(out, config, registry, index, dyn_name, kept_auth, fresh_id);
    }

    /// A deferred middleware's verdict on CONNECT `token`; ignored if that CONNECT is
    /// no longer waiting (timed out, or its connection closed).
    pub fn on_verdict(
        &mut self,
        out: &mut Outbox<'_>,
        config: &Config,
        registry: &Registry,
        token: u32,
        result: Result<(), ConnectError>,
        fresh_id: &[u8],
    ) {
        let Some(at) = self.pending.iter().position(|p| p.token == token) else {
            return;
        };
        let pending = self.pending.swap_remove(at);
        let Some(ns) = registry.get(pending.namespace) else {
            return;
        };
        let name = pending.dyn_name.as_deref().unwrap_or(&ns.name);
        match result {
            Err(e) => refuse(out, name, e),
            Ok(()) => self.accept(
                out,
                config,
                registry,
                pending.namespace,
                pending.dyn_name,
                pending.auth,
                fresh_id,
            ),
        }
    }

    /// The index of this connection's socket in `namespace` if it is in any of `rooms`
    /// (any socket if none) and in none of `except` (room names; an id is a room).
    fn addressed(
        &self,
        out: &Outbox<'_>,
        registry: &Registry,
        namespace: &str,
        rooms: &[String],
        except: &[String],
    ) -> Option<usize> {
        let i = self
            .sockets
            .iter()
            .position(|s| s.name(registry) == Some(namespace))?;
        let in_room = |room: &str| {
            let key = room_key(namespace, room);
            out.rooms().iter().any(|k| **k == *key)
        };
        let wanted = rooms.is_empty() || rooms.iter().any(|r| in_room(r));
        (wanted && !except.iter().any(|r| in_room(r))).then_some(i)
    }

    /// Applies a remote operation to this connection's socket in `op.namespace`, if it
    /// matches. `true` if it did.
    pub fn apply_sockets_op(
        &mut self,
        out: &mut Outbox<'_>,
        config: &Config,
        registry: &Registry,
        op: &SocketsOp,
    ) -> bool {
        let ns = op.namespace.as_str();
        let Some(i) = self.addressed(out, registry, ns, &op.rooms, &op.except) else {
            return false;
        };
        let max_acks = config.max_pending_acks;
        match &op.action {
            SocketsAction::Join(rooms) => {
                for room in rooms {
                    if !room.is_empty() && room.len() <= super::cx::MAX_ROOM_NAME {
                        let _ = out.join(&room_key(ns, room));
                    }
                }
            }
            SocketsAction::Leave(rooms) => {
                for room in rooms {
                    if !room.is_empty() && *room != self.sockets[i].id {
                        out.leave(&room_key(ns, room));
                    }
                }
            }
            SocketsAction::Disconnect { close: false } => {
                self.server_disconnect(out, registry, max_acks, i);
            }
            SocketsAction::Disconnect { close: true } => {
                self.server_disconnect_all(out, registry, max_acks);
                out.close(CloseCode::NORMAL, "server close");
            }
        }
        true
    }

    /// Adds this connection's socket to `part` if `asked` addresses it. `true` if
    /// output was queued (an event with an ack id).
    pub fn answer_asked(
        &mut self,
        out: &mut Outbox<'_>,
        config: &Config,
        registry: &Registry,
        asked: &Asked,
        part: &mut Gathered,
    ) -> bool {
        let ns = asked.namespace.as_str();
        let (rooms, except) = match asked.what {
            Asking::Rooms => (&[][..], &[][..]),
            _ => (&asked.rooms[..], &asked.except[..]),
        };
        let Some(i) = self.addressed(out, registry, ns, rooms, except) else {
            return false;
        };
        let keys: Vec<String> = out.rooms().iter().map(|k| k.to_string()).collect();
        let names = super::cx::room_names(ns, &keys);
        match &asked.what {
            Asking::Rooms => {
                part.rooms.extend(names.iter().map(|r| r.to_string()));
                false
            }
            Asking::Sockets => {
                let socket = &self.sockets[i];
                let data = registry
                    .get(socket.namespace)
                    .and_then(|n| n.data)
                    .zip(socket.state.as_deref())
                    .and_then(|(data_of, state)| data_of(state));
                let auth = socket
                    .auth
                    .as_deref()
                    .and_then(|a| serde_json::from_str(a).ok());
                let mut handshake = FetchedHandshake {
                    time: js_date_string(socket.issued),
                    issued: socket.issued,
                    url: super::PATH.to_string(),
                    ..FetchedHandshake::default()
                };
                if let Some(auth) = auth {
                    handshake.auth = auth;
                }
                part.sockets.push(FetchedSocket {
                    id: socket.id.clone(),
                    handshake,
                    rooms: names.iter().map(|r| r.to_string()).collect(),
                    data: data.unwrap_or_else(|| serde_json::json!({})),
                });
                false
            }
            Asking::EmitWithAck {
                elements,
                attachments,
                timeout,
                on_ack,
            } => {
                part.clients += 1;
                let raw: Vec<&[u8]> = elements.iter().map(|e| e.get().as_bytes()).collect();
                let once = ClientAckOnce::new(std::sync::Arc::clone(on_ack));
                let timeout = *timeout;
                self.run(out, config, registry, i, move |cx, _| {
                    let callback = Box::new(move |_: &mut Cx<'_, '_>, reply: AckReply<'_>| {
                        once.call(match reply {
                            AckReply::Reply { elements, .. } => {
                                Some(elements.first().copied().unwrap_or(RawValue::NULL))
                            }
                            AckReply::Timeout => None,
                        });
                    });
                    cx.emit_with_ack(&raw, attachments, timeout, callback);
                });
                true
            }
        }
    }

    /// The session's sid (polling or WebSocket-only).
    fn sid(&self) -> Option<Sid> {
        self.polling.as_ref().map(|p| p.sid).or(self.ws_sid)
    }

    /// Makes the socket of an accepted CONNECT: joins its rooms, answers `0{sid}`,
    /// runs `on_connect`.
    #[allow(clippy::too_many_arguments)]
    fn accept(
        &mut self,
        out: &mut Outbox<'_>,
        config: &Config,
        registry: &Registry,
        index: usize,
        dyn_name: Option<Arc<str>>,
        auth: Option<Box<str>>,
        fresh_id: &[u8],
    ) {
        let Some(ns) = registry.get(index) else {
            return;
        };
        let namespace = dyn_name.as_deref().unwrap_or(&ns.name);
        let Ok(random) = <[u8; SID_RANDOM_BYTES]>::try_from(fresh_id) else {
            return fail(out, "no id available");
        };
        let id = Sid::new(0, random).to_string();
        let joined = out.join(&room_key(namespace, "")).is_ok()
            && out.join(&room_key(namespace, &id)).is_ok();
        if !joined {
            return fail(out, "room bound reached: cannot join the namespace");
        }
        let mut reply = vec![b'4'];
        connect_ok(namespace, &id, &mut reply);
        out.send(true, &reply);
        self.sockets.push(Socket {
            namespace: index,
            dyn_name: dyn_name.clone(),
            id,
            auth,
            issued: super::query::now_ms(),
            next_ack: 0,
            acks: Vec::new(),
            state: ns.state.map(|make| make()),
        });
        self.connect_deadline = None;
        if ns.on_connect.is_some() {
            let i = self.sockets.len() - 1;
            self.run(out, config, registry, i, |cx, ns| {
                if let Some(handler) = &ns.on_connect {
                    // Copied: the handler may read the socket's auth through `cx` too.
                    let kept = cx.socket.auth.clone();
                    let auth = kept
                        .as_deref()
                        .and_then(|a| serde_json::from_str::<&RawValue>(a).ok());
                    let namespace = cx.namespace;
                    handler(cx, &Handshake { namespace, auth });
                }
            });
        }
    }

    /// Every socket leaves with `reason` (its disconnect handler runs); the connection
    /// is gone or going.
    pub fn disconnect_all(
        &mut self,
        out: &mut Outbox<'_>,
        registry: &Registry,
        max_pending_acks: usize,
        reason: &str,
    ) {
        for mut socket in std::mem::take(&mut self.sockets) {
            notify_disconnect(out, registry, max_pending_acks, &mut socket, reason);
            leave_namespace(out, registry, &socket);
        }
    }

    /// Runs `f` with a `Cx` for socket `i`, then applies how it asked to end.
    fn run(
        &mut self,
        out: &mut Outbox<'_>,
        config: &Config,
        registry: &Registry,
        i: usize,
        f: impl FnOnce(&mut Cx<'_, '_>, &super::Namespace),
    ) {
        let Some(ns) = registry.get(self.sockets[i].namespace) else {
            return;
        };
        let dyn_name = self.sockets[i].dyn_name.clone();
        let mut ending = Ending::default();
        {
            let mut cx = Cx {
                out: &mut *out,
                socket: &mut self.sockets[i],
                namespace: dyn_name.as_deref().unwrap_or(&ns.name),
                ending: &mut ending,
                max_pending_acks: config.max_pending_acks,
                io: registry.io_ref(),
            };
            f(&mut cx, ns);
        }
        let max_acks = config.max_pending_acks;
        if ending.drop_transport {
            self.close_reason.get_or_insert("forced close");
            out.close(CloseCode::NORMAL, "transport close");
        } else if ending.close {
            self.server_disconnect_all(out, registry, max_acks);
            out.close(CloseCode::NORMAL, "server close");
        } else if ending.disconnect && i < self.sockets.len() {
            self.server_disconnect(out, registry, max_acks, i);
        }
    }

    /// The server ends socket `i`: its disconnect handler, then DISCONNECT to the client.
    fn server_disconnect(
        &mut self,
        out: &mut Outbox<'_>,
        registry: &Registry,
        max_acks: usize,
        i: usize,
    ) {
        let mut socket = self.sockets.swap_remove(i);
        notify_disconnect(out, registry, max_acks, &mut socket, SERVER_DISCONNECT);
        disconnect_socket(out, registry, &socket);
    }

    /// The server ends every socket (the connection is to close next).
    fn server_disconnect_all(
        &mut self,
        out: &mut Outbox<'_>,
        registry: &Registry,
        max_acks: usize,
    ) {
        for mut socket in std::mem::take(&mut self.sockets) {
            notify_disconnect(out, registry, max_acks, &mut socket, SERVER_DISCONNECT);
            disconnect_socket(out, registry, &socket);
        }
    }

    /// Heartbeat, CONNECT timeout and ack timeouts. `held_get`: a polling GET is held.
    pub fn on_timer(
        &mut self,
        conns: &mut Conns<'_>,
        id: ConnId,
        registry: &Registry,
        max_pending_acks: usize,
        held_get: bool,
        now: Instant,
    ) -> Timers {
        let mut timers = Timers::default();
        if self.closing {
            return timers;
        }
        loop {
            match self
                .session
                .handle_timeout(now, held_get && !timers.release_get)
            {
                Action::SendNow(Outbound::Text(b)) => {
                    conns.with(id, |out| out.send(true, &b));
                }
                Action::PollReady => timers.poll_ready = true,
                Action::ReleaseGet => timers.release_get = true,
                Action::AbortUpgrade => timers.abort_upgrade = true,
                Action::Close(reason) => {
                    timers.close = Some(reason.as_str());
                    return timers;
                }
                Action::None => break,
                _ => {}
            }
        }
        if self.connect_deadline.is_some_and(|d| now >= d) {
            timers.close = Some("connect timeout");
            return timers;
        }
        while let Some(at) = self.pending.iter().position(|p| now >= p.deadline) {
            let pending = self.pending.swap_remove(at);
            if let Some(name) = pending.name(registry) {
                let e = ConnectError::new("middleware timeout");
                conns.with(id, |out| refuse(out, name, e));
            }
        }
        let mut i = 0;
        while i < self.sockets.len() {
            let Some(at) = self.sockets[i].acks.iter().position(|a| now >= a.deadline) else {
                i += 1;
                continue;
            };
            let pending = self.sockets[i].acks.swap_remove(at);
            let Some(ns) = registry.get(self.sockets[i].namespace) else {
                continue;
            };
            let socket = &mut self.sockets[i];
            let dyn_name = socket.dyn_name.clone();
            let mut ending = Ending::default();
            let asked = conns.with(id, |out| {
                let mut cx = Cx {
                    out,
                    socket,
                    namespace: dyn_name.as_deref().unwrap_or(&ns.name),
                    ending: &mut ending,
                    max_pending_acks,
                    io: registry.io_ref(),
                };
                (pending.callback)(&mut cx, AckReply::Timeout);
            });
            // How the callback asked to end, as after any handler.
            if ending.drop_transport {
                self.close_reason.get_or_insert("forced close");
                timers.close = Some("transport close");
                return timers;
            }
            if ending.close {
                conns.with(id, |out| {
                    self.server_disconnect_all(out, registry, max_pending_acks);
                });
                timers.close = Some("server close");
                return timers;
            }
            if ending.disconnect {
                conns.with(id, |out| {
                    self.server_disconnect(out, registry, max_pending_acks, i);
                });
                continue;
            }
            if let Some((_, why)) = asked {
                timers.close = Some(why);
                return timers;
            }
        }
        timers
    }
}

fn leave_namespace(out: &mut Outbox<'_>, registry: &Registry, socket: &Socket) {
    let Some(ns) = registry.get(socket.namespace) else {
        return;
    };
    let prefix = room_key(socket.dyn_name.as_deref().unwrap_or(&ns.name), "");
    let mine: Vec<String> = out
        .rooms()
        .iter()
        .filter(|k| k.starts_with(prefix.as_str()))
        .map(|k| k.to_string())
        .collect();
    for key in mine {
        out.leave(&key);
    }
}

/// Node's reason when the server disconnects a socket.
const SERVER_DISCONNECT: &str = "server namespace disconnect";

/// Runs the namespace's disconnect handler for `socket` (what it asks to end is moot).
fn notify_disconnect(
    out: &mut Outbox<'_>,
    registry: &Registry,
    max_pending_acks: usize,
    socket: &mut Socket,
    reason: &str,
) {
    let Some(ns) = registry.get(socket.namespace) else {
        return;
    };
    let Some(handler) = &ns.on_disconnect else {
        return;
    };
    let mut ending = Ending::default();
    let dyn_name = socket.dyn_name.clone();
    let mut cx = Cx {
        out,
        socket,
        namespace: dyn_name.as_deref().unwrap_or(&ns.name),
        ending: &mut ending,
        max_pending_acks,
        io: registry.io_ref(),
    };
    handler(&mut cx, reason);
}

fn disconnect_socket(out: &mut Outbox<'_>, registry: &Registry, socket: &Socket) {
    if let Some(ns) = registry.get(socket.namespace) {
        let mut packet = vec![b'4'];
        disconnect(socket.dyn_name.as_deref().unwrap_or(&ns.name), &mut packet);
        out.send(true, &packet);
    }
    leave_namespace(out, registry, socket);
}

/// CONNECT_ERROR for `namespace` (the connection stays).
fn refuse(out: &mut Outbox<'_>, namespace: &str, e: ConnectError) {
    let mut packet = vec![b'4'];
    connect_error(
        namespace,
        &e.message,
        e.data.as_deref().map(str::as_bytes),
        &mut packet,
    );
    out.send(true, &packet);
}

fn fail(out: &mut Outbox<'_>, why: &'static str) {
    tracing::debug!(why, "closing a Socket.IO connection");
    out.close(CloseCode::NORMAL, why);
}
