//! `--app conformance`: the Socket.IO contract the official clients are tested against
//! (`tests/sio/`). Path `/socket.io/`, EIO 4, pingInterval 1000 ms, pingTimeout 800 ms,
//! maxPayload 1,000,000, connectTimeout 2000 ms. Namespaces `/` and `/custom` accept
//! every CONNECT; `/guarded` only auth `{"token":"s3cret"}`, else `connect_error`
//! `{"message":"unauthorized","data":{"code":"E_UNAUTHORIZED"}}`. Events, in each:
//!
//! | event | does |
//! |---|---|
//! | `echo(...args)` | acks with exactly these args, or without an ack emits `echo(...args)` back |
//! | `whoami(ack)` | acks `{sid, nsp, auth, rooms}` (auth `{}` if none, rooms sorted, no id room) |
//! | `join(room, ack?)`, `leave(room, ack?)` | acks the sorted room list |
//! | `to-room(room, event, ...payload, ack?)` | `event(...payload)` to the room (sender too if a member), then acks `[]` |
//! | `broadcast(event, ...payload, ack?)` | to all but the sender, then acks `[]` |
//! | `to-all(event, ...payload, ack?)` | to all, then acks `[]` |
//! | `ask(event, ...payload, ack)` | emits `event(...payload)` with an ack request to the sender; acks with its reply, or `{"timeout":true}` after 2 s |
//! | `disconnect-me` / `close-me` / `drop-transport` | DISCONNECT this namespace / every namespace and close / close without DISCONNECT |
//! | `fetch-sockets(rooms, ack)` | acks `{sockets}`: every server's sockets of the namespace in any of `rooms` (all if `[]`), each `{id, rooms}` (rooms sorted, no id room), sorted by id |
//! | `all-rooms(ack)` | acks `{rooms}`: every server's rooms of the namespace (socket ids included), sorted |
//! | `server-count(ack)` | acks `{count}`: servers on the bus sharing the namespace, this one included |
//! | `ask-servers(event, ...payload, ack)` | server-side emit with an ack to every other server; acks `{replies}` |
//! | `ask-room(room, event, ...payload, ack)` | `event(...payload)` with an ack request to the room's members on every server, 2 s timeout; acks `{replies}` (each client's first ack argument) |
//!
//! Any of the last five acks `{error}` instead when a server did not answer in time.
//!
//! Server-side events (from other servers or emitters on the Redis bus, `serverSideEmit`):
//! `relay(event, ...payload)` emits `event(...payload)` to the namespace's local sockets;
//! `local-sockets(ack)` answers the sorted ids of the namespace's local sockets.

use std::sync::Arc;
use std::time::Duration;

use serde_json::json;

use crate::sio::{
    AckReply, Answered, Config, ConnectError, Cx, Event, FetchedSocket, Io, Namespace, Registry,
    Server,
};

/// The conformance server for worker `worker` (its own registry).
pub fn server(worker: usize) -> Server {
    Server::new(settings(), Arc::new(registry()), worker)
}

/// The contract's timings and limits.
pub fn settings() -> Config {
    Config {
        ping_interval: Duration::from_millis(1000),
        ping_timeout: Duration::from_millis(800),
        max_payload: 1_000_000,
        connect_timeout: Duration::from_millis(2000),
        ..Config::default()
    }
}

