//! The `invitations` read model: which activity an invitation belongs to, its
//! (normalized) address and its answer.

use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use gather_domain::activity::{Activity, ActivityEvent};
use gather_store::RecordedEvent;
use gather_store::db::Tx;
use gather_store::on_tx;
use uuid::Uuid;

/// Projects invitation events into `invitations`.
pub struct InvitationsProjection;

#[async_trait]
impl Projection for InvitationsProjection {
    fn name(&self) -> &'static str {
        "invitations"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["invitations"]
    }

    async fn apply(&self, tx: &mut Tx, at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let Some((activity, event)) = decode_of::<Activity>(e)? else { return Ok(()) };
        let t = &at.table("invitations");
        use ActivityEvent as E;
        match event {
            E::GuestsInvited { invitations } => {
                let sql = format!(
                    "INSERT INTO {t} (invitation_id, activity_id, email, status, position, invited_at) \
                     VALUES ($1, $2, $3, 'pending', $4, $5) ON CONFLICT (invitation_id) DO NOTHING"
                );
                for i in invitations {
                    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(i.invitation_id).bind(activity).bind(i.email.normalized()).bind(e.position)
                     .bind(e.recorded_at).execute(&mut **c).await.map(|r| r.rows_affected()))?;
                }
            }
            E::InvitationAccepted { invitation_id, member_id, .. } => {
                set_status(tx, t, invitation_id, "accepted", member_id, e).await?
            }
            E::InvitationDeclined { invitation_id, member_id } => {
                set_status(tx, t, invitation_id, "declined", member_id, e).await?
            }
            E::ActivityDrafted { .. }
            | E::ActivityDetailsUpdated { .. }
            | E::ActivitySubmitted { .. }
            | E::ActivityPublished { .. }
            | E::ActivityRejected { .. }
            | E::ActivityRescheduled { .. }
            | E::ActivityCancelled { .. }
            | E::MediaAttached { .. }
            | E::ActivityCompleted { .. }
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

async fn set_status(
    tx: &mut Tx,
    t: &str,
    id: Uuid,
    status: &str,
    member: Uuid,
    e: &RecordedEvent,
) -> Result<(), sqlx::Error> {
    let sql = format!("UPDATE {t} SET status = $2, position = $3, member_id = $4 WHERE invitation_id = $1");
    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id).bind(status).bind(e.position).bind(member).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}
