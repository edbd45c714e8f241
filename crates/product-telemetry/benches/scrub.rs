//! The cost of scrubbing a typical 10-property event on the background worker.
//!
//! Run: `cargo bench -p product-telemetry --bench scrub`
//!
//! "clean" has nothing to replace (the common case: no allocation); "dirty" has a home
//! path, an e-mail, a URL with a query, an IP and a token to replace. The clone of the
//! properties is outside the timing.

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use product_telemetry::scrub::Scrubber;
use serde_json::{Map, Value, json};

fn event(dirty: bool) -> Map<String, Value> {
    let value = if dirty {
        json!({
            "command": "build",
            "success": false,
            "duration_ms": 1532,
            "error": "cannot open /home/ada/projects/app/src/main.rs: permission denied",
            "contact": "ada@example.com",
            "endpoint": "https://api.example.com/v1/items?key=abc123&user=ada",
            "peer": "10.0.0.7:8080",
            "token": "ghp_aB3dE5fG7hJ9kL1mN3pQ5rS7tU9vW1xY3zA5",
            "model": "gpt-4o-mini",
            "sdk_version": "1.4.2",
        })
    } else {
        json!({
            "command": "build",
            "success": true,
            "duration_ms": 1532,
            "error": "compilation failed: 3 errors in src/main.rs:12:5",
            "target": "x86_64-unknown-linux-gnu",
            "profile": "release",
            "session_id": "550e8400-e29b-41d4-a716-446655440000",
            "started_at": "2024-05-01T12:34:56.789Z",
            "model": "gpt-4o-mini",
            "sdk_version": "1.4.2",
        })
    };
    match value {
        Value::Object(map) => map,
        _ => Map::new(),
    }
}

fn bench(c: &mut Criterion) {
    let scrubber = Scrubber::new(Some("/home/ada".into()), Some("ada".into()));
    for (name, dirty) in [("clean", false), ("dirty", true)] {
        let props = event(dirty);
        c.bench_function(&format!("scrub_properties/10 properties, {name}"), |b| {
            b.iter_batched_ref(
                || props.clone(),
                |p| scrubber.scrub_properties(black_box(p), &[] as &[&str]),
                BatchSize::SmallInput,
            )
        });
    }
    let line = "compilation failed: 3 errors in src/main.rs:12:5 after 1.5s";
    c.bench_function("scrub_str/60-byte clean line", |b| {
        b.iter(|| scrubber.scrub_str(black_box(line)).len())
    });
}

criterion_group!(benches, bench);
criterion_main!(benches);
