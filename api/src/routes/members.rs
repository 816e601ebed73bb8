//! A member's own commands — `PATCH /v1/me`, `POST /v1/me/password`,
//! `POST /v1/me/children`, `DELETE /v1/me/children/{child_id}`, `DELETE /v1/me`,
//! `PUT|DELETE /v1/activities/{id}/favourite` — and a moderator's
//! `POST /v1/members/{id}/suspend` and `DELETE /v1/members/{id}` (forget).

use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::http::{accepted, active_member_loaded, command_meta, command_response, run_command};
use crate::routes::auth::check_password;
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::Response;
use chrono::NaiveDate;
use gather_commands::CommandError;
use gather_domain::activity::{Activity, ActivityStatus, Visibility};
use gather_domain::member::{Member, MemberCommand};
use gather_domain::values::{ChildName, DisplayName, Reason};
use gather_domain::{Actor, Role};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(update_profile, forget))
        .routes(routes!(change_password))
        .routes(routes!(add_child))
        .routes(routes!(remove_child))
        .routes(routes!(suspend))
        .routes(routes!(forget_other))
        .routes(routes!(favourite, unfavourite))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct UpdateProfile {
    #[schema(min_length = 1, max_length = 60)]
    display_name: String,
}

/// Changes the display name.
#[utoipa::path(patch, path = "/v1/me", tag = "members", request_body(content = UpdateProfile, example = json!({"display_name": "Ada L."})), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn update_profile(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Json(body): Json<UpdateProfile>,
) -> Result<Response, ApiError> {
    let display_name = DisplayName::parse(&body.display_name)?;
    let id = actor.id;
    let outcome =
        run_command::<Member>(&state, actor, &headers, "me/profile", id, MemberCommand::UpdateProfile { display_name })
            .await?;
    Ok(accepted(id, &outcome))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct ChangePassword {
    old_password: String,
    #[schema(min_length = 10, max_length = 1024)]
    new_password: String,
}

/// Changes the password (the old one must match).
#[utoipa::path(post, path = "/v1/me/password", tag = "members", request_body(content = ChangePassword), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn change_password(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Json(body): Json<ChangePassword>,
) -> Result<Response, ApiError> {
    check_password("new_password", &body.new_password)?;
    // A suspended member is refused before the old password is even checked.
    let member = active_member_loaded(&state, &actor).await?;
    let mut meta = command_meta(&headers, actor, "me/password")?;
    if meta.if_match.is_some_and(|pinned| Some(pinned) != member.version) {
        return Err(ApiError::PreconditionFailed { actual: member.version.unwrap_or(-1) });
    }
    let wrong = || ApiError::Forbidden { code: "wrong_password", detail: "the old password is wrong".into() };
    if body.old_password.len() > crate::routes::auth::MAX_PASSWORD {
        return Err(wrong());
    }
    if !state.passwords.verify(body.old_password, member.state.password_hash).await? {
        return Err(wrong());
    }
    let new_password_hash = state.passwords.hash(body.new_password).await?;
    // The old password was checked against this version of the stream: a change that
    // lost a race (the password, or anything else, changed meanwhile) is refused.
    meta.if_match = member.version;
    let id = meta.actor.id;
    let command = MemberCommand::ChangePassword { new_password_hash };
    let outcome = match state.commands.handle::<Member>(id, command, &meta).await {
        Ok(outcome) => outcome,
        Err(CommandError::PreconditionFailed { .. }) => {
            return Err(ApiError::Conflict {
                code: "password_changed_meanwhile",
                detail: "the account changed while the old password was checked; try again".into(),
            });
        }
        Err(e) => return Err(e.into()),
    };
    Ok(accepted(id, &outcome))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct AddChild {
    #[schema(min_length = 1, max_length = 60)]
    name: String,
    birth_date: NaiveDate,
}

/// Adds a child.
#[utoipa::path(post, path = "/v1/me/children", tag = "members", request_body(content = AddChild, example = json!({"name": "Tom", "birth_date": "2018-04-02"})), responses((status = 201, description = "Added", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn add_child(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Json(body): Json<AddChild>,
) -> Result<Response, ApiError> {
    let name = ChildName::parse(&body.name)?;
    let child_id = crate::http::new_id(&headers, actor.id, "me/children", "child");
    let id = actor.id;
    let command = MemberCommand::AddChild { child_id, name, birth_date: body.birth_date };
    let outcome = run_command::<Member>(&state, actor, &headers, "me/children", id, command).await?;
    let mut res = command_response(StatusCode::CREATED, child_id, &outcome, json!({}));
    res.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/v1/me"));
    Ok(res)
}

/// Removes a child.
#[utoipa::path(delete, path = "/v1/me/children/{child_id}", tag = "members", params(("child_id" = Uuid, Path, description = "The child id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn remove_child(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(child_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let id = actor.id;
    let outcome = run_command::<Member>(
        &state,
        actor,
        &headers,
        &format!("me/children/{child_id}/remove"),
        id,
        MemberCommand::RemoveChild { child_id },
    )
    .await?;
    Ok(accepted(id, &outcome))
}

/// Forgets the caller (GDPR). Allowed to suspended members too (the domain's rule: the
/// right to be forgotten outlives a suspension), so it skips `ensure_active`.
#[utoipa::path(delete, path = "/v1/me", tag = "members", responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn forget(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let id = actor.id;
    forget_member(&state, actor, &headers, id, "me/forget").await
}

