//! `throng bench connect`: N idle upgraded connections, spread over source addresses
//! 127.0.0.2 … 127.0.0.(K+1) so that ephemeral ports never run out, held while the
//! server's RSS (`/proc/PID/status`) and the kernel's slab (`/proc/meminfo`) are read.
//!
//! Phases: open (bounded: at most `--concurrency` handshakes in progress, at most
//! `--rate` starts per second, [`CONNECT_TIMEOUT`] per handshake, [`OPEN_BUDGET`] for
//! all), settle ([`SETTLE`]), measure and report, hold (`--hold` seconds), close all.
//! The loop keeps running while settling and holding, so the server's pings are
//! answered and connections it drops are counted.
//!
//! With `--proto socketio` a connection counts as held once Socket.IO is connected to
//! `/` (open packet read, CONNECT answered), so the figures are per idle Socket.IO
//! connection; the server's Engine.IO pings are answered while the connections are held.
//!
//! With `--transport polling` (`--proto socketio` only) each of the N is an idle
//! Engine.IO long-polling session instead ([`PollSession`]): one keep-alive TCP
//! connection whose GET the server holds, held once the CONNECT answer arrived and the
//! next GET was sent; pings are answered (POST `3`, GET again), and a held GET the
//! server leaves unanswered past pingInterval + pingTimeout fails its session. The
//! figures are then per idle polling session.
//!
//! Invariants: N stays under this machine's open-file limit ([`MAX_CONNS`]); the slab
//! figure is machine-wide, so on loopback it covers both ends of each connection (and
//! anything else the machine did meanwhile).

use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use mio::net::TcpStream;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use super::client::{Client, Dialer, Ignore, Phase, XorShift};
use super::polling::PollSession;
use super::report::{CpuMeter, Target, parse_target, per_conn_bytes, rss_kb, slab_kb};
use super::sio::{ClientProto, Transport, check_transport};

/// Connections one generator process can hold under this machine's 20,000 fd limit.
pub const MAX_CONNS: usize = 19_900;
/// How long connections sit before RSS and slab are read.
const SETTLE: Duration = Duration::from_secs(1);
/// Handshakes still unfinished after this are failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// The open phase ends after this, whatever is left.
const OPEN_BUDGET: Duration = Duration::from_secs(300);
/// Longest `--hold`.
const MAX_HOLD_SECS: u64 = 3600;

#[derive(clap::Args, Debug, Clone)]
pub struct ConnectArgs {
    /// Target, e.g. ws://127.0.0.1:8080/ (loopback only).
    #[arg(long)]
    pub url: String,
    /// Connections to open and hold (at most 19,900).
    #[arg(long, default_value_t = 10_000)]
    pub conns: usize,
    /// Source addresses to spread over: 127.0.0.2 .. 127.0.0.(K+1).
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
    /// Server process to measure (VmRSS before and after); without it the RSS fields are null.
    #[arg(long)]
    pub server_pid: Option<u32>,
    /// Seconds to hold the connections after measuring.
    #[arg(long, default_value_t = 2)]
    pub hold: u64,
    /// New connects started per second at most (default: as fast as --concurrency allows).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Handshakes in progress at once.
    #[arg(long, default_value_t = 256)]
    pub concurrency: usize,
    /// Wire protocol: `ws`, or `socketio` (held once CONNECTed to namespace / at
    /// /socket.io/ on the URL's host and port).
    #[arg(long, value_enum, default_value = "ws")]
    pub proto: ClientProto,
    /// Socket.IO transport: `websocket`, or `polling` (idle HTTP long-polling sessions,
    /// one keep-alive connection each; needs --proto socketio).
    #[arg(long, value_enum, default_value = "websocket")]
    pub transport: Transport,
}

/// What the connect mode holds: a WebSocket client or a polling session.
trait Held {
    fn stream(&mut self) -> &mut TcpStream;
    /// Counts as held (open).
    fn is_open(&self) -> bool;
    /// Serves a readiness event. `Err`: why it failed.
    fn serve(&mut self, scratch: &mut [u8], rng: &mut XorShift) -> Result<(), String>;
    /// Why it fails now, if a deadline passed.
    fn overdue(&self, now: Instant) -> Option<String>;
}

