//! Verifying a projection: a fresh rebuild compared with the live tables at one
//! checkpoint (`gather replay NAME --verify`).
//!
//! 1. The rebuild is claimed as usual (claim row + `{table}__rebuild` shadow tables) and
//!    built from the log, never past the live checkpoint it reads at each batch.
//! 2. One transaction locks the live checkpoint (the live projector waits on it, so the
//!    live tables hold still) and brings the shadow tables to exactly that checkpoint;
//!    if they are already past it (the live view moved back: a swap), it rolls back,
//!    waits briefly and tries again.
//! 3. In the same transaction, each table is compared: row counts, and for each of
//!    [`BUCKETS`] buckets (by a hash of the row's first column, its key) the count and
//!    an order-independent checksum of the rows' text (hashed here, the text built per
//!    backend: `quote(col) || …` on SQLite, `ROW(col, …)::text` on Postgres).
//! 4. The shadow tables and the claim row are dropped; nothing is swapped.
//!
//! SQLite virtual tables (FTS5, contentless) cannot give their columns back; they are
//! compared by rowid alone. Rows the read side's clean-up jobs deleted from a live table
//! (expired invitations, delivered emails) show as differences.

use crate::rebuild::{Rebuild, RebuildError};
use crate::runtime::{Projection, ProjectionError, Target, load_checkpoint, lock_checkpoint};
use futures::TryStreamExt as _;
use gather_store::db::{Db, Tx};
use gather_store::{Checkpoint, EventStore};
use std::sync::Arc;
use std::time::Duration;

/// The number of buckets each table is checksummed in.
pub const BUCKETS: usize = 16;

/// How many times the comparison waits for the live view to stand at or past the copy.
const ALIGN_TRIES: u32 = 50;

/// Database failures in a row after which the build gives up.
const MAX_FAILURES: u32 = 10;

/// Why a verification could not finish (a difference is not an error: see the report).
#[derive(Debug, thiserror::Error)]
pub enum VerifyError {
    /// The rebuild could not be claimed or built (unknown projection, one with side
    /// effects, a rebuild in progress, an event that cannot be applied, the database).
    #[error(transparent)]
    Rebuild(#[from] RebuildError),
    /// The live view kept standing behind the copy (it should only ever move forward):
    /// try again.
    #[error("the live view of {0:?} stayed behind the rebuilt copy")]
    NotAligned(String),
}

impl From<sqlx::Error> for VerifyError {
    fn from(e: sqlx::Error) -> Self {
        VerifyError::Rebuild(e.into())
    }
}

/// The outcome of comparing a fresh rebuild of a projection with its live tables.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The projection.
    pub projection: String,
    /// Both copies reflect exactly the events up to here.
    pub checkpoint: Checkpoint,
    /// One comparison per table the projection owns.
    pub tables: Vec<TableReport>,
}

impl VerifyReport {
    /// Whether every table is the same in both copies.
    pub fn identical(&self) -> bool {
        self.tables.iter().all(TableReport::identical)
    }
}

/// One table compared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableReport {
    /// The live table.
    pub table: String,
    /// Rows in the live table.
    pub live_rows: u64,
    /// Rows in the rebuilt copy.
    pub rebuilt_rows: u64,
    /// How the columns differ, if they do (then no bucket is compared).
    pub columns: Option<String>,
    /// The buckets whose rows differ.
    pub buckets: Vec<BucketDiff>,
}

impl TableReport {
    /// Whether the live table and the rebuilt copy hold the same rows.
    pub fn identical(&self) -> bool {
        self.columns.is_none() && self.buckets.is_empty() && self.live_rows == self.rebuilt_rows
    }
}

/// A bucket whose rows differ between the copies.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BucketDiff {
    /// The bucket (0 to [`BUCKETS`] - 1).
    pub bucket: usize,
    /// Its rows in the live table.
    pub live_rows: u64,
    /// Its rows in the rebuilt copy.
    pub rebuilt_rows: u64,
}

