//! `sensor::attribution::kube` against a FAKE Kubernetes API server.
//!
//! A real Kubernetes API server cannot run on this machine, so these tests replace it at the HTTP
//! seam: an axum server on 127.0.0.1:0 (plain http, no TLS) serves canned JSON for the pod, Job
//! and ReplicaSet GETs, a node-scoped pod LIST and a WATCH stream, and counts the requests it gets
//! and those without `Authorization: Bearer test-token`. What is *not* covered here: TLS to a real
//! API server with the cluster CA, RBAC, and real watch semantics (resourceVersion expiry).

use std::collections::HashMap;
use std::path::Path;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::Response;
use bytes::Bytes;
use futures_util::StreamExt;
use sensor::attribution::kube::{KubeError, KubeSettings, OwnerResolver};
use sensor::attribution::workload::{CronJobRef, JobRef, OwnerSource, Workload, WorkloadKind};
use serde_json::{Value, json};
use tokio_util::sync::CancellationToken;

const NS: &str = "ops";
const NODE: &str = "node-1";
const TOKEN: &str = "test-token";

const POD_CRON: &str = "11111111-1111-4111-8111-111111111111";
const POD_CRON_2: &str = "11111111-1111-4111-8111-222222222222";
const POD_JOB: &str = "22222222-2222-4222-8222-222222222222";
const POD_WEB: &str = "33333333-3333-4333-8333-333333333333";
const POD_DS: &str = "44444444-4444-4444-8444-444444444444";
const POD_BARE: &str = "55555555-5555-4555-8555-555555555555";
const POD_REPORT: &str = "66666666-6666-4666-8666-666666666666";
const POD_STALE: &str = "77777777-7777-4777-8777-777777777777";
const POD_CRD: &str = "88888888-8888-4888-8888-888888888888";
const POD_BADJOB: &str = "99999999-9999-4999-8999-999999999999";
const JOB_BACKUP: &str = "0b7e6a2c-3d4f-4e5a-9b8c-7d6e5f4a3b2c";
const JOB_MIGRATE: &str = "0b7e6a2c-3d4f-4e5a-9b8c-000000000002";
const JOB_REPORT: &str = "0b7e6a2c-3d4f-4e5a-9b8c-000000000003";
const JOB_NIGHTLY_OLD: &str = "0b7e6a2c-3d4f-4e5a-9b8c-000000000004";
const JOB_NIGHTLY_NEW: &str = "0b7e6a2c-3d4f-4e5a-9b8c-000000000005";
const CRONJOB_BACKUP: &str = "c0c0c0c0-0000-4000-8000-000000000001";
const RS_WEB: &str = "aaaaaaaa-0000-4000-8000-000000000001";

/// The fake API server's canned objects and what it saw.
#[derive(Default)]
struct Fake {
    /// path -> JSON body served with 200.
    objects: HashMap<String, Value>,
    /// path -> raw (broken) body served with 200.
    raw: HashMap<String, &'static str>,
    requests: AtomicUsize,
    unauthorized: AtomicUsize,
    lists: AtomicUsize,
    watches: AtomicUsize,
    /// Every request's path and query.
    log: Mutex<Vec<String>>,
    /// Lets the first watch stream close (after its events).
    release_watch: Arc<tokio::sync::Notify>,
}

impl Fake {
    fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    fn log(&self) -> Vec<String> {
        self.log.lock().map(|l| l.clone()).unwrap_or_default()
    }
}

fn owner(api_version: &str, kind: &str, name: &str, uid: &str) -> Value {
    json!({"apiVersion": api_version, "kind": kind, "name": name, "uid": uid,
           "controller": true, "blockOwnerDeletion": true})
}

fn pod(name: &str, uid: &str, owners: Vec<Value>) -> Value {
    json!({
        "kind": "Pod", "apiVersion": "v1",
        "metadata": {"name": name, "namespace": NS, "uid": uid, "resourceVersion": "42",
                     "labels": {"app": "x"}, "ownerReferences": owners},
        "spec": {"nodeName": NODE, "containers": [{"name": "main", "image": "busybox"}]},
        "status": {"phase": "Running"}
    })
}

fn pod_path(name: &str) -> String {
    format!("/api/v1/namespaces/{NS}/pods/{name}")
}

