//! Operator tooling: projector faults and the retry / skip decisions, projection
//! status, and `replay --verify` (a fresh rebuild compared with the live tables), also
//! after a projector was killed again and again during a long catch-up.

use crate::harness::{Profile, TestApp, eventually, fresh_pg_database, quick_member};
use gather_api::ops::{self, OpsError, ProjectionState};
use gather_commands::codec::encode;
use gather_commands::store::postgres::PostgresStore;
use gather_commands::store::sqlite::SqliteStore;
use gather_commands::store::{AppendMeta, ExpectedVersion, NewEvent, StreamAppend};
use gather_commands::{Db, EventStore, on_db, on_db_read};
use gather_domain::member::MemberEvent;
use gather_domain::values::{ChildName, DisplayName, Email};
use gather_projections::faults::{self, FaultError};
use gather_projections::runtime::{RunState, load_checkpoint};
use gather_projections::verify::verify;
use gather_projections::{Projection, Projectors};
use serde_json::json;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

both_profiles!(
    a_bad_event_stops_only_its_projection_until_an_operator_retries_or_skips_it,
    verify_finds_a_rebuild_identical_after_normal_operation_and_reports_damage_by_hand,
);

async fn append(store: &dyn EventStore, appends: Vec<StreamAppend>) {
    store.append(&AppendMeta::new(Uuid::now_v7(), None), appends).await.expect("append");
}

async fn member_rows(app: &TestApp, id: Uuid) -> i64 {
    on_db_read!(&app.app_state.db, p => sqlx::query_scalar("SELECT count(*) FROM members WHERE member_id = $1")
        .bind(id).fetch_one(p).await)
    .unwrap()
}

async fn welcome_emails(app: &TestApp, id: Uuid) -> i64 {
    let to = format!("m{}@example.com", id.simple());
    crate::harness::mail_files_to(app, &to).iter().filter(|m| m.contains("Subject: Welcome to Gather")).count() as i64
}

