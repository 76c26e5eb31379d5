//! Engine.IO v4 packets and HTTP long-polling payloads, both directions.
//!
//! - A packet is one type digit (`0` open … `6` noop) and optional data. Over WebSocket a
//!   text frame is one packet and a binary frame is the raw bytes of a message packet.
//! - A polling body is packets joined by `\x1e`; a binary message in it is `b` followed by
//!   the base64 of its bytes (no type digit).
//!
//! Invariants: decoding borrows the input (only base64 binary is decoded into a new
//! buffer); a payload yields at most `max_packets` packets, else an error; encoding
//! appends to a caller's buffer, so a packet for many recipients is built once.

use std::borrow::Cow;
use std::fmt;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;

/// The record separator between packets of a polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// The packet types, with their wire digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketType {
    Open = 0,
    Close = 1,
    Ping = 2,
    Pong = 3,
    Message = 4,
    Upgrade = 5,
    Noop = 6,
}

impl PacketType {
    fn from_digit(b: u8) -> Option<PacketType> {
        Some(match b {
            b'0' => PacketType::Open,
            b'1' => PacketType::Close,
            b'2' => PacketType::Ping,
            b'3' => PacketType::Pong,
            b'4' => PacketType::Message,
            b'5' => PacketType::Upgrade,
            b'6' => PacketType::Noop,
            _ => return None,
        })
    }

    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }
}

/// A packet's data: text (the bytes after the type digit, UTF-8 checked by the
/// transport) or binary (a WebSocket binary frame, or base64 from a polling body).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Data<'a> {
    Text(&'a [u8]),
    Binary(Cow<'a, [u8]>),
}

/// One decoded packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub kind: PacketType,
    pub data: Data<'a>,
}

impl<'a> Packet<'a> {
    /// `2probe` / `3probe`: the ping and pong of an upgrade.
    pub fn is_probe(&self) -> bool {
        matches!(self.data, Data::Text(b"probe"))
    }
}

/// What was wrong with a packet or payload. Engine.IO answers every one of them by
/// closing the session ("parse error").
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// An empty packet (no type digit).
    Empty,
    /// The first character is not a type digit 0–6.
    UnknownType(u8),
    /// A `b` record whose base64 does not decode.
    BadBase64,
    /// More packets in one polling payload than allowed.
    TooManyPackets,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Empty => f.write_str("empty packet"),
            PacketError::UnknownType(b) => write!(f, "unknown packet type 0x{b:02x}"),
            PacketError::BadBase64 => f.write_str("binary packet is not valid base64"),
            PacketError::TooManyPackets => f.write_str("too many packets in one payload"),
        }
    }
}

impl std::error::Error for PacketError {}

/// Decodes a WebSocket text frame, or one record of a polling payload that is not
/// binary: a type digit and the data after it.
pub fn decode_text(text: &[u8]) -> Result<Packet<'_>, PacketError> {
    let (&first, data) = text.split_first().ok_or(PacketError::Empty)?;
    let kind = PacketType::from_digit(first).ok_or(PacketError::UnknownType(first))?;
    Ok(Packet {
        kind,
        data: Data::Text(data),
    })
}

/// A WebSocket binary frame: always a message.
pub fn decode_binary(bytes: &[u8]) -> Packet<'_> {
    Packet {
        kind: PacketType::Message,
        data: Data::Binary(Cow::Borrowed(bytes)),
    }
}

/// Decodes one record of a polling payload (`b<base64>` or a text packet).
pub fn decode_record(record: &[u8]) -> Result<Packet<'_>, PacketError> {
    match record.split_first() {
        Some((b'b', b64)) => {
            let bytes = STANDARD.decode(b64).map_err(|_| PacketError::BadBase64)?;
            Ok(Packet {
                kind: PacketType::Message,
                data: Data::Binary(Cow::Owned(bytes)),
            })
        }
        _ => decode_text(record),
    }
}

/// Decodes a whole polling body into packets, in order, at most `max_packets`.
pub fn decode_payload(body: &[u8], max_packets: usize) -> Result<Vec<Packet<'_>>, PacketError> {
    let mut packets = Vec::new();
    for record in body.split(|&b| b == SEPARATOR) {
        if packets.len() == max_packets {
            return Err(PacketError::TooManyPackets);
        }
        packets.push(decode_record(record)?);
    }
    Ok(packets)
}

/// Appends a text packet: type digit, then `data`.
pub fn encode_text(kind: PacketType, data: &[u8], out: &mut Vec<u8>) {
    out.reserve(1 + data.len());
    out.push(kind.digit());
    out.extend_from_slice(data);
}

/// Appends the open packet, with exactly the five keys the clients expect.
/// `upgrades`: `["websocket"]` for a polling session, `[]` for a WebSocket one.
pub fn encode_open(open: &Open<'_>, out: &mut Vec<u8>) {
    use std::io::Write;
    let upgrades = if open.can_upgrade {
        r#"["websocket"]"#
    } else {
        "[]"
    };
    // The sid is [A-Za-z0-9_-] (checked by `Sid`), so it needs no JSON escaping.
    let _ = write!(
        out,
        r#"0{{"sid":"{}","upgrades":{},"pingInterval":{},"pingTimeout":{},"maxPayload":{}}}"#,
        open.sid, upgrades, open.ping_interval_ms, open.ping_timeout_ms, open.max_payload
    );
}

/// What the open packet announces.
#[derive(Clone, Copy, Debug)]
pub struct Open<'a> {
    pub sid: &'a str,
    pub can_upgrade: bool,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
    pub max_payload: usize,
}

/// Builds a polling body: packets separated by `\x1e`, binary as `b` + base64.
#[derive(Debug, Default)]
pub struct PayloadWriter {
    body: Vec<u8>,
    packets: usize,
}

