//! Helpers for end-to-end tests: start the real `throng` binary on a free loopback port,
//! and a raw WebSocket client over std TCP that can send any frame, legal or not.
//! Every read has a timeout, so no test can hang.
#![allow(dead_code)]

use std::io::{Read, Write};
use std::net::{Shutdown, TcpListener, TcpStream};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

pub const IO_TIMEOUT: Duration = Duration::from_secs(5);

/// A running `throng serve`, stopped (SIGTERM, then SIGKILL) when dropped.
pub struct Server {
    pub port: u16,
    pub child: Child,
}

/// The driver end-to-end tests run the server with: `THRONG_TEST_DRIVER` (`epoll`, the
/// default, or `uring`). With `uring` on a kernel that cannot run it, the test binary
/// panics at its first server with the probe's reason: a skip must be said, not silent.
pub fn test_driver() -> String {
    static PROBED: std::sync::OnceLock<Result<(), String>> = std::sync::OnceLock::new();
    let driver = std::env::var("THRONG_TEST_DRIVER").unwrap_or_else(|_| "epoll".into());
    if driver == "uring" {
        // On a thread of its own: a thread that has used io_uring gets task work from the
        // kernel when its ring goes, which interrupts its blocking reads (EINTR under
        // SO_RCVTIMEO) - and the test threads read sockets with timeouts.
        let probed = PROBED.get_or_init(|| {
            std::thread::spawn(|| {
                use throng::runtime::uring::{Tuning, probe};
                let tuning = Tuning::from_env().map_err(|e| e.to_string())?;
                probe(&tuning).map_err(|e| e.to_string())
            })
            .join()
            .unwrap_or_else(|_| Err("the probe panicked".into()))
        });
        if let Err(e) = probed {
            panic!("THRONG_TEST_DRIVER=uring but this kernel cannot run it: {e}");
        }
    }
    driver
}

/// `test_driver()` as a config value, for servers run inside the test process.
pub fn driver_kind() -> throng::config::DriverKind {
    match test_driver().as_str() {
        "uring" => throng::config::DriverKind::Uring,
        _ => throng::config::DriverKind::Epoll,
    }
}

pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("free port")
}

impl Server {
    /// `throng serve` (`--app echo --workers 2` unless `extra` says otherwise) with
    /// `extra` flags; waits until it accepts TCP.
    pub fn start(extra: &[&str]) -> Server {
        Server::start_env(extra, &[])
    }

