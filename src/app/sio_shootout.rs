//! `--app sio-shootout`: the websocket-shootout protocol over Socket.IO, the contract of
//! `throng bench --proto socketio` and of the Node peer in `benches/peers/socketio/`.
//! Namespace `/` only, Node's defaults otherwise (pingInterval 25 s, pingTimeout 20 s,
//! maxPayload 1,000,000, connectTimeout 45 s); no compression is ever negotiated.
//!
//! | event | does |
//! |---|---|
//! | `echo(...P)` | acks with `P` when the client asked for an ack, else emits `echo(...P)` back |
//! | `broadcast(...P)` | emits `broadcast(...P)` to every socket of `/` on every core, the sender included, then `broadcastResult(...P)` to the sender |
//!
//! `P` is forwarded as the raw JSON it arrived as (attachments too), never rebuilt; the
//! broadcast packet is encoded once for every recipient on every core.

use std::sync::Arc;

use crate::sio::{Config, Cx, Event, Namespace, Registry, Server};

/// The sio-shootout server for worker `worker`.
pub fn server(worker: usize) -> Server {
    Server::new(Config::default(), Arc::new(registry()), worker)
}

fn registry() -> Registry {
    Registry::new().ns(Namespace::new("/")
        .on("echo", echo)
        .on("broadcast", broadcast))
}

/// The event's array elements from `from` on, raw JSON.
fn raw<'e>(ev: &'e Event<'_>, from: usize) -> Vec<&'e [u8]> {
    ev.elements
        .iter()
        .skip(from)
        .map(|v| v.get().as_bytes())
        .collect()
}

fn echo(cx: &mut Cx<'_, '_>, ev: &Event<'_>) {
    if ev.ack.is_some() {
        cx.ack(ev, &raw(ev, 1), ev.attachments);
    } else {
        cx.emit_elements(&raw(ev, 0), ev.attachments);
    }
}

fn broadcast(cx: &mut Cx<'_, '_>, ev: &Event<'_>) {
    let mut elements = raw(ev, 0);
    cx.to_all().emit_elements(&elements, ev.attachments);
    elements[0] = br#""broadcastResult""#;
    cx.emit_elements(&elements, ev.attachments);
}
