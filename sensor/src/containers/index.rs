//! The container index: which container a cgroup belongs to, and what is known about it.
//!
//! Fed by the containerd watcher (list at start, then events); read on every event that
//! comes from a container. Lookups are by cgroup v2 id and by the v1 hierarchy's id (hybrid
//! and v1 hosts), both kernfs inode numbers the eBPF programs put in each record.

use std::{
    collections::{BTreeMap, HashMap},
    path::PathBuf,
    sync::{Arc, OnceLock},
};

use serde::Serialize;

use crate::{
    attribution::workload::{PodIdentity, Workload, pod_from_labels, workload_from_labels},
    containers::oci::SecurityFacts,
};

/// Label containerd's CRI plugin puts on every container: `sandbox` or `container`.
pub const KIND_LABEL: &str = "io.cri-containerd.kind";
/// Spec annotation naming an app container's pod sandbox.
pub const SANDBOX_ID_ANNOTATION: &str = "io.kubernetes.cri.sandbox-id";
pub const CONTAINER_NAME_LABEL: &str = "io.kubernetes.container.name";

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ContainerKind {
    /// A pod's sandbox (pause) container.
    Sandbox,
    /// An app (or init) container of a pod.
    Container,
    /// Not created through CRI (ctr, nerdctl, ...).
    Plain,
}

/// What the sensor knows about one container.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContainerInfo {
    pub id: String,
    /// containerd namespace.
    pub runtime_namespace: String,
    pub name: String,
    pub kind: ContainerKind,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_digest: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub sandbox_id: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodIdentity>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    pub security: SecurityFacts,
    /// cgroup directory relative to a hierarchy root.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cgroup: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub init_pid: Option<u32>,
    /// Unix ns when the task started.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub started_unix_ns: Option<i128>,
    /// The container's own labels (sanitised).
    #[serde(skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// [`ContainerInfo::reference`], built once and shared by every event of the container.
    #[serde(skip)]
    pub reference: ReferenceCache,
}

/// The shared [`ContainerRef`] of a container, built on first use. A clone starts empty (a
/// clone is how the index updates a container, and the copy's fields may change), and two
/// caches always compare equal (the fields they are built from are compared instead).
#[derive(Default)]
pub struct ReferenceCache(OnceLock<Arc<ContainerRef>>);

impl Clone for ReferenceCache {
    fn clone(&self) -> Self {
        ReferenceCache::default()
    }
}

impl PartialEq for ReferenceCache {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl std::fmt::Debug for ReferenceCache {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ReferenceCache")
    }
}

/// The short identity every event from a container carries.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct ContainerRef {
    pub id: String,
    pub name: String,
    pub image: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub pod: Option<PodRef>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub workload: Option<Workload>,
    /// The event waited for the container's metadata and was sent without it.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub metadata_pending: bool,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodRef {
    pub name: String,
    pub namespace: String,
    pub uid: String,
}

impl ContainerInfo {
    /// The short identity its events carry, shared by all of them (built once: about ten
    /// strings with a pod and its owners).
    pub fn reference(&self) -> Arc<ContainerRef> {
        self.reference
            .0
            .get_or_init(|| {
                Arc::new(ContainerRef {
                    id: self.id.clone(),
                    name: self.name.clone(),
                    image: self.image.clone(),
                    pod: self.pod.as_ref().map(|p| PodRef {
                        name: p.name.clone(),
                        namespace: p.namespace.clone(),
                        uid: p.uid.clone(),
                    }),
                    workload: self.workload.clone(),
                    metadata_pending: false,
                })
            })
            .clone()
    }
}

/// Where the cgroup hierarchies are mounted, to turn cgroup directories into ids.
#[derive(Clone, Debug, Default)]
pub struct CgroupFs {
    /// Root of the cgroup2 (unified) hierarchy.
    pub unified: Option<PathBuf>,
    /// Root of the v1 hierarchy whose ids the eBPF programs report.
    pub v1: Option<PathBuf>,
}

