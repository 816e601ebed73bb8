//! The query endpoints of API.md beyond `GET /v1/me` and `GET /v1/activities/{id}`:
//! search, an organiser's activities, the moderation queue, attendees, history,
//! bookings, a member's lists, chats and messages. Each declares the projections it
//! reads, so `Gather-Min-Position` waits for exactly those (see `http::consistent_read`).
//! Lists are keyset-paged: `limit` 1–100 (default 20), an opaque `cursor`, and
//! `{items, next_cursor}`.

use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::Path;
use crate::http::{consistent_read, read_response};
use crate::state::AppState;
use axum::extract::{FromRequestParts, State};
use axum::http::HeaderMap;
use axum::http::request::Parts;
use axum::response::Response;
use chrono::{DateTime, Utc};
use gather_domain::Role;
use gather_domain::activity::{Activity, ActivityEvent, ActivityState};
use gather_domain::values::Email;
use gather_domain::{Aggregate, DomainEvent};
use gather_projections::queries::{self, Cursor, Page, decode_cursor, encode_cursor};
use gather_projections::search::{self, SearchCursor, SearchQuery, Sort};
use serde_json::{Value, json};
use std::collections::HashMap;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(search_activities))
        .routes(routes!(organiser_activities))
        .routes(routes!(moderation_queue))
        .routes(routes!(attendees))
        .routes(routes!(history))
        .routes(routes!(booking))
        .routes(routes!(my_bookings))
        .routes(routes!(my_favourites))
        .routes(routes!(my_invitations))
        .routes(routes!(my_chats))
        .routes(routes!(chat))
        .routes(routes!(chat_messages))
}

/// The query string as name → value; a malformed one is a 400 problem.
pub struct Params(HashMap<String, String>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        match axum::extract::Query::<HashMap<String, String>>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(map)) => Ok(Params(map)),
            Err(e) => Err(ApiError::BadRequest {
                detail: format!("malformed query string: {}", e.body_text()),
                errors: vec![],
            }),
        }
    }
}

/// The longest free-text query accepted.
const MAX_Q: usize = 500;

impl Params {
    fn text(&self, name: &str, max: usize) -> Result<Option<String>, ApiError> {
        match self.0.get(name).map(|s| s.trim()) {
            None | Some("") => Ok(None),
            Some(s) if s.chars().count() > max => Err(ApiError::field(name, format!("at most {max} characters"))),
            Some(s) if s.chars().any(|c| c.is_control()) => {
                Err(ApiError::field(name, "must not contain control characters"))
            }
            Some(s) => Ok(Some(s.to_owned())),
        }
    }

    fn parse<T: std::str::FromStr>(&self, name: &str, what: &str) -> Result<Option<T>, ApiError> {
        match self.0.get(name).map(|s| s.trim()) {
            None | Some("") => Ok(None),
            Some(s) => s.parse().map(Some).map_err(|_| ApiError::field(name, format!("must be {what}"))),
        }
    }

    fn bool(&self, name: &str) -> Result<Option<bool>, ApiError> {
        self.parse(name, "true or false")
    }

    fn time(&self, name: &str) -> Result<Option<DateTime<Utc>>, ApiError> {
        self.parse(name, "an RFC 3339 time, e.g. 2030-05-01T14:00:00Z")
    }

    /// `limit` (1–100, default 20).
    fn limit(&self) -> Result<i64, ApiError> {
        match self.parse::<i64>("limit", "an integer from 1 to 100")? {
            None => Ok(20),
            Some(n) if (1..=100).contains(&n) => Ok(n),
            Some(_) => Err(ApiError::field("limit", "must be an integer from 1 to 100")),
        }
    }

    /// `cursor` of a list (a token from a previous `next_cursor`).
    fn cursor<T: serde::de::DeserializeOwned>(&self) -> Result<Option<T>, ApiError> {
        match self.0.get("cursor").map(|s| s.trim()) {
            None | Some("") => Ok(None),
            Some(token) => decode_cursor(token)
                .map(Some)
                .ok_or_else(|| ApiError::field("cursor", "is not a cursor this list handed out")),
        }
    }
}

/// `{items, next_cursor}` with `Gather-Position`.
fn page_response(page: Page, position: i64) -> Response {
    read_response(json!({"items": page.items, "next_cursor": page.next.as_ref().map(encode_cursor)}), position, None)
}

