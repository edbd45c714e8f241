//! Payload rules: which JSON shapes are events, which token a request carries, and what makes
//! an event valid — PostHog's capture rules, applied to decoded JSON text.
//!
//! Shapes, tried in order: a bare array of events (posthog-js); a batch object
//! `{api_key|token, batch: [...], sent_at?, historical_migration?}`; a single event object.
//!
//! Checks, in PostHog's order (the first failure decides the answer, and a request that fails
//! any check stores nothing):
//! 1. the JSON parses into a shape, each `uuid` is absent, empty or a valid UUID → else 400;
//! 2. at least one event → else 400;
//! 3. one valid token for the whole request → else 401 (see [`validate_token`]);
//! 4. each event has a name and a distinct id → else 400.
//!
//! Like PostHog: a nameless single event sent to `/engage` is a person update named
//! `$identify`; top-level `$set`/`$set_once` move into the properties; `$performance_event`s
//! are dropped on arrival (a request of nothing else is accepted and stores nothing).
//!
//! Properties are otherwise kept as the exact JSON text the client sent; only the few keys
//! the rules need (`token`, `distinct_id`, `$lib`, `$lib_version`, `$ignore_sent_at`) are
//! looked at.
//! This module does no I/O and knows nothing of HTTP.

use std::borrow::Cow;

use jiff::Timestamp;
use serde::Deserialize;
use serde_json::Value;
use serde_json::value::RawValue;
use uuid::Uuid;

use crate::clock::{self, ClientTime};

/// Longest distinct id kept, in characters; longer ones are truncated.
pub const MAX_DISTINCT_ID_CHARS: usize = 200;
/// Longest valid token, in bytes.
pub const MAX_TOKEN_BYTES: usize = 64;

/// A request that passed every rule: ready to be stored.
#[derive(Debug, Clone, PartialEq)]
pub struct CaptureBatch {
    /// The request's project key (token), validated.
    pub token: String,
    /// The batch's `historical_migration` flag (accepted, not acted on).
    pub historical_migration: bool,
    /// The events, in request order.
    pub events: Vec<NewEvent>,
}

/// One validated event.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    /// The client's uuid, or a fresh v7 when it sent none.
    pub uuid: Uuid,
    /// The event name (never empty).
    pub event: String,
    /// The distinct id: stringified if not a string, at most 200 characters, never empty.
    pub distinct_id: String,
    /// The event time, corrected for client clock skew (see [`crate::clock`]).
    pub timestamp: Timestamp,
    /// `properties.$lib`, when a string.
    pub library: Option<String>,
    /// `properties.$lib_version`, when a string.
    pub library_version: Option<String>,
    /// The properties object as JSON text, exactly as sent (`{}` when absent or null).
    pub properties: String,
}

/// Why a token is not valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TokenError {
    /// Empty (or only whitespace).
    #[error("empty")]
    Empty,
    /// Longer than 64 bytes.
    #[error("too_long")]
    TooLong,
    /// Not ASCII.
    #[error("not_ascii")]
    NotAscii,
    /// A personal API key (`phx_…`), which must never be sent to capture.
    #[error("personal_api_key")]
    PersonalApiKey,
    /// Contains a NUL byte.
    #[error("null_byte")]
    NullByte,
}

/// Why a request's payload was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PayloadError {
    /// Not JSON, or not one of the accepted shapes.
    #[error("failed to parse request: {0}")]
    Parse(String),
    /// An event's `uuid` is not a UUID.
    #[error("failed to parse request: invalid uuid {0:?}")]
    InvalidUuid(String),
    /// No event at all.
    #[error("request holds no event")]
    EmptyBatch,
    /// No token anywhere in the request.
    #[error("event submitted without an api_key")]
    NoToken,
    /// Events carry different tokens.
    #[error("batch submitted with inconsistent api_key values")]
    MultipleTokens,
    /// The token is malformed.
    #[error("API key is not valid: {0}")]
    InvalidToken(#[from] TokenError),
    /// An event without a name, or with an empty one.
    #[error("event submitted with an empty event name")]
    MissingEventName,
    /// An event without a distinct id, or with an empty one.
    #[error("event submitted without a distinct_id")]
    MissingDistinctId,
}

