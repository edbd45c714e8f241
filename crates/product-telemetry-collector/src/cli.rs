//! Command-line front ends: clap argument structs and the functions a binary calls for
//! `collect`, `events` and `stats`.
//!
//! The binary stays thin: it adds a subcommand variant holding one of these `Args` structs
//! and calls the matching function, which prints and returns an [`ExitCode`]:
//!
//! ```no_run
//! use clap::{Parser, Subcommand};
//! use product_telemetry_collector::cli;
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(Subcommand)]
//! enum Command {
//!     /// Run a PostHog-compatible collector storing into SQLite.
//!     Collect(cli::CollectArgs),
//!     /// List stored events.
//!     Events(cli::EventsArgs),
//!     /// Count stored events by name and by day.
//!     Stats(cli::StatsArgs),
//! }
//!
//! fn main() -> std::process::ExitCode {
//!     match Cli::parse().command {
//!         Command::Collect(args) => cli::collect(args),
//!         Command::Events(args) => cli::events(args),
//!         Command::Stats(args) => cli::stats(args),
//!     }
//! }
//! ```
//!
//! Output goes to stdout; errors go to stderr as one line and exit with status 1.

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::ExitCode;

use jiff::civil::{Date, Time};
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

use crate::config::CollectorConfig;
use crate::render;
use crate::server;
use crate::store::{EventFilter, Store};

/// The default listening address of `collect`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8474";

/// Arguments of `collect`: run a collector until Ctrl-C or SIGTERM.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct CollectArgs {
    /// Address to listen on (port 0 picks a free port; the address is printed).
    #[arg(long, value_name = "ADDR", default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,
    /// SQLite file to store events in (created if missing).
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// Accept only this project key (repeatable). Without it any well-formed key is accepted.
    #[arg(long = "project-key", value_name = "KEY")]
    pub project_keys: Vec<String>,
}

/// Arguments of `events`: list stored events.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct EventsArgs {
    /// SQLite file written by `collect`.
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
    /// Only events with this name.
    #[arg(long, value_name = "NAME")]
    pub event: Option<String>,
    /// Only events at or after this time: RFC 3339 (`2024-05-01T12:00:00Z`), a date
    /// (`2024-05-01`, midnight UTC), or an age (`30m`, `12h`, `7d`).
    #[arg(long, value_name = "TIME", value_parser = parse_since)]
    pub since: Option<Timestamp>,
    /// Show at most this many events (the most recently received).
    #[arg(long, value_name = "N", default_value_t = 100)]
    pub limit: usize,
    /// One JSON object per line instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// Arguments of `stats`: counts by event name and by day.
#[derive(Debug, Clone, clap::Args)]
#[non_exhaustive]
pub struct StatsArgs {
    /// SQLite file written by `collect`.
    #[arg(long, value_name = "FILE")]
    pub db: PathBuf,
}

/// Runs `collect`: serves until Ctrl-C or SIGTERM, printing `listening on http://ADDR` once
/// bound.
pub fn collect(args: CollectArgs) -> ExitCode {
    let mut config = CollectorConfig::new(&args.db);
    config.project_keys = args.project_keys;
    report(server::run(args.listen, config).map(|()| String::new()))
}

/// Runs `events`: prints the matching events as a table, or as JSON lines with `--json`.
pub fn events(args: EventsArgs) -> ExitCode {
    let filter = EventFilter {
        event: args.event,
        since: args.since,
        limit: Some(args.limit),
    };
    let result = Store::open(&args.db).and_then(|store| store.events(&filter));
    report(result.map(|events| {
        if args.json {
            render::events_json_lines(&events)
        } else {
            render::events_table(&events)
        }
    }))
}

/// Runs `stats`: prints counts by event name and by UTC day.
pub fn stats(args: StatsArgs) -> ExitCode {
    let result = Store::open(&args.db).and_then(|store| store.stats());
    report(result.map(|stats| render::stats_report(&stats)))
}

