//! What a worker's callbacks may touch: its connections, the cork and this turn's
//! output, its room index and its end of the fabric. `Outbox` borrows it for one
//! connection's callback, so an app can send, publish and join rooms in the middle of a
//! read without any queue of deferred effects: the order it does things in is the order
//! they happen.
//!
//! Delivery of a broadcast to local recipients (`deliver_local`):
//! - only connections in `Open` get it; the sender is skipped when asked;
//! - the frame is entered once in `Outgoing`'s frame table and each recipient gets an
//!   4-byte frame number in its list: no copy and no allocation per recipient;
//! - a recipient with more than `max_queued` bytes already refused by the kernel loses
//!   volatile messages (counted); one past `hard_cap` (twice the cap) is marked `SLOW` and closed with
//!   1008 at the next flush (`slow`). Control frames never pass here, so this policy
//!   never drops a pong or a close.
//!
//! Backlog: when another worker's inbox is full, broadcasts for it wait here in order
//! and the publishing connection stops being read until the backlog is gone, which
//! bounds the backlog by what one read can publish per connection.

use std::collections::VecDeque;
use std::sync::Arc;

use bytes::BytesMut;
use slab::Slab;

use crate::fabric::{Broadcast, Fabric, Handover, Inbound, Rooms};
use crate::metrics::WorkerMetrics;
use crate::runtime::ConnId;
use crate::ws::CloseCode;

use super::conn::{Conn, FABRIC_PAUSED, MAILBOX, Phase, REPLIED, SLOW};
use super::outbox::CORK_BYTES;
use super::outgoing::{FrameRef, Outgoing};

/// Broadcasts taken from the inbox per loop turn: bounds one turn's output.
const INBOX_BUDGET: usize = 1024;

