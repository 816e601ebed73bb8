//! `POST /v1/activities`, `GET /v1/activities/{id}`.

use crate::auth::{Authed, MaybeAuthed};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::http::{command_meta, command_response, consistent_read, read_response};
use crate::state::AppState;
use axum::Router;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use axum::routing::{get, post};
use chrono::{DateTime, Utc};
use gather_domain::Role;
use gather_domain::activity::{
    Activity, ActivityCommand, ActivityDetails, RawActivityDetails, RawLocation, Visibility,
};
use gather_projections::queries;
use serde::Deserialize;
use serde_json::json;
use uuid::Uuid;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/v1/activities", post(create)).route("/v1/activities/{id}", get(show))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct PriceBody {
    amount: i64,
    currency: String,
}

#[derive(Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
enum LocationBody {
    Venue { name: String, address: String, lat: f64, lng: f64 },
    Online { url: String },
}

#[derive(Deserialize)]
#[serde(rename_all = "snake_case")]
enum VisibilityBody {
    Public,
    InviteOnly,
}

/// `POST /v1/activities` as API.md lists it.
#[derive(Deserialize)]
struct CreateActivity {
    title: String,
    #[serde(default)]
    description: String,
    category: String,
    #[serde(default)]
    tags: Vec<String>,
    starts_at: DateTime<Utc>,
    ends_at: DateTime<Utc>,
    capacity: i64,
    price: PriceBody,
    visibility: VisibilityBody,
    location: LocationBody,
    age_min: Option<i64>,
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
            visibility: match self.visibility {
                VisibilityBody::Public => Visibility::Public,
                VisibilityBody::InviteOnly => Visibility::InviteOnly,
            },
            location: match self.location {
                LocationBody::Venue { name, address, lat, lng } => RawLocation::Venue { name, address, lat, lng },
                LocationBody::Online { url } => RawLocation::Online { url },
            },
            age_min: self.age_min,
            age_max: self.age_max,
            waitlist: self.waitlist,
        })?)
    }
}

async fn create(
    State(state): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    Json(body): Json<CreateActivity>,
) -> Result<Response, ApiError> {
    auth.require(Role::Organiser)?;
    let details = body.parse()?;
    let activity_id = Uuid::now_v7();
    let meta = command_meta(&headers, auth.0, "activities")?;
    let outcome =
        state.commands.handle::<Activity>(activity_id, ActivityCommand::Create { activity_id, details }, &meta).await?;
    let id = outcome.stream.strip_prefix("activity-").and_then(|s| Uuid::parse_str(s).ok()).unwrap_or(activity_id);
    let mut res = command_response(StatusCode::CREATED, id, &outcome, json!({}));
    if let Ok(loc) = format!("/v1/activities/{id}").parse() {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

async fn show(
    State(state): State<AppState>,
    MaybeAuthed(actor): MaybeAuthed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let position = consistent_read(&state, &headers).await?;
    let not_found = || ApiError::NotFound(format!("no activity {id}"));
    let row = queries::activity(&state.db, id).await?.ok_or_else(not_found)?;
    let public = row.status == "published" || row.status == "completed" || row.status == "cancelled";
    let visible = (public && row.visibility == "public")
        || actor.as_ref().is_some_and(|a| a.id == row.organiser_id || a.has(Role::Moderator));
    if !visible {
        return Err(not_found());
    }
    let mut body = row.details.0;
    body["status"] = json!(row.status);
    body["seats_left"] = json!(row.seats_left);
    body["favourites"] = json!(row.favourites);
    body["version"] = json!(row.version);
    Ok(read_response(body, position, Some(row.version)))
}
