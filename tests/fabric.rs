//! The cross-core fabric end to end, on the real binary with `--workers 2` and enough
//! clients that both workers hold some (checked through `/metrics`): broadcast reaches
//! every client exactly once, rooms and `except` select the right recipients, one
//! sender's messages arrive in order, disconnects clean room membership, and clients
//! that stop reading are cut off (1008) without stalling the others or growing memory,
//! and volatile broadcasts skip them instead.

mod util;

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use util::{Got, Peer, Server, frame, upgrade_request};

/// `GET /metrics`, parsed into `name{labels}` → value.
fn scrape(port: u16) -> HashMap<String, u64> {
    let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    sock.read_to_string(&mut text).expect("read metrics");
    assert!(text.starts_with("HTTP/1.1 200 OK\r\n"), "{text}");
    let body = text.split("\r\n\r\n").nth(1).expect("body");
    body.lines()
        .filter(|l| !l.starts_with('#') && !l.is_empty())
        .map(|l| {
            let (name, value) = l.rsplit_once(' ').expect("sample");
            (name.to_string(), value.parse().expect("value"))
        })
        .collect()
}

/// Opens `n` clients, and more (up to 32) while one worker holds none: the kernel
/// spreads connections over the two listeners by a hash of their ports, so a few can
/// all land on one. Checks that both workers hold some.
fn open_on_both_workers(server: &Server, n: usize) -> Vec<Peer> {
    let mut peers: Vec<Peer> = (0..n).map(|_| Peer::open(server.port)).collect();
    let held = |m: &HashMap<String, u64>, w: usize| {
        m[&format!("throng_worker_connections{{worker=\"{w}\"}}")]
    };
    let mut m = scrape(server.port);
    for _ in 0..32 {
        if (0..2).all(|w| held(&m, w) > 0) {
            break;
        }
        peers.push(Peer::open(server.port));
        m = scrape(server.port);
    }
    for w in 0..2 {
        assert!(held(&m, w) > 0, "worker {w} holds no connection: {m:?}");
    }
    peers
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

/// Nothing more arrives within `wait`.
fn assert_quiet(peer: &mut Peer, wait: Duration) {
    peer.sock.set_read_timeout(Some(wait)).expect("timeout");
    let got = peer.read_message();
    assert_eq!(got, Got::Timeout, "unexpected extra message");
    peer.sock
        .set_read_timeout(Some(util::IO_TIMEOUT))
        .expect("timeout");
}

#[test]
fn shootout_broadcast_reaches_every_client_once_in_order_across_workers() {
    let server = Server::start(&["--app", "shootout", "--workers", "2"]);
    let mut peers = open_on_both_workers(&server, 48);
    let senders = 3;
    let per_sender = 20;
    // Each sender pipelines all its broadcasts in one write.
    for (s, peer) in peers.iter_mut().enumerate().take(senders) {
        let mut burst = Vec::new();
        for k in 0..per_sender {
            burst.extend(text(&format!(
                r#"{{"type":"broadcast","payload":{{"s":{s},"k":{k}}}}}"#
            )));
        }
        peer.send(&burst);
    }
    for (i, peer) in peers.iter_mut().enumerate() {
        let mut next = vec![0; senders];
        let mut results = 0;
        let expected = senders * per_sender + if i < senders { per_sender } else { 0 };
        for _ in 0..expected {
            let msg: serde_json::Value = serde_json::from_str(&read_text(peer)).expect("json");
            let (s, k) = (
                msg["payload"]["s"].as_u64().expect("s") as usize,
                msg["payload"]["k"].as_u64().expect("k") as usize,
            );
            match msg["type"].as_str() {
                Some("broadcast") => {
                    assert_eq!(k, next[s], "client {i}: sender {s}'s order broken");
                    next[s] += 1;
                }
                Some("broadcastResult") => {
                    assert_eq!(s, i, "result to the wrong client");
                    // The sender's own copy comes before its result.
                    assert_eq!(k + 1, next[s], "result before own broadcast");
                    results += 1;
                }
                other => panic!("unexpected type {other:?}"),
            }
        }
        assert_eq!(next, vec![per_sender; senders], "client {i}");
        assert_eq!(results, if i < senders { per_sender } else { 0 });
    }
    // Exactly once: nothing extra anywhere.
    for peer in peers.iter_mut() {
        assert_quiet(peer, Duration::from_millis(50));
    }
    let m = scrape(server.port);
    assert_eq!(m["throng_broadcasts_total"], (senders * per_sender) as u64);
    assert_eq!(
        m["throng_broadcast_deliveries_total"],
        (senders * per_sender * peers.len()) as u64
    );
}

#[test]
fn shootout_echo_and_bad_input_get_their_close_codes() {
    let server = Server::start(&["--app", "shootout"]);
    let mut a = Peer::open(server.port);
    let echo = r#"{"type":"echo","payload":{"nested":[1,"two",null]}}"#;
    a.send(&text(echo));
    assert_eq!(read_text(&mut a), echo);
    a.send(&text("not json"));
    a.expect_close(1008);
    let mut b = Peer::open(server.port);
    b.send(&frame(true, 2, b"\x01\x02"));
    b.expect_close(1003);
    let mut c = Peer::open(server.port);
    c.send(&text(r#"{"type":"nope","payload":1}"#));
    c.expect_close(1008);
    // The server still serves.
    let mut d = Peer::open(server.port);
    d.send(&text(echo));
    assert_eq!(read_text(&mut d), echo);
}

fn subscribe(peer: &mut Peer, topic: &str) {
    peer.send(&text(&format!(r#"{{"op":"subscribe","topic":"{topic}"}}"#)));
    assert_eq!(
        read_text(peer),
        format!(r#"{{"op":"subscribed","topic":"{topic}"}}"#)
    );
}

#[test]
fn pubsub_rooms_except_and_unsubscribe_select_recipients_across_workers() {
    let server = Server::start(&["--app", "pubsub", "--workers", "2"]);
    let mut peers = open_on_both_workers(&server, 40);
    // Even peers: "news"; every third: "vip" too; peer 1 publishes.
    for (i, peer) in peers.iter_mut().enumerate() {
        if i % 2 == 0 {
            subscribe(peer, "news");
        }
        if i % 3 == 0 {
            subscribe(peer, "vip");
        }
    }
    let publish = |peer: &mut Peer, extra: &str, id: u32| {
        peer.send(&text(&format!(
            r#"{{"op":"publish","topic":"news","data":{{"n":{id}}},"id":{id}{extra}}}"#
        )));
        assert_eq!(
            read_text(peer),
            format!(r#"{{"op":"published","id":{id}}}"#)
        );
    };
    publish(&mut peers[1], "", 1);
    publish(&mut peers[1], r#","except":["vip"]"#, 2);
    for (i, peer) in peers.iter_mut().enumerate() {
        if i % 2 == 0 {
            assert_eq!(read_text(peer), r#"{"topic":"news","data":{"n":1}}"#);
            if i % 3 != 0 {
                assert_eq!(read_text(peer), r#"{"topic":"news","data":{"n":2}}"#);
            }
        }
        assert_quiet(peer, Duration::from_millis(30));
    }
    // A subscribed publisher gets its own message unless it asks not to.
    publish(&mut peers[0], r#","skip_sender":true"#, 3);
    assert_quiet(&mut peers[0], Duration::from_millis(50));
    for peer in peers.iter_mut().skip(2).step_by(2) {
        assert_eq!(read_text(peer), r#"{"topic":"news","data":{"n":3}}"#);
    }
    // Unsubscribed peers get nothing more.
    for (i, peer) in peers.iter_mut().enumerate().skip(2).step_by(2) {
        peer.send(&text(r#"{"op":"unsubscribe","topic":"news"}"#));
        assert_eq!(
            read_text(peer),
            r#"{"op":"unsubscribed","topic":"news"}"#,
            "peer {i}"
        );
    }
    publish(&mut peers[1], "", 4);
    assert_eq!(
        read_text(&mut peers[0]),
        r#"{"topic":"news","data":{"n":4}}"#
    );
    for peer in peers.iter_mut().skip(2) {
        assert_quiet(peer, Duration::from_millis(30));
    }
    // Bad requests get an error reply and the connection stays open.
    peers[5].send(&text(r#"{"op":"publish","topic":""}"#));
    assert!(read_text(&mut peers[5]).starts_with(r#"{"op":"error""#));
    peers[5].send(&text("{oops"));
    assert!(read_text(&mut peers[5]).starts_with(r#"{"op":"error""#));
    subscribe(&mut peers[5], "still-open");
}

#[test]
fn disconnects_clean_room_membership() {
    let server = Server::start(&["--app", "pubsub", "--workers", "2"]);
    let mut publisher = Peer::open(server.port);
    let mut gone: Vec<Peer> = (0..30).map(|_| Peer::open(server.port)).collect();
    for peer in gone.iter_mut() {
        subscribe(peer, "t");
    }
    for peer in gone.iter_mut().step_by(2) {
        peer.send(&util::close_frame(1000, b""));
        peer.expect_close(1000);
    }
    drop(gone); // the rest vanish without a close frame
    // New connections take the freed slots; none may inherit a subscription.
    let mut fresh: Vec<Peer> = (0..30).map(|_| Peer::open(server.port)).collect();
    publisher.send(&text(r#"{"op":"publish","topic":"t","data":1,"id":1}"#));
    assert_eq!(read_text(&mut publisher), r#"{"op":"published","id":1}"#);
    for peer in fresh.iter_mut() {
        assert_quiet(peer, Duration::from_millis(30));
    }
    // The room index is empty again on both workers (its gauge updates every sweep).
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let m = scrape(server.port);
        let rooms: u64 = (0..2)
            .map(|w| m[&format!("throng_worker_rooms{{worker=\"{w}\"}}")])
            .sum();
        if rooms == 0 {
            break;
        }
        assert!(Instant::now() < deadline, "rooms left behind: {m:?}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// Resident set of `pid`, in KiB.
#[test]
fn volatile_broadcasts_skip_a_stalled_subscriber_and_reach_the_others() {
    let server = Server::start(&[
        "--app",
        "pubsub",
        "--workers",
        "2",
        "--max-queued-bytes",
        "65536",
        "--slow-consumer-grace",
        "60",
    ]);
    let mut stalled = stalled_client(server.port);
    stalled
        .write_all(&text(r#"{"op":"subscribe","topic":"t"}"#))
        .expect("subscribe");
    // Its one reply, read before it stops reading, so the subscription is in place.
    let mut reply = [0u8; 2 + r#"{"op":"subscribed","topic":"t"}"#.len()];
    stalled.read_exact(&mut reply).expect("subscribed");
    assert!(reply.ends_with(br#""subscribed","topic":"t"}"#));
    let mut peers = open_on_both_workers(&server, 5);
    let (publisher, subscribers) = peers.split_first_mut().expect("a publisher");
    for peer in subscribers.iter_mut() {
        peer.send(&text(r#"{"op":"subscribe","topic":"t"}"#));
        assert_eq!(read_text(peer), r#"{"op":"subscribed","topic":"t"}"#);
    }
    // 3,000 volatile publishes of 2 KiB: 6 MB, far past the stalled client's buffers
    // and the 64 KiB cap, so most of its copies must be dropped rather than queued.
    let padding = "v".repeat(2048);
    let total = 3000;
    for k in 0..total {
        publisher.send(&text(&format!(
            r#"{{"op":"publish","topic":"t","id":{k},"volatile":true,"data":"{k}:{padding}"}}"#
        )));
        assert_eq!(
            read_text(publisher),
            format!(r#"{{"op":"published","id":{k}}}"#)
        );
        for peer in subscribers.iter_mut() {
            let got = read_text(peer);
            assert!(
                got.starts_with(&format!(r#"{{"topic":"t","data":"{k}:"#)),
                "a reading subscriber lost or reordered {k}"
            );
        }
    }
    // Sweeps refresh the queued-bytes gauge every 250 ms.
    std::thread::sleep(Duration::from_millis(600));
    let m = scrape(server.port);
    assert!(m["throng_volatile_dropped_total"] > 0, "{m:?}");
    assert_eq!(m["throng_slow_consumer_closes_total"], 0);
    // Five peers, the stalled client and this scrape.
    assert_eq!(
        m["throng_connections_open"], 7,
        "the stalled client was closed"
    );
    let queued: u64 = (0..2)
        .map(|w| m[&format!("throng_worker_queued_bytes{{worker=\"{w}\"}}")])
        .sum();
    assert!(queued <= 65536 + 16384, "{queued} bytes queued for it");
    drop(stalled);
}

fn rss_kb(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS")
}

/// A client with a small receive buffer that completes the handshake and then never
/// reads again.
fn stalled_client(port: u16) -> TcpStream {
    let sock =
        socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None).expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    sock.connect(&std::net::SocketAddr::from(([127, 0, 0, 1], port)).into())
        .expect("connect");
    let mut sock: TcpStream = sock.into();
    sock.set_read_timeout(Some(util::IO_TIMEOUT))
        .expect("timeout");
    sock.write_all(upgrade_request(port, "/").as_bytes())
        .expect("upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        assert_eq!(sock.read(&mut byte).expect("read head"), 1, "eof in head");
        head.push(byte[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"));
    sock
}

#[test]
fn stalled_readers_are_closed_without_stalling_others_or_growing_memory() {
    let server = Server::start(&[
        "--app",
        "shootout",
        "--workers",
        "2",
        "--max-queued-bytes",
        "65536",
        "--slow-consumer-grace",
        "1",
    ]);
    let stalled: Vec<TcpStream> = (0..40).map(|_| stalled_client(server.port)).collect();
    let mut readers = open_on_both_workers(&server, 8);
    let baseline_kb = rss_kb(server.pid());
    // 4,000 broadcasts of 2 KiB: 8 MB to each client, far past the stalled ones' socket
    // buffers and the cap. The sender waits for each result, so readers keep pace.
    let padding = "p".repeat(2048);
    let total = 4000;
    let (sender, rest) = readers.split_first_mut().expect("a sender");
    let mut max_rss_kb = baseline_kb;
    let started = Instant::now();
    for k in 0..total {
        sender.send(&text(&format!(
            r#"{{"type":"broadcast","payload":{{"k":{k},"pad":"{padding}"}}}}"#
        )));
        let own = read_text(sender);
        assert!(own.starts_with(r#"{"type":"broadcast""#), "{}", &own[..40]);
        let result = read_text(sender);
        assert!(result.starts_with(r#"{"type":"broadcastResult""#));
        for peer in rest.iter_mut() {
            let got = read_text(peer);
            let needle = format!(r#""k":{k},"#);
            assert!(got.contains(&needle), "reader lost or reordered {k}");
        }
        if k % 500 == 0 {
            max_rss_kb = max_rss_kb.max(rss_kb(server.pid()));
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "stalled readers slowed the others down"
        );
    }
    // Every stalled client is closed as a slow consumer (after the 1 s grace at most).
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let m = scrape(server.port);
        let slow = m["throng_slow_consumer_closes_total"];
        if slow == stalled.len() as u64 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "slow-consumer closes: {slow} of {}",
            stalled.len()
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    max_rss_kb = max_rss_kb.max(rss_kb(server.pid()));
    // Without the cap the 40 stalled clients would hold ~8 MB each in user space.
    let grown_mb = (max_rss_kb.saturating_sub(baseline_kb)) / 1024;
    assert!(
        grown_mb < 64,
        "server RSS grew by {grown_mb} MiB with {} stalled readers",
        stalled.len()
    );
    drop(stalled);
}
