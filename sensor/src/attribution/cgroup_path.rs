//! Which container a cgroup path belongs to, from the path alone.
//!
//! The input is a cgroup path as the kernel prints it in `/proc/<pid>/cgroup` (the part after
//! `<hierarchy>:<controllers>:`, although a whole line is accepted too) or as found under a cgroup
//! mount. The leading slash is optional, a trailing newline and the kernel's ` (deleted)` suffix are
//! ignored, and any prefix before the Kubernetes part is allowed (`/kubelet.slice/...`, a custom
//! `--cgroup-root`, or the leading `..` components the kernel prints for a cgroup outside the
//! reader's cgroup namespace).
//!
//! Shapes understood (`<id>` is exactly 64 lowercase hex digits unless said otherwise):
//!
//! | layout | container cgroup |
//! |---|---|
//! | Kubernetes, cgroupfs driver (v1 or v2) | `/kubepods[/besteffort\|/burstable]/pod<uid>/<id>` |
//! | Kubernetes, systemd driver | `/kubepods.slice/kubepods[-besteffort\|-burstable].slice/kubepods[-qos]-pod<uid_with_underscores>.slice/<scope>` |
//! | scope names | `cri-containerd-<id>.scope`, `crio-<id>.scope`, `docker-<id>.scope`, `libpod-<id>.scope` (also without `.scope`, as CRI-O and podman name them under cgroupfs) |
//! | Docker, cgroupfs | `/docker/<id>` |
//! | Docker / podman / containerd under systemd, outside Kubernetes | `/system.slice/docker-<id>.scope`, `/machine.slice/libpod-<id>.scope`, `/user.slice/.../libpod-<id>.scope` |
//! | plain containerd (`ctr run`) | `/<namespace>/<containerd id>`, only with [`parse_with_namespaces`] |
//!
//! Decisions:
//! - **The first container wins.** Walking from the root, the first component that identifies a
//!   container decides, so a container's own sub-cgroups (`<id>/init.scope`, systemd inside a
//!   container, crun's `container` leaf) map to that container. This is also a security property: a
//!   container with a delegated cgroup subtree cannot create `kubepods/.../pod<uid>/<id>` below
//!   itself and pass its processes off as another pod's. The flip side: on a host running kind (or
//!   any Kubernetes-in-Docker) the pods' cgroups sit inside the node container's scope and map to the
//!   node container; a sensor for such a cluster must run inside the node (its cgroup namespace).
//! - **conmon is not the container.** `crio-conmon-<id>.scope` and `libpod-conmon-<id>.scope` hold the
//!   runtime's monitor process, which runs host binaries on the container's behalf. [`parse`] returns
//!   `None` for them (attributing `conmon` to the container would look like the container ran a new
//!   binary); [`classify`] reports them as [`CgroupClass::Conmon`] so callers can still tell which
//!   container they serve.
//! - **Runtime of a bare id under a pod.** containerd and cri-dockerd both name a cgroupfs container
//!   cgroup by its bare id, so the runtime is [`Runtime::Unknown`] there; the caller knows which
//!   runtime it talks to.
//! - The pod-level cgroup is not a container: [`parse`] returns `None`, [`pod_uid_of`] gives its uid.
//!   Pod uids are returned with dashes whatever the path used; both the UUID form and the 32-hex form
//!   of static pods are accepted.
//! - A `.` component, or a `..` after the first real component, never occurs in a kernel path: such
//!   input yields nothing. Everything runs in time linear in the input and never panics.

use serde::Serialize;

/// The container runtime a cgroup name points at.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Runtime {
    /// containerd (`cri-containerd-<id>.scope`, or `ctr run`'s `/<namespace>/<id>`).
    Containerd,
    /// CRI-O (`crio-<id>.scope`).
    Crio,
    /// Docker (`/docker/<id>`, `docker-<id>.scope`).
    Docker,
    /// podman (`libpod-<id>.scope`).
    Podman,
    /// The path does not say (a bare id under a Kubernetes pod cgroup).
    Unknown,
}

