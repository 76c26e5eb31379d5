//! `throng bench echo`: round trips with K messages in flight per connection.
//!
//! Each thread runs its own mio loop over its share of the connections and opens them
//! through a [`Dialer`] (at most 256 handshakes in progress per thread, source addresses
//! 127.0.0.2.. round robin unless `--sources 0`). Once a
//! connection is open it sends K messages; every reply is checked and answered with the
//! next message, so K stay in flight until the run ends.
//!
//! Invariants:
//! - Echo keeps order, so a connection's send times form a FIFO and its replies must come
//!   back in sequence: each payload carries its sequence number as hex digits in front of
//!   a fixed ASCII pattern ([`Pattern`]), and a reply of the wrong type, length, sequence
//!   or content counts as a bad reply.
//! - Only replies that arrive inside the measured window (after `--warmup`) count
//!   towards messages and latency.
//! - Everything is bounded in time: handshakes get [`CONNECT_TIMEOUT`], a connection
//!   whose oldest message waits [`REPLY_TIMEOUT`] is failed, and the run ends at
//!   warmup + secs, or earlier when no connection is left.
//! - All frames a connection queues in one turn leave in one `write`.
//! - With `--proto socketio` each message is the event `42["echo","<payload>"]`, answered
//!   `42["echo","<payload>"]`, or with `--ack` `42<seq>["echo","<payload>"]` answered by
//!   the ack `43<seq>["<payload>"]` ([`EchoFrames`]); the same checks apply to the
//!   payload, and the client layer keeps the heartbeat out of the replies.

use std::collections::VecDeque;
use std::io;
use std::thread;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::ws::CloseCode;
use crate::ws::frame::{FrameHead, OpCode};
use crate::ws::mask::apply_mask;
use crate::ws::reader::{Payload, Visitor};

use super::client::{Client, Dialer, Phase, XorShift};
use super::report::{CpuMeter, Percentiles, Target, latency_histogram, parse_target};
use super::sio::{ClientProto, EchoFrames, Transport, check_transport};

/// Handshakes still unfinished after this are failed.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// A connection whose oldest message has had no reply for this long is failed.
pub const REPLY_TIMEOUT: Duration = Duration::from_secs(10);
/// Handshakes in progress at once, per thread.
const CONCURRENCY: usize = 256;
/// Largest message accepted for `--size` (the reader's limit is 64 MiB).
const MAX_SIZE: usize = 16 << 20;

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
    /// Generator threads, each with its own event loop and share of the connections.
    #[arg(long, default_value_t = 1)]
    pub threads: usize,
    /// Source addresses to spread over: 127.0.0.2 .. 127.0.0.(K+1); 0 lets the kernel
    /// pick (127.0.0.1, whose ephemeral ports TIME_WAIT from earlier runs may use up).
    #[arg(long, default_value_t = 4)]
    pub sources: usize,
    /// Wire protocol: `ws`, or `socketio` (Socket.IO at /socket.io/ on the URL's host and
    /// port, namespace /, the sio-shootout contract: event `echo`).
    #[arg(long, value_enum, default_value = "ws")]
    pub proto: ClientProto,
    /// Socket.IO transport: `websocket` only here (`polling`: `bench connect` only).
    #[arg(long, value_enum, default_value = "websocket")]
    pub transport: Transport,
    /// Socket.IO only: ask for an ack with each message (`42<id>["echo",P]`, answered
    /// `43<id>[P]`) instead of the `echo` event back.
    #[arg(long)]
    pub ack: bool,
    /// Start sending only once every connection of a thread is open (or failed), so that
    /// a server slow to accept while it echoes is measured on all its connections.
    #[arg(long)]
    pub open_first: bool,
    /// Messages per second per connection, paced: a connection sends its next message
    /// when a reply frees a slot *and* its turn has come (1/RATE after its last send;
    /// first turns spread over one interval). Default: as fast as replies come, which
    /// saturates the server; a rate below that measures latency at a given load.
    #[arg(long)]
    pub rate: Option<f64>,
}

/// The payload of message `seq`: its sequence number as (up to) 16 lowercase hex digits,
/// then an ASCII pattern; valid UTF-8 either way, so text and binary share it.
#[derive(Debug)]
pub struct Pattern {
    bytes: Vec<u8>,
}

