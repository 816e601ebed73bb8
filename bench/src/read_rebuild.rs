//! Rebuilding `activities` and `search` from a realistic log (issue 9), each beside its
//! live tables and swapped in, against the physical limit measured in the same run: one
//! raw `SELECT` of the same events, a fold of them into the final rows in Rust, and
//! batched `INSERT … ON CONFLICT DO UPDATE` of those rows (each written once) into
//! scratch tables of the same shape (same columns, generated columns and indexes).

use crate::seed;
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use gather_commands::Db;
use gather_commands::store::postgres::PostgresStore;
use gather_commands::store::{EventStore, RecordedEvent};
use gather_domain::activity::Activity;
use gather_domain::activity::{ActivityDetails, ActivityEvent};
use gather_domain::member::Member;
use gather_domain::member::MemberEvent;
use gather_domain::values::Location;
use gather_projections::Projection;
use gather_projections::activities::{ActivitiesProjection, details_view};
use gather_projections::events::decode_of;
use gather_projections::rebuild::Rebuild;
use gather_projections::search::SearchProjection;
use serde_json::{Value, json};
use sqlx::PgPool;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::Instant;
use uuid::Uuid;

/// An activity's final row, as both projections see it.
struct Act {
    organiser_id: Uuid,
    status: &'static str,
    details: ActivityDetails,
    seats_left: i64,
    favourites: i64,
    confirmed: i64,
    listed: bool,
    submitted_at: Option<DateTime<Utc>>,
    published_at: Option<DateTime<Utc>>,
    version: i64,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    position: i64,
}

struct Booking {
    activity_id: Uuid,
    member_id: Uuid,
    seats: i64,
    children: Value,
    status: &'static str,
    payment_ref: Option<String>,
    created_at: DateTime<Utc>,
    updated_at: DateTime<Utc>,
    position: i64,
}

/// The final rows of the whole log.
#[derive(Default)]
struct Fold {
    acts: HashMap<Uuid, Act>,
    bookings: HashMap<Uuid, Booking>,
    organisers: HashMap<Uuid, String>,
}