/// The cluster the tests see.
fn cluster() -> Fake {
    let mut fake = Fake::default();
    let mut add = |path: String, value: Value| {
        fake.objects.insert(path, value);
    };
    let job_owner = |name: &str, uid: &str| owner("batch/v1", "Job", name, uid);

    // A CronJob pod (two pods of the same Job) and its Job, with the scheduled-timestamp annotation.
    add(
        pod_path("backup-29000000-x7k2p"),
        pod(
            "backup-29000000-x7k2p",
            POD_CRON,
            vec![job_owner("backup-29000000", JOB_BACKUP)],
        ),
    );
    add(
        pod_path("backup-29000000-q8m4n"),
        pod(
            "backup-29000000-q8m4n",
            POD_CRON_2,
            vec![job_owner("backup-29000000", JOB_BACKUP)],
        ),
    );
    add(
        format!("/apis/batch/v1/namespaces/{NS}/jobs/backup-29000000"),
        json!({"kind": "Job", "metadata": {
            "name": "backup-29000000", "namespace": NS, "uid": JOB_BACKUP,
            "annotations": {"batch.kubernetes.io/cronjob-scheduled-timestamp": "2025-02-19T21:20:00Z"},
            "ownerReferences": [owner("batch/v1", "CronJob", "backup", CRONJOB_BACKUP)]},
            "spec": {"parallelism": 1}}),
    );
    // A CronJob's Job without the annotation: the time comes from the controller's naming.
    add(
        pod_path("report-29000001-b4c5d"),
        pod(
            "report-29000001-b4c5d",
            POD_REPORT,
            vec![job_owner("report-29000001", JOB_REPORT)],
        ),
    );
    add(
        format!("/apis/batch/v1/namespaces/{NS}/jobs/report-29000001"),
        json!({"metadata": {"name": "report-29000001", "uid": JOB_REPORT,
            "ownerReferences": [owner("batch/v1", "CronJob", "report", CRONJOB_BACKUP)]}}),
    );
    // A bare Job.
    add(
        pod_path("migrate-h6j7k"),
        pod(
            "migrate-h6j7k",
            POD_JOB,
            vec![job_owner("migrate", JOB_MIGRATE)],
        ),
    );
    add(
        format!("/apis/batch/v1/namespaces/{NS}/jobs/migrate"),
        json!({"metadata": {"name": "migrate", "namespace": NS, "uid": JOB_MIGRATE}}),
    );
    // The pod's Job was deleted and a CronJob's Job of the same name created: not its owner.
    add(
        pod_path("nightly-m2n3p"),
        pod(
            "nightly-m2n3p",
            POD_STALE,
            vec![job_owner("nightly", JOB_NIGHTLY_OLD)],
        ),
    );
    add(
        format!("/apis/batch/v1/namespaces/{NS}/jobs/nightly"),
        json!({"metadata": {"name": "nightly", "uid": JOB_NIGHTLY_NEW,
            "ownerReferences": [owner("batch/v1", "CronJob", "evil", CRONJOB_BACKUP)]}}),
    );
    // A Deployment's pod.
    add(
        pod_path("web-5d8f7-x2k9z"),
        pod(
            "web-5d8f7-x2k9z",
            POD_WEB,
            vec![owner("apps/v1", "ReplicaSet", "web-5d8f7", RS_WEB)],
        ),
    );
    add(
        format!("/apis/apps/v1/namespaces/{NS}/replicasets/web-5d8f7"),
        json!({"metadata": {"name": "web-5d8f7", "uid": RS_WEB,
            "ownerReferences": [owner("apps/v1", "Deployment", "web", "dddddddd-0000-4000-8000-000000000001")]}}),
    );
    // A DaemonSet's pod.
    add(
        pod_path("agent-7xk2p"),
        pod(
            "agent-7xk2p",
            POD_DS,
            vec![owner(
                "apps/v1",
                "DaemonSet",
                "agent",
                "eeeeeeee-0000-4000-8000-000000000001",
            )],
        ),
    );
    // A bare pod (a non-controller ownerReference does not make an owner).
    let mut bare = pod("debug", POD_BARE, vec![]);
    bare["metadata"]["ownerReferences"] = json!([{"apiVersion": "v1", "kind": "ConfigMap",
        "name": "cm", "uid": "ffffffff-0000-4000-8000-000000000001"}]);
    add(pod_path("debug"), bare);
    // A pod of a custom resource, and one of a foreign-group "Job".
    add(
        pod_path("wf-step-1"),
        pod(
            "wf-step-1",
            POD_CRD,
            vec![owner(
                "argoproj.io/v1alpha1",
                "Workflow",
                "wf",
                "ffffffff-0000-4000-8000-000000000002",
            )],
        ),
    );
    add(
        pod_path("train-worker-0"),
        pod(
            "train-worker-0",
            "ffffffff-0000-4000-8000-000000000003",
            vec![owner(
                "kubeflow.org/v1",
                "Job",
                "train",
                "ffffffff-0000-4000-8000-000000000004",
            )],
        ),
    );
    // A pod whose Job answers garbage.
    add(
        pod_path("badjob-z9x8c"),
        pod(
            "badjob-z9x8c",
            POD_BADJOB,
            vec![job_owner("badjob", "ffffffff-0000-4000-8000-000000000005")],
        ),
    );
    fake.raw.insert(
        format!("/apis/batch/v1/namespaces/{NS}/jobs/badjob"),
        "{\"metadata\": {\"uid\": 7",
    );
    // Garbage pods.
    fake.raw.insert(
        pod_path("garbage"),
        "{\"metadata\": {\"name\": \"garbage\", \"ownerReferences\": [",
    );
    fake.raw.insert(
        pod_path("garbage-types"),
        "{\"metadata\": {\"name\": 1, \"ownerReferences\": \"nope\"}}",
    );
    fake
}

