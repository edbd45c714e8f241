//! The capture interface: the real service, the no-op and the recorder are
//! interchangeable behind `dyn Telemetry`.

use std::sync::Arc;

use product_telemetry::{
    DynamicEvent, Environment, Event, NoopTelemetry, ProductTelemetry, RecordingTelemetry,
    Telemetry, TelemetryConfig,
};
use serde::Serialize;

#[derive(Serialize)]
struct LlmToolUsage {
    model: Option<String>,
    sync: bool,
}

impl Event for LlmToolUsage {
    fn name(&self) -> &str {
        "llm_tool_usage"
    }
}

fn library_code(telemetry: &dyn Telemetry) {
    telemetry.capture(LlmToolUsage {
        model: Some("gpt-x".into()),
        sync: true,
    });
    telemetry.capture(DynamicEvent::new("done").property("ok", true));
}

#[test]
fn recorder_sees_what_would_have_been_sent() {
    let recorder = RecordingTelemetry::new();
    library_code(&recorder);
    let events = recorder.events();
    assert_eq!(recorder.names(), ["llm_tool_usage", "done"]);
    assert_eq!(events[0].properties["model"], "gpt-x");
    assert_eq!(events[0].properties["sync"], true);
    assert_eq!(events[1].properties["ok"], true);
    recorder.clear();
    assert!(recorder.events().is_empty());
}

#[test]
fn implementations_are_interchangeable_behind_arc_dyn() {
    let recorder = RecordingTelemetry::new();
    let disabled = ProductTelemetry::new(
        TelemetryConfig::new("app", "phc_placeholder")
            .environment(Environment::from_pairs([("DO_NOT_TRACK", "1")])),
    );
    let all: Vec<Arc<dyn Telemetry>> = vec![
        Arc::new(recorder.clone()),
        Arc::new(NoopTelemetry),
        Arc::new(disabled),
    ];
    for telemetry in &all {
        library_code(telemetry.as_ref());
        telemetry.capture(DynamicEvent::new("via_arc"));
    }
    assert_eq!(recorder.names(), ["llm_tool_usage", "done", "via_arc"]);
}
