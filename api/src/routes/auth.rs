//! `POST /v1/auth/register`, `POST /v1/auth/login`.

use crate::error::ApiError;
use crate::extract::Json;
use crate::http::{command_meta, command_response};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gather_commands::CommandError;
use gather_commands::uniqueness::{email_owner, reserve_email_again};
use gather_domain::member::{Member, MemberCommand, MemberState};
use gather_domain::values::{DisplayName, Email};
use gather_domain::{Actor, Role};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(register)).routes(routes!(login))
}

/// Passwords are at least this long (API.md).
pub const MIN_PASSWORD: usize = 10;
/// Passwords are at most this long (argon2 cost stays bounded).
pub const MAX_PASSWORD: usize = 1024;

#[derive(Deserialize, utoipa::ToSchema)]
struct Register {
    #[schema(format = Email, max_length = 254)]
    email: String,
    #[schema(min_length = 10, max_length = 1024)]
    password: String,
    #[schema(min_length = 1, max_length = 60)]
    display_name: String,
}

/// Checks a new password's length (API.md: at least 10 characters).
pub(crate) fn check_password(field: &str, password: &str) -> Result<(), ApiError> {
    let n = password.chars().count();
    if n < MIN_PASSWORD {
        return Err(ApiError::field(field, format!("must be at least {MIN_PASSWORD} characters")));
    }
    if password.len() > MAX_PASSWORD {
        return Err(ApiError::field(field, format!("must be at most {MAX_PASSWORD} bytes")));
    }
    Ok(())
}

/// Registers a member: one atomic append of the member's first events and the email
/// reservation, so two registrations of one address can never both succeed.
pub async fn register_member(
    state: &AppState,
    headers: &HeaderMap,
    email: &str,
    password: String,
    display_name: &str,
) -> Result<(Uuid, gather_commands::CommandOutcome<gather_domain::member::MemberEvent>), ApiError> {
    let email = Email::parse(email)?;
    let display_name = DisplayName::parse(display_name)?;
    check_password("password", &password)?;
    let member_id = crate::http::new_id(headers, Uuid::nil(), "register", "member");
    let normalized = email.normalized();
    let password_hash = state.passwords.hash(password).await?;
    // The Idempotency-Key is scoped to guests here (the member id is new on every try).
    let mut meta = command_meta(headers, Actor::new(Uuid::nil(), [Role::Member]), "register")?;
    meta.actor = Actor::new(member_id, [Role::Member]);
    let command = MemberCommand::Register { member_id, email, password_hash, display_name };
    // A forgotten member's address was given back: it is taken over from there.
    let taken = || ApiError::Conflict { code: "email_taken", detail: "a member with this email already exists".into() };
    let reservation =
        reserve_email_again(state.store.as_ref(), &state.lookup, &normalized, member_id).await?.ok_or_else(taken)?;
    let outcome =
        state.commands.handle_with::<Member>(member_id, command, &meta, |_| vec![reservation.clone()]).await.map_err(
            |e| match e {
                CommandError::Taken { .. } => {
                    ApiError::Conflict { code: "email_taken", detail: "a member with this email already exists".into() }
                }
                other => other.into(),
            },
        )?;
    // A repeated Idempotency-Key answers with the member created the first time.
    let id = outcome.stream.strip_prefix("member-").and_then(|s| Uuid::parse_str(s).ok()).unwrap_or(member_id);
    Ok((id, outcome))
}

/// Registers a member and answers a token.
#[utoipa::path(post, path = "/v1/auth/register", tag = "auth", request_body(content = Register, example = json!({"email": "ada@example.com", "password": "correct horse battery", "display_name": "Ada"})), responses((status = 201, description = "Registered; `Location: /v1/me`", body = crate::openapi::Registered)))]
async fn register(
    State(state): State<AppState>,
    headers: HeaderMap,
    Json(body): Json<Register>,
) -> Result<Response, ApiError> {
    let (member_id, outcome) =
        register_member(&state, &headers, &body.email, body.password, &body.display_name).await?;
    let token = state.jwt.issue(member_id, &[Role::Member])?;
    let mut res =
        command_response(StatusCode::CREATED, member_id, &outcome, json!({"member_id": member_id, "token": token}));
    res.headers_mut().insert(header::LOCATION, "/v1/me".parse().expect("static header value"));
    Ok(res)
}

#[derive(Deserialize, utoipa::ToSchema)]
struct Login {
    email: String,
    password: String,
}

/// The roles a member's state grants.
pub fn roles_of(state: &MemberState) -> Vec<Role> {
    let mut roles = vec![Role::Member];
    if state.is_organiser() {
        roles.push(Role::Organiser);
    }
    for r in &state.roles {
        if !roles.contains(r) {
            roles.push(*r);
        }
    }
    roles
}

/// Logs in: the same 401 for an unknown email and a wrong password.
#[utoipa::path(post, path = "/v1/auth/login", tag = "auth", request_body(content = Login, example = json!({"email": "ada@example.com", "password": "correct horse battery"})), responses((status = 200, description = "A token", body = crate::openapi::LoggedIn)))]
async fn login(State(state): State<AppState>, Json(body): Json<Login>) -> Result<Response, ApiError> {
    let wrong = || ApiError::Unauthorized("wrong email or password".into());
    if body.password.len() > MAX_PASSWORD || body.email.len() > 320 {
        return Err(wrong());
    }
    let normalized = body.email.trim().to_lowercase();
    let owner = email_owner(state.store.as_ref(), &state.lookup, &normalized).await?;
    let member = match owner {
        Some(id) => Some((id, state.commands.load_current::<Member>(id).await?.state)),
        None => None,
    };
    let hash = member.as_ref().and_then(|(_, m)| m.password_hash.clone());
    if !state.passwords.verify(body.password, hash).await? {
        return Err(wrong());
    }
    let Some((member_id, member)) = member else { return Err(wrong()) };
    if member.forgotten {
        return Err(wrong());
    }
    if member.suspended {
        return Err(ApiError::Forbidden { code: "member_suspended", detail: "this member is suspended".into() });
    }
    let roles = roles_of(&member);
    let token = state.jwt.issue(member_id, &roles)?;
    let names: Vec<_> = roles.iter().map(|r| r.as_str()).collect();
    Ok(axum::Json(json!({"member_id": member_id, "token": token, "roles": names})).into_response())
}
