//! Disabled telemetry starts no thread; enabled telemetry starts one, which exits when
//! the service is dropped. Its own test binary, with one test, so that
//! the process's thread count is not disturbed by other tests.

use product_telemetry::{DynamicEvent, Environment, ProductTelemetry, TelemetryConfig};

#[cfg(target_os = "linux")]
fn threads() -> usize {
    std::fs::read_dir("/proc/self/task").unwrap().count()
}

#[cfg(target_os = "linux")]
#[test]
fn disabled_telemetry_starts_no_thread_but_enabled_starts_one() {
    let home = tempfile::tempdir().unwrap();
    let env = |extra: &[(&str, &str)]| {
        let mut pairs: Vec<(String, std::ffi::OsString)> = extra
            .iter()
            .map(|(k, v)| (k.to_string(), v.into()))
            .collect();
        pairs.push(("HOME".into(), home.path().as_os_str().to_owned()));
        Environment::from_pairs(pairs)
    };
    let before = threads();
    let disabled = ProductTelemetry::new(
        TelemetryConfig::new("threads", "phc_test_placeholder_key")
            .host("http://127.0.0.1:9")
            .environment(env(&[("DO_NOT_TRACK", "1")])),
    );
    for _ in 0..1000 {
        disabled.capture(DynamicEvent::new("e"));
    }
    assert_eq!(threads(), before, "disabled telemetry started a thread");

    let enabled = ProductTelemetry::new(
        TelemetryConfig::new("threads", "phc_test_placeholder_key")
            .host("http://127.0.0.1:9")
            .environment(env(&[])),
    );
    assert!(enabled.is_enabled());
    assert_eq!(threads(), before + 1, "one worker thread");

    // Dropping the service lets its worker finish and exit at once (nothing queued).
    drop(enabled);
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while threads() > before && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    assert_eq!(
        threads(),
        before,
        "the worker exited after the last handle was dropped"
    );
}
