//! Unit tests of the compact and JSON renderings, on events and alerts built by hand.

use jobwatch_proto::v1 as pb;
use pb::event::Kind;
use serde_json::json;

use crate::compact::{alert_line, event_line};
use crate::json::{alert_json, event_json, status_json};
use crate::table;

/// 2026-11-27T03:45:10.512Z
const T: i64 = 1_795_751_110_512_000_000;

fn cronjob_ref(inferred: bool) -> pb::ContainerRef {
    pb::ContainerRef {
        id: "7115930a5ad1f00d7115930a5ad1f00d".into(),
        name: "dump".into(),
        image: "docker.io/library/busybox:jobwatch".into(),
        pod: Some(pb::Pod {
            name: "backup-29000000-hqzd7".into(),
            namespace: "nightly".into(),
            uid: "pod-uid".into(),
            labels: [("app".to_string(), "backup".to_string())].into(),
        }),
        workload: Some(pb::Workload {
            kind: pb::WorkloadKind::CronJob as i32,
            name: "backup".into(),
            job: Some(pb::JobRef {
                name: "backup-29000000".into(),
                controller_uid: "job-uid".into(),
            }),
            cronjob: Some(pb::CronJobRef {
                name: "backup".into(),
                scheduled_time: "2026-11-27T03:45:00Z".into(),
                source: pb::OwnerSource::NameInference as i32,
                inferred,
            }),
            source: pb::OwnerSource::Labels as i32,
        }),
        metadata_pending: false,
    }
}

fn process(pid: u32, host: bool) -> pb::Process {
    pb::Process {
        exec_id: "ZXhlYw".into(),
        pid,
        tid: pid,
        ppid: 1,
        uid: 0,
        loginuid: None,
        cap_effective: u64::MAX,
        comm: "ls".into(),
        cgroup_id: 1 << 40,
        host,
        start_boot_ns: 123,
        binary: "/bin/busybox".into(),
        ..Default::default()
    }
}

fn event(kind: Kind) -> pb::Event {
    pb::Event {
        node: "node1".into(),
        time_unix_nano: T,
        boot_ns: 9_000_000_000_000,
        seq: 42,
        kind: Some(kind),
    }
}

pub fn exec_event() -> pb::Event {
    event(Kind::ProcessExec(pb::ProcessExec {
        process: Some(process(9001, false)),
        filename: "/bin/ls".into(),
        binary: "/bin/busybox".into(),
        args: vec!["/bin/ls".into(), "/tmp".into()],
        cwd: "/".into(),
        flags: Some(pb::ExecFlags::default()),
        parent: Some(pb::Parent {
            pid: 1,
            binary: "/bin/sh".into(),
            args: vec!["sh".into()],
            source: "exec".into(),
        }),
        container: Some(cronjob_ref(false)),
    }))
}

#[test]
fn compact_exec() {
    assert_eq!(
        event_line(&exec_event()),
        "2026-11-27T03:45:10.512Z node1 EXEC   nightly/backup(cronjob) job=backup-29000000 \
         pod=backup-29000000-hqzd7 ctr=dump[7115930a] pid=9001 uid=0 /bin/busybox /bin/ls /tmp"
    );
}

#[test]
fn compact_exec_host_quoting_and_flags() {
    let e = event(Kind::ProcessExec(pb::ProcessExec {
        process: Some(process(7, true)),
        binary: "/usr/bin/sh".into(),
        args: vec![
            "sh".into(),
            "-c".into(),
            "echo hi\nthere".into(),
            String::new(),
        ],
        flags: Some(pb::ExecFlags {
            memfd: true,
            args_truncated: true,
            ..Default::default()
        }),
        ..Default::default()
    }));
    assert_eq!(
        event_line(&e),
        "2026-11-27T03:45:10.512Z node1 EXEC   host pid=7 uid=0 /usr/bin/sh sh -c \"echo hi\\nthere\" \"\" \
         [memfd,args-truncated]"
    );
}

#[test]
fn compact_inferred_cronjob() {
    let mut e = exec_event();
    if let Some(Kind::ProcessExec(exec)) = &mut e.kind {
        exec.container = Some(cronjob_ref(true));
    }
    assert!(event_line(&e).contains(" nightly/backup(cronjob?) job=backup-29000000 "));
}

