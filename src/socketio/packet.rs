//! Socket.IO v5 packets: `<type>[<attachments>-][<namespace>,][<ack id>][<JSON>]`, the text
//! of one Engine.IO message packet (the Engine.IO `4` already removed).
//!
//! - `parse` applies every rule of Node's `socket.io-parser` decoder: a type digit 0–6; an
//!   attachment count (then `-`) for binary types only, at most `MAX_ATTACHMENTS`; ack id
//!   digits that fit a `u64`; valid JSON after them; the payload shape each type requires;
//!   no reserved event name. Binary packets also have every placeholder's `num` checked
//!   against the attachment count. Any error means the caller closes the connection.
//! - Invariants: a `Packet` borrows its input. `namespace`, `payload` and an event's `args`
//!   are slices of it and are never rebuilt. The JSON is validated by a serde walk that
//!   builds no tree (`json.rs`); only an event name with escapes is copied. A parsed
//!   `namespace` starts with `/` and holds no `,`.
//! - `encode` and the `connect_ok` / `connect_error` / `disconnect` helpers append to the
//!   caller's buffer, so a packet for many recipients is built once. For every parsed
//!   packet `p`, parsing `p.encode()` gives `p` again.
//!
//! Where the rules above are stricter than Node (an EVENT, ACK or CONNECT_ERROR with no
//! payload at all, an attachment count with no digits), the packet is one no Socket.IO
//! client sends.

use std::borrow::Cow;
use std::fmt;

use super::json::{self, Shape, Walk};

/// Node's default `maxAttachments`: more attachments in one packet is an error.
pub const MAX_ATTACHMENTS: usize = 10;

/// Event names a client may not emit (Node's `RESERVED_EVENTS`).
pub const RESERVED_EVENTS: [&str; 6] = [
    "connect",
    "connect_error",
    "disconnect",
    "disconnecting",
    "newListener",
    "removeListener",
];

/// The packet types, with their wire digit.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    /// The type of a wire digit `b'0'..=b'6'`.
    pub fn from_digit(digit: u8) -> Option<PacketType> {
        Some(match digit {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    pub fn digit(self) -> u8 {
        b'0' + self as u8
    }

    /// BINARY_EVENT or BINARY_ACK: carries an attachment count, attachments follow.
    pub fn is_binary(self) -> bool {
        matches!(self, PacketType::BinaryEvent | PacketType::BinaryAck)
    }

    /// EVENT or BINARY_EVENT: the payload starts with an event name.
    pub fn is_event(self) -> bool {
        matches!(self, PacketType::Event | PacketType::BinaryEvent)
    }
}

/// One parsed packet, borrowing the text it was parsed from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Packet<'a> {
    pub kind: PacketType,
    /// Binary messages that follow this header (0 unless `kind.is_binary()`).
    pub attachments: usize,
    /// `/` when the packet names none.
    pub namespace: &'a str,
    pub ack_id: Option<u64>,
    /// The JSON text after the ack id, exactly as received (surrounding whitespace
    /// included); `None` when nothing follows the ack id.
    pub payload: Option<&'a [u8]>,
    /// The name and arguments, for EVENT and BINARY_EVENT (always `Some` for those).
    pub event: Option<Event<'a>>,
    /// Placeholder objects found in a binary packet, each with `num < attachments`.
    pub placeholders: usize,
}

impl Packet<'_> {
    /// Appends this packet's wire text (see [`encode`]).
    pub fn encode(&self, out: &mut Vec<u8>) {
        encode(
            self.kind,
            self.namespace,
            self.ack_id,
            self.attachments,
            self.payload.unwrap_or_default(),
            out,
        );
    }
}

/// An event's name and the JSON text of its arguments.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Event<'a> {
    pub name: EventName<'a>,
    /// The array's elements after the name, as written, separators included, without
    /// the brackets or surrounding whitespace: `1, {"a":2}` for `["e", 1, {"a":2}]`,
    /// empty when the name is alone.
    pub args: &'a [u8],
}

