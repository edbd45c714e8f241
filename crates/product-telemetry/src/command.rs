//! `telemetry status|enable|disable|reset-id|log`: the consent commands, as a clap
//! subcommand any application mounts as `myapp telemetry …` (feature `clap`).
//!
//! ```
//! use clap::{Parser, Subcommand};
//! use product_telemetry::{TelemetryConfig, command::TelemetryCommand};
//!
//! #[derive(Parser)]
//! struct Cli {
//!     #[command(subcommand)]
//!     command: Command,
//! }
//!
//! #[derive(Subcommand)]
//! enum Command {
//!     /// Show or change this app's telemetry.
//!     #[command(subcommand)]
//!     Telemetry(TelemetryCommand),
//! }
//!
//! let cli = Cli::parse_from(["myapp", "telemetry", "status", "--json"]);
//! let Command::Telemetry(command) = cli.command;
//! // command.run(&TelemetryConfig::new("myapp", "phc_your_project_key"));
//! ```
//!
//! Every command reads and writes only local files; none sends anything.

use std::fs;
use std::process::ExitCode;
use std::time::SystemTime;

use crate::TelemetryConfig;
use crate::identity::{IdFileState, UNKNOWN_USER_ID, inspect};
use crate::keyed_hash::SECRET_FILE_NAME;
use crate::preference::{self, Preference};
use crate::sent_log::read_last;
use crate::spool::{summarize, summarize_all};

/// The consent commands.
#[derive(Clone, Debug, clap::Subcommand)]
#[non_exhaustive]
pub enum TelemetryCommand {
    /// Show whether telemetry is on and which setting decided, the id, the spool.
    Status {
        /// Print one JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Turn telemetry on for this app (saved for this user).
    Enable,
    /// Turn telemetry off for this app (saved for this user) and discard what waits
    /// to be sent. Sends nothing.
    Disable,
    /// Forget the anonymous id: the next run creates a new one.
    ResetId,
    /// Show the last events that left this machine.
    Log {
        /// How many events to show.
        #[arg(long, default_value_t = 20)]
        limit: usize,
    },
}

impl TelemetryCommand {
    /// Runs the command for the app `config` describes, printing to stdout (errors to
    /// stderr). Exits non-zero when a preference cannot be saved.
    pub fn run(&self, config: &TelemetryConfig) -> ExitCode {
        match self {
            TelemetryCommand::Status { json } => {
                let report = status(config);
                if *json {
                    println!("{}", report.to_json());
                } else {
                    print!("{}", report.to_text());
                }
                ExitCode::SUCCESS
            }
            TelemetryCommand::Enable => set(config, true),
            TelemetryCommand::Disable => set(config, false),
            TelemetryCommand::ResetId => reset_id(config),
            TelemetryCommand::Log { limit } => log(config, *limit),
        }
    }
}

/// What `status` shows.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct StatusReport {
    /// Whether events are collected.
    pub enabled: bool,
    /// E.g. `disabled (DO_NOT_TRACK=1)`.
    pub decided_by: String,
    /// The app.
    pub app: String,
    /// The host.
    pub host: String,
    /// The id file.
    pub id_file: Option<String>,
    /// The id, when saved.
    pub user_id: Option<String>,
    /// The id file's state, in words.
    pub id_state: &'static str,
    /// The preference file.
    pub preference_file: Option<String>,
    /// The spool folder (every project's spool is under it).
    pub spool_dir: Option<String>,
    /// What waits in the spool, for every project.
    pub spool: crate::spool::SpoolSummary,
}

/// Gathers the status of the app `config` describes, creating and changing nothing.
pub fn status(config: &TelemetryConfig) -> StatusReport {
    let consent = config.consent();
    let path = config.user_id_path();
    let (user_id, id_state) = match path.as_deref().map(inspect) {
        Some(IdFileState::Valid(id)) => (Some(id.hyphenated().to_string()), "saved"),
        Some(IdFileState::Missing) => (None, "not created yet"),
        Some(IdFileState::Invalid) => (None, "invalid, will be replaced"),
        Some(IdFileState::Unreadable(_)) => (None, "unreadable: a per-process id is used"),
        None => (None, "no home folder: a per-process id is used"),
    };
    let spool_dir = config.spool_root();
    let display = |p: Option<std::path::PathBuf>| p.map(|p| p.display().to_string());
    StatusReport {
        enabled: consent.is_enabled(),
        decided_by: consent.to_string(),
        app: config.app().to_string(),
        host: config.host_url().to_string(),
        id_file: display(path),
        user_id,
        id_state,
        preference_file: display(config.preference_path()),
        spool: spool_dir.as_deref().map(summarize_all).unwrap_or_default(),
        spool_dir: display(spool_dir),
    }
}

