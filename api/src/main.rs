//! The `gather` binary: thin; everything lives in the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gather_api::routes::audit;
use gather_api::{App, Settings, ops};
use gather_projections::rebuild::RebuildStatus;
use std::io::IsTerminal;
use std::sync::Arc;

/// Gather: an event-sourced backend for activities, bookings, chats and notifications.
///
/// Configuration comes from GATHER_* environment variables (see README.md). With none
/// set, Gather runs embedded: SQLite under ./gather-data, in-process bus, mail to files.
#[derive(Parser)]
#[command(name = "gather", version, about, long_about)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server (the default): API, projectors and workers as GATHER_ROLES says.
    Serve,
    /// Apply the database migrations of GATHER_DATABASE_URL and exit.
    Migrate,
    /// Print the domain's given-when-then spec catalogue as Markdown.
    Specs,
    /// Print the OpenAPI 3.1 document of the HTTP API (as served at /openapi.json).
    Openapi,
    /// Replay a projection from the log beside its live tables, then swap the copy in
    /// (servers keep serving the old copy until the swap); with --verify, compare the
    /// copy with the live tables instead of swapping. Progress: a bar on a terminal,
    /// a line a second otherwise.
    #[command(alias = "rebuild")]
    Replay {
        /// The projection (members, activities, invitations, …), or `all` for every one
        /// that owns tables, one after the other.
        name: String,
        /// Rebuild into shadow tables, do not swap, and compare them with the live
        /// tables at the live checkpoint; prints every difference and exits non-zero on any.
        #[arg(long)]
        verify: bool,
    },
    /// Inspect projections and decide on a projector stopped by an event it cannot apply.
    #[command(subcommand)]
    Projections(Projections),
    /// Manage members' roles (appends to the member's stream, as the system).
    #[command(subcommand)]
    Members(Members),
    /// Operate the event store itself.
    #[command(subcommand)]
    Store(Store),
    /// Read the event log as an auditor does.
    #[command(subcommand)]
    Events(Events),
}

#[derive(Subcommand)]
enum Events {
    /// Print the global log's events as JSON lines, oldest first, in the shape of
    /// `GET /v1/audit/events` (README: "Audit feed"); with --follow, keep printing new
    /// events until Ctrl-C.
    Tail {
        /// Wait for new events after the end of the log.
        #[arg(long)]
        follow: bool,
        /// Only this stream ({category}-{id}).
        #[arg(long)]
        stream: Option<String>,
        /// Only these categories (comma-separated).
        #[arg(long)]
        category: Option<String>,
        /// Only these event types (comma-separated).
        #[arg(long = "type", value_name = "TYPE")]
        event_type: Option<String>,
        /// Start after this global position (0: from the start).
        #[arg(long, default_value_t = 0)]
        after: i64,
    },
}

#[derive(Subcommand)]
enum Store {
    /// After moving a Postgres store to another cluster (a pg_dump restore, a logical
    /// replica promoted), move the store's clock past every commit_id in the log so the
    /// restored events are readable and new ones sort after them. Run it once, as the
    /// owner (GATHER_MIGRATE_DATABASE_URL if set), before the servers start; rerunning
    /// it changes nothing.
    Rebase,
    /// Events written before crypto-shredding hold personal fields in plain text. The
    /// log is never rewritten: this records each such field with its subject, so that
    /// once the member is forgotten it reads as forgotten (read side, audit feed,
    /// history), and gives members forgotten before their tombstones. Idempotent; run
    /// it once after upgrading (servers may keep running).
    EncryptPersonalData,
}

#[derive(Subcommand)]
enum Members {
    /// Grant a registered member a role: moderator, auditor or organiser (the same
    /// event the bootstrap accounts get at start-up; granting a held role does nothing).
    Grant {
        /// The member's login email (any case).
        email: String,
        /// moderator, auditor or organiser.
        role: String,
    },
    /// Take a role back from a member (revoking a role not held does nothing). Tokens
    /// issued before keep the role until they expire.
    Revoke {
        /// The member's login email (any case).
        email: String,
        /// moderator, auditor or organiser.
        role: String,
    },
}

#[derive(Subcommand)]
enum Projections {
    /// Print each projection's stored checkpoint, lag, state (live, behind, or failed
    /// with the faulted event and error) and any rebuild's progress.
    Status,
    /// Let a stopped projector try its faulted event again (after deploying a fix).
    Retry {
        /// The stopped projection.
        name: String,
    },
    /// Let a stopped projector go on after its faulted event, which is lost to it.
    Skip {
        /// The stopped projection.
        name: String,
        /// The faulted event's global position (as `gather projections status` shows it).
        #[arg(long)]
        position: i64,
    },
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr);
    if std::io::stderr().is_terminal() {
        builder.init();
    } else {
        builder.json().init();
    }
}

