//! `cargo xtask run`: set up, build the sensor in release mode, and replace this process with it.

use std::{
    convert::Infallible,
    ffi::OsString,
    io,
    os::{fd::AsFd as _, unix::process::CommandExt as _},
    path::Path,
    process::{Command, Stdio},
};

use anyhow::{Context as _, Result, bail};

use crate::{process, setup};

/// The sensor's package and binary.
pub const SENSOR_PACKAGE: &str = "jobwatch-sensor";
pub const SENSOR_BIN: &str = "sensor";

/// Run the sensor with `args`. On success this never returns: the sensor takes over the process
/// (its exit code and signals are the command's). Everything before that goes to stderr; stdout
/// is the sensor's alone.
pub fn run(workspace_root: &Path, args: &[OsString]) -> Result<Infallible> {
    setup::run(workspace_root)?;

    let mut build = process::host_cargo(workspace_root);
    build.args([
        "build",
        "--release",
        "--package",
        SENSOR_PACKAGE,
        "--bin",
        SENSOR_BIN,
    ]);
    let stderr = io::stderr()
        .as_fd()
        .try_clone_to_owned()
        .context("failed to duplicate stderr")?;
    let status = build
        .stdout(Stdio::from(stderr))
        .status()
        .with_context(|| format!("failed to start `{}`", process::describe(&build)))?;
    if !status.success() {
        bail!("`{}` failed ({status})", process::describe(&build));
    }

    let binary = crate::host_target_dir(workspace_root)
        .join("release")
        .join(SENSOR_BIN);
    if !process::is_executable(&binary) {
        bail!(
            "the build succeeded but {} is not there (is CARGO_BUILD_TARGET or build.target-dir \
             set?)",
            binary.display()
        );
    }
    eprintln!("==> {} {}", binary.display(), describe_args(args));
    let mut sensor = Command::new(&binary);
    sensor.args(args);
    process::remove_outer_cargo_env(&mut sensor);
    let error = sensor.exec();
    Err(error).with_context(|| format!("failed to execute {}", binary.display()))
}

fn describe_args(args: &[OsString]) -> String {
    args.iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
