//! The outbox: the `updates` projection turns events into the [`Update`]s members and
//! workers care about (DOMAIN.md "Notifications") and writes them as `outbox` rows in
//! its batch transaction, with its checkpoint (ARCHITECTURE.md decision 3). Each row's
//! id derives from the event (and the sub-message), so a replayed batch writes nothing
//! twice. The [`relay`](crate::relay) publishes and deletes them.
//!
//! To address its messages the projection keeps its own small tables (an activity's
//! organiser, title and time; live bookings; chat members; members' emails): it never
//! reads another projection's tables, which may lag behind it.
//!
//! With `GATHER_AUDIT_EXCHANGE=on` the [`AuditProjection`] writes every event to the
//! outbox for the `gather.audit` exchange, with the same guarantees.

use crate::bus::{AUDIT_EXCHANGE, EXCHANGE, Update};
use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use crate::sql::{Arg, Args, execute, fetch_all_tx};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gather_domain::Personal;
use gather_domain::activity::{Activity, ActivityEvent, Visibility};
use gather_domain::chat::{Chat, ChatEvent};
use gather_domain::member::{Member, MemberEvent};
use gather_store::RecordedEvent;
use gather_store::db::Tx;
use gather_store::on_tx;
use serde_json::{Value, json};
use uuid::Uuid;

/// Outbox partitions: messages of one stream always share a partition, and each
/// partition has one relay at a time, so a stream's messages are published in order.
pub const PARTITIONS: i32 = 8;

/// The partition of a stream (FNV-1a: stable across processes and versions).
pub fn partition_of(stream: &str) -> i32 {
    let mut h: u32 = 0x811c_9dc5;
    for b in stream.bytes() {
        h ^= u32::from(b);
        h = h.wrapping_mul(0x0100_0193);
    }
    (h % PARTITIONS as u32) as i32
}

/// Writes one outbox row (nothing if the id was written before).
async fn put(tx: &mut Tx, e: &RecordedEvent, exchange: &str, update: &Update) -> Result<(), sqlx::Error> {
    let message = serde_json::to_string(update).map_err(|err| sqlx::Error::Encode(Box::new(err)))?;
    let sql = "INSERT INTO outbox (id, partition, exchange, routing_key, message, created_at) \
               VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id) DO NOTHING";
    let args = vec![
        Arg::Uuid(Some(update.id)),
        Arg::Int(Some(partition_of(&e.stream) as i64)),
        Arg::Text(Some(exchange.to_owned())),
        Arg::Text(Some(update.kind.clone())),
        Arg::Text(Some(message)),
        Arg::Time(Some(e.recorded_at)),
    ];
    execute(tx, sql.to_owned(), Args(args)).await.map(|_| ())
}

/// What one event says, before it is addressed: kind, topic, recipients, data.
struct Out {
    kind: &'static str,
    topic: String,
    recipients: Vec<Uuid>,
    email: Option<String>,
    data: Value,
    /// Distinguishes several messages of one event (one per invitation).
    part: Option<Uuid>,
}

impl Out {
    fn new(kind: &'static str, topic: String, recipients: Vec<Uuid>, data: Value) -> Out {
        Out { kind, topic, recipients, email: None, data, part: None }
    }

    fn into_update(self, e: &RecordedEvent) -> Update {
        // Stable: the event, the kind and the part; a replay derives the same id.
        let mut name = self.kind.as_bytes().to_vec();
        if let Some(p) = self.part {
            name.extend_from_slice(p.as_bytes());
        }
        Update {
            id: Uuid::new_v5(&e.event_id, &name),
            topic: self.topic,
            kind: self.kind.to_owned(),
            position: e.position,
            correlation_id: e.correlation_id,
            recipients: self.recipients,
            email: self.email,
            data: self.data,
        }
    }
}

/// The `updates` projection: events → outbox rows for `gather.updates`.
pub struct UpdatesProjection;

