//! Outbound bytes: what a worker writes this turn, and what the kernel refused.
//!
//! - `Cork`: one per worker. Handlers append frames to it during a turn; at the end of a
//!   connection's callback its bytes are split off (O(1), no copy) into `Outgoing`
//!   (`outgoing.rs`), which holds every connection's unwritten frames in order until a
//!   flush writes them with one vectored write per connection (uWebSockets' corking).
//!   The cork's allocation is reused once every split-off piece has been written.
//! - `OutQueue`: per connection, only what the kernel did not take. Empty → no heap at
//!   all (one null pointer); freed as soon as it drains.
//! - `Outbox`: the handle an app gets to send on one connection, publish broadcasts and
//!   join or leave rooms.

use std::collections::VecDeque;

use bytes::{Bytes, BytesMut};

use crate::fabric::{Broadcast, Origin, RoomKey, TooManyRooms};
use crate::runtime::ConnId;
use crate::ws::CloseCode;
use crate::ws::frame::{FrameHead, OpCode};

use super::hub::Hub;
use super::outgoing::Outgoing;

/// Leftovers shorter than this are copied out of the shared cork chunk so that a slow
/// reader never pins a whole chunk for a few bytes.
const COPY_LEFTOVER_BELOW: usize = 16 << 10;
/// Payloads at least this long are queued by reference instead of copied into the cork.
const SHARE_PAYLOAD_FROM: usize = 4 << 10;

/// Cork chunk size: replies to one read usually fit in one chunk.
pub const CORK_BYTES: usize = 64 << 10;

/// Moves what the cork holds into `outgoing`, addressed to `id`.
pub fn seal(cork: &mut BytesMut, outgoing: &mut Outgoing, id: ConnId) {
    if !cork.is_empty() {
        outgoing.push(id, cork.split().freeze(), false);
    }
}

/// Sends frames on one connection during a callback, and reaches the fabric.
pub struct Outbox<'a> {
    pub(crate) hub: &'a mut Hub,
    pub(crate) id: ConnId,
}

