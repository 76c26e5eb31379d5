//! The Redis bridge in a mixed cluster: a real `redis-server` started here (free port,
//! no persistence, stopped by PID), two `throng serve --app conformance --redis-url …`
//! and Node's socket.io with `@socket.io/redis-adapter` (`tests/sio/node-server.js`),
//! driven by `tests/sio/redis.test.js` with the official clients and the Redis emitter.
//! Also: Redis going away and coming back never stops local delivery.

mod util;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::Server;

fn sio_dir() -> PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sio");
    assert!(
        dir.join("node_modules/@socket.io/redis-adapter").is_dir(),
        "the Redis adapter is missing: run `npm ci --prefix tests/sio` (scripts/test.sh does)"
    );
    dir
}

/// A process killed (and reaped) when dropped.
struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn wait_listening(port: u16, what: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "{what} did not listen on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// `redis-server` on `port` of loopback, in memory only.
fn redis_on(port: u16) -> Killed {
    let child = Command::new("redis-server")
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
        .args(["--save", "", "--appendonly", "no"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("redis-server must be installed (.ci/run installs it with apt-get)");
    let redis = Killed(child);
    wait_listening(port, "redis-server");
    redis
}

/// Node's reference server with the Redis adapter on `redis_url`, and its port.
fn node_on_bus(redis_url: &str) -> (Killed, u16) {
    node_on_bus_as(redis_url, "classic")
}

/// `node_on_bus` with `createShardedAdapter` when `mode` is `sharded`.
fn node_on_bus_as(redis_url: &str, mode: &str) -> (Killed, u16) {
    let port = util::free_port();
    let node = Killed(
        Command::new("node")
            .arg(sio_dir().join("node-server.js"))
            .arg(port.to_string())
            .arg(redis_url)
            .arg(mode)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed"),
    );
    wait_listening(port, "node's server");
    (node, port)
}

fn throng_on_bus(redis_url: &str) -> Server {
    throng_on_bus_as(redis_url, "classic")
}

fn throng_on_bus_as(redis_url: &str, mode: &str) -> Server {
    Server::start(&[
        "--app",
        "conformance",
        "--workers",
        "2",
        "--redis-url",
        redis_url,
        "--redis-mode",
        mode,
    ])
}

#[test]
fn sharded_mode_crosses_with_nodes_sharded_adapter() {
    let redis_port = util::free_port();
    let _redis = redis_on(redis_port);
    let url = format!("redis://127.0.0.1:{redis_port}");
    let a = throng_on_bus_as(&url, "sharded");
    let b = throng_on_bus_as(&url, "sharded");
    let (_node, node_port) = node_on_bus_as(&url, "sharded");
    std::thread::sleep(Duration::from_millis(300));
    let servers = format!(
        "A=http://127.0.0.1:{},B=http://127.0.0.1:{},N=http://127.0.0.1:{node_port}",
        a.port, b.port
    );
    util::node_suite(
        &sio_dir().join("redis-sharded.test.js"),
        &[("SERVERS", servers.as_str()), ("REDIS_URL", url.as_str())],
    );
    for port in [a.port, b.port] {
        let text = metrics(port);
        assert_eq!(value(&text, "throng_redis_link_up"), Some(1), "{text}");
        assert!(
            value(&text, "throng_redis_received_total") > Some(0),
            "{text}"
        );
    }
}

#[test]
fn a_mixed_cluster_of_throng_node_and_an_emitter() {
    let redis_port = util::free_port();
    let _redis = redis_on(redis_port);
    let url = format!("redis://127.0.0.1:{redis_port}");
    let a = throng_on_bus(&url);
    let b = throng_on_bus(&url);
    let (_node, node_port) = node_on_bus(&url);
    // The bridges subscribe right after start; give them a moment on a loaded runner.
    std::thread::sleep(Duration::from_millis(300));
    let servers = format!(
        "A=http://127.0.0.1:{},B=http://127.0.0.1:{},N=http://127.0.0.1:{node_port}",
        a.port, b.port
    );
    let env = [("SERVERS", servers.as_str()), ("REDIS_URL", url.as_str())];
    util::node_suite(&sio_dir().join("redis.test.js"), &env);
    // Requests both ways: Node asks Throng, Throng asks Node (and each other).
    util::node_suite(&sio_dir().join("redis-requests.test.js"), &env);
    // What the suites did shows in /metrics.
    for port in [a.port, b.port] {
        let text = metrics(port);
        assert_eq!(value(&text, "throng_redis_link_up"), Some(1), "{text}");
        assert!(
            value(&text, "throng_redis_published_total") > Some(0),
            "{text}"
        );
        assert!(
            value(&text, "throng_redis_received_total") > Some(0),
            "{text}"
        );
        assert!(
            value(&text, "throng_redis_requests_answered_total") > Some(0),
            "{text}"
        );
    }
    // A asked on /custom, where the test's own server never answers.
    let text = metrics(a.port);
    assert!(
        value(&text, "throng_redis_request_timeouts_total") >= Some(1),
        "{text}"
    );
}

/// Resident memory of process `pid`, KiB.
fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        })
        .expect("VmRSS of a live process")
}

