//! WebSocket upgrades of sessions owned by another process, relayed over the bus as a
//! tunnel (sticky-free polling's last step: the upgrade lands wherever the load
//! balancer sends it).
//!
//! Landing side (`open`, `up`, `end`, and `TunnelDown*` messages): the client's
//! WebSocket is accepted here; its messages go to the owner, and the owner's come back
//! to the worker holding the connection as `Tunneled` messages.
//!
//! Owner side (`TunnelOpen`/`TunnelUp*` messages): the upgrade is replayed as a
//! WebSocket client on a loopback connection to this process's own listener, so every
//! session rule (the probe, the upgrade, the one-transport rule, the worker owning the
//! session) applies as for a local client. The client's messages are written to it as
//! masked frames; a thread per tunnel reads the server's messages and sends them back.
//!
//! Invariants: at most `MAX_SERVED` tunnels are served here at once (each holds a thread
//! and a loopback connection) and at most `MAX_OPEN` are open from here; messages that
//! arrive before the loopback upgrade completes are kept, at most `MAX_EARLY`; a message
//! that cannot be sent on the bus ends its tunnel (a tunnel never loses a message and
//! goes on); each side learns of the other's end once, and forgets the tunnel then.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;

use super::Bridge;
use super::eio::{self, EioMessage};
use crate::engineio::sid::ProcessTag;
use crate::runtime::ConnId;
use crate::sio::{Registry, TunnelEvent, Tunneled};
use crate::ws::close::ClosePayload;
use crate::ws::mask::apply_mask;
use crate::ws::{CloseCode, FrameHead, OpCode, Payload, ReadConfig, Reader, Role, Visitor};

/// Tunnels served here for other processes at once (a thread each).
pub const MAX_SERVED: usize = 256;
/// Tunnels open from here at once.
const MAX_OPEN: usize = 16_384;
/// A client's messages kept while the loopback upgrade is under way.
const MAX_EARLY: usize = 64;
/// Largest message relayed either way (Socket.IO's default maxPayload is 1 MB).
const MAX_MESSAGE: usize = 16 << 20;
/// Loopback connect, upgrade and write bound.
const LOOPBACK_TIMEOUT: Duration = Duration::from_secs(5);

/// A tunnel served here: its loopback WebSocket, once upgraded.
enum Served {
    Opening(Vec<(bool, Vec<u8>)>),
    Open(TcpStream),
}

/// Both sides' tunnels.
#[derive(Default)]
pub(super) struct Tunnels {
    next: AtomicU64,
    /// Opened from here: id → the worker and connection of the client.
    open: Mutex<HashMap<u64, (usize, ConnId)>>,
    /// Served here: (landing process, its id) → the loopback WebSocket.
    served: Mutex<HashMap<(ProcessTag, u64), Served>>,
}

impl Tunnels {
    /// Whether one more tunnel may be opened from here.
    pub fn has_room(&self) -> bool {
        self.open.lock().is_ok_and(|open| open.len() < MAX_OPEN)
    }

    /// Tunnels open now: (from here, served here).
    pub fn counts(&self) -> (usize, usize) {
        let open = self.open.lock().map_or(0, |open| open.len());
        let served = self.served.lock().map_or(0, |served| served.len());
        (open, served)
    }
}

