//! `cargo xtask setup`: install what building and testing jobwatch needs, idempotently.
//!
//! Every requirement is one row of [`REQUIREMENTS`]; each prints one line
//! (`setup: <what> ... present` or `... installing`) and costs a few milliseconds when present.
//! Nothing asks a question (`DEBIAN_FRONTEND=noninteractive`, stdin closed). Root is needed only
//! when an apt package is missing.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{
    ebpf,
    process::{self, StdoutTo},
};

/// How a requirement is checked and installed.
#[derive(Clone, Copy, Debug)]
pub enum Kind {
    /// A Debian package, checked with `dpkg-query`, installed with `apt-get install -y`.
    Apt(&'static str),
    /// The `rust-src` component of the toolchain the eBPF crate builds with.
    RustSrc,
    /// bpf-linker, installed with `cargo install` against LLVM 22.
    BpfLinker,
    /// A Python package at an exact version, checked with `python3 -m pip show`, installed with
    /// `python3 -m pip install`.
    Pip {
        package: &'static str,
        version: &'static str,
    },
}

/// One thing setup makes sure of.
#[derive(Clone, Copy, Debug)]
pub struct Requirement {
    pub kind: Kind,
    pub why: &'static str,
}

/// Everything setup installs, in the order it installs it (bpf-linker needs the LLVM packages).
pub const REQUIREMENTS: &[Requirement] = &[
    Requirement {
        kind: Kind::Apt("llvm-22-dev"),
        why: "LLVM 22, which bpf-linker is built against and loads at run time (rustc 1.95 uses \
              LLVM 22)",
    },
    Requirement {
        kind: Kind::Apt("libpolly-22-dev"),
        why: "needed to link bpf-linker against LLVM 22",
    },
    Requirement {
        kind: Kind::Apt("libzstd-dev"),
        why: "needed to link bpf-linker against LLVM 22",
    },
    Requirement {
        kind: Kind::Apt("zlib1g-dev"),
        why: "needed to link bpf-linker against LLVM 22",
    },
    Requirement {
        kind: Kind::Apt("protobuf-compiler"),
        why: "protoc, which the gRPC crates (tonic, k8s-cri) need to build",
    },
    Requirement {
        kind: Kind::Apt("containerd"),
        why: "containerd 1.6 with its CRI plugin, which the integration tests drive like the \
              kubelet (tests/src/containerd.rs)",
    },
    Requirement {
        kind: Kind::Apt("runc"),
        why: "the OCI runtime containerd's runc shim starts the test pods with",
    },
    Requirement {
        kind: Kind::Apt("containernetworking-plugins"),
        why: "the CNI bridge plugin that gives test pods without hostNetwork a network \
              namespace of their own (tests/src/containerd.rs)",
    },
    Requirement {
        kind: Kind::Apt("busybox-static"),
        why: "the static busybox the test container images are built from (tests/src/image.rs)",
    },
    Requirement {
        kind: Kind::Apt("kubectl"),
        why: "`kubectl kustomize` builds deploy/ and its variants for validation",
    },
    Requirement {
        kind: Kind::Pip {
            package: "kubernetes-validate",
            version: "1.37.0",
        },
        why: "validates deploy/ against the Kubernetes schemas it ships, offline (the manifests \
              phase of `cargo xtask test`)",
    },
    Requirement {
        kind: Kind::RustSrc,
        why: "the core library sources that `-Z build-std=core` compiles for bpfel-unknown-none",
    },
    Requirement {
        kind: Kind::BpfLinker,
        why: "links the eBPF object and emits its BTF",
    },
];

/// The apt packages of [`REQUIREMENTS`] that building the binaries needs (the rest are for
/// testing); the `Dockerfile`'s build stage installs exactly these.
pub const BUILD_APT_PACKAGES: &[&str] = &[
    "llvm-22-dev",
    "libpolly-22-dev",
    "libzstd-dev",
    "zlib1g-dev",
    "protobuf-compiler",
];

/// bpf-linker's version requirement and features: 0.13 supports LLVM 21 to 23.
pub const BPF_LINKER_VERSION: &str = "^0.13";
pub const BPF_LINKER_FEATURES: &str = "llvm-22";
/// Put first on `PATH` while building bpf-linker, so that llvm-sys finds LLVM 22's
/// `llvm-config` and not Debian's default one.
pub const LLVM_BIN_DIR: &str = "/usr/lib/llvm-22/bin";

/// Check every requirement and install what is missing.
pub fn run(workspace_root: &Path) -> Result<()> {
    let started = Instant::now();
    ensure_apt_packages()?;
    ensure_pip_packages()?;
    ensure_rust_src(workspace_root)?;
    ensure_bpf_linker(workspace_root)?;
    eprintln!("setup: done in {}", seconds(started.elapsed()));
    Ok(())
}

fn report(what: &str, state: &str) {
    eprintln!("setup: {what} ... {state}");
}

fn seconds(duration: Duration) -> String {
    format!("{:.1}s", duration.as_secs_f64())
}

/// The reason a requirement of `kind` is there, for the line that says it is being installed.
fn why(kind: Kind) -> &'static str {
    REQUIREMENTS
        .iter()
        .find(|requirement| match (requirement.kind, kind) {
            (Kind::Apt(a), Kind::Apt(b)) => a == b,
            (Kind::RustSrc, Kind::RustSrc) | (Kind::BpfLinker, Kind::BpfLinker) => true,
            (Kind::Pip { package: a, .. }, Kind::Pip { package: b, .. }) => a == b,
            _ => false,
        })
        .map_or("", |requirement| requirement.why)
}

