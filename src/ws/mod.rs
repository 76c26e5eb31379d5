//! RFC 6455, sans-IO: frame headers, masking, close codes, the streaming reader and the
//! opening handshake. Nothing here touches a socket, a thread or a clock; every function
//! works on byte slices handed in by the runtime.
//!
//! Layering: this module may use `crate::http::request` (for the handshake) and nothing
//! else of the crate.

pub mod close;
pub mod frame;
pub mod handshake;
pub mod mask;
pub mod reader;
pub mod utf8;

pub use close::{CloseCode, Violation};
pub use frame::{FrameHead, Header, OpCode};
pub use reader::{Payload, ReadConfig, Reader, Role, Visitor};