#[test]
fn compact_exit() {
    let e = event(Kind::ProcessExit(pb::ProcessExit {
        pid: 9001,
        exit_code: Some(3),
        duration_ns: 1_200_000_000,
        binary: "/bin/busybox".into(),
        container: Some(cronjob_ref(false)),
        ..Default::default()
    }));
    assert_eq!(
        event_line(&e),
        "2026-11-27T03:45:10.512Z node1 EXIT   nightly/backup(cronjob) job=backup-29000000 \
         pod=backup-29000000-hqzd7 ctr=dump[7115930a] pid=9001 /bin/busybox code=3 after 1.2s"
    );
    let killed = event(Kind::ProcessExit(pb::ProcessExit {
        pid: 5,
        signal: Some(9),
        duration_ns: 50_000_000,
        binary: "/usr/bin/sleep".into(),
        ..Default::default()
    }));
    assert_eq!(
        event_line(&killed),
        "2026-11-27T03:45:10.512Z node1 EXIT   host pid=5 /usr/bin/sleep signal=9 after 50ms"
    );
}

#[test]
fn compact_file() {
    let e = event(Kind::FileCreated(pb::FileCreated {
        process: Some(process(9001, false)),
        operation: pb::FileOperation::Create as i32,
        path: "/tmp/report.txt".into(),
        mode: 0o100644,
        container: Some(cronjob_ref(false)),
        ..Default::default()
    }));
    assert_eq!(
        event_line(&e),
        "2026-11-27T03:45:10.512Z node1 FILE   nightly/backup(cronjob) job=backup-29000000 \
         pod=backup-29000000-hqzd7 ctr=dump[7115930a] pid=9001 uid=0 /bin/busybox \
         create /tmp/report.txt mode=100644"
    );
    let chmod = event(Kind::FileCreated(pb::FileCreated {
        process: Some(process(3, true)),
        operation: pb::FileOperation::ChmodExec as i32,
        path: "/tmp/x y".into(),
        mode: 0o100755,
        old_mode: Some(0o100644),
        source: None,
        replaced: true,
        ..Default::default()
    }));
    assert_eq!(
        event_line(&chmod),
        "2026-11-27T03:45:10.512Z node1 FILE   host pid=3 uid=0 /bin/busybox chmod-exec \"/tmp/x y\" \
         mode=100755 old-mode=100644 replaced"
    );
}

pub fn start_event() -> pb::Event {
    let r = cronjob_ref(false);
    event(Kind::ContainerCreated(pb::ContainerCreated {
        container: Some(pb::Container {
            id: r.id,
            runtime_namespace: "k8s.io".into(),
            name: r.name,
            kind: pb::ContainerKind::Container as i32,
            image: r.image,
            image_digest: "sha256:abc".into(),
            sandbox_id: "sandbox1".into(),
            pod: r.pod,
            workload: r.workload,
            security: Some(pb::SecurityFacts {
                privileged: true,
                runs_as_root: true,
                host_mounts: vec![pb::HostMount {
                    source: "/".into(),
                    destination: "/host".into(),
                    readonly: false,
                }],
                ..Default::default()
            }),
            cgroup: "/kubepods/x".into(),
            init_pid: Some(9000),
            started_unix_nano: Some(T),
            labels: Default::default(),
        }),
        seen_at_start: false,
    }))
}

#[test]
fn compact_start_stop_lost() {
    assert_eq!(
        event_line(&start_event()),
        "2026-11-27T03:45:10.512Z node1 START  nightly/backup(cronjob) job=backup-29000000 \
         pod=backup-29000000-hqzd7 ctr=dump[7115930a] image=docker.io/library/busybox:jobwatch \
         privileged root host-mounts=/"
    );
    let stop = event(Kind::ContainerExited(pb::ContainerExited {
        container: Some(cronjob_ref(false)),
        exit_code: 3,
        duration_ns: Some(1_200_000_000),
    }));
    assert_eq!(
        event_line(&stop),
        "2026-11-27T03:45:10.512Z node1 STOP   nightly/backup(cronjob) job=backup-29000000 \
         pod=backup-29000000-hqzd7 ctr=dump[7115930a] code=3 after 1.2s"
    );
    let lost = event(Kind::LostEvents(pb::LostEvents {
        count: 1000,
        cause: pb::LossCause::SlowSubscriber as i32,
    }));
    assert_eq!(
        event_line(&lost),
        "2026-11-27T03:45:10.512Z node1 LOST   1000 events (slow_subscriber)"
    );
}

