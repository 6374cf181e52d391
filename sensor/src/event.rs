//! The events the sensor emits, built from decoded records and the process table.
//!
//! These are the sensor's public JSON shape (one object per line on stdout): field names are
//! part of the interface.
//!
//! Events are built for every record, printed or not, so they keep what the kernel gave as
//! numbers (time, capabilities, modes, comm bytes) and are formatted only when serialized: the
//! API conversion uses the numbers, and building an event formats nothing.

use std::{borrow::Cow, fmt, sync::Arc};

use sensor_common::{ExecRecord, ExitRecord, ProcessIdentity, exec_flag, file_flag, file_op};
use serde::{Serialize, Serializer};

use crate::{
    clock::{self, BootClock},
    containers::index::{ContainerInfo, ContainerRef},
    loss::LossKind,
    process_table::{ProcessInfo, ProcessSource},
    record::{ExecView, FileView, split_args, text},
};

/// One event, as printed.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Event {
    /// Wall-clock time, ns since the Unix epoch; printed as `time`, RFC 3339 in UTC.
    #[serde(rename = "time", serialize_with = "clock::serialize_rfc3339")]
    pub time_unix_ns: i128,
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
///
/// Container data is boxed in every event: it is large (a `ContainerRef` is ~290 bytes, a
/// `ContainerInfo` ~540) and every event is moved several times between the ring buffer and the
/// output (reader, attribution, queue, batch); inline, it made every event, host ones too, that
/// large.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerCreated {
    pub container: Box<ContainerInfo>,
    /// Already running when the sensor (or its containerd connection) started.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub seen_at_start: bool,
}

/// A container's first process ended: for a Job, its run is over.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ContainerExited {
    pub container: Arc<ContainerRef>,
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

    /// The kind its loss is counted as.
    pub fn loss_kind(&self) -> LossKind {
        match self {
            EventKind::ProcessExec(_) => LossKind::Exec,
            EventKind::ProcessExit(_) => LossKind::Exit,
            EventKind::FileCreated(_) => LossKind::File,
            _ => LossKind::Other,
        }
    }
}

/// An exit of `/bin/true` by `pid` (its `boot_ns` is the pid), for tests.
#[cfg(test)]
pub(crate) fn test_exit(pid: u32) -> Event {
    Event {
        time_unix_ns: 0,
        boot_ns: u64::from(pid),
        kind: EventKind::ProcessExit(ProcessExit {
            pid,
            tid: pid,
            exit_code: Some(0),
            signal: None,
            start_boot_ns: 0,
            duration_ns: 0,
            binary: "/bin/true".into(),
            container: None,
        }),
    }
}

impl Event {
    /// Attaches the container of a process event (exec, exit, file).
    pub fn set_container(&mut self, container: Option<Arc<ContainerRef>>) {
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
    /// Effective capabilities, printed as a hex mask.
    pub cap_effective: CapMask,
    pub comm: Comm,
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

/// Digits written right to left into a fixed buffer: number formatting without `fmt` or the heap.
#[derive(Clone, Copy)]
struct Digits<const N: usize> {
    buf: [u8; N],
    start: u8,
}

impl<const N: usize> Digits<N> {
    /// `prefix` then `v` in base `1 << shift` (lower-case), as many digits as needed (at least
    /// one). `N` must hold them: 11 for octal `u32`, 18 for `0x` and hex `u64`.
    const fn new(prefix: &[u8], mut v: u64, shift: u32) -> Digits<N> {
        const DIGITS: &[u8; 16] = b"0123456789abcdef";
        let mask = (1u64 << shift) - 1;
        let mut buf = [0u8; N];
        let mut i = N;
        loop {
            i -= 1;
            buf[i] = DIGITS[(v & mask) as usize];
            v >>= shift;
            if v == 0 {
                break;
            }
        }
        let mut p = prefix.len();
        while p > 0 {
            p -= 1;
            i -= 1;
            buf[i] = prefix[p];
        }
        Digits {
            buf,
            start: i as u8,
        }
    }

    fn as_str(&self) -> &str {
        // Only ASCII digits and prefix bytes were written.
        std::str::from_utf8(&self.buf[usize::from(self.start)..]).unwrap_or_default()
    }
}

/// A capability mask, printed as hex: `0x1ffffffffff`.
#[derive(Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct CapMask(pub u64);

impl CapMask {
    fn hex(self) -> Digits<18> {
        Digits::new(b"0x", self.0, 4)
    }
}

impl fmt::Display for CapMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.hex().as_str())
    }
}

impl fmt::Debug for CapMask {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.hex().as_str(), f)
    }
}

impl Serialize for CapMask {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.hex().as_str())
    }
}

