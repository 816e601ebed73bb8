//! End-to-end tests through HTTP, against both profiles: SQLite (embedded) and
//! Postgres + RabbitMQ (production). Each test gets its own database.

#[macro_use]
mod harness;
mod activities_flow;
mod admin;
mod audit;
mod chats;
mod command_path;
mod compose;
mod consistency;
mod distribution;
mod forget;
mod idempotency;
mod idempotency_scope;
mod input_bounds;
mod limits;
mod login_flood;
mod mail;
mod matrix;
mod media;
mod members;
mod metrics;
mod openapi;
mod operations;
mod payments;
mod reads;
mod search;
mod series;
mod slice;
mod tokens;
