//! Admission control end to end over 127.0.0.1: past `--max-connections` or the
//! `--accept-rate` token bucket, a WebSocket upgrade and an Engine.IO polling handshake
//! get `503` with `Retry-After`, counted in `/metrics` by reason; the connections already
//! held keep being served.

mod util;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::{Peer, Server, upgrade_request};

/// Sends `request` on a fresh connection and reads to EOF: (status, head, body).
fn exchange(port: u16, request: &str) -> (u16, String, String) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    s.write_all(request.as_bytes()).expect("send");
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

fn metrics(port: u16) -> String {
    let (status, _, body) = exchange(
        port,
        "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
    );
    assert_eq!(status, 200, "{body}");
    body
}

fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name} in\n{text}"))
}

fn assert_busy(status: u16, head: &str) {
    assert_eq!(status, 503, "{head}");
    assert!(head.contains("\r\nretry-after: 3"), "{head}");
}

#[test]
fn past_max_connections_upgrades_and_polling_handshakes_get_503_and_the_held_ones_echo() {
    let server = Server::start(&[
        "--app",
        "conformance",
        "--workers",
        "1",
        "--max-connections",
        "3",
        "--retry-after",
        "3",
    ]);
    let port = server.port;
    // Server::start's probe connection is released before the test takes every slot.
    std::thread::sleep(Duration::from_millis(300));
    let path = "/socket.io/?EIO=4&transport=websocket";
    let mut held: Vec<Peer> = (0..3)
        .map(|_| {
            let mut p = Peer::connect(port);
            p.send(upgrade_request(port, path).as_bytes());
            assert_eq!(p.read_http().map(|(s, _)| s), Some(101));
            p
        })
        .collect();
    // A WebSocket upgrade, and an Engine.IO polling handshake, over the limit.
    let (status, head, _) = exchange(port, &upgrade_request(port, path));
    assert_busy(status, &head);
    let (status, head, _) = exchange(
        port,
        "GET /socket.io/?EIO=4&transport=polling HTTP/1.1\r\nHost: x\r\n\r\n",
    );
    assert_busy(status, &head);
    // A client that sends its request late still reads the whole answer.
    let mut late = Peer::connect(port);
    std::thread::sleep(Duration::from_millis(300));
    late.send(upgrade_request(port, path).as_bytes());
    let (status, headers) = late.read_http().expect("late answer");
    assert_eq!(status, 503);
    assert!(headers.iter().any(|h| h == "retry-after: 3"), "{headers:?}");

    // The held sessions are served: each got its Engine.IO open packet and gets its
    // Socket.IO CONNECT to `/` answered.
    for p in &mut held {
        match p.read_message() {
            util::Got::Message(1, open) => assert!(open.starts_with(b"0{"), "{open:?}"),
            other => panic!("no open packet: {other:?}"),
        }
        p.send(&util::frame(true, 1, b"40"));
        match p.read_message() {
            util::Got::Message(1, ack) => assert!(ack.starts_with(b"40{"), "{ack:?}"),
            other => panic!("no CONNECT answer: {other:?}"),
        }
    }
    // Room for one: /metrics counts the refusals.
    drop(held.pop());
    // Until the server has seen it go, a scrape is refused too (and counted).
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut busy = 0;
    let text = loop {
        let (status, head, body) = exchange(
            port,
            "GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n",
        );
        if status == 200 {
            break body;
        }
        assert_busy(status, &head);
        busy += 1;
        assert!(Instant::now() < deadline, "no room after a client left");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(
        counter(&text, "throng_refused_total{reason=\"max_connections\"}"),
        3 + busy,
        "{text}"
    );
    assert_eq!(
        counter(&text, "throng_refused_total{reason=\"accept_rate\"}"),
        0
    );
}

#[test]
fn accept_rate_lets_a_burst_in_then_refuses_then_refills() {
    let server = Server::start(&["--workers", "1", "--accept-rate", "5", "--retry-after", "3"]);
    let port = server.port;
    // Server::start used one token to see the port open; let the bucket refill.
    std::thread::sleep(Duration::from_millis(1200));
    let start = Instant::now();
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..20 {
        let mut p = Peer::connect(port);
        p.send(upgrade_request(port, "/").as_bytes());
        match p.read_http() {
            Some((101, _)) => open.push(p),
            Some((503, headers)) => {
                assert!(headers.iter().any(|h| h == "retry-after: 3"), "{headers:?}");
                refused += 1;
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    // Burst 5, plus what 5 a second earned meanwhile.
    let allowed = 5 + (elapsed * 5.0).ceil() as usize;
    assert!(open.len() >= 5, "only {} let in", open.len());
    assert!(
        open.len() <= allowed,
        "{} let in, at most {allowed}",
        open.len()
    );
    assert_eq!(open.len() + refused, 20);
    for p in &mut open {
        p.echo(1, b"admitted clients are served");
    }
    // The bucket refills: after a second, new clients get in again.
    std::thread::sleep(Duration::from_millis(1100));
    Peer::open(port).echo(2, b"refilled");
    let text = metrics(port);
    assert_eq!(
        counter(&text, "throng_refused_total{reason=\"accept_rate\"}"),
        refused as u64,
        "{text}"
    );
}

#[test]
fn healthz_and_readyz_answer_on_the_serving_port() {
    let server = Server::start(&[]);
    let (status, _, body) = util::http_get(server.port, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));
    let (status, _, body) = util::http_get(server.port, "/readyz");
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    // Not for an upgrade: the echo app serves every path.
    let mut p = Peer::connect(server.port);
    p.send(upgrade_request(server.port, "/healthz").as_bytes());
    assert_eq!(p.read_http().map(|(s, _)| s), Some(101));
    p.echo(1, b"an upgrade at /healthz is the app's");
}
