//! Durable timers: commands due at a time (ARCHITECTURE.md decision 11).
//!
//! Rows of `due_commands` are written by the process manager (inside its projection
//! transaction, via [`schedule`] / [`cancel`]). A [`Scheduler`] claims due rows with a
//! lease — `FOR UPDATE SKIP LOCKED` on Postgres, the single writer on SQLite — and fires
//! each as the system actor with the row's `command_id`. The event store appends a
//! command id once, so a timer fires at most once even with two schedulers, or when a
//! scheduler dies between claim and command and another takes the row after its lease.
//!
//! On SQLite timestamps are RFC 3339 text in UTC, whose text order is time order.

use crate::db::{Db, Tx};
use crate::handler::{Clock, CommandError, CommandHandler, CommandMeta};
use crate::{on_db, on_tx};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use gather_domain::activity::{Activity, ActivityCommand};
use gather_domain::chat::{Chat, ChatCommand};
use gather_domain::process::{Scheduled, materialize_key};
use gather_domain::series::{Series, SeriesCommand};
use gather_domain::{Actor, ErrorKind};
use sqlx::types::Json;
use std::time::Duration as StdDuration;
use tokio::sync::watch;
use uuid::Uuid;

/// How many due timers one tick claims.
pub const CLAIM_BATCH: i64 = 64;
/// How many claimed timers fire at once.
pub const FIRE_CONCURRENCY: usize = 16;
/// Give up on a timer after this many failed attempts (its last error stays for operators).
pub const MAX_ATTEMPTS: i32 = 10;
/// How long an `Idempotency-Key`'s first answer is kept (the clean-up drops older ones).
pub const IDEMPOTENCY_TTL_HOURS: i64 = 24;

fn ts(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Micros, true)
}

/// A periodic clean-up: `sql` deletes what is older than `$1` = now − `age`.
#[derive(Debug, Clone)]
pub struct CleanUp {
    /// What it drops, for the log.
    pub what: &'static str,
    /// A `DELETE` with one parameter, the cut-off time.
    pub sql: &'static str,
    /// How old a row must be.
    pub age: Duration,
}

/// The command side's clean-up jobs: fired timers after a week, idempotency keys after
/// [`IDEMPOTENCY_TTL_HOURS`].
pub fn clean_ups() -> Vec<CleanUp> {
    vec![
        CleanUp {
            what: "fired timers",
            sql: "DELETE FROM due_commands WHERE fired_at IS NOT NULL AND fired_at < $1",
            age: Duration::days(7),
        },
        CleanUp {
            what: "expired idempotency keys",
            sql: "DELETE FROM idempotency_keys WHERE created_at <= $1",
            age: Duration::hours(IDEMPOTENCY_TTL_HOURS),
        },
    ]
}

/// A due time SQLite can compare as text. SQLite stores times as RFC 3339 text, which
/// sorts in time order only for years 0000–9999 (`+10000-…` sorts before `2030-…`, so
/// such a timer would fire at once and then never again). The domain refuses activity
/// times outside 2000–2100; this clamp keeps any other timer comparable too: one beyond
/// year 9999 waits at the end of that year, which in practice is never.
pub fn storable_due_at(due_at: DateTime<Utc>) -> DateTime<Utc> {
    let earliest = DateTime::<Utc>::UNIX_EPOCH;
    let latest = "9999-12-31T23:59:59Z".parse::<DateTime<Utc>>().unwrap_or(DateTime::<Utc>::MAX_UTC);
    due_at.clamp(earliest, latest)
}

/// The command id of a timer: stable for its key and due time, new when it moves.
pub fn command_id(key: &str, due_at: DateTime<Utc>) -> Uuid {
    crate::ids::derived(format!("{key}|{}", ts(due_at)))
}

