//! Reaching sockets from outside their handlers: `Io`, a `Clone + Send + Sync` handle
//! for any thread (emit to a namespace, its rooms, one socket; answer an `Ack` kept
//! from an event), and `PendingConnect`, a CONNECT whose deferred middleware answers
//! later, from any thread.
//!
//! Everything goes through the workers' fabric inboxes: an emit is encoded once into a
//! `Broadcast` and one `Arc` of it is pushed to every worker; an ack answer is a
//! broadcast to the asking socket's own id room; a middleware verdict is posted to the
//! worker owning the session (its sid names it) and applied there on its thread.
//!
//! An `Io` exists before the server runs (`Registry::io`) and reaches the workers once
//! they have started; until then, and after they stop, its calls return
//! `IoError::NotRunning`. A call from another thread waits (up to `PATIENCE`) while a
//! worker's inbox is full, so a slow server slows its publishers instead of queueing
//! without bound; volatile emits, and calls from handlers (on a worker), never wait.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use serde_json::value::RawValue;

use crate::engineio::sid::{ProcessTag, Sid};
use crate::fabric::{Broadcast, Fabric, Inbound, RoomWatch};

use super::cx::{
    ACK, EVENT, broadcast_frames, json_string, room_key, room_keys, sendable_event_name,
};
use super::query::{
    AckRound, Answered, Asked, Asking, FetchedSocket, Gather, Gathered, OnClientAck, Question,
    Reply,
};
use super::registry::ConnectError;

/// How long an `Io` call waits for room in a full inbox before giving up.
pub const PATIENCE: Duration = Duration::from_secs(1);

/// Why an `Io` call did nothing (or not everywhere).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoError {
    /// The server has not started (or has stopped).
    NotRunning,
    /// A worker's inbox stayed full for `PATIENCE`; workers with room got it.
    Saturated,
    /// The event name is not one clients accept (reserved, or not a string/number),
    /// or the arguments do not serialize.
    Unsendable,
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            IoError::NotRunning => "the server is not running",
            IoError::Saturated => "a worker's inbox stayed full",
            IoError::Unsendable => "the event cannot be sent (reserved name or bad arguments)",
        })
    }
}

impl std::error::Error for IoError {}

/// A broadcast as it leaves this process, for a bridge to other hosts: the event (raw
/// JSON elements, name first, with placeholders for `attachments`) and whom it is for,
/// by room name within `namespace`.
pub struct Relayed<'a> {
    pub namespace: &'a str,
    /// Empty: the whole namespace.
    pub rooms: Vec<&'a str>,
    /// Rooms (a socket's id is a room) whose members do not get it.
    pub except: Vec<&'a str>,
    pub volatile: bool,
    pub elements: &'a [&'a [u8]],
    pub attachments: &'a [Bytes],
}

