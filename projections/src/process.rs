//! The process manager: follows the log like a projector (checkpointed) and turns
//! activity and series events into durable timers (`domain::process::react` and
//! `react_series` decide which), written in the same transaction as its checkpoint.

use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use gather_commands::scheduler::{cancel, schedule};
use gather_domain::activity::Activity;
use gather_domain::process::{Reaction, react, react_series};
use gather_domain::series::Series;
use gather_store::RecordedEvent;
use gather_store::db::Tx;

/// Schedules the commands activity and series events call for.
pub struct ProcessManager;

#[async_trait]
impl Projection for ProcessManager {
    fn name(&self) -> &'static str {
        "process_manager"
    }

    async fn apply(&self, tx: &mut Tx, _at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let reactions = if let Some((activity, event)) = decode_of::<Activity>(e)? {
            react(activity, &event, e.recorded_at)
        } else if let Some((series, event)) = decode_of::<Series>(e)? {
            react_series(series, &event, e.recorded_at)
        } else {
            return Ok(());
        };
        for reaction in reactions {
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