impl Held for Client {
    fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
    fn is_open(&self) -> bool {
        self.phase == Phase::Open
    }
    fn serve(&mut self, scratch: &mut [u8], rng: &mut XorShift) -> Result<(), String> {
        let result = self
            .flush()
            .and_then(|()| self.read(scratch, rng, &mut Ignore))
            .and_then(|alive| self.flush().map(|()| alive));
        match result {
            Ok(true) if self.closed_by_peer() => Err("the server sent close".to_string()),
            Ok(true) => Ok(()),
            Ok(false) => Err("the server closed the connection (EOF)".to_string()),
            Err(e) => Err(e.to_string()),
        }
    }
    fn overdue(&self, now: Instant) -> Option<String> {
        (self.phase == Phase::Handshaking && now - self.started > CONNECT_TIMEOUT)
            .then(|| format!("no handshake response within {CONNECT_TIMEOUT:?}"))
    }
}

impl Held for PollSession {
    fn stream(&mut self) -> &mut TcpStream {
        &mut self.stream
    }
    fn is_open(&self) -> bool {
        self.machine.is_open()
    }
    fn serve(&mut self, scratch: &mut [u8], _: &mut XorShift) -> Result<(), String> {
        PollSession::serve(self, scratch)
    }
    fn overdue(&self, now: Instant) -> Option<String> {
        if !self.machine.is_open() {
            return (now - self.started > CONNECT_TIMEOUT)
                .then(|| format!("not CONNECTed over polling within {CONNECT_TIMEOUT:?}"));
        }
        let deadline = self.machine.deadline()?;
        (now > deadline).then(|| {
            format!(
                "no answer to a polling {:?} request within its deadline",
                self.machine.in_flight()
            )
        })
    }
}

/// The open connections and the loop that serves them.
struct Pool<C> {
    poll: Poll,
    events: Events,
    scratch: Vec<u8>,
    rng: XorShift,
    clients: Slab<C>,
    held: usize,
    failed: usize,
    first_error: Option<String>,
    /// The server's RSS (KiB) when a tenth of the connections were held, and how many
    /// were: the base of the marginal figure, past the fixed costs the first
    /// connections touch (allocator arenas, an io_uring worker's provided buffers).
    warm: Option<(usize, u64)>,
}

impl<C: Held> Pool<C> {
    fn fail(&mut self, what: String) {
        tracing::debug!(error = %what, "connection failed");
        self.failed += 1;
        self.first_error.get_or_insert(what);
    }

    /// Polls once (up to `timeout`) and serves the events. Returns how many handshakes
    /// finished or failed (so the dialer may start more).
    fn turn(&mut self, timeout: Duration) -> io::Result<usize> {
        match self.poll.poll(&mut self.events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => return Ok(0),
            Err(e) => return Err(e),
        }
        let mut settled = 0;
        let keys: Vec<usize> = self.events.iter().map(|e| e.token().0).collect();
        for key in keys {
            let Some(c) = self.clients.get_mut(key) else {
                continue;
            };
            let was_open = c.is_open();
            let failure = c.serve(&mut self.scratch, &mut self.rng).err();
            let opened = !was_open && c.is_open();
            match failure {
                None if opened => {
                    self.held += 1;
                    settled += 1;
                }
                None => {}
                Some(e) => {
                    self.clients.remove(key);
                    if was_open {
                        self.held -= 1;
                    } else {
                        settled += 1;
                    }
                    self.fail(e);
                }
            }
        }
        Ok(settled)
    }

    /// Fails what is overdue (handshakes older than [`CONNECT_TIMEOUT`], polling
    /// requests past their deadline); returns how many handshakes that settled.
    fn expire(&mut self, now: Instant) -> usize {
        let late: Vec<(usize, String)> = self
            .clients
            .iter()
            .filter_map(|(k, c)| c.overdue(now).map(|why| (k, why)))
            .collect();
        let mut settled = 0;
        for (key, why) in late {
            if self.clients.remove(key).is_open() {
                self.held -= 1;
            } else {
                settled += 1;
            }
            self.fail(why);
        }
        settled
    }

    /// Serves the open connections until `until` (answering pings, counting drops and
    /// overdue polling requests).
    fn idle_until(&mut self, until: Instant) -> io::Result<()> {
        loop {
            let now = Instant::now();
            if now >= until {
                return Ok(());
            }
            self.turn((until - now).min(Duration::from_millis(200)))?;
            self.expire(Instant::now());
        }
    }
}