/// A cursor whose key has the wrong type is as bad as a malformed one.
fn checked(c: Option<Cursor>, ok: impl Fn(&Value) -> bool) -> Result<Option<Cursor>, ApiError> {
    match c {
        Some(c) if !ok(&c.key) => Err(ApiError::field("cursor", "is not a cursor this list handed out")),
        c => Ok(c),
    }
}

fn time_key(v: &Value) -> bool {
    v.as_str().is_some_and(|s| s.parse::<DateTime<Utc>>().is_ok())
}

fn int_key(v: &Value) -> bool {
    v.as_i64().is_some()
}

/// `GET /v1/activities`: search over published public activities.
#[utoipa::path(get, path = "/v1/activities", tag = "activities", params(crate::openapi::SearchParams), responses((status = 200, description = "A page of matches with category facets", body = crate::openapi::SearchPage)), security((), ("bearer" = [])))]
async fn search_activities(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let q = params.text("q", MAX_Q)?;
    let sort = match params.0.get("sort").map(|s| s.trim()) {
        None | Some("") => {
            if q.is_some() {
                Sort::Relevance
            } else {
                Sort::Soonest
            }
        }
        Some("relevance") => Sort::Relevance,
        Some("soonest") => Sort::Soonest,
        Some("popular") => Sort::Popular,
        Some("newest") => Sort::Newest,
        Some(_) => return Err(ApiError::field("sort", "must be relevance, soonest, popular or newest")),
    };
    if sort == Sort::Relevance && q.is_none() {
        return Err(ApiError::field("sort", "relevance needs a text query q"));
    }
    let near = match params.text("near", 100)? {
        None => None,
        Some(s) => {
            let bad = || ApiError::field("near", "must be LAT,LNG with -90 ≤ LAT ≤ 90 and -180 ≤ LNG ≤ 180");
            let (lat, lng) = s.split_once(',').ok_or_else(bad)?;
            let (lat, lng): (f64, f64) =
                (lat.trim().parse().map_err(|_| bad())?, lng.trim().parse().map_err(|_| bad())?);
            if !(lat.is_finite() && lng.is_finite() && (-90.0..=90.0).contains(&lat) && (-180.0..=180.0).contains(&lng))
            {
                return Err(bad());
            }
            let radius = params.parse::<f64>("radius_km", "a number of kilometres")?.unwrap_or(25.0);
            if !(radius.is_finite() && radius > 0.0 && radius <= 20_000.0) {
                return Err(ApiError::field("radius_km", "must be more than 0 and at most 20000"));
            }
            Some((lat, lng, radius))
        }
    };
    if near.is_none() && params.0.contains_key("radius_km") {
        return Err(ApiError::field("radius_km", "needs near=LAT,LNG"));
    }
    let age = params.parse::<i64>("age", "an integer from 0 to 18")?;
    if age.is_some_and(|a| !(0..=18).contains(&a)) {
        return Err(ApiError::field("age", "must be an integer from 0 to 18"));
    }
    let seats = params.parse::<i64>("seats", "a positive integer")?;
    if seats.is_some_and(|s| !(1..=100_000).contains(&s)) {
        return Err(ApiError::field("seats", "must be an integer from 1 to 100000"));
    }
    let (from, to) = (params.time("from")?, params.time("to")?);
    if let (Some(f), Some(t)) = (from, to)
        && f > t
    {
        return Err(ApiError::field("to", "must not be before from"));
    }
    let after: Option<SearchCursor> = params.cursor()?;
    if let Some(c) = &after {
        let key_ok = match sort {
            Sort::Relevance => c.key.as_u64().map(f64::from_bits).is_some_and(f64::is_finite),
            Sort::Popular => c.key.as_i64().is_some(),
            Sort::Soonest | Sort::Newest => time_key(&c.key),
        };
        if c.sort != sort || !key_ok {
            return Err(ApiError::field("cursor", "belongs to another sort or is not a search cursor"));
        }
    }
    let query = SearchQuery {
        q,
        category: params.text("category", 60)?,
        from,
        to,
        age,
        free: params.bool("free")?,
        online: params.bool("online")?,
        near,
        seats,
        sort,
        after,
        limit: params.limit()?,
    };
    let position = consistent_read(&state, &headers, &["search"]).await?;
    let page = search::search(&state.db, &query).await?;
    let body = json!({
        "items": page.items,
        "next_cursor": page.next_cursor.as_ref().map(encode_cursor),
        "facets": {"category": page.facets},
    });
    Ok(read_response(body, position, None))
}

