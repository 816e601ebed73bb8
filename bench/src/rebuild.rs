//! Rebuilding the `activities` projection beside the live table (claim, replay into
//! the shadow table, swap) against the baseline of the live projector catching up on
//! an emptied table from the start of the same log: the price of building beside.

use gather_commands::Db;
use gather_commands::store::EventStore;
use gather_projections::activities::ActivitiesProjection;
use gather_projections::rebuild::Rebuild;
use gather_projections::{Projection, Projectors};
use std::sync::Arc;
use std::time::{Duration, Instant};

pub(crate) async fn run(url: &str, store: Arc<dyn EventStore>) -> anyhow::Result<()> {
    let db = Db::connect(url).await?;
    let Db::Postgres(pool) = &db else { anyhow::bail!("the benchmark runs on Postgres") };
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM events").fetch_one(pool).await?;
    let rows = || async { sqlx::query_scalar::<_, i64>("SELECT count(*) FROM activities").fetch_one(pool).await };
    let projections: Vec<Arc<dyn Projection>> = vec![Arc::new(ActivitiesProjection)];
    let head = store.head().await?;

    // Baseline: the live projector from the start, on an empty table.
    sqlx::query("DELETE FROM activities").execute(pool).await?;
    sqlx::query("DELETE FROM projection_checkpoints WHERE name = 'activities'").execute(pool).await?;
    let (stop, stopped) = tokio::sync::watch::channel(false);
    let t = Instant::now();
    let live = Projectors::start(db.clone(), store.clone(), projections.clone(), stopped).await?;
    anyhow::ensure!(live.wait_for(head, Duration::from_secs(600)).await, "the live projector did not catch up");
    let catch_up = t.elapsed().as_secs_f64();
    let live_rows = rows().await?;

    // Rebuild beside it, while it runs.
    let t = Instant::now();
    let job = Rebuild::claim(&db, store.clone(), &projections, "activities").await?;
    job.run().await?;
    let rebuilt = t.elapsed().as_secs_f64();
    let rebuilt_rows = rows().await?;
    let _ = stop.send(true);
    anyhow::ensure!(rebuilt_rows == live_rows, "the rebuild has {rebuilt_rows} rows, the live view {live_rows}");

    println!("\n## Rebuilding `activities` over {events} events ({live_rows} activities)\n");
    println!("| live projector from the start | rebuild beside + swap | rebuild / catch-up |\n|---:|---:|---:|");
    println!(
        "| {:.2} s ({:.0} ev/s) | {:.2} s ({:.0} ev/s) | {:.2}× |",
        catch_up,
        events as f64 / catch_up,
        rebuilt,
        events as f64 / rebuilt,
        rebuilt / catch_up
    );
    Ok(())
}
