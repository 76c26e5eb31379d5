//! Applications: what a server does with messages. Each implements [`crate::worker::App`]
//! and is picked by `--app`.
//!
//! - `echo`: every message back to its sender.
//! - `shootout`: the websocket-shootout protocol (echo, broadcast + broadcastResult).
//! - `pubsub`: topic subscribe/unsubscribe/publish over JSON.
//! - `conformance`: the Socket.IO contract the official clients are tested against.
//! - `sio_shootout`: the shootout protocol over Socket.IO (`--app sio-shootout`).

pub mod conformance;
pub mod echo;
pub mod pubsub;
pub mod shootout;
pub mod sio_shootout;

pub use echo::Echo;
pub use pubsub::PubSub;
pub use shootout::Shootout;
