//! Starting and stopping a server: bind every worker's listener first (so that "port in
//! use" is one clear error before anything runs), size against the open-file limit, start
//! one pinned thread per worker, and turn SIGINT/SIGTERM into a graceful drain.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;

use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use crate::app::{Echo, PubSub, Shootout};
use crate::config::{AppKind, Config, DriverKind, Limits};
use crate::fabric::{Fabric, Wake};
use crate::runtime::epoll::Epoll;
use crate::runtime::tls::{self, Tls};
use crate::runtime::uring::Uring;
use crate::runtime::{Driver, WorkerWaker, listener, system};
use crate::worker::{App, Stats, Worker};

/// A worker's waker, whichever driver runs it, as the fabric sees it.
struct DriverWake(WorkerWaker);

impl Wake for DriverWake {
    fn wake(&self) -> std::io::Result<()> {
        self.0.wake()
    }
}

/// File descriptors kept back for listeners, wakers, logs and the like.
const RESERVED_FDS: u64 = 32;

/// Why the server could not start or stopped abnormally.
#[derive(Debug)]
pub enum ServeError {
    Bind(std::net::SocketAddr, std::io::Error),
    FdLimit { requested: usize, limit: u64 },
    Setup(String),
    Worker(usize, std::io::Error),
}

impl fmt::Display for ServeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ServeError::Bind(addr, e) => write!(f, "cannot listen on {addr}: {e}"),
            ServeError::FdLimit { requested, limit } => write!(
                f,
                "--max-connections {requested} needs more file descriptors than the open-file \
                 limit allows ({limit}; at most {} connections): raise it with `ulimit -n` \
                 or LimitNOFILE",
                limit.saturating_sub(RESERVED_FDS)
            ),
            ServeError::Setup(what) => write!(f, "{what}"),
            ServeError::Worker(i, e) => write!(f, "worker {i} failed: {e}"),
        }
    }
}

impl std::error::Error for ServeError {}

/// Runs the server `config.app` names until SIGINT/SIGTERM and a completed drain.
pub fn serve(config: Config, max_connections: Option<usize>) -> Result<Stats, ServeError> {
    match config.app {
        AppKind::Echo => run(config, max_connections, |_| Echo),
        AppKind::Shootout => run(config, max_connections, |_| Shootout),
        AppKind::Pubsub => run(config, max_connections, |_| PubSub),
        AppKind::Conformance => serve_registry(
            config,
            max_connections,
            crate::app::conformance::registry(),
            crate::app::conformance::settings(),
        ),
        AppKind::SioShootout => serve_registry(
            config,
            max_connections,
            crate::app::sio_shootout::registry(),
            crate::sio::Config::default(),
        ),
    }
}

/// Runs a Socket.IO server with your namespaces (`sio::Registry`) and `settings`
/// until SIGINT/SIGTERM and a completed drain; `config.app` is not used. Handles made
/// with `Registry::io` reach its sockets once it runs.
pub fn serve_socketio(
    config: Config,
    app: crate::sio::Registry,
    settings: crate::sio::Config,
) -> Result<Stats, ServeError> {
    serve_registry(config, None, app, settings)
}

