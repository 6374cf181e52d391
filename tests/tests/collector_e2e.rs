//! The sensor and the collector as users run them: real binaries, real sockets, a real SQLite
//! file, the real kernel; the collector killed and restarted while the sensor reports; a
//! CronJob-style pod's events read back through the collector and the CLI.

use std::{
    path::Path,
    process::Command,
    time::{Duration, Instant},
};

use jobwatch_tests::{
    TempDir, binary,
    containerd::{ContainerSpec, Containerd, cronjob_pod},
    privileged,
    stack::{cli_json, start_collector, start_sensor},
};

/// Stored events through the CLI, as JSON lines.
fn query(cli: &Path, collector: &Path, args: &[&str]) -> Vec<serde_json::Value> {
    let mut all = vec!["events", "-o", "json", "--limit", "100000"];
    all.extend_from_slice(args);
    cli_json(cli, collector, &all)
}

fn created_paths(events: &[serde_json::Value], prefix: &str) -> usize {
    events
        .iter()
        .filter(|e| {
            e["file_created"]["path"]
                .as_str()
                .is_some_and(|p| p.starts_with(prefix))
        })
        .count()
}

#[test]
fn reports_survive_a_collector_restart_with_exact_counts() {
    if !privileged("reports_survive_a_collector_restart_with_exact_counts") {
        return;
    }
    let (collector_bin, sensor_bin, cli) = (
        binary("jobwatch-collector", "collector"),
        binary("jobwatch-sensor", "sensor"),
        binary("jobwatch-cli", "jobwatch"),
    );
    let dir = TempDir::new("e2e-restart");
    let work = TempDir::new("e2e-files");
    let db = dir.join("collector.db");
    let socket = dir.join("collector.sock");
    let mut collector = start_collector(&collector_bin, &db, &socket, &[]);
    let prefix = format!("{}/", work.path().display());
    let _sensor = start_sensor(
        &sensor_bin,
        dir.path(),
        &socket,
        &format!("include_path_prefixes = [\"{prefix}\"]"),
    );

    const BEFORE: usize = 500;
    const DURING: usize = 500;
    for i in 0..BEFORE {
        std::fs::write(work.join(&format!("a{i}")), b"").expect("create");
    }
    // The collector dies mid-stream (no clean shutdown) and comes back on the same database.
    std::thread::sleep(Duration::from_millis(300));
    let _ = collector.0.kill();
    let _ = collector.0.wait();
    let _ = std::fs::remove_file(&socket);
    for i in 0..DURING {
        std::fs::write(work.join(&format!("b{i}")), b"").expect("create");
    }
    collector = start_collector(&collector_bin, &db, &socket, &[]);

    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = query(&cli, &socket, &["--kind", "file"]);
        if created_paths(&events, &prefix) >= BEFORE + DURING || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let stored = created_paths(&events, &prefix);
    let lost: u64 = query(&cli, &socket, &["--kind", "lost"])
        .iter()
        .filter_map(|e| e["lost_events"]["count"].as_u64())
        .sum();
    assert_eq!(
        stored as u64 + lost,
        (BEFORE + DURING) as u64,
        "stored {stored} + lost {lost}"
    );
    assert_eq!(lost, 0, "the sensor's buffer holds a 500-event outage");
    // Every event once: re-sent events were de-duplicated.
    let mut seqs: Vec<u64> = events.iter().filter_map(|e| e["seq"].as_u64()).collect();
    let n = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(seqs.len(), n, "no event stored twice");
    drop(collector);
}

#[test]
fn cronjob_pod_is_read_back_through_the_collector_and_the_cli() {
    if !privileged("cronjob_pod_is_read_back_through_the_collector_and_the_cli") {
        return;
    }
    let (collector_bin, sensor_bin, cli) = (
        binary("jobwatch-collector", "collector"),
        binary("jobwatch-sensor", "sensor"),
        binary("jobwatch-cli", "jobwatch"),
    );
    let ctd = Containerd::start();
    let dir = TempDir::new("e2e-pod");
    let socket = dir.join("collector.sock");
    let _collector = start_collector(&collector_bin, &dir.join("collector.db"), &socket, &[]);
    let _sensor = start_sensor(
        &sensor_bin,
        dir.path(),
        &socket,
        &format!("[containerd]\nsocket = \"{}\"", ctd.socket().display()),
    );
    std::thread::sleep(Duration::from_secs(1));

    let rt = jobwatch_tests::runtime();
    let mut cri = rt.block_on(ctd.cri());
    let pod = cronjob_pod("backup", 29_000_000, "nightly");
    let sandbox = rt.block_on(cri.run_pod(&pod));
    let spec = ContainerSpec {
        name: "dump".into(),
        image: "busybox".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo x > /tmp/out.txt; /bin/ls / > /dev/null; exit 4".into(),
        ],
        ..ContainerSpec::default()
    };
    let id = rt.block_on(cri.create_container(&sandbox, &pod, &spec));
    rt.block_on(cri.start_container(&id));
    assert_eq!(rt.block_on(cri.wait_exit(&id, Duration::from_secs(20))), 4);

    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = query(&cli, &socket, &["--cronjob", "backup"]);
        let exited = events
            .iter()
            .any(|e| e["container_exited"]["exit_code"] == 4);
        if exited || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let created = events
        .iter()
        .find(|e| e["container_created"]["container"]["id"] == id.as_str())
        .expect("container_created stored");
    assert_eq!(created["node"], "node-e2e");
    assert_eq!(
        created["container_created"]["container"]["pod"]["namespace"],
        "nightly"
    );
    let exec = events
        .iter()
        .find(|e| e["process_exec"]["args"] == serde_json::json!(["/bin/ls", "/"]))
        .expect("exec of /bin/ls stored");
    let c = &exec["process_exec"]["container"];
    assert_eq!(c["id"], id.as_str());
    assert_eq!(c["workload"]["cronjob"]["name"], "backup");
    assert_eq!(c["workload"]["cronjob"]["inferred"], true);
    assert_eq!(c["workload"]["job"]["name"], "backup-29000000");
    let file = events
        .iter()
        .find(|e| e["file_created"]["path"] == "/tmp/out.txt")
        .expect("file event stored");
    assert_eq!(
        file["file_created"]["container"]["pod"]["name"],
        pod.name.as_str()
    );
    assert!(
        events
            .iter()
            .any(|e| e["container_exited"]["exit_code"] == 4)
    );

    // The compact view names the CronJob on every line of that pod.
    let out = Command::new(&cli)
        .arg("--collector")
        .arg(&socket)
        .args(["events", "--cronjob", "backup", "--kind", "exec"])
        .output()
        .expect("jobwatch events");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.lines()
            .any(|l| l.contains("backup") && l.contains("/bin/ls")),
        "{text}"
    );
    rt.block_on(cri.remove_pod(&sandbox));
}
