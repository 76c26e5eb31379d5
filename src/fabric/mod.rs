//! The cross-core fabric: how one message reaches connections on every worker.
//!
//! - A broadcast is encoded to its final wire frame **once** (`Broadcast::frame`, a
//!   `Bytes`) and shared: every worker queues the same bytes to each local recipient (a
//!   reference-count increment, no copy, no re-encode).
//! - Each worker has an `Inbox`: a bounded lock-free queue (`crossbeam_queue::ArrayQueue`)
//!   of `Inbound` (a shared `Arc<Broadcast>`, or a socket handed over) and a waker. A worker publishes by delivering to its own
//!   members at once and pushing one `Arc` into every other worker's inbox.
//! - Ordering: one worker pushes into an inbox in publish order and the owner pops in
//!   that order, so messages from one sender reach each recipient in the order sent.
//! - Waking is cheap under load: a worker marks itself `parked` before it sleeps, and a
//!   publisher wakes it (one eventfd write) only if it is parked; an awake worker drains
//!   its inbox before it sleeps again (a Dekker-style handshake with SeqCst fences).
//! - No `Mutex` anywhere on the message path.
//!
//! `rooms.rs` is the per-worker room index; membership never crosses cores.

pub mod rooms;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering, fence};

use bytes::{Bytes, BytesMut};
use crossbeam_queue::ArrayQueue;

use crate::metrics::WorkerMetrics;
use crate::runtime::ConnId;
use crate::ws::frame::{FrameHead, OpCode};

pub use rooms::{RoomKey, RoomWatch, Rooms, TooManyRooms};

/// Broadcasts one inbox holds before publishers keep them back (see `worker`'s backlog).
pub const INBOX_CAPACITY: usize = 1 << 16;

/// Wakes a worker's event loop from another thread.
pub trait Wake: Send + Sync {
    fn wake(&self) -> std::io::Result<()>;
}

/// Who sent a broadcast, so that "except the sender" works on the sender's worker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Origin {
    pub worker: usize,
    pub conn: ConnId,
}

/// One message to many connections: the encoded frame and who gets it.
#[derive(Debug)]
pub struct Broadcast {
    /// The whole wire frame (header and payload), shared by every recipient.
    pub frame: Bytes,
    /// Rooms whose members get it; empty means every open connection.
    pub rooms: Box<[RoomKey]>,
    /// Members of these rooms do not get it, even if in `rooms`.
    pub except: Box<[RoomKey]>,
    /// Set: the sender does not get it.
    pub except_origin: Option<Origin>,
    /// May be dropped for a recipient whose outbound queue is over the cap.
    pub volatile: bool,
}

impl Broadcast {
    /// A broadcast of `frame` to every open connection.
    pub fn to_all(frame: Bytes) -> Broadcast {
        Broadcast {
            frame,
            rooms: Box::new([]),
            except: Box::new([]),
            except_origin: None,
            volatile: false,
        }
    }

    /// Only members of `rooms` (any of them; each member gets it once).
    pub fn in_rooms<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, rooms: I) -> Self {
        self.rooms = rooms
            .into_iter()
            .map(|r| RoomKey::from(r.as_ref()))
            .collect();
        self
    }

    /// Nobody in any of `rooms`.
    pub fn except_rooms<I: IntoIterator<Item = S>, S: AsRef<str>>(mut self, rooms: I) -> Self {
        self.except = rooms
            .into_iter()
            .map(|r| RoomKey::from(r.as_ref()))
            .collect();
        self
    }

    /// May be dropped for slow recipients instead of queued.
    pub fn volatile(mut self, volatile: bool) -> Self {
        self.volatile = volatile;
        self
    }
}

/// A connection handed to the worker that owns its session (an Engine.IO request whose
/// sid names another core): the socket and the bytes already read from it.
#[derive(Debug)]
pub struct Handover {
    pub stream: std::net::TcpStream,
    pub bytes: Vec<u8>,
}

