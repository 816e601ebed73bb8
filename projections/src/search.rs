//! Search over published public activities.
//!
//! The `search` projection keeps one row per activity in `activity_search` (drafts too,
//! so publishing only flips `listed`), with the filter columns of `GET /v1/activities`,
//! popularity (confirmed bookings + favourites, counted exactly through
//! `search_confirmed`) and the organiser's name (`search_organisers`).
//!
//! Full text: on Postgres a weighted `tsvector` generated column (title A > tags B >
//! description C > organiser D) with a GIN index, queried with `websearch_to_tsquery`
//! (which never throws on user input), ranked by `ts_rank`; when it finds nothing, a
//! trigram match on titles (`pg_trgm`, `<%`) catches typos. On SQLite a contentless
//! FTS5 table (`activity_search_fts`, rowid = `doc`) ranked by `bm25` with the same
//! weights; user input is turned into quoted FTS5 terms, so it cannot be a syntax error.
//!
//! Distance: each venue is stored as a unit vector (gx, gy, gz); a query first bounds
//! lat/lng by a box (indexed), then checks the exact great-circle distance as a dot
//! product against cos(radius / R), which needs no trigonometry in SQL.

use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use crate::sql::{Arg, Args, execute, fetch_all, fetch_all_tx, fetch_optional_tx};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gather_commands::db::{Db, Tx};
use gather_commands::store::RecordedEvent;
use gather_domain::activity::{Activity, ActivityDetails, ActivityEvent};
use gather_domain::member::{Member, MemberEvent};
use gather_domain::values::Location;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::FromRow;
use sqlx::types::Json;
use std::collections::BTreeMap;
use uuid::Uuid;

/// Earth's mean radius in km.
const EARTH_KM: f64 = 6371.0088;

/// Projects activities (and organiser names, favourites) into the search index.
pub struct SearchProjection;

fn unit_vector(lat: f64, lng: f64) -> (f64, f64, f64) {
    let (la, ln) = (lat.to_radians(), lng.to_radians());
    (la.cos() * ln.cos(), la.cos() * ln.sin(), la.sin())
}

/// The columns an activity's details fill.
fn detail_args(args: &mut Args, d: &ActivityDetails) -> Vec<String> {
    let (lat, lng, g) = match &d.location {
        Location::Venue(v) => (Some(v.lat()), Some(v.lng()), Some(unit_vector(v.lat(), v.lng()))),
        Location::Online(_) => (None, None, None),
    };
    vec![
        args.push(Arg::Text(Some(d.visibility.as_str().to_owned()))),
        args.push(Arg::Text(Some(d.title.as_str().to_owned()))),
        args.push(Arg::Text(Some(d.description.as_str().to_owned()))),
        args.push(Arg::Text(Some(d.tags.as_slice().join(" ")))),
        args.push(Arg::Text(Some(d.category.as_str().to_owned()))),
        args.push(Arg::Time(Some(d.time.starts_at()))),
        args.push(Arg::Time(Some(d.time.ends_at()))),
        args.push(Arg::Int(d.age_range.map(|a| i64::from(a.min())))),
        args.push(Arg::Int(d.age_range.map(|a| i64::from(a.max())))),
        args.push(Arg::Bool(Some(d.price.is_zero()))),
        args.push(Arg::Bool(Some(d.location.is_online()))),
        args.push(Arg::Float(lat)),
        args.push(Arg::Float(lng)),
        args.push(Arg::Float(g.map(|g| g.0))),
        args.push(Arg::Float(g.map(|g| g.1))),
        args.push(Arg::Float(g.map(|g| g.2))),
    ]
}

const DETAIL_COLUMNS: [&str; 16] = [
    "visibility",
    "title",
    "description",
    "tags",
    "category",
    "starts_at",
    "ends_at",
    "age_min",
    "age_max",
    "free",
    "online",
    "lat",
    "lng",
    "gx",
    "gy",
    "gz",
];

/// What an event changes on a search row.
#[derive(Default)]
struct Change {
    status: Option<&'static str>,
    listed: Option<bool>,
    published: bool,
    seats_left: Option<u32>,
    confirmed: i64,
    details: Option<Value>,
    reindex: bool,
}