const SEQ_DIGITS: usize = 16;

impl Pattern {
    pub fn new(size: usize) -> Pattern {
        Pattern {
            bytes: (0..size).map(|i| b'a' + (i % 26) as u8).collect(),
        }
    }

    fn prefix_len(&self) -> usize {
        self.bytes.len().min(SEQ_DIGITS)
    }

    /// The last `prefix_len` hex digits of `seq`.
    fn seq_digits(&self, seq: u64) -> [u8; SEQ_DIGITS] {
        let mut digits = [0u8; SEQ_DIGITS];
        for (i, d) in digits.iter_mut().enumerate() {
            let nibble = (seq >> (4 * (SEQ_DIGITS - 1 - i))) & 0xf;
            *d = b"0123456789abcdef"[nibble as usize];
        }
        digits
    }

    /// Appends message `seq` to `out`, masked with `key`, after its frame header.
    pub fn queue(&self, out: &mut Vec<u8>, op: OpCode, seq: u64, key: [u8; 4]) {
        out.extend_from_slice(FrameHead::new(true, op, self.bytes.len(), Some(key)).as_bytes());
        let start = out.len();
        self.push(out, seq);
        apply_mask(&mut out[start..], key, 0);
    }

    /// Appends message `seq` as a Socket.IO text frame (`frames` says which), masked
    /// with `key`.
    pub fn queue_sio(&self, out: &mut Vec<u8>, frames: EchoFrames, seq: u64, key: [u8; 4]) {
        let mut buf = [0u8; 48];
        let (head, tail) = frames.request(seq, &mut buf);
        let len = head.len() + self.bytes.len() + tail.len();
        out.extend_from_slice(FrameHead::new(true, OpCode::Text, len, Some(key)).as_bytes());
        let start = out.len();
        out.extend_from_slice(head);
        self.push(out, seq);
        out.extend_from_slice(tail);
        apply_mask(&mut out[start..], key, 0);
    }

    fn push(&self, out: &mut Vec<u8>, seq: u64) {
        let n = self.prefix_len();
        out.extend_from_slice(&self.seq_digits(seq)[SEQ_DIGITS - n..]);
        out.extend_from_slice(&self.bytes[n..]);
    }

    /// Whether `payload` is exactly message `seq`.
    pub fn matches(&self, payload: &[u8], seq: u64) -> bool {
        let n = self.prefix_len();
        payload.len() == self.bytes.len()
            && payload[..n] == self.seq_digits(seq)[SEQ_DIGITS - n..]
            && payload[n..] == self.bytes[n..]
    }
}

/// What one thread (and, summed, the whole run) saw.
#[derive(Debug)]
struct Outcome {
    hist: Histogram<u64>,
    messages: u64,
    bad_replies: u64,
    /// Connections failed after opening, plus connects that never opened.
    errors: u64,
    connected: usize,
    connect_failed: usize,
    /// The first error seen, for the summary.
    first_error: Option<String>,
}

impl Outcome {
    fn new() -> Outcome {
        Outcome {
            hist: latency_histogram(),
            messages: 0,
            bad_replies: 0,
            errors: 0,
            connected: 0,
            connect_failed: 0,
            first_error: None,
        }
    }

    fn error(&mut self, what: String) {
        tracing::debug!(error = %what, "connection failed");
        self.errors += 1;
        self.first_error.get_or_insert(what);
    }

    fn add(&mut self, other: Outcome) {
        let _ = self.hist.add(&other.hist);
        self.messages += other.messages;
        self.bad_replies += other.bad_replies;
        self.errors += other.errors;
        self.connected += other.connected;
        self.connect_failed += other.connect_failed;
        if self.first_error.is_none() {
            self.first_error = other.first_error;
        }
    }
}

/// The shared schedule of a run.
#[derive(Clone, Copy, Debug)]
struct Window {
    measure_from: Instant,
    until: Instant,
}

