//! The identity of the current task, shared by every record.

use aya_ebpf::helpers::{
    bpf_get_current_comm, bpf_get_current_pid_tgid, bpf_get_current_uid_gid,
    generated::bpf_get_current_cgroup_id,
};
use sensor_common::ProcessIdentity;

use crate::kernel::{config, load, load_ptr, offsets};

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

    // Plain loads through the task's BTF pointer (see `kernel::load`): a fault reads as 0.
    let mut ok = true;
    if let Ok(cred) = load_ptr(task, o.task_cred) {
        p.euid = load(cred, o.cred_euid);
        p.egid = load(cred, o.cred_egid);
        p.cap_effective = load(cred, o.cred_cap_effective);
    } else {
        ok = false;
        p.euid = u32::MAX;
        p.egid = u32::MAX;
        p.cap_effective = 0;
    }
    p.ppid = load_ptr(task, o.task_real_parent).map_or(0, |parent| load(parent, o.task_tgid));
    p.loginuid = load(task, o.task_loginuid);
    p.start_time_ns = start_time_ns(task);
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

/// Inode number of the task's mount namespace.
#[inline(always)]
pub fn mount_ns(task: u64) -> Result<u32, i64> {
    let o = offsets();
    let mnt_ns = load_ptr(load_ptr(task, o.task_nsproxy)?, o.nsproxy_mnt_ns)?;
    Ok(load(mnt_ns, o.mnt_ns_inum))
}

/// Start time of the task's thread group (its leader's), ns since boot; 0 if unreadable.
#[inline(always)]
pub fn start_time_ns(task: u64) -> u64 {
    let o = offsets();
    load_ptr(task, o.task_group_leader).map_or(0, |leader| load(leader, o.task_start_time))
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
    let mut p = load_ptr(task, o.task_cgroups)?;
    for off in [o.css_set_subsys + subsys * 8, o.css_cgroup, o.cgroup_kn] {
        p = load_ptr(p, off)?;
    }
    Ok(load(p, o.kernfs_id))
}
