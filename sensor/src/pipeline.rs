//! The sensor's pipeline: ring buffer reader (`AsyncFd`) -> decode -> process table -> events
//! on a bounded queue. Every place an event can be lost is counted.

use std::{
    path::Path,
    sync::{
        Arc, RwLock,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use aya::maps::{MapData, RingBuf};
use tokio::{io::unix::AsyncFd, sync::mpsc, time::MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use crate::{
    clock::BootClock,
    config::Config,
    containers::{
        attributor::Attributor,
        containerd::{ContainerdSettings, ContainerdStatus, Watcher},
        index::{CgroupFs, ContainerIndex},
    },
    event::{self, Event, EventKind, LostEvents},
    loss::PerKind,
    probes::{Attached, KernelCounterReader, KernelCounters, LoadError, Probes},
    process_table::ProcessTable,
    procfs,
    record::{Record, decode},
};

/// Userspace counters, shared with whoever reports them.
#[derive(Debug, Default)]
pub struct Stats {
    pub records: AtomicU64,
    pub decode_errors: AtomicU64,
    /// Events dropped because the output queue was full, by kind.
    pub queue_full: PerKind,
    pub exec_events: AtomicU64,
    pub exit_events: AtomicU64,
    pub file_events: AtomicU64,
    /// Kernel losses already reported as `lost_events`.
    pub lost_reported: AtomicU64,
    pub processes_seeded: AtomicU64,
    /// Events that waited for their container's metadata, and how that ended.
    pub metadata_waited: AtomicU64,
    pub metadata_resolved: AtomicU64,
    pub metadata_expired: AtomicU64,
    pub metadata_overflowed: AtomicU64,
}

/// A running sensor: its events arrive on `events`.
pub struct RunningSensor {
    pub events: mpsc::Receiver<Event>,
    pub stats: Arc<Stats>,
    pub attached: Vec<&'static str>,
    /// The containers known on this node.
    pub index: Arc<RwLock<ContainerIndex>>,
    pub containerd: Arc<ContainerdStatus>,
    counters: Arc<KernelCounterReader>,
    cancel: CancellationToken,
    /// Cancelled when the reader stops on its own (it cannot poll the ring buffer, or it
    /// panicked); the cause is in `failure` (none for a panic).
    failed: CancellationToken,
    failure: Arc<std::sync::OnceLock<String>>,
    reader: tokio::task::JoinHandle<()>,
    /// Dropping it detaches the programs.
    probes: Attached,
}

impl RunningSensor {
    /// Loads the programs and starts reading.
    pub async fn start(config: &Config) -> Result<RunningSensor, LoadError> {
        let probes = Probes::load(config)?;
        Ok(RunningSensor::from_probes(probes, config))
    }

    /// Starts reading from already loaded probes (records that arrived meanwhile are read
    /// first, or were counted as lost if they did not fit).
    pub fn from_probes(probes: Probes, config: &Config) -> RunningSensor {
        let attached = probes.attached.clone();
        let cgroupfs = CgroupFs::detect(probes.v1_controller.as_deref());
        let (ring, counters, probes) = probes.split();
        let counters = Arc::new(counters);
        let stats = Arc::new(Stats::default());
        let (tx, rx) = mpsc::channel(config.event_queue_capacity);
        let cancel = CancellationToken::new();

        let mut table = ProcessTable::new(config.process_table_capacity);
        seed_process_table(&mut table, &stats);

        let index = Arc::new(RwLock::new(ContainerIndex::new()));
        let containerd = Arc::new(ContainerdStatus::default());
        // The runtime's container events go through the reader, which orders them with the
        // containers' own events (see `Reader::lifecycle`).
        let (lifecycle_tx, lifecycle) = mpsc::channel(LIFECYCLE_QUEUE);
        if config.containerd.enabled {
            let watcher = Watcher {
                settings: ContainerdSettings {
                    socket: config.containerd.socket.clone(),
                    namespaces: config.containerd.namespaces.clone(),
                    max_backoff: Duration::from_millis(config.containerd.max_backoff_ms),
                },
                index: Arc::clone(&index),
                cgroupfs: cgroupfs.clone(),
                events: lifecycle_tx,
                status: Arc::clone(&containerd),
            };
            tokio::spawn(watcher.run(cancel.clone()));
        }
        if config.kubernetes_api {
            spawn_owner_watch(Arc::clone(&index), cancel.clone());
        }
        // Without containerd nothing can bring a container's metadata: events do not wait.
        let wait = if config.containerd.enabled {
            Duration::from_millis(config.metadata_wait_ms)
        } else {
            Duration::ZERO
        };
        let attributor = Attributor::new(
            Arc::clone(&index),
            cgroupfs,
            wait,
            config.metadata_pending_capacity,
        );

        let reader = Reader {
            attributor,
            table,
            clock: BootClock::now(),
            tx,
            stats: Arc::clone(&stats),
            counters: Arc::clone(&counters),
            reported_ringbuf: 0,
            unreported_queue: 0,
            reported_queue: 0,
            batch: Vec::with_capacity(BATCH),
        };
        let poll = Duration::from_millis(config.poll_interval_ms);
        let loss = Duration::from_millis(config.loss_report_interval_ms);
        let failed = CancellationToken::new();
        let failure = Arc::new(std::sync::OnceLock::new());
        let task = {
            let (failed, failure) = (failed.clone(), Arc::clone(&failure));
            let run = reader.run(ring, lifecycle, poll, loss, cancel.clone());
            tokio::spawn(async move {
                // Cancels `failed` unless disarmed: also when the reader panics.
                let guard = failed.drop_guard();
                match run.await {
                    Ok(()) => {
                        guard.disarm();
                    }
                    Err(cause) => {
                        let _ = failure.set(cause);
                    }
                }
            })
        };
        RunningSensor {
            events: rx,
            stats,
            attached,
            index,
            containerd,
            counters,
            cancel,
            failed,
            failure,
            reader: task,
            probes,
        }
    }

    /// Resolves, with the cause, if the reader stops on its own: no event would be read any
    /// more, so the sensor must not go on as if it were watching.
    pub async fn failed(&self) -> String {
        self.failed.cancelled().await;
        self.failure
            .get()
            .cloned()
            .unwrap_or_else(|| "the ring buffer reader panicked".to_owned())
    }

    pub fn kernel_counters(&self) -> KernelCounters {
        self.counters.read()
    }

    /// A handle that reads the kernel counters, for status reports.
    pub fn counter_reader(&self) -> Arc<KernelCounterReader> {
        Arc::clone(&self.counters)
    }

    /// Detaches the programs, then reads what is left in the ring buffer, reports the final
    /// losses and stops. Returns the kernel counters as they ended, so that nothing is lost
    /// between the last report and the detach.
    pub async fn shutdown(self) -> KernelCounters {
        drop(self.probes);
        self.cancel.cancel();
        if let Err(e) = self.reader.await {
            tracing::error!(error = %e, "ring buffer reader ended abnormally");
        }
        self.counters.read()
    }

    /// A token that stops the reader when cancelled.
    pub fn cancel_token(&self) -> CancellationToken {
        self.cancel.clone()
    }
}

/// Inside a cluster, follows this node's pods through the Kubernetes API and records their
/// confirmed owners in the index. Outside, nothing: owners are inferred from labels.
fn spawn_owner_watch(index: Arc<RwLock<ContainerIndex>>, cancel: CancellationToken) {
    use crate::attribution::kube::{KubeSettings, OwnerResolver};
    let settings = match KubeSettings::in_cluster() {
        Ok(Some(s)) => s,
        Ok(None) => {
            tracing::info!("not in a Kubernetes cluster: CronJobs are inferred from Job names");
            return;
        }
        Err(e) => {
            tracing::warn!(error = %e, "Kubernetes API not usable: CronJobs are inferred from Job names");
            return;
        }
    };
    let resolver = match OwnerResolver::new(settings) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(error = %e, "Kubernetes API client not usable: CronJobs are inferred from Job names");
            return;
        }
    };
    tokio::spawn(async move {
        resolver
            .watch_node(cancel, move |pod_uid, workload| {
                if let Ok(mut index) = index.write() {
                    index.set_pod_workload(pod_uid, workload.clone());
                }
            })
            .await;
    });
}

fn seed_process_table(table: &mut ProcessTable, stats: &Stats) {
    let unified = procfs::unified_cgroup_root();
    match procfs::scan_processes(Path::new("/proc"), &unified) {
        Ok(scan) => {
            let n = scan.processes.len();
            for p in scan.processes {
                table.on_exec(p);
            }
            stats.processes_seeded.store(n as u64, Ordering::Relaxed);
            tracing::info!(
                processes = n,
                skipped = scan.skipped,
                "process table seeded from /proc"
            );
        }
        Err(e) => tracing::warn!(error = %e, "cannot seed the process table from /proc"),
    }
}

/// Offers an event to the output queue; a full queue drops it, counted (and reported later).
fn send_to(tx: &mpsc::Sender<Event>, stats: &Stats, unreported: &mut u64, event: Event) {
    if let Err(e) = tx.try_send(event) {
        stats.queue_full.add(e.into_inner().kind.loss_kind(), 1);
        *unreported += 1;
    }
}

/// Most events the reader holds before it hands them to the output queue.
const BATCH: usize = 256;

struct Reader {
    attributor: Attributor,
    table: ProcessTable,
    clock: BootClock,
    tx: mpsc::Sender<Event>,
    stats: Arc<Stats>,
    counters: Arc<KernelCounterReader>,
    reported_ringbuf: u64,
    /// Queue drops not yet reported in the stream (the report itself needs queue room).
    unreported_queue: u64,
    reported_queue: u64,
    /// Events of this wakeup not yet in the output queue: they go in together at its end
    /// ([`Reader::flush`]), so that the output task, on another thread, is woken once per
    /// wakeup of the reader rather than once per event it would otherwise catch up with
    /// (a cross-thread wakeup costs 20-40 µs of CPU on a virtual machine).
    batch: Vec<Event>,
}

/// Container lifecycle events from the runtime waiting for the reader.
const LIFECYCLE_QUEUE: usize = 4096;

impl Reader {
    async fn run(
        mut self,
        ring: RingBuf<MapData>,
        mut lifecycle: mpsc::Receiver<Event>,
        poll: Duration,
        loss: Duration,
        cancel: CancellationToken,
    ) -> Result<(), String> {
        // SAFETY: the ring buffer owns its map fd and the AsyncFd owns the ring buffer, so the
        // fd stays open and unchanged while registered.
        let registered =
            unsafe { AsyncFd::register_with_interest(ring, tokio::io::Interest::READABLE) };
        let mut fd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                tracing::error!(error = %e, "cannot poll the ring buffer");
                return Err(format!("cannot poll the ring buffer: {e}"));
            }
        };
        let mut poll_tick = tokio::time::interval(poll);
        poll_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut loss_tick = tokio::time::interval(loss);
        loss_tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = cancel.cancelled() => {
                    self.drain(fd.get_mut());
                    while let Ok(event) = lifecycle.try_recv() {
                        self.lifecycle(fd.get_mut(), event);
                    }
                    let batch = &mut self.batch;
                    self.attributor.flush(&mut |e| batch.push(e));
                    self.flush();
                    self.report_losses();
                    return Ok(());
                }
                ready = fd.readable_mut() => match ready {
                    Ok(mut guard) => {
                        self.drain(guard.get_inner_mut());
                        guard.clear_ready();
                    }
                    Err(e) => {
                        tracing::error!(error = %e, "ring buffer poll failed");
                        return Err(format!("ring buffer poll failed: {e}"));
                    }
                },
                Some(event) = lifecycle.recv() => self.lifecycle(fd.get_mut(), event),
                _ = poll_tick.tick() => {
                    self.drain(fd.get_mut());
                    self.release_pending();
                }
                _ = loss_tick.tick() => self.report_losses(),
            }
            self.flush();
        }
    }

    /// Hands the batch to the output queue, in order.
    fn flush(&mut self) {
        let (tx, stats, unreported) = (&self.tx, &self.stats, &mut self.unreported_queue);
        for event in self.batch.drain(..) {
            send_to(tx, stats, unreported, event);
        }
    }

    fn drain(&mut self, ring: &mut RingBuf<MapData>) {
        while let Some(item) = ring.next() {
            self.stats.records.fetch_add(1, Ordering::Relaxed);
            let (event, pid) = match decode(&item) {
                Ok(record) => self.handle(record),
                Err(e) => {
                    self.stats.decode_errors.fetch_add(1, Ordering::Relaxed);
                    tracing::warn!(error = %e, cause = e.cause(), len = item.len(), "undecodable record dropped");
                    continue;
                }
            };
            let batch = &mut self.batch;
            self.attributor.attribute(event, pid, |e| batch.push(e));
            if self.batch.len() >= BATCH {
                self.flush();
            }
        }
    }

    /// Sends a container lifecycle event of the runtime in order with the container's own
    /// events: a ContainerCreated before the events that waited for it (the index knows the
    /// container by now, so they leave with it right after); a ContainerExited after every
    /// event of the container (its processes are gone, so their records are in the ring
    /// buffer already), so that a consumer can take the exit as the container's last event.
    fn lifecycle(&mut self, ring: &mut RingBuf<MapData>, event: Event) {
        let exited = matches!(event.kind, EventKind::ContainerExited(_));
        if exited {
            self.drain(ring);
            self.release_pending();
        }
        self.batch.push(event);
        if !exited {
            self.release_pending();
        }
    }

    /// Sends events that waited for container metadata and may now leave.
    fn release_pending(&mut self) {
        let batch = &mut self.batch;
        self.attributor
            .release(Instant::now(), &mut |e| batch.push(e));
    }

    /// The event of a record and the process it concerns.
    fn handle(&mut self, record: Record<'_>) -> (Event, u32) {
        match record {
            Record::Exec(v) => {
                self.stats.exec_events.fetch_add(1, Ordering::Relaxed);
                let info = event::exec_process_info(&v);
                let parent = self.table.get(info.ppid);
                let ev = event::exec_event(&self.clock, &v, &info, parent);
                self.table.on_exec(info);
                (ev, v.fixed.process.tgid)
            }
            Record::Exit(r) => {
                self.stats.exit_events.fetch_add(1, Ordering::Relaxed);
                let info = self.table.on_exit(r.tgid);
                let mut ev = event::exit_event(&self.clock, &r, info.as_ref());
                if let Some(info) = info.as_ref().filter(|i| i.cgroup_id != 0) {
                    ev.set_container(self.attributor.container_of(info.cgroup_id));
                }
                (ev, r.tgid)
            }
            Record::File(v) => {
                self.stats.file_events.fetch_add(1, Ordering::Relaxed);
                let actor = self.table.get(v.fixed.process.tgid);
                (
                    event::file_event(&self.clock, &v, actor),
                    v.fixed.process.tgid,
                )
            }
        }
    }

    /// Puts `lost_events` records in the stream for what was lost since the last report.
    fn report_losses(&mut self) {
        let p = self.attributor.pending_stats();
        self.stats.metadata_waited.store(p.held, Ordering::Relaxed);
        self.stats
            .metadata_resolved
            .store(p.resolved, Ordering::Relaxed);
        self.stats
            .metadata_expired
            .store(p.expired, Ordering::Relaxed);
        self.stats
            .metadata_overflowed
            .store(p.overflowed, Ordering::Relaxed);
        let ringbuf = self.counters.lost_ringbuf();
        if ringbuf > self.reported_ringbuf {
            let count = ringbuf - self.reported_ringbuf;
            if self.try_report(count, "ring_buffer_full") {
                self.reported_ringbuf = ringbuf;
                self.stats.lost_reported.store(ringbuf, Ordering::Relaxed);
            }
        }
        if self.unreported_queue > 0 {
            let count = self.unreported_queue;
            if self.try_report(count, "queue_full") {
                self.reported_queue += count;
                self.unreported_queue = 0;
            }
        }
    }

    fn try_report(&mut self, count: u64, cause: &'static str) -> bool {
        tracing::warn!(count, cause, "events lost");
        let boot_ns = crate::clock::boot_ns();
        let ev = Event {
            time_unix_ns: self.clock.unix_ns(boot_ns),
            boot_ns,
            kind: EventKind::LostEvents(LostEvents { count, cause }),
        };
        self.tx.try_send(ev).is_ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        event::{ProcessExit, test_exit as exit},
        loss::LossKind,
    };

    #[test]
    fn a_full_queue_counts_each_drop_by_kind() {
        let (tx, mut rx) = mpsc::channel(1);
        let stats = Stats::default();
        let mut unreported = 0;
        send_to(&tx, &stats, &mut unreported, exit(1));
        send_to(&tx, &stats, &mut unreported, exit(2));
        send_to(&tx, &stats, &mut unreported, exit(3));
        let lost = Event {
            time_unix_ns: 0,
            boot_ns: 2,
            kind: EventKind::LostEvents(LostEvents {
                count: 5,
                cause: "ring_buffer_full",
            }),
        };
        send_to(&tx, &stats, &mut unreported, lost);
        assert_eq!(unreported, 3);
        assert_eq!(stats.queue_full.get(LossKind::Exit), 2);
        assert_eq!(stats.queue_full.get(LossKind::Other), 1);
        assert_eq!(stats.queue_full.get(LossKind::File), 0);
        assert_eq!(stats.queue_full.total(), 3);
        // The first one went through.
        assert!(matches!(
            rx.try_recv().map(|e| e.kind),
            Ok(EventKind::ProcessExit(ProcessExit { pid: 1, .. }))
        ));
    }
}
