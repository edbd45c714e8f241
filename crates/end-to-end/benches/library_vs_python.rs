//! End to end throughput into the collector: our library against the official
//! `posthog` Python client, in the same run, into the same collector, the same events
//! (about ten properties each). Each side's rate counts only when the collector holds
//! every one of its events (nothing lost).
//!
//! Run: `bash scripts/install-test-deps.sh && cargo bench -p end-to-end --bench library_vs_python`

use std::process::Command;
use std::time::{Duration, Instant};

use end_to_end::{KEY, collector};
use product_telemetry::{Client, Event};
use serde::Serialize;

/// The benchmark event: ten properties, as a typed struct (the idiomatic way).
#[derive(Serialize)]
struct BenchEvent {
    client: &'static str,
    n: usize,
    step_type: &'static str,
    success: bool,
    tool_id: &'static str,
    model: &'static str,
    sync: bool,
    plan_length: u32,
    agent_type: &'static str,
    attempt: u32,
}

impl Event for BenchEvent {
    fn name(&self) -> &str {
        "bench_event"
    }
}
use product_telemetry_collector::{EventFilter, Store};

const EVENTS: usize = 100_000;
const PYTHON_EVENTS: usize = 20_000;

fn stored(store: &Store, client: &str) -> usize {
    store
        .events(&EventFilter::all())
        .map(|events| {
            events
                .iter()
                .filter(|e| e.properties.get("client").and_then(|c| c.as_str()) == Some(client))
                .count()
        })
        .unwrap_or(0)
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let collector = collector(dir.path());

    // Our library: capture everything, then shut down when all is acknowledged.
    let client = Client::builder(KEY)
        .host(collector.url())
        .max_queue_events(EVENTS)
        .max_queue_bytes(512 * 1024 * 1024)
        .build()
        .expect("client");
    let start = Instant::now();
    for n in 0..EVENTS {
        client.capture(
            "rust-bench",
            BenchEvent {
                client: "product-telemetry",
                n,
                step_type: "llm_step",
                success: true,
                tool_id: "search",
                model: "gpt-4o-mini",
                sync: false,
                plan_length: 4,
                agent_type: "default_agent",
                attempt: 1,
            },
        );
    }
    let captured_in = start.elapsed();
    client
        .shutdown(Duration::from_secs(120))
        .expect("all delivered");
    let ours = start.elapsed();
    let stats = client.stats();
    assert_eq!(stats.sent as usize, EVENTS, "{stats:?}");

    // The Python client.
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/benches/python_client.py");
    let output = Command::new("python3")
        .args([script, &collector.url(), KEY, &PYTHON_EVENTS.to_string()])
        .output()
        .expect("python3 runs (bash scripts/install-test-deps.sh installs posthog)");
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let report: serde_json::Value = serde_json::from_slice(&output.stdout).expect("python report");
    let python_seconds = report["seconds"].as_f64().expect("seconds");

    let db = collector.db_path().to_path_buf();
    collector.shutdown().expect("collector stops");
    let store = Store::open(&db).expect("store");
    let ours_stored = stored(&store, "product-telemetry");
    let python_stored = stored(&store, "posthog-python");
    assert_eq!(ours_stored, EVENTS, "our events stored");
    assert_eq!(python_stored, PYTHON_EVENTS, "python events stored");

    let ours_rate = EVENTS as f64 / ours.as_secs_f64();
    let python_rate = PYTHON_EVENTS as f64 / python_seconds;
    println!(
        "library_vs_python: product-telemetry {EVENTS} events in {:.2} s = {:.0} events/s (capture loop {:.0} ms), all stored",
        ours.as_secs_f64(),
        ours_rate,
        captured_in.as_secs_f64() * 1000.0
    );
    println!(
        "library_vs_python: posthog-python    {PYTHON_EVENTS} events in {python_seconds:.2} s = {python_rate:.0} events/s, all stored"
    );
    println!("library_vs_python: ratio {:.1}x", ours_rate / python_rate);
}
