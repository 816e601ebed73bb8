//! Dynamic SQL over both backends: statements whose shape depends on the request
//! (search filters, optional keyset bounds) bind a list of [`Arg`]s instead of a fixed
//! chain of `.bind` calls. Placeholders are `$1`, `$2`, … on both backends.

use gather_commands::db::{Db, Tx};
use gather_commands::{on_db_read, on_tx};
use sqlx::FromRow;
use sqlx::postgres::PgRow;
use sqlx::sqlite::SqliteRow;
use sqlx::types::Json;
use uuid::Uuid;

/// One bound value.
#[derive(Debug, Clone)]
pub enum Arg {
    /// A UUID (BLOB on SQLite).
    Uuid(Option<Uuid>),
    /// Text.
    Text(Option<String>),
    /// A UTC time.
    Time(Option<chrono::DateTime<chrono::Utc>>),
    /// An integer.
    Int(Option<i64>),
    /// A float.
    Float(Option<f64>),
    /// A boolean (0/1 on SQLite).
    Bool(Option<bool>),
    /// JSON (jsonb on Postgres, text on SQLite).
    Json(Option<serde_json::Value>),
}

/// Appends arguments and hands out their placeholders.
#[derive(Debug, Default, Clone)]
pub struct Args(pub Vec<Arg>);

impl Args {
    /// Adds `a` and returns its placeholder (`$n`).
    pub fn push(&mut self, a: Arg) -> String {
        self.0.push(a);
        format!("${}", self.0.len())
    }
}

macro_rules! bind_args {
    ($q:expr, $args:expr) => {{
        let mut q = $q;
        for a in $args {
            q = match a {
                Arg::Uuid(v) => q.bind(v),
                Arg::Text(v) => q.bind(v),
                Arg::Time(v) => q.bind(v),
                Arg::Int(v) => q.bind(v),
                Arg::Float(v) => q.bind(v),
                Arg::Bool(v) => q.bind(v),
                Arg::Json(v) => q.bind(v.map(Json)),
            };
        }
        q
    }};
}

/// Runs a statement inside `tx`; returns the rows it affected.
pub async fn execute(tx: &mut Tx, sql: String, args: Args) -> Result<u64, sqlx::Error> {
    on_tx!(tx, c => bind_args!(sqlx::query(sqlx::AssertSqlSafe(sql)), args.0)
        .execute(&mut **c).await.map(|r| r.rows_affected()))
}

/// Runs a query on the read pool.
pub async fn fetch_all<T>(db: &Db, sql: String, args: Args) -> Result<Vec<T>, sqlx::Error>
where
    T: Send + Unpin + for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow>,
{
    on_db_read!(db, p => bind_args!(sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql)), args.0).fetch_all(p).await)
}

/// Runs a query on the read pool; at most one row.
pub async fn fetch_optional<T>(db: &Db, sql: String, args: Args) -> Result<Option<T>, sqlx::Error>
where
    T: Send + Unpin + for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow>,
{
    on_db_read!(db, p => bind_args!(sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql)), args.0).fetch_optional(p).await)
}

/// Runs a query inside `tx`; at most one row.
pub async fn fetch_optional_tx<T>(tx: &mut Tx, sql: String, args: Args) -> Result<Option<T>, sqlx::Error>
where
    T: Send + Unpin + for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow>,
{
    on_tx!(tx, c => bind_args!(sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql)), args.0).fetch_optional(&mut **c).await)
}

/// Runs a query inside `tx`; every row.
pub async fn fetch_all_tx<T>(tx: &mut Tx, sql: String, args: Args) -> Result<Vec<T>, sqlx::Error>
where
    T: Send + Unpin + for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow>,
{
    on_tx!(tx, c => bind_args!(sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql)), args.0).fetch_all(&mut **c).await)
}
