//! The containerd harness itself: a real containerd runs a CronJob-style pod through CRI, its
//! container lands in the pod's cgroup, containerd survives a restart, and dropping the harness
//! leaves no process and no pod cgroup behind.

use std::{
    path::PathBuf,
    time::{Duration, Instant},
};

use jobwatch_tests::{
    containerd::{self, ContainerSpec, Containerd, cronjob_pod},
    image::BUSYBOX_REF,
    privileged,
};

fn sh(name: &str, script: &str) -> ContainerSpec {
    ContainerSpec {
        name: name.to_string(),
        image: "busybox".to_string(),
        command: vec!["sh".to_string(), "-c".to_string(), script.to_string()],
        ..Default::default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_harness_runs_a_cronjob_pod() {
    if !privileged("containerd_harness_runs_a_cronjob_pod") {
        return;
    }
    let started = Instant::now();
    let mut ctrd = Containerd::start();
    eprintln!("containerd harness: start() took {:?}", started.elapsed());
    assert_eq!(ctrd.namespace(), "k8s.io");
    let socket: PathBuf = ctrd.socket().to_path_buf();
    let root = ctrd.root().to_path_buf();

    // A CronJob's pod: the container sleeps, writes and reads a file, exits 3.
    let one_pod = Instant::now();
    let mut cri = ctrd.cri().await;
    let pod = cronjob_pod("backup", 29_000_000, "default");
    let sandbox = cri.run_pod(&pod).await;
    let job_container = sh("job", "sleep 2; echo hi > /tmp/x && cat /tmp/x && exit 3");
    let id = cri.create_container(&sandbox, &pod, &job_container).await;
    cri.start_container(&id).await;

    // While it sleeps: its process is in the pod's cgroup.
    let pid = cri
        .container_pid(&id)
        .await
        .expect("the running container has a pid");
    let cgroups = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).expect("its cgroups");
    let expected = format!("/kubepods/besteffort/pod{}/{id}", pod.uid);
    assert!(
        cgroups.lines().all(|l| l.ends_with(&expected)),
        "container process {pid} is not in {expected} everywhere:\n{cgroups}"
    );
    let unified = containerd::unified_cgroup_dir(&pod.uid, &id);
    let procs = std::fs::read_to_string(unified.join("cgroup.procs")).expect("cgroup.procs");
    assert!(
        procs.lines().any(|l| l.trim() == pid.to_string()),
        "{} lists {procs:?}, not {pid}",
        unified.display()
    );

    assert_eq!(cri.wait_exit(&id, Duration::from_secs(20)).await, 3);
    let log = std::fs::read_to_string(
        root.join("logs")
            .join(format!("default_{}_{}", pod.name, pod.uid))
            .join("job/0.log"),
    )
    .expect("the container log");
    assert!(log.contains(" stdout F hi"), "container log: {log:?}");
    eprintln!(
        "containerd harness: one pod (sandbox, container, exit) took {:?}",
        one_pod.elapsed()
    );

    // What the kubelet's labels look like on the node.
    let containers = cri.list_containers().await;
    let app = containers
        .iter()
        .find(|c| c.id == id)
        .expect("the job container is listed");
    assert_eq!(app.pod_sandbox_id, sandbox);
    assert_eq!(app.labels["io.kubernetes.container.name"], "job");
    assert_eq!(app.labels["io.kubernetes.pod.uid"], pod.uid);
    assert_eq!(app.labels["io.kubernetes.pod.name"], pod.name);
    assert!(
        !app.labels.contains_key("job-name"),
        "the kubelet does not give containers the pod labels: {:?}",
        app.labels
    );
    let status = cri.container_status(&id).await;
    assert_eq!(
        status.image.as_ref().map(|i| i.image.as_str()),
        Some(BUSYBOX_REF)
    );
    assert_eq!(
        status.annotations["io.kubernetes.container.restartCount"],
        "0"
    );

    // containerd killed and started again: the finished pod is still known, a new one runs.
    let restarted = Instant::now();
    let old_pid = ctrd.pid().expect("containerd runs");
    ctrd.restart();
    assert_ne!(ctrd.pid(), Some(old_pid));
    eprintln!(
        "containerd harness: restart() took {:?}",
        restarted.elapsed()
    );
    let mut cri = ctrd.cri().await;
    assert!(
        cri.list_containers().await.iter().any(|c| c.id == id),
        "the first container survives the restart"
    );
    let second = cronjob_pod("backup", 29_000_001, "default");
    let sandbox2 = cri.run_pod(&second).await;
    let id2 = cri
        .create_container(&sandbox2, &second, &sh("job", "id -u; exit 0"))
        .await;
    cri.start_container(&id2).await;
    assert_eq!(cri.wait_exit(&id2, Duration::from_secs(20)).await, 0);

    // The second pod stays for the drop to clean up; the first is removed like the kubelet does.
    cri.remove_pod(&sandbox).await;
    assert!(
        containerd::pod_cgroup_dirs(&pod.uid).is_empty(),
        "remove_pod removes the pod cgroups: {:?}",
        containerd::pod_cgroup_dirs(&pod.uid)
    );
    assert!(!containerd::pod_cgroup_dirs(&second.uid).is_empty());
    drop(cri);

    let dropped = Instant::now();
    drop(ctrd);
    eprintln!("containerd harness: drop took {:?}", dropped.elapsed());
    let left = containerd::leftover_processes(&root);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    let shims = containerd::leftover_processes(&socket);
    assert!(shims.is_empty(), "shims left behind: {shims:?}");
    for uid in [&pod.uid, &second.uid] {
        let dirs = containerd::pod_cgroup_dirs(uid);
        assert!(dirs.is_empty(), "pod cgroups left behind: {dirs:?}");
    }
    assert!(!root.exists(), "{} is removed", root.display());
    eprintln!(
        "containerd harness: whole test took {:?}",
        started.elapsed()
    );
}

/// Drop's last resort: containerd is dead and cannot start again, a pod still runs. Its
/// processes, shim, mounts and cgroups must go all the same.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn containerd_harness_cleans_up_without_containerd() {
    if !privileged("containerd_harness_cleans_up_without_containerd") {
        return;
    }
    let mut ctrd = Containerd::start();
    let mut cri = ctrd.cri().await;
    let pod = cronjob_pod("report", 29_000_002, "batch");
    let sandbox = cri.run_pod(&pod).await;
    let id = cri
        .create_container(&sandbox, &pod, &sh("job", "sleep 1000"))
        .await;
    cri.start_container(&id).await;
    let pid = cri.container_pid(&id).await.expect("the container runs");
    drop(cri);
    let root = ctrd.root().to_path_buf();
    let socket = ctrd.socket().to_path_buf();

    ctrd.kill();
    assert!(
        !containerd::leftover_processes(&socket).is_empty(),
        "the pod's shim survives containerd"
    );
    // containerd refuses this config: Drop cannot ask it to remove the pod.
    std::fs::write(root.join("config.toml"), "version = [").expect("break the config");
    drop(ctrd);

    let left = containerd::leftover_processes(&root);
    assert!(left.is_empty(), "processes left behind: {left:?}");
    assert!(
        !containerd::process_alive(pid),
        "the container process {pid} is gone"
    );
    let dirs = containerd::pod_cgroup_dirs(&pod.uid);
    assert!(dirs.is_empty(), "pod cgroups left behind: {dirs:?}");
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    assert!(
        !mounts.contains(root.to_str().expect("utf-8 root")),
        "mounts left under {}",
        root.display()
    );
    assert!(!root.exists(), "{} is removed", root.display());
}
