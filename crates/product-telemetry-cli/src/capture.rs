//! `product-telemetry capture EVENT`: one event from a script, without holding it up.
//!
//! The event is written to the spool, then delivery is tried for a short foreground
//! budget. What is not delivered by then is left in the spool and a detached
//! `product-telemetry flush` takes over (bounded by `--timeout`), so a script pays a
//! few milliseconds even when the endpoint hangs. When no spool can be written
//! (read-only disk), the foreground waits up to `--timeout` instead.
//!
//! Bad usage (an empty name, a malformed `KEY=VALUE`, invalid JSON, no API key) exits 2
//! with a message; everything else exits 0, whether or not the event was delivered —
//! telemetry never breaks a script.

use std::process::{Command, ExitCode, Stdio};
use std::time::Duration;

use clap::Args;
use product_telemetry::{DynamicEvent, ProductTelemetry, Properties};
use serde_json::Value;

use crate::options::GlobalOptions;

/// How long `capture` itself waits for delivery when the event is safe in the spool.
const FOREGROUND_BUDGET: Duration = Duration::from_millis(25);

#[derive(Debug, Args)]
pub(crate) struct CaptureArgs {
    /// The event's name.
    event: String,
    /// A string property, repeatable.
    #[arg(long = "prop", value_name = "KEY=VALUE", value_parser = parse_prop)]
    props: Vec<(String, String)>,
    /// Properties as a JSON object (merged before --prop values).
    #[arg(long, value_name = "JSON", value_parser = parse_props_json)]
    props_json: Option<Properties>,
    /// The longest delivery may take, e.g. `2s`, `500ms` (in the background when the
    /// event is safe in the spool).
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
    /// Never start a background delivery process; undelivered events wait in the spool
    /// for a later run.
    #[arg(long)]
    no_background: bool,
}

fn parse_prop(arg: &str) -> Result<(String, String), String> {
    match arg.split_once('=') {
        Some((key, value)) if !key.trim().is_empty() => Ok((key.to_string(), value.to_string())),
        _ => Err(format!(
            "expected KEY=VALUE with a non-empty KEY, got {arg:?}"
        )),
    }
}

fn parse_props_json(arg: &str) -> Result<Properties, String> {
    match serde_json::from_str::<Value>(arg) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(_) => Err("expected a JSON object, like {\"key\": \"value\"}".to_string()),
        Err(e) => Err(format!("invalid JSON: {e}")),
    }
}

pub(crate) fn run(global: &GlobalOptions, args: CaptureArgs) -> ExitCode {
    if args.event.trim().is_empty() {
        eprintln!("error: the event name must not be empty");
        return ExitCode::from(2);
    }
    let Some(config) = global.config_with_key() else {
        eprintln!("error: no project API key: pass --api-key or set PRODUCT_TELEMETRY_API_KEY");
        return ExitCode::from(2);
    };
    let mut properties = args.props_json.unwrap_or_default();
    for (key, value) in args.props {
        properties.insert(key, Value::String(value));
    }
    let telemetry = ProductTelemetry::new(config);
    telemetry.capture(DynamicEvent::with_properties(args.event, properties));
    if !telemetry.is_enabled() {
        return ExitCode::SUCCESS;
    }
    // Safe on disk: a short try in the foreground, the rest in the background.
    // Memory only (no writable spool): the foreground is all there is.
    let on_disk = telemetry.persist(args.timeout).is_ok();
    let budget = if on_disk {
        FOREGROUND_BUDGET
    } else {
        args.timeout
    };
    let _ = telemetry.shutdown(budget);
    // A remembered backoff means the endpoint is failing: a later run will deliver.
    let backoff = global
        .config()
        .spool_dir()
        .and_then(|dir| product_telemetry::spool::summarize(&dir).next_attempt);
    if telemetry.stats().left_in_spool > 0 && backoff.is_none() && !args.no_background {
        start_background_flush(global, args.timeout);
    }
    ExitCode::SUCCESS
}

/// Starts `product-telemetry flush` detached, so the script is not held up.
fn start_background_flush(global: &GlobalOptions, timeout: Duration) {
    let Ok(exe) = std::env::current_exe() else {
        return;
    };
    let mut command = Command::new(exe);
    command
        .args(["flush", "--quiet", "--timeout"])
        .arg(format!("{}ms", timeout.as_millis()))
        .envs(global.as_env())
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null());
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        command.process_group(0); // not killed with the script's process group
    }
    if let Err(e) = command.spawn() {
        log::debug!("could not start background delivery: {e}");
    }
}
