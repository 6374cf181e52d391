//! jobwatch collector.
