//! What an event handler gets: `Event` (the packet, borrowed from the read buffer) and
//! `Cx` (its socket: emit, ack, rooms, broadcast, disconnect). Packets are built here:
//! `4` (Engine.IO message) + `<type>[<n>-][<nsp>,][<id>][args…]`; a broadcast's packet
//! and attachments are encoded once into one shared buffer of WebSocket frames.
//!
//! Arguments stay raw JSON (`&RawValue`, validated, never built into a tree);
//! attachments are `Bytes`, placeholders are forwarded as they came.

use std::borrow::Cow;
use std::cell::RefCell;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use serde_json::value::RawValue;

use crate::fabric::{Broadcast, encode_frame};
use crate::socketio::packet::{self, PacketType};
use crate::worker::Outbox;

use super::io::{Ack, Io, Relayed};

/// Which of EVENT and ACK `encode` builds.
pub(crate) const EVENT: u8 = b'2';
pub(crate) const ACK: u8 = b'3';

/// One event from the client.
pub struct Event<'a> {
    /// The event name (first array element), unescaped; a number's text if numeric.
    /// Borrowed from the read buffer unless it had escapes.
    pub name: Cow<'a, str>,
    /// Every element of the array, the name included, as raw JSON (up to
    /// `INLINE_ELEMENTS` without a heap allocation).
    pub(crate) elements: Elements<'a>,
    /// The client asked for an ack with this id.
    pub ack: Option<u64>,
    pub attachments: &'a [Bytes],
}

/// Elements of an event array held inline: an echo's dispatch allocates nothing.
pub(crate) const INLINE_ELEMENTS: usize = 8;

/// An event's array elements, raw JSON.
pub(crate) type Elements<'a> = smallvec::SmallVec<[&'a RawValue; INLINE_ELEMENTS]>;

impl<'a> Event<'a> {
    /// Every element of the array, the name included, as raw JSON.
    pub fn elements(&self) -> &[&'a RawValue] {
        &self.elements
    }

    /// The arguments after the name, raw JSON.
    pub fn args(&self) -> impl Iterator<Item = &'a [u8]> + '_ {
        self.elements.iter().skip(1).map(|v| v.get().as_bytes())
    }

    /// The arguments after the name, raw JSON (as `args`, collected).
    pub fn raw_args(&self) -> Vec<&'a [u8]> {
        self.args().collect()
    }

    /// Argument `i` (after the name) as a string, if it is one.
    pub fn arg_str(&self, i: usize) -> Option<String> {
        serde_json::from_str(self.elements.get(i + 1)?.get()).ok()
    }

    /// The arguments after the name as `T`, typically a tuple (`(String, u32)`), or a
    /// single argument's type with `arg::<T>(i)`. `None` if they do not fit `T`.
    /// Attachments stay placeholders here; take them with `bin`.
    pub fn args_as<T: serde::de::DeserializeOwned>(&self) -> Option<T> {
        let mut array = String::from("[");
        for (i, v) in self.elements.iter().skip(1).enumerate() {
            if i > 0 {
                array.push(',');
            }
            array.push_str(v.get());
        }
        array.push(']');
        serde_json::from_str(&array).ok()
    }

    /// Argument `i` (after the name) as `T`.
    pub fn arg<T: serde::de::DeserializeOwned>(&self, i: usize) -> Option<T> {
        serde_json::from_str(self.elements.get(i + 1)?.get()).ok()
    }

    /// Attachment `i` of a binary event (shared, no copy).
    pub fn bin(&self, i: usize) -> Option<Bytes> {
        self.attachments.get(i).cloned()
    }
}

/// Binary data inside `emit_ser`/`ack_ser` arguments, at any depth: sent as an
/// attachment (a `{"_placeholder":true,"num":i}` in the JSON), as the client's
/// `ArrayBuffer`/`Buffer`. Outside those calls it serializes as a placeholder too.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Bin(pub Bytes);

thread_local! {
    /// The attachments of the arguments being serialized, in placeholder order.
    static ATTACHMENTS: RefCell<Vec<Bytes>> = const { RefCell::new(Vec::new()) };
}

impl serde::Serialize for Bin {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeStruct;
        let num = ATTACHMENTS.with_borrow_mut(|a| {
            a.push(self.0.clone());
            a.len() - 1
        });
        let mut placeholder = s.serialize_struct("Placeholder", 2)?;
        placeholder.serialize_field("_placeholder", &true)?;
        placeholder.serialize_field("num", &num)?;
        placeholder.end()
    }
}

