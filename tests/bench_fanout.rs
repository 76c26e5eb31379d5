//! End to end: `throng bench broadcast|fanout` against the real `throng serve --app
//! shootout|pubsub` (and, with `--proto socketio`, `--app sio-shootout`). Checks the exit codes, the JSON lines on stdout and their field
//! names (scripts parse them), and that every delivery was counted exactly once. Every
//! run here is bounded to a few seconds.

mod util;

use std::process::Output;

use util::{Server, bench};

/// Every JSON object on stdout, one per line.
fn json_lines(out: &Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("valid JSON"))
        .collect()
}

/// The one JSON object on stdout.
fn json(out: &Output) -> serde_json::Value {
    let mut lines = json_lines(out);
    assert_eq!(lines.len(), 1, "one JSON line expected: {lines:?}");
    lines.remove(0)
}

fn has_fields(v: &serde_json::Value, names: &[&str]) {
    for name in names {
        assert!(v.get(name).is_some(), "field {name} missing from {v}");
    }
}

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn u(v: &serde_json::Value, name: &str) -> u64 {
    v[name]
        .as_u64()
        .unwrap_or_else(|| panic!("{name} is not a count in {v}"))
}

#[test]
fn broadcast_steps_deliver_every_broadcast_to_every_client_once() {
    let server = Server::start(&["--app", "shootout"]);
    let out = bench(&[
        "broadcast",
        "--url",
        &server.url(),
        "--step-size",
        "50",
        "--max-clients",
        "100",
        "--sample-size",
        "3",
        // Correctness here, not speed: a loaded test machine must not end the run early.
        "--limit-rtt-ms",
        "10000",
        "--threads",
        "2",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "two steps and a summary: {lines:?}");
    for (i, step) in lines[..2].iter().enumerate() {
        has_fields(
            step,
            &[
                "mode",
                "kind",
                "step",
                "clients",
                "samples",
                "rtt_min_us",
                "rtt_p50_us",
                "rtt_limit_pct_us",
                "rtt_max_us",
                "within_limit",
                "missing",
                "extra",
                "unexpected",
                "settled",
                "cpu_percent",
            ],
        );
        assert_eq!(step["mode"], "broadcast");
        assert_eq!(step["kind"], "step");
        assert_eq!(u(step, "step"), i as u64 + 1);
        assert_eq!(u(step, "clients"), 50 * (i as u64 + 1));
        assert_eq!(u(step, "samples"), 4 * 3, "4 senders x 3 samples");
        assert_eq!(u(step, "missing"), 0, "{step}");
        assert_eq!(u(step, "extra"), 0, "{step}");
        assert_eq!(u(step, "unexpected"), 0, "{step}");
        assert_eq!(step["settled"], true);
        assert_eq!(step["within_limit"], true);
        assert!(u(step, "rtt_min_us") <= u(step, "rtt_max_us"));
    }
    let summary = &lines[2];
    has_fields(
        summary,
        &[
            "clients_within_limit",
            "stopped",
            "steps",
            "missing",
            "extra",
            "connect_failed",
            "lost",
            "cpu_percent",
        ],
    );
    assert_eq!(summary["kind"], "summary");
    assert_eq!(u(summary, "clients_within_limit"), 100);
    assert_eq!(summary["stopped"], "max_clients");
    assert_eq!(u(summary, "steps"), 2);
    assert_eq!(u(summary, "missing") + u(summary, "extra"), 0);
    assert_eq!(u(summary, "connect_failed") + u(summary, "lost"), 0);
}

/// The delivery checks every clean fan-out run must pass.
fn assert_clean_fanout(v: &serde_json::Value, subscribers: u64) {
    has_fields(
        v,
        &[
            "mode",
            "proto",
            "subscribers",
            "subscribed",
            "window",
            "max_lag",
            "publishes",
            "publishes_per_sec",
            "deliveries",
            "deliveries_per_sec",
            "p50_us",
            "p95_us",
            "p99_us",
            "max_us",
            "expected_deliveries",
            "received_deliveries",
            "lost",
            "duplicates",
            "out_of_order",
            "unexpected",
            "acks",
            "missing_acks",
            "connect_failed",
            "connections_lost",
            "drained",
            "cpu_percent",
        ],
    );
    assert_eq!(v["mode"], "fanout");
    assert_eq!(u(v, "subscribed"), subscribers);
    let publishes = u(v, "publishes");
    assert!(publishes > 0, "{v}");
    assert_eq!(u(v, "expected_deliveries"), publishes * subscribers);
    assert_eq!(u(v, "received_deliveries"), publishes * subscribers, "{v}");
    for zero in [
        "lost",
        "duplicates",
        "out_of_order",
        "unexpected",
        "server_errors",
        "missing_acks",
        "connect_failed",
        "connections_lost",
    ] {
        assert_eq!(u(v, zero), 0, "{zero} in {v}");
    }
    assert_eq!(u(v, "acks"), publishes);
    assert_eq!(v["drained"], true);
    assert!(u(v, "deliveries") > 0 && u(v, "deliveries") <= publishes * subscribers);
    assert!(u(v, "p50_us") <= u(v, "max_us"));
}

#[test]
fn fanout_over_shootout_loses_nothing() {
    let server = Server::start(&["--app", "shootout"]);
    let out = bench(&[
        "fanout",
        "--url",
        &server.url(),
        "--mode",
        "shootout",
        "--subscribers",
        "20",
        "--secs",
        "2",
        "--warmup",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["proto"], "shootout");
    assert_clean_fanout(&v, 20);
    // The publisher is a client too: it gets each of its broadcasts back once.
    assert_eq!(u(&v, "publisher_received"), u(&v, "publishes"));
    assert_eq!(u(&v, "publisher_missing"), 0);
    assert_eq!(u(&v, "publisher_duplicates"), 0);
}

#[test]
fn broadcast_and_fanout_over_socketio_lose_nothing() {
    let server = Server::start(&["--app", "sio-shootout"]);
    let out = bench(&[
        "broadcast",
        "--url",
        &server.url(),
        "--proto",
        "socketio",
        "--step-size",
        "30",
        "--max-clients",
        "60",
        "--sample-size",
        "3",
        "--limit-rtt-ms",
        "10000",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 3, "two steps and a summary: {lines:?}");
    for step in &lines[..2] {
        assert_eq!(step["wire"], "socketio");
        assert_eq!(u(step, "samples"), 4 * 3);
        assert_eq!(
            u(step, "missing") + u(step, "extra") + u(step, "unexpected"),
            0,
            "{step}"
        );
    }
    assert_eq!(u(&lines[2], "clients_within_limit"), 60);

    let out = bench(&[
        "fanout",
        "--url",
        &server.url(),
        "--proto",
        "socketio",
        "--subscribers",
        "20",
        "--secs",
        "1",
        "--warmup",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["proto"], "sio-shootout");
    assert_eq!(v["wire"], "socketio");
    assert_clean_fanout(&v, 20);
    assert_eq!(u(&v, "publisher_received"), u(&v, "publishes"));
}

#[test]
fn fanout_over_pubsub_loses_nothing() {
    let server = Server::start(&["--app", "pubsub"]);
    let out = bench(&[
        "fanout",
        "--url",
        &server.url(),
        "--topic",
        "room/1",
        "--subscribers",
        "50",
        "--threads",
        "2",
        "--size",
        "100",
        "--secs",
        "1",
        "--warmup",
        "0",
    ]);
    assert!(out.status.success(), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(v["proto"], "pubsub");
    assert_eq!(v["topic"], "room/1");
    assert_clean_fanout(&v, 50);
    assert!(v["publisher_received"].is_null());
}

#[test]
fn the_wrong_protocol_or_no_server_fails_with_a_report() {
    // Pubsub subscribers against a shootout server never get `subscribed`.
    let server = Server::start(&["--app", "shootout"]);
    let out = bench(&[
        "fanout",
        "--url",
        &server.url(),
        "--subscribers",
        "5",
        "--secs",
        "1",
        "--warmup",
        "0",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let v = json(&out);
    assert_eq!(u(&v, "subscribed"), 0);
    assert!(v["error"].is_string());

    let port = util::free_port();
    let url = format!("ws://127.0.0.1:{port}/");
    let out = bench(&[
        "broadcast",
        "--url",
        &url,
        "--step-size",
        "10",
        "--max-clients",
        "20",
    ]);
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let lines = json_lines(&out);
    assert_eq!(lines.len(), 1, "only the summary: {lines:?}");
    assert_eq!(lines[0]["stopped"], "connections");
    assert_eq!(u(&lines[0], "connect_failed"), 10);
    assert_eq!(u(&lines[0], "clients_within_limit"), 0);

    let out = bench(&["fanout", "--url", &url, "--subscribers", "3", "--secs", "1"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        u(&json(&out), "connect_failed"),
        4,
        "3 subscribers + the publisher"
    );
}

#[test]
fn bad_arguments_and_remote_targets_are_refused() {
    for args in [
        &["broadcast", "--url", "ws://10.1.2.3:80/"][..],
        &["fanout", "--url", "ws://192.168.0.1/"],
        &[
            "broadcast",
            "--url",
            "ws://127.0.0.1:9/",
            "--step-size",
            "2",
        ],
        &[
            "broadcast",
            "--url",
            "ws://127.0.0.1:9/",
            "--max-clients",
            "99999999",
        ],
        &["fanout", "--url", "ws://127.0.0.1:9/", "--size", "10"],
        &[
            "fanout",
            "--url",
            "ws://127.0.0.1:9/",
            "--subscribers",
            "99999999",
        ],
    ] {
        let out = bench(args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", stderr(&out));
        assert!(out.stdout.is_empty(), "{args:?}");
    }
}
