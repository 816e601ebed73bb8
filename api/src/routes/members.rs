//! Routes of this resource (being filled in).

use crate::state::AppState;
use axum::Router;

/// The routes of this module.
pub fn router() -> Router<AppState> {
    Router::new()
}
