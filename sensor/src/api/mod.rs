//! The sensor's public API (`jobwatch.v1`): conversion of events to API messages.

pub mod convert;
pub mod filter;
pub mod hub;
pub mod server;
pub mod service;
pub mod wire;
