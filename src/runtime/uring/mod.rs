//! The io_uring backend: completion events instead of readiness, same `Driver` duties as
//! epoll (see `driver.rs`), driven by the worker's loop with no futures.
//!
//! - **Accept**: one multishot accept on the worker's listener; re-armed when the kernel
//!   ends it (after `EMFILE`/`ENFILE`, after `ACCEPT_BACKOFF`).
//! - **Receive**: one multishot receive per connection that picks buffers from the
//!   worker's provided-buffer ring (`bufring.rs`), so an idle connection owns no buffer
//!   while its receive is armed. A completed buffer is lent to `Sink::data` in place and
//!   given back to the ring right after. `ENOBUFS` (ring empty under a burst) ends the
//!   multishot; it is re-armed at the end of the turn, once this turn's buffers are back.
//! - **Backpressure** (`Sink::data` returns `false`): the receive is cancelled. Bytes that
//!   complete before the cancel takes are *held* (copied into the connection's own
//!   buffer, rare and small) and delivered on `resume_read`, which also re-arms.
//!   End-of-stream seen while paused is reported after the held bytes.
//! - **Send**: `write` takes up to `send::MAX_IN_FLIGHT` bytes as one `SENDMSG` (every
//!   queued frame in one vectored send, `MSG_WAITALL` so that the kernel finishes a short
//!   send itself) and says how much it took; while a send is in flight it takes nothing.
//!   The driver owns the frames (`Bytes` clones) until the CQE, even if the connection is
//!   closed by then. The send's completion reports `writable` if `write` took less than
//!   offered meanwhile.
//! - **Batching**: SQEs are pushed during the worker's flush and submitted by the next
//!   `turn`, one `io_uring_enter` per loop turn that also waits (`EXT_ARG` timeout).
//! - **Close**: the connection's operations are cancelled; its fd is closed only after the
//!   SQEs that name it have been submitted (so a recycled fd number never receives an
//!   operation meant for the old socket). Buffers stay with their operations until the
//!   last CQE.
//! - **Detach**: the socket is taken out of the ring before it is handed over: the send
//!   in flight is waited for, the receive is cancelled synchronously
//!   (`IORING_REGISTER_SYNC_CANCEL`), and bytes it had read are given to the caller.
//! - `user_data` is a receive's own name (`RECV` set: the connection's slot, the low bits
//!   of its generation and the arm's sequence number, so an idle connection needs no
//!   entry anywhere but its `Slot`), an index into `ops` (sends), or one of three
//!   constants (bit 63 set). Each op ends with a CQE without `IORING_CQE_F_MORE`; only
//!   then is a send's entry freed, and a receive counted out of `recvs_in_flight`.
//!
//! The ring is set up `SINGLE_ISSUER | DEFER_TASKRUN` and disabled until the first
//! `turn`, which runs on the worker thread that then owns it.

mod bufring;
mod probe;
mod refuse;
mod send;
mod settle;

