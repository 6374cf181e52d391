//! The gRPC API over real sockets: a Unix socket in a temporary directory (and TCP with mutual
//! TLS), fed with synthetic events and containers. No eBPF, no privilege needed.

use std::{
    collections::BTreeMap,
    os::unix::fs::{FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use jobwatch_proto::codec::RawCodec;
use jobwatch_proto::v1::{self as pb, sensor_client::SensorClient};
use sensor::{
    api::{
        convert::ExecIds,
        filter,
        hub::Hub,
        server::{ApiSettings, ServeError, serve},
        service::{self, SensorApi, StatusInputs},
    },
    attribution::workload::{CronJobRef, JobRef, OwnerSource, PodIdentity, Workload, WorkloadKind},
    clock::BootClock,
    containers::{
        containerd::ContainerdStatus,
        index::{ContainerIndex, ContainerInfo, ContainerKind, ContainerRef},
        oci::SecurityFacts,
    },
    event::{
        CapMask, ContainerCreated, ContainerExited, Event, EventKind, ExecFlags, FileCreated,
        LostEvents, Mode, Process, ProcessExec, ProcessExit,
    },
    pipeline::Stats,
    probes::KernelCounters,
};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tonic::{
    Code,
    transport::{Channel, Endpoint},
};

// ---------------------------------------------------------------------------------------------
// Synthetic world

fn pod(name: &str, namespace: &str) -> PodIdentity {
    PodIdentity {
        name: name.into(),
        namespace: namespace.into(),
        uid: format!("uid-{name}"),
        labels: BTreeMap::new(),
    }
}

fn info(
    id: &str,
    kind: ContainerKind,
    pod: Option<PodIdentity>,
    w: Option<Workload>,
) -> ContainerInfo {
    ContainerInfo {
        id: id.into(),
        runtime_namespace: "k8s.io".into(),
        name: format!("name-{id}"),
        kind,
        image: "busybox:1".into(),
        image_digest: None,
        sandbox_id: None,
        pod,
        workload: w,
        security: SecurityFacts::default(),
        cgroup: None,
        init_pid: None,
        started_unix_ns: None,
        labels: BTreeMap::new(),
        reference: Default::default(),
    }
}

fn cronjob_workload() -> Workload {
    Workload {
        kind: WorkloadKind::CronJob,
        name: "report".into(),
        job: Some(JobRef {
            name: "report-29000000".into(),
            controller_uid: None,
        }),
        cronjob: Some(CronJobRef {
            name: "report".into(),
            scheduled_time: None,
            source: OwnerSource::Labels,
            inferred: false,
        }),
        source: OwnerSource::Labels,
    }
}

fn deployment_workload() -> Workload {
    Workload {
        kind: WorkloadKind::Deployment,
        name: "nginx".into(),
        job: None,
        cronjob: None,
        source: OwnerSource::NameInference,
    }
}

/// The job's app container.
fn job() -> ContainerInfo {
    info(
        "aaa111",
        ContainerKind::Container,
        Some(pod("report-29000000-x", "batch")),
        Some(cronjob_workload()),
    )
}

/// The web server's app container.
fn web() -> ContainerInfo {
    info(
        "aaa222",
        ContainerKind::Container,
        Some(pod("nginx-5f7-abc", "web")),
        Some(deployment_workload()),
    )
}

fn index() -> Arc<RwLock<ContainerIndex>> {
    let mut index = ContainerIndex::new();
    index.upsert(job());
    index.upsert(web());
    index.upsert(info(
        "ccc999",
        ContainerKind::Sandbox,
        Some(pod("report-29000000-x", "batch")),
        Some(cronjob_workload()),
    ));
    index.upsert(info("bbb333", ContainerKind::Plain, None, None));
    Arc::new(RwLock::new(index))
}

fn process(pid: u32, binary: &str) -> Process {
    Process {
        pid,
        tid: pid,
        ppid: 1,
        uid: 0,
        gid: 0,
        euid: 0,
        egid: 0,
        loginuid: None,
        cap_effective: CapMask(0),
        comm: "c".into(),
        cgroup_id: 7,
        cgroup_v1_id: 0,
        mntns: 1,
        host: false,
        start_boot_ns: 10,
        binary: binary.into(),
    }
}

fn event(kind: EventKind) -> Event {
    Event {
        time_unix_ns: 0,
        boot_ns: 1_000,
        kind,
    }
}

fn exec(binary: &str, c: Option<Arc<ContainerRef>>) -> Event {
    event(EventKind::ProcessExec(ProcessExec {
        process: process(100, binary),
        filename: binary.into(),
        binary: binary.into(),
        args: vec![binary.into()].into(),
        cwd: "/".into(),
        flags: ExecFlags::default(),
        parent: None,
        container: c,
    }))
}

fn exit(binary: &str, c: Option<Arc<ContainerRef>>) -> Event {
    event(EventKind::ProcessExit(ProcessExit {
        pid: 100,
        tid: 100,
        exit_code: Some(0),
        signal: None,
        start_boot_ns: 10,
        duration_ns: 5,
        binary: binary.into(),
        container: c,
    }))
}

fn file(binary: &str, c: Option<Arc<ContainerRef>>) -> Event {
    event(EventKind::FileCreated(FileCreated {
        process: process(100, binary),
        operation: "create",
        path: "/tmp/dropped".into(),
        source: None,
        mode: Mode::new(0o100755),
        old_mode: None,
        replaced: false,
        path_truncated: false,
        read_error: false,
        container: c,
    }))
}

/// Nine events of every kind; event i (1-based) gets seq i on a fresh hub.
fn scenario() -> Vec<Event> {
    let j = Some(job().reference());
    vec![
        exec("/usr/bin/python3", j.clone()),              // 1
        exec("/tmp/evil", j.clone()),                     // 2
        file("/tmp/evil", j.clone()),                     // 3
        exit("/tmp/evil", j.clone()),                     // 4
        exec("/usr/sbin/nginx", Some(web().reference())), // 5
        exec("/bin/bash", None),                          // 6
        event(EventKind::ContainerCreated(ContainerCreated {
            // 7
            container: Box::new(info("bbb333", ContainerKind::Plain, None, None)),
            seen_at_start: true,
        })),
        event(EventKind::ContainerExited(ContainerExited {
            // 8
            container: job().reference(),
            exit_code: 0,
            duration_ns: Some(9),
        })),
        event(EventKind::LostEvents(LostEvents {
            // 9
            count: 4,
            cause: "ring_buffer_full",
        })),
    ]
}

// ---------------------------------------------------------------------------------------------
// A served API

struct Fixture {
    _dir: tempfile::TempDir,
    socket: PathBuf,
    hub: Hub,
    cancel: CancellationToken,
    server: JoinHandle<Result<(), ServeError>>,
}

fn ids() -> ExecIds {
    ExecIds {
        node: "node-1".into(),
        boot_unix_secs: 1_700_000_000,
    }
}

fn api(hub: &Hub) -> SensorApi {
    let index = index();
    let status_hub = hub.clone();
    let status_index = index.clone();
    let stats = Arc::new(Stats::default());
    stats
        .records
        .store(42, std::sync::atomic::Ordering::Relaxed);
    let containerd = Arc::new(ContainerdStatus::default());
    containerd
        .connected
        .store(true, std::sync::atomic::Ordering::Relaxed);
    let status = move || {
        service::status(&StatusInputs {
            node: "node-1",
            attached: &["exec", "exit"],
            containerd: &containerd,
            index: &status_index,
            hub: &status_hub,
            stats: &stats,
            kernel: &KernelCounters::default(),
        })
    };
    SensorApi::new(hub.clone(), index, Arc::new(status))
}

async fn wait_for_socket(path: &Path) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::UnixStream::connect(path).await.is_err() {
        assert!(
            Instant::now() < deadline,
            "server never listened on {}",
            path.display()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

impl Fixture {
    async fn start(queue: usize) -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let socket = dir.path().join("run/jobwatch/api.sock");
        let hub = Hub::new(ids(), BootClock::fixed(5_000), queue);
        let cancel = CancellationToken::new();
        let settings = ApiSettings {
            socket: Some(socket.clone()),
            ..ApiSettings::default()
        };
        let server = tokio::spawn(serve(settings, api(&hub), cancel.clone()));
        wait_for_socket(&socket).await;
        Fixture {
            _dir: dir,
            socket,
            hub,
            cancel,
            server,
        }
    }

    async fn channel(&self) -> Channel {
        let path = self.socket.clone();
        Endpoint::try_from("http://[::]:50051")
            .expect("endpoint")
            .connect_with_connector(tower::service_fn(move |_| {
                let path = path.clone();
                async move {
                    Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(
                        tokio::net::UnixStream::connect(path).await?,
                    ))
                }
            }))
            .await
            .expect("connect over the Unix socket")
    }

    async fn client(&self) -> SensorClient<Channel> {
        SensorClient::new(self.channel().await)
    }

    async fn wait_subscribers(&self, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.hub.subscribers() != n {
            assert!(
                Instant::now() < deadline,
                "{} subscribers, want {n}",
                self.hub.subscribers()
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    async fn stop(self) {
        self.cancel.cancel();
        let result = tokio::time::timeout(Duration::from_secs(10), self.server)
            .await
            .expect("server stops")
            .expect("server task");
        assert!(result.is_ok(), "serve: {result:?}");
        assert!(!self.socket.exists(), "socket removed at shutdown");
    }
}

type Events = tonic::Streaming<pb::Event>;

async fn subscribe(client: &mut SensorClient<Channel>, req: pb::GetEventsRequest) -> Events {
    client
        .get_events(req)
        .await
        .expect("get_events")
        .into_inner()
}

async fn next(stream: &mut Events) -> pb::Event {
    tokio::time::timeout(Duration::from_secs(10), stream.message())
        .await
        .expect("an event in time")
        .expect("stream ok")
        .expect("stream open")
}

/// Reads `n` events, then checks that nothing more is pending.
async fn take(stream: &mut Events, n: usize) -> Vec<pb::Event> {
    let mut got = Vec::with_capacity(n);
    for _ in 0..n {
        got.push(next(stream).await);
    }
    let extra = tokio::time::timeout(Duration::from_millis(200), stream.message()).await;
    assert!(extra.is_err(), "unexpected extra message: {extra:?}");
    got
}

fn allow(f: pb::EventFilter) -> pb::GetEventsRequest {
    pb::GetEventsRequest {
        allow_list: vec![f],
        deny_list: vec![],
    }
}

fn kinds(k: &[pb::EventKind]) -> Vec<i32> {
    k.iter().map(|k| *k as i32).collect()
}

fn lost_count(e: &pb::Event) -> Option<(u64, i32)> {
    match &e.kind {
        Some(pb::event::Kind::LostEvents(l)) => Some((l.count, l.cause)),
        _ => None,
    }
}

// ---------------------------------------------------------------------------------------------
// Tests

#[tokio::test]
async fn socket_is_private_and_health_serves() {
    let fx = Fixture::start(64).await;
    let meta = std::fs::symlink_metadata(&fx.socket).expect("socket metadata");
    assert!(meta.file_type().is_socket());
    assert_eq!(meta.permissions().mode() & 0o777, 0o600);
    let parent = fx.socket.parent().expect("parent");
    let dir_mode = std::fs::metadata(parent).expect("dir").permissions().mode() & 0o777;
    assert_eq!(dir_mode, 0o700);

    let mut health = tonic_health::pb::health_client::HealthClient::new(fx.channel().await);
    for service in ["", "jobwatch.v1.Sensor"] {
        let r = health
            .check(tonic_health::pb::HealthCheckRequest {
                service: service.into(),
            })
            .await
            .expect("health check")
            .into_inner();
        assert_eq!(
            r.status,
            tonic_health::pb::health_check_response::ServingStatus::Serving as i32,
            "service {service:?}"
        );
    }
    let unknown = health
        .check(tonic_health::pb::HealthCheckRequest {
            service: "no.such.Service".into(),
        })
        .await
        .expect_err("unknown service");
    assert_eq!(unknown.code(), Code::NotFound);
    fx.stop().await;
}

#[tokio::test]
async fn stale_socket_is_replaced_other_files_are_not() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("api.sock");
    // A stale socket: bound, then its listener dropped.
    drop(std::os::unix::net::UnixListener::bind(&path).expect("bind"));
    let hub = Hub::new(ids(), BootClock::fixed(0), 8);
    let cancel = CancellationToken::new();
    let settings = ApiSettings {
        socket: Some(path.clone()),
        ..ApiSettings::default()
    };
    let server = tokio::spawn(serve(settings.clone(), api(&hub), cancel.clone()));
    wait_for_socket(&path).await;

    // A second server on the live socket must refuse, not steal it.
    let second = serve(settings, api(&hub), CancellationToken::new()).await;
    assert!(
        matches!(second, Err(ServeError::SocketInUse { .. })),
        "{second:?}"
    );
    cancel.cancel();
    server.await.expect("task").expect("serve");

    let regular = dir.path().join("not-a-socket");
    std::fs::write(&regular, b"keep me").expect("write");
    let e = serve(
        ApiSettings {
            socket: Some(regular.clone()),
            ..ApiSettings::default()
        },
        api(&hub),
        CancellationToken::new(),
    )
    .await
    .expect_err("a regular file is not replaced");
    assert!(matches!(e, ServeError::NotASocket { .. }), "{e:?}");
    assert!(e.to_string().contains("not-a-socket"), "{e}");
    assert_eq!(std::fs::read(&regular).expect("still there"), b"keep me");
}

#[tokio::test]
async fn get_events_filters() {
    let fx = Fixture::start(64).await;
    let mut client = fx.client().await;
    use pb::EventKind as K;
    let cases: Vec<(&str, pb::GetEventsRequest, Vec<u64>)> = vec![
        ("all", pb::GetEventsRequest::default(), (1..=9).collect()),
        (
            "kind",
            allow(pb::EventFilter {
                kinds: kinds(&[K::ProcessExec]),
                ..Default::default()
            }),
            // The kernel's loss report passes every allow list.
            vec![1, 2, 5, 6, 9],
        ),
        (
            "namespace",
            allow(pb::EventFilter {
                namespaces: vec!["batch".into()],
                ..Default::default()
            }),
            vec![1, 2, 3, 4, 8, 9],
        ),
        (
            "cronjob",
            allow(pb::EventFilter {
                cronjobs: vec!["report".into()],
                kinds: kinds(&[K::ProcessExec, K::ContainerExited]),
                ..Default::default()
            }),
            vec![1, 2, 8, 9],
        ),
        (
            "container prefix",
            allow(pb::EventFilter {
                container_ids: vec!["aaa".into()],
                ..Default::default()
            }),
            vec![1, 2, 3, 4, 5, 8, 9],
        ),
        (
            "exact container, created",
            allow(pb::EventFilter {
                container_ids: vec!["bbb333".into()],
                ..Default::default()
            }),
            vec![7, 9],
        ),
        (
            "binary prefix",
            allow(pb::EventFilter {
                binary_prefixes: vec!["/tmp/".into()],
                ..Default::default()
            }),
            vec![2, 3, 4, 9],
        ),
        (
            "deny list",
            pb::GetEventsRequest {
                allow_list: vec![],
                deny_list: vec![
                    pb::EventFilter {
                        namespaces: vec!["batch".into()],
                        ..Default::default()
                    },
                    pb::EventFilter {
                        kinds: kinds(&[K::LostEvents]),
                        ..Default::default()
                    },
                ],
            },
            vec![5, 6, 7],
        ),
        (
            "allow and deny",
            pb::GetEventsRequest {
                allow_list: vec![pb::EventFilter {
                    kinds: kinds(&[K::ProcessExec]),
                    ..Default::default()
                }],
                deny_list: vec![pb::EventFilter {
                    binary_prefixes: vec!["/usr/".into()],
                    ..Default::default()
                }],
            },
            vec![2, 6, 9],
        ),
    ];
    let mut streams = Vec::new();
    for (name, req, want) in cases {
        streams.push((name, subscribe(&mut client, req).await, want));
    }
    fx.wait_subscribers(streams.len()).await;
    for e in scenario() {
        fx.hub.publish(&e);
    }
    for (name, mut stream, want) in streams {
        let got = take(&mut stream, want.len()).await;
        let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
        assert_eq!(seqs, want, "{name}");
        for e in &got {
            assert_eq!(e.node, "node-1", "{name}");
            assert_eq!(e.boot_ns, 1_000, "{name}");
            assert_eq!(e.time_unix_nano, 6_000, "{name}");
        }
    }
    // The unfiltered stream saw the kinds in order, field by field where it matters.
    let mut all = subscribe(&mut client, pb::GetEventsRequest::default()).await;
    fx.wait_subscribers(1).await;
    for e in scenario() {
        fx.hub.publish(&e);
    }
    let got = take(&mut all, 9).await;
    let seqs: Vec<u64> = got.iter().map(|e| e.seq).collect();
    assert_eq!(seqs, (10..=18).collect::<Vec<_>>(), "consecutive");
    let Some(pb::event::Kind::ProcessExec(x)) = &got[1].kind else {
        panic!("exec: {:?}", got[1])
    };
    assert_eq!(x.binary, "/tmp/evil");
    let c = x.container.as_ref().expect("container");
    assert_eq!(c.id, "aaa111");
    let w = c.workload.as_ref().expect("workload");
    assert_eq!(w.cronjob.as_ref().expect("cronjob").name, "report");
    assert_eq!(
        lost_count(&got[8]),
        Some((4, pb::LossCause::RingBufferFull as i32))
    );
    fx.stop().await;
}

#[tokio::test]
async fn slow_subscriber_loses_alone_and_is_told() {
    const N: u64 = 1_000;
    let fx = Fixture::start(1_024).await;
    let mut client = fx.client().await;
    let mut reader = subscribe(&mut client, pb::GetEventsRequest::default()).await;
    fx.wait_subscribers(1).await;
    let all = filter::compile(&pb::GetEventsRequest::default()).expect("filter");
    let mut slow = fx.hub.subscribe_with_capacity(all, 8);

    let e = exec("/bin/true", None);
    let started = Instant::now();
    for _ in 0..N {
        fx.hub.publish(&e);
    }
    let took = started.elapsed();
    let stats = fx.hub.stats();
    assert_eq!(stats.published, N);
    assert_eq!(stats.slow_subscriber_lost, N - 8, "only the slow one lost");
    assert!(took < Duration::from_secs(5), "publish took {took:?}");

    // The reading subscriber gets everything, in order.
    for seq in 1..=N {
        assert_eq!(next(&mut reader).await.seq, seq);
    }

    // The slow one: its 8 queued events, then nothing until the next publication...
    let mut received = Vec::new();
    while let Ok(item) = slow.try_recv() {
        received.push(item.expect("ok"));
    }
    assert_eq!(
        received.iter().map(|e| e.seq).collect::<Vec<_>>(),
        (1..=8).collect::<Vec<_>>()
    );
    // ...which comes after a loss report.
    fx.hub.publish(&e);
    let report = slow.try_recv().expect("loss report").expect("ok");
    let (lost, cause) = lost_count(&report).expect("a LostEvents");
    assert_eq!(cause, pb::LossCause::SlowSubscriber as i32);
    assert_eq!(report.seq, 0, "a per-subscriber report has no sensor seq");
    let after = slow
        .try_recv()
        .expect("event after the report")
        .expect("ok");
    assert_eq!(after.seq, N + 1);
    received.push(after);
    assert!(slow.try_recv().is_err(), "nothing more");
    assert_eq!(lost, N - 8);
    let published = fx.hub.stats().published;
    assert_eq!(
        received.len() as u64 + lost,
        published,
        "slow: received + lost"
    );

    assert_eq!(next(&mut reader).await.seq, N + 1);
    let reader_received = N + 1;
    assert_eq!(reader_received, published, "reader: received + lost (0)");
    assert_eq!(fx.hub.stats().slow_subscriber_lost, N - 8);
    fx.stop().await;
}

#[tokio::test]
async fn slow_grpc_client_arithmetic() {
    const N: u64 = 1_000;
    // Every subscriber gets a queue of 8: a gRPC client that does not read loses events.
    let fx = Fixture::start(8).await;
    let mut client = fx.client().await;
    let mut stalled = subscribe(&mut client, pb::GetEventsRequest::default()).await;
    fx.wait_subscribers(1).await;
    let big = exec(&format!("/opt/{}", "x".repeat(2_000)), None);
    for _ in 0..N {
        fx.hub.publish(&big);
    }
    let lost_so_far = fx.hub.stats().slow_subscriber_lost;
    assert!(
        lost_so_far > 0,
        "a stalled client with a queue of 8 loses some of {N}"
    );
    // Now read whatever was buffered; then one more event arrives after the loss report.
    let (mut events, mut lost) = (0u64, 0u64);
    let mut last_seq = 0;
    let mut count = |e: pb::Event| {
        match lost_count(&e) {
            Some((n, cause)) => {
                assert_eq!(cause, pb::LossCause::SlowSubscriber as i32);
                lost += n;
            }
            None => {
                assert!(e.seq > last_seq, "in order: {} after {last_seq}", e.seq);
                last_seq = e.seq;
                events += 1;
            }
        }
        last_seq
    };
    while let Ok(m) = tokio::time::timeout(Duration::from_millis(300), stalled.message()).await {
        count(m.expect("stream ok").expect("stream open"));
    }
    fx.hub.publish(&big);
    while count(next(&mut stalled).await) != N + 1 {}
    assert_eq!(
        events + lost,
        N + 1,
        "received + reported lost == published"
    );
    assert_eq!(lost, fx.hub.stats().slow_subscriber_lost);
    fx.stop().await;
}

#[tokio::test]
async fn containers() {
    let fx = Fixture::start(8).await;
    let mut client = fx.client().await;
    let list = client
        .list_containers(pb::ListContainersRequest {
            include_sandboxes: false,
        })
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = list.containers.iter().map(|c| c.id.as_str()).collect();
    assert_eq!(ids, ["aaa111", "aaa222", "bbb333"]);
    let with_sandboxes = client
        .list_containers(pb::ListContainersRequest {
            include_sandboxes: true,
        })
        .await
        .expect("list")
        .into_inner();
    let ids: Vec<&str> = with_sandboxes
        .containers
        .iter()
        .map(|c| c.id.as_str())
        .collect();
    assert_eq!(ids, ["aaa111", "aaa222", "bbb333", "ccc999"]);
    assert_eq!(
        with_sandboxes.containers[3].kind,
        pb::ContainerKind::Sandbox as i32
    );

    let get = |id: &str| pb::GetContainerRequest { id: id.into() };
    let c = client
        .get_container(get("aaa111"))
        .await
        .expect("exact")
        .into_inner();
    assert_eq!(c.id, "aaa111");
    assert_eq!(c.pod.as_ref().expect("pod").namespace, "batch");
    assert_eq!(
        c.workload.as_ref().expect("workload").kind,
        pb::WorkloadKind::CronJob as i32
    );
    let c = client
        .get_container(get("aaa2"))
        .await
        .expect("prefix")
        .into_inner();
    assert_eq!(c.id, "aaa222");
    let c = client
        .get_container(get("ccc"))
        .await
        .expect("sandbox")
        .into_inner();
    assert_eq!(c.id, "ccc999");

    let e = client
        .get_container(get("aaa"))
        .await
        .expect_err("ambiguous");
    assert_eq!(e.code(), Code::FailedPrecondition);
    assert!(
        e.message().contains("matches 2 containers"),
        "{}",
        e.message()
    );
    let e = client.get_container(get("zzz")).await.expect_err("none");
    assert_eq!(e.code(), Code::NotFound);
    assert!(e.message().contains("zzz"), "{}", e.message());
    let e = client.get_container(get("")).await.expect_err("empty");
    assert_eq!(e.code(), Code::InvalidArgument);
    fx.stop().await;
}

#[tokio::test]
async fn status() {
    let fx = Fixture::start(8).await;
    let mut client = fx.client().await;
    let mut events = subscribe(&mut client, pb::GetEventsRequest::default()).await;
    fx.wait_subscribers(1).await;
    fx.hub.publish(&exec("/bin/true", None));
    let s = client
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(s.version, env!("CARGO_PKG_VERSION"));
    assert_eq!(s.node, "node-1");
    assert!(!s.kernel.is_empty(), "kernel release");
    assert_eq!(s.programs_attached, ["exec", "exit"]);
    assert!(s.containerd_connected);
    assert_eq!(s.containerd_error, "");
    assert_eq!(s.containers_tracked, 4);
    assert_eq!(s.subscribers, 1);
    let counter = |name: &str| {
        s.counters
            .iter()
            .find(|c| c.name == name)
            .map(|c| c.value)
            .unwrap_or_else(|| panic!("counter {name} missing: {:?}", s.counters))
    };
    assert_eq!(counter("records"), 42);
    assert_eq!(counter("hub_published"), 1);
    assert_eq!(counter("hub_slow_subscriber_lost"), 0);
    assert_eq!(counter("containerd_reconnects"), 0);
    assert_eq!(counter("metadata_overflowed"), 0);
    let kernel = KernelCounters::default();
    for (name, _) in kernel.named() {
        assert_eq!(counter(&format!("kernel_{name}")), 0);
    }
    fx.stop().await;
    // Shutdown ended the open event stream cleanly (status OK), rather than waiting for it.
    assert_eq!(next(&mut events).await.seq, 1, "the event published before");
    let end = tokio::time::timeout(Duration::from_secs(5), events.message())
        .await
        .expect("stream ends at shutdown");
    assert!(matches!(end, Ok(None)), "{end:?}");
}

#[tokio::test]
async fn malformed_requests() {
    let fx = Fixture::start(8).await;
    let mut client = fx.client().await;

    let e = client
        .get_events(allow(pb::EventFilter {
            kinds: vec![pb::EventKind::ProcessExec as i32, 99],
            ..Default::default()
        }))
        .await
        .expect_err("unknown kind");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert!(
        e.message().contains("kinds[1]") && e.message().contains("99"),
        "{}",
        e.message()
    );
    let e = client
        .get_events(allow(pb::EventFilter {
            workload_kinds: vec![1234],
            ..Default::default()
        }))
        .await
        .expect_err("unknown workload kind");
    assert_eq!(e.code(), Code::InvalidArgument);
    assert_eq!(
        fx.hub.subscribers(),
        0,
        "rejected requests do not subscribe"
    );

    let e = client
        .get_container(pb::GetContainerRequest {
            id: "a".repeat(2_000),
        })
        .await
        .expect_err("long id");
    assert_eq!(e.code(), Code::InvalidArgument);

    // Not protobuf: a length-delimited field 1 that claims 5 bytes and has 1. jobwatch's codec
    // answers what does not decode with INVALID_ARGUMENT (tonic-prost would say INTERNAL).
    let mut raw = tonic::client::Grpc::new(fx.channel().await);
    raw.ready().await.expect("ready");
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/jobwatch.v1.Sensor/GetContainer");
    let e = raw
        .unary(tonic::Request::new(vec![0x0a, 0x05, b'a']), path, RawCodec)
        .await
        .expect_err("garbage");
    assert_eq!(e.code(), Code::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .starts_with("the message does not decode as GetContainerRequest: "),
        "{}",
        e.message()
    );

    // Larger than the 1 MiB limit (tonic answers OUT_OF_RANGE).
    let mut raw = tonic::client::Grpc::new(fx.channel().await);
    raw.ready().await.expect("ready");
    let mut huge = vec![0x0a, 0x80, 0x80, 0x80, 0x01]; // field 1, 2 MiB
    huge.resize(5 + (2 << 20), b'a');
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/jobwatch.v1.Sensor/GetContainer");
    let e = raw
        .unary(tonic::Request::new(huge), path, RawCodec)
        .await
        .expect_err("too large");
    assert_eq!(e.code(), Code::OutOfRange, "{e:?}");

    // Still serving.
    let c = client
        .get_container(pb::GetContainerRequest { id: "bbb".into() })
        .await
        .expect("still serving")
        .into_inner();
    assert_eq!(c.id, "bbb333");
    fx.stop().await;
}

#[tokio::test]
async fn tcp_requires_tls() {
    let hub = Hub::new(ids(), BootClock::fixed(0), 8);
    let addr: std::net::SocketAddr = "127.0.0.1:0".parse().expect("addr");
    let e = serve(
        ApiSettings {
            tcp: Some(addr),
            tls_cert: Some("/nonexistent/cert.pem".into()),
            ..ApiSettings::default()
        },
        api(&hub),
        CancellationToken::new(),
    )
    .await
    .expect_err("tcp without a key");
    assert!(matches!(e, ServeError::TcpWithoutTls { .. }), "{e:?}");
    assert!(e.to_string().contains("127.0.0.1:0"), "{e}");

    let e = serve(ApiSettings::default(), api(&hub), CancellationToken::new())
        .await
        .expect_err("no listener");
    assert!(matches!(e, ServeError::NoListener), "{e:?}");
}

// ---------------------------------------------------------------------------------------------
// Mutual TLS, with certificates made by openssl at test time

fn openssl(dir: &Path, args: &[&str]) {
    let out = std::process::Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap_or_else(|e| panic!("running openssl (needed for the mTLS test): {e}"));
    assert!(
        out.status.success(),
        "openssl {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// ca.pem, server.{pem,key} for localhost/127.0.0.1, client.{pem,key}.
fn make_certs(dir: &Path) {
    let ec = [
        "-newkey",
        "ec",
        "-pkeyopt",
        "ec_paramgen_curve:prime256v1",
        "-nodes",
    ];
    let mut ca = vec![
        "req",
        "-x509",
        "-days",
        "1",
        "-subj",
        "/CN=jobwatch test CA",
    ];
    ca.extend(ec);
    ca.extend([
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    openssl(dir, &ca);
    for (name, ext) in [
        (
            "server",
            "basicConstraints=CA:FALSE\nsubjectAltName=DNS:localhost,IP:127.0.0.1\nextendedKeyUsage=serverAuth\n",
        ),
        (
            "client",
            "basicConstraints=CA:FALSE\nsubjectAltName=DNS:client\nextendedKeyUsage=clientAuth\n",
        ),
    ] {
        std::fs::write(dir.join(format!("{name}.ext")), ext).expect("ext file");
        let (key, csr, pem, extf) = (
            format!("{name}.key"),
            format!("{name}.csr"),
            format!("{name}.pem"),
            format!("{name}.ext"),
        );
        let subj = format!("/CN={name}");
        let mut req = vec![
            "req",
            "-subj",
            subj.as_str(),
            "-keyout",
            key.as_str(),
            "-out",
            csr.as_str(),
        ];
        req.extend(ec);
        openssl(dir, &req);
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &csr,
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "1",
                "-out",
                &pem,
                "-extfile",
                &extf,
            ],
        );
    }
}

#[tokio::test]
async fn mtls_requires_a_client_certificate() {
    use tonic::transport::{Certificate, ClientTlsConfig, Identity};
    let dir = tempfile::tempdir().expect("tempdir");
    make_certs(dir.path());
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let addr: std::net::SocketAddr = ([127, 0, 0, 1], port).into();
    let hub = Hub::new(ids(), BootClock::fixed(0), 8);
    let cancel = CancellationToken::new();
    let settings = ApiSettings {
        socket: None,
        tcp: Some(addr),
        tls_cert: Some(dir.path().join("server.pem")),
        tls_key: Some(dir.path().join("server.key")),
        tls_client_ca: Some(dir.path().join("ca.pem")),
    };
    let server = tokio::spawn(serve(settings, api(&hub), cancel.clone()));
    let deadline = Instant::now() + Duration::from_secs(10);
    while tokio::net::TcpStream::connect(addr).await.is_err() {
        assert!(Instant::now() < deadline, "server never listened on {addr}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let read = |f: &str| std::fs::read(dir.path().join(f)).expect("cert file");
    let ca = Certificate::from_pem(read("ca.pem"));
    let endpoint = |tls: ClientTlsConfig| {
        Endpoint::from_shared(format!("https://127.0.0.1:{port}"))
            .expect("endpoint")
            .tls_config(tls)
            .expect("client tls")
    };

    // Without a client certificate: the handshake or the first call fails.
    let anonymous = ClientTlsConfig::new()
        .ca_certificate(ca.clone())
        .domain_name("localhost");
    let rejected = match endpoint(anonymous).connect().await {
        Err(_) => true,
        Ok(ch) => SensorClient::new(ch)
            .get_status(pb::GetStatusRequest {})
            .await
            .is_err(),
    };
    assert!(rejected, "a client without a certificate must be rejected");

    // With one: served.
    let with_cert = ClientTlsConfig::new()
        .ca_certificate(ca)
        .domain_name("localhost")
        .identity(Identity::from_pem(read("client.pem"), read("client.key")));
    let ch = endpoint(with_cert).connect().await.expect("mTLS connect");
    let s = SensorClient::new(ch)
        .get_status(pb::GetStatusRequest {})
        .await
        .expect("status over mTLS")
        .into_inner();
    assert_eq!(s.node, "node-1");

    cancel.cancel();
    server.await.expect("task").expect("serve");
}