/// A Kubernetes pod's QoS class, as encoded in its cgroup path.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum QosClass {
    /// Pod cgroup directly under `kubepods` (`kubepods-pod<uid>.slice`).
    Guaranteed,
    /// Under `burstable` / `kubepods-burstable.slice`.
    Burstable,
    /// Under `besteffort` / `kubepods-besteffort.slice`.
    BestEffort,
}

/// The container a cgroup path belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ContainerCgroup {
    /// The runtime's container id: 64 lowercase hex, or a containerd identifier for `ctr run`.
    pub container_id: String,
    /// The Kubernetes pod uid (with dashes), when the container sits in a pod cgroup.
    pub pod_uid: Option<String>,
    /// The pod's QoS class, when the container sits in a pod cgroup.
    pub qos: Option<QosClass>,
    /// The runtime the cgroup name points at.
    pub runtime: Runtime,
}

/// What a cgroup path is, as far as the path alone tells.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CgroupClass {
    /// A container's cgroup or one of its own sub-cgroups.
    Container(ContainerCgroup),
    /// The cgroup of a runtime monitor (`crio-conmon-<id>`, `libpod-conmon-<id>`): host code serving
    /// the named container, not the container's workload.
    Conmon(ContainerCgroup),
    /// A Kubernetes pod-level cgroup, or a cgroup inside it that is not a known container.
    Pod {
        /// The pod uid, with dashes.
        uid: String,
        /// The QoS class from the path.
        qos: QosClass,
    },
    /// Anything else: the host root, system services, user sessions, unrecognised shapes.
    Other,
}

/// The container a cgroup path belongs to, or `None` for host cgroups, pod-level cgroups, conmon
/// cgroups and unrecognised shapes. See the module documentation for the shapes.
pub fn parse(path: &str) -> Option<ContainerCgroup> {
    parse_with_namespaces(path, &[])
}

/// Like [`parse`], but also accepts plain containerd's `/<namespace>/<id>` (what `ctr run` creates)
/// when the first component of the path is one of `namespaces`. The id there is a containerd
/// identifier (letters, digits and single `.`, `_`, `-` separators, at most 76 bytes), not
/// necessarily hex. `kubepods` and `docker` keep their usual meaning even if listed.
pub fn parse_with_namespaces(path: &str, namespaces: &[&str]) -> Option<ContainerCgroup> {
    match classify(path, namespaces) {
        CgroupClass::Container(c) => Some(c),
        CgroupClass::Conmon(_) | CgroupClass::Pod { .. } | CgroupClass::Other => None,
    }
}

/// The Kubernetes pod uid (with dashes) of a cgroup path: of a container in a pod, of the
/// pod-level cgroup itself, or of a conmon cgroup inside a pod.
pub fn pod_uid_of(path: &str) -> Option<String> {
    match classify(path, &[]) {
        CgroupClass::Container(c) | CgroupClass::Conmon(c) => c.pod_uid,
        CgroupClass::Pod { uid, .. } => Some(uid),
        CgroupClass::Other => None,
    }
}

