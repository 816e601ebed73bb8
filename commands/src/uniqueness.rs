//! Set validation: a unique, case-insensitive member email (ARCHITECTURE.md decision 5).
//!
//! An email is reserved by appending `EmailReserved` to its own stream
//! `email-{uuid derived from the normalized address}` with expected version `NoStream`,
//! in the same atomic append as the member's first events. Login resolves an email to
//! its member through the same stream, so it never waits on a projection.

use crate::store::{EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend};
use serde_json::json;
use uuid::Uuid;

/// The event type of a reservation.
pub const EMAIL_RESERVED: &str = "EmailReserved";
/// The event type that gives a reservation back (the compensation on backends without
/// atomic multi-stream appends); the key may then be reserved again.
pub const RESERVATION_RELEASED: &str = "ReservationReleased";

/// The reservation stream of a normalized email.
pub fn email_stream(normalized: &str) -> String {
    format!("email-{}", crate::ids::derived(normalized))
}

/// The append that reserves `normalized` for `member_id`.
pub fn reserve_email(normalized: &str, member_id: Uuid) -> StreamAppend {
    StreamAppend {
        stream: email_stream(normalized),
        expected: ExpectedVersion::NoStream,
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: EMAIL_RESERVED.into(),
            schema_version: 1,
            data: json!({ "member_id": member_id }),
        }],
    }
}

/// The append that reserves `normalized` for `member_id`, taking over a reservation
/// given back earlier (a forgotten member's address may register again).
pub async fn reserve_email_again(
    store: &dyn EventStore,
    normalized: &str,
    member_id: Uuid,
) -> Result<StreamAppend, StoreError> {
    let mut append = reserve_email(normalized, member_id);
    if let Some(last) = store.read_stream_page(&append.stream, i64::MAX, true, 1).await?.pop()
        && last.event_type == RESERVATION_RELEASED
    {
        append.expected = ExpectedVersion::Exact(last.version);
    }
    Ok(append)
}

/// The append that gives back `member_id`'s reservation of `normalized` (when a member
/// is forgotten), or `None` if they do not hold it.
pub async fn release_email(
    store: &dyn EventStore,
    normalized: &str,
    member_id: Uuid,
) -> Result<Option<StreamAppend>, StoreError> {
    let stream = email_stream(normalized);
    let Some(last) = store.read_stream_page(&stream, i64::MAX, true, 1).await?.pop() else { return Ok(None) };
    let holder = last.data.get("member_id").and_then(|v| v.as_str()).and_then(|s| Uuid::parse_str(s).ok());
    if last.event_type != EMAIL_RESERVED || holder != Some(member_id) {
        return Ok(None);
    }
    Ok(Some(StreamAppend {
        stream,
        expected: ExpectedVersion::Exact(last.version),
        events: vec![NewEvent {
            event_id: Uuid::now_v7(),
            event_type: RESERVATION_RELEASED.into(),
            schema_version: 1,
            data: json!({ "member_id": member_id, "reason": "forgotten" }),
        }],
    }))
}

/// The member holding `normalized`, if any (a released reservation holds nothing).
pub async fn email_owner(store: &dyn EventStore, normalized: &str) -> Result<Option<Uuid>, StoreError> {
    let stream = email_stream(normalized);
    let last = store.read_stream_page(&stream, i64::MAX, true, 1).await?.pop();
    Ok(last
        .filter(|e| e.event_type == EMAIL_RESERVED)
        .and_then(|e| e.data.get("member_id").and_then(|v| v.as_str()).and_then(|s| Uuid::parse_str(s).ok())))
}
