//! `cargo xtask bench`: the benchmarks of `../shared/docs/benchmarks.md`, run against no
//! sensor, this sensor (with its collector), bpftrace and auditd on this machine, plus the
//! sensor -> collector throughput of issue #4.
//!
//! Every benchmark alternates its configurations within one run (A/B/C/D, A/B/C/D, ...) and
//! reports medians, spreads (min–max) and ratios to no sensor. The workload counts what it
//! generated ([`load`]), the collector what it stored, the sensor what it lost ([`peers`]); CPU
//! is counted for every process involved plus in-kernel BPF time ([`cpu`]). Results go to
//! `target/bench/<benchmark>.{md,json}` and `target/bench/summary.md`.
//!
//! The machine is restored afterwards: `kernel.bpf_stats_enabled` put back, audit rules
//! removed and the kernel's audit state put back, the cgroups made here removed, and only the
//! processes started here ended, by pid.

mod cliff;
mod cpu;
mod exec;
mod files;
pub mod load;
mod memory;
mod peers;
mod report;
mod throughput;

use std::{
    fmt::Write as _,
    io::{BufRead as _, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{process, run, setup};

/// The benchmarks, in the order they run.
pub const BENCHMARKS: &[&str] = &["throughput", "exec", "files", "cliff", "memory"];

/// What to run.
#[derive(Clone, Debug, Default)]
pub struct Options {
    /// Short smoke run (one repetition, short steps).
    pub quick: bool,
    /// Only these benchmarks (all when empty).
    pub only: Vec<String>,
    /// Release binaries of another build (sensor, collector, jobwatch) that the throughput
    /// benchmark alternates with this one, for before/after comparisons.
    pub baseline: Option<PathBuf>,
}

/// What the benchmarks share.
pub struct Ctx {
    pub quick: bool,
    /// The release binaries (sensor, collector, jobwatch).
    pub release: PathBuf,
    /// Another build's binaries to compare with (throughput only).
    pub baseline: Option<PathBuf>,
    /// This xtask binary, which also runs the workload generators (`bench-load`).
    pub xtask: PathBuf,
    /// Scratch space on tmpfs, removed at the end.
    pub scratch: PathBuf,
    /// Where the workload creates files (`keep/` is reported, `drop/` is filtered in the kernel).
    pub root: PathBuf,
    /// A private copy of /bin/true, so that its execs are told apart from everyone else's.
    pub program: PathBuf,
    /// A container-like cgroup for the workload (None when it could not be made).
    pub container: Option<Container>,
}

impl Ctx {
    pub fn keep(&self) -> PathBuf {
        self.root.join("keep")
    }

    pub fn drop_dir(&self) -> PathBuf {
        self.root.join("drop")
    }

    /// Runs a workload generator to its end and returns what it counted. `observer` learns the
    /// generator's pid (auditd's records are matched by pid).
    pub fn load(
        &self,
        spec: &load::Spec,
        observer: Option<&peers::Observer>,
    ) -> Result<load::Done> {
        let mut cmd = Command::new(&self.xtask);
        // The workload gets a plain environment, as a job's process would. `cargo xtask` runs
        // under cargo, which sets LD_LIBRARY_PATH to a dozen toolchain and target directories:
        // every exec of /bin/true then looked for libc.so.6 in each of them, about 35 failed
        // opens per exec (found at 15:40: 42 opens per exec instead of 2, which cost every
        // configuration that traces opens, jobwatch about 7 µs of BPF per exec).
        cmd.env_clear()
            .env(
                "PATH",
                "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
            )
            .env("LANG", "C");
        cmd.arg("bench-load")
            .args(spec.args())
            .env(load::CGROUPS_ENV, spec.cgroups_env())
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        let mut child = cmd.spawn().context("starting the workload generator")?;
        if let Some(o) = observer {
            o.note_load_pid(child.id());
        }
        let stdout = child.stdout.take().context("generator stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line)?;
        let status = child.wait()?;
        if !status.success() {
            bail!(
                "the workload generator failed ({status}): {}",
                spec.args().join(" ")
            );
        }
        load::Done::parse(&line)
    }

    /// A generator spec; in the container when `inside`.
    pub fn spec(&self, mode: &str, rate: f64, secs: f64, inside: bool) -> load::Spec {
        load::Spec {
            mode: mode.into(),
            rate,
            secs,
            program: Some(self.program.clone()),
            dir: Some(self.keep()),
            exec_every: 1,
            cgroups: if inside {
                self.container
                    .as_ref()
                    .map(|c| c.dirs.clone())
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
            ..load::Spec::default()
        }
    }
}

/// A cgroup shaped like a containerd container's under the cgroupfs driver
/// (`/kubepods/besteffort/pod<uid>/<64 hex id>`), in the unified hierarchy and in every v1
/// hierarchy; removed when dropped.
pub struct Container {
    pub id: String,
    /// The container's directory in each hierarchy.
    pub dirs: Vec<PathBuf>,
    /// Its cgroup v2 id (the inode of its unified directory).
    pub cgroup_id: u64,
    /// Directories made here, deepest first.
    created: Vec<PathBuf>,
}

impl Container {
    fn create() -> Result<Container> {
        use std::os::unix::fs::MetadataExt as _;
        let seed = format!("{:016x}{:08x}", unix_nanos(), std::process::id());
        let id: String = seed.repeat(3).chars().take(64).collect();
        let pod = format!(
            "pod{}-{}-4{}-8{}-{}",
            &id[..8],
            &id[8..12],
            &id[13..16],
            &id[17..20],
            &id[20..32]
        );
        let rel = Path::new("kubepods")
            .join("besteffort")
            .join(&pod)
            .join(&id);
        let mut roots = Vec::new();
        for e in std::fs::read_dir("/sys/fs/cgroup").context("reading /sys/fs/cgroup")? {
            let p = e?.path();
            // cpuset needs cpus and mems set before a task may join; nothing reads it here.
            if p.join("cgroup.procs").exists() && !p.ends_with("cpuset") {
                roots.push(p);
            }
        }
        if Path::new("/sys/fs/cgroup/cgroup.procs").exists() {
            roots = vec![PathBuf::from("/sys/fs/cgroup")];
        }
        let mut c = Container {
            id,
            dirs: Vec::new(),
            cgroup_id: 0,
            created: Vec::new(),
        };
        for root in &roots {
            let mut dir = root.clone();
            for part in rel.components() {
                dir.push(part);
                if !dir.exists() {
                    std::fs::create_dir(&dir)
                        .with_context(|| format!("creating {}", dir.display()))?;
                    c.created.push(dir.clone());
                }
            }
            c.dirs.push(dir);
        }
        c.created.reverse();
        let unified = roots
            .iter()
            .find(|r| r.ends_with("unified") || r.as_path() == Path::new("/sys/fs/cgroup"))
            .context("no cgroup2 hierarchy")?;
        c.cgroup_id = std::fs::metadata(unified.join(&rel))?.ino();
        Ok(c)
    }
}

impl Drop for Container {
    fn drop(&mut self) {
        // The workload's processes have ended; a cgroup still in use stays (and is said).
        for d in &self.created {
            if let Err(e) = std::fs::remove_dir(d) {
                eprintln!("bench: could not remove {}: {e}", d.display());
            }
        }
    }
}

/// A child ended (SIGTERM, then SIGKILL after 10 s) when dropped. Only ever our own children,
/// by pid.
pub struct Running(pub Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn wait_for(ready: impl Fn() -> bool, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} did not appear within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

fn unix_nanos() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// Builds the optimised xtask whose `bench-load` runs the workload generators.
fn build_generator(workspace_root: &Path) -> Result<()> {
    let mut build = process::host_cargo(workspace_root);
    build.args(["build", "--release", "--package", "xtask", "--bin", "xtask"]);
    let status = build
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("failed to start `{}`", process::describe(&build)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", process::describe(&build));
    }
    Ok(())
}

/// Tools the benchmarks need besides the build: (program, Debian package).
const TOOLS: &[(&str, &str)] = &[
    ("sqlite3", "sqlite3"),
    ("bpftrace", "bpftrace"),
    ("auditd", "auditd"),
    ("auditctl", "auditd"),
];

/// Installs the peers and tools that are missing (apt, non-interactive). Installing does not
/// start auditd here (no init system); the benchmark starts and stops its own.
fn install_tools() -> Result<()> {
    let missing: Vec<&str> = TOOLS
        .iter()
        .filter(|(bin, _)| process::find_on_path(bin).is_none())
        .map(|(_, pkg)| *pkg)
        .collect();
    if missing.is_empty() {
        return Ok(());
    }
    eprintln!("==> installing {}", missing.join(" "));
    for args in [vec!["update"], [vec!["install", "-y"], missing].concat()] {
        let status = Command::new("apt-get")
            .args(&args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdin(Stdio::null())
            .status()
            .context("running apt-get")?;
        if !status.success() {
            bail!("apt-get {} failed ({status})", args.join(" "));
        }
    }
    Ok(())
}

pub fn run(workspace_root: &Path, opts: &Options) -> Result<()> {
    for name in &opts.only {
        if !BENCHMARKS.contains(&name.as_str()) {
            bail!(
                "unknown benchmark {name:?}; known: {}",
                BENCHMARKS.join(", ")
            );
        }
    }
    if process::effective_uid()? != 0 {
        bail!("the benchmarks load eBPF programs and set audit rules: run them as root");
    }
    setup::run(workspace_root)?;
    run::build(workspace_root)?;
    build_generator(workspace_root)?;
    install_tools()?;
    let selected: Vec<&str> = BENCHMARKS
        .iter()
        .copied()
        .filter(|b| opts.only.is_empty() || opts.only.iter().any(|o| o == b))
        .collect();

    let scratch = PathBuf::from(format!("/dev/shm/jobwatch-bench-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&scratch);
    std::fs::create_dir_all(&scratch)?;
    let result = run_in(workspace_root, opts, &selected, &scratch);
    let _ = std::fs::remove_dir_all(&scratch);
    result
}

fn run_in(workspace_root: &Path, opts: &Options, selected: &[&str], scratch: &Path) -> Result<()> {
    let root = scratch.join("load");
    let program = scratch.join("true");
    std::fs::copy("/bin/true", &program).context("copying /bin/true")?;
    // The optimised xtask runs the generators (a debug build spends more time in its own
    // loop than in the syscalls measured); a copy, because others may rebuild it meanwhile.
    let xtask = scratch.join("xtask");
    let built = crate::host_target_dir(workspace_root)
        .join("release")
        .join("xtask");
    std::fs::copy(&built, &xtask).with_context(|| format!("copying {}", built.display()))?;
    let container = match Container::create() {
        Ok(c) => Some(c),
        Err(e) => {
            eprintln!("bench: no container cgroup ({e:#}): attribution is not measured");
            None
        }
    };
    let ctx = Ctx {
        quick: opts.quick,
        release: crate::host_target_dir(workspace_root).join("release"),
        baseline: opts.baseline.clone(),
        xtask,
        scratch: scratch.to_path_buf(),
        root,
        program,
        container,
    };
    for d in [ctx.keep(), ctx.drop_dir()] {
        std::fs::create_dir_all(&d)?;
    }
    let _stats = cpu::BpfStats::enable()?;
    let out_dir = crate::host_target_dir(workspace_root).join("bench");
    let started = unix_nanos();
    let load_before = cpu::loadavg();
    let mut sections = Vec::new();
    for name in selected {
        eprintln!("==> benchmark {name}");
        let t = Instant::now();
        let section = match *name {
            "throughput" => throughput::run(&ctx),
            "exec" => exec::run(&ctx),
            "files" => files::run(&ctx),
            "cliff" => cliff::run(&ctx),
            "memory" => memory::run(&ctx),
            _ => unreachable!("checked above"),
        }
        .with_context(|| format!("benchmark {name}"))?;
        eprintln!("==> {name} done in {:.0}s", t.elapsed().as_secs_f64());
        eprintln!("{}{}", section.markdown, section.verdict_markdown());
        report::write(&out_dir, section.name, &section.markdown, &section.json)?;
        sections.push(section);
    }
    let load_after = cpu::loadavg();
    let summary = summary(&ctx, &sections, started, &load_before, &load_after);
    let name = if opts.only.is_empty() {
        "summary"
    } else {
        "summary-partial"
    };
    std::fs::create_dir_all(&out_dir)?;
    std::fs::write(out_dir.join(format!("{name}.md")), &summary)?;
    let json = report::Json::obj([
        ("quick", report::Json::Bool(ctx.quick)),
        ("started_unix_ns", report::Json::num(started as f64)),
        ("loadavg_before", report::Json::str(load_before)),
        ("loadavg_after", report::Json::str(load_after)),
        (
            "benchmarks",
            report::Json::Obj(
                sections
                    .iter()
                    .map(|s| (s.name.to_string(), s.json.clone()))
                    .collect(),
            ),
        ),
    ]);
    std::fs::write(out_dir.join(format!("{name}.json")), format!("{json}\n"))?;
    println!("{summary}");
    eprintln!("==> results in {}", out_dir.display());
    Ok(())
}

fn summary(
    ctx: &Ctx,
    sections: &[report::Section],
    started: u128,
    load_before: &str,
    load_after: &str,
) -> String {
    let uname = Command::new("uname")
        .arg("-r")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    let date = Command::new("date")
        .args(["-u", "+%Y-%m-%d %H:%M UTC"])
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_default();
    // SAFETY: sysconf has no preconditions.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    let mut s = format!(
        "# jobwatch benchmarks ({} mode)\n\n{date}; Linux {uname}, {cpus} CPUs; load average \
         before {load_before}, after {load_after} (other builds share the machine); run took \
         {:.0} s.\n\n",
        if ctx.quick { "quick" } else { "full" },
        (unix_nanos() - started) as f64 / 1e9
    );
    for sec in sections {
        s.push_str(&sec.markdown);
        s.push('\n');
        s.push_str(&sec.verdict_markdown());
        s.push('\n');
    }
    let holds = sections
        .iter()
        .flat_map(|s| &s.verdicts)
        .filter(|v| v.1)
        .count();
    let total = sections.iter().map(|s| s.verdicts.len()).sum::<usize>();
    let _ = writeln!(s, "{holds} of {total} \"ahead\" lines hold.");
    s
}
