//! Projector faults and the operator's decisions on them.
//!
//! An event a projector cannot apply (it cannot be decoded: a broken release wrote it,
//! or an upcaster is missing) stops that projector alone. Its batch is applied up to the
//! event before, and in the same transaction the fault is recorded in
//! `projection_faults` (stream, version and the event's place in the log), so the
//! stored checkpoint stands just before the faulted event. The projector then waits,
//! reading the fault row about once a second, until an operator decides:
//!
//! - [`retry`] deletes the fault: the projector re-reads its checkpoint and tries the
//!   same event again (after a fix was deployed, it applies; without one it faults again);
//! - [`skip`] moves the checkpoint past the faulted event (it must be named by its
//!   position, so nobody skips an event they have not looked at) and deletes the fault.
//!
//! Both run under the checkpoint's lock (`runtime::lock_checkpoint`), as the projector's
//! own batches do, and are logged and recorded in `projection_decisions`.

use crate::runtime::{lock_checkpoint, save_checkpoint};
use chrono::{DateTime, Utc};
use gather_store::Checkpoint;
use gather_store::db::{Db, Tx};
use gather_store::{on_db_read, on_tx};

/// A projector stopped on an event it cannot apply, as `projection_faults` holds it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Fault {
    /// The projection.
    pub name: String,
    /// The faulted event's stream.
    pub stream: String,
    /// The faulted event's version in its stream.
    pub version: i64,
    /// The faulted event's order key before `position`.
    pub commit_id: i64,
    /// The faulted event's global position.
    pub position: i64,
    /// Why it could not be applied (the error and its causes, on one line).
    pub error: String,
    /// When the projector stopped on it.
    pub failed_at: DateTime<Utc>,
}

impl Fault {
    /// The faulted event's place in the log (a skip moves the checkpoint here).
    pub fn checkpoint(&self) -> Checkpoint {
        Checkpoint { commit_id: self.commit_id, position: self.position }
    }

    /// One line naming the projection, the event and the error (the `Failed` state).
    pub fn message(&self) -> String {
        format!(
            "projection {} stopped at {}@{} (position {}): {}",
            self.name, self.stream, self.version, self.position, self.error
        )
    }
}

/// An operator's decision on a fault, as `projection_decisions` records it.
#[derive(Debug, Clone, PartialEq, Eq, sqlx::FromRow)]
pub struct Decision {
    /// The projection.
    pub name: String,
    /// `retry` or `skip`.
    pub decision: String,
    /// The faulted event's global position.
    pub position: i64,
    /// The fault it decided on (event and error), on one line.
    pub detail: String,
    /// When.
    pub decided_at: DateTime<Utc>,
}

/// Why an operator's decision was refused.
#[derive(Debug, thiserror::Error)]
pub enum FaultError {
    /// The projection has no recorded fault: nothing to decide (it may run fine, or
    /// another operator decided first). Check `gather projections status`.
    #[error("projection {0:?} has no recorded fault")]
    NoFault(String),
    /// A skip named another event than the faulted one: read the fault again and
    /// pass its position.
    #[error(
        "projection {name:?} is stopped at position {faulted} ({stream}@{version}), not {given}; \
         skip takes the faulted event's position"
    )]
    WrongPosition {
        /// The projection.
        name: String,
        /// The position given.
        given: i64,
        /// The faulted event's position.
        faulted: i64,
        /// The faulted event's stream.
        stream: String,
        /// The faulted event's version.
        version: i64,
    },
    /// The database failed: nothing was decided; try again.
    #[error("fault database error")]
    Database(#[from] sqlx::Error),
}

const COLUMNS: &str = "name, stream, version, commit_id, position, error, failed_at FROM projection_faults";

/// Every recorded fault, by projection name (for readiness and the operators' views).
pub async fn faults(db: &Db) -> Result<Vec<Fault>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} ORDER BY name");
    on_db_read!(db, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch_all(p).await)
}

/// The recorded fault of projection `name`, if it is stopped.
pub async fn fault(db: &Db, name: &str) -> Result<Option<Fault>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} WHERE name = $1");
    on_db_read!(db, p => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(p).await)
}

