//! Postgres: the log is append-only by privilege, not only by trigger. Migrations run
//! as an owner role; the runtime role can read and append the log and nothing more.

use crate::support::pg_base;
use gather_store::Db;
use gather_store::postgres::PostgresStore;
use gather_store::{AppendMeta, EventStore, ExpectedVersion, NewEvent, StreamAppend};
use serde_json::json;
use sqlx::{Connection, PgConnection};
use uuid::Uuid;

const RUNTIME: &str = "gather_it_runtime";

/// A new database, migrated by the owner (the superuser of the test cluster) for the
/// runtime role: (runtime Db, runtime URL).
async fn split_roles() -> (Db, String) {
    let mut admin = PgConnection::connect(&format!("{}/postgres", pg_base())).await.unwrap();
    // Roles are cluster-wide and tests run side by side: create it once, tolerate races.
    sqlx::query(sqlx::AssertSqlSafe(format!(
        "DO $$ BEGIN CREATE ROLE {RUNTIME} LOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$"
    )))
    .execute(&mut admin)
    .await
    .unwrap();
    let name = format!("gather_it_{}", Uuid::new_v4().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut admin).await.unwrap();
    let owner_url = format!("{}/{name}", pg_base());
    let runtime_url = owner_url.replacen("://postgres@", &format!("://{RUNTIME}@"), 1);
    assert_ne!(owner_url, runtime_url, "GATHER_TEST_PG must name the postgres user");
    let db = Db::connect(&runtime_url).await.unwrap();
    db.migrate_as(Some(&owner_url)).await.unwrap();
    (db, runtime_url)
}

fn code(r: Result<sqlx::postgres::PgQueryResult, sqlx::Error>) -> String {
    match r {
        Ok(done) => panic!("accepted ({} rows)", done.rows_affected()),
        Err(sqlx::Error::Database(e)) => e.code().unwrap_or_default().into_owned(),
        Err(e) => panic!("not a database error: {e}"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_runtime_role_appends_and_reads_but_cannot_rewrite_the_log() {
    let (db, runtime_url) = split_roles().await;
    let Db::Postgres(pool) = &db else { unreachable!() };
    let store = PostgresStore::new(pool.clone());
    let stream = format!("priv-{}", Uuid::now_v7());
    let e = NewEvent { event_id: Uuid::now_v7(), event_type: "E".into(), schema_version: 1, data: json!({}) };
    let r = store
        .append(
            &AppendMeta::new(Uuid::now_v7(), None),
            vec![StreamAppend { stream: stream.clone(), expected: ExpectedVersion::NoStream, events: vec![e] }],
        )
        .await
        .unwrap();
    assert_eq!(r.streams[0].version, 0);
    assert_eq!(store.stream_version(&stream).await.unwrap(), Some(0));

    let mut rt = PgConnection::connect(&runtime_url).await.unwrap();
    for (what, sql) in [
        ("UPDATE", "UPDATE events SET data = '{}'"),
        ("DELETE", "DELETE FROM events"),
        ("TRUNCATE", "TRUNCATE events"),
        ("disable the triggers", "ALTER TABLE events DISABLE TRIGGER ALL"),
        ("drop the trigger", "DROP TRIGGER events_no_update ON events"),
        ("replica mode", "SET session_replication_role = replica"),
        ("rewrite command ids", "DELETE FROM command_positions"),
        ("rebase", "SELECT gather_store_rebase()"),
        ("move the clock", "UPDATE store_clock SET \"offset\" = 0"),
    ] {
        assert_eq!(
            code(sqlx::query(sqlx::AssertSqlSafe(sql)).execute(&mut rt).await),
            "42501",
            "{what} was not refused"
        );
    }
    // An explicit commit_id is refused even where INSERT is allowed.
    let explicit = sqlx::query(
        "INSERT INTO events (commit_id, stream, category, version, event_id, event_type, schema_version, data, \
         command_id, correlation_id) VALUES (1, 'x-1', 'x', 0, gen_random_uuid(), 'E', 1, '{}', gen_random_uuid(), \
         gen_random_uuid())",
    )
    .execute(&mut rt)
    .await;
    assert_eq!(code(explicit), "GA002");
    let count: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(&mut rt).await.unwrap();
    assert_eq!(count, 1, "the log is unchanged");

    // The read side stays the runtime's: a rebuild can create a shadow table and swap it.
    sqlx::query("CREATE TABLE activities_shadow (LIKE activities INCLUDING ALL)").execute(&mut rt).await.unwrap();
    sqlx::query("ALTER TABLE activities RENAME TO activities_old").execute(&mut rt).await.unwrap();
    sqlx::query("ALTER TABLE activities_shadow RENAME TO activities").execute(&mut rt).await.unwrap();
    sqlx::query("DROP TABLE activities_old").execute(&mut rt).await.unwrap();

    // Migrating again (a restart) keeps every privilege as it is.
    let owner_url = runtime_url.replacen(&format!("://{RUNTIME}@"), "://postgres@", 1);
    db.migrate_as(Some(&owner_url)).await.unwrap();
    assert_eq!(code(sqlx::query("DELETE FROM events").execute(&mut rt).await), "42501");
}