/// What one worker's inbox carries.
#[derive(Debug)]
pub enum Inbound {
    Broadcast(Arc<Broadcast>),
    Handover(Box<Handover>),
    /// A message for the worker's app (an `Io` handle's answer to a deferred CONNECT).
    App(Box<dyn std::any::Any + Send>),
}

/// `Fabric::post` gave up: the inbox stayed full for the whole wait.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Saturated;

impl std::fmt::Display for Saturated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a worker's inbox stayed full")
    }
}

impl std::error::Error for Saturated {}

/// Encodes an unfragmented, unmasked (server-to-client) message from `parts` once.
pub fn encode_frame(text: bool, parts: &[&[u8]]) -> Bytes {
    let len: usize = parts.iter().map(|p| p.len()).sum();
    let op = if text { OpCode::Text } else { OpCode::Binary };
    let head = FrameHead::new(true, op, len, None);
    let mut buf = BytesMut::with_capacity(head.as_bytes().len() + len);
    buf.extend_from_slice(head.as_bytes());
    for part in parts {
        buf.extend_from_slice(part);
    }
    buf.freeze()
}

thread_local! {
    /// Set on workers' threads (`mark_worker_thread`).
    static ON_WORKER: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Marks the calling thread as a worker's: `Fabric::post` from it never waits.
pub fn mark_worker_thread() {
    ON_WORKER.set(true);
}

/// Writes more Prometheus text for `/metrics`.
pub type MetricsRenderer = Box<dyn Fn(&mut String) + Send + Sync>;

/// Says why the server is not ready (`/readyz` 503), or `None` when it is.
pub type ReadinessCheck = Box<dyn Fn() -> Option<&'static str> + Send + Sync>;

/// One worker's receiving end.
struct Inbox {
    queue: ArrayQueue<Inbound>,
    parked: AtomicBool,
    waker: Box<dyn Wake>,
}

/// Shared by all workers of a server: inboxes and counters.
pub struct Fabric {
    inboxes: Box<[Inbox]>,
    metrics: Box<[Arc<WorkerMetrics>]>,
    /// More of `/metrics` from outside the workers (the Redis bridge's counters).
    extra_metrics: std::sync::OnceLock<MetricsRenderer>,
    /// Told of rooms appearing and emptying on any worker (the Redis bridge's census).
    room_watch: std::sync::OnceLock<rooms::RoomWatch>,
    /// Set once a drain starts (SIGTERM, `POST /admin/drain`); never cleared.
    draining: AtomicBool,
    /// More conditions for `/readyz` (the Redis link in strict mode).
    readiness: std::sync::OnceLock<ReadinessCheck>,
}

impl Fabric {
    /// One inbox and one set of counters per waker, in worker order.
    pub fn new(wakers: Vec<Box<dyn Wake>>) -> Fabric {
        let metrics = wakers
            .iter()
            .map(|_| Arc::new(WorkerMetrics::default()))
            .collect();
        Fabric {
            inboxes: wakers
                .into_iter()
                .map(|waker| Inbox {
                    queue: ArrayQueue::new(INBOX_CAPACITY),
                    parked: AtomicBool::new(false),
                    waker,
                })
                .collect(),
            metrics,
            extra_metrics: std::sync::OnceLock::new(),
            room_watch: std::sync::OnceLock::new(),
            draining: AtomicBool::new(false),
            readiness: std::sync::OnceLock::new(),
        }
    }

    /// Reports rooms appearing and emptying on every worker to `watch` (first call
    /// wins; set before the workers start, by their apps' `on_start`).
    pub fn watch_rooms(&self, watch: RoomWatch) {
        let _ = self.room_watch.set(watch);
    }

    /// The room watch, if any.
    pub fn room_watch(&self) -> Option<RoomWatch> {
        self.room_watch.get().cloned()
    }

    /// Adds `render`'s Prometheus text to every `/metrics` answer (first call wins).
    pub fn add_metrics(&self, render: MetricsRenderer) {
        let _ = self.extra_metrics.set(render);
    }

    /// Adds a condition `/readyz` checks (first call wins).
    pub fn add_readiness(&self, check: ReadinessCheck) {
        let _ = self.readiness.set(check);
    }

    /// Marks the server as draining: `/readyz` answers 503 from now on.
    pub fn set_draining(&self) {
        self.draining.store(true, Ordering::Relaxed);
    }

    pub fn is_draining(&self) -> bool {
        self.draining.load(Ordering::Relaxed)
    }

    /// Why the server should get no new clients now, if it should not.
    pub fn not_ready(&self) -> Option<&'static str> {
        if self.is_draining() {
            return Some("draining");
        }
        self.readiness.get().and_then(|check| check())
    }

    pub fn workers(&self) -> usize {
        self.inboxes.len()
    }

    pub fn metrics(&self, worker: usize) -> &Arc<WorkerMetrics> {
        &self.metrics[worker]
    }

    /// Every worker's counters and inbox depth, rendered for `/metrics`.
    pub fn render_metrics(&self) -> String {
        let workers: Vec<&WorkerMetrics> = self.metrics.iter().map(|m| &**m).collect();
        let depths: Vec<usize> = self.inboxes.iter().map(|i| i.queue.len()).collect();
        let mut text = crate::metrics::render(&workers, &depths);
        text.push_str(
            "# HELP throng_draining 1 once a drain has begun (SIGTERM, POST /admin/drain).\n\
             # TYPE throng_draining gauge\n",
        );
        text.push_str(if self.is_draining() {
            "throng_draining 1\n"
        } else {
            "throng_draining 0\n"
        });
        if let Some(extra) = self.extra_metrics.get() {
            extra(&mut text);
        }
        text
    }

    /// Queues `msg` for `worker`. `Err` gives it back when the inbox is full.
    pub fn push(&self, worker: usize, msg: Inbound) -> Result<(), Inbound> {
        self.inboxes[worker].queue.push(msg)
    }

    /// Queues `msg` for `worker` and wakes it. From a thread that is not a worker, waits
    /// up to `patience` (in short sleeps) while the inbox is full; a worker's thread
    /// (`mark_worker_thread`) never waits: it could be waiting for itself, or for a
    /// worker that waits for it.
    pub fn post(
        &self,
        worker: usize,
        mut msg: Inbound,
        patience: std::time::Duration,
    ) -> Result<(), Saturated> {
        let patience = if ON_WORKER.get() {
            std::time::Duration::ZERO
        } else {
            patience
        };
        let deadline = std::time::Instant::now() + patience;
        loop {
            match self.push(worker, msg) {
                Ok(()) => {
                    self.notify(worker);
                    return Ok(());
                }
                Err(back) if std::time::Instant::now() < deadline => {
                    msg = back;
                    self.notify(worker);
                    std::thread::sleep(std::time::Duration::from_micros(200));
                }
                Err(_) => return Err(Saturated),
            }
        }
    }

    /// Wakes `worker` if it is asleep (or about to sleep). Call after pushing.
    pub fn notify(&self, worker: usize) {
        let inbox = &self.inboxes[worker];
        fence(Ordering::SeqCst);
        if inbox.parked.load(Ordering::Relaxed)
            && inbox.parked.swap(false, Ordering::AcqRel)
            && let Err(e) = inbox.waker.wake()
        {
            tracing::warn!(worker, error = %e, "cannot wake worker");
        }
    }

    /// Takes the next message from `worker`'s own inbox.
    pub fn pop(&self, worker: usize) -> Option<Inbound> {
        self.inboxes[worker].queue.pop()
    }

    pub fn inbox_is_empty(&self, worker: usize) -> bool {
        self.inboxes[worker].queue.is_empty()
    }

    /// Before sleeping: returns `false` (and stays awake) if work arrived meanwhile.
    pub fn park(&self, worker: usize) -> bool {
        let inbox = &self.inboxes[worker];
        inbox.parked.store(true, Ordering::Relaxed);
        fence(Ordering::SeqCst);
        if inbox.queue.is_empty() {
            true
        } else {
            inbox.parked.store(false, Ordering::Relaxed);
            false
        }
    }

    /// After waking.
    pub fn unpark(&self, worker: usize) {
        self.inboxes[worker].parked.store(false, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;

    struct CountWakes(Arc<AtomicUsize>);

    impl Wake for CountWakes {
        fn wake(&self) -> std::io::Result<()> {
            self.0.fetch_add(1, Ordering::SeqCst);
            Ok(())
        }
    }

    #[test]
    fn frame_is_encoded_once_from_parts() {
        let frame = encode_frame(true, &[b"{\"a\":", b"1", b"}"]);
        assert_eq!(&frame[..], b"\x81\x07{\"a\":1}");
        let big = encode_frame(false, &[&[7u8; 300]]);
        assert_eq!(&big[..4], &[0x82, 126, 1, 44]);
    }

    #[test]
    fn a_worker_thread_never_waits_on_a_full_inbox() {
        let fabric = Arc::new(Fabric::new(vec![Box::new(CountWakes(Arc::default()))]));
        let msg = Arc::new(Broadcast::to_all(encode_frame(true, &[b"x"])));
        while fabric.push(0, Inbound::Broadcast(Arc::clone(&msg))).is_ok() {}
        let patience = std::time::Duration::from_secs(5);
        let worker = {
            let fabric = Arc::clone(&fabric);
            let msg = Arc::clone(&msg);
            std::thread::spawn(move || {
                mark_worker_thread();
                let start = std::time::Instant::now();
                let r = fabric.post(0, Inbound::Broadcast(msg), patience);
                (r.is_err(), start.elapsed())
            })
        };
        let (refused, took) = worker.join().unwrap();
        assert!(refused);
        assert!(took < std::time::Duration::from_secs(1), "{took:?}");
        // Another thread waits, and gets in once there is room.
        let other = {
            let fabric = Arc::clone(&fabric);
            std::thread::spawn(move || fabric.post(0, Inbound::Broadcast(msg), patience))
        };
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(fabric.pop(0).is_some());
        assert!(other.join().unwrap().is_ok());
    }

    #[test]
    fn only_a_parked_worker_is_woken_and_only_once() {
        let wakes = Arc::new(AtomicUsize::new(0));
        let fabric = Fabric::new(vec![Box::new(CountWakes(Arc::clone(&wakes)))]);
        let msg = Arc::new(Broadcast::to_all(encode_frame(true, &[b"x"])));
        // Awake: no wake-up needed.
        fabric
            .push(0, Inbound::Broadcast(Arc::clone(&msg)))
            .unwrap();
        fabric.notify(0);
        assert_eq!(wakes.load(Ordering::SeqCst), 0);
        // Work is waiting: parking refuses.
        assert!(!fabric.park(0));
        assert!(fabric.pop(0).is_some());
        assert!(fabric.park(0));
        fabric
            .push(0, Inbound::Broadcast(Arc::clone(&msg)))
            .unwrap();
        fabric.notify(0);
        fabric.notify(0);
        assert_eq!(wakes.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn order_from_one_publisher_is_kept() {
        let fabric = Fabric::new(vec![Box::new(CountWakes(Arc::default()))]);
        for i in 0..100u8 {
            fabric
                .push(
                    0,
                    Inbound::Broadcast(Arc::new(Broadcast::to_all(encode_frame(false, &[&[i]])))),
                )
                .unwrap();
        }
        for i in 0..100u8 {
            let Some(Inbound::Broadcast(msg)) = fabric.pop(0) else {
                panic!("a broadcast was pushed");
            };
            assert_eq!(msg.frame[2], i);
        }
    }
}
