//! Frame headers (RFC 6455 §5.2): decode from a byte slice, encode into a 14-byte stack
//! buffer. The payload is never touched here: an encoded frame is `FrameHead` followed by
//! the caller's payload slice, written with one vectored write and no payload copy.
//!
//! `Header::parse` checks only what the wire format itself forbids (a 64-bit length with
//! the top bit set). Role rules (masking, opcodes, reserved bits, control-frame limits)
//! live in [`crate::ws::reader`], which knows who is speaking.

use super::close::Violation;

/// The longest header: 2 bytes + 8 bytes of extended length + 4 bytes of mask key.
pub const MAX_HEADER_LEN: usize = 14;

/// Largest payload a control frame may carry (§5.5).
pub const MAX_CONTROL_PAYLOAD: usize = 125;

/// Frame opcodes that RFC 6455 defines; the others are reserved.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    Continuation = 0x0,
    Text = 0x1,
    Binary = 0x2,
    Close = 0x8,
    Ping = 0x9,
    Pong = 0xA,
}

impl OpCode {
    /// The opcode for a raw nibble, or `None` for a reserved one (3–7, 0xB–0xF).
    pub fn from_bits(bits: u8) -> Option<OpCode> {
        Some(match bits {
            0x0 => OpCode::Continuation,
            0x1 => OpCode::Text,
            0x2 => OpCode::Binary,
            0x8 => OpCode::Close,
            0x9 => OpCode::Ping,
            0xA => OpCode::Pong,
            _ => return None,
        })
    }

    /// Close, ping and pong are control frames (opcode high bit set).
    pub fn is_control(self) -> bool {
        (self as u8) & 0x8 != 0
    }
}

/// A decoded frame header. `opcode` is kept raw so that the reader can name a reserved
/// opcode in its error.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    pub fin: bool,
    /// The three reserved bits, in the low bits (RSV1 = 4, RSV2 = 2, RSV3 = 1).
    pub rsv: u8,
    pub opcode: u8,
    pub mask: Option<[u8; 4]>,
    pub payload_len: u64,
    /// Bytes the header occupies on the wire (2 to 14).
    pub len: usize,
}

