//! Kernel structure offsets for the eBPF programs, resolved from the running kernel's BTF.
//!
//! The eBPF programs read kernel structures at the byte offsets of
//! [`sensor_common::KernelOffsets`], which userspace fills in before loading them. Every field
//! is described once in the [`FIELDS`] table: the `struct.member.path` candidates to try, in
//! order (newer kernels first), and what the eBPF side assumes about the member (its size, or
//! that it is a pointer). Kernel-version differences are handled by adding a candidate to the
//! table, never by code.

use std::io::ErrorKind;
use std::path::Path;

use sensor_common::KernelOffsets;

use crate::btf::{Btf, BtfError, Kind};

/// Why the offsets could not be resolved.
#[derive(Debug, thiserror::Error)]
pub enum OffsetsError {
    /// None of the candidates for a field exists; `source` is the error of the first one.
    #[error("kernel BTF lacks {what}: {source}")]
    Missing {
        /// The candidates tried and the [`KernelOffsets`] field they are for.
        what: String,
        /// Why the first candidate was not found.
        #[source]
        source: BtfError,
    },
    /// A member exists but does not have the size the eBPF programs read.
    #[error("kernel BTF: {what} is {actual} bytes, the eBPF programs read {expected}")]
    BadSize {
        /// The member and the [`KernelOffsets`] field it is for.
        what: String,
        /// Its size in this kernel.
        actual: u32,
        /// The size the eBPF programs assume.
        expected: u32,
    },
    /// A member the eBPF programs dereference is not a pointer.
    #[error("kernel BTF: {what} is not a pointer but a {kind:?}")]
    NotPointer {
        /// The member and the [`KernelOffsets`] field it is for.
        what: String,
        /// What it is instead.
        kind: Kind,
    },
    /// The requested cgroup v1 subsystem is not in `enum cgroup_subsys_id`.
    #[error(
        "kernel BTF lacks cgroup subsystem `{subsys}` (enum cgroup_subsys_id value `{variant}`): {source}"
    )]
    CgroupSubsys {
        /// The subsystem asked for.
        subsys: String,
        /// The enumerator looked up.
        variant: String,
        /// The lookup error.
        #[source]
        source: BtfError,
    },
    /// The subsystem's index is not a valid index of `css_set.subsys`.
    #[error("cgroup subsystem `{subsys}` has index {value}, outside 0..{count}")]
    CgroupSubsysRange {
        /// The subsystem asked for.
        subsys: String,
        /// Its `cgroup_subsys_id` value.
        value: i64,
        /// `CGROUP_SUBSYS_COUNT` (or the largest index allowed).
        count: i64,
    },
}

impl OffsetsError {
    /// Whether the error only says that a type or member does not exist.
    fn is_absence(&self) -> bool {
        matches!(
            self,
            OffsetsError::Missing {
                source: BtfError::NoSuchType(_) | BtfError::NoSuchMember { .. },
                ..
            }
        )
    }
}

/// What the eBPF programs assume about a member.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Shape {
    /// Only its offset is used (embedded structures, arrays).
    Any,
    /// It is read as this many bytes.
    Bytes(u32),
    /// It is a pointer that is followed.
    Pointer,
}

use Shape::{Any, Bytes, Pointer};

/// Whether a field must be found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Need {
    Required,
    /// Part of an optional feature: if any field of the group is absent from the BTF, every
    /// field of the group is set to 0 (the eBPF side reads 0 as "unknown").
    Optional(&'static str),
}

/// One [`KernelOffsets`] field and where to find it.
struct FieldSpec {
    /// Name of the [`KernelOffsets`] field.
    field: &'static str,
    /// `struct.member[.member...]` candidates, tried in order.
    candidates: &'static [&'static str],
    shape: Shape,
    need: Need,
    set: fn(&mut KernelOffsets, u32),
}