#[test]
fn compact_is_always_one_line() {
    let mut e = exec_event();
    e.node = "evil\nnode".into();
    if let Some(Kind::ProcessExec(exec)) = &mut e.kind {
        exec.binary = "/tmp/a\rb".into();
    }
    assert!(!event_line(&e).contains(['\n', '\r']));
    assert!(!event_line(&pb::Event::default()).contains('\n'));
}

#[test]
fn json_exec_field_by_field() {
    let v = event_json(&exec_event());
    assert_eq!(v["node"], "node1");
    assert_eq!(v["time_unix_nano"], T);
    assert_eq!(v["boot_ns"], 9_000_000_000_000_u64);
    assert_eq!(v["seq"], 42);
    assert_eq!(v["kind"], "process_exec");
    let exec = &v["process_exec"];
    assert_eq!(exec["filename"], "/bin/ls");
    assert_eq!(exec["binary"], "/bin/busybox");
    assert_eq!(exec["args"], json!(["/bin/ls", "/tmp"]));
    assert_eq!(exec["cwd"], "/");
    assert_eq!(exec["flags"]["memfd"], false);
    assert_eq!(
        exec["parent"],
        json!({"pid": 1, "binary": "/bin/sh", "args": ["sh"], "source": "exec"})
    );
    let p = &exec["process"];
    assert_eq!(p["pid"], 9001);
    assert_eq!(p["exec_id"], "ZXhlYw");
    assert_eq!(p["loginuid"], json!(null));
    assert_eq!(p["cap_effective"], u64::MAX);
    assert_eq!(p["cgroup_id"], 1_u64 << 40);
    assert_eq!(p["host"], false);
    let c = &exec["container"];
    assert_eq!(c["id"], "7115930a5ad1f00d7115930a5ad1f00d");
    assert_eq!(c["pod"]["labels"], json!({"app": "backup"}));
    assert_eq!(c["pod"]["namespace"], "nightly");
    assert_eq!(c["workload"]["kind"], "cron_job");
    assert_eq!(c["workload"]["source"], "labels");
    assert_eq!(c["workload"]["job"]["name"], "backup-29000000");
    assert_eq!(c["workload"]["cronjob"]["source"], "name_inference");
    assert_eq!(c["workload"]["cronjob"]["inferred"], false);
    assert_eq!(c["metadata_pending"], false);
}

#[test]
fn json_other_kinds() {
    let v = event_json(&start_event());
    assert_eq!(v["kind"], "container_created");
    let c = &v["container_created"]["container"];
    assert_eq!(c["kind"], "container");
    assert_eq!(c["security"]["privileged"], true);
    assert_eq!(c["security"]["host_mounts"][0]["destination"], "/host");
    assert_eq!(c["init_pid"], 9000);
    assert_eq!(c["started_unix_nano"], T);
    assert_eq!(v["container_created"]["seen_at_start"], false);

    let v = event_json(&event(Kind::FileCreated(pb::FileCreated {
        operation: pb::FileOperation::Rename as i32,
        path: "/b".into(),
        source: Some("/a".into()),
        mode: 0o100644,
        ..Default::default()
    })));
    assert_eq!(v["file_created"]["operation"], "rename");
    assert_eq!(v["file_created"]["source"], "/a");
    assert_eq!(v["file_created"]["mode"], 0o100644);
    assert_eq!(v["file_created"]["old_mode"], json!(null));
    assert_eq!(v["file_created"]["process"], json!(null));

    let v = event_json(&event(Kind::ProcessExit(pb::ProcessExit {
        exit_code: Some(0),
        duration_ns: 5,
        ..Default::default()
    })));
    assert_eq!(v["process_exit"]["exit_code"], 0);
    assert_eq!(v["process_exit"]["signal"], json!(null));
    assert_eq!(v["process_exit"]["duration_ns"], 5);

    let v = event_json(&event(Kind::ContainerExited(pb::ContainerExited {
        exit_code: 137,
        ..Default::default()
    })));
    assert_eq!(v["container_exited"]["exit_code"], 137);
    assert_eq!(v["container_exited"]["duration_ns"], json!(null));

    let v = event_json(&event(Kind::LostEvents(pb::LostEvents {
        count: 7,
        cause: 1,
    })));
    assert_eq!(
        v["lost_events"],
        json!({"count": 7, "cause": "ring_buffer_full"})
    );

    let v = event_json(&pb::Event::default());
    assert_eq!(v["kind"], "none");
}

