//! Process exec and exit.
//!
//! `sched_process_exec` fires only after an exec succeeded (execve and execveat alike), in the
//! context of the new image, so argv is read from the new `mm`.

use core::ffi::c_void;

use aya_ebpf::{
    helpers::generated::{bpf_ktime_get_boot_ns, bpf_probe_read_user},
    macros::btf_tracepoint,
    programs::BtfTracePointContext,
};
use aya_log_ebpf::error;
use sensor_common::{
    ARGS_MAX, EXEC_RECORD_SIZE, ExecRecord, ExitRecord, FILENAME_MAX, OVERLAYFS_SUPER_MAGIC,
    RecordHeader, SCRATCH_HALF, counter, exec_flag, kind,
};

use crate::{
    kernel::{config, current_task, load, load_ptr, offsets, path_parts, read, read_ptr, read_str},
    maps::{self, EVENTS, Scratch, count, filter, scratch},
    path::write_path,
    process::{fill_identity, is_host, mount_ns, start_time_ns},
};

#[btf_tracepoint(function = "sched_process_exec")]
pub fn sched_process_exec(ctx: BtfTracePointContext) -> i32 {
    // Arguments: (struct task_struct *p, pid_t old_pid, struct linux_binprm *bprm).
    let bprm: u64 = ctx.arg(2);
    if try_exec(bprm).is_err() {
        error!(&ctx, "exec record could not be built");
    }
    0
}

fn try_exec(bprm: u64) -> Result<(), i64> {
    let Some(s) = scratch() else { return Ok(()) };
    let task = current_task();
    let o = offsets();

    // SAFETY: the buffer is larger than the record and suitably aligned (map values are
    // 8-byte aligned); ExecRecord is plain data.
    let rec = unsafe { &mut *(s.buf.as_mut_ptr() as *mut ExecRecord) };
    let mut flags = 0u32;
    if !fill_identity(&mut rec.process, task, None) {
        flags |= exec_flag::READ_ERROR;
    }
    if is_host(rec.process.mntns) {
        if filter().report_host == 0 {
            count(counter::FILTERED_HOST);
            return Ok(());
        }
        flags |= exec_flag::HOST;
    }

    let mut off = EXEC_RECORD_SIZE;

    // The filename given to exec.
    let filename: u64 = read(bprm, o.bprm_filename).unwrap_or(0);
    // SAFETY: off < SCRATCH_HALF and FILENAME_MAX bytes fit behind it.
    let filename_len =
        unsafe { read_str::<FILENAME_MAX>(s.buf.as_mut_ptr().add(off), filename) }.unwrap_or(0);
    if filename_len == FILENAME_MAX - 1 {
        flags |= exec_flag::FILENAME_TRUNCATED;
    }
    off += filename_len & (FILENAME_MAX - 1);

    // The executed file: its absolute path and what kind of file it is.
    let mut binary_len = 0;
    if let Ok(file) = read_ptr(bprm, o.bprm_file) {
        let f_path = file.wrapping_add(o.file_path as u64);
        binary_len = write_flagged(s, off, f_path, exec_flag::BINARY_TRUNCATED, &mut flags);
        flags |= binary_flags(read(f_path, o.path_dentry).unwrap_or(0));
    } else {
        flags |= exec_flag::READ_ERROR;
    }
    off += binary_len & (SCRATCH_HALF - 1);

    // Working directory.
    let mut cwd_len = 0;
    if let Ok(fs) = read_ptr(task, o.task_fs)
        && off < SCRATCH_HALF
    {
        let pwd = fs.wrapping_add(o.fs_pwd as u64);
        cwd_len = write_flagged(s, off, pwd, exec_flag::CWD_TRUNCATED, &mut flags);
    }
    off += cwd_len & (SCRATCH_HALF - 1);

    // argv, from the new image's stack.
    let mut args_len = 0usize;
    if let Ok(mm) = read_ptr(task, o.task_mm) {
        let start: u64 = read(mm, o.mm_arg_start).unwrap_or(0);
        let end: u64 = read(mm, o.mm_arg_end).unwrap_or(0);
        let mut want = end.saturating_sub(start) as usize;
        let limit = config().args_max as usize;
        let limit = if limit > ARGS_MAX { ARGS_MAX } else { limit };
        if want > limit {
            want = limit;
            flags |= exec_flag::ARGS_TRUNCATED;
        }
        if want > 0 && want <= ARGS_MAX && off < SCRATCH_HALF {
            let pos = off & (SCRATCH_HALF - 1);
            // SAFETY: pos < SCRATCH_HALF and want <= ARGS_MAX <= SCRATCH_HALF, so the write
            // stays in the buffer; the helper checks the user address.
            let ret = unsafe {
                bpf_probe_read_user(
                    s.buf.as_mut_ptr().add(pos).cast::<c_void>(),
                    want as u32,
                    start as *const c_void,
                )
            };
            if ret == 0 {
                args_len = want;
            } else {
                flags |= exec_flag::READ_ERROR;
            }
        }
    }
    off += args_len;

    rec.flags = flags;
    rec._pad = 0;
    rec.filename_len = filename_len as u16;
    rec.binary_len = binary_len as u16;
    rec.cwd_len = cwd_len as u16;
    rec.args_len = args_len as u16;
    rec.header = RecordHeader {
        kind: kind::EXEC,
        _pad: 0,
        size: off as u32,
        // SAFETY: a helper without preconditions.
        ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
    };
    if flags & exec_flag::READ_ERROR != 0 {
        count(counter::READ_ERRORS);
    }
    maps::submit(
        &s.buf,
        off,
        counter::LOST_RINGBUF_EXEC,
        counter::EMITTED_EXEC,
    );
    Ok(())
}

