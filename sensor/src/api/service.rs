//! The `jobwatch.v1.Sensor` gRPC service: events, containers and status of this node.

use std::{
    ffi::CStr,
    sync::{Arc, RwLock, RwLockReadGuard, atomic::Ordering},
};

use futures_util::{StreamExt, stream::TakeUntil};
use jobwatch_proto::v1::{self as pb, sensor_server::Sensor};
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Request, Response, Status};

use crate::{
    api::{
        convert, filter,
        hub::{Hub, Item},
    },
    containers::{
        containerd::ContainerdStatus,
        index::{ContainerIndex, ContainerKind},
    },
    pipeline::Stats,
    probes::KernelCounters,
};

/// Longest container id (or prefix) `GetContainer` accepts, bytes.
pub const MAX_CONTAINER_ID_BYTES: usize = 128;

/// Produces the sensor's status on demand.
pub type StatusFn = Arc<dyn Fn() -> pb::Status + Send + Sync>;

/// The service: a handle on the hub, the container index and a status source.
#[derive(Clone)]
pub struct SensorApi {
    hub: Hub,
    index: Arc<RwLock<ContainerIndex>>,
    status: StatusFn,
    /// Ends every event stream when cancelled, so that a graceful shutdown does not wait for
    /// subscribers that would otherwise stay forever.
    shutdown: CancellationToken,
}

impl SensorApi {
    pub fn new(hub: Hub, index: Arc<RwLock<ContainerIndex>>, status: StatusFn) -> SensorApi {
        SensorApi {
            hub,
            index,
            status,
            shutdown: CancellationToken::new(),
        }
    }

    /// Ends the event streams when `token` is cancelled.
    pub fn end_streams_on(mut self, token: CancellationToken) -> SensorApi {
        self.shutdown = token;
        self
    }

    /// The index; a panic elsewhere while it was written leaves it readable.
    fn index(&self) -> RwLockReadGuard<'_, ContainerIndex> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

#[tonic::async_trait]
impl Sensor for SensorApi {
    type GetEventsStream = TakeUntil<ReceiverStream<Item>, WaitForCancellationFutureOwned>;

    async fn get_events(
        &self,
        request: Request<pb::GetEventsRequest>,
    ) -> Result<Response<Self::GetEventsStream>, Status> {
        let filter = filter::compile(request.get_ref())?;
        let events = ReceiverStream::new(self.hub.subscribe(filter));
        Ok(Response::new(
            events.take_until(self.shutdown.clone().cancelled_owned()),
        ))
    }

    async fn list_containers(
        &self,
        request: Request<pb::ListContainersRequest>,
    ) -> Result<Response<pb::ListContainersResponse>, Status> {
        let sandboxes = request.get_ref().include_sandboxes;
        let mut containers: Vec<pb::Container> = self
            .index()
            .all()
            .filter(|c| sandboxes || c.kind != ContainerKind::Sandbox)
            .map(|c| convert::container(c))
            .collect();
        containers.sort_by(|a, b| a.id.cmp(&b.id));
        Ok(Response::new(pb::ListContainersResponse { containers }))
    }

    async fn get_container(
        &self,
        request: Request<pb::GetContainerRequest>,
    ) -> Result<Response<pb::Container>, Status> {
        let id = request.get_ref().id.as_str();
        if id.is_empty() {
            return Err(Status::invalid_argument("id: empty"));
        }
        if id.len() > MAX_CONTAINER_ID_BYTES {
            return Err(Status::invalid_argument(format!(
                "id: {} bytes, at most {MAX_CONTAINER_ID_BYTES} allowed",
                id.len()
            )));
        }
        let index = self.index();
        if let Some(c) = index.get(id) {
            return Ok(Response::new(convert::container(&c)));
        }
        let mut found = index.all().filter(|c| c.id.starts_with(id));
        match (found.next(), found.count()) {
            (None, _) => Err(Status::not_found(format!("no container {id:?}"))),
            (Some(c), 0) => Ok(Response::new(convert::container(c))),
            (Some(_), more) => Err(Status::failed_precondition(format!(
                "ambiguous prefix {id:?} matches {} containers",
                more + 1
            ))),
        }
    }

