//! The notification worker (`GATHER_ROLES=notifier`): consumes `gather.notifications`
//! (or the in-process bus), renders each email from its templates
//! (`projections/templates/<kind>.txt` with a `subject` and a `text` block, and
//! `<kind>.html`), resolves each recipient at send time (a forgotten or suspended member
//! gets nothing), sends it, and records the sent message's id so a redelivery sends
//! nothing twice.
//!
//! Failures: a message that cannot be read is dead-lettered at once (rejected into
//! `gather.dead` → `gather.notifications.dead`); a transient failure (SMTP 4xx, a
//! connection error, a recipient the members read model does not know yet) goes to the
//! next retry tier and comes back after its delay; after [`MAX_ATTEMPTS`], or on a
//! permanent failure (SMTP 5xx), the message is dead-lettered with its error. A failing
//! message never blocks the others.

use crate::bus::{Broker, DEAD_EXCHANGE, DEAD_QUEUE, LocalBus, NOTIFY_QUEUE, RETRY_TIERS, Update, backoff};
use crate::mail::{MailError, Mailer};
use chrono::{DateTime, Utc};
use futures::TryStreamExt;
use gather_store::db::Db;
use gather_store::on_db;
use lapin::message::Delivery;
use lapin::options::{
    BasicAckOptions, BasicConsumeOptions, BasicNackOptions, BasicPublishOptions, BasicQosOptions, BasicRejectOptions,
    ConfirmSelectOptions,
};
use lapin::types::{AMQPValue, FieldTable, LongString, ShortString};
use lapin::{BasicProperties, Channel};
use minijinja::Environment;
use serde_json::{Value, json};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;
use tokio::sync::watch;
use uuid::Uuid;

/// Deliveries of one message before it is dead-lettered.
pub const MAX_ATTEMPTS: u32 = 4;
/// Messages handled at once.
pub const CONCURRENCY: usize = 8;

macro_rules! templates {
    ($($kind:literal),* $(,)?) => {
        /// Every message kind that sends mail, with its two templates.
        const TEMPLATES: &[(&str, &str, &str)] = &[
            $(($kind, include_str!(concat!("../templates/", $kind, ".txt")), include_str!(concat!("../templates/", $kind, ".html")))),*
        ];
    };
}
templates!(
    "member.registered",
    "booking.confirmed",
    "booking.waitlisted",
    "booking.promoted",
    "booking.reserved",
    "booking.cancelled",
    "booking.expired",
    "activity.approved",
    "activity.rejected",
    "activity.rescheduled",
    "activity.cancelled",
    "activity.attendee_list",
    "invitation.sent",
);

/// One email, rendered.
#[derive(Debug, Clone, PartialEq)]
pub struct Email {
    /// The subject line.
    pub subject: String,
    /// The plain-text part.
    pub text: String,
    /// The HTML part.
    pub html: String,
}

/// The loaded templates.
pub struct Templates {
    env: Environment<'static>,
}

impl Default for Templates {
    fn default() -> Self {
        Templates::load()
    }
}

impl Templates {
    /// Loads every template (they are compiled into the binary; a broken one fails the
    /// unit tests, not a send).
    pub fn load() -> Templates {
        let mut env = Environment::new();
        env.set_undefined_behavior(minijinja::UndefinedBehavior::Strict);
        env.add_template("layout.html", include_str!("../templates/layout.html")).expect("layout template");
        for (kind, txt, html) in TEMPLATES {
            env.add_template_owned(format!("{kind}.txt"), *txt).expect("text template");
            env.add_template_owned(format!("{kind}.html"), *html).expect("html template");
        }
        Templates { env }
    }

    /// The kinds that have templates.
    pub fn kinds() -> impl Iterator<Item = &'static str> {
        TEMPLATES.iter().map(|(k, _, _)| *k)
    }

    /// Renders `kind` with `ctx`.
    pub fn render(&self, kind: &str, ctx: &Value) -> Result<Email, minijinja::Error> {
        let text = self.env.get_template(&format!("{kind}.txt"))?;
        let mut captured = text.render_captured(ctx)?;
        let (subject, body) = captured.with_state_mut(|state| {
            Ok::<_, minijinja::Error>((state.render_block("subject")?.trim().to_owned(), state.render_block("text")?))
        })?;
        let html = self.env.get_template(&format!("{kind}.html"))?.render(ctx)?;
        Ok(Email { subject, text: body, html })
    }
}

