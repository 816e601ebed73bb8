//! The `activities` read model: one row per activity with its status, seats left,
//! favourites, confirmed bookings and the details as the API shows them; and the
//! `bookings` of each activity (bookings live in the activity's stream, so one
//! projection owns both tables and keeps the confirmed count exact).
//!
//! A batch is folded in memory: the rows its events touch are read once, every event
//! is applied to them in order, and each changed row is written once (a multi-row
//! upsert), so a rebuild costs a few statements per batch rather than per event.

use crate::events::decode_of;
use crate::runtime::{BatchError, Projection, ProjectionError, Target, Touched};
use crate::sql::{Arg, rows_by_id, upsert};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gather_domain::activity::{Activity, ActivityDetails, ActivityEvent, BookingStatus};
use gather_domain::member::{Member, MemberEvent};
use gather_store::RecordedEvent;
use gather_store::db::Tx;
use serde_json::{Value, json};
use sqlx::FromRow;
use sqlx::types::Json;
use std::collections::HashMap;
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
        "series_id": null,
        "index": null,
    })
}

/// Marks a details view as an occurrence of a series (`series_id`, `index`).
pub fn link_series(view: &mut Value, series: Option<gather_domain::activity::SeriesLink>) {
    if let Some(s) = series {
        view["series_id"] = json!(s.series_id);
        view["index"] = json!(s.index);
    }
}

#[derive(Debug, Clone, FromRow)]
struct ActivityRec {
    activity_id: Uuid,
    organiser_id: Uuid,
    status: String,
    visibility: String,
    title: String,
    starts_at: DateTime<Utc>,
    capacity: i64,
    seats_left: i64,
    favourites: i64,
    confirmed: i64,
    details: Json<Value>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    position: i64,
    submitted_at: Option<DateTime<Utc>>,
}

const ACTIVITY_COLUMNS: [&str; 16] = [
    "activity_id",
    "organiser_id",
    "status",
    "visibility",
    "title",
    "starts_at",
    "capacity",
    "seats_left",
    "favourites",
    "confirmed",
    "details",
    "version",
    "created_at",
    "updated_at",
    "position",
    "submitted_at",
];

impl ActivityRec {
    fn args(self) -> Vec<Arg> {
        vec![
            Arg::Uuid(Some(self.activity_id)),
            Arg::Uuid(Some(self.organiser_id)),
            Arg::Text(Some(self.status)),
            Arg::Text(Some(self.visibility)),
            Arg::Text(Some(self.title)),
            Arg::Time(Some(self.starts_at)),
            Arg::Int(Some(self.capacity)),
            Arg::Int(Some(self.seats_left)),
            Arg::Int(Some(self.favourites)),
            Arg::Int(Some(self.confirmed)),
            Arg::Json(Some(self.details.0)),
            Arg::Int(Some(self.version)),
            Arg::Time(Some(self.created_at)),
            Arg::Time(Some(self.updated_at)),
            Arg::Int(Some(self.position)),
            Arg::Time(self.submitted_at),
        ]
    }
}

#[derive(Debug, Clone, FromRow)]
struct BookingRec {
    booking_id: Uuid,
    activity_id: Uuid,
    member_id: Uuid,
    seats: i64,
    children: Json<Vec<Uuid>>,
    status: String,
    payment_ref: Option<String>,
    invitation_id: Option<Uuid>,
    waitlist_seq: Option<i64>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    position: i64,
}

const BOOKING_COLUMNS: [&str; 12] = [
    "booking_id",
    "activity_id",
    "member_id",
    "seats",
    "children",
    "status",
    "payment_ref",
    "invitation_id",
    "waitlist_seq",
    "created_at",
    "updated_at",
    "position",
];

impl BookingRec {
    fn args(self) -> Vec<Arg> {
        vec![
            Arg::Uuid(Some(self.booking_id)),
            Arg::Uuid(Some(self.activity_id)),
            Arg::Uuid(Some(self.member_id)),
            Arg::Int(Some(self.seats)),
            Arg::Json(Some(json!(self.children.0))),
            Arg::Text(Some(self.status)),
            Arg::Text(self.payment_ref),
            Arg::Uuid(self.invitation_id),
            Arg::Int(self.waitlist_seq),
            Arg::Time(Some(self.created_at)),
            Arg::Time(Some(self.updated_at)),
            Arg::Int(Some(self.position)),
        ]
    }
}

