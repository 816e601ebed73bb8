//! `Idempotency-Key` on any POST (API.md): the first answer to (member, method, full
//! path, key) is stored for 24 h; a repeat with the same body gets that answer again
//! and appends nothing; the same key with a different body is refused with 422.
//!
//! The scope names the member (the token's verified subject, so a new token of the
//! same member is the same scope), the method and the full path (so one key used on two
//! resources is two requests). The middleware hands the scope to the handlers in the
//! internal [`SCOPE_HEADER`]; command ids and new resource ids are derived from it
//! (`http::command_meta`, `http::new_id`), so the store appends a command once even if
//! two processes run it.
//!
//! Before its handler runs, a request claims its scope with a pending row: of racing
//! requests with one key, the first to claim wins; the others wait for its answer and
//! replay it when their body is the same, and get 422 at once when it is not.
//!
//! Login is not a command: it is never remembered nor replayed (a replayed login would
//! hand out a token for a password that may have changed since).

use crate::error::ApiError;
use crate::extract::MAX_BODY;
use crate::state::AppState;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{Duration, Utc};
use gather_commands::{on_db, on_db_read};
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use sqlx::types::Json;

/// How long a key is remembered (the scheduler's clean-up drops older ones).
pub const TTL_HOURS: i64 = gather_commands::scheduler::IDEMPOTENCY_TTL_HOURS;

/// The internal header carrying a request's idempotency scope to its handler. A client
/// cannot set it: the middleware removes it from every request first.
pub const SCOPE_HEADER: HeaderName = HeaderName::from_static("gather-idempotency-scope");

/// Routes whose answers are never remembered (they are not commands).
const NEVER_REPLAYED: [&str; 1] = ["/v1/auth/login"];

/// A claim left pending this long belongs to a process that died: it may be taken over.
const ABANDONED_AFTER_SECONDS: i64 = 60;

/// How long a repeat waits for the first request's answer.
const WAIT_FOR_FIRST: std::time::Duration = std::time::Duration::from_secs(10);

/// The status of a claimed row whose answer is not known yet.
const PENDING: i32 = 0;

/// Answer headers worth replaying.
const REPLAYED: [&str; 4] = ["location", "etag", "gather-position", "content-type"];

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The member part of the scope: the token's verified subject, or `guest`. `None` for
/// a token that does not verify (the handler answers 401; nothing is remembered).
fn member(state: &AppState, headers: &HeaderMap) -> Option<String> {
    let Some(value) = headers.get(header::AUTHORIZATION) else { return Some("guest".into()) };
    let token = value.to_str().ok()?.strip_prefix("Bearer ")?.trim();
    state.jwt.verify(token).ok().map(|actor| actor.id.to_string())
}

/// The middleware: scopes every request that carries `Idempotency-Key`, and stores or
/// replays the answers of POST requests.
pub async fn layer(State(state): State<AppState>, mut req: Request, next: Next) -> Result<Response, ApiError> {
    req.headers_mut().remove(SCOPE_HEADER);
    let Some(key) = req.headers().get("idempotency-key") else { return Ok(next.run(req).await) };
    let key = key.to_str().map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?.to_string();
    if key.is_empty() || key.len() > 200 {
        return Err(ApiError::field("Idempotency-Key", "must be 1 to 200 characters"));
    }
    if NEVER_REPLAYED.contains(&req.uri().path()) {
        return Ok(next.run(req).await);
    }
    let Some(member) = member(&state, req.headers()) else { return Ok(next.run(req).await) };
    let path = req.uri().path_and_query().map_or_else(|| req.uri().path().to_owned(), |p| p.as_str().to_owned());
    let scope = hex_sha256(format!("{member}|{}|{path}|{key}", req.method()).as_bytes());
    req.headers_mut().insert(SCOPE_HEADER, HeaderValue::from_str(&scope).map_err(ApiError::internal)?);
    // Media uploads stream their body (up to 50 MiB) and derive their media id from
    // this scope instead: a repeat finds the media attached and answers it again.
    if req.method() != Method::POST || crate::routes::media::is_upload(req.uri().path()) {
        return Ok(next.run(req).await);
    }

    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_BODY).await.map_err(|_| ApiError::PayloadTooLarge(MAX_BODY))?;
    let request_hash = hex_sha256(&bytes);
    let reused = || ApiError::Unprocessable {
        code: "idempotency_key_reused",
        detail: "this Idempotency-Key was used with a different request body".into(),
    };

    let deadline = tokio::time::Instant::now() + WAIT_FOR_FIRST;
    let mut claim = loop {
        if try_claim(&state, &scope, &request_hash).await? {
            break Claim {
                state: state.clone(),
                scope: scope.clone(),
                request_hash: request_hash.clone(),
                done: false,
            };
        }
        match lookup(&state, &scope).await? {
            Some(found) if found.request_hash != request_hash => return Err(reused()),
            Some(Found { answer: Some(answer), .. }) => return Ok(answer),
            // Pending: the first request is still running (or its row just went away).
            _ => {}
        }
        if tokio::time::Instant::now() >= deadline {
            return Err(ApiError::Conflict {
                code: "idempotency_key_in_flight",
                detail: "a request with this Idempotency-Key is still being handled; retry".into(),
            });
        }
        tokio::time::sleep(std::time::Duration::from_millis(25)).await;
    };

    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    // Server errors are not remembered: the client may retry them (the claim is released).
    if response.status().is_server_error() {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.map_err(ApiError::internal)?;
    complete(&state, &scope, &request_hash, parts.status, &parts.headers, &body).await?;
    claim.done = true;
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// A pending claim; released (deleted) unless its answer was stored, so a request that
/// failed or was dropped midway leaves the key free for a retry.
struct Claim {
    state: AppState,
    scope: String,
    request_hash: String,
    done: bool,
}

impl Drop for Claim {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        // Outside a runtime (shutting down) the claim simply lapses after a minute.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
        let (state, scope, hash) = (self.state.clone(), self.scope.clone(), self.request_hash.clone());
        runtime.spawn(async move {
            let released: Result<u64, sqlx::Error> = on_db!(&state.db, p => sqlx::query(
                "DELETE FROM idempotency_keys WHERE scope = $1 AND request_hash = $2 AND status = $3",
            ).bind(&scope).bind(&hash).bind(PENDING).execute(p).await.map(|r| r.rows_affected()));
            if let Err(e) = released {
                tracing::warn!(error = %e, "could not release an idempotency claim; it lapses in a minute");
            }
        });
    }
}