/// Why a message was not (fully) sent.
#[derive(Debug, thiserror::Error)]
pub enum Failure {
    /// Try again later.
    #[error("transient: {0}")]
    Transient(String),
    /// Never going to work: dead-letter it.
    #[error("permanent: {0}")]
    Permanent(String),
}

impl From<sqlx::Error> for Failure {
    fn from(e: sqlx::Error) -> Self {
        Failure::Transient(format!("database: {e}"))
    }
}

/// Counters (tests and the benchmark read them).
#[derive(Debug, Default)]
pub struct NotifierStats {
    /// Emails sent.
    pub sent: AtomicU64,
    /// Messages sent to a retry tier.
    pub retried: AtomicU64,
    /// Messages dead-lettered.
    pub dead: AtomicU64,
}

/// Renders and sends the emails of one update.
pub struct Notifier {
    db: Db,
    mailer: Mailer,
    templates: Templates,
    public_base_url: String,
    stats: Arc<NotifierStats>,
    /// Messages being delivered now: a redelivery of one waits for the first attempt
    /// to finish (then finds it recorded) instead of sending it a second time.
    in_flight: std::sync::Mutex<std::collections::HashMap<Uuid, Arc<tokio::sync::Mutex<()>>>>,
    /// The store's vault: tells a forgotten invited address at send time.
    vault: Option<Arc<gather_store::vault::Vault>>,
}

#[derive(sqlx::FromRow)]
struct Recipient {
    email: String,
    display_name: String,
    suspended: bool,
    children: sqlx::types::Json<Value>,
}

/// The time form every email uses: recipient-neutral UTC.
fn utc(v: &Value) -> Value {
    match v.as_str().and_then(|s| DateTime::parse_from_rfc3339(s).ok()) {
        Some(t) => json!(t.with_timezone(&Utc).format("%Y-%m-%d %H:%M UTC").to_string()),
        None => v.clone(),
    }
}

impl Notifier {
    /// A notifier sending through `mailer`; invitation links start with `public_base_url`.
    pub fn new(db: Db, mailer: Mailer, public_base_url: &str) -> Notifier {
        Notifier {
            db,
            mailer,
            templates: Templates::load(),
            public_base_url: public_base_url.trim_end_matches('/').to_owned(),
            stats: Arc::default(),
            in_flight: Default::default(),
            vault: None,
        }
    }

    /// Drops invitations to addresses the vault has forgotten (queued before the forget).
    pub fn with_vault(mut self, vault: Option<Arc<gather_store::vault::Vault>>) -> Notifier {
        self.vault = vault;
        self
    }

    /// Its counters.
    pub fn stats(&self) -> Arc<NotifierStats> {
        self.stats.clone()
    }

    async fn member(&self, id: Uuid) -> Result<Option<Recipient>, sqlx::Error> {
        on_db!(&self.db, p => sqlx::query_as::<_, Recipient>(
            "SELECT email, display_name, suspended, children FROM members WHERE member_id = $1")
            .bind(id).fetch_optional(p).await)
    }

    async fn member_by_email(&self, email: &str) -> Result<Option<Recipient>, sqlx::Error> {
        on_db!(&self.db, p => sqlx::query_as::<_, Recipient>(
            "SELECT email, display_name, suspended, children FROM members WHERE lower(email) = lower($1) LIMIT 1")
            .bind(email).fetch_optional(p).await)
    }

    async fn was_sent(&self, id: Uuid) -> Result<bool, sqlx::Error> {
        let row: Option<(Uuid,)> = on_db!(&self.db, p => sqlx::query_as(
            "SELECT message_id FROM sent_notifications WHERE message_id = $1").bind(id).fetch_optional(p).await)?;
        Ok(row.is_some())
    }

    async fn mark_sent(&self, id: Uuid) -> Result<(), sqlx::Error> {
        on_db!(&self.db, p => sqlx::query(
            "INSERT INTO sent_notifications (message_id, sent_at) VALUES ($1, $2) ON CONFLICT (message_id) DO NOTHING")
            .bind(id).bind(Utc::now()).execute(p).await.map(|_| ()))
    }

