//! WebSocket upgrades of sessions owned by another process, relayed over the bus as a
//! tunnel (sticky-free polling's last step: the upgrade lands wherever the load
//! balancer sends it).
//!
//! Landing side (here: `open`, `up`, `end`, and `TunnelDown*` messages): the client's
//! WebSocket is accepted here; its messages go to the owner, and the owner's come back
//! to the worker holding the connection as `Tunneled` messages.
//!
//! Owner side (`TunnelOpen`/`TunnelUp*` messages, served by `replay.rs`): the upgrade is
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
use crate::engineio::sid::ProcessTag;
use crate::runtime::ConnId;
use crate::sio::{Registry, TunnelEvent, Tunneled};

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
    bridge.counters.tunnels_out.fetch_add(1, Ordering::Relaxed);
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

/// Landing side: the owner's message or end for tunnel `id`, to its connection.
fn down(bridge: &Bridge, registry: &Registry, id: u64, event: TunnelEvent) {
    let to = match event {
        TunnelEvent::End => forget(bridge, id),
        TunnelEvent::Message { .. } => bridge
            .tunnels
            .open
            .lock()
            .ok()
            .and_then(|open| open.get(&id).copied()),
    };
    if let Some((worker, conn)) = to {
        let _ = registry
            .io()
            .post_app(worker, Box::new(Tunneled { conn, id, event }));
    }
}

/// A tunnel message on this process's own channel.
pub(super) fn on_message(bridge: &Arc<Bridge>, registry: &Registry, message: EioMessage) {
    let command = match message {
        EioMessage::TunnelOpen {
            id,
            from,
            target,
            origin,
        } => Command::TunnelOpen {
            key: (from, id),
            target,
            origin,
        },
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
        _ => return,
    };
    let opening = match &command {
        Command::TunnelOpen { key, .. } => Some(*key),
        _ => None,
    };
    let taken = super::replayer(bridge).is_some_and(|r| r.send(command));
    if !taken && let Some((from, id)) = opening {
        bridge.send_eio(&from, &EioMessage::TunnelDownEnd { id });
    }
}
