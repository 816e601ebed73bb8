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

/// Whether a read failed because a rebuild swapped the tables it was reading (Postgres:
/// a query that queued behind the swap's lock finds the old table gone, or a join that
/// holds one table while the swap holds the other is chosen as a deadlock victim). Such
/// a read is simply run again: the new tables are in place by then.
pub fn swapped_under(e: &sqlx::Error) -> bool {
    match e {
        sqlx::Error::Database(d) => {
            let code = d.code();
            code.as_deref() == Some("42P01")
                || code.as_deref() == Some("40P01")
                // SQLite: SQLITE_SCHEMA (the FTS5 table was swapped while a reader opened it).
                || code.as_deref() == Some("17")
                || (code.as_deref() == Some("XX000") && d.message().contains("could not open relation"))
        }
        _ => false,
    }
}

/// How often a read is run again after a swap under it.
const SWAP_RETRIES: usize = 3;

/// Runs a query on the read pool.
pub async fn fetch_all<T>(db: &Db, sql: String, args: Args) -> Result<Vec<T>, sqlx::Error>
where
    T: Send + Unpin + for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow>,
{
    let mut tries = 0;
    loop {
        let a = args.0.clone();
        match on_db_read!(db, p => bind_args!(sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql.clone())), a).fetch_all(p).await)
        {
            Err(e) if swapped_under(&e) && tries < SWAP_RETRIES => tries += 1,
            other => return other,
        }
    }
}

/// Runs a query on the read pool; at most one row.
pub async fn fetch_optional<T>(db: &Db, sql: String, args: Args) -> Result<Option<T>, sqlx::Error>
where
    T: Send + Unpin + for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow>,
{
    let mut tries = 0;
    loop {
        let a = args.0.clone();
        match on_db_read!(db, p => bind_args!(sqlx::query_as::<_, T>(sqlx::AssertSqlSafe(sql.clone())), a).fetch_optional(p).await)
        {
            Err(e) if swapped_under(&e) && tries < SWAP_RETRIES => tries += 1,
            other => return other,
        }
    }
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

/// The most bound values one statement carries (SQLite allows 32,766, Postgres 65,535).
const MAX_ARGS: usize = 30_000;

/// Writes `rows` (each a value per column of `columns`) into `table` with one multi-row
/// `INSERT … ON CONFLICT (key) DO UPDATE` per chunk: a batch's changed rows in a few
/// statements instead of one statement per event.
pub async fn upsert(
    tx: &mut Tx,
    table: &str,
    key: &[&str],
    columns: &[&str],
    rows: Vec<Vec<Arg>>,
) -> Result<(), sqlx::Error> {
    if rows.is_empty() {
        return Ok(());
    }
    let per = (MAX_ARGS / columns.len()).max(1);
    let updates: Vec<String> =
        columns.iter().filter(|c| !key.contains(c)).map(|c| format!("{c} = excluded.{c}")).collect();
    let mut rows = rows.into_iter().peekable();
    while rows.peek().is_some() {
        let mut args = Args::default();
        let mut tuples = Vec::new();
        for row in rows.by_ref().take(per) {
            let marks: Vec<String> = row.into_iter().map(|a| args.push(a)).collect();
            tuples.push(format!("({})", marks.join(", ")));
        }
        let sql = format!(
            "INSERT INTO {table} ({}) VALUES {} ON CONFLICT ({}) DO UPDATE SET {}",
            columns.join(", "),
            tuples.join(", "),
            key.join(", "),
            updates.join(", ")
        );
        execute(tx, sql, args).await?;
    }
    Ok(())
}

/// Reads the rows of `table` whose `key` column is one of `ids` (chunked), inside `tx`.
pub async fn rows_by_id<T>(tx: &mut Tx, select: &str, key: &str, ids: &[uuid::Uuid]) -> Result<Vec<T>, sqlx::Error>
where
    T: Send + Unpin + for<'r> FromRow<'r, PgRow> + for<'r> FromRow<'r, SqliteRow>,
{
    let mut out = Vec::new();
    for chunk in ids.chunks(MAX_ARGS.min(5_000)) {
        let mut args = Args::default();
        let marks: Vec<String> = chunk.iter().map(|id| args.push(Arg::Uuid(Some(*id)))).collect();
        out.extend(fetch_all_tx::<T>(tx, format!("{select} WHERE {key} IN ({})", marks.join(", ")), args).await?);
    }
    Ok(out)
}
