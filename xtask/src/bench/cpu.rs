//! CPU accounting, in ns, of every process involved, kernel threads (kauditd) included
//! ([`Meter`]), and in-kernel BPF run time from the `run_time_ns` that the kernel shows in the
//! `fdinfo` of each BPF program descriptor a process holds (`kernel.bpf_stats_enabled` must
//! be 1; [`BpfStats`] turns it on and restores it).

use std::path::PathBuf;

use anyhow::{Context as _, Result};

/// The CPU time of one process, to the ns: `/proc/<pid>/stat` counts in clock ticks (10 ms),
/// which is coarser than what a sensor spends in a 5 s step at 100 execs/s.
///
/// - A user process is moved into a cgroup of its own (cpuacct in v1, else the unified
///   hierarchy), whose counter holds all its threads, living and ended, to the ns.
/// - A kernel thread (kauditd) is one thread: its `/proc/<pid>/schedstat` is to the ns.
/// - Where neither works, `/proc/<pid>/stat`.
pub struct Meter {
    pid: u32,
    how: How,
}

enum How {
    /// cpuacct.usage (ns) or cpu.stat usage_usec of this cgroup directory.
    Cgroup(PathBuf),
    Schedstat,
    Ticks,
}

/// Where the per-process cgroups are made: the cpuacct v1 hierarchy, else the unified one.
fn meter_roots() -> [PathBuf; 3] {
    [
        PathBuf::from("/sys/fs/cgroup/cpuacct"),
        PathBuf::from("/sys/fs/cgroup/unified"),
        PathBuf::from("/sys/fs/cgroup"),
    ]
}

impl Meter {
    /// Starts measuring `pid` precisely, as well as the machine allows.
    pub fn new(pid: u32) -> Meter {
        let kernel_thread = std::fs::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|s| {
                let rest = &s[s.rfind(')')? + 1..];
                // flags (field 9) carry PF_KTHREAD.
                rest.split_whitespace().nth(6)?.parse::<u64>().ok()
            })
            .is_some_and(|flags| flags & 0x0020_0000 != 0);
        if kernel_thread && schedstat_ns(pid).is_some() {
            return Meter {
                pid,
                how: How::Schedstat,
            };
        }
        for root in meter_roots() {
            let dir = root.join(format!("jobwatch-bench-cpu-{pid}"));
            let usable = root.join("cgroup.procs").exists()
                && (root.join("cpuacct.usage").exists() || root.join("cpu.stat").exists())
                && (dir.is_dir() || std::fs::create_dir(&dir).is_ok());
            if usable && std::fs::write(dir.join("cgroup.procs"), pid.to_string()).is_ok() {
                let meter = Meter {
                    pid,
                    how: How::Cgroup(dir),
                };
                if meter.ns().is_some() {
                    return meter;
                }
            } else if usable {
                let _ = std::fs::remove_dir(&dir);
            }
        }
        Meter {
            pid,
            how: How::Ticks,
        }
    }

    /// CPU used so far, ns (None once the process is gone, for the per-process readings).
    pub fn ns(&self) -> Option<u64> {
        match &self.how {
            How::Cgroup(dir) => {
                if let Ok(v) = std::fs::read_to_string(dir.join("cpuacct.usage")) {
                    return v.trim().parse().ok();
                }
                let stat = std::fs::read_to_string(dir.join("cpu.stat")).ok()?;
                let us: u64 = stat
                    .lines()
                    .find_map(|l| l.strip_prefix("usage_usec "))?
                    .trim()
                    .parse()
                    .ok()?;
                Some(us * 1000)
            }
            How::Schedstat => schedstat_ns(self.pid),
            How::Ticks => process_ns(self.pid),
        }
    }

    /// Whether it fell back to clock ticks.
    pub fn in_ticks(&self) -> bool {
        matches!(self.how, How::Ticks)
    }
}

impl Drop for Meter {
    fn drop(&mut self) {
        // The process has been stopped by now (Observer stops its children first); the
        // cgroup is removed once empty.
        if let How::Cgroup(dir) = &self.how {
            remove_cgroup(dir);
        }
    }
}

