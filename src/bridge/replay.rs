//! The owner's side of sticky-free polling: requests and WebSocket tunnels that other
//! processes forward here are replayed on loopback connections to this process's own
//! listener, all driven by one thread with a `mio` loop (no thread per request).
//!
//! A forwarded polling request is written as an HTTP/1.1 request with
//! `Connection: close`; its answer is read to the end and sent back (`ans`), or `fail`
//! when it cannot be had. A tunnel is a WebSocket client: the upgrade, then the landing
//! process's messages written as masked frames and the server's messages read and sent
//! back (`wsd`), pings answered; it ends (`wsde`) when either side does.
//!
//! Invariants: at most `MAX_JOBS` loopback connections at once (two descriptors each in
//! this process: ours and the one the listener accepted), more are refused at once; a
//! job's unwritten bytes are bounded (`MAX_BACKLOG`, past it a tunnel ends), and so is
//! what it reads (`MAX_ANSWER`, `MAX_MESSAGE`); every job has a deadline (a request: the
//! longest long-poll plus `SLACK`; a tunnel: silence for that long), so none lingers;
//! the landing side learns a job's end exactly once.

use std::collections::HashMap;
use std::io::{self, Read, Write};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::sync::mpsc::{Receiver, Sender, TryRecvError, channel};
use std::time::{Duration, Instant};

use base64::Engine as _;
use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use super::Bridge;
use super::eio::EioMessage;
use crate::engineio::sid::ProcessTag;
use crate::sio::{ForwardedRequest, RelayedAnswer};
use crate::ws::close::ClosePayload;
use crate::ws::mask::apply_mask;
use crate::ws::{CloseCode, FrameHead, OpCode, Payload, ReadConfig, Reader, Role, Visitor};

/// Loopback connections served at once for other processes.
pub const MAX_JOBS: usize = 4096;
/// How much longer than the server's longest long-poll a job may wait for bytes.
const SLACK: Duration = Duration::from_secs(10);
/// Largest answer relayed back (Socket.IO's default maxPayload is 1 MB).
const MAX_ANSWER: usize = 16 << 20;
/// Largest message relayed either way through a tunnel.
const MAX_MESSAGE: usize = 16 << 20;
/// Bytes a job may have waiting for the loopback socket.
const MAX_BACKLOG: usize = 32 << 20;
/// A tunnel's messages kept while its upgrade is under way.
const MAX_EARLY: usize = 64;
/// Header lines of a replayed answer that the sending side writes itself.
const OWN_HEADERS: [&str; 5] = [
    "content-length",
    "content-type",
    "connection",
    "keep-alive",
    "transfer-encoding",
];

const WAKE: Token = Token(usize::MAX);

/// What the bus asks of the loop.
pub(super) enum Command {
    Request {
        id: u64,
        from: ProcessTag,
        request: ForwardedRequest,
    },
    TunnelOpen {
        key: (ProcessTag, u64),
        target: String,
        origin: Option<String>,
    },
    TunnelUp {
        key: (ProcessTag, u64),
        text: bool,
        data: Vec<u8>,
    },
    TunnelEnd {
        key: (ProcessTag, u64),
    },
}

/// The handle the subscriber uses: commands in, the loop woken.
pub(super) struct Replayer {
    commands: Sender<Command>,
    waker: Arc<Waker>,
}

impl Replayer {
    /// Starts the loop's thread for `bridge`.
    pub fn start(bridge: Arc<Bridge>) -> io::Result<Replayer> {
        let poll = Poll::new()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKE)?);
        let (commands, inbox) = channel();
        std::thread::Builder::new()
            .name("throng-replay".into())
            .spawn(move || Loop::new(bridge, poll, inbox).run())?;
        Ok(Replayer { commands, waker })
    }

    /// Hands `command` to the loop; `false` when the loop is gone.
    pub fn send(&self, command: Command) -> bool {
        self.commands.send(command).is_ok() && self.waker.wake().is_ok()
    }
}

