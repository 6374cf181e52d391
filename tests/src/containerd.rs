//! A real containerd (Debian's 1.6 with runc), run in a temporary directory and driven through
//! CRI the way the kubelet drives it, so that tests can run Kubernetes-shaped pods (CronJob ->
//! Job -> Pod) on this machine and watch the sensor attribute their events.
//!
//! What the harness does like the kubelet (see shared/docs/machine.md, "What the kubelet gives
//! containerd"):
//! - sandboxes: pod labels plus `io.kubernetes.pod.name|namespace|uid`, pod annotations plus
//!   `kubernetes.io/config.seen|source`, cgroup parent `/kubepods/besteffort/pod<uid>` (cgroupfs
//!   driver), host network, log directory `<ns>_<name>_<uid>`, seccomp unconfined;
//! - containers: labels `io.kubernetes.container.name` and `io.kubernetes.pod.name|namespace|uid`
//!   (the kubelet sets them, containerd only adds `io.cri-containerd.kind`), the kubelet's
//!   annotations (`io.kubernetes.container.hash|restartCount|terminationMessagePath|...`), the image
//!   given by its id (`sha256:<config digest>`), an `/etc/hosts` and a `/dev/termination-log` bind
//!   mount from the pod directory, BestEffort resources (`cpu_shares` 2, `oom_score_adj` 1000),
//!   the default masked and read-only `/proc` paths, and PID namespace `CONTAINER` (the kubelet's
//!   default; `NODE` with `host_pid`).
//!
//! Observed with containerd 1.6.20 (what a sensor reading containerd sees):
//! - sandbox container labels: the pod labels, `io.kubernetes.pod.*` and
//!   `io.cri-containerd.kind=sandbox`; app container labels: only the kubelet's four plus
//!   `io.cri-containerd.kind=container` (plus any [`ContainerSpec::labels`]);
//! - neither pod annotations nor the kubelet's container annotations reach the OCI spec: it
//!   carries only `io.kubernetes.cri.*` (container-type, container-name, image-name,
//!   sandbox-id|name|namespace|uid, and sandbox-log-directory on the sandbox);
//! - `io.kubernetes.cri.image-name` is the tag (`docker.io/library/busybox:jobwatch`) although
//!   the image is given by id; containerd adds `HOSTNAME=<host name>` to the environment;
//! - one `containerd-shim-runc-v2 -namespace k8s.io -id <sandbox id> -address <our socket>` per
//!   pod, surviving a SIGKILL of containerd.
//!
//! Every sync method works from inside or outside a tokio runtime: the CRI calls they need run
//! on a helper thread with its own runtime.

use std::{
    collections::{BTreeMap, BTreeSet, HashMap},
    fs::OpenOptions,
    io::Read as _,
    os::unix::fs::PermissionsExt as _,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicU32, Ordering},
    },
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

use hyper_util::rt::TokioIo;
use k8s_cri::v1::{
    Capability, Container, ContainerConfig, ContainerMetadata, ContainerState, ContainerStatus,
    ContainerStatusRequest, CreateContainerRequest, ImageSpec, ImageStatusRequest, Int64Value,
    KeyValue, LinuxContainerConfig, LinuxContainerResources, LinuxContainerSecurityContext,
    LinuxPodSandboxConfig, LinuxSandboxSecurityContext, ListContainersRequest,
    ListPodSandboxRequest, Mount, MountPropagation, NamespaceMode, NamespaceOption,
    PodSandboxConfig, PodSandboxMetadata, RemovePodSandboxRequest, RunPodSandboxRequest,
    SecurityProfile, StartContainerRequest, StopPodSandboxRequest, VersionRequest,
    image_service_client::ImageServiceClient, runtime_service_client::RuntimeServiceClient,
    security_profile::ProfileType,
};
use tonic::transport::{Channel, Endpoint, Uri};

use crate::image::{self, BUSYBOX_REF, BuiltImage, PAUSE_REF};

/// The containerd namespace CRI works in.
pub const NAMESPACE: &str = "k8s.io";

/// The binaries the harness needs, and the package that has each.
const BINARIES: &[(&str, &str)] = &[
    ("containerd", "containerd"),
    ("ctr", "containerd"),
    ("containerd-shim-runc-v2", "containerd"),
    ("runc", "runc"),
];

/// Directories searched for them besides `PATH` (runc is in /usr/sbin, which a user's PATH may
/// lack); containerd gets the same `PATH`, since it finds the shim and runc there.
const SYSTEM_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// How long containerd may take to answer after it is started.
const READY_TIMEOUT: Duration = Duration::from_secs(30);
/// How long one CRI call made by the harness on its own (cleanup, readiness) may take.
const CRI_CALL_TIMEOUT: Duration = Duration::from_secs(30);

/// Kubelet defaults for a container that is not privileged (`DefaultProcMount`).
const MASKED_PATHS: &[&str] = &[
    "/proc/asound",
    "/proc/acpi",
    "/proc/kcore",
    "/proc/keys",
    "/proc/latency_stats",
    "/proc/timer_list",
    "/proc/timer_stats",
    "/proc/sched_debug",
    "/proc/scsi",
    "/sys/firmware",
    "/sys/devices/virtual/powercap",
];
const READONLY_PATHS: &[&str] = &[
    "/proc/bus",
    "/proc/fs",
    "/proc/irq",
    "/proc/sys",
    "/proc/sysrq-trigger",
];

/// What the harness remembers across [`Cri`] clients, for creating containers like the kubelet
/// and for cleaning up even when containerd is gone.
#[derive(Default)]
struct Shared {
    /// The config each sandbox was run with (the kubelet passes it again to CreateContainer).
    sandboxes: HashMap<String, PodSandboxConfig>,
    /// Next attempt number per (sandbox id, container name).
    attempts: HashMap<(String, String), u32>,
    /// Uids of every pod this harness ran: their cgroup directories are removed at the end.
    pod_uids: BTreeSet<String>,
}

/// A containerd of its own in a temporary directory. Dropping it removes everything it made.
/// Where the CNI plugins are: Debian's containernetworking-plugins, then the upstream path.
const CNI_BIN_DIRS: &[&str] = &["/usr/lib/cni", "/opt/cni/bin"];

