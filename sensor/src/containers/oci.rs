//! What matters for T1053.007 in a container's OCI runtime spec and the CRI metadata containerd
//! keeps beside it: who it runs as, what it may do, what of the host it sees.

use serde::Serialize;
use serde_json::Value;

/// Capabilities containerd gives a container by default (its `oci.DefaultCapabilities`): only
/// capabilities beyond these are reported as added.
pub const DEFAULT_CAPABILITIES: [&str; 14] = [
    "CAP_CHOWN",
    "CAP_DAC_OVERRIDE",
    "CAP_FSETID",
    "CAP_FOWNER",
    "CAP_MKNOD",
    "CAP_NET_RAW",
    "CAP_SETGID",
    "CAP_SETUID",
    "CAP_SETFCAP",
    "CAP_SETPCAP",
    "CAP_NET_BIND_SERVICE",
    "CAP_SYS_CHROOT",
    "CAP_KILL",
    "CAP_AUDIT_WRITE",
];

/// Mount destinations the container runtime itself provides; not host access.
const RUNTIME_MOUNTS: [&str; 6] = [
    "/etc/hosts",
    "/etc/hostname",
    "/etc/resolv.conf",
    "/dev/shm",
    "/dev/termination-log",
    "/run/secrets/kubernetes.io/serviceaccount",
];

/// A directory of the host visible in the container.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct HostMount {
    pub source: String,
    pub destination: String,
    pub readonly: bool,
}

/// The security-relevant facts of a container.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SecurityFacts {
    pub privileged: bool,
    /// uid and gid of the container's first process.
    pub uid: u32,
    pub gid: u32,
    pub runs_as_root: bool,
    /// Capabilities beyond containerd's default set (all of them for a privileged container).
    pub added_capabilities: Vec<String>,
    pub host_pid: bool,
    pub host_network: bool,
    pub host_ipc: bool,
    /// Host directories bind-mounted into the container (hostPath volumes and the like).
    pub host_mounts: Vec<HostMount>,
    pub readonly_rootfs: bool,
    pub no_new_privileges: bool,
}

/// Why a spec could not be read.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("OCI spec is not JSON: {0}")]
    Json(#[from] serde_json::Error),
    #[error("OCI spec has no {0}")]
    Missing(&'static str),
}

fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| {
            a.iter()
                .filter_map(Value::as_str)
                .map(str::to_string)
                .collect()
        })
        .unwrap_or_default()
}

/// Reads the facts from an OCI runtime spec (JSON). What the CRI metadata says, when known,
/// wins over what the spec suggests: privileged (the spec shows only all capabilities and
/// nothing masked) and the host namespaces (the spec of a pod's container names the sandbox's
/// namespaces by path, which may be the host's).
pub fn security_facts(spec: &[u8], cri: &CriMetadata) -> Result<SecurityFacts, SpecError> {
    let spec: Value = serde_json::from_slice(spec)?;
    let process = spec.get("process").ok_or(SpecError::Missing("process"))?;
    let user = &process["user"];
    let uid = user["uid"].as_u64().unwrap_or(0) as u32;
    let gid = user["gid"].as_u64().unwrap_or(0) as u32;
    let effective = strings(&process["capabilities"]["effective"]);
    let mut added: Vec<String> = effective
        .iter()
        .filter(|c| !DEFAULT_CAPABILITIES.contains(&c.as_str()))
        .cloned()
        .collect();
    added.sort();

    let linux = &spec["linux"];
    let namespaces: Vec<&str> = linux["namespaces"]
        .as_array()
        .map(|a| a.iter().filter_map(|n| n["type"].as_str()).collect())
        .unwrap_or_default();
    let masked = linux["maskedPaths"]
        .as_array()
        .is_some_and(|a| !a.is_empty());
    let privileged = cri
        .privileged
        .unwrap_or_else(|| effective.iter().any(|c| c == "CAP_SYS_ADMIN") && !masked);
    let in_spec = |ns: &str| namespaces.contains(&ns);

    let host_mounts = spec["mounts"]
        .as_array()
        .map(|mounts| {
            mounts
                .iter()
                .filter_map(|m| {
                    let options = strings(&m["options"]);
                    let bind = m["type"].as_str() == Some("bind")
                        || options.iter().any(|o| o == "bind" || o == "rbind");
                    let destination = m["destination"].as_str()?.to_string();
                    let source = m["source"].as_str()?.to_string();
                    if !bind || RUNTIME_MOUNTS.contains(&destination.as_str()) {
                        return None;
                    }
                    Some(HostMount {
                        source,
                        destination,
                        readonly: options.iter().any(|o| o == "ro"),
                    })
                })
                .collect()
        })
        .unwrap_or_default();

    Ok(SecurityFacts {
        privileged,
        uid,
        gid,
        runs_as_root: uid == 0,
        added_capabilities: added,
        host_pid: cri.host_pid.unwrap_or(!in_spec("pid")),
        host_network: cri.host_network.unwrap_or(!in_spec("network")),
        host_ipc: cri.host_ipc.unwrap_or(!in_spec("ipc")),
        host_mounts,
        readonly_rootfs: spec["root"]["readonly"].as_bool().unwrap_or(false),
        no_new_privileges: process["noNewPrivileges"].as_bool().unwrap_or(false),
    })
}

