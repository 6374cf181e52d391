//! The commands against a collector: stored events (with their history), a live stream of
//! every node's events, containers of every node, the collector's status, and the alerts of
//! its detection rules (stored, or live).

use std::path::PathBuf;

use anyhow::Result;
use jobwatch_proto::v1 as pb;
use serde_json::json;
use tokio::signal::unix::{SignalKind, signal};

use crate::args::{
    AlertFormat, AlertsArgs, Command, EventFormat, EventsArgs, StatusFormat, TableFormat,
};
use crate::commands::{print, print_line};
use crate::{compact, connect, json, table};

type Client = pb::collector_client::CollectorClient<tonic::transport::Channel>;

/// Most events (or alerts) one query page asks for.
const PAGE: u32 = 1000;

/// A gRPC error from the collector, as `code: message`.
fn grpc(status: &tonic::Status) -> anyhow::Error {
    crate::error::grpc_from("the collector", status)
}

pub async fn run(socket: PathBuf, command: Command) -> Result<()> {
    let channel = connect::connect_socket(socket, "the collector").await?;
    let mut client = Client::new(channel);
    match command {
        Command::Events(events) if events.follow => stream(&mut client, &events).await,
        Command::Events(events) => query(&mut client, &events).await,
        Command::Alerts(alerts) if alerts.follow => stream_alerts(&mut client, &alerts).await,
        Command::Alerts(alerts) => list_alerts(&mut client, &alerts).await,
        Command::Containers { output, all } => {
            let containers = containers(&mut client, all).await?;
            match output {
                TableFormat::Table => print(&table::containers_table(&containers)),
                TableFormat::Json => containers
                    .iter()
                    .try_for_each(|c| print_line(&json::container_json(c).to_string())),
            }
        }
        Command::Container { id, output } => {
            let matches: Vec<pb::Container> = containers(&mut client, true)
                .await?
                .into_iter()
                .filter(|c| c.id.starts_with(&id))
                .collect();
            let container = match matches.as_slice() {
                [one] => one,
                [] => anyhow::bail!("no container matches {id:?}"),
                many => anyhow::bail!(
                    "{id:?} matches {} containers: give more of the id",
                    many.len()
                ),
            };
            match output {
                TableFormat::Table => print(&table::container_detail(container)),
                TableFormat::Json => print_line(&json::container_json(container).to_string()),
            }
        }
        Command::Status { output } => {
            let s = client
                .get_status(pb::CollectorStatusRequest {})
                .await
                .map_err(|s| grpc(&s))?
                .into_inner();
            match output {
                StatusFormat::Json => print_line(&status_json(&s).to_string()),
                StatusFormat::Text => print(&status_text(&s)),
            }
        }
    }
}

fn render(event: &pb::Event, format: EventFormat) -> String {
    match format {
        EventFormat::Compact => compact::event_line(event),
        EventFormat::Json => json::event_json(event).to_string(),
    }
}

/// Stored events matching the filters, oldest first, page by page up to `--limit`.
async fn query(client: &mut Client, events: &EventsArgs) -> Result<()> {
    let filters = events.request();
    let mut after_id = 0;
    let mut left = events.limit;
    while left > 0 {
        let page = client
            .query_events(pb::QueryEventsRequest {
                allow_list: filters.allow_list.clone(),
                deny_list: filters.deny_list.clone(),
                limit: left.min(PAGE),
                after_id,
                ..Default::default()
            })
            .await
            .map_err(|s| grpc(&s))?
            .into_inner()
            .events;
        let Some(last) = page.last() else { break };
        after_id = last.id;
        left = left.saturating_sub(page.len() as u32);
        for stored in &page {
            if let Some(event) = &stored.event {
                print_line(&render(event, events.output))?;
            }
        }
    }
    Ok(())
}

/// New events of every node as the collector stores them, until Ctrl-C.
async fn stream(client: &mut Client, events: &EventsArgs) -> Result<()> {
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let filters = events.request();
    let mut stream = client
        .stream_events(pb::StreamEventsRequest {
            allow_list: filters.allow_list,
            deny_list: filters.deny_list,
            nodes: vec![],
        })
        .await
        .map_err(|s| grpc(&s))?
        .into_inner();
    loop {
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            message = stream.message() => match message.map_err(|s| grpc(&s))? {
                Some(stored) => {
                    if let Some(event) = &stored.event {
                        print_line(&render(event, events.output))?;
                    }
                }
                None => return Ok(()),
            },
        }
    }
}