#[derive(FromRow)]
struct DetailsRow {
    organiser_id: Uuid,
    visibility: String,
    details: Json<Value>,
}

async fn current(tx: &mut Tx, t: &str, id: Uuid) -> Result<Option<DetailsRow>, sqlx::Error> {
    let mut args = Args::default();
    let p = args.push(Arg::Uuid(Some(id)));
    fetch_optional_tx(tx, format!("SELECT organiser_id, visibility, details FROM {t} WHERE activity_id = {p}"), args)
        .await
}

/// Adds a booking to (or removes it from) the confirmed set; ±1 when it changed.
async fn confirmed(tx: &mut Tx, at: Target, activity: Uuid, booking: Uuid, add: bool) -> Result<i64, sqlx::Error> {
    let t = at.table("search_confirmed");
    let args = Args(vec![Arg::Uuid(Some(booking)), Arg::Uuid(Some(activity))]);
    if add {
        let sql =
            format!("INSERT INTO {t} (booking_id, activity_id) VALUES ($1, $2) ON CONFLICT (booking_id) DO NOTHING");
        Ok(execute(tx, sql, args).await? as i64)
    } else {
        let sql = format!("DELETE FROM {t} WHERE booking_id = $1 AND activity_id = $2");
        Ok(-(execute(tx, sql, args).await? as i64))
    }
}

/// Brings the SQLite FTS5 row of `id` in line with its search row (listed rows only).
async fn reindex(tx: &mut Tx, at: Target, id: Uuid) -> Result<(), sqlx::Error> {
    let Tx::Sqlite(c) = tx else { return Ok(()) };
    let (t, f) = (at.table("activity_search"), at.table("activity_search_fts"));
    let row: Option<(i64, bool, String, String, String, String)> = sqlx::query_as(sqlx::AssertSqlSafe(format!(
        "SELECT doc, listed, title, tags, description, organiser FROM {t} WHERE activity_id = $1"
    )))
    .bind(id)
    .fetch_optional(&mut **c)
    .await?;
    let Some((doc, listed, title, tags, description, organiser)) = row else { return Ok(()) };
    sqlx::query(sqlx::AssertSqlSafe(format!("DELETE FROM {f} WHERE rowid = $1"))).bind(doc).execute(&mut **c).await?;
    if listed {
        sqlx::query(sqlx::AssertSqlSafe(format!(
            "INSERT INTO {f} (rowid, title, tags, description, organiser) VALUES ($1, $2, $3, $4, $5)"
        )))
        .bind(doc)
        .bind(title)
        .bind(tags)
        .bind(description)
        .bind(organiser)
        .execute(&mut **c)
        .await?;
    }
    Ok(())
}

