//! The vault: sealed personal fields, their associated data, shredding and tombstones,
//! on every backend.

use crate::support::every_backend;
use gather_domain::activity::{ActivityEvent, InvitedGuest};
use gather_domain::member::MemberEvent;
use gather_domain::values::{ChildName, Email};
use gather_store::{AppendMeta, Db, EventStore, ExpectedVersion, Kek, Sealed, StoreError, StreamAppend, Vault, codec};
use serde_json::json;
use std::sync::Arc;
use uuid::Uuid;

every_backend!(
    a_sealed_field_opens_only_in_its_own_event_and_field,
    shredding_forgets_the_subjects_fields_and_no_one_elses,
    invited_addresses_are_keyed_by_the_address
);

async fn vault(db: &Db) -> Arc<Vault> {
    Vault::open(db.clone(), &Kek::from_bytes([42; 32]), b"a-lookup-secret-for-the-vault-tests").await.unwrap()
}

async fn append(store: &Arc<dyn EventStore>, stream: &str, events: Vec<gather_store::NewEvent>) {
    let append = StreamAppend { stream: stream.to_owned(), expected: ExpectedVersion::Any, events };
    store.append(&AppendMeta::new(Uuid::now_v7(), None), vec![append]).await.unwrap();
}

async fn child_added(vault: &Vault, member: Uuid, name: &str) -> gather_store::NewEvent {
    let event = MemberEvent::ChildAdded {
        child_id: Uuid::now_v7(),
        name: ChildName::parse(name).unwrap().into(),
        birth_date: chrono::NaiveDate::from_ymd_opt(2019, 5, 6).unwrap().into(),
    };
    let mut new = codec::encode(&event).unwrap();
    vault.seal(member, &event, &mut new).await.unwrap();
    new
}

async fn a_sealed_field_opens_only_in_its_own_event_and_field(db: Db, store: Arc<dyn EventStore>) {
    let vault = vault(&db).await;
    let member = Uuid::now_v7();
    let (a, b) = (child_added(&vault, member, "Anouk").await, child_added(&vault, member, "Bram").await);
    assert!(a.data["name"]["sealed"]["data"].is_string(), "{}", a.data);
    assert!(!a.data.to_string().contains("Anouk"), "{}", a.data);
    let id = a.data["child_id"].as_str().and_then(|s| Uuid::parse_str(s).ok());
    assert!(id.is_some(), "ids stay in clear: {}", a.data);
    assert_eq!(a.data["birth_date"]["sealed"]["key"], a.data["name"]["sealed"]["key"], "one key per subject");
    append(&store, &format!("member-{member}"), vec![a.clone(), b]).await;
    let sealed = Sealed::new(store.clone(), vault.clone());
    let page = sealed.read_stream_page(&format!("member-{member}"), 0, false, 10).await.unwrap();
    assert_eq!(page[0].data["name"], json!("Anouk"));
    assert_eq!(page[1].data["name"], json!("Bram"));
    assert_eq!(page[0].data["birth_date"], json!("2019-05-06"));

    // Moved to another event, or to another field of the same event: it does not open.
    let raw = store.read_stream_page(&format!("member-{member}"), 0, false, 10).await.unwrap();
    let mut moved = raw[1].clone();
    moved.data["name"] = raw[0].data["name"].clone();
    let err = vault.unseal(std::slice::from_mut(&mut moved)).await.unwrap_err();
    assert!(matches!(err, StoreError::Unreadable(_)), "{err}");
    let mut swapped = raw[0].clone();
    swapped.data["birth_date"] = raw[0].data["name"].clone();
    assert!(vault.unseal(std::slice::from_mut(&mut swapped)).await.is_err());
    // A changed ciphertext does not open either.
    let mut tampered = raw[0].clone();
    let data = tampered.data["name"]["sealed"]["data"].as_str().unwrap().to_owned();
    let flipped = match data.strip_prefix('A') {
        Some(rest) => format!("B{rest}"),
        None => format!("A{}", &data[1..]),
    };
    tampered.data["name"]["sealed"]["data"] = json!(flipped);
    assert!(vault.unseal(std::slice::from_mut(&mut tampered)).await.is_err());
    // Another KEK cannot unwrap the data key.
    let other =
        Vault::open(db.clone(), &Kek::from_bytes([7; 32]), b"a-lookup-secret-for-the-vault-tests").await.unwrap();
    let mut copy = raw[0].clone();
    let err = other.unseal(std::slice::from_mut(&mut copy)).await.unwrap_err();
    assert!(err.to_string().contains("GATHER_KEK"), "{err}");
}