impl PayloadError {
    /// True for the token failures (answered 401); the others are answered 400.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            PayloadError::NoToken | PayloadError::MultipleTokens | PayloadError::InvalidToken(_)
        )
    }
}

/// Checks that a token has the right shape and returns it trimmed of surrounding whitespace
/// (as PostHog does, so a pasted key with a trailing newline still works).
///
/// ```
/// use product_telemetry_collector::payload::{validate_token, TokenError};
///
/// assert_eq!(validate_token("phc_abc\n"), Ok("phc_abc"));
/// assert_eq!(validate_token("phx_personal"), Err(TokenError::PersonalApiKey));
/// ```
pub fn validate_token(token: &str) -> Result<&str, TokenError> {
    let token = token.trim();
    if token.is_empty() {
        Err(TokenError::Empty)
    } else if token.len() > MAX_TOKEN_BYTES {
        Err(TokenError::TooLong)
    } else if !token.is_ascii() {
        Err(TokenError::NotAscii)
    } else if token.starts_with("phx_") {
        Err(TokenError::PersonalApiKey)
    } else if token.contains('\0') {
        Err(TokenError::NullByte)
    } else {
        Ok(token)
    }
}

/// An event as it appears on the wire.
#[derive(Debug, Deserialize)]
struct WireEvent<'a> {
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "$token")]
    dollar_token: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default, alias = "$distinct_id")]
    distinct_id: Option<Value>,
    #[serde(default, borrow)]
    uuid: Option<Cow<'a, str>>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default, borrow)]
    properties: Option<&'a RawValue>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default, borrow, rename = "$set")]
    set: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "$set_once")]
    set_once: Option<&'a RawValue>,
}

/// A JSON object at the top level: a batch when it has `batch`, else a single event (whose
/// fields are then read from the same object).
#[derive(Debug, Deserialize)]
struct WireObject<'a> {
    #[serde(default, borrow)]
    batch: Option<Vec<WireEvent<'a>>>,
    #[serde(default, borrow)]
    sent_at: Option<Cow<'a, str>>,
    #[serde(default)]
    historical_migration: Option<bool>,
    // Single-event fields; `token`/`api_key` double as the batch token.
    #[serde(default)]
    token: Option<String>,
    #[serde(default, rename = "$token")]
    dollar_token: Option<String>,
    #[serde(default)]
    api_key: Option<String>,
    #[serde(default, alias = "$distinct_id")]
    distinct_id: Option<Value>,
    #[serde(default, borrow)]
    uuid: Option<Cow<'a, str>>,
    #[serde(default)]
    event: Option<String>,
    #[serde(default, borrow)]
    properties: Option<&'a RawValue>,
    #[serde(default, borrow)]
    timestamp: Option<Cow<'a, str>>,
    #[serde(default)]
    offset: Option<i64>,
    #[serde(default, borrow, rename = "$set")]
    set: Option<&'a RawValue>,
    #[serde(default, borrow, rename = "$set_once")]
    set_once: Option<&'a RawValue>,
}

/// The few properties the rules look at; everything else is skipped unparsed.
#[derive(Debug, Default, Deserialize)]
struct PropertiesPeek {
    #[serde(default)]
    token: Option<Value>,
    #[serde(default)]
    distinct_id: Option<Value>,
    #[serde(default, rename = "$distinct_id")]
    dollar_distinct_id: Option<Value>,
    #[serde(default, rename = "$lib")]
    lib: Option<Value>,
    #[serde(default, rename = "$lib_version")]
    lib_version: Option<Value>,
    #[serde(default, rename = "$ignore_sent_at")]
    ignore_sent_at: Option<Value>,
}

/// What is known about a request besides its payload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct RequestContext {
    /// When the request arrived (the base of clock-skew correction).
    pub received: Timestamp,
    /// `sent_at` from the `_` query parameter, used when the body carries none.
    pub query_sent_at: Option<Timestamp>,
    /// The request came to `/engage`: a single event object without a name is then a
    /// person update and named `$identify`, as PostHog does.
    pub engage: bool,
}

impl RequestContext {
    /// A request received at `received`, not on `/engage`, without a query `sent_at`.
    pub fn new(received: Timestamp) -> RequestContext {
        RequestContext {
            received,
            query_sent_at: None,
            engage: false,
        }
    }