/// Connects, runs, reports. `Ok(false)` when replies were wrong, connections failed or
/// nothing was measured.
pub fn run(args: &EchoArgs) -> Result<bool, String> {
    check_transport("echo", args.proto, args.transport)?;
    let target = parse_target(&args.url)?;
    if args.conns == 0 || args.inflight == 0 || args.secs == 0 {
        return Err("--conns, --inflight and --secs must be > 0".into());
    }
    if args
        .rate
        .is_some_and(|r| !(r.is_finite() && (0.001..=1_000_000.0).contains(&r)))
    {
        return Err("--rate must be 0.001..=1000000 messages per second per connection".into());
    }
    if args.size > MAX_SIZE {
        return Err(format!("--size must be at most {MAX_SIZE}"));
    }
    if args.secs + args.warmup > 24 * 3600 {
        return Err("--secs plus --warmup must stay under a day".into());
    }
    if args.sources > 250 {
        return Err("--sources must be 0..=250".into());
    }
    match args.proto {
        ClientProto::Ws if args.ack => return Err("--ack needs --proto socketio".into()),
        ClientProto::Socketio if args.binary => {
            return Err("--binary is not supported with --proto socketio".into());
        }
        _ => {}
    }
    let target = target.speaking(args.proto);
    if args.conns > super::connect::MAX_CONNS {
        return Err(format!(
            "--conns {} is over {}: this process may open at most 20,000 files",
            args.conns,
            super::connect::MAX_CONNS
        ));
    }
    let limit = crate::runtime::system::raise_fd_limit().map_err(|e| e.to_string())?;
    if (args.conns as u64) + 64 > limit {
        return Err(format!(
            "--conns {} needs more file descriptors than this process may open ({limit})",
            args.conns
        ));
    }
    let threads = args.threads.clamp(1, args.conns);
    let cpu = CpuMeter::start();
    let start = Instant::now();
    let measure_from = start + Duration::from_secs(args.warmup);
    let window = Window {
        measure_from,
        until: measure_from + Duration::from_secs(args.secs),
    };
    let handles: Vec<_> = (0..threads)
        .map(|i| {
            let share = args.conns / threads + usize::from(i < args.conns % threads);
            let (target, args) = (target.clone(), args.clone());
            thread::Builder::new()
                .name(format!("bench-echo-{i}"))
                .spawn(move || run_thread(target, &args, share, i as u64, window))
        })
        .collect();
    let mut total = Outcome::new();
    for h in handles {
        let h = h.map_err(|e| format!("cannot start a generator thread: {e}"))?;
        let o = h
            .join()
            .map_err(|_| "a generator thread panicked".to_string())?
            .map_err(|e| format!("generator thread failed: {e}"))?;
        total.add(o);
    }
    let ended = Instant::now().min(window.until);
    let cpu_percent = cpu.percent();
    let measured = ended.saturating_duration_since(measure_from).as_secs_f64();
    let rate = if measured > 0.0 {
        total.messages as f64 / measured
    } else {
        0.0
    };
    let p = Percentiles::of(&total.hist);
    eprintln!(
        "echo {}{}: {} conns x {} B {}, {} in flight, {} s (+{} s warmup), {} thread(s): \
         {:.0} msgs/s, latency p50 {} us, p99 {} us, p99.9 {} us, max {} us; \
         {} connected, {} connects failed, {} errors, {} bad replies; generator CPU {:.0}%",
        args.url,
        match (args.proto, args.ack) {
            (ClientProto::Ws, _) => "",
            (ClientProto::Socketio, false) => " (socketio)",
            (ClientProto::Socketio, true) => " (socketio, acks)",
        },
        args.conns,
        args.size,
        if args.binary { "binary" } else { "text" },
        args.inflight,
        args.secs,
        args.warmup,
        threads,
        rate,
        p.p50,
        p.p99,
        p.p999,
        p.max,
        total.connected,
        total.connect_failed,
        total.errors,
        total.bad_replies,
        cpu_percent
    );
    if let Some(e) = &total.first_error {
        eprintln!("echo: first error: {e}");
    }
    if cpu_percent > 90.0 * threads as f64 {
        eprintln!(
            "echo: the generator used {cpu_percent:.0}% CPU with {threads} thread(s): it may be \
             the bottleneck (try --threads, or compare the server's CPU use)"
        );
    }
    if measured + 0.5 < args.secs as f64 {
        eprintln!(
            "echo: the run ended {measured:.1} s into the measured window: no connection was left"
        );
    }
    println!(
        "{}",
        serde_json::json!({
            "mode": "echo", "url": args.url, "conns": args.conns, "size": args.size,
            "inflight": args.inflight, "rate": args.rate, "secs": args.secs, "binary": args.binary,
            "wire": args.proto.name(), "ack": args.ack, "open_first": args.open_first,
            "warmup": args.warmup, "threads": threads,
            "messages": total.messages, "msgs_per_sec": rate.round(),
            "p50_us": p.p50, "p99_us": p.p99, "p999_us": p.p999, "max_us": p.max,
            "connected": total.connected, "connect_failed": total.connect_failed,
            "errors": total.errors, "bad_replies": total.bad_replies,
            "cpu_percent": cpu_percent.round(),
        })
    );
    Ok(total.bad_replies == 0 && total.errors == 0 && total.messages > 0)
}

