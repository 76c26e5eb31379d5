//! The classic message format of `@socket.io/redis-adapter` 8.x and
//! `@socket.io/redis-emitter` 5.x, sans-IO: a broadcast is msgpack `[uid, packet, opts]`
//! with `packet = {type: 2, data: [event, ...args], nsp}` and
//! `opts = {rooms, except, flags}`, published on `<key>#<nsp>#`, or
//! `<key>#<nsp>#<room>#` when it names exactly one room.
//!
//! Binary arguments travel as msgpack `bin` inside `data`, never as placeholders: on
//! the way out each `{"_placeholder":true,"num":i}` becomes attachment `i`'s bytes; on
//! the way in each `bin` becomes a placeholder and an attachment (the clients then get
//! a BINARY_EVENT). Maps keep their field names (Node reads nothing else).
//!
//! Invariants: decoding never panics on any input and bounds its work (msgpack depth
//! and size are those of a message Redis delivered, itself bounded by the bridge);
//! values JSON cannot hold (NaN, extension types) become `null`.

use bytes::Bytes;
use rmpv::Value;

use crate::sio::Relayed;

/// Socket.IO's EVENT and BINARY_EVENT packet types (Node broadcasts EVENT even with
/// binary data: its encoder decides at the end).
const EVENT: i64 = 2;
const BINARY_EVENT: i64 = 5;

/// Deepest nesting decoded from a message (Node's own parser has no bound; a message
/// nested deeper is dropped, not followed).
pub const MAX_DEPTH: usize = 64;

/// A broadcast, by room names, with its event as raw JSON elements.
#[derive(Clone, Debug, PartialEq)]
pub struct Message {
    pub uid: String,
    pub namespace: String,
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    pub volatile: bool,
    /// The event array's elements (name first), JSON text each.
    pub elements: Vec<String>,
    pub attachments: Vec<Bytes>,
}

/// Why a message was not taken.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// Not msgpack, or not `[uid, packet, opts]`.
    Malformed,
    /// A packet that is not an event (Node broadcasts events only).
    NotAnEvent,
    /// Nested deeper than `MAX_DEPTH`.
    TooDeep,
}

/// The channel a broadcast goes on.
pub fn channel(key: &str, namespace: &str, rooms: &[&str]) -> String {
    match rooms {
        [room] => format!("{key}#{namespace}#{room}#"),
        _ => format!("{key}#{namespace}#"),
    }
}

/// The pattern that takes every broadcast of every namespace under `key`.
pub fn pattern(key: &str) -> String {
    format!("{key}#*")
}

/// The pattern that takes every request of every namespace under `key`. A pattern
/// subscription is not counted by `PUBSUB NUMSUB`: it serves the namespaces that have
/// no counted subscription here (dynamic ones), for requests that want no answer.
pub fn request_pattern(key: &str) -> String {
    format!("{key}-request#*")
}

/// The channel requests for `namespace` go on (counted by Node's `serverCount()`).
pub fn request_channel(key: &str, namespace: &str) -> String {
    format!("{key}-request#{namespace}#")
}

/// The channel answers for `namespace` go on.
pub fn response_channel(key: &str, namespace: &str) -> String {
    format!("{key}-response#{namespace}#")
}

/// The channel answers for `namespace` meant for node `uid` alone go on (the
/// adapter's `publishOnSpecificResponseChannel`).
pub fn own_response_channel(key: &str, namespace: &str, uid: &str) -> String {
    format!("{key}-response#{namespace}#{uid}#")
}

/// A request from another node or an emitter.
#[derive(Clone, Debug, PartialEq)]
pub enum Request {
    /// `socketsJoin` (`leave: false`) or `socketsLeave`: sockets in `rooms` (all if
    /// none) but not in `except` join or leave `targets`.
    Rooms {
        /// The sender's uid (the emitter sends none).
        uid: Option<String>,
        namespace: String,
        rooms: Vec<String>,
        except: Vec<String>,
        targets: Vec<String>,
        leave: bool,
    },
    /// `disconnectSockets(close)`.
    Disconnect {
        uid: Option<String>,
        namespace: String,
        rooms: Vec<String>,
        except: Vec<String>,
        close: bool,
    },
    /// `serverSideEmit(event, ...args)`: elements as JSON text; with a `request_id`
    /// the sender waits for one answer per server.
    ServerSideEmit {
        namespace: String,
        uid: String,
        request_id: Option<String>,
        elements: Vec<String>,
    },
    /// `fetchSockets` (REMOTE_FETCH), or the older `SOCKETS` (`ids_only`, no
    /// `except`): answered with the matching sockets.
    Fetch {
        uid: Option<String>,
        request_id: String,
        namespace: String,
        rooms: Vec<String>,
        except: Vec<String>,
        ids_only: bool,
    },
    /// `allRooms`: answered with every room that has a member here.
    AllRooms {
        uid: Option<String>,
        request_id: String,
        namespace: String,
    },
    /// A broadcast with an ack (msgpack): answered with the number of clients reached
    /// (BROADCAST_CLIENT_COUNT), then each client's ack (BROADCAST_ACK).
    BroadcastAck {
        request_id: String,
        message: Message,
        /// `flags.timeout`, in milliseconds.
        timeout_ms: Option<u64>,
    },
}