pub struct Containerd {
    root: PathBuf,
    socket: PathBuf,
    config: PathBuf,
    log: PathBuf,
    child: Option<Child>,
    /// Whether CRI ever answered (else Drop does not try to start containerd for cleanup).
    answered: bool,
    images: Vec<BuiltImage>,
    shared: Arc<Mutex<Shared>>,
}

impl Containerd {
    /// Starts containerd with a generated config, waits until it answers, and imports the
    /// busybox and pause images into namespace `k8s.io`. Panics with a message naming what is
    /// missing (a binary, busybox-static) or what failed (with the tail of containerd's log).
    pub fn start() -> Containerd {
        for (binary, package) in BINARIES {
            assert!(
                find_binary(binary).is_some(),
                "`{binary}` not found in PATH or {SYSTEM_PATH}: it comes with the Debian package \
                 {package}; install what the harness needs with \
                 `apt-get install -y containerd runc busybox-static` (or `cargo xtask setup`)"
            );
        }
        static INSTANCES: AtomicU32 = AtomicU32::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        // Short: the socket path must stay under 108 bytes.
        let root = PathBuf::from(format!(
            "/tmp/jw-ctrd-{}-{}-{nanos:09}",
            std::process::id(),
            INSTANCES.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir(&root)
            .unwrap_or_else(|e| panic!("create containerd test root {}: {e}", root.display()));
        let root = root.canonicalize().expect("canonical containerd test root");
        // From here on, Drop cleans up whatever fails.
        let mut harness = Containerd {
            socket: root.join("containerd.sock"),
            config: root.join("config.toml"),
            log: root.join("containerd.log"),
            child: None,
            answered: false,
            images: Vec::new(),
            shared: Arc::new(Mutex::new(Shared::default())),
            root,
        };
        harness.images = image::build_images(&harness.root.join("images"));
        std::fs::write(&harness.config, harness.config_toml())
            .unwrap_or_else(|e| panic!("write {}: {e}", harness.config.display()));
        harness.write_cni_config();
        harness.start_again();
        harness.import_images();
        harness
    }

    /// The containerd (and CRI) gRPC unix socket.
    pub fn socket(&self) -> &Path {
        &self.socket
    }

    /// The containerd namespace CRI uses: `k8s.io`.
    pub fn namespace(&self) -> &str {
        NAMESPACE
    }

    /// The temporary directory with containerd's root, state, config, log, images and pod files.
    pub fn root(&self) -> &Path {
        &self.root
    }

    /// containerd's `root` (content, snapshots, metadata).
    pub fn data_root(&self) -> PathBuf {
        self.root.join("root")
    }

    /// containerd's `state` (task bundles, container rootfs mounts).
    pub fn state_root(&self) -> PathBuf {
        self.root.join("state")
    }

    /// The images imported at start (busybox, then pause).
    pub fn images(&self) -> &[BuiltImage] {
        &self.images
    }

    /// containerd's pid, while it runs.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last `lines` lines of containerd's log (it appends across restarts).
    pub fn log_tail(&self, lines: usize) -> String {
        log_tail(&self.log, lines)
    }

    /// Kills containerd with SIGKILL (tasks keep running: their shims survive) and starts it
    /// again on the same root, state and socket; returns when it answers CRI again. A [`Cri`]
    /// connected before may fail its next call: connect a new one.
    pub fn restart(&mut self) {
        self.kill();
        self.start_again();
    }

    /// Kills containerd with SIGKILL and reaps it. Shims and containers keep running.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts containerd (again) with the same config; returns when CRI answers. Does nothing
    /// when it runs already.
    pub fn start_again(&mut self) {
        if let Err(e) = self.spawn_and_wait(READY_TIMEOUT) {
            panic!(
                "containerd did not come up: {e}\n--- tail of {} ---\n{}",
                self.log.display(),
                self.log_tail(40)
            );
        }
    }

    /// A CRI client (RuntimeService and ImageService) connected over the socket.
    pub async fn cri(&self) -> Cri {
        let channel = connect(self.socket.clone()).await.unwrap_or_else(|e| {
            panic!(
                "connect to CRI at {}: {e}\n--- tail of {} ---\n{}",
                self.socket.display(),
                self.log.display(),
                self.log_tail(20)
            )
        });
        Cri {
            runtime: RuntimeServiceClient::new(channel.clone()),
            images: ImageServiceClient::new(channel),
            shared: Arc::clone(&self.shared),
            root: self.root.clone(),
            log: self.log.clone(),
        }
    }

    /// This harness's CNI network: a bridge and a /24 of its own (so that harnesses running
    /// side by side do not meet), addresses kept under the harness root.
    fn write_cni_config(&self) {
        let dir = self.root.join("cni").join("conf.d");
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        let n = self.cni_index();
        let conf = format!(
            r#"{{
  "cniVersion": "0.4.0",
  "name": "jobwatch-test",
  "plugins": [
    {{
      "type": "bridge",
      "bridge": "{bridge}",
      "isGateway": true,
      "ipMasq": false,
      "ipam": {{
        "type": "host-local",
        "ranges": [[{{"subnet": "10.{a}.{b}.0/24"}}]],
        "dataDir": "{root}/cni/ipam"
      }}
    }},
    {{"type": "loopback"}}
  ]
}}
"#,
            bridge = self.cni_bridge(),
            a = 200 + (n >> 8) % 50,
            b = n & 0xff,
            root = self.root.display(),
        );
        let path = dir.join("10-jobwatch-test.conflist");
        std::fs::write(&path, conf).unwrap_or_else(|e| panic!("write {}: {e}", path.display()));
    }

    /// A number unique enough among harnesses running at once (from the root's name).
    fn cni_index(&self) -> u32 {
        let name = self.root.to_string_lossy();
        name.bytes().fold(2_166_136_261u32, |h, b| {
            (h ^ u32::from(b)).wrapping_mul(16_777_619)
        })
    }

    /// The bridge's name (at most 15 characters).
    fn cni_bridge(&self) -> String {
        format!("jw{:08x}", self.cni_index())
    }

