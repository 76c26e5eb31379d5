//! Output not yet written: this turn's, and what earlier flushes left for later.
//!
//! Every frame for a connection is appended here in the order it was made (replies
//! sealed from the cork, shared broadcast frames, closes), so a connection's order
//! holds by construction and nothing is sorted. A large fan-out is not written in one
//! go: the worker writes the replies, then a budget of the other connections, polls for
//! input, and continues, so the next broadcasts are read meanwhile and a connection
//! reached later gets every frame queued by then in one `writev`. What waits lives
//! here: per connection, a FIFO list of frames threaded through one worker-wide
//! node slab (no allocation per connection; the slab's memory is reused turn after
//! turn), and a round-robin queue of the connections that have a list.
//!
//! Invariants: a connection's frames leave in the order they were pushed; a connection
//! is in `ready` at most once (`List::queued`); a list belongs to one generation of a
//! slot, and a list of an older generation is freed before the slot's new owner uses it.

use std::collections::VecDeque;

use bytes::Bytes;
use slab::Slab;

use crate::runtime::ConnId;

const NIL: u32 = u32::MAX;

/// A frame entered once for many recipients.
#[derive(Clone, Copy)]
pub struct FrameRef(u32);

struct Frame {
    bytes: Bytes,
    keep: bool,
    holders: u32,
}

/// Frame numbers per segment: a segment is 32 bytes, half a cache line.
const PER_SEGMENT: usize = 6;

#[derive(Clone, Copy)]
struct Segment {
    frames: [u32; PER_SEGMENT],
    len: u32,
    /// The next segment of the list, or of the free list.
    next: u32,
}

/// Segments of every list, and a free list through `next`.
#[derive(Default)]
struct Pool {
    segments: Vec<Segment>,
    free: Option<u32>,
}

impl Pool {
    fn alloc(&mut self, first: u32) -> u32 {
        let segment = Segment {
            frames: [first, 0, 0, 0, 0, 0],
            len: 1,
            next: NIL,
        };
        match self.free {
            Some(at) => {
                let next = self.segments[at as usize].next;
                self.free = (next != NIL).then_some(next);
                self.segments[at as usize] = segment;
                at
            }
            None => {
                self.segments.push(segment);
                (self.segments.len() - 1) as u32
            }
        }
    }

    fn release(&mut self, at: u32) {
        self.segments[at as usize].next = self.free.unwrap_or(NIL);
        self.free = Some(at);
    }
}

#[derive(Clone, Copy)]
struct List {
    generation: u32,
    head: u32,
    tail: u32,
    /// The slot is in `ready` (possibly for an older generation or an emptied list).
    queued: bool,
}

const EMPTY: List = List {
    generation: 0,
    head: NIL,
    tail: NIL,
    queued: false,
};

/// Frames waiting for a later flush, per connection, in arrival order.
#[derive(Default)]
pub struct Outgoing {
    frames: Slab<Frame>,
    pool: Pool,
    /// List entries, all lists together.
    held: usize,
    /// Indexed by slot.
    lists: Vec<List>,
    ready: VecDeque<u32>,
}

impl Outgoing {
    /// Frames held.
    pub fn len(&self) -> usize {
        self.held
    }

    pub fn is_empty(&self) -> bool {
        self.held == 0
    }

    /// Whether `id` has frames waiting.
    pub fn has(&self, id: ConnId) -> bool {
        self.lists
            .get(id.slot as usize)
            .is_some_and(|l| l.generation == id.generation && l.head != NIL)
    }

    /// Appends a frame for `id` alone (a reply, a close); a connection that had none
    /// joins the round robin. Frames for many connections go through `shared_frame`.
    pub fn push(&mut self, id: ConnId, bytes: Bytes, keep: bool) {
        let frame = FrameRef(self.frames.insert(Frame {
            bytes,
            keep,
            holders: 0,
        }) as u32);
        self.push_frame(id, frame);
    }

    /// Enters a frame that several connections will get (`push_frame`); call
    /// `drop_if_unheld` once they all have it.
    pub fn shared_frame(&mut self, bytes: Bytes) -> FrameRef {
        FrameRef(self.frames.insert(Frame {
            bytes,
            keep: true,
            holders: 0,
        }) as u32)
    }

