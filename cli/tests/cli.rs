//! Runs the real `jobwatch` binary against a FAKE sensor: a small gRPC server in this test that
//! implements `sensor_server::Sensor` with canned data and records the requests it gets. The
//! real sensor's server is tested in its own crate; here only the CLI is under test. The
//! `alerts` tests use a fake collector the same way (`collector_server::Collector`, only the
//! alert calls).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use jobwatch_proto::v1 as pb;
use jobwatch_proto::v1::sensor_server::{Sensor, SensorServer};
use pb::event::Kind;
use serde_json::Value;
use tonic::{Request, Response, Status};

/// 2026-11-27T03:45:10.512Z
const T: i64 = 1_795_751_110_512_000_000;

/// What the fake sensor was asked.
#[derive(Default)]
struct Seen {
    event_requests: Mutex<Vec<pb::GetEventsRequest>>,
    list_requests: Mutex<Vec<pb::ListContainersRequest>>,
}

#[derive(Clone, Default)]
struct Fake {
    seen: Arc<Seen>,
}

fn container_ref() -> pb::ContainerRef {
    pb::ContainerRef {
        id: "7115930a5ad1f00d".into(),
        name: "dump".into(),
        image: "busybox".into(),
        pod: Some(pb::Pod {
            name: "backup-29000000-hqzd7".into(),
            namespace: "nightly".into(),
            ..Default::default()
        }),
        workload: Some(pb::Workload {
            kind: pb::WorkloadKind::CronJob as i32,
            name: "backup".into(),
            job: Some(pb::JobRef {
                name: "backup-29000000".into(),
                ..Default::default()
            }),
            ..Default::default()
        }),
        metadata_pending: false,
    }
}

fn container() -> pb::Container {
    let r = container_ref();
    pb::Container {
        id: r.id,
        name: r.name,
        kind: pb::ContainerKind::Container as i32,
        image: r.image,
        pod: r.pod,
        workload: r.workload,
        security: Some(pb::SecurityFacts {
            runs_as_root: true,
            ..Default::default()
        }),
        ..Default::default()
    }
}

fn events() -> Vec<pb::Event> {
    let event = |seq: u64, kind| pb::Event {
        node: "node1".into(),
        time_unix_nano: T + seq as i64 * 1_000_000,
        boot_ns: 1000 + seq,
        seq,
        kind: Some(kind),
    };
    vec![
        event(
            1,
            Kind::ProcessExec(pb::ProcessExec {
                process: Some(pb::Process {
                    pid: 9001,
                    ..Default::default()
                }),
                binary: "/bin/busybox".into(),
                args: vec!["/bin/ls".into(), "/tmp dir".into()],
                container: Some(container_ref()),
                ..Default::default()
            }),
        ),
        event(
            2,
            Kind::ProcessExit(pb::ProcessExit {
                pid: 9001,
                exit_code: Some(3),
                duration_ns: 1_200_000_000,
                binary: "/bin/busybox".into(),
                container: Some(container_ref()),
                ..Default::default()
            }),
        ),
        event(
            3,
            Kind::LostEvents(pb::LostEvents {
                count: 1000,
                cause: pb::LossCause::SlowSubscriber as i32,
            }),
        ),
    ]
}

#[tonic::async_trait]
impl Sensor for Fake {
    type GetEventsStream =
        std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<pb::Event, Status>> + Send>>;

    async fn get_events(
        &self,
        request: Request<pb::GetEventsRequest>,
    ) -> Result<Response<Self::GetEventsStream>, Status> {
        let request = request.into_inner();
        // Asked for namespace "forever", the stream never ends (for the Ctrl-C test).
        let forever = request
            .allow_list
            .iter()
            .any(|f| f.namespaces.iter().any(|n| n == "forever"));
        self.seen.event_requests.lock().unwrap().push(request);
        let items = tokio_stream::iter(events().into_iter().map(Ok));
        if forever {
            use tokio_stream::StreamExt;
            Ok(Response::new(Box::pin(
                items.chain(tokio_stream::pending()),
            )))
        } else {
            Ok(Response::new(Box::pin(items)))
        }
    }

