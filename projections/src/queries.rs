//! Typed reads of the read models, shared by both backends.

use crate::sql::{Arg, Args, fetch_all, fetch_optional};
use gather_store::Db;
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
    let sql = "SELECT member_id, email, display_name, roles, organiser, children, suspended FROM members WHERE member_id = $1";
    fetch_optional(db, sql.into(), Args(vec![Arg::Uuid(Some(id))])).await
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
    /// Confirmed bookings (popularity = confirmed + favourites).
    pub confirmed: i64,
    /// The full details as the API shows them.
    pub details: Json<Value>,
    /// The stream version this row reflects.
    pub version: i64,
}

/// One activity.
pub async fn activity(db: &Db, id: Uuid) -> Result<Option<ActivityRow>, sqlx::Error> {
    let sql = "SELECT activity_id, organiser_id, status, visibility, seats_left, favourites, confirmed, details, version \
               FROM activities WHERE activity_id = $1";
    fetch_optional(db, sql.into(), Args(vec![Arg::Uuid(Some(id))])).await
}

/// The activity an invitation belongs to.
pub async fn invitation_activity(db: &Db, invitation_id: Uuid) -> Result<Option<Uuid>, sqlx::Error> {
    let sql = "SELECT activity_id FROM invitations WHERE invitation_id = $1";
    let row: Option<(Uuid,)> = fetch_optional(db, sql.into(), Args(vec![Arg::Uuid(Some(invitation_id))])).await?;
    Ok(row.map(|(id,)| id))
}

/// Where a keyset page ended: the sort key and id of its last item (opaque to clients:
/// hex-encoded JSON).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Cursor {
    /// The sort key of the last item.
    pub key: Value,
    /// Its id.
    pub id: Uuid,
}

/// Encodes any cursor as an opaque token.
pub fn encode_cursor<T: serde::Serialize>(c: &T) -> String {
    hex::encode(serde_json::to_vec(c).unwrap_or_default())
}

/// Decodes a token made by [`encode_cursor`]; None if it is not one.
pub fn decode_cursor<T: serde::de::DeserializeOwned>(token: &str) -> Option<T> {
    if token.len() > 2048 {
        return None;
    }
    let bytes = hex::decode(token).ok()?;
    serde_json::from_slice(&bytes).ok()
}

/// One page of a list.
#[derive(Debug, Clone)]
pub struct Page {
    /// The items, as the API shows them.
    pub items: Vec<Value>,
    /// Where the next page starts, if there is one.
    pub next: Option<Cursor>,
}

/// Keeps `limit` of `rows` (fetched with `limit + 1`) and the cursor after the last.
fn page<R>(mut rows: Vec<R>, limit: i64, cursor: impl Fn(&R) -> Cursor, item: impl Fn(R) -> Value) -> Page {
    let more = rows.len() as i64 > limit;
    rows.truncate(limit.max(0) as usize);
    let next = if more { rows.last().map(&cursor) } else { None };
    Page { items: rows.into_iter().map(item).collect(), next }
}

/// The summary of an activity that lists show.
pub fn summary(details: &Value, status: &str, seats_left: i64) -> Value {
    let mut s = serde_json::json!({ "status": status, "seats_left": seats_left });
    for k in ["id", "title", "category", "starts_at", "ends_at", "price", "location", "visibility", "organiser_id"] {
        s[k] = details.get(k).cloned().unwrap_or(Value::Null);
    }
    s
}

fn key_time(c: &Option<Cursor>) -> Option<chrono::DateTime<chrono::Utc>> {
    c.as_ref().and_then(|c| c.key.as_str()).and_then(|s| s.parse().ok())
}

fn key_int(c: &Option<Cursor>) -> Option<i64> {
    c.as_ref().and_then(|c| c.key.as_i64())
}

