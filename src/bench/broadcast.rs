//! `throng bench broadcast`: the websocket-shootout method. Clients are added a step at a
//! time; after each step `--concurrent` sender clients each broadcast `--sample-size`
//! times, one at a time (send, wait for `broadcastResult`, send the next), and the
//! broadcast round trip (RTT = arrival of `broadcastResult` − the `sendTime` inside the
//! payload) is sampled. The run stops when the `--limit-percentile` RTT exceeds
//! `--limit-rtt-ms`, or at `--max-clients`, and reports the largest client count held
//! within the limit.
//!
//! Threads: the senders live on the calling thread; the other clients (receivers) are
//! spread over `--threads` receiver threads, each a [`Fleet`] driven by commands
//! ([`Cmd`]) and publishing its progress in atomics ([`Progress`]).
//!
//! Invariants:
//! - Every client, senders included, must receive every broadcast of a step exactly
//!   once. Each keeps a per-step counter, checked after the step once the counts settle
//!   (at most [`SETTLE`]): missing and extra deliveries are reported per step, and any
//!   (or a frame that is no broadcast) ends the run with exit code 1. Receivers only
//!   check that a frame is text and starts with `{"type":"broadcast",`; senders parse
//!   their `broadcastResult` fully.
//! - No broadcast is in flight while clients are added or counters reset: a step starts
//!   only after every receiver thread confirmed its reset, and clients are added only
//!   after the previous step settled.
//! - Everything is bounded: handshakes ([`CONNECT_TIMEOUT`]), each step's connects
//!   ([`OPEN_BUDGET`]), each broadcast's result ([`RESULT_TIMEOUT`]), the settle wait and
//!   every wait for a receiver thread ([`THREAD_TIMEOUT`]); the step count is bounded by
//!   `--max-clients / --step-size`.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, Sender, TryRecvError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use mio::Waker;

use crate::ws::CloseCode;
use crate::ws::reader::{Payload, Visitor};

use super::fleet::{CONNECT_TIMEOUT, Counts, Fleet};
use super::json::{broadcast_result_send_time, is_broadcast, queue_text, shootout_broadcast};
use super::json::shootout_padding;
use super::report::{CpuMeter, parse_target};

/// A step's connects must all finish within this.
const OPEN_BUDGET: Duration = Duration::from_secs(120);
/// A broadcast whose `broadcastResult` has not come after this fails the run.
const RESULT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a step waits for its delivery counts to settle.
const SETTLE: Duration = Duration::from_secs(5);
/// How long the coordinator waits for a receiver thread's reply.
const THREAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `--padding`.
const MAX_PADDING: usize = 1 << 20;
/// Largest `--sample-size` and `--concurrent`.
const MAX_SAMPLES: usize = 100_000;

#[derive(clap::Args, Debug, Clone)]
pub struct BroadcastArgs {
    /// Target speaking the shootout protocol, e.g. ws://127.0.0.1:8080/ (loopback only).
    #[arg(long)]
    pub url: String,
    /// Clients added per step.
    #[arg(long, default_value_t = 1000)]
    pub step_size: usize,
    /// Most clients (default: the open-file limit minus 64).
    #[arg(long)]
    pub max_clients: Option<usize>,
    /// Sender clients; each broadcasts --sample-size times per step, one at a time.
    #[arg(long, default_value_t = 4)]
    pub concurrent: usize,
    /// Broadcasts per sender per step.
    #[arg(long, default_value_t = 20)]
    pub sample_size: usize,
    /// Padding bytes in each broadcast payload.
    #[arg(long, default_value_t = 200)]
    pub padding: usize,
    /// The RTT percentile held to --limit-rtt-ms.
    #[arg(long, default_value_t = 95.0)]
    pub limit_percentile: f64,
    /// The RTT limit in milliseconds: a step whose percentile exceeds it ends the run.
    #[arg(long, default_value_t = 100)]
    pub limit_rtt_ms: u64,
    /// Receiver threads, each with its own event loop and share of the clients.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Source addresses to spread over: 127.0.0.2 .. 127.0.0.(K+1); 0 lets the kernel pick.
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
}

