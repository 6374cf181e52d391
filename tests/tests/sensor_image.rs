//! The sensor image, run the way `deploy/` runs it: the image `cargo xtask image` builds (same
//! code path, from this build's sensor binary) is imported into a real containerd and started
//! through CRI as the kubelet would start the DaemonSet's pod. Host PID namespace, privileges,
//! host mounts, environment (NODE_NAME from the downward API) and arguments are read from
//! `deploy/base/sensor/daemonset.yaml`, and the configuration from the ConfigMap in
//! `deploy/base/sensor/configmap.yaml`. The containerised sensor must see a CronJob-style pod's
//! exec and file creation, attribute them to container, pod, Job and CronJob, and report them
//! to a collector on the host.
//!
//! `collector_image_runs_as_nonroot_under_containerd` does the same for the collector image and
//! the collector Deployment (non-root, no capabilities, read-only root filesystem).
//!
//! The sensor reports over mutual TLS as the ConfigMap says, to a collector on the host that
//! runs with the collector's ConfigMap (`collector.toml` and `rules.yaml`); the certificates
//! are made with the openssl commands of deploy/README.md and mounted where the Secrets would
//! be. What differs from a cluster, and why: the collector's address is `localhost:<port>`
//! instead of the Service's name (no cluster DNS here); containerd's socket and the API socket
//! directory are the test's own (other sensors and containerds run on this machine); ports are
//! free loopback ports (pods here share the host network namespace, where the manifests' ports
//! may be taken).

use std::{
    collections::BTreeMap,
    net::TcpListener,
    path::{Path, PathBuf},
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use jobwatch_tests::{
    KillOnDrop, TempDir, binary,
    containerd::{ContainerSpec, Containerd, PodSpec, cronjob_pod, uuid},
    privileged,
};
use serde_json::Value;

/// The node name the downward API would give (`spec.nodeName`).
const NODE: &str = "node-image-e2e";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// A YAML manifest of deploy/, as JSON.
fn manifest(relative: &str) -> Value {
    let path = workspace().join(relative);
    let text =
        std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("read {}: {e}", path.display()));
    serde_norway::from_str(&text).unwrap_or_else(|e| panic!("parse {}: {e}", path.display()))
}

/// `sensor.toml` of the sensor's ConfigMap.
fn configmap_sensor_toml() -> String {
    let configmap = manifest("deploy/base/sensor/configmap.yaml");
    configmap["data"]["sensor.toml"]
        .as_str()
        .expect("the sensor ConfigMap has a sensor.toml key")
        .to_string()
}

