//! The Redis bridge: joins this process to a bus of Socket.IO servers (Node's
//! `@socket.io/redis-adapter`, other Throng processes) and emitters
//! (`@socket.io/redis-emitter`), in the adapter's classic format (`classic.rs`).
//!
//! Two threads per process, started by `--redis-url`:
//! - the **publisher** takes broadcasts that leave this process from a bounded
//!   lock-free queue (filled by `Relay::relay` on whatever thread broadcast, a worker's
//!   included, which never waits: past `queue_bytes` a broadcast is dropped and
//!   counted) and publishes them, pipelined;
//! - the **subscriber** takes every broadcast under `<key>#*`, drops this node's own
//!   (by uid) and those of namespaces not served here, decodes each once and posts one
//!   encoded frame to every worker (`Io::deliver_here`, B's fabric).
//!
//! Redis going away never stops local delivery: both threads reconnect with backoff
//! (100 ms doubling to 5 s, with jitter) and resubscribe; one WARN when the link drops,
//! one a minute while it stays down, one INFO with the downtime when it is back.
//! Start-up without Redis serves locally and keeps trying.
//!
//! Requests (`requests.rs`): every static namespace has a counted subscription to
//! its request channel, so Node's `serverCount()` counts this process once, and this
//! process answers what Node's adapter asks (`fetchSockets`, `allRooms`,
//! `serverSideEmit` with an ack, broadcast with an ack) and asks the same of the
//! others through `Io`, waiting at most `REQUEST_TIMEOUT` for their answers.
//!
//! Two formats (`wire.rs`): the classic one above, and with `--redis-mode sharded` the
//! sharded adapter's (`sharded.rs`, subscriber in `sharded_link.rs`). The workers'
//! room watch feeds a census of public rooms (`census.rs`): room-channel broadcasts
//! with no member here are dropped, and sharded mode subscribes per room.
//!
//! Long-polling across processes (`forward.rs`, `eio.rs`): a sid names its process;
//! a polling request for another process's session is forwarded to it and replayed
//! there.
//!
//! Not yet here (issue D): a WebSocket upgrade for another process's session is
//! refused (the client stays on long-polling).

mod census;
pub mod classic;
pub mod eio;
mod forward;
mod replay;
mod requests;
pub mod sharded;
mod sharded_link;
mod tunnel;
mod wire;

pub use wire::Mode;

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use crossbeam_queue::ArrayQueue;

use crate::engineio::sid::ProcessTag;
use crate::sio::{
    ForwardedRequest, Handover, HandoverAsk, Question, Registry, Relay, Relayed, RelayedRequest,
    Reply, SocketsAction,
};

/// Broadcasts the outbound queue holds at most (besides its byte bound).
const QUEUE_SLOTS: usize = 1 << 16;
/// Publishes sent in one pipeline.
const PIPELINE: usize = 256;
const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);
/// While the link is down, a WARN this often.
const DOWN_LOG_EVERY: Duration = Duration::from_secs(60);
/// How long a publish may take before the link counts as down.
const IO_TIMEOUT: Duration = Duration::from_secs(5);
/// A quiet subscriber link is checked this often.
const PING_EVERY: Duration = Duration::from_secs(10);
/// How often a subscriber settles questions past their time.
const HOUSEKEEPING_EVERY: Duration = Duration::from_millis(100);
/// How long a blocking Redis read waits before the thread looks around.
const READ_TIMEOUT: Duration = Duration::from_millis(500);
/// How often the publisher counts the other Throng processes on the bus (`peers`).
const PEERS_EVERY: Duration = Duration::from_secs(5);

/// What the bridge is told at start.
#[derive(Clone, Debug)]
pub struct Config {
    /// `redis://host:port[/db]`.
    pub url: String,
    /// Channel prefix (`socket.io`, as the adapter's `key`).
    pub key: String,
    /// Bytes of broadcasts waiting for Redis at most; more are dropped.
    pub queue_bytes: usize,
    /// The adapter's classic format, or its sharded one.
    pub mode: Mode,
    /// This process's own listener, reached over loopback to serve polling requests
    /// forwarded by other processes.
    pub local: std::net::SocketAddr,
    /// Whether polling requests may be forwarded between processes (sids then name
    /// their process). Off when the listener speaks TLS: the loopback replay is plain.
    pub forward_polling: bool,
    /// The longest a long-poll GET is held here (pingInterval + pingTimeout).
    pub long_poll: Duration,
}