fn report<E: std::fmt::Display>(result: Result<String, E>) -> ExitCode {
    match result {
        Ok(text) => {
            let mut stdout = std::io::stdout().lock();
            // A closed pipe (`| head`) is not an error worth reporting.
            let _ = stdout
                .write_all(text.as_bytes())
                .and_then(|()| stdout.flush());
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// Parses `--since`: an RFC 3339 time, a date (midnight UTC), or an age such as `90s`,
/// `30m`, `12h`, `7d`, `2w` counted back from now.
pub fn parse_since(text: &str) -> Result<Timestamp, String> {
    since_at(text, Timestamp::now())
}

fn since_at(text: &str, now: Timestamp) -> Result<Timestamp, String> {
    let text = text.trim();
    if let Ok(ts) = text.parse::<Timestamp>() {
        return Ok(ts);
    }
    if let Ok(date) = text.parse::<Date>() {
        return TimeZone::UTC
            .to_timestamp(date.to_datetime(Time::midnight()))
            .map_err(|e| e.to_string());
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .ok_or_else(|| format!("{text:?}: add a unit (s, m, h, d, w)"))?;
    let (number, unit) = text.split_at(split);
    let number: i64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a time, a date or an age like 12h"))?;
    let seconds_per_unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        "w" => 7 * 86_400,
        _ => return Err(format!("{text:?} is not a time, a date or an age like 12h")),
    };
    let age = SignedDuration::from_secs(number.saturating_mul(seconds_per_unit));
    now.checked_sub(age).map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[derive(Debug, Parser)]
    enum TestCli {
        Collect(CollectArgs),
        Events(EventsArgs),
        Stats(StatsArgs),
    }

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid")
    }

    #[test]
    fn since_accepts_times_dates_and_ages() {
        let now = ts("2024-05-10T12:00:00Z");
        assert_eq!(
            since_at("2024-05-01T08:00:00+02:00", now),
            Ok(ts("2024-05-01T06:00:00Z"))
        );
        assert_eq!(since_at("2024-05-01", now), Ok(ts("2024-05-01T00:00:00Z")));
        assert_eq!(since_at("90s", now), Ok(ts("2024-05-10T11:58:30Z")));
        assert_eq!(since_at("12h", now), Ok(ts("2024-05-10T00:00:00Z")));
        assert_eq!(since_at("7d", now), Ok(ts("2024-05-03T12:00:00Z")));
        assert!(since_at("12", now).is_err());
        assert!(since_at("soon", now).is_err());
        assert!(since_at("3y", now).is_err());
    }

    #[test]
    fn collect_args_defaults_and_repeated_keys() {
        let cli = TestCli::try_parse_from([
            "t",
            "collect",
            "--db",
            "e.sqlite",
            "--project-key",
            "phc_a",
            "--project-key",
            "phc_b",
        ])
        .expect("parses");
        let TestCli::Collect(args) = cli else {
            panic!("expected collect")
        };
        assert_eq!(
            args.listen,
            DEFAULT_LISTEN.parse::<SocketAddr>().expect("addr")
        );
        assert_eq!(args.project_keys, ["phc_a", "phc_b"]);
    }

    #[test]
    fn events_args_parse() {
        let cli = TestCli::try_parse_from([
            "t",
            "events",
            "--db",
            "e.sqlite",
            "--event",
            "app_started",
            "--since",
            "2024-05-01",
            "--limit",
            "5",
            "--json",
        ])
        .expect("parses");
        let TestCli::Events(args) = cli else {
            panic!("expected events")
        };
        assert_eq!(args.event.as_deref(), Some("app_started"));
        assert_eq!(args.since, Some(ts("2024-05-01T00:00:00Z")));
        assert_eq!(args.limit, 5);
        assert!(args.json);
    }

    #[test]
    fn stats_requires_a_db() {
        assert!(TestCli::try_parse_from(["t", "stats"]).is_err());
    }

    #[test]
    fn events_on_a_missing_database_fails() {
        let dir = tempfile::tempdir().expect("tempdir");
        let code = events(EventsArgs {
            db: dir.path().join("none.sqlite"),
            event: None,
            since: None,
            limit: 10,
            json: false,
        });
        assert_eq!(code, ExitCode::FAILURE);
    }
}
