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
use crate::runtime::{BatchError, Projection, ProjectionError, Target, Touched};
use crate::sql::{Arg, Args, execute, fetch_all, fetch_all_tx, rows_by_id, upsert};
use async_trait::async_trait;
use chrono::{DateTime, Utc};
use gather_domain::activity::{Activity, ActivityDetails, ActivityEvent};
use gather_domain::member::{Member, MemberEvent};
use gather_domain::values::Location;
use gather_store::RecordedEvent;
use gather_store::db::{Db, Tx};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sqlx::FromRow;
use sqlx::types::Json;
use std::collections::{BTreeMap, HashMap};
use uuid::Uuid;

/// Earth's mean radius in km.
const EARTH_KM: f64 = 6371.0088;

/// Projects activities (and organiser names, favourites) into the search index.
pub struct SearchProjection;

fn unit_vector(lat: f64, lng: f64) -> (f64, f64, f64) {
    let (la, ln) = (lat.to_radians(), lng.to_radians());
    (la.cos() * ln.cos(), la.cos() * ln.sin(), la.sin())
}

#[derive(Debug, Clone, FromRow)]
struct SearchRec {
    activity_id: Uuid,
    organiser_id: Uuid,
    listed: bool,
    status: String,
    visibility: String,
    title: String,
    description: String,
    tags: String,
    organiser: String,
    category: String,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    age_min: Option<i64>,
    age_max: Option<i64>,
    free: bool,
    online: bool,
    lat: Option<f64>,
    lng: Option<f64>,
    gx: Option<f64>,
    gy: Option<f64>,
    gz: Option<f64>,
    seats_left: i64,
    favourites: i64,
    confirmed: i64,
    popularity: i64,
    published_at: Option<DateTime<Utc>>,
    details: Json<Value>,
    position: i64,
}

const COLUMNS: [&str; 28] = [
    "activity_id",
    "organiser_id",
    "listed",
    "status",
    "visibility",
    "title",
    "description",
    "tags",
    "organiser",
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
    "seats_left",
    "favourites",
    "confirmed",
    "popularity",
    "published_at",
    "details",
    "position",
];

impl SearchRec {
    fn args(self) -> Vec<Arg> {
        vec![
            Arg::Uuid(Some(self.activity_id)),
            Arg::Uuid(Some(self.organiser_id)),
            Arg::Bool(Some(self.listed)),
            Arg::Text(Some(self.status)),
            Arg::Text(Some(self.visibility)),
            Arg::Text(Some(self.title)),
            Arg::Text(Some(self.description)),
            Arg::Text(Some(self.tags)),
            Arg::Text(Some(self.organiser)),
            Arg::Text(Some(self.category)),
            Arg::Time(Some(self.starts_at)),
            Arg::Time(Some(self.ends_at)),
            Arg::Int(self.age_min),
            Arg::Int(self.age_max),
            Arg::Bool(Some(self.free)),
            Arg::Bool(Some(self.online)),
            Arg::Float(self.lat),
            Arg::Float(self.lng),
            Arg::Float(self.gx),
            Arg::Float(self.gy),
            Arg::Float(self.gz),
            Arg::Int(Some(self.seats_left)),
            Arg::Int(Some(self.favourites)),
            Arg::Int(Some(self.confirmed)),
            Arg::Int(Some(self.popularity)),
            Arg::Time(self.published_at),
            Arg::Json(Some(self.details.0)),
            Arg::Int(Some(self.position)),
        ]
    }

    /// Copies the searchable and filterable fields of `d`.
    fn set_details(&mut self, d: &ActivityDetails) {
        let (lat, lng, g) = match &d.location {
            Location::Venue(v) => (Some(v.lat()), Some(v.lng()), Some(unit_vector(v.lat(), v.lng()))),
            Location::Online(_) => (None, None, None),
        };
        self.visibility = d.visibility.as_str().into();
        self.title = d.title.as_str().into();
        self.description = d.description.as_str().into();
        self.tags = d.tags.as_slice().join(" ");
        self.category = d.category.as_str().into();
        self.starts_at = d.time.starts_at();
        self.ends_at = d.time.ends_at();
        self.age_min = d.age_range.map(|a| i64::from(a.min()));
        self.age_max = d.age_range.map(|a| i64::from(a.max()));
        self.free = d.price.is_zero();
        self.online = d.location.is_online();
        (self.lat, self.lng) = (lat, lng);
        (self.gx, self.gy, self.gz) = (g.map(|g| g.0), g.map(|g| g.1), g.map(|g| g.2));
    }