impl Fold {
    fn apply(&mut self, e: &RecordedEvent) -> anyhow::Result<()> {
        if let Some((member, event)) = decode_of::<Member>(e)? {
            match event {
                MemberEvent::OrganiserProfileCreated { organisation_name } => {
                    self.organisers.insert(member, organisation_name.as_str().to_owned());
                }
                MemberEvent::ActivityFavourited { activity_id } => {
                    if let Some(a) = self.acts.get_mut(&activity_id) {
                        a.favourites += 1;
                    }
                }
                MemberEvent::ActivityUnfavourited { activity_id } => {
                    if let Some(a) = self.acts.get_mut(&activity_id) {
                        a.favourites = (a.favourites - 1).max(0);
                    }
                }
                _ => {}
            }
            return Ok(());
        }
        let Some((id, event)) = decode_of::<Activity>(e)? else { return Ok(()) };
        use ActivityEvent as E;
        if let E::ActivityDrafted { organiser_id, details, .. } = event {
            self.acts.entry(id).or_insert(Act {
                organiser_id,
                status: "draft",
                seats_left: i64::from(details.capacity.get()),
                details,
                favourites: 0,
                confirmed: 0,
                listed: false,
                submitted_at: None,
                published_at: None,
                version: e.version,
                created_at: e.recorded_at,
                updated_at: e.recorded_at,
                position: e.position,
            });
            return Ok(());
        }
        let Some(a) = self.acts.get_mut(&id) else { return Ok(()) };
        let mut set_booking = |booking_id: Uuid, status: &'static str| -> i64 {
            match self.bookings.get_mut(&booking_id) {
                Some(b) => {
                    let delta = i64::from(status == "confirmed") - i64::from(b.status == "confirmed");
                    b.status = status;
                    b.updated_at = e.recorded_at;
                    b.position = e.position;
                    delta
                }
                None => 0,
            }
        };
        match event {
            E::ActivitySubmitted {} => {
                a.status = "pending";
                a.submitted_at = Some(e.recorded_at);
            }
            E::ActivityPublished { visibility, .. } => {
                a.status = "published";
                a.listed = visibility.as_str() == "public";
                a.published_at = a.published_at.or(Some(e.recorded_at));
            }
            E::ActivityRescheduled { time, .. } => a.details.time = time,
            E::ActivityRejected { .. } => a.status = "rejected",
            E::ActivityCompleted { .. } => (a.status, a.listed) = ("completed", false),
            E::ActivityCancelled { released, .. } => {
                (a.status, a.listed) = ("cancelled", false);
                for r in released {
                    a.confirmed += set_booking(r.booking_id, "released");
                }
            }
            E::BookingReserved { booking_id, member_id, seats, children, seats_left, .. }
            | E::BookingConfirmed { booking_id, member_id, seats, children, seats_left, .. } => {
                let status = if e.event_type == "BookingReserved" { "reserved" } else { "confirmed" };
                let payment_ref = match &event_payment(e) {
                    Some(p) => Some(p.clone()),
                    None => self.bookings.get(&booking_id).and_then(|b| b.payment_ref.clone()),
                };
                let before = self.bookings.get(&booking_id).map(|b| (b.status, b.created_at));
                a.confirmed += i64::from(status == "confirmed") - i64::from(before.is_some_and(|b| b.0 == "confirmed"));
                a.seats_left = i64::from(seats_left);
                self.bookings.insert(
                    booking_id,
                    Booking {
                        activity_id: id,
                        member_id,
                        seats: i64::from(seats),
                        children: json!(children),
                        status,
                        payment_ref,
                        created_at: before.map(|b| b.1).unwrap_or(e.recorded_at),
                        updated_at: e.recorded_at,
                        position: e.position,
                    },
                );
            }
            E::BookingCancelled { booking_id, seats_left, .. } => {
                a.confirmed += set_booking(booking_id, "cancelled");
                a.seats_left = i64::from(seats_left);
            }
            E::ReservationExpired { booking_id, seats_left, .. } => {
                a.confirmed += set_booking(booking_id, "expired");
                a.seats_left = i64::from(seats_left);
            }
            E::ActivityDetailsUpdated { details, seats_left, .. } => {
                a.details = details;
                a.seats_left = i64::from(seats_left);
            }
            // Not in the generated mix; they change nothing the scratch tables hold.
            _ => {}
        }
        a.version = e.version;
        a.updated_at = e.recorded_at;
        a.position = e.position;
        Ok(())
    }
}

/// The payment reference of a `BookingConfirmed` (the arm binds both booking events).
fn event_payment(e: &RecordedEvent) -> Option<String> {
    e.data.get("payment_ref").and_then(|p| p.as_str()).map(str::to_owned)
}

/// One raw ordered scan of the log (every column a projector reads), folded.
async fn scan(pool: &PgPool) -> anyhow::Result<(Fold, usize)> {
    let mut fold = Fold::default();
    let mut n = 0usize;
    let mut rows = sqlx::query(
        "SELECT position, commit_id, stream, version, event_id, event_type, schema_version, data, command_id, \
         correlation_id, causation_id, actor, recorded_at FROM events ORDER BY position",
    )
    .fetch(pool);
    while let Some(row) = rows.try_next().await? {
        let e = gather_commands::store::postgres::row_to_event(row)?;
        fold.apply(&e)?;
        n += 1;
    }
    Ok((fold, n))
}

const ROWS: usize = 1_000;

