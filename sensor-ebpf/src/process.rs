//! The identity of the current task, shared by every record.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::bpf_get_current_cgroup_id,
};
use sensor_common::{KernelOffsets, ProcessIdentity};

use crate::kernel::{config, offsets, read, read_ptr};

/// Fills `p` for `task` (the current task); `mntns` is its mount namespace when the caller
/// already read it. Returns false when some field could not be read (the record is still
/// sent, flagged).
#[inline(always)]
pub fn fill_identity(p: &mut ProcessIdentity, task: u64, mntns: Option<u32>) -> bool {
    let o = offsets();
    let pid_tgid = bpf_get_current_pid_tgid();
    p.pid = pid_tgid as u32;
    p.tgid = (pid_tgid >> 32) as u32;
    let uid_gid = bpf_get_current_uid_gid();
    p.uid = uid_gid as u32;
    p.gid = (uid_gid >> 32) as u32;
    // SAFETY: a helper without preconditions.
    p.cgroup_id = unsafe { bpf_get_current_cgroup_id() };
    p.comm = bpf_get_current_comm().unwrap_or([0; 16]);
    p._pad = 0;

    let mut ok = true;
    match read_ptr(task, o.task_cred).and_then(|cred| cred_ids(cred, o)) {
        Ok((euid, egid, cap_effective)) => {
            p.euid = euid;
            p.egid = egid;
            p.cap_effective = cap_effective;
        }
        Err(_) => {
            ok = false;
            p.euid = u32::MAX;
            p.egid = u32::MAX;
            p.cap_effective = 0;
        }
    }
    p.ppid = match read_ptr(task, o.task_real_parent) {
        Ok(parent) => read(parent, o.task_tgid).unwrap_or(0),
        Err(_) => 0,
    };
    p.loginuid = read(task, o.task_loginuid).unwrap_or(u32::MAX);
    p.start_time_ns = match read_ptr(task, o.task_group_leader) {
        Ok(leader) => read(leader, o.task_start_time).unwrap_or(0),
        Err(_) => 0,
    };
    p.mntns = match mntns {
        Some(ns) => ns,
        None => mount_ns(task).unwrap_or(0),
    };
    p.cgroup_v1_id = cgroup_v1_id(task).unwrap_or(0);
    if p.mntns == 0 {
        ok = false;
    }
    ok
}

/// 32-bit words of `struct cred` read at once from `euid`: `euid`, `egid`, ... `cap_effective`
/// (40 bytes apart in current kernels); field by field when they lie further apart.
const CRED_WORDS: usize = 16;

/// (euid, egid, cap_effective) of the `struct cred` at `cred`.
#[inline(always)]
fn cred_ids(cred: u64, o: &KernelOffsets) -> Result<(u32, u32, u64), i64> {
    let egid_at = o.cred_egid.wrapping_sub(o.cred_euid) as usize;
    let cap_at = o.cred_cap_effective.wrapping_sub(o.cred_euid) as usize;
    if egid_at.is_multiple_of(4) && cap_at.is_multiple_of(4) && cap_at / 4 + 2 <= CRED_WORDS {
        let w = read::<[u32; CRED_WORDS]>(cred, o.cred_euid)?;
        let word = |i: usize| w[i & (CRED_WORDS - 1)];
        let cap = word(cap_at / 4) as u64 | (word(cap_at / 4 + 1) as u64) << 32;
        return Ok((w[0], word(egid_at / 4), cap));
    }
    Ok((
        read(cred, o.cred_euid)?,
        read(cred, o.cred_egid)?,
        read(cred, o.cred_cap_effective)?,
    ))
}

/// Inode number of the task's mount namespace.
#[inline(always)]
pub fn mount_ns(task: u64) -> Result<u32, i64> {
    let o = offsets();
    let nsproxy = read_ptr(task, o.task_nsproxy)?;
    let mnt_ns = read_ptr(nsproxy, o.nsproxy_mnt_ns)?;
    read(mnt_ns, o.mnt_ns_inum)
}

/// Whether the task is a host process (in the host's mount namespace).
#[inline(always)]
pub fn is_host(mntns: u32) -> bool {
    mntns != 0 && mntns == config().host_mntns
}

/// kernfs id of the task's cgroup in the chosen v1 hierarchy.
#[inline(always)]
fn cgroup_v1_id(task: u64) -> Result<u64, i64> {
    let o = offsets();
    let subsys = o.cgroup_v1_subsys;
    if subsys >= 16 {
        return Ok(0);
    }
    let cset = read_ptr(task, o.task_cgroups)?;
    let css = read_ptr(cset, o.css_set_subsys + subsys * 8)?;
    let cgroup = read_ptr(css, o.css_cgroup)?;
    let kn = read_ptr(cgroup, o.cgroup_kn)?;
    read(kn, o.kernfs_id)
}