/// Where broadcasts leaving this process go (the Redis bridge). Called on the thread
/// that broadcasts, a worker's among them: it must not block.
pub trait Relay: Send + Sync {
    fn relay(&self, broadcast: &Relayed<'_>);
    /// A request for the other hosts (no answer awaited).
    fn request(&self, _request: &RelayedRequest<'_>) {}
    /// Sends a polling request for a session of process `owner` there; its fate comes
    /// back to worker `reply_to.0` as `Forwarded` messages for connection
    /// `reply_to.1`, under the id returned. `None`: it cannot be forwarded (no bus, too
    /// many in flight).
    fn forward(
        &self,
        _owner: &ProcessTag,
        _request: ForwardedRequest,
        _reply_to: (usize, crate::runtime::ConnId),
    ) -> Option<u64> {
        None
    }
    /// Forgets forwarded request `id` (its connection was answered or went away): a
    /// late answer is dropped.
    fn cancel_forward(&self, _id: u64) {}
    /// Whether a WebSocket upgrade of another process's session can be relayed now.
    fn can_tunnel(&self) -> bool {
        false
    }
    /// Whether a session of this process could be handed over now: the bus is up and
    /// other processes that could take it are on it.
    fn can_hand_over(&self) -> bool {
        false
    }
    /// Relays the WebSocket upgrade of `target` that connection `reply_to.1` of worker
    /// `reply_to.0` made for a session of process `owner`: the owner's messages come
    /// back there as `Tunneled`, under the id returned. `None`: it cannot be relayed.
    fn open_tunnel(
        &self,
        _owner: &ProcessTag,
        _target: &str,
        _origin: Option<&str>,
        _reply_to: (usize, crate::runtime::ConnId),
    ) -> Option<u64> {
        None
    }
    /// The client's message on tunnel `id`. `false`: the tunnel is over.
    fn tunnel_up(&self, _owner: &ProcessTag, _id: u64, _text: bool, _data: &[u8]) -> bool {
        false
    }
    /// The client of tunnel `id` is gone.
    fn end_tunnel(&self, _owner: &ProcessTag, _id: u64) {}
    /// Owner side: sends `handover` to `ask.from`, where the session's WebSocket
    /// landed. `false`: it could not be sent (the session stays here).
    fn hand_over(&self, _ask: &HandoverAsk, _handover: &Handover) -> bool {
        false
    }
    /// Owner side: the upgrade `ask` is relayed (the session stays here).
    fn relay_tunnel(&self, _ask: HandoverAsk) {}
    /// A question for the other hosts: `reply` gets their answers, once, with
    /// `servers` set to the number of servers on the bus, this one included. Must not
    /// block; fails fast (an error in the reply) while the bus is unreachable.
    fn ask(&self, _namespace: &str, _question: Question, reply: Reply) {
        reply(Gathered {
            servers: 1,
            ..Gathered::default()
        })
    }
}

/// A polling request forwarded to the process that owns its session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ForwardedRequest {
    pub method: String,
    /// Path and query, as sent.
    pub target: String,
    pub origin: Option<String>,
    pub content_type: Option<String>,
    pub body: Vec<u8>,
}

/// An HTTP answer relayed from the owning process: status, content type, extra header
/// lines (each ending in CRLF) and body.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RelayedAnswer {
    pub status: u16,
    pub content_type: String,
    pub extra: Vec<u8>,
    pub body: Vec<u8>,
}

/// What became of a forwarded request, posted to the worker holding its connection.
pub struct Forwarded {
    pub conn: crate::runtime::ConnId,
    /// The id `Relay::forward` gave it: an event for an older request on the same
    /// connection is ignored.
    pub id: u64,
    pub event: ForwardEvent,
}

pub enum ForwardEvent {
    /// The owner took it: the answer may take as long as a long-poll.
    Accepted,
    Answered(RelayedAnswer),
    /// The owner could not serve it (unknown, gone, overloaded).
    Failed,
}

/// The owner's side of a relayed WebSocket, posted to the worker holding the client.
pub struct Tunneled {
    pub conn: crate::runtime::ConnId,
    /// The id `Relay::open_tunnel` gave it.
    pub id: u64,
    pub event: TunnelEvent,
}

pub enum TunnelEvent {
    /// The owner relays the session: the client's messages may go up now.
    Accepted,
    /// The owner handed the session over: it is served here from now on.
    HandedOver(Box<Handover>),
    /// A message for the client.
    Message { text: bool, data: Vec<u8> },
    /// The owner's side ended (or never opened): the connection closes.
    End,
}

/// A polling session that has joined no namespace, handed by its owner to the process
/// where its WebSocket upgrade landed, so that the WebSocket ends up local.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Handover {
    /// The session's id, as the client knows it (it still names the first owner).
    pub sid: String,
    /// Messages from the client the owner held (a first CONNECT and what followed it),
    /// in order: Engine.IO message payloads.
    pub inbound: Vec<HandedPacket>,
    /// Packets queued for the client and not yet fetched, in order (text ones with
    /// their Engine.IO type digit).
    pub outbound: Vec<HandedPacket>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HandedPacket {
    pub text: bool,
    pub data: Vec<u8>,
}

impl HandedPacket {
    pub fn new(text: bool, data: &[u8]) -> HandedPacket {
        HandedPacket {
            text,
            data: data.to_vec(),
        }
    }
}

/// A WebSocket upgrade of one of this process's sessions that landed on process
/// `from` (tunnel `id` there), posted by the bus to the worker owning the session: it
/// hands the session over (`Relay::hand_over`) or has the upgrade relayed
/// (`Relay::relay_tunnel`).
#[derive(Clone, Debug)]
pub struct HandoverAsk {
    pub from: ProcessTag,
    pub id: u64,
    pub sid: Sid,
    pub target: String,
    pub origin: Option<String>,
}

