//! The `throng` binary: flags → `Config` → `server::serve` (or the load generator).
//! No logic of its own.

use std::net::{IpAddr, SocketAddr};
use std::process::ExitCode;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

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
    /// Address to listen on.
    #[arg(long, default_value = "0.0.0.0", env = "THRONG_HOST")]
    host: IpAddr,
    /// Port to listen on.
    #[arg(long, default_value_t = 8080, env = "THRONG_PORT")]
    port: u16,
    /// What the server does with messages.
    #[arg(long, value_enum, default_value = "echo")]
    app: AppArg,
    /// Worker threads, one event loop and listener each (default: one per allowed CPU).
    #[arg(long)]
    workers: Option<usize>,
    /// Kernel interface for socket I/O.
    #[arg(long, value_enum, default_value = "epoll")]
    driver: DriverArg,
    /// Largest WebSocket message in bytes, over all its fragments (larger: close 1009).
    #[arg(long, default_value_t = Limits::default().max_message)]
    max_message_size: usize,
    /// Seconds of silence before a ping; as long again without input closes (1001).
    #[arg(long, default_value_t = 120)]
    idle_timeout: u64,
    /// Seconds a client has to send its request head (408 after).
    #[arg(long, default_value_t = 10)]
    handshake_timeout: u64,
    /// Seconds to wait for clients to finish closing on SIGINT/SIGTERM.
    #[arg(long, default_value_t = 10)]
    drain_timeout: u64,
    /// Outbound bytes queued for one slow reader before the server stops reading from it
    /// and drops volatile broadcasts to it; twice this closes it (1008).
    #[arg(long, default_value_t = Limits::default().max_queued_bytes)]
    max_queued_bytes: usize,
    /// Seconds a connection may stay over --max-queued-bytes before it is closed (1008).
    #[arg(long, default_value_t = Limits::default().slow_consumer_grace.as_secs())]
    slow_consumer_grace: u64,
    /// Rooms (pubsub topics) one connection may be in.
    #[arg(long, default_value_t = Limits::default().max_rooms_per_connection)]
    max_rooms_per_connection: usize,
    /// Connections held at most, over all workers (default: what the open-file limit allows).
    #[arg(long)]
    max_connections: Option<usize>,
    /// Origins allowed to use Engine.IO polling cross-origin (comma-separated, or `*`);
    /// CORS is off without it.
    #[arg(long, value_delimiter = ',')]
    cors_origin: Vec<String>,
    /// Let cross-origin polling requests carry cookies (Access-Control-Allow-Credentials).
    #[arg(long)]
    cors_credentials: bool,
    /// Join a Redis bus of Socket.IO servers and emitters (redis://host:port[/db]), as
    /// `@socket.io/redis-adapter` does (Socket.IO apps only).
    #[arg(long, env = "THRONG_REDIS_URL")]
    redis_url: Option<String>,
    /// Channel prefix on the Redis bus (the adapter's `key`).
    #[arg(long, default_value = "socket.io")]
    redis_key: String,
    /// Bytes of broadcasts held for Redis while it is slow or away; more are dropped.
    #[arg(long, default_value_t = 16 << 20)]
    redis_queue_bytes: usize,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
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
    let driver = match args.driver {
        DriverArg::Epoll => DriverKind::Epoll,
        DriverArg::Auto => match throng::runtime::uring::probe() {
            Ok(()) => {
                tracing::info!("--driver auto: using io_uring");
                DriverKind::Uring
            }
            Err(e) => {
                tracing::info!("--driver auto: using epoll: {e}");
                DriverKind::Epoll
            }
        },
        DriverArg::Uring => match throng::runtime::uring::probe() {
            Ok(()) => DriverKind::Uring,
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
            max_queued_bytes: args.max_queued_bytes,
            slow_consumer_grace: Duration::from_secs(args.slow_consumer_grace),
            max_rooms_per_connection: args.max_rooms_per_connection,
            ..Limits::default()
        },
        cors_origins: args.cors_origin,
        cors_credentials: args.cors_credentials,
        redis: args.redis_url.map(|url| throng::config::Redis {
            url,
            key: args.redis_key,
            queue_bytes: args.redis_queue_bytes,
        }),
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
