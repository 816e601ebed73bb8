//! Decoding the log for projections: every projection reads events through the same
//! upcasters as the command handler ([`Upcasters::standard`]), decodes only the
//! categories it follows (an unreadable event stops only the projections that read it),
//! and matches the typed result exhaustively, never by comparing type names by hand.

use gather_domain::Aggregate;
use gather_store::Upcasters;
use gather_store::codec::decode;
use gather_store::{RecordedEvent, StoreError};
use std::sync::LazyLock;
use uuid::Uuid;

static UPCASTERS: LazyLock<Upcasters> = LazyLock::new(Upcasters::standard);

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

/// The shared upcasters, for projections that decode by hand.
pub fn upcasters() -> &'static Upcasters {
    &UPCASTERS
}
