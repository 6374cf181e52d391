//! Facts about the host the sensor needs before loading: privileges, the memlock limit, the
//! cgroup layout and the host's mount namespace.

use std::path::Path;

/// Capability numbers (include/uapi/linux/capability.h).
pub const CAP_SYS_ADMIN: u32 = 21;
pub const CAP_PERFMON: u32 = 38;
pub const CAP_BPF: u32 = 39;

#[derive(Debug, thiserror::Error)]
pub enum PrivilegeError {
    #[error(
        "jobwatch sensor must run as root (or with CAP_BPF and CAP_PERFMON): running as uid \
         {uid} with effective capabilities {caps:#x}, missing {missing}"
    )]
    Missing {
        uid: u32,
        caps: u64,
        missing: String,
    },
    #[error("cannot read /proc/self/status to check privileges: {0}")]
    Status(std::io::Error),
}

/// Parses the `CapEff:` line of /proc/<pid>/status.
pub fn effective_caps(status: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|l| l.strip_prefix("CapEff:"))
        .and_then(|v| u64::from_str_radix(v.trim(), 16).ok())
}

/// Checks that this process can load and attach tracing programs.
pub fn check_privileges() -> Result<(), PrivilegeError> {
    let status = std::fs::read_to_string("/proc/self/status").map_err(PrivilegeError::Status)?;
    let caps = effective_caps(&status).unwrap_or(0);
    // SAFETY: geteuid has no preconditions.
    let uid = unsafe { libc::geteuid() };
    missing_caps(caps).map_or(Ok(()), |missing| {
        Err(PrivilegeError::Missing { uid, caps, missing })
    })
}

/// Names of the capabilities missing from `caps` for loading the sensor, if any. CAP_SYS_ADMIN
/// stands in for CAP_BPF and CAP_PERFMON (kernels before 5.8 only know it).
pub fn missing_caps(caps: u64) -> Option<String> {
    let has = |cap: u32| caps & (1u64 << cap) != 0;
    if has(CAP_SYS_ADMIN) || (has(CAP_BPF) && has(CAP_PERFMON)) {
        return None;
    }
    let missing: Vec<&str> = [(CAP_BPF, "CAP_BPF"), (CAP_PERFMON, "CAP_PERFMON")]
        .into_iter()
        .filter(|(cap, _)| !has(*cap))
        .map(|(_, name)| name)
        .collect();
    Some(missing.join(" and "))
}

/// Raises RLIMIT_MEMLOCK for kernels that still charge BPF maps to it. Best effort: kernels
/// since 5.11 charge memory to the cgroup instead, and this fails without CAP_SYS_RESOURCE.
pub fn raise_memlock() {
    let limit = libc::rlimit {
        rlim_cur: libc::RLIM_INFINITY,
        rlim_max: libc::RLIM_INFINITY,
    };
    // SAFETY: a valid rlimit struct is passed.
    let rc = unsafe { libc::setrlimit(libc::RLIMIT_MEMLOCK, &limit) };
    if rc != 0 {
        tracing::debug!(
            error = %std::io::Error::last_os_error(),
            "could not raise RLIMIT_MEMLOCK (fine on kernels >= 5.11, which account BPF memory to the cgroup)"
        );
    }
}

/// Mounts tracefs at /sys/kernel/tracing unless a tracefs is mounted already: the syscall
/// tracepoints are attached through it. Failure is logged; attaching then reports it.
pub fn ensure_tracefs() {
    let mounts = std::fs::read_to_string("/proc/self/mounts").unwrap_or_default();
    if mounts
        .lines()
        .any(|l| l.split_whitespace().nth(2) == Some("tracefs"))
    {
        return;
    }
    let target = c"/sys/kernel/tracing";
    // SAFETY: valid NUL-terminated strings; no data argument.
    let rc = unsafe {
        libc::mount(
            c"tracefs".as_ptr(),
            target.as_ptr(),
            c"tracefs".as_ptr(),
            0,
            std::ptr::null(),
        )
    };
    if rc == 0 {
        tracing::info!("mounted tracefs at /sys/kernel/tracing");
    } else {
        tracing::warn!(error = %std::io::Error::last_os_error(), "cannot mount tracefs at /sys/kernel/tracing");
    }
}

