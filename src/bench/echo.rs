//! `throng bench echo`: round trips with K messages in flight per connection.
//!
//! Each thread runs its own mio loop over its share of the connections. A reply must
//! match what was sent in type, length and content (echo keeps order, so in-flight send
//! times form a FIFO per connection). Only replies that arrive inside the measured
//! window (after `--warmup`) count.

use std::collections::VecDeque;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};

use crate::ws::CloseCode;
use crate::ws::frame::OpCode;
use crate::ws::reader::{Payload, Visitor};

use super::client::{Client, Phase, XorShift};
use super::report::{CpuMeter, Target, parse_target};

#[derive(clap::Args, Debug, Clone)]
pub struct EchoArgs {
    /// Target, e.g. ws://127.0.0.1:8080/ (loopback only).
    #[arg(long)]
    pub url: String,
    /// Connections.
    #[arg(long, default_value_t = 100)]
    pub conns: usize,
    /// Payload bytes per message.
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Messages in flight per connection.
    #[arg(long, default_value_t = 1)]
    pub inflight: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Seconds of traffic before measuring.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Send binary messages (default: text).
    #[arg(long)]
    pub binary: bool,
    /// Generator threads, each with its own event loop.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
}

struct Outcome {
    hist: Histogram<u64>,
    messages: u64,
    bad_replies: u64,
    errors: u64,
    connected: usize,
}

/// Connects, runs, reports. `Ok(false)` when replies were wrong or nothing connected.
pub fn run(args: &EchoArgs) -> Result<bool, String> {
    let target = parse_target(&args.url)?;
    if args.conns == 0 || args.inflight == 0 || args.secs == 0 {
        return Err("--conns, --inflight and --secs must be > 0".into());
    }
    if args.conns > super::connect::MAX_CONNS {
        return Err(format!(
            "--conns {} exceeds what one process can open here ({})",
            args.conns,
            super::connect::MAX_CONNS
        ));
    }
    let _ = crate::runtime::system::raise_fd_limit();
    let threads = args.threads.clamp(1, args.conns);
    let cpu = CpuMeter::start();
    let start = Instant::now() + Duration::from_millis(200);
    let measure_from = start + Duration::from_secs(args.warmup);
    let until = measure_from + Duration::from_secs(args.secs);
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let share = args.conns / threads + usize::from(i < args.conns % threads);
            let (target, args) = (target.clone(), args.clone());
            thread::spawn(move || run_thread(&target, &args, share, i as u64, measure_from, until))
        })
        .collect();
    let mut total = Outcome {
        hist: new_histogram(),
        messages: 0,
        bad_replies: 0,
        errors: 0,
        connected: 0,
    };
    for h in handles {
        let o = h
            .join()
            .map_err(|_| "a generator thread panicked".to_string())?
            .map_err(|e| format!("generator thread failed: {e}"))?;
        let _ = total.hist.add(&o.hist);
        total.messages += o.messages;
        total.bad_replies += o.bad_replies;
        total.errors += o.errors;
        total.connected += o.connected;
    }
    let cpu_percent = cpu.percent();
    let rate = total.messages as f64 / args.secs as f64;
    let q = |p: f64| total.hist.value_at_quantile(p);
    eprintln!(
        "echo {}: {} conns x {} B, {} in flight, {} s: {:.0} msgs/s, p50 {} us, p99 {} us, \
         p99.9 {} us, max {} us; {} connected, {} bad replies, {} errors; generator CPU {:.0}%",
        args.url,
        args.conns,
        args.size,
        args.inflight,
        args.secs,
        rate,
        q(0.5),
        q(0.99),
        q(0.999),
        total.hist.max(),
        total.connected,
        total.bad_replies,
        total.errors,
        cpu_percent
    );
    println!(
        "{}",
        serde_json::json!({
            "mode": "echo", "url": args.url, "conns": args.conns, "size": args.size,
            "inflight": args.inflight, "secs": args.secs, "threads": threads,
            "messages": total.messages, "msgs_per_sec": rate.round(),
            "p50_us": q(0.5), "p99_us": q(0.99), "p999_us": q(0.999), "max_us": total.hist.max(),
            "connected": total.connected, "errors": total.errors,
            "bad_replies": total.bad_replies, "cpu_percent": cpu_percent.round(),
        })
    );
    Ok(total.bad_replies == 0 && total.connected == args.conns && total.messages > 0)
}

