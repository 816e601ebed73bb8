//! Prometheus metrics: `GET /metrics` in the text format.
//!
//! Recorded where they happen: request latency per route template, method and status
//! (this module's middleware); command outcomes per command and error code
//! (`http::run_active`); appends, conflicts and group-commit sizes (the command handler
//! and the Postgres store); emails sent and failed (the notifier); messages relayed (the
//! relay). Read when scraped: each projection's position and lag, the outbox depth and
//! the push connections of this process.

use crate::state::AppState;
use axum::extract::{MatchedPath, Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use metrics_exporter_prometheus::{Matcher, PrometheusBuilder, PrometheusHandle};
use std::sync::OnceLock;
use std::time::Instant;

/// Latency buckets (seconds): 1 ms to 10 s.
const BUCKETS: &[f64] = &[0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0];

/// The process's recorder (installed once; every app in a process shares it).
pub fn handle() -> &'static PrometheusHandle {
    static HANDLE: OnceLock<PrometheusHandle> = OnceLock::new();
    HANDLE.get_or_init(|| {
        let recorder = PrometheusBuilder::new()
            .set_buckets_for_metric(Matcher::Suffix("_seconds".into()), BUCKETS)
            .and_then(|b| {
                b.set_buckets_for_metric(
                    Matcher::Full("gather_store_group_commit_appends".into()),
                    &[1.0, 2.0, 4.0, 8.0, 16.0, 32.0, 64.0, 128.0],
                )
            })
            .expect("valid buckets")
            .build_recorder();
        let handle = recorder.handle();
        if metrics::set_global_recorder(recorder).is_err() {
            tracing::warn!("a metrics recorder was installed before Gather's; /metrics shows only what it renders");
        }
        handle
    })
}

/// Times every routed request (route template, not the raw path: ids do not explode
/// the label set).
pub async fn track(request: Request, next: Next) -> Response {
    let route = request.extensions().get::<MatchedPath>().map(|m| m.as_str().to_owned());
    let method = request.method().as_str().to_owned();
    let start = Instant::now();
    let response = next.run(request).await;
    let route = route.unwrap_or_else(|| "unmatched".into());
    let status = response.status().as_u16().to_string();
    metrics::histogram!("gather_http_request_duration_seconds", "route" => route, "method" => method, "status" => status)
        .record(start.elapsed().as_secs_f64());
    response
}

/// `GET /metrics`.
#[utoipa::path(get, path = "/metrics", tag = "operations",
    responses((status = 200, description = "Prometheus text format", content_type = "text/plain", body = String)))]
pub async fn render(State(state): State<AppState>) -> Response {
    // From the database: every projection's stored checkpoint, whichever process runs it.
    if let Ok(all) = crate::ops::status(&state.db).await {
        for p in all {
            let name = p.name.to_owned();
            metrics::gauge!("gather_projection_position", "projection" => name.clone())
                .set(p.checkpoint.position as f64);
            metrics::gauge!("gather_projection_lag_events", "projection" => name.clone()).set(p.lag_events as f64);
            metrics::gauge!("gather_projection_lag_seconds", "projection" => name).set(p.lag_ms as f64 / 1000.0);
        }
    }
    let depth: Result<i64, sqlx::Error> = gather_commands::on_db_read!(&state.db, p =>
        sqlx::query_scalar("SELECT count(*) FROM outbox").fetch_one(p).await);
    if let Ok(depth) = depth {
        metrics::gauge!("gather_outbox_depth").set(depth as f64);
    }
    metrics::gauge!("gather_push_connections").set(state.push.clients() as f64);
    metrics::gauge!("gather_broker_connected").set(if state.broker.as_ref().is_none_or(|b| b.is_connected()) {
        1.0
    } else {
        0.0
    });
    let mut text = handle().render();
    fence(&state, &mut text).await;
    let mut res = text.into_response();
    res.headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"));
    res
}

/// On Postgres, the xmin fence: how long the oldest writing transaction of the cluster
/// has held log readers back, and whose it is (labels a recorder cannot set per scrape).
async fn fence(state: &AppState, out: &mut String) {
    use std::fmt::Write as _;
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
}
