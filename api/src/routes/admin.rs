//! Operators' views of the read side: `GET /v1/admin/projections` and
//! `POST /v1/admin/projections/{name}/rebuild` (moderator).

use crate::auth::Authed;
use crate::error::ApiError;
use crate::extract::Path;
use crate::http::{ensure_active, read_response};
use crate::state::AppState;
use axum::extract::State;
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::Utc;
use gather_domain::Role;
use gather_projections::rebuild::{Rebuild, RebuildError, RebuildStatus, statuses};
use gather_projections::runtime::{RunState, lag, load_checkpoint};
use serde_json::{Value, json};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new().routes(routes!(list)).routes(routes!(rebuild))
}

/// Checks the caller is an active moderator.
async fn moderator(state: &AppState, auth: &Authed) -> Result<(), ApiError> {
    auth.require(Role::Moderator)?;
    ensure_active(state, &auth.0).await
}

fn rebuilding_view(r: &RebuildStatus) -> Value {
    let now = Utc::now();
    json!({
        "progress": r.progress(),
        "position": r.position,
        "target_position": r.target_position,
        "events": r.events,
        "started_at": r.started_at,
        "heartbeat_at": r.heartbeat_at,
        "stale": r.error.is_none() && r.stale(now),
        "error": r.error,
    })
}

/// Every projection: its checkpoint, lag, state here and any rebuild.
#[utoipa::path(get, path = "/v1/admin/projections", tag = "operations", responses((status = 200, description = "Projections", body = crate::openapi::ProjectionList)), security(("bearer" = [])))]
async fn list(State(state): State<AppState>, auth: Authed) -> Result<Response, ApiError> {
    moderator(&state, &auth).await?;
    let rebuilds = statuses(&state.db).await.map_err(ApiError::internal)?;
    let running = state.projectors.progress();
    // Faults are stored: a projector of any process may have stopped.
    let faults = gather_projections::faults::faults(&state.db).await.map_err(ApiError::internal)?;
    let now = Utc::now();
    let mut items = Vec::new();
    for p in gather_projections::all() {
        let name = p.name();
        let checkpoint = load_checkpoint(&state.db, name).await.map_err(ApiError::internal)?;
        let (lag_events, oldest) = lag(&state.db, checkpoint).await.map_err(ApiError::internal)?;
        let lag_ms = oldest.map(|t| (now - t).num_milliseconds().max(0)).unwrap_or(0);
        let fault = faults.iter().find(|f| f.name == name);
        let run_state = match running.get(name).map(|p| &p.state) {
            _ if fault.is_some() => "failed".to_owned(),
            Some(RunState::Live) => "live".to_owned(),
            Some(RunState::CatchingUp) => "catching_up".to_owned(),
            Some(RunState::Failed(why)) => format!("failed: {why}"),
            None => "not_running_here".to_owned(),
        };
        items.push(json!({
            "name": name,
            "position": checkpoint.position,
            "lag_events": lag_events,
            "lag_ms": lag_ms,
            "state": run_state,
            "rebuildable": !p.tables().is_empty(),
            "rebuilding": rebuilds.iter().find(|r| r.name == name).map(rebuilding_view),
            "fault": fault.map(|f| json!({
                "stream": f.stream, "version": f.version, "position": f.position, "error": f.error,
                "failed_at": f.failed_at,
            })),
        }));
    }
    let head = state.store.head().await?.position;
    Ok(read_response(json!({"items": items, "next_cursor": null}), head, None))
}

/// Starts rebuilding a projection beside its live tables; `202` once claimed.
#[utoipa::path(post, path = "/v1/admin/projections/{name}/rebuild", tag = "operations", params(("name" = String, Path, description = "The projection name")), responses((status = 202, description = "Rebuilding", body = crate::openapi::RebuildStarted)), security(("bearer" = [])))]
async fn rebuild(State(state): State<AppState>, auth: Authed, Path(name): Path<String>) -> Result<Response, ApiError> {
    moderator(&state, &auth).await?;
    let claimed = Rebuild::claim(&state.db, state.store.clone(), &gather_projections::all(), &name).await;
    let job = match claimed {
        Ok(job) => job,
        Err(RebuildError::Unknown(_)) => return Err(ApiError::NotFound(format!("no projection named {name:?}"))),
        Err(e @ RebuildError::NotRebuildable(_)) => {
            return Err(ApiError::Conflict { code: "projection_not_rebuildable", detail: e.to_string() });
        }
        Err(e @ RebuildError::InProgress(_)) => {
            return Err(ApiError::Conflict { code: "rebuild_in_progress", detail: e.to_string() });
        }
        Err(e) => return Err(ApiError::internal(e)),
    };
    tracing::info!(projection = job.name(), by = %auth.0.id, "rebuild requested");
    let projectors = state.projectors.clone();
    let name = job.name();
    tokio::spawn(async move {
        match job.run().await {
            Ok(_) => projectors.resync(name),
            Err(e) => tracing::warn!(projection = name, error = %e, "rebuild did not finish"),
        }
    });
    let mut res = (StatusCode::ACCEPTED, axum::Json(json!({"name": name, "status": "rebuilding"}))).into_response();
    res.headers_mut().insert(header::LOCATION, HeaderValue::from_static("/v1/admin/projections"));
    Ok(res)
}
