//! HTTP long-polling at its edges, byte by byte against `throng serve --app conformance
//! --workers 2`: bodies that never end are refused instead of buffered, a slow body has
//! more than the head's timeout, a POST naming a WebSocket session's sid changes
//! nothing for it, and a pipelined request for another worker's session is answered
//! after the ones before it.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::{Got, Peer, Server};

/// The next text message that is not an Engine.IO ping (pings are answered).
fn read_text(peer: &mut Peer) -> String {
    for _ in 0..100 {
        match peer.read_message() {
            Got::Message(1, data) if data == b"2" => peer.send(&util::frame(true, 1, b"3")),
            Got::Message(1, data) => return String::from_utf8(data).expect("utf-8"),
            other => panic!("expected a text message, got {other:?}"),
        }
    }
    panic!("only pings");
}

const POLLING: &str = "/socket.io/?EIO=4&transport=polling";

/// One HTTP response read from `sock`: status and body (by Content-Length).
fn read_response(sock: &mut TcpStream, pending: &mut Vec<u8>) -> (u16, String) {
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&pending[..end]).to_string();
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .unwrap_or(0);
            if pending.len() >= end + 4 + len {
                let body = String::from_utf8_lossy(&pending[end + 4..end + 4 + len]).to_string();
                pending.drain(..end + 4 + len);
                let status = head
                    .split(' ')
                    .nth(1)
                    .and_then(|s| s.parse().ok())
                    .expect("status");
                return (status, body);
            }
        }
        assert!(Instant::now() < deadline, "no whole response within 10 s");
        let mut buf = [0u8; 16 << 10];
        match sock.read(&mut buf) {
            Ok(0) => panic!("closed before a whole response: {pending:?}"),
            Ok(n) => pending.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
            Err(e) if e.kind() == std::io::ErrorKind::TimedOut => {}
            Err(e) => panic!("read: {e}"),
        }
    }
}

fn connect(port: u16) -> TcpStream {
    let sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_millis(500)))
        .expect("timeout");
    sock
}

/// One request on a fresh connection.
fn request(port: u16, raw: &[u8]) -> (u16, String) {
    let mut sock = connect(port);
    sock.write_all(raw).expect("send");
    read_response(&mut sock, &mut Vec::new())
}

fn get(target: &str) -> Vec<u8> {
    format!("GET {target} HTTP/1.1\r\nHost: t\r\n\r\n").into_bytes()
}

