//! Gather's domain: pure, synchronous decisions over event streams.
//!
//! Reading order:
//! - [`core`]: the [`Aggregate`] and [`DomainEvent`] traits, the command [`Context`]
//!   (actor and `now`);
//! - [`errors`]: [`DomainError`], one variant per broken rule, with its stable code;
//! - [`member`], [`activity`], [`chat`], [`payment`]: one file per aggregate (state,
//!   commands, events, `decide`, `evolve`, specs);
//! - [`values`]: value objects that parse rather than validate;
//! - [`testkit`]: the given-when-then kit used by every crate's specs;
//! - [`specs`]: the spec catalogue ([`catalogue_markdown`] is what `gather specs` prints).
//!
//! Nothing here reads a clock, a database or the network.

pub mod activity;
pub mod chat;
pub mod core;
pub mod errors;
pub mod member;
pub mod payment;
pub mod process;
pub mod series;
pub mod specs;
pub mod testkit;
pub mod values;

pub use crate::core::*;
pub use crate::errors::DomainError;
pub use crate::specs::catalogue_markdown;
