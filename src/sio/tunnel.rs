//! WebSocket upgrades of sessions owned by another process (sticky-free polling over a
//! Redis bus): the upgrade is accepted here and the connection becomes the landing end
//! of a tunnel to the owner (`Relay::open_tunnel`). The owner answers first:
//! - relayed (`TunnelEvent::Accepted`): it runs the session as if the client had
//!   reached it; the client's messages go up the tunnel, the owner's come back as
//!   `Tunneled` messages and are sent as they are;
//! - handed over (`TunnelEvent::HandedOver`, `handover.rs`): the session is made here
//!   and the connection is its upgrade probe, local from then on.
//!
//! Until the answer, the client's messages wait here (at most `MAX_EARLY` of them and
//! `MAX_EARLY_BYTES`; past either, the connection closes).
//!
//! Invariants: a connection is in `tunnels` from its upgrade until it closes, the
//! owner's side ends or the session is handed over, whichever comes first, and the
//! other side is told once; a message from the owner reaches only the connection its
//! tunnel was opened for (matched by id).

use crate::engineio::request::Query;
use crate::engineio::sid::{ProcessTag, Sid};
use crate::http::Request;
use crate::runtime::ConnId;
use crate::worker::{Conns, Outbox};
use crate::ws::CloseCode;

use super::Server;
use super::io::{TunnelEvent, Tunneled};

/// Client messages that wait for the owner's answer, at most.
const MAX_EARLY: usize = 64;
/// Bytes of them, at most.
const MAX_EARLY_BYTES: usize = 1 << 20;

/// A relayed connection.
pub(super) struct Tunnel {
    id: u64,
    owner: ProcessTag,
    /// The owner relays it: the client's messages go up as they come.
    accepted: bool,
    /// The client's messages before the owner's answer, in order.
    early: Vec<(bool, Vec<u8>)>,
    early_bytes: usize,
}

impl Server {
    /// The owner of `query`'s sid when it is another process's session.
    pub(super) fn foreign_owner(&self, query: &Query<'_>) -> Option<ProcessTag> {
        let sid = Sid::parse(query.sid?)?;
        self.is_foreign(&sid).then(|| sid.tag())
    }

    /// Whether an upgrade for another process's session can be relayed now.
    pub(super) fn can_tunnel(&self) -> bool {
        self.registry
            .io_ref()
            .relay()
            .is_some_and(|relay| relay.can_tunnel())
    }

    /// The upgrade `req` for a session of `owner` was accepted on `out`: the tunnel
    /// opens (or the connection closes at once when it cannot).
    pub(super) fn open_tunnel(
        &mut self,
        out: &mut Outbox<'_>,
        req: &Request<'_>,
        owner: ProcessTag,
    ) {
        let origin = req.origin.map(|o| String::from_utf8_lossy(o).into_owned());
        let io = self.registry.io_ref();
        let opened = io.relay().and_then(|relay| {
            relay.open_tunnel(
                &owner,
                req.target,
                origin.as_deref(),
                (self.worker, out.id()),
            )
        });
        match opened {
            Some(id) => {
                let tunnel = Tunnel {
                    id,
                    owner,
                    accepted: false,
                    early: Vec::new(),
                    early_bytes: 0,
                };
                self.tunnels.insert(out.id(), tunnel);
            }
            None => out.close(CloseCode::GOING_AWAY, "session unreachable"),
        }
    }

    /// A client's message on relayed connection `out`: `false` when it is not one.
    pub(super) fn tunnel_up(&mut self, out: &mut Outbox<'_>, text: bool, data: &[u8]) -> bool {
        let Some(tunnel) = self.tunnels.get_mut(&out.id()) else {
            return false;
        };
        if !tunnel.accepted {
            let room = tunnel.early.len() < MAX_EARLY
                && tunnel.early_bytes + data.len() <= MAX_EARLY_BYTES;
            if room {
                tunnel.early_bytes += data.len();
                tunnel.early.push((text, data.to_vec()));
            } else {
                self.forget_tunnel(out.id());
                out.close(CloseCode::GOING_AWAY, "session unreachable");
            }
            return true;
        }
        let (id, owner) = (tunnel.id, tunnel.owner);
        let io = self.registry.io_ref();
        let sent = io
            .relay()
            .is_some_and(|relay| relay.tunnel_up(&owner, id, text, data));
        if !sent {
            self.tunnels.remove(&out.id());
            out.close(CloseCode::GOING_AWAY, "session unreachable");
        }
        true
    }

    /// Relayed connection `conn` closed: the owner is told.
    pub(super) fn forget_tunnel(&mut self, conn: ConnId) {
        if let Some(tunnel) = self.tunnels.remove(&conn)
            && let Some(relay) = self.registry.io_ref().relay()
        {
            relay.end_tunnel(&tunnel.owner, tunnel.id);
        }
    }

    /// The owner's side of a tunnel: its answer, a message for its connection, or the
    /// end.
    pub(super) fn on_tunneled(&mut self, conns: &mut Conns<'_>, tunneled: Tunneled) {
        let Tunneled { conn, id, event } = tunneled;
        if self.tunnels.get(&conn).is_none_or(|t| t.id != id) {
            if let TunnelEvent::HandedOver(handover) = event
                && let Some(sid) = Sid::parse(&handover.sid)
            {
                // The client left before its session came: it is gone with it.
                self.registry.io_ref().forget_adopted(&sid);
            }
            return; // An older tunnel's, on a slot that has moved on.
        }
        match event {
            TunnelEvent::Accepted => {
                let Some(tunnel) = self.tunnels.get_mut(&conn) else {
                    return;
                };
                tunnel.accepted = true;
                let (owner, early) = (tunnel.owner, std::mem::take(&mut tunnel.early));
                tunnel.early_bytes = 0;
                let io = self.registry.io_ref();
                let sent = io.relay().is_some_and(|relay| {
                    early
                        .iter()
                        .all(|(text, data)| relay.tunnel_up(&owner, id, *text, data))
                });
                if !sent {
                    self.tunnels.remove(&conn);
                    conns.close(conn, CloseCode::GOING_AWAY, "session unreachable");
                }
            }
            TunnelEvent::HandedOver(handover) => {
                let early = self
                    .tunnels
                    .remove(&conn)
                    .map(|t| t.early)
                    .unwrap_or_default();
                self.adopt_session(conns, conn, *handover, early);
            }
            TunnelEvent::Message { text, data } => {
                conns.with(conn, |out| out.send(text, &data));
            }
            TunnelEvent::End => {
                self.tunnels.remove(&conn);
                conns.close(conn, CloseCode::NORMAL, "session closed");
            }
        }
    }
}