async fn a_bad_event_stops_only_its_projection_until_an_operator_retries_or_skips_it(app: TestApp) {
    let state = &app.app_state;
    let (db, store) = (&state.db, state.store.as_ref());
    let (first, _) = quick_member(&app).await;
    // In one commit: a good registration, then an event this release cannot decode.
    let good_id = Uuid::now_v7();
    let registered = MemberEvent::MemberRegistered {
        member_id: good_id,
        email: (Email::parse(&format!("m{}@example.com", good_id.simple())).unwrap()).into(),
        display_name: DisplayName::parse("Before").unwrap().into(),
    };
    let bad =
        NewEvent { event_id: Uuid::now_v7(), event_type: "NoSuchEvent".into(), schema_version: 1, data: json!({}) };
    let bad_stream = format!("member-{first}");
    append(
        store,
        vec![
            StreamAppend {
                stream: format!("member-{good_id}"),
                expected: ExpectedVersion::NoStream,
                events: vec![encode(&registered).unwrap()],
            },
            StreamAppend { stream: bad_stream.clone(), expected: ExpectedVersion::Any, events: vec![bad] },
        ],
    )
    .await;
    let recorded: Vec<_> = futures::TryStreamExt::try_collect(store.read_stream(&bad_stream, 0)).await.unwrap();
    let bad_version = recorded.last().unwrap().version;

    eventually("the members projector records its fault", || async {
        faults::fault(db, "members").await.unwrap().is_some()
    })
    .await;
    let fault = faults::fault(db, "members").await.unwrap().unwrap();
    assert_eq!((fault.stream.as_str(), fault.version), (bad_stream.as_str(), bad_version), "{fault:?}");
    assert!(fault.error.contains("NoSuchEvent"), "{fault:?}");
    // The events before it were applied; the checkpoint stands just before it.
    assert_eq!(member_rows(&app, good_id).await, 1, "the event before the bad one is applied");
    let stored = load_checkpoint(db, "members").await.unwrap();
    assert!(stored < fault.checkpoint(), "{stored} before {}", fault.checkpoint());
    // Progress says so too, naming the projection, the event and the error.
    eventually("the members projector reports Failed", || async {
        matches!(state.projectors.progress()["members"].state, RunState::Failed(_))
    })
    .await;
    let RunState::Failed(message) = state.projectors.progress()["members"].state.clone() else { unreachable!() };
    for part in ["members", bad_stream.as_str(), &format!("@{bad_version}"), "NoSuchEvent"] {
        assert!(message.contains(part), "{part:?} in {message}");
    }

    // The other projectors keep running: a later member gets a welcome email, but no row.
    let (later, _) = quick_member(&app).await;
    eventually("the notifier goes on", || async { welcome_emails(&app, later).await == 1 }).await;
    assert!(!matches!(state.projectors.progress()["updates"].state, RunState::Failed(_)));
    assert_eq!(member_rows(&app, later).await, 0, "members is stopped");

    // Status, from the database alone.
    let status = ops::status(db).await.unwrap();
    let members = status.iter().find(|p| p.name == "members").unwrap();
    assert_eq!(members.state, ProjectionState::Failed(fault.clone()));
    assert!(members.lag_events >= 1, "{members:?}");
    let notifier = status.iter().find(|p| p.name == "updates").unwrap();
    assert!(!matches!(notifier.state, ProjectionState::Failed(_)), "{notifier:?}");
    let printed = ops::render_status(&status);
    let line = printed.lines().find(|l| l.starts_with("members")).unwrap();
    assert!(
        line.contains(&format!("failed at {bad_stream}@{bad_version}")) && line.contains("NoSuchEvent"),
        "{printed}"
    );
    assert!(printed.contains(&format!("gather projections skip members --position {}", fault.position)), "{printed}");

    // Retry without a fix: the same event faults again.
    ops::retry(db, "members").await.unwrap();
    eventually("the retried event faults again", || async {
        faults::fault(db, "members").await.unwrap().is_some_and(|f| f.failed_at > fault.failed_at)
    })
    .await;
    let again = faults::fault(db, "members").await.unwrap().unwrap();
    assert_eq!(again.position, fault.position);
    assert_eq!(member_rows(&app, later).await, 0);

    // Skip names the faulted event's position, or is refused.
    let refused = ops::skip(db, "members", fault.position + 1).await.unwrap_err();
    assert!(
        matches!(&refused, OpsError::Fault(FaultError::WrongPosition { faulted, .. }) if *faulted == fault.position),
        "{refused}"
    );
    assert!(refused.to_string().contains(&fault.position.to_string()), "{refused}");
    assert!(faults::fault(db, "members").await.unwrap().is_some(), "a refused skip changes nothing");
    assert!(matches!(ops::skip(db, "nope", 1).await, Err(OpsError::Unknown(_))));
    assert!(matches!(ops::retry(db, "invitations").await, Err(OpsError::Fault(FaultError::NoFault(_)))));

    ops::skip(db, "members", fault.position).await.unwrap();
    eventually("the projector goes on after the skipped event", || async { member_rows(&app, later).await == 1 }).await;
    assert!(faults::fault(db, "members").await.unwrap().is_none());
    let (after, _) = quick_member(&app).await;
    eventually("later events apply", || async { member_rows(&app, after).await == 1 }).await;
    eventually("members is live again", || async { state.projectors.progress()["members"].state == RunState::Live })
        .await;
    let decided: Vec<(String, i64)> =
        faults::decisions(db, "members").await.unwrap().into_iter().map(|d| (d.decision, d.position)).collect();
    assert_eq!(decided, [("retry".to_owned(), fault.position), ("skip".to_owned(), fault.position)]);
    let members = ops::status(db).await.unwrap().into_iter().find(|p| p.name == "members").unwrap();
    assert_eq!(members.state, ProjectionState::Live, "{members:?}");
}

/// The number of shadow tables and claim rows left.
async fn leftovers(db: &Db) -> (i64, i64) {
    let tables = if db.is_postgres() {
        "SELECT count(*) FROM pg_tables WHERE schemaname = current_schema() AND tablename LIKE '%\\_\\_rebuild'"
    } else {
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name LIKE '%\\_\\_rebuild' ESCAPE '\\'"
    };
    let tables = on_db_read!(db, p => sqlx::query_scalar(tables).fetch_one(p).await).unwrap();
    let claims =
        on_db_read!(db, p => sqlx::query_scalar("SELECT count(*) FROM projection_rebuilds").fetch_one(p).await)
            .unwrap();
    (tables, claims)
}