/// Counters, for logs and `/metrics`.
#[derive(Default, Debug)]
pub struct Counters {
    pub published: AtomicU64,
    pub received: AtomicU64,
    pub dropped_queue_full: AtomicU64,
    pub dropped_link_down: AtomicU64,
    pub dropped_undecodable: AtomicU64,
    pub reconnects: AtomicU64,
    /// Requests this node asked that some server did not answer in time.
    pub request_timeouts: AtomicU64,
    /// Requests from other nodes answered here.
    pub requests_answered: AtomicU64,
    /// Polling requests forwarded from here to their session's process.
    pub forwarded_out: AtomicU64,
    /// Polling requests served here for other processes.
    pub forwarded_in: AtomicU64,
    /// Forwarded polling requests that failed (owner unknown, gone, or overloaded).
    pub forward_failures: AtomicU64,
    /// WebSocket upgrades relayed from here to their session's process.
    pub tunnels_out: AtomicU64,
    /// WebSocket upgrades relayed here by other processes.
    pub tunnels_in: AtomicU64,
    /// Relayed upgrades this process could not serve (full, or not an upgrade).
    pub tunnel_failures: AtomicU64,
    /// Sessions handed from here to the process where their WebSocket landed.
    pub handovers_out: AtomicU64,
    /// Sessions handed over to this process by their owner.
    pub handovers_in: AtomicU64,
}

/// What the publisher thread takes from the queue, in order.
enum Out {
    Publish(String, Vec<u8>),
    /// A question for the other servers: counted (`PUBSUB NUMSUB`), registered, then
    /// published.
    Ask(Box<requests::Ask>),
}

/// The bridge as the workers see it: a relay for their broadcasts.
pub struct Bridge {
    /// The format, the channel prefix and this node's uid.
    wire: wire::Wire,
    /// Public rooms with members here.
    census: Arc<census::Census>,
    /// This process's name in sids and its forwarding channel.
    tag: ProcessTag,
    /// Polling requests forwarded from here, and those served here for others.
    outbound: forward::Outbound,
    /// WebSocket upgrades relayed from here, and those served here for others.
    tunnels: tunnel::Tunnels,
    /// The loop serving forwarded requests and tunnels here (started on first use).
    replayer: std::sync::OnceLock<Option<replay::Replayer>>,
    /// The longest a long-poll GET is held here.
    long_poll: Duration,
    /// When a subscriber last settled late questions.
    last_housekeeping: std::sync::Mutex<Instant>,
    /// Namespaces whose counted channel the subscriber holds now (so `PUBSUB` counts
    /// this process there).
    held_counted: std::sync::Mutex<std::collections::HashSet<String>>,
    local: std::net::SocketAddr,
    queue: ArrayQueue<Out>,
    /// Questions this node asked, by request id, waiting for answers.
    pending: requests::Pending,
    /// The static namespaces (always counted here; dynamic ones while they have a
    /// socket here).
    statics: Vec<String>,
    queued_bytes: AtomicUsize,
    max_bytes: usize,
    publisher: thread::Thread,
    pub counters: Counters,
    up: AtomicBool,
    /// The subscribing link is up (it notices a lost Redis at once: it always reads).
    subscribed: AtomicBool,
    /// Other Throng processes on the bus (each listens on its own `<key>-eio#<tag>#`),
    /// counted every `PEERS_EVERY`: none, and no WebSocket upgrade can land elsewhere,
    /// so no first CONNECT is held for a handover. `usize::MAX` until first counted.
    peers: AtomicUsize,
}

impl Relay for Bridge {
    fn relay(&self, b: &Relayed<'_>) {
        if let Some((channel, bytes)) = self.wire.broadcast(b, None) {
            self.enqueue(channel, bytes);
        }
    }

    fn request(&self, request: &RelayedRequest<'_>) {
        use classic::Request;
        let (namespace, request) = match request {
            RelayedRequest::Sockets(op) => {
                let (namespace, rooms, except) =
                    (op.namespace.clone(), op.rooms.clone(), op.except.clone());
                let request = match &op.action {
                    SocketsAction::Join(targets) | SocketsAction::Leave(targets) => {
                        Request::Rooms {
                            uid: None,
                            namespace,
                            rooms,
                            except,
                            targets: targets.clone(),
                            leave: matches!(op.action, SocketsAction::Leave(_)),
                        }
                    }
                    SocketsAction::Disconnect { close } => Request::Disconnect {
                        uid: None,
                        namespace,
                        rooms,
                        except,
                        close: *close,
                    },
                };
                (op.namespace.as_str(), request)
            }
            RelayedRequest::ServerSideEmit {
                namespace,
                elements,
            } => (
                *namespace,
                Request::ServerSideEmit {
                    uid: self.wire.uid.clone(),
                    request_id: None,
                    namespace: namespace.to_string(),
                    elements: elements
                        .iter()
                        .map(|e| String::from_utf8_lossy(e).into_owned())
                        .collect(),
                },
            ),
        };
        if let Some((channel, bytes)) = self.wire.request(namespace, &request) {
            self.enqueue(channel, bytes);
        }
    }

