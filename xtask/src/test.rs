//! `cargo xtask test`: formatting, lints, unit tests and privileged integration tests, with one
//! summary at the end.
//!
//! Every phase runs even when an earlier one failed, so one run shows everything that is wrong.
//! Child output is streamed live and scanned for libtest's `test result:` lines.

use std::{
    path::Path,
    process::{Command, ExitCode, ExitStatus},
    time::Instant,
};

use anyhow::Result;

use crate::{
    ebpf, manifests,
    process::{self, StdoutTo},
    setup,
};

/// The package of the privileged integration tests (`tests/`).
pub const PRIVILEGED_TESTS_PACKAGE: &str = "jobwatch-tests";

/// Below this much free disk a clean `cargo xtask test` may not fit (measured: a clean run
/// took 2.4 GiB, with line tables only and without incremental state; 15 GiB before).
const LOW_DISK_BYTES: u64 = 4 << 30;

fn gib(bytes: u64) -> String {
    format!("{:.1} GiB", bytes as f64 / f64::from(1u32 << 30))
}

/// Counts summed over libtest's `test result:` lines.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Counts {
    pub passed: u64,
    pub failed: u64,
    pub ignored: u64,
}

impl Counts {
    fn add(&mut self, other: Self) {
        self.passed += other.passed;
        self.failed += other.failed;
        self.ignored += other.ignored;
    }
}

/// Parse one libtest summary line:
/// `test result: ok. 3 passed; 0 failed; 1 ignored; 0 measured; 0 filtered out; finished in 0.01s`
/// (colour codes allowed).
#[must_use]
pub fn parse_summary(line: &str) -> Option<Counts> {
    let line = process::strip_ansi(line);
    let rest = line.trim_start().strip_prefix("test result: ")?;
    let mut counts = Counts::default();
    let mut found = false;
    for part in rest.split(';') {
        // "ok. 3 passed", " 0 failed", " 0 filtered out": a number followed by a label.
        let mut words = part
            .split_whitespace()
            .skip_while(|word| word.parse::<u64>().is_err());
        let (Some(number), Some(label)) = (words.next(), words.next()) else {
            continue;
        };
        let Ok(number) = number.parse::<u64>() else {
            continue;
        };
        match label {
            "passed" => counts.passed = number,
            "failed" => counts.failed = number,
            "ignored" => counts.ignored = number,
            _ => continue,
        }
        found = true;
    }
    found.then_some(counts)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// fmt, clippy: passes or fails.
    Check,
    /// cargo test: also counts tests.
    Tests,
}

enum Outcome {
    Ran {
        status: ExitStatus,
        counts: Counts,
        summaries: usize,
    },
    /// Did not run. Under CI (`CI=true`) a skipped phase counts as failed: a test that cannot
    /// run must not pass silently there.
    Skipped { reason: String, fails: bool },
}

struct Phase {
    name: &'static str,
    kind: Kind,
    outcome: Outcome,
    note: String,
}

impl Phase {
    fn failed(&self) -> bool {
        match &self.outcome {
            Outcome::Ran { status, counts, .. } => !status.success() || counts.failed > 0,
            Outcome::Skipped { fails, .. } => *fails,
        }
    }

    fn summary_line(&self) -> String {
        match &self.outcome {
            Outcome::Skipped { reason, fails } => {
                let verdict = if *fails {
                    "FAILED: skipped under CI"
                } else {
                    "SKIPPED"
                };
                format!("{}: {verdict} ({reason})", self.name)
            }
            Outcome::Ran { status, .. } if self.kind == Kind::Check => {
                if status.success() {
                    format!("{}: ok", self.name)
                } else {
                    format!("{}: FAILED ({status})", self.name)
                }
            }
            Outcome::Ran {
                status,
                counts,
                summaries,
            } => {
                let mut notes = Vec::new();
                if counts.ignored > 0 {
                    notes.push(format!("{} ignored", counts.ignored));
                }
                if !self.note.is_empty() {
                    notes.push(self.note.clone());
                }
                if !status.success() && counts.failed == 0 {
                    notes.push(format!(
                        "FAILED: cargo ended with {status} after {summaries} test binaries \
                         reported; a build error or a crashed test binary, see above"
                    ));
                }
                let mut line = format!(
                    "{}: {} passed, {} failed",
                    self.name, counts.passed, counts.failed
                );
                if !notes.is_empty() {
                    line.push_str(&format!(" ({})", notes.join("; ")));
                }
                line
            }
        }
    }
}