/// `field!(name, shape, ["struct.member", "fallback_struct.member"] [, optional "group"])`
macro_rules! field {
    ($name:ident, $shape:expr, [$($cand:literal),+ $(,)?] $(, optional $group:literal)?) => {
        FieldSpec {
            field: stringify!($name),
            candidates: &[$($cand),+],
            shape: $shape,
            need: field!(@need $($group)?),
            set: |offsets, value| offsets.$name = value,
        }
    };
    (@need) => { Need::Required };
    (@need $group:literal) => { Need::Optional($group) };
}

/// Every offset field of [`KernelOffsets`] (all but `cgroup_v1_subsys`).
const FIELDS: &[FieldSpec] = &[
    field!(task_pid, Bytes(4), ["task_struct.pid"]),
    field!(task_tgid, Bytes(4), ["task_struct.tgid"]),
    field!(task_real_parent, Pointer, ["task_struct.real_parent"]),
    field!(task_group_leader, Pointer, ["task_struct.group_leader"]),
    field!(task_cred, Pointer, ["task_struct.cred"]),
    // kuid_t: the eBPF side reads its 4-byte value.
    field!(task_loginuid, Bytes(4), ["task_struct.loginuid"]),
    field!(task_nsproxy, Pointer, ["task_struct.nsproxy"]),
    field!(task_fs, Pointer, ["task_struct.fs"]),
    field!(task_mm, Pointer, ["task_struct.mm"]),
    field!(task_cgroups, Pointer, ["task_struct.cgroups"]),
    field!(task_signal, Pointer, ["task_struct.signal"]),
    field!(task_exit_code, Bytes(4), ["task_struct.exit_code"]),
    // Boot-based (counts suspend), like bpf_ktime_get_boot_ns and /proc's starttime.
    field!(
        task_start_time,
        Bytes(8),
        ["task_struct.start_boottime", "task_struct.real_start_time"]
    ),
    field!(task_files, Pointer, ["task_struct.files"]),
    field!(files_fdt, Pointer, ["files_struct.fdt"]),
    field!(fdtable_fd, Pointer, ["fdtable.fd"]),
    field!(fdtable_max_fds, Bytes(4), ["fdtable.max_fds"]),
    field!(fs_root, Any, ["fs_struct.root"]),
    field!(cred_uid, Bytes(4), ["cred.uid"]),
    field!(cred_gid, Bytes(4), ["cred.gid"]),
    field!(cred_euid, Bytes(4), ["cred.euid"]),
    field!(cred_egid, Bytes(4), ["cred.egid"]),
    // kernel_cap_t: { u64 val } since 6.3, { u32 cap[2] } before; 8 bytes either way.
    field!(cred_cap_effective, Bytes(8), ["cred.cap_effective"]),
    field!(nsproxy_mnt_ns, Pointer, ["nsproxy.mnt_ns"]),
    field!(mnt_ns_inum, Bytes(4), ["mnt_namespace.ns.inum"]),
    field!(fs_pwd, Any, ["fs_struct.pwd"]),
    field!(path_mnt, Pointer, ["path.mnt"]),
    field!(path_dentry, Pointer, ["path.dentry"]),
    field!(dentry_parent, Pointer, ["dentry.d_parent"]),
    // d_name sits in an anonymous union with __d_name since 6.14; qstr.len in an anonymous
    // struct inside an anonymous union. Both are found transparently.
    field!(dentry_name_ptr, Pointer, ["dentry.d_name.name"]),
    field!(dentry_name_len, Bytes(4), ["dentry.d_name.len"]),
    field!(dentry_inode, Pointer, ["dentry.d_inode"]),
    field!(inode_mode, Bytes(2), ["inode.i_mode"]),
    field!(inode_nlink, Bytes(4), ["inode.__i_nlink", "inode.i_nlink"]),
    field!(inode_sb, Pointer, ["inode.i_sb"]),
    field!(sb_magic, Bytes(8), ["super_block.s_magic"]),
    field!(vfsmount_root, Pointer, ["vfsmount.mnt_root"]),
    // The vfsmount embedded in struct mount.
    field!(mount_mnt, Any, ["mount.mnt"]),
    field!(mount_parent, Pointer, ["mount.mnt_parent"]),
    field!(mount_mountpoint, Pointer, ["mount.mnt_mountpoint"]),
    field!(mm_arg_start, Bytes(8), ["mm_struct.arg_start"]),
    field!(mm_arg_end, Bytes(8), ["mm_struct.arg_end"]),
    field!(bprm_file, Pointer, ["linux_binprm.file"]),
    field!(bprm_filename, Pointer, ["linux_binprm.filename"]),
    field!(file_path, Any, ["file.f_path"]),
    field!(file_mode, Bytes(4), ["file.f_mode"]),
    // atomic_t: its counter is at +0.
    field!(signal_live, Bytes(4), ["signal_struct.live"]),
    field!(css_set_subsys, Any, ["css_set.subsys"]),
    field!(css_cgroup, Pointer, ["cgroup_subsys_state.cgroup"]),
    field!(cgroup_kn, Pointer, ["cgroup.kn"]),
    field!(kernfs_id, Bytes(8), ["kernfs_node.id"]),
    // overlayfs may be a module without BTF: then both are 0 ("unknown upper layer").
    field!(ovl_vfs_inode, Any, ["ovl_inode.vfs_inode"], optional "overlayfs"),
    field!(ovl_upperdentry, Pointer, ["ovl_inode.__upperdentry"], optional "overlayfs"),
    // Where short names live inside the dentry: the path walk takes them from its one read of
    // the dentry instead of reading the name separately. 0 (absent) keeps the second read.
    field!(
        dentry_inline_name,
        Any,
        ["dentry.d_shortname", "dentry.d_iname"],
        optional "inline names"
    ),
];

