//! Watching the client's HTTP attempts: a [`Transport`] that wraps the real one and
//! records every attempt for the adapter's `GET /state`.
//!
//! The worker hands each attempt a [`TransportRequest`] carrying the uuids of the
//! events in the body and the attempt number (0 for the first try of a batch), so the
//! record is exactly what the library did, not a re-parse of the body.
//!
//! Each adapter instance has its own [`RequestLog`] and an `enabled` switch: `/reset`
//! and `/init` turn the old instance's switch off, so a retry that an old client still
//! had scheduled can never reach the mock server during the next test.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{SystemTime, UNIX_EPOCH};

use product_telemetry::transport::{
    Transport, TransportError, TransportRequest, TransportResponse,
};
use serde::Serialize;

/// One HTTP attempt, as `/state` reports it.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub(crate) struct RequestRecord {
    /// When the attempt started, in Unix milliseconds.
    pub(crate) timestamp_ms: u64,
    /// The HTTP status, or 0 when no answer came (connection refused, timeout…).
    pub(crate) status_code: u16,
    /// 0 for the first attempt of a batch, then 1, 2, …
    pub(crate) retry_attempt: u32,
    pub(crate) event_count: usize,
    pub(crate) uuid_list: Vec<String>,
}

#[derive(Debug, Default)]
struct LogInner {
    requests: Vec<RequestRecord>,
    last_error: Option<String>,
}

/// The attempts of one client, shared between its transport and the adapter.
#[derive(Debug, Default)]
pub(crate) struct RequestLog {
    inner: Mutex<LogInner>,
}

impl RequestLog {
    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn record(&self, record: RequestRecord, error: Option<String>) {
        let mut inner = self.lock();
        inner.requests.push(record);
        if error.is_some() {
            inner.last_error = error;
        }
    }

    /// Every attempt so far, in order.
    pub(crate) fn requests(&self) -> Vec<RequestRecord> {
        self.lock().requests.clone()
    }

    /// The last failed attempt's description (`HTTP 503`, a network error…).
    pub(crate) fn last_error(&self) -> Option<String> {
        self.lock().last_error.clone()
    }
}

/// Records every attempt, then lets `inner` perform it (while `enabled`).
#[derive(Debug)]
pub(crate) struct RecordingTransport<T> {
    inner: T,
    log: Arc<RequestLog>,
    enabled: Arc<AtomicBool>,
}

impl<T: Transport> RecordingTransport<T> {
    pub(crate) fn new(inner: T, log: Arc<RequestLog>, enabled: Arc<AtomicBool>) -> Self {
        RecordingTransport {
            inner,
            log,
            enabled,
        }
    }
}

impl<T: Transport> Transport for RecordingTransport<T> {
    fn send(
        &mut self,
        request: &TransportRequest<'_>,
    ) -> Result<TransportResponse, TransportError> {
        if !self.enabled.load(Ordering::Acquire) {
            // A retired instance: nothing leaves the process, nothing is recorded.
            return Err(TransportError("the adapter instance was reset".into()));
        }
        let timestamp_ms = now_ms();
        let result = self.inner.send(request);
        let (status_code, error) = match &result {
            Ok(response) if (200..300).contains(&response.status) => (response.status, None),
            Ok(response) => (response.status, Some(format!("HTTP {}", response.status))),
            Err(error) => (0, Some(error.to_string())),
        };
        self.log.record(
            RequestRecord {
                timestamp_ms,
                status_code,
                retry_attempt: request.attempt,
                event_count: request.uuids.len(),
                uuid_list: request.uuids.iter().map(ToString::to_string).collect(),
            },
            error,
        );
        result
    }
}

fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::VecDeque;
    use std::time::Duration;

    use product_telemetry::{Client, DynamicEvent, Message};
    use uuid::Uuid;

    /// Answers with scripted statuses, then 200.
    struct Scripted(VecDeque<Result<u16, &'static str>>);

    impl Transport for Scripted {
        fn send(&mut self, _: &TransportRequest<'_>) -> Result<TransportResponse, TransportError> {
            match self.0.pop_front().unwrap_or(Ok(200)) {
                Ok(status) => Ok(TransportResponse {
                    status,
                    retry_after: None,
                }),
                Err(message) => Err(TransportError(message.into())),
            }
        }
    }

    fn client(script: Vec<Result<u16, &'static str>>) -> (Client, Arc<RequestLog>) {
        let log = Arc::new(RequestLog::default());
        let transport = RecordingTransport::new(
            Scripted(script.into()),
            Arc::clone(&log),
            Arc::new(AtomicBool::new(true)),
        );
        let client = Client::builder("phc_test")
            .host("http://127.0.0.1:9")
            .backoff(Duration::from_millis(5), Duration::from_millis(20))
            .transport(transport)
            .build()
            .unwrap();
        (client, log)
    }

    #[test]
    fn attempts_are_recorded_with_retry_numbers_and_uuids() {
        let (client, log) = client(vec![Ok(503), Err("connection reset")]);
        let uuid = Uuid::now_v7();
        client.enqueue(Message::new("u", DynamicEvent::new("e")).uuid(uuid));
        client.flush(Duration::from_secs(5)).unwrap();

        let requests = log.requests();
        let statuses: Vec<_> = requests.iter().map(|r| r.status_code).collect();
        assert_eq!(statuses, [503, 0, 200]);
        let attempts: Vec<_> = requests.iter().map(|r| r.retry_attempt).collect();
        assert_eq!(attempts, [0, 1, 2]);
        for record in &requests {
            assert_eq!(record.event_count, 1);
            assert_eq!(record.uuid_list, [uuid.to_string()]);
        }
        assert_eq!(log.last_error().as_deref(), Some("connection reset"));
    }

    #[test]
    fn a_disabled_transport_sends_and_records_nothing() {
        let log = Arc::new(RequestLog::default());
        let transport = RecordingTransport::new(
            Scripted(VecDeque::new()),
            Arc::clone(&log),
            Arc::new(AtomicBool::new(false)),
        );
        let client = Client::builder("phc_test")
            .host("http://127.0.0.1:9")
            .max_retries(0)
            .transport(transport)
            .build()
            .unwrap();
        client.capture("u", DynamicEvent::new("e"));
        assert!(client.flush(Duration::from_secs(2)).is_err());
        assert!(log.requests().is_empty());
        assert_eq!(client.stats().sent, 0);
    }
}
