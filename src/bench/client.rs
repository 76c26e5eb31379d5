//! One client connection of the load generator, and the dialer that opens them.
//!
//! A [`Client`] is a non-blocking mio `TcpStream` plus the client side of the codec: it
//! sends the opening handshake, checks the server's response head (status 101, `Upgrade`,
//! `Connection`, `Sec-WebSocket-Accept`) with [`parse_response_head`], masks every frame
//! it sends, and reads server frames with the codec's `Reader` in `Role::Client`.
//!
//! Invariants:
//! - Nothing read from the network can panic: a malformed or refused head, a protocol
//!   violation or an oversized response is an `io::Error` that fails this connection only.
//! - Frames queued in one turn go out with one `write` ([`Client::flush`]); only what the
//!   kernel refuses stays in `out`, and it is offered again on the next turn.
//! - The server's pings are answered with pongs (queued with the next flush), so a long
//!   hold is not closed by the server's idle timeout.
//! - With `--proto socketio` ([`sio`](super::sio)) the client is open only once Socket.IO
//!   is connected to `/` (open packet read, CONNECT sent, `40{"sid":…}` read), and it
//!   answers Engine.IO pings itself: the mode's visitor sees neither the handshake nor a
//!   heartbeat, only the frames that follow.
//! - [`Dialer`] bounds connects in progress and, optionally, their start rate, and binds
//!   each socket to its source address with port 0 (and `IP_BIND_ADDRESS_NO_PORT`, so
//!   the port is picked at connect time) before connecting.

use std::io::{self, Read, Write};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use crate::ws::CloseCode;
use crate::ws::frame::{FrameHead, OpCode};
use crate::ws::handshake::accept_key;
use crate::ws::mask::apply_mask;
use crate::ws::reader::{Payload, ReadConfig, Reader, Role, Visitor};

use super::report::Target;
use super::sio::{self, ClientProto, Control, Stage};

/// Client-side reader limits: the generator accepts what it sends and a bit more.
pub const CLIENT_READ: ReadConfig = ReadConfig {
    role: Role::Client,
    max_message: 64 << 20,
};

/// A response head longer than this fails the connection.
const MAX_HEAD: usize = 16 << 10;

/// A fast, non-cryptographic generator for mask keys and handshake nonces (a load
/// generator needs varied masks, not secret ones).
#[derive(Debug)]
pub struct XorShift(u64);

impl XorShift {
    /// Seeds from `salt` and the clock, so parallel threads and runs differ.
    pub fn from_time(salt: u64) -> XorShift {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        XorShift((nanos ^ salt.wrapping_mul(0x9E37_79B9_7F4A_7C15)) | 1)
    }

    pub fn next(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.0 = x;
        x
    }
}

/// Whether a connection is ready for the mode's traffic.
#[derive(Debug, PartialEq, Eq, Clone, Copy)]
pub enum Phase {
    /// The WebSocket handshake (and, over Socket.IO, the CONNECT) is under way.
    Handshaking,
    Open,
}

/// One connection: socket, phase, codec reader and unsent bytes.
#[derive(Debug)]
pub struct Client {
    pub stream: TcpStream,
    pub phase: Phase,
    /// When the connect started (for the handshake timeout).
    pub started: Instant,
    reader: Reader,
    /// Bytes not yet taken by the kernel.
    out: Vec<u8>,
    /// The response head read so far; empty once upgraded.
    head: Vec<u8>,
    expected_accept: [u8; 28],
    closed_by_peer: bool,
    /// The 101 was read: frames follow.
    upgraded: bool,
    /// The Socket.IO handshake's stage (`--proto socketio` only).
    sio: Option<Stage>,
    /// The TLS session of a `wss://` target.
    tls: Option<Box<rustls::ClientConnection>>,
}

