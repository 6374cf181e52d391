//! Faithful JSON renderings of the API's messages: snake_case field names as in the `.proto`,
//! enums as lower-case names without their prefix, 64-bit integers as numbers, absent optional
//! fields and messages as `null`. prost's types do not implement serde, hence the hand-written
//! mapping.

use std::collections::{BTreeMap, HashMap};

use jobwatch_proto::v1 as pb;
use serde_json::{Value, json};

use crate::names;

/// Renders an optional message with `f`, or `null`.
fn opt<T>(value: Option<&T>, f: impl Fn(&T) -> Value) -> Value {
    value.map_or(Value::Null, f)
}

/// A string map with its keys sorted, so the output is stable.
fn map(labels: &HashMap<String, String>) -> Value {
    json!(labels.iter().collect::<BTreeMap<_, _>>())
}

/// One event. Besides the `oneof` payload under its field name (`process_exec`, ...), `kind`
/// names the payload (`"none"` without one).
pub fn event_json(event: &pb::Event) -> Value {
    use pb::event::Kind;
    let mut object = json!({
        "node": event.node,
        "time_unix_nano": event.time_unix_nano,
        "boot_ns": event.boot_ns,
        "seq": event.seq,
        "kind": names::event_payload(event.kind.as_ref()),
    });
    let payload = match &event.kind {
        Some(Kind::ProcessExec(exec)) => Some(process_exec(exec)),
        Some(Kind::ProcessExit(exit)) => Some(process_exit(exit)),
        Some(Kind::FileCreated(file)) => Some(file_created(file)),
        Some(Kind::ContainerCreated(created)) => Some(json!({
            "container": opt(created.container.as_ref(), container_json),
            "seen_at_start": created.seen_at_start,
        })),
        Some(Kind::ContainerExited(exited)) => Some(json!({
            "container": opt(exited.container.as_ref(), container_ref),
            "exit_code": exited.exit_code,
            "duration_ns": exited.duration_ns,
        })),
        Some(Kind::LostEvents(lost)) => Some(json!({
            "count": lost.count,
            "cause": names::loss_cause(lost.cause),
        })),
        None => None,
    };
    if let (Some(payload), Value::Object(fields)) = (payload, &mut object) {
        fields.insert(
            names::event_payload(event.kind.as_ref()).to_string(),
            payload,
        );
    }
    object
}

pub fn process(p: &pb::Process) -> Value {
    json!({
        "exec_id": p.exec_id,
        "parent_exec_id": p.parent_exec_id,
        "pid": p.pid,
        "tid": p.tid,
        "ppid": p.ppid,
        "uid": p.uid,
        "gid": p.gid,
        "euid": p.euid,
        "egid": p.egid,
        "loginuid": p.loginuid,
        "cap_effective": p.cap_effective,
        "comm": p.comm,
        "cgroup_id": p.cgroup_id,
        "cgroup_v1_id": p.cgroup_v1_id,
        "mntns": p.mntns,
        "host": p.host,
        "start_boot_ns": p.start_boot_ns,
        "binary": p.binary,
    })
}

fn process_exec(exec: &pb::ProcessExec) -> Value {
    json!({
        "process": opt(exec.process.as_ref(), process),
        "filename": exec.filename,
        "binary": exec.binary,
        "args": exec.args,
        "cwd": exec.cwd,
        "flags": opt(exec.flags.as_ref(), |f| json!({
            "deleted": f.deleted,
            "memfd": f.memfd,
            "upper_layer": f.upper_layer,
            "args_truncated": f.args_truncated,
            "path_truncated": f.path_truncated,
            "read_error": f.read_error,
        })),
        "parent": opt(exec.parent.as_ref(), |p| json!({
            "pid": p.pid,
            "binary": p.binary,
            "args": p.args,
            "source": p.source,
        })),
        "container": opt(exec.container.as_ref(), container_ref),
    })
}

fn process_exit(exit: &pb::ProcessExit) -> Value {
    json!({
        "pid": exit.pid,
        "tid": exit.tid,
        "exit_code": exit.exit_code,
        "signal": exit.signal,
        "start_boot_ns": exit.start_boot_ns,
        "duration_ns": exit.duration_ns,
        "binary": exit.binary,
        "container": opt(exit.container.as_ref(), container_ref),
        "exec_id": exit.exec_id,
    })
}

fn file_created(file: &pb::FileCreated) -> Value {
    json!({
        "process": opt(file.process.as_ref(), process),
        "operation": names::file_operation(file.operation),
        "path": file.path,
        "source": file.source,
        "mode": file.mode,
        "old_mode": file.old_mode,
        "replaced": file.replaced,
        "path_truncated": file.path_truncated,
        "read_error": file.read_error,
        "container": opt(file.container.as_ref(), container_ref),
    })
}

