//! Codec benchmarks: what the sans-IO layer costs per byte, next to what a plain copy costs
//! on the same machine in the same run.
//!
//! Groups (each with `Throughput::Bytes`, at 16 B, 1 KiB, 64 KiB and 1 MiB):
//! - `unmask`:    `Header::parse` + `apply_mask` on a masked frame, and `apply_mask_bytewise`
//!   as the byte-at-a-time baseline.
//! - `reader`:    the full server-role `Reader::feed` on one masked single-frame message
//!   (binary, and ASCII text so UTF-8 validation is included).
//! - `utf8`:      `utf8::validate` on ASCII and on mixed 2/3/4-byte text.
//! - `memcpy`:    `copy_from_slice` of the same sizes: the copy bandwidth, the ceiling that
//!   every other figure is compared with.
//! - `handshake`: `Request::parse` + `handshake::accept` on a browser-like upgrade request.
//!
//! A counting `#[global_allocator]` (a thin wrapper around `System`) measures heap
//! allocations per handshake and per in-place message; the figures are printed with
//! `eprintln!` before criterion starts. After criterion has run (`cargo bench`), each
//! throughput is printed as a fraction of the memcpy bandwidth of the same size, read
//! back from criterion's `estimates.json` files (`target/criterion/<group>/<bench>/<size>/
//! new/estimates.json`, mean ns per iteration; bytes / ns = GB/s). memcpy reads one buffer
//! and writes another, twice the working set of the in-place unmask or the read-only UTF-8
//! check, so those can pass 100% once two buffers of that size no longer fit in cache.
//!
//! Quick run: `cargo bench --bench codec -- --warm-up-time 1 --measurement-time 2`.

use std::alloc::{GlobalAlloc, Layout, System};
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use throng::http::request::Request;
use throng::ws::frame::{FrameHead, Header, OpCode};
use throng::ws::handshake;
use throng::ws::mask::{apply_mask, apply_mask_bytewise};
use throng::ws::reader::{ReadConfig, Reader, Role, Visitor};
use throng::ws::{CloseCode, Payload, utf8};

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

const SIZES: [(usize, &str); 4] = [
    (16, "16B"),
    (1 << 10, "1KiB"),
    (64 << 10, "64KiB"),
    (1 << 20, "1MiB"),
];

/// Mask key with the high bit of every byte clear: masking ASCII gives ASCII, so a text
/// frame stays valid UTF-8 whether the reader has unmasked it in place an odd or an even
/// number of times (the benchmark feeds the same buffer again and again).
const KEY: [u8; 4] = [0x12, 0x34, 0x56, 0x78];

fn ascii(len: usize) -> Vec<u8> {
    (0..len).map(|i| b'a' + (i % 26) as u8).collect()
}

/// Exactly `len` bytes of valid UTF-8 mixing 1-, 2-, 3- and 4-byte characters, padded
/// with ASCII where the next character would not fit.
fn multibyte(len: usize) -> Vec<u8> {
    let mut out = String::with_capacity(len);
    for c in "κόσμε €𝄞 żółw 日本語 ".chars().cycle() {
        if out.len() + c.len_utf8() > len {
            break;
        }
        out.push(c);
    }
    while out.len() < len {
        out.push('a');
    }
    out.into_bytes()
}

/// A client frame (masked with `KEY`) carrying `payload` whole.
fn masked_frame(op: OpCode, payload: &[u8]) -> Vec<u8> {
    let head = FrameHead::new(true, op, payload.len(), Some(KEY));
    let mut frame = head.as_bytes().to_vec();
    let start = frame.len();
    frame.extend_from_slice(payload);
    apply_mask(&mut frame[start..], KEY, 0);
    frame
}

const UPGRADE: &[u8] = b"GET /chat?room=lobby HTTP/1.1\r\n\
Host: 127.0.0.1:8080\r\n\
Connection: Upgrade\r\n\
Pragma: no-cache\r\n\
Cache-Control: no-cache\r\n\
User-Agent: Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0 Safari/537.36\r\n\
Upgrade: websocket\r\n\
Origin: http://127.0.0.1:8080\r\n\
Sec-WebSocket-Version: 13\r\n\
Accept-Encoding: gzip, deflate, br\r\n\
Accept-Language: en-US,en;q=0.9\r\n\
Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\
Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n";

