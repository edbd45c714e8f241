//! Body decoding: turns what arrived on the wire into JSON text, the way PostHog's capture
//! service does.
//!
//! The payload is taken from the `data` query parameter (legacy GET) or else from the body.
//! It may then be, in this order:
//! 1. base64 as a whole (when it does not look like a form);
//! 2. an `application/x-www-form-urlencoded` form whose `data` field holds the payload
//!    (itself possibly base64);
//! 3. gzip, when a hint says so (`Content-Encoding: gzip`, `compression=gzip|gzip-js` in the
//!    query or the form) or the payload starts with the gzip magic bytes `1f 8b 08`;
//! 4. base64 again once decompressed (legacy clients).
//!
//! Decompression is streamed with a hard cap ([`crate::Limits::decoded_bytes`]): a gzip bomb
//! stops at the cap and never grows a buffer past it. This module knows nothing of HTTP
//! beyond the few header values it is handed, and nothing of the JSON shapes (see
//! [`crate::payload`]).

use std::borrow::Cow;
use std::io::Read;

use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD_PAD_INDIFFERENT, URL_SAFE_PAD_INDIFFERENT};
use flate2::read::GzDecoder;
use jiff::Timestamp;
use serde::Deserialize;

/// The gzip magic bytes (`1f 8b`) followed by the deflate method byte (`08`).
pub const GZIP_MAGIC: [u8; 3] = [0x1f, 0x8b, 0x08];

const FORM_MIME_TYPE: &str = "application/x-www-form-urlencoded";

/// What the decoder needs to know about a request besides its body.
#[derive(Debug, Clone, Copy, Default)]
pub struct RequestMeta<'a> {
    /// The raw query string, without the leading `?`.
    pub query: Option<&'a str>,
    /// The `Content-Type` header value.
    pub content_type: Option<&'a str>,
    /// The `Content-Encoding` header value.
    pub content_encoding: Option<&'a str>,
}

/// A decoded payload: JSON text, plus what the query string said about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DecodedPayload {
    /// The JSON text of the payload (not yet parsed).
    pub json: String,
    /// `sent_at` from the `_` query parameter (milliseconds since the epoch, as posthog-js
    /// sends it); used when the body carries no `sent_at` of its own.
    pub query_sent_at: Option<Timestamp>,
}

/// Why a body could not be decoded into JSON text.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// Neither a `data` query parameter nor a body.
    #[error("request missing data payload")]
    EmptyPayload,
    /// The query string could not be parsed.
    #[error("failed to decode request: invalid query string")]
    InvalidQuery,
    /// A form body without a usable `data` field.
    #[error("failed to decode request: expected form data with a data field")]
    InvalidForm,
    /// A gzip hint or magic bytes, but not a valid gzip stream.
    #[error("failed to decode request: invalid gzip data")]
    InvalidGzip,
    /// A compression this collector does not implement (e.g. posthog-js's `lz64`).
    #[error("failed to decode request: unsupported compression {0:?}")]
    UnsupportedCompression(String),
    /// The payload is not UTF-8 text.
    #[error("failed to decode request: invalid UTF-8 in request payload")]
    InvalidUtf8,
    /// The payload is larger than the limit once decoded.
    #[error("maximum payload size exceeded: more than {limit} bytes once decoded")]
    TooLarge {
        /// The limit that was hit, in bytes.
        limit: usize,
    },
}

