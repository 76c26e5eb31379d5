//! `throng bench fanout`: one publisher, N subscribers, deliveries per second.
//!
//! N connections subscribe (`--mode pubsub`: `subscribe` to `--topic` and wait for every
//! `subscribed` ack; `--mode shootout`: every connected client receives each broadcast,
//! so the subscribers are all clients but the publisher, which also receives its own
//! broadcasts and counts them separately). Then one publisher keeps at most `--window`
//! publishes unacknowledged (`published` with the id, or `broadcastResult`) for
//! `--warmup` + `--secs` seconds. Each payload is a [`Stamped`](super::json::Stamped)
//! JSON string of `--size` bytes carrying its sequence number and send time.
//!
//! With `--proto socketio` the protocol is the shootout over Socket.IO (`--app
//! sio-shootout`): `42["broadcast",X]` to every client, `42["broadcastResult",X]` as the
//! ack; the figures are the same.
//!
//! With `--pub-url` (`--proto socketio` only) the publisher connects to that server and
//! the subscribers to `--url`: every delivery crosses from one server to another (two
//! hosts of one Redis bus: `throng serve --redis-url`, Node's redis-adapter), while the
//! publisher still gets its own broadcasts from its server. Latency is still receive
//! time − send time on the generator's one clock.
//!
//! Threads: the publisher (`publisher.rs`) runs on the calling thread; subscribers are
//! spread over `--threads` threads (`subscriber.rs`), each a [`Fleet`] that shares only
//! atomics ([`Shared`]) with the publisher and hands its [`SubStats`] back when joined.
//! With `--max-lag` the publisher also waits while the subscribers trail it by that many
//! publishes: a server may ack before it delivers (throng's shootout acks once the other
//! cores were handed the broadcast), and the window alone would then let deliveries
//! pile up until the server drops slow subscribers.
//!
//! Invariants:
//! - The receive path allocates nothing per message: frames are parsed in place by the
//!   codec's `Reader` (client role), recognised by prefix and a fixed-position stamp,
//!   and recorded in a per-subscriber bit set ([`SeqSet`]) and a per-thread histogram;
//!   the clock and the shared counters are read once per 64 deliveries.
//! - Latency is receive time − send time on one monotonic clock (the run's base
//!   `Instant`); only deliveries received inside the measured window count towards the
//!   rate and the percentiles; every delivery counts towards loss and duplicates.
//! - A sequence number is accepted only below the count of publishes queued so far, so
//!   a bit set never grows past what was published.
//! - Publishing starts only once every subscriber is subscribed or failed; one that is
//!   not subscribed by then is failed, so the expected deliveries are exactly
//!   subscribed × published.
//! - Everything is bounded: connects and subscribes ([`CONNECT_TIMEOUT`], [`OPEN_BUDGET`]),
//!   the run (warmup + secs), an ack that does not come ([`ACK_TIMEOUT`]), the drain
//!   ([`DRAIN`]) and every wait for a thread ([`THREAD_TIMEOUT`]).

mod publisher;
mod subscriber;

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;

use super::client::{Client, XorShift};
use super::fleet::{CONNECT_TIMEOUT, Fleet};
use super::json::{MIN_STAMPED, Proto, Publish, SeqSet, queue_text};
use super::report::{CpuMeter, Target, latency_histogram, parse_target};
use super::sio::{ClientProto, Transport, check_transport};
use publisher::{Gen, PubState, Publisher};
use subscriber::{Progress, SubStats};

