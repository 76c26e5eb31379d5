//! Waiting for the kernel to be done with a socket or with the whole ring: `detach`
//! (the socket leaves for another worker: its send in flight is finished, its receive
//! cancelled synchronously, and what that receive had read goes with it) and `Drop`
//! (every operation cancelled and its last CQE seen before any buffer it uses is freed).
//!
//! CQEs of other operations read meanwhile are kept in `deferred`, handled first by the
//! next turn; a wait first takes its own operation's CQEs from there, so that none is
//! handled after its operation's entry has been freed (and perhaps reused). Until then
//! a deferred CQE's `ops` entry is its own operation's, so it still names its connection.

use std::io;
use std::mem::ManuallyDrop;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use io_uring::cqueue;
use io_uring::types::{CancelBuilder, Timespec};

use super::{ACCEPT, CANCEL, Cqe, Flag, GROUP, SETTLE, SendStep, Uring, WAKE, recv_key, recv_of};
use crate::runtime::conn_id::ConnId;
use crate::runtime::driver::Driver;

impl Uring {
    /// Waits (bounded) for the ring to finish one op, the one whose `user_data` is
    /// `mine`: CQEs of other ops are kept for the next turn; the op's go to `on`, which
    /// says when it has ended. Returns whether it ended.
    fn settle(
        &mut self,
        mine: impl Fn(&Self, u64) -> bool,
        mut on: impl FnMut(&mut Self, Cqe) -> bool,
    ) -> bool {
        // CQEs of the op may already wait among the deferred ones (read while another
        // socket was detached this turn): they come first, in order.
        let mut i = 0;
        while i < self.deferred.len() {
            if !mine(self, self.deferred[i].user_data) {
                i += 1;
                continue;
            }
            let Some(cqe) = self.deferred.remove(i) else {
                break;
            };
            if on(self, cqe) {
                return true;
            }
        }
        let deadline = Instant::now() + SETTLE;
        loop {
            if self
                .enter(Some(Duration::from_millis(10)))
                .is_err_and(|e| e.kind() != io::ErrorKind::Interrupted)
            {
                return false;
            }
            loop {
                self.fill_batch();
                if self.batch.is_empty() {
                    break;
                }
                let batch = std::mem::take(&mut self.batch);
                let mut done = false;
                for &cqe in &batch {
                    if !done && mine(self, cqe.user_data) {
                        done = on(self, cqe);
                    } else {
                        self.deferred.push_back(cqe);
                    }
                }
                self.batch = batch;
                if done {
                    return true;
                }
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }

    /// Waits for `id`'s send in flight to finish (a short send is continued).
    fn settle_send(&mut self, id: ConnId) -> bool {
        let Some(fd) = self.sending(id) else {
            return true;
        };
        // The send in flight is the `ops` entry that names `id`.
        let mine = |this: &Self, user_data| this.send_conn(user_data) == Some(id);
        let sock = self.sock(id.slot as usize, fd);
        self.settle(mine, |this, cqe| {
            let key = cqe.user_data as usize;
            if !this.ops.contains(key) {
                return true;
            }
            let ok = match this.send_step(key, cqe, Some(sock)) {
                SendStep::Ended { all_sent } => all_sent,
                SendStep::Waiting | SendStep::Released => return false,
            };
            let state = &mut this.states[id.slot as usize];
            state.set(Flag::SENDING, false);
            if !ok {
                state.set(Flag::BROKEN, true);
            }
            true
        })
    }

    /// Ends `id`'s receive now and appends the bytes it had read to `unread`.
    fn settle_recv(&mut self, id: ConnId, unread: &mut Vec<u8>) -> bool {
        let Some(key) = self
            .live(id)
            .and_then(|(i, _)| self.states[i].recv())
            .map(|seq| recv_key(id, seq))
        else {
            return true;
        };
        // Only submitted requests can be cancelled synchronously.
        let _ = self.ring.submit();
        let _ = self
            .ring
            .submitter()
            .register_sync_cancel(Some(Timespec::from(SETTLE)), CancelBuilder::user_data(key));
        self.settle(
            |_, user_data| user_data == key,
            |this, cqe| {
                if cqe.res > 0
                    && let Some(bid) = cqueue::buffer_select(cqe.flags)
                {
                    // SAFETY: the CQE lends `bid`; the slice is dropped before `give_back`.
                    unread.extend_from_slice(unsafe { this.bufs.lend(bid, cqe.res as usize) });
                    this.bufs.give_back(bid);
                }
                if cqueue::more(cqe.flags) {
                    return false;
                }
                this.recvs_in_flight = this.recvs_in_flight.saturating_sub(1);
                this.states[id.slot as usize].take_recv();
                true
            },
        )
    }

    /// `Driver::detach`: the socket out of the ring, with the bytes read ahead of the sink.
    pub(super) fn take_out(&mut self, conn: ConnId, unread: &mut Vec<u8>) -> Option<TcpStream> {
        self.live(conn)?;
        let mut late = Vec::new();
        let settled = self.settle_send(conn) && self.settle_recv(conn, &mut late);
        let (i, _) = self.live(conn)?;
        if !settled || self.states[i].get(Flag::BROKEN) {
            // The kernel still holds the socket, or it failed: close it here instead.
            tracing::debug!(?conn, settled, "connection not handed over: closing it");
            self.close(conn);
            return None;
        }
        // Held bytes came first (read while paused), then those the cancel caught.
        unread.append(&mut self.held.take(conn.slot, &mut self.states[i]));
        unread.append(&mut late);
        // An end of stream seen here is seen again by the new owner (a FIN stays).
        if let Some(fd) = self.slots[i].stream.as_ref().map(AsRawFd::as_raw_fd) {
            self.unfix(i, fd);
        }
        let stream = self.slots[i].stream.take();
        debug_assert!(self.side_tables_hold_live_connections_only());
        stream
    }
}

impl Uring {
    /// Whether the kernel may still use memory of this ring's operations.
    fn in_flight(&self) -> bool {
        !self.ops.is_empty() || self.recvs_in_flight > 0 || self.accept_armed || self.wake_armed
    }
}

impl Drop for Uring {
    /// The kernel may still write into the buffer ring or read send buffers: cancel every
    /// operation and wait for its last CQE before any of that memory is freed. If the
    /// kernel does not finish in time, the memory is leaked rather than freed under it.
    fn drop(&mut self) {
        if self.enabled {
            self.push_backlog();
            let _ = self.ring.submit();
            let _ = self
                .ring
                .submitter()
                .register_sync_cancel(Some(Timespec::from(SETTLE)), CancelBuilder::any());
            // With SQPOLL the cancel does not always reach the eventfd read; a wake-up
            // ends it in any case.
            if self.wake_armed {
                let _ = self.waker.wake();
            }
            // The sockets close as soon as every SQE naming them has been submitted (see
            // `enter`), not after the wait: a zero-copy send's notification comes only once
            // its socket has let go of the frames (`let_go`).
            for i in 0..self.slots.len() {
                let id = ConnId {
                    slot: i as u32,
                    generation: self.slots[i].generation,
                };
                let stream = self.let_go(id);
                self.closing.extend(stream);
            }
            let deadline = Instant::now() + SETTLE;
            while self.in_flight() && Instant::now() < deadline {
                let _ = self.enter(Some(Duration::from_millis(10)));
                self.fill_batch();
                for i in 0..self.batch.len() {
                    let cqe = self.batch[i];
                    if let Some(bid) = cqueue::buffer_select(cqe.flags) {
                        self.bufs.give_back(bid);
                    }
                    if cqueue::more(cqe.flags) {
                        continue;
                    }
                    match cqe.user_data {
                        ACCEPT => {
                            self.accept_armed = false;
                            if cqe.res >= 0 {
                                // SAFETY: a new fd from accept, owned by nobody else.
                                drop(unsafe { TcpStream::from_raw_fd(cqe.res) });
                            }
                        }
                        WAKE => self.wake_armed = false,
                        CANCEL => {}
                        key if recv_of(key).is_some() => {
                            self.recvs_in_flight = self.recvs_in_flight.saturating_sub(1);
                        }
                        key => {
                            self.ops.try_remove(key as usize);
                        }
                    }
                }
            }
            if self.tuning.send_zc_min.is_some() {
                tracing::info!(
                    sends = self.zc_sends,
                    copied = self.zc_copied,
                    "THRONG_URING_SEND_ZC: zero-copy sends, and those the kernel copied after all"
                );
            }
            if self.in_flight() {
                tracing::warn!(
                    sends = self.ops.len(),
                    receives = self.recvs_in_flight,
                    accept = self.accept_armed,
                    wake = self.wake_armed,
                    "io_uring operations still in flight at exit: leaking their buffers"
                );
                // `bufs` is ManuallyDrop and is not dropped here: the kernel may use it.
                std::mem::forget(std::mem::take(&mut self.ops));
                std::mem::forget(std::mem::replace(&mut self.wake_buf, Box::new(0)));
                return;
            }
        }
        let _ = self.ring.submitter().unregister_buf_ring(GROUP);
        // SAFETY: no operation is in flight and the group is unregistered (or the ring
        // was never enabled), so the kernel no longer touches the buffers; `bufs` is not
        // used after this.
        unsafe { ManuallyDrop::drop(&mut self.bufs) };
    }
}
