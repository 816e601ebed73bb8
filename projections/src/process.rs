//! The process manager: follows the log like a projector (checkpointed) and turns
//! activity events into durable timers (`domain::process::react` decides which),
//! written in the same transaction as its checkpoint.

use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use gather_commands::scheduler::{cancel, schedule};
use gather_domain::activity::ActivityEvent;
use gather_domain::process::{Reaction, react};
use gather_store::RecordedEvent;
use gather_store::codec::decode;
use gather_store::db::Tx;
use uuid::Uuid;

/// Schedules the commands activity events call for.
pub struct ProcessManager;

#[async_trait]
impl Projection for ProcessManager {
    fn name(&self) -> &'static str {
        "process_manager"
    }

    async fn apply(&self, tx: &mut Tx, _at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        if !matches!(
            e.event_type.as_str(),
            "ActivityPublished"
                | "ActivityRescheduled"
                | "ActivityCancelled"
                | "BookingReserved"
                | "BookingConfirmed"
                | "BookingCancelled"
        ) {
            return Ok(());
        }
        let Some(activity) = e.stream.strip_prefix("activity-").and_then(|s| Uuid::parse_str(s).ok()) else {
            return Ok(());
        };
        let event = decode::<ActivityEvent>(e, crate::events::upcasters())?;
        for reaction in react(activity, &event, e.recorded_at) {
            match reaction {
                Reaction::Schedule { key, due_at, command } => {
                    schedule(tx, &key, due_at, &command, e.event_id, e.correlation_id).await?
                }
                Reaction::Cancel { key } => cancel(tx, &key).await?,
            }
        }
        Ok(())
    }
}
