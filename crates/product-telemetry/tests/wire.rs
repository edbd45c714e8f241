//! The wire payload, field by field, as a real HTTP server on 127.0.0.1 receives it.

use std::time::{Duration, SystemTime};

use product_telemetry::{
    DynamicEvent, Environment, Event, LIB_NAME, LIB_VERSION, ProductTelemetry, TelemetryConfig,
};
use serde::Serialize;
use test_server::TestServer;

const KEY: &str = "phc_test_placeholder_key";
const WAIT: Duration = Duration::from_secs(10);

#[derive(Serialize)]
struct ToolCall {
    tool_id: Option<String>,
}

impl Event for ToolCall {
    fn name(&self) -> &str {
        "tool_call"
    }
}

fn env_with_home(home: &std::path::Path) -> Environment {
    Environment::from_pairs([("HOME", home.as_os_str().to_owned())])
}

fn config(server: &TestServer, home: &std::path::Path) -> TelemetryConfig {
    TelemetryConfig::new("wireapp", KEY)
        .host(server.url())
        .app_version("9.8.7")
        .environment(env_with_home(home))
}

#[test]
fn payload_matches_posthog_batch_api_field_by_field() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry = ProductTelemetry::new(config(&server, home.path()));
    let before = SystemTime::now();
    telemetry.capture(ToolCall {
        tool_id: Some("search".into()),
    });
    telemetry.capture(DynamicEvent::new("custom").property("n", 3));
    telemetry.flush(WAIT).expect("flush");
    let after = SystemTime::now();

    let requests = server.requests();
    assert_eq!(requests.len(), 1, "both events in one batch");
    let request = &requests[0];
    assert_eq!(request.method, "POST");
    assert_eq!(request.path, "/batch/");
    assert_eq!(request.header("content-type"), Some("application/json"));
    assert_eq!(request.header("content-encoding"), Some("gzip"));
    assert_eq!(&request.raw_body[..3], &[0x1f, 0x8b, 0x08]);
    assert!(
        request
            .header("user-agent")
            .unwrap()
            .starts_with("product-telemetry/")
    );

    let body = request.json();
    assert_eq!(body["api_key"], KEY);
    let sent_at: jiff::Timestamp = body["sent_at"].as_str().unwrap().parse().unwrap();
    assert!(
        sent_at
            >= jiff::Timestamp::try_from(before).unwrap() - jiff::SignedDuration::from_millis(1)
    );
    let batch = body["batch"].as_array().unwrap();
    assert_eq!(batch.len(), 2);

    let id_file = home.path().join(".wireapp/wireapp/telemetry_user_id");
    let user_id = std::fs::read_to_string(&id_file).unwrap();
    let event = &batch[0];
    let keys: Vec<&str> = event
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{keys:?}");
    assert_eq!(event["event"], "tool_call");
    assert_eq!(event["distinct_id"], user_id.as_str());
    let uuid = uuid::Uuid::parse_str(event["uuid"].as_str().unwrap()).unwrap();
    assert_eq!(uuid.get_version_num(), 7);
    let ts: jiff::Timestamp = event["timestamp"].as_str().unwrap().parse().unwrap();
    let ms = jiff::SignedDuration::from_millis(1);
    assert!(ts >= jiff::Timestamp::try_from(before).unwrap() - ms);
    assert!(ts <= jiff::Timestamp::try_from(after).unwrap() + ms);
    assert!(event["timestamp"].as_str().unwrap().ends_with('Z'));

    let props = event["properties"].as_object().unwrap();
    assert_eq!(props["tool_id"], "search");
    assert_eq!(props["$lib"], LIB_NAME);
    assert_eq!(props["$lib_version"], LIB_VERSION);
    assert_eq!(props["sdk_version"], "9.8.7");
    assert_eq!(props["$process_person_profile"], false);
    assert_eq!(props["$geoip_disable"], true);
    assert_eq!(props["$ip"], "0.0.0.0");
    assert_eq!(
        props["$os"],
        if cfg!(target_os = "linux") {
            "Linux"
        } else {
            props["$os"].as_str().unwrap()
        }
    );
    assert_eq!(props["os_arch"], std::env::consts::ARCH);
    assert_eq!(props["ci"], false);
    assert!(!props.contains_key("ci_vendor"));
    let session = props["session_id"].as_str().unwrap();
    assert_eq!(
        batch[1]["properties"]["session_id"], session,
        "one session per process"
    );
    assert_eq!(
        props.len(),
        11,
        "nothing else, no host or user name: {props:?}"
    );

    assert_eq!(batch[1]["event"], "custom");
    assert_eq!(batch[1]["properties"]["n"], 3);
    assert_ne!(batch[0]["uuid"], batch[1]["uuid"]);
    assert_eq!(telemetry.stats().sent, 2);
}

