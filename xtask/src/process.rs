//! Child processes: clean environments for nested cargo runs, output streamed live and kept.

use std::{
    env,
    ffi::{OsStr, OsString},
    fs,
    io::{self, BufRead as _, BufReader, IsTerminal as _, Read},
    os::unix::fs::MetadataExt as _,
    path::{Path, PathBuf},
    process::{Command, ExitStatus, Stdio},
    sync::mpsc,
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, anyhow};

/// Variables that an outer cargo sets for a build script or a `cargo run` binary. Inherited by a
/// nested cargo they describe the *outer* package (`CARGO_PKG_*`, `OUT_DIR`, ...), hand it the
/// outer jobserver (`CARGO_MAKEFLAGS`) or internal state (`__CARGO_*`).
const OUTER_CARGO_VARS: &[&str] = &[
    "CARGO_MAKEFLAGS",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "CARGO_BIN_NAME",
    "CARGO_TARGET_TMPDIR",
    "CARGO_RUSTC_CURRENT_DIR",
    "OUT_DIR",
    "TARGET",
    "HOST",
    "PROFILE",
    "OPT_LEVEL",
    "DEBUG",
    "NUM_JOBS",
];
const OUTER_CARGO_PREFIXES: &[&str] = &[
    "CARGO_FEATURE_",
    "CARGO_CFG_",
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "__CARGO",
];

/// Variables that choose the compiler, its wrappers, flags, target, target directory or profile.
/// `cargo clippy` sets `RUSTC_WORKSPACE_WRAPPER=clippy-driver` and `CLIPPY_ARGS` for build
/// scripts, cargo sets `RUSTC` and `CARGO_ENCODED_RUSTFLAGS`; a user may set the rest. The eBPF
/// build must not see any of them: it sets its own.
const BUILD_CONFIG_VARS: &[&str] = &[
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTC_LINKER",
    "RUSTDOC",
    "RUSTFLAGS",
    "RUSTDOCFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_ENCODED_RUSTDOCFLAGS",
    "CARGO_TARGET_DIR",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_RUSTC",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
];
const BUILD_CONFIG_PREFIXES: &[&str] = &["CLIPPY_", "CARGO_PROFILE_"];

fn matches(key: &OsStr, names: &[&str], prefixes: &[&str]) -> bool {
    let Some(key) = key.to_str() else {
        return false;
    };
    names.contains(&key) || prefixes.iter().any(|prefix| key.starts_with(prefix))
}

/// Remove what an outer cargo set for *its* package (see [`OUTER_CARGO_VARS`]). Used for every
/// cargo that xtask starts.
pub fn remove_outer_cargo_env(cmd: &mut Command) {
    for (key, _) in env::vars_os() {
        if matches(&key, OUTER_CARGO_VARS, OUTER_CARGO_PREFIXES) {
            cmd.env_remove(&key);
        }
    }
}

/// Remove everything that would change how a nested cargo compiles (see [`BUILD_CONFIG_VARS`]),
/// in addition to [`remove_outer_cargo_env`]. Used for the eBPF build, which sets its own.
pub fn remove_build_config_env(cmd: &mut Command) {
    remove_outer_cargo_env(cmd);
    for (key, _) in env::vars_os() {
        if matches(&key, BUILD_CONFIG_VARS, BUILD_CONFIG_PREFIXES) {
            cmd.env_remove(&key);
        }
    }
}

/// The cargo to run: the one that started us (`CARGO`, set by cargo for build scripts and
/// `cargo run`) so that nested runs use the same toolchain, else `cargo` from `PATH`.
#[must_use]
pub fn cargo_program() -> OsString {
    env::var_os("CARGO")
        .filter(|cargo| !cargo.is_empty())
        .unwrap_or_else(|| OsString::from("cargo"))
}

/// A cargo command for the host workspace at `workspace_root`, without the outer cargo's
/// package variables, with no stdin and coloured output when our stderr is a terminal.
#[must_use]
pub fn host_cargo(workspace_root: &Path) -> Command {
    let mut cmd = Command::new(cargo_program());
    cmd.current_dir(workspace_root).stdin(Stdio::null());
    remove_outer_cargo_env(&mut cmd);
    keep_colour(&mut cmd);
    cmd
}

/// Piped output loses cargo's terminal detection; ask for colour when a human is watching.
pub fn keep_colour(cmd: &mut Command) {
    if io::stderr().is_terminal() && env::var_os("CARGO_TERM_COLOR").is_none() {
        cmd.env("CARGO_TERM_COLOR", "always");
    }
}

/// `program arg arg ...`, for messages.
#[must_use]
pub fn describe(cmd: &Command) -> String {
    let mut text = cmd.get_program().to_string_lossy().into_owned();
    for arg in cmd.get_args() {
        text.push(' ');
        text.push_str(&arg.to_string_lossy());
    }
    text
}

/// Where a child's stdout goes while it is being streamed. Its stderr always goes to ours.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum StdoutTo {
    Stdout,
    /// For build scripts (whose stdout cargo parses for directives) and for `cargo xtask run`
    /// (whose stdout carries the sensor's events).
    Stderr,
}

