//! `bench connect --proto socketio --transport polling`: one idle Socket.IO session over
//! Engine.IO v4 HTTP long-polling, as a polling client keeps it, on one keep-alive TCP
//! connection.
//!
//! A session: `GET /socket.io/?EIO=4&transport=polling` → the open packet `0{"sid":…}`;
//! `POST …&sid=SID` with `40` → `ok`; `GET …&sid=SID` → `40{"sid":…}` (the CONNECT
//! answer); then one GET is always outstanding, held by the server until it has
//! something to send. It counts as open once the CONNECT answer arrived and the next
//! GET was sent. A server ping `2` (every pingInterval) is answered by POSTing `3`, then
//! the GET is sent again; a noop `6` or a message `4…` just sends the GET again. Packets
//! in one body are joined by `\x1e`.
//!
//! Requests go one at a time on the session's one connection (HTTP/1.1 keep-alive, no
//! pipelining): every POST is made while no GET is outstanding, right after one was
//! answered, so a session never needs a second connection.
//!
//! Invariants: nothing read from the network can panic; a malformed or refused response
//! (not 200, no `Content-Length`, chunked, too long, bytes after it, `Connection: close`,
//! an unexpected packet) fails its session with a reason; what is buffered is bounded
//! ([`MAX_HEAD`] + [`MAX_BODY`]); every request has a deadline ([`Machine::deadline`]).

use std::io::{self, Read};
use std::net::SocketAddr;
use std::ops::Range;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;

use super::client::{flush_out, open_socket};
use super::report::Target;
use super::sio::{self, Control, Stage};

/// A response head longer than this fails the session.
pub const MAX_HEAD: usize = 16 << 10;
/// A response body longer than this fails the session (Node's maxHttpBufferSize is 1e6).
pub const MAX_BODY: usize = 1 << 20;
/// A POST not answered within this fails the session.
const POST_TIMEOUT: Duration = Duration::from_secs(10);
/// Server ping period and pong wait when the open packet does not give them (Node's).
const DEFAULT_PING: (u64, u64) = (25_000, 20_000);
/// A held GET gets at least this beyond pingInterval + pingTimeout before it is failed...
const HELD_SLACK: Duration = Duration::from_secs(10);
/// ... and is failed after this at most, whatever the open packet says.
const MAX_HELD: Duration = Duration::from_secs(300);
/// The Engine.IO payload separator.
const SEPARATOR: u8 = 0x1e;

/// One complete HTTP response at the start of a buffer.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Response {
    pub status: u16,
    /// Where the body is in the buffer.
    pub body: Range<usize>,
    /// The response's whole length (head and body).
    pub len: usize,
    /// The server said `Connection: close`.
    pub close: bool,
}

/// Parses the response at the start of `buf`: `Ok(None)` while it is incomplete,
/// `Err` when it is malformed, chunked, without `Content-Length` or over the bounds.
pub fn parse_response(buf: &[u8]) -> Result<Option<Response>, String> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut resp = httparse::Response::new(&mut headers);
    let end = match resp.parse(buf) {
        Ok(httparse::Status::Complete(end)) if end <= MAX_HEAD => end,
        Ok(httparse::Status::Partial) if buf.len() <= MAX_HEAD => return Ok(None),
        Ok(_) => return Err(format!("response head over {MAX_HEAD} bytes")),
        Err(e) => return Err(format!("malformed HTTP response: {e}")),
    };
    let status = resp.code.unwrap_or(0);
    let mut length: Option<usize> = None;
    let mut close = false;
    for h in resp.headers.iter() {
        if h.name.eq_ignore_ascii_case("content-length") {
            let v = h.value.trim_ascii();
            let n = std::str::from_utf8(v)
                .ok()
                .filter(|t| !t.is_empty() && t.bytes().all(|b| b.is_ascii_digit()))
                .and_then(|t| t.parse::<usize>().ok())
                .ok_or_else(|| format!("HTTP {status}: bad Content-Length"))?;
            if length.is_some_and(|l| l != n) {
                return Err(format!("HTTP {status}: conflicting Content-Length headers"));
            }
            length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(format!(
                "HTTP {status}: Transfer-Encoding responses are not supported (Content-Length only)"
            ));
        } else if h.name.eq_ignore_ascii_case("connection") {
            close |= h
                .value
                .split(|&b| b == b',')
                .any(|t| t.trim_ascii().eq_ignore_ascii_case(b"close"));
        }
    }
    let length = length.ok_or_else(|| format!("HTTP {status} without Content-Length"))?;
    if length > MAX_BODY {
        return Err(format!(
            "HTTP {status}: body of {length} bytes, over {MAX_BODY}"
        ));
    }
    if buf.len() - end < length {
        return Ok(None);
    }
    Ok(Some(Response {
        status,
        body: end..end + length,
        len: end + length,
        close,
    }))
}