/// A request leaving this process for the other hosts.
pub enum RelayedRequest<'a> {
    /// `socketsJoin`, `socketsLeave`, `disconnectSockets` (already applied here).
    Sockets(&'a SocketsOp),
    /// `serverSideEmit` without an ack: the event's raw JSON elements, name first.
    ServerSideEmit {
        namespace: &'a str,
        elements: &'a [&'a [u8]],
    },
}

/// An operation on the sockets of `namespace` in any of `rooms` (all of them if none)
/// and in none of `except` (a socket's id is a room): what `socketsJoin`,
/// `socketsLeave` and `disconnectSockets` of other nodes and emitters ask.
#[derive(Clone, Debug, PartialEq)]
pub struct SocketsOp {
    pub namespace: String,
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    pub action: SocketsAction,
}

#[derive(Clone, Debug, PartialEq)]
pub enum SocketsAction {
    Join(Vec<String>),
    Leave(Vec<String>),
    /// DISCONNECT from the namespace (`server namespace disconnect`); `close`: from
    /// every namespace, and the connection closes (`io server disconnect` on the client).
    Disconnect {
        close: bool,
    },
}

/// A handle on a running server's sockets, for any thread.
#[derive(Clone, Default)]
pub struct Io {
    fabric: Arc<OnceLock<Arc<Fabric>>>,
    relay: Arc<OnceLock<Arc<dyn Relay>>>,
    room_watch: Arc<OnceLock<RoomWatch>>,
    process_tag: Arc<OnceLock<ProcessTag>>,
    /// Sessions of other processes handed over to this one → the worker serving them.
    adopted: Arc<Mutex<HashMap<Sid, usize>>>,
}

impl Io {
    /// A handle not yet bound to a server.
    pub fn new() -> Io {
        Io::default()
    }

    /// Called by every worker as it starts; the first binds the handle.
    pub(crate) fn bind(&self, fabric: &Arc<Fabric>) {
        if let Some(watch) = self.room_watch.get() {
            fabric.watch_rooms(Arc::clone(watch));
        }
        let _ = self.fabric.set(Arc::clone(fabric));
    }

    /// Names this process in every sid made from now on (set by a bus before the
    /// server runs), so that other hosts can forward its sessions' polling requests.
    pub fn set_process_tag(&self, tag: ProcessTag) {
        let _ = self.process_tag.set(tag);
    }

    /// This process's tag on a bus, if any.
    pub fn process_tag(&self) -> Option<&ProcessTag> {
        self.process_tag.get()
    }

    /// Records that `sid`, another process's session, is served by `worker` here.
    pub(crate) fn adopt(&self, sid: Sid, worker: usize) {
        if let Ok(mut adopted) = self.adopted.lock() {
            adopted.insert(sid, worker);
        }
    }

    /// The worker serving `sid` here if it was handed over to this process.
    pub(crate) fn adopted_worker(&self, sid: &Sid) -> Option<usize> {
        self.adopted.lock().ok()?.get(sid).copied()
    }

    /// `sid`, handed over to this process, is gone.
    pub(crate) fn forget_adopted(&self, sid: &Sid) {
        if let Ok(mut adopted) = self.adopted.lock() {
            adopted.remove(sid);
        }
    }

    /// The worker serving session `sid` in this process.
    pub(crate) fn worker_of(&self, sid: &Sid) -> usize {
        let foreign = self.process_tag().is_some_and(|tag| sid.tag() != *tag);
        foreign
            .then(|| self.adopted_worker(sid))
            .flatten()
            .unwrap_or_else(|| sid.worker())
    }

    /// Posts an app message (`Forwarded`) to `worker` from another thread.
    pub(crate) fn post_app(&self, worker: usize, msg: Box<dyn std::any::Any + Send>) -> bool {
        self.post(worker, msg).is_ok()
    }

    /// Reports the rooms (fabric keys, `<namespace>\0<room>`) that appear and empty
    /// on every worker to `watch`; set before the server runs (the first call wins).
    pub fn set_room_watch(&self, watch: RoomWatch) {
        let _ = self.room_watch.set(watch);
    }

    /// Sends every broadcast made here (by handlers or `Io`) on to `relay` as well.
    /// The first call wins.
    pub fn set_relay(&self, relay: Arc<dyn Relay>) {
        let _ = self.relay.set(relay);
    }