use std::collections::VecDeque;
use std::io;
use std::mem::ManuallyDrop;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::types::{CancelBuilder, Fd, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use slab::Slab;

use super::conn_id::ConnId;
use super::driver::{ACCEPT_BACKOFF, Driver, OutOfFdsWarning, Sink};
use super::waker::{EventFd, WorkerWaker};
use bufring::BufRing;
pub use probe::{Unsupported, probe};
use send::SendBuf;

const RING_ENTRIES: u32 = 4096;
const ACCEPT: u64 = u64::MAX;
const WAKE: u64 = u64::MAX - 1;
const CANCEL: u64 = u64::MAX - 2;
/// Marks a receive's `user_data` (`recv_key`); the constants above have bit 63 set and
/// send keys are small slab indices, so neither has it alone.
const RECV: u64 = 1 << 62;
/// Low bits of a generation in a receive's `user_data`.
const RECV_GENERATION_MASK: u32 = 0xFF_FFFF;
/// Sequence numbers of a connection's receive arms wrap at this (a cancelled receive's
/// last CQE arrives long before 64 more arms).
const RECV_SEQ_MASK: u8 = 63;
/// The buffer group of the worker's ring (one ring per io_uring, so any id does).
const GROUP: u16 = 0;
/// How long `detach` and `Drop` wait for the kernel to finish with a socket's operations.
const SETTLE: Duration = Duration::from_secs(1);
/// Send buffers kept for reuse.
const SEND_POOL: usize = 1024;
/// CQEs copied out of the ring per batch.
const BATCH: usize = 1024;

/// The `user_data` of `id`'s receive number `seq`.
fn recv_key(id: ConnId, seq: u8) -> u64 {
    RECV | (u64::from(seq & RECV_SEQ_MASK) << 56)
        | (u64::from(id.generation & RECV_GENERATION_MASK) << 32)
        | u64::from(id.slot)
}

/// A receive's (slot, generation low bits, sequence number), if `user_data` names one.
fn recv_of(user_data: u64) -> Option<(u32, u32, u8)> {
    (user_data & (1 << 63) == 0 && user_data & RECV != 0).then_some((
        user_data as u32,
        (user_data >> 32) as u32 & RECV_GENERATION_MASK,
        (user_data >> 56) as u8 & RECV_SEQ_MASK,
    ))
}

/// A CQE copied out of the ring.
#[derive(Clone, Copy)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

#[derive(Default)]
struct Slot {
    stream: Option<TcpStream>,
    generation: u32,
    /// The armed multishot receive, if any: its sequence number (`recv_key`).
    recv: Option<u8>,
    /// The last receive's sequence number.
    recv_seq: u8,
    /// The send in flight, if any.
    send: Option<u32>,
    /// `Sink::data` said stop; reads wait for `resume_read`.
    paused: bool,
    /// `write` took less than offered while a send was in flight: report `writable`.
    want_writable: bool,
    /// `shutdown_write` waits for the send in flight.
    shut_pending: bool,
    /// A send failed: further writes fail.
    broken: bool,
    /// End of stream or an error seen while paused: reported after `held`.
    ended: bool,
    /// Bytes received while paused, delivered first on resume.
    held: Held,
}

// An idle connection costs its `Conn` in the worker and this, nothing else here.
const _: () = assert!(size_of::<Slot>() <= 32);

/// Bytes received while paused: nothing (a null pointer) for almost every connection.
/// Boxed on purpose: 8 bytes in every slot instead of a `Vec`'s 24.
#[derive(Default)]
#[allow(clippy::box_collection)]
struct Held(Option<Box<Vec<u8>>>);

impl Held {
    fn is_empty(&self) -> bool {
        self.0.as_ref().is_none_or(|v| v.is_empty())
    }

    fn len(&self) -> usize {
        self.0.as_ref().map_or(0, |v| v.len())
    }

    fn extend(&mut self, data: &[u8]) {
        self.0.get_or_insert_default().extend_from_slice(data);
    }

    fn take(&mut self) -> Vec<u8> {
        self.0.take().map(|b| *b).unwrap_or_default()
    }
}

pub struct Uring {
    ring: IoUring,
    enabled: bool,
    /// Dropped by hand in `Drop`, after the kernel is done with it (or leaked).
    bufs: ManuallyDrop<BufRing>,
    /// Sends in flight.
    ops: Slab<Box<SendBuf>>,
    /// Receives armed whose last CQE has not come yet (the buffer ring must outlive them).
    recvs_in_flight: usize,
    slots: Vec<Slot>,
    listener: Option<TcpListener>,
    accept_armed: bool,
    accept_backoff_until: Option<Instant>,
    out_of_fds: OutOfFdsWarning,
    waker: Arc<EventFd>,
    /// The eventfd read's target: boxed so its address is stable while the read is armed.
    wake_buf: Box<u64>,
    wake_armed: bool,
    /// SQEs that did not fit in the submission queue; pushed first next turn.
    backlog: VecDeque<squeue::Entry>,
    /// Closed sockets whose fds wait until every SQE naming them has been submitted.
    closing: Vec<TcpStream>,
    /// Connections to serve at the start of the next turn (resumed or adopted).
    ready: Vec<ConnId>,
    /// Receives ended by `ENOBUFS`, re-armed at the end of the turn.
    starved: Vec<ConnId>,
    /// CQEs read while detaching, handled at the start of the next turn.
    deferred: VecDeque<Cqe>,
    batch: Vec<Cqe>,
    /// Boxed: a `SendBuf`'s `msghdr` points into itself, so it must not move.
    #[allow(clippy::vec_box)]
    send_pool: Vec<Box<SendBuf>>,
    /// Refused connections lingering with their answer.
    refused: refuse::Refused,
}

impl Uring {
    /// A driver for `listener`, or `Unsupported` (as an `io::Error`) naming what the
    /// kernel lacks.
    pub fn new(listener: TcpListener) -> io::Result<Uring> {
        let ring = probe::build(RING_ENTRIES)?;
        let bufs = BufRing::new(&ring, GROUP, BufRing::count_from_env()).map_err(|e| {
            io::Error::from(Unsupported {
                what: "IORING_REGISTER_PBUF_RING (Linux 5.19)",
                error: Some(e),
            })
        })?;
        // The accept waits in the kernel; the socket itself may block.
        listener.set_nonblocking(false)?;
        Ok(Uring {
            ring,
            enabled: false,
            bufs: ManuallyDrop::new(bufs),
            ops: Slab::new(),
            recvs_in_flight: 0,
            slots: Vec::new(),
            listener: Some(listener),
            accept_armed: false,
            accept_backoff_until: None,
            out_of_fds: OutOfFdsWarning::default(),
            waker: Arc::new(EventFd::new()?),
            wake_buf: Box::new(0),
            wake_armed: false,
            backlog: VecDeque::new(),
            closing: Vec::new(),
            ready: Vec::new(),
            starved: Vec::new(),
            deferred: VecDeque::new(),
            batch: Vec::with_capacity(BATCH),
            send_pool: Vec::new(),
            refused: refuse::Refused::default(),
        })
    }

    /// A handle other threads use to wake this worker (`Sink::woken`).
    pub fn waker(&self) -> WorkerWaker {
        WorkerWaker::EventFd(Arc::clone(&self.waker))
    }

    /// Enables the ring on the thread that will own it, and arms accept and wake-up.
    fn start(&mut self) -> io::Result<()> {
        if self.enabled {
            return Ok(());
        }
        self.ring.submitter().register_enable_rings()?;
        self.enabled = true;
        self.arm_accept();
        self.arm_wake();
        Ok(())
    }

    /// Queues `sqe` for the next submission.
    ///
    /// Every SQE built in this module points only at memory that outlives its operation:
    /// a `SendBuf` held in `ops` until the last CQE, the buffer ring, or `wake_buf`
    /// (freed only after `Drop` has seen every operation end).
    fn push(&mut self, sqe: squeue::Entry) {
        if self.backlog.is_empty() {
            // SAFETY: see above: the entry's pointers stay valid until its completion.
            if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                return;
            }
            // Full: hand the queue to the kernel now to make room.
            if self.enabled && self.ring.submit().is_ok() {
                // SAFETY: as above.
                if unsafe { self.ring.submission().push(&sqe) }.is_ok() {
                    return;
                }
            }
        }
        self.backlog.push_back(sqe);
    }

    /// Moves backlogged SQEs into the submission queue as far as they fit.
    fn push_backlog(&mut self) {
        while let Some(sqe) = self.backlog.front() {
            // SAFETY: as in `push`.
            if unsafe { self.ring.submission().push(sqe) }.is_err() {
                return;
            }
            self.backlog.pop_front();
        }
    }

    fn arm_accept(&mut self) {
        let Some(listener) = self.listener.as_ref() else {
            return;
        };
        if self.accept_armed {
            return;
        }
        let sqe = opcode::AcceptMulti::new(Fd(listener.as_raw_fd()))
            .flags(libc::SOCK_CLOEXEC)
            .build()
            .user_data(ACCEPT);
        self.accept_armed = true;
        self.push(sqe);
    }

    fn arm_wake(&mut self) {
        let buf: *mut u64 = &mut *self.wake_buf;
        let sqe = opcode::Read::new(Fd(self.waker.raw()), buf.cast(), 8)
            .build()
            .user_data(WAKE);
        self.wake_armed = true;
        self.push(sqe);
    }

    fn cancel(&mut self, user_data: u64) {
        let sqe = opcode::AsyncCancel::new(user_data)
            .build()
            .user_data(CANCEL);
        self.push(sqe);
    }

    /// The slot of `id` if it is live (same generation, socket still here).
    fn live(&mut self, id: ConnId) -> Option<&mut Slot> {
        let slot = self.slots.get_mut(id.slot as usize)?;
        (slot.generation == id.generation && slot.stream.is_some()).then_some(slot)
    }

    fn arm_recv(&mut self, id: ConnId) {
        let group = self.bufs.group();
        let Some(slot) = self.live(id) else {
            return;
        };
        if slot.recv.is_some() || slot.paused {
            return;
        }
        let Some(fd) = slot.stream.as_ref().map(|s| s.as_raw_fd()) else {
            return;
        };
        let seq = slot.recv_seq.wrapping_add(1) & RECV_SEQ_MASK;
        slot.recv_seq = seq;
        slot.recv = Some(seq);
        self.recvs_in_flight += 1;
        let sqe = opcode::RecvMulti::new(Fd(fd), group)
            .build()
            .user_data(recv_key(id, seq));
        self.push(sqe);
    }

    /// Serves `stream` as `id` and starts receiving.
    fn register(&mut self, id: ConnId, stream: TcpStream) {
        let index = id.slot as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
        }
        self.slots[index] = Slot {
            stream: Some(stream),
            generation: id.generation,
            ..Slot::default()
        };
        self.arm_recv(id);
    }

    fn admit(&mut self, stream: TcpStream, sink: &mut impl Sink) {
        let Ok(peer) = stream.peer_addr() else {
            return; // already gone
        };
        let Some(id) = sink.accepted(peer) else {
            self.refused.refuse(stream, sink.refusal());
            return;
        };
        let _ = stream.set_nodelay(true);
        self.register(id, stream);
    }

    fn back_off_accepting(&mut self, e: &io::Error) {
        let now = Instant::now();
        self.accept_backoff_until = Some(now + ACCEPT_BACKOFF);
        self.out_of_fds.warn(e, now);
    }

    /// Submits what is queued and waits up to `timeout` for a completion.
    fn enter(&mut self, timeout: Option<Duration>) -> io::Result<()> {
        self.push_backlog();
        let result = match timeout {
            None => self.ring.submitter().submit_and_wait(1),
            Some(t) => {
                let ts = Timespec::from(t);
                let args = SubmitArgs::new().timespec(&ts);
                self.ring.submitter().submit_with_args(1, &args)
            }
        };
        match result {
            Ok(_) => {}
            Err(e) => match e.raw_os_error() {
                Some(libc::ETIME | libc::EINTR | libc::EBUSY | libc::EAGAIN) => {}
                _ => return Err(e),
            },
        }
        if self.backlog.is_empty() && self.ring.submission().is_empty() {
            // Every SQE naming a closed socket's fd has reached the kernel.
            self.closing.clear();
        }
        Ok(())
    }

    /// Copies up to `BATCH` CQEs out of the ring into `self.batch`.
    fn fill_batch(&mut self) {
        self.batch.clear();
        let mut cq = self.ring.completion();
        cq.sync();
        for cqe in &mut cq {
            self.batch.push(Cqe {
                user_data: cqe.user_data(),
                res: cqe.result(),
                flags: cqe.flags(),
            });
            if self.batch.len() == BATCH {
                break;
            }
        }
    }

    /// Handles every CQE the ring holds.
    fn reap(&mut self, sink: &mut impl Sink) {
        loop {
            self.fill_batch();
            if self.batch.is_empty() {
                return;
            }
            let batch = std::mem::take(&mut self.batch);
            for &cqe in &batch {
                self.complete(cqe, sink);
            }
            self.batch = batch;
        }
    }

    fn complete(&mut self, cqe: Cqe, sink: &mut impl Sink) {
        match cqe.user_data {
            ACCEPT => self.accepted(cqe, sink),
            WAKE => {
                self.wake_armed = false;
                sink.woken();
                self.arm_wake();
            }
            CANCEL => {}
            key => match recv_of(key) {
                Some(recv) => self.received(recv, cqe, sink),
                None if self.ops.contains(key as usize) => self.sent(key as usize, cqe, sink),
                None => tracing::error!(key, "io_uring completion for an unknown operation"),
            },
        }
    }

    fn accepted(&mut self, cqe: Cqe, sink: &mut impl Sink) {
        if cqe.res >= 0 {
            // SAFETY: a successful accept CQE carries a new fd that nothing else owns.
            let stream = unsafe { TcpStream::from_raw_fd(cqe.res) };
            if self.listener.is_some() {
                self.admit(stream, sink);
            }
        } else {
            let e = io::Error::from_raw_os_error(-cqe.res);
            match -cqe.res {
                libc::ECANCELED => {}
                libc::EMFILE | libc::ENFILE | libc::ENOBUFS | libc::ENOMEM => {
                    self.back_off_accepting(&e)
                }
                // ECONNABORTED and friends concern one connection only.
                _ => tracing::debug!(error = %e, "accept failed"),
            }
        }
        if !cqueue::more(cqe.flags) {
            self.accept_armed = false;
            if self.accept_backoff_until.is_none() {
                self.arm_accept();
            }
        }
    }

    /// The connection a receive's CQE is for, if that receive is still its armed one.
    fn receiver(&self, (slot, generation, seq): (u32, u32, u8)) -> Option<ConnId> {
        let s = self.slots.get(slot as usize)?;
        (s.generation & RECV_GENERATION_MASK == generation && s.recv == Some(seq)).then_some(
            ConnId {
                slot,
                generation: s.generation,
            },
        )
    }

    fn received(&mut self, recv: (u32, u32, u8), cqe: Cqe, sink: &mut impl Sink) {
        let more = cqueue::more(cqe.flags);
        let current = self.receiver(recv);
        if !more {
            self.recvs_in_flight = self.recvs_in_flight.saturating_sub(1);
        }
        if cqe.res > 0
            && let Some(bid) = cqueue::buffer_select(cqe.flags)
        {
            // SAFETY: the CQE lends us `bid`; the slice is dropped before `give_back`.
            let data = unsafe { self.bufs.lend(bid, cqe.res as usize) };
            if let Some(id) = current
                && let Some(slot) = self.slots.get_mut(id.slot as usize)
            {
                if slot.paused || !slot.held.is_empty() {
                    slot.held.extend(data);
                } else if !sink.data(id, data) {
                    self.pause(id);
                }
            }
            self.bufs.give_back(bid);
        }
        if more {
            return;
        }
        let Some(id) = current else {
            return; // closed, detached or re-armed meanwhile
        };
        let Some(slot) = self.live(id) else {
            return;
        };
        slot.recv = None;
        match cqe.res {
            r if r > 0 => self.arm_recv(id),
            r if r == -libc::ENOBUFS => {
                tracing::debug!(?id, "buffer ring empty: receive re-armed after the turn");
                self.starved.push(id)
            }
            r if r == -libc::ECANCELED => self.arm_recv(id), // (a no-op while paused)
            // 0: end of stream; else an error (ECONNRESET, ...).
            r => {
                tracing::debug!(?id, res = r, "receive ended");
                if slot.paused {
                    slot.ended = true;
                } else {
                    sink.hangup(id);
                }
            }
        }
    }

    /// Stops reading `id` until `resume_read`.
    fn pause(&mut self, id: ConnId) {
        let Some(slot) = self.live(id) else {
            return;
        };
        slot.paused = true;
        if let Some(seq) = slot.recv {
            self.cancel(recv_key(id, seq));
        }
    }

    fn sent(&mut self, key: usize, cqe: Cqe, sink: &mut impl Sink) {
        let Some(buf) = self.ops.get_mut(key) else {
            return;
        };
        let id = buf.conn;
        let current = self
            .slots
            .get(id.slot as usize)
            .is_some_and(|s| s.generation == id.generation && s.send == Some(key as u32));
        let fd = self
            .slots
            .get(id.slot as usize)
            .and_then(|s| s.stream.as_ref())
            .map(|s| s.as_raw_fd());
        if current
            && cqe.res > 0
            && (cqe.res as usize) < buf.left()
            && let Some(fd) = fd
        {
            // Short send: the rest goes out next, still owned by this op.
            buf.advance(cqe.res as usize);
            let sqe = buf.sqe(fd).user_data(key as u64);
            self.push(sqe);
            return;
        }
        let all_sent = cqe.res >= 0 && cqe.res as usize == buf.left();
        let mut buf = self.ops.remove(key);
        buf.clear();
        if self.send_pool.len() < SEND_POOL {
            self.send_pool.push(buf);
        }
        if !current {
            return; // closed meanwhile: the frames were the driver's to drop
        }
        let Some(slot) = self.live(id) else {
            return;
        };
        slot.send = None;
        if !all_sent {
            tracing::debug!(?id, res = cqe.res, "send failed");
            slot.broken = true;
            return sink.hangup(id);
        }
        if std::mem::take(&mut slot.shut_pending)
            && let Some(stream) = slot.stream.as_ref()
        {
            let _ = stream.shutdown(Shutdown::Write);
        }
        if std::mem::take(&mut slot.want_writable) {
            sink.writable(id);
        }
    }

    /// Delivers what resumed connections held, re-arms their receives, serves adoptions.
    fn serve_ready(&mut self, sink: &mut impl Sink) {
        for id in std::mem::take(&mut self.ready) {
            let Some(slot) = self.live(id) else {
                continue;
            };
            if slot.paused {
                continue;
            }
            if !slot.held.is_empty() {
                let mut held = slot.held.take();
                if !sink.data(id, &mut held) {
                    self.pause(id);
                    continue;
                }
            }
            let Some(slot) = self.live(id) else {
                continue;
            };
            if std::mem::take(&mut slot.ended) {
                sink.hangup(id);
                continue;
            }
            self.arm_recv(id);
        }
    }
}

