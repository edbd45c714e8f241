//! Events: a name and a map of properties.
//!
//! Any `#[derive(Serialize)]` struct becomes an event by naming it with [`Event`]:
//! its fields are its properties (the reference's dataclass rule). [`DynamicEvent`]
//! serves names and properties known only at run time.
//!
//! Events are moved into the queue as they are; serialising them is the background
//! worker's job, never the caller's.

use std::fmt;

use serde::Serialize;
use serde_json::{Map, Value};

/// An event's properties: a JSON object.
pub type Properties = Map<String, Value>;

/// Something that can be captured: a name, and properties given by its `Serialize`
/// implementation, which must produce a JSON object (a struct with named fields, a map).
///
/// ```
/// use product_telemetry::Event;
/// use serde::Serialize;
///
/// #[derive(Serialize)]
/// struct ToolCall {
///     tool_id: Option<String>,
/// }
///
/// impl Event for ToolCall {
///     fn name(&self) -> &str {
///         "tool_call"
///     }
/// }
/// ```
pub trait Event: Serialize + Send + 'static {
    /// The event's name, as PostHog shows it.
    fn name(&self) -> &str;

    /// A rough size in bytes, used to bound the queue's memory before the event is
    /// serialised. The default counts the value itself; override it for events that own
    /// large heap data.
    fn size_hint(&self) -> usize {
        std::mem::size_of_val(self)
    }

    /// Turns the event into its properties, on the worker. The default serialises the
    /// event; an event that already holds a map (like [`DynamicEvent`]) hands it over.
    fn into_properties(self) -> Result<Properties, EventError>
    where
        Self: Sized,
    {
        to_properties(&self)
    }
}

/// Serialises an event into its properties, which must form a JSON object.
fn to_properties<E: Event>(event: &E) -> Result<Properties, EventError> {
    let name = || Event::name(event).to_string();
    match serde_json::to_value(event) {
        Ok(Value::Object(map)) => Ok(map),
        Ok(other) => Err(EventError::NotAnObject {
            name: name(),
            kind: json_kind(&other),
        }),
        Err(source) => Err(EventError::Serialize {
            name: name(),
            source,
        }),
    }
}

/// An event whose name and properties are decided at run time.
///
/// ```
/// use product_telemetry::DynamicEvent;
/// let event = DynamicEvent::new("installer_finished")
///     .property("duration_ms", 1520)
///     .property("target", "x86_64-unknown-linux-gnu");
/// assert_eq!(event.properties()["duration_ms"], 1520);
/// ```
#[derive(Clone, Debug, PartialEq)]
pub struct DynamicEvent {
    name: String,
    properties: Properties,
    size: usize,
}

impl DynamicEvent {
    /// An event with no properties.
    pub fn new(name: impl Into<String>) -> Self {
        let name = name.into();
        let size = name.len() + std::mem::size_of::<Self>();
        DynamicEvent {
            name,
            properties: Properties::new(),
            size,
        }
    }

    /// An event with the given properties.
    pub fn with_properties(name: impl Into<String>, properties: Properties) -> Self {
        let mut event = DynamicEvent::new(name);
        event.size += properties
            .iter()
            .map(|(k, v)| k.len() + value_size(v))
            .sum::<usize>();
        event.properties = properties;
        event
    }

    /// Adds (or replaces) a property.
    pub fn property(mut self, key: impl Into<String>, value: impl Into<Value>) -> Self {
        self.insert(key, value);
        self
    }

    /// Adds (or replaces) a property in place.
    pub fn insert(&mut self, key: impl Into<String>, value: impl Into<Value>) {
        let key = key.into();
        let value = value.into();
        self.size += key.len() + value_size(&value);
        self.properties.insert(key, value);
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The event's properties.
    pub fn properties(&self) -> &Properties {
        &self.properties
    }
}

impl Serialize for DynamicEvent {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.properties.serialize(serializer)
    }
}

impl Event for DynamicEvent {
    fn name(&self) -> &str {
        &self.name
    }

    fn size_hint(&self) -> usize {
        self.size
    }

    fn into_properties(self) -> Result<Properties, EventError> {
        Ok(self.properties)
    }
}