/// A Socket.IO server of `app`'s namespaces, one registry shared by every worker, on
/// the Redis bus if `config.redis` says so.
fn serve_registry(
    mut config: Config,
    max_connections: Option<usize>,
    app: crate::sio::Registry,
    settings: crate::sio::Config,
) -> Result<Stats, ServeError> {
    // maxPayload, advertised in the open packet, is the WebSocket message limit.
    config.limits.max_message = config.limits.max_message.min(settings.max_payload);
    cap_socketio_workers(&mut config);
    let cors = Arc::new(crate::sio::Cors::new(
        config.cors_origins.iter().cloned(),
        config.cors_credentials,
    ));
    let app = Arc::new(app);
    let bridge = match &config.redis {
        Some(redis) => Some(
            crate::bridge::start(
                crate::bridge::Config {
                    url: redis.url.clone(),
                    key: redis.key.clone(),
                    queue_bytes: redis.queue_bytes,
                    mode: redis.mode,
                    local: loopback_of(config.addr),
                    forward_polling: config.tls.is_none(),
                    long_poll: settings.ping_interval + settings.ping_timeout,
                },
                Arc::clone(&app),
            )
            .map_err(|e| ServeError::Setup(format!("cannot start the Redis bridge: {e}")))?,
        ),
        None => None,
    };
    let extras = bridge
        .map(|bridge| bridge_extras(bridge, config.ready_requires_redis))
        .unwrap_or_default();
    run_with_extras(config, max_connections, extras, |index| {
        crate::sio::Server::new(settings, Arc::clone(&app), index).with_cors(Arc::clone(&cors))
    })
}

/// Where this process's own listener is reached from inside it: loopback when it
/// listens on every address.
fn loopback_of(addr: std::net::SocketAddr) -> std::net::SocketAddr {
    match addr.ip() {
        ip if ip.is_unspecified() && ip.is_ipv4() => ([127, 0, 0, 1], addr.port()).into(),
        ip if ip.is_unspecified() => (std::net::Ipv6Addr::LOCALHOST, addr.port()).into(),
        _ => addr,
    }
}

/// What the Redis bridge adds to `/metrics`, and to `/readyz` in strict mode.
fn bridge_extras(bridge: Arc<crate::bridge::Bridge>, strict: bool) -> Extras {
    let readiness = strict.then(|| {
        let bridge = Arc::clone(&bridge);
        Box::new(move || (!bridge.links_up()).then_some("redis link down"))
            as crate::fabric::ReadinessCheck
    });
    Extras {
        metrics: Some(Box::new(move |out: &mut String| bridge.render_metrics(out))),
        readiness,
    }
}

/// What parts outside the workers add to the operator's endpoints.
#[derive(Default)]
struct Extras {
    /// More of `/metrics`.
    metrics: Option<crate::fabric::MetricsRenderer>,
    /// A condition of `/readyz`.
    readiness: Option<crate::fabric::ReadinessCheck>,
}

/// A Socket.IO session's sid names its worker in one of 64 characters: more workers
/// could not be told apart, so a Socket.IO server runs at most 64.
fn cap_socketio_workers(config: &mut Config) {
    let max = crate::sio::MAX_WORKERS;
    if config.workers > max {
        tracing::warn!(
            requested = config.workers,
            "a Socket.IO server runs at most {max} workers (a sid names its worker in one \
             character): using {max}"
        );
        config.workers = max;
    }
}

/// Binds, sizes and starts one worker per core with `make_app(index)`, then waits.
fn run<A: App>(
    config: Config,
    max_connections: Option<usize>,
    make_app: impl Fn(usize) -> A,
) -> Result<Stats, ServeError> {
    run_with_extras(config, max_connections, Extras::default(), make_app)
}

/// `run`, with more to show at `/metrics` and `/readyz`.
fn run_with_extras<A: App>(
    mut config: Config,
    max_connections: Option<usize>,
    extras: Extras,
    make_app: impl Fn(usize) -> A,
) -> Result<Stats, ServeError> {
    let fd_limit = system::raise_fd_limit().map_err(|e| ServeError::Setup(e.to_string()))?;
    let fd_room = fd_limit.saturating_sub(RESERVED_FDS) as usize;
    let total = match max_connections {
        Some(n) if n as u64 > fd_limit.saturating_sub(RESERVED_FDS) => {
            return Err(ServeError::FdLimit {
                requested: n,
                limit: fd_limit,
            });
        }
        Some(n) => n,
        None => fd_room,
    };
    let workers = config.workers.max(1);
    config.limits.max_connections_per_worker = total.div_ceil(workers).max(1);

    let mut listeners = Vec::with_capacity(workers);
    for _ in 0..workers {
        listeners.push(listener::bind(config.addr).map_err(|e| ServeError::Bind(config.addr, e))?);
    }

    match config.driver {
        DriverKind::Epoll => {
            let drivers = make_drivers(listeners, Epoll::new, Epoll::waker)?;
            launch(drivers, config, total, fd_limit, extras, make_app)
        }
        DriverKind::Uring => {
            let drivers = make_drivers(listeners, Uring::new, Uring::waker)?;
            launch(drivers, config, total, fd_limit, extras, make_app)
        }
    }
}