#[async_trait]
impl Projection for SearchProjection {
    fn name(&self) -> &'static str {
        "search"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["activity_search", "search_confirmed", "search_organisers"]
    }

    fn backend_tables(&self, postgres: bool) -> Vec<&'static str> {
        let mut t = self.tables().to_vec();
        if !postgres {
            t.push("activity_search_fts");
        }
        t
    }

    async fn apply(&self, tx: &mut Tx, at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let t = &at.table("activity_search");
        if let Some((member, event)) = decode_of::<Member>(e)? {
            return self.member(tx, at, member, event).await;
        }
        let Some((id, event)) = decode_of::<Activity>(e)? else { return Ok(()) };
        use ActivityEvent as E;
        let change = match event {
            E::ActivityDrafted { organiser_id, details, .. } => {
                let orgs = at.table("search_organisers");
                let mut args = Args::default();
                let cols = detail_args(&mut args, &details);
                let id_p = args.push(Arg::Uuid(Some(id)));
                let org_p = args.push(Arg::Uuid(Some(organiser_id)));
                let seats_p = args.push(Arg::Int(Some(i64::from(details.capacity.get()))));
                let details_p = args.push(Arg::Json(Some(crate::activities::details_view(id, organiser_id, &details))));
                let pos_p = args.push(Arg::Int(Some(e.position)));
                let sql = format!(
                    "INSERT INTO {t} (activity_id, organiser_id, status, seats_left, details, position, organiser, {}) \
                     VALUES ({id_p}, {org_p}, 'draft', {seats_p}, {details_p}, {pos_p}, \
                     COALESCE((SELECT name FROM {orgs} WHERE member_id = {org_p}), ''), {}) \
                     ON CONFLICT (activity_id) DO NOTHING",
                    DETAIL_COLUMNS.join(", "),
                    cols.join(", ")
                );
                execute(tx, sql, args).await?;
                return Ok(());
            }
            E::ActivityDetailsUpdated { details, seats_left, .. } => {
                let Some(row) = current(tx, t, id).await? else { return Ok(()) };
                let mut args = Args::default();
                let cols = detail_args(&mut args, &details);
                let sets: Vec<String> = DETAIL_COLUMNS.iter().zip(&cols).map(|(c, p)| format!("{c} = {p}")).collect();
                let id_p = args.push(Arg::Uuid(Some(id)));
                execute(tx, format!("UPDATE {t} SET {} WHERE activity_id = {id_p}", sets.join(", ")), args).await?;
                let mut view = crate::activities::details_view(id, row.organiser_id, &details);
                view["media"] = row.details.0.get("media").cloned().unwrap_or_else(|| json!([]));
                // A published activity stays listed only while it is public.
                let listed =
                    (row.visibility != details.visibility.as_str()).then(|| details.visibility.as_str() == "public");
                Change { seats_left: Some(seats_left), details: Some(view), reindex: true, listed, ..Change::default() }
            }
            E::ActivitySubmitted {} => Change { status: Some("pending"), ..Change::default() },
            E::ActivityPublished { visibility, .. } => Change {
                status: Some("published"),
                listed: Some(visibility.as_str() == "public"),
                published: true,
                reindex: true,
                ..Change::default()
            },
            E::ActivityRejected { .. } => Change { status: Some("rejected"), ..Change::default() },
            E::ActivityCompleted { .. } => {
                Change { status: Some("completed"), listed: Some(false), reindex: true, ..Change::default() }
            }
            E::ActivityCancelled { .. } => {
                Change { status: Some("cancelled"), listed: Some(false), reindex: true, ..Change::default() }
            }
            E::ActivityRescheduled { time, .. } => {
                let Some(row) = current(tx, t, id).await? else { return Ok(()) };
                let mut view = row.details.0;
                view["starts_at"] = json!(time.starts_at());
                view["ends_at"] = json!(time.ends_at());
                let args =
                    Args(vec![Arg::Uuid(Some(id)), Arg::Time(Some(time.starts_at())), Arg::Time(Some(time.ends_at()))]);
                execute(tx, format!("UPDATE {t} SET starts_at = $2, ends_at = $3 WHERE activity_id = $1"), args)
                    .await?;
                Change { details: Some(view), ..Change::default() }
            }
            E::MediaAttached { media_id, file } => {
                let Some(row) = current(tx, t, id).await? else { return Ok(()) };
                let mut view = row.details.0;
                if let Some(list) = view.get_mut("media").and_then(|m| m.as_array_mut()) {
                    list.push(json!({
                        "id": media_id, "kind": file.kind().as_str(), "content_type": file.content_type(),
                        "bytes": file.bytes(), "url": format!("/v1/media/{media_id}"),
                    }));
                }
                Change { details: Some(view), ..Change::default() }
            }
            E::BookingConfirmed { booking_id, seats_left, .. } => Change {
                seats_left: Some(seats_left),
                confirmed: confirmed(tx, at, id, booking_id, true).await?,
                ..Change::default()
            },
            E::BookingCancelled { booking_id, seats_left, .. }
            | E::ReservationExpired { booking_id, seats_left, .. } => Change {
                seats_left: Some(seats_left),
                confirmed: confirmed(tx, at, id, booking_id, false).await?,
                ..Change::default()
            },
            E::BookingReserved { seats_left, .. } => Change { seats_left: Some(seats_left), ..Change::default() },
            E::WaitlistJoined { .. }
            | E::WaitlistPromoted { .. }
            | E::GuestsInvited { .. }
            | E::InvitationAccepted { .. }
            | E::InvitationDeclined { .. }
            | E::AttendeeListSent { .. } => return Ok(()),
        };
        let mut args = Args::default();
        let id_p = args.push(Arg::Uuid(Some(id)));
        let status_p = args.push(Arg::Text(change.status.map(str::to_owned)));
        let listed_p = args.push(Arg::Bool(change.listed));
        let seats_p = args.push(Arg::Int(change.seats_left.map(i64::from)));
        let conf_p = args.push(Arg::Int(Some(change.confirmed)));
        let details_p = args.push(Arg::Json(change.details));
        let pos_p = args.push(Arg::Int(Some(e.position)));
        let published_p = args.push(Arg::Time(change.published.then_some(e.recorded_at)));
        let sql = format!(
            "UPDATE {t} SET status = COALESCE({status_p}, status), listed = COALESCE({listed_p}, listed), \
             seats_left = COALESCE({seats_p}, seats_left), confirmed = confirmed + {conf_p}, \
             popularity = favourites + confirmed + {conf_p}, details = COALESCE({details_p}, details), \
             published_at = COALESCE(published_at, {published_p}), position = {pos_p} WHERE activity_id = {id_p}"
        );
        execute(tx, sql, args).await?;
        if change.reindex {
            reindex(tx, at, id).await?;
        }
        Ok(())
    }
}

