//! The collector and the sensor as users run them: the real binaries, on real sockets, the
//! sensor reporting to the collector. Both are killed when their guards drop.

use std::{
    io::{BufRead, BufReader},
    path::Path,
    process::{Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use crate::KillOnDrop;

/// Waits until `path` exists.
pub fn wait_path(path: &Path, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        assert!(
            Instant::now() < deadline,
            "{} never appeared",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// Starts the collector binary on `db` and `socket` with `extra` arguments; returns once the
/// socket exists.
pub fn start_collector(bin: &Path, db: &Path, socket: &Path, extra: &[&str]) -> KillOnDrop {
    let child = Command::new(bin)
        .arg("--db")
        .arg(db)
        .arg("--socket")
        .arg(socket)
        .args(extra)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("collector starts");
    let guard = KillOnDrop(child);
    wait_path(socket, Duration::from_secs(20));
    guard
}

/// Starts the sensor binary (node `node-e2e`, API socket in `dir`) reporting to the collector
/// on `collector`, with `extra` config lines; returns when it runs.
pub fn start_sensor(bin: &Path, dir: &Path, collector: &Path, extra: &str) -> KillOnDrop {
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "stdout_json = false\nnode_name = \"node-e2e\"\n{extra}\n[api]\nsocket = \"{}\"\n\
             [report]\nsocket = \"{}\"\n",
            dir.join("sensor.sock").display(),
            collector.display()
        ),
    )
    .expect("config");
    let mut child = Command::new(bin)
        .arg("--config")
        .arg(&config)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sensor starts");
    let stderr = child.stderr.take().expect("stderr");
    let guard = KillOnDrop(child);
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if line.contains("sensor running") => break,
            Ok(_) => {}
            Err(_) => panic!("the sensor did not start"),
        }
    }
    // Keep draining its logs so it never blocks on a full pipe.
    std::thread::spawn(move || while rx.recv().is_ok() {});
    guard
}

/// Runs the CLI against the collector on `socket` with `args`; its stdout, as JSON lines
/// when `json`.
pub fn cli(cli: &Path, socket: &Path, args: &[&str]) -> String {
    let out = Command::new(cli)
        .arg("--collector")
        .arg(socket)
        .args(args)
        .output()
        .expect("jobwatch runs");
    assert!(
        out.status.success(),
        "jobwatch {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The CLI's JSON lines, parsed.
pub fn cli_json(bin: &Path, socket: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    cli(bin, socket, args)
        .lines()
        .map(|l| serde_json::from_str(l).expect("json line"))
        .collect()
}