/// The node's pods for the watch test.
fn node_pod(name: &str) -> Value {
    let path = pod_path(name);
    cluster().objects.get(&path).cloned().unwrap_or(Value::Null)
}

fn line(kind: &str, object: Value) -> String {
    format!("{}\n", json!({"type": kind, "object": object}))
}

async fn handle(State(fake): State<Arc<Fake>>, uri: Uri, headers: HeaderMap) -> Response {
    fake.requests.fetch_add(1, Ordering::SeqCst);
    if let Ok(mut log) = fake.log.lock() {
        log.push(uri.to_string());
    }
    let auth = headers.get("authorization").and_then(|v| v.to_str().ok());
    if auth != Some("Bearer test-token") {
        fake.unauthorized.fetch_add(1, Ordering::SeqCst);
        return status_response(StatusCode::UNAUTHORIZED, "Unauthorized");
    }
    let path = uri.path();
    if path == "/api/v1/pods" {
        let query = uri.query().unwrap_or_default();
        return if query.contains("watch=1") {
            watch_response(&fake)
        } else {
            list_response(&fake)
        };
    }
    if let Some(value) = fake.objects.get(path) {
        return json_response(StatusCode::OK, value.to_string());
    }
    if let Some(raw) = fake.raw.get(path) {
        return json_response(StatusCode::OK, (*raw).to_owned());
    }
    status_response(StatusCode::NOT_FOUND, "NotFound")
}

fn json_response(code: StatusCode, body: String) -> Response {
    let mut response = Response::new(Body::from(body));
    *response.status_mut() = code;
    response.headers_mut().insert(
        "content-type",
        axum::http::HeaderValue::from_static("application/json"),
    );
    response
}

fn status_response(code: StatusCode, reason: &str) -> Response {
    let body = json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
        "message": format!("pods \"x\" {reason}\n\u{1b}[31m"), "reason": reason, "code": code.as_u16()});
    json_response(code, body.to_string())
}

/// First list: the CronJob pod (and a malformed item); later lists: what remains after the
/// watch, plus a pod that appeared while nobody watched.
fn list_response(fake: &Fake) -> Response {
    let n = fake.lists.fetch_add(1, Ordering::SeqCst);
    let body = if n == 0 {
        json!({"kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "100"},
            "items": [node_pod("backup-29000000-x7k2p"), {"metadata": "not an object"}]})
    } else {
        json!({"kind": "PodList", "apiVersion": "v1",
            "metadata": {"resourceVersion": "110"},
            "items": [node_pod("web-5d8f7-x2k9z"), node_pod("agent-7xk2p"), node_pod("debug")]})
    };
    json_response(StatusCode::OK, body.to_string())
}