/// One open or opening connection and its in-flight bookkeeping.
#[derive(Debug)]
struct Conn {
    client: Client,
    /// Send times of the messages in flight, oldest first.
    sent: VecDeque<Instant>,
    /// Sequence number of the next message to send.
    next_send: u64,
    /// Sequence number the next reply must carry.
    next_reply: u64,
    /// With `--rate`: sends whose slot is free but whose turn has not come.
    owed: usize,
    /// With `--rate`: when the next send may go.
    next_due: Instant,
}

/// Checks one read's replies against the expected sequence.
struct Replies<'a> {
    pattern: &'a Pattern,
    expect_text: bool,
    /// Socket.IO: the frames around each payload.
    sio: Option<EchoFrames>,
    next_reply: u64,
    ok: u32,
    bad: u32,
}

impl Replies<'_> {
    fn good(&self, text: bool, frame: &[u8]) -> bool {
        let seq = self.next_reply;
        match self.sio {
            None => text == self.expect_text && self.pattern.matches(frame, seq),
            Some(f) => {
                text && f
                    .reply(frame, seq)
                    .is_some_and(|p| self.pattern.matches(p, seq))
            }
        }
    }
}

impl Visitor for Replies<'_> {
    fn message(&mut self, text: bool, payload: Payload<'_>) {
        if self.good(text, payload.as_slice()) {
            self.ok += 1;
        } else {
            self.bad += 1;
        }
        self.next_reply += 1;
    }
    fn ping(&mut self, _: &[u8]) {}
    fn pong(&mut self, _: &[u8]) {}
    fn close(&mut self, _: Option<CloseCode>, _: &str) {}
}

/// Per-thread constants of the loop.
struct Setup<'a> {
    pattern: &'a Pattern,
    op: OpCode,
    sio: Option<EchoFrames>,
    inflight: usize,
    window: Window,
    /// Hold the first messages until every connection of the thread is open or failed.
    open_first: bool,
    /// With `--rate`: the time between two sends of a connection.
    interval: Option<Duration>,
}