impl Event<'_> {
    /// Appends the arguments as a JSON array, `[<args>]`.
    pub fn write_args_array(&self, out: &mut Vec<u8>) {
        out.reserve(self.args.len() + 2);
        out.push(b'[');
        out.extend_from_slice(self.args);
        out.push(b']');
    }
}

/// An event name: a string (decoded, so borrowed only when it has no escapes; a lone
/// surrogate escape, which JavaScript allows, becomes U+FFFD) or a number.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum EventName<'a> {
    Str(Cow<'a, str>),
    /// The number's JSON text as received (`1`, `-2.5e3`); JavaScript uses the name
    /// `String(Number(text))` for it.
    Number(&'a str),
}

/// What was wrong with a packet. The server answers each by closing the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PacketError {
    /// No type digit: the packet is empty.
    Empty,
    /// The first byte is not a type digit 0–6.
    BadType(u8),
    /// A binary packet without `<digits>-` after its type.
    BadAttachments,
    /// More attachments than allowed.
    TooManyAttachments,
    /// The namespace is not UTF-8.
    BadNamespace,
    /// The ack id does not fit a `u64`.
    BadAckId,
    /// What follows the ack id is not one JSON value (or not UTF-8).
    BadJson,
    /// The payload does not have the shape the packet type requires.
    BadPayload,
    /// An event named after one of `RESERVED_EVENTS`.
    ReservedEvent,
    /// A placeholder whose `num` is missing, not an integer, or not below the count.
    BadPlaceholder,
}

impl fmt::Display for PacketError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PacketError::Empty => f.write_str("empty packet"),
            PacketError::BadType(b) => write!(f, "unknown packet type 0x{b:02x}"),
            PacketError::BadAttachments => f.write_str("illegal attachment count"),
            PacketError::TooManyAttachments => f.write_str("too many attachments"),
            PacketError::BadNamespace => f.write_str("namespace is not UTF-8"),
            PacketError::BadAckId => f.write_str("ack id out of range"),
            PacketError::BadJson => f.write_str("payload is not valid JSON"),
            PacketError::BadPayload => f.write_str("invalid payload for the packet type"),
            PacketError::ReservedEvent => f.write_str("reserved event name"),
            PacketError::BadPlaceholder => f.write_str("illegal attachment placeholder"),
        }
    }
}

impl std::error::Error for PacketError {}

/// Parses one packet, allowing at most `MAX_ATTACHMENTS` attachments.
pub fn parse(input: &[u8]) -> Result<Packet<'_>, PacketError> {
    parse_with_limit(input, MAX_ATTACHMENTS)
}

/// Parses one packet, allowing at most `max_attachments` attachments.
pub fn parse_with_limit(input: &[u8], max_attachments: usize) -> Result<Packet<'_>, PacketError> {
    let (&digit, rest) = input.split_first().ok_or(PacketError::Empty)?;
    let kind = PacketType::from_digit(digit).ok_or(PacketError::BadType(digit))?;
    let (attachments, rest) = if kind.is_binary() {
        read_attachments(rest, max_attachments)?
    } else {
        (0, rest)
    };
    let (namespace, rest) = read_namespace(rest)?;
    let (ack_id, rest) = read_ack_id(rest)?;

    let mut packet = Packet {
        kind,
        attachments,
        namespace,
        ack_id,
        payload: None,
        event: None,
        placeholders: 0,
    };
    if rest.is_empty() {
        return match kind {
            PacketType::Connect | PacketType::Disconnect => Ok(packet),
            _ => Err(PacketError::BadPayload),
        };
    }
    if kind == PacketType::Disconnect {
        return Err(PacketError::BadPayload);
    }
    let text = std::str::from_utf8(rest).map_err(|_| PacketError::BadJson)?;
    let walk = Walk {
        keep_first: kind.is_event(),
        find_placeholders: kind.is_binary(),
    };
    let shape = json::inspect(text, walk).map_err(|_| PacketError::BadJson)?;
    packet.payload = Some(rest);

    match (kind, shape) {
        (PacketType::Connect, Shape::Object) => {}
        (PacketType::ConnectError, Shape::Object | Shape::String) => {}
        (
            PacketType::Event | PacketType::BinaryEvent | PacketType::Ack | PacketType::BinaryAck,
            Shape::Array {
                first,
                placeholders,
            },
        ) => {
            if kind.is_event() {
                let first = first.ok_or(PacketError::BadPayload)?;
                packet.event = Some(read_event(text, first)?);
            }
            if kind.is_binary() {
                if !placeholders.fit(attachments) {
                    return Err(PacketError::BadPlaceholder);
                }
                packet.placeholders = placeholders.count;
            }
        }
        _ => return Err(PacketError::BadPayload),
    }
    Ok(packet)
}

