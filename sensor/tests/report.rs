//! The collector reporter against a FAKE collector written here (not the real collector crate):
//! a tonic `Collector` server on a real Unix socket that stores events de-duplicated by
//! `(run_id, seq)`, counts duplicates and acknowledges each batch. It runs on its own Tokio
//! runtime so a test can kill it abruptly (like a crash) and start it again on the same socket
//! with the same storage (like a database).

use std::{
    collections::HashSet,
    path::{Path, PathBuf},
    sync::{Arc, Mutex},
    time::Duration,
};

use jobwatch_proto::v1::{
    self as pb,
    collector_server::{Collector, CollectorServer},
};
use sensor::{
    loss::LossKind,
    report::{ReportEndpoint, Reporter, ReporterSettings, ReporterStats},
};
use tokio::time::Instant;
use tokio_stream::wrappers::{ReceiverStream, UnixListenerStream};
use tokio_util::sync::CancellationToken;
use tonic::{Request, Response, Status, Streaming};

// ---------------------------------------------------------------------------------------------
// The fake collector

#[derive(Default)]
struct Store {
    /// Stored events with their run id, in arrival order.
    stored: Vec<(String, pb::Event)>,
    seen: HashSet<(String, u64)>,
    duplicates: u64,
    /// While false the fake stores but does not acknowledge.
    no_acks: bool,
}

impl Store {
    fn of_run(&self, run_id: &str) -> Vec<&pb::Event> {
        self.stored
            .iter()
            .filter(|(run, _)| run == run_id)
            .map(|(_, e)| e)
            .collect()
    }

    fn seqs(&self) -> Vec<u64> {
        self.stored.iter().map(|(_, e)| e.seq).collect()
    }
}

type Shared = Arc<Mutex<Store>>;

fn lock(store: &Shared) -> std::sync::MutexGuard<'_, Store> {
    store.lock().unwrap_or_else(|p| p.into_inner())
}

struct Fake {
    store: Shared,
}

#[tonic::async_trait]
impl Collector for Fake {
    type ReportStream = ReceiverStream<Result<pb::ReportAck, Status>>;
    type StreamEventsStream = ReceiverStream<Result<pb::StoredEvent, Status>>;
    type StreamAlertsStream = ReceiverStream<Result<pb::Alert, Status>>;

    async fn report(
        &self,
        request: Request<Streaming<pb::ReportBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        let mut inbound = request.into_inner();
        let (tx, rx) = tokio::sync::mpsc::channel(64);
        let store = Arc::clone(&self.store);
        tokio::spawn(async move {
            while let Ok(Some(batch)) = inbound.message().await {
                let events: Vec<pb::Event> = batch
                    .events
                    .iter()
                    .map(|b| prost::Message::decode(b.clone()).expect("the sensor's events decode"))
                    .collect();
                let Some(last) = events.last().map(|e| e.seq) else {
                    continue;
                };
                let ack = {
                    let mut s = lock(&store);
                    for event in events {
                        if s.seen.insert((batch.run_id.clone(), event.seq)) {
                            s.stored.push((batch.run_id.clone(), event));
                        } else {
                            s.duplicates += 1;
                        }
                    }
                    !s.no_acks
                };
                if ack {
                    let ack = pb::ReportAck {
                        run_id: batch.run_id.clone(),
                        seq: last,
                    };
                    if tx.send(Ok(ack)).await.is_err() {
                        break;
                    }
                }
            }
        });
        Ok(Response::new(ReceiverStream::new(rx)))
    }