/// What the coordinator asks of a receiver thread.
#[derive(Debug)]
enum Cmd {
    /// Open connections until this many have been started.
    Grow(usize),
    /// Reset every counter; each client must now receive this many broadcasts.
    Step(u64),
    /// Report the step's deliveries.
    Tally,
    Stop,
}

/// A receiver thread's answers.
#[derive(Debug)]
enum Reply {
    StepReady,
    Tally(Tally),
}

/// A step's deliveries as one thread (or, summed, the run) counted them.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
struct Tally {
    /// Broadcasts a client should have received and did not.
    missing: u64,
    /// Broadcasts a client received beyond the step's count.
    extra: u64,
    /// Frames that were no broadcast (or not text).
    unexpected: u64,
}

impl Tally {
    /// Accounts for one client that received `count` of `expect`.
    fn client(&mut self, count: u64, expect: u64) {
        self.missing += expect.saturating_sub(count);
        self.extra += count.saturating_sub(expect);
    }

    fn add(&mut self, o: Tally) {
        self.missing += o.missing;
        self.extra += o.extra;
        self.unexpected += o.unexpected;
    }

    fn clean(&self) -> bool {
        *self == Tally::default()
    }
}

/// A receiver thread's progress, read by the coordinator.
#[derive(Debug, Default)]
struct Progress {
    /// Handshakes finished or failed.
    settled: AtomicUsize,
    /// Connections open now.
    open: AtomicUsize,
    /// Connects failed plus open connections lost.
    failed: AtomicUsize,
    /// Open clients that received the whole step.
    complete: AtomicUsize,
}

impl Progress {
    fn publish(&self, counts: &Counts, complete: usize) {
        self.settled
            .store(counts.opened + counts.connect_failed, Ordering::Relaxed);
        self.open.store(counts.open(), Ordering::Relaxed);
        self.failed
            .store(counts.connect_failed + counts.lost, Ordering::Relaxed);
        self.complete.store(complete, Ordering::Relaxed);
    }
}

/// Counts one receiver's broadcasts.
struct Count<'a> {
    count: &'a mut u64,
    expect: u64,
    complete: &'a mut usize,
    unexpected: &'a mut u64,
}

impl Visitor for Count<'_> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        if !text || !is_broadcast(payload.as_slice()) {
            *self.unexpected += 1;
            return;
        }
        *self.count += 1;
        if *self.count == self.expect {
            *self.complete += 1;
        }
    }
    fn ping(&mut self, _: &[u8]) {}
    fn pong(&mut self, _: &[u8]) {}
    fn close(&mut self, _: Option<CloseCode>, _: &str) {}
}

/// A receiver thread: serves its fleet and answers commands until `Stop` (or until the
/// coordinator is gone).
fn receive(
    mut fleet: Fleet<u64>,
    cmds: Receiver<Cmd>,
    replies: Sender<Reply>,
    progress: Arc<Progress>,
) -> io::Result<Counts> {
    let mut wanted = 0;
    // No step yet: nothing is expected, nothing completes.
    let mut expect = u64::MAX;
    let mut complete = 0usize;
    let mut unexpected = 0u64;
    let mut dropped = Tally::default();
    let mut next_sweep = Instant::now();
    loop {
        loop {
            match cmds.try_recv() {
                Ok(Cmd::Grow(n)) => wanted = n,
                Ok(Cmd::Step(e)) => {
                    expect = e;
                    fleet.each_open(|_, count, _| *count = 0);
                    complete = 0;
                    unexpected = 0;
                    dropped = Tally::default();
                    // Before the reply: the coordinator must not see the last step's count.
                    progress.publish(&fleet.counts, complete);
                    let _ = replies.send(Reply::StepReady);
                }
                Ok(Cmd::Tally) => {
                    let mut t = dropped;
                    t.unexpected += unexpected;
                    fleet.each_open(|_, count, _| t.client(*count, expect));
                    let _ = replies.send(Reply::Tally(t));
                }
                Ok(Cmd::Stop) | Err(TryRecvError::Disconnected) => return Ok(fleet.counts),
                Err(TryRecvError::Empty) => break,
            }
        }
        fleet.dial(wanted, || 0);
        fleet.turn(Duration::from_millis(100), |client, count, scratch, rng| {
            let mut v = Count {
                count,
                expect,
                complete: &mut complete,
                unexpected: &mut unexpected,
            };
            client.read(scratch, rng, &mut v)
        })?;
        for (count, was_open) in fleet.take_dropped() {
            if was_open && expect != u64::MAX {
                dropped.client(count, expect);
                if count >= expect {
                    complete -= 1;
                }
            }
        }
        let now = Instant::now();
        if now >= next_sweep {
            next_sweep = now + Duration::from_millis(250);
            fleet.expire(now);
        }
        progress.publish(&fleet.counts, complete);
    }
}

