//! End to end over HTTP: a real collector on 127.0.0.1, a real client, a real SQLite file.

mod support;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use jiff::{SignedDuration, Timestamp};
use product_telemetry_collector::{Limits, Store};
use serde_json::{Value, json};
use support::{KEY, TestCollector, b64, gzip, post, post_json};
use uuid::Uuid;

fn event(name: &str) -> Value {
    json!({
        "event": name,
        "distinct_id": "install-1",
        "uuid": Uuid::now_v7().to_string(),
        "properties": {"$lib": "product-telemetry", "$lib_version": "0.1.0", "os": "linux"}
    })
}

fn batch(events: Vec<Value>) -> Value {
    json!({"api_key": KEY, "sent_at": Timestamp::now().to_string(), "batch": events})
}

#[test]
fn batch_is_stored_with_every_column() {
    let c = TestCollector::start();
    let e = event("app_started");
    post_json(&c.url("/batch/"), &batch(vec![e.clone()])).assert_ok();

    let events = c.events();
    assert_eq!(events.len(), 1);
    let stored = &events[0];
    assert_eq!(stored.uuid.to_string(), e["uuid"].as_str().expect("uuid"));
    assert_eq!(stored.event, "app_started");
    assert_eq!(stored.distinct_id, "install-1");
    assert_eq!(stored.project_key, KEY);
    assert_eq!(stored.library.as_deref(), Some("product-telemetry"));
    assert_eq!(stored.library_version.as_deref(), Some("0.1.0"));
    assert_eq!(Value::Object(stored.properties.clone()), e["properties"]);
    assert!((Timestamp::now() - stored.received_at).as_secs().abs() < 60);
}

#[test]
fn retried_batch_is_counted_once() {
    let c = TestCollector::start();
    let body = batch(vec![event("a"), event("b"), event("c")]);
    post_json(&c.url("/batch/"), &body).assert_ok();
    post_json(&c.url("/batch/"), &body).assert_ok();
    // Also through another route and shape: still the same three uuids.
    let as_array: Vec<Value> = body["batch"]
        .as_array()
        .expect("array")
        .iter()
        .map(|e| {
            let mut e = e.clone();
            e["token"] = json!(KEY);
            e
        })
        .collect();
    post_json(&c.url("/e/"), &Value::Array(as_array)).assert_ok();
    assert_eq!(c.count(), 3);
}

#[test]
fn a_bad_event_makes_the_whole_request_store_nothing() {
    let c = TestCollector::start();
    let mut no_distinct_id = event("bad");
    no_distinct_id
        .as_object_mut()
        .expect("object")
        .remove("distinct_id");
    let answer = post_json(
        &c.url("/batch/"),
        &batch(vec![event("good"), event("good"), no_distinct_id]),
    );
    assert_eq!(answer.status, 400);
    assert_eq!(answer.json()["type"], "validation_error");
    assert!(
        answer.json()["detail"]
            .as_str()
            .expect("detail")
            .contains("distinct_id")
    );

    let mut bad_uuid = event("bad");
    bad_uuid["uuid"] = json!("not-a-uuid");
    let answer = post_json(&c.url("/batch/"), &batch(vec![event("good"), bad_uuid]));
    assert_eq!(answer.status, 400);

    let mut no_name = event("x");
    no_name["event"] = json!("");
    assert_eq!(
        post_json(&c.url("/batch/"), &batch(vec![event("good"), no_name])).status,
        400
    );

    assert_eq!(c.count(), 0);
}