    async fn query_events(
        &self,
        _: Request<pb::QueryEventsRequest>,
    ) -> Result<Response<pb::QueryEventsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn stream_events(
        &self,
        _: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_containers(
        &self,
        _: Request<pb::CollectorListContainersRequest>,
    ) -> Result<Response<pb::CollectorListContainersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_status(
        &self,
        _: Request<pb::CollectorStatusRequest>,
    ) -> Result<Response<pb::CollectorStatus>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_alerts(
        &self,
        _: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn stream_alerts(
        &self,
        _: Request<pb::StreamAlertsRequest>,
    ) -> Result<Response<Self::StreamAlertsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }
}

/// A running fake collector; `kill` drops its whole runtime (every connection dies at once).
struct Running {
    runtime: Option<tokio::runtime::Runtime>,
    socket: PathBuf,
}

impl Running {
    fn start(socket: &Path, store: &Shared, token: Option<&str>) -> Running {
        let _ = std::fs::remove_file(socket);
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("fake collector runtime");
        let listener = std::os::unix::net::UnixListener::bind(socket).expect("bind");
        listener.set_nonblocking(true).expect("nonblocking");
        let fake = Fake {
            store: Arc::clone(store),
        };
        let expected = token.map(|t| format!("Bearer {t}"));
        let service = CollectorServer::with_interceptor(fake, move |request: Request<()>| {
            let Some(expected) = &expected else {
                return Ok(request);
            };
            match request.metadata().get("authorization") {
                Some(value) if value.to_str().ok() == Some(expected.as_str()) => Ok(request),
                _ => Err(Status::unauthenticated("bad or missing bearer token")),
            }
        });
        {
            let _guard = runtime.enter();
            let listener = tokio::net::UnixListener::from_std(listener).expect("listener");
            runtime.spawn(
                tonic::transport::Server::builder()
                    .add_service(service)
                    .serve_with_incoming(UnixListenerStream::new(listener)),
            );
        }
        Running {
            runtime: Some(runtime),
            socket: socket.to_path_buf(),
        }
    }