impl PayloadWriter {
    /// Appends a text packet.
    pub fn text(&mut self, kind: PacketType, data: &[u8]) {
        self.separate();
        encode_text(kind, data, &mut self.body);
    }

    /// Appends an already encoded text packet (type digit included).
    pub fn encoded(&mut self, packet: &[u8]) {
        self.separate();
        self.body.extend_from_slice(packet);
    }

    /// Appends a binary message, base64-encoded.
    pub fn binary(&mut self, bytes: &[u8]) {
        self.separate();
        self.body.push(b'b');
        let start = self.body.len();
        self.body.resize(
            start + base64::encoded_len(bytes.len(), true).unwrap_or(0),
            0,
        );
        let written = STANDARD
            .encode_slice(bytes, &mut self.body[start..])
            .unwrap_or(0);
        self.body.truncate(start + written);
    }

    pub fn is_empty(&self) -> bool {
        self.packets == 0
    }

    /// Packets written so far.
    pub fn packets(&self) -> usize {
        self.packets
    }

    /// Bytes written so far.
    pub fn len(&self) -> usize {
        self.body.len()
    }

    pub fn finish(self) -> Vec<u8> {
        self.body
    }

    fn separate(&mut self) {
        if self.packets > 0 {
            self.body.push(SEPARATOR);
        }
        self.packets += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn text(kind: PacketType, data: &[u8]) -> Packet<'_> {
        Packet {
            kind,
            data: Data::Text(data),
        }
    }

    #[test]
    fn every_type_digit_decodes_and_encodes_back() {
        for (digit, kind) in [
            (b'0', PacketType::Open),
            (b'1', PacketType::Close),
            (b'2', PacketType::Ping),
            (b'3', PacketType::Pong),
            (b'4', PacketType::Message),
            (b'5', PacketType::Upgrade),
            (b'6', PacketType::Noop),
        ] {
            let wire = [digit, b'x'];
            assert_eq!(decode_text(&wire), Ok(text(kind, b"x")));
            let mut out = Vec::new();
            encode_text(kind, b"x", &mut out);
            assert_eq!(out, wire);
        }
    }

    #[test]
    fn bad_packets_are_errors() {
        assert_eq!(decode_text(b""), Err(PacketError::Empty));
        assert_eq!(decode_text(b"7"), Err(PacketError::UnknownType(b'7')));
        assert_eq!(decode_text(b"a4"), Err(PacketError::UnknownType(b'a')));
        assert_eq!(decode_record(b"b!!!"), Err(PacketError::BadBase64));
        assert_eq!(decode_payload(b"4a\x1e", 10), Err(PacketError::Empty));
    }

    #[test]
    fn probes_are_recognised() {
        assert!(decode_text(b"2probe").is_ok_and(|p| p.is_probe()));
        assert!(decode_text(b"3probe").is_ok_and(|p| p.is_probe()));
        assert!(!decode_text(b"2").is_ok_and(|p| p.is_probe()));
    }

    #[test]
    fn polling_payloads_split_on_the_record_separator() {
        // The spec's example: "hello", then binary 01 02 03 04, then "€".
        let body = "4hello\x1ebAQIDBA==\x1e4€".as_bytes();
        let packets = decode_payload(body, 16).expect("valid");
        assert_eq!(packets.len(), 3);
        assert_eq!(packets[0], text(PacketType::Message, b"hello"));
        assert_eq!(packets[1].data, Data::Binary(Cow::Owned(vec![1, 2, 3, 4])));
        assert_eq!(packets[2], text(PacketType::Message, "€".as_bytes()));
        assert_eq!(decode_payload(body, 2), Err(PacketError::TooManyPackets));

        let mut w = PayloadWriter::default();
        w.text(PacketType::Message, b"hello");
        w.binary(&[1, 2, 3, 4]);
        w.encoded("4€".as_bytes());
        assert_eq!(w.packets(), 3);
        assert_eq!(w.finish(), body);
    }

    #[test]
    fn a_single_packet_payload_has_no_separator() {
        let mut w = PayloadWriter::default();
        assert!(w.is_empty());
        w.text(PacketType::Noop, b"");
        assert_eq!(w.finish(), b"6");
    }

    #[test]
    fn binary_frames_are_messages() {
        let p = decode_binary(&[0, 255]);
        assert_eq!(p.kind, PacketType::Message);
        assert_eq!(p.data, Data::Binary(Cow::Borrowed(&[0, 255][..])));
    }

    #[test]
    fn the_open_packet_has_exactly_five_keys() {
        let mut out = Vec::new();
        encode_open(
            &Open {
                sid: "AbCdEfGhIjKlMnOpQr_-",
                can_upgrade: true,
                ping_interval_ms: 25000,
                ping_timeout_ms: 20000,
                max_payload: 1_000_000,
            },
            &mut out,
        );
        assert_eq!(out[0], b'0');
        let v: serde_json::Value = serde_json::from_slice(&out[1..]).expect("json");
        let obj = v.as_object().expect("object");
        assert_eq!(obj.len(), 5);
        assert_eq!(obj["sid"], "AbCdEfGhIjKlMnOpQr_-");
        assert_eq!(obj["upgrades"], serde_json::json!(["websocket"]));
        assert_eq!(obj["pingInterval"], 25000);
        assert_eq!(obj["pingTimeout"], 20000);
        assert_eq!(obj["maxPayload"], 1_000_000);

        out.clear();
        encode_open(
            &Open {
                sid: "x",
                can_upgrade: false,
                ping_interval_ms: 1,
                ping_timeout_ms: 1,
                max_payload: 1,
            },
            &mut out,
        );
        assert!(out.windows(14).any(|w| w == br#""upgrades":[],"#));
    }
}
