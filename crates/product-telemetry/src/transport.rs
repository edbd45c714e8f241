//! HTTP: the only module that knows how a batch travels.
//!
//! [`HttpTransport`] posts with ureq over rustls, verifying certificates against the
//! platform's trust store (so corporate CAs work) and never turning verification off.
//! Proxies come from `HTTPS_PROXY`/`HTTP_PROXY`/`ALL_PROXY` and `NO_PROXY`. Every
//! request has a connect timeout and an overall timeout. Redirects are not followed.
//!
//! [`Transport`] is the seam for tests and for adapters that want to watch requests.

use std::io::Read;
use std::net::IpAddr;
use std::time::Duration;

use ureq::http::Uri;
use uuid::Uuid;

use crate::Error;

/// One delivery attempt, as the worker hands it to a [`Transport`].
#[derive(Debug)]
#[non_exhaustive]
pub struct TransportRequest<'a> {
    /// The full URL, e.g. `https://eu.i.posthog.com/batch/`.
    pub url: &'a str,
    /// The body, gzip-compressed when `gzip` is set.
    pub body: &'a [u8],
    /// Whether `body` is gzip-compressed.
    pub gzip: bool,
    /// The longest this attempt may take, connection included.
    pub timeout: Duration,
    /// The uuids of the events in the body, in order.
    pub uuids: &'a [Uuid],
    /// 0 for the first attempt of a batch, then 1, 2, … for its retries.
    pub attempt: u32,
}

/// The parts of an HTTP answer the client acts on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransportResponse {
    /// The HTTP status code.
    pub status: u16,
    /// The `Retry-After` header, if any.
    pub retry_after: Option<String>,
}

/// A failure to get any HTTP answer: connection refused, reset, timed out, TLS…
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct TransportError(pub String);

/// Sends one batch request and reports the answer.
///
/// Implementations must honour `request.timeout` and must not panic.
pub trait Transport: Send + 'static {
    /// Performs the request.
    fn send(&mut self, request: &TransportRequest<'_>)
    -> Result<TransportResponse, TransportError>;
}

/// The real transport: blocking HTTP with ureq.
#[derive(Debug)]
pub struct HttpTransport {
    agent: ureq::Agent,
}

/// How much of a response body is read (and discarded) so the connection can be reused.
const MAX_RESPONSE_BODY: u64 = 64 * 1024;

impl HttpTransport {
    /// A transport with the given connect timeout (the overall timeout is per request).
    pub fn new(connect_timeout: Duration) -> Self {
        use ureq::tls::{RootCerts, TlsConfig};
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::PlatformVerifier)
            .build();
        let agent = ureq::Agent::config_builder()
            .timeout_connect(Some(connect_timeout))
            .timeout_global(Some(Duration::from_secs(10)))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!("product-telemetry/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .new_agent();
        HttpTransport { agent }
    }
}

impl Transport for HttpTransport {
    fn send(
        &mut self,
        request: &TransportRequest<'_>,
    ) -> Result<TransportResponse, TransportError> {
        let mut builder = self
            .agent
            .post(request.url)
            .header("Content-Type", "application/json");
        if request.gzip {
            builder = builder.header("Content-Encoding", "gzip");
        }
        let response = builder
            .config()
            .timeout_global(Some(request.timeout))
            .build()
            .send(request.body)
            .map_err(|e| TransportError(e.to_string()))?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        // Read a bounded amount of the body so the connection can be reused; its
        // content does not matter (PostHog answers 200 even when it drops events).
        let mut sink = std::io::sink();
        let _ = std::io::copy(
            &mut response.into_body().into_reader().take(MAX_RESPONSE_BODY),
            &mut sink,
        );
        Ok(TransportResponse {
            status,
            retry_after,
        })
    }
}

/// The batch endpoint for `host`: `https://…/batch/`, or plain `http` to a loopback
/// address (local collectors and tests).
///
/// ```
/// use product_telemetry::transport::batch_url;
/// assert_eq!(batch_url("https://eu.i.posthog.com").unwrap(), "https://eu.i.posthog.com/batch/");
/// assert_eq!(batch_url("http://127.0.0.1:8474/").unwrap(), "http://127.0.0.1:8474/batch/");
/// assert!(batch_url("http://example.com").is_err());
/// ```
pub fn batch_url(host: &str) -> Result<String, Error> {
    let invalid = |reason| Error::InvalidHost {
        host: host.to_string(),
        reason,
    };
    let trimmed = host.trim().trim_end_matches('/');
    let uri: Uri = trimmed.parse().map_err(|_| invalid("not a URL"))?;
    let name = uri.host().ok_or_else(|| invalid("no host name"))?;
    match uri.scheme_str() {
        Some("https") => {}
        Some("http") if is_loopback(name) => {}
        Some("http") => return Err(invalid("plain http is only allowed to loopback addresses")),
        _ => return Err(invalid("the scheme must be https")),
    }
    if uri.query().is_some() {
        return Err(invalid("a host URL has no query"));
    }
    Ok(format!("{trimmed}/batch/"))
}

fn is_loopback(host: &str) -> bool {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    bare.eq_ignore_ascii_case("localhost")
        || bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_https_or_loopback_http_is_accepted() {
        for ok in [
            "https://eu.i.posthog.com",
            "https://posthog.example.com/ingest/",
            "http://localhost:8000",
            "http://127.0.0.1:1",
            "http://127.10.0.3",
            "http://[::1]:9000",
        ] {
            assert!(batch_url(ok).is_ok(), "{ok}");
        }
        for bad in [
            "http://eu.i.posthog.com",
            "http://10.0.0.1",
            "http://localhost.example.com",
            "ftp://127.0.0.1",
            "eu.i.posthog.com",
            "",
            "https://",
        ] {
            assert!(batch_url(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn path_prefixes_are_kept() {
        assert_eq!(
            batch_url("https://example.com/ingest/").unwrap(),
            "https://example.com/ingest/batch/"
        );
    }
}
