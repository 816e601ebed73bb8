//! Activities: create, read, edit and the lifecycle (submit, approve, reject, publish,
//! reschedule, cancel). Ownership and roles are domain rules.

use crate::auth::{Authed, MaybeAuthed};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::http::{accepted, command_response, consistent_read, read_response, run_command};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::{DateTime, Utc};
use gather_domain::Role;
use gather_domain::activity::{
    Activity, ActivityCommand, ActivityDetails, ActivityPatch, RawActivityDetails, RawLocation, Visibility,
};
use gather_domain::values::{AgeRange, Capacity, Category, Description, Money, Reason, Tags, TimeRange, Title};
use gather_projections::queries;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(show, update))
        .routes(routes!(submit))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(publish))
        .routes(routes!(reschedule))
        .routes(routes!(cancel))
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct PriceBody {
    #[schema(minimum = 0, maximum = 100_000_000)]
    pub(crate) amount: i64,
    #[schema(pattern = "^[A-Za-z]{3}$")]
    pub(crate) currency: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub(crate) enum LocationBody {
    Venue { name: String, address: String, lat: f64, lng: f64 },
    Online { url: String },
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub(crate) enum VisibilityBody {
    Public,
    InviteOnly,
}

/// `POST /v1/activities` as API.md lists it.
#[derive(Deserialize, utoipa::ToSchema)]
struct CreateActivity {
    #[schema(min_length = 3, max_length = 120)]
    title: String,
    #[serde(default)]
    #[schema(max_length = 5000)]
    description: String,
    #[schema(min_length = 2, max_length = 40)]
    category: String,
    #[serde(default)]
    #[schema(max_items = 10)]
    tags: Vec<String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    #[schema(minimum = 1, maximum = 100_000)]
    capacity: i64,
    price: PriceBody,
    visibility: VisibilityBody,
    location: LocationBody,
    #[schema(minimum = 0, maximum = 18)]
    age_min: Option<i64>,
    #[schema(minimum = 0, maximum = 18)]
    age_max: Option<i64>,
    #[serde(default)]
    waitlist: bool,
}

impl CreateActivity {
    fn parse(self) -> Result<ActivityDetails, ApiError> {
        Ok(ActivityDetails::parse(RawActivityDetails {
            title: self.title,
            description: self.description,
            category: self.category,
            tags: self.tags,
            starts_at: self.starts_at,
            ends_at: self.ends_at,
            capacity: self.capacity,
            price_amount: self.price.amount,
            price_currency: self.price.currency,
            visibility: self.visibility.into_domain(),
            location: self.location.into_raw(),
            age_min: self.age_min,
            age_max: self.age_max,
            waitlist: self.waitlist,
        })?)
    }
}

/// Creates a draft activity (organiser).
#[utoipa::path(post, path = "/v1/activities", tag = "activities", request_body(content = CreateActivity, example = json!({"title": "Bouldering for beginners", "description": "Two hours on the wall, shoes included.", "category": "sports", "tags": ["climbing", "indoor"], "starts_at": "2030-05-01T14:00:00Z", "ends_at": "2030-05-01T16:00:00Z", "capacity": 12, "price": {"amount": 1500, "currency": "EUR"}, "visibility": "public", "location": {"kind": "venue", "name": "Klimmuur", "address": "Naritaweg 48, Amsterdam", "lat": 52.39, "lng": 4.84}, "age_min": 8, "age_max": 16, "waitlist": true})), responses((status = 201, description = "Created; `Location` points at it", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    Json(body): Json<CreateActivity>,
) -> Result<Response, ApiError> {
    auth.require(Role::Organiser)?;
    let details = body.parse()?;
    let activity_id = crate::http::new_id(&headers, auth.0.id, "activities", "activity");
    let command = ActivityCommand::Create { activity_id, details };
    let outcome = run_command::<Activity>(&state, auth.0, &headers, "activities", activity_id, command).await?;
    let id = outcome.stream.strip_prefix("activity-").and_then(|s| Uuid::parse_str(s).ok()).unwrap_or(activity_id);
    let mut res = command_response(StatusCode::CREATED, id, &outcome, json!({}));
    if let Ok(loc) = format!("/v1/activities/{id}").parse() {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

/// An activity: guests see published public ones, invitees the invite-only one they were invited to, its organiser and moderators always.
#[utoipa::path(get, path = "/v1/activities/{id}", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), responses((status = 200, description = "The activity, with `ETag` = its version", body = crate::openapi::ActivityView)), security((), ("bearer" = [])))]
async fn show(
    State(state): State<AppState>,
    MaybeAuthed(actor): MaybeAuthed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let position = consistent_read(&state, &headers, &["activities", "invitations", "members"]).await?;
    let row = visible_activity(&state, actor.as_ref(), id).await?;
    let mut body = row.details.0;
    body["status"] = json!(row.status);
    body["seats_left"] = json!(row.seats_left);
    body["favourites"] = json!(row.favourites);
    body["confirmed_bookings"] = json!(row.confirmed);
    body["popularity"] = json!(row.favourites + row.confirmed);
    body["version"] = json!(row.version);
    Ok(read_response(body, position, Some(row.version)))
}

/// The activity `id` if `actor` may see it (a 404 otherwise, as if it did not exist):
/// published public activities for everyone, its organiser and moderators always, an
/// invitee the invite-only activity it was invited to once published.
pub(crate) async fn visible_activity(
    state: &AppState,
    actor: Option<&gather_domain::Actor>,
    id: Uuid,
) -> Result<queries::ActivityRow, ApiError> {
    let not_found = || ApiError::NotFound(format!("no activity {id}"));
    let row = queries::activity(&state.db, id).await?.ok_or_else(not_found)?;
    let public = row.status == "published" || row.status == "completed" || row.status == "cancelled";
    let mut visible = (public && row.visibility == "public")
        || actor.is_some_and(|a| a.id == row.organiser_id || a.has(Role::Moderator));
    if !visible
        && public
        && let Some(a) = actor
    {
        visible = crate::routes::reads::invited(state, id, a.id).await?;
    }
    if !visible {
        return Err(not_found());
    }
    Ok(row)
}

impl LocationBody {
    pub(crate) fn into_raw(self) -> RawLocation {
        match self {
            LocationBody::Venue { name, address, lat, lng } => RawLocation::Venue { name, address, lat, lng },
            LocationBody::Online { url } => RawLocation::Online { url },
        }
    }
}

impl VisibilityBody {
    pub(crate) fn into_domain(self) -> Visibility {
        match self {
            VisibilityBody::Public => Visibility::Public,
            VisibilityBody::InviteOnly => Visibility::InviteOnly,
        }
    }
}

/// `PATCH /v1/activities/{id}`: any subset of the creation fields.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateActivity {
    #[schema(min_length = 3, max_length = 120)]
    title: Option<String>,
    #[schema(max_length = 5000)]
    description: Option<String>,
    #[schema(min_length = 2, max_length = 40)]
    category: Option<String>,
    #[schema(max_items = 10)]
    tags: Option<Vec<String>>,
    starts_at: Option<DateTime<Utc>>,
    ends_at: Option<DateTime<Utc>>,
    #[schema(minimum = 1, maximum = 100_000)]
    capacity: Option<i64>,
    price: Option<PriceBody>,
    visibility: Option<VisibilityBody>,
    location: Option<LocationBody>,
    #[schema(minimum = 0, maximum = 18)]
    age_min: Option<i64>,
    #[schema(minimum = 0, maximum = 18)]
    age_max: Option<i64>,
    waitlist: Option<bool>,
}

impl UpdateActivity {
    fn parse(self) -> Result<ActivityPatch, ApiError> {
        let time = match (self.starts_at, self.ends_at) {
            (None, None) => None,
            (Some(s), Some(e)) => Some(TimeRange::parse(s, e)?),
            _ => return Err(ApiError::field("ends_at", "starts_at and ends_at change together")),
        };
        let age_range = match (self.age_min, self.age_max) {
            (None, None) => None,
            (Some(min), Some(max)) => Some(Some(AgeRange::parse(min, max)?)),
            _ => return Err(ApiError::field("age_max", "age_min and age_max change together")),
        };
        let patch = ActivityPatch {
            title: self.title.as_deref().map(Title::parse).transpose()?,
            description: self.description.as_deref().map(Description::parse).transpose()?,
            category: self.category.as_deref().map(Category::parse).transpose()?,
            tags: self.tags.map(Tags::parse).transpose()?,
            time,
            capacity: self.capacity.map(Capacity::parse).transpose()?,
            price: self.price.map(|p| Money::parse(p.amount, &p.currency)).transpose()?,
            visibility: self.visibility.map(VisibilityBody::into_domain),
            location: self.location.map(|l| l.into_raw().parse()).transpose()?,
            age_range,
            waitlist: self.waitlist,
        };
        if patch == ActivityPatch::default() {
            return Err(ApiError::field("body", "nothing to change"));
        }
        Ok(patch)
    }
}

/// Changes any subset of the details (owner).
#[utoipa::path(patch, path = "/v1/activities/{id}", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), request_body(content = UpdateActivity, example = json!({"capacity": 16})), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateActivity>,
) -> Result<Response, ApiError> {
    let patch = body.parse()?;
    let outcome = run_command::<Activity>(
        &state,
        actor,
        &headers,
        "activities/update",
        id,
        ActivityCommand::UpdateDetails { patch },
    )
    .await?;
    Ok(accepted(id, &outcome))
}

/// `{reason}` for reject and cancel.
#[derive(Deserialize, utoipa::ToSchema)]
pub(crate) struct ReasonBody {
    #[schema(min_length = 1, max_length = 1000)]
    pub(crate) reason: String,
}

/// `{starts_at, ends_at}` for reschedule.
#[derive(Deserialize, utoipa::ToSchema)]
struct RescheduleBody {
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
}

/// An activity command answered with `202`.
async fn lifecycle(
    state: AppState,
    actor: gather_domain::Actor,
    headers: HeaderMap,
    id: Uuid,
    route: &str,
    command: ActivityCommand,
) -> Result<Response, ApiError> {
    crate::http::run_accepted::<Activity>(state, actor, headers, id, route, command).await
}

/// Submits a draft for moderation (owner).
#[utoipa::path(post, path = "/v1/activities/{id}/submit", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn submit(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    lifecycle(state, actor, headers, id, "activities/submit", ActivityCommand::Submit).await
}