pub struct Hub {
    pub(crate) conns: Slab<Conn>,
    pub(crate) cork: BytesMut,
    /// Every connection's unwritten output, in order.
    pub(crate) outgoing: Outgoing,
    pub(crate) rooms: Rooms,
    pub(crate) fabric: Arc<Fabric>,
    pub(crate) index: usize,
    pub(crate) metrics: Arc<WorkerMetrics>,
    /// Connections over the hard cap, to close with 1008 at the next flush.
    pub(crate) slow: Vec<ConnId>,
    /// Set by `Outbox::close` during a callback.
    pub(crate) close_request: Option<(CloseCode, &'static str)>,
    /// Connections whose reading stopped because of the backlog.
    pub(crate) fabric_paused: Vec<ConnId>,
    /// Connections whose own input (or an app's answer) produced output this turn: the
    /// flush writes them first.
    pub(crate) replied: Vec<ConnId>,
    /// Closes asked for outside a connection's own callback (`Conns::close`), applied at
    /// the flush.
    pub(crate) closes: Vec<(ConnId, CloseCode, &'static str)>,
    /// Sockets other workers handed to this one, to adopt after the inbox is drained.
    pub(crate) handovers: Vec<Handover>,
    /// Messages for the app (`Inbound::App`), handed to it after the inbox is drained.
    pub(crate) app_messages: Vec<Box<dyn std::any::Any + Send>>,
    /// Generation of the last slot handed out (connections and mailboxes).
    pub(crate) next_generation: u32,
    /// The worker's clock, in ticks, and the deadlines a `Conns` sets, in ticks.
    pub(crate) now: u32,
    pub(crate) keepalive_ticks: u32,
    pub(crate) close_ticks: u32,
    pub(crate) held_ticks: u32,
    max_queued: usize,
    hard_cap: usize,
    /// Per-slot stamps: dedup across rooms and exclusion, without clearing.
    mark: Vec<u32>,
    stamp: u32,
    backlog: Vec<VecDeque<Inbound>>,
    backlog_len: usize,
    to_notify: Vec<bool>,
}

impl Hub {
    pub fn new(
        fabric: Arc<Fabric>,
        index: usize,
        max_queued: usize,
        max_rooms_per_conn: usize,
    ) -> Hub {
        let workers = fabric.workers();
        Hub {
            conns: Slab::new(),
            cork: BytesMut::with_capacity(CORK_BYTES),
            outgoing: Outgoing::default(),
            rooms: Rooms::new(max_rooms_per_conn),
            metrics: Arc::clone(fabric.metrics(index)),
            fabric,
            index,
            slow: Vec::new(),
            close_request: None,
            fabric_paused: Vec::new(),
            replied: Vec::new(),
            closes: Vec::new(),
            handovers: Vec::new(),
            app_messages: Vec::new(),
            next_generation: 0,
            now: 0,
            keepalive_ticks: 1,
            close_ticks: 1,
            held_ticks: 1,
            max_queued,
            hard_cap: max_queued.saturating_mul(2),
            mark: Vec::new(),
            stamp: 0,
            backlog: (0..workers).map(|_| VecDeque::new()).collect(),
            backlog_len: 0,
            to_notify: vec![false; workers],
        }
    }

    /// A fresh id for a new slot (connection or mailbox).
    pub fn next_id_generation(&mut self) -> u32 {
        self.next_generation = self.next_generation.wrapping_add(1);
        self.next_generation
    }

    /// Puts `id` among this turn's replies (written first) if it has output.
    pub fn mark_replied(&mut self, id: ConnId) {
        if self.outgoing.has(id)
            && let Some(conn) = self
                .conns
                .get_mut(id.slot as usize)
                .filter(|c| c.generation == id.generation)
            && !conn.has(REPLIED)
        {
            conn.set(REPLIED, true);
            self.replied.push(id);
        }
    }

    /// A slot in `Open` without a socket (see `conn.rs`).
    pub fn open_mailbox(&mut self) -> ConnId {
        let generation = self.next_id_generation();
        let mut conn = Conn::new(generation, u32::MAX);
        conn.phase = Phase::Open(Default::default());
        conn.set(MAILBOX, true);
        let slot = self.conns.insert(conn);
        self.metrics.open.set(self.conns.len() as u64);
        ConnId {
            slot: slot as u32,
            generation,
        }
    }

    /// Delivers `msg` here and hands it to every other worker.
    pub fn publish(&mut self, from: Option<ConnId>, msg: Broadcast) {
        self.metrics.broadcasts.inc();
        let msg = Arc::new(msg);
        self.deliver_local(&msg);
        for worker in 0..self.fabric.workers() {
            if worker == self.index {
                continue;
            }
            self.send_to(worker, Inbound::Broadcast(Arc::clone(&msg)));
        }
        if self.backlog_len > 0
            && let Some(id) = from
            && let Some(conn) = self.conns.get_mut(id.slot as usize)
            && !conn.has(FABRIC_PAUSED)
        {
            conn.set(FABRIC_PAUSED, true);
            self.fabric_paused.push(id);
        }
        self.metrics.fabric_backlog.set(self.backlog_len as u64);
    }

    /// Queues `msg` for another worker, behind any backlog for it.
    pub fn send_to(&mut self, worker: usize, msg: Inbound) {
        let queue = &mut self.backlog[worker];
        if queue.is_empty() {
            match self.fabric.push(worker, msg) {
                Ok(()) => {
                    self.to_notify[worker] = true;
                    return;
                }
                Err(back) => queue.push_back(back),
            }
        } else {
            queue.push_back(msg);
        }
        self.backlog_len += 1;
    }

    /// Moves backlog into inboxes that have room and wakes the workers that got work.
    /// `true` when no backlog is left.
    pub fn push_backlog_and_notify(&mut self) -> bool {
        if self.backlog_len > 0 {
            for (worker, queue) in self.backlog.iter_mut().enumerate() {
                while let Some(msg) = queue.pop_front() {
                    match self.fabric.push(worker, msg) {
                        Ok(()) => {
                            self.backlog_len -= 1;
                            self.to_notify[worker] = true;
                        }
                        Err(back) => {
                            queue.push_front(back);
                            break;
                        }
                    }
                }
            }
            self.metrics.fabric_backlog.set(self.backlog_len as u64);
        }
        for (worker, flag) in self.to_notify.iter_mut().enumerate() {
            if std::mem::take(flag) {
                self.fabric.notify(worker);
            }
        }
        self.backlog_len == 0
    }

    /// Delivers what other workers published, at most `INBOX_BUDGET` broadcasts.
    /// `true` if more are waiting.
    pub fn drain_inbox(&mut self) -> bool {
        for _ in 0..INBOX_BUDGET {
            match self.fabric.pop(self.index) {
                Some(Inbound::Broadcast(msg)) => self.deliver_local(&msg),
                Some(Inbound::Handover(h)) => self.handovers.push(*h),
                Some(Inbound::App(m)) => self.app_messages.push(m),
                None => return false,
            }
        }
        !self.fabric.inbox_is_empty(self.index)
    }

    fn next_stamp(&mut self) -> u32 {
        if self.mark.len() < self.conns.capacity() {
            self.mark.resize(self.conns.capacity(), 0);
        }
        self.stamp = self.stamp.wrapping_add(1);
        if self.stamp == 0 {
            self.mark.fill(0);
            self.stamp = 1;
        }
        self.stamp
    }

    /// Queues `msg.frame` to each local recipient once.
    pub fn deliver_local(&mut self, msg: &Broadcast) {
        let stamp = self.next_stamp();
        let skip = msg
            .except_origin
            .filter(|o| o.worker == self.index)
            .map(|o| o.conn);
        let frame = self.outgoing.shared_frame(msg.frame.clone());
        let Hub {
            conns,
            outgoing,
            rooms,
            mark,
            metrics,
            slow,
            max_queued,
            hard_cap,
            ..
        } = self;
        for room in msg.except.iter() {
            if let Some(members) = rooms.members(room) {
                for &slot in members {
                    mark[slot as usize] = stamp;
                }
            }
        }
        let mut target = Target {
            outgoing,
            metrics,
            slow,
            max_queued: *max_queued,
            hard_cap: *hard_cap,
            volatile: msg.volatile,
            frame,
            skip,
            delivered: 0,
        };
        if msg.rooms.is_empty() {
            for (slot, conn) in conns.iter_mut() {
                if mark[slot] != stamp {
                    target.offer(slot as u32, conn);
                }
            }
        } else {
            for room in msg.rooms.iter() {
                let Some(members) = rooms.members(room) else {
                    continue;
                };
                for &slot in members {
                    let seen = &mut mark[slot as usize];
                    if *seen == stamp {
                        continue;
                    }
                    *seen = stamp;
                    if let Some(conn) = conns.get_mut(slot as usize) {
                        target.offer(slot, conn);
                    }
                }
            }
        }
        target.outgoing.drop_if_unheld(frame);
        if target.delivered > 0 {
            target.metrics.broadcast_deliveries.add(target.delivered);
            target.metrics.messages_out.add(target.delivered);
        }
    }
}

/// One broadcast's delivery on this worker.
struct Target<'a> {
    outgoing: &'a mut Outgoing,
    metrics: &'a WorkerMetrics,
    slow: &'a mut Vec<ConnId>,
    max_queued: usize,
    hard_cap: usize,
    volatile: bool,
    frame: FrameRef,
    skip: Option<ConnId>,
    delivered: u64,
}

impl Target<'_> {
    #[inline]
    fn offer(&mut self, slot: u32, conn: &mut Conn) {
        if !matches!(conn.phase, Phase::Open(_)) || conn.has(SLOW) {
            return;
        }
        let id = ConnId {
            slot,
            generation: conn.generation,
        };
        if self.skip == Some(id) {
            return;
        }
        let queued = conn.out.bytes();
        if queued > self.max_queued {
            if self.volatile {
                self.metrics.volatile_dropped.inc();
                return;
            }
            if queued > self.hard_cap {
                conn.set(SLOW, true);
                self.slow.push(id);
                return;
            }
        }
        self.outgoing.push_frame(id, self.frame);
        self.delivered += 1;
    }
}
