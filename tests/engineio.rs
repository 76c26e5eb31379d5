//! Engine.IO and Socket.IO at the byte level against `throng serve --app conformance`:
//! every HTTP error answer (codes 0–5 as JSON, never a 101 on a refused upgrade), the
//! open packet, the heartbeat in both directions, the CONNECT timeout, maxPayload, and
//! malformed packets closing only their own connection while a bystander keeps working.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::{Got, Peer, Server, frame};

const WS: &str = "/socket.io/?EIO=4&transport=websocket";

fn server() -> Server {
    Server::start(&["--app", "conformance", "--workers", "2"])
}

/// One request on a fresh connection; the server answers and closes.
fn http(port: u16, request: &str) -> (u16, String, String) {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.write_all(request.as_bytes()).expect("send");
    let mut text = String::new();
    sock.read_to_string(&mut text).expect("read to close");
    let (head, body) = text.split_once("\r\n\r\n").expect("a whole head");
    let status = head
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    (status, head.to_string(), body.to_string())
}

fn get(port: u16, target: &str, upgrade: bool) -> (u16, String, String) {
    let upgrade = if upgrade {
        "Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
         Sec-WebSocket-Version: 13\r\n"
    } else {
        // Plain requests are kept alive unless the client asks otherwise.
        "Connection: close\r\n"
    };
    http(
        port,
        &format!("GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\n{upgrade}\r\n"),
    )
}