/// The ConfigMap's configuration with the test's differences (see the module docs): the
/// collector at `localhost:<collector_port>`, health and metrics on free loopback ports.
fn test_sensor_toml(collector_port: u16, health_port: u16, metrics_port: u16) -> String {
    let mut out = String::new();
    for line in configmap_sensor_toml().lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        match key {
            "health_address" => {
                out.push_str(&format!("health_address = \"127.0.0.1:{health_port}\"\n"));
            }
            "metrics_address" => {
                out.push_str(&format!("metrics_address = \"127.0.0.1:{metrics_port}\"\n"));
            }
            "address" => {
                out.push_str(&format!(
                    "address = \"https://localhost:{collector_port}\"\n"
                ));
            }
            _ => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// The collector ConfigMap's `collector.toml` with this test's ports (the TLS listener on
/// `127.0.0.1:<port>`) and, given `host_paths` = (data dir, TLS dir), database, socket and TLS
/// files there instead of the paths the Deployment mounts.
fn test_collector_toml(host_paths: Option<(&Path, &Path)>, port: u16, metrics_port: u16) -> String {
    let configmap = manifest("deploy/base/collector/configmap.yaml");
    let original = configmap["data"]["collector.toml"]
        .as_str()
        .expect("the collector ConfigMap has a collector.toml key");
    let mut out = String::new();
    for line in original.lines() {
        let key = line.split('=').next().unwrap_or("").trim();
        let host = |dir: &Path, name: &str| dir.join(name).display().to_string();
        let value = match (key, host_paths) {
            ("listen_address", _) => Some(format!("127.0.0.1:{port}")),
            ("metrics_address", _) => Some(format!("127.0.0.1:{metrics_port}")),
            ("db_path", Some((dir, _))) => Some(host(dir, "collector.db")),
            ("socket", Some((dir, _))) => Some(host(dir, "collector.sock")),
            ("tls_cert", Some((_, tls))) => Some(host(tls, "tls.crt")),
            ("tls_key", Some((_, tls))) => Some(host(tls, "tls.key")),
            ("tls_client_ca", Some((_, tls))) => Some(host(tls, "ca.crt")),
            _ => None,
        };
        match value {
            Some(value) => out.push_str(&format!("{key} = \"{value}\"\n")),
            None => {
                out.push_str(line);
                out.push('\n');
            }
        }
    }
    out
}

/// A CA, a server certificate for `localhost` and a client certificate, made with the openssl
/// commands of deploy/README.md ("TLS"), laid out as the two Secrets hold them:
/// `<dir>/collector/{tls.crt,tls.key,ca.crt}` and `<dir>/sensor/{tls.crt,tls.key,ca.crt}`.
fn make_certificates(dir: &Path) {
    let script = r#"set -e
openssl req -x509 -newkey rsa:3072 -nodes -days 825 -subj /CN=jobwatch-ca -keyout ca.key -out ca.crt
openssl req -newkey rsa:3072 -nodes -subj /CN=jobwatch-collector -keyout collector.key -out collector.csr
openssl x509 -req -in collector.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -out collector.crt \
  -extfile <(printf 'subjectAltName=DNS:localhost,DNS:jobwatch-collector.jobwatch.svc\nextendedKeyUsage=serverAuth')
openssl req -newkey rsa:3072 -nodes -subj /CN=jobwatch-sensor -keyout sensor.key -out sensor.csr
openssl x509 -req -in sensor.csr -CA ca.crt -CAkey ca.key -CAcreateserial -days 825 -out sensor.crt \
  -extfile <(printf 'extendedKeyUsage=clientAuth')
mkdir -p collector sensor
cp collector.crt collector/tls.crt; cp collector.key collector/tls.key; cp ca.crt collector/ca.crt
cp sensor.crt sensor/tls.crt; cp sensor.key sensor/tls.key; cp ca.crt sensor/ca.crt
"#;
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(dir)
        .stdin(Stdio::null())
        .output()
        .expect("bash runs");
    assert!(
        out.status.success(),
        "openssl (deploy/README.md's commands): {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free loopback port")
}

/// What the DaemonSet's pod template asks of the runtime.
struct DaemonSetPod {
    host_pid: bool,
    privileged: bool,
    readonly_rootfs: bool,
    args: Vec<String>,
    env: Vec<(String, String)>,
    mounts: Vec<VolumeMount>,
    image: String,
    add_capabilities: Vec<String>,
    drop_capabilities: Vec<String>,
}

/// One volumeMount with its volume.
struct VolumeMount {
    volume: String,
    /// The hostPath; None for ConfigMap and Secret volumes.
    host_path: Option<String>,
    mount_path: String,
    sub_path: Option<String>,
    readonly: bool,
}

fn daemonset_pod() -> DaemonSetPod {
    let ds = manifest("deploy/base/sensor/daemonset.yaml");
    let spec = &ds["spec"]["template"]["spec"];
    let containers = spec["containers"].as_array().expect("containers");
    assert_eq!(containers.len(), 1, "the sensor pod has one container");
    let c = &containers[0];
    let volumes: BTreeMap<String, &Value> = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .map(|v| (v["name"].as_str().expect("volume name").to_string(), v))
        .collect();
    let env = c["env"]
        .as_array()
        .expect("env")
        .iter()
        .map(|e| {
            let name = e["name"].as_str().expect("env name").to_string();
            let value = match (&e["value"], &e["valueFrom"]["fieldRef"]["fieldPath"]) {
                (Value::String(v), _) => v.clone(),
                (_, Value::String(field)) if field == "spec.nodeName" => NODE.to_string(),
                other => panic!("env {name}: unsupported source {other:?}"),
            };
            (name, value)
        })
        .collect();
    let mounts = c["volumeMounts"]
        .as_array()
        .expect("volumeMounts")
        .iter()
        .map(|m| {
            let name = m["name"].as_str().expect("mount name").to_string();
            let volume = volumes
                .get(&name)
                .unwrap_or_else(|| panic!("volume {name} is mounted but not declared"));
            VolumeMount {
                host_path: volume["hostPath"]["path"].as_str().map(str::to_string),
                mount_path: m["mountPath"].as_str().expect("mountPath").to_string(),
                sub_path: m["subPath"].as_str().map(str::to_string),
                readonly: m["readOnly"].as_bool().unwrap_or(false),
                volume: name,
            }
        })
        .collect();
    DaemonSetPod {
        host_pid: spec["hostPID"].as_bool().unwrap_or(false),
        privileged: c["securityContext"]["privileged"]
            .as_bool()
            .unwrap_or(false),
        readonly_rootfs: c["securityContext"]["readOnlyRootFilesystem"]
            .as_bool()
            .unwrap_or(false),
        args: c["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string arg").to_string())
            .collect(),
        env,
        mounts,
        image: c["image"].as_str().expect("image").to_string(),
        add_capabilities: Vec::new(),
        drop_capabilities: Vec::new(),
    }
}

/// `ctr images import` into the test's containerd, then waits until CRI lists the image.
fn import_image(ctd: &Containerd, tarball: &Path, reference: &str) {
    let out = Command::new("ctr")
        .arg("--address")
        .arg(ctd.socket())
        .args(["-n", ctd.namespace(), "images", "import"])
        .args(["--snapshotter", "overlayfs"])
        .arg(tarball)
        .stdin(Stdio::null())
        .output()
        .expect("ctr runs");
    assert!(
        out.status.success(),
        "ctr images import {}: {}{}",
        tarball.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    let listed = Command::new("ctr")
        .arg("--address")
        .arg(ctd.socket())
        .args(["-n", ctd.namespace(), "images", "ls", "-q"])
        .output()
        .expect("ctr runs");
    let listed = String::from_utf8_lossy(&listed.stdout);
    assert!(
        listed.lines().any(|l| l.trim() == reference),
        "{reference} not among the imported images:\n{listed}"
    );
}

/// Starts the collector as the Deployment does (`--config`, `--rules`); returns once its Unix
/// socket exists and its TLS port accepts connections.
fn start_collector(
    bin: &Path,
    config: &Path,
    rules: &Path,
    socket: &Path,
    port: u16,
) -> KillOnDrop {
    let child = Command::new(bin)
        .arg("--config")
        .arg(config)
        .arg("--rules")
        .arg(rules)
        .env("RUST_LOG", "info")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("collector starts");
    let collector = KillOnDrop(child);
    let deadline = Instant::now() + Duration::from_secs(20);
    while !socket.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "the collector's socket or TLS port never appeared"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    collector
}

/// Stored events through the CLI, as JSON.
fn query(cli: &Path, collector: &Path, args: &[&str]) -> Vec<Value> {
    let out = Command::new(cli)
        .arg("--collector")
        .arg(collector)
        .args(["events", "-o", "json", "--limit", "100000"])
        .args(args)
        .output()
        .expect("jobwatch events");
    assert!(
        out.status.success(),
        "jobwatch events: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(|l| serde_json::from_str(l).expect("a JSON line"))
        .collect()
}

fn tail(path: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// The image carries the ConfigMap's configuration through the sensor's own parser (a cheap
/// check, so that a field renamed in the sensor fails here and not on a cluster).
#[test]
fn the_configmap_parses_with_the_sensors_parser() {
    let text = configmap_sensor_toml();
    let config = sensor::config::Config::from_toml(&text)
        .unwrap_or_else(|e| panic!("deploy/base/sensor/configmap.yaml sensor.toml: {e}"));
    assert!(!config.stdout_json);
    assert_eq!(
        config.containerd.socket,
        PathBuf::from("/run/containerd/containerd.sock")
    );
    assert_eq!(
        config.api.health_address,
        Some("0.0.0.0:9090".parse().expect("address"))
    );
    assert_eq!(
        config.report.address.as_deref(),
        Some("https://jobwatch-collector.jobwatch.svc:7443")
    );
    assert!(config.report.ca.is_some() && config.report.cert.is_some());
    // The DaemonSet's probes ask the port the config serves health on.
    let ds = manifest("deploy/base/sensor/daemonset.yaml");
    let c = &ds["spec"]["template"]["spec"]["containers"][0];
    for probe in ["startupProbe", "livenessProbe", "readinessProbe"] {
        assert_eq!(c[probe]["grpc"]["port"], 9090, "{probe}");
    }
    assert_eq!(
        daemonset_pod().args,
        vec![
            "--config".to_string(),
            "/etc/jobwatch/sensor.toml".to_string()
        ]
    );
    let test_config = test_sensor_toml(1, 2, 3);
    sensor::config::Config::from_toml(&test_config)
        .unwrap_or_else(|e| panic!("the test's variant of the config: {e}\n{test_config}"));
}

#[test]
fn sensor_image_under_containerd_reports_a_cronjob_pods_execs_and_files() {
    if !privileged("sensor_image_under_containerd_reports_a_cronjob_pods_execs_and_files") {
        return;
    }
    let pod_template = daemonset_pod();
    assert!(pod_template.host_pid && pod_template.privileged);
    run_sensor_image_and_check_a_cronjob_pod(&pod_template);
}

/// The same with deploy/variants/least-privilege/: no `privileged`, only the capabilities it
/// lists (everything else dropped), /proc and /sys masked and read-only as for any container.
#[test]
fn least_privilege_sensor_image_reports_a_cronjob_pods_execs_and_files() {
    if !privileged("least_privilege_sensor_image_reports_a_cronjob_pods_execs_and_files") {
        return;
    }
    let mut pod_template = daemonset_pod();
    let patch = manifest("deploy/variants/least-privilege/sensor-capabilities.yaml");
    let security = &patch["spec"]["template"]["spec"]["containers"][0]["securityContext"];
    let names = |list: &Value| -> Vec<String> {
        list.as_array()
            .map(|l| {
                l.iter()
                    .filter_map(|c| c.as_str().map(str::to_string))
                    .collect()
            })
            .unwrap_or_default()
    };
    pod_template.privileged = security["privileged"].as_bool().unwrap_or(true);
    pod_template.add_capabilities = names(&security["capabilities"]["add"]);
    pod_template.drop_capabilities = names(&security["capabilities"]["drop"]);
    assert!(!pod_template.privileged);
    assert_eq!(pod_template.drop_capabilities, vec!["ALL".to_string()]);
    assert!(pod_template.add_capabilities.contains(&"BPF".to_string()));
    run_sensor_image_and_check_a_cronjob_pod(&pod_template);
}

/// Builds and imports the sensor image, runs it as `pod_template` says with a collector on the
/// host, runs a CronJob-style pod and checks what the collector stored.
fn run_sensor_image_and_check_a_cronjob_pod(pod_template: &DaemonSetPod) {
    let (sensor_bin, collector_bin, cli) = (
        binary("jobwatch-sensor", "sensor"),
        binary("jobwatch-collector", "collector"),
        binary("jobwatch-cli", "jobwatch"),
    );
    let dir = TempDir::new("sensor-image");

    // The image, built by the code path of `cargo xtask image`.
    let spec = xtask::image::SENSOR_IMAGE;
    let image = xtask::image::build(
        &spec,
        sensor_bin.parent().expect("binary directory"),
        &dir.join("images"),
    )
    .unwrap_or_else(|e| panic!("build the sensor image: {e:#}"));
    eprintln!(
        "sensor image {} {} bytes",
        image.tarball.display(),
        image.size
    );
    assert_eq!(
        format!("docker.io/{}", pod_template.image),
        image.reference,
        "the DaemonSet runs the image xtask builds"
    );

    let ctd = Containerd::start();
    import_image(&ctd, &image.tarball, &image.reference);

    // Certificates as deploy/README.md makes them, in the two Secrets' layout.
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    make_certificates(&tls);

    // The collector, on the host, with its ConfigMap's collector.toml and rules.yaml.
    let collector_dir = dir.join("collector");
    std::fs::create_dir_all(&collector_dir).expect("collector dir");
    let collector_socket = collector_dir.join("collector.sock");
    let collector_port = free_port();
    let collector_config = collector_dir.join("collector.toml");
    std::fs::write(
        &collector_config,
        test_collector_toml(
            Some((&collector_dir, &tls.join("collector"))),
            collector_port,
            free_port(),
        ),
    )
    .expect("write collector.toml");
    let rules = collector_dir.join("rules.yaml");
    let collector_configmap = manifest("deploy/base/collector/configmap.yaml");
    std::fs::write(
        &rules,
        collector_configmap["data"]["rules.yaml"]
            .as_str()
            .expect("the collector ConfigMap has a rules.yaml key"),
    )
    .expect("write rules.yaml");
    let _collector = start_collector(
        &collector_bin,
        &collector_config,
        &rules,
        &collector_socket,
        collector_port,
    );

    // The ConfigMap and the Secret as the kubelet would project them.
    let config_dir = dir.join("configmap");
    std::fs::create_dir_all(&config_dir).expect("configmap dir");
    let (health_port, metrics_port) = (free_port(), free_port());
    std::fs::write(
        config_dir.join("sensor.toml"),
        test_sensor_toml(collector_port, health_port, metrics_port),
    )
    .expect("write sensor.toml");
    let secret_dir = tls.join("sensor");
    let api_dir = dir.join("run-jobwatch");
    std::fs::create_dir_all(&api_dir).expect("api dir");

    let mut host_mounts = Vec::new();
    for mount in &pod_template.mounts {
        let source = match (mount.volume.as_str(), mount.host_path.as_deref()) {
            ("config", None) => config_dir.join(mount.sub_path.as_deref().unwrap_or("")),
            ("tls", None) => secret_dir.clone(),
            (_, Some("/run/containerd/containerd.sock")) => ctd.socket().to_path_buf(),
            (_, Some("/run/jobwatch")) => api_dir.clone(),
            (_, Some(path)) => PathBuf::from(path),
            (name, None) => panic!("volume {name}: no host source known to this test"),
        };
        host_mounts.push((source, mount.mount_path.clone(), mount.readonly));
    }

    let rt = jobwatch_tests::runtime();
    let mut cri = rt.block_on(ctd.cri());

    // The DaemonSet's pod.
    let mut sensor_pod: PodSpec = cronjob_pod("unused", 0, "jobwatch");
    sensor_pod.name = format!("jobwatch-sensor-{}", &uuid()[..5]);
    sensor_pod.uid = uuid();
    sensor_pod.labels = [
        ("app.kubernetes.io/name", "jobwatch-sensor"),
        ("app.kubernetes.io/part-of", "jobwatch"),
        ("pod-template-generation", "1"),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    sensor_pod.host_pid = pod_template.host_pid;
    sensor_pod.privileged = pod_template.privileged;
    let sensor_sandbox = rt.block_on(cri.run_pod(&sensor_pod));
    let sensor_container = ContainerSpec {
        name: "sensor".into(),
        image: image.reference.clone(),
        args: pod_template.args.clone(),
        privileged: pod_template.privileged,
        add_capabilities: pod_template.add_capabilities.clone(),
        drop_capabilities: pod_template.drop_capabilities.clone(),
        run_as_user: Some(0),
        run_as_group: Some(0),
        readonly_rootfs: pod_template.readonly_rootfs,
        host_mounts,
        envs: pod_template.env.clone(),
        ..ContainerSpec::default()
    };
    let sensor_id =
        rt.block_on(cri.create_container(&sensor_sandbox, &sensor_pod, &sensor_container));
    rt.block_on(cri.start_container(&sensor_id));
    let sensor_log = ctd
        .root()
        .join("logs")
        .join(format!(
            "{}_{}_{}",
            sensor_pod.namespace, sensor_pod.name, sensor_pod.uid
        ))
        .join("sensor")
        .join("0.log");

    // Ready when it says so and its health port answers (what the kubelet's probe connects to).
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let log = std::fs::read_to_string(&sensor_log).unwrap_or_default();
        if log.contains("sensor running")
            && std::net::TcpStream::connect(("127.0.0.1", health_port)).is_ok()
        {
            break;
        }
        let status = rt.block_on(cri.container_status(&sensor_id));
        assert!(
            status.state != k8s_cri::v1::ContainerState::ContainerExited as i32,
            "the sensor container exited ({}):\n{}",
            status.exit_code,
            tail(&sensor_log, 40)
        );
        assert!(
            Instant::now() < deadline,
            "the sensor container did not become ready:\n{}",
            tail(&sensor_log, 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // It really runs in the container: its pid's cgroup is the container's.
    let sensor_pid = rt
        .block_on(cri.container_pid(&sensor_id))
        .expect("the sensor container runs");
    let cgroup = std::fs::read_to_string(format!("/proc/{sensor_pid}/cgroup")).unwrap_or_default();
    assert!(
        cgroup.contains(&sensor_id),
        "the sensor (pid {sensor_pid}) is not in its container's cgroup:\n{cgroup}"
    );
    let exe = std::fs::read_link(format!("/proc/{sensor_pid}/exe")).expect("sensor exe");
    assert_eq!(exe, PathBuf::from("/usr/local/bin/sensor"));

    // A CronJob's pod: one exec and one file creation.
    let minutes = 29_000_000;
    let pod = cronjob_pod("backup", minutes, "nightly");
    let sandbox = rt.block_on(cri.run_pod(&pod));
    let job_container = ContainerSpec {
        name: "dump".into(),
        image: "busybox".into(),
        command: vec![
            "sh".into(),
            "-c".into(),
            "echo data > /tmp/image-proof.txt; /bin/ls /tmp > /dev/null; exit 3".into(),
        ],
        ..ContainerSpec::default()
    };
    let job_id = rt.block_on(cri.create_container(&sandbox, &pod, &job_container));
    rt.block_on(cri.start_container(&job_id));
    assert_eq!(
        rt.block_on(cri.wait_exit(&job_id, Duration::from_secs(20))),
        3
    );

    let deadline = Instant::now() + Duration::from_secs(30);
    let events = loop {
        let events = query(&cli, &collector_socket, &["--cronjob", "backup"]);
        let done = events
            .iter()
            .any(|e| e["container_exited"]["container"]["id"] == job_id.as_str());
        if done || Instant::now() > deadline {
            break events;
        }
        std::thread::sleep(Duration::from_millis(500));
    };
    let dump = |what: &str| -> String {
        format!(
            "{what}\n--- stored events ---\n{}\n--- sensor log ---\n{}",
            events
                .iter()
                .map(Value::to_string)
                .collect::<Vec<_>>()
                .join("\n"),
            tail(&sensor_log, 30)
        )
    };

    let exec = events
        .iter()
        .find(|e| e["process_exec"]["args"] == serde_json::json!(["/bin/ls", "/tmp"]))
        .unwrap_or_else(|| panic!("{}", dump("no exec of /bin/ls stored")));
    let file = events
        .iter()
        .find(|e| e["file_created"]["path"] == "/tmp/image-proof.txt")
        .unwrap_or_else(|| panic!("{}", dump("no file creation stored")));
    eprintln!("exec: {exec}\nfile: {file}");

    // Reported by the containerised sensor, named by the downward API's node name.
    assert_eq!(exec["node"], NODE);
    assert_eq!(file["node"], NODE);
    let (x, f) = (&exec["process_exec"], &file["file_created"]);
    assert_eq!(x["filename"], "/bin/ls");
    assert_eq!(x["binary"], "/bin/busybox");
    assert_eq!(x["cwd"], "/");
    assert_eq!(x["process"]["comm"], "ls");
    assert_eq!(x["process"]["host"], false);
    assert_eq!(
        x["parent"]["args"],
        serde_json::json!(["sh", "-c", job_container.command[2]])
    );
    assert_eq!(f["operation"], "create");
    assert_eq!(f["process"]["comm"], "sh");
    assert_eq!(f["process"]["host"], false);
    // The shell created the file and ran ls.
    assert_eq!(x["process"]["ppid"], f["process"]["pid"]);
    assert_eq!(x["process"]["parent_exec_id"], f["process"]["exec_id"]);
    let controller_uid = pod
        .labels
        .get("batch.kubernetes.io/controller-uid")
        .expect("the Job pod has a controller uid")
        .as_str();
    for (what, container) in [("exec", &x["container"]), ("file", &f["container"])] {
        assert_eq!(container["id"], job_id.as_str(), "{what}: container id");
        assert_eq!(container["name"], "dump", "{what}: container name");
        assert_eq!(
            container["image"], "docker.io/library/busybox:jobwatch",
            "{what}: image"
        );
        assert_eq!(container["metadata_pending"], false, "{what}: metadata");
        assert_eq!(container["pod"]["name"], pod.name.as_str(), "{what}: pod");
        assert_eq!(
            container["pod"]["namespace"], "nightly",
            "{what}: namespace"
        );
        assert_eq!(container["pod"]["uid"], pod.uid.as_str(), "{what}: pod uid");
        let workload = &container["workload"];
        assert_eq!(workload["kind"], "cron_job", "{what}: workload kind");
        assert_eq!(workload["name"], "backup", "{what}: workload name");
        assert_eq!(workload["source"], "name_inference", "{what}: source");
        assert_eq!(
            workload["job"]["name"],
            format!("backup-{minutes}").as_str(),
            "{what}: job"
        );
        assert_eq!(
            workload["job"]["controller_uid"], controller_uid,
            "{what}: job uid"
        );
        let cronjob = &workload["cronjob"];
        assert_eq!(cronjob["name"], "backup", "{what}: cronjob");
        assert_eq!(cronjob["inferred"], true, "{what}: inferred");
        assert_eq!(
            cronjob["source"], "name_inference",
            "{what}: cronjob source"
        );
        // 29,000,000 minutes after the epoch.
        assert_eq!(
            cronjob["scheduled_time"], "2025-02-19T21:20:00.000000000Z",
            "{what}: scheduled time"
        );
    }
    let exited = events
        .iter()
        .find(|e| e["container_exited"]["container"]["id"] == job_id.as_str())
        .unwrap_or_else(|| panic!("{}", dump("no container_exited stored")));
    assert_eq!(exited["node"], NODE);
    assert_eq!(exited["container_exited"]["exit_code"], 3);

    // SIGTERM through CRI, as at a rollout: the sensor stops on its own.
    rt.block_on(cri.remove_pod(&sandbox));
    rt.block_on(cri.remove_pod(&sensor_sandbox));
}

/// The collector image runs as the Deployment runs it: uid 65532 (nonroot), every capability
/// dropped, no privilege escalation, read-only root filesystem, the ConfigMap's
/// `collector.toml` and `rules.yaml`, TLS files where the Secret is mounted, the database on a
/// volume owned by 65532. It answers the CLI on its socket (in the `run` volume) and accepts
/// TLS connections.
#[test]
fn collector_image_runs_as_nonroot_under_containerd() {
    if !privileged("collector_image_runs_as_nonroot_under_containerd") {
        return;
    }
    let (collector_bin, cli) = (
        binary("jobwatch-collector", "collector"),
        binary("jobwatch-cli", "jobwatch"),
    );
    let dir = TempDir::new("collector-image");
    let spec = xtask::image::COLLECTOR_IMAGE;
    let image = xtask::image::build(
        &spec,
        collector_bin.parent().expect("binary directory"),
        &dir.join("images"),
    )
    .unwrap_or_else(|e| panic!("build the collector image: {e:#}"));
    eprintln!(
        "collector image {} {} bytes",
        image.tarball.display(),
        image.size
    );

    let deployment = manifest("deploy/base/collector/deployment.yaml");
    let pod = &deployment["spec"]["template"]["spec"];
    let c = &pod["containers"][0];
    assert_eq!(
        format!("docker.io/{}", c["image"].as_str().expect("image")),
        image.reference
    );
    let uid = pod["securityContext"]["runAsUser"]
        .as_i64()
        .expect("runAsUser");
    let gid = pod["securityContext"]["runAsGroup"]
        .as_i64()
        .expect("runAsGroup");
    assert_eq!((uid, gid), (65532, 65532));
    let security = &c["securityContext"];
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));

    // The volumes as the kubelet would provide them.
    let tls = dir.join("tls");
    std::fs::create_dir_all(&tls).expect("tls dir");
    make_certificates(&tls);
    let config_dir = dir.join("configmap");
    std::fs::create_dir_all(&config_dir).expect("configmap dir");
    let port = free_port();
    let configmap = manifest("deploy/base/collector/configmap.yaml");
    std::fs::write(
        config_dir.join("collector.toml"),
        test_collector_toml(None, port, free_port()),
    )
    .expect("write collector.toml");
    std::fs::write(
        config_dir.join("rules.yaml"),
        configmap["data"]["rules.yaml"]
            .as_str()
            .expect("rules.yaml"),
    )
    .expect("write rules.yaml");
    let owned = |name: &str| -> PathBuf {
        let path = dir.join(name);
        std::fs::create_dir_all(&path).expect("volume dir");
        // fsGroup/emptyDir: the volume is writable by the pod's user.
        std::os::unix::fs::chown(&path, Some(65532), Some(65532)).expect("chown volume");
        path
    };
    let (data, run) = (owned("data"), owned("run"));
    let secret = tls.join("collector");
    for file in ["tls.crt", "tls.key", "ca.crt"] {
        // A Secret volume's files are readable by the pod (fsGroup).
        std::os::unix::fs::chown(secret.join(file), Some(0), Some(65532)).expect("chown secret");
        std::fs::set_permissions(
            secret.join(file),
            std::os::unix::fs::PermissionsExt::from_mode(0o640),
        )
        .expect("chmod secret");
    }
    let mut host_mounts = Vec::new();
    for m in c["volumeMounts"].as_array().expect("volumeMounts") {
        let name = m["name"].as_str().expect("name");
        let container = m["mountPath"].as_str().expect("mountPath").to_string();
        let source = match (name, m["subPath"].as_str()) {
            ("config", Some(file)) => config_dir.join(file),
            ("tls", None) => secret.clone(),
            ("data", None) => data.clone(),
            ("run", None) => run.clone(),
            other => panic!("volume mount {other:?}: no source known to this test"),
        };
        host_mounts.push((source, container, m["readOnly"].as_bool().unwrap_or(false)));
    }

    let ctd = Containerd::start();
    import_image(&ctd, &image.tarball, &image.reference);
    let rt = jobwatch_tests::runtime();
    let mut cri = rt.block_on(ctd.cri());
    let mut collector_pod: PodSpec = cronjob_pod("unused", 0, "jobwatch");
    collector_pod.name = format!("jobwatch-collector-{}", &uuid()[..5]);
    collector_pod.uid = uuid();
    collector_pod.labels = [("app.kubernetes.io/name", "jobwatch-collector")]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let sandbox = rt.block_on(cri.run_pod(&collector_pod));
    let container = ContainerSpec {
        name: "collector".into(),
        image: image.reference.clone(),
        args: c["args"]
            .as_array()
            .expect("args")
            .iter()
            .map(|a| a.as_str().expect("string arg").to_string())
            .collect(),
        run_as_user: Some(uid),
        run_as_group: Some(gid),
        drop_capabilities: vec!["ALL".into()],
        readonly_rootfs: security["readOnlyRootFilesystem"]
            .as_bool()
            .unwrap_or(false),
        no_new_privs: !security["allowPrivilegeEscalation"]
            .as_bool()
            .unwrap_or(true),
        host_mounts,
        envs: vec![("RUST_LOG".into(), "info".into())],
        ..ContainerSpec::default()
    };
    let id = rt.block_on(cri.create_container(&sandbox, &collector_pod, &container));
    rt.block_on(cri.start_container(&id));
    let log = ctd
        .root()
        .join("logs")
        .join(format!(
            "{}_{}_{}",
            collector_pod.namespace, collector_pod.name, collector_pod.uid
        ))
        .join("collector")
        .join("0.log");

    // Ready as the probes see it: the TLS port accepts connections.
    let socket = run.join("collector.sock");
    let deadline = Instant::now() + Duration::from_secs(60);
    while !socket.exists() || std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        let status = rt.block_on(cri.container_status(&id));
        assert!(
            status.state != k8s_cri::v1::ContainerState::ContainerExited as i32,
            "the collector container exited ({}):\n{}",
            status.exit_code,
            tail(&log, 40)
        );
        assert!(
            Instant::now() < deadline,
            "the collector container did not become ready:\n{}",
            tail(&log, 40)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    let pid = rt
        .block_on(cri.container_pid(&id))
        .expect("the collector container runs");
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).expect("status");
    let field = |name: &str| -> String {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .unwrap_or("")
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert_eq!(field("Uid:"), "65532 65532 65532 65532", "{status}");
    assert_eq!(field("Gid:"), "65532 65532 65532 65532", "{status}");
    assert_eq!(field("CapEff:"), "0000000000000000", "{status}");
    assert_eq!(field("NoNewPrivs:"), "1", "{status}");
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("collector exe");
    assert_eq!(exe, PathBuf::from("/usr/local/bin/collector"));
    // Its database is on the data volume, and it answers the CLI on its socket.
    assert!(
        data.join("collector.db").exists(),
        "no database on the data volume"
    );
    let out = Command::new(&cli)
        .arg("--collector")
        .arg(&socket)
        .arg("status")
        .output()
        .expect("jobwatch status");
    assert!(
        out.status.success(),
        "jobwatch status: {}\n{}",
        String::from_utf8_lossy(&out.stderr),
        tail(&log, 20)
    );
    rt.block_on(cri.remove_pod(&sandbox));
}
