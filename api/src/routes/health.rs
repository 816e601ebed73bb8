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
    Router::new().route("/health/live", get(live)).route("/health/ready", get(ready)).route("/metrics", get(metrics))
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

/// Prometheus text exposition: each projection's position, and on Postgres the xmin
/// fence (how long the oldest writing transaction of the cluster has held log readers
/// back, and whose it is).
async fn metrics(State(state): State<AppState>) -> Response {
    use std::fmt::Write as _;
    let mut out = String::new();
    let _ = writeln!(out, "# HELP gather_projection_position Global position of the last event a projection applied.");
    let _ = writeln!(out, "# TYPE gather_projection_position gauge");
    for (name, p) in state.projectors.progress() {
        let _ = writeln!(out, "gather_projection_position{{projection=\"{name}\"}} {}", p.checkpoint.position);
    }
    if let gather_commands::Db::Postgres(pool) = &state.db {
        let label = |v: &str| v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
        let _ = writeln!(
            out,
            "# HELP gather_log_fence_held_seconds How long the oldest open writing transaction of the cluster \
             has held back the log's readable head (0: none open)."
        );
        let _ = writeln!(out, "# TYPE gather_log_fence_held_seconds gauge");
        match gather_commands::store::postgres::fence(pool).await {
            Ok(Some(f)) => {
                let _ = writeln!(
                    out,
                    "gather_log_fence_held_seconds{{pid=\"{}\",application_name=\"{}\",database=\"{}\"}} {:.3}",
                    f.pid,
                    label(&f.application_name),
                    label(f.database.as_deref().unwrap_or("")),
                    f.held_for.as_secs_f64()
                );
            }
            Ok(None) => {
                let _ = writeln!(out, "gather_log_fence_held_seconds 0");
            }
            Err(e) => tracing::warn!(error = %e, "could not read the xmin fence for /metrics"),
        }
    }
    ([(axum::http::header::CONTENT_TYPE, "text/plain; version=0.0.4")], out).into_response()
}