/// Compares with the printed form (`"0x1ff"`), as the JSON shows it.
impl PartialEq<str> for CapMask {
    fn eq(&self, other: &str) -> bool {
        self.hex().as_str() == other
    }
}

impl PartialEq<&str> for CapMask {
    fn eq(&self, other: &&str) -> bool {
        *self == **other
    }
}

impl PartialEq<String> for CapMask {
    fn eq(&self, other: &String) -> bool {
        *self == **other
    }
}

/// A file mode (type and permission bits) and its octal text, `100755` as `stat` prints it.
///
/// The text is kept beside the number, in place (a few shifts, no allocation), so that a mode
/// reads as a `&str` like the JSON it becomes.
#[derive(Clone, Copy)]
pub struct Mode {
    bits: u32,
    text: Digits<11>,
}

impl Mode {
    pub const fn new(bits: u32) -> Mode {
        Mode {
            bits,
            text: Digits::new(b"", bits as u64, 3),
        }
    }

    /// The mode as the kernel gave it.
    pub const fn bits(&self) -> u32 {
        self.bits
    }

    /// Octal, without a leading zero.
    pub fn as_str(&self) -> &str {
        self.text.as_str()
    }
}

impl From<u32> for Mode {
    fn from(bits: u32) -> Mode {
        Mode::new(bits)
    }
}

impl std::ops::Deref for Mode {
    type Target = str;

    fn deref(&self) -> &str {
        self.as_str()
    }
}

impl PartialEq for Mode {
    fn eq(&self, other: &Mode) -> bool {
        self.bits == other.bits
    }
}

impl Eq for Mode {}

impl PartialEq<str> for Mode {
    fn eq(&self, other: &str) -> bool {
        self.as_str() == other
    }
}

impl PartialEq<&str> for Mode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

impl PartialEq<String> for Mode {
    fn eq(&self, other: &String) -> bool {
        self.as_str() == other
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl fmt::Debug for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(self.as_str(), f)
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// A task's `comm` as the kernel keeps it (at most 16 bytes, cut at the first NUL), printed as
/// lossy UTF-8. Kept in place: no allocation per event.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct Comm {
    bytes: [u8; 16],
    len: u8,
}

impl Comm {
    /// The bytes up to the first NUL, at most 16.
    pub fn new(raw: &[u8]) -> Comm {
        let raw = &raw[..raw.len().min(16)];
        let len = raw.iter().position(|b| *b == 0).unwrap_or(raw.len());
        let mut bytes = [0u8; 16];
        bytes[..len].copy_from_slice(&raw[..len]);
        Comm {
            bytes,
            len: len as u8,
        }
    }

    pub fn as_bytes(&self) -> &[u8] {
        &self.bytes[..usize::from(self.len)]
    }

    /// Lossy UTF-8 (borrowed when the bytes are valid, as they nearly always are).
    pub fn text(&self) -> Cow<'_, str> {
        String::from_utf8_lossy(self.as_bytes())
    }
}

/// `"name".into()`: cut to 16 bytes, as the kernel would.
impl From<&str> for Comm {
    fn from(s: &str) -> Comm {
        Comm::new(s.as_bytes())
    }
}

impl PartialEq<str> for Comm {
    fn eq(&self, other: &str) -> bool {
        self.text() == other
    }
}

impl PartialEq<&str> for Comm {
    fn eq(&self, other: &&str) -> bool {
        self.text() == *other
    }
}

impl PartialEq<String> for Comm {
    fn eq(&self, other: &String) -> bool {
        self.text() == other.as_str()
    }
}

impl fmt::Display for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text())
    }
}

impl fmt::Debug for Comm {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.text(), f)
    }
}

