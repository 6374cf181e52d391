//! Absolute paths from (vfsmount, dentry) pairs, as `d_path` would build them, crossing mount
//! points up to the root of the task's mount namespace.
//!
//! The walk goes from the leaf up and, like `d_path`, prepends each name to a per-CPU buffer
//! whose end is the path's end: one pass, one read of the dentry (its parent and its name's
//! length and pointer are neighbours) and one copy of the name per component. The finished
//! path is then copied into the record, where it can be matched against prefixes. A path
//! longer than [`PATH_MAX`] does not fit the buffer; it is written again by a second walk that
//! collects the dentries from the leaf up and writes their names root first, so that a
//! truncated path keeps its root side (what the prefix filter matches). Both walks run under
//! `bpf_loop` (Linux 5.17+) with their state in the per-CPU scratch map: the verifier checks
//! each loop body once instead of once per iteration and path shape.

use core::ffi::c_void;

use aya_ebpf::helpers::generated::{bpf_loop, bpf_probe_read_kernel};
use sensor_common::{PATH_MAX, SCRATCH_HALF};

use crate::{
    kernel::{
        dirfd_path, offsets, path_parts, read, read_into, read_ptr, read_str, read_user_str,
        user_byte,
    },
    maps::Scratch,
};

/// Longest name of one path component, NUL included.
const NAME_MAX: usize = 256;
/// Steps of the walk: one per component or mount crossing. Deeper paths are truncated.
const WALK_STEPS: u32 = 48;
const SLOTS: usize = 64;
const SLOT_MASK: usize = SLOTS - 1;
const HALF_MASK: usize = SCRATCH_HALF - 1;
const _: () = assert!(SLOTS.is_power_of_two() && SLOTS >= WALK_STEPS as usize);
const _: () = assert!(SCRATCH_HALF.is_power_of_two());
const _: () = assert!(PATH_MAX.is_power_of_two() && NAME_MAX.is_power_of_two());
/// Bytes of a dentry read at once from `d_parent`: the parent pointer, then `d_name` (hash,
/// length, name pointer) in every kernel since 3.x; field by field if this one differs.
const DENTRY_WINDOW: u32 = 24;

/// Per-CPU working memory of the walk.
#[repr(C)]
pub struct PathScratch {
    /// The dentries from the leaf up; 0 marks a mount crossing (no component).
    dentries: [u64; SLOTS],
    /// How many slots the walk filled.
    steps: u64,
    /// The walk stopped before reaching the root, or a name did not fit.
    truncated: u64,
    /// A kernel read failed.
    failed: u64,
    /// Where the walk stands: current vfsmount, its struct mount, current dentry.
    vfsmnt: u64,
    mount: u64,
    dentry: u64,
    /// Where the writing stands in the record buffer, and where the path began.
    off: u64,
    start: u64,
    /// The task's root directory: the walk ends there (a chrooted or pivoted process sees
    /// paths from its own root).
    root_mnt: u64,
    root_dentry: u64,
    /// The root dentry of the current mount (`vfsmount.mnt_root`), read once per mount.
    mnt_root: u64,
    /// Where the next name ends in `prepend` (the path so far is `prepend[pos..PATH_MAX]`).
    pos: u64,
    /// The path did not fit `prepend`: the collecting walk writes it instead.
    overflow: u64,
    /// The dentry window (see [`DENTRY_WINDOW`]), with room for masked field reads.
    window: [u8; 40],
    /// The prepending walk's buffer: names are written leaf first, ending at `PATH_MAX`.
    prepend: [u8; PATH_MAX + NAME_MAX],
}

pub struct Written {
    /// Bytes written, without a NUL.
    pub len: usize,
    pub truncated: bool,
}

/// What `bpf_loop` hands each step: it must live on the stack.
#[repr(C)]
struct LoopCtx {
    scratch: *mut Scratch,
}

/// Continue or stop, as `bpf_loop` callbacks answer.
const CONTINUE: i64 = 0;
const STOP: i64 = 1;