async fn verify_finds_a_rebuild_identical_after_normal_operation_and_reports_damage_by_hand(app: TestApp) {
    let state = &app.app_state;
    let (db, store) = (&state.db, state.store.clone());
    let mut ids = Vec::new();
    for _ in 0..6 {
        ids.push(quick_member(&app).await.0);
    }
    // Six members and the two bootstrap accounts. (Waiting on rows, not on the head: on
    // Postgres the readable head waits for every older transaction in the cluster.)
    let rows = || async {
        on_db_read!(db, p => sqlx::query_scalar::<_, i64>("SELECT count(*) FROM members").fetch_one(p).await).unwrap()
    };
    eventually("every member is projected", || async { rows().await == 8 }).await;
    for name in ops::replay_targets("all").unwrap() {
        let live = load_checkpoint(db, name).await.unwrap();
        let report = ops::verify_projection(db, store.clone(), name, |_| {}).await.unwrap();
        assert!(report.identical(), "{report}");
        assert!(report.checkpoint >= live, "compared at the live checkpoint: {report:?}");
        assert!(report.to_string().contains("identical"), "{report}");
    }
    let members = ops::verify_projection(db, store.clone(), "members", |_| {}).await.unwrap();
    assert_eq!(members.tables[0].live_rows, 8, "six members and the two bootstrap accounts: {members:?}");
    assert_eq!(leftovers(db).await, (0, 0), "the copies and claims are dropped");

    // Damage the live table by hand: one row changed, one gone.
    on_db!(db, p => sqlx::query("UPDATE members SET display_name = 'damaged' WHERE member_id = $1")
        .bind(ids[0]).execute(p).await.map(|r| r.rows_affected()))
    .unwrap();
    on_db!(db, p => sqlx::query("DELETE FROM members WHERE member_id = $1")
        .bind(ids[1]).execute(p).await.map(|r| r.rows_affected()))
    .unwrap();
    let report = ops::verify_projection(db, store.clone(), "members", |_| {}).await.unwrap();
    assert!(!report.identical(), "{report}");
    let table = &report.tables[0];
    assert_eq!((table.table.as_str(), table.live_rows, table.rebuilt_rows), ("members", 7, 8), "{report}");
    assert!(!table.buckets.is_empty() && table.buckets.len() <= 2, "{report}");
    let (live, rebuilt) = table.buckets.iter().fold((0, 0), |(l, r), b| (l + b.live_rows, r + b.rebuilt_rows));
    assert_eq!(rebuilt - live, 1, "the missing row's bucket counts one fewer: {report}");
    let printed = report.to_string();
    assert!(printed.contains("members: members: DIFFERENT") && printed.contains("bucket"), "{printed}");
    assert_eq!(leftovers(db).await, (0, 0), "the copies and claims are dropped");
    let damaged: String =
        on_db_read!(db, p => sqlx::query_scalar("SELECT display_name FROM members WHERE member_id = $1")
        .bind(ids[0]).fetch_one(p).await)
        .unwrap();
    assert_eq!(damaged, "damaged", "verify never swaps");

    // A replay repairs it; verify agrees.
    ops::replay(db, store.clone(), "members", |_| {}).await.unwrap();
    state.projectors.resync("members");
    let report = ops::verify_projection(db, store.clone(), "members", |_| {}).await.unwrap();
    assert!(report.identical(), "{report}");
    assert!(matches!(ops::replay_targets("nope"), Err(OpsError::Unknown(_))));
    assert!(matches!(ops::verify_projection(db, store.clone(), "updates", |_| {}).await, Err(OpsError::Verify(_))));
}

/// A database and store with nothing running on them.
async fn bare(profile: Profile) -> (Db, Arc<dyn EventStore>) {
    let url = match profile {
        Profile::Sqlite => {
            let path = std::env::temp_dir().join(format!("gather-kill-{}.db", Uuid::now_v7().simple()));
            format!("sqlite://{}", path.display())
        }
        Profile::Postgres => fresh_pg_database().await,
    };
    let db = Db::connect(&url).await.unwrap();
    db.migrate().await.unwrap();
    let store: Arc<dyn EventStore> = match &db {
        Db::Postgres(pool) => Arc::new(PostgresStore::new(pool.clone())),
        Db::Sqlite { writer, reader } => Arc::new(SqliteStore::new(writer.clone(), reader.clone())),
    };
    (db, store)
}