/// Forgets a member (moderator): as `DELETE /v1/me` on their behalf.
#[utoipa::path(delete, path = "/v1/members/{id}", tag = "members", params(("id" = Uuid, Path, description = "The member id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn forget_other(
    State(state): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
) -> Result<Response, ApiError> {
    auth.require(Role::Moderator)?;
    // The token's roles are checked against the moderator's own stream too: a
    // suspended or forgotten moderator forgets nobody (a shred cannot be undone).
    if auth.0.id != id {
        crate::http::ensure_active(&state, &auth.0).await?;
    }
    forget_member(&state, auth.0, &headers, id, &format!("members/{id}/forget")).await
}

/// `ForgetMember`, then the keys: the address's key is shredded before the append (a
/// failed append leaves it shredded; the retry finishes), the member's after it, and the
/// address is given back in the same atomic append, so it may register again.
async fn forget_member(
    state: &AppState,
    actor: Actor,
    headers: &HeaderMap,
    id: Uuid,
    scope: &str,
) -> Result<Response, ApiError> {
    let member = state.commands.load_current::<Member>(id).await?.state;
    if !member.registered {
        return Err(ApiError::NotFound(format!("no member {id}")));
    }
    let email = member.email.as_ref().filter(|_| !member.forgotten).map(|e| e.normalized());
    let release = match &email {
        Some(email) => {
            gather_commands::uniqueness::release_email(state.store.as_ref(), &state.lookup, email, id).await?
        }
        None => None,
    };
    let allowed = actor.id == id || actor.has(Role::Moderator);
    if let Some(vault) = state.store.vault().filter(|_| allowed) {
        if let Some(email) = &email {
            vault.shred(vault.address_subject(email)).await?;
        }
        if member.forgotten {
            // A retry after a failure between the append and the shred finishes it.
            vault.shred(id).await?;
        }
    }
    let meta = command_meta(headers, actor, scope)?;
    let outcome = state
        .commands
        .handle_with::<Member>(id, MemberCommand::Forget, &meta, |events| {
            if events.is_empty() { Vec::new() } else { release.clone().into_iter().collect() }
        })
        .await?;
    if let Some(vault) = state.store.vault() {
        vault.shred(id).await?;
    }
    if let (Some(email), None) = (email, &state.settings.smtp_url) {
        // Mail to files (embedded): the copies addressed to them go too.
        let dir = state.settings.data_dir.join("mail");
        match tokio::task::spawn_blocking(move || gather_projections::mail::forget_files(&dir, &email)).await {
            Ok(Ok(n)) => tracing::info!(member = %id, files = n, "deleted a forgotten member's mail files"),
            Ok(Err(e)) => tracing::warn!(member = %id, error = %e, "could not delete a forgotten member's mail files"),
            Err(e) => tracing::warn!(member = %id, error = %e, "the mail file clean-up stopped"),
        }
    }
    Ok(accepted(id, &outcome))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Suspend {
    #[schema(min_length = 1, max_length = 1000)]
    reason: String,
}

/// Suspends a member (moderator).
#[utoipa::path(post, path = "/v1/members/{id}/suspend", tag = "members", params(("id" = Uuid, Path, description = "The member id")), request_body(content = Suspend, example = json!({"reason": "spam"})), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn suspend(
    State(state): State<AppState>,
    auth: Authed,
    headers: HeaderMap,
    Path(id): Path<Uuid>,
    Json(body): Json<Suspend>,
) -> Result<Response, ApiError> {
    auth.require(Role::Moderator)?;
    let reason = Reason::parse(&body.reason)?;
    let outcome = run_command::<Member>(
        &state,
        auth.0,
        &headers,
        &format!("members/{id}/suspend"),
        id,
        MemberCommand::Suspend { reason },
    )
    .await?;
    Ok(accepted(id, &outcome))
}

/// 404 unless the activity exists and the actor may see it (as `GET /v1/activities/{id}`:
/// published, cancelled or completed public activities; any for its organiser or a moderator).
async fn ensure_visible_activity(state: &AppState, actor: &Actor, activity_id: Uuid) -> Result<(), ApiError> {
    let loaded = state.commands.load_current::<Activity>(activity_id).await?;
    let a = &loaded.state;
    let public = matches!(a.status, ActivityStatus::Published | ActivityStatus::Cancelled | ActivityStatus::Completed)
        && a.details.as_ref().is_some_and(|d| d.visibility == Visibility::Public);
    let visible = a.created && (public || a.organiser_id == actor.id || actor.has(Role::Moderator));
    if !visible {
        return Err(ApiError::NotFound(format!("no activity {activity_id}")));
    }
    Ok(())
}

/// Favourites an activity.
#[utoipa::path(put, path = "/v1/activities/{id}/favourite", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn favourite(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(activity_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    ensure_visible_activity(&state, &actor, activity_id).await?;
    let id = actor.id;
    let command = MemberCommand::FavouriteActivity { activity_id };
    let outcome =
        run_command::<Member>(&state, actor, &headers, &format!("activities/{activity_id}/favourite"), id, command)
            .await?;
    Ok(accepted(id, &outcome))
}

/// Unfavourites an activity.
#[utoipa::path(delete, path = "/v1/activities/{id}/favourite", tag = "activities", params(("id" = Uuid, Path, description = "The activity id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn unfavourite(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(activity_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    ensure_visible_activity(&state, &actor, activity_id).await?;
    let id = actor.id;
    let command = MemberCommand::UnfavouriteActivity { activity_id };
    let outcome =
        run_command::<Member>(&state, actor, &headers, &format!("activities/{activity_id}/unfavourite"), id, command)
            .await?;
    Ok(accepted(id, &outcome))
}