    /// The relay of broadcasts leaving this process, if any.
    pub(crate) fn relay(&self) -> Option<&Arc<dyn Relay>> {
        self.relay.get()
    }

    /// Delivers a broadcast to this process's sockets only (one that came from another
    /// host is not relayed again): `rooms` and `except` are room names of `namespace`
    /// (no rooms: all of it).
    pub fn deliver_here(&self, broadcast: &Relayed<'_>) -> Result<(), IoError> {
        if !sendable_event_name(broadcast.elements.first()) {
            return Err(IoError::Unsendable);
        }
        let rooms: Vec<String> = if broadcast.rooms.is_empty() {
            vec![room_key(broadcast.namespace, "")]
        } else {
            room_keys(broadcast.namespace, &broadcast.rooms).collect()
        };
        let frames = broadcast_frames(
            EVENT,
            broadcast.namespace,
            None,
            broadcast.attachments,
            broadcast.elements,
        );
        let msg = Broadcast::to_all(frames)
            .in_rooms(&rooms)
            .except_rooms(room_keys(broadcast.namespace, &broadcast.except))
            .volatile(broadcast.volatile);
        self.publish(msg)
    }

    /// Applies `op` to the matching sockets of this process, on every worker (it is
    /// not relayed to other hosts).
    pub fn apply_here(&self, op: &SocketsOp) -> Result<(), IoError> {
        let fabric = self.fabric.get().ok_or(IoError::NotRunning)?;
        let mut result = Ok(());
        for worker in 0..fabric.workers() {
            if self.post(worker, Box::new(op.clone())).is_err() {
                result = Err(IoError::Saturated);
            }
        }
        result
    }

    /// Sends `event(...args)` to the server-side handlers (`Namespace::on_server_event`)
    /// of namespace `namespace` on every other host of the Redis bus (Node's
    /// `serverSideEmit`, without an ack); not to this process. Nothing without a bus.
    pub fn server_side_emit(
        &self,
        namespace: &str,
        event: &str,
        args: &[&[u8]],
    ) -> Result<(), IoError> {
        let name = json_string(event);
        let mut elements = vec![name.as_bytes()];
        elements.extend_from_slice(args);
        if !sendable_event_name(elements.first()) {
            return Err(IoError::Unsendable);
        }
        if let Some(relay) = self.relay() {
            relay.request(&RelayedRequest::ServerSideEmit {
                namespace,
                elements: &elements,
            });
        }
        Ok(())
    }

    /// `server_side_emit` asking every other server for an ack: `done` gets one answer
    /// per server that has an `on_server_event_ack` handler answering it, within the
    /// bus's request timeout (5 s), and how many did not answer.
    pub fn server_side_emit_with_ack(
        &self,
        namespace: &str,
        event: &str,
        args: &[&RawValue],
        done: impl FnOnce(Answered<Vec<Box<RawValue>>>) + Send + 'static,
    ) -> Result<(), IoError> {
        let mut elements = Vec::with_capacity(args.len() + 1);
        elements.push(serde_json::value::to_raw_value(event).map_err(|_| IoError::Unsendable)?);
        elements.extend(args.iter().map(|a| (*a).to_owned()));
        let name = elements[0].get().as_bytes();
        if !sendable_event_name(Some(&name)) {
            return Err(IoError::Unsendable);
        }
        self.ask_bus(
            namespace,
            Question::ServerSideEmit { elements },
            Box::new(move |g: Gathered| done(g.answered(|g| g.replies))),
        );
        Ok(())
    }

    /// The number of servers sharing `namespace` over the bus, this one included
    /// (1 without a bus); Node's `serverCount()`.
    pub fn server_count(
        &self,
        namespace: &str,
        done: impl FnOnce(Answered<usize>) + Send + 'static,
    ) {
        self.ask_bus(
            namespace,
            Question::ServerCount,
            Box::new(move |g: Gathered| done(g.answered(|g| g.servers.max(1)))),
        );
    }

    /// Every room of `namespace` with a member on any server (socket ids included, as
    /// Node lists them); Node's `allRooms()`.
    pub fn all_rooms(
        &self,
        namespace: &str,
        done: impl FnOnce(Answered<Vec<String>>) + Send + 'static,
    ) {
        let remote = self.relay().map(|_| Question::AllRooms);
        let reply = Box::new(move |mut g: Gathered| {
            g.rooms.sort_unstable();
            g.rooms.dedup();
            done(g.answered(|g| g.rooms))
        });
        self.gather(
            namespace,
            Vec::new(),
            Vec::new(),
            Asking::Rooms,
            remote,
            reply,
        );
    }