fn run_thread(
    target: Target,
    args: &EchoArgs,
    conns: usize,
    salt: u64,
    window: Window,
) -> io::Result<Outcome> {
    let mut rng = XorShift::from_time(salt + 1);
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(1024);
    let pattern = Pattern::new(args.size);
    let setup = Setup {
        pattern: &pattern,
        op: if args.binary {
            OpCode::Binary
        } else {
            OpCode::Text
        },
        sio: (args.proto == ClientProto::Socketio).then_some(EchoFrames { ack: args.ack }),
        inflight: args.inflight,
        window,
        open_first: args.open_first,
        interval: args.rate.map(|r| Duration::from_secs_f64(1.0 / r)),
    };
    let mut out = Outcome::new();
    let mut dialer = Dialer::new(target, args.sources, CONCURRENCY, None);
    let mut live: Slab<Conn> = Slab::with_capacity(conns);
    let mut scratch = vec![0u8; 256 << 10];
    let mut next_sweep = Instant::now();
    let mut held_back = setup.open_first;
    loop {
        let now = Instant::now();
        if now >= window.until {
            break;
        }
        while dialer.started < conns && dialer.ready(now).is_ok() {
            match dialer.dial(&mut rng) {
                Ok(client) => {
                    let entry = live.vacant_entry();
                    let mut conn = Conn {
                        client,
                        sent: VecDeque::with_capacity(args.inflight),
                        next_send: 0,
                        next_reply: 0,
                        owed: 0,
                        // First turns spread over one interval, not all at once.
                        next_due: now
                            + setup.interval.map_or(Duration::ZERO, |i| {
                                i.mul_f64((rng.next() % 1024) as f64 / 1024.0)
                            }),
                    };
                    let token = Token(entry.key());
                    let interest = Interest::READABLE | Interest::WRITABLE;
                    match poll
                        .registry()
                        .register(&mut conn.client.stream, token, interest)
                    {
                        Ok(()) => {
                            entry.insert(conn);
                        }
                        Err(e) => {
                            dialer.in_progress -= 1;
                            out.connect_failed += 1;
                            out.error(format!("register: {e}"));
                        }
                    }
                }
                Err(e) => {
                    out.connect_failed += 1;
                    out.error(format!("connect: {e}"));
                }
            }
        }
        if dialer.started == conns && live.is_empty() {
            break; // every connection failed or was closed
        }
        let timeout =
            window
                .until
                .saturating_duration_since(now)
                .min(if setup.interval.is_some() {
                    Duration::from_millis(1)
                } else {
                    Duration::from_millis(50)
                });
        match poll.poll(&mut events, Some(timeout)) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
        for event in events.iter() {
            let key = event.token().0;
            let Some(conn) = live.get_mut(key) else {
                continue;
            };
            let was_open = conn.client.phase == Phase::Open;
            let result = turn(conn, &setup, &mut scratch, &mut rng, &mut out);
            let now_open = conn.client.phase == Phase::Open;
            if !was_open && (now_open || result.is_err()) {
                dialer.in_progress -= 1;
            }
            if let Err(e) = result {
                if !now_open {
                    out.connect_failed += 1;
                }
                out.error(e);
                live.remove(key);
            }
        }
        let now = Instant::now();
        if setup.interval.is_some() && now < window.until {
            for (_, conn) in live.iter_mut() {
                if conn.owed > 0 && conn.next_due <= now {
                    conn.owed -= 1;
                    send_or_owe(conn, &setup, now, &mut rng);
                    if let Err(e) = conn.client.flush() {
                        tracing::debug!(error = %e, "write failed; the read will report it");
                    }
                }
            }
        }
        if now >= next_sweep {
            next_sweep = now + Duration::from_millis(250);
            sweep(&mut live, &mut dialer, &mut out, now);
        }
        if held_back && dialer.started == conns && dialer.in_progress == 0 {
            // Every connection is open or gone: now they all start at once.
            held_back = false;
            for (_, conn) in live.iter_mut() {
                if let Some(interval) = setup.interval {
                    // First turns spread over one interval from now, not all at once.
                    conn.next_due = now + interval.mul_f64((rng.next() % 1024) as f64 / 1024.0);
                }
                for _ in 0..setup.inflight {
                    send_or_owe(conn, &setup, now, &mut rng);
                }
                if let Err(e) = conn.client.flush() {
                    tracing::debug!(error = %e, "write failed; the read will report it");
                }
            }
        }
    }
    // Connects that never finished by the end are failures too.
    for (_, conn) in live.iter() {
        if conn.client.phase == Phase::Handshaking {
            out.connect_failed += 1;
            out.error("handshake unfinished when the run ended".into());
        }
    }
    let never_started = conns - dialer.started;
    out.connect_failed += never_started;
    out.errors += never_started as u64;
    Ok(out)
}

/// Fails handshakes and round trips that have waited too long.
fn sweep(live: &mut Slab<Conn>, dialer: &mut Dialer, out: &mut Outcome, now: Instant) {
    let mut expired = Vec::new();
    for (key, conn) in live.iter() {
        let late = match conn.client.phase {
            Phase::Handshaking => now.duration_since(conn.client.started) > CONNECT_TIMEOUT,
            Phase::Open => conn
                .sent
                .front()
                .is_some_and(|t| now.duration_since(*t) > REPLY_TIMEOUT),
        };
        if late {
            expired.push((key, conn.client.phase));
        }
    }
    for (key, phase) in expired {
        live.remove(key);
        if phase == Phase::Handshaking {
            dialer.in_progress -= 1;
            out.connect_failed += 1;
            out.error(format!("no handshake response within {CONNECT_TIMEOUT:?}"));
        } else {
            out.error(format!("no echo reply within {REPLY_TIMEOUT:?}"));
        }
    }
}