/// First watch: two ADDED (with a garbage line between), a BOOKMARK, a DELETED, then the stream
/// closes; the events are cut into chunks across line boundaries. Second watch: an ERROR 410
/// event. Later watches stay open and silent.
fn watch_response(fake: &Fake) -> Response {
    let n = fake.watches.fetch_add(1, Ordering::SeqCst);
    if n == 1 {
        // 410 Gone as an ERROR event on a stream that stays open: the client must re-list.
        let gone = line(
            "ERROR",
            json!({"kind": "Status", "apiVersion": "v1", "status": "Failure",
                "message": "too old resource version: 110 (120)", "reason": "Expired", "code": 410}),
        );
        let stream = futures_util::stream::once(async move { Ok(Bytes::from(gone)) })
            .chain(futures_util::stream::pending::<Result<Bytes, std::io::Error>>());
        return Response::new(Body::from_stream(stream));
    }
    if n > 1 {
        let pending = futures_util::stream::pending::<Result<Bytes, std::io::Error>>();
        return Response::new(Body::from_stream(pending));
    }
    let mut text = String::new();
    text.push_str(&line("ADDED", node_pod("web-5d8f7-x2k9z")));
    text.push_str("{this is not json\n\n");
    text.push_str(&line("ADDED", node_pod("agent-7xk2p")));
    text.push_str(&line(
        "BOOKMARK",
        json!({"kind": "Pod", "apiVersion": "v1", "metadata": {"resourceVersion": "105"}}),
    ));
    text.push_str(&line("DELETED", node_pod("backup-29000000-x7k2p")));
    let bytes = text.into_bytes();
    let chunks: Vec<Bytes> = bytes.chunks(97).map(Bytes::copy_from_slice).collect();
    let release = Arc::clone(&fake.release_watch);
    let stream = futures_util::stream::iter(chunks)
        .then(|chunk| async move {
            tokio::time::sleep(Duration::from_millis(5)).await;
            Ok::<Bytes, std::io::Error>(chunk)
        })
        .chain(futures_util::stream::once(async move {
            release.notified().await;
            Ok(Bytes::new())
        }));
    Response::new(Body::from_stream(stream))
}

async fn start(fake: Fake) -> (Arc<Fake>, String) {
    let fake = Arc::new(fake);
    let app = Router::new().fallback(handle).with_state(Arc::clone(&fake));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind 127.0.0.1:0");
    let addr = listener.local_addr().expect("local addr");
    tokio::spawn(async move {
        let _ = axum::serve(listener, app).await;
    });
    (fake, format!("http://{addr}"))
}

fn settings(base_url: &str, capacity: usize) -> KubeSettings {
    KubeSettings {
        base_url: base_url.to_owned(),
        token: Some(TOKEN.to_owned()),
        ca_pem: None,
        node_name: NODE.to_owned(),
        cache_capacity: capacity,
        request_timeout: Duration::from_secs(5),
    }
}

fn resolver(base_url: &str, capacity: usize) -> OwnerResolver {
    OwnerResolver::new(settings(base_url, capacity)).expect("resolver")
}

fn api(kind: WorkloadKind, name: &str) -> Workload {
    Workload {
        kind,
        name: name.to_owned(),
        job: None,
        cronjob: None,
        source: OwnerSource::KubernetesApi,
    }
}

fn job(name: &str, uid: &str) -> Option<JobRef> {
    Some(JobRef {
        name: name.to_owned(),
        controller_uid: Some(uid.to_owned()),
    })
}

fn cronjob(name: &str, scheduled: Option<&str>) -> Option<CronJobRef> {
    Some(CronJobRef {
        name: name.to_owned(),
        scheduled_time: scheduled.map(str::to_owned),
        source: OwnerSource::KubernetesApi,
        inferred: false,
    })
}

