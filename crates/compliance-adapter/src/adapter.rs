//! The adapter's endpoints, independent of the HTTP server: each takes the request
//! body and returns a [`Reply`] (status and JSON).
//!
//! The adapter holds at most one SDK instance: a [`Client`] built by `/init`, its
//! [`RequestLog`] and its transport's `enabled` switch. `/init` and `/reset` retire the
//! current instance: its transport is switched off (so nothing it still holds can
//! reach the mock server) and it is shut down without waiting.
//!
//! The instance lock is never held across a blocking call: `/flush` clones the client
//! (a cheap handle) and waits without it, so `/state` stays answerable meanwhile.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use product_telemetry::transport::HttpTransport;
use product_telemetry::{Client, DynamicEvent, Error, Message};
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::protocol::{CaptureRequest, InitRequest};
use crate::recorder::{RecordingTransport, RequestLog};

/// The capabilities advertised in `/health`: the `/batch` protocol and gzip bodies.
pub(crate) const CAPABILITIES: [&str; 2] = ["capture_v0", "encoding_gzip"];

/// Connect timeout of the real transport.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(3);

/// An HTTP status and a JSON body.
#[derive(Debug, PartialEq)]
pub(crate) struct Reply {
    pub(crate) status: u16,
    pub(crate) body: Value,
}

impl Reply {
    fn ok(body: Value) -> Self {
        Reply { status: 200, body }
    }

    pub(crate) fn error(status: u16, message: impl Into<String>) -> Self {
        Reply {
            status,
            body: json!({ "success": false, "error": message.into() }),
        }
    }
}

/// One SDK instance.
struct Instance {
    client: Client,
    log: Arc<RequestLog>,
    enabled: Arc<AtomicBool>,
}

impl Instance {
    /// Stops the instance for good: no more requests, nothing delivered later.
    fn retire(self) {
        self.enabled.store(false, Ordering::Release);
        // Deadline "now": the worker sends nothing more and stops; don't wait for it.
        let _ = self.client.shutdown(Duration::ZERO);
    }
}

/// The adapter's state.
pub(crate) struct Adapter {
    instance: Mutex<Option<Instance>>,
    flush_timeout: Duration,
}

impl Adapter {
    pub(crate) fn new(flush_timeout: Duration) -> Self {
        Adapter {
            instance: Mutex::new(None),
            flush_timeout,
        }
    }

    fn instance(&self) -> MutexGuard<'_, Option<Instance>> {
        self.instance.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Routes one request. `path` excludes the query string.
    pub(crate) fn handle(&self, method: &str, path: &str, body: &[u8]) -> Reply {
        match (method, path.trim_end_matches('/')) {
            ("GET", "/health") => self.health(),
            ("POST", "/init") => parse(body).map_or_else(|e| e, |r| self.init(r)),
            ("POST", "/capture") => parse(body).map_or_else(|e| e, |r| self.capture(r)),
            ("POST", "/flush") => self.flush(),
            ("GET", "/state") => self.state(),
            ("POST", "/reset") => self.reset(),
            ("POST", "/capture_ai" | "/get_feature_flag") => Reply::error(
                501,
                format!("{path} is not supported by this SDK (not in the adapter's capabilities)"),
            ),
            (_, "/health" | "/init" | "/capture" | "/flush" | "/state" | "/reset") => {
                Reply::error(405, format!("{method} is not allowed on {path}"))
            }
            _ => Reply::error(404, format!("no endpoint {method} {path}")),
        }
    }

    fn health(&self) -> Reply {
        Reply::ok(json!({
            "sdk_name": product_telemetry::LIB_NAME,
            "sdk_version": product_telemetry::LIB_VERSION,
            "adapter_version": env!("CARGO_PKG_VERSION"),
            "supports_parallel": false,
            "capabilities": CAPABILITIES,
        }))
    }

