//! The compact, one-line-per-event rendering:
//!
//! ```text
//! 2026-11-27T03:45:10.512Z node1 EXEC   nightly/backup(cronjob) job=backup-29000000 pod=backup-29000000-hqzd7 ctr=dump[7115930a] pid=9001 uid=0 /bin/busybox /bin/ls /tmp
//! ```
//!
//! and one line per alert (the acting process, then the alert's message, always quoted):
//!
//! ```text
//! 2026-11-27T06:40:01.123Z HIGH     JW-T1053.007-004 node1 jobs/nightly(cronjob) job=nightly-29000000 pod=nightly-29000000-abcde ctr=main[7115930a] image=busybox:1 pid=123 uid=0 /tmp/x.sh /tmp/x.sh "drift: executed /tmp/x.sh created after the container started"
//! ```
//!
//! Every value that could break the line or the columns (spaces, quotes, control characters,
//! empty strings) is quoted and escaped, so one event is always exactly one line.

use jobwatch_proto::v1 as pb;

use crate::{names, time};

/// How many characters of a container id the compact form shows.
const SHORT_ID: usize = 8;

/// One line (without the newline) for `event`.
pub fn event_line(event: &pb::Event) -> String {
    use pb::event::Kind;
    let (label, body) = match &event.kind {
        Some(Kind::ProcessExec(exec)) => ("EXEC", exec_body(exec)),
        Some(Kind::ProcessExit(exit)) => ("EXIT", exit_body(exit)),
        Some(Kind::FileCreated(file)) => ("FILE", file_body(file)),
        Some(Kind::ContainerCreated(created)) => ("START", start_body(created)),
        Some(Kind::ContainerExited(exited)) => ("STOP", stop_body(exited)),
        Some(Kind::LostEvents(lost)) => (
            "LOST",
            format!(
                "{} events ({})",
                lost.count,
                names::text(&names::loss_cause(lost.cause))
            ),
        ),
        None => (
            "?",
            format!(
                "seq={} (an event of a kind this CLI does not know)",
                event.seq
            ),
        ),
    };
    format!(
        "{} {} {label:<6} {body}",
        time::rfc3339_millis(event.time_unix_nano),
        word(&event.node)
    )
}

/// One line (without the newline) for `alert`: time, severity, rule id, node, where it
/// happened (namespace/CronJob, Job, pod, container, image), the acting process and the
/// message.
pub fn alert_line(alert: &pb::Alert) -> String {
    let severity = names::text(&names::severity(alert.severity)).to_ascii_uppercase();
    let rule = match alert.rule.as_ref().map(|r| r.id.as_str()) {
        Some(id) if !id.is_empty() => word(id),
        _ => "-".to_string(),
    };
    let mut parts = vec![
        time::rfc3339_millis(alert.time_unix_nano),
        format!("{severity:<8}"),
        rule,
        word(&alert.node),
        alert_who(alert),
    ];
    if !alert.image.is_empty() {
        parts.push(format!("image={}", word(&alert.image)));
    }
    match alert.ancestry.first() {
        Some(p) => {
            parts.push(format!("pid={} uid={}", p.pid, p.uid));
            parts.push(word(&p.binary));
            parts.extend(p.args.iter().map(|a| word(a)));
            if p.partial {
                parts.push("[partial]".to_string());
            }
        }
        None => parts.push("pid=?".to_string()),
    }
    parts.push(format!("{:?}", alert.message));
    parts.join(" ")
}

