//! Counters for `GET /metrics` (Prometheus text format, version 0.0.4).
//!
//! Each worker owns one `WorkerMetrics` and is the only thread that writes it: a counter
//! update is a relaxed load and store (no locked instruction, no shared cache line with
//! other workers). A scrape, on any worker, reads every worker's counters and sums them;
//! a reading may be a few increments behind, never torn. A leaf module.

use std::fmt::Write;
use std::sync::atomic::{AtomicU64, Ordering};

/// A counter or gauge written by one thread and read by any.
#[derive(Default, Debug)]
pub struct Counter(AtomicU64);

impl Counter {
    /// Adds `n`. Only the owning worker calls this, so load + store does not lose counts.
    #[inline]
    pub fn add(&self, n: u64) {
        self.0.store(
            self.0.load(Ordering::Relaxed).wrapping_add(n),
            Ordering::Relaxed,
        );
    }

    #[inline]
    pub fn inc(&self) {
        self.add(1);
    }

    /// Sets a gauge.
    #[inline]
    pub fn set(&self, v: u64) {
        self.0.store(v, Ordering::Relaxed);
    }

    #[inline]
    pub fn get(&self) -> u64 {
        self.0.load(Ordering::Relaxed)
    }
}

/// Why a connection ended, for `throng_connections_closed_total{reason=...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CloseReason {
    /// The peer closed (close frame or TCP) or the socket failed.
    Peer,
    /// The peer broke the protocol (a 1002/1007/1009... close).
    ProtocolError,
    /// The handshake was refused or timed out (HTTP 4xx).
    HandshakeRejected,
    /// Silent past the idle timeout.
    IdleTimeout,
    /// Outbound queue over the cap for too long (1008).
    SlowConsumer,
    /// Closed by the app (a message it could not accept).
    App,
    /// Closed during shutdown.
    Shutdown,
    /// A plain HTTP request was answered (`/metrics`).
    Http,
}

impl CloseReason {
    pub const ALL: [CloseReason; 8] = [
        CloseReason::Peer,
        CloseReason::ProtocolError,
        CloseReason::HandshakeRejected,
        CloseReason::IdleTimeout,
        CloseReason::SlowConsumer,
        CloseReason::App,
        CloseReason::Shutdown,
        CloseReason::Http,
    ];

    pub fn label(self) -> &'static str {
        match self {
            CloseReason::Peer => "peer",
            CloseReason::ProtocolError => "protocol_error",
            CloseReason::HandshakeRejected => "handshake_rejected",
            CloseReason::IdleTimeout => "idle_timeout",
            CloseReason::SlowConsumer => "slow_consumer",
            CloseReason::App => "app",
            CloseReason::Shutdown => "shutdown",
            CloseReason::Http => "http_response",
        }
    }
}

/// Why a new connection was refused at accept, for `throng_refused_total{reason=...}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RefuseReason {
    /// The worker holds its share of `--max-connections`.
    MaxConnections,
    /// The worker's `--accept-rate` token bucket is empty.
    AcceptRate,
}

impl RefuseReason {
    pub const ALL: [RefuseReason; 2] = [RefuseReason::MaxConnections, RefuseReason::AcceptRate];

    pub fn label(self) -> &'static str {
        match self {
            RefuseReason::MaxConnections => "max_connections",
            RefuseReason::AcceptRate => "accept_rate",
        }
    }
}

/// One worker's counters.
#[derive(Default, Debug)]
pub struct WorkerMetrics {
    pub accepted: Counter,
    refused: [Counter; RefuseReason::ALL.len()],
    /// Connections given to the worker owning their session (Engine.IO sid routing).
    pub handed_over: Counter,
    /// Gauge: connections held now.
    pub open: Counter,
    closed: [Counter; CloseReason::ALL.len()],
    pub messages_in: Counter,
    pub bytes_in: Counter,
    pub messages_out: Counter,
    pub bytes_out: Counter,
    pub broadcasts: Counter,
    pub broadcast_deliveries: Counter,
    pub volatile_dropped: Counter,
    /// Gauge: bytes the kernel refused, queued in user space (updated every sweep).
    pub queued_bytes: Counter,
    /// Gauge: broadcasts waiting for another worker's full inbox.
    pub fabric_backlog: Counter,
    /// Gauge: rooms with at least one member on this worker (updated every sweep).
    pub rooms: Counter,
    /// Gauge: this turn's output pieces carried to the next turn (write budget spent).
    pub deferred_pieces: Counter,
}

impl WorkerMetrics {
    pub fn closed(&self, reason: CloseReason) -> &Counter {
        &self.closed[reason as usize]
    }

    pub fn refused(&self, reason: RefuseReason) -> &Counter {
        &self.refused[reason as usize]
    }

    /// Refusals at accept, for every reason.
    pub fn refused_total(&self) -> u64 {
        RefuseReason::ALL
            .iter()
            .map(|&r| self.refused(r).get())
            .sum()
    }
}