    fn forward(
        &self,
        owner: &ProcessTag,
        request: ForwardedRequest,
        reply_to: (usize, crate::runtime::ConnId),
    ) -> Option<u64> {
        forward::forward(self, owner, request, reply_to)
    }

    fn cancel_forward(&self, id: u64) {
        self.outbound.cancel(id);
    }

    fn can_tunnel(&self) -> bool {
        self.links_up() && self.tunnels.has_room()
    }

    fn can_hand_over(&self) -> bool {
        self.can_tunnel() && self.peers.load(Ordering::Relaxed) > 0
    }

    fn open_tunnel(
        &self,
        owner: &ProcessTag,
        target: &str,
        origin: Option<&str>,
        reply_to: (usize, crate::runtime::ConnId),
    ) -> Option<u64> {
        tunnel::open(self, owner, target, origin, reply_to)
    }

    fn tunnel_up(&self, owner: &ProcessTag, id: u64, text: bool, data: &[u8]) -> bool {
        tunnel::up(self, owner, id, text, data)
    }

    fn end_tunnel(&self, owner: &ProcessTag, id: u64) {
        tunnel::end(self, owner, id);
    }

    fn hand_over(&self, ask: &HandoverAsk, handover: &Handover) -> bool {
        tunnel::hand_over(self, ask, handover)
    }

    fn relay_tunnel(&self, ask: HandoverAsk) {
        tunnel::relay(self, ask.from, ask.id, ask.target, ask.origin);
    }

    fn ask(&self, namespace: &str, question: Question, reply: Reply) {
        if !self.links_up() {
            return reply(requests::failed("the Redis link is down"));
        }
        let ask = Box::new(requests::Ask {
            namespace: namespace.to_string(),
            question,
            reply,
        });
        match self.queue.push(Out::Ask(ask)) {
            Ok(()) => self.publisher.unpark(),
            Err(Out::Ask(ask)) => (ask.reply)(requests::failed("the Redis queue is full")),
            Err(Out::Publish(..)) => {}
        }
    }
}

impl Bridge {
    /// Queues a publish, or drops and counts it past the byte bound (never waits).
    /// `false`: dropped.
    /// Publishes `message` on the forwarding channel of process `to`.
    fn send_eio(&self, to: &ProcessTag, message: &eio::EioMessage) -> bool {
        self.enqueue(eio::channel(&self.wire.key, to), eio::encode(message))
    }

