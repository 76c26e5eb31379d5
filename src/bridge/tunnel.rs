//! WebSocket upgrades of sessions owned by another process, relayed over the bus as a
//! tunnel (sticky-free polling's last step: the upgrade lands wherever the load
//! balancer sends it).
//!
//! Landing side (here: `open`, `up`, `end`, and `TunnelDown*` messages): the client's
//! WebSocket is accepted here; its messages go to the owner, and the owner's come back
//! to the worker holding the connection as `Tunneled` messages.
//!
//! Owner side (`TunnelOpen`/`TunnelUp*` messages): the worker owning the session is
//! asked first (`HandoverAsk`). A session that has joined no namespace is handed over
//! (`wsh`): the landing process serves it from then on and the WebSocket is local
//! there. Otherwise the upgrade is relayed (`wsa`, then served by `replay.rs`): it is
//! replayed as a WebSocket client on a loopback connection to this process's own
//! listener, so every session rule (the probe, the upgrade, the one-transport rule, the
//! worker owning the session) applies as for a local client.
//!
//! Invariants: at most `MAX_OPEN` tunnels are open from here; a message that cannot be
//! sent on the bus ends its tunnel (a tunnel never loses a message and goes on); each
//! side learns of the other's end once, and forgets the tunnel then.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

use super::Bridge;
use super::eio::EioMessage;
use super::replay::Command;
use crate::engineio::request::parse_query;
use crate::engineio::sid::{ProcessTag, Sid};
use crate::runtime::ConnId;
use crate::sio::{Handover, HandoverAsk, Registry, TunnelEvent, Tunneled};

/// Tunnels open from here at once.
const MAX_OPEN: usize = 16_384;

/// The landing side's tunnels, and how many the owner side serves.
#[derive(Default)]
pub(super) struct Tunnels {
    next: AtomicU64,
    /// Opened from here: id → the worker and connection of the client.
    open: Mutex<HashMap<u64, (usize, ConnId)>>,
    /// Served here for other processes now (set by the replay loop).
    serving: AtomicUsize,
}

impl Tunnels {
    /// Whether one more tunnel may be opened from here.
    pub fn has_room(&self) -> bool {
        self.open.lock().is_ok_and(|open| open.len() < MAX_OPEN)
    }

    /// Tunnels open now: (from here, served here).
    pub fn counts(&self) -> (usize, usize) {
        let open = self.open.lock().map_or(0, |open| open.len());
        (open, self.serving.load(Ordering::Relaxed))
    }

    pub fn set_serving(&self, n: usize) {
        self.serving.store(n, Ordering::Relaxed);
    }
}

/// Landing side: opens a tunnel to `owner` for the upgrade of `target` that connection
/// `reply_to` made here; its id. `None`: the bus is down or too many are open.
pub(super) fn open(
    bridge: &Bridge,
    owner: &ProcessTag,
    target: &str,
    origin: Option<&str>,
    reply_to: (usize, ConnId),
) -> Option<u64> {
    if !bridge.links_up() {
        return None;
    }
    let id = bridge.tunnels.next.fetch_add(1, Ordering::Relaxed);
    {
        let mut open = bridge.tunnels.open.lock().ok()?;
        if open.len() >= MAX_OPEN {
            return None;
        }
        open.insert(id, reply_to);
    }
    let message = EioMessage::TunnelOpen {
        id,
        from: bridge.tag,
        target: target.to_string(),
        origin: origin.map(str::to_string),
    };
    if !bridge.send_eio(owner, &message) {
        forget(bridge, id);
        return None;
    }
    Some(id)
}

/// Landing side: a client's message for tunnel `id` to `owner`. `false`: it could not
/// be sent, and the tunnel is over.
pub(super) fn up(bridge: &Bridge, owner: &ProcessTag, id: u64, text: bool, data: &[u8]) -> bool {
    let message = EioMessage::TunnelUp {
        id,
        from: bridge.tag,
        text,
        data: data.to_vec(),
    };
    if bridge.send_eio(owner, &message) {
        return true;
    }
    end(bridge, owner, id);
    false
}

/// Landing side: the client of tunnel `id` is gone.
pub(super) fn end(bridge: &Bridge, owner: &ProcessTag, id: u64) {
    if forget(bridge, id).is_some() {
        let from = bridge.tag;
        bridge.send_eio(owner, &EioMessage::TunnelUpEnd { id, from });
    }
}

fn forget(bridge: &Bridge, id: u64) -> Option<(usize, ConnId)> {
    bridge.tunnels.open.lock().ok()?.remove(&id)
}