#[derive(sqlx::FromRow)]
struct ActivityRow {
    title: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

async fn activity_row(tx: &mut Tx, activity: Uuid) -> Result<Option<ActivityRow>, sqlx::Error> {
    on_tx!(tx, c => sqlx::query_as::<_, ActivityRow>(
        "SELECT title, starts_at, ends_at FROM update_activities WHERE activity_id = $1")
        .bind(activity).fetch_optional(&mut **c).await)
}

async fn booking_members(tx: &mut Tx, activity: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    let rows: Vec<(Uuid,)> = on_tx!(tx, c => sqlx::query_as(
        "SELECT DISTINCT member_id FROM update_bookings WHERE activity_id = $1 ORDER BY member_id")
        .bind(activity).fetch_all(&mut **c).await)?;
    Ok(rows.into_iter().map(|(m,)| m).collect())
}

async fn chat_members(tx: &mut Tx, chat: Uuid) -> Result<Vec<Uuid>, sqlx::Error> {
    let rows: Vec<(Uuid,)> = on_tx!(tx, c => sqlx::query_as(
        "SELECT member_id FROM update_chat_members WHERE chat_id = $1 ORDER BY member_id")
        .bind(chat).fetch_all(&mut **c).await)?;
    Ok(rows.into_iter().map(|(m,)| m).collect())
}

async fn exec(tx: &mut Tx, sql: &str, args: Vec<Arg>) -> Result<(), sqlx::Error> {
    execute(tx, sql.to_owned(), Args(args)).await.map(|_| ())
}

fn id(v: Uuid) -> Arg {
    Arg::Uuid(Some(v))
}

/// Records a booking that holds (or waits for) seats: its member hears of reschedules.
async fn live(tx: &mut Tx, activity: Uuid, booking: Uuid, member: Uuid) -> Result<(), sqlx::Error> {
    let sql = "INSERT INTO update_bookings (booking_id, activity_id, member_id) VALUES ($1, $2, $3) \
               ON CONFLICT (booking_id) DO NOTHING";
    exec(tx, sql, vec![id(booking), id(activity), id(member)]).await
}

/// Forgets a booking that no longer holds seats.
async fn gone(tx: &mut Tx, booking: Uuid) -> Result<(), sqlx::Error> {
    exec(tx, "DELETE FROM update_bookings WHERE booking_id = $1", vec![id(booking)]).await
}

/// The activity summary every activity message carries.
fn summary(activity: Uuid, row: &ActivityRow) -> serde_json::Map<String, Value> {
    let mut m = serde_json::Map::new();
    m.insert("activity_id".into(), json!(activity));
    m.insert("title".into(), json!(row.title));
    m.insert("starts_at".into(), json!(row.starts_at));
    m.insert("ends_at".into(), json!(row.ends_at));
    m
}

fn with(mut base: serde_json::Map<String, Value>, extra: Value) -> Value {
    if let Value::Object(extra) = extra {
        base.extend(extra);
    }
    Value::Object(base)
}

fn member_topic(m: Uuid) -> String {
    format!("member:{m}")
}

fn activity_topic(a: Uuid) -> String {
    format!("activity:{a}")
}

async fn activity_updates(tx: &mut Tx, activity: Uuid, event: ActivityEvent) -> Result<Vec<Out>, sqlx::Error> {
    use ActivityEvent as E;
    // State first: what later messages need to be addressed.
    match &event {
        E::ActivityDrafted { organiser_id, details, .. } => {
            let sql = "INSERT INTO update_activities (activity_id, organiser_id, title, starts_at, ends_at, public) \
                       VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (activity_id) DO NOTHING";
            let public = matches!(details.visibility, Visibility::Public);
            exec(
                tx,
                sql,
                vec![
                    id(activity),
                    id(*organiser_id),
                    Arg::Text(Some(details.title.as_str().to_owned())),
                    Arg::Time(Some(details.time.starts_at())),
                    Arg::Time(Some(details.time.ends_at())),
                    Arg::Bool(Some(public)),
                ],
            )
            .await?;
        }
        E::ActivityDetailsUpdated { details, .. } => {
            let sql = "UPDATE update_activities SET title = $2, starts_at = $3, ends_at = $4, public = $5 WHERE activity_id = $1";
            exec(
                tx,
                sql,
                vec![
                    id(activity),
                    Arg::Text(Some(details.title.as_str().to_owned())),
                    Arg::Time(Some(details.time.starts_at())),
                    Arg::Time(Some(details.time.ends_at())),
                    Arg::Bool(Some(matches!(details.visibility, Visibility::Public))),
                ],
            )
            .await?;
        }
        E::ActivityRescheduled { time, .. } => {
            let sql = "UPDATE update_activities SET starts_at = $2, ends_at = $3 WHERE activity_id = $1";
            exec(tx, sql, vec![id(activity), Arg::Time(Some(time.starts_at())), Arg::Time(Some(time.ends_at()))])
                .await?;
        }
        _ => {}
    }
    let Some(row) = activity_row(tx, activity).await? else {
        // Events of an activity drafted before this projection existed and never seen
        // (impossible from the start of the log): nothing to address.
        return Ok(Vec::new());
    };
    let base = summary(activity, &row);
    let seats = |seats_left: u32| {
        Out::new(
            "activity.seats_left",
            activity_topic(activity),
            Vec::new(),
            with(base.clone(), json!({"seats_left": seats_left})),
        )
    };
    let booking = |kind: &'static str, member: Uuid, extra: Value| {
        Out::new(kind, member_topic(member), vec![member], with(base.clone(), extra))
    };
    Ok(match event {
        E::ActivityDrafted { .. }
        | E::ActivitySubmitted {}
        | E::MediaAttached { .. }
        | E::ActivityCompleted { .. }
        | E::InvitationAccepted { .. }
        | E::InvitationDeclined { .. } => Vec::new(),
        E::ActivityDetailsUpdated { seats_left, .. } => vec![seats(seats_left)],
        E::ActivityPublished { organiser_id, approved_by, .. } => match approved_by {
            Some(moderator) => vec![booking("activity.approved", organiser_id, json!({"approved_by": moderator}))],
            None => Vec::new(),
        },
        E::ActivityRejected { organiser_id, reason } => {
            vec![booking("activity.rejected", organiser_id, json!({"reason": reason.as_str()}))]
        }
        E::ActivityRescheduled { previous, .. } => {
            let attendees = booking_members(tx, activity).await?;
            let data = with(
                base.clone(),
                json!({
                    "previous_starts_at": previous.starts_at(), "previous_ends_at": previous.ends_at()
                }),
            );
            vec![Out::new("activity.rescheduled", activity_topic(activity), attendees, data)]
        }
        E::ActivityCancelled { reason, released, .. } => {
            for b in &released {
                gone(tx, b.booking_id).await?;
            }
            let mut recipients: Vec<Uuid> = released.iter().map(|b| b.member_id).collect();
            recipients.sort();
            recipients.dedup();
            let bookings: Vec<Value> = released
                .iter()
                .map(|b| json!({"booking_id": b.booking_id, "member_id": b.member_id, "seats": b.seats}))
                .collect();
            let data = with(base.clone(), json!({"reason": reason.as_str(), "released": bookings}));
            vec![Out::new("activity.cancelled", activity_topic(activity), recipients, data)]
        }
        E::BookingReserved { booking_id, member_id, seats: n, amount_due, expires_at, seats_left, .. } => {
            live(tx, activity, booking_id, member_id).await?;
            vec![
                booking(
                    "booking.reserved",
                    member_id,
                    json!({
                        "booking_id": booking_id, "seats": n, "amount_due": amount_due, "expires_at": expires_at
                    }),
                ),
                seats(seats_left),
            ]
        }
        E::BookingConfirmed { booking_id, member_id, seats: n, seats_left, .. } => {
            live(tx, activity, booking_id, member_id).await?;
            vec![
                booking("booking.confirmed", member_id, json!({"booking_id": booking_id, "seats": n})),
                seats(seats_left),
            ]
        }
        E::WaitlistJoined { booking_id, member_id, seats: n, position, .. } => {
            live(tx, activity, booking_id, member_id).await?;
            vec![booking(
                "booking.waitlisted",
                member_id,
                json!({
                    "booking_id": booking_id, "seats": n, "waitlist_position": position
                }),
            )]
        }
        E::WaitlistPromoted { booking_id, member_id, seats: n } => {
            vec![booking("booking.promoted", member_id, json!({"booking_id": booking_id, "seats": n}))]
        }
        E::BookingCancelled { booking_id, member_id, seats: n, released_seats, seats_left } => {
            gone(tx, booking_id).await?;
            let mut out = vec![booking("booking.cancelled", member_id, json!({"booking_id": booking_id, "seats": n}))];
            if released_seats > 0 {
                out.push(seats(seats_left));
            }
            out
        }
        E::ReservationExpired { booking_id, member_id, seats: n, seats_left } => {
            gone(tx, booking_id).await?;
            vec![
                booking("booking.expired", member_id, json!({"booking_id": booking_id, "seats": n})),
                seats(seats_left),
            ]
        }
        E::GuestsInvited { invitations } => {
            let mut out = Vec::new();
            for inv in invitations {
                // A forgotten address gets nothing (its owner was forgotten).
                let Personal::Known(address) = &inv.email else { continue };
                let normalized = address.normalized();
                let member: Option<(Uuid,)> = on_tx!(tx, c => sqlx::query_as(
                    "SELECT member_id FROM update_member_emails WHERE email = $1")
                    .bind(&normalized).fetch_optional(&mut **c).await)?;
                let recipients = member.map(|(m,)| vec![m]).unwrap_or_default();
                let topic = recipients.first().map(|m| member_topic(*m)).unwrap_or_else(|| activity_topic(activity));
                let data = with(base.clone(), json!({"invitation_id": inv.invitation_id}));
                let mut o = Out::new("invitation.sent", topic, recipients, data);
                o.email = Some(address.as_str().to_owned());
                o.part = Some(inv.invitation_id);
                out.push(o);
            }
            out
        }
        E::AttendeeListSent { organiser_id, attendees, seats_confirmed } => {
            let lines: Vec<Value> = attendees
                .iter()
                .map(|a| json!({"booking_id": a.booking_id, "member_id": a.member_id, "seats": a.seats, "children": a.children}))
                .collect();
            vec![booking(
                "activity.attendee_list",
                organiser_id,
                json!({
                    "attendees": lines, "seats_confirmed": seats_confirmed
                }),
            )]
        }
    })
}