    /// The template context: the update's data with times in UTC form, the recipient's
    /// name, and per kind: invitation links, a cancelled member's seats, attendee names.
    async fn context(&self, update: &Update, name: &str, member: Option<Uuid>) -> Result<Value, Failure> {
        let mut ctx = match &update.data {
            Value::Object(m) => m.clone(),
            _ => return Err(Failure::Permanent("the update's data is not an object".into())),
        };
        for key in ["starts_at", "ends_at", "previous_starts_at", "previous_ends_at", "expires_at"] {
            if let Some(v) = ctx.get(key).map(utc) {
                ctx.insert(key.into(), v);
            }
        }
        ctx.insert("name".into(), json!(name));
        match update.kind.as_str() {
            "invitation.sent" => {
                let id = ctx.get("invitation_id").and_then(Value::as_str).unwrap_or_default().to_owned();
                let base = &self.public_base_url;
                ctx.insert("accept_url".into(), json!(format!("{base}/v1/invitations/{id}/accept")));
                ctx.insert("decline_url".into(), json!(format!("{base}/v1/invitations/{id}/decline")));
            }
            "activity.cancelled" => {
                let seats: u64 = ctx
                    .get("released")
                    .and_then(Value::as_array)
                    .into_iter()
                    .flatten()
                    .filter(|b| member.is_some_and(|m| b["member_id"] == json!(m)))
                    .filter_map(|b| b["seats"].as_u64())
                    .sum();
                ctx.insert("seats".into(), json!(seats));
            }
            "booking.reserved" => {
                let amount = &ctx["amount_due"];
                let text = match (amount["amount"].as_i64(), amount["currency"].as_str()) {
                    (Some(a), Some(c)) => format!("{}.{:02} {c}", a / 100, a % 100),
                    _ => String::from("the amount due"),
                };
                ctx.insert("amount".into(), json!(text));
            }
            "activity.attendee_list" => {
                let mut lines = Vec::new();
                for line in ctx.get("attendees").and_then(Value::as_array).cloned().unwrap_or_default() {
                    let who = match line["member_id"].as_str().and_then(|s| s.parse().ok()) {
                        Some(id) => self.member(id).await?,
                        None => None,
                    };
                    let (name, children) = match who {
                        Some(r) if !r.email.is_empty() => {
                            let wanted: Vec<&Value> =
                                line["children"].as_array().map(|a| a.iter().collect()).unwrap_or_default();
                            let names: Vec<String> = r
                                .children
                                .0
                                .as_array()
                                .into_iter()
                                .flatten()
                                .filter(|c| wanted.contains(&&c["id"]))
                                .filter_map(|c| c["name"].as_str().map(str::to_owned))
                                .collect();
                            (r.display_name, names)
                        }
                        _ => ("(forgotten)".to_owned(), Vec::new()),
                    };
                    lines.push(json!({"name": name, "seats": line["seats"], "children": children}));
                }
                ctx.insert("attendees".into(), Value::Array(lines));
            }
            _ => {}
        }
        Ok(Value::Object(ctx))
    }

    /// Sends every email `update` asks for; each recipient's email once, ever. Two
    /// deliveries of one message in this process run one after the other.
    pub async fn deliver(&self, update: &Update) -> Result<usize, Failure> {
        let lock = {
            let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
            map.entry(update.id).or_default().clone()
        };
        let result = {
            let _turn = lock.lock().await;
            self.deliver_once(update).await
        };
        let mut map = self.in_flight.lock().unwrap_or_else(|p| p.into_inner());
        if Arc::strong_count(&lock) == 2 {
            map.remove(&update.id); // nobody else waits for it
        }
        result
    }