fn post(target: &str, body: &str) -> Vec<u8> {
    format!(
        "POST {target} HTTP/1.1\r\nHost: t\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

/// Whether a polling payload holds the CONNECT answer for `/` (pings may come first).
fn connected(payload: &str) -> bool {
    payload.split('\x1e').any(|p| p.starts_with("40{\"sid\":"))
}

/// A fresh polling session's sid.
fn open_session(port: u16) -> String {
    let (status, body) = request(port, &get(POLLING));
    assert_eq!(status, 200, "{body}");
    let open: serde_json::Value = serde_json::from_str(&body[1..]).expect("open packet");
    open["sid"].as_str().expect("sid").to_string()
}

#[test]
fn a_chunked_body_that_never_ends_is_refused_not_buffered() {
    let server = Server::start(&["--app", "conformance", "--workers", "2"]);
    let sid = open_session(server.port);
    let mut sock = connect(server.port);
    sock.write_all(
        format!(
            "POST {POLLING}&sid={sid} HTTP/1.1\r\nHost: t\r\nTransfer-Encoding: chunked\r\n\r\n1;"
        )
        .as_bytes(),
    )
    .expect("head");
    // A chunk extension without end: never body, only framing. 8 MiB at most.
    let filler = vec![b'x'; 64 << 10];
    let mut refused = false;
    for _ in 0..128 {
        if sock.write_all(&filler).is_err() {
            refused = true;
            break;
        }
    }
    let mut pending = Vec::new();
    let (status, _) = read_response(&mut sock, &mut pending);
    assert_eq!(status, 413, "refused after the write error: {refused}");
    // The server is fine.
    assert_eq!(request(server.port, &get(POLLING)).0, 200);
}

#[test]
fn a_slow_body_gets_more_than_the_heads_timeout() {
    let server = Server::start(&[
        "--app",
        "conformance",
        "--workers",
        "2",
        "--handshake-timeout",
        "1",
    ]);
    let sid = open_session(server.port);
    let body = "40";
    let mut sock = connect(server.port);
    let raw = post(&format!("{POLLING}&sid={sid}"), body);
    let (first, last) = raw.split_at(raw.len() - 1);
    sock.write_all(first).expect("head and half the body");
    // Past the head timeout (1 s), within the CONNECT timeout (2 s).
    std::thread::sleep(Duration::from_millis(1600));
    sock.write_all(last).expect("the rest");
    let (status, answer) = read_response(&mut sock, &mut Vec::new());
    assert_eq!((status, answer.as_str()), (200, "ok"));
    // The CONNECT went through: the session answers it.
    let (status, packets) = request(server.port, &get(&format!("{POLLING}&sid={sid}")));
    assert_eq!(status, 200);
    assert!(connected(&packets), "{packets}");
}

#[test]
fn a_post_naming_a_websocket_session_changes_nothing_for_it() {
    let server = Server::start(&["--app", "conformance", "--workers", "2"]);
    let mut ws = Peer::connect(server.port);
    ws.send(util::upgrade_request(server.port, "/socket.io/?EIO=4&transport=websocket").as_bytes());
    assert_eq!(ws.read_http().expect("handshake response").0, 101);
    let open = read_text(&mut ws);
    let open: serde_json::Value = serde_json::from_str(&open[1..]).expect("open packet");
    let sid = open["sid"].as_str().expect("sid").to_string();
    ws.send(&util::frame(true, 1, b"40"));
    assert!(read_text(&mut ws).starts_with("40{"));
    for _ in 0..3 {
        // Half a body, then the connection goes away.
        let mut sock = connect(server.port);
        let raw = post(&format!("{POLLING}&sid={sid}"), "4hello");
        sock.write_all(&raw[..raw.len() - 3]).expect("part");
        drop(sock);
        // A whole one: 400 (Node: transport mismatch, code 3).
        let (status, body) = request(server.port, &post(&format!("{POLLING}&sid={sid}"), "40"));
        assert_eq!(status, 400, "{body}");
    }
    // The WebSocket session still works.
    ws.send(&util::frame(true, 1, br#"421["echo","still here"]"#));
    assert_eq!(read_text(&mut ws), r#"431["still here"]"#);
}

#[test]
fn a_pipelined_request_for_another_workers_session_comes_after_the_answers_before_it() {
    let server = Server::start(&["--app", "conformance", "--workers", "2"]);
    // A session owned by each worker (the sid's first character names it).
    let mut owned: [Option<String>; 2] = [None, None];
    for _ in 0..64 {
        let sid = open_session(server.port);
        let worker = match sid.as_bytes()[0] {
            b'A' => 0,
            b'B' => 1,
            other => panic!("sid {sid} names worker {}", other as char),
        };
        owned[worker].get_or_insert(sid);
        if owned.iter().all(Option::is_some) {
            break;
        }
    }
    let owned = owned.map(|s| s.expect("a session on each worker within 64 tries"));
    // Whichever worker accepts this connection, one of the two POSTs is for the other.
    let mut sock = connect(server.port);
    let mut raw = get(POLLING);
    for sid in &owned {
        raw.extend_from_slice(&post(&format!("{POLLING}&sid={sid}"), "40"));
    }
    sock.write_all(&raw).expect("pipelined");
    let mut pending = Vec::new();
    let (status, open) = read_response(&mut sock, &mut pending);
    assert_eq!(status, 200);
    assert!(open.starts_with("0{\"sid\""), "{open}");
    // The connection moved (or not) after its first answer; either way, each session
    // got its CONNECT.
    for sid in &owned {
        let (status, packets) = request(server.port, &get(&format!("{POLLING}&sid={sid}")));
        assert_eq!(status, 200);
        assert!(connected(&packets), "{sid}: {packets}");
    }
}