/// Whether `request` is a polling request this process would take from a client: GET
/// or POST on the Socket.IO path, and nothing in its fields that could end a header
/// line (a message on the bus must not be able to write its own request).
pub(super) fn replayable(request: &ForwardedRequest) -> bool {
    let header = |s: &Option<String>| s.as_deref().is_none_or(clean_header);
    matches!(request.method.as_str(), "GET" | "POST")
        && request.target.starts_with(crate::sio::PATH)
        && clean_target(&request.target)
        && header(&request.origin)
        && header(&request.content_type)
}

/// Whether `target` is a WebSocket upgrade of a session, clean as `replayable` says.
pub(super) fn tunnelable(target: &str, origin: Option<&str>) -> bool {
    target.starts_with(crate::sio::PATH)
        && clean_target(target)
        && target.contains("transport=websocket")
        && target.contains("sid=")
        && origin.is_none_or(clean_header)
}

fn clean_target(s: &str) -> bool {
    !s.bytes().any(|b| b.is_ascii_control() || b == b' ')
}

fn clean_header(s: &str) -> bool {
    !s.bytes().any(|b| b == b'\r' || b == b'\n' || b == 0)
}

/// An HTTP answer's status, content type, other header lines and body; `None` when it
/// is not whole.
pub(super) fn parse_answer(raw: &[u8]) -> Option<RelayedAnswer> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut response = httparse::Response::new(&mut headers);
    let httparse::Status::Complete(head_len) = response.parse(raw).ok()? else {
        return None;
    };
    let mut answer = RelayedAnswer {
        status: response.code?,
        content_type: String::new(),
        extra: Vec::new(),
        body: Vec::new(),
    };
    let mut length = None;
    for h in response.headers.iter() {
        let name = h.name.to_ascii_lowercase();
        match name.as_str() {
            "content-type" => answer.content_type = String::from_utf8_lossy(h.value).into(),
            "content-length" => length = std::str::from_utf8(h.value).ok()?.trim().parse().ok(),
            _ if OWN_HEADERS.contains(&name.as_str()) => {}
            _ => {
                answer.extra.extend_from_slice(h.name.as_bytes());
                answer.extra.extend_from_slice(b": ");
                answer.extra.extend_from_slice(h.value);
                answer.extra.extend_from_slice(b"\r\n");
            }
        }
    }
    let body = &raw[head_len..];
    let length = length.unwrap_or(body.len());
    if length > body.len() {
        return None; // Cut short (past MAX_ANSWER, or the connection broke).
    }
    answer.body = body[..length].to_vec();
    Some(answer)
}

/// The WebSocket upgrade of `target` as a client sends it to `local`.
fn upgrade_request(local: std::net::SocketAddr, target: &str, origin: Option<&str>) -> Vec<u8> {
    let mut nonce = [0u8; 16];
    // Any 16 bytes do: the answer's accept key is not checked on loopback.
    let _ = crate::runtime::system::random_bytes(&mut nonce);
    let mut out = format!(
        "GET {target} HTTP/1.1\r\nHost: {local}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: {}\r\n",
        base64::engine::general_purpose::STANDARD.encode(nonce)
    );
    if let Some(origin) = origin {
        out.push_str(&format!("Origin: {origin}\r\n"));
    }
    out.push_str("\r\n");
    out.into_bytes()
}

/// A fresh masking key per frame, from a xorshift seeded once per thread (the frames
/// go to our own listener on loopback: RFC 6455's unpredictability guards proxies,
/// and a getrandom call per relayed message would be a syscall on the hot path).
fn next_mask() -> [u8; 4] {
    thread_local! {
        static STATE: std::cell::Cell<u32> = std::cell::Cell::new({
            let seed = super::random6();
            u32::from_le_bytes([seed[0], seed[1], seed[2], seed[3]]) | 1
        });
    }
    STATE.with(|state| {
        let mut x = state.get();
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        state.set(x);
        x.to_le_bytes()
    })
}