/// The coordinator's handle on a receiver thread.
struct Receivers {
    cmds: Sender<Cmd>,
    waker: Waker,
    progress: Arc<Progress>,
    handle: JoinHandle<io::Result<Counts>>,
}

impl Receivers {
    fn send(&self, cmd: Cmd) {
        let _ = self.cmds.send(cmd);
        let _ = self.waker.wake();
    }
}

/// One sender client's state.
#[derive(Debug, Default)]
struct SenderState {
    /// Broadcasts received this step.
    received: u64,
    /// Broadcasts still to send this step.
    left: usize,
    /// When the broadcast awaiting its result was sent.
    waiting_since: Option<Instant>,
    /// Its result arrived in the last read: send the next one.
    result_in: bool,
}

/// Reads a sender's frames: broadcasts are counted, its `broadcastResult` gives an RTT.
struct SenderVisitor<'a> {
    st: &'a mut SenderState,
    rtts_us: &'a mut Vec<u64>,
    unexpected: &'a mut u64,
}

impl Visitor for SenderVisitor<'_> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        let p = payload.as_slice();
        if text && is_broadcast(p) {
            self.st.received += 1;
            return;
        }
        match broadcast_result_send_time(p) {
            Some(sent) if text && self.st.waiting_since.is_some() => {
                let rtt_ns = unix_ns().saturating_sub(sent);
                self.rtts_us.push(rtt_ns.div_ceil(1000));
                self.st.waiting_since = None;
                self.st.result_in = true;
            }
            _ => *self.unexpected += 1,
        }
    }
    fn ping(&mut self, _: &[u8]) {}
    fn pong(&mut self, _: &[u8]) {}
    fn close(&mut self, _: Option<CloseCode>, _: &str) {}
}

fn unix_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// The sender clients and what they measured in the current step.
struct Senders {
    fleet: Fleet<SenderState>,
    padding: String,
    buf: Vec<u8>,
    rtts_us: Vec<u64>,
    unexpected: u64,
}

impl Senders {
    /// Queues one broadcast from a sender.
    fn send(st: &mut SenderState, out: &mut Vec<u8>, buf: &mut Vec<u8>, padding: &str, key: u32) {
        shootout_broadcast(buf, unix_ns(), padding);
        queue_text(out, buf, key.to_ne_bytes());
        st.left -= 1;
        st.waiting_since = Some(Instant::now());
    }

    /// Serves the senders for up to `timeout`; a sender whose result came sends its next.
    fn pump(&mut self, timeout: Duration) -> io::Result<()> {
        let Senders {
            fleet,
            padding,
            buf,
            rtts_us,
            unexpected,
        } = self;
        fleet.turn(timeout, |client, st, scratch, rng| {
            let read = client.read(
                scratch,
                rng,
                &mut SenderVisitor {
                    st,
                    rtts_us,
                    unexpected,
                },
            );
            if std::mem::take(&mut st.result_in) && st.left > 0 {
                Senders::send(st, client.out(), buf, padding, rng.next() as u32);
            }
            read
        })?;
        Ok(())
    }

    /// Starts a step: resets the counters and sends each sender's first broadcast.
    fn start(&mut self, samples: usize) {
        self.rtts_us.clear();
        self.unexpected = 0;
        let (buf, padding) = (&mut self.buf, &self.padding);
        self.fleet.each_open(|client, st, rng| {
            *st = SenderState {
                left: samples,
                ..SenderState::default()
            };
            Senders::send(st, client.out(), buf, padding, rng.next() as u32);
        });
    }