/// Classifies a cgroup path (see the module documentation); `namespaces` as for
/// [`parse_with_namespaces`].
pub fn classify(path: &str, namespaces: &[&str]) -> CgroupClass {
    let path = strip_noise(path);
    let mut pod: Option<(String, QosClass)> = None;
    let mut ctx = Ctx::Other;
    let mut seen_real = false;

    for comp in path.split('/').filter(|c| !c.is_empty()) {
        if comp == ".." {
            if seen_real {
                return CgroupClass::Other;
            }
            continue;
        }
        if comp == "." {
            return CgroupClass::Other;
        }
        let first_real = !seen_real;
        seen_real = true;

        let container =
            |container_id: String, runtime: Runtime, pod: &Option<(String, QosClass)>| {
                ContainerCgroup {
                    container_id,
                    pod_uid: pod.as_ref().map(|(uid, _)| uid.clone()),
                    qos: pod.as_ref().map(|(_, qos)| *qos),
                    runtime,
                }
            };

        // Container-identifying components, in order of precedence.
        if let Some(hit) = scope_container(comp) {
            return match hit {
                ScopeHit::Container(id, rt) => {
                    CgroupClass::Container(container(id.to_owned(), rt, &pod))
                }
                ScopeHit::Conmon(id, rt) => CgroupClass::Conmon(container(id.to_owned(), rt, &pod)),
            };
        }
        match ctx {
            Ctx::Pod if is_hex_id(comp) => {
                return CgroupClass::Container(container(comp.to_owned(), Runtime::Unknown, &pod));
            }
            Ctx::Docker if is_hex_id(comp) => {
                return CgroupClass::Container(container(comp.to_owned(), Runtime::Docker, &pod));
            }
            Ctx::Namespace if is_containerd_id(comp) => {
                return CgroupClass::Container(container(
                    comp.to_owned(),
                    Runtime::Containerd,
                    &pod,
                ));
            }
            _ => {}
        }

        // Context for the next component.
        ctx = if comp == "kubepods" {
            Ctx::Kubepods
        } else if comp == "docker" {
            Ctx::Docker
        } else if let (Ctx::Kubepods, Some(qos)) = (ctx, qos_dir(comp)) {
            Ctx::KubepodsQos(qos)
        } else if let (Ctx::Kubepods | Ctx::KubepodsQos(_), Some(uid)) =
            (ctx, comp.strip_prefix("pod").and_then(normalize_pod_uid))
        {
            let qos = match ctx {
                Ctx::KubepodsQos(qos) => qos,
                _ => QosClass::Guaranteed,
            };
            pod.get_or_insert((uid, qos));
            Ctx::Pod
        } else if let Some(slice) = kube_slice(comp) {
            match slice {
                KubeSlice::Pod(uid, qos) => {
                    pod.get_or_insert((uid, qos));
                    Ctx::Pod
                }
                KubeSlice::Root | KubeSlice::Qos => Ctx::Other,
            }
        } else if first_real && namespaces.contains(&comp) {
            Ctx::Namespace
        } else {
            Ctx::Other
        };
    }

    match pod {
        Some((uid, qos)) => CgroupClass::Pod { uid, qos },
        None => CgroupClass::Other,
    }
}

/// What the previous component makes of the next one.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Ctx {
    /// Nothing special.
    Other,
    /// After cgroupfs `kubepods`: a QoS directory or a pod may follow.
    Kubepods,
    /// After cgroupfs `kubepods/<qos>`: a pod may follow.
    KubepodsQos(QosClass),
    /// After a pod cgroup: a bare container id may follow.
    Pod,
    /// After `docker`: a bare container id may follow.
    Docker,
    /// After a listed containerd namespace at the root: a containerd id may follow.
    Namespace,
}

/// A container-naming component found anywhere in a path.
enum ScopeHit<'a> {
    Container(&'a str, Runtime),
    Conmon(&'a str, Runtime),
}

/// `<prefix>-<id>[.scope]` for the runtimes' scope names, and their conmon variants.
fn scope_container(comp: &str) -> Option<ScopeHit<'_>> {
    const PREFIXES: [(&str, Runtime); 4] = [
        ("cri-containerd-", Runtime::Containerd),
        ("crio-", Runtime::Crio),
        ("docker-", Runtime::Docker),
        ("libpod-", Runtime::Podman),
    ];
    let base = comp.strip_suffix(".scope").unwrap_or(comp);
    for (prefix, runtime) in PREFIXES {
        let Some(rest) = base.strip_prefix(prefix) else {
            continue;
        };
        if let Some(id) = rest.strip_prefix("conmon-")
            && is_hex_id(id)
        {
            return Some(ScopeHit::Conmon(id, runtime));
        }
        if is_hex_id(rest) {
            return Some(ScopeHit::Container(rest, runtime));
        }
    }
    None
}

/// A systemd slice of the kubelet's hierarchy.
enum KubeSlice {
    /// `[<prefix>-]kubepods.slice`.
    Root,
    /// `[<prefix>-]kubepods-besteffort.slice` / `-burstable.slice`.
    Qos,
    /// `[<prefix>-]kubepods[-<qos>]-pod<uid_with_underscores>.slice`.
    Pod(String, QosClass),
}