/// Annotations of an OCI spec.
pub fn annotations(spec: &[u8]) -> std::collections::BTreeMap<String, String> {
    serde_json::from_slice::<Value>(spec)
        .ok()
        .and_then(|v| {
            v["annotations"].as_object().map(|o| {
                o.iter()
                    .filter_map(|(k, v)| Some((k.clone(), v.as_str()?.to_string())))
                    .collect()
            })
        })
        .unwrap_or_default()
}

/// `linux.cgroupsPath` of an OCI spec.
pub fn cgroups_path(spec: &[u8]) -> Option<String> {
    let v: Value = serde_json::from_slice(spec).ok()?;
    v["linux"]["cgroupsPath"].as_str().map(str::to_string)
}

/// The cgroup directory (relative to a hierarchy's root) that runc creates for a
/// `cgroupsPath`: absolute paths as they are (cgroupfs driver), `slice:prefix:name` expanded the
/// way systemd does (`a-b.slice` lives in `a.slice/a-b.slice`).
pub fn cgroup_dir(cgroups_path: &str) -> Option<String> {
    if cgroups_path.starts_with('/') {
        return Some(cgroups_path.to_string());
    }
    let mut parts = cgroups_path.splitn(3, ':');
    let (slice, prefix, name) = (parts.next()?, parts.next()?, parts.next()?);
    let slice = slice.strip_suffix(".slice")?;
    let mut dir = String::new();
    let mut acc = String::new();
    for (i, part) in slice.split('-').enumerate() {
        if part.is_empty() {
            return None;
        }
        if i > 0 {
            acc.push('-');
        }
        acc.push_str(part);
        if acc == "-" {
            continue;
        }
        dir.push('/');
        dir.push_str(&acc);
        dir.push_str(".slice");
    }
    let unit = if prefix.is_empty() {
        format!("{name}.scope")
    } else {
        format!("{prefix}-{name}.scope")
    };
    Some(format!("{dir}/{unit}"))
}

/// `privileged` and image reference from containerd's CRI metadata extension (JSON) for a
/// container, when present.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct CriMetadata {
    pub privileged: Option<bool>,
    /// From the namespace options: NODE mode means the host's namespace.
    pub host_network: Option<bool>,
    pub host_pid: Option<bool>,
    pub host_ipc: Option<bool>,
    pub image_ref: Option<String>,
    pub name: Option<String>,
}