    /// Whether every sender has sent and heard back all its samples; `Err` when one
    /// has waited too long.
    fn sampled(&mut self, now: Instant) -> Result<bool, String> {
        let mut done = true;
        let mut late = false;
        self.fleet.each_open(|_, st, _| {
            done &= st.left == 0 && st.waiting_since.is_none();
            late |= st
                .waiting_since
                .is_some_and(|t| now.duration_since(t) > RESULT_TIMEOUT);
        });
        if late {
            return Err(format!("no broadcastResult within {RESULT_TIMEOUT:?}"));
        }
        Ok(done)
    }

    /// Senders that received all `expect` broadcasts.
    fn complete(&mut self, expect: u64) -> usize {
        let mut complete = 0;
        self.fleet
            .each_open(|_, st, _| complete += usize::from(st.received >= expect));
        complete
    }

    /// The senders' deliveries this step, those of senders lost meanwhile included.
    fn tally(&mut self, expect: u64) -> Tally {
        let mut t = Tally {
            unexpected: self.unexpected,
            ..Tally::default()
        };
        self.fleet.each_open(|_, st, _| t.client(st.received, expect));
        for (st, was_open) in self.fleet.take_dropped() {
            if was_open {
                t.client(st.received, expect);
            }
        }
        t
    }
}

/// RTT figures of one step, in microseconds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Rtt {
    min: u64,
    p50: u64,
    at_limit: u64,
    max: u64,
}

/// The nearest-rank `pct` percentile of `sorted` (ascending, non-empty).
fn percentile(sorted: &[u64], pct: f64) -> u64 {
    let rank = ((pct / 100.0) * sorted.len() as f64).ceil() as usize;
    sorted[rank.clamp(1, sorted.len()) - 1]
}

impl Rtt {
    fn of(samples: &mut [u64], limit_percentile: f64) -> Option<Rtt> {
        samples.sort_unstable();
        Some(Rtt {
            min: *samples.first()?,
            p50: percentile(samples, 50.0),
            at_limit: percentile(samples, limit_percentile),
            max: *samples.last()?,
        })
    }
}

/// Why the run ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Stop {
    /// The percentile RTT went over the limit (a clean end).
    Limit,
    /// Every step up to --max-clients held (a clean end).
    MaxClients,
    /// Deliveries were missing, extra or unexpected.
    Delivery,
    /// Connects failed or connections were lost.
    Connections,
    /// A broadcastResult did not come in time.
    Timeout,
    /// A receiver thread failed or did not answer.
    Generator,
}

impl Stop {
    fn name(self) -> &'static str {
        match self {
            Stop::Limit => "limit",
            Stop::MaxClients => "max_clients",
            Stop::Delivery => "delivery",
            Stop::Connections => "connections",
            Stop::Timeout => "timeout",
            Stop::Generator => "generator",
        }
    }

    fn clean(self) -> bool {
        matches!(self, Stop::Limit | Stop::MaxClients)
    }
}

/// The client count of step `k` (from 1).
fn step_clients(k: usize, step_size: usize, max_clients: usize) -> usize {
    k.saturating_mul(step_size).min(max_clients)
}

/// Checks the arguments and returns the client ceiling.
fn check(args: &BroadcastArgs) -> Result<usize, String> {
    if args.step_size == 0 || args.concurrent == 0 || args.sample_size == 0 {
        return Err("--step-size, --concurrent and --sample-size must be > 0".into());
    }
    if args.concurrent > MAX_SAMPLES || args.sample_size > MAX_SAMPLES {
        return Err(format!(
            "--concurrent and --sample-size must be at most {MAX_SAMPLES}"
        ));
    }
    if args.step_size < args.concurrent {
        return Err("--step-size must be at least --concurrent (the senders are clients)".into());
    }
    if args.padding > MAX_PADDING {
        return Err(format!("--padding must be at most {MAX_PADDING}"));
    }
    if !(args.limit_percentile > 0.0 && args.limit_percentile <= 100.0) {
        return Err("--limit-percentile must be in (0, 100]".into());
    }
    if args.limit_rtt_ms == 0 || args.limit_rtt_ms > 3_600_000 {
        return Err("--limit-rtt-ms must be 1..=3600000".into());
    }
    if args.sources > 250 {
        return Err("--sources must be 0..=250".into());
    }
    if args.threads == 0 || args.threads > 64 {
        return Err("--threads must be 1..=64".into());
    }
    let limit = crate::runtime::system::raise_fd_limit().map_err(|e| e.to_string())?;
    let allowed = limit.saturating_sub(64) as usize;
    let max = args.max_clients.unwrap_or(allowed);
    if max > allowed {
        return Err(format!(
            "--max-clients {max} needs more file descriptors than this process may open \
             ({limit}, 64 kept back)"
        ));
    }
    if max < args.concurrent {
        return Err(format!(
            "--max-clients {max} is below --concurrent {}",
            args.concurrent
        ));
    }
    Ok(max)
}