    async fn get_status(
        &self,
        _request: Request<pb::GetStatusRequest>,
    ) -> Result<Response<pb::Status>, Status> {
        Ok(Response::new((self.status)()))
    }
}

/// Everything a status report is built from.
pub struct StatusInputs<'a> {
    pub node: &'a str,
    pub attached: &'a [&'static str],
    pub containerd: &'a ContainerdStatus,
    pub index: &'a RwLock<ContainerIndex>,
    pub hub: &'a Hub,
    pub stats: &'a Stats,
    pub kernel: &'a KernelCounters,
}

/// The kernel's release (`uname -r`), "" if unknown.
pub fn kernel_release() -> String {
    // SAFETY: utsname is plain old data; all-zero is a valid value.
    let mut uts: libc::utsname = unsafe { std::mem::zeroed() };
    // SAFETY: uts is a valid utsname to write into.
    if unsafe { libc::uname(&mut uts) } != 0 {
        return String::new();
    }
    // SAFETY: uname NUL-terminates the fields it fills; the buffer lives for this call.
    let release = unsafe { CStr::from_ptr(uts.release.as_ptr()) };
    release.to_string_lossy().into_owned()
}

/// The sensor's status: identity, health of its inputs and every counter it keeps.
pub fn status(i: &StatusInputs<'_>) -> pb::Status {
    let hub = i.hub.stats();
    let load = |a: &std::sync::atomic::AtomicU64| a.load(Ordering::Relaxed);
    let s = i.stats;
    let c = i.containerd;
    let mut counters: Vec<pb::Counter> = i
        .kernel
        .named()
        .map(|(name, value)| pb::Counter {
            name: format!("kernel_{name}"),
            value,
        })
        .collect();
    let user = [
        ("records", load(&s.records)),
        ("decode_errors", load(&s.decode_errors)),
        ("queue_full", s.queue_full.total()),
        ("exec_events", load(&s.exec_events)),
        ("exit_events", load(&s.exit_events)),
        ("file_events", load(&s.file_events)),
        ("lost_reported", load(&s.lost_reported)),
        ("processes_seeded", load(&s.processes_seeded)),
        ("metadata_waited", load(&s.metadata_waited)),
        ("metadata_resolved", load(&s.metadata_resolved)),
        ("metadata_expired", load(&s.metadata_expired)),
        ("metadata_overflowed", load(&s.metadata_overflowed)),
        ("hub_published", hub.published),
        ("hub_slow_subscriber_lost", hub.slow_subscriber_lost),
        ("containerd_reconnects", load(&c.reconnects)),
        ("containerd_connect_failures", load(&c.connect_failures)),
        ("containerd_events_seen", load(&c.events_seen)),
        ("containerd_queue_full", load(&c.queue_full)),
    ];
    counters.extend(user.into_iter().map(|(name, value)| pb::Counter {
        name: name.to_string(),
        value,
    }));
    counters.extend(
        s.queue_full
            .named("queue_full")
            .into_iter()
            .map(|(name, value)| pb::Counter { name, value }),
    );
    let tracked = i
        .index
        .read()
        .map(|x| x.len())
        .unwrap_or_else(|poisoned| poisoned.into_inner().len());
    pb::Status {
        version: env!("CARGO_PKG_VERSION").to_string(),
        node: i.node.to_string(),
        kernel: kernel_release(),
        programs_attached: i.attached.iter().map(|p| p.to_string()).collect(),
        containerd_connected: c.is_connected(),
        containerd_error: c.last_error().unwrap_or_default(),
        containers_tracked: tracked as u64,
        subscribers: u32::try_from(hub.subscribers).unwrap_or(u32::MAX),
        counters,
    }
}