impl SearchProjection {
    /// Organiser names and favourites come from member streams.
    async fn member(&self, tx: &mut Tx, at: Target, member: Uuid, event: MemberEvent) -> Result<(), ProjectionError> {
        let (t, orgs) = (at.table("activity_search"), at.table("search_organisers"));
        use MemberEvent as M;
        match event {
            M::OrganiserProfileCreated { organisation_name } => {
                let name = organisation_name.as_str().to_owned();
                let args = Args(vec![Arg::Uuid(Some(member)), Arg::Text(Some(name))]);
                let sql = format!(
                    "INSERT INTO {orgs} (member_id, name) VALUES ($1, $2) ON CONFLICT (member_id) DO UPDATE SET name = excluded.name"
                );
                execute(tx, sql, args.clone()).await?;
                self.rename(tx, at, &t, args).await?;
            }
            M::MemberForgotten { .. } => {
                let args = Args(vec![Arg::Uuid(Some(member)), Arg::Text(Some(String::new()))]);
                execute(tx, format!("DELETE FROM {orgs} WHERE member_id = $1"), Args(vec![Arg::Uuid(Some(member))]))
                    .await?;
                self.rename(tx, at, &t, args).await?;
            }
            M::ActivityFavourited { activity_id } | M::ActivityUnfavourited { activity_id } => {
                let delta = if matches!(event, M::ActivityFavourited { .. }) { 1 } else { -1 };
                let args = Args(vec![Arg::Uuid(Some(activity_id)), Arg::Int(Some(delta))]);
                let sql = format!(
                    "UPDATE {t} SET favourites = favourites + $2, popularity = popularity + $2 WHERE activity_id = $1"
                );
                execute(tx, sql, args).await?;
            }
            M::MemberRegistered { .. }
            | M::PasswordSet { .. }
            | M::ProfileUpdated { .. }
            | M::ChildAdded { .. }
            | M::ChildRemoved { .. }
            | M::MemberSuspended { .. }
            | M::RoleGranted { .. } => {}
        }
        Ok(())
    }

    /// Sets the organiser name ($2) on every activity of organiser $1 (and re-indexes them).
    async fn rename(&self, tx: &mut Tx, at: Target, t: &str, args: Args) -> Result<(), sqlx::Error> {
        let sql = format!("UPDATE {t} SET organiser = $2 WHERE organiser_id = $1 RETURNING activity_id");
        let ids: Vec<(Uuid,)> = fetch_all_tx(tx, sql, args).await?;
        for (id,) in ids {
            reindex(tx, at, id).await?;
        }
        Ok(())
    }
}

/// How `GET /v1/activities` orders its answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sort {
    /// Best text match first (the default when `q` is given).
    Relevance,
    /// Earliest start first (the default without `q`).
    Soonest,
    /// Most confirmed bookings + favourites first.
    Popular,
    /// Most recently published first.
    Newest,
}

/// Where the previous page ended (opaque to clients).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct SearchCursor {
    /// The sort the cursor belongs to.
    pub sort: Sort,
    /// Whether the page came from the typo-tolerant fallback.
    pub fuzzy: bool,
    /// The sort key of the last item (a relevance score as its f64 bits).
    pub key: Value,
    /// The id of the last item.
    pub id: Uuid,
}