#[tokio::test]
async fn resolves_owner_chains() {
    let (fake, base) = start(cluster()).await;
    let r = resolver(&base, 64);

    // Pod -> Job -> CronJob.
    let w = r
        .workload_of(NS, "backup-29000000-x7k2p", Some(POD_CRON))
        .await
        .expect("cronjob pod");
    assert_eq!(w.kind, WorkloadKind::CronJob);
    assert_eq!(w.name, "backup");
    assert_eq!(w.job, job("backup-29000000", JOB_BACKUP));
    assert_eq!(
        w.cronjob,
        cronjob("backup", Some("2025-02-19T21:20:00.000000000Z"))
    );
    assert_eq!(w.source, OwnerSource::KubernetesApi);
    assert_eq!(
        fake.log(),
        vec![
            pod_path("backup-29000000-x7k2p"),
            format!("/apis/batch/v1/namespaces/{NS}/jobs/backup-29000000"),
        ]
    );
    let json = serde_json::to_value(&w).expect("serialize");
    assert_eq!(
        json,
        json!({"kind": "CronJob", "name": "backup",
            "job": {"name": "backup-29000000", "controller_uid": JOB_BACKUP},
            "cronjob": {"name": "backup", "scheduled_time": "2025-02-19T21:20:00.000000000Z",
                        "source": "kubernetes_api", "inferred": false},
            "source": "kubernetes_api"})
    );

    // Without the annotation, the CronJob controller's `<name>-<minutes>` gives the time.
    let w = r
        .workload_of(NS, "report-29000001-b4c5d", None)
        .await
        .expect("report pod");
    assert_eq!(
        w,
        Workload {
            kind: WorkloadKind::CronJob,
            name: "report".to_owned(),
            job: job("report-29000001", JOB_REPORT),
            cronjob: cronjob("report", Some("2025-02-19T21:21:00.000000000Z")),
            source: OwnerSource::KubernetesApi,
        }
    );

    // Pod -> bare Job.
    let w = r
        .workload_of(NS, "migrate-h6j7k", Some(POD_JOB))
        .await
        .expect("job pod");
    assert_eq!(w.kind, WorkloadKind::Job);
    assert_eq!(w.name, "migrate");
    assert_eq!(w.job, job("migrate", JOB_MIGRATE));
    assert_eq!(w.cronjob, None);
    assert_eq!(w.source, OwnerSource::KubernetesApi);

    // The Job of that name is not the pod's (other uid): stop at the ownerReference.
    let w = r
        .workload_of(NS, "nightly-m2n3p", Some(POD_STALE))
        .await
        .expect("stale pod");
    assert_eq!(
        w,
        Workload {
            job: job("nightly", JOB_NIGHTLY_OLD),
            ..api(WorkloadKind::Job, "nightly")
        }
    );

    // Pod -> ReplicaSet -> Deployment.
    let w = r
        .workload_of(NS, "web-5d8f7-x2k9z", Some(POD_WEB))
        .await
        .expect("web pod");
    assert_eq!(w.kind, WorkloadKind::Deployment);
    assert_eq!(w.name, "web");
    assert_eq!(w.job, None);
    assert_eq!(w.cronjob, None);
    assert_eq!(w.source, OwnerSource::KubernetesApi);

    // DaemonSet, bare pod, custom resource, foreign-group Job.
    let w = r
        .workload_of(NS, "agent-7xk2p", None)
        .await
        .expect("ds pod");
    assert_eq!(w, api(WorkloadKind::DaemonSet, "agent"));
    let w = r.workload_of(NS, "debug", None).await.expect("bare pod");
    assert_eq!(w, api(WorkloadKind::Pod, "debug"));
    let w = r.workload_of(NS, "wf-step-1", None).await.expect("crd pod");
    assert_eq!(w, api(WorkloadKind::Unknown, "wf"));
    let w = r
        .workload_of(NS, "train-worker-0", None)
        .await
        .expect("kubeflow pod");
    assert_eq!(w, api(WorkloadKind::Unknown, "train"));

    // Every request carried the bearer token.
    assert_eq!(fake.unauthorized.load(Ordering::SeqCst), 0);
    assert!(fake.requests() >= 14, "{:?}", fake.log());
}

#[tokio::test]
async fn cache_serves_repeat_calls_without_requests() {
    let (fake, base) = start(cluster()).await;
    let r = resolver(&base, 64);
    let first = r
        .workload_of(NS, "backup-29000000-x7k2p", Some(POD_CRON))
        .await
        .expect("first");
    assert_eq!(fake.requests(), 2);
    let again = r
        .workload_of(NS, "backup-29000000-x7k2p", Some(POD_CRON))
        .await
        .expect("again");
    let by_name = r
        .workload_of(NS, "backup-29000000-x7k2p", None)
        .await
        .expect("by name");
    assert_eq!(fake.requests(), 2, "{:?}", fake.log());
    assert_eq!(again, first);
    assert_eq!(by_name, first);
    assert_eq!(r.cached(POD_CRON), Some(first.clone()));

    // Another pod of the same Job: only the pod is fetched.
    let sibling = r
        .workload_of(NS, "backup-29000000-q8m4n", Some(POD_CRON_2))
        .await
        .expect("sibling");
    assert_eq!(sibling, first);
    assert_eq!(fake.requests(), 3, "{:?}", fake.log());

    // A uid the cache does not know for that name goes to the API, and a mismatch is an error.
    let other = "12345678-1234-4234-8234-123456789012";
    let err = r
        .workload_of(NS, "backup-29000000-x7k2p", Some(other))
        .await
        .expect_err("uid mismatch");
    assert!(
        matches!(&err, KubeError::UidMismatch { expected, found, .. } if expected == other && found == POD_CRON),
        "{err}"
    );
    assert_eq!(fake.requests(), 4);

    let stats = r.stats();
    assert_eq!(stats.cache_hits, 2);
    assert_eq!(stats.cache_misses, 3);
    assert_eq!(stats.requests, 4);
    assert_eq!(stats.errors, 1);
    assert_eq!(stats.cached_pods, 2);
    assert_eq!(stats.cached_owners, 1);
    assert_eq!(fake.unauthorized.load(Ordering::SeqCst), 0);
}

