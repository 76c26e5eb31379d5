//! `throng bench`: the load generator, built on the codec's client side.
//!
//! - `echo` (`echo.rs`): C connections keep K messages of S bytes in flight for T
//!   seconds; every reply is checked for type, length, sequence and content; latency
//!   from an HDR histogram; `--threads` loops share the connections.
//! - `connect` (`connect.rs`): N idle upgraded connections from source addresses
//!   127.0.0.2.., held while the server's RSS and the kernel's slab growth are read
//!   from /proc.
//! - `client.rs`: one connection (handshake, masked frames out, the codec's `Reader` in
//!   client role) and the `Dialer` that bounds connects in progress.
//! - `report.rs`: the loopback-only target, percentiles, CPU use, /proc readings.
//!
//! Output: a human summary on stderr, one JSON object per result on stdout (one line),
//! and the generator's own CPU use so a run shows when the generator was the bottleneck.
//!
//! Invariants: only loopback targets are accepted; every mode stops by itself (bounded
//! durations, connect and reply timeouts); the exit code is non-zero whenever a
//! connection failed, a reply was wrong or nothing was measured.

mod client;
mod connect;
mod echo;
mod report;

use std::process::ExitCode;

pub use connect::ConnectArgs;
pub use echo::EchoArgs;

/// The `throng bench` modes.
#[derive(clap::Subcommand, Debug)]
pub enum BenchCommand {
    /// Echo round trips: msgs/s and latency percentiles.
    Echo(EchoArgs),
    /// Idle connections held: connect rate and memory per connection.
    Connect(ConnectArgs),
}

/// Runs one mode. Exit code 0: a clean run; 1: the run finished and reported, but
/// connections failed, replies were wrong or nothing was measured; 2: the run could not
/// start (bad arguments, a non-loopback target, no resources).
pub fn run(cmd: BenchCommand) -> ExitCode {
    let result = match cmd {
        BenchCommand::Echo(args) => echo::run(&args),
        BenchCommand::Connect(args) => connect::run(&args),
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