impl Serialize for Comm {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text())
    }
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The parent, from the process table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Parent {
    pub pid: u32,
    pub binary: String,
    pub args: Arc<[String]>,
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
    pub args: Arc<[String]>,
    pub cwd: String,
    pub flags: ExecFlags,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub parent: Option<Parent>,
    /// The container, pod and workload; absent for host processes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<ContainerRef>>,
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
    pub container: Option<Arc<ContainerRef>>,
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
    /// Mode of the new object (type and permissions), printed in octal.
    pub mode: Mode,
    /// chmod_exec: the mode before.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub old_mode: Option<Mode>,
    /// rename: an existing file was replaced.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub replaced: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub path_truncated: bool,
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub read_error: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub container: Option<Arc<ContainerRef>>,
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
        cap_effective: CapMask(p.cap_effective),
        comm: Comm::new(&p.comm),
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
        time_unix_ns: clock.unix_ns(r.header.ktime_ns),
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
        time_unix_ns: clock.unix_ns(r.header.ktime_ns),
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
        time_unix_ns: clock.unix_ns(r.header.ktime_ns),
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
            mode: Mode::new(r.mode),
            old_mode: (r.op == file_op::CHMOD_EXEC).then(|| Mode::new(r.old_mode)),
            replaced: f & file_flag::REPLACED != 0,
            path_truncated: f & (file_flag::PATH_TRUNCATED | file_flag::OLD_PATH_TRUNCATED) != 0,
            read_error: f & file_flag::READ_ERROR != 0,
            container: None,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::record::{FileView, text};
    use sensor_common::{FILE_RECORD_SIZE, FileRecord, RecordHeader, kind};

    /// Deterministic pseudo-random values, with the edges first.
    fn values() -> impl Iterator<Item = u64> {
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        [0, 1, 7, 8, 0o777, 0o100755, u64::from(u32::MAX), u64::MAX]
            .into_iter()
            .chain(std::iter::from_fn(move || {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                Some(x >> (x % 64))
            }))
            .take(10_000)
    }

    #[test]
    fn numbers_print_as_format_did() {
        for v in values() {
            let cap = CapMask(v);
            assert_eq!(cap.to_string(), format!("{v:#x}"));
            assert_eq!(cap, format!("{v:#x}"));
            let bits = v as u32;
            let mode = Mode::new(bits);
            assert_eq!(mode.as_str(), format!("{bits:o}"));
            assert_eq!(mode, format!("{bits:o}"));
            assert_eq!(mode.bits(), bits);
        }
        assert_eq!(format!("{:?}", Mode::new(0o755)), r#""755""#);
        assert_eq!(format!("{:?}", CapMask(0)), r#""0x0""#);
    }

    #[test]
    fn comm_reads_as_text_did() {
        let cases: [&[u8]; 6] = [
            b"true\0\0\0\0\0\0\0\0\0\0\0\0",
            b"0123456789abcdef",
            b"",
            b"a\0b",
            b"\xff\xfebad\0",
            b"caf\xc3\xa9",
        ];
        for raw in cases {
            let comm = Comm::new(raw);
            assert_eq!(comm.text(), text(raw), "{raw:?}");
            assert_eq!(
                serde_json::to_string(&comm).ok(),
                serde_json::to_string(&text(raw)).ok()
            );
        }
        assert_eq!(Comm::from("0123456789abcdefXYZ"), "0123456789abcdef");
    }

    fn file_record(op: u16, mode: u32, old_mode: u32, path: &[u8]) -> FileRecord {
        FileRecord {
            header: RecordHeader {
                kind: kind::FILE,
                _pad: 0,
                size: (FILE_RECORD_SIZE + path.len()) as u32,
                ktime_ns: 1_500_000_123,
            },
            process: ProcessIdentity {
                pid: 11,
                tgid: 10,
                ppid: 1,
                uid: 1000,
                gid: 1001,
                euid: 0,
                egid: 0,
                loginuid: u32::MAX,
                cap_effective: 0x1ff_ffff_ffff,
                cgroup_id: 77,
                cgroup_v1_id: 0,
                mntns: 4026531841,
                _pad: 0,
                start_time_ns: 5,
                comm: *b"touch\0\0\0\0\0\0\0\0\0\0\0",
            },
            op,
            flags: file_flag::HOST,
            mode,
            old_mode,
            path_len: path.len() as u16,
            old_path_len: 0,
        }
    }

    #[test]
    fn events_stay_small() {
        // Every event is moved several times on its way out: keep large parts boxed.
        assert!(
            size_of::<Event>() <= 360,
            "Event is {} bytes",
            size_of::<Event>()
        );
    }

    /// The printed line, byte for byte: the public JSON shape.
    #[test]
    fn file_event_prints_the_public_shape() {
        // Booted at 2026-11-27T00:00:00Z.
        let clock = BootClock::fixed(1_795_737_600 * 1_000_000_000);
        let path = b"/tmp/x";
        let v = FileView {
            fixed: file_record(file_op::CHMOD_EXEC, 0o100755, 0o100644, path),
            path,
            old_path: b"",
        };
        let json = serde_json::to_string(&file_event(&clock, &v, None)).expect("json");
        assert_eq!(
            json,
            concat!(
                r#"{"time":"2026-11-27T00:00:01.500000123Z","boot_ns":1500000123,"#,
                r#""type":"file_created","process":{"pid":10,"tid":11,"ppid":1,"uid":1000,"#,
                r#""gid":1001,"euid":0,"egid":0,"cap_effective":"0x1ffffffffff","comm":"touch","#,
                r#""cgroup_id":77,"mntns":4026531841,"host":true,"start_boot_ns":5},"#,
                r#""operation":"chmod_exec","path":"/tmp/x","mode":"100755","old_mode":"100644"}"#
            )
        );
    }
}
