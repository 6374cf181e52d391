//! The one build of the eBPF object, used by `cargo xtask build-ebpf`, `cargo xtask test`
//! (clippy of the eBPF crate) and `sensor/build.rs`.
//!
//! The eBPF crate is excluded from the workspace and compiled for `bpfel-unknown-none` on the
//! stable toolchain: `RUSTC_BOOTSTRAP=1` unlocks `-Z build-std=core` (there is no prebuilt `core`
//! for BPF, so `rust-src` is needed) and `bpf-linker` links the LLVM bitcode into one object.
//! `-C debuginfo=2 -C link-arg=--btf` make the linker emit BTF, which aya-log and the loader
//! need.
//!
//! Like aya-build, the nested cargo must not inherit what an outer cargo or clippy put in the
//! environment (`RUSTC`, `RUSTC_WORKSPACE_WRAPPER=clippy-driver`, `CARGO_ENCODED_RUSTFLAGS`,
//! `CARGO_MAKEFLAGS`, `OUT_DIR`, `CARGO_PKG_*`, ...): see [`crate::process`]. Unlike aya-build it
//! writes into a fixed target directory, `<root>/target/ebpf`, so the build script and
//! `cargo xtask build-ebpf` share one cache and produce one object. That directory is separate
//! from the host build's, so the nested cargo never waits on a lock the outer cargo holds.

use std::{
    ffi::OsString,
    fs,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::process::{self, StdoutTo};

/// The eBPF crate's directory, relative to the workspace root.
pub const CRATE_DIR: &str = "sensor-ebpf";
/// Its package name, which is also the name of its bin target and of the object.
pub const PACKAGE: &str = "sensor-ebpf";
/// The BPF target (little-endian, as every architecture jobwatch runs on).
pub const TARGET: &str = "bpfel-unknown-none";
/// rustc flags for every crate of the eBPF build: full debug info so that bpf-linker can emit BTF.
pub const RUSTFLAGS: &[&str] = &["-C", "debuginfo=2", "-C", "link-arg=--btf"];

/// What to do when a prerequisite is missing.
pub const SETUP_HINT: &str = "run `cargo xtask setup` to install it (`cargo xtask test` and \
                              `cargo xtask run` run the setup first)";

/// `<root>/sensor-ebpf`.
#[must_use]
pub fn crate_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join(CRATE_DIR)
}

/// `<root>/target/ebpf`, the eBPF build's own target directory.
#[must_use]
pub fn target_dir(workspace_root: &Path) -> PathBuf {
    workspace_root.join("target").join("ebpf")
}

/// Where the object lands: `<root>/target/ebpf/bpfel-unknown-none/release/sensor-ebpf`.
#[must_use]
pub fn object_path(workspace_root: &Path) -> PathBuf {
    target_dir(workspace_root)
        .join(TARGET)
        .join("release")
        .join(PACKAGE)
}

/// Build the eBPF object and return its path.
///
/// The nested cargo's output is streamed to stderr (never stdout: in a build script, stdout is
/// cargo's directive channel). On failure the error carries the compiler's messages, so that
/// they reach whoever ran the outer build.
pub fn build(workspace_root: &Path) -> Result<PathBuf> {
    check_prerequisites(workspace_root)?;
    let mut cmd = cargo(workspace_root, "build")?;
    let output = process::run_streaming(&mut cmd, StdoutTo::Stderr)?;
    if !output.status.success() {
        bail!(
            "building the eBPF programs failed ({}): `{}` in {}\n{}",
            output.status,
            process::describe(&cmd),
            crate_dir(workspace_root).display(),
            error_excerpt(&output.lines),
        );
    }
    let object = object_path(workspace_root);
    let size = fs::metadata(&object)
        .with_context(|| {
            format!(
                "the eBPF build succeeded but its object {} is missing",
                object.display()
            )
        })?
        .len();
    if size == 0 {
        bail!("the eBPF object {} is empty", object.display());
    }
    Ok(object)
}

/// A cargo command (`build`, `clippy`, ...) for the eBPF crate with the eBPF build's
/// environment, flags, target and target directory. Further arguments (`-- -D warnings`) can be
/// appended.
pub fn cargo(workspace_root: &Path, subcommand: &str) -> Result<Command> {
    let mut cmd = Command::new(process::cargo_program());
    cmd.current_dir(crate_dir(workspace_root));
    process::remove_build_config_env(&mut cmd);
    process::keep_colour(&mut cmd);
    cmd.env("RUSTC_BOOTSTRAP", "1")
        .env("CARGO_ENCODED_RUSTFLAGS", RUSTFLAGS.join("\x1f"));
    if let Some(path) = bpf_linker_path_env()? {
        cmd.env("PATH", path);
    }
    cmd.args([
        subcommand,
        "--release",
        "--target",
        TARGET,
        "-Z",
        "build-std=core",
        "--target-dir",
    ])
    .arg(target_dir(workspace_root));
    Ok(cmd)
}

