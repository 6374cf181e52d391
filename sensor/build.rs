//! Builds the eBPF object through `xtask::ebpf::build`, the same code path as
//! `cargo xtask build-ebpf`, and hands its path to the sensor as `JOBWATCH_EBPF_OBJECT`
//! (for `include_bytes_aligned!(env!("JOBWATCH_EBPF_OBJECT"))`).
//!
//! The nested cargo's output goes to this script's stderr, which cargo shows when the build
//! fails; the error printed last repeats the compiler's messages.

use std::{path::PathBuf, process::ExitCode};

use anyhow::{Context as _, Result};

fn main() -> ExitCode {
    match run() {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            // `{:#}`: the whole chain of causes, without a backtrace.
            eprintln!("error: {error:#}");
            ExitCode::FAILURE
        }
    }
}

fn run() -> Result<()> {
    let manifest_dir = PathBuf::from(
        std::env::var_os("CARGO_MANIFEST_DIR").context("CARGO_MANIFEST_DIR is not set")?,
    );
    let root = manifest_dir
        .parent()
        .context("the sensor crate has no parent directory")?;

    for input in [
        "sensor-ebpf/src",
        "sensor-ebpf/Cargo.toml",
        "sensor-ebpf/Cargo.lock",
        "sensor-common/src",
        "sensor-common/Cargo.toml",
    ] {
        println!("cargo:rerun-if-changed={}", root.join(input).display());
    }
    println!("cargo:rerun-if-changed=build.rs");

    let object = xtask::ebpf::build(root)?;
    println!("cargo:rustc-env=JOBWATCH_EBPF_OBJECT={}", object.display());
    Ok(())
}