    async fn deliver_once(&self, update: &Update) -> Result<usize, Failure> {
        let mut sent = 0;
        if update.kind == "invitation.sent" {
            // An invitation goes to the typed address, member or not.
            let Some(address) = &update.email else {
                return Err(Failure::Permanent("an invitation without an address".into()));
            };
            let id = Uuid::new_v5(&update.id, address.to_lowercase().as_bytes());
            // An address that belongs to a suspended member gets nothing, and neither
            // does one forgotten since the invitation was queued.
            let known = self.member_by_email(address).await?;
            if known.as_ref().is_some_and(|r| r.suspended) || self.was_sent(id).await? {
                return Ok(0);
            }
            if let Some(vault) = &self.vault {
                let forgotten = vault.address_forgotten(address).await;
                if forgotten.map_err(|e| Failure::Transient(format!("vault: {e}")))? {
                    return Ok(0);
                }
            }
            let name = known.map(|r| r.display_name).unwrap_or_else(|| "there".to_owned());
            let ctx = self.context(update, &name, None).await?;
            self.send(id, address, &update.kind, &ctx).await?;
            return Ok(1);
        }
        for member in &update.recipients {
            let id = Uuid::new_v5(&update.id, member.as_bytes());
            if self.was_sent(id).await? {
                continue;
            }
            let r = match self.member(*member).await? {
                Some(r) => r,
                // A welcome carries its address: the read model may be behind or stopped.
                None if update.kind == "member.registered" && update.email.is_some() => Recipient {
                    email: update.email.clone().unwrap_or_default(),
                    display_name: update.data["display_name"].as_str().unwrap_or("there").to_owned(),
                    suspended: false,
                    children: sqlx::types::Json(json!([])),
                },
                // The members read model has not caught up yet: come back later.
                None => {
                    return Err(Failure::Transient(format!("member {member} is not in the members read model yet")));
                }
            };
            if r.email.is_empty() || r.suspended {
                continue; // forgotten or suspended: nothing
            }
            let ctx = self.context(update, &r.display_name, Some(*member)).await?;
            self.send(id, &r.email, &update.kind, &ctx).await?;
            sent += 1;
        }
        Ok(sent)
    }

    async fn send(&self, id: Uuid, to: &str, kind: &str, ctx: &Value) -> Result<(), Failure> {
        let email =
            self.templates.render(kind, ctx).map_err(|e| Failure::Permanent(format!("template {kind}: {e}")))?;
        match self.mailer.send_email(to, &email.subject, &email.text, Some(&email.html)).await {
            Ok(()) => {}
            Err(MailError::Send { message, permanent: true }) | Err(MailError::Build(message)) => {
                return Err(Failure::Permanent(message));
            }
            Err(e) => return Err(Failure::Transient(e.to_string())),
        }
        self.stats.sent.fetch_add(1, Ordering::Relaxed);
        metrics::counter!("gather_emails_sent_total", "kind" => kind.to_owned()).increment(1);
        if let Err(e) = self.mark_sent(id).await {
            // Sent but not recorded: a redelivery may send it again (at least once).
            tracing::warn!(message_id = %id, error = %e, "a sent email could not be recorded");
        }
        Ok(())
    }

    /// Consumes `gather.notifications` until `shutdown`, reconnecting with backoff.
    pub async fn run_amqp(self: Arc<Self>, broker: Broker, mut shutdown: watch::Receiver<bool>) {
        let mut attempt = 0u32;
        loop {
            if *shutdown.borrow() {
                return;
            }
            let result = tokio::select! {
                r = self.clone().consume(&broker, &mut attempt) => r,
                _ = shutdown.wait_for(|s| *s) => return,
            };
            broker.set_connected(false);
            if let Err(e) = result {
                tracing::warn!(error = %e, attempt, "the notification worker lost rabbitmq; reconnecting");
            }
            tokio::select! {
                _ = tokio::time::sleep(backoff(attempt)) => {}
                _ = shutdown.wait_for(|s| *s) => return,
            }
            attempt += 1;
        }
    }

    async fn consume(self: Arc<Self>, broker: &Broker, attempt: &mut u32) -> Result<(), crate::bus::BusError> {
        let connection = broker.connect(Duration::from_secs(10)).await?;
        let channel = connection.create_channel().await?;
        channel.basic_qos(CONCURRENCY as u16 * 2, BasicQosOptions::default()).await?;
        let publisher = connection.create_channel().await?;
        publisher.confirm_select(ConfirmSelectOptions::default()).await?;
        let consumer = channel
            .basic_consume(NOTIFY_QUEUE.into(), "".into(), BasicConsumeOptions::default(), FieldTable::default())
            .await?;
        tracing::info!("the notification worker is consuming {NOTIFY_QUEUE}");
        broker.set_connected(true);
        *attempt = 0;
        // Each delivery is handled on a task of its own, so one that is sending when the
        // connection drops still finishes and records its email; the broker delivers it
        // again (its ack is lost), and the second attempt finds it sent. The first
        // broker error ends the consumption (the supervisor reconnects).
        let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        let mut consumer = consumer;
        while let Some(delivery) = consumer.try_next().await? {
            let Ok(permit) = limit.clone().acquire_owned().await else { break };
            let (this, publisher) = (self.clone(), publisher.clone());
            tokio::spawn(async move {
                let _permit = permit;
                this.handle(delivery, &publisher).await;
            });
        }
        Err(crate::bus::BusError::NotConfirmed("the consumer stopped".into()))
    }

