//! jobwatch's eBPF programs.
//!
//! One ring buffer (`EVENTS`) carries every record; `COUNTERS` (per CPU) counts what was sent,
//! filtered and lost; `FILTER` and `PATH_FILTER` hold the in-kernel filters userspace sets.
//! Kernel structures are read at offsets that userspace resolves from the running kernel's BTF
//! and writes into `LOAD_CONFIG` (read-only data) before loading: no kprobes, no fixed layouts.
#![no_std]
#![no_main]

mod exec;
mod file;
mod kernel;
mod maps;
mod path;
mod process;

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    // The verifier rejects any program that could reach this; it is never called.
    loop {}
}

#[unsafe(link_section = "license")]
#[unsafe(no_mangle)]
static LICENSE: [u8; 13] = *b"Dual MIT/GPL\0";