#[derive(Debug, Default, Deserialize)]
struct QueryParams {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    compression: Option<String>,
    #[serde(default, rename = "_")]
    sent_at_ms: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
struct FormFields {
    #[serde(default)]
    data: Option<String>,
    #[serde(default)]
    compression: Option<String>,
}

/// Decodes one request's payload into JSON text, refusing anything that would exceed
/// `decoded_limit` bytes once decompressed.
pub fn decode_payload(
    meta: RequestMeta<'_>,
    body: &[u8],
    decoded_limit: usize,
) -> Result<DecodedPayload, DecodeError> {
    let query: QueryParams = match meta.query {
        Some(q) if !q.is_empty() => {
            serde_urlencoded::from_str(q).map_err(|_| DecodeError::InvalidQuery)?
        }
        _ => QueryParams::default(),
    };
    let query_sent_at = query.sent_at_ms.as_deref().and_then(parse_sent_at_millis);

    // The payload: the `data` query parameter wins over the body (legacy GET).
    let raw: Cow<'_, [u8]> = match query.data {
        Some(data) if !data.is_empty() => Cow::Owned(restore_plus(data).into_bytes()),
        _ if !body.is_empty() => Cow::Borrowed(body),
        _ => return Err(DecodeError::EmptyPayload),
    };

    // 1. The whole payload may be base64.
    let payload = if !looks_like_form(&raw) && looks_like_base64(&raw) {
        decode_base64(&raw).map_or(raw, Cow::Owned)
    } else {
        raw
    };

    // 2. A form carries the payload in its `data` field.
    let (payload, form_compression) = if is_form(meta.content_type) {
        let form: FormFields =
            serde_urlencoded::from_bytes(&payload).map_err(|_| DecodeError::InvalidForm)?;
        match form.data {
            Some(data) if !data.is_empty() => (
                Cow::Owned(restore_plus(data).into_bytes()),
                form.compression,
            ),
            _ => return Err(DecodeError::InvalidForm),
        }
    } else {
        (payload, None)
    };
    // …and that field may itself be base64 (of gzip, or of JSON).
    let payload = if looks_like_base64(&payload) {
        decode_base64(&payload).map_or(payload, Cow::Owned)
    } else {
        payload
    };

    // 3. Compression: a hint from the form, the query or the header, or the magic bytes.
    let hint = form_compression
        .or(query.compression)
        .map(|c| Compression::from_hint(&c))
        .unwrap_or(Compression::None);
    let header_gzip = meta
        .content_encoding
        .is_some_and(|e| e.split(',').any(|t| t.trim().eq_ignore_ascii_case("gzip")));
    let decoded = match hint {
        Compression::Unsupported(name) => return Err(DecodeError::UnsupportedCompression(name)),
        Compression::Gzip => gunzip_bounded(&payload, decoded_limit)?,
        Compression::None if header_gzip || payload.starts_with(&GZIP_MAGIC) => {
            gunzip_bounded(&payload, decoded_limit)?
        }
        Compression::None => {
            if payload.len() > decoded_limit {
                return Err(DecodeError::TooLarge {
                    limit: decoded_limit,
                });
            }
            payload.into_owned()
        }
    };

    // 4. Legacy clients base64 the payload inside the compression.
    let decoded = if looks_like_base64(&decoded) {
        decode_base64(&decoded).unwrap_or(decoded)
    } else {
        decoded
    };

    let json = String::from_utf8(decoded).map_err(|_| DecodeError::InvalidUtf8)?;
    Ok(DecodedPayload {
        json,
        query_sent_at,
    })
}

#[derive(Debug, PartialEq, Eq)]
enum Compression {
    None,
    Gzip,
    Unsupported(String),
}

impl Compression {
    fn from_hint(hint: &str) -> Compression {
        match hint.trim().to_ascii_lowercase().as_str() {
            "gzip" | "gzip-js" => Compression::Gzip,
            // "base64" is handled by sniffing; an empty hint means none.
            "" | "base64" | "none" => Compression::None,
            other => Compression::Unsupported(other.to_string()),
        }
    }
}

/// Decompresses gzip data into at most `limit` bytes. The output buffer never grows past
/// `limit + 1` bytes, whatever the input claims.
pub fn gunzip_bounded(compressed: &[u8], limit: usize) -> Result<Vec<u8>, DecodeError> {
    if !compressed.starts_with(&GZIP_MAGIC) {
        return Err(DecodeError::InvalidGzip);
    }
    // Size the buffer from the gzip trailer (uncompressed size mod 2³²), which the sender
    // controls: so it is only a hint, clamped to the limit; the `take` below is the bound.
    let initial = gzip_size_hint(compressed).min(limit.saturating_add(1));
    let mut out = Vec::with_capacity(initial);
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    GzDecoder::new(compressed)
        .take(cap)
        .read_to_end(&mut out)
        .map_err(|_| DecodeError::InvalidGzip)?;
    if out.len() > limit {
        return Err(DecodeError::TooLarge { limit });
    }
    Ok(out)
}

