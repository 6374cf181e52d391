//! jobwatch's node sensor: loads the eBPF programs, reads their records from the ring buffer,
//! decodes them, keeps a process table and emits events.

pub mod api;
pub mod app;
pub mod attribution;
pub mod btf;
pub mod clock;
pub mod config;
pub mod containers;
pub mod event;
pub mod host;
pub mod kernel_offsets;
pub mod loss;
pub mod metrics;
pub mod output;
pub mod pipeline;
pub mod probes;
pub mod process_table;
pub mod procfs;
pub mod record;
pub mod report;