/// The limit for `activities`: scan, fold, upsert `activities` and `bookings` rows.
async fn limit_activities(pool: &PgPool) -> anyhow::Result<f64> {
    let t = Instant::now();
    let (fold, n) = scan(pool).await?;
    let acts: Vec<(&Uuid, &Act)> = fold.acts.iter().collect();
    for chunk in acts.chunks(ROWS) {
        sqlx::query(
            "INSERT INTO activities_limit (activity_id, organiser_id, status, visibility, title, starts_at, capacity, \
             seats_left, favourites, details, version, created_at, updated_at, position, submitted_at, confirmed) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::timestamptz[], \
             $7::int8[], $8::int8[], $9::int8[], $10::jsonb[], $11::int8[], $12::timestamptz[], $13::timestamptz[], \
             $14::int8[], $15::timestamptz[], $16::int8[]) \
             ON CONFLICT (activity_id) DO UPDATE SET organiser_id = excluded.organiser_id, status = excluded.status, \
             visibility = excluded.visibility, title = excluded.title, starts_at = excluded.starts_at, \
             capacity = excluded.capacity, seats_left = excluded.seats_left, favourites = excluded.favourites, \
             details = excluded.details, version = excluded.version, created_at = excluded.created_at, \
             updated_at = excluded.updated_at, position = excluded.position, submitted_at = excluded.submitted_at, \
             confirmed = excluded.confirmed",
        )
        .bind(chunk.iter().map(|(id, _)| **id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.organiser_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.status).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.visibility.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.title.as_str().to_owned()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.time.starts_at()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| i64::from(a.details.capacity.get())).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.seats_left).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.favourites).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(id, a)| details_view(**id, a.organiser_id, &a.details)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.version).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.created_at).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.updated_at).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.position).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.submitted_at).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.confirmed).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    }
    let bookings: Vec<(&Uuid, &Booking)> = fold.bookings.iter().collect();
    for chunk in bookings.chunks(ROWS) {
        sqlx::query(
            "INSERT INTO bookings_limit (booking_id, activity_id, member_id, seats, children, status, payment_ref, \
             invitation_id, waitlist_seq, created_at, updated_at, position) \
             SELECT b, a, m, s, c, st, p, NULL, NULL, ca, ua, pos FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], \
             $4::int8[], $5::jsonb[], $6::text[], $7::text[], $8::timestamptz[], $9::timestamptz[], $10::int8[]) \
             AS t(b, a, m, s, c, st, p, ca, ua, pos) \
             ON CONFLICT (booking_id) DO UPDATE SET activity_id = excluded.activity_id, member_id = excluded.member_id, \
             seats = excluded.seats, children = excluded.children, status = excluded.status, \
             payment_ref = excluded.payment_ref, created_at = excluded.created_at, updated_at = excluded.updated_at, \
             position = excluded.position",
        )
        .bind(chunk.iter().map(|(id, _)| **id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, b)| b.activity_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, b)| b.member_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, b)| b.seats).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, b)| b.children.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, b)| b.status).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, b)| b.payment_ref.clone()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, b)| b.created_at).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, b)| b.updated_at).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, b)| b.position).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

fn unit_vector(lat: f64, lng: f64) -> (f64, f64, f64) {
    let (la, ln) = (lat.to_radians(), lng.to_radians());
    (la.cos() * ln.cos(), la.cos() * ln.sin(), la.sin())
}

