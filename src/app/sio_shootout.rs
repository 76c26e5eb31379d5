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

/// The shootout's namespace (shared by every worker of a process).
pub fn registry() -> Registry {
    Registry::new().ns(Namespace::new("/")
        .on("echo", echo)
        .on("broadcast", broadcast))
}

/// Arguments kept on the stack up to this count (a heap `Vec` past it).
const INLINE_ARGS: usize = 8;

/// Calls `f` with the event's array elements from `from` on, raw JSON, gathered on the
/// stack when there are at most [`INLINE_ARGS`].
fn with_raw<R>(ev: &Event<'_>, from: usize, f: impl FnOnce(&mut [&[u8]]) -> R) -> R {
    let rest = ev.elements().get(from..).unwrap_or_default();
    if rest.len() <= INLINE_ARGS {
        let mut buf: [&[u8]; INLINE_ARGS] = [&[]; INLINE_ARGS];
        for (slot, v) in buf.iter_mut().zip(rest) {
            *slot = v.get().as_bytes();
        }
        f(&mut buf[..rest.len()])
    } else {
        f(&mut rest.iter().map(|v| v.get().as_bytes()).collect::<Vec<_>>())
    }
}

fn echo(cx: &mut Cx<'_, '_>, ev: &Event<'_>) {
    if ev.ack.is_some() {
        with_raw(ev, 1, |args| cx.ack(ev, args, ev.attachments));
    } else {
        with_raw(ev, 0, |elements| cx.emit_elements(elements, ev.attachments));
    }
}

fn broadcast(cx: &mut Cx<'_, '_>, ev: &Event<'_>) {
    with_raw(ev, 0, |elements| {
        cx.to_all().emit_elements(elements, ev.attachments);
        if let Some(name) = elements.first_mut() {
            *name = br#""broadcastResult""#;
        }
        cx.emit_elements(elements, ev.attachments);
    });
}
