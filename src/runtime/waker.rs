//! How another thread wakes a worker's event loop, whichever driver runs it: mio's waker
//! for epoll, an eventfd that the io_uring driver keeps a read armed on. The fabric sees
//! only `WorkerWaker::wake`.

use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::sync::Arc;

/// A cloneable handle that wakes one worker.
#[derive(Clone, Debug)]
pub enum WorkerWaker {
    Mio(Arc<mio::Waker>),
    EventFd(Arc<EventFd>),
}

impl WorkerWaker {
    pub fn wake(&self) -> io::Result<()> {
        match self {
            WorkerWaker::Mio(w) => w.wake(),
            WorkerWaker::EventFd(e) => e.wake(),
        }
    }
}

/// A blocking eventfd (`read` waits for a wake-up, which is what an io_uring read on it
/// needs: on a non-blocking one it would fail with `EAGAIN` instead of waiting).
#[derive(Debug)]
pub struct EventFd(OwnedFd);

impl EventFd {
    pub fn new() -> io::Result<EventFd> {
        // SAFETY: eventfd(2) takes no pointers; a non-negative result is a new fd we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: `fd` was just returned by eventfd(2) and is owned by nobody else.
        Ok(EventFd(unsafe { OwnedFd::from_raw_fd(fd) }))
    }

    pub fn wake(&self) -> io::Result<()> {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our own eventfd.
        let n = unsafe { libc::write(self.0.as_raw_fd(), (&one as *const u64).cast(), 8) };
        if n == 8 {
            return Ok(());
        }
        let e = io::Error::last_os_error();
        // EAGAIN: the counter is at its maximum, so a wake-up is pending anyway.
        if e.kind() == io::ErrorKind::WouldBlock {
            return Ok(());
        }
        Err(e)
    }

    pub fn raw(&self) -> RawFd {
        self.0.as_raw_fd()
    }
}
