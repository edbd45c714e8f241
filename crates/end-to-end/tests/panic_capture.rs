//! Opt-in panic capture end to end: a process panics; the `$exception` event reaches
//! the server with its message scrubbed and a crate-relative location, and the
//! previous panic hook still runs.

use std::io::Read;
use std::path::Path;
use std::time::Duration;

use end_to_end::{child, config};
use product_telemetry::ProductTelemetry;
use test_server::TestServer;

/// Child of `a_panic_is_captured_scrubbed_and_delivered`.
#[test]
fn panicking_child() {
    let (Ok(home), Ok(host)) = (std::env::var("E2E_HOME"), std::env::var("E2E_HOST")) else {
        return;
    };
    std::panic::set_hook(Box::new(|_| println!("previous hook ran")));
    let telemetry = ProductTelemetry::new(config(Path::new(&home), &host).capture_panics(true));
    assert!(telemetry.is_enabled());
    panic!("cannot read {home}/notes/plan.txt for ada@example.com");
}

#[test]
fn a_panic_is_captured_scrubbed_and_delivered() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let mut process = child(
        "panicking_child",
        &[
            ("E2E_HOME", home.path().display().to_string()),
            ("E2E_HOST", server.url()),
        ],
    );
    let mut out = String::new();
    process
        .stdout
        .take()
        .unwrap()
        .read_to_string(&mut out)
        .unwrap();
    let status = process.wait().unwrap();
    assert!(!status.success(), "the child's test failed by panicking");
    assert!(
        out.contains("previous hook ran"),
        "the hook is chained: {out}"
    );

    let events = server.wait_for_events(1, Duration::from_secs(10));
    let exception = events
        .iter()
        .find(|e| e["event"] == "$exception")
        .expect("an $exception event");
    let props = &exception["properties"];
    assert_eq!(props["$exception_type"], "panic");
    assert_eq!(
        props["$exception_message"],
        "cannot read ~/notes/plan.txt for <email>"
    );
    let location = props["$exception_location"].as_str().unwrap();
    assert!(
        location.starts_with("crates/end-to-end/tests/panic_capture.rs:"),
        "{location}"
    );
    assert!(!location.contains(&*home.path().to_string_lossy()));
}