/// The Engine.IO packets of a polling payload (never none: an empty body is one empty
/// packet).
pub fn packets(body: &[u8]) -> impl Iterator<Item = &[u8]> {
    body.split(|&b| b == SEPARATOR)
}

/// What the client takes from the Engine.IO open packet.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenPacket {
    pub sid: String,
    pub ping_interval_ms: u64,
    pub ping_timeout_ms: u64,
}

/// Parses the open packet `0{"sid":…,…}`; the sid must be 1–64 URL-safe characters
/// (`A-Za-z0-9-_`), as Node's and throng's are, so it goes into a query unescaped.
pub fn parse_open(packet: &[u8]) -> Result<OpenPacket, String> {
    #[derive(serde::Deserialize)]
    struct Raw {
        sid: String,
        #[serde(rename = "pingInterval")]
        ping_interval: Option<u64>,
        #[serde(rename = "pingTimeout")]
        ping_timeout: Option<u64>,
    }
    let json = packet
        .strip_prefix(b"0")
        .ok_or("expected the Engine.IO open packet 0{...}")?;
    let raw: Raw =
        serde_json::from_slice(json).map_err(|e| format!("malformed open packet: {e}"))?;
    let url_safe = |b: u8| b.is_ascii_alphanumeric() || b == b'-' || b == b'_';
    if raw.sid.is_empty() || raw.sid.len() > 64 || !raw.sid.bytes().all(url_safe) {
        return Err("the open packet's sid is not 1-64 URL-safe characters".into());
    }
    Ok(OpenPacket {
        sid: raw.sid,
        ping_interval_ms: raw.ping_interval.unwrap_or(DEFAULT_PING.0),
        ping_timeout_ms: raw.ping_timeout.unwrap_or(DEFAULT_PING.1),
    })
}

/// The request a session has in flight.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Request {
    /// The handshake GET (no sid), answered by the open packet.
    Handshake,
    /// The POST of `40`, answered `ok`.
    PostConnect,
    /// A GET, answered with packets (held by the server until it has some).
    Get,
    /// The POST of the pongs, answered `ok`.
    PostPong,
}

/// A polling session without its socket: which request is in flight, what to send
/// next (`out`), and when it is overdue. Pure, so the protocol is tested without I/O.
#[derive(Debug)]
pub struct Machine {
    host: Rc<str>,
    sid: String,
    in_flight: Request,
    sent_at: Instant,
    /// The CONNECT answer `40{"sid":…}` arrived.
    connected: bool,
    /// Connected, and a GET was sent since: the session is held.
    open: bool,
    held_limit: Duration,
    /// Requests not yet written.
    pub out: Vec<u8>,
}

impl Machine {
    /// A session whose handshake GET is queued, for a server reached as `host` (the
    /// `Host` header).
    pub fn new(host: Rc<str>, now: Instant) -> Machine {
        let mut m = Machine {
            host,
            sid: String::new(),
            in_flight: Request::Handshake,
            sent_at: now,
            connected: false,
            open: false,
            held_limit: held_limit(DEFAULT_PING.0, DEFAULT_PING.1),
            out: Vec::with_capacity(256),
        };
        m.queue_get(now);
        m.in_flight = Request::Handshake;
        m
    }

    /// Connected to `/` with a GET sent since.
    pub fn is_open(&self) -> bool {
        self.open
    }

    pub fn in_flight(&self) -> Request {
        self.in_flight
    }

    /// When the request in flight is overdue, once open (before, the connect mode's
    /// handshake timeout applies): a held GET after pingInterval + pingTimeout +
    /// [`HELD_SLACK`] (a ping was due by then), a POST after [`POST_TIMEOUT`].
    pub fn deadline(&self) -> Option<Instant> {
        if !self.open {
            return None;
        }
        Some(
            self.sent_at
                + match self.in_flight {
                    Request::Get => self.held_limit,
                    _ => POST_TIMEOUT,
                },
        )
    }

