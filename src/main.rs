//! The `throng` binary: flags → `Config` → `server::serve` (or the load generator).
//! No logic of its own.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand, ValueEnum};

use throng::config::{AppKind, Config, DriverKind, Limits};

#[derive(Parser)]
#[command(
    name = "throng",
    version,
    about = "A WebSocket server built for very many connections per core"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
    /// Load generator against a server on this machine (loopback only).
    #[command(subcommand)]
    Bench(throng::bench::BenchCommand),
}

#[derive(Clone, Copy, ValueEnum)]
enum AppArg {
    /// Echo every text and binary message back unchanged, at any path.
    Echo,
    /// websocket-shootout: {"type":"echo"|"broadcast","payload":X} (broadcast to all).
    Shootout,
    /// Topic fan-out: {"op":"subscribe"|"unsubscribe"|"publish","topic":T,...} (README).
    Pubsub,
    /// Socket.IO (`/socket.io/`, polling and WebSocket) made to the official-client test contract.
    Conformance,
    /// websocket-shootout over Socket.IO (`/socket.io/`, namespace `/`): events `echo`, `broadcast`.
    SioShootout,
}

#[derive(Clone, Copy, ValueEnum)]
enum DriverArg {
    /// epoll, through mio.
    Epoll,
    /// io_uring (Linux 6.1 or later); refuses to start if the kernel lacks a piece.
    Uring,
    /// io_uring when the kernel supports everything it needs, else epoll.
    Auto,
}

