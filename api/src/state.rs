//! The state every handler shares.

use crate::auth::Jwt;
use crate::passwords::Passwords;
use crate::settings::Settings;
use gather_commands::{CommandHandler, Db, EventStore};
use gather_projections::Projectors;
use std::sync::Arc;

/// Shared by every request.
#[derive(Clone)]
pub struct AppState {
    /// The settings the process started with.
    pub settings: Arc<Settings>,
    /// Read models and the store's database.
    pub db: Db,
    /// The event store.
    pub store: Arc<dyn EventStore>,
    /// Load → decide → append.
    pub commands: CommandHandler,
    /// The projectors running in this process (health, admin).
    pub projectors: Projectors,
    /// Stored checkpoints of every process's projectors (read-your-writes waits on them).
    pub checkpoints: gather_projections::checkpoints::Checkpoints,
    /// Token signing.
    pub jwt: Jwt,
    /// Password hashing, bounded (argon2 is memory-hungry).
    pub passwords: Arc<Passwords>,
    /// The message bus (None: in-process only).
    pub bus: Option<Arc<gather_projections::bus::Bus>>,
}