    /// Handles the response to the request in flight and queues the next request.
    /// `Err`: the session cannot go on.
    pub fn on_response(
        &mut self,
        status: u16,
        body: &[u8],
        close: bool,
        now: Instant,
    ) -> Result<(), String> {
        let what = match self.in_flight {
            Request::Handshake => "the handshake GET",
            Request::PostConnect => "the POST of the CONNECT",
            Request::Get => "a GET",
            Request::PostPong => "the POST of a pong",
        };
        if status != 200 {
            let shown = &body[..body.len().min(120)];
            return Err(format!(
                "HTTP {status} to {what}: {}",
                String::from_utf8_lossy(shown)
            ));
        }
        if close {
            return Err(format!(
                "the server closes the connection after {what} (Connection: close)"
            ));
        }
        match self.in_flight {
            Request::Handshake => {
                let open = parse_open(body)?;
                self.held_limit = held_limit(open.ping_interval_ms, open.ping_timeout_ms);
                self.sid = open.sid;
                self.queue_post(sio::CONNECT, now);
                self.in_flight = Request::PostConnect;
            }
            Request::PostConnect | Request::PostPong => {
                if body != b"ok" {
                    return Err(format!(
                        "{what} was answered {:?}, not ok",
                        String::from_utf8_lossy(&body[..body.len().min(120)])
                    ));
                }
                self.queue_get(now);
            }
            Request::Get => {
                let mut pongs: Vec<u8> = Vec::new();
                for packet in packets(body) {
                    let stage = if self.connected {
                        Stage::Connected
                    } else {
                        Stage::AwaitConnect
                    };
                    match sio::control(stage, true, packet) {
                        Control::Pong(data) => {
                            if !pongs.is_empty() {
                                pongs.push(SEPARATOR);
                            }
                            pongs.push(b'3');
                            pongs.extend_from_slice(data);
                        }
                        Control::Connected => self.connected = true,
                        Control::Fail(why) => return Err(why.into()),
                        Control::Open => return Err("a second open packet".into()),
                        // Connected: messages (`4…`) and noops (`6`) are let be.
                        Control::Pass => match packet.first() {
                            Some(b'4' | b'6') => {}
                            Some(&t) => {
                                return Err(format!(
                                    "unexpected Engine.IO packet type {:?} on a GET",
                                    t as char
                                ));
                            }
                            None => return Err("an empty packet on a GET".into()),
                        },
                    }
                }
                if pongs.is_empty() {
                    self.queue_get(now);
                } else {
                    self.queue_post(&pongs, now);
                    self.in_flight = Request::PostPong;
                }
            }
        }
        Ok(())
    }

    fn queue_target(&mut self) {
        self.out.extend_from_slice(sio::POLLING_PATH.as_bytes());
        if !self.sid.is_empty() {
            self.out.extend_from_slice(b"&sid=");
            self.out.extend_from_slice(self.sid.as_bytes());
        }
        self.out.extend_from_slice(b" HTTP/1.1\r\nHost: ");
        self.out.extend_from_slice(self.host.as_bytes());
        self.out.extend_from_slice(b"\r\n");
    }

    fn queue_get(&mut self, now: Instant) {
        self.out.extend_from_slice(b"GET ");
        self.queue_target();
        self.out.extend_from_slice(b"Accept: */*\r\n\r\n");
        self.in_flight = Request::Get;
        self.sent_at = now;
        self.open |= self.connected;
    }

    fn queue_post(&mut self, body: &[u8], now: Instant) {
        self.out.extend_from_slice(b"POST ");
        self.queue_target();
        self.out
            .extend_from_slice(b"Content-Type: text/plain;charset=UTF-8\r\nContent-Length: ");
        let mut digits = [0u8; 20];
        self.out
            .extend_from_slice(sio::decimal(body.len() as u64, &mut digits));
        self.out.extend_from_slice(b"\r\n\r\n");
        self.out.extend_from_slice(body);
        self.sent_at = now;
    }
}

/// How long a held GET may go unanswered: a ping is due after pingInterval, and the
/// server gives up on a client after pingTimeout more.
fn held_limit(interval_ms: u64, timeout_ms: u64) -> Duration {
    (Duration::from_millis(interval_ms.saturating_add(timeout_ms)) + HELD_SLACK).min(MAX_HELD)
}

