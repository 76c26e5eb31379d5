//! The official Socket.IO client (npm `socket.io-client` 4.x, in `tests/sio/`) against
//! `throng serve --app conformance --workers 2`: node's test runner drives every case in
//! `tests/sio/*.test.js` and this test passes when all of them do. The same suite also
//! runs against a Node socket.io 4.8 server made to the same contract
//! (`tests/sio/node-server.js`), which keeps the suite honest about what Node does.

mod util;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::Server;

fn sio_dir() -> std::path::PathBuf {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/sio");
    assert!(
        dir.join("node_modules/socket.io-client").is_dir(),
        "socket.io-client is missing: run `npm ci --prefix tests/sio` (scripts/test.sh does)"
    );
    dir
}

fn run_node_suite(file: &str, port: u16) {
    let url = format!("http://127.0.0.1:{port}");
    util::node_suite(&sio_dir().join(file), &[("THRONG_URL", url.as_str())]);
}

#[test]
fn official_client_over_websocket() {
    let server = Server::start(&["--app", "conformance", "--workers", "2"]);
    run_node_suite("websocket.test.js", server.port);
}

#[test]
fn official_client_over_polling_and_upgrade_without_cookies() {
    let server = Server::start(&["--app", "conformance", "--workers", "2"]);
    run_node_suite("polling.test.js", server.port);
}

#[test]
fn engineio_polling_and_upgrade_byte_by_byte() {
    // Its own server: its sessions in `/` see every broadcast of the other suites.
    let server = Server::start(&["--app", "conformance", "--workers", "2"]);
    run_node_suite("engineio-raw.test.js", server.port);
}

/// Kills the reference server when the test ends, however it ends.
struct Reference(std::process::Child);

impl Drop for Reference {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Node's reference server on a free port, killed when dropped.
fn reference() -> (Reference, u16) {
    let port = util::free_port();
    let node = Reference(
        Command::new("node")
            .arg(sio_dir().join("node-server.js"))
            .arg(port.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("node must be installed (.ci/run installs it)"),
    );
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "node's server did not listen");
        std::thread::sleep(Duration::from_millis(50));
    }
    (node, port)
}

#[test]
fn the_suites_pass_against_node_socket_io_too() {
    for file in [
        "websocket.test.js",
        "polling.test.js",
        "engineio-raw.test.js",
    ] {
        // One server per file: their broadcasts to `/` would cross otherwise.
        let (_node, port) = reference();
        run_node_suite(file, port);
    }
}

/// The API suite's server: namespaces built with the Rust API, served in this process.
mod api {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread;
    use std::time::Duration;

    use throng::sio::{Bin, ConnectError, Cx, Event, Namespace, Registry};

    fn where_am_i(cx: &mut Cx<'_, '_>, ev: &Event<'_>) {
        let ns = cx.namespace().to_string();
        cx.ack_ser(ev, &(ns,));
    }

    fn is_room_namespace(name: &str) -> bool {
        name.strip_prefix("/room-")
            .is_some_and(|n| !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()))
    }

    pub fn registry() -> Registry {
        Registry::new()
            .ns(Namespace::new("/")
                .on("later", |cx, ev| {
                    // Kept, and answered by another thread.
                    let Some(ack) = cx.defer_ack(ev) else { return };
                    let n: u64 = ev.arg(0).unwrap_or(0);
                    let io = cx.io();
                    thread::spawn(move || {
                        thread::sleep(Duration::from_millis(10));
                        io.answer_ser(ack, &("done", n)).expect("answer");
                    });
                })
                .on("bin", |cx, ev| {
                    // Binary at any depth of a Serialize tuple: attachments.
                    let deep = serde_json::json!({ "n": 1 });
                    cx.ack_ser(
                        ev,
                        &(
                            Bin(bytes::Bytes::from_static(&[0, 1, 255])),
                            deep,
                            [Bin(bytes::Bytes::from_static(b"xyz"))],
                        ),
                    );
                })
                .on("subscribe", |cx, ev| {
                    cx.join("ticks");
                    cx.ack_ser(ev, &());
                })
                .on("poke-me", |cx, ev| {
                    let id = cx.id().to_string();
                    let io = cx.io();
                    cx.ack_ser(ev, &());
                    thread::spawn(move || {
                        thread::sleep(Duration::from_millis(20));
                        io.of("/")
                            .to(&[&id])
                            .emit_ser("poked", &(&id,))
                            .expect("emit");
                    });
                }))
            .ns(Namespace::new("/deferred")
                .on("where", where_am_i)
                .middleware_deferred(|hs, pending| {
                    let token = hs.auth_str("token");
                    thread::spawn(move || {
                        thread::sleep(Duration::from_millis(30));
                        let _ = match token.as_deref() {
                            Some("s3cret") => pending.allow(),
                            Some("drop") => {
                                drop(pending);
                                Ok(())
                            }
                            _ => pending.refuse(
                                ConnectError::new("unauthorized")
                                    .with_data(r#"{"code":"E_LATER"}"#),
                            ),
                        };
                    });
                }))
            .dynamic(
                is_room_namespace,
                Namespace::new("rooms")
                    .on("where", where_am_i)
                    .on("shout", |cx, ev| {
                        cx.broadcast().emit("shout", &ev.raw_args(), &[]);
                        cx.ack_ser(ev, &());
                    }),
            )
    }

    /// Serves `registry()` on `port` with two workers, in this process, and ticks to
    /// room `ticks` of `/` every 50 ms until `stop`.
    pub fn start(port: u16, stop: Arc<AtomicBool>) {
        let app = registry();
        let io = app.io();
        let config = throng::config::Config {
            addr: ([127, 0, 0, 1], port).into(),
            workers: 2,
            driver: super::util::driver_kind(),
            ..Default::default()
        };
        thread::spawn(move || throng::serve(config, app));
        thread::spawn(move || {
            // Bounded: at most ten minutes of ticks.
            for n in 0..12_000u32 {
                if stop.load(Ordering::Relaxed) {
                    return;
                }
                if io.is_running() {
                    let _ = io.of("/").to(&["ticks"]).emit_ser("tick", &(n,));
                }
                thread::sleep(Duration::from_millis(50));
            }
        });
    }
}

#[test]
fn the_rust_api_with_the_official_client() {
    let port = util::free_port();
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    api::start(port, std::sync::Arc::clone(&stop));
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "the API server did not listen");
        std::thread::sleep(Duration::from_millis(20));
    }
    run_node_suite("api.test.js", port);
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
}
