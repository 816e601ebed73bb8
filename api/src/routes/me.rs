//! `GET /v1/me`, `POST /v1/me/organiser`.

use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::Json;
use crate::http::{command_response, consistent_read, read_response, run_command};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use gather_domain::member::{Member, MemberCommand};
use gather_domain::values::OrganisationName;
use gather_projections::queries;
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(me)).routes(routes!(become_organiser))
}

/// The caller's profile.
#[utoipa::path(get, path = "/v1/me", tag = "members", responses((status = 200, description = "The profile", body = crate::openapi::Profile)), security(("bearer" = [])))]
async fn me(State(state): State<AppState>, Authed(actor): Authed, headers: HeaderMap) -> Result<Response, ApiError> {
    let position = consistent_read(&state, &headers, &["members"]).await?;
    let m = queries::member(&state.db, actor.id)
        .await?
        .ok_or_else(|| ApiError::NotFound("no profile for this member (yet)".into()))?;
    if m.email.is_empty() {
        // Forgotten since the token was checked (the read waited for the forget).
        return Err(ApiError::Unauthorized("this member no longer exists".into()));
    }
    let body = json!({
        "member_id": m.member_id,
        "email": m.email,
        "display_name": m.display_name,
        "roles": m.roles.0,
        "children": m.children.0,
        "organiser": m.organiser.map(|o| o.0),
        "suspended": m.suspended,
    });
    Ok(read_response(body, position, None))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct BecomeOrganiser {
    #[schema(min_length = 2, max_length = 120)]
    organisation_name: String,
}

/// Becomes an organiser; the next token carries the role.
#[utoipa::path(post, path = "/v1/me/organiser", tag = "members", request_body(content = BecomeOrganiser, example = json!({"organisation_name": "Amsterdam Climbing Club"})), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn become_organiser(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Json(body): Json<BecomeOrganiser>,
) -> Result<Response, ApiError> {
    // Parsed here too so a bad name is a 400 before the member stream is loaded.
    OrganisationName::parse(&body.organisation_name)?;
    let organisation_name = body.organisation_name;
    let id = actor.id;
    let command = MemberCommand::BecomeOrganiser { organisation_name };
    let outcome = run_command::<Member>(&state, actor, &headers, "me/organiser", id, command).await?;
    Ok(command_response(StatusCode::ACCEPTED, id, &outcome, json!({})))
}
