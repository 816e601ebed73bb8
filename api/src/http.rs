//! HTTP conventions shared by every route: command answers (`ETag`, `Gather-Position`,
//! `Location`), command metadata from headers (`Idempotency-Key`, `If-Match`,
//! `X-Request-Id`) and read-your-writes (`Gather-Min-Position`).

use crate::error::ApiError;
use crate::state::AppState;
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use gather_commands::handler::Loaded;
use gather_commands::ids::derived;
use gather_commands::{CommandMeta, CommandOutcome};
use gather_domain::Actor;
use gather_domain::member::MemberState;
use gather_projections::checkpoints::WaitError;
use serde_json::{Value, json};
use std::time::{Duration, Instant};
use uuid::Uuid;

/// `Gather-Position`.
pub const GATHER_POSITION: HeaderName = HeaderName::from_static("gather-position");
/// `Gather-Min-Position`.
pub const GATHER_MIN_POSITION: HeaderName = HeaderName::from_static("gather-min-position");
/// How long a GET waits for read models to reach `Gather-Min-Position`.
pub const MAX_WAIT: Duration = Duration::from_secs(5);
/// While a committed position is held behind the fence: the first wait before looking
/// again, doubled on each look up to [`FENCE_POLL_MAX`].
const FENCE_POLL_FIRST: Duration = Duration::from_millis(1);
/// The longest wait between looks while the fence holds a position back.
const FENCE_POLL_MAX: Duration = Duration::from_millis(50);

/// Builds the command metadata from the request headers.
pub fn command_meta(headers: &HeaderMap, actor: Actor, route: &str) -> Result<CommandMeta, ApiError> {
    let mut meta = CommandMeta::new(actor);
    if let Some(scope) = idempotency_scope(headers) {
        // One key means one command per (member, method, full path, key).
        meta.command_id = derived(format!("{scope}|{route}"));
    } else if let Some(key) = headers.get("idempotency-key") {
        // Without the middleware (handler tests): scoped by actor and route.
        let key = key.to_str().map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?;
        if key.is_empty() || key.len() > 200 {
            return Err(ApiError::field("Idempotency-Key", "must be 1 to 200 characters"));
        }
        meta.command_id = derived(format!("{}|{route}|{key}", meta.actor.id));
    }
    // The correlation id is X-Request-Id: a UUID as given, any other text hashed into one.
    meta.correlation_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 200)
        .map(|v| Uuid::parse_str(v).unwrap_or_else(|_| derived(v)))
        .unwrap_or(meta.command_id);
    if let Some(v) = headers.get(header::IF_MATCH) {
        let v = v.to_str().map_err(|_| ApiError::field("If-Match", "must be \"<version>\""))?;
        let n = v.trim().trim_start_matches("W/").trim_matches('"');
        meta.if_match = Some(n.parse().map_err(|_| ApiError::field("If-Match", "must be \"<version>\""))?);
    }
    Ok(meta)
}

/// The answer to a command: `{id, position, version}` plus `ETag` and `Gather-Position`.
pub fn command_response<E>(status: StatusCode, id: Uuid, outcome: &CommandOutcome<E>, extra: Value) -> Response {
    let mut body = json!({"id": id, "position": outcome.position, "version": outcome.version});
    if let (Some(b), Value::Object(extra)) = (body.as_object_mut(), extra) {
        b.extend(extra);
    }
    let mut res = (status, axum::Json(body)).into_response();
    position_headers(res.headers_mut(), outcome.position, Some(outcome.version));
    res
}

/// Sets `Gather-Position` (and `ETag` for a version).
pub fn position_headers(headers: &mut HeaderMap, position: i64, version: Option<i64>) {
    headers.insert(GATHER_POSITION, HeaderValue::from(position));
    if let Some(v) = version
        && let Ok(etag) = HeaderValue::from_str(&format!("\"{v}\""))
    {
        headers.insert(header::ETAG, etag);
    }
}

/// Waits for `Gather-Min-Position` if the request carries it, until every projection in
/// `reads` (the read models this endpoint queries) has stored that position, in any
/// process; returns the position they all reflect (the lowest of their checkpoints),
/// for the answer's `Gather-Position`. A projection that stays behind (or failed) makes
/// only the endpoints that read it answer 503 with `Retry-After: 1` after [`MAX_WAIT`].
pub async fn consistent_read(state: &AppState, headers: &HeaderMap, reads: &[&str]) -> Result<i64, ApiError> {
    // A read of the log itself (no projections) is as fresh as the log's head.
    let current = || async {
        Ok::<_, ApiError>(if reads.is_empty() {
            state.store.head().await?.position
        } else {
            state.checkpoints.lowest(reads).await?.position
        })
    };
    let Some(v) = headers.get(GATHER_MIN_POSITION) else {
        return current().await;
    };
    let position: i64 = v
        .to_str()
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .filter(|p| *p >= 0)
        .ok_or_else(|| ApiError::field("Gather-Min-Position", "must be a non-negative integer"))?;
    if position == 0 {
        return current().await;
    }
    // A position no answer can have handed out is bad input, not something to wait for.
    if state.store.checkpoint_of(position).await?.is_none() && !state.store.is_committed(position).await? {
        return Err(ApiError::field(
            "Gather-Min-Position",
            format!("no event at position {position} has been committed"),
        ));
    }
    let deadline = Instant::now() + MAX_WAIT;
    let mut wake = state.store.wake();
    // The position may not be readable yet (its transaction is behind an older one,
    // whose end nothing announces): look again shortly, less often the longer it takes.
    let mut again = FENCE_POLL_FIRST;
    let target = loop {
        if let Some(cp) = state.store.checkpoint_of(position).await? {
            break cp;
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(ApiError::Unavailable(format!("position {position} is not readable yet")));
        }
        let _ = tokio::time::timeout(left.min(again), wake.changed()).await;
        again = (again * 2).min(FENCE_POLL_MAX);
    };
    if reads.is_empty() {
        return current().await; // readable now, so the log holds it
    }
    let left = deadline.saturating_duration_since(Instant::now());
    match state.checkpoints.wait_for(reads, target, left).await {
        Ok(cp) => Ok(cp.position),
        Err(WaitError::Timeout) => {
            Err(ApiError::Unavailable(format!("read models have not reached position {position} yet")))
        }
        Err(WaitError::Database(e)) => Err(e.into()),
    }
}