    /// Asks the bus only (no worker part); without a bus the relay's default answers.
    fn ask_bus(&self, namespace: &str, question: Question, reply: Reply) {
        match self.relay() {
            Some(relay) => relay.ask(namespace, question, reply),
            None => reply(Gathered {
                servers: 1,
                ..Gathered::default()
            }),
        }
    }

    /// Asks every worker (and, with `remote`, the bus) about the sockets of `namespace`
    /// in any of `rooms` and none of `except`; `reply` gets everything gathered, once.
    pub(crate) fn gather(
        &self,
        namespace: &str,
        rooms: Vec<String>,
        except: Vec<String>,
        what: Asking,
        remote: Option<Question>,
        reply: Reply,
    ) {
        let Some(fabric) = self.fabric.get() else {
            return reply(Gathered {
                error: Some(IoError::NotRunning.to_string()),
                ..Gathered::default()
            });
        };
        let workers = fabric.workers();
        let gather = Arc::new(Gather::new(workers + usize::from(remote.is_some()), reply));
        if let Some(question) = remote {
            let part = Arc::clone(&gather);
            self.ask_bus(namespace, question, Box::new(move |g| part.add(g)));
        }
        let asked = Arc::new(Asked {
            namespace: namespace.to_string(),
            rooms,
            except,
            what,
            gather: Arc::clone(&gather),
        });
        for worker in 0..workers {
            if self.post(worker, Box::new(Arc::clone(&asked))).is_err() {
                gather.add(Gathered {
                    missing: 1,
                    error: Some(format!("worker {worker}: {}", IoError::Saturated)),
                    ..Gathered::default()
                });
            }
        }
    }

    /// Whether the workers have started.
    pub fn is_running(&self) -> bool {
        self.fabric.get().is_some()
    }

    /// Emits to namespace `namespace` (all its sockets unless narrowed with `to`).
    pub fn of(&self, namespace: &str) -> IoOperator<'_> {
        IoOperator {
            io: self,
            namespace: namespace.to_string(),
            rooms: Vec::new(),
            except: Vec::new(),
            volatile: false,
            local: false,
        }
    }

    /// Answers a client's ack request kept with `Cx::defer_ack`, from any thread.
    /// Nothing happens if the socket is gone.
    pub fn answer(&self, ack: Ack, args: &[&[u8]], attachments: &[Bytes]) -> Result<(), IoError> {
        self.publish(ack.answer(args, attachments))
    }

    /// `answer` with a `Serialize` tuple.
    pub fn answer_ser<T: serde::Serialize + ?Sized>(
        &self,
        ack: Ack,
        args: &T,
    ) -> Result<(), IoError> {
        let args = super::cx::serialize_args(args).ok_or(IoError::Unsendable)?;
        self.answer(ack, &args.raw(), &args.attachments)
    }

    /// Posts one `Arc` of `msg` to every worker.
    fn publish(&self, msg: Broadcast) -> Result<(), IoError> {
        let fabric = self.fabric.get().ok_or(IoError::NotRunning)?;
        let patience = if msg.volatile {
            Duration::ZERO
        } else {
            PATIENCE
        };
        let msg = Arc::new(msg);
        let mut result = Ok(());
        for worker in 0..fabric.workers() {
            if fabric
                .post(worker, Inbound::Broadcast(Arc::clone(&msg)), patience)
                .is_err()
            {
                result = Err(IoError::Saturated);
            }
        }
        result
    }

    /// Posts a message for the sio app of `worker`.
    fn post(&self, worker: usize, msg: Box<dyn std::any::Any + Send>) -> Result<(), IoError> {
        let fabric = self.fabric.get().ok_or(IoError::NotRunning)?;
        if worker >= fabric.workers() {
            return Err(IoError::NotRunning);
        }
        fabric
            .post(worker, Inbound::App(msg), PATIENCE)
            .map_err(|_| IoError::Saturated)
    }
}

/// Room names, the empty one (no room) left out.
fn names<'r>(rooms: &'r [&str]) -> impl Iterator<Item = String> + 'r {
    rooms
        .iter()
        .filter(|r| !r.is_empty())
        .map(|r| r.to_string())
}

