//! The ABI between jobwatch's eBPF programs and its userspace.
//!
//! Every record that crosses the ring buffer starts with a [`RecordHeader`] and is `#[repr(C)]`
//! with fixed-width integers and explicit padding; no `bool`, enum, `Option` or pointer. Record
//! kinds have explicit numbers that are never reused. Layouts are pinned by the `const`
//! assertions at the bottom of this file, so a change that moves a field fails to compile.
//!
//! A record has a fixed part followed by a variable tail. The fixed part says how many bytes of
//! each string the tail holds, in order; the header's `size` is the whole record's size.
#![no_std]

use core::mem::size_of;

/// Record kinds. Numbers are part of the ABI: never reuse one.
pub mod kind {
    pub const EXEC: u16 = 1;
    pub const EXIT: u16 = 2;
    pub const FILE: u16 = 3;
}

/// Longest command name the kernel keeps (`TASK_COMM_LEN`).
pub const COMM_LEN: usize = 16;
/// Most bytes of the filename passed to exec that a record carries.
pub const FILENAME_MAX: usize = 256;
/// Most bytes of one absolute path (binary, cwd, created file) that a record carries.
pub const PATH_MAX: usize = 1024;
/// Hard ceiling of argv bytes per exec record; the configured limit is at most this.
pub const ARGS_MAX: usize = 4096;
/// Bytes of a path used as the key of the in-kernel path prefix filter.
pub const PATH_FILTER_KEY_LEN: usize = 128;
/// Size of the per-CPU scratch area in which the eBPF programs assemble one record.
pub const SCRATCH_LEN: usize = 16384;
/// Half of the scratch area: every variable write starts below it, so that a write of at most
/// `SCRATCH_LEN / 2` bytes always fits (the verifier can prove it with a mask).
pub const SCRATCH_HALF: usize = SCRATCH_LEN / 2;

/// Header of every ring buffer record.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RecordHeader {
    /// One of [`kind`].
    pub kind: u16,
    pub _pad: u16,
    /// Size of the whole record in bytes, header and tail included.
    pub size: u32,
    /// `bpf_ktime_get_boot_ns()` when the event happened.
    pub ktime_ns: u64,
}

/// Who did it: the identity of the task, shared by exec and file records.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProcessIdentity {
    /// Thread id.
    pub pid: u32,
    /// Process id (thread group id).
    pub tgid: u32,
    /// Process id of the real parent.
    pub ppid: u32,
    pub uid: u32,
    pub gid: u32,
    pub euid: u32,
    pub egid: u32,
    /// Audit login uid; `u32::MAX` when unset.
    pub loginuid: u32,
    /// Effective capability set.
    pub cap_effective: u64,
    /// cgroup v2 id (inode of the task's directory in the unified hierarchy).
    pub cgroup_id: u64,
    /// kernfs id of the task's cgroup in the v1 hierarchy chosen by userspace; 0 when none.
    pub cgroup_v1_id: u64,
    /// Inode number of the task's mount namespace.
    pub mntns: u32,
    pub _pad: u32,
    /// Start time of the thread group leader, ns since boot (`task->start_boottime`).
    pub start_time_ns: u64,
    pub comm: [u8; COMM_LEN],
}

/// Bits of [`ExecRecord::flags`].
pub mod exec_flag {
    /// The executed file has no link left (deleted, or never linked: memfd, O_TMPFILE).
    pub const DELETED: u32 = 1 << 0;
    /// The executed file is a memfd.
    pub const MEMFD: u32 = 1 << 1;
    /// The executed file lives in an overlayfs upper (writable) layer.
    pub const UPPER_LAYER: u32 = 1 << 2;
    /// argv was longer than the configured limit.
    pub const ARGS_TRUNCATED: u32 = 1 << 3;
    pub const FILENAME_TRUNCATED: u32 = 1 << 4;
    pub const BINARY_TRUNCATED: u32 = 1 << 5;
    pub const CWD_TRUNCATED: u32 = 1 << 6;
    /// The process is in the host's mount namespace (not a container).
    pub const HOST: u32 = 1 << 7;
    /// Some kernel memory could not be read; strings may be empty.
    pub const READ_ERROR: u32 = 1 << 8;
}

/// A successful exec. Tail: filename, binary path, cwd, argv (each argument NUL-terminated).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExecRecord {
    pub header: RecordHeader,
    pub process: ProcessIdentity,
    /// Bits of [`exec_flag`].
    pub flags: u32,
    pub _pad: u32,
    pub filename_len: u16,
    pub binary_len: u16,
    pub cwd_len: u16,
    pub args_len: u16,
}

/// A process (thread group) ended.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExitRecord {
    pub header: RecordHeader,
    pub pid: u32,
    pub tgid: u32,
    /// `task->exit_code`: exit status in bits 8..16, terminating signal in bits 0..7.
    pub exit_code: u32,
    pub _pad: u32,
    pub start_time_ns: u64,
}

