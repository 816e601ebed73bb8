//! Crypto-shredding of personal data in the log (ARCHITECTURE.md decision 12).
//!
//! Each personal field of an event (the domain marks them: [`DomainEvent::personal_fields`])
//! is stored as an envelope `{"sealed": {"key": …, "nonce": …, "data": …}}`: the field's
//! JSON encrypted with XChaCha20-Poly1305 under its subject's data key, with the event
//! id and the field's concrete path as associated data (an envelope moved to another
//! event or field does not open). Ids, times and amounts stay in clear.
//!
//! - **Keys.** One live data key per subject (a member, or an invited address, keyed by
//!   an HMAC of the address so the table names nobody) in `personal_keys`, wrapped by
//!   the key-encryption key (`GATHER_KEK`). [`Vault::shred`] deletes the wrapped key and
//!   keeps the row as a tombstone: an unknown key id is an error
//!   ([`StoreError::UnknownKey`]), a shredded one reads as forgotten.
//! - **Reads.** [`Sealed`] wraps any [`EventStore`]: every page read through it is
//!   opened ([`Vault::unseal`]) with one key query per page; a shredded field becomes
//!   `{"forgotten": true}`, which [`gather_domain::Personal`] decodes as `Forgotten`.
//! - **Old events.** Fields written in plain text before encryption are listed by
//!   `gather store encrypt-personal-data` in `plaintext_personal_data`; once their
//!   subject is shredded they read as forgotten too.
//!
//! The writer's key cache is dropped for a subject when it is shredded: in this
//! process at once, in others by a Postgres NOTIFY on [`KEYS_CHANNEL`] (a listener that
//! loses its connection clears the whole cache).

use crate::db::Db;
use crate::{EventStore, NewEvent, RecordedEvent, StoreError};
use base64::Engine;
use base64::engine::general_purpose::STANDARD_NO_PAD as B64;
use chacha20poly1305::aead::{Aead, KeyInit, Payload};
use chacha20poly1305::{XChaCha20Poly1305, XNonce};
use gather_domain::{DomainEvent, FORGOTTEN_KEY};
use hmac::{Hmac, Mac};
use rand::Rng;
use serde_json::{Map, Value, json};
use sha2::Sha256;
use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;
use uuid::Uuid;

/// The channel a shred is announced on (payload: the subject).
pub const KEYS_CHANNEL: &str = "gather_keys";
/// The envelope's key in a sealed field.
pub const SEALED_KEY: &str = "sealed";
/// Replaces `event #i of the page` in an error by the event's stream and version.
fn name_event(why: String, events: &[RecordedEvent]) -> String {
    let Some(at) = why.find("event #") else { return why };
    let digits: String = why[at + 7..].chars().take_while(char::is_ascii_digit).collect();
    let Some(e) = digits.parse::<usize>().ok().and_then(|i| events.get(i)) else { return why };
    why.replacen(&format!("event #{digits} of the page"), &format!("{}@{}", e.stream, e.version), 1)
}

/// A tombstone for a subject that never had a key: `$1` key id, `$2` subject, `$3` now.
const TOMBSTONE: &str = "INSERT INTO personal_keys (key_id, subject, wrapped, shredded_at) SELECT $1, $2, NULL, $3 \
                         WHERE NOT EXISTS (SELECT 1 FROM personal_keys WHERE subject = $2)";
/// The payload announcing that `plaintext_personal_data` changed.
const PLAINTEXT_CHANGED: &str = "plaintext";

/// Whether sealing may create a subject's key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NewKeys {
    /// Create one for a subject without a live key (new personal data).
    Always,
    /// Only for a subject never shredded (data read before now: snapshots).
    UnlessShredded,
}

/// The key-encryption key: 32 bytes, given as 64 hex characters.
#[derive(Clone)]
pub struct Kek([u8; 32]);

impl std::fmt::Debug for Kek {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Kek(…)")
    }
}

impl Kek {
    /// Parses 64 hex characters (32 bytes).
    pub fn from_hex(hex: &str) -> Result<Kek, &'static str> {
        let hex = hex.trim();
        if hex.len() != 64 {
            return Err("must be 64 hex characters (32 bytes)");
        }
        let mut key = [0u8; 32];
        for (i, pair) in hex.as_bytes().chunks(2).enumerate() {
            let s = std::str::from_utf8(pair).map_err(|_| "must be hex")?;
            key[i] = u8::from_str_radix(s, 16).map_err(|_| "must be 64 hex characters (32 bytes)")?;
        }
        Ok(Kek(key))
    }

    /// A key from its bytes.
    pub fn from_bytes(bytes: [u8; 32]) -> Kek {
        Kek(bytes)
    }
}