/// `<digits>-` after a binary type.
fn read_attachments(rest: &[u8], max_attachments: usize) -> Result<(usize, &[u8]), PacketError> {
    let (digits, after) = split_digits(rest);
    let Some((b'-', after)) = after.split_first() else {
        return Err(PacketError::BadAttachments);
    };
    if digits.is_empty() {
        return Err(PacketError::BadAttachments);
    }
    match decimal(digits) {
        Some(count) if count <= max_attachments as u64 => Ok((count as usize, after)),
        _ => Err(PacketError::TooManyAttachments),
    }
}

/// `/<name>,` (the comma may be missing at the end of the packet), else `/`.
fn read_namespace(rest: &[u8]) -> Result<(&str, &[u8]), PacketError> {
    if rest.first() != Some(&b'/') {
        return Ok(("/", rest));
    }
    let (name, after) = match rest.iter().position(|&b| b == b',') {
        Some(comma) => (&rest[..comma], &rest[comma + 1..]),
        None => (rest, &rest[rest.len()..]),
    };
    let name = std::str::from_utf8(name).map_err(|_| PacketError::BadNamespace)?;
    Ok((name, after))
}

/// The run of ASCII digits at the start, if any.
fn read_ack_id(rest: &[u8]) -> Result<(Option<u64>, &[u8]), PacketError> {
    let (digits, after) = split_digits(rest);
    if digits.is_empty() {
        return Ok((None, rest));
    }
    let id = decimal(digits).ok_or(PacketError::BadAckId)?;
    Ok((Some(id), after))
}

fn split_digits(bytes: &[u8]) -> (&[u8], &[u8]) {
    let count = bytes.iter().take_while(|b| b.is_ascii_digit()).count();
    bytes.split_at(count)
}

/// The value of ASCII digits, `None` past `u64::MAX`.
fn decimal(digits: &[u8]) -> Option<u64> {
    digits.iter().try_fold(0u64, |value, &digit| {
        value.checked_mul(10)?.checked_add(u64::from(digit - b'0'))
    })
}

/// The name and arguments of an event array `text` whose first element is `first`.
fn read_event<'a>(text: &'a str, first: &'a str) -> Result<Event<'a>, PacketError> {
    let name = match first.as_bytes().first() {
        Some(b'"') => EventName::Str(json::decode_string(first).map_err(|_| PacketError::BadJson)?),
        Some(b'-' | b'0'..=b'9') => EventName::Number(first),
        _ => return Err(PacketError::BadPayload),
    };
    if let EventName::Str(name) = &name
        && RESERVED_EVENTS.contains(&name.as_ref())
    {
        return Err(PacketError::ReservedEvent);
    }
    let args = args_after(text, first).ok_or(PacketError::BadJson)?;
    Ok(Event {
        name,
        args: args.as_bytes(),
    })
}

/// The elements after `first` in the valid JSON array `array` (`first` is a slice of it):
/// what lies between the comma after `first` and the closing bracket, trimmed.
fn args_after<'a>(array: &'a str, first: &'a str) -> Option<&'a str> {
    let start = (first.as_ptr() as usize).checked_sub(array.as_ptr() as usize)?;
    let after_first = array.get(start.checked_add(first.len())?..)?;
    let Some(list) = after_first
        .trim_start_matches(is_json_space)
        .strip_prefix(',')
    else {
        return Some(""); // the closing bracket
    };
    let list = list.trim_end_matches(is_json_space).strip_suffix(']')?;
    Some(list.trim_matches(is_json_space))
}

