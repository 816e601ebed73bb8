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
    for name in ["members", "activities", "notifier", "invitations", "process_manager"] {
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
    assert!(!printed.contains("notifier"), "only projections that own tables: {printed}");

    // `rebuild` is kept as an alias of `replay`; stdout is not a terminal, so no bar.
    let rebuild = gather(&dir, &["rebuild", "members"]);
    assert!(rebuild.status.success(), "{}", text(&rebuild.stderr));
    assert!(
        text(&rebuild.stdout).contains("members: replayed and swapped in at position 0"),
        "{}",
        text(&rebuild.stdout)
    );
    let refused = gather(&dir, &["replay", "notifier"]);
    assert!(!refused.status.success());
    assert!(text(&refused.stderr).contains("cannot be rebuilt"), "{}", text(&refused.stderr));
    let _ = std::fs::remove_dir_all(&dir);
}