type Cipher = Arc<XChaCha20Poly1305>;

/// The key store and the sealing of personal fields.
pub struct Vault {
    db: Db,
    kek: XChaCha20Poly1305,
    address_secret: Arc<[u8]>,
    /// The writer's cache: subject → its live key.
    live: Mutex<HashMap<Uuid, (Uuid, Cipher)>>,
    /// Bumped on every invalidation, so a key read before a shred is not cached after it.
    epoch: AtomicU64,
    /// Whether `plaintext_personal_data` has rows (refreshed on notice and every minute).
    plaintext: AtomicBool,
}

impl std::fmt::Debug for Vault {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Vault(…)")
    }
}

/// One envelope found in an event, to open.
struct Found {
    event: usize,
    path: String,
    key: Uuid,
    nonce: Vec<u8>,
    data: Vec<u8>,
}

impl Vault {
    /// A vault over `db`'s `personal_keys`, wrapping data keys with `kek`; invited
    /// addresses are named by an HMAC under `address_secret` (the lookup key).
    /// Spawns the invalidation listener (Postgres) and the plaintext refresher.
    pub async fn open(db: Db, kek: &Kek, address_secret: &[u8]) -> Result<Arc<Vault>, StoreError> {
        let vault = Arc::new(Vault {
            db,
            kek: XChaCha20Poly1305::new((&kek.0).into()),
            address_secret: Arc::from(address_secret),
            live: Mutex::new(HashMap::new()),
            epoch: AtomicU64::new(0),
            plaintext: AtomicBool::new(false),
        });
        if let Err(e) = vault.refresh_plaintext().await {
            // Not migrated yet (the caller migrates next): the watcher reads it again.
            tracing::debug!(error = %e, "could not read the plain-text flag yet");
        }
        spawn_watch(Arc::downgrade(&vault));
        Ok(vault)
    }

    /// Changes whenever cached keys were dropped (a shred here or elsewhere): holders of
    /// decrypted state (the command handler's cache) drop theirs too.
    pub fn epoch(&self) -> u64 {
        self.epoch.load(Ordering::SeqCst)
    }

    /// The subject that owns an address (its lowercase form): an HMAC, so the key
    /// table does not tell whose address it is.
    pub fn address_subject(&self, normalized: &str) -> Uuid {
        keyed_id(&self.address_secret, "gather-address-subject", normalized)
    }

    fn invalidate(&self, subject: Option<Uuid>) {
        self.epoch.fetch_add(1, Ordering::SeqCst);
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        match subject {
            Some(s) => {
                live.remove(&s);
            }
            None => live.clear(),
        }
    }

    async fn refresh_plaintext(&self) -> Result<(), StoreError> {
        let any: bool = crate::on_db_read!(&self.db, p =>
            sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM plaintext_personal_data)").fetch_one(p).await)?;
        self.plaintext.store(any, Ordering::SeqCst);
        Ok(())
    }

    /// The live key of `subject`, created on first use (with `create` false, only for a
    /// subject never shredded: a shredded one without a live key is an error).
    async fn key_for(&self, subject: Uuid, create: bool) -> Result<(Uuid, Cipher), StoreError> {
        if let Some(hit) = self.live.lock().unwrap_or_else(|p| p.into_inner()).get(&subject) {
            return Ok(hit.clone());
        }
        let epoch = self.epoch.load(Ordering::SeqCst);
        let select = "SELECT key_id, wrapped FROM personal_keys WHERE subject = $1 AND wrapped IS NOT NULL";
        let mut row: Option<(Uuid, Vec<u8>)> =
            crate::on_db!(&self.db, p => sqlx::query_as(select).bind(subject).fetch_optional(p).await)?;
        if row.is_none() && !create && self.is_shredded(subject).await? {
            return Err(StoreError::Invalid(format!("subject {subject} was shredded and has no live key")));
        }
        if row.is_none() {
            let key_id = Uuid::now_v7();
            let data_key: [u8; 32] = rand::rng().random();
            let wrapped = self.wrap(key_id, &data_key)?;
            let insert = "INSERT INTO personal_keys (key_id, subject, wrapped) VALUES ($1, $2, $3) \
                          ON CONFLICT (subject) WHERE wrapped IS NOT NULL DO NOTHING";
            crate::on_db!(&self.db, p =>
                sqlx::query(insert).bind(key_id).bind(subject).bind(&wrapped).execute(p).await.map(|r| r.rows_affected()))?;
            row = crate::on_db!(&self.db, p => sqlx::query_as(select).bind(subject).fetch_optional(p).await)?;
        }
        let Some((key_id, wrapped)) = row else {
            return Err(StoreError::Unreadable(format!("the key of subject {subject} vanished while created")));
        };
        let cipher = Arc::new(self.unwrap(key_id, &wrapped)?);
        if self.epoch.load(Ordering::SeqCst) == epoch {
            let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
            if live.len() >= 100_000 {
                live.clear();
            }
            live.insert(subject, (key_id, cipher.clone()));
        }
        Ok((key_id, cipher))
    }