#[derive(FromRow)]
struct ListedActivity {
    activity_id: Uuid,
    status: String,
    seats_left: i64,
    favourites: i64,
    confirmed: i64,
    details: Json<Value>,
    version: i64,
    created_at: chrono::DateTime<chrono::Utc>,
    submitted_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn listed_activity(a: ListedActivity) -> Value {
    let mut v = summary(&a.details.0, &a.status, a.seats_left);
    v["favourites"] = serde_json::json!(a.favourites);
    v["popularity"] = serde_json::json!(a.favourites + a.confirmed);
    v["version"] = serde_json::json!(a.version);
    v["created_at"] = serde_json::json!(a.created_at);
    v["submitted_at"] = serde_json::json!(a.submitted_at);
    v
}

const LISTED_COLUMNS: &str =
    "activity_id, status, seats_left, favourites, confirmed, details, version, created_at, submitted_at";

/// An organiser's activities (of one status, if given), newest first.
pub async fn organiser_activities(
    db: &Db,
    organiser: Uuid,
    status: Option<&str>,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page, sqlx::Error> {
    let mut a = Args::default();
    let mut sql =
        format!("SELECT {LISTED_COLUMNS} FROM activities WHERE organiser_id = {}", a.push(Arg::Uuid(Some(organiser))));
    if let Some(s) = status {
        sql += &format!(" AND status = {}", a.push(Arg::Text(Some(s.to_owned()))));
    }
    if let Some(c) = &after {
        let (k, id) = (a.push(Arg::Time(key_time(&after))), a.push(Arg::Uuid(Some(c.id))));
        sql += &format!(" AND (created_at, activity_id) < ({k}, {id})");
    }
    sql += &format!(" ORDER BY created_at DESC, activity_id DESC LIMIT {}", a.push(Arg::Int(Some(limit + 1))));
    let rows: Vec<ListedActivity> = fetch_all(db, sql, a).await?;
    Ok(page(rows, limit, |r| Cursor { key: serde_json::json!(r.created_at), id: r.activity_id }, listed_activity))
}

/// Pending activities, oldest submission first.
pub async fn moderation_queue(db: &Db, after: Option<Cursor>, limit: i64) -> Result<Page, sqlx::Error> {
    let mut a = Args::default();
    let mut sql = format!("SELECT {LISTED_COLUMNS} FROM activities WHERE status = 'pending'");
    if let Some(c) = &after {
        let (k, id) = (a.push(Arg::Time(key_time(&after))), a.push(Arg::Uuid(Some(c.id))));
        sql += &format!(" AND (submitted_at, activity_id) > ({k}, {id})");
    }
    sql += &format!(" ORDER BY submitted_at ASC, activity_id ASC LIMIT {}", a.push(Arg::Int(Some(limit + 1))));
    let rows: Vec<ListedActivity> = fetch_all(db, sql, a).await?;
    Ok(page(rows, limit, |r| Cursor { key: serde_json::json!(r.submitted_at), id: r.activity_id }, listed_activity))
}

/// A booking as the `bookings` read model holds it.
#[derive(Debug, Clone, FromRow)]
pub struct BookingRow {
    /// The booking.
    pub booking_id: Uuid,
    /// Its activity.
    pub activity_id: Uuid,
    /// Its member.
    pub member_id: Uuid,
    /// Seats.
    pub seats: i64,
    /// Children attending (ids).
    pub children: Json<Vec<Uuid>>,
    /// `confirmed`, `waitlisted`, `reserved`, `cancelled`, `expired`, `released`.
    pub status: String,
    /// The payment reference, for paid activities.
    pub payment_ref: Option<String>,
    /// The invitation it came from.
    pub invitation_id: Option<Uuid>,
    /// When it was made.
    pub created_at: chrono::DateTime<chrono::Utc>,
    /// When it last changed.
    pub updated_at: chrono::DateTime<chrono::Utc>,
}

impl BookingRow {
    /// The API's view.
    pub fn view(&self) -> Value {
        let mut attendees = vec![serde_json::json!("self")];
        attendees.extend(self.children.0.iter().map(|c| serde_json::json!(c)));
        if self.children.0.len() as i64 >= self.seats {
            attendees.remove(0);
        }
        serde_json::json!({
            "id": self.booking_id, "activity_id": self.activity_id, "member_id": self.member_id,
            "seats": self.seats, "attendees": attendees, "children": self.children.0, "status": self.status,
            "payment_ref": self.payment_ref, "invitation_id": self.invitation_id,
            "created_at": self.created_at, "updated_at": self.updated_at,
        })
    }
}

const BOOKING_COLUMNS: &str = "b.booking_id, b.activity_id, b.member_id, b.seats, b.children, b.status, b.payment_ref, b.invitation_id, b.created_at, b.updated_at";

/// One booking of an activity.
pub async fn booking(db: &Db, activity: Uuid, booking: Uuid) -> Result<Option<BookingRow>, sqlx::Error> {
    let a = Args(vec![Arg::Uuid(Some(booking)), Arg::Uuid(Some(activity))]);
    fetch_optional(
        db,
        format!("SELECT {BOOKING_COLUMNS} FROM bookings b WHERE b.booking_id = $1 AND b.activity_id = $2"),
        a,
    )
    .await
}

#[derive(FromRow)]
struct MemberBooking {
    #[sqlx(flatten)]
    b: BookingRow,
    starts_at: chrono::DateTime<chrono::Utc>,
    activity_status: String,
    seats_left: i64,
    details: Json<Value>,
}

/// A member's bookings of activities that start after `now` (upcoming, soonest first)
/// or did not (past, latest first), with each activity's summary.
pub async fn member_bookings(
    db: &Db,
    member: Uuid,
    upcoming: bool,
    now: chrono::DateTime<chrono::Utc>,
    after: Option<Cursor>,
    limit: i64,
) -> Result<Page, sqlx::Error> {
    let mut a = Args::default();
    let (when, cmp, dir) = if upcoming { (">", ">", "ASC") } else { ("<=", "<", "DESC") };
    let mut sql = format!(
        "SELECT {BOOKING_COLUMNS}, a.starts_at, a.status AS activity_status, a.seats_left, a.details \
         FROM bookings b JOIN activities a ON a.activity_id = b.activity_id \
         WHERE b.member_id = {} AND a.starts_at {when} {}",
        a.push(Arg::Uuid(Some(member))),
        a.push(Arg::Time(Some(now)))
    );
    if let Some(c) = &after {
        let (k, id) = (a.push(Arg::Time(key_time(&after))), a.push(Arg::Uuid(Some(c.id))));
        sql += &format!(" AND (a.starts_at, b.booking_id) {cmp} ({k}, {id})");
    }
    sql += &format!(" ORDER BY a.starts_at {dir}, b.booking_id {dir} LIMIT {}", a.push(Arg::Int(Some(limit + 1))));
    let rows: Vec<MemberBooking> = fetch_all(db, sql, a).await?;
    Ok(page(
        rows,
        limit,
        |r| Cursor { key: serde_json::json!(r.starts_at), id: r.b.booking_id },
        |r| {
            let mut v = r.b.view();
            v["activity"] = summary(&r.details.0, &r.activity_status, r.seats_left);
            v
        },
    ))
}

#[derive(FromRow)]
struct Favourite {
    activity_id: Uuid,
    seq: i64,
    favourited_at: chrono::DateTime<chrono::Utc>,
    status: String,
    seats_left: i64,
    details: Json<Value>,
}

/// A member's favourite activities, newest first.
pub async fn member_favourites(db: &Db, member: Uuid, after: Option<Cursor>, limit: i64) -> Result<Page, sqlx::Error> {
    let mut a = Args::default();
    let mut sql = format!(
        "SELECT f.activity_id, f.seq, f.favourited_at, a.status, a.seats_left, a.details \
         FROM favourites f JOIN activities a ON a.activity_id = f.activity_id WHERE f.member_id = {}",
        a.push(Arg::Uuid(Some(member)))
    );
    if let Some(c) = &after {
        let (k, id) = (a.push(Arg::Int(key_int(&after))), a.push(Arg::Uuid(Some(c.id))));
        sql += &format!(" AND (f.seq, f.activity_id) < ({k}, {id})");
    }
    sql += &format!(" ORDER BY f.seq DESC, f.activity_id DESC LIMIT {}", a.push(Arg::Int(Some(limit + 1))));
    let rows: Vec<Favourite> = fetch_all(db, sql, a).await?;
    Ok(page(
        rows,
        limit,
        |r| Cursor { key: serde_json::json!(r.seq), id: r.activity_id },
        |r| {
            let mut v = summary(&r.details.0, &r.status, r.seats_left);
            v["favourited_at"] = serde_json::json!(r.favourited_at);
            v
        },
    ))
}

#[derive(FromRow)]
struct InvitationRow {
    invitation_id: Uuid,
    activity_id: Uuid,
    status: String,
    position: i64,
    invited_at: Option<chrono::DateTime<chrono::Utc>>,
    activity_status: String,
    seats_left: i64,
    details: Json<Value>,
}

/// Invitations addressed to `email` (normalized), newest first, with activity summaries.
pub async fn invitations_to(db: &Db, email: &str, after: Option<Cursor>, limit: i64) -> Result<Page, sqlx::Error> {
    let mut a = Args::default();
    let mut sql = format!(
        "SELECT i.invitation_id, i.activity_id, i.status, i.position, i.invited_at, a.status AS activity_status, \
         a.seats_left, a.details FROM invitations i JOIN activities a ON a.activity_id = i.activity_id \
         WHERE i.email = {}",
        a.push(Arg::Text(Some(email.to_owned())))
    );
    if let Some(c) = &after {
        let (k, id) = (a.push(Arg::Int(key_int(&after))), a.push(Arg::Uuid(Some(c.id))));
        sql += &format!(" AND (i.position, i.invitation_id) < ({k}, {id})");
    }
    sql += &format!(" ORDER BY i.position DESC, i.invitation_id DESC LIMIT {}", a.push(Arg::Int(Some(limit + 1))));
    let rows: Vec<InvitationRow> = fetch_all(db, sql, a).await?;
    Ok(page(
        rows,
        limit,
        |r| Cursor { key: serde_json::json!(r.position), id: r.invitation_id },
        |r| {
            serde_json::json!({
                "id": r.invitation_id, "activity_id": r.activity_id, "status": r.status,
                "invited_at": r.invited_at,
                "activity": summary(&r.details.0, &r.activity_status, r.seats_left),
            })
        },
    ))
}

/// An uploaded media item as the `media` projection has it.
#[derive(Debug, Clone, FromRow)]
pub struct MediaRow {
    /// The media id.
    pub media_id: Uuid,
    /// Its activity.
    pub activity_id: Uuid,
    /// `photo` or `video`.
    pub kind: String,
    /// Its content type.
    pub content_type: String,
    /// Its size.
    pub bytes: i64,
    /// The global position of its `MediaAttached`.
    pub position: i64,
}

/// The media item `id`, once attached.
pub async fn media(db: &Db, id: Uuid) -> Result<Option<MediaRow>, sqlx::Error> {
    let a = Args(vec![Arg::Uuid(Some(id))]);
    fetch_optional(
        db,
        "SELECT media_id, activity_id, kind, content_type, bytes, position FROM media WHERE media_id = $1".into(),
        a,
    )
    .await
}

/// Whether an invitation to `activity` is addressed to `email` (normalized).
pub async fn is_invited(db: &Db, activity: Uuid, email: &str) -> Result<bool, sqlx::Error> {
    let a = Args(vec![Arg::Uuid(Some(activity)), Arg::Text(Some(email.to_owned()))]);
    let row: Option<(i64,)> =
        fetch_optional(db, "SELECT count(*) FROM invitations WHERE activity_id = $1 AND email = $2".into(), a).await?;
    Ok(row.is_some_and(|(n,)| n > 0))
}

#[derive(FromRow)]
struct Attendee {
    booking_id: Uuid,
    member_id: Uuid,
    seats: i64,
    children: Json<Vec<Uuid>>,
    display_name: Option<String>,
    member_children: Option<Json<Value>>,
}

fn attendee(r: Attendee) -> Value {
    let names: Vec<Value> = r
        .children
        .0
        .iter()
        .map(|id| {
            let name = r
                .member_children
                .as_ref()
                .and_then(|c| c.0.as_array())
                .and_then(|l| l.iter().find(|c| c["id"] == serde_json::json!(id)))
                .and_then(|c| c.get("name").cloned())
                .unwrap_or(Value::Null);
            serde_json::json!({"id": id, "name": name})
        })
        .collect();
    serde_json::json!({
        "booking_id": r.booking_id, "member_id": r.member_id,
        "name": r.display_name.unwrap_or_default(), "seats": r.seats, "children": names,
    })
}

/// An activity's confirmed attendees (in booking order) and its waitlist (in order).
pub async fn attendees(db: &Db, activity: Uuid) -> Result<(Vec<Value>, Vec<Value>), sqlx::Error> {
    let select = "SELECT b.booking_id, b.member_id, b.seats, b.children, m.display_name, m.children AS member_children \
                  FROM bookings b LEFT JOIN members m ON m.member_id = b.member_id WHERE b.activity_id = $1";
    let confirmed: Vec<Attendee> = fetch_all(
        db,
        format!("{select} AND b.status = 'confirmed' ORDER BY b.created_at, b.booking_id"),
        Args(vec![Arg::Uuid(Some(activity))]),
    )
    .await?;
    let waiting: Vec<Attendee> = fetch_all(
        db,
        format!("{select} AND b.status = 'waitlisted' ORDER BY b.waitlist_seq, b.booking_id"),
        Args(vec![Arg::Uuid(Some(activity))]),
    )
    .await?;
    Ok((confirmed.into_iter().map(attendee).collect(), waiting.into_iter().map(attendee).collect()))
}

/// A chat as the `chats` read model holds it.
#[derive(Debug, Clone, FromRow)]
pub struct ChatRow {
    /// The chat.
    pub chat_id: Uuid,
    /// `group` or `activity`.
    pub kind: String,
    /// Its title.
    pub title: Option<String>,
    /// When the last thing happened in it.
    pub last_activity_at: chrono::DateTime<chrono::Utc>,
}

#[derive(FromRow)]
struct MessageRow {
    message_id: Uuid,
    seq: i64,
    sender_id: Uuid,
    text: String,
    as_organiser: bool,
    posted_at: chrono::DateTime<chrono::Utc>,
    edited_at: Option<chrono::DateTime<chrono::Utc>>,
    deleted_at: Option<chrono::DateTime<chrono::Utc>>,
}

fn message(m: MessageRow) -> Value {
    let deleted = m.deleted_at.is_some();
    serde_json::json!({
        "id": m.message_id, "sender_id": m.sender_id,
        "text": if deleted { Value::Null } else { Value::String(m.text) },
        "as_organiser": m.as_organiser, "created_at": m.posted_at, "updated_at": m.edited_at.or(m.deleted_at),
        "edited": m.edited_at.is_some(), "deleted": deleted,
    })
}

const MESSAGE_COLUMNS: &str = "message_id, seq, sender_id, text, as_organiser, posted_at, edited_at, deleted_at";

/// Whether `member` is in chat `chat`.
pub async fn is_chat_member(db: &Db, chat: Uuid, member: Uuid) -> Result<bool, sqlx::Error> {
    let a = Args(vec![Arg::Uuid(Some(chat)), Arg::Uuid(Some(member))]);
    let row: Option<(i64,)> =
        fetch_optional(db, "SELECT count(*) FROM chat_members WHERE chat_id = $1 AND member_id = $2".into(), a).await?;
    Ok(row.is_some_and(|(n,)| n > 0))
}

async fn last_message(db: &Db, chat: Uuid) -> Result<Value, sqlx::Error> {
    let sql = format!("SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE chat_id = $1 ORDER BY seq DESC LIMIT 1");
    let m: Option<MessageRow> = fetch_optional(db, sql, Args(vec![Arg::Uuid(Some(chat))])).await?;
    Ok(m.map(message).unwrap_or(Value::Null))
}

/// One chat with its members (and their names) and last message.
pub async fn chat(db: &Db, chat: Uuid) -> Result<Option<Value>, sqlx::Error> {
    let row: Option<ChatRow> = fetch_optional(
        db,
        "SELECT chat_id, kind, title, last_activity_at FROM chats WHERE chat_id = $1".into(),
        Args(vec![Arg::Uuid(Some(chat))]),
    )
    .await?;
    let Some(c) = row else { return Ok(None) };
    let members: Vec<(Uuid, Option<String>)> = fetch_all(
        db,
        "SELECT cm.member_id, m.display_name FROM chat_members cm LEFT JOIN members m ON m.member_id = cm.member_id \
         WHERE cm.chat_id = $1 ORDER BY cm.joined_at, cm.member_id"
            .into(),
        Args(vec![Arg::Uuid(Some(chat))]),
    )
    .await?;
    let members: Vec<Value> = members
        .into_iter()
        .map(|(id, name)| serde_json::json!({"member_id": id, "display_name": name.unwrap_or_default()}))
        .collect();
    Ok(Some(serde_json::json!({
        "id": c.chat_id, "title": c.title, "kind": c.kind, "members": members,
        "last_message": last_message(db, chat).await?, "last_activity_at": c.last_activity_at,
    })))
}

/// A member's chats, most recently active first, each with its last message.
pub async fn member_chats(db: &Db, member: Uuid, after: Option<Cursor>, limit: i64) -> Result<Page, sqlx::Error> {
    let mut a = Args::default();
    let mut sql = format!(
        "SELECT c.chat_id, c.kind, c.title, c.last_activity_at FROM chat_members cm \
         JOIN chats c ON c.chat_id = cm.chat_id WHERE cm.member_id = {}",
        a.push(Arg::Uuid(Some(member)))
    );
    if let Some(c) = &after {
        let (k, id) = (a.push(Arg::Time(key_time(&after))), a.push(Arg::Uuid(Some(c.id))));
        sql += &format!(" AND (c.last_activity_at, c.chat_id) < ({k}, {id})");
    }
    sql += &format!(" ORDER BY c.last_activity_at DESC, c.chat_id DESC LIMIT {}", a.push(Arg::Int(Some(limit + 1))));
    let rows: Vec<ChatRow> = fetch_all(db, sql, a).await?;
    let mut p = page(
        rows,
        limit,
        |r| Cursor { key: serde_json::json!(r.last_activity_at), id: r.chat_id },
        |r| serde_json::json!({"id": r.chat_id, "kind": r.kind, "title": r.title, "last_activity_at": r.last_activity_at}),
    );
    for item in &mut p.items {
        if let Some(id) = item["id"].as_str().and_then(|s| Uuid::parse_str(s).ok()) {
            item["last_message"] = last_message(db, id).await?;
        }
    }
    Ok(p)
}

/// A chat's messages, newest first.
pub async fn chat_messages(db: &Db, chat: Uuid, after: Option<Cursor>, limit: i64) -> Result<Page, sqlx::Error> {
    let mut a = Args::default();
    let mut sql =
        format!("SELECT {MESSAGE_COLUMNS} FROM chat_messages WHERE chat_id = {}", a.push(Arg::Uuid(Some(chat))));
    if after.is_some() {
        sql += &format!(" AND seq < {}", a.push(Arg::Int(key_int(&after))));
    }
    sql += &format!(" ORDER BY seq DESC LIMIT {}", a.push(Arg::Int(Some(limit + 1))));
    let rows: Vec<MessageRow> = fetch_all(db, sql, a).await?;
    Ok(page(rows, limit, |r| Cursor { key: serde_json::json!(r.seq), id: r.message_id }, message))
}

/// A series as the `series` read model holds it.
#[derive(Debug, Clone, FromRow)]
pub struct SeriesRow {
    /// The series.
    pub series_id: Uuid,
    /// Its organiser.
    pub organiser_id: Uuid,
    /// `draft`, `pending`, `published`, `rejected`, `ended`.
    pub status: String,
    /// `public` or `invite_only`.
    pub visibility: String,
    /// Whether it was ever published (approved or published directly).
    pub was_published: bool,
    /// The template as the API shows it.
    pub template: Json<Value>,
    /// The domain's schedule (rule, time zone, local start, duration, anchor).
    pub schedule: Json<Value>,
    /// The end date, once ended.
    pub ended_after: Option<String>,
    /// The last rejection's reason.
    pub rejection_reason: Option<String>,
    /// The stream version this row reflects.
    pub version: i64,
}

/// One materialized occurrence with its activity as the `activities` read model shows
/// it now (an occurrence with bookings keeps its own time after a series update).
#[derive(Debug, Clone, FromRow)]
pub struct OccurrenceRow {
    /// The occurrence's index.
    pub idx: i64,
    /// Its activity.
    pub activity_id: Uuid,
    /// Its time as the series set it.
    pub starts_at: chrono::DateTime<chrono::Utc>,
    /// Its end as the series set it.
    pub ends_at: chrono::DateTime<chrono::Utc>,
    /// The activity's status, once the activity exists.
    pub activity_status: Option<String>,
    /// The activity's details, once it exists.
    pub activity_details: Option<Json<Value>>,
}

/// One series, its materialized occurrences (by index) and its skipped indexes.
pub async fn series(db: &Db, id: Uuid) -> Result<Option<(SeriesRow, Vec<OccurrenceRow>, Vec<i64>)>, sqlx::Error> {
    let sql = "SELECT series_id, organiser_id, status, visibility, was_published, template, schedule, ended_after, \
               rejection_reason, version FROM series WHERE series_id = $1";
    let Some(row) = fetch_optional::<SeriesRow>(db, sql.into(), Args(vec![Arg::Uuid(Some(id))])).await? else {
        return Ok(None);
    };
    let occurrences = fetch_all(
        db,
        "SELECT o.idx, o.activity_id, o.starts_at, o.ends_at, a.status AS activity_status, \
         a.details AS activity_details FROM series_occurrences o \
         LEFT JOIN activities a ON a.activity_id = o.activity_id WHERE o.series_id = $1 ORDER BY o.idx"
            .into(),
        Args(vec![Arg::Uuid(Some(id))]),
    )
    .await?;
    let skipped: Vec<(i64,)> = fetch_all(
        db,
        "SELECT idx FROM series_skips WHERE series_id = $1 ORDER BY idx".into(),
        Args(vec![Arg::Uuid(Some(id))]),
    )
    .await?;
    Ok(Some((row, occurrences, skipped.into_iter().map(|(i,)| i).collect())))
}
