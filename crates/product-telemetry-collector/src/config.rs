//! Collector configuration: where events are stored, which project keys are accepted, and
//! the size limits applied to every request.
//!
//! This module only holds plain data; it never opens files or sockets.

use std::path::{Path, PathBuf};
use std::time::Duration;

/// Wire body limit of `/batch` (20 MiB), as in PostHog's capture service.
pub const DEFAULT_BATCH_BODY_BYTES: usize = 20 * 1024 * 1024;
/// Wire body limit of `/i/v0/e`, `/e`, `/capture`, `/track` and `/engage` (2 MiB).
pub const DEFAULT_EVENT_BODY_BYTES: usize = 2 * 1024 * 1024;
/// Limit on a payload once decompressed and decoded (20 MiB).
pub const DEFAULT_DECODED_BYTES: usize = 20 * 1024 * 1024;
/// Requests handled at once; more wait their turn.
pub const DEFAULT_CONCURRENT_REQUESTS: usize = 32;

/// Size limits applied to each request.
///
/// A body over its wire limit, or a payload that grows past `decoded_bytes` while being
/// decompressed (a gzip bomb), is refused with `413 Payload Too Large` and stores nothing.
/// With at most `concurrent_requests` requests read, decoded or queued for the database at
/// once, the collector's memory stays bounded by roughly
/// `concurrent_requests × (wire limit + 2 × decoded_bytes)` whatever clients send.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub struct Limits {
    /// Largest body accepted on `/batch`, in bytes, as received on the wire.
    pub batch_body_bytes: usize,
    /// Largest body accepted on the single-event routes, in bytes, as received on the wire.
    pub event_body_bytes: usize,
    /// Largest payload once decompressed and base64-decoded, in bytes.
    pub decoded_bytes: usize,
    /// Requests handled at once (body read, decoded, waiting for the database); further
    /// requests wait for a slot.
    pub concurrent_requests: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            batch_body_bytes: DEFAULT_BATCH_BODY_BYTES,
            event_body_bytes: DEFAULT_EVENT_BODY_BYTES,
            decoded_bytes: DEFAULT_DECODED_BYTES,
            concurrent_requests: DEFAULT_CONCURRENT_REQUESTS,
        }
    }
}

impl Limits {
    /// Sets the three size limits at once (handy for tests of the limits themselves), with
    /// the default number of concurrent requests.
    pub fn new(batch_body_bytes: usize, event_body_bytes: usize, decoded_bytes: usize) -> Self {
        Limits {
            batch_body_bytes,
            event_body_bytes,
            decoded_bytes,
            concurrent_requests: DEFAULT_CONCURRENT_REQUESTS,
        }
    }

    /// Sets how many requests are handled at once (at least 1).
    pub fn with_concurrent_requests(mut self, requests: usize) -> Self {
        self.concurrent_requests = requests.max(1);
        self
    }
}

/// Everything a collector needs to run.
///
/// ```
/// use product_telemetry_collector::CollectorConfig;
///
/// let config = CollectorConfig::new("events.sqlite").with_project_key("phc_example");
/// assert_eq!(config.project_keys, vec!["phc_example".to_string()]);
/// ```
#[derive(Debug, Clone)]
#[non_exhaustive]
pub struct CollectorConfig {
    /// The SQLite file events are written to; created (with its schema) if missing.
    pub db_path: PathBuf,
    /// Project keys (tokens) accepted. Empty: any well-formed key is accepted.
    pub project_keys: Vec<String>,
    /// Request size limits.
    pub limits: Limits,
    /// Worker threads of the collector's tokio runtime (at least 1).
    pub worker_threads: usize,
    /// How long a shutdown waits for in-flight requests before cutting them off.
    /// Requests cut off were never acknowledged, so their clients retry them.
    pub shutdown_timeout: Duration,
}

impl CollectorConfig {
    /// A configuration storing into `db_path`, accepting any well-formed project key, with
    /// PostHog's default limits, two worker threads and a 5 s shutdown bound.
    pub fn new(db_path: impl AsRef<Path>) -> Self {
        CollectorConfig {
            db_path: db_path.as_ref().to_path_buf(),
            project_keys: Vec::new(),
            limits: Limits::default(),
            worker_threads: 2,
            shutdown_timeout: Duration::from_secs(5),
        }
    }

    /// Adds a project key to the accepted set (once any is set, only those are accepted).
    pub fn with_project_key(mut self, key: impl Into<String>) -> Self {
        self.project_keys.push(key.into());
        self
    }

    /// Replaces the request size limits.
    pub fn with_limits(mut self, limits: Limits) -> Self {
        self.limits = limits;
        self
    }

    /// Sets the number of runtime worker threads (clamped to at least 1).
    pub fn with_worker_threads(mut self, threads: usize) -> Self {
        self.worker_threads = threads.max(1);
        self
    }

    /// Sets how long a shutdown waits for in-flight requests.
    pub fn with_shutdown_timeout(mut self, timeout: Duration) -> Self {
        self.shutdown_timeout = timeout;
        self
    }
}