/// All subscribers must be subscribed (or failed) within this.
const OPEN_BUDGET: Duration = Duration::from_secs(120);
/// The publisher fails when no ack came for this long while publishes were outstanding.
const ACK_TIMEOUT: Duration = Duration::from_secs(10);
/// After the last publish, deliveries and acks are awaited this long at most.
const DRAIN: Duration = Duration::from_secs(5);
/// How long the publisher waits for every thread to see the start.
const THREAD_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest `--size` (the reader's limit is 64 MiB).
const MAX_SIZE: usize = 16 << 20;
/// Largest `--window`.
const MAX_WINDOW: usize = 1 << 20;

#[derive(clap::Args, Debug, Clone)]
pub struct FanoutArgs {
    /// Target, e.g. ws://127.0.0.1:8080/ (loopback only).
    #[arg(long)]
    pub url: String,
    /// The protocol the server speaks (default pubsub; over --proto socketio only the
    /// shootout exists, and is the default).
    #[arg(long, value_enum)]
    pub mode: Option<Proto>,
    /// The topic subscribed to and published on (pubsub).
    #[arg(long, default_value = "bench")]
    pub topic: String,
    /// Subscriber connections (shootout: every client but the publisher).
    #[arg(long, default_value_t = 1000)]
    pub subscribers: usize,
    /// Publishes in flight (not yet acknowledged) at most.
    #[arg(long, default_value_t = 64)]
    pub window: usize,
    /// Publishes the subscribers may trail the publisher by (per thread, on average per
    /// subscriber), 0 for no bound. A server may ack before it delivers (throng's
    /// shootout acks once the other cores were handed the broadcast), so the window
    /// alone does not bound what queues up for the subscribers: about max-lag x
    /// subscribers deliveries, which sets the latency a run can show.
    #[arg(long, default_value_t = 1024)]
    pub max_lag: u64,
    /// Bytes of the published payload (a JSON string with a sequence number and send
    /// time; at least 35).
    #[arg(long, default_value_t = 64)]
    pub size: usize,
    /// Measured seconds.
    #[arg(long, default_value_t = 10)]
    pub secs: u64,
    /// Seconds of publishing before measuring.
    #[arg(long, default_value_t = 1)]
    pub warmup: u64,
    /// Subscriber threads, each with its own event loop and share of the subscribers.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Source addresses to spread over: 127.0.0.2 .. 127.0.0.(K+1); 0 lets the kernel pick.
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
    /// Wire protocol: `ws`, or `socketio` (the sio-shootout contract at /socket.io/ on the
    /// URL's host and port).
    #[arg(long, value_enum, default_value = "ws")]
    pub proto: ClientProto,
    /// Socket.IO transport: `websocket` only here (`polling`: `bench connect` only).
    #[arg(long, value_enum, default_value = "websocket")]
    pub transport: Transport,
    /// Publish on another server than the subscribers' (loopback only): the publisher
    /// connects here, the subscribers to --url, so every delivery crosses between two
    /// hosts of one bus (`throng serve --redis-url`, Node's redis-adapter). Needs
    /// `--proto socketio`.
    #[arg(long, value_name = "URL")]
    pub pub_url: Option<String>,
}

impl FanoutArgs {
    /// The fan-out protocol: `--mode` (default pubsub) over WebSocket; over Socket.IO
    /// the shootout, the only one it has.
    fn fan_proto(&self) -> Result<Proto, String> {
        match (self.proto, self.mode) {
            (ClientProto::Ws, Some(Proto::SioShootout)) => Ok(Proto::Shootout),
            (ClientProto::Ws, mode) => Ok(mode.unwrap_or(Proto::Pubsub)),
            (ClientProto::Socketio, Some(Proto::Pubsub)) => {
                Err("--mode pubsub does not exist over --proto socketio (the shootout does)".into())
            }
            (ClientProto::Socketio, _) => Ok(Proto::SioShootout),
        }
    }

    /// Where the publisher connects: `--pub-url`, or the subscribers' `target`.
    fn publisher_target(&self, target: &Target) -> Result<Target, String> {
        let Some(url) = &self.pub_url else {
            return Ok(target.clone());
        };
        if self.proto != ClientProto::Socketio {
            return Err(
                "--pub-url needs --proto socketio: it publishes on one host of a \
                        Socket.IO bus (throng --redis-url, Node's redis-adapter) and \
                        receives on another; throng's WebSocket apps have no bus between \
                        hosts"
                    .into(),
            );
        }
        parse_target(url)
            .map(|t| t.speaking(self.proto))
            .map_err(|e| format!("--pub-url {e}"))
    }
}

/// What the publisher and the subscriber threads share: atomics only.
#[derive(Debug)]
struct Shared {
    /// The run's clock: send and receive times are nanoseconds since this.
    base: Instant,
    /// The measured window, in ns since `base`; `u64::MAX` until publishing starts.
    measure_from_ns: AtomicU64,
    until_ns: AtomicU64,
    /// Publishes queued so far: valid sequence numbers are below it.
    sent: AtomicU64,
    /// Set once, when every subscriber has settled: unsubscribed ones are failed.
    publishing: AtomicBool,
    stop: AtomicBool,
    threads: Vec<Progress>,
    /// The publisher waits for the subscribers (`--max-lag`): the next thread whose
    /// deliveries per subscriber reach `lag_wanted` clears this and wakes it.
    lag_stalled: AtomicBool,
    /// The deliveries per subscriber a stalled publisher waits for (stored before
    /// `lag_stalled` is set).
    lag_wanted: AtomicU64,
    publisher: Option<mio::Waker>,
}

impl Shared {
    fn now_ns(&self) -> u64 {
        self.base.elapsed().as_nanos() as u64
    }

    /// Called by a subscriber thread after it stored its progress `p` (SeqCst on both
    /// sides, see `Gen::top_up`): wakes a publisher waiting on `--max-lag` once this
    /// thread has what it waits for. A thread still short of it, or with no subscriber,
    /// leaves it asleep: waking it would only stall it again (one wake per read
    /// otherwise, a storm of them with one broadcast at a time).
    fn wake_if_stalled(&self, p: &Progress) {
        if !self.lag_stalled.load(Ordering::SeqCst) {
            return;
        }
        let ready = p.ready.load(Ordering::SeqCst) as u64;
        if ready == 0
            || p.distinct.load(Ordering::SeqCst) / ready < self.lag_wanted.load(Ordering::SeqCst)
        {
            return;
        }
        if self.lag_stalled.swap(false, Ordering::SeqCst)
            && let Some(w) = &self.publisher
        {
            let _ = w.wake();
        }
    }
}

fn queue(client: &mut Client, payload: &[u8], rng: &mut XorShift) {
    queue_text(client.out(), payload, (rng.next() as u32).to_ne_bytes());
}

fn check(args: &FanoutArgs) -> Result<(), String> {
    if args.subscribers == 0 || args.window == 0 || args.secs == 0 {
        return Err("--subscribers, --window and --secs must be > 0".into());
    }
    if !(MIN_STAMPED..=MAX_SIZE).contains(&args.size) {
        return Err(format!("--size must be {MIN_STAMPED}..={MAX_SIZE}"));
    }
    if args.window > MAX_WINDOW {
        return Err(format!("--window must be at most {MAX_WINDOW}"));
    }
    if args.secs + args.warmup > 24 * 3600 {
        return Err("--secs plus --warmup must stay under a day".into());
    }
    if args.sources > 250 {
        return Err("--sources must be 0..=250".into());
    }
    if args.threads == 0 || args.threads > 64 {
        return Err("--threads must be 1..=64".into());
    }
    if args.topic.is_empty() || args.topic.len() > 1024 {
        return Err("--topic must be 1..=1024 bytes".into());
    }
    let limit = crate::runtime::system::raise_fd_limit().map_err(|e| e.to_string())?;
    if (args.subscribers as u64) + 1 + 64 > limit {
        return Err(format!(
            "--subscribers {} needs more file descriptors than this process may open ({limit})",
            args.subscribers
        ));
    }
    Ok(())
}

/// Subscribes, publishes, drains, reports. `Ok(false)` when a delivery was lost,
/// duplicated, out of order or unexpected, an ack is missing, a connection failed, or
/// nothing was measured.
pub fn run(args: &FanoutArgs) -> Result<bool, String> {
    check_transport("fanout", args.proto, args.transport)?;
    let fan = args.fan_proto()?;
    let target = parse_target(&args.url)?.speaking(args.proto);
    let pub_target = args.publisher_target(&target)?;
    check(args)?;
    let threads = args.threads.min(args.subscribers);
    let publisher_fleet =
        Fleet::new(pub_target, args.sources, 0x9B15_4E12).map_err(|e| e.to_string())?;
    let shared = Arc::new(Shared {
        base: Instant::now(),
        measure_from_ns: AtomicU64::new(u64::MAX),
        until_ns: AtomicU64::new(u64::MAX),
        sent: AtomicU64::new(0),
        publishing: AtomicBool::new(false),
        stop: AtomicBool::new(false),
        threads: (0..threads).map(|_| Progress::default()).collect(),
        lag_stalled: AtomicBool::new(false),
        lag_wanted: AtomicU64::new(0),
        publisher: Some(publisher_fleet.waker().map_err(|e| e.to_string())?),
    });
    let mut handles = Vec::with_capacity(threads);
    for i in 0..threads {
        let share = args.subscribers / threads + usize::from(i < args.subscribers % threads);
        match subscriber::spawn(i, share, &target, args, fan, shared.clone()) {
            Ok(h) => handles.push(h),
            Err(e) => {
                // The threads started so far end at once.
                shared.stop.store(true, Ordering::Release);
                return Err(e);
            }
        }
    }
    let mut publisher = Publisher {
        fleet: publisher_fleet,
        generator: Gen {
            proto: fan,
            publish: Publish::new(fan, &args.topic, args.size),
            buf: Vec::new(),
            window: args.window as u64,
            max_lag: args.max_lag,
            shared: shared.clone(),
        },
    };
    let outcome = publish(args, &mut publisher, &shared);
    shared.stop.store(true, Ordering::Release);
    let mut subs = SubStats::new();
    let mut generator_error = outcome.as_ref().err().map(|e| format!("publisher: {e}"));
    for h in handles {
        match h.join() {
            Ok(Ok(s)) => subs.add(s),
            Ok(Err(e)) => {
                generator_error.get_or_insert(format!("subscriber thread failed: {e}"));
            }
            Err(_) => {
                generator_error.get_or_insert("a subscriber thread panicked".to_string());
            }
        }
    }
    let timing = outcome.unwrap_or_default();
    Ok(report(
        args,
        threads,
        &mut publisher,
        subs,
        timing,
        generator_error,
    ))
}

/// How the publishing phase went.
#[derive(Debug, Default)]
struct Timing {
    /// Subscribers subscribed when publishing started.
    ready: usize,
    drain: Duration,
    drained: bool,
    cpu_percent: f64,
    /// Why publishing stopped early, if it did.
    aborted: Option<String>,
}

/// Waits for the subscribers, publishes for warmup + secs, drains.
fn publish(args: &FanoutArgs, p: &mut Publisher, shared: &Shared) -> io::Result<Timing> {
    let mut timing = Timing::default();
    p.fleet.dial(1, || PubState {
        sent: 0,
        acks: SeqSet::default(),
        own: SeqSet::default(),
        own_duplicates: 0,
        lag_stalls: 0,
        in_flight: vec![(u64::MAX, 0); args.window],
        ack_hist: latency_histogram(),
        in_window: 0,
        unexpected: 0,
        errors: 0,
        first_error: None,
        progress_at: Instant::now(),
    });
    let settled = |s: &Shared| -> usize {
        s.threads
            .iter()
            .map(|t| t.settled.load(Ordering::Relaxed))
            .sum()
    };
    let deadline = Instant::now() + OPEN_BUDGET + CONNECT_TIMEOUT;
    loop {
        let c = &p.fleet.counts;
        let publisher_settled = c.opened + c.connect_failed > 0;
        if publisher_settled && settled(shared) >= args.subscribers {
            break;
        }
        if Instant::now() >= deadline {
            break;
        }
        p.fleet.expire(Instant::now());
        p.pump(Duration::from_millis(10))?;
    }
    shared.publishing.store(true, Ordering::Release);
    let deadline = Instant::now() + THREAD_TIMEOUT;
    while !shared
        .threads
        .iter()
        .all(|t| t.started.load(Ordering::Acquire))
    {
        if Instant::now() >= deadline {
            timing.aborted = Some("a subscriber thread did not see the start".into());
            return Ok(timing);
        }
        p.pump(Duration::from_millis(5))?;
    }
    timing.ready = shared
        .threads
        .iter()
        .map(|t| t.ready.load(Ordering::Relaxed))
        .sum();
    if p.fleet.counts.open() == 0 {
        timing.aborted = Some("the publisher could not connect".into());
        return Ok(timing);
    }
    if timing.ready == 0 {
        timing.aborted = Some("no subscriber subscribed".into());
        return Ok(timing);
    }
    let start = shared.now_ns();
    let measure_from = start + args.warmup * 1_000_000_000;
    let until = measure_from + args.secs * 1_000_000_000;
    shared
        .measure_from_ns
        .store(measure_from, Ordering::Release);
    shared.until_ns.store(until, Ordering::Release);
    let cpu = CpuMeter::start();
    p.top_up();
    loop {
        let now = shared.now_ns();
        if now >= until {
            break;
        }
        if p.fleet.counts.open() == 0 {
            timing.aborted = Some("the publisher connection was lost".into());
            break;
        }
        let stalled = p.with(|st| st.outstanding() > 0 && st.progress_at.elapsed() > ACK_TIMEOUT);
        if stalled == Some(true) {
            timing.aborted = Some(format!("no ack for {ACK_TIMEOUT:?}"));
            break;
        }
        p.pump(Duration::from_nanos(until - now).min(Duration::from_millis(50)))?;
    }
    timing.cpu_percent = cpu.percent();
    let drain_from = Instant::now();
    let expected_own = p.generator.proto.is_shootout();
    loop {
        let done = p.with(|st| {
            let expected = st.sent * timing.ready as u64;
            let received: u64 = shared
                .threads
                .iter()
                .map(|t| t.distinct.load(Ordering::Relaxed))
                .sum();
            st.acks.len() == st.sent
                && received >= expected
                && (!expected_own || st.own.len() == st.sent)
        });
        if done != Some(false) {
            timing.drained = done == Some(true);
            break;
        }
        if drain_from.elapsed() >= DRAIN {
            break;
        }
        p.pump(Duration::from_millis(5))?;
    }
    timing.drain = drain_from.elapsed();
    Ok(timing)
}

fn report(
    args: &FanoutArgs,
    threads: usize,
    p: &mut Publisher,
    subs: SubStats,
    timing: Timing,
    generator_error: Option<String>,
) -> bool {
    // The publisher's state, or an empty one when it never connected (or was lost).
    struct Pub {
        sent: u64,
        in_window: u64,
        acks: u64,
        own: u64,
        own_duplicates: u64,
        lag_stalls: u64,
        unexpected: u64,
        errors: u64,
        ack: [u64; 3],
        first_error: Option<String>,
    }
    let fan = p.generator.proto;
    let shootout = fan.is_shootout();
    let pb = p
        .with(|st| Pub {
            sent: st.sent,
            in_window: st.in_window,
            acks: st.acks.len(),
            own: st.own.len(),
            own_duplicates: st.own_duplicates,
            lag_stalls: st.lag_stalls,
            unexpected: st.unexpected,
            errors: st.errors,
            ack: [
                quantile(&st.ack_hist, 0.5),
                quantile(&st.ack_hist, 0.99),
                st.ack_hist.max(),
            ],
            first_error: st.first_error.clone(),
        })
        .unwrap_or(Pub {
            // Lost mid-run: what it sent is unknown here, but the subscribers saw it.
            sent: p.generator.shared.sent.load(Ordering::Relaxed),
            in_window: 0,
            acks: 0,
            own: 0,
            own_duplicates: 0,
            lag_stalls: 0,
            unexpected: 0,
            errors: 0,
            ack: [0; 3],
            first_error: None,
        });
    let expected = pb.sent * timing.ready as u64;
    let lost = expected.saturating_sub(subs.distinct);
    let missing_acks = pb.sent - pb.acks.min(pb.sent);
    let own_missing = if shootout {
        pb.sent - pb.own.min(pb.sent)
    } else {
        0
    };
    let secs = args.secs as f64;
    let rate = subs.in_window as f64 / secs;
    let h = &subs.hist;
    let lat = [
        quantile(h, 0.5),
        quantile(h, 0.95),
        quantile(h, 0.99),
        h.max(),
    ];
    let pc = &p.fleet.counts;
    let connect_failed = subs.failed_unready + pc.connect_failed;
    let conns_lost = subs.lost_ready + pc.lost;
    // The first two distinct errors: why the run stopped, and what a connection saw.
    let mut errors: Vec<String> = Vec::new();
    for e in [
        &generator_error,
        &timing.aborted,
        &pb.first_error,
        &subs.first_error,
        &pc.first_error,
    ]
    .into_iter()
    .flatten()
    {
        if errors.len() < 2 && !errors.contains(e) {
            errors.push(e.clone());
        }
    }
    let first_error = (!errors.is_empty()).then(|| errors.join("; then: "));
    let proto = fan.name();
    eprintln!(
        "fanout {}{} ({proto}{}): {} of {} subscribers, window {}, max lag {} ({} stalls), {} \
         B, {} s (+{} s warmup), {} thread(s): {:.0} deliveries/s ({:.0} publishes/s), latency p50 {} us, p95 {} us, \
         p99 {} us, max {} us; ack p50 {} us, p99 {} us; {} lost, {} duplicate, {} out of \
         order, {} unexpected, {} server errors, {} acks missing{}; {} connects failed, {} \
         connections lost; drained in {} ms; generator CPU {:.0}%",
        args.url,
        match &args.pub_url {
            Some(u) => format!(" (publisher on {u})"),
            None => String::new(),
        },
        if shootout {
            String::new()
        } else {
            format!(", topic {}", args.topic)
        },
        timing.ready,
        args.subscribers,
        args.window,
        args.max_lag,
        pb.lag_stalls,
        args.size,
        args.secs,
        args.warmup,
        threads,
        rate,
        pb.in_window as f64 / secs,
        lat[0],
        lat[1],
        lat[2],
        lat[3],
        pb.ack[0],
        pb.ack[1],
        lost,
        subs.duplicates,
        subs.out_of_order,
        subs.unexpected + pb.unexpected,
        subs.errors + pb.errors,
        missing_acks,
        if shootout {
            format!(
                ", publisher got {} of its {} broadcasts ({} duplicate)",
                pb.own, pb.sent, pb.own_duplicates
            )
        } else {
            String::new()
        },
        connect_failed,
        conns_lost,
        timing.drain.as_millis(),
        timing.cpu_percent,
    );
    if let Some(e) = &first_error {
        eprintln!("fanout: first error: {e}");
    }
    if timing.cpu_percent > 90.0 * (threads + 1) as f64 {
        eprintln!(
            "fanout: the generator used {:.0}% CPU with {threads} subscriber thread(s): it may \
             be the bottleneck (try --threads, or compare the server's CPU use)",
            timing.cpu_percent
        );
    }
    let mut line = serde_json::json!({
        "mode": "fanout", "proto": proto, "wire": args.proto.name(), "url": args.url,
        "pub_url": args.pub_url,
        "topic": if shootout { None } else { Some(&args.topic) },
        "subscribers": args.subscribers, "subscribed": timing.ready,
        "window": args.window, "max_lag": args.max_lag, "lag_stalls": pb.lag_stalls,
        "size": args.size, "secs": args.secs,
        "warmup": args.warmup, "threads": threads,
        "publishes": pb.sent, "publishes_per_sec": (pb.in_window as f64 / secs).round(),
        "deliveries": subs.in_window, "deliveries_per_sec": rate.round(),
        "p50_us": lat[0], "p95_us": lat[1], "p99_us": lat[2], "max_us": lat[3],
        "ack_p50_us": pb.ack[0], "ack_p99_us": pb.ack[1], "ack_max_us": pb.ack[2],
    });
    // Two objects: one `json!` this long overflows the macro's recursion limit.
    let checks = serde_json::json!({
        "expected_deliveries": expected, "received_deliveries": subs.distinct,
        "lost": lost, "duplicates": subs.duplicates, "out_of_order": subs.out_of_order,
        "unexpected": subs.unexpected + pb.unexpected,
        "server_errors": subs.errors + pb.errors,
        "acks": pb.acks, "missing_acks": missing_acks,
        "publisher_received": if shootout { Some(pb.own) } else { None },
        "publisher_missing": if shootout { Some(own_missing) } else { None },
        "publisher_duplicates": if shootout { Some(pb.own_duplicates) } else { None },
        "connect_failed": connect_failed, "connections_lost": conns_lost,
        "drained": timing.drained, "drain_ms": timing.drain.as_millis() as u64,
        "error": first_error, "cpu_percent": timing.cpu_percent.round(),
    });
    if let (Some(line), serde_json::Value::Object(checks)) = (line.as_object_mut(), checks) {
        line.extend(checks);
    }
    println!("{line}");
    generator_error.is_none()
        && timing.aborted.is_none()
        && timing.drained
        && lost == 0
        && subs.duplicates == 0
        && subs.out_of_order == 0
        && subs.unexpected + pb.unexpected == 0
        && subs.errors + pb.errors == 0
        && missing_acks == 0
        && own_missing == 0
        && pb.own_duplicates == 0
        && connect_failed == 0
        && conns_lost == 0
        && subs.in_window > 0
}

fn quantile(h: &Histogram<u64>, q: f64) -> u64 {
    if h.is_empty() {
        0
    } else {
        h.value_at_quantile(q)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn shared(sent: u64, window: (u64, u64)) -> Shared {
        Shared {
            base: Instant::now(),
            measure_from_ns: AtomicU64::new(window.0),
            until_ns: AtomicU64::new(window.1),
            sent: AtomicU64::new(sent),
            publishing: AtomicBool::new(true),
            stop: AtomicBool::new(false),
            threads: Vec::new(),
            lag_stalled: AtomicBool::new(false),
            lag_wanted: AtomicU64::new(0),
            publisher: None,
        }
    }

    #[derive(clap::Parser)]
    struct Cli {
        #[command(flatten)]
        args: FanoutArgs,
    }

    fn fan(flags: &[&str]) -> Result<Proto, String> {
        use clap::Parser;
        let mut argv = vec!["fanout", "--url", "ws://127.0.0.1:1/"];
        argv.extend_from_slice(flags);
        Cli::try_parse_from(argv)
            .map_err(|e| e.to_string())?
            .args
            .fan_proto()
    }

    #[test]
    fn the_fanout_protocol_follows_the_wire() {
        assert_eq!(fan(&[]), Ok(Proto::Pubsub));
        assert_eq!(fan(&["--mode", "shootout"]), Ok(Proto::Shootout));
        assert_eq!(
            fan(&["--proto", "ws", "--mode", "pubsub"]),
            Ok(Proto::Pubsub)
        );
        assert_eq!(fan(&["--proto", "socketio"]), Ok(Proto::SioShootout));
        assert_eq!(
            fan(&["--proto", "socketio", "--mode", "shootout"]),
            Ok(Proto::SioShootout)
        );
        assert!(fan(&["--proto", "socketio", "--mode", "pubsub"]).is_err());
        assert!(
            fan(&["--mode", "sio-shootout"]).is_err(),
            "not a --mode value"
        );
    }

    #[test]
    fn a_stalled_publisher_is_woken_only_by_a_thread_that_reached_what_it_waits_for() {
        let mut poll = mio::Poll::new().unwrap();
        let mut events = mio::Events::with_capacity(4);
        let mut sh = shared(10, (0, u64::MAX));
        sh.publisher = Some(mio::Waker::new(poll.registry(), mio::Token(7)).unwrap());
        let mut woken = |sh: &Shared, ready: usize, distinct: u64| {
            let p = Progress::default();
            p.ready.store(ready, Ordering::SeqCst);
            p.distinct.store(distinct, Ordering::SeqCst);
            sh.wake_if_stalled(&p);
            poll.poll(&mut events, Some(Duration::ZERO)).unwrap();
            !events.is_empty()
        };
        assert!(!woken(&sh, 2, 100), "not stalled");
        sh.lag_wanted.store(3, Ordering::SeqCst);
        sh.lag_stalled.store(true, Ordering::SeqCst);
        assert!(!woken(&sh, 2, 5), "2 per subscriber, 3 wanted");
        assert!(!woken(&sh, 0, 0), "no subscriber here");
        assert!(sh.lag_stalled.load(Ordering::SeqCst));
        assert!(woken(&sh, 2, 6));
        assert!(!sh.lag_stalled.load(Ordering::SeqCst));
        assert!(!woken(&sh, 2, 8), "woken once");
    }

    fn publisher_url(flags: &[&str]) -> Result<String, String> {
        use clap::Parser;
        let mut argv = vec!["fanout", "--url", "ws://127.0.0.1:1/"];
        argv.extend_from_slice(flags);
        let args = Cli::try_parse_from(argv).map_err(|e| e.to_string())?.args;
        let target = parse_target(&args.url)?.speaking(args.proto);
        let t = args.publisher_target(&target)?;
        Ok(format!("{}{}", t.addr, t.path))
    }

    #[test]
    fn the_publisher_goes_to_the_pub_url_over_socketio_only() {
        assert_eq!(publisher_url(&[]).unwrap(), "127.0.0.1:1/");
        assert_eq!(
            publisher_url(&["--proto", "socketio"]).unwrap(),
            format!("127.0.0.1:1{}", crate::bench::sio::PATH)
        );
        assert_eq!(
            publisher_url(&["--proto", "socketio", "--pub-url", "ws://127.0.0.1:2/"]).unwrap(),
            format!("127.0.0.1:2{}", crate::bench::sio::PATH)
        );
        let e = publisher_url(&["--pub-url", "ws://127.0.0.1:2/"]).unwrap_err();
        assert!(e.contains("--pub-url needs --proto socketio"), "{e}");
        let e =
            publisher_url(&["--proto", "socketio", "--pub-url", "ws://10.0.0.1:2/"]).unwrap_err();
        assert!(e.starts_with("--pub-url "), "{e}");
    }

    pub(super) fn delivery(proto: Proto, seq: u64, ns: u64) -> Vec<u8> {
        let mut p = Publish::new(proto, "t", 40);
        let mut buf = Vec::new();
        p.message(&mut buf, seq, ns);
        match proto {
            // The server's delivery: the data, re-wrapped.
            Proto::Pubsub => {
                let v: serde_json::Value = serde_json::from_slice(&buf).unwrap();
                format!(r#"{{"topic":"t","data":{}}}"#, v["data"]).into_bytes()
            }
            Proto::Shootout | Proto::SioShootout => buf,
        }
    }
}
