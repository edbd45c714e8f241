//! A worker waiting out a failing endpoint sleeps: it does not spin. Regression test for
//! a wake-up planned for a spool rescan that could not run while events waited, which
//! turned the wait into a busy loop. Its own binary, so the process's CPU time is the
//! worker's.

use std::time::Duration;

use end_to_end::{closed_port_url, config};
use product_telemetry::{DynamicEvent, ProductTelemetry};

/// User plus system CPU time of this process, in clock ticks (100 per second).
#[cfg(target_os = "linux")]
fn cpu_ticks() -> u64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_name = &stat[stat.rfind(')').unwrap() + 2..];
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line: 12 and 13 after the name.
    fields[11].parse::<u64>().unwrap() + fields[12].parse::<u64>().unwrap()
}

#[cfg(target_os = "linux")]
#[test]
fn waiting_on_a_failing_endpoint_costs_no_cpu() {
    let home = tempfile::tempdir().unwrap();
    let telemetry = ProductTelemetry::new(
        config(home.path(), &closed_port_url())
            .client_options(|c| c.backoff(Duration::from_secs(20), Duration::from_secs(20))),
    );
    telemetry.capture(DynamicEvent::new("waiting"));
    std::thread::sleep(Duration::from_millis(500));
    let before = cpu_ticks();
    // Longer than the idle rescan interval (5 s), shorter than the backoff.
    std::thread::sleep(Duration::from_secs(7));
    let used = cpu_ticks() - before;
    assert!(
        used < 50,
        "the worker used {used} ticks of CPU in 7 s while waiting"
    );
    assert_eq!(telemetry.stats().sent, 0);
}