fn is_json_space(c: char) -> bool {
    matches!(c, ' ' | '\t' | '\n' | '\r')
}

/// Appends `<type>[<attachments>-][<namespace>,][<ack id>][<payload>]`. The attachment count
/// is written only for binary types; the namespace only when it is not `/`.
///
/// `namespace` must start with `/` and hold no `,` (as every parsed one does), and
/// `payload_json` must be empty or JSON that does not start with a digit (no valid payload
/// does), else the text would not parse back to the same packet.
pub fn encode(
    kind: PacketType,
    namespace: &str,
    ack_id: Option<u64>,
    attachments: usize,
    payload_json: &[u8],
    out: &mut Vec<u8>,
) {
    debug_assert!(namespace.starts_with('/') && !namespace.contains(','));
    out.reserve(1 + 21 + namespace.len() + 1 + 20 + payload_json.len());
    out.push(kind.digit());
    if kind.is_binary() {
        push_decimal(attachments as u64, out);
        out.push(b'-');
    }
    if namespace != "/" {
        out.extend_from_slice(namespace.as_bytes());
        out.push(b',');
    }
    if let Some(id) = ack_id {
        push_decimal(id, out);
    }
    out.extend_from_slice(payload_json);
}

/// Appends the server's CONNECT answer: `0[<namespace>,]{"sid":"<sid>"}`.
pub fn connect_ok(namespace: &str, sid: &str, out: &mut Vec<u8>) {
    encode(PacketType::Connect, namespace, None, 0, b"", out);
    out.extend_from_slice(br#"{"sid":"#);
    push_json_string(sid, out);
    out.push(b'}');
}

/// Appends a refusal: `4[<namespace>,]{"message":"<message>"[,"data":<data>]}`.
/// `data_json` must be one JSON value; `message` is escaped here.
pub fn connect_error(namespace: &str, message: &str, data_json: Option<&[u8]>, out: &mut Vec<u8>) {
    encode(PacketType::ConnectError, namespace, None, 0, b"", out);
    out.extend_from_slice(br#"{"message":"#);
    push_json_string(message, out);
    if let Some(data) = data_json {
        out.extend_from_slice(br#","data":"#);
        out.extend_from_slice(data);
    }
    out.push(b'}');
}

/// Appends `1[<namespace>,]`.
pub fn disconnect(namespace: &str, out: &mut Vec<u8>) {
    encode(PacketType::Disconnect, namespace, None, 0, b"", out);
}

fn push_decimal(mut value: u64, out: &mut Vec<u8>) {
    let mut digits = [0u8; 20]; // u64::MAX has 20 digits
    let mut start = digits.len();
    loop {
        start -= 1;
        digits[start] = b'0' + (value % 10) as u8;
        value /= 10;
        if value == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[start..]);
}

/// Appends `text` as a JSON string, quotes included.
fn push_json_string(text: &str, out: &mut Vec<u8>) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.reserve(text.len() + 2);
    out.push(b'"');
    for &byte in text.as_bytes() {
        match byte {
            b'"' => out.extend_from_slice(br#"\""#),
            b'\\' => out.extend_from_slice(br"\\"),
            b'\n' => out.extend_from_slice(br"\n"),
            b'\r' => out.extend_from_slice(br"\r"),
            b'\t' => out.extend_from_slice(br"\t"),
            0..0x20 => out.extend_from_slice(&[
                b'\\',
                b'u',
                b'0',
                b'0',
                HEX[usize::from(byte >> 4)],
                HEX[usize::from(byte & 0xf)],
            ]),
            _ => out.push(byte),
        }
    }
    out.push(b'"');
}

#[cfg(test)]
mod tests;
