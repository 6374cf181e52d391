//! Helpers shared by the privileged integration tests: they load the real eBPF programs into
//! the running kernel, trigger real syscalls and read the events back.
//!
//! A privileged test that cannot run (not root, no CAP_BPF) fails when `CI=true` and is skipped
//! loudly otherwise. Every test that really ran appends its name to the file named by
//! `JOBWATCH_PRIVILEGED_LOG`, so the test command can report how many ran.

use std::{
    io::Write,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use sensor::{
    config::Config,
    event::{Event, EventKind, FileCreated, ProcessExec, ProcessExit},
    pipeline::RunningSensor,
    probes::{KernelCounters, Probes},
};

/// Whether a privileged test can run here. Under `CI=true` a missing privilege is a failure.
pub fn privileged(test: &str) -> bool {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let caps = sensor::host::effective_caps(&status).unwrap_or(0);
    if let Some(missing) = sensor::host::missing_caps(caps) {
        let msg = format!("{test}: needs root with CAP_BPF and CAP_PERFMON (missing {missing})");
        if xtask::process::in_ci() {
            panic!("{msg}: privileged tests must run in CI");
        }
        eprintln!("SKIPPED {msg}");
        return false;
    }
    if let Some(log) = std::env::var_os("JOBWATCH_PRIVILEGED_LOG") {
        let mut f = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(log)
            .expect("privileged test log opens");
        writeln!(f, "{test}").expect("privileged test log writes");
    }
    true
}

/// A loaded sensor and the events it delivered so far.
pub struct Harness {
    pub rt: tokio::runtime::Runtime,
    pub sensor: Option<RunningSensor>,
    pub events: Vec<Event>,
    /// The kernel counters as they ended, after `stop`.
    pub final_counters: Option<KernelCounters>,
}

impl Harness {
    /// Loads and starts the sensor with `config`.
    pub fn start(config: &Config) -> Harness {
        let rt = runtime();
        let sensor = rt
            .block_on(RunningSensor::start(config))
            .unwrap_or_else(|e| panic!("sensor starts: {e}"));
        Harness {
            rt,
            sensor: Some(sensor),
            events: Vec::new(),
            final_counters: None,
        }
    }

    /// Starts reading from probes loaded earlier (records that arrived meanwhile wait in the
    /// ring buffer, or were counted lost).
    pub fn from_probes(rt: tokio::runtime::Runtime, probes: Probes, config: &Config) -> Harness {
        let sensor = {
            let _guard = rt.enter();
            RunningSensor::from_probes(probes, config)
        };
        Harness {
            rt,
            sensor: Some(sensor),
            events: Vec::new(),
            final_counters: None,
        }
    }

    /// Receives events until one matches `pred` or `timeout` passes; returns the match.
    pub fn wait_for(&mut self, timeout: Duration, pred: impl Fn(&Event) -> bool) -> Option<Event> {
        if let Some(e) = self.events.iter().find(|e| pred(e)) {
            return Some(e.clone());
        }
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return None;
            }
            let rx = &mut self.sensor.as_mut().expect("sensor running").events;
            let next = self
                .rt
                .block_on(async { tokio::time::timeout(left, rx.recv()).await });
            match next {
                Ok(Some(e)) => {
                    let hit = pred(&e);
                    self.events.push(e.clone());
                    if hit {
                        return Some(e);
                    }
                }
                Ok(None) | Err(_) => return None,
            }
        }
    }

    /// Receives events until none arrives for `quiet`.
    pub fn drain(&mut self, quiet: Duration) {
        loop {
            let rx = &mut self.sensor.as_mut().expect("sensor running").events;
            let next = self
                .rt
                .block_on(async { tokio::time::timeout(quiet, rx.recv()).await });
            match next {
                Ok(Some(e)) => self.events.push(e),
                Ok(None) | Err(_) => return,
            }
        }
    }

    pub fn kernel_counters(&mut self) -> KernelCounters {
        self.sensor
            .as_mut()
            .expect("sensor running")
            .kernel_counters()
    }

    /// Stops the sensor, detaching the programs; the events it still sent are kept.
    pub fn stop(&mut self) {
        if let Some(mut sensor) = self.sensor.take() {
            let (_, closed) = tokio::sync::mpsc::channel(1);
            let mut rx = std::mem::replace(&mut sensor.events, closed);
            let counters = self.rt.block_on(sensor.shutdown());
            self.final_counters = Some(counters);
            while let Ok(e) = rx.try_recv() {
                self.events.push(e);
            }
        }
    }
}

impl Drop for Harness {
    fn drop(&mut self) {
        self.stop();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("tokio runtime")
}

/// A fresh directory under /tmp, removed on drop.
pub struct TempDir(pub PathBuf);

impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0);
        let path = PathBuf::from(format!("/tmp/jw-{tag}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).expect("temp dir");
        // Canonical: the sensor reports resolved paths.
        TempDir(path.canonicalize().expect("canonical temp dir"))
    }

    pub fn path(&self) -> &Path {
        &self.0
    }

    pub fn join(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub fn as_exec(e: &Event) -> Option<&ProcessExec> {
    match &e.kind {
        EventKind::ProcessExec(x) => Some(x),
        _ => None,
    }
}

pub fn as_exit(e: &Event) -> Option<&ProcessExit> {
    match &e.kind {
        EventKind::ProcessExit(x) => Some(x),
        _ => None,
    }
}

pub fn as_file(e: &Event) -> Option<&FileCreated> {
    match &e.kind {
        EventKind::FileCreated(x) => Some(x),
        _ => None,
    }
}

/// The file event of `operation` on `path`, if it arrives within five seconds.
pub fn wait_file(h: &mut Harness, operation: &str, path: &Path) -> FileCreated {
    let p = path.to_string_lossy().into_owned();
    let e = h
        .wait_for(Duration::from_secs(5), |e| {
            as_file(e).is_some_and(|f| f.operation == operation && f.path == p)
        })
        .unwrap_or_else(|| panic!("no {operation} event for {p}"));
    as_file(&e).cloned().expect("file event")
}

/// The inode number of a path (cgroup ids are cgroup directory inodes).
pub fn inode(path: &Path) -> u64 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(path)
        .unwrap_or_else(|e| panic!("stat {}: {e}", path.display()))
        .ino()
}

/// This process's cgroup path in the hierarchy whose /proc/self/cgroup line matches `pred`.
pub fn own_cgroup(pred: impl Fn(&str) -> bool) -> Option<String> {
    let text = std::fs::read_to_string("/proc/self/cgroup").ok()?;
    text.lines().find_map(|l| {
        let mut parts = l.splitn(3, ':');
        let (_id, controllers, path) = (parts.next()?, parts.next()?, parts.next()?);
        pred(controllers).then(|| path.to_string())
    })
}
/// Builds a binary of the workspace (cargo builds test targets, not other packages'
/// binaries) and returns its path.
pub fn binary(package: &str, bin: &str) -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".to_string());
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let status = std::process::Command::new(cargo)
        .args(["build", "--quiet", "-p", package, "--bin", bin])
        .current_dir(&root)
        .status()
        .expect("cargo build runs");
    assert!(status.success(), "the {bin} binary builds");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| root.join("target"));
    target.join("debug").join(bin)
}

/// A child process killed (SIGKILL) when dropped, so that a failing test leaves nothing
/// running.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub mod containerd;
pub mod image;
pub mod stack;
