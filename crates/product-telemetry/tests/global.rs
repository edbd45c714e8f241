//! The process-wide service: one init, a harmless second init, capture through the
//! global, and a guard whose drop is bounded even when the endpoint hangs.
//! One test in its own binary, since the global lives for the whole process.

use std::time::{Duration, Instant};

use product_telemetry::{DynamicEvent, Environment, TelemetryConfig};
use test_server::{Reply, TestServer};

#[test]
fn init_once_capture_globally_and_drop_the_guard_within_its_bound() {
    // Before init, capture is a no-op.
    product_telemetry::capture(DynamicEvent::new("ignored"));
    assert!(product_telemetry::global().is_none());

    let server = TestServer::start(Vec::new(), Reply::Hang);
    let home = tempfile::tempdir().unwrap();
    let config = |app: &str| {
        TelemetryConfig::new(app, "phc_test_placeholder_key")
            .host(server.url())
            .environment(Environment::from_pairs([("HOME", home.path().as_os_str())]))
            .shutdown_timeout(Duration::from_millis(300))
    };
    let guard = product_telemetry::init(config("globalapp"));
    let telemetry = guard.telemetry().expect("the first init owns the service");
    assert!(telemetry.is_enabled());

    // A second init changes nothing and creates nothing.
    let second = product_telemetry::init(config("otherapp"));
    assert!(second.telemetry().is_none());
    assert!(product_telemetry::try_init(config("otherapp")).is_err());
    assert!(!home.path().join(".otherapp").exists());
    assert_eq!(product_telemetry::global().unwrap().app(), "globalapp");
    drop(second); // inert

    for i in 0..5 {
        product_telemetry::capture(DynamicEvent::new("e").property("i", i));
    }
    assert_eq!(telemetry.stats().captured, 5);
    server.wait_for_requests(1, Duration::from_secs(10));

    let start = Instant::now();
    drop(guard);
    let took = start.elapsed();
    assert!(took < Duration::from_secs(2), "guard drop took {took:?}");
    assert!(telemetry.client().unwrap().is_shut_down());
    product_telemetry::capture(DynamicEvent::new("late"));
    assert_eq!(telemetry.stats().dropped_after_shutdown, 1);
}