    fn enqueue(&self, channel: String, bytes: Vec<u8>) -> bool {
        let len = bytes.len();
        if self.queued_bytes.load(Ordering::Relaxed) + len > self.max_bytes {
            self.counters
                .dropped_queue_full
                .fetch_add(1, Ordering::Relaxed);
            return false;
        }
        match self.queue.push(Out::Publish(channel, bytes)) {
            Ok(()) => {
                self.queued_bytes.fetch_add(len, Ordering::Relaxed);
                self.publisher.unpark();
                true
            }
            Err(_) => {
                self.counters
                    .dropped_queue_full
                    .fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }
}

impl Bridge {
    /// This node's uid on the bus (6 characters).
    pub fn uid(&self) -> &str {
        &self.wire.uid
    }

    /// The bridge's part of `/metrics`, Prometheus text.
    pub fn render_metrics(&self, out: &mut String) {
        use std::fmt::Write;
        let c = &self.counters;
        let get = |v: &AtomicU64| v.load(Ordering::Relaxed);
        let mut family = |name: &str, kind: &str, help: &str, lines: &[(&str, u64)]| {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            for (labels, value) in lines {
                let _ = writeln!(out, "{name}{labels} {value}");
            }
        };
        family(
            "throng_redis_link_up",
            "gauge",
            "1 while the publishing link to Redis is up.",
            &[("", u64::from(self.is_up()))],
        );
        family(
            "throng_redis_published_total",
            "counter",
            "Broadcasts published on the Redis bus.",
            &[("", get(&c.published))],
        );
        family(
            "throng_redis_received_total",
            "counter",
            "Broadcasts from other nodes and emitters delivered here.",
            &[("", get(&c.received))],
        );
        family(
            "throng_redis_dropped_total",
            "counter",
            "Broadcasts not published or not delivered, by reason.",
            &[
                ("{reason=\"queue_full\"}", get(&c.dropped_queue_full)),
                ("{reason=\"link_down\"}", get(&c.dropped_link_down)),
                ("{reason=\"undecodable\"}", get(&c.dropped_undecodable)),
            ],
        );
        family(
            "throng_redis_reconnects_total",
            "counter",
            "Times a link to Redis was lost and tried again.",
            &[("", get(&c.reconnects))],
        );
        family(
            "throng_redis_request_timeouts_total",
            "counter",
            "Requests to other servers (fetchSockets, allRooms, serverSideEmit with ack) that some server did not answer in time.",
            &[("", get(&c.request_timeouts))],
        );
        family(
            "throng_redis_polling_forwarded_total",
            "counter",
            "Long-polling requests for sessions of another process, by direction.",
            &[
                ("{direction=\"out\"}", get(&c.forwarded_out)),
                ("{direction=\"in\"}", get(&c.forwarded_in)),
            ],
        );
        family(
            "throng_redis_websocket_relayed_total",
            "counter",
            "WebSocket upgrades of sessions owned by another process, relayed over the bus, by direction.",
            &[
                ("{direction=\"out\"}", get(&c.tunnels_out)),
                ("{direction=\"in\"}", get(&c.tunnels_in)),
            ],
        );
        let (tunnels_out, tunnels_in) = self.tunnels.counts();
        family(
            "throng_redis_websocket_relays_open",
            "gauge",
            "Relayed WebSockets open now, by direction (out: clients here, in: sessions here).",
            &[
                ("{direction=\"out\"}", tunnels_out as u64),
                ("{direction=\"in\"}", tunnels_in as u64),
            ],
        );
        let peers = self.peers.load(Ordering::Relaxed);
        family(
            "throng_redis_peers",
            "gauge",
            "Other Throng processes on the bus, counted every 5 s (none: no first CONNECT is held for a handover).",
            &[("", if peers == usize::MAX { 0 } else { peers as u64 })],
        );
        family(
            "throng_redis_websocket_handovers_total",
            "counter",
            "Sessions that had joined no namespace, handed over to the process where their WebSocket upgrade landed, by direction (out: from here, in: to here).",
            &[
                ("{direction=\"out\"}", get(&c.handovers_out)),
                ("{direction=\"in\"}", get(&c.handovers_in)),
            ],
        );
        family(
            "throng_redis_websocket_relay_failures_total",
            "counter",
            "Relayed WebSocket upgrades this process could not serve (too many, or not an upgrade).",
            &[("", get(&c.tunnel_failures))],
        );
        family(
            "throng_redis_polling_forward_failures_total",
            "counter",
            "Forwarded long-polling requests that failed (owner unknown, gone or busy).",
            &[("", get(&c.forward_failures))],
        );
        family(
            "throng_redis_requests_answered_total",
            "counter",
            "Requests from other servers answered here.",
            &[("", get(&c.requests_answered))],
        );
        family(
            "throng_redis_queued_bytes",
            "gauge",
            "Bytes of broadcasts waiting for Redis.",
            &[("", self.queued_bytes.load(Ordering::Relaxed) as u64)],
        );
    }

    /// Whether this process holds a counted subscription for `namespace` (so that it
    /// is one of the servers `PUBSUB` counts there).
    fn counted_in(&self, namespace: &str) -> bool {
        self.held_counted
            .lock()
            .is_ok_and(|held| held.contains(namespace))
    }

    /// Between reads of a subscriber: questions past their time, forwarded requests
    /// whose answer never came.
    /// At most every `HOUSEKEEPING_EVERY`, so that a busy subscriber does not scan
    /// the maps on every message.
    fn housekeeping(&self) {
        let Ok(mut last) = self.last_housekeeping.lock() else {
            return;
        };
        if last.elapsed() < HOUSEKEEPING_EVERY {
            return;
        }
        *last = Instant::now();
        drop(last);
        self.pending.expire(self);
        self.outbound.purge();
    }

    /// Whether the publishing link to Redis is up.
    pub fn is_up(&self) -> bool {
        self.up.load(Ordering::Relaxed)
    }

    /// Whether both links to Redis are up (what `/readyz` checks in strict mode). The
    /// publishing link finds a lost Redis only when it next publishes; the subscribing
    /// one at once, or within a PING period for a Redis cut off without a reset.
    pub fn links_up(&self) -> bool {
        self.is_up() && self.subscribed.load(Ordering::Relaxed)
    }
}

/// Starts the bridge for `registry`'s sockets: broadcasts made through its `Io` go
/// out; broadcasts and requests for the namespaces it serves come in.
pub fn start(config: Config, registry: Arc<Registry>) -> std::io::Result<Arc<Bridge>> {
    let io = registry.io();
    let client = redis::Client::open(config.url.as_str()).map_err(|e| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("--redis-url {}: {e}", config.url),
        )
    })?;
    let uid = node_uid();
    // The publisher thread must exist before the bridge (relay unparks it).
    let (tx, rx) = std::sync::mpsc::sync_channel::<Arc<Bridge>>(1);
    let publish_client = client.clone();
    let url = config.url.clone();
    let publisher = thread::Builder::new()
        .name("throng-redis-pub".into())
        .spawn(move || {
            if let Ok(bridge) = rx.recv() {
                publish_loop(&bridge, &publish_client, &url);
            }
        })?;
    let census = Arc::new(census::Census::default());
    io.set_room_watch(census.watch());
    let wire_probe = wire::Wire {
        mode: config.mode,
        key: config.key.clone(),
        uid: String::new(),
    };
    let tag = forward::pick_tag(
        |channel| count_at_start(&client, &wire_probe, channel),
        &config.key,
    );
    io.set_process_tag(tag);
    let bridge = Arc::new(Bridge {
        wire: wire::Wire {
            mode: config.mode,
            key: config.key.clone(),
            uid,
        },
        census,
        tag,
        outbound: forward::Outbound::default(),
        tunnels: tunnel::Tunnels::default(),
        replayer: std::sync::OnceLock::new(),
        long_poll: config.long_poll,
        last_housekeeping: std::sync::Mutex::new(Instant::now()),
        held_counted: std::sync::Mutex::new(std::collections::HashSet::new()),
        local: config.local,
        queue: ArrayQueue::new(QUEUE_SLOTS),
        pending: requests::Pending::default(),
        statics: registry.static_names().map(str::to_string).collect(),
        queued_bytes: AtomicUsize::new(0),
        max_bytes: config.queue_bytes.max(1),
        publisher: publisher.thread().clone(),
        counters: Counters::default(),
        up: AtomicBool::new(false),
        subscribed: AtomicBool::new(false),
        peers: AtomicUsize::new(usize::MAX),
    });
    let _ = tx.send(Arc::clone(&bridge));
    io.set_relay(Arc::clone(&bridge) as Arc<dyn Relay>);
    let sub = Arc::clone(&bridge);
    let url = config.url.clone();
    thread::Builder::new()
        .name("throng-redis-sub".into())
        .spawn(move || match sub.wire.mode {
            Mode::Classic => subscribe_loop(&sub, &client, &url, &registry),
            Mode::Sharded => sharded_link::subscribe_loop(&sub, &url, &registry),
        })?;
    tracing::info!(
        url = %config.url,
        key = %config.key,
        mode = ?config.mode,
        uid = %bridge.wire.uid,
        "Redis bridge started"
    );
    Ok(bridge)
}