/// `GET /v1/organiser/activities?status=`: the organiser's own activities, newest first.
#[utoipa::path(get, path = "/v1/organiser/activities", tag = "activities", params(crate::openapi::StatusParams), responses((status = 200, description = "A page", body = crate::openapi::ActivityPage)), security(("bearer" = [])))]
async fn organiser_activities(
    State(state): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    auth.require(Role::Organiser)?;
    let status = params.text("status", 20)?;
    if let Some(s) = &status
        && !["draft", "pending", "published", "rejected", "cancelled", "completed"].contains(&s.as_str())
    {
        return Err(ApiError::field("status", "must be draft, pending, published, rejected, cancelled or completed"));
    }
    let (after, limit) = (checked(params.cursor()?, time_key)?, params.limit()?);
    let position = consistent_read(&state, &headers, &["activities"]).await?;
    let page = queries::organiser_activities(&state.db, auth.0.id, status.as_deref(), after, limit).await?;
    Ok(page_response(page, position))
}

/// `GET /v1/moderation/queue`: pending activities, oldest submission first.
#[utoipa::path(get, path = "/v1/moderation/queue", tag = "activities", params(crate::openapi::Paging), responses((status = 200, description = "A page", body = crate::openapi::ActivityPage)), security(("bearer" = [])))]
async fn moderation_queue(
    State(state): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    auth.require(Role::Moderator)?;
    let (after, limit) = (checked(params.cursor()?, time_key)?, params.limit()?);
    let position = consistent_read(&state, &headers, &["activities"]).await?;
    Ok(page_response(queries::moderation_queue(&state.db, after, limit).await?, position))
}

/// The activity's row if it exists (404 otherwise).
async fn activity_row(state: &AppState, id: Uuid) -> Result<queries::ActivityRow, ApiError> {
    queries::activity(&state.db, id).await?.ok_or_else(|| ApiError::NotFound(format!("no activity {id}")))
}

fn forbidden(detail: &str) -> ApiError {
    ApiError::Forbidden { code: "forbidden", detail: detail.into() }
}

/// `GET /v1/activities/{id}/attendees`: confirmed attendees and the waitlist (owner).
#[utoipa::path(get, path = "/v1/activities/{id}/attendees", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), responses((status = 200, description = "Attendees", body = crate::openapi::Attendees)), security(("bearer" = [])))]
async fn attendees(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let position = consistent_read(&state, &headers, &["activities", "members"]).await?;
    let row = activity_row(&state, id).await?;
    if row.organiser_id != actor.id {
        return Err(forbidden("only the activity's organiser sees its attendees"));
    }
    let (confirmed, waitlist) = queries::attendees(&state.db, id).await?;
    let seats: i64 = confirmed.iter().filter_map(|a| a["seats"].as_i64()).sum();
    let body = json!({"activity_id": id, "seats_confirmed": seats, "attendees": confirmed, "waitlist": waitlist});
    Ok(read_response(body, position, Some(row.version)))
}

