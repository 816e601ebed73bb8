//! Gather's read side.
//!
//! Reading order:
//! - [`runtime`]: the projector runtime: subscribe from a checkpoint, apply a batch and
//!   write the checkpoint in one transaction, publish progress for read-your-writes;
//! - [`faults`]: a projector stopped on an event it cannot apply, and the operator's
//!   retry or skip;
//! - [`rebuild`]: rebuilding a projection into shadow tables, then swapping them in;
//! - [`verify`]: comparing a fresh rebuild with the live tables at one checkpoint;
//! - [`events`]: decoding the log through the shared upcasters, matched exhaustively;
//! - [`members`], [`activities`] (with bookings), [`invitations`], [`favourites`], [`media`],
//!   [`chats`], [`search`], [`series`]: the read models and their projections;
//! - [`sql`]: dynamic statements over both backends;
//! - [`queries`]: typed reads of the read models for the API;
//! - [`process`]: the process manager (activity and series events → durable timers);
//! - [`outbox`]: the `updates` projection writing what members and workers care about
//!   into the outbox (and `audit_exchange`, every event for `gather.audit`);
//! - [`relay`]: outbox → RabbitMQ (or the in-process bus), confirmed, then deleted;
//! - [`bus`]: the update contract, the RabbitMQ topology and the in-process bus;
//! - [`notifier`]: the notification worker (templates, recipients, retries);
//! - [`mail`]: SMTP or `.eml` files, and the legacy email outbox's sender.

pub mod activities;
pub mod bus;
pub mod chats;
pub mod checkpoints;
pub mod events;
pub mod faults;
pub mod favourites;
pub mod invitations;
pub mod mail;
pub mod media;
pub mod members;
pub mod notifier;
pub mod outbox;
pub mod process;
pub mod queries;
pub mod rebuild;
pub mod relay;
pub mod runtime;
pub mod search;
pub mod series;
pub mod sql;
pub mod tail;
pub mod verify;

pub use runtime::{Progress, Projection, ProjectionError, Projectors, Target};

use gather_commands::scheduler::CleanUp;
use std::sync::Arc;

/// The read side's periodic clean-up jobs, run by the scheduler: invitations nobody
/// answered before their activity started (the domain refuses answers after the start),
/// and emails delivered more than a week ago.
pub fn clean_ups() -> Vec<CleanUp> {
    vec![
        CleanUp {
            what: "expired invitations",
            sql: "DELETE FROM invitations WHERE status = 'pending' \
                  AND activity_id IN (SELECT activity_id FROM activities WHERE starts_at <= $1)",
            age: chrono::Duration::zero(),
        },
        CleanUp {
            what: "delivered emails",
            sql: "DELETE FROM email_outbox WHERE sent_at IS NOT NULL AND sent_at < $1",
            age: chrono::Duration::days(7),
        },
        CleanUp {
            what: "sent-notification records",
            sql: "DELETE FROM sent_notifications WHERE sent_at < $1",
            age: chrono::Duration::days(7),
        },
    ]
}

/// Every projection Gather runs, in a stable order.
pub fn all() -> Vec<Arc<dyn Projection>> {
    all_with(false)
}

/// Every projection, plus `audit_exchange` when `audit_exchange` is on
/// (`GATHER_AUDIT_EXCHANGE=on`).
pub fn all_with(audit_exchange: bool) -> Vec<Arc<dyn Projection>> {
    let mut all: Vec<Arc<dyn Projection>> = vec![
        Arc::new(members::MembersProjection),
        Arc::new(activities::ActivitiesProjection),
        Arc::new(outbox::UpdatesProjection),
        Arc::new(invitations::InvitationsProjection),
        Arc::new(favourites::FavouritesProjection),
        Arc::new(media::MediaProjection),
        Arc::new(chats::ChatsProjection),
        Arc::new(search::SearchProjection),
        Arc::new(series::SeriesProjection),
        Arc::new(process::ProcessManager),
    ];
    if audit_exchange {
        all.push(Arc::new(outbox::AuditProjection));
    }
    all
}