/// Subscribers of `channel`, asked once at start (no retry: `None` if Redis is away).
fn count_at_start(client: &redis::Client, wire: &wire::Wire, channel: &str) -> Option<usize> {
    let mut con = client
        .get_connection_with_timeout(Duration::from_secs(1))
        .ok()?;
    let subcommand = match wire.mode {
        Mode::Classic => "NUMSUB",
        Mode::Sharded => "SHARDNUMSUB",
    };
    redis::cmd("PUBSUB")
        .arg(subcommand)
        .arg(channel)
        .query::<(String, usize)>(&mut con)
        .ok()
        .map(|(_, n)| n)
}

/// Six bytes from the kernel's generator (the clock if it fails).
/// The replay loop of `bridge`, started on first use; `None` if it could not start.
fn replayer(bridge: &Arc<Bridge>) -> Option<&replay::Replayer> {
    bridge
        .replayer
        .get_or_init(|| match replay::Replayer::start(Arc::clone(bridge)) {
            Ok(replayer) => Some(replayer),
            Err(e) => {
                tracing::error!(error = %e, "the replay loop did not start: nothing forwarded here is served");
                None
            }
        })
        .as_ref()
}

fn random6() -> [u8; 6] {
    let mut bytes = [0u8; 6];
    if crate::runtime::system::random_bytes(&mut bytes).is_err() {
        let t = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        bytes.copy_from_slice(&t.to_le_bytes()[..6]);
    }
    bytes
}

