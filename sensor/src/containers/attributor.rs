//! Tying process events to their container, pod and workload.
//!
//! Host processes pass straight through. An event from a container known to the index leaves
//! with its identity. An event whose cgroup the index does not know yet has its cgroup
//! directory looked up once (from the cgroup id, else through /proc: is that cgroup a
//! container at all?) and, if it is one, waits in the pending cache until containerd reports
//! the container or the wait runs out.

use std::{
    collections::{HashMap, HashSet},
    sync::{Arc, RwLock},
    time::{Duration, Instant},
};

use crate::{
    attribution::cgroup_path,
    containers::{
        index::{CgroupFs, ContainerIndex, ContainerInfo, ContainerRef},
        pending::{PendingCache, PendingStats},
    },
    event::Event,
};

/// What a cgroup the index does not know turned out to be.
#[derive(Clone, Debug, PartialEq)]
enum Unknown {
    /// Not a container's cgroup (a host service in its own mount namespace, ...).
    NotContainer,
    /// A container's, by its path; the container is not indexed yet. Its reference (the id
    /// alone, `metadata_pending`), shared by the events sent before its metadata comes.
    Container(Arc<ContainerRef>),
}

/// Most cgroups remembered as not belonging to a container.
const CLASSIFIED_MAX: usize = 4096;
/// Most cgroups remembered as having waited in vain.
const WAITED_MAX: usize = 4096;

pub struct Attributor {
    index: Arc<RwLock<ContainerIndex>>,
    cgroupfs: CgroupFs,
    pending: PendingCache<(Event, Option<Arc<ContainerRef>>)>,
    classified: HashMap<(u64, u64), Unknown>,
    /// Container cgroups whose metadata did not come within the wait: their later events are
    /// not held again (they would wait in vain too), they leave flagged at once.
    waited: HashSet<(u64, u64)>,
    /// Whether events wait at all: not when no metadata source runs (containerd disabled).
    hold: bool,
    seen_generation: u64,
}

impl Attributor {
    /// `wait` of zero: events of unknown containers leave at once, flagged.
    pub fn new(
        index: Arc<RwLock<ContainerIndex>>,
        cgroupfs: CgroupFs,
        wait: Duration,
        capacity: usize,
    ) -> Attributor {
        Attributor {
            index,
            cgroupfs,
            pending: PendingCache::new(capacity, wait),
            classified: HashMap::new(),
            waited: HashSet::new(),
            hold: !wait.is_zero(),
            seen_generation: 0,
        }
    }

    pub fn pending_stats(&self) -> PendingStats {
        self.pending.stats()
    }

    pub fn waiting(&self) -> usize {
        self.pending.len()
    }

    fn lookup(&self, cgroup_id: u64, cgroup_v1_id: u64) -> Option<Arc<ContainerInfo>> {
        self.index.read().ok()?.lookup(cgroup_id, cgroup_v1_id)
    }

    /// Attributes a process event of process `pid`; what can leave now is passed to `send`.
    pub fn attribute(&mut self, mut event: Event, pid: u32, mut send: impl FnMut(Event)) {
        let Some((host, cgroup_id, cgroup_v1_id)) = event.cgroup() else {
            send(event);
            return;
        };
        if host {
            send(event);
            return;
        }
        self.release(Instant::now(), &mut send);
        if !self.pending.holds(cgroup_id, cgroup_v1_id) {
            if let Some(c) = self.lookup(cgroup_id, cgroup_v1_id) {
                event.set_container(Some(c.reference()));
                send(event);
                return;
            }
            match self.classify(cgroup_id, cgroup_v1_id, pid) {
                Unknown::NotContainer => {
                    send(event);
                    return;
                }
                Unknown::Container(pending) => {
                    // Known by id but not by cgroup yet: learn the cgroup now.
                    if let Some(c) = self.learn(&pending.id, cgroup_id, cgroup_v1_id) {
                        event.set_container(Some(c.reference()));
                        send(event);
                        return;
                    }
                    if !self.hold || self.waited.contains(&(cgroup_id, cgroup_v1_id)) {
                        send(without_metadata(event, Some(pending)));
                        return;
                    }
                    if let Some((e, pending)) = self.pending.push(
                        (event, Some(pending)),
                        cgroup_id,
                        cgroup_v1_id,
                        Instant::now(),
                    ) {
                        send(without_metadata(e, pending));
                    }
                    return;
                }
            }
        }
        let pending = match self.classified.get(&(cgroup_id, cgroup_v1_id)) {
            Some(Unknown::Container(pending)) => Some(pending.clone()),
            _ => None,
        };
        if let Some((e, pending)) =
            self.pending
                .push((event, pending), cgroup_id, cgroup_v1_id, Instant::now())
        {
            send(without_metadata(e, pending));
        }
    }

