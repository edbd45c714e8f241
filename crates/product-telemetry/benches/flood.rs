//! Memory under a flood: one million captures against an endpoint that accepts
//! connections and never answers. Reports the peak resident set size (VmHWM) and what
//! was dropped. The queue is bounded in count and bytes, so memory stays flat.
//!
//! Run: `cargo bench -p product-telemetry --bench flood`

use std::time::{Duration, Instant};

use product_telemetry::{DynamicEvent, Environment, Event, ProductTelemetry, TelemetryConfig};
use serde::Serialize;
use test_server::{Reply, TestServer};

#[derive(Serialize)]
struct ExecutionAgentUsage {
    agent_type: &'static str,
    model: Option<String>,
    sync: bool,
    tool_id: Option<String>,
}

impl Event for ExecutionAgentUsage {
    fn name(&self) -> &str {
        "execution_agent_usage"
    }
}

fn status_kib(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return; // `cargo test --benches` asks for a listing
    }
    let server = TestServer::start(Vec::new(), Reply::Hang);
    let home = tempfile::tempdir().expect("tempdir");
    let telemetry = ProductTelemetry::new(
        TelemetryConfig::new("flood", "phc_bench_placeholder")
            .host(server.url())
            .environment(Environment::from_pairs([("HOME", home.path().as_os_str())]))
            .client_options(|c| c.request_timeout(Duration::from_secs(60))),
    );
    let before = status_kib("VmRSS:").unwrap_or(0);
    let start = Instant::now();
    const N: usize = 1_000_000;
    for i in 0..N {
        if i % 2 == 0 {
            telemetry.capture(ExecutionAgentUsage {
                agent_type: "default",
                model: Some(format!("model-{}", i % 7)),
                sync: i % 3 == 0,
                tool_id: Some("search_tool".to_string()),
            });
        } else {
            telemetry.capture(DynamicEvent::new("tool_call").property("tool_id", "search_tool"));
        }
    }
    let elapsed = start.elapsed();
    let stats = telemetry.stats();
    let peak = status_kib("VmHWM:").unwrap_or(0);
    println!(
        "flood: {N} captures in {elapsed:?} ({:.0} ns/capture)",
        elapsed.as_nanos() as f64 / N as f64
    );
    println!(
        "flood: captured {} dropped_queue_full {} pending {}",
        stats.captured,
        stats.dropped_queue_full,
        stats.pending()
    );
    println!(
        "flood: RSS before {:.1} MiB, peak {:.1} MiB",
        before as f64 / 1024.0,
        peak as f64 / 1024.0
    );
    let started = Instant::now();
    let _ = telemetry.shutdown(Duration::from_millis(200));
    println!("flood: shutdown returned in {:?}", started.elapsed());
}