/// An emit from an `Io` being addressed (rooms by name within `namespace`).
pub struct IoOperator<'a> {
    io: &'a Io,
    namespace: String,
    rooms: Vec<String>,
    except: Vec<String>,
    volatile: bool,
    local: bool,
}

impl IoOperator<'_> {
    /// Only to this process's sockets: not relayed to other hosts.
    pub fn local(mut self) -> Self {
        self.local = true;
        self
    }

    /// Only to the members of `rooms` (a socket id is a room too). Empty names are
    /// no room.
    pub fn to(mut self, rooms: &[&str]) -> Self {
        self.rooms.extend(names(rooms));
        self
    }

    /// Not to the members of `rooms`.
    pub fn except(mut self, rooms: &[&str]) -> Self {
        self.except.extend(names(rooms));
        self
    }

    /// May be dropped for recipients that are not keeping up, and never waits for a
    /// full inbox.
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// The addressed sockets, on every host, join `rooms` (Node's `socketsJoin`).
    pub fn sockets_join(self, rooms: &[&str]) -> Result<(), IoError> {
        let rooms = rooms.iter().map(|r| r.to_string()).collect();
        self.sockets_op(SocketsAction::Join(rooms))
    }

    /// The addressed sockets, on every host, leave `rooms` (Node's `socketsLeave`).
    pub fn sockets_leave(self, rooms: &[&str]) -> Result<(), IoError> {
        let rooms = rooms.iter().map(|r| r.to_string()).collect();
        self.sockets_op(SocketsAction::Leave(rooms))
    }

    /// The addressed sockets, on every host, are disconnected from the namespace;
    /// `close`: their connections close too (Node's `disconnectSockets`).
    pub fn disconnect_sockets(self, close: bool) -> Result<(), IoError> {
        self.sockets_op(SocketsAction::Disconnect { close })
    }

    fn sockets_op(self, action: SocketsAction) -> Result<(), IoError> {
        let op = SocketsOp {
            rooms: self.rooms,
            except: self.except,
            namespace: self.namespace,
            action,
        };
        if let Some(relay) = self.io.relay().filter(|_| !self.local) {
            relay.request(&RelayedRequest::Sockets(&op));
        }
        self.io.apply_here(&op)
    }

    /// Emits `[name, args…]` (raw JSON each), encoded once for every worker.
    pub fn emit(self, name: &str, args: &[&[u8]], attachments: &[Bytes]) -> Result<(), IoError> {
        let name = json_string(name);
        let mut elements = vec![name.as_bytes()];
        elements.extend_from_slice(args);
        if !sendable_event_name(elements.first()) {
            return Err(IoError::Unsendable);
        }
        let broadcast = Relayed {
            namespace: &self.namespace,
            rooms: self.rooms.iter().map(String::as_str).collect(),
            except: self.except.iter().map(String::as_str).collect(),
            volatile: self.volatile,
            elements: &elements,
            attachments,
        };
        if let Some(relay) = self.io.relay().filter(|_| !self.local) {
            relay.relay(&broadcast);
        }
        self.io.deliver_here(&broadcast)
    }

    /// The addressed sockets on every server (Node's `fetchSockets`); `done` runs once
    /// every worker and every other server has answered, or the bus's timeout passed.
    pub fn fetch_sockets(self, done: impl FnOnce(Answered<Vec<FetchedSocket>>) + Send + 'static) {
        let remote = (!self.local && self.io.relay().is_some()).then(|| Question::Sockets {
            rooms: self.rooms.clone(),
            except: self.except.clone(),
        });
        let reply = Box::new(move |g: Gathered| done(g.answered(|g| g.sockets)));
        self.io.gather(
            &self.namespace,
            self.rooms,
            self.except,
            Asking::Sockets,
            remote,
            reply,
        );
    }

    /// Emits to the addressed sockets on every server, each with an ack id (Node's
    /// `timeout(t).emitWithAck`): `done` gets every client's reply (its first
    /// argument) once each server has counted its clients and each client answered
    /// or gave up, or when `timeout` has passed, with how many are missing.
    pub fn emit_with_ack(
        self,
        name: &str,
        args: &[&RawValue],
        attachments: &[Bytes],
        timeout: Duration,
        done: impl FnOnce(Answered<Vec<Box<RawValue>>>) + Send + 'static,
    ) -> Result<(), IoError> {
        let mut elements = Vec::with_capacity(args.len() + 1);
        elements.push(serde_json::value::to_raw_value(name).map_err(|_| IoError::Unsendable)?);
        elements.extend(args.iter().map(|a| (*a).to_owned()));
        if !sendable_event_name(Some(&elements[0].get().as_bytes())) {
            return Err(IoError::Unsendable);
        }
        let round = Arc::new(AckRound::new(Box::new(done)));
        match self.io.relay().filter(|_| !self.local) {
            Some(relay) => {
                let question = Question::EmitWithAck {
                    rooms: self.rooms.clone(),
                    except: self.except.clone(),
                    elements: elements.clone(),
                    attachments: attachments.to_vec(),
                    timeout,
                    round: Arc::clone(&round),
                };
                let counting = Arc::clone(&round);
                let reply = Box::new(move |g: Gathered| match g.error {
                    None => counting.servers(g.servers.max(1)),
                    Some(why) => counting.local_only(Some(why)),
                });
                relay.ask(&self.namespace, question, reply);
            }
            None => round.local_only(None),
        }
        let on_ack: OnClientAck = {
            let round = Arc::clone(&round);
            Arc::new(move |reply| round.acked(reply))
        };
        let what = Asking::EmitWithAck {
            elements,
            attachments: attachments.to_vec(),
            timeout,
            on_ack,
        };
        let reply = Box::new(move |g: Gathered| round.counted(g.clients));
        self.io
            .gather(&self.namespace, self.rooms, self.except, what, None, reply);
        Ok(())
    }

    /// Emits `name` with `args`, a `Serialize` tuple.
    pub fn emit_ser<T: serde::Serialize + ?Sized>(
        self,
        name: &str,
        args: &T,
    ) -> Result<(), IoError> {
        let args = super::cx::serialize_args(args).ok_or(IoError::Unsendable)?;
        self.emit(name, &args.raw(), &args.attachments)
    }
}