/// Arguments serialized: their JSON elements and the attachments their `Bin`s became.
pub(crate) struct SerializedArgs {
    pub items: Vec<Box<RawValue>>,
    pub attachments: Vec<Bytes>,
}

impl SerializedArgs {
    pub fn raw(&self) -> Vec<&[u8]> {
        self.items.iter().map(|v| v.get().as_bytes()).collect()
    }
}

/// The JSON elements of `args` (a `Serialize` tuple, or any value serializing to an
/// array; another value is one argument) and their attachments, for `emit_ser`.
pub(crate) fn serialize_args<T: serde::Serialize + ?Sized>(args: &T) -> Option<SerializedArgs> {
    ATTACHMENTS.with_borrow_mut(Vec::clear);
    let value = serde_json::to_value(args);
    let attachments = ATTACHMENTS.with_borrow_mut(std::mem::take);
    let items = match value.ok()? {
        serde_json::Value::Array(items) => items,
        serde_json::Value::Null => Vec::new(),
        other => vec![other],
    };
    let items = items
        .iter()
        .map(|v| serde_json::value::to_raw_value(v).ok())
        .collect::<Option<_>>()?;
    Some(SerializedArgs { items, attachments })
}

/// An ack the server asked for: the client's reply, or none in time.
pub enum AckReply<'a> {
    Reply {
        elements: &'a [&'a RawValue],
        attachments: &'a [Bytes],
    },
    Timeout,
}

/// Called on the socket's core with the client's reply to `Cx::emit_with_ack`.
pub type AckCallback = Box<dyn FnOnce(&mut Cx<'_, '_>, AckReply<'_>) + Send>;

/// An ack the server waits for.
pub(crate) struct PendingAck {
    pub id: u64,
    pub deadline: Instant,
    pub callback: AckCallback,
}

/// One socket: a connection's membership of one namespace.
pub(crate) struct Socket {
    pub namespace: usize,
    /// A dynamic namespace's concrete name (static ones use the namespace's).
    pub dyn_name: Option<std::sync::Arc<str>>,
    pub id: String,
    /// The CONNECT's auth object, raw (bounded).
    pub auth: Option<Box<str>>,
    /// When it connected, in milliseconds since the epoch (Node's `handshake.issued`).
    pub issued: u64,
    pub next_ack: u64,
    pub acks: Vec<PendingAck>,
    /// The namespace's per-socket state (`Namespace::state`).
    pub state: Option<Box<dyn std::any::Any + Send>>,
}

impl Socket {
    /// The name of the namespace this socket is in.
    pub fn name<'r>(&'r self, registry: &'r super::Registry) -> Option<&'r str> {
        registry.name_of(self.namespace, self.dyn_name.as_deref())
    }
}

/// What a handler asked for that ends its socket or connection, applied after it returns.
#[derive(Default)]
pub(crate) struct Ending {
    pub disconnect: bool,
    pub close: bool,
    pub drop_transport: bool,
}

/// A handler's view of its socket.
pub struct Cx<'a, 'b> {
    pub(crate) out: &'a mut Outbox<'b>,
    pub(crate) socket: &'a mut Socket,
    pub(crate) namespace: &'a str,
    pub(crate) ending: &'a mut Ending,
    pub(crate) max_pending_acks: usize,
    pub(crate) io: &'a Io,
}

impl<'a, 'b> Cx<'a, 'b> {
    /// Emits to the members of `rooms` in this namespace, on every core.
    /// The empty name is no room: sends to it reach nobody.
    pub fn to(&mut self, rooms: &[&str]) -> Operator<'_, 'a, 'b> {
        Operator {
            rooms: room_keys(self.namespace, rooms).collect(),
            except: Vec::new(),
            except_sender: false,
            volatile: false,
            cx: self,
        }
    }

    /// Emits to every socket of this namespace but this one.
    pub fn broadcast(&mut self) -> Operator<'_, 'a, 'b> {
        Operator {
            rooms: vec![room_key(self.namespace, "")],
            except: Vec::new(),
            except_sender: true,
            volatile: false,
            cx: self,
        }
    }

    /// Emits to every socket of this namespace.
    pub fn to_all(&mut self) -> Operator<'_, 'a, 'b> {
        Operator {
            rooms: vec![room_key(self.namespace, "")],
            except: Vec::new(),
            except_sender: false,
            volatile: false,
            cx: self,
        }
    }
}