/// Checks the arguments, runs the phases, reports. `Ok(false)` when not every
/// connection was held.
pub fn run(args: &ConnectArgs) -> Result<bool, String> {
    check_transport("connect", args.proto, args.transport)?;
    let target = parse_target(&args.url)?.speaking(args.proto);
    if args.conns == 0 || args.conns > MAX_CONNS {
        return Err(format!(
            "--conns must be 1..={MAX_CONNS}: this process may open at most 20,000 files \
             (use several generator processes for more)"
        ));
    }
    if !(1..=250).contains(&args.sources) {
        return Err("--sources must be 1..=250".into());
    }
    if args.hold > MAX_HOLD_SECS {
        return Err(format!("--hold must be at most {MAX_HOLD_SECS} seconds"));
    }
    if args.rate.is_some_and(|r| !(r.is_finite() && r > 0.0)) {
        return Err("--rate must be a positive number of connects per second".into());
    }
    if args.concurrency == 0 {
        return Err("--concurrency must be > 0".into());
    }
    if let Some(pid) = args.server_pid
        && rss_kb(pid).is_none()
    {
        return Err(format!(
            "--server-pid {pid}: cannot read VmRSS from /proc/{pid}/status"
        ));
    }
    let limit = crate::runtime::system::raise_fd_limit().map_err(|e| e.to_string())?;
    if (args.conns as u64) + 64 > limit {
        return Err(format!(
            "--conns {} needs more file descriptors than this process may open ({limit})",
            args.conns
        ));
    }
    match args.transport {
        Transport::Websocket => measure(args, target, |dialer, rng| dialer.dial(rng)),
        Transport::Polling => {
            let host: Rc<str> = target.host_header.as_str().into();
            measure(args, target, move |dialer, _| {
                dialer.dial_with(|t, source| PollSession::connect(t, source, Rc::clone(&host)))
            })
        }
    }
}

