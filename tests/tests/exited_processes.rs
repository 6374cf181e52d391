//! Processes that are gone before the sensor reads their events (the common case for a Job's
//! short-lived commands) are still tied to their container: the cgroup is found from the ids
//! the eBPF programs recorded, not only through `/proc/<pid>`. No containerd here: the
//! container is known by its cgroup path alone (`metadata_pending`).

use std::{
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use jobwatch_tests::{Harness, as_exec, inode, privileged};
use sensor::{
    config::{Config, ContainerdConfig},
    containers::index::CgroupFs,
    procfs::unified_cgroup_root,
};

const WAIT: Duration = Duration::from_secs(10);

/// A container-shaped cgroup in the unified hierarchy, removed on drop.
struct ContainerCgroup {
    pod: PathBuf,
    dir: PathBuf,
    relative: String,
    id: String,
}

impl ContainerCgroup {
    fn new(tag: &str) -> ContainerCgroup {
        let unique = format!("{:08x}{:08x}", std::process::id(), tag.len());
        let uid = format!("00000000-0000-4000-8000-{unique:0>12.12}");
        let id = format!("{:0<64}", format!("{tag}{unique}"))
            .chars()
            .map(|c| if c.is_ascii_hexdigit() { c } else { 'a' })
            .collect::<String>();
        let relative = format!("/kubepods/besteffort/pod{uid}/{id}");
        let root = unified_cgroup_root();
        let dir = root.join(relative.trim_start_matches('/'));
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("mkdir {}: {e}", dir.display()));
        ContainerCgroup {
            pod: dir.parent().expect("pod dir").to_path_buf(),
            dir,
            relative,
            id,
        }
    }
}

impl Drop for ContainerCgroup {
    fn drop(&mut self) {
        // rmdir, leaf first; the processes have exited by now.
        let _ = std::fs::remove_dir(&self.dir);
        let _ = std::fs::remove_dir(&self.pod);
    }
}

/// Runs `/bin/true` in `cgroup` with its own mount namespace, and waits for it.
fn run_in(cgroup: &Path) -> u32 {
    let procs = cgroup.join("cgroup.procs");
    let mut cmd = Command::new("/bin/true");
    // SAFETY: the closure only makes async-signal-safe calls (open/write/close through std's
    // thin wrappers, unshare) before exec.
    unsafe {
        cmd.pre_exec(move || {
            std::fs::write(&procs, b"0")?;
            if libc::unshare(libc::CLONE_NEWNS) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("spawn /bin/true in the cgroup");
    let pid = child.id();
    assert!(child.wait().expect("wait").success());
    pid
}

#[test]
fn a_cgroup_directory_is_found_from_its_id_alone() {
    if !privileged("a_cgroup_directory_is_found_from_its_id_alone") {
        return;
    }
    let cg = ContainerCgroup::new("dirof");
    let fs = CgroupFs::detect(None);
    assert_eq!(fs.dir_of(inode(&cg.dir), 0), Some(cg.relative.clone()));
    assert_eq!(
        fs.dir_of(inode(&cg.pod), 0).as_deref(),
        cg.relative.rsplit_once('/').map(|(pod, _)| pod)
    );
    // An id that names no cgroup, and "no id".
    assert_eq!(fs.dir_of(u64::MAX - 1, 0), None);
    assert_eq!(fs.dir_of(0, 0), None);
}

#[test]
fn execs_of_processes_gone_before_they_are_read_carry_their_container() {
    if !privileged("execs_of_processes_gone_before_they_are_read_carry_their_container") {
        return;
    }
    let cg = ContainerCgroup::new("exited");
    let config = Config {
        // The reader drains on its timer only, long after each /bin/true has exited.
        poll_interval_ms: 500,
        wakeup_bytes: 1 << 20,
        metadata_wait_ms: 200,
        ..Config::default()
    };
    let mut h = Harness::start(&config);
    let pids: Vec<u32> = (0..20).map(|_| run_in(&cg.dir)).collect();
    for pid in &pids {
        assert!(
            !Path::new(&format!("/proc/{pid}")).exists(),
            "pid {pid} was reaped"
        );
    }
    for pid in pids {
        let ev = h
            .wait_for(WAIT, |e| as_exec(e).is_some_and(|x| x.process.pid == pid))
            .unwrap_or_else(|| panic!("exec event of pid {pid}"));
        let x = as_exec(&ev).expect("exec");
        assert!(!x.process.host, "pid {pid}: own mount namespace");
        assert_eq!(x.process.cgroup_id, inode(&cg.dir), "pid {pid}: cgroup id");
        let c = x
            .container
            .as_ref()
            .unwrap_or_else(|| panic!("pid {pid}: no container on {x:?}"));
        assert_eq!(c.id, cg.id, "pid {pid}: container id from the cgroup path");
        assert!(c.metadata_pending, "pid {pid}: no containerd, no metadata");
        assert!(c.pod.is_none() && c.workload.is_none());
    }
}

#[test]
fn without_containerd_container_events_do_not_wait_for_metadata() {
    if !privileged("without_containerd_container_events_do_not_wait_for_metadata") {
        return;
    }
    let cg = ContainerCgroup::new("nowait");
    let config = Config {
        // A wait far beyond the test's patience: only not waiting at all passes.
        metadata_wait_ms: 60_000,
        containerd: ContainerdConfig {
            enabled: false,
            ..ContainerdConfig::default()
        },
        ..Config::default()
    };
    let mut h = Harness::start(&config);
    let pid = run_in(&cg.dir);
    let ev = h
        .wait_for(WAIT, |e| as_exec(e).is_some_and(|x| x.process.pid == pid))
        .expect("exec event long before the metadata wait");
    let c = as_exec(&ev)
        .and_then(|x| x.container.clone())
        .expect("container");
    assert_eq!(c.id, cg.id);
    assert!(c.metadata_pending);
    let stats = &h.sensor.as_ref().expect("running").stats;
    assert_eq!(
        stats
            .metadata_waited
            .load(std::sync::atomic::Ordering::Relaxed),
        0,
        "nothing was held: {stats:?}"
    );
}
