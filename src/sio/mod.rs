//! A Socket.IO v5 server over Engine.IO v4, as a worker `App`: namespaces with
//! middleware and event handlers (frozen at start, shared by every worker, no lock),
//! sockets per connection, rooms on the fabric, acks both ways, binary attachments.
//!
//! Transports: WebSocket (`/socket.io/?EIO=4&transport=websocket`). HTTP long-polling
//! and the upgrade are not served yet: a polling request is answered like a server
//! without that transport (400, code 0 "Transport unknown").
//!
//! Rooms: a socket's rooms live in its worker's fabric index under
//! `<namespace>\0<room>`; every socket is also in `<namespace>\0` (the namespace-wide
//! room) and `<namespace>\0<id>` (its own id). Broadcast packets are encoded once and
//! shared by every recipient on every core.
//!
//! Invariants: per connection, at most `Config::max_namespaces` sockets and
//! `Config::max_pending_acks` acks awaited; a connection with no CONNECT within
//! `connect_timeout` is closed; a protocol error closes that connection only.

mod conn;
mod cx;
pub mod registry;

use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::engineio::packet::{Open, encode_open};
use crate::engineio::request::{ErrorCode, Transport, check_handshake, parse_query};
use crate::engineio::session::{self, Session};
use crate::engineio::sid::{SID_RANDOM_BYTES, Sid};
use crate::http::Request;
use crate::http::response::Answer;
use crate::runtime::ConnId;
use crate::worker::{App, Conns, Outbox};
use crate::ws::{CloseCode, Payload};

pub use cx::{AckReply, Cx, Event};
pub use registry::{ConnectError, Handshake, Namespace, Registry};

use conn::ConnState;

/// The path Socket.IO is served at.
pub const PATH: &str = "/socket.io/";

/// Timing and bounds of a Socket.IO server.
#[derive(Clone, Copy, Debug)]
pub struct Config {
    pub ping_interval: Duration,
    pub ping_timeout: Duration,
    /// Advertised to clients; the WebSocket message limit is the worker's `max_message`.
    pub max_payload: usize,
    pub connect_timeout: Duration,
    pub max_namespaces: usize,
    pub max_pending_acks: usize,
    /// Attachments per binary packet (Node's decoder allows 10).
    pub max_attachments: usize,
    /// Bytes of a CONNECT's auth kept for the socket.
    pub max_auth_bytes: usize,
}

impl Default for Config {
    /// Node's defaults.
    fn default() -> Config {
        Config {
            ping_interval: Duration::from_secs(25),
            ping_timeout: Duration::from_secs(20),
            max_payload: 1_000_000,
            connect_timeout: Duration::from_secs(45),
            max_namespaces: 32,
            max_pending_acks: 1024,
            max_attachments: 10,
            max_auth_bytes: 4096,
        }
    }
}

/// One worker's Socket.IO server.
pub struct Server {
    config: Config,
    registry: Arc<Registry>,
    worker: usize,
    /// Indexed by connection slot.
    conns: Vec<Option<ConnState>>,
    random: Vec<u8>,
}

impl Server {
    pub fn new(config: Config, registry: Arc<Registry>, worker: usize) -> Server {
        Server {
            config,
            registry,
            worker,
            conns: Vec::new(),
            random: Vec::new(),
        }
    }

    /// `n` bytes from the kernel's CSPRNG, fetched 4 KiB at a time.
    fn random(&mut self, n: usize) -> Vec<u8> {
        if self.random.len() < n {
            let mut fresh = vec![0u8; 4096];
            if crate::runtime::system::random_bytes(&mut fresh).is_err() {
                tracing::error!("getrandom failed; ids fall back to the clock");
                let t = Instant::now().elapsed().as_nanos().to_le_bytes();
                fresh
                    .iter_mut()
                    .zip(t.iter().cycle())
                    .for_each(|(b, t)| *b ^= t);
            }
            self.random.extend_from_slice(&fresh);
        }
        self.random.split_off(self.random.len() - n)
    }

