//! The contract every aggregate fulfils, the command context and the domain error.

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize, de::DeserializeOwned};
use std::fmt::Debug;
use uuid::Uuid;

use crate::errors::DomainError;

/// A role a member can hold. `Member` is implied for every authenticated actor.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Any registered member.
    Member,
    /// A member with an organiser profile.
    Organiser,
    /// Approves activities, suspends members, cancels anything.
    Moderator,
    /// Reads the whole event log.
    Auditor,
    /// The system itself (scheduler, process managers).
    System,
}

impl Role {
    /// The role's wire name (`member`, `organiser`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Member => "member",
            Role::Organiser => "organiser",
            Role::Moderator => "moderator",
            Role::Auditor => "auditor",
            Role::System => "system",
        }
    }

    /// Parses a wire name; `None` for anything unknown.
    pub fn parse(s: &str) -> Option<Role> {
        Some(match s {
            "member" => Role::Member,
            "organiser" => Role::Organiser,
            "moderator" => Role::Moderator,
            "auditor" => Role::Auditor,
            "system" => Role::System,
            _ => return None,
        })
    }
}

/// Who issues a command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Actor {
    /// The member id (or a fixed id for the system).
    pub id: Uuid,
    /// Roles held when the command was issued.
    pub roles: Vec<Role>,
}

impl Actor {
    /// The id used for the system actor (scheduler, process managers).
    pub const SYSTEM_ID: Uuid = Uuid::nil();

    /// An actor with the given roles.
    pub fn new(id: Uuid, roles: impl IntoIterator<Item = Role>) -> Self {
        Actor { id, roles: roles.into_iter().collect() }
    }

    /// The system actor used by the scheduler and process managers.
    pub fn system() -> Self {
        Actor::new(Actor::SYSTEM_ID, [Role::System])
    }

    /// Whether the actor holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.roles.contains(&role)
    }
}

impl Context {
    /// A context for `actor` deciding at `now`.
    pub fn new(actor: Actor, now: DateTime<Utc>) -> Self {
        Context { actor, now }
    }

    /// Whether the actor holds `role`.
    pub fn has(&self, role: Role) -> bool {
        self.actor.has(role)
    }

    /// Whether the actor is the system (scheduler, process managers).
    pub fn is_system(&self) -> bool {
        self.actor.has(Role::System)
    }
}

/// Everything a decision may know besides the state and the command.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    /// Who issues the command.
    pub actor: Actor,
    /// The time of the decision, given by the handler (the domain has no clock).
    pub now: DateTime<Utc>,
}

/// A domain event: serde-serializable with a stable type name and schema version.
///
/// Aggregates' event enums are serialized adjacently tagged
/// (`#[serde(tag = "type", content = "data")]`) so the store can split the
/// stable type name from the payload.
pub trait DomainEvent: Serialize + DeserializeOwned + Clone + Debug + PartialEq + Send + Sync + 'static {
    /// The stable type name stored with the event (`ActivityDrafted`).
    fn event_type(&self) -> &'static str;
    /// The schema version of this event's current shape (starts at 1).
    fn schema_version(&self) -> u32 {
        1
    }
    /// The personal fields of this event's payload, as paths into `data`
    /// (`email`, `invitations[].email`: `[]` means every element of a list).
    ///
    /// The store encrypts them with the key of [`DomainEvent::personal_data_subject`]
    /// (ARCHITECTURE.md decision 12), so that forgetting that member shreds them.
    fn personal_fields(&self) -> &'static [&'static str] {
        &[]
    }
    /// The member whose key protects the personal fields; `None` means the
    /// stream's own entity (the member of a `member-…` stream, the activity of
    /// an `activity-…` stream for invited addresses that belong to no member yet).
    fn personal_data_subject(&self) -> Option<Uuid> {
        None
    }
    /// Whether the personal fields are keyed by the address they hold rather than by a
    /// member: an email typed into an invitation belongs to whoever owns that address,
    /// member or not yet, and forgetting the member who owns it shreds it too.
    fn personal_data_keyed_by_address(&self) -> bool {
        false
    }
}