async fn member_updates(tx: &mut Tx, member: Uuid, event: MemberEvent) -> Result<Vec<Out>, sqlx::Error> {
    use MemberEvent as M;
    Ok(match event {
        M::MemberRegistered { email: Personal::Known(email), display_name, .. } => {
            let sql = "INSERT INTO update_member_emails (email, member_id) VALUES ($1, $2) \
                       ON CONFLICT (email) DO UPDATE SET member_id = excluded.member_id";
            exec(tx, sql, vec![Arg::Text(Some(email.normalized())), id(member)]).await?;
            // The address and name travel with the welcome: it goes out even while the
            // members read model is behind (or stopped).
            let data = json!({"member_id": member, "display_name": display_name.to_string()});
            let mut o = Out::new("member.registered", member_topic(member), vec![member], data);
            o.email = Some(email.as_str().to_owned());
            vec![o]
        }
        // Replayed after forgetting: nobody to welcome.
        M::MemberRegistered { .. } => Vec::new(),
        M::MemberForgotten { .. } => {
            let emails: Vec<(String,)> = fetch_all_tx(
                tx,
                "SELECT email FROM update_member_emails WHERE member_id = $1".into(),
                Args(vec![id(member)]),
            )
            .await?;
            exec(tx, "DELETE FROM update_member_emails WHERE member_id = $1", vec![id(member)]).await?;
            let emails: Vec<String> = emails.into_iter().map(|(e,)| e).collect();
            scrub_outbox(tx, member, &emails).await?;
            // Tells every api process to drop the member's updates from its push
            // history and close their streams (no personal field in it).
            vec![Out::new(
                crate::bus::MEMBER_FORGOTTEN,
                member_topic(member),
                vec![member],
                json!({"member_id": member}),
            )]
        }
        M::PasswordSet { .. }
        | M::ProfileUpdated { .. }
        | M::ChildAdded { .. }
        | M::ChildRemoved { .. }
        | M::OrganiserProfileCreated { .. }
        | M::ActivityFavourited { .. }
        | M::ActivityUnfavourited { .. }
        | M::MemberSuspended { .. }
        | M::RoleGranted { .. }
        | M::RoleRevoked { .. } => Vec::new(),
    })
}

