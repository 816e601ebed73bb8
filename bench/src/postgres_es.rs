//! The `postgres-es` baseline (cqrs-es with its Postgres event repository): one-event
//! commands, each writer on its own aggregates (a new one every 50 commands, so its
//! load-before-append stays short), in a database of its own.

use cqrs_es::event_sink::EventSink;
use cqrs_es::{Aggregate, DomainEvent};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

/// A counter: each `Increment` emits one event.
#[derive(Default, Serialize, Deserialize)]
pub struct Counter {
    n: u64,
}

/// The counter's event.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum CounterEvent {
    /// One more.
    Incremented {
        /// The new count.
        n: u64,
        /// A payload of the same size as the store benchmark's.
        note: String,
    },
}

impl DomainEvent for CounterEvent {
    fn event_type(&self) -> String {
        "Incremented".into()
    }
    fn event_version(&self) -> String {
        "1".into()
    }
}

/// Never fails.
#[derive(Debug)]
pub struct NoError;

impl std::fmt::Display for NoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("no error")
    }
}

impl std::error::Error for NoError {}

impl Aggregate for Counter {
    const TYPE: &'static str = "counter";
    type Command = ();
    type Event = CounterEvent;
    type Error = NoError;
    type Services = ();

    async fn handle(&mut self, _: (), _: &(), sink: &EventSink<Self>) -> Result<(), NoError> {
        let event = CounterEvent::Incremented { n: self.n + 1, note: "a small payload of a typical size".into() };
        sink.write(event, self).await;
        Ok(())
    }

    fn apply(&mut self, event: CounterEvent) {
        let CounterEvent::Incremented { n, .. } = event;
        self.n = n;
    }
}

const SCHEMA: &str = "CREATE TABLE events (aggregate_type text NOT NULL, aggregate_id text NOT NULL, \
    sequence bigint CHECK (sequence >= 0) NOT NULL, event_type text NOT NULL, event_version text NOT NULL, \
    payload json NOT NULL, metadata json NOT NULL, PRIMARY KEY (aggregate_type, aggregate_id, sequence))";

/// Runs `writers` for `secs` against the database at `url` (created empty by the caller).
pub async fn run(url: &str, writers: usize, secs: f64) -> anyhow::Result<crate::Cell> {
    // Capped: the server allows 100 connections and the other pools of the run hold some.
    let pool =
        sqlx08::postgres::PgPoolOptions::new().max_connections((writers as u32 + 2).min(24)).connect(url).await?;
    sqlx08::query("DROP TABLE IF EXISTS events").execute(&pool).await?;
    sqlx08::query(SCHEMA).execute(&pool).await?;
    let cqrs = Arc::new(postgres_es::postgres_cqrs::<Counter>(pool, vec![], ()));
    let ids: Arc<Vec<String>> = Arc::new((0..writers).map(|_| uuid::Uuid::now_v7().to_string()).collect());
    Ok(crate::run(writers, secs, 1, move |w, i| {
        let (cqrs, ids) = (cqrs.clone(), ids.clone());
        async move {
            let id = format!("{}-{}", ids[w], i / 50);
            cqrs.execute(&id, ()).await.map_err(|e| anyhow::anyhow!("{e}"))
        }
    })
    .await)
}