impl Cx<'_, '_> {
    /// The socket's id (not the Engine.IO sid).
    pub fn id(&self) -> &str {
        &self.socket.id
    }

    /// This socket's state, if the namespace declared one of type `S`
    /// (`Namespace::state::<S>()`).
    pub fn state<S: 'static>(&mut self) -> Option<&mut S> {
        self.socket.state.as_mut()?.downcast_mut::<S>()
    }

    /// Emits `name` with `args`, a `Serialize` tuple (`("hello", 42)`), to this socket.
    pub fn emit_ser<T: serde::Serialize + ?Sized>(&mut self, name: &str, args: &T) {
        let Some(args) = serialize_args(args) else {
            return tracing::debug!("emit_ser: arguments do not serialize");
        };
        self.emit(name, &args.raw(), &args.attachments);
    }

    /// Answers `ev`'s ack with `args`, a `Serialize` tuple; nothing if none was asked.
    pub fn ack_ser<T: serde::Serialize + ?Sized>(&mut self, ev: &Event<'_>, args: &T) {
        if let Some(args) = serialize_args(args) {
            self.ack(ev, &args.raw(), &args.attachments);
        }
    }

    pub fn namespace(&self) -> &str {
        self.namespace
    }

    /// The CONNECT's auth as JSON text, `{}` when there was none.
    pub fn auth_json(&self) -> &str {
        self.socket.auth.as_deref().unwrap_or("{}")
    }

    /// The rooms joined in this namespace, sorted, without the socket's own id room.
    pub fn rooms(&self) -> Vec<String> {
        let prefix = room_key(self.namespace, "");
        let mut rooms: Vec<String> = self
            .out
            .rooms()
            .iter()
            .filter_map(|k| k.strip_prefix(prefix.as_str()))
            .filter(|r| !r.is_empty() && *r != self.socket.id)
            .map(str::to_string)
            .collect();
        rooms.sort();
        rooms
    }

    /// Joins `room` of this namespace. `false`: already in it, at the room bound, or
    /// not a room name (empty, or longer than `MAX_ROOM_NAME`).
    pub fn join(&mut self, room: &str) -> bool {
        if room.is_empty() || room.len() > MAX_ROOM_NAME {
            return false;
        }
        matches!(self.out.join(&room_key(self.namespace, room)), Ok(true))
    }

    /// Leaves `room`. The socket's own id room cannot be left.
    pub fn leave(&mut self, room: &str) -> bool {
        if room.is_empty() || room == self.socket.id {
            return false;
        }
        self.out.leave(&room_key(self.namespace, room))
    }

    /// Emits `[name, args…]` to this socket.
    pub fn emit(&mut self, name: &str, args: &[&[u8]], attachments: &[Bytes]) {
        let name = json_string(name);
        let mut elements = vec![name.as_bytes()];
        elements.extend_from_slice(args);
        self.emit_elements(&elements, attachments);
    }

    /// Emits an event given as its raw array elements (name first) to this socket.
    /// Not sent if the name is not a number or a non-reserved string.
    pub fn emit_elements(&mut self, elements: &[&[u8]], attachments: &[Bytes]) {
        if !sendable_event_name(elements.first()) {
            return tracing::debug!("event with an unsendable name dropped");
        }
        self.send_event(EVENT, None, elements, attachments);
    }

    /// Answers `ev`'s ack request with `args` (raw JSON each); nothing if none was asked.
    pub fn ack(&mut self, ev: &Event<'_>, args: &[&[u8]], attachments: &[Bytes]) {
        if let Some(id) = ev.ack {
            self.send_event(ACK, Some(id), args, attachments);
        }
    }

    /// Keeps `ev`'s ack request to answer later, from this or another socket's handler
    /// (`Cx::answer`) or from any thread (`Io::answer`). `None` if none was asked.
    pub fn defer_ack(&self, ev: &Event<'_>) -> Option<Ack> {
        Some(Ack {
            namespace: self.namespace.into(),
            socket: self.socket.id.as_str().into(),
            id: ev.ack?,
        })
    }

    /// Answers a kept ack request (its socket may be on any core, or gone).
    pub fn answer(&mut self, ack: Ack, args: &[&[u8]], attachments: &[Bytes]) {
        self.out.broadcast(ack.answer(args, attachments));
    }

    /// A handle for other threads: emit, answer acks (`Io`).
    pub fn io(&self) -> Io {
        self.io.clone()
    }

    /// Answers the client's ack request `id` (kept from an earlier `Event::ack`).
    pub fn ack_id(&mut self, id: u64, args: &[&[u8]], attachments: &[Bytes]) {
        self.send_event(ACK, Some(id), args, attachments);
    }

    /// Emits to this socket and calls `callback` with its ack, or with `Timeout` after
    /// `timeout`. Past the bound of pending acks the callback gets `Timeout` at once.
    pub fn emit_with_ack(
        &mut self,
        elements: &[&[u8]],
        attachments: &[Bytes],
        timeout: Duration,
        callback: AckCallback,
    ) {
        if self.socket.acks.len() >= self.max_pending_acks || !sendable_event_name(elements.first())
        {
            return callback(self, AckReply::Timeout);
        }
        let id = self.socket.next_ack;
        self.socket.next_ack += 1;
        self.send_event(EVENT, Some(id), elements, attachments);
        self.socket.acks.push(PendingAck {
            id,
            deadline: Instant::now() + timeout,
            callback,
        });
    }

    /// Ends this socket (DISCONNECT for this namespace) once the handler returns.
    pub fn disconnect(&mut self) {
        self.ending.disconnect = true;
    }

    /// DISCONNECT for every namespace, then closes the connection.
    pub fn close(&mut self) {
        self.ending.close = true;
    }

    /// Closes the connection without any DISCONNECT (the client will reconnect).
    pub fn drop_transport(&mut self) {
        self.ending.drop_transport = true;
    }

    /// An EVENT or ACK with `elements` as its array, written straight into the cork
    /// (the header goes through a per-thread scratch buffer: no allocation), then its
    /// attachments.
    fn send_event(&mut self, kind: u8, id: Option<u64>, elements: &[&[u8]], attachments: &[Bytes]) {
        HEAD.with_borrow_mut(|head| {
            head.clear();
            packet_head(kind, self.namespace, id, attachments.len(), head);
            self.out.send_joined(true, head, elements, b",", b"]");
        });
        for a in attachments {
            self.out.send_shared(false, a.clone());
        }
    }
}

