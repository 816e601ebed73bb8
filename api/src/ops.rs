//! Operator tooling behind `gather projections …`, `gather replay` and `gather members
//! grant`: every function
//! reads or writes the database only (no running server needed), so the commands work
//! from any process, and the tests call them directly.

use chrono::Utc;
use gather_commands::store::Checkpoint;
use gather_commands::uniqueness::{LookupKey, email_owner};
use gather_commands::{CommandHandler, CommandMeta, Db, EventStore};
use gather_domain::member::{Member, MemberCommand};
use gather_domain::{Actor, Role};
use gather_projections::faults::{self, Fault, FaultError};
use gather_projections::rebuild::{Rebuild, RebuildError, RebuildStatus, statuses};
use gather_projections::runtime::{lag, load_checkpoint};
use gather_projections::verify::{VerifyError, VerifyReport, verify};
use std::fmt::Write as _;
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use uuid::Uuid;

/// Why an operator command was refused or failed.
#[derive(Debug, thiserror::Error)]
pub enum OpsError {
    /// No projection has this name: check `gather projections status`.
    #[error("there is no projection named {0:?}")]
    Unknown(String),
    /// A retry or skip was refused (no fault, wrong position) or could not be written.
    #[error(transparent)]
    Fault(#[from] FaultError),
    /// A replay could not start or finish.
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    /// A verification could not finish.
    #[error(transparent)]
    Verify(#[from] VerifyError),
    /// The database failed: try again.
    #[error("database error")]
    Database(#[from] sqlx::Error),
    /// No registered member has this email: check the address.
    #[error("there is no member with the email {0:?}")]
    NoSuchMember(String),
    /// Only moderator, auditor and organiser are granted.
    #[error("cannot grant {0:?}: expected moderator, auditor or organiser")]
    NotGrantable(String),
    /// The store refused or failed the command.
    #[error(transparent)]
    Command(#[from] gather_commands::CommandError),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] gather_commands::StoreError),
}

/// A role `gather members grant` gives: moderator, auditor or organiser.
pub fn grantable_role(name: &str) -> Result<Role, OpsError> {
    match Role::parse(name.trim()) {
        Some(role @ (Role::Moderator | Role::Auditor | Role::Organiser)) => Ok(role),
        _ => Err(OpsError::NotGrantable(name.to_owned())),
    }
}

/// What `grant_role` did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Granted {
    /// The member.
    pub member_id: Uuid,
    /// False when the member held the role already (nothing was appended).
    pub appended: bool,
}

/// `gather members grant EMAIL ROLE`: appends `RoleGranted` to the member's stream as
/// the system, exactly as the bootstrap accounts are granted their role at start-up.
pub async fn grant_role(
    store: Arc<dyn EventStore>,
    lookup: &LookupKey,
    email: &str,
    role: Role,
) -> Result<Granted, OpsError> {
    as_system(store, lookup, email, MemberCommand::GrantRole { role }).await
}

/// `gather members revoke EMAIL ROLE`: appends `RoleRevoked` to the member's stream as
/// the system (`appended` is false when the member did not hold the role). Tokens issued
/// before keep their roles until they expire.
pub async fn revoke_role(
    store: Arc<dyn EventStore>,
    lookup: &LookupKey,
    email: &str,
    role: Role,
) -> Result<Granted, OpsError> {
    as_system(store, lookup, email, MemberCommand::RevokeRole { role }).await
}

/// Runs `command` as the system on the member who logs in with `email`.
async fn as_system(
    store: Arc<dyn EventStore>,
    lookup: &LookupKey,
    email: &str,
    command: MemberCommand,
) -> Result<Granted, OpsError> {
    let normalized = email.trim().to_lowercase();
    let member_id = email_owner(store.as_ref(), lookup, &normalized)
        .await?
        .ok_or_else(|| OpsError::NoSuchMember(email.trim().to_owned()))?;
    let meta = CommandMeta::new(Actor::system());
    let outcome = CommandHandler::new(store).handle::<Member>(member_id, command, &meta).await?;
    Ok(Granted { member_id, appended: !outcome.events.is_empty() })
}

/// Where a projection stands, as stored in the database.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ProjectionState {
    /// Its checkpoint is at the head of the log.
    Live,
    /// Events after its checkpoint are still to be applied.
    Behind,
    /// Stopped on an event it cannot apply, waiting for `retry` or `skip`.
    Failed(Fault),
}

/// One projection's line in `gather projections status`.
#[derive(Debug, Clone)]
pub struct ProjectionStatus {
    /// The projection.
    pub name: &'static str,
    /// Whether it owns tables (it can be replayed).
    pub rebuildable: bool,
    /// Its stored checkpoint.
    pub checkpoint: Checkpoint,
    /// Events after the checkpoint (capped at `runtime::LAG_COUNT_CAP`).
    pub lag_events: i64,
    /// How long ago the oldest of them was recorded, in ms (0 when none).
    pub lag_ms: i64,
    /// Live, behind, or failed.
    pub state: ProjectionState,
    /// A rebuild in progress (or stopped on an error).
    pub rebuilding: Option<RebuildStatus>,
}

/// The status of every projection (in `gather_projections::all()` order), read from the
/// database alone: stored checkpoints, lag, faults and rebuilds.
pub async fn status(db: &Db) -> Result<Vec<ProjectionStatus>, OpsError> {
    let rebuilds = statuses(db).await?;
    let faults = faults::faults(db).await?;
    let now = Utc::now();
    let mut all = Vec::new();
    for p in gather_projections::all() {
        let name = p.name();
        let checkpoint = load_checkpoint(db, name).await?;
        let (lag_events, oldest) = lag(db, checkpoint).await?;
        let lag_ms = oldest.map(|t| (now - t).num_milliseconds().max(0)).unwrap_or(0);
        let state = match faults.iter().find(|f| f.name == name) {
            Some(f) => ProjectionState::Failed(f.clone()),
            None if lag_events == 0 => ProjectionState::Live,
            None => ProjectionState::Behind,
        };
        all.push(ProjectionStatus {
            name,
            rebuildable: !p.tables().is_empty(),
            checkpoint,
            lag_events,
            lag_ms,
            state,
            rebuilding: rebuilds.iter().find(|r| r.name == name).cloned(),
        });
    }
    Ok(all)
}

/// The status as `gather projections status` prints it: one line per projection, then
/// an indented line for a fault or a rebuild.
pub fn render_status(all: &[ProjectionStatus]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "{:<16} {:>10} {:>10} {:>10}  state", "projection", "position", "lag", "lag_ms");
    for p in all {
        let state = match &p.state {
            ProjectionState::Live => "live".to_owned(),
            ProjectionState::Behind => "behind".to_owned(),
            ProjectionState::Failed(f) => {
                format!("failed at {}@{} (position {}): {}", f.stream, f.version, f.position, f.error)
            }
        };
        let _ = writeln!(
            out,
            "{:<16} {:>10} {:>10} {:>10}  {state}",
            p.name, p.checkpoint.position, p.lag_events, p.lag_ms
        );
        if let ProjectionState::Failed(f) = &p.state {
            let _ = writeln!(
                out,
                "  since {}; decide with: gather projections retry {} | gather projections skip {} --position {}",
                f.failed_at.to_rfc3339(),
                p.name,
                p.name,
                f.position
            );
        }
        if let Some(r) = &p.rebuilding {
            let how = match &r.error {
                Some(e) => format!("stopped: {e}"),
                None if r.stale(Utc::now()) => "stale (its process went quiet)".to_owned(),
                None => "running".to_owned(),
            };
            let _ = writeln!(
                out,
                "  rebuilding: {:.1}% ({} events, at position {} of {}), {how}",
                r.progress() * 100.0,
                r.events,
                r.position,
                r.target_position
            );
        }
    }
    out
}

fn known(name: &str) -> Result<(), OpsError> {
    if gather_projections::all().iter().any(|p| p.name() == name) {
        Ok(())
    } else {
        Err(OpsError::Unknown(name.to_owned()))
    }
}

/// `gather projections retry NAME`: the stopped projector tries its faulted event again.
pub async fn retry(db: &Db, name: &str) -> Result<Fault, OpsError> {
    known(name)?;
    Ok(faults::retry(db, name).await?)
}

/// `gather projections skip NAME --position P`: the stopped projector goes on after its
/// faulted event, which must be at `position`.
pub async fn skip(db: &Db, name: &str, position: i64) -> Result<Fault, OpsError> {
    known(name)?;
    Ok(faults::skip(db, name, position).await?)
}

/// The projections `gather replay TARGET` replays: `all` is every one that owns tables,
/// in order; otherwise the one named.
pub fn replay_targets(target: &str) -> Result<Vec<&'static str>, OpsError> {
    let all = gather_projections::all();
    if target == "all" {
        return Ok(all.iter().filter(|p| !p.tables().is_empty()).map(|p| p.name()).collect());
    }
    all.iter().find(|p| p.name() == target).map(|p| vec![p.name()]).ok_or_else(|| OpsError::Unknown(target.into()))
}