/// A JSON answer with `Gather-Position` (and an `ETag` when a version is given).
pub fn read_response(body: Value, position: i64, version: Option<i64>) -> Response {
    let mut res = (StatusCode::OK, axum::Json(body)).into_response();
    position_headers(res.headers_mut(), position, version);
    res
}

/// Refuses commands of suspended or forgotten members (checked on the member's own
/// stream, so a suspension takes effect at once, whatever the token says).
pub async fn ensure_active(state: &AppState, actor: &Actor) -> Result<(), ApiError> {
    active_member(state, actor).await.map(|_| ())
}

/// Like [`ensure_active`], returning the member's state for callers that need it too
/// (children, email, password hash), so the member stream is read once per request.
/// The system actor has no member stream: its state is the empty one.
pub async fn active_member(state: &AppState, actor: &Actor) -> Result<MemberState, ApiError> {
    Ok(active_member_loaded(state, actor).await?.state)
}

/// Like [`active_member`], with the member stream's version, for checks made outside
/// the domain (the old password) that must hold at the version they were made against.
pub async fn active_member_loaded(state: &AppState, actor: &Actor) -> Result<Loaded<MemberState>, ApiError> {
    if actor.has(gather_domain::Role::System) {
        return Ok(Loaded { state: MemberState::default(), version: None, position: 0 });
    }
    let loaded = state.commands.load_current::<gather_domain::member::Member>(actor.id).await?;
    let member = &loaded.state;
    if member.suspended {
        return Err(ApiError::Forbidden { code: "member_suspended", detail: "this member is suspended".into() });
    }
    if member.forgotten || !member.registered {
        return Err(ApiError::Unauthorized("this member no longer exists".into()));
    }
    Ok(loaded)
}

/// Runs a command of an authenticated actor on aggregate `A` (`id`): refuses suspended
/// members, builds the metadata from the headers, then load → decide → append.
pub async fn run_command<A>(
    state: &AppState,
    actor: Actor,
    headers: &HeaderMap,
    route: &str,
    id: Uuid,
    command: A::Command,
) -> Result<CommandOutcome<A::Event>, ApiError>
where
    A: gather_domain::Aggregate,
    A::Command: Clone,
{
    ensure_active(state, &actor).await?;
    run_active::<A>(state, actor, headers, route, id, command).await
}

/// [`run_command`] for an actor already checked with [`active_member`].
pub async fn run_active<A>(
    state: &AppState,
    actor: Actor,
    headers: &HeaderMap,
    route: &str,
    id: Uuid,
    command: A::Command,
) -> Result<CommandOutcome<A::Event>, ApiError>
where
    A: gather_domain::Aggregate,
    A::Command: Clone,
{
    let meta = command_meta(headers, actor, route)?;
    let outcome = state.commands.handle::<A>(id, command, &meta).await.map_err(ApiError::from);
    let result = match &outcome {
        Ok(_) => "ok",
        Err(e) => e.code(),
    };
    metrics::counter!("gather_commands_total", "command" => route.to_owned(), "outcome" => result).increment(1);
    outcome
}

/// Runs a command on aggregate `A` (`id`) through [`run_command`] and answers `202`.
pub async fn run_accepted<A>(
    state: AppState,
    actor: Actor,
    headers: HeaderMap,
    id: Uuid,
    route: &str,
    command: A::Command,
) -> Result<Response, ApiError>
where
    A: gather_domain::Aggregate,
    A::Command: Clone,
{
    let outcome = run_command::<A>(&state, actor, &headers, route, id, command).await?;
    Ok(accepted(id, &outcome))
}

/// `202 Accepted` with `{id, position, version}` for a command on `id`.
pub fn accepted<E>(id: Uuid, outcome: &CommandOutcome<E>) -> Response {
    command_response(StatusCode::ACCEPTED, id, outcome, json!({}))
}

/// The idempotency scope the middleware gave this request (`Idempotency-Key` requests).
pub fn idempotency_scope(headers: &HeaderMap) -> Option<&str> {
    headers.get(crate::idempotency::SCOPE_HEADER).and_then(|v| v.to_str().ok())
}

/// A new server-generated id: v7, or — when the request carries an `Idempotency-Key` —
/// derived from its idempotency scope (member, method, full path, key) and `label`, so
/// racing repeats of one request name the same new resource and the store appends it
/// once. (`owner` and `route` scope the id when no middleware ran, in handler tests.)
pub fn new_id(headers: &HeaderMap, owner: Uuid, route: &str, label: &str) -> Uuid {
    if let Some(scope) = idempotency_scope(headers) {
        return derived(format!("{scope}|{route}|{label}"));
    }
    match headers.get("idempotency-key").and_then(|k| k.to_str().ok()) {
        Some(key) => derived(format!("{owner}|{route}|{key}|{label}")),
        None => Uuid::now_v7(),
    }
}