    async fn handle(&self, d: Delivery, publisher: &Channel) {
        let attempt = attempt_of(&d);
        let update: Update = match serde_json::from_slice(&d.data) {
            Ok(u) => u,
            Err(e) => {
                tracing::error!(error = %e, "an unreadable notification is dead-lettered");
                self.stats.dead.fetch_add(1, Ordering::Relaxed);
                let _ = d.acker.reject(BasicRejectOptions { requeue: false }).await;
                return;
            }
        };
        let outcome = self.deliver(&update).await;
        tracing::debug!(id = %update.id, kind = %update.kind, attempt, ?outcome, "notification handled");
        let (target, error) = match outcome {
            Ok(_) => {
                let _ = d.acker.ack(BasicAckOptions::default()).await;
                return;
            }
            Err(Failure::Transient(e)) if attempt < MAX_ATTEMPTS => {
                let tier = RETRY_TIERS[(attempt as usize - 1).min(RETRY_TIERS.len() - 1)].0;
                tracing::warn!(id = %update.id, kind = %update.kind, attempt, error = %e, tier, "notification failed; retrying later");
                self.stats.retried.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("gather_emails_failed_total", "kind" => update.kind.clone(), "result" => "retry")
                    .increment(1);
                (("", tier), e)
            }
            Err(Failure::Transient(e)) | Err(Failure::Permanent(e)) => {
                tracing::error!(id = %update.id, kind = %update.kind, attempt, error = %e, "notification dead-lettered");
                self.stats.dead.fetch_add(1, Ordering::Relaxed);
                metrics::counter!("gather_emails_failed_total", "kind" => update.kind.clone(), "result" => "dead")
                    .increment(1);
                ((DEAD_EXCHANGE, DEAD_QUEUE), e)
            }
        };
        let mut headers = FieldTable::default();
        headers.insert(ShortString::from("x-attempt"), AMQPValue::LongLongInt(i64::from(attempt) + 1));
        headers.insert(ShortString::from("x-error"), AMQPValue::LongString(LongString::from(error.as_str())));
        let props = BasicProperties::default()
            .with_delivery_mode(2)
            .with_message_id(update.id.to_string().into())
            .with_content_type("application/json".into())
            .with_headers(headers);
        let published = async {
            publisher
                .basic_publish(target.0.into(), target.1.into(), BasicPublishOptions::default(), &d.data, props)
                .await?
                .await
        }
        .await;
        match published {
            Ok(c) if c.is_ack() => {
                let _ = d.acker.ack(BasicAckOptions::default()).await;
            }
            _ => {
                // Not parked anywhere: give it back to the queue as it was.
                let _ = d.acker.nack(BasicNackOptions { requeue: true, ..Default::default() }).await;
            }
        }
    }