/// The limit for `search`: scan, fold, upsert `activity_search` (its tsvector is
/// generated and GIN-indexed as in the real table), `search_confirmed`, `search_organisers`.
async fn limit_search(pool: &PgPool) -> anyhow::Result<f64> {
    let t = Instant::now();
    let (fold, n) = scan(pool).await?;
    let acts: Vec<(&Uuid, &Act)> = fold.acts.iter().collect();
    for chunk in acts.chunks(ROWS) {
        let venue = |a: &Act| match &a.details.location {
            Location::Venue(v) => Some((v.lat(), v.lng())),
            Location::Online(_) => None,
        };
        let g = |a: &Act| venue(a).map(|(lat, lng)| unit_vector(lat, lng));
        sqlx::query(
            "INSERT INTO activity_search_limit (activity_id, organiser_id, listed, status, visibility, title, \
             description, tags, organiser, category, starts_at, ends_at, age_min, age_max, free, online, lat, lng, \
             gx, gy, gz, seats_left, favourites, confirmed, popularity, published_at, details, position) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bool[], $4::text[], $5::text[], $6::text[], $7::text[], \
             $8::text[], $9::text[], $10::text[], $11::timestamptz[], $12::timestamptz[], $13::int8[], $14::int8[], \
             $15::bool[], $16::bool[], $17::float8[], $18::float8[], $19::float8[], $20::float8[], $21::float8[], \
             $22::int8[], $23::int8[], $24::int8[], $25::int8[], $26::timestamptz[], $27::jsonb[], $28::int8[]) \
             ON CONFLICT (activity_id) DO UPDATE SET organiser_id = excluded.organiser_id, listed = excluded.listed, \
             status = excluded.status, visibility = excluded.visibility, title = excluded.title, \
             description = excluded.description, tags = excluded.tags, organiser = excluded.organiser, \
             category = excluded.category, starts_at = excluded.starts_at, ends_at = excluded.ends_at, \
             age_min = excluded.age_min, age_max = excluded.age_max, free = excluded.free, online = excluded.online, \
             lat = excluded.lat, lng = excluded.lng, gx = excluded.gx, gy = excluded.gy, gz = excluded.gz, \
             seats_left = excluded.seats_left, favourites = excluded.favourites, confirmed = excluded.confirmed, \
             popularity = excluded.popularity, published_at = excluded.published_at, details = excluded.details, \
             position = excluded.position",
        )
        .bind(chunk.iter().map(|(id, _)| **id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.organiser_id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.listed).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.status).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.visibility.as_str()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.title.as_str().to_owned()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.description.as_str().to_owned()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.tags.as_slice().join(" ")).collect::<Vec<_>>())
        .bind(
            chunk
                .iter()
                .map(|(_, a)| fold.organisers.get(&a.organiser_id).cloned().unwrap_or_default())
                .collect::<Vec<_>>(),
        )
        .bind(chunk.iter().map(|(_, a)| a.details.category.as_str().to_owned()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.time.starts_at()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.time.ends_at()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.age_range.map(|r| i64::from(r.min()))).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.age_range.map(|r| i64::from(r.max()))).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.price.is_zero()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.details.location.is_online()).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| venue(a).map(|v| v.0)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| venue(a).map(|v| v.1)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| g(a).map(|g| g.0)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| g(a).map(|g| g.1)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| g(a).map(|g| g.2)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.seats_left).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.favourites).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.confirmed).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.favourites + a.confirmed).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.published_at).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(id, a)| details_view(**id, a.organiser_id, &a.details)).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, a)| a.position).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    }
    let confirmed: Vec<(&Uuid, &Booking)> = fold.bookings.iter().filter(|(_, b)| b.status == "confirmed").collect();
    for chunk in confirmed.chunks(ROWS) {
        sqlx::query(
            "INSERT INTO search_confirmed_limit (booking_id, activity_id) SELECT * FROM unnest($1::uuid[], $2::uuid[]) \
             ON CONFLICT (booking_id) DO UPDATE SET activity_id = excluded.activity_id",
        )
        .bind(chunk.iter().map(|(id, _)| **id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, b)| b.activity_id).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    }
    let organisers: Vec<(&Uuid, &String)> = fold.organisers.iter().collect();
    for chunk in organisers.chunks(ROWS) {
        sqlx::query(
            "INSERT INTO search_organisers_limit (member_id, name) SELECT * FROM unnest($1::uuid[], $2::text[]) \
             ON CONFLICT (member_id) DO UPDATE SET name = excluded.name",
        )
        .bind(chunk.iter().map(|(id, _)| **id).collect::<Vec<_>>())
        .bind(chunk.iter().map(|(_, n)| (*n).clone()).collect::<Vec<_>>())
        .execute(pool)
        .await?;
    }
    Ok(n as f64 / t.elapsed().as_secs_f64())
}

