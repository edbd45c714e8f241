//! `product-telemetry`: anonymized telemetry from shell scripts and installers, and a
//! window onto what the library does on this machine.
//!
//! The binary is thin: argument parsing here, each command in its own module, all the
//! behaviour in the `product-telemetry` library (and the collector crate).

mod capture;
mod flush;
mod options;
mod user_id;

use std::process::ExitCode;

use clap::{Parser, Subcommand};
use product_telemetry::command::TelemetryCommand;

use crate::options::GlobalOptions;

/// Anonymized, opt-out product telemetry for programs and scripts.
///
/// Telemetry is off when ANONYMIZED_TELEMETRY is false/0/no/off or DO_NOT_TRACK is 1.
#[derive(Debug, Parser)]
#[command(name = "product-telemetry", version, about, long_about = None)]
struct Cli {
    #[command(flatten)]
    global: GlobalOptions,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Capture one event and deliver it (waits at most --timeout; always exits 0).
    Capture(capture::CaptureArgs),
    /// Show whether telemetry is on and why, the id file and id, host, app and spool.
    Status {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// See or change consent: status, enable, disable, reset-id, log.
    #[command(subcommand)]
    Telemetry(TelemetryCommand),
    /// Print the anonymous id (creating it when telemetry is enabled).
    UserId,
    /// Deliver the events waiting in the spool now.
    Flush(flush::FlushArgs),
    /// Run the PostHog-compatible collector on SQLite.
    Collect(product_telemetry_collector::cli::CollectArgs),
    /// Print the events a collector database holds.
    Events(product_telemetry_collector::cli::EventsArgs),
    /// Count the events in a collector database by name and by day.
    Stats(product_telemetry_collector::cli::StatsArgs),
}

fn main() -> ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn"))
        .format_timestamp(None)
        .init();
    let cli = Cli::parse();
    if !product_telemetry::identity::is_valid_app_name(&cli.global.app) {
        eprintln!(
            "error: invalid app name {:?}: an app name is 1 to 64 letters, digits, '-', '_' or '.', not starting with '.'",
            cli.global.app
        );
        return ExitCode::from(2);
    }
    match cli.command {
        Command::Capture(args) => capture::run(&cli.global, args),
        Command::Status { json } => TelemetryCommand::Status { json }.run(&cli.global.config()),
        Command::Telemetry(command) => command.run(&cli.global.config()),
        Command::UserId => user_id::run(&cli.global),
        Command::Flush(args) => flush::run(&cli.global, &args),
        Command::Collect(args) => product_telemetry_collector::cli::collect(args),
        Command::Events(args) => product_telemetry_collector::cli::events(args),
        Command::Stats(args) => product_telemetry_collector::cli::stats(args),
    }
}
