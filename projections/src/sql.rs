//! Dynamic SQL over both backends: statements whose shape depends on the request
//! (search filters, optional keyset bounds) bind a list of [`Arg`]s instead of a fixed
//! chain of `.bind` calls. Placeholders are `$1`, `$2`, … on both backends.

use gather_store::db::{Db, Tx};
use gather_store::{on_db_read, on_tx};
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

/// Writes `rows` (each a value per column of `columns`, all rows with the same kinds of
/// values) into `table`, inserting or updating by `key`: a batch's changed rows in one
/// statement instead of one per event. On Postgres the rows travel as one array per
/// column (`INSERT … SELECT * FROM UNNEST(…)`), so the statement text is the same for
/// any number of rows and stays prepared; on SQLite as multi-row `VALUES` chunks.
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
    let updates: Vec<String> =
        columns.iter().filter(|c| !key.contains(c)).map(|c| format!("{c} = excluded.{c}")).collect();
    let conflict = format!("ON CONFLICT ({}) DO UPDATE SET {}", key.join(", "), updates.join(", "));
    match tx {
        Tx::Postgres(c) => {
            let mut cols: Vec<Vec<Arg>> = (0..columns.len()).map(|_| Vec::with_capacity(rows.len())).collect();
            for row in rows {
                for (i, v) in row.into_iter().enumerate() {
                    cols[i].push(v);
                }
            }
            let mut q_types = Vec::new();
            let mut arrays = Vec::new();
            for (i, col) in cols.into_iter().enumerate() {
                let (ty, array) = PgArray::of(col);
                q_types.push(format!("${}::{ty}[]", i + 1));
                arrays.push(array);
            }
            let sql = format!(
                "INSERT INTO {table} ({}) SELECT * FROM UNNEST({}) {conflict}",
                columns.join(", "),
                q_types.join(", ")
            );
            let mut q = sqlx::query(sqlx::AssertSqlSafe(sql));
            for a in arrays {
                q = match a {
                    PgArray::Uuid(v) => q.bind(v),
                    PgArray::Text(v) => q.bind(v),
                    PgArray::Time(v) => q.bind(v),
                    PgArray::Int(v) => q.bind(v),
                    PgArray::Float(v) => q.bind(v),
                    PgArray::Bool(v) => q.bind(v),
                    PgArray::Json(v) => q.bind(v),
                };
            }
            q.execute(&mut **c).await?;
        }
        Tx::Sqlite(_) => {
            let per = (MAX_ARGS / columns.len()).max(1);
            let mut rows = rows.into_iter().peekable();
            while rows.peek().is_some() {
                let mut args = Args::default();
                let mut tuples = Vec::new();
                for row in rows.by_ref().take(per) {
                    let marks: Vec<String> = row.into_iter().map(|a| args.push(a)).collect();
                    tuples.push(format!("({})", marks.join(", ")));
                }
                let sql =
                    format!("INSERT INTO {table} ({}) VALUES {} {conflict}", columns.join(", "), tuples.join(", "));
                execute(tx, sql, args).await?;
            }
        }
    }
    Ok(())
}

/// One column of rows as a Postgres array.
enum PgArray {
    Uuid(Vec<Option<Uuid>>),
    Text(Vec<Option<String>>),
    Time(Vec<Option<chrono::DateTime<chrono::Utc>>>),
    Int(Vec<Option<i64>>),
    Float(Vec<Option<f64>>),
    Bool(Vec<Option<bool>>),
    Json(Vec<Option<Json<serde_json::Value>>>),
}

impl PgArray {
    /// The column's values as one array, with its element type (from the first value).
    fn of(col: Vec<Arg>) -> (&'static str, PgArray) {
        match col.first() {
            Some(Arg::Uuid(_)) | None => {
                ("uuid", PgArray::Uuid(col.into_iter().map(|a| if let Arg::Uuid(v) = a { v } else { None }).collect()))
            }
            Some(Arg::Text(_)) => {
                ("text", PgArray::Text(col.into_iter().map(|a| if let Arg::Text(v) = a { v } else { None }).collect()))
            }
            Some(Arg::Time(_)) => (
                "timestamptz",
                PgArray::Time(col.into_iter().map(|a| if let Arg::Time(v) = a { v } else { None }).collect()),
            ),
            Some(Arg::Int(_)) => {
                ("int8", PgArray::Int(col.into_iter().map(|a| if let Arg::Int(v) = a { v } else { None }).collect()))
            }
            Some(Arg::Float(_)) => (
                "float8",
                PgArray::Float(col.into_iter().map(|a| if let Arg::Float(v) = a { v } else { None }).collect()),
            ),
            Some(Arg::Bool(_)) => {
                ("bool", PgArray::Bool(col.into_iter().map(|a| if let Arg::Bool(v) = a { v } else { None }).collect()))
            }
            Some(Arg::Json(_)) => (
                "jsonb",
                PgArray::Json(col.into_iter().map(|a| if let Arg::Json(v) = a { v.map(Json) } else { None }).collect()),
            ),
        }
    }
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
