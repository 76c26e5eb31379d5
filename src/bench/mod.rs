//! `throng bench`: the load generator, built on the codec's client side.
//!
//! - `echo`: C connections keep K messages of S bytes in flight for T seconds; every
//!   reply is checked for type, length and content; latency from an HDR histogram.
//! - `connect`: N idle upgraded connections from source addresses 127.0.0.2.., held
//!   while the server's RSS and the kernel's slab growth are read from /proc.
//!
//! Output: a human summary on stderr, one JSON object per result on stdout, and the
//! generator's own CPU use so a run shows when the generator was the bottleneck.
//! Only loopback targets are accepted, and every mode stops by itself.

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

/// Runs one mode; the exit code is non-zero when the run failed or saw bad replies.
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