async fn shredding_forgets_the_subjects_fields_and_no_one_elses(db: Db, store: Arc<dyn EventStore>) {
    let vault = vault(&db).await;
    let (gone, kept) = (Uuid::now_v7(), Uuid::now_v7());
    append(&store, &format!("member-{gone}"), vec![child_added(&vault, gone, "Gone Child").await]).await;
    append(&store, &format!("member-{kept}"), vec![child_added(&vault, kept, "Kept Child").await]).await;
    assert!(!vault.is_shredded(gone).await.unwrap());
    assert_eq!(vault.shred(gone).await.unwrap(), 1, "one live key shredded");
    assert_eq!(vault.shred(gone).await.unwrap(), 0, "idempotent");
    assert!(vault.is_shredded(gone).await.unwrap());
    let sealed = Sealed::new(store.clone(), vault.clone());
    let gone_page = sealed.read_stream_page(&format!("member-{gone}"), 0, false, 10).await.unwrap();
    assert_eq!(gone_page[0].data["name"], json!({"forgotten": true}));
    assert_eq!(gone_page[0].data["birth_date"], json!({"forgotten": true}));
    let event: MemberEvent = codec::decode(&gone_page[0], &gather_store::Upcasters::standard()).unwrap();
    let MemberEvent::ChildAdded { name, .. } = event else { panic!("{event:?}") };
    assert!(name.is_forgotten(), "the domain reads it as forgotten");
    let kept_page = sealed.read_stream_page(&format!("member-{kept}"), 0, false, 10).await.unwrap();
    assert_eq!(kept_page[0].data["name"], json!("Kept Child"));
    // The key table keeps the tombstone; the wrapped key is gone.
    let rows: Vec<(Option<Vec<u8>>,)> = gather_store::on_db_read!(&db, p =>
        sqlx::query_as("SELECT wrapped FROM personal_keys WHERE subject = $1").bind(gone).fetch_all(p).await)
    .unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].0.is_none());
    // A new field for a shredded subject gets a new key (and reads back).
    let new = child_added(&vault, gone, "After").await;
    append(&store, &format!("member-{gone}"), vec![new]).await;
    let page = sealed.read_stream_page(&format!("member-{gone}"), 0, false, 10).await.unwrap();
    assert_eq!(page[1].data["name"], json!("After"));
    assert_eq!(page[0].data["name"], json!({"forgotten": true}));
}

async fn invited_addresses_are_keyed_by_the_address(db: Db, store: Arc<dyn EventStore>) {
    let vault = vault(&db).await;
    let activity = Uuid::now_v7();
    let guest =
        |address: &str| InvitedGuest { invitation_id: Uuid::now_v7(), email: Email::parse(address).unwrap().into() };
    let event = ActivityEvent::GuestsInvited { invitations: vec![guest("Ann@Example.org"), guest("bob@example.org")] };
    let mut new = codec::encode(&event).unwrap();
    vault.seal(activity, &event, &mut new).await.unwrap();
    let (k0, k1) =
        (&new.data["invitations"][0]["email"]["sealed"]["key"], &new.data["invitations"][1]["email"]["sealed"]["key"]);
    assert_ne!(k0, k1, "each address has its own key");
    append(&store, &format!("activity-{activity}"), vec![new]).await;
    // Forgetting Ann's address (any case) forgets it in the invitation, not Bob's.
    vault.shred(vault.address_subject("ann@example.org")).await.unwrap();
    let sealed = Sealed::new(store.clone(), vault.clone());
    let page = sealed.read_stream_page(&format!("activity-{activity}"), 0, false, 10).await.unwrap();
    assert_eq!(page[0].data["invitations"][0]["email"], json!({"forgotten": true}));
    assert_eq!(page[0].data["invitations"][1]["email"], json!("bob@example.org"));
}

/// Two processes: a shred in one drops the other's cached key (Postgres NOTIFY), so
/// the other seals a later field under a new key, not the shredded one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shred_elsewhere_drops_this_processs_cached_key() {
    let (db, _, url) = crate::support::fresh_postgres().await;
    let here = vault(&db).await;
    let elsewhere = vault(&Db::connect(&url).await.unwrap()).await;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(20);
    // The listener's connection drops every cached key once (`epoch` 1): wait for it, so
    // that the only later change is the shred's notice.
    while here.epoch() == 0 {
        assert!(std::time::Instant::now() < deadline, "the listener never connected");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let member = Uuid::now_v7();
    let first = child_added(&here, member, "Cached").await;
    let key = first.data["name"]["sealed"]["key"].clone();
    assert_eq!(child_added(&here, member, "Again").await.data["name"]["sealed"]["key"], key, "cached");
    let before = here.epoch();
    elsewhere.shred(member).await.unwrap();
    while here.epoch() == before {
        assert!(std::time::Instant::now() < deadline, "the shred's notice never arrived");
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let after = child_added(&here, member, "Later").await;
    assert_ne!(after.data["name"]["sealed"]["key"], key, "a new key, not the shredded one");
}
