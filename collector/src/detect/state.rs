//! What the engine remembers between events: containers (identity, security facts, files
//! created since they started) and processes (for ancestry). Every table is bounded; the
//! oldest entries go first.

use std::collections::{HashMap, VecDeque};

use jobwatch_proto::v1 as pb;

use super::names;

/// Most containers remembered.
pub const MAX_CONTAINERS: usize = 65_536;
/// Most exited containers remembered (for their late events).
pub const MAX_EXITED_CONTAINERS: usize = 4096;
/// Most created paths remembered per container.
pub const MAX_CREATED_PER_CONTAINER: usize = 1024;
/// Most processes remembered (container processes only).
pub const MAX_PROCESSES: usize = 131_072;
/// Deepest ancestry reported.
pub const MAX_ANCESTRY: usize = 32;

/// A map that forgets its oldest keys beyond a capacity.
///
/// Hashed with foldhash (seeded per process) rather than SipHash: the keys are exec ids,
/// container ids and alert keys, hashed at every insert and again at every growth of a table.
#[derive(Debug)]
pub struct Bounded<K, V> {
    map: HashMap<K, V, foldhash::fast::RandomState>,
    order: VecDeque<K>,
    cap: usize,
    /// Entries forgotten for want of room.
    pub evicted: u64,
}

impl<K: std::hash::Hash + Eq + Clone, V> Bounded<K, V> {
    /// An empty map holding at most `cap` entries.
    pub fn new(cap: usize) -> Self {
        Bounded {
            map: HashMap::default(),
            order: VecDeque::new(),
            cap: cap.max(1),
            evicted: 0,
        }
    }

    /// The value of `k`.
    pub fn get(&self, k: &K) -> Option<&V> {
        self.map.get(k)
    }

    /// The value of `k`, mutable.
    pub fn get_mut(&mut self, k: &K) -> Option<&mut V> {
        self.map.get_mut(k)
    }

    /// The value of `k`, inserted with `make` when missing.
    pub fn entry(&mut self, k: K, make: impl FnOnce() -> V) -> &mut V {
        if !self.map.contains_key(&k) {
            self.insert(k.clone(), make());
        }
        self.map.get_mut(&k).expect("just inserted")
    }

    /// Inserts or replaces.
    pub fn insert(&mut self, k: K, v: V) {
        if self.map.insert(k.clone(), v).is_none() {
            self.order.push_back(k);
            while self.map.len() > self.cap {
                let Some(old) = self.order.pop_front() else {
                    break;
                };
                if self.map.remove(&old).is_some() {
                    self.evicted += 1;
                }
            }
        }
        // Keys removed earlier leave stale entries in `order`; keep it from growing unbounded.
        if self.order.len() > self.cap * 2 {
            let map = &self.map;
            self.order.retain(|k| map.contains_key(k));
        }
    }

    /// Removes `k`.
    pub fn remove(&mut self, k: &K) -> Option<V> {
        self.map.remove(k)
    }

    /// Entries held.
    pub fn len(&self) -> usize {
        self.map.len()
    }
}

/// Where an event happened, as an alert names it.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Chain {
    /// Node.
    pub node: String,
    /// Pod namespace.
    pub namespace: String,
    /// CronJob name.
    pub cronjob: String,
    /// Job name.
    pub job: String,
    /// Pod name.
    pub pod: String,
    /// Container id.
    pub container_id: String,
    /// Container name.
    pub container_name: String,
    /// Image.
    pub image: String,
    /// The workload.
    pub workload: Option<pb::Workload>,
}

impl Chain {
    fn from_parts(
        node: &str,
        id: &str,
        name: &str,
        image: &str,
        pod: Option<&pb::Pod>,
        workload: Option<&pb::Workload>,
    ) -> Chain {
        Chain {
            node: node.to_string(),
            namespace: pod.map(|p| p.namespace.clone()).unwrap_or_default(),
            cronjob: workload
                .and_then(|w| w.cronjob.as_ref())
                .map(|c| c.name.clone())
                .unwrap_or_default(),
            job: workload
                .and_then(|w| w.job.as_ref())
                .map(|j| j.name.clone())
                .unwrap_or_default(),
            pod: pod.map(|p| p.name.clone()).unwrap_or_default(),
            container_id: id.to_string(),
            container_name: name.to_string(),
            image: image.to_string(),
            workload: workload.cloned(),
        }
    }

    /// The chain of an event from a container.
    pub fn of_ref(node: &str, c: &pb::ContainerRef) -> Chain {
        Chain::from_parts(
            node,
            &c.id,
            &c.name,
            &c.image,
            c.pod.as_ref(),
            c.workload.as_ref(),
        )
    }

    /// The chain of a container.
    pub fn of_container(node: &str, c: &pb::Container) -> Chain {
        Chain::from_parts(
            node,
            &c.id,
            &c.name,
            &c.image,
            c.pod.as_ref(),
            c.workload.as_ref(),
        )
    }

    /// A host process's chain.
    pub fn host(node: &str) -> Chain {
        Chain {
            node: node.to_string(),
            ..Chain::default()
        }
    }

