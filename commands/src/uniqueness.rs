//! Set validation: a unique, case-insensitive member email (ARCHITECTURE.md decision 5).
//!
//! An email is reserved by appending `EmailReserved` to its own stream
//! `email-{uuid}` with expected version `NoStream`, in the same atomic append as the
//! member's first events. Login resolves an email to its member through the same
//! stream, so it never waits on a projection.
//!
//! The stream's uuid is an HMAC-SHA256 of the normalized address under the lookup key
//! (`GATHER_LOOKUP_KEY`), so a stream name does not tell whose address it is to anyone
//! without the key (an unkeyed hash of an address falls to a dictionary). Stores written
//! before the key existed named reservations by an unkeyed hash: those are still read
//! (the [`legacy_email_stream`]), never created.

use crate::store::{EventStore, ExpectedVersion, NewEvent, StoreError, StreamAppend};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

/// The event type of a reservation.
pub const EMAIL_RESERVED: &str = "EmailReserved";
/// The event type that gives a reservation back (a forgotten member's, or the
/// compensation on backends without atomic multi-stream appends); the address may then
/// be reserved again.
pub const RESERVATION_RELEASED: &str = "ReservationReleased";

/// The secret that names reservation streams (at least 32 bytes).
#[derive(Clone)]
pub struct LookupKey(Arc<[u8]>);

impl std::fmt::Debug for LookupKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LookupKey(…)")
    }
}

impl LookupKey {
    /// A key from its secret bytes.
    pub fn new(secret: &[u8]) -> LookupKey {
        LookupKey(Arc::from(secret))
    }

    /// The secret (the vault names invited addresses by an HMAC under it too).
    pub fn secret(&self) -> &[u8] {
        &self.0
    }

    fn tag(&self, normalized: &str) -> Uuid {
        crate::store::vault::keyed_id(&self.0, "gather-email-lookup", normalized)
    }
}

/// The reservation stream of a normalized email.
pub fn email_stream(key: &LookupKey, normalized: &str) -> String {
    format!("email-{}", key.tag(normalized))
}

/// Where a store written before the lookup key named the reservation of `normalized`.
pub fn legacy_email_stream(normalized: &str) -> String {
    format!("email-{}", crate::ids::derived(normalized))
}

/// The member a reservation stream's last event says holds it (none once released).
async fn holder(store: &dyn EventStore, stream: &str) -> Result<(Option<Uuid>, Option<i64>, bool), StoreError> {
    let last = store.read_stream_page(stream, i64::MAX, true, 1).await?.pop();
    let Some(last) = last else { return Ok((None, None, false)) };
    let released = last.event_type == RESERVATION_RELEASED;
    let member = (last.event_type == EMAIL_RESERVED)
        .then(|| last.data.get("member_id").and_then(|v| v.as_str()).and_then(|s| Uuid::parse_str(s).ok()))
        .flatten();
    Ok((member, Some(last.version), released))
}

/// The append that reserves `normalized` for `member_id`.
pub fn reserve_email(key: &LookupKey, normalized: &str, member_id: Uuid) -> StreamAppend {
    StreamAppend {
        stream: email_stream(key, normalized),
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
/// given back earlier (a forgotten member's address may register again); `None` when
/// a reservation of the store's earlier naming still holds the address.
pub async fn reserve_email_again(
    store: &dyn EventStore,
    key: &LookupKey,
    normalized: &str,
    member_id: Uuid,
) -> Result<Option<StreamAppend>, StoreError> {
    if holder(store, &legacy_email_stream(normalized)).await?.0.is_some() {
        return Ok(None);
    }
    let mut append = reserve_email(key, normalized, member_id);
    if let (_, Some(version), true) = holder(store, &append.stream).await? {
        append.expected = ExpectedVersion::Exact(version);
    }
    Ok(Some(append))
}

/// The append that gives back `member_id`'s reservation of `normalized` (when a member
/// is forgotten), or `None` if they do not hold it.
pub async fn release_email(
    store: &dyn EventStore,
    key: &LookupKey,
    normalized: &str,
    member_id: Uuid,
) -> Result<Option<StreamAppend>, StoreError> {
    for stream in [email_stream(key, normalized), legacy_email_stream(normalized)] {
        if let (Some(holder), Some(version), _) = holder(store, &stream).await?
            && holder == member_id
        {
            return Ok(Some(StreamAppend {
                stream,
                expected: ExpectedVersion::Exact(version),
                events: vec![NewEvent {
                    event_id: Uuid::now_v7(),
                    event_type: RESERVATION_RELEASED.into(),
                    schema_version: 1,
                    data: json!({ "member_id": member_id, "reason": "forgotten" }),
                }],
            }));
        }
    }
    Ok(None)
}

/// The member holding `normalized`, if any (a released reservation holds nothing).
pub async fn email_owner(
    store: &dyn EventStore,
    key: &LookupKey,
    normalized: &str,
) -> Result<Option<Uuid>, StoreError> {
    match holder(store, &email_stream(key, normalized)).await?.0 {
        Some(member) => Ok(Some(member)),
        None => Ok(holder(store, &legacy_email_stream(normalized)).await?.0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reservation_streams_are_named_by_a_keyed_hash() {
        let (a, b) = (
            LookupKey::new(b"first key, 32 bytes long or more!"),
            LookupKey::new(b"second key, 32 bytes long or more"),
        );
        assert_eq!(email_stream(&a, "ada@example.com"), email_stream(&a, "ada@example.com"));
        assert_ne!(email_stream(&a, "ada@example.com"), email_stream(&a, "bob@example.com"));
        assert_ne!(
            email_stream(&a, "ada@example.com"),
            email_stream(&b, "ada@example.com"),
            "another key, another name"
        );
        assert_ne!(email_stream(&a, "ada@example.com"), legacy_email_stream("ada@example.com"));
        assert!(!email_stream(&a, "ada@example.com").contains("ada"));
    }
}
