//! File-descriptor limits: a start-up that cannot honour `--max-connections` fails with
//! the limit printed; a server at capacity refuses extra connections and keeps serving.

mod util;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use util::{Peer, free_port};

/// Runs `throng serve` under `ulimit -n limit` (soft and hard), with `extra` flags.
fn under_limit(limit: u32, port: u16, extra: &str) -> Command {
    let mut c = Command::new("sh");
    c.arg("-c").arg(format!(
        "ulimit -n {limit} && exec {} serve --host 127.0.0.1 --port {port} --workers 1 \
         --driver {} {extra}",
        env!("CARGO_BIN_EXE_throng"),
        util::test_driver()
    ));
    c
}

#[test]
fn too_many_connections_for_the_fd_limit_is_a_clear_startup_error() {
    let out = under_limit(100, free_port(), "--max-connections 5000")
        .output()
        .expect("run throng");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("open-file limit") && err.contains("100"),
        "{err}"
    );
}

#[test]
fn port_in_use_is_a_clear_startup_error() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = holder.local_addr().expect("addr").port();
    let out = Command::new(env!("CARGO_BIN_EXE_throng"))
        .args(["serve", "--host", "127.0.0.1", "--port", &port.to_string()])
        .output()
        .expect("run throng");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("cannot listen on") && err.contains(&port.to_string()),
        "{err}"
    );
}

#[test]
fn at_capacity_extra_connections_are_refused_and_the_server_keeps_serving() {
    let port = free_port();
    let mut child = under_limit(96, port, "")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn");
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "server did not start");
        std::thread::sleep(Duration::from_millis(20));
    }
    // The limit allows 96 - 32 = 64 connections; offer 150.
    let mut open = Vec::new();
    let mut refused = 0;
    for _ in 0..150 {
        let mut p = Peer::connect(port);
        p.sock
            .set_read_timeout(Some(Duration::from_secs(2)))
            .expect("timeout");
        p.send(util::upgrade_request(port, "/").as_bytes());
        match p.read_http() {
            Some((101, _)) => open.push(p),
            _ => refused += 1,
        }
    }
    assert!(refused > 0, "nothing was refused past the limit");
    assert!(open.len() >= 32, "only {} accepted", open.len());
    for p in open.iter_mut().take(5) {
        p.echo(1, b"held connections still echo");
    }
    drop(open);
    std::thread::sleep(Duration::from_millis(300));
    Peer::open(port).echo(2, b"room again after the others left");
    assert!(matches!(child.try_wait(), Ok(None)), "server died");
    let _ = child.kill();
    let _ = child.wait();
}
