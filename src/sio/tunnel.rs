//! WebSocket upgrades of sessions owned by another process (sticky-free polling over a
//! Redis bus): the upgrade is accepted here and the connection becomes the landing end
//! of a tunnel to the owner (`Relay::open_tunnel`), which runs the session as if the
//! client had reached it. The client's messages go up the tunnel as they arrive; the
//! owner's come back as `Tunneled` messages and are sent as they are.
//!
//! Invariants: a connection is in `tunnels` from its upgrade until it closes or the
//! owner's side ends, whichever comes first, and the other side is told once; a message
//! from the owner reaches only the connection its tunnel was opened for (matched by id).

use crate::engineio::request::Query;
use crate::engineio::sid::{ProcessTag, Sid};
use crate::http::Request;
use crate::runtime::ConnId;
use crate::worker::{Conns, Outbox};
use crate::ws::CloseCode;

use super::Server;
use super::io::{TunnelEvent, Tunneled};

/// A relayed connection: its tunnel's id and the owner's tag.
pub(super) type Tunnel = (u64, ProcessTag);

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
                self.tunnels.insert(out.id(), (id, owner));
            }
            None => out.close(CloseCode::GOING_AWAY, "session unreachable"),
        }
    }

    /// A client's message on relayed connection `out`: `false` when it is not one.
    pub(super) fn tunnel_up(&mut self, out: &mut Outbox<'_>, text: bool, data: &[u8]) -> bool {
        let Some(&(id, owner)) = self.tunnels.get(&out.id()) else {
            return false;
        };
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
        if let Some((id, owner)) = self.tunnels.remove(&conn)
            && let Some(relay) = self.registry.io_ref().relay()
        {
            relay.end_tunnel(&owner, id);
        }
    }

    /// The owner's side of a tunnel: a message for its connection, or the end.
    pub(super) fn on_tunneled(&mut self, conns: &mut Conns<'_>, tunneled: Tunneled) {
        let Tunneled { conn, id, event } = tunneled;
        if self.tunnels.get(&conn).is_none_or(|&(open, _)| open != id) {
            return; // An older tunnel's, on a slot that has moved on.
        }
        match event {
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