    fn wrap(&self, key_id: Uuid, data_key: &[u8; 32]) -> Result<Vec<u8>, StoreError> {
        let nonce: [u8; 24] = rand::rng().random();
        let sealed = self
            .kek
            .encrypt(&XNonce::from(nonce), Payload { msg: data_key, aad: key_id.as_bytes() })
            .map_err(|_| StoreError::Unreadable("could not wrap a data key".into()))?;
        let mut out = nonce.to_vec();
        out.extend_from_slice(&sealed);
        Ok(out)
    }

    fn unwrap(&self, key_id: Uuid, wrapped: &[u8]) -> Result<XChaCha20Poly1305, StoreError> {
        if wrapped.len() < 24 {
            return Err(StoreError::Unreadable(format!("the wrapped key {key_id} is truncated")));
        }
        let (nonce, sealed) = wrapped.split_at(24);
        let nonce: [u8; 24] = nonce.try_into().map_err(|_| StoreError::Unreadable("bad nonce".into()))?;
        let key =
            self.kek.decrypt(&XNonce::from(nonce), Payload { msg: sealed, aad: key_id.as_bytes() }).map_err(|_| {
                StoreError::Unreadable(format!("key {key_id} does not open with GATHER_KEK (another KEK?)"))
            })?;
        XChaCha20Poly1305::new_from_slice(&key)
            .map_err(|_| StoreError::Unreadable(format!("key {key_id} has the wrong length")))
    }

    /// Seals the personal fields of `event` inside `new` (its encoded form). `entity` is
    /// the stream's own id, the subject when the event names none.
    pub async fn seal<E: DomainEvent>(&self, entity: Uuid, event: &E, new: &mut NewEvent) -> Result<(), StoreError> {
        let paths = event.personal_fields();
        if paths.is_empty() {
            return Ok(());
        }
        let subject = event.personal_data_subject().unwrap_or(entity);
        let owner = (subject, event.personal_data_keyed_by_address());
        self.seal_fields(new.event_id, &mut new.data, paths, owner, NewKeys::Always).await
    }

    /// Seals the values at `paths` in `data` (`a.b`, `list[].x`, `map{}.x`) with
    /// `ad_id` and each concrete path as associated data: under `subject`'s key, or
    /// under the key of the address each value holds (`by_address`). With
    /// [`NewKeys::UnlessShredded`], a shredded subject without a live key is an error
    /// rather than given a new key: what was read before the shred is never sealed again
    /// (snapshots are sealed this way).
    pub async fn seal_fields(
        &self,
        ad_id: Uuid,
        data: &mut Value,
        paths: &[&str],
        (subject, by_address): (Uuid, bool),
        new_keys: NewKeys,
    ) -> Result<(), StoreError> {
        let mut fields: Vec<(String, Value)> = Vec::new();
        for path in paths {
            locate(data, path, &mut |concrete, value| {
                if !value.is_null() && !is_forgotten(value) && !is_sealed(value) {
                    fields.push((concrete, value.clone()));
                }
            });
        }
        for (concrete, value) in fields {
            let subject = match (&value, by_address) {
                (Value::String(address), true) => self.address_subject(&address.to_lowercase()),
                _ => subject,
            };
            let (key_id, cipher) = self.key_for(subject, new_keys == NewKeys::Always).await?;
            let nonce: [u8; 24] = rand::rng().random();
            let plain = serde_json::to_vec(&value).map_err(|e| StoreError::Invalid(e.to_string()))?;
            let sealed = cipher
                .encrypt(&XNonce::from(nonce), Payload { msg: &plain, aad: &aad(ad_id, &concrete) })
                .map_err(|_| StoreError::Invalid("could not seal a personal field".into()))?;
            let envelope = json!({SEALED_KEY: {"key": key_id, "nonce": B64.encode(nonce), "data": B64.encode(sealed)}});
            let Some(slot) = at_path(data, &concrete) else {
                return Err(StoreError::Invalid(format!("the personal field {concrete} cannot be addressed")));
            };
            *slot = envelope;
        }
        Ok(())
    }

