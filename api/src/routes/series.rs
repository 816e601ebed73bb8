//! Recurring activities (series): create, read, edit, the lifecycle (submit, approve,
//! reject, publish), skip one occurrence and end. Ownership and roles are domain rules;
//! occurrences are ordinary activities, materialized by the scheduler.

use crate::auth::{Authed, MaybeAuthed};
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::http::{command_response, consistent_read, read_response, run_command};
use crate::routes::activities::{LocationBody, PriceBody, ReasonBody, VisibilityBody};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use chrono::NaiveDate;
use gather_domain::Role;
use gather_domain::series::{
    RawSeriesTemplate, Rule, Schedule, ScheduleSpec, Series, SeriesCommand, SeriesPatch, SeriesTemplate,
    parse_local_start, parse_timezone,
};
use gather_domain::values::{AgeRange, Capacity, Category, Description, Money, Reason, Tags, Title};
use gather_projections::queries;
use serde::Deserialize;
use serde_json::{Value, json};
use std::collections::{BTreeSet, HashMap};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// How many occurrences `GET /v1/series/{id}` lists.
pub const LISTED_OCCURRENCES: usize = 10;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(create))
        .routes(routes!(show, update))
        .routes(routes!(submit))
        .routes(routes!(approve))
        .routes(routes!(reject))
        .routes(routes!(publish))
        .routes(routes!(skip))
        .routes(routes!(end))
}

/// The template of `POST /v1/series`: an activity's fields without its time.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TemplateBody {
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

/// `POST /v1/series` as API.md lists it.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct CreateSeries {
    template: TemplateBody,
    timezone: String,
    #[schema(pattern = "^[0-2][0-9]:[0-5][0-9]$")]
    local_start: String,
    #[schema(minimum = 1, maximum = 10080)]
    duration_minutes: i64,
    #[schema(min_length = 1)]
    rule: String,
}

fn duration(minutes: i64) -> Result<u32, ApiError> {
    u32::try_from(minutes).map_err(|_| ApiError::field("duration_minutes", "must be 1–10080 minutes"))
}

impl CreateSeries {
    fn parse(self) -> Result<(SeriesTemplate, ScheduleSpec), ApiError> {
        let t = self.template;
        let template = SeriesTemplate::parse(RawSeriesTemplate {
            title: t.title,
            description: t.description,
            category: t.category,
            tags: t.tags,
            capacity: t.capacity,
            price_amount: t.price.amount,
            price_currency: t.price.currency,
            visibility: t.visibility.into_domain(),
            location: t.location.into_raw(),
            age_min: t.age_min,
            age_max: t.age_max,
            waitlist: t.waitlist,
        })?;
        let schedule = ScheduleSpec {
            rule: Rule::parse(&self.rule)?,
            timezone: parse_timezone(&self.timezone)?,
            local_start: parse_local_start(&self.local_start)?,
            duration_minutes: duration(self.duration_minutes)?,
        };
        Ok((template, schedule))
    }
}

/// Creates a recurring activity (organiser).
#[utoipa::path(post, path = "/v1/series", tag = "series", request_body(content = CreateSeries, example = json!({"template": {"title": "Monthly board games", "description": "", "category": "games", "tags": [], "capacity": 20, "price": {"amount": 0, "currency": "EUR"}, "visibility": "public", "location": {"kind": "online", "url": "https://meet.example/games"}, "waitlist": false}, "timezone": "Europe/Amsterdam", "local_start": "19:00", "duration_minutes": 120, "rule": "FREQ=MONTHLY;BYDAY=2TU;COUNT=12"})), responses((status = 201, description = "Created", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn create(
    State(state): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    Json(body): Json<CreateSeries>,
) -> Result<Response, ApiError> {
    auth.require(Role::Organiser)?;
    let (template, schedule) = body.parse()?;
    let series_id = crate::http::new_id(&headers, auth.0.id, "series", "series");
    let command = SeriesCommand::Create { series_id, template, schedule };
    let outcome = run_command::<Series>(&state, auth.0, &headers, "series", series_id, command).await?;
    let id = outcome.stream.strip_prefix("series-").and_then(|s| Uuid::parse_str(s).ok()).unwrap_or(series_id);
    let mut res = command_response(StatusCode::CREATED, id, &outcome, json!({}));
    if let Ok(loc) = format!("/v1/series/{id}").parse() {
        res.headers_mut().insert(header::LOCATION, loc);
    }
    Ok(res)
}

