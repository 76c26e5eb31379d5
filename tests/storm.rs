//! A reconnect storm, scaled to this test: 100 clients keep echoing while a separate
//! process (`throng bench connect`) throws 3,000 connection attempts at the server as
//! fast as it can. With admission control on, the server must keep answering every
//! echo, refuse the excess with 503 (counted), stay alive and keep its memory bounded.
//! No timing is asserted here: `scripts/bench-storm.sh` measures the latency under a
//! full-size storm (1,000 echoing clients, 20,000 attempts in a second) against targets.

mod util;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use util::{Peer, Server, http_get};

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.trim().trim_end_matches(" kB").trim().parse().ok())
        })
        .expect("VmRSS")
}

/// The hard open-file limit (what the generator may raise itself to).
fn hard_fd_limit() -> u64 {
    let mut lim = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit(2) writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut lim) };
    assert_eq!(rc, 0, "getrlimit");
    lim.rlim_max
}

fn counter(text: &str, name: &str) -> u64 {
    text.lines()
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn existing_clients_keep_echoing_through_a_storm_of_connects() {
    let mut server = Server::start(&[
        "--workers",
        "2",
        "--accept-rate",
        "300",
        "--max-connections",
        "800",
    ]);
    let port = server.port;
    std::thread::sleep(Duration::from_millis(1100)); // the buckets refill after the probe
    // Four threads of 25 clients each.
    let groups: Vec<Vec<Peer>> = (0..4)
        .map(|_| (0..25).map(|_| Peer::open(port)).collect())
        .collect();
    let rss_before = rss_kb(server.pid());

    let stop = Arc::new(AtomicBool::new(false));
    let echoes = Arc::new(AtomicU64::new(0));
    let mut threads = Vec::new();
    for mut mine in groups {
        let stop = Arc::clone(&stop);
        let echoes = Arc::clone(&echoes);
        threads.push(std::thread::spawn(move || {
            let deadline = Instant::now() + Duration::from_secs(60);
            for round in 0..100_000u32 {
                if stop.load(Ordering::Relaxed) || Instant::now() > deadline {
                    break;
                }
                for p in &mut mine {
                    p.echo(1, format!("round {round}").as_bytes());
                    echoes.fetch_add(1, Ordering::Relaxed);
                }
            }
        }));
    }

    // 3,000 attempts, or what the generator's open-file limit allows.
    let attempts = 3000.min(hard_fd_limit().saturating_sub(200));
    assert!(
        attempts > 800,
        "an open-file limit of {} is too low",
        hard_fd_limit()
    );
    let attempts_s = attempts.to_string();
    let storm = util::bench(&[
        "connect",
        "--url",
        &format!("ws://127.0.0.1:{port}/"),
        "--conns",
        &attempts_s,
        "--concurrency",
        "512",
        "--hold",
        "1",
        "--sources",
        "4",
    ]);
    let during = echoes.load(Ordering::Relaxed);
    stop.store(true, Ordering::Relaxed);
    for t in threads {
        t.join().expect("every echo came back during the storm");
    }
    assert!(during > 100, "only {during} echoes during the storm");
    assert!(server.is_alive(), "the server died in the storm");

    let rss_after = rss_kb(server.pid());
    // 3,000 attempts at most 800 held: far below this if nothing grows without bound.
    assert!(
        rss_after < rss_before + 100 * 1024,
        "RSS grew from {rss_before} kB to {rss_after} kB"
    );
    let (status, _, text) = http_get(port, "/metrics");
    assert_eq!(status, 200);
    let refused = counter(&text, "throng_refused_total{reason=\"accept_rate\"}")
        + counter(&text, "throng_refused_total{reason=\"max_connections\"}");
    assert!(refused > 0, "the storm never reached the limits:\n{text}");
    // The generator exits non-zero when attempts fail (here: refused, as they should
    // be); its report says how many were held and how many refused.
    let report = String::from_utf8_lossy(&storm.stderr).into_owned()
        + &String::from_utf8_lossy(&storm.stdout);
    let line = report
        .lines()
        .find(|l| l.contains(&format!(" of {attempts} held (")))
        .unwrap_or_else(|| panic!("no report from the generator:\n{report}"));
    let held: u64 = line
        .split(": ")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("held count");
    let failed: u64 = line
        .split(" held (")
        .nth(1)
        .and_then(|r| r.split(' ').next())
        .and_then(|n| n.parse().ok())
        .expect("failed count");
    assert_eq!(held + failed, attempts, "{line}");
    assert!(failed > 0 && held <= 800, "{line}");
    assert!(
        report.contains("HTTP 503"),
        "refusals are 503s, not resets:\n{report}"
    );
}