impl Request {
    /// The namespace it is about.
    pub fn namespace(&self) -> &str {
        match self {
            Request::Rooms { namespace, .. }
            | Request::Disconnect { namespace, .. }
            | Request::ServerSideEmit { namespace, .. }
            | Request::Fetch { namespace, .. }
            | Request::AllRooms { namespace, .. } => namespace,
            Request::BroadcastAck { message, .. } => &message.namespace,
        }
    }

    /// The uid of the node that sent it (none from an emitter).
    pub fn sender(&self) -> Option<&str> {
        match self {
            Request::Rooms { uid, .. }
            | Request::Disconnect { uid, .. }
            | Request::Fetch { uid, .. }
            | Request::AllRooms { uid, .. } => uid.as_deref(),
            Request::ServerSideEmit { uid, .. } => Some(uid),
            Request::BroadcastAck { message, .. } => Some(&message.uid),
        }
    }

    /// Whether its sender waits for answers (counted answers only: see `requests.rs`).
    pub fn wants_answers(&self) -> bool {
        match self {
            Request::Fetch { .. } | Request::AllRooms { .. } | Request::BroadcastAck { .. } => true,
            Request::ServerSideEmit { request_id, .. } => request_id.is_some(),
            Request::Rooms { .. } | Request::Disconnect { .. } => false,
        }
    }
}

/// The strings of JSON array `v` (none if it is not one); other items are skipped.
pub(super) fn json_strings(v: Option<&serde_json::Value>) -> Vec<String> {
    v.and_then(serde_json::Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// Request types of the adapter (`RequestType`).
const SOCKETS: u64 = 0;
const ALL_ROOMS: u64 = 1;
const REMOTE_JOIN: u64 = 2;
const REMOTE_LEAVE: u64 = 3;
const REMOTE_DISCONNECT: u64 = 4;
const REMOTE_FETCH: u64 = 5;
const SERVER_SIDE_EMIT: u64 = 6;
const BROADCAST: u64 = 7;
const BROADCAST_CLIENT_COUNT: u64 = 8;
const BROADCAST_ACK: u64 = 9;

/// The namespace a request channel (`<key>-request#<nsp>#`) is for.
fn request_namespace<'c>(key: &str, channel: &'c [u8]) -> Option<&'c str> {
    std::str::from_utf8(channel)
        .ok()?
        .strip_prefix(key)?
        .strip_prefix("-request#")?
        .strip_suffix('#')
}

/// Decodes a request published on `channel` (`<key>-request#<nsp>#`): JSON when it
/// starts with `{`, else msgpack (the adapter's rule). `None` for what this node does
/// not serve (unknown types, garbage).
pub fn decode_request(key: &str, channel: &[u8], bytes: &[u8]) -> Option<Request> {
    let namespace = request_namespace(key, channel)?.to_string();
    if bytes.first() != Some(&b'{') {
        return decode_broadcast_ack(bytes);
    }
    let v: serde_json::Value = serde_json::from_slice(bytes).ok()?;
    let strings = json_strings;
    let opts = v.get("opts");
    let uid = v.get("uid").and_then(|u| u.as_str()).map(str::to_string);
    let request_id = v
        .get("requestId")
        .and_then(|r| r.as_str())
        .map(str::to_string);
    let rooms = strings(opts.and_then(|o| o.get("rooms")));
    let except = strings(opts.and_then(|o| o.get("except")));
    match v.get("type")?.as_u64()? {
        kind @ (REMOTE_JOIN | REMOTE_LEAVE) => Some(Request::Rooms {
            uid,
            namespace,
            rooms,
            except,
            targets: strings(v.get("rooms")),
            leave: kind == REMOTE_LEAVE,
        }),
        REMOTE_DISCONNECT => Some(Request::Disconnect {
            uid,
            namespace,
            rooms,
            except,
            close: v.get("close").and_then(serde_json::Value::as_bool) == Some(true),
        }),
        SERVER_SIDE_EMIT => Some(Request::ServerSideEmit {
            namespace,
            uid: uid?,
            request_id,
            elements: v
                .get("data")?
                .as_array()?
                .iter()
                .map(|e| e.to_string())
                .collect(),
        }),
        REMOTE_FETCH => Some(Request::Fetch {
            uid,
            request_id: request_id?,
            namespace,
            rooms,
            except,
            ids_only: false,
        }),
        SOCKETS => Some(Request::Fetch {
            uid,
            request_id: request_id?,
            namespace,
            rooms: strings(v.get("rooms")),
            except: Vec::new(),
            ids_only: true,
        }),
        ALL_ROOMS => Some(Request::AllRooms {
            uid,
            request_id: request_id?,
            namespace,
        }),
        _ => None,
    }
}