/// Split BTF of the overlayfs module, present when overlayfs is a loaded module.
pub const OVERLAY_MODULE_BTF: &str = "/sys/kernel/btf/overlay";

/// Loads the running kernel's BTF: [`Btf::VMLINUX`], plus the overlayfs module's split BTF
/// ([`OVERLAY_MODULE_BTF`]) when overlayfs is a loaded module, so that [`resolve`] finds
/// `struct ovl_inode` in both cases.
pub fn load_kernel_btf() -> Result<Btf, BtfError> {
    let vmlinux = Btf::from_file(Path::new(Btf::VMLINUX))?;
    if vmlinux.has_type("ovl_inode") {
        return Ok(vmlinux);
    }
    match Btf::from_split_file(&vmlinux, Path::new(OVERLAY_MODULE_BTF)) {
        Ok(merged) => Ok(merged),
        Err(BtfError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => Ok(vmlinux),
        Err(e) => Err(e),
    }
}

/// Resolves every [`KernelOffsets`] field from `btf`.
///
/// `cgroup_v1_subsys` names the cgroup v1 subsystem whose hierarchy the eBPF programs report
/// (e.g. `"memory"`; `"memory_cgrp_id"` is accepted too): its index in `css_set.subsys`, i.e.
/// the value of `enum cgroup_subsys_id` variant `<name>_cgrp_id`, goes into
/// `cgroup_v1_subsys`. `None` gives `u32::MAX` (no v1 hierarchy).
///
/// Fails if a required member is missing or does not have the size (or pointer-ness) the eBPF
/// programs assume. The overlayfs fields are optional: when `struct ovl_inode` is absent both
/// are 0.
pub fn resolve(btf: &Btf, cgroup_v1_subsys: Option<&str>) -> Result<KernelOffsets, OffsetsError> {
    let mut offsets = KernelOffsets::default();
    let mut absent_groups: Vec<&str> = Vec::new();
    for spec in FIELDS {
        match (lookup(btf, spec), spec.need) {
            (Ok(offset), _) => (spec.set)(&mut offsets, offset),
            (Err(e), Need::Optional(group)) if e.is_absence() => absent_groups.push(group),
            (Err(e), _) => return Err(e),
        }
    }
    for spec in FIELDS {
        if let Need::Optional(group) = spec.need
            && absent_groups.contains(&group)
        {
            (spec.set)(&mut offsets, 0);
        }
    }
    offsets.cgroup_v1_subsys = match cgroup_v1_subsys {
        Some(name) => cgroup_subsys_index(btf, name)?,
        None => u32::MAX,
    };
    Ok(offsets)
}

/// Splits `"struct.member.member"` into the struct name and the member path.
fn split_candidate(candidate: &str) -> (&str, Vec<&str>) {
    let mut parts = candidate.split('.');
    let ty = parts.next().unwrap_or_default();
    (ty, parts.collect())
}

/// The offset of the first candidate of `spec` that exists, after checking its shape.
fn lookup(btf: &Btf, spec: &FieldSpec) -> Result<u32, OffsetsError> {
    let mut first_err = None;
    for &candidate in spec.candidates {
        let (ty, path) = split_candidate(candidate);
        let member = match btf.member(ty, &path) {
            Ok(member) => member,
            Err(e) => {
                first_err.get_or_insert(e);
                continue;
            }
        };
        let what = || format!("{candidate} (for KernelOffsets::{})", spec.field);
        match spec.shape {
            Bytes(expected) if member.size != expected => {
                return Err(OffsetsError::BadSize {
                    what: what(),
                    actual: member.size,
                    expected,
                });
            }
            Pointer if member.kind != Kind::Ptr => {
                return Err(OffsetsError::NotPointer {
                    what: what(),
                    kind: member.kind,
                });
            }
            _ => return Ok(member.offset),
        }
    }
    Err(OffsetsError::Missing {
        what: format!(
            "{} (for KernelOffsets::{})",
            spec.candidates.join(" or "),
            spec.field
        ),
        source: first_err.unwrap_or_else(|| BtfError::Malformed("no candidates".to_owned())),
    })
}

/// Index of a cgroup subsystem in `css_set.subsys`.
fn cgroup_subsys_index(btf: &Btf, name: &str) -> Result<u32, OffsetsError> {
    const ENUM: &str = "cgroup_subsys_id";
    let subsys = name.strip_suffix("_cgrp_id").unwrap_or(name);
    let variant = format!("{subsys}_cgrp_id");
    let value = btf
        .enum_value(ENUM, &variant)
        .map_err(|source| OffsetsError::CgroupSubsys {
            subsys: subsys.to_owned(),
            variant: variant.clone(),
            source,
        })?;
    let count = btf
        .enum_value(ENUM, "CGROUP_SUBSYS_COUNT")
        .unwrap_or(i64::from(u32::MAX));
    match u32::try_from(value) {
        Ok(index) if value < count => Ok(index),
        _ => Err(OffsetsError::CgroupSubsysRange {
            subsys: subsys.to_owned(),
            value,
            count,
        }),
    }
}

#[cfg(test)]
mod tests {
    use std::collections::{BTreeMap, HashSet};

    use super::*;
    use crate::btf::testing::{BtfBuilder, UNION};

    #[test]
    fn table_is_consistent() {
        let mut seen = HashSet::new();
        for spec in FIELDS {
            assert!(seen.insert(spec.field), "{} twice", spec.field);
            assert!(!spec.candidates.is_empty());
            for c in spec.candidates {
                let (ty, path) = split_candidate(c);
                assert!(
                    !ty.is_empty() && !path.is_empty() && path.iter().all(|p| !p.is_empty()),
                    "{c}"
                );
            }
        }
        // Every u32 field but cgroup_v1_subsys: a field added to KernelOffsets needs an entry.
        assert_eq!(FIELDS.len(), std::mem::size_of::<KernelOffsets>() / 4 - 1);
        // Each setter writes its own field.
        let mut offsets = KernelOffsets::default();
        for (i, spec) in FIELDS.iter().enumerate() {
            (spec.set)(&mut offsets, i as u32 + 1);
        }
        assert_eq!(offsets.task_pid, 1);
        assert_eq!(
            offsets.ovl_upperdentry,
            1 + FIELDS
                .iter()
                .position(|s| s.field == "ovl_upperdentry")
                .unwrap() as u32
        );
        assert_eq!(
            offsets.inode_nlink,
            1 + FIELDS
                .iter()
                .position(|s| s.field == "inode_nlink")
                .unwrap() as u32
        );
    }

    /// A member tree of one fake struct.
    #[derive(Default)]
    struct Node {
        children: BTreeMap<String, Node>,
        shape: Option<Shape>,
    }

    /// Emits a struct for `node` (members laid out in name order, 8-byte slots, starting at
    /// 8 so that no offset is 0); returns its id and size.
    fn emit(b: &mut BtfBuilder, name: &str, node: &Node, anonymous_wrap: bool) -> (u32, u32) {
        let mut members = Vec::new();
        let mut offset = 8;
        for (member, child) in &node.children {
            let (ty, size) = if child.children.is_empty() {
                match child.shape.unwrap_or(Shape::Any) {
                    Shape::Any => (b.int("long long unsigned int", 8), 8),
                    Shape::Bytes(n) => (b.int("unsigned int", n), n),
                    Shape::Pointer => {
                        let target = b.int("char", 1);
                        (b.ptr(target), 8)
                    }
                }
            } else {
                emit(b, &format!("{name}__{member}"), child, false)
            };
            members.push((member.clone(), ty, offset * 8));
            offset += size.div_ceil(8) * 8;
        }
        let refs: Vec<(&str, u32, u32)> = members
            .iter()
            .map(|(m, t, o)| (m.as_str(), *t, *o))
            .collect();
        if anonymous_wrap {
            // Put every member inside an anonymous union inside the named struct.
            let inner = b.composite(UNION, "", offset, &refs);
            (b.struct_(name, offset + 8, &[("", inner, 64)]), offset + 8)
        } else {
            (b.struct_(name, offset, &refs), offset)
        }
    }

    /// A fake kernel made from the table: `pick` says which candidates of each field exist,
    /// `shape` what each looks like.
    fn fake_kernel(
        pick: &dyn Fn(&FieldSpec) -> Vec<usize>,
        shape: &dyn Fn(&FieldSpec) -> Shape,
    ) -> Btf {
        let mut roots: BTreeMap<String, Node> = BTreeMap::new();
        for spec in FIELDS {
            for i in pick(spec) {
                let (ty, path) = split_candidate(spec.candidates[i]);
                let mut node = roots.entry(ty.to_owned()).or_default();
                for p in path {
                    node = node.children.entry(p.to_owned()).or_default();
                }
                node.shape = Some(shape(spec));
            }
        }
        let mut b = BtfBuilder::new();
        for (name, node) in &roots {
            emit(&mut b, name, node, name == "inode");
        }
        b.enum_(
            "cgroup_subsys_id",
            false,
            &[
                ("cpuset_cgrp_id", 0),
                ("memory_cgrp_id", 4),
                ("CGROUP_SUBSYS_COUNT", 5),
                ("bogus_cgrp_id", 7),
            ],
        );
        Btf::from_bytes(b.build()).unwrap()
    }

    fn first(_: &FieldSpec) -> Vec<usize> {
        vec![0]
    }

    fn natural(spec: &FieldSpec) -> Shape {
        spec.shape
    }

    #[test]
    fn fake_kernel_resolves() {
        let btf = fake_kernel(&first, &natural);
        let offsets = resolve(&btf, Some("memory")).unwrap();
        assert_eq!(
            offsets.inode_nlink,
            btf.member_offset("inode", &["__i_nlink"]).unwrap()
        );
        assert_eq!(
            offsets.dentry_name_len,
            btf.member_offset("dentry", &["d_name", "len"]).unwrap()
        );
        assert_eq!(
            offsets.ovl_upperdentry,
            btf.member_offset("ovl_inode", &["__upperdentry"]).unwrap()
        );
        assert!(offsets.ovl_upperdentry > 0 && offsets.ovl_vfs_inode > 0);
        assert_eq!(offsets.cgroup_v1_subsys, 4);
        assert_eq!(
            resolve(&btf, Some("memory_cgrp_id"))
                .unwrap()
                .cgroup_v1_subsys,
            4
        );
        assert_eq!(resolve(&btf, None).unwrap().cgroup_v1_subsys, u32::MAX);
    }

    #[test]
    fn fallback_candidates_are_used() {
        // Only the old name `i_nlink` exists.
        let last = |spec: &FieldSpec| vec![spec.candidates.len() - 1];
        let btf = fake_kernel(&last, &natural);
        assert!(btf.member_offset("inode", &["__i_nlink"]).is_err());
        let fallback = btf.member_offset("inode", &["i_nlink"]).unwrap();
        assert_eq!(resolve(&btf, None).unwrap().inode_nlink, fallback);

        // Both exist: the first candidate wins.
        let all = |spec: &FieldSpec| (0..spec.candidates.len()).collect();
        let btf = fake_kernel(&all, &natural);
        let preferred = btf.member_offset("inode", &["__i_nlink"]).unwrap();
        assert_ne!(preferred, btf.member_offset("inode", &["i_nlink"]).unwrap());
        assert_eq!(resolve(&btf, None).unwrap().inode_nlink, preferred);

        // Neither: the error names both.
        let none_for_nlink = |spec: &FieldSpec| {
            if spec.field == "inode_nlink" {
                vec![]
            } else {
                vec![0]
            }
        };
        let err = resolve(&fake_kernel(&none_for_nlink, &natural), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel BTF lacks inode.__i_nlink or inode.i_nlink (for KernelOffsets::inode_nlink): \
             `inode` has no member `__i_nlink`"
        );
    }

    #[test]
    fn missing_struct_is_named() {
        let no_signal = |spec: &FieldSpec| {
            if spec.candidates[0].starts_with("signal_struct.") {
                vec![]
            } else {
                vec![0]
            }
        };
        let err = resolve(&fake_kernel(&no_signal, &natural), None).unwrap_err();
        assert!(
            matches!(&err, OffsetsError::Missing { source: BtfError::NoSuchType(t), .. } if t == "signal_struct")
        );
        assert_eq!(
            err.to_string(),
            "kernel BTF lacks signal_struct.live (for KernelOffsets::signal_live): \
             BTF has no type named `signal_struct`"
        );
    }

    #[test]
    fn overlayfs_is_optional() {
        for absent in [
            &["ovl_vfs_inode", "ovl_upperdentry"][..],
            &["ovl_upperdentry"],
            &["ovl_vfs_inode"],
        ] {
            let pick = |spec: &FieldSpec| {
                if absent.contains(&spec.field) {
                    vec![]
                } else {
                    vec![0]
                }
            };
            let offsets = resolve(&fake_kernel(&pick, &natural), None).unwrap();
            assert_eq!(
                (offsets.ovl_vfs_inode, offsets.ovl_upperdentry),
                (0, 0),
                "{absent:?}"
            );
            assert!(offsets.task_tgid > 0);
        }
        // Present but not a pointer: the kernel changed, say so.
        let shape = |spec: &FieldSpec| {
            if spec.field == "ovl_upperdentry" {
                Shape::Any
            } else {
                spec.shape
            }
        };
        let err = resolve(&fake_kernel(&first, &shape), None).unwrap_err();
        assert!(matches!(err, OffsetsError::NotPointer { .. }), "{err}");
    }

    #[test]
    fn shapes_are_checked() {
        let wide_tgid = |spec: &FieldSpec| {
            if spec.field == "task_tgid" {
                Shape::Bytes(8)
            } else {
                spec.shape
            }
        };
        let err = resolve(&fake_kernel(&first, &wide_tgid), None).unwrap_err();
        assert_eq!(
            err.to_string(),
            "kernel BTF: task_struct.tgid (for KernelOffsets::task_tgid) is 8 bytes, the eBPF programs read 4"
        );
        let flat_cred = |spec: &FieldSpec| {
            if spec.field == "task_cred" {
                Shape::Any
            } else {
                spec.shape
            }
        };
        let err = resolve(&fake_kernel(&first, &flat_cred), None).unwrap_err();
        assert!(
            matches!(
                err,
                OffsetsError::NotPointer {
                    kind: Kind::Int,
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains("task_struct.cred"), "{err}");
    }

    #[test]
    fn cgroup_subsystem_errors() {
        let btf = fake_kernel(&first, &natural);
        let err = resolve(&btf, Some("nope")).unwrap_err();
        assert!(
            matches!(&err, OffsetsError::CgroupSubsys { variant, .. } if variant == "nope_cgrp_id"),
            "{err}"
        );
        let err = resolve(&btf, Some("bogus")).unwrap_err();
        assert!(
            matches!(
                err,
                OffsetsError::CgroupSubsysRange {
                    value: 7,
                    count: 5,
                    ..
                }
            ),
            "{err}"
        );
    }

    #[test]
    fn real_kernel() {
        if !crate::btf::testing::have_vmlinux("real_kernel") {
            return;
        }
        let btf = load_kernel_btf().unwrap();
        let o = resolve(&btf, Some("memory")).unwrap();
        eprintln!("{o:#?}");
        assert_eq!(o.task_tgid, o.task_pid + 4);
        assert_eq!(o.cred_gid, o.cred_uid + 4);
        assert!(o.cred_uid < o.cred_euid && o.cred_euid < o.cred_egid);
        assert!(o.cred_egid < o.cred_cap_effective);
        assert!(
            o.dentry_name_len < o.dentry_name_ptr && o.dentry_name_ptr - o.dentry_name_len <= 8
        );
        assert!(o.dentry_parent < o.dentry_name_len && o.dentry_name_ptr < o.dentry_inode);
        assert_eq!((o.path_mnt, o.path_dentry), (0, 8));
        assert_eq!(o.mm_arg_end, o.mm_arg_start + 8);
        assert_eq!(o.css_set_subsys, 0);
        assert!(o.mount_mnt > 0 && o.mount_parent > 0 && o.mount_mountpoint > 0);
        assert!(o.inode_nlink > o.inode_mode && o.inode_sb > 0);
        for (name, value) in [
            ("task_real_parent", o.task_real_parent),
            ("task_cred", o.task_cred),
            ("task_loginuid", o.task_loginuid),
            ("task_start_time", o.task_start_time),
            ("task_signal", o.task_signal),
            ("task_cgroups", o.task_cgroups),
            ("sb_magic", o.sb_magic),
            ("bprm_file", o.bprm_file),
            ("bprm_filename", o.bprm_filename),
            ("file_path", o.file_path),
            ("signal_live", o.signal_live),
            ("kernfs_id", o.kernfs_id),
            ("mm_arg_start", o.mm_arg_start),
        ] {
            assert!(value > 0 && value < 16384, "{name} = {value}");
        }
        let memory = btf
            .enum_value("cgroup_subsys_id", "memory_cgrp_id")
            .unwrap();
        assert_eq!(i64::from(o.cgroup_v1_subsys), memory);
        if btf.has_type("ovl_inode") {
            assert!(o.ovl_upperdentry > o.ovl_vfs_inode && o.ovl_vfs_inode > 0);
        } else {
            assert_eq!((o.ovl_vfs_inode, o.ovl_upperdentry), (0, 0));
        }
        assert!(o.fdtable_fd > 0 && o.task_files > 0);
        // The walk's one read of a dentry (80 bytes from d_parent) covers short names.
        assert!(o.dentry_inline_name > o.dentry_inode);
        assert!(o.dentry_inline_name + 32 <= o.dentry_parent + 80);
    }
}