/// Parses a systemd slice name of the kubelet's hierarchy. Slice names spell their ancestry with
/// dashes, and the kubelet writes the uid with underscores, so splitting on dashes is exact.
fn kube_slice(comp: &str) -> Option<KubeSlice> {
    let name = comp.strip_suffix(".slice")?;
    let mut parts = name.split('-');
    parts.by_ref().find(|p| *p == "kubepods")?;
    let pod = |p: &str, qos| {
        p.strip_prefix("pod")
            .and_then(normalize_pod_uid)
            .map(|uid| KubeSlice::Pod(uid, qos))
    };
    match (parts.next(), parts.next(), parts.next()) {
        (None, _, _) => Some(KubeSlice::Root),
        (Some(q), None, _) if qos_dir(q).is_some() => Some(KubeSlice::Qos),
        (Some(q), Some(p), None) => pod(p, qos_dir(q)?),
        (Some(p), None, _) => pod(p, QosClass::Guaranteed),
        _ => None,
    }
}

/// `besteffort` / `burstable` (the two QoS classes with their own directory).
fn qos_dir(name: &str) -> Option<QosClass> {
    match name {
        "besteffort" => Some(QosClass::BestEffort),
        "burstable" => Some(QosClass::Burstable),
        _ => None,
    }
}

/// A pod uid in dash form: a lowercase UUID (dashes or the systemd driver's underscores) or the
/// 32 lowercase hex digits of a static pod's uid.
pub(crate) fn normalize_pod_uid(s: &str) -> Option<String> {
    let b = s.as_bytes();
    let hex = |c: &u8| matches!(c, b'0'..=b'9' | b'a'..=b'f');
    match b.len() {
        32 if b.iter().all(hex) => Some(s.to_owned()),
        36 => {
            let ok = b.iter().enumerate().all(|(i, c)| match i {
                8 | 13 | 18 | 23 => *c == b'-' || *c == b'_',
                _ => hex(c),
            });
            ok.then(|| s.replace('_', "-"))
        }
        _ => None,
    }
}

/// Exactly 64 lowercase hex digits (what containerd, CRI-O, Docker and podman generate).
fn is_hex_id(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|c| matches!(c, b'0'..=b'9' | b'a'..=b'f'))
}

/// A containerd identifier: `[A-Za-z0-9]+([._-][A-Za-z0-9]+)*`, at most 76 bytes.
fn is_containerd_id(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: u8| c.is_ascii_alphanumeric();
    if b.is_empty() || b.len() > 76 || !b.first().is_some_and(|c| alnum(*c)) {
        return false;
    }
    if !b.last().is_some_and(|c| alnum(*c)) {
        return false;
    }
    b.windows(2).all(|w| match (w[0], w[1]) {
        (x, y) if alnum(x) && alnum(y) => true,
        (a, b'.' | b'_' | b'-') => alnum(a),
        (b'.' | b'_' | b'-', c) => alnum(c),
        _ => false,
    })
}