/// One polling session: its socket, what was read of the current response, and its
/// [`Machine`].
#[derive(Debug)]
pub struct PollSession {
    pub stream: TcpStream,
    /// When the connect started (for the handshake timeout).
    pub started: Instant,
    inbuf: Vec<u8>,
    pub machine: Machine,
}

impl PollSession {
    /// Starts a non-blocking connect to `target` (from `source` when given) and queues
    /// the handshake GET.
    pub fn connect(target: &Target, source: Option<SocketAddr>, host: Rc<str>) -> io::Result<Self> {
        let now = Instant::now();
        Ok(PollSession {
            stream: open_socket(target.addr, source)?,
            started: now,
            inbuf: Vec::new(),
            machine: Machine::new(host, now),
        })
    }

    /// Serves a readiness event: writes what is queued, reads what arrived, answers
    /// every complete response with the next request. `Err`: the session failed.
    pub fn serve(&mut self, scratch: &mut [u8]) -> Result<(), String> {
        flush_out(&mut self.stream, &mut self.machine.out).map_err(|e| e.to_string())?;
        loop {
            let n = match self.stream.read(scratch) {
                Ok(0) => return Err("the server closed the connection (EOF)".into()),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e.to_string()),
            };
            // Bounded: a response over MAX_HEAD + MAX_BODY fails in `parse_response`,
            // and bytes after a response fail in `take_responses`.
            self.inbuf.extend_from_slice(&scratch[..n]);
            self.take_responses(Instant::now())?;
        }
        flush_out(&mut self.stream, &mut self.machine.out).map_err(|e| e.to_string())
    }

    /// Handles the complete response in `inbuf`, if there is one. Only one request is
    /// ever in flight, so anything after its response is an error.
    fn take_responses(&mut self, now: Instant) -> Result<(), String> {
        let Some(resp) = parse_response(&self.inbuf)? else {
            return Ok(());
        };
        if resp.len < self.inbuf.len() {
            return Err(format!(
                "{} unasked-for bytes after a response",
                self.inbuf.len() - resp.len
            ));
        }
        self.machine
            .on_response(resp.status, &self.inbuf[resp.body], resp.close, now)?;
        self.inbuf.clear();
        self.inbuf.shrink_to(4096);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok(body: &str) -> Vec<u8> {
        format!(
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; charset=UTF-8\r\n\
             Content-Length: {}\r\nConnection: keep-alive\r\n\r\n{body}",
            body.len()
        )
        .into_bytes()
    }

    #[test]
    fn a_complete_response_gives_status_body_and_length() {
        let r = ok("0{\"sid\":\"a\"}");
        let got = parse_response(&r).unwrap().unwrap();
        assert_eq!(got.status, 200);
        assert_eq!(&r[got.body.clone()], b"0{\"sid\":\"a\"}");
        assert_eq!(got.len, r.len());
        assert!(!got.close);
        // Bytes after it are left to the caller.
        let mut more = r.clone();
        more.extend_from_slice(b"HTTP/1.1");
        assert_eq!(parse_response(&more).unwrap().unwrap().len, r.len());
        let closing = b"HTTP/1.1 400 Bad Request\r\nConnection: Keep-Alive, close\r\n\
                        content-length: 2\r\n\r\n{}";
        let got = parse_response(closing).unwrap().unwrap();
        assert_eq!((got.status, got.close, got.body.len()), (400, true, 2));
    }

    #[test]
    fn an_incomplete_response_waits_for_more() {
        let r = ok("2\u{1e}6");
        for cut in 0..r.len() {
            assert_eq!(parse_response(&r[..cut]), Ok(None), "cut {cut}");
        }
    }

    #[test]
    fn malformed_responses_fail() {
        let cases: &[&[u8]] = &[
            b"HTTP/1.1 200 OK\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: x\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: +1\r\n\r\nx",
            b"HTTP/1.1 200 OK\r\nContent-Length: \r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999999\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\nok",
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
            b"HTTP/1.1 200 OK\r\nContent-Length: 2000000\r\n\r\n",
            b"SSH-2.0-OpenSSH\r\n\r\n",
            b"\x00\x01\x02\r\n\r\n",
            b"HTTP/1.1 2000 OK\r\nContent-Length: 0\r\n\r\n",
        ];
        for case in cases {
            assert!(
                parse_response(case).is_err(),
                "{}",
                String::from_utf8_lossy(case)
            );
        }
        // The same Content-Length twice is one.
        let twice = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nok";
        assert_eq!(parse_response(twice).unwrap().unwrap().body.len(), 2);
    }

    #[test]
    fn an_endless_head_fails_at_the_bound() {
        let mut head = b"HTTP/1.1 200 OK\r\n".to_vec();
        while head.len() <= MAX_HEAD {
            head.extend_from_slice(b"X-Pad: aaaaaaaaaaaaaaaa\r\n");
        }
        assert!(parse_response(&head).is_err());
    }

    #[test]
    fn bodies_split_on_the_record_separator() {
        let split = |b: &[u8]| packets(b).map(<[u8]>::to_vec).collect::<Vec<_>>();
        assert_eq!(split(b"2"), vec![b"2".to_vec()]);
        assert_eq!(
            split(b"40{\"sid\":\"x\"}\x1e2\x1e42[\"a\"]"),
            vec![
                b"40{\"sid\":\"x\"}".to_vec(),
                b"2".to_vec(),
                b"42[\"a\"]".to_vec()
            ]
        );
        assert_eq!(split(b""), vec![Vec::<u8>::new()]);
        assert_eq!(split(b"2\x1e"), vec![b"2".to_vec(), Vec::new()]);
    }

    #[test]
    fn open_packets_give_the_sid_and_the_ping_timing() {
        let node = br#"0{"sid":"lv_VI97HAXpY6yYWAAAC","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;
        assert_eq!(
            parse_open(node),
            Ok(OpenPacket {
                sid: "lv_VI97HAXpY6yYWAAAC".into(),
                ping_interval_ms: 25_000,
                ping_timeout_ms: 20_000
            })
        );
        assert_eq!(
            parse_open(br#"0{"sid":"a-1"}"#).map(|o| o.ping_interval_ms),
            Ok(25_000)
        );
        let bad: &[&[u8]] = &[
            b"",
            b"0",
            b"0{}",
            br#"1{"sid":"a"}"#,
            br#"0{"sid":""}"#,
            br#"0{"sid":"a&b=c"}"#,
            br#"0{"sid":"a b"}"#,
            br#"0{"sid":7}"#,
            br#"0{"sid":"a","pingInterval":-1}"#,
            br#"0{"sid":"a""#,
            b"0{\"sid\":\"\xff\"}",
        ];
        for b in bad {
            assert!(parse_open(b).is_err(), "{}", String::from_utf8_lossy(b));
        }
        let long = format!(r#"0{{"sid":"{}"}}"#, "a".repeat(65));
        assert!(parse_open(long.as_bytes()).is_err());
    }

    /// The requests a machine queued since the last call, as text.
    fn sent(m: &mut Machine) -> String {
        String::from_utf8(std::mem::take(&mut m.out)).unwrap()
    }

    const OPEN: &str = r#"0{"sid":"S1d_-","upgrades":["websocket"],"pingInterval":25000,"pingTimeout":20000,"maxPayload":1000000}"#;

    /// A machine through the handshake to its held GET.
    fn held(now: Instant) -> Machine {
        let mut m = Machine::new("127.0.0.1:9".into(), now);
        assert_eq!(
            sent(&mut m),
            "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: 127.0.0.1:9\r\n\
             Accept: */*\r\n\r\n"
        );
        m.on_response(200, OPEN.as_bytes(), false, now).unwrap();
        assert_eq!(m.in_flight(), Request::PostConnect);
        assert_eq!(
            sent(&mut m),
            "POST /socket.io/?EIO=4&transport=polling&sid=S1d_- HTTP/1.1\r\n\
             Host: 127.0.0.1:9\r\nContent-Type: text/plain;charset=UTF-8\r\n\
             Content-Length: 2\r\n\r\n40"
        );
        assert!(!m.is_open());
        m.on_response(200, b"ok", false, now).unwrap();
        let get = "GET /socket.io/?EIO=4&transport=polling&sid=S1d_- HTTP/1.1\r\n\
                   Host: 127.0.0.1:9\r\nAccept: */*\r\n\r\n";
        assert_eq!(sent(&mut m), get);
        assert!(!m.is_open(), "not before the CONNECT answer");
        assert_eq!(m.deadline(), None);
        m.on_response(200, br#"40{"sid":"x"}"#, false, now).unwrap();
        assert_eq!(sent(&mut m), get);
        assert!(m.is_open());
        assert_eq!(m.in_flight(), Request::Get);
        m
    }

    #[test]
    fn a_session_goes_handshake_connect_held() {
        let now = Instant::now();
        let m = held(now);
        assert_eq!(m.deadline(), Some(now + Duration::from_secs(55)));
    }

    #[test]
    fn pings_are_answered_with_a_post_then_the_get_goes_again() {
        let now = Instant::now();
        let mut m = held(now);
        let later = now + Duration::from_secs(25);
        m.on_response(200, b"2", false, later).unwrap();
        assert_eq!(m.in_flight(), Request::PostPong);
        assert!(sent(&mut m).ends_with("Content-Length: 1\r\n\r\n3"));
        assert_eq!(m.deadline(), Some(later + POST_TIMEOUT));
        m.on_response(200, b"ok", false, later).unwrap();
        assert!(sent(&mut m).starts_with("GET "));
        assert!(m.is_open());
        // Two pings (and a message) in one body: one POST with two pongs.
        m.on_response(200, b"2\x1e42[\"x\"]\x1e2", false, later)
            .unwrap();
        assert!(sent(&mut m).ends_with("Content-Length: 3\r\n\r\n3\x1e3"));
        m.on_response(200, b"ok", false, later).unwrap();
        // A noop or a message: the GET again, no POST.
        m.on_response(200, b"6", false, later).unwrap();
        assert!(sent(&mut m).starts_with("GET "));
        m.on_response(200, b"42[\"echo\",\"a\"]", false, later)
            .unwrap();
        assert!(sent(&mut m).starts_with("GET "));
    }

    #[test]
    fn a_ping_before_the_connect_answer_is_answered_too() {
        let now = Instant::now();
        let mut m = Machine::new("h".into(), now);
        m.on_response(200, OPEN.as_bytes(), false, now).unwrap();
        m.on_response(200, b"ok", false, now).unwrap();
        m.on_response(200, b"2\x1e40{\"sid\":\"q\"}", false, now)
            .unwrap();
        assert_eq!(m.in_flight(), Request::PostPong);
        assert!(
            !m.is_open(),
            "open once a GET is sent after the CONNECT answer"
        );
        m.on_response(200, b"ok", false, now).unwrap();
        assert!(m.is_open());
    }

    #[test]
    fn bad_answers_fail_the_session() {
        let now = Instant::now();
        let fresh = || Machine::new("h".into(), now);
        let after_open = || {
            let mut m = fresh();
            m.on_response(200, OPEN.as_bytes(), false, now).unwrap();
            m
        };
        let awaiting_connect = || {
            let mut m = after_open();
            m.on_response(200, b"ok", false, now).unwrap();
            m
        };
        type Case = (Machine, u16, &'static [u8], bool);
        let cases: Vec<(&str, Case)> = vec![
            (
                "400 to the handshake",
                (fresh(), 400, br#"{"code":3}"#, false),
            ),
            ("not an open packet", (fresh(), 200, b"40", false)),
            ("Connection: close", (fresh(), 200, OPEN.as_bytes(), true)),
            ("POST not ok", (after_open(), 200, b"no", false)),
            (
                "refused CONNECT",
                (awaiting_connect(), 200, br#"44{"message":"x"}"#, false),
            ),
            (
                "noop before CONNECT",
                (awaiting_connect(), 200, b"6", false),
            ),
            ("close packet", (awaiting_connect(), 200, b"1", false)),
            ("empty body", (awaiting_connect(), 200, b"", false)),
            (
                "unknown sid",
                (awaiting_connect(), 400, br#"{"code":1}"#, false),
            ),
            ("DISCONNECT", (held(now), 200, b"41", false)),
            ("close", (held(now), 200, b"6\x1e1", false)),
            ("empty packet", (held(now), 200, b"2\x1e", false)),
            ("pong from the server", (held(now), 200, b"3", false)),
            ("upgrade packet", (held(now), 200, b"5", false)),
            ("second open", (held(now), 200, OPEN.as_bytes(), false)),
            ("garbage", (held(now), 200, b"\xff\xfe", false)),
            ("503", (held(now), 503, b"", false)),
        ];
        for (name, (mut m, status, body, close)) in cases {
            assert!(m.on_response(status, body, close, now).is_err(), "{name}");
        }
    }
}