/// Schedules (or moves) the timer `key` inside `tx`.
pub async fn schedule(
    tx: &mut Tx,
    key: &str,
    due_at: DateTime<Utc>,
    command: &Scheduled,
    causation_id: Uuid,
    correlation_id: Uuid,
) -> Result<(), sqlx::Error> {
    let due_at = storable_due_at(due_at);
    let id = command_id(key, due_at);
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO due_commands (key, command_id, due_at, command, causation_id, correlation_id) \
         VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (key) DO UPDATE SET command_id = excluded.command_id, due_at = excluded.due_at, \
         command = excluded.command, causation_id = excluded.causation_id, correlation_id = excluded.correlation_id, \
         claimed_until = NULL, fired_at = NULL, attempts = 0, last_error = NULL \
         WHERE due_commands.command_id <> excluded.command_id",
    ).bind(key).bind(id).bind(due_at).bind(Json(command)).bind(causation_id).bind(correlation_id)
     .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// Drops the timer `key` unless it has fired.
pub async fn cancel(tx: &mut Tx, key: &str) -> Result<(), sqlx::Error> {
    on_tx!(tx, c => sqlx::query("DELETE FROM due_commands WHERE key = $1 AND fired_at IS NULL")
        .bind(key).execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// A claimed timer.
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct Claimed {
    /// Its key.
    pub key: String,
    /// The command id it fires with.
    pub command_id: Uuid,
    /// What to do.
    pub command: Json<Scheduled>,
    /// The event that scheduled it.
    pub causation_id: Option<Uuid>,
    /// The flow it belongs to.
    pub correlation_id: Option<Uuid>,
    /// When it was due.
    pub due_at: DateTime<Utc>,
}

/// Fires due timers.
#[derive(Clone)]
pub struct Scheduler {
    db: Db,
    handler: CommandHandler,
    clock: Clock,
    lease: Duration,
    clean_ups: Vec<CleanUp>,
}

impl Scheduler {
    /// A scheduler over `db` issuing commands through `handler` (whose clock it uses).
    pub fn new(db: Db, handler: CommandHandler) -> Self {
        let clock: Clock = {
            let h = handler.clone();
            std::sync::Arc::new(move || h.now())
        };
        Scheduler { db, handler, clock, lease: Duration::seconds(30), clean_ups: clean_ups() }
    }

    /// Replaces the clock (tests).
    pub fn with_clock(mut self, clock: Clock) -> Self {
        self.clock = clock;
        self
    }

    /// Claims up to `limit` due timers for the lease time.
    pub async fn claim(&self, limit: i64) -> Result<Vec<Claimed>, sqlx::Error> {
        let now = (self.clock)();
        let until = now + self.lease;
        let pick = "SELECT key FROM due_commands WHERE fired_at IS NULL AND due_at <= $1 \
                    AND (claimed_until IS NULL OR claimed_until < $1) AND attempts < $4 ORDER BY due_at LIMIT $3";
        let sql = |lock: &str| {
            format!(
                "UPDATE due_commands SET claimed_until = $2, attempts = attempts + 1 WHERE key IN ({pick}{lock}) \
                 RETURNING key, command_id, command, causation_id, correlation_id, due_at"
            )
        };
        let (pg, lite) = (sql(" FOR UPDATE SKIP LOCKED"), sql(""));
        match &self.db {
            Db::Postgres(p) => {
                sqlx::query_as::<_, Claimed>(sqlx::AssertSqlSafe(pg))
                    .bind(now)
                    .bind(until)
                    .bind(limit)
                    .bind(MAX_ATTEMPTS)
                    .fetch_all(p)
                    .await
            }
            Db::Sqlite { writer, .. } => {
                sqlx::query_as::<_, Claimed>(sqlx::AssertSqlSafe(lite))
                    .bind(now)
                    .bind(until)
                    .bind(limit)
                    .bind(MAX_ATTEMPTS)
                    .fetch_all(writer)
                    .await
            }
        }
    }

    /// Issues one claimed timer's command and records the outcome.
    pub async fn fire(&self, t: &Claimed) -> Result<(), sqlx::Error> {
        let mut meta = CommandMeta::new(Actor::system());
        meta.command_id = t.command_id;
        meta.causation_id = t.causation_id;
        meta.correlation_id = t.correlation_id.unwrap_or(t.command_id);
        let result = match &t.command.0 {
            Scheduled::SendAttendeeList { activity_id } => self
                .handler
                .handle::<Activity>(*activity_id, ActivityCommand::SendAttendeeList, &meta)
                .await
                .map(|_| ()),
            Scheduled::CompleteActivity { activity_id } => {
                self.handler.handle::<Activity>(*activity_id, ActivityCommand::Complete, &meta).await.map(|_| ())
            }
            Scheduled::ExpireReservation { activity_id, booking_id } => self
                .handler
                .handle::<Activity>(*activity_id, ActivityCommand::ExpireReservation { booking_id: *booking_id }, &meta)
                .await
                .map(|_| ()),
            Scheduled::OpenActivityRoom { activity_id, organiser_id } => {
                let cmd = ChatCommand::OpenActivityRoom {
                    chat_id: *activity_id,
                    activity_id: *activity_id,
                    organiser_id: *organiser_id,
                    title: None,
                };
                self.handler.handle::<Chat>(*activity_id, cmd, &meta).await.map(|_| ())
            }
            Scheduled::AddRoomMember { activity_id, member_id } => self
                .handler
                .handle::<Chat>(*activity_id, ChatCommand::AddMember { member_id: *member_id }, &meta)
                .await
                .map(|_| ()),
            Scheduled::RemoveRoomMember { activity_id, member_id } => self
                .handler
                .handle::<Chat>(*activity_id, ChatCommand::RemoveMember { member_id: *member_id }, &meta)
                .await
                .map(|_| ()),
            Scheduled::MaterializeSeries { series_id } => {
                self.handler.handle::<Series>(*series_id, SeriesCommand::Materialize, &meta).await.map(|_| ())
            }
            Scheduled::CreateOccurrence { activity_id, organiser_id, series, details, approved_by } => {
                let cmd = ActivityCommand::CreateOccurrence {
                    activity_id: *activity_id,
                    organiser_id: *organiser_id,
                    series: *series,
                    details: details.clone(),
                    approved_by: *approved_by,
                };
                self.handler.handle::<Activity>(*activity_id, cmd, &meta).await.map(|_| ())
            }
            Scheduled::UpdateOccurrence { activity_id, details } => {
                let cmd = ActivityCommand::UpdateOccurrence { details: details.clone() };
                self.handler.handle::<Activity>(*activity_id, cmd, &meta).await.map(|_| ())
            }
            Scheduled::CancelOccurrence { activity_id, reason, only_unbooked } => {
                let cmd = ActivityCommand::CancelOccurrence { reason: reason.clone(), only_unbooked: *only_unbooked };
                self.handler.handle::<Activity>(*activity_id, cmd, &meta).await.map(|_| ())
            }
        };
        // A series materializes daily: a success moves its timer a day ahead (the row's
        // command id changes, so the update below leaves it pending for tomorrow).
        if let (Ok(()), Scheduled::MaterializeSeries { series_id }) = (&result, &t.command.0) {
            let tomorrow = (self.clock)() + Duration::days(1);
            let mut tx = self.db.begin().await?;
            let key = materialize_key(*series_id);
            schedule(
                &mut tx,
                &key,
                tomorrow,
                &t.command.0,
                t.causation_id.unwrap_or(t.command_id),
                meta.correlation_id,
            )
            .await?;
            tx.commit().await?;
        }
        let now = (self.clock)();
        let (done, error) = match result {
            Ok(()) => (true, None),
            // A missing target may appear (a room not opened yet): retry after the lease.
            Err(CommandError::Domain(e)) if e.kind() == ErrorKind::NotFound => (false, Some(e.to_string())),
            // Any other refusal is final: the decision said no (e.g. already completed).
            Err(CommandError::Domain(e)) => (true, Some(e.to_string())),
            Err(e) => (false, Some(e.to_string())),
        };
        if let Some(err) = &error {
            tracing::info!(key = %t.key, error = %err, done, "timer command refused or failed");
        }
        on_db!(&self.db, p => sqlx::query(
            "UPDATE due_commands SET fired_at = CASE WHEN $3 THEN $2 ELSE NULL END, last_error = $4 \
             WHERE key = $1 AND command_id = $5",
        ).bind(&t.key).bind(now).bind(done).bind(error).bind(t.command_id).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Claims and fires what is due once; returns how many it fired. Timers of one
    /// target (an activity and its room, a series) fire one after another in due order
    /// (a room opens before its first member joins); different targets fire
    /// [`FIRE_CONCURRENCY`] at a time, so their commands share group commits.
    pub async fn tick(&self) -> Result<usize, sqlx::Error> {
        use futures::StreamExt;
        let mut claimed = self.claim(CLAIM_BATCH).await?;
        claimed.sort_by_key(|t| t.due_at);
        let fired = claimed.len();
        let mut groups: Vec<(Uuid, Vec<Claimed>)> = Vec::new();
        for t in claimed {
            let target = t.command.0.target();
            match groups.iter_mut().find(|(g, _)| *g == target) {
                Some((_, group)) => group.push(t),
                None => groups.push((target, vec![t])),
            }
        }
        let outcomes: Vec<Result<(), sqlx::Error>> = futures::stream::iter(groups)
            .map(|(_, group)| async move {
                for t in &group {
                    self.fire(t).await?;
                }
                Ok(())
            })
            .buffer_unordered(FIRE_CONCURRENCY)
            .collect()
            .await;
        outcomes.into_iter().collect::<Result<(), _>>()?;
        Ok(fired)
    }

    /// Adds periodic clean-up jobs (the read side registers its own).
    pub fn with_clean_ups(mut self, jobs: impl IntoIterator<Item = CleanUp>) -> Self {
        self.clean_ups.extend(jobs);
        self
    }

    /// Runs every clean-up job once, as of `now`.
    pub async fn clean_up(&self, now: DateTime<Utc>) {
        for job in &self.clean_ups {
            let before = now - job.age;
            match on_db!(&self.db, p => sqlx::query(job.sql).bind(before).execute(p).await.map(|r| r.rows_affected())) {
                Ok(0) => {}
                Ok(n) => tracing::info!(deleted = n, what = job.what, "clean-up"),
                Err(e) => tracing::warn!(error = %e, what = job.what, "clean-up failed"),
            }
        }
    }

    /// Fires timers until `shutdown` flips, polling every `every`; also runs clean-up.
    pub async fn run(self, every: StdDuration, mut shutdown: watch::Receiver<bool>) {
        let mut last_cleanup = (self.clock)() - Duration::hours(1);
        loop {
            match self.tick().await {
                Ok(n) if n > 0 => continue,
                Ok(_) => {}
                Err(e) => tracing::warn!(error = %e, "could not read due timers; retrying"),
            }
            let now = (self.clock)();
            if now - last_cleanup > Duration::minutes(10) {
                last_cleanup = now;
                self.clean_up(now).await;
            }
            tokio::select! {
                _ = tokio::time::sleep(every) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_times_beyond_year_9999_wait_at_its_end_and_sort_as_text() {
        let far = "+10000-01-01T00:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let clamped = storable_due_at(far);
        assert_eq!(ts(clamped), "9999-12-31T23:59:59.000000Z");
        let soon = "2030-05-01T14:00:00Z".parse::<DateTime<Utc>>().unwrap();
        assert_eq!(storable_due_at(soon), soon);
        assert!(ts(soon) < ts(clamped), "text order is time order");
    }
}
