//! The `activities` read model: one row per activity with its status, seats left,
//! favourites and the details as the API shows them.

use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use gather_commands::Upcasters;
use gather_commands::codec::decode;
use gather_commands::db::Tx;
use gather_commands::on_tx;
use gather_commands::store::RecordedEvent;
use gather_domain::Aggregate;
use gather_domain::activity::{Activity, ActivityDetails, ActivityEvent};
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

/// Projects activity streams into `activities`.
pub struct ActivitiesProjection;

/// The API's view of an activity's details.
pub fn details_view(id: Uuid, organiser_id: Uuid, d: &ActivityDetails) -> Value {
    json!({
        "id": id,
        "organiser_id": organiser_id,
        "title": d.title,
        "description": d.description,
        "category": d.category,
        "tags": d.tags,
        "starts_at": d.time.starts_at(),
        "ends_at": d.time.ends_at(),
        "capacity": d.capacity,
        "price": d.price,
        "visibility": d.visibility.as_str(),
        "location": d.location,
        "age_min": d.age_range.map(|a| a.min()),
        "age_max": d.age_range.map(|a| a.max()),
        "waitlist": d.waitlist,
        "media": [],
    })
}

async fn details(tx: &mut Tx, t: &str, id: Uuid) -> Result<Option<Value>, sqlx::Error> {
    let sql = format!("SELECT details FROM {t} WHERE activity_id = $1");
    let row: Option<(Json<Value>,)> = on_tx!(tx, c =>
        sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut **c).await)?;
    Ok(row.map(|(Json(v),)| v))
}

/// Updates the columns every event touches, plus the optional ones given.
async fn touch(
    tx: &mut Tx,
    t: &str,
    e: &RecordedEvent,
    id: Uuid,
    status: Option<&str>,
    seats_left: Option<u32>,
    details: Option<Value>,
) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE {t} SET status = COALESCE($2, status), seats_left = COALESCE($3, seats_left), \
         details = COALESCE($4, details), version = $5, position = $6, updated_at = $7 \
         WHERE activity_id = $1 AND version < $5"
    );
    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
    .bind(id).bind(status).bind(seats_left.map(i64::from)).bind(details.map(Json))
    .bind(e.version).bind(e.position).bind(e.recorded_at)
    .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

#[async_trait]
impl Projection for ActivitiesProjection {
    fn name(&self) -> &'static str {
        "activities"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["activities"]
    }

    async fn apply(&self, tx: &mut Tx, at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let t = &at.table("activities");
        if e.category() == "member" {
            return favourites(tx, t, e).await;
        }
        if e.category() != Activity::CATEGORY {
            return Ok(());
        }
        let Some(id) = e.stream.strip_prefix("activity-").and_then(|s| Uuid::parse_str(s).ok()) else {
            return Ok(());
        };
        use ActivityEvent as E;
        match decode::<ActivityEvent>(e, &Upcasters::new())? {
            E::ActivityDrafted { organiser_id, details, .. } => {
                let view = details_view(id, organiser_id, &details);
                let cap = i64::from(details.capacity.get());
                let sql = format!(
                    "INSERT INTO {t} (activity_id, organiser_id, status, visibility, title, starts_at, capacity, \
                     seats_left, favourites, details, version, created_at, updated_at, position) \
                     VALUES ($1, $2, 'draft', $3, $4, $5, $6, $6, 0, $7, $8, $9, $9, $10) \
                     ON CONFLICT (activity_id) DO NOTHING"
                );
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
                .bind(id).bind(organiser_id).bind(details.visibility.as_str()).bind(details.title.as_str())
                .bind(details.time.starts_at()).bind(cap).bind(Json(view)).bind(e.version)
                .bind(e.recorded_at).bind(e.position)
                .execute(&mut **c).await.map(|r| r.rows_affected()))?;
            }
            E::ActivityDetailsUpdated { details: d, seats_left, .. } => {
                let mut view = details(tx, t, id).await?.unwrap_or_default();
                let organiser = view.get("organiser_id").and_then(|v| v.as_str()).and_then(|s| s.parse().ok());
                let media = view.get("media").cloned().unwrap_or_else(|| json!([]));
                view = details_view(id, organiser.unwrap_or_default(), &d);
                view["media"] = media;
                let sql = format!(
                    "UPDATE {t} SET title = $2, starts_at = $3, capacity = $4, visibility = $5 WHERE activity_id = $1"
                );
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(d.title.as_str()).bind(d.time.starts_at()).bind(i64::from(d.capacity.get()))
                 .bind(d.visibility.as_str()).execute(&mut **c).await.map(|r| r.rows_affected()))?;
                touch(tx, t, e, id, None, Some(seats_left), Some(view)).await?;
            }
            E::ActivitySubmitted {} => touch(tx, t, e, id, Some("pending"), None, None).await?,
            E::ActivityPublished { .. } => touch(tx, t, e, id, Some("published"), None, None).await?,
            E::ActivityRejected { .. } => touch(tx, t, e, id, Some("rejected"), None, None).await?,
            E::ActivityCompleted { .. } => touch(tx, t, e, id, Some("completed"), None, None).await?,
            E::ActivityCancelled { .. } => touch(tx, t, e, id, Some("cancelled"), None, None).await?,
            E::ActivityRescheduled { time, .. } => {
                let mut view = details(tx, t, id).await?.unwrap_or_default();
                view["starts_at"] = json!(time.starts_at());
                view["ends_at"] = json!(time.ends_at());
                let sql = format!("UPDATE {t} SET starts_at = $2 WHERE activity_id = $1");
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id).bind(time.starts_at()).execute(&mut **c).await.map(|r| r.rows_affected()))?;
                touch(tx, t, e, id, None, None, Some(view)).await?;
            }
            E::MediaAttached { media_id, file } => {
                let mut view = details(tx, t, id).await?.unwrap_or_default();
                if let Some(list) = view.get_mut("media").and_then(|m| m.as_array_mut()) {
                    list.push(
                        json!({"id": media_id, "kind": file.kind().as_str(), "content_type": file.content_type()}),
                    );
                }
                touch(tx, t, e, id, None, None, Some(view)).await?;
            }
            E::BookingReserved { seats_left, .. }
            | E::BookingConfirmed { seats_left, .. }
            | E::BookingCancelled { seats_left, .. }
            | E::ReservationExpired { seats_left, .. } => touch(tx, t, e, id, None, Some(seats_left), None).await?,
            E::WaitlistJoined { .. }
            | E::WaitlistPromoted { .. }
            | E::GuestsInvited { .. }
            | E::InvitationAccepted { .. }
            | E::InvitationDeclined { .. }
            | E::AttendeeListSent { .. } => touch(tx, t, e, id, None, None, None).await?,
        }
        Ok(())
    }
}

/// Favourites live in member streams; the count is kept on the activity row.
async fn favourites(tx: &mut Tx, t: &str, e: &RecordedEvent) -> Result<(), ProjectionError> {
    let delta = match e.event_type.as_str() {
        "ActivityFavourited" => 1i64,
        "ActivityUnfavourited" => -1,
        _ => return Ok(()),
    };
    let Some(activity) = e.data.get("activity_id").and_then(|v| v.as_str()).and_then(|s| Uuid::parse_str(s).ok())
    else {
        return Ok(());
    };
    let sql = format!(
        "UPDATE {t} SET favourites = CASE WHEN favourites + $2 < 0 THEN 0 ELSE favourites + $2 END WHERE activity_id = $1"
    );
    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(activity).bind(delta).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}
