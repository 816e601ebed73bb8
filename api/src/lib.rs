//! Gather's HTTP API and process wiring.
//!
//! Reading order:
//! - [`settings`]: typed `GATHER_*` settings;
//! - [`app`]: `App::build(settings)` (shared by `main` and tests) and the router;
//! - [`state`]: what handlers share;
//! - [`error`], [`extract`], [`http`]: problem+json errors, JSON/path extractors,
//!   command answers and read-your-writes;
//! - [`auth`]: JWT and the actor extractors; [`passwords`]: bounded argon2;
//! - [`payments`]: the payment provider's signed webhook;
//! - [`idempotency`]: stored first answers for `Idempotency-Key`;
//! - [`openapi`]: the OpenAPI document's frame and shared answer shapes;
//! - [`media`]: the blob store behind media uploads;
//! - [`ops`]: operator commands (projection status, retry, skip, replay, verify);
//! - [`routes`]: one module per resource.

pub mod app;
pub mod auth;
pub mod error;
pub mod extract;
pub mod http;
pub mod idempotency;
pub mod limits;
pub mod media;
pub mod metrics;
pub mod openapi;
pub mod ops;
pub mod passwords;
pub mod payments;
pub mod push;
pub mod routes;
pub mod settings;
pub mod state;

pub use app::App;
pub use settings::Settings;

/// Installs the process-wide rustls crypto provider (idempotent). Call first thing.
pub fn install_crypto() {
    let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
}
