//! A process that forks after init keeps its events: the child starts its own worker
//! and delivers its events; the parent's are sent once, by the parent.
//! One test in its own binary: forking a process with many test threads is avoided.

#![allow(unsafe_code)]

use std::collections::HashSet;
use std::time::Duration;

use end_to_end::config;
use product_telemetry::{DynamicEvent, ProductTelemetry};
use test_server::TestServer;

#[cfg(unix)]
#[test]
fn forked_child_delivers_its_own_events_and_never_the_parents() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry = ProductTelemetry::new(config(home.path(), &server.url()));
    for i in 0..5 {
        telemetry.capture(DynamicEvent::new("parent").property("seq", format!("before-{i}")));
    }
    // SAFETY: the child only uses the telemetry library, then leaves with `_exit`.
    let pid = unsafe { libc::fork() };
    assert!(pid >= 0, "fork failed");
    if pid == 0 {
        for i in 0..5 {
            telemetry.capture(DynamicEvent::new("child").property("seq", format!("child-{i}")));
        }
        let ok = telemetry.shutdown(Duration::from_secs(10)).is_ok();
        let sent = telemetry.stats().sent;
        // SAFETY: ends the child without running the parent's destructors or test harness.
        unsafe { libc::_exit(if ok && sent == 5 { 0 } else { 1 }) };
    }
    for i in 0..5 {
        telemetry.capture(DynamicEvent::new("parent").property("seq", format!("after-{i}")));
    }
    let mut status = 0;
    // SAFETY: waits for the child created above.
    let waited = unsafe { libc::waitpid(pid, &mut status, 0) };
    assert_eq!(waited, pid);
    assert!(
        libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0,
        "child status {status}"
    );
    telemetry
        .shutdown(Duration::from_secs(10))
        .expect("parent delivered");
    assert_eq!(telemetry.stats().sent, 10);

    let events = server.events();
    let uuids: HashSet<_> = events
        .iter()
        .map(|e| e["uuid"].as_str().unwrap().to_string())
        .collect();
    let seqs: HashSet<_> = events
        .iter()
        .map(|e| e["properties"]["seq"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(events.len(), 15, "every event once: {seqs:?}");
    assert_eq!(uuids.len(), 15);
    assert_eq!(seqs.len(), 15);
    let child_ids: HashSet<_> = events
        .iter()
        .filter(|e| e["event"] == "child")
        .map(|e| e["distinct_id"].as_str().unwrap())
        .collect();
    let parent_ids: HashSet<_> = events
        .iter()
        .filter(|e| e["event"] == "parent")
        .map(|e| e["distinct_id"].as_str().unwrap())
        .collect();
    assert_eq!(child_ids, parent_ids, "one install id for parent and child");
}