fn render_alert(alert: &pb::Alert, format: AlertFormat) -> String {
    match format {
        AlertFormat::Compact => compact::alert_line(alert),
        AlertFormat::Json => json::alert_json(alert).to_string(),
    }
}

/// Stored alerts matching the filters, oldest first, page by page up to `--limit`.
async fn list_alerts(client: &mut Client, alerts: &AlertsArgs) -> Result<()> {
    let mut after_id = 0;
    let mut left = alerts.limit;
    while left > 0 {
        let page = client
            .list_alerts(alerts.list_request(after_id, left.min(PAGE)))
            .await
            .map_err(|s| grpc(&s))?
            .into_inner()
            .alerts;
        let Some(last) = page.last() else { break };
        // Ids increase; one that does not would make the next page ask for this one again.
        let advanced = last.id > after_id;
        after_id = last.id;
        // Never more than asked for, even from a collector that sends a longer page.
        let shown = page.len().min(left as usize);
        left -= shown as u32;
        for alert in &page[..shown] {
            print_line(&render_alert(alert, alerts.output))?;
        }
        if !advanced {
            break;
        }
    }
    Ok(())
}

/// New alerts as the collector raises them, until Ctrl-C or SIGTERM (exit 0).
async fn stream_alerts(client: &mut Client, alerts: &AlertsArgs) -> Result<()> {
    // Registered before the first alert is printed, so an early Ctrl-C is never missed.
    let mut interrupt = signal(SignalKind::interrupt())?;
    let mut terminate = signal(SignalKind::terminate())?;
    let mut stream = client
        .stream_alerts(pb::StreamAlertsRequest {
            filter: Some(alerts.filter()),
        })
        .await
        .map_err(|s| grpc(&s))?
        .into_inner();
    loop {
        tokio::select! {
            _ = interrupt.recv() => return Ok(()),
            _ = terminate.recv() => return Ok(()),
            message = stream.message() => match message.map_err(|s| grpc(&s))? {
                Some(alert) => print_line(&render_alert(&alert, alerts.output))?,
                None => {
                    eprintln!("jobwatch: the collector ended the alert stream");
                    return Ok(());
                }
            },
        }
    }
}

async fn containers(client: &mut Client, all: bool) -> Result<Vec<pb::Container>> {
    let response = client
        .list_containers(pb::CollectorListContainersRequest { nodes: vec![] })
        .await
        .map_err(|s| grpc(&s))?
        .into_inner();
    Ok(response
        .containers
        .into_iter()
        .filter_map(|nc| nc.container)
        .filter(|c| all || c.kind != pb::ContainerKind::Sandbox as i32)
        .collect())
}

fn status_json(s: &pb::CollectorStatus) -> serde_json::Value {
    json!({
        "version": s.version,
        "events_stored": s.events_stored,
        "store_bytes": s.store_bytes,
        "sensors": s.sensors.iter().map(|x| json!({
            "sensor": x.sensor,
            "run_id": x.run_id,
            "last_seq": x.last_seq,
            "last_seen_unix_nano": x.last_seen_unix_nano,
        })).collect::<Vec<_>>(),
        "counters": s.counters.iter().map(|c| json!({"name": c.name, "value": c.value})).collect::<Vec<_>>(),
    })
}

fn status_text(s: &pb::CollectorStatus) -> String {
    let mut out = format!(
        "collector {}\nevents stored: {}\nstore bytes: {}\n",
        s.version, s.events_stored, s.store_bytes
    );
    for x in &s.sensors {
        out.push_str(&format!(
            "sensor {} run {} last seq {} last seen {}\n",
            x.sensor,
            x.run_id,
            x.last_seq,
            crate::time::rfc3339_millis(x.last_seen_unix_nano)
        ));
    }
    for c in &s.counters {
        out.push_str(&format!("{}={}\n", c.name, c.value));
    }
    out
}