#[test]
fn reference_behaviour_is_one_setting_away() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry = ProductTelemetry::new(
        config(&server, home.path())
            .person_profiles(true)
            .geoip(true)
            .send_ip(true)
            .version_property("portia_version"),
    );
    telemetry.capture(DynamicEvent::new("e"));
    telemetry.flush(WAIT).expect("flush");
    let events = server.events();
    let props = events[0]["properties"].as_object().unwrap();
    assert_eq!(props["$process_person_profile"], true);
    assert!(!props.contains_key("$geoip_disable"));
    assert!(!props.contains_key("$ip"));
    assert_eq!(props["portia_version"], "9.8.7");
    assert!(!props.contains_key("sdk_version"));
}

#[test]
fn event_properties_win_over_defaults() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry = ProductTelemetry::new(config(&server, home.path()));
    telemetry.capture(DynamicEvent::new("e").property("sdk_version", "override"));
    telemetry.flush(WAIT).expect("flush");
    assert_eq!(server.events()[0]["properties"]["sdk_version"], "override");
}

#[test]
fn gzip_can_be_turned_off() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry =
        ProductTelemetry::new(config(&server, home.path()).client_options(|c| c.gzip(false)));
    telemetry.capture(DynamicEvent::new("e"));
    telemetry.flush(WAIT).expect("flush");
    let request = &server.requests()[0];
    assert_eq!(request.header("content-encoding"), None);
    assert_eq!(request.raw_body, request.body);
}

#[test]
fn batches_are_cut_at_flush_at_and_sent_on_the_interval() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry = ProductTelemetry::new(
        config(&server, home.path())
            .client_options(|c| c.flush_at(10).flush_interval(Duration::from_millis(100))),
    );
    for i in 0..25 {
        telemetry.capture(DynamicEvent::new("e").property("i", i));
    }
    // No flush call: 2 full batches go at once, the last 5 on the interval.
    let events = server.wait_for_events(25, WAIT);
    assert_eq!(events.len(), 25);
    let sizes: Vec<usize> = server.requests().iter().map(|r| r.events().len()).collect();
    // Events the worker receives together are spooled together and never split, so
    // the cut depends on timing; the bounds do not.
    assert!(sizes.iter().all(|&n| n <= 10), "{sizes:?}");
    assert_eq!(sizes.iter().sum::<usize>(), 25);
    assert!(
        sizes.len() <= 5,
        "batched, not one request per event: {sizes:?}"
    );
    let order: Vec<i64> = events
        .iter()
        .map(|e| e["properties"]["i"].as_i64().unwrap())
        .collect();
    assert_eq!(order, (0..25).collect::<Vec<_>>());
}

#[test]
fn invalid_events_are_dropped_and_counted_not_sent() {
    #[derive(Serialize)]
    struct Tuple(u8, u8);
    impl Event for Tuple {
        fn name(&self) -> &str {
            "tuple"
        }
    }
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry = ProductTelemetry::new(config(&server, home.path()));
    telemetry.capture(Tuple(1, 2));
    telemetry.capture(DynamicEvent::new(""));
    telemetry.capture(DynamicEvent::new("too_big").property("blob", "x".repeat(1024 * 1024)));
    telemetry.capture(DynamicEvent::new("fine"));
    telemetry.flush(WAIT).ok();
    let events = server.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0]["event"], "fine");
    assert_eq!(telemetry.stats().dropped_invalid, 3);
}

