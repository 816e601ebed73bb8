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
    /// Handing the runtime role its privileges failed (the migration role must own the
    /// tables and be a member of the runtime role, or be a superuser).
    #[error("could not grant the runtime role its privileges")]
    Grant(#[source] sqlx::Error),
}

/// How long one of the store's connections may sit idle inside a transaction: an idle
/// open transaction holds back every reader of the log (the xmin fence).
pub const IDLE_IN_TRANSACTION_TIMEOUT: &str = "30s";

/// The tables that make up the log: the runtime role may only read and append them.
const LOG_TABLES: &[&str] = &["events", "command_positions"];
/// Tables only the migration role changes.
const OWNER_TABLES: &[&str] = &["events", "command_positions", "store_clock", "_sqlx_migrations"];

impl Db {
    /// Connects to `url` (`postgres://…` or `sqlite://path`), creating a SQLite file if missing.
    pub async fn connect(url: &str) -> Result<Db, DbError> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            let opts = PgConnectOptions::from_str(url)
                .map_err(DbError::Connect)?
                .options([("idle_in_transaction_session_timeout", IDLE_IN_TRANSACTION_TIMEOUT)]);
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
                .busy_timeout(Duration::from_secs(10))
                // What is deleted or overwritten (a forgotten member's rows, a shredded
                // key) is zeroed in the file rather than left in free space, and the
                // write-ahead log is truncated when it restarts, so its old frames go.
                .pragma("secure_delete", "ON")
                .pragma("journal_size_limit", "0");
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

    /// Runs the migrations as the owner role at `owner_url` (Postgres), then gives this
    /// handle's role (the runtime role) what it needs and no more: SELECT and INSERT on
    /// the log, ownership of the read-side tables (rebuilds swap them), CREATE in the
    /// schema for shadow tables. With no owner URL, or the same role, or SQLite, it is
    /// [`Db::migrate`].
    pub async fn migrate_as(&self, owner_url: Option<&str>) -> Result<(), DbError> {
        let (Db::Postgres(runtime), Some(owner_url)) = (self, owner_url) else {
            return self.migrate().await;
        };
        let owner = Db::connect(owner_url).await?;
        let Db::Postgres(owner_pool) = &owner else { return Err(DbError::UnsupportedUrl) };
        owner.migrate().await?;
        let role: String =
            sqlx::query_scalar("SELECT current_user::text").fetch_one(runtime).await.map_err(DbError::Connect)?;
        let owner_role: String =
            sqlx::query_scalar("SELECT current_user::text").fetch_one(owner_pool).await.map_err(DbError::Connect)?;
        if role != owner_role {
            grant_runtime(owner_pool, &role).await.map_err(DbError::Grant)?;
        }
        owner_pool.close().await;
        Ok(())
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

/// Gives `role` the runtime privileges (see [`Db::migrate_as`]); idempotent, run after
/// every migration so that new tables are covered.
async fn grant_runtime(owner: &PgPool, role: &str) -> Result<(), sqlx::Error> {
    let quote = |name: &str| format!("\"{}\"", name.replace('"', "\"\""));
    let runtime = role;
    let role = quote(role);
    let mut tx = owner.begin().await?;
    // Ownership changes only where needed: ALTER TABLE … OWNER locks the table, and
    // every process runs this at start-up beside processes already serving.
    let tables: Vec<(String, String)> = sqlx::query_as(
        "SELECT tablename::text, tableowner::text FROM pg_tables WHERE schemaname = current_schema() \
         ORDER BY tablename",
    )
    .fetch_all(&mut *tx)
    .await?;
    let me: String = sqlx::query_scalar("SELECT current_user::text").fetch_one(&mut *tx).await?;
    let mut statements = vec![format!("GRANT USAGE, CREATE ON SCHEMA public TO {role}")];
    for (t, owner) in &tables {
        let table = quote(t);
        if OWNER_TABLES.contains(&t.as_str()) {
            if *owner != me {
                statements.push(format!("ALTER TABLE {table} OWNER TO current_user"));
            }
            statements.push(format!("REVOKE ALL ON {table} FROM {role}"));
            let grant = if LOG_TABLES.contains(&t.as_str()) { "SELECT, INSERT" } else { "SELECT" };
            statements.push(format!("GRANT {grant} ON {table} TO {role}"));
        } else if *owner != runtime {
            statements.push(format!("ALTER TABLE {table} OWNER TO {role}"));
        }
    }
    statements.push(format!("GRANT USAGE ON SEQUENCE events_position_seq TO {role}"));
    statements.push("REVOKE ALL ON FUNCTION gather_store_rebase() FROM PUBLIC".into());
    for s in statements {
        sqlx::query(sqlx::AssertSqlSafe(s)).execute(&mut *tx).await?;
    }
    tx.commit().await
}
