//! End-to-end: the adapter binary, driven over its HTTP protocol, delivering to a tiny
//! scripted PostHog stand-in on loopback.
//!
//! Each test starts `compliance-adapter --listen 127.0.0.1:0` (reading the real port
//! from its first stdout line) and a mock `/batch/` server on `127.0.0.1:0` that
//! answers a scripted list of statuses, then 200. The assertions are on what reached
//! the mock server (bodies, headers, arrival times) and on the adapter's `/state`, so
//! they fail if the adapter or the library's retry logic breaks: a lost retry, a uuid
//! or timestamp that changes between attempts, a retried 4xx, an ignored
//! `max_retries`, a non-UTC timestamp sent as given.
//!
//! Everything is bounded: the adapter process is killed on drop, the mock server stops
//! after its test (or 30 s), and every HTTP call has a timeout.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::{Value, json};

// ---------------------------------------------------------------------------------
// The adapter process
// ---------------------------------------------------------------------------------

struct AdapterProcess {
    child: Child,
    base: String,
    agent: ureq::Agent,
}

impl AdapterProcess {
    fn start() -> Self {
        let mut child = Command::new(env!("CARGO_BIN_EXE_compliance-adapter"))
            .args(["--listen", "127.0.0.1:0", "--flush-timeout-ms", "10000"])
            .env_remove("PORT")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start the adapter binary");
        let stdout = child.stdout.take().expect("adapter stdout");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let mut line = String::new();
            let _ = BufReader::new(stdout).read_line(&mut line);
            let _ = tx.send(line);
        });
        let line = match rx.recv_timeout(Duration::from_secs(20)) {
            Ok(line) => line,
            Err(_) => {
                let _ = child.kill();
                panic!("the adapter did not report its address within 20 s");
            }
        };
        let base = line
            .trim()
            .strip_prefix("compliance-adapter listening on ")
            .unwrap_or_else(|| panic!("unexpected first line from the adapter: {line:?}"))
            .to_string();
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(Duration::from_secs(20)))
            .build()
            .new_agent();
        AdapterProcess { child, base, agent }
    }

    fn post(&self, path: &str, body: Value) -> (u16, Value) {
        let response = self
            .agent
            .post(&format!("{}{path}", self.base))
            .header("Content-Type", "application/json")
            .send(body.to_string())
            .unwrap_or_else(|e| panic!("POST {path}: {e}"));
        read_json(path, response)
    }

    fn get(&self, path: &str) -> (u16, Value) {
        let response = self
            .agent
            .get(&format!("{}{path}", self.base))
            .call()
            .unwrap_or_else(|e| panic!("GET {path}: {e}"));
        read_json(path, response)
    }

    /// `POST` that must answer 200.
    fn ok(&self, path: &str, body: Value) -> Value {
        let (status, reply) = self.post(path, body);
        assert_eq!(status, 200, "POST {path} answered {status}: {reply}");
        reply
    }

    fn state(&self) -> Value {
        let (status, state) = self.get("/state");
        assert_eq!(status, 200, "GET /state answered {status}: {state}");
        state
    }
}

fn read_json(path: &str, mut response: ureq::http::Response<ureq::Body>) -> (u16, Value) {
    let status = response.status().as_u16();
    let text = response
        .body_mut()
        .read_to_string()
        .unwrap_or_else(|e| panic!("{path}: reading the answer: {e}"));
    let json = serde_json::from_str(&text)
        .unwrap_or_else(|e| panic!("{path}: answer is not JSON ({e}): {text:?}"));
    (status, json)
}