/// Writes the path of the `struct path` at `path` at `off`; sets `truncated` or the read error
/// flag as it goes. Returns the bytes written.
#[inline(always)]
fn write_flagged(s: &mut Scratch, off: usize, path: u64, truncated: u32, flags: &mut u32) -> usize {
    let (mnt, dentry) = path_parts(path).unwrap_or((0, 0));
    match write_path(s, off, mnt, dentry) {
        Ok(w) => {
            if w.truncated {
                *flags |= truncated;
            }
            w.len
        }
        Err(_) => {
            *flags |= exec_flag::READ_ERROR;
            0
        }
    }
}

/// Deleted, memfd and overlay-upper-layer flags of an executed file's dentry.
#[inline(always)]
fn binary_flags(dentry: u64) -> u32 {
    let o = offsets();
    let mut flags = 0;
    let Ok(inode) = read_ptr(dentry, o.dentry_inode) else {
        return 0;
    };
    if read::<u32>(inode, o.inode_nlink) == Ok(0) {
        flags |= exec_flag::DELETED;
    }
    if let Ok(name) = read::<u64>(dentry, o.dentry_name_ptr)
        && read::<[u8; 6]>(name, 0) == Ok(*b"memfd:")
    {
        flags |= exec_flag::MEMFD;
    }
    // An overlayfs inode whose upper dentry is set lives in (or was copied up to) the
    // container's writable layer.
    if o.ovl_upperdentry != 0
        && let Ok(sb) = read_ptr(inode, o.inode_sb)
        && read::<u64>(sb, o.sb_magic) == Ok(OVERLAYFS_SUPER_MAGIC)
        && let Ok(upper) = read::<u64>(
            inode.wrapping_sub(o.ovl_vfs_inode as u64),
            o.ovl_upperdentry,
        )
        && upper != 0
    {
        flags |= exec_flag::UPPER_LAYER;
    }
    flags
}

#[btf_tracepoint(function = "sched_process_exit")]
pub fn sched_process_exit(_ctx: BtfTracePointContext) -> i32 {
    let _ = try_exit();
    0
}

fn try_exit() -> Result<(), i64> {
    let task = current_task();
    let o = offsets();
    // Only the last thread of a group ends the process.
    let live: i32 = load(load_ptr(task, o.task_signal)?, o.signal_live);
    if live != 0 {
        return Ok(());
    }
    if let Ok(mntns) = mount_ns(task)
        && is_host(mntns)
        && filter().report_host == 0
    {
        count(counter::FILTERED_HOST);
        return Ok(());
    }
    let Some(mut entry) = EVENTS.reserve::<ExitRecord>(0) else {
        count(counter::LOST_RINGBUF_EXIT);
        return Ok(());
    };
    let pid_tgid = aya_ebpf::helpers::bpf_get_current_pid_tgid();
    entry.write(ExitRecord {
        header: RecordHeader {
            kind: kind::EXIT,
            _pad: 0,
            size: size_of::<ExitRecord>() as u32,
            // SAFETY: a helper without preconditions.
            ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
        },
        pid: pid_tgid as u32,
        tgid: (pid_tgid >> 32) as u32,
        exit_code: load(task, o.task_exit_code),
        _pad: 0,
        start_time_ns: start_time_ns(task),
    });
    entry.submit(maps::wakeup_flags(size_of::<ExitRecord>()));
    count(counter::EMITTED_EXIT);
    Ok(())
}