    /// `start`, with `env` set for the server.
    pub fn start_env(extra: &[&str], env: &[(&str, &str)]) -> Server {
        let port = free_port();
        let port_s = port.to_string();
        let mut args = vec!["serve", "--host", "127.0.0.1", "--port", &port_s];
        if !extra.contains(&"--app") {
            args.extend(["--app", "echo"]);
        }
        if !extra.contains(&"--workers") {
            args.extend(["--workers", "2"]);
        }
        let driver = test_driver();
        if !extra.contains(&"--driver") {
            args.extend(["--driver", driver.as_str()]);
        }
        args.extend_from_slice(extra);
        // THRONG_TEST_SERVER_LOG=DIR keeps each server's log in DIR/PORT.log, at the level
        // THRONG_TEST_RUST_LOG says (default warn).
        let log = std::env::var_os("THRONG_TEST_SERVER_LOG").map(|dir| {
            let path = std::path::Path::new(&dir).join(format!("{port}.log"));
            Stdio::from(std::fs::File::create(path).expect("server log file"))
        });
        let child = Command::new(env!("CARGO_BIN_EXE_throng"))
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("THRONG_TEST_RUST_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .envs(env.iter().copied())
            .stdout(Stdio::null())
            .stderr(log.unwrap_or_else(Stdio::null))
            .spawn()
            .expect("spawn throng");
        let server = Server { port, child };
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(
                Instant::now() < deadline,
                "server did not listen within 10 s"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        server
    }

    pub fn url(&self) -> String {
        format!("ws://127.0.0.1:{}/", self.port)
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Sends SIGTERM and waits (bounded) for the exit status.
    pub fn terminate(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        // SAFETY: kill(2) on our own child's pid; no memory is involved.
        unsafe { libc::kill(self.child.id() as i32, libc::SIGTERM) };
        self.wait_exit(within)
    }

    /// Waits (bounded) for the process to exit on its own.
    pub fn wait_exit(&mut self, within: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + within;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        None
    }

    pub fn is_alive(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if self.is_alive() && self.terminate(Duration::from_secs(5)).is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// A frame as read from the server.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    pub fin: bool,
    pub rsv: u8,
    pub opcode: u8,
    pub masked: bool,
    pub payload: Vec<u8>,
}

/// What ended a read: a message, a close frame, EOF or a timeout.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Got {
    Message(u8, Vec<u8>),
    Close(Option<u16>),
    Eof,
    Timeout,
}

/// Builds a client frame. `len_override` forces the 64-bit length form's value.
pub fn frame_raw(b0: u8, payload: &[u8], mask: Option<[u8; 4]>) -> Vec<u8> {
    let mut out = vec![b0];
    let mbit = if mask.is_some() { 0x80 } else { 0 };
    let n = payload.len();
    if n < 126 {
        out.push(mbit | n as u8);
    } else if n <= 0xFFFF {
        out.push(mbit | 126);
        out.extend_from_slice(&(n as u16).to_be_bytes());
    } else {
        out.push(mbit | 127);
        out.extend_from_slice(&(n as u64).to_be_bytes());
    }
    match mask {
        Some(key) => {
            out.extend_from_slice(&key);
            out.extend(payload.iter().enumerate().map(|(i, b)| b ^ key[i % 4]));
        }
        None => out.extend_from_slice(payload),
    }
    out
}

/// A masked client frame with FIN as given.
pub fn frame(fin: bool, opcode: u8, payload: &[u8]) -> Vec<u8> {
    frame_raw(
        (u8::from(fin) << 7) | opcode,
        payload,
        Some([0x3c, 0xa7, 0x01, 0x5e]),
    )
}

pub fn close_frame(code: u16, reason: &[u8]) -> Vec<u8> {
    let mut p = code.to_be_bytes().to_vec();
    p.extend_from_slice(reason);
    frame(true, 8, &p)
}

pub fn upgrade_request(port: u16, path: &str) -> String {
    format!(
        "GET {path} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n\r\n"
    )
}

/// A raw client connection.
pub struct Peer {
    pub sock: TcpStream,
    buf: Vec<u8>,
}

impl Peer {
    pub fn connect(port: u16) -> Peer {
        let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        sock.set_nodelay(true).expect("nodelay");
        sock.set_read_timeout(Some(IO_TIMEOUT)).expect("timeout");
        Peer {
            sock,
            buf: Vec::new(),
        }
    }

    /// Connects and completes a valid handshake.
    pub fn open(port: u16) -> Peer {
        let mut p = Peer::connect(port);
        p.send(upgrade_request(port, "/").as_bytes());
        let (status, _) = p.read_http().expect("handshake response");
        assert_eq!(status, 101, "handshake refused");
        p
    }

    pub fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).expect("send");
    }

    /// Like `send` but tolerates a peer that already closed.
    pub fn try_send(&mut self, bytes: &[u8]) -> bool {
        self.sock.write_all(bytes).is_ok()
    }

    fn fill(&mut self) -> std::io::Result<usize> {
        let mut chunk = [0u8; 65536];
        let n = self.sock.read(&mut chunk)?;
        self.buf.extend_from_slice(&chunk[..n]);
        Ok(n)
    }

    /// Reads a response head: (status, headers lowercased as "name: value" lines).
    pub fn read_http(&mut self) -> Option<(u16, Vec<String>)> {
        loop {
            if let Some(end) = self.buf.windows(4).position(|w| w == b"\r\n\r\n") {
                let head = String::from_utf8_lossy(&self.buf[..end]).into_owned();
                self.buf.drain(..end + 4);
                let mut lines = head.split("\r\n");
                let status = lines.next()?.split(' ').nth(1)?.parse().ok()?;
                return Some((status, lines.map(|l| l.to_ascii_lowercase()).collect()));
            }
            match self.fill() {
                Ok(0) | Err(_) => return None,
                Ok(_) => {}
            }
        }
    }

    /// Reads one frame; `None` on EOF, error or timeout.
    pub fn read_frame(&mut self) -> Result<Frame, Got> {
        loop {
            if self.buf.len() >= 2 {
                let (b0, b1) = (self.buf[0], self.buf[1]);
                let (mut len, mut at) = (u64::from(b1 & 0x7F), 2usize);
                if len == 126 && self.buf.len() >= 4 {
                    len = u64::from(u16::from_be_bytes([self.buf[2], self.buf[3]]));
                    at = 4;
                } else if len == 127 && self.buf.len() >= 10 {
                    len = u64::from_be_bytes(self.buf[2..10].try_into().expect("8 bytes"));
                    at = 10;
                }
                let masked = b1 & 0x80 != 0;
                let body = at + if masked { 4 } else { 0 };
                let complete = (b1 & 0x7F) < 126 || at > 2;
                if complete && self.buf.len() as u64 >= body as u64 + len {
                    let end = body + len as usize;
                    let payload = self.buf[body..end].to_vec();
                    self.buf.drain(..end);
                    return Ok(Frame {
                        fin: b0 & 0x80 != 0,
                        rsv: (b0 >> 4) & 7,
                        opcode: b0 & 0xF,
                        masked,
                        payload,
                    });
                }
            }
            match self.fill() {
                Ok(0) => return Err(Got::Eof),
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
                    ) =>
                {
                    return Err(Got::Timeout);
                }
                Err(_) => return Err(Got::Eof),
            }
        }
    }

