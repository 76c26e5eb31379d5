//! The runtime moves bytes between sockets and the workers; it knows no protocol.
//!
//! - [`driver`]: the one kernel seam (`Driver` + `Sink`), and [`epoll`] behind it.
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

pub use conn_id::ConnId;
pub use driver::{Driver, Sink};