    fn kill(&mut self) {
        if let Some(runtime) = self.runtime.take() {
            runtime.shutdown_background();
        }
        let _ = std::fs::remove_file(&self.socket);
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        self.kill();
    }
}

// ---------------------------------------------------------------------------------------------
// Helpers

fn event(seq: u64) -> pb::Event {
    pb::Event {
        node: "node-a".into(),
        time_unix_nano: 1_700_000_000_000_000_000 + seq as i64,
        boot_ns: seq * 1000,
        seq,
        kind: Some(pb::event::Kind::ProcessExit(pb::ProcessExit {
            pid: 1000 + seq as u32,
            tid: 1000 + seq as u32,
            binary: "/usr/bin/true".into(),
            exit_code: Some(0),
            ..Default::default()
        })),
    }
}

/// A file creation event (its loss counts as a file's).
fn file_event(seq: u64) -> pb::Event {
    pb::Event {
        kind: Some(pb::event::Kind::FileCreated(pb::FileCreated {
            path: format!("/tmp/f{seq}"),
            ..Default::default()
        })),
        ..event(seq)
    }
}

fn lost_of(stats: &ReporterStats, kind: LossKind) -> u64 {
    stats
        .buffer_lost_by_kind
        .iter()
        .find(|(k, _)| *k == kind)
        .map_or(0, |(_, n)| *n)
}

fn settings(socket: &Path) -> ReporterSettings {
    ReporterSettings {
        max_backoff: Duration::from_millis(200),
        ..ReporterSettings::new(ReportEndpoint::Unix(socket.to_path_buf()), "node-a")
    }
}

async fn wait_for(what: &str, reporter: &Reporter, mut done: impl FnMut(&ReporterStats) -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let stats = reporter.stats();
        if done(&stats) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {what}: {stats:?}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn lost_count(e: &pb::Event) -> Option<u64> {
    match &e.kind {
        Some(pb::event::Kind::LostEvents(lost))
            if lost.cause == pb::LossCause::ReporterBuffer as i32 =>
        {
            Some(lost.count)
        }
        _ => None,
    }
}

/// (real events stored, lost events reported) for a run; asserts seqs are stored in order.
fn accounting(store: &Shared, run_id: &str) -> (u64, u64) {
    let s = lock(store);
    let events = s.of_run(run_id);
    assert!(
        events.windows(2).all(|w| w[0].seq < w[1].seq),
        "stored out of order"
    );
    let mut real = 0;
    let mut lost = 0;
    for e in events {
        match lost_count(e) {
            Some(n) => lost += n,
            None => real += 1,
        }
    }
    (real, lost)
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connected_stream_delivers_every_event_once_in_order() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("collector.sock");
    let store = Shared::default();
    let _collector = Running::start(&socket, &store, None);
    let cancel = CancellationToken::new();
    let reporter = Reporter::start(settings(&socket), cancel.clone());
    wait_for("connection", &reporter, |s| s.connected).await;

    for seq in 1..=10_000 {
        reporter.offer(event(seq));
    }
    wait_for("all acked", &reporter, |s| s.acked == 10_000).await;

    let stats = reporter.stats();
    assert_eq!(stats.offered, 10_000);
    assert_eq!(stats.lag_events, 0);
    assert_eq!(stats.buffered, 0);
    assert_eq!(stats.buffer_lost, 0);
    assert_eq!(stats.resent_events, 0);
    assert!(
        stats.sent_batches >= 10,
        "batches of at most 1000: {stats:?}"
    );
    let s = lock(&store);
    let seqs = s.seqs();
    assert_eq!(seqs, (1..=10_000).collect::<Vec<_>>());
    assert_eq!(s.duplicates, 0);
    assert_eq!(s.stored[41].1, event(42), "events arrive intact");
    drop(s);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn collector_restart_loses_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("collector.sock");
    let store = Shared::default();
    let mut collector = Running::start(&socket, &store, None);
    let cancel = CancellationToken::new();
    let reporter = Reporter::start(settings(&socket), cancel.clone());

    // Kill it mid-stream: events keep coming while the collector dies.
    for seq in 1..=3_000 {
        reporter.offer(event(seq));
        if seq == 2_000 {
            wait_for("some acks", &reporter, |s| s.acked >= 1_000).await;
            collector.kill();
        }
    }
    wait_for("disconnect", &reporter, |s| !s.connected).await;
    for seq in 3_001..=5_000 {
        reporter.offer(event(seq));
    }
    assert!(reporter.stats().acked < 5_000);

    let _collector = Running::start(&socket, &store, None);
    wait_for("all acked after restart", &reporter, |s| s.acked == 5_000).await;

    let stats = reporter.stats();
    assert!(stats.reconnects >= 1, "{stats:?}");
    assert_eq!(stats.lag_events, 0);
    assert_eq!(stats.buffer_lost, 0);
    let s = lock(&store);
    let seqs = s.seqs();
    assert_eq!(
        seqs,
        (1..=5_000).collect::<Vec<_>>(),
        "every event stored once, in order"
    );
    drop(s);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_buffer_drops_oldest_and_reports_the_loss() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("collector.sock");
    let store = Shared::default();
    let cancel = CancellationToken::new();
    let reporter = Reporter::start(
        ReporterSettings {
            buffer_events: 100,
            ..settings(&socket)
        },
        cancel.clone(),
    );

    // The collector is down. 300 file events, then 700 exits.
    for seq in 1..=1_000 {
        reporter.offer(if seq <= 300 {
            file_event(seq)
        } else {
            event(seq)
        });
    }
    let stats = reporter.stats();
    assert_eq!(stats.buffer_lost, 900);
    assert_eq!(stats.buffered, 100);
    // The oldest 900 went: the 300 files and 600 exits, counted by kind.
    assert_eq!(lost_of(&stats, LossKind::File), 300);
    assert_eq!(lost_of(&stats, LossKind::Exit), 600);
    assert_eq!(lost_of(&stats, LossKind::Exec), 0);
    assert_eq!(lost_of(&stats, LossKind::Other), 0);

    let _collector = Running::start(&socket, &store, None);
    wait_for("all acked", &reporter, |s| s.acked == 1_000).await;

    let (real, lost) = accounting(&store, reporter.run_id());
    assert_eq!(real, 100, "the newest 100 survive");
    assert_eq!(lost, 900);
    assert_eq!(real + lost, 1_000);
    let s = lock(&store);
    let first = &s.stored[0].1;
    assert_eq!(first.seq, 1, "the loss record takes the first dropped seq");
    assert_eq!(lost_count(first), Some(900));
    assert_eq!(s.stored[1].1.seq, 901);
    drop(s);
    assert_eq!(reporter.stats().buffer_lost, 900);
    cancel.cancel();
}

/// Events sent but not acknowledged when the buffer overflows: the collector may already have
/// them, so they are kept (and sent again) and the events never sent are dropped instead; the
/// sensor's loss counter then equals the loss the collector stores.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn overflow_keeps_sent_but_unacked_events_and_counts_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("collector.sock");
    let store = Shared::default();
    lock(&store).no_acks = true;
    let mut collector = Running::start(&socket, &store, None);
    let cancel = CancellationToken::new();
    let reporter = Reporter::start(
        ReporterSettings {
            buffer_events: 100,
            batch_max: 10,
            ..settings(&socket)
        },
        cancel.clone(),
    );
    wait_for("connection", &reporter, |s| s.connected).await;
    // Stored by the collector but never acknowledged.
    for seq in 1..=60 {
        reporter.offer(event(seq));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    while lock(&store).stored.len() < 60 {
        assert!(
            Instant::now() < deadline,
            "the fake did not get the first 60"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    collector.kill();
    wait_for("disconnect", &reporter, |s| !s.connected).await;
    for seq in 61..=500 {
        reporter.offer(event(seq));
    }
    // 60 sent + 40 never sent fit; 61..=460 were dropped.
    assert_eq!(reporter.stats().buffer_lost, 400);
    assert_eq!(reporter.stats().buffered, 100);

    lock(&store).no_acks = false;
    let _collector = Running::start(&socket, &store, None);
    wait_for("all acked", &reporter, |s| s.acked == 500).await;
    let (real, lost) = accounting(&store, reporter.run_id());
    assert_eq!(
        (real, lost),
        (100, 400),
        "1..=60 and 461..=500 stored, 400 lost"
    );
    assert_eq!(lost, reporter.stats().buffer_lost);
    assert_eq!(lost_of(&reporter.stats(), LossKind::Exit), 400);
    // The 60 were sent again after the reconnection and de-duplicated by the collector.
    assert!(lock(&store).duplicates >= 60);
    let s = lock(&store);
    let seqs: Vec<u64> = s.of_run(reporter.run_id()).iter().map(|e| e.seq).collect();
    assert_eq!(
        seqs[59..62],
        [60, 61, 461],
        "the loss record takes the first dropped seq"
    );
    drop(s);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bearer_token_is_required_and_a_fixed_token_is_picked_up() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("collector.sock");
    let good = dir.path().join("good-token");
    let bad = dir.path().join("bad-token");
    std::fs::write(&good, "s3cret\n").expect("token");
    std::fs::write(&bad, "wrong").expect("token");
    let store = Shared::default();
    let _collector = Running::start(&socket, &store, Some("s3cret"));
    let cancel = CancellationToken::new();
    let with_good = Reporter::start(
        ReporterSettings {
            token_file: Some(good),
            ..settings(&socket)
        },
        cancel.clone(),
    );
    let with_bad = Reporter::start(
        ReporterSettings {
            token_file: Some(bad.clone()),
            ..settings(&socket)
        },
        cancel.clone(),
    );
    for seq in 1..=100 {
        with_good.offer(event(seq));
        with_bad.offer(event(seq));
    }
    wait_for("good token acked", &with_good, |s| s.acked == 100).await;
    tokio::time::sleep(Duration::from_millis(800)).await;
    let stats = with_bad.stats();
    assert!(!stats.connected, "{stats:?}");
    assert_eq!(stats.acked, 0);
    assert_eq!(stats.buffered, 100);
    assert_eq!(lock(&store).of_run(with_bad.run_id()).len(), 0);
    assert_eq!(lock(&store).of_run(with_good.run_id()).len(), 100);

    // Fixing the token file is enough: the reporter keeps retrying.
    std::fs::write(&bad, "s3cret").expect("token");
    wait_for("fixed token acked", &with_bad, |s| s.acked == 100).await;
    assert_eq!(lock(&store).of_run(with_bad.run_id()).len(), 100);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offer_never_blocks_when_the_collector_is_down() {
    let dir = tempfile::tempdir().expect("tempdir");
    // Nothing ever listens here.
    let socket = dir.path().join("absent.sock");
    let cancel = CancellationToken::new();
    let reporter = Reporter::start(
        ReporterSettings {
            buffer_events: 1_000,
            ..settings(&socket)
        },
        cancel.clone(),
    );
    for seq in 1..=100_000 {
        reporter.offer(event(seq));
    }
    let stats = reporter.stats();
    assert_eq!(stats.offered, 100_000);
    assert_eq!(stats.buffered, 1_000);
    assert_eq!(stats.buffer_lost, 99_000);
    assert_eq!(stats.lag_events, 100_000);
    assert!(!stats.connected);
    cancel.cancel();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_stops_the_reporter() {
    let dir = tempfile::tempdir().expect("tempdir");
    let socket = dir.path().join("collector.sock");
    let store = Shared::default();
    let _collector = Running::start(&socket, &store, None);
    let cancel = CancellationToken::new();
    let reporter = Reporter::start(settings(&socket), cancel.clone());
    wait_for("connection", &reporter, |s| s.connected).await;
    cancel.cancel();
    wait_for("disconnect", &reporter, |s| !s.connected).await;
    reporter.offer(event(1));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert_eq!(reporter.stats().acked, 0);
    assert!(lock(&store).stored.is_empty());
}