/// A client's ack request kept to be answered later (`Cx::answer` on any socket's
/// handler, or `Io::answer` from any thread). Answering consumes it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    pub(crate) namespace: Box<str>,
    pub(crate) socket: Box<str>,
    pub(crate) id: u64,
}

impl Ack {
    /// The ACK packet answering it, as a broadcast to the asking socket's id room
    /// (delivered wherever that socket lives, to nobody if it is gone).
    pub(crate) fn answer(self, args: &[&[u8]], attachments: &[Bytes]) -> Broadcast {
        let frames = broadcast_frames(ACK, &self.namespace, Some(self.id), attachments, args);
        Broadcast::to_all(frames).in_rooms([room_key(&self.namespace, &self.socket)])
    }

    /// The id of the socket that asked.
    pub fn socket_id(&self) -> &str {
        &self.socket
    }
}

/// A CONNECT waiting for deferred middleware (`Namespace::middleware_deferred`). Call
/// `allow` or `refuse` from any thread; dropping it unanswered refuses the CONNECT.
/// Unanswered within the server's `connect_timeout`, the CONNECT is refused.
pub struct PendingConnect {
    pub(crate) io: Io,
    pub(crate) sid: Sid,
    pub(crate) token: u32,
    pub(crate) answered: bool,
}

/// A deferred middleware's verdict, posted to the worker owning the session.
pub(crate) struct Verdict {
    pub sid: Sid,
    pub token: u32,
    pub result: Result<(), ConnectError>,
}

impl PendingConnect {
    /// Accepts the CONNECT: the client gets its socket id and `on_connect` runs.
    pub fn allow(mut self) -> Result<(), IoError> {
        self.send(Ok(()))
    }

    /// Refuses the CONNECT: the client's `connect_error` gets `e`.
    pub fn refuse(mut self, e: ConnectError) -> Result<(), IoError> {
        self.send(Err(e))
    }

    fn send(&mut self, result: Result<(), ConnectError>) -> Result<(), IoError> {
        self.answered = true;
        let verdict = Verdict {
            sid: self.sid,
            token: self.token,
            result,
        };
        self.io
            .post(self.io.worker_of(&self.sid), Box::new(verdict))
    }
}

impl Drop for PendingConnect {
    fn drop(&mut self) {
        if !self.answered {
            let _ = self.send(Err(ConnectError::new("middleware gave no answer")));
        }
    }
}