    /// Sets the `sent_at` taken from the query string.
    pub fn with_query_sent_at(mut self, sent_at: Option<Timestamp>) -> RequestContext {
        self.query_sent_at = sent_at;
        self
    }

    /// Marks the request as sent to `/engage`.
    pub fn on_engage(mut self) -> RequestContext {
        self.engage = true;
        self
    }
}

/// Events PostHog's capture drops on arrival; a request holding only these is answered as
/// accepted and stores nothing.
pub const DROPPED_EVENTS: [&str; 1] = ["$performance_event"];

/// The shape-independent view of a request.
struct Envelope<'a> {
    batch_token: Option<String>,
    sent_at: Option<Cow<'a, str>>,
    historical_migration: bool,
    events: Vec<WireEvent<'a>>,
}

/// Applies every rule to a decoded request.
///
/// The result holds no event (and an unchecked, empty token) when every event was one
/// PostHog drops on arrival ([`DROPPED_EVENTS`]): such a request is accepted and stores
/// nothing.
///
/// ```
/// use product_telemetry_collector::payload::{RequestContext, parse_request};
///
/// let json = r#"{"api_key":"phc_k","batch":[{"event":"opened","distinct_id":"u1",
///               "properties":{"$lib":"posthog-rs","$lib_version":"0.3.0"}}]}"#;
/// let batch = parse_request(json, &RequestContext::new(jiff::Timestamp::now())).unwrap();
/// assert_eq!(batch.token, "phc_k");
/// assert_eq!(batch.events[0].library.as_deref(), Some("posthog-rs"));
/// ```
pub fn parse_request(json: &str, context: &RequestContext) -> Result<CaptureBatch, PayloadError> {
    let mut envelope = parse_shape(json, context.engage)?;

    // Rule 1 (continued): every uuid must be valid before anything else is judged.
    let uuids = envelope
        .events
        .iter()
        .map(|e| parse_uuid(e.uuid.as_deref()))
        .collect::<Result<Vec<_>, _>>()?;

    // Rule 2.
    if envelope.events.is_empty() {
        return Err(PayloadError::EmptyBatch);
    }
    let mut uuids = uuids.into_iter();
    let mut kept_uuids = Vec::with_capacity(envelope.events.len());
    envelope.events.retain(|e| {
        let uuid = uuids.next().flatten();
        let keep = !e
            .event
            .as_deref()
            .is_some_and(|name| DROPPED_EVENTS.contains(&name));
        if keep {
            kept_uuids.push(uuid);
        }
        keep
    });
    if envelope.events.is_empty() {
        return Ok(CaptureBatch {
            token: String::new(),
            historical_migration: envelope.historical_migration,
            events: Vec::new(),
        });
    }
    let uuids = kept_uuids;

    // Peek into each event's properties once (a non-object is a parse error).
    let peeks = envelope
        .events
        .iter()
        .map(|e| peek_properties(e.properties))
        .collect::<Result<Vec<_>, _>>()?;

    // Rule 3.
    let token = resolve_token(envelope.batch_token.as_deref(), &envelope.events, &peeks)?;

    // Rule 4, and the rows themselves.
    let sent_at = envelope
        .sent_at
        .as_deref()
        .and_then(clock::parse_client_time)
        .or(context.query_sent_at);
    let events = envelope
        .events
        .into_iter()
        .zip(peeks)
        .zip(uuids)
        .map(|((wire, peek), uuid)| build_event(wire, peek, uuid, sent_at, context.received))
        .collect::<Result<Vec<_>, _>>()?;

    Ok(CaptureBatch {
        token,
        historical_migration: envelope.historical_migration,
        events,
    })
}

fn parse_shape(json: &str, engage: bool) -> Result<Envelope<'_>, PayloadError> {
    let parse_err = |e: serde_json::Error| PayloadError::Parse(e.to_string());
    match json.trim_start().as_bytes().first() {
        Some(b'[') => Ok(Envelope {
            batch_token: None,
            sent_at: None,
            historical_migration: false,
            events: serde_json::from_str(json).map_err(parse_err)?,
        }),
        Some(b'{') => {
            let object: WireObject<'_> = serde_json::from_str(json).map_err(parse_err)?;
            Ok(object.into_envelope(engage))
        }
        _ => Err(PayloadError::Parse(
            "expected a JSON array of events, a batch object or an event object".into(),
        )),
    }
}

