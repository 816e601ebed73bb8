//! Typed reads of the read models, shared by both backends.

use gather_commands::Db;
use gather_commands::on_db_read;
use serde_json::Value;
use sqlx::FromRow;
use sqlx::types::Json;
use uuid::Uuid;

/// A member's profile as the `members` read model holds it.
#[derive(Debug, Clone, FromRow)]
pub struct MemberRow {
    /// The member.
    pub member_id: Uuid,
    /// Login email.
    pub email: String,
    /// Public name.
    pub display_name: String,
    /// Role names.
    pub roles: Json<Vec<String>>,
    /// `{organisation_name}` once an organiser.
    pub organiser: Option<Json<Value>>,
    /// `[{id, name, birth_date}]`.
    pub children: Json<Value>,
    /// Suspended by a moderator.
    pub suspended: bool,
}

/// One member's profile.
pub async fn member(db: &Db, id: Uuid) -> Result<Option<MemberRow>, sqlx::Error> {
    on_db_read!(db, pool => sqlx::query_as::<_, MemberRow>(
        "SELECT member_id, email, display_name, roles, organiser, children, suspended FROM members WHERE member_id = $1",
    ).bind(id).fetch_optional(pool).await)
}

/// An activity as the `activities` read model holds it.
#[derive(Debug, Clone, FromRow)]
pub struct ActivityRow {
    /// The activity.
    pub activity_id: Uuid,
    /// Its organiser.
    pub organiser_id: Uuid,
    /// `draft`, `pending`, `published`, …
    pub status: String,
    /// `public` or `invite_only`.
    pub visibility: String,
    /// Seats not taken.
    pub seats_left: i64,
    /// How many members favourited it.
    pub favourites: i64,
    /// The full details as the API shows them.
    pub details: Json<Value>,
    /// The stream version this row reflects.
    pub version: i64,
}

/// One activity.
pub async fn activity(db: &Db, id: Uuid) -> Result<Option<ActivityRow>, sqlx::Error> {
    on_db_read!(db, pool => sqlx::query_as::<_, ActivityRow>(
        "SELECT activity_id, organiser_id, status, visibility, seats_left, favourites, details, version \
         FROM activities WHERE activity_id = $1",
    ).bind(id).fetch_optional(pool).await)
}

/// The activity an invitation belongs to.
pub async fn invitation_activity(db: &Db, invitation_id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    on_db_read!(db, pool => sqlx::query_scalar::<_, Uuid>("SELECT activity_id FROM invitations WHERE invitation_id = $1")
        .bind(invitation_id).fetch_optional(pool).await)
}
