//! `throng bench`: the load generator, built on the codec's client side.
//!
//! - `echo` (`echo.rs`): C connections keep K messages of S bytes in flight for T
//!   seconds; every reply is checked for type, length, sequence and content; latency
//!   from an HDR histogram; `--threads` loops share the connections.
//! - `connect` (`connect.rs`): N idle upgraded connections from source addresses
//!   127.0.0.2.., held while the server's RSS and the kernel's slab growth are read
//!   from /proc; with `--proto socketio --transport polling`, N idle Engine.IO
//!   long-polling sessions instead (`polling.rs`: one keep-alive connection each, its
//!   GET held by the server, pings answered by POST).
//! - `broadcast` (`broadcast.rs`): the websocket-shootout method over its protocol:
//!   clients added a step at a time, sampled broadcast round trips per step, stop at an
//!   RTT percentile limit; every client's deliveries counted per step.
//! - `fanout` (`fanout.rs`): one publisher with a bounded window of unacknowledged
//!   publishes to N subscribers (throng's pubsub or shootout): deliveries/s, delivery
//!   latency, lost/duplicate/out-of-order deliveries after a bounded drain; with
//!   `--pub-url` (Socket.IO) the publisher is on another server than the subscribers.
//! - `fleet.rs`: many connections in one thread's mio loop with per-connection state
//!   (the broadcast and fanout threads); `json.rs`: their JSON frames, built and
//!   recognised without a parser on the hot path.
//! - `client.rs`: one connection (handshake, masked frames out, the codec's `Reader` in
//!   client role) and the `Dialer` that bounds connects in progress.
//! - `sio.rs`: `--proto socketio` (every mode): the Engine.IO/Socket.IO handshake and
//!   heartbeat inside the client, and the echo frames, all recognised by prefix.
//! - `report.rs`: the loopback-only target, percentiles, CPU use, /proc readings.
//!
//! Output: a human summary on stderr, one JSON object per result on stdout (one line;
//! `broadcast` prints one per step and a closing `"kind":"summary"` one),
//! and the generator's own CPU use so a run shows when the generator was the bottleneck.
//!
//! Invariants: only loopback targets are accepted; every mode stops by itself (bounded
//! durations, connect and reply timeouts); the exit code is non-zero whenever a
//! connection failed, a reply was wrong or nothing was measured.

mod broadcast;
mod client;
mod connect;
mod echo;
mod fanout;
mod fleet;
mod json;
mod polling;
mod report;
mod sio;
mod tls;

use std::process::ExitCode;

pub use broadcast::BroadcastArgs;
pub use connect::ConnectArgs;
pub use echo::EchoArgs;
pub use fanout::FanoutArgs;
pub use sio::{ClientProto, Transport};

/// The `throng bench` modes.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Echo round trips: msgs/s and latency percentiles.
    Echo(EchoArgs),
    /// Idle connections held: connect rate and memory per connection.
    Connect(ConnectArgs),
    /// websocket-shootout broadcast: clients held within an RTT percentile limit.
    Broadcast(BroadcastArgs),
    /// One publisher to N subscribers: deliveries/s, latency, loss.
    Fanout(FanoutArgs),
}

/// Runs one mode. Exit code 0: a clean run; 1: the run finished and reported, but
/// connections failed, replies were wrong or nothing was measured; 2: the run could not
/// start (bad arguments, a non-loopback target, no resources).
pub fn run(cmd: BenchCommand) -> ExitCode {
    let result = match cmd {
        BenchCommand::Echo(args) => echo::run(&args),
        BenchCommand::Connect(args) => connect::run(&args),
        BenchCommand::Broadcast(args) => broadcast::run(&args),
        BenchCommand::Fanout(args) => fanout::run(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("bench: {e}");
            ExitCode::from(2)
        }
    }
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(subcommand)]
        cmd: super::BenchCommand,
    }

    #[test]
    fn pub_url_is_refused_outside_fanout() {
        let url = ["--url", "ws://127.0.0.1:1/", "--proto", "socketio"];
        let pub_url = ["--pub-url", "ws://127.0.0.1:2/"];
        for mode in ["echo", "connect", "broadcast"] {
            let argv = [&["bench", mode][..], &url, &pub_url].concat();
            let e = Cli::try_parse_from(argv).err().expect(mode);
            assert_eq!(e.kind(), clap::error::ErrorKind::UnknownArgument, "{mode}");
            assert!(e.to_string().contains("--pub-url"), "{mode}: {e}");
        }
        let argv = [&["bench", "fanout"][..], &url, &pub_url].concat();
        assert!(Cli::try_parse_from(argv).is_ok());
    }
}