/// Six random characters of `[a-z0-9]`, as the adapter's uids.
fn node_uid() -> String {
    const ALPHABET: &[u8] = b"abcdefghijklmnopqrstuvwxyz0123456789";
    random6()
        .iter()
        .map(|b| ALPHABET[*b as usize % ALPHABET.len()] as char)
        .collect()
}

/// The link's state as one thread sees it, for the logs the module doc promises.
struct Link<'a> {
    url: &'a str,
    role: &'static str,
    down_since: Option<Instant>,
    last_warn: Instant,
    backoff: Duration,
}

impl<'a> Link<'a> {
    fn new(url: &'a str, role: &'static str) -> Link<'a> {
        Link {
            url,
            role,
            down_since: Some(Instant::now()),
            last_warn: Instant::now() - DOWN_LOG_EVERY,
            backoff: BACKOFF_MIN,
        }
    }

    fn up(&mut self) {
        if let Some(since) = self.down_since.take() {
            tracing::info!(
                url = self.url,
                link = self.role,
                down_ms = since.elapsed().as_millis() as u64,
                "Redis link up"
            );
        }
        self.backoff = BACKOFF_MIN;
    }

    /// A connection to Redis, however many tries (with backoff) it takes.
    fn connect(&mut self, client: &redis::Client) -> redis::Connection {
        loop {
            match client.get_connection_with_timeout(BACKOFF_MAX) {
                Ok(con) => return con,
                Err(e) => self.down(&e),
            }
        }
    }

    /// The link failed: log as promised, then sleep the backoff.
    fn down(&mut self, error: &dyn std::fmt::Display) {
        let now = Instant::now();
        let first = self.down_since.is_none();
        self.down_since.get_or_insert(now);
        if first || now.duration_since(self.last_warn) >= DOWN_LOG_EVERY {
            tracing::warn!(
                url = self.url,
                link = self.role,
                error = %error,
                "Redis link down: local delivery continues; retrying"
            );
            self.last_warn = now;
        }
        // Up to a quarter more, at random, so that nodes do not retry in step.
        let jitter = (self.backoff.as_millis() as u64 / 4).max(1);
        let mut random = [0u8; 8];
        let _ = crate::runtime::system::random_bytes(&mut random);
        let extra = u64::from_le_bytes(random) % jitter;
        thread::sleep(self.backoff + Duration::from_millis(extra));
        self.backoff = (self.backoff * 2).min(BACKOFF_MAX);
    }
}

/// The other Throng processes listening on the bus now (`PUBSUB CHANNELS`, or
/// `SHARDCHANNELS` in sharded mode, on `<key>-eio#*`, this one left out).
fn count_peers(bridge: &Bridge, con: &mut redis::Connection) -> redis::RedisResult<usize> {
    let subcommand = match bridge.wire.mode {
        Mode::Classic => "CHANNELS",
        Mode::Sharded => "SHARDCHANNELS",
    };
    let pattern = format!("{}-eio#*", bridge.wire.key);
    let own = eio::channel(&bridge.wire.key, &bridge.tag);
    let channels: Vec<String> = redis::cmd("PUBSUB")
        .arg(subcommand)
        .arg(pattern)
        .query(con)?;
    Ok(channels.iter().filter(|c| **c != own).count())
}

/// The publishing connection failed with `e`: it is down until `link` connects again.
fn publish_link_lost(bridge: &Bridge, link: &mut Link<'_>, e: &redis::RedisError) {
    bridge.up.store(false, Ordering::Relaxed);
    bridge.counters.reconnects.fetch_add(1, Ordering::Relaxed);
    link.down(e);
}