#[tokio::test]
async fn errors_are_reported_not_panics() {
    let (fake, base) = start(cluster()).await;
    let r = resolver(&base, 64);

    // 404 on the pod.
    let err = r.workload_of(NS, "missing", None).await.expect_err("404");
    assert_eq!(err.status_code(), Some(404));
    let KubeError::Status {
        url,
        code,
        body_excerpt,
    } = &err
    else {
        panic!("not a Status error: {err:?}");
    };
    assert_eq!(*code, 404);
    assert_eq!(url, &format!("{base}{}", pod_path("missing")));
    assert!(body_excerpt.contains("NotFound"), "{body_excerpt}");
    assert!(!body_excerpt.contains('\u{1b}'), "{body_excerpt:?}");
    assert!(err.to_string().contains(url.as_str()), "{err}");

    // Garbage JSON: truncated, and wrong types.
    for name in ["garbage", "garbage-types"] {
        let err = r.workload_of(NS, name, None).await.expect_err("garbage");
        assert!(
            matches!(&err, KubeError::Decode { url, .. } if url.ends_with(&pod_path(name))),
            "{err:?}"
        );
        assert!(err.to_string().contains(&pod_path(name)), "{err}");
    }
    // A Job answering garbage fails the pod, naming the Job's URL; nothing is cached.
    let err = r
        .workload_of(NS, "badjob-z9x8c", Some(POD_BADJOB))
        .await
        .expect_err("bad job");
    assert!(err.to_string().contains("/jobs/badjob"), "{err}");
    assert_eq!(r.cached(POD_BADJOB), None);

    // Names that cannot go into a path are refused before any request.
    let before = fake.requests();
    for (ns, pod) in [
        (NS, "../../secrets"),
        (NS, "a?watch=1"),
        ("kube system", "x"),
        (NS, ""),
    ] {
        let err = r.workload_of(ns, pod, None).await.expect_err("bad name");
        assert!(matches!(err, KubeError::InvalidName { .. }), "{err:?}");
    }
    assert_eq!(fake.requests(), before);

    // Without the token the server refuses, and the error says so.
    let mut anonymous = settings(&base, 8);
    anonymous.token = None;
    let anonymous = OwnerResolver::new(anonymous).expect("resolver");
    let err = anonymous
        .workload_of(NS, "debug", None)
        .await
        .expect_err("401");
    assert_eq!(err.status_code(), Some(401));

    // A server that is not there.
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("addr")
    };
    let gone = resolver(&format!("http://{closed}"), 8);
    let err = gone.workload_of(NS, "debug", None).await.expect_err("down");
    assert!(matches!(err, KubeError::Http { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&format!("GET http://{closed}/")), "{msg}");
    // The root cause is spelled out, the URL only once.
    assert!(msg.to_lowercase().contains("connect"), "{msg}");
    assert_eq!(msg.matches(&closed.to_string()).count(), 1, "{msg}");
    assert_eq!(gone.stats().errors, 1);
}

#[tokio::test]
async fn cache_is_bounded() {
    let (fake, base) = start(cluster()).await;
    let r = resolver(&base, 2);
    let pods = [
        ("backup-29000000-x7k2p", POD_CRON),
        ("migrate-h6j7k", POD_JOB),
        ("web-5d8f7-x2k9z", POD_WEB),
        ("agent-7xk2p", POD_DS),
        ("debug", POD_BARE),
    ];
    for (name, uid) in pods {
        r.workload_of(NS, name, Some(uid)).await.expect(name);
        let stats = r.stats();
        assert!(stats.cached_pods <= 2, "{stats:?}");
        assert!(stats.cached_owners <= 2, "{stats:?}");
    }
    assert_eq!(r.stats().cached_pods, 2);
    let cached = pods
        .iter()
        .filter(|(_, uid)| r.cached(uid).is_some())
        .count();
    assert_eq!(cached, 2);
    // The oldest were evicted, the newest kept.
    assert_eq!(r.cached(POD_CRON), None);
    assert_eq!(r.cached(POD_BARE), Some(api(WorkloadKind::Pod, "debug")));
    // An evicted pod is fetched again.
    let before = fake.requests();
    r.workload_of(NS, "backup-29000000-x7k2p", Some(POD_CRON))
        .await
        .expect("again");
    assert!(fake.requests() > before);
    assert!(r.stats().cached_pods <= 2);
}