/// Inode number of a `/proc/<pid>/ns/mnt` link target like `mnt:[4026531841]`.
pub fn parse_ns_link(target: &str) -> Option<u32> {
    target
        .strip_prefix("mnt:[")?
        .strip_suffix(']')?
        .parse()
        .ok()
}

/// The host's mount namespace: PID 1's.
pub fn host_mntns(proc_root: &Path) -> Option<u32> {
    let target = std::fs::read_link(proc_root.join("1/ns/mnt")).ok()?;
    parse_ns_link(target.to_str()?)
}

/// The host's mount namespace: PID 1's, or — when PID 1 cannot be inspected (a sandbox init
/// that denies ptrace access) — the sensor's own, which is the host's when the sensor runs on
/// the host (the DaemonSet runs with hostPID and can read PID 1).
pub fn host_mntns_or_own(proc_root: &Path) -> u32 {
    if let Some(ns) = host_mntns(proc_root) {
        return ns;
    }
    let own = std::fs::read_link(proc_root.join("self/ns/mnt"))
        .ok()
        .and_then(|t| t.to_str().and_then(parse_ns_link));
    match own {
        Some(ns) => {
            tracing::warn!(
                mntns = ns,
                "cannot read PID 1's mount namespace: taking the sensor's own as the host's"
            );
            ns
        }
        None => {
            tracing::warn!(
                "cannot read any mount namespace: every process is reported as a container process"
            );
            0
        }
    }
}

/// Controllers whose v1 hierarchy may identify a task's cgroup, in order of preference.
const V1_PREFERENCE: [&str; 5] = ["memory", "pids", "cpu", "cpuacct", "blkio"];

/// Picks the v1 controller to read cgroup identities from, given /proc/cgroups. Returns None
/// on pure cgroup v2 hosts (every hierarchy id is 0) or when told "none".
pub fn choose_v1_controller(proc_cgroups: &str, wanted: &str) -> Option<String> {
    if wanted == "none" {
        return None;
    }
    // Lines: "#subsys_name hierarchy num_cgroups enabled".
    let mounted: Vec<&str> = proc_cgroups
        .lines()
        .filter(|l| !l.starts_with('#'))
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let name = f.next()?;
            let hierarchy: u32 = f.next()?.parse().ok()?;
            let _num: u32 = f.next()?.parse().ok()?;
            let enabled: u32 = f.next()?.parse().ok()?;
            (hierarchy != 0 && enabled == 1).then_some(name)
        })
        .collect();
    if wanted != "auto" {
        return mounted.contains(&wanted).then(|| wanted.to_string());
    }
    V1_PREFERENCE
        .into_iter()
        .find(|c| mounted.contains(c))
        .map(str::to_string)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caps_are_parsed_and_judged() {
        let status = "Name:\tx\nCapInh:\t0000000000000000\nCapEff:\t000001ffffffffff\n";
        let caps = effective_caps(status).expect("CapEff");
        assert_eq!(caps, 0x1ff_ffff_ffff);
        assert_eq!(missing_caps(caps), None);
        assert_eq!(missing_caps(0), Some("CAP_BPF and CAP_PERFMON".to_string()));
        assert_eq!(missing_caps(1 << CAP_BPF), Some("CAP_PERFMON".to_string()));
        assert_eq!(missing_caps(1 << CAP_SYS_ADMIN), None);
        assert_eq!(effective_caps("garbage"), None);
    }

    #[test]
    fn ns_links_are_parsed() {
        assert_eq!(parse_ns_link("mnt:[4026531841]"), Some(4026531841));
        assert_eq!(parse_ns_link("net:[1]"), None);
        assert_eq!(parse_ns_link("mnt:[x]"), None);
    }

    #[test]
    fn v1_controller_choice() {
        let hybrid = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpuset\t2\t1\t1\n\
                      cpu\t3\t1\t1\nmemory\t5\t1\t1\npids\t0\t1\t1\n";
        assert_eq!(
            choose_v1_controller(hybrid, "auto"),
            Some("memory".to_string())
        );
        assert_eq!(choose_v1_controller(hybrid, "cpu"), Some("cpu".to_string()));
        assert_eq!(choose_v1_controller(hybrid, "pids"), None);
        assert_eq!(choose_v1_controller(hybrid, "none"), None);
        let v2 = "#subsys_name\thierarchy\tnum_cgroups\tenabled\ncpu\t0\t90\t1\nmemory\t0\t90\t1\n";
        assert_eq!(choose_v1_controller(v2, "auto"), None);
    }
}