fn publish_loop(bridge: &Bridge, client: &redis::Client, url: &str) {
    let mut link = Link::new(url, "publish");
    let mut peers_counted: Option<Instant> = None;
    loop {
        // What is queued waits (within `queue_bytes`) for the connection.
        let mut con = link.connect(client);
        // A Redis that stops answering (paused, partitioned) fails the link instead of
        // holding this thread: the queue then fills and drops, bounded.
        if let Err(e) = con
            .set_read_timeout(Some(IO_TIMEOUT))
            .and_then(|()| con.set_write_timeout(Some(IO_TIMEOUT)))
        {
            link.down(&e);
            continue;
        }
        link.up();
        bridge.up.store(true, Ordering::Relaxed);
        loop {
            if peers_counted.is_none_or(|at| at.elapsed() >= PEERS_EVERY) {
                peers_counted = Some(Instant::now());
                match count_peers(bridge, &mut con) {
                    Ok(n) => bridge.peers.store(n, Ordering::Relaxed),
                    Err(e) => {
                        publish_link_lost(bridge, &mut link, &e);
                        break;
                    }
                }
            }
            let mut pipe = redis::pipe();
            let mut n = 0;
            let mut ask = None;
            while n < PIPELINE
                && ask.is_none()
                && let Some(out) = bridge.queue.pop()
            {
                match out {
                    Out::Publish(channel, bytes) => {
                        bridge
                            .queued_bytes
                            .fetch_sub(bytes.len(), Ordering::Relaxed);
                        pipe.cmd(bridge.wire.publish_command())
                            .arg(channel)
                            .arg(bytes)
                            .ignore();
                        n += 1;
                    }
                    // Published after what was queued before it, in order.
                    Out::Ask(a) => ask = Some(a),
                }
            }
            if n == 0 && ask.is_none() {
                thread::park_timeout(READ_TIMEOUT);
                continue;
            }
            let sent = if n > 0 {
                pipe.query::<()>(&mut con)
            } else {
                Ok(())
            };
            let sent = sent.and_then(|()| match ask {
                Some(ask) => requests::publish_ask(bridge, &mut con, *ask),
                None => Ok(()),
            });
            if let Err(e) = sent {
                bridge
                    .counters
                    .dropped_link_down
                    .fetch_add(n as u64, Ordering::Relaxed);
                publish_link_lost(bridge, &mut link, &e);
                break;
            }
            bridge
                .counters
                .published
                .fetch_add(n as u64, Ordering::Relaxed);
        }
    }
}

fn subscribe_loop(bridge: &Arc<Bridge>, client: &redis::Client, url: &str, registry: &Registry) {
    let mut link = Link::new(url, "subscribe");
    // Every answer comes on the response pattern (uncounted, and once), whichever
    // namespace the question was about.
    let patterns = [
        classic::pattern(&bridge.wire.key),
        classic::request_pattern(&bridge.wire.key),
        format!("{}-response#*", bridge.wire.key),
    ];
    // Counted subscriptions (Node's `serverCount()`): every static namespace, and every
    // dynamic one while it has a socket here.
    let mut channels: Vec<String> = Vec::new();
    let own = eio::channel(&bridge.wire.key, &bridge.tag);
    channels.push(own.clone());
    let response_prefix = format!("{}-response#", bridge.wire.key);
    let request_prefix = format!("{}-request#", bridge.wire.key);
    loop {
        let mut con = link.connect(client);
        let mut pubsub = con.as_pubsub();
        let mut counted = Counted::new(bridge, registry);
        let mut wanted = channels.clone();
        wanted.extend(counted.channels());
        if let Err(e) = pubsub
            .set_read_timeout(Some(READ_TIMEOUT))
            .and_then(|()| pubsub.psubscribe(&patterns))
            .and_then(|()| pubsub.subscribe(&wanted))
        {
            link.down(&e);
            continue;
        }
        counted.subscribed();
        link.up();
        bridge.subscribed.store(true, Ordering::Relaxed);
        let mut last_ping = Instant::now();
        loop {
            bridge.housekeeping();
            let followed = counted.follow(|channels, join| match join {
                true => pubsub.subscribe(channels),
                false => pubsub.unsubscribe(channels),
            });
            if let Err(e) = followed {
                bridge.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                link.down(&e);
                break;
            }
            let msg = match pubsub.get_message() {
                Ok(msg) => msg,
                Err(e) if e.is_timeout() => {
                    // Quiet: a Redis cut off without a reset is found by a PING.
                    if last_ping.elapsed() >= PING_EVERY {
                        last_ping = Instant::now();
                        if let Err(e) = pubsub.ping::<redis::Value>() {
                            bridge.subscribed.store(false, Ordering::Relaxed);
                            bridge.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                            link.down(&e);
                            break;
                        }
                    }
                    continue;
                }
                Err(e) => {
                    bridge.subscribed.store(false, Ordering::Relaxed);
                    bridge.counters.reconnects.fetch_add(1, Ordering::Relaxed);
                    bridge.pending.fail_all("the Redis link went down");
                    link.down(&e);
                    break;
                }
            };
            let channel = msg.get_channel_name();
            let bytes = msg.get_payload_bytes();
            if channel == own {
                forward::on_message(bridge, registry, bytes);
                continue;
            }
            if channel.starts_with(&response_prefix) {
                if let Some(response) = classic::decode_response(bytes) {
                    bridge.pending.on_response(response);
                }
                continue;
            }
            // Requests are served from the pattern copy, which every one has; the copy
            // on a counted channel only makes this process counted.
            if !msg.from_pattern() && channel.starts_with(&request_prefix) {
                continue;
            }
            let is_counted = counted.holds(channel);
            if let Some(request) =
                classic::decode_request(&bridge.wire.key, channel.as_bytes(), bytes)
            {
                requests::serve(bridge, registry, request, is_counted);
                continue;
            }
            if !channel.starts_with(&request_prefix) {
                on_broadcast(bridge, registry, bytes);
            }
        }
    }
}