    /// Listed while published and public.
    fn relist(&mut self) {
        self.listed = self.status == "published" && self.visibility == "public";
    }
}

/// A batch's events, decoded, with what they concern.
enum Decoded {
    Activity(Uuid, Box<ActivityEvent>),
    Organiser(Uuid, Option<String>),
    Favourite(Uuid, i64),
    Other,
}

fn decode_batch(events: &[RecordedEvent]) -> Result<Vec<Decoded>, BatchError> {
    use MemberEvent as M;
    events
        .iter()
        .enumerate()
        .map(|(index, e)| {
            let fail = |err| BatchError { index, error: ProjectionError::Store(err) };
            if let Some((member, m)) = decode_of::<Member>(e).map_err(fail)? {
                return Ok(match m {
                    M::OrganiserProfileCreated { organisation_name } => {
                        Decoded::Organiser(member, Some(organisation_name.as_str().to_owned()))
                    }
                    M::MemberForgotten { .. } => Decoded::Organiser(member, None),
                    M::ActivityFavourited { activity_id } => Decoded::Favourite(activity_id, 1),
                    M::ActivityUnfavourited { activity_id } => Decoded::Favourite(activity_id, -1),
                    M::MemberRegistered { .. }
                    | M::PasswordSet { .. }
                    | M::ProfileUpdated { .. }
                    | M::ChildAdded { .. }
                    | M::ChildRemoved { .. }
                    | M::MemberSuspended { .. }
                    | M::RoleGranted { .. }
                    | M::RoleRevoked { .. } => Decoded::Other,
                });
            }
            Ok(match decode_of::<Activity>(e).map_err(fail)? {
                Some((id, event)) => Decoded::Activity(id, Box::new(event)),
                None => Decoded::Other,
            })
        })
        .collect()
}

/// The rows a batch works on.
#[derive(Default)]
struct Fold {
    rows: HashMap<Uuid, SearchRec>,
    dirty: Touched,
    reindex: Touched,
    /// Organiser names known (loaded, or set in this batch).
    names: HashMap<Uuid, String>,
    /// Renames in order: (organiser, new name; empty once forgotten).
    renames: Vec<(Uuid, Option<String>)>,
    /// Confirmed bookings: loaded membership and this batch's changes.
    confirmed: HashMap<Uuid, (Uuid, bool)>,
    confirmed_changed: Touched,
}

impl Fold {
    /// Adds or removes a confirmed booking; ±1 when it changed.
    fn confirm(&mut self, activity: Uuid, booking: Uuid, add: bool) -> i64 {
        let was = self.confirmed.get(&booking).is_some_and(|(_, c)| *c);
        if was == add {
            return 0;
        }
        self.confirmed.insert(booking, (activity, add));
        self.confirmed_changed.mark(booking);
        if add { 1 } else { -1 }
    }