    /// The container of a process-table cgroup id (for exits), without waiting.
    pub fn container_of(&self, cgroup_id: u64) -> Option<Arc<ContainerRef>> {
        self.lookup(cgroup_id, 0).map(|c| c.reference())
    }

    /// Sends waiting events whose container became known, and those whose time is up.
    pub fn release(&mut self, now: Instant, send: &mut impl FnMut(Event)) {
        if self.pending.is_empty() {
            return;
        }
        let generation = self.index.read().map(|i| i.generation()).unwrap_or(0);
        let changed = generation != self.seen_generation;
        self.seen_generation = generation;
        let index = Arc::clone(&self.index);
        let classified = &self.classified;
        let cgroupfs = &self.cgroupfs;
        let waited = &mut self.waited;
        self.pending.release(
            now,
            changed,
            |cg, v1| {
                let index = index.read().ok()?;
                index
                    .lookup(cg, v1)
                    .or_else(|| match classified.get(&(cg, v1)) {
                        Some(Unknown::Container(pending)) => {
                            let c = index.get(&pending.id)?;
                            // The container is indexed but its cgroup ids were not: check the
                            // directory it declares.
                            let (v2, v1_id) = c.cgroup.as_deref().map(|d| cgroupfs.ids(d))?;
                            (v2 == Some(cg) || (v1 != 0 && v1_id == Some(v1))).then_some(c)
                        }
                        _ => None,
                    })
            },
            |(mut e, pending), found| match found {
                Some(c) => {
                    e.set_container(Some(c.reference()));
                    send(e);
                }
                None => {
                    if let Some((_, cg, v1)) = e.cgroup() {
                        if waited.len() >= WAITED_MAX {
                            waited.clear();
                        }
                        waited.insert((cg, v1));
                    }
                    send(without_metadata(e, pending));
                }
            },
        );
    }

    /// Sends everything still waiting (shutdown).
    pub fn flush(&mut self, send: &mut impl FnMut(Event)) {
        self.pending
            .flush(|(e, pending)| send(without_metadata(e, pending)));
    }

    /// Maps an unknown cgroup to a container id through its directory: found from the ids
    /// themselves (exact, and still there once the process has exited, as short-lived ones
    /// often have by the time their events are read), or through `/proc/<pid>/cgroup` where
    /// the kernel does not resolve ids (no CAP_DAC_READ_SEARCH).
    fn classify(&mut self, cgroup_id: u64, cgroup_v1_id: u64, pid: u32) -> Unknown {
        if let Some(known) = self.classified.get(&(cgroup_id, cgroup_v1_id)) {
            return known.clone();
        }
        let path = self.cgroupfs.dir_of(cgroup_id, cgroup_v1_id).or_else(|| {
            std::fs::read_to_string(format!("/proc/{pid}/cgroup"))
                .ok()
                .and_then(|text| crate::procfs::cgroup_v2_path(&text).map(str::to_string))
        });
        let Some(path) = path else {
            // Both gone: assume a container whose metadata may still come.
            return Unknown::Container(pending_reference(String::new()));
        };
        let verdict = match cgroup_path::parse(&path) {
            Some(c) => Unknown::Container(pending_reference(c.container_id)),
            None => Unknown::NotContainer,
        };
        if self.classified.len() >= CLASSIFIED_MAX {
            self.classified.clear();
        }
        self.classified
            .insert((cgroup_id, cgroup_v1_id), verdict.clone());
        verdict
    }