#[test]
fn personal_data_is_scrubbed_before_it_leaves_unless_trusted() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let home_str = home.path().display().to_string();
    let telemetry =
        ProductTelemetry::new(config(&server, home.path()).trusted_property("build_host_ip"));
    telemetry.capture(
        DynamicEvent::new("error")
            .property(
                "message",
                format!("cannot open {home_str}/work/notes.txt for ada@example.com"),
            )
            .property(
                "endpoint",
                "https://user:hunter2@api.example.com/v1?token=abc",
            )
            .property("build_host_ip", "10.1.2.3")
            .property("model", "gpt-4o-mini"),
    );
    telemetry.flush(WAIT).expect("flush");
    let props = &server.events()[0]["properties"];
    assert_eq!(props["message"], "cannot open ~/work/notes.txt for <email>");
    assert_eq!(props["endpoint"], "https://api.example.com/v1");
    assert_eq!(props["build_host_ip"], "10.1.2.3", "trusted");
    assert_eq!(props["model"], "gpt-4o-mini");
    assert_eq!(props["$ip"], "0.0.0.0", "library keys untouched");

    let raw = ProductTelemetry::new(config(&server, home.path()).scrub(false));
    raw.capture(DynamicEvent::new("raw").property("email", "ada@example.com"));
    raw.flush(WAIT).expect("flush");
    assert_eq!(server.events()[1]["properties"]["email"], "ada@example.com");
}

#[test]
fn dry_run_prints_the_exact_payload_and_sends_nothing() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry =
        ProductTelemetry::new(config(&server, home.path()).client_options(|c| c.dry_run(true)));
    telemetry.capture(DynamicEvent::new("rehearsal"));
    telemetry.flush(WAIT).expect("a dry run completes");
    assert_eq!(server.connections(), 0, "nothing sent");
}

#[test]
fn the_sent_log_records_what_left_the_machine() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry = ProductTelemetry::new(config(&server, home.path()));
    telemetry.capture(DynamicEvent::new("shared").property("k", "v"));
    telemetry.flush(WAIT).expect("delivered");
    let log =
        product_telemetry::sent_log::read_last(&home.path().join(".wireapp/wireapp/sent.log"), 10);
    assert_eq!(log.len(), 1);
    let logged: serde_json::Value = serde_json::from_str(&log[0]).unwrap();
    assert_eq!(logged, server.events()[0], "exactly what was sent");
}

#[test]
fn keyed_hashes_link_values_on_one_machine_without_revealing_them() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry = ProductTelemetry::new(config(&server, home.path()));
    let a = telemetry
        .keyed_hash("git@example.com:acme/secret.git")
        .unwrap();
    let b = telemetry
        .keyed_hash("git@example.com:acme/secret.git")
        .unwrap();
    let c = telemetry
        .keyed_hash("git@example.com:acme/other.git")
        .unwrap();
    assert_eq!(a, b);
    assert_ne!(a, c);
    assert!(!a.contains("secret"));
    assert!(
        home.path()
            .join(".wireapp/wireapp/telemetry_secret")
            .exists()
    );
    // Another run on this machine links the same value to the same hash.
    let again = ProductTelemetry::new(config(&server, home.path()));
    assert_eq!(
        again.keyed_hash("git@example.com:acme/secret.git").unwrap(),
        a
    );
    // It passes the scrubber unchanged.
    telemetry.capture(DynamicEvent::new("repo").property("repo", a.clone()));
    telemetry.flush(WAIT).unwrap();
    assert_eq!(server.events()[0]["properties"]["repo"], a.as_str());

    let disabled = ProductTelemetry::new(TelemetryConfig::new("wireapp", KEY).environment(
        Environment::from_pairs([
            ("HOME", home.path().as_os_str().to_owned()),
            ("DO_NOT_TRACK", "1".into()),
        ]),
    ));
    assert_eq!(disabled.keyed_hash("x"), None);
}

#[test]
fn an_event_cannot_override_the_privacy_properties() {
    let server = TestServer::ok();
    let home = tempfile::tempdir().unwrap();
    let telemetry = ProductTelemetry::new(config(&server, home.path()));
    telemetry.capture(
        DynamicEvent::new("sneaky")
            .property("$ip", "1.2.3.4")
            .property("$geoip_disable", false)
            .property("$process_person_profile", true),
    );
    telemetry.flush(WAIT).expect("flush");
    let props = &server.events()[0]["properties"];
    assert_eq!(props["$ip"], "0.0.0.0");
    assert_eq!(props["$geoip_disable"], true);
    assert_eq!(props["$process_person_profile"], false);
}
