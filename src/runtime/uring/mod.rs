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
//!   buffer in `held`, rare and small) and delivered on `resume_read`, which also
//!   re-arms. End-of-stream seen while paused is reported after the held bytes.
//! - **Send**: `write` takes up to `send::MAX_IN_FLIGHT` bytes as one `SENDMSG` (every
//!   queued frame in one vectored send, `MSG_WAITALL` so that the kernel finishes a short
//!   send itself) and says how much it took; while a send is in flight it takes nothing.
//!   The driver owns the frames (`Bytes` clones) until the CQE, even if the connection is
//!   closed by then. The send's completion reports `writable` if `write` took less than
//!   offered meanwhile.
//! - **Batching**: SQEs are pushed during the worker's flush and submitted by the next
//!   `turn`, one `io_uring_enter` per loop turn that also waits (`EXT_ARG` timeout).
//! - **Close**: the connection's operations are cancelled (one `ASYNC_CANCEL` matching
//!   every operation on its fd); its fd is closed only after the SQEs that name it have
//!   been submitted (so a recycled fd number never receives an operation meant for the
//!   old socket, and the cancel finds the socket it means). Buffers stay with their
//!   operations until the last CQE.
//! - **Detach**: the socket is taken out of the ring before it is handed over: the send
//!   in flight is waited for, the receive is cancelled synchronously
//!   (`IORING_REGISTER_SYNC_CANCEL`), and bytes it had read are given to the caller.
//! - **Per connection**: a `Slot` in `slots` (socket and generation, 8 bytes, as in
//!   epoll) and a `State` at the same index in `states` (2 bytes: the receive's arm and
//!   sequence number, and flags). Rare state lives in side tables keyed by slot, with an
//!   entry only while it is needed: `held` (bytes received while paused). The send in
//!   flight needs no table: its `ops` entry names its connection, and a connection has at
//!   most one (`Flag::SENDING`); a `ConnId` names one connection only (the worker gives
//!   each accept and adoption a fresh generation), so the entry naming a live connection
//!   that is sending is its send in flight, and entries of a closed one name nobody live.
//! - `user_data` is a receive's own name (`RECV` set: the connection's slot, the low bits
//!   of its generation and the arm's sequence number, so an idle connection needs no
//!   entry anywhere but its `Slot` and `State`), an index into `ops` (sends), or one of
//!   three constants (bit 63 set). Each op ends with a CQE without `IORING_CQE_F_MORE`;
//!   only then is a send's entry freed, and a receive counted out of `recvs_in_flight`.
//!
//! The ring is set up `SINGLE_ISSUER | DEFER_TASKRUN` and disabled until the first
//! `turn`, which runs on the worker thread that then owns it.
//!
//! Opt-in options (`tuning.rs`, off by default: they did not pay where measured, see
//! `docs/uring.md`): SQPOLL (then without `DEFER_TASKRUN`); registered files (a socket sits
//! in the table at its fd, `Flag::FIXED`, and SQEs name it by `Sock::Fixed`; cancels still
//! go by fd, which matches the same file); zero-copy sends (see `send.rs`: such a send is
//! *released* at its result CQE and its `ops` entry kept until the notification, so a
//! connection may have released entries besides its one send in flight).

mod bufring;
mod probe;
mod refuse;
mod send;
mod settle;
mod tuning;

use std::collections::{HashMap, VecDeque};
use std::io;
use std::mem::ManuallyDrop;
use std::net::{Shutdown, TcpListener, TcpStream};
use std::os::fd::{AsRawFd, FromRawFd, RawFd};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::Bytes;
use io_uring::types::{CancelBuilder, Fd, Fixed, SubmitArgs, Timespec};
use io_uring::{IoUring, cqueue, opcode, squeue};
use slab::Slab;

use super::conn_id::ConnId;
use super::driver::{ACCEPT_BACKOFF, Driver, OutOfFdsWarning, Sink};
use super::waker::{EventFd, WorkerWaker};
use bufring::BufRing;
pub use probe::{Unsupported, probe};
use send::SendBuf;
pub use tuning::{BadTuning, Tuning};

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

