//! Human-readable renderings of containers and of the sensor's status.

use jobwatch_proto::v1 as pb;

use crate::compact::{security_marks, word};
use crate::{names, time};

/// How many characters of a container id the table shows.
const TABLE_ID: usize = 12;

fn yes_no(b: bool) -> &'static str {
    if b { "yes" } else { "no" }
}

fn prefix(s: &str, n: usize) -> &str {
    s.char_indices().nth(n).map_or(s, |(i, _)| &s[..i])
}

/// `name(kind)` of a workload, `-` without one.
fn workload_cell(workload: Option<&pb::Workload>) -> String {
    match workload {
        Some(w) if !w.name.is_empty() => {
            let inferred = w.cronjob.as_ref().is_some_and(|c| c.inferred)
                && w.kind == pb::WorkloadKind::CronJob as i32;
            let mark = if inferred { "?" } else { "" };
            format!("{}({}{mark})", w.name, names::workload_kind_compact(w.kind))
        }
        _ => "-".to_string(),
    }
}

fn or_dash(s: &str) -> String {
    if s.is_empty() {
        "-".to_string()
    } else {
        word(s)
    }
}

/// The containers as an aligned table: `ID NAMESPACE POD WORKLOAD IMAGE ROOT PRIV`.
pub fn containers_table(containers: &[pb::Container]) -> String {
    let header = [
        "ID",
        "NAMESPACE",
        "POD",
        "WORKLOAD",
        "IMAGE",
        "ROOT",
        "PRIV",
    ]
    .map(String::from);
    let mut rows = vec![header.to_vec()];
    for c in containers {
        let security = c.security.clone().unwrap_or_default();
        rows.push(vec![
            prefix(&c.id, TABLE_ID).to_string(),
            or_dash(c.pod.as_ref().map_or("", |p| p.namespace.as_str())),
            or_dash(c.pod.as_ref().map_or("", |p| p.name.as_str())),
            word(&workload_cell(c.workload.as_ref())),
            or_dash(&c.image),
            yes_no(security.runs_as_root).to_string(),
            yes_no(security.privileged).to_string(),
        ]);
    }
    let widths: Vec<usize> = (0..header.len())
        .map(|i| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in rows {
        let cells: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// One container, one `key: value` per line.
pub fn container_detail(c: &pb::Container) -> String {
    let mut lines: Vec<(&str, String)> = vec![
        ("id", c.id.clone()),
        ("name", or_dash(&c.name)),
        ("kind", names::text(&names::container_kind(c.kind))),
        ("runtime namespace", or_dash(&c.runtime_namespace)),
        ("image", or_dash(&c.image)),
        ("image digest", or_dash(&c.image_digest)),
        ("sandbox", or_dash(&c.sandbox_id)),
    ];
    if let Some(pod) = &c.pod {
        lines.push((
            "pod",
            format!("{}/{}", or_dash(&pod.namespace), or_dash(&pod.name)),
        ));
        lines.push(("pod uid", or_dash(&pod.uid)));
    }
    lines.push(("workload", workload_cell(c.workload.as_ref())));
    if let Some(w) = &c.workload {
        if let Some(job) = &w.job {
            lines.push(("job", or_dash(&job.name)));
        }
        if let Some(cron) = &w.cronjob {
            let inferred = if cron.inferred { " (inferred)" } else { "" };
            lines.push(("cronjob", format!("{}{inferred}", or_dash(&cron.name))));
            if !cron.scheduled_time.is_empty() {
                lines.push(("scheduled", cron.scheduled_time.clone()));
            }
        }
        lines.push(("owner source", names::text(&names::owner_source(w.source))));
    }
    if let Some(s) = &c.security {
        let marks = security_marks(s);
        lines.push(("uid/gid", format!("{}/{}", s.uid, s.gid)));
        let risky = if marks.is_empty() {
            "-".to_string()
        } else {
            marks.join(" ")
        };
        lines.push(("security", risky));
        lines.push(("readonly rootfs", yes_no(s.readonly_rootfs).to_string()));
        lines.push(("no new privileges", yes_no(s.no_new_privileges).to_string()));
    }
    lines.push(("cgroup", or_dash(&c.cgroup)));
    if let Some(pid) = c.init_pid {
        lines.push(("init pid", pid.to_string()));
    }
    if let Some(started) = c.started_unix_nano {
        lines.push(("started", time::rfc3339_millis(started)));
    }
    let mut labels: Vec<_> = c.labels.iter().collect();
    labels.sort();
    for (k, v) in labels {
        lines.push(("label", format!("{}={}", word(k), word(v))));
    }
    render_pairs(&lines)
}

fn render_pairs(lines: &[(&str, String)]) -> String {
    let width = lines.iter().map(|(k, _)| k.len() + 1).max().unwrap_or(0);
    lines
        .iter()
        .map(|(k, v)| format!("{:<width$} {v}\n", format!("{k}:")))
        .collect()
}

/// The sensor's status, then its counters as `name=value`.
pub fn status_text(s: &pb::Status) -> String {
    let containerd = if s.containerd_connected {
        "connected".to_string()
    } else if s.containerd_error.is_empty() {
        "not connected".to_string()
    } else {
        format!("not connected: {}", s.containerd_error)
    };
    let programs = if s.programs_attached.is_empty() {
        "none".to_string()
    } else {
        s.programs_attached.join(", ")
    };
    let mut out = render_pairs(&[
        ("version", or_dash(&s.version)),
        ("node", or_dash(&s.node)),
        ("kernel", or_dash(&s.kernel)),
        ("programs", programs),
        ("containerd", containerd),
        ("containers", s.containers_tracked.to_string()),
        ("subscribers", s.subscribers.to_string()),
    ]);
    out.push_str("counters:\n");
    for c in &s.counters {
        out.push_str(&format!("  {}={}\n", word(&c.name), c.value));
    }
    out
}
