//! The workload generators. They run in a child process (`xtask bench-load ...`) so that they
//! can be moved into a container's cgroup and mount namespace, and they count what they did
//! themselves: one line on stdout, `execs=N files=N secs=F cpu_ns=N`.
//!
//! * `exec`: fork + exec + wait of a program, at a fixed rate or (rate 0) as fast as it goes.
//! * `create`: `openat(O_CREAT|O_EXCL)` + close + unlink in a directory, at a rate or max.
//! * `mix`: the create loop with one fork + exec + wait every `exec_every` operations.

use std::{
    ffi::CString,
    os::unix::ffi::OsStrExt as _,
    path::{Path, PathBuf},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

/// The environment variable that hands the generator its cgroups (see [`Spec::cgroups_env`]).
pub const CGROUPS_ENV: &str = "JOBWATCH_BENCH_CGROUPS";

/// What a generator is asked to do.
#[derive(Clone, Debug, Default)]
pub struct Spec {
    /// `exec`, `create` or `mix`.
    pub mode: String,
    /// Operations per second; 0 = as fast as possible.
    pub rate: f64,
    pub secs: f64,
    /// Stop after this many operations (0 = no limit).
    pub max_ops: u64,
    /// The program to exec.
    pub program: Option<PathBuf>,
    /// Where files are created.
    pub dir: Option<PathBuf>,
    /// One exec every this many operations (`mix`).
    pub exec_every: u64,
    /// cgroup directories (`cgroup.procs` in each) to join before starting, and then a new
    /// mount namespace: the process is then a container's as the sensor sees it.
    pub cgroups: Vec<PathBuf>,
}

impl Spec {
    /// Command-line arguments for `xtask bench-load`.
    pub fn args(&self) -> Vec<String> {
        let mut a = vec![
            self.mode.clone(),
            format!("--rate={}", self.rate),
            format!("--secs={}", self.secs),
            format!("--max-ops={}", self.max_ops),
            format!("--exec-every={}", self.exec_every),
        ];
        if let Some(p) = &self.program {
            a.push(format!("--program={}", p.display()));
        }
        if let Some(d) = &self.dir {
            a.push(format!("--dir={}", d.display()));
        }
        a
    }

    /// The cgroups to join, for [`CGROUPS_ENV`]. They are not arguments: the generator is the
    /// parent of every process it starts, and its argv is in each exec event as the parent's;
    /// a dozen cgroup paths (1.6 KB) made every exec event 1,900 bytes instead of 270, which
    /// no job's `sh -c` parent would.
    pub fn cgroups_env(&self) -> String {
        let paths: Vec<String> = self
            .cgroups
            .iter()
            .map(|c| c.display().to_string())
            .collect();
        paths.join(":")
    }

    fn parse(args: &[String], cgroups_env: Option<&str>) -> Result<Spec> {
        let mut spec = Spec {
            mode: args.first().cloned().context("no mode")?,
            ..Spec::default()
        };
        for a in &args[1..] {
            let (k, v) = a
                .split_once('=')
                .with_context(|| format!("bad argument {a}"))?;
            match k {
                "--rate" => spec.rate = v.parse()?,
                "--secs" => spec.secs = v.parse()?,
                "--max-ops" => spec.max_ops = v.parse()?,
                "--exec-every" => spec.exec_every = v.parse()?,
                "--program" => spec.program = Some(v.into()),
                "--dir" => spec.dir = Some(v.into()),
                _ => bail!("unknown argument {k}"),
            }
        }
        spec.cgroups = cgroups_env
            .into_iter()
            .flat_map(|v| v.split(':'))
            .filter(|p| !p.is_empty())
            .map(PathBuf::from)
            .collect();
        Ok(spec)
    }
}

/// What a generator did.
#[derive(Clone, Copy, Debug, Default)]
pub struct Done {
    pub execs: u64,
    pub files: u64,
    pub secs: f64,
    /// The generator's own CPU (itself and its children), ns.
    pub cpu_ns: u64,
    /// Its pid (the creating process; exec'd children have their own).
    pub pid: u32,
}

impl Done {
    pub fn ops(&self) -> u64 {
        self.execs + self.files
    }

    pub fn parse(line: &str) -> Result<Done> {
        let mut d = Done::default();
        for kv in line.split_whitespace() {
            let (k, v) = kv.split_once('=').context("bad generator output")?;
            match k {
                "execs" => d.execs = v.parse()?,
                "files" => d.files = v.parse()?,
                "secs" => d.secs = v.parse()?,
                "cpu_ns" => d.cpu_ns = v.parse()?,
                "pid" => d.pid = v.parse()?,
                _ => {}
            }
        }
        Ok(d)
    }
}

/// Entry point of `xtask bench-load`.
pub fn main(args: &[String]) -> Result<()> {
    let cgroups = std::env::var(CGROUPS_ENV).ok();
    let spec = Spec::parse(args, cgroups.as_deref())?;
    enter_container(&spec.cgroups)?;
    let done = generate(&spec)?;
    println!(
        "execs={} files={} secs={:.6} cpu_ns={} pid={}",
        done.execs,
        done.files,
        done.secs,
        done.cpu_ns,
        std::process::id()
    );
    Ok(())
}

fn enter_container(cgroups: &[PathBuf]) -> Result<()> {
    if cgroups.is_empty() {
        return Ok(());
    }
    let pid = std::process::id().to_string();
    for c in cgroups {
        // Opened without O_CREAT: the audit rule counts O_CREAT opens of this process.
        std::fs::OpenOptions::new()
            .write(true)
            .open(c.join("cgroup.procs"))
            .and_then(|mut f| std::io::Write::write_all(&mut f, pid.as_bytes()))
            .with_context(|| format!("joining {}", c.display()))?;
    }
    // SAFETY: unshare has no memory-safety preconditions; this process is single-threaded.
    if unsafe { libc::unshare(libc::CLONE_NEWNS) } != 0 {
        bail!("unshare(CLONE_NEWNS): {}", std::io::Error::last_os_error());
    }
    Ok(())
}

struct Exec {
    path: CString,
    argv: [*const libc::c_char; 2],
}

impl Exec {
    fn new(path: &Path) -> Result<Exec> {
        let path = CString::new(path.as_os_str().as_bytes())?;
        let argv = [path.as_ptr(), std::ptr::null()];
        Ok(Exec { path, argv })
    }

    /// fork + exec + wait; the child's exit status must be 0.
    fn run(&self) -> Result<()> {
        // SAFETY: the generator is single-threaded; the child only calls async-signal-safe
        // functions (execv, _exit) on memory prepared before the fork.
        let pid = unsafe { libc::fork() };
        if pid < 0 {
            bail!("fork: {}", std::io::Error::last_os_error());
        }
        if pid == 0 {
            // SAFETY: see above.
            unsafe {
                libc::execv(self.path.as_ptr(), self.argv.as_ptr());
                libc::_exit(127);
            }
        }
        let mut status = 0;
        // SAFETY: waiting for our own child.
        if unsafe { libc::waitpid(pid, &mut status, 0) } != pid {
            bail!("waitpid: {}", std::io::Error::last_os_error());
        }
        if !libc::WIFEXITED(status) || libc::WEXITSTATUS(status) != 0 {
            bail!("{:?} failed (status {status:#x})", self.path);
        }
        Ok(())
    }
}

struct Create {
    dir: Vec<u8>,
    n: u64,
}

impl Create {
    /// openat(O_CREAT|O_EXCL) + close + unlink of a new name.
    fn run(&mut self) -> Result<()> {
        let mut name = self.dir.clone();
        name.extend_from_slice(format!("/f{}\0", self.n).as_bytes());
        self.n += 1;
        let p = name.as_ptr().cast::<libc::c_char>();
        // SAFETY: `name` is NUL-terminated and outlives the calls.
        unsafe {
            let fd = libc::openat(
                libc::AT_FDCWD,
                p,
                libc::O_CREAT | libc::O_EXCL | libc::O_WRONLY | libc::O_CLOEXEC,
                0o644,
            );
            if fd < 0 {
                bail!("openat: {}", std::io::Error::last_os_error());
            }
            libc::close(fd);
            if libc::unlink(p) != 0 {
                bail!("unlink: {}", std::io::Error::last_os_error());
            }
        }
        Ok(())
    }
}

fn generate(spec: &Spec) -> Result<Done> {
    let exec = spec.program.as_deref().map(Exec::new).transpose()?;
    let mut create = spec.dir.as_ref().map(|d| Create {
        dir: d.as_os_str().as_bytes().to_vec(),
        n: 0,
    });
    let every = spec.exec_every.max(1);
    let (mut execs, mut files) = (0u64, 0u64);
    let budget = Duration::from_secs_f64(spec.secs.max(0.0));
    let start = Instant::now();
    let mut i = 0u64;
    loop {
        if spec.max_ops > 0 && i >= spec.max_ops {
            break;
        }
        let now = Instant::now();
        if now.duration_since(start) >= budget {
            break;
        }
        if spec.rate > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / spec.rate);
            if due > now {
                std::thread::sleep(due - now);
            }
        }
        let do_exec = match spec.mode.as_str() {
            "exec" => true,
            "create" => false,
            "mix" => i.is_multiple_of(every),
            m => bail!("unknown mode {m}"),
        };
        if do_exec {
            exec.as_ref().context("--program is needed")?.run()?;
            execs += 1;
        } else {
            create.as_mut().context("--dir is needed")?.run()?;
            files += 1;
        }
        i += 1;
    }
    let secs = start.elapsed().as_secs_f64();
    Ok(Done {
        execs,
        files,
        secs,
        cpu_ns: own_cpu_ns(),
        pid: std::process::id(),
    })
}

