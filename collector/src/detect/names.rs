//! Names derived from events: the command a process runs, the executable's path as the
//! container sees it, and paths normalised for baselines.

use jobwatch_proto::v1 as pb;

/// The last component of a path.
pub fn basename(path: &str) -> &str {
    path.rsplit('/').next().unwrap_or(path)
}

/// The executable's path as the process named it: the exec filename when absolute (for a
/// busybox applet that is `/bin/sh`, while `binary` is `/bin/busybox`), else joined to the
/// working directory, else the resolved binary.
pub fn exe_path(e: &pb::ProcessExec) -> String {
    let f = e.filename.as_str();
    if f.starts_with('/') {
        return f.to_string();
    }
    if !f.is_empty() && f.contains('/') && e.cwd.starts_with('/') {
        let rel = f.trim_start_matches("./");
        return if e.cwd.ends_with('/') {
            format!("{}{rel}", e.cwd)
        } else {
            format!("{}/{rel}", e.cwd)
        };
    }
    if !e.binary.is_empty() {
        return e.binary.clone();
    }
    f.to_string()
}

/// The command a process runs: the name it was executed under (`sh` for `/bin/sh` even when
/// that is busybox), or the applet for `busybox <applet> ...`.
pub fn command_name(e: &pb::ProcessExec) -> String {
    let mut name = basename(&exe_path(e)).to_string();
    if name == "busybox"
        && let Some(applet) = e.args.get(1)
    {
        name = basename(applet).to_string();
    }
    name
}

/// The arguments after the command itself (skipping `busybox` for applets).
pub fn command_args(e: &pb::ProcessExec) -> &[String] {
    let skip = if basename(&exe_path(e)) == "busybox" && e.args.len() > 1 {
        2
    } else {
        1
    };
    e.args.get(skip..).unwrap_or(&[])
}

/// A path with every run of digits replaced by `#`, so that `backup-29381.tar.gz` and
/// `backup-29382.tar.gz` are the same baseline item.
pub fn normalize_path(path: &str) -> String {
    let mut out = String::with_capacity(path.len());
    let mut in_digits = false;
    for c in path.chars() {
        if c.is_ascii_digit() {
            if !in_digits {
                out.push('#');
            }
            in_digits = true;
        } else {
            out.push(c);
            in_digits = false;
        }
    }
    out
}

/// Whether `path` is `dir` or below it (both absolute; `/` contains everything).
pub fn is_within(path: &str, dir: &str) -> bool {
    let dir = dir.trim_end_matches('/');
    if dir.is_empty() {
        return path.starts_with('/');
    }
    path == dir || (path.starts_with(dir) && path.as_bytes().get(dir.len()) == Some(&b'/'))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(filename: &str, binary: &str, args: &[&str], cwd: &str) -> pb::ProcessExec {
        pb::ProcessExec {
            filename: filename.into(),
            binary: binary.into(),
            args: args.iter().map(|s| s.to_string()).collect(),
            cwd: cwd.into(),
            ..Default::default()
        }
    }

    #[test]
    fn names_of_busybox_applets_and_relative_execs() {
        let sh = exec("/bin/sh", "/bin/busybox", &["sh", "-c", "x"], "/");
        assert_eq!(exe_path(&sh), "/bin/sh");
        assert_eq!(command_name(&sh), "sh");
        assert_eq!(command_args(&sh), ["-c", "x"]);
        let bb = exec(
            "/bin/busybox",
            "/bin/busybox",
            &["busybox", "wget", "-O-"],
            "/",
        );
        assert_eq!(command_name(&bb), "wget");
        assert_eq!(command_args(&bb), ["-O-"]);
        let rel = exec("./kit", "/tmp/kit", &["./kit"], "/tmp");
        assert_eq!(exe_path(&rel), "/tmp/kit");
        let bare = exec("", "/usr/bin/python3", &["python3"], "/");
        assert_eq!(command_name(&bare), "python3");
    }

    #[test]
    fn normalizing_and_containment() {
        assert_eq!(
            normalize_path("/backup/db-2026-11-27.tar.gz"),
            "/backup/db-#-#-#.tar.gz"
        );
        assert!(is_within("/etc/cron.d/x", "/etc"));
        assert!(is_within("/etc", "/etc/"));
        assert!(!is_within("/etcetera", "/etc"));
        assert!(is_within("/anything", "/"));
    }
}
