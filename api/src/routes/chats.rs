//! Chat commands: `POST /v1/chats`, `POST /v1/chats/{id}/members`,
//! `DELETE /v1/chats/{id}/members/me`, `POST /v1/chats/{id}/messages`,
//! `PATCH|DELETE /v1/chats/{id}/messages/{message_id}`.
//!
//! Membership and ownership rules (`not_a_chat_member`, `not_the_sender`, …) are the
//! domain's; they answer 403 through `ApiError`.

use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::{Json, Path};
use crate::http::{accepted, command_response, run_command};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::Response;
use gather_domain::DomainError;
use gather_domain::chat::{Chat, ChatCommand, MAX_GROUP_MEMBERS, MIN_GROUP_MEMBERS};
use gather_domain::member::Member;
use gather_domain::values::{ChatTitle, MessageText};
use serde::Deserialize;
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
        .routes(routes!(start))
        .routes(routes!(add_member))
        .routes(routes!(leave))
        .routes(routes!(post_message))
        .routes(routes!(edit_message, delete_message))
}

/// 422 unless `member_id` names a registered member who was not forgotten.
async fn ensure_member_exists(state: &AppState, member_id: Uuid) -> Result<(), ApiError> {
    let m = state.commands.load_current::<Member>(member_id).await?.state;
    if !m.registered || m.forgotten {
        return Err(ApiError::Unprocessable { code: "unknown_member", detail: format!("no member {member_id}") });
    }
    Ok(())
}

/// 404 unless the chat exists (before any other check on its input).
async fn ensure_chat_exists(state: &AppState, chat_id: Uuid) -> Result<(), ApiError> {
    if !state.commands.load_current::<Chat>(chat_id).await?.state.started {
        return Err(DomainError::ChatNotFound.into());
    }
    Ok(())
}

fn with_location(mut res: Response, location: String) -> Response {
    if let Ok(v) = location.parse() {
        res.headers_mut().insert(header::LOCATION, v);
    }
    res
}

#[derive(Deserialize, utoipa::ToSchema)]
struct StartChat {
    #[serde(default)]
    #[schema(min_length = 1, max_length = 100)]
    title: Option<String>,
    #[schema(max_items = 199)]
    member_ids: Vec<Uuid>,
}

/// Starts a group chat.
#[utoipa::path(post, path = "/v1/chats", tag = "chats", request_body(content = StartChat, example = json!({"title": "Saturday climbers", "member_ids": ["0190f5a4-8b7e-7c3d-9a51-3f2e8d6c4b10"]})), responses((status = 201, description = "Started", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn start(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Json(body): Json<StartChat>,
) -> Result<Response, ApiError> {
    let title = body.title.as_deref().map(ChatTitle::parse).transpose()?;
    // The creator is a member whether listed or not (the domain adds them); the size is
    // checked here too so an oversize list is refused before any member is looked up.
    let mut member_ids: Vec<Uuid> = Vec::with_capacity(body.member_ids.len());
    for id in body.member_ids {
        if id != actor.id && !member_ids.contains(&id) {
            member_ids.push(id);
        }
    }
    if !(MIN_GROUP_MEMBERS..=MAX_GROUP_MEMBERS).contains(&(member_ids.len() + 1)) {
        return Err(DomainError::ChatSize { min: MIN_GROUP_MEMBERS, max: MAX_GROUP_MEMBERS }.into());
    }
    for id in &member_ids {
        ensure_member_exists(&state, *id).await?;
    }
    let chat_id = crate::http::new_id(&headers, actor.id, "chats", "chat");
    let outcome = run_command::<Chat>(
        &state,
        actor,
        &headers,
        "chats",
        chat_id,
        ChatCommand::Start { chat_id, title, member_ids },
    )
    .await?;
    // A repeated Idempotency-Key answers with the chat started the first time.
    let id = outcome.stream.strip_prefix("chat-").and_then(|s| Uuid::parse_str(s).ok()).unwrap_or(chat_id);
    let res = command_response(StatusCode::CREATED, id, &outcome, json!({}));
    Ok(with_location(res, format!("/v1/chats/{id}")))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct AddMember {
    member_id: Uuid,
}

/// Adds a member (chat members).
#[utoipa::path(post, path = "/v1/chats/{id}/members", tag = "chats", params(("id" = Uuid, Path, description = "The chat id")), request_body(content = AddMember), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn add_member(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(chat_id): Path<Uuid>,
    Json(body): Json<AddMember>,
) -> Result<Response, ApiError> {
    ensure_chat_exists(&state, chat_id).await?;
    ensure_member_exists(&state, body.member_id).await?;
    let route = format!("chats/{chat_id}/members");
    let command = ChatCommand::AddMember { member_id: body.member_id };
    let outcome = run_command::<Chat>(&state, actor, &headers, &route, chat_id, command).await?;
    Ok(accepted(chat_id, &outcome))
}