    fn apply(&mut self, e: &RecordedEvent, id: Uuid, event: ActivityEvent) {
        use ActivityEvent as E;
        if let E::ActivityDrafted { organiser_id, details, .. } = &event {
            if let std::collections::hash_map::Entry::Vacant(slot) = self.rows.entry(id) {
                let mut rec = SearchRec {
                    activity_id: id,
                    organiser_id: *organiser_id,
                    listed: false,
                    status: "draft".into(),
                    visibility: String::new(),
                    title: String::new(),
                    description: String::new(),
                    tags: String::new(),
                    organiser: self.names.get(organiser_id).cloned().unwrap_or_default(),
                    category: String::new(),
                    starts_at: details.time.starts_at(),
                    ends_at: details.time.ends_at(),
                    age_min: None,
                    age_max: None,
                    free: false,
                    online: false,
                    lat: None,
                    lng: None,
                    gx: None,
                    gy: None,
                    gz: None,
                    seats_left: i64::from(details.capacity.get()),
                    favourites: 0,
                    confirmed: 0,
                    popularity: 0,
                    published_at: None,
                    details: Json(crate::activities::details_view(id, *organiser_id, details)),
                    position: e.position,
                };
                rec.set_details(details);
                slot.insert(rec);
                self.dirty.mark(id);
            }
            return;
        }
        if !self.rows.contains_key(&id) {
            return;
        }
        let mut delta = 0;
        let mut seats_left = None;
        let mut reindex = false;
        match event {
            E::ActivityDrafted { .. } => {}
            E::ActivityDetailsUpdated { details, seats_left: left, .. } => {
                if let Some(r) = self.rows.get_mut(&id) {
                    let mut view = crate::activities::details_view(id, r.organiser_id, &details);
                    view["media"] = r.details.0.get("media").cloned().unwrap_or_else(|| json!([]));
                    r.details = Json(view);
                    r.set_details(&details);
                }
                seats_left = Some(left);
                reindex = true;
            }
            E::ActivitySubmitted {} => self.status(id, "pending"),
            E::ActivityRejected { .. } => self.status(id, "rejected"),
            E::ActivityPublished { .. } => {
                self.status(id, "published");
                if let Some(r) = self.rows.get_mut(&id) {
                    r.published_at = r.published_at.or(Some(e.recorded_at));
                }
                reindex = true;
            }
            E::ActivityCompleted { .. } => {
                self.status(id, "completed");
                reindex = true;
            }
            E::ActivityCancelled { .. } => {
                self.status(id, "cancelled");
                reindex = true;
            }
            E::ActivityRescheduled { time, .. } => {
                if let Some(r) = self.rows.get_mut(&id) {
                    r.details.0["starts_at"] = json!(time.starts_at());
                    r.details.0["ends_at"] = json!(time.ends_at());
                    (r.starts_at, r.ends_at) = (time.starts_at(), time.ends_at());
                }
            }
            E::MediaAttached { media_id, file } => {
                if let Some(list) =
                    self.rows.get_mut(&id).and_then(|r| r.details.0.get_mut("media")).and_then(|m| m.as_array_mut())
                {
                    list.push(json!({
                        "id": media_id, "kind": file.kind().as_str(), "content_type": file.content_type(),
                        "bytes": file.bytes(), "url": format!("/v1/media/{media_id}"),
                    }));
                }
            }
            E::BookingConfirmed { booking_id, seats_left: left, .. } => {
                delta = self.confirm(id, booking_id, true);
                seats_left = Some(left);
            }
            E::BookingCancelled { booking_id, seats_left: left, .. }
            | E::ReservationExpired { booking_id, seats_left: left, .. } => {
                delta = self.confirm(id, booking_id, false);
                seats_left = Some(left);
            }
            E::BookingReserved { seats_left: left, .. } => seats_left = Some(left),
            E::WaitlistJoined { .. }
            | E::WaitlistPromoted { .. }
            | E::GuestsInvited { .. }
            | E::InvitationAccepted { .. }
            | E::InvitationDeclined { .. }
            | E::AttendeeListSent { .. } => return,
        }
        if let Some(r) = self.rows.get_mut(&id) {
            if let Some(left) = seats_left {
                r.seats_left = i64::from(left);
            }
            r.confirmed += delta;
            r.popularity = r.favourites + r.confirmed;
            r.position = e.position;
        }
        self.dirty.mark(id);
        if reindex {
            self.reindex.mark(id);
        }
    }

    fn status(&mut self, id: Uuid, status: &str) {
        if let Some(r) = self.rows.get_mut(&id) {
            r.status = status.into();
            r.relist();
        }
    }

    fn organiser(&mut self, member: Uuid, name: Option<String>) {
        let shown = name.clone().unwrap_or_default();
        match &name {
            Some(n) => self.names.insert(member, n.clone()),
            None => self.names.remove(&member),
        };
        for r in self.rows.values_mut().filter(|r| r.organiser_id == member) {
            r.organiser = shown.clone();
            self.dirty.mark(r.activity_id);
            self.reindex.mark(r.activity_id);
        }
        self.renames.push((member, name));
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
        self.apply_all(tx, at, std::slice::from_ref(e)).await.map_err(|b| b.error)
    }