/// Aggregates that must agree between a projection's table and its scratch copy.
async fn check(pool: &PgPool, sql: &str, live: &str, scratch: &str) -> anyhow::Result<()> {
    let q = |t: &str| sqlx::AssertSqlSafe(sql.replace("{t}", t));
    let a: String = sqlx::query_scalar(q(live)).fetch_one(pool).await?;
    let b: String = sqlx::query_scalar(q(scratch)).fetch_one(pool).await?;
    anyhow::ensure!(a == b, "{live} {a:?} and the baseline's {scratch} {b:?} disagree ({sql})");
    Ok(())
}

pub(crate) async fn run(url: &str, scale: f64) -> anyhow::Result<()> {
    let db = Db::connect(url).await?;
    db.migrate().await?;
    let Db::Postgres(pool) = &db else { anyhow::bail!("the benchmark runs on Postgres") };
    let store: Arc<dyn EventStore> = Arc::new(PostgresStore::new(pool.clone()));
    let activities = ((10_000.0 * scale).round() as usize).max(20);
    let members = ((5_000.0 * scale).round() as usize).max(100);
    let (calls, events) = seed::activity_mix(activities, members, 9)?;
    let seeded = seed::append_all(store.clone(), calls, seed::member_call_count(members)).await?;
    sqlx::query("VACUUM ANALYZE events").execute(pool).await?;
    for (scratch, live) in [
        ("activities_limit", "activities"),
        ("bookings_limit", "bookings"),
        ("activity_search_limit", "activity_search"),
        ("search_confirmed_limit", "search_confirmed"),
        ("search_organisers_limit", "search_organisers"),
    ] {
        let sql = format!("CREATE TABLE {scratch} (LIKE {live} INCLUDING ALL)");
        sqlx::query(sqlx::AssertSqlSafe(sql)).execute(pool).await?;
    }

    let mut rows = Vec::new();
    for name in ["activities", "search"] {
        let limit = if name == "activities" { limit_activities(pool).await? } else { limit_search(pool).await? };
        let projection: Arc<dyn Projection> =
            if name == "activities" { Arc::new(ActivitiesProjection) } else { Arc::new(SearchProjection) };
        let t = Instant::now();
        Rebuild::claim(&db, store.clone(), &[projection], name).await?.run().await?;
        let rebuilt = t.elapsed().as_secs_f64();
        rows.push((name, rebuilt, events as f64 / rebuilt, limit));
    }
    // The baseline wrote the same final rows as the projections.
    let sums = "SELECT concat_ws(' ', count(*), sum(seats_left), sum(favourites), sum(confirmed), \
                count(*) FILTER (WHERE status = 'published'), max(position)) FROM {t}";
    check(pool, sums, "activities", "activities_limit").await?;
    check(pool, sums, "activity_search", "activity_search_limit").await?;
    let bookings = "SELECT concat_ws(' ', count(*), count(*) FILTER (WHERE status = 'confirmed'), sum(seats)) FROM {t}";
    check(pool, bookings, "bookings", "bookings_limit").await?;
    check(pool, "SELECT count(*)::text FROM {t}", "search_confirmed", "search_confirmed_limit").await?;

    println!(
        "\n## Rebuilding read models from {events} events ({activities} activities, {members} members; \
         seeded at {seeded:.0} ev/s)\n"
    );
    println!(
        "| projection | rebuild beside + swap | physical limit (SELECT + fold + batched upsert of final rows) | ratio |"
    );
    println!("|---|---:|---:|---:|");
    for (name, secs, ours, limit) in rows {
        println!("| `{name}` | {ours:.0} ev/s ({secs:.1} s) | {limit:.0} ev/s | {:.2}× |", ours / limit);
    }
    Ok(())
}
