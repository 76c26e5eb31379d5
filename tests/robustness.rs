//! Bad input never disturbs anyone else: while some connections send garbage, truncated
//! frames, slowloris handshakes, oversized heads and protocol violations, others keep
//! echoing, and the server keeps accepting.

mod util;

use std::io::Write;
use std::net::TcpStream;
use std::thread;
use std::time::{Duration, Instant};

use util::{Got, Peer, Server, frame, frame_raw, upgrade_request};

fn rss_kb(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find_map(|l| l.strip_prefix("VmRSS:"))
                .and_then(|v| v.split_whitespace().next()?.parse().ok())
        })
        .expect("VmRSS")
}

#[test]
fn bad_clients_do_not_disturb_good_ones() {
    let mut s = Server::start(&["--handshake-timeout", "2", "--workers", "2"]);
    let port = s.port;

    // Good clients echo continuously in their own threads.
    let stop_at = Instant::now() + Duration::from_secs(4);
    let good: Vec<_> = (0..8)
        .map(|i| {
            thread::spawn(move || {
                let mut p = Peer::open(port);
                let mut n = 0u32;
                while Instant::now() < stop_at {
                    let msg = format!("good {i} {n}");
                    p.echo(if n.is_multiple_of(2) { 1 } else { 2 }, msg.as_bytes());
                    n += 1;
                }
                n
            })
        })
        .collect();

    // Slowloris: a byte every 200 ms; the server answers 408 or closes within ~3 s.
    let slow = thread::spawn(move || {
        let mut sock = TcpStream::connect(("127.0.0.1", port)).expect("connect");
        sock.set_read_timeout(Some(Duration::from_millis(50)))
            .expect("timeout");
        let req = upgrade_request(port, "/");
        let start = Instant::now();
        for b in req.bytes() {
            if sock.write_all(&[b]).is_err() {
                break;
            }
            let mut buf = [0u8; 256];
            match std::io::Read::read(&mut sock, &mut buf) {
                Ok(0) => break,
                Ok(n) => {
                    assert!(String::from_utf8_lossy(&buf[..n]).starts_with("HTTP/1.1 408"));
                    break;
                }
                Err(_) => {}
            }
            thread::sleep(Duration::from_millis(200));
            assert!(
                start.elapsed() < Duration::from_secs(6),
                "slowloris never cut off"
            );
        }
        start.elapsed()
    });

    // Garbage, truncated frames, oversized heads, violations.
    for round in 0..20u32 {
        let mut g = Peer::connect(port);
        let junk: Vec<u8> = (0..2000u32)
            .map(|i| (i.wrapping_mul(2654435761) >> (round % 24)) as u8)
            .collect();
        let _ = g.try_send(&junk);
        let mut t = Peer::open(port);
        let f = frame(true, 2, &[1; 5000]);
        let _ = t.try_send(&f[..(round as usize * 97) % f.len()]);
        drop(t);
        let mut h = Peer::connect(port);
        let _ = h.try_send(format!("GET / HTTP/1.1\r\nX: {}\r\n", "y".repeat(20_000)).as_bytes());
        let mut v = Peer::open(port);
        let _ = v.try_send(&frame_raw(
            0x80 | (3 + (round % 5) as u8),
            b"bad",
            Some([1, 2, 3, 4]),
        ));
        assert_eq!(v.read_message(), Got::Close(Some(1002)));
    }

    let loris_time = slow.join().expect("slowloris thread");
    assert!(loris_time < Duration::from_secs(6));
    for g in good {
        let n = g.join().expect("a good client failed");
        assert!(n > 10, "a good client made only {n} round trips");
    }
    assert!(s.is_alive(), "server died");
    Peer::open(port).echo(1, b"still serving");
}

#[test]
fn many_concurrent_clients_all_get_correct_echoes() {
    let s = Server::start(&["--workers", "2"]);
    let port = s.port;
    let threads: Vec<_> = (0..20)
        .map(|t| {
            thread::spawn(move || {
                let mut peers: Vec<Peer> = (0..10).map(|_| Peer::open(port)).collect();
                for round in 0..50 {
                    for (i, p) in peers.iter_mut().enumerate() {
                        p.send(&frame(true, 1, format!("{t}/{i}/{round}").as_bytes()));
                    }
                    for (i, p) in peers.iter_mut().enumerate() {
                        let want = format!("{t}/{i}/{round}").into_bytes();
                        assert_eq!(p.read_message(), Got::Message(1, want));
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("client thread");
    }
}

#[test]
fn a_client_that_never_reads_is_bounded_and_does_not_stall_others() {
    let s = Server::start(&["--workers", "1", "--max-queued-bytes", "1048576"]);
    let before = rss_kb(s.pid());
    // The hog sends 64 KiB messages and never reads the echoes.
    let mut hog = Peer::open(s.port);
    hog.sock
        .set_write_timeout(Some(Duration::from_millis(200)))
        .expect("timeout");
    let msg = frame(true, 2, &vec![9u8; 64 << 10]);
    let mut sent = 0usize;
    let start = Instant::now();
    while start.elapsed() < Duration::from_secs(3) {
        if hog.sock.write_all(&msg).is_err() {
            break; // the server stopped reading: backpressure reached us
        }
        sent += 1;
    }
    // Another client on the same worker still echoes promptly.
    let mut other = Peer::open(s.port);
    let t = Instant::now();
    other.echo(1, b"not stalled");
    assert!(t.elapsed() < Duration::from_secs(1));
    let grown_kb = rss_kb(s.pid()).saturating_sub(before);
    assert!(
        sent < 2000,
        "the server kept reading from a client that never reads ({sent} msgs)"
    );
    assert!(
        grown_kb < 64 << 10,
        "server RSS grew by {grown_kb} KiB for one slow reader"
    );
}
