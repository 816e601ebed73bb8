//! The handler's fallback for backends without atomic multi-stream appends (KurrentDB):
//! reserve first, then append, compensate on failure. Exercised on real SQLite behind a
//! wrapper that reports the missing capability and refuses multi-stream appends.

use crate::support::fresh_sqlite;
use async_trait::async_trait;
use gather_commands::store::{
    AppendMeta, AppendResult, Capabilities, Checkpoint, EventStore, LogFilter, RecordedEvent, Snapshot, StoreError,
    StreamAppend,
};
use gather_commands::uniqueness::{LookupKey, email_owner, email_stream, reserve_email};

fn key() -> LookupKey {
    LookupKey::new(b"fallback-test-lookup-key-0123456789")
}
use gather_commands::{CommandError, CommandHandler, CommandMeta};
use gather_domain::member::{Member, MemberCommand};
use gather_domain::values::{DisplayName, Email};
use gather_domain::{Actor, Role};
use std::sync::Arc;
use tokio::sync::watch;
use uuid::Uuid;

/// Real SQLite behind a wrapper without atomic multi-stream appends, able to fail the
/// next member append once (fault injection for the compensation path).
struct SingleStreamOnly(Arc<dyn EventStore>, std::sync::atomic::AtomicBool);

#[async_trait]
impl EventStore for SingleStreamOnly {
    fn capabilities(&self) -> Capabilities {
        Capabilities { multi_stream_append: false }
    }
    async fn append(&self, meta: &AppendMeta, appends: Vec<StreamAppend>) -> Result<AppendResult, StoreError> {
        if appends.len() > 1 {
            return Err(StoreError::Unsupported("multi-stream append"));
        }
        if appends[0].stream.starts_with("member-") && self.1.swap(false, std::sync::atomic::Ordering::SeqCst) {
            return Err(StoreError::Invalid("injected failure".into()));
        }
        self.0.append(meta, appends).await
    }
    async fn read_stream_page(
        &self,
        s: &str,
        from: i64,
        back: bool,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.0.read_stream_page(s, from, back, limit).await
    }
    async fn read_log_page(
        &self,
        after: Checkpoint,
        f: &LogFilter,
        limit: i64,
    ) -> Result<Vec<RecordedEvent>, StoreError> {
        self.0.read_log_page(after, f, limit).await
    }
    async fn head(&self) -> Result<Checkpoint, StoreError> {
        self.0.head().await
    }
    async fn checkpoint_of(&self, p: i64) -> Result<Option<Checkpoint>, StoreError> {
        self.0.checkpoint_of(p).await
    }
    async fn stream_version(&self, s: &str) -> Result<Option<i64>, StoreError> {
        self.0.stream_version(s).await
    }
    async fn load_snapshot(&self, s: &str) -> Result<Option<Snapshot>, StoreError> {
        self.0.load_snapshot(s).await
    }
    async fn save_snapshot(&self, s: &str, snap: &Snapshot) -> Result<(), StoreError> {
        self.0.save_snapshot(s, snap).await
    }
    fn wake(&self) -> watch::Receiver<u64> {
        self.0.wake()
    }
}

fn register(id: Uuid, email: &str) -> MemberCommand {
    MemberCommand::Register {
        member_id: id,
        email: Email::parse(email).unwrap(),
        password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
        display_name: DisplayName::parse("Res").unwrap(),
    }
}

async fn try_register(h: &CommandHandler, email: &str) -> (Uuid, Result<(), CommandError>) {
    let id = Uuid::now_v7();
    let norm = email.to_lowercase();
    let r = h
        .handle_with::<Member>(id, register(id, email), &CommandMeta::new(Actor::new(id, [Role::Member])), |_| {
            vec![reserve_email(&key(), &norm, id)]
        })
        .await
        .map(|_| ());
    (id, r)
}

#[tokio::test]
async fn without_atomic_multi_stream_appends_the_handler_reserves_first_and_compensates() {
    let (_db, inner) = fresh_sqlite().await;
    let wrapper = Arc::new(SingleStreamOnly(inner.clone(), std::sync::atomic::AtomicBool::new(false)));
    let store: Arc<dyn EventStore> = wrapper.clone();
    let h = CommandHandler::new(store.clone());

    // A first registration reserves the email, then appends the member.
    let (first, r) = try_register(&h, "res@example.com").await;
    r.unwrap();
    assert_eq!(email_owner(store.as_ref(), &key(), "res@example.com").await.unwrap(), Some(first));

    // The same email again: the reservation is taken; no member is written.
    let (second, r) = try_register(&h, "RES@example.com").await;
    assert!(matches!(r, Err(CommandError::Taken { .. })), "{r:?}");
    assert_eq!(store.stream_version(&format!("member-{second}")).await.unwrap(), None);

    // The member append fails after the reservation: the reservation is released...
    wrapper.1.store(true, std::sync::atomic::Ordering::SeqCst);
    let (failed, r) = try_register(&h, "comp@example.com").await;
    assert!(matches!(r, Err(CommandError::Store(StoreError::Invalid(_)))), "{r:?}");
    assert_eq!(store.stream_version(&format!("member-{failed}")).await.unwrap(), None);
    assert_eq!(
        store.stream_version(&email_stream(&key(), "comp@example.com")).await.unwrap(),
        Some(1),
        "reserved, then released"
    );
    assert_eq!(email_owner(store.as_ref(), &key(), "comp@example.com").await.unwrap(), None);

    // ...so the email can be registered again.
    let (winner, r) = try_register(&h, "comp@example.com").await;
    r.unwrap();
    assert_eq!(email_owner(store.as_ref(), &key(), "comp@example.com").await.unwrap(), Some(winner));
    let (_, r) = try_register(&h, "comp@example.com").await;
    assert!(matches!(r, Err(CommandError::Taken { .. })), "{r:?}");
}