/// `text` as a `LIKE` pattern matching itself (`\` escapes `%`, `_` and itself).
pub(crate) fn like_literal(text: &str) -> String {
    text.replace('\\', "\\\\").replace('%', "\\%").replace('_', "\\_")
}

/// Replaces every string in `v` equal to one of `secrets` (ignoring case) with
/// `(forgotten)`; says whether it changed anything.
fn redact(v: &mut Value, secrets: &[String]) -> bool {
    match v {
        Value::String(s) if secrets.iter().any(|x| x.eq_ignore_ascii_case(s)) => {
            *s = "(forgotten)".into();
            true
        }
        Value::Array(items) => {
            let mut changed = false;
            for i in items {
                changed |= redact(i, secrets);
            }
            changed
        }
        Value::Object(map) => {
            let mut changed = false;
            for i in map.values_mut() {
                changed |= redact(i, secrets);
            }
            changed
        }
        _ => false,
    }
}

/// A forgotten member's messages not yet relayed are dropped (their own updates and
/// every email to their address), and their address is redacted from the others
/// (an invitation listing several addresses). Relayed ones are dropped at send time.
/// The waiting messages whose lower-cased text matches a `LIKE` pattern (`\` escapes).
async fn outbox_like(tx: &mut Tx, pattern: String) -> Result<Vec<(i64, String)>, sqlx::Error> {
    let sql = "SELECT seq, message FROM outbox WHERE lower(message) LIKE $1 ESCAPE '\\'";
    fetch_all_tx(tx, sql.into(), Args(vec![Arg::Text(Some(pattern))])).await
}

