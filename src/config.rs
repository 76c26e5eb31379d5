//! Every bound the server enforces, in one plain struct. A leaf module: nothing here
//! depends on the rest of the crate, and every other layer reads its limits from here.

use std::net::SocketAddr;
use std::time::Duration;

/// What the server does with the messages it receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AppKind {
    /// Send every text and binary message back unchanged.
    Echo,
    /// The websocket-shootout protocol: echo and broadcast with a result.
    Shootout,
    /// Topic publish/subscribe over plain WebSocket (JSON).
    Pubsub,
    /// Socket.IO at `/socket.io/`, the contract of the official-client tests.
    Conformance,
    /// The shootout protocol over Socket.IO at `/socket.io/` (echo, broadcast).
    SioShootout,
}

/// Which kernel interface moves the bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DriverKind {
    /// Readiness events through epoll (mio).
    Epoll,
    /// Completion events through io_uring (multishot accept and receive, provided buffers).
    Uring,
}

/// Bounds on everything that grows with input, and the timeouts that end idle states.
#[derive(Clone, Copy, Debug)]
pub struct Limits {
    /// Largest WebSocket message, summed over fragments; larger → close 1009.
    pub max_message: usize,
    /// Largest HTTP request head; larger → 431.
    pub max_head: usize,
    /// A request head must arrive within this; else 408 and close (slowloris).
    pub handshake_timeout: Duration,
    /// A connection silent this long is pinged; silent as long again, it is closed (1001).
    pub idle_timeout: Duration,
    /// How long to wait for the peer's close reply, or for its FIN after ours.
    pub close_timeout: Duration,
    /// On shutdown, how long connections get to finish closing after the drain window.
    pub drain_timeout: Duration,
    /// On shutdown, the time over which clients are told to go (spread evenly).
    pub drain_window: Duration,
    /// Outbound bytes queued per connection (what the kernel refused) past which the
    /// server stops reading from it, drops volatile broadcasts to it, and starts the
    /// slow-consumer grace period. Broadcasts past twice this close it at once.
    pub max_queued_bytes: usize,
    /// How long a connection may stay over `max_queued_bytes` before it is closed (1008).
    pub slow_consumer_grace: Duration,
    /// Rooms (topics) one connection may be in.
    pub max_rooms_per_connection: usize,
    /// Connections one worker holds at most; more are refused at accept (503).
    pub max_connections_per_worker: usize,
    /// New connections one worker accepts a second (burst the same); more are refused
    /// at accept (503). `None`: no rate limit.
    pub accept_rate: Option<u32>,
    /// Seconds a refused client is told to wait (`Retry-After`).
    pub retry_after_secs: u32,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_message: 16 << 20,
            max_head: 8 << 10,
            handshake_timeout: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(120),
            close_timeout: Duration::from_secs(3),
            drain_timeout: Duration::from_secs(10),
            drain_window: Duration::from_secs(10),
            max_queued_bytes: 256 << 10,
            slow_consumer_grace: Duration::from_secs(10),
            max_rooms_per_connection: 1024,
            max_connections_per_worker: usize::MAX,
            accept_rate: None,
            retry_after_secs: 5,
        }
    }
}

/// The whole server configuration, built by `main.rs` from flags.
#[derive(Clone, Debug)]
pub struct Config {
    pub addr: SocketAddr,
    pub app: AppKind,
    pub workers: usize,
    pub driver: DriverKind,
    pub limits: Limits,
    /// Origins allowed to read Engine.IO polling responses cross-origin (`*`: any);
    /// empty: CORS off.
    pub cors_origins: Vec<String>,
    /// Whether cross-origin polling may carry cookies.
    pub cors_credentials: bool,
    /// The Redis bus to join (Socket.IO apps), if any.
    pub redis: Option<Redis>,
    /// `/readyz` answers 503 while the Redis link is down (with `redis` only).
    pub ready_requires_redis: bool,
    /// Where the admin listener (ops endpoints, `POST /admin/drain`) listens, if at all.
    pub admin: Option<SocketAddr>,
    /// TLS on the serving port (`wss://`, `https://`), if set.
    pub tls: Option<TlsFiles>,
}

/// A certificate chain and its key, PEM files (read again on SIGHUP).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TlsFiles {
    pub cert: std::path::PathBuf,
    pub key: std::path::PathBuf,
}

/// Where the Redis bridge connects and how much it holds while Redis is away.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Redis {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Channel prefix, the adapter's `key` (`socket.io`).
    pub key: String,
    /// Bytes of broadcasts queued for Redis at most; past it they are dropped, counted.
    pub queue_bytes: usize,
    /// The adapter's classic format or its sharded one (`--redis-mode`).
    pub mode: RedisMode,
}

/// `--redis-mode`: which of `@socket.io/redis-adapter`'s formats the bus speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum RedisMode {
    /// `createAdapter` (8.x) and the emitter: `PUBLISH`/`PSUBSCRIBE`, msgpack broadcasts.
    #[default]
    Classic,
    /// `createShardedAdapter`: Redis 7 `SPUBLISH`/`SSUBSCRIBE`, `{uid, nsp, type, data}`.
    Sharded,
}

impl Default for Config {
    /// What `throng serve` does without flags: every interface, port 8080, echo, one
    /// worker per allowed CPU (set by the caller; 1 here), epoll, CORS off.
    fn default() -> Config {
        Config {
            addr: SocketAddr::from(([0, 0, 0, 0], 8080)),
            app: AppKind::Echo,
            workers: 1,
            driver: DriverKind::Epoll,
            limits: Limits::default(),
            cors_origins: Vec::new(),
            cors_credentials: false,
            redis: None,
            ready_requires_redis: false,
            admin: None,
            tls: None,
        }
    }
}