impl Client {
    /// Starts a non-blocking connect (from `source` when given) and queues the handshake.
    pub fn connect(
        target: &Target,
        source: Option<SocketAddr>,
        rng: &mut XorShift,
    ) -> io::Result<Client> {
        let stream = open_socket(target.addr, source)?;
        let mut nonce = [0u8; 16];
        nonce[..8].copy_from_slice(&rng.next().to_le_bytes());
        nonce[8..].copy_from_slice(&rng.next().to_le_bytes());
        let key = encode_key(&nonce);
        let mut out = Vec::with_capacity(256);
        out.extend_from_slice(b"GET ");
        out.extend_from_slice(target.path.as_bytes());
        out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        out.extend_from_slice(target.host_header.as_bytes());
        out.extend_from_slice(
            b"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\
              Sec-WebSocket-Key: ",
        );
        out.extend_from_slice(&key);
        out.extend_from_slice(b"\r\n\r\n");
        Ok(Client {
            stream,
            phase: Phase::Handshaking,
            started: Instant::now(),
            reader: Reader::default(),
            out,
            head: Vec::new(),
            expected_accept: accept_key(&key),
            closed_by_peer: false,
            upgraded: false,
            sio: (target.proto == ClientProto::Socketio).then_some(Stage::AwaitOpen),
            tls: match target.tls {
                true => Some(super::tls::session(&target.server_name())?),
                false => None,
            },
        })
    }

    /// The buffer frames are queued into: callers append a frame header with a mask key,
    /// then the payload masked with that key. It is written by [`Client::flush`].
    pub fn out(&mut self) -> &mut Vec<u8> {
        &mut self.out
    }

    /// Whether the server sent its close frame.
    pub fn closed_by_peer(&self) -> bool {
        self.closed_by_peer
    }

    /// Writes what the kernel takes, in one `write` when it takes it all. `Err` on a
    /// broken connection.
    pub fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            Some(tls) => super::tls::flush(tls, &mut self.stream, &mut self.out),
            None => flush_out(&mut self.stream, &mut self.out),
        }
    }

    /// Bytes from the server (decrypted over TLS) into `buf`.
    fn read_some(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match &mut self.tls {
            Some(tls) => super::tls::read(tls, &mut self.stream, buf),
            None => self.stream.read(buf),
        }
    }

    /// Reads everything available through `scratch`, completing the handshake first and
    /// then handing frames to `visitor`. Returns `Ok(false)` on EOF.
    pub fn read<V: Visitor>(
        &mut self,
        scratch: &mut [u8],
        rng: &mut XorShift,
        visitor: &mut V,
    ) -> io::Result<bool> {
        loop {
            let n = match self.read_some(scratch) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if !self.upgraded {
                self.head.extend_from_slice(&scratch[..n]);
                let Some(end) = parse_response_head(&self.head, &self.expected_accept)
                    .map_err(io::Error::other)?
                else {
                    continue;
                };
                self.upgraded = true;
                if self.sio.is_none() {
                    self.phase = Phase::Open;
                }
                self.out.shrink_to(256);
                let mut rest = self.head.split_off(end);
                self.head = Vec::new();
                self.feed(&mut rest, rng, visitor)?;
                continue;
            }
            self.feed(&mut scratch[..n], rng, visitor)?;
            // A short plain read drained the socket; TLS reads until it would block.
            if n < scratch.len() && self.tls.is_none() {
                return Ok(true);
            }
        }
    }

    fn feed<V: Visitor>(
        &mut self,
        data: &mut [u8],
        rng: &mut XorShift,
        visitor: &mut V,
    ) -> io::Result<()> {
        let mut tee = Tee {
            inner: visitor,
            out: &mut self.out,
            rng,
            closed: false,
            sio: self.sio.as_mut(),
            failure: None,
        };
        let result = self.reader.feed(data, &CLIENT_READ, &mut tee);
        self.closed_by_peer |= tee.closed;
        let failure = tee.failure;
        result.map_err(|v| io::Error::other(format!("server broke the protocol: {v}")))?;
        if let Some(why) = failure {
            return Err(io::Error::other(why));
        }
        if self.phase == Phase::Handshaking && self.sio == Some(Stage::Connected) {
            self.phase = Phase::Open;
        }
        Ok(())
    }
}

/// Starts a non-blocking connect to `addr` (from `source` when given), without Nagle.
pub fn open_socket(addr: SocketAddr, source: Option<SocketAddr>) -> io::Result<TcpStream> {
    let domain = socket2::Domain::for_address(addr);
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.set_nonblocking(true)?;
    socket.set_tcp_nodelay(true)?;
    if let Some(src) = source {
        if src.port() == 0 {
            bind_address_no_port(&socket)?;
        }
        socket.bind(&src.into())?;
    }
    match socket.connect(&addr.into()) {
        Ok(()) => {}
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
        Err(e) => return Err(e),
    }
    Ok(TcpStream::from_std(socket.into()))
}