/// A BROADCAST request (msgpack `{uid, requestId, type: 7, packet, opts}`).
fn decode_broadcast_ack(bytes: &[u8]) -> Option<Request> {
    let value = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_DEPTH).ok()?;
    if field(&value, "type").and_then(Value::as_u64) != Some(BROADCAST) {
        return None;
    }
    let request_id = field(&value, "requestId")?.as_str()?.to_string();
    let uid = field(&value, "uid").cloned().unwrap_or(Value::Nil);
    let packet = field(&value, "packet")?.clone();
    let opts = field(&value, "opts")?.clone();
    let timeout_ms = field(&opts, "flags")
        .and_then(|f| field(f, "timeout"))
        .and_then(Value::as_u64);
    let message = decode_parts(uid, packet, opts).ok()?;
    Some(Request::BroadcastAck {
        request_id,
        message,
        timeout_ms,
    })
}

/// Encodes a request from this node (`uid`) in the adapter's JSON shape; the
/// namespace is in the channel. `None` for a server-side emit whose elements are not
/// JSON, or a broadcast with an ack (not issued here).
pub fn encode_request(uid: &str, request: &Request) -> Option<Vec<u8>> {
    use serde_json::json;
    let value = match request {
        Request::Rooms {
            rooms,
            except,
            targets,
            leave,
            ..
        } => json!({
            "uid": uid,
            "type": if *leave { REMOTE_LEAVE } else { REMOTE_JOIN },
            "opts": { "rooms": rooms, "except": except },
            "rooms": targets,
        }),
        Request::Disconnect {
            rooms,
            except,
            close,
            ..
        } => json!({
            "uid": uid,
            "type": REMOTE_DISCONNECT,
            "opts": { "rooms": rooms, "except": except },
            "close": close,
        }),
        Request::ServerSideEmit {
            elements,
            request_id,
            ..
        } => {
            let data = elements
                .iter()
                .map(|e| serde_json::from_str(e).ok())
                .collect::<Option<Vec<serde_json::Value>>>()?;
            let mut v = json!({ "uid": uid, "type": SERVER_SIDE_EMIT, "data": data });
            if let Some(id) = request_id {
                v["requestId"] = json!(id);
            }
            v
        }
        Request::Fetch {
            request_id,
            rooms,
            except,
            ids_only: false,
            ..
        } => json!({
            "uid": uid,
            "requestId": request_id,
            "type": REMOTE_FETCH,
            "opts": { "rooms": rooms, "except": except },
        }),
        Request::Fetch {
            request_id, rooms, ..
        } => json!({ "uid": uid, "requestId": request_id, "type": SOCKETS, "rooms": rooms }),
        Request::AllRooms { request_id, .. } => {
            json!({ "uid": uid, "requestId": request_id, "type": ALL_ROOMS })
        }
        Request::BroadcastAck { .. } => return None,
    };
    serde_json::to_vec(&value).ok()
}

/// An answer to a request, as the adapter writes them.
#[derive(Clone, Debug, PartialEq)]
pub enum Response {
    /// To REMOTE_FETCH (socket objects) or SOCKETS (ids): `{requestId, sockets}`.
    Sockets {
        request_id: String,
        sockets: Vec<serde_json::Value>,
    },
    /// To ALL_ROOMS: `{requestId, rooms}`.
    Rooms {
        request_id: String,
        rooms: Vec<String>,
    },
    /// One server's ack to SERVER_SIDE_EMIT: `{type: 6, requestId, data}` (JSON text).
    ServerSideEmit { request_id: String, data: String },
    /// To BROADCAST: how many clients it reached here, `{type: 8, requestId, clientCount}`.
    ClientCount { request_id: String, count: usize },
    /// To BROADCAST: one client's ack (msgpack `{type: 9, requestId, packet}`); its
    /// first argument as JSON, with placeholders for `attachments`.
    ClientAck {
        request_id: String,
        packet: String,
        attachments: Vec<Bytes>,
    },
}

impl Response {
    pub fn request_id(&self) -> &str {
        match self {
            Response::Sockets { request_id, .. }
            | Response::Rooms { request_id, .. }
            | Response::ServerSideEmit { request_id, .. }
            | Response::ClientCount { request_id, .. }
            | Response::ClientAck { request_id, .. } => request_id,
        }
    }
}

/// Encodes an answer: JSON, except a client's ack (msgpack, as the adapter).
pub fn encode_response(response: &Response) -> Option<Vec<u8>> {
    use serde_json::json;
    let value = match response {
        Response::Sockets {
            request_id,
            sockets,
        } => json!({ "requestId": request_id, "sockets": sockets }),
        Response::Rooms { request_id, rooms } => {
            json!({ "requestId": request_id, "rooms": rooms })
        }
        Response::ServerSideEmit { request_id, data } => {
            let data: serde_json::Value = serde_json::from_str(data).ok()?;
            json!({ "type": SERVER_SIDE_EMIT, "requestId": request_id, "data": data })
        }
        Response::ClientCount { request_id, count } => json!({
            "type": BROADCAST_CLIENT_COUNT, "requestId": request_id, "clientCount": count,
        }),
        Response::ClientAck {
            request_id,
            packet,
            attachments,
        } => {
            let packet: serde_json::Value = serde_json::from_str(packet).ok()?;
            let text = |s: &str| Value::from(s);
            let message = Value::Map(vec![
                (text("type"), Value::from(BROADCAST_ACK)),
                (text("requestId"), text(request_id)),
                (text("packet"), from_json(&packet, attachments)),
            ]);
            let mut out = Vec::new();
            rmpv::encode::write_value(&mut out, &message).ok()?;
            return Some(out);
        }
    };
    serde_json::to_vec(&value).ok()
}

