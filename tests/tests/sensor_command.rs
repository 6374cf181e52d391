//! The `sensor` command as a user runs it: the README's run scenario, refusal without
//! privileges, a bad config file, and a clean stop on SIGTERM.

use std::{
    io::{BufRead, BufReader, Read},
    os::unix::process::CommandExt,
    path::PathBuf,
    process::{Child, Command, Stdio},
    sync::mpsc,
    time::{Duration, Instant},
};

use jobwatch_tests::{KillOnDrop, TempDir, binary, privileged};

fn sensor_binary() -> PathBuf {
    binary("jobwatch-sensor", "sensor")
}

/// Reads a child's stderr on a thread; lines arrive on the channel.
fn stderr_lines(child: &mut Child) -> mpsc::Receiver<String> {
    let stderr = child.stderr.take().expect("piped stderr");
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if tx.send(line).is_err() {
                break;
            }
        }
    });
    rx
}

/// Starts the sensor binary with `args`, stdout and stderr piped, and waits for `ready` in its
/// log. Returns the sensor and its log lines.
fn start_sensor(args: &[&std::ffi::OsStr], ready: &str) -> (KillOnDrop, mpsc::Receiver<String>) {
    let sensor = Command::new(sensor_binary())
        .args(args)
        .env("RUST_LOG", "info")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("sensor starts");
    let mut sensor = KillOnDrop(sensor);
    let logs = stderr_lines(&mut sensor.0);
    wait_line(&logs, ready, Duration::from_secs(30));
    (sensor, logs)
}

fn wait_line(rx: &mpsc::Receiver<String>, needle: &str, timeout: Duration) -> String {
    let deadline = Instant::now() + timeout;
    let mut seen = Vec::new();
    while let Some(left) = deadline.checked_duration_since(Instant::now()) {
        match rx.recv_timeout(left) {
            Ok(line) if line.contains(needle) => return line,
            Ok(line) => seen.push(line),
            Err(_) => break,
        }
    }
    panic!("no stderr line with {needle:?}; saw:\n{}", seen.join("\n"));
}

#[test]
fn readme_run_scenario_prints_exec_and_file_events() {
    if !privileged("readme_run_scenario_prints_exec_and_file_events") {
        return;
    }
    let (mut sensor, logs) = start_sensor(&[], "sensor running");

    let dir = TempDir::new("readme");
    let script = format!(
        "cd {} && touch jw-new && /bin/true one two three",
        dir.path().display()
    );
    let status = Command::new("sh")
        .args(["-c", &script])
        .status()
        .expect("sh");
    assert!(status.success());
    std::thread::sleep(Duration::from_millis(500));

    // SAFETY: signalling our own child.
    assert_eq!(
        unsafe { libc::kill(sensor.0.id() as i32, libc::SIGTERM) },
        0
    );
    let mut out = String::new();
    sensor
        .0
        .stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut out)
        .expect("stdout read");
    let status = sensor.0.wait().expect("sensor exits");
    assert!(status.success(), "a clean exit on SIGTERM, got {status}");
    wait_line(&logs, "final counters", Duration::from_secs(5));

    let events: Vec<serde_json::Value> = out
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l}")))
        .collect();
    let exec = events
        .iter()
        .find(|e| e["type"] == "process_exec" && e["filename"] == "/bin/true")
        .expect("exec event of /bin/true");
    assert_eq!(
        exec["args"],
        serde_json::json!(["/bin/true", "one", "two", "three"])
    );
    assert_eq!(exec["cwd"], dir.path().to_string_lossy().as_ref());
    assert_eq!(exec["process"]["uid"], 0);
    let path = dir.join("jw-new");
    let created = events
        .iter()
        .find(|e| e["type"] == "file_created" && e["path"] == path.to_string_lossy().as_ref())
        .expect("file event of jw-new");
    assert_eq!(created["operation"], "create");
    assert_eq!(created["process"]["comm"], "touch");
}

