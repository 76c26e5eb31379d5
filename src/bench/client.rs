//! One client connection of the load generator: non-blocking connect, the opening
//! handshake (the server's `Sec-WebSocket-Accept` is checked), masked frames out, the
//! codec's `Reader` in client role for frames in.

use std::io::{self, Read, Write};
use std::net::SocketAddr;

use mio::net::TcpStream;

use crate::ws::frame::{FrameHead, OpCode};
use crate::ws::handshake::accept_key;
use crate::ws::mask::apply_mask;
use crate::ws::reader::{ReadConfig, Reader, Role, Visitor};

use super::report::Target;

/// Client-side reader limits: the generator accepts what it sends and a bit more.
pub const CLIENT_READ: ReadConfig = ReadConfig {
    role: Role::Client,
    max_message: 64 << 20,
};

/// A fast, non-cryptographic generator for mask keys and handshake nonces (a load
/// generator needs varied masks, not secret ones).
pub struct XorShift(u64);

impl XorShift {
    pub fn seeded(seed: u64) -> XorShift {
        XorShift(seed | 1)
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

#[derive(Debug, PartialEq, Eq)]
pub enum Phase {
    Handshaking,
    Open,
}

pub struct Client {
    pub stream: TcpStream,
    pub phase: Phase,
    pub reader: Reader,
    /// Bytes not yet taken by the kernel.
    pub out: Vec<u8>,
    head: Vec<u8>,
    expected_accept: [u8; 28],
}

impl Client {
    /// Starts a non-blocking connect (from `source` when given) and queues the handshake.
    pub fn connect(
        target: &Target,
        source: Option<SocketAddr>,
        rng: &mut XorShift,
    ) -> io::Result<Client> {
        let domain = socket2::Domain::for_address(target.addr);
        let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
        socket.set_nonblocking(true)?;
        socket.set_tcp_nodelay(true)?;
        if let Some(src) = source {
            socket.bind(&src.into())?;
        }
        match socket.connect(&target.addr.into()) {
            Ok(()) => {}
            Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => {}
            Err(e) => return Err(e),
        }
        let stream = TcpStream::from_std(socket.into());
        let nonce = [rng.next().to_le_bytes(), rng.next().to_le_bytes()].concat();
        let key = base64_16(&nonce);
        let request = format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
             Sec-WebSocket-Key: {}\r\nSec-WebSocket-Version: 13\r\n\r\n",
            target.path,
            target.host_header,
            std::str::from_utf8(&key).unwrap_or_default()
        );
        Ok(Client {
            stream,
            phase: Phase::Handshaking,
            reader: Reader::default(),
            out: request.into_bytes(),
            head: Vec::new(),
            expected_accept: accept_key(&key),
        })
    }

    /// Appends one masked frame to the out buffer.
    pub fn queue_frame(&mut self, op: OpCode, payload: &[u8], rng: &mut XorShift) {
        let key = (rng.next() as u32).to_ne_bytes();
        let head = FrameHead::new(true, op, payload.len(), Some(key));
        self.out.extend_from_slice(head.as_bytes());
        let start = self.out.len();
        self.out.extend_from_slice(payload);
        apply_mask(&mut self.out[start..], key, 0);
    }

    /// Writes what the kernel takes. `Err` on a broken connection.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut written = 0;
        while written < self.out.len() {
            match self.stream.write(&self.out[written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) if e.kind() == io::ErrorKind::NotConnected => break, // still connecting
                Err(e) => return Err(e),
            }
        }
        self.out.drain(..written);
        Ok(())
    }

    /// Reads everything available into `scratch` and hands frames to `visitor`.
    /// Returns `Ok(false)` on EOF.
    pub fn read<V: Visitor>(&mut self, scratch: &mut [u8], visitor: &mut V) -> io::Result<bool> {
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            let data = &mut scratch[..n];
            if self.phase == Phase::Handshaking {
                self.head.extend_from_slice(data);
                let Some(end) = find_head_end(&self.head) else {
                    if self.head.len() > 16 << 10 {
                        return Err(io::Error::other("handshake response too long"));
                    }
                    continue;
                };
                self.check_response(&self.head[..end])?;
                self.phase = Phase::Open;
                let mut rest = self.head.split_off(end);
                self.head = Vec::new();
                self.reader
                    .feed(&mut rest, &CLIENT_READ, visitor)
                    .map_err(|v| io::Error::other(format!("server broke the protocol: {v}")))?;
                continue;
            }
            self.reader
                .feed(data, &CLIENT_READ, visitor)
                .map_err(|v| io::Error::other(format!("server broke the protocol: {v}")))?;
            if n < scratch.len() {
                return Ok(true);
            }
        }
    }

    fn check_response(&self, head: &[u8]) -> io::Result<()> {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(head) {
            Ok(httparse::Status::Complete(_)) => {}
            _ => return Err(io::Error::other("malformed handshake response")),
        }
        if resp.code != Some(101) {
            return Err(io::Error::other(format!(
                "handshake refused: HTTP {}",
                resp.code.unwrap_or(0)
            )));
        }
        let accept = resp
            .headers
            .iter()
            .find(|h| h.name.eq_ignore_ascii_case("sec-websocket-accept"))
            .map(|h| h.value);
        if accept != Some(&self.expected_accept[..]) {
            return Err(io::Error::other("wrong Sec-WebSocket-Accept"));
        }
        Ok(())
    }
}

fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn base64_16(bytes: &[u8]) -> [u8; 24] {
    use base64::Engine;
    let mut out = [0u8; 24];
    let _ = base64::engine::general_purpose::STANDARD.encode_slice(&bytes[..16], &mut out);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn head_end_is_found_after_the_blank_line() {
        assert_eq!(find_head_end(b"HTTP/1.1 101 x\r\n\r\n\x81\x00"), Some(18));
        assert_eq!(find_head_end(b"HTTP/1.1 101 x\r\n"), None);
    }

    #[test]
    fn nonce_is_a_valid_key() {
        let key = base64_16(&[7u8; 16]);
        assert_eq!(key.len(), 24);
        assert!(key.ends_with(b"=="));
    }
}
