//! Forgetting a member (crypto-shredding, ARCHITECTURE.md decision 12): the personal
//! fields of their events are sealed under keys that forgetting shreds, and every
//! derived copy is scrubbed (read models, the search index, the outbox, sent-mail
//! records, snapshots, idempotency answers). A full dump of the database, the log
//! included, holds none of it afterwards; rebuilt projections, the audit feed and the
//! history show the fields as forgotten.

use crate::harness::*;
use serde_json::json;

const EMAIL: &str = "Zelda.Forgetme@Example.com";
const NAME: &str = "Zelda Quixotic";
const CHILD: &str = "Xanthippe";

/// Every spelling of `text` a dump could hold it in.
fn spellings(text: &str) -> Vec<String> {
    let json = serde_json::to_string(text).unwrap();
    vec![text.to_owned(), text.to_lowercase(), text.to_uppercase(), json.trim_matches('"').to_owned()]
}

/// The whole database as text, the event log included, and the mail files.
async fn dump(app: &TestApp) -> String {
    let mut mail = String::new();
    if let Ok(files) = std::fs::read_dir(app.app_state.settings.data_dir.join("mail")) {
        for f in files.flatten() {
            mail.push_str(&String::from_utf8_lossy(&std::fs::read(f.path()).unwrap_or_default()));
        }
    }
    mail + &match &app.app_state.db {
        gather_commands::Db::Postgres(pool) => {
            let db: String = sqlx::query_scalar("SELECT current_database()").fetch_one(pool).await.unwrap();
            // Binary columns as text, not hex, so the search sees into them.
            let out = tokio::process::Command::new("pg_dump")
                .env("PGOPTIONS", "-c bytea_output=escape")
                .args(["-h", "127.0.0.1", "-U", "postgres", &db])
                .output()
                .await
                .expect("pg_dump runs");
            assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        gather_commands::Db::Sqlite { writer, .. } => {
            // The live file itself, free pages and free space in pages included, and its
            // write-ahead log. The checkpoint stands for the automatic ones that come with
            // time: the log's frames are then truncated away (journal_size_limit).
            sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(writer).await.unwrap();
            let file = app.app_state.settings.data_dir.join("gather.db");
            let mut bytes = std::fs::read(&file).unwrap();
            bytes.extend(std::fs::read(file.with_extension("db-wal")).unwrap_or_default());
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
}

/// The mail files addressed to `address` (any case).
fn mail_files_to(app: &TestApp, address: &str) -> usize {
    let dir = app.app_state.settings.data_dir.join("mail");
    let files = std::fs::read_dir(dir).map(|d| d.flatten().collect::<Vec<_>>()).unwrap_or_default();
    let needle = address.to_lowercase();
    files
        .iter()
        .filter(|f| std::fs::read_to_string(f.path()).unwrap_or_default().to_lowercase().contains(&needle))
        .count()
}

both_profiles!(forgetting_a_member_scrubs_every_derived_copy, a_forgotten_members_address_registers_again);

/// Forgetting gives the address back: it registers again as a new member, whose
/// password logs in; the forgotten member's token and password do not.
async fn a_forgotten_members_address_registers_again(app: TestApp) {
    let (first, token) = app.register_as(EMAIL, NAME).await;
    let taken = app
        .post(
            "/v1/auth/register",
            None,
            json!({"email": EMAIL, "password": "another password!", "display_name": "Other"}),
        )
        .await;
    taken.assert_problem(409, Some("email_taken"));
    let a = app.send(app.http.delete(app.url("/v1/me")).bearer_auth(&token)).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let again = app
        .post(
            "/v1/auth/register",
            None,
            json!({"email": EMAIL.to_lowercase(), "password": "a new password!", "display_name": "Zed"}),
        )
        .await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    let second = again.body["member_id"].as_str().unwrap().to_owned();
    assert_ne!(second, first, "a new member, not the forgotten one");
    let login = app.login(EMAIL, "a new password!").await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert_eq!(login.body["member_id"], json!(second));
    app.login(EMAIL, "correct horse battery").await.assert_problem(401, None);
    app.get("/v1/me", Some(&token), None).await.assert_problem(401, None);
    let me = app.get("/v1/me", again.body["token"].as_str(), Some(again.position())).await;
    assert_eq!(me.body["display_name"], json!("Zed"), "{:?}", me.body);
    // Taken again now.
    let taken = app
        .post(
            "/v1/auth/register",
            None,
            json!({"email": EMAIL, "password": "third password!!", "display_name": "Third"}),
        )
        .await;
    taken.assert_problem(409, Some("email_taken"));
}

async fn forgetting_a_member_scrubs_every_derived_copy(app: TestApp) {
    // A member with a child, a booking, an invitation, a chat and emails.
    let (member_id, token) = app.register_as(EMAIL, NAME).await;
    let a = app.post("/v1/me/children", Some(&token), json!({"name": CHILD, "birth_date": "2018-04-02"})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let child = a.body["id"].as_str().unwrap().to_owned();
    let org = app.organiser(org_name()).await;
    let org_id = app.app_state.jwt.verify(&org).unwrap().id;
    let public = published_activity(&app, &org, 10, false).await;
    let a = app
        .post(&format!("/v1/activities/{public}/bookings"), Some(&token), json!({"seats": 2, "child_ids": [child]}))
        .await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let mut body = activity_body();
    body["visibility"] = json!("invite_only");
    let private = app.post("/v1/activities", Some(&org), body).await.body["id"].as_str().unwrap().to_owned();
    let a = app.post(&format!("/v1/activities/{private}/publish"), Some(&org), json!({})).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    // With an idempotency key: the stored answer lists the invited address.
    let invite = app
        .http
        .post(app.url(&format!("/v1/activities/{private}/invitations")))
        .bearer_auth(&org)
        .header("idempotency-key", "invite-the-forgotten")
        .json(&json!({"emails": [EMAIL]}));
    let a = app.send(invite).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    // A snapshot of the shape before sealing, in clear (as an older store has them).
    let old = gather_commands::store::Snapshot {
        version: 0,
        state_version: 1,
        state: json!({"email": EMAIL, "display_name": NAME, "children": {child.clone(): {"name": CHILD}}}),
    };
    app.app_state.store.save_snapshot(&format!("member-{member_id}"), &old).await.unwrap();
    let chat = app.post("/v1/chats", Some(&token), json!({"title": "Parents", "member_ids": [org_id]})).await;
    assert_eq!(chat.status, 201, "{:?}", chat.body);
    let chat_id = chat.body["id"].as_str().unwrap().to_owned();
    let posted = app
        .post(
            &format!("/v1/chats/{chat_id}/messages"),
            Some(&token),
            json!({"text": format!("hi, {CHILD} says hello")}),
        )
        .await;
    assert_eq!(posted.status, 201, "{:?}", posted.body);
    // Reads open the sealed fields: the history shows the invited address.
    let history = app.get(&format!("/v1/activities/{private}/history"), Some(&org), None).await;
    assert!(history.body.to_string().contains(EMAIL), "{:?}", history.body);
    // Everything is projected (attendee list, invitation, chat, search) before the forget.
    let seen = app.get(&format!("/v1/activities/{public}/attendees"), Some(&org), Some(posted.position())).await;
    assert_eq!(seen.body["attendees"][0]["name"], json!(NAME), "{:?}", seen.body);
    if app.app_state.settings.smtp_url.is_none() {
        eventually("their emails are written", || async { mail_files_to(&app, EMAIL) >= 1 }).await;
    }
    let before = dump(&app).await;
    assert!(before.contains(NAME) && before.contains(CHILD), "the fixture's data is in the read side before");

    let forgotten = app.send(app.http.delete(app.url("/v1/me")).bearer_auth(&token)).await;
    assert_eq!(forgotten.status, 202, "{:?}", forgotten.body);
    // Every projection has applied the forget.
    let moderator = app.login(MODERATOR.0, MODERATOR.1).await.body["token"].as_str().unwrap().to_owned();
    eventually("every projection applies the forget", || async {
        let a = app.get("/v1/admin/projections", Some(&moderator), None).await;
        a.body["items"]
            .as_array()
            .is_some_and(|ps| ps.iter().all(|p| p["position"].as_i64().is_some_and(|pos| pos >= forgotten.position())))
    })
    .await;
    // The live read side, before any rebuild, holds none of it.
    let live = dump(&app).await;
    let leaks = leaks_in(&live);
    assert!(leaks.is_empty(), "member {member_id}'s personal data is in the live database:\n{}", leaks.join("\n\n"));
    // Every projection rebuilt from the log after the forget shows it forgotten.
    let names: Vec<String> =
        projections(&app, &moderator).await.iter().map(|p| p["name"].as_str().unwrap().to_owned()).collect();
    assert!(names.len() >= 9, "{names:?}");
    let mut rebuilt = Vec::new();
    for name in &names {
        let a = app.post(&format!("/v1/admin/projections/{name}/rebuild"), Some(&moderator), json!({})).await;
        if a.status == 409 && a.body["code"] == json!("projection_not_rebuildable") {
            continue; // side effects (mail, timers): never replayed
        }
        assert_eq!(a.status, 202, "{name}: {:?}", a.body);
        rebuilt.push(name.as_str());
        crate::harness::rebuilt(&app, &moderator, name).await;
    }
    for read_model in ["members", "activities", "invitations", "favourites", "chats", "search"] {
        assert!(rebuilt.contains(&read_model), "{read_model} was rebuilt: {rebuilt:?}");
    }
    let after = dump(&app).await;
    assert!(after.contains(org_name()), "the dump holds the organiser's own data (the test can see into it)");
    let leaks = leaks_in(&after);
    assert!(leaks.is_empty(), "member {member_id}'s personal data is still in the database:\n{}", leaks.join("\n\n"));
    // The rebuilt attendee list shows the booking, its member forgotten.
    let seen = app.get(&format!("/v1/activities/{public}/attendees"), Some(&org), None).await;
    assert_eq!(seen.body["attendees"][0]["seats"], json!(2), "{:?}", seen.body);
    assert_eq!(seen.body["attendees"][0]["name"], json!("(forgotten)"), "{:?}", seen.body);
    // The rebuilt chat keeps the message, its text forgotten.
    let messages = app.get(&format!("/v1/chats/{chat_id}/messages"), Some(&org), None).await;
    assert_eq!(messages.status, 200, "{:?}", messages.body);
    assert_eq!(messages.body["items"][0]["text"], json!("(forgotten)"), "{:?}", messages.body);
    // The history and the audit feed still return every event, the fields forgotten.
    let history = app.get(&format!("/v1/activities/{private}/history"), Some(&org), None).await;
    let invited = history.body["events"].as_array().unwrap().iter().find(|e| e["type"] == json!("GuestsInvited"));
    let invited = invited.unwrap_or_else(|| panic!("{:?}", history.body));
    assert_eq!(invited["data"]["invitations"][0]["email"], json!({"forgotten": true}), "{invited}");
    let auditor = app.login(AUDITOR.0, AUDITOR.1).await.body["token"].as_str().unwrap().to_owned();
    let feed = app.get(&format!("/v1/audit/events?stream=member-{member_id}"), Some(&auditor), None).await;
    let events = feed.body["items"].as_array().unwrap_or_else(|| panic!("{:?}", feed.body)).clone();
    let of =
        |t: &str| events.iter().find(|e| e["type"] == json!(t)).unwrap_or_else(|| panic!("{t}: {events:?}")).clone();
    assert_eq!(of("MemberRegistered")["data"]["email"], json!({"forgotten": true}));
    assert_eq!(of("MemberRegistered")["data"]["display_name"], json!({"forgotten": true}));
    assert_eq!(of("ChildAdded")["data"]["name"], json!({"forgotten": true}));
    assert_eq!(of("ChildAdded")["data"]["child_id"], json!(child), "ids stay in clear");
    assert!(events.iter().any(|e| e["type"] == json!("MemberForgotten")));
}

/// Where `text` holds any spelling of the member's email, name or child's name, or of
/// one of their words.
fn leaks_in(text: &str) -> Vec<String> {
    let mut leaks = Vec::new();
    // Each whole value, and each word on its own (search lexemes, trigram data, a
    // name split across columns): `zelda`, `quixot` (a stem), `forgetme`, `xanthipp`.
    let words = ["Zelda", "Quixot", "Forgetme", "Xanthipp"];
    assert!(words.iter().all(|w| NAME.contains(w) || EMAIL.contains(w) || CHILD.contains(w)));
    for secret in [EMAIL, NAME, CHILD].into_iter().chain(words) {
        for s in spellings(secret) {
            for (at, _) in text.match_indices(&s) {
                let table = text[..at].rfind("COPY ").map(|c| text[c..].split('(').next().unwrap_or("").to_owned());
                let from = text[..at].char_indices().rev().nth(120).map_or(0, |(i, _)| i);
                let to = text[at..].char_indices().nth(120).map_or(text.len(), |(i, _)| at + i);
                leaks.push(format!("{s:?} in {table:?}: …{}…", &text[from..to]));
            }
        }
    }
    leaks
}

fn org_name() -> &'static str {
    "forget-org@example.com"
}

both_profiles!(only_the_member_or_a_moderator_forgets, sealed_fields_read_back_until_forgotten);

/// `DELETE /v1/members/{id}` is a moderator's; a member forgets only themself.
async fn only_the_member_or_a_moderator_forgets(app: TestApp) {
    let (victim, token) = app.register_as("victim@example.com", "Vic Tim").await;
    let (_, other) = app.register_as("other@example.com", "Other One").await;
    let path = format!("/v1/members/{victim}");
    let refused = app.send(app.http.delete(app.url(&path)).bearer_auth(&other)).await;
    refused.assert_problem(403, None);
    app.send(app.http.delete(app.url(&path))).await.assert_problem(401, None);
    let me = app.get("/v1/me", Some(&token), None).await;
    assert_eq!(me.body["display_name"], json!("Vic Tim"), "nothing changed: {:?}", me.body);
    let moderator = app.login(MODERATOR.0, MODERATOR.1).await.body["token"].as_str().unwrap().to_owned();
    let a = app.send(app.http.delete(app.url(&path)).bearer_auth(&moderator)).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    app.get("/v1/me", Some(&token), Some(a.position())).await.assert_problem(401, None);
    let again = app
        .send(app.http.delete(app.url(&format!("/v1/members/{}", uuid::Uuid::now_v7()))).bearer_auth(&moderator))
        .await;
    again.assert_problem(404, None);
}

async fn opened_registered(app: &TestApp, stream: &str) -> gather_commands::store::RecordedEvent {
    let opened = app.app_state.store.read_stream_page(stream, 0, false, 10).await.unwrap();
    opened.into_iter().find(|e| e.event_type == "MemberRegistered").unwrap()
}

/// The log holds envelopes, not the fields; reads open them until the key is shredded.
async fn sealed_fields_read_back_until_forgotten(app: TestApp) {
    let (id, token) = app.register_as("sealed@example.com", "Sealed Person").await;
    let stream = format!("member-{id}");
    let sql = "SELECT data FROM events WHERE stream = $1 AND event_type = 'MemberRegistered'";
    let (stored,): (sqlx::types::Json<serde_json::Value>,) =
        gather_commands::store::on_db_read!(&app.app_state.db, p =>
        sqlx::query_as(sql).bind(&stream).fetch_one(p).await)
        .unwrap();
    let sealed = gather_commands::store::RecordedEvent { data: stored.0, ..opened_registered(&app, &stream).await };
    assert!(sealed.data["email"]["sealed"]["key"].is_string(), "{}", sealed.data);
    assert!(!sealed.data.to_string().contains("Sealed Person"), "{}", sealed.data);
    assert_eq!(sealed.data["member_id"], json!(id), "ids stay in clear");
    let opened = app.app_state.store.read_stream_page(&stream, 0, false, 10).await.unwrap();
    let registered = opened.iter().find(|e| e.event_type == "MemberRegistered").unwrap();
    assert_eq!(registered.data["display_name"], json!("Sealed Person"));
    let a = app.send(app.http.delete(app.url("/v1/me")).bearer_auth(&token)).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let opened = app.app_state.store.read_stream_page(&stream, 0, false, 10).await.unwrap();
    let registered = opened.iter().find(|e| e.event_type == "MemberRegistered").unwrap();
    assert_eq!(registered.data["display_name"], json!({"forgotten": true}));
    // An envelope under a key the key store never had is an error, never "forgotten".
    let mut forged = sealed.clone();
    forged.data["email"]["sealed"]["key"] = json!(uuid::Uuid::now_v7());
    let vault = app.app_state.store.vault().unwrap();
    let err = vault.unseal(std::slice::from_mut(&mut forged)).await.unwrap_err();
    assert!(matches!(err, gather_commands::store::StoreError::UnknownKey(_)), "{err}");
}

both_profiles!(reservations_are_keyed_and_older_unkeyed_ones_still_hold);

/// New reservations are named by the keyed hash; one a store wrote before the lookup
/// key existed (named by an unkeyed hash) still holds its address, logs in, and is
/// given back when its member is forgotten.
async fn reservations_are_keyed_and_older_unkeyed_ones_still_hold(app: TestApp) {
    use gather_commands::uniqueness::{email_stream, legacy_email_stream};
    let store = app.app_state.store.clone();
    let lookup = app.app_state.lookup.clone();
    app.register("keyed@example.com").await;
    assert!(store.stream_version(&email_stream(&lookup, "keyed@example.com")).await.unwrap().is_some());
    assert!(store.stream_version(&legacy_email_stream("keyed@example.com")).await.unwrap().is_none());
    // A member of an older store: its reservation stream has the unkeyed name.
    use gather_domain::member::{Member, MemberCommand};
    use gather_domain::values::{DisplayName, Email};
    let (id, old) = (uuid::Uuid::now_v7(), "older@example.com");
    let hash = app.app_state.passwords.hash("correct horse battery".into()).await.unwrap();
    let cmd = MemberCommand::Register {
        member_id: id,
        email: Email::parse(old).unwrap(),
        password_hash: hash,
        display_name: DisplayName::parse("Older").unwrap(),
    };
    let mut legacy = gather_commands::uniqueness::reserve_email(&lookup, old, id);
    legacy.stream = legacy_email_stream(old);
    let meta = gather_commands::CommandMeta::new(gather_domain::Actor::new(id, [gather_domain::Role::Member]));
    app.app_state.commands.handle_with::<Member>(id, cmd, &meta, |_| vec![legacy.clone()]).await.unwrap();
    let login = app.login(old, "correct horse battery").await;
    assert_eq!(login.status, 200, "{:?}", login.body);
    assert_eq!(login.body["member_id"], json!(id));
    let taken = app
        .post("/v1/auth/register", None, json!({"email": old, "password": "another password!", "display_name": "New"}))
        .await;
    taken.assert_problem(409, Some("email_taken"));
    // Forgotten: the older reservation is given back, and the address registers anew.
    let token = login.body["token"].as_str().unwrap();
    let a = app.send(app.http.delete(app.url("/v1/me")).bearer_auth(token)).await;
    assert_eq!(a.status, 202, "{:?}", a.body);
    let again = app
        .post("/v1/auth/register", None, json!({"email": old, "password": "another password!", "display_name": "New"}))
        .await;
    assert_eq!(again.status, 201, "{:?}", again.body);
    assert!(store.stream_version(&email_stream(&lookup, old)).await.unwrap().is_some(), "keyed from now on");
}

both_profiles!(old_plain_text_fields_read_as_forgotten_once_recorded);

/// Events written before crypto-shredding hold plain text; `gather store
/// encrypt-personal-data` records it, and a forgotten member's then reads as forgotten.
async fn old_plain_text_fields_read_as_forgotten_once_recorded(app: TestApp) {
    use gather_commands::store::{EventStore, postgres::PostgresStore, sqlite::SqliteStore};
    use gather_domain::member::{Member, MemberCommand};
    use gather_domain::values::{ChildName, DisplayName, Email};
    let plain: std::sync::Arc<dyn EventStore> = match &app.app_state.db {
        gather_commands::Db::Postgres(p) => std::sync::Arc::new(PostgresStore::new(p.clone())),
        gather_commands::Db::Sqlite { writer, reader } => {
            std::sync::Arc::new(SqliteStore::new(writer.clone(), reader.clone()))
        }
    };
    let old = gather_commands::CommandHandler::new(plain.clone());
    let hash = app.app_state.passwords.hash("correct horse battery".into()).await.unwrap();
    let (gone, kept) = (uuid::Uuid::now_v7(), uuid::Uuid::now_v7());
    for (id, email, name) in [(gone, "Old.Gone@example.com", "Olga Gone"), (kept, "old.kept@example.com", "Kim Kept")] {
        let meta = gather_commands::CommandMeta::new(gather_domain::Actor::new(id, [gather_domain::Role::Member]));
        let register = MemberCommand::Register {
            member_id: id,
            email: Email::parse(email).unwrap(),
            password_hash: hash.clone(),
            display_name: DisplayName::parse(name).unwrap(),
        };
        old.handle::<Member>(id, register, &meta).await.unwrap();
        let child = MemberCommand::AddChild {
            child_id: uuid::Uuid::now_v7(),
            name: ChildName::parse("Quill").unwrap(),
            birth_date: chrono::NaiveDate::from_ymd_opt(2019, 1, 2).unwrap(),
        };
        let meta = gather_commands::CommandMeta::new(gather_domain::Actor::new(id, [gather_domain::Role::Member]));
        old.handle::<Member>(id, child, &meta).await.unwrap();
    }
    // Forgotten before the upgrade: the event, but no key to shred.
    let meta = gather_commands::CommandMeta::new(gather_domain::Actor::new(gone, [gather_domain::Role::Member]));
    let forgot = old.handle::<Member>(gone, MemberCommand::Forget, &meta).await.unwrap();
    let auditor = app.login(AUDITOR.0, AUDITOR.1).await.body["token"].as_str().unwrap().to_owned();
    let feed = |id: uuid::Uuid| {
        let (app, auditor) = (&app, auditor.clone());
        async move {
            let a =
                app.get(&format!("/v1/audit/events?stream=member-{id}"), Some(&auditor), Some(forgot.position)).await;
            a.body["items"].as_array().unwrap_or_else(|| panic!("{:?}", a.body)).clone()
        }
    };
    let registered = |events: &[serde_json::Value]| {
        events.iter().find(|e| e["type"] == json!("MemberRegistered")).unwrap()["data"].clone()
    };
    assert_eq!(registered(&feed(gone).await)["email"], json!("Old.Gone@example.com"), "plain text before the run");

    // A snapshot of the older shape, in clear.
    let snapshot = gather_commands::store::Snapshot {
        version: 1,
        state_version: 1,
        state: json!({"email": "Old.Gone@example.com", "display_name": "Olga Gone"}),
    };
    plain.save_snapshot(&format!("member-{gone}"), &snapshot).await.unwrap();
    let vault = app.app_state.store.vault().unwrap();
    let report = gather_api::ops::encrypt_personal_data(&app.app_state.db, plain.clone(), vault, |_| {}).await.unwrap();
    // Per member: email, name, password hash, child name and birth date.
    assert_eq!(report.plaintext_fields, 10, "{report:?}");
    assert_eq!(report.newly_recorded, 10, "{report:?}");
    assert_eq!(report.forgotten_members, 1, "{report:?}");
    assert_eq!(report.snapshots_deleted, 1, "{report:?}");
    assert!(plain.load_snapshot(&format!("member-{gone}")).await.unwrap().is_none(), "the plain-text snapshot is gone");
    let events = feed(gone).await;
    assert_eq!(registered(&events)["email"], json!({"forgotten": true}));
    assert_eq!(registered(&events)["display_name"], json!({"forgotten": true}));
    let child = events.iter().find(|e| e["type"] == json!("ChildAdded")).unwrap();
    assert_eq!(child["data"]["name"], json!({"forgotten": true}), "{child}");
    assert_eq!(
        registered(&feed(kept).await)["display_name"],
        json!("Kim Kept"),
        "a member not forgotten reads as before"
    );
    // Idempotent.
    let again = gather_api::ops::encrypt_personal_data(&app.app_state.db, plain.clone(), vault, |_| {}).await.unwrap();
    assert_eq!((again.plaintext_fields, again.newly_recorded), (10, 0), "{again:?}");
}