/// (parent, name length, name pointer) of dentry `d`.
#[inline(always)]
fn dentry_fields(p: &mut PathScratch, d: u64) -> Result<(u64, usize, u64), i64> {
    let o = offsets();
    let len_at = o.dentry_name_len.wrapping_sub(o.dentry_parent);
    let name_at = o.dentry_name_ptr.wrapping_sub(o.dentry_parent);
    if len_at + 4 <= DENTRY_WINDOW && name_at + 8 <= DENTRY_WINDOW {
        read_into(&mut p.window[..DENTRY_WINDOW as usize], d, o.dentry_parent)?;
        let w = &p.window;
        let at = |i: u32| i as usize & 31;
        // SAFETY: each read lies inside the 40-byte window (offsets masked below 32).
        let (parent, len, name) = unsafe {
            (
                core::ptr::read_unaligned(w.as_ptr().cast::<u64>()),
                core::ptr::read_unaligned(w.as_ptr().add(at(len_at)).cast::<u32>()),
                core::ptr::read_unaligned(w.as_ptr().add(at(name_at)).cast::<u64>()),
            )
        };
        return Ok((parent, len as usize, name));
    }
    Ok((
        read::<u64>(d, o.dentry_parent)?,
        read::<u32>(d, o.dentry_name_len)? as usize,
        read::<u64>(d, o.dentry_name_ptr)?,
    ))
}

/// Where a step of either walk stands before it takes a name: `Some(STOP)` at the task's
/// root or the root of the mount namespace (or on a failed read), `Some(CONTINUE)` after
/// crossing from the root of the current mount to its mount point in the parent mount, `None`
/// when the current dentry has a name to take.
#[inline(always)]
fn end_or_cross(p: &mut PathScratch) -> Option<i64> {
    let o = offsets();
    let d = p.dentry;
    if d == p.root_dentry && p.vfsmnt == p.root_mnt {
        p.truncated = 0;
        return Some(STOP);
    }
    if d != p.mnt_root {
        return None;
    }
    let Ok(parent_mount) = read::<u64>(p.mount, o.mount_parent) else {
        p.failed = 1;
        return Some(STOP);
    };
    if parent_mount == p.mount || parent_mount == 0 {
        // The root of the mount namespace.
        p.truncated = 0;
        return Some(STOP);
    }
    let (Ok(mountpoint), Ok(mnt_root)) = (
        read_ptr(p.mount, o.mount_mountpoint),
        read::<u64>(
            parent_mount.wrapping_add(o.mount_mnt as u64),
            o.vfsmount_root,
        ),
    ) else {
        p.failed = 1;
        return Some(STOP);
    };
    p.dentry = mountpoint;
    p.mount = parent_mount;
    p.vfsmnt = parent_mount.wrapping_add(o.mount_mnt as u64);
    p.mnt_root = mnt_root;
    Some(CONTINUE)
}

/// One step of the prepending walk: the current dentry's "/name" goes in front of the path
/// so far, or the walk crosses to the mount point of the current mount.
extern "C" fn prepend_step(_i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: as in collect_step.
    let s = unsafe { &mut *(*(ctx as *mut LoopCtx)).scratch };
    let p = &mut s.path;
    if let Some(step) = end_or_cross(p) {
        return step;
    }
    let d = p.dentry;
    let Ok((parent, len, name)) = dentry_fields(p, d) else {
        p.failed = 1;
        return STOP;
    };
    let pos = p.pos as usize;
    if len == 0 || len >= NAME_MAX || pos < len + 1 || pos > PATH_MAX {
        // Longer than the buffer (or a name no file system gives): the other walk.
        p.overflow = 1;
        return STOP;
    }
    // pos <= PATH_MAX and len >= 1, so the name starts below PATH_MAX and ends within
    // PATH_MAX + NAME_MAX; the mask tells the verifier so.
    let at = (pos - len) & (PATH_MAX - 1);
    // SAFETY: at + len <= PATH_MAX + NAME_MAX - 1 bytes of `prepend`; the helper checks the
    // source.
    let ret = unsafe {
        bpf_probe_read_kernel(
            p.prepend.as_mut_ptr().add(at).cast::<c_void>(),
            (len & (NAME_MAX - 1)) as u32,
            name as *const c_void,
        )
    };
    if ret < 0 {
        p.failed = 1;
        return STOP;
    }
    p.prepend[(at - 1) & (PATH_MAX - 1)] = b'/';
    p.pos = (at - 1) as u64;
    if d == parent {
        // The root of a file system that is not mounted here: a pseudo file (memfd, pipe) or
        // a detached tree. Its own name is the whole path.
        p.truncated = 0;
        return STOP;
    }
    p.dentry = parent;
    CONTINUE
}

