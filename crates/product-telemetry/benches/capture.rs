//! The cost of `capture` on the caller's thread, enabled and disabled.
//!
//! Run: `cargo bench -p product-telemetry --bench capture`
//!
//! Enabled captures are timed in chunks that fit the queue, with a flush between
//! chunks outside the timing, so every timed call really enqueues (none hits the
//! cheaper queue-full path); the run checks that nothing was dropped.

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use product_telemetry::transport::{
    Transport, TransportError, TransportRequest, TransportResponse,
};
use product_telemetry::{DynamicEvent, Environment, Event, ProductTelemetry, TelemetryConfig};
use serde::Serialize;

/// Accepts every batch at once, so the benchmark measures the library, not a server.
struct Accept;

impl Transport for Accept {
    fn send(&mut self, _: &TransportRequest<'_>) -> Result<TransportResponse, TransportError> {
        Ok(TransportResponse {
            status: 200,
            retry_after: None,
        })
    }
}

#[derive(Serialize)]
struct StepExecution {
    step_type: &'static str,
    success: bool,
    tool_id: Option<&'static str>,
}

impl Event for StepExecution {
    fn name(&self) -> &str {
        "plan_v2_step_execution"
    }
}

fn config(home: &std::path::Path, extra: &[(&str, &str)]) -> TelemetryConfig {
    let mut pairs: Vec<(String, std::ffi::OsString)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    pairs.push(("HOME".into(), home.as_os_str().to_owned()));
    TelemetryConfig::new("bench", "phc_bench_placeholder")
        .host("http://127.0.0.1:9")
        .environment(Environment::from_pairs(pairs))
        .client_options(|c| c.transport(Accept))
}

const CHUNK: u64 = 2_000;

fn timed_in_chunks(
    telemetry: &ProductTelemetry,
    iters: u64,
    mut capture: impl FnMut(),
) -> Duration {
    let mut total = Duration::ZERO;
    let mut left = iters;
    while left > 0 {
        let n = left.min(CHUNK);
        let start = Instant::now();
        for _ in 0..n {
            capture();
        }
        total += start.elapsed();
        left -= n;
        let _ = telemetry.flush(Duration::from_secs(10));
    }
    total
}

fn capture(c: &mut Criterion) {
    let home = tempfile::tempdir().expect("tempdir");
    let enabled = ProductTelemetry::new(config(home.path(), &[]));
    assert!(enabled.is_enabled());
    let disabled = ProductTelemetry::new(config(home.path(), &[("DO_NOT_TRACK", "1")]));
    assert!(!disabled.is_enabled());

    let mut group = c.benchmark_group("capture");
    group.bench_function("enabled/struct_event", |b| {
        b.iter_custom(|iters| {
            timed_in_chunks(&enabled, iters, || {
                enabled.capture(black_box(StepExecution {
                    step_type: "llm",
                    success: true,
                    tool_id: Some("search"),
                }))
            })
        })
    });
    group.bench_function("enabled/dynamic_event_built_per_call", |b| {
        b.iter_custom(|iters| {
            timed_in_chunks(&enabled, iters, || {
                enabled.capture(
                    DynamicEvent::new("tool_call").property("tool_id", black_box("search")),
                )
            })
        })
    });
    group.bench_function("disabled/struct_event", |b| {
        b.iter(|| {
            disabled.capture(black_box(StepExecution {
                step_type: "llm",
                success: true,
                tool_id: None,
            }))
        })
    });
    group.bench_function("global_before_init/struct_event", |b| {
        b.iter(|| {
            product_telemetry::capture(black_box(StepExecution {
                step_type: "llm",
                success: true,
                tool_id: None,
            }))
        })
    });
    group.finish();
    let stats = enabled.stats();
    assert_eq!(stats.dropped(), 0, "a timed capture was dropped: {stats:?}");
    eprintln!(
        "enabled captures: {} sent, {} dropped",
        stats.sent,
        stats.dropped()
    );
}

criterion_group!(benches, capture);
criterion_main!(benches);