/// A masked client frame carrying `data`.
fn client_frame(opcode: OpCode, data: &[u8], out: &mut Vec<u8>) {
    let mask = next_mask();
    let head = FrameHead::new(true, opcode, data.len(), Some(mask));
    out.extend_from_slice(head.as_bytes());
    let start = out.len();
    out.extend_from_slice(data);
    apply_mask(&mut out[start..], mask, 0);
}

fn message_frame(text: bool, data: &[u8], out: &mut Vec<u8>) {
    client_frame(if text { OpCode::Text } else { OpCode::Binary }, data, out);
}

enum Kind {
    /// A forwarded polling request: its answer is read to the end.
    Request { id: u64, from: ProcessTag },
    /// A tunnel: upgrading (`reader` is `None`, `early` holds the client's messages),
    /// then open.
    Tunnel {
        key: (ProcessTag, u64),
        reader: Option<Reader>,
        early: Vec<(bool, Vec<u8>)>,
        /// The landing side ended it: closing, nothing more is sent back.
        ended_there: bool,
    },
}

struct Job {
    stream: TcpStream,
    kind: Kind,
    /// Bytes for the loopback socket, not yet written.
    out: Vec<u8>,
    /// Bytes read and not yet used.
    got: Vec<u8>,
    deadline: Instant,
}

struct Loop {
    bridge: Arc<Bridge>,
    poll: Poll,
    inbox: Receiver<Command>,
    jobs: Slab<Job>,
    tunnels: HashMap<(ProcessTag, u64), usize>,
    idle: Duration,
}

impl Loop {
    fn new(bridge: Arc<Bridge>, poll: Poll, inbox: Receiver<Command>) -> Loop {
        let idle = bridge.long_poll + SLACK;
        Loop {
            bridge,
            poll,
            inbox,
            jobs: Slab::new(),
            tunnels: HashMap::new(),
            idle,
        }
    }

    fn run(mut self) {
        let mut events = Events::with_capacity(256);
        let mut next_sweep = Instant::now() + Duration::from_secs(1);
        loop {
            let wait = next_sweep.saturating_duration_since(Instant::now());
            if let Err(e) = self.poll.poll(&mut events, Some(wait))
                && e.kind() != io::ErrorKind::Interrupted
            {
                tracing::error!(error = %e, "the replay loop failed: forwarding stops");
                return;
            }
            for event in events.iter() {
                if event.token() != WAKE {
                    self.on_ready(event.token().0);
                }
            }
            loop {
                match self.inbox.try_recv() {
                    Ok(command) => self.on_command(command),
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => return,
                }
            }
            if Instant::now() >= next_sweep {
                self.sweep();
                next_sweep = Instant::now() + Duration::from_secs(1);
            }
        }
    }

    fn on_command(&mut self, command: Command) {
        match command {
            Command::Request { id, from, request } => self.start_request(id, from, &request),
            Command::TunnelOpen {
                key,
                target,
                origin,
            } => self.start_tunnel(key, &target, origin.as_deref()),
            Command::TunnelUp { key, text, data } => {
                let Some(&job) = self.tunnels.get(&key) else {
                    return;
                };
                self.tunnel_up(job, text, &data);
            }
            Command::TunnelEnd { key } => {
                let Some(job) = self.tunnels.remove(&key) else {
                    return;
                };
                self.bridge.tunnels.set_serving(self.tunnels.len());
                self.end_there(job);
            }
        }
    }