    /// Opens every envelope in `events`: a field under a shredded key, or a plain-text
    /// field of a shredded subject, becomes `{"forgotten": true}`. One key query per call.
    pub async fn unseal(&self, events: &mut [RecordedEvent]) -> Result<(), StoreError> {
        let mut docs: Vec<(Uuid, &mut Value)> = events.iter_mut().map(|e| (e.event_id, &mut e.data)).collect();
        let opened = self.open_docs(&mut docs, &|i| format!("event #{i} of the page")).await;
        drop(docs);
        if let Err(e) = opened {
            // Name the event (built only on failure).
            return Err(match e {
                StoreError::Unreadable(why) => StoreError::Unreadable(name_event(why, events)),
                other => other,
            });
        }
        if self.plaintext.load(Ordering::Relaxed) {
            self.forget_plaintext(events).await?;
        }
        Ok(())
    }

    /// Opens every envelope in `docs` (associated-data id, document); `label` names a
    /// document in errors.
    pub async fn open_docs(
        &self,
        docs: &mut [(Uuid, &mut Value)],
        label: &(dyn Fn(usize) -> String + Sync),
    ) -> Result<(), StoreError> {
        let mut found: Vec<Found> = Vec::new();
        for (i, (_, data)) in docs.iter().enumerate() {
            collect(data, &mut String::new(), &mut |path, env| {
                let key = env.get("key").and_then(Value::as_str).and_then(|k| Uuid::parse_str(k).ok());
                let nonce = env.get("nonce").and_then(Value::as_str).and_then(|n| B64.decode(n).ok());
                let data = env.get("data").and_then(Value::as_str).and_then(|d| B64.decode(d).ok());
                if let (Some(key), Some(nonce), Some(data)) = (key, nonce, data) {
                    found.push(Found { event: i, path, key, nonce, data });
                }
            });
        }
        if found.is_empty() {
            return Ok(());
        }
        let ids: Vec<Uuid> = found.iter().map(|f| f.key).collect::<HashSet<_>>().into_iter().collect();
        let keys = self.fetch_keys(&ids).await?;
        let mut ciphers: HashMap<Uuid, Option<XChaCha20Poly1305>> = HashMap::new();
        for f in found {
            if let std::collections::hash_map::Entry::Vacant(slot) = ciphers.entry(f.key) {
                let opened = match keys.get(&f.key) {
                    None => return Err(StoreError::UnknownKey(f.key)),
                    Some(None) => None,
                    Some(Some(wrapped)) => Some(self.unwrap(f.key, wrapped)?),
                };
                slot.insert(opened);
            }
            let unopenable = || {
                StoreError::Unreadable(format!(
                    "the personal field {} of {} does not open (tampered, or moved from elsewhere)",
                    f.path,
                    label(f.event)
                ))
            };
            let (ad_id, data) = &mut docs[f.event];
            let value = match &ciphers[&f.key] {
                None => forgotten(),
                Some(cipher) => {
                    let nonce: [u8; 24] = f.nonce.as_slice().try_into().map_err(|_| unopenable())?;
                    let plain = cipher
                        .decrypt(&XNonce::from(nonce), Payload { msg: &f.data, aad: &aad(*ad_id, &f.path) })
                        .map_err(|_| unopenable())?;
                    serde_json::from_slice(&plain).map_err(|_| unopenable())?
                }
            };
            let Some(slot) = at_path(data, &f.path) else { return Err(unopenable()) };
            *slot = value;
        }
        Ok(())
    }