/// Claims `scope` for this request: true when no live row held it.
async fn try_claim(state: &AppState, scope: &str, request_hash: &str) -> Result<bool, ApiError> {
    let now = Utc::now();
    let expired = now - Duration::hours(TTL_HOURS);
    let abandoned = now - Duration::seconds(ABANDONED_AFTER_SECONDS);
    let claimed: u64 = on_db!(&state.db, p => sqlx::query(
        "INSERT INTO idempotency_keys (scope, request_hash, status, headers, body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (scope) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status, \
         headers = excluded.headers, body = excluded.body, created_at = excluded.created_at \
         WHERE idempotency_keys.created_at <= $7 \
            OR (idempotency_keys.status = $3 AND idempotency_keys.created_at <= $8)",
    ).bind(scope).bind(request_hash).bind(PENDING).bind(Json(Map::new())).bind(Vec::<u8>::new())
     .bind(now).bind(expired).bind(abandoned).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(claimed == 1)
}

/// A live row: its request's hash, and its answer once known.
struct Found {
    request_hash: String,
    answer: Option<Response>,
}

/// A stored row: request hash, status, replayed headers, body.
type StoredAnswer = (String, i32, Json<Map<String, Value>>, Vec<u8>);

async fn lookup(state: &AppState, scope: &str) -> Result<Option<Found>, ApiError> {
    let since = Utc::now() - Duration::hours(TTL_HOURS);
    let row: Option<StoredAnswer> = on_db_read!(&state.db, p => sqlx::query_as(
        "SELECT request_hash, status, headers, body FROM idempotency_keys WHERE scope = $1 AND created_at > $2",
    ).bind(scope).bind(since).fetch_optional(p).await)?;
    let Some((request_hash, status, Json(headers), body)) = row else { return Ok(None) };
    if status == PENDING {
        return Ok(Some(Found { request_hash, answer: None }));
    }
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let mut res = (status, Bytes::from(body)).into_response();
    for (name, value) in headers {
        if let (Ok(n), Some(Ok(v))) = (HeaderName::try_from(name.as_str()), value.as_str().map(HeaderValue::from_str)) {
            res.headers_mut().insert(n, v);
        }
    }
    res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some(Found { request_hash, answer: Some(res) }))
}

/// Stores the answer of the request that holds the claim.
async fn complete(
    state: &AppState,
    scope: &str,
    request_hash: &str,
    status: StatusCode,
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(), ApiError> {
    let kept: Map<String, Value> = REPLAYED
        .iter()
        .filter_map(|n| headers.get(*n).and_then(|v| v.to_str().ok()).map(|v| (n.to_string(), Value::from(v))))
        .collect();
    on_db!(&state.db, p => sqlx::query(
        "UPDATE idempotency_keys SET status = $3, headers = $4, body = $5 \
         WHERE scope = $1 AND request_hash = $2 AND status = $6",
    ).bind(scope).bind(request_hash).bind(i32::from(status.as_u16())).bind(Json(kept)).bind(body.to_vec())
     .bind(PENDING).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}