/// A search request, parsed and checked by the API.
#[derive(Debug, Clone)]
pub struct SearchQuery {
    /// Free text (websearch syntax: words, "phrases", -excluded, or).
    pub q: Option<String>,
    /// Exact category.
    pub category: Option<String>,
    /// Starts at or after.
    pub from: Option<DateTime<Utc>>,
    /// Starts at or before.
    pub to: Option<DateTime<Utc>>,
    /// An age the activity admits (no age range admits every age).
    pub age: Option<i64>,
    /// Free (true) or paid (false).
    pub free: Option<bool>,
    /// Online (true) or at a venue (false).
    pub online: Option<bool>,
    /// Within `radius_km` of (lat, lng).
    pub near: Option<(f64, f64, f64)>,
    /// At least this many seats left.
    pub seats: Option<i64>,
    /// The order.
    pub sort: Sort,
    /// After this item of a previous page.
    pub after: Option<SearchCursor>,
    /// Page size (1–100).
    pub limit: i64,
}

/// One page of search results.
#[derive(Debug, Clone)]
pub struct SearchPage {
    /// Activity summaries.
    pub items: Vec<Value>,
    /// The next page, if any.
    pub next_cursor: Option<SearchCursor>,
    /// Counts by category over the filtered set (without the category filter itself).
    pub facets: BTreeMap<String, i64>,
}

#[derive(FromRow)]
struct Hit {
    activity_id: Uuid,
    organiser: String,
    seats_left: i64,
    favourites: i64,
    popularity: i64,
    starts_at: DateTime<Utc>,
    published_at: Option<DateTime<Utc>>,
    details: Json<Value>,
    rank: f64,
}

/// Turns free text into an FTS5 query of quoted terms (never a syntax error):
/// words and "phrases" must all match, `-word` excludes, `or` between terms.
/// `prefix` makes every term a prefix (the typo-tolerant fallback). None: no terms.
pub fn fts5_query(q: &str, prefix: bool) -> Option<String> {
    let mut positive: Vec<String> = Vec::new();
    let mut negative: Vec<String> = Vec::new();
    let mut pending_or = false;
    let mut rest = q;
    while !rest.is_empty() {
        let trimmed = rest.trim_start();
        if trimmed.is_empty() {
            break;
        }
        let (negated, body) = match trimmed.strip_prefix('-') {
            Some(b) => (true, b),
            None => (false, trimmed),
        };
        let (raw, next) = if let Some(b) = body.strip_prefix('"') {
            match b.find('"') {
                Some(end) => (&b[..end], &b[end + 1..]),
                None => (b, ""),
            }
        } else {
            let end = body.find(char::is_whitespace).unwrap_or(body.len());
            (&body[..end], &body[end..])
        };
        rest = next;
        let words: Vec<&str> = raw.split(|c: char| !c.is_alphanumeric()).filter(|w| !w.is_empty()).collect();
        if words.is_empty() {
            continue;
        }
        if !negated && words.len() == 1 && words[0].eq_ignore_ascii_case("or") && !raw.starts_with('"') {
            pending_or = !positive.is_empty();
            continue;
        }
        let star = if prefix { "*" } else { "" };
        let term = format!("\"{}\"{star}", words.join(" "));
        if negated {
            negative.push(term);
        } else if pending_or {
            let last = positive.pop().unwrap_or_default();
            positive.push(format!("({last} OR {term})"));
            pending_or = false;
        } else {
            positive.push(term);
        }
    }
    if positive.is_empty() {
        return None;
    }
    let mut out = positive.join(" AND ");
    for n in negative {
        out = format!("({out}) NOT {n}");
    }
    Some(out)
}

/// Runs a search (both backends): filters, sort, keyset page and category facets.
pub async fn search(db: &Db, query: &SearchQuery) -> Result<SearchPage, sqlx::Error> {
    let fuzzy = query.after.as_ref().is_some_and(|c| c.fuzzy);
    let mut page = run(db, query, fuzzy).await?;
    // Nothing by full text on the first page: try the typo-tolerant match.
    if page.items.is_empty() && query.q.is_some() && query.after.is_none() && !fuzzy {
        page = run(db, query, true).await?;
    }
    Ok(page)
}