    /// Blanks the plain-text personal fields of shredded subjects in `events`.
    async fn forget_plaintext(&self, events: &mut [RecordedEvent]) -> Result<(), StoreError> {
        // Only the categories whose events have personal fields.
        let personal = |e: &RecordedEvent| matches!(e.category(), "member" | "activity" | "chat");
        if !events.iter().any(personal) {
            return Ok(());
        }
        let ids: Vec<String> = events.iter().filter(|e| personal(e)).map(|e| e.event_id.simple().to_string()).collect();
        let shredded: Vec<(Uuid, String)> = match &self.db {
            Db::Postgres(p) => {
                let ids: Vec<Uuid> = events.iter().filter(|e| personal(e)).map(|e| e.event_id).collect();
                sqlx::query_as(
                    "SELECT d.event_id, d.path FROM plaintext_personal_data d WHERE d.event_id = ANY($1) \
                     AND EXISTS (SELECT 1 FROM personal_keys k WHERE k.subject = d.subject AND k.wrapped IS NULL)",
                )
                .bind(ids)
                .fetch_all(p)
                .await?
            }
            Db::Sqlite { reader, .. } => {
                let list = serde_json::to_string(&ids).unwrap_or_default();
                let rows: Vec<(Uuid, String)> = sqlx::query_as(
                    "SELECT d.event_id, d.path FROM plaintext_personal_data d \
                     WHERE d.event_id IN (SELECT unhex(value) FROM json_each($1)) \
                     AND EXISTS (SELECT 1 FROM personal_keys k WHERE k.subject = d.subject AND k.wrapped IS NULL)",
                )
                .bind(list)
                .fetch_all(reader)
                .await?;
                rows
            }
        };
        if shredded.is_empty() {
            return Ok(());
        }
        let index: HashMap<Uuid, usize> = events.iter().enumerate().map(|(i, e)| (e.event_id, i)).collect();
        for (event_id, path) in shredded {
            if let Some(&i) = index.get(&event_id)
                && let Some(slot) = at_path(&mut events[i].data, &path)
            {
                *slot = forgotten();
            }
        }
        Ok(())
    }

    /// The wrapped keys (`None` = shredded) of `ids` that the table knows.
    async fn fetch_keys(&self, ids: &[Uuid]) -> Result<HashMap<Uuid, Option<Vec<u8>>>, StoreError> {
        let rows: Vec<(Uuid, Option<Vec<u8>>)> = match &self.db {
            Db::Postgres(p) => {
                sqlx::query_as("SELECT key_id, wrapped FROM personal_keys WHERE key_id = ANY($1)")
                    .bind(ids)
                    .fetch_all(p)
                    .await?
            }
            Db::Sqlite { reader, .. } => {
                let list = serde_json::to_string(&ids.iter().map(|i| i.simple().to_string()).collect::<Vec<_>>())
                    .unwrap_or_default();
                sqlx::query_as(
                    "SELECT key_id, wrapped FROM personal_keys WHERE key_id IN (SELECT unhex(value) FROM json_each($1))",
                )
                .bind(list)
                .fetch_all(reader)
                .await?
            }
        };
        Ok(rows.into_iter().collect())
    }

    /// Shreds every key of `subject` (keeping tombstones; a subject without a key gets a
    /// tombstone too, so its plain-text fields read as forgotten). Returns how many
    /// live keys were deleted. Idempotent.
    pub async fn shred(&self, subject: Uuid) -> Result<u64, StoreError> {
        let mut tx = self.db.begin().await?;
        let n = shred_in(&mut tx, subject).await?;
        tx.commit().await?;
        self.invalidate(Some(subject));
        Ok(n)
    }

    /// Marks `subject` as shredded if it never had a key, leaving a live key alone (an
    /// address a newer member owns now): its plain-text fields then read as forgotten.
    pub async fn tombstone(&self, subject: Uuid) -> Result<(), StoreError> {
        crate::on_db!(&self.db, p => sqlx::query(TOMBSTONE).bind(Uuid::now_v7()).bind(subject)
            .bind(chrono::Utc::now()).execute(p).await.map(|r| r.rows_affected()))?;
        Ok(())
    }

    /// Shreds a member's key and that of the address they registered with.
    pub async fn shred_member(&self, member: Uuid, normalized_email: Option<&str>) -> Result<u64, StoreError> {
        let mut n = self.shred(member).await?;
        if let Some(email) = normalized_email {
            n += self.shred(self.address_subject(email)).await?;
        }
        Ok(n)
    }

