//! The runtime moves bytes between sockets and the workers; it knows no protocol.
//!
//! - [`driver`]: the one kernel seam (`Driver` + `Sink`), with two backends behind it:
//!   [`epoll`] (readiness, mio) and [`uring`] (completions, io_uring).
//! - [`waker`]: how other threads wake a worker, whichever backend runs it.
//! - [`conn_id`]: slot + generation, packed into the token the kernel hands back.
//! - [`listener`]: one `SO_REUSEPORT` listener per worker.
//! - [`system`]: process facts (open-file limit, CPU affinity).
//! - [`tls`]: rustls as a layer over any driver (`Tls<D>` is a `Driver`).

pub mod conn_id;
pub mod driver;
pub mod epoll;
pub mod listener;
pub mod system;
pub mod tls;
pub mod uring;
pub mod waker;

pub use conn_id::ConnId;
pub use driver::{Driver, Sink};
pub use waker::WorkerWaker;