fn send(bridge: &Bridge, to: &ProcessTag, message: &EioMessage) -> bool {
    bridge.enqueue(eio::channel(&bridge.wire.key, to), eio::encode(message))
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
    if !send(bridge, owner, &message) {
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
    if send(bridge, owner, &message) {
        return true;
    }
    end(bridge, owner, id);
    false
}

/// Landing side: the client of tunnel `id` is gone.
pub(super) fn end(bridge: &Bridge, owner: &ProcessTag, id: u64) {
    if forget(bridge, id).is_some() {
        let from = bridge.tag;
        send(bridge, owner, &EioMessage::TunnelUpEnd { id, from });
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
    match message {
        EioMessage::TunnelOpen {
            id,
            from,
            target,
            origin,
        } => serve(bridge, from, id, target, origin),
        EioMessage::TunnelUp {
            id,
            from,
            text,
            data,
        } => to_owner(bridge, (from, id), text, &data),
        EioMessage::TunnelUpEnd { id, from } => close_served(bridge, (from, id)),
        EioMessage::TunnelDown { id, text, data } => {
            down(bridge, registry, id, TunnelEvent::Message { text, data });
        }
        EioMessage::TunnelDownEnd { id } => down(bridge, registry, id, TunnelEvent::End),
        _ => {}
    }
}

/// Whether `target` is a WebSocket upgrade of a session this process would take from
/// a client, with nothing that could end the request line, and `origin` clean.
fn replayable(target: &str, origin: Option<&str>) -> bool {
    let clean = |s: &str| !s.bytes().any(|b| b.is_ascii_control() || b == b' ');
    target.starts_with(crate::sio::PATH)
        && clean(target)
        && target.contains("transport=websocket")
        && target.contains("sid=")
        && origin.is_none_or(|o| !o.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0))
}

/// Owner side: opens the loopback WebSocket for tunnel `key` on a thread of its own.
fn serve(bridge: &Arc<Bridge>, from: ProcessTag, id: u64, target: String, origin: Option<String>) {
    let key = (from, id);
    let admitted = replayable(&target, origin.as_deref())
        && bridge.tunnels.served.lock().is_ok_and(|mut served| {
            if served.len() >= MAX_SERVED || served.contains_key(&key) {
                return false;
            }
            served.insert(key, Served::Opening(Vec::new()));
            true
        });
    if !admitted {
        bridge
            .counters
            .tunnel_failures
            .fetch_add(1, Ordering::Relaxed);
        send(bridge, &from, &EioMessage::TunnelDownEnd { id });
        return;
    }
    bridge.counters.tunnels_in.fetch_add(1, Ordering::Relaxed);
    let owner = Arc::clone(bridge);
    let spawned = std::thread::Builder::new()
        .name("throng-ws-tunnel".into())
        .stack_size(128 << 10)
        .spawn(move || {
            if let Err(e) = run(&owner, key, &target, origin.as_deref()) {
                tracing::debug!(error = %e, "a relayed WebSocket ended here");
            }
            let was_open = owner
                .tunnels
                .served
                .lock()
                .ok()
                .and_then(|mut served| served.remove(&key))
                .is_some();
            if was_open {
                send(&owner, &from, &EioMessage::TunnelDownEnd { id });
            }
        });
    if spawned.is_err() {
        if let Ok(mut served) = bridge.tunnels.served.lock() {
            served.remove(&key);
        }
        send(bridge, &from, &EioMessage::TunnelDownEnd { id });
    }
}

/// A masked client frame carrying `data`.
fn client_frame(opcode: OpCode, data: &[u8]) -> Vec<u8> {
    let mask = super::random6();
    let mask = [mask[0], mask[1], mask[2], mask[3]];
    let head = FrameHead::new(true, opcode, data.len(), Some(mask));
    let mut frame = Vec::with_capacity(head.as_bytes().len() + data.len());
    frame.extend_from_slice(head.as_bytes());
    let start = frame.len();
    frame.extend_from_slice(data);
    apply_mask(&mut frame[start..], mask, 0);
    frame
}

fn message_frame(text: bool, data: &[u8]) -> Vec<u8> {
    client_frame(if text { OpCode::Text } else { OpCode::Binary }, data)
}

/// Owner side: a client's message for tunnel `key`, written to its loopback WebSocket
/// (or kept while it opens). A write that fails ends the tunnel.
fn to_owner(bridge: &Bridge, key: (ProcessTag, u64), text: bool, data: &[u8]) {
    let Ok(mut served) = bridge.tunnels.served.lock() else {
        return;
    };
    let failed = match served.get_mut(&key) {
        None => return,
        Some(Served::Opening(early)) if early.len() < MAX_EARLY && data.len() <= MAX_MESSAGE => {
            early.push((text, data.to_vec()));
            false
        }
        Some(Served::Opening(_)) => true,
        Some(Served::Open(stream)) => stream.write_all(&message_frame(text, data)).is_err(),
    };
    if failed && let Some(Served::Open(stream)) = served.remove(&key) {
        // The reading thread sees the end and tells the landing side.
        let _ = stream.shutdown(Shutdown::Both);
    }
}

/// Owner side: the client of tunnel `key` is gone; the loopback WebSocket ends.
fn close_served(bridge: &Bridge, key: (ProcessTag, u64)) {
    let removed = bridge
        .tunnels
        .served
        .lock()
        .ok()
        .and_then(|mut served| served.remove(&key));
    if let Some(Served::Open(mut stream)) = removed {
        let close = ClosePayload::new(CloseCode::NORMAL, "");
        let _ = stream.write_all(&client_frame(OpCode::Close, close.as_bytes()));
        let _ = stream.shutdown(Shutdown::Write);
    }
}

/// Owner side, on the tunnel's thread: upgrades on loopback, hands the socket to
/// `to_owner`, then relays the server's messages until either side ends.
fn run(
    bridge: &Bridge,
    key: (ProcessTag, u64),
    target: &str,
    origin: Option<&str>,
) -> std::io::Result<()> {
    let mut stream = TcpStream::connect_timeout(&bridge.local, LOOPBACK_TIMEOUT)?;
    stream.set_nodelay(true)?;
    stream.set_write_timeout(Some(LOOPBACK_TIMEOUT))?;
    stream.set_read_timeout(Some(LOOPBACK_TIMEOUT))?;
    let mut nonce = [0u8; 16];
    // Any 16 bytes do: the answer's accept key is not checked on loopback.
    let _ = crate::runtime::system::random_bytes(&mut nonce);
    let mut head = format!(
        "GET {target} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n",
        bridge.local,
        base64::engine::general_purpose::STANDARD.encode(nonce)
    );
    if let Some(origin) = origin {
        head.push_str(&format!("Origin: {origin}\r\n"));
    }
    head.push_str("\r\n");
    stream.write_all(head.as_bytes())?;
    let mut buf = vec![0u8; 64 << 10];
    let mut have = 0;
    let head_end = loop {
        let n = stream.read(&mut buf[have..])?;
        if n == 0 {
            return Err(std::io::ErrorKind::UnexpectedEof.into());
        }
        have += n;
        if let Some(end) = buf[..have].windows(4).position(|w| w == b"\r\n\r\n") {
            break end + 4;
        }
        if have == buf.len() {
            return Err(std::io::ErrorKind::InvalidData.into());
        }
    };
    if !buf.starts_with(b"HTTP/1.1 101 ") {
        return Err(std::io::Error::other("the upgrade was refused here"));
    }
    // A session pings at least every pingInterval: silence past a long-poll is a loss.
    stream.set_read_timeout(Some(bridge.long_poll + LOOPBACK_TIMEOUT))?;
    {
        let mut served = bridge
            .tunnels
            .served
            .lock()
            .map_err(|_| std::io::Error::other("poisoned"))?;
        let Some(entry) = served.get_mut(&key) else {
            return Ok(()); // The client left meanwhile.
        };
        if let Served::Opening(early) = entry {
            for (text, data) in std::mem::take(early) {
                stream.write_all(&message_frame(text, &data))?;
            }
        }
        *entry = Served::Open(stream.try_clone()?);
    }
    let mut reader = Reader::default();
    let config = ReadConfig {
        role: Role::Client,
        max_message: MAX_MESSAGE,
    };
    let mut relay = Downstream {
        bridge,
        key,
        pings: Vec::new(),
        ended: false,
    };
    let mut start = head_end;
    loop {
        if start < have {
            let fed = reader.feed(&mut buf[start..have], &config, &mut relay);
            if fed.is_err() || relay.ended {
                return Ok(());
            }
        }
        for ping in std::mem::take(&mut relay.pings) {
            relay.write(&client_frame(OpCode::Pong, &ping));
        }
        start = 0;
        have = stream.read(&mut buf)?;
        if have == 0 {
            return Ok(());
        }
    }
}

/// The server's side of a tunnel, read on the loopback WebSocket.
struct Downstream<'a> {
    bridge: &'a Bridge,
    key: (ProcessTag, u64),
    pings: Vec<Vec<u8>>,
    ended: bool,
}