/// A batch's events, decoded, with what they concern.
enum Decoded {
    Activity(Uuid, Box<ActivityEvent>),
    Favourite(Uuid, i64),
    Other,
}

fn decode_batch(events: &[RecordedEvent]) -> Result<Vec<Decoded>, BatchError> {
    events
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let fail = |err| BatchError { index, error: ProjectionError::Store(err) };
            if let Some((_, m)) = decode_of::<Member>(e).map_err(fail)? {
                return Ok(favourite(m).map_or(Decoded::Other, |(a, d)| Decoded::Favourite(a, d)));
            }
            Ok(match decode_of::<Activity>(e).map_err(fail)? {
                Some((id, event)) => Decoded::Activity(id, Box::new(event)),
                None => Decoded::Other,
            })
        })
        .collect()
}

/// Favourites live in member streams; the count is kept on the activity row.
fn favourite(event: MemberEvent) -> Option<(Uuid, i64)> {
    use MemberEvent as M;
    match event {
        M::ActivityFavourited { activity_id } => Some((activity_id, 1)),
        M::ActivityUnfavourited { activity_id } => Some((activity_id, -1)),
        M::MemberRegistered { .. }
        | M::PasswordSet { .. }
        | M::ProfileUpdated { .. }
        | M::ChildAdded { .. }
        | M::ChildRemoved { .. }
        | M::OrganiserProfileCreated { .. }
        | M::MemberSuspended { .. }
        | M::MemberForgotten { .. }
        | M::RoleGranted { .. }
        | M::RoleRevoked { .. } => None,
    }
}

