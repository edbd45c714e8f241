//! What initialising the service adds to a program's start: consent, the saved
//! preference and notice check, reading the existing id, building the HTTP client and
//! starting the worker — once per process, as a CLI does. Each of 201 inits is timed
//! alone, then the service is dropped and its worker allowed to exit (not timed), so
//! inits do not pile up. Prints the median.
//!
//! Run: `cargo bench -p product-telemetry --bench startup`

use std::time::{Duration, Instant};

use product_telemetry::{Environment, ProductTelemetry, TelemetryConfig};

fn config(home: &std::path::Path, extra: &[(&str, &str)]) -> TelemetryConfig {
    let mut pairs: Vec<(String, std::ffi::OsString)> = extra
        .iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    pairs.push(("HOME".into(), home.as_os_str().to_owned()));
    TelemetryConfig::new("bench", "phc_bench_placeholder")
        .host("http://127.0.0.1:9")
        .environment(Environment::from_pairs(pairs))
}

fn median(home: &std::path::Path, extra: &[(&str, &str)]) -> Duration {
    let mut times: Vec<Duration> = (0..201)
        .map(|_| {
            let start = Instant::now();
            let telemetry = ProductTelemetry::new(config(home, extra));
            let took = start.elapsed();
            drop(telemetry);
            std::thread::sleep(Duration::from_millis(2));
            took
        })
        .collect();
    times.sort();
    times[times.len() / 2]
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let home = tempfile::tempdir().expect("tempdir");
    // The first run creates the id, the notice flag and the spool; later runs read them.
    drop(ProductTelemetry::new(config(home.path(), &[])));
    std::thread::sleep(Duration::from_millis(50));
    let enabled = median(home.path(), &[]);
    let disabled = median(home.path(), &[("DO_NOT_TRACK", "1")]);
    println!("startup: init with an existing id, worker started: median {enabled:?}");
    println!("startup: init with telemetry disabled:             median {disabled:?}");
}
