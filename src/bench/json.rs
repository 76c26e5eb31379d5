//! The JSON text frames of the `broadcast` and `fanout` modes: what they send, and how
//! they recognise what comes back without a JSON parser on the hot path.
//!
//! Three protocols (see `throng bench broadcast --help`):
//! - shootout: `{"type":"broadcast","payload":X}` goes to every client, then
//!   `{"type":"broadcastResult","payload":X}` to the sender; `{"type":"echo",..}` echoes.
//! - sio-shootout (`--proto socketio`): the same over Socket.IO, as events:
//!   `42["broadcast",X]` goes to every client, then `42["broadcastResult",X]` to the sender.
//! - pubsub: `{"op":"publish","topic":T,"data":X,"id":N}` reaches every subscriber of T
//!   as `{"topic":T,"data":X}`, then the publisher gets `{"op":"published","id":N}`.
//!
//! Fan-out payloads ([`Stamped`]) are a JSON string that *ends* in a fixed-size stamp:
//! `"<padding>~<seq: 16 hex><send ns: 16 hex>"`. Every delivery shape ends with `X}` or
//! `X]`, so a receiver finds the stamp at a fixed distance from the end of the frame
//! ([`parse_stamp`]) and never scans or allocates.
//!
//! Invariants: everything here is a pure function of its input; nothing read from the
//! network can panic (every index is checked); payloads built here are plain ASCII, so
//! they need no JSON escaping and are valid UTF-8.

use crate::ws::frame::{FrameHead, OpCode};
use crate::ws::mask::apply_mask;

use super::sio::ClientProto;

/// Appends a masked text frame carrying `payload` to `out`.
pub fn queue_text(out: &mut Vec<u8>, payload: &[u8], key: [u8; 4]) {
    out.extend_from_slice(FrameHead::new(true, OpCode::Text, payload.len(), Some(key)).as_bytes());
    let start = out.len();
    out.extend_from_slice(payload);
    apply_mask(&mut out[start..], key, 0);
}

/// The shootout delivery prefix. The comma matters: `{"type":"broadcast"` alone is also
/// a prefix of `{"type":"broadcastResult"`.
pub const BROADCAST_PREFIX: &[u8] = br#"{"type":"broadcast","#;
/// The shootout reply to the sender.
pub const RESULT_PREFIX: &[u8] = br#"{"type":"broadcastResult","#;
/// The sio-shootout delivery prefix (the comma matters here too).
pub const SIO_BROADCAST_PREFIX: &[u8] = br#"42["broadcast","#;
/// The sio-shootout reply to the sender.
pub const SIO_RESULT_PREFIX: &[u8] = br#"42["broadcastResult","#;
/// The pubsub delivery prefix.
pub const DELIVERY_PREFIX: &[u8] = br#"{"topic":"#;

/// Whether `frame` is a shootout broadcast delivery (not a broadcastResult) in `wire`'s
/// shape.
pub fn is_broadcast(wire: ClientProto, frame: &[u8]) -> bool {
    match wire {
        ClientProto::Ws => frame.starts_with(BROADCAST_PREFIX),
        ClientProto::Socketio => frame.starts_with(SIO_BROADCAST_PREFIX),
    }
}

/// The websocket-shootout padding: "1234567890" repeated, cut to `len` bytes.
pub fn shootout_padding(len: usize) -> String {
    "1234567890".chars().cycle().take(len).collect()
}

