//! Media (filled in below).
use crate::state::AppState;
use utoipa_axum::router::OpenApiRouter;

/// The routes of this module.
pub fn router() -> OpenApiRouter<AppState> {
    OpenApiRouter::new()
}