impl Drop for AdapterProcess {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

// ---------------------------------------------------------------------------------
// The scripted PostHog stand-in
// ---------------------------------------------------------------------------------

/// One request as the mock server saw it.
#[derive(Debug)]
struct Received {
    at: Instant,
    path: String,
    content_encoding: Option<String>,
    /// The body as JSON (gunzipped when it was gzip-encoded).
    body: Value,
}

impl Received {
    fn uuids(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["uuid"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn timestamps(&self) -> Vec<String> {
        self.events()
            .iter()
            .map(|e| e["timestamp"].as_str().unwrap_or_default().to_string())
            .collect()
    }

    fn events(&self) -> Vec<Value> {
        self.body["batch"].as_array().cloned().unwrap_or_default()
    }
}

struct MockPostHog {
    addr: SocketAddr,
    received: Arc<Mutex<Vec<Received>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl MockPostHog {
    /// Answers `script` in order, then 200 to everything.
    fn start(script: &[u16]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the mock server");
        listener.set_nonblocking(true).expect("non-blocking accept");
        let addr = listener.local_addr().expect("mock address");
        let received = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let thread = {
            let received = Arc::clone(&received);
            let stop = Arc::clone(&stop);
            let mut script: std::collections::VecDeque<u16> = script.iter().copied().collect();
            std::thread::spawn(move || {
                let give_up = Instant::now() + Duration::from_secs(30);
                while !stop.load(Ordering::Relaxed) && Instant::now() < give_up {
                    match listener.accept() {
                        Ok((stream, _)) => {
                            let status = script.pop_front().unwrap_or(200);
                            if let Some(request) = serve_one(stream, status) {
                                received.lock().unwrap().push(request);
                            }
                        }
                        Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                            std::thread::sleep(Duration::from_millis(5));
                        }
                        Err(_) => return,
                    }
                }
            })
        };
        MockPostHog {
            addr,
            received,
            stop,
            thread: Some(thread),
        }
    }

    fn host(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn received(&self) -> std::sync::MutexGuard<'_, Vec<Received>> {
        self.received.lock().unwrap()
    }
}

impl Drop for MockPostHog {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

/// Reads one HTTP/1.1 request, records it, answers `status` and closes.
fn serve_one(mut stream: TcpStream, status: u16) -> Option<Received> {
    stream.set_nonblocking(false).ok()?;
    stream.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    let mut reader = BufReader::new(stream.try_clone().ok()?);
    let mut request_line = String::new();
    reader.read_line(&mut request_line).ok()?;
    let path = request_line.split_whitespace().nth(1)?.to_string();
    let mut content_length = 0usize;
    let mut content_encoding = None;
    loop {
        let mut line = String::new();
        reader.read_line(&mut line).ok()?;
        let line = line.trim_end();
        if line.is_empty() {
            break;
        }
        let (name, value) = line.split_once(':')?;
        match name.trim().to_ascii_lowercase().as_str() {
            "content-length" => content_length = value.trim().parse().ok()?,
            "content-encoding" => content_encoding = Some(value.trim().to_string()),
            _ => {}
        }
    }
    let mut raw = vec![0; content_length];
    reader.read_exact(&mut raw).ok()?;
    let at = Instant::now();
    let text = if content_encoding.as_deref() == Some("gzip") {
        let mut text = String::new();
        flate2::read::GzDecoder::new(&raw[..])
            .read_to_string(&mut text)
            .ok()?;
        text
    } else {
        String::from_utf8(raw).ok()?
    };
    let body = serde_json::from_str(&text).unwrap_or(Value::Null);
    let answer = if status == 200 {
        r#"{"status": 1}"#
    } else {
        r#"{"error": "scripted"}"#
    };
    let _ = write!(
        stream,
        "HTTP/1.1 {status} Scripted\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{answer}",
        answer.len()
    );
    let _ = stream.flush();
    Some(Received {
        at,
        path,
        content_encoding,
        body,
    })
}

fn column(state: &Value, field: &str) -> Vec<Value> {
    state["requests_made"]
        .as_array()
        .unwrap_or_else(|| panic!("requests_made is not an array: {state}"))
        .iter()
        .map(|r| r[field].clone())
        .collect()
}

// ---------------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------------

#[test]
fn health_advertises_capture_v0_and_gzip() {
    let adapter = AdapterProcess::start();
    let (status, health) = adapter.get("/health");
    assert_eq!(status, 200);
    assert_eq!(health["sdk_name"], "product-telemetry");
    assert_eq!(
        health["capabilities"],
        json!(["capture_v0", "encoding_gzip"])
    );
    // Malformed input gets a JSON error, and the adapter keeps serving.
    let (status, reply) = adapter.post("/capture", json!({"event": "no distinct id"}));
    assert_eq!(status, 400, "{reply}");
    assert_eq!(reply["success"], false);
    assert_eq!(adapter.get("/health").0, 200);
}

#[test]
fn a_503_is_retried_with_the_same_uuids_and_timestamps() {
    let mock = MockPostHog::start(&[503]);
    let adapter = AdapterProcess::start();
    adapter.ok(
        "/init",
        json!({
            "api_key": "phc_test_key",
            "host": mock.host(),
            "flush_at": 10,
            // Both events in one batch, however slow the machine: only /flush sends.
            "flush_interval_ms": 60_000,
            "max_retries": 3,
            "enable_compression": true,
        }),
    );
    let first = adapter.ok(
        "/capture",
        json!({
            "distinct_id": "user-1",
            "event": "first",
            "properties": {"n": 1, "when": "2025-01-02T08:34:05+05:30"},
            "timestamp": "2025-01-02T08:34:05+05:30",
        }),
    );
    let second = adapter.ok(
        "/capture",
        json!({"distinct_id": "user-1", "event": "second", "properties": null, "timestamp": null}),
    );
    let returned: Vec<String> = [&first, &second]
        .iter()
        .map(|reply| reply["uuid"].as_str().expect("a uuid string").to_string())
        .collect();
    assert_ne!(returned[0], returned[1]);

    let flush = adapter.ok("/flush", json!({}));
    assert_eq!(flush["success"], true, "{flush}");
    assert_eq!(flush["events_flushed"], 2, "{flush}");

    let received = mock.received();
    assert_eq!(received.len(), 2, "one 503, one retry: {received:#?}");
    for request in received.iter() {
        assert_eq!(request.path, "/batch/");
        assert_eq!(request.content_encoding.as_deref(), Some("gzip"));
        assert_eq!(request.body["api_key"], "phc_test_key");
        // The uuids on the wire are the ones /capture returned, in both attempts.
        assert_eq!(request.uuids(), returned);
    }
    assert_eq!(received[0].timestamps(), received[1].timestamps());
    let event = &received[0].events()[0];
    assert_eq!(event["timestamp"], "2025-01-02T03:04:05.000Z");
    assert_eq!(event["properties"]["when"], "2025-01-02T08:34:05+05:30");
    assert!(event["properties"]["$lib"].is_string());
    let delay = received[1].at - received[0].at;
    assert!(
        delay >= Duration::from_millis(300),
        "the retry came {delay:?} after the 503, without backoff"
    );
    drop(received);

    let state = adapter.state();
    assert_eq!(column(&state, "status_code"), [json!(503), json!(200)]);
    assert_eq!(column(&state, "retry_attempt"), [json!(0), json!(1)]);
    assert_eq!(column(&state, "event_count"), [json!(2), json!(2)]);
    for uuids in column(&state, "uuid_list") {
        assert_eq!(uuids, json!(returned));
    }
    assert_eq!(state["total_events_captured"], 2);
    assert_eq!(state["total_events_sent"], 2);
    assert_eq!(state["total_retries"], 1);
    assert_eq!(state["pending_events"], 0);
    assert_eq!(state["last_error"], "HTTP 503");
}

#[test]
fn retries_stop_at_max_retries_and_client_errors_are_not_retried() {
    // Transient failures only: attempts stop after max_retries.
    let mock = MockPostHog::start(&[503, 502, 504, 500]);
    let adapter = AdapterProcess::start();
    let init = json!({"api_key": "phc_test_key", "host": mock.host(), "max_retries": 1});
    adapter.ok("/init", init);
    let uuid = adapter.ok("/capture", json!({"distinct_id": "u", "event": "e"}))["uuid"].clone();
    let flush = adapter.ok("/flush", json!({}));
    assert_eq!(flush["events_flushed"], 0, "{flush}");
    assert_eq!(flush["undelivered"], 1, "{flush}");
    std::thread::sleep(Duration::from_millis(1500));
    {
        let received = mock.received();
        assert_eq!(received.len(), 2, "max_retries 1 means two attempts");
        assert!(
            received
                .iter()
                .all(|r| r.uuids() == [uuid.as_str().unwrap()])
        );
        assert_eq!(
            received[0].content_encoding, None,
            "compression is off by default"
        );
    }
    let state = adapter.state();
    assert_eq!(column(&state, "retry_attempt"), [json!(0), json!(1)]);
    assert_eq!(state["total_events_sent"], 0);

    // /reset forgets everything; a 400 after a fresh /init is not retried.
    adapter.ok("/reset", json!({}));
    assert_eq!(adapter.state()["requests_made"], json!([]));
    let mock = MockPostHog::start(&[400]);
    adapter.ok(
        "/init",
        json!({"api_key": "phc_test_key", "host": mock.host()}),
    );
    adapter.ok("/capture", json!({"distinct_id": "u", "event": "e"}));
    let flush = adapter.ok("/flush", json!({}));
    assert_eq!(flush["events_flushed"], 0, "{flush}");
    std::thread::sleep(Duration::from_millis(1200));
    assert_eq!(mock.received().len(), 1, "a 400 must not be retried");
    assert_eq!(column(&adapter.state(), "status_code"), [json!(400)]);
}
