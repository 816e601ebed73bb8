//! The `favourites` read model: each member's favourite activities, newest first.

use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use gather_domain::member::{Member, MemberEvent};
use gather_store::RecordedEvent;
use gather_store::db::Tx;
use gather_store::on_tx;

/// Projects favourites from member streams into `favourites`.
pub struct FavouritesProjection;

#[async_trait]
impl Projection for FavouritesProjection {
    fn name(&self) -> &'static str {
        "favourites"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["favourites"]
    }

    async fn apply(&self, tx: &mut Tx, at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let Some((member, event)) = decode_of::<Member>(e)? else { return Ok(()) };
        let t = at.table("favourites");
        use MemberEvent as M;
        match event {
            M::ActivityFavourited { activity_id } => {
                // The member stream's version orders a member's favourites.
                let sql = format!(
                    "INSERT INTO {t} (member_id, activity_id, seq, favourited_at) VALUES ($1, $2, $3, $4) \
                     ON CONFLICT (member_id, activity_id) DO UPDATE SET seq = excluded.seq, favourited_at = excluded.favourited_at"
                );
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(member).bind(activity_id).bind(e.version)
                    .bind(e.recorded_at).execute(&mut **c).await.map(|r| r.rows_affected()))?;
            }
            M::ActivityUnfavourited { activity_id } => {
                let sql = format!("DELETE FROM {t} WHERE member_id = $1 AND activity_id = $2");
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(member).bind(activity_id)
                    .execute(&mut **c).await.map(|r| r.rows_affected()))?;
            }
            M::MemberForgotten { .. } => {
                let sql = format!("DELETE FROM {t} WHERE member_id = $1");
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(member)
                    .execute(&mut **c).await.map(|r| r.rows_affected()))?;
            }
            M::MemberRegistered { .. }
            | M::PasswordSet { .. }
            | M::ProfileUpdated { .. }
            | M::ChildAdded { .. }
            | M::ChildRemoved { .. }
            | M::OrganiserProfileCreated { .. }
            | M::MemberSuspended { .. }
            | M::RoleGranted { .. }
            | M::RoleRevoked { .. } => {}
        }
        Ok(())
    }
}