/// A CPU limit on one process and all its threads, as a DaemonSet's `resources.limits.cpu`
/// puts on an agent: a cgroup of its own in the cpu controller with a CFS quota (v1
/// `cpu.cfs_quota_us`, here; v2 `cpu.max` where the unified hierarchy has the controller).
/// The cgroup is removed when dropped, once the process has ended.
pub struct Limit {
    dir: PathBuf,
}

/// CFS period of a limit, µs (the kernel's default).
const LIMIT_PERIOD_US: u64 = 100_000;

impl Limit {
    /// Limits `pid` to `cpus` CPUs (0.25: a quarter of one CPU).
    pub fn new(pid: u32, cpus: f64) -> Result<Limit> {
        anyhow::ensure!(cpus > 0.0, "a CPU limit must be positive, not {cpus}");
        let quota = ((cpus * LIMIT_PERIOD_US as f64) as u64).max(1_000);
        let v1 = PathBuf::from("/sys/fs/cgroup/cpu");
        let v2 = PathBuf::from("/sys/fs/cgroup");
        let (root, setting, value) = if v1.join("cpu.cfs_quota_us").exists() {
            (v1, "cpu.cfs_quota_us", quota.to_string())
        } else if std::fs::read_to_string(v2.join("cgroup.subtree_control"))
            .is_ok_and(|c| c.split_whitespace().any(|c| c == "cpu"))
        {
            (v2, "cpu.max", format!("{quota} {LIMIT_PERIOD_US}"))
        } else {
            anyhow::bail!("no cpu controller to limit a process with (cgroup v1 or v2)");
        };
        let dir = root.join(format!("jobwatch-bench-limit-{pid}"));
        if !dir.is_dir() {
            std::fs::create_dir(&dir).with_context(|| format!("creating {}", dir.display()))?;
        }
        let limit = Limit { dir };
        if setting == "cpu.cfs_quota_us" {
            std::fs::write(
                limit.dir.join("cpu.cfs_period_us"),
                LIMIT_PERIOD_US.to_string(),
            )
            .context("setting cpu.cfs_period_us")?;
        }
        std::fs::write(limit.dir.join(setting), value)
            .with_context(|| format!("setting {setting}"))?;
        std::fs::write(limit.dir.join("cgroup.procs"), pid.to_string())
            .with_context(|| format!("moving {pid} into {}", limit.dir.display()))?;
        Ok(limit)
    }

    /// Times the limit held the process back (`nr_throttled` of `cpu.stat`).
    pub fn throttled(&self) -> Option<u64> {
        std::fs::read_to_string(self.dir.join("cpu.stat"))
            .ok()?
            .lines()
            .find_map(|l| l.strip_prefix("nr_throttled "))?
            .trim()
            .parse()
            .ok()
    }
}

impl Drop for Limit {
    fn drop(&mut self) {
        remove_cgroup(&self.dir);
    }
}

/// Removes a cgroup directory the benchmark made, waiting up to a second for its last process
/// to be gone (a cgroup with processes cannot be removed); says so if it stays.
fn remove_cgroup(dir: &std::path::Path) {
    for _ in 0..50 {
        if std::fs::remove_dir(dir).is_ok() || !dir.exists() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    eprintln!("bench: could not remove {}", dir.display());
}

/// Time a thread ran, ns (the first field of `/proc/<pid>/schedstat`).
fn schedstat_ns(pid: u32) -> Option<u64> {
    std::fs::read_to_string(format!("/proc/{pid}/schedstat"))
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of a process (all its threads, living and ended), ns; None once it is gone.
pub fn process_ns(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields start after the last ')'.
    let rest = &stat[stat.rfind(')')? + 1..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // After ')': state(3) ... utime(14) stime(15) => indexes 11 and 12.
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) * (1_000_000_000 / clock_ticks()))
}

fn clock_ticks() -> u64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 { t as u64 } else { 100 }
}