/// One aggregate: a stream category, its state, commands and events.
pub trait Aggregate: 'static {
    /// The stream category (no dash): streams are `{CATEGORY}-{uuid}`.
    const CATEGORY: &'static str;
    /// The version of the state's shape; a snapshot with another version is ignored.
    const STATE_VERSION: u32 = 1;
    /// The personal fields of the state's JSON, sealed in snapshots like those of events
    /// (`map{}.field` reaches every value of a map); keyed by the stream's entity, or by
    /// the address each holds when [`Aggregate::PERSONAL_STATE_BY_ADDRESS`].
    const PERSONAL_STATE: &'static [&'static str] = &[];
    /// Whether [`Aggregate::PERSONAL_STATE`] holds addresses keyed by themselves.
    const PERSONAL_STATE_BY_ADDRESS: bool = false;
    /// The folded state. Serializable only so that snapshots can be stored.
    type State: Default + Clone + Debug + Serialize + DeserializeOwned + Send + Sync;
    /// The commands this aggregate decides on.
    type Command: Debug + Send;
    /// The events this aggregate emits.
    type Event: DomainEvent;

    /// Decides which events a command produces on the current state.
    fn decide(state: &Self::State, command: Self::Command, ctx: &Context) -> Result<Vec<Self::Event>, DomainError>;
    /// Folds one event into the state.
    fn evolve(state: Self::State, event: &Self::Event) -> Self::State;

    /// Folds a sequence of events from the empty state.
    fn fold<'a>(events: impl IntoIterator<Item = &'a Self::Event>) -> Self::State {
        events.into_iter().fold(Self::State::default(), Self::evolve)
    }
}

/// How the API should answer a domain error.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// Bad input (400).
    Validation,
    /// The actor may not do this (403).
    Forbidden,
    /// The target does not exist (404).
    NotFound,
    /// A domain rule refused the command in the current state (409).
    Conflict,
}

/// The key in a forgotten field's JSON: a shredded personal field reads as
/// `{"forgotten": true}` (the store's codec writes it; [`Personal`] reads it).
pub const FORGOTTEN_KEY: &str = "forgotten";

/// A personal field of an event: its value, or [`Personal::Forgotten`] once the
/// member's key was shredded (ARCHITECTURE.md decision 12). Serialized as the value
/// itself, or as `{"forgotten": true}`; every reader must say what it shows for a
/// forgotten field, so a replay after forgetting still succeeds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Personal<T> {
    /// The value, readable.
    Known(T),
    /// The member was forgotten: the value is gone for good.
    Forgotten,
}

impl<T> Personal<T> {
    /// The value, unless forgotten.
    pub fn known(&self) -> Option<&T> {
        match self {
            Personal::Known(v) => Some(v),
            Personal::Forgotten => None,
        }
    }

    /// The value, unless forgotten.
    pub fn into_known(self) -> Option<T> {
        match self {
            Personal::Known(v) => Some(v),
            Personal::Forgotten => None,
        }
    }

    /// Whether the value was shredded.
    pub fn is_forgotten(&self) -> bool {
        matches!(self, Personal::Forgotten)
    }
}

impl<T> From<T> for Personal<T> {
    fn from(value: T) -> Self {
        Personal::Known(value)
    }
}

impl<T: std::fmt::Display> std::fmt::Display for Personal<T> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Personal::Known(v) => v.fmt(f),
            Personal::Forgotten => f.write_str("(forgotten)"),
        }
    }
}

impl<T: Serialize> Serialize for Personal<T> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Personal::Known(v) => v.serialize(serializer),
            Personal::Forgotten => {
                use serde::ser::SerializeMap;
                let mut map = serializer.serialize_map(Some(1))?;
                map.serialize_entry(FORGOTTEN_KEY, &true)?;
                map.end()
            }
        }
    }
}

impl<'de, T: Deserialize<'de>> Deserialize<'de> for Personal<T> {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(deny_unknown_fields)]
        struct Mark {
            #[allow(dead_code)]
            forgotten: bool,
        }
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr<T> {
            Forgotten(#[allow(dead_code)] Mark),
            Known(T),
        }
        Ok(match Repr::<T>::deserialize(deserializer)? {
            Repr::Forgotten(_) => Personal::Forgotten,
            Repr::Known(v) => Personal::Known(v),
        })
    }
}