    /// Connects a job to the listener and registers it; `None` when it cannot.
    fn connect(&mut self, kind: Kind, out: Vec<u8>) -> Option<usize> {
        if self.jobs.len() >= MAX_JOBS {
            return None;
        }
        let mut stream = TcpStream::connect(self.bridge.local).ok()?;
        let _ = stream.set_nodelay(true);
        let entry = self.jobs.vacant_entry();
        let key = entry.key();
        self.poll
            .registry()
            .register(
                &mut stream,
                Token(key),
                Interest::READABLE | Interest::WRITABLE,
            )
            .ok()?;
        entry.insert(Job {
            stream,
            kind,
            out,
            got: Vec::new(),
            deadline: Instant::now() + self.idle,
        });
        Some(key)
    }

    fn start_request(&mut self, id: u64, from: ProcessTag, request: &ForwardedRequest) {
        let bridge = Arc::clone(&self.bridge);
        if !replayable(request) {
            bridge.send_eio(&from, &EioMessage::Failed { id });
            return;
        }
        let mut out = format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\nContent-Length: {}\r\n",
            request.method,
            request.target,
            bridge.local,
            request.body.len()
        );
        if let Some(origin) = &request.origin {
            out.push_str(&format!("Origin: {origin}\r\n"));
        }
        if let Some(ctype) = &request.content_type {
            out.push_str(&format!("Content-Type: {ctype}\r\n"));
        }
        out.push_str("\r\n");
        let mut out = out.into_bytes();
        out.extend_from_slice(&request.body);
        match self.connect(Kind::Request { id, from }, out) {
            Some(_) => {
                bridge.send_eio(&from, &EioMessage::Accepted { id });
            }
            None => {
                bridge.send_eio(&from, &EioMessage::Failed { id });
            }
        }
    }

    fn start_tunnel(&mut self, key: (ProcessTag, u64), target: &str, origin: Option<&str>) {
        let bridge = Arc::clone(&self.bridge);
        let (from, id) = key;
        let admitted = !self.tunnels.contains_key(&key) && tunnelable(target, origin);
        let kind = Kind::Tunnel {
            key,
            reader: None,
            early: Vec::new(),
            ended_there: false,
        };
        let job = admitted
            .then(|| self.connect(kind, upgrade_request(bridge.local, target, origin)))
            .flatten();
        match job {
            Some(job) => {
                self.tunnels.insert(key, job);
                bridge.counters.tunnels_in.fetch_add(1, Ordering::Relaxed);
                bridge.tunnels.set_serving(self.tunnels.len());
            }
            None => {
                bridge
                    .counters
                    .tunnel_failures
                    .fetch_add(1, Ordering::Relaxed);
                bridge.send_eio(&from, &EioMessage::TunnelDownEnd { id });
            }
        }
    }

    fn tunnel_up(&mut self, job: usize, text: bool, data: &[u8]) {
        let Some(j) = self.jobs.get_mut(job) else {
            return;
        };
        let Kind::Tunnel { reader, early, .. } = &mut j.kind else {
            return;
        };
        let over = if reader.is_none() {
            early.push((text, data.to_vec()));
            early.len() > MAX_EARLY
        } else {
            message_frame(text, data, &mut j.out);
            j.out.len() > MAX_BACKLOG
        };
        if over || data.len() > MAX_MESSAGE {
            return self.finish(job);
        }
        self.flush(job);
    }

    /// The landing side ended tunnel `job`: a close frame, then the end of our writes.
    fn end_there(&mut self, job: usize) {
        let Some(j) = self.jobs.get_mut(job) else {
            return;
        };
        if let Kind::Tunnel {
            reader,
            ended_there,
            ..
        } = &mut j.kind
        {
            *ended_there = true;
            if reader.is_none() {
                return self.finish(job);
            }
            let close = ClosePayload::new(CloseCode::NORMAL, "");
            client_frame(OpCode::Close, close.as_bytes(), &mut j.out);
            // The server answers the close and ends the connection; bounded by 1 s.
            j.deadline = Instant::now() + Duration::from_secs(1);
        }
        self.flush(job);
    }

    fn on_ready(&mut self, job: usize) {
        self.flush(job);
        self.read(job);
    }

    /// Writes what job `job` has waiting, as far as the socket takes it.
    fn flush(&mut self, job: usize) {
        let Some(j) = self.jobs.get_mut(job) else {
            return;
        };
        while !j.out.is_empty() {
            match j.stream.write(&j.out) {
                Ok(0) => return self.finish(job),
                Ok(n) => {
                    j.out.drain(..n);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                // Not connected yet, or gone: reading finds out which.
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => return self.finish(job),
            }
        }
    }

    /// Reads what job `job`'s socket has, and acts on it.
    fn read(&mut self, job: usize) {
        let mut chunk = [0u8; 16 << 10];
        loop {
            let Some(j) = self.jobs.get_mut(job) else {
                return;
            };
            match j.stream.read(&mut chunk) {
                Ok(0) => return self.finish(job),
                Ok(n) => {
                    j.got.extend_from_slice(&chunk[..n]);
                    j.deadline = Instant::now() + self.idle;
                    if !self.consume(job) {
                        return self.finish(job);
                    }
                    self.flush(job);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => return,
                Err(_) => return self.finish(job),
            }
        }
    }

    /// Uses what job `job` has read; `false`: it is over.
    fn consume(&mut self, job: usize) -> bool {
        let bridge = Arc::clone(&self.bridge);
        let Some(j) = self.jobs.get_mut(job) else {
            return false;
        };
        match &mut j.kind {
            // Read to the end (the request said `Connection: close`).
            Kind::Request { .. } => j.got.len() <= MAX_ANSWER,
            Kind::Tunnel {
                key,
                reader,
                early,
                ended_there,
            } => {
                if reader.is_none() {
                    let Some(end) = j.got.windows(4).position(|w| w == b"\r\n\r\n") else {
                        return j.got.len() < 16 << 10;
                    };
                    if !j.got.starts_with(b"HTTP/1.1 101 ") {
                        return false;
                    }
                    j.got.drain(..end + 4);
                    *reader = Some(Reader::default());
                    for (text, data) in std::mem::take(early) {
                        message_frame(text, &data, &mut j.out);
                    }
                }
                let Some(reader) = reader.as_mut() else {
                    return false;
                };
                let mut down = Downstream {
                    bridge: &bridge,
                    key: *key,
                    silent: *ended_there,
                    pongs: Vec::new(),
                    over: false,
                };
                let config = ReadConfig {
                    role: Role::Client,
                    max_message: MAX_MESSAGE,
                };
                let mut got = std::mem::take(&mut j.got);
                let fed = reader.feed(&mut got, &config, &mut down);
                j.out.extend_from_slice(&down.pongs);
                fed.is_ok() && !down.over
            }
        }
    }

    /// Ends job `job`: its answer (a request) or its end (a tunnel) goes back once.
    fn finish(&mut self, job: usize) {
        if !self.jobs.contains(job) {
            return;
        }
        let mut j = self.jobs.remove(job);
        let _ = self.poll.registry().deregister(&mut j.stream);
        let bridge = Arc::clone(&self.bridge);
        match j.kind {
            Kind::Request { id, from } => {
                let message = match parse_answer(&j.got) {
                    Some(answer) => EioMessage::Answer { id, answer },
                    None => {
                        tracing::debug!("a forwarded polling request failed here");
                        EioMessage::Failed { id }
                    }
                };
                bridge.send_eio(&from, &message);
            }
            Kind::Tunnel {
                key, ended_there, ..
            } => {
                if self.tunnels.get(&key) == Some(&job) {
                    self.tunnels.remove(&key);
                }
                bridge.tunnels.set_serving(self.tunnels.len());
                if !ended_there {
                    let (from, id) = key;
                    bridge.send_eio(&from, &EioMessage::TunnelDownEnd { id });
                }
            }
        }
    }

    /// Ends the jobs whose deadline passed.
    fn sweep(&mut self) {
        let now = Instant::now();
        let late: Vec<usize> = self
            .jobs
            .iter()
            .filter(|(_, j)| j.deadline <= now)
            .map(|(k, _)| k)
            .collect();
        for job in late {
            self.finish(job);
        }
    }
}

/// The server's side of a tunnel, read on the loopback WebSocket.
struct Downstream<'a> {
    bridge: &'a Bridge,
    key: (ProcessTag, u64),
    /// The landing side is gone: nothing goes back.
    silent: bool,
    /// Pong frames to write.
    pongs: Vec<u8>,
    over: bool,
}

