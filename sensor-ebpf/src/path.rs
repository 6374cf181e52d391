//! Absolute paths from (vfsmount, dentry) pairs, as `d_path` would build them, crossing mount
//! points up to the root of the task's mount namespace.
//!
//! The walk goes from the leaf up and, like `d_path`, prepends each name to a per-CPU buffer
//! whose end is the path's end: one pass, one read of the dentry per component (its parent,
//! its name's length and pointer, and the inline name where the kernel keeps short names), and
//! a second read only for a name stored outside the dentry (40 bytes or longer). The finished
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
        current_task, dirfd_path, fits, fs_path, offsets, read, read_into, read_str, read_user_str,
        u32_at, user_byte, word_at,
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
/// Bytes of a dentry read at once, from its start: the parent pointer, `d_name` (hash, length,
/// name pointer), `d_inode` and the inline name that holds short names (`d_shortname`, 40
/// bytes since 6.13; `d_iname`, 32, before), in every kernel since 3.x. A short name is taken
/// from this read; a long one is read where it lives. A layout that does not fit the window
/// is read field by field.
const DENTRY_WINDOW: usize = 96;
/// The window's words; 16 of them so that masked indexes stay inside.
const WINDOW_WORDS: usize = 16;
/// Bytes an inline name is copied with, whatever its length (see [`copy_inline_name`]).
const INLINE_COPY: usize = 40;
const _: () = assert!(DENTRY_WINDOW <= WINDOW_WORDS * 8 && DENTRY_WINDOW - INLINE_COPY < 64);
const _: () = assert!(INLINE_COPY <= NAME_MAX);
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
    /// The leaf dentry, and its inode as the prepending walk read it with the dentry (0 if
    /// not read).
    leaf: u64,
    leaf_inode: u64,
    /// The dentry window (see [`DENTRY_WINDOW`]), with room for masked field reads.
    window: [u64; WINDOW_WORDS],
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

/// Where a dentry's name is.
enum Name {
    /// In the dentry window, ending before this byte.
    Inline(usize),
    /// At this kernel address.
    At(u64),
}

/// (parent, name length, name) of dentry `d`.
#[inline(always)]
fn dentry_fields(p: &mut PathScratch, d: u64) -> Result<(u64, usize, Name), i64> {
    let o = offsets();
    let (parent_at, len_at, name_at) = (
        o.dentry_parent as usize,
        o.dentry_name_len as usize,
        o.dentry_name_ptr as usize,
    );
    if fits(parent_at, 8, DENTRY_WINDOW)
        && fits(len_at, 4, DENTRY_WINDOW)
        && fits(name_at, 8, DENTRY_WINDOW)
    {
        // SAFETY: the window is WINDOW_WORDS * 8 >= DENTRY_WINDOW bytes of plain data.
        let bytes = unsafe {
            core::slice::from_raw_parts_mut(p.window.as_mut_ptr().cast::<u8>(), DENTRY_WINDOW)
        };
        read_into(bytes, d, 0)?;
        let w = &p.window;
        let parent = word_at(w, parent_at);
        let len = u32_at(w, len_at) as usize;
        let name = word_at(w, name_at);
        let inode_at = o.dentry_inode as usize;
        if d == p.leaf && fits(inode_at, 8, DENTRY_WINDOW) {
            p.leaf_inode = word_at(w, inode_at);
        }
        let inline = o.dentry_inline_name as usize;
        let end = inline + len;
        if inline >= INLINE_COPY
            && len < INLINE_COPY
            && end <= DENTRY_WINDOW
            && name == d.wrapping_add(inline as u64)
        {
            return Ok((parent, len, Name::Inline(end)));
        }
        return Ok((parent, len, Name::At(name)));
    }
    Ok((
        read::<u64>(d, o.dentry_parent)?,
        read::<u32>(d, o.dentry_name_len)? as usize,
        Name::At(read::<u64>(d, o.dentry_name_ptr)?),
    ))
}

/// Copies a short name from the dentry window so that it ends at `prepend[end]`: the
/// [`INLINE_COPY`] window bytes ending at `src_end` go to the bytes ending at `end`. A fixed
/// length keeps the copy a straight line for the verifier; the bytes before the name land
/// in front of the path, where the next "/" and name overwrite them or the path does not
/// reach. `INLINE_COPY` <= `end` <= `PATH_MAX`; `INLINE_COPY` < `src_end` <= `DENTRY_WINDOW`.
#[inline(always)]
fn copy_inline_name(p: &mut PathScratch, end: usize, src_end: usize) {
    // SAFETY: both offsets are masked inside their arrays with INLINE_COPY bytes to spare:
    // the source below 64 in a window of 128 bytes, the destination below PATH_MAX in a
    // buffer of PATH_MAX + NAME_MAX.
    unsafe {
        let src = p
            .window
            .as_ptr()
            .cast::<u8>()
            .add((src_end - INLINE_COPY) & 63);
        let dst = p
            .prepend
            .as_mut_ptr()
            .add((end - INLINE_COPY) & (PATH_MAX - 1));
        for i in 0..INLINE_COPY {
            core::ptr::write_volatile(dst.add(i), core::ptr::read_volatile(src.add(i)));
        }
    }
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
    // The parent mount and the mount point: one read where they are neighbours (every kernel
    // since 3.x), else two.
    let parent_and_mountpoint = if o.mount_mountpoint == o.mount_parent + 8 {
        read::<[u64; 2]>(p.mount, o.mount_parent).map(|[parent, point]| (parent, point))
    } else {
        read::<u64>(p.mount, o.mount_parent)
            .and_then(|parent| Ok((parent, read::<u64>(p.mount, o.mount_mountpoint)?)))
    };
    let Ok((parent_mount, mountpoint)) = parent_and_mountpoint else {
        p.failed = 1;
        return Some(STOP);
    };
    if parent_mount == p.mount || parent_mount == 0 {
        // The root of the mount namespace.
        p.truncated = 0;
        return Some(STOP);
    }
    let Ok(mnt_root) = read::<u64>(
        parent_mount.wrapping_add(o.mount_mnt as u64),
        o.vfsmount_root,
    ) else {
        p.failed = 1;
        return Some(STOP);
    };
    if mountpoint == 0 {
        p.failed = 1;
        return Some(STOP);
    }
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
    // Where the name must be read from, unless the window already holds it and there is room
    // in front of it for the fixed-length copy.
    let read_from = match name {
        Name::Inline(src_end) if pos >= INLINE_COPY => {
            copy_inline_name(p, pos, src_end);
            None
        }
        Name::Inline(src_end) => Some(d.wrapping_add((src_end - len) as u64)),
        Name::At(name) => Some(name),
    };
    if let Some(name) = read_from {
        // SAFETY: at + len <= PATH_MAX + NAME_MAX - 1 bytes of `prepend`; the helper checks
        // the source.
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
    let task = current_task();
    let (root_mnt, root_dentry) = fs_path(task, o.fs_root).unwrap_or((0, 0));
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
    s.path.leaf = dentry;
    s.path.leaf_inode = 0;
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

/// The inode of the last [`write_path`]'s leaf dentry, when its walk read it (0 if not).
#[inline(always)]
pub fn leaf_inode(s: &Scratch) -> u64 {
    s.path.leaf_inode
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
        let task = current_task();
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