/// One step of the collecting walk from the leaf towards the root.
extern "C" fn collect_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: ctx is the LoopCtx that write_path put on its stack, pointing at this CPU's
    // scratch area for the duration of the loop.
    let s = unsafe { &mut *(*(ctx as *mut LoopCtx)).scratch };
    let p = &mut s.path;
    let slot = i as usize & SLOT_MASK;
    if let Some(step) = end_or_cross(p) {
        if step == CONTINUE {
            // A mount crossing: no component.
            p.dentries[slot] = 0;
            p.steps = i + 1;
        }
        return step;
    }
    let d = p.dentry;
    let Ok(parent) = read::<u64>(d, offsets().dentry_parent) else {
        p.failed = 1;
        return STOP;
    };
    p.dentries[slot] = d;
    p.steps = i + 1;
    if d == parent {
        // The root of a file system that is not mounted here: a pseudo file (memfd, pipe) or
        // a detached tree. Its own name is the whole path.
        p.truncated = 0;
        return STOP;
    }
    p.dentry = parent;
    CONTINUE
}

/// One step of the writing, root side first: "/" and one name.
extern "C" fn write_step(i: u64, ctx: *mut c_void) -> i64 {
    // SAFETY: as in collect_step.
    let s = unsafe { &mut *(*(ctx as *mut LoopCtx)).scratch };
    let steps = s.path.steps;
    if i >= steps {
        return STOP;
    }
    let d = s.path.dentries[(steps - 1 - i) as usize & SLOT_MASK];
    if d == 0 {
        return CONTINUE;
    }
    let off = s.path.off as usize & HALF_MASK;
    if off - (s.path.start as usize & HALF_MASK) + 1 + NAME_MAX > PATH_MAX {
        s.path.truncated = 1;
        return STOP;
    }
    let Ok(name) = read::<u64>(d, offsets().dentry_name_ptr) else {
        s.path.failed = 1;
        return STOP;
    };
    s.buf[off] = b'/';
    let pos = (off + 1) & HALF_MASK;
    // SAFETY: pos < SCRATCH_HALF and NAME_MAX <= SCRATCH_HALF, so the write stays inside the
    // buffer of SCRATCH_LEN bytes.
    match unsafe { read_str::<NAME_MAX>(s.buf.as_mut_ptr().add(pos), name) } {
        Ok(len) => {
            s.path.off = (off + 1 + (len & (NAME_MAX - 1))) as u64;
            CONTINUE
        }
        Err(_) => {
            s.path.failed = 1;
            STOP
        }
    }
}

