//! File creation: opens that really created a file (`FMODE_CREATED`), mknod, link, symlink,
//! rename, and chmod that sets an execute bit.
//!
//! These programs sit on the syscall tracepoints (`syscalls/sys_enter_*`, `sys_exit_*`), which
//! every kernel with BTF has and which fire only for the syscalls they name: other syscalls
//! pay nothing. (fentry and BPF LSM hooks would see the kernel's own view, but they are not
//! available everywhere — this development host refuses them.)
//!
//! - Opens are judged at the syscall's exit: the returned descriptor's `struct file` carries
//!   `FMODE_CREATED` if and only if this open created the file. An open that fails or creates
//!   nothing returns after a few reads; its path is that of the opened file itself.
//! - The other operations are remembered at the syscall's entry (their arguments, in
//!   `PENDING`) and reported at its exit if it returned 0. Their path is the directory the
//!   syscall resolved against, joined with the name as given.

use aya_ebpf::{
    EbpfContext as _,
    helpers::{bpf_get_current_pid_tgid, generated::bpf_ktime_get_boot_ns},
    macros::tracepoint,
    maps::lpm_trie::Key,
    programs::TracePointContext,
};
use sensor_common::{
    FILE_RECORD_SIZE, FMODE_CREATED, FileRecord, PATH_FILTER_KEY_LEN, PATH_MAX, RecordHeader,
    SCRATCH_HALF, counter, file_flag, file_op, kind, path_action,
};

use crate::{
    kernel::{
        AT_FDCWD, current_task, fd_file, file_head, offsets, path_parts, read, read_ptr,
        read_user_str,
    },
    maps::{self, PATH_FILTER, PENDING, PendingCall, Scratch, count, filter, scratch},
    path::{leaf_inode, write_at_path, write_path},
    process::{fill_identity, is_host, mount_ns},
};

const S_IXUGO: u32 = 0o111;
const S_IFLNK: u32 = 0o120000;

/// Offset of the syscall's n-th argument in a `sys_enter_*` record; of `ret` in `sys_exit_*`.
const fn arg_offset(n: usize) -> usize {
    16 + 8 * n
}
const RET_OFFSET: usize = 16;

/// The 8-byte field at `off` of the tracepoint's record: a plain load from the context, which
/// the verifier allows for tracepoint programs at aligned constant offsets (no helper call, as
/// `TracePointContext::read_at` would make).
#[inline(always)]
fn record_u64(ctx: &TracePointContext, off: usize) -> u64 {
    // SAFETY: `off` is a constant multiple of 8 inside the syscall tracepoint's record (six
    // argument slots from 16 on entry, `ret` at 16 on exit); the verifier checks the access.
    unsafe { core::ptr::read_volatile(ctx.as_ptr().cast::<u8>().add(off).cast::<u64>()) }
}

/// The n-th syscall argument.
#[inline(always)]
fn arg(ctx: &TracePointContext, n: usize) -> u64 {
    record_u64(ctx, arg_offset(n))
}

/// The syscall's return value, at its exit.
#[inline(always)]
fn ret(ctx: &TracePointContext) -> i64 {
    record_u64(ctx, RET_OFFSET) as i64
}

/// A file descriptor argument (int, sign-extended from the slot's low half).
#[inline(always)]
fn fd_arg(ctx: &TracePointContext, n: usize) -> i32 {
    arg(ctx, n) as i32
}

/// A mode argument.
#[inline(always)]
fn mode_arg(ctx: &TracePointContext, n: usize) -> u32 {
    arg(ctx, n) as u32
}

#[inline(always)]
fn inode_mode(dentry: u64) -> u32 {
    match read_ptr(dentry, offsets().dentry_inode) {
        Ok(inode) => mode_of_inode(inode),
        Err(_) => 0,
    }
}

#[inline(always)]
fn mode_of_inode(inode: u64) -> u32 {
    read::<u16>(inode, offsets().inode_mode)
        .map(u32::from)
        .unwrap_or(0)
}

