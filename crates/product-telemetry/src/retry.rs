//! What to do with a server's answer: done, retry (and when), split, or drop.
//!
//! Only transient failures are retried: network errors, 408, 429 and 5xx. `Retry-After`
//! (seconds or an HTTP date) is honoured as a minimum, clamped so that a hostile server
//! cannot park the client. 413 splits the batch in halves; 401/403 stop sending for the
//! rest of the run; any other 4xx drops the batch.

use std::time::{Duration, SystemTime};

/// The verdict on one delivery attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Verdict {
    /// 2xx: the server has the events.
    Delivered,
    /// Transient: try again no sooner than `at_least`.
    Retry { at_least: Option<Duration> },
    /// 413: the body was too large.
    TooLarge,
    /// 401/403: the key is refused; stop sending for this run.
    Unauthorized(u16),
    /// Any other answer: the batch will never be accepted.
    Rejected(u16),
}

/// Classifies an HTTP status (and its `Retry-After` header).
pub(crate) fn classify(status: u16, retry_after: Option<&str>, max_wait: Duration) -> Verdict {
    match status {
        200..=299 => Verdict::Delivered,
        408 | 429 | 500..=599 => Verdict::Retry {
            at_least: retry_after
                .and_then(|v| parse_retry_after(v, SystemTime::now()))
                .map(|d| d.min(max_wait)),
        },
        413 => Verdict::TooLarge,
        401 | 403 => Verdict::Unauthorized(status),
        _ => Verdict::Rejected(status),
    }
}

/// `Retry-After` as delay-seconds or an HTTP date (RFC 9110 §10.2.3).
pub(crate) fn parse_retry_after(value: &str, now: SystemTime) -> Option<Duration> {
    let value = value.trim();
    if let Ok(seconds) = value.parse::<u64>() {
        return Some(Duration::from_secs(seconds));
    }
    if let Ok(seconds) = value.parse::<f64>() {
        return (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(1e9)));
    }
    let date = jiff::fmt::rfc2822::parse(value).ok()?.timestamp();
    let now = jiff::Timestamp::try_from(now).ok()?;
    let wait = date.as_millisecond().saturating_sub(now.as_millisecond());
    Some(Duration::from_millis(u64::try_from(wait).unwrap_or(0)))
}

/// Exponential backoff with jitter: `base · 2^(retry-1)`, capped at `max`, then
/// scaled by a random factor in [0.75, 1.25).
pub(crate) fn backoff(retry: u32, base: Duration, max: Duration) -> Duration {
    let exp = base.saturating_mul(1u32 << retry.saturating_sub(1).min(20));
    let capped = exp.min(max);
    capped.mul_f64(0.75 + jitter() * 0.5)
}

/// A random number in [0, 1) without a dependency: std's hasher keys are random.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, RandomState};
    let bits = RandomState::new().hash_one(std::time::Instant::now());
    (bits >> 11) as f64 / (1u64 << 53) as f64
}

#[cfg(test)]
mod tests {
    use super::*;

    const MAX: Duration = Duration::from_secs(60);

    #[test]
    fn statuses_are_classified_like_posthog_clients_expect() {
        assert_eq!(classify(200, None, MAX), Verdict::Delivered);
        for s in [408, 429, 500, 502, 503, 504] {
            assert_eq!(
                classify(s, None, MAX),
                Verdict::Retry { at_least: None },
                "{s}"
            );
        }
        assert_eq!(classify(413, None, MAX), Verdict::TooLarge);
        assert_eq!(classify(401, None, MAX), Verdict::Unauthorized(401));
        assert_eq!(classify(403, None, MAX), Verdict::Unauthorized(403));
        assert_eq!(classify(400, None, MAX), Verdict::Rejected(400));
        assert_eq!(classify(404, None, MAX), Verdict::Rejected(404));
    }

    #[test]
    fn retry_after_seconds_and_dates() {
        let now = SystemTime::UNIX_EPOCH + Duration::from_secs(784_111_777); // Sun, 06 Nov 1994 08:49:37 GMT
        assert_eq!(parse_retry_after("3", now), Some(Duration::from_secs(3)));
        assert_eq!(
            parse_retry_after(" 1.5 ", now),
            Some(Duration::from_millis(1500))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:47 GMT", now),
            Some(Duration::from_secs(10))
        );
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:49:00 GMT", now),
            Some(Duration::ZERO)
        );
        assert_eq!(parse_retry_after("soon", now), None);
        assert_eq!(parse_retry_after("-5", now), None);
    }

    #[test]
    fn retry_after_is_clamped() {
        assert_eq!(
            classify(429, Some("86400"), MAX),
            Verdict::Retry {
                at_least: Some(MAX)
            }
        );
    }

    #[test]
    fn backoff_grows_and_is_capped() {
        let base = Duration::from_millis(100);
        let max = Duration::from_secs(2);
        let first = backoff(1, base, max);
        assert!(first >= Duration::from_millis(75) && first < Duration::from_millis(125));
        let third = backoff(3, base, max);
        assert!(third >= Duration::from_millis(300) && third < Duration::from_millis(500));
        assert!(backoff(30, base, max) < Duration::from_millis(2500));
    }
}