#[tokio::main]
async fn main() {
    if let Err(e) = run().await {
        eprintln!("gather: {e:#}");
        std::process::exit(1);
    }
}

async fn run() -> anyhow::Result<()> {
    gather_api::install_crypto();
    gather_api::passwords::tune_allocator();
    let cli = Cli::parse();
    if let Some(Command::Specs) = cli.command {
        // A closed pipe (`| head`) ends the output quietly.
        let _ = std::io::Write::write_all(&mut std::io::stdout(), gather_domain::catalogue_markdown().as_bytes());
        return Ok(());
    }
    if let Some(Command::Openapi) = cli.command {
        let doc = gather_api::app::openapi().to_pretty_json().context("could not render the document")?;
        let _ = std::io::Write::write_all(&mut std::io::stdout(), format!("{doc}\n").as_bytes());
        return Ok(());
    }
    init_tracing();
    let settings = Settings::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => App::build(settings).await?.run_until_stopped().await,
        Command::Migrate => {
            let (db, _) = gather_api::app::open_store(&settings).await?;
            db.migrate_as(settings.migrate_database_url.as_deref()).await.context("could not migrate the database")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Replay { name, verify } => replay(&settings, &name, verify).await,
        Command::Projections(what) => projections(&settings, what).await,
        Command::Members(what) => members(&settings, what).await,
        Command::Store(Store::Rebase) => rebase(&settings).await,
        Command::Store(Store::EncryptPersonalData) => encrypt_personal_data(&settings).await,
        Command::Events(what) => events(&settings, what).await,
        Command::Specs | Command::Openapi => Ok(()),
    }
}

async fn open(settings: &Settings) -> anyhow::Result<(gather_commands::Db, Arc<dyn gather_commands::EventStore>)> {
    let (db, store) = gather_api::app::open_store(settings).await?;
    db.migrate_as(settings.migrate_database_url.as_deref()).await.context("could not migrate the database")?;
    Ok((db, store))
}

async fn encrypt_personal_data(settings: &Settings) -> anyhow::Result<()> {
    let (db, sealed) = open(settings).await?;
    let (_, plain) = gather_api::app::open_plain_store(settings).await?;
    let vault = sealed.vault().context("the store has no vault")?;
    let report = ops::encrypt_personal_data(&db, plain, vault, |r| {
        tracing::info!(events = r.events, plaintext_fields = r.plaintext_fields, "reading the log");
    })
    .await?;
    println!(
        "{} events read; {} personal fields in plain text ({} newly recorded); {} forgotten members tombstoned; \
         {} plain-text snapshots deleted",
        report.events,
        report.plaintext_fields,
        report.newly_recorded,
        report.forgotten_members,
        report.snapshots_deleted
    );
    if report.forgotten_members > 0 {
        // Read models scrub a member when they apply the forget; those forgotten before
        // the upgrade were projected with older code.
        println!(
            "members were forgotten before this upgrade: rebuild the read models so their copies show them \
             forgotten too (gather replay all)"
        );
    }
    Ok(())
}

async fn events(settings: &Settings, what: Events) -> anyhow::Result<()> {
    let Events::Tail { follow, stream, category, event_type, after } = what;
    // The endpoint's parameters, checked the same way.
    let params = [("stream", stream), ("category", category), ("type", event_type)]
        .into_iter()
        .filter_map(|(k, v)| v.map(|v| (k.to_owned(), v)))
        .collect();
    let filter = audit::AuditFilter::parse(&params)?;
    // Read-only: no migration (an auditor's database role may not have the right).
    let (_, store) = gather_api::app::open_store(settings).await?;
    let mut out = std::io::BufWriter::new(std::io::stdout());
    tokio::select! {
        done = audit::tail(store, after, filter, follow, &mut out) => done,
        _ = tokio::signal::ctrl_c() => Ok(()),
    }
}

async fn rebase(settings: &Settings) -> anyhow::Result<()> {
    let url = settings.migrate_database_url.as_deref().unwrap_or(&settings.database_url);
    if url.starts_with("sqlite:") {
        anyhow::bail!("gather store rebase is for Postgres; SQLite orders its log by position alone");
    }
    let db = gather_commands::Db::connect(url).await.context("could not open the database")?;
    let gather_commands::Db::Postgres(pool) = &db else { anyhow::bail!("not a Postgres database") };
    db.migrate().await.context("could not migrate the database")?;
    let r = gather_commands::store::postgres::rebase(pool).await?;
    if r.new_offset == r.old_offset {
        println!("store clock already past every commit_id (highest {}); nothing changed", r.max_commit_id);
    } else {
        println!(
            "store clock moved: offset {} -> {} (highest commit_id in the log {}); restored events are readable",
            r.old_offset, r.new_offset, r.max_commit_id
        );
    }
    tracing::info!(
        old_offset = r.old_offset,
        new_offset = r.new_offset,
        max_commit_id = r.max_commit_id,
        "store rebased"
    );
    Ok(())
}