/// The contract's namespaces and events (shared by every worker of a process).
pub fn registry() -> Registry {
    Registry::new()
        .ns(events(Namespace::new("/")))
        .ns(events(Namespace::new("/custom")))
        .ns(events(Namespace::new("/guarded").middleware(|hs| {
            if hs.auth_str("token").as_deref() == Some("s3cret") {
                Ok(())
            } else {
                Err(ConnectError::new("unauthorized").with_data(r#"{"code":"E_UNAUTHORIZED"}"#))
            }
        })))
}

fn raw<'e>(ev: &'e Event<'_>, from: usize) -> Vec<&'e [u8]> {
    ev.elements()
        .iter()
        .skip(from)
        .map(|v| v.get().as_bytes())
        .collect()
}

fn ack_rooms(cx: &mut Cx<'_, '_>, ev: &Event<'_>) {
    let rooms = serde_json::to_string(&cx.rooms()).unwrap_or_else(|_| "[]".into());
    cx.ack(ev, &[rooms.as_bytes()], &[]);
}

/// Answers a kept ack with `value`, or with `{error}` when the question was not
/// answered in full.
fn answer(io: &Io, ack: Option<crate::sio::Ack>, error: Option<String>, value: serde_json::Value) {
    let Some(ack) = ack else {
        return;
    };
    let value = match error {
        Some(error) => json!({ "error": error }),
        None => value,
    };
    let _ = io.answer_ser(ack, &(value,));
}

fn events(ns: Namespace) -> Namespace {
    ns.on_server_event_ack("local-sockets", |io, namespace, _, ack| {
        io.of(namespace).local().fetch_sockets(move |found| {
            let mut ids: Vec<String> = found.value.into_iter().map(|s| s.id).collect();
            ids.sort();
            ack.answer_ser(&ids);
        });
    })
    .on_server_event("relay", |io, namespace, args| {
        // From another server or an emitter: `event(...payload)` to the local sockets.
        let Some((event, payload)) = args.split_first() else {
            return;
        };
        let Ok(event) = serde_json::from_str::<String>(event.get()) else {
            return;
        };
        let payload: Vec<&[u8]> = payload.iter().map(|v| v.get().as_bytes()).collect();
        let _ = io.of(namespace).local().emit(&event, &payload, &[]);
    })
    .on("echo", |cx, ev| {
        if ev.ack.is_some() {
            cx.ack(ev, &raw(ev, 1), ev.attachments);
        } else {
            cx.emit_elements(&raw(ev, 0), ev.attachments);
        }
    })
    .on("whoami", |cx, ev| {
        let who = format!(
            r#"{{"sid":{},"nsp":{},"auth":{},"rooms":{}}}"#,
            serde_json::to_string(cx.id()).unwrap_or_default(),
            serde_json::to_string(cx.namespace()).unwrap_or_default(),
            cx.auth_json(),
            serde_json::to_string(&cx.rooms()).unwrap_or_default(),
        );
        cx.ack(ev, &[who.as_bytes()], &[]);
    })
    .on("join", |cx, ev| {
        if let Some(room) = ev.arg_str(0) {
            cx.join(&room);
        }
        ack_rooms(cx, ev);
    })
    .on("leave", |cx, ev| {
        if let Some(room) = ev.arg_str(0) {
            cx.leave(&room);
        }
        ack_rooms(cx, ev);
    })
    .on("to-room", |cx, ev| {
        if let Some(room) = ev.arg_str(0)
            && ev.elements().len() > 2
        {
            cx.to(&[&room]).emit_elements(&raw(ev, 2), ev.attachments);
        }
        cx.ack(ev, &[], &[]);
    })
    .on("broadcast", |cx, ev| {
        if ev.elements().len() > 1 {
            cx.broadcast().emit_elements(&raw(ev, 1), ev.attachments);
        }
        cx.ack(ev, &[], &[]);
    })
    .on("to-all", |cx, ev| {
        if ev.elements().len() > 1 {
            cx.to_all().emit_elements(&raw(ev, 1), ev.attachments);
        }
        cx.ack(ev, &[], &[]);
    })
    .on("ask", |cx, ev| {
        let (Some(asked), true) = (ev.ack, ev.elements().len() > 1) else {
            return;
        };
        cx.emit_with_ack(
            &raw(ev, 1),
            ev.attachments,
            Duration::from_secs(2),
            Box::new(move |cx, reply| match reply {
                AckReply::Reply {
                    elements,
                    attachments,
                } => {
                    let args: Vec<&[u8]> = elements.iter().map(|v| v.get().as_bytes()).collect();
                    cx.ack_id(asked, &args, attachments);
                }
                AckReply::Timeout => cx.ack_id(asked, &[br#"{"timeout":true}"#], &[]),
            }),
        );
    })
    .on("fetch-sockets", |cx, ev| {
        let rooms: Vec<String> = ev
            .elements()
            .get(1)
            .and_then(|r| serde_json::from_str(r.get()).ok())
            .unwrap_or_default();
        let rooms: Vec<&str> = rooms.iter().map(String::as_str).collect();
        let (io, ack) = (cx.io(), cx.defer_ack(ev));
        cx.io().of(cx.namespace()).to(&rooms).fetch_sockets(
            move |found: Answered<Vec<FetchedSocket>>| {
                let mut sockets: Vec<_> = found
                    .value
                    .iter()
                    .map(|s| {
                        let mut rooms: Vec<&String> =
                            s.rooms.iter().filter(|r| **r != s.id).collect();
                        rooms.sort();
                        json!({ "id": s.id, "rooms": rooms })
                    })
                    .collect();
                sockets.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
                answer(&io, ack, found.error, json!({ "sockets": sockets }));
            },
        );
    })
    .on("all-rooms", |cx, ev| {
        let (io, ack) = (cx.io(), cx.defer_ack(ev));
        cx.io().all_rooms(cx.namespace(), move |found| {
            answer(&io, ack, found.error, json!({ "rooms": found.value }));
        });
    })
    .on("server-count", |cx, ev| {
        let (io, ack) = (cx.io(), cx.defer_ack(ev));
        cx.io().server_count(cx.namespace(), move |found| {
            answer(&io, ack, found.error, json!({ "count": found.value }));
        });
    })
    .on("ask-servers", |cx, ev| {
        let Some(event) = ev.arg_str(0) else {
            return;
        };
        let payload: Vec<&serde_json::value::RawValue> =
            ev.elements().iter().skip(2).copied().collect();
        let (io, ack) = (cx.io(), cx.defer_ack(ev));
        let sent = cx
            .io()
            .server_side_emit_with_ack(cx.namespace(), &event, &payload, {
                let (io, ack) = (io.clone(), ack.clone());
                move |found| answer(&io, ack, found.error, json!({ "replies": found.value }))
            });
        if sent.is_err() {
            answer(&io, ack, Some("unsendable".into()), json!({}));
        }
    })
    .on("ask-room", |cx, ev| {
        let (Some(room), Some(event)) = (ev.arg_str(0), ev.arg_str(1)) else {
            return;
        };
        let payload: Vec<&serde_json::value::RawValue> =
            ev.elements().iter().skip(3).copied().collect();
        let (io, ack) = (cx.io(), cx.defer_ack(ev));
        let sent = cx.io().of(cx.namespace()).to(&[&room]).emit_with_ack(
            &event,
            &payload,
            ev.attachments,
            Duration::from_secs(2),
            {
                let (io, ack) = (io.clone(), ack.clone());
                move |found| answer(&io, ack, found.error, json!({ "replies": found.value }))
            },
        );
        if sent.is_err() {
            answer(&io, ack, Some("unsendable".into()), json!({}));
        }
    })
    .on("disconnect-me", |cx, _| cx.disconnect())
    .on("close-me", |cx, _| cx.close())
    .on("drop-transport", |cx, _| cx.drop_transport())
}