async fn run(db: &Db, query: &SearchQuery, fuzzy: bool) -> Result<SearchPage, sqlx::Error> {
    let pg = db.is_postgres();
    let mut args = Args::default();
    // WITH (SQLite's FTS hits, materialized so bm25 is computed once per hit), FROM and
    // the text condition, and the rank expression.
    let mut with = String::new();
    let (from, rank) = match (&query.q, pg, fuzzy) {
        (Some(q), true, false) => {
            let p = args.push(Arg::Text(Some(q.clone())));
            (
                format!("activity_search s WHERE s.listed AND s.document @@ websearch_to_tsquery('english', {p})"),
                format!("ts_rank(s.document, websearch_to_tsquery('english', {p}))::float8"),
            )
        }
        (Some(q), true, true) => {
            let p = args.push(Arg::Text(Some(q.clone())));
            (
                format!("activity_search s WHERE s.listed AND {p} <% s.title"),
                format!("word_similarity({p}, s.title)::float8"),
            )
        }
        (Some(q), false, _) => {
            let Some(m) = fts5_query(q, fuzzy) else {
                return Ok(SearchPage { items: vec![], next_cursor: None, facets: BTreeMap::new() });
            };
            let p = args.push(Arg::Text(Some(m)));
            with = format!(
                "WITH hits AS MATERIALIZED (SELECT rowid AS doc, bm25(activity_search_fts, 10.0, 5.0, 2.0, 1.0) AS score \
                 FROM activity_search_fts WHERE activity_search_fts MATCH {p}) "
            );
            (
                "hits JOIN activity_search s ON s.doc = hits.doc WHERE s.listed = 1".to_owned(),
                "(0.0 - hits.score)".to_owned(),
            )
        }
        (None, true, _) => ("activity_search s WHERE s.listed".to_owned(), "0.0::float8".to_owned()),
        (None, false, _) => ("activity_search s WHERE s.listed = 1".to_owned(), "0.0".to_owned()),
    };
    let mut filters = String::new();
    if let Some(v) = &query.from {
        filters += &format!(" AND s.starts_at >= {}", args.push(Arg::Time(Some(*v))));
    }
    if let Some(v) = &query.to {
        filters += &format!(" AND s.starts_at <= {}", args.push(Arg::Time(Some(*v))));
    }
    if let Some(age) = query.age {
        let p = args.push(Arg::Int(Some(age)));
        filters += &format!(" AND (s.age_min IS NULL OR s.age_min <= {p}) AND (s.age_max IS NULL OR s.age_max >= {p})");
    }
    if let Some(v) = query.free {
        filters += &format!(" AND s.free = {}", args.push(Arg::Bool(Some(v))));
    }
    if let Some(v) = query.online {
        filters += &format!(" AND s.online = {}", args.push(Arg::Bool(Some(v))));
    }
    if let Some(n) = query.seats {
        filters += &format!(" AND s.seats_left >= {}", args.push(Arg::Int(Some(n))));
    }
    if let Some((lat, lng, radius)) = query.near {
        let dlat = (radius / EARTH_KM).to_degrees();
        let lo = args.push(Arg::Float(Some(lat - dlat)));
        let hi = args.push(Arg::Float(Some(lat + dlat)));
        filters += &format!(" AND s.lat BETWEEN {lo} AND {hi}");
        let cos_lat = (lat.abs() + dlat).min(90.0).to_radians().cos();
        let dlng = if cos_lat > 1e-6 { (radius / (EARTH_KM * cos_lat)).to_degrees() } else { 360.0 };
        if lng - dlng >= -180.0 && lng + dlng <= 180.0 {
            let lo = args.push(Arg::Float(Some(lng - dlng)));
            let hi = args.push(Arg::Float(Some(lng + dlng)));
            filters += &format!(" AND s.lng BETWEEN {lo} AND {hi}");
        }
        let (x, y, z) = unit_vector(lat, lng);
        let (px, py, pz) =
            (args.push(Arg::Float(Some(x))), args.push(Arg::Float(Some(y))), args.push(Arg::Float(Some(z))));
        let min_dot = args.push(Arg::Float(Some((radius.min(EARTH_KM * std::f64::consts::PI) / EARTH_KM).cos())));
        filters += &format!(" AND s.gx * {px} + s.gy * {py} + s.gz * {pz} >= {min_dot}");
    }
    // Facets: the filtered set without the category filter (so every choice shows).
    let facet_sql =
        format!("{with}SELECT s.category AS category, count(*) AS n FROM {from}{filters} GROUP BY s.category");
    let facet_args = args.clone();
    let mut page_filters = filters.clone();
    if let Some(c) = &query.category {
        page_filters += &format!(" AND s.category = {}", args.push(Arg::Text(Some(c.clone()))));
    }
    let (key, dir) = match query.sort {
        Sort::Relevance => ("rank".to_owned(), "DESC"),
        Sort::Soonest => ("s.starts_at".to_owned(), "ASC"),
        Sort::Popular => ("s.popularity".to_owned(), "DESC"),
        Sort::Newest => ("s.published_at".to_owned(), "DESC"),
    };
    let key_expr = if query.sort == Sort::Relevance { rank.clone() } else { key.clone() };
    if let Some(c) = &query.after {
        let k = match query.sort {
            Sort::Relevance => args.push(Arg::Float(c.key.as_u64().map(f64::from_bits))),
            Sort::Popular => args.push(Arg::Int(c.key.as_i64())),
            Sort::Soonest | Sort::Newest => {
                args.push(Arg::Time(c.key.as_str().and_then(|s| s.parse::<DateTime<Utc>>().ok())))
            }
        };
        let id = args.push(Arg::Uuid(Some(c.id)));
        let cmp = if dir == "DESC" { "<" } else { ">" };
        page_filters += &format!(" AND ({key_expr} {cmp} {k} OR ({key_expr} = {k} AND s.activity_id > {id}))");
    }
    let limit = args.push(Arg::Int(Some(query.limit + 1)));
    let sql = format!(
        "{with}SELECT s.activity_id, s.organiser, s.seats_left, s.favourites, s.popularity, s.starts_at, s.published_at, \
         s.details, {rank} AS rank FROM {from}{page_filters} ORDER BY {key_expr} {dir}, s.activity_id ASC LIMIT {limit}"
    );
    let mut hits: Vec<Hit> = fetch_all(db, sql, args).await?;
    let more = hits.len() as i64 > query.limit;
    hits.truncate(query.limit as usize);
    let next_cursor = if more {
        hits.last().map(|h| SearchCursor {
            sort: query.sort,
            fuzzy,
            key: match query.sort {
                // The exact bits: a decimal float may not parse back to the same value.
                Sort::Relevance => json!(h.rank.to_bits()),
                Sort::Popular => json!(h.popularity),
                Sort::Soonest => json!(h.starts_at),
                Sort::Newest => json!(h.published_at),
            },
            id: h.activity_id,
        })
    } else {
        None
    };
    let facets: Vec<(String, i64)> = fetch_all(db, facet_sql, facet_args).await?;
    let items = hits
        .into_iter()
        .map(|h| {
            let mut v = h.details.0;
            v["organiser"] = json!(h.organiser);
            v["seats_left"] = json!(h.seats_left);
            v["favourites"] = json!(h.favourites);
            v["popularity"] = json!(h.popularity);
            v["status"] = json!("published");
            if query.q.is_some() {
                v["score"] = json!(h.rank);
            }
            v
        })
        .collect();
    Ok(SearchPage { items, next_cursor, facets: facets.into_iter().collect() })
}

#[cfg(test)]
mod tests {
    use super::fts5_query;

    #[test]
    fn hostile_text_becomes_quoted_terms() {
        assert_eq!(fts5_query("pottery", false).as_deref(), Some("\"pottery\""));
        assert_eq!(fts5_query("NEAR(a b) OR", false).as_deref(), Some("\"NEAR a\" AND \"b\""));
        assert_eq!(fts5_query("\"clay studio\" -adults", false).as_deref(), Some("(\"clay studio\") NOT \"adults\""));
        assert_eq!(fts5_query("kids or adults", false).as_deref(), Some("(\"kids\" OR \"adults\")"));
        assert_eq!(fts5_query("\"\"\" *** ^^^", false), None);
        assert_eq!(fts5_query("-only", false), None);
        assert_eq!(fts5_query("pott", true).as_deref(), Some("\"pott\"*"));
    }
}
