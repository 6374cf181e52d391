//! The `sensor` command: options, start-up, the output task, and shutdown on SIGTERM/SIGINT.

use std::path::PathBuf;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

use crate::{config::Config, output, pipeline::RunningSensor};

/// jobwatch's node sensor: prints one JSON object per process exec, process exit and file
/// creation on stdout; logs go to stderr.
#[derive(Debug, Parser)]
#[command(name = "sensor", version)]
pub struct Args {
    /// TOML configuration file (see README: every field is optional).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// Only report processes in containers, not the host's.
    #[arg(long)]
    pub containers_only: bool,
}

/// Runs the sensor until SIGTERM or SIGINT. Errors name their cause.
pub async fn run(args: Args) -> anyhow::Result<()> {
    let mut config = match &args.config {
        Some(path) => Config::from_file(path)?,
        None => Config::default(),
    };
    if args.containers_only {
        config.report_host_processes = false;
    }
    let mut sigterm = signal(SignalKind::terminate())?;
    let mut sigint = signal(SignalKind::interrupt())?;

    let mut sensor = RunningSensor::start(&config).await?;
    tracing::info!(programs = ?sensor.attached, "sensor running");
    let events = std::mem::replace(&mut sensor.events, tokio::sync::mpsc::channel(1).1);
    let writer = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Handle::current();
        rt.block_on(output::write_json_lines(events, std::io::stdout().lock()))
    });

    tokio::select! {
        _ = sigterm.recv() => tracing::info!("SIGTERM: shutting down"),
        _ = sigint.recv() => tracing::info!("SIGINT: shutting down"),
    }
    let stats = std::sync::Arc::clone(&sensor.stats);
    let containerd = std::sync::Arc::clone(&sensor.containerd);
    let kernel = sensor.shutdown().await;
    match writer.await {
        Ok(Ok(n)) => tracing::info!(events = n, "output closed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "output failed"),
        Err(e) => tracing::warn!(error = %e, "output task failed"),
    }
    let kernel: Vec<String> = kernel.named().map(|(k, v)| format!("{k}={v}")).collect();
    tracing::info!(?stats, kernel = %kernel.join(" "), ?containerd, "final counters");
    Ok(())
}