/// The counted subscriptions a subscriber holds: each static namespace's, and each
/// dynamic namespace's while it has a socket here (from the census).
struct Counted<'a> {
    bridge: &'a Bridge,
    /// Namespace → its channels (the counted one first).
    held: std::collections::HashMap<String, Vec<String>>,
}

impl<'a> Counted<'a> {
    fn new(bridge: &'a Bridge, registry: &Registry) -> Counted<'a> {
        let mut held = std::collections::HashMap::new();
        let namespaces = registry.static_names().map(str::to_string);
        for ns in namespaces.chain(bridge.census.namespaces()) {
            let channels = bridge.wire.namespace_channels(&ns);
            held.insert(ns, channels);
        }
        if let Ok(mut now) = bridge.held_counted.lock() {
            now.clear();
        }
        Counted { bridge, held }
    }

    /// Records that the subscriptions of every held namespace have been made.
    fn subscribed(&self) {
        if let Ok(mut now) = self.bridge.held_counted.lock() {
            now.clear();
            now.extend(self.held.keys().cloned());
        }
    }

    /// Every channel to subscribe to now.
    fn channels(&self) -> Vec<String> {
        self.held.values().flatten().cloned().collect()
    }

    /// Whether `channel` is a counted channel held here.
    fn holds(&self, channel: &str) -> bool {
        self.held
            .values()
            .any(|c| c.first().is_some_and(|f| f == channel))
    }

    /// Subscribes (`join`) or unsubscribes through `apply` as dynamic namespaces gain
    /// their first socket here or lose their last.
    fn follow(
        &mut self,
        mut apply: impl FnMut(&[String], bool) -> redis::RedisResult<()>,
    ) -> redis::RedisResult<()> {
        for (ns, present) in self.bridge.census.namespace_changes() {
            if self.bridge.statics.contains(&ns) {
                continue;
            }
            match (present, self.held.contains_key(&ns)) {
                (true, false) => {
                    let channels = self.bridge.wire.namespace_channels(&ns);
                    apply(&channels, true)?;
                    self.held.insert(ns, channels);
                    self.subscribed();
                }
                (false, true) => {
                    if let Some(channels) = self.held.remove(&ns) {
                        // Not counted from the moment it starts leaving.
                        self.subscribed();
                        apply(&channels, false)?;
                    }
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// A broadcast from the bus, to this process's sockets.
fn on_broadcast(bridge: &Bridge, registry: &Registry, bytes: &[u8]) {
    let Ok(message) = classic::decode(bytes) else {
        bridge
            .counters
            .dropped_undecodable
            .fetch_add(1, Ordering::Relaxed);
        return;
    };
    deliver(bridge, registry, &message);
}

/// A broadcast from another node, to this process's sockets: not this node's own,
/// for a namespace served here, and, for one room, a room with a member here.
fn deliver(bridge: &Bridge, registry: &Registry, message: &classic::Message) {
    if message.uid == bridge.wire.uid || !registry.serves(&message.namespace) {
        return;
    }
    if let [room] = &message.rooms[..]
        && !bridge.census.has(&message.namespace, room)
    {
        return;
    }
    bridge.counters.received.fetch_add(1, Ordering::Relaxed);
    let _ = message.as_relayed(|b| registry.io().deliver_here(b));
}
