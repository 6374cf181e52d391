//! Reading kernel memory at BTF-resolved offsets: plain loads through BTF pointers where the
//! verifier knows the pointer's type ([`load`], from [`current_task`]), the probe-read helper
//! elsewhere (pointers kept in maps, arrays indexed at run time, user memory).

use core::{ffi::c_void, mem::MaybeUninit};

use aya_ebpf::helpers::generated::{bpf_probe_read_kernel, bpf_probe_read_kernel_str};
use sensor_common::{KernelOffsets, LoadConfig};

/// Written by userspace before load (`EbpfLoader::set_global`); the verifier sees these as
/// constants because the section is frozen.
#[unsafe(no_mangle)]
static LOAD_CONFIG: LoadConfig = unsafe { core::mem::zeroed() };

/// The load-time configuration. A volatile read keeps the compiler from folding the zeroes.
#[inline(always)]
pub fn config() -> &'static LoadConfig {
    // SAFETY: LOAD_CONFIG is a valid static; read_volatile only prevents constant folding.
    unsafe { &*core::ptr::read_volatile(&&raw const LOAD_CONFIG) }
}

#[inline(always)]
pub fn offsets() -> &'static KernelOffsets {
    &config().offsets
}

/// Reads a `T` at `base + off` in kernel memory.
#[inline(always)]
pub fn read<T: Copy>(base: u64, off: u32) -> Result<T, i64> {
    let mut value = MaybeUninit::<T>::uninit();
    // SAFETY: bpf_probe_read_kernel checks the source address and writes exactly
    // size_of::<T>() bytes into `value`, which is that large.
    let ret = unsafe {
        bpf_probe_read_kernel(
            value.as_mut_ptr().cast::<c_void>(),
            size_of::<T>() as u32,
            (base.wrapping_add(off as u64)) as *const c_void,
        )
    };
    if ret < 0 {
        Err(ret)
    } else {
        // SAFETY: the helper succeeded, so all bytes were written; T is plain data.
        Ok(unsafe { value.assume_init() })
    }
}

/// Fills `dst` with the bytes at `base + off` in kernel memory.
#[inline(always)]
pub fn read_into(dst: &mut [u8], base: u64, off: u32) -> Result<(), i64> {
    // SAFETY: the helper writes at most dst.len() bytes into dst and checks the source.
    let ret = unsafe {
        bpf_probe_read_kernel(
            dst.as_mut_ptr().cast::<c_void>(),
            dst.len() as u32,
            (base.wrapping_add(off as u64)) as *const c_void,
        )
    };
    if ret < 0 { Err(ret) } else { Ok(()) }
}

/// Reads a pointer at `base + off`; a null pointer is an error.
#[inline(always)]
pub fn read_ptr(base: u64, off: u32) -> Result<u64, i64> {
    match read::<u64>(base, off)? {
        0 => Err(-14),
        p => Ok(p),
    }
}

/// Copies a NUL-terminated kernel string of at most `N` bytes (NUL included) to `dst`.
/// Returns the string's length without the NUL.
///
/// # Safety
/// `dst` must point to at least `N` writable bytes.
#[inline(always)]
pub unsafe fn read_str<const N: usize>(dst: *mut u8, src: u64) -> Result<usize, i64> {
    // SAFETY: the caller guarantees N writable bytes at dst; the helper checks src.
    let ret = unsafe { bpf_probe_read_kernel_str(dst.cast(), N as u32, src as *const c_void) };
    if ret <= 0 {
        Err(ret)
    } else {
        Ok(ret as usize - 1)
    }
}

/// Copies a NUL-terminated user string of at most `N` bytes (NUL included) to `dst`.
/// Returns the string's length without the NUL.
///
/// # Safety
/// `dst` must point to at least `N` writable bytes.
#[inline(always)]
pub unsafe fn read_user_str<const N: usize>(dst: *mut u8, src: u64) -> Result<usize, i64> {
    // SAFETY: the caller guarantees N writable bytes at dst; the helper checks src.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user_str(
            dst.cast(),
            N as u32,
            src as *const c_void,
        )
    };
    if ret <= 0 {
        Err(ret)
    } else {
        Ok(ret as usize - 1)
    }
}

/// The first byte of a user string.
#[inline(always)]
pub fn user_byte(src: u64) -> Result<u8, i64> {
    let mut b = 0u8;
    // SAFETY: one byte is written into b; the helper checks src.
    let ret = unsafe {
        aya_ebpf::helpers::generated::bpf_probe_read_user(
            (&raw mut b).cast(),
            1,
            src as *const c_void,
        )
    };
    if ret < 0 { Err(ret) } else { Ok(b) }
}

/// The current task as a BTF pointer: fields read through it with [`load`] are plain loads
/// that the verifier checks against the kernel's BTF (no helper call per field).
#[inline(always)]
pub fn current_task() -> u64 {
    // SAFETY: a helper without preconditions.
    unsafe { aya_ebpf::helpers::generated::bpf_get_current_task_btf() as u64 }
}

