//! One vectored send in flight: the frames it carries (`Bytes` clones, a refcount each),
//! their iovecs and the `msghdr` that points at them.
//!
//! Invariant: the driver owns a `SendBuf` from the moment its SQE is pushed until its
//! last CQE arrives, even if the connection is closed meanwhile, so the memory the kernel
//! reads (frames, iovecs, header) cannot be freed or moved under it. A `SendBuf` lives in
//! a `Box` (a stable address); `iov` is not grown while a send is in flight.
//!
//! A zero-copy send (`zc`) ends with two CQEs: its result (`IORING_CQE_F_MORE` set), which
//! ends the send for its connection (the next may start), and then the kernel's
//! notification that it no longer reads the frames (`IORING_CQE_F_NOTIF`, once the peer
//! has acknowledged them), the last CQE. In between the `SendBuf` is `released`: it names
//! its connection still, but is nobody's send in flight.

use bytes::Bytes;
use io_uring::opcode;
use io_uring::squeue;
use io_uring::types::{Fd, Fixed};

use super::Sock;
use crate::runtime::conn_id::ConnId;

/// No SIGPIPE; the kernel finishes a short send on a stream socket itself.
const FLAGS: i32 = libc::MSG_NOSIGNAL | libc::MSG_WAITALL;

/// `IORING_SEND_ZC_REPORT_USAGE` (kernel UAPI, 6.2): the notification says whether the
/// kernel had to copy the data after all.
const SEND_ZC_REPORT_USAGE: u16 = 1 << 3;
/// `IORING_NOTIF_USAGE_ZC_COPIED`: set in a notification's result when it did.
pub const NOTIF_USAGE_ZC_COPIED: i32 = i32::MIN;

/// Most iovecs one send carries (the kernel's limit is 1,024).
pub const MAX_IOVECS: usize = 256;
/// Most bytes one connection has in flight: a larger write is taken in part, which is
/// the worker's backpressure (it queues the rest and waits for `writable`).
pub const MAX_IN_FLIGHT: usize = 256 << 10;

pub struct SendBuf {
    pub conn: ConnId,
    frames: Vec<Bytes>,
    iov: Vec<libc::iovec>,
    msg: libc::msghdr,
    /// Index of the first iovec not completely sent.
    first: usize,
    /// Bytes not yet sent.
    left: usize,
    /// Sent zero-copy (`SEND_ZC`/`SENDMSG_ZC`).
    pub zc: bool,
    /// A zero-copy send whose result has come: it waits for its notification only.
    pub released: bool,
}

// SAFETY: the raw pointers in `iov` and `msg` point into `frames` and `iov`, which this
// value owns; the value is used by one thread at a time (the driver's).
unsafe impl Send for SendBuf {}

impl SendBuf {
    pub fn new() -> Box<SendBuf> {
        Box::new(SendBuf {
            conn: ConnId {
                slot: 0,
                generation: 0,
            },
            frames: Vec::new(),
            iov: Vec::new(),
            // SAFETY: `msghdr` is a plain C struct; all-zero is its empty value.
            msg: unsafe { std::mem::zeroed() },
            first: 0,
            left: 0,
            zc: false,
            released: false,
        })
    }

    /// Takes from `bufs`, in order, at most `MAX_IN_FLIGHT` bytes in `MAX_IOVECS` pieces
    /// (the last piece possibly a prefix of a frame); returns the bytes taken.
    pub fn fill(&mut self, conn: ConnId, bufs: &[Bytes]) -> usize {
        self.clear();
        self.conn = conn;
        let mut taken = 0;
        for b in bufs {
            if self.frames.len() == MAX_IOVECS || taken == MAX_IN_FLIGHT {
                break;
            }
            if b.is_empty() {
                continue;
            }
            let n = b.len().min(MAX_IN_FLIGHT - taken);
            let piece = if n == b.len() {
                b.clone()
            } else {
                b.slice(..n)
            };
            taken += n;
            self.frames.push(piece);
        }
        for f in &self.frames {
            self.iov.push(libc::iovec {
                iov_base: f.as_ptr() as *mut libc::c_void,
                iov_len: f.len(),
            });
        }
        self.left = taken;
        self.point();
        taken
    }

