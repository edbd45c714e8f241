//! The library's one error type.
//!
//! Errors are returned only from explicit calls — building a client, `flush`,
//! `shutdown` — never from `capture`, which cannot fail from the caller's point of view.

use std::time::Duration;

/// What an explicit call into the library can report.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The host URL is not usable: not a URL, or plain `http` to a non-loopback host.
    #[error("invalid host {host:?}: {reason}")]
    InvalidHost {
        /// The host as given.
        host: String,
        /// Why it was refused.
        reason: &'static str,
    },
    /// The API key is empty or not a well-formed project key.
    #[error("invalid project API key: {0}")]
    InvalidApiKey(&'static str),
    /// The background worker thread could not be started.
    #[error("could not start the telemetry worker thread: {0}")]
    Spawn(#[source] std::io::Error),
    /// `flush` or `shutdown` did not finish within its timeout. Work goes on in the
    /// background; nothing was discarded because of the timeout.
    #[error("timed out after {0:?}")]
    Timeout(Duration),
    /// `flush` finished, but some events could not be delivered (the endpoint refused
    /// them, or is unreachable and retries are pending).
    #[error("{undelivered} event(s) not delivered")]
    Undelivered {
        /// Events that were not acknowledged by the server.
        undelivered: u64,
    },
    /// The client was shut down; it accepts no more work.
    #[error("the telemetry client is shut down")]
    ShutDown,
    /// Telemetry is disabled: there is nothing to flush or shut down.
    #[error("telemetry is disabled")]
    Disabled,
}