async fn projections(settings: &Settings, what: Projections) -> anyhow::Result<()> {
    let (db, _) = open(settings).await?;
    match what {
        Projections::Status => {
            print!("{}", ops::render_status(&ops::status(&db).await?));
            if let gather_commands::Db::Postgres(pool) = &db {
                println!("{}", render_fence(gather_commands::store::postgres::fence(pool).await?.as_ref()));
            }
        }
        Projections::Retry { name } => {
            let f = ops::retry(&db, &name).await?;
            println!("{name}: retrying {}@{} (position {})", f.stream, f.version, f.position);
        }
        Projections::Skip { name, position } => {
            let f = ops::skip(&db, &name, position).await?;
            println!("{name}: skipped {}@{} (position {}); going on after it", f.stream, f.version, f.position);
        }
    }
    Ok(())
}

async fn members(settings: &Settings, what: Members) -> anyhow::Result<()> {
    match what {
        Members::Grant { email, role } => {
            let role = ops::grantable_role(&role)?;
            let (_, store) = open(settings).await?;
            let granted = ops::grant_role(store, &gather_api::app::lookup_key(settings)?, &email, role).await?;
            if granted.appended {
                println!("granted {} to {} ({email})", role.as_str(), granted.member_id);
            } else {
                println!("{} ({email}) already holds {}", granted.member_id, role.as_str());
            }
        }
        Members::Revoke { email, role } => {
            let role = ops::grantable_role(&role)?;
            let (_, store) = open(settings).await?;
            let revoked = ops::revoke_role(store, &gather_api::app::lookup_key(settings)?, &email, role).await?;
            if revoked.appended {
                println!("revoked {} from {} ({email})", role.as_str(), revoked.member_id);
            } else {
                println!("{} ({email}) does not hold {}", revoked.member_id, role.as_str());
            }
        }
    }
    Ok(())
}

async fn replay(settings: &Settings, target: &str, verify: bool) -> anyhow::Result<()> {
    let (db, store) = open(settings).await?;
    let mut differences = Vec::new();
    for name in ops::replay_targets(target)? {
        let mut progress = Progress::new(name);
        if verify {
            let report = ops::verify_projection(&db, store.clone(), name, |s| progress.show(s)).await?;
            progress.finish();
            print!("{report}");
            if !report.identical() {
                differences.push(name);
            }
        } else {
            let done = ops::replay(&db, store.clone(), name, |s| progress.show(s)).await?;
            progress.finish();
            println!("{name}: replayed and swapped in at position {}", done.position);
        }
    }
    if differences.is_empty() {
        Ok(())
    } else {
        anyhow::bail!("the rebuilt copy differs from the live tables: {}", differences.join(", "))
    }
}

/// A replay's progress: an indicatif bar (events/s, ETA) on a terminal, otherwise one
/// plain line per report (about once a second).
struct Progress {
    name: &'static str,
    bar: Option<indicatif::ProgressBar>,
}

impl Progress {
    fn new(name: &'static str) -> Progress {
        let bar = std::io::stdout().is_terminal().then(|| {
            let bar = indicatif::ProgressBar::new(0);
            let style =
                indicatif::ProgressStyle::with_template("{prefix:>12} [{bar:40}] {pos}/{len} ({per_sec}, ETA {eta})")
                    .map(|s| s.progress_chars("=> "))
                    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar());
            bar.set_style(style);
            bar.set_prefix(name);
            bar
        });
        Progress { name, bar }
    }

    fn show(&mut self, s: &RebuildStatus) {
        match &self.bar {
            // Positions are gap-free, so positions per second are events per second.
            Some(bar) => {
                bar.set_length(s.target_position.max(0) as u64);
                bar.set_position(s.position.max(0) as u64);
            }
            None => println!(
                "{}: {:5.1}% ({} events, at position {} of {})",
                self.name,
                s.progress() * 100.0,
                s.events,
                s.position,
                s.target_position
            ),
        }
    }

    fn finish(&mut self) {
        if let Some(bar) = self.bar.take() {
            bar.finish_and_clear();
        }
    }
}

/// The line `gather projections status` prints about the xmin fence.
fn render_fence(fence: Option<&gather_commands::store::postgres::Fence>) -> String {
    match fence {
        None => "log readers: not held back (no open writing transaction in the cluster)".to_owned(),
        Some(f) => format!(
            "log readers: held back {:.1} s by pid {} ({}, database {}, {}){}",
            f.held_for.as_secs_f64(),
            f.pid,
            if f.application_name.is_empty() { "no application_name" } else { &f.application_name },
            f.database.as_deref().unwrap_or("-"),
            f.state.as_deref().unwrap_or("state hidden"),
            if f.held_for.as_secs() >= 5 {
                "; a long transaction delays every projection: end it, or set idle_in_transaction_session_timeout"
            } else {
                ""
            }
        ),
    }
}