/// A broadcast being addressed.
pub struct Operator<'c, 'a, 'b> {
    cx: &'c mut Cx<'a, 'b>,
    rooms: Vec<String>,
    except: Vec<String>,
    except_sender: bool,
    volatile: bool,
}

impl Operator<'_, '_, '_> {
    /// Also to the members of `rooms` (of this namespace).
    pub fn to(mut self, rooms: &[&str]) -> Self {
        let namespace = self.cx.namespace;
        if !self.rooms.contains(&room_key(namespace, "")) {
            self.rooms.extend(room_keys(namespace, rooms));
        }
        self
    }

    /// Not to the members of `rooms`.
    pub fn except(mut self, rooms: &[&str]) -> Self {
        self.except.extend(room_keys(self.cx.namespace, rooms));
        self
    }

    /// May be dropped for recipients that are not keeping up (Node's `volatile`).
    pub fn volatile(mut self) -> Self {
        self.volatile = true;
        self
    }

    /// Emits `name` with `args`, a `Serialize` tuple.
    pub fn emit_ser<T: serde::Serialize + ?Sized>(self, name: &str, args: &T) {
        let Some(args) = serialize_args(args) else {
            return tracing::debug!("emit_ser: arguments do not serialize");
        };
        self.emit(name, &args.raw(), &args.attachments);
    }

    /// Emits an event given as raw array elements (name first), encoded once. Not sent
    /// if the name is unsendable or no room was named.
    pub fn emit_elements(self, elements: &[&[u8]], attachments: &[Bytes]) {
        if self.rooms.is_empty() || !sendable_event_name(elements.first()) {
            return tracing::debug!("broadcast with no room or an unsendable name dropped");
        }
        if let Some(relay) = self.cx.io.relay() {
            let namespace = self.cx.namespace;
            let mut except = room_names(namespace, &self.except);
            if self.except_sender {
                except.push(&self.cx.socket.id);
            }
            relay.relay(&Relayed {
                namespace,
                rooms: room_names(namespace, &self.rooms),
                except,
                volatile: self.volatile,
                elements,
                attachments,
            });
        }
        let frames = broadcast_frames(EVENT, self.cx.namespace, None, attachments, elements);
        let mut msg = Broadcast::to_all(frames)
            .in_rooms(&self.rooms)
            .except_rooms(&self.except)
            .volatile(self.volatile);
        if self.except_sender {
            msg.except_origin = Some(self.cx.out.origin());
        }
        self.cx.out.broadcast(msg);
    }

    /// Emits `[name, args…]`.
    pub fn emit(self, name: &str, args: &[&[u8]], attachments: &[Bytes]) {
        let name = json_string(name);
        let mut elements = vec![name.as_bytes()];
        elements.extend_from_slice(args);
        self.emit_elements(&elements, attachments);
    }
}