impl Visitor for Downstream<'_> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        if self.silent || self.over {
            return;
        }
        let (from, id) = self.key;
        let message = EioMessage::TunnelDown {
            id,
            text,
            data: payload.as_slice().to_vec(),
        };
        // A message the bus cannot take ends the tunnel: none is lost silently.
        self.over = !self.bridge.send_eio(&from, &message);
    }

    fn ping(&mut self, payload: &[u8]) {
        client_frame(OpCode::Pong, payload, &mut self.pongs);
    }

    fn pong(&mut self, _payload: &[u8]) {}

    fn close(&mut self, _code: Option<CloseCode>, _reason: &str) {
        self.over = true;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_answer_keeps_its_status_type_headers_and_body() {
        let raw = b"HTTP/1.1 400 Bad Request\r\nContent-Type: application/json\r\n\
            Content-Length: 41\r\nAccess-Control-Allow-Origin: *\r\nConnection: close\r\n\r\n\
            {\"code\":1,\"message\":\"Session ID unknown\"}";
        let a = parse_answer(raw).unwrap();
        assert_eq!(a.status, 400);
        assert_eq!(a.content_type, "application/json");
        assert_eq!(a.extra, b"Access-Control-Allow-Origin: *\r\n");
        assert_eq!(a.body, br#"{"code":1,"message":"Session ID unknown"}"#);
        assert_eq!(parse_answer(b"HTTP/1.1 200"), None);
    }

    #[test]
    fn only_clean_polling_requests_are_replayed() {
        let ok = ForwardedRequest {
            method: "POST".into(),
            target: "/socket.io/?EIO=4&transport=polling&sid=x".into(),
            origin: Some("https://a.example".into()),
            content_type: Some("text/plain;charset=UTF-8".into()),
            body: b"40".to_vec(),
        };
        assert!(replayable(&ok));
        let bad = |f: &dyn Fn(&mut ForwardedRequest)| {
            let mut r = ok.clone();
            f(&mut r);
            assert!(!replayable(&r), "{r:?}");
        };
        bad(&|r| r.method = "DELETE".into());
        bad(&|r| r.method = "GET /x HTTP/1.1\r\nX:".into());
        bad(&|r| r.target = "/admin/drain".into());
        bad(&|r| r.target = "/socket.io/ HTTP/1.1\r\nHost: x\r\n\r\nGET /".into());
        bad(&|r| r.origin = Some("a\r\nX-Injected: 1".into()));
        bad(&|r| r.content_type = Some("text/plain\nX: 1".into()));
    }

    #[test]
    fn only_clean_websocket_upgrades_are_tunneled() {
        let ok = "/socket.io/?EIO=4&transport=websocket&sid=abc";
        assert!(tunnelable(ok, None));
        assert!(tunnelable(ok, Some("https://a.example")));
        assert!(!tunnelable(
            "/socket.io/?EIO=4&transport=polling&sid=abc",
            None
        ));
        assert!(!tunnelable("/socket.io/?EIO=4&transport=websocket", None));
        assert!(!tunnelable("/admin/drain?transport=websocket&sid=a", None));
        assert!(!tunnelable(
            "/socket.io/?transport=websocket&sid=a HTTP/1.1\r\nX: y",
            None
        ));
        assert!(!tunnelable(ok, Some("a\r\nX-Injected: 1")));
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
        let mut frame = Vec::new();
        message_frame(true, b"2probe", &mut frame);
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