fn new_histogram() -> Histogram<u64> {
    Histogram::new_with_bounds(1, 60_000_000, 3).expect("static histogram bounds are valid")
}

struct Conn {
    client: Client,
    sent: VecDeque<Instant>,
}

/// Counts and checks replies for one read.
struct Replies<'a> {
    expect_text: bool,
    payload: &'a [u8],
    ok: u32,
    bad: u32,
    closed: bool,
}

impl Visitor for Replies<'_> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        if text == self.expect_text && payload.as_slice() == self.payload {
            self.ok += 1;
        } else {
            self.bad += 1;
        }
    }
    fn ping(&mut self, _: &[u8]) {}
    fn pong(&mut self, _: &[u8]) {}
    fn close(&mut self, _: Option<CloseCode>, _: &str) {
        self.closed = true;
    }
}

fn run_thread(
    target: &Target,
    args: &EchoArgs,
    conns: usize,
    seed: u64,
    measure_from: Instant,
    until: Instant,
) -> io::Result<Outcome> {
    let mut rng = XorShift::seeded(0x9E37_79B9_7F4A_7C15 ^ (seed + 1) ^ nanos());
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let payload = vec![b'x'; args.size];
    let op = if args.binary {
        OpCode::Binary
    } else {
        OpCode::Text
    };
    let mut out = Outcome {
        hist: new_histogram(),
        messages: 0,
        bad_replies: 0,
        errors: 0,
        connected: 0,
    };
    let mut conns_v: Vec<Option<Conn>> = Vec::with_capacity(conns);
    for i in 0..conns {
        let mut client = Client::connect(target, None, &mut rng)?;
        poll.registry().register(
            &mut client.stream,
            Token(i),
            Interest::READABLE | Interest::WRITABLE,
        )?;
        conns_v.push(Some(Conn {
            client,
            sent: VecDeque::with_capacity(args.inflight),
        }));
    }
    let mut scratch = vec![0u8; 256 << 10];
    let connect_deadline = Instant::now() + Duration::from_secs(10);
    let hard_stop = until + Duration::from_secs(5);
    let mut open = 0usize;
    loop {
        let now = Instant::now();
        if now >= until || now >= hard_stop {
            break;
        }
        if open < conns && now >= connect_deadline {
            return Err(io::Error::other(format!(
                "only {open} of {conns} connections opened within 10 s"
            )));
        }
        poll.poll(&mut events, Some(Duration::from_millis(50)))?;
        for event in events.iter() {
            let i = event.token().0;
            let Some(conn) = conns_v[i].as_mut() else {
                continue;
            };
            let was_open = conn.client.phase == Phase::Open;
            let mut replies = Replies {
                expect_text: !args.binary,
                payload: &payload,
                ok: 0,
                bad: 0,
                closed: false,
            };
            let alive = match conn.client.read(&mut scratch, &mut replies) {
                Ok(alive) => alive && !replies.closed,
                Err(e) => {
                    tracing::debug!(error = %e, "connection failed");
                    false
                }
            };
            let now = Instant::now();
            if !was_open && conn.client.phase == Phase::Open {
                open += 1;
                out.connected += 1;
                for _ in 0..args.inflight {
                    conn.client.queue_frame(op, &payload, &mut rng);
                    conn.sent.push_back(now);
                }
            }
            out.bad_replies += u64::from(replies.bad);
            for _ in 0..replies.ok + replies.bad {
                let Some(sent) = conn.sent.pop_front() else {
                    out.bad_replies += 1; // a reply to nothing
                    continue;
                };
                if now >= measure_from && now < until {
                    out.messages += 1;
                    let _ = out
                        .hist
                        .record(now.duration_since(sent).as_micros().max(1) as u64);
                }
                if now < until {
                    conn.client.queue_frame(op, &payload, &mut rng);
                    conn.sent.push_back(now);
                }
            }
            if !alive || conn.client.flush().is_err() {
                out.errors += 1;
                if was_open || conn.client.phase == Phase::Open {
                    open -= 1;
                }
                conns_v[i] = None;
            }
        }
    }
    Ok(out)
}

fn nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