fn run_phase(name: &'static str, kind: Kind, mut cmd: Command) -> Result<Phase> {
    eprintln!("==> {name}: {}", process::describe(&cmd));
    let started = Instant::now();
    let output = process::run_streaming(&mut cmd, StdoutTo::Stdout)?;
    let mut counts = Counts::default();
    let mut summaries = 0;
    for line in &output.lines {
        if let Some(found) = parse_summary(line) {
            counts.add(found);
            summaries += 1;
        }
    }
    eprintln!(
        "==> {name}: {} in {:.1}s",
        if output.status.success() {
            "ok"
        } else {
            "FAILED"
        },
        started.elapsed().as_secs_f64()
    );
    Ok(Phase {
        name,
        kind,
        outcome: Outcome::Ran {
            status: output.status,
            counts,
            summaries,
        },
        note: String::new(),
    })
}

/// Validates `deploy/` against the Kubernetes schemas; each resource is one check.
fn manifests_phase(workspace_root: &Path) -> Phase {
    use std::os::unix::process::ExitStatusExt as _;
    eprintln!(
        "==> manifests: kubernetes-validate --strict (Kubernetes {}) of deploy/",
        manifests::KUBERNETES_VERSION
    );
    let started = Instant::now();
    let out = crate::host_target_dir(workspace_root).join("manifests");
    let (counts, ok, note) = match manifests::validate(workspace_root, &out) {
        Ok(report) => (
            Counts {
                passed: report.passed,
                failed: report.failed,
                ignored: 0,
            },
            report.failed == 0 && report.passed > 0,
            format!("Kubernetes {}", manifests::KUBERNETES_VERSION),
        ),
        Err(error) => {
            eprintln!("==> manifests: cannot validate: {error:#}");
            (
                Counts {
                    passed: 0,
                    failed: 1,
                    ignored: 0,
                },
                false,
                format!("cannot validate: {error}"),
            )
        }
    };
    eprintln!(
        "==> manifests: {} in {:.1}s",
        if ok { "ok" } else { "FAILED" },
        started.elapsed().as_secs_f64()
    );
    Phase {
        name: "manifests",
        kind: Kind::Tests,
        outcome: Outcome::Ran {
            status: ExitStatus::from_raw(if ok { 0 } else { 1 << 8 }),
            counts,
            summaries: 1,
        },
        note,
    }
}

/// Whether the workspace has the privileged tests package yet.
fn has_package(workspace_root: &Path, package: &str) -> bool {
    let mut cmd = process::host_cargo(workspace_root);
    cmd.args(["pkgid", "--quiet", package]);
    process::probe(&mut cmd).is_some()
}

