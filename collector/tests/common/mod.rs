//! Shared helpers of the collector's integration tests: a collector in-process on a Unix
//! socket and a real SQLite file, a tonic client over that socket, events.

#![allow(dead_code, reason = "each test binary uses a subset")]

use std::{
    path::{Path, PathBuf},
    time::{SystemTime, UNIX_EPOCH},
};

use collector::{config::Config, server};
use jobwatch_proto::v1::{self as pb, collector_client::CollectorClient};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Channel, Endpoint};

/// A running collector.
pub struct Harness {
    pub cancel: CancellationToken,
    pub running: Option<server::Running>,
    pub socket: PathBuf,
}

impl Harness {
    /// Starts a collector on `dir/collector.sock` with `dir/events.db`.
    pub async fn start(dir: &Path, tweak: impl FnOnce(&mut Config)) -> Harness {
        let mut config = Config {
            db_path: dir.join("events.db"),
            socket: dir.join("collector.sock"),
            ..Config::default()
        };
        tweak(&mut config);
        let socket = config.socket.clone();
        let cancel = CancellationToken::new();
        let running = server::start(config, cancel.clone())
            .await
            .expect("collector starts");
        Harness {
            cancel,
            running: Some(running),
            socket,
        }
    }

    /// Stops the collector and waits until it has.
    pub async fn stop(mut self) {
        self.cancel.cancel();
        if let Some(r) = self.running.take() {
            tokio::time::timeout(std::time::Duration::from_secs(10), r.wait())
                .await
                .expect("collector stops in time")
                .expect("collector stops cleanly");
        }
    }

    /// A client over the Unix socket.
    pub async fn client(&self) -> CollectorClient<Channel> {
        CollectorClient::new(self.channel().await)
    }

    /// A channel over the Unix socket.
    pub async fn channel(&self) -> Channel {
        let path = self.socket.clone();
        Endpoint::try_from("http://[::]:50051")
            .expect("endpoint")
            .connect_with_connector(tower::service_fn(move |_| {
                let p = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(p).await?,
                    ))
                }
            }))
            .await
            .expect("connect to the collector")
    }
}

/// An hour ago, ns since the epoch: old enough to order, young enough to keep.
pub fn base_time() -> i64 {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_nanos() as i64;
    now - 3_600_000_000_000
}

/// A container reference of a CronJob's pod.
pub fn cref(id: &str, ns: &str, cronjob: &str) -> pb::ContainerRef {
    pb::ContainerRef {
        id: id.into(),
        pod: Some(pb::Pod {
            name: format!("{cronjob}-pod"),
            namespace: ns.into(),
            ..Default::default()
        }),
        workload: Some(pb::Workload {
            kind: pb::WorkloadKind::CronJob as i32,
            name: cronjob.into(),
            cronjob: Some(pb::CronJobRef {
                name: cronjob.into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        ..Default::default()
    }
}

/// A process exec event.
pub fn exec(seq: u64, binary: &str, c: Option<pb::ContainerRef>) -> pb::Event {
    pb::Event {
        node: "node-a".into(),
        time_unix_nano: base_time() / 1_000_000_000 * 1_000_000_000 + seq as i64 * 1000,
        boot_ns: seq,
        seq,
        kind: Some(pb::event::Kind::ProcessExec(pb::ProcessExec {
            binary: binary.into(),
            container: c,
            ..Default::default()
        })),
    }
}

/// A file creation event.
pub fn file(seq: u64, op: i32, c: Option<pb::ContainerRef>) -> pb::Event {
    pb::Event {
        seq,
        kind: Some(pb::event::Kind::FileCreated(pb::FileCreated {
            operation: op,
            path: "/tmp/x".into(),
            container: c,
            process: Some(pb::Process {
                binary: "/bin/touch".into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..exec(seq, "", None)
    }
}

/// A batch of `events` for sensor `node-a`, run `run`.
pub fn batch(run: &str, events: Vec<pb::Event>) -> pb::ReportBatch {
    use prost::Message;
    pb::ReportBatch {
        sensor: "node-a".into(),
        run_id: run.into(),
        events: events.iter().map(|e| e.encode_to_vec().into()).collect(),
    }
}

/// Sends the batches on one Report stream, one at a time, and returns the acks (or the
/// status that ended the stream).
pub async fn report(
    client: &mut CollectorClient<Channel>,
    batches: Vec<pb::ReportBatch>,
    token: Option<&str>,
) -> Result<Vec<pb::ReportAck>, tonic::Status> {
    let (tx, rx) = tokio::sync::mpsc::channel(16);
    let mut req = tonic::Request::new(ReceiverStream::new(rx));
    if let Some(t) = token {
        req.metadata_mut().insert(
            "authorization",
            format!("Bearer {t}").parse().expect("ascii header"),
        );
    }
    let mut acks_stream = client.report(req).await?.into_inner();
    let mut acks = Vec::new();
    for b in batches {
        tx.send(b).await.expect("stream open");
        match acks_stream.message().await? {
            Some(a) => acks.push(a),
            None => panic!("stream ended without an ack"),
        }
    }
    Ok(acks)
}

/// Every stored event matching the query (one page of at most 10,000).
pub async fn query(
    client: &mut CollectorClient<Channel>,
    req: pb::QueryEventsRequest,
) -> Vec<pb::StoredEvent> {
    client
        .query_events(req)
        .await
        .expect("query")
        .into_inner()
        .events
}

/// The seqs of stored events.
pub fn seqs(events: &[pb::StoredEvent]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e.event.as_ref().expect("event").seq)
        .collect()
}

/// A counter of `GetStatus`.
pub async fn counter(client: &mut CollectorClient<Channel>, name: &str) -> u64 {
    let status = client
        .get_status(pb::CollectorStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    status
        .counters
        .iter()
        .find(|c| c.name == name)
        .unwrap_or_else(|| panic!("no counter {name}"))
        .value
}