/// Runs the steps, reports each and the result. `Ok(false)` when a delivery was
/// missing, extra or unexpected, a connection failed, or no step was measured.
pub fn run(args: &BroadcastArgs) -> Result<bool, String> {
    let target = parse_target(&args.url)?;
    let max_clients = check(args)?;
    let run_cpu = CpuMeter::start();
    let senders = Senders {
        fleet: Fleet::new(target.clone(), args.sources, 0xB0AD_CA57)
            .map_err(|e| e.to_string())?,
        padding: shootout_padding(args.padding),
        buf: Vec::new(),
        rtts_us: Vec::new(),
        unexpected: 0,
    };
    let (reply_tx, replies) = mpsc::channel();
    let mut threads = Vec::with_capacity(args.threads);
    for i in 0..args.threads {
        let fleet: Fleet<u64> =
            Fleet::new(target.clone(), args.sources, i as u64 + 1).map_err(|e| e.to_string())?;
        let waker = fleet.waker().map_err(|e| e.to_string())?;
        let (cmds, cmd_rx) = mpsc::channel();
        let progress = Arc::new(Progress::default());
        let (p, r) = (progress.clone(), reply_tx.clone());
        let handle = thread::Builder::new()
            .name(format!("bench-bcast-{i}"))
            .spawn(move || receive(fleet, cmd_rx, r, p))
            .map_err(|e| format!("cannot start a generator thread: {e}"))?;
        threads.push(Receivers {
            cmds,
            waker,
            progress,
            handle,
        });
    }
    drop(reply_tx);
    let mut run = Run {
        args,
        senders,
        threads,
        replies,
        best: 0,
        steps: 0,
        total: Tally::default(),
        first_error: None,
    };
    let stop = run.steps(max_clients);
    run.finish(stop, max_clients, run_cpu)
}

/// The coordinator's state across steps.
struct Run<'a> {
    args: &'a BroadcastArgs,
    senders: Senders,
    threads: Vec<Receivers>,
    replies: Receiver<Reply>,
    /// The largest client count held within the limit with every delivery right.
    best: usize,
    /// Steps sampled.
    steps: usize,
    total: Tally,
    first_error: Option<String>,
}