/// Leaves the chat.
#[utoipa::path(delete, path = "/v1/chats/{id}/members/me", tag = "chats", params(("id" = Uuid, Path, description = "The chat id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn leave(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(chat_id): Path<Uuid>,
) -> Result<Response, ApiError> {
    let route = format!("chats/{chat_id}/leave");
    let outcome = run_command::<Chat>(&state, actor, &headers, &route, chat_id, ChatCommand::Leave).await?;
    Ok(accepted(chat_id, &outcome))
}

#[derive(Deserialize, utoipa::ToSchema)]
struct MessageBody {
    #[schema(min_length = 1, max_length = 4000)]
    text: String,
}

/// Posts a message.
#[utoipa::path(post, path = "/v1/chats/{id}/messages", tag = "chats", params(("id" = Uuid, Path, description = "The chat id")), request_body(content = MessageBody, example = json!({"text": "See you at two!"})), responses((status = 201, description = "Posted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn post_message(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path(chat_id): Path<Uuid>,
    Json(body): Json<MessageBody>,
) -> Result<Response, ApiError> {
    let text = MessageText::parse(&body.text)?;
    let route = format!("chats/{chat_id}/messages");
    let message_id = crate::http::new_id(&headers, actor.id, &route, "message");
    let command = ChatCommand::PostMessage { message_id, text };
    let outcome = run_command::<Chat>(&state, actor, &headers, &route, chat_id, command).await?;
    let res = command_response(StatusCode::CREATED, message_id, &outcome, json!({}));
    Ok(with_location(res, format!("/v1/chats/{chat_id}/messages/{message_id}")))
}

/// Edits one's own message.
#[utoipa::path(patch, path = "/v1/chats/{id}/messages/{message_id}", tag = "chats", params(("id" = Uuid, Path, description = "The chat id"), ("message_id" = Uuid, Path, description = "The message id")), request_body(content = MessageBody), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn edit_message(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path((chat_id, message_id)): Path<(Uuid, Uuid)>,
    Json(body): Json<MessageBody>,
) -> Result<Response, ApiError> {
    let text = MessageText::parse(&body.text)?;
    let route = format!("chats/{chat_id}/messages/{message_id}/edit");
    let command = ChatCommand::EditMessage { message_id, text };
    let outcome = run_command::<Chat>(&state, actor, &headers, &route, chat_id, command).await?;
    Ok(accepted(message_id, &outcome))
}

/// Deletes a message (its sender; the organiser in an activity room).
#[utoipa::path(delete, path = "/v1/chats/{id}/messages/{message_id}", tag = "chats", params(("id" = Uuid, Path, description = "The chat id"), ("message_id" = Uuid, Path, description = "The message id")), responses((status = 202, description = "Accepted", body = crate::openapi::CommandAnswer)), security(("bearer" = [])))]
async fn delete_message(
    State(state): State<AppState>,
    Authed(actor): Authed,
    headers: HeaderMap,
    Path((chat_id, message_id)): Path<(Uuid, Uuid)>,
) -> Result<Response, ApiError> {
    let route = format!("chats/{chat_id}/messages/{message_id}/delete");
    let command = ChatCommand::DeleteMessage { message_id };
    let outcome = run_command::<Chat>(&state, actor, &headers, &route, chat_id, command).await?;
    Ok(accepted(message_id, &outcome))
}