impl CgroupFs {
    /// The hierarchies of this host, for the chosen v1 controller.
    pub fn detect(v1_controller: Option<&str>) -> CgroupFs {
        CgroupFs {
            unified: Some(crate::procfs::unified_cgroup_root()),
            v1: v1_controller.map(|c| PathBuf::from("/sys/fs/cgroup").join(c)),
        }
    }

    /// (v2 id, v1 id) of a cgroup directory such as `/kubepods/besteffort/pod<uid>/<id>`.
    pub fn ids(&self, dir: &str) -> (Option<u64>, Option<u64>) {
        use std::os::unix::fs::MetadataExt;
        let rel = dir.trim_start_matches('/');
        let ino = |root: &Option<PathBuf>| {
            root.as_ref()
                .and_then(|r| std::fs::metadata(r.join(rel)).ok())
                .map(|m| m.ino())
        };
        (ino(&self.unified), ino(&self.v1))
    }

    /// The directory of a cgroup, relative to its hierarchy's root (`/kubepods/...`), found
    /// from its id alone: the v2 id in the unified hierarchy first, then the v1 id in the v1
    /// hierarchy. It still works once every process of the cgroup has exited (a short-lived
    /// process is often gone before its event is read), as long as the directory exists.
    pub fn dir_of(&self, cgroup_id: u64, cgroup_v1_id: u64) -> Option<String> {
        let by_id = |root: &Option<PathBuf>, id: u64| {
            let root = root.as_deref()?;
            (id != 0).then(|| kernfs_dir(root, id)).flatten()
        };
        by_id(&self.unified, cgroup_id).or_else(|| by_id(&self.v1, cgroup_v1_id))
    }
}

/// The handle type of kernfs (cgroup) file handles: the 64-bit node id.
const FILEID_KERNFS: i32 = 0xfe;

/// Opens the kernfs node `id` under the cgroup file system mounted at `root` through its file
/// handle (`open_by_handle_at`, needs CAP_DAC_READ_SEARCH) and reads back its path.
fn kernfs_dir(root: &std::path::Path, id: u64) -> Option<String> {
    use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};

    #[repr(C)]
    struct KernfsHandle {
        handle_bytes: libc::c_uint,
        handle_type: libc::c_int,
        id: u64,
    }
    let mount = std::fs::File::open(root).ok()?;
    let mut handle = KernfsHandle {
        handle_bytes: std::mem::size_of::<u64>() as libc::c_uint,
        handle_type: FILEID_KERNFS,
        id,
    };
    // SAFETY: `handle` is a `struct file_handle` followed by its `handle_bytes` of payload,
    // alive for the call; the kernel only reads it. A returned descriptor is ours to own.
    let fd = unsafe {
        libc::open_by_handle_at(
            mount.as_raw_fd(),
            (&mut handle as *mut KernfsHandle).cast::<libc::file_handle>(),
            libc::O_RDONLY | libc::O_DIRECTORY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return None;
    }
    // SAFETY: `fd` was just returned by the kernel and nothing else owns it.
    let dir = unsafe { OwnedFd::from_raw_fd(fd) };
    let path = std::fs::read_link(format!("/proc/self/fd/{}", dir.as_raw_fd())).ok()?;
    let rel = path.strip_prefix(root).ok()?;
    Some(format!("/{}", rel.to_str()?))
}

/// The index. Not synchronised itself: the sensor shares it behind a lock.
#[derive(Debug, Default)]
pub struct ContainerIndex {
    containers: HashMap<String, Arc<ContainerInfo>>,
    by_cgroup: HashMap<u64, String>,
    by_cgroup_v1: HashMap<u64, String>,
    /// Owner chains the Kubernetes API confirmed, by pod uid: they win over label inference.
    api_workloads: HashMap<String, Workload>,
    /// Bumped on every change, so waiting events know when to look again.
    generation: u64,
}

/// Most API-confirmed workloads kept (far more pods than a node runs).
const API_WORKLOADS_MAX: usize = 4096;

impl ContainerIndex {
    pub fn new() -> ContainerIndex {
        ContainerIndex::default()
    }

    pub fn generation(&self) -> u64 {
        self.generation
    }

    pub fn len(&self) -> usize {
        self.containers.len()
    }

