//! Applications: what a server does with messages. Each implements [`crate::worker::App`]
//! and is picked by `--app`.

pub mod echo;

pub use echo::Echo;
