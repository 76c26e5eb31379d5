//! The streaming frame reader: bytes in, messages and control frames out.
//!
//! `Reader::feed` takes whatever the socket produced (any split, down to one byte) and
//! reports complete messages, pings, pongs and the peer's close to a [`Visitor`].
//!
//! Invariants, which keep an idle connection at zero heap bytes:
//! - A single-frame message that is whole in the input is unmasked and validated *in
//!   place* and handed out as [`Payload::InPlace`], borrowing the caller's buffer: no copy.
//! - Only a partial *unit* is kept between calls in `spill`: an incomplete header (≤ 14
//!   bytes) or a control frame whose payload is incomplete (≤ 139 bytes). It is freed as
//!   soon as the unit completes.
//! - A message that spans reads or frames is assembled in `message`, bounded by
//!   `ReadConfig::max_message`, and handed out by value as [`Payload::Assembled`].
//! - Text is validated as it arrives, so invalid UTF-8 fails at the piece that holds it.
//! - After the peer's close frame or a violation the reader is closed and ignores input.

use super::close::{CloseCode, Violation};
use super::frame::{Header, MAX_CONTROL_PAYLOAD, OpCode};
use super::mask::apply_mask;
use super::utf8::{self, Utf8Stream};

/// Who sent the frames being read: clients must mask, servers must not.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// We are the server reading client frames.
    Server,
    /// We are the client reading server frames.
    Client,
}

/// Limits and role, shared by every reader of a worker (not stored per connection).
#[derive(Clone, Copy, Debug)]
pub struct ReadConfig {
    pub role: Role,
    /// Largest message accepted, summed over its fragments; larger → 1009.
    pub max_message: usize,
}

/// A complete message's payload, unmasked and (for text) valid UTF-8.
#[derive(Debug)]
pub enum Payload<'a> {
    /// Borrowed from the buffer given to `feed`; valid for the callback only.
    InPlace(&'a mut [u8]),
    /// Assembled across reads or fragments; the visitor owns it.
    Assembled(Vec<u8>),
}

impl Payload<'_> {
    pub fn as_slice(&self) -> &[u8] {
        match self {
            Payload::InPlace(b) => b,
            Payload::Assembled(v) => v,
        }
    }
}

/// What the reader reports. Calls happen in wire order.
pub trait Visitor {
    fn message(&mut self, text: bool, payload: Payload<'_>);
    fn ping(&mut self, payload: &[u8]);
    fn pong(&mut self, payload: &[u8]);
    /// The peer's close frame, already checked: `code` is valid on the wire and `reason`
    /// is UTF-8. `None` for an empty close payload.
    fn close(&mut self, code: Option<CloseCode>, reason: &str);
}

const NO_MESSAGE: u8 = 0;

/// Per-connection parser state: 48 bytes of (empty) buffers and 24 of state.
#[derive(Debug, Default)]
pub struct Reader {
    spill: Vec<u8>,
    message: Vec<u8>,
    /// Payload bytes still to come in the data frame being streamed.
    remaining: u64,
    mask: [u8; 4],
    utf8: Utf8Stream,
    /// Payload bytes of the current frame seen so far, modulo 4.
    mask_offset: u8,
    /// Opcode of the message in progress (text/binary), or `NO_MESSAGE`.
    message_op: u8,
    frame_fin: bool,
    closed: bool,
}

impl Reader {
    /// Parses `input` (unmasking in place), reporting to `visitor`. On `Err` the
    /// connection must be failed with `Violation::close_code()`; the reader is closed.
    pub fn feed<V: Visitor>(
        &mut self,
        mut input: &mut [u8],
        cfg: &ReadConfig,
        visitor: &mut V,
    ) -> Result<(), Violation> {
        let result = self.feed_inner(&mut input, cfg, visitor);
        if result.is_err() {
            self.closed = true;
            self.spill = Vec::new();
            self.message = Vec::new();
        }
        result
    }

