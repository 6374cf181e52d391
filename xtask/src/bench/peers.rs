//! The configurations compared: no sensor, this sensor with its collector, bpftrace printing
//! the same fields, auditd with execve and `openat(O_CREAT)` rules (RAW log). Each one is
//! started, counted (what it recorded of the workload, what it says it lost, the CPU of every
//! process involved plus in-kernel BPF time) and stopped; the machine is restored (audit rules
//! removed, kernel audit state put back, only the processes started here ended, by pid).

use std::{
    io::{BufRead as _, BufReader, Read as _, Seek as _, SeekFrom},
    path::{Path, PathBuf},
    process::{Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU64, Ordering},
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use super::{Ctx, Running, cpu};
use crate::process;

/// A configuration.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    None,
    /// jobwatch's syscall tracepoints with empty programs (bpftrace, [`HOOKS_SCRIPT`]): what
    /// the hooks cost before any program does any work, the floor of the files benchmark.
    Hooks,
    Sensor,
    Bpftrace,
    Auditd,
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::None => "no sensor",
            Kind::Hooks => "empty hooks",
            Kind::Sensor => "jobwatch",
            Kind::Bpftrace => "bpftrace",
            Kind::Auditd => "auditd",
        }
    }

    /// Whether the configuration records events (and can lose them): not the baselines, no
    /// sensor and empty hooks.
    pub fn records(self) -> bool {
        !matches!(self, Kind::None | Kind::Hooks)
    }

    pub fn key(self) -> &'static str {
        match self {
            Kind::None => "none",
            Kind::Hooks => "empty_hooks",
            Kind::Sensor => "jobwatch",
            Kind::Bpftrace => "bpftrace",
            Kind::Auditd => "auditd",
        }
    }
}

/// How the sensor is configured for a benchmark.
#[derive(Clone, Debug)]
pub struct SensorOptions {
    /// `include_path_prefixes` (file events elsewhere are dropped in the kernel).
    pub include: Vec<PathBuf>,
    pub report_host_processes: bool,
}

/// What a configuration recorded of the workload so far (cumulative).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    /// Exec events of the workload's program.
    pub execs: u64,
    /// Of those, attributed to the workload's container.
    pub attributed: u64,
    /// File-creation events under the benchmark directory.
    pub files: u64,
    /// Losses the configuration reports (all causes).
    pub lost: u64,
    /// Of those, exec and file-creation losses (for the sensor: kernel ring buffer per kind).
    pub lost_exec: u64,
    pub lost_file: u64,
}

impl Counts {
    pub fn minus(self, o: Counts) -> Counts {
        Counts {
            execs: self.execs.saturating_sub(o.execs),
            attributed: self.attributed.saturating_sub(o.attributed),
            files: self.files.saturating_sub(o.files),
            lost: self.lost.saturating_sub(o.lost),
            lost_exec: self.lost_exec.saturating_sub(o.lost_exec),
            lost_file: self.lost_file.saturating_sub(o.lost_file),
        }
    }
}

/// What [`Observer::settle`] found.
#[derive(Clone, Copy, Debug)]
pub struct Settled {
    /// Everything the configuration recorded and lost so far.
    pub counts: Counts,
    /// Its CPU so far, as it was when the last event was recorded.
    pub cpu: Cpu,
}

/// CPU used so far by a configuration, ns.
#[derive(Clone, Copy, Debug, Default)]
pub struct Cpu {
    /// CPU time of its processes (kernel threads included), to the ns ([`cpu::Meter`]).
    pub user_ns: u64,
    /// In-kernel BPF run time of its programs.
    pub bpf_ns: u64,
    /// CPU time of its first process alone (the sensor; bpftrace; auditd), included in
    /// `user_ns`.
    pub first_ns: u64,
}

impl Cpu {
    pub fn total(&self) -> u64 {
        self.user_ns + self.bpf_ns
    }

    pub fn minus(self, o: Cpu) -> Cpu {
        Cpu {
            user_ns: self.user_ns.saturating_sub(o.user_ns),
            bpf_ns: self.bpf_ns.saturating_sub(o.bpf_ns),
            first_ns: self.first_ns.saturating_sub(o.first_ns),
        }
    }
}

struct SensorHandle {
    db: PathBuf,
    cli: PathBuf,
    sensor_sock: PathBuf,
    collector_pid: u32,
    sensor_pid: u32,
}