fn apt_packages() -> impl Iterator<Item = &'static str> {
    REQUIREMENTS
        .iter()
        .filter_map(|requirement| match requirement.kind {
            Kind::Apt(package) => Some(package),
            Kind::RustSrc | Kind::BpfLinker | Kind::Pip { .. } => None,
        })
}

/// Whether `package` is installed, by `dpkg-query`.
fn dpkg_installed(package: &str) -> Result<bool> {
    let output = Command::new("dpkg-query")
        .args(["--show", "--showformat=${Status}", package])
        .stdin(std::process::Stdio::null())
        .output();
    match output {
        Ok(output) => Ok(output.status.success()
            && String::from_utf8_lossy(&output.stdout).trim() == "install ok installed"),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => bail!(
            "dpkg-query not found: setup installs system packages with apt (Debian/Ubuntu). \
             Install these by hand: {}",
            apt_packages().collect::<Vec<_>>().join(" ")
        ),
        Err(error) => Err(error).context("failed to run dpkg-query"),
    }
}

fn ensure_apt_packages() -> Result<()> {
    let mut missing = Vec::new();
    for package in apt_packages() {
        let present = dpkg_installed(package)?;
        if present {
            report(&format!("apt package {package}"), "present");
        } else {
            report(
                &format!("apt package {package}"),
                &format!("missing ({})", why(Kind::Apt(package))),
            );
        }
        if !present {
            missing.push(package);
        }
    }
    if missing.is_empty() {
        return Ok(());
    }

    let uid = process::effective_uid()?;
    if uid != 0 {
        bail!(
            "setup must install apt packages ({}) and that needs root, but we run as uid {uid}. \
             Run `sudo apt-get install -y {}`, or run this command as root",
            missing.join(", "),
            missing.join(" "),
        );
    }

    let started = Instant::now();
    report("apt-get update", "running");
    apt_get(&["update"])?;
    report(
        &format!("apt-get install {}", missing.join(" ")),
        "installing",
    );
    let mut install = vec!["install", "-y"];
    install.extend(&missing);
    apt_get(&install)?;
    for package in &missing {
        if !dpkg_installed(package)? {
            bail!("apt-get install succeeded but {package} is still not installed");
        }
    }
    report(
        &format!("apt packages {}", missing.join(" ")),
        &format!("installed in {}", seconds(started.elapsed())),
    );
    Ok(())
}

fn apt_get(args: &[&str]) -> Result<()> {
    let mut cmd = Command::new("apt-get");
    cmd.args(args)
        .env("DEBIAN_FRONTEND", "noninteractive")
        .env("NEEDRESTART_MODE", "a");
    let output = process::run_streaming(&mut cmd, StdoutTo::Stderr)?;
    if !output.status.success() {
        bail!("`{}` failed ({})", process::describe(&cmd), output.status);
    }
    Ok(())
}

/// The installed version of a Python package, from `python3 -m pip show`.
fn pip_version(package: &str) -> Option<String> {
    let output = Command::new("python3")
        .args(["-m", "pip", "show", "--disable-pip-version-check", package])
        .stdin(std::process::Stdio::null())
        .output()
        .ok()?;
    if !output.status.success() {
        return None;
    }
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .find_map(|line| line.strip_prefix("Version:"))
        .map(|v| v.trim().to_string())
}

fn ensure_pip_packages() -> Result<()> {
    for requirement in REQUIREMENTS {
        let Kind::Pip { package, version } = requirement.kind else {
            continue;
        };
        let what = format!("python package {package} {version}");
        if pip_version(package).as_deref() == Some(version) {
            report(&what, "present");
            continue;
        }
        report(&what, &format!("installing ({})", requirement.why));
        let started = Instant::now();
        let mut cmd = Command::new("python3");
        cmd.args([
            "-m",
            "pip",
            "install",
            "--disable-pip-version-check",
            "--no-input",
            &format!("{package}=={version}"),
        ])
        .env("PIP_ROOT_USER_ACTION", "ignore");
        let output = process::run_streaming(&mut cmd, StdoutTo::Stderr).with_context(|| {
            format!(
                "`{}` (is python3 with pip installed?)",
                process::describe(&cmd)
            )
        })?;
        if !output.status.success() {
            bail!("`{}` failed ({})", process::describe(&cmd), output.status);
        }
        if pip_version(package).as_deref() != Some(version) {
            bail!(
                "`{}` succeeded but {package} {version} is still not installed",
                process::describe(&cmd)
            );
        }
        report(
            &what,
            &format!("installed in {}", seconds(started.elapsed())),
        );
    }
    Ok(())
}

