//! The maps shared with userspace, and the one way records leave the kernel.

use aya_ebpf::{
    bindings::{BPF_RB_FORCE_WAKEUP, BPF_RB_NO_WAKEUP},
    macros::map,
    maps::{Array, LpmTrie, LruHashMap, PerCpuArray, RingBuf},
};
use sensor_common::{FilterConfig, SCRATCH_LEN, counter};

use crate::{kernel::config, path::PathScratch};

/// Every record. Userspace sets the size at load (`EbpfLoader::set_max_entries`).
#[map]
pub static EVENTS: RingBuf = RingBuf::with_byte_size(1 << 20, 0);

/// Per-CPU counters, indexed by `sensor_common::counter`.
#[map]
pub static COUNTERS: PerCpuArray<u64> = PerCpuArray::with_max_entries(counter::COUNT, 0);

/// Runtime filter settings (one entry).
#[map]
pub static FILTER: Array<FilterConfig> = Array::with_max_entries(1, 0);

/// Path prefix filter for file events: longest prefix wins; the value is a `path_action`.
#[map]
pub static PATH_FILTER: LpmTrie<[u8; sensor_common::PATH_FILTER_KEY_LEN], u32> =
    LpmTrie::with_max_entries(256, 0);

/// Where one record is assembled before it is copied into the ring buffer.
#[repr(C)]
pub struct Scratch {
    pub buf: [u8; SCRATCH_LEN],
    pub path: PathScratch,
}

#[map]
pub static SCRATCH: PerCpuArray<Scratch> = PerCpuArray::with_max_entries(1, 0);

/// A file syscall seen at its entry, waiting for its exit.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct PendingCall {
    /// One of `sensor_common::file_op`.
    pub op: u16,
    /// `file_flag` bits known at entry.
    pub flags: u16,
    pub mode: u32,
    pub old_mode: u32,
    /// Directory the path is resolved against (or the descriptor itself when `path` is 0).
    pub dirfd: i32,
    pub old_dirfd: i32,
    pub _pad: u32,
    /// User pointers: the new name, and the second name (link source, rename source, symlink
    /// target); 0 when absent.
    pub path: u64,
    pub old_path: u64,
}

/// Pending file syscalls by pid_tgid. LRU so that calls whose exit is never seen (a thread
/// killed in the call) cannot fill it.
#[map]
pub static PENDING: LruHashMap<u64, PendingCall> = LruHashMap::with_max_entries(8192, 0);

#[inline(always)]
pub fn count(index: u32) {
    if let Some(p) = COUNTERS.get_ptr_mut(index) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *p += 1 };
    }
}

#[inline(always)]
pub fn filter() -> FilterConfig {
    match FILTER.get(0) {
        Some(f) => *f,
        // Unset: report everything.
        None => FilterConfig {
            report_host: 1,
            path_filter_active: 0,
            path_default: 0,
            _pad: 0,
        },
    }
}

#[inline(always)]
pub fn scratch() -> Option<&'static mut Scratch> {
    match SCRATCH.get_ptr_mut(0) {
        // SAFETY: per-CPU value, used by one program at a time on this CPU (tracing programs
        // do not nest on one CPU: the kernel's per-CPU recursion guard skips nested runs).
        Some(p) => Some(unsafe { &mut *p }),
        None => {
            count(counter::LOST_NO_SCRATCH);
            None
        }
    }
}

/// Wakes userspace only once `wakeup_bytes` wait in the ring buffer, so a burst costs one
/// wakeup; userspace also drains on a timer. 0 keeps the kernel's default (wake every time).
/// Also records how full the ring buffer is (`RINGBUF_USED_BYTES`).
#[inline(always)]
pub fn wakeup_flags(len: usize) -> u64 {
    // BPF_RB_AVAIL_DATA = 0: bytes written but not yet consumed.
    let used = EVENTS.query(0);
    if let Some(p) = COUNTERS.get_ptr_mut(counter::RINGBUF_USED_BYTES) {
        // SAFETY: per-CPU slot, only this CPU writes it while this program runs.
        unsafe { *p = used };
    }
    let wakeup = config().wakeup_bytes;
    if wakeup == 0 {
        0
    } else if used + len as u64 >= wakeup {
        BPF_RB_FORCE_WAKEUP as u64
    } else {
        BPF_RB_NO_WAKEUP as u64
    }
}

/// Sends the first `len` bytes of the scratch buffer.
#[inline(always)]
pub fn submit(buf: &[u8; SCRATCH_LEN], len: usize, lost_counter: u32, emitted_counter: u32) {
    if len > SCRATCH_LEN {
        return;
    }
    let flags = wakeup_flags(len);
    // SAFETY: len <= SCRATCH_LEN, checked above.
    let data = unsafe { core::slice::from_raw_parts(buf.as_ptr(), len) };
    match EVENTS.output::<[u8]>(data, flags) {
        Ok(()) => count(emitted_counter),
        Err(_) => count(lost_counter),
    }
}