    fn config_toml(&self) -> String {
        let r = self.root.display();
        let cni_bin = CNI_BIN_DIRS
            .iter()
            .find(|d| Path::new(d).join("bridge").exists())
            .copied()
            .unwrap_or(CNI_BIN_DIRS[0]);
        format!(
            r#"# Generated by jobwatch-tests (tests/src/containerd.rs).
version = 2
root = "{r}/root"
state = "{r}/state"
disabled_plugins = [
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.zfs",
]

[grpc]
  address = "{r}/containerd.sock"

[ttrpc]
  address = "{r}/containerd.sock.ttrpc"

[debug]
  address = ""

[metrics]
  address = ""

[plugins."io.containerd.internal.v1.opt"]
  path = "{r}/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{PAUSE_REF}"
  # No CAP_SYS_RESOURCE here: without it every sandbox fails with
  # "can't get final child's PID from pipe: EOF".
  restrict_oom_score_adj = true
  disable_apparmor = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"

  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"

    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"

      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        SystemdCgroup = false
        Root = "{r}/runc"

  # Pods use the host network namespace unless PodSpec::host_network is false; then CNI
  # (Debian's containernetworking-plugins) puts them on this harness's own bridge.
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{r}/cni/conf.d"
"#
        )
    }

    fn running(&mut self) -> bool {
        match &mut self.child {
            Some(child) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// Starts containerd unless it runs, then waits until CRI answers Version.
    fn spawn_and_wait(&mut self, timeout: Duration) -> Result<(), String> {
        if !self.running() {
            // A socket left by a killed containerd: containerd replaces it, but make sure
            // nothing answers on the old one while we wait.
            let _ = std::fs::remove_file(&self.socket);
            let log = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.log)
                .map_err(|e| format!("open {}: {e}", self.log.display()))?;
            let log2 = log
                .try_clone()
                .map_err(|e| format!("clone log handle: {e}"))?;
            let path = match std::env::var("PATH") {
                Ok(p) if !p.is_empty() => format!("{p}:{SYSTEM_PATH}"),
                _ => SYSTEM_PATH.to_string(),
            };
            let containerd = find_binary("containerd").ok_or("containerd is not installed")?;
            let child = Command::new(containerd)
                .arg("--config")
                .arg(&self.config)
                .env("PATH", path)
                .stdin(Stdio::null())
                .stdout(log)
                .stderr(log2)
                .spawn()
                .map_err(|e| format!("spawn containerd: {e}"))?;
            self.child = Some(child);
        }
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(child) = &mut self.child
                && let Ok(Some(status)) = child.try_wait()
            {
                self.child = None;
                return Err(format!("containerd exited ({status})"));
            }
            if std::os::unix::net::UnixStream::connect(&self.socket).is_ok() {
                let socket = self.socket.clone();
                let answer = block_on_thread(Duration::from_secs(5), async move {
                    let channel = connect(socket).await.map_err(|e| e.to_string())?;
                    RuntimeServiceClient::new(channel)
                        .version(VersionRequest::default())
                        .await
                        .map(|r| r.into_inner())
                        .map_err(|e| e.message().to_string())
                });
                if let Ok(Ok(_version)) = answer {
                    self.answered = true;
                    return Ok(());
                }
            }
            if Instant::now() > deadline {
                return Err(format!(
                    "CRI on {} did not answer within {timeout:?}",
                    self.socket.display()
                ));
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// `ctr images import` (which also unpacks for the overlayfs snapshotter), then waits until
    /// CRI knows each image (its image store learns them from containerd's events).
    fn import_images(&self) {
        let ctr = find_binary("ctr").expect("ctr is installed (checked at start)");
        for image in &self.images {
            let out = Command::new(&ctr)
                .arg("--address")
                .arg(&self.socket)
                .args([
                    "-n",
                    NAMESPACE,
                    "images",
                    "import",
                    "--snapshotter",
                    "overlayfs",
                ])
                .arg(&image.tarball)
                .stdin(Stdio::null())
                .output()
                .expect("ctr runs");
            assert!(
                out.status.success(),
                "`ctr images import {}` failed ({}): {}{}\n--- tail of {} ---\n{}",
                image.tarball.display(),
                out.status,
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                self.log.display(),
                self.log_tail(20)
            );
        }
        let socket = self.socket.clone();
        let refs: Vec<&'static str> = self.images.iter().map(|i| i.reference).collect();
        let known = block_on_thread(READY_TIMEOUT, async move {
            let channel = connect(socket).await.map_err(|e| e.to_string())?;
            let mut client = ImageServiceClient::new(channel);
            for reference in refs {
                loop {
                    let status = client
                        .image_status(ImageStatusRequest {
                            image: Some(image_spec(reference)),
                            verbose: false,
                        })
                        .await
                        .map_err(|e| e.message().to_string())?
                        .into_inner();
                    if status.image.is_some() {
                        break;
                    }
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            }
            Ok::<_, String>(())
        });
        match known {
            Ok(Ok(())) => {}
            Ok(Err(e)) => panic!("CRI ImageStatus failed: {e}"),
            Err(e) => panic!(
                "CRI did not list the imported images: {e}\n--- tail of {} ---\n{}",
                self.log.display(),
                self.log_tail(20)
            ),
        }
    }

    /// Stops and removes every pod sandbox through CRI; returns what failed.
    fn remove_all_pods(&mut self) -> Result<(), String> {
        if !self.answered {
            return Err("containerd never answered".to_string());
        }
        if !self.running() {
            self.spawn_and_wait(Duration::from_secs(15))?;
        }
        let socket = self.socket.clone();
        let shared = Arc::clone(&self.shared);
        block_on_thread(CRI_CALL_TIMEOUT, async move {
            let channel = connect(socket).await.map_err(|e| e.to_string())?;
            let mut client = RuntimeServiceClient::new(channel);
            let pods = client
                .list_pod_sandbox(ListPodSandboxRequest::default())
                .await
                .map_err(|e| format!("ListPodSandbox: {}", e.message()))?
                .into_inner()
                .items;
            let mut errors = Vec::new();
            for pod in pods {
                if let Some(meta) = &pod.metadata {
                    lock(&shared).pod_uids.insert(meta.uid.clone());
                }
                let id = pod.id;
                if let Err(e) = client
                    .stop_pod_sandbox(StopPodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await
                {
                    errors.push(format!("StopPodSandbox {id}: {}", e.message()));
                }
                if let Err(e) = client
                    .remove_pod_sandbox(RemovePodSandboxRequest {
                        pod_sandbox_id: id.clone(),
                    })
                    .await
                {
                    errors.push(format!("RemovePodSandbox {id}: {}", e.message()));
                }
            }
            if errors.is_empty() {
                Ok(())
            } else {
                Err(errors.join("; "))
            }
        })
        .and_then(|r| r)
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        let mut problems = Vec::new();
        if std::thread::panicking() {
            eprintln!(
                "--- containerd harness: tail of {} ---\n{}\n---",
                self.log.display(),
                self.log_tail(30)
            );
        }
        if let Err(e) = self.remove_all_pods() {
            problems.push(format!("removing pods through CRI: {e}"));
        }
        self.kill();
        let bridge = self.cni_bridge();
        if Path::new("/sys/class/net").join(&bridge).exists() {
            match Command::new("ip").args(["link", "del", &bridge]).status() {
                Ok(s) if s.success() => {}
                other => problems.push(format!("deleting the bridge {bridge}: {other:?}")),
            }
        }

        // Whatever CRI could not stop: processes of our pods, then our shims (and a containerd
        // that is not our child any more), recognized by our socket or config path.
        let uids: Vec<String> = lock(&self.shared).pod_uids.iter().cloned().collect();
        let mut pids: Vec<u32> = uids.iter().flat_map(|uid| pod_processes(uid)).collect();
        pids.extend(
            leftover_processes(&self.root)
                .into_iter()
                .filter(|(_, cmdline)| {
                    let argv0 = cmdline.split(' ').next().unwrap_or_default();
                    Path::new(argv0)
                        .file_name()
                        .is_some_and(|name| name.to_string_lossy().starts_with("containerd"))
                })
                .map(|(pid, _)| pid),
        );
        if !pids.is_empty() {
            problems.push(format!("killed leftover processes {pids:?}"));
            kill_and_wait(&pids);
        }
        // Shim sockets (/run/containerd/s/<hash>) of shims that did not exit cleanly.
        for address in shim_addresses(&self.state_root()) {
            let _ = std::fs::remove_file(address);
        }

        let still_mounted = unmount_under(&self.root);
        if !still_mounted.is_empty() {
            problems.push(format!("could not unmount {still_mounted:?}"));
        }
        for uid in &uids {
            for dir in pod_cgroup_dirs(uid) {
                if let Err(e) = remove_cgroup_tree(&dir) {
                    problems.push(format!("rmdir {}: {e}", dir.display()));
                }
            }
        }
        if still_mounted.is_empty() {
            if let Err(e) = std::fs::remove_dir_all(&self.root) {
                problems.push(format!("remove {}: {e}", self.root.display()));
            }
        } else {
            problems.push(format!("left {} in place", self.root.display()));
        }
        if !problems.is_empty() {
            eprintln!(
                "containerd harness cleanup ({}): {}",
                self.root.display(),
                problems.join("; ")
            );
        }
    }
}

/// A CRI client connected to the harness's containerd.
pub struct Cri {
    runtime: RuntimeServiceClient<Channel>,
    images: ImageServiceClient<Channel>,
    shared: Arc<Mutex<Shared>>,
    root: PathBuf,
    log: PathBuf,
}

/// A pod as the API server hands it to the kubelet (only what reaches CRI).
#[derive(Clone, Debug)]
pub struct PodSpec {
    pub name: String,
    pub namespace: String,
    pub uid: String,
    pub labels: BTreeMap<String, String>,
    pub annotations: BTreeMap<String, String>,
    pub host_pid: bool,
    pub host_ipc: bool,
    /// The host's network namespace (`hostNetwork: true`); otherwise the pod gets its own,
    /// on the harness's CNI bridge.
    pub host_network: bool,
    /// Whether any container of the pod is privileged: the kubelet then makes the sandbox
    /// privileged, and containerd refuses a privileged container in a sandbox that is not
    /// ("no privileged container allowed in sandbox").
    pub privileged: bool,
}

/// One container of a pod (only what reaches CRI).
#[derive(Clone, Debug, Default)]
pub struct ContainerSpec {
    pub name: String,
    /// `busybox`, `pause`, or a full reference of an imported image.
    pub image: String,
    pub command: Vec<String>,
    pub args: Vec<String>,
    /// Needs [`PodSpec::privileged`].
    pub privileged: bool,
    pub run_as_user: Option<i64>,
    pub run_as_group: Option<i64>,
    /// Kubernetes names, e.g. `NET_ADMIN` (containerd adds the `CAP_` prefix).
    pub add_capabilities: Vec<String>,
    /// Kubernetes names, or `ALL` (then only `add_capabilities` remain).
    pub drop_capabilities: Vec<String>,
    /// (host path, container path, read-only).
    pub host_mounts: Vec<(PathBuf, String, bool)>,
    pub readonly_rootfs: bool,
    pub no_new_privs: bool,
    /// Extra container labels (the kubelet sets none besides its own four).
    pub labels: BTreeMap<String, String>,
    pub envs: Vec<(String, String)>,
}

impl Cri {
    /// The raw RuntimeService client, for calls the helpers do not cover.
    pub fn runtime(&mut self) -> &mut RuntimeServiceClient<Channel> {
        &mut self.runtime
    }

    /// The raw ImageService client.
    pub fn image_service(&mut self) -> &mut ImageServiceClient<Channel> {
        &mut self.images
    }

    /// RunPodSandbox as the kubelet does it (see the module docs); returns the sandbox id.
    pub async fn run_pod(&mut self, pod: &PodSpec) -> String {
        lock(&self.shared).pod_uids.insert(pod.uid.clone());
        let config = self.sandbox_config(pod);
        let id = self
            .runtime
            .run_pod_sandbox(RunPodSandboxRequest {
                config: Some(config.clone()),
                runtime_handler: String::new(),
            })
            .await
            .unwrap_or_else(|e| self.fail(&format!("RunPodSandbox {}", pod.name), &e))
            .into_inner()
            .pod_sandbox_id;
        lock(&self.shared).sandboxes.insert(id.clone(), config);
        id
    }

    /// CreateContainer as the kubelet does it (see the module docs); returns the container id.
    pub async fn create_container(
        &mut self,
        sandbox_id: &str,
        pod: &PodSpec,
        c: &ContainerSpec,
    ) -> String {
        assert!(
            !c.privileged || pod.privileged,
            "container {} is privileged but pod {} is not: set PodSpec::privileged (the kubelet \
             makes the sandbox privileged when any container is)",
            c.name,
            pod.name
        );
        let sandbox_config = lock(&self.shared)
            .sandboxes
            .get(sandbox_id)
            .cloned()
            .unwrap_or_else(|| self.sandbox_config(pod));
        let attempt = {
            let mut shared = lock(&self.shared);
            let next = shared
                .attempts
                .entry((sandbox_id.to_string(), c.name.clone()))
                .or_insert(0);
            let attempt = *next;
            *next += 1;
            attempt
        };
        let reference = image_reference(&c.image);
        let image_id = self.image_id(reference).await;

        // The kubelet's per-pod files: /etc/hosts (a copy of the host's for host-network
        // pods) and an empty termination log per container instance.
        let pod_dir = self.pod_dir(&pod.uid);
        let hosts = pod_dir.join("etc-hosts");
        if !hosts.exists() {
            let content =
                std::fs::read("/etc/hosts").unwrap_or_else(|_| b"127.0.0.1\tlocalhost\n".to_vec());
            std::fs::write(&hosts, content)
                .unwrap_or_else(|e| panic!("write {}: {e}", hosts.display()));
        }
        let termination_dir = pod_dir.join("containers").join(&c.name);
        std::fs::create_dir_all(&termination_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", termination_dir.display()));
        let termination_log = termination_dir.join(random_hex(4));
        std::fs::write(&termination_log, b"")
            .unwrap_or_else(|e| panic!("write {}: {e}", termination_log.display()));
        std::fs::set_permissions(&termination_log, std::fs::Permissions::from_mode(0o666))
            .unwrap_or_else(|e| panic!("chmod {}: {e}", termination_log.display()));

        let mut mounts: Vec<Mount> = c
            .host_mounts
            .iter()
            .map(|(host, container, readonly)| Mount {
                container_path: container.clone(),
                host_path: host.to_string_lossy().into_owned(),
                readonly: *readonly,
                propagation: MountPropagation::PropagationPrivate as i32,
                ..Default::default()
            })
            .collect();
        if !c.host_mounts.iter().any(|(_, dst, _)| dst == "/etc/hosts") {
            mounts.push(Mount {
                container_path: "/etc/hosts".to_string(),
                host_path: hosts.to_string_lossy().into_owned(),
                ..Default::default()
            });
        }
        mounts.push(Mount {
            container_path: "/dev/termination-log".to_string(),
            host_path: termination_log.to_string_lossy().into_owned(),
            ..Default::default()
        });

        let mut labels: HashMap<String, String> = c.labels.clone().into_iter().collect();
        labels.insert("io.kubernetes.container.name".into(), c.name.clone());
        labels.insert("io.kubernetes.pod.name".into(), pod.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), pod.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), pod.uid.clone());
        let hash = image::sha256_hex(format!("{c:?}").as_bytes());
        let annotations: HashMap<String, String> = [
            ("io.kubernetes.container.hash", hash[..8].to_string()),
            ("io.kubernetes.container.restartCount", attempt.to_string()),
            (
                "io.kubernetes.container.terminationMessagePath",
                "/dev/termination-log".to_string(),
            ),
            (
                "io.kubernetes.container.terminationMessagePolicy",
                "File".to_string(),
            ),
            ("io.kubernetes.pod.terminationGracePeriod", "30".to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();

        let (masked_paths, readonly_paths) = if c.privileged {
            (Vec::new(), Vec::new())
        } else {
            (
                MASKED_PATHS.iter().map(|p| p.to_string()).collect(),
                READONLY_PATHS.iter().map(|p| p.to_string()).collect(),
            )
        };
        let config = ContainerConfig {
            metadata: Some(ContainerMetadata {
                name: c.name.clone(),
                attempt,
            }),
            image: Some(ImageSpec {
                image: image_id,
                user_specified_image: c.image.clone(),
                ..Default::default()
            }),
            command: c.command.clone(),
            args: c.args.clone(),
            envs: c
                .envs
                .iter()
                .map(|(key, value)| KeyValue {
                    key: key.clone(),
                    value: value.clone(),
                })
                .collect(),
            mounts,
            labels,
            annotations,
            log_path: format!("{}/{attempt}.log", c.name),
            linux: Some(LinuxContainerConfig {
                resources: Some(LinuxContainerResources {
                    cpu_period: 100_000,
                    cpu_shares: 2,
                    oom_score_adj: 1000,
                    ..Default::default()
                }),
                security_context: Some(LinuxContainerSecurityContext {
                    capabilities: Some(Capability {
                        add_capabilities: c.add_capabilities.clone(),
                        drop_capabilities: c.drop_capabilities.clone(),
                        ..Default::default()
                    }),
                    privileged: c.privileged,
                    namespace_options: Some(namespace_options(pod)),
                    run_as_user: c.run_as_user.map(|value| Int64Value { value }),
                    run_as_group: c.run_as_group.map(|value| Int64Value { value }),
                    readonly_rootfs: c.readonly_rootfs,
                    no_new_privs: c.no_new_privs,
                    masked_paths,
                    readonly_paths,
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
            }),
            ..Default::default()
        };
        let log_dir = PathBuf::from(&sandbox_config.log_directory).join(&c.name);
        std::fs::create_dir_all(&log_dir)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_dir.display()));
        self.runtime
            .create_container(CreateContainerRequest {
                pod_sandbox_id: sandbox_id.to_string(),
                config: Some(config),
                sandbox_config: Some(sandbox_config),
            })
            .await
            .unwrap_or_else(|e| self.fail(&format!("CreateContainer {}", c.name), &e))
            .into_inner()
            .container_id
    }

    pub async fn start_container(&mut self, id: &str) {
        self.runtime
            .start_container(StartContainerRequest {
                container_id: id.to_string(),
            })
            .await
            .unwrap_or_else(|e| self.fail(&format!("StartContainer {id}"), &e));
    }

    /// ContainerStatus (not verbose).
    pub async fn container_status(&mut self, id: &str) -> ContainerStatus {
        self.runtime
            .container_status(ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: false,
            })
            .await
            .unwrap_or_else(|e| self.fail(&format!("ContainerStatus {id}"), &e))
            .into_inner()
            .status
            .unwrap_or_else(|| panic!("ContainerStatus {id} has no status"))
    }

    /// The host pid of a running container's first process (from the verbose status), or
    /// `None` when it does not run.
    pub async fn container_pid(&mut self, id: &str) -> Option<u32> {
        let response = self
            .runtime
            .container_status(ContainerStatusRequest {
                container_id: id.to_string(),
                verbose: true,
            })
            .await
            .unwrap_or_else(|e| self.fail(&format!("ContainerStatus {id}"), &e))
            .into_inner();
        let info: serde_json::Value = serde_json::from_str(response.info.get("info")?).ok()?;
        let pid = info.get("pid")?.as_u64()?;
        u32::try_from(pid).ok().filter(|&p| p != 0)
    }

    /// Polls ContainerStatus until the container exited; returns its exit code. Panics on
    /// timeout with the last status.
    pub async fn wait_exit(&mut self, id: &str, timeout: Duration) -> i32 {
        let deadline = Instant::now() + timeout;
        loop {
            let status = self.container_status(id).await;
            if status.state == ContainerState::ContainerExited as i32 {
                return status.exit_code;
            }
            if Instant::now() > deadline {
                panic!("container {id} did not exit within {timeout:?}: {status:#?}");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    /// StopPodSandbox and RemovePodSandbox (which removes its containers), then removes the pod
    /// cgroup directories runc leaves behind (the kubelet does that).
    pub async fn remove_pod(&mut self, sandbox_id: &str) {
        self.runtime
            .stop_pod_sandbox(StopPodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_string(),
            })
            .await
            .unwrap_or_else(|e| self.fail(&format!("StopPodSandbox {sandbox_id}"), &e));
        self.runtime
            .remove_pod_sandbox(RemovePodSandboxRequest {
                pod_sandbox_id: sandbox_id.to_string(),
            })
            .await
            .unwrap_or_else(|e| self.fail(&format!("RemovePodSandbox {sandbox_id}"), &e));
        let config = lock(&self.shared).sandboxes.remove(sandbox_id);
        if let Some(uid) = config.and_then(|c| c.metadata).map(|m| m.uid) {
            for dir in pod_cgroup_dirs(&uid) {
                let _ = remove_cgroup_tree(&dir);
            }
        }
    }

    pub async fn list_containers(&mut self) -> Vec<Container> {
        self.runtime
            .list_containers(ListContainersRequest { filter: None })
            .await
            .unwrap_or_else(|e| self.fail("ListContainers", &e))
            .into_inner()
            .containers
    }

    /// The image id (`sha256:<config digest>`) the kubelet would pass for `reference`, from
    /// ImageStatus.
    pub async fn image_id(&mut self, reference: &str) -> String {
        self.images
            .image_status(ImageStatusRequest {
                image: Some(image_spec(reference)),
                verbose: false,
            })
            .await
            .unwrap_or_else(|e| self.fail(&format!("ImageStatus {reference}"), &e))
            .into_inner()
            .image
            .unwrap_or_else(|| panic!("image {reference} is not imported in containerd"))
            .id
    }

    fn pod_dir(&self, uid: &str) -> PathBuf {
        let dir = self.root.join("pods").join(uid);
        std::fs::create_dir_all(&dir).unwrap_or_else(|e| panic!("create {}: {e}", dir.display()));
        dir
    }

    fn sandbox_config(&self, pod: &PodSpec) -> PodSandboxConfig {
        let log_directory = self
            .root
            .join("logs")
            .join(format!("{}_{}_{}", pod.namespace, pod.name, pod.uid));
        std::fs::create_dir_all(&log_directory)
            .unwrap_or_else(|e| panic!("create {}: {e}", log_directory.display()));
        self.pod_dir(&pod.uid);
        let mut labels: HashMap<String, String> = pod.labels.clone().into_iter().collect();
        labels.insert("io.kubernetes.pod.name".into(), pod.name.clone());
        labels.insert("io.kubernetes.pod.namespace".into(), pod.namespace.clone());
        labels.insert("io.kubernetes.pod.uid".into(), pod.uid.clone());
        let mut annotations: HashMap<String, String> =
            pod.annotations.clone().into_iter().collect();
        annotations
            .entry("kubernetes.io/config.seen".into())
            .or_insert_with(rfc3339_now);
        annotations
            .entry("kubernetes.io/config.source".into())
            .or_insert_with(|| "api".into());
        PodSandboxConfig {
            metadata: Some(PodSandboxMetadata {
                name: pod.name.clone(),
                uid: pod.uid.clone(),
                namespace: pod.namespace.clone(),
                attempt: 0,
            }),
            // Must stay empty with the host network namespace.
            hostname: if pod.host_network {
                String::new()
            } else {
                pod.name.chars().take(63).collect()
            },
            log_directory: log_directory.to_string_lossy().into_owned(),
            labels,
            annotations,
            linux: Some(LinuxPodSandboxConfig {
                cgroup_parent: format!("/kubepods/besteffort/pod{}", pod.uid),
                security_context: Some(LinuxSandboxSecurityContext {
                    namespace_options: Some(namespace_options(pod)),
                    privileged: pod.privileged,
                    seccomp: Some(unconfined()),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn fail(&self, what: &str, status: &tonic::Status) -> ! {
        panic!(
            "CRI {what} failed: {:?}: {}\n--- tail of {} ---\n{}",
            status.code(),
            status.message(),
            self.log.display(),
            log_tail(&self.log, 20)
        )
    }
}

/// A pod as the Job controller creates it for CronJob `cronjob` scheduled at
/// `scheduled_minutes` (minutes since the Unix epoch): Job `<cronjob>-<scheduled_minutes>`, pod
/// `<job>-<5 random characters>`, the Job controller's four labels with a fresh controller uid,
/// and a fresh pod uid.
pub fn cronjob_pod(cronjob: &str, scheduled_minutes: u64, namespace: &str) -> PodSpec {
    let job = format!("{cronjob}-{scheduled_minutes}");
    let controller_uid = uuid();
    let labels = [
        (
            "batch.kubernetes.io/controller-uid",
            controller_uid.as_str(),
        ),
        ("batch.kubernetes.io/job-name", job.as_str()),
        ("controller-uid", controller_uid.as_str()),
        ("job-name", job.as_str()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    PodSpec {
        name: format!("{job}-{}", generate_name_suffix()),
        namespace: namespace.to_string(),
        uid: uuid(),
        labels,
        annotations: BTreeMap::new(),
        host_pid: false,
        host_ipc: false,
        host_network: true,
        privileged: false,
    }
}

/// The pod's cgroup directories that exist now, in every hierarchy (v1 controllers, the
/// unified one, or a pure cgroup2 mount): `.../kubepods/besteffort/pod<uid>`.
pub fn pod_cgroup_dirs(uid: &str) -> Vec<PathBuf> {
    let base = Path::new("/sys/fs/cgroup");
    let relative = format!("kubepods/besteffort/pod{uid}");
    let mut dirs = vec![base.join(&relative)];
    if let Ok(entries) = std::fs::read_dir(base) {
        for entry in entries.flatten() {
            // cpu,cpuacct style symlinks name a hierarchy twice.
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                dirs.push(entry.path().join(&relative));
            }
        }
    }
    dirs.retain(|d| d.is_dir());
    dirs
}

/// The container's cgroup directory in the unified (cgroup2) hierarchy on this hybrid host:
/// its inode is what `bpf_get_current_cgroup_id()` returns inside the container.
pub fn unified_cgroup_dir(pod_uid: &str, container_id: &str) -> PathBuf {
    PathBuf::from(format!(
        "/sys/fs/cgroup/unified/kubepods/besteffort/pod{pod_uid}/{container_id}"
    ))
}

/// Processes whose command line mentions `path` (containerd started with our config, shims
/// whose `-address` is our socket): `(pid, command line)`.
pub fn leftover_processes(path: &Path) -> Vec<(u32, String)> {
    let needle = path.to_string_lossy().into_owned();
    let own = std::process::id();
    let mut found = Vec::new();
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return found;
    };
    for entry in entries.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        if pid == own || is_zombie(pid) {
            continue;
        }
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else {
            continue;
        };
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        if cmdline.contains(&needle) {
            found.push((pid, cmdline.trim_end().to_string()));
        }
    }
    found
}

/// Whether `pid` is a live process (not gone, not a zombie waiting for its new parent).
pub fn process_alive(pid: u32) -> bool {
    !is_zombie(pid)
}

/// Whether `pid` is a zombie or gone.
fn is_zombie(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            s.rfind(')')
                .and_then(|i| s[i + 1..].split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true)
}

/// Processes in the pod's cgroups (any hierarchy, any depth).
fn pod_processes(uid: &str) -> Vec<u32> {
    fn walk(dir: &Path, pids: &mut BTreeSet<u32>) {
        if let Ok(procs) = std::fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<u32>().ok()));
        }
        if let Ok(entries) = std::fs::read_dir(dir) {
            for entry in entries.flatten() {
                if entry.file_type().is_ok_and(|t| t.is_dir()) {
                    walk(&entry.path(), pids);
                }
            }
        }
    }
    let mut pids = BTreeSet::new();
    for dir in pod_cgroup_dirs(uid) {
        walk(&dir, &mut pids);
    }
    pids.into_iter().collect()
}

/// SIGKILLs `pids` and waits (up to 5 s) until they are gone or zombies.
fn kill_and_wait(pids: &[u32]) {
    for &pid in pids {
        if let Ok(pid) = i32::try_from(pid) {
            // SAFETY: kill(2) with a pid we found in our own cgroups or with our socket path.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
            }
        }
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && pids.iter().any(|&p| !is_zombie(p)) {
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// The shim socket addresses recorded in the task bundles under `state`.
fn shim_addresses(state: &Path) -> Vec<PathBuf> {
    let mut found = Vec::new();
    let Ok(namespaces) = std::fs::read_dir(state.join("io.containerd.runtime.v2.task")) else {
        return found;
    };
    for ns in namespaces.flatten() {
        let Ok(bundles) = std::fs::read_dir(ns.path()) else {
            continue;
        };
        for bundle in bundles.flatten() {
            if let Ok(address) = std::fs::read_to_string(bundle.path().join("address")) {
                let address = address.trim();
                let path = address.strip_prefix("unix://").unwrap_or(address);
                if path.starts_with("/run/containerd/s/") {
                    found.push(PathBuf::from(path));
                }
            }
        }
    }
    found
}

/// Unmounts (lazily, deepest first) every mount point under `root`; returns those left.
fn unmount_under(root: &Path) -> Vec<PathBuf> {
    let prefix = format!("{}/", root.display());
    let mounted = || -> Vec<PathBuf> {
        let text = std::fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mut points: Vec<PathBuf> = text
            .lines()
            .filter_map(|l| l.split(' ').nth(4))
            .map(unescape_mountinfo)
            .filter(|p| p.starts_with(&prefix))
            .map(PathBuf::from)
            .collect();
        points.sort_by_key(|p| std::cmp::Reverse(p.as_os_str().len()));
        points.dedup();
        points
    };
    for _ in 0..5 {
        let points = mounted();
        if points.is_empty() {
            break;
        }
        for point in points {
            let Ok(c) = std::ffi::CString::new(point.as_os_str().as_encoded_bytes()) else {
                continue;
            };
            // SAFETY: umount2 with a NUL-terminated path.
            unsafe {
                libc::umount2(c.as_ptr(), libc::MNT_DETACH);
            }
        }
    }
    mounted()
}

/// Mount points in /proc/self/mountinfo escape space, tab, newline and backslash as `\ooo`.
fn unescape_mountinfo(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\'
            && let Some(digits) = bytes.get(i + 1..i + 4)
            && let Ok(digits) = std::str::from_utf8(digits)
            && let Ok(v) = u8::from_str_radix(digits, 8)
        {
            out.push(v);
            i += 4;
            continue;
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// rmdir a cgroup directory and its sub-cgroups, deepest first (cgroup directories hold only
/// control files, which rmdir ignores).
fn remove_cgroup_tree(dir: &Path) -> std::io::Result<()> {
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                remove_cgroup_tree(&entry.path())?;
            }
        }
    }
    // A cgroup whose last process just died can be busy for a moment.
    let mut tries = 0;
    loop {
        match std::fs::remove_dir(dir) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) if e.raw_os_error() == Some(libc::EBUSY) && tries < 50 => {
                tries += 1;
                std::thread::sleep(Duration::from_millis(20));
            }
            Err(e) => return Err(e),
        }
    }
}

fn image_reference(image: &str) -> &str {
    match image {
        "busybox" | "busybox:jobwatch" => BUSYBOX_REF,
        "pause" | "pause:jobwatch" => PAUSE_REF,
        other => other,
    }
}

fn image_spec(reference: &str) -> ImageSpec {
    ImageSpec {
        image: reference.to_string(),
        ..Default::default()
    }
}

fn unconfined() -> SecurityProfile {
    SecurityProfile {
        profile_type: ProfileType::Unconfined as i32,
        localhost_ref: String::new(),
    }
}

/// The kubelet's namespace options, for the sandbox and its containers alike: network `NODE`
/// with hostNetwork, else `POD`; PID `CONTAINER` (the kubelet's default; `POD` is only for
/// shareProcessNamespace) or `NODE` with hostPID, IPC `POD` or `NODE` with hostIPC.
fn namespace_options(pod: &PodSpec) -> NamespaceOption {
    NamespaceOption {
        network: if pod.host_network {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        } as i32,
        pid: if pod.host_pid {
            NamespaceMode::Node
        } else {
            NamespaceMode::Container
        } as i32,
        ipc: if pod.host_ipc {
            NamespaceMode::Node
        } else {
            NamespaceMode::Pod
        } as i32,
        ..Default::default()
    }
}

async fn connect(socket: PathBuf) -> Result<Channel, tonic::transport::Error> {
    Endpoint::try_from("http://[::]:50051")?
        .connect_with_connector(tower::service_fn(move |_: Uri| {
            let path = socket.clone();
            async move {
                Ok::<_, std::io::Error>(TokioIo::new(tokio::net::UnixStream::connect(path).await?))
            }
        }))
        .await
}

/// Runs `fut` to completion on a new thread with its own runtime (so that sync code can make
/// CRI calls whether or not it runs inside a runtime); `Err` on timeout.
fn block_on_thread<F>(timeout: Duration, fut: F) -> Result<F::Output, String>
where
    F: std::future::Future + Send + 'static,
    F::Output: Send + 'static,
{
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("tokio runtime for a CRI call")
            .block_on(async move { tokio::time::timeout(timeout, fut).await })
    })
    .join()
    .map_err(|_| "the CRI call panicked".to_string())?
    .map_err(|_| format!("timed out after {timeout:?}"))
}

fn lock(shared: &Mutex<Shared>) -> std::sync::MutexGuard<'_, Shared> {
    shared
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

fn find_binary(name: &str) -> Option<PathBuf> {
    let path = std::env::var("PATH").unwrap_or_default();
    path.split(':')
        .chain(SYSTEM_PATH.split(':'))
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(name))
        .find(|p| {
            p.metadata()
                .is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
        })
}

fn log_tail(log: &Path, lines: usize) -> String {
    let text = std::fs::read_to_string(log).unwrap_or_else(|e| format!("(no log: {e})"));
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

fn random_bytes<const N: usize>() -> [u8; N] {
    let mut bytes = [0u8; N];
    std::fs::File::open("/dev/urandom")
        .and_then(|mut f| f.read_exact(&mut bytes))
        .expect("read /dev/urandom");
    bytes
}

fn random_hex(n: usize) -> String {
    random_bytes::<16>()[..n.min(16)]
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect()
}

/// A random (version 4) UUID, as Kubernetes uids look.
pub fn uuid() -> String {
    let mut b = random_bytes::<16>();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let hex: String = b.iter().map(|x| format!("{x:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

/// Five characters as the API server's `generateName` picks them (no vowels, no 0/1/3).
fn generate_name_suffix() -> String {
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    random_bytes::<5>()
        .iter()
        .map(|b| ALPHABET[usize::from(*b) % ALPHABET.len()] as char)
        .collect()
}

/// Now as RFC 3339 UTC with nanoseconds, like the kubelet's `kubernetes.io/config.seen`.
fn rfc3339_now() -> String {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default();
    let secs = now.as_secs();
    let (days, rem) = (secs / 86_400, secs % 86_400);
    // Civil date from days since 1970-01-01 (Howard Hinnant's algorithm).
    let z = days as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_nanos()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cronjob_pods_look_like_the_job_controllers() {
        let pod = cronjob_pod("backup", 29_000_000, "default");
        assert!(pod.name.starts_with("backup-29000000-"));
        assert_eq!(pod.name.len(), "backup-29000000-".len() + 5);
        assert_eq!(pod.labels["job-name"], "backup-29000000");
        assert_eq!(
            pod.labels["batch.kubernetes.io/job-name"],
            "backup-29000000"
        );
        assert_eq!(
            pod.labels["controller-uid"],
            pod.labels["batch.kubernetes.io/controller-uid"]
        );
        assert_ne!(pod.uid, pod.labels["controller-uid"]);
        let uid = pod.uid.as_bytes();
        assert_eq!(pod.uid.len(), 36);
        assert!([8, 13, 18, 23].iter().all(|&i| uid[i] == b'-'));
        assert_eq!(uid[14], b'4');
    }

    #[test]
    fn mountinfo_escapes_are_decoded() {
        assert_eq!(unescape_mountinfo("/tmp/a\\040b"), "/tmp/a b");
        assert_eq!(unescape_mountinfo("/plain"), "/plain");
        assert_eq!(unescape_mountinfo("/end\\"), "/end\\");
    }

    #[test]
    fn timestamps_are_rfc3339() {
        let t = rfc3339_now();
        assert_eq!(t.len(), "2026-11-27T03:28:46.123456789Z".len(), "{t}");
        assert!(t.starts_with("20") && t.ends_with('Z'), "{t}");
    }
}