/// `GET /v1/activities/{id}/bookings/{booking_id}`: the booking's member or the owner.
#[utoipa::path(get, path = "/v1/activities/{id}/bookings/{booking_id}", tag = "bookings", params(("id" = Uuid, Path, description = "The activity id"), ("booking_id" = Uuid, Path, description = "The booking id")), responses((status = 200, description = "The booking", body = crate::openapi::BookingView)), security(("bearer" = [])))]
async fn booking(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path((id, booking_id)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    let position = consistent_read(&state, &headers, &["activities"]).await?;
    let not_found = || ApiError::NotFound(format!("no booking {booking_id} of activity {id}"));
    let b = queries::booking(&state.db, id, booking_id).await?.ok_or_else(not_found)?;
    if b.member_id != actor.id {
        let row = activity_row(&state, id).await?;
        if row.organiser_id != actor.id {
            // Someone else's booking: as if it did not exist.
            return Err(not_found());
        }
    }
    Ok(read_response(b.view(), position, None))
}

/// `GET /v1/activities/{id}/history?as_of_version=&as_of_time=` (owner, auditor): the
/// stream's events with metadata, and the state folded up to that point, from the log.
#[utoipa::path(get, path = "/v1/activities/{id}/history", tag = "activities", params(("id" = Uuid, Path, description = "The activity id"), crate::openapi::HistoryParams), responses((status = 200, description = "History", body = crate::openapi::History)), security(("bearer" = [])))]
async fn history(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    params: Params,
) -> Result<Response, ApiError> {
    let as_of_version = params.parse::<i64>("as_of_version", "a non-negative integer")?;
    if as_of_version.is_some_and(|v| v < 0) {
        return Err(ApiError::field("as_of_version", "must be a non-negative integer"));
    }
    let as_of_time = params.time("as_of_time")?;
    let position = consistent_read(&state, &headers, &[]).await?;
    let stream = format!("{}-{id}", Activity::CATEGORY);
    let mut events = Vec::new();
    let mut from = 0;
    loop {
        let page = state.store.read_stream_page(&stream, from, false, 500).await?;
        let n = page.len();
        for e in page {
            if as_of_version.is_some_and(|v| e.version > v) || as_of_time.is_some_and(|t| e.recorded_at > t) {
                continue;
            }
            from = from.max(e.version + 1);
            events.push(e);
        }
        if n < 500 || as_of_version.is_some_and(|v| from > v) {
            break;
        }
    }
    if events.is_empty() {
        return Err(ApiError::NotFound(format!("no activity {id}")));
    }
    let decoded: Vec<ActivityEvent> = events
        .iter()
        .map(|e| gather_projections::events::decode_of::<Activity>(e).map(|d| d.map(|(_, ev)| ev)))
        .collect::<Result<Vec<_>, _>>()?
        .into_iter()
        .flatten()
        .collect();
    let folded = Activity::fold(decoded.iter());
    if folded.organiser_id != actor.id && !actor.has(Role::Auditor) {
        return Err(forbidden("only the activity's organiser or an auditor reads its history"));
    }
    let items: Vec<Value> = events
        .iter()
        .zip(decoded.iter())
        .map(|(e, ev)| {
            json!({
                "position": e.position, "stream": e.stream, "version": e.version, "type": ev.event_type(),
                "data": e.data,
                "metadata": {
                    "event_id": e.event_id, "command_id": e.command_id, "correlation_id": e.correlation_id,
                    "causation_id": e.causation_id, "actor": e.actor, "recorded_at": e.recorded_at,
                    "schema_version": e.schema_version,
                },
            })
        })
        .collect();
    let version = events.last().map(|e| e.version);
    let body = json!({"activity_id": id, "version": version, "events": items, "state": state_view(&folded)});
    Ok(read_response(body, position, version))
}

/// The folded state as the history endpoint shows it.
fn state_view(s: &ActivityState) -> Value {
    let mut v = match &s.details {
        Some(d) => gather_projections::activities::details_view(s.activity_id, s.organiser_id, d),
        None => json!({"id": s.activity_id, "organiser_id": s.organiser_id}),
    };
    gather_projections::activities::link_series(&mut v, s.series);
    v["status"] = json!(s.status.as_str());
    v["seats_taken"] = json!(s.seats_taken);
    v["seats_left"] = json!(s.seats_left());
    v["media"] = s
        .media
        .iter()
        .map(|(id, f)| json!({"id": id, "kind": f.kind().as_str(), "content_type": f.content_type(), "bytes": f.bytes()}))
        .collect();
    v["bookings"] = s
        .bookings
        .iter()
        .map(|(id, b)| json!({"id": id, "member_id": b.member_id, "seats": b.seats, "status": b.status.as_str()}))
        .collect();
    v["waitlist"] = json!(s.waitlist);
    v["invitations"] = json!(s.invitations.len());
    v["rejection_reason"] = json!(s.rejection_reason.as_ref().map(|r| r.as_str()));
    v
}

/// `GET /v1/me/bookings?when=upcoming|past`.
#[utoipa::path(get, path = "/v1/me/bookings", tag = "members", params(crate::openapi::WhenParams), responses((status = 200, description = "A page", body = crate::openapi::BookingPage)), security(("bearer" = [])))]
async fn my_bookings(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let upcoming = match params.0.get("when").map(|s| s.trim()) {
        None | Some("") | Some("upcoming") => true,
        Some("past") => false,
        Some(_) => return Err(ApiError::field("when", "must be upcoming or past")),
    };
    let (after, limit) = (checked(params.cursor()?, time_key)?, params.limit()?);
    let position = consistent_read(&state, &headers, &["activities"]).await?;
    let page = queries::member_bookings(&state.db, actor.id, upcoming, Utc::now(), after, limit).await?;
    Ok(page_response(page, position))
}

/// `GET /v1/me/favourites`.
#[utoipa::path(get, path = "/v1/me/favourites", tag = "members", params(crate::openapi::Paging), responses((status = 200, description = "A page", body = crate::openapi::ActivityPage)), security(("bearer" = [])))]
async fn my_favourites(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let (after, limit) = (checked(params.cursor()?, int_key)?, params.limit()?);
    let position = consistent_read(&state, &headers, &["favourites", "activities"]).await?;
    Ok(page_response(queries::member_favourites(&state.db, actor.id, after, limit).await?, position))
}

/// `GET /v1/me/invitations`: invitations addressed to the member's email.
#[utoipa::path(get, path = "/v1/me/invitations", tag = "members", params(crate::openapi::Paging), responses((status = 200, description = "A page", body = crate::openapi::InvitationPage)), security(("bearer" = [])))]
async fn my_invitations(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let (after, limit) = (checked(params.cursor()?, int_key)?, params.limit()?);
    let position = consistent_read(&state, &headers, &["invitations", "members", "activities"]).await?;
    let Some(email) = member_email(&state, actor.id).await? else {
        return Ok(page_response(Page { items: vec![], next: None }, position));
    };
    Ok(page_response(queries::invitations_to(&state.db, &email, after, limit).await?, position))
}

/// The member's normalized email, as invitations are addressed.
async fn member_email(state: &AppState, member: Uuid) -> Result<Option<String>, ApiError> {
    let m = queries::member(&state.db, member).await?;
    Ok(m.and_then(|m| Email::parse(&m.email).ok()).map(|e| e.normalized()))
}

/// Whether `member` was invited to `activity` (invite-only activities are visible to them).
pub async fn invited(state: &AppState, activity: Uuid, member: Uuid) -> Result<bool, ApiError> {
    match member_email(state, member).await? {
        Some(email) => Ok(queries::is_invited(&state.db, activity, &email).await?),
        None => Ok(false),
    }
}

/// `GET /v1/me/chats`: the member's chats, most recently active first.
#[utoipa::path(get, path = "/v1/me/chats", tag = "members", params(crate::openapi::Paging), responses((status = 200, description = "A page", body = crate::openapi::ChatPage)), security(("bearer" = [])))]
async fn my_chats(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    let (after, limit) = (checked(params.cursor()?, time_key)?, params.limit()?);
    let position = consistent_read(&state, &headers, &["chats"]).await?;
    Ok(page_response(queries::member_chats(&state.db, actor.id, after, limit).await?, position))
}

/// Refuses (404) anyone who is not in the chat: its existence is not disclosed.
async fn require_chat_member(state: &AppState, chat: Uuid, member: Uuid) -> Result<(), ApiError> {
    if queries::is_chat_member(&state.db, chat, member).await? {
        Ok(())
    } else {
        Err(ApiError::NotFound(format!("no chat {chat} with this member in it")))
    }
}

/// `GET /v1/chats/{id}` (chat members).
#[utoipa::path(get, path = "/v1/chats/{id}", tag = "chats", params(("id" = Uuid, Path, description = "The chat id")), responses((status = 200, description = "The chat", body = crate::openapi::ChatView)), security(("bearer" = [])))]
async fn chat(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let position = consistent_read(&state, &headers, &["chats", "members"]).await?;
    require_chat_member(&state, id, actor.id).await?;
    let body = queries::chat(&state.db, id).await?.ok_or_else(|| ApiError::NotFound(format!("no chat {id}")))?;
    Ok(read_response(body, position, None))
}

/// `GET /v1/chats/{id}/messages` (chat members): newest first.
#[utoipa::path(get, path = "/v1/chats/{id}/messages", tag = "chats", params(("id" = Uuid, Path, description = "The chat id"), crate::openapi::Paging), responses((status = 200, description = "A page", body = crate::openapi::MessagePage)), security(("bearer" = [])))]
async fn chat_messages(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    params: Params,
) -> Result<Response, ApiError> {
    let (after, limit) = (checked(params.cursor()?, int_key)?, params.limit()?);
    let position = consistent_read(&state, &headers, &["chats"]).await?;
    require_chat_member(&state, id, actor.id).await?;
    Ok(page_response(queries::chat_messages(&state.db, id, after, limit).await?, position))
}