impl Downstream<'_> {
    /// Writes `frame` through the shared writer (the subscriber writes there too).
    fn write(&self, frame: &[u8]) {
        if let Ok(mut served) = self.bridge.tunnels.served.lock()
            && let Some(Served::Open(stream)) = served.get_mut(&self.key)
        {
            let _ = stream.write_all(frame);
        }
    }
}

impl Visitor for Downstream<'_> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        if self.ended {
            return;
        }
        let (from, id) = self.key;
        let message = EioMessage::TunnelDown {
            id,
            text,
            data: payload.as_slice().to_vec(),
        };
        if !send(self.bridge, &from, &message) {
            self.ended = true;
        }
    }

    fn ping(&mut self, payload: &[u8]) {
        self.pings.push(payload.to_vec());
    }

    fn pong(&mut self, _payload: &[u8]) {}

    fn close(&mut self, _code: Option<CloseCode>, _reason: &str) {
        self.ended = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_clean_websocket_upgrades_are_replayed() {
        let ok = "/socket.io/?EIO=4&transport=websocket&sid=abc";
        assert!(replayable(ok, None));
        assert!(replayable(ok, Some("https://a.example")));
        assert!(!replayable(
            "/socket.io/?EIO=4&transport=polling&sid=abc",
            None
        ));
        assert!(!replayable("/socket.io/?EIO=4&transport=websocket", None));
        assert!(!replayable("/admin/drain?transport=websocket&sid=a", None));
        assert!(!replayable(
            "/socket.io/?transport=websocket&sid=a HTTP/1.1\r\nX: y",
            None
        ));
        assert!(!replayable(ok, Some("a\r\nX-Injected: 1")));
    }

    #[test]
    fn a_client_frame_is_masked_and_reads_back() {
        struct Got(Vec<(bool, Vec<u8>)>);
        impl Visitor for Got {
            fn message(&mut self, text: bool, payload: Payload<'_>) {
                self.0.push((text, payload.as_slice().to_vec()));
            }
            fn ping(&mut self, _: &[u8]) {}
            fn pong(&mut self, _: &[u8]) {}
            fn close(&mut self, _: Option<CloseCode>, _: &str) {}
        }
        let mut frame = message_frame(true, b"2probe");
        assert_eq!(frame[1] & 0x80, 0x80, "masked");
        let mut got = Got(Vec::new());
        let config = ReadConfig {
            role: Role::Server,
            max_message: 1 << 20,
        };
        Reader::default()
            .feed(&mut frame, &config, &mut got)
            .expect("a valid frame");
        assert_eq!(got.0, vec![(true, b"2probe".to_vec())]);
    }
}