    pub fn is_empty(&self) -> bool {
        self.containers.is_empty()
    }

    pub fn get(&self, id: &str) -> Option<Arc<ContainerInfo>> {
        self.containers.get(id).cloned()
    }

    /// Every container (sandboxes included).
    pub fn all(&self) -> impl Iterator<Item = &Arc<ContainerInfo>> {
        self.containers.values()
    }

    /// The container of a cgroup, by either id.
    pub fn lookup(&self, cgroup_id: u64, cgroup_v1_id: u64) -> Option<Arc<ContainerInfo>> {
        let id = self.by_cgroup.get(&cgroup_id).or_else(|| {
            (cgroup_v1_id != 0)
                .then(|| self.by_cgroup_v1.get(&cgroup_v1_id))
                .flatten()
        })?;
        self.containers.get(id).cloned()
    }

    /// Adds or replaces a container. A sandbox refreshes the pod of its containers; an app
    /// container takes its pod from its sandbox when the sandbox is known.
    pub fn upsert(&mut self, mut info: ContainerInfo) {
        self.generation += 1;
        // Its pod and workload may change below.
        info.reference = ReferenceCache::default();
        if info.kind == ContainerKind::Container
            && let Some(sandbox) = info
                .sandbox_id
                .as_ref()
                .and_then(|s| self.containers.get(s))
        {
            info.pod = sandbox.pod.clone();
            info.workload = sandbox.workload.clone();
        }
        if info.kind == ContainerKind::Sandbox
            && let Some(w) = info
                .pod
                .as_ref()
                .and_then(|p| self.api_workloads.get(&p.uid))
        {
            info.workload = Some(w.clone());
        }
        if info.kind == ContainerKind::Sandbox {
            let pod = info.pod.clone();
            let workload = info.workload.clone();
            for c in self.containers.values_mut() {
                if c.sandbox_id.as_deref() == Some(info.id.as_str()) {
                    let mut updated = (**c).clone();
                    updated.pod = pod.clone();
                    updated.workload = workload.clone();
                    *c = Arc::new(updated);
                }
            }
        }
        self.containers.insert(info.id.clone(), Arc::new(info));
    }

    /// Records the owner chain the Kubernetes API gives for a pod, and applies it to the pod's
    /// sandbox and containers.
    pub fn set_pod_workload(&mut self, pod_uid: &str, workload: Workload) {
        if self.api_workloads.len() >= API_WORKLOADS_MAX
            && !self.api_workloads.contains_key(pod_uid)
        {
            self.api_workloads.clear();
        }
        self.api_workloads
            .insert(pod_uid.to_string(), workload.clone());
        for c in self.containers.values_mut() {
            if c.pod.as_ref().is_some_and(|p| p.uid == pod_uid) {
                let mut updated = (**c).clone();
                updated.workload = Some(workload.clone());
                *c = Arc::new(updated);
            }
        }
        self.generation += 1;
    }

    /// Records the cgroup ids of a container.
    pub fn set_cgroup_ids(&mut self, id: &str, v2: Option<u64>, v1: Option<u64>) {
        if !self.containers.contains_key(id) {
            return;
        }
        self.generation += 1;
        if let Some(v2) = v2 {
            self.by_cgroup.insert(v2, id.to_string());
        }
        if let Some(v1) = v1 {
            self.by_cgroup_v1.insert(v1, id.to_string());
        }
    }

    /// Records a task start; returns the updated container.
    pub fn set_started(&mut self, id: &str, pid: u32, unix_ns: i128) -> Option<Arc<ContainerInfo>> {
        let c = self.containers.get_mut(id)?;
        let mut updated = (**c).clone();
        updated.init_pid = Some(pid);
        updated.started_unix_ns = Some(unix_ns);
        *c = Arc::new(updated);
        self.generation += 1;
        Some(Arc::clone(c))
    }

    /// Forgets a container and its cgroups.
    pub fn remove(&mut self, id: &str) -> Option<Arc<ContainerInfo>> {
        let removed = self.containers.remove(id)?;
        self.by_cgroup.retain(|_, c| c != id);
        self.by_cgroup_v1.retain(|_, c| c != id);
        self.generation += 1;
        Some(removed)
    }

