//! Polling requests forwarded between Throng processes on the bus (a format of our
//! own, sans-IO): msgpack maps on `<key>-eio#<tag>#`, the channel of the process that
//! `tag` names. A request carries its id and its sender's tag; the owner answers on the
//! sender's channel: `acc` when it has taken the request, then `ans` with the HTTP
//! answer, or `fail`.
//!
//! A WebSocket upgrade for such a session is relayed as a tunnel: the landing process
//! sends `wso` (the upgrade's target and origin), then the client's messages as `wsu`
//! and `wsue` when the client is gone; the owner sends the server's messages as `wsd`
//! and `wsde` when its side ends (or it could not open the tunnel). Up messages carry
//! the sender's tag (tunnel ids are the sender's); down ones only the id. The owner
//! first answers `wso` with `wsa` (relayed: the landing process sends the client's
//! messages only from then on) or `wsh` (handed over: the session, which has joined no
//! namespace yet, is served where the WebSocket landed; its held client messages and
//! queued packets come with it).
//!
//! Invariants: decoding never panics; a message that is not one of these shapes, or
//! whose tag is not six sid characters, decodes to `None`.

use rmpv::Value;

use crate::engineio::sid::{ProcessTag, TAG_LEN, is_tag};
use crate::sio::{ForwardedRequest, HandedPacket, Handover, RelayedAnswer};