fn time(t: Option<SystemTime>) -> Option<String> {
    t.and_then(|t| jiff::Timestamp::try_from(t).ok())
        .map(|t| format!("{t:.0}"))
}

impl StatusReport {
    /// The report as one JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "enabled": self.enabled,
            "decided_by": self.decided_by,
            "app": self.app,
            "host": self.host,
            "id_file": self.id_file,
            "user_id": self.user_id,
            "id_state": self.id_state,
            "preference_file": self.preference_file,
            "spool": {
                "dir": self.spool_dir,
                "events_waiting": self.spool.events,
                "files": self.spool.segments,
                "bytes": self.spool.bytes,
                "oldest": time(self.spool.oldest),
                "next_attempt": time(self.spool.next_attempt),
                "evicted": self.spool.evicted,
                "corrupt_files_removed": self.spool.corrupt,
            },
        })
    }

    /// The report as aligned text lines.
    pub fn to_text(&self) -> String {
        let none = || "(none)".to_string();
        let spool = &self.spool;
        let mut text = format!(
            "telemetry: {}\napp:       {}\nhost:      {}\nid file:   {}\nuser id:   {} ({})\n",
            self.decided_by,
            self.app,
            self.host,
            self.id_file.clone().unwrap_or_else(none),
            self.user_id.as_deref().unwrap_or(UNKNOWN_USER_ID),
            self.id_state,
        );
        text += &format!(
            "spool:     {} event(s) waiting in {} file(s), {} bytes{}\n",
            spool.events,
            spool.segments,
            spool.bytes,
            time(spool.oldest)
                .map(|t| format!(", oldest {t}"))
                .unwrap_or_default()
        );
        if let Some(next) = time(spool.next_attempt) {
            text += &format!("           the endpoint failed; next attempt after {next}\n");
        }
        text += &format!(
            "           dropped so far: {} evicted (size/age bounds), {} corrupt file(s) removed\n",
            spool.evicted, spool.corrupt
        );
        text
    }
}

fn set(config: &TelemetryConfig, enabled: bool) -> ExitCode {
    let Some(path) = config.preference_path() else {
        eprintln!("error: no config folder (no home folder): the preference cannot be saved");
        return ExitCode::FAILURE;
    };
    // A corrupt file is replaced; other read errors surface when saving.
    let mut saved = preference::load(&path).unwrap_or_else(|_| Preference::default());
    saved.enabled = Some(enabled);
    if let Err(e) = preference::save(&path, &saved) {
        eprintln!("error: the preference could not be saved: {e}");
        return ExitCode::FAILURE;
    }
    let app = config.app();
    if enabled {
        println!("telemetry enabled for {app} (saved in {})", path.display());
    } else {
        let discarded = discard_spool(config);
        println!(
            "telemetry disabled for {app} (saved in {}); {discarded} waiting event(s) discarded",
            path.display()
        );
    }
    let now = config.consent();
    if now.is_enabled() != enabled {
        println!("note: telemetry is still {now}, which takes precedence");
    }
    ExitCode::SUCCESS
}

/// Deletes the events waiting in the spool, for every destination; returns how many
/// there were.
fn discard_spool(config: &TelemetryConfig) -> u64 {
    let Some(root) = config.spool_root() else {
        return 0;
    };
    let Ok(destinations) = fs::read_dir(&root) else {
        return 0;
    };
    let mut discarded = 0;
    for destination in destinations.flatten().filter(|e| e.path().is_dir()) {
        let dir = destination.path();
        discarded += summarize(&dir).events;
        for entry in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if entry.path().extension().is_some_and(|e| e == "seg") {
                let _ = fs::remove_file(entry.path());
            }
        }
    }
    discarded
}

fn reset_id(config: &TelemetryConfig) -> ExitCode {
    let Some(id_file) = config.user_id_path() else {
        println!("no id file (no home folder)");
        return ExitCode::SUCCESS;
    };
    let mut failed = false;
    for file in [id_file.clone(), id_file.with_file_name(SECRET_FILE_NAME)] {
        if let Err(e) = fs::remove_file(&file)
            && e.kind() != std::io::ErrorKind::NotFound
        {
            eprintln!("error: cannot remove {}: {e}", file.display());
            failed = true;
        }
    }
    if failed {
        return ExitCode::FAILURE;
    }
    println!("the anonymous id was forgotten; the next enabled run creates a new one");
    ExitCode::SUCCESS
}

fn log(config: &TelemetryConfig, limit: usize) -> ExitCode {
    let path = config.sent_log_path();
    let lines = path
        .as_deref()
        .map(|p| read_last(p, limit))
        .unwrap_or_default();
    if lines.is_empty() {
        println!("nothing has been sent from this machine");
    }
    for line in lines {
        println!("{line}");
    }
    ExitCode::SUCCESS
}