/// Decodes an answer published on a response channel. `None` for garbage and for
/// what this node never asks.
pub fn decode_response(bytes: &[u8]) -> Option<Response> {
    if bytes.first() != Some(&b'{') {
        let value = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_DEPTH).ok()?;
        if field(&value, "type").and_then(Value::as_u64) != Some(BROADCAST_ACK) {
            return None;
        }
        let mut attachments = Vec::new();
        let mut packet = String::new();
        to_json(field(&value, "packet")?, &mut attachments, &mut packet);
        return Some(Response::ClientAck {
            request_id: field(&value, "requestId")?.as_str()?.to_string(),
            packet,
            attachments,
        });
    }
    #[derive(serde::Deserialize)]
    struct Any {
        #[serde(rename = "type")]
        kind: Option<u64>,
        #[serde(rename = "requestId")]
        request_id: String,
        sockets: Option<Vec<serde_json::Value>>,
        rooms: Option<Vec<String>>,
        data: Option<Box<serde_json::value::RawValue>>,
        #[serde(rename = "clientCount")]
        client_count: Option<usize>,
    }
    let a: Any = serde_json::from_slice(bytes).ok()?;
    let request_id = a.request_id;
    Some(match (a.kind, a.sockets, a.rooms, a.data, a.client_count) {
        (Some(SERVER_SIDE_EMIT), _, _, data, _) => Response::ServerSideEmit {
            request_id,
            data: data.map_or_else(|| "null".to_string(), |d| d.get().to_string()),
        },
        (Some(BROADCAST_CLIENT_COUNT), _, _, _, Some(count)) => {
            Response::ClientCount { request_id, count }
        }
        (None, Some(sockets), _, _, _) => Response::Sockets {
            request_id,
            sockets,
        },
        (None, _, Some(rooms), _, _) => Response::Rooms { request_id, rooms },
        _ => return None,
    })
}

impl Message {
    /// Runs `f` with this message as a broadcast (to deliver, or to encode again).
    pub fn as_relayed<R>(&self, f: impl FnOnce(&Relayed<'_>) -> R) -> R {
        let elements: Vec<&[u8]> = self.elements.iter().map(|e| e.as_bytes()).collect();
        f(&Relayed {
            namespace: &self.namespace,
            rooms: self.rooms.iter().map(String::as_str).collect(),
            except: self.except.iter().map(String::as_str).collect(),
            volatile: self.volatile,
            elements: &elements,
            attachments: &self.attachments,
        })
    }
}

/// Encodes broadcast `b` from this node (`uid`) as the adapter does. `None` if an
/// element is not JSON.
pub fn encode(uid: &str, b: &Relayed<'_>) -> Option<Vec<u8>> {
    let mut flags = Vec::new();
    if b.volatile {
        flags.push((Value::from("volatile"), Value::Boolean(true)));
    }
    let message = Value::Array(vec![
        Value::from(uid),
        packet_value(b)?,
        opts_value(b, flags),
    ]);
    write(&message, b.elements)
}

/// Encodes `b` with an ack from this node (`uid`) as the adapter's BROADCAST request:
/// msgpack `{uid, requestId, type: 7, packet, opts}`, `flags.timeout` in ms.
pub fn encode_broadcast_ack(
    uid: &str,
    request_id: &str,
    b: &Relayed<'_>,
    timeout_ms: u64,
) -> Option<Vec<u8>> {
    let text = |s: &str| Value::from(s);
    let flags = vec![(text("timeout"), Value::from(timeout_ms))];
    let message = Value::Map(vec![
        (text("uid"), text(uid)),
        (text("requestId"), text(request_id)),
        (text("type"), Value::from(BROADCAST)),
        (text("packet"), packet_value(b)?),
        (text("opts"), opts_value(b, flags)),
    ]);
    write(&message, b.elements)
}

/// `{type: 2, data, nsp}`, binary placeholders replaced by their bytes.
fn packet_value(b: &Relayed<'_>) -> Option<Value> {
    let mut data = Vec::with_capacity(b.elements.len());
    for e in b.elements {
        let json: serde_json::Value = serde_json::from_slice(e).ok()?;
        data.push(from_json(&json, b.attachments));
    }
    Some(Value::Map(vec![
        (Value::from("type"), Value::from(EVENT)),
        (Value::from("data"), Value::Array(data)),
        (Value::from("nsp"), Value::from(b.namespace)),
    ]))
}

/// `{rooms, except, flags}`.
fn opts_value(b: &Relayed<'_>, flags: Vec<(Value, Value)>) -> Value {
    let names = |list: &[&str]| Value::Array(list.iter().map(|r| Value::from(*r)).collect());
    Value::Map(vec![
        (Value::from("rooms"), names(&b.rooms)),
        (Value::from("except"), names(&b.except)),
        (Value::from("flags"), Value::Map(flags)),
    ])
}

/// `message` as msgpack, with room for `elements`.
fn write(message: &Value, elements: &[&[u8]]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(64 + elements.iter().map(|e| e.len()).sum::<usize>());
    rmpv::encode::write_value(&mut out, message).ok()?;
    Some(out)
}

/// Decodes a broadcast. A missing `nsp` is `/`.
pub fn decode(bytes: &[u8]) -> Result<Message, DecodeError> {
    let value = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_DEPTH).map_err(
        |e| match e {
            rmpv::decode::Error::DepthLimitExceeded => DecodeError::TooDeep,
            _ => DecodeError::Malformed,
        },
    )?;
    let Value::Array(parts) = value else {
        return Err(DecodeError::Malformed);
    };
    let [uid, packet, opts] = <[Value; 3]>::try_from(parts).map_err(|_| DecodeError::Malformed)?;
    decode_parts(uid, packet, opts)
}