/// Replaces a waiting message.
async fn rewrite(tx: &mut Tx, seq: i64, message: &Value) -> Result<(), sqlx::Error> {
    let sql = "UPDATE outbox SET message = $2 WHERE seq = $1";
    exec(tx, sql, vec![Arg::Int(Some(seq)), Arg::Text(Some(message.to_string()))]).await
}

async fn scrub_outbox(tx: &mut Tx, member: Uuid, emails: &[String]) -> Result<(), sqlx::Error> {
    let own = format!("%\"topic\":\"member:{member}\"%");
    exec(tx, "DELETE FROM outbox WHERE message LIKE $1 ESCAPE '\\'", vec![Arg::Text(Some(own))]).await?;
    // Audit copies of their own stream's events (the `audit_exchange` projection).
    let stream = format!("%\"topic\":\"member-{member}\"%");
    exec(tx, "DELETE FROM outbox WHERE message LIKE $1 ESCAPE '\\'", vec![Arg::Text(Some(stream))]).await?;
    // Chat messages they sent, still waiting: the others get them, the text forgotten.
    let sent = format!("%\"sender_id\":\"{member}\"%");
    for (seq, message) in outbox_like(tx, sent).await? {
        let Ok(mut v) = serde_json::from_str::<Value>(&message) else { continue };
        let mut changed = false;
        // An update's data, or an audit copy's event data one level down.
        let d = &mut v["data"];
        if d["sender_id"] == json!(member) && d.get("text").is_some() {
            d["text"] = json!("(forgotten)");
            changed = true;
        }
        if d["data"]["sender_id"] == json!(member) && d["data"].get("text").is_some() {
            d["data"]["text"] = json!("(forgotten)");
            changed = true;
        }
        if changed {
            rewrite(tx, seq, &v).await?;
        }
    }
    for email in emails {
        // Mail to them goes; a message that only mentions them (an audit copy of an
        // invitation to several addresses) is redacted below.
        let to_them = format!("%\"email\":\"{}\"%", like_literal(email));
        for (seq, message) in outbox_like(tx, to_them).await? {
            let addressed = serde_json::from_str::<Value>(&message)
                .ok()
                .and_then(|v| v["email"].as_str().map(|e| e.eq_ignore_ascii_case(email)))
                .unwrap_or(false);
            if addressed {
                exec(tx, "DELETE FROM outbox WHERE seq = $1", vec![Arg::Int(Some(seq))]).await?;
            }
        }
        let mentioned = format!("%{}%", like_literal(email));
        for (seq, message) in outbox_like(tx, mentioned).await? {
            let Ok(mut v) = serde_json::from_str::<Value>(&message) else { continue };
            if redact(&mut v, std::slice::from_ref(email)) {
                rewrite(tx, seq, &v).await?;
            }
        }
    }
    Ok(())
}

