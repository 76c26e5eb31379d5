//! Draining for a rolling deploy, end to end over 127.0.0.1: on SIGTERM or
//! `POST /admin/drain` every client gets close 1001 (spread over `--drain-window`), new
//! connections are refused, `/readyz` on the admin port says draining, and the process
//! exits 0 within the window plus `--drain-timeout`. The official `socket.io-client`
//! (WebSocket and polling) reconnects to the next server on the same port
//! (`tests/sio/drain.test.js`).

mod util;

use std::sync::mpsc;
use std::time::{Duration, Instant};

use util::{Got, Peer, Server, free_port, http_get};

/// Each peer on its own thread: the time its close arrived and its code; it answers
/// the close and expects the server's EOF.
fn await_closes(peers: Vec<Peer>, t0: Instant) -> Vec<(Duration, Option<u16>)> {
    let (tx, rx) = mpsc::channel();
    for mut p in peers {
        let tx = tx.clone();
        p.sock
            .set_read_timeout(Some(Duration::from_secs(8)))
            .expect("timeout");
        std::thread::spawn(move || {
            let got = p.read_message();
            let at = t0.elapsed();
            let code = match got {
                Got::Close(code) => {
                    p.send(&util::close_frame(1001, b""));
                    p.expect_eof();
                    code
                }
                other => panic!("expected a close, got {other:?}"),
            };
            let _ = tx.send((at, code));
        });
    }
    drop(tx);
    let mut out: Vec<_> = rx.iter().collect();
    out.sort();
    out
}

fn sigterm(server: &Server) {
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(server.pid() as i32, libc::SIGTERM) };
}

