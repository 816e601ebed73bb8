//! The `invitations` read model: which activity an invitation belongs to, its
//! (normalized) address and its answer.

use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use gather_commands::Upcasters;
use gather_commands::codec::decode;
use gather_commands::db::Tx;
use gather_commands::on_tx;
use gather_commands::store::RecordedEvent;
use gather_domain::activity::ActivityEvent;
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
        if !matches!(e.event_type.as_str(), "GuestsInvited" | "InvitationAccepted" | "InvitationDeclined") {
            return Ok(());
        }
        let Some(activity) = e.stream.strip_prefix("activity-").and_then(|s| Uuid::parse_str(s).ok()) else {
            return Ok(());
        };
        let t = &at.table("invitations");
        match decode::<ActivityEvent>(e, &Upcasters::new())? {
            ActivityEvent::GuestsInvited { invitations } => {
                let sql = format!(
                    "INSERT INTO {t} (invitation_id, activity_id, email, status, position) \
                     VALUES ($1, $2, $3, 'pending', $4) ON CONFLICT (invitation_id) DO NOTHING"
                );
                for i in invitations {
                    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(i.invitation_id).bind(activity).bind(i.email.normalized()).bind(e.position)
                     .execute(&mut **c).await.map(|r| r.rows_affected()))?;
                }
            }
            ActivityEvent::InvitationAccepted { invitation_id, .. } => {
                set_status(tx, t, invitation_id, "accepted", e).await?
            }
            ActivityEvent::InvitationDeclined { invitation_id, .. } => {
                set_status(tx, t, invitation_id, "declined", e).await?
            }
            _ => {}
        }
        Ok(())
    }
}

async fn set_status(tx: &mut Tx, t: &str, id: Uuid, status: &str, e: &RecordedEvent) -> Result<(), sqlx::Error> {
    let sql = format!("UPDATE {t} SET status = $2, position = $3 WHERE invitation_id = $1");
    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
        .bind(id).bind(status).bind(e.position).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}
