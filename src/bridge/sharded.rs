//! The message format of `@socket.io/redis-adapter`'s `createShardedAdapter` (Redis 7
//! sharded pub/sub, `SPUBLISH`/`SSUBSCRIBE`), sans-IO: every message is
//! `{uid, nsp, type, data}`, JSON, or msgpack when it carries binary (binary as `bin`).
//!
//! Channels: `<key>#<nsp>#` for everything, `<key>#<nsp>#<room>#` for a broadcast to
//! exactly one public room (the adapter's default `dynamic` subscription mode; a room
//! that looks like a socket id, 20 characters, stays on the namespace channel), and
//! `<key>#<nsp>#<uid>#` for answers to node `uid`.
//!
//! Messages decode into the classic module's types (`Message`, `Request`,
//! `Response`), so the bridge serves both formats with one code path. Types (the
//! cluster adapter's `MessageType`): 3 BROADCAST (with `requestId`: with an ack),
//! 4 SOCKETS_JOIN, 5 SOCKETS_LEAVE, 6 DISCONNECT_SOCKETS, 7 FETCH_SOCKETS,
//! 8 FETCH_SOCKETS_RESPONSE, 9 SERVER_SIDE_EMIT, 10 SERVER_SIDE_EMIT_RESPONSE,
//! 11 BROADCAST_CLIENT_COUNT, 12 BROADCAST_ACK; heartbeats (1, 2) and ADAPTER_CLOSE
//! (13) belong to another adapter and are ignored.
//!
//! Invariants: decoding never panics and bounds its nesting (`classic::MAX_DEPTH`).

use bytes::Bytes;
use serde_json::{Value as Json, json};

use super::classic::{MAX_DEPTH, Message, Request, Response, from_json, json_strings, to_json};
use crate::sio::Relayed;

const BROADCAST: u64 = 3;
const SOCKETS_JOIN: u64 = 4;
const SOCKETS_LEAVE: u64 = 5;
const DISCONNECT_SOCKETS: u64 = 6;
const FETCH_SOCKETS: u64 = 7;
const FETCH_SOCKETS_RESPONSE: u64 = 8;
const SERVER_SIDE_EMIT: u64 = 9;
const SERVER_SIDE_EMIT_RESPONSE: u64 = 10;
const BROADCAST_CLIENT_COUNT: u64 = 11;
const BROADCAST_ACK: u64 = 12;

/// The channel of namespace `namespace`.
pub fn channel(key: &str, namespace: &str) -> String {
    format!("{key}#{namespace}#")
}

/// The channel answers for node `uid` go on.
pub fn response_channel(key: &str, namespace: &str, uid: &str) -> String {
    format!("{key}#{namespace}#{uid}#")
}

/// The channel of public room `room`.
pub fn room_channel(key: &str, namespace: &str, room: &str) -> String {
    format!("{key}#{namespace}#{room}#")
}

/// Whether `room` is taken for a socket id (the adapter's test: 20 characters), so
/// that it has no channel of its own.
pub fn looks_like_a_socket_id(room: &str) -> bool {
    room.len() == 20
}

/// The channel a broadcast to `rooms` goes on.
pub fn broadcast_channel(key: &str, namespace: &str, rooms: &[&str]) -> String {
    match rooms {
        [room] if !looks_like_a_socket_id(room) => room_channel(key, namespace, room),
        _ => channel(key, namespace),
    }
}

/// What came in on a channel.
#[derive(Debug, PartialEq)]
pub enum Incoming {
    Broadcast(Message),
    Request(Request),
    Response(Response),
}

/// `{uid, nsp, type, data}` as bytes: msgpack (binary as `bin`) when `attachments` has
/// any, else JSON.
fn write(uid: &str, namespace: &str, kind: u64, data: Json, attachments: &[Bytes]) -> Vec<u8> {
    let message = json!({ "uid": uid, "nsp": namespace, "type": kind, "data": data });
    if attachments.is_empty() {
        return serde_json::to_vec(&message).unwrap_or_default();
    }
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, &from_json(&message, attachments));
    out
}