/// The body of `GET /metrics`.
fn metrics(port: u16) -> String {
    use std::io::{Read, Write};
    let mut sock = std::net::TcpStream::connect(("127.0.0.1", port)).expect("connect");
    sock.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("timeout");
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: t\r\nConnection: close\r\n\r\n")
        .expect("send");
    let mut text = String::new();
    sock.read_to_string(&mut text).expect("read");
    text
}

/// Waits (at most 15 s: peers are counted every 5 s) until the node on `port` counts
/// `peers` other Throng processes on its bus.
fn wait_for_peers(port: u16, peers: u64) {
    let deadline = std::time::Instant::now() + Duration::from_secs(15);
    loop {
        let seen = value(&metrics(port), "throng_redis_peers");
        if seen == Some(peers) {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "the node on port {port} counts {seen:?} peers, not {peers}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The value of an unlabelled metric.
fn value(text: &str, name: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// One phase of `redis-outage.test.js` against nodes `a` and `b`.
fn outage_phase(a: &Server, b: &Server, phase: &str) {
    let servers = format!(
        "A=http://127.0.0.1:{},B=http://127.0.0.1:{}",
        a.port, b.port
    );
    util::node_suite(
        &sio_dir().join("redis-outage.test.js"),
        &[("SERVERS", servers.as_str()), ("PHASE", phase)],
    );
}

#[test]
fn redis_away_and_back_local_delivery_never_stops() {
    let redis_port = util::free_port();
    let url = format!("redis://127.0.0.1:{redis_port}");
    // Start-up without Redis: serves locally and keeps trying.
    let a = throng_on_bus(&url);
    let b = throng_on_bus(&url);
    let phase = |name: &str| outage_phase(&a, &b, name);
    phase("down");
    let redis = redis_on(redis_port);
    phase("up");
    drop(redis);
    phase("down");
    let _redis = redis_on(redis_port);
    phase("up");
}

#[test]
fn redis_killed_mid_flood_loses_no_local_message_and_the_log_says_so() {
    let redis_port = util::free_port();
    let url = format!("redis://127.0.0.1:{redis_port}");
    let redis = redis_on(redis_port);
    // A with its log kept (INFO), to read what it said about the outage.
    let log_path = std::env::temp_dir().join(format!("throng-kill-{redis_port}.log"));
    let log = std::fs::File::create(&log_path).expect("log file");
    let a_port = util::free_port();
    let a = Killed(
        Command::new(env!("CARGO_BIN_EXE_throng"))
            .args([
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                &a_port.to_string(),
            ])
            .args([
                "--app",
                "conformance",
                "--workers",
                "2",
                "--redis-url",
                &url,
            ])
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("throng"),
    );
    wait_listening(a_port, "throng A");
    let b = throng_on_bus(&url);
    std::thread::sleep(Duration::from_millis(300));
    let servers = format!("A=http://127.0.0.1:{a_port},B=http://127.0.0.1:{}", b.port);
    let flood = std::thread::spawn(move || {
        util::node_suite(
            &sio_dir().join("redis-outage.test.js"),
            &[("SERVERS", servers.as_str()), ("PHASE", "killflood")],
        );
    });
    // About a second into the flood: SIGKILL, then the same port again a second later.
    std::thread::sleep(Duration::from_millis(1200));
    drop(redis);
    std::thread::sleep(Duration::from_millis(1000));
    let _redis = redis_on(redis_port);
    flood.join().expect("the flood suite passed");
    let text = metrics(a_port);
    assert!(
        value(&text, "throng_redis_reconnects_total") >= Some(1),
        "{text}"
    );
    drop(a);
    let said = std::fs::read_to_string(&log_path).unwrap_or_default();
    let _ = std::fs::remove_file(&log_path);
    assert!(
        said.contains("Redis link down: local delivery continues"),
        "no WARN about the outage:\n{said}"
    );
    assert!(
        said.contains("Redis link up"),
        "no INFO on recovery:\n{said}"
    );
    assert!(
        said.contains("down_ms"),
        "the recovery line gives the downtime:\n{said}"
    );
}

#[test]
fn an_emitter_from_pypi_reaches_throngs_sockets() {
    let python = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/py/.venv/bin/python");
    assert!(
        python.exists(),
        "{} is missing: scripts/setup-test-deps.sh installs tests/py/requirements.txt",
        python.display()
    );
    let redis_port = util::free_port();
    let _redis = redis_on(redis_port);
    let url = format!("redis://127.0.0.1:{redis_port}");
    let a = throng_on_bus(&url);
    std::thread::sleep(Duration::from_millis(300));
    let servers = format!("A=http://127.0.0.1:{}", a.port);
    util::node_suite(
        &sio_dir().join("redis-pyemit.test.js"),
        &[
            ("SERVERS", servers.as_str()),
            ("REDIS_URL", url.as_str()),
            ("PYTHON", &python.to_string_lossy()),
        ],
    );
}

#[test]
fn long_polling_needs_no_sticky_sessions_across_hosts() {
    let redis_port = util::free_port();
    let _redis = redis_on(redis_port);
    let url = format!("redis://127.0.0.1:{redis_port}");
    let a = throng_on_bus(&url);
    // A lone node holds no first CONNECT (no upgrade can land elsewhere)...
    wait_for_peers(a.port, 0);
    let b = throng_on_bus(&url);
    // ...and each counts the other before the handover tests need it.
    wait_for_peers(a.port, 1);
    wait_for_peers(b.port, 1);
    let servers = format!(
        "A=http://127.0.0.1:{},B=http://127.0.0.1:{}",
        a.port, b.port
    );
    let a_pid = a.child.id().to_string();
    util::node_suite(
        &sio_dir().join("redis-polling.test.js"),
        &[("SERVERS", servers.as_str()), ("A_PID", a_pid.as_str())],
    );
    // The suite killed A: B is alone again.
    wait_for_peers(b.port, 0);
    // B forwarded requests for A's sessions and served A's for B's.
    let text = metrics(b.port);
    let forwarded = |direction: &str| {
        let line = format!("throng_redis_polling_forwarded_total{{direction=\"{direction}\"}} ");
        text.lines()
            .find_map(|l| l.strip_prefix(line.as_str()))
            .and_then(|v| v.trim().parse::<u64>().ok())
    };
    assert!(forwarded("out") > Some(5), "{text}");
    assert!(forwarded("in") > Some(0), "{text}");
}

#[test]
fn redis_paused_under_a_flood_drops_are_bounded_and_counted() {
    let redis_port = util::free_port();
    let redis = redis_on(redis_port);
    let url = format!("redis://127.0.0.1:{redis_port}");
    let a = Server::start(&[
        "--app",
        "conformance",
        "--workers",
        "2",
        "--redis-url",
        &url,
        "--redis-queue-bytes",
        "65536",
    ]);
    let b = throng_on_bus(&url);
    std::thread::sleep(Duration::from_millis(300));
    let phase = |name: &str| outage_phase(&a, &b, name);
    let pid = redis.0.id() as i32;
    // SAFETY: plain kill(2) on the redis-server this test started.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGSTOP) }, 0);
    phase("flood");
    // Two more floods while Redis stays paused: memory does not follow what is
    // published (about 2 MiB each), because the queue is bounded.
    let settled = rss_kib(a.child.id());
    phase("flood");
    phase("flood");
    let grown = rss_kib(a.child.id()).saturating_sub(settled);
    eprintln!("RSS after the first flood {settled} KiB, grown {grown} KiB");
    assert!(
        grown < 2048,
        "RSS grew {grown} KiB over two floods while Redis was paused"
    );
    let text = metrics(a.port);
    let dropped = text
        .lines()
        .find_map(|l| l.strip_prefix("throng_redis_dropped_total{reason=\"queue_full\"} "))
        .and_then(|v| v.trim().parse::<u64>().ok());
    assert!(dropped > Some(0), "{text}");
    assert!(
        value(&text, "throng_redis_queued_bytes") <= Some(65536),
        "{text}"
    );
    // SAFETY: as above.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGCONT) }, 0);
    phase("up");
}

/// A Rust-API app that drives cluster operations through its `Io` handle.
fn io_app() -> throng::sio::Registry {
    use throng::sio::{Namespace, Registry};
    Registry::new()
        .ns(Namespace::new("/")
            .on("whoami", |cx, ev| {
                let rooms = cx.rooms();
                cx.ack_ser(ev, &(serde_json::json!({ "rooms": rooms }),));
            })
            .on("join-all", |cx, ev| {
                let room: String = ev.arg(0).unwrap_or_default();
                let done = cx.io().of("/").sockets_join(&[&room]).is_ok();
                cx.ack_ser(ev, &(done,));
            })
            .on("leave-all", |cx, ev| {
                let room: String = ev.arg(0).unwrap_or_default();
                let done = cx.io().of("/").sockets_leave(&[&room]).is_ok();
                cx.ack_ser(ev, &(done,));
            })
            .on("tell-servers", |cx, ev| {
                let args = ev.raw_args();
                let done = cx.io().server_side_emit("/", "relay", &args).is_ok();
                cx.ack_ser(ev, &(done,));
            })
            .on("kick", |cx, ev| {
                let id: String = ev.arg(0).unwrap_or_default();
                let done = cx.io().of("/").to(&[&id]).disconnect_sockets(false).is_ok();
                cx.ack_ser(ev, &(done,));
            }))
        // Dynamic namespaces join the bus's counted channels while they have a socket here.
        .dynamic(|name| name.starts_with("/dyn-"), Namespace::new("dyn"))
}

#[test]
fn throngs_io_handle_acts_on_node_sockets_over_redis() {
    let redis_port = util::free_port();
    let _redis = redis_on(redis_port);
    let url = format!("redis://127.0.0.1:{redis_port}");
    let port = util::free_port();
    let config = throng::config::Config {
        addr: ([127, 0, 0, 1], port).into(),
        workers: 2,
        redis: Some(throng::config::Redis {
            url: url.clone(),
            key: "socket.io".into(),
            queue_bytes: 1 << 20,
            mode: throng::bridge::Mode::Classic,
        }),
        ..Default::default()
    };
    // In this process; it ends with the test binary.
    std::thread::spawn(move || {
        throng::server::serve_socketio(config, io_app(), throng::sio::Config::default())
    });
    wait_listening(port, "the API server");
    let (_node, node_port) = node_on_bus(&url);
    std::thread::sleep(Duration::from_millis(300));
    let servers = format!("T=http://127.0.0.1:{port},N=http://127.0.0.1:{node_port}");
    util::node_suite(
        &sio_dir().join("redis-api.test.js"),
        &[("SERVERS", servers.as_str()), ("REDIS_URL", url.as_str())],
    );
}

#[test]
fn a_quiet_bus_stays_joined_across_the_subscribers_pings() {
    let redis_port = util::free_port();
    let _redis = redis_on(redis_port);
    let url = format!("redis://127.0.0.1:{redis_port}");
    let a = throng_on_bus(&url);
    let b = throng_on_bus(&url);
    // Past the subscriber's 10 s PING: the link still carries broadcasts, and no
    // reply to a PING was taken for a failure.
    std::thread::sleep(Duration::from_secs(12));
    outage_phase(&a, &b, "up");
    for port in [a.port, b.port] {
        let text = metrics(port);
        assert_eq!(
            value(&text, "throng_redis_reconnects_total"),
            Some(0),
            "{text}"
        );
    }
}

#[test]
fn readyz_follows_the_redis_link_only_in_strict_mode() {
    let redis_port = util::free_port();
    let url = format!("redis://127.0.0.1:{redis_port}");
    let strict = Server::start(&[
        "--app",
        "conformance",
        "--redis-url",
        &url,
        "--ready-requires-redis",
    ]);
    let lax = throng_on_bus(&url);
    let within = Duration::from_secs(15);
    // No Redis yet: alive, but the strict node is not ready; the other one is.
    assert_eq!(util::http_get(strict.port, "/healthz").0, 200);
    let (status, body) = util::wait_status(strict.port, "/readyz", 503, within);
    assert_eq!(
        (status, body.as_str()),
        (503, "not ready: redis link down\n")
    );
    assert_eq!(util::http_get(lax.port, "/readyz").0, 200);
    // Redis comes: ready once the link is up (backoff at most 5 s).
    let redis = redis_on(redis_port);
    let (status, body) = util::wait_status(strict.port, "/readyz", 200, within);
    assert_eq!((status, body.as_str()), (200, "ready\n"));
    // Redis goes: not ready again; alive all along.
    drop(redis);
    assert_eq!(
        util::wait_status(strict.port, "/readyz", 503, within).0,
        503
    );
    assert_eq!(util::http_get(strict.port, "/healthz").0, 200);
    assert_eq!(util::http_get(lax.port, "/readyz").0, 200);
}

/// Many long-polls forwarded at once: each is held on the owner for up to a ping
/// interval, all on one replay loop (once a thread each, capped at 256).
#[test]
fn six_hundred_forwarded_long_polls_are_held_at_once() {
    use std::io::{Read, Write};
    const N: usize = 600;
    let redis_port = util::free_port();
    let _redis = redis_on(redis_port);
    let url = format!("redis://127.0.0.1:{redis_port}");
    let a = throng_on_bus(&url);
    let b = throng_on_bus(&url);
    std::thread::sleep(Duration::from_millis(500));
    let path = "/socket.io/?EIO=4&transport=polling";
    let sids: Vec<String> = (0..N)
        .map(|_| {
            let (status, _, body) = util::http_get(a.port, path);
            assert_eq!(status, 200, "{body}");
            body.split("\"sid\":\"")
                .nth(1)
                .and_then(|rest| rest.split('"').next())
                .expect("a sid")
                .to_string()
        })
        .collect();
    // Every GET at once, on B: forwarded to A, held there until A's next ping (1 s).
    let t0 = Instant::now();
    let mut polls: Vec<std::net::TcpStream> = sids
        .iter()
        .map(|sid| {
            let mut s = std::net::TcpStream::connect(("127.0.0.1", b.port)).expect("connect");
            s.set_read_timeout(Some(Duration::from_secs(15)))
                .expect("timeout");
            let request =
                format!("GET {path}&sid={sid} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n");
            s.write_all(request.as_bytes()).expect("send");
            s
        })
        .collect();
    let mut pings = 0;
    let mut others = Vec::new();
    for s in &mut polls {
        let mut answer = String::new();
        let _ = s.read_to_string(&mut answer);
        if answer.starts_with("HTTP/1.1 200 ") && answer.ends_with("\r\n\r\n2") {
            pings += 1;
        } else if others.len() < 3 {
            others.push(answer);
        }
    }
    assert_eq!(pings, N, "{:?} after {:?}", others, t0.elapsed());
    let text = metrics(b.port);
    let forwarded = text
        .lines()
        .find_map(|l| l.strip_prefix("throng_redis_polling_forwarded_total{direction=\"out\"} "))
        .and_then(|v| v.trim().parse::<usize>().ok());
    assert!(forwarded >= Some(N), "{text}");
}