/// Writes (into `buf`, cleared first) the shootout client's broadcast:
/// `{"type":"broadcast","payload":{"sendTime":"<unix ns>","padding":"<padding>"}}`, or
/// over Socket.IO `42["broadcast",{"sendTime":"<unix ns>","padding":"<padding>"}]`.
/// `sendTime` is a string, as in the original tool; `padding` must need no escaping
/// (see [`shootout_padding`]).
pub fn shootout_broadcast(wire: ClientProto, buf: &mut Vec<u8>, send_unix_ns: u64, padding: &str) {
    buf.clear();
    buf.extend_from_slice(match wire {
        ClientProto::Ws => br#"{"type":"broadcast","payload":"#,
        ClientProto::Socketio => SIO_BROADCAST_PREFIX,
    });
    buf.extend_from_slice(br#"{"sendTime":""#);
    buf.extend_from_slice(send_unix_ns.to_string().as_bytes());
    buf.extend_from_slice(br#"","padding":""#);
    buf.extend_from_slice(padding.as_bytes());
    buf.extend_from_slice(br#""}"#);
    buf.push(match wire {
        ClientProto::Ws => b'}',
        ClientProto::Socketio => b']',
    });
}

/// The `sendTime` of a `{"type":"broadcastResult","payload":{"sendTime":"<ns>",..}}`
/// (over Socket.IO `42["broadcastResult",{"sendTime":"<ns>",..}]`), parsed fully (a
/// sender sees a few of these per step); `None` for anything else.
pub fn broadcast_result_send_time(wire: ClientProto, frame: &[u8]) -> Option<u64> {
    let payload = match wire {
        ClientProto::Ws => {
            let v: serde_json::Value = serde_json::from_slice(frame).ok()?;
            if v.get("type")?.as_str()? != "broadcastResult" {
                return None;
            }
            v.get("payload")?.clone()
        }
        ClientProto::Socketio => {
            let v: serde_json::Value = serde_json::from_slice(frame.strip_prefix(b"42")?).ok()?;
            let [name, payload] = v.as_array()?.as_slice() else {
                return None;
            };
            if name.as_str()? != "broadcastResult" {
                return None;
            }
            payload.clone()
        }
    };
    let t = payload.get("sendTime")?;
    // The original tool sends a string; accept a number too.
    t.as_str()
        .and_then(|s| s.parse().ok())
        .or_else(|| t.as_u64())
}

/// Length of the stamp at the end of a [`Stamped`] payload: `~`, 32 hex digits, `"`.
const STAMP_LEN: usize = 1 + 32 + 1;
/// The smallest `--size` a stamped payload can have (its two quotes and the stamp).
pub const MIN_STAMPED: usize = 1 + STAMP_LEN;

/// A fan-out payload template of a fixed size: a JSON string of exactly `size` bytes
/// (quotes included) whose last 34 bytes carry a sequence number and a send time.
#[derive(Clone, Debug)]
pub struct Stamped {
    bytes: Vec<u8>,
}

impl Stamped {
    /// `size` must be at least [`MIN_STAMPED`] (checked by the callers' argument checks;
    /// smaller sizes are raised to it).
    pub fn new(size: usize) -> Stamped {
        let size = size.max(MIN_STAMPED);
        let mut bytes = Vec::with_capacity(size);
        bytes.push(b'"');
        bytes.extend((0..size - MIN_STAMPED).map(|i| b'a' + (i % 26) as u8));
        bytes.push(b'~');
        bytes.extend_from_slice(&[b'0'; 32]);
        bytes.push(b'"');
        Stamped { bytes }
    }

    /// Appends the payload stamped with `seq` and `send_ns` to `out`.
    pub fn write(&mut self, out: &mut Vec<u8>, seq: u64, send_ns: u64) {
        let end = self.bytes.len() - 1;
        write_hex(&mut self.bytes[end - 32..end - 16], seq);
        write_hex(&mut self.bytes[end - 16..end], send_ns);
        out.extend_from_slice(&self.bytes);
    }
}

fn write_hex(dst: &mut [u8], v: u64) {
    for (i, d) in dst.iter_mut().enumerate() {
        *d = b"0123456789abcdef"[((v >> (4 * (15 - i))) & 0xf) as usize];
    }
}

fn read_hex(src: &[u8]) -> Option<u64> {
    let mut v = 0u64;
    for &c in src {
        let d = match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => return None,
        };
        v = (v << 4) | u64::from(d);
    }
    Some(v)
}

/// The (sequence, send ns) stamp of a frame that ends with a [`Stamped`] payload and
/// then `}` or `]` (trailing whitespace allowed): `{"topic":T,"data":X}`,
/// `{"type":"broadcast","payload":X}`, `{"type":"broadcastResult","payload":X}`,
/// `42["broadcast",X]` or `42["broadcastResult",X]`.
pub fn parse_stamp(frame: &[u8]) -> Option<(u64, u64)> {
    let frame = frame.trim_ascii_end();
    let frame = frame
        .strip_suffix(b"}")
        .or_else(|| frame.strip_suffix(b"]"))?
        .trim_ascii_end();
    let frame = frame.strip_suffix(b"\"")?;
    let at = frame.len().checked_sub(STAMP_LEN - 1)?;
    let stamp = &frame[at..];
    if stamp[0] != b'~' {
        return None;
    }
    Some((read_hex(&stamp[1..17])?, read_hex(&stamp[17..33])?))
}

/// Which fan-out protocol a run speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Proto {
    /// Throng's pubsub: subscribe to `--topic`, publish with ids, `published` acks.
    Pubsub,
    /// websocket-shootout: every client receives every broadcast, `broadcastResult` acks.
    Shootout,
    /// The shootout over Socket.IO (`--proto socketio`, not a `--mode` of its own).
    #[value(skip)]
    #[serde(rename = "sio-shootout")]
    SioShootout,
}

impl Proto {
    /// Every client receives every broadcast (no subscribe), the sender too.
    pub fn is_shootout(self) -> bool {
        matches!(self, Proto::Shootout | Proto::SioShootout)
    }

    /// The name used in reports.
    pub fn name(self) -> &'static str {
        match self {
            Proto::Pubsub => "pubsub",
            Proto::Shootout => "shootout",
            Proto::SioShootout => "sio-shootout",
        }
    }
}

