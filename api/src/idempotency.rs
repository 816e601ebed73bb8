//! `Idempotency-Key` on any POST (API.md): the first answer to (actor, method + path,
//! key) is stored for 24 h; a repeat with the same body gets that answer again and
//! appends nothing; the same key with a different body is refused with 422.
//!
//! Two requests racing with one key both reach their handler, but the command id is
//! derived from the key (`http::command_meta`), so the event store appends once and
//! both answer alike.

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

/// Answer headers worth replaying.
const REPLAYED: [&str; 4] = ["location", "etag", "gather-position", "content-type"];

fn hex_sha256(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// The actor part of the scope: the token's subject, unverified (the handler verifies
/// it; a forged subject only reaches its own scope, and the command id is scoped the same way).
fn subject(headers: &HeaderMap) -> String {
    headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(|t| hex_sha256(t.trim().as_bytes()))
        .unwrap_or_else(|| "guest".into())
}

/// The middleware; applies to POST requests that carry `Idempotency-Key`.
pub async fn layer(State(state): State<AppState>, req: Request, next: Next) -> Result<Response, ApiError> {
    if req.method() != Method::POST {
        return Ok(next.run(req).await);
    }
    let Some(key) = req.headers().get("idempotency-key") else { return Ok(next.run(req).await) };
    let key = key.to_str().map_err(|_| ApiError::field("Idempotency-Key", "must be visible ASCII"))?.to_string();
    if key.is_empty() || key.len() > 200 {
        return Err(ApiError::field("Idempotency-Key", "must be 1 to 200 characters"));
    }
    let (parts, body) = req.into_parts();
    let bytes = to_bytes(body, MAX_BODY).await.map_err(|_| ApiError::PayloadTooLarge(MAX_BODY))?;
    let scope = hex_sha256(format!("{}|{}|{}", subject(&parts.headers), parts.uri.path(), key).as_bytes());
    let request_hash = hex_sha256(&bytes);

    if let Some(found) = lookup(&state, &scope).await? {
        if found.0 != request_hash {
            return Err(ApiError::Unprocessable {
                code: "idempotency_key_reused",
                detail: "this Idempotency-Key was used with a different request body".into(),
            });
        }
        return Ok(found.1);
    }

    let response = next.run(Request::from_parts(parts, Body::from(bytes))).await;
    // Server errors are not remembered: the client may retry them.
    if response.status().is_server_error() {
        return Ok(response);
    }
    let (parts, body) = response.into_parts();
    let body = to_bytes(body, usize::MAX).await.map_err(ApiError::internal)?;
    store(&state, &scope, &request_hash, parts.status, &parts.headers, &body).await?;
    Ok(Response::from_parts(parts, Body::from(body)))
}

/// A stored answer: request hash, status, replayed headers, body.
type StoredAnswer = (String, i32, Json<Map<String, Value>>, Vec<u8>);

async fn lookup(state: &AppState, scope: &str) -> Result<Option<(String, Response)>, ApiError> {
    let since = Utc::now() - Duration::hours(TTL_HOURS);
    let row: Option<StoredAnswer> = on_db_read!(&state.db, p => sqlx::query_as(
        "SELECT request_hash, status, headers, body FROM idempotency_keys WHERE scope = $1 AND created_at > $2",
    ).bind(scope).bind(since).fetch_optional(p).await)?;
    let Some((hash, status, Json(headers), body)) = row else { return Ok(None) };
    let status = StatusCode::from_u16(status as u16).unwrap_or(StatusCode::OK);
    let mut res = (status, Bytes::from(body)).into_response();
    for (name, value) in headers {
        if let (Ok(n), Some(Ok(v))) = (HeaderName::try_from(name.as_str()), value.as_str().map(HeaderValue::from_str)) {
            res.headers_mut().insert(n, v);
        }
    }
    res.headers_mut().insert("idempotent-replayed", HeaderValue::from_static("true"));
    Ok(Some((hash, res)))
}

async fn store(
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
    let since = Utc::now() - Duration::hours(TTL_HOURS);
    on_db!(&state.db, p => sqlx::query(
        "INSERT INTO idempotency_keys (scope, request_hash, status, headers, body, created_at) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (scope) DO UPDATE SET request_hash = excluded.request_hash, status = excluded.status, \
         headers = excluded.headers, body = excluded.body, created_at = excluded.created_at \
         WHERE idempotency_keys.created_at <= $7",
    ).bind(scope).bind(request_hash).bind(i32::from(status.as_u16())).bind(Json(kept)).bind(body.to_vec())
     .bind(Utc::now()).bind(since).execute(p).await.map(|r| r.rows_affected()))?;
    Ok(())
}
