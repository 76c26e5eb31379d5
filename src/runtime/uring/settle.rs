//! Waiting for the kernel to be done with a socket or with the whole ring: `detach`
//! (the socket leaves for another worker: its send in flight is finished, its receive
//! cancelled synchronously, and what that receive had read goes with it) and `Drop`
//! (every operation cancelled and its last CQE seen before any buffer it uses is freed).
//!
//! CQEs of other operations read meanwhile are kept in `deferred`, handled first by the
//! next turn; a wait first takes its own operation's CQEs from there, so that none is
//! handled after its operation's entry has been freed (and perhaps reused).

use std::io;
use std::mem::ManuallyDrop;
use std::net::TcpStream;
use std::os::fd::{AsRawFd, FromRawFd};
use std::time::{Duration, Instant};

use io_uring::cqueue;
use io_uring::types::{CancelBuilder, Timespec};

use super::{ACCEPT, CANCEL, Cqe, GROUP, SETTLE, Uring, WAKE, recv_key, recv_of};
use crate::runtime::conn_id::ConnId;
use crate::runtime::driver::Driver;

impl Uring {
    /// Waits (bounded) for the ring to finish op `key`: CQEs of other ops are kept for
    /// the next turn; those of `key` go to `on`. Returns whether `key` ended.
    fn settle(&mut self, key: u64, mut on: impl FnMut(&mut Self, Cqe) -> bool) -> bool {
        // CQEs of `key` may already wait among the deferred ones (read while another
        // socket was detached this turn): they come first, in order.
        let mut i = 0;
        while i < self.deferred.len() {
            if self.deferred[i].user_data != key {
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
                    if cqe.user_data == key && !done {
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
        let Some(key) = self.live(id).and_then(|s| s.send).map(|k| k as usize) else {
            return true;
        };
        self.settle(key as u64, |this, cqe| {
            let Some(buf) = this.ops.get_mut(key) else {
                return true;
            };
            let fd = this.slots[id.slot as usize]
                .stream
                .as_ref()
                .map(|s| s.as_raw_fd());
            if cqe.res > 0
                && (cqe.res as usize) < buf.left()
                && let Some(fd) = fd
            {
                buf.advance(cqe.res as usize);
                let sqe = buf.sqe(fd).user_data(key as u64);
                this.push(sqe);
                return false;
            }
            let ok = cqe.res >= 0 && cqe.res as usize == buf.left();
            let mut buf = this.ops.remove(key);
            buf.clear();
            this.send_pool.push(buf);
            let slot = &mut this.slots[id.slot as usize];
            slot.send = None;
            slot.broken |= !ok;
            true
        })
    }

    /// Ends `id`'s receive now and appends the bytes it had read to `unread`.
    fn settle_recv(&mut self, id: ConnId, unread: &mut Vec<u8>) -> bool {
        let Some(key) = self
            .live(id)
            .and_then(|s| s.recv)
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
        self.settle(key, |this, cqe| {
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
            this.slots[id.slot as usize].recv = None;
            true
        })
    }

    /// `Driver::detach`: the socket out of the ring, with the bytes read ahead of the sink.
    pub(super) fn take_out(&mut self, conn: ConnId, unread: &mut Vec<u8>) -> Option<TcpStream> {
        self.live(conn)?;
        let mut late = Vec::new();
        let settled = self.settle_send(conn) && self.settle_recv(conn, &mut late);
        let slot = self.live(conn)?;
        if !settled || slot.broken {
            // The kernel still holds the socket, or it failed: close it here instead.
            tracing::debug!(?conn, settled, "connection not handed over: closing it");
            self.close(conn);
            return None;
        }
        // Held bytes came first (read while paused), then those the cancel caught.
        unread.append(&mut slot.held.take());
        unread.append(&mut late);
        // An end of stream seen here is seen again by the new owner (a FIN stays).
        slot.stream.take()
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
            if self.in_flight() {
                tracing::warn!(
                    left = self.ops.len() + self.recvs_in_flight,
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