/// The toolchain that builds the eBPF crate: its version (`1.95.0`) and its rustup name.
fn active_toolchain(dir: &Path) -> Result<(String, Option<String>)> {
    let mut rustc = Command::new("rustc");
    rustc.current_dir(dir).arg("--version");
    process::remove_build_config_env(&mut rustc);
    let version = process::probe(&mut rustc)
        .with_context(|| format!("`rustc --version` failed in {}", dir.display()))?;
    // "rustc 1.95.0 (59807616e 2026-04-14)"
    let version = version
        .split_whitespace()
        .nth(1)
        .unwrap_or(version.as_str())
        .to_owned();

    let mut rustup = Command::new("rustup");
    rustup.current_dir(dir).args(["show", "active-toolchain"]);
    process::remove_build_config_env(&mut rustup);
    // "stable-x86_64-unknown-linux-gnu (default)"
    let name = process::probe(&mut rustup)
        .and_then(|line| line.split_whitespace().next().map(str::to_owned));
    Ok((version, name))
}

fn ensure_rust_src(workspace_root: &Path) -> Result<()> {
    let dir = ebpf::crate_dir(workspace_root);
    let (version, toolchain) = active_toolchain(&dir)?;
    let what = format!("rust-src for {version}");
    if ebpf::rust_src_present(&ebpf::rust_sysroot(&dir)?) {
        report(&what, "present");
        return Ok(());
    }
    report(&what, &format!("installing ({})", why(Kind::RustSrc)));
    let Some(toolchain) = toolchain else {
        bail!(
            "rust-src is missing and rustup is not available to install it: install the rust-src \
             component of rustc {version} by hand"
        );
    };
    let started = Instant::now();
    let mut cmd = Command::new("rustup");
    cmd.current_dir(&dir)
        .args(["component", "add", "rust-src", "--toolchain", &toolchain]);
    process::remove_build_config_env(&mut cmd);
    let output = process::run_streaming(&mut cmd, StdoutTo::Stderr)?;
    if !output.status.success() {
        bail!("`{}` failed ({})", process::describe(&cmd), output.status);
    }
    if !ebpf::rust_src_present(&ebpf::rust_sysroot(&dir)?) {
        bail!(
            "`{}` succeeded but rust-src is still missing",
            process::describe(&cmd)
        );
    }
    report(
        &what,
        &format!("installed in {}", seconds(started.elapsed())),
    );
    Ok(())
}

/// `bpf-linker --version`, or `None` when it is missing or cannot run (for instance when the
/// LLVM library it was linked against is gone).
fn bpf_linker_version() -> Option<String> {
    let linker = ebpf::find_bpf_linker()?;
    process::probe(Command::new(linker).arg("--version"))
}

fn ensure_bpf_linker(workspace_root: &Path) -> Result<()> {
    if let Some(version) = bpf_linker_version() {
        report(&format!("bpf-linker ({version})"), "present");
        return Ok(());
    }
    let broken = ebpf::find_bpf_linker();
    let what = "bpf-linker";
    match &broken {
        Some(path) => report(
            what,
            &format!("{} does not run; reinstalling", path.display()),
        ),
        None => report(
            what,
            &format!("installing, about 2 minutes ({})", why(Kind::BpfLinker)),
        ),
    }

    let started = Instant::now();
    let mut cmd = process::host_cargo(workspace_root);
    process::remove_build_config_env(&mut cmd);
    cmd.args([
        "install",
        "bpf-linker",
        "--version",
        BPF_LINKER_VERSION,
        "--no-default-features",
        "--features",
        BPF_LINKER_FEATURES,
    ]);
    if broken.is_some() {
        cmd.arg("--force");
    }
    if let Some(path) = process::path_with(Path::new(LLVM_BIN_DIR))? {
        cmd.env("PATH", path);
    }
    let output = process::run_streaming(&mut cmd, StdoutTo::Stderr)?;
    if !output.status.success() {
        bail!("`{}` failed ({})", process::describe(&cmd), output.status);
    }
    let Some(version) = bpf_linker_version() else {
        bail!(
            "`{}` succeeded but bpf-linker still does not run",
            process::describe(&cmd)
        );
    };
    report(
        &format!("bpf-linker ({version})"),
        &format!("installed in {}", seconds(started.elapsed())),
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn apt_packages_come_before_the_linker_that_needs_them() {
        let linker = REQUIREMENTS
            .iter()
            .position(|r| matches!(r.kind, Kind::BpfLinker))
            .expect("bpf-linker is a requirement");
        let last_apt = REQUIREMENTS
            .iter()
            .rposition(|r| matches!(r.kind, Kind::Apt(_)))
            .expect("there are apt packages");
        assert!(last_apt < linker);
        assert!(apt_packages().any(|package| package == "protobuf-compiler"));
    }
}
