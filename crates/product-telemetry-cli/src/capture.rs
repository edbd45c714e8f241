//! `product-telemetry capture EVENT`: one event from a script.
//!
//! Bad usage (an empty name, a malformed `KEY=VALUE`, invalid JSON, no API key) exits 2
//! with a message; everything else exits 0, whether or not the event was delivered —
//! telemetry never breaks a script.

use std::process::ExitCode;
use std::time::Duration;

use clap::Args;
use product_telemetry::{DynamicEvent, ProductTelemetry, Properties};
use serde_json::Value;

use crate::options::GlobalOptions;

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
    /// The longest to wait for delivery, e.g. `2s`, `500ms`.
    #[arg(long, default_value = "2s", value_parser = humantime::parse_duration)]
    timeout: Duration,
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
    if global.api_key.as_deref().is_none_or(str::is_empty) {
        eprintln!("error: no project API key: pass --api-key or set PRODUCT_TELEMETRY_API_KEY");
        return ExitCode::from(2);
    }
    let mut properties = args.props_json.unwrap_or_default();
    for (key, value) in args.props {
        properties.insert(key, Value::String(value));
    }
    let telemetry = ProductTelemetry::new(global.config());
    telemetry.capture(DynamicEvent::with_properties(args.event, properties));
    if let Some(Err(error)) = telemetry
        .is_enabled()
        .then(|| telemetry.shutdown(args.timeout))
    {
        log::debug!("event not delivered: {error}");
    }
    ExitCode::SUCCESS
}