    /// Removes a shared frame no connection got.
    pub fn drop_if_unheld(&mut self, frame: FrameRef) {
        if self.frames[frame.0 as usize].holders == 0 {
            self.frames.remove(frame.0 as usize);
        }
    }

    /// Appends a table frame to `id`'s list, in the round robin if it had no list.
    pub fn push_frame(&mut self, id: ConnId, frame: FrameRef) {
        let frame = frame.0;
        self.frames[frame as usize].holders += 1;
        let slot = id.slot as usize;
        if self.lists.len() <= slot {
            self.lists.resize(slot + 1, EMPTY);
        }
        if self.lists[slot].generation != id.generation {
            self.free_list(slot);
            self.lists[slot].generation = id.generation;
        }
        self.held += 1;
        let list = &mut self.lists[slot];
        if list.tail != NIL {
            let tail = &mut self.pool.segments[list.tail as usize];
            if (tail.len as usize) < PER_SEGMENT {
                tail.frames[tail.len as usize] = frame;
                tail.len += 1;
            } else {
                let at = self.pool.alloc(frame);
                self.pool.segments[list.tail as usize].next = at;
                list.tail = at;
            }
        } else {
            let at = self.pool.alloc(frame);
            list.head = at;
            list.tail = at;
        }
        if !list.queued {
            list.queued = true;
            self.ready.push_back(id.slot);
        }
    }

    /// Moves `id`'s frames, in order, onto the ends of `bufs` and `keep`.
    pub fn take(&mut self, id: ConnId, bufs: &mut Vec<Bytes>, keep: &mut Vec<bool>) {
        let Some(list) = self.lists.get_mut(id.slot as usize) else {
            return;
        };
        if list.generation != id.generation {
            return;
        }
        let mut at = std::mem::replace(&mut list.head, NIL);
        list.tail = NIL;
        while at != NIL {
            let segment = self.pool.segments[at as usize];
            for &n in &segment.frames[..segment.len as usize] {
                let frame = &mut self.frames[n as usize];
                keep.push(frame.keep);
                frame.holders -= 1;
                if frame.holders == 0 {
                    bufs.push(self.frames.remove(n as usize).bytes);
                } else {
                    bufs.push(frame.bytes.clone());
                }
            }
            self.held -= segment.len as usize;
            self.pool.release(at);
            at = segment.next;
        }
    }

    /// The next connection in the round robin that has frames, with its generation.
    pub fn next_ready(&mut self) -> Option<ConnId> {
        while let Some(slot) = self.ready.pop_front() {
            let list = &mut self.lists[slot as usize];
            list.queued = false;
            if list.head != NIL {
                return Some(ConnId {
                    slot,
                    generation: list.generation,
                });
            }
        }
        None
    }

    /// Drops whatever a released connection still had waiting.
    pub fn forget(&mut self, id: ConnId) {
        if self
            .lists
            .get(id.slot as usize)
            .is_some_and(|l| l.generation == id.generation)
        {
            self.free_list(id.slot as usize);
        }
    }

    /// Returns memory kept from a burst, once nothing waits.
    pub fn shrink_when_idle(&mut self) {
        if self.held == 0 {
            // Every list is empty, so no segment is in use.
            self.pool = Pool::default();
            self.frames.shrink_to_fit();
            self.ready.shrink_to_fit();
        }
    }