#[derive(clap::Args)]
struct ServeArgs {
    /// Read settings from this TOML file, keys named as these flags
    /// (`max-connections = 50000`); flags and THRONG_* variables win over it.
    #[arg(long, env = "THRONG_CONFIG")]
    config: Option<std::path::PathBuf>,
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0", env = "THRONG_HOST")]
    host: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = 8080, env = "THRONG_PORT")]
    port: u16,
    /// What the server does with messages.
    #[arg(long, env = "THRONG_APP", value_enum, default_value = "echo")]
    app: AppArg,
    /// Worker threads, one event loop and listener each (default: one per allowed CPU).
    #[arg(long, env = "THRONG_WORKERS")]
    workers: Option<usize>,
    /// Kernel interface for socket I/O.
    #[arg(long, env = "THRONG_DRIVER", value_enum, default_value = "epoll")]
    driver: DriverArg,
    /// Largest WebSocket message in bytes, over all its fragments (larger: close 1009).
    #[arg(long, env = "THRONG_MAX_MESSAGE_SIZE", default_value_t = Limits::default().max_message)]
    max_message_size: usize,
    /// Seconds of silence before a ping; as long again without input closes (1001).
    #[arg(long, env = "THRONG_IDLE_TIMEOUT", default_value_t = 120)]
    idle_timeout: u64,
    /// Seconds a client has to send its request head (408 after).
    #[arg(long, env = "THRONG_HANDSHAKE_TIMEOUT", default_value_t = 10)]
    handshake_timeout: u64,
    /// Seconds to wait for clients to finish closing after the drain window
    /// (SIGTERM, SIGINT or POST /admin/drain).
    #[arg(long, env = "THRONG_DRAIN_TIMEOUT", default_value_t = 10)]
    drain_timeout: u64,
    /// Seconds over which a drain tells clients to reconnect elsewhere, evenly spread
    /// (0: all at once).
    #[arg(long, env = "THRONG_DRAIN_WINDOW", default_value_t = 10)]
    drain_window: u64,
    /// Port of the admin listener (/metrics, /healthz, /readyz, POST /admin/drain);
    /// none without it.
    #[arg(long, env = "THRONG_ADMIN_PORT")]
    admin_port: Option<u16>,
    /// Serve TLS (wss://, https://) with this certificate chain (PEM, leaf first);
    /// needs --tls-key. SIGHUP reads both files again.
    #[arg(long, env = "THRONG_TLS_CERT", requires = "tls_key")]
    tls_cert: Option<std::path::PathBuf>,
    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1).
    #[arg(long, env = "THRONG_TLS_KEY", requires = "tls_cert")]
    tls_key: Option<std::path::PathBuf>,
    /// Address of the admin listener.
    #[arg(long, env = "THRONG_ADMIN_HOST", default_value = "127.0.0.1")]
    admin_host: IpAddr,
    /// Outbound bytes queued for one slow reader before the server stops reading from it
    /// and drops volatile broadcasts to it; twice this closes it (1008).
    #[arg(long, env = "THRONG_MAX_QUEUED_BYTES", default_value_t = Limits::default().max_queued_bytes)]
    max_queued_bytes: usize,
    /// Seconds a connection may stay over --max-queued-bytes before it is closed (1008).
    #[arg(long, env = "THRONG_SLOW_CONSUMER_GRACE", default_value_t = Limits::default().slow_consumer_grace.as_secs())]
    slow_consumer_grace: u64,
    /// Rooms (pubsub topics) one connection may be in.
    #[arg(long, env = "THRONG_MAX_ROOMS_PER_CONNECTION", default_value_t = Limits::default().max_rooms_per_connection)]
    max_rooms_per_connection: usize,
    /// Connections held at most, over all workers (default: what the open-file limit allows).
    #[arg(long, env = "THRONG_MAX_CONNECTIONS")]
    max_connections: Option<usize>,
    /// New connections each worker accepts a second (a token bucket, burst the same);
    /// more get 503 with Retry-After. Unlimited without it.
    #[arg(long, env = "THRONG_ACCEPT_RATE", value_parser = clap::value_parser!(u32).range(1..))]
    accept_rate: Option<u32>,
    /// Seconds a client refused with 503 is told to wait (Retry-After).
    #[arg(long, env = "THRONG_RETRY_AFTER", default_value_t = Limits::default().retry_after_secs)]
    retry_after: u32,
    /// Origins allowed to use Engine.IO polling cross-origin (comma-separated, or `*`);
    /// CORS is off without it.
    #[arg(long, env = "THRONG_CORS_ORIGIN", value_delimiter = ',')]
    cors_origin: Vec<String>,
    /// Let cross-origin polling requests carry cookies (Access-Control-Allow-Credentials).
    #[arg(long, env = "THRONG_CORS_CREDENTIALS")]
    cors_credentials: bool,
    /// Join a Redis bus of Socket.IO servers and emitters (redis://host:port[/db]), as
    /// `@socket.io/redis-adapter` does (Socket.IO apps only).
    #[arg(long, env = "THRONG_REDIS_URL")]
    redis_url: Option<String>,
    /// Channel prefix on the Redis bus (the adapter's `key`).
    #[arg(long, env = "THRONG_REDIS_KEY", default_value = "socket.io")]
    redis_key: String,
    /// Bytes of broadcasts held for Redis while it is slow or away; more are dropped.
    #[arg(long, env = "THRONG_REDIS_QUEUE_BYTES", default_value_t = 16 << 20)]
    redis_queue_bytes: usize,
    /// The bus's format: `classic` (`createAdapter`, and the emitter) or `sharded`
    /// (`createShardedAdapter`, Redis 7 sharded pub/sub). They do not mix.
    #[arg(long, value_enum, default_value = "classic", env = "THRONG_REDIS_MODE")]
    redis_mode: RedisModeArg,
    /// `GET /readyz` answers 503 while the link to Redis is down (with --redis-url).
    #[arg(long, env = "THRONG_READY_REQUIRES_REDIS", requires = "redis_url")]
    ready_requires_redis: bool,
}

#[derive(Clone, Copy, ValueEnum)]
enum RedisModeArg {
    /// @socket.io/redis-adapter's createAdapter and @socket.io/redis-emitter.
    Classic,
    /// @socket.io/redis-adapter's createShardedAdapter (SPUBLISH/SSUBSCRIBE).
    Sharded,
}

/// The `--config` file of `throng serve ...` (or THRONG_CONFIG), before clap parses.
fn config_file(args: &[std::ffi::OsString]) -> Option<std::path::PathBuf> {
    if args.get(1).is_none_or(|a| a != "serve") {
        return None;
    }
    let mut rest = args.iter().skip(2);
    while let Some(arg) = rest.next() {
        let arg = arg.to_str()?;
        if arg == "--" {
            break;
        }
        if arg == "--config" {
            return rest.next().map(std::path::PathBuf::from);
        }
        if let Some(path) = arg.strip_prefix("--config=") {
            return Some(path.into());
        }
    }
    std::env::var_os("THRONG_CONFIG").map(std::path::PathBuf::from)
}