/// The "who" of an alert, from its attribution chain, in the form of the event lines:
/// `namespace/cronjob(cronjob) job=.. pod=.. ctr=name[id]`; the CronJob comes first whenever
/// there is one. `host` when the alert names no pod and no container.
fn alert_who(a: &pb::Alert) -> String {
    let has_container = !a.container_id.is_empty() || !a.container_name.is_empty();
    let mut parts = Vec::new();
    if !a.pod.is_empty() || !a.namespace.is_empty() {
        let workload = a.workload.as_ref();
        let (owner, kind) = if !a.cronjob.is_empty() {
            let inferred = workload
                .and_then(|w| w.cronjob.as_ref())
                .is_some_and(|c| c.inferred);
            let mark = if inferred { "?" } else { "" };
            (a.cronjob.as_str(), format!("cronjob{mark}"))
        } else if let Some(w) = workload.filter(|w| !w.name.is_empty()) {
            (w.name.as_str(), names::workload_kind_compact(w.kind))
        } else if !a.job.is_empty() {
            (a.job.as_str(), "job".to_string())
        } else {
            (a.pod.as_str(), "pod".to_string())
        };
        parts.push(format!("{}/{}({kind})", word(&a.namespace), word(owner)));
        let job_is_the_owner = kind == "job" && owner == a.job;
        if !a.job.is_empty() && !job_is_the_owner {
            parts.push(format!("job={}", word(&a.job)));
        }
        parts.push(format!("pod={}", word(&a.pod)));
    } else if has_container {
        parts.push("-".to_string());
    } else {
        return "host".to_string();
    }
    if has_container {
        let name = if a.container_name.is_empty() {
            String::new()
        } else {
            word(&a.container_name)
        };
        let id = if a.container_id.is_empty() {
            String::new()
        } else {
            format!("[{}]", word(short_id(&a.container_id)))
        };
        parts.push(format!("ctr={name}{id}"));
    }
    parts.join(" ")
}