/// Resident set size of a process, bytes.
pub fn rss_bytes(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Resident bytes of a process's mappings of BPF maps (the ring buffer's data pages are
/// mapped twice, so an 8 MiB ring buffer shows as up to 16 MiB of RSS).
pub fn bpf_map_rss_bytes(pid: u32) -> Option<u64> {
    let smaps = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let mut in_map = false;
    let mut kb = 0u64;
    for line in smaps.lines() {
        let first = line.split_whitespace().next().unwrap_or("");
        if first.contains('-') && first.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            in_map = line.ends_with("anon_inode:bpf-map");
        } else if in_map && let Some(v) = line.strip_prefix("Rss:") {
            kb += v.split_whitespace().next()?.parse::<u64>().ok()?;
        }
    }
    Some(kb * 1024)
}

/// Pids of the processes whose command name is exactly `comm` (for kernel threads such as
/// kauditd; read only, never signalled).
pub fn pids_named(comm: &str) -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm")).is_ok_and(|c| c.trim_end() == comm)
        })
        .collect()
}

/// Total BPF run time (ns) and runs of the programs whose descriptors `pid` holds.
pub fn bpf_ns(pid: u32) -> (u64, u64) {
    let Ok(fds) = std::fs::read_dir(format!("/proc/{pid}/fdinfo")) else {
        return (0, 0);
    };
    let mut seen = std::collections::HashSet::new();
    let (mut ns, mut runs) = (0u64, 0u64);
    for fd in fds.filter_map(|e| e.ok()) {
        let Ok(info) = std::fs::read_to_string(fd.path()) else {
            continue;
        };
        let field = |name: &str| {
            info.lines()
                .find_map(|l| l.strip_prefix(name))
                .and_then(|v| v.trim().parse::<u64>().ok())
        };
        // A program may be held by several descriptors: count each prog_id once.
        let (Some(id), Some(t), Some(c)) =
            (field("prog_id:"), field("run_time_ns:"), field("run_cnt:"))
        else {
            continue;
        };
        if seen.insert(id) {
            ns += t;
            runs += c;
        }
    }
    (ns, runs)
}

/// `kernel.bpf_stats_enabled` on while alive, restored to its old value when dropped.
pub struct BpfStats {
    old: String,
}

const BPF_STATS: &str = "/proc/sys/kernel/bpf_stats_enabled";

impl BpfStats {
    pub fn enable() -> Result<BpfStats> {
        let old = std::fs::read_to_string(BPF_STATS)
            .with_context(|| format!("reading {BPF_STATS}"))?
            .trim()
            .to_string();
        std::fs::write(BPF_STATS, "1").with_context(|| format!("writing {BPF_STATS}"))?;
        Ok(BpfStats { old })
    }
}

impl Drop for BpfStats {
    fn drop(&mut self) {
        if let Err(e) = std::fs::write(BPF_STATS, &self.old) {
            eprintln!("bench: could not restore {BPF_STATS} to {}: {e}", self.old);
        }
    }
}

/// The machine's load average (1, 5, 15 minutes).
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|s| s.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_default()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn own_process_is_readable() {
        let me = std::process::id();
        assert!(process_ns(me).is_some());
        assert!(rss_bytes(me).is_some_and(|r| r > 0));
        assert_eq!(bpf_map_rss_bytes(me), Some(0));
    }

    #[test]
    fn schedstat_counts_this_thread_to_the_ns() {
        // SAFETY: gettid and clock_gettime have no preconditions. /proc/<tid> names any thread.
        let me = unsafe { libc::gettid() } as u32;
        let thread_cpu = || {
            let mut t = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: t is a valid timespec.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut t) };
            t.tv_sec as u64 * 1_000_000_000 + t.tv_nsec as u64
        };
        // A sleep first and last: the kernel brings a thread's sum up to date when it switches.
        std::thread::sleep(std::time::Duration::from_millis(5));
        let a = schedstat_ns(me).expect("schedstat");
        let start = thread_cpu();
        while thread_cpu() - start < 30_000_000 {
            std::hint::black_box(0u64);
        }
        std::thread::sleep(std::time::Duration::from_millis(5));
        let b = schedstat_ns(me).expect("schedstat");
        // 30 ms of this thread's CPU, counted to the ns (ticks would count in 10 ms steps).
        assert!((30_000_000..60_000_000).contains(&(b - a)), "{a} -> {b}");
        assert_ne!((b - a) % 1_000_000, 0, "{a} -> {b}");
    }
}