/// What a [`FileRecord`] reports.
pub mod file_op {
    /// open/creat that really created the file (`FMODE_CREATED`).
    pub const CREATE: u16 = 1;
    pub const MKNOD: u16 = 2;
    /// A hard link; the tail's second path is the existing file.
    pub const LINK: u16 = 3;
    /// A symlink; the tail's second path is the link's target as given.
    pub const SYMLINK: u16 = 4;
    /// A rename; the tail's second path is the old name.
    pub const RENAME: u16 = 5;
    /// chmod/fchmod/fchmodat that set an execute bit. fchmod reports only when the bit is
    /// new (`old_mode` has the mode before); path-based chmod cannot see the old mode.
    pub const CHMOD_EXEC: u16 = 6;
}

/// Bits of [`FileRecord::flags`].
pub mod file_flag {
    pub const PATH_TRUNCATED: u16 = 1 << 0;
    pub const OLD_PATH_TRUNCATED: u16 = 1 << 1;
    /// A rename that replaced an existing file.
    pub const REPLACED: u16 = 1 << 2;
    pub const HOST: u16 = 1 << 3;
    pub const READ_ERROR: u16 = 1 << 4;
    /// `old_mode` is known (fchmod); path-based chmod cannot see the mode before the change
    /// from a syscall tracepoint.
    pub const OLD_MODE_KNOWN: u16 = 1 << 5;
}

/// A file-system object was created (or made executable). Tail: path, then the second path.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FileRecord {
    pub header: RecordHeader,
    pub process: ProcessIdentity,
    /// One of [`file_op`].
    pub op: u16,
    /// Bits of [`file_flag`].
    pub flags: u16,
    /// Mode of the new object (type and permission bits).
    pub mode: u32,
    /// For CHMOD_EXEC: the mode before the change.
    pub old_mode: u32,
    pub path_len: u16,
    pub old_path_len: u16,
}

/// Indices of the per-CPU counters array the eBPF programs keep (`COUNTERS`).
pub mod counter {
    /// Records lost because the ring buffer was full, by kind.
    pub const LOST_RINGBUF_EXEC: u32 = 0;
    pub const LOST_RINGBUF_EXIT: u32 = 1;
    pub const LOST_RINGBUF_FILE: u32 = 2;
    /// Records lost because the per-CPU scratch area was unavailable.
    pub const LOST_NO_SCRATCH: u32 = 3;
    /// Records sent with a read error flag.
    pub const READ_ERRORS: u32 = 4;
    /// Events dropped in the kernel on purpose by the filters.
    pub const FILTERED_HOST: u32 = 5;
    pub const FILTERED_PATH: u32 = 6;
    /// Records emitted, by kind.
    pub const EMITTED_EXEC: u32 = 7;
    pub const EMITTED_EXIT: u32 = 8;
    pub const EMITTED_FILE: u32 = 9;
    /// vfs_* success seen without the matching security_path_* call (internal kernel callers).
    pub const FILE_UNPAIRED: u32 = 10;
    /// Bytes waiting in the ring buffer when this CPU last submitted a record (a gauge:
    /// userspace takes the largest over CPUs, not the sum).
    pub const RINGBUF_USED_BYTES: u32 = 11;
    /// Number of counters.
    pub const COUNT: u32 = 12;

    /// Counter names, by index, as userspace exports them.
    pub const NAMES: [&str; COUNT as usize] = [
        "lost_ringbuf_full_exec",
        "lost_ringbuf_full_exit",
        "lost_ringbuf_full_file",
        "lost_no_scratch",
        "read_errors",
        "filtered_host",
        "filtered_path",
        "emitted_exec",
        "emitted_exit",
        "emitted_file",
        "file_unpaired",
        "ringbuf_used_bytes",
    ];
}

/// Runtime filter settings, one entry of the `FILTER` array map. Userspace may rewrite it at
/// any time.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct FilterConfig {
    /// 1: report processes in the host's mount namespace; 0: only containers.
    pub report_host: u32,
    /// 1: the `PATH_FILTER` trie holds entries and must be consulted for file events.
    pub path_filter_active: u32,
    /// What to do with a file event whose path matches no entry: one of [`path_action`].
    pub path_default: u32,
    pub _pad: u32,
}

/// Values of the `PATH_FILTER` trie and of [`FilterConfig::path_default`].
pub mod path_action {
    pub const REPORT: u32 = 1;
    pub const IGNORE: u32 = 2;
}

/// Key of the `PATH_FILTER` longest-prefix-match trie.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PathFilterKey {
    /// Prefix length in bits.
    pub prefix_len: u32,
    pub path: [u8; PATH_FILTER_KEY_LEN],
}

