//! Materializing published series on Postgres (issue 14 asks for the time, no target):
//! 1,000 public weekly series are created and submitted through the command handler
//! (not timed), then approved at 16 at a time; the clock runs from the first approval
//! until the `activities` read model shows all 3,000 occurrences (the next 3 of each)
//! as published activities. That covers the whole path: the process manager's timer,
//! `MaterializeSeries`, `OccurrenceScheduled`, the process manager again,
//! `CreateOccurrence` (drafted + published), and the activities projection.

use crate::app;
use futures::StreamExt;
use gather_commands::CommandMeta;
use gather_domain::activity::{RawLocation, Visibility};
use gather_domain::series::{
    RawSeriesTemplate, Rule, ScheduleSpec, Series, SeriesCommand, SeriesTemplate, parse_local_start, parse_timezone,
};
use gather_domain::{Actor, Role};
use std::time::{Duration, Instant};
use uuid::Uuid;

fn template() -> anyhow::Result<SeriesTemplate> {
    Ok(SeriesTemplate::parse(RawSeriesTemplate {
        title: "Weekly run club".into(),
        description: "Benchmark series".into(),
        category: "sports".into(),
        tags: vec!["bench".into()],
        capacity: 30,
        price_amount: 0,
        price_currency: "EUR".into(),
        visibility: Visibility::Public,
        location: RawLocation::Venue { name: "Park".into(), address: "1 Park Lane".into(), lat: 52.36, lng: 4.88 },
        age_min: None,
        age_max: None,
        waitlist: true,
    })?)
}

/// Runs the section over a fresh database at `url` with `count` series.
pub async fn run(url: &str, count: usize) -> anyhow::Result<()> {
    let app = app::start(Some(url), &[], false).await?;
    let state = app.state.clone();
    let organiser = Actor::new(Uuid::now_v7(), [Role::Member, Role::Organiser]);
    let moderator = Actor::new(Uuid::now_v7(), [Role::Member, Role::Moderator]);
    let spec = || -> anyhow::Result<ScheduleSpec> {
        Ok(ScheduleSpec {
            rule: Rule::parse("FREQ=WEEKLY;BYDAY=MO,WE,FR;COUNT=24")?,
            timezone: parse_timezone("Europe/Amsterdam")?,
            local_start: parse_local_start("18:30")?,
            duration_minutes: 60,
        })
    };
    let ids: Vec<Uuid> = (0..count).map(|_| Uuid::now_v7()).collect();
    let t0 = Instant::now();
    for id in &ids {
        let meta = CommandMeta::new(organiser.clone());
        let create = SeriesCommand::Create { series_id: *id, template: template()?, schedule: spec()? };
        state.commands.handle::<Series>(*id, create, &meta).await?;
        state.commands.handle::<Series>(*id, SeriesCommand::Submit, &CommandMeta::new(organiser.clone())).await?;
    }
    println!(
        "series: {count} public weekly series created and submitted in {:.1} s (set-up)",
        t0.elapsed().as_secs_f64()
    );
    let started = Instant::now();
    let approvals =
        futures::stream::iter(ids.iter().copied())
            .map(|id| {
                let (state, moderator) = (state.clone(), moderator.clone());
                async move {
                    state.commands.handle::<Series>(id, SeriesCommand::Approve, &CommandMeta::new(moderator)).await
                }
            })
            .buffer_unordered(16)
            .collect::<Vec<_>>()
            .await;
    for a in approvals {
        a?;
    }
    let approved = started.elapsed();
    let expected = i64::try_from(count * 3)?;
    let count_sql = "SELECT count(*) FROM activities WHERE status = 'published' AND details->>'series_id' IS NOT NULL";
    let deadline = Instant::now() + Duration::from_secs(900);
    let mut seen = 0;
    while seen < expected {
        anyhow::ensure!(Instant::now() < deadline, "only {seen} of {expected} occurrences after 15 minutes");
        tokio::time::sleep(Duration::from_millis(100)).await;
        seen =
            gather_commands::on_db_read!(&state.db, p => sqlx::query_scalar::<_, i64>(count_sql).fetch_one(p).await)?;
    }
    let total = started.elapsed();
    println!(
        "series: approving {count} series took {:.1} s; all {expected} occurrences were published activities {:.1} s \
         after the first approval ({:.0} series/s, {:.0} occurrences/s end to end)",
        approved.as_secs_f64(),
        total.as_secs_f64(),
        count as f64 / total.as_secs_f64(),
        expected as f64 / total.as_secs_f64(),
    );
    app.stop().await;
    Ok(())
}