/// Where a send stands after one of its CQEs.
enum SendStep {
    /// More CQEs will come: a short send continued.
    Waiting,
    /// The send has ended for its connection. Its entry is freed, or, for a zero-copy
    /// send, released (waiting for the kernel's notification).
    Ended { all_sent: bool },
    /// A released zero-copy send's notification: nothing for the connection.
    Released,
}

/// A CQE copied out of the ring.
#[derive(Clone, Copy)]
struct Cqe {
    user_data: u64,
    res: i32,
    flags: u32,
}

/// A connection's socket and generation: all that `slots` holds per connection.
#[derive(Default)]
struct Slot {
    stream: Option<TcpStream>,
    generation: u32,
}

/// The rest of a connection's state, at its slot's index in `states`: the sequence number
/// of its last receive arm (bits 0-5, see `recv_key`) and the `Flag`s.
#[derive(Clone, Copy, Default)]
struct State(u16);

/// One bit of a `State`.
#[derive(Clone, Copy)]
struct Flag(u16);

impl Flag {
    /// The receive numbered by the sequence number is armed (its last CQE not yet seen).
    const RECV: Flag = Flag(1 << 6);
    /// A send is in flight: the one `ops` entry that names this connection.
    const SENDING: Flag = Flag(1 << 7);
    /// `Sink::data` said stop; reads wait for `resume_read`.
    const PAUSED: Flag = Flag(1 << 8);
    /// `write` took less than offered while a send was in flight: report `writable`.
    const WANT_WRITABLE: Flag = Flag(1 << 9);
    /// `shutdown_write` waits for the send in flight.
    const SHUT_PENDING: Flag = Flag(1 << 10);
    /// A send failed: further writes fail.
    const BROKEN: Flag = Flag(1 << 11);
    /// End of stream or an error seen while paused: reported after the held bytes.
    const ENDED: Flag = Flag(1 << 12);
    /// Bytes received while paused wait in `held`, to be delivered first on resume.
    const HELD: Flag = Flag(1 << 13);
    /// The socket is in the registered file table, at its fd (`THRONG_URING_FIXED_FILES`).
    const FIXED: Flag = Flag(1 << 14);
}

/// Where an SQE finds a connection's socket: its fd, or its entry in the registered file
/// table.
#[derive(Clone, Copy)]
pub(crate) enum Sock {
    Fd(RawFd),
    Fixed(u32),
}

impl State {
    /// The bits of the last arm's sequence number.
    const SEQ: u16 = RECV_SEQ_MASK as u16;

    fn get(self, flag: Flag) -> bool {
        self.0 & flag.0 != 0
    }

    fn set(&mut self, flag: Flag, on: bool) {
        if on {
            self.0 |= flag.0;
        } else {
            self.0 &= !flag.0;
        }
    }

    /// Clears `flag`; returns whether it was set.
    fn take(&mut self, flag: Flag) -> bool {
        let was = self.get(flag);
        self.set(flag, false);
        was
    }

    /// The armed receive's sequence number, if one is armed.
    fn recv(self) -> Option<u8> {
        self.get(Flag::RECV).then_some((self.0 & Self::SEQ) as u8)
    }

    /// Numbers the next receive arm and marks it armed; returns its sequence number.
    fn arm_recv(&mut self) -> u8 {
        let seq = ((self.0 & Self::SEQ) as u8).wrapping_add(1) & RECV_SEQ_MASK;
        self.0 = (self.0 & !Self::SEQ) | u16::from(seq) | Flag::RECV.0;
        seq
    }

    /// Marks the receive ended (its last CQE seen, or abandoned); returns its sequence
    /// number if it was armed.
    fn take_recv(&mut self) -> Option<u8> {
        let recv = self.recv();
        self.set(Flag::RECV, false);
        recv
    }
}

// An idle connection costs its `Conn` in the worker and these two, nothing else here.
const _: () = assert!(size_of::<Slot>() <= 8);
const _: () = assert!(size_of::<State>() <= 2);
// The sequence number stays below the flags.
const _: () = assert!(State::SEQ < Flag::RECV.0);

/// Bytes received while paused, by slot: an entry only for a connection that has some
/// (its `Flag::HELD` set), rare and small.
#[derive(Default)]
struct Held(HashMap<u32, Vec<u8>>);

impl Held {
    fn extend(&mut self, slot: u32, state: &mut State, data: &[u8]) {
        state.set(Flag::HELD, true);
        self.0.entry(slot).or_default().extend_from_slice(data);
    }

