//! Gather's read side.
//!
//! Reading order:
//! - [`runtime`]: the projector runtime: subscribe from a checkpoint, apply a batch and
//!   write the checkpoint in one transaction, publish progress for read-your-writes;
//! - [`members`], [`activities`], [`invitations`]: the read models and their projections;
//! - [`queries`]: typed reads of the read models for the API;
//! - [`process`]: the process manager (activity events → durable timers);
//! - [`bus`]: RabbitMQ or in-process delivery of projection updates;
//! - [`mail`]: the email outbox, its notifier projection and the sender.

pub mod activities;
pub mod bus;
pub mod invitations;
pub mod mail;
pub mod members;
pub mod process;
pub mod queries;
pub mod runtime;

pub use runtime::{Progress, Projection, ProjectionError, Projectors};

use std::sync::Arc;

/// Every projection Gather runs, in a stable order.
pub fn all() -> Vec<Arc<dyn Projection>> {
    vec![
        Arc::new(members::MembersProjection),
        Arc::new(activities::ActivitiesProjection),
        Arc::new(mail::NotifierProjection),
        Arc::new(invitations::InvitationsProjection),
        Arc::new(process::ProcessManager),
    ]
}
