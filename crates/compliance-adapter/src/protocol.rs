//! The adapter protocol's request bodies, as the harness sends them, and the
//! conversions from them to the library's types.
//!
//! The harness sends optional fields either omitted or as `null`; both mean "not
//! given". Unknown fields (`disable_geoip`, `historical_migration`, `options`, …) are
//! accepted and ignored: the capture suite does not need them and the library has no
//! per-event equivalent.

use std::time::SystemTime;

use serde::Deserialize;
use serde_json::{Map, Value};
use uuid::Uuid;

/// `POST /init`.
#[derive(Debug, Deserialize)]
pub(crate) struct InitRequest {
    pub(crate) api_key: String,
    pub(crate) host: String,
    #[serde(default)]
    pub(crate) flush_at: Option<u64>,
    #[serde(default)]
    pub(crate) flush_interval_ms: Option<u64>,
    #[serde(default)]
    pub(crate) max_retries: Option<u32>,
    #[serde(default)]
    pub(crate) enable_compression: Option<bool>,
}

/// `POST /capture`.
#[derive(Debug, Deserialize)]
pub(crate) struct CaptureRequest {
    pub(crate) distinct_id: Value,
    pub(crate) event: String,
    #[serde(default)]
    pub(crate) properties: Option<Map<String, Value>>,
    #[serde(default)]
    pub(crate) timestamp: Option<String>,
    #[serde(default)]
    pub(crate) uuid: Option<String>,
}

impl CaptureRequest {
    /// The distinct id as the wire wants it: a non-empty string (numbers are
    /// stringified, as PostHog's SDKs do).
    pub(crate) fn distinct_id(&self) -> Result<String, String> {
        let id = match &self.distinct_id {
            Value::String(s) => s.clone(),
            Value::Number(n) => n.to_string(),
            other => return Err(format!("distinct_id must be a string, got {other}")),
        };
        if id.is_empty() {
            return Err("distinct_id must not be empty".into());
        }
        Ok(id)
    }

    /// The event's uuid: the caller's, when given, else a fresh UUID v7.
    pub(crate) fn uuid(&self) -> Result<Uuid, String> {
        match &self.uuid {
            Some(text) => {
                Uuid::parse_str(text).map_err(|e| format!("uuid {text:?} is not a UUID: {e}"))
            }
            None => Ok(Uuid::now_v7()),
        }
    }

    /// The event's time, when given.
    pub(crate) fn timestamp(&self) -> Result<Option<SystemTime>, String> {
        self.timestamp.as_deref().map(parse_timestamp).transpose()
    }
}

/// Parses an ISO 8601 / RFC 3339 timestamp into the instant it denotes.
///
/// Any offset is honoured (`2025-01-02T08:34:05+05:30` is `2025-01-02T03:04:05Z`);
/// the library then sends it in UTC with a `Z`. A timestamp without an offset is
/// taken as UTC.
pub(crate) fn parse_timestamp(text: &str) -> Result<SystemTime, String> {
    let text = text.trim();
    if let Ok(instant) = text.parse::<jiff::Timestamp>() {
        return Ok(SystemTime::from(instant));
    }
    if let Ok(civil) = text.parse::<jiff::civil::DateTime>()
        && let Ok(zoned) = civil.to_zoned(jiff::tz::TimeZone::UTC)
    {
        return Ok(SystemTime::from(zoned.timestamp()));
    }
    Err(format!("timestamp {text:?} is not an ISO 8601 date-time"))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn utc(text: &str) -> SystemTime {
        SystemTime::from(text.parse::<jiff::Timestamp>().unwrap())
    }

    #[test]
    fn offsets_are_converted_to_the_same_instant() {
        assert_eq!(
            parse_timestamp("2025-01-02T08:34:05+05:30").unwrap(),
            utc("2025-01-02T03:04:05Z")
        );
        assert_eq!(
            parse_timestamp("2025-01-01T22:04:05.250-05:00").unwrap(),
            utc("2025-01-02T03:04:05.250Z")
        );
        assert_eq!(
            parse_timestamp("2024-01-01T12:00:00Z").unwrap(),
            SystemTime::UNIX_EPOCH + Duration::from_secs(1_704_110_400)
        );
    }

    #[test]
    fn naive_timestamps_are_utc_and_garbage_is_refused() {
        assert_eq!(
            parse_timestamp("2024-01-01T12:00:00").unwrap(),
            utc("2024-01-01T12:00:00Z")
        );
        assert!(parse_timestamp("yesterday").is_err());
        assert!(parse_timestamp("").is_err());
    }

    #[test]
    fn capture_requests_accept_nulls_and_validate_ids() {
        let request: CaptureRequest = serde_json::from_str(
            r#"{"distinct_id": 42, "event": "e", "properties": null, "timestamp": null}"#,
        )
        .unwrap();
        assert_eq!(request.distinct_id().unwrap(), "42");
        assert_eq!(request.timestamp().unwrap(), None);
        assert_eq!(request.uuid().unwrap().get_version_num(), 7);

        let request: CaptureRequest =
            serde_json::from_str(r#"{"distinct_id": "", "event": "e", "uuid": "not-a-uuid"}"#)
                .unwrap();
        assert!(request.distinct_id().is_err());
        assert!(request.uuid().is_err());
    }

    #[test]
    fn init_requests_ignore_unknown_fields() {
        let request: InitRequest = serde_json::from_str(
            r#"{"api_key": "phc_x", "host": "http://127.0.0.1:1", "disable_geoip": true, "flush_at": null}"#,
        )
        .unwrap();
        assert_eq!(request.flush_at, None);
        assert!(serde_json::from_str::<InitRequest>(r#"{"api_key": "k"}"#).is_err());
        assert!(
            serde_json::from_str::<InitRequest>(r#"{"api_key": "k", "host": "h", "flush_at": -1}"#)
                .is_err()
        );
    }
}
