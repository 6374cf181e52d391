//! `cargo xtask run`: set up, build in release mode, then run the collector (embedded SQLite)
//! and the sensor reporting to it, on this node, until Ctrl-C.

use std::{
    ffi::OsString,
    io,
    os::{fd::AsFd as _, unix::process::CommandExt as _},
    path::{Path, PathBuf},
    process::{Child, Command, ExitCode, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{process, setup};

/// The sensor's package and binary.
pub const SENSOR_PACKAGE: &str = "jobwatch-sensor";
pub const SENSOR_BIN: &str = "sensor";
const COLLECTOR_PACKAGE: &str = "jobwatch-collector";
const COLLECTOR_BIN: &str = "collector";
const CLI_PACKAGE: &str = "jobwatch-cli";
const CLI_BIN: &str = "jobwatch";
/// Where the collector listens on this node.
const COLLECTOR_SOCKET: &str = "/run/jobwatch/collector.sock";

/// Runs the collector and the sensor with `args`; returns the sensor's exit code. Everything
/// but the sensor's events goes to stderr; stdout is the sensor's alone.
pub fn run(workspace_root: &Path, args: &[OsString]) -> Result<ExitCode> {
    setup::run(workspace_root)?;
    build(workspace_root)?;
    let release = crate::host_target_dir(workspace_root).join("release");
    let binary = |name: &str| -> Result<PathBuf> {
        let path = release.join(name);
        if !process::is_executable(&path) {
            bail!(
                "the build succeeded but {} is not there (is CARGO_BUILD_TARGET or \
                 build.target-dir set?)",
                path.display()
            );
        }
        Ok(path)
    };
    let (sensor_bin, collector_bin, cli_bin) = (
        binary(SENSOR_BIN)?,
        binary(COLLECTOR_BIN)?,
        binary(CLI_BIN)?,
    );

    let data = crate::host_target_dir(workspace_root).join("jobwatch");
    std::fs::create_dir_all(&data).with_context(|| format!("creating {}", data.display()))?;
    let db = data.join("collector.db");

    eprintln!(
        "==> {} --db {} --socket {COLLECTOR_SOCKET}",
        collector_bin.display(),
        db.display()
    );
    let mut collector = Command::new(&collector_bin);
    collector
        .arg("--db")
        .arg(&db)
        .args(["--socket", COLLECTOR_SOCKET]);
    process::remove_outer_cargo_env(&mut collector);
    // The collector has its own process group, so that the terminal's Ctrl-C stops only the
    // sensor: the sensor hands its last events to the collector (waiting up to 5 s for their
    // acknowledgement), and only then is the collector stopped. If this process dies first,
    // the kernel sends the collector SIGTERM.
    collector.process_group(0);
    // SAFETY: prctl is async-signal-safe; nothing else runs between fork and exec.
    unsafe {
        collector.pre_exec(|| {
            if libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGTERM) != 0 {
                return Err(io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut collector = collector
        .stdout(Stdio::from(io::stderr().as_fd().try_clone_to_owned()?))
        .spawn()
        .with_context(|| format!("failed to start {}", collector_bin.display()))?;
    let sensor = wait_for_socket(&mut collector, Path::new(COLLECTOR_SOCKET))
        .and_then(|()| start_sensor(&sensor_bin, &data, args));
    let mut sensor = match sensor {
        Ok(child) => child,
        Err(e) => {
            stop(&mut collector);
            return Err(e);
        }
    };
    eprintln!(
        "==> events are stored by the collector ({}); watch them with:\n    {} --collector \
         {COLLECTOR_SOCKET} events --follow\n    {} events --follow   (straight from the sensor)\n\
         ==> and the T1053.007 detections with:\n    {} --collector {COLLECTOR_SOCKET} alerts \
         --follow",
        db.display(),
        cli_bin.display(),
        cli_bin.display(),
        cli_bin.display()
    );
    // Ctrl-C reaches this process group: the sensor stops on its own, this process waits for
    // it and then stops the collector (in its own group, see above).
    ignore_interrupts();
    let status = sensor.wait().context("waiting for the sensor")?;
    stop(&mut collector);
    Ok(match status.code() {
        Some(0) => ExitCode::SUCCESS,
        Some(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        None => ExitCode::FAILURE,
    })
}

/// Builds the release sensor, collector and CLI.
pub fn build(workspace_root: &Path) -> Result<()> {
    let mut build = process::host_cargo(workspace_root);
    build.args(["build", "--release"]);
    for (package, bin) in [
        (SENSOR_PACKAGE, SENSOR_BIN),
        (COLLECTOR_PACKAGE, COLLECTOR_BIN),
        (CLI_PACKAGE, CLI_BIN),
    ] {
        build.args(["--package", package, "--bin", bin]);
    }
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
    Ok(())
}

/// Waits until the collector's socket exists, or fails if the collector exited.
fn wait_for_socket(collector: &mut Child, socket: &Path) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !socket.exists() {
        if let Some(status) = collector.try_wait()? {
            bail!("the collector exited before listening ({status})");
        }
        if Instant::now() > deadline {
            bail!(
                "the collector did not create {} within 30 s",
                socket.display()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Starts the sensor reporting to the local collector. A `--config` among `args` is the
/// user's: then the sensor reports where that file says.
fn start_sensor(binary: &Path, data: &Path, args: &[OsString]) -> Result<Child> {
    let mut sensor = Command::new(binary);
    let user_config = args.iter().any(|a| a == "--config" || a == "-c");
    if !user_config {
        let config = data.join("sensor.toml");
        std::fs::write(
            &config,
            format!("[report]\nsocket = \"{COLLECTOR_SOCKET}\"\n"),
        )
        .with_context(|| format!("writing {}", config.display()))?;
        sensor.arg("--config").arg(&config);
    }
    sensor.args(args);
    process::remove_outer_cargo_env(&mut sensor);
    eprintln!("==> {} {}", binary.display(), describe_args(args));
    sensor
        .spawn()
        .with_context(|| format!("failed to start {}", binary.display()))
}

fn stop(child: &mut Child) {
    if let Ok(None) = child.try_wait() {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(child.id() as i32, libc::SIGTERM) };
        let _ = child.wait();
    }
}

fn ignore_interrupts() {
    // SAFETY: setting the disposition of two signals to "ignore" has no preconditions.
    unsafe {
        libc::signal(libc::SIGINT, libc::SIG_IGN);
        libc::signal(libc::SIGTERM, libc::SIG_IGN);
    }
}

fn describe_args(args: &[OsString]) -> String {
    args.iter()
        .map(|arg| arg.to_string_lossy().into_owned())
        .collect::<Vec<_>>()
        .join(" ")
}