    /// The bytes `slot` holds (none if its `Flag::HELD` is clear), its entry removed.
    fn take(&mut self, slot: u32, state: &mut State) -> Vec<u8> {
        if !state.take(Flag::HELD) {
            return Vec::new();
        }
        self.0.remove(&slot).unwrap_or_default()
    }

    fn len(&self, slot: u32, state: State) -> usize {
        if !state.get(Flag::HELD) {
            return 0;
        }
        self.0.get(&slot).map_or(0, Vec::len)
    }
}

pub struct Uring {
    ring: IoUring,
    enabled: bool,
    tuning: Tuning,
    /// Entries of the registered file table (0: none); a socket whose fd is below this
    /// is registered at its fd.
    fixed_files: u32,
    /// Zero-copy sends the kernel notified, and those it copied after all.
    zc_sends: u64,
    zc_copied: u64,
    /// Dropped by hand in `Drop`, after the kernel is done with it (or leaked).
    bufs: ManuallyDrop<BufRing>,
    /// Sends in flight.
    ops: Slab<Box<SendBuf>>,
    /// Receives armed whose last CQE has not come yet (the buffer ring must outlive them).
    recvs_in_flight: usize,
    slots: Vec<Slot>,
    /// One per slot, at the same index (the two grow together in `register`).
    states: Vec<State>,
    /// Bytes received while paused, of live connections only.
    held: Held,
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
        Uring::with_tuning(listener, Tuning::from_env()?)
    }

    /// A driver for `listener` tuned by `tuning`.
    pub fn with_tuning(listener: TcpListener, tuning: Tuning) -> io::Result<Uring> {
        let ring = probe::build(RING_ENTRIES, &tuning)?;
        let bufs = BufRing::new(&ring, GROUP, tuning.buffers).map_err(|e| {
            io::Error::from(Unsupported {
                what: "IORING_REGISTER_PBUF_RING (Linux 5.19)",
                error: Some(e),
            })
        })?;
        let mut fixed_files = 0;
        if tuning.fixed_files {
            // The kernel refuses a table larger than the open-file limit.
            let limit = crate::runtime::system::fd_limit().unwrap_or(1024);
            fixed_files = tuning::FIXED_FILES_MAX.min(limit.min(u64::from(u32::MAX)) as u32);
            ring.submitter()
                .register_files_sparse(fixed_files)
                .map_err(|e| {
                    io::Error::from(Unsupported {
                        what: probe::FIXED_FILES,
                        error: Some(e),
                    })
                })?;
        }
        // The accept waits in the kernel; the socket itself may block.
        listener.set_nonblocking(false)?;
        Ok(Uring {
            ring,
            enabled: false,
            tuning,
            fixed_files,
            zc_sends: 0,
            zc_copied: 0,
            bufs: ManuallyDrop::new(bufs),
            ops: Slab::new(),
            recvs_in_flight: 0,
            slots: Vec::new(),
            states: Vec::new(),
            held: Held::default(),
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

    /// Cancels every operation on `fd` (kernel 5.19, implied by `DEFER_TASKRUN`).
    fn cancel_fd(&mut self, fd: RawFd) {
        let sqe = opcode::AsyncCancel2::new(CancelBuilder::fd(Fd(fd)).all())
            .build()
            .user_data(CANCEL);
        self.push(sqe);
    }

    /// The index of `id`'s slot (in `slots` and `states`) and its socket's fd, if `id`
    /// is live (same generation, socket still here).
    fn live(&self, id: ConnId) -> Option<(usize, RawFd)> {
        let i = id.slot as usize;
        let slot = self.slots.get(i)?;
        if slot.generation != id.generation {
            return None;
        }
        Some((i, slot.stream.as_ref()?.as_raw_fd()))
    }

    /// How SQEs name the socket of the connection at index `i`, whose fd is `fd`.
    fn sock(&self, i: usize, fd: RawFd) -> Sock {
        if self.states[i].get(Flag::FIXED) {
            Sock::Fixed(fd as u32)
        } else {
            Sock::Fd(fd)
        }
    }

    fn arm_recv(&mut self, id: ConnId) {
        let group = self.bufs.group();
        let Some((i, fd)) = self.live(id) else {
            return;
        };
        let sock = self.sock(i, fd);
        let state = &mut self.states[i];
        if state.recv().is_some() || state.get(Flag::PAUSED) {
            return;
        }
        let seq = state.arm_recv();
        self.recvs_in_flight += 1;
        let sqe = match sock {
            Sock::Fd(fd) => opcode::RecvMulti::new(Fd(fd), group).build(),
            Sock::Fixed(index) => opcode::RecvMulti::new(Fixed(index), group).build(),
        };
        self.push(sqe.user_data(recv_key(id, seq)));
    }

    /// Puts the socket at index `i` into the registered file table, at its fd, if there
    /// is a table and the fd fits in it.
    fn fix(&mut self, i: usize) {
        let Some(fd) = self.slots[i].stream.as_ref().map(AsRawFd::as_raw_fd) else {
            return;
        };
        if (fd as u32) >= self.fixed_files {
            return;
        }
        match self
            .ring
            .submitter()
            .register_files_update(fd as u32, &[fd])
        {
            Ok(_) => self.states[i].set(Flag::FIXED, true),
            Err(e) => tracing::debug!(fd, error = %e, "socket not registered: using its fd"),
        }
    }

    /// Takes the socket at index `i` out of the registered file table. Operations in
    /// flight keep the file until they end; SQEs not yet submitted that name the entry
    /// fail with `EBADF`, and the entry is not reused before they are submitted: it is
    /// the socket's fd, which stays open until then (`closing`).
    fn unfix(&mut self, i: usize, fd: RawFd) {
        if self.states[i].take(Flag::FIXED)
            && let Err(e) = self
                .ring
                .submitter()
                .register_files_update(fd as u32, &[-1])
        {
            tracing::warn!(fd, error = %e, "cannot take a socket out of the file table");
        }
    }

    /// Takes live `id`'s socket out of the ring's hands for closing: out of the file
    /// table, and set to reset on close if the kernel may still read frames sent to it
    /// zero-copy. Those stay pinned until the peer acknowledges them, which a peer that
    /// stopped reading never does, and the ring (with `SQPOLL`, the process) cannot end
    /// before they are released; a reset drops what the socket still queues.
    fn let_go(&mut self, id: ConnId) -> Option<TcpStream> {
        let i = id.slot as usize;
        let stream = self.slots[i].stream.take()?;
        if self.tuning.send_zc_min.is_some() && self.frames_pinned(id) {
            let _ = socket2::SockRef::from(&stream).set_linger(Some(Duration::ZERO));
        }
        self.unfix(i, stream.as_raw_fd());
        Some(stream)
    }

    /// Serves `stream` as `id` and starts receiving.
    fn register(&mut self, id: ConnId, stream: TcpStream) {
        let index = id.slot as usize;
        if self.slots.len() <= index {
            self.slots.resize_with(index + 1, Slot::default);
            self.states.resize(index + 1, State::default());
        }
        // A slot is reused only after `close` or `detach`, which leave nothing in `held`;
        // this makes sure.
        drop(self.held.take(id.slot, &mut self.states[index]));
        self.slots[index] = Slot {
            stream: Some(stream),
            generation: id.generation,
        };
        self.states[index] = State::default();
        self.fix(index);
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
        let state = self.states[slot as usize];
        (s.generation & RECV_GENERATION_MASK == generation && state.recv() == Some(seq)).then_some(
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
            if let Some(id) = current {
                let state = &mut self.states[id.slot as usize];
                if state.get(Flag::PAUSED) || state.get(Flag::HELD) {
                    self.held.extend(id.slot, state, data);
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
        let Some((i, _)) = self.live(id) else {
            return;
        };
        let state = &mut self.states[i];
        state.take_recv();
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
                if state.get(Flag::PAUSED) {
                    state.set(Flag::ENDED, true);
                } else {
                    sink.hangup(id);
                }
            }
        }
    }

    /// Stops reading `id` until `resume_read`.
    fn pause(&mut self, id: ConnId) {
        let Some((i, _)) = self.live(id) else {
            return;
        };
        let state = &mut self.states[i];
        state.set(Flag::PAUSED, true);
        if let Some(seq) = state.recv() {
            self.cancel(recv_key(id, seq));
        }
    }

    /// The connection whose send `user_data` names, if it names a send in flight (not a
    /// released zero-copy send).
    fn send_conn(&self, user_data: u64) -> Option<ConnId> {
        if user_data & (1 << 63 | RECV) != 0 {
            return None;
        }
        let buf = self.ops.get(user_data as usize)?;
        (!buf.released).then_some(buf.conn)
    }

    /// Whether the kernel may still read frames sent to `id`: a send in flight, or a
    /// zero-copy send waiting for its notification. O(sends in flight).
    fn frames_pinned(&self, id: ConnId) -> bool {
        self.ops.iter().any(|(_, buf)| buf.conn == id)
    }

    /// The fd of `id` if `id` is live and sending: then the send in flight is the one
    /// `ops` entry that names `id` (see the module doc).
    fn sending(&self, id: ConnId) -> Option<RawFd> {
        let (i, fd) = self.live(id)?;
        self.states[i].get(Flag::SENDING).then_some(fd)
    }

    /// What `cqe` means for the send `key`, to be continued on `sock` if it was short
    /// (`None`: its connection is gone). Frees the send's entry after its last CQE.
    fn send_step(&mut self, key: usize, cqe: Cqe, sock: Option<Sock>) -> SendStep {
        let buf = &mut self.ops[key];
        if buf.released {
            // A zero-copy send's notification: the kernel is done with the frames.
            self.zc_sends += 1;
            if cqueue::notif(cqe.flags) && cqe.res & send::NOTIF_USAGE_ZC_COPIED != 0 {
                self.zc_copied += 1;
                if self.zc_copied == 1 {
                    tracing::info!(
                        "THRONG_URING_SEND_ZC: the kernel copied a zero-copy send after all \
                         (as it does over loopback): zero-copy cannot pay on this route"
                    );
                }
            }
            if !cqueue::more(cqe.flags) {
                self.free_send(key);
            }
            return SendStep::Released;
        }
        let res = cqe.res;
        // A zero-copy send is never short unless it failed (`MSG_WAITALL`, and the
        // kernel holds its frames until the notification, so it cannot be re-sent).
        if !buf.zc
            && let Some(sock) = sock
            && res > 0
            && (res as usize) < buf.left()
        {
            // Short send: the rest goes out next, still owned by this op.
            buf.advance(res as usize);
            let sqe = buf.sqe(sock).user_data(key as u64);
            self.push(sqe);
            return SendStep::Waiting;
        }
        let all_sent = res >= 0 && res as usize == buf.left();
        if cqueue::more(cqe.flags) {
            // A zero-copy send's result: done for its connection; the frames stay until
            // the notification.
            buf.released = true;
        } else {
            self.free_send(key);
        }
        SendStep::Ended { all_sent }
    }

    /// Frees the send `key` after its last CQE (its buffer goes back to the pool).
    fn free_send(&mut self, key: usize) {
        let mut buf = self.ops.remove(key);
        buf.clear();
        if self.send_pool.len() < SEND_POOL {
            self.send_pool.push(buf);
        }
    }

    fn sent(&mut self, key: usize, cqe: Cqe, sink: &mut impl Sink) {
        let Some(id) = self.send_conn(key as u64) else {
            if self.ops.contains(key) {
                self.send_step(key, cqe, None); // a released zero-copy send's notification
            }
            return;
        };
        // `None`: closed (or detached) meanwhile.
        let current = self.sending(id);
        let sock = current.map(|fd| self.sock(id.slot as usize, fd));
        let SendStep::Ended { all_sent } = self.send_step(key, cqe, sock) else {
            return;
        };
        if current.is_none() {
            return; // closed meanwhile: the frames were the driver's to drop
        }
        let i = id.slot as usize;
        let state = &mut self.states[i];
        state.set(Flag::SENDING, false);
        if !all_sent {
            tracing::debug!(?id, res = cqe.res, "send failed");
            state.set(Flag::BROKEN, true);
            return sink.hangup(id);
        }
        if state.take(Flag::SHUT_PENDING)
            && let Some(stream) = self.slots[i].stream.as_ref()
        {
            let _ = stream.shutdown(Shutdown::Write);
        }
        if state.take(Flag::WANT_WRITABLE) {
            sink.writable(id);
        }
    }

    /// Delivers what resumed connections held, re-arms their receives, serves adoptions.
    fn serve_ready(&mut self, sink: &mut impl Sink) {
        for id in std::mem::take(&mut self.ready) {
            let Some((i, _)) = self.live(id) else {
                continue;
            };
            let state = &mut self.states[i];
            if state.get(Flag::PAUSED) {
                continue;
            }
            if state.get(Flag::HELD) {
                let mut held = self.held.take(id.slot, state);
                if !sink.data(id, &mut held) {
                    self.pause(id);
                    continue;
                }
            }
            let Some((i, _)) = self.live(id) else {
                continue;
            };
            if self.states[i].take(Flag::ENDED) {
                sink.hangup(id);
                continue;
            }
            self.arm_recv(id);
        }
    }

    /// Whether every entry of the side tables (`held`) belongs to a live connection whose
    /// `State` says so (`close` and `detach` remove them). O(entries): for debug
    /// assertions.
    fn side_tables_hold_live_connections_only(&self) -> bool {
        self.held.0.iter().all(|(&slot, bytes)| {
            let i = slot as usize;
            !bytes.is_empty()
                && self.slots.get(i).is_some_and(|s| s.stream.is_some())
                && self.states[i].get(Flag::HELD)
        })
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
        let Some((i, fd)) = self.live(conn) else {
            return Err(io::ErrorKind::NotConnected.into());
        };
        let state = &mut self.states[i];
        if state.get(Flag::BROKEN) {
            return Err(io::ErrorKind::BrokenPipe.into());
        }
        if state.get(Flag::SENDING) {
            state.set(Flag::WANT_WRITABLE, true);
            return Ok(0);
        }
        let sock = self.sock(i, fd);
        let mut buf = self.send_pool.pop().unwrap_or_else(SendBuf::new);
        let taken = buf.fill(conn, bufs);
        if taken == 0 {
            self.send_pool.push(buf);
            return Ok(0);
        }
        // Zero-copy only for large pieces: each piece becomes fragments of its own, so
        // many small frames sent zero-copy make many small packets.
        buf.zc = self
            .tuning
            .send_zc_min
            .is_some_and(|min| taken / buf.pieces() >= min);
        let offered: usize = bufs.iter().map(|b| b.len()).sum();
        let state = &mut self.states[i];
        if taken < offered {
            state.set(Flag::WANT_WRITABLE, true);
        }
        state.set(Flag::SENDING, true);
        let key = self.ops.vacant_key();
        let sqe = buf.sqe(sock).user_data(key as u64);
        // The box moves into `ops`; its heap address (what the SQE points at) does not.
        self.ops.insert(buf);
        self.push(sqe);
        Ok(taken)
    }

    fn shutdown_write(&mut self, conn: ConnId) {
        let Some((i, _)) = self.live(conn) else {
            return;
        };
        if self.states[i].get(Flag::SENDING) {
            self.states[i].set(Flag::SHUT_PENDING, true);
        } else if let Some(stream) = self.slots[i].stream.as_ref() {
            let _ = stream.shutdown(Shutdown::Write);
        }
    }

    fn close(&mut self, conn: ConnId) {
        let Some((i, fd)) = self.live(conn) else {
            return;
        };
        let state = &mut self.states[i];
        tracing::debug!(
            ?conn,
            held = self.held.len(conn.slot, *state),
            paused = state.get(Flag::PAUSED),
            recv = state.recv().is_some(),
            send = state.get(Flag::SENDING),
            "close"
        );
        // The send in flight is not looked up: one cancel by fd takes it and the receive.
        let recv = state.take_recv().is_some();
        let send = state.take(Flag::SENDING);
        drop(self.held.take(conn.slot, state));
        if recv || send {
            // By fd even for a registered socket: the kernel matches the file.
            self.cancel_fd(fd);
        }
        let stream = self.let_go(conn);
        self.closing.extend(stream);
        debug_assert!(self.side_tables_hold_live_connections_only());
    }

    fn resume_read(&mut self, conn: ConnId) {
        if let Some((i, _)) = self.live(conn) {
            self.states[i].set(Flag::PAUSED, false);
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

    const FLAGS: [Flag; 7] = [
        Flag::SENDING,
        Flag::PAUSED,
        Flag::WANT_WRITABLE,
        Flag::SHUT_PENDING,
        Flag::BROKEN,
        Flag::ENDED,
        Flag::HELD,
    ];

    #[test]
    fn a_state_numbers_its_arms_apart_from_its_flags() {
        let mut state = State::default();
        assert_eq!(state.recv(), None);
        for flag in FLAGS {
            state.set(flag, true);
        }
        let mut last: u8 = 0;
        for _ in 0..2 * (usize::from(RECV_SEQ_MASK) + 1) {
            let seq = state.arm_recv();
            assert_eq!(seq, last.wrapping_add(1) & RECV_SEQ_MASK);
            assert_eq!(state.recv(), Some(seq));
            assert_eq!(state.take_recv(), Some(seq));
            assert_eq!(state.recv(), None);
            last = seq;
        }
        assert!(FLAGS.iter().all(|&f| state.get(f)), "flags kept");
        for flag in FLAGS {
            assert!(state.take(flag));
            assert!(!state.take(flag));
        }
        assert_eq!(state.0 & !State::SEQ, 0, "only the sequence number left");
    }

    /// Admits every connection and pauses it at its first bytes.
    #[derive(Default)]
    struct Pausing {
        conns: Vec<ConnId>,
        seen: usize,
    }

    impl Sink for Pausing {
        fn accepted(&mut self, _: std::net::SocketAddr) -> Option<ConnId> {
            let id = ConnId {
                slot: self.conns.len() as u32,
                generation: 7,
            };
            self.conns.push(id);
            Some(id)
        }
        fn data(&mut self, _: ConnId, bytes: &mut [u8]) -> bool {
            self.seen += bytes.len();
            false
        }
        fn writable(&mut self, _: ConnId) {}
        fn hangup(&mut self, _: ConnId) {}
        fn woken(&mut self) {}
    }

    /// The byte at offset `n` of what the client sends.
    fn pattern(n: usize) -> u8 {
        (n % 251) as u8
    }

    /// A ring serving one connection whose client keeps sending, run until the connection
    /// holds bytes (received after `Sink::data` said stop); `None` where this kernel
    /// cannot run the driver.
    fn holding() -> Option<(Uring, Pausing, ConnId)> {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let mut ring = match Uring::new(listener) {
            Ok(ring) => ring,
            Err(e) => {
                eprintln!("skipped: {e}");
                return None;
            }
        };
        std::thread::spawn(move || {
            use std::io::Write;
            let mut client = TcpStream::connect(addr).unwrap();
            client.set_write_timeout(Some(SETTLE * 10)).unwrap();
            let chunk: Vec<u8> = (0..251 * 64).map(pattern).collect();
            // Until the server closes or drops the socket.
            while client.write_all(&chunk).is_ok() {}
        });
        let mut sink = Pausing::default();
        for _ in 0..1000 {
            ring.turn(Some(Duration::from_millis(10)), &mut sink)
                .unwrap();
            let Some(&id) = sink.conns.first() else {
                continue;
            };
            let state = ring.states[id.slot as usize];
            if state.get(Flag::HELD) {
                assert!(ring.side_tables_hold_live_connections_only());
                return Some((ring, sink, id));
            }
            if state.get(Flag::PAUSED) && state.recv().is_none() {
                ring.resume_read(id);
            }
        }
        panic!("no bytes held after 1,000 turns");
    }

    fn no_side_table_entries(ring: &Uring) {
        assert!(ring.held.0.is_empty());
        assert!(!ring.states.iter().any(|s| s.get(Flag::HELD)));
    }

    #[test]
    fn held_bytes_go_with_a_closed_connection() {
        let Some((mut ring, mut sink, id)) = holding() else {
            return;
        };
        ring.close(id);
        no_side_table_entries(&ring);
        ring.turn(Some(Duration::ZERO), &mut sink).unwrap();
        no_side_table_entries(&ring);
    }

    #[test]
    fn held_bytes_go_with_a_detached_connection_in_order() {
        let Some((mut ring, sink, id)) = holding() else {
            return;
        };
        let mut unread = Vec::new();
        let stream = ring.detach(id, &mut unread);
        assert!(stream.is_some());
        no_side_table_entries(&ring);
        assert!(!unread.is_empty());
        let at = |k: usize| pattern(sink.seen + k);
        assert!(unread.iter().enumerate().all(|(k, &b)| b == at(k)));
    }
}