/// Replays projection `name` beside its live tables and swaps it in, calling `report`
/// with the rebuild's progress about once a second. Returns where the live view stands.
pub async fn replay(
    db: &Db,
    store: Arc<dyn EventStore>,
    name: &str,
    report: impl FnMut(&RebuildStatus),
) -> Result<Checkpoint, OpsError> {
    let job = Rebuild::claim(db, store, &gather_projections::all(), name).await?;
    Ok(watching(db, name, job.run(), report).await?)
}

/// Rebuilds projection `name` into shadow tables and compares them with the live ones
/// (nothing is swapped), calling `report` with the build's progress about once a second.
pub async fn verify_projection(
    db: &Db,
    store: Arc<dyn EventStore>,
    name: &str,
    report: impl FnMut(&RebuildStatus),
) -> Result<VerifyReport, OpsError> {
    let all = gather_projections::all();
    Ok(watching(db, name, verify(db, store, &all, name), report).await?)
}

/// Runs `work` while reporting the rebuild status of `name` about once a second.
async fn watching<T>(db: &Db, name: &str, work: impl Future<Output = T>, mut report: impl FnMut(&RebuildStatus)) -> T {
    let mut work = std::pin::pin!(work);
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    loop {
        tokio::select! {
            done = &mut work => return done,
            _ = tick.tick() => match statuses(db).await {
                Ok(all) => all.iter().filter(|s| s.name == name).for_each(&mut report),
                Err(e) => tracing::warn!(error = %e, "could not read the rebuild's progress"),
            }
        }
    }
}