/// Run every phase and print the summary. The exit code is non-zero when any phase failed.
pub fn run(workspace_root: &Path) -> Result<ExitCode> {
    let started = Instant::now();
    let in_ci = process::in_ci();
    let free_at_start = process::free_bytes(workspace_root);
    if let Some(free) = free_at_start {
        eprintln!("==> disk: {} free for target/", gib(free));
        if free < LOW_DISK_BYTES {
            eprintln!(
                "==> disk: WARNING: a clean build and test run needs about {}; builds may fail \
                 with \"No space left on device\"",
                gib(LOW_DISK_BYTES)
            );
        }
    }
    setup::run(workspace_root)?;

    let host = |args: &[&str]| {
        let mut cmd = process::host_cargo(workspace_root);
        cmd.args(args);
        // A CI run builds once from a fresh clone: incremental state would only take disk
        // (gigabytes of target/debug/incremental) and time.
        if in_ci && std::env::var_os("CARGO_INCREMENTAL").is_none() {
            cmd.env("CARGO_INCREMENTAL", "0");
        }
        cmd
    };
    let ebpf_dir = ebpf::crate_dir(workspace_root);
    let has_privileged = has_package(workspace_root, PRIVILEGED_TESTS_PACKAGE);

    let mut phases = Vec::new();
    phases.push(run_phase(
        "fmt (workspace)",
        Kind::Check,
        host(&["fmt", "--all", "--", "--check"]),
    )?);
    let mut fmt_ebpf = host(&["fmt", "--", "--check"]);
    fmt_ebpf.current_dir(&ebpf_dir);
    phases.push(run_phase("fmt (sensor-ebpf)", Kind::Check, fmt_ebpf)?);
    phases.push(run_phase(
        "clippy (workspace)",
        Kind::Check,
        host(&[
            "clippy",
            "--workspace",
            "--all-targets",
            "--",
            "-D",
            "warnings",
        ]),
    )?);
    let mut clippy_ebpf = ebpf::cargo(workspace_root, "clippy")?;
    clippy_ebpf.args(["--", "-D", "warnings"]);
    phases.push(run_phase("clippy (sensor-ebpf)", Kind::Check, clippy_ebpf)?);

    phases.push(manifests_phase(workspace_root));

    // --no-fail-fast: run every test binary, so that the counts are complete.
    let mut unit = host(&["test", "--workspace", "--no-fail-fast"]);
    if has_privileged {
        unit.args(["--exclude", PRIVILEGED_TESTS_PACKAGE]);
    }
    phases.push(run_phase("unit tests", Kind::Tests, unit)?);

    if has_privileged {
        let uid = process::effective_uid()?;
        // Each privileged test that really ran (did not skip for lack of privileges) writes
        // its name to this file.
        let ran_log = workspace_root
            .join("target")
            .join("privileged-tests-ran.txt");
        let _ = std::fs::remove_file(&ran_log);
        let mut cmd = host(&[
            "test",
            "--no-fail-fast",
            "-p",
            PRIVILEGED_TESTS_PACKAGE,
            "--",
            "--test-threads=1",
        ]);
        cmd.env("JOBWATCH_PRIVILEGED_LOG", &ran_log);
        let mut phase = run_phase("privileged tests", Kind::Tests, cmd)?;
        let ran = std::fs::read_to_string(&ran_log)
            .map(|text| text.lines().filter(|l| !l.trim().is_empty()).count())
            .unwrap_or(0);
        phase.note = if uid == 0 {
            format!("ran as root; {ran} needed root and ran for real")
        } else {
            format!("ran as uid {uid}, not root; {ran} needed root and ran for real")
        };
        phases.push(phase);
    } else {
        eprintln!(
            "==> privileged tests: WARNING: package {PRIVILEGED_TESTS_PACKAGE} is not in the \
             workspace; skipping{}",
            if in_ci { " (a failure under CI)" } else { "" }
        );
        phases.push(Phase {
            name: "privileged tests",
            kind: Kind::Tests,
            outcome: Outcome::Skipped {
                reason: format!("package {PRIVILEGED_TESTS_PACKAGE} is not in the workspace"),
                fails: in_ci,
            },
            note: String::new(),
        });
    }

    let mut total = Counts::default();
    println!();
    println!("==> summary ({:.0}s)", started.elapsed().as_secs_f64());
    for phase in &phases {
        if let Outcome::Ran { counts, .. } = phase.outcome {
            total.add(counts);
        }
        println!("{}", phase.summary_line());
    }
    let failed: Vec<&str> = phases
        .iter()
        .filter(|phase| phase.failed())
        .map(|phase| phase.name)
        .collect();
    if !failed.is_empty() {
        println!("failed phases: {}", failed.join(", "));
    }
    if let (Some(start), Some(end)) = (free_at_start, process::free_bytes(workspace_root)) {
        println!(
            "disk: {} free at the start, {} at the end",
            gib(start),
            gib(end)
        );
    }
    println!("{} passed, {} failed", total.passed, total.failed);
    Ok(if failed.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_libtest_summaries() {
        assert_eq!(
            parse_summary(
                "test result: ok. 57 passed; 0 failed; 2 ignored; 0 measured; 0 filtered out; \
                 finished in 0.02s"
            ),
            Some(Counts {
                passed: 57,
                failed: 0,
                ignored: 2
            })
        );
        assert_eq!(
            parse_summary(
                "test result: \u{1b}[31mFAILED\u{1b}[0m. 8 passed; 1 failed; 0 ignored; 0 \
                 measured; 0 filtered out; finished in 3.10s"
            ),
            Some(Counts {
                passed: 8,
                failed: 1,
                ignored: 0
            })
        );
        assert_eq!(parse_summary("running 3 tests"), None);
        assert_eq!(parse_summary("test foo ... ok"), None);
    }
}
