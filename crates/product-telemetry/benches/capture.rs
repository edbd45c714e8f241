//! The cost of `capture` on the caller's thread, enabled and disabled, and of
//! initialising the service.
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

fn real_http_config(home: &std::path::Path) -> TelemetryConfig {
    TelemetryConfig::new("bench", "phc_bench_placeholder")
        .host("http://127.0.0.1:9")
        .environment(Environment::from_pairs([("HOME", home.as_os_str())]))
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

fn startup(c: &mut Criterion) {
    let home = tempfile::tempdir().expect("tempdir");
    // The id file exists after the first run; later runs read it.
    drop(ProductTelemetry::new(config(home.path(), &[])));
    // One service at a time, as in a real process; dropping it (not timed) lets its
    // worker exit. The real HTTP transport is built, as in production.
    c.bench_function("startup/init_existing_id_and_start_worker", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let start = Instant::now();
                let telemetry = ProductTelemetry::new(real_http_config(home.path()));
                total += start.elapsed();
                drop(black_box(telemetry));
            }
            total
        })
    });
    c.bench_function("startup/init_disabled", |b| {
        b.iter_with_large_drop(|| {
            ProductTelemetry::new(config(home.path(), &[("ANONYMIZED_TELEMETRY", "false")]))
        })
    });
}

criterion_group!(benches, capture, startup);
criterion_main!(benches);