#[inline(always)]
fn remember(call: PendingCall) -> u32 {
    // An LRU map: when full it evicts the oldest entry instead of failing.
    let _ = PENDING.insert(bpf_get_current_pid_tgid(), call, 0);
    0
}

#[inline(always)]
fn call(op: u16, mode: u32, dirfd: i32, path: u64, old_dirfd: i32, old_path: u64) -> PendingCall {
    PendingCall {
        op,
        flags: 0,
        mode,
        old_mode: 0,
        dirfd,
        old_dirfd,
        _pad: 0,
        path,
        old_path,
    }
}

/// mknod(path, mode, dev)
#[tracepoint]
pub fn enter_mknod(ctx: TracePointContext) -> u32 {
    remember(call(
        file_op::MKNOD,
        mode_arg(&ctx, 1),
        AT_FDCWD,
        arg(&ctx, 0),
        0,
        0,
    ))
}

/// mknodat(dirfd, path, mode, dev)
#[tracepoint]
pub fn enter_mknodat(ctx: TracePointContext) -> u32 {
    remember(call(
        file_op::MKNOD,
        mode_arg(&ctx, 2),
        fd_arg(&ctx, 0),
        arg(&ctx, 1),
        0,
        0,
    ))
}

/// link(old, new) and rename(old, new)
#[tracepoint]
pub fn enter_link(ctx: TracePointContext) -> u32 {
    remember(call(
        file_op::LINK,
        0,
        AT_FDCWD,
        arg(&ctx, 1),
        AT_FDCWD,
        arg(&ctx, 0),
    ))
}

#[tracepoint]
pub fn enter_rename(ctx: TracePointContext) -> u32 {
    remember(call(
        file_op::RENAME,
        0,
        AT_FDCWD,
        arg(&ctx, 1),
        AT_FDCWD,
        arg(&ctx, 0),
    ))
}

/// linkat(olddirfd, old, newdirfd, new, flags), renameat(2)(olddirfd, old, newdirfd, new, ...)
#[tracepoint]
pub fn enter_linkat(ctx: TracePointContext) -> u32 {
    remember(call(
        file_op::LINK,
        0,
        fd_arg(&ctx, 2),
        arg(&ctx, 3),
        fd_arg(&ctx, 0),
        arg(&ctx, 1),
    ))
}

#[tracepoint]
pub fn enter_renameat(ctx: TracePointContext) -> u32 {
    remember(call(
        file_op::RENAME,
        0,
        fd_arg(&ctx, 2),
        arg(&ctx, 3),
        fd_arg(&ctx, 0),
        arg(&ctx, 1),
    ))
}

/// symlink(target, linkpath)
#[tracepoint]
pub fn enter_symlink(ctx: TracePointContext) -> u32 {
    remember(call(
        file_op::SYMLINK,
        S_IFLNK | 0o777,
        AT_FDCWD,
        arg(&ctx, 1),
        0,
        arg(&ctx, 0),
    ))
}

/// symlinkat(target, newdirfd, linkpath)
#[tracepoint]
pub fn enter_symlinkat(ctx: TracePointContext) -> u32 {
    let (target, dirfd, path) = (arg(&ctx, 0), fd_arg(&ctx, 1), arg(&ctx, 2));
    remember(call(
        file_op::SYMLINK,
        S_IFLNK | 0o777,
        dirfd,
        path,
        0,
        target,
    ))
}

/// chmod(path, mode): only modes with an execute bit are kept.
#[tracepoint]
pub fn enter_chmod(ctx: TracePointContext) -> u32 {
    let mode = mode_arg(&ctx, 1);
    if mode & S_IXUGO == 0 {
        return 0;
    }
    remember(call(
        file_op::CHMOD_EXEC,
        mode & 0o7777,
        AT_FDCWD,
        arg(&ctx, 0),
        0,
        0,
    ))
}

/// fchmodat(dirfd, path, mode) and fchmodat2(dirfd, path, mode, flags)
#[tracepoint]
pub fn enter_fchmodat(ctx: TracePointContext) -> u32 {
    let mode = mode_arg(&ctx, 2);
    if mode & S_IXUGO == 0 {
        return 0;
    }
    remember(call(
        file_op::CHMOD_EXEC,
        mode & 0o7777,
        fd_arg(&ctx, 0),
        arg(&ctx, 1),
        0,
        0,
    ))
}

