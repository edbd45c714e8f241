//! The error returned by the collector's explicit operations: starting, serving, shutting
//! down. Per-request failures are not errors of the collector: they become HTTP answers
//! (see [`crate::payload::PayloadError`] and [`crate::decode::DecodeError`]).

use std::net::SocketAddr;

use crate::store::StoreError;

/// Why the collector could not start, serve or stop.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CollectorError {
    /// The listening socket could not be bound.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        /// The address asked for.
        addr: SocketAddr,
        /// The operating system's reason.
        source: std::io::Error,
    },
    /// The async runtime or a collector thread could not be created.
    #[error("cannot start the collector runtime: {0}")]
    Runtime(#[source] std::io::Error),
    /// The HTTP server failed while serving.
    #[error("the HTTP server failed: {0}")]
    Serve(#[source] std::io::Error),
    /// Waiting for a termination signal failed.
    #[error("cannot listen for termination signals: {0}")]
    Signal(#[source] std::io::Error),
    /// The event database could not be opened or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Shutdown did not finish within its bound; the collector threads were left to end on
    /// their own. Acknowledged events are committed regardless.
    #[error("the collector did not stop within {0:?}")]
    ShutdownTimeout(std::time::Duration),
    /// A collector thread panicked.
    #[error("a collector thread panicked")]
    Panicked,
}