impl<'a> WireObject<'a> {
    fn into_envelope(self, engage: bool) -> Envelope<'a> {
        match self.batch {
            Some(batch) => Envelope {
                batch_token: self.token.or(self.api_key),
                sent_at: self.sent_at,
                historical_migration: self.historical_migration.unwrap_or(false),
                events: batch,
            },
            None => Envelope {
                batch_token: None,
                sent_at: None,
                historical_migration: false,
                events: vec![WireEvent {
                    token: self.token,
                    dollar_token: self.dollar_token,
                    api_key: self.api_key,
                    distinct_id: self.distinct_id,
                    uuid: self.uuid,
                    // A person update to /engage comes without a name.
                    event: match self.event {
                        None if engage => Some("$identify".to_string()),
                        name => name,
                    },
                    properties: self.properties,
                    timestamp: self.timestamp,
                    offset: self.offset,
                    set: self.set,
                    set_once: self.set_once,
                }],
            },
        }
    }
}

fn parse_uuid(text: Option<&str>) -> Result<Option<Uuid>, PayloadError> {
    match text {
        None | Some("") => Ok(None),
        Some(text) => Uuid::parse_str(text)
            .map(Some)
            .map_err(|_| PayloadError::InvalidUuid(text.chars().take(64).collect())),
    }
}

fn peek_properties(raw: Option<&RawValue>) -> Result<PropertiesPeek, PayloadError> {
    match raw.map(RawValue::get) {
        None | Some("null") => Ok(PropertiesPeek::default()),
        Some(text) if !text.starts_with('{') => Err(PayloadError::Parse(
            "properties: expected a JSON object".into(),
        )),
        Some(text) => {
            serde_json::from_str(text).map_err(|e| PayloadError::Parse(format!("properties: {e}")))
        }
    }
}

