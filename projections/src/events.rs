//! Decoding the log for projections: every projection reads events through the same
//! upcasters as the command handler ([`Upcasters::standard`]) and matches the typed
//! result exhaustively, never by comparing type names by hand.

use gather_commands::Upcasters;
use gather_commands::codec::decode;
use gather_commands::store::{RecordedEvent, StoreError};
use gather_domain::Aggregate;
use gather_domain::activity::{Activity, ActivityEvent};
use gather_domain::chat::{Chat, ChatEvent};
use gather_domain::member::{Member, MemberEvent};
use std::sync::LazyLock;
use uuid::Uuid;

static UPCASTERS: LazyLock<Upcasters> = LazyLock::new(Upcasters::standard);

/// An event of the log in its current shape, with the id of its aggregate.
#[derive(Debug)]
pub enum GatherEvent {
    /// From `member-{id}`.
    Member(Uuid, MemberEvent),
    /// From `activity-{id}`.
    Activity(Uuid, ActivityEvent),
    /// From `chat-{id}`.
    Chat(Uuid, ChatEvent),
    /// From a stream no read model follows (`email-…` reservations, …).
    Other,
}

/// Decodes `e` by its stream's category. An event of a known category that does not
/// decode is an error (the projector stops on it and reports it); unknown categories
/// and malformed stream names are `Other`.
pub fn decode_event(e: &RecordedEvent) -> Result<GatherEvent, StoreError> {
    let category = e.category();
    let id = || e.stream.split_once('-').and_then(|(_, id)| Uuid::parse_str(id).ok());
    Ok(match category {
        c if c == Member::CATEGORY => match id() {
            Some(id) => GatherEvent::Member(id, decode(e, &UPCASTERS)?),
            None => GatherEvent::Other,
        },
        c if c == Activity::CATEGORY => match id() {
            Some(id) => GatherEvent::Activity(id, decode(e, &UPCASTERS)?),
            None => GatherEvent::Other,
        },
        c if c == Chat::CATEGORY => match id() {
            Some(id) => GatherEvent::Chat(id, decode(e, &UPCASTERS)?),
            None => GatherEvent::Other,
        },
        _ => GatherEvent::Other,
    })
}

/// Decodes `e` only if it belongs to category `A` (cheap for the rest of the log).
pub fn decode_of<A: Aggregate>(e: &RecordedEvent) -> Result<Option<(Uuid, A::Event)>, StoreError> {
    if e.category() != A::CATEGORY {
        return Ok(None);
    }
    let Some(id) = e.stream.split_once('-').and_then(|(_, id)| Uuid::parse_str(id).ok()) else {
        return Ok(None);
    };
    Ok(Some((id, decode(e, &UPCASTERS)?)))
}
