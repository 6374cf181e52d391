//! Keeping the container index current from containerd: list at connection, then follow its
//! events. containerd being away never stops the sensor: the watcher reports the state,
//! reconnects with backoff and jitter, and lists again on every reconnection.

use std::{
    collections::{BTreeMap, HashSet},
    path::PathBuf,
    sync::{
        Arc, Mutex, RwLock,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::Duration,
};

use containerd_client::{
    events::{ContainerCreate, ContainerDelete, TaskExit, TaskStart},
    services::v1::{
        Container, GetContainerRequest, ListContainersRequest, ListTasksRequest, SubscribeRequest,
        containers_client::ContainersClient, events_client::EventsClient,
        tasks_client::TasksClient,
    },
    tonic::{Request, transport::Channel},
    types::v1::Status as TaskStatus,
};
use prost::Message as _;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use crate::{
    attribution::workload::sanitize_label,
    clock,
    containers::{
        index::{
            CONTAINER_NAME_LABEL, CgroupFs, ContainerIndex, ContainerInfo, ContainerKind,
            KIND_LABEL, SANDBOX_ID_ANNOTATION, pod_and_workload,
        },
        oci,
    },
    event::{ContainerCreated, ContainerExited, Event, EventKind},
};

/// Where containerd is and what to watch.
#[derive(Clone, Debug)]
pub struct ContainerdSettings {
    pub socket: PathBuf,
    pub namespaces: Vec<String>,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

/// The watcher's state, for status reports and metrics.
#[derive(Debug, Default)]
pub struct ContainerdStatus {
    pub connected: AtomicBool,
    /// Successful connections after the first.
    pub reconnects: AtomicU64,
    pub connect_failures: AtomicU64,
    pub events_seen: AtomicU64,
    /// Lifecycle events dropped because the output queue was full.
    pub queue_full: AtomicU64,
    pub last_error: Mutex<Option<String>>,
}

impl ContainerdStatus {
    pub fn is_connected(&self) -> bool {
        self.connected.load(Ordering::Relaxed)
    }

    pub fn last_error(&self) -> Option<String> {
        self.last_error.lock().ok().and_then(|e| e.clone())
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ContainerdError {
    #[error("cannot connect to containerd at {socket}: {source}")]
    Connect {
        socket: String,
        source: containerd_client::tonic::transport::Error,
    },
    #[error("containerd call {call} failed: {status}")]
    Call {
        call: &'static str,
        status: Box<containerd_client::tonic::Status>,
    },
    #[error("containerd event stream ended")]
    StreamEnded,
}

fn call_err(call: &'static str) -> impl Fn(containerd_client::tonic::Status) -> ContainerdError {
    move |status| ContainerdError::Call {
        call,
        status: Box::new(status),
    }
}

/// Follows containerd and keeps the index current.
pub struct Watcher {
    pub settings: ContainerdSettings,
    pub index: Arc<RwLock<ContainerIndex>>,
    pub cgroupfs: CgroupFs,
    pub events: mpsc::Sender<Event>,
    pub status: Arc<ContainerdStatus>,
}

fn with_ns<T>(msg: T, ns: &str) -> Request<T> {
    let mut req = Request::new(msg);
    if let Ok(value) = ns.parse() {
        req.metadata_mut().insert("containerd-namespace", value);
    }
    req
}

fn unix_secs_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

fn unix_ns_now() -> i128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as i128)
        .unwrap_or(0)
}

fn timestamp_ns(ts: Option<&prost_types::Timestamp>) -> Option<i128> {
    ts.map(|t| t.seconds as i128 * 1_000_000_000 + t.nanos as i128)
}

impl Watcher {
    /// Runs until cancelled.
    pub async fn run(self, cancel: CancellationToken) {
        let mut backoff = Duration::from_millis(250);
        let mut sessions = 0u64;
        loop {
            let result = tokio::select! {
                _ = cancel.cancelled() => return,
                r = self.session(&mut sessions) => r,
            };
            self.status.connected.store(false, Ordering::Relaxed);
            if let Err(e) = result {
                let msg = e.to_string();
                let repeated = self.status.last_error().as_deref() == Some(msg.as_str());
                if !repeated {
                    tracing::warn!(error = %msg, "containerd unavailable: tracing goes on, containers are attributed again once it is back");
                }
                if let Ok(mut last) = self.status.last_error.lock() {
                    *last = Some(msg);
                }
                if matches!(e, ContainerdError::Connect { .. }) {
                    self.status.connect_failures.fetch_add(1, Ordering::Relaxed);
                } else {
                    // A session that worked for a while starts the backoff afresh.
                    backoff = Duration::from_millis(250);
                }
            }
            // Up to 25% jitter so that a fleet of sensors does not reconnect in step.
            let jitter = backoff.mul_f64(jitter_fraction() * 0.25);
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(backoff + jitter) => {}
            }
            backoff = (backoff * 2).min(self.settings.max_backoff);
        }
    }

    async fn session(&self, sessions: &mut u64) -> Result<(), ContainerdError> {
        let socket = self.settings.socket.display().to_string();
        let channel = containerd_client::connect(&self.settings.socket)
            .await
            .map_err(|source| ContainerdError::Connect {
                socket: socket.clone(),
                source,
            })?;
        // Subscribe before listing so that nothing between the two is missed.
        let filters = self
            .settings
            .namespaces
            .iter()
            .flat_map(|ns| {
                [
                    format!("namespace=={ns},topic~=\"^/containers/\""),
                    format!("namespace=={ns},topic~=\"^/tasks/\""),
                ]
            })
            .collect();
        // containerd answers a subscription only with its first event, so the stream is read
        // by its own task; the request is on its way before the listing starts.
        let (envelopes_tx, mut envelopes) = mpsc::channel(1024);
        let mut events_client = EventsClient::new(channel.clone());
        let subscription = AbortOnDrop(Some(tokio::spawn(async move {
            let mut stream = events_client
                .subscribe(SubscribeRequest { filters })
                .await?
                .into_inner();
            while let Some(envelope) = stream.message().await? {
                if envelopes_tx.send(envelope).await.is_err() {
                    break;
                }
            }
            Ok::<(), containerd_client::tonic::Status>(())
        })));
        tokio::task::yield_now().await;
        for ns in &self.settings.namespaces {
            self.resync(&channel, ns).await?;
        }
        self.status.connected.store(true, Ordering::Relaxed);
        if *sessions > 0 {
            self.status.reconnects.fetch_add(1, Ordering::Relaxed);
        }
        *sessions += 1;
        if let Ok(mut last) = self.status.last_error.lock() {
            *last = None;
        }
        let containers = self.index.read().map(|i| i.len()).unwrap_or(0);
        tracing::info!(socket, containers, "connected to containerd");
        while let Some(envelope) = envelopes.recv().await {
            self.status.events_seen.fetch_add(1, Ordering::Relaxed);
            let Some(event) = envelope.event else {
                continue;
            };
            let ns = envelope.namespace;
            let at = timestamp_ns(envelope.timestamp.as_ref()).unwrap_or_else(unix_ns_now);
            match envelope.topic.as_str() {
                "/containers/create" => {
                    if let Ok(e) = ContainerCreate::decode(event.value.as_slice()) {
                        self.fetch(&channel, &ns, &e.id).await;
                    }
                }
                "/tasks/start" => {
                    if let Ok(e) = TaskStart::decode(event.value.as_slice()) {
                        if self.known(&e.container_id).is_none() {
                            self.fetch(&channel, &ns, &e.container_id).await;
                        }
                        self.started(&e.container_id, e.pid, at, false);
                    }
                }
                "/tasks/exit" => {
                    if let Ok(e) = TaskExit::decode(event.value.as_slice()) {
                        // Only the init process ends the container (exec'd processes have
                        // their own ids).
                        if e.id == e.container_id || e.id.is_empty() {
                            let exited = timestamp_ns(e.exited_at.as_ref()).unwrap_or(at);
                            self.exited(&e.container_id, e.exit_status, exited);
                        }
                    }
                }
                "/containers/delete" => {
                    if let Ok(e) = ContainerDelete::decode(event.value.as_slice())
                        && let Ok(mut index) = self.index.write()
                    {
                        index.remove(&e.id);
                    }
                }
                _ => {}
            }
        }
        match subscription.finish().await {
            Some(Ok(Err(status))) => Err(call_err("Events.Subscribe")(status)),
            _ => Err(ContainerdError::StreamEnded),
        }
    }

    fn known(&self, id: &str) -> Option<Arc<ContainerInfo>> {
        self.index.read().ok().and_then(|i| i.get(id))
    }

    /// Lists containers and tasks of one namespace and brings the index in line.
    async fn resync(&self, channel: &Channel, ns: &str) -> Result<(), ContainerdError> {
        let containers = ContainersClient::new(channel.clone())
            .list(with_ns(ListContainersRequest { filters: vec![] }, ns))
            .await
            .map_err(call_err("Containers.List"))?
            .into_inner()
            .containers;
        let tasks = TasksClient::new(channel.clone())
            .list(with_ns(
                ListTasksRequest {
                    filter: String::new(),
                },
                ns,
            ))
            .await
            .map_err(call_err("Tasks.List"))?
            .into_inner()
            .tasks;
        let mut infos: Vec<ContainerInfo> =
            containers.iter().map(|c| container_info(ns, c)).collect();
        // Sandboxes first, so app containers find their pod.
        infos.sort_by_key(|c| c.kind != ContainerKind::Sandbox);
        let present: HashSet<String> = infos.iter().map(|c| c.id.clone()).collect();
        let mut fresh = Vec::new();
        if let Ok(mut index) = self.index.write() {
            for info in infos {
                let was_started = index.get(&info.id).and_then(|c| c.init_pid).is_some();
                if !was_started {
                    fresh.push(info.id.clone());
                }
                index.upsert(info);
            }
            // Containers of other namespaces are not ours to drop.
            let mut keep = present;
            keep.extend(
                index
                    .all()
                    .filter(|c| c.runtime_namespace != ns)
                    .map(|c| c.id.clone()),
            );
            index.retain_present(&keep);
        }
        let alive =
            [TaskStatus::Running, TaskStatus::Paused, TaskStatus::Pausing].map(|s| s as i32);
        for task in tasks.iter().filter(|t| alive.contains(&t.status)) {
            // containerd 1.6 leaves container_id empty in task lists: a task's id is its
            // container's.
            let id = if task.container_id.is_empty() {
                &task.id
            } else {
                &task.container_id
            };
            let announce = fresh.contains(id);
            self.started(id, task.pid, unix_ns_now(), announce);
        }
        Ok(())
    }

    /// Gets one container's record from containerd and indexes it.
    async fn fetch(&self, channel: &Channel, ns: &str, id: &str) {
        let response = ContainersClient::new(channel.clone())
            .get(with_ns(GetContainerRequest { id: id.to_string() }, ns))
            .await;
        match response {
            Ok(r) => {
                if let Some(c) = r.into_inner().container {
                    let info = container_info(ns, &c);
                    if let Ok(mut index) = self.index.write() {
                        index.upsert(info);
                    }
                }
            }
            Err(status) => {
                tracing::debug!(id, %status, "container vanished before it could be read")
            }
        }
    }

    /// A task started: record its pid and cgroups, and announce app containers.
    fn started(&self, id: &str, pid: u32, unix_ns: i128, seen_at_start: bool) {
        let Some(info) = self
            .index
            .write()
            .ok()
            .and_then(|mut i| i.set_started(id, pid, unix_ns))
        else {
            return;
        };
        let (mut v2, mut v1) = info
            .cgroup
            .as_deref()
            .map(|d| self.cgroupfs.ids(d))
            .unwrap_or((None, None));
        if v2.is_none() && v1.is_none() {
            // No usable cgroupsPath: ask /proc where the init process lives.
            if let Some(dir) = proc_cgroup_dir(pid) {
                (v2, v1) = self.cgroupfs.ids(&dir);
            }
        }
        if let Ok(mut index) = self.index.write() {
            index.set_cgroup_ids(id, v2, v1);
        }
        if info.kind == ContainerKind::Sandbox {
            return;
        }
        let event = Event {
            time_unix_ns: unix_ns,
            boot_ns: clock::boot_ns(),
            kind: EventKind::ContainerCreated(ContainerCreated {
                container: Box::new((*info).clone()),
                seen_at_start,
            }),
        };
        self.send(event);
    }

    fn exited(&self, id: &str, exit_status: u32, unix_ns: i128) {
        let Some(info) = self.known(id) else { return };
        if info.kind == ContainerKind::Sandbox {
            return;
        }
        let duration_ns = info.started_unix_ns.map(|s| (unix_ns - s).max(0) as u64);
        let event = Event {
            time_unix_ns: unix_ns,
            boot_ns: clock::boot_ns(),
            kind: EventKind::ContainerExited(ContainerExited {
                container: info.reference(),
                exit_code: exit_status,
                duration_ns,
            }),
        };
        self.send(event);
    }

    fn send(&self, event: Event) {
        if self.events.try_send(event).is_err() {
            self.status.queue_full.fetch_add(1, Ordering::Relaxed);
        }
    }
}

/// Aborts a task when dropped (a session that ends takes its subscription with it).
struct AbortOnDrop<T>(Option<tokio::task::JoinHandle<T>>);

impl<T> AbortOnDrop<T> {
    /// Waits for the task's result.
    async fn finish(mut self) -> Option<Result<T, tokio::task::JoinError>> {
        Some(self.0.take()?.await)
    }
}

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        if let Some(task) = &self.0 {
            task.abort();
        }
    }
}