    /// Keeps only the containers in `present` (after a re-list); returns the removed ids.
    pub fn retain_present(&mut self, present: &std::collections::HashSet<String>) -> Vec<String> {
        let gone: Vec<String> = self
            .containers
            .keys()
            .filter(|id| !present.contains(*id))
            .cloned()
            .collect();
        for id in &gone {
            self.remove(id);
        }
        gone
    }
}

/// Pod and workload of a sandbox from its labels.
pub fn pod_and_workload(
    labels: &BTreeMap<String, String>,
    now_unix_secs: i64,
) -> (Option<PodIdentity>, Option<Workload>) {
    match pod_from_labels(labels) {
        Ok(pod) => (Some(pod), Some(workload_from_labels(labels, now_unix_secs))),
        Err(_) => (None, None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_795_737_600; // 2026-11-27

    fn sandbox(id: &str, job: Option<&str>) -> ContainerInfo {
        let mut labels = BTreeMap::from([
            (
                "io.kubernetes.pod.name".to_string(),
                "backup-29000000-abcde".to_string(),
            ),
            (
                "io.kubernetes.pod.namespace".to_string(),
                "prod".to_string(),
            ),
            (
                "io.kubernetes.pod.uid".to_string(),
                "11111111-2222-3333-4444-555555555555".to_string(),
            ),
            (KIND_LABEL.to_string(), "sandbox".to_string()),
        ]);
        if let Some(job) = job {
            labels.insert("batch.kubernetes.io/job-name".to_string(), job.to_string());
            labels.insert("job-name".to_string(), job.to_string());
        }
        let (pod, workload) = pod_and_workload(&labels, NOW);
        ContainerInfo {
            id: id.to_string(),
            runtime_namespace: "k8s.io".to_string(),
            name: "POD".to_string(),
            kind: ContainerKind::Sandbox,
            image: "registry.k8s.io/pause:3.9".to_string(),
            image_digest: None,
            sandbox_id: None,
            pod,
            workload,
            security: SecurityFacts::default(),
            cgroup: None,
            init_pid: None,
            started_unix_ns: None,
            labels,
            reference: ReferenceCache::default(),
        }
    }

    fn app(id: &str, sandbox_id: &str) -> ContainerInfo {
        ContainerInfo {
            id: id.to_string(),
            name: "app".to_string(),
            kind: ContainerKind::Container,
            image: "busybox".to_string(),
            sandbox_id: Some(sandbox_id.to_string()),
            pod: None,
            workload: None,
            labels: BTreeMap::new(),
            ..sandbox(id, None)
        }
    }

    #[test]
    fn app_container_takes_its_pod_from_the_sandbox() {
        let mut index = ContainerIndex::new();
        index.upsert(sandbox("s1", Some("backup-29000000")));
        index.upsert(app("c1", "s1"));
        let c = index.get("c1").expect("indexed");
        let pod = c.pod.as_ref().expect("pod");
        assert_eq!(
            (pod.name.as_str(), pod.namespace.as_str()),
            ("backup-29000000-abcde", "prod")
        );
        let w = c.workload.as_ref().expect("workload");
        assert_eq!(
            w.job.as_ref().map(|j| j.name.as_str()),
            Some("backup-29000000")
        );
        let cron = w.cronjob.as_ref().expect("cronjob inferred");
        assert_eq!(cron.name, "backup");
        assert!(cron.inferred);
    }

    #[test]
    fn events_share_one_reference_until_the_container_changes() {
        let mut index = ContainerIndex::new();
        index.upsert(app("c1", "s1"));
        let before = index.get("c1").expect("indexed");
        let (a, b) = (before.reference(), before.reference());
        assert!(Arc::ptr_eq(&a, &b), "one reference per container");
        assert_eq!((a.id.as_str(), a.pod.is_none()), ("c1", true));
        // The sandbox comes: the container is replaced, and so is its reference.
        index.upsert(sandbox("s1", Some("report-29000001")));
        let now = index.get("c1").expect("indexed");
        let after = now.reference();
        assert!(!Arc::ptr_eq(&a, &after));
        let pod = now.pod.as_ref().expect("pod from the sandbox");
        assert_eq!(
            after
                .pod
                .as_ref()
                .map(|p| (p.name.as_str(), p.uid.as_str())),
            Some((pod.name.as_str(), pod.uid.as_str()))
        );
        assert_eq!(after.workload, now.workload);
        // A clone starts without the cached reference, so an edited copy builds its own.
        let mut copy = (*index.get("c1").expect("indexed")).clone();
        copy.name = "renamed".into();
        assert_eq!(copy.reference().name, "renamed");
        assert_eq!(index.get("c1").expect("indexed").reference().name, "app");
    }

    #[test]
    fn a_late_sandbox_fills_in_its_containers() {
        let mut index = ContainerIndex::new();
        index.upsert(app("c1", "s1"));
        assert!(index.get("c1").expect("indexed").pod.is_none());
        index.upsert(sandbox("s1", Some("report-29000001")));
        let c = index.get("c1").expect("indexed");
        assert_eq!(c.pod.as_ref().map(|p| p.namespace.as_str()), Some("prod"));
        assert_eq!(
            c.workload
                .as_ref()
                .and_then(|w| w.cronjob.as_ref())
                .map(|c| c.name.as_str()),
            Some("report")
        );
    }

    #[test]
    fn lookups_by_either_cgroup_id_and_removal() {
        let mut index = ContainerIndex::new();
        index.upsert(sandbox("s1", None));
        index.upsert(app("c1", "s1"));
        let g = index.generation();
        index.set_cgroup_ids("c1", Some(100), Some(200));
        assert!(index.generation() > g);
        assert_eq!(
            index.lookup(100, 0).map(|c| c.id.clone()).as_deref(),
            Some("c1")
        );
        assert_eq!(
            index.lookup(7, 200).map(|c| c.id.clone()).as_deref(),
            Some("c1")
        );
        assert!(index.lookup(7, 0).is_none());
        // Unknown containers get no cgroup mapping.
        index.set_cgroup_ids("nope", Some(5), None);
        assert!(index.lookup(5, 0).is_none());
        let started = index.set_started("c1", 42, 1_000).expect("started");
        assert_eq!(
            (started.init_pid, started.started_unix_ns),
            (Some(42), Some(1_000))
        );
        assert!(index.remove("c1").is_some());
        assert!(index.lookup(100, 200).is_none());
        assert_eq!(index.len(), 1);
    }

    #[test]
    fn api_owners_win_over_inference() {
        use crate::attribution::workload::{CronJobRef, JobRef, OwnerSource, WorkloadKind};
        let mut index = ContainerIndex::new();
        index.upsert(sandbox("s1", Some("backup-29000000")));
        index.upsert(app("c1", "s1"));
        let api = Workload {
            kind: WorkloadKind::CronJob,
            name: "backup".into(),
            job: Some(JobRef {
                name: "backup-29000000".into(),
                controller_uid: Some("u".into()),
            }),
            cronjob: Some(CronJobRef {
                name: "backup".into(),
                scheduled_time: None,
                source: OwnerSource::KubernetesApi,
                inferred: false,
            }),
            source: OwnerSource::KubernetesApi,
        };
        index.set_pod_workload("11111111-2222-3333-4444-555555555555", api.clone());
        assert_eq!(
            index.get("c1").and_then(|c| c.workload.clone()),
            Some(api.clone())
        );
        // A sandbox listed again keeps the confirmed owners.
        index.upsert(sandbox("s1", Some("backup-29000000")));
        assert_eq!(index.get("c1").and_then(|c| c.workload.clone()), Some(api));
    }

    #[test]
    fn relist_drops_what_is_gone() {
        let mut index = ContainerIndex::new();
        index.upsert(sandbox("s1", None));
        index.upsert(app("c1", "s1"));
        index.set_cgroup_ids("c1", Some(1), None);
        let present = std::collections::HashSet::from(["s1".to_string()]);
        assert_eq!(index.retain_present(&present), vec!["c1".to_string()]);
        assert!(index.lookup(1, 0).is_none());
    }
}