fn assert_error(answer: (u16, String, String), status: u16, code: u8, message: &str) {
    let (got_status, head, body) = answer;
    assert_eq!(got_status, status, "{head}\n{body}");
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: application/json"),
        "{head}"
    );
    assert!(head.to_ascii_lowercase().contains("connection: close"));
    assert_eq!(body, format!(r#"{{"code":{code},"message":"{message}"}}"#));
}

fn text(payload: &str) -> Vec<u8> {
    frame(true, 1, payload.as_bytes())
}

fn read_text(peer: &mut Peer) -> String {
    match peer.read_message() {
        Got::Message(1, data) => String::from_utf8(data).expect("utf-8"),
        other => panic!("expected a text message, got {other:?}"),
    }
}

/// An Engine.IO WebSocket client past the open packet; returns it and the packet.
fn engine(port: u16) -> (Peer, String) {
    let mut peer = Peer::connect(port);
    peer.send(util::upgrade_request(port, WS).as_bytes());
    let (status, _) = peer.read_http().expect("handshake response");
    assert_eq!(status, 101);
    let open = read_text(&mut peer);
    (peer, open)
}

/// Connected to `/` (CONNECT answered).
fn socket(port: u16) -> Peer {
    let (mut peer, _) = engine(port);
    peer.send(&text("40"));
    let reply = read_text(&mut peer);
    assert!(reply.starts_with(r#"40{"sid":""#), "{reply}");
    peer
}

/// Reads text messages, answering pings, until one satisfies `want`.
fn read_until(peer: &mut Peer, want: impl Fn(&str) -> bool) -> String {
    for _ in 0..100 {
        let msg = read_text(peer);
        if msg == "2" {
            peer.send(&text("3"));
            continue;
        }
        if want(&msg) {
            return msg;
        }
    }
    panic!("no matching message within 100");
}

/// The connection ends (close frame or EOF) within `within`.
fn assert_closed_within(peer: &mut Peer, within: Duration) {
    peer.sock.set_read_timeout(Some(within)).expect("timeout");
    let started = Instant::now();
    loop {
        match peer.read_message() {
            Got::Close(_) | Got::Eof => return,
            Got::Timeout => panic!("still open after {within:?}"),
            Got::Message(..) => {
                assert!(started.elapsed() < within, "still open after {within:?}");
            }
        }
    }
}

#[test]
fn http_errors_have_nodes_codes_and_never_open_a_session() {
    let s = server();
    let p = s.port;
    assert_error(
        get(p, "/socket.io/?EIO=4", false),
        400,
        0,
        "Transport unknown",
    );
    assert_error(
        get(p, "/socket.io/?EIO=4&transport=flash", true),
        400,
        0,
        "Transport unknown",
    );
    assert_error(
        get(
            p,
            "/socket.io/?EIO=4&transport=websocket&sid=AAAAAAAAAAAAAAAAAAAA",
            true,
        ),
        400,
        1,
        "Session ID unknown",
    );
    assert_error(
        http(
            p,
            "POST /socket.io/?EIO=4&transport=websocket HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\
             Connection: close\r\n\r\n",
        ),
        400,
        2,
        "Bad handshake method",
    );
    assert_error(get(p, WS, false), 400, 3, "Bad request");
    for eio in ["EIO=3&", "", "EIO=abc&"] {
        let (status, head, body) = get(p, &format!("/socket.io/?{eio}transport=websocket"), true);
        assert_error((status, head, body), 400, 5, "Unsupported protocol version");
    }
    // Not Socket.IO's path: no endpoint there.
    assert_eq!(get(p, "/other/?EIO=4&transport=websocket", true).0, 404);
}

#[test]
fn the_open_packet_has_exactly_the_five_keys() {
    let s = server();
    let (_peer, open) = engine(s.port);
    let json: serde_json::Value = serde_json::from_str(&open[1..]).expect("json");
    assert!(open.starts_with('0'));
    let obj = json.as_object().expect("object");
    assert_eq!(obj.len(), 5, "{open}");
    let sid = obj["sid"].as_str().expect("sid");
    assert_eq!(sid.len(), 20);
    assert!(
        sid.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    );
    assert_eq!(obj["upgrades"], serde_json::json!([]));
    assert_eq!(obj["pingInterval"], 1000);
    assert_eq!(obj["pingTimeout"], 800);
    assert_eq!(obj["maxPayload"], 1_000_000);
}

#[test]
fn pongs_keep_a_session_and_a_missing_pong_ends_it() {
    let s = server();
    // Answering pings: alive after three intervals.
    let mut alive = socket(s.port);
    let started = Instant::now();
    let mut pings = 0;
    while started.elapsed() < Duration::from_millis(3300) {
        if read_text(&mut alive) == "2" {
            pings += 1;
            alive.send(&text("3"));
        }
    }
    assert!(pings >= 2, "{pings} pings in 3.3 s at a 1 s interval");
    alive.send(&text(r#"42["echo","still"]"#));
    assert_eq!(
        read_until(&mut alive, |m| m.starts_with("42")),
        r#"42["echo","still"]"#
    );

    // Not answering: the ping comes, then the session ends (800 ms + sweep slack).
    let mut silent = socket(s.port);
    assert_eq!(read_text(&mut silent), "2");
    assert_closed_within(&mut silent, Duration::from_millis(2000));
}

#[test]
fn no_connect_within_the_timeout_closes() {
    let s = server();
    let (mut peer, _) = engine(s.port);
    let started = Instant::now();
    peer.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    loop {
        match peer.read_message() {
            Got::Message(1, m) if m == b"2" => peer.send(&text("3")),
            Got::Close(_) | Got::Eof => break,
            other => panic!("unexpected {other:?}"),
        }
    }
    let took = started.elapsed();
    assert!(
        (Duration::from_millis(1900)..Duration::from_millis(3000)).contains(&took),
        "closed after {took:?} (connectTimeout 2000 ms)"
    );
}

#[test]
fn malformed_input_closes_only_its_own_connection() {
    let s = server();
    let mut bystander = socket(s.port);
    let bad_inputs: &[(&str, Vec<u8>)] = &[
        ("unknown Engine.IO type", text("9")),
        ("client ping", text("2")),
        ("unknown Socket.IO type", text("49")),
        ("bad JSON", text(r#"42["echo""#)),
        ("reserved event", text(r#"42["connect"]"#)),
        ("escaped reserved event", text(r#"42["\u0064isconnect"]"#)),
        ("event not an array", text(r#"42{"a":1}"#)),
        ("empty event", text("42[]")),
        ("non-digit ack id", text(r#"42abc["echo"]"#)),
        ("namespace not joined", text(r#"42/custom,["echo"]"#)),
        ("CONNECT for a joined namespace", text("40")),
        ("client CONNECT_ERROR", text(r#"44{"message":"x"}"#)),
        ("DISCONNECT with a payload", text(r#"41{"a":1}"#)),
        ("binary without a header", frame(true, 2, b"\x01\x02")),
        ("too many attachments", text(r#"4511-["echo"]"#)),
        ("text while attachments are due", {
            let mut v = text(r#"451-["echo",{"_placeholder":true,"num":0}]"#);
            v.extend(text(r#"42["echo"]"#));
            v
        }),
    ];
    for (what, input) in bad_inputs {
        let mut bad = socket(s.port);
        bad.send(input);
        bad.sock
            .set_read_timeout(Some(Duration::from_secs(3)))
            .expect("timeout");
        loop {
            match bad.read_message() {
                Got::Close(_) | Got::Eof => break,
                Got::Message(1, m) if m == b"2" => bad.send(&text("3")),
                other => panic!("{what}: expected the connection to close, got {other:?}"),
            }
        }
        bystander.send(&text(&format!(
            r#"421["echo",{}]"#,
            serde_json::json!(what)
        )));
        let reply = read_until(&mut bystander, |m| m.starts_with("431"));
        assert_eq!(reply, format!(r#"431[{}]"#, serde_json::json!(what)));
    }
}

#[test]
fn a_message_over_max_payload_closes_1009() {
    let s = server();
    let mut peer = socket(s.port);
    let big = format!(r#"42["echo","{}"]"#, "x".repeat(1_000_001));
    peer.send(&text(&big));
    peer.sock
        .set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    loop {
        match peer.read_message() {
            Got::Close(code) => {
                assert_eq!(code, Some(1009));
                break;
            }
            Got::Message(1, m) if m == b"2" => {}
            other => panic!("expected close 1009, got {other:?}"),
        }
    }
    // Just under the limit is delivered.
    let mut ok = socket(s.port);
    let payload = "y".repeat(999_000);
    ok.send(&text(&format!(r#"421["echo","{payload}"]"#)));
    let reply = read_until(&mut ok, |m| m.starts_with("431"));
    assert!(reply == format!(r#"431["{payload}"]"#), "echoed wrong");
}

#[test]
fn broadcasts_of_names_clients_refuse_are_not_sent() {
    let s = server();
    let mut a = socket(s.port);
    let mut b = socket(s.port);
    for bad in [
        r#"421["to-all","disconnect"]"#,
        r#"421["broadcast",{}]"#,
        r#"421["to-all",null,1]"#,
    ] {
        a.send(&text(bad));
        assert_eq!(read_until(&mut a, |m| m.starts_with("43")), "431[]");
    }
    a.send(&text(r#"422["to-all","fine",1]"#));
    assert_eq!(read_until(&mut a, |m| m.starts_with("43")), "432[]");
    // b got only the valid one, and is still connected.
    assert_eq!(
        read_until(&mut b, |m| m.starts_with("42")),
        r#"42["fine",1]"#
    );
    b.send(&text(r#"427["echo","ok"]"#));
    assert_eq!(read_until(&mut b, |m| m.starts_with("43")), r#"437["ok"]"#);
}