/// Approves a pending activity (moderator).
#[utoipa::path(post, path = "/v1/activities/{id}/approve", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn approve(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    lifecycle(state, actor, headers, id, "activities/approve", ActivityCommand::Approve).await
}

/// Publishes an approved activity (owner).
#[utoipa::path(post, path = "/v1/activities/{id}/publish", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn publish(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    lifecycle(state, actor, headers, id, "activities/publish", ActivityCommand::Publish).await
}

/// Rejects a pending activity (moderator).
#[utoipa::path(post, path = "/v1/activities/{id}/reject", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), request_body(content = ReasonBody, example = json!({"reason": "not an activity"})), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn reject(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<ReasonBody>,
) -> Result<Response, ApiError> {
    let reason = Reason::parse(&body.reason)?;
    lifecycle(state, actor, headers, id, "activities/reject", ActivityCommand::Reject { reason }).await
}

/// Cancels an activity (owner or moderator); bookings are released.
#[utoipa::path(post, path = "/v1/activities/{id}/cancel", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), request_body(content = ReasonBody, example = json!({"reason": "the venue closed"})), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn cancel(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<ReasonBody>,
) -> Result<Response, ApiError> {
    let reason = Reason::parse(&body.reason)?;
    lifecycle(state, actor, headers, id, "activities/cancel", ActivityCommand::Cancel { reason }).await
}

/// Moves an activity (owner); attendees are told.
#[utoipa::path(post, path = "/v1/activities/{id}/reschedule", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), request_body(content = RescheduleBody, example = json!({"starts_at": "2030-05-02T14:00:00Z", "ends_at": "2030-05-02T16:00:00Z"})), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn reschedule(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<RescheduleBody>,
) -> Result<Response, ApiError> {
    let time = TimeRange::parse(body.starts_at, body.ends_at)?;
    lifecycle(state, actor, headers, id, "activities/reschedule", ActivityCommand::Reschedule { time }).await
}
