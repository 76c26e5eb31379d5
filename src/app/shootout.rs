//! `--app shootout`: the websocket-shootout protocol used by public WebSocket benchmark
//! battles. Text JSON only:
//! - `{"type":"echo","payload":X}` comes back unchanged to the sender;
//! - `{"type":"broadcast","payload":X}` sends `{"type":"broadcast","payload":X}` to every
//!   connected client (the sender too) and then `{"type":"broadcastResult","payload":X}`
//!   to the sender.
//!
//! Only `type` is read; `X` is located (skipped, not built) and forwarded as the raw bytes
//! it arrived as, so the cost does not grow with the payload's structure. The broadcast
//! frame is encoded once for all recipients on all workers. Anything else (binary, bad
//! JSON, another type) is a protocol misuse: close 1003 (binary) or 1008.

use std::borrow::Cow;

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::fabric::{Broadcast, encode_frame};
use crate::worker::{App, Outbox};
use crate::ws::{CloseCode, Payload};

#[derive(Debug, Default)]
pub struct Shootout;

#[derive(Deserialize)]
struct Message<'a> {
    #[serde(rename = "type", borrow)]
    kind: Cow<'a, str>,
    #[serde(borrow)]
    payload: &'a RawValue,
}

const BROADCAST_HEAD: &[u8] = br#"{"type":"broadcast","payload":"#;
const RESULT_HEAD: &[u8] = br#"{"type":"broadcastResult","payload":"#;

impl App for Shootout {
    fn on_message(&mut self, out: &mut Outbox<'_>, text: bool, payload: Payload<'_>) {
        if !text {
            return out.close(CloseCode::UNSUPPORTED_DATA, "shootout speaks text JSON");
        }
        let bytes = payload.as_slice();
        let Ok(msg) = serde_json::from_slice::<Message<'_>>(bytes) else {
            return out.close(
                CloseCode::POLICY_VIOLATION,
                "expected {\"type\",\"payload\"}",
            );
        };
        match &*msg.kind {
            "echo" => out.send(true, bytes),
            "broadcast" => {
                let x = msg.payload.get().as_bytes();
                out.broadcast(Broadcast::to_all(encode_frame(
                    true,
                    &[BROADCAST_HEAD, x, b"}"],
                )));
                out.send_parts(true, &[RESULT_HEAD, x, b"}"]);
            }
            _ => out.close(CloseCode::POLICY_VIOLATION, "unknown shootout message type"),
        }
    }
}
