//! The `members` read model: profile, roles, children, organiser profile.

use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use gather_domain::member::{Member, MemberEvent};
use gather_domain::{Aggregate, Personal};
use gather_store::RecordedEvent;
use gather_store::codec::decode;
use gather_store::db::Tx;
use gather_store::on_tx;
use serde_json::{Value, json};
use sqlx::types::Json;
use uuid::Uuid;

/// Projects member streams into `members`.
pub struct MembersProjection;

async fn load_json(tx: &mut Tx, t: &str, id: Uuid, column: &str) -> Result<Option<Value>, sqlx::Error> {
    let sql = format!("SELECT {column} FROM {t} WHERE member_id = $1");
    let row: Option<(Option<Json<Value>>,)> =
        on_tx!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut **c).await)?;
    Ok(row.and_then(|(v,)| v.map(|Json(v)| v)))
}

async fn set(tx: &mut Tx, t: &str, id: Uuid, column: &str, value: Value, position: i64) -> Result<(), sqlx::Error> {
    let sql = format!("UPDATE {t} SET {column} = $2, position = $3 WHERE member_id = $1");
    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(Json(&value)).bind(position).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

fn member_id(event: &RecordedEvent) -> Option<Uuid> {
    event.stream.strip_prefix("member-").and_then(|s| Uuid::parse_str(s).ok())
}

#[async_trait]
impl Projection for MembersProjection {
    fn name(&self) -> &'static str {
        "members"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["members"]
    }

    async fn apply(&self, tx: &mut Tx, at: Target, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if event.category() != Member::CATEGORY {
            return Ok(());
        }
        let Some(id) = member_id(event) else { return Ok(()) };
        let pos = event.position;
        let t = &at.table("members");
        match decode::<MemberEvent>(event, crate::events::upcasters())? {
            MemberEvent::MemberRegistered { email, display_name, .. } => {
                let sql = format!(
                    "INSERT INTO {t} (member_id, email, display_name, roles, organiser, children, suspended, position) \
                     VALUES ($1, $2, $3, $4, NULL, $5, false, $6) ON CONFLICT (member_id) DO NOTHING"
                );
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(email.known().map_or("", |e| e.as_str())).bind(display_name.to_string())
                 .bind(Json(json!(["member"]))).bind(Json(json!([]))).bind(pos)
                 .execute(&mut **c).await.map(|r| r.rows_affected()))?;
            }
            MemberEvent::ProfileUpdated { display_name } => {
                let sql = format!("UPDATE {t} SET display_name = $2, position = $3 WHERE member_id = $1");
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id).bind(display_name.to_string()).bind(pos).execute(&mut **c).await.map(|r| r.rows_affected()))?;
            }
            // A forgotten child (its member's key is shredded) stays out: `MemberForgotten`
            // empties the list anyway.
            MemberEvent::ChildAdded {
                child_id,
                name: Personal::Known(name),
                birth_date: Personal::Known(birth_date),
            } => {
                let mut children = load_json(tx, t, id, "children").await?.unwrap_or_else(|| json!([]));
                if let Some(list) = children.as_array_mut() {
                    list.retain(|c| c["id"] != json!(child_id));
                    list.push(json!({"id": child_id, "name": name.as_str(), "birth_date": birth_date}));
                }
                set(tx, t, id, "children", children, pos).await?;
            }
            MemberEvent::ChildRemoved { child_id } => {
                let mut children = load_json(tx, t, id, "children").await?.unwrap_or_else(|| json!([]));
                if let Some(list) = children.as_array_mut() {
                    list.retain(|c| c["id"] != json!(child_id));
                }
                set(tx, t, id, "children", children, pos).await?;
            }
            MemberEvent::OrganiserProfileCreated { organisation_name } => {
                set(tx, t, id, "organiser", json!({"organisation_name": organisation_name.as_str()}), pos).await?;
                add_role(tx, t, id, "organiser", pos).await?;
            }
            MemberEvent::RoleGranted { role } => add_role(tx, t, id, role.as_str(), pos).await?,
            MemberEvent::RoleRevoked { role } => remove_role(tx, t, id, role.as_str(), pos).await?,
            MemberEvent::MemberSuspended { .. } => {
                let sql = format!("UPDATE {t} SET suspended = true, position = $2 WHERE member_id = $1");
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql))
                    .bind(id).bind(pos).execute(&mut **c).await.map(|r| r.rows_affected()))?;
            }
            MemberEvent::MemberForgotten { .. } => {
                let sql = format!("SELECT email FROM {t} WHERE member_id = $1");
                let email: Option<(String,)> =
                    on_tx!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(id).fetch_optional(&mut **c).await)?;
                if let Some((email,)) = email.filter(|(e,)| !e.is_empty()) {
                    scrub_elsewhere(tx, &email.to_lowercase()).await?;
                }
                // Its snapshot (one of an older shape held the fields in clear).
                let stream = format!("member-{id}");
                on_tx!(tx, c => sqlx::query("DELETE FROM snapshots WHERE stream = $1").bind(&stream)
                    .execute(&mut **c).await.map(|r| r.rows_affected()))?;
                let sql = format!(
                    "UPDATE {t} SET email = '', display_name = '(forgotten)', children = $2, position = $3 \
                     WHERE member_id = $1"
                );
                on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(id).bind(Json(json!([]))).bind(pos).execute(&mut **c).await.map(|r| r.rows_affected()))?;
                // The member's key, again: idempotent, and it finishes a forget whose
                // shred failed after the append (crash, lost connection).
                gather_store::vault::shred_in(tx, id).await?;
            }
            MemberEvent::ChildAdded { .. }
            | MemberEvent::PasswordSet { .. }
            | MemberEvent::ActivityFavourited { .. }
            | MemberEvent::ActivityUnfavourited { .. } => {}
        }
        Ok(())
    }
}

/// Copies of a forgotten member's address outside the read models: stored idempotent
/// answers that mention it (an invitation's reply lists the invited addresses; kept
/// 24 h under a hashed key) and mail of the legacy outbox to it.
async fn scrub_elsewhere(tx: &mut Tx, email: &str) -> Result<(), sqlx::Error> {
    let body = match tx {
        Tx::Postgres(_) => "encode(body, 'escape')",
        Tx::Sqlite(_) => "CAST(body AS TEXT)",
    };
    let pattern = format!("%{}%", crate::outbox::like_literal(email));
    let sql = format!("DELETE FROM idempotency_keys WHERE lower({body}) LIKE $1 ESCAPE '\\'");
    on_tx!(tx, c => sqlx::query(sqlx::AssertSqlSafe(sql)).bind(&pattern).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    on_tx!(tx, c => sqlx::query("DELETE FROM email_outbox WHERE lower(recipient) = $1").bind(email)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

async fn remove_role(tx: &mut Tx, t: &str, id: Uuid, role: &str, pos: i64) -> Result<(), sqlx::Error> {
    let mut roles = load_json(tx, t, id, "roles").await?.unwrap_or_else(|| json!(["member"]));
    if let Some(list) = roles.as_array_mut() {
        list.retain(|r| r != role);
    }
    set(tx, t, id, "roles", roles, pos).await
}

async fn add_role(tx: &mut Tx, t: &str, id: Uuid, role: &str, pos: i64) -> Result<(), sqlx::Error> {
    let mut roles = load_json(tx, t, id, "roles").await?.unwrap_or_else(|| json!(["member"]));
    if let Some(list) = roles.as_array_mut()
        && !list.iter().any(|r| r == role)
    {
        list.push(json!(role));
    }
    set(tx, t, id, "roles", roles, pos).await
}
