//! Email: an outbox written by the [`NotifierProjection`] in its batch transaction, and
//! a sender that delivers pending rows through SMTP (production) or into `.eml` files
//! (embedded), marking each row sent so a retry never sends it twice.

use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use async_trait::async_trait;
use chrono::Utc;
use gather_domain::activity::{Activity, ActivityEvent};
use gather_domain::member::{Member, MemberEvent};
use gather_store::RecordedEvent;
use gather_store::db::{Db, Tx};
use gather_store::{on_db, on_tx};
use lettre::message::{Mailbox, Message, header::ContentType};
use lettre::{AsyncFileTransport, AsyncSmtpTransport, AsyncTransport, Tokio1Executor};
use std::path::PathBuf;
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// The sender address of every email.
pub const FROM: &str = "Gather <no-reply@gather.local>";
/// Attempts before a row is left for an operator.
pub const MAX_ATTEMPTS: i32 = 5;

/// Where emails go.
#[derive(Clone)]
pub enum Mailer {
    /// `.eml` files in a directory (embedded profile).
    Files(AsyncFileTransport<Tokio1Executor>, PathBuf),
    /// An SMTP server.
    Smtp(AsyncSmtpTransport<Tokio1Executor>),
}

/// Why an email could not be built or sent.
#[derive(Debug, thiserror::Error)]
pub enum MailError {
    /// Bad SMTP URL: fix `GATHER_SMTP_URL`.
    #[error("invalid SMTP URL")]
    Url(#[source] lettre::transport::smtp::Error),
    /// The message could not be built (bad address).
    #[error("invalid email: {0}")]
    Build(String),
    /// Delivery failed: retried later.
    #[error("delivery failed: {0}")]
    Send(String),
}

impl Mailer {
    /// Mail into files under `dir` (created if missing).
    pub fn files(dir: PathBuf) -> std::io::Result<Mailer> {
        std::fs::create_dir_all(&dir)?;
        Ok(Mailer::Files(AsyncFileTransport::new(&dir), dir))
    }

    /// Mail through `smtp://host:port` (or `smtps://`).
    pub fn smtp(url: &str) -> Result<Mailer, MailError> {
        Ok(Mailer::Smtp(AsyncSmtpTransport::<Tokio1Executor>::from_url(url).map_err(MailError::Url)?.build()))
    }

    /// Sends one plain-text email.
    pub async fn send(&self, to: &str, subject: &str, body: &str) -> Result<(), MailError> {
        let to: Mailbox = to.parse().map_err(|e| MailError::Build(format!("{e}")))?;
        let from: Mailbox = FROM.parse().map_err(|e| MailError::Build(format!("{e}")))?;
        let message = Message::builder()
            .from(from)
            .to(to)
            .subject(subject)
            .header(ContentType::TEXT_PLAIN)
            .body(body.to_string())
            .map_err(|e| MailError::Build(e.to_string()))?;
        match self {
            Mailer::Files(t, _) => t.send(message).await.map(|_| ()).map_err(|e| MailError::Send(e.to_string())),
            Mailer::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| MailError::Send(e.to_string())),
        }
    }
}

/// Turns events into outbox rows: the welcome email, and the cancellation of an
/// activity (a one-off, or a series occurrence skipped or after the series' end) to
/// each member whose booking it released. The other notifications arrive with the
/// notification issue (10).
pub struct NotifierProjection;

async fn outbox(
    tx: &mut Tx,
    id: Uuid,
    to: &str,
    subject: &str,
    body: &str,
    at: chrono::DateTime<Utc>,
) -> Result<(), sqlx::Error> {
    // Ids derive from the event: replaying it writes no second email.
    on_tx!(tx, c => sqlx::query(
        "INSERT INTO email_outbox (id, recipient, subject, body, created_at) VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (id) DO NOTHING",
    ).bind(id).bind(to).bind(subject).bind(body).bind(at)
     .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    Ok(())
}

/// The cancellation email to each released booking's member. Addresses and the title
/// come from the `members` and `activities` read models (written long before a
/// cancellation); a member without an address (forgotten) gets nothing.
async fn cancelled(
    tx: &mut Tx,
    e: &RecordedEvent,
    activity: Uuid,
    event: ActivityEvent,
) -> Result<(), ProjectionError> {
    let ActivityEvent::ActivityCancelled { reason, released, .. } = event else { return Ok(()) };
    if released.is_empty() {
        return Ok(());
    }
    let title: Option<(String, chrono::DateTime<Utc>)> = on_tx!(tx, c => sqlx::query_as(
        "SELECT title, starts_at FROM activities WHERE activity_id = $1").bind(activity).fetch_optional(&mut **c).await)?;
    let Some((title, starts_at)) = title else {
        tracing::warn!(%activity, "cancellation emails skipped: the activity is not in the read model");
        return Ok(());
    };
    for booking in released {
        let member: Option<(String, String)> = on_tx!(tx, c => sqlx::query_as(
            "SELECT email, display_name FROM members WHERE member_id = $1 AND email <> ''")
            .bind(booking.member_id).fetch_optional(&mut **c).await)?;
        let Some((email, name)) = member else { continue };
        let body = format!(
            "Hello {name},\n\n\"{title}\" on {} UTC is cancelled: {}.\nYour booking of {} seat(s) is released.\n",
            starts_at.format("%Y-%m-%d %H:%M"),
            reason.as_str(),
            booking.seats
        );
        let id = Uuid::new_v5(&e.event_id, booking.booking_id.as_bytes());
        outbox(tx, id, &email, &format!("Cancelled: {title}"), &body, e.recorded_at).await?;
    }
    Ok(())
}

#[async_trait]
impl Projection for NotifierProjection {
    fn name(&self) -> &'static str {
        "notifier"
    }

    async fn apply(&self, tx: &mut Tx, _at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        // Only the events that send mail are decoded: one this projection cannot read
        // stops the projectors that need it, not the welcome email of the next member.
        if !matches!(e.event_type.as_str(), "MemberRegistered" | "ActivityCancelled") {
            return Ok(());
        }
        if let Some((activity, event)) = decode_of::<Activity>(e)? {
            return cancelled(tx, e, activity, event).await;
        }
        let Some((_, event)) = decode_of::<Member>(e)? else { return Ok(()) };
        if let MemberEvent::MemberRegistered { email, display_name, .. } = event {
            let body = format!(
                "Hello {},\n\nwelcome to Gather. Find an activity, book a seat, or start organising your own.\n",
                display_name.as_str()
            );
            outbox(tx, e.event_id, email.as_str(), "Welcome to Gather", &body, e.recorded_at).await?;
        }
        Ok(())
    }
}

