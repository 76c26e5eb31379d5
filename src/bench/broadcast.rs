//! `throng bench broadcast`: the websocket-shootout method. Clients are added a step at a
//! time; after each step `--concurrent` sender clients each broadcast `--sample-size`
//! times, one at a time (send, wait for `broadcastResult`, send the next), and the
//! broadcast round trip (RTT = arrival of `broadcastResult` − the `sendTime` inside the
//! payload) is sampled. The run stops when the `--limit-percentile` RTT exceeds
//! `--limit-rtt-ms`, or at `--max-clients`, and reports the largest client count held
//! within the limit.
//!
//! Threads: the senders (`senders.rs`) live on the calling thread; the other clients
//! are spread over `--threads` receiver threads (`receivers.rs`), each a fleet driven by
//! commands ([`Cmd`]) and publishing its progress in atomics ([`Progress`]).
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

mod receivers;
mod senders;

use std::io;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver};
use std::time::{Duration, Instant};

use super::fleet::{CONNECT_TIMEOUT, Counts};
use super::report::{CpuMeter, parse_target};
use super::sio::{ClientProto, Transport, check_transport};
use receivers::{Cmd, Progress, Receivers, Reply, Tally};
use senders::{RESULT_TIMEOUT, SenderState, Senders};

/// A step's connects must all finish within this.
const OPEN_BUDGET: Duration = Duration::from_secs(120);
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
    /// Wire protocol: `ws` (the shootout's JSON), or `socketio` (the sio-shootout
    /// contract at /socket.io/ on the URL's host and port: `42["broadcast",X]` to every
    /// client, `42["broadcastResult",X]` to the sender).
    #[arg(long, value_enum, default_value = "ws")]
    pub proto: ClientProto,
    /// Socket.IO transport: `websocket` only here (`polling`: `bench connect` only).
    #[arg(long, value_enum, default_value = "websocket")]
    pub transport: Transport,
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
    check_transport("broadcast", args.proto, args.transport)?;
    let target = parse_target(&args.url)?.speaking(args.proto);
    let max_clients = check(args)?;
    let run_cpu = CpuMeter::start();
    let senders = Senders::new(&target, args.sources, args.padding).map_err(|e| e.to_string())?;
    let (reply_tx, replies) = mpsc::channel();
    let threads = (0..args.threads)
        .map(|i| Receivers::spawn(i, &target, args.sources, &reply_tx))
        .collect::<Result<Vec<_>, _>>()?;
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
    fn wait(
        &mut self,
        budget: Duration,
        mut done: impl FnMut(&mut Self) -> bool,
    ) -> io::Result<bool> {
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
        self.senders
            .fleet
            .dial(args.concurrent, SenderState::default);
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
                run.senders
                    .fleet
                    .dial(args.concurrent, SenderState::default);
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
                self.error(format!(
                    "step {k}: a receiver thread did not confirm its reset"
                ));
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
            self.report_step(
                k, clients, samples, rtt, within, tally, sampling, settled, &cpu,
            );
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
            if within {
                "within the limit"
            } else {
                "over the limit"
            },
            t.missing,
            t.extra,
            t.unexpected,
            if settled {
                ""
            } else {
                " (counts did not settle)"
            },
        );
        println!(
            "{}",
            serde_json::json!({
                "mode": "broadcast", "kind": "step", "url": args.url,
                "wire": args.proto.name(), "step": k,
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
            "broadcast {}{}: {} clients held within p{} <= {} ms (steps of {}, up to {}, {} \
             senders x {} samples, {} B padding, {} receiver thread(s)); stopped: {}; {} \
             steps, {} missing, {} extra, {} unexpected, {} connects failed, {} lost; \
             generator CPU {cpu_percent:.0}%",
            args.url,
            if args.proto == ClientProto::Socketio {
                " (socketio)"
            } else {
                ""
            },
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
                "wire": args.proto.name(),
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
        assert_eq!(
            r,
            Rtt {
                min: 1,
                p50: 40,
                at_limit: 76,
                max: 80
            }
        );
        assert_eq!(percentile(&[7], 95.0), 7);
        assert_eq!(percentile(&[1, 2], 100.0), 2);
        assert_eq!(percentile(&[1, 2], 0.1), 1);
        assert_eq!(Rtt::of(&mut [], 95.0), None);
    }
}
