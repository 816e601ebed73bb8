//! The `gather` binary's operator commands, run as a process against a fresh embedded
//! (SQLite) data directory: argument parsing, output and exit codes. What the commands
//! do is tested through `gather_api::ops` in the end-to-end tests.

use std::process::{Command, Output};

mod store;

/// Runs `gather args…` with its data in `dir` (and no other GATHER_* setting).
fn gather(dir: &std::path::Path, args: &[&str]) -> Output {
    gather_with(dir, &[], args)
}

/// Runs `gather args…` with its data in `dir`, only the GATHER_* settings in `env`.
fn gather_with(dir: &std::path::Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gather"));
    for (k, _) in std::env::vars().filter(|(k, _)| k.starts_with("GATHER_")) {
        cmd.env_remove(k);
    }
    cmd.envs(env.iter().copied());
    cmd.env("GATHER_DATA_DIR", dir).env("RUST_LOG", "warn").args(args).output().expect("gather runs")
}

fn text(out: &[u8]) -> String {
    String::from_utf8_lossy(out).into_owned()
}

#[test]
fn the_operator_commands_report_status_replay_verify_and_refuse_bad_decisions() {
    let dir = std::env::temp_dir().join(format!("gather-cli-{}", uuid::Uuid::now_v7().simple()));

    let status = gather(&dir, &["projections", "status"]);
    assert!(status.status.success(), "{}", text(&status.stderr));
    let printed = text(&status.stdout);
    for name in ["members", "activities", "updates", "invitations", "process_manager"] {
        let line = printed.lines().find(|l| l.starts_with(name)).unwrap_or_else(|| panic!("{name} in {printed}"));
        assert!(line.ends_with("live"), "{line}");
    }

    let skip = gather(&dir, &["projections", "skip", "members", "--position", "3"]);
    assert!(!skip.status.success());
    assert!(text(&skip.stderr).contains("projection \"members\" has no recorded fault"), "{}", text(&skip.stderr));
    let retry = gather(&dir, &["projections", "retry", "nope"]);
    assert!(!retry.status.success());
    assert!(text(&retry.stderr).contains("there is no projection named \"nope\""), "{}", text(&retry.stderr));

    let verify = gather(&dir, &["replay", "all", "--verify"]);
    assert!(verify.status.success(), "{}", text(&verify.stderr));
    let printed = text(&verify.stdout);
    for table in ["members: members", "activities: activities", "invitations: invitations"] {
        assert!(printed.contains(&format!("{table}: identical at position 0 (0 rows)")), "{table} in {printed}");
    }
    assert!(!printed.contains("updates"), "only projections that own tables: {printed}");

    // `rebuild` is kept as an alias of `replay`; stdout is not a terminal, so no bar.
    let rebuild = gather(&dir, &["rebuild", "members"]);
    assert!(rebuild.status.success(), "{}", text(&rebuild.stderr));
    assert!(
        text(&rebuild.stdout).contains("members: replayed and swapped in at position 0"),
        "{}",
        text(&rebuild.stdout)
    );
    let refused = gather(&dir, &["replay", "updates"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("cannot be rebuilt"), "{}", text(&refused.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}

/// Registers a member straight through the library (no server, no argon2) in the
/// embedded database of `dir`; returns its id.
fn register_member(dir: &std::path::Path, email: &str) -> uuid::Uuid {
    use gather_domain::member::{Member, MemberCommand};
    use gather_domain::values::{DisplayName, Email};
    let settings = gather_api::Settings::from_lookup(|k| match k {
        "GATHER_DATA_DIR" => Some(dir.display().to_string()),
        _ => None,
    })
    .expect("settings");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let (db, store) = gather_api::app::open_store(&settings).await.expect("the store opens");
        let lookup = gather_api::app::lookup_key(&settings).expect("the lookup key");
        db.migrate().await.expect("migrations");
        let id = uuid::Uuid::now_v7();
        let email = Email::parse(email).unwrap();
        let normalized = email.normalized();
        let cmd = MemberCommand::Register {
            member_id: id,
            email,
            password_hash: "$argon2id$v=19$m=19456,t=2,p=1$c2FsdHNhbHQ$aGFzaGhhc2hoYXNo".into(),
            display_name: DisplayName::parse("Cli").unwrap(),
        };
        let meta = gather_commands::CommandMeta::new(gather_domain::Actor::new(id, [gather_domain::Role::Member]));
        gather_commands::CommandHandler::new(store)
            .handle_with::<Member>(id, cmd, &meta, |_| {
                vec![gather_commands::uniqueness::reserve_email(&lookup, &normalized, id)]
            })
            .await
            .expect("registered");
        id
    })
}

/// The roles on a member's own stream, read through the library.
fn roles_of(dir: &std::path::Path, id: uuid::Uuid) -> Vec<String> {
    let settings = gather_api::Settings::from_lookup(|k| match k {
        "GATHER_DATA_DIR" => Some(dir.display().to_string()),
        _ => None,
    })
    .expect("settings");
    let runtime = tokio::runtime::Runtime::new().expect("a runtime");
    runtime.block_on(async {
        let (_, store) = gather_api::app::open_store(&settings).await.expect("the store opens");
        let member = gather_commands::CommandHandler::new(store)
            .load::<gather_domain::member::Member>(id)
            .await
            .expect("loaded")
            .state;
        member.roles.iter().map(|r| r.as_str().to_string()).collect()
    })
}

#[test]
fn members_grant_gives_a_registered_member_a_role_and_refuses_unknown_ones() {
    let dir = std::env::temp_dir().join(format!("gather-cli-{}", uuid::Uuid::now_v7().simple()));
    std::fs::create_dir_all(&dir).unwrap();
    let id = register_member(&dir, "Cli.Member@example.com");

    let grant = gather(&dir, &["members", "grant", "cli.member@example.com", "moderator"]);
    assert!(grant.status.success(), "{}", text(&grant.stderr));
    assert!(text(&grant.stdout).contains(&format!("granted moderator to {id}")), "{}", text(&grant.stdout));
    let grant = gather(&dir, &["members", "grant", "cli.member@example.com", "organiser"]);
    assert!(grant.status.success(), "{}", text(&grant.stderr));
    assert_eq!(roles_of(&dir, id), ["organiser", "moderator"]);

    // Granting it again appends nothing and still succeeds.
    let again = gather(&dir, &["members", "grant", "cli.member@example.com", "moderator"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("already"), "{}", text(&again.stdout));

    let unknown = gather(&dir, &["members", "grant", "nobody@example.com", "auditor"]);
    assert!(!unknown.status.success());
    assert!(
        text(&unknown.stderr).contains("no member with the email \"nobody@example.com\""),
        "{}",
        text(&unknown.stderr)
    );
    let bad_role = gather(&dir, &["members", "grant", "cli.member@example.com", "system"]);
    assert!(!bad_role.status.success());
    assert!(text(&bad_role.stderr).contains("moderator, auditor or organiser"), "{}", text(&bad_role.stderr));
    assert_eq!(roles_of(&dir, id), ["organiser", "moderator"], "refused grants change nothing");

    let revoke = gather(&dir, &["members", "revoke", "CLI.member@example.com", "moderator"]);
    assert!(revoke.status.success(), "{}", text(&revoke.stderr));
    assert!(text(&revoke.stdout).contains(&format!("revoked moderator from {id}")), "{}", text(&revoke.stdout));
    assert_eq!(roles_of(&dir, id), ["organiser"]);
    let again = gather(&dir, &["members", "revoke", "cli.member@example.com", "moderator"]);
    assert!(again.status.success(), "{}", text(&again.stderr));
    assert!(text(&again.stdout).contains("does not hold moderator"), "{}", text(&again.stdout));
    let member = gather(&dir, &["members", "revoke", "cli.member@example.com", "member"]);
    assert!(!member.status.success());
    assert!(text(&member.stderr).contains("moderator, auditor or organiser"), "{}", text(&member.stderr));
    assert_eq!(roles_of(&dir, id), ["organiser"]);
    let _ = std::fs::remove_dir_all(&dir);
}