    fn init(&self, request: InitRequest) -> Reply {
        if let Some(old) = self.instance().take() {
            old.retire();
        }
        let log = Arc::new(RequestLog::default());
        let enabled = Arc::new(AtomicBool::new(true));
        let transport = RecordingTransport::new(
            HttpTransport::new(CONNECT_TIMEOUT),
            Arc::clone(&log),
            Arc::clone(&enabled),
        );
        // Unset parameters keep the library's defaults (flush_at 100, 1 s interval,
        // 3 retries); compression follows the protocol's default, off.
        let mut builder = Client::builder(request.api_key)
            .host(request.host)
            .connect_timeout(CONNECT_TIMEOUT)
            .gzip(request.enable_compression.unwrap_or(false))
            .transport(transport);
        if let Some(flush_at) = request.flush_at {
            builder = builder.flush_at(usize::try_from(flush_at).unwrap_or(usize::MAX));
        }
        if let Some(ms) = request.flush_interval_ms {
            builder = builder.flush_interval(Duration::from_millis(ms));
        }
        if let Some(retries) = request.max_retries {
            builder = builder.max_retries(retries);
        }
        match builder.build() {
            Ok(client) => {
                *self.instance() = Some(Instance {
                    client,
                    log,
                    enabled,
                });
                Reply::ok(json!({ "success": true }))
            }
            Err(error @ (Error::InvalidHost { .. } | Error::InvalidApiKey(_))) => {
                Reply::error(400, error.to_string())
            }
            Err(error) => Reply::error(500, error.to_string()),
        }
    }

    fn capture(&self, request: CaptureRequest) -> Reply {
        let prepared = (|| {
            let distinct_id = request.distinct_id()?;
            let uuid = request.uuid()?;
            let timestamp = request.timestamp()?;
            if request.event.is_empty() {
                return Err("event must not be empty".to_string());
            }
            Ok((distinct_id, uuid, timestamp))
        })();
        let (distinct_id, uuid, timestamp) = match prepared {
            Ok(parts) => parts,
            Err(message) => return Reply::error(400, message),
        };
        let guard = self.instance();
        let Some(instance) = guard.as_ref() else {
            return Reply::error(400, "the SDK is not initialised: call /init first");
        };
        let properties = request.properties.unwrap_or_default();
        let mut message = Message::new(
            distinct_id,
            DynamicEvent::with_properties(request.event, properties),
        )
        .uuid(uuid);
        if let Some(timestamp) = timestamp {
            message = message.timestamp(timestamp);
        }
        instance.client.enqueue(message);
        Reply::ok(json!({ "success": true, "uuid": uuid.to_string() }))
    }

    fn flush(&self) -> Reply {
        let Some(client) = self.instance().as_ref().map(|i| i.client.clone()) else {
            return Reply::error(400, "the SDK is not initialised: call /init first");
        };
        let sent_before = client.stats().sent;
        let result = client.flush(self.flush_timeout);
        let events_flushed = client.stats().sent.saturating_sub(sent_before);
        match result {
            Ok(()) => Reply::ok(json!({ "success": true, "events_flushed": events_flushed })),
            // Finished, but some events were refused or are still being retried:
            // the flush itself worked, so the harness gets a normal answer.
            Err(Error::Undelivered { undelivered }) => Reply::ok(json!({
                "success": true,
                "events_flushed": events_flushed,
                "undelivered": undelivered,
            })),
            Err(error) => Reply::ok(json!({
                "success": false,
                "events_flushed": events_flushed,
                "error": error.to_string(),
            })),
        }
    }

    fn state(&self) -> Reply {
        let guard = self.instance();
        let Some(instance) = guard.as_ref() else {
            return Reply::ok(json!({
                "pending_events": 0,
                "total_events_captured": 0,
                "total_events_sent": 0,
                "total_retries": 0,
                "last_error": null,
                "requests_made": [],
            }));
        };
        let stats = instance.client.stats();
        Reply::ok(json!({
            "pending_events": stats.pending(),
            "total_events_captured": stats.captured,
            "total_events_sent": stats.sent,
            "total_retries": stats.retries,
            "total_events_dropped": stats.dropped(),
            "last_error": instance.log.last_error(),
            "requests_made": instance.log.requests(),
        }))
    }

    fn reset(&self) -> Reply {
        if let Some(old) = self.instance().take() {
            old.retire();
        }
        Reply::ok(json!({ "success": true }))
    }
}