/// A broadcast from its sender's uid, its packet and its options.
fn decode_parts(uid: Value, packet: Value, opts: Value) -> Result<Message, DecodeError> {
    let uid = uid.as_str().unwrap_or_default().to_string();
    let kind = field(&packet, "type").and_then(Value::as_i64);
    if !matches!(kind, Some(EVENT | BINARY_EVENT)) {
        return Err(DecodeError::NotAnEvent);
    }
    let namespace = field(&packet, "nsp")
        .and_then(Value::as_str)
        .unwrap_or("/")
        .to_string();
    let Some(Value::Array(data)) = field(&packet, "data") else {
        return Err(DecodeError::Malformed);
    };
    let mut attachments = Vec::new();
    let mut elements = Vec::with_capacity(data.len());
    for v in data {
        let mut text = String::new();
        to_json(v, &mut attachments, &mut text);
        elements.push(text);
    }
    let names = |name: &str| -> Vec<String> {
        match field(&opts, name) {
            Some(Value::Array(items)) => items
                .iter()
                .filter_map(|r| r.as_str().map(str::to_string))
                .collect(),
            _ => Vec::new(),
        }
    };
    let volatile = field(&opts, "flags")
        .and_then(|f| field(f, "volatile"))
        .and_then(Value::as_bool)
        .unwrap_or(false);
    Ok(Message {
        uid,
        namespace,
        rooms: names("rooms"),
        except: names("except"),
        volatile,
        elements,
        attachments,
    })
}

/// Field `name` of a msgpack map.
fn field<'v>(map: &'v Value, name: &str) -> Option<&'v Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(name))
        .map(|(_, v)| v)
}

/// A JSON value as msgpack; placeholders become their attachment's bytes.
pub(super) fn from_json(json: &serde_json::Value, attachments: &[Bytes]) -> Value {
    use serde_json::Value as J;
    match json {
        J::Null => Value::Nil,
        J::Bool(b) => Value::Boolean(*b),
        J::Number(n) => {
            if let Some(i) = n.as_i64() {
                Value::from(i)
            } else if let Some(u) = n.as_u64() {
                Value::from(u)
            } else {
                Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        J::String(s) => Value::from(s.as_str()),
        J::Array(items) => Value::Array(items.iter().map(|v| from_json(v, attachments)).collect()),
        J::Object(map) => {
            if map.get("_placeholder") == Some(&J::Bool(true))
                && let Some(bytes) = map
                    .get("num")
                    .and_then(J::as_u64)
                    .and_then(|i| attachments.get(usize::try_from(i).ok()?))
            {
                return Value::Binary(bytes.to_vec());
            }
            Value::Map(
                map.iter()
                    .map(|(k, v)| (Value::from(k.as_str()), from_json(v, attachments)))
                    .collect(),
            )
        }
    }
}

/// Writes a msgpack value as JSON text; `bin` becomes a placeholder and an attachment.
pub(super) fn to_json(value: &Value, attachments: &mut Vec<Bytes>, out: &mut String) {
    use std::fmt::Write;
    match value {
        Value::Nil | Value::Ext(..) => out.push_str("null"),
        Value::Boolean(b) => out.push_str(if *b { "true" } else { "false" }),
        Value::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        Value::F32(f) => write_float(f64::from(*f), out),
        Value::F64(f) => write_float(*f, out),
        Value::String(s) => match s.as_str() {
            Some(s) => push_json_string(s, out),
            None => push_json_string(&String::from_utf8_lossy(s.as_bytes()), out),
        },
        Value::Binary(bytes) => {
            let _ = write!(
                out,
                r#"{{"_placeholder":true,"num":{}}}"#,
                attachments.len()
            );
            attachments.push(Bytes::copy_from_slice(bytes));
        }
        Value::Array(items) => {
            out.push('[');
            for (i, v) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                to_json(v, attachments, out);
            }
            out.push(']');
        }
        Value::Map(entries) => {
            out.push('{');
            for (i, (k, v)) in entries.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                match k.as_str() {
                    Some(k) => push_json_string(k, out),
                    // JavaScript object keys are strings.
                    None => {
                        let mut key = String::new();
                        to_json(k, &mut Vec::new(), &mut key);
                        push_json_string(key.trim_matches('"'), out);
                    }
                }
                out.push(':');
                to_json(v, attachments, out);
            }
            out.push('}');
        }
    }
}