/// fchmod(fd, mode): the file is known here, so only modes that add an execute bit are kept.
#[tracepoint]
pub fn enter_fchmod(ctx: TracePointContext) -> u32 {
    let fd = fd_arg(&ctx, 0);
    let mode = mode_arg(&ctx, 1);
    if mode & S_IXUGO == 0 {
        return 0;
    }
    let task = current_task();
    let o = offsets();
    let Ok(file) = fd_file(task, fd) else {
        return 0;
    };
    let Ok((_, dentry)) = path_parts(file.wrapping_add(o.file_path as u64)) else {
        return 0;
    };
    let old_mode = inode_mode(dentry);
    if mode & S_IXUGO & !old_mode == 0 {
        return 0;
    }
    let mut c = call(
        file_op::CHMOD_EXEC,
        (old_mode & !0o7777) | (mode & 0o7777),
        fd,
        0,
        0,
        0,
    );
    c.old_mode = old_mode;
    c.flags = file_flag::OLD_MODE_KNOWN;
    remember(c)
}

/// Exit of every syscall above: report what succeeded.
#[tracepoint]
pub fn exit_file_syscall(ctx: TracePointContext) -> u32 {
    let key = bpf_get_current_pid_tgid();
    let Some(pending) = PENDING.get_ptr(key) else {
        return 0;
    };
    // SAFETY: the value is copied before the entry is removed.
    let pending = unsafe { *pending };
    let _ = PENDING.remove(key);
    if ret(&ctx) != 0 {
        return 0;
    }
    if let Some(s) = scratch() {
        let _ = build(s, &pending, None);
    }
    0
}

/// Exit of open, openat, openat2 and creat: report the file if this call created it.
#[tracepoint]
pub fn exit_open(ctx: TracePointContext) -> u32 {
    let ret = ret(&ctx);
    if ret < 0 || ret > i32::MAX as i64 {
        return 0;
    }
    let Ok(file) = fd_file(current_task(), ret as i32) else {
        return 0;
    };
    let Ok((f_mode, mnt, dentry)) = file_head(file) else {
        return 0;
    };
    if f_mode & FMODE_CREATED == 0 {
        return 0;
    }
    let c = call(file_op::CREATE, 0, ret as i32, 0, 0, 0);
    if let Some(s) = scratch() {
        let _ = build(s, &c, Some((mnt, dentry)));
    }
    0
}

