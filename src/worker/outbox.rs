//! Outbound bytes: what a worker writes this turn, and what the kernel refused.
//!
//! - `Cork`: one per worker. Handlers append frames to it during a turn; at the end of a
//!   connection's callback its bytes are split off (O(1), no copy) into `Pending`. The
//!   cork's allocation is reused once every split-off piece has been written.
//! - `Pending`: this turn's output as `(conn, Bytes)` pairs in order; flushed after the
//!   turn with one vectored write per connection (uWebSockets' corking).
//! - `OutQueue`: per connection, only what the kernel did not take. Empty → no heap at
//!   all (one null pointer); freed as soon as it drains.
//! - `Outbox`: the handle an app gets to send on one connection.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::runtime::ConnId;
use crate::ws::frame::{FrameHead, OpCode};

/// Leftovers shorter than this are copied out of the shared cork chunk so that a slow
/// reader never pins a whole chunk for a few bytes.
const COPY_LEFTOVER_BELOW: usize = 16 << 10;
/// Payloads at least this long are queued by reference instead of copied into the cork.
const SHARE_PAYLOAD_FROM: usize = 4 << 10;

/// Cork chunk size: replies to one read usually fit in one chunk.
pub const CORK_BYTES: usize = 64 << 10;

#[derive(Default)]
pub struct Pending {
    pub ids: Vec<ConnId>,
    pub bufs: Vec<Bytes>,
}

impl Pending {
    pub fn push(&mut self, id: ConnId, bytes: Bytes) {
        if !bytes.is_empty() {
            self.ids.push(id);
            self.bufs.push(bytes);
        }
    }

    pub fn is_empty(&self) -> bool {
        self.ids.is_empty()
    }

    pub fn clear(&mut self) {
        self.ids.clear();
        self.bufs.clear();
    }
}

/// Moves what the cork holds into `pending`, addressed to `id`.
pub fn seal(cork: &mut BytesMut, pending: &mut Pending, id: ConnId) {
    if !cork.is_empty() {
        pending.push(id, cork.split().freeze());
    }
}

/// Sends frames on one connection during a callback.
pub struct Outbox<'a> {
    pub(crate) cork: &'a mut BytesMut,
    pub(crate) pending: &'a mut Pending,
    pub(crate) id: ConnId,
}

impl Outbox<'_> {
    /// Sends one unfragmented message; the payload is copied into the cork.
    pub fn send(&mut self, text: bool, payload: &[u8]) {
        self.frame(data_opcode(text), payload);
    }

    /// Sends one message whose payload is already owned: queued by reference, no copy
    /// (small payloads are copied, which is cheaper than a separate iovec).
    pub fn send_shared(&mut self, text: bool, payload: Bytes) {
        if payload.len() < SHARE_PAYLOAD_FROM {
            return self.send(text, &payload);
        }
        let head = FrameHead::new(true, data_opcode(text), payload.len(), None);
        self.cork.extend_from_slice(head.as_bytes());
        seal(self.cork, self.pending, self.id);
        self.pending.push(self.id, payload);
    }

    /// Any frame, header and payload, into the cork.
    pub(crate) fn frame(&mut self, op: OpCode, payload: &[u8]) {
        let head = FrameHead::new(true, op, payload.len(), None);
        self.cork.reserve(head.as_bytes().len() + payload.len());
        self.cork.extend_from_slice(head.as_bytes());
        self.cork.extend_from_slice(payload);
    }
}

fn data_opcode(text: bool) -> OpCode {
    if text { OpCode::Text } else { OpCode::Binary }
}

/// What the kernel refused, per connection. One pointer when empty.
#[derive(Default)]
pub struct OutQueue(Option<Box<Queued>>);

struct Queued {
    bufs: VecDeque<Bytes>,
    bytes: usize,
}

impl OutQueue {
    pub fn is_empty(&self) -> bool {
        self.0.is_none()
    }

    pub fn bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |q| q.bytes)
    }

    /// Queues `pieces` after skipping their first `written` bytes.
    pub fn push_unwritten(&mut self, pieces: &[Bytes], mut written: usize) {
        for piece in pieces {
            if written >= piece.len() {
                written -= piece.len();
                continue;
            }
            let rest = piece.slice(written..);
            written = 0;
            let rest = if rest.len() < COPY_LEFTOVER_BELOW {
                Bytes::copy_from_slice(&rest)
            } else {
                rest
            };
            let q = self.0.get_or_insert_with(|| {
                Box::new(Queued {
                    bufs: VecDeque::new(),
                    bytes: 0,
                })
            });
            q.bytes += rest.len();
            q.bufs.push_back(rest);
        }
    }

    /// The queued pieces, contiguous, for one vectored write.
    pub fn as_slices(&mut self) -> &[Bytes] {
        match self.0.as_mut() {
            Some(q) => q.bufs.make_contiguous(),
            None => &[],
        }
    }

    /// Drops `written` bytes from the front; frees everything once empty.
    pub fn advance(&mut self, mut written: usize) {
        let Some(q) = self.0.as_mut() else {
            return;
        };
        q.bytes -= written.min(q.bytes);
        while written > 0 {
            let Some(front) = q.bufs.front_mut() else {
                break;
            };
            if written >= front.len() {
                written -= front.len();
                q.bufs.pop_front();
            } else {
                let _ = front.split_to(written);
                written = 0;
            }
        }
        if q.bufs.is_empty() {
            self.0 = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_keeps_order_and_frees_when_drained() {
        let mut q = OutQueue::default();
        let pieces = [Bytes::from_static(b"hello"), Bytes::from_static(b"world")];
        q.push_unwritten(&pieces, 3);
        assert_eq!(q.bytes(), 7);
        let joined: Vec<u8> = q.as_slices().iter().flat_map(|b| b.to_vec()).collect();
        assert_eq!(joined, b"loworld");
        q.advance(4);
        assert_eq!(q.as_slices(), &[Bytes::from_static(b"rld")]);
        q.advance(3);
        assert!(q.is_empty());
        assert_eq!(q.bytes(), 0);
    }

    #[test]
    fn empty_queue_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<OutQueue>(),
            std::mem::size_of::<usize>()
        );
    }
}