/// Every decision taken on the faults of `name`, oldest first.
pub async fn decisions(db: &Db, name: &str) -> Result<Vec<Decision>, sqlx::Error> {
    on_db_read!(db, p => sqlx::query_as(
        "SELECT name, decision, position, detail, decided_at FROM projection_decisions WHERE name = $1 ORDER BY id",
    ).bind(name).fetch_all(p).await)
}

/// Records `fault` inside `tx` (the projector's transaction, under its checkpoint lock).
pub(crate) async fn record(tx: &mut Tx, fault: &Fault) -> Result<(), sqlx::Error> {
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO projection_faults (name, stream, version, commit_id, position, error, failed_at) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT (name) DO UPDATE SET stream = excluded.stream, \
         version = excluded.version, commit_id = excluded.commit_id, position = excluded.position, \
         error = excluded.error, failed_at = excluded.failed_at",
    ).bind(&fault.name).bind(&fault.stream).bind(fault.version).bind(fault.commit_id).bind(fault.position)
     .bind(&fault.error).bind(fault.failed_at).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Reads the fault of `name` inside `tx`.
async fn fault_in(tx: &mut Tx, name: &str) -> Result<Option<Fault>, sqlx::Error> {
    let sql = format!("SELECT {COLUMNS} WHERE name = $1");
    on_tx!(tx, c => sqlx::query_as(sqlx::AssertSqlSafe(sql)).bind(name).fetch_optional(&mut **c).await)
}

/// Deletes the fault and records the decision, inside `tx`.
async fn decide(tx: &mut Tx, fault: &Fault, decision: &str) -> Result<(), sqlx::Error> {
    on_tx!(tx, c => sqlx::query("DELETE FROM projection_faults WHERE name = $1")
        .bind(&fault.name).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    let detail = format!("{}@{}: {}", fault.stream, fault.version, fault.error);
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO projection_decisions (name, decision, position, detail, decided_at) VALUES ($1, $2, $3, $4, $5)",
    ).bind(&fault.name).bind(decision).bind(fault.position).bind(detail).bind(Utc::now())
     .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Lets the stopped projector of `name` try its faulted event again: deletes the fault
/// (the projector notices within about a second). Returns the fault decided on.
pub async fn retry(db: &Db, name: &str) -> Result<Fault, FaultError> {
    let mut tx = db.begin().await?;
    lock_checkpoint(&mut tx, name).await?;
    let fault = fault_in(&mut tx, name).await?.ok_or_else(|| FaultError::NoFault(name.to_owned()))?;
    decide(&mut tx, &fault, "retry").await?;
    tx.commit().await?;
    tracing::warn!(projection = name, stream = %fault.stream, version = fault.version, position = fault.position,
        error = %fault.error, "operator decision: retry the faulted event");
    Ok(fault)
}

/// Skips the faulted event of `name`, which must be at `position`: in one transaction,
/// locks the checkpoint, moves it to the faulted event and deletes the fault; the
/// projector goes on with the next event. Returns the fault decided on.
pub async fn skip(db: &Db, name: &str, position: i64) -> Result<Fault, FaultError> {
    let mut tx = db.begin().await?;
    let stored = lock_checkpoint(&mut tx, name).await?;
    let fault = fault_in(&mut tx, name).await?.ok_or_else(|| FaultError::NoFault(name.to_owned()))?;
    if fault.position != position {
        return Err(FaultError::WrongPosition {
            name: name.to_owned(),
            given: position,
            faulted: fault.position,
            stream: fault.stream,
            version: fault.version,
        });
    }
    // Never move a checkpoint back (a rebuild may have swapped in a copy past it).
    save_checkpoint(&mut tx, name, stored.max(fault.checkpoint())).await?;
    decide(&mut tx, &fault, "skip").await?;
    tx.commit().await?;
    tracing::warn!(projection = name, stream = %fault.stream, version = fault.version, position = fault.position,
        error = %fault.error, "operator decision: skip the faulted event");
    Ok(fault)
}
