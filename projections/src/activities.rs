//! The `activities` read model: one row per activity with its status, seats left,
//! favourites, confirmed bookings and the details as the API shows them; and the
//! `bookings` of each activity (bookings live in the activity's stream, so one
//! projection owns both tables and keeps the confirmed count exact).

use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use gather_commands::db::Tx;
use gather_commands::on_tx;
use gather_commands::store::RecordedEvent;
use gather_domain::activity::{Activity, ActivityDetails, ActivityEvent, BookingStatus};
use gather_domain::member::{Member, MemberEvent};
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

/// Projects activity streams into `activities` and `bookings`, and favourites (member
/// streams) into the activity's count.
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

/// What an event changes on the activity row besides its version and position.
#[derive(Default)]
struct Change {
    status: Option<&'static str>,
    seats_left: Option<u32>,
    details: Option<Value>,
    confirmed: i64,
    submitted: bool,
}

/// Updates the columns every event touches, plus the ones `change` gives.
async fn touch(tx: &mut Tx, t: &str, e: &RecordedEvent, id: Uuid, change: Change) -> Result<(), sqlx::Error> {
    let sql = format!(
        "UPDATE {t} SET status = COALESCE($2, status), seats_left = COALESCE($3, seats_left), \
         details = COALESCE($4, details), confirmed = confirmed + $8, \
         submitted_at = CASE WHEN $9 THEN $7 ELSE submitted_at END, \
         version = $5, position = $6, updated_at = $7 WHERE activity_id = $1 AND version < $5"
    );
    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
    .bind(id).bind(change.status).bind(change.seats_left.map(i64::from)).bind(change.details.map(Json))
    .bind(e.version).bind(e.position).bind(e.recorded_at).bind(change.confirmed).bind(change.submitted)
    .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// A booking row as an event describes it.
struct BookingRow<'a> {
    booking_id: Uuid,
    member_id: Uuid,
    seats: u32,
    children: Option<&'a [Uuid]>,
    status: BookingStatus,
    payment_ref: Option<String>,
    invitation_id: Option<Uuid>,
}

/// Writes a booking's new state; returns its status before (None: new booking).
async fn put_booking(
    tx: &mut Tx,
    t: &str,
    e: &RecordedEvent,
    activity: Uuid,
    b: BookingRow<'_>,
) -> Result<Option<String>, sqlx::Error> {
    let select = format!("SELECT status FROM {t} WHERE booking_id = $1");
    let before: Option<String> = on_tx!(tx, c =>
        sqlx::query_scalar(sqlx::AssertSqlSafe(select)).bind(b.booking_id).fetch_optional(&mut **c).await)?;
    let waitlist_seq = (b.status == BookingStatus::Waitlisted).then_some(e.version);
    let children = b.children.map(|c| Json(json!(c)));
    let sql = format!(
        "INSERT INTO {t} (booking_id, activity_id, member_id, seats, children, status, payment_ref, invitation_id, \
         waitlist_seq, created_at, updated_at, position) \
         VALUES ($1, $2, $3, $4, COALESCE($5, '[]'), $6, $7, $8, $9, $10, $10, $11) \
         ON CONFLICT (booking_id) DO UPDATE SET seats = excluded.seats, status = excluded.status, \
         children = COALESCE($5, {t}.children), payment_ref = COALESCE(excluded.payment_ref, {t}.payment_ref), \
         invitation_id = COALESCE(excluded.invitation_id, {t}.invitation_id), \
         waitlist_seq = COALESCE({t}.waitlist_seq, excluded.waitlist_seq), \
         updated_at = excluded.updated_at, position = excluded.position"
    );
    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(b.booking_id).bind(activity).bind(b.member_id).bind(i64::from(b.seats)).bind(children)
        .bind(b.status.as_str()).bind(b.payment_ref).bind(b.invitation_id).bind(waitlist_seq)
        .bind(e.recorded_at).bind(e.position)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(before)
}

/// Sets only the status of a booking; returns the status before.
async fn set_booking_status(
    tx: &mut Tx,
    t: &str,
    e: &RecordedEvent,
    booking_id: Uuid,
    status: BookingStatus,
) -> Result<Option<String>, sqlx::Error> {
    let select = format!("SELECT status FROM {t} WHERE booking_id = $1");
    let before: Option<String> = on_tx!(tx, c =>
        sqlx::query_scalar(sqlx::AssertSqlSafe(select)).bind(booking_id).fetch_optional(&mut **c).await)?;
    let sql = format!("UPDATE {t} SET status = $2, updated_at = $3, position = $4 WHERE booking_id = $1");
    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(booking_id).bind(status.as_str()).bind(e.recorded_at).bind(e.position)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(before)
}

const CONFIRMED: &str = "confirmed";

/// +1 when a booking becomes confirmed, −1 when a confirmed one stops being so.
fn confirmed_delta(before: Option<&str>, after: BookingStatus) -> i64 {
    match (before == Some(CONFIRMED), after == BookingStatus::Confirmed) {
        (false, true) => 1,
        (true, false) => -1,
        _ => 0,
    }
}