/// Fail early, with the fix, when something the eBPF build needs is missing; otherwise the nested
/// cargo fails minutes later with a less helpful message.
pub fn check_prerequisites(workspace_root: &Path) -> Result<()> {
    let dir = crate_dir(workspace_root);
    if !dir.join("Cargo.toml").is_file() {
        bail!(
            "the eBPF crate is missing: {} has no Cargo.toml",
            dir.display()
        );
    }
    if find_bpf_linker().is_none() {
        bail!(
            "bpf-linker is not installed (not on PATH, not in ~/.cargo/bin); it links the eBPF \
             object: {SETUP_HINT}"
        );
    }
    let sysroot = rust_sysroot(&dir)?;
    if !rust_src_present(&sysroot) {
        bail!(
            "the rust-src component is not installed for the toolchain in {} ({} lacks the core \
             library sources that -Z build-std=core compiles): {SETUP_HINT}",
            dir.display(),
            sysroot.display(),
        );
    }
    Ok(())
}

/// The sysroot of the rustc that a cargo started in `dir` with the eBPF build's environment would
/// use (the rustup proxy honours `RUSTUP_TOOLCHAIN` and `rust-toolchain.toml` files).
pub fn rust_sysroot(dir: &Path) -> Result<PathBuf> {
    let mut cmd = Command::new("rustc");
    cmd.current_dir(dir).args(["--print", "sysroot"]);
    process::remove_build_config_env(&mut cmd);
    let sysroot = process::probe(&mut cmd)
        .with_context(|| format!("`rustc --print sysroot` failed in {}", dir.display()))?;
    Ok(PathBuf::from(sysroot))
}

/// Whether the `rust-src` component is installed in `sysroot`.
#[must_use]
pub fn rust_src_present(sysroot: &Path) -> bool {
    sysroot
        .join("lib/rustlib/src/rust/library/core/Cargo.toml")
        .is_file()
}

/// bpf-linker on `PATH`, else in cargo's bin directory (a fresh `cargo install` before the shell
/// picked up `~/.cargo/bin`).
#[must_use]
pub fn find_bpf_linker() -> Option<PathBuf> {
    process::find_on_path("bpf-linker").or_else(|| {
        process::cargo_bin_dir()
            .map(|dir| dir.join("bpf-linker"))
            .filter(|path| process::is_executable(path))
    })
}

/// rustc finds the linker on `PATH`: put bpf-linker's directory there when it is not.
fn bpf_linker_path_env() -> Result<Option<OsString>> {
    match find_bpf_linker().as_deref().and_then(Path::parent) {
        Some(dir) => process::path_with(dir),
        None => Ok(None),
    }
}

/// The part of a failed build's output worth repeating in the error: from the first `error`
/// line on (at most 80 lines), or else the last 30 lines.
fn error_excerpt(lines: &[String]) -> String {
    const MAX_ERROR_LINES: usize = 80;
    const TAIL_LINES: usize = 30;
    let clean: Vec<String> = lines.iter().map(|line| process::strip_ansi(line)).collect();
    let first_error = clean.iter().position(|line| line.starts_with("error"));
    let excerpt: Vec<&str> = match first_error {
        Some(start) => clean[start..]
            .iter()
            .take(MAX_ERROR_LINES)
            .map(String::as_str)
            .collect(),
        None => clean[clean.len().saturating_sub(TAIL_LINES)..]
            .iter()
            .map(String::as_str)
            .collect(),
    };
    excerpt.join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn object_lives_in_the_ebpf_target_dir() {
        assert_eq!(
            object_path(Path::new("/w")),
            Path::new("/w/target/ebpf/bpfel-unknown-none/release/sensor-ebpf")
        );
    }

    #[test]
    fn excerpt_starts_at_the_first_error() {
        let lines: Vec<String> = [
            "   Compiling core",
            "warning: x",
            "error[E0425]: y",
            "  --> a.rs",
        ]
        .into_iter()
        .map(String::from)
        .collect();
        assert_eq!(error_excerpt(&lines), "error[E0425]: y\n  --> a.rs");
        let lines = vec![String::from("killed")];
        assert_eq!(error_excerpt(&lines), "killed");
    }
}