/// One readiness event: read and check replies, queue the next messages, write once.
fn turn(
    conn: &mut Conn,
    setup: &Setup<'_>,
    scratch: &mut [u8],
    rng: &mut XorShift,
    out: &mut Outcome,
) -> Result<(), String> {
    let was_open = conn.client.phase == Phase::Open;
    let mut replies = Replies {
        pattern: setup.pattern,
        expect_text: setup.op == OpCode::Text,
        sio: setup.sio,
        next_reply: conn.next_reply,
        ok: 0,
        bad: 0,
    };
    let read = conn.client.read(scratch, rng, &mut replies);
    conn.next_reply = replies.next_reply;
    let now = Instant::now();
    if !was_open && conn.client.phase == Phase::Open {
        out.connected += 1;
        if !setup.open_first {
            for _ in 0..setup.inflight {
                send_or_owe(conn, setup, now, rng);
            }
        }
    }
    out.bad_replies += u64::from(replies.bad);
    let in_window = now >= setup.window.measure_from && now < setup.window.until;
    for _ in 0..replies.ok + replies.bad {
        let Some(sent) = conn.sent.pop_front() else {
            out.bad_replies += 1; // a reply to nothing
            continue;
        };
        if in_window {
            out.messages += 1;
            let _ = out
                .hist
                .record(now.duration_since(sent).as_micros().max(1) as u64);
        }
        if now < setup.window.until {
            send_or_owe(conn, setup, now, rng);
        }
    }
    let flushed = conn.client.flush();
    match read {
        Ok(true) if !conn.client.closed_by_peer() => {}
        Ok(true) => return Err("the server closed the connection (close frame)".into()),
        Ok(false) => return Err("the server closed the connection (EOF)".into()),
        Err(e) => return Err(e.to_string()),
    }
    flushed.map_err(|e| format!("write: {e}"))
}

/// Sends now, or (with `--rate`, before this connection's turn) owes the send.
fn send_or_owe(conn: &mut Conn, setup: &Setup<'_>, now: Instant, rng: &mut XorShift) {
    match setup.interval {
        Some(_) if now < conn.next_due => conn.owed += 1,
        Some(interval) => {
            conn.next_due = now + interval;
            send(conn, setup, now, rng);
        }
        None => send(conn, setup, now, rng),
    }
}