/// Writes the absolute path of (mnt, dentry) at `s.buf[start..]`, at most `PATH_MAX` bytes,
/// without a NUL. `start` must be below `SCRATCH_HALF`.
#[inline(always)]
pub fn write_path(s: &mut Scratch, start: usize, mnt: u64, dentry: u64) -> Result<Written, i64> {
    let o = offsets();
    let task = crate::kernel::current_task();
    let (root_mnt, root_dentry) = read_ptr(task, o.task_fs)
        .and_then(|fs| path_parts(fs.wrapping_add(o.fs_root as u64)))
        .unwrap_or((0, 0));
    let mnt_root = read::<u64>(mnt, o.vfsmount_root)?;
    let mut ctx = LoopCtx {
        scratch: s as *mut Scratch,
    };
    let ctx_ptr = (&raw mut ctx).cast::<c_void>();
    let start_walk = |p: &mut PathScratch| {
        p.steps = 0;
        p.truncated = 1;
        p.failed = 0;
        p.vfsmnt = mnt;
        p.mount = mnt.wrapping_sub(o.mount_mnt as u64);
        p.dentry = dentry;
        p.root_mnt = root_mnt;
        p.root_dentry = root_dentry;
        p.mnt_root = mnt_root;
    };

    start_walk(&mut s.path);
    s.path.pos = PATH_MAX as u64;
    s.path.overflow = 0;
    // SAFETY: the callback only uses ctx, which outlives the call.
    unsafe { bpf_loop(WALK_STEPS, prepend_step as *mut c_void, ctx_ptr, 0) };
    let s = &mut *s;
    if s.path.overflow == 0 {
        if s.path.failed != 0 && s.path.pos == PATH_MAX as u64 {
            return Err(-14);
        }
        let pos = s.path.pos as usize & (PATH_MAX - 1);
        let len = PATH_MAX - pos;
        let dst = start & HALF_MASK;
        if s.path.pos == PATH_MAX as u64 {
            // The root itself.
            s.buf[dst] = b'/';
            return Ok(Written {
                len: 1,
                truncated: s.path.truncated != 0,
            });
        }
        // SAFETY: dst < SCRATCH_HALF and len <= PATH_MAX <= SCRATCH_HALF: the copy stays in
        // the buffer; the source is `prepend[pos..PATH_MAX]`.
        let ret = unsafe {
            bpf_probe_read_kernel(
                s.buf.as_mut_ptr().add(dst).cast::<c_void>(),
                (len & (2 * PATH_MAX - 1)) as u32,
                s.path.prepend.as_ptr().add(pos).cast::<c_void>(),
            )
        };
        if ret < 0 {
            return Err(ret);
        }
        return Ok(Written {
            len,
            truncated: s.path.truncated != 0,
        });
    }

    // Longer than PATH_MAX: collect the dentries, then write from the root.
    start_walk(&mut s.path);
    s.path.start = start as u64;
    s.path.off = start as u64;
    // SAFETY: the callbacks only use ctx, which outlives the calls.
    unsafe {
        bpf_loop(WALK_STEPS, collect_step as *mut c_void, ctx_ptr, 0);
        bpf_loop(WALK_STEPS, write_step as *mut c_void, ctx_ptr, 0);
    }
    let s = &mut *s;
    if s.path.failed != 0 && s.path.off == s.path.start {
        return Err(-14);
    }
    let mut end = s.path.off as usize & HALF_MASK;
    if end <= start {
        s.buf[start & HALF_MASK] = b'/';
        end = start + 1;
    }
    Ok(Written {
        len: end - start,
        truncated: s.path.truncated != 0,
    })
}

/// Longest user-supplied path part a record carries.
const USER_PATH_MAX: usize = 512;

/// Writes the path a syscall names with (`dirfd`, user string `upath`): the string itself when
/// absolute, else the directory's path, "/", and the string. The result is not normalised
/// ("a/../b" stays as given); userspace cleans it.
#[inline(always)]
pub fn write_at_path(
    s: &mut Scratch,
    start: usize,
    dirfd: i32,
    upath: u64,
) -> Result<Written, i64> {
    let mut w = Written {
        len: 0,
        truncated: false,
    };
    if user_byte(upath)? != b'/' {
        let task = crate::kernel::current_task();
        let (mnt, dentry) = dirfd_path(task, dirfd)?;
        w = write_path(s, start, mnt, dentry)?;
        if w.len == 1 {
            // The directory is the root: "/name", not "//name".
            w.len = 0;
        }
        if w.len + 1 + USER_PATH_MAX > PATH_MAX {
            w.truncated = true;
            return Ok(w);
        }
        s.buf[(start + w.len) & HALF_MASK] = b'/';
        w.len += 1;
    }
    let pos = (start + w.len) & HALF_MASK;
    // SAFETY: pos < SCRATCH_HALF and USER_PATH_MAX <= SCRATCH_HALF: the write stays inside.
    let len = unsafe { read_user_str::<USER_PATH_MAX>(s.buf.as_mut_ptr().add(pos), upath)? };
    if len == USER_PATH_MAX - 1 {
        w.truncated = true;
    }
    w.len += len & (USER_PATH_MAX - 1);
    Ok(w)
}