/// An EVENT or ACK packet and its attachments as WebSocket frames in one shared
/// buffer: what a broadcast carries (polling recipients get the same bytes back as
/// messages through their mailbox).
pub(crate) fn broadcast_frames(
    kind: u8,
    namespace: &str,
    id: Option<u64>,
    attachments: &[Bytes],
    elements: &[&[u8]],
) -> Bytes {
    let packet = encode(kind, namespace, id, attachments.len(), elements);
    if attachments.is_empty() {
        return encode_frame(true, &[&packet]);
    }
    let mut frames = BytesMut::from(&encode_frame(true, &[&packet])[..]);
    for a in attachments {
        frames.extend_from_slice(&encode_frame(false, &[a]));
    }
    frames.freeze()
}

thread_local! {
    /// Scratch for packet headers (`4` + type, count, namespace, id, `[`).
    static HEAD: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(64));
}

/// Whether `first` (an event's first array element, raw JSON) is a name the official
/// client accepts: a number, or a string that is not reserved. Anything else would make
/// every recipient drop its connection ("parse error"), so it is never sent.
pub(crate) fn sendable_event_name(first: Option<&&[u8]>) -> bool {
    let Some(first) = first else {
        return false;
    };
    match first.first() {
        // Without escapes the name is the text between the quotes: no allocation.
        Some(b'"') if first.len() >= 2 && !first.contains(&b'\\') => {
            let inner = &first[1..first.len() - 1];
            first.ends_with(b"\"")
                && std::str::from_utf8(inner)
                    .is_ok_and(|name| !packet::RESERVED_EVENTS.contains(&name))
                && serde_json::from_slice::<&str>(first).is_ok()
        }
        Some(b'"') => serde_json::from_slice::<String>(first)
            .is_ok_and(|name| !packet::RESERVED_EVENTS.contains(&name.as_str())),
        Some(b'-' | b'0'..=b'9') => serde_json::from_slice::<f64>(first).is_ok(),
        _ => false,
    }
}

/// Longest room name `join` accepts.
pub const MAX_ROOM_NAME: usize = 256;

/// The fabric room of `room` in `namespace` (`""`: the namespace-wide room).
pub(crate) fn room_key(namespace: &str, room: &str) -> String {
    let mut key = String::with_capacity(namespace.len() + 1 + room.len());
    key.push_str(namespace);
    key.push('\0');
    key.push_str(room);
    key
}

/// The room names within `namespace` of fabric room keys (the namespace-wide room
/// left out: no names means all of it).
pub(crate) fn room_names<'k>(namespace: &str, keys: &'k [String]) -> Vec<&'k str> {
    keys.iter()
        .filter_map(|k| k.strip_prefix(namespace)?.strip_prefix('\0'))
        .filter(|r| !r.is_empty())
        .collect()
}

/// The fabric rooms of `rooms` in `namespace`; the empty name is no room.
pub(crate) fn room_keys<'r>(
    namespace: &'r str,
    rooms: &'r [&str],
) -> impl Iterator<Item = String> + 'r {
    rooms
        .iter()
        .filter(|r| !r.is_empty())
        .map(move |r| room_key(namespace, r))
}

pub(crate) fn json_string(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into())
}

/// `4<type>[<n>-][<nsp>,][<id>][` for EVENT/ACK (binary types when `attachments` > 0).
fn packet_head(kind: u8, namespace: &str, id: Option<u64>, attachments: usize, out: &mut Vec<u8>) {
    let kind = match (kind, attachments > 0) {
        (EVENT, false) => PacketType::Event,
        (EVENT, true) => PacketType::BinaryEvent,
        (_, false) => PacketType::Ack,
        (_, true) => PacketType::BinaryAck,
    };
    out.push(b'4');
    packet::encode(kind, namespace, id, attachments, b"", out);
    out.push(b'[');
}