impl Run<'_> {
    fn sum(&self, field: impl Fn(&Progress) -> &AtomicUsize) -> usize {
        self.threads
            .iter()
            .map(|t| field(&t.progress).load(Ordering::Relaxed))
            .sum()
    }

    fn error(&mut self, e: String) {
        self.first_error.get_or_insert(e);
    }

    /// Serves the senders until `done` holds or `budget` passes; `false` on timeout.
    fn wait(&mut self, budget: Duration, mut done: impl FnMut(&mut Self) -> bool) -> io::Result<bool> {
        let deadline = Instant::now() + budget;
        loop {
            if done(self) {
                return Ok(true);
            }
            if Instant::now() >= deadline {
                return Ok(false);
            }
            self.senders.pump(Duration::from_millis(2))?;
        }
    }

    /// Collects one reply per thread (bounded); `None` when a thread did not answer.
    fn collect(&mut self) -> io::Result<Option<Vec<Reply>>> {
        let mut got = Vec::with_capacity(self.threads.len());
        let ok = self.wait(THREAD_TIMEOUT, |run| {
            while let Ok(r) = run.replies.try_recv() {
                got.push(r);
            }
            got.len() >= run.threads.len()
        })?;
        Ok(ok.then_some(got))
    }

    /// Runs steps until one ends the run.
    fn steps(&mut self, max_clients: usize) -> Stop {
        match self.steps_inner(max_clients) {
            Ok(stop) => stop,
            Err(e) => {
                self.error(format!("generator: {e}"));
                Stop::Generator
            }
        }
    }

    fn steps_inner(&mut self, max_clients: usize) -> io::Result<Stop> {
        let args = self.args;
        let n = self.threads.len();
        self.senders.fleet.dial(args.concurrent, SenderState::default);
        let expect = (args.concurrent * args.sample_size) as u64;
        let mut k = 0;
        loop {
            k += 1;
            let clients = step_clients(k, args.step_size, max_clients);
            let receivers = clients - args.concurrent;
            for (i, t) in self.threads.iter().enumerate() {
                t.send(Cmd::Grow(receivers / n + usize::from(i < receivers % n)));
            }
            let opened = self.wait(OPEN_BUDGET + CONNECT_TIMEOUT, |run| {
                let now = Instant::now();
                run.senders.fleet.expire(now);
                run.senders.fleet.dial(args.concurrent, SenderState::default);
                let c = &run.senders.fleet.counts;
                c.opened + c.connect_failed >= args.concurrent
                    && run.sum(|p| &p.settled) >= receivers
            })?;
            let failed = self.sum(|p| &p.failed)
                + self.senders.fleet.counts.connect_failed
                + self.senders.fleet.counts.lost;
            if !opened || failed > 0 {
                let open = self.sum(|p| &p.open) + self.senders.fleet.counts.open();
                self.error(format!(
                    "step {k}: {open} of {clients} clients open, {failed} failed{}",
                    if opened { "" } else { " (open budget over)" }
                ));
                return Ok(Stop::Connections);
            }

            for t in &self.threads {
                t.send(Cmd::Step(expect));
            }
            if self.collect()?.is_none() {
                self.error(format!("step {k}: a receiver thread did not confirm its reset"));
                return Ok(Stop::Generator);
            }
            let cpu = CpuMeter::start();
            let began = Instant::now();
            self.senders.start(args.sample_size);
            let mut late = None;
            self.wait(
                RESULT_TIMEOUT * args.sample_size.min(1000) as u32,
                |run| match run.senders.sampled(Instant::now()) {
                    Ok(done) => done || run.senders.fleet.counts.lost > 0,
                    Err(e) => {
                        late = Some(e);
                        true
                    }
                },
            )?;
            let sampling = began.elapsed();
            let settled = self.wait(SETTLE, |run| {
                run.sum(|p| &p.complete) + run.senders.complete(expect)
                    >= run.sum(|p| &p.open) + run.senders.fleet.counts.open()
            })?;
            for t in &self.threads {
                t.send(Cmd::Tally);
            }
            let Some(replies) = self.collect()? else {
                self.error(format!("step {k}: a receiver thread did not report"));
                return Ok(Stop::Generator);
            };
            let mut tally = self.senders.tally(expect);
            for r in replies {
                if let Reply::Tally(t) = r {
                    tally.add(t);
                }
            }
            self.total.add(tally);
            self.steps += 1;
            let samples = self.senders.rtts_us.len();
            let rtt = Rtt::of(&mut self.senders.rtts_us, args.limit_percentile);
            let within = rtt.is_some_and(|r| r.at_limit <= args.limit_rtt_ms * 1000);
            self.report_step(k, clients, samples, rtt, within, tally, sampling, settled, &cpu);
            let lost = self.sum(|p| &p.failed) + self.senders.fleet.counts.lost;
            if let Some(e) = late {
                self.error(format!("step {k}: {e}"));
                return Ok(Stop::Timeout);
            }
            if lost > 0 {
                self.error(format!("step {k}: {lost} connection(s) lost"));
                return Ok(Stop::Connections);
            }
            if !tally.clean() || samples < expect as usize {
                self.error(format!(
                    "step {k}: {} missing, {} extra, {} unexpected deliveries; {samples} of \
                     {expect} samples",
                    tally.missing, tally.extra, tally.unexpected
                ));
                return Ok(Stop::Delivery);
            }
            if !within {
                return Ok(Stop::Limit);
            }
            self.best = clients;
            if clients >= max_clients {
                return Ok(Stop::MaxClients);
            }
        }
    }

    #[allow(clippy::too_many_arguments)]
    fn report_step(
        &self,
        k: usize,
        clients: usize,
        samples: usize,
        rtt: Option<Rtt>,
        within: bool,
        t: Tally,
        sampling: Duration,
        settled: bool,
        cpu: &CpuMeter,
    ) {
        let args = self.args;
        let cpu_percent = cpu.percent();
        let r = rtt.unwrap_or(Rtt {
            min: 0,
            p50: 0,
            at_limit: 0,
            max: 0,
        });
        eprintln!(
            "broadcast step {k}: {clients} clients, {samples} samples in {:.2} s: RTT min {:.1} \
             ms, p50 {:.1} ms, p{} {:.1} ms, max {:.1} ms ({}); {} missing, {} extra, {} \
             unexpected{}; generator CPU {cpu_percent:.0}%",
            sampling.as_secs_f64(),
            r.min as f64 / 1000.0,
            r.p50 as f64 / 1000.0,
            args.limit_percentile,
            r.at_limit as f64 / 1000.0,
            r.max as f64 / 1000.0,
            if within { "within the limit" } else { "over the limit" },
            t.missing,
            t.extra,
            t.unexpected,
            if settled { "" } else { " (counts did not settle)" },
        );
        println!(
            "{}",
            serde_json::json!({
                "mode": "broadcast", "kind": "step", "url": args.url, "step": k,
                "clients": clients, "samples": samples,
                "sampling_ms": sampling.as_millis() as u64,
                "rtt_min_us": r.min, "rtt_p50_us": r.p50, "rtt_limit_pct_us": r.at_limit,
                "rtt_max_us": r.max, "limit_percentile": args.limit_percentile,
                "limit_rtt_ms": args.limit_rtt_ms, "within_limit": within,
                "missing": t.missing, "extra": t.extra, "unexpected": t.unexpected,
                "settled": settled, "cpu_percent": cpu_percent.round(),
            })
        );
    }

    /// Stops the threads and reports the run.
    fn finish(mut self, stop: Stop, max_clients: usize, cpu: CpuMeter) -> Result<bool, String> {
        let args = self.args;
        let mut counts = Counts::default();
        let mut generator_failed = false;
        for t in std::mem::take(&mut self.threads) {
            t.send(Cmd::Stop);
            match t.handle.join() {
                Ok(Ok(c)) => {
                    counts.opened += c.opened;
                    counts.connect_failed += c.connect_failed;
                    counts.lost += c.lost;
                    if counts.first_error.is_none() {
                        counts.first_error = c.first_error;
                    }
                }
                Ok(Err(e)) => {
                    generator_failed = true;
                    self.error(format!("receiver thread failed: {e}"));
                }
                Err(_) => {
                    generator_failed = true;
                    self.error("a receiver thread panicked".into());
                }
            }
        }
        let s = &self.senders.fleet.counts;
        let connect_failed = counts.connect_failed + s.connect_failed;
        let lost = counts.lost + s.lost;
        let first_error = self
            .first_error
            .clone()
            .or(counts.first_error)
            .or(s.first_error.clone());
        let cpu_percent = cpu.percent();
        eprintln!(
            "broadcast {}: {} clients held within p{} <= {} ms (steps of {}, up to {}, {} \
             senders x {} samples, {} B padding, {} receiver thread(s)); stopped: {}; {} \
             steps, {} missing, {} extra, {} unexpected, {} connects failed, {} lost; \
             generator CPU {cpu_percent:.0}%",
            args.url,
            self.best,
            args.limit_percentile,
            args.limit_rtt_ms,
            args.step_size,
            max_clients,
            args.concurrent,
            args.sample_size,
            args.padding,
            args.threads,
            stop.name(),
            self.steps,
            self.total.missing,
            self.total.extra,
            self.total.unexpected,
            connect_failed,
            lost,
        );
        if let Some(e) = &first_error {
            eprintln!("broadcast: first error: {e}");
        }
        println!(
            "{}",
            serde_json::json!({
                "mode": "broadcast", "kind": "summary", "url": args.url,
                "step_size": args.step_size, "max_clients": max_clients,
                "concurrent": args.concurrent, "sample_size": args.sample_size,
                "padding": args.padding, "limit_percentile": args.limit_percentile,
                "limit_rtt_ms": args.limit_rtt_ms, "threads": args.threads,
                "sources": args.sources, "steps": self.steps,
                "clients_within_limit": self.best, "stopped": stop.name(),
                "missing": self.total.missing, "extra": self.total.extra,
                "unexpected": self.total.unexpected, "connect_failed": connect_failed,
                "lost": lost, "error": first_error, "cpu_percent": cpu_percent.round(),
            })
        );
        Ok(stop.clean()
            && !generator_failed
            && self.steps > 0
            && self.total.clean()
            && connect_failed == 0
            && lost == 0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn steps_grow_to_the_ceiling() {
        let steps: Vec<usize> = (1..=4).map(|k| step_clients(k, 1000, 2500)).collect();
        assert_eq!(steps, [1000, 2000, 2500, 2500]);
        assert_eq!(step_clients(usize::MAX, 2, 10), 10);
    }

    #[test]
    fn percentiles_are_nearest_rank() {
        let mut v: Vec<u64> = (1..=80).rev().collect();
        let r = Rtt::of(&mut v, 95.0).unwrap();
        assert_eq!(r, Rtt { min: 1, p50: 40, at_limit: 76, max: 80 });
        assert_eq!(percentile(&[7], 95.0), 7);
        assert_eq!(percentile(&[1, 2], 100.0), 2);
        assert_eq!(percentile(&[1, 2], 0.1), 1);
        assert_eq!(Rtt::of(&mut [], 95.0), None);
    }

    #[test]
    fn tallies_count_missing_and_extra_per_client() {
        let mut t = Tally::default();
        t.client(80, 80);
        assert!(t.clean());
        t.client(78, 80);
        t.client(81, 80);
        t.client(0, 80);
        assert_eq!(
            t,
            Tally {
                missing: 82,
                extra: 1,
                unexpected: 0
            }
        );
        let mut sum = Tally::default();
        sum.add(t);
        sum.add(Tally {
            unexpected: 2,
            ..Tally::default()
        });
        assert_eq!((sum.missing, sum.extra, sum.unexpected), (82, 1, 2));
    }

    #[test]
    fn receivers_count_broadcasts_only() {
        let (mut count, mut complete, mut unexpected) = (0u64, 0usize, 0u64);
        let mut v = Count {
            count: &mut count,
            expect: 2,
            complete: &mut complete,
            unexpected: &mut unexpected,
        };
        let b = br#"{"type":"broadcast","payload":{"sendTime":"1"}}"#;
        let r = br#"{"type":"broadcastResult","payload":{"sendTime":"1"}}"#;
        v.message(true, Payload::Assembled(b.to_vec()));
        v.message(true, Payload::Assembled(r.to_vec()));
        v.message(false, Payload::Assembled(b.to_vec()));
        v.message(true, Payload::Assembled(b.to_vec()));
        v.message(true, Payload::Assembled(b.to_vec()));
        assert_eq!((count, complete, unexpected), (3, 1, 2));
    }

    #[test]
    fn senders_time_their_own_results() {
        let mut st = SenderState {
            left: 1,
            waiting_since: Some(Instant::now()),
            ..SenderState::default()
        };
        let (mut rtts, mut unexpected) = (Vec::new(), 0u64);
        let sent = unix_ns() - 3_000_000;
        let mut v = SenderVisitor {
            st: &mut st,
            rtts_us: &mut rtts,
            unexpected: &mut unexpected,
        };
        let mut own = Vec::new();
        shootout_broadcast(&mut own, sent, "12");
        v.message(true, Payload::Assembled(own.clone()));
        let result = String::from_utf8(own)
            .unwrap()
            .replacen("\"broadcast\"", "\"broadcastResult\"", 1);
        v.message(true, Payload::Assembled(result.clone().into_bytes()));
        // A second result while nothing is awaited is unexpected.
        v.message(true, Payload::Assembled(result.into_bytes()));
        assert_eq!(st.received, 1);
        assert!(st.result_in && st.waiting_since.is_none());
        assert_eq!(unexpected, 1);
        assert_eq!(rtts.len(), 1);
        assert!((3_000..1_000_000).contains(&rtts[0]), "{rtts:?}");
    }
}