#[derive(Clone, Copy)]
enum Stream {
    Out,
    Err,
}

/// What a streamed child printed, one entry per line (lossy UTF-8, line ending removed), in the
/// order the lines arrived.
#[derive(Debug)]
pub struct Output {
    pub status: ExitStatus,
    pub lines: Vec<String>,
}

/// Run `cmd` to completion, printing each line of its stdout and stderr as it arrives (tee) and
/// keeping every line for the caller to scan. stdin is closed.
pub fn run_streaming(cmd: &mut Command, stdout_to: StdoutTo) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = cmd
        .spawn()
        .with_context(|| format!("failed to start `{}`", describe(cmd)))?;
    let stdout = child
        .stdout
        .take()
        .context("the child's stdout was not piped")?;
    let stderr = child
        .stderr
        .take()
        .context("the child's stderr was not piped")?;

    let (sender, receiver) = mpsc::channel();
    let out_reader = spawn_line_reader(stdout, Stream::Out, sender.clone());
    let err_reader = spawn_line_reader(stderr, Stream::Err, sender);

    let mut lines = Vec::new();
    let mut exited: Option<(ExitStatus, Instant)> = None;
    let mut readers_done = false;
    loop {
        match receiver.recv_timeout(POLL) {
            Ok((stream, line)) => lines.push(echo(stream, stdout_to, line)),
            Err(mpsc::RecvTimeoutError::Timeout) => {}
            Err(mpsc::RecvTimeoutError::Disconnected) => {
                readers_done = true;
                break;
            }
        }
        if exited.is_none() {
            let status = child
                .try_wait()
                .with_context(|| format!("failed to wait for `{}`", describe(cmd)))?;
            exited = status.map(|status| (status, Instant::now()));
        }
        // A background process that the child left behind (a daemon a test forgot to stop)
        // may hold the pipes open forever: do not wait for it.
        if let Some((_, at)) = exited
            && at.elapsed() > LINGER
        {
            eprintln!(
                "xtask: `{}` exited but its output is still open (a process it left running?); \
                 not waiting for it",
                describe(cmd)
            );
            break;
        }
    }

    let status = match exited {
        Some((status, _)) => status,
        None => child
            .wait()
            .with_context(|| format!("failed to wait for `{}`", describe(cmd)))?,
    };
    if readers_done {
        for reader in [out_reader, err_reader] {
            reader
                .join()
                .map_err(|_| anyhow!("the thread reading `{}` panicked", describe(cmd)))?
                .with_context(|| format!("failed to read the output of `{}`", describe(cmd)))?;
        }
    }
    Ok(Output { status, lines })
}

/// How often to check whether the child exited while its output is quiet.
const POLL: Duration = Duration::from_millis(100);
/// How long to keep reading after the child exited.
const LINGER: Duration = Duration::from_secs(2);

/// Print one line where it belongs and return it as text (lossy UTF-8, line ending removed).
fn echo(stream: Stream, stdout_to: StdoutTo, mut line: Vec<u8>) -> String {
    if line.last() != Some(&b'\n') {
        line.push(b'\n');
    }
    // A closed stdout or stderr (say, `| head`) must not stop us from draining the child.
    let _ignored = match (stream, stdout_to) {
        (Stream::Out, StdoutTo::Stdout) => write_flush(&mut io::stdout().lock(), &line),
        _ => write_flush(&mut io::stderr().lock(), &line),
    };
    String::from_utf8_lossy(&line)
        .trim_end_matches(['\n', '\r'])
        .to_owned()
}

fn write_flush(out: &mut impl io::Write, bytes: &[u8]) -> io::Result<()> {
    out.write_all(bytes)?;
    out.flush()
}

fn spawn_line_reader(
    source: impl Read + Send + 'static,
    stream: Stream,
    sender: mpsc::Sender<(Stream, Vec<u8>)>,
) -> thread::JoinHandle<io::Result<()>> {
    thread::spawn(move || {
        let mut reader = BufReader::new(source);
        loop {
            let mut line = Vec::new();
            if reader.read_until(b'\n', &mut line)? == 0 {
                return Ok(());
            }
            if sender.send((stream, line)).is_err() {
                return Ok(());
            }
        }
    })
}

/// Run `cmd` quietly (no stdin) and return its trimmed stdout, or `None` when it cannot be
/// started or fails. For fast presence checks (`dpkg-query`, `rustc --version`, ...).
pub fn probe(cmd: &mut Command) -> Option<String> {
    let output = cmd
        .stdin(Stdio::null())
        .stderr(Stdio::null())
        .output()
        .ok()?;
    output
        .status
        .success()
        .then(|| String::from_utf8_lossy(&output.stdout).trim().to_owned())
}

/// The effective user id of this process (the owner of `/proc/self`).
pub fn effective_uid() -> Result<u32> {
    Ok(fs::metadata("/proc/self")
        .context("failed to stat /proc/self to find our user id")?
        .uid())
}