/// The cgroup v2 directory of a process, from /proc/<pid>/cgroup.
fn proc_cgroup_dir(pid: u32) -> Option<String> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    crate::procfs::cgroup_v2_path(&text).map(str::to_string)
}

/// A pseudo-random fraction in [0, 1) for jitter, from the clock's low bits.
fn jitter_fraction() -> f64 {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    f64::from(nanos % 1000) / 1000.0
}

/// Builds the index entry of a containerd container record.
pub fn container_info(ns: &str, c: &Container) -> ContainerInfo {
    let labels: BTreeMap<String, String> = c
        .labels
        .iter()
        .filter_map(|(k, v)| sanitize_label(k, v))
        .collect();
    let spec = c
        .spec
        .as_ref()
        .map(|s| s.value.as_slice())
        .unwrap_or_default();
    let annotations = oci::annotations(spec);
    let kind = match labels.get(KIND_LABEL).map(String::as_str) {
        Some("sandbox") => ContainerKind::Sandbox,
        Some("container") => ContainerKind::Container,
        _ => ContainerKind::Plain,
    };
    let metadata = c
        .extensions
        .iter()
        .find(|(k, _)| k.starts_with("io.cri-containerd.") && k.ends_with(".metadata"))
        .map(|(_, v)| oci::cri_metadata(&v.value))
        .unwrap_or_default();
    let security = match oci::security_facts(spec, &metadata) {
        Ok(f) => f,
        Err(e) => {
            tracing::debug!(id = c.id, error = %e, "container spec unreadable: security facts unknown");
            oci::SecurityFacts::default()
        }
    };
    let (pod, workload) = if kind == ContainerKind::Sandbox {
        pod_and_workload(&labels, unix_secs_now())
    } else {
        (None, None)
    };
    let name = labels
        .get(CONTAINER_NAME_LABEL)
        .cloned()
        .or(metadata.name.clone())
        .or_else(|| pod.as_ref().map(|p| p.name.clone()))
        .unwrap_or_else(|| c.id.clone());
    ContainerInfo {
        id: c.id.clone(),
        runtime_namespace: ns.to_string(),
        name,
        kind,
        image: c.image.clone(),
        image_digest: metadata.image_ref.filter(|r| r.starts_with("sha256:")),
        sandbox_id: annotations.get(SANDBOX_ID_ANNOTATION).cloned(),
        pod,
        workload,
        security,
        cgroup: oci::cgroups_path(spec).as_deref().and_then(oci::cgroup_dir),
        init_pid: None,
        started_unix_ns: None,
        labels,
        reference: Default::default(),
    }
}
