//! The events the sensor emits, built from decoded records and the process table.
//!
//! These are the sensor's public JSON shape (one object per line on stdout): field names are
//! part of the interface.

use sensor_common::{ExecRecord, ExitRecord, ProcessIdentity, exec_flag, file_flag, file_op};
use serde::Serialize;

use crate::{
    clock::BootClock,
    containers::index::{ContainerInfo, ContainerRef},
    process_table::{ProcessInfo, ProcessSource},
    record::{ExecView, FileView, split_args, text},
};

/// One event, as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Wall-clock time, RFC 3339 in UTC.
    pub time: String,
    /// Nanoseconds since boot (the kernel's clock), for ordering.
    pub boot_ns: u64,
    #[serde(flatten)]
    pub kind: EventKind,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum EventKind {
    ProcessExec(ProcessExec),
    ProcessExit(ProcessExit),
    FileCreated(FileCreated),
    ContainerCreated(ContainerCreated),
    ContainerExited(ContainerExited),
    LostEvents(LostEvents),
}

/// A container started (or was found running when the sensor started).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerCreated {
    pub container: ContainerInfo,
    /// Already running when the sensor (or its containerd connection) started.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub seen_at_start: bool,
}

/// A container's first process ended: for a Job, its run is over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerExited {
    pub container: ContainerRef,
    pub exit_code: u32,
    /// How long it ran, when its start was seen.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_ns: Option<u64>,
}

/// Events the sensor lost, reported in the stream where the loss was noticed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LostEvents {
    pub count: u64,
    /// `ring_buffer_full` (kernel) or `queue_full` (userspace output queue).
    pub cause: &'static str,
}

impl EventKind {
    pub fn name(&self) -> &'static str {
        match self {
            EventKind::ProcessExec(_) => "process_exec",
            EventKind::ProcessExit(_) => "process_exit",
            EventKind::FileCreated(_) => "file_created",
            EventKind::ContainerCreated(_) => "container_created",
            EventKind::ContainerExited(_) => "container_exited",
            EventKind::LostEvents(_) => "lost_events",
        }
    }
}

impl Event {
    /// Attaches the container of a process event (exec, exit, file).
    pub fn set_container(&mut self, container: Option<ContainerRef>) {
        match &mut self.kind {
            EventKind::ProcessExec(x) => x.container = container,
            EventKind::ProcessExit(x) => x.container = container,
            EventKind::FileCreated(x) => x.container = container,
            _ => {}
        }
    }

    /// (host, cgroup id, cgroup v1 id) of a process event.
    pub fn cgroup(&self) -> Option<(bool, u64, u64)> {
        let p = match &self.kind {
            EventKind::ProcessExec(x) => &x.process,
            EventKind::FileCreated(x) => &x.process,
            _ => return None,
        };
        Some((p.host, p.cgroup_id, p.cgroup_v1_id))
    }
}

/// Who did it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Process {
    /// Process id (thread group id).
    pub pid: u32,
    /// Thread id.
    pub tid: u32,
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Audit login uid; absent when unset.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub loginuid: Option<u32>,
    /// Effective capabilities, as a hex mask.
    pub cap_effective: String,
    pub comm: String,
    pub cgroup_id: u64,
    #[serde(skip_serializing_if = "is_zero")]
    pub cgroup_v1_id: u64,
    pub mntns: u32,
    /// In the host's mount namespace: not a container.
    pub host: bool,
    /// Start time of the process, ns since boot.
    pub start_boot_ns: u64,
    /// The process's executable, from the process table ("" if unknown).
    #[serde(skip_serializing_if = "String::is_empty")]
    pub binary: String,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The parent, from the process table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parent {
    pub pid: u32,
    pub binary: String,
    pub args: Vec<String>,
    /// How the sensor knows it: "exec" (seen) or "procfs" (seeded at start).
    pub source: ProcessSource,
    /// Its start time, ns since boot (with the pid, it identifies the parent's exec).
    pub start_boot_ns: u64,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessExec {
    pub process: Process,
    /// The filename passed to exec.
    pub filename: String,
    /// Absolute path of the executed file (the interpreter for scripts).
    pub binary: String,
    pub args: Vec<String>,
    pub cwd: String,
    pub flags: ExecFlags,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// The container, pod and workload; absent for host processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct ExecFlags {
    /// The binary has no link left: deleted, or never linked (memfd).
    pub deleted: bool,
    pub memfd: bool,
    /// The binary lives in an overlayfs upper (writable) layer.
    pub upper_layer: bool,
    pub args_truncated: bool,
    pub path_truncated: bool,
    pub read_error: bool,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ProcessExit {
    pub pid: u32,
    pub tid: u32,
    /// Exit status when the process exited normally.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<u32>,
    /// Terminating signal when it was killed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signal: Option<u32>,
    pub start_boot_ns: u64,
    /// How long the process ran, ns.
    pub duration_ns: u64,
    #[serde(skip_serializing_if = "String::is_empty")]
    pub binary: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
}

#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FileCreated {
    pub process: Process,
    /// create, mknod, link, symlink, rename or chmod_exec.
    pub operation: &'static str,
    pub path: String,
    /// link: the existing file; symlink: the target as given; rename: the old name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// Octal mode of the new object (type and permissions).
    pub mode: String,
    /// chmod_exec: the mode before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_mode: Option<String>,
    /// rename: an existing file was replaced.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_error: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<ContainerRef>,
}

pub fn operation_name(op: u16) -> &'static str {
    match op {
        file_op::CREATE => "create",
        file_op::MKNOD => "mknod",
        file_op::LINK => "link",
        file_op::SYMLINK => "symlink",
        file_op::RENAME => "rename",
        file_op::CHMOD_EXEC => "chmod_exec",
        _ => "unknown",
    }
}

