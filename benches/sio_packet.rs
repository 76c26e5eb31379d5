//! Socket.IO packet benchmarks: what one `42["echo",P]` costs on the server's side, from
//! the Engine.IO text decode to the reply in the cork.
//!
//! Packets (P = 64 ASCII bytes):
//! - `event`: `42["echo","<P>"]`, the sio-shootout echo;
//! - `ack`: `421["echo","<P>"]`, the same asking for an ack;
//! - `binary`: `452-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]`,
//!   a binary event header with 2 placeholders (its attachments are separate frames).
//!
//! Groups (criterion, one element per iteration):
//! - `eio_decode`: `engineio::packet::decode_text` on the frame;
//! - `sio_parse`: `decode_text` + `socketio::packet::parse` (every Node decoder rule,
//!   JSON validated without a tree), as the server runs them;
//! - `sio_encode`: `Packet::encode` of the parsed packet into a reused buffer;
//! - `sio_dispatch`: the whole server path of `--app sio-shootout` for one message on a
//!   CONNECTed socket (decode, heartbeat bookkeeping, parse, handler lookup, the echo
//!   handler, the reply frame into the cork), through `worker::harness`.
//!
//! A counting `#[global_allocator]` (a thin wrapper around `System`, as in
//! `benches/codec.rs`) reports heap allocations per parse, per encode and per dispatch
//! before criterion starts.
//!
//! Quick run: `cargo bench --bench sio_packet -- --warm-up-time 1 --measurement-time 2`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::PathBuf;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{Criterion, Throughput};
use throng::engineio::packet::{Data, decode_text};
use throng::socketio::packet::{Packet, parse};
use throng::worker::harness::Harness;

// ---------------------------------------------------------------------------------------
// Allocation counting

/// `System`, counting every allocation (alloc, alloc_zeroed and realloc).
struct Counting;

static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every method forwards to `System` with the caller's arguments unchanged, so the
// `GlobalAlloc` contract holds exactly as it does for `System`; the counter is a side effect.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract (see the impl).
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract (see the impl).
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
        // SAFETY: forwarded contract (see the impl).
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded contract (see the impl).
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations made by `f`, run `runs` times, divided by `runs`.
fn allocations_per_run(runs: usize, mut f: impl FnMut()) -> f64 {
    let before = ALLOCATIONS.load(Ordering::Relaxed);
    for _ in 0..runs {
        f();
    }
    (ALLOCATIONS.load(Ordering::Relaxed) - before) as f64 / runs as f64
}

// ---------------------------------------------------------------------------------------
// Inputs

/// 64 ASCII bytes that need no JSON escaping.
fn payload() -> String {
    (0..64).map(|i| char::from(b'a' + (i % 26) as u8)).collect()
}