fn write_float(f: f64, out: &mut String) {
    if f.is_finite() {
        // serde_json writes the shortest text that reads back the same.
        out.push_str(&serde_json::Number::from_f64(f).map_or("null".into(), |n| n.to_string()));
    } else {
        out.push_str("null");
    }
}

fn push_json_string(s: &str, out: &mut String) {
    out.push_str(&serde_json::to_string(s).unwrap_or_else(|_| "\"\"".into()));
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn channels_as_the_adapter_names_them() {
        assert_eq!(channel("socket.io", "/", &[]), "socket.io#/#");
        assert_eq!(
            channel("socket.io", "/chat", &["r1"]),
            "socket.io#/chat#r1#"
        );
        assert_eq!(channel("socket.io", "/", &["a", "b"]), "socket.io#/#");
        assert_eq!(pattern("socket.io"), "socket.io#*");
    }

    #[test]
    fn round_trip_with_binary_at_any_depth() {
        let attachments = [Bytes::from_static(b"\x00\x01"), Bytes::from_static(b"xyz")];
        let elements: [&[u8]; 3] = [
            br#""news""#,
            br#"{"a":[1,-2,3.5,null,true],"b":{"_placeholder":true,"num":1}}"#,
            br#"{"_placeholder":true,"num":0}"#,
        ];
        let b = Relayed {
            namespace: "/chat",
            rooms: vec!["r1"],
            except: vec!["sock1"],
            volatile: true,
            elements: &elements,
            attachments: &attachments,
        };
        let bytes = encode("abc123", &b).unwrap();
        let m = decode(&bytes).unwrap();
        assert_eq!(m.uid, "abc123");
        assert_eq!(m.namespace, "/chat");
        assert_eq!(m.rooms, ["r1"]);
        assert_eq!(m.except, ["sock1"]);
        assert!(m.volatile);
        // Placeholders renumbered in the order the bytes appear.
        assert_eq!(
            m.elements,
            [
                r#""news""#,
                r#"{"a":[1,-2,3.5,null,true],"b":{"_placeholder":true,"num":0}}"#,
                r#"{"_placeholder":true,"num":1}"#,
            ]
        );
        assert_eq!(m.attachments, [&b"xyz"[..], b"\x00\x01"]);
    }

    #[test]
    fn what_is_not_a_broadcast_is_refused_without_panic() {
        assert_eq!(decode(b""), Err(DecodeError::Malformed));
        assert_eq!(decode(b"\xc1"), Err(DecodeError::Malformed));
        // [uid, {type: 3}, {}]: an ACK is no broadcast.
        let ack = Value::Array(vec![
            Value::from("u"),
            Value::Map(vec![(Value::from("type"), Value::from(3))]),
            Value::Map(vec![]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &ack).unwrap();
        assert_eq!(decode(&bytes), Err(DecodeError::NotAnEvent));
        // Deep nesting is refused, not followed.
        let mut deep = vec![0x93, 0xa1, b'u'];
        deep.extend(std::iter::repeat_n(0x91, 10_000));
        assert!(decode(&deep).is_err());
        // Truncations of a valid message never panic.
        let ok = relayed("/", &[br#""e""#, b"[1,2]"], &[], |b| encode("u", b)).unwrap();
        for cut in 0..ok.len() {
            let _ = decode(&ok[..cut]);
        }
    }

    #[test]
    fn requests_as_the_emitter_and_the_adapter_write_them() {
        let key = "socket.io";
        assert_eq!(
            decode_request(
                key,
                b"socket.io-request#/chat#",
                br#"{"type":2,"opts":{"rooms":["a"],"except":["b"]},"rooms":["r1","r2"]}"#
            ),
            Some(Request::Rooms {
                uid: None,
                namespace: "/chat".into(),
                rooms: vec!["a".into()],
                except: vec!["b".into()],
                targets: vec!["r1".into(), "r2".into()],
                leave: false,
            })
        );
        assert_eq!(
            decode_request(
                key,
                b"socket.io-request#/#",
                br#"{"type":4,"opts":{"rooms":[],"except":[]},"close":true}"#
            ),
            Some(Request::Disconnect {
                uid: None,
                namespace: "/".into(),
                rooms: vec![],
                except: vec![],
                close: true,
            })
        );
        assert_eq!(
            decode_request(
                key,
                b"socket.io-request#/#",
                br#"{"uid":"emitter","type":6,"data":["relay","ev",{"n":1}]}"#
            ),
            Some(Request::ServerSideEmit {
                namespace: "/".into(),
                uid: "emitter".into(),
                request_id: None,
                elements: vec![r#""relay""#.into(), r#""ev""#.into(), r#"{"n":1}"#.into()],
            })
        );
        // Node's fetchSockets, allRooms, serverSideEmit with an ack (adapter 8.3.0).
        assert_eq!(
            decode_request(
                key,
                b"socket.io-request#/#",
                br#"{"uid":"n1","requestId":"r1","type":5,"opts":{"rooms":["a"],"except":["b"]}}"#
            ),
            Some(Request::Fetch {
                uid: Some("n1".into()),
                request_id: "r1".into(),
                namespace: "/".into(),
                rooms: vec!["a".into()],
                except: vec!["b".into()],
                ids_only: false,
            })
        );
        assert_eq!(
            decode_request(
                key,
                b"socket.io-request#/#",
                br#"{"uid":"n1","requestId":"r2","type":1}"#
            ),
            Some(Request::AllRooms {
                uid: Some("n1".into()),
                request_id: "r2".into(),
                namespace: "/".into(),
            })
        );
        assert!(matches!(
            decode_request(
                key,
                b"socket.io-request#/#",
                br#"{"uid":"n1","requestId":"r3","type":6,"data":["e",1]}"#
            ),
            Some(Request::ServerSideEmit { request_id: Some(id), .. }) if id == "r3"
        ));
        // Unknown types, msgpack that is no broadcast, another key, garbage: not served.
        for (channel, body) in [
            (
                &b"socket.io-request#/#"[..],
                &br#"{"type":42,"requestId":"x","data":["e"]}"#[..],
            ),
            (b"socket.io-request#/#", br#"{"type":0}"#),
            (b"socket.io-request#/#", b"\x93\x01"),
            (b"other-request#/#", br#"{"type":2}"#),
            (b"socket.io-request#/#", b"{not json"),
        ] {
            assert_eq!(decode_request(key, channel, body), None);
        }
    }

    /// One request of each kind this node sends, from uid `me` in `/x`.
    pub(in crate::bridge) fn sample_requests() -> Vec<Request> {
        vec![
            Request::Rooms {
                uid: Some("me".into()),
                namespace: "/x".into(),
                rooms: vec!["a".into()],
                except: vec![],
                targets: vec!["t".into()],
                leave: true,
            },
            Request::Disconnect {
                uid: Some("me".into()),
                namespace: "/x".into(),
                rooms: vec![],
                except: vec!["b".into()],
                close: false,
            },
            Request::ServerSideEmit {
                uid: "me".into(),
                namespace: "/x".into(),
                request_id: Some("q".into()),
                elements: vec![r#""relay""#.into(), "[1,2]".into()],
            },
            Request::Fetch {
                uid: Some("me".into()),
                request_id: "q".into(),
                namespace: "/x".into(),
                rooms: vec!["a".into()],
                except: vec!["b".into()],
                ids_only: false,
            },
            Request::AllRooms {
                uid: Some("me".into()),
                request_id: "q".into(),
                namespace: "/x".into(),
            },
        ]
    }

    #[test]
    fn requests_written_here_read_back() {
        for request in sample_requests() {
            let bytes = encode_request("me", &request).unwrap();
            let channel = request_channel("k", "/x");
            assert_eq!(
                decode_request("k", channel.as_bytes(), &bytes),
                Some(request)
            );
        }
    }

    #[test]
    fn a_broadcast_with_an_ack_written_here_reads_back() {
        let b = Relayed {
            namespace: "/x",
            rooms: vec!["r"],
            except: vec!["e"],
            volatile: false,
            elements: &[br#""ev""#, br#"{"_placeholder":true,"num":0}"#],
            attachments: &[Bytes::from_static(b"\x07")],
        };
        let bytes = encode_broadcast_ack("me", "q1", &b, 1500).unwrap();
        let channel = request_channel("k", "/x");
        let Some(Request::BroadcastAck {
            request_id,
            message,
            timeout_ms,
        }) = decode_request("k", channel.as_bytes(), &bytes)
        else {
            panic!("not a broadcast with an ack");
        };
        assert_eq!((request_id.as_str(), timeout_ms), ("q1", Some(1500)));
        assert_eq!(message.uid, "me");
        assert_eq!(message.namespace, "/x");
        assert_eq!(
            (message.rooms, message.except),
            (vec!["r".into()], vec!["e".into()])
        );
        assert_eq!(message.attachments, [Bytes::from_static(b"\x07")]);
    }

    #[test]
    fn responses_written_here_read_back() {
        for response in [
            Response::Sockets {
                request_id: "q".into(),
                sockets: vec![serde_json::json!("id1"), serde_json::json!({"id": "x"})],
            },
            Response::Rooms {
                request_id: "q".into(),
                rooms: vec!["a".into(), "b".into()],
            },
            Response::ServerSideEmit {
                request_id: "q".into(),
                data: r#"{"n":1}"#.into(),
            },
            Response::ClientCount {
                request_id: "q".into(),
                count: 3,
            },
            Response::ClientAck {
                request_id: "q".into(),
                packet: r#"[1,{"_placeholder":true,"num":0}]"#.into(),
                attachments: vec![Bytes::from_static(b"\x01\x02")],
            },
        ] {
            let bytes = encode_response(&response).unwrap();
            assert_eq!(decode_response(&bytes), Some(response));
        }
        // A client's ack travels as msgpack, binary as `bin`.
        let ack = encode_response(&Response::ClientAck {
            request_id: "q".into(),
            packet: "7".into(),
            attachments: vec![],
        })
        .unwrap();
        assert_ne!(ack[0], b'{');
        assert_eq!(decode_response(b"{garbage"), None);
        assert_eq!(decode_response(br#"{"requestId":"q"}"#), None);
    }

    /// Runs `f` with a namespace-wide broadcast of `elements` in `namespace`.
    pub(in crate::bridge) fn relayed<R>(
        namespace: &str,
        elements: &[&[u8]],
        attachments: &[Bytes],
        f: impl FnOnce(&Relayed<'_>) -> R,
    ) -> R {
        f(&Relayed {
            namespace,
            rooms: Vec::new(),
            except: Vec::new(),
            volatile: false,
            elements,
            attachments,
        })
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    /// Bytes captured from Redis while Node's socket.io 4.8.1 with
    /// @socket.io/redis-adapter 8.3.0, and @socket.io/redis-emitter 5.1.0, published.
    #[test]
    fn what_nodes_adapter_and_emitter_publish_decodes_and_round_trips() {
        // io.to("r1").except("x").emit("ev", Buffer.from([1, 2]), {a: 1, b: [true, null, 1.5]})
        // on socket.io#/#r1#.
        let adapter = hex(
            "93a65a4a3434424983a47479706502a46461746193a26576c402010282a16101a16293c3c0cb3ff8\
             000000000000a36e7370a12f83a5726f6f6d7391a27231a665786365707491a178a5666c61677380",
        );
        let m = decode(&adapter).unwrap();
        assert_eq!(m.uid, "ZJ44BI");
        assert_eq!(m.namespace, "/");
        assert_eq!(
            (m.rooms.as_slice(), m.except.as_slice()),
            (&["r1".to_string()][..], &["x".to_string()][..])
        );
        assert!(!m.volatile);
        assert_eq!(
            m.elements,
            [
                r#""ev""#,
                r#"{"_placeholder":true,"num":0}"#,
                r#"{"a":1,"b":[true,null,1.5]}"#
            ]
        );
        assert_eq!(m.attachments, [&[1u8, 2][..]]);
        // io.of("/chat").volatile.emit("v", "s") on socket.io#/chat#.
        let volatile = hex(
            "93a6687a4365524183a47479706502a46461746192a176a173a36e7370a52f6368617483a5726f6f\
             6d7390a665786365707490a5666c61677381a8766f6c6174696c65c3",
        );
        let v = decode(&volatile).unwrap();
        assert_eq!((v.namespace.as_str(), v.volatile), ("/chat", true));
        assert_eq!(v.elements, [r#""v""#, r#""s""#]);
        // The emitter: to("room").emit("e", 1, Buffer.from("xy")) on socket.io#/#room#.
        let emitter = hex(
            "93a7656d697474657283a47479706502a46461746193a16501c4027879a36e7370a12f83a5726f6f\
             6d7391a4726f6f6da5666c61677380a665786365707490",
        );
        let e = decode(&emitter).unwrap();
        assert_eq!(e.uid, "emitter");
        assert_eq!(e.rooms, ["room"]);
        assert_eq!(
            e.elements,
            [r#""e""#, "1", r#"{"_placeholder":true,"num":0}"#]
        );
        assert_eq!(e.attachments, [&b"xy"[..]]);
        // Each re-encoded as this node would reads back the same.
        for m in [m, v, e] {
            let bytes = m.as_relayed(|b| encode(&m.uid, b)).unwrap();
            assert_eq!(decode(&bytes).unwrap(), m);
        }
        // Emitter requests, as captured.
        assert_eq!(
            decode_request(
                "socket.io",
                b"socket.io-request#/custom#",
                br#"{"type":2,"opts":{"rooms":["s1"],"except":[]},"rooms":["j"]}"#
            ),
            Some(Request::Rooms {
                uid: None,
                namespace: "/custom".into(),
                rooms: vec!["s1".into()],
                except: vec![],
                targets: vec!["j".into()],
                leave: false,
            })
        );
        assert!(matches!(
            decode_request(
                "socket.io",
                b"socket.io-request#/#",
                br#"{"uid":"emitter","type":6,"data":["relay","ev",{"n":1}]}"#
            ),
            Some(Request::ServerSideEmit { .. })
        ));
    }

    #[test]
    fn no_nsp_means_the_main_namespace() {
        let msg = Value::Array(vec![
            Value::from("emitter"),
            Value::Map(vec![
                (Value::from("type"), Value::from(2)),
                (
                    Value::from("data"),
                    Value::Array(vec![Value::from("e"), Value::F64(f64::NAN)]),
                ),
            ]),
            Value::Map(vec![]),
        ]);
        let mut bytes = Vec::new();
        rmpv::encode::write_value(&mut bytes, &msg).unwrap();
        let m = decode(&bytes).unwrap();
        assert_eq!(m.namespace, "/");
        assert_eq!(m.elements, [r#""e""#, "null"]);
        assert!(m.rooms.is_empty() && m.except.is_empty() && !m.volatile);
    }
}
