//! Throng: a WebSocket server for Linux built to hold very many connections per core.
//!
//! Layers (dependencies point down only; see `../shared/design/ARCHITECTURE.md`):
//!
//! ```text
//!  main.rs / server      binary and public entry points            (L6)
//!  admin                 the admin listener: ops endpoints, drain  (L6)
//!  bench                 the load generator (client side of `ws`)
//!  app                   what a server does: echo, shootout, pubsub,
//!                        conformance (L5)
//!  bridge                the Redis bus: the Socket.IO adapter's and
//!                        emitter's formats, forwarded polling, relayed
//!                        WebSockets (L5; its own thread)
//!  sio                   Socket.IO over Engine.IO as a worker App:
//!                        namespaces, handlers, sockets, acks    (L4.5)
//!  worker                one per core: connections, phases, timers (L4)
//!  fabric                cross-core inboxes, encode-once broadcast,
//!                        per-worker room index                     (L3)
//!  runtime               Driver seam (epoll via mio, io_uring), listeners (L2)
//!  ws, http, engineio,   sans-IO protocol cores                    (L1)
//!  socketio
//!  config                every bound in one plain struct           (leaf)
//!  settings              `--config` TOML file → flag defaults     (leaf)
//!  metrics               per-worker counters, Prometheus text      (leaf)
//! ```
//!
//! `tests/layering.rs` checks that each module imports only what its layer allows.

pub mod admin;
pub mod app;
pub mod bench;
pub mod bridge;
pub mod config;
pub mod engineio;
pub mod fabric;
pub mod http;
pub mod metrics;
pub mod runtime;
pub mod server;
pub mod settings;
pub mod sio;
pub mod socketio;
pub mod worker;
pub mod ws;

/// Serves the Socket.IO namespaces of `app` at `/socket.io/` with Node's default
/// timings (`server::serve_socketio` takes others) until SIGINT/SIGTERM:
///
/// ```no_run
/// use throng::sio::{ConnectError, Namespace, Registry};
///
/// let app = Registry::new().ns(
///     Namespace::new("/chat")
///         .middleware(|hs| match hs.auth_str("token").as_deref() {
///             Some("s3cret") => Ok(()),
///             _ => Err(ConnectError::new("unauthorized")),
///         })
///         .on_connect(|cx, _hs| {
///             cx.join("lobby");
///         })
///         .on("say", |cx, ev| {
///             // Encoded once, delivered on every core.
///             cx.broadcast().to(&["lobby"]).emit("said", &ev.raw_args(), &[]);
///             cx.ack_ser(ev, &("ok",)); // nothing if no ack was asked
///         }),
/// );
/// let config = throng::config::Config {
///     addr: "127.0.0.1:3000".parse().unwrap(),
///     workers: 2,
///     ..Default::default()
/// };
/// throng::serve(config, app).expect("serve");
/// ```
pub fn serve(
    config: config::Config,
    app: sio::Registry,
) -> Result<worker::Stats, server::ServeError> {
    server::serve_socketio(config, app, sio::Config::default())
}