#[test]
fn sigterm_closes_every_client_with_1001_spread_over_the_window_refuses_new_ones_and_exits_0() {
    let mut server = Server::start(&["--drain-window", "2", "--drain-timeout", "3"]);
    let port = server.port;
    let peers: Vec<Peer> = (0..20).map(|_| Peer::open(port)).collect();
    let t0 = Instant::now();
    sigterm(&server);
    let closes = await_closes(peers, t0);
    assert_eq!(closes.len(), 20, "every client gets the close");
    assert!(
        closes.iter().all(|(_, code)| *code == Some(1001)),
        "{closes:?}"
    );
    let (first, last) = (closes[0].0, closes[19].0);
    // Two workers, ten each: k of 10 at 0.2 s * k, the last at 1.8 s.
    assert!(
        first < Duration::from_millis(700),
        "first close at {first:?}"
    );
    assert!(
        last >= Duration::from_millis(1200),
        "not spread: last at {last:?}"
    );
    assert!(last < Duration::from_millis(3000), "last close at {last:?}");
    // Not accepting any more.
    assert!(
        std::net::TcpStream::connect(("127.0.0.1", port)).is_err(),
        "a new connection was accepted while draining"
    );
    let status = server
        .wait_exit(Duration::from_secs(6))
        .expect("exits within window + timeout");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_client_that_never_answers_the_close_does_not_hold_the_exit_past_the_bound() {
    let mut server = Server::start(&["--drain-window", "1", "--drain-timeout", "2"]);
    let port = server.port;
    // Three clients that read nothing and never answer.
    let _mute: Vec<Peer> = (0..3).map(|_| Peer::open(port)).collect();
    let t0 = Instant::now();
    sigterm(&server);
    let status = server.wait_exit(Duration::from_secs(8)).expect("exits");
    assert_eq!(status.code(), Some(0));
    // The close handshake waits 3 s at most per connection, within window + timeout.
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
}

#[test]
fn post_admin_drain_on_the_admin_port_drains_and_readyz_says_so() {
    let admin = free_port();
    let admin_s = admin.to_string();
    let mut server = Server::start(&[
        "--admin-port",
        &admin_s,
        "--drain-window",
        "1",
        "--drain-timeout",
        "3",
    ]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while http_get(admin, "/healthz").0 != 200 {
        assert!(Instant::now() < deadline, "no admin listener");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(http_get(admin, "/readyz").0, 200);
    assert!(
        http_get(admin, "/metrics")
            .2
            .contains("throng_connections_open")
    );
    // Bound to loopback by default; not a WebSocket endpoint; drain wants POST.
    assert_eq!(http_get(admin, "/admin/drain").0, 405);
    assert_eq!(http_get(admin, "/").0, 404);

    let mut peer = Peer::open(server.port);
    peer.echo(1, b"before the drain");
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).expect("admin");
    use std::io::{Read, Write};
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(b"POST /admin/drain HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n")
        .expect("post");
    let mut answer = String::new();
    let _ = s.read_to_string(&mut answer);
    assert!(answer.starts_with("HTTP/1.1 202 "), "{answer}");
    let (status, _, body) = http_get(admin, "/readyz");
    assert_eq!((status, body.as_str()), (503, "not ready: draining\n"));
    assert!(
        http_get(admin, "/metrics")
            .2
            .contains("\nthrong_draining 1\n"),
        "the gauge says draining"
    );
    assert_eq!(http_get(admin, "/healthz").0, 200);
    peer.expect_close(1001);
    let status = server.wait_exit(Duration::from_secs(6)).expect("exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn socketio_clients_reconnect_to_the_next_server_on_the_same_port() {
    let admin = free_port();
    let admin_s = admin.to_string();
    let mut a = Server::start(&[
        "--app",
        "conformance",
        "--admin-port",
        &admin_s,
        "--drain-window",
        "2",
        "--drain-timeout",
        "3",
    ]);
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sio");
    let url = format!("http://127.0.0.1:{}", a.port);
    let admin_url = format!("http://127.0.0.1:{admin}");
    let next_admin = free_port().to_string();
    util::node_suite(
        &dir.join("drain.test.js"),
        &[
            ("THRONG_URL", url.as_str()),
            ("ADMIN_URL", admin_url.as_str()),
            ("THRONG_BIN", env!("CARGO_BIN_EXE_throng")),
            ("NEXT_ADMIN_PORT", next_admin.as_str()),
        ],
    );
    let status = a.wait_exit(Duration::from_secs(8)).expect("A exits");
    assert_eq!(status.code(), Some(0));
}

#[test]
fn a_drain_ends_as_soon_as_every_client_is_gone() {
    let mut server = Server::start(&["--drain-window", "20", "--drain-timeout", "20"]);
    let peers: Vec<Peer> = (0..10).map(|_| Peer::open(server.port)).collect();
    sigterm(&server);
    let t0 = Instant::now();
    // The clients leave by themselves before their turn in the window comes.
    drop(peers);
    let status = server
        .wait_exit(Duration::from_secs(10))
        .expect("exits early");
    assert_eq!(status.code(), Some(0));
    assert!(t0.elapsed() < Duration::from_secs(10));
}

/// One HTTP/1.1 exchange on a kept-alive connection: (status, body); the body is read
/// by its Content-Length. `None` when the connection ends first.
fn exchange(s: &mut std::net::TcpStream, request: &str) -> Option<(u16, String)> {
    use std::io::{Read, Write};
    s.write_all(request.as_bytes()).ok()?;
    let mut got = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = got.windows(4).position(|w| w == b"\r\n\r\n") {
            let head = String::from_utf8_lossy(&got[..end]).to_ascii_lowercase();
            let status = head.split(' ').nth(1)?.parse().ok()?;
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("content-length: "))
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            while got.len() < end + 4 + len {
                let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
                got.extend_from_slice(&chunk[..n]);
            }
            let body = String::from_utf8_lossy(&got[end + 4..end + 4 + len]).into_owned();
            return Some((status, body));
        }
        let n = s.read(&mut chunk).ok().filter(|&n| n > 0)?;
        got.extend_from_slice(&chunk[..n]);
    }
}

#[test]
fn a_polling_session_is_told_when_the_drain_starts_and_its_late_post_gets_ok() {
    let admin = free_port();
    let admin_s = admin.to_string();
    let mut server = Server::start(&[
        "--app",
        "conformance",
        "--workers",
        "1",
        "--admin-port",
        &admin_s,
        "--drain-window",
        "20",
        "--drain-timeout",
        "3",
    ]);
    let port = server.port;
    let connect = || {
        let s = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
        s.set_read_timeout(Some(Duration::from_secs(5)))
            .expect("timeout");
        s
    };
    let path = "/socket.io/?EIO=4&transport=polling";
    let request = |method: &str, query: &str, body: &str| {
        format!(
            "{method} {path}{query} HTTP/1.1\r\nHost: x\r\nContent-Type: text/plain\r\n\
             Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
    };
    // Opened before the drain closes the listener: a GET and a POST connection.
    let mut get = connect();
    let mut post = connect();
    let (status, open) = exchange(&mut get, &request("GET", "", "")).expect("handshake");
    assert_eq!(status, 200, "{open}");
    let sid = open
        .split("\"sid\":\"")
        .nth(1)
        .and_then(|rest| rest.split('"').next())
        .expect("a sid")
        .to_string();
    let sid_query = format!("&sid={sid}");
    // Two WebSockets keep the window's schedule (and so the process) going: the
    // second is told at 10 s.
    let _ws: Vec<Peer> = (0..2)
        .map(|_| {
            let mut p = Peer::connect(port);
            p.send(util::upgrade_request(port, "/socket.io/?EIO=4&transport=websocket").as_bytes());
            assert_eq!(p.read_http().map(|(s, _)| s), Some(101));
            p
        })
        .collect();

    let t0 = Instant::now();
    let mut s = std::net::TcpStream::connect(("127.0.0.1", admin)).expect("admin");
    assert_eq!(
        exchange(
            &mut s,
            "POST /admin/drain HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n"
        )
        .map(|(status, _)| status),
        Some(202)
    );
    // The close packet comes at once (after a ping the conformance app may have sent
    // meanwhile), not at its turn in the 20 s window.
    let mut last = String::new();
    for _ in 0..3 {
        let (status, body) = exchange(&mut get, &request("GET", &sid_query, "")).expect("a GET");
        assert_eq!(status, 200, "{body}");
        last = body;
        if last.ends_with('1') {
            break;
        }
    }
    assert_eq!(last, "1", "the close packet, alone");
    assert!(t0.elapsed() < Duration::from_secs(5), "{:?}", t0.elapsed());
    // The pong the client had on its way before it read the `1`: dropped with `ok`.
    assert_eq!(
        exchange(&mut post, &request("POST", &sid_query, "3")),
        Some((200, "ok".to_string()))
    );
    // A sid this server never ended is still unknown.
    let (status, body) = exchange(
        &mut post,
        &request("POST", "&sid=AAAAAAAAAAAAAAAAAAAA", "3"),
    )
    .expect("an answer");
    assert_eq!(status, 400, "{body}");
    assert!(body.contains("Session ID unknown"), "{body}");
    // The window would hold the process 10 s more: this test is done with it.
    server.child.kill().expect("kill");
    let _ = server.child.wait();
}