/// `GET /v1/series/{id}`: owner and moderators always; anyone once a public series
/// has been published.
#[utoipa::path(get, path = "/v1/series/{id}", tag = "series", params(("id" = Uuid, Path, description = "The series id")), responses((status = 200, description = "The series", body = crate::openapi::SeriesView)), security((), ("bearer" = [])))]
async fn show(
    State(state): State<AppState>,
    MaybeAuthed(actor): MaybeAuthed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let position = consistent_read(&state, &headers, &["series", "activities"]).await?;
    let not_found = || ApiError::NotFound(format!("no series {id}"));
    let (row, materialized, skipped) = queries::series(&state.db, id).await?.ok_or_else(not_found)?;
    let visible = (row.was_published && row.visibility == "public")
        || actor.as_ref().is_some_and(|a| a.id == row.organiser_id || a.has(Role::Moderator));
    if !visible {
        return Err(not_found());
    }
    let schedule: Schedule = serde_json::from_value(row.schedule.0.clone())
        .map_err(|e| ApiError::Internal(anyhow::anyhow!("series {id}: unreadable schedule: {e}")))?;
    let ended_after = row.ended_after.as_deref().and_then(|d| d.parse::<NaiveDate>().ok());
    let occurrences = upcoming(&schedule, materialized, &skipped, ended_after, state.commands.now());
    let mut body = row.schedule.0;
    body["id"] = json!(row.series_id);
    body["organiser_id"] = json!(row.organiser_id);
    body["status"] = json!(row.status);
    body["visibility"] = json!(row.visibility);
    body["template"] = row.template.0;
    body["ended_after"] = json!(row.ended_after);
    body["rejection_reason"] = json!(row.rejection_reason);
    body["version"] = json!(row.version);
    body["occurrences"] = Value::Array(occurrences);
    Ok(read_response(body, position, Some(row.version)))
}

/// The next occurrences from `now`: materialized ones as their activity is now
/// (status and time), the others as the rule has them (`planned` or `skipped`).
fn upcoming(
    schedule: &Schedule,
    materialized: Vec<queries::OccurrenceRow>,
    skipped: &[i64],
    ended_after: Option<NaiveDate>,
    now: chrono::DateTime<chrono::Utc>,
) -> Vec<Value> {
    let skipped: BTreeSet<i64> = skipped.iter().copied().collect();
    let materialized: HashMap<i64, queries::OccurrenceRow> = materialized.into_iter().map(|o| (o.idx, o)).collect();
    let mut items = Vec::new();
    for o in schedule.occurrences() {
        if items.len() >= LISTED_OCCURRENCES {
            break;
        }
        let index = i64::from(o.index);
        if let Some(m) = materialized.get(&index) {
            let details = m.activity_details.as_ref().map(|d| &d.0);
            let time =
                |key: &str, fallback| details.and_then(|d| d.get(key).cloned()).unwrap_or_else(|| json!(fallback));
            let ends_at = details
                .and_then(|d| d.get("ends_at"))
                .and_then(|v| serde_json::from_value::<chrono::DateTime<chrono::Utc>>(v.clone()).ok())
                .unwrap_or(m.ends_at);
            if ends_at <= now {
                continue;
            }
            items.push(json!({
                "index": o.index,
                "activity_id": m.activity_id,
                "starts_at": time("starts_at", m.starts_at),
                "ends_at": time("ends_at", m.ends_at),
                "status": m.activity_status.clone().unwrap_or_else(|| "scheduled".into()),
            }));
            continue;
        }
        if ended_after.is_some_and(|a| o.date > a) {
            break;
        }
        if o.ends_at <= now {
            continue;
        }
        items.push(json!({
            "index": o.index,
            "activity_id": null,
            "starts_at": o.starts_at,
            "ends_at": o.ends_at,
            "status": if skipped.contains(&index) { "skipped" } else { "planned" },
        }));
    }
    items
}

/// The template part of `PATCH /v1/series/{id}`: any subset.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TemplatePatchBody {
    #[schema(min_length = 3, max_length = 120)]
    title: Option<String>,
    #[schema(max_length = 5000)]
    description: Option<String>,
    #[schema(min_length = 2, max_length = 40)]
    category: Option<String>,
    #[schema(max_items = 10)]
    tags: Option<Vec<String>>,
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

/// `PATCH /v1/series/{id}`: a partial template and/or schedule.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct UpdateSeries {
    #[serde(default)]
    template: Option<TemplatePatchBody>,
    timezone: Option<String>,
    #[schema(pattern = "^[0-2][0-9]:[0-5][0-9]$")]
    local_start: Option<String>,
    #[schema(minimum = 1, maximum = 10080)]
    duration_minutes: Option<i64>,
    rule: Option<String>,
}

