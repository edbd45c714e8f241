//! The wire format: one event as PostHog's `/batch/` expects it, and request bodies.
//!
//! Events are encoded once, by the worker, when they leave the queue; their `uuid` and
//! `timestamp` are fixed then and never change across retries. A request body is
//! `{"api_key": …, "sent_at": …, "batch": [events…]}` with `sent_at` recomputed for
//! every attempt, optionally gzip-compressed (level 1: most of the ratio for half
//! the CPU).

use std::io::Write;
use std::time::SystemTime;

use flate2::Compression;
use flate2::write::GzEncoder;
use serde::Serialize;
use uuid::Uuid;

use crate::event::Properties;

/// The largest serialised event sent; larger ones are dropped and counted.
pub const MAX_EVENT_BYTES: usize = 900 * 1024;
/// The largest uncompressed request body; batches are cut to stay below it.
pub const MAX_REQUEST_BYTES: usize = 5 * 1024 * 1024;
/// The most events in one request.
pub const MAX_BATCH_EVENTS: usize = 100;
/// The longest distinct id PostHog keeps; longer ones are truncated.
pub const MAX_DISTINCT_ID_CHARS: usize = 200;

/// An event serialised for the wire.
#[derive(Clone, Debug)]
pub(crate) struct EncodedEvent {
    pub(crate) uuid: Uuid,
    pub(crate) json: Vec<u8>,
}

#[derive(Serialize)]
struct WireEvent<'a> {
    event: &'a str,
    distinct_id: &'a str,
    uuid: Uuid,
    timestamp: String,
    properties: Merged<'a>,
}

/// The properties sent: the forced ones (which nothing overrides), the event's own,
/// then the defaults it does not set — one object, without copying any map.
pub(crate) struct Merged<'a> {
    pub(crate) forced: &'a Properties,
    pub(crate) own: &'a Properties,
    pub(crate) defaults: &'a Properties,
}

impl Serialize for Merged<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(None)?;
        for (key, value) in self.forced {
            map.serialize_entry(key, value)?;
        }
        for (key, value) in self.own {
            if !self.forced.contains_key(key) {
                map.serialize_entry(key, value)?;
            }
        }
        for (key, value) in self.defaults {
            if !self.own.contains_key(key) && !self.forced.contains_key(key) {
                map.serialize_entry(key, value)?;
            }
        }
        map.end()
    }
}

/// Serialises one event: its own properties, then each default it does not set.
pub(crate) fn encode_event(
    name: &str,
    distinct_id: &str,
    uuid: Uuid,
    timestamp: SystemTime,
    properties: Merged<'_>,
) -> Result<EncodedEvent, serde_json::Error> {
    let wire = WireEvent {
        event: name,
        distinct_id: truncate_chars(distinct_id, MAX_DISTINCT_ID_CHARS),
        uuid,
        timestamp: rfc3339(timestamp),
        properties,
    };
    Ok(EncodedEvent {
        uuid,
        json: serde_json::to_vec(&wire)?,
    })
}

/// A time as RFC 3339 in UTC with milliseconds, e.g. `2026-12-03T16:01:06.123Z`.
pub(crate) fn rfc3339(time: SystemTime) -> String {
    match jiff::Timestamp::try_from(time) {
        Ok(ts) => format!("{ts:.3}"),
        Err(_) => "1970-01-01T00:00:00.000Z".to_string(),
    }
}

fn truncate_chars(s: &str, max: usize) -> &str {
    match s.char_indices().nth(max) {
        Some((end, _)) => &s[..end],
        None => s,
    }
}

/// Builds a request body for `events`, with `sent_at` = now.
pub(crate) fn request_body(api_key: &str, events: &[EncodedEvent], gzip: bool) -> Vec<u8> {
    let key = serde_json::Value::from(api_key).to_string();
    let sent_at = rfc3339(SystemTime::now());
    let size = 48 + key.len() + events.iter().map(|e| e.json.len() + 1).sum::<usize>();
    let mut body = Vec::with_capacity(size);
    body.extend_from_slice(b"{\"api_key\":");
    body.extend_from_slice(key.as_bytes());
    body.extend_from_slice(b",\"sent_at\":\"");
    body.extend_from_slice(sent_at.as_bytes());
    body.extend_from_slice(b"\",\"batch\":[");
    for (i, event) in events.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(&event.json);
    }
    body.extend_from_slice(b"]}");
    if gzip {
        gzip_bytes(&body).unwrap_or(body)
    } else {
        body
    }
}

fn gzip_bytes(data: &[u8]) -> std::io::Result<Vec<u8>> {
    let mut encoder = GzEncoder::new(Vec::with_capacity(data.len() / 4 + 64), Compression::fast());
    encoder.write_all(data)?;
    encoder.finish()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Read;
    use std::time::Duration;

    fn event(n: u8) -> EncodedEvent {
        let mut props = Properties::new();
        props.insert("n".into(), n.into());
        encode_event(
            "e",
            "user",
            Uuid::from_u128(u128::from(n)),
            SystemTime::UNIX_EPOCH + Duration::from_millis(1_700_000_000_123),
            Merged {
                forced: &Properties::new(),
                own: &props,
                defaults: &Properties::new(),
            },
        )
        .unwrap()
    }

    #[test]
    fn wire_event_has_posthog_fields() {
        let v: serde_json::Value = serde_json::from_slice(&event(7).json).unwrap();
        assert_eq!(v["event"], "e");
        assert_eq!(v["distinct_id"], "user");
        assert_eq!(v["uuid"], "00000000-0000-0000-0000-000000000007");
        assert_eq!(v["timestamp"], "2023-11-14T22:13:20.123Z");
        assert_eq!(v["properties"]["n"], 7);
    }

    #[test]
    fn body_is_a_batch_object_and_gzip_round_trips() {
        let events = [event(1), event(2)];
        let plain = request_body("phc_\"quoted\"", &events, false);
        let v: serde_json::Value = serde_json::from_slice(&plain).unwrap();
        assert_eq!(v["api_key"], "phc_\"quoted\"");
        assert_eq!(v["batch"].as_array().unwrap().len(), 2);
        assert!(jiff::Timestamp::from_str(v["sent_at"].as_str().unwrap()).is_ok());

        let zipped = request_body("k", &events, true);
        assert_eq!(&zipped[..3], &[0x1f, 0x8b, 0x08]);
        let mut out = String::new();
        flate2::read::GzDecoder::new(&zipped[..])
            .read_to_string(&mut out)
            .unwrap();
        let v: serde_json::Value = serde_json::from_str(&out).unwrap();
        assert_eq!(v["batch"][1]["properties"]["n"], 2);
    }

    #[test]
    fn long_distinct_ids_are_truncated_on_char_boundaries() {
        let id = "é".repeat(300);
        let e = encode_event(
            "e",
            &id,
            Uuid::nil(),
            SystemTime::UNIX_EPOCH,
            Merged {
                forced: &Properties::new(),
                own: &Properties::new(),
                defaults: &Properties::new(),
            },
        )
        .unwrap();
        let v: serde_json::Value = serde_json::from_slice(&e.json).unwrap();
        assert_eq!(v["distinct_id"].as_str().unwrap().chars().count(), 200);
    }

    use std::str::FromStr;
}
