//! Booking commands through the full handler (load → decide → append, retries on
//! conflicts): 16 clients on one hot activity against 16 clients on 16 activities.

use gather_commands::handler::CONFLICTS;
use gather_commands::{CommandHandler, CommandMeta};
use gather_domain::activity::{
    Activity, ActivityCommand, ActivityDetails, RawActivityDetails, RawLocation, Visibility,
};
use gather_domain::{Actor, Role};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use uuid::Uuid;

async fn published(handler: &CommandHandler) -> anyhow::Result<Uuid> {
    let id = Uuid::now_v7();
    let organiser = Actor::new(Uuid::now_v7(), [Role::Member, Role::Organiser]);
    let start = chrono::Utc::now() + chrono::Duration::days(30);
    let details = ActivityDetails::parse(RawActivityDetails {
        title: "Benchmark meetup".into(),
        description: String::new(),
        category: "meetup".into(),
        tags: vec![],
        starts_at: start,
        ends_at: start + chrono::Duration::hours(2),
        capacity: 100_000,
        price_amount: 0,
        price_currency: "EUR".into(),
        visibility: Visibility::Public,
        location: RawLocation::Online { url: "https://example.com/room".into() },
        age_min: None,
        age_max: None,
        waitlist: false,
    })?;
    handler
        .handle::<Activity>(
            id,
            ActivityCommand::Create { activity_id: id, details },
            &CommandMeta::new(organiser.clone()),
        )
        .await?;
    handler.handle::<Activity>(id, ActivityCommand::Submit, &CommandMeta::new(organiser)).await?;
    let moderator = Actor::new(Uuid::now_v7(), [Role::Member, Role::Moderator]);
    handler.handle::<Activity>(id, ActivityCommand::Approve, &CommandMeta::new(moderator)).await?;
    Ok(id)
}

/// Runs 16 clients for `secs`; `hot` puts them all on one activity.
pub async fn run(handler: CommandHandler, secs: f64, hot: bool) -> anyhow::Result<(crate::Cell, u64)> {
    const CLIENTS: usize = 16;
    let mut activities = Vec::new();
    for _ in 0..if hot { 1 } else { CLIENTS } {
        activities.push(published(&handler).await?);
    }
    let activities = Arc::new(activities);
    let before = CONFLICTS.load(Ordering::Relaxed);
    let cell = crate::run(CLIENTS, secs, 1, move |w, _| {
        let (handler, activities) = (handler.clone(), activities.clone());
        async move {
            let activity = activities[w % activities.len()];
            // a new member per booking: one live booking per member and activity
            let member = Actor::new(Uuid::now_v7(), [Role::Member]);
            let cmd = ActivityCommand::BookSeats { booking_id: Uuid::now_v7(), seats: 1, children: vec![] };
            handler.handle::<Activity>(activity, cmd, &CommandMeta::new(member)).await?;
            Ok(())
        }
    })
    .await;
    Ok((cell, CONFLICTS.load(Ordering::Relaxed) - before))
}
