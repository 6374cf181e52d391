//! The `sensor` command: options, start-up, the output task, and shutdown on SIGTERM/SIGINT.

use std::path::PathBuf;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{
    api::{
        convert::ExecIds,
        hub::Hub,
        server::{ApiSettings, serve},
        service::{self, SensorApi, StatusFn, StatusInputs},
    },
    clock::BootClock,
    config::Config,
    output,
    pipeline::RunningSensor,
};

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

    let node = config.node();
    let clock = BootClock::now();
    let ids = ExecIds {
        node: node.clone(),
        boot_unix_secs: clock.boot_unix_secs(),
    };
    let hub = Hub::new(ids, clock, config.api.subscriber_queue);
    let api_cancel = CancellationToken::new();
    let mut server = api_settings(&config).map(|settings| {
        let api = SensorApi::new(
            hub.clone(),
            Arc::clone(&sensor.index),
            status_source(&sensor, &hub, node),
        );
        tokio::spawn(serve(settings, api, api_cancel.clone()))
    });
    if let Some(path) = Some(&config.api.socket).filter(|p| !p.as_os_str().is_empty()) {
        tracing::info!(socket = %path.display(), "API listening; watch events with: jobwatch events --follow");
    }

    let events = std::mem::replace(&mut sensor.events, tokio::sync::mpsc::channel(1).1);
    let stdout_json = config.stdout_json;
    let dispatch_hub = hub.clone();
    let writer = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Handle::current();
        let out = stdout_json.then(|| std::io::stdout().lock());
        rt.block_on(output::dispatch(events, Some(dispatch_hub), out))
    });

    let api_failed = async {
        match server.as_mut() {
            Some(task) => match task.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(e.to_string()),
                Err(e) => Some(format!("API task failed: {e}")),
            },
            None => std::future::pending().await,
        }
    };
    let failure = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); None }
        e = api_failed => e,
    };
    api_cancel.cancel();
    let stats = Arc::clone(&sensor.stats);
    let containerd = Arc::clone(&sensor.containerd);
    let kernel = sensor.shutdown().await;
    match writer.await {
        Ok(Ok(n)) => tracing::info!(events = n, "output closed"),
        Ok(Err(e)) => tracing::warn!(error = %e, "output failed"),
        Err(e) => tracing::warn!(error = %e, "output task failed"),
    }
    let kernel: Vec<String> = kernel.named().map(|(k, v)| format!("{k}={v}")).collect();
    tracing::info!(?stats, kernel = %kernel.join(" "), ?containerd, hub = ?hub.stats(), "final counters");
    match failure {
        Some(e) => Err(anyhow::anyhow!("the API stopped: {e}")),
        None => Ok(()),
    }
}

/// Where the API listens, from the config; None when neither listener is configured.
fn api_settings(config: &Config) -> Option<ApiSettings> {
    let socket = Some(config.api.socket.clone()).filter(|p| !p.as_os_str().is_empty());
    if socket.is_none() && config.api.tcp_address.is_none() {
        return None;
    }
    Some(ApiSettings {
        socket,
        tcp: config.api.tcp_address,
        tls_cert: config.api.tls_cert.clone(),
        tls_key: config.api.tls_key.clone(),
        tls_client_ca: config.api.tls_client_ca.clone(),
    })
}

/// Builds the GetStatus answer from the running sensor's parts.
fn status_source(sensor: &RunningSensor, hub: &Hub, node: String) -> StatusFn {
    let attached = sensor.attached.clone();
    let containerd = Arc::clone(&sensor.containerd);
    let index = Arc::clone(&sensor.index);
    let stats = Arc::clone(&sensor.stats);
    let counters = sensor.counter_reader();
    let hub = hub.clone();
    Arc::new(move || {
        service::status(&StatusInputs {
            node: &node,
            attached: &attached,
            containerd: &containerd,
            index: &index,
            hub: &hub,
            stats: &stats,
            kernel: &counters.read(),
        })
    })
}
