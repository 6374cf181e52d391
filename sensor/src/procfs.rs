//! Seeding the process table from `/proc` at start, so that processes that predate the sensor
//! have a parent, a binary and a cgroup.
//!
//! Only thread-group leaders are read: `/proc` lists one numeric directory per thread group
//! (threads are reachable as `/proc/<tid>` but not listed, and `/proc/<pid>/task` is not walked).
//! Processes come and go while `/proc` is read: a process that vanishes is skipped silently, any
//! other per-process problem is skipped and counted.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs;
use std::io::{self, Read};
use std::os::unix::fs::MetadataExt;
use std::path::{Component, Path, PathBuf};

use crate::process_table::{ProcessInfo, ProcessSource};

/// `CLK_TCK` when `sysconf` cannot tell (`USER_HZ` is 100 on every Linux architecture).
const DEFAULT_CLOCK_TICKS_PER_SECOND: u64 = 100;

/// Where the unified (v2) cgroup hierarchy is mounted on a pure cgroup v2 host.
const DEFAULT_UNIFIED_CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// At most this much of `/proc/<pid>/cmdline` is read; longer command lines are truncated.
const MAX_CMDLINE_BYTES: u64 = 64 * 1024;

/// An error while reading `/proc`.
#[derive(Debug, thiserror::Error)]
pub enum ProcfsError {
    /// The process directory itself (normally `/proc`) could not be listed.
    #[error("cannot list processes in {}: {source}", .path.display())]
    ListProcesses {
        /// The directory that was listed.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file of a process could not be read.
    #[error("cannot read {}: {source}", .path.display())]
    Read {
        /// The file that was read.
        path: PathBuf,
        /// The underlying error.
        source: io::Error,
    },
    /// A file of a process did not have the expected format.
    #[error("malformed {}: {reason}", .path.display())]
    Malformed {
        /// The file that was parsed.
        path: PathBuf,
        /// What was wrong with it.
        reason: String,
    },
}

/// The outcome of [`scan_processes`].
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ScanResult {
    /// The processes read, sorted by tgid, all with [`ProcessSource::Procfs`].
    pub processes: Vec<ProcessInfo>,
    /// How many processes were skipped because of an error other than their exit (which is
    /// skipped silently).
    pub skipped: usize,
}

/// Reads every process (`/proc/<pid>` directory with a numeric name) under `proc_root`
/// (normally `/proc`), resolving cgroup ids under `unified_cgroup_root` (see
/// [`unified_cgroup_root`]).
///
/// Processes that vanish while being read are skipped silently; other per-process errors are
/// logged at debug level, skipped and counted in [`ScanResult::skipped`]. Fails only when
/// `proc_root` cannot be listed.
///
/// To miss no process, attach the exec/exit probes before scanning and apply the buffered
/// events after the scan's results.
pub fn scan_processes(
    proc_root: &Path,
    unified_cgroup_root: &Path,
) -> Result<ScanResult, ProcfsError> {
    let entries = fs::read_dir(proc_root).map_err(|source| ProcfsError::ListProcesses {
        path: proc_root.to_path_buf(),
        source,
    })?;
    let mut reader = Reader::new(unified_cgroup_root);
    let mut result = ScanResult::default();
    for entry in entries {
        let entry = match entry {
            Ok(entry) => entry,
            Err(error) => {
                tracing::debug!(
                    path = %proc_root.display(),
                    %error,
                    "skipping unreadable /proc entry"
                );
                result.skipped += 1;
                continue;
            }
        };
        let Some(tgid) = parse_pid(&entry.file_name()) else {
            continue;
        };
        match reader.read(&entry.path(), tgid) {
            Ok(Some(info)) => result.processes.push(info),
            Ok(None) => tracing::trace!(tgid, "process exited while being read"),
            Err(error) => {
                tracing::debug!(tgid, %error, "skipping process");
                result.skipped += 1;
            }
        }
    }
    result.processes.sort_unstable_by_key(|info| info.tgid);
    Ok(result)
}

/// Reads one process, `<proc_root>/<tgid>`, as [`scan_processes`] does (for instance to look up
/// a parent that no event named). Returns `Ok(None)` when the process does not exist (any more).
pub fn read_process(
    proc_root: &Path,
    tgid: u32,
    unified_cgroup_root: &Path,
) -> Result<Option<ProcessInfo>, ProcfsError> {
    Reader::new(unified_cgroup_root).read(&proc_root.join(tgid.to_string()), tgid)
}

/// The number of clock ticks per second that `/proc` times are expressed in (`CLK_TCK`), 100
/// when it cannot be determined.
pub fn clock_ticks_per_second() -> u64 {
    // SAFETY: sysconf takes no pointer and has no precondition; it only reads a configuration
    // value and returns -1 on failure.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    u64::try_from(ticks)
        .ok()
        .filter(|&ticks| ticks > 0)
        .unwrap_or(DEFAULT_CLOCK_TICKS_PER_SECOND)
}

/// The mount namespace (inode number) of the process whose `/proc` directory is `pid_dir`, read
/// from the `ns/mnt` link (`mnt:[4026531841]`). `None` when it cannot be read.
pub fn mntns_of(pid_dir: &Path) -> Option<u32> {
    let target = fs::read_link(pid_dir.join("ns").join("mnt")).ok()?;
    parse_ns_link(target.to_str()?, "mnt")
}

/// The mount namespace of the host, that is of init (`/proc/1`). `None` when it cannot be read
/// (not root, or `/proc` from another pid namespace).
pub fn host_mntns() -> Option<u32> {
    mntns_of(Path::new("/proc/1"))
}

/// The cgroup v2 path in the contents of a `/proc/<pid>/cgroup` file: the path of its `0::/...`
/// line. `None` when there is no such line (cgroup v1 only).
pub fn cgroup_v2_path(proc_pid_cgroup_contents: &str) -> Option<&str> {
    proc_pid_cgroup_contents.lines().find_map(|line| {
        let mut fields = line.splitn(3, ':');
        match (fields.next(), fields.next(), fields.next()) {
            (Some("0"), Some(""), Some(path)) => Some(path),
            _ => None,
        }
    })
}

/// Where the unified (v2) cgroup hierarchy is mounted: the first `cgroup2` mount in
/// `/proc/self/mountinfo` (preferring one of the hierarchy's root), `/sys/fs/cgroup` when there
/// is none or mountinfo cannot be read. On a hybrid host that is `/sys/fs/cgroup/unified`.
pub fn unified_cgroup_root() -> PathBuf {
    fs::read_to_string("/proc/self/mountinfo")
        .ok()
        .and_then(|mountinfo| cgroup2_mount_point(&mountinfo))
        .unwrap_or_else(|| PathBuf::from(DEFAULT_UNIFIED_CGROUP_ROOT))
}

/// The mount point of the cgroup2 file system in a mountinfo file, preferring a mount of the
/// hierarchy's root over a bind mount of a sub-tree.
fn cgroup2_mount_point(mountinfo: &str) -> Option<PathBuf> {
    let mut fallback = None;
    for line in mountinfo.lines() {
        // "36 35 98:0 /root /mnt opts [optional fields] - fstype source super-opts"
        let Some((mount, fs)) = line.split_once(" - ") else {
            continue;
        };
        if fs.split_ascii_whitespace().next() != Some("cgroup2") {
            continue;
        }
        let mut fields = mount.split_ascii_whitespace();
        let (Some(root), Some(mount_point)) = (fields.nth(3), fields.next()) else {
            continue;
        };
        let mount_point = PathBuf::from(unescape_mountinfo(mount_point));
        if root == "/" {
            return Some(mount_point);
        }
        fallback.get_or_insert(mount_point);
    }
    fallback
}

/// Undoes mountinfo's octal escapes (`\040` for a space, `\011`, `\012`, `\134`).
fn unescape_mountinfo(field: &str) -> String {
    let mut out = Vec::with_capacity(field.len());
    let mut rest = field.as_bytes();
    loop {
        match rest {
            [
                b'\\',
                a @ b'0'..=b'3',
                b @ b'0'..=b'7',
                c @ b'0'..=b'7',
                tail @ ..,
            ] => {
                out.push(((a - b'0') << 6) | ((b - b'0') << 3) | (c - b'0'));
                rest = tail;
            }
            [byte, tail @ ..] => {
                out.push(*byte);
                rest = tail;
            }
            [] => break,
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Parses a namespace link target such as `mnt:[4026531841]`.
fn parse_ns_link(target: &str, kind: &str) -> Option<u32> {
    target
        .strip_prefix(kind)?
        .strip_prefix(":[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// A `/proc` directory name that is a pid: decimal digits only.
fn parse_pid(name: &OsStr) -> Option<u32> {
    let name = name.to_str()?;
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    name.parse().ok()
}

/// Converts `/proc` clock ticks to nanoseconds.
fn ticks_to_ns(ticks: u64, ticks_per_second: u64) -> u64 {
    let ns = u128::from(ticks) * 1_000_000_000 / u128::from(ticks_per_second.max(1));
    u64::try_from(ns).unwrap_or(u64::MAX)
}

/// The fields of `/proc/<pid>/stat` the sensor uses.
#[derive(Debug, PartialEq, Eq)]
struct Stat<'a> {
    comm: &'a str,
    ppid: u32,
    start_ticks: u64,
}

/// Parses `/proc/<pid>/stat`: `pid (comm) state ppid ... starttime ...`. The comm may contain
/// spaces and parentheses, so the fields are counted from the last `)`.
fn parse_stat(text: &str) -> Result<Stat<'_>, String> {
    let open = text.find('(').ok_or("no '(' before the command name")?;
    let close = text.rfind(')').ok_or("no ')' after the command name")?;
    if close < open {
        return Err("')' before '('".to_string());
    }
    let comm = text.get(open + 1..close).unwrap_or_default();
    // Field 3 (state) is the first after the comm; ppid is field 4, starttime field 22.
    let mut fields = text
        .get(close + 1..)
        .unwrap_or_default()
        .split_ascii_whitespace();
    let ppid = fields
        .nth(1)
        .ok_or("no ppid field")?
        .parse()
        .map_err(|e| format!("bad ppid: {e}"))?;
    let start_ticks = fields
        .nth(17)
        .ok_or("no starttime field")?
        .parse()
        .map_err(|e| format!("bad starttime: {e}"))?;
    Ok(Stat {
        comm,
        ppid,
        start_ticks,
    })
}

/// The real uid from the `Uid:` line of `/proc/<pid>/status` (real, effective, saved, fs).
fn parse_status_uid(text: &str) -> Option<u32> {
    text.lines()
        .find_map(|line| line.strip_prefix("Uid:"))?
        .split_ascii_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Splits a NUL-separated `/proc/<pid>/cmdline` into arguments (empty for kernel threads and
/// zombies).
fn parse_cmdline(bytes: &[u8]) -> Vec<String> {
    if bytes.is_empty() {
        return Vec::new();
    }
    let bytes = bytes.strip_suffix(b"\0").unwrap_or(bytes);
    bytes
        .split(|&b| b == 0)
        .map(|arg| String::from_utf8_lossy(arg).into_owned())
        .collect()
}

/// The inode number (= cgroup id) of cgroup `path` under the unified hierarchy at `root`, 0 when
/// unknown. Paths that leave the root (`/../..`, seen from inside a cgroup namespace) are unknown.
fn cgroup_id_at(root: &Path, path: &str) -> u64 {
    let relative = Path::new(path.trim_start_matches('/'));
    if relative
        .components()
        .any(|c| !matches!(c, Component::Normal(_) | Component::CurDir))
    {
        return 0;
    }
    fs::metadata(root.join(relative)).map_or(0, |metadata| metadata.ino())
}

/// Why a process could not be read.
enum Failure {
    /// It exited (or its pid was reused) while being read: skip it silently.
    Gone,
    /// Anything else.
    Error(ProcfsError),
}

impl Failure {
    fn io(path: PathBuf, source: io::Error) -> Self {
        // A reaped process' directory disappears (ENOENT); files already open fail with ESRCH.
        if source.kind() == io::ErrorKind::NotFound || source.raw_os_error() == Some(libc::ESRCH) {
            Failure::Gone
        } else {
            Failure::Error(ProcfsError::Read { path, source })
        }
    }

    fn malformed(path: PathBuf, reason: impl Into<String>) -> Self {
        Failure::Error(ProcfsError::Malformed {
            path,
            reason: reason.into(),
        })
    }
}

/// Reads processes, caching the cgroup ids of the paths already seen.
struct Reader<'a> {
    unified_cgroup_root: &'a Path,
    ticks_per_second: u64,
    cgroup_ids: HashMap<String, u64>,
}

impl<'a> Reader<'a> {
    fn new(unified_cgroup_root: &'a Path) -> Self {
        Self {
            unified_cgroup_root,
            ticks_per_second: clock_ticks_per_second(),
            cgroup_ids: HashMap::new(),
        }
    }

    /// Reads the process at `pid_dir`; `Ok(None)` when it is gone.
    fn read(&mut self, pid_dir: &Path, tgid: u32) -> Result<Option<ProcessInfo>, ProcfsError> {
        match self.read_fields(pid_dir, tgid) {
            Ok(info) => Ok(Some(info)),
            Err(Failure::Gone) => Ok(None),
            Err(Failure::Error(error)) => Err(error),
        }
    }

    fn read_fields(&mut self, pid_dir: &Path, tgid: u32) -> Result<ProcessInfo, Failure> {
        let stat_path = pid_dir.join("stat");
        let stat_text = read_text(&stat_path)?;
        let stat =
            parse_stat(&stat_text).map_err(|reason| Failure::malformed(stat_path, reason))?;

        let status_path = pid_dir.join("status");
        let uid = parse_status_uid(&read_text(&status_path)?)
            .ok_or_else(|| Failure::malformed(status_path, "no valid Uid line"))?;

        // The comm file says the same as stat; keep stat's when it cannot be read.
        let comm = match read_text(&pid_dir.join("comm")) {
            Ok(comm) => comm.strip_suffix('\n').unwrap_or(&comm).to_string(),
            Err(Failure::Gone) => return Err(Failure::Gone),
            Err(Failure::Error(_)) => stat.comm.to_string(),
        };
        let args = match read_cmdline(&pid_dir.join("cmdline")) {
            Ok(bytes) => parse_cmdline(&bytes),
            Err(Failure::Gone) => return Err(Failure::Gone),
            Err(Failure::Error(_)) => Vec::new(),
        };
        // Kernel threads have no exe, zombies neither exe nor cwd: these are simply unknown.
        let binary = read_link_text(&pid_dir.join("exe"));
        let cwd = read_link_text(&pid_dir.join("cwd"));
        let cgroup_id = match fs::read_to_string(pid_dir.join("cgroup")) {
            Ok(contents) => cgroup_v2_path(&contents).map_or(0, |path| self.cgroup_id(path)),
            Err(_) => 0,
        };
        let mntns = mntns_of(pid_dir).unwrap_or(0);

        // If the pid was reused while the files above were read, they may describe two
        // different processes: re-check the start time.
        let stat_again = read_text(&pid_dir.join("stat"))?;
        if parse_stat(&stat_again).map(|s| s.start_ticks) != Ok(stat.start_ticks) {
            return Err(Failure::Gone);
        }

        Ok(ProcessInfo {
            tgid,
            ppid: stat.ppid,
            start_time_ns: ticks_to_ns(stat.start_ticks, self.ticks_per_second),
            uid,
            comm,
            binary,
            args: args.into(),
            cwd,
            cgroup_id,
            mntns,
            source: ProcessSource::Procfs,
        })
    }

    fn cgroup_id(&mut self, path: &str) -> u64 {
        if let Some(&id) = self.cgroup_ids.get(path) {
            return id;
        }
        let id = cgroup_id_at(self.unified_cgroup_root, path);
        self.cgroup_ids.insert(path.to_string(), id);
        id
    }
}

/// Reads a small text file (non-UTF-8 bytes are replaced).
fn read_text(path: &Path) -> Result<String, Failure> {
    match fs::read(path) {
        Ok(bytes) => Ok(String::from_utf8_lossy(&bytes).into_owned()),
        Err(source) => Err(Failure::io(path.to_path_buf(), source)),
    }
}

/// Reads at most [`MAX_CMDLINE_BYTES`] of a cmdline file.
fn read_cmdline(path: &Path) -> Result<Vec<u8>, Failure> {
    let mut bytes = Vec::new();
    fs::File::open(path)
        .and_then(|file| file.take(MAX_CMDLINE_BYTES).read_to_end(&mut bytes))
        .map_err(|source| Failure::io(path.to_path_buf(), source))?;
    Ok(bytes)
}

/// The target of a symbolic link as the kernel reports it, "" when it cannot be read.
fn read_link_text(path: &Path) -> String {
    fs::read_link(path)
        .map(|target| target.to_string_lossy().into_owned())
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A directory under the system temp dir, removed when dropped (even if a test fails).
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> Self {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let nanos = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos());
            let dir = std::env::temp_dir().join(format!(
                "jobwatch-procfs-{name}-{}-{nanos}-{}",
                std::process::id(),
                COUNTER.fetch_add(1, Ordering::Relaxed)
            ));
            fs::create_dir_all(&dir).unwrap();
            TempDir(dir)
        }

        fn path(&self) -> &Path {
            &self.0
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn write(path: &Path, contents: impl AsRef<[u8]>) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        fs::write(path, contents).unwrap();
    }

    fn link(path: &Path, target: &str) {
        fs::create_dir_all(path.parent().unwrap()).unwrap();
        symlink(target, path).unwrap();
    }

    /// A realistic stat line: 17 fields between ppid and starttime.
    fn stat_line(pid: u32, comm: &str, ppid: u32, start_ticks: u64) -> String {
        format!(
            "{pid} ({comm}) S {ppid} {pid} {pid} 0 -1 4194560 1041 0 0 0 3 7 0 0 20 0 1 0 \
             {start_ticks} 23068672 2800 18446744073709551615 1 1 0 0 0 0 0 4096 0 0 0 0 17 3 0 \
             0 0 0 0\n"
        )
    }

    fn status_text(name: &str, uids: &str) -> String {
        format!(
            "Name:\t{name}\nUmask:\t0022\nState:\tS (sleeping)\nTgid:\t1\nPid:\t1\nPPid:\t0\n\
             Uid:\t{uids}\nGid:\t0\t0\t0\t0\n"
        )
    }

    struct FakeProcess<'a> {
        pid: u32,
        ppid: u32,
        comm: &'a str,
        start_ticks: u64,
        uid: u32,
        cmdline: &'a [u8],
        exe: Option<&'a str>,
        cwd: Option<&'a str>,
        cgroup: &'a str,
        mntns: u32,
    }

    fn add_process(proc_root: &Path, p: &FakeProcess<'_>) {
        let dir = proc_root.join(p.pid.to_string());
        write(
            &dir.join("stat"),
            stat_line(p.pid, p.comm, p.ppid, p.start_ticks),
        );
        write(
            &dir.join("status"),
            status_text(p.comm, &format!("{0}\t{0}\t{0}\t{0}", p.uid)),
        );
        write(&dir.join("comm"), format!("{}\n", p.comm));
        write(&dir.join("cmdline"), p.cmdline);
        if let Some(exe) = p.exe {
            link(&dir.join("exe"), exe);
        }
        if let Some(cwd) = p.cwd {
            link(&dir.join("cwd"), cwd);
        }
        write(&dir.join("cgroup"), p.cgroup);
        link(&dir.join("ns").join("mnt"), &format!("mnt:[{}]", p.mntns));
        // Threads live under task/ and must never be listed as processes.
        write(
            &dir.join("task")
                .join((p.pid + 100_000).to_string())
                .join("stat"),
            stat_line(p.pid + 100_000, p.comm, p.ppid, p.start_ticks),
        );
    }

    #[test]
    fn scans_a_fake_proc_tree() {
        let tmp = TempDir::new("fake");
        let proc_root = tmp.path().join("proc");
        let cgroup_root = tmp.path().join("cgroup");
        let container_cgroup = cgroup_root.join("kubepods.slice/pod-1/cri-containerd-abc.scope");
        fs::create_dir_all(&container_cgroup).unwrap();
        let container_cgroup_id = fs::metadata(&container_cgroup).unwrap().ino();
        let root_cgroup_id = fs::metadata(&cgroup_root).unwrap().ino();
        let ticks = clock_ticks_per_second();

        add_process(
            &proc_root,
            &FakeProcess {
                pid: 1,
                ppid: 0,
                comm: "systemd",
                start_ticks: 1,
                uid: 0,
                cmdline: b"/sbin/init\0splash\0",
                exe: Some("/usr/lib/systemd/systemd"),
                cwd: Some("/"),
                cgroup: "0::/init.scope\n",
                mntns: 4026531841,
            },
        );
        // A comm with spaces and parentheses, in a container cgroup on a hybrid host, running
        // a deleted binary, with an empty argument.
        add_process(
            &proc_root,
            &FakeProcess {
                pid: 4242,
                ppid: 1,
                comm: "evil ) (x y",
                start_ticks: 123_456,
                uid: 1000,
                cmdline: b"python3\0-c\0print(1)\0\0",
                exe: Some("/usr/bin/python3.12 (deleted)"),
                cwd: Some("/home/a user"),
                cgroup: "12:pids:/kubepods\n1:name=systemd:/kubepods\n\
                         0::/kubepods.slice/pod-1/cri-containerd-abc.scope\n",
                mntns: 4026532100,
            },
        );
        // A kernel thread: empty cmdline, no exe.
        add_process(
            &proc_root,
            &FakeProcess {
                pid: 2,
                ppid: 0,
                comm: "kthreadd",
                start_ticks: 1,
                uid: 0,
                cmdline: b"",
                exe: None,
                cwd: Some("/"),
                cgroup: "0::/\n",
                mntns: 4026531841,
            },
        );
        // A process seen from inside a cgroup namespace, and one on a cgroup v1 only host with
        // no cwd: unknown cgroup, unknown cwd.
        add_process(
            &proc_root,
            &FakeProcess {
                pid: 600,
                ppid: 1,
                comm: "outsider",
                start_ticks: 50,
                uid: 0,
                cmdline: b"outsider\0",
                exe: Some("/bin/outsider"),
                cwd: Some("/"),
                cgroup: "0::/../../system.slice\n",
                mntns: 4026531841,
            },
        );
        add_process(
            &proc_root,
            &FakeProcess {
                pid: 601,
                ppid: 1,
                comm: "v1only",
                start_ticks: 51,
                uid: 0,
                cmdline: b"v1only\0",
                exe: Some("/bin/v1only"),
                cwd: None,
                cgroup: "4:memory:/foo\n1:name=systemd:/foo\n",
                mntns: 4026531841,
            },
        );
        // Vanished while being read: the directory is still there, its files are gone.
        fs::create_dir_all(proc_root.join("999")).unwrap();
        // Broken processes, skipped and counted.
        write(
            &proc_root.join("555").join("stat"),
            "555 garbage without parens\n",
        );
        write(
            &proc_root.join("556").join("stat"),
            stat_line(556, "nouid", 1, 10),
        );
        write(&proc_root.join("556").join("status"), "Name:\tnouid\n");
        // Not processes.
        for name in ["self", "sys", "net", "123abc", "+12", "-1"] {
            fs::create_dir_all(proc_root.join(name)).unwrap();
        }
        write(&proc_root.join("uptime"), "1.0 1.0\n");

        let result = scan_processes(&proc_root, &cgroup_root).unwrap();
        let tgids: Vec<u32> = result.processes.iter().map(|p| p.tgid).collect();
        assert_eq!(tgids, vec![1, 2, 600, 601, 4242], "sorted, leaders only");
        assert_eq!(result.skipped, 2, "555 and 556; 999 vanished silently");

        let find = |tgid: u32| result.processes.iter().find(|p| p.tgid == tgid).unwrap();

        let evil = find(4242);
        assert_eq!(
            evil,
            &ProcessInfo {
                tgid: 4242,
                ppid: 1,
                start_time_ns: 123_456 * 1_000_000_000 / ticks,
                uid: 1000,
                comm: "evil ) (x y".to_string(),
                binary: "/usr/bin/python3.12 (deleted)".to_string(),
                args: vec![
                    "python3".to_string(),
                    "-c".to_string(),
                    "print(1)".to_string(),
                    String::new()
                ]
                .into(),
                cwd: "/home/a user".to_string(),
                cgroup_id: container_cgroup_id,
                mntns: 4026532100,
                source: ProcessSource::Procfs,
            }
        );
        assert_ne!(evil.cgroup_id, 0);

        let kthreadd = find(2);
        assert_eq!(kthreadd.ppid, 0);
        assert_eq!(kthreadd.comm, "kthreadd");
        assert!(kthreadd.args.is_empty());
        assert_eq!(kthreadd.binary, "");
        assert_eq!(kthreadd.cgroup_id, root_cgroup_id);

        let init = find(1);
        assert_eq!(*init.args, ["/sbin/init", "splash"]);
        assert_eq!(
            init.cgroup_id, 0,
            "init.scope does not exist in the fake hierarchy"
        );

        assert_eq!(find(600).cgroup_id, 0, "path outside the hierarchy root");
        let v1only = find(601);
        assert_eq!(v1only.cgroup_id, 0);
        assert_eq!(v1only.cwd, "");

        // One process at a time.
        let one = read_process(&proc_root, 4242, &cgroup_root).unwrap();
        assert_eq!(one.as_ref(), Some(evil));
        assert_eq!(read_process(&proc_root, 999, &cgroup_root).unwrap(), None);
        assert_eq!(read_process(&proc_root, 31337, &cgroup_root).unwrap(), None);
        let error = read_process(&proc_root, 555, &cgroup_root).unwrap_err();
        assert!(error.to_string().contains("555/stat"), "{error}");
        assert!(matches!(error, ProcfsError::Malformed { .. }));
        let error = read_process(&proc_root, 556, &cgroup_root).unwrap_err();
        assert!(error.to_string().contains("556/status"), "{error}");

        assert_eq!(mntns_of(&proc_root.join("4242")), Some(4026532100));
        assert_eq!(mntns_of(&proc_root.join("999")), None);
    }

    #[test]
    fn missing_proc_root_is_an_error_naming_it() {
        let tmp = TempDir::new("missing");
        let missing = tmp.path().join("no-such-proc");
        let error = scan_processes(&missing, tmp.path()).unwrap_err();
        assert!(matches!(error, ProcfsError::ListProcesses { .. }));
        assert!(error.to_string().contains("no-such-proc"), "{error}");
    }

    #[test]
    fn stat_parsing() {
        let line = stat_line(7, "a) b (c) ", 3, 99);
        let stat = parse_stat(&line).unwrap();
        assert_eq!(
            stat,
            Stat {
                comm: "a) b (c) ",
                ppid: 3,
                start_ticks: 99
            }
        );
        let line = stat_line(7, "", 0, 0);
        let stat = parse_stat(&line).unwrap();
        assert_eq!(stat.comm, "");
        assert!(parse_stat("").is_err());
        assert!(parse_stat("1 (x").is_err());
        assert!(parse_stat("1 x) (").is_err());
        assert!(parse_stat("1 (x) S 0 1 2").is_err(), "truncated");
        assert!(parse_stat("1 (x) S abc").is_err());
    }

    #[test]
    fn status_cmdline_and_ns_parsing() {
        assert_eq!(
            parse_status_uid(&status_text("x", "1000\t0\t0\t0")),
            Some(1000)
        );
        assert_eq!(parse_status_uid("Name:\tx\n"), None);
        assert_eq!(parse_status_uid("Uid:\n"), None);

        assert!(parse_cmdline(b"").is_empty());
        assert_eq!(parse_cmdline(b"ls\0-l\0"), vec!["ls", "-l"]);
        assert_eq!(
            parse_cmdline(b"nginx: worker process"),
            vec!["nginx: worker process"]
        );

        assert_eq!(parse_ns_link("mnt:[4026531841]", "mnt"), Some(4026531841));
        assert_eq!(parse_ns_link("net:[4026531841]", "mnt"), None);
        assert_eq!(parse_ns_link("mnt:[99999999999]", "mnt"), None);
        assert_eq!(parse_ns_link("mnt:4026531841", "mnt"), None);

        assert_eq!(parse_pid(OsStr::new("123")), Some(123));
        for name in ["", "self", "12a", "+1", "-1", "99999999999"] {
            assert_eq!(parse_pid(OsStr::new(name)), None, "{name:?}");
        }

        assert_eq!(ticks_to_ns(250, 100), 2_500_000_000);
        assert_eq!(ticks_to_ns(u64::MAX, 1), u64::MAX);
        assert_eq!(ticks_to_ns(5, 0), 5_000_000_000);
        assert!(clock_ticks_per_second() > 0);
    }

    #[test]
    fn cgroup_v2_path_parsing() {
        assert_eq!(cgroup_v2_path("0::/\n"), Some("/"));
        assert_eq!(
            cgroup_v2_path("9:name=systemd:/\n4:memory:/a/b\n0::/kubepods/pod:1/c\n"),
            Some("/kubepods/pod:1/c")
        );
        assert_eq!(cgroup_v2_path("4:memory:/a\n1:name=systemd:/a\n"), None);
        assert_eq!(cgroup_v2_path("10::/not-v2\n"), None);
        assert_eq!(cgroup_v2_path(""), None);
    }

    #[test]
    fn cgroup2_mount_point_parsing() {
        let hybrid = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:5 - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount_point(hybrid),
            Some(PathBuf::from("/sys/fs/cgroup/unified"))
        );
        let bind_first = "\
50 23 0:38 /kubepods /host\\040cgroup rw - cgroup2 cgroup2 rw
51 23 0:38 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw
";
        assert_eq!(
            cgroup2_mount_point(bind_first),
            Some(PathBuf::from("/sys/fs/cgroup"))
        );
        let only_bind = "50 23 0:38 /kubepods /host\\040cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup2_mount_point(only_bind),
            Some(PathBuf::from("/host cgroup"))
        );
        assert_eq!(
            cgroup2_mount_point("32 31 0:29 / /x rw - cgroup cgroup rw\n"),
            None
        );
        assert_eq!(cgroup2_mount_point("garbage\n"), None);
        assert_eq!(unescape_mountinfo("a\\011b\\134c\\12"), "a\tb\\c\\12");
    }

    #[test]
    fn finds_ourselves_in_the_real_proc() {
        let cgroup_root = unified_cgroup_root();
        let result = scan_processes(Path::new("/proc"), &cgroup_root).unwrap();
        let me = result
            .processes
            .iter()
            .find(|p| p.tgid == std::process::id())
            .expect("our own process");
        assert_eq!(me.ppid, std::os::unix::process::parent_id());
        assert_eq!(
            me.binary,
            std::env::current_exe().unwrap().to_string_lossy()
        );
        assert_eq!(me.cwd, std::env::current_dir().unwrap().to_string_lossy());
        assert_ne!(me.cgroup_id, 0, "cgroup root {}", cgroup_root.display());
        assert!(me.start_time_ns > 0);
        assert!(!me.comm.is_empty());
        assert!(!me.args.is_empty());
        assert_eq!(me.uid, fs::metadata("/proc/self").unwrap().uid());
        assert_eq!(Some(me.mntns), mntns_of(Path::new("/proc/self")));
        assert_eq!(me.source, ProcessSource::Procfs);

        // Only thread-group leaders: the test harness' other threads are not listed.
        let spawned = std::thread::spawn(|| {
            let tids: Vec<u32> = fs::read_dir("/proc/self/task")
                .unwrap()
                .filter_map(|e| parse_pid(&e.unwrap().file_name()))
                .collect();
            (
                tids,
                scan_processes(Path::new("/proc"), &unified_cgroup_root()).unwrap(),
            )
        });
        let (tids, rescan) = spawned.join().unwrap();
        assert!(tids.len() >= 2);
        for tid in tids.iter().filter(|&&tid| tid != std::process::id()) {
            assert!(
                rescan.processes.iter().all(|p| p.tgid != *tid),
                "thread {tid} listed as a process"
            );
        }

        // init, and a single read of ourselves.
        let init = result.processes.iter().find(|p| p.tgid == 1).expect("init");
        assert_eq!(init.ppid, 0);
        // Reading init's namespace links needs ptrace access to it, which a sandbox may deny.
        if let Some(host) = host_mntns() {
            assert_eq!(init.mntns, host);
        }
        let again = read_process(Path::new("/proc"), std::process::id(), &cgroup_root)
            .unwrap()
            .unwrap();
        assert_eq!(again.start_time_ns, me.start_time_ns);
        assert_eq!(again.cgroup_id, me.cgroup_id);
    }
}
