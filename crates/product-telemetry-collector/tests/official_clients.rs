//! Events sent by PostHog's official clients — `posthog` (Python) and `posthog-node` — land in
//! the collector exactly once, with their properties.
//!
//! The clients are installed by `scripts/install-test-deps.sh` (pinned versions). If they are
//! missing these tests fail and say so; they never pass silently.

mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use product_telemetry_collector::EventFilter;
use serde_json::Value;
use support::TestCollector;
use uuid::Uuid;

const POSTHOG_PYTHON_VERSION: &str = "7.91.1";
const POSTHOG_NODE_VERSION: &str = "5.74.0";
const KEY: &str = "phc_official_clients";
const INSTALL_HINT: &str = "run scripts/install-test-deps.sh to install the official PostHog \
                            clients used by these tests";

fn clients_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients")
}

/// Runs a client script against the collector and returns the events it says it sent.
fn run_client(program: &str, script: &str, collector: &TestCollector, run_id: &str) -> Vec<Value> {
    let mut child = Command::new(program)
        .arg(clients_dir().join(script))
        .args([&collector.collector.url(), KEY, run_id])
        .current_dir(clients_dir())
        // Loopback only: no proxy, no telemetry of the clients themselves, the v0 protocol.
        .env_remove("HTTP_PROXY")
        .env_remove("HTTPS_PROXY")
        .env_remove("http_proxy")
        .env_remove("https_proxy")
        .env("NO_PROXY", "127.0.0.1,localhost")
        .env("POSTHOG_CAPTURE_MODE", "v0")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {program}: {e}; {INSTALL_HINT}"));

    // Bounded wait: kill the client if it hangs.
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        match child.try_wait().expect("wait for client") {
            Some(_) => break,
            None if Instant::now() > deadline => {
                let _ = child.kill();
                panic!("{script} did not finish within 90 s");
            }
            None => std::thread::sleep(Duration::from_millis(50)),
        }
    }
    let output = child.wait_with_output().expect("client output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        output.status.success(),
        "{script} failed ({}): {stderr}\n{INSTALL_HINT}",
        output.status
    );
    let stdout = String::from_utf8_lossy(&output.stdout);
    let last_line = stdout.lines().last().unwrap_or_default();
    let sent: Value = serde_json::from_str(last_line)
        .unwrap_or_else(|e| panic!("{script} printed no event list ({e}): {stdout}\n{stderr}"));
    sent.as_array().expect("an array of events").clone()
}

/// Every event the client sent is stored exactly once, with its name, distinct id,
/// properties and the client's library name and version; nothing else was stored.
fn assert_landed_once(collector: &TestCollector, sent: &[Value], library: &str, version: &str) {
    let store = collector.store();
    let stored = store.events(&EventFilter::all()).expect("query");
    assert_eq!(
        stored.len(),
        sent.len(),
        "stored {} events, the client sent {}",
        stored.len(),
        sent.len()
    );
    for expected in sent {
        let uuid: Uuid = expected["uuid"]
            .as_str()
            .expect("uuid")
            .parse()
            .expect("uuid");
        let matches: Vec<_> = stored.iter().filter(|e| e.uuid == uuid).collect();
        assert_eq!(
            matches.len(),
            1,
            "event {uuid} stored {} times",
            matches.len()
        );
        let event = matches[0];
        assert_eq!(event.event, expected["event"].as_str().expect("event"));
        assert_eq!(
            event.distinct_id,
            expected["distinct_id"].as_str().expect("id")
        );
        assert_eq!(event.project_key, KEY);
        assert_eq!(event.library.as_deref(), Some(library));
        assert_eq!(event.library_version.as_deref(), Some(version));
        for (key, value) in expected["properties"].as_object().expect("properties") {
            assert_eq!(
                event.properties.get(key),
                Some(value),
                "property {key} of {uuid}"
            );
        }
    }
}

fn require_python_client() {
    let output = Command::new("python3")
        .args(["-c", "import posthog; print(posthog.VERSION)"])
        .output();
    let version = match output {
        Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_string(),
        Ok(o) => panic!(
            "the posthog Python package is not installed ({}); {INSTALL_HINT}",
            String::from_utf8_lossy(&o.stderr).trim()
        ),
        Err(e) => panic!("python3 cannot be run ({e}); {INSTALL_HINT}"),
    };
    assert_eq!(
        version, POSTHOG_PYTHON_VERSION,
        "posthog (Python) {version} is installed, the tests pin {POSTHOG_PYTHON_VERSION}; \
         {INSTALL_HINT}"
    );
}

fn require_node_client() {
    let manifest = clients_dir().join("node_modules/posthog-node/package.json");
    let text = std::fs::read_to_string(&manifest)
        .unwrap_or_else(|_| panic!("posthog-node is not installed; {INSTALL_HINT}"));
    let version = serde_json::from_str::<Value>(&text).expect("package.json")["version"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    assert_eq!(
        version, POSTHOG_NODE_VERSION,
        "posthog-node {version} is installed, the tests pin {POSTHOG_NODE_VERSION}; {INSTALL_HINT}"
    );
    let node = Command::new("node").arg("--version").output();
    assert!(
        node.is_ok_and(|o| o.status.success()),
        "node cannot be run; {INSTALL_HINT}"
    );
}

#[test]
fn posthog_python_events_land_exactly_once() {
    require_python_client();
    let collector = TestCollector::start_with(|c| c.with_project_key(KEY));
    let run_id = Uuid::now_v7().to_string();
    let sent = run_client("python3", "send_python.py", &collector, &run_id);
    assert_eq!(sent.len(), 6, "the script sends 3 plain and 3 gzip events");
    assert_landed_once(&collector, &sent, "posthog-python", POSTHOG_PYTHON_VERSION);
}

#[test]
fn posthog_node_events_land_exactly_once() {
    require_node_client();
    let collector = TestCollector::start_with(|c| c.with_project_key(KEY));
    let run_id = Uuid::now_v7().to_string();
    let sent = run_client("node", "send_node.mjs", &collector, &run_id);
    assert_eq!(
        sent.len(),
        6,
        "the script sends 3 compressed and 3 plain events"
    );
    assert_landed_once(&collector, &sent, "posthog-node", POSTHOG_NODE_VERSION);
}