/// Loads a `T` at `base + off`, where `base` is a BTF pointer the verifier knows (from
/// [`current_task`] or a pointer field loaded through one) and `off` a load-time constant:
/// the verifier checks the access against the kernel's BTF and makes it fault-safe (a bad
/// address reads as 0).
#[inline(always)]
pub fn load<T: Copy>(base: u64, off: u32) -> T {
    // SAFETY: see above; the verifier rejects the program if the access does not fit.
    unsafe { core::ptr::read_volatile(base.wrapping_add(off as u64) as *const T) }
}

/// [`load`] of a pointer; a null pointer is an error (as in [`read_ptr`]).
#[inline(always)]
pub fn load_ptr(base: u64, off: u32) -> Result<u64, i64> {
    match load::<u64>(base, off) {
        0 => Err(-14),
        p => Ok(p),
    }
}

/// `AT_FDCWD`: a path relative to the working directory.
pub const AT_FDCWD: i32 = -100;

/// The `struct file *` behind file descriptor `fd` of `task`.
#[inline(always)]
pub fn fd_file(task: u64, fd: i32) -> Result<u64, i64> {
    let o = offsets();
    if fd < 0 {
        return Err(-9);
    }
    let fdt = load_ptr(load_ptr(task, o.task_files)?, o.files_fdt)?;
    let max: u32 = load(fdt, o.fdtable_max_fds);
    if fd as u32 >= max {
        return Err(-9);
    }
    let fds: u64 = load(fdt, o.fdtable_fd);
    read_ptr(fds, fd as u32 * 8)
}

/// (vfsmount, dentry) of a `struct path` at `path`: one read when the two pointers are
/// neighbours (`struct path { mnt; dentry; }` in every kernel), else two.
#[inline(always)]
pub fn path_parts(path: u64) -> Result<(u64, u64), i64> {
    let o = offsets();
    let (mnt, dentry) = if o.path_dentry == o.path_mnt + 8 {
        let [mnt, dentry] = read::<[u64; 2]>(path, o.path_mnt)?;
        (mnt, dentry)
    } else {
        (read(path, o.path_mnt)?, read(path, o.path_dentry)?)
    };
    if mnt == 0 || dentry == 0 {
        return Err(-14);
    }
    Ok((mnt, dentry))
}

/// (vfsmount, dentry) of the `struct path` at offset `at` of the task's `fs_struct` (its root
/// or its working directory), with plain loads: `task` is the current task's BTF pointer.
#[inline(always)]
pub fn fs_path(task: u64, at: u32) -> Result<(u64, u64), i64> {
    let o = offsets();
    let fs = load_ptr(task, o.task_fs)?;
    let mnt = load_ptr(fs, at + o.path_mnt)?;
    let dentry = load_ptr(fs, at + o.path_dentry)?;
    Ok((mnt, dentry))
}

/// Whether a `size`-byte field at byte `at` is aligned to its size and lies in the first
/// `len` bytes of a block read at once (then [`word_at`] or [`u32_at`] take it from the block).
#[inline(always)]
pub fn fits(at: usize, size: usize, len: usize) -> bool {
    at.is_multiple_of(size) && at + size <= len
}

/// The 8-byte field at byte `at` (a multiple of 8) of a block read as words.
#[inline(always)]
pub fn word_at<const N: usize>(block: &[u64; N], at: usize) -> u64 {
    block[(at / 8) % N]
}

/// The 4-byte field at byte `at` (a multiple of 4) of a block read as words (little-endian).
#[inline(always)]
pub fn u32_at<const N: usize>(block: &[u64; N], at: usize) -> u32 {
    (word_at(block, at) >> ((at & 4) * 8)) as u32
}

/// Bytes of a `struct file` read at once from its start by [`file_head`].
const FILE_HEAD: usize = 80;

/// (`f_mode`, vfsmount, dentry) of an open file: one read of the struct's head where `f_mode`
/// and `f_path` lie in it (every kernel since 3.x), else two.
#[inline(always)]
pub fn file_head(file: u64) -> Result<(u32, u64, u64), i64> {
    let o = offsets();
    let (mode_at, mnt_at, dentry_at) = (
        o.file_mode as usize,
        (o.file_path + o.path_mnt) as usize,
        (o.file_path + o.path_dentry) as usize,
    );
    if fits(mode_at, 4, FILE_HEAD) && fits(mnt_at, 8, FILE_HEAD) && fits(dentry_at, 8, FILE_HEAD) {
        let head = read::<[u64; FILE_HEAD / 8]>(file, 0)?;
        let mode = u32_at(&head, mode_at);
        let (mnt, dentry) = (word_at(&head, mnt_at), word_at(&head, dentry_at));
        if mnt == 0 || dentry == 0 {
            return Err(-14);
        }
        return Ok((mode, mnt, dentry));
    }
    let mode = read::<u32>(file, o.file_mode)?;
    let (mnt, dentry) = path_parts(file.wrapping_add(o.file_path as u64))?;
    Ok((mode, mnt, dentry))
}

/// (vfsmount, dentry) of the directory a `*at` syscall resolves `dirfd` against.
#[inline(always)]
pub fn dirfd_path(task: u64, dirfd: i32) -> Result<(u64, u64), i64> {
    let o = offsets();
    if dirfd == AT_FDCWD {
        return fs_path(task, o.fs_pwd);
    }
    let file = fd_file(task, dirfd)?;
    path_parts(file.wrapping_add(o.file_path as u64))
}
