//! Fork awareness: a counter that a forked child sees increased.
//!
//! A child created by `fork()` after the client started has no worker thread (threads
//! do not survive a fork) and shares nothing live with its parent. The client compares
//! this counter with the value it was built under — one relaxed atomic load on the
//! capture path — and, in a child, starts a fresh worker of its own on first use. The
//! parent's events stay with the parent (in its memory or its spool segments, which the
//! child never claims while the parent lives), so nothing is lost or sent twice.

#![allow(unsafe_code)]

use std::sync::Once;
use std::sync::atomic::{AtomicU64, Ordering};

static GENERATION: AtomicU64 = AtomicU64::new(0);
static REGISTER: Once = Once::new();

#[cfg(unix)]
extern "C" fn after_fork_in_child() {
    // Async-signal-safe: one atomic increment.
    GENERATION.fetch_add(1, Ordering::Relaxed);
}

/// Installs the fork handler (once per process).
pub(crate) fn watch() {
    REGISTER.call_once(|| {
        #[cfg(unix)]
        // SAFETY: `pthread_atfork` only records the handler; the handler performs a
        // single atomic increment, which is async-signal-safe and valid in a child.
        unsafe {
            libc::pthread_atfork(None, None, Some(after_fork_in_child));
        }
    });
}

/// How many forks lie between the first process and this one.
#[inline]
pub(crate) fn generation() -> u64 {
    GENERATION.load(Ordering::Relaxed)
}
