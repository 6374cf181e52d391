//! The commands: each connects, asks, and prints.

use std::io::Write;

use anyhow::Result;
use jobwatch_proto::v1 as pb;
use tokio::signal::unix::{SignalKind, signal};

use crate::args::{Cli, Command, EventFormat, EventsArgs, StatusFormat, TableFormat};
use crate::error::{UsageError, grpc};
use crate::{compact, connect, json, table};

pub async fn run(cli: Cli) -> Result<()> {
    // Usage problems first: they must not depend on whether a sensor or collector is reachable.
    if let Command::Alerts(alerts) = &cli.command {
        if cli.target.collector.is_none() {
            return Err(alerts_need_a_collector().into());
        }
        alerts.check()?;
    }
    if let Some(socket) = &cli.target.collector {
        return crate::collector::run(socket.clone(), cli.command).await;
    }
    if let Command::Events(events) = &cli.command
        && !events.follow
    {
        return Err(UsageError(
            "a sensor only streams live events: use `jobwatch events --follow` \
             (the history of events will come from the collector)"
                .to_string(),
        )
        .into());
    }
    let mut client = connect::connect(&cli.target).await?;
    match cli.command {
        Command::Events(events) => follow(&mut client, &events).await,
        Command::Containers { output, all } => {
            let request = pb::ListContainersRequest {
                include_sandboxes: all,
            };
            let response = client
                .list_containers(request)
                .await
                .map_err(|s| grpc(&s))?
                .into_inner();
            let mut containers = response.containers;
            containers.sort_by(|a, b| {
                let key = |c: &pb::Container| {
                    let pod = c.pod.clone().unwrap_or_default();
                    (pod.namespace, pod.name, c.name.clone(), c.id.clone())
                };
                key(a).cmp(&key(b))
            });
            match output {
                TableFormat::Table => print(&table::containers_table(&containers)),
                TableFormat::Json => containers
                    .iter()
                    .try_for_each(|c| print_line(&json::container_json(c).to_string())),
            }
        }
        Command::Container { id, output } => {
            let container = client
                .get_container(pb::GetContainerRequest { id })
                .await
                .map_err(|s| grpc(&s))?
                .into_inner();
            match output {
                TableFormat::Table => print(&table::container_detail(&container)),
                TableFormat::Json => print_line(&json::container_json(&container).to_string()),
            }
        }
        Command::Status { output } => {
            let status = client
                .get_status(pb::GetStatusRequest {})
                .await
                .map_err(|s| grpc(&s))?
                .into_inner();
            match output {
                StatusFormat::Text => print(&table::status_text(&status)),
                StatusFormat::Json => print_line(&json::status_json(&status).to_string()),
            }
        }
        // Refused above, before connecting; kept so that the match stays exhaustive.
        Command::Alerts(_) => Err(alerts_need_a_collector().into()),
    }
}

fn alerts_need_a_collector() -> UsageError {
    UsageError(
        "alerts come from the collector, which runs the detection rules; a sensor raises none: \
         use `jobwatch --collector /run/jobwatch/collector.sock alerts`"
            .to_string(),
    )
}

/// Streams events until the sensor ends the stream, or Ctrl-C or SIGTERM (all exit 0).
async fn follow(
    client: &mut pb::sensor_client::SensorClient<tonic::transport::Channel>,
    events: &EventsArgs,
) -> Result<()> {
    // Registered before the first event is printed, so an early Ctrl-C is never missed.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut stream = client
        .get_events(events.request())
        .await
        .map_err(|s| grpc(&s))?
        .into_inner();
    loop {
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            message = stream.message() => match message.map_err(|s| grpc(&s))? {
                Some(event) => print_line(&match events.output {
                    EventFormat::Compact => compact::event_line(&event),
                    EventFormat::Json => json::event_json(&event).to_string(),
                })?,
                None => {
                    eprintln!("jobwatch: the sensor ended the event stream");
                    return Ok(());
                }
            },
        }
    }
}

pub fn print(text: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    out.write_all(text.as_bytes())?;
    out.flush()?;
    Ok(())
}

pub fn print_line(line: &str) -> Result<()> {
    let mut out = std::io::stdout().lock();
    writeln!(out, "{line}")?;
    out.flush()?;
    Ok(())
}
