//! `GET /health/live`, `GET /health/ready`, `GET /metrics`.

use crate::state::AppState;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use serde_json::json;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new().route("/health/live", get(live)).route("/health/ready", get(ready))
}

async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

/// Ready once the database answers, the broker (if any) is connected and every
/// projector has caught up with the log as it was at start-up.
async fn ready(State(state): State<AppState>) -> Response {
    let database = state.db.ping().await.is_ok();
    let broker = match &state.broker {
        Some(broker) => broker.is_connected(),
        None => true,
    };
    // Faults are read from the database: any process's projector may have stopped.
    let faults = gather_projections::faults::faults(&state.db).await.unwrap_or_default();
    let mut projections: serde_json::Map<String, serde_json::Value> = state
        .projectors
        .progress()
        .into_iter()
        .map(|(name, p)| {
            (name.to_string(), json!({"position": p.checkpoint.position, "state": format!("{:?}", p.state)}))
        })
        .collect();
    for f in &faults {
        let entry = projections.entry(f.name.clone()).or_insert_with(|| json!({"state": "Failed"}));
        entry["fault"] = json!({
            "stream": f.stream, "version": f.version, "position": f.position, "error": f.error, "failed_at": f.failed_at,
        });
    }
    let caught_up = state.projectors.ready() && faults.is_empty();
    let ok = database && broker && caught_up;
    let body = Json(json!({
        "status": if ok { "ready" } else { "not_ready" },
        "database": database,
        "broker": broker,
        "projections": projections,
    }));
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, body).into_response()
}
