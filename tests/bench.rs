//! End to end: `throng bench echo|connect` against the real `throng serve --app echo`
//! (and, with `--proto socketio`, `--app sio-shootout`). Checks the exit codes, the JSON
//! line on stdout and its field names (scripts parse them), and the loopback-only
//! refusal. Every run here is bounded to a few seconds.

mod util;

use std::process::Output;

use util::{Server, bench};

/// The one JSON object on stdout.
fn json(out: &Output) -> serde_json::Value {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.len(), 1, "one JSON line expected, got: {stdout}");
    serde_json::from_str(lines[0]).expect("valid JSON")
}

fn has_fields(v: &serde_json::Value, names: &[&str]) {
    for name in names {
        assert!(v.get(name).is_some(), "field {name} missing from {v}");
    }
}

#[test]
fn echo_runs_clean_against_the_echo_server() {
    let server = Server::start(&[]);
    let url = server.url();
    let out = bench(&[
        "echo",
        "--url",
        &url,
        "--conns",
        "8",
        "--size",
        "300",
        "--inflight",
        "4",
        "--secs",
        "1",
        "--warmup",
        "0",
        "--threads",
        "2",
    ]);
    let v = json(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    has_fields(
        &v,
        &[
            "mode",
            "url",
            "conns",
            "size",
            "inflight",
            "secs",
            "messages",
            "msgs_per_sec",
            "p50_us",
            "p99_us",
            "p999_us",
            "max_us",
            "errors",
            "bad_replies",
            "cpu_percent",
        ],
    );
    assert_eq!(v["mode"], "echo");
    assert_eq!(v["connected"], 8);
    assert_eq!(v["bad_replies"], 0);
    assert_eq!(v["errors"], 0);
    assert!(v["messages"].as_u64().unwrap() > 0);
    assert!(v["p50_us"].as_u64().unwrap() <= v["max_us"].as_u64().unwrap());

    let out = bench(&[
        "echo", "--url", &url, "--conns", "2", "--size", "70000", "--secs", "1", "--warmup", "0",
        "--binary",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(json(&out)["bad_replies"], 0);
}

#[test]
fn connect_holds_connections_from_several_sources() {
    let server = Server::start(&[]);
    let pid = server.pid().to_string();
    let out = bench(&[
        "connect",
        "--url",
        &server.url(),
        "--conns",
        "200",
        "--sources",
        "3",
        "--server-pid",
        &pid,
        "--hold",
        "0",
        "--concurrency",
        "32",
    ]);
    let v = json(&out);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    has_fields(
        &v,
        &[
            "mode",
            "url",
            "conns_requested",
            "conns_held",
            "failed",
            "connect_secs",
            "connects_per_sec",
            "server_rss_before_kb",
            "server_rss_after_kb",
            "rss_per_conn_bytes",
            "slab_before_kb",
            "slab_after_kb",
            "kernel_slab_per_conn_bytes",
            "cpu_percent",
        ],
    );
    assert_eq!(v["mode"], "connect");
    assert_eq!(v["conns_held"], 200);
    assert_eq!(v["failed"], 0);
    assert!(v["server_rss_after_kb"].as_u64().unwrap() > 0);
}

#[test]
fn a_paced_echo_sends_at_its_rate() {
    let server = Server::start(&[]);
    let url = server.url();
    // 10 connections at 40 messages a second each: 400 a second, far below what the
    // server does unpaced.
    let out = bench(&[
        "echo", "--url", &url, "--conns", "10", "--rate", "40", "--secs", "2", "--warmup", "1",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["rate"], 40.0);
    let per_sec = v["msgs_per_sec"].as_f64().expect("msgs_per_sec");
    assert!((300.0..=420.0).contains(&per_sec), "{v}");
    let refused = bench(&["echo", "--url", &url, "--rate", "0"]);
    assert_eq!(refused.status.code(), Some(2), "{refused:?}");
}

#[test]
fn socketio_echo_and_connect_run_clean_against_sio_shootout() {
    let server = Server::start(&["--app", "sio-shootout"]);
    let url = server.url();
    for ack in [false, true] {
        let mut args = vec![
            "echo",
            "--url",
            &url,
            "--proto",
            "socketio",
            "--conns",
            "6",
            "--inflight",
            "4",
            "--secs",
            "1",
            "--warmup",
            "0",
            "--threads",
            "2",
        ];
        if ack {
            args.extend(["--ack", "--open-first"]);
        }
        let out = bench(&args);
        assert!(
            out.status.success(),
            "ack {ack}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        let v = json(&out);
        assert_eq!(v["wire"], "socketio");
        assert_eq!(v["ack"], ack);
        assert_eq!(v["open_first"], ack);
        assert_eq!(v["connected"], 6);
        assert_eq!(v["errors"], 0);
        assert_eq!(v["bad_replies"], 0);
        assert_eq!(v["connect_failed"], 0);
        assert!(v["messages"].as_u64().unwrap() > 0, "{v}");
    }

    let pid = server.pid().to_string();
    let out = bench(&[
        "connect",
        "--url",
        &url,
        "--proto",
        "socketio",
        "--conns",
        "100",
        "--server-pid",
        &pid,
        "--hold",
        "0",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let v = json(&out);
    assert_eq!(v["wire"], "socketio");
    assert_eq!(v["conns_held"], 100);
    assert_eq!(v["failed"], 0);
}

#[test]
fn socketio_runs_without_a_server_or_with_ws_only_flags_fail() {
    // (How a client fails on a refused CONNECT or a missing open packet is unit-tested
    // in src/bench/client.rs and src/bench/sio.rs.)
    let port = util::free_port();
    let url = format!("ws://127.0.0.1:{port}/");
    let out = bench(&[
        "echo", "--url", &url, "--proto", "socketio", "--conns", "2", "--secs", "1", "--warmup",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["connect_failed"], 2);
    for args in [
        &["echo", "--url", &url, "--ack", "--secs", "1"][..],
        &[
            "echo", "--url", &url, "--proto", "socketio", "--binary", "--secs", "1",
        ],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(out.stdout.is_empty());
    }
}

#[test]
fn nothing_listening_fails_with_a_report() {
    let port = util::free_port();
    let url = format!("ws://127.0.0.1:{port}/");
    let out = bench(&[
        "echo", "--url", &url, "--conns", "3", "--secs", "1", "--warmup", "0",
    ]);
    assert_eq!(out.status.code(), Some(1));
    let v = json(&out);
    assert_eq!(v["connect_failed"], 3);
    assert_eq!(v["messages"], 0);
    let out = bench(&["connect", "--url", &url, "--conns", "3", "--hold", "0"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(json(&out)["failed"], 3);
}

#[test]
fn only_loopback_and_bounded_runs_are_accepted() {
    for url in [
        "ws://10.1.2.3:80/",
        "ws://192.168.0.1/",
        "wss://10.0.0.9/",
        "http://127.0.0.1/",
    ] {
        let out = bench(&["echo", "--url", url, "--secs", "1"]);
        assert_eq!(out.status.code(), Some(2), "{url}");
        assert!(out.stdout.is_empty());
    }
    let out = bench(&["connect", "--url", "ws://127.0.0.1:9/", "--conns", "20000"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("19900"));
}