/// The event's elements (raw JSON each) as one JSON array; `None` if one is not JSON.
fn event_array(elements: &[&[u8]]) -> Option<Json> {
    elements
        .iter()
        .map(|e| serde_json::from_slice(e).ok())
        .collect::<Option<Vec<Json>>>()
        .map(Json::Array)
}

/// Broadcast `b` from node `uid` (`ack`: its request id and timeout in ms, for a
/// broadcast with an ack).
pub fn encode_broadcast(uid: &str, b: &Relayed<'_>, ack: Option<(&str, u64)>) -> Option<Vec<u8>> {
    let mut flags = serde_json::Map::new();
    if b.volatile {
        flags.insert("volatile".into(), Json::Bool(true));
    }
    let namespace = b.namespace;
    let mut data = json!({
        "packet": { "type": 2, "data": event_array(b.elements)?, "nsp": namespace },
        "opts": { "rooms": b.rooms, "except": b.except, "flags": flags },
    });
    if let Some((request_id, timeout_ms)) = ack {
        data["requestId"] = json!(request_id);
        data["opts"]["flags"]["timeout"] = json!(timeout_ms);
    }
    Some(write(uid, namespace, BROADCAST, data, b.attachments))
}

/// A request from node `uid`; `None` for one with no sharded form (`allRooms`, the
/// older `SOCKETS`) or whose elements are not JSON. A broadcast with an ack is
/// `encode_broadcast`'s.
pub fn encode_request(uid: &str, request: &Request) -> Option<Vec<u8>> {
    let (namespace, kind, data) = match request {
        Request::Rooms {
            namespace,
            rooms,
            except,
            targets,
            leave,
            ..
        } => (
            namespace,
            if *leave { SOCKETS_LEAVE } else { SOCKETS_JOIN },
            json!({ "opts": { "rooms": rooms, "except": except }, "rooms": targets }),
        ),
        Request::Disconnect {
            namespace,
            rooms,
            except,
            close,
            ..
        } => (
            namespace,
            DISCONNECT_SOCKETS,
            json!({ "opts": { "rooms": rooms, "except": except }, "close": close }),
        ),
        Request::ServerSideEmit {
            namespace,
            request_id,
            elements,
            ..
        } => {
            let raw: Vec<&[u8]> = elements.iter().map(|e| e.as_bytes()).collect();
            let mut data = json!({ "packet": event_array(&raw)? });
            if let Some(id) = request_id {
                data["requestId"] = json!(id);
            }
            (namespace, SERVER_SIDE_EMIT, data)
        }
        Request::Fetch {
            namespace,
            request_id,
            rooms,
            except,
            ids_only: false,
            ..
        } => (
            namespace,
            FETCH_SOCKETS,
            json!({ "opts": { "rooms": rooms, "except": except }, "requestId": request_id }),
        ),
        Request::Fetch { .. } | Request::AllRooms { .. } | Request::BroadcastAck { .. } => {
            return None;
        }
    };
    Some(write(uid, namespace, kind, data, &[]))
}

/// An answer from node `uid`, for the asker's own channel.
pub fn encode_response(uid: &str, namespace: &str, response: &Response) -> Option<Vec<u8>> {
    let (kind, data, attachments) = match response {
        Response::Sockets {
            request_id,
            sockets,
        } => (
            FETCH_SOCKETS_RESPONSE,
            json!({ "requestId": request_id, "sockets": sockets }),
            &[][..],
        ),
        Response::ServerSideEmit { request_id, data } => {
            let packet: Json = serde_json::from_str(data).ok()?;
            (
                SERVER_SIDE_EMIT_RESPONSE,
                json!({ "requestId": request_id, "packet": packet }),
                &[][..],
            )
        }
        Response::ClientCount { request_id, count } => (
            BROADCAST_CLIENT_COUNT,
            json!({ "requestId": request_id, "clientCount": count }),
            &[][..],
        ),
        Response::ClientAck {
            request_id,
            packet,
            attachments,
        } => {
            let packet: Json = serde_json::from_str(packet).ok()?;
            (
                BROADCAST_ACK,
                json!({ "requestId": request_id, "packet": packet }),
                &attachments[..],
            )
        }
        Response::Rooms { .. } => return None,
    };
    Some(write(uid, namespace, kind, data, attachments))
}