/// Kernel structure offsets, resolved by userspace from the running kernel's BTF and written
/// into the eBPF object's read-only data before it is loaded. All offsets are in bytes.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct KernelOffsets {
    pub task_pid: u32,
    pub task_tgid: u32,
    pub task_real_parent: u32,
    pub task_group_leader: u32,
    pub task_cred: u32,
    pub task_loginuid: u32,
    pub task_nsproxy: u32,
    pub task_fs: u32,
    pub task_mm: u32,
    pub task_cgroups: u32,
    pub task_signal: u32,
    pub task_exit_code: u32,
    pub task_start_time: u32,
    pub cred_uid: u32,
    pub cred_gid: u32,
    pub cred_euid: u32,
    pub cred_egid: u32,
    pub cred_cap_effective: u32,
    pub nsproxy_mnt_ns: u32,
    pub mnt_ns_inum: u32,
    pub fs_pwd: u32,
    pub fs_root: u32,
    pub task_files: u32,
    pub files_fdt: u32,
    pub fdtable_fd: u32,
    pub fdtable_max_fds: u32,
    pub path_mnt: u32,
    pub path_dentry: u32,
    pub dentry_parent: u32,
    pub dentry_name_ptr: u32,
    pub dentry_name_len: u32,
    pub dentry_inode: u32,
    pub inode_mode: u32,
    pub inode_nlink: u32,
    pub inode_sb: u32,
    pub sb_magic: u32,
    pub vfsmount_root: u32,
    pub mount_mnt: u32,
    pub mount_parent: u32,
    pub mount_mountpoint: u32,
    pub mm_arg_start: u32,
    pub mm_arg_end: u32,
    pub bprm_file: u32,
    pub bprm_filename: u32,
    pub file_path: u32,
    pub file_mode: u32,
    pub signal_live: u32,
    pub css_set_subsys: u32,
    pub css_cgroup: u32,
    pub cgroup_kn: u32,
    pub kernfs_id: u32,
    pub ovl_vfs_inode: u32,
    pub ovl_upperdentry: u32,
    /// The dentry's inline name (`d_shortname` since 6.13, `d_iname` before); 0 if unknown.
    pub dentry_inline_name: u32,
    /// Index of the v1 hierarchy's subsystem in `css_set.subsys`; `u32::MAX` for none.
    pub cgroup_v1_subsys: u32,
}

/// Settings fixed at load time, written into the eBPF object's read-only data with the offsets.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct LoadConfig {
    pub offsets: KernelOffsets,
    /// Mount namespace inode of the host (PID 1); processes in it are host processes.
    pub host_mntns: u32,
    /// Most argv bytes per exec record (at most [`ARGS_MAX`]).
    pub args_max: u32,
    /// Keeps `wakeup_bytes` aligned without implicit padding (the struct is copied as bytes).
    pub _pad: u32,
    /// Records are submitted without waking userspace while fewer than this many bytes wait in
    /// the ring buffer; 0 wakes on every record. Userspace polls on a timer as well.
    pub wakeup_bytes: u64,
}

/// Bits of `file->f_mode` the programs test (include/linux/fs.h).
pub const FMODE_CREATED: u32 = 1 << 20;
/// Magic number of overlayfs super blocks.
pub const OVERLAYFS_SUPER_MAGIC: u64 = 0x794c_7630;

/// Size of the pinned records.
pub const RECORD_HEADER_SIZE: usize = 16;
pub const PROCESS_IDENTITY_SIZE: usize = 88;
pub const EXEC_RECORD_SIZE: usize = 120;
pub const EXIT_RECORD_SIZE: usize = 40;
pub const FILE_RECORD_SIZE: usize = 120;

const _: () = assert!(size_of::<RecordHeader>() == RECORD_HEADER_SIZE);
const _: () = assert!(size_of::<ProcessIdentity>() == PROCESS_IDENTITY_SIZE);
const _: () = assert!(size_of::<ExecRecord>() == EXEC_RECORD_SIZE);
const _: () = assert!(size_of::<ExitRecord>() == EXIT_RECORD_SIZE);
const _: () = assert!(size_of::<FileRecord>() == FILE_RECORD_SIZE);
const _: () = assert!(size_of::<FilterConfig>() == 16);
const _: () = assert!(size_of::<PathFilterKey>() == 4 + PATH_FILTER_KEY_LEN);
const _: () = assert!(size_of::<KernelOffsets>() == 55 * 4);
const _: () = assert!(size_of::<LoadConfig>() == 55 * 4 + 20);
// Every variable part fits behind the fixed part within the scratch area.
const _: () =
    assert!(EXEC_RECORD_SIZE + FILENAME_MAX + 2 * PATH_MAX + ARGS_MAX <= SCRATCH_HALF + ARGS_MAX);
const _: () = assert!(FILE_RECORD_SIZE + 2 * PATH_MAX <= SCRATCH_HALF);

#[cfg(feature = "user")]
mod pod {
    use super::*;
    // SAFETY: all of these are repr(C), made of integers and arrays of integers, with explicit
    // padding, so every bit pattern is valid and there are no hidden padding bytes.
    unsafe impl aya::Pod for FilterConfig {}
    unsafe impl aya::Pod for PathFilterKey {}
    unsafe impl aya::Pod for KernelOffsets {}
    unsafe impl aya::Pod for LoadConfig {}
}