    fn free_list(&mut self, slot: usize) {
        let list = &mut self.lists[slot];
        let mut at = std::mem::replace(&mut list.head, NIL);
        list.tail = NIL;
        while at != NIL {
            let segment = self.pool.segments[at as usize];
            for &n in &segment.frames[..segment.len as usize] {
                let frame = &mut self.frames[n as usize];
                frame.holders -= 1;
                if frame.holders == 0 {
                    self.frames.remove(n as usize);
                }
            }
            self.held -= segment.len as usize;
            self.pool.release(at);
            at = segment.next;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(slot: u32, generation: u32) -> ConnId {
        ConnId { slot, generation }
    }

    fn drain(d: &mut Outgoing, who: ConnId) -> Vec<Bytes> {
        let (mut bufs, mut keep) = (Vec::new(), Vec::new());
        d.take(who, &mut bufs, &mut keep);
        assert_eq!(bufs.len(), keep.len());
        bufs
    }

    #[test]
    fn frames_leave_in_order_and_connections_round_robin() {
        let mut d = Outgoing::default();
        let (a, b) = (id(3, 1), id(0, 7));
        d.push(a, Bytes::from_static(b"a1"), true);
        d.push(b, Bytes::from_static(b"b1"), false);
        d.push(a, Bytes::from_static(b"a2"), true);
        assert_eq!(d.len(), 3);
        assert_eq!(d.next_ready(), Some(a));
        assert_eq!(drain(&mut d, a), vec!["a1", "a2"]);
        d.push(a, Bytes::from_static(b"a3"), true);
        assert_eq!(d.next_ready(), Some(b));
        assert_eq!(drain(&mut d, b), vec!["b1"]);
        assert_eq!(d.next_ready(), Some(a));
        assert_eq!(drain(&mut d, a), vec!["a3"]);
        assert_eq!(d.next_ready(), None);
        assert!(d.is_empty());
        assert!(d.frames.is_empty());
    }

    #[test]
    fn a_shared_frame_is_held_once_and_freed_with_its_last_holder() {
        let mut d = Outgoing::default();
        let frame = Bytes::from(vec![7u8; 300]);
        let first = d.shared_frame(frame.clone());
        for slot in 0..50 {
            d.push_frame(id(slot, 1), first);
        }
        let entered = d.shared_frame(frame.clone());
        for slot in 50..100 {
            d.push_frame(id(slot, 1), entered);
        }
        d.drop_if_unheld(entered);
        assert_eq!((d.len(), d.frames.len()), (100, 2));
        let unheld = d.shared_frame(frame.clone());
        d.drop_if_unheld(unheld);
        assert_eq!(d.frames.len(), 2);
        d.forget(id(0, 1));
        for slot in 1..100 {
            let bufs = drain(&mut d, id(slot, 1));
            assert_eq!(bufs.len(), 1);
            assert_eq!(bufs[0].as_ptr(), frame.as_ptr());
        }
        assert!(d.frames.is_empty() && d.is_empty());
        assert!(!d.has(id(5, 1)));
    }

    #[test]
    fn long_lists_span_segments_in_order() {
        let mut d = Outgoing::default();
        let (a, b) = (id(0, 1), id(1, 1));
        for i in 0..20u8 {
            d.push(a, Bytes::from(vec![i]), false);
            d.push(b, Bytes::from(vec![100 + i]), false);
        }
        assert_eq!(d.len(), 40);
        let got: Vec<u8> = drain(&mut d, a).iter().map(|b| b[0]).collect();
        assert_eq!(got, (0..20).collect::<Vec<u8>>());
        d.forget(b);
        assert!(d.is_empty() && d.frames.is_empty());
        // Freed segments are reused, not added.
        let before = d.pool.segments.len();
        for i in 0..40u8 {
            d.push(a, Bytes::from(vec![i]), false);
        }
        assert_eq!(d.pool.segments.len(), before);
        d.shrink_when_idle();
        assert_eq!(d.pool.segments.len(), before);
        drain(&mut d, a);
        d.shrink_when_idle();
        assert!(d.pool.segments.is_empty());
    }

    #[test]
    fn a_taken_list_leaves_no_duplicate_in_the_round_robin() {
        let mut d = Outgoing::default();
        let a = id(1, 1);
        for round in 0..100 {
            d.push(a, Bytes::from(vec![round as u8]), true);
            assert_eq!(drain(&mut d, a).len(), 1);
        }
        assert!(d.ready.len() <= 1);
        assert_eq!(d.next_ready(), None);
    }

    #[test]
    fn a_new_generation_never_sees_the_old_frames() {
        let mut d = Outgoing::default();
        d.push(id(2, 1), Bytes::from_static(b"old"), true);
        d.push(id(2, 2), Bytes::from_static(b"new"), true);
        assert_eq!(drain(&mut d, id(2, 1)), Vec::<Bytes>::new());
        assert_eq!(drain(&mut d, id(2, 2)), vec!["new"]);
        d.push(id(2, 3), Bytes::from_static(b"x"), true);
        d.forget(id(2, 3));
        assert!(d.is_empty());
        assert_eq!(d.next_ready(), None);
    }
}