/// Opens the connections with `dial`, measures, reports, holds.
fn measure<C: Held>(
    args: &ConnectArgs,
    target: Target,
    dial: impl FnMut(&mut Dialer, &mut XorShift) -> io::Result<C>,
) -> Result<bool, String> {
    let mut pool = Pool {
        poll: Poll::new().map_err(|e| e.to_string())?,
        events: Events::with_capacity(1024),
        scratch: vec![0u8; 16 << 10],
        rng: XorShift::from_time(0xC0FF_EE00),
        clients: Slab::with_capacity(args.conns),
        held: 0,
        failed: 0,
        first_error: None,
        warm: None,
    };
    let rss_before = args.server_pid.and_then(rss_kb);
    let slab_before = slab_kb();
    let cpu = CpuMeter::start();
    let connect_secs = open_all(args, target, &mut pool, dial).map_err(|e| e.to_string())?;
    // Over the open phase only: that is where the generator could be the bottleneck.
    let cpu_percent = cpu.percent();
    pool.idle_until(Instant::now() + SETTLE)
        .map_err(|e| e.to_string())?;
    let rss_after = args.server_pid.and_then(rss_kb);
    let slab_after = slab_kb();
    let held = pool.held;
    let rss_per_conn = per_conn_bytes(rss_before, rss_after, held);
    // Per connection past the first tenth: what one more connection costs, with the
    // fixed costs touched early counted once.
    let rss_marginal = pool.warm.and_then(|(warm_held, warm_rss)| {
        per_conn_bytes(Some(warm_rss), rss_after, held.saturating_sub(warm_held))
    });
    let slab_per_conn = per_conn_bytes(slab_before, slab_after, held);
    let rate = held as f64 / connect_secs.max(1e-6);
    let kb = |v: Option<u64>| v.map_or("?".into(), |v| v.to_string());
    let bytes = |v: Option<f64>| v.map_or("?".into(), |v| format!("{v:.0}"));
    let polling = args.transport == Transport::Polling;
    let unit = if polling { "session" } else { "conn" };
    eprintln!(
        "connect {}{}: {held} of {} held ({} failed) from {} source address(es) in {connect_secs:.2} s \
         = {rate:.0} connects/s; server RSS {} -> {} KiB = {} B/{unit} ({} B/{unit} past the first tenth); kernel slab {} -> {} KiB \
         = {} B/{unit} (both ends, machine-wide); generator CPU {cpu_percent:.0}%",
        args.url,
        match (args.proto, polling) {
            (ClientProto::Socketio, true) => " (socketio, polling sessions)",
            (ClientProto::Socketio, false) => " (socketio)",
            _ => "",
        },
        args.conns,
        pool.failed,
        args.sources,
        kb(rss_before),
        kb(rss_after),
        bytes(rss_per_conn),
        bytes(rss_marginal),
        kb(slab_before),
        kb(slab_after),
        bytes(slab_per_conn),
    );
    if let Some(e) = &pool.first_error {
        eprintln!("connect: first error: {e}");
    }
    if cpu_percent > 90.0 {
        eprintln!(
            "connect: the generator used {cpu_percent:.0}% CPU: the connect rate may be its \
             own limit, not the server's"
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "mode": "connect", "url": args.url, "wire": args.proto.name(),
            "transport": args.transport.name(),
            "conns_requested": args.conns,
            "conns_held": held, "failed": pool.failed,
            "connect_secs": (connect_secs * 1000.0).round() / 1000.0,
            "connects_per_sec": rate.round(), "sources": args.sources,
            "server_rss_before_kb": rss_before, "server_rss_after_kb": rss_after,
            "rss_per_conn_bytes": rss_per_conn.map(f64::round),
            "rss_marginal_per_conn_bytes": rss_marginal.map(f64::round),
            "slab_before_kb": slab_before, "slab_after_kb": slab_after,
            "kernel_slab_per_conn_bytes": slab_per_conn.map(f64::round),
            "cpu_percent": cpu_percent.round(),
        })
    );
    let before_hold = pool.held;
    pool.idle_until(Instant::now() + Duration::from_secs(args.hold))
        .map_err(|e| e.to_string())?;
    if pool.held < before_hold {
        eprintln!(
            "connect: {} connection(s) dropped while held for {} s",
            before_hold - pool.held,
            args.hold
        );
    }
    let all_held = pool.held == args.conns;
    drop(pool); // closes every socket
    Ok(all_held)
}

/// Opens the connections; returns the seconds it took.
fn open_all<C: Held>(
    args: &ConnectArgs,
    target: Target,
    pool: &mut Pool<C>,
    mut dial: impl FnMut(&mut Dialer, &mut XorShift) -> io::Result<C>,
) -> io::Result<f64> {
    let mut dialer = Dialer::new(target, args.sources, args.concurrency, args.rate);
    let start = Instant::now();
    let mut next_sweep = start;
    while pool.held + pool.failed < args.conns {
        let now = Instant::now();
        if now - start > OPEN_BUDGET {
            let left = args.conns - pool.held - pool.failed;
            for _ in 0..left {
                pool.fail(format!("not open within {OPEN_BUDGET:?}"));
            }
            break;
        }
        let mut wait = Duration::from_millis(100);
        while dialer.started < args.conns {
            match dialer.ready(now) {
                Ok(()) => {}
                Err(due) => {
                    wait = due.map_or(wait, |d| d.min(wait));
                    break;
                }
            }
            match dial(&mut dialer, &mut pool.rng) {
                Ok(mut c) => {
                    let entry = pool.clients.vacant_entry();
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    match pool
                        .poll
                        .registry()
                        .register(c.stream(), Token(entry.key()), interest)
                    {
                        Ok(()) => {
                            entry.insert(c);
                        }
                        Err(e) => {
                            dialer.in_progress -= 1;
                            pool.fail(format!("register: {e}"));
                        }
                    }
                }
                Err(e) => pool.fail(format!("connect: {e}")),
            }
        }
        let settled = pool.turn(wait)?;
        dialer.in_progress -= settled;
        if pool.warm.is_none()
            && pool.held >= (args.conns / 10).max(1)
            && let Some(rss) = args.server_pid.and_then(rss_kb)
        {
            pool.warm = Some((pool.held, rss));
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + Duration::from_millis(250);
            dialer.in_progress -= pool.expire(now);
        }
    }
    Ok(start.elapsed().as_secs_f64())
}
