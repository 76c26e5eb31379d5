//! Settings from a `--config` TOML file and `THRONG_*` variables, end to end: the
//! real binary is started with them and its behaviour over 127.0.0.1 shows which value
//! won (flag > environment > file > default); an unknown key is an error naming it.

mod util;

use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use util::{Peer, free_port, upgrade_request};

/// A file in the target dir, unique to this test.
fn write_file(name: &str, text: &str) -> PathBuf {
    let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let path = dir.join(format!("{name}-{}.toml", std::process::id()));
    std::fs::write(&path, text).expect("write config");
    path
}

struct Killed(Child);

impl Drop for Killed {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn serve(args: &[&str], env: &[(&str, &str)]) -> Killed {
    let mut c = Command::new(env!("CARGO_BIN_EXE_throng"));
    c.arg("serve").args(args).env("RUST_LOG", "warn");
    for (k, v) in env {
        c.env(k, v);
    }
    Killed(
        c.stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn throng"),
    )
}

fn wait_listening(port: u16) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(Instant::now() < deadline, "nothing listens on {port}");
        std::thread::sleep(Duration::from_millis(20));
    }
    // Let the probe connection go before a test counts connections.
    std::thread::sleep(Duration::from_millis(200));
}

/// Opens WebSocket clients until one is refused: (held, Retry-After of the refusal).
fn fill(port: u16) -> (Vec<Peer>, String) {
    let mut held = Vec::new();
    for _ in 0..10 {
        let mut p = Peer::connect(port);
        p.send(upgrade_request(port, "/").as_bytes());
        match p.read_http() {
            Some((101, _)) => held.push(p),
            Some((503, headers)) => {
                let retry = headers
                    .iter()
                    .find_map(|h| h.strip_prefix("retry-after: "))
                    .expect("Retry-After")
                    .to_string();
                return (held, retry);
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }
    panic!("nothing refused after 10 connections");
}

#[test]
fn a_file_sets_what_flags_would_and_the_environment_and_flags_win_over_it() {
    let port = free_port();
    let file = write_file(
        "settings",
        &format!(
            "# every key is a `throng serve` flag\nhost = \"127.0.0.1\"\nport = {port}\n\
             workers = 1\nmax_connections = 2\nretry-after = 9\napp = \"echo\"\n"
        ),
    );
    let path = file.to_str().expect("utf-8 path");
    {
        // The file alone: its port, its cap, its Retry-After.
        let _server = serve(&["--config", path], &[]);
        wait_listening(port);
        let (held, retry) = fill(port);
        assert_eq!((held.len(), retry.as_str()), (2, "9"));
    }
    // The environment over the file (cap, and the file itself through THRONG_CONFIG);
    // a flag over both.
    let _server = serve(
        &["--retry-after", "4"],
        &[
            ("THRONG_CONFIG", path),
            ("THRONG_MAX_CONNECTIONS", "3"),
            ("THRONG_RETRY_AFTER", "7"),
        ],
    );
    wait_listening(port);
    let (held, retry) = fill(port);
    assert_eq!((held.len(), retry.as_str()), (3, "4"));
    for mut p in held {
        p.echo(1, b"configured");
    }
    let _ = std::fs::remove_file(file);
}

#[test]
fn an_unknown_key_in_the_file_is_an_error_naming_it() {
    let file = write_file("typo", "port = 8080\nmax-conections = 5\n");
    let out = Command::new(env!("CARGO_BIN_EXE_throng"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .expect("run throng");
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("unknown key `max-conections`") && err.contains("typo-"),
        "{err}"
    );
}

#[test]
fn a_bad_value_in_the_file_is_reported_by_its_flag() {
    let file = write_file("badvalue", "port = \"eighty\"\n");
    let out = Command::new(env!("CARGO_BIN_EXE_throng"))
        .args(["serve", "--config"])
        .arg(&file)
        .output()
        .expect("run throng");
    let _ = std::fs::remove_file(&file);
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("eighty") && err.contains("--port"), "{err}");
}