/// Whether this runs under CI (`CI=true` or `CI=1`), where a test or phase that cannot run
/// must fail instead of being skipped.
#[must_use]
pub fn in_ci() -> bool {
    env::var("CI").is_ok_and(|ci| ci == "true" || ci == "1")
}

/// Bytes free to unprivileged writers on the filesystem that holds `path`, or `None` when
/// `statvfs` fails.
#[must_use]
pub fn free_bytes(path: &Path) -> Option<u64> {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(path.as_os_str().as_bytes()).ok()?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `path` is NUL-terminated and `stats` is a valid out pointer; statvfs writes the
    // whole struct when it returns 0.
    let stats = unsafe {
        if libc::statvfs(path.as_ptr(), stats.as_mut_ptr()) != 0 {
            return None;
        }
        stats.assume_init()
    };
    Some(stats.f_bavail.saturating_mul(stats.f_frsize))
}

/// Find an executable called `name` on `PATH`.
#[must_use]
pub fn find_on_path(name: &str) -> Option<PathBuf> {
    let path = env::var_os("PATH")?;
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| is_executable(candidate))
}

/// `$CARGO_HOME/bin` (default `~/.cargo/bin`), where `cargo install` puts binaries.
#[must_use]
pub fn cargo_bin_dir() -> Option<PathBuf> {
    match env::var_os("CARGO_HOME") {
        Some(home) if !home.is_empty() => Some(PathBuf::from(home).join("bin")),
        _ => env::var_os("HOME").map(|home| PathBuf::from(home).join(".cargo").join("bin")),
    }
}

#[must_use]
pub fn is_executable(path: &Path) -> bool {
    fs::metadata(path).is_ok_and(|meta| meta.is_file() && meta.mode() & 0o111 != 0)
}

/// `PATH` with `dir` in front, or `None` when `dir` is already on it.
pub fn path_with(dir: &Path) -> Result<Option<OsString>> {
    let current = env::var_os("PATH").unwrap_or_default();
    if env::split_paths(&current).any(|entry| entry == dir) {
        return Ok(None);
    }
    let joined =
        env::join_paths(std::iter::once(dir.to_path_buf()).chain(env::split_paths(&current)))
            .with_context(|| format!("cannot put {} on PATH", dir.display()))?;
    Ok(Some(joined))
}

/// Remove ANSI escape sequences (colour codes) from a line of output.
#[must_use]
pub fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            if chars.peek() == Some(&'[') {
                chars.next();
                // CSI: parameters and intermediates, then one final byte in '@'..='~'.
                for c in chars.by_ref() {
                    if ('@'..='~').contains(&c) {
                        break;
                    }
                }
            }
            continue;
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strips_colour_codes() {
        assert_eq!(
            strip_ansi("test result: \u{1b}[32mok\u{1b}[0m. 3 passed"),
            "test result: ok. 3 passed"
        );
        assert_eq!(strip_ansi("plain"), "plain");
    }

    #[test]
    fn recognises_outer_cargo_variables() {
        for key in [
            "CARGO_PKG_NAME",
            "OUT_DIR",
            "CARGO_CFG_TARGET_OS",
            "CARGO_MAKEFLAGS",
        ] {
            assert!(
                matches(OsStr::new(key), OUTER_CARGO_VARS, OUTER_CARGO_PREFIXES),
                "{key}"
            );
        }
        for key in [
            "RUSTC_WORKSPACE_WRAPPER",
            "CLIPPY_ARGS",
            "CARGO_PROFILE_RELEASE_LTO",
        ] {
            assert!(
                matches(OsStr::new(key), BUILD_CONFIG_VARS, BUILD_CONFIG_PREFIXES),
                "{key}"
            );
        }
        for key in ["PATH", "HOME", "CARGO_HOME", "RUSTUP_TOOLCHAIN", "CARGO"] {
            assert!(
                !matches(OsStr::new(key), OUTER_CARGO_VARS, OUTER_CARGO_PREFIXES)
                    && !matches(OsStr::new(key), BUILD_CONFIG_VARS, BUILD_CONFIG_PREFIXES),
                "{key}"
            );
        }
    }

    #[test]
    fn streams_and_keeps_lines() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo one; echo two >&2; printf three"]);
        let output = run_streaming(&mut cmd, StdoutTo::Stderr).expect("sh runs");
        assert!(output.status.success());
        let mut lines = output.lines;
        lines.sort();
        assert_eq!(lines, ["one", "three", "two"]);
    }

    #[test]
    fn does_not_wait_for_a_leftover_process_holding_the_pipes() {
        let mut cmd = Command::new("sh");
        cmd.args(["-c", "echo started; sleep 5 & exit 3"]);
        let started = Instant::now();
        let output = run_streaming(&mut cmd, StdoutTo::Stderr).expect("sh runs");
        assert_eq!(output.status.code(), Some(3));
        assert_eq!(output.lines, ["started"]);
        assert!(started.elapsed() < Duration::from_secs(10));
    }
}