    /// The embedded worker: takes mail updates from the in-process bus; retries in
    /// process with the same tiers, logs a dead letter after [`MAX_ATTEMPTS`].
    pub async fn run_local(self: Arc<Self>, bus: LocalBus, mut shutdown: watch::Receiver<bool>) {
        let mut rx = bus.take_mail(1024);
        let limit = Arc::new(tokio::sync::Semaphore::new(CONCURRENCY));
        loop {
            let update = tokio::select! {
                u = rx.recv() => match u { Some(u) => u, None => return },
                _ = shutdown.wait_for(|s| *s) => return,
            };
            let Ok(permit) = limit.clone().acquire_owned().await else { return };
            let this = self.clone();
            let mut stop = shutdown.clone();
            tokio::spawn(async move {
                let _permit = permit;
                for attempt in 1..=MAX_ATTEMPTS {
                    match this.deliver(&update).await {
                        Ok(_) => return,
                        Err(Failure::Transient(e)) if attempt < MAX_ATTEMPTS => {
                            this.stats.retried.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(id = %update.id, attempt, error = %e, "notification failed; retrying later");
                            let delay = RETRY_TIERS[(attempt as usize - 1).min(RETRY_TIERS.len() - 1)].1;
                            tokio::select! {
                                _ = tokio::time::sleep(delay) => {}
                                _ = stop.wait_for(|s| *s) => return,
                            }
                        }
                        Err(e) => {
                            this.stats.dead.fetch_add(1, Ordering::Relaxed);
                            tracing::error!(id = %update.id, kind = %update.kind, attempt, error = %e, "notification dead-lettered");
                            return;
                        }
                    }
                }
            });
        }
    }
}

/// The delivery's attempt number (1 for a first delivery).
fn attempt_of(d: &Delivery) -> u32 {
    d.properties
        .headers()
        .as_ref()
        .and_then(|h| h.inner().get("x-attempt"))
        .and_then(|v| match v {
            AMQPValue::LongLongInt(n) => Some(*n),
            AMQPValue::LongInt(n) => Some(i64::from(*n)),
            AMQPValue::ShortInt(n) => Some(i64::from(*n)),
            _ => None,
        })
        .map_or(1, |n| n.clamp(1, i64::from(u32::MAX)) as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ctx() -> Value {
        json!({
            "name": "Ada", "title": "Pottery <night>", "starts_at": "2026-12-01 18:00 UTC",
            "ends_at": "2026-12-01 20:00 UTC", "previous_starts_at": "2026-11-30 18:00 UTC",
            "previous_ends_at": "2026-11-30 20:00 UTC", "expires_at": "2026-12-01 10:15 UTC",
            "seats": 2, "waitlist_position": 1, "reason": "the venue flooded", "amount": "12.00 EUR",
            "accept_url": "https://gather.example/v1/invitations/x/accept",
            "decline_url": "https://gather.example/v1/invitations/x/decline",
            "seats_confirmed": 3, "approved_by": "m",
            "attendees": [{"name": "Bea", "seats": 3, "children": ["Cy", "Di"]}],
        })
    }

    #[test]
    fn every_kind_renders_a_subject_text_and_html_with_the_title() {
        let t = Templates::load();
        let mut kinds = 0;
        for kind in Templates::kinds() {
            let email = t.render(kind, &ctx()).unwrap_or_else(|e| panic!("{kind}: {e:#}"));
            assert!(!email.subject.is_empty(), "{kind}");
            assert!(email.text.starts_with("Hello Ada,"), "{kind}: {}", email.text);
            assert!(email.html.contains("Hello Ada,"), "{kind}");
            if kind != "member.registered" {
                assert!(email.subject.contains("Pottery <night>"), "{kind}: {}", email.subject);
                assert!(email.text.contains("Pottery <night>"), "{kind}");
                assert!(email.html.contains("Pottery &lt;night&gt;"), "{kind}: the html escapes");
            }
            kinds += 1;
        }
        assert_eq!(kinds, crate::bus::MAIL_KEYS.len() + 5, "13 kinds: booking.* stands for six");
    }

    #[test]
    fn the_invitation_carries_accept_and_decline_links_and_the_attendee_list_names_children() {
        let t = Templates::load();
        let inv = t.render("invitation.sent", &ctx()).unwrap();
        assert!(inv.text.contains("Accept: https://gather.example/v1/invitations/x/accept"));
        // The HTML escapes `/` as `&#x2f;` (browsers decode entities in attributes).
        let html = inv.html.replace("&#x2f;", "/");
        assert!(html.contains("href=\"https://gather.example/v1/invitations/x/decline\""), "{html}");
        let list = t.render("activity.attendee_list", &ctx()).unwrap();
        assert!(list.text.contains("- Bea: 3 seat(s), children: Cy, Di"), "{}", list.text);
    }

    #[test]
    fn a_missing_field_is_an_error_not_an_empty_email() {
        let t = Templates::load();
        assert!(t.render("booking.confirmed", &json!({"name": "Ada"})).is_err());
    }
}
