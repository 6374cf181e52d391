//! The `sensor` command: options, start-up, the output task, and shutdown on SIGTERM/SIGINT.

use std::path::PathBuf;

use clap::Parser;
use tokio::signal::unix::{SignalKind, signal};

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::{
    api::{
        convert::ExecIds,
        hub::{Hub, Sink},
        server::{self, ApiSettings, serve},
        service::{self, SensorApi, StatusFn, StatusInputs},
    },
    clock::BootClock,
    config::Config,
    metrics, output,
    pipeline::RunningSensor,
    report::{ReportEndpoint, Reporter, ReporterSettings},
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
    release_load_memory();

    let node = config.node();
    let clock = BootClock::now();
    let ids = ExecIds {
        node: node.clone(),
        boot_unix_secs: clock.boot_unix_secs(),
    };
    let api_cancel = CancellationToken::new();
    let report_cancel = CancellationToken::new();
    let reporter = reporter_settings(&config, &node)
        .map(|settings| Reporter::start(settings, report_cancel.clone()));
    let sink: Option<Sink> = reporter
        .clone()
        .map(|r| -> Sink { Box::new(move |e| r.offer_encoded(e)) });
    let hub = Hub::with_sink(ids, clock, config.api.subscriber_queue, sink);
    let status = status_source(&sensor, &hub, node, reporter.clone());
    if let Some(addr) = config.metrics_address {
        let (listener, bound) = metrics::bind(addr).await?;
        tracing::info!(address = %bound, "Prometheus metrics at /metrics");
        let ring_buffer_bytes = u64::from(config.ring_buffer_bytes);
        let lag = reporter.clone();
        let extra = move || {
            let mut extra = vec![("ring_buffer_bytes", ring_buffer_bytes)];
            if let Some(r) = &lag {
                extra.push(("report_lag_events", r.stats().lag_events));
            }
            extra
        };
        tokio::spawn(metrics::serve_listener(
            listener,
            Arc::clone(&status),
            extra,
            api_cancel.clone(),
        ));
    }
    if let Some(addr) = config.api.health_address {
        let cancel = api_cancel.clone();
        tokio::spawn(async move {
            if let Err(e) = server::serve_health(addr, cancel).await {
                tracing::error!(error = %e, "gRPC health listener failed");
            }
        });
        tracing::info!(address = %addr, "gRPC health (plaintext, health only)");
    }
    let mut server = api_settings(&config).map(|settings| {
        let api = SensorApi::new(hub.clone(), Arc::clone(&sensor.index), Arc::clone(&status));
        tokio::spawn(serve(settings, api, api_cancel.clone()))
    });
    if let Some(path) = Some(&config.api.socket).filter(|p| !p.as_os_str().is_empty()) {
        // The server binds in its own task: say it listens once the socket is there.
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while !path.exists() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(10)).await;
        }
        if path.exists() {
            tracing::info!(socket = %path.display(), "API listening; watch events with: jobwatch events --follow");
        }
    }

    let events = std::mem::replace(&mut sensor.events, tokio::sync::mpsc::channel(1).1);
    let stdout_json = config.stdout_json;
    let dispatch_hub = hub.clone();
    let (output_failed_tx, mut output_failed) = tokio::sync::oneshot::channel();
    let mut writer = tokio::task::spawn_blocking(move || {
        let rt = tokio::runtime::Handle::current();
        let out = stdout_json.then(|| std::io::stdout().lock());
        rt.block_on(output::dispatch(
            events,
            Some(dispatch_hub),
            out,
            Some(output_failed_tx),
        ))
    });

    let api_failed = async {
        match server.as_mut() {
            Some(task) => match task.await {
                Ok(Ok(())) => None,
                Ok(Err(e)) => Some(format!("the API stopped: {e}")),
                Err(e) => Some(format!("the API stopped: API task failed: {e}")),
            },
            None => std::future::pending().await,
        }
    };
    // A reader or an output that stops on its own would leave a sensor that looks alive but
    // sees or passes on nothing: stop with an error instead, so that the DaemonSet restarts it.
    let mut output_ended = false;
    let failure = tokio::select! {
        _ = sigterm.recv() => { tracing::info!("SIGTERM: shutting down"); None }
        _ = sigint.recv() => { tracing::info!("SIGINT: shutting down"); None }
        e = api_failed => e,
        cause = sensor.failed() => Some(format!("the ring buffer reader stopped: {cause}")),
        Ok(e) = &mut output_failed => {
            Some(format!("the event output stopped: writing events failed: {e}"))
        }
        ended = &mut writer => {
            output_ended = true;
            Some(format!("the event output stopped: {}", output_end(ended)))
        }
    };
    api_cancel.cancel();
    let stats = Arc::clone(&sensor.stats);
    let containerd = Arc::clone(&sensor.containerd);
    let kernel = sensor.shutdown().await;
    if !output_ended {
        match writer.await {
            Ok(n) => tracing::info!(events = n, "output closed"),
            ended => tracing::warn!(error = %output_end(ended), "output failed"),
        }
    }
    // Every event is in the reporter now: give the collector a moment to acknowledge them.
    if let Some(r) = &reporter {
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
        while r.stats().lag_events > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        }
        let s = r.stats();
        if s.lag_events > 0 {
            tracing::warn!(
                undelivered = s.lag_events,
                "events not acknowledged by the collector at shutdown"
            );
        }
        tracing::info!(?s, "reporter");
    }
    report_cancel.cancel();
    let kernel: Vec<String> = kernel.named().map(|(k, v)| format!("{k}={v}")).collect();
    tracing::info!(?stats, kernel = %kernel.join(" "), ?containerd, hub = ?hub.stats(), "final counters");
    match failure {
        Some(e) => Err(anyhow::anyhow!(e)),
        None => Ok(()),
    }
}

