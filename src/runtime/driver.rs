//! The kernel seam. A `Driver` waits for the kernel and reports to a `Sink`; the worker is
//! the sink. Connection logic lives once, in `worker/`, generic over `D: Driver`.
//!
//! A backend's duties:
//! - `turn` reports accepts, data, writability and hang-ups, and never writes itself.
//!   Data is lent for the call only (`&mut [u8]` into a per-worker buffer): the sink
//!   parses it in place and copies only what it must keep.
//! - A sink that returns `false` from `data` is not read from again until
//!   `resume_read`; this is how backpressure stops a connection from growing its queue.
//! - `write` takes what it can now and says how much; the caller queues the rest and
//!   offers it again after `writable`.
//! - Ids are checked against their generation: a stale id is ignored by every method.
//! - A connection `Sink::accepted` refuses gets `Sink::refusal` written to it (an HTTP
//!   503), then a FIN; the driver reads and discards what the peer sends until its FIN
//!   (or a short linger), so that closing does not reset the answer away. The sink hears
//!   nothing more of it, and it has no slot.
//! - A socket can move between workers (`detach` here, `adopt` there): no event is
//!   reported for it here once detached. A backend that reads ahead of the sink (io_uring's
//!   multishot receive keeps reading until its cancel takes) hands those bytes over too.

use std::io;
use std::net::SocketAddr;
use std::time::Duration;

use bytes::Bytes;

use super::conn_id::ConnId;

pub trait Driver {
    /// Waits up to `timeout` (forever if `None`), then reports what happened to `sink`.
    fn turn(&mut self, timeout: Option<Duration>, sink: &mut impl Sink) -> io::Result<()>;
    /// Writes `bufs` in order as far as the kernel takes them; returns the bytes taken.
    /// `Err` means the connection is broken and should be closed.
    fn write(&mut self, conn: ConnId, bufs: &[Bytes]) -> io::Result<usize>;
    /// Sends FIN after everything written so far (the close handshake's last step).
    fn shutdown_write(&mut self, conn: ConnId);
    /// Closes the socket; no further events are reported for `conn`.
    fn close(&mut self, conn: ConnId);
    /// Reads from `conn` again (after `Sink::data` returned `false`).
    fn resume_read(&mut self, conn: ConnId);
    /// Takes the socket out of this driver (to hand it to another worker); `None` if
    /// `conn` is gone. Bytes already read from the socket that the sink has not seen are
    /// appended to `unread`, in order, for the new owner to take first.
    fn detach(&mut self, conn: ConnId, unread: &mut Vec<u8>) -> Option<std::net::TcpStream>;
    /// Serves a socket detached by another worker's driver under `conn`, a fresh id.
    fn adopt(&mut self, conn: ConnId, stream: std::net::TcpStream) -> io::Result<()>;
    /// Stops accepting and closes the listener (graceful shutdown).
    fn stop_accepting(&mut self);
}

pub trait Sink {
    /// A new connection. `None` refuses it; the driver then writes `refusal()` to it and
    /// closes it.
    fn accepted(&mut self, peer: SocketAddr) -> Option<ConnId>;
    /// What a refused connection is told before it is closed (empty: nothing).
    fn refusal(&self) -> &[u8] {
        &[]
    }
    /// Bytes read from `conn`, lent for this call. Return `false` to stop reading.
    fn data(&mut self, conn: ConnId, bytes: &mut [u8]) -> bool;
    /// The socket can take more bytes.
    fn writable(&mut self, conn: ConnId);
    /// The peer closed or the socket failed; the sink should release `conn`.
    fn hangup(&mut self, conn: ConnId);
    /// Another thread woke this worker.
    fn woken(&mut self);
}

/// How long a backend stops accepting after the process ran out of file descriptors.
pub const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// The warning a backend gives when it pauses accepting for lack of file descriptors:
/// at most one every 5 s, however often the pause recurs.
#[derive(Default)]
pub struct OutOfFdsWarning {
    last: Option<std::time::Instant>,
}

impl OutOfFdsWarning {
    /// Accepting pauses for `ACCEPT_BACKOFF` after `e`; warns unless it did lately.
    pub fn warn(&mut self, e: &io::Error, now: std::time::Instant) {
        if self
            .last
            .is_some_and(|t| now.duration_since(t) < Duration::from_secs(5))
        {
            return;
        }
        self.last = Some(now);
        tracing::warn!(
            error = %e,
            "out of file descriptors: accepting paused for {} ms (raise the open-file \
             limit or lower --max-connections)",
            ACCEPT_BACKOFF.as_millis()
        );
    }
}
