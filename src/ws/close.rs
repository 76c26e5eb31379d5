//! Close codes (RFC 6455 §7.4) and the protocol violations that end a connection, each
//! knowing the close code it is answered with.

use std::fmt;

/// A close status code as it travels in a close frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CloseCode(pub u16);

impl CloseCode {
    pub const NORMAL: CloseCode = CloseCode(1000);
    pub const GOING_AWAY: CloseCode = CloseCode(1001);
    pub const PROTOCOL_ERROR: CloseCode = CloseCode(1002);
    pub const UNSUPPORTED_DATA: CloseCode = CloseCode(1003);
    pub const INVALID_PAYLOAD: CloseCode = CloseCode(1007);
    pub const POLICY_VIOLATION: CloseCode = CloseCode(1008);
    pub const MESSAGE_TOO_BIG: CloseCode = CloseCode(1009);
    pub const INTERNAL_ERROR: CloseCode = CloseCode(1011);
    pub const TRY_AGAIN_LATER: CloseCode = CloseCode(1013);

    /// Whether a peer may send this code in a close frame. 1004 (reserved), 1005, 1006 and
    /// 1015 (never sent on the wire), 0–999 and 1016–2999 (unassigned or reserved) are not;
    /// 1000–1003, 1007–1014 (IANA registry) and 3000–4999 (libraries, applications) are.
    pub fn is_valid_on_wire(self) -> bool {
        matches!(self.0, 1000..=1003 | 1007..=1014 | 3000..=4999)
    }
}

/// Why a connection is failed. Each variant is one rule of RFC 6455 (or a local limit)
/// and maps to the close code sent before the TCP connection is closed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    /// §5.1: a client frame without a mask key.
    UnmaskedClientFrame,
    /// §5.1: a server frame with a mask key (seen by the client side).
    MaskedServerFrame,
    /// §5.2: RSV1–3 set with no extension negotiated.
    ReservedBits,
    /// §5.2: opcodes 3–7 and 0xB–0xF.
    ReservedOpCode,
    /// §5.2: a 64-bit payload length whose most significant bit is set.
    LengthTopBitSet,
    /// §5.5: a control frame carrying more than 125 bytes.
    ControlFrameTooLong,
    /// §5.5: a control frame with FIN clear.
    FragmentedControlFrame,
    /// §5.4: a continuation frame with no message in progress.
    UnexpectedContinuation,
    /// §5.4: a text or binary frame while a fragmented message is in progress.
    InterleavedDataFrame,
    /// §5.5.1: a close frame with a one-byte payload.
    CloseFrameTooShort,
    /// §7.4: a close code that may not be sent on the wire.
    InvalidCloseCode,
    /// §8.1: a text message (or close reason) that is not UTF-8.
    InvalidUtf8,
    /// §10.4: a message larger than the configured maximum.
    MessageTooBig,
}

impl Violation {
    /// The close code this violation is answered with.
    pub fn close_code(self) -> CloseCode {
        match self {
            Violation::InvalidUtf8 => CloseCode::INVALID_PAYLOAD,
            Violation::MessageTooBig => CloseCode::MESSAGE_TOO_BIG,
            _ => CloseCode::PROTOCOL_ERROR,
        }
    }

    /// A short reason for the close frame and the logs.
    pub fn reason(self) -> &'static str {
        match self {
            Violation::UnmaskedClientFrame => "client frame not masked",
            Violation::MaskedServerFrame => "server frame masked",
            Violation::ReservedBits => "reserved bits set",
            Violation::ReservedOpCode => "reserved opcode",
            Violation::LengthTopBitSet => "64-bit length with top bit set",
            Violation::ControlFrameTooLong => "control frame over 125 bytes",
            Violation::FragmentedControlFrame => "fragmented control frame",
            Violation::UnexpectedContinuation => "continuation without a message",
            Violation::InterleavedDataFrame => "data frame inside a fragmented message",
            Violation::CloseFrameTooShort => "close payload of 1 byte",
            Violation::InvalidCloseCode => "invalid close code",
            Violation::InvalidUtf8 => "invalid UTF-8",
            Violation::MessageTooBig => "message too big",
        }
    }
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({})", self.reason(), self.close_code().0)
    }
}

impl std::error::Error for Violation {}

/// A close frame payload (code + reason, at most 125 bytes) built on the stack.
#[derive(Clone, Copy)]
pub struct ClosePayload {
    bytes: [u8; 125],
    len: u8,
}

impl ClosePayload {
    /// Code then reason; the reason is cut at a character boundary to fit 123 bytes.
    pub fn new(code: CloseCode, reason: &str) -> Self {
        let mut bytes = [0u8; 125];
        bytes[..2].copy_from_slice(&code.0.to_be_bytes());
        let mut cut = reason.len().min(123);
        while !reason.is_char_boundary(cut) {
            cut -= 1;
        }
        bytes[2..2 + cut].copy_from_slice(&reason.as_bytes()[..cut]);
        ClosePayload {
            bytes,
            len: (2 + cut) as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_code_classes() {
        for ok in [
            1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014,
        ] {
            assert!(CloseCode(ok).is_valid_on_wire(), "{ok}");
        }
        for ok in [3000, 3999, 4000, 4999] {
            assert!(CloseCode(ok).is_valid_on_wire(), "{ok}");
        }
        for bad in [
            0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535,
        ] {
            assert!(!CloseCode(bad).is_valid_on_wire(), "{bad}");
        }
    }

    #[test]
    fn close_payload_cuts_reason_at_char_boundary() {
        let long = "é".repeat(100);
        let p = ClosePayload::new(CloseCode::NORMAL, &long);
        assert!(p.as_bytes().len() <= 125);
        assert!(std::str::from_utf8(&p.as_bytes()[2..]).is_ok());
        assert_eq!(&p.as_bytes()[..2], &1000u16.to_be_bytes());
    }
}