impl std::fmt::Display for VerifyReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let at = self.checkpoint.position;
        for t in &self.tables {
            if t.identical() {
                writeln!(f, "{}: {}: identical at position {at} ({} rows)", self.projection, t.table, t.live_rows)?;
                continue;
            }
            writeln!(
                f,
                "{}: {}: DIFFERENT at position {at}: live {} rows, rebuilt {} rows",
                self.projection, t.table, t.live_rows, t.rebuilt_rows
            )?;
            if let Some(columns) = &t.columns {
                writeln!(f, "  columns differ: {columns}")?;
            }
            for b in &t.buckets {
                writeln!(
                    f,
                    "  bucket {:2}: live {} rows, rebuilt {} rows, contents differ",
                    b.bucket, b.live_rows, b.rebuilt_rows
                )?;
            }
        }
        Ok(())
    }
}

/// Rebuilds projection `name` into shadow tables and compares them with the live ones
/// at the live checkpoint; the shadow tables and the claim are dropped in the end.
pub async fn verify(
    db: &Db,
    store: Arc<dyn EventStore>,
    projections: &[Arc<dyn Projection>],
    name: &str,
) -> Result<VerifyReport, VerifyError> {
    let mut job = Rebuild::claim(db, store, projections, name).await?;
    let outcome = build_and_compare(db, &mut job).await;
    if let Err(e) = &outcome
        && !matches!(e, VerifyError::Rebuild(RebuildError::TakenOver(_)))
    {
        // Best effort: an error here leaves a claim that goes stale and is taken over.
        let discarded = async {
            let mut tx = db.begin().await?;
            job.discard(&mut tx).await?;
            tx.commit().await?;
            Ok::<_, RebuildError>(())
        };
        if let Err(d) = discarded.await {
            tracing::warn!(projection = name, error = %d, "could not drop the verification's copy");
        }
    }
    outcome
}