/// Renders every worker's counters, summed, plus per-worker gauges. `inbox_depth[i]` is
/// worker i's cross-core inbox length at the time of the scrape.
pub fn render(workers: &[&WorkerMetrics], inbox_depth: &[usize]) -> String {
    let mut out = String::with_capacity(4096);
    let sum = |f: &dyn Fn(&WorkerMetrics) -> u64| workers.iter().map(|w| f(w)).sum::<u64>();
    let mut family = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    family(
        "throng_connections_accepted_total",
        "counter",
        "TCP connections accepted.",
        sum(&|w| w.accepted.get()),
    );
    family(
        "throng_connections_handed_over_total",
        "counter",
        "Connections handed to the worker owning their session (Engine.IO sid routing).",
        sum(&|w| w.handed_over.get()),
    );
    family(
        "throng_connections_refused_total",
        "counter",
        "Connections refused at accept (503), every reason (see throng_refused_total).",
        sum(&|w| w.refused_total()),
    );
    family(
        "throng_connections_open",
        "gauge",
        "Connections held now (any phase).",
        sum(&|w| w.open.get()),
    );
    family(
        "throng_messages_in_total",
        "counter",
        "WebSocket messages received.",
        sum(&|w| w.messages_in.get()),
    );
    family(
        "throng_bytes_in_total",
        "counter",
        "Bytes read from sockets.",
        sum(&|w| w.bytes_in.get()),
    );
    family(
        "throng_messages_out_total",
        "counter",
        "WebSocket frames queued for sending (broadcast deliveries included).",
        sum(&|w| w.messages_out.get()),
    );
    family(
        "throng_bytes_out_total",
        "counter",
        "Bytes written to sockets.",
        sum(&|w| w.bytes_out.get()),
    );
    family(
        "throng_broadcasts_total",
        "counter",
        "Broadcasts published (each encoded once).",
        sum(&|w| w.broadcasts.get()),
    );
    family(
        "throng_broadcast_deliveries_total",
        "counter",
        "Broadcast frames queued to a recipient.",
        sum(&|w| w.broadcast_deliveries.get()),
    );
    family(
        "throng_volatile_dropped_total",
        "counter",
        "Volatile broadcasts dropped for recipients over --max-queued-bytes.",
        sum(&|w| w.volatile_dropped.get()),
    );
    family(
        "throng_slow_consumer_closes_total",
        "counter",
        "Connections closed with 1008 for staying over --max-queued-bytes.",
        sum(&|w| w.closed(CloseReason::SlowConsumer).get()),
    );
    let _ = writeln!(
        out,
        "# HELP throng_connections_closed_total Connections ended, by reason.\n\
         # TYPE throng_connections_closed_total counter"
    );
    for reason in CloseReason::ALL {
        let n = sum(&|w| w.closed(reason).get());
        let _ = writeln!(
            out,
            "throng_connections_closed_total{{reason=\"{}\"}} {n}",
            reason.label()
        );
    }
    let _ = writeln!(
        out,
        "# HELP throng_refused_total New connections answered 503 at accept, by reason.\n\
         # TYPE throng_refused_total counter"
    );
    for reason in RefuseReason::ALL {
        let n = sum(&|w| w.refused(reason).get());
        let _ = writeln!(
            out,
            "throng_refused_total{{reason=\"{}\"}} {n}",
            reason.label()
        );
    }
    let per_worker = |out: &mut String, name: &str, help: &str, values: &[u64]| {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} gauge");
        for (i, v) in values.iter().enumerate() {
            let _ = writeln!(out, "{name}{{worker=\"{i}\"}} {v}");
        }
    };
    let each = |f: &dyn Fn(&WorkerMetrics) -> u64| workers.iter().map(|w| f(w)).collect::<Vec<_>>();
    per_worker(
        &mut out,
        "throng_worker_queued_bytes",
        "Outbound bytes queued in user space, per worker.",
        &each(&|w| w.queued_bytes.get()),
    );
    let depths: Vec<u64> = inbox_depth.iter().map(|&d| d as u64).collect();
    per_worker(
        &mut out,
        "throng_worker_inbox_depth",
        "Broadcasts waiting in a worker's cross-core inbox.",
        &depths,
    );
    per_worker(
        &mut out,
        "throng_worker_fabric_backlog",
        "Broadcasts a worker holds for full inboxes.",
        &each(&|w| w.fabric_backlog.get()),
    );
    per_worker(
        &mut out,
        "throng_worker_deferred_pieces",
        "Frames for other connections carried to the next loop turn (write budget).",
        &each(&|w| w.deferred_pieces.get()),
    );
    per_worker(
        &mut out,
        "throng_worker_rooms",
        "Rooms (topics) with members on a worker (every sweep).",
        &each(&|w| w.rooms.get()),
    );
    per_worker(
        &mut out,
        "throng_worker_connections",
        "Connections held now, per worker.",
        &each(&|w| w.open.get()),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_workers_and_labels_reasons() {
        let a = WorkerMetrics::default();
        let b = WorkerMetrics::default();
        a.accepted.add(3);
        b.accepted.add(4);
        b.closed(CloseReason::SlowConsumer).inc();
        a.refused(RefuseReason::AcceptRate).add(2);
        b.refused(RefuseReason::MaxConnections).inc();
        a.open.set(2);
        let text = render(&[&a, &b], &[0, 5]);
        assert!(text.contains("\nthrong_connections_accepted_total 7\n"));
        assert!(text.contains("throng_connections_closed_total{reason=\"slow_consumer\"} 1\n"));
        assert!(text.contains("throng_slow_consumer_closes_total 1\n"));
        assert!(text.contains("throng_refused_total{reason=\"accept_rate\"} 2\n"));
        assert!(text.contains("throng_refused_total{reason=\"max_connections\"} 1\n"));
        assert!(text.contains("\nthrong_connections_refused_total 3\n"));
        assert!(text.contains("throng_worker_inbox_depth{worker=\"1\"} 5\n"));
        assert!(text.contains("throng_worker_connections{worker=\"0\"} 2\n"));
        // Every sample line is `name[{labels}] value`.
        for line in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, value) = line.rsplit_once(' ').expect("sample line");
            value.parse::<u64>().expect("integer value");
        }
    }
}