/// The three packets, as WebSocket text frames' payloads (Engine.IO `4` included).
fn packets() -> [(&'static str, Vec<u8>); 3] {
    let p = payload();
    [
        ("event", format!(r#"42["echo","{p}"]"#).into_bytes()),
        ("ack", format!(r#"421["echo","{p}"]"#).into_bytes()),
        (
            "binary",
            br#"452-["echo",{"_placeholder":true,"num":0},{"_placeholder":true,"num":1}]"#.to_vec(),
        ),
    ]
}

/// The Socket.IO packet inside an Engine.IO message frame.
fn decode_and_parse(frame: &[u8]) -> Packet<'_> {
    let eio = decode_text(frame).expect("an Engine.IO packet");
    let Data::Text(text) = eio.data else {
        panic!("text data expected")
    };
    parse(text).expect("a valid Socket.IO packet")
}

/// A sio-shootout server with one CONNECTed socket on `/`.
fn connected() -> Harness<throng::sio::Server> {
    let mut h = Harness::new(throng::app::sio_shootout::server(0));
    h.open("/socket.io/?EIO=4&transport=websocket");
    h.clear();
    h.message(true, &mut b"40".to_vec());
    assert!(
        h.sent().windows(9).any(|w| w == br#"40{"sid":"#),
        "CONNECT answered"
    );
    h.clear();
    h
}

/// What the server answers to `frame` (one text frame, server role: `0x81`, length).
fn answer(h: &mut Harness<throng::sio::Server>, frame: &mut [u8]) -> Vec<u8> {
    h.message(true, frame);
    let sent = h.sent().to_vec();
    h.clear();
    assert!(!h.closing(), "the server closed the connection");
    assert_eq!(sent[0], 0x81);
    sent[2..].to_vec()
}

// ---------------------------------------------------------------------------------------
// Benchmarks

fn bench_parse_encode(c: &mut Criterion) {
    let packets = packets();
    let mut g = c.benchmark_group("eio_decode");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in &packets {
        g.bench_function(*name, |b| {
            b.iter(|| black_box(decode_text(black_box(frame)).is_ok()))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("sio_parse");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in &packets {
        g.bench_function(*name, |b| {
            b.iter(|| black_box(decode_and_parse(black_box(frame)).attachments))
        });
    }
    g.finish();

    let mut g = c.benchmark_group("sio_encode");
    g.throughput(Throughput::Elements(1));
    for (name, frame) in &packets {
        let packet = decode_and_parse(frame);
        let mut out = Vec::with_capacity(256);
        g.bench_function(*name, |b| {
            b.iter(|| {
                out.clear();
                black_box(&packet).encode(&mut out);
                black_box(out.len())
            })
        });
    }
    g.finish();
}

fn bench_dispatch(c: &mut Criterion) {
    let mut g = c.benchmark_group("sio_dispatch");
    g.throughput(Throughput::Elements(1));
    for (name, mut frame) in packets().into_iter().take(2) {
        let mut h = connected();
        g.bench_function(name, |b| {
            b.iter(|| {
                h.message(true, black_box(&mut frame));
                h.clear();
            })
        });
    }
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Allocation report (before criterion)

fn report_allocations() {
    // The counter must see allocations at all, or a zero below would mean nothing.
    let probe = allocations_per_run(10, || drop(black_box(Box::new(black_box(7u64)))));
    assert!(
        probe >= 1.0,
        "the counting allocator recorded no allocation for a Box: it is not installed"
    );
    const RUNS: usize = 1000;
    for (name, frame) in packets() {
        let parse = allocations_per_run(RUNS, || {
            black_box(decode_and_parse(black_box(&frame)));
        });
        let packet = decode_and_parse(&frame);
        let mut out = Vec::with_capacity(256);
        let encode = allocations_per_run(RUNS, || {
            out.clear();
            black_box(&packet).encode(&mut out);
        });
        // Parsing the encoding gives the packet back (the parser's round-trip promise).
        let mut again = b"4".to_vec();
        again.extend_from_slice(&out);
        assert_eq!(decode_and_parse(&again), packet, "{name}");
        eprintln!(
            "allocations per {name:<6} packet: Engine.IO decode + Socket.IO parse {parse:.2}, \
             encode into a reused buffer {encode:.2} (aim: 0)"
        );
        if parse > 0.0 || encode > 0.0 {
            eprintln!("warning: the packet codec allocated on a path meant to be allocation-free");
        }
    }

    let p = payload();
    let mut h = connected();
    for (name, mut frame, reply) in [
        (
            "42[\"echo\",P] -> 42[\"echo\",P]",
            format!(r#"42["echo","{p}"]"#).into_bytes(),
            format!(r#"42["echo","{p}"]"#).into_bytes(),
        ),
        (
            "421[\"echo\",P] -> 431[P]",
            format!(r#"421["echo","{p}"]"#).into_bytes(),
            format!(r#"431["{p}"]"#).into_bytes(),
        ),
    ] {
        assert_eq!(answer(&mut h, &mut frame), reply, "{name}");
        let per = allocations_per_run(RUNS, || {
            h.message(true, black_box(&mut frame));
            h.clear();
        });
        eprintln!("allocations per dispatch through --app sio-shootout, {name}: {per:.2}");
    }
}

/// Where criterion writes: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
/// `criterion` folder of the target directory holding this executable.
fn output_dir() -> PathBuf {
    if let Some(home) = std::env::var_os("CRITERION_HOME") {
        return PathBuf::from(home);
    }
    if let Some(target) = std::env::var_os("CARGO_TARGET_DIR") {
        return PathBuf::from(target).join("criterion");
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.parent()?.join("criterion")))
        .unwrap_or_else(|| PathBuf::from("target/criterion"))
}

fn main() {
    report_allocations();
    let mut c = Criterion::default()
        .output_directory(&output_dir())
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    bench_parse_encode(&mut c);
    bench_dispatch(&mut c);
    c.final_summary();
}
