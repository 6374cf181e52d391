//! jobwatch's collector: receives the reports of many sensors (`jobwatch.v1.Collector`),
//! stores them in an embedded SQLite database, and serves queries, live streams, status and
//! Prometheus metrics.
//!
//! Start one in-process with [`server::start`] (or [`server::run`]) and a
//! [`config::Config`]; stop it with the cancellation token.

pub mod alerts;
pub mod auth;
pub mod config;
pub mod detect;
pub use jobwatch_proto::filter;
pub mod hub;
pub mod metrics;
pub mod server;
pub mod service;
pub mod store;
pub mod validate;