/// Drops what is not part of the path: a trailing newline, the kernel's ` (deleted)` suffix for a
/// removed cgroup, and a `<hierarchy>:<controllers>:` prefix when a whole `/proc/<pid>/cgroup`
/// line was passed.
fn strip_noise(path: &str) -> &str {
    let path = path.trim_end_matches(['\n', '\r']);
    let path = path.strip_suffix(" (deleted)").unwrap_or(path);
    if path.starts_with('/') {
        return path;
    }
    let mut fields = path.splitn(3, ':');
    if let (Some(hier), Some(ctrls), Some(rest)) = (fields.next(), fields.next(), fields.next())
        && !hier.is_empty()
        && hier.bytes().all(|c| c.is_ascii_digit())
        && !ctrls.contains('/')
        && rest.starts_with('/')
    {
        return rest;
    }
    path
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";
    const ID2: &str = "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210";
    const UID: &str = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
    const UID_US: &str = "6f1c2d3e_4a5b_4c6d_8e9f_0a1b2c3d4e5f";

    fn c(id: &str, pod: Option<&str>, qos: Option<QosClass>, runtime: Runtime) -> ContainerCgroup {
        ContainerCgroup {
            container_id: id.to_owned(),
            pod_uid: pod.map(str::to_owned),
            qos,
            runtime,
        }
    }

    fn k8s(id: &str, qos: QosClass, runtime: Runtime) -> Option<ContainerCgroup> {
        Some(c(id, Some(UID), Some(qos), runtime))
    }

    #[test]
    fn cgroupfs_kubernetes() {
        let be = format!("/kubepods/besteffort/pod{UID}/{ID}");
        assert_eq!(parse(&be), k8s(ID, QosClass::BestEffort, Runtime::Unknown));
        assert_eq!(
            parse(&format!("/kubepods/burstable/pod{UID}/{ID}")),
            k8s(ID, QosClass::Burstable, Runtime::Unknown)
        );
        assert_eq!(
            parse(&format!("/kubepods/pod{UID}/{ID}")),
            k8s(ID, QosClass::Guaranteed, Runtime::Unknown)
        );
        // Leading slash optional, arbitrary prefixes (a custom --cgroup-root, hybrid v1 mount
        // point), cgroup-namespace-relative `..` components.
        for path in [
            format!("kubepods/besteffort/pod{UID}/{ID}"),
            format!("/kubelet/kubepods/besteffort/pod{UID}/{ID}"),
            format!("/sys/fs/cgroup/memory/kubepods/besteffort/pod{UID}/{ID}"),
            format!("/sys/fs/cgroup/unified/kubepods/besteffort/pod{UID}/{ID}"),
            format!("/../../kubepods/besteffort/pod{UID}/{ID}"),
        ] {
            assert_eq!(
                parse(&path),
                k8s(ID, QosClass::BestEffort, Runtime::Unknown),
                "{path}"
            );
        }
        // A static pod's uid is 32 hex digits.
        let static_uid = "e3b0c44298fc1c149afbf4c8996fb924";
        assert_eq!(
            parse(&format!("/kubepods/burstable/pod{static_uid}/{ID}")),
            Some(c(
                ID,
                Some(static_uid),
                Some(QosClass::Burstable),
                Runtime::Unknown
            ))
        );
        // CRI-O with the cgroupfs manager.
        assert_eq!(
            parse(&format!("/kubepods/burstable/pod{UID}/crio-{ID}")),
            k8s(ID, QosClass::Burstable, Runtime::Crio)
        );
    }

    #[test]
    fn proc_cgroup_lines_hybrid_v1() {
        // Every v1 controller and the unified hierarchy show the same path on this host.
        for line in [
            format!("12:memory:/kubepods/besteffort/pod{UID}/{ID}\n"),
            format!("4:cpu,cpuacct:/kubepods/besteffort/pod{UID}/{ID}"),
            format!("1:name=systemd:/kubepods/besteffort/pod{UID}/{ID}"),
            format!("0::/kubepods/besteffort/pod{UID}/{ID}"),
            format!("0::/kubepods/besteffort/pod{UID}/{ID} (deleted)"),
        ] {
            assert_eq!(
                parse(&line),
                k8s(ID, QosClass::BestEffort, Runtime::Unknown),
                "{line}"
            );
        }
    }

    #[test]
    fn systemd_kubernetes() {
        let be = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parse(&be),
            k8s(ID, QosClass::BestEffort, Runtime::Containerd)
        );
        let bu = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parse(&bu),
            k8s(ID, QosClass::Burstable, Runtime::Containerd)
        );
        let g = format!("/kubepods.slice/kubepods-pod{UID_US}.slice/cri-containerd-{ID}.scope");
        assert_eq!(
            parse(&g),
            k8s(ID, QosClass::Guaranteed, Runtime::Containerd)
        );
        let crio = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-{ID}.scope"
        );
        assert_eq!(parse(&crio), k8s(ID, QosClass::Burstable, Runtime::Crio));
        let docker = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/docker-{ID}.scope"
        );
        assert_eq!(
            parse(&docker),
            k8s(ID, QosClass::BestEffort, Runtime::Docker)
        );
        // kind-style prefix: the kubelet's cgroup root is /kubelet.slice.
        let kind = format!(
            "/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-besteffort.slice/kubelet-kubepods-besteffort-pod{UID_US}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parse(&kind),
            k8s(ID, QosClass::BestEffort, Runtime::Containerd)
        );
    }

    #[test]
    fn conmon_is_not_the_container() {
        let in_pod = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-conmon-{ID}.scope"
        );
        assert_eq!(parse(&in_pod), None);
        assert_eq!(pod_uid_of(&in_pod).as_deref(), Some(UID));
        assert_eq!(
            classify(&in_pod, &[]),
            CgroupClass::Conmon(c(ID, Some(UID), Some(QosClass::Burstable), Runtime::Crio))
        );
        let system = format!("/system.slice/crio-conmon-{ID}.scope");
        assert_eq!(parse(&system), None);
        assert_eq!(
            classify(&system, &[]),
            CgroupClass::Conmon(c(ID, None, None, Runtime::Crio))
        );
        let podman = format!("/machine.slice/libpod-conmon-{ID}.scope");
        assert_eq!(parse(&podman), None);
        assert_eq!(
            classify(&podman, &[]),
            CgroupClass::Conmon(c(ID, None, None, Runtime::Podman))
        );
        // Nothing below a conmon cgroup is a container either.
        assert_eq!(parse(&format!("{system}/crio-{ID2}.scope")), None);
    }

    #[test]
    fn outside_kubernetes() {
        assert_eq!(
            parse(&format!("/docker/{ID}")),
            Some(c(ID, None, None, Runtime::Docker))
        );
        assert_eq!(
            parse(&format!("/system.slice/docker-{ID}.scope")),
            Some(c(ID, None, None, Runtime::Docker))
        );
        assert_eq!(
            parse(&format!("/machine.slice/libpod-{ID}.scope")),
            Some(c(ID, None, None, Runtime::Podman))
        );
        assert_eq!(
            parse(&format!(
                "/user.slice/user-1000.slice/user@1000.service/user.slice/libpod-{ID}.scope"
            )),
            Some(c(ID, None, None, Runtime::Podman))
        );
        assert_eq!(
            parse(&format!("/system.slice/cri-containerd-{ID}.scope")),
            Some(c(ID, None, None, Runtime::Containerd))
        );
        // podman with cgroupfs.
        assert_eq!(
            parse(&format!("/libpod_parent/libpod-{ID}")),
            Some(c(ID, None, None, Runtime::Podman))
        );
    }

    #[test]
    fn plain_containerd_needs_namespaces() {
        let ns = ["default", "k8s.io", "buildkit"];
        assert_eq!(parse("/default/my-job_1.2"), None);
        assert_eq!(
            parse_with_namespaces("/default/my-job_1.2", &ns),
            Some(c("my-job_1.2", None, None, Runtime::Containerd))
        );
        assert_eq!(
            parse_with_namespaces(&format!("/k8s.io/{ID}"), &ns),
            Some(c(ID, None, None, Runtime::Containerd))
        );
        // Nested cgroups stay with the container.
        assert_eq!(
            parse_with_namespaces("/default/web/sub/leaf", &ns),
            Some(c("web", None, None, Runtime::Containerd))
        );
        // The namespace must be the first component; unknown namespaces are host paths.
        assert_eq!(parse_with_namespaces("/x/default/web", &ns), None);
        assert_eq!(parse_with_namespaces("/other/web", &ns), None);
        // The namespace cgroup itself is not a container; invalid containerd ids are rejected.
        assert_eq!(parse_with_namespaces("/default", &ns), None);
        for bad in ["-web", "web-", "we..b", "a\u{e9}", &"a".repeat(77)] {
            assert_eq!(
                parse_with_namespaces(&format!("/default/{bad}"), &ns),
                None,
                "{bad}"
            );
        }
        assert_eq!(
            parse_with_namespaces(&format!("/default/{}", "a".repeat(76)), &ns),
            Some(c(&"a".repeat(76), None, None, Runtime::Containerd))
        );
        // Listing kubepods or docker as a namespace does not change their meaning.
        assert_eq!(
            parse_with_namespaces(
                &format!("/kubepods/besteffort/pod{UID}/{ID}"),
                &["kubepods"]
            ),
            k8s(ID, QosClass::BestEffort, Runtime::Unknown)
        );
        assert_eq!(
            parse_with_namespaces(&format!("/docker/{ID}"), &["docker"]),
            Some(c(ID, None, None, Runtime::Docker))
        );
        assert_eq!(parse_with_namespaces("/docker/web", &["docker"]), None);
    }

    #[test]
    fn nested_cgroups_map_to_the_outer_container() {
        for path in [
            format!("/kubepods/besteffort/pod{UID}/{ID}/init.scope"),
            format!("/kubepods/besteffort/pod{UID}/{ID}/{ID2}"),
            format!("/kubepods/besteffort/pod{UID}/{ID}/docker/{ID2}"),
            format!(
                "/kubepods/besteffort/pod{UID}/{ID}/kubepods/besteffort/pod6f1c2d3e-0000-4c6d-8e9f-0a1b2c3d4e5f/{ID2}"
            ),
        ] {
            assert_eq!(
                parse(&path),
                k8s(ID, QosClass::BestEffort, Runtime::Unknown),
                "{path}"
            );
        }
        let systemd_in_container = format!(
            "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice/cri-containerd-{ID}.scope/system.slice/foo.service"
        );
        assert_eq!(
            parse(&systemd_in_container),
            k8s(ID, QosClass::BestEffort, Runtime::Containerd)
        );
        let crun_leaf = format!(
            "/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID_US}.slice/crio-{ID}.scope/container"
        );
        assert_eq!(
            parse(&crun_leaf),
            k8s(ID, QosClass::Burstable, Runtime::Crio)
        );
        // A kind node seen from the host: the node container wins.
        let kind_from_host = format!(
            "/system.slice/docker-{ID2}.scope/kubelet.slice/kubelet-kubepods.slice/kubelet-kubepods-pod{UID_US}.slice/cri-containerd-{ID}.scope"
        );
        assert_eq!(
            parse(&kind_from_host),
            Some(c(ID2, None, None, Runtime::Docker))
        );
        assert_eq!(pod_uid_of(&kind_from_host), None);
    }

    #[test]
    fn pod_level_cgroups() {
        for (path, qos) in [
            (
                format!("/kubepods/besteffort/pod{UID}"),
                QosClass::BestEffort,
            ),
            (
                format!("/kubepods/burstable/pod{UID}/"),
                QosClass::Burstable,
            ),
            (format!("/kubepods/pod{UID}"), QosClass::Guaranteed),
            (
                format!(
                    "/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID_US}.slice"
                ),
                QosClass::BestEffort,
            ),
            (
                format!("/kubepods.slice/kubepods-pod{UID_US}.slice"),
                QosClass::Guaranteed,
            ),
            (
                format!("/kubepods/besteffort/pod{UID}/not-a-container"),
                QosClass::BestEffort,
            ),
        ] {
            assert_eq!(parse(&path), None, "{path}");
            assert_eq!(pod_uid_of(&path).as_deref(), Some(UID), "{path}");
            assert_eq!(
                classify(&path, &[]),
                CgroupClass::Pod {
                    uid: UID.to_owned(),
                    qos
                },
                "{path}"
            );
        }
        assert_eq!(
            pod_uid_of(&format!("/kubepods/besteffort/pod{UID}/{ID}")).as_deref(),
            Some(UID)
        );
        assert_eq!(pod_uid_of("/kubepods/besteffort"), None);
        assert_eq!(pod_uid_of("/kubepods.slice/kubepods-burstable.slice"), None);
    }

    #[test]
    fn host_paths() {
        for path in [
            "",
            "/",
            "/system.slice/containerd.service",
            "/system.slice/kubelet.service",
            "/user.slice/user-0.slice/session-1.scope",
            "/init.scope",
            "/kubepods",
            "/kubepods/besteffort",
            "/kubepods.slice",
            "/kubepods.slice/kubepods-besteffort.slice",
            "/docker",
            "0::/",
            "/system.slice/docker.service",
        ] {
            assert_eq!(parse(path), None, "{path:?}");
            assert_eq!(pod_uid_of(path), None, "{path:?}");
            assert_eq!(classify(path, &["default"]), CgroupClass::Other, "{path:?}");
        }
    }

    #[test]
    fn rejects_bad_ids_and_shapes() {
        let id63 = &ID[..63];
        let id65 = format!("{ID}0");
        let upper = ID.to_uppercase();
        let non_hex = format!("{}g", &ID[..63]);
        for id in [id63, &id65, &upper, &non_hex] {
            for path in [
                format!("/kubepods/besteffort/pod{UID}/{id}"),
                format!("/docker/{id}"),
                format!("/system.slice/docker-{id}.scope"),
                format!("/kubepods.slice/kubepods-pod{UID_US}.slice/cri-containerd-{id}.scope"),
                format!("/machine.slice/libpod-{id}.scope"),
            ] {
                assert_eq!(parse(&path), None, "{path}");
            }
        }
        // Pod directories need the kubepods context and a well-formed uid.
        for path in [
            format!("/pod{UID}/{ID}"),
            format!("/kubepods/foo/pod{UID}/{ID}"),
            format!("/kubepods/besteffort/pod{}/{ID}", UID.to_uppercase()),
            format!("/kubepods/besteffort/pod{}/{ID}", &UID[..35]),
            format!("/kubepods/besteffort/pod-{UID}/{ID}"),
            format!("/kubepods.slice/kubepods-guaranteed-pod{UID_US}.slice/{ID}"),
            format!("/kubepods.slice/kubepods-besteffort-pod{UID_US}-x.slice/{ID}"),
        ] {
            assert_eq!(parse(&path), None, "{path}");
        }
        // `.` and late `..` never come from the kernel.
        assert_eq!(
            parse(&format!("/kubepods/besteffort/pod{UID}/../{ID}")),
            None
        );
        assert_eq!(
            parse(&format!("/kubepods/./besteffort/pod{UID}/{ID}")),
            None
        );
        assert_eq!(parse(&format!("/docker/../docker/{ID}")), None);
    }

    #[test]
    fn hostile_input_never_panics() {
        let long = format!("/{}", "a/".repeat(200_000));
        assert_eq!(parse(&long), None);
        let long_comp = "x".repeat(1 << 20);
        assert_eq!(parse(&long_comp), None);
        let deep = format!("{}{ID}", "/docker".repeat(50_000));
        assert_eq!(parse(&deep), None);
        let deep_ok = format!("/docker/{ID}{}", "/x".repeat(50_000));
        assert_eq!(parse(&deep_ok), Some(c(ID, None, None, Runtime::Docker)));
        for s in [
            "\0",
            "/\0/\0",
            &format!("/docker/{ID}\0"),
            &format!("/docker/\0{}", &ID[1..]),
            "/kubepods/besteffort/pod\u{1F600}/x",
            "/kubepods.slice/kubepods-pod\u{e9}\u{e9}.slice",
            "/kubepods.slice/-.slice/--.slice/kubepods--.slice",
            "::::",
            "0:",
            "12:memory:",
            "/..",
            "../../..",
            "crio-conmon-.scope",
            "docker-.scope",
            ".scope",
            ".slice",
            "\u{202e}docker/\u{202d}",
            " (deleted)",
        ] {
            let _ = parse(s);
            let _ = pod_uid_of(s);
            let _ = parse_with_namespaces(s, &["", "\0", "docker", "kubepods"]);
        }
        assert_eq!(
            parse(&format!("/docker/{ID}\0")),
            None,
            "a NUL makes the id invalid"
        );
    }

    #[test]
    fn serializes_lowercase() -> Result<(), serde_json::Error> {
        let v = serde_json::to_value(c(ID, Some(UID), Some(QosClass::BestEffort), Runtime::Crio))?;
        assert_eq!(v["runtime"], "crio");
        assert_eq!(v["qos"], "besteffort");
        assert_eq!(v["pod_uid"], UID);
        assert_eq!(serde_json::to_value(Runtime::Containerd)?, "containerd");
        assert_eq!(serde_json::to_value(QosClass::Guaranteed)?, "guaranteed");
        Ok(())
    }
}
