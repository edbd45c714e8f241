//! `run` (what `collect` calls) serves until SIGTERM, then stops cleanly with every
//! acknowledged event committed. Alone in its own test binary, since it signals its process.

#![cfg(unix)]

mod support;

use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use product_telemetry_collector::{CollectorConfig, Store};
use serde_json::json;

#[test]
fn sigterm_stops_run_without_losing_acknowledged_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let db = dir.path().join("events.sqlite");
    // A free port: bind, read it, release it.
    let addr = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port");
    let config = CollectorConfig::new(&db);
    let (done_tx, done) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = done_tx.send(product_telemetry_collector::run(addr, config));
    });

    let base = format!("http://{addr}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while support::agent().get(&base).call().is_err() {
        assert!(Instant::now() < deadline, "run() did not start listening");
        std::thread::sleep(Duration::from_millis(20));
    }

    let events: Vec<_> = (0..50)
        .map(|i| json!({"event": "before_sigterm", "distinct_id": format!("d{i}")}))
        .collect();
    support::post_json(
        &format!("{base}/batch/"),
        &json!({"api_key": support::KEY, "batch": events}),
    )
    .assert_ok();

    let status = Command::new("kill")
        .args(["-TERM", &std::process::id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());

    let result = done
        .recv_timeout(Duration::from_secs(15))
        .expect("run() returned after SIGTERM");
    assert!(result.is_ok(), "run() failed: {result:?}");
    assert_eq!(Store::open(&db).expect("open").count().expect("count"), 50);
}