/// What `gather store encrypt-personal-data` found.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct PlaintextReport {
    /// Events read.
    pub events: u64,
    /// Plain-text personal fields found (recorded in `plaintext_personal_data`).
    pub plaintext_fields: u64,
    /// Of those, newly recorded by this run.
    pub newly_recorded: u64,
    /// Forgotten members whose key (and address) now have tombstones.
    pub forgotten_members: u64,
    /// Snapshots of an older state version deleted (they held personal fields in clear).
    pub snapshots_deleted: u64,
    /// Events that did not decode (logged and skipped).
    pub undecodable: u64,
}

/// `gather store encrypt-personal-data`: the log is never rewritten, so the personal
/// fields events hold in plain text (written before crypto-shredding) are recorded
/// instead, each with its subject; once a subject is shredded its plain-text fields
/// read as forgotten (`Vault::unseal`). Members forgotten before get their tombstones
/// (the member's key, and their registered address unless it has a live key of a
/// newer owner); snapshots of older state versions (plain text) are deleted. Reads the
/// raw log (`plain`), so it can tell plain text from envelopes; idempotent; `progress`
/// is called every 10,000 events.
pub async fn encrypt_personal_data(
    db: &Db,
    plain: Arc<dyn EventStore>,
    vault: &gather_commands::store::Vault,
    mut progress: impl FnMut(&PlaintextReport),
) -> anyhow::Result<PlaintextReport> {
    use futures::TryStreamExt;
    use gather_commands::store::{LogFilter, vault as v};
    use gather_domain::DomainEvent;
    let mut report = PlaintextReport::default();
    let mut found: Vec<(Uuid, String, Uuid)> = Vec::new();
    let mut addresses: std::collections::HashMap<Uuid, String> = std::collections::HashMap::new();
    let mut forgotten: Vec<Uuid> = Vec::new();
    let upcasters = gather_commands::Upcasters::standard();
    let mut log = plain.read_log(Checkpoint::START, LogFilter::categories(&["member", "activity", "chat"]));
    while let Some(e) = log.try_next().await? {
        report.events += 1;
        if report.events.is_multiple_of(10_000) {
            progress(&report);
        }
        // Decodable whatever it holds: envelopes read as forgotten for the decode only.
        let mut masked = e.clone();
        mask_envelopes(&mut masked.data);
        let entity = e.stream.split_once('-').and_then(|(_, id)| Uuid::parse_str(id).ok()).unwrap_or_default();
        let decoded = match e.category() {
            "member" => {
                gather_commands::codec::decode::<gather_domain::member::MemberEvent>(&masked, &upcasters).map(|event| {
                    if let gather_domain::member::MemberEvent::MemberRegistered {
                        email: gather_domain::Personal::Known(email),
                        ..
                    } = &event
                    {
                        addresses.insert(entity, email.normalized());
                    }
                    if matches!(event, gather_domain::member::MemberEvent::MemberForgotten { .. }) {
                        forgotten.push(entity);
                    }
                    (event.personal_fields(), event.personal_data_keyed_by_address(), event.personal_data_subject())
                })
            }
            "activity" => gather_commands::codec::decode::<gather_domain::activity::ActivityEvent>(&masked, &upcasters)
                .map(|event| {
                    (event.personal_fields(), event.personal_data_keyed_by_address(), event.personal_data_subject())
                }),
            "chat" => {
                gather_commands::codec::decode::<gather_domain::chat::ChatEvent>(&masked, &upcasters).map(|event| {
                    (event.personal_fields(), event.personal_data_keyed_by_address(), event.personal_data_subject())
                })
            }
            _ => continue,
        };
        let (paths, by_address, subject) = match decoded {
            Ok(d) => d,
            Err(err) => {
                // Counted and named; the rest of the log is still recorded.
                tracing::warn!(stream = %e.stream, version = e.version, error = %err, "an event that does not decode is skipped");
                report.undecodable += 1;
                continue;
            }
        };
        // Paths of the current shape; an event upcast since it was written is read in the
        // stored shape, so a field an upcaster moved is not found (none does today).
        let mut data = e.data.clone();
        for path in paths {
            v::locate(&mut data, path, &mut |concrete, value| {
                if value.is_null() || v::is_sealed(value) || v::is_forgotten(value) {
                    return;
                }
                let subject = match (value.as_str(), by_address) {
                    (Some(address), true) => vault.address_subject(&address.to_lowercase()),
                    _ => subject.unwrap_or(entity),
                };
                found.push((e.event_id, concrete, subject));
            });
        }
        if found.len() >= 1_000 {
            report.plaintext_fields += found.len() as u64;
            report.newly_recorded += vault.record_plaintext(&found).await?;
            found.clear();
        }
    }
    report.plaintext_fields += found.len() as u64;
    report.newly_recorded += vault.record_plaintext(&found).await?;
    // Snapshots taken before sealing hold the state's personal fields in clear: they are
    // a cache, rebuilt from the log on the next load.
    use gather_domain::Aggregate;
    let stale = "DELETE FROM snapshots WHERE (stream LIKE 'member-%' AND state_version < $1) \
                 OR (stream LIKE 'activity-%' AND state_version < $2)";
    let (member_v, activity_v) =
        (Member::STATE_VERSION as i32, gather_domain::activity::Activity::STATE_VERSION as i32);
    report.snapshots_deleted = gather_commands::on_db!(db, p => sqlx::query(stale).bind(member_v).bind(activity_v)
        .execute(p).await.map(|r| r.rows_affected()))?;
    for member in forgotten {
        vault.shred(member).await?;
        if let Some(address) = addresses.get(&member) {
            vault.tombstone(vault.address_subject(address)).await?;
        }
        report.forgotten_members += 1;
    }
    progress(&report);
    Ok(report)
}

/// Replaces every envelope in `value` by the forgotten mark.
fn mask_envelopes(value: &mut serde_json::Value) {
    use gather_commands::store::vault as v;
    if v::is_sealed(value) {
        *value = serde_json::json!({ gather_domain::FORGOTTEN_KEY: true });
        return;
    }
    match value {
        serde_json::Value::Object(map) => map.values_mut().for_each(mask_envelopes),
        serde_json::Value::Array(items) => items.iter_mut().for_each(mask_envelopes),
        _ => {}
    }
}