/// What ended the output task, for messages.
fn output_end(ended: Result<u64, tokio::task::JoinError>) -> String {
    match ended {
        Ok(n) => format!("closed after {n} events"),
        Err(e) => format!("the output task failed: {e}"),
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

/// The reporter's settings from the `[report]` table; None when no collector is configured.
fn reporter_settings(config: &Config, node: &str) -> Option<ReporterSettings> {
    let r = &config.report;
    let endpoint = match (&r.socket, &r.address, &r.ca) {
        (Some(socket), _, _) => ReportEndpoint::Unix(socket.clone()),
        (None, Some(url), Some(ca)) => ReportEndpoint::Https {
            url: url.clone(),
            ca_pem_path: ca.clone(),
            client_cert_path: r.cert.clone(),
            client_key_path: r.key.clone(),
        },
        _ => return None,
    };
    let mut settings = ReporterSettings::new(endpoint, node);
    settings.token_file = r.token_file.clone();
    if let Some(n) = r.buffer_events {
        settings.buffer_events = n;
    }
    if let Some(ms) = r.batch_delay_ms {
        settings.batch_delay = std::time::Duration::from_millis(ms);
    }
    tracing::info!(collector = %settings.endpoint, "reporting events to the collector");
    Some(settings)
}

/// Builds the GetStatus answer from the running sensor's parts.
fn status_source(
    sensor: &RunningSensor,
    hub: &Hub,
    node: String,
    reporter: Option<Reporter>,
) -> StatusFn {
    let attached = sensor.attached.clone();
    let containerd = Arc::clone(&sensor.containerd);
    let index = Arc::clone(&sensor.index);
    let stats = Arc::clone(&sensor.stats);
    let counters = sensor.counter_reader();
    let hub = hub.clone();
    Arc::new(move || {
        let mut status = service::status(&StatusInputs {
            node: &node,
            attached: &attached,
            containerd: &containerd,
            index: &index,
            hub: &hub,
            stats: &stats,
            kernel: &counters.read(),
        });
        if let Some(r) = &reporter {
            let s = r.stats();
            for (name, value) in [
                ("reporter_offered", s.offered),
                ("reporter_acked_seq", s.acked),
                ("reporter_sent_batches", s.sent_batches),
                ("reporter_resent_events", s.resent_events),
                ("reporter_buffer_lost", s.buffer_lost),
                ("reporter_reconnects", s.reconnects),
                ("reporter_connected", u64::from(s.connected)),
                ("reporter_lag_events", s.lag_events),
            ] {
                status.counters.push(jobwatch_proto::v1::Counter {
                    name: name.to_string(),
                    value,
                });
            }
            for (kind, value) in s.buffer_lost_by_kind {
                status.counters.push(jobwatch_proto::v1::Counter {
                    name: format!("reporter_buffer_lost_{}", kind.name()),
                    value,
                });
            }
        }
        status
    })
}

/// Gives the heap that loading needed back to the system. Parsing the kernel's BTF and
/// relocating the programs take about 20 MiB that are all free once the programs are attached,
/// but the allocator keeps them mapped (resident) unless asked.
fn release_load_memory() {
    #[cfg(target_env = "gnu")]
    // SAFETY: malloc_trim only returns free memory of the allocator to the system.
    unsafe {
        libc::malloc_trim(0);
    }
}