/// The channel of the process tagged `tag`.
pub fn channel(key: &str, tag: &ProcessTag) -> String {
    format!("{key}-eio#{}#", String::from_utf8_lossy(tag))
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EioMessage {
    Request {
        id: u64,
        from: ProcessTag,
        request: ForwardedRequest,
    },
    Accepted {
        id: u64,
    },
    Answer {
        id: u64,
        answer: RelayedAnswer,
    },
    Failed {
        id: u64,
    },
    /// Open a tunnel for a WebSocket upgrade that landed on `from`.
    TunnelOpen {
        id: u64,
        from: ProcessTag,
        target: String,
        origin: Option<String>,
    },
    /// A client's message, landing process → owner.
    TunnelUp {
        id: u64,
        from: ProcessTag,
        text: bool,
        data: Vec<u8>,
    },
    /// The client is gone.
    TunnelUpEnd {
        id: u64,
        from: ProcessTag,
    },
    /// A server's message, owner → landing process.
    TunnelDown {
        id: u64,
        text: bool,
        data: Vec<u8>,
    },
    /// The owner's side ended (or never opened).
    TunnelDownEnd {
        id: u64,
    },
    /// The owner relays the upgrade: the client's messages may go up.
    TunnelAccepted {
        id: u64,
    },
    /// The owner hands the session over: the landing process serves it from now on.
    TunnelHandover {
        id: u64,
        handover: Handover,
    },
}

/// Handed packets as `[[text, data], ...]`.
fn packets(list: &[HandedPacket]) -> Value {
    Value::Array(
        list.iter()
            .map(|p| Value::Array(vec![Value::from(p.text), Value::Binary(p.data.clone())]))
            .collect(),
    )
}

fn packets_of(value: &Value) -> Option<Vec<HandedPacket>> {
    value
        .as_array()?
        .iter()
        .map(|p| match p.as_array()?.as_slice() {
            [Value::Boolean(text), Value::Binary(data)] => Some(HandedPacket {
                text: *text,
                data: data.clone(),
            }),
            _ => None,
        })
        .collect()
}

fn text(s: &str) -> Value {
    Value::from(s)
}

fn optional(s: &Option<String>) -> Value {
    s.as_deref().map_or(Value::Nil, Value::from)
}

pub fn encode(message: &EioMessage) -> Vec<u8> {
    let map = match message {
        EioMessage::Request { id, from, request } => vec![
            (text("t"), text("req")),
            (text("id"), Value::from(*id)),
            (text("from"), Value::Binary(from.to_vec())),
            (text("method"), text(&request.method)),
            (text("target"), text(&request.target)),
            (text("origin"), optional(&request.origin)),
            (text("ctype"), optional(&request.content_type)),
            (text("body"), Value::Binary(request.body.clone())),
        ],
        EioMessage::Accepted { id } => {
            vec![(text("t"), text("acc")), (text("id"), Value::from(*id))]
        }
        EioMessage::Answer { id, answer } => vec![
            (text("t"), text("ans")),
            (text("id"), Value::from(*id)),
            (text("status"), Value::from(answer.status)),
            (text("ctype"), text(&answer.content_type)),
            (text("extra"), Value::Binary(answer.extra.clone())),
            (text("body"), Value::Binary(answer.body.clone())),
        ],
        EioMessage::Failed { id } => {
            vec![(text("t"), text("fail")), (text("id"), Value::from(*id))]
        }
        EioMessage::TunnelOpen {
            id,
            from,
            target,
            origin,
        } => vec![
            (text("t"), text("wso")),
            (text("id"), Value::from(*id)),
            (text("from"), Value::Binary(from.to_vec())),
            (text("target"), text(target)),
            (text("origin"), optional(origin)),
        ],
        EioMessage::TunnelUp {
            id,
            from,
            text: is_text,
            data,
        } => vec![
            (text("t"), text("wsu")),
            (text("id"), Value::from(*id)),
            (text("from"), Value::Binary(from.to_vec())),
            (text("text"), Value::from(*is_text)),
            (text("data"), Value::Binary(data.clone())),
        ],
        EioMessage::TunnelUpEnd { id, from } => vec![
            (text("t"), text("wsue")),
            (text("id"), Value::from(*id)),
            (text("from"), Value::Binary(from.to_vec())),
        ],
        EioMessage::TunnelDown {
            id,
            text: is_text,
            data,
        } => vec![
            (text("t"), text("wsd")),
            (text("id"), Value::from(*id)),
            (text("text"), Value::from(*is_text)),
            (text("data"), Value::Binary(data.clone())),
        ],
        EioMessage::TunnelDownEnd { id } => {
            vec![(text("t"), text("wsde")), (text("id"), Value::from(*id))]
        }
        EioMessage::TunnelAccepted { id } => {
            vec![(text("t"), text("wsa")), (text("id"), Value::from(*id))]
        }
        EioMessage::TunnelHandover { id, handover } => vec![
            (text("t"), text("wsh")),
            (text("id"), Value::from(*id)),
            (text("sid"), text(&handover.sid)),
            (text("in"), packets(&handover.inbound)),
            (text("out"), packets(&handover.outbound)),
        ],
    };
    let mut out = Vec::new();
    let _ = rmpv::encode::write_value(&mut out, &Value::Map(map));
    out
}

pub fn decode(bytes: &[u8]) -> Option<EioMessage> {
    let value = rmpv::decode::read_value_with_max_depth(&mut &bytes[..], 8).ok()?;
    let field = |name: &str| {
        value
            .as_map()?
            .iter()
            .find(|(k, _)| k.as_str() == Some(name))
            .map(|(_, v)| v)
    };
    let string = |name: &str| field(name)?.as_str().map(str::to_string);
    let bytes_of = |name: &str| match field(name) {
        Some(Value::Binary(b)) => Some(b.clone()),
        _ => None,
    };
    let id = field("id")?.as_u64()?;
    let from = || {
        let from = bytes_of("from").filter(|f| is_tag(f))?;
        let mut tag = [0u8; TAG_LEN];
        tag.copy_from_slice(&from);
        Some(tag)
    };
    let is_text = || field("text")?.as_bool();
    Some(match field("t")?.as_str()? {
        "req" => EioMessage::Request {
            id,
            from: from()?,
            request: ForwardedRequest {
                method: string("method")?,
                target: string("target")?,
                origin: string("origin"),
                content_type: string("ctype"),
                body: bytes_of("body")?,
            },
        },
        "acc" => EioMessage::Accepted { id },
        "ans" => EioMessage::Answer {
            id,
            answer: RelayedAnswer {
                status: u16::try_from(field("status")?.as_u64()?).ok()?,
                content_type: string("ctype")?,
                extra: bytes_of("extra")?,
                body: bytes_of("body")?,
            },
        },
        "fail" => EioMessage::Failed { id },
        "wso" => EioMessage::TunnelOpen {
            id,
            from: from()?,
            target: string("target")?,
            origin: string("origin"),
        },
        "wsu" => EioMessage::TunnelUp {
            id,
            from: from()?,
            text: is_text()?,
            data: bytes_of("data")?,
        },
        "wsue" => EioMessage::TunnelUpEnd { id, from: from()? },
        "wsd" => EioMessage::TunnelDown {
            id,
            text: is_text()?,
            data: bytes_of("data")?,
        },
        "wsde" => EioMessage::TunnelDownEnd { id },
        "wsa" => EioMessage::TunnelAccepted { id },
        "wsh" => EioMessage::TunnelHandover {
            id,
            handover: Handover {
                sid: string("sid")?,
                inbound: packets_of(field("in")?)?,
                outbound: packets_of(field("out")?)?,
            },
        },
        _ => return None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_message_reads_back() {
        let request = ForwardedRequest {
            method: "POST".into(),
            target: "/socket.io/?EIO=4&transport=polling&sid=x".into(),
            origin: Some("https://a.example".into()),
            content_type: None,
            body: b"42[\"e\"]".to_vec(),
        };
        let answer = RelayedAnswer {
            status: 200,
            content_type: "text/plain; charset=UTF-8".into(),
            extra: b"Access-Control-Allow-Origin: https://a.example\r\n".to_vec(),
            body: b"ok".to_vec(),
        };
        for message in [
            EioMessage::Request {
                id: 7,
                from: *b"Ab-_09",
                request,
            },
            EioMessage::Accepted { id: 7 },
            EioMessage::Answer { id: 7, answer },
            EioMessage::Failed { id: u64::MAX },
            EioMessage::TunnelOpen {
                id: 8,
                from: *b"Ab-_09",
                target: "/socket.io/?EIO=4&transport=websocket&sid=x".into(),
                origin: None,
            },
            EioMessage::TunnelUp {
                id: 8,
                from: *b"Ab-_09",
                text: true,
                data: b"2probe".to_vec(),
            },
            EioMessage::TunnelUpEnd {
                id: 8,
                from: *b"Ab-_09",
            },
            EioMessage::TunnelDown {
                id: 8,
                text: false,
                data: vec![0, 1, 2],
            },
            EioMessage::TunnelDownEnd { id: 8 },
            EioMessage::TunnelAccepted { id: 8 },
            EioMessage::TunnelHandover {
                id: 9,
                handover: Handover {
                    sid: "xAb-_09abcdefghijklm".into(),
                    inbound: vec![HandedPacket {
                        text: true,
                        data: b"0/chat,{\"token\":1}".to_vec(),
                    }],
                    outbound: vec![
                        HandedPacket {
                            text: true,
                            data: b"2".to_vec(),
                        },
                        HandedPacket {
                            text: false,
                            data: vec![1, 2],
                        },
                    ],
                },
            },
        ] {
            assert_eq!(decode(&encode(&message)), Some(message));
        }
        assert_eq!(channel("socket.io", b"Ab-_09"), "socket.io-eio#Ab-_09#");
    }

    #[test]
    fn garbage_and_bad_tags_are_refused() {
        assert_eq!(decode(b""), None);
        assert_eq!(decode(b"\x93\x01\x02\x03"), None);
        let bad_tag = encode(&EioMessage::Request {
            id: 1,
            from: *b"ab=cde",
            request: ForwardedRequest {
                method: "GET".into(),
                target: "/".into(),
                origin: None,
                content_type: None,
                body: Vec::new(),
            },
        });
        assert_eq!(decode(&bad_tag), None);
    }
}
