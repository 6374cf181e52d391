//! The `collector` daemon: `collector --config FILE` (or `--db PATH --socket PATH`); runs
//! until SIGTERM or SIGINT.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Parser;
use collector::{config::Config, server};
use tokio_util::sync::CancellationToken;

/// jobwatch collector: receives sensor reports, stores them, serves queries.
#[derive(Debug, Parser)]
#[command(version)]
struct Args {
    /// Configuration file (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// SQLite database path (overrides `db_path`).
    #[arg(long)]
    db: Option<PathBuf>,
    /// Unix socket path (overrides `socket`).
    #[arg(long)]
    socket: Option<PathBuf>,
    /// Rules file (YAML) layered on the shipped rules (overrides `rules`).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Also write alerts as JSON lines to this file, `-` for stdout (overrides
    /// `alerts_output`).
    #[arg(long)]
    alerts_output: Option<PathBuf>,
    /// Check the rules (shipped, plus --rules or the config's `rules`), list them, and exit.
    #[arg(long)]
    check_rules: bool,
}

fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    match run(Args::parse()) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("collector: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(db) = args.db {
        config.db_path = db;
    }
    if let Some(socket) = args.socket {
        config.socket = socket;
    }
    if let Some(rules) = args.rules {
        config.rules = Some(rules);
    }
    if let Some(output) = args.alerts_output {
        config.alerts_output = Some(output);
    }
    if args.check_rules {
        let set = collector::detect::rules::load(config.rules.as_deref())?;
        for r in &set.rules {
            println!(
                "{} {:<8} {:<17} {}",
                r.id,
                r.severity.name(),
                r.detector.name(),
                r.title
            );
        }
        println!(
            "{} rules enabled, {} exceptions",
            set.rules.len(),
            set.exceptions.len()
        );
        return Ok(());
    }
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async move {
        let cancel = CancellationToken::new();
        let running = server::start(config, cancel.clone()).await?;
        tracing::info!(tcp = ?running.tcp_addr, metrics = ?running.metrics_addr, "collector started");
        let signals = cancel.clone();
        tokio::spawn(async move {
            wait_for_signal().await;
            tracing::info!("shutting down");
            signals.cancel();
        });
        running.wait().await?;
        Ok(())
    })
}

async fn wait_for_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    match signal(SignalKind::terminate()) {
        Ok(mut term) => {
            tokio::select! {
                _ = term.recv() => {}
                _ = tokio::signal::ctrl_c() => {}
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "no SIGTERM handler; only SIGINT stops the collector");
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
