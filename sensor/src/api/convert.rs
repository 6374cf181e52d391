//! From the sensor's events to the public API's messages (`jobwatch.v1`).

use jobwatch_proto::v1 as pb;

use crate::{
    attribution::workload::{CronJobRef, OwnerSource, PodIdentity, Workload, WorkloadKind},
    containers::{
        index::{ContainerInfo, ContainerKind, ContainerRef, PodRef},
        oci::SecurityFacts,
    },
    event::{self, Event, EventKind},
    process_table::ProcessSource,
};

/// What identifies this sensor's processes across nodes and reboots.
#[derive(Clone, Debug)]
pub struct ExecIds {
    pub node: String,
    /// Boot time of the node, seconds since the Unix epoch.
    pub boot_unix_secs: i64,
}

impl ExecIds {
    /// `<node>:<boot time>:<pid>:<start time>`: stable for the life of a process image.
    pub fn exec_id(&self, pid: u32, start_boot_ns: u64) -> String {
        // One allocation of the right size, and integers written with `itoa`: this runs for
        // every event, and `format!` (reallocations, then the `fmt` machinery) showed in
        // profiles.
        let mut digits = itoa::Buffer::new();
        let mut id = String::with_capacity(self.node.len() + 64);
        id.push_str(&self.node);
        id.push(':');
        id.push_str(digits.format(self.boot_unix_secs));
        id.push(':');
        id.push_str(digits.format(pid));
        id.push(':');
        id.push_str(digits.format(start_boot_ns));
        id
    }
}

pub(crate) fn owner_source(s: OwnerSource) -> i32 {
    (match s {
        OwnerSource::Labels => pb::OwnerSource::Labels,
        OwnerSource::NameInference => pb::OwnerSource::NameInference,
        OwnerSource::KubernetesApi => pb::OwnerSource::KubernetesApi,
    }) as i32
}

pub fn workload_kind(k: WorkloadKind) -> pb::WorkloadKind {
    match k {
        WorkloadKind::CronJob => pb::WorkloadKind::CronJob,
        WorkloadKind::Job => pb::WorkloadKind::Job,
        WorkloadKind::Deployment => pb::WorkloadKind::Deployment,
        WorkloadKind::ReplicaSet => pb::WorkloadKind::ReplicaSet,
        WorkloadKind::DaemonSet => pb::WorkloadKind::DaemonSet,
        WorkloadKind::StatefulSet => pb::WorkloadKind::StatefulSet,
        WorkloadKind::Pod => pb::WorkloadKind::Pod,
        WorkloadKind::Unknown => pb::WorkloadKind::Unknown,
    }
}

fn cronjob(c: &CronJobRef) -> pb::CronJobRef {
    pb::CronJobRef {
        name: c.name.clone(),
        scheduled_time: c.scheduled_time.clone().unwrap_or_default(),
        source: owner_source(c.source),
        inferred: c.inferred,
    }
}

pub fn workload(w: &Workload) -> pb::Workload {
    pb::Workload {
        kind: workload_kind(w.kind) as i32,
        name: w.name.clone(),
        job: w.job.as_ref().map(|j| pb::JobRef {
            name: j.name.clone(),
            controller_uid: j.controller_uid.clone().unwrap_or_default(),
        }),
        cronjob: w.cronjob.as_ref().map(cronjob),
        source: owner_source(w.source),
    }
}

fn pod_ref(p: &PodRef) -> pb::Pod {
    pb::Pod {
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        uid: p.uid.clone(),
        labels: Default::default(),
    }
}