/// Flags, with a `--config` file's settings as their defaults.
fn parse_cli() -> Cli {
    let args: Vec<std::ffi::OsString> = std::env::args_os().collect();
    let mut command = Cli::command();
    if let Some(path) = config_file(&args) {
        let mut failure = None;
        command = command.mut_subcommand("serve", |serve| {
            throng::settings::apply_file(serve.clone(), &path).unwrap_or_else(|e| {
                failure = Some(e);
                serve
            })
        });
        if let Some(e) = failure {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
    }
    let matches = command.get_matches_from(args);
    Cli::from_arg_matches(&matches).unwrap_or_else(|e| e.exit())
}

fn main() -> ExitCode {
    let cli = parse_cli();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    match cli.command {
        Command::Serve(args) => serve(args),
        Command::Bench(cmd) => throng::bench::run(cmd),
    }
}

fn serve(args: ServeArgs) -> ExitCode {
    let tuning = match args.driver {
        DriverArg::Epoll => Default::default(),
        DriverArg::Auto | DriverArg::Uring => match throng::runtime::uring::Tuning::from_env() {
            Ok(tuning) => tuning,
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(2);
            }
        },
    };
    let driver = match args.driver {
        DriverArg::Epoll => DriverKind::Epoll,
        DriverArg::Auto => match throng::runtime::uring::probe(&tuning) {
            Ok(()) => {
                tracing::info!("--driver auto: using io_uring ({})", tuning.describe());
                DriverKind::Uring
            }
            Err(e) => {
                tracing::info!("--driver auto: using epoll: {e}");
                DriverKind::Epoll
            }
        },
        DriverArg::Uring => match throng::runtime::uring::probe(&tuning) {
            Ok(()) => {
                tracing::info!("io_uring driver: {}", tuning.describe());
                DriverKind::Uring
            }
            Err(e) => {
                eprintln!("error: --driver uring: {e}; use --driver epoll");
                return ExitCode::from(2);
            }
        },
    };
    if args.max_message_size == 0
        || args.idle_timeout == 0
        || args.handshake_timeout == 0
        || args.max_queued_bytes == 0
    {
        eprintln!(
            "error: --max-message-size, --idle-timeout, --handshake-timeout and \
             --max-queued-bytes must be > 0"
        );
        return ExitCode::from(2);
    }
    if args.redis_url.is_some() && !matches!(args.app, AppArg::Conformance | AppArg::SioShootout) {
        eprintln!(
            "error: --redis-url joins a Socket.IO bus: use it with --app conformance or \
             --app sio-shootout"
        );
        return ExitCode::from(2);
    }
    let workers = args
        .workers
        .unwrap_or_else(|| throng::runtime::system::allowed_cpus().len().max(1));
    let config = Config {
        addr: SocketAddr::new(args.host, args.port),
        app: match args.app {
            AppArg::Echo => AppKind::Echo,
            AppArg::Shootout => AppKind::Shootout,
            AppArg::Pubsub => AppKind::Pubsub,
            AppArg::Conformance => AppKind::Conformance,
            AppArg::SioShootout => AppKind::SioShootout,
        },
        workers,
        driver,
        limits: Limits {
            max_message: args.max_message_size,
            handshake_timeout: Duration::from_secs(args.handshake_timeout),
            idle_timeout: Duration::from_secs(args.idle_timeout),
            drain_timeout: Duration::from_secs(args.drain_timeout),
            drain_window: Duration::from_secs(args.drain_window),
            max_queued_bytes: args.max_queued_bytes,
            slow_consumer_grace: Duration::from_secs(args.slow_consumer_grace),
            max_rooms_per_connection: args.max_rooms_per_connection,
            accept_rate: args.accept_rate,
            retry_after_secs: args.retry_after,
            ..Limits::default()
        },
        cors_origins: args.cors_origin,
        cors_credentials: args.cors_credentials,
        redis: args.redis_url.map(|url| throng::config::Redis {
            url,
            key: args.redis_key,
            queue_bytes: args.redis_queue_bytes,
            mode: match args.redis_mode {
                RedisModeArg::Classic => throng::bridge::Mode::Classic,
                RedisModeArg::Sharded => throng::bridge::Mode::Sharded,
            },
        }),
        ready_requires_redis: args.ready_requires_redis,
        admin: args
            .admin_port
            .map(|port| SocketAddr::new(args.admin_host, port)),
        tls: args
            .tls_cert
            .zip(args.tls_key)
            .map(|(cert, key)| throng::config::TlsFiles { cert, key }),
    };
    match throng::server::serve(config, args.max_connections) {
        Ok(_) => ExitCode::SUCCESS,
        Err(e) => {
            tracing::error!("{e}");
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
