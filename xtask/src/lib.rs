//! jobwatch's developer commands, and the one code path that builds the eBPF object.
//!
//! The binary (`cargo xtask ...`, see `main.rs`) is a thin command-line layer over these modules.
//! `sensor/build.rs` uses [`ebpf::build`] directly, so `cargo build -p jobwatch-sensor` and
//! `cargo xtask build-ebpf` run the very same build with the very same flags and target
//! directory.
//!
//! Everything here reports failures as `anyhow` errors with context; nothing panics outside tests.

pub mod bench;
pub mod dockerfile;
pub mod ebpf;
pub mod image;
pub mod json;
pub mod manifests;
pub mod oci;
pub mod process;
pub mod run;
pub mod setup;
pub mod test;

use std::path::{Path, PathBuf};

/// The workspace root, as known when this crate was compiled (the parent of `xtask/`).
#[must_use]
pub fn workspace_root() -> PathBuf {
    let manifest_dir = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest_dir
        .parent()
        .map_or_else(|| manifest_dir.to_path_buf(), Path::to_path_buf)
}

/// The target directory that host builds (`cargo build`, `cargo test`) of the workspace use.
///
/// Honours `CARGO_TARGET_DIR` (relative paths are taken relative to the workspace root, where
/// xtask runs cargo); otherwise `<root>/target`.
#[must_use]
pub fn host_target_dir(workspace_root: &Path) -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => workspace_root.join(dir),
        _ => workspace_root.join("target"),
    }
}