fn status() -> pb::Status {
    pb::Status {
        version: "0.1.0".into(),
        node: "node1".into(),
        kernel: "6.8.0".into(),
        programs_attached: vec!["sched_process_exec".into(), "security_inode_create".into()],
        containerd_connected: false,
        containerd_error: "socket missing".into(),
        containers_tracked: 4,
        subscribers: 1,
        counters: vec![
            pb::Counter {
                name: "events_total".into(),
                value: 10,
            },
            pb::Counter {
                name: "lost_total".into(),
                value: 0,
            },
        ],
    }
}

#[test]
fn status_renderings() {
    let text = table::status_text(&status());
    assert!(text.contains("version:     0.1.0\n"), "{text}");
    assert!(text.contains("programs:    sched_process_exec, security_inode_create\n"));
    assert!(text.contains("containerd:  not connected: socket missing\n"));
    assert!(text.ends_with("counters:\n  events_total=10\n  lost_total=0\n"));
    let v = status_json(&status());
    assert_eq!(v["containers_tracked"], 4);
    assert_eq!(
        v["counters"][0],
        json!({"name": "events_total", "value": 10})
    );
}

#[test]
fn containers_table_columns() {
    let Some(Kind::ContainerCreated(created)) = start_event().kind else {
        panic!("not a container");
    };
    let Some(c) = created.container else {
        panic!("no container")
    };
    let text = table::containers_table(&[c]);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2);
    let header: Vec<&str> = lines[0].split_whitespace().collect();
    assert_eq!(
        header,
        [
            "ID",
            "NAMESPACE",
            "POD",
            "WORKLOAD",
            "IMAGE",
            "ROOT",
            "PRIV"
        ]
    );
    let row: Vec<&str> = lines[1].split_whitespace().collect();
    assert_eq!(
        row,
        [
            "7115930a5ad1",
            "nightly",
            "backup-29000000-hqzd7",
            "backup(cronjob)",
            "docker.io/library/busybox:jobwatch",
            "yes",
            "yes"
        ]
    );
}

/// 2026-11-27T06:40:01.123Z
const ALERT_T: i64 = 1_795_761_601_123_456_789;

/// A drift alert on a CronJob's pod, with its whole chain, ancestry, evidence and details.
fn drift_alert() -> pb::Alert {
    let mut evidence = exec_event();
    evidence.time_unix_nano = ALERT_T;
    pb::Alert {
        id: 17,
        time_unix_nano: ALERT_T,
        rule: Some(pb::RuleRef {
            id: "JW-T1053.007-004".into(),
            title: "Drift in a CronJob pod".into(),
            description: "A CronJob's container executed a file created after it started.".into(),
            technique: "T1053.007".into(),
            data_sources: vec!["DS0009".into(), "DS0022".into()],
            mitigations: vec!["M1038".into()],
        }),
        severity: pb::Severity::High as i32,
        message: "drift: executed /tmp/x.sh created after the container started".into(),
        node: "node1".into(),
        namespace: "nightly".into(),
        cronjob: "backup".into(),
        job: "backup-29000000".into(),
        pod: "backup-29000000-hqzd7".into(),
        container_id: "7115930a5ad1f00d7115930a5ad1f00d".into(),
        container_name: "dump".into(),
        image: "docker.io/library/busybox:jobwatch".into(),
        workload: cronjob_ref(false).workload,
        ancestry: vec![
            pb::AlertProcess {
                exec_id: "ZXhlYzI".into(),
                pid: 123,
                binary: "/tmp/x.sh".into(),
                args: vec!["/tmp/x.sh".into(), "--all files".into()],
                uid: 0,
                partial: false,
            },
            pb::AlertProcess {
                exec_id: "ZXhlYzE".into(),
                pid: 1,
                binary: "/bin/sh".into(),
                args: vec!["sh".into(), "-c".into(), "/tmp/x.sh".into()],
                uid: 0,
                partial: true,
            },
        ],
        evidence: vec![pb::StoredEvent {
            id: 4242,
            event: Some(evidence),
        }],
        details: [
            ("path".to_string(), "/tmp/x.sh".to_string()),
            ("created_by".to_string(), "/bin/busybox".to_string()),
        ]
        .into(),
    }
}

