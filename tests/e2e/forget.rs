//! Forgetting a member scrubs every derived copy of their personal data: read models,
//! the search index, the outbox, sent-mail records, snapshots and idempotency answers.
//! (The event log itself still holds the plain text of events written before
//! crypto-shredding exists: issue 13, points 1–3 and 5, are not built yet; the log
//! is left out of the dump here and says so.)

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

/// The database as text, every table's rows but the event log's (and its stream index).
async fn dump(app: &TestApp) -> String {
    match &app.app_state.db {
        gather_commands::Db::Postgres(pool) => {
            let db: String = sqlx::query_scalar("SELECT current_database()").fetch_one(pool).await.unwrap();
            let out = tokio::process::Command::new("pg_dump")
                .args(["-h", "127.0.0.1", "-U", "postgres", "--data-only", "--exclude-table-data=events", &db])
                .output()
                .await
                .expect("pg_dump runs");
            assert!(out.status.success(), "pg_dump: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8_lossy(&out.stdout).into_owned()
        }
        gather_commands::Db::Sqlite { writer, .. } => {
            // A copy without the log, vacuumed, read as bytes (free pages included).
            let copy = std::env::temp_dir().join(format!("gather-forget-{}.db", uuid::Uuid::now_v7().simple()));
            sqlx::query(sqlx::AssertSqlSafe(format!("VACUUM INTO '{}'", copy.display())))
                .execute(writer)
                .await
                .unwrap();
            let opts = sqlx::sqlite::SqliteConnectOptions::new().filename(&copy);
            let mut c = <sqlx::SqliteConnection as sqlx::Connection>::connect_with(&opts).await.unwrap();
            let triggers: Vec<(String,)> =
                sqlx::query_as("SELECT name FROM sqlite_master WHERE type = 'trigger' AND tbl_name = 'events'")
                    .fetch_all(&mut c)
                    .await
                    .unwrap();
            for (t,) in triggers {
                sqlx::query(sqlx::AssertSqlSafe(format!("DROP TRIGGER \"{t}\""))).execute(&mut c).await.unwrap();
            }
            sqlx::query("DELETE FROM events").execute(&mut c).await.unwrap();
            sqlx::query("VACUUM").execute(&mut c).await.unwrap();
            drop(c);
            let bytes = std::fs::read(&copy).unwrap();
            let _ = std::fs::remove_file(&copy);
            String::from_utf8_lossy(&bytes).into_owned()
        }
    }
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
    let org = app.organiser("forget-org@example.com").await;
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
    let a = app.post(&format!("/v1/activities/{private}/invitations"), Some(&org), json!({"emails": [EMAIL]})).await;
    assert_eq!(a.status, 201, "{:?}", a.body);
    let chat = app.post("/v1/chats", Some(&token), json!({"title": "Parents", "member_ids": [org_id]})).await;
    assert_eq!(chat.status, 201, "{:?}", chat.body);
    let posted = app
        .post(&format!("/v1/chats/{}/messages", chat.body["id"].as_str().unwrap()), Some(&token), json!({"text": "hi"}))
        .await;
    // Everything is projected (attendee list, invitation, chat, search) before the forget.
    let seen = app.get(&format!("/v1/activities/{public}/attendees"), Some(&org), Some(posted.position())).await;
    assert_eq!(seen.body["attendees"][0]["name"], json!(NAME), "{:?}", seen.body);
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
    let after = dump(&app).await;
    let mut leaks = Vec::new();
    for secret in [EMAIL, NAME, CHILD] {
        for s in spellings(secret) {
            for (at, _) in after.match_indices(&s) {
                let table = after[..at].rfind("COPY ").map(|c| after[c..].split('(').next().unwrap_or("").to_owned());
                let from = after[..at].char_indices().rev().nth(120).map_or(0, |(i, _)| i);
                let to = after[at..].char_indices().nth(120).map_or(after.len(), |(i, _)| at + i);
                leaks.push(format!("{s:?} in {table:?}: …{}…", &after[from..to]));
            }
        }
    }
    assert!(leaks.is_empty(), "member {member_id}'s personal data is still in the read side:\n{}", leaks.join("\n\n"));
    // The attendee list shows the booking, forgotten.
    let seen = app.get(&format!("/v1/activities/{public}/attendees"), Some(&org), None).await;
    assert_eq!(seen.body["attendees"][0]["seats"], json!(2), "{:?}", seen.body);
    assert_ne!(seen.body["attendees"][0]["name"], json!(NAME), "{:?}", seen.body);
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
