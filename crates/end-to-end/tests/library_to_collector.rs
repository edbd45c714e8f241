//! Our library into our collector: each event lands exactly once, with its properties,
//! through the whole real pipeline (queue, worker, spool, gzip, HTTP, SQLite).

use std::time::Duration;

use end_to_end::{collector, config};
use product_telemetry::{DynamicEvent, Event, LIB_NAME, LIB_VERSION, ProductTelemetry};
use product_telemetry_collector::{EventFilter, Store};
use serde::Serialize;

#[derive(Serialize)]
struct PlanBuild {
    plan_length: u32,
    step_type_counts: std::collections::BTreeMap<String, u32>,
}

impl Event for PlanBuild {
    fn name(&self) -> &str {
        "plan_v2_build"
    }
}

#[test]
fn every_event_lands_once_with_its_properties() {
    let home = tempfile::tempdir().unwrap();
    let db_dir = tempfile::tempdir().unwrap();
    let collector = collector(db_dir.path());
    let telemetry =
        ProductTelemetry::new(config(home.path(), &collector.url()).app_version("3.1.4"));
    for n in 0..250u32 {
        telemetry.capture(PlanBuild {
            plan_length: n,
            step_type_counts: [("llm_step".to_string(), n % 5)].into_iter().collect(),
        });
    }
    telemetry.capture(
        DynamicEvent::new("unicode")
            .property("text", "héllo ☃ — 日本語")
            .property(
                "nested",
                serde_json::json!({"list": [1, 2.5, null, true], "empty": {}}),
            ),
    );
    telemetry
        .shutdown(Duration::from_secs(20))
        .expect("delivered");
    let user_id = telemetry.user_id().unwrap().as_str().to_string();
    let db = collector.db_path().to_path_buf();
    collector.shutdown().unwrap();

    let store = Store::open(&db).unwrap();
    let events = store.events(&EventFilter::all()).unwrap();
    assert_eq!(events.len(), 251);
    let mut lengths: Vec<u64> = events
        .iter()
        .filter(|e| e.event == "plan_v2_build")
        .map(|e| e.properties["plan_length"].as_u64().unwrap())
        .collect();
    lengths.sort();
    assert_eq!(lengths, (0..250).collect::<Vec<u64>>(), "each once");
    for event in &events {
        assert_eq!(event.distinct_id, user_id);
        assert_eq!(event.library.as_deref(), Some(LIB_NAME));
        assert_eq!(event.library_version.as_deref(), Some(LIB_VERSION));
        assert_eq!(event.properties["sdk_version"], "3.1.4");
        assert_eq!(event.project_key, end_to_end::KEY);
    }
    let unicode = events.iter().find(|e| e.event == "unicode").unwrap();
    assert_eq!(unicode.properties["text"], "héllo ☃ — 日本語");
    assert_eq!(unicode.properties["nested"]["list"][1], 2.5);
    let build = events.iter().find(|e| e.event == "plan_v2_build").unwrap();
    assert!(build.properties["step_type_counts"].is_object());
}
