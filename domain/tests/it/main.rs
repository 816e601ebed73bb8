//! The domain's integration tests: properties of the aggregates, through the public API only.

mod booking_properties;
mod chat_properties;