fn pod(p: &pb::Pod) -> Value {
    json!({
        "name": p.name,
        "namespace": p.namespace,
        "uid": p.uid,
        "labels": map(&p.labels),
    })
}

fn workload(w: &pb::Workload) -> Value {
    json!({
        "kind": names::workload_kind(w.kind),
        "name": w.name,
        "job": opt(w.job.as_ref(), |j| json!({
            "name": j.name,
            "controller_uid": j.controller_uid,
        })),
        "cronjob": opt(w.cronjob.as_ref(), |c| json!({
            "name": c.name,
            "scheduled_time": c.scheduled_time,
            "source": names::owner_source(c.source),
            "inferred": c.inferred,
        })),
        "source": names::owner_source(w.source),
    })
}

pub fn container_ref(c: &pb::ContainerRef) -> Value {
    json!({
        "id": c.id,
        "name": c.name,
        "image": c.image,
        "pod": opt(c.pod.as_ref(), pod),
        "workload": opt(c.workload.as_ref(), workload),
        "metadata_pending": c.metadata_pending,
    })
}

fn security(s: &pb::SecurityFacts) -> Value {
    json!({
        "privileged": s.privileged,
        "uid": s.uid,
        "gid": s.gid,
        "runs_as_root": s.runs_as_root,
        "added_capabilities": s.added_capabilities,
        "host_pid": s.host_pid,
        "host_network": s.host_network,
        "host_ipc": s.host_ipc,
        "host_mounts": s.host_mounts.iter().map(|m| json!({
            "source": m.source,
            "destination": m.destination,
            "readonly": m.readonly,
        })).collect::<Vec<_>>(),
        "readonly_rootfs": s.readonly_rootfs,
        "no_new_privileges": s.no_new_privileges,
    })
}

/// Everything the sensor knows about a container.
pub fn container_json(c: &pb::Container) -> Value {
    json!({
        "id": c.id,
        "runtime_namespace": c.runtime_namespace,
        "name": c.name,
        "kind": names::container_kind(c.kind),
        "image": c.image,
        "image_digest": c.image_digest,
        "sandbox_id": c.sandbox_id,
        "pod": opt(c.pod.as_ref(), pod),
        "workload": opt(c.workload.as_ref(), workload),
        "security": opt(c.security.as_ref(), security),
        "cgroup": c.cgroup,
        "init_pid": c.init_pid,
        "started_unix_nano": c.started_unix_nano,
        "labels": map(&c.labels),
    })
}

/// An event as the collector stored it: its collector id and the event.
pub fn stored_event_json(stored: &pb::StoredEvent) -> Value {
    json!({
        "id": stored.id,
        "event": opt(stored.event.as_ref(), event_json),
    })
}

fn rule(r: &pb::RuleRef) -> Value {
    json!({
        "id": r.id,
        "title": r.title,
        "description": r.description,
        "technique": r.technique,
        "data_sources": r.data_sources,
        "mitigations": r.mitigations,
    })
}

fn alert_process(p: &pb::AlertProcess) -> Value {
    json!({
        "exec_id": p.exec_id,
        "pid": p.pid,
        "binary": p.binary,
        "args": p.args,
        "uid": p.uid,
        "partial": p.partial,
    })
}

/// One alert, every field: the rule, the attribution chain, the ancestry (acting process
/// first), the evidence events (each as [`stored_event_json`]) and the rule's details (keys
/// sorted).
pub fn alert_json(a: &pb::Alert) -> Value {
    json!({
        "id": a.id,
        "time_unix_nano": a.time_unix_nano,
        "rule": opt(a.rule.as_ref(), rule),
        "severity": names::severity(a.severity),
        "message": a.message,
        "node": a.node,
        "namespace": a.namespace,
        "cronjob": a.cronjob,
        "job": a.job,
        "pod": a.pod,
        "container_id": a.container_id,
        "container_name": a.container_name,
        "image": a.image,
        "workload": opt(a.workload.as_ref(), workload),
        "ancestry": a.ancestry.iter().map(alert_process).collect::<Vec<_>>(),
        "evidence": a.evidence.iter().map(stored_event_json).collect::<Vec<_>>(),
        "details": map(&a.details),
    })
}

/// The sensor's status; `counters` keeps the sensor's order as a list of `{name, value}`.
pub fn status_json(s: &pb::Status) -> Value {
    json!({
        "version": s.version,
        "node": s.node,
        "kernel": s.kernel,
        "programs_attached": s.programs_attached,
        "containerd_connected": s.containerd_connected,
        "containerd_error": s.containerd_error,
        "containers_tracked": s.containers_tracked,
        "subscribers": s.subscribers,
        "counters": s.counters.iter().map(|c| json!({
            "name": c.name,
            "value": c.value,
        })).collect::<Vec<_>>(),
    })
}
