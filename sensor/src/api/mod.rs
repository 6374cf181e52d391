//! The sensor's public API (`jobwatch.v1`): conversion of events to API messages.

pub mod convert;