const MAX_HEAD: usize = 8192;

fn handshake_once(buf: &[u8]) -> usize {
    let req = Request::parse(buf, MAX_HEAD)
        .expect("valid request")
        .expect("complete request");
    handshake::accept(&req).expect("accepted").as_bytes().len()
}

/// Counts what the reader reports; reads the payload so it cannot be optimised away.
#[derive(Default)]
struct Sink {
    messages: usize,
    bytes: usize,
}

impl Visitor for Sink {
    fn message(&mut self, _text: bool, payload: Payload<'_>) {
        self.messages += 1;
        self.bytes += black_box(payload.as_slice()).len();
    }
    fn ping(&mut self, _payload: &[u8]) {}
    fn pong(&mut self, _payload: &[u8]) {}
    fn close(&mut self, _code: Option<CloseCode>, _reason: &str) {}
}

const READ_CONFIG: ReadConfig = ReadConfig {
    role: Role::Server,
    max_message: 16 << 20,
};

/// Feeds one whole frame to a fresh reader; returns the payload bytes delivered.
fn read_once(frame: &mut [u8]) -> usize {
    let mut reader = Reader::default();
    let mut sink = Sink::default();
    reader
        .feed(frame, &READ_CONFIG, &mut sink)
        .expect("valid frame");
    assert_eq!(sink.messages, 1);
    sink.bytes
}

// ---------------------------------------------------------------------------------------
// Benchmarks

fn bench_unmask(c: &mut Criterion) {
    let mut g = c.benchmark_group("unmask");
    for (len, name) in SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        let mut frame = masked_frame(OpCode::Binary, &ascii(len));
        g.bench_function(BenchmarkId::new("parse_apply_mask", name), |b| {
            b.iter(|| {
                let h = Header::parse(black_box(&frame)).unwrap().unwrap();
                apply_mask(&mut frame[h.len..], h.mask.unwrap(), 0);
                black_box(&frame);
            })
        });
        let mut payload = ascii(len);
        g.bench_function(BenchmarkId::new("bytewise", name), |b| {
            b.iter(|| {
                apply_mask_bytewise(black_box(&mut payload), KEY, 0);
                black_box(&payload);
            })
        });
    }
    g.finish();
}

fn bench_reader(c: &mut Criterion) {
    let mut g = c.benchmark_group("reader");
    for (len, name) in SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        for (label, op) in [("binary", OpCode::Binary), ("text_ascii", OpCode::Text)] {
            let mut frame = masked_frame(op, &ascii(len));
            g.bench_function(BenchmarkId::new(label, name), |b| {
                b.iter(|| read_once(black_box(&mut frame)))
            });
        }
    }
    g.finish();
}

fn bench_utf8(c: &mut Criterion) {
    let mut g = c.benchmark_group("utf8");
    for (len, name) in SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        for (label, text) in [("ascii", ascii(len)), ("multibyte", multibyte(len))] {
            assert_eq!(text.len(), len);
            assert!(std::str::from_utf8(&text).is_ok());
            g.bench_function(BenchmarkId::new(label, name), |b| {
                b.iter(|| utf8::validate(black_box(&text)).unwrap())
            });
        }
    }
    g.finish();
}

fn bench_memcpy(c: &mut Criterion) {
    let mut g = c.benchmark_group("memcpy");
    for (len, name) in SIZES {
        g.throughput(Throughput::Bytes(len as u64));
        let src = ascii(len);
        let mut dst = vec![0u8; len];
        g.bench_function(BenchmarkId::new("copy", name), |b| {
            b.iter(|| {
                dst.copy_from_slice(black_box(&src));
                black_box(&dst);
            })
        });
    }
    g.finish();
}

fn bench_handshake(c: &mut Criterion) {
    let mut g = c.benchmark_group("handshake");
    g.throughput(Throughput::Elements(1));
    g.bench_function("parse_accept", |b| {
        b.iter(|| handshake_once(black_box(UPGRADE)))
    });
    g.finish();
}

// ---------------------------------------------------------------------------------------
// Allocation report (before criterion) and the memcpy comparison (after it)