fn pod(p: &PodIdentity) -> pb::Pod {
    pb::Pod {
        name: p.name.clone(),
        namespace: p.namespace.clone(),
        uid: p.uid.clone(),
        labels: p
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

pub fn container_ref(c: &ContainerRef) -> pb::ContainerRef {
    pb::ContainerRef {
        id: c.id.clone(),
        name: c.name.clone(),
        image: c.image.clone(),
        pod: c.pod.as_ref().map(pod_ref),
        workload: c.workload.as_ref().map(workload),
        metadata_pending: c.metadata_pending,
    }
}

fn security(s: &SecurityFacts) -> pb::SecurityFacts {
    pb::SecurityFacts {
        privileged: s.privileged,
        uid: s.uid,
        gid: s.gid,
        runs_as_root: s.runs_as_root,
        added_capabilities: s.added_capabilities.clone(),
        host_pid: s.host_pid,
        host_network: s.host_network,
        host_ipc: s.host_ipc,
        host_mounts: s
            .host_mounts
            .iter()
            .map(|m| pb::HostMount {
                source: m.source.clone(),
                destination: m.destination.clone(),
                readonly: m.readonly,
            })
            .collect(),
        readonly_rootfs: s.readonly_rootfs,
        no_new_privileges: s.no_new_privileges,
    }
}

pub fn container(c: &ContainerInfo) -> pb::Container {
    pb::Container {
        id: c.id.clone(),
        runtime_namespace: c.runtime_namespace.clone(),
        name: c.name.clone(),
        kind: (match c.kind {
            ContainerKind::Sandbox => pb::ContainerKind::Sandbox,
            ContainerKind::Container => pb::ContainerKind::Container,
            ContainerKind::Plain => pb::ContainerKind::Plain,
        }) as i32,
        image: c.image.clone(),
        image_digest: c.image_digest.clone().unwrap_or_default(),
        sandbox_id: c.sandbox_id.clone().unwrap_or_default(),
        pod: c.pod.as_ref().map(pod),
        workload: c.workload.as_ref().map(workload),
        security: Some(security(&c.security)),
        cgroup: c.cgroup.clone().unwrap_or_default(),
        init_pid: c.init_pid,
        started_unix_nano: c.started_unix_ns.and_then(|n| i64::try_from(n).ok()),
        labels: c
            .labels
            .iter()
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect(),
    }
}

fn process(ids: &ExecIds, p: &event::Process, parent_start: Option<u64>) -> pb::Process {
    pb::Process {
        exec_id: ids.exec_id(p.pid, p.start_boot_ns),
        parent_exec_id: parent_start
            .map(|s| ids.exec_id(p.ppid, s))
            .unwrap_or_default(),
        pid: p.pid,
        tid: p.tid,
        ppid: p.ppid,
        uid: p.uid,
        gid: p.gid,
        euid: p.euid,
        egid: p.egid,
        loginuid: p.loginuid,
        cap_effective: p.cap_effective.0,
        comm: p.comm.text().into_owned(),
        cgroup_id: p.cgroup_id,
        cgroup_v1_id: p.cgroup_v1_id,
        mntns: p.mntns,
        host: p.host,
        start_boot_ns: p.start_boot_ns,
        binary: p.binary.clone(),
    }
}

pub(crate) fn file_operation(op: &str) -> pb::FileOperation {
    match op {
        "create" => pb::FileOperation::Create,
        "mknod" => pb::FileOperation::Mknod,
        "link" => pb::FileOperation::Link,
        "symlink" => pb::FileOperation::Symlink,
        "rename" => pb::FileOperation::Rename,
        "chmod_exec" => pb::FileOperation::ChmodExec,
        _ => pb::FileOperation::Unspecified,
    }
}

pub fn loss_cause(cause: &str) -> pb::LossCause {
    match cause {
        "ring_buffer_full" => pb::LossCause::RingBufferFull,
        "queue_full" => pb::LossCause::QueueFull,
        "slow_subscriber" => pb::LossCause::SlowSubscriber,
        "reporter_buffer" => pb::LossCause::ReporterBuffer,
        _ => pb::LossCause::Unspecified,
    }
}

/// The API message of an event; `seq` is the sensor's sequence number for it.
pub fn event(ids: &ExecIds, clock_unix_ns: i128, e: &Event, seq: u64) -> pb::Event {
    use pb::event::Kind;
    let kind = match &e.kind {
        EventKind::ProcessExec(x) => Kind::ProcessExec(pb::ProcessExec {
            process: Some(process(
                ids,
                &x.process,
                x.parent.as_ref().map(|p| p.start_boot_ns),
            )),
            filename: x.filename.clone(),
            binary: x.binary.clone(),
            args: x.args.to_vec(),
            cwd: x.cwd.clone(),
            flags: Some(pb::ExecFlags {
                deleted: x.flags.deleted,
                memfd: x.flags.memfd,
                upper_layer: x.flags.upper_layer,
                args_truncated: x.flags.args_truncated,
                path_truncated: x.flags.path_truncated,
                read_error: x.flags.read_error,
            }),
            parent: x.parent.as_ref().map(|p| pb::Parent {
                pid: p.pid,
                binary: p.binary.clone(),
                args: p.args.to_vec(),
                source: match p.source {
                    ProcessSource::Exec => "exec",
                    ProcessSource::Procfs => "procfs",
                    ProcessSource::Fork => "fork",
                }
                .to_string(),
            }),
            container: x.container.as_deref().map(container_ref),
        }),
        EventKind::ProcessExit(x) => Kind::ProcessExit(pb::ProcessExit {
            pid: x.pid,
            tid: x.tid,
            exit_code: x.exit_code,
            signal: x.signal,
            start_boot_ns: x.start_boot_ns,
            duration_ns: x.duration_ns,
            binary: x.binary.clone(),
            container: x.container.as_deref().map(container_ref),
            exec_id: ids.exec_id(x.pid, x.start_boot_ns),
        }),
        EventKind::FileCreated(x) => Kind::FileCreated(pb::FileCreated {
            process: Some(process(ids, &x.process, None)),
            operation: file_operation(x.operation) as i32,
            path: x.path.clone(),
            source: x.source.clone(),
            mode: x.mode.bits(),
            old_mode: x.old_mode.map(|m| m.bits()),
            replaced: x.replaced,
            path_truncated: x.path_truncated,
            read_error: x.read_error,
            container: x.container.as_deref().map(container_ref),
        }),
        EventKind::ContainerCreated(x) => Kind::ContainerCreated(pb::ContainerCreated {
            container: Some(container(&x.container)),
            seen_at_start: x.seen_at_start,
        }),
        EventKind::ContainerExited(x) => Kind::ContainerExited(pb::ContainerExited {
            container: Some(container_ref(&x.container)),
            exit_code: x.exit_code,
            duration_ns: x.duration_ns,
        }),
        EventKind::LostEvents(x) => Kind::LostEvents(pb::LostEvents {
            count: x.count,
            cause: loss_cause(x.cause) as i32,
        }),
    };
    pb::Event {
        node: ids.node.clone(),
        time_unix_nano: i64::try_from(clock_unix_ns).unwrap_or(0),
        boot_ns: e.boot_ns,
        seq,
        kind: Some(kind),
    }
}

/// The kind of an API event, for filters.
pub fn event_kind(e: &pb::Event) -> pb::EventKind {
    use pb::event::Kind;
    match &e.kind {
        Some(Kind::ProcessExec(_)) => pb::EventKind::ProcessExec,
        Some(Kind::ProcessExit(_)) => pb::EventKind::ProcessExit,
        Some(Kind::FileCreated(_)) => pb::EventKind::FileCreated,
        Some(Kind::ContainerCreated(_)) => pb::EventKind::ContainerCreated,
        Some(Kind::ContainerExited(_)) => pb::EventKind::ContainerExited,
        Some(Kind::LostEvents(_)) => pb::EventKind::LostEvents,
        None => pb::EventKind::Unspecified,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{CapMask, ExecFlags, FileCreated, Mode, Parent, Process, ProcessExec};

    fn exec() -> Event {
        Event {
            time_unix_ns: 0,
            boot_ns: 99,
            kind: EventKind::ProcessExec(ProcessExec {
                process: Process {
                    pid: 10,
                    tid: 10,
                    ppid: 1,
                    uid: 0,
                    gid: 0,
                    euid: 0,
                    egid: 0,
                    loginuid: None,
                    cap_effective: CapMask(0x1ff),
                    comm: "sh".into(),
                    cgroup_id: 5,
                    cgroup_v1_id: 0,
                    mntns: 7,
                    host: false,
                    start_boot_ns: 50,
                    binary: "/bin/sh".into(),
                },
                filename: "/bin/sh".into(),
                binary: "/bin/busybox".into(),
                args: vec!["sh".into(), "-c".into()].into(),
                cwd: "/".into(),
                flags: ExecFlags {
                    upper_layer: true,
                    ..ExecFlags::default()
                },
                parent: Some(Parent {
                    pid: 1,
                    binary: "/sbin/init".into(),
                    args: Vec::new().into(),
                    source: ProcessSource::Procfs,
                    start_boot_ns: 3,
                }),
                container: Some(std::sync::Arc::new(ContainerRef {
                    id: "abc".into(),
                    name: "job".into(),
                    image: "busybox".into(),
                    pod: Some(PodRef {
                        name: "p".into(),
                        namespace: "ns".into(),
                        uid: "u".into(),
                    }),
                    workload: None,
                    metadata_pending: false,
                })),
            }),
        }
    }

    #[test]
    fn exec_converts_field_by_field() {
        let ids = ExecIds {
            node: "n1".into(),
            boot_unix_secs: 1000,
        };
        let pbe = event(&ids, 5_000, &exec(), 42);
        assert_eq!(
            (pbe.node.as_str(), pbe.seq, pbe.boot_ns, pbe.time_unix_nano),
            ("n1", 42, 99, 5_000)
        );
        assert_eq!(event_kind(&pbe), pb::EventKind::ProcessExec);
        let Some(pb::event::Kind::ProcessExec(x)) = pbe.kind else {
            panic!("exec")
        };
        let p = x.process.expect("process");
        assert_eq!(p.exec_id, "n1:1000:10:50");
        assert_eq!(p.parent_exec_id, "n1:1000:1:3");
        assert_eq!(p.cap_effective, 0x1ff);
        assert_eq!(x.binary, "/bin/busybox");
        assert!(x.flags.expect("flags").upper_layer);
        assert_eq!(x.parent.expect("parent").source, "procfs");
        let c = x.container.expect("container");
        assert_eq!(c.pod.expect("pod").namespace, "ns");
    }

    #[test]
    fn file_modes_are_numbers() {
        let ids = ExecIds {
            node: "n1".into(),
            boot_unix_secs: 1000,
        };
        let EventKind::ProcessExec(x) = exec().kind else {
            panic!("exec")
        };
        let file = Event {
            time_unix_ns: 0,
            boot_ns: 1,
            kind: EventKind::FileCreated(FileCreated {
                process: x.process,
                operation: "chmod_exec",
                path: "/tmp/x".into(),
                source: None,
                mode: Mode::new(0o100755),
                old_mode: Some(Mode::new(0o100644)),
                replaced: false,
                path_truncated: false,
                read_error: false,
                container: None,
            }),
        };
        let Some(pb::event::Kind::FileCreated(f)) = event(&ids, 0, &file, 1).kind else {
            panic!("file")
        };
        assert_eq!((f.mode, f.old_mode), (0o100755, Some(0o100644)));
        assert_eq!(f.operation, pb::FileOperation::ChmodExec as i32);
        assert_eq!(f.process.expect("process").comm, "sh");
    }

    #[test]
    fn exec_ids_print_as_format_did() {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for boot in [0, 1, -1, 1_795_737_600, i64::MIN, i64::MAX] {
            let ids = ExecIds {
                node: "node-a".into(),
                boot_unix_secs: boot,
            };
            for _ in 0..500 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let (pid, start) = (x as u32 >> (x % 32), x >> (x % 64));
                assert_eq!(
                    ids.exec_id(pid, start),
                    format!("node-a:{boot}:{pid}:{start}")
                );
            }
            assert_eq!(
                ids.exec_id(u32::MAX, u64::MAX),
                format!("node-a:{boot}:{}:{}", u32::MAX, u64::MAX)
            );
            assert_eq!(ids.exec_id(0, 0), format!("node-a:{boot}:0:0"));
        }
    }

    #[test]
    fn causes_and_operations() {
        assert_eq!(
            loss_cause("ring_buffer_full"),
            pb::LossCause::RingBufferFull
        );
        assert_eq!(loss_cause("nonsense"), pb::LossCause::Unspecified);
        assert_eq!(file_operation("chmod_exec"), pb::FileOperation::ChmodExec);
    }
}
