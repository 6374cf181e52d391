//! A loader that runs code from memory only, as fileless malware does: it copies an
//! executable (argv[1]) into a memfd and executes the memfd with the remaining arguments.
//! Built statically by the detection scenario test (`rustc -C target-feature=+crt-static`)
//! and bind-mounted into a busybox container, where no libc exists.

use std::{
    ffi::{CString, c_char, c_int, c_uint},
    io::{Read, Write},
    os::fd::FromRawFd,
};

unsafe extern "C" {
    fn memfd_create(name: *const c_char, flags: c_uint) -> c_int;
    fn execv(path: *const c_char, argv: *const *const c_char) -> c_int;
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: memfd-exec <executable> <argv0> [args...]");
        std::process::exit(2);
    }
    let mut image = Vec::new();
    std::fs::File::open(&args[1])
        .and_then(|mut f| f.read_to_end(&mut image))
        .unwrap_or_else(|e| {
            eprintln!("memfd-exec: reading {}: {e}", args[1]);
            std::process::exit(1)
        });
    // SAFETY: a valid C string; the fd is owned by the File below.
    let fd = unsafe { memfd_create(c"payload".as_ptr(), 0) };
    if fd < 0 {
        eprintln!("memfd-exec: memfd_create failed");
        std::process::exit(1);
    }
    // SAFETY: fd is a fresh descriptor nobody else owns.
    let mut memfd = unsafe { std::fs::File::from_raw_fd(fd) };
    memfd.write_all(&image).expect("write the memfd");
    std::mem::forget(memfd);
    let path = CString::new(format!("/proc/self/fd/{fd}")).expect("path");
    let argv: Vec<CString> = args[2..]
        .iter()
        .map(|a| CString::new(a.as_str()).expect("arg"))
        .collect();
    let mut ptrs: Vec<*const c_char> = argv.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());
    // SAFETY: NUL-terminated path and argv array of valid C strings.
    unsafe { execv(path.as_ptr(), ptrs.as_ptr()) };
    eprintln!("memfd-exec: execv failed: {}", std::io::Error::last_os_error());
    std::process::exit(1);
}
