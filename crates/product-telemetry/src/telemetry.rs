//! The capture interface and its two stand-ins: a no-op and an in-memory recorder.
//!
//! [`Telemetry`] is the reference's `BaseProductTelemetry`: "something that captures
//! telemetry events". Libraries take an `Arc<dyn Telemetry>` (or a generic) so that
//! applications choose the real [`ProductTelemetry`](crate::ProductTelemetry), a
//! [`NoopTelemetry`], or — in their tests — a [`RecordingTelemetry`] to assert what
//! would have been sent.

use std::sync::{Arc, Mutex, PoisonError};

use crate::event::{BoxedEvent, Event, Properties};

/// Something that captures telemetry events.
///
/// Implementations must return promptly and never panic: capturing is fire-and-forget.
///
/// ```
/// use std::sync::Arc;
/// use product_telemetry::{DynamicEvent, NoopTelemetry, RecordingTelemetry, Telemetry};
///
/// fn run(telemetry: &dyn Telemetry) {
///     telemetry.capture(DynamicEvent::new("command_run").property("command", "build"));
/// }
///
/// let recorder = RecordingTelemetry::new();
/// run(&recorder);
/// run(&NoopTelemetry);
/// assert_eq!(recorder.names(), ["command_run"]);
/// ```
pub trait Telemetry: Send + Sync {
    /// Captures a boxed event. Callers holding a `dyn Telemetry` or a concrete
    /// implementation use `capture(event)`; generic code uses
    /// `capture_boxed(BoxedEvent::new(event))`.
    fn capture_boxed(&self, event: BoxedEvent);
}

impl<'a> dyn Telemetry + 'a {
    /// Captures an event through a trait object.
    pub fn capture<E: Event>(&self, event: E) {
        self.capture_boxed(BoxedEvent::new(event));
    }
}

impl<T: Telemetry + ?Sized> Telemetry for Arc<T> {
    fn capture_boxed(&self, event: BoxedEvent) {
        (**self).capture_boxed(event);
    }
}

/// Discards every event.
#[derive(Clone, Copy, Debug, Default)]
pub struct NoopTelemetry;

impl NoopTelemetry {
    /// Discards `event`.
    pub fn capture<E: Event>(&self, event: E) {
        drop(event);
    }
}

impl Telemetry for NoopTelemetry {
    fn capture_boxed(&self, _event: BoxedEvent) {}
}

/// An event as a [`RecordingTelemetry`] saw it.
#[derive(Clone, Debug, PartialEq)]
pub struct RecordedEvent {
    /// The event's name.
    pub name: String,
    /// Its properties, as they would be serialised (before the library adds its own).
    pub properties: Properties,
}

/// Keeps every captured event in memory, for tests.
///
/// Cloning shares the record. Events whose properties cannot be serialised are
/// recorded with empty properties and counted in [`failures`](Self::failures).
#[derive(Clone, Debug, Default)]
pub struct RecordingTelemetry {
    inner: Arc<Mutex<Record>>,
}

#[derive(Debug, Default)]
struct Record {
    events: Vec<RecordedEvent>,
    failures: usize,
}

impl RecordingTelemetry {
    /// An empty recorder.
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `event`.
    pub fn capture<E: Event>(&self, event: E) {
        self.capture_boxed(BoxedEvent::new(event));
    }

    /// Every event recorded so far, oldest first.
    pub fn events(&self) -> Vec<RecordedEvent> {
        self.lock().events.clone()
    }

    /// The names of the recorded events, oldest first.
    pub fn names(&self) -> Vec<String> {
        self.lock().events.iter().map(|e| e.name.clone()).collect()
    }

    /// Events whose properties could not be serialised.
    pub fn failures(&self) -> usize {
        self.lock().failures
    }

    /// Forgets every recorded event.
    pub fn clear(&self) {
        *self.lock() = Record::default();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Record> {
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Telemetry for RecordingTelemetry {
    fn capture_boxed(&self, event: BoxedEvent) {
        let properties = event.properties();
        let mut record = self.lock();
        if properties.is_err() {
            record.failures += 1;
        }
        record.events.push(RecordedEvent {
            name: event.name().to_string(),
            properties: properties.unwrap_or_default(),
        });
    }
}
