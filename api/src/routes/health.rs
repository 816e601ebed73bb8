//! `GET /health/live`, `GET /health/ready`, `GET /metrics`.

use crate::state::AppState;
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::json;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this module (every process serves them, whatever its roles).
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(live)).routes(routes!(ready)).routes(routes!(crate::metrics::render))
}

/// The process is up.
#[utoipa::path(get, path = "/health/live", tag = "operations",
    responses((status = 200, description = "Up", body = crate::openapi::Health, example = json!({"status": "live"}))))]
async fn live() -> Response {
    Json(json!({"status": "live"})).into_response()
}

/// Ready once the database answers, the broker (if any) is connected, every local
/// projector has caught up with the log as it was at start-up, and no projection (of
/// any process) is stopped or lags more than `GATHER_READY_MAX_LAG_SECS`.
#[utoipa::path(get, path = "/health/ready", tag = "operations",
    responses(
        (status = 200, description = "Ready: `{status, database, broker, max_lag_ms, projections: {name: {position, lag_events, lag_ms, within_bound, fault?}}}`", body = crate::openapi::Health),
        (status = 503, description = "Not ready, with the same details", body = crate::openapi::Health),
    ))]
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
    // Each projection's lag, from the database, against the bound.
    let bound = state.settings.ready_max_lag;
    let mut lagging = false;
    if let Ok(all) = crate::ops::status(&state.db).await {
        for p in all {
            let within = p.lag_ms <= bound.as_millis() as i64;
            lagging |= !within;
            let entry = projections.entry(p.name.to_string()).or_insert_with(|| json!({}));
            entry["stored_position"] = json!(p.checkpoint.position);
            entry["lag_events"] = json!(p.lag_events);
            entry["lag_ms"] = json!(p.lag_ms);
            entry["within_bound"] = json!(within);
        }
    }
    for f in &faults {
        let entry = projections.entry(f.name.clone()).or_insert_with(|| json!({"state": "Failed"}));
        entry["fault"] = json!({
            "stream": f.stream, "version": f.version, "position": f.position, "error": f.error, "failed_at": f.failed_at,
        });
    }
    let caught_up = state.projectors.ready() && faults.is_empty() && !lagging;
    let ok = database && broker && caught_up;
    let body = Json(json!({
        "status": if ok { "ready" } else { "not_ready" },
        "database": database,
        "broker": broker,
        "max_lag_ms": bound.as_millis() as u64,
        "projections": projections,
    }));
    let status = if ok { StatusCode::OK } else { StatusCode::SERVICE_UNAVAILABLE };
    (status, body).into_response()
}
