//! `gather migrate` with a separate owner role, `gather store rebase` after a move, and
//! the xmin fence in `gather projections status`, against a fresh Postgres database.

use crate::{gather_with, text};
use std::process::Command;

fn pg_base() -> String {
    std::env::var("GATHER_TEST_PG").unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432".into())
}

fn psql(url: &str, sql: &str) -> String {
    let out = Command::new("psql").args([url, "-v", "ON_ERROR_STOP=1", "-Atqc", sql]).output().expect("psql runs");
    assert!(out.status.success(), "{sql}: {}", text(&out.stderr));
    text(&out.stdout).trim().to_owned()
}

/// A fresh database migrated by `gather migrate`, with the settings that reach it.
fn migrated(dir: &std::path::Path) -> String {
    let url = fresh_database();
    let env = [("GATHER_DATABASE_URL", url.as_str()), SECRET, LOOKUP, KEK];
    let migrate = gather_with(dir, &env, &["migrate"]);
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
    url
}

/// Waits until `n` events are readable by log readers (other tests' transactions end).
fn wait_readable(url: &str, n: &str, what: &str) {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while psql(url, "SELECT count(*) FROM events WHERE commit_id < gather_readable_below()") != n {
        assert!(std::time::Instant::now() < deadline, "{what}");
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
}

fn fresh_database() -> String {
    let name = format!("gather_it_{}", uuid::Uuid::new_v4().simple());
    psql(&format!("{}/postgres", pg_base()), &format!("CREATE DATABASE {name}"));
    format!("{}/{name}", pg_base())
}

const SECRET: (&str, &str) = ("GATHER_JWT_SECRET", "a-test-secret-of-at-least-32-bytes!!");
const LOOKUP: (&str, &str) = ("GATHER_LOOKUP_KEY", "a-test-lookup-key-of-at-least-32-bytes");
const KEK: (&str, &str) = ("GATHER_KEK", "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");

#[test]
fn store_rebase_moves_the_clock_once_and_status_names_the_fence() {
    let dir = std::env::temp_dir().join(format!("gather-cli-{}", uuid::Uuid::now_v7().simple()));
    let sqlite = gather_with(&dir, &[], &["store", "rebase"]);
    assert!(!sqlite.status.success());
    assert!(text(&sqlite.stderr).contains("is for Postgres"), "{}", text(&sqlite.stderr));

    let url = migrated(&dir);
    let env = [("GATHER_DATABASE_URL", url.as_str()), SECRET, LOOKUP, KEK];
    // A restored event from a cluster whose transaction ids were far higher.
    psql(
        &url,
        "SET session_replication_role = replica; \
         INSERT INTO events (commit_id, stream, category, version, event_id, event_type, schema_version, data, \
         command_id, correlation_id) VALUES (900000000, 'moved-1', 'moved', 0, gen_random_uuid(), 'E', 1, '{}', \
         gen_random_uuid(), gen_random_uuid())",
    );
    assert_eq!(psql(&url, "SELECT count(*) FROM events WHERE commit_id < gather_readable_below()"), "0");

    let rebase = gather_with(&dir, &env, &["store", "rebase"]);
    assert!(rebase.status.success(), "{}", text(&rebase.stderr));
    assert!(text(&rebase.stdout).contains("store clock moved"), "{}", text(&rebase.stdout));
    // Readable once every transaction of the cluster older than the rebase has ended
    // (other tests run beside this one).
    wait_readable(&url, "1", "the restored event never became readable");
    assert_eq!(psql(&url, "SELECT gather_commit_id() > 900000000"), "t");
    let again = gather_with(&dir, &env, &["store", "rebase"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("nothing changed"), "{}", text(&again.stdout));

    let status = gather_with(&dir, &env, &["projections", "status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    assert!(text(&status.stdout).contains("log readers:"), "{}", text(&status.stdout));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn migrate_with_an_owner_role_leaves_the_runtime_role_append_only() {
    let dir = std::env::temp_dir().join(format!("gather-cli-{}", uuid::Uuid::now_v7().simple()));
    psql(
        &format!("{}/postgres", pg_base()),
        "DO $$ BEGIN CREATE ROLE gather_it_runtime LOGIN; \
         EXCEPTION WHEN duplicate_object OR unique_violation THEN NULL; END $$",
    );
    let owner = fresh_database();
    let runtime = owner.replacen("://postgres@", "://gather_it_runtime@", 1);
    let env = [
        ("GATHER_DATABASE_URL", runtime.as_str()),
        ("GATHER_MIGRATE_DATABASE_URL", owner.as_str()),
        SECRET,
        LOOKUP,
        KEK,
    ];
    let migrate = gather_with(&dir, &env, &["migrate"]);
    assert!(migrate.status.success(), "{}", text(&migrate.stderr));
    let refused = Command::new("psql")
        .args([runtime.as_str(), "-v", "ON_ERROR_STOP=1", "-Atqc", "DELETE FROM events"])
        .output()
        .expect("psql runs");
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("permission denied"), "{}", text(&refused.stderr));
    assert_eq!(psql(&owner, "SELECT tableowner FROM pg_tables WHERE tablename = 'events'"), "postgres");
    assert_eq!(psql(&owner, "SELECT tableowner FROM pg_tables WHERE tablename = 'activities'"), "gather_it_runtime");
    let _ = std::fs::remove_dir_all(&dir);
}

/// `gather store encrypt-personal-data` records an older store's plain-text personal
/// fields (on Postgres), is idempotent, and refuses to run without the KEK in production.
#[test]
fn encrypt_personal_data_records_plain_text_fields_once() {
    let dir = std::env::temp_dir().join(format!("gather-cli-{}", uuid::Uuid::now_v7().simple()));
    let url = migrated(&dir);
    let env = [("GATHER_DATABASE_URL", url.as_str()), SECRET, LOOKUP, KEK];
    // A member registered by an older Gather: its fields in clear.
    psql(
        &url,
        "INSERT INTO events (stream, category, version, event_id, event_type, schema_version, data, command_id, \
         correlation_id) VALUES ('member-01a2272f-0000-7000-8000-000000000001', 'member', 0, gen_random_uuid(), \
         'MemberRegistered', 1, '{\"member_id\": \"01a2272f-0000-7000-8000-000000000001\", \
         \"email\": \"old@example.com\", \"display_name\": \"Old Timer\"}', gen_random_uuid(), gen_random_uuid())",
    );
    wait_readable(&url, "1", "the event never became readable");
    let run = gather_with(&dir, &env, &["store", "encrypt-personal-data"]);
    assert!(run.status.success(), "{}", text(&run.stderr));
    let out = text(&run.stdout);
    assert!(out.contains("2 personal fields in plain text (2 newly recorded)"), "{out}");
    assert_eq!(psql(&url, "SELECT count(*) FROM plaintext_personal_data"), "2");
    let again = gather_with(&dir, &env, &["store", "encrypt-personal-data"]);
    assert!(text(&again.stdout).contains("(0 newly recorded)"), "{}", text(&again.stdout));
    let no_kek = gather_with(&dir, &env[..3], &["store", "encrypt-personal-data"]);
    assert!(!no_kek.status.success());
    assert!(text(&no_kek.stderr).contains("GATHER_KEK"), "{}", text(&no_kek.stderr));
}