#[tokio::test]
async fn watch_tracks_the_node() {
    let (fake, base) = start(cluster()).await;
    let r = Arc::new(resolver(&base, 64));
    let updates: Arc<Mutex<Vec<(String, Workload)>>> = Arc::default();
    let cancel = CancellationToken::new();
    let task = {
        let (r, updates, cancel) = (Arc::clone(&r), Arc::clone(&updates), cancel.clone());
        tokio::spawn(async move {
            r.watch_node(cancel, move |uid, workload| {
                if let Ok(mut u) = updates.lock() {
                    u.push((uid.to_owned(), workload.clone()));
                }
            })
            .await;
        })
    };

    // The first watch's events: two pods resolved, the listed CronJob pod dropped by DELETED
    // (before any re-list could drop it).
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let updated = updates.lock().map(|u| u.len()).unwrap_or_default();
        if updated == 3 && r.cached(POD_CRON).is_none() {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch events not applied: {:?}",
            fake.log()
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(fake.lists.load(Ordering::SeqCst), 1);
    assert_eq!(
        r.cached(POD_WEB),
        Some(api(WorkloadKind::Deployment, "web"))
    );
    assert_eq!(
        r.cached(POD_DS),
        Some(api(WorkloadKind::DaemonSet, "agent"))
    );
    fake.release_watch.notify_one();

    // Then: the stream closes, re-list (with a new bare pod), watch (ERROR 410), re-list, third
    // watch.
    while fake.watches.load(Ordering::SeqCst) < 3 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "watch did not re-list: {:?}",
            fake.log()
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }

    let mut seen = updates.lock().map(|u| u.clone()).unwrap_or_default();
    seen.sort_by(|a, b| a.0.cmp(&b.0));
    let expect_cron = Workload {
        kind: WorkloadKind::CronJob,
        name: "backup".to_owned(),
        job: job("backup-29000000", JOB_BACKUP),
        cronjob: cronjob("backup", Some("2025-02-19T21:20:00.000000000Z")),
        source: OwnerSource::KubernetesApi,
    };
    assert_eq!(
        seen,
        vec![
            (POD_CRON.to_owned(), expect_cron),
            (POD_WEB.to_owned(), api(WorkloadKind::Deployment, "web")),
            (POD_DS.to_owned(), api(WorkloadKind::DaemonSet, "agent")),
            (POD_BARE.to_owned(), api(WorkloadKind::Pod, "debug")),
        ],
        "each pod is reported once, when first resolved"
    );
    // DELETED dropped the CronJob pod; the others are served from the cache.
    assert_eq!(r.cached(POD_CRON), None);
    assert_eq!(
        r.cached(POD_WEB),
        Some(api(WorkloadKind::Deployment, "web"))
    );
    assert_eq!(
        r.cached(POD_DS),
        Some(api(WorkloadKind::DaemonSet, "agent"))
    );
    assert_eq!(r.cached(POD_BARE), Some(api(WorkloadKind::Pod, "debug")));
    let before = fake.requests();
    let w = r
        .workload_of(NS, "web-5d8f7-x2k9z", Some(POD_WEB))
        .await
        .expect("cached web");
    assert_eq!(w, api(WorkloadKind::Deployment, "web"));
    assert_eq!(fake.requests(), before);

    let log = fake.log();
    let lists: Vec<&String> = log
        .iter()
        .filter(|l| l.starts_with("/api/v1/pods?") && !l.contains("watch=1"))
        .collect();
    let watches: Vec<&String> = log.iter().filter(|l| l.contains("watch=1")).collect();
    assert_eq!(lists.len(), 3, "{log:?}");
    assert_eq!(watches.len(), 3, "{log:?}");
    assert!(
        lists[0].contains("fieldSelector=spec.nodeName%3Dnode-1"),
        "{log:?}"
    );
    assert!(
        watches[0].contains("fieldSelector=spec.nodeName%3Dnode-1"),
        "{log:?}"
    );
    assert!(watches[0].contains("resourceVersion=100"), "{log:?}");
    assert!(watches[0].contains("allowWatchBookmarks=true"), "{log:?}");
    assert!(watches[0].contains("timeoutSeconds=300"), "{log:?}");
    assert!(watches[1].contains("resourceVersion=110"), "{log:?}");
    assert!(watches[2].contains("resourceVersion=110"), "{log:?}");

    let stats = r.stats();
    assert_eq!(stats.watch_restarts, 2, "{stats:?}");
    // The malformed list item and the garbage watch line were skipped.
    assert_eq!(stats.malformed, 2, "{stats:?}");
    assert_eq!(fake.unauthorized.load(Ordering::SeqCst), 0);

    // Cancelling ends the watch although the server keeps the stream open.
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("watch_node returns after cancel")
        .expect("watch task");
}

