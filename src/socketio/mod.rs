//! Socket.IO v5, sans-IO: the packet format carried in Engine.IO message packets
//! (`packet.rs`, with its JSON walk in `json.rs`) and binary attachment reassembly
//! (`binary.rs`). JSON is validated, never built into a tree; payloads stay byte ranges of
//! the input.
//!
//! Wire facts: `../shared/design/PROTOCOLS.md` §2.

pub mod binary;
mod json;
pub mod packet;