/// `s` as it is when it is a plain word, else quoted with Rust's escapes.
pub fn word(s: &str) -> String {
    let plain = !s.is_empty()
        && !s
            .chars()
            .any(|c| c.is_whitespace() || c.is_control() || c == '"' || c == '\'' || c == '\\');
    if plain {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

/// The first `SHORT_ID` characters of a container id.
fn short_id(id: &str) -> &str {
    id.char_indices()
        .nth(SHORT_ID)
        .map_or(id, |(i, _)| &id[..i])
}

/// The "who": `host`, or `namespace/workload(kind) job=.. pod=.. ctr=name[id]`.
fn identity(container: Option<&pb::ContainerRef>, host: bool) -> String {
    match container {
        Some(c) if !host => who(
            &c.id,
            &c.name,
            c.pod.as_ref(),
            c.workload.as_ref(),
            c.metadata_pending,
        ),
        _ => "host".to_string(),
    }
}

fn who(
    id: &str,
    name: &str,
    pod: Option<&pb::Pod>,
    workload: Option<&pb::Workload>,
    metadata_pending: bool,
) -> String {
    let mut parts = Vec::new();
    if let Some(pod) = pod {
        let (workload_name, kind) = match workload {
            Some(w) if !w.name.is_empty() => {
                let inferred = w.kind == pb::WorkloadKind::CronJob as i32
                    && w.cronjob.as_ref().is_some_and(|c| c.inferred);
                let mark = if inferred { "?" } else { "" };
                (
                    w.name.as_str(),
                    format!("{}{mark}", names::workload_kind_compact(w.kind)),
                )
            }
            _ => (pod.name.as_str(), "pod".to_string()),
        };
        parts.push(format!(
            "{}/{}({kind})",
            word(&pod.namespace),
            word(workload_name)
        ));
        if let Some(job) = workload.and_then(|w| w.job.as_ref()) {
            let is_the_workload = workload.is_some_and(|w| w.kind == pb::WorkloadKind::Job as i32);
            if !job.name.is_empty() && !is_the_workload {
                parts.push(format!("job={}", word(&job.name)));
            }
        }
        parts.push(format!("pod={}", word(&pod.name)));
    } else {
        parts.push("-".to_string());
    }
    let ctr_name = if name.is_empty() {
        String::new()
    } else {
        word(name)
    };
    parts.push(format!("ctr={ctr_name}[{}]", word(short_id(id))));
    if metadata_pending {
        parts.push("metadata-pending".to_string());
    }
    parts.join(" ")
}

/// `pid=.. uid=..` (and `euid=..` when it differs) of a process.
fn process_ids(process: Option<&pb::Process>) -> String {
    match process {
        Some(p) if p.euid != p.uid => format!("pid={} uid={} euid={}", p.pid, p.uid, p.euid),
        Some(p) => format!("pid={} uid={}", p.pid, p.uid),
        None => "pid=?".to_string(),
    }
}

fn exec_body(exec: &pb::ProcessExec) -> String {
    let process = exec.process.as_ref();
    let host = process.is_some_and(|p| p.host);
    let mut parts = vec![
        identity(exec.container.as_ref(), host),
        process_ids(process),
    ];
    parts.push(word(&exec.binary));
    parts.extend(exec.args.iter().map(|a| word(a)));
    if let Some(f) = &exec.flags {
        let marks: Vec<&str> = [
            (f.deleted, "deleted"),
            (f.memfd, "memfd"),
            (f.upper_layer, "upper-layer"),
            (f.args_truncated, "args-truncated"),
            (f.path_truncated, "path-truncated"),
            (f.read_error, "read-error"),
        ]
        .into_iter()
        .filter_map(|(on, mark)| on.then_some(mark))
        .collect();
        if !marks.is_empty() {
            parts.push(format!("[{}]", marks.join(",")));
        }
    }
    parts.join(" ")
}

fn exit_body(exit: &pb::ProcessExit) -> String {
    let host = exit.container.is_none();
    let mut parts = vec![
        identity(exit.container.as_ref(), host),
        format!("pid={}", exit.pid),
        word(&exit.binary),
    ];
    if let Some(code) = exit.exit_code {
        parts.push(format!("code={code}"));
    }
    if let Some(signal) = exit.signal {
        parts.push(format!("signal={signal}"));
    }
    parts.push(format!("after {}", time::human_duration(exit.duration_ns)));
    parts.join(" ")
}

fn file_body(file: &pb::FileCreated) -> String {
    let process = file.process.as_ref();
    let host = process.is_some_and(|p| p.host);
    let mut parts = vec![
        identity(file.container.as_ref(), host),
        process_ids(process),
    ];
    if let Some(p) = process {
        parts.push(word(&p.binary));
    }
    parts.push(names::text(&names::file_operation(file.operation)).replace('_', "-"));
    parts.push(word(&file.path));
    if let Some(source) = &file.source {
        parts.push(format!("from={}", word(source)));
    }
    parts.push(format!("mode={:o}", file.mode));
    if let Some(old) = file.old_mode {
        parts.push(format!("old-mode={old:o}"));
    }
    for (on, mark) in [
        (file.replaced, "replaced"),
        (file.path_truncated, "path-truncated"),
        (file.read_error, "read-error"),
    ] {
        if on {
            parts.push(mark.to_string());
        }
    }
    parts.join(" ")
}

fn start_body(created: &pb::ContainerCreated) -> String {
    let Some(c) = &created.container else {
        return "(no container)".to_string();
    };
    let mut parts = vec![
        who(&c.id, &c.name, c.pod.as_ref(), c.workload.as_ref(), false),
        format!("image={}", word(&c.image)),
    ];
    if c.kind == pb::ContainerKind::Sandbox as i32 {
        parts.push("sandbox".to_string());
    }
    if let Some(s) = &c.security {
        parts.extend(security_marks(s));
    }
    if created.seen_at_start {
        parts.push("seen-at-start".to_string());
    }
    parts.join(" ")
}

/// The risky facts of a container, in short words: `privileged root host-pid caps=.. host-mounts=..`.
pub fn security_marks(s: &pb::SecurityFacts) -> Vec<String> {
    let mut marks: Vec<String> = [
        (s.privileged, "privileged"),
        (s.runs_as_root, "root"),
        (s.host_pid, "host-pid"),
        (s.host_network, "host-network"),
        (s.host_ipc, "host-ipc"),
    ]
    .into_iter()
    .filter(|&(on, _)| on)
    .map(|(_, mark)| mark.to_string())
    .collect();
    if !s.added_capabilities.is_empty() {
        let caps: Vec<String> = s.added_capabilities.iter().map(|c| word(c)).collect();
        marks.push(format!("caps={}", caps.join(",")));
    }
    if !s.host_mounts.is_empty() {
        let mounts: Vec<String> = s
            .host_mounts
            .iter()
            .map(|m| {
                let ro = if m.readonly { ":ro" } else { "" };
                format!("{}{ro}", word(&m.source))
            })
            .collect();
        marks.push(format!("host-mounts={}", mounts.join(",")));
    }
    marks
}

fn stop_body(exited: &pb::ContainerExited) -> String {
    let mut parts = vec![
        match &exited.container {
            Some(c) => identity(Some(c), false),
            None => "(no container)".to_string(),
        },
        format!("code={}", exited.exit_code),
    ];
    if let Some(d) = exited.duration_ns {
        parts.push(format!("after {}", time::human_duration(d)));
    }
    parts.join(" ")
}
