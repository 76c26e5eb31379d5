//! Faults at the kernel seam, for whichever driver `THRONG_TEST_DRIVER` names (scripts/test.sh
//! runs this file under epoll and under io_uring): clients that vanish with reads and writes
//! in flight, a burst of connections all sending at once (with io_uring, far more data in
//! flight than the provided-buffer ring holds, so its receives run dry and are re-armed),
//! and a shutdown while sends are stuck in the kernel. "No leak" is checked on the server's
//! own descriptors (/proc/PID/fd) coming back to where they were.

mod util;

use std::io::Write;
use std::time::{Duration, Instant};

use util::{Got, Peer, Server, frame};

/// Open descriptors of process `pid`.
fn fds(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd"))
        .map(|d| d.count())
        .unwrap_or(0)
}

/// Waits (at most `within`) for `pid`'s descriptor count to fall to `want` or below.
fn fds_settle(pid: u32, want: usize, within: Duration) -> usize {
    let deadline = Instant::now() + within;
    loop {
        let now = fds(pid);
        if now <= want || Instant::now() >= deadline {
            return now;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn clients_vanishing_with_reads_and_writes_in_flight_leak_nothing() {
    let s = Server::start(&[]);
    let mut warm = Peer::open(s.port);
    warm.echo(1, b"warm");
    let baseline = fds(s.pid());
    let big = vec![0x5au8; 1 << 20];
    for round in 0..3 {
        let mut gone = Vec::new();
        for i in 0..60 {
            let mut p = Peer::open(s.port);
            match i % 3 {
                // A 1 MiB echo the client never reads: the server's send stays in flight.
                0 => p.send(&frame(true, 2, &big)),
                // Half a frame: the server's receive is mid-message.
                1 => p.send(&frame(true, 2, &big[..4096])[..2000]),
                // Nothing at all: an idle receive.
                _ => {}
            }
            gone.push(p);
        }
        // Let the server get going on them, then vanish: unread data makes these resets.
        std::thread::sleep(Duration::from_millis(100));
        drop(gone);
        let left = fds_settle(s.pid(), baseline, Duration::from_secs(20));
        assert!(
            left <= baseline,
            "round {round}: {left} descriptors open, {baseline} before"
        );
    }
    warm.echo(1, b"still serving");
    Peer::open(s.port).echo(2, &big);
}

#[test]
fn a_burst_of_connections_sending_at_once_loses_nothing() {
    const CONNS: usize = 2000;
    const SIZE: usize = 8 << 10;
    // A ring of 16 buffers per worker under io_uring (epoll ignores it).
    let s = Server::start_env(&[], &[("THRONG_URING_BUFFERS", "16")]);
    let mut peers: Vec<Peer> = (0..CONNS).map(|_| Peer::open(s.port)).collect();
    let payload = |i: usize| -> Vec<u8> { (0..SIZE).map(|j| (i * 31 + j) as u8).collect() };
    // Every frame is written while the server is stopped, so that 16 MiB wait in 2,000
    // sockets when it resumes: with io_uring, 2,000 sockets want a buffer from a ring of
    // 16 per worker, so receives end with ENOBUFS and are re-armed.
    // SAFETY: kill(2) on our own child's pid; no memory is involved.
    unsafe { libc::kill(s.pid() as i32, libc::SIGSTOP) };
    for (i, p) in peers.iter_mut().enumerate() {
        p.sock
            .write_all(&frame(true, 2, &payload(i)))
            .expect("send");
    }
    // SAFETY: as above.
    unsafe { libc::kill(s.pid() as i32, libc::SIGCONT) };
    for (i, p) in peers.iter_mut().enumerate() {
        assert_eq!(
            p.read_message(),
            Got::Message(2, payload(i)),
            "connection {i} of {CONNS}"
        );
    }
}

#[test]
fn shutdown_with_operations_in_flight_exits_cleanly() {
    // No drain window: the clients are told at once, and the process has 2 s after.
    let mut s = Server::start(&["--drain-window", "0", "--drain-timeout", "2"]);
    let big = vec![7u8; 4 << 20];
    // Clients that send and never read: their echoes fill the socket buffers and the
    // server's sends wait in the kernel. Others sit idle with a receive armed.
    let mut stuck = Vec::new();
    for _ in 0..10 {
        let mut p = Peer::open(s.port);
        p.sock.set_nonblocking(true).expect("nonblocking");
        let f = frame(true, 2, &big);
        let mut sent = 0;
        let deadline = Instant::now() + Duration::from_secs(2);
        while sent < f.len() && Instant::now() < deadline {
            match p.sock.write(&f[sent..]) {
                Ok(n) => sent += n,
                Err(_) => std::thread::sleep(Duration::from_millis(5)),
            }
        }
        stuck.push(p);
    }
    let idle: Vec<Peer> = (0..10).map(|_| Peer::open(s.port)).collect();
    std::thread::sleep(Duration::from_millis(200));
    let status = s
        .terminate(Duration::from_secs(10))
        .expect("the server exits within the drain timeout and some");
    assert!(status.success(), "{status:?}");
    drop((stuck, idle));
}
