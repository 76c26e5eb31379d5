//! `--app echo`: every text or binary message goes back unchanged, at any path. A message
//! that arrived whole in one read is copied once into the cork; an assembled one is
//! handed back by reference (no copy).

use bytes::Bytes;

use crate::worker::{App, Outbox};
use crate::ws::Payload;

#[derive(Debug, Default)]
pub struct Echo;

impl App for Echo {
    fn on_message(&mut self, out: &mut Outbox<'_>, text: bool, payload: Payload<'_>) {
        match payload {
            Payload::InPlace(bytes) => out.send(text, bytes),
            Payload::Assembled(vec) => out.send_shared(text, Bytes::from(vec)),
        }
    }
}
