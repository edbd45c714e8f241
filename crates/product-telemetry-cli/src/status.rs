//! `product-telemetry status` and `user-id`: what telemetry would do on this machine.
//!
//! `status` never creates or changes a file: it reports what is there.

use std::process::ExitCode;

use clap::Args;
use product_telemetry::identity::{IdFileState, inspect};
use product_telemetry::{UNKNOWN_USER_ID, UserId};

use crate::options::GlobalOptions;

#[derive(Debug, Args)]
pub(crate) struct StatusArgs {
    /// Print one JSON object instead of text.
    #[arg(long)]
    json: bool,
}

pub(crate) fn run(global: &GlobalOptions, args: &StatusArgs) -> ExitCode {
    let config = global.config();
    let consent = config.consent();
    let path = config.user_id_path();
    let (id, id_state) = match path.as_deref().map(inspect) {
        Some(IdFileState::Valid(id)) => (Some(id.hyphenated().to_string()), "saved"),
        Some(IdFileState::Missing) => (None, "not created yet"),
        Some(IdFileState::Invalid) => (None, "invalid, will be replaced"),
        Some(IdFileState::Unreadable(_)) => (None, "unreadable: a per-process id is used"),
        Some(_) => (None, "unknown"),
        None => (None, "no home folder: a per-process id is used"),
    };
    let spool_dir = config.spool_dir();
    let spool = spool_dir
        .as_deref()
        .map(product_telemetry::spool::summarize)
        .unwrap_or_default();
    let time = |t: Option<std::time::SystemTime>| {
        t.and_then(|t| jiff::Timestamp::try_from(t).ok())
            .map(|t| format!("{t:.0}"))
    };
    let path_text = path
        .as_ref()
        .map(|p| p.display().to_string())
        .unwrap_or_else(|| "(none)".into());
    if args.json {
        let value = serde_json::json!({
            "enabled": consent.is_enabled(),
            "decided_by": consent.to_string(),
            "app": global.app,
            "host": global.host,
            "id_file": path.as_ref().map(|p| p.display().to_string()),
            "user_id": id,
            "id_state": id_state,
            "spool": {
                "dir": spool_dir.as_ref().map(|p| p.display().to_string()),
                "events_waiting": spool.events,
                "files": spool.segments,
                "bytes": spool.bytes,
                "oldest": time(spool.oldest),
                "next_attempt": time(spool.next_attempt),
                "evicted": spool.evicted,
                "corrupt_files_removed": spool.corrupt,
            },
        });
        println!("{value}");
    } else {
        println!("telemetry: {consent}");
        println!("app:       {}", global.app);
        println!("host:      {}", global.host);
        println!("id file:   {path_text}");
        println!(
            "user id:   {} ({id_state})",
            id.as_deref().unwrap_or(UNKNOWN_USER_ID)
        );
        println!(
            "spool:     {} event(s) waiting in {} file(s), {} bytes{}",
            spool.events,
            spool.segments,
            spool.bytes,
            time(spool.oldest)
                .map(|t| format!(", oldest {t}"))
                .unwrap_or_default()
        );
        if let Some(next) = time(spool.next_attempt) {
            println!("           the endpoint failed; next attempt after {next}");
        }
        println!(
            "           dropped so far: {} evicted (size/age bounds), {} corrupt file(s) removed",
            spool.evicted, spool.corrupt
        );
    }
    ExitCode::SUCCESS
}

pub(crate) fn user_id(global: &GlobalOptions) -> ExitCode {
    let config = global.config();
    let consent = config.consent();
    if !consent.is_enabled() {
        // Disabled: show an existing id, create nothing.
        return match config.user_id_path().as_deref().map(inspect) {
            Some(IdFileState::Valid(id)) => {
                println!("{}", id.hyphenated());
                ExitCode::SUCCESS
            }
            _ => {
                eprintln!("telemetry is {consent}: no id is created");
                ExitCode::FAILURE
            }
        };
    }
    let id = UserId::resolve(config.user_id_path().as_deref());
    println!("{}", id.as_str());
    ExitCode::SUCCESS
}
