//! `--app pubsub`: topic fan-out over plain WebSocket, with a small JSON protocol. Text
//! frames only; each client message is one JSON object with an `op`:
//!
//! | client sends | server replies |
//! |---|---|
//! | `{"op":"subscribe","topic":"T"}` | `{"op":"subscribed","topic":"T"}` |
//! | `{"op":"unsubscribe","topic":"T"}` | `{"op":"unsubscribed","topic":"T"}` |
//! | `{"op":"publish","topic":"T","data":X}` | every subscriber of T, on every worker (the publisher too if subscribed), gets `{"topic":"T","data":X}` |
//! | … with `"id":N` | then the publisher gets `{"op":"published","id":N}` |
//! | … with `"volatile":true` | subscribers over their queue cap are skipped instead of queued |
//! | … with `"except":["U",…]` | subscribers of any of those topics are left out |
//! | … with `"skip_sender":true` | the publisher is left out even if subscribed |
//!
//! `X` and `N` are forwarded as the raw JSON they arrived as (located, not rebuilt); the
//! delivery frame is encoded once for all subscribers. A request that cannot be served
//! gets `{"op":"error","reason":"...","request":"<op or null>"}` and the connection stays
//! open. Bounds: a topic is 1–256 bytes; a connection holds at most
//! `--max-rooms-per-connection` subscriptions. A binary frame closes with 1003.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fabric::{Broadcast, encode_frame};
use crate::worker::{App, Outbox};
use crate::ws::{CloseCode, Payload};

/// Longest topic name, in bytes.
pub const MAX_TOPIC_BYTES: usize = 256;
/// Most topics in one publish's `except`.
pub const MAX_EXCEPT: usize = 64;

#[derive(Debug, Default)]
pub struct PubSub;

#[derive(Deserialize)]
struct Request<'a> {
    #[serde(borrow)]
    op: Cow<'a, str>,
    #[serde(borrow, default)]
    topic: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    data: Option<&'a RawValue>,
    #[serde(borrow, default)]
    id: Option<&'a RawValue>,
    #[serde(default)]
    volatile: bool,
    #[serde(borrow, default)]
    except: Vec<Cow<'a, str>>,
    #[serde(default)]
    skip_sender: bool,
}

fn reply_error(out: &mut Outbox<'_>, op: Option<&str>, reason: &str) {
    let reply = serde_json::json!({ "op": "error", "reason": reason, "request": op });
    out.send(true, reply.to_string().as_bytes());
}

fn topic_json(topic: &str) -> Vec<u8> {
    // Serializing a str cannot fail.
    serde_json::to_vec(topic).unwrap_or_default()
}

impl App for PubSub {
    fn on_message(&mut self, out: &mut Outbox<'_>, text: bool, payload: Payload<'_>) {
        if !text {
            return out.close(CloseCode::UNSUPPORTED_DATA, "pubsub speaks text JSON");
        }
        let req = match serde_json::from_slice::<Request<'_>>(payload.as_slice()) {
            Ok(req) => req,
            Err(e) => return reply_error(out, None, &format!("bad request: {e}")),
        };
        let op = &*req.op;
        let topic = match req.topic.as_deref() {
            Some(t) if !t.is_empty() && t.len() <= MAX_TOPIC_BYTES => t,
            Some(_) => return reply_error(out, Some(op), "topic must be 1 to 256 bytes"),
            None => return reply_error(out, Some(op), "missing topic"),
        };
        match op {
            "subscribe" => match out.join(topic) {
                Ok(_) => out.send_parts(
                    true,
                    &[br#"{"op":"subscribed","topic":"#, &topic_json(topic), b"}"],
                ),
                Err(e) => reply_error(out, Some(op), &e.to_string()),
            },
            "unsubscribe" => {
                out.leave(topic);
                out.send_parts(
                    true,
                    &[
                        br#"{"op":"unsubscribed","topic":"#,
                        &topic_json(topic),
                        b"}",
                    ],
                );
            }
            "publish" => {
                let Some(data) = req.data else {
                    return reply_error(out, Some(op), "missing data");
                };
                let frame = encode_frame(
                    true,
                    &[
                        br#"{"topic":"#,
                        &topic_json(topic),
                        br#","data":"#,
                        data.get().as_bytes(),
                        b"}",
                    ],
                );
                if req.except.len() > MAX_EXCEPT {
                    return reply_error(out, Some(op), "at most 64 topics in except");
                }
                let mut msg = Broadcast::to_all(frame)
                    .in_rooms([topic])
                    .except_rooms(&req.except)
                    .volatile(req.volatile);
                if req.skip_sender {
                    msg.except_origin = Some(out.origin());
                }
                out.broadcast(msg);
                if let Some(id) = req.id {
                    out.send_parts(
                        true,
                        &[br#"{"op":"published","id":"#, id.get().as_bytes(), b"}"],
                    );
                }
            }
            _ => reply_error(out, Some(op), "unknown op"),
        }
    }
}