/// The uncompressed size a gzip stream's trailer announces (its last four bytes).
fn gzip_size_hint(compressed: &[u8]) -> usize {
    compressed
        .len()
        .checked_sub(4)
        .and_then(|start| compressed.get(start..))
        .and_then(|tail| <[u8; 4]>::try_from(tail).ok())
        .map_or(0, |isize| u32::from_le_bytes(isize) as usize)
}

fn parse_sent_at_millis(value: &str) -> Option<Timestamp> {
    let millis: i64 = value.trim().parse().ok()?;
    let ts = Timestamp::from_millisecond(millis).ok()?;
    // Older SDKs sent seconds; those land in 1970 and are ignored, as PostHog does.
    (ts.as_second() > 1_577_836_800).then_some(ts) // 2020-01-01
}

fn is_form(content_type: Option<&str>) -> bool {
    content_type.is_some_and(|ct| {
        ct.split(';')
            .next()
            .is_some_and(|mime| mime.trim().eq_ignore_ascii_case(FORM_MIME_TYPE))
    })
}

/// A form has a `key=value` pair; base64 has `=` only as trailing padding.
fn looks_like_form(payload: &[u8]) -> bool {
    let trimmed = payload.trim_ascii();
    trimmed
        .iter()
        .position(|&b| b == b'=')
        .is_some_and(|i| trimmed[i..].iter().any(|&b| b != b'='))
        || trimmed.contains(&b'&')
}

fn looks_like_base64(payload: &[u8]) -> bool {
    let trimmed = payload.trim_ascii();
    trimmed.len() >= 4
        && trimmed
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'=' | b'-' | b'_'))
}

fn decode_base64(payload: &[u8]) -> Option<Vec<u8>> {
    let trimmed = payload.trim_ascii();
    STANDARD_PAD_INDIFFERENT
        .decode(trimmed)
        .or_else(|_| URL_SAFE_PAD_INDIFFERENT.decode(trimmed))
        .ok()
}

