//! Gather's domain: pure, synchronous decisions over event streams.
//!
//! Reading order:
//! - [`core`]: the [`Aggregate`] and [`DomainEvent`] traits, the command [`Context`]
//!   (actor and `now`), and [`DomainError`] with its stable codes;
//! - [`member`], [`activity`], [`chat`]: one file per aggregate (state, commands,
//!   events, `decide`, `evolve`, specs);
//! - [`values`]: value objects that parse rather than validate;
//! - [`testkit`]: the given-when-then kit used by every crate's specs.
//!
//! Nothing here reads a clock, a database or the network.

pub mod core;
pub mod errors;
pub mod values;
pub mod member;
pub mod activity;
pub mod testkit;

pub use crate::core::*;
pub use crate::errors::DomainError;