/// An output that cannot be written (stdout a pipe nobody reads any more) must not leave a
/// sensor that looks alive but passes nothing on: it stops, non-zero, naming the cause.
#[test]
fn an_unwritable_output_stops_the_sensor_with_an_error() {
    if !privileged("an_unwritable_output_stops_the_sensor_with_an_error") {
        return;
    }
    let (mut sensor, logs) = start_sensor(&[], "sensor running");
    // Close the read end: the next flush of the JSON lines fails with EPIPE.
    drop(sensor.0.stdout.take());

    let deadline = Instant::now() + Duration::from_secs(20);
    let status = loop {
        let ran = Command::new("/bin/true").status().expect("/bin/true");
        assert!(ran.success());
        if let Some(status) = sensor.0.try_wait().expect("wait") {
            break status;
        }
        assert!(
            Instant::now() < deadline,
            "the sensor kept running with its output closed"
        );
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(status.code(), Some(1), "a failure exit, got {status}");
    let line = wait_line(&logs, "sensor: ", Duration::from_secs(5));
    assert!(
        line.contains("the event output stopped: writing events failed: Broken pipe"),
        "the cause is named: {line}"
    );
}

#[test]
fn refuses_to_run_without_privileges() {
    if !privileged("refuses_to_run_without_privileges") {
        return;
    }
    let bin = sensor_binary();
    // nobody, without capabilities.
    let out = Command::new(&bin)
        .uid(65534)
        .gid(65534)
        .output()
        .expect("sensor runs");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("must run as root"), "stderr: {stderr}");
    assert!(stderr.contains("CAP_BPF"), "stderr: {stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn bad_config_is_named_and_fatal() {
    let bin = sensor_binary();
    let dir = TempDir::new("config");
    let cases = [
        ("ring_buffer_bytes = 1000\n", "ring_buffer_bytes"),
        ("report_host = true\n", "report_host"),
        ("args_max_bytes = \"lots\"\n", "args_max_bytes"),
    ];
    for (i, (text, field)) in cases.into_iter().enumerate() {
        let path = dir.join(&format!("c{i}.toml"));
        std::fs::write(&path, text).expect("config written");
        let out = Command::new(&bin)
            .arg("--config")
            .arg(&path)
            .output()
            .expect("sensor runs");
        assert!(!out.status.success(), "{text}");
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(stderr.contains(field), "{text}: {stderr}");
    }
    let out = Command::new(&bin)
        .args(["--config", "/nonexistent.toml"])
        .output()
        .expect("runs");
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("/nonexistent.toml"));
}

#[test]
fn cli_follows_events_and_reads_status_over_the_api_socket() {
    if !privileged("cli_follows_events_and_reads_status_over_the_api_socket") {
        return;
    }
    let cli = binary("jobwatch-cli", "jobwatch");
    let dir = TempDir::new("api");
    let socket = dir.join("sensor.sock");
    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "stdout_json = false\nnode_name = \"node-a\"\n[api]\nsocket = \"{}\"\n",
            socket.display()
        ),
    )
    .expect("config");
    let (mut sensor, _logs) =
        start_sensor(&["--config".as_ref(), config.as_os_str()], "API listening");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !socket.exists() && Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(20));
    }
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&socket)
        .expect("socket exists")
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600, "the API socket is private");

    let follow = Command::new(&cli)
        .arg("--sensor")
        .arg(&socket)
        .args([
            "events",
            "--follow",
            "-o",
            "json",
            "--kind",
            "exec",
            "--binary-prefix",
            "/usr/bin/tr",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("jobwatch events");
    let mut follow = KillOnDrop(follow);
    std::thread::sleep(Duration::from_millis(500));
    let status = Command::new("sh")
        .args(["-c", "echo abc | tr a-z A-Z > /dev/null"])
        .status();
    assert!(status.expect("sh").success());
    // The follower prints the exec, then is stopped like a user's Ctrl-C.
    let mut reader = BufReader::new(follow.0.stdout.take().expect("stdout"));
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut line = String::new();
        let _ = reader.read_line(&mut line);
        let _ = tx.send(line);
    });
    let line = rx
        .recv_timeout(Duration::from_secs(10))
        .expect("an event line from the CLI");
    let ev: serde_json::Value = serde_json::from_str(&line).expect("json line");
    assert_eq!(ev["node"], "node-a");
    assert!(ev["seq"].as_u64().is_some_and(|s| s > 0));
    let exec = &ev["process_exec"];
    assert_eq!(exec["args"], serde_json::json!(["tr", "a-z", "A-Z"]));
    assert!(
        exec["binary"]
            .as_str()
            .is_some_and(|b| b.starts_with("/usr/bin/tr"))
    );
    assert!(
        exec["process"]["exec_id"]
            .as_str()
            .is_some_and(|id| id.starts_with("node-a:"))
    );
    // SAFETY: signalling our own child.
    assert_eq!(unsafe { libc::kill(follow.0.id() as i32, libc::SIGINT) }, 0);
    assert!(follow.0.wait().expect("cli exits").success());

    let out = Command::new(&cli)
        .arg("--sensor")
        .arg(&socket)
        .args(["status", "-o", "json"])
        .output();
    let out = out.expect("jobwatch status");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let status: serde_json::Value = serde_json::from_slice(&out.stdout).expect("status json");
    assert_eq!(status["node"], "node-a");
    assert!(
        status["programs_attached"]
            .as_array()
            .is_some_and(|p| p.iter().any(|x| x == "sched_process_exec"))
    );
    let counters = status["counters"].as_array().expect("counters");
    let exec_events = counters
        .iter()
        .find(|c| c["name"] == "exec_events")
        .and_then(|c| c["value"].as_u64())
        .expect("exec_events counter");
    assert!(exec_events > 0);

    // SAFETY: signalling our own child.
    assert_eq!(
        unsafe { libc::kill(sensor.0.id() as i32, libc::SIGTERM) },
        0
    );
    assert!(sensor.0.wait().expect("sensor exits").success());
    assert!(!socket.exists(), "the socket is removed at shutdown");
}