impl Outbox<'_> {
    /// Sends one unfragmented message; the payload is copied into the cork.
    pub fn send(&mut self, text: bool, payload: &[u8]) {
        self.frame(data_opcode(text), payload);
    }

    /// Sends one message made of `parts` (copied into the cork, no temporary buffer).
    pub fn send_parts(&mut self, text: bool, parts: &[&[u8]]) {
        let len: usize = parts.iter().map(|p| p.len()).sum();
        let head = FrameHead::new(true, data_opcode(text), len, None);
        let cork = &mut self.hub.cork;
        cork.reserve(head.as_bytes().len() + len);
        cork.extend_from_slice(head.as_bytes());
        for part in parts {
            cork.extend_from_slice(part);
        }
        self.hub.metrics.messages_out.inc();
    }

    /// Sends one message `head` + `items` joined by `sep` + `tail`, written straight into
    /// the cork (no temporary buffer): a JSON array after a packet header, say.
    pub fn send_joined(
        &mut self,
        text: bool,
        head: &[u8],
        items: &[&[u8]],
        sep: &[u8],
        tail: &[u8],
    ) {
        let len = head.len()
            + items.iter().map(|i| i.len()).sum::<usize>()
            + sep.len() * items.len().saturating_sub(1)
            + tail.len();
        let frame_head = FrameHead::new(true, data_opcode(text), len, None);
        let cork = &mut self.hub.cork;
        cork.reserve(frame_head.as_bytes().len() + len);
        cork.extend_from_slice(frame_head.as_bytes());
        cork.extend_from_slice(head);
        for (i, item) in items.iter().enumerate() {
            if i > 0 {
                cork.extend_from_slice(sep);
            }
            cork.extend_from_slice(item);
        }
        cork.extend_from_slice(tail);
        self.hub.metrics.messages_out.inc();
    }

    /// Sends one message whose payload is already owned: queued by reference, no copy
    /// (small payloads are copied, which is cheaper than a separate iovec).
    pub fn send_shared(&mut self, text: bool, payload: Bytes) {
        if payload.len() < SHARE_PAYLOAD_FROM {
            return self.send(text, &payload);
        }
        let head = FrameHead::new(true, data_opcode(text), payload.len(), None);
        self.hub.cork.extend_from_slice(head.as_bytes());
        seal(&mut self.hub.cork, &mut self.hub.outgoing, self.id);
        self.hub.outgoing.push(self.id, payload, true);
        self.hub.metrics.messages_out.inc();
    }

    /// Any frame, header and payload, into the cork.
    pub(crate) fn frame(&mut self, op: OpCode, payload: &[u8]) {
        let head = FrameHead::new(true, op, payload.len(), None);
        let cork = &mut self.hub.cork;
        cork.reserve(head.as_bytes().len() + payload.len());
        cork.extend_from_slice(head.as_bytes());
        cork.extend_from_slice(payload);
        self.hub.metrics.messages_out.inc();
    }

    /// Whether a close of this connection was asked for in this callback.
    pub fn is_closing(&self) -> bool {
        self.hub.close_request.is_some()
    }

    /// The connection this outbox sends on.
    pub fn id(&self) -> ConnId {
        self.id
    }

    /// This connection, as a broadcast's origin (for `Broadcast::except_origin`).
    pub fn origin(&self) -> Origin {
        Origin {
            worker: self.hub.index,
            conn: self.id,
        }
    }

    /// Publishes `msg` on every worker. What this connection sent before reaches it
    /// first; what it sends after, after (its own copy included, if it is a recipient).
    pub fn broadcast(&mut self, msg: Broadcast) {
        seal(&mut self.hub.cork, &mut self.hub.outgoing, self.id);
        self.hub.publish(Some(self.id), msg);
    }

    /// Joins `room` on this worker's index. `Ok(false)`: already a member.
    pub fn join(&mut self, room: &str) -> Result<bool, TooManyRooms> {
        self.hub.rooms.join(self.id.slot, room)
    }

    /// Leaves `room`. `false`: was not a member.
    pub fn leave(&mut self, room: &str) -> bool {
        self.hub.rooms.leave(self.id.slot, room)
    }

    /// Leaves every room.
    pub fn leave_all(&mut self) {
        self.hub.rooms.leave_all(self.id.slot);
    }

    /// The rooms this connection is in.
    pub fn rooms(&self) -> &[RoomKey] {
        self.hub.rooms.rooms_of(self.id.slot)
    }

    /// Takes over what `from` (a mailbox whose session moves to this connection) has:
    /// its rooms, and the output not yet handed on, which follows what this connection
    /// was sent so far.
    pub(crate) fn take_over(&mut self, from: ConnId) {
        seal(&mut self.hub.cork, &mut self.hub.outgoing, self.id);
        let rooms: Vec<RoomKey> = self.hub.rooms.rooms_of(from.slot).to_vec();
        self.hub.rooms.leave_all(from.slot);
        for room in &rooms {
            // Cannot exceed the bound: the mailbox held these rooms under the same one.
            let _ = self.hub.rooms.join(self.id.slot, room);
        }
        let mut bufs = Vec::new();
        let mut keep = Vec::new();
        self.hub.outgoing.take(from, &mut bufs, &mut keep);
        for (piece, keep) in bufs.into_iter().zip(keep) {
            self.hub.outgoing.push(self.id, piece, keep);
        }
    }

    /// Reaches the worker's other connections from this connection's callback (what
    /// was sent on this one so far stays first).
    pub(crate) fn conns(&mut self) -> super::Conns<'_> {
        seal(&mut self.hub.cork, &mut self.hub.outgoing, self.id);
        super::Conns { hub: self.hub }
    }

    /// Closes this connection with `code` after what was sent so far; later messages in
    /// the same read are ignored.
    pub fn close(&mut self, code: CloseCode, reason: &'static str) {
        self.hub.close_request = Some((code, reason));
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

    /// Queues `pieces` after skipping their first `written` bytes. A piece whose
    /// `keep` flag is false (a slice of the cork) is copied when short.
    pub fn push_unwritten(&mut self, pieces: &[Bytes], keep: &[bool], mut written: usize) {
        for (i, piece) in pieces.iter().enumerate() {
            if written >= piece.len() {
                written -= piece.len();
                continue;
            }
            let rest = piece.slice(written..);
            written = 0;
            let rest = if !keep.get(i).copied().unwrap_or(false) && rest.len() < COPY_LEFTOVER_BELOW
            {
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

    /// Keeps only the front piece (it may be partly written: dropping it would break
    /// the framing) and drops the rest (closing a slow consumer).
    pub fn truncate_to_front(&mut self) {
        if let Some(q) = self.0.as_mut() {
            q.bufs.truncate(1);
            q.bytes = q.bufs.front().map_or(0, |b| b.len());
        }
    }

    /// Appends one piece by reference.
    pub fn push_back(&mut self, piece: Bytes) {
        if piece.is_empty() {
            return;
        }
        let q = self.0.get_or_insert_with(|| {
            Box::new(Queued {
                bufs: VecDeque::new(),
                bytes: 0,
            })
        });
        q.bytes += piece.len();
        q.bufs.push_back(piece);
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
        q.push_unwritten(&pieces, &[false, false], 3);
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
    fn kept_pieces_are_queued_by_reference_and_truncation_keeps_the_front() {
        let shared = Bytes::from(vec![1u8; 100]);
        let mut q = OutQueue::default();
        q.push_unwritten(&[shared.clone(), shared.clone()], &[true, true], 10);
        let slices = q.as_slices();
        assert_eq!(
            slices[1].as_ptr(),
            shared.as_ptr(),
            "no copy of a kept piece"
        );
        assert_eq!(q.bytes(), 190);
        q.truncate_to_front();
        assert_eq!(q.bytes(), 90);
        q.push_back(Bytes::from_static(b"close"));
        assert_eq!(q.bytes(), 95);
    }

    #[test]
    fn empty_queue_is_one_pointer() {
        assert_eq!(
            std::mem::size_of::<OutQueue>(),
            std::mem::size_of::<usize>()
        );
    }
}