#[test]
fn compact_alert() {
    assert_eq!(
        alert_line(&drift_alert()),
        "2026-11-27T06:40:01.123Z HIGH     JW-T1053.007-004 node1 nightly/backup(cronjob) \
         job=backup-29000000 pod=backup-29000000-hqzd7 ctr=dump[7115930a] \
         image=docker.io/library/busybox:jobwatch pid=123 uid=0 /tmp/x.sh /tmp/x.sh \"--all files\" \
         \"drift: executed /tmp/x.sh created after the container started\""
    );
}

#[test]
fn compact_alert_every_severity() {
    for (severity, label) in [
        (pb::Severity::Info, "INFO     "),
        (pb::Severity::Low, "LOW      "),
        (pb::Severity::Medium, "MEDIUM   "),
        (pb::Severity::High, "HIGH     "),
        (pb::Severity::Critical, "CRITICAL "),
        (pb::Severity::Unspecified, "UNSPECIFIED "),
    ] {
        let mut a = drift_alert();
        a.severity = severity as i32;
        let line = alert_line(&a);
        assert!(
            line.starts_with(&format!(
                "2026-11-27T06:40:01.123Z {label}JW-T1053.007-004 "
            )),
            "{line}"
        );
    }
    // A severity newer than this CLI: its number.
    let mut a = drift_alert();
    a.severity = 9;
    assert!(alert_line(&a).starts_with("2026-11-27T06:40:01.123Z 9        JW-"));
}

#[test]
fn compact_alert_attribution_variants() {
    // An inferred CronJob is marked as in the event lines.
    let mut a = drift_alert();
    a.workload = cronjob_ref(true).workload;
    assert!(
        alert_line(&a).contains(" node1 nightly/backup(cronjob?) job=backup-29000000 pod="),
        "{}",
        alert_line(&a)
    );

    // Only the flat chain (no workload message): the CronJob is still shown first.
    let mut a = drift_alert();
    a.workload = None;
    assert!(alert_line(&a).contains(
        " node1 nightly/backup(cronjob) job=backup-29000000 pod=backup-29000000-hqzd7 ctr=dump[7115930a] "
    ));

    // A bare Job: the Job is the owner, not repeated as job=.
    let mut a = drift_alert();
    a.cronjob.clear();
    a.workload = None;
    assert!(alert_line(&a).contains(
        " node1 nightly/backup-29000000(job) pod=backup-29000000-hqzd7 ctr=dump[7115930a] "
    ));

    // A pod of another workload kind.
    let mut a = drift_alert();
    a.cronjob.clear();
    a.job.clear();
    a.workload = Some(pb::Workload {
        kind: pb::WorkloadKind::Deployment as i32,
        name: "web".into(),
        ..Default::default()
    });
    assert!(alert_line(&a).contains(" node1 nightly/web(deployment) pod=backup-29000000-hqzd7 "));

    // A bare pod.
    let mut a = drift_alert();
    a.cronjob.clear();
    a.job.clear();
    a.workload = None;
    assert!(
        alert_line(&a)
            .contains(" node1 nightly/backup-29000000-hqzd7(pod) pod=backup-29000000-hqzd7 ")
    );

    // A container without pod metadata, and the host.
    let mut a = drift_alert();
    for field in [&mut a.namespace, &mut a.cronjob, &mut a.job, &mut a.pod] {
        field.clear();
    }
    a.workload = None;
    assert!(alert_line(&a).contains(" node1 - ctr=dump[7115930a] image="));
    a.container_id.clear();
    a.container_name.clear();
    a.image.clear();
    assert!(
        alert_line(&a).contains(" node1 host pid=123 uid=0 /tmp/x.sh "),
        "{}",
        alert_line(&a)
    );
}

#[test]
fn compact_alert_without_rule_or_process() {
    let a = pb::Alert {
        time_unix_nano: ALERT_T,
        severity: pb::Severity::Low as i32,
        node: "node1".into(),
        ..Default::default()
    };
    assert_eq!(
        alert_line(&a),
        "2026-11-27T06:40:01.123Z LOW      - node1 host pid=? \"\""
    );
    let mut a = drift_alert();
    a.ancestry.remove(0);
    assert!(
        alert_line(&a).ends_with(
            " pid=1 uid=0 /bin/sh sh -c /tmp/x.sh [partial] \"drift: executed /tmp/x.sh created after the container started\""
        ),
        "{}",
        alert_line(&a)
    );
}

