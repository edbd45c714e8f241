//! Helpers shared by the integration tests: a collector on 127.0.0.1:0 with a temporary
//! database, and a small HTTP client (ureq) that never treats a status as an error.

#![allow(dead_code)]

use std::io::Write;
use std::time::Duration;

use flate2::Compression;
use flate2::write::GzEncoder;
use product_telemetry_collector::{
    CollectorConfig, EventFilter, RunningCollector, Store, StoredEvent,
};
use serde_json::Value;

pub const KEY: &str = "phc_test_key";

/// A running collector and the temporary directory holding its database.
pub struct TestCollector {
    pub collector: RunningCollector,
    pub dir: tempfile::TempDir,
}

impl TestCollector {
    pub fn start() -> TestCollector {
        Self::start_with(|config| config)
    }

    pub fn start_with(configure: impl FnOnce(CollectorConfig) -> CollectorConfig) -> TestCollector {
        let dir = tempfile::tempdir().expect("tempdir");
        let config = configure(CollectorConfig::new(dir.path().join("events.sqlite")));
        let collector = RunningCollector::start("127.0.0.1:0".parse().expect("addr"), config)
            .expect("collector starts");
        TestCollector { collector, dir }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.collector.url())
    }

    pub fn store(&self) -> Store {
        Store::open(self.collector.db_path()).expect("open store")
    }

    pub fn events(&self) -> Vec<StoredEvent> {
        self.store()
            .events(&EventFilter::all())
            .expect("query events")
    }

    pub fn count(&self) -> u64 {
        self.store().count().expect("count")
    }
}

/// An answer: status and body text.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: String,
}

impl Answer {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    pub fn assert_ok(&self) {
        assert_eq!(
            (self.status, self.body.as_str()),
            (200, r#"{"status":"Ok"}"#)
        );
    }
}

pub fn agent() -> ureq::Agent {
    ureq::Agent::config_builder()
        .http_status_as_error(false)
        .proxy(None)
        .timeout_global(Some(Duration::from_secs(20)))
        .build()
        .into()
}

/// POSTs `body` with the given headers.
pub fn post(url: &str, headers: &[(&str, &str)], body: &[u8]) -> Answer {
    let mut request = agent().post(url);
    for (name, value) in headers {
        request = request.header(*name, *value);
    }
    let response = request.send(body).expect("request sent");
    answer(response)
}

/// POSTs JSON.
pub fn post_json(url: &str, body: &Value) -> Answer {
    post(
        url,
        &[("Content-Type", "application/json")],
        body.to_string().as_bytes(),
    )
}

/// GETs a URL.
pub fn get(url: &str) -> Answer {
    answer(agent().get(url).call().expect("request sent"))
}

fn answer(response: ureq::http::Response<ureq::Body>) -> Answer {
    let status = response.status().as_u16();
    let body = response
        .into_body()
        .read_to_string()
        .expect("readable body");
    Answer { status, body }
}

pub fn gzip(data: &[u8]) -> Vec<u8> {
    let mut encoder = GzEncoder::new(Vec::new(), Compression::fast());
    encoder.write_all(data).expect("write to a Vec");
    encoder.finish().expect("finish into a Vec")
}

pub fn b64(data: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(data)
}