/// Landing side: the owner's decision, message or end for tunnel `id`, to its
/// connection.
fn down(bridge: &Bridge, registry: &Registry, id: u64, event: TunnelEvent) {
    let to = match event {
        TunnelEvent::End | TunnelEvent::HandedOver(_) => forget(bridge, id),
        TunnelEvent::Accepted | TunnelEvent::Message { .. } => bridge
            .tunnels
            .open
            .lock()
            .ok()
            .and_then(|open| open.get(&id).copied()),
    };
    let Some((worker, conn)) = to else {
        return;
    };
    let io = registry.io();
    // A session handed over is known here before anything else is read from the bus,
    // so that its requests forwarded back by the owner find it.
    let adopted = match &event {
        TunnelEvent::HandedOver(handover) => Sid::parse(&handover.sid),
        _ => None,
    };
    if let Some(sid) = adopted {
        io.adopt(sid, worker);
    }
    if !io.post_app(worker, Box::new(Tunneled { conn, id, event }))
        && let Some(sid) = adopted
    {
        io.forget_adopted(&sid);
    }
}

/// Owner side: asks the worker owning the session of upgrade `ask` whether to hand
/// it over (relayed at once when the worker cannot be asked).
fn ask_owner(bridge: &Arc<Bridge>, registry: &Registry, ask: HandoverAsk) {
    // Started now if not yet: the worker's answer may need it, and has no `Arc`.
    let _ = super::replayer(bridge);
    let worker = ask.sid.worker();
    if !registry.io().post_app(worker, Box::new(ask.clone())) {
        relay(bridge, ask.from, ask.id, ask.target, ask.origin);
    }
}

/// Owner side: the upgrade of `target` that landed on `from` (its tunnel `id`) is
/// relayed by the replay loop; `from` is told (`wsa`), or told the tunnel is over
/// when the loop cannot take it.
pub(super) fn relay(
    bridge: &Bridge,
    from: ProcessTag,
    id: u64,
    target: String,
    origin: Option<String>,
) {
    let command = Command::TunnelOpen {
        key: (from, id),
        target,
        origin,
    };
    let replayer = bridge.replayer.get().and_then(Option::as_ref);
    if replayer.is_some_and(|r| r.send(command)) {
        bridge.send_eio(&from, &EioMessage::TunnelAccepted { id });
    } else {
        bridge.send_eio(&from, &EioMessage::TunnelDownEnd { id });
    }
}

/// Owner side: `handover` goes to the process where the upgrade `ask` landed.
pub(super) fn hand_over(bridge: &Bridge, ask: &HandoverAsk, handover: &Handover) -> bool {
    let message = EioMessage::TunnelHandover {
        id: ask.id,
        handover: handover.clone(),
    };
    let sent = bridge.send_eio(&ask.from, &message);
    if sent {
        bridge
            .counters
            .handovers_out
            .fetch_add(1, Ordering::Relaxed);
    }
    sent
}

/// A tunnel message on this process's own channel.
pub(super) fn on_message(bridge: &Arc<Bridge>, registry: &Registry, message: EioMessage) {
    let command = match message {
        EioMessage::TunnelOpen {
            id,
            from,
            target,
            origin,
        } => {
            let sid = parse_query(&target)
                .ok()
                .and_then(|q| q.sid)
                .and_then(Sid::parse)
                .filter(|sid| sid.tag() == bridge.tag);
            let Some(sid) = sid else {
                // Not an upgrade of a session of ours: the replay gets its refusal.
                return relay(bridge, from, id, target, origin);
            };
            return ask_owner(
                bridge,
                registry,
                HandoverAsk {
                    from,
                    id,
                    sid,
                    target,
                    origin,
                },
            );
        }
        EioMessage::TunnelUp {
            id,
            from,
            text,
            data,
        } => Command::TunnelUp {
            key: (from, id),
            text,
            data,
        },
        EioMessage::TunnelUpEnd { id, from } => Command::TunnelEnd { key: (from, id) },
        EioMessage::TunnelDown { id, text, data } => {
            return down(bridge, registry, id, TunnelEvent::Message { text, data });
        }
        EioMessage::TunnelDownEnd { id } => {
            return down(bridge, registry, id, TunnelEvent::End);
        }
        EioMessage::TunnelAccepted { id } => {
            bridge.counters.tunnels_out.fetch_add(1, Ordering::Relaxed);
            return down(bridge, registry, id, TunnelEvent::Accepted);
        }
        EioMessage::TunnelHandover { id, handover } => {
            bridge.counters.handovers_in.fetch_add(1, Ordering::Relaxed);
            let event = TunnelEvent::HandedOver(Box::new(handover));
            return down(bridge, registry, id, event);
        }
        _ => return,
    };
    if let Some(replayer) = super::replayer(bridge) {
        replayer.send(command);
    }
}