fn process(p: &ProcessIdentity, host: bool, binary: String) -> Process {
    Process {
        pid: p.tgid,
        tid: p.pid,
        ppid: p.ppid,
        uid: p.uid,
        gid: p.gid,
        euid: p.euid,
        egid: p.egid,
        loginuid: (p.loginuid != u32::MAX).then_some(p.loginuid),
        cap_effective: format!("{:#x}", p.cap_effective),
        comm: text(&p.comm),
        cgroup_id: p.cgroup_id,
        cgroup_v1_id: p.cgroup_v1_id,
        mntns: p.mntns,
        host,
        start_boot_ns: p.start_time_ns,
        binary,
    }
}

/// The process table entry an exec creates.
pub fn exec_process_info(v: &ExecView<'_>) -> ProcessInfo {
    let p = &v.fixed.process;
    ProcessInfo {
        tgid: p.tgid,
        ppid: p.ppid,
        start_time_ns: p.start_time_ns,
        uid: p.uid,
        comm: text(&p.comm),
        binary: text(v.binary),
        args: split_args(v.args).map(text).collect(),
        cwd: text(v.cwd),
        cgroup_id: p.cgroup_id,
        mntns: p.mntns,
        source: ProcessSource::Exec,
    }
}

fn exec_flags(r: &ExecRecord) -> ExecFlags {
    let f = r.flags;
    ExecFlags {
        deleted: f & exec_flag::DELETED != 0,
        memfd: f & exec_flag::MEMFD != 0,
        upper_layer: f & exec_flag::UPPER_LAYER != 0,
        args_truncated: f & exec_flag::ARGS_TRUNCATED != 0,
        path_truncated: f
            & (exec_flag::FILENAME_TRUNCATED
                | exec_flag::BINARY_TRUNCATED
                | exec_flag::CWD_TRUNCATED)
            != 0,
        read_error: f & exec_flag::READ_ERROR != 0,
    }
}

/// Builds the exec event from its record, the new process table entry and the parent's.
pub fn exec_event(
    clock: &BootClock,
    v: &ExecView<'_>,
    info: &ProcessInfo,
    parent: Option<&ProcessInfo>,
) -> Event {
    let r = &v.fixed;
    Event {
        time: clock.rfc3339(r.header.ktime_ns),
        boot_ns: r.header.ktime_ns,
        kind: EventKind::ProcessExec(ProcessExec {
            process: process(
                &r.process,
                r.flags & exec_flag::HOST != 0,
                info.binary.clone(),
            ),
            filename: text(v.filename),
            binary: info.binary.clone(),
            args: info.args.clone(),
            cwd: info.cwd.clone(),
            flags: exec_flags(r),
            parent: parent.map(|p| Parent {
                pid: p.tgid,
                binary: p.binary.clone(),
                args: p.args.clone(),
                source: p.source,
                start_boot_ns: p.start_time_ns,
            }),
            container: None,
        }),
    }
}

/// Builds the exit event; `info` is the process table entry the exit removed.
pub fn exit_event(clock: &BootClock, r: &ExitRecord, info: Option<&ProcessInfo>) -> Event {
    let code = r.exit_code;
    let signal = code & 0x7f;
    Event {
        time: clock.rfc3339(r.header.ktime_ns),
        boot_ns: r.header.ktime_ns,
        kind: EventKind::ProcessExit(ProcessExit {
            pid: r.tgid,
            tid: r.pid,
            exit_code: (signal == 0).then_some((code >> 8) & 0xff),
            signal: (signal != 0).then_some(signal),
            start_boot_ns: r.start_time_ns,
            duration_ns: r.header.ktime_ns.saturating_sub(r.start_time_ns),
            binary: info.map(|i| i.binary.clone()).unwrap_or_default(),
            container: None,
        }),
    }
}

pub fn file_event(clock: &BootClock, v: &FileView<'_>, actor: Option<&ProcessInfo>) -> Event {
    let r = &v.fixed;
    let f = r.flags;
    let has_source = matches!(r.op, file_op::LINK | file_op::SYMLINK | file_op::RENAME);
    Event {
        time: clock.rfc3339(r.header.ktime_ns),
        boot_ns: r.header.ktime_ns,
        kind: EventKind::FileCreated(FileCreated {
            process: process(
                &r.process,
                f & file_flag::HOST != 0,
                actor.map(|a| a.binary.clone()).unwrap_or_default(),
            ),
            operation: operation_name(r.op),
            path: text(v.path),
            source: has_source.then(|| text(v.old_path)),
            mode: format!("{:o}", r.mode),
            old_mode: (r.op == file_op::CHMOD_EXEC).then(|| format!("{:o}", r.old_mode)),
            replaced: f & file_flag::REPLACED != 0,
            path_truncated: f & (file_flag::PATH_TRUNCATED | file_flag::OLD_PATH_TRUNCATED) != 0,
            read_error: f & file_flag::READ_ERROR != 0,
            container: None,
        }),
    }
}