/// Writes what the kernel takes of `out` to `stream` and drops it from `out`; what is
/// refused stays for the next writable event. `Err` on a broken connection.
pub fn flush_out(stream: &mut TcpStream, out: &mut Vec<u8>) -> io::Result<()> {
    let mut written = 0;
    while written < out.len() {
        match stream.write(&out[written..]) {
            Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            // The connect has not finished yet: try again on the writable event.
            Err(e) if e.kind() == io::ErrorKind::NotConnected => break,
            Err(e) => return Err(e),
        }
    }
    out.drain(..written);
    Ok(())
}

/// Passes messages on to the caller's visitor and answers pings itself; over Socket.IO
/// it also runs the handshake and answers Engine.IO pings (see [`sio::control`]).
struct Tee<'a, V> {
    inner: &'a mut V,
    out: &'a mut Vec<u8>,
    rng: &'a mut XorShift,
    closed: bool,
    sio: Option<&'a mut Stage>,
    /// Why the Socket.IO layer gave up on this connection; later messages are dropped.
    failure: Option<&'static str>,
}

impl<V: Visitor> Visitor for Tee<'_, V> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        if self.failure.is_some() {
            return;
        }
        if let Some(stage) = self.sio.as_deref_mut() {
            match sio::control(*stage, text, payload.as_slice()) {
                Control::Pass => {}
                Control::Pong(data) => {
                    return queue_masked_parts(self.out, OpCode::Text, &[b"3", data], self.rng);
                }
                Control::Open => {
                    *stage = Stage::AwaitConnect;
                    return queue_masked(self.out, OpCode::Text, sio::CONNECT, self.rng);
                }
                Control::Connected => {
                    *stage = Stage::Connected;
                    return;
                }
                Control::Fail(why) => {
                    self.failure = Some(why);
                    return;
                }
            }
        }
        self.inner.message(text, payload);
    }
    fn ping(&mut self, payload: &[u8]) {
        queue_masked(self.out, OpCode::Pong, payload, self.rng);
        self.inner.ping(payload);
    }
    fn pong(&mut self, payload: &[u8]) {
        self.inner.pong(payload);
    }
    fn close(&mut self, code: Option<CloseCode>, reason: &str) {
        self.closed = true;
        self.inner.close(code, reason);
    }
}

/// A visitor that ignores everything (the connect mode's idle connections).
#[derive(Debug)]
pub struct Ignore;

impl Visitor for Ignore {
    fn message(&mut self, _: bool, _: Payload<'_>) {}
    fn ping(&mut self, _: &[u8]) {}
    fn pong(&mut self, _: &[u8]) {}
    fn close(&mut self, _: Option<CloseCode>, _: &str) {}
}

fn queue_masked(out: &mut Vec<u8>, op: OpCode, payload: &[u8], rng: &mut XorShift) {
    queue_masked_parts(out, op, &[payload], rng);
}

/// Appends one masked frame whose payload is `parts` joined (no temporary buffer).
pub fn queue_masked_parts(out: &mut Vec<u8>, op: OpCode, parts: &[&[u8]], rng: &mut XorShift) {
    let key = (rng.next() as u32).to_ne_bytes();
    let len = parts.iter().map(|p| p.len()).sum();
    out.extend_from_slice(FrameHead::new(true, op, len, Some(key)).as_bytes());
    let start = out.len();
    for p in parts {
        out.extend_from_slice(p);
    }
    apply_mask(&mut out[start..], key, 0);
}

/// Checks the server's response to the opening handshake in `buf`.
///
/// `Ok(None)`: the head is not complete yet. `Ok(Some(n))`: a valid 101 whose head is
/// the first `n` bytes (frames may follow). `Err`: refused, malformed or too long.
pub fn parse_response_head(
    buf: &[u8],
    expected_accept: &[u8; 28],
) -> Result<Option<usize>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let end = match resp.parse(buf) {
        Ok(httparse::Status::Complete(end)) => end,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Ok(None),
        Ok(httparse::Status::Partial) => {
            return Err(format!("handshake response head over {MAX_HEAD} bytes"));
        }
        Err(e) => return Err(format!("malformed handshake response: {e}")),
    };
    if end > MAX_HEAD {
        return Err(format!("handshake response head over {MAX_HEAD} bytes"));
    }
    match resp.code {
        Some(101) => {}
        code => {
            return Err(format!(
                "handshake refused: HTTP {} {}",
                code.unwrap_or(0),
                resp.reason.unwrap_or("")
            ));
        }
    }
    let header = |name: &str| {
        resp.headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case(name))
            .map(|h| h.value)
    };
    if !header("upgrade").is_some_and(|v| v.eq_ignore_ascii_case(b"websocket")) {
        return Err("handshake response lacks `Upgrade: websocket`".into());
    }
    let has_upgrade_token = header("connection").is_some_and(|v| {
        v.split(|&b| b == b',')
            .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"upgrade"))
    });
    if !has_upgrade_token {
        return Err("handshake response lacks `Connection: Upgrade`".into());
    }
    if header("sec-websocket-accept").map(<[u8]>::trim_ascii) != Some(&expected_accept[..]) {
        return Err("wrong or missing Sec-WebSocket-Accept".into());
    }
    Ok(Some(end))
}