    /// Registers the cgroup ids of an indexed container found through its path.
    fn learn(&self, id: &str, cgroup_id: u64, cgroup_v1_id: u64) -> Option<Arc<ContainerInfo>> {
        if id.is_empty() {
            return None;
        }
        let mut index = self.index.write().ok()?;
        let c = index.get(id)?;
        index.set_cgroup_ids(
            id,
            Some(cgroup_id),
            (cgroup_v1_id != 0).then_some(cgroup_v1_id),
        );
        Some(c)
    }
}

/// An event that waited in vain: what is known (the container id from the cgroup path, when
/// there was one) and the flag.
fn without_metadata(mut e: Event, pending: Option<Arc<ContainerRef>>) -> Event {
    e.set_container(Some(
        pending.unwrap_or_else(|| pending_reference(String::new())),
    ));
    e
}

/// The reference of a container whose metadata is not known (yet): its id alone.
fn pending_reference(id: String) -> Arc<ContainerRef> {
    Arc::new(ContainerRef {
        id,
        name: String::new(),
        image: String::new(),
        pod: None,
        workload: None,
        metadata_pending: true,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CapMask, Comm, EventKind, FileCreated, Process};

    /// No process and no cgroup file system to look the cgroup up: a container whose
    /// metadata may still come.
    const GONE: u32 = u32::MAX - 1;

    fn file(cgroup_id: u64, path: &str) -> Event {
        Event {
            time_unix_ns: 0,
            boot_ns: 0,
            kind: EventKind::FileCreated(FileCreated {
                process: Process {
                    pid: GONE,
                    tid: GONE,
                    ppid: 1,
                    uid: 0,
                    gid: 0,
                    euid: 0,
                    egid: 0,
                    loginuid: None,
                    cap_effective: CapMask(0),
                    comm: Comm::from("sh"),
                    cgroup_id,
                    cgroup_v1_id: 0,
                    mntns: 7,
                    host: false,
                    start_boot_ns: 0,
                    binary: String::new(),
                },
                operation: "create",
                path: path.into(),
                source: None,
                mode: 0o100644.into(),
                old_mode: None,
                replaced: false,
                path_truncated: false,
                read_error: false,
                container: None,
            }),
        }
    }

    fn attributor(wait: Duration) -> Attributor {
        Attributor::new(
            Arc::new(RwLock::new(ContainerIndex::new())),
            CgroupFs::default(),
            wait,
            16,
        )
    }

    fn path(e: &Event) -> &str {
        match &e.kind {
            EventKind::FileCreated(f) => &f.path,
            _ => "",
        }
    }

    #[test]
    fn a_cgroup_whose_wait_ran_out_is_not_held_again() {
        let mut a = attributor(Duration::from_millis(1));
        let mut out = Vec::new();
        a.attribute(file(42, "/first"), GONE, |e| out.push(e));
        assert!(out.is_empty(), "the first event waits");
        std::thread::sleep(Duration::from_millis(5));
        a.release(Instant::now(), &mut |e| out.push(e));
        assert_eq!(out.len(), 1, "expired");
        a.attribute(file(42, "/second"), GONE, |e| out.push(e));
        assert_eq!(out.len(), 2, "the cgroup's next event leaves at once");
        assert_eq!(path(&out[1]), "/second");
        a.attribute(file(43, "/other"), GONE, |e| out.push(e));
        assert_eq!(out.len(), 2, "another cgroup still waits");
        let s = a.pending_stats();
        assert_eq!((s.held, s.expired), (2, 1));
        for e in &out {
            let EventKind::FileCreated(f) = &e.kind else {
                panic!("file event");
            };
            assert!(f.container.as_ref().is_some_and(|c| c.metadata_pending));
        }
    }

    #[test]
    fn without_a_wait_nothing_is_held() {
        let mut a = attributor(Duration::ZERO);
        let mut out = Vec::new();
        a.attribute(file(42, "/now"), GONE, |e| out.push(e));
        assert_eq!(out.len(), 1);
        assert_eq!(a.pending_stats().held, 0);
        assert_eq!(a.waiting(), 0);
    }
}
