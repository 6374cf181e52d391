//! End to end with a real containerd driven through CRI as the kubelet drives it: CronJob-style
//! pods run real containers, and the sensor (real eBPF programs in this kernel) must tie their
//! execs, file creations and lifecycle to the container, pod, Job and CronJob.

use std::{path::PathBuf, time::Duration};

use jobwatch_tests::{
    Harness, as_exec, as_file,
    containerd::{ContainerSpec, Containerd, cronjob_pod},
    privileged,
};
use sensor::{
    attribution::workload::WorkloadKind,
    config::{Config, ContainerdConfig},
    event::{ContainerCreated, ContainerExited, Event, EventKind},
};

const WAIT: Duration = Duration::from_secs(15);

fn config(ctd: &Containerd) -> Config {
    Config {
        containerd: ContainerdConfig {
            socket: ctd.socket().to_path_buf(),
            max_backoff_ms: 500,
            ..ContainerdConfig::default()
        },
        ..Config::default()
    }
}

fn wait_connected(h: &Harness, connected: bool) {
    let status = &h.sensor.as_ref().expect("running").containerd;
    let deadline = std::time::Instant::now() + WAIT;
    while status.is_connected() != connected {
        assert!(
            std::time::Instant::now() < deadline,
            "containerd connection never became {connected}: {:?}",
            status.last_error()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn created(e: &Event) -> Option<&ContainerCreated> {
    match &e.kind {
        EventKind::ContainerCreated(c) => Some(c),
        _ => None,
    }
}

fn exited(e: &Event) -> Option<&ContainerExited> {
    match &e.kind {
        EventKind::ContainerExited(c) => Some(c),
        _ => None,
    }
}

fn sh(script: &str) -> Vec<String> {
    vec!["sh".into(), "-c".into(), script.into()]
}

#[test]
fn cronjob_pod_events_carry_the_whole_chain() {
    if !privileged("cronjob_pod_events_carry_the_whole_chain") {
        return;
    }
    let ctd = Containerd::start();
    let mut h = Harness::start(&config(&ctd));
    wait_connected(&h, true);
    let mut cri = h.rt.block_on(ctd.cri());
    let pod = cronjob_pod("backup", 29_000_000, "nightly");
    let sandbox = h.rt.block_on(cri.run_pod(&pod));
    let spec = ContainerSpec {
        name: "dump".into(),
        image: "busybox".into(),
        // A binary copied into the writable layer and run from there: drift.
        command: sh("echo data > /tmp/report.txt; /bin/ls /tmp > /dev/null; \
             cp /bin/busybox /tmp/ls && /tmp/ls / > /dev/null; exit 3"),
        ..ContainerSpec::default()
    };
    let id = h.rt.block_on(cri.create_container(&sandbox, &pod, &spec));
    h.rt.block_on(cri.start_container(&id));
    assert_eq!(h.rt.block_on(cri.wait_exit(&id, WAIT)), 3);

    // ContainerCreated: identity, owner chain and security facts.
    let ev = h
        .wait_for(WAIT, |e| created(e).is_some_and(|c| c.container.id == id))
        .expect("container_created");
    let c = &created(&ev).expect("created").container;
    assert_eq!(c.name, "dump");
    assert!(c.image.contains("busybox"), "image {}", c.image);
    assert!(
        c.image_digest
            .as_deref()
            .is_some_and(|d| d.starts_with("sha256:"))
    );
    assert_eq!(c.sandbox_id.as_deref(), Some(sandbox.as_str()));
    let p = c.pod.as_ref().expect("pod");
    assert_eq!(
        (p.name.as_str(), p.namespace.as_str(), p.uid.as_str()),
        (pod.name.as_str(), "nightly", pod.uid.as_str())
    );
    let w = c.workload.as_ref().expect("workload");
    assert_eq!(w.kind, WorkloadKind::CronJob);
    assert_eq!(
        w.job.as_ref().map(|j| j.name.as_str()),
        Some("backup-29000000")
    );
    let cron = w.cronjob.as_ref().expect("cronjob");
    assert_eq!(cron.name, "backup");
    assert!(
        cron.inferred,
        "without the API server the CronJob is inferred"
    );
    assert_eq!(
        cron.scheduled_time.as_deref(),
        Some("2025-02-19T21:20:00.000000000Z")
    );
    assert!(c.init_pid.is_some());
    let s = &c.security;
    assert!(s.runs_as_root && !s.privileged);
    assert!(
        !s.host_pid && !s.host_ipc && s.host_network,
        "CNI-less pods share the node network"
    );
    assert!(s.host_mounts.is_empty(), "mounts: {:?}", s.host_mounts);

    // Its exec and file creation carry the same identity.
    let ev = h
        .wait_for(WAIT, |e| {
            as_exec(e).is_some_and(|x| x.args.first().map(String::as_str) == Some("/bin/ls"))
                && as_exec(e)
                    .and_then(|x| x.container.as_ref())
                    .is_some_and(|c| c.id == id)
        })
        .expect("exec of /bin/ls in the container");
    let x = as_exec(&ev).expect("exec");
    assert_eq!(*x.args, ["/bin/ls", "/tmp"]);
    assert_eq!(
        x.binary, "/bin/busybox",
        "paths are seen from the container's root"
    );
    assert_eq!(x.cwd, "/");
    assert!(
        !x.flags.upper_layer,
        "/bin/busybox is in the image's lower layer"
    );
    assert!(!x.process.host);
    let xc = x.container.as_ref().expect("container");
    assert!(!xc.metadata_pending);
    assert_eq!(
        xc.pod.as_ref().map(|p| p.name.as_str()),
        Some(pod.name.as_str())
    );
    assert_eq!(
        xc.workload
            .as_ref()
            .and_then(|w| w.cronjob.as_ref())
            .map(|c| c.name.as_str()),
        Some("backup")
    );
    // The JSON users read says the same.
    let json = serde_json::to_value(&ev).expect("json");
    assert_eq!(json["container"]["pod"]["namespace"], "nightly");
    assert_eq!(json["container"]["workload"]["kind"], "CronJob");
    assert_eq!(
        json["container"]["workload"]["job"]["name"],
        "backup-29000000"
    );
    assert_eq!(json["container"]["workload"]["cronjob"]["name"], "backup");
    assert_eq!(json["container"]["workload"]["cronjob"]["inferred"], true);

    let ev = h
        .wait_for(WAIT, |e| {
            as_file(e).is_some_and(|f| f.path == "/tmp/report.txt")
        })
        .expect("file_created /tmp/report.txt");
    let f = as_file(&ev).expect("file");
    assert_eq!(f.operation, "create");
    assert_eq!(
        f.container.as_ref().map(|c| c.id.as_str()),
        Some(id.as_str())
    );
    assert_eq!(
        f.container
            .as_ref()
            .and_then(|c| c.workload.as_ref())
            .and_then(|w| w.job.as_ref())
            .map(|j| j.name.as_str()),
        Some("backup-29000000")
    );

    // ContainerExited: the Job's run is over, with its exit code.
    let ev = h
        .wait_for(WAIT, |e| exited(e).is_some_and(|x| x.container.id == id))
        .expect("container_exited");
    let x = exited(&ev).expect("exited");
    assert_eq!(x.exit_code, 3);
    assert!(x.duration_ns.is_some_and(|d| d > 0));
    assert_eq!(
        x.container
            .workload
            .as_ref()
            .and_then(|w| w.cronjob.as_ref())
            .map(|c| c.name.as_str()),
        Some("backup")
    );
    h.rt.block_on(cri.remove_pod(&sandbox));
}

#[test]
fn privileged_root_and_unprivileged_containers_are_told_apart() {
    if !privileged("privileged_root_and_unprivileged_containers_are_told_apart") {
        return;
    }
    let ctd = Containerd::start();
    let mut h = Harness::start(&config(&ctd));
    wait_connected(&h, true);
    let mut cri = h.rt.block_on(ctd.cri());
    let mut pod = cronjob_pod("cleanup", 29_000_100, "kube-system");
    pod.privileged = true;
    let sandbox = h.rt.block_on(cri.run_pod(&pod));
    let root = ContainerSpec {
        name: "root".into(),
        image: "busybox".into(),
        command: sh("exit 0"),
        privileged: true,
        run_as_user: Some(0),
        host_mounts: vec![(PathBuf::from("/"), "/host".into(), true)],
        ..ContainerSpec::default()
    };
    let user = ContainerSpec {
        name: "user".into(),
        image: "busybox".into(),
        command: sh("exit 0"),
        run_as_user: Some(1000),
        run_as_group: Some(1000),
        add_capabilities: vec!["NET_ADMIN".into()],
        readonly_rootfs: true,
        no_new_privs: true,
        ..ContainerSpec::default()
    };
    let mut ids = Vec::new();
    for spec in [&root, &user] {
        let id = h.rt.block_on(cri.create_container(&sandbox, &pod, spec));
        h.rt.block_on(cri.start_container(&id));
        assert_eq!(h.rt.block_on(cri.wait_exit(&id, WAIT)), 0);
        ids.push(id);
    }
    let facts = |h: &mut Harness, id: &str| {
        let ev = h
            .wait_for(WAIT, |e| created(e).is_some_and(|c| c.container.id == id))
            .expect("container_created");
        created(&ev).expect("created").container.security.clone()
    };
    let s = facts(&mut h, &ids[0]);
    assert!(s.privileged, "privileged container");
    assert!(s.runs_as_root);
    assert_eq!(s.uid, 0);
    assert!(
        s.added_capabilities.iter().any(|c| c == "CAP_SYS_ADMIN"),
        "{:?}",
        s.added_capabilities
    );
    assert_eq!(s.host_mounts.len(), 1, "{:?}", s.host_mounts);
    assert_eq!(
        (
            s.host_mounts[0].source.as_str(),
            s.host_mounts[0].destination.as_str()
        ),
        ("/", "/host")
    );
    assert!(s.host_mounts[0].readonly);

    let s = facts(&mut h, &ids[1]);
    assert!(!s.privileged);
    assert!(!s.runs_as_root);
    assert_eq!((s.uid, s.gid), (1000, 1000));
    assert_eq!(s.added_capabilities, vec!["CAP_NET_ADMIN"]);
    assert!(s.readonly_rootfs && s.no_new_privileges);
    assert!(s.host_mounts.is_empty());
    h.rt.block_on(cri.remove_pod(&sandbox));
}

#[test]
fn container_started_before_the_sensor_is_attributed() {
    if !privileged("container_started_before_the_sensor_is_attributed") {
        return;
    }
    let ctd = Containerd::start();
    let rt = jobwatch_tests::runtime();
    let mut cri = rt.block_on(ctd.cri());
    let pod = cronjob_pod("report", 29_000_200, "default");
    let sandbox = rt.block_on(cri.run_pod(&pod));
    let spec = ContainerSpec {
        name: "early".into(),
        image: "busybox".into(),
        command: sh("sleep 4; echo x > /tmp/late.txt; /bin/true"),
        ..ContainerSpec::default()
    };
    let id = rt.block_on(cri.create_container(&sandbox, &pod, &spec));
    rt.block_on(cri.start_container(&id));
    drop(rt);

    let mut h = Harness::start(&config(&ctd));
    let ev = h
        .wait_for(WAIT, |e| created(e).is_some_and(|c| c.container.id == id))
        .expect("container_created for the running container");
    let c = created(&ev).expect("created");
    assert!(c.seen_at_start, "found running at start");
    assert_eq!(
        c.container
            .workload
            .as_ref()
            .and_then(|w| w.cronjob.as_ref())
            .map(|c| c.name.as_str()),
        Some("report")
    );
    let ev = h
        .wait_for(WAIT, |e| {
            as_file(e).is_some_and(|f| f.path == "/tmp/late.txt")
        })
        .expect("file event of the early container");
    let f = as_file(&ev).expect("file");
    let fc = f.container.as_ref().expect("attributed");
    assert_eq!(fc.id, id);
    assert!(!fc.metadata_pending);
    assert_eq!(
        fc.pod.as_ref().map(|p| p.uid.as_str()),
        Some(pod.uid.as_str())
    );
    let mut cri = h.rt.block_on(ctd.cri());
    assert_eq!(h.rt.block_on(cri.wait_exit(&id, WAIT)), 0);
    h.rt.block_on(cri.remove_pod(&sandbox));
}

#[test]
fn sensor_survives_a_containerd_restart() {
    if !privileged("sensor_survives_a_containerd_restart") {
        return;
    }
    let mut ctd = Containerd::start();
    let mut h = Harness::start(&config(&ctd));
    wait_connected(&h, true);

    ctd.kill();
    wait_connected(&h, false);
    // Tracing goes on while containerd is away.
    let mut child = std::process::Command::new("/bin/true")
        .arg("while-away")
        .spawn()
        .expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    assert!(
        h.wait_for(WAIT, |e| as_exec(e).is_some_and(|x| x.process.pid == pid))
            .is_some()
    );

    ctd.start_again();
    wait_connected(&h, true);
    let status = &h.sensor.as_ref().expect("running").containerd;
    assert!(status.reconnects.load(std::sync::atomic::Ordering::Relaxed) >= 1);

    let mut cri = h.rt.block_on(ctd.cri());
    let pod = cronjob_pod("after", 29_000_300, "default");
    let sandbox = h.rt.block_on(cri.run_pod(&pod));
    let spec = ContainerSpec {
        name: "after".into(),
        image: "busybox".into(),
        command: sh("/bin/true after-restart"),
        ..ContainerSpec::default()
    };
    let id = h.rt.block_on(cri.create_container(&sandbox, &pod, &spec));
    h.rt.block_on(cri.start_container(&id));
    assert_eq!(h.rt.block_on(cri.wait_exit(&id, WAIT)), 0);
    let ev = h
        .wait_for(WAIT, |e| {
            as_exec(e).is_some_and(|x| *x.args == ["/bin/true", "after-restart"])
        })
        .expect("exec after the restart");
    let c = as_exec(&ev)
        .and_then(|x| x.container.clone())
        .expect("attributed");
    assert_eq!(c.id, id);
    assert_eq!(
        c.workload
            .as_ref()
            .and_then(|w| w.cronjob.as_ref())
            .map(|c| c.name.as_str()),
        Some("after")
    );
    h.rt.block_on(cri.remove_pod(&sandbox));
}
