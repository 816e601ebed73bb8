//! The `invitations` read model: which activity an invitation belongs to, its
//! (normalized) address and its answer.

use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use gather_domain::Personal;
use gather_domain::activity::{Activity, ActivityEvent};
use gather_domain::member::{Member, MemberEvent};
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
        &["invitations", "invitation_member_emails"]
    }

    async fn apply(&self, tx: &mut Tx, at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        if e.category() == "member" {
            return forget(tx, &at, e).await;
        }
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
                    // A forgotten address reads as it does live after the forget: the
                    // invitation (and its answer) stays, matching no one.
                    let email = match i.email.known() {
                        Some(email) => email.normalized(),
                        None => forgotten_address(i.invitation_id),
                    };
                    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(i.invitation_id).bind(activity).bind(email).bind(e.position)
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

/// What an invitation's address becomes once its owner is forgotten (it matches no one).
fn forgotten_address(invitation: Uuid) -> String {
    format!("forgotten:{invitation}")
}

/// Members' addresses, kept so that forgetting a member scrubs the invitations sent to
/// their address. Of a member's events only these two are read: one this projection
/// cannot decode stops the projectors that need it, not the invitations.
async fn forget(tx: &mut Tx, at: &Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
    if !matches!(e.event_type.as_str(), "MemberRegistered" | "MemberForgotten") {
        return Ok(());
    }
    let Some((member, event)) = decode_of::<Member>(e)? else { return Ok(()) };
    let (emails, t) = (at.table("invitation_member_emails"), at.table("invitations"));
    match event {
        MemberEvent::MemberRegistered { email: Personal::Known(email), .. } => {
            let sql = format!(
                "INSERT INTO {emails} (email, member_id) VALUES ($1, $2) \
                 ON CONFLICT (email) DO UPDATE SET member_id = excluded.member_id"
            );
            on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(email.normalized()).bind(member)
                .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        MemberEvent::MemberForgotten { .. } => {
            let sql = format!("SELECT email FROM {emails} WHERE member_id = $1");
            let found: Vec<(String,)> = on_tx!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(member)
                .fetch_all(&mut **c).await)?;
            for (email,) in found {
                // The address becomes unreadable; the invitation (and its answer) stays.
                let sql = format!("SELECT invitation_id FROM {t} WHERE email = $1");
                let sent: Vec<(Uuid,)> = on_tx!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(email)
                    .fetch_all(&mut **c).await)?;
                let sql = format!("UPDATE {t} SET email = $2 WHERE invitation_id = $1");
                for (invitation,) in sent {
                    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql.clone())).bind(invitation)
                        .bind(forgotten_address(invitation)).execute(&mut **c).await.map(|r| r.rows_affected()))?;
                }
            }
            let sql = format!("DELETE FROM {emails} WHERE member_id = $1");
            on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(member)
                .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        _ => {}
    }
    Ok(())
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
