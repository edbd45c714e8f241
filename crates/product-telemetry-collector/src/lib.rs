//! A small PostHog-compatible capture server that stores events in SQLite.
//!
//! Point any PostHog client (the official ones, or `product-telemetry`) at it and every
//! event lands in one SQLite table you can query, count and show — no PostHog account, no
//! network beyond the collector. The library crate never depends on this one.
//!
//! # Overview
//!
//! - [`RunningCollector`] serves on a background thread with its own runtime (tests, demos);
//!   [`run`] serves in the calling thread until Ctrl-C or SIGTERM (the CLI's `collect`).
//!   Both take a [`CollectorConfig`]: the database path, the accepted project keys, the
//!   size [`Limits`].
//! - It accepts what PostHog's capture service accepts — the same routes, payload shapes,
//!   encodings, token and validation rules, status codes — see [`server`], [`decode`] and
//!   [`payload`].
//! - Each request is stored in one transaction, deduplicated by event uuid, and acknowledged
//!   only after the commit (see [`store`]). Timestamps are corrected for client clock skew
//!   the PostHog way (see [`clock`]).
//! - [`Store`] reads a database back: filtered event lists ([`EventFilter`]) and counts
//!   ([`Stats`]); [`render`] turns them into a table or JSON lines; [`cli`] wraps it all for
//!   a binary.
//!
//! # Example
//!
//! ```
//! use product_telemetry_collector::{CollectorConfig, EventFilter, RunningCollector, Store};
//! use std::io::{Read, Write};
//!
//! let dir = tempfile::tempdir()?;
//! let db = dir.path().join("events.sqlite");
//! let collector = RunningCollector::start(
//!     "127.0.0.1:0".parse()?,
//!     CollectorConfig::new(&db).with_project_key("phc_demo"),
//! )?;
//!
//! // What a PostHog client sends (here by hand, over a plain socket).
//! let body = r#"{"api_key":"phc_demo","batch":[{"event":"app_started",
//!     "distinct_id":"install-1","properties":{"$lib":"demo","os":"linux"}}]}"#;
//! let mut socket = std::net::TcpStream::connect(collector.addr())?;
//! write!(
//!     socket,
//!     "POST /batch/ HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n\
//!      Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
//!     body.len()
//! )?;
//! let mut answer = String::new();
//! socket.read_to_string(&mut answer)?;
//! assert!(answer.starts_with("HTTP/1.1 200"));
//! assert!(answer.ends_with(r#"{"status":"Ok"}"#));
//!
//! collector.shutdown()?;
//! let events = Store::open(&db)?.events(&EventFilter::all())?;
//! assert_eq!(events.len(), 1);
//! assert_eq!(events[0].event, "app_started");
//! assert_eq!(events[0].properties["os"], "linux");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Invariants
//!
//! - A request is stored whole or not at all; a refused request stores nothing.
//! - `200` means committed: stopping the collector never loses an acknowledged event.
//! - Memory per request is bounded by the body limit and the decoded-size limit (a gzip
//!   bomb stops at the limit).
//! - No public function panics; runtime paths have no `unwrap`/`expect`.
//! - Only [`store`] speaks SQL; only [`server`] speaks HTTP; [`decode`], [`payload`] and
//!   [`clock`] are pure.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod cli;
pub mod clock;
pub mod config;
pub mod decode;
pub mod error;
pub mod payload;
pub mod render;
pub mod server;
pub mod store;
mod writer;

pub use config::{CollectorConfig, Limits};
pub use error::CollectorError;
pub use server::{RunningCollector, run};
pub use store::{EventFilter, Stats, Store, StoreError, StoredEvent};
