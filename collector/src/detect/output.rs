//! Alerts as JSON lines, for a SIEM or a log shipper: one object per alert on stdout or
//! appended to a file.

use std::{
    fs::{File, OpenOptions},
    io::{self, Write},
    path::{Path, PathBuf},
};

use jobwatch_proto::v1 as pb;
use serde_json::{Value, json};

/// Where alerts are written.
#[derive(Debug)]
pub enum Sink {
    /// Standard output.
    Stdout,
    /// A file, appended to.
    File(PathBuf, File),
}

impl Sink {
    /// `-` is stdout; anything else a file opened for appending (created 0600).
    pub fn open(target: &Path) -> io::Result<Sink> {
        if target.as_os_str() == "-" {
            return Ok(Sink::Stdout);
        }
        use std::os::unix::fs::OpenOptionsExt as _;
        let f = OpenOptions::new()
            .create(true)
            .append(true)
            .mode(0o600)
            .open(target)?;
        Ok(Sink::File(target.to_path_buf(), f))
    }

    /// Writes the alerts, one line each, in one write.
    pub fn write(&mut self, alerts: &[pb::Alert]) -> io::Result<()> {
        if alerts.is_empty() {
            return Ok(());
        }
        let mut buf = Vec::new();
        for a in alerts {
            serde_json::to_writer(&mut buf, &alert_json(a)).map_err(io::Error::other)?;
            buf.push(b'\n');
        }
        match self {
            Sink::Stdout => {
                let mut out = io::stdout().lock();
                out.write_all(&buf)?;
                out.flush()
            }
            Sink::File(_, f) => f.write_all(&buf),
        }
    }
}

/// The lowercase name of a severity.
pub fn severity_name(v: i32) -> &'static str {
    match pb::Severity::try_from(v) {
        Ok(pb::Severity::Info) => "info",
        Ok(pb::Severity::Low) => "low",
        Ok(pb::Severity::Medium) => "medium",
        Ok(pb::Severity::High) => "high",
        Ok(pb::Severity::Critical) => "critical",
        _ => "unspecified",
    }
}

/// One alert as a JSON object (evidence as collector ids and kinds; the events themselves are
/// in the store and in `ListAlerts`).
pub fn alert_json(a: &pb::Alert) -> Value {
    let rule = a.rule.clone().unwrap_or_default();
    json!({
        "id": a.id,
        "time_unix_nano": a.time_unix_nano,
        "severity": severity_name(a.severity),
        "rule": {
            "id": rule.id,
            "title": rule.title,
            "technique": rule.technique,
            "data_sources": rule.data_sources,
            "mitigations": rule.mitigations,
        },
        "message": a.message,
        "node": a.node,
        "namespace": a.namespace,
        "cronjob": a.cronjob,
        "job": a.job,
        "pod": a.pod,
        "container_id": a.container_id,
        "container_name": a.container_name,
        "image": a.image,
        "ancestry": a.ancestry.iter().map(|p| json!({
            "exec_id": p.exec_id,
            "pid": p.pid,
            "binary": p.binary,
            "args": p.args,
            "uid": p.uid,
            "partial": p.partial,
        })).collect::<Vec<_>>(),
        "evidence": a.evidence.iter().map(|e| json!({
            "id": e.id,
            "kind": e.event.as_ref().and_then(|e| e.kind.as_ref()).map(kind_name).unwrap_or(""),
            "time_unix_nano": e.event.as_ref().map_or(0, |e| e.time_unix_nano),
        })).collect::<Vec<_>>(),
        "details": a.details,
    })
}

fn kind_name(k: &pb::event::Kind) -> &'static str {
    match k {
        pb::event::Kind::ProcessExec(_) => "exec",
        pb::event::Kind::ProcessExit(_) => "exit",
        pb::event::Kind::FileCreated(_) => "file",
        pb::event::Kind::ContainerCreated(_) => "container_created",
        pb::event::Kind::ContainerExited(_) => "container_exited",
        pb::event::Kind::LostEvents(_) => "lost",
    }
}