#[derive(Default)]
struct TraceCounts {
    execs: AtomicU64,
    attributed: AtomicU64,
    files: AtomicU64,
    lost: AtomicU64,
}

struct AuditHandle {
    log: PathBuf,
    offset: u64,
    rest: String,
    counts: Counts,
    lost_at_start: u64,
    load_pids: Vec<u32>,
    _rules: AuditRules,
}

/// A running configuration.
pub struct Observer {
    pub kind: Kind,
    /// The configuration's processes, the first one alone in `Cpu::first_ns`.
    meters: Vec<cpu::Meter>,
    bpf_pid: Option<u32>,
    sensor: Option<SensorHandle>,
    trace: Option<Arc<TraceCounts>>,
    audit: Option<Mutex<AuditHandle>>,
    /// Stopped in reverse order when dropped (sensor before collector).
    children: Vec<Running>,
    /// The CPU limit of the node-side process, if any (removed after the children stop).
    limit: Option<cpu::Limit>,
    dir: PathBuf,
}

impl Drop for Observer {
    fn drop(&mut self) {
        // Audit rules go before auditd (AuditHandle's guard), then the children.
        self.audit = None;
        while let Some(child) = self.children.pop() {
            drop(child);
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Observer {
    /// Starts a configuration. `sensor` configures the sensor when `kind` is `Sensor`.
    pub fn start(ctx: &Ctx, kind: Kind, sensor: &SensorOptions) -> Result<Observer> {
        let dir = ctx.scratch.join(format!("observer-{}", kind.key()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir)?;
        let mut o = Observer {
            kind,
            meters: Vec::new(),
            bpf_pid: None,
            sensor: None,
            trace: None,
            audit: None,
            children: Vec::new(),
            limit: None,
            dir: dir.clone(),
        };
        match kind {
            Kind::None => {}
            Kind::Hooks => o.start_bpftrace(ctx, HOOKS_SCRIPT)?,
            Kind::Sensor => o.start_sensor(ctx, sensor)?,
            Kind::Bpftrace => o.start_bpftrace(ctx, BPFTRACE_SCRIPT)?,
            Kind::Auditd => o.start_auditd(ctx)?,
        }
        if o.meters.iter().any(cpu::Meter::in_ticks) {
            eprintln!(
                "bench: {} CPU is counted in clock ticks (10 ms): no cgroup to count it in",
                kind.name()
            );
        }
        Ok(o)
    }

    /// Limits the configuration's node-side process (the sensor; bpftrace) to `cpus` CPUs,
    /// as a DaemonSet's CPU limit would. The collector, like bpftrace's reader, is not
    /// limited: it runs off the node in a cluster.
    pub fn limit_cpu(&mut self, cpus: f64) -> Result<()> {
        let pid = self
            .bpf_pid
            .with_context(|| format!("{} has no process to limit", self.kind.name()))?;
        self.limit = Some(cpu::Limit::new(pid, cpus)?);
        Ok(())
    }

    /// How many times the CPU limit held the node-side process back so far.
    pub fn throttled(&self) -> Option<u64> {
        self.limit.as_ref()?.throttled()
    }

    fn start_sensor(&mut self, ctx: &Ctx, opts: &SensorOptions) -> Result<()> {
        let (collector, sensor, sensor_sock) =
            start_sensor_and_collector(&ctx.release, &self.dir, &sensor_config(opts))?;
        let (collector_pid, sensor_pid) = (collector.0.id(), sensor.0.id());
        self.children.push(collector);
        self.children.push(sensor);
        self.meters = vec![cpu::Meter::new(sensor_pid), cpu::Meter::new(collector_pid)];
        self.bpf_pid = Some(sensor_pid);
        self.sensor = Some(SensorHandle {
            db: self.dir.join("bench.db"),
            cli: ctx.release.join("jobwatch"),
            sensor_sock,
            collector_pid,
            sensor_pid,
        });
        Ok(())
    }

    fn start_bpftrace(&mut self, ctx: &Ctx, source: &str) -> Result<()> {
        let script = self.dir.join("jobwatch-bench.bt");
        std::fs::write(&script, source)?;
        let mut cmd = Command::new("bpftrace");
        cmd.arg(&script)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = cmd.spawn().context("starting bpftrace")?;
        let stdout = child.stdout.take().context("bpftrace stdout")?;
        let stderr = child.stderr.take().context("bpftrace stderr")?;
        let pid = child.id();
        self.children.push(Running(child));
        let counts = Arc::new(TraceCounts::default());
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let program = ctx.program.display().to_string();
        let files = format!("{}/", ctx.root.display());
        let cgroup = ctx.container.as_ref().map(|c| c.cgroup_id.to_string());
        {
            let counts = Arc::clone(&counts);
            std::thread::spawn(move || {
                for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                    count_bpftrace_line(&line, &program, &files, cgroup.as_deref(), &counts);
                    if line.starts_with("Attaching") {
                        let _ = ready_tx.send(());
                    }
                }
            });
        }
        {
            let counts = Arc::clone(&counts);
            std::thread::spawn(move || {
                for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                    if let Some(n) = lost_in(&line) {
                        counts.lost.fetch_add(n, Ordering::Relaxed);
                    } else if !line.contains("RLIMIT_MEMLOCK") {
                        eprintln!("bpftrace: {line}");
                    }
                }
            });
        }
        ready_rx
            .recv_timeout(Duration::from_secs(60))
            .context("bpftrace did not attach within 60 s")?;
        // "Attaching" is printed before the probes are attached: let it finish.
        std::thread::sleep(Duration::from_millis(500));
        self.meters = vec![cpu::Meter::new(pid)];
        self.bpf_pid = Some(pid);
        self.trace = Some(counts);
        Ok(())
    }

    fn start_auditd(&mut self, ctx: &Ctx) -> Result<()> {
        let before = AuditStatus::read()?;
        if before.pid != 0 {
            bail!(
                "an audit daemon (pid {}) is already running: not measuring auditd",
                before.pid
            );
        }
        let log = self.dir.join("audit.log");
        let plugins = self.dir.join("plugins.d");
        std::fs::create_dir_all(&plugins)?;
        std::fs::write(
            self.dir.join("auditd.conf"),
            format!(
                "local_events = yes\nwrite_logs = yes\nlog_file = {}\nlog_format = RAW\n\
                 flush = INCREMENTAL_ASYNC\nfreq = 50\nmax_log_file = 4096\nnum_logs = 2\n\
                 priority_boost = 4\nname_format = NONE\nmax_log_file_action = IGNORE\n\
                 space_left = 2\nspace_left_action = IGNORE\nadmin_space_left = 1\n\
                 admin_space_left_action = IGNORE\ndisk_full_action = IGNORE\n\
                 disk_error_action = IGNORE\noverflow_action = IGNORE\nq_depth = 2000\n\
                 plugin_dir = {}\nend_of_event_timeout = 2\n",
                log.display(),
                plugins.display()
            ),
        )?;
        // The rules' guard restores the kernel's audit state even if auditd fails to start.
        let mut rules = AuditRules {
            before,
            added: false,
        };
        let child = Command::new("auditd")
            .arg("-n")
            .arg("-c")
            .arg(&self.dir)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting auditd")?;
        let pid = child.id();
        self.children.push(Running(child));
        let deadline = Instant::now() + Duration::from_secs(20);
        while AuditStatus::read()?.pid != pid {
            if Instant::now() > deadline {
                bail!("auditd did not register with the kernel within 20 s");
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        rules.add()?;
        self.meters = std::iter::once(pid)
            .chain(cpu::pids_named("kauditd"))
            .map(cpu::Meter::new)
            .collect();
        self.audit = Some(Mutex::new(AuditHandle {
            log,
            offset: 0,
            rest: String::new(),
            counts: Counts::default(),
            lost_at_start: AuditStatus::read()?.lost,
            load_pids: Vec::new(),
            _rules: rules,
        }));
        let _ = ctx;
        Ok(())
    }

    /// CPU used so far.
    pub fn cpu(&self) -> Cpu {
        // Each process read once (ended ones count 0: sample before stopping them); the
        // first one's figure is part of the sum.
        let each: Vec<u64> = self.meters.iter().map(|m| m.ns().unwrap_or(0)).collect();
        Cpu {
            user_ns: each.iter().sum(),
            bpf_ns: self.bpf_pid.map_or(0, |p| cpu::bpf_ns(p).0),
            first_ns: each.first().copied().unwrap_or(0),
        }
    }

    /// Resident memory of the sensor and of the collector, bytes.
    pub fn sensor_rss(&self) -> Option<(u64, u64)> {
        let s = self.sensor.as_ref()?;
        Some((
            cpu::rss_bytes(s.sensor_pid)?,
            cpu::rss_bytes(s.collector_pid)?,
        ))
    }

    /// Resident bytes of the sensor's BPF map mappings.
    pub fn sensor_bpf_map_rss(&self) -> Option<u64> {
        cpu::bpf_map_rss_bytes(self.sensor.as_ref()?.sensor_pid)
    }

    /// Tells the auditd counter which processes are the workload's creators.
    pub fn note_load_pid(&self, pid: u32) {
        if let Some(a) = &self.audit {
            a.lock()
                .unwrap_or_else(|p| p.into_inner())
                .load_pids
                .push(pid);
        }
    }

    /// What the configuration recorded so far.
    pub fn counts(&self, ctx: &Ctx) -> Result<Counts> {
        match self.kind {
            Kind::None | Kind::Hooks => Ok(Counts::default()),
            Kind::Sensor => self.sensor_counts(ctx),
            Kind::Bpftrace => {
                let t = self.trace.as_ref().context("bpftrace counters")?;
                let lost = t.lost.load(Ordering::Relaxed);
                Ok(Counts {
                    execs: t.execs.load(Ordering::Relaxed),
                    attributed: t.attributed.load(Ordering::Relaxed),
                    files: t.files.load(Ordering::Relaxed),
                    lost,
                    // bpftrace does not say which probe lost: all of it is shown as both.
                    lost_exec: lost,
                    lost_file: lost,
                })
            }
            Kind::Auditd => {
                let a = self.audit.as_ref().context("auditd counters")?;
                let mut a = a.lock().unwrap_or_else(|p| p.into_inner());
                a.read_log(ctx)?;
                let lost = AuditStatus::read()?.lost.saturating_sub(a.lost_at_start);
                Ok(Counts {
                    lost,
                    lost_exec: lost,
                    lost_file: lost,
                    ..a.counts
                })
            }
        }
    }

    /// What the configuration recorded so far, as cheaply as it can be read: for this sensor
    /// only what the collector stored (read from its database by `sqlite3`, costing neither
    /// the sensor nor the collector anything), without the loss counters, which would take an
    /// API call that the sensor pays for.
    fn progress(&self, ctx: &Ctx) -> Result<Counts> {
        match self.kind {
            Kind::Sensor => self.stored_counts(ctx),
            _ => self.counts(ctx),
        }
    }

    /// Exec events of the workload's program stored (and of them attributed to its container)
    /// and file events stored, from the collector's database.
    fn stored_counts(&self, ctx: &Ctx) -> Result<Counts> {
        let s = self.sensor.as_ref().context("sensor handle")?;
        let program = sql_quote(&ctx.program.display().to_string());
        let container = ctx
            .container
            .as_ref()
            .map_or("''".to_string(), |c| sql_quote(&c.id));
        let out = sqlite(
            &s.db,
            &format!(
                "SELECT (SELECT count(*) FROM events WHERE kind = 1 AND binary = {program}),\
                 (SELECT count(*) FROM events WHERE kind = 1 AND binary = {program} \
                  AND container_id = {container}),\
                 (SELECT count(*) FROM events WHERE kind = 3);"
            ),
        )?;
        let v: Vec<u64> = out
            .trim()
            .split('|')
            .map(|x| x.parse().unwrap_or(0))
            .collect();
        Ok(Counts {
            execs: v.first().copied().unwrap_or(0),
            attributed: v.get(1).copied().unwrap_or(0),
            files: v.get(2).copied().unwrap_or(0),
            ..Counts::default()
        })
    }

    /// The sensor's loss counters that are not zero, `name=value` (for the log of a step).
    pub fn sensor_losses(&self) -> Result<String> {
        let s = self.sensor.as_ref().context("sensor handle")?;
        let counters = sensor_counters(&s.cli, &s.sensor_sock)?;
        Ok(counters
            .iter()
            .filter(|(k, v)| *v > 0 && (k.contains("lost") || k.starts_with("queue_full")))
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "))
    }

    fn sensor_counts(&self, ctx: &Ctx) -> Result<Counts> {
        let s = self.sensor.as_ref().context("sensor handle")?;
        let stored = self.stored_counts(ctx)?;
        let counters = sensor_counters(&s.cli, &s.sensor_sock)?;
        let get = |n: &str| counters.iter().find(|(k, _)| k == n).map_or(0, |(_, v)| *v);
        let lost = [
            "kernel_lost_ringbuf_full_exec",
            "kernel_lost_ringbuf_full_exit",
            "kernel_lost_ringbuf_full_file",
            "kernel_lost_no_scratch",
            "queue_full",
            "reporter_buffer_lost",
        ]
        .iter()
        .map(|n| get(n))
        .sum();
        // Per kind, every cause that counts by kind: the kernel's ring buffer, the output
        // queue, the reporter's buffer (which drops only events it never sent, so what it
        // counts is what the collector lacks).
        let of_kind = |kind: &str| {
            get(&format!("kernel_lost_ringbuf_full_{kind}"))
                + get(&format!("queue_full_{kind}"))
                + get(&format!("reporter_buffer_lost_{kind}"))
        };
        Ok(Counts {
            lost,
            lost_exec: of_kind("exec"),
            lost_file: of_kind("file"),
            ..stored
        })
    }

    /// Waits until the configuration has recorded `want` (execs and files) or stopped making
    /// progress for `quiet`. Returns the counts then, and the configuration's CPU as it was
    /// when the last of them was recorded (within one 150 ms poll): the waiting and the
    /// polling after that are not the configuration's work. The polling reads only what costs
    /// the configuration nothing (the collector's database, bpftrace's output, the audit log);
    /// the sensor's loss counters, an API call, are read once at the end, after the CPU.
    pub fn settle(&self, ctx: &Ctx, want: Counts, quiet: Duration) -> Result<Settled> {
        let deadline = Instant::now() + Duration::from_secs(120);
        let mut last = self.progress(ctx)?;
        let mut cpu = self.cpu();
        let mut changed = Instant::now();
        loop {
            let done = !self.kind.records()
                || (last.execs + last.lost_exec >= want.execs
                    && last.files + last.lost_file >= want.files)
                    && changed.elapsed() >= Duration::from_millis(300);
            if done || changed.elapsed() >= quiet || Instant::now() > deadline {
                let counts = self.counts(ctx)?;
                return Ok(Settled { counts, cpu });
            }
            std::thread::sleep(Duration::from_millis(150));
            let now = self.progress(ctx)?;
            if now != last {
                cpu = self.cpu();
                last = now;
                changed = Instant::now();
            }
        }
    }
}

impl AuditHandle {
    /// Reads the log written since the last call; counts the workload's records.
    fn read_log(&mut self, ctx: &Ctx) -> Result<()> {
        let Ok(mut f) = std::fs::File::open(&self.log) else {
            return Ok(());
        };
        f.seek(SeekFrom::Start(self.offset))?;
        let mut buf = String::new();
        self.offset += f.read_to_string(&mut buf)? as u64;
        let text = std::mem::take(&mut self.rest) + &buf;
        let (complete, rest) = match text.rfind('\n') {
            Some(i) => (&text[..=i], &text[i + 1..]),
            None => ("", text.as_str()),
        };
        let exe = format!("exe=\"{}\"", ctx.program.display());
        for line in complete.lines() {
            if !line.starts_with("type=SYSCALL") || !line.contains("key=\"jobwatch-bench\"") {
                continue;
            }
            if !line.contains("success=yes") {
                continue;
            }
            if (line.contains(" syscall=59 ") || line.contains(" syscall=322 "))
                && line.contains(&exe)
            {
                self.counts.execs += 1;
            } else if line.contains(" syscall=257 ")
                && field(line, "pid=")
                    .and_then(|p| p.parse::<u32>().ok())
                    .is_some_and(|p| self.load_pids.contains(&p))
            {
                self.counts.files += 1;
            }
        }
        self.rest = rest.to_string();
        Ok(())
    }
}

/// The value of ` name` in an audit record (`pid=` must not match `ppid=`).
fn field<'a>(line: &'a str, name: &str) -> Option<&'a str> {
    let at = line.find(&format!(" {name}"))? + 1 + name.len();
    line[at..].split_whitespace().next()
}

/// The kernel's audit state (`auditctl -s`).
#[derive(Clone, Copy, Debug, Default)]
struct AuditStatus {
    enabled: u64,
    pid: u32,
    backlog_limit: u64,
    lost: u64,
}

impl AuditStatus {
    fn read() -> Result<AuditStatus> {
        let out = Command::new("auditctl")
            .arg("-s")
            .output()
            .context("running auditctl -s")?;
        let text = String::from_utf8_lossy(&out.stdout);
        let get = |name: &str| {
            text.lines()
                .find_map(|l| l.strip_prefix(name)?.strip_prefix(' '))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .unwrap_or(0)
        };
        Ok(AuditStatus {
            enabled: get("enabled"),
            pid: get("pid") as u32,
            backlog_limit: get("backlog_limit"),
            lost: get("lost"),
        })
    }
}

/// The benchmark's audit rules; removed (by key) and the kernel's audit state restored when
/// dropped.
struct AuditRules {
    before: AuditStatus,
    added: bool,
}

const AUDIT_KEY: &str = "jobwatch-bench";

impl AuditRules {
    fn add(&mut self) -> Result<()> {
        self.added = true;
        auditctl(&["-b", "8192"])?;
        auditctl(&[
            "-a",
            "always,exit",
            "-F",
            "arch=b64",
            "-S",
            "execve,execveat",
            "-k",
            AUDIT_KEY,
        ])?;
        auditctl(&[
            "-a",
            "always,exit",
            "-F",
            "arch=b64",
            "-S",
            "openat",
            "-F",
            "a2&64",
            "-k",
            AUDIT_KEY,
        ])
    }
}

impl Drop for AuditRules {
    fn drop(&mut self) {
        if self.added {
            let _ = auditctl(&["-D", "-k", AUDIT_KEY]);
        }
        let _ = auditctl(&["-b", &self.before.backlog_limit.to_string()]);
        let _ = auditctl(&["-e", &self.before.enabled.to_string()]);
    }
}

fn auditctl(args: &[&str]) -> Result<()> {
    let out = Command::new("auditctl").args(args).output()?;
    if !out.status.success() {
        bail!(
            "auditctl {}: {}",
            args.join(" "),
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Prints, like the sensor, every exec (pid, ppid, uid, cgroup, comm, file name) and every
/// successful `openat` with `O_CREAT` (same fields and the path).
/// The sensor's syscall tracepoints (`sensor/src/probes.rs`, whose tests check this list
/// against its hook table) with empty programs.
pub const HOOKS_SCRIPT: &str = include_str!("hooks.bt");

const BPFTRACE_SCRIPT: &str = r#"
tracepoint:sched:sched_process_exec {
  printf("E %d %d %d %d %s %s\n", pid, curtask->real_parent->tgid, uid, cgroup, comm,
         str(args->filename));
}
tracepoint:syscalls:sys_enter_openat /args->flags & 64/ { @path[tid] = args->filename; }
tracepoint:syscalls:sys_exit_openat /@path[tid]/ {
  if (args->ret >= 0) {
    printf("F %d %d %d %d %s %s\n", pid, curtask->real_parent->tgid, uid, cgroup, comm,
           str(@path[tid]));
  }
  delete(@path[tid]);
}
"#;

fn count_bpftrace_line(
    line: &str,
    program: &str,
    files: &str,
    cgroup: Option<&str>,
    c: &TraceCounts,
) {
    if let Some(rest) = line.strip_prefix("E ") {
        let f: Vec<&str> = rest.splitn(6, ' ').collect();
        if f.get(5) == Some(&program) {
            c.execs.fetch_add(1, Ordering::Relaxed);
            if cgroup.is_some() && f.get(3).copied() == cgroup {
                c.attributed.fetch_add(1, Ordering::Relaxed);
            }
        }
    } else if let Some(rest) = line.strip_prefix("F ") {
        if rest
            .splitn(6, ' ')
            .nth(5)
            .is_some_and(|p| p.starts_with(files))
        {
            c.files.fetch_add(1, Ordering::Relaxed);
        }
    } else if let Some(n) = lost_in(line) {
        c.lost.fetch_add(n, Ordering::Relaxed);
    }
}

/// bpftrace's "Lost N events" message.
fn lost_in(line: &str) -> Option<u64> {
    let i = line.find("Lost ")?;
    let rest = &line[i + 5..];
    let n = rest.split_whitespace().next()?.parse().ok()?;
    rest.contains("events").then_some(n)
}

fn sql_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

/// Runs a read-only query with the sqlite3 shell on the collector's database.
pub fn sqlite(db: &Path, sql: &str) -> Result<String> {
    let out = Command::new("sqlite3")
        .arg("-readonly")
        .arg(db)
        .arg(sql)
        .output()
        .context("running sqlite3")?;
    if !out.status.success() {
        bail!("sqlite3: {}", String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

/// The sensor configuration of a benchmark.
pub fn sensor_config(o: &SensorOptions) -> String {
    let include: Vec<String> = o
        .include
        .iter()
        .map(|p| format!("\"{}/\"", p.display()))
        .collect();
    format!(
        "stdout_json = false\nreport_host_processes = {}\nmetadata_wait_ms = 100\n\
         include_path_prefixes = [{}]\n[containerd]\nenabled = false\n",
        o.report_host_processes,
        include.join(", ")
    )
}

/// Starts the release collector (database and socket in `dir`) and the sensor reporting to it,
/// with `config` (its `[api]` and `[report]` tables are added here). Returns both and the
/// sensor's API socket once the sensor says it runs.
pub fn start_sensor_and_collector(
    release: &Path,
    dir: &Path,
    config: &str,
) -> Result<(Running, Running, PathBuf)> {
    let socket = dir.join("collector.sock");
    let mut collector = Command::new(release.join("collector"));
    collector
        .arg("--db")
        .arg(dir.join("bench.db"))
        .arg("--socket")
        .arg(&socket);
    process::remove_outer_cargo_env(&mut collector);
    let collector = Running(
        collector
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .context("starting the collector")?,
    );
    super::wait_for(|| socket.exists(), "the collector's socket")?;

    let sensor_sock = dir.join("sensor.sock");
    let config_path = dir.join("sensor.toml");
    std::fs::write(
        &config_path,
        format!(
            "{config}[api]\nsocket = \"{}\"\n[report]\nsocket = \"{}\"\n",
            sensor_sock.display(),
            socket.display()
        ),
    )?;
    let mut sensor = Command::new(release.join("sensor"));
    sensor
        .arg("--config")
        .arg(&config_path)
        .env("RUST_LOG", "info");
    process::remove_outer_cargo_env(&mut sensor);
    let mut sensor = sensor
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .context("starting the sensor")?;
    let stderr = sensor.stderr.take().context("sensor stderr")?;
    let sensor = Running(sensor);
    let (tx, rx) = std::sync::mpsc::channel();
    // Read the sensor's log to the end, so that it never blocks on a full pipe.
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("sensor running") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .context("the sensor did not start within 60 s")?;
    Ok((collector, sensor, sensor_sock))
}

/// The sensor's counters, from `jobwatch status` (lines `name=value`).
pub fn sensor_counters(cli: &Path, socket: &Path) -> Result<Vec<(String, u64)>> {
    let out = Command::new(cli)
        .arg("--sensor")
        .arg(socket)
        .arg("status")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let (name, value) = l.trim().split_once('=')?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bpftrace_lines_are_counted() {
        let c = TraceCounts::default();
        let p = "/dev/shm/b/true";
        count_bpftrace_line(
            "E 1 2 0 77 true /dev/shm/b/true",
            p,
            "/dev/shm/b/",
            Some("77"),
            &c,
        );
        count_bpftrace_line(
            "E 1 2 0 78 true /dev/shm/b/true",
            p,
            "/dev/shm/b/",
            Some("77"),
            &c,
        );
        count_bpftrace_line(
            "E 1 2 0 77 cc /usr/bin/cc",
            p,
            "/dev/shm/b/",
            Some("77"),
            &c,
        );
        count_bpftrace_line(
            "F 1 2 0 77 x /dev/shm/b/keep/f1",
            p,
            "/dev/shm/b/",
            None,
            &c,
        );
        count_bpftrace_line("F 1 2 0 77 x /tmp/f1", p, "/dev/shm/b/", None, &c);
        count_bpftrace_line("Lost 12 events", p, "/dev/shm/b/", None, &c);
        let got = [&c.execs, &c.attributed, &c.files, &c.lost].map(|a| a.load(Ordering::Relaxed));
        assert_eq!(got, [2, 1, 1, 12]);
    }

    #[test]
    fn audit_fields() {
        let l =
            "type=SYSCALL msg=audit(1.2:3): arch=c000003e syscall=257 ppid=10 pid=11 comm=\"x\"";
        assert_eq!(field(l, "pid="), Some("11"));
        assert_eq!(field(l, "ppid="), Some("10"));
    }
}
