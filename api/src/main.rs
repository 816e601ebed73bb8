//! The `gather` binary: thin; everything lives in the library.

use anyhow::Context as _;
use clap::{Parser, Subcommand};
use gather_api::{App, Settings};
use std::io::IsTerminal;

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
    /// Rebuild a projection's read model beside the live one, then swap it in;
    /// prints progress. Servers keep serving the old copy until the swap.
    Rebuild {
        /// The projection (members, activities, invitations); see GET /v1/admin/projections.
        name: String,
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
    let cli = Cli::parse();
    if let Some(Command::Specs) = cli.command {
        print!("{}", gather_domain::catalogue_markdown());
        return Ok(());
    }
    init_tracing();
    let settings = Settings::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => App::build(settings).await?.run_until_stopped().await,
        Command::Migrate => {
            let (db, _) = gather_api::app::open_store(&settings).await?;
            db.migrate().await.context("could not migrate the database")?;
            tracing::info!("migrations applied");
            Ok(())
        }
        Command::Rebuild { name } => {
            let done = gather_api::app::rebuild(&settings, &name, |s| {
                println!(
                    "{name}: {:5.1}% ({} events, at position {} of {})",
                    s.progress() * 100.0,
                    s.events,
                    s.position,
                    s.target_position
                )
            })
            .await?;
            println!("{name}: rebuilt and swapped in at position {}", done.position);
            Ok(())
        }
        Command::Specs => Ok(()),
    }
}
