//! One handle over the two database profiles, and their migrations.

use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{PgPool, SqlitePool};
use std::str::FromStr;
use std::time::Duration;

/// The database behind the event store and the read models.
#[derive(Clone, Debug)]
pub enum Db {
    /// Production: Postgres.
    Postgres(PgPool),
    /// Embedded default: SQLite, with a single-connection writer pool and a reader pool.
    Sqlite {
        /// The only connection that writes (SQLite has one writer).
        writer: SqlitePool,
        /// Connections for reads.
        reader: SqlitePool,
    },
}

/// Errors while connecting or migrating.
#[derive(Debug, thiserror::Error)]
pub enum DbError {
    /// The URL is neither `postgres://` nor `sqlite://`; fix the configuration.
    #[error("unsupported database url (expected postgres:// or sqlite://)")]
    UnsupportedUrl,
    /// The database could not be reached or opened; check that it runs.
    #[error("could not connect to the database")]
    Connect(#[source] sqlx::Error),
    /// A migration failed; the database is left at the last good migration.
    #[error("could not run migrations")]
    Migrate(#[source] sqlx::migrate::MigrateError),
}

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite://path`), creating a SQLite file if missing.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url).map_err(DbError::Connect)?;
            let pool = PgPoolOptions::new()
                .max_connections(32)
                .acquire_timeout(Duration::from_secs(10))
                .connect_with(opts)
                .await
                .map_err(DbError::Connect)?;
            Ok(Db::Postgres(pool))
        } else if url.starts_with("sqlite:") {
            let opts = SqliteConnectOptions::from_str(url)
                .map_err(DbError::Connect)?
                .create_if_missing(true)
                .journal_mode(SqliteJournalMode::Wal)
                .synchronous(SqliteSynchronous::Normal)
                .foreign_keys(true)
                .busy_timeout(Duration::from_secs(10));
            let writer = SqlitePoolOptions::new()
                .max_connections(1)
                .connect_with(opts.clone())
                .await
                .map_err(DbError::Connect)?;
            let reader = SqlitePoolOptions::new()
                .max_connections(8)
                .connect_with(opts.read_only(false))
                .await
                .map_err(DbError::Connect)?;
            Ok(Db::Sqlite { writer, reader })
        } else {
            Err(DbError::UnsupportedUrl)
        }
    }

    /// Runs the embedded migrations of this backend.
    pub async fn migrate(&self) -> Result<(), DbError> {
        match self {
            Db::Postgres(pool) => sqlx::migrate!("../migrations/postgres").run(pool).await,
            Db::Sqlite { writer, .. } => sqlx::migrate!("../migrations/sqlite").run(writer).await,
        }
        .map_err(DbError::Migrate)
    }

    /// Whether this is the Postgres profile.
    pub fn is_postgres(&self) -> bool {
        matches!(self, Db::Postgres(_))
    }

    /// A cheap round trip, for readiness checks.
    pub async fn ping(&self) -> Result<(), sqlx::Error> {
        match self {
            Db::Postgres(p) => sqlx::query("SELECT 1").execute(p).await.map(|_| ()),
            Db::Sqlite { reader, .. } => sqlx::query("SELECT 1").execute(reader).await.map(|_| ()),
        }
    }
}

/// Runs the same sqlx expression against whichever pool `db` holds (writer pool for
/// SQLite). The expression is compiled once per backend, so it must be valid for both:
/// use `$1`-style placeholders and portable SQL.
#[macro_export]
macro_rules! on_db {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite { writer: $pool, .. } => $body,
        }
    };
}

/// Like [`on_db!`], using the SQLite reader pool (for queries).
#[macro_export]
macro_rules! on_db_read {
    ($db:expr, $pool:ident => $body:expr) => {
        match $db {
            $crate::db::Db::Postgres($pool) => $body,
            $crate::db::Db::Sqlite { reader: $pool, .. } => $body,
        }
    };
}

/// A transaction on either backend.
pub enum Tx {
    /// Postgres.
    Postgres(sqlx::Transaction<'static, sqlx::Postgres>),
    /// SQLite (on the writer connection).
    Sqlite(sqlx::Transaction<'static, sqlx::Sqlite>),
}

/// Runs the same sqlx expression on whichever transaction `tx` holds; `$c` is bound to
/// `&mut Transaction<…>`, so the executor is `&mut **$c`.
#[macro_export]
macro_rules! on_tx {
    ($tx:expr, $c:ident => $body:expr) => {
        match $tx {
            $crate::db::Tx::Postgres($c) => $body,
            $crate::db::Tx::Sqlite($c) => $body,
        }
    };
}

impl Db {
    /// Begins a transaction (on the SQLite writer).
    pub async fn begin(&self) -> Result<Tx, sqlx::Error> {
        Ok(match self {
            Db::Postgres(p) => Tx::Postgres(p.begin().await?),
            Db::Sqlite { writer, .. } => Tx::Sqlite(writer.begin().await?),
        })
    }
}

impl Tx {
    /// Commits.
    pub async fn commit(self) -> Result<(), sqlx::Error> {
        match self {
            Tx::Postgres(t) => t.commit().await,
            Tx::Sqlite(t) => t.commit().await,
        }
    }
}