/// `4<type>[<n>-][<nsp>,][<id>][elements…]` for EVENT/ACK (binary types when
/// `attachments` > 0).
pub(crate) fn encode(
    kind: u8,
    namespace: &str,
    id: Option<u64>,
    attachments: usize,
    elements: &[&[u8]],
) -> Vec<u8> {
    let len: usize = elements.iter().map(|e| e.len() + 1).sum();
    let mut p = Vec::with_capacity(namespace.len() + len + 32);
    packet_head(kind, namespace, id, attachments, &mut p);
    for (i, e) in elements.iter().enumerate() {
        if i > 0 {
            p.push(b',');
        }
        p.extend_from_slice(e);
    }
    p.push(b']');
    p
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn packets_are_encoded_as_node_does() {
        assert_eq!(
            encode(EVENT, "/", None, 0, &[b"\"hi\"", b"1"]),
            b"42[\"hi\",1]"
        );
        assert_eq!(encode(ACK, "/admin", Some(13), 0, &[]), b"43/admin,13[]");
        assert_eq!(
            encode(
                ACK,
                "/",
                Some(15),
                1,
                &[br#"{"_placeholder":true,"num":0}"#]
            ),
            br#"461-15[{"_placeholder":true,"num":0}]"#
        );
        assert_eq!(
            encode(EVENT, "/x", Some(2), 2, &[b"\"e\""]),
            b"452-/x,2[\"e\"]"
        );
    }

    #[test]
    fn only_names_the_client_accepts_are_sent() {
        for ok in [&b"\"news\""[..], b"1", b"-2.5", b"\"\""] {
            assert!(sendable_event_name(Some(&ok)), "{ok:?}");
        }
        for bad in [
            &b"\"disconnect\""[..],
            b"\"\\u0063onnect\"",
            b"{}",
            b"null",
            b"[1]",
            b"true",
        ] {
            assert!(!sendable_event_name(Some(&bad)), "{bad:?}");
        }
        assert!(!sendable_event_name(None));
    }

    #[test]
    fn typed_arguments_both_ways() {
        let elements: Elements<'_> = serde_json::from_str(r#"["say","hi",{"n":2},[1,2]]"#).unwrap();
        let ev = Event {
            name: "say".into(),
            elements,
            ack: None,
            attachments: &[],
        };
        let (text, obj, list): (String, serde_json::Value, Vec<u8>) = ev.args_as().unwrap();
        assert_eq!(text, "hi");
        assert_eq!(obj["n"], 2);
        assert_eq!(list, vec![1, 2]);
        assert_eq!(ev.arg::<String>(0).as_deref(), Some("hi"));
        assert!(ev.args_as::<(u32,)>().is_none());
        assert_eq!(ev.raw_args(), vec![&b"\"hi\""[..], br#"{"n":2}"#, b"[1,2]"]);
        let raw = |v: Option<SerializedArgs>| -> Vec<String> {
            v.unwrap()
                .items
                .iter()
                .map(|r| r.get().to_string())
                .collect()
        };
        assert_eq!(
            raw(serialize_args(&("a", 1, [true]))),
            ["\"a\"", "1", "[true]"]
        );
        assert_eq!(raw(serialize_args(&())), Vec::<String>::new());
        assert_eq!(raw(serialize_args(&"one")), ["\"one\""]);
        // Binary at any depth: placeholders numbered in order, attachments kept.
        let bin = serialize_args(&(
            Bin(Bytes::from_static(b"a")),
            serde_json::json!({"k": [1]}),
            [Bin(Bytes::from_static(b"b"))],
        ))
        .unwrap();
        assert_eq!(
            bin.raw(),
            [
                &br#"{"_placeholder":true,"num":0}"#[..],
                br#"{"k":[1]}"#,
                br#"[{"_placeholder":true,"num":1}]"#
            ]
        );
        assert_eq!(bin.attachments, [&b"a"[..], b"b"]);
        assert!(serialize_args(&()).unwrap().attachments.is_empty());
    }

    #[test]
    fn room_keys_separate_namespaces() {
        assert_eq!(room_key("/", "a"), "/\0a");
        assert_ne!(room_key("/a", "b"), room_key("/", "a\0b"));
    }
}