/// Sets `IP_BIND_ADDRESS_NO_PORT`: a bind to (ip, 0) then leaves the port to `connect`,
/// which picks it per destination. Without it, each bind searches for a port that no
/// socket on that address holds, TIME_WAIT ones included, and slows down badly after a
/// few large runs.
fn bind_address_no_port(socket: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let on: libc::c_int = 1;
    // SAFETY: the fd is open for the duration of the call (we borrow its owner), and
    // `on` is a valid c_int whose size is passed as the option length.
    let rc = unsafe {
        libc::setsockopt(
            socket.as_raw_fd(),
            libc::IPPROTO_IP,
            libc::IP_BIND_ADDRESS_NO_PORT,
            (&on as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn encode_key(nonce: &[u8; 16]) -> [u8; 24] {
    use base64::Engine;
    let mut out = [0u8; 24];
    // 16 bytes always encode to exactly 24 characters.
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(nonce, &mut out);
    out
}

/// The source address of the `i`-th connection: 127.0.0.2 .. 127.0.0.(sources+1), round
/// robin. `None` when `sources` is 0 or the target is not IPv4 (the kernel picks).
pub fn source_for(i: usize, sources: usize, target: SocketAddr) -> Option<SocketAddr> {
    if sources == 0 || !target.is_ipv4() {
        return None;
    }
    let host = 2 + (i % sources) as u8;
    Some(SocketAddr::new(
        IpAddr::V4(Ipv4Addr::new(127, 0, 0, host)),
        0,
    ))
}

/// Opens connections: at most `concurrency` handshakes in progress, at most `rate` new
/// connects per second when set, source addresses round robin (see [`source_for`]).
#[derive(Debug)]
pub struct Dialer {
    target: Target,
    sources: usize,
    concurrency: usize,
    rate: Option<f64>,
    began: Instant,
    /// Connects started so far.
    pub started: usize,
    /// Handshakes in progress.
    pub in_progress: usize,
}

impl Dialer {
    pub fn new(target: Target, sources: usize, concurrency: usize, rate: Option<f64>) -> Dialer {
        Dialer {
            target,
            sources,
            concurrency: concurrency.max(1),
            rate: rate.filter(|r| *r > 0.0),
            began: Instant::now(),
            started: 0,
            in_progress: 0,
        }
    }

    /// Whether another connect may start now; if only the rate holds it back, also how
    /// long until it may.
    pub fn ready(&self, now: Instant) -> Result<(), Option<Duration>> {
        if self.in_progress >= self.concurrency {
            return Err(None);
        }
        match self.rate {
            None => Ok(()),
            Some(rate) => {
                let due = self.began + Duration::from_secs_f64(self.started as f64 / rate);
                if now >= due {
                    Ok(())
                } else {
                    Err(Some(due - now))
                }
            }
        }
    }

    /// Starts the next connect. A failure to even start counts as started, not in progress.
    pub fn dial(&mut self, rng: &mut XorShift) -> io::Result<Client> {
        self.dial_with(|target, source| Client::connect(target, source, rng))
    }

    /// Starts the next connection with `open` (given the target and the source address
    /// to use), counted as [`Dialer::dial`] counts.
    pub fn dial_with<T>(
        &mut self,
        open: impl FnOnce(&Target, Option<SocketAddr>) -> io::Result<T>,
    ) -> io::Result<T> {
        let source = source_for(self.started, self.sources, self.target.addr);
        self.started += 1;
        let opened = open(&self.target, source)?;
        self.in_progress += 1;
        Ok(opened)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const KEY: &[u8] = b"dGhlIHNhbXBsZSBub25jZQ==";
    const ACCEPT: &[u8] = b"s3pPLMBiTxaQ9kYGzzhZRbK+xOo=";

    fn accept() -> [u8; 28] {
        let a = accept_key(KEY);
        assert_eq!(&a[..], ACCEPT, "RFC 6455 section 1.3 example");
        a
    }

    #[test]
    fn a_valid_101_is_accepted_and_its_length_returned() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: WebSocket\r\n\
                     Connection: keep-alive, Upgrade\r\n\
                     Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        let mut with_frame = head.to_vec();
        with_frame.extend_from_slice(b"\x81\x02hi");
        assert_eq!(
            parse_response_head(&with_frame, &accept()),
            Ok(Some(head.len()))
        );
    }

    #[test]
    fn an_incomplete_head_waits_for_more() {
        let head = b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n";
        for cut in 0..head.len() {
            assert_eq!(
                parse_response_head(&head[..cut], &accept()),
                Ok(None),
                "cut {cut}"
            );
        }
    }

    #[test]
    fn refusals_and_bad_heads_fail() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            b"HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: AAAAAAAAAAAAAAAAAAAAAAAAAAA=\r\n\r\n",
            b"HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
            b"HTTP/1.1 101 x\r\nConnection: Upgrade\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            b"HTTP/1.1 101 x\r\nUpgrade: websocket\r\nConnection: close\r\n\
              Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"\x81\x05hello",
        ];
        for case in cases {
            assert!(
                parse_response_head(case, &accept()).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
    }

    #[test]
    fn an_endless_head_fails_at_the_bound() {
        let mut head = b"HTTP/1.1 101 x\r\n".to_vec();
        while head.len() <= MAX_HEAD {
            head.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaa\r\n");
        }
        assert!(parse_response_head(&head, &accept()).is_err());
    }

    #[test]
    fn keys_are_24_base64_characters() {
        let key = encode_key(&[7u8; 16]);
        assert!(key.ends_with(b"=="));
        assert!(
            key.iter()
                .all(|b| b.is_ascii_alphanumeric() || b"+/=".contains(b))
        );
    }

    #[test]
    fn sources_go_round_robin_from_127_0_0_2() {
        let v4: SocketAddr = "127.0.0.1:80".parse().unwrap();
        let v6: SocketAddr = "[::1]:80".parse().unwrap();
        let ip = |i| source_for(i, 3, v4).map(|a| a.ip().to_string());
        assert_eq!(ip(0).as_deref(), Some("127.0.0.2"));
        assert_eq!(ip(2).as_deref(), Some("127.0.0.4"));
        assert_eq!(ip(3).as_deref(), Some("127.0.0.2"));
        assert_eq!(source_for(5, 3, v4).map(|a| a.port()), Some(0));
        assert_eq!(source_for(0, 0, v4), None);
        assert_eq!(source_for(0, 3, v6), None);
    }

    #[test]
    fn the_dialer_bounds_concurrency_and_rate() {
        let target = Target {
            addr: "127.0.0.1:9".parse().unwrap(),
            host_header: "127.0.0.1:9".into(),
            path: "/".into(),
            proto: ClientProto::Ws,
            tls: false,
        };
        let mut d = Dialer::new(target.clone(), 0, 2, None);
        let now = Instant::now();
        d.in_progress = 2;
        assert_eq!(d.ready(now), Err(None));
        d.in_progress = 1;
        assert_eq!(d.ready(now), Ok(()));

        let mut d = Dialer::new(target, 0, 100, Some(10.0));
        let t0 = d.began;
        assert_eq!(d.ready(t0), Ok(()));
        d.started = 5; // the 6th is due 0.5 s after the start
        assert_eq!(
            d.ready(t0 + Duration::from_millis(200)),
            Err(Some(Duration::from_millis(300)))
        );
        assert_eq!(d.ready(t0 + Duration::from_millis(500)), Ok(()));
    }

    /// Collects messages (text flag and bytes).
    #[derive(Default)]
    struct Seen(Vec<(bool, Vec<u8>)>);

    impl Visitor for Seen {
        fn message(&mut self, text: bool, p: Payload<'_>) {
            self.0.push((text, p.as_slice().to_vec()));
        }
        fn ping(&mut self, _: &[u8]) {}
        fn pong(&mut self, _: &[u8]) {}
        fn close(&mut self, _: Option<CloseCode>, _: &str) {}
    }

    /// What a Socket.IO client's `Tee` made of some server frames.
    struct TeeRun {
        /// What reached the mode.
        seen: Vec<Vec<u8>>,
        /// What the client queued, unmasked.
        sent: Vec<Vec<u8>>,
        stage: Stage,
        failure: Option<&'static str>,
    }

    /// Runs `frames` (server text frames) through a Socket.IO client's `Tee` from
    /// `AwaitOpen`.
    fn through_sio_tee(frames: &[&[u8]]) -> TeeRun {
        let mut wire = Vec::new();
        for f in frames {
            wire.extend_from_slice(FrameHead::new(true, OpCode::Text, f.len(), None).as_bytes());
            wire.extend_from_slice(f);
        }
        let (mut seen, mut out, mut stage) = (Seen::default(), Vec::new(), Stage::AwaitOpen);
        let mut rng = XorShift::from_time(3);
        let mut tee = Tee {
            inner: &mut seen,
            out: &mut out,
            rng: &mut rng,
            closed: false,
            sio: Some(&mut stage),
            failure: None,
        };
        Reader::default()
            .feed(&mut wire, &CLIENT_READ, &mut tee)
            .unwrap();
        let failure = tee.failure;
        let server = ReadConfig {
            role: Role::Server,
            max_message: 1 << 10,
        };
        let mut sent = Seen::default();
        Reader::default()
            .feed(&mut out, &server, &mut sent)
            .unwrap();
        assert!(sent.0.iter().all(|(text, _)| *text));
        let texts = |v: Seen| v.0.into_iter().map(|(_, b)| b).collect();
        TeeRun {
            seen: texts(seen),
            sent: texts(sent),
            stage,
            failure,
        }
    }

    #[test]
    fn socketio_handshake_and_heartbeat_stay_inside_the_client() {
        let open: &[u8] = br#"0{"sid":"s","upgrades":[],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        let TeeRun {
            seen,
            sent,
            stage,
            failure,
        } = through_sio_tee(&[
            open,
            b"2",
            br#"40{"sid":"a"}"#,
            b"2",
            br#"42["echo","x"]"#,
            b"2probe",
            br#"43[]"#,
        ]);
        assert_eq!(failure, None);
        assert_eq!(stage, Stage::Connected);
        assert_eq!(seen, vec![br#"42["echo","x"]"#.to_vec(), b"43[]".to_vec()]);
        let want: Vec<Vec<u8>> = [&b"40"[..], b"3", b"3", b"3probe"]
            .iter()
            .map(|b| b.to_vec())
            .collect();
        assert_eq!(sent, want, "CONNECT, then a pong per ping");
    }

    #[test]
    fn a_refused_socketio_connect_fails_the_connection() {
        let TeeRun {
            seen,
            sent,
            stage,
            failure,
        } = through_sio_tee(&[
            br#"0{"sid":"s"}"#,
            br#"44{"message":"Invalid namespace"}"#,
            br#"42["echo","x"]"#,
        ]);
        assert!(failure.is_some_and(|f| f.contains("refused")));
        assert_eq!(stage, Stage::AwaitConnect);
        assert!(seen.is_empty(), "nothing reaches the mode after a failure");
        assert_eq!(sent, vec![b"40".to_vec()]);
    }
}