/// One driver per listener, with the wakers other threads use to reach them.
fn make_drivers<D>(
    listeners: Vec<std::net::TcpListener>,
    new: impl Fn(std::net::TcpListener) -> std::io::Result<D>,
    waker: impl Fn(&D) -> WorkerWaker,
) -> Result<(Vec<D>, Vec<WorkerWaker>), ServeError> {
    let mut drivers = Vec::with_capacity(listeners.len());
    for listener in listeners {
        drivers.push(
            new(listener)
                .map_err(|e| ServeError::Setup(format!("cannot create the event loop: {e}")))?,
        );
    }
    let wakers = drivers.iter().map(waker).collect();
    Ok((drivers, wakers))
}

/// Starts one pinned worker thread per driver, then waits for them all.
fn launch<D: Driver + Send + 'static, A: App>(
    (drivers, wakers): (Vec<D>, Vec<WorkerWaker>),
    config: Config,
    total: usize,
    fd_limit: u64,
    extras: Extras,
    make_app: impl Fn(usize) -> A,
) -> Result<Stats, ServeError> {
    let workers = drivers.len();
    let shutdown = Arc::new(AtomicBool::new(false));
    let cpus = system::allowed_cpus();
    let fabric = Arc::new(Fabric::new(
        wakers
            .iter()
            .map(|w| Box::new(DriverWake(w.clone())) as Box<dyn Wake>)
            .collect(),
    ));
    if let Some(extra) = extras.metrics {
        fabric.add_metrics(extra);
    }
    if let Some(check) = extras.readiness {
        fabric.add_readiness(check);
    }
    let tls = load_tls(&config)?;
    let limits = config.limits;
    let mut handles = Vec::with_capacity(workers);
    for (index, driver) in drivers.into_iter().enumerate() {
        let cpu = (!cpus.is_empty()).then(|| cpus[index % cpus.len()]);
        let start = WorkerStart {
            index,
            cpu,
            limits,
            fabric: Arc::clone(&fabric),
            shutdown: Arc::clone(&shutdown),
        };
        let handle = match &tls {
            Some(shared) => start.spawn(Tls::new(driver, Arc::clone(shared)), make_app(index)),
            None => start.spawn(driver, make_app(index)),
        }
        .map_err(|e| ServeError::Setup(format!("cannot start worker thread: {e}")))?;
        handles.push(handle);
    }

    let drain = drain_trigger(
        Arc::clone(&shutdown),
        Arc::clone(&fabric),
        wakers,
        config.limits,
    );
    handle_signals(Arc::clone(&drain), tls)?;
    if let Some(addr) = config.admin {
        crate::admin::start(addr, Arc::clone(&fabric), drain)
            .map_err(|e| ServeError::Setup(format!("cannot listen on {addr} (admin): {e}")))?;
    }

    tracing::info!(
        "listening on {} (workers {workers}, driver {:?}, app {:?}, max connections {total}, \
         open-file limit {fd_limit})",
        config.addr,
        config.driver,
        config.app,
    );

    let mut sum = Stats::default();
    for (index, handle) in handles.into_iter().enumerate() {
        let stats = handle
            .join()
            .map_err(|_| ServeError::Setup(format!("worker {index} panicked")))?
            .map_err(|e| ServeError::Worker(index, e))?;
        sum.add(&stats);
    }
    tracing::info!(?sum, "stopped");
    Ok(sum)
}