impl Header {
    /// Header length implied by the first two bytes, or `None` if fewer than two are given.
    pub fn wire_len(bytes: &[u8]) -> Option<usize> {
        let b1 = *bytes.get(1)?;
        let ext = match b1 & 0x7F {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let mask = if b1 & 0x80 != 0 { 4 } else { 0 };
        Some(2 + ext + mask)
    }

    /// Decodes a header from the front of `bytes`. `Ok(None)` means more bytes are needed.
    pub fn parse(bytes: &[u8]) -> Result<Option<Header>, Violation> {
        let Some(len) = Header::wire_len(bytes) else {
            return Ok(None);
        };
        if bytes.len() < len {
            return Ok(None);
        }
        let (b0, b1) = (bytes[0], bytes[1]);
        let (payload_len, mask_at) = match b1 & 0x7F {
            126 => (u64::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 => {
                let mut be = [0u8; 8];
                be.copy_from_slice(&bytes[2..10]);
                let n = u64::from_be_bytes(be);
                if n >> 63 != 0 {
                    return Err(Violation::LengthTopBitSet);
                }
                (n, 10)
            }
            n => (u64::from(n), 2),
        };
        let mask = (b1 & 0x80 != 0).then(|| {
            [
                bytes[mask_at],
                bytes[mask_at + 1],
                bytes[mask_at + 2],
                bytes[mask_at + 3],
            ]
        });
        Ok(Some(Header {
            fin: b0 & 0x80 != 0,
            rsv: (b0 >> 4) & 0x7,
            opcode: b0 & 0x0F,
            mask,
            payload_len,
            len,
        }))
    }
}

/// An encoded frame header on the stack: write `as_bytes()` then the payload.
#[derive(Clone, Copy)]
pub struct FrameHead {
    bytes: [u8; MAX_HEADER_LEN],
    len: u8,
}

impl FrameHead {
    /// Encodes the header of a frame carrying `payload_len` bytes. Servers pass
    /// `mask: None`; clients pass a fresh key and mask the payload themselves.
    pub fn new(fin: bool, opcode: OpCode, payload_len: usize, mask: Option<[u8; 4]>) -> Self {
        let mut bytes = [0u8; MAX_HEADER_LEN];
        bytes[0] = (u8::from(fin) << 7) | opcode as u8;
        let mask_bit = if mask.is_some() { 0x80 } else { 0 };
        let mut at = 2;
        if payload_len < 126 {
            bytes[1] = mask_bit | payload_len as u8;
        } else if payload_len <= usize::from(u16::MAX) {
            bytes[1] = mask_bit | 126;
            bytes[2..4].copy_from_slice(&(payload_len as u16).to_be_bytes());
            at = 4;
        } else {
            bytes[1] = mask_bit | 127;
            bytes[2..10].copy_from_slice(&(payload_len as u64).to_be_bytes());
            at = 10;
        }
        if let Some(key) = mask {
            bytes[at..at + 4].copy_from_slice(&key);
            at += 4;
        }
        FrameHead {
            bytes,
            len: at as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }
}

impl std::fmt::Debug for FrameHead {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_tuple("FrameHead").field(&self.as_bytes()).finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn length_forms_round_trip() {
        for len in [
            0usize,
            1,
            125,
            126,
            127,
            65535,
            65536,
            1 << 20,
            (1 << 32) + 7,
        ] {
            for mask in [None, Some([1, 2, 3, 4])] {
                let head = FrameHead::new(true, OpCode::Binary, len, mask);
                let h = Header::parse(head.as_bytes()).unwrap().unwrap();
                assert_eq!(h.payload_len, len as u64);
                assert_eq!(h.len, head.as_bytes().len());
                assert_eq!(h.mask, mask);
                assert!(h.fin);
                assert_eq!(h.opcode, 2);
                assert_eq!(h.rsv, 0);
            }
        }
    }

    #[test]
    fn shortest_length_form_is_used() {
        assert_eq!(
            FrameHead::new(true, OpCode::Text, 125, None)
                .as_bytes()
                .len(),
            2
        );
        assert_eq!(
            FrameHead::new(true, OpCode::Text, 126, None)
                .as_bytes()
                .len(),
            4
        );
        assert_eq!(
            FrameHead::new(true, OpCode::Text, 65535, None)
                .as_bytes()
                .len(),
            4
        );
        assert_eq!(
            FrameHead::new(true, OpCode::Text, 65536, None)
                .as_bytes()
                .len(),
            10
        );
    }

    #[test]
    fn partial_headers_need_more() {
        let head = FrameHead::new(false, OpCode::Text, 70000, Some([9, 9, 9, 9]));
        let bytes = head.as_bytes();
        for cut in 0..bytes.len() {
            assert_eq!(Header::parse(&bytes[..cut]), Ok(None), "cut at {cut}");
        }
    }

    #[test]
    fn top_bit_of_64_bit_length_is_refused() {
        let mut bytes = [0x82u8, 0xFF, 0x80, 0, 0, 0, 0, 0, 0, 0, 1, 2, 3, 4];
        assert_eq!(Header::parse(&bytes), Err(Violation::LengthTopBitSet));
        bytes[2] = 0x7F;
        assert!(Header::parse(&bytes).unwrap().is_some());
    }

    #[test]
    fn rfc_example_single_frame_unmasked_text() {
        // RFC 6455 §5.7: "Hello", unmasked.
        let h = Header::parse(&[0x81, 0x05, 0x48]).unwrap().unwrap();
        assert_eq!((h.fin, h.opcode, h.payload_len, h.mask), (true, 1, 5, None));
    }
}
