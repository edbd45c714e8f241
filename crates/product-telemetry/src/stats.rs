//! Counters describing what the client did with the events it was given.
//!
//! Updated with relaxed atomics from the capturing threads and the worker; read as a
//! consistent-enough [`Stats`] snapshot. The library is silent by default: these
//! counters are how an application observes it.

use std::sync::atomic::{AtomicU64, Ordering};

/// A snapshot of a client's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Events handed to `capture` while enabled and open.
    pub captured: u64,
    /// Events acknowledged by the server.
    pub sent: u64,
    /// Events dropped because the in-memory queue was full (by count or bytes).
    pub dropped_queue_full: u64,
    /// Events dropped because they were invalid: empty name or distinct id, properties
    /// that do not serialise to an object, or larger than the per-event limit.
    pub dropped_invalid: u64,
    /// Events the server refused (a 4xx other than 408/429, or 413 for a single event).
    pub dropped_rejected: u64,
    /// Events dropped after the retries were used up.
    pub dropped_undeliverable: u64,
    /// Events still undelivered when the client shut down.
    pub dropped_at_shutdown: u64,
    /// Events captured after shutdown began.
    pub dropped_after_shutdown: u64,
    /// Events dropped because the spool was over its size or age bound, or a
    /// spooled segment could no longer be read.
    pub dropped_evicted: u64,
    /// Events written to the spool (each at most once).
    pub spooled: u64,
    /// Events taken over from the spool, left there by earlier runs or other processes.
    pub recovered: u64,
    /// Events left in the spool at shutdown, for a later run to deliver.
    pub left_in_spool: u64,
    /// Spool files found corrupt (torn or damaged), removed.
    pub spool_corrupt: u64,
    /// HTTP requests made.
    pub requests: u64,
    /// Requests that were retries of an earlier attempt.
    pub retries: u64,
}

impl Stats {
    /// Every event dropped for any reason.
    pub fn dropped(&self) -> u64 {
        self.dropped_queue_full
            + self.dropped_invalid
            + self.dropped_rejected
            + self.dropped_undeliverable
            + self.dropped_at_shutdown
            + self.dropped_after_shutdown
            + self.dropped_evicted
    }

    /// Events of this run captured but neither sent, dropped nor left in the spool.
    pub fn pending(&self) -> u64 {
        (self.captured + self.dropped_after_shutdown + self.recovered)
            .saturating_sub(self.sent + self.dropped() + self.left_in_spool)
    }
}

/// A value on a cache line of its own (two lines: adjacent-line prefetching), so that
/// the capturing threads and the worker do not slow each other down by writing
/// neighbouring words.
#[derive(Debug, Default)]
#[repr(align(128))]
pub(crate) struct Padded<T>(pub(crate) T);

impl<T> std::ops::Deref for Padded<T> {
    type Target = T;

    fn deref(&self) -> &T {
        &self.0
    }
}

/// The live counters behind [`Stats`]. `captured`, written on every capture, sits
/// apart from the counters the worker writes.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) captured: Padded<AtomicU64>,
    pub(crate) sent: AtomicU64,
    pub(crate) dropped_queue_full: AtomicU64,
    pub(crate) dropped_invalid: AtomicU64,
    pub(crate) dropped_rejected: AtomicU64,
    pub(crate) dropped_undeliverable: AtomicU64,
    pub(crate) dropped_at_shutdown: AtomicU64,
    pub(crate) dropped_after_shutdown: AtomicU64,
    pub(crate) dropped_evicted: AtomicU64,
    pub(crate) spooled: AtomicU64,
    pub(crate) recovered: AtomicU64,
    pub(crate) left_in_spool: AtomicU64,
    pub(crate) spool_corrupt: AtomicU64,
    pub(crate) requests: AtomicU64,
    pub(crate) retries: AtomicU64,
}

impl Counters {
    pub(crate) fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }

    pub(crate) fn snapshot(&self) -> Stats {
        let get = |c: &AtomicU64| c.load(Ordering::Relaxed);
        Stats {
            captured: get(&self.captured),
            sent: get(&self.sent),
            dropped_queue_full: get(&self.dropped_queue_full),
            dropped_invalid: get(&self.dropped_invalid),
            dropped_rejected: get(&self.dropped_rejected),
            dropped_undeliverable: get(&self.dropped_undeliverable),
            dropped_at_shutdown: get(&self.dropped_at_shutdown),
            dropped_after_shutdown: get(&self.dropped_after_shutdown),
            dropped_evicted: get(&self.dropped_evicted),
            spooled: get(&self.spooled),
            recovered: get(&self.recovered),
            left_in_spool: get(&self.left_in_spool),
            spool_corrupt: get(&self.spool_corrupt),
            requests: get(&self.requests),
            retries: get(&self.retries),
        }
    }
}