fn own_cpu_ns() -> u64 {
    let usage = |who| {
        // SAFETY: getrusage writes into the struct we pass.
        let mut u: libc::rusage = unsafe { std::mem::zeroed() };
        unsafe { libc::getrusage(who, &mut u) };
        let t = |tv: libc::timeval| tv.tv_sec as u64 * 1_000_000_000 + tv.tv_usec as u64 * 1000;
        t(u.ru_utime) + t(u.ru_stime)
    };
    usage(libc::RUSAGE_SELF) + usage(libc::RUSAGE_CHILDREN)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spec_round_trip() {
        let s = Spec {
            mode: "mix".into(),
            rate: 1000.0,
            secs: 2.5,
            max_ops: 7,
            program: Some("/bin/true".into()),
            dir: Some("/tmp/x".into()),
            exec_every: 50,
            cgroups: vec!["/a".into(), "/b".into()],
        };
        let p = Spec::parse(&s.args(), Some(&s.cgroups_env())).expect("parses");
        assert_eq!(p.args(), s.args());
        assert_eq!(p.cgroups, s.cgroups);
        assert!(s.args().iter().all(|a| !a.contains("/a")));
    }

    #[test]
    fn creates_and_execs() {
        let dir = std::env::temp_dir().join(format!("jobwatch-load-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let done = generate(&Spec {
            mode: "mix".into(),
            secs: 10.0,
            max_ops: 20,
            program: Some("/bin/true".into()),
            dir: Some(dir.clone()),
            exec_every: 10,
            ..Spec::default()
        })
        .expect("runs");
        assert_eq!((done.execs, done.files), (2, 18));
        assert_eq!(std::fs::read_dir(&dir).expect("dir").count(), 0);
        let _ = std::fs::remove_dir_all(&dir);
    }
}