#[tokio::test]
async fn watch_backs_off_while_the_server_is_down() {
    let closed = {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        listener.local_addr().expect("addr")
    };
    let r = Arc::new(resolver(&format!("http://{closed}"), 8));
    let cancel = CancellationToken::new();
    let task = {
        let (r, cancel) = (Arc::clone(&r), cancel.clone());
        tokio::spawn(async move { r.watch_node(cancel, |_, _| {}).await })
    };
    tokio::time::sleep(Duration::from_millis(1000)).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("returns after cancel")
        .expect("task");
    // 250 ms, 500 ms, 1 s...: a handful of attempts in a second, not a busy loop.
    let stats = r.stats();
    assert!((2..=4).contains(&stats.requests), "{stats:?}");
    assert_eq!(stats.errors, stats.requests);
}

fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
    let map: HashMap<String, String> = pairs
        .iter()
        .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
        .collect();
    move |k| map.get(k).cloned()
}

fn config_error(result: Result<Option<KubeSettings>, KubeError>) -> String {
    match result {
        Err(KubeError::Config(msg)) => msg,
        other => panic!("expected a Config error, got {other:?}"),
    }
}

#[test]
fn in_cluster_settings() {
    let dir = tempfile::tempdir().expect("tempdir");
    let sa = dir.path();
    let host = ("KUBERNETES_SERVICE_HOST", "kubernetes.default.svc");
    let port = ("KUBERNETES_SERVICE_PORT", "443");
    let node = ("NODE_NAME", NODE);

    // Not in a cluster.
    assert!(matches!(
        KubeSettings::in_cluster_from(env(&[node]), sa),
        Ok(None)
    ));
    // Half-configured: each error names what is missing.
    let msg = config_error(KubeSettings::in_cluster_from(env(&[host]), sa));
    assert!(msg.contains("KUBERNETES_SERVICE_PORT"), "{msg}");
    let msg = config_error(KubeSettings::in_cluster_from(
        env(&[host, ("KUBERNETES_SERVICE_PORT", "https")]),
        sa,
    ));
    assert!(msg.contains("KUBERNETES_SERVICE_PORT"), "{msg}");
    let msg = config_error(KubeSettings::in_cluster_from(env(&[host, port, node]), sa));
    assert!(
        msg.contains(&sa.join("token").display().to_string()),
        "{msg}"
    );
    write(&sa.join("token"), b"  \n");
    let msg = config_error(KubeSettings::in_cluster_from(env(&[host, port, node]), sa));
    assert!(msg.contains("token") && msg.contains("empty"), "{msg}");
    write(&sa.join("token"), b"secret-token\n");
    let msg = config_error(KubeSettings::in_cluster_from(env(&[host, port, node]), sa));
    assert!(
        msg.contains(&sa.join("ca.crt").display().to_string()),
        "{msg}"
    );
    write(&sa.join("ca.crt"), b"-----BEGIN CERTIFICATE-----\n");
    let msg = config_error(KubeSettings::in_cluster_from(env(&[host, port]), sa));
    assert!(msg.contains("NODE_NAME"), "{msg}");

    let settings = KubeSettings::in_cluster_from(env(&[host, port, node]), sa)
        .expect("settings")
        .expect("in cluster");
    assert_eq!(settings.base_url, "https://kubernetes.default.svc:443");
    assert_eq!(settings.token.as_deref(), Some("secret-token"));
    assert_eq!(
        settings.ca_pem.as_deref(),
        Some(&b"-----BEGIN CERTIFICATE-----\n"[..])
    );
    assert_eq!(settings.node_name, NODE);
    assert!(settings.cache_capacity > 0);
    assert!(settings.request_timeout > Duration::ZERO);
    // The token never shows in Debug output.
    let debug = format!("{settings:?}");
    assert!(!debug.contains("secret-token"), "{debug}");

    // IPv6 service hosts are bracketed.
    let v6 =
        KubeSettings::in_cluster_from(env(&[("KUBERNETES_SERVICE_HOST", "::1"), port, node]), sa)
            .expect("settings")
            .expect("in cluster");
    assert_eq!(v6.base_url, "https://[::1]:443");

    // A CA file without a certificate, a bad URL or an empty node name cannot build a client.
    for bad in [
        settings.clone(),
        KubeSettings {
            ca_pem: None,
            base_url: "not a url".to_owned(),
            ..settings.clone()
        },
        KubeSettings {
            ca_pem: None,
            node_name: String::new(),
            ..settings.clone()
        },
        KubeSettings {
            ca_pem: None,
            token: Some("bad\ntoken".to_owned()),
            ..settings.clone()
        },
    ] {
        let result = OwnerResolver::new(bad);
        assert!(
            matches!(result, Err(KubeError::Config(_))),
            "{:?}",
            result.map(|_| ())
        );
    }
}

fn write(path: &Path, contents: &[u8]) {
    std::fs::write(path, contents).expect("write");
}