    /// Whether the container belongs to a Job (of a CronJob or not).
    pub fn is_job(&self) -> bool {
        !self.job.is_empty()
            || !self.cronjob.is_empty()
            || self.workload.as_ref().is_some_and(|w| {
                w.kind == pb::WorkloadKind::CronJob as i32 || w.kind == pb::WorkloadKind::Job as i32
            })
    }

    /// Whether this is a container at all.
    pub fn is_container(&self) -> bool {
        !self.container_id.is_empty()
    }
}

/// A file created in a container after it started.
#[derive(Debug, Clone)]
pub struct Created {
    /// The event, as stored.
    pub event: pb::StoredEvent,
}

/// One container.
#[derive(Debug, Default)]
pub struct ContainerState {
    /// Sandbox, container or plain (unknown until its ContainerCreated arrives).
    pub kind: Option<pb::ContainerKind>,
    /// Its security facts, from ContainerCreated.
    pub security: Option<pb::SecurityFacts>,
    /// Files created (or made executable) in it, by path as the container sees it: every
    /// one until the container's facts arrive, then only those that could be executed.
    pub created: HashMap<String, Created>,
}

/// Whether a created file could be executed as it is: its mode has an execute bit, or the
/// sensor does not know its mode (a rename or a link carries none). A file without one can
/// only be run after a chmod, which the sensor reports as a file event of its own.
pub fn may_run(f: &pb::FileCreated) -> bool {
    f.mode == 0 || f.mode & 0o111 != 0
}

impl ContainerState {
    /// Forgets the remembered files that could not be executed (once the container's facts
    /// are known, only drift still needs them, and drift needs a file that runs).
    pub fn forget_unrunnable(&mut self) {
        self.created.retain(|_, c| {
            !matches!(
                c.event.event.as_ref().and_then(|e| e.kind.as_ref()),
                Some(pb::event::Kind::FileCreated(f)) if !may_run(f)
            )
        });
    }

    /// Remembers a created file; false when it is not remembered for want of room (the engine
    /// counts these: `created_files_dropped`).
    pub fn remember_created(&mut self, path: &str, event: &pb::StoredEvent) -> bool {
        if self.created.len() >= MAX_CREATED_PER_CONTAINER && !self.created.contains_key(path) {
            return false;
        }
        self.created.insert(
            path.to_string(),
            Created {
                event: event.clone(),
            },
        );
        true
    }

    /// The host path a container path maps to through a host-path mount, with the mount.
    pub fn host_path(&self, path: &str) -> Option<(String, &pb::HostMount)> {
        let mounts = &self.security.as_ref()?.host_mounts;
        let m = mounts
            .iter()
            .filter(|m| names::is_within(path, &m.destination))
            .max_by_key(|m| m.destination.trim_end_matches('/').len())?;
        let rest = &path[m.destination.trim_end_matches('/').len()..];
        let source = m.source.trim_end_matches('/');
        let host = match (source.is_empty(), rest.is_empty()) {
            (true, true) => "/".to_string(),
            (true, false) => rest.to_string(),
            (false, _) => format!("{source}{rest}"),
        };
        Some((host, m))
    }
}

/// One process, for ancestry.
#[derive(Debug, Clone)]
pub struct ProcessInfo {
    /// pid.
    pub pid: u32,
    /// Executable path as named.
    pub exe: String,
    /// argv.
    pub args: Vec<String>,
    /// uid.
    pub uid: u32,
    /// The parent's exec id.
    pub parent_exec_id: String,
    /// Event time of the first exec seen under this exec id (an exec keeps the process's
    /// pid and start time, so later execs share the id): what the process did before it is
    /// the runtime's setup of the container, not the workload's doing.
    pub first_exec_unix_nano: i64,
    /// Commands of recent children (command name, exec id), newest last: the newest and
    /// its siblings, at most 9.
    pub children: VecDeque<(String, String)>,
}

/// Processes by exec id. Boxed: the table holds up to [`MAX_PROCESSES`] of them and, while it
/// grows, moves every entry into fresh memory at each doubling: 32-byte slots instead of
/// 136-byte ones (the growth was about 6% of the collector's CPU per exec in a fresh
/// collector; docs/performance.md).
pub type Processes = Bounded<String, Box<ProcessInfo>>;

/// The ancestry of a process: itself first, then its parents.
pub fn ancestry(
    processes: &Processes,
    first: pb::AlertProcess,
    parent_exec_id: &str,
    parent: Option<&pb::Parent>,
) -> Vec<pb::AlertProcess> {
    let mut out = vec![first];
    let mut next = parent_exec_id.to_string();
    let mut direct = true;
    while out.len() < MAX_ANCESTRY && !next.is_empty() {
        match processes.get(&next) {
            Some(p) => {
                out.push(pb::AlertProcess {
                    exec_id: next.clone(),
                    pid: p.pid,
                    binary: p.exe.clone(),
                    args: p.args.clone(),
                    uid: p.uid,
                    partial: false,
                });
                next = p.parent_exec_id.clone();
            }
            None => {
                if direct && let Some(parent) = parent {
                    out.push(pb::AlertProcess {
                        exec_id: next.clone(),
                        pid: parent.pid,
                        binary: parent.binary.clone(),
                        args: parent.args.clone(),
                        uid: 0,
                        partial: true,
                    });
                }
                break;
            }
        }
        direct = false;
    }
    out
}
