//! Event time: parsing client timestamps and correcting client clock skew the way PostHog's
//! ingestion does, plus the one fixed-width text format timestamps are stored in.
//!
//! The rule, in order:
//! - `timestamp` and `sent_at` both known (and `$ignore_sent_at` not set):
//!   `received + (timestamp − sent_at)` — the client's clock error cancels out;
//! - only `timestamp`: the timestamp as given;
//! - only `offset` (milliseconds before sending, posthog-js): `received − offset`;
//! - neither: the time the request was received.
//!
//! An unparseable timestamp counts as absent (PostHog logs a warning and does the same).

use jiff::civil::DateTime;
use jiff::tz::TimeZone;
use jiff::{SignedDuration, Timestamp};

/// The format timestamps are stored in: RFC 3339, UTC, always six fractional digits, so
/// that text order is time order.
const STORED_FORMAT: &str = "%Y-%m-%dT%H:%M:%S%.6fZ";

/// What the client said about when an event happened.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientTime<'a> {
    /// The event's `timestamp` field, as sent.
    pub timestamp: Option<&'a str>,
    /// The event's `offset` field (milliseconds between the event and sending).
    pub offset_ms: Option<i64>,
    /// The request's `sent_at`, already parsed.
    pub sent_at: Option<Timestamp>,
    /// The event's `$ignore_sent_at` property.
    pub ignore_sent_at: bool,
}

/// The corrected time of an event received at `received`.
pub fn event_time(client: ClientTime<'_>, received: Timestamp) -> Timestamp {
    let timestamp = client.timestamp.and_then(parse_client_time);
    match (timestamp, client.sent_at) {
        (Some(ts), Some(sent_at)) if !client.ignore_sent_at => received
            .checked_add(ts.duration_since(sent_at))
            .unwrap_or(received),
        (Some(ts), _) => ts,
        (None, _) => client
            .offset_ms
            .and_then(|ms| received.checked_sub(SignedDuration::from_millis(ms)).ok())
            .unwrap_or(received),
    }
}

/// Parses a client timestamp: RFC 3339 / ISO 8601 with an offset, or without one (then
/// taken as UTC).
pub fn parse_client_time(text: &str) -> Option<Timestamp> {
    let text = text.trim();
    text.parse::<Timestamp>().ok().or_else(|| {
        text.parse::<DateTime>()
            .ok()
            .and_then(|dt| TimeZone::UTC.to_timestamp(dt).ok())
    })
}

/// Formats a timestamp the way it is stored: `2024-05-01T12:34:56.789000Z`.
///
/// Written by hand rather than with `strftime`: it runs for every stored event.
pub fn format_stored(ts: Timestamp) -> String {
    let dt = TimeZone::UTC.to_datetime(ts);
    let year = dt.year();
    if !(0..=9999).contains(&year) {
        // Outside four-digit years the fixed layout cannot hold; jiff's own format can.
        return ts.strftime(STORED_FORMAT).to_string();
    }
    let micros = dt.subsec_nanosecond() / 1_000;
    let mut out = String::with_capacity(27);
    push_digits(&mut out, i32::from(year), 4);
    out.push('-');
    push_digits(&mut out, i32::from(dt.month()), 2);
    out.push('-');
    push_digits(&mut out, i32::from(dt.day()), 2);
    out.push('T');
    push_digits(&mut out, i32::from(dt.hour()), 2);
    out.push(':');
    push_digits(&mut out, i32::from(dt.minute()), 2);
    out.push(':');
    push_digits(&mut out, i32::from(dt.second()), 2);
    out.push('.');
    push_digits(&mut out, micros, 6);
    out.push('Z');
    out
}

/// Appends `value` (non-negative) as exactly `width` decimal digits, zero-padded.
fn push_digits(out: &mut String, value: i32, width: u32) {
    let mut divisor = 10_i32.pow(width - 1);
    while divisor > 0 {
        let digit = (value / divisor) % 10;
        out.push(char::from(b'0' + digit.unsigned_abs() as u8));
        divisor /= 10;
    }
}

/// Parses a stored timestamp back.
pub fn parse_stored(text: &str) -> Option<Timestamp> {
    text.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ts(s: &str) -> Timestamp {
        s.parse().expect("valid timestamp")
    }

    const RECEIVED: &str = "2024-05-01T12:00:00Z";

    #[test]
    fn skew_is_corrected_with_sent_at() {
        // The client clock runs one hour fast: the event happened 10 s before sending.
        let client = ClientTime {
            timestamp: Some("2024-05-01T13:00:00Z"),
            sent_at: Some(ts("2024-05-01T13:00:10Z")),
            ..Default::default()
        };
        assert_eq!(event_time(client, ts(RECEIVED)), ts("2024-05-01T11:59:50Z"));
    }

    #[test]
    fn timestamp_as_given_without_sent_at() {
        let client = ClientTime {
            timestamp: Some("2024-04-30T08:00:00.5+02:00"),
            ..Default::default()
        };
        assert_eq!(
            event_time(client, ts(RECEIVED)),
            ts("2024-04-30T06:00:00.5Z")
        );
    }

    #[test]
    fn ignore_sent_at_keeps_the_timestamp() {
        let client = ClientTime {
            timestamp: Some("2024-04-30T08:00:00Z"),
            sent_at: Some(ts("2024-05-01T13:00:10Z")),
            ignore_sent_at: true,
            ..Default::default()
        };
        assert_eq!(event_time(client, ts(RECEIVED)), ts("2024-04-30T08:00:00Z"));
    }

    #[test]
    fn received_time_without_timestamp() {
        assert_eq!(
            event_time(ClientTime::default(), ts(RECEIVED)),
            ts(RECEIVED)
        );
    }

    #[test]
    fn offset_counts_back_from_received() {
        let client = ClientTime {
            offset_ms: Some(1500),
            ..Default::default()
        };
        assert_eq!(
            event_time(client, ts(RECEIVED)),
            ts("2024-05-01T11:59:58.5Z")
        );
    }

    #[test]
    fn unparseable_timestamp_counts_as_absent() {
        let client = ClientTime {
            timestamp: Some("yesterday-ish"),
            sent_at: Some(ts("2024-05-01T13:00:10Z")),
            ..Default::default()
        };
        assert_eq!(event_time(client, ts(RECEIVED)), ts(RECEIVED));
    }

    #[test]
    fn naive_timestamp_is_utc() {
        assert_eq!(
            parse_client_time("2024-05-01T10:00:00.123456"),
            Some(ts("2024-05-01T10:00:00.123456Z"))
        );
    }

    #[test]
    fn stored_format_is_fixed_width_and_round_trips() {
        let a = format_stored(ts("2024-05-01T10:00:00Z"));
        let b = format_stored(ts("2024-05-01T10:00:00.5Z"));
        assert_eq!(a, "2024-05-01T10:00:00.000000Z");
        assert_eq!(b, "2024-05-01T10:00:00.500000Z");
        assert!(a < b);
        assert_eq!(parse_stored(&b), Some(ts("2024-05-01T10:00:00.5Z")));
    }

    #[test]
    fn stored_format_matches_strftime() {
        for text in [
            "1970-01-01T00:00:00Z",
            "2024-02-29T23:59:59.999999999Z",
            "0001-01-01T00:00:00.000001Z",
            "9999-12-30T12:59:59.123456Z",
            "2031-07-04T05:06:07.000008Z",
        ] {
            let t = ts(text);
            assert_eq!(
                format_stored(t),
                t.strftime(STORED_FORMAT).to_string(),
                "{text}"
            );
        }
    }
}