/// What starts a drain, from a signal or `POST /admin/drain` (once; later calls only
/// log): `/readyz` turns 503, every worker stops accepting and tells its clients to go
/// over the drain window (`worker/drain.rs`).
fn drain_trigger(
    shutdown: Arc<AtomicBool>,
    fabric: Arc<Fabric>,
    wakers: Vec<WorkerWaker>,
    limits: Limits,
) -> crate::admin::DrainTrigger {
    Arc::new(move |why: &'static str| {
        if shutdown.swap(true, Ordering::Relaxed) {
            tracing::info!(why, "already draining");
            return;
        }
        fabric.set_draining();
        tracing::info!(
            why,
            window_ms = limits.drain_window.as_millis() as u64,
            timeout_ms = limits.drain_timeout.as_millis() as u64,
            "draining: not accepting; telling clients to reconnect elsewhere over the window"
        );
        for waker in &wakers {
            let _ = waker.wake();
        }
    })
}

/// The TLS layer's shared state, if `config.tls` asks for TLS.
fn load_tls(config: &Config) -> Result<Option<Arc<tls::Shared>>, ServeError> {
    let Some(files) = &config.tls else {
        return Ok(None);
    };
    let shared = tls::Shared::load(&files.cert, &files.key).map_err(ServeError::Setup)?;
    tracing::info!(cert = %files.cert.display(), "TLS on (1.3 and 1.2); SIGHUP reloads the certificate");
    Ok(Some(shared))
}

/// SIGINT/SIGTERM start the drain; a second one exits at once (status 1). With TLS,
/// SIGHUP reloads the certificate for new connections.
fn handle_signals(
    drain: crate::admin::DrainTrigger,
    tls: Option<Arc<tls::Shared>>,
) -> Result<(), ServeError> {
    let mut wanted = vec![SIGINT, SIGTERM];
    if tls.is_some() {
        wanted.push(SIGHUP);
    }
    let mut signals = Signals::new(&wanted)
        .map_err(|e| ServeError::Setup(format!("cannot install signal handlers: {e}")))?;
    thread::Builder::new()
        .name("throng-signals".into())
        .spawn(move || {
            let mut stops = 0;
            for signal in signals.forever() {
                if signal == SIGHUP {
                    if let Some(tls) = &tls {
                        match tls.reload() {
                            Ok(()) => tracing::info!("SIGHUP: certificate reloaded"),
                            Err(e) => tracing::error!("SIGHUP: {e}; keeping the old certificate"),
                        }
                    }
                    continue;
                }
                stops += 1;
                if stops > 1 {
                    tracing::warn!(signal, "second signal: exiting without draining");
                    std::process::exit(1);
                }
                drain(if signal == SIGTERM {
                    "SIGTERM"
                } else {
                    "SIGINT"
                });
            }
        })
        .map_err(|e| ServeError::Setup(format!("cannot start signal thread: {e}")))?;
    Ok(())
}

/// What one worker thread needs besides its driver and app.
struct WorkerStart {
    index: usize,
    cpu: Option<usize>,
    limits: Limits,
    fabric: Arc<Fabric>,
    shutdown: Arc<AtomicBool>,
}

impl WorkerStart {
    fn spawn<D: Driver + Send + 'static, A: App>(
        self,
        driver: D,
        app: A,
    ) -> std::io::Result<thread::JoinHandle<std::io::Result<Stats>>> {
        let WorkerStart {
            index,
            cpu,
            limits,
            fabric,
            shutdown,
        } = self;
        let mut worker = Worker::new(driver, app, limits, fabric, index, shutdown);
        thread::Builder::new()
            .name(format!("throng-w{index}"))
            .spawn(move || {
                if let Some(cpu) = cpu
                    && let Err(e) = system::pin_current_thread(cpu)
                {
                    tracing::warn!(worker = index, cpu, error = %e, "cannot pin worker");
                }
                worker.run()
            })
    }
}