impl Driver for Uring {
    fn turn(&mut self, timeout: Option<Duration>, sink: &mut impl Sink) -> io::Result<()> {
        self.start()?;
        while let Some(cqe) = self.deferred.pop_front() {
            self.complete(cqe, sink);
        }
        self.serve_ready(sink);
        let mut timeout = timeout;
        if !self.ready.is_empty() || !self.backlog.is_empty() {
            timeout = Some(Duration::ZERO);
        }
        if let Some(until) = self.accept_backoff_until {
            let left = until.saturating_duration_since(Instant::now());
            if left.is_zero() {
                self.accept_backoff_until = None;
                self.arm_accept();
            } else {
                timeout = Some(timeout.map_or(left, |t| t.min(left)));
            }
        }
        self.enter(timeout)?;
        self.reap(sink);
        self.refused.expire();
        // This turn's buffers are back in the ring: receives it starved can run again.
        for id in std::mem::take(&mut self.starved) {
            self.arm_recv(id);
        }
        Ok(())
    }

    fn write(&mut self, conn: ConnId, bufs: &[Bytes]) -> io::Result<usize> {
        let key = self.ops.vacant_key();
        let mut buf = self.send_pool.pop().unwrap_or_else(SendBuf::new);
        let Some(slot) = self.live(conn) else {
            self.send_pool.push(buf);
            return Err(io::ErrorKind::NotConnected.into());
        };
        if slot.broken {
            self.send_pool.push(buf);
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if slot.send.is_some() {
            slot.want_writable = true;
            self.send_pool.push(buf);
            return Ok(0);
        }
        let taken = buf.fill(conn, bufs);
        if taken == 0 {
            self.send_pool.push(buf);
            return Ok(0);
        }
        let offered: usize = bufs.iter().map(|b| b.len()).sum();
        if taken < offered {
            slot.want_writable = true;
        }
        let Some(fd) = slot.stream.as_ref().map(|s| s.as_raw_fd()) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        slot.send = Some(key as u32);
        let sqe = buf.sqe(fd).user_data(key as u64);
        // The box moves into `ops`; its heap address (what the SQE points at) does not.
        self.ops.insert(buf);
        self.push(sqe);
        Ok(taken)
    }

    fn shutdown_write(&mut self, conn: ConnId) {
        let Some(slot) = self.live(conn) else {
            return;
        };
        if slot.send.is_some() {
            slot.shut_pending = true;
        } else if let Some(stream) = slot.stream.as_ref() {
            let _ = stream.shutdown(Shutdown::Write);
        }
    }

    fn close(&mut self, conn: ConnId) {
        let Some(slot) = self.live(conn) else {
            return;
        };
        tracing::debug!(
            ?conn,
            held = slot.held.len(),
            paused = slot.paused,
            recv = slot.recv.is_some(),
            send = slot.send.is_some(),
            "close"
        );
        let ops = [
            slot.recv.take().map(|seq| recv_key(conn, seq)),
            slot.send.take().map(u64::from),
        ];
        let stream = slot.stream.take();
        slot.held = Held::default();
        for key in ops.into_iter().flatten() {
            self.cancel(key);
        }
        self.closing.extend(stream);
    }

    fn resume_read(&mut self, conn: ConnId) {
        if let Some(slot) = self.live(conn) {
            slot.paused = false;
            self.ready.push(conn);
        }
    }

    fn detach(&mut self, conn: ConnId, unread: &mut Vec<u8>) -> Option<TcpStream> {
        self.take_out(conn, unread)
    }

    fn adopt(&mut self, conn: ConnId, stream: TcpStream) -> io::Result<()> {
        stream.set_nonblocking(false)?;
        self.register(conn, stream);
        Ok(())
    }

    fn stop_accepting(&mut self) {
        let Some(listener) = self.listener.take() else {
            return;
        };
        self.accept_backoff_until = None;
        if self.accept_armed && self.enabled {
            let _ = self.ring.submit();
            let _ = self.ring.submitter().register_sync_cancel(
                Some(Timespec::from(SETTLE)),
                CancelBuilder::user_data(ACCEPT),
            );
        }
        // The fd closes once every SQE naming it has been submitted.
        self.closing
            .push(TcpStream::from(std::os::fd::OwnedFd::from(listener)));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_receive_names_its_connection_and_arm_and_nothing_else() {
        let id = ConnId {
            slot: 12_345,
            generation: 0x0123_4567,
        };
        for seq in [0, 1, RECV_SEQ_MASK] {
            let key = recv_key(id, seq);
            assert_eq!(
                recv_of(key),
                Some((id.slot, id.generation & RECV_GENERATION_MASK, seq))
            );
        }
        assert_ne!(recv_key(id, 1), recv_key(id, 2), "arms differ");
        for other in [ACCEPT, WAKE, CANCEL, 0, 1, 4095, u64::from(u32::MAX)] {
            assert_eq!(recv_of(other), None, "{other:#x}");
        }
    }
}