/// Approximate heap and inline size of a JSON value.
fn value_size(value: &Value) -> usize {
    const SLOT: usize = std::mem::size_of::<Value>() + 16;
    SLOT + match value {
        Value::String(s) => s.len(),
        Value::Array(items) => items.iter().map(value_size).sum(),
        Value::Object(map) => map.iter().map(|(k, v)| k.len() + value_size(v)).sum(),
        Value::Null | Value::Bool(_) | Value::Number(_) => 0,
    }
}

/// Why an event's properties could not be produced.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum EventError {
    /// The `Serialize` implementation failed.
    #[error("event {name:?} could not be serialised: {source}")]
    Serialize {
        /// The event's name.
        name: String,
        /// The serde error.
        source: serde_json::Error,
    },
    /// The event serialised to something other than a JSON object.
    #[error("event {name:?} must serialise to a JSON object, not {kind}")]
    NotAnObject {
        /// The event's name.
        name: String,
        /// What it serialised to.
        kind: &'static str,
    },
}

/// The object-safe face of an [`Event`], so that the queue holds any event type.
trait ErasedEvent: Send {
    fn name(&self) -> &str;
    fn properties(&self) -> Result<Properties, EventError>;
    fn into_properties(self: Box<Self>) -> Result<Properties, EventError>;
    fn size_hint(&self) -> usize;
}

impl<E: Event> ErasedEvent for E {
    fn name(&self) -> &str {
        Event::name(self)
    }

    fn properties(&self) -> Result<Properties, EventError> {
        to_properties(self)
    }

    fn into_properties(self: Box<Self>) -> Result<Properties, EventError> {
        Event::into_properties(*self)
    }

    fn size_hint(&self) -> usize {
        Event::size_hint(self)
    }
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// Any event, boxed: what the queue carries and what [`Telemetry`](crate::Telemetry)
/// implementations receive.
pub struct BoxedEvent(Box<dyn ErasedEvent>);

impl BoxedEvent {
    /// Boxes an event.
    pub fn new<E: Event>(event: E) -> Self {
        BoxedEvent(Box::new(event))
    }

    /// The event's name.
    pub fn name(&self) -> &str {
        self.0.name()
    }

    /// Serialises the event's properties.
    pub fn properties(&self) -> Result<Properties, EventError> {
        self.0.properties()
    }

    /// The event's properties, consuming it (no copy for [`DynamicEvent`]).
    pub fn into_properties(self) -> Result<Properties, EventError> {
        self.0.into_properties()
    }

    /// The event's size estimate in bytes.
    pub fn size_hint(&self) -> usize {
        self.0.size_hint()
    }
}

impl fmt::Debug for BoxedEvent {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("BoxedEvent")
            .field("name", &self.name())
            .finish_non_exhaustive()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Serialize)]
    struct PlanBuild {
        plan_length: u32,
        step_type_counts: std::collections::BTreeMap<String, u32>,
    }

    impl Event for PlanBuild {
        fn name(&self) -> &str {
            "plan_v2_build"
        }
    }

    #[test]
    fn struct_fields_become_properties() {
        let event = BoxedEvent::new(PlanBuild {
            plan_length: 3,
            step_type_counts: [("llm".to_string(), 2)].into_iter().collect(),
        });
        assert_eq!(event.name(), "plan_v2_build");
        let props = event.properties().expect("object");
        assert_eq!(props["plan_length"], 3);
        assert_eq!(props["step_type_counts"]["llm"], 2);
        assert!(!props.contains_key("name"));
    }

    #[derive(Serialize)]
    struct NotAnObject(u8);

    impl Event for NotAnObject {
        fn name(&self) -> &str {
            "odd"
        }
    }

    #[test]
    fn non_object_events_are_refused_with_a_clear_error() {
        let err = BoxedEvent::new(NotAnObject(1)).properties().unwrap_err();
        assert_eq!(
            err.to_string(),
            "event \"odd\" must serialise to a JSON object, not a number"
        );
    }

    #[test]
    fn dynamic_event_size_grows_with_its_properties() {
        let small = DynamicEvent::new("e");
        let big = DynamicEvent::new("e").property("blob", "x".repeat(10_000));
        assert!(Event::size_hint(&big) >= Event::size_hint(&small) + 10_000);
    }
}