    /// Whether `subject` was shredded (has a tombstone).
    pub async fn is_shredded(&self, subject: Uuid) -> Result<bool, StoreError> {
        Ok(crate::on_db_read!(&self.db, p => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM personal_keys WHERE subject = $1 AND wrapped IS NULL)")
            .bind(subject).fetch_one(p).await)?)
    }

    /// Whether the address (lower case) was forgotten: its key is shredded and no live
    /// key was made for it since (a new invitation to the address makes one). Mail to
    /// a forgotten address that was queued before the forget is dropped by this.
    pub async fn address_forgotten(&self, address: &str) -> Result<bool, StoreError> {
        let subject = self.address_subject(&address.to_lowercase());
        Ok(crate::on_db_read!(&self.db, p => sqlx::query_scalar(
            "SELECT EXISTS (SELECT 1 FROM personal_keys WHERE subject = $1 AND wrapped IS NULL) \
             AND NOT EXISTS (SELECT 1 FROM personal_keys WHERE subject = $1 AND wrapped IS NOT NULL)")
            .bind(subject).fetch_one(p).await)?)
    }

    /// Records plain-text personal fields of old events (`gather store
    /// encrypt-personal-data`); returns how many were new. Announces the change.
    pub async fn record_plaintext(&self, rows: &[(Uuid, String, Uuid)]) -> Result<u64, StoreError> {
        let mut added = 0;
        let sql = "INSERT INTO plaintext_personal_data (event_id, path, subject) VALUES ($1, $2, $3) \
                   ON CONFLICT (event_id, path) DO NOTHING";
        let mut tx = self.db.begin().await?;
        for (event, path, subject) in rows {
            added += crate::on_tx!(&mut tx, c => sqlx::query(sql).bind(event).bind(path).bind(subject)
                .execute(&mut **c).await.map(|r| r.rows_affected()))?;
        }
        announce(&mut tx, PLAINTEXT_CHANGED).await?;
        tx.commit().await?;
        if !rows.is_empty() {
            self.plaintext.store(true, Ordering::SeqCst);
        }
        Ok(added)
    }
}

/// A uuid naming `text` under `secret`: the first 16 bytes of HMAC-SHA256 over
/// `purpose|text`, so nobody without the secret can tell what it names (a plain hash
/// of an address falls to a dictionary).
pub fn keyed_id(secret: &[u8], purpose: &str, text: &str) -> Uuid {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).expect("HMAC takes a key of any length");
    mac.update(purpose.as_bytes());
    mac.update(b"|");
    mac.update(text.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut bytes = [0u8; 16];
    bytes.copy_from_slice(&digest[..16]);
    uuid::Builder::from_custom_bytes(bytes).into_uuid()
}

/// Shreds every live key of `subject` inside `tx` (tombstones kept; a subject without
/// a key gets one) and announces it at commit: the vault's [`Vault::shred`], and the
/// members projection's on `MemberForgotten` (so a forget whose shred failed in the
/// request is finished by the projector). Returns how many live keys it deleted.
pub async fn shred_in(tx: &mut crate::db::Tx, subject: Uuid) -> Result<u64, sqlx::Error> {
    let now = chrono::Utc::now();
    let shred = "UPDATE personal_keys SET wrapped = NULL, shredded_at = $2 WHERE subject = $1 AND wrapped IS NOT NULL";
    let n = crate::on_tx!(&mut *tx, c => sqlx::query(shred).bind(subject).bind(now).execute(&mut **c).await
        .map(|r| r.rows_affected()))?;
    crate::on_tx!(&mut *tx, c => sqlx::query(TOMBSTONE).bind(Uuid::now_v7()).bind(subject).bind(now)
        .execute(&mut **c).await.map(|r| r.rows_affected()))?;
    announce(tx, &subject.to_string()).await?;
    Ok(n)
}

/// Tells the other processes (Postgres NOTIFY, sent at commit).
async fn announce(tx: &mut crate::db::Tx, payload: &str) -> Result<(), sqlx::Error> {
    if let crate::db::Tx::Postgres(c) = tx {
        sqlx::query("SELECT pg_notify($1, $2)").bind(KEYS_CHANNEL).bind(payload).execute(&mut **c).await?;
    }
    Ok(())
}

/// Watches for shreds in other processes (Postgres NOTIFY) and refreshes the
/// plain-text flag every minute; stops when the vault is dropped.
fn spawn_watch(vault: Weak<Vault>) {
    tokio::spawn(async move {
        let pool = match vault.upgrade().map(|v| v.db.clone()) {
            Some(Db::Postgres(p)) => Some(p),
            _ => None,
        };
        let mut listener: Option<sqlx::postgres::PgListener> = None;
        let mut refresh = tokio::time::interval(Duration::from_secs(60));
        loop {
            if let (Some(pool), None) = (&pool, &listener) {
                match sqlx::postgres::PgListener::connect_with(pool).await {
                    Ok(mut l) => {
                        if l.listen(KEYS_CHANNEL).await.is_ok() {
                            listener = Some(l);
                            // Shreds missed while not listening: forget every cached key.
                            let Some(v) = vault.upgrade() else { return };
                            v.invalidate(None);
                        }
                    }
                    Err(e) => tracing::debug!(error = %e, "could not LISTEN for key shreds; retrying"),
                }
            }
            let notice = match listener.as_mut() {
                Some(l) => tokio::select! {
                    n = l.try_recv() => Some(n),
                    _ = refresh.tick() => None,
                },
                None => {
                    tokio::select! {
                        _ = refresh.tick() => {}
                        _ = tokio::time::sleep(Duration::from_secs(1)), if pool.is_some() => {}
                    }
                    None
                }
            };
            let Some(v) = vault.upgrade() else { return };
            match notice {
                Some(Ok(Some(n))) if n.payload() == PLAINTEXT_CHANGED => {
                    let _ = v.refresh_plaintext().await;
                }
                Some(Ok(Some(n))) => v.invalidate(Uuid::parse_str(n.payload()).ok()),
                Some(Ok(None)) | Some(Err(_)) => {
                    listener = None;
                    v.invalidate(None);
                }
                None => {
                    if let Err(e) = v.refresh_plaintext().await {
                        tracing::debug!(error = %e, "could not refresh the plain-text flag");
                    }
                }
            }
        }
    });
}