#[async_trait]
impl Projection for ActivitiesProjection {
    fn name(&self) -> &'static str {
        "activities"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["activities", "bookings"]
    }

    async fn apply(&self, tx: &mut Tx, at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let t = &at.table("activities");
        let bt = &at.table("bookings");
        if let Some((_, event)) = decode_of::<Member>(e)? {
            return favourites(tx, t, event).await;
        }
        let Some((id, event)) = decode_of::<Activity>(e)? else { return Ok(()) };
        use ActivityEvent as E;
        let change = match event {
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
                return Ok(());
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
                Change { seats_left: Some(seats_left), details: Some(view), ..Change::default() }
            }
            E::ActivitySubmitted {} => Change { status: Some("pending"), submitted: true, ..Change::default() },
            E::ActivityPublished { .. } => Change { status: Some("published"), ..Change::default() },
            E::ActivityRejected { .. } => Change { status: Some("rejected"), ..Change::default() },
            E::ActivityCompleted { .. } => Change { status: Some("completed"), ..Change::default() },
            E::ActivityCancelled { released, .. } => {
                let mut confirmed = 0;
                for r in &released {
                    let before = set_booking_status(tx, bt, e, r.booking_id, BookingStatus::Released).await?;
                    confirmed += confirmed_delta(before.as_deref(), BookingStatus::Released);
                }
                Change { status: Some("cancelled"), confirmed, ..Change::default() }
            }
            E::ActivityRescheduled { time, .. } => {
                let mut view = details(tx, t, id).await?.unwrap_or_default();
                view["starts_at"] = json!(time.starts_at());
                view["ends_at"] = json!(time.ends_at());
                let sql = format!("UPDATE {t} SET starts_at = $2 WHERE activity_id = $1");
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id).bind(time.starts_at()).execute(&mut **c).await.map(|r| r.rows_affected()))?;
                Change { details: Some(view), ..Change::default() }
            }
            E::MediaAttached { media_id, file } => {
                let mut view = details(tx, t, id).await?.unwrap_or_default();
                if let Some(list) = view.get_mut("media").and_then(|m| m.as_array_mut()) {
                    list.push(json!({
                        "id": media_id, "kind": file.kind().as_str(), "content_type": file.content_type(),
                        "bytes": file.bytes(), "url": format!("/v1/media/{media_id}"),
                    }));
                }
                Change { details: Some(view), ..Change::default() }
            }
            E::BookingReserved { booking_id, member_id, seats, children, seats_left, .. } => {
                let row = BookingRow {
                    booking_id,
                    member_id,
                    seats,
                    children: Some(&children),
                    status: BookingStatus::Reserved,
                    payment_ref: None,
                    invitation_id: None,
                };
                let before = put_booking(tx, bt, e, id, row).await?;
                let confirmed = confirmed_delta(before.as_deref(), BookingStatus::Reserved);
                Change { seats_left: Some(seats_left), confirmed, ..Change::default() }
            }
            E::BookingConfirmed { booking_id, member_id, seats, children, seats_left, payment_ref, invitation_id } => {
                let row = BookingRow {
                    booking_id,
                    member_id,
                    seats,
                    children: Some(&children),
                    status: BookingStatus::Confirmed,
                    payment_ref: payment_ref.map(|p| p.as_str().to_owned()),
                    invitation_id,
                };
                let before = put_booking(tx, bt, e, id, row).await?;
                let confirmed = confirmed_delta(before.as_deref(), BookingStatus::Confirmed);
                Change { seats_left: Some(seats_left), confirmed, ..Change::default() }
            }
            E::WaitlistJoined { booking_id, member_id, seats, children, .. } => {
                let row = BookingRow {
                    booking_id,
                    member_id,
                    seats,
                    children: Some(&children),
                    status: BookingStatus::Waitlisted,
                    payment_ref: None,
                    invitation_id: None,
                };
                put_booking(tx, bt, e, id, row).await?;
                Change::default()
            }
            // The confirmation (or reservation) that follows carries the new status.
            E::WaitlistPromoted { .. } => Change::default(),
            E::BookingCancelled { booking_id, seats_left, .. } => {
                let before = set_booking_status(tx, bt, e, booking_id, BookingStatus::Cancelled).await?;
                let confirmed = confirmed_delta(before.as_deref(), BookingStatus::Cancelled);
                Change { seats_left: Some(seats_left), confirmed, ..Change::default() }
            }
            E::ReservationExpired { booking_id, seats_left, .. } => {
                let before = set_booking_status(tx, bt, e, booking_id, BookingStatus::Expired).await?;
                let confirmed = confirmed_delta(before.as_deref(), BookingStatus::Expired);
                Change { seats_left: Some(seats_left), confirmed, ..Change::default() }
            }
            E::GuestsInvited { .. }
            | E::InvitationAccepted { .. }
            | E::InvitationDeclined { .. }
            | E::AttendeeListSent { .. } => Change::default(),
        };
        touch(tx, t, e, id, change).await?;
        Ok(())
    }
}

/// Favourites live in member streams; the count is kept on the activity row.
async fn favourites(tx: &mut Tx, t: &str, event: MemberEvent) -> Result<(), ProjectionError> {
    use MemberEvent as M;
    let (activity, delta) = match event {
        M::ActivityFavourited { activity_id } => (activity_id, 1i64),
        M::ActivityUnfavourited { activity_id } => (activity_id, -1),
        M::MemberRegistered { .. }
        | M::PasswordSet { .. }
        | M::ProfileUpdated { .. }
        | M::ChildAdded { .. }
        | M::ChildRemoved { .. }
        | M::OrganiserProfileCreated { .. }
        | M::MemberSuspended { .. }
        | M::MemberForgotten { .. }
        | M::RoleGranted { .. } => return Ok(()),
    };
    let sql = format!(
        "UPDATE {t} SET favourites = CASE WHEN favourites + $2 < 0 THEN 0 ELSE favourites + $2 END WHERE activity_id = $1"
    );
    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(activity).bind(delta).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}
