//! The opt-out matrix: every spelling that disables telemetry leaves no file and opens
//! no connection; the spellings that do not disable still deliver.

use std::time::Duration;

use product_telemetry::{DynamicEvent, Environment, Error, ProductTelemetry, TelemetryConfig};
use test_server::TestServer;

fn run(vars: &[(&str, &str)], app_switch: Option<bool>) -> (bool, usize, usize) {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let mut pairs: Vec<(String, std::ffi::OsString)> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.into()))
        .collect();
    pairs.push(("HOME".into(), home.path().as_os_str().to_owned()));
    let mut config = TelemetryConfig::new("consentapp", "phc_test_placeholder_key")
        .host(server.url())
        .environment(Environment::from_pairs(pairs));
    if let Some(on) = app_switch {
        config = config.enabled(on);
    }
    let telemetry = ProductTelemetry::new(config);
    telemetry.capture(DynamicEvent::new("e"));
    let flushed = telemetry.flush(Duration::from_secs(10));
    if !telemetry.is_enabled() {
        assert!(matches!(flushed, Err(Error::Disabled)));
        assert!(telemetry.user_id().is_none());
        assert!(telemetry.client().is_none());
    }
    let files = walk(home.path());
    (telemetry.is_enabled(), files, server.connections())
}

fn walk(dir: &std::path::Path) -> usize {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .flatten()
                .map(|e| {
                    if e.path().is_dir() {
                        1 + walk(&e.path())
                    } else {
                        1
                    }
                })
                .sum()
        })
        .unwrap_or(0)
}

#[test]
fn every_opt_out_spelling_writes_no_file_and_opens_no_connection() {
    let mut cases: Vec<Vec<(&str, &str)>> = Vec::new();
    for v in [
        "false", "False", "FALSE", "0", "no", "No", "off", "OFF", " false ", "\toff\n",
    ] {
        cases.push(vec![("ANONYMIZED_TELEMETRY", v)]);
    }
    for v in ["1", "true", "TRUE", "yes", " 1 "] {
        cases.push(vec![("DO_NOT_TRACK", v)]);
    }
    cases.push(vec![
        ("DO_NOT_TRACK", "1"),
        ("ANONYMIZED_TELEMETRY", "true"),
    ]);
    for vars in cases {
        let (enabled, files, connections) = run(&vars, None);
        assert!(!enabled, "{vars:?}");
        assert_eq!(files, 0, "{vars:?} created files");
        assert_eq!(connections, 0, "{vars:?} opened a connection");
    }
}

#[test]
fn the_application_switch_disables_without_files_or_connections() {
    assert_eq!(run(&[], Some(false)), (false, 0, 0));
}

#[test]
fn values_that_do_not_opt_out_still_deliver() {
    for vars in [
        vec![],
        vec![("ANONYMIZED_TELEMETRY", "true")],
        vec![("ANONYMIZED_TELEMETRY", "maybe")],
        vec![("DO_NOT_TRACK", "0")],
        vec![("DO_NOT_TRACK", "false")],
    ] {
        let (enabled, files, connections) = run(&vars, Some(true));
        assert!(enabled, "{vars:?}");
        assert!(files >= 1, "{vars:?}: the id file exists");
        assert!(connections >= 1, "{vars:?}: the event was sent");
    }
}
