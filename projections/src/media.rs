//! The `media` read model: which activity an uploaded media item belongs to, and what
//! it is (`GET /v1/media/{id}` finds its activity, and so its visibility, here).

use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use gather_domain::activity::{Activity, ActivityEvent};
use gather_store::RecordedEvent;
use gather_store::db::Tx;
use gather_store::on_tx;

/// Projects `MediaAttached` into `media`.
pub struct MediaProjection;

#[async_trait]
impl Projection for MediaProjection {
    fn name(&self) -> &'static str {
        "media"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["media"]
    }

    async fn apply(&self, tx: &mut Tx, at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let Some((activity, event)) = decode_of::<Activity>(e)? else { return Ok(()) };
        let t = at.table("media");
        use ActivityEvent as E;
        match event {
            E::MediaAttached { media_id, file } => {
                let sql = format!(
                    "INSERT INTO {t} (media_id, activity_id, kind, content_type, bytes, position, attached_at) \
                     VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (media_id) DO NOTHING"
                );
                let bytes = i64::try_from(file.bytes()).unwrap_or(i64::MAX);
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(media_id).bind(activity)
                    .bind(file.kind().as_str()).bind(file.content_type()).bind(bytes).bind(e.position)
                    .bind(e.recorded_at).execute(&mut **c).await.map(|r| r.rows_affected()))?;
            }
            E::ActivityDrafted { .. }
            | E::ActivityDetailsUpdated { .. }
            | E::ActivitySubmitted { .. }
            | E::ActivityPublished { .. }
            | E::ActivityRejected { .. }
            | E::ActivityRescheduled { .. }
            | E::ActivityCancelled { .. }
            | E::ActivityCompleted { .. }
            | E::GuestsInvited { .. }
            | E::InvitationAccepted { .. }
            | E::InvitationDeclined { .. }
            | E::BookingReserved { .. }
            | E::BookingConfirmed { .. }
            | E::WaitlistJoined { .. }
            | E::WaitlistPromoted { .. }
            | E::BookingCancelled { .. }
            | E::ReservationExpired { .. }
            | E::AttendeeListSent { .. } => {}
        }
        Ok(())
    }
}
