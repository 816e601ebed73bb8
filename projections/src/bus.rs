//! The message bus that carries projection updates to workers.
//!
//! Production: RabbitMQ (lapin), topic exchange `gather.updates`, persistent messages,
//! publisher confirms. Embedded: an in-process broadcast channel with the same message
//! contract ([`Update`]).

use lapin::options::{BasicPublishOptions, ConfirmSelectOptions, ExchangeDeclareOptions};
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties, ExchangeKind};
use serde::{Deserialize, Serialize};
use std::time::Duration;
use tokio::sync::broadcast;
use uuid::Uuid;

/// The topic exchange projection updates are published to.
pub const EXCHANGE: &str = "gather.updates";

/// One projection update, as published.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Update {
    /// Stable id: receivers drop duplicates by it.
    pub id: Uuid,
    /// Routing key / topic (`activity.<id>`, `member.<id>`).
    pub topic: String,
    /// The update's type (usually the event type).
    #[serde(rename = "type")]
    pub kind: String,
    /// The global position it reflects.
    pub position: i64,
    /// The payload.
    pub data: serde_json::Value,
}

/// Why the bus failed.
#[derive(Debug, thiserror::Error)]
pub enum BusError {
    /// RabbitMQ refused or dropped: retry later.
    #[error("rabbitmq error")]
    Amqp(#[from] lapin::Error),
    /// Could not connect within the start-up bound.
    #[error("could not connect to rabbitmq within {0:?}")]
    Timeout(Duration),
    /// The broker did not confirm the message: it may not be stored; retry.
    #[error("the broker did not confirm the message")]
    NotConfirmed,
    /// The update could not be serialized.
    #[error("could not serialize the update")]
    Encode(#[from] serde_json::Error),
}

/// A connected bus.
pub struct Bus {
    connection: Option<Connection>,
    channel: Option<Channel>,
    local: broadcast::Sender<Update>,
}

impl Bus {
    /// The in-process bus.
    pub fn in_process() -> Bus {
        let (local, _) = broadcast::channel(1024);
        Bus { connection: None, channel: None, local }
    }

    /// Connects to RabbitMQ and declares the exchange; gives up after `timeout`.
    pub async fn connect(url: &str, timeout: Duration) -> Result<Bus, BusError> {
        let connect = async {
            let connection = Connection::connect(url, ConnectionProperties::default()).await?;
            let channel = connection.create_channel().await?;
            channel.confirm_select(ConfirmSelectOptions::default()).await?;
            channel
                .exchange_declare(
                    EXCHANGE.into(),
                    ExchangeKind::Topic,
                    ExchangeDeclareOptions { durable: true, ..Default::default() },
                    FieldTable::default(),
                )
                .await?;
            Ok::<_, BusError>((connection, channel))
        };
        let (connection, channel) =
            tokio::time::timeout(timeout, connect).await.map_err(|_| BusError::Timeout(timeout))??;
        let (local, _) = broadcast::channel(1024);
        Ok(Bus { connection: Some(connection), channel: Some(channel), local })
    }

    /// Whether the broker connection is up (always true in-process).
    pub fn is_connected(&self) -> bool {
        self.connection.as_ref().is_none_or(|c| c.status().connected())
    }

    /// The channel, for consumers that declare their own queues.
    pub fn channel(&self) -> Option<&Channel> {
        self.channel.as_ref()
    }

    /// Publishes one update: persistent and confirmed on RabbitMQ, broadcast in-process.
    pub async fn publish(&self, update: &Update) -> Result<(), BusError> {
        if let Some(channel) = &self.channel {
            let payload = serde_json::to_vec(update)?;
            let props = BasicProperties::default()
                .with_delivery_mode(2)
                .with_message_id(update.id.to_string().into())
                .with_content_type("application/json".into());
            let confirm = channel
                .basic_publish(
                    EXCHANGE.into(),
                    update.topic.as_str().into(),
                    BasicPublishOptions::default(),
                    &payload,
                    props,
                )
                .await?
                .await?;
            if !confirm.is_ack() {
                return Err(BusError::NotConfirmed);
            }
        }
        let _ = self.local.send(update.clone());
        Ok(())
    }

    /// Receives in-process updates.
    pub fn local(&self) -> broadcast::Receiver<Update> {
        self.local.subscribe()
    }
}
