//! Engine.IO v4, sans-IO: packets and polling payloads (`packet.rs`), the request query
//! and its errors (`request.rs`), session ids (`sid.rs`), the session state machine —
//! heartbeat, polling queue, upgrade (`session.rs`), JSONP framing (`jsonp.rs`). No sockets, no clocks: the
//! worker feeds bytes and time in and writes what comes out.
//!
//! Wire facts: `../shared/design/PROTOCOLS.md` §1.

pub mod jsonp;
pub mod packet;
pub mod request;
pub mod session;
pub mod sid;
