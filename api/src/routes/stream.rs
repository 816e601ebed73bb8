//! `GET /v1/stream`: real-time updates as a WebSocket, or as Server-Sent Events with
//! `Accept: text/event-stream` (API.md "Real-time").
//!
//! - Auth: `Authorization: Bearer` or `?access_token=`; a bad or missing token is a 401
//!   problem before any upgrade.
//! - A member receives its own updates (bookings, moderation decisions, invitations,
//!   attendee lists) and those of its chats without asking. To watch an activity's
//!   public updates (seats left, reschedule, cancel): send `{"subscribe":
//!   "activity:<id>"}` over the WebSocket, or pass `?subscribe=activity:<id>[,…]` to SSE.
//!   Only activities the member may see can be watched.
//! - Frames: `{"topic", "type", "position", "data"}`. SSE events carry an id; a client
//!   that reconnects with `Last-Event-ID` gets what it missed, or an `event: reset`
//!   when that is no longer in this process's history (refetch, then go on).
//! - Heartbeats: SSE comments and WebSocket pings every 15 s. A client that stops
//!   reading is closed with a reason; at shutdown every client is closed with a reason.

use crate::error::ApiError;
use crate::push::Registration;
use crate::state::AppState;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{FromRequestParts, Query, State};
use axum::http::HeaderMap;
use axum::http::header::{ACCEPT, AUTHORIZATION, UPGRADE};
use axum::response::sse::{Event, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use gather_domain::Actor;
use serde::Deserialize;
use std::collections::HashSet;
use std::convert::Infallible;
use std::time::Duration;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;
use uuid::Uuid;

/// Heartbeat interval.
pub const HEARTBEAT: Duration = Duration::from_secs(15);
/// Activities one client may watch.
pub const MAX_WATCHED: usize = 100;

/// The stream route.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(stream))
}

#[derive(Debug, Deserialize)]
struct StreamQuery {
    access_token: Option<String>,
    subscribe: Option<String>,
    last_event_id: Option<String>,
}

fn actor(state: &AppState, headers: &HeaderMap, q: &StreamQuery) -> Result<Actor, ApiError> {
    let header = headers.get(AUTHORIZATION).map(|v| {
        v.to_str()
            .ok()
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim)
            .ok_or_else(|| ApiError::Unauthorized("expected Authorization: Bearer <token>".into()))
    });
    let token = match (header, &q.access_token) {
        (Some(t), _) => t?,
        (None, Some(t)) => t.as_str(),
        (None, None) => {
            return Err(ApiError::Unauthorized(
                "the stream needs a token (Authorization header or access_token)".into(),
            ));
        }
    };
    state.jwt.verify(token)
}

/// The activity of `activity:<id>` if `actor` may see it.
async fn watchable(state: &AppState, actor: &Actor, topic: &str) -> Result<Uuid, ApiError> {
    let id = topic
        .strip_prefix("activity:")
        .and_then(|id| id.parse::<Uuid>().ok())
        .ok_or_else(|| ApiError::field("subscribe", format!("expected activity:<uuid>, got {topic:?}")))?;
    crate::routes::activities::visible_activity(state, Some(actor), id).await?;
    Ok(id)
}

/// Real-time updates: a WebSocket upgrade, or Server-Sent Events with `Accept: text/event-stream` (`Last-Event-ID` resumes).
#[utoipa::path(get, path = "/v1/stream", tag = "real-time", params(crate::openapi::StreamParams), responses((status = 101, description = "Switched to WebSocket: frames `{topic, type, position, data}`"), (status = 200, description = "An SSE stream", content_type = "text/event-stream", body = String)), security(("bearer" = [])))]
async fn stream(
    State(state): State<AppState>,
    Query(q): Query<StreamQuery>,
    request: axum::extract::Request,
) -> Result<Response, ApiError> {
    let (mut parts, _) = request.into_parts();
    let actor = actor(&state, &parts.headers, &q)?;
    if crate::auth::forgotten(&state, actor.id).await? {
        return Err(ApiError::Unauthorized("this member no longer exists".into()));
    }
    let wants_sse =
        parts.headers.get(ACCEPT).and_then(|v| v.to_str().ok()).is_some_and(|v| v.contains("text/event-stream"));
    if wants_sse {
        let mut watched = HashSet::new();
        for topic in q.subscribe.as_deref().unwrap_or_default().split(',').map(str::trim).filter(|t| !t.is_empty()) {
            watched.insert(watchable(&state, &actor, topic).await?);
            if watched.len() > MAX_WATCHED {
                return Err(ApiError::field("subscribe", format!("at most {MAX_WATCHED} activities")));
            }
        }
        let resume = parts
            .headers
            .get("last-event-id")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
            .or(q.last_event_id.clone());
        let reg = state.push.register(actor.id, watched, resume.as_deref());
        return Ok(sse(state, reg).into_response());
    }
    if !parts.headers.get(UPGRADE).and_then(|v| v.to_str().ok()).is_some_and(|v| v.eq_ignore_ascii_case("websocket")) {
        return Err(ApiError::field(
            "upgrade",
            "GET /v1/stream is a WebSocket upgrade, or Server-Sent Events with Accept: text/event-stream",
        ));
    }
    let upgrade = WebSocketUpgrade::from_request_parts(&mut parts, &state)
        .await
        .map_err(|e| ApiError::field("upgrade", e.body_text()))?;
    Ok(upgrade.max_message_size(4096).on_upgrade(move |socket| websocket(state, actor, socket)))
}