fn send(conn: &mut Conn, setup: &Setup<'_>, now: Instant, rng: &mut XorShift) {
    let key = (rng.next() as u32).to_ne_bytes();
    let out = conn.client.out();
    match setup.sio {
        None => setup.pattern.queue(out, setup.op, conn.next_send, key),
        Some(frames) => setup.pattern.queue_sio(out, frames, conn.next_send, key),
    }
    conn.next_send += 1;
    conn.sent.push_back(now);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ws::reader::{ReadConfig, Reader, Role};

    /// Unmasks what `queue` wrote, as a server would, and returns the payloads.
    fn server_view(wire: &mut [u8]) -> Vec<(bool, Vec<u8>)> {
        struct Collect(Vec<(bool, Vec<u8>)>);
        impl Visitor for Collect {
            fn message(&mut self, text: bool, p: Payload<'_>) {
                self.0.push((text, p.as_slice().to_vec()));
            }
            fn ping(&mut self, _: &[u8]) {}
            fn pong(&mut self, _: &[u8]) {}
            fn close(&mut self, _: Option<CloseCode>, _: &str) {}
        }
        let cfg = ReadConfig {
            role: Role::Server,
            max_message: 1 << 20,
        };
        let mut c = Collect(Vec::new());
        Reader::default().feed(wire, &cfg, &mut c).unwrap();
        c.0
    }

    #[test]
    fn messages_carry_their_sequence_and_check_back() {
        for size in [0usize, 1, 5, 16, 17, 64, 125, 126, 70_000] {
            let p = Pattern::new(size);
            let mut wire = Vec::new();
            for seq in [0u64, 1, 0xabc, u64::MAX] {
                p.queue(&mut wire, OpCode::Text, seq, [1, 2, 3, 4]);
            }
            let got = server_view(&mut wire);
            assert_eq!(got.len(), 4, "size {size}");
            for (i, seq) in [0u64, 1, 0xabc, u64::MAX].into_iter().enumerate() {
                let (text, payload) = &got[i];
                assert!(*text);
                assert_eq!(payload.len(), size);
                assert!(std::str::from_utf8(payload).is_ok());
                assert!(p.matches(payload, seq), "size {size} seq {seq}");
            }
        }
    }

    #[test]
    fn wrong_replies_do_not_match() {
        let p = Pattern::new(64);
        let mut wire = Vec::new();
        p.queue(&mut wire, OpCode::Binary, 7, [9, 9, 9, 9]);
        let (_, good) = server_view(&mut wire).remove(0);
        assert!(&good[..16] == b"0000000000000007");
        assert!(p.matches(&good, 7));
        assert!(!p.matches(&good, 8), "out of sequence");
        assert!(!p.matches(&good[..63], 7), "short");
        let mut long = good.clone();
        long.push(b'a');
        assert!(!p.matches(&long, 7), "long");
        let mut flipped = good.clone();
        flipped[40] ^= 1;
        assert!(!p.matches(&flipped, 7), "corrupted");
    }

    #[test]
    fn replies_count_type_and_sequence() {
        let p = Pattern::new(20);
        let mut r = Replies {
            pattern: &p,
            expect_text: true,
            sio: None,
            next_reply: 3,
            ok: 0,
            bad: 0,
        };
        let mut wire = Vec::new();
        p.queue(&mut wire, OpCode::Text, 3, [0; 4]);
        let (_, m3) = server_view(&mut wire).remove(0);
        r.message(true, Payload::Assembled(m3.clone())); // seq 3: ok
        r.message(true, Payload::Assembled(m3.clone())); // seq 4 expected: bad
        r.message(false, Payload::Assembled(m3)); // binary: bad
        assert_eq!((r.ok, r.bad, r.next_reply), (1, 2, 6));
    }

    #[test]
    fn socketio_messages_carry_their_sequence_and_check_back() {
        for ack in [false, true] {
            let frames = EchoFrames { ack };
            let p = Pattern::new(64);
            let mut wire = Vec::new();
            for seq in [0u64, 41] {
                p.queue_sio(&mut wire, frames, seq, [5, 6, 7, 8]);
            }
            let got = server_view(&mut wire);
            let body = |seq: u64| {
                let mut one = Vec::new();
                p.queue(&mut one, OpCode::Text, seq, [0; 4]);
                String::from_utf8(server_view(&mut one).remove(0).1).unwrap()
            };
            let want = |seq: u64| match ack {
                false => format!(r#"42["echo","{}"]"#, body(seq)),
                true => format!(r#"42{seq}["echo","{}"]"#, body(seq)),
            };
            assert_eq!(got[0], (true, want(0).into_bytes()));
            assert_eq!(got[1], (true, want(41).into_bytes()));
        }
    }

    #[test]
    fn socketio_replies_are_checked_by_frame_id_and_payload() {
        let p = Pattern::new(40);
        let mut one = Vec::new();
        p.queue(&mut one, OpCode::Text, 5, [0; 4]);
        let body = String::from_utf8(server_view(&mut one).remove(0).1).unwrap();
        let replies = |ack: bool, frames: &[String]| {
            let mut r = Replies {
                pattern: &p,
                expect_text: true,
                sio: Some(EchoFrames { ack }),
                next_reply: 5,
                ok: 0,
                bad: 0,
            };
            for f in frames {
                r.message(true, Payload::Assembled(f.clone().into_bytes()));
            }
            (r.ok, r.bad)
        };
        let event = format!(r#"42["echo","{body}"]"#);
        let acked = format!(r#"435["{body}"]"#);
        assert_eq!(replies(false, std::slice::from_ref(&event)), (1, 0));
        assert_eq!(replies(true, std::slice::from_ref(&acked)), (1, 0));
        // The next one must carry seq 6: the same frame again is out of sequence.
        assert_eq!(replies(false, &[event.clone(), event.clone()]), (1, 1));
        assert_eq!(replies(true, &[acked.clone(), acked.clone()]), (1, 1));
        assert_eq!(replies(true, std::slice::from_ref(&event)), (0, 1));
        assert_eq!(replies(false, std::slice::from_ref(&acked)), (0, 1));
        let corrupt = event.replace("abc", "abd");
        assert_ne!(corrupt, event);
        assert_eq!(replies(false, &[corrupt]), (0, 1));
    }
}