/// Decodes a message: JSON when it starts with `{`, else msgpack. `None` for garbage
/// and types this node does not take.
pub fn decode(bytes: &[u8]) -> Option<Incoming> {
    let mut attachments = Vec::new();
    let json: Json = if bytes.first() == Some(&b'{') {
        serde_json::from_slice(bytes).ok()?
    } else {
        let value = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], MAX_DEPTH).ok()?;
        let mut text = String::new();
        to_json(&value, &mut attachments, &mut text);
        serde_json::from_str(&text).ok()?
    };
    let uid = json.get("uid").and_then(Json::as_str).map(str::to_string);
    let namespace = json
        .get("nsp")
        .and_then(Json::as_str)
        .unwrap_or("/")
        .to_string();
    let data = json.get("data")?;
    let strings = json_strings;
    let opts = data.get("opts");
    let rooms = strings(opts.and_then(|o| o.get("rooms")));
    let except = strings(opts.and_then(|o| o.get("except")));
    let request_id = data
        .get("requestId")
        .and_then(Json::as_str)
        .map(str::to_string);
    let elements = |v: Option<&Json>| -> Option<Vec<String>> {
        Some(v?.as_array()?.iter().map(Json::to_string).collect())
    };
    Some(match json.get("type")?.as_u64()? {
        BROADCAST => {
            let packet = data.get("packet")?;
            let flags = opts.and_then(|o| o.get("flags"));
            let message = Message {
                uid: uid.unwrap_or_default(),
                namespace: packet
                    .get("nsp")
                    .and_then(Json::as_str)
                    .unwrap_or(&namespace)
                    .to_string(),
                rooms,
                except,
                volatile: flags
                    .and_then(|f| f.get("volatile"))
                    .and_then(Json::as_bool)
                    == Some(true),
                elements: elements(packet.get("data"))?,
                attachments,
            };
            match request_id {
                Some(request_id) => Incoming::Request(Request::BroadcastAck {
                    request_id,
                    message,
                    timeout_ms: flags.and_then(|f| f.get("timeout")).and_then(Json::as_u64),
                }),
                None => Incoming::Broadcast(message),
            }
        }
        kind @ (SOCKETS_JOIN | SOCKETS_LEAVE) => Incoming::Request(Request::Rooms {
            uid,
            namespace,
            rooms,
            except,
            targets: strings(data.get("rooms")),
            leave: kind == SOCKETS_LEAVE,
        }),
        DISCONNECT_SOCKETS => Incoming::Request(Request::Disconnect {
            uid,
            namespace,
            rooms,
            except,
            close: data.get("close").and_then(Json::as_bool) == Some(true),
        }),
        FETCH_SOCKETS => Incoming::Request(Request::Fetch {
            uid,
            request_id: request_id?,
            namespace,
            rooms,
            except,
            ids_only: false,
        }),
        SERVER_SIDE_EMIT => Incoming::Request(Request::ServerSideEmit {
            namespace,
            uid: uid?,
            request_id,
            elements: elements(data.get("packet"))?,
        }),
        FETCH_SOCKETS_RESPONSE => Incoming::Response(Response::Sockets {
            request_id: request_id?,
            sockets: data.get("sockets")?.as_array()?.clone(),
        }),
        SERVER_SIDE_EMIT_RESPONSE => Incoming::Response(Response::ServerSideEmit {
            request_id: request_id?,
            data: data.get("packet").map_or("null".into(), Json::to_string),
        }),
        BROADCAST_CLIENT_COUNT => Incoming::Response(Response::ClientCount {
            request_id: request_id?,
            count: usize::try_from(data.get("clientCount")?.as_u64()?).ok()?,
        }),
        BROADCAST_ACK => Incoming::Response(Response::ClientAck {
            request_id: request_id?,
            packet: data.get("packet").map_or("null".into(), Json::to_string),
            attachments,
        }),
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bridge::classic::tests::relayed;

    /// A broadcast as Node's sharded adapter 8.3 writes it (`io.to("r").emit("ev", 1)`).
    #[test]
    fn a_node_broadcast_decodes() {
        let node = br#"{"uid":"3eb8a5","nsp":"/","type":3,"data":{"packet":{"type":2,"data":["ev",1],"nsp":"/"},"opts":{"rooms":["r"],"except":[],"flags":{}}}}"#;
        let Some(Incoming::Broadcast(m)) = decode(node) else {
            panic!("not a broadcast");
        };
        assert_eq!(m.uid, "3eb8a5");
        assert_eq!(m.rooms, ["r"]);
        assert_eq!(m.elements, [r#""ev""#, "1"]);
        assert!(!m.volatile);
    }

    #[test]
    fn broadcasts_written_here_read_back_with_binary_as_msgpack() {
        let b = Relayed {
            namespace: "/x",
            rooms: vec!["r"],
            except: vec!["e"],
            volatile: true,
            elements: &[br#""ev""#, br#"{"b":{"_placeholder":true,"num":0}}"#],
            attachments: &[Bytes::from_static(b"\x01\x02")],
        };
        let bytes = encode_broadcast("me", &b, None).unwrap();
        assert_ne!(bytes[0], b'{', "binary travels as msgpack");
        let Some(Incoming::Broadcast(m)) = decode(&bytes) else {
            panic!("not a broadcast");
        };
        assert_eq!((m.uid.as_str(), m.namespace.as_str()), ("me", "/x"));
        assert_eq!(
            (m.rooms, m.except, m.volatile),
            (vec!["r".into()], vec!["e".into()], true)
        );
        assert_eq!(m.attachments, [Bytes::from_static(b"\x01\x02")]);
        // Without binary: JSON, and with an ack: a request.
        let bytes = relayed("/", &[b"1"], &[], |b| {
            encode_broadcast("me", b, Some(("q", 900)))
        })
        .unwrap();
        assert_eq!(bytes[0], b'{');
        assert!(matches!(
            decode(&bytes),
            Some(Incoming::Request(Request::BroadcastAck { request_id, timeout_ms: Some(900), .. }))
                if request_id == "q"
        ));
    }

    #[test]
    fn requests_and_responses_written_here_read_back() {
        let every = crate::bridge::classic::tests::sample_requests();
        // `allRooms` has no sharded form.
        for request in every
            .into_iter()
            .filter(|r| !matches!(r, Request::AllRooms { .. }))
        {
            let bytes = encode_request("me", &request).unwrap();
            assert_eq!(decode(&bytes), Some(Incoming::Request(request)));
        }
        for response in [
            Response::Sockets {
                request_id: "q".into(),
                sockets: vec![json!({"id": "x"})],
            },
            Response::ServerSideEmit {
                request_id: "q".into(),
                data: "[1]".into(),
            },
            Response::ClientCount {
                request_id: "q".into(),
                count: 2,
            },
            Response::ClientAck {
                request_id: "q".into(),
                packet: r#"{"ok":true}"#.into(),
                attachments: vec![],
            },
        ] {
            let bytes = encode_response("me", "/x", &response).unwrap();
            assert_eq!(decode(&bytes), Some(Incoming::Response(response)));
        }
    }

    #[test]
    fn garbage_and_foreign_types_are_refused() {
        for bytes in [
            &b"{not json"[..],
            br#"{"uid":"u","nsp":"/","type":2}"#,
            br#"{"uid":"u","nsp":"/","type":1,"data":{}}"#,
            b"\x93\x01",
            b"",
        ] {
            assert_eq!(decode(bytes), None);
        }
    }

    #[test]
    fn single_public_rooms_get_their_own_channel() {
        assert_eq!(broadcast_channel("k", "/", &["r"]), "k#/#r#");
        assert_eq!(broadcast_channel("k", "/", &["r", "s"]), "k#/#");
        assert_eq!(
            broadcast_channel("k", "/", &["A1d7bXvsPw0C5d1qZaQE"]),
            "k#/#"
        );
        assert_eq!(response_channel("k", "/x", "u1"), "k#/x#u1#");
    }
}