#[test]
fn client_clock_skew_is_corrected() {
    let c = TestCollector::start();
    // The client's clock is two hours fast; the event happened 30 s before sending.
    let client_now = Timestamp::now() + SignedDuration::from_hours(2);
    let mut e = event("skewed");
    e["timestamp"] = json!((client_now - SignedDuration::from_secs(30)).to_string());
    let mut plain = event("no_sent_at");
    plain["timestamp"] = json!("2024-01-02T03:04:05.678Z");
    let body = json!({"api_key": KEY, "sent_at": client_now.to_string(), "batch": [e]});
    post_json(&c.url("/batch/"), &body).assert_ok();
    // Without sent_at the timestamp is kept as given.
    post_json(
        &c.url("/batch/"),
        &json!({"api_key": KEY, "batch": [plain]}),
    )
    .assert_ok();
    // Without a timestamp, the received time is used.
    post_json(&c.url("/batch/"), &batch(vec![event("untimed")])).assert_ok();

    let store = c.store();
    let by_name = |name: &str| {
        store
            .events(&product_telemetry_collector::EventFilter::all().event(name))
            .expect("query")
            .remove(0)
    };
    let skewed = by_name("skewed");
    let expected = skewed.received_at - SignedDuration::from_secs(30);
    assert!((skewed.timestamp - expected).as_millis().abs() < 2_000);
    assert_eq!(
        by_name("no_sent_at").timestamp,
        "2024-01-02T03:04:05.678Z"
            .parse::<Timestamp>()
            .expect("valid")
    );
    let untimed = by_name("untimed");
    assert_eq!(untimed.timestamp, untimed.received_at);
}

#[test]
fn project_keys_restrict_what_is_accepted() {
    let c = TestCollector::start_with(|config| config.with_project_key("phc_allowed"));
    let mut body = batch(vec![event("a")]);
    body["api_key"] = json!("phc_other");
    let answer = post_json(&c.url("/batch/"), &body);
    assert_eq!(answer.status, 401);
    assert_eq!(answer.json()["type"], "authentication_error");
    assert_eq!(answer.json()["code"], "invalid_api_key");

    body["api_key"] = json!("phc_allowed");
    post_json(&c.url("/batch/"), &body).assert_ok();
    assert_eq!(c.count(), 1);
    assert_eq!(c.events()[0].project_key, "phc_allowed");
}

#[test]
fn token_rules_answer_401() {
    let c = TestCollector::start();
    let url = c.url("/batch/");
    let no_token = json!({"batch": [event("a")]});
    let answer = post_json(&url, &no_token);
    assert_eq!(
        (answer.status, answer.json()["code"].clone()),
        (401, json!("no_api_key"))
    );

    let mut a = event("a");
    a["token"] = json!("phc_one");
    let mut b = event("b");
    b["token"] = json!("phc_two");
    assert_eq!(post_json(&c.url("/e"), &json!([a, b])).status, 401);

    for bad in ["", "phx_personal_key", &"k".repeat(65)] {
        let mut body = batch(vec![event("a")]);
        body["api_key"] = json!(bad);
        assert_eq!(post_json(&url, &body).status, 401, "{bad:?}");
    }
    assert_eq!(c.count(), 0);
}

#[test]
fn every_route_with_and_without_trailing_slash() {
    let c = TestCollector::start();
    let routes = ["/batch", "/i/v0/e", "/e", "/capture", "/track", "/engage"];
    for route in routes {
        for path in [route.to_string(), format!("{route}/")] {
            post_json(&c.url(&path), &batch(vec![event(&path)])).assert_ok();
        }
    }
    assert_eq!(c.count(), 12);
    assert_eq!(support::get(&c.url("/nope")).status, 404);
}