    fn new_sid(&mut self) -> Sid {
        let mut bytes = [0u8; SID_RANDOM_BYTES];
        bytes.copy_from_slice(&self.random(SID_RANDOM_BYTES));
        Sid::new(self.worker, bytes)
    }

    fn state(&mut self, id: ConnId) -> Option<&mut ConnState> {
        self.conns
            .get_mut(id.slot as usize)?
            .as_mut()
            .filter(|c| c.generation == id.generation)
    }

    fn session_config(&self) -> session::Config {
        session::Config {
            ping_interval: self.config.ping_interval,
            ping_timeout: self.config.ping_timeout,
            ..session::Config::default()
        }
    }
}

fn refusal(code: ErrorCode) -> Answer {
    Answer {
        status: code.status(),
        content_type: "application/json",
        body: code.body().into_bytes(),
    }
}

impl App for Server {
    fn serves_path(&self, path: &str) -> bool {
        path == PATH
    }

    fn check_request(&mut self, req: &Request<'_>) -> Result<(), Answer> {
        let query = parse_query(req.target).map_err(refusal)?;
        if query.transport == Transport::Polling {
            // Not served yet: answered as by a server without this transport.
            return Err(refusal(ErrorCode::TransportUnknown));
        }
        if query.sid.is_some() {
            // Only polling sessions are upgraded with a sid, and there are none.
            return Err(refusal(ErrorCode::UnknownSid));
        }
        check_handshake(&query, req.method == "GET", req.upgrade.is_some()).map_err(refusal)
    }

    fn on_open(&mut self, out: &mut Outbox<'_>, _req: &Request<'_>) {
        let now = Instant::now();
        let sid = self.new_sid();
        let mut packet = Vec::with_capacity(128);
        encode_open(
            &Open {
                sid: sid.as_str(),
                can_upgrade: false,
                ping_interval_ms: self.config.ping_interval.as_millis() as u64,
                ping_timeout_ms: self.config.ping_timeout.as_millis() as u64,
                max_payload: self.config.max_payload,
            },
            &mut packet,
        );
        out.send(true, &packet);
        let id = out.id();
        let slot = id.slot as usize;
        if self.conns.len() <= slot {
            self.conns.resize_with(slot + 1, || None);
        }
        self.conns[slot] = Some(ConnState::new(
            id.generation,
            Session::new(Transport::WebSocket, self.session_config(), now),
            now + self.config.connect_timeout,
        ));
    }

    fn on_message(&mut self, out: &mut Outbox<'_>, text: bool, payload: Payload<'_>) {
        let id = out.id();
        let config = self.config;
        let registry = Arc::clone(&self.registry);
        let mut fresh_ids = Vec::new();
        // Ids for sockets a CONNECT in this message may create.
        if text && payload.as_slice().get(..2) == Some(b"40") {
            fresh_ids = self.random(SID_RANDOM_BYTES);
        }
        let Some(state) = self.state(id).filter(|s| !s.closing) else {
            return;
        };
        state.on_message(
            out,
            &config,
            &registry,
            text,
            payload.as_slice(),
            &fresh_ids,
            Instant::now(),
        );
        if out.is_closing() {
            state.closing = true;
        }
    }

    fn on_close(&mut self, id: ConnId) {
        if let Some(entry) = self.conns.get_mut(id.slot as usize)
            && entry
                .as_ref()
                .is_some_and(|c| c.generation == id.generation)
        {
            *entry = None;
        }
    }

    fn on_sweep(&mut self, conns: &mut Conns<'_>, now: Instant) {
        let registry = Arc::clone(&self.registry);
        for (slot, entry) in self.conns.iter_mut().enumerate() {
            let Some(state) = entry.as_mut() else {
                continue;
            };
            let id = ConnId {
                slot: slot as u32,
                generation: state.generation,
            };
            let max_acks = self.config.max_pending_acks;
            if let Some(reason) = state.on_timer(conns, id, &registry, max_acks, now) {
                state.closing = true;
                conns.close(id, CloseCode::NORMAL, reason);
            }
        }
    }
}