#[derive(sqlx::FromRow)]
struct Pending {
    id: Uuid,
    recipient: String,
    subject: String,
    body: String,
    attempts: i32,
}

/// Delivers pending outbox rows until `shutdown` flips; polls every `every`.
pub async fn run_sender(db: Db, mailer: Mailer, every: Duration, mut shutdown: watch::Receiver<bool>) {
    loop {
        if let Err(e) = deliver_pending(&db, &mailer).await {
            tracing::warn!(error = %e, "email outbox could not be read; retrying");
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = shutdown.wait_for(|s| *s) => return,
        }
    }
}

/// How long a claimed row is left to its sender before another may take it.
pub const LEASE: chrono::TimeDelta = chrono::TimeDelta::seconds(60);

/// The delay before a failed delivery is tried again: 2, 4, 8, 16 … seconds.
fn retry_delay(attempts: i32) -> chrono::TimeDelta {
    chrono::TimeDelta::seconds(1i64 << attempts.clamp(0, 8))
}

/// Claims up to `limit` deliverable rows for [`LEASE`]: `FOR UPDATE SKIP LOCKED` on
/// Postgres, the single writer on SQLite.
async fn claim(db: &Db, now: chrono::DateTime<Utc>, limit: i64) -> Result<Vec<Pending>, sqlx::Error> {
    let pick = "SELECT id FROM email_outbox WHERE sent_at IS NULL AND attempts < $1 \
                AND (claimed_until IS NULL OR claimed_until < $2) ORDER BY created_at LIMIT $3";
    let sql = |lock: &str| {
        format!(
            "UPDATE email_outbox SET claimed_until = $4 WHERE id IN ({pick}{lock}) \
             RETURNING id, recipient, subject, body, attempts"
        )
    };
    let until = now + LEASE;
    match db {
        Db::Postgres(p) => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql(" FOR UPDATE SKIP LOCKED")))
                .bind(MAX_ATTEMPTS)
                .bind(now)
                .bind(limit)
                .bind(until)
                .fetch_all(p)
                .await
        }
        Db::Sqlite { writer, .. } => {
            sqlx::query_as(sqlx::AssertSqlSafe(sql("")))
                .bind(MAX_ATTEMPTS)
                .bind(now)
                .bind(limit)
                .bind(until)
                .fetch_all(writer)
                .await
        }
    }
}

/// Claims what is deliverable and sends it; returns how many were sent. A row is
/// marked sent after delivery; a failure is retried after a growing delay, up to
/// [`MAX_ATTEMPTS`]. A sender that dies between sending and marking leaves the row to
/// be sent again after the lease (at least once, never twice by two live senders).
pub async fn deliver_pending(db: &Db, mailer: &Mailer) -> Result<usize, sqlx::Error> {
    let claimed_at = Utc::now();
    let rows = claim(db, claimed_at, 50).await?;
    let mut sent = 0;
    for row in rows {
        if Utc::now() - claimed_at > LEASE / 2 {
            // A slow server: leave the rest before the lease runs out and another
            // sender takes them too; they are claimable again when it expires.
            break;
        }
        match mailer.send(&row.recipient, &row.subject, &row.body).await {
            Ok(()) => {
                on_db!(db, p => sqlx::query(
                    "UPDATE email_outbox SET sent_at = $2, attempts = attempts + 1, claimed_until = NULL WHERE id = $1",
                ).bind(row.id).bind(Utc::now()).execute(p).await.map(|r| r.rows_affected()))?;
                sent += 1;
            }
            Err(e) => {
                tracing::warn!(id = %row.id, attempt = row.attempts + 1, error = %e, "email not delivered");
                let retry_at = Utc::now() + retry_delay(row.attempts + 1);
                on_db!(db, p => sqlx::query(
                    "UPDATE email_outbox SET attempts = attempts + 1, last_error = $2, claimed_until = $3 WHERE id = $1",
                ).bind(row.id).bind(e.to_string()).bind(retry_at).execute(p).await.map(|r| r.rows_affected()))?;
            }
        }
    }
    Ok(sent)
}