#[test]
fn cors_preflight_and_origin_are_answered() {
    let c = TestCollector::start();
    let response = support::agent()
        .options(&c.url("/e/"))
        .header("Origin", "https://app.example")
        .header("Access-Control-Request-Method", "POST")
        .header("Access-Control-Request-Headers", "content-type")
        .call()
        .expect("preflight");
    assert_eq!(response.status(), 200);
    let header = |name: &str| {
        response
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    assert_eq!(
        header("access-control-allow-origin").as_deref(),
        Some("https://app.example")
    );
    assert_eq!(
        header("access-control-allow-headers").as_deref(),
        Some("content-type")
    );
    let answer = support::agent()
        .post(&c.url("/batch/"))
        .header("Origin", "https://app.example")
        .send(batch(vec![event("with_origin")]).to_string())
        .expect("post");
    assert_eq!(
        answer
            .headers()
            .get("access-control-allow-origin")
            .and_then(|v| v.to_str().ok()),
        Some("https://app.example")
    );
    assert_eq!(c.count(), 1);
}

#[test]
fn payload_shapes_array_batch_and_single_event() {
    let c = TestCollector::start();
    let mut in_array = event("in_array");
    in_array["$token"] = json!(KEY);
    post_json(&c.url("/e/"), &json!([in_array])).assert_ok();
    post_json(&c.url("/batch/"), &batch(vec![event("in_batch")])).assert_ok();
    let mut single = event("single");
    single["api_key"] = json!(KEY);
    post_json(&c.url("/capture/"), &single).assert_ok();
    let mut props_token = event("token_in_properties");
    props_token["properties"]["token"] = json!(KEY);
    post_json(&c.url("/i/v0/e/"), &props_token).assert_ok();
    let names: Vec<String> = c.events().into_iter().map(|e| e.event).collect();
    assert_eq!(names.len(), 4);
    for name in ["in_array", "in_batch", "single", "token_in_properties"] {
        assert!(
            names.iter().any(|n| n == name),
            "{name} missing from {names:?}"
        );
    }
}

#[test]
fn engage_person_update_and_dropped_performance_events() {
    let c = TestCollector::start();
    let update = json!({"api_key": KEY, "distinct_id": "install-1", "$set": {"plan": "pro"}});
    post_json(&c.url("/engage/"), &update).assert_ok();
    // The same nameless object elsewhere is refused.
    assert_eq!(post_json(&c.url("/capture/"), &update).status, 400);
    // Only $performance_event: accepted, nothing stored.
    let perf = json!({"event": "$performance_event", "distinct_id": "d", "api_key": KEY});
    post_json(&c.url("/e/"), &perf).assert_ok();

    let events = c.events();
    assert_eq!(events.len(), 1);
    assert_eq!(events[0].event, "$identify");
    assert_eq!(events[0].properties["$set"], json!({"plan": "pro"}));
}

#[test]
fn get_with_data_query_parameter() {
    let c = TestCollector::start();
    let mut e = event("from_get");
    e["token"] = json!(KEY);
    let json_text = json!([e]).to_string();
    let query = serde_urlencoded::to_string([("data", b64(json_text.as_bytes()))]).expect("query");
    support::get(&c.url(&format!("/e/?{query}&ver=1.0"))).assert_ok();
    let plain =
        serde_urlencoded::to_string([("data", batch(vec![event("plain_get")]).to_string())])
            .expect("query");
    support::get(&c.url(&format!("/batch?{plain}"))).assert_ok();
    assert_eq!(c.count(), 2);
    // GET without data is an empty payload.
    assert_eq!(support::get(&c.url("/e/")).status, 400);
}

#[test]
fn every_encoding_is_accepted() {
    let c = TestCollector::start();
    let url = c.url("/batch/");
    let body = |name: &str| batch(vec![event(name)]).to_string().into_bytes();

    let json = [("Content-Type", "application/json")];
    let gzip_header = [
        ("Content-Type", "application/json"),
        ("Content-Encoding", "gzip"),
    ];
    post(&url, &gzip_header, &gzip(&body("gzip_header"))).assert_ok();
    post(
        &format!("{url}?compression=gzip-js"),
        &json,
        &gzip(&body("gzip_query")),
    )
    .assert_ok();
    post(
        &format!("{url}?compression=gzip"),
        &json,
        &gzip(&body("gzip_query2")),
    )
    .assert_ok();
    post(&url, &json, &gzip(&body("gzip_magic"))).assert_ok();
    post(&url, &json, b64(&body("base64")).as_bytes()).assert_ok();
    post(&url, &json, b64(&gzip(&body("base64_gzip"))).as_bytes()).assert_ok();
    let form =
        serde_urlencoded::to_string([("data", String::from_utf8(body("form")).expect("utf8"))])
            .expect("form");
    let form_type = [("Content-Type", "application/x-www-form-urlencoded")];
    post(&url, &form_type, form.as_bytes()).assert_ok();
    let form_b64 = serde_urlencoded::to_string([
        ("data", b64(&gzip(&body("form_gzip_b64")))),
        ("compression", "gzip-js".to_string()),
    ])
    .expect("form");
    post(&url, &form_type, form_b64.as_bytes()).assert_ok();
    assert_eq!(c.count(), 8);
}

#[test]
fn size_limits_answer_413_and_store_nothing() {
    let c = TestCollector::start_with(|config| {
        config.with_limits(Limits::new(1024 * 1024, 64 * 1024, 256 * 1024))
    });
    // A gzip bomb: small on the wire, far over the decoded limit.
    let mut padded = event("bomb");
    padded["properties"]["padding"] = json!("0".repeat(8 * 1024 * 1024));
    let bomb = gzip(batch(vec![padded]).to_string().as_bytes());
    assert!(bomb.len() < 64 * 1024);
    let answer = post(&c.url("/batch/"), &[("Content-Encoding", "gzip")], &bomb);
    assert_eq!(answer.status, 413);
    assert_eq!(answer.json()["code"], "payload_too_large");

    // Over the wire limit of a single-event route.
    let mut big = event("big");
    big["properties"]["padding"] = json!("x".repeat(100 * 1024));
    assert_eq!(
        post_json(&c.url("/e/"), &batch(vec![big.clone()])).status,
        413
    );
    // …which /batch accepts only up to its own limit (the decoded limit here).
    assert_eq!(post_json(&c.url("/batch/"), &batch(vec![big])).status, 200);
    assert_eq!(c.count(), 1);
}

#[test]
fn malformed_bodies_answer_400() {
    let c = TestCollector::start();
    let url = c.url("/batch/");
    for body in [
        &b""[..],
        b"not json",
        b"{\"batch\": 3}",
        b"[]",
        b"{\"api_key\":\"k\",\"batch\":[]}",
    ] {
        let answer = post(&url, &[], body);
        assert_eq!(answer.status, 400, "{:?}", String::from_utf8_lossy(body));
        assert_eq!(answer.json()["type"], "validation_error");
    }
    let answer = post(
        &url,
        &[("Content-Encoding", "gzip")],
        b"\x1f\x8b\x08garbage",
    );
    assert_eq!(answer.status, 400);
    assert_eq!(c.count(), 0);
}

#[test]
fn store_can_be_read_while_the_collector_writes() {
    let c = TestCollector::start();
    post_json(&c.url("/batch/"), &batch(vec![event("a")])).assert_ok();
    let reader = c.store();
    assert_eq!(reader.count().expect("count"), 1);
    post_json(&c.url("/batch/"), &batch(vec![event("b")])).assert_ok();
    assert_eq!(reader.count().expect("count"), 2);
}

#[test]
fn shutdown_under_load_keeps_every_acknowledged_event() {
    let c = TestCollector::start();
    let url = c.url("/batch/");
    let acknowledged: Arc<Mutex<Vec<Uuid>>> = Arc::default();
    let senders: Vec<_> = (0..3)
        .map(|_| {
            let url = url.clone();
            let acknowledged = Arc::clone(&acknowledged);
            std::thread::spawn(move || {
                let agent = support::agent();
                // Bounded: at most 2000 requests per thread, stops at the first failure.
                for _ in 0..2000 {
                    let events: Vec<Value> = (0..20).map(|_| event("load")).collect();
                    let uuids: Vec<Uuid> = events
                        .iter()
                        .map(|e| e["uuid"].as_str().expect("uuid").parse().expect("uuid"))
                        .collect();
                    let result = agent
                        .post(&url)
                        .header("Content-Type", "application/json")
                        .send(batch(events).to_string());
                    match result {
                        Ok(response) if response.status() == 200 => {
                            acknowledged.lock().expect("lock").extend(uuids);
                        }
                        _ => return,
                    }
                }
            })
        })
        .collect();
    std::thread::sleep(Duration::from_millis(300));
    let TestCollector { collector, dir } = c;
    let db = collector.db_path().to_path_buf();
    collector.shutdown().expect("clean shutdown");
    for sender in senders {
        sender.join().expect("sender thread");
    }
    // The WAL was checkpointed into the database and removed on close.
    assert!(!db.with_extension("sqlite-wal").exists());
    let acknowledged = acknowledged.lock().expect("lock").clone();
    assert!(
        !acknowledged.is_empty(),
        "nothing was acknowledged before shutdown"
    );
    let store = Store::open(&db).expect("open");
    for uuid in &acknowledged {
        assert!(
            store.event_by_uuid(*uuid).expect("query").is_some(),
            "acknowledged event {uuid} was lost"
        );
    }
    drop(dir);
}
