//! Domain events to stored events and back, with upcasting of old shapes on read.
//!
//! Event enums are adjacently tagged (`{"type": …, "data": …}`): the store keeps the type
//! name in its own column and the payload in `data`. Reading puts them back together
//! after the registered upcasters have brought the payload to the current version.

use crate::{NewEvent, RecordedEvent, StoreError};
use gather_domain::DomainEvent;
use serde_json::{Map, Value};
use std::collections::HashMap;
use uuid::Uuid;

/// Turns a payload of one schema version into the next version's shape.
pub type UpcastFn = fn(Value) -> Value;

/// Registered upcasters: `(event type, from version)` → `(to version, function)`.
/// The stored log is never rewritten; old shapes are upgraded each time they are read.
#[derive(Default, Clone)]
pub struct Upcasters {
    steps: HashMap<(String, i32), (i32, UpcastFn)>,
}

impl Upcasters {
    /// No upcasters.
    pub fn new() -> Self {
        Self::default()
    }

    /// Gather's registry: every upcaster the command handler and the projections read
    /// the log through (one list, so both sides see the same shapes).
    pub fn standard() -> Self {
        Self::new()
    }

    /// Registers a step from `from` to `from + 1` for one event type.
    pub fn register(mut self, event_type: &str, from: i32, f: UpcastFn) -> Self {
        self.steps.insert((event_type.to_string(), from), (from + 1, f));
        self
    }

    /// Applies every step that applies, returning the final version and payload.
    pub fn upcast(&self, event_type: &str, mut version: i32, mut data: Value) -> (i32, Value) {
        while let Some((to, f)) = self.steps.get(&(event_type.to_string(), version)) {
            data = f(data);
            version = *to;
        }
        (version, data)
    }
}

/// Serializes a domain event into a new stored event with a fresh v7 id.
pub fn encode<E: DomainEvent>(event: &E) -> Result<NewEvent, serde_json::Error> {
    let data = match serde_json::to_value(event)? {
        Value::Object(mut map) => map.remove("data").unwrap_or(Value::Null),
        other => other,
    };
    Ok(NewEvent {
        event_id: Uuid::now_v7(),
        event_type: event.event_type().to_string(),
        schema_version: event.schema_version() as i32,
        data,
    })
}

/// Reads a stored event into the current shape of `E`, upcasting on the way.
/// An unknown type or a corrupt payload is a typed error naming stream and version.
pub fn decode<E: DomainEvent>(recorded: &RecordedEvent, upcasters: &Upcasters) -> Result<E, StoreError> {
    let (_, data) = upcasters.upcast(&recorded.event_type, recorded.schema_version, recorded.data.clone());
    let mut map = Map::new();
    map.insert("type".into(), Value::String(recorded.event_type.clone()));
    if !data.is_null() {
        map.insert("data".into(), data);
    }
    serde_json::from_value(Value::Object(map)).map_err(|source| StoreError::Decode {
        stream: recorded.stream.clone(),
        version: recorded.version,
        event_type: recorded.event_type.clone(),
        source,
    })
}