/// Parses a JSON body; an empty body is `{}`.
fn parse<T: DeserializeOwned>(body: &[u8]) -> Result<T, Reply> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body)
        .map_err(|e| Reply::error(400, format!("invalid request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn adapter() -> Adapter {
        Adapter::new(Duration::from_millis(500))
    }

    fn post(adapter: &Adapter, path: &str, body: Value) -> Reply {
        adapter.handle("POST", path, body.to_string().as_bytes())
    }

    #[test]
    fn health_advertises_the_capture_suite_and_gzip() {
        let reply = adapter().handle("GET", "/health", b"");
        assert_eq!(reply.status, 200);
        assert_eq!(reply.body["sdk_name"], "product-telemetry");
        assert_eq!(
            reply.body["capabilities"],
            json!(["capture_v0", "encoding_gzip"])
        );
        assert_eq!(reply.body["supports_parallel"], false);
    }

    #[test]
    fn bad_requests_get_json_errors_not_panics() {
        let adapter = adapter();
        let capture = json!({"distinct_id": "u", "event": "e"});
        assert_eq!(post(&adapter, "/capture", capture.clone()).status, 400);
        assert_eq!(adapter.handle("POST", "/flush", b"").status, 400);
        assert_eq!(adapter.handle("POST", "/init", b"{not json").status, 400);
        assert_eq!(post(&adapter, "/init", json!({"api_key": "k"})).status, 400);
        let remote = json!({"api_key": "phc_k", "host": "http://example.com"});
        assert_eq!(post(&adapter, "/init", remote).status, 400);
        let ok = json!({"api_key": "phc_k", "host": "http://127.0.0.1:9"});
        assert_eq!(post(&adapter, "/init", ok).status, 200);
        let bad_time = json!({"distinct_id": "u", "event": "e", "timestamp": "soon"});
        assert_eq!(post(&adapter, "/capture", bad_time).status, 400);
        let bad_props = json!({"distinct_id": "u", "event": "e", "properties": [1]});
        assert_eq!(post(&adapter, "/capture", bad_props).status, 400);
        let no_id = json!({"distinct_id": null, "event": "e"});
        assert_eq!(post(&adapter, "/capture", no_id).status, 400);
        let reply = adapter.handle("GET", "/capture", b"");
        assert_eq!(reply.status, 405);
        assert_eq!(reply.body["success"], false);
        assert_eq!(adapter.handle("GET", "/nope", b"").status, 404);
        assert_eq!(post(&adapter, "/get_feature_flag", json!({})).status, 501);
        assert_eq!(adapter.handle("POST", "/reset", b"").status, 200);
    }

    #[test]
    fn capture_returns_the_uuid_and_state_counts_it() {
        let adapter = adapter();
        // Nothing listens on port 9 of loopback: the event stays pending.
        let init = json!({"api_key": "phc_k", "host": "http://127.0.0.1:9", "max_retries": 0});
        assert_eq!(post(&adapter, "/init", init).status, 200);
        let reply = post(
            &adapter,
            "/capture",
            json!({"distinct_id": "u", "event": "e", "properties": {"a": 1}}),
        );
        assert_eq!(reply.status, 200);
        let uuid = reply.body["uuid"].as_str().unwrap();
        assert_eq!(uuid::Uuid::parse_str(uuid).unwrap().get_version_num(), 7);

        let state = adapter.handle("GET", "/state", b"").body;
        assert_eq!(state["total_events_captured"], 1);
        assert_eq!(state["total_events_sent"], 0);

        let flush = adapter.handle("POST", "/flush", b"").body;
        assert_eq!(flush["events_flushed"], 0);
        let state = adapter.handle("GET", "/state", b"").body;
        let requests = state["requests_made"].as_array().unwrap();
        assert_eq!(requests.len(), 1);
        assert_eq!(requests[0]["status_code"], 0);
        assert_eq!(requests[0]["uuid_list"], json!([uuid]));
        assert!(state["last_error"].is_string());

        assert_eq!(adapter.handle("POST", "/reset", b"").status, 200);
        let state = adapter.handle("GET", "/state", b"").body;
        assert_eq!(state["total_events_captured"], 0);
        assert_eq!(state["requests_made"], json!([]));
    }
}
