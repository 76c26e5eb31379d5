//! `throng bench connect`: N idle upgraded connections, spread over source addresses
//! 127.0.0.2 … 127.0.0.(K+1) so that ephemeral ports never run out, held while the
//! server's RSS (`/proc/PID/status`) and the kernel's slab (`/proc/meminfo`) are read.
//!
//! At most `--concurrency` connects are in progress at once. The slab figure is
//! machine-wide: on loopback it covers both ends of each connection.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::thread;
use std::time::{Duration, Instant};

use mio::{Events, Interest, Poll, Token};

use crate::ws::CloseCode;
use crate::ws::reader::{Payload, Visitor};

use super::client::{Client, Phase, XorShift};
use super::report::{CpuMeter, parse_target, rss_kb, slab_kb};

/// Connections one generator process can hold under this machine's 20,000 fd limit.
pub const MAX_CONNS: usize = 19_900;
const SETTLE: Duration = Duration::from_secs(1);
const CONNECT_BUDGET: Duration = Duration::from_secs(120);

#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Target, e.g. ws://127.0.0.1:8080/ (loopback only).
    #[arg(long)]
    pub url: String,
    /// Connections to open and hold.
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,
    /// Source addresses to spread over: 127.0.0.2 .. 127.0.0.(K+1).
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
    /// Server process to measure (VmRSS before and after).
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seconds to hold the connections after measuring.
    #[arg(long, default_value_t = 2)]
    pub hold: u64,
    /// Connects in progress at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
}

struct Ignore;

impl Visitor for Ignore {
    fn message(&mut self, _: bool, _: Payload<'_>) {}
    fn ping(&mut self, _: &[u8]) {}
    fn pong(&mut self, _: &[u8]) {}
    fn close(&mut self, _: Option<CloseCode>, _: &str) {}
}

pub fn run(args: &ConnectArgs) -> Result<bool, String> {
    let target = parse_target(&args.url)?;
    if args.conns == 0 || args.conns > MAX_CONNS {
        return Err(format!(
            "--conns must be 1..={MAX_CONNS} (the open-file limit is 20,000 per process here)"
        ));
    }
    if !(1..=250).contains(&args.sources) {
        return Err("--sources must be 1..=250".into());
    }
    let limit = crate::runtime::system::raise_fd_limit().map_err(|e| e.to_string())?;
    if (args.conns as u64) + 64 > limit {
        return Err(format!(
            "--conns {} needs more file descriptors than this process may open ({limit})",
            args.conns
        ));
    }
    let rss_before = args.server_pid.and_then(rss_kb);
    let slab_before = slab_kb();
    let cpu = CpuMeter::start();
    let (held, failed, connect_secs, mut clients) =
        open_all(args, &target).map_err(|e| e.to_string())?;
    thread::sleep(SETTLE);
    let rss_after = args.server_pid.and_then(rss_kb);
    let slab_after = slab_kb();
    let cpu_percent = cpu.percent();
    let per_conn = |before: Option<u64>, after: Option<u64>| match (before, after) {
        (Some(b), Some(a)) if held > 0 => Some((a.saturating_sub(b) * 1024) as f64 / held as f64),
        _ => None,
    };
    let rss_per_conn = per_conn(rss_before, rss_after);
    let slab_per_conn = per_conn(slab_before, slab_after);
    let rate = held as f64 / connect_secs.max(1e-6);
    eprintln!(
        "connect {}: {held} of {} held ({failed} failed) in {connect_secs:.2} s = {rate:.0}/s; \
         server RSS {:?} -> {:?} KiB = {} B/conn; kernel slab {:?} -> {:?} KiB = {} B/conn \
         (both ends, machine-wide); generator CPU {cpu_percent:.0}%",
        args.url,
        args.conns,
        rss_before,
        rss_after,
        rss_per_conn.map_or("?".into(), |v| format!("{v:.0}")),
        slab_before,
        slab_after,
        slab_per_conn.map_or("?".into(), |v| format!("{v:.0}")),
    );
    println!(
        "{}",
        serde_json::json!({
            "mode": "connect", "url": args.url, "conns_requested": args.conns,
            "conns_held": held, "failed": failed, "connect_secs": connect_secs,
            "connects_per_sec": rate.round(),
            "server_rss_before_kb": rss_before, "server_rss_after_kb": rss_after,
            "rss_per_conn_bytes": rss_per_conn.map(f64::round),
            "slab_before_kb": slab_before, "slab_after_kb": slab_after,
            "kernel_slab_per_conn_bytes": slab_per_conn.map(f64::round),
            "cpu_percent": cpu_percent.round(),
        })
    );
    thread::sleep(Duration::from_secs(args.hold));
    clients.clear();
    Ok(held == args.conns)
}

/// Opens the connections with bounded concurrency; returns (held, failed, seconds, clients).
fn open_all(
    args: &ConnectArgs,
    target: &super::report::Target,
) -> io::Result<(usize, usize, f64, Vec<Option<Client>>)> {
    let mut rng = XorShift::seeded(0xC0FF_EE00_D15E_A5E5);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let mut scratch = vec![0u8; 16 << 10];
    let mut clients: Vec<Option<Client>> = Vec::with_capacity(args.conns);
    let (mut started, mut held, mut failed, mut in_progress) = (0usize, 0usize, 0usize, 0usize);
    let start = Instant::now();
    while held + failed < args.conns {
        if start.elapsed() > CONNECT_BUDGET {
            failed += args.conns - held - failed;
            break;
        }
        while started < args.conns && in_progress < args.concurrency {
            let source_ip = Ipv4Addr::new(127, 0, 0, 2 + (started % args.sources) as u8);
            let source = target
                .addr
                .is_ipv4()
                .then(|| SocketAddr::new(IpAddr::V4(source_ip), 0));
            started += 1;
            match Client::connect(target, source, &mut rng) {
                Ok(mut c) => {
                    poll.registry().register(
                        &mut c.stream,
                        Token(clients.len()),
                        Interest::READABLE | Interest::WRITABLE,
                    )?;
                    clients.push(Some(c));
                    in_progress += 1;
                }
                Err(e) => {
                    tracing::debug!(error = %e, "connect failed");
                    failed += 1;
                }
            }
        }
        poll.poll(&mut events, Some(Duration::from_millis(100)))?;
        for event in events.iter() {
            let i = event.token().0;
            let Some(c) = clients[i].as_mut() else {
                continue;
            };
            let was_open = c.phase == Phase::Open;
            let ok = c.flush().is_ok() && c.read(&mut scratch, &mut Ignore).unwrap_or(false);
            if !was_open && c.phase == Phase::Open && ok {
                held += 1;
                in_progress -= 1;
            } else if !ok {
                if was_open {
                    held -= 1;
                } else {
                    in_progress -= 1;
                }
                failed += 1;
                clients[i] = None;
            }
        }
    }
    Ok((held, failed, start.elapsed().as_secs_f64(), clients))
}