    fn feed_inner<V: Visitor>(
        &mut self,
        input: &mut &mut [u8],
        cfg: &ReadConfig,
        visitor: &mut V,
    ) -> Result<(), Violation> {
        if self.closed {
            return Ok(());
        }
        if !self.spill.is_empty() {
            let taken = self.complete_spill(input);
            *input = &mut std::mem::take(input)[taken..];
            if self.spill.len() < spilled_unit_len(&self.spill) {
                return Ok(());
            }
            let mut unit = std::mem::take(&mut self.spill);
            let used = self.process(&mut unit, cfg, visitor)?;
            debug_assert!(self.closed || used == unit.len());
        }
        let used = self.process(input, cfg, visitor)?;
        if used < input.len() {
            self.spill.extend_from_slice(&input[used..]);
        }
        Ok(())
    }

    /// Whether the peer's close has been read (or the connection failed).
    pub fn is_closed(&self) -> bool {
        self.closed
    }

    /// Heap bytes held for this connection right now.
    pub fn buffered_capacity(&self) -> usize {
        self.spill.capacity() + self.message.capacity()
    }

    /// Moves bytes from `input` into `spill` until the spilled unit is whole.
    fn complete_spill(&mut self, input: &[u8]) -> usize {
        let mut taken = 0;
        loop {
            let want = spilled_unit_len(&self.spill);
            if self.spill.len() >= want || taken == input.len() {
                return taken;
            }
            let n = (want - self.spill.len()).min(input.len() - taken);
            self.spill.extend_from_slice(&input[taken..taken + n]);
            taken += n;
        }
    }

    /// Handles every whole unit in `buf`; returns the bytes consumed. A partial header or
    /// control frame at the end is left for the caller to spill.
    fn process<V: Visitor>(
        &mut self,
        buf: &mut [u8],
        cfg: &ReadConfig,
        visitor: &mut V,
    ) -> Result<usize, Violation> {
        let mut pos = 0;
        while pos < buf.len() && !self.closed {
            if self.remaining > 0 {
                pos += self.stream_payload(&mut buf[pos..], visitor)?;
                continue;
            }
            let Some(h) = Header::parse(&buf[pos..])? else {
                break;
            };
            let op = self.check(&h, cfg)?;
            let avail = (buf.len() - pos - h.len) as u64;
            if op.is_control() {
                if h.payload_len > avail {
                    break;
                }
                let start = pos + h.len;
                pos = start + h.payload_len as usize;
                let payload = &mut buf[start..pos];
                if let Some(key) = h.mask {
                    apply_mask(payload, key, 0);
                }
                self.control(op, payload, visitor)?;
                continue;
            }
            if self.message.len() as u64 + h.payload_len > cfg.max_message as u64 {
                return Err(Violation::MessageTooBig);
            }
            if op != OpCode::Continuation && h.fin && h.payload_len <= avail {
                let start = pos + h.len;
                pos = start + h.payload_len as usize;
                let payload = &mut buf[start..pos];
                if let Some(key) = h.mask {
                    apply_mask(payload, key, 0);
                }
                let text = op == OpCode::Text;
                if text && utf8::validate(payload).is_err() {
                    return Err(Violation::InvalidUtf8);
                }
                visitor.message(text, Payload::InPlace(payload));
                continue;
            }
            if op != OpCode::Continuation {
                self.message_op = op as u8;
            }
            self.remaining = h.payload_len;
            self.mask = h.mask.unwrap_or_default();
            self.mask_offset = 0;
            self.frame_fin = h.fin;
            pos += h.len;
            if h.payload_len == 0 {
                self.end_frame(visitor)?;
            }
        }
        Ok(if self.closed { buf.len() } else { pos })
    }

    /// Unmasks, validates and appends the next piece of the streamed frame.
    fn stream_payload<V: Visitor>(
        &mut self,
        buf: &mut [u8],
        visitor: &mut V,
    ) -> Result<usize, Violation> {
        let n = self.remaining.min(buf.len() as u64) as usize;
        let piece = &mut buf[..n];
        apply_mask(piece, self.mask, usize::from(self.mask_offset));
        self.mask_offset = ((usize::from(self.mask_offset) + n) & 3) as u8;
        if self.message_op == OpCode::Text as u8 && self.utf8.feed(piece).is_err() {
            return Err(Violation::InvalidUtf8);
        }
        self.message.extend_from_slice(piece);
        self.remaining -= n as u64;
        if self.remaining == 0 {
            self.end_frame(visitor)?;
        }
        Ok(n)
    }

