//! Routes, one module per resource; each exposes `fn router() -> OpenApiRouter<AppState>`
//! built from its handlers' `#[utoipa::path]` entries.

pub mod activities;
pub mod admin;
pub mod audit;
pub mod auth;
pub mod bookings;
pub mod chats;
pub mod health;
pub mod me;
pub mod media;
pub mod members;
pub mod payments;
pub mod reads;
pub mod series;
pub mod stream;