impl UpdateSeries {
    fn parse(self) -> Result<SeriesPatch, ApiError> {
        let t = self.template.unwrap_or_default();
        let age_range = match (t.age_min, t.age_max) {
            (None, None) => None,
            (Some(min), Some(max)) => Some(Some(AgeRange::parse(min, max)?)),
            _ => return Err(ApiError::field("age_max", "age_min and age_max change together")),
        };
        let patch = SeriesPatch {
            title: t.title.as_deref().map(Title::parse).transpose()?,
            description: t.description.as_deref().map(Description::parse).transpose()?,
            category: t.category.as_deref().map(Category::parse).transpose()?,
            tags: t.tags.map(Tags::parse).transpose()?,
            capacity: t.capacity.map(Capacity::parse).transpose()?,
            price: t.price.map(|p| Money::parse(p.amount, &p.currency)).transpose()?,
            visibility: t.visibility.map(VisibilityBody::into_domain),
            location: t.location.map(|l| l.into_raw().parse()).transpose()?,
            age_range,
            waitlist: t.waitlist,
            rule: self.rule.as_deref().map(Rule::parse).transpose()?,
            timezone: self.timezone.as_deref().map(parse_timezone).transpose()?,
            local_start: self.local_start.as_deref().map(parse_local_start).transpose()?,
            duration_minutes: self.duration_minutes.map(duration).transpose()?,
        };
        if patch == SeriesPatch::default() {
            return Err(ApiError::field("body", "nothing to change"));
        }
        Ok(patch)
    }
}

/// Changes the template or the schedule (owner).
#[utoipa::path(patch, path = "/v1/series/{id}", tag = "series", params(("id" = Uuid, Path, description = "The series id")), request_body(content = UpdateSeries), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn update(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<UpdateSeries>,
) -> Result<Response, ApiError> {
    let patch = body.parse()?;
    lifecycle(state, actor, headers, id, "series/update", SeriesCommand::Update { patch }).await
}

/// A series command answered with `202`.
async fn lifecycle(
    state: AppState,
    actor: gather_domain::Actor,
    headers: HeaderMap,
    id: Uuid,
    route: &str,
    command: SeriesCommand,
) -> Result<Response, ApiError> {
    crate::http::run_accepted::<Series>(state, actor, headers, id, route, command).await
}

/// Submits for moderation (owner).
#[utoipa::path(post, path = "/v1/series/{id}/submit", tag = "series", params(("id" = Uuid, Path, description = "The series id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn submit(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    lifecycle(state, actor, headers, id, "series/submit", SeriesCommand::Submit).await
}

/// Approves (moderator).
#[utoipa::path(post, path = "/v1/series/{id}/approve", tag = "series", params(("id" = Uuid, Path, description = "The series id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn approve(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    lifecycle(state, actor, headers, id, "series/approve", SeriesCommand::Approve).await
}

/// Publishes (owner).
#[utoipa::path(post, path = "/v1/series/{id}/publish", tag = "series", params(("id" = Uuid, Path, description = "The series id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn publish(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    lifecycle(state, actor, headers, id, "series/publish", SeriesCommand::Publish).await
}

/// Rejects (moderator).
#[utoipa::path(post, path = "/v1/series/{id}/reject", tag = "series", params(("id" = Uuid, Path, description = "The series id")), request_body(content = crate::routes::activities::ReasonBody), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn reject(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<ReasonBody>,
) -> Result<Response, ApiError> {
    let reason = Reason::parse(&body.reason)?;
    lifecycle(state, actor, headers, id, "series/reject", SeriesCommand::Reject { reason }).await
}

/// `{date}` for skip.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct SkipBody {
    date: NaiveDate,
}

/// `{after}` for end.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct EndBody {
    after: NaiveDate,
}

/// Skips the occurrence on a date (owner).
#[utoipa::path(post, path = "/v1/series/{id}/skip", tag = "series", params(("id" = Uuid, Path, description = "The series id")), request_body(content = SkipBody, example = json!({"date": "2030-06-11"})), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn skip(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<SkipBody>,
) -> Result<Response, ApiError> {
    lifecycle(state, actor, headers, id, "series/skip", SeriesCommand::Skip { date: body.date }).await
}

/// Ends the series after a date (owner or moderator).
#[utoipa::path(post, path = "/v1/series/{id}/end", tag = "series", params(("id" = Uuid, Path, description = "The series id")), request_body(content = EndBody, example = json!({"after": "2030-12-31"})), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn end(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<EndBody>,
) -> Result<Response, ApiError> {
    lifecycle(state, actor, headers, id, "series/end", SeriesCommand::End { after: body.after }).await
}