#[test]
fn compact_alert_is_always_one_line() {
    let mut a = drift_alert();
    a.message = "two\nlines \"quoted\"".into();
    a.cronjob = "evil\rname".into();
    a.ancestry[0].args.push("a\nb".into());
    let line = alert_line(&a);
    assert!(!line.contains(['\n', '\r']), "{line}");
    assert!(line.ends_with(" \"two\\nlines \\\"quoted\\\"\""), "{line}");
    assert!(!alert_line(&pb::Alert::default()).contains('\n'));
}

#[test]
fn json_alert_field_by_field() {
    let v = alert_json(&drift_alert());
    assert_eq!(v["id"], 17);
    assert_eq!(v["time_unix_nano"], ALERT_T);
    assert_eq!(
        v["rule"],
        json!({
            "id": "JW-T1053.007-004",
            "title": "Drift in a CronJob pod",
            "description": "A CronJob's container executed a file created after it started.",
            "technique": "T1053.007",
            "data_sources": ["DS0009", "DS0022"],
            "mitigations": ["M1038"],
        })
    );
    assert_eq!(v["severity"], "high");
    assert_eq!(
        v["message"],
        "drift: executed /tmp/x.sh created after the container started"
    );
    assert_eq!(v["node"], "node1");
    assert_eq!(v["namespace"], "nightly");
    assert_eq!(v["cronjob"], "backup");
    assert_eq!(v["job"], "backup-29000000");
    assert_eq!(v["pod"], "backup-29000000-hqzd7");
    assert_eq!(v["container_id"], "7115930a5ad1f00d7115930a5ad1f00d");
    assert_eq!(v["container_name"], "dump");
    assert_eq!(v["image"], "docker.io/library/busybox:jobwatch");
    assert_eq!(v["workload"]["kind"], "cron_job");
    assert_eq!(v["workload"]["name"], "backup");
    assert_eq!(v["workload"]["job"]["name"], "backup-29000000");
    assert_eq!(v["workload"]["cronjob"]["inferred"], false);
    assert_eq!(
        v["ancestry"],
        json!([
            {"exec_id": "ZXhlYzI", "pid": 123, "binary": "/tmp/x.sh",
             "args": ["/tmp/x.sh", "--all files"], "uid": 0, "partial": false},
            {"exec_id": "ZXhlYzE", "pid": 1, "binary": "/bin/sh",
             "args": ["sh", "-c", "/tmp/x.sh"], "uid": 0, "partial": true},
        ])
    );
    assert_eq!(
        v["details"],
        json!({"created_by": "/bin/busybox", "path": "/tmp/x.sh"})
    );
    // Details keys are sorted, so the line is stable.
    let text = v.to_string();
    assert!(text.contains(r#""details":{"created_by":"/bin/busybox","path":"/tmp/x.sh"}"#));

    // The evidence: the collector's id, and the event as `events -o json` renders it.
    let evidence = v["evidence"].as_array().unwrap_or_else(|| panic!("{v}"));
    assert_eq!(evidence.len(), 1);
    assert_eq!(evidence[0]["id"], 4242);
    let mut expected = exec_event();
    expected.time_unix_nano = ALERT_T;
    assert_eq!(evidence[0]["event"], event_json(&expected));
    assert_eq!(evidence[0]["event"]["kind"], "process_exec");
    assert_eq!(evidence[0]["event"]["process_exec"]["process"]["pid"], 9001);

    // Exactly these fields, no more.
    let mut keys: Vec<&str> = v
        .as_object()
        .unwrap_or_else(|| panic!("{v}"))
        .keys()
        .map(String::as_str)
        .collect();
    keys.sort_unstable();
    assert_eq!(
        keys,
        [
            "ancestry",
            "container_id",
            "container_name",
            "cronjob",
            "details",
            "evidence",
            "id",
            "image",
            "job",
            "message",
            "namespace",
            "node",
            "pod",
            "rule",
            "severity",
            "time_unix_nano",
            "workload"
        ]
    );
}

#[test]
fn json_alert_empty_and_unknown() {
    let v = alert_json(&pb::Alert {
        severity: 9,
        evidence: vec![pb::StoredEvent { id: 3, event: None }],
        ..Default::default()
    });
    assert_eq!(v["rule"], json!(null));
    assert_eq!(v["workload"], json!(null));
    assert_eq!(v["severity"], 9);
    assert_eq!(v["ancestry"], json!([]));
    assert_eq!(v["details"], json!({}));
    assert_eq!(v["evidence"], json!([{"id": 3, "event": null}]));
    assert_eq!(alert_json(&pb::Alert::default())["severity"], "unspecified");
}