/// Reads containerd's `io.cri-containerd.container.metadata` extension: JSON of the form
/// `{"Version":"v1","Metadata":{"ImageRef":..,"Config":{..CRI ContainerConfig..}}}`.
pub fn cri_metadata(extension: &[u8]) -> CriMetadata {
    let Ok(v) = serde_json::from_slice::<Value>(extension) else {
        return CriMetadata::default();
    };
    let m = &v["Metadata"];
    let config = &m["Config"];
    let sc = &config["linux"]["security_context"];
    // NamespaceMode: POD = 0 (omitted), CONTAINER = 1, NODE = 2, TARGET = 3.
    let ns = &sc["namespace_options"];
    let node = |kind: &str| sc.is_object().then(|| ns[kind].as_u64() == Some(2));
    CriMetadata {
        host_network: node("network"),
        host_pid: node("pid"),
        host_ipc: node("ipc"),
        privileged: sc
            .get("privileged")
            .map(|p| p.as_bool().unwrap_or(false))
            .or_else(|| {
                // The field is omitted when false; an existing security context means "known".
                sc.is_object().then_some(false)
            }),
        image_ref: m["ImageRef"].as_str().map(str::to_string),
        name: config["metadata"]["name"].as_str().map(str::to_string),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(extra: &str) -> Vec<u8> {
        format!(
            r#"{{"ociVersion":"1.0.2","process":{{"user":{{"uid":1000,"gid":1000}},
            "capabilities":{{"effective":["CAP_CHOWN","CAP_KILL"]}},"noNewPrivileges":true}},
            "root":{{"path":"rootfs","readonly":true}},
            "mounts":[{{"destination":"/proc","type":"proc","source":"proc"}},
              {{"destination":"/etc/hosts","type":"bind","source":"/var/lib/containerd/x/hosts","options":["rbind","rw"]}},
              {{"destination":"/host","type":"bind","source":"/","options":["rbind","ro"]}}],
            "linux":{{"namespaces":[{{"type":"pid"}},{{"type":"ipc"}},{{"type":"mount"}},
              {{"type":"network","path":"/proc/9/ns/net"}}],"maskedPaths":["/proc/kcore"],
              "cgroupsPath":"/kubepods/besteffort/podx/abc"}}{extra}}}"#
        )
        .into_bytes()
    }

    #[test]
    fn unprivileged_spec() {
        let f = security_facts(&spec(""), &CriMetadata::default()).expect("spec");
        assert!(!f.privileged);
        assert_eq!((f.uid, f.gid, f.runs_as_root), (1000, 1000, false));
        assert!(f.added_capabilities.is_empty());
        assert!(!f.host_pid && !f.host_network && !f.host_ipc);
        assert_eq!(
            f.host_mounts,
            vec![HostMount {
                source: "/".into(),
                destination: "/host".into(),
                readonly: true
            }]
        );
        assert!(f.readonly_rootfs && f.no_new_privileges);
        assert_eq!(
            cgroups_path(&spec("")).as_deref(),
            Some("/kubepods/besteffort/podx/abc")
        );
    }

    #[test]
    fn privileged_root_host_namespaces() {
        let s = br#"{"process":{"user":{"uid":0,"gid":0},"capabilities":{"effective":
            ["CAP_CHOWN","CAP_SYS_ADMIN","CAP_SYS_PTRACE","CAP_KILL"]}},
            "linux":{"namespaces":[{"type":"mount"}]},"mounts":[]}"#;
        let f = security_facts(s, &CriMetadata::default()).expect("spec");
        assert!(f.privileged, "all caps and nothing masked");
        assert!(f.runs_as_root);
        assert_eq!(
            f.added_capabilities,
            vec!["CAP_SYS_ADMIN", "CAP_SYS_PTRACE"]
        );
        assert!(f.host_pid && f.host_network && f.host_ipc);
        // The CRI's own word wins.
        let cri = CriMetadata {
            privileged: Some(false),
            host_pid: Some(false),
            ..CriMetadata::default()
        };
        let f = security_facts(s, &cri).expect("spec");
        assert!(!f.privileged && !f.host_pid && f.host_network);
    }

    #[test]
    fn bad_specs_are_errors() {
        let cri = CriMetadata::default();
        assert!(security_facts(b"not json", &cri).is_err());
        assert!(matches!(
            security_facts(b"{}", &cri),
            Err(SpecError::Missing("process"))
        ));
    }

    #[test]
    fn cgroup_dirs() {
        assert_eq!(
            cgroup_dir("/kubepods/besteffort/podx/abc").as_deref(),
            Some("/kubepods/besteffort/podx/abc")
        );
        assert_eq!(
            cgroup_dir("kubepods-besteffort-pod1_2.slice:cri-containerd:abc").as_deref(),
            Some(
                "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod1_2.slice/cri-containerd-abc.scope"
            )
        );
        assert_eq!(
            cgroup_dir("system.slice:docker:abc").as_deref(),
            Some("/system.slice/docker-abc.scope")
        );
        assert_eq!(cgroup_dir("nonsense"), None);
        assert_eq!(cgroup_dir("a--b.slice:x:y"), None);
    }

    #[test]
    fn cri_metadata_reads_privileged() {
        let m = cri_metadata(
            br#"{"Version":"v1","Metadata":{"ImageRef":"sha256:abc","Config":{"metadata":{"name":"app"},
            "linux":{"security_context":{"privileged":true}}}}}"#,
        );
        assert_eq!(m.privileged, Some(true));
        assert_eq!(m.image_ref.as_deref(), Some("sha256:abc"));
        assert_eq!(m.name.as_deref(), Some("app"));
        let m = cri_metadata(br#"{"Metadata":{"Config":{"linux":{"security_context":{}}}}}"#);
        assert_eq!(m.privileged, Some(false));
        assert_eq!(
            (m.host_network, m.host_pid, m.host_ipc),
            (Some(false), Some(false), Some(false))
        );
        // Observed from containerd 1.6 for a hostNetwork pod's container.
        let m = cri_metadata(
            br#"{"Metadata":{"Config":{"linux":{"security_context":{"namespace_options":{"network":2,"pid":1}}}}}}"#,
        );
        assert_eq!(
            (m.host_network, m.host_pid, m.host_ipc),
            (Some(true), Some(false), Some(false))
        );
        assert_eq!(cri_metadata(b"garbage"), CriMetadata::default());
    }
}
