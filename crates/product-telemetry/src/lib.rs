//! Anonymized, opt-out product telemetry for Rust programs.
//!
//! A CLI, SDK or service calls [`capture`] with an [`Event`]; the event reaches PostHog
//! (or any PostHog-compatible endpoint) from a background thread, without slowing,
//! blocking or crashing the host program, and without personal data.
//!
//! # Overview
//!
//! - [`ProductTelemetry`] — the anonymous service: [`consent`] (opt-out by
//!   `ANONYMIZED_TELEMETRY=false` or `DO_NOT_TRACK=1`), an anonymous install id
//!   ([`identity`]), common properties. One per process through [`init`], or built
//!   directly in tests.
//! - [`Client`] — the plain PostHog client underneath: explicit distinct ids, a bounded
//!   queue, batching, gzip, retries with backoff, bounded `flush` and `shutdown`.
//! - [`Telemetry`] — the capture interface, implemented by the service, by
//!   [`NoopTelemetry`] and by [`RecordingTelemetry`] (for your tests).
//! - [`Event`] — any `#[derive(Serialize)]` struct with a name; [`DynamicEvent`] for
//!   names and properties known at run time.
//!
//! # Usage
//!
//! ```no_run
//! use product_telemetry::{Event, TelemetryConfig};
//! use serde::Serialize;
//!
//! #[derive(Serialize)]
//! struct CommandRun {
//!     command: &'static str,
//!     success: bool,
//! }
//!
//! impl Event for CommandRun {
//!     fn name(&self) -> &str {
//!         "command_run"
//!     }
//! }
//!
//! fn main() {
//!     let _guard = product_telemetry::init(
//!         TelemetryConfig::new("myapp", "phc_project_key_placeholder")
//!             .app_version(env!("CARGO_PKG_VERSION"))
//!             .info_url("https://example.com/myapp/telemetry"),
//!     );
//!     product_telemetry::capture(CommandRun { command: "build", success: true });
//! } // dropping the guard delivers what is queued, waiting at most 1 s
//! ```
//!
//! # What is sent
//!
//! `POST {host}/batch/` with `{"api_key", "sent_at", "batch": [...]}`, gzip-compressed.
//! Each event carries a UUID v7 and a timestamp fixed at capture, the install id as
//! `distinct_id`, its own properties, and `$lib`, `$lib_version`, `sdk_version` (the
//! app's version), `$process_person_profile: false`, `$geoip_disable: true` and
//! `$ip: "0.0.0.0"` (the last three configurable).
//!
//! # Environment variables
//!
//! | variable | effect |
//! | --- | --- |
//! | `ANONYMIZED_TELEMETRY` | `false`, `0`, `no`, `off` (any case) turn telemetry off |
//! | `DO_NOT_TRACK` | `1`, `true`, `yes` turn telemetry off |
//! | `XDG_CACHE_HOME` | where the id file lives (when absolute); else `~/.<app>` |
//! | `PRODUCT_TELEMETRY_DEBUG` | `1` prints each event's JSON to stderr |
//! | `PRODUCT_TELEMETRY_DRY_RUN` | `1` prints each request body to stderr and sends nothing |
//! | `HTTPS_PROXY`, `NO_PROXY` | proxy settings, honoured |
//!
//! The library never reads `.env` files and never prints unless asked to; it logs
//! through the [`log`] facade.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

mod batch;
mod client;
#[cfg(feature = "clap")]
pub mod command;
mod common;
pub mod consent;
mod environment;
mod error;
mod event;
mod fork;
pub mod identity;
pub mod keyed_hash;
mod panic_capture;
pub mod preference;
mod project_key;
mod retry;
pub mod scrub;
pub mod sent_log;
mod service;
pub mod spool;
mod stats;
mod telemetry;
pub mod transport;
mod worker;

pub use batch::{MAX_BATCH_EVENTS, MAX_DISTINCT_ID_CHARS, MAX_EVENT_BYTES, MAX_REQUEST_BYTES};
pub use client::{Client, ClientBuilder, DEBUG_ENV, DEFAULT_HOST, DRY_RUN_ENV, Message};
pub use consent::{Consent, ConsentSource, Saved};
pub use environment::Environment;
pub use error::Error;
pub use event::{BoxedEvent, DynamicEvent, Event, EventError, Properties};
pub use identity::{UNKNOWN_USER_ID, USER_ID_FILE_NAME, UserId, xdg_cache_home};
pub use project_key::ProjectKey;
pub use service::{
    AlreadyInitialised, DEFAULT_SHUTDOWN_TIMEOUT, DEFAULT_VERSION_PROPERTY, ProductTelemetry,
    TelemetryConfig, TelemetryGuard, capture, global, init, try_init,
};
pub use stats::Stats;
pub use telemetry::{NoopTelemetry, RecordedEvent, RecordingTelemetry, Telemetry};

/// The `$lib` property: this library's name.
pub const LIB_NAME: &str = "product-telemetry";
/// The `$lib_version` property: this library's version.
pub const LIB_VERSION: &str = env!("CARGO_PKG_VERSION");

pub(crate) use consent::is_true_like;

/// A project key must be non-empty, at most 64 printable ASCII bytes, and not a
/// personal key (`phx_…`), which must never be embedded in a program.
pub(crate) fn validate_api_key(key: &str) -> Result<(), Error> {
    if key.is_empty() {
        return Err(Error::InvalidApiKey("empty"));
    }
    if key.len() > 64 || !key.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(Error::InvalidApiKey(
            "at most 64 printable ASCII characters, no spaces",
        ));
    }
    if key.starts_with("phx_") {
        return Err(Error::InvalidApiKey(
            "a personal API key (phx_…) must never be embedded; use the project key (phc_…)",
        ));
    }
    Ok(())
}