/// Builds the publisher's frames for one protocol and topic.
#[derive(Debug)]
pub struct Publish {
    proto: Proto,
    /// `{"op":"publish","topic":"T","data":`, `{"type":"broadcast","payload":` or
    /// `42["broadcast",`.
    prefix: Vec<u8>,
    stamped: Stamped,
}

impl Publish {
    pub fn new(proto: Proto, topic: &str, size: usize) -> Publish {
        let prefix = match proto {
            Proto::Pubsub => {
                let topic = serde_json::Value::from(topic).to_string();
                format!(r#"{{"op":"publish","topic":{topic},"data":"#).into_bytes()
            }
            Proto::Shootout => br#"{"type":"broadcast","payload":"#.to_vec(),
            Proto::SioShootout => SIO_BROADCAST_PREFIX.to_vec(),
        };
        Publish {
            proto,
            prefix,
            stamped: Stamped::new(size),
        }
    }

    /// Writes (into `buf`, cleared first) the message publishing `seq`, sent at `send_ns`;
    /// pubsub messages carry `seq` as their id.
    pub fn message(&mut self, buf: &mut Vec<u8>, seq: u64, send_ns: u64) {
        buf.clear();
        buf.extend_from_slice(&self.prefix);
        self.stamped.write(buf, seq, send_ns);
        if self.proto == Proto::Pubsub {
            buf.extend_from_slice(br#","id":"#);
            buf.extend_from_slice(seq.to_string().as_bytes());
        }
        buf.push(if self.proto == Proto::SioShootout {
            b']'
        } else {
            b'}'
        });
    }

    /// The pubsub subscribe request for this topic.
    pub fn subscribe(topic: &str) -> Vec<u8> {
        let topic = serde_json::Value::from(topic).to_string();
        format!(r#"{{"op":"subscribe","topic":{topic}}}"#).into_bytes()
    }
}

/// What a fan-out client read, classified.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A delivery of the stamped payload (seq, send ns).
    Delivery(u64, u64),
    /// The publisher's ack for seq / id.
    Ack(u64),
    /// pubsub `{"op":"subscribed",..}`.
    Subscribed,
    /// pubsub `{"op":"error","reason":..}`, with the reason.
    Error(String),
    /// Anything else (a broken frame, an unknown op, a delivery without a stamp).
    Unexpected,
}

/// Classifies a text frame read by a fan-out client. Deliveries and acks, the frequent
/// ones, are recognised by prefix and stamp only; the rare control replies are parsed.
pub fn classify(proto: Proto, frame: &[u8]) -> Incoming {
    match proto {
        Proto::Shootout if frame.starts_with(BROADCAST_PREFIX) => match parse_stamp(frame) {
            Some((seq, ns)) => Incoming::Delivery(seq, ns),
            None => Incoming::Unexpected,
        },
        Proto::Shootout if frame.starts_with(RESULT_PREFIX) => match parse_stamp(frame) {
            Some((seq, _)) => Incoming::Ack(seq),
            None => Incoming::Unexpected,
        },
        Proto::Shootout => Incoming::Unexpected,
        Proto::SioShootout if frame.starts_with(SIO_BROADCAST_PREFIX) => match parse_stamp(frame) {
            Some((seq, ns)) => Incoming::Delivery(seq, ns),
            None => Incoming::Unexpected,
        },
        Proto::SioShootout if frame.starts_with(SIO_RESULT_PREFIX) => match parse_stamp(frame) {
            Some((seq, _)) => Incoming::Ack(seq),
            None => Incoming::Unexpected,
        },
        Proto::SioShootout => Incoming::Unexpected,
        Proto::Pubsub if frame.starts_with(DELIVERY_PREFIX) => match parse_stamp(frame) {
            Some((seq, ns)) => Incoming::Delivery(seq, ns),
            None => Incoming::Unexpected,
        },
        Proto::Pubsub => {
            if let Some(id) = frame
                .strip_prefix(br#"{"op":"published","id":"#)
                .and_then(|rest| rest.strip_suffix(b"}"))
                .and_then(|digits| std::str::from_utf8(digits).ok())
                .and_then(|digits| digits.parse().ok())
            {
                return Incoming::Ack(id);
            }
            pubsub_control(frame)
        }
    }
}

/// The slow path for pubsub control replies, whatever their formatting.
fn pubsub_control(frame: &[u8]) -> Incoming {
    let Ok(v) = serde_json::from_slice::<serde_json::Value>(frame) else {
        return Incoming::Unexpected;
    };
    match v.get("op").and_then(|op| op.as_str()) {
        Some("subscribed") => Incoming::Subscribed,
        Some("published") => match v.get("id").and_then(|id| id.as_u64()) {
            Some(id) => Incoming::Ack(id),
            None => Incoming::Unexpected,
        },
        Some("error") => Incoming::Error(
            v.get("reason")
                .and_then(|r| r.as_str())
                .unwrap_or("(no reason)")
                .to_string(),
        ),
        _ => Incoming::Unexpected,
    }
}

/// A growable set of sequence numbers: one bit each, so exact duplicate and loss counts
/// cost 1 bit per expected delivery. Callers bound the largest seq they insert.
#[derive(Debug, Default)]
pub struct SeqSet {
    words: Vec<u64>,
    len: u64,
}

impl SeqSet {
    /// Adds `seq`; `false` when it was already present.
    pub fn insert(&mut self, seq: u64) -> bool {
        let word = (seq / 64) as usize;
        if word >= self.words.len() {
            let want = (word + 1).max(self.words.len() * 2);
            self.words.resize(want, 0);
        }
        let bit = 1u64 << (seq % 64);
        let fresh = self.words[word] & bit == 0;
        self.words[word] |= bit;
        self.len += u64::from(fresh);
        fresh
    }

    /// How many distinct seqs were inserted.
    pub fn len(&self) -> u64 {
        self.len
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::reader::{Payload, ReadConfig, Reader, Role, Visitor};

    #[test]
    fn queued_text_frames_unmask_to_the_payload() {
        struct One(Vec<u8>);
        impl Visitor for One {
            fn message(&mut self, text: bool, p: Payload<'_>) {
                assert!(text);
                self.0 = p.as_slice().to_vec();
            }
            fn ping(&mut self, _: &[u8]) {}
            fn pong(&mut self, _: &[u8]) {}
            fn close(&mut self, _: Option<crate::ws::CloseCode>, _: &str) {}
        }
        let mut wire = Vec::new();
        queue_text(
            &mut wire,
            br#"{"op":"subscribe","topic":"t"}"#,
            [1, 2, 3, 4],
        );
        let cfg = ReadConfig {
            role: Role::Server,
            max_message: 1 << 10,
        };
        let mut got = One(Vec::new());
        Reader::default().feed(&mut wire, &cfg, &mut got).unwrap();
        assert_eq!(got.0, br#"{"op":"subscribe","topic":"t"}"#);
    }

    #[test]
    fn the_shootout_broadcast_has_the_original_tools_shape() {
        let pad = shootout_padding(23);
        assert_eq!(pad, "12345678901234567890123");
        assert_eq!(shootout_padding(0), "");
        let mut buf = vec![b'x'];
        shootout_broadcast(ClientProto::Ws, &mut buf, 1_700_000_000_123_456_789, &pad);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["type"], "broadcast");
        assert_eq!(v["payload"]["sendTime"], "1700000000123456789");
        assert_eq!(v["payload"]["padding"], pad.as_str());
        assert!(is_broadcast(ClientProto::Ws, &buf));
        assert!(!is_broadcast(ClientProto::Socketio, &buf));

        shootout_broadcast(ClientProto::Socketio, &mut buf, 5, "12");
        assert_eq!(
            buf,
            br#"42["broadcast",{"sendTime":"5","padding":"12"}]"#.to_vec()
        );
        assert!(is_broadcast(ClientProto::Socketio, &buf));
        assert!(!is_broadcast(ClientProto::Ws, &buf));
        assert!(!is_broadcast(
            ClientProto::Socketio,
            br#"42["broadcastResult",{"sendTime":"5"}]"#
        ));
    }

    #[test]
    fn socketio_broadcast_results_give_back_their_send_time() {
        let s = |f: &[u8]| broadcast_result_send_time(ClientProto::Socketio, f);
        assert_eq!(
            s(br#"42["broadcastResult",{"sendTime":"77","padding":"1"}]"#),
            Some(77)
        );
        assert_eq!(s(br#"42["broadcastResult",{"sendTime":78}]"#), Some(78));
        for bad in [
            &br#"42["broadcast",{"sendTime":"77"}]"#[..],
            br#"42["broadcastResult"]"#,
            br#"42["broadcastResult",{"sendTime":"1"},2]"#,
            br#"43["broadcastResult",{"sendTime":"1"}]"#,
            br#"{"type":"broadcastResult","payload":{"sendTime":"1"}}"#,
            b"42",
            b"",
        ] {
            assert_eq!(s(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn broadcast_results_give_back_their_send_time() {
        let mut sent = Vec::new();
        shootout_broadcast(ClientProto::Ws, &mut sent, 42_000_000_001, "12");
        // What a server sends back: the same payload under another type.
        let result = String::from_utf8(sent.clone()).unwrap().replacen(
            r#""broadcast""#,
            r#""broadcastResult""#,
            1,
        );
        let ws = |f: &[u8]| broadcast_result_send_time(ClientProto::Ws, f);
        assert_eq!(ws(result.as_bytes()), Some(42_000_000_001));
        assert!(
            !is_broadcast(ClientProto::Ws, result.as_bytes()),
            "a result is no delivery"
        );
        let spaced = r#"{ "type" : "broadcastResult", "payload": {"sendTime": "7"} }"#;
        assert_eq!(ws(spaced.as_bytes()), Some(7));
        let number = r#"{"type":"broadcastResult","payload":{"sendTime":8}}"#;
        assert_eq!(ws(number.as_bytes()), Some(8));
        for bad in [
            &sent[..],
            br#"{"type":"broadcastResult","payload":{"sendTime":"x"}}"#,
            br#"{"type":"broadcastResult","payload":{}}"#,
            br#"{"type":"broadcastResult","payload":"str"}"#,
            b"not json",
            b"",
        ] {
            assert_eq!(
                broadcast_result_send_time(ClientProto::Ws, bad),
                None,
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
    }

    #[test]
    fn stamped_payloads_have_their_size_and_parse_back() {
        for size in [0usize, MIN_STAMPED, 64, 200, 1000] {
            let mut s = Stamped::new(size);
            for (seq, ns) in [(0u64, 0u64), (1, 2), (0xdead_beef, u64::MAX), (u64::MAX, 5)] {
                let mut x = Vec::new();
                s.write(&mut x, seq, ns);
                assert_eq!(x.len(), size.max(MIN_STAMPED));
                let as_json: serde_json::Value = serde_json::from_slice(&x).unwrap();
                assert!(as_json.is_string());
                let mut delivery = br#"{"topic":"t","data":"#.to_vec();
                delivery.extend_from_slice(&x);
                delivery.push(b'}');
                assert_eq!(parse_stamp(&delivery), Some((seq, ns)), "size {size}");
                delivery.extend_from_slice(b" \n");
                assert_eq!(parse_stamp(&delivery), Some((seq, ns)));
            }
        }
    }

    #[test]
    fn broken_stamps_do_not_parse() {
        let mut s = Stamped::new(40);
        let mut x = b"{\"a\":".to_vec();
        s.write(&mut x, 9, 9);
        x.push(b'}');
        assert!(parse_stamp(&x).is_some());
        for cut in 0..x.len() - 1 {
            // Cutting anywhere loses the closing brace or the stamp.
            assert_eq!(parse_stamp(&x[..cut]), None, "cut {cut}");
        }
        let mut upper = x.clone();
        let at = upper.len() - 3;
        upper[at] = b'A';
        assert_eq!(parse_stamp(&upper), None, "uppercase hex");
        let mut no_tilde = x.clone();
        let at = no_tilde.len() - 2 - 33;
        no_tilde[at] = b'-';
        assert_eq!(parse_stamp(&no_tilde), None);
        assert_eq!(parse_stamp(b"}"), None);
        assert_eq!(parse_stamp(b"\"}"), None);
        assert_eq!(parse_stamp(b""), None);
    }

    #[test]
    fn publish_messages_are_valid_json_for_each_protocol() {
        let mut p = Publish::new(Proto::Pubsub, "room \"1\"", 64);
        let mut buf = Vec::new();
        p.message(&mut buf, 12, 34);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["op"], "publish");
        assert_eq!(v["topic"], "room \"1\"");
        assert_eq!(v["id"], 12);
        assert_eq!(v["data"].as_str().unwrap().len(), 62);
        // What a subscriber gets back parses to the same stamp.
        let delivery = format!(r#"{{"topic":"room \"1\"","data":{}}}"#, v["data"]);
        assert_eq!(
            classify(Proto::Pubsub, delivery.as_bytes()),
            Incoming::Delivery(12, 34)
        );

        let mut p = Publish::new(Proto::Shootout, "ignored", 50);
        p.message(&mut buf, 3, 4);
        let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
        assert_eq!(v["type"], "broadcast");
        assert_eq!(v.as_object().unwrap().len(), 2);
        assert_eq!(classify(Proto::Shootout, &buf), Incoming::Delivery(3, 4));
        let result = String::from_utf8(buf.clone()).unwrap().replacen(
            r#""broadcast""#,
            r#""broadcastResult""#,
            1,
        );
        assert_eq!(
            classify(Proto::Shootout, result.as_bytes()),
            Incoming::Ack(3)
        );

        let mut p = Publish::new(Proto::SioShootout, "ignored", 50);
        p.message(&mut buf, 9, 10);
        assert!(buf.starts_with(br#"42["broadcast",""#) && buf.ends_with(b"\"]"));
        let v: serde_json::Value = serde_json::from_slice(&buf[2..]).unwrap();
        assert_eq!(v[0], "broadcast");
        assert_eq!(v[1].as_str().unwrap().len(), 48);
        assert_eq!(
            classify(Proto::SioShootout, &buf),
            Incoming::Delivery(9, 10)
        );
        let result = String::from_utf8(buf.clone()).unwrap().replacen(
            r#""broadcast""#,
            r#""broadcastResult""#,
            1,
        );
        assert_eq!(
            classify(Proto::SioShootout, result.as_bytes()),
            Incoming::Ack(9)
        );
        // Each protocol recognises only its own frames.
        assert_eq!(classify(Proto::Shootout, &buf), Incoming::Unexpected);
        assert_eq!(
            classify(Proto::SioShootout, br#"{"type":"broadcast","payload":"x"}"#),
            Incoming::Unexpected
        );
        assert_eq!(
            classify(Proto::SioShootout, br#"42["echo","x"]"#),
            Incoming::Unexpected
        );
        assert!(Proto::SioShootout.is_shootout() && !Proto::Pubsub.is_shootout());

        let sub = Publish::subscribe("t");
        assert_eq!(sub, br#"{"op":"subscribe","topic":"t"}"#);
    }

    #[test]
    fn pubsub_replies_are_classified() {
        let c = |s: &str| classify(Proto::Pubsub, s.as_bytes());
        assert_eq!(c(r#"{"op":"published","id":77}"#), Incoming::Ack(77));
        assert_eq!(c(r#"{"op": "published", "id": 78}"#), Incoming::Ack(78));
        assert_eq!(
            c(r#"{"op":"subscribed","topic":"t"}"#),
            Incoming::Subscribed
        );
        assert_eq!(
            c(r#"{"op":"error","reason":"no such topic"}"#),
            Incoming::Error("no such topic".into())
        );
        assert_eq!(
            c(r#"{"op":"unsubscribed","topic":"t"}"#),
            Incoming::Unexpected
        );
        assert_eq!(c(r#"{"op":"published","id":-1}"#), Incoming::Unexpected);
        assert_eq!(c(r#"{"topic":"t","data":"short"}"#), Incoming::Unexpected);
        assert_eq!(c("garbage"), Incoming::Unexpected);
        assert_eq!(
            classify(Proto::Shootout, br#"{"type":"echo","payload":1}"#),
            Incoming::Unexpected
        );
    }

    #[test]
    fn seq_sets_count_distinct_members() {
        let mut s = SeqSet::default();
        assert!(s.insert(5));
        assert!(!s.insert(5));
        assert!(s.insert(0));
        assert!(s.insert(10_000));
        assert!(s.insert(63));
        assert!(s.insert(64));
        assert!(!s.insert(10_000));
        assert_eq!(s.len(), 5);
    }
}
