//! Email transport: SMTP (production) or `.eml` files (embedded).
//!
//! Also the sender of the legacy `email_outbox` table, which the notifier projection
//! wrote before the outbox → bus → [`notifier`](crate::notifier) path replaced it: it
//! drains rows an upgraded store still holds, marking each row sent so a retry never
//! sends it twice.

use chrono::Utc;
use gather_store::db::Db;
use gather_store::on_db;
use lettre::message::{Mailbox, Message, MultiPart, header::ContentType};
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
    /// Delivery failed; a permanent failure (SMTP 5xx) will fail again.
    #[error("delivery failed: {message}")]
    Send {
        /// What the server or transport said.
        message: String,
        /// Whether retrying is pointless.
        permanent: bool,
    },
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
        self.send_email(to, subject, body, None).await
    }

    /// Sends one email: plain text, and HTML as an alternative when given.
    pub async fn send_email(&self, to: &str, subject: &str, text: &str, html: Option<&str>) -> Result<(), MailError> {
        let address = to;
        let to: Mailbox = to.parse().map_err(|e| MailError::Build(without_address(format!("{e}"), address)))?;
        let from: Mailbox = FROM.parse().map_err(|e| MailError::Build(format!("{e}")))?;
        let builder = Message::builder().from(from).to(to).subject(subject);
        let message = match html {
            Some(html) => builder.multipart(MultiPart::alternative_plain_html(text.to_string(), html.to_string())),
            None => builder.header(ContentType::TEXT_PLAIN).body(text.to_string()),
        }
        .map_err(|e| MailError::Build(e.to_string()))?;
        match self {
            Mailer::Files(t, _) => t
                .send(message)
                .await
                .map(|_| ())
                .map_err(|e| MailError::Send { message: without_address(e.to_string(), address), permanent: false }),
            Mailer::Smtp(t) => t.send(message).await.map(|_| ()).map_err(|e| MailError::Send {
                message: without_address(e.to_string(), address),
                permanent: e.is_permanent(),
            }),
        }
    }
}

/// Deletes the `.eml` files in `dir` addressed to `address` (any case): the mail copies
/// the embedded profile keeps of a member being forgotten. Returns how many; a file that
/// cannot be read is skipped. Blocking: run it off the async threads.
pub fn forget_files(dir: &std::path::Path, address: &str) -> std::io::Result<usize> {
    let needle = address.trim().to_lowercase();
    if needle.is_empty() {
        return Ok(0);
    }
    let mut removed = 0;
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e),
    };
    for entry in entries {
        let path = entry?.path();
        if path.extension().is_none_or(|x| x != "eml") {
            continue;
        }
        let Ok(text) = std::fs::read_to_string(&path) else { continue };
        // The header section ends at the first empty line; `To:` may be folded.
        let text = text.replace("\r\n", "\n");
        let headers = text.split("\n\n").next().unwrap_or("").replace("\n ", " ").replace("\n\t", " ");
        let to_them = headers.lines().any(|line| {
            let lower = line.to_lowercase();
            lower.strip_prefix("to:").is_some_and(|to| addresses(to).any(|a| a == needle))
        });
        if to_them {
            std::fs::remove_file(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// The addresses of a `To:` value: `Name <a@b>` or bare `a@b`, comma-separated.
fn addresses(to: &str) -> impl Iterator<Item = &str> {
    to.split(',').map(|part| {
        let part = part.trim();
        match (part.rfind('<'), part.rfind('>')) {
            (Some(open), Some(close)) if open < close => part[open + 1..close].trim(),
            _ => part,
        }
    })
}

/// `text` (an SMTP server's reply, which may echo the recipient) without the address:
/// errors are logged, and no personal field is.
fn without_address(text: String, address: &str) -> String {
    let address = address.trim();
    if address.is_empty() {
        return text;
    }
    let (lower, needle) = (text.to_lowercase(), address.to_lowercase());
    if lower.len() != text.len() || !lower.contains(&needle) {
        return text.replace(address, "<recipient>");
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = 0;
    for (at, _) in lower.match_indices(&needle) {
        out.push_str(&text[rest..at]);
        out.push_str("<recipient>");
        rest = at + needle.len();
    }
    out.push_str(&text[rest..]);
    out
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

#[cfg(test)]
mod address_tests {
    use super::{forget_files, without_address};

    #[test]
    fn forgetting_deletes_only_the_mail_to_that_exact_address() {
        let dir = std::env::temp_dir().join(format!("gather-mail-{}", uuid::Uuid::now_v7().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        let mail = |name: &str, to: &str, sep: &str| {
            let text =
                format!("From: a@gather.test{sep}To: {to}{sep}Subject: hi{sep}{sep}To: al@x.com in the body{sep}");
            std::fs::write(dir.join(name), text).unwrap();
        };
        mail("1.eml", "Al <AL@x.com>", "\r\n");
        mail("2.eml", "hal@x.com", "\r\n");
        mail("3.eml", "al@x.com", "\n");
        mail("4.eml", "b@x.com", "\r\n");
        mail("5.eml", "Carol <c@x.com>,\r\n al@x.com", "\r\n");
        std::fs::write(dir.join("6.txt"), "To: al@x.com\r\n\r\n").unwrap();
        assert_eq!(forget_files(&dir, "al@x.com").unwrap(), 3);
        let mut left: Vec<String> =
            std::fs::read_dir(&dir).unwrap().map(|e| e.unwrap().file_name().into_string().unwrap()).collect();
        left.sort();
        assert_eq!(left, ["2.eml", "4.eml", "6.txt"], "hal@ and b@ keep theirs; only .eml files are read");
        assert_eq!(forget_files(&dir.join("missing"), "al@x.com").unwrap(), 0);
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_smtp_reply_is_logged_without_the_recipients_address() {
        let reply = "permanent error (550): 5.1.1 <Zed.Q@Example.com>: mailbox unavailable".to_owned();
        assert_eq!(
            without_address(reply, "zed.q@example.com"),
            "permanent error (550): 5.1.1 <<recipient>>: mailbox unavailable"
        );
        assert_eq!(without_address("timed out".into(), "a@b.c"), "timed out");
    }
}