    /// Reads one data message (reassembling fragments, skipping pings and pongs).
    pub fn read_message(&mut self) -> Got {
        let mut op = None;
        let mut data = Vec::new();
        loop {
            let f = match self.read_frame() {
                Ok(f) => f,
                Err(got) => return got,
            };
            assert!(!f.masked, "server frames must not be masked");
            match f.opcode {
                8 => return Got::Close(close_code(&f.payload)),
                9 | 10 => continue,
                0 => {}
                o => op = Some(o),
            }
            data.extend_from_slice(&f.payload);
            if f.fin {
                return Got::Message(op.unwrap_or(0), data);
            }
        }
    }

    /// Expects a close frame with `code`, then EOF from the server.
    pub fn expect_close(&mut self, code: u16) {
        let got = self.read_message();
        assert_eq!(got, Got::Close(Some(code)), "expected close {code}");
        self.expect_eof();
    }

    /// Expects the server to close TCP (after any frames).
    pub fn expect_eof(&mut self) {
        let deadline = Instant::now() + IO_TIMEOUT;
        loop {
            match self.read_frame() {
                Err(Got::Eof) => return,
                Err(other) => panic!("expected EOF, got {other:?}"),
                Ok(_) if Instant::now() < deadline => continue,
                Ok(f) => panic!("expected EOF, still reading frames: {f:?}"),
            }
        }
    }

    /// Sends a message and checks that it comes back unchanged.
    pub fn echo(&mut self, opcode: u8, payload: &[u8]) {
        self.send(&frame(true, opcode, payload));
        assert_eq!(self.read_message(), Got::Message(opcode, payload.to_vec()));
    }

    pub fn shutdown(&self) {
        let _ = self.sock.shutdown(Shutdown::Both);
    }
}

pub fn close_code(payload: &[u8]) -> Option<u16> {
    (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]))
}

/// Runs `throng bench ARGS` to completion.
#[allow(dead_code)] // not every test binary runs the generator
pub fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_throng"))
        .arg("bench")
        .args(args)
        .env("RUST_LOG", "warn")
        .output()
        .expect("run throng bench")
}

/// Runs `node --test` on `file` with `env`, at most 120 s, and asserts that every case
/// passed (and that there were some): the spec reporter's `pass N` / `fail N` lines.
pub fn node_suite(file: &std::path::Path, env: &[(&str, &str)]) {
    let mut command = Command::new("node");
    command
        .arg("--test")
        .arg("--test-reporter=spec")
        .arg(file)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in env {
        command.env(k, v);
    }
    let mut child = command
        .spawn()
        .expect("node must be installed (.ci/run installs it)");
    let deadline = Instant::now() + Duration::from_secs(120);
    while child.try_wait().expect("wait for node").is_none() {
        if Instant::now() > deadline {
            let _ = child.kill();
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("node output");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{} failed:\n{stdout}\n{}",
        file.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let count = |what: &str| {
        stdout.lines().find_map(|l| {
            l.trim_start_matches(['ℹ', '#', ' '])
                .strip_prefix(what)
                .and_then(|n| n.trim().parse::<u32>().ok())
        })
    };
    assert_eq!(count("fail "), Some(0), "{stdout}");
    assert!(count("pass ").is_some_and(|n| n > 0), "{stdout}");
}

/// `GET path` on a fresh connection, read to EOF: (status, lowercased head, body).
/// Status 0 when no answer came.
pub fn http_get(port: u16, path: &str) -> (u16, String, String) {
    let request = format!("GET {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");
    let Ok(mut s) = TcpStream::connect(("127.0.0.1", port)) else {
        return (0, String::new(), String::new());
    };
    let _ = s.set_read_timeout(Some(IO_TIMEOUT));
    if s.write_all(request.as_bytes()).is_err() {
        return (0, String::new(), String::new());
    }
    let mut got = Vec::new();
    let _ = s.read_to_end(&mut got);
    let text = String::from_utf8_lossy(&got).into_owned();
    let (head, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    (status, head.to_ascii_lowercase(), body.to_string())
}

/// Polls `GET path` every 50 ms until its status is `want` (bounded by `within`).
pub fn wait_status(port: u16, path: &str, want: u16, within: Duration) -> (u16, String) {
    let deadline = Instant::now() + within;
    loop {
        let (status, _, body) = http_get(port, path);
        if status == want || Instant::now() >= deadline {
            return (status, body);
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