/// Unregisters the client when the response or socket task ends.
struct Guard(AppState, u64);

impl Drop for Guard {
    fn drop(&mut self) {
        self.0.push.unregister(self.1);
    }
}

fn sse(state: AppState, reg: Registration) -> Sse<impl futures::Stream<Item = Result<Event, Infallible>>> {
    use futures::StreamExt;
    let Registration { id, frames, closed, replay, reset } = reg;
    let event = |f: crate::push::Outgoing| Event::default().id(f.id).event("update").data(f.update.frame().to_string());
    let mut first = Vec::new();
    if reset {
        let reason = "the resume point is no longer in this server's history; refetch and continue";
        first.push(Event::default().event("reset").data(serde_json::json!({"reason": reason}).to_string()));
    }
    first.extend(replay.into_iter().map(event));
    // The guard lives in the stream's state: the client is unregistered when it ends.
    let live = futures::stream::unfold((frames, Guard(state, id)), move |(mut frames, guard)| async move {
        frames.recv().await.map(|f| (event(f), (frames, guard)))
    });
    let close = futures::stream::once(async move {
        let reason = closed.get().cloned().unwrap_or_else(|| "closed".into());
        Event::default().event("close").data(serde_json::json!({"reason": reason}).to_string())
    });
    let stream = futures::stream::iter(first).chain(live).chain(close).map(Ok);
    Sse::new(stream).keep_alive(KeepAlive::new().interval(HEARTBEAT))
}

async fn websocket(state: AppState, actor: Actor, mut socket: WebSocket) {
    let reg = state.push.register(actor.id, HashSet::new(), None);
    let Registration { id, mut frames, closed, .. } = reg;
    let _guard = Guard(state.clone(), id);
    let mut heartbeat = tokio::time::interval(HEARTBEAT);
    heartbeat.tick().await;
    let mut watched = 0usize;
    let reason = loop {
        tokio::select! {
            f = frames.recv() => match f {
                Some(f) => {
                    if socket.send(Message::Text(f.update.frame().to_string().into())).await.is_err() {
                        return;
                    }
                }
                None => break closed.get().cloned().unwrap_or_else(|| "closed".into()),
            },
            m = socket.recv() => match m {
                Some(Ok(Message::Text(text))) => {
                    let reply = match subscribe_request(&text) {
                        Ok(topic) if watched >= MAX_WATCHED => {
                            serde_json::json!({"error": format!("at most {MAX_WATCHED} subscriptions"), "subscribe": topic})
                        }
                        Ok(topic) => match watchable(&state, &actor, &topic).await {
                            Ok(activity) => {
                                state.push.watch(id, activity);
                                watched += 1;
                                serde_json::json!({"subscribed": topic})
                            }
                            Err(e) => serde_json::json!({"error": e.to_string(), "subscribe": topic}),
                        },
                        Err(e) => serde_json::json!({"error": e}),
                    };
                    if socket.send(Message::Text(reply.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Some(Ok(Message::Close(_))) | None | Some(Err(_)) => return,
                Some(Ok(_)) => {}
            },
            _ = heartbeat.tick() => {
                if socket.send(Message::Ping(Vec::new().into())).await.is_err() {
                    return;
                }
            }
        }
    };
    let _ = socket.send(Message::Close(Some(CloseFrame { code: 1001, reason: reason.into() }))).await;
}

/// `{"subscribe": "activity:<id>"}` → the topic.
fn subscribe_request(text: &str) -> Result<String, String> {
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct Subscribe {
        subscribe: String,
    }
    serde_json::from_str::<Subscribe>(text)
        .map(|s| s.subscribe)
        .map_err(|_| "expected {\"subscribe\": \"activity:<id>\"}".to_owned())
}