/// The booking ids an event concerns.
fn bookings_of(e: &ActivityEvent) -> Vec<Uuid> {
    use ActivityEvent as E;
    match e {
        E::BookingReserved { booking_id, .. }
        | E::BookingConfirmed { booking_id, .. }
        | E::WaitlistJoined { booking_id, .. }
        | E::BookingCancelled { booking_id, .. }
        | E::ReservationExpired { booking_id, .. } => vec![*booking_id],
        E::ActivityCancelled { released, .. } => released.iter().map(|r| r.booking_id).collect(),
        _ => vec![],
    }
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

/// The rows a batch works on.
#[derive(Default)]
struct Fold {
    activities: HashMap<Uuid, ActivityRec>,
    bookings: HashMap<Uuid, BookingRec>,
    dirty_activities: Touched,
    dirty_bookings: Touched,
}

impl Fold {
    fn touch_activity(&mut self, id: Uuid) {
        self.dirty_activities.mark(id);
    }

    /// A booking's new status (and fields); returns its status before.
    fn put_booking(&mut self, e: &RecordedEvent, activity: Uuid, b: BookingRow<'_>) -> Option<String> {
        let before = self.bookings.get(&b.booking_id).map(|r| r.status.clone());
        let rec = self.bookings.entry(b.booking_id).or_insert_with(|| BookingRec {
            booking_id: b.booking_id,
            activity_id: activity,
            member_id: b.member_id,
            seats: i64::from(b.seats),
            children: Json(b.children.map(<[Uuid]>::to_vec).unwrap_or_default()),
            status: b.status.as_str().to_owned(),
            payment_ref: None,
            invitation_id: None,
            waitlist_seq: None,
            created_at: e.recorded_at,
            updated_at: e.recorded_at,
            position: e.position,
        });
        rec.seats = i64::from(b.seats);
        rec.status = b.status.as_str().to_owned();
        if let Some(c) = b.children {
            rec.children = Json(c.to_vec());
        }
        if b.payment_ref.is_some() {
            rec.payment_ref = b.payment_ref;
        }
        if b.invitation_id.is_some() {
            rec.invitation_id = b.invitation_id;
        }
        if rec.waitlist_seq.is_none() && b.status == BookingStatus::Waitlisted {
            rec.waitlist_seq = Some(e.version);
        }
        rec.updated_at = e.recorded_at;
        rec.position = e.position;
        self.dirty_bookings.mark(b.booking_id);
        before
    }

    /// Sets only a booking's status (if the booking is known); returns the status before.
    fn set_booking_status(&mut self, e: &RecordedEvent, booking: Uuid, status: BookingStatus) -> Option<String> {
        let rec = self.bookings.get_mut(&booking)?;
        let before = std::mem::replace(&mut rec.status, status.as_str().to_owned());
        rec.updated_at = e.recorded_at;
        rec.position = e.position;
        self.dirty_bookings.mark(booking);
        Some(before)
    }

    /// Applies one activity event to the rows in memory.
    fn apply(&mut self, e: &RecordedEvent, id: Uuid, event: ActivityEvent) {
        use ActivityEvent as E;
        if let E::ActivityDrafted { organiser_id, details, series, .. } = &event {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.activities.entry(id) {
                let cap = i64::from(details.capacity.get());
                slot.insert(ActivityRec {
                    activity_id: id,
                    organiser_id: *organiser_id,
                    status: "draft".into(),
                    visibility: details.visibility.as_str().into(),
                    title: details.title.as_str().into(),
                    starts_at: details.time.starts_at(),
                    capacity: cap,
                    seats_left: cap,
                    favourites: 0,
                    confirmed: 0,
                    details: Json({
                        let mut view = details_view(id, *organiser_id, details);
                        link_series(&mut view, *series);
                        view
                    }),
                    version: e.version,
                    created_at: e.recorded_at,
                    updated_at: e.recorded_at,
                    position: e.position,
                    submitted_at: None,
                });
                self.touch_activity(id);
            }
            return;
        }
        // Events of an activity this read model never saw drafted, or saw already.
        match self.activities.get(&id) {
            Some(a) if a.version < e.version => {}
            _ => return,
        }
        let mut confirmed = 0;
        let mut seats_left = None;
        let mut status = None;
        match event {
            E::ActivityDrafted { .. } => {}
            E::ActivityDetailsUpdated { details: d, seats_left: left, .. } => {
                if let Some(a) = self.activities.get_mut(&id) {
                    let mut view = details_view(id, a.organiser_id, &d);
                    for kept in ["media", "series_id", "index"] {
                        if let Some(v) = a.details.0.get(kept) {
                            view[kept] = v.clone();
                        }
                    }
                    a.details = Json(view);
                    a.title = d.title.as_str().into();
                    a.starts_at = d.time.starts_at();
                    a.capacity = i64::from(d.capacity.get());
                    a.visibility = d.visibility.as_str().into();
                }
                seats_left = Some(left);
            }
            E::ActivitySubmitted {} => {
                status = Some("pending");
                if let Some(a) = self.activities.get_mut(&id) {
                    a.submitted_at = Some(e.recorded_at);
                }
            }
            E::ActivityPublished { .. } => status = Some("published"),
            E::ActivityRejected { .. } => status = Some("rejected"),
            E::ActivityCompleted { .. } => status = Some("completed"),
            E::ActivityCancelled { released, .. } => {
                for r in &released {
                    let before = self.set_booking_status(e, r.booking_id, BookingStatus::Released);
                    confirmed += confirmed_delta(before.as_deref(), BookingStatus::Released);
                }
                status = Some("cancelled");
            }
            E::ActivityRescheduled { time, .. } => {
                if let Some(a) = self.activities.get_mut(&id) {
                    a.details.0["starts_at"] = json!(time.starts_at());
                    a.details.0["ends_at"] = json!(time.ends_at());
                    a.starts_at = time.starts_at();
                }
            }
            E::MediaAttached { media_id, file } => {
                if let Some(list) = self
                    .activities
                    .get_mut(&id)
                    .and_then(|a| a.details.0.get_mut("media"))
                    .and_then(|m| m.as_array_mut())
                {
                    list.push(json!({
                        "id": media_id, "kind": file.kind().as_str(), "content_type": file.content_type(),
                        "bytes": file.bytes(), "url": format!("/v1/media/{media_id}"),
                    }));
                }
            }
            E::BookingReserved { booking_id, member_id, seats, children, seats_left: left, .. } => {
                let row = BookingRow {
                    booking_id,
                    member_id,
                    seats,
                    children: Some(&children),
                    status: BookingStatus::Reserved,
                    payment_ref: None,
                    invitation_id: None,
                };
                let before = self.put_booking(e, id, row);
                confirmed += confirmed_delta(before.as_deref(), BookingStatus::Reserved);
                seats_left = Some(left);
            }
            E::BookingConfirmed {
                booking_id,
                member_id,
                seats,
                children,
                seats_left: left,
                payment_ref,
                invitation_id,
            } => {
                let row = BookingRow {
                    booking_id,
                    member_id,
                    seats,
                    children: Some(&children),
                    status: BookingStatus::Confirmed,
                    payment_ref: payment_ref.map(|p| p.as_str().to_owned()),
                    invitation_id,
                };
                let before = self.put_booking(e, id, row);
                confirmed += confirmed_delta(before.as_deref(), BookingStatus::Confirmed);
                seats_left = Some(left);
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
                self.put_booking(e, id, row);
            }
            // The confirmation (or reservation) that follows carries the new status.
            E::WaitlistPromoted { .. } => {}
            E::BookingCancelled { booking_id, seats_left: left, .. } => {
                let before = self.set_booking_status(e, booking_id, BookingStatus::Cancelled);
                confirmed += confirmed_delta(before.as_deref(), BookingStatus::Cancelled);
                seats_left = Some(left);
            }
            E::ReservationExpired { booking_id, seats_left: left, .. } => {
                let before = self.set_booking_status(e, booking_id, BookingStatus::Expired);
                confirmed += confirmed_delta(before.as_deref(), BookingStatus::Expired);
                seats_left = Some(left);
            }
            E::GuestsInvited { .. }
            | E::InvitationAccepted { .. }
            | E::InvitationDeclined { .. }
            | E::AttendeeListSent { .. } => {}
        }
        if let Some(a) = self.activities.get_mut(&id) {
            if let Some(st) = status {
                a.status = st.into();
            }
            if let Some(left) = seats_left {
                a.seats_left = i64::from(left);
            }
            a.confirmed += confirmed;
            a.version = e.version;
            a.position = e.position;
            a.updated_at = e.recorded_at;
        }
        self.touch_activity(id);
    }
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

#[async_trait]
impl Projection for ActivitiesProjection {
    fn name(&self) -> &'static str {
        "activities"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["activities", "bookings"]
    }

    async fn apply(&self, tx: &mut Tx, at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        self.apply_all(tx, at, std::slice::from_ref(e)).await.map_err(|b| b.error)
    }

    async fn apply_all(&self, tx: &mut Tx, at: Target, events: &[RecordedEvent]) -> Result<(), BatchError> {
        let decoded = decode_batch(events)?;
        let (t, bt) = (at.table("activities"), at.table("bookings"));
        let mut activity_ids: Vec<Uuid> = Vec::new();
        let mut booking_ids: Vec<Uuid> = Vec::new();
        for d in &decoded {
            match d {
                Decoded::Activity(id, e) => {
                    activity_ids.push(*id);
                    booking_ids.extend(bookings_of(e));
                }
                Decoded::Favourite(id, _) => activity_ids.push(*id),
                Decoded::Other => {}
            }
        }
        if activity_ids.is_empty() {
            return Ok(());
        }
        activity_ids.sort_unstable();
        activity_ids.dedup();
        booking_ids.sort_unstable();
        booking_ids.dedup();
        let mut fold = Fold::default();
        let select = format!("SELECT {} FROM {t}", ACTIVITY_COLUMNS.join(", "));
        for a in rows_by_id::<ActivityRec>(tx, &select, "activity_id", &activity_ids).await? {
            fold.activities.insert(a.activity_id, a);
        }
        let select = format!("SELECT {} FROM {bt}", BOOKING_COLUMNS.join(", "));
        for b in rows_by_id::<BookingRec>(tx, &select, "booking_id", &booking_ids).await? {
            fold.bookings.insert(b.booking_id, b);
        }
        for (e, d) in events.iter().zip(decoded) {
            match d {
                Decoded::Activity(id, event) => fold.apply(e, id, *event),
                Decoded::Favourite(id, delta) => {
                    if let Some(a) = fold.activities.get_mut(&id) {
                        a.favourites = (a.favourites + delta).max(0);
                        fold.touch_activity(id);
                    }
                }
                Decoded::Other => {}
            }
        }
        let rows: Vec<Vec<Arg>> =
            fold.dirty_activities.iter().filter_map(|id| fold.activities.remove(id)).map(ActivityRec::args).collect();
        upsert(tx, &t, &["activity_id"], &ACTIVITY_COLUMNS, rows).await?;
        let rows: Vec<Vec<Arg>> =
            fold.dirty_bookings.iter().filter_map(|id| fold.bookings.remove(id)).map(BookingRec::args).collect();
        upsert(tx, &bt, &["booking_id"], &BOOKING_COLUMNS, rows).await?;
        Ok(())
    }
}
