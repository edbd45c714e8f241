//! How long `product-telemetry capture` holds a script up: process wall time against
//! a healthy endpoint, a closed port and an endpoint that accepts and never answers,
//! minus the same run with telemetry disabled.
//!
//! Run: `cargo bench -p product-telemetry-cli --bench exit_time`
//!
//! Each run uses a fresh cache folder (no remembered backoff, no spooled events), so it
//! measures a first failure, the worst case. Background deliveries started by `capture`
//! are detached and not part of the measured time, by design.

use std::process::Command;
use std::time::{Duration, Instant};

use test_server::{Reply, TestServer};

const RUNS: usize = 31;
const KEY: &str = "phc_bench_placeholder";

fn run(host: &str, extra_env: &[(&str, &str)]) -> Duration {
    let cache = tempfile::tempdir().expect("tempdir");
    let mut command = Command::new(env!("CARGO_BIN_EXE_product-telemetry"));
    command
        .env_clear()
        .env("XDG_CACHE_HOME", cache.path())
        .args([
            "--host",
            host,
            "--api-key",
            KEY,
            "capture",
            "bench_event",
            "--prop",
            "k=v",
        ]);
    for (k, v) in extra_env {
        command.env(k, v);
    }
    let start = Instant::now();
    let status = command.status().expect("run product-telemetry");
    let took = start.elapsed();
    assert!(status.success());
    took
}

fn median(host: &str, extra_env: &[(&str, &str)]) -> Duration {
    let mut times: Vec<Duration> = (0..RUNS).map(|_| run(host, extra_env)).collect();
    times.sort();
    times[RUNS / 2]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let healthy = TestServer::ok();
    let hung = TestServer::start(Vec::new(), Reply::Hang);
    let closed = {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("bind")
            .port();
        format!("http://127.0.0.1:{port}")
    };
    let disabled = median(&healthy.url(), &[("DO_NOT_TRACK", "1")]);
    println!("exit_time: {RUNS} runs each, median process wall time");
    println!("exit_time: disabled           {:7.2} ms", ms(disabled));
    for (name, host) in [
        ("healthy endpoint", healthy.url()),
        ("closed port", closed),
        ("hung endpoint", hung.url()),
    ] {
        let m = median(&host, &[]);
        println!(
            "exit_time: {name:<18} {:7.2} ms  (+{:.2} ms over disabled)",
            ms(m),
            ms(m.saturating_sub(disabled))
        );
    }
    println!(
        "exit_time: healthy endpoint received {} request(s)",
        healthy.requests().len()
    );
}
