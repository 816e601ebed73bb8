//! The `series` read model: each recurring activity's template, schedule and status,
//! its materialized occurrences (index → activity) and its skipped indexes. The
//! upcoming occurrences a query lists are expanded from the stored schedule by the
//! domain's rule engine ([`gather_domain::series::Schedule`]); nothing here redoes the
//! expansion the events already carry.

use crate::events::decode_of;
use crate::runtime::{Projection, ProjectionError, Target};
use crate::sql::{Arg, Args, execute};
use async_trait::async_trait;
use gather_domain::series::{Series, SeriesEvent, SeriesTemplate};
use gather_store::RecordedEvent;
use gather_store::db::Tx;
use serde_json::{Value, json};
use uuid::Uuid;

/// Projects series streams into `series`, `series_occurrences` and `series_skips`.
pub struct SeriesProjection;

/// The API's view of a series' template (an activity's details without the time).
pub fn template_view(t: &SeriesTemplate) -> Value {
    json!({
        "title": t.title,
        "description": t.description,
        "category": t.category,
        "tags": t.tags,
        "capacity": t.capacity,
        "price": t.price,
        "visibility": t.visibility.as_str(),
        "location": t.location,
        "age_min": t.age_range.map(|a| a.min()),
        "age_max": t.age_range.map(|a| a.max()),
        "waitlist": t.waitlist,
    })
}

async fn exec(tx: &mut Tx, sql: String, args: Vec<Arg>) -> Result<(), sqlx::Error> {
    execute(tx, sql, Args(args)).await.map(|_| ())
}

fn id(v: Uuid) -> Arg {
    Arg::Uuid(Some(v))
}

/// JSON of a domain value (plain data: serializing it cannot fail).
fn json_of<T: serde::Serialize>(v: &T) -> Arg {
    Arg::Json(Some(serde_json::to_value(v).unwrap_or_default()))
}

#[async_trait]
impl Projection for SeriesProjection {
    fn name(&self) -> &'static str {
        "series"
    }

    fn tables(&self) -> &'static [&'static str] {
        &["series", "series_occurrences", "series_skips"]
    }

    async fn apply(&self, tx: &mut Tx, at: Target, e: &RecordedEvent) -> Result<(), ProjectionError> {
        let Some((series, event)) = decode_of::<Series>(e)? else { return Ok(()) };
        let (rows, occurrences, skips) = (at.table("series"), at.table("series_occurrences"), at.table("series_skips"));
        let touch = |set: &str| {
            format!("UPDATE {rows} SET {set}version = $2, updated_at = $3, position = $4 WHERE series_id = $1")
        };
        let stamp =
            vec![id(series), Arg::Int(Some(e.version)), Arg::Time(Some(e.recorded_at)), Arg::Int(Some(e.position))];
        let with = |mut more: Vec<Arg>| {
            let mut args = stamp.clone();
            args.append(&mut more);
            args
        };
        use SeriesEvent as E;
        match event {
            E::SeriesDrafted { organiser_id, template, schedule, .. } => {
                let sql = format!(
                    "INSERT INTO {rows} (series_id, organiser_id, status, visibility, template, schedule, version, \
                     created_at, updated_at, position) VALUES ($1, $5, 'draft', $6, $7, $8, $2, $3, $3, $4) \
                     ON CONFLICT (series_id) DO NOTHING"
                );
                let args = with(vec![
                    id(organiser_id),
                    Arg::Text(Some(template.visibility.as_str().into())),
                    Arg::Json(Some(template_view(&template))),
                    json_of(&schedule),
                ]);
                exec(tx, sql, args).await?;
            }
            E::SeriesUpdated { template, schedule, occurrences: moved, dropped, .. } => {
                let sql = touch("template = $5, schedule = $6, visibility = $7, ");
                let args = with(vec![
                    Arg::Json(Some(template_view(&template))),
                    json_of(&schedule),
                    Arg::Text(Some(template.visibility.as_str().into())),
                ]);
                exec(tx, sql, args).await?;
                for m in moved {
                    let sql = format!(
                        "UPDATE {occurrences} SET starts_at = $3, ends_at = $4 WHERE series_id = $1 AND idx = $2"
                    );
                    let args = vec![
                        id(series),
                        Arg::Int(Some(i64::from(m.index))),
                        Arg::Time(Some(m.time.starts_at())),
                        Arg::Time(Some(m.time.ends_at())),
                    ];
                    exec(tx, sql, args).await?;
                }
                for activity in dropped {
                    let sql = format!("DELETE FROM {occurrences} WHERE series_id = $1 AND activity_id = $2");
                    exec(tx, sql, vec![id(series), id(activity)]).await?;
                }
            }
            E::SeriesSubmitted {} => {
                exec(tx, touch("status = 'pending', rejection_reason = NULL, "), stamp).await?;
            }
            E::SeriesPublished { .. } => {
                exec(tx, touch("status = 'published', was_published = $5, "), with(vec![Arg::Bool(Some(true))]))
                    .await?;
            }
            E::SeriesRejected { reason, .. } => {
                let args = with(vec![Arg::Text(Some(reason.as_str().into()))]);
                exec(tx, touch("status = 'rejected', rejection_reason = $5, "), args).await?;
            }
            E::OccurrenceScheduled { activity_id, index, starts_at, ends_at, .. } => {
                let sql = format!(
                    "INSERT INTO {occurrences} (series_id, idx, activity_id, starts_at, ends_at) \
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (series_id, idx) DO NOTHING"
                );
                let args = vec![
                    id(series),
                    Arg::Int(Some(i64::from(index))),
                    id(activity_id),
                    Arg::Time(Some(starts_at)),
                    Arg::Time(Some(ends_at)),
                ];
                exec(tx, sql, args).await?;
                exec(tx, touch(""), stamp).await?;
            }
            E::OccurrenceSkipped { index, date, .. } => {
                let sql = format!(
                    "INSERT INTO {skips} (series_id, idx, local_date) VALUES ($1, $2, $3) \
                     ON CONFLICT (series_id, idx) DO NOTHING"
                );
                let args = vec![id(series), Arg::Int(Some(i64::from(index))), Arg::Text(Some(date.to_string()))];
                exec(tx, sql, args).await?;
                exec(tx, touch(""), stamp).await?;
            }
            E::SeriesEnded { after, .. } => {
                let args = with(vec![Arg::Text(Some(after.to_string()))]);
                exec(tx, touch("status = 'ended', ended_after = $5, "), args).await?;
            }
        }
        Ok(())
    }
}