async fn build_and_compare(db: &Db, job: &mut Rebuild) -> Result<VerifyReport, VerifyError> {
    let name = job.name();
    let (mut backoff, mut failures) = (Duration::from_millis(50), 0);
    loop {
        let limit = load_checkpoint(db, name).await;
        let step = match limit {
            Ok(limit) => job.build_step(limit).await,
            Err(e) => Err(e.into()),
        };
        match step {
            Ok(true) => break,
            Ok(false) => (backoff, failures) = (Duration::from_millis(50), 0),
            Err(RebuildError::Projection(ProjectionError::Database(e))) if failures < MAX_FAILURES => {
                failures += 1;
                tracing::warn!(projection = name, error = %e, failures, "verification batch failed; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
            Err(e) => return Err(e.into()),
        }
    }
    for _ in 0..ALIGN_TRIES {
        let mut tx = db.begin().await?;
        let live = lock_checkpoint(&mut tx, name).await?;
        let Some(at) = job.align(&mut tx, live).await? else {
            drop(tx);
            tracing::info!(projection = name, %live, "the live view is behind the copy; waiting");
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        let mut tables = Vec::new();
        for table in job.tables() {
            tables.push(compare_tables(&mut tx, table, &Target::Shadow.table(table)).await?);
        }
        job.discard(&mut tx).await?;
        tx.commit().await?;
        let report = VerifyReport { projection: name.to_owned(), checkpoint: at, tables };
        tracing::info!(projection = name, at = %at, identical = report.identical(), "verified");
        return Ok(report);
    }
    Err(VerifyError::NotAligned(name.to_owned()))
}

/// Compares table `live` with table `rebuilt` inside `tx`: columns, row counts, and the
/// count and checksum of each bucket (see the module docs).
pub async fn compare_tables(tx: &mut Tx, live: &str, rebuilt: &str) -> Result<TableReport, sqlx::Error> {
    let live_shape = shape(tx, live).await?;
    let rebuilt_shape = shape(tx, rebuilt).await?;
    let mut report =
        TableReport { table: live.to_owned(), live_rows: 0, rebuilt_rows: 0, columns: None, buckets: Vec::new() };
    let l = checksums(tx, live, &live_shape).await?;
    let r = checksums(tx, rebuilt, &rebuilt_shape).await?;
    report.live_rows = l.iter().map(|b| b.0).sum();
    report.rebuilt_rows = r.iter().map(|b| b.0).sum();
    if live_shape != rebuilt_shape {
        report.columns = Some(format!("{:?} live, {:?} rebuilt", live_shape.columns, rebuilt_shape.columns));
        return Ok(report);
    }
    for (bucket, (l, r)) in l.iter().zip(&r).enumerate() {
        if l != r {
            report.buckets.push(BucketDiff { bucket, live_rows: l.0, rebuilt_rows: r.0 });
        }
    }
    Ok(report)
}

/// What a table's rows are made of.
#[derive(Debug, PartialEq, Eq)]
struct Shape {
    columns: Vec<String>,
    /// An SQLite virtual table: only its rowids can be read back.
    virtual_table: bool,
}

async fn shape(tx: &mut Tx, table: &str) -> Result<Shape, sqlx::Error> {
    match tx {
        Tx::Postgres(c) => {
            let columns = sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns \
                 WHERE table_schema = current_schema() AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut **c)
            .await?;
            Ok(Shape { columns, virtual_table: false })
        }
        Tx::Sqlite(c) => {
            let columns = sqlx::query_scalar("SELECT name FROM pragma_table_info($1) ORDER BY cid")
                .bind(table)
                .fetch_all(&mut **c)
                .await?;
            let sql: Option<String> = sqlx::query_scalar("SELECT sql FROM sqlite_master WHERE name = $1")
                .bind(table)
                .fetch_optional(&mut **c)
                .await?;
            let virtual_table = sql.is_some_and(|s| is_virtual(&s));
            Ok(Shape { columns, virtual_table })
        }
    }
}

/// Whether an SQLite DDL statement creates a virtual table.
pub(crate) fn is_virtual(ddl: &str) -> bool {
    let words: Vec<String> = ddl.split_whitespace().take(3).map(str::to_ascii_uppercase).collect();
    words == ["CREATE", "VIRTUAL", "TABLE"]
}

fn quoted(column: &str) -> String {
    format!("\"{}\"", column.replace('"', "\"\""))
}

/// (rows, checksum) per bucket.
async fn checksums(tx: &mut Tx, table: &str, shape: &Shape) -> Result<Vec<(u64, u64)>, sqlx::Error> {
    let mut buckets = vec![(0u64, 0u64); BUCKETS];
    let sql = match tx {
        Tx::Postgres(_) => {
            let first = shape.columns.first().map(|c| quoted(c)).unwrap_or_else(|| "NULL".into());
            let all: Vec<String> = shape.columns.iter().map(|c| quoted(c)).collect();
            format!("SELECT ({first})::text, ROW({})::text FROM {}", all.join(", "), quoted(table))
        }
        Tx::Sqlite(_) if shape.virtual_table => {
            format!("SELECT quote(rowid), quote(rowid) FROM {}", quoted(table))
        }
        Tx::Sqlite(_) => {
            let first = shape.columns.first().map(|c| quoted(c)).unwrap_or_else(|| "NULL".into());
            let all: Vec<String> = shape.columns.iter().map(|c| format!("quote({})", quoted(c))).collect();
            format!("SELECT quote({first}), {} FROM {}", all.join(" || ',' || "), quoted(table))
        }
    };
    let mut add = |(key, row): (Option<String>, Option<String>)| {
        let bucket = (fnv1a(key.as_deref().unwrap_or("\u{0}null").as_bytes()) % BUCKETS as u64) as usize;
        let b = &mut buckets[bucket];
        b.0 += 1;
        // A sum, not a xor: two equal rows must not cancel out.
        b.1 = b.1.wrapping_add(fnv1a(row.as_deref().unwrap_or("\u{0}null").as_bytes()));
    };
    match tx {
        Tx::Postgres(c) => {
            let mut rows = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch(&mut **c);
            while let Some(row) = rows.try_next().await? {
                add(row);
            }
        }
        Tx::Sqlite(c) => {
            let mut rows = sqlx::query_as(sqlx::AssertSqlSafe(sql)).fetch(&mut **c);
            while let Some(row) = rows.try_next().await? {
                add(row);
            }
        }
    }
    Ok(buckets)
}

/// FNV-1a, 64 bits: stable across processes and releases (unlike `DefaultHasher`).
fn fnv1a(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3))
}