fn report_allocations() {
    // The counter must see allocations at all, or a zero below would mean nothing.
    let probe = allocations_per_run(10, || drop(black_box(Box::new(black_box(7u64)))));
    assert!(
        probe >= 1.0,
        "the counting allocator recorded no allocation for a Box: it is not installed"
    );

    let per_handshake = allocations_per_run(1000, || {
        black_box(handshake_once(black_box(UPGRADE)));
    });
    let mut frame = masked_frame(OpCode::Text, &ascii(1024));
    let per_message = allocations_per_run(1000, || {
        black_box(read_once(black_box(&mut frame)));
    });
    eprintln!("allocations per handshake (Request::parse + accept): {per_handshake:.2} (aim: 0)");
    eprintln!(
        "allocations per 1 KiB single-frame message (Reader, in place): {per_message:.2} (aim: 0)"
    );
    if per_handshake > 0.0 || per_message > 0.0 {
        eprintln!("warning: the codec allocated on a path meant to be allocation-free");
    }
}

/// Where criterion writes: `$CRITERION_HOME`, else `$CARGO_TARGET_DIR/criterion`, else the
/// `criterion` folder of the target directory holding this executable
/// (`<target>/release/deps/codec-<hash>`).
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

/// Mean nanoseconds per iteration from criterion's latest run of one benchmark.
fn mean_ns(dir: &Path, group: &str, function: &str, size: &str) -> Option<f64> {
    let path = dir
        .join(group)
        .join(function)
        .join(size)
        .join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn report_against_memcpy(dir: &Path) {
    const ROWS: [(&str, &str); 7] = [
        ("unmask", "parse_apply_mask"),
        ("unmask", "bytewise"),
        ("reader", "binary"),
        ("reader", "text_ascii"),
        ("utf8", "ascii"),
        ("utf8", "multibyte"),
        ("memcpy", "copy"),
    ];
    eprintln!();
    eprintln!("throughput in GB/s (10^9 bytes/s) and as a fraction of memcpy of the same size");
    eprint!("{:<30}", "");
    for (_, name) in SIZES {
        eprint!("{name:>20}");
    }
    eprintln!();
    for (group, function) in ROWS {
        eprint!("{:<30}", format!("{group}/{function}"));
        for (len, name) in SIZES {
            let cell = match (
                mean_ns(dir, group, function, name),
                mean_ns(dir, "memcpy", "copy", name),
            ) {
                (Some(t), Some(copy)) => {
                    format!("{:.2} GB/s {:>5.1}%", len as f64 / t, 100.0 * copy / t)
                }
                (Some(t), None) => format!("{:.2} GB/s", len as f64 / t),
                _ => "-".to_string(),
            };
            eprint!("{cell:>20}");
        }
        eprintln!();
    }
    if let Some(t) = mean_ns_flat(dir, "handshake", "parse_accept") {
        eprintln!("handshake/parse_accept: {t:.0} ns per handshake");
    }
    eprintln!(
        "(read from {}; memcpy touches two buffers, the in-place passes one, so above 100% \
         is possible once two buffers outgrow the cache)",
        dir.display()
    );
}

/// Like `mean_ns` for a benchmark without a parameter.
fn mean_ns_flat(dir: &Path, group: &str, function: &str) -> Option<f64> {
    let path = dir.join(group).join(function).join("new/estimates.json");
    let json: serde_json::Value = serde_json::from_slice(&std::fs::read(path).ok()?).ok()?;
    json["mean"]["point_estimate"].as_f64()
}

fn main() {
    report_allocations();
    let dir = output_dir();
    let mut c = Criterion::default()
        .output_directory(&dir)
        .warm_up_time(Duration::from_secs(1))
        .configure_from_args();
    bench_unmask(&mut c);
    bench_reader(&mut c);
    bench_utf8(&mut c);
    bench_memcpy(&mut c);
    bench_handshake(&mut c);
    c.final_summary();
    // `cargo bench` passes `--bench`; `cargo test --benches` runs each benchmark once in
    // test mode, which writes no estimates worth comparing.
    if std::env::args().any(|a| a == "--bench") {
        report_against_memcpy(&dir);
    }
}