    /// A streamed frame is complete; if it was the last of its message, deliver it.
    fn end_frame<V: Visitor>(&mut self, visitor: &mut V) -> Result<(), Violation> {
        if !self.frame_fin {
            return Ok(());
        }
        let text = self.message_op == OpCode::Text as u8;
        if text && self.utf8.finish().is_err() {
            return Err(Violation::InvalidUtf8);
        }
        self.message_op = NO_MESSAGE;
        visitor.message(text, Payload::Assembled(std::mem::take(&mut self.message)));
        Ok(())
    }

    /// Applies the header rules of §5 for `cfg.role`; returns the opcode.
    fn check(&self, h: &Header, cfg: &ReadConfig) -> Result<OpCode, Violation> {
        if h.rsv != 0 {
            return Err(Violation::ReservedBits);
        }
        let op = OpCode::from_bits(h.opcode).ok_or(Violation::ReservedOpCode)?;
        match (cfg.role, h.mask.is_some()) {
            (Role::Server, false) => return Err(Violation::UnmaskedClientFrame),
            (Role::Client, true) => return Err(Violation::MaskedServerFrame),
            _ => {}
        }
        if op.is_control() {
            if !h.fin {
                return Err(Violation::FragmentedControlFrame);
            }
            if h.payload_len > MAX_CONTROL_PAYLOAD as u64 {
                return Err(Violation::ControlFrameTooLong);
            }
        } else if op == OpCode::Continuation && self.message_op == NO_MESSAGE {
            return Err(Violation::UnexpectedContinuation);
        } else if op != OpCode::Continuation && self.message_op != NO_MESSAGE {
            return Err(Violation::InterleavedDataFrame);
        }
        Ok(op)
    }

    fn control<V: Visitor>(
        &mut self,
        op: OpCode,
        payload: &[u8],
        visitor: &mut V,
    ) -> Result<(), Violation> {
        match op {
            OpCode::Ping => visitor.ping(payload),
            OpCode::Pong => visitor.pong(payload),
            _ => {
                let (code, reason) = parse_close(payload)?;
                self.closed = true;
                self.spill = Vec::new();
                self.message = Vec::new();
                visitor.close(code, reason);
            }
        }
        Ok(())
    }
}

/// Checks a close frame payload (§5.5.1, §7.4): empty, or a valid code and UTF-8 reason.
pub fn parse_close(payload: &[u8]) -> Result<(Option<CloseCode>, &str), Violation> {
    match payload {
        [] => Ok((None, "")),
        [_] => Err(Violation::CloseFrameTooShort),
        [hi, lo, reason @ ..] => {
            let code = CloseCode(u16::from_be_bytes([*hi, *lo]));
            if !code.is_valid_on_wire() {
                return Err(Violation::InvalidCloseCode);
            }
            let reason = std::str::from_utf8(reason).map_err(|_| Violation::InvalidUtf8)?;
            Ok((Some(code), reason))
        }
    }
}

/// Bytes the spilled unit needs to be whole: its header, plus the payload for a control
/// frame (data payloads are streamed, never spilled). The payload length is read from the
/// decoded header, so a control frame that uses a longer length form than it needs (legal on
/// the wire) is sized correctly too.
fn spilled_unit_len(spill: &[u8]) -> usize {
    let Some(header_len) = Header::wire_len(spill) else {
        return 2;
    };
    match Header::parse(spill) {
        Ok(Some(h)) if h.opcode & 0x8 != 0 && h.payload_len <= MAX_CONTROL_PAYLOAD as u64 => {
            header_len + h.payload_len as usize
        }
        _ => header_len,
    }
}

#[cfg(test)]
#[path = "reader_tests.rs"]
mod tests;
