//! `cargo xtask <command>`: jobwatch's developer commands. The work is done in the library.

use std::{ffi::OsString, process::ExitCode};

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};

/// jobwatch's developer commands.
#[derive(Parser)]
#[command(name = "cargo xtask", bin_name = "cargo xtask", version)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what building and testing need (apt packages, rust-src, bpf-linker); idempotent,
    /// a few seconds when everything is present.
    Setup,
    /// Set up, then build the eBPF object (the same build that sensor/build.rs runs).
    BuildEbpf,
    /// Set up, build (release) and run the collector and the sensor reporting to it; needs root.
    /// Arguments after `--` go to the sensor.
    Run {
        /// Arguments for the sensor.
        #[arg(last = true)]
        args: Vec<OsString>,
    },
    /// Set up, then fmt, clippy (workspace and eBPF crate), unit tests and privileged
    /// integration tests; prints a summary and fails if any phase failed.
    Test,
    /// Build the release binaries and the sensor and collector container images (OCI image
    /// layout tarballs for `ctr images import`; no Docker engine needed) into target/images/.
    Image {
        /// Write the tarballs here instead of target/images/.
        #[arg(long)]
        out: Option<std::path::PathBuf>,
    },
    /// Benchmarks against no sensor, bpftrace and auditd, and sensor -> collector throughput
    /// (root; installs bpftrace, auditd and sqlite3 when missing); results in target/bench/.
    Bench {
        /// A short smoke run (one repetition, short steps) instead of the full one.
        #[arg(long)]
        quick: bool,
        /// Only this benchmark (repeatable): throughput, exec, files, cliff, memory.
        #[arg(long, value_name = "NAME")]
        only: Vec<String>,
        /// A directory with another build's release sensor, collector and jobwatch: the
        /// throughput benchmark alternates it with this build (before/after).
        #[arg(long, value_name = "DIR")]
        baseline: Option<std::path::PathBuf>,
    },
    /// Workload generator used by `bench` (runs in its own process).
    #[command(hide = true)]
    BenchLoad {
        #[arg(allow_hyphen_values = true, trailing_var_arg = true)]
        args: Vec<String>,
    },
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(code) => code,
        Err(error) => {
            // The chain of causes, without anyhow's backtrace (RUST_BACKTRACE is often set in CI).
            eprintln!("xtask: error: {error}");
            for cause in error.chain().skip(1) {
                eprintln!("  caused by: {cause}");
            }
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> Result<ExitCode> {
    let root = xtask::workspace_root();
    match cli.command {
        Cmd::Setup => xtask::setup::run(&root).map(|()| ExitCode::SUCCESS),
        Cmd::BuildEbpf => {
            xtask::setup::run(&root)?;
            let object = xtask::ebpf::build(&root)?;
            let size = std::fs::metadata(&object)
                .with_context(|| format!("failed to stat {}", object.display()))?
                .len();
            println!("{} ({size} bytes)", object.display());
            Ok(ExitCode::SUCCESS)
        }
        Cmd::Run { args } => xtask::run::run(&root, &args),
        Cmd::Test => xtask::test::run(&root),
        Cmd::Image { out } => xtask::image::run(&root, out.as_deref()).map(|()| ExitCode::SUCCESS),
        Cmd::Bench {
            quick,
            only,
            baseline,
        } => xtask::bench::run(
            &root,
            &xtask::bench::Options {
                quick,
                only,
                baseline,
            },
        )
        .map(|()| ExitCode::SUCCESS),
        Cmd::BenchLoad { args } => xtask::bench::load::main(&args).map(|()| ExitCode::SUCCESS),
    }
}
