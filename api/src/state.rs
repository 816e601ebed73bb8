//! The state every handler shares.

use crate::auth::Jwt;
use crate::passwords::Passwords;
use crate::settings::Settings;
use gather_commands::{CommandHandler, Db, EventStore};
use gather_projections::Projectors;
use std::sync::Arc;

/// Shared by every request: one `Arc`, so the clone each middleware and extractor
/// takes is a reference count, not a copy of the projectors' maps.
#[derive(Clone)]
pub struct AppState(Arc<Shared>);

impl AppState {
    /// Wraps what the process shares.
    pub fn new(shared: Shared) -> AppState {
        AppState(Arc::new(shared))
    }
}

impl std::ops::Deref for AppState {
    type Target = Shared;

    fn deref(&self) -> &Shared {
        &self.0
    }
}

/// What [`AppState`] holds.
pub struct Shared {
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
    /// Names email reservations (`GATHER_LOOKUP_KEY`).
    pub lookup: gather_commands::uniqueness::LookupKey,
    /// Password hashing, bounded (argon2 is memory-hungry).
    pub passwords: Arc<Passwords>,
    /// RabbitMQ (None: the in-process bus carries updates).
    pub broker: Option<gather_projections::bus::Broker>,
    /// The in-process bus (embedded, or no `GATHER_AMQP_URL`).
    pub local_bus: gather_projections::bus::LocalBus,
    /// This process's real-time clients.
    pub push: Arc<crate::push::PushHub>,
    /// Flips when a stop's bound has passed (`GATHER_SHUTDOWN_TIMEOUT_SECS`).
    pub cut_off: tokio::sync::watch::Receiver<bool>,
    /// Rate limits (commands per member, guests and logins per IP).
    pub limits: Arc<crate::limits::Limits>,
    /// Where media blobs live (`GATHER_MEDIA_URL`).
    pub blobs: crate::media::Blobs,
    /// The outbox relay's counters (None: this process has no projector role).
    pub relay: Option<Arc<gather_projections::relay::RelayStats>>,
}

impl Shared {
    /// Rounds the relay failed so far (broker errors, refused messages).
    pub fn relay_failures(&self) -> u64 {
        self.relay.as_ref().map_or(0, |r| r.failures.load(std::sync::atomic::Ordering::Relaxed))
    }
}