fn forgotten() -> Value {
    json!({ FORGOTTEN_KEY: true })
}

fn aad(event_id: Uuid, path: &str) -> Vec<u8> {
    let mut aad = event_id.as_bytes().to_vec();
    aad.push(b'|');
    aad.extend_from_slice(path.as_bytes());
    aad
}

/// Whether `value` is the forgotten mark.
pub fn is_forgotten(value: &Value) -> bool {
    matches!(value, Value::Object(m) if m.len() == 1 && m.contains_key(FORGOTTEN_KEY))
}

/// Whether `value` is an envelope.
pub fn is_sealed(value: &Value) -> bool {
    sealed_envelope(value).is_some()
}

fn sealed_envelope(value: &Value) -> Option<&Map<String, Value>> {
    match value {
        Value::Object(m) if m.len() == 1 => m.get(SEALED_KEY).and_then(Value::as_object),
        _ => None,
    }
}

/// Calls `f` with each value at a declared path (`email`, `invitations[].email`,
/// `children{}.name` for every value of a map) and its concrete path
/// (`invitations[2].email`, `children.<key>.name`).
pub fn locate(data: &mut Value, path: &str, f: &mut dyn FnMut(String, &mut Value)) {
    fn walk(value: &mut Value, rest: &[&str], concrete: String, f: &mut dyn FnMut(String, &mut Value)) {
        let Some((head, tail)) = rest.split_first() else {
            f(concrete, value);
            return;
        };
        let join = |c: &str, seg: &str| if c.is_empty() { seg.to_string() } else { format!("{c}.{seg}") };
        if let Some(name) = head.strip_suffix("{}") {
            if let Some(Value::Object(items)) = value.get_mut(name) {
                for (k, item) in items.iter_mut() {
                    walk(item, tail, join(&concrete, &format!("{name}.{k}")), f);
                }
            }
        } else if let Some(name) = head.strip_suffix("[]") {
            if let Some(Value::Array(items)) = value.get_mut(name) {
                for (i, item) in items.iter_mut().enumerate() {
                    walk(item, tail, join(&concrete, &format!("{name}[{i}]")), f);
                }
            }
        } else if let Some(v) = value.get_mut(*head) {
            walk(v, tail, join(&concrete, head), f);
        }
    }
    let segments: Vec<&str> = path.split('.').collect();
    walk(data, &segments, String::new(), f);
}

/// The value at a concrete path (`invitations[2].email`).
pub fn at_path<'a>(data: &'a mut Value, path: &str) -> Option<&'a mut Value> {
    let mut at = data;
    for seg in path.split('.') {
        at = if let Some((name, index)) = seg.split_once('[') {
            let i: usize = index.strip_suffix(']')?.parse().ok()?;
            at.get_mut(name)?.get_mut(i)?
        } else {
            at.get_mut(seg)?
        };
    }
    Some(at)
}

/// Calls `f` with the concrete path and the envelope of every sealed field in `value`.
fn collect(value: &Value, path: &mut String, f: &mut dyn FnMut(String, &Map<String, Value>)) {
    if let Some(env) = sealed_envelope(value) {
        f(path.clone(), env);
        return;
    }
    match value {
        Value::Object(map) => {
            for (k, v) in map {
                if matches!(v, Value::Object(_) | Value::Array(_)) {
                    let len = path.len();
                    if !path.is_empty() {
                        path.push('.');
                    }
                    path.push_str(k);
                    collect(v, path, f);
                    path.truncate(len);
                }
            }
        }
        Value::Array(items) => {
            for (i, v) in items.iter().enumerate() {
                if matches!(v, Value::Object(_) | Value::Array(_)) {
                    let len = path.len();
                    path.push_str(&format!("[{i}]"));
                    collect(v, path, f);
                    path.truncate(len);
                }
            }
        }
        _ => {}
    }
}