    /// The SQE that sends what is left to `sock`: `SEND` for one piece (no header for the
    /// kernel to copy), `SENDMSG` for several, or their zero-copy forms if `zc`. It points
    /// into `self`, which must stay where it is (boxed) and unchanged until the
    /// operation's last CQE.
    pub fn sqe(&self, sock: Sock) -> squeue::Entry {
        /// Builds `$op` on the socket, plain or registered.
        macro_rules! on {
            ($sock:expr, |$target:ident| $op:expr) => {
                match $sock {
                    Sock::Fd(fd) => {
                        let $target = Fd(fd);
                        $op
                    }
                    Sock::Fixed(index) => {
                        let $target = Fixed(index);
                        $op
                    }
                }
            };
        }
        let rest = &self.iov[self.first..];
        let zc_flags = SEND_ZC_REPORT_USAGE;
        match (rest, self.zc) {
            ([one], false) => on!(sock, |t| opcode::Send::new(
                t,
                one.iov_base.cast_const().cast(),
                one.iov_len as u32
            )
            .flags(FLAGS)
            .build()),
            ([one], true) => on!(sock, |t| opcode::SendZc::new(
                t,
                one.iov_base.cast_const().cast(),
                one.iov_len as u32
            )
            .flags(FLAGS)
            .zc_flags(zc_flags)
            .build()),
            (_, false) => on!(sock, |t| opcode::SendMsg::new(t, &self.msg)
                .flags(FLAGS as u32)
                .build()),
            (_, true) => on!(sock, |t| opcode::SendMsgZc::new(t, &self.msg)
                .flags(FLAGS as u32)
                .ioprio(zc_flags)
                .build()),
        }
    }

    /// The pieces (iovecs) this send carries.
    pub fn pieces(&self) -> usize {
        self.frames.len()
    }

    pub fn left(&self) -> usize {
        self.left
    }

    /// Accounts for `n` bytes sent (a short send); what is left goes out next.
    pub fn advance(&mut self, mut n: usize) {
        n = n.min(self.left);
        self.left -= n;
        while n > 0 && self.first < self.iov.len() {
            let v = &mut self.iov[self.first];
            if n >= v.iov_len {
                n -= v.iov_len;
                self.first += 1;
            } else {
                // SAFETY: `n < iov_len`, so the new base stays inside the same frame.
                v.iov_base = unsafe { v.iov_base.cast::<u8>().add(n) }.cast();
                v.iov_len -= n;
                n = 0;
            }
        }
        self.point();
    }

    /// Drops the frames (the refcounts), keeping the allocations for the next send.
    pub fn clear(&mut self) {
        self.frames.clear();
        self.iov.clear();
        self.first = 0;
        self.left = 0;
        self.zc = false;
        self.released = false;
        self.point();
    }

    fn point(&mut self) {
        let rest = &mut self.iov[self.first..];
        self.msg.msg_iov = rest.as_mut_ptr();
        self.msg.msg_iovlen = rest.len() as _;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> ConnId {
        ConnId {
            slot: 1,
            generation: 2,
        }
    }

    fn pending(s: &SendBuf) -> Vec<u8> {
        let mut out = Vec::new();
        for v in &s.iov[s.first..] {
            // SAFETY: every iovec points into a frame `s` holds.
            out.extend_from_slice(unsafe {
                std::slice::from_raw_parts(v.iov_base.cast::<u8>(), v.iov_len)
            });
        }
        out
    }

    #[test]
    fn takes_everything_that_fits_and_advances_across_frames() {
        let mut s = SendBuf::new();
        let bufs = [
            Bytes::from_static(b"abc"),
            Bytes::new(),
            Bytes::from_static(b"defgh"),
        ];
        assert_eq!(s.fill(id(), &bufs), 8);
        assert_eq!(s.msg.msg_iovlen, 2);
        s.advance(4);
        assert_eq!(s.left(), 4);
        assert_eq!(pending(&s), b"efgh");
        s.advance(4);
        assert_eq!(s.left(), 0);
        assert_eq!(s.msg.msg_iovlen, 0);
    }

    #[test]
    fn caps_bytes_and_iovecs_in_flight() {
        let mut s = SendBuf::new();
        let big = Bytes::from(vec![7u8; MAX_IN_FLIGHT + 10]);
        assert_eq!(s.fill(id(), &[big]), MAX_IN_FLIGHT);
        let many: Vec<Bytes> = (0..MAX_IOVECS + 5)
            .map(|_| Bytes::from_static(b"x"))
            .collect();
        assert_eq!(s.fill(id(), &many), MAX_IOVECS);
        s.clear();
        assert_eq!(s.left(), 0);
        assert!(s.frames.is_empty());
    }
}