/// Batch-level token, else each event's `token`/`$token`/`api_key`/`properties.token`
/// (events without one are skipped, but two different ones are refused).
fn resolve_token(
    batch_token: Option<&str>,
    events: &[WireEvent<'_>],
    peeks: &[PropertiesPeek],
) -> Result<String, PayloadError> {
    if let Some(token) = batch_token {
        return Ok(validate_token(token)?.to_string());
    }
    let mut found: Option<&str> = None;
    for (event, peek) in events.iter().zip(peeks) {
        let token = event
            .token
            .as_deref()
            .or(event.dollar_token.as_deref())
            .or(event.api_key.as_deref())
            .or(peek.token.as_ref().and_then(Value::as_str));
        match (found, token) {
            (_, None) => {}
            (None, Some(t)) => found = Some(t),
            (Some(f), Some(t)) if f == t => {}
            (Some(_), Some(_)) => return Err(PayloadError::MultipleTokens),
        }
    }
    let token = found.ok_or(PayloadError::NoToken)?;
    Ok(validate_token(token)?.to_string())
}

fn build_event(
    wire: WireEvent<'_>,
    peek: PropertiesPeek,
    uuid: Option<Uuid>,
    sent_at: Option<Timestamp>,
    received: Timestamp,
) -> Result<NewEvent, PayloadError> {
    let event = wire
        .event
        .filter(|name| !name.is_empty())
        .ok_or(PayloadError::MissingEventName)?;
    let distinct_id = [wire.distinct_id, peek.distinct_id, peek.dollar_distinct_id]
        .into_iter()
        .flatten()
        .find(|v| !v.is_null())
        .and_then(stringify_distinct_id)
        .ok_or(PayloadError::MissingDistinctId)?;
    let timestamp = clock::event_time(
        ClientTime {
            timestamp: wire.timestamp.as_deref(),
            offset_ms: wire.offset,
            sent_at,
            ignore_sent_at: peek.ignore_sent_at.as_ref().and_then(Value::as_bool) == Some(true),
        },
        received,
    );
    let properties = match wire.properties.map(RawValue::get) {
        None | Some("null") => "{}".to_string(),
        Some(text) => text.to_string(),
    };
    let properties = merge_person_updates(properties, wire.set, wire.set_once)?;
    Ok(NewEvent {
        uuid: uuid.unwrap_or_else(Uuid::now_v7),
        event,
        distinct_id,
        timestamp,
        library: into_string(peek.lib),
        library_version: into_string(peek.lib_version),
        properties,
    })
}

/// Top-level `$set` / `$set_once` (person updates, e.g. from `/engage`) move into the
/// properties, over any the properties already hold, as PostHog's ingestion does. Without
/// them the properties text is kept exactly as sent.
fn merge_person_updates(
    properties: String,
    set: Option<&RawValue>,
    set_once: Option<&RawValue>,
) -> Result<String, PayloadError> {
    let updates: Vec<(&str, &RawValue)> = [("$set", set), ("$set_once", set_once)]
        .into_iter()
        .filter_map(|(key, raw)| raw.filter(|r| r.get() != "null").map(|r| (key, r)))
        .collect();
    if updates.is_empty() {
        return Ok(properties);
    }
    let parse_err = |e: serde_json::Error| PayloadError::Parse(e.to_string());
    let mut map: serde_json::Map<String, Value> =
        serde_json::from_str(&properties).map_err(parse_err)?;
    for (key, raw) in updates {
        let Value::Object(update) = serde_json::from_str(raw.get()).map_err(parse_err)? else {
            return Err(PayloadError::Parse(format!(
                "{key}: expected a JSON object"
            )));
        };
        match map.get_mut(key) {
            Some(Value::Object(existing)) => existing.extend(update),
            _ => {
                map.insert(key.to_string(), Value::Object(update));
            }
        }
    }
    serde_json::to_string(&map).map_err(parse_err)
}

/// Strings as they are, anything else as compact JSON; NUL replaced; at most 200
/// characters; `None` when empty.
fn stringify_distinct_id(value: Value) -> Option<String> {
    let text = match value {
        Value::String(s) => s,
        other => other.to_string(),
    };
    let text = if text.contains('\0') {
        text.replace('\0', "\u{FFFD}")
    } else {
        text
    };
    match text.len() {
        0 => None,
        n if n <= MAX_DISTINCT_ID_CHARS => Some(text),
        _ => Some(text.chars().take(MAX_DISTINCT_ID_CHARS).collect()),
    }
}

fn into_string(value: Option<Value>) -> Option<String> {
    match value {
        Some(Value::String(s)) => Some(s),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn now() -> Timestamp {
        "2024-05-01T12:00:00Z".parse().expect("valid")
    }

    fn parse(json: &Value) -> Result<CaptureBatch, PayloadError> {
        parse_request(&json.to_string(), &RequestContext::new(now()))
    }

    fn event(name: &str) -> Value {
        json!({"event": name, "distinct_id": "user-1", "properties": {"a": 1}})
    }

    // ---- shapes ----

    #[test]
    fn bare_array_of_events() {
        let batch = parse(&json!([
            {"event": "a", "distinct_id": "u", "token": "phc_k"},
            {"event": "b", "distinct_id": "u", "token": "phc_k"}
        ]))
        .expect("valid");
        assert_eq!(batch.token, "phc_k");
        let names: Vec<_> = batch.events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, ["a", "b"]);
    }

    #[test]
    fn batch_object_with_api_key() {
        let batch =
            parse(&json!({"api_key": "phc_k", "batch": [event("a"), event("b")]})).expect("valid");
        assert_eq!(batch.token, "phc_k");
        assert_eq!(batch.events.len(), 2);
    }

    #[test]
    fn batch_object_with_token_and_historical_migration() {
        let batch = parse(&json!({
            "token": "phc_k", "historical_migration": true, "batch": [event("a")]
        }))
        .expect("valid");
        assert_eq!(batch.token, "phc_k");
        assert!(batch.historical_migration);
    }

    #[test]
    fn single_event_object() {
        let batch = parse(&json!({
            "event": "solo", "distinct_id": "u", "api_key": "phc_k", "properties": {"x": true}
        }))
        .expect("valid");
        assert_eq!(batch.events.len(), 1);
        assert_eq!(batch.events[0].event, "solo");
        assert_eq!(batch.events[0].properties, r#"{"x":true}"#);
    }

    #[test]
    fn not_json_is_a_parse_error() {
        assert!(matches!(
            parse_request("hello", &RequestContext::new(now())),
            Err(PayloadError::Parse(_))
        ));
        assert!(matches!(
            parse_request("[{\"event\":", &RequestContext::new(now())),
            Err(PayloadError::Parse(_))
        ));
        assert!(matches!(
            parse_request("42", &RequestContext::new(now())),
            Err(PayloadError::Parse(_))
        ));
    }

    #[test]
    fn properties_must_be_an_object() {
        let err = parse(&json!({"api_key": "phc_k", "batch": [
            {"event": "a", "distinct_id": "u", "properties": [1, 2]}
        ]}));
        assert!(matches!(err, Err(PayloadError::Parse(_))), "{err:?}");
    }

    #[test]
    fn properties_kept_verbatim_and_null_means_empty() {
        let json = r#"{"api_key":"phc_k","batch":[
            {"event":"a","distinct_id":"u","properties": {"b": [1, 2],  "é": "x"}},
            {"event":"b","distinct_id":"u","properties":null},
            {"event":"c","distinct_id":"u"}]}"#;
        let batch = parse_request(json, &RequestContext::new(now())).expect("valid");
        assert_eq!(batch.events[0].properties, r#"{"b": [1, 2],  "é": "x"}"#);
        assert_eq!(batch.events[1].properties, "{}");
        assert_eq!(batch.events[2].properties, "{}");
    }

    #[test]
    fn library_and_version_from_properties() {
        let batch = parse(&json!({"api_key": "phc_k", "batch": [
            {"event": "a", "distinct_id": "u",
             "properties": {"$lib": "posthog-python", "$lib_version": "7.0.0"}},
            {"event": "b", "distinct_id": "u", "properties": {"$lib": 3}}
        ]}))
        .expect("valid");
        assert_eq!(batch.events[0].library.as_deref(), Some("posthog-python"));
        assert_eq!(batch.events[0].library_version.as_deref(), Some("7.0.0"));
        assert_eq!(batch.events[1].library, None);
    }

    // ---- tokens ----

    #[test]
    fn token_from_each_event_field() {
        for field in ["token", "$token", "api_key"] {
            let mut e = event("a");
            e[field] = json!("phc_field");
            assert_eq!(
                parse(&json!([e])).expect("valid").token,
                "phc_field",
                "{field}"
            );
        }
    }

    #[test]
    fn token_from_properties() {
        let batch = parse(&json!([
            {"event": "a", "distinct_id": "u", "properties": {"token": "phc_props"}}
        ]))
        .expect("valid");
        assert_eq!(batch.token, "phc_props");
    }

    #[test]
    fn batch_token_wins_over_event_tokens() {
        let mut e = event("a");
        e["token"] = json!("phc_other");
        let batch = parse(&json!({"api_key": "phc_batch", "batch": [e]})).expect("valid");
        assert_eq!(batch.token, "phc_batch");
    }

    #[test]
    fn events_without_a_token_share_the_others() {
        let mut with = event("a");
        with["token"] = json!("phc_k");
        let batch = parse(&json!([with, event("b")])).expect("valid");
        assert_eq!(batch.token, "phc_k");
        assert_eq!(batch.events.len(), 2);
    }

    #[test]
    fn different_tokens_are_refused() {
        let mut a = event("a");
        a["token"] = json!("phc_one");
        let mut b = event("b");
        b["properties"] = json!({"token": "phc_two"});
        assert_eq!(parse(&json!([a, b])), Err(PayloadError::MultipleTokens));
    }

    #[test]
    fn missing_token_is_refused() {
        assert_eq!(parse(&json!([event("a")])), Err(PayloadError::NoToken));
        assert_eq!(
            parse(&json!({"batch": [event("a")]})),
            Err(PayloadError::NoToken)
        );
    }

    #[test]
    fn invalid_tokens_are_refused() {
        let cases = [
            ("", TokenError::Empty),
            ("   ", TokenError::Empty),
            ("phx_personal", TokenError::PersonalApiKey),
            ("phc_é", TokenError::NotAscii),
            ("phc_a\0b", TokenError::NullByte),
        ];
        for (token, reason) in cases {
            assert_eq!(
                parse(&json!({"api_key": token, "batch": [event("a")]})),
                Err(PayloadError::InvalidToken(reason)),
                "{token:?}"
            );
        }
        let long = "x".repeat(65);
        assert_eq!(validate_token(&long), Err(TokenError::TooLong));
        assert_eq!(validate_token(&long[..64]), Ok(&long[..64]));
    }

    #[test]
    fn token_errors_are_auth_errors() {
        assert!(PayloadError::NoToken.is_auth());
        assert!(PayloadError::MultipleTokens.is_auth());
        assert!(PayloadError::InvalidToken(TokenError::Empty).is_auth());
        assert!(!PayloadError::MissingDistinctId.is_auth());
    }

    // ---- distinct ids ----

    fn distinct_id_of(e: Value) -> Result<String, PayloadError> {
        parse(&json!({"api_key": "phc_k", "batch": [e]})).map(|b| b.events[0].distinct_id.clone())
    }

    #[test]
    fn distinct_id_sources() {
        assert_eq!(
            distinct_id_of(json!({"event": "e", "distinct_id": "top"})),
            Ok("top".into())
        );
        assert_eq!(
            distinct_id_of(json!({"event": "e", "$distinct_id": "dollar"})),
            Ok("dollar".into())
        );
        assert_eq!(
            distinct_id_of(json!({"event": "e", "properties": {"distinct_id": "prop"}})),
            Ok("prop".into())
        );
        assert_eq!(
            distinct_id_of(json!({"event": "e", "properties": {"$distinct_id": "prop$"}})),
            Ok("prop$".into())
        );
        assert_eq!(
            distinct_id_of(json!({
                "event": "e", "distinct_id": 23, "properties": {"distinct_id": "prop"}
            })),
            Ok("23".into())
        );
        assert_eq!(
            distinct_id_of(json!({
                "event": "e", "distinct_id": null, "properties": {"distinct_id": "prop"}
            })),
            Ok("prop".into())
        );
    }

    #[test]
    fn non_string_distinct_ids_are_stringified() {
        assert_eq!(
            distinct_id_of(json!({"event": "e", "distinct_id": 23.4})),
            Ok("23.4".into())
        );
        assert_eq!(
            distinct_id_of(json!({"event": "e", "distinct_id": ["a", "b"]})),
            Ok(r#"["a","b"]"#.into())
        );
        assert_eq!(
            distinct_id_of(json!({"event": "e", "distinct_id": {"string": "a", "number": 3}})),
            Ok(r#"{"number":3,"string":"a"}"#.into())
        );
    }

    #[test]
    fn missing_or_empty_distinct_id_is_refused() {
        for e in [
            json!({"event": "e"}),
            json!({"event": "e", "distinct_id": null}),
            json!({"event": "e", "distinct_id": ""}),
            json!({"event": "e", "properties": {"distinct_id": ""}}),
        ] {
            assert_eq!(
                distinct_id_of(e.clone()),
                Err(PayloadError::MissingDistinctId),
                "{e}"
            );
        }
    }

    #[test]
    fn long_distinct_id_is_truncated_to_200_chars() {
        let long: String = "é".repeat(150) + &"x".repeat(100);
        let id = distinct_id_of(json!({"event": "e", "distinct_id": long})).expect("valid");
        assert_eq!(id.chars().count(), 200);
        assert!(long.starts_with(&id));
        let exact = "y".repeat(200);
        assert_eq!(
            distinct_id_of(json!({"event": "e", "distinct_id": exact.clone()})),
            Ok(exact)
        );
    }

    #[test]
    fn nul_in_distinct_id_is_replaced() {
        assert_eq!(
            distinct_id_of(json!({"event": "e", "distinct_id": "a\u{0}b"})),
            Ok("a\u{FFFD}b".into())
        );
    }

    // ---- event names, batches, uuids ----

    #[test]
    fn missing_or_empty_event_name_is_refused() {
        for e in [
            json!({"distinct_id": "u"}),
            json!({"event": "", "distinct_id": "u"}),
        ] {
            assert_eq!(
                parse(&json!({"api_key": "phc_k", "batch": [e]})),
                Err(PayloadError::MissingEventName)
            );
        }
    }

    #[test]
    fn empty_batch_is_refused() {
        assert_eq!(
            parse(&json!({"api_key": "phc_k", "batch": []})),
            Err(PayloadError::EmptyBatch)
        );
        assert_eq!(parse(&json!([])), Err(PayloadError::EmptyBatch));
    }

    #[test]
    fn malformed_uuid_refuses_the_whole_request() {
        let mut bad = event("b");
        bad["uuid"] = json!("not-a-uuid");
        assert!(matches!(
            parse(&json!({"api_key": "phc_k", "batch": [event("a"), bad]})),
            Err(PayloadError::InvalidUuid(_))
        ));
    }

    #[test]
    fn malformed_uuid_is_judged_before_the_token() {
        let mut bad = event("b");
        bad["uuid"] = json!("nope");
        assert!(matches!(
            parse(&json!([bad])),
            Err(PayloadError::InvalidUuid(_))
        ));
    }

    #[test]
    fn client_uuid_is_kept_and_missing_or_empty_is_generated_v7() {
        let given = "0190a1b2-c3d4-7e5f-8a9b-0c1d2e3f4a5b";
        let mut a = event("a");
        a["uuid"] = json!(given);
        let mut b = event("b");
        b["uuid"] = json!("");
        let batch =
            parse(&json!({"api_key": "phc_k", "batch": [a, b, event("c")]})).expect("valid");
        assert_eq!(batch.events[0].uuid.to_string(), given);
        assert_eq!(batch.events[1].uuid.get_version_num(), 7);
        assert_eq!(batch.events[2].uuid.get_version_num(), 7);
        assert_ne!(batch.events[1].uuid, batch.events[2].uuid);
    }

    // ---- engage, person updates, dropped events ----

    #[test]
    fn engage_event_without_a_name_is_identify() {
        let json = json!({"token": "phc_k", "distinct_id": "u", "$set": {"plan": "pro"}});
        let batch = parse_request(&json.to_string(), &RequestContext::new(now()).on_engage())
            .expect("valid");
        assert_eq!(batch.events[0].event, "$identify");
        assert_eq!(batch.events[0].properties, r#"{"$set":{"plan":"pro"}}"#);
        // Elsewhere a nameless event is refused.
        assert_eq!(parse(&json), Err(PayloadError::MissingEventName));
    }

    #[test]
    fn top_level_set_and_set_once_move_into_properties() {
        let batch = parse(&json!({"api_key": "phc_k", "batch": [{
            "event": "e", "distinct_id": "u",
            "properties": {"a": 1, "$set": {"old": true, "plan": "free"}},
            "$set": {"plan": "pro"},
            "$set_once": {"first_seen": "2024"}
        }]}))
        .expect("valid");
        let properties: Value = serde_json::from_str(&batch.events[0].properties).expect("json");
        assert_eq!(
            properties,
            json!({"a": 1, "$set": {"old": true, "plan": "pro"},
                   "$set_once": {"first_seen": "2024"}})
        );
    }

    #[test]
    fn performance_events_are_dropped() {
        let batch = parse(&json!({"api_key": "phc_k", "batch": [
            event("kept"), {"event": "$performance_event", "distinct_id": "u"}, event("kept2")
        ]}))
        .expect("valid");
        let names: Vec<_> = batch.events.iter().map(|e| e.event.as_str()).collect();
        assert_eq!(names, ["kept", "kept2"]);
        // Only dropped events: accepted, nothing to store, token not even looked at.
        let only =
            parse(&json!([{"event": "$performance_event", "distinct_id": "u"}])).expect("accepted");
        assert!(only.events.is_empty());
    }

    // ---- time ----

    #[test]
    fn batch_sent_at_corrects_skew() {
        let batch = parse(&json!({
            "api_key": "phc_k",
            "sent_at": "2024-05-01T13:00:10Z",
            "batch": [{"event": "a", "distinct_id": "u", "timestamp": "2024-05-01T13:00:00Z"}]
        }))
        .expect("valid");
        assert_eq!(
            batch.events[0].timestamp,
            "2024-05-01T11:59:50Z".parse::<Timestamp>().expect("valid")
        );
    }

    #[test]
    fn query_sent_at_is_used_when_the_body_has_none() {
        let json = json!([{"event": "a", "distinct_id": "u", "token": "phc_k",
                           "timestamp": "2024-05-01T13:00:00Z"}]);
        let sent_at: Timestamp = "2024-05-01T13:00:01Z".parse().expect("valid");
        let context = RequestContext::new(now()).with_query_sent_at(Some(sent_at));
        let batch = parse_request(&json.to_string(), &context).expect("valid");
        assert_eq!(
            batch.events[0].timestamp,
            "2024-05-01T11:59:59Z".parse::<Timestamp>().expect("valid")
        );
    }
}