/// URL decoding turns base64's `+` into spaces; a base64 value never has spaces, so put the
/// `+` back (PostHog does the same for form data).
fn restore_plus(value: String) -> String {
    let looks_b64_with_spaces = value.contains(' ')
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b' ' | b'/' | b'=' | b'+'));
    if looks_b64_with_spaces {
        value.replace(' ', "+")
    } else {
        value
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;

    use flate2::Compression as Level;
    use flate2::write::GzEncoder;

    use super::*;

    const LIMIT: usize = 1024 * 1024;
    const JSON: &str = r#"{"api_key":"phc_k","batch":[{"event":"e","distinct_id":"d"}]}"#;

    fn gzip(data: &[u8]) -> Vec<u8> {
        let mut enc = GzEncoder::new(Vec::new(), Level::fast());
        enc.write_all(data).expect("write to a Vec");
        enc.finish().expect("finish into a Vec")
    }

    fn b64(data: &[u8]) -> String {
        base64::engine::general_purpose::STANDARD.encode(data)
    }

    fn decode(meta: RequestMeta<'_>, body: &[u8]) -> Result<String, DecodeError> {
        decode_payload(meta, body, LIMIT).map(|d| d.json)
    }

    fn urlencode(value: &str) -> String {
        serde_urlencoded::to_string([("data", value)]).expect("encode a form")
    }

    #[test]
    fn plain_json_passes_through() {
        assert_eq!(
            decode(RequestMeta::default(), JSON.as_bytes()),
            Ok(JSON.into())
        );
    }

    #[test]
    fn gzip_with_content_encoding_header() {
        let meta = RequestMeta {
            content_encoding: Some("gzip"),
            ..Default::default()
        };
        assert_eq!(decode(meta, &gzip(JSON.as_bytes())), Ok(JSON.into()));
    }

    #[test]
    fn gzip_with_query_hint() {
        for hint in ["compression=gzip", "compression=gzip-js"] {
            let meta = RequestMeta {
                query: Some(hint),
                ..Default::default()
            };
            assert_eq!(decode(meta, &gzip(JSON.as_bytes())), Ok(JSON.into()));
        }
    }

    #[test]
    fn gzip_sniffed_from_magic_bytes() {
        assert_eq!(
            decode(RequestMeta::default(), &gzip(JSON.as_bytes())),
            Ok(JSON.into())
        );
    }

    #[test]
    fn gzip_hint_on_plain_body_is_invalid_gzip() {
        let meta = RequestMeta {
            query: Some("compression=gzip"),
            ..Default::default()
        };
        assert_eq!(decode(meta, JSON.as_bytes()), Err(DecodeError::InvalidGzip));
    }

    #[test]
    fn truncated_gzip_is_invalid() {
        let mut zipped = gzip(JSON.as_bytes());
        zipped.truncate(zipped.len() / 2);
        assert_eq!(
            decode(RequestMeta::default(), &zipped),
            Err(DecodeError::InvalidGzip)
        );
    }

    #[test]
    fn base64_body() {
        assert_eq!(
            decode(RequestMeta::default(), b64(JSON.as_bytes()).as_bytes()),
            Ok(JSON.into())
        );
    }

    #[test]
    fn base64_of_gzip_body() {
        let body = b64(&gzip(JSON.as_bytes()));
        assert_eq!(
            decode(RequestMeta::default(), body.as_bytes()),
            Ok(JSON.into())
        );
    }

    #[test]
    fn form_with_json_data() {
        let meta = RequestMeta {
            content_type: Some("application/x-www-form-urlencoded; charset=utf-8"),
            ..Default::default()
        };
        assert_eq!(decode(meta, urlencode(JSON).as_bytes()), Ok(JSON.into()));
    }

    #[test]
    fn form_with_base64_data_whose_plus_became_space() {
        // `?` and `>` make base64 output with `+` and `/`.
        let json = r#"{"event":"e??>>","distinct_id":"d~~~"}"#;
        let encoded = b64(json.as_bytes());
        assert!(encoded.contains('+') || encoded.contains('/'));
        // A sloppy client sends the `+` unescaped, and URL decoding turns it into a space.
        let body = format!("data={encoded}&compression=base64");
        let meta = RequestMeta {
            content_type: Some("application/x-www-form-urlencoded"),
            ..Default::default()
        };
        assert_eq!(decode(meta, body.as_bytes()), Ok(json.into()));
    }

    #[test]
    fn form_with_gzip_compression_field() {
        // posthog-js style: form field `compression=gzip-js`, data = base64(gzip(json)).
        let body = format!(
            "{}&compression=gzip-js",
            urlencode(&b64(&gzip(JSON.as_bytes())))
        );
        let meta = RequestMeta {
            content_type: Some("application/x-www-form-urlencoded"),
            ..Default::default()
        };
        assert_eq!(decode(meta, body.as_bytes()), Ok(JSON.into()));
    }

    #[test]
    fn form_without_data_is_invalid() {
        let meta = RequestMeta {
            content_type: Some("application/x-www-form-urlencoded"),
            ..Default::default()
        };
        assert_eq!(decode(meta, b"ver=1.2.3"), Err(DecodeError::InvalidForm));
    }

    #[test]
    fn get_data_query_parameter() {
        let query = urlencode(JSON);
        let meta = RequestMeta {
            query: Some(&query),
            ..Default::default()
        };
        assert_eq!(decode(meta, b""), Ok(JSON.into()));
    }

    #[test]
    fn get_data_query_parameter_base64() {
        let query = format!("{}&ver=1.0", urlencode(&b64(JSON.as_bytes())));
        let meta = RequestMeta {
            query: Some(&query),
            ..Default::default()
        };
        assert_eq!(decode(meta, b""), Ok(JSON.into()));
    }

    #[test]
    fn empty_request_is_refused() {
        assert_eq!(
            decode(RequestMeta::default(), b""),
            Err(DecodeError::EmptyPayload)
        );
        let meta = RequestMeta {
            query: Some("data="),
            ..Default::default()
        };
        assert_eq!(decode(meta, b""), Err(DecodeError::EmptyPayload));
    }

    #[test]
    fn lz64_is_unsupported() {
        let meta = RequestMeta {
            query: Some("compression=lz64"),
            ..Default::default()
        };
        assert!(matches!(
            decode(meta, b"N4Ig"),
            Err(DecodeError::UnsupportedCompression(_))
        ));
    }

    #[test]
    fn invalid_utf8_is_refused() {
        assert_eq!(
            decode(RequestMeta::default(), &[b'{', 0xff, 0xfe, b'}']),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn sent_at_from_underscore_query_parameter() {
        let meta = RequestMeta {
            query: Some("_=1700000000123"),
            ..Default::default()
        };
        let decoded = decode_payload(meta, JSON.as_bytes(), LIMIT).expect("decodes");
        assert_eq!(
            decoded.query_sent_at,
            Some(Timestamp::from_millisecond(1_700_000_000_123).expect("valid"))
        );
        // Seconds (older SDKs) are ignored.
        let meta = RequestMeta {
            query: Some("_=1700000000"),
            ..Default::default()
        };
        let decoded = decode_payload(meta, JSON.as_bytes(), LIMIT).expect("decodes");
        assert_eq!(decoded.query_sent_at, None);
    }

    #[test]
    fn plain_payload_over_limit_is_too_large() {
        assert_eq!(
            decode_payload(RequestMeta::default(), JSON.as_bytes(), 10),
            Err(DecodeError::TooLarge { limit: 10 })
        );
    }

    #[test]
    fn gzip_exactly_at_limit_passes_and_one_over_fails() {
        let data = vec![b'A'; 4096];
        assert_eq!(
            gunzip_bounded(&gzip(&data), 4096).map(|v| v.len()),
            Ok(4096)
        );
        assert_eq!(
            gunzip_bounded(&gzip(&data), 4095),
            Err(DecodeError::TooLarge { limit: 4095 })
        );
    }

    #[test]
    fn gzip_bomb_stops_at_the_limit_with_bounded_memory() {
        // 64 MiB of zeros, streamed into the encoder: about 64 KiB compressed (1000×).
        let mut enc = GzEncoder::new(Vec::new(), Level::best());
        let zeros = vec![0u8; 1024 * 1024];
        for _ in 0..64 {
            enc.write_all(&zeros).expect("write to a Vec");
        }
        let bomb = enc.finish().expect("finish into a Vec");
        assert!(bomb.len() < 128 * 1024, "bomb is {} bytes", bomb.len());

        let limit = 1024 * 1024;
        let started = std::time::Instant::now();
        let result = decode_payload(RequestMeta::default(), &bomb, limit);
        assert_eq!(result, Err(DecodeError::TooLarge { limit }));
        // Stopping at the cap means decompressing ~1 MiB, not 64 MiB.
        assert!(started.elapsed() < std::time::Duration::from_secs(5));
    }

    #[test]
    fn gzip_output_buffer_never_exceeds_limit_plus_one() {
        let bomb = gzip(&vec![0u8; 8 * 1024 * 1024]);
        let limit = 100_000;
        // The Vec inside gunzip_bounded is capped by `take(limit + 1)`; the error proves the
        // read stopped there rather than after 8 MiB.
        assert_eq!(
            gunzip_bounded(&bomb, limit),
            Err(DecodeError::TooLarge { limit })
        );
    }
}