    async fn apply_all(&self, tx: &mut Tx, at: Target, events: &[RecordedEvent]) -> Result<(), BatchError> {
        let decoded = decode_batch(events)?;
        let (t, conf, orgs) =
            (at.table("activity_search"), at.table("search_confirmed"), at.table("search_organisers"));
        let (mut ids, mut bookings, mut organisers) = (Vec::new(), Vec::new(), Vec::new());
        for d in &decoded {
            match d {
                Decoded::Activity(id, e) => {
                    ids.push(*id);
                    match e.as_ref() {
                        ActivityEvent::ActivityDrafted { organiser_id, .. } => organisers.push(*organiser_id),
                        ActivityEvent::BookingConfirmed { booking_id, .. }
                        | ActivityEvent::BookingCancelled { booking_id, .. }
                        | ActivityEvent::ReservationExpired { booking_id, .. } => bookings.push(*booking_id),
                        _ => {}
                    }
                }
                Decoded::Organiser(m, _) => organisers.push(*m),
                Decoded::Favourite(a, _) => ids.push(*a),
                Decoded::Other => {}
            }
        }
        if ids.is_empty() && organisers.is_empty() {
            return Ok(());
        }
        for v in [&mut ids, &mut bookings, &mut organisers] {
            v.sort_unstable();
            v.dedup();
        }
        let mut fold = Fold::default();
        let select = format!("SELECT {} FROM {t}", COLUMNS.join(", "));
        for r in rows_by_id::<SearchRec>(tx, &select, "activity_id", &ids).await? {
            fold.rows.insert(r.activity_id, r);
        }
        let select = format!("SELECT booking_id, activity_id FROM {conf}");
        for (b, a) in rows_by_id::<(Uuid, Uuid)>(tx, &select, "booking_id", &bookings).await? {
            fold.confirmed.insert(b, (a, true));
        }
        let select = format!("SELECT member_id, name FROM {orgs}");
        for (m, n) in rows_by_id::<(Uuid, String)>(tx, &select, "member_id", &organisers).await? {
            fold.names.insert(m, n);
        }
        for (e, d) in events.iter().zip(decoded) {
            match d {
                Decoded::Activity(id, event) => fold.apply(e, id, *event),
                Decoded::Organiser(member, name) => fold.organiser(member, name),
                Decoded::Favourite(id, delta) => {
                    if let Some(r) = fold.rows.get_mut(&id) {
                        r.favourites = (r.favourites + delta).max(0);
                        r.popularity = r.favourites + r.confirmed;
                        fold.dirty.mark(id);
                    }
                }
                Decoded::Other => {}
            }
        }
        // Organiser names: the table, then every row of theirs not in this batch.
        for (member, name) in std::mem::take(&mut fold.renames) {
            let args = Args(vec![Arg::Uuid(Some(member)), Arg::Text(Some(name.clone().unwrap_or_default()))]);
            match &name {
                Some(_) => {
                    let sql = format!(
                        "INSERT INTO {orgs} (member_id, name) VALUES ($1, $2) \
                         ON CONFLICT (member_id) DO UPDATE SET name = excluded.name"
                    );
                    execute(tx, sql, args.clone()).await?;
                }
                None => {
                    execute(
                        tx,
                        format!("DELETE FROM {orgs} WHERE member_id = $1"),
                        Args(vec![Arg::Uuid(Some(member))]),
                    )
                    .await?;
                }
            }
            let sql = format!("UPDATE {t} SET organiser = $2 WHERE organiser_id = $1 RETURNING activity_id");
            for (id,) in fetch_all_tx::<(Uuid,)>(tx, sql, args).await? {
                fold.reindex.mark(id);
            }
        }
        // Confirmed bookings that changed.
        let (added, removed): (Vec<_>, Vec<_>) = fold
            .confirmed_changed
            .iter()
            .filter_map(|b| fold.confirmed.get(b).map(|(a, c)| (*b, *a, *c)))
            .partition(|(_, _, c)| *c);
        let rows = added.iter().map(|(b, a, _)| vec![Arg::Uuid(Some(*b)), Arg::Uuid(Some(*a))]).collect();
        upsert(tx, &conf, &["booking_id"], &["booking_id", "activity_id"], rows).await?;
        for chunk in removed.chunks(1_000) {
            let mut args = Args::default();
            let marks: Vec<String> = chunk.iter().map(|(b, _, _)| args.push(Arg::Uuid(Some(*b)))).collect();
            execute(tx, format!("DELETE FROM {conf} WHERE booking_id IN ({})", marks.join(", ")), args).await?;
        }
        let rows: Vec<Vec<Arg>> =
            fold.dirty.iter().filter_map(|id| fold.rows.remove(id)).map(SearchRec::args).collect();
        upsert(tx, &t, &["activity_id"], &COLUMNS, rows).await?;
        for id in fold.reindex.iter() {
            reindex(tx, at, *id).await?;
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
