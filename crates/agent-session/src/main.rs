//! The main job, end to end, on the embedded default: starts the SQLite collector on an
//! ephemeral 127.0.0.1 port, runs a simulated agent session whose six kinds of events
//! go through the real library pipeline (queue, worker, spool, gzip, HTTP), shuts down
//! cleanly, and prints what the collector stored and where.
//!
//! `cargo run --release -p agent-session` — no network, no configuration. It respects
//! `DO_NOT_TRACK` and `ANONYMIZED_TELEMETRY` like any app using the library would.

mod events;
mod session;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use product_telemetry::{Environment, ProductTelemetry, TelemetryConfig};
use product_telemetry_collector::render::{events_table, stats_report};
use product_telemetry_collector::{CollectorConfig, EventFilter, RunningCollector, Store};

/// An obvious placeholder: the local collector accepts any well-formed project key.
const DEMO_KEY: &str = "phc_local_demo_placeholder";

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<(), Box<dyn std::error::Error>> {
    let dir = demo_dir()?;
    let db = dir.join("events.sqlite");
    let collector = RunningCollector::start("127.0.0.1:0".parse()?, CollectorConfig::new(&db))?;
    println!("product-telemetry demo");
    println!(
        "  collector  {} (SQLite: {})",
        collector.url(),
        db.display()
    );

    // The app's real environment decides consent; its cache lives in the demo folder.
    let mut env: Vec<(String, std::ffi::OsString)> = std::env::vars_os()
        .filter_map(|(k, v)| k.into_string().ok().map(|k| (k, v)))
        .collect();
    env.retain(|(k, _)| k != "XDG_CACHE_HOME");
    env.push(("XDG_CACHE_HOME".into(), dir.join("cache").into_os_string()));
    let telemetry = ProductTelemetry::new(
        TelemetryConfig::new("agent-demo", DEMO_KEY)
            .host(collector.url())
            .app_version(env!("CARGO_PKG_VERSION"))
            .environment(Environment::from_pairs(env)),
    );
    println!("  telemetry  {}", telemetry.consent());
    if let Some(id) = telemetry.user_id() {
        println!("  install id {}", id.as_str());
    }
    println!();
    println!("Agent session");
    let start = Instant::now();
    session::run(&telemetry);
    let shutdown = telemetry.shutdown(Duration::from_secs(5));
    let stats = telemetry.stats();
    println!();
    println!(
        "Telemetry: {} captured, {} delivered, {} dropped, {} left in the spool ({:.0} ms, shutdown {})",
        stats.captured,
        stats.sent,
        stats.dropped(),
        stats.left_in_spool,
        start.elapsed().as_secs_f64() * 1000.0,
        if shutdown.is_ok() {
            "clean"
        } else {
            "timed out"
        }
    );
    collector.shutdown()?;

    let store = Store::open(&db)?;
    let stored = store.events(&EventFilter::all())?;
    println!();
    println!("What the collector stored ({} events)", stored.len());
    print!("{}", events_table(&stored));
    println!();
    print!("{}", stats_report(&store.stats()?));
    println!();
    println!("Database: {}", db.display());
    println!("Explore it (or use an installed `product-telemetry` binary):");
    println!(
        "  cargo run -q -p product-telemetry-cli -- events --db {} --json",
        db.display()
    );
    println!(
        "  cargo run -q -p product-telemetry-cli -- stats --db {}",
        db.display()
    );
    Ok(())
}

/// A fresh folder for this run's database and cache, under the system temp folder.
fn demo_dir() -> std::io::Result<PathBuf> {
    let dir = std::env::temp_dir().join(format!(
        "product-telemetry-demo-{}",
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap_or_default()
            .as_millis()
    ));
    std::fs::create_dir_all(&dir)?;
    Ok(dir)
}