/// The stream's entity id (`member-<uuid>` → uuid), the associated-data id of its snapshot.
fn entity_of(stream: &str) -> Uuid {
    stream.split_once('-').and_then(|(_, id)| Uuid::parse_str(id).ok()).unwrap_or_default()
}

/// An [`EventStore`] whose reads come out opened by its [`Vault`] (see the module docs);
/// appends pass through (the command handler seals before appending, as only it knows
/// the domain's personal fields).
pub struct Sealed {
    inner: Arc<dyn EventStore>,
    vault: Arc<Vault>,
}

impl Sealed {
    /// Wraps `inner`.
    pub fn new(inner: Arc<dyn EventStore>, vault: Arc<Vault>) -> Sealed {
        Sealed { inner, vault }
    }
}

#[async_trait::async_trait]
impl EventStore for Sealed {
    fn capabilities(&self) -> crate::Capabilities {
        self.inner.capabilities()
    }

    async fn append(
        &self,
        meta: &crate::AppendMeta,
        appends: Vec<crate::StreamAppend>,
    ) -> Result<crate::AppendResult, StoreError> {
        self.inner.append(meta, appends).await
    }

    async fn append_chain(
        &self,
        chain: Vec<(crate::AppendMeta, Vec<crate::StreamAppend>)>,
    ) -> Vec<Result<crate::AppendResult, StoreError>> {
        self.inner.append_chain(chain).await
    }

    async fn read_stream_page(
        &self,
        stream: &str,
        from: i64,
        backward: bool,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut page = self.inner.read_stream_page(stream, from, backward, limit).await?;
        self.vault.unseal(&mut page).await?;
        Ok(page)
    }

    async fn read_log_page(
        &self,
        after: crate::Checkpoint,
        filter: &crate::LogFilter,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        let mut page = self.inner.read_log_page(after, filter, limit).await?;
        self.vault.unseal(&mut page).await?;
        Ok(page)
    }

    async fn head(&self) -> Result<crate::Checkpoint, StoreError> {
        self.inner.head().await
    }

    async fn checkpoint_of(&self, position: i64) -> Result<Option<crate::Checkpoint>, StoreError> {
        self.inner.checkpoint_of(position).await
    }

    async fn is_committed(&self, position: i64) -> Result<bool, StoreError> {
        self.inner.is_committed(position).await
    }

    async fn stream_version(&self, stream: &str) -> Result<Option<i64>, StoreError> {
        self.inner.stream_version(stream).await
    }

    async fn load_snapshot(&self, stream: &str) -> Result<Option<crate::Snapshot>, StoreError> {
        let Some(mut snapshot) = self.inner.load_snapshot(stream).await? else { return Ok(None) };
        let mut docs = [(entity_of(stream), &mut snapshot.state)];
        self.vault.open_docs(&mut docs, &|_| format!("the snapshot of {stream}")).await?;
        Ok(Some(snapshot))
    }

    async fn save_snapshot(&self, stream: &str, snapshot: &crate::Snapshot) -> Result<(), StoreError> {
        self.inner.save_snapshot(stream, snapshot).await
    }

    fn wake(&self) -> tokio::sync::watch::Receiver<u64> {
        self.inner.wake()
    }

    async fn recorded(&self, command_id: Uuid) -> Result<Option<crate::AppendResult>, StoreError> {
        self.inner.recorded(command_id).await
    }

    fn vault(&self) -> Option<&Arc<Vault>> {
        Some(&self.vault)
    }

    /// The inner store's log (with its read-ahead), opened page by page.
    fn read_log(
        &self,
        after: crate::Checkpoint,
        filter: crate::LogFilter,
    ) -> futures::stream::BoxStream<'_, Result<RecordedEvent, StoreError>> {
        use futures::StreamExt;
        self.inner
            .read_log(after, filter)
            .ready_chunks(crate::LOG_PAGE as usize)
            .then(move |chunk| async move {
                let mut events = Vec::with_capacity(chunk.len());
                let mut failed = None;
                for item in chunk {
                    match item {
                        Ok(e) => events.push(e),
                        Err(e) => {
                            failed = Some(e);
                            break;
                        }
                    }
                }
                let opened = self.vault.unseal(&mut events).await;
                let mut out: Vec<Result<RecordedEvent, StoreError>> = match opened {
                    Ok(()) => events.into_iter().map(Ok).collect(),
                    Err(e) => vec![Err(e)],
                };
                out.extend(failed.map(Err));
                futures::stream::iter(out)
            })
            .flatten()
            .boxed()
    }
}