    async fn list_containers(
        &self,
        request: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        self.seen
            .list_requests
            .lock()
            .unwrap()
            .push(request.into_inner());
        Ok(Response::new(pb::ListContainersResponse {
            containers: vec![container()],
        }))
    }

    async fn get_container(
        &self,
        request: Request<pb::GetContainerRequest>,
    ) -> Result<Response<pb::Container>, Status> {
        let id = request.into_inner().id;
        if container().id.starts_with(&id) {
            Ok(Response::new(container()))
        } else {
            Err(Status::not_found(format!("no container matches {id:?}")))
        }
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        Ok(Response::new(pb::Status {
            version: "9.9.9".into(),
            node: "node1".into(),
            kernel: "6.8.0".into(),
            programs_attached: vec!["exec".into(), "exit".into()],
            containerd_connected: true,
            containers_tracked: 1,
            subscribers: 2,
            counters: vec![pb::Counter {
                name: "events_total".into(),
                value: 12345,
            }],
            ..Default::default()
        }))
    }
}

/// A fake sensor serving on a Unix socket in a fresh temporary directory.
struct Harness {
    fake: Fake,
    dir: PathBuf,
    socket: PathBuf,
}

impl Harness {
    async fn start(name: &str) -> Harness {
        let dir = std::env::temp_dir().join(format!("jobwatch-cli-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("sensor.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let fake = Fake::default();
        let service = SensorServer::new(fake.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await
                .unwrap();
        });
        Harness { fake, dir, socket }
    }

    /// Runs `jobwatch --sensor <socket> args...` off the runtime's threads.
    async fn run(&self, args: &[&str]) -> Output {
        run_at(&self.socket, args).await
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn run_at(socket: &Path, args: &[&str]) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobwatch"));
    command.arg("--sensor").arg(socket).args(args);
    tokio::task::spawn_blocking(move || command.output().unwrap())
        .await
        .unwrap()
}

fn stdout(output: &Output) -> String {
    String::from_utf8(output.stdout.clone()).unwrap()
}

fn stderr(output: &Output) -> String {
    String::from_utf8(output.stderr.clone()).unwrap()
}

#[tokio::test(flavor = "multi_thread")]
async fn events_compact_and_filters() {
    let h = Harness::start("compact").await;
    let out = h
        .run(&[
            "events",
            "--follow",
            "-o",
            "compact",
            "--kind",
            "exec",
            "--namespace",
            "nightly",
            "--cronjob",
            "backup",
            "--workload-kind",
            "cronjob",
            "--deny-namespace",
            "kube-system",
            "--deny-binary-prefix",
            "/pause",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(
        lines,
        [
            "2026-11-27T03:45:10.513Z node1 EXEC   nightly/backup(cronjob) job=backup-29000000 \
             pod=backup-29000000-hqzd7 ctr=dump[7115930a] pid=9001 uid=0 /bin/busybox /bin/ls \"/tmp dir\"",
            "2026-11-27T03:45:10.514Z node1 EXIT   nightly/backup(cronjob) job=backup-29000000 \
             pod=backup-29000000-hqzd7 ctr=dump[7115930a] pid=9001 /bin/busybox code=3 after 1.2s",
            "2026-11-27T03:45:10.515Z node1 LOST   1000 events (slow_subscriber)",
        ]
    );

    let requests = h.fake.seen.event_requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [pb::GetEventsRequest {
            allow_list: vec![pb::EventFilter {
                kinds: vec![pb::EventKind::ProcessExec as i32],
                namespaces: vec!["nightly".into()],
                cronjobs: vec!["backup".into()],
                workload_kinds: vec![pb::WorkloadKind::CronJob as i32],
                ..Default::default()
            }],
            deny_list: vec![
                pb::EventFilter {
                    namespaces: vec!["kube-system".into()],
                    ..Default::default()
                },
                pb::EventFilter {
                    binary_prefixes: vec!["/pause".into()],
                    ..Default::default()
                },
            ],
        }]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn events_json() {
    let h = Harness::start("json").await;
    let out = h.run(&["events", "-f", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let events: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(events[0]["kind"], "process_exec");
    assert_eq!(events[0]["seq"], 1);
    assert_eq!(events[0]["time_unix_nano"], T + 1_000_000);
    assert_eq!(events[0]["process_exec"]["args"][1], "/tmp dir");
    assert_eq!(
        events[0]["process_exec"]["container"]["workload"]["kind"],
        "cron_job"
    );
    assert_eq!(events[1]["process_exit"]["exit_code"], 3);
    assert_eq!(events[1]["process_exit"]["duration_ns"], 1_200_000_000);
    assert_eq!(events[2]["lost_events"]["cause"], "slow_subscriber");
    // No flags, no filters.
    let requests = h.fake.seen.event_requests.lock().unwrap().clone();
    assert_eq!(requests, [pb::GetEventsRequest::default()]);
}

#[tokio::test(flavor = "multi_thread")]
async fn containers() {
    let h = Harness::start("containers").await;
    let out = h.run(&["containers"]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Vec<&str>> = text
        .lines()
        .map(|l| l.split_whitespace().collect())
        .collect();
    assert_eq!(
        lines,
        [
            vec![
                "ID",
                "NAMESPACE",
                "POD",
                "WORKLOAD",
                "IMAGE",
                "ROOT",
                "PRIV"
            ],
            vec![
                "7115930a5ad1",
                "nightly",
                "backup-29000000-hqzd7",
                "backup(cronjob)",
                "busybox",
                "yes",
                "no"
            ],
        ]
    );

    let out = h.run(&["containers", "--all", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 1);
    assert_eq!(lines[0]["id"], "7115930a5ad1f00d");
    assert_eq!(lines[0]["security"]["runs_as_root"], true);

    let requests = h.fake.seen.list_requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [
            pb::ListContainersRequest {
                include_sandboxes: false
            },
            pb::ListContainersRequest {
                include_sandboxes: true
            },
        ]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn container_by_prefix() {
    let h = Harness::start("container").await;
    let out = h.run(&["container", "7115"]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    assert!(text.contains("id:"), "{text}");
    assert!(text.contains("7115930a5ad1f00d"), "{text}");
    assert!(text.contains("backup(cronjob)"), "{text}");

    let out = h.run(&["container", "7115", "-o", "json"]).await;
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["pod"]["name"], "backup-29000000-hqzd7");

    let out = h.run(&["container", "ffff"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout(&out).is_empty());
    assert_eq!(
        stderr(&out).trim(),
        "jobwatch: the sensor answered NotFound: no container matches \"ffff\""
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn status() {
    let h = Harness::start("status").await;
    let out = h.run(&["status"]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let text = stdout(&out);
    for expected in [
        "version:     9.9.9",
        "node:        node1",
        "kernel:      6.8.0",
        "programs:    exec, exit",
        "containerd:  connected",
        "containers:  1",
        "subscribers: 2",
        "  events_total=12345",
    ] {
        assert!(
            text.lines().any(|l| l == expected),
            "{expected:?} not in\n{text}"
        );
    }
    let out = h.run(&["status", "-o", "json"]).await;
    let v: Value = serde_json::from_str(stdout(&out).trim()).unwrap();
    assert_eq!(v["version"], "9.9.9");
    assert_eq!(v["counters"][0]["value"], 12345);
}

#[tokio::test(flavor = "multi_thread")]
async fn events_without_follow_is_a_usage_error() {
    // No sensor needed: the usage error comes first.
    let out = run_at(Path::new("/nonexistent/sensor.sock"), &["events"]).await;
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(err.contains("--follow"), "{err}");
    assert!(err.contains("only streams live events"), "{err}");
    assert!(err.contains("collector"), "{err}");
}

#[tokio::test(flavor = "multi_thread")]
async fn missing_socket_names_the_path() {
    let dir = std::env::temp_dir().join(format!("jobwatch-cli-{}-missing", std::process::id()));
    let socket = dir.join("nope.sock");
    let out = run_at(&socket, &["status"]).await;
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        format!(
            "jobwatch: cannot connect to the sensor at {}: No such file or directory (is the sensor running?)",
            socket.display()
        )
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn bad_flags_are_usage_errors() {
    let out = run_at(Path::new("/x"), &["events", "-f", "--kind", "bogus"]).await;
    assert_eq!(out.status.code(), Some(2));
    let out = run_at(
        Path::new("/x"),
        &["--address", "http://h:1", "--ca", "/x", "status"],
    )
    .await;
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    // --sensor and --address conflict.
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobwatch"));
    command.args([
        "--sensor",
        "/x",
        "--address",
        "https://h:1",
        "--ca",
        "/x",
        "status",
    ]);
    assert_eq!(command.output().unwrap().status.code(), Some(2));
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_ends_follow_cleanly() {
    use std::io::{BufRead, BufReader};
    let h = Harness::start("ctrlc").await;
    let socket = h.socket.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jobwatch"))
            .arg("--sensor")
            .arg(&socket)
            .args(["events", "--follow", "--namespace", "forever"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        for _ in 0..3 {
            lines.next().unwrap().unwrap();
        }
        // The stream is still open: only the interrupt ends the command.
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
}

// ---------------------------------------------------------------------------------------------
// alerts, against a fake collector

use jobwatch_proto::v1::collector_server::{Collector, CollectorServer};

type BoxStream<T> = std::pin::Pin<Box<dyn tokio_stream::Stream<Item = Result<T, Status>> + Send>>;

/// What the fake collector was asked, and how it answers.
#[derive(Default)]
struct CollectorSeen {
    list_requests: Mutex<Vec<pb::ListAlertsRequest>>,
    stream_requests: Mutex<Vec<pb::StreamAlertsRequest>>,
}

#[derive(Clone)]
struct FakeCollector {
    seen: Arc<CollectorSeen>,
    /// The stored alerts, ids increasing.
    alerts: Arc<Vec<pb::Alert>>,
    /// Most alerts one ListAlerts page returns (a real collector caps pages too).
    page_cap: usize,
    /// Answer the alert calls with Unimplemented (a collector without the rules engine).
    unimplemented: bool,
}

fn alert(id: u64) -> pb::Alert {
    let r = container_ref();
    pb::Alert {
        id,
        time_unix_nano: T + id as i64 * 1_000_000,
        rule: Some(pb::RuleRef {
            id: "JW-T1053.007-004".into(),
            technique: "T1053.007".into(),
            ..Default::default()
        }),
        severity: pb::Severity::High as i32,
        message: format!("drift: executed /tmp/x{id}.sh"),
        node: "node1".into(),
        namespace: "nightly".into(),
        cronjob: "backup".into(),
        job: "backup-29000000".into(),
        pod: "backup-29000000-hqzd7".into(),
        container_id: r.id,
        container_name: r.name,
        image: r.image,
        workload: r.workload,
        ancestry: vec![pb::AlertProcess {
            pid: 9000 + id as u32,
            binary: format!("/tmp/x{id}.sh"),
            args: vec![format!("/tmp/x{id}.sh")],
            ..Default::default()
        }],
        evidence: vec![pb::StoredEvent {
            id: 100 + id,
            event: Some(events()[0].clone()),
        }],
        details: [("path".to_string(), format!("/tmp/x{id}.sh"))].into(),
    }
}

#[tonic::async_trait]
impl Collector for FakeCollector {
    type ReportStream = BoxStream<pb::ReportAck>;
    type StreamEventsStream = BoxStream<pb::StoredEvent>;
    type StreamAlertsStream = BoxStream<pb::Alert>;

    async fn report(
        &self,
        _request: Request<tonic::Streaming<pb::ReportBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn query_events(
        &self,
        _request: Request<pb::QueryEventsRequest>,
    ) -> Result<Response<pb::QueryEventsResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn stream_events(
        &self,
        _request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_containers(
        &self,
        _request: Request<pb::CollectorListContainersRequest>,
    ) -> Result<Response<pb::CollectorListContainersResponse>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn get_status(
        &self,
        _request: Request<pb::CollectorStatusRequest>,
    ) -> Result<Response<pb::CollectorStatus>, Status> {
        Err(Status::unimplemented("fake"))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        if self.unimplemented {
            return Err(Status::unimplemented("alerts are not implemented yet"));
        }
        let request = request.into_inner();
        let limit = (request.limit as usize).min(self.page_cap);
        let alerts = self
            .alerts
            .iter()
            .filter(|a| a.id > request.after_id)
            .take(limit)
            .cloned()
            .collect();
        self.seen.list_requests.lock().unwrap().push(request);
        Ok(Response::new(pb::ListAlertsResponse { alerts }))
    }

    async fn stream_alerts(
        &self,
        request: Request<pb::StreamAlertsRequest>,
    ) -> Result<Response<Self::StreamAlertsStream>, Status> {
        if self.unimplemented {
            return Err(Status::unimplemented("alerts are not implemented yet"));
        }
        let request = request.into_inner();
        // Asked for namespace "forever", the stream never ends (for the Ctrl-C test).
        let forever = request
            .filter
            .as_ref()
            .is_some_and(|f| f.namespaces.iter().any(|n| n == "forever"));
        self.seen.stream_requests.lock().unwrap().push(request);
        let items = tokio_stream::iter(Vec::clone(&self.alerts).into_iter().map(Ok));
        if forever {
            use tokio_stream::StreamExt;
            Ok(Response::new(Box::pin(
                items.chain(tokio_stream::pending()),
            )))
        } else {
            Ok(Response::new(Box::pin(items)))
        }
    }
}

/// A fake collector serving on a Unix socket in a fresh temporary directory.
struct CollectorHarness {
    fake: FakeCollector,
    dir: PathBuf,
    socket: PathBuf,
}

impl CollectorHarness {
    async fn start(name: &str, alerts: Vec<pb::Alert>, page_cap: usize) -> CollectorHarness {
        Self::start_with(name, alerts, page_cap, false).await
    }

    async fn start_with(
        name: &str,
        alerts: Vec<pb::Alert>,
        page_cap: usize,
        unimplemented: bool,
    ) -> CollectorHarness {
        let dir = std::env::temp_dir().join(format!(
            "jobwatch-cli-{}-collector-{name}",
            std::process::id()
        ));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        let socket = dir.join("collector.sock");
        let listener = tokio::net::UnixListener::bind(&socket).unwrap();
        let fake = FakeCollector {
            seen: Arc::default(),
            alerts: Arc::new(alerts),
            page_cap,
            unimplemented,
        };
        let service = CollectorServer::new(fake.clone());
        tokio::spawn(async move {
            tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(tokio_stream::wrappers::UnixListenerStream::new(listener))
                .await
                .unwrap();
        });
        CollectorHarness { fake, dir, socket }
    }

    /// Runs `jobwatch --collector <socket> args...` off the runtime's threads.
    async fn run(&self, args: &[&str]) -> Output {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jobwatch"));
        command.arg("--collector").arg(&self.socket).args(args);
        tokio::task::spawn_blocking(move || command.output().unwrap())
            .await
            .unwrap()
    }

    fn list_requests(&self) -> Vec<pb::ListAlertsRequest> {
        self.fake.seen.list_requests.lock().unwrap().clone()
    }
}

impl Drop for CollectorHarness {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn alert_line(id: u64) -> String {
    format!(
        "2026-11-27T03:45:10.{:03}Z HIGH     JW-T1053.007-004 node1 nightly/backup(cronjob) \
         job=backup-29000000 pod=backup-29000000-hqzd7 ctr=dump[7115930a] image=busybox \
         pid={} uid=0 /tmp/x{id}.sh /tmp/x{id}.sh \"drift: executed /tmp/x{id}.sh\"",
        512 + id,
        9000 + id
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_pages_oldest_first_with_the_filters() {
    // Five stored alerts, at most two per page: the CLI must page with after_id.
    let h = CollectorHarness::start("pages", (1..=5).map(alert).collect(), 2).await;
    let out = h
        .run(&[
            "alerts",
            "--severity",
            "high",
            "--rule",
            "JW-T1053.007-004",
            "--namespace",
            "nightly",
            "--cronjob",
            "backup",
            "--node",
            "node1",
            "--since",
            "2026-11-27T03:00:00Z",
            "--until",
            "2026-11-27T04:00:00Z",
        ])
        .await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stderr(&out), "");
    let expected: Vec<String> = (1..=5).map(alert_line).collect();
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), expected);

    let filter = pb::AlertFilter {
        min_severity: pb::Severity::High as i32,
        rules: vec!["JW-T1053.007-004".into()],
        namespaces: vec!["nightly".into()],
        cronjobs: vec!["backup".into()],
        nodes: vec!["node1".into()],
    };
    let page = |after_id, limit| pb::ListAlertsRequest {
        filter: Some(filter.clone()),
        since_unix_nano: 1_795_748_400_000_000_000,
        until_unix_nano: 1_795_752_000_000_000_000,
        limit,
        after_id,
    };
    assert_eq!(
        h.list_requests(),
        [page(0, 1000), page(2, 998), page(4, 996), page(5, 995)]
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_limit_stops_paging() {
    let h = CollectorHarness::start("limit", (1..=5).map(alert).collect(), 2).await;
    let out = h.run(&["alerts", "--limit", "3"]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let expected: Vec<String> = (1..=3).map(alert_line).collect();
    assert_eq!(stdout(&out).lines().collect::<Vec<_>>(), expected);
    let asked: Vec<(u64, u32)> = h
        .list_requests()
        .iter()
        .map(|r| (r.after_id, r.limit))
        .collect();
    assert_eq!(asked, [(0, 3), (2, 1)]);
    assert_eq!(
        h.list_requests()[0].filter,
        Some(pb::AlertFilter::default()),
        "no flags, no filter"
    );
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_json_one_object_per_line() {
    let h = CollectorHarness::start("json", vec![alert(1), alert(2)], 1000).await;
    let out = h.run(&["alerts", "-o", "json"]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    let alerts: Vec<Value> = stdout(&out)
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(alerts.len(), 2);
    assert_eq!(alerts[0]["id"], 1);
    assert_eq!(alerts[0]["severity"], "high");
    assert_eq!(alerts[0]["rule"]["id"], "JW-T1053.007-004");
    assert_eq!(alerts[0]["cronjob"], "backup");
    assert_eq!(alerts[0]["ancestry"][0]["pid"], 9001);
    assert_eq!(alerts[0]["details"]["path"], "/tmp/x1.sh");
    assert_eq!(alerts[0]["evidence"][0]["id"], 101);
    assert_eq!(
        alerts[0]["evidence"][0]["event"]["process_exec"]["args"][1],
        "/tmp dir"
    );
    assert_eq!(alerts[1]["id"], 2);
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_with_none_stored_print_nothing() {
    let h = CollectorHarness::start("none", vec![], 1000).await;
    let out = h.run(&["alerts"]).await;
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(stdout(&out), "");
    assert_eq!(stderr(&out), "");
    assert_eq!(h.list_requests().len(), 1);
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_follow_streams_with_the_filter() {
    let h = CollectorHarness::start("follow", vec![alert(1), alert(2)], 1000).await;
    let out = h
        .run(&["alerts", "--follow", "--severity", "low", "--node", "n2"])
        .await;
    // This fake ends the stream after two alerts: the CLI says so and exits 0.
    assert_eq!(out.status.code(), Some(0), "stderr: {}", stderr(&out));
    assert_eq!(
        stdout(&out).lines().collect::<Vec<_>>(),
        [alert_line(1), alert_line(2)]
    );
    assert_eq!(
        stderr(&out).trim(),
        "jobwatch: the collector ended the alert stream"
    );
    let requests = h.fake.seen.stream_requests.lock().unwrap().clone();
    assert_eq!(
        requests,
        [pb::StreamAlertsRequest {
            filter: Some(pb::AlertFilter {
                min_severity: pb::Severity::Low as i32,
                nodes: vec!["n2".into()],
                ..Default::default()
            })
        }]
    );
    assert!(h.list_requests().is_empty());
}

#[tokio::test(flavor = "multi_thread")]
async fn ctrl_c_ends_alerts_follow_cleanly() {
    use std::io::{BufRead, BufReader};
    let h = CollectorHarness::start("ctrlc", vec![alert(1)], 1000).await;
    let socket = h.socket.clone();
    let status = tokio::task::spawn_blocking(move || {
        let mut child = Command::new(env!("CARGO_BIN_EXE_jobwatch"))
            .arg("--collector")
            .arg(&socket)
            .args(["alerts", "--follow", "--namespace", "forever"])
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
        assert_eq!(lines.next().unwrap().unwrap(), alert_line(1));
        // The stream is still open: only the interrupt ends the command.
        let killed = Command::new("kill")
            .args(["-INT", &child.id().to_string()])
            .status()
            .unwrap();
        assert!(killed.success());
        child.wait().unwrap()
    })
    .await
    .unwrap();
    assert_eq!(status.code(), Some(0));
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_from_a_collector_without_them_name_the_collector() {
    let h = CollectorHarness::start_with("unimplemented", vec![], 1000, true).await;
    for args in [&["alerts"][..], &["alerts", "--follow"]] {
        let out = h.run(args).await;
        assert_eq!(out.status.code(), Some(1), "{args:?}");
        assert!(stdout(&out).is_empty());
        assert_eq!(
            stderr(&out).trim(),
            "jobwatch: the collector answered Unimplemented: alerts are not implemented yet"
        );
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_against_a_sensor_is_a_usage_error() {
    // A live sensor is not even asked: the command is refused before connecting.
    let h = Harness::start("alerts").await;
    for args in [&["alerts"][..], &["alerts", "--follow"]] {
        let out = h.run(args).await;
        assert_eq!(out.status.code(), Some(2), "{args:?}");
        assert!(stdout(&out).is_empty());
        assert_eq!(
            stderr(&out).trim(),
            "jobwatch: alerts come from the collector, which runs the detection rules; a sensor \
             raises none: use `jobwatch --collector /run/jobwatch/collector.sock alerts`"
        );
    }
    assert!(h.fake.seen.event_requests.lock().unwrap().is_empty());
    // The default sensor socket, and a TLS sensor address, alike.
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobwatch"));
    command.args(["alerts", "-o", "json"]);
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("alerts come from the collector"));
    let mut command = Command::new(env!("CARGO_BIN_EXE_jobwatch"));
    command.args(["--address", "https://h:1", "--ca", "/x", "alerts"]);
    let out = command.output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(stderr(&out).contains("alerts come from the collector"));
}

#[tokio::test(flavor = "multi_thread")]
async fn alerts_usage_errors_come_before_connecting() {
    let nowhere = Path::new("/nonexistent/collector.sock");
    let run = |args: &'static [&'static str]| {
        let mut command = Command::new(env!("CARGO_BIN_EXE_jobwatch"));
        command.arg("--collector").arg(nowhere).args(args);
        command.output().unwrap()
    };
    let out = run(&["alerts", "--severity", "severe"]);
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    assert!(
        err.contains("invalid value 'severe' for '--severity <LEVEL>'"),
        "{err}"
    );
    assert!(err.contains("info, low, medium, high, critical"), "{err}");

    let out = run(&[
        "alerts",
        "--since",
        "2026-11-27T05:00:00Z",
        "--until",
        "2026-11-27T04:00:00Z",
    ]);
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        stderr(&out).trim(),
        "jobwatch: --since (2026-11-27T05:00:00.000Z) is after --until (2026-11-27T04:00:00.000Z)"
    );
    // Usage is fine: now the missing collector is the error.
    let out = run(&["alerts", "--since", "1h"]);
    assert_eq!(out.status.code(), Some(1));
    assert_eq!(
        stderr(&out).trim(),
        "jobwatch: cannot connect to the collector at /nonexistent/collector.sock: \
         No such file or directory (is the collector running?)"
    );
    let out = run(&["alerts", "--follow", "--since", "1h"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("cannot be used with"),
        "{}",
        stderr(&out)
    );
}