async fn chat_updates(tx: &mut Tx, chat: Uuid, event: ChatEvent) -> Result<Vec<Out>, sqlx::Error> {
    let add = "INSERT INTO update_chat_members (chat_id, member_id) VALUES ($1, $2) ON CONFLICT (chat_id, member_id) DO NOTHING";
    let remove = "DELETE FROM update_chat_members WHERE chat_id = $1 AND member_id = $2";
    let topic = format!("chat:{chat}");
    let message = |kind: &'static str, members: Vec<Uuid>, data: Value| Out::new(kind, topic.clone(), members, data);
    Ok(match event {
        ChatEvent::ChatStarted { member_ids, .. } => {
            for m in member_ids {
                exec(tx, add, vec![id(chat), id(m)]).await?;
            }
            Vec::new()
        }
        ChatEvent::ChatMemberAdded { member_id, .. } => {
            exec(tx, add, vec![id(chat), id(member_id)]).await?;
            Vec::new()
        }
        ChatEvent::ChatMemberLeft { member_id } | ChatEvent::ChatMemberRemoved { member_id } => {
            exec(tx, remove, vec![id(chat), id(member_id)]).await?;
            Vec::new()
        }
        ChatEvent::MessagePosted { message_id, sender_id, text, posted_at, as_organiser } => {
            let members = chat_members(tx, chat).await?;
            vec![message(
                "chat.message_posted",
                members,
                json!({
                    "chat_id": chat, "message_id": message_id, "sender_id": sender_id, "text": text.to_string(),
                    "posted_at": posted_at, "as_organiser": as_organiser
                }),
            )]
        }
        ChatEvent::MessageEdited { message_id, sender_id, text, edited_at } => {
            let members = chat_members(tx, chat).await?;
            vec![message(
                "chat.message_edited",
                members,
                json!({
                    "chat_id": chat, "message_id": message_id, "sender_id": sender_id, "text": text.to_string(),
                    "edited_at": edited_at
                }),
            )]
        }
        ChatEvent::MessageDeleted { message_id, deleted_by } => {
            let members = chat_members(tx, chat).await?;
            vec![message(
                "chat.message_deleted",
                members,
                json!({
                    "chat_id": chat, "message_id": message_id, "deleted_by": deleted_by
                }),
            )]
        }
    })
}

/// The updates one event produces (and the projection's own state changes), in order.
async fn updates_of(tx: &mut Tx, e: &RecordedEvent) -> Result<Vec<Update>, ProjectionError> {
    let outs = if let Some((activity, event)) = decode_of::<Activity>(e)? {
        activity_updates(tx, activity, event).await?
    } else if let Some((member, event)) = decode_of::<Member>(e)? {
        member_updates(tx, member, event).await?
    } else if let Some((chat, event)) = decode_of::<Chat>(e)? {
        chat_updates(tx, chat, event).await?
    } else {
        Vec::new()
    };
    Ok(outs.into_iter().map(|o| o.into_update(e)).collect())
}

#[async_trait]
impl Projection for UpdatesProjection {
    fn name(&self) -> &'static str {
        "updates"
    }

    async fn apply(&self, tx: &mut Tx, _at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        // Of a member's events only these two matter here: one this projection cannot
        // read stops the projectors that need it, not every member's updates.
        if e.category() == "member" && !matches!(e.event_type.as_str(), "MemberRegistered" | "MemberForgotten") {
            return Ok(());
        }
        for update in updates_of(tx, e).await? {
            put(tx, e, EXCHANGE, &update).await?;
        }
        Ok(())
    }
}

/// The `audit_exchange` projection: every event, as the audit feed shows it, to the
/// `gather.audit` exchange (routing key `<category>.<type>`).
pub struct AuditProjection;

#[async_trait]
impl Projection for AuditProjection {
    fn name(&self) -> &'static str {
        "audit_exchange"
    }

    async fn apply(&self, tx: &mut Tx, _at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let update = Update {
            id: e.event_id,
            topic: e.stream.clone(),
            kind: format!("{}.{}", e.category(), e.event_type),
            position: e.position,
            correlation_id: e.correlation_id,
            recipients: Vec::new(),
            email: None,
            data: json!({
                "stream": e.stream, "version": e.version, "type": e.event_type, "data": e.data,
                "metadata": {
                    "event_id": e.event_id, "command_id": e.command_id, "correlation_id": e.correlation_id,
                    "causation_id": e.causation_id, "actor": e.actor, "recorded_at": e.recorded_at,
                    "schema_version": e.schema_version,
                }
            }),
        };
        put(tx, e, AUDIT_EXCHANGE, &update).await?;
        Ok(())
    }
}
