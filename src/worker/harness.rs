//! One connection of an app driven without a driver, a socket or a loop: for benchmarks
//! and allocation counts of an app's message path (`benches/sio_packet.rs`). The app's
//! callbacks get a real `Outbox` over a `Hub` of its own (one worker, no peers), and what
//! they send is read back from the cork, as the flush would write it.
//!
//! Nothing here runs in `throng serve`. Broadcasts are published into the harness's own
//! hub and not delivered anywhere a caller can see; only what the connection itself was
//! sent is observable.

use std::sync::Arc;

use crate::fabric::{Fabric, Wake};
use crate::http::Request;
use crate::runtime::ConnId;
use crate::ws::Payload;

use super::App;
use super::hub::Hub;
use super::outbox::Outbox;

/// The one worker's waker: nobody sleeps, so nobody is woken.
struct NoWake;

impl Wake for NoWake {
    fn wake(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// An app and one connection to it.
pub struct Harness<A: App> {
    app: A,
    hub: Hub,
    id: ConnId,
}

impl<A: App> Harness<A> {
    pub fn new(app: A) -> Harness<A> {
        let fabric = Arc::new(Fabric::new(vec![Box::new(NoWake)]));
        Harness {
            app,
            hub: Hub::new(fabric, 0, 1 << 30, 1024),
            id: ConnId {
                slot: 0,
                generation: 1,
            },
        }
    }

    /// `App::on_open` for a WebSocket upgrade (`GET target`, a valid key) just answered.
    pub fn open(&mut self, target: &str) {
        let req = Request {
            method: "GET",
            target,
            minor_version: 1,
            host: Some(b"127.0.0.1"),
            upgrade: Some(b"websocket"),
            connection: Some(b"Upgrade"),
            sec_websocket_key: Some(b"dGhlIHNhbXBsZSBub25jZQ=="),
            sec_websocket_version: Some(b"13"),
            head_len: 0,
            ..Request::default()
        };
        let mut out = Outbox {
            hub: &mut self.hub,
            id: self.id,
        };
        self.app.on_open(&mut out, &req);
    }

    /// `App::on_message` with a complete message, borrowed in place as the worker does.
    pub fn message(&mut self, text: bool, payload: &mut [u8]) {
        let mut out = Outbox {
            hub: &mut self.hub,
            id: self.id,
        };
        self.app
            .on_message(&mut out, text, Payload::InPlace(payload));
    }

    /// The frames (server role, unmasked) sent to the connection since the last
    /// [`Harness::clear`].
    pub fn sent(&self) -> &[u8] {
        &self.hub.cork
    }

    /// Whether a callback asked to close the connection.
    pub fn closing(&self) -> bool {
        self.hub.close_request.is_some()
    }

    /// Forgets what was sent, keeping the buffer (no allocation on the next send).
    pub fn clear(&mut self) {
        self.hub.cork.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Sends every message back.
    struct Echo;

    impl App for Echo {
        fn on_message(&mut self, out: &mut Outbox<'_>, text: bool, payload: Payload<'_>) {
            out.send(text, payload.as_slice());
        }
    }

    #[test]
    fn what_the_app_sends_is_read_back_as_frames() {
        let mut h = Harness::new(Echo);
        h.open("/");
        assert!(h.sent().is_empty());
        h.message(true, &mut b"hi".to_vec());
        assert_eq!(h.sent(), b"\x81\x02hi");
        h.clear();
        assert!(h.sent().is_empty() && !h.closing());
    }
}