/// 2,000 members with 10 events each: registration, renames, children added and removed.
async fn twenty_thousand_member_events(store: &dyn EventStore) {
    for chunk in 0..20 {
        let mut appends = Vec::new();
        for i in 0..100 {
            let id = Uuid::now_v7();
            let name = |n: &str| DisplayName::parse(&format!("{n} {chunk}-{i}")).unwrap();
            let child = |n: &str| (Uuid::now_v7(), ChildName::parse(n).unwrap());
            let (a, b, c) = (child("Ann"), child("Bob"), child("Cy"));
            let birth = chrono::NaiveDate::from_ymd_opt(2020, 1 + (i % 12), 1 + (chunk % 28)).unwrap();
            let events = [
                MemberEvent::MemberRegistered {
                    member_id: id,
                    email: (Email::parse(&format!("k{}@example.com", id.simple())).unwrap()).into(),
                    display_name: name("First").into(),
                },
                MemberEvent::ProfileUpdated { display_name: name("Second").into() },
                MemberEvent::ChildAdded { child_id: a.0, name: a.1.into(), birth_date: birth.into() },
                MemberEvent::ProfileUpdated { display_name: name("Third").into() },
                MemberEvent::ChildAdded { child_id: b.0, name: b.1.into(), birth_date: birth.into() },
                MemberEvent::ChildRemoved { child_id: a.0 },
                MemberEvent::ProfileUpdated { display_name: name("Fourth").into() },
                MemberEvent::ChildAdded { child_id: c.0, name: c.1.into(), birth_date: birth.into() },
                MemberEvent::ProfileUpdated { display_name: name("Fifth").into() },
                MemberEvent::ProfileUpdated { display_name: name("Last").into() },
            ];
            let events = events.iter().map(|e| encode(e).unwrap()).collect();
            appends.push(StreamAppend { stream: format!("member-{id}"), expected: ExpectedVersion::NoStream, events });
        }
        append(store, appends).await;
    }
}

/// A small, seeded xorshift: the test prints its seed, so a failure can be replayed.
struct Rng(u64);

impl Rng {
    fn below(&mut self, n: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % n
    }
}

async fn a_projector_killed_at_random_points_of_a_catch_up_ends_identical_to_a_clean_rebuild(profile: Profile) {
    let (db, store) = bare(profile).await;
    twenty_thousand_member_events(store.as_ref()).await;
    let head = store.head().await.unwrap();
    let seed = std::env::var("GATHER_TEST_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos() as u64 | 1
    });
    eprintln!("seed {seed} (set GATHER_TEST_SEED to replay)");
    let mut rng = Rng(seed);
    let (_stop, shutdown) = tokio::sync::watch::channel(false);
    let members: Vec<Arc<dyn Projection>> = vec![Arc::new(gather_projections::members::MembersProjection)];
    let mut killed_behind = 0;
    for _ in 0..20 {
        let before = load_checkpoint(&db, "members").await.unwrap();
        let projectors = Projectors::start(db.clone(), store.clone(), members.clone(), shutdown.clone()).await.unwrap();
        // Let it commit at least one batch (so the kills spread over the whole catch-up),
        // then kill it at a random moment, most likely inside a batch.
        for _ in 0..2_000 {
            if projectors.checkpoint() > before || projectors.checkpoint() >= head {
                break;
            }
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
        tokio::time::sleep(Duration::from_millis(rng.below(60))).await;
        projectors.abort();
        tokio::time::sleep(Duration::from_millis(5)).await;
        if load_checkpoint(&db, "members").await.unwrap() < head {
            killed_behind += 1;
        }
    }
    assert!(killed_behind >= 15, "most kills happened during the catch-up ({killed_behind} of 20)");
    let projectors = Projectors::start(db.clone(), store.clone(), members.clone(), shutdown.clone()).await.unwrap();
    assert!(projectors.wait_for(head, Duration::from_secs(120)).await, "the last projector catches up");
    let count: i64 =
        on_db_read!(&db, p => sqlx::query_scalar("SELECT count(*) FROM members").fetch_one(p).await).unwrap();
    assert_eq!(count, 2_000);
    let report = verify(&db, store.clone(), &members, "members").await.unwrap();
    assert_eq!(report.checkpoint, head, "{report:?}");
    assert!(report.identical(), "{report}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_at_20_random_points_of_a_20000_event_catch_up_ends_identical_to_a_clean_rebuild_on_sqlite()
{
    a_projector_killed_at_random_points_of_a_catch_up_ends_identical_to_a_clean_rebuild(Profile::Sqlite).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_projector_killed_at_20_random_points_of_a_20000_event_catch_up_ends_identical_to_a_clean_rebuild_on_postgres()
 {
    a_projector_killed_at_random_points_of_a_catch_up_ends_identical_to_a_clean_rebuild(Profile::Postgres).await;
}