/// Builds and sends the record of a file operation. `opened` is the (vfsmount, dentry) of the
/// file a create opened; an fchmod's comes from its descriptor, the others' from (dirfd, name).
#[inline(always)]
fn build(s: &mut Scratch, c: &PendingCall, opened: Option<(u64, u64)>) -> Result<(), i64> {
    let task = current_task();
    let o = offsets();
    let mut flags = c.flags & file_flag::OLD_MODE_KNOWN;
    // The cheap filter first (3 reads), then the path filter (the walk), and the process
    // identity (about 20 reads) only for what is kept.
    let mntns = mount_ns(task).unwrap_or(0);
    if is_host(mntns) {
        if filter().report_host == 0 {
            count(counter::FILTERED_HOST);
            return Ok(());
        }
        flags |= file_flag::HOST;
    }

    let start = FILE_RECORD_SIZE;
    let mut created = 0;
    let w = if c.path == 0 {
        // The path of an open file: create (file given) or fchmod (descriptor given).
        let (mnt, dentry) = match opened {
            Some(parts) => parts,
            None => path_parts(fd_file(task, c.dirfd)?.wrapping_add(o.file_path as u64))?,
        };
        if c.op == file_op::CREATE {
            created = dentry;
        }
        write_path(s, start, mnt, dentry)?
    } else {
        write_at_path(s, start, c.dirfd, c.path)?
    };
    if w.truncated {
        flags |= file_flag::PATH_TRUNCATED;
    }
    let path_len = w.len & ((PATH_MAX - 1) | PATH_MAX);
    if !path_allowed(s, path_len) {
        count(counter::FILTERED_PATH);
        return Ok(());
    }
    // The created file's mode, for kept files only.
    let mode = match (created, leaf_inode(s)) {
        (0, _) => c.mode,
        // The walk read the leaf's inode pointer with the dentry.
        (_, inode) if inode != 0 => mode_of_inode(inode),
        (dentry, _) => inode_mode(dentry),
    };
    // SAFETY: the buffer is larger than the record and 8-byte aligned; plain data. The path
    // lies behind the record.
    let rec = unsafe { &mut *(s.buf.as_mut_ptr() as *mut FileRecord) };
    if !fill_identity(&mut rec.process, task, Some(mntns)) {
        flags |= file_flag::READ_ERROR;
    }

    let second = (start + path_len) & (SCRATCH_HALF - 1);
    let mut old_len = 0;
    if c.old_path != 0 {
        if c.op == file_op::SYMLINK {
            // The target, as given: it is not resolved by the kernel either.
            // SAFETY: second < SCRATCH_HALF and 512 bytes fit behind it.
            match unsafe { read_user_str::<512>(s.buf.as_mut_ptr().add(second), c.old_path) } {
                Ok(n) => {
                    if n == 511 {
                        flags |= file_flag::OLD_PATH_TRUNCATED;
                    }
                    old_len = n;
                }
                Err(_) => flags |= file_flag::READ_ERROR,
            }
        } else {
            match write_at_path(s, second, c.old_dirfd, c.old_path) {
                Ok(w) => {
                    if w.truncated {
                        flags |= file_flag::OLD_PATH_TRUNCATED;
                    }
                    old_len = w.len;
                }
                Err(_) => flags |= file_flag::READ_ERROR,
            }
        }
    }
    let size = second + (old_len & ((PATH_MAX - 1) | PATH_MAX));

    rec.op = c.op;
    rec.flags = flags;
    rec.mode = mode;
    rec.old_mode = c.old_mode;
    rec.path_len = path_len as u16;
    rec.old_path_len = old_len as u16;
    rec.header = RecordHeader {
        kind: kind::FILE,
        _pad: 0,
        size: size as u32,
        // SAFETY: a helper without preconditions.
        ktime_ns: unsafe { bpf_ktime_get_boot_ns() },
    };
    if flags & file_flag::READ_ERROR != 0 {
        count(counter::READ_ERRORS);
    }
    maps::submit(
        &s.buf,
        size,
        counter::LOST_RINGBUF_FILE,
        counter::EMITTED_FILE,
    );
    Ok(())
}

/// The in-kernel path prefix filter: the longest matching prefix decides, else the default.
///
/// The lookup key is read in place: its prefix length goes in the 4 bytes before the path
/// (the record's `path_len` and `old_path_len`, written after the filter), its data is the
/// path itself (bytes past the path's length are outside the prefix and do not count).
#[inline(always)]
fn path_allowed(s: &mut Scratch, len: usize) -> bool {
    const KEY_AT: usize = FILE_RECORD_SIZE - 4;
    const _: () =
        assert!(KEY_AT.is_multiple_of(4) && KEY_AT + 4 + PATH_FILTER_KEY_LEN <= SCRATCH_HALF);
    let f = filter();
    if f.path_filter_active == 0 {
        return true;
    }
    let n = if len > PATH_FILTER_KEY_LEN {
        PATH_FILTER_KEY_LEN
    } else {
        len
    };
    let key = &mut s.buf[KEY_AT..KEY_AT + 4 + PATH_FILTER_KEY_LEN];
    key[..4].copy_from_slice(&((n * 8) as u32).to_ne_bytes());
    // SAFETY: the slice holds a `Key` (u32 prefix length, then the data) and is 4-byte
    // aligned (the buffer is 8-byte aligned and KEY_AT a multiple of 4).
    let key = unsafe { &*(key.as_ptr() as *const Key<[u8; PATH_FILTER_KEY_LEN]>) };
    let action = match PATH_FILTER.get(key) {
        Some(a) => *a,
        None => f.path_default,
    };
    action != path_action::IGNORE
}
