//! The real eBPF programs in the running kernel: real execs and file operations, their events
//! checked field by field. Run one at a time (`--test-threads=1`): they share kernel state.

use std::{
    ffi::CString,
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::Command,
    time::Duration,
};

use jobwatch_tests::{
    Harness, TempDir, as_exec, as_exit, as_file, inode, own_cgroup, privileged, runtime, wait_file,
};
use sensor::{config::Config, event::EventKind, probes::Probes};
use sensor_common::counter;

const WAIT: Duration = Duration::from_secs(5);

fn own_caps(field: &str) -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("status");
    let line = status
        .lines()
        .find_map(|l| l.strip_prefix(field))
        .expect("cap line");
    u64::from_str_radix(line.trim(), 16).expect("hex caps")
}

fn own_mntns() -> u32 {
    let link = std::fs::read_link("/proc/self/ns/mnt").expect("ns link");
    sensor::host::parse_ns_link(link.to_str().expect("utf8")).expect("mnt ns")
}

fn loginuid() -> Option<u32> {
    let v: u32 = std::fs::read_to_string("/proc/self/loginuid")
        .ok()?
        .trim()
        .parse()
        .ok()?;
    (v != u32::MAX).then_some(v)
}

#[test]
fn exec_event_carries_every_field() {
    if !privileged("exec_event_carries_every_field") {
        return;
    }
    let dir = TempDir::new("exec");
    let mut h = Harness::start(&Config::default());
    let mut child = Command::new("/bin/true")
        .args(["one", "two", "three"])
        .current_dir(dir.path())
        .spawn()
        .expect("spawn /bin/true");
    let pid = child.id();
    assert!(child.wait().expect("wait").success());

    let ev = h
        .wait_for(WAIT, |e| as_exec(e).is_some_and(|x| x.process.pid == pid))
        .expect("exec event of /bin/true");
    let x = as_exec(&ev).expect("exec");
    let binary = std::fs::canonicalize("/bin/true").expect("canonical /bin/true");
    assert_eq!(x.filename, "/bin/true");
    assert_eq!(x.binary, binary.to_string_lossy());
    assert_eq!(*x.args, ["/bin/true", "one", "two", "three"]);
    assert_eq!(x.cwd, dir.path().to_string_lossy());
    let p = &x.process;
    assert_eq!(p.pid, pid);
    assert_eq!(p.tid, pid);
    assert_eq!(p.ppid, std::process::id());
    // SAFETY: trivial libc getters.
    let (uid, gid, euid, egid) = unsafe {
        (
            libc::getuid(),
            libc::getgid(),
            libc::geteuid(),
            libc::getegid(),
        )
    };
    assert_eq!((p.uid, p.gid, p.euid, p.egid), (uid, gid, euid, egid));
    assert_eq!(p.loginuid, loginuid());
    // Root keeps its bounding set across exec of a plain binary.
    assert_eq!(p.cap_effective, format!("{:#x}", own_caps("CapBnd:")));
    assert_eq!(p.comm, "true");
    assert_eq!(p.mntns, own_mntns());
    assert!(
        p.host,
        "a process in the sensor's mount namespace is a host process"
    );
    let unified = sensor::procfs::unified_cgroup_root();
    let v2 = own_cgroup(|c| c.is_empty()).expect("cgroup v2 line");
    assert_eq!(
        p.cgroup_id,
        inode(&unified.join(v2.trim_start_matches('/')))
    );
    if let Some(memory) = own_cgroup(|c| c.split(',').any(|x| x == "memory")) {
        let dir = Path::new("/sys/fs/cgroup/memory").join(memory.trim_start_matches('/'));
        assert_eq!(p.cgroup_v1_id, inode(&dir), "v1 memory cgroup id");
    }
    assert!(p.start_boot_ns > 0 && p.start_boot_ns <= ev.boot_ns);
    assert_eq!(p.binary, x.binary);
    let f = x.flags;
    assert!(!f.deleted && !f.memfd && !f.upper_layer && !f.args_truncated && !f.read_error);
    let parent = x
        .parent
        .as_ref()
        .expect("parent known from the process table");
    assert_eq!(parent.pid, std::process::id());
    assert_eq!(
        parent.binary,
        std::fs::read_link("/proc/self/exe")
            .expect("exe")
            .to_string_lossy()
    );

    let exit = h
        .wait_for(WAIT, |e| as_exit(e).is_some_and(|x| x.pid == pid))
        .expect("exit event of /bin/true");
    let exit = as_exit(&exit).expect("exit");
    assert_eq!(exit.exit_code, Some(0));
    assert_eq!(exit.signal, None);
    assert_eq!(
        exit.binary, x.binary,
        "the exit names the binary from the process table"
    );
    assert_eq!(exit.start_boot_ns, p.start_boot_ns);
    assert!(exit.duration_ns > 0);
}

#[test]
fn exit_codes_and_signals() {
    if !privileged("exit_codes_and_signals") {
        return;
    }
    let mut h = Harness::start(&Config::default());
    let mut seven = Command::new("/bin/sh")
        .args(["-c", "exit 7"])
        .spawn()
        .expect("sh");
    let seven_pid = seven.id();
    seven.wait().expect("wait");
    let mut killed = Command::new("/bin/sleep").arg("30").spawn().expect("sleep");
    let killed_pid = killed.id();
    std::thread::sleep(Duration::from_millis(100));
    killed.kill().expect("kill");
    killed.wait().expect("wait");
    let ev = h
        .wait_for(WAIT, |e| as_exit(e).is_some_and(|x| x.pid == seven_pid))
        .expect("exit 7");
    assert_eq!(as_exit(&ev).expect("exit").exit_code, Some(7));
    let ev = h
        .wait_for(WAIT, |e| as_exit(e).is_some_and(|x| x.pid == killed_pid))
        .expect("kill");
    let x = as_exit(&ev).expect("exit");
    assert_eq!((x.exit_code, x.signal), (None, Some(libc::SIGKILL as u32)));
}

#[test]
fn long_argv_is_truncated_and_flagged() {
    if !privileged("long_argv_is_truncated_and_flagged") {
        return;
    }
    let config = Config {
        args_max_bytes: 64,
        ..Config::default()
    };
    let mut h = Harness::start(&config);
    let long = "x".repeat(100);
    let mut child = Command::new("/bin/true")
        .args(["short", &long])
        .spawn()
        .expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    let ev = h
        .wait_for(WAIT, |e| as_exec(e).is_some_and(|x| x.process.pid == pid))
        .expect("exec");
    let x = as_exec(&ev).expect("exec");
    assert!(x.flags.args_truncated);
    assert_eq!(x.args[0], "/bin/true");
    assert_eq!(x.args[1], "short");
    // 64 bytes: "/bin/true\0" (10) + "short\0" (6) leave 48 of the long argument.
    assert_eq!(x.args[2], "x".repeat(48));
}

/// An fd number for `path` that the child inherits (no O_CLOEXEC).
fn open_inheritable(path: &Path, flags: i32) -> i32 {
    let c = CString::new(path.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid C string.
    let fd = unsafe { libc::open(c.as_ptr(), flags) };
    assert!(
        fd >= 0,
        "open {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
    fd
}

#[test]
fn memfd_and_deleted_binaries_are_flagged() {
    if !privileged("memfd_and_deleted_binaries_are_flagged") {
        return;
    }
    let dir = TempDir::new("fileless");
    let mut h = Harness::start(&Config::default());
    let image = std::fs::read("/bin/true").expect("read /bin/true");

    // A memfd: never linked anywhere.
    // SAFETY: a valid C string; flags 0 keep the fd across exec.
    let memfd = unsafe { libc::memfd_create(c"jw-memfd".as_ptr(), 0) };
    assert!(memfd >= 0);
    // SAFETY: writing a buffer we own to our own fd.
    let written = unsafe { libc::write(memfd, image.as_ptr().cast(), image.len()) };
    assert_eq!(written, image.len() as isize);
    let mut child = Command::new(format!("/proc/self/fd/{memfd}"))
        .spawn()
        .expect("exec memfd");
    let memfd_pid = child.id();
    child.wait().expect("wait");
    // SAFETY: closing our own fd.
    unsafe { libc::close(memfd) };

    // A file deleted while still open.
    let path = dir.join("jw-deleted");
    std::fs::write(&path, &image).expect("copy");
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let fd = open_inheritable(&path, libc::O_RDONLY);
    std::fs::remove_file(&path).expect("unlink");
    let mut child = Command::new(format!("/proc/self/fd/{fd}"))
        .spawn()
        .expect("exec deleted");
    let deleted_pid = child.id();
    child.wait().expect("wait");
    // SAFETY: closing our own fd.
    unsafe { libc::close(fd) };

    let ev = h
        .wait_for(WAIT, |e| {
            as_exec(e).is_some_and(|x| x.process.pid == memfd_pid)
        })
        .expect("memfd exec");
    let x = as_exec(&ev).expect("exec");
    assert!(
        x.flags.memfd && x.flags.deleted,
        "memfd flags: {:?}",
        x.flags
    );
    assert!(
        x.binary.starts_with("/memfd:jw-memfd"),
        "binary {}",
        x.binary
    );
    assert_eq!(x.filename, format!("/proc/self/fd/{memfd}"));

    let ev = h
        .wait_for(WAIT, |e| {
            as_exec(e).is_some_and(|x| x.process.pid == deleted_pid)
        })
        .expect("deleted exec");
    let x = as_exec(&ev).expect("exec");
    assert!(
        x.flags.deleted && !x.flags.memfd,
        "deleted flags: {:?}",
        x.flags
    );
    assert_eq!(x.binary, path.to_string_lossy());
}

fn mode_of(path: &Path) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::symlink_metadata(path).expect("stat").mode()
}

#[test]
fn file_creations_are_reported_with_paths() {
    if !privileged("file_creations_are_reported_with_paths") {
        return;
    }
    let dir = TempDir::new("files");
    let mut h = Harness::start(&Config::default());
    let pid = std::process::id();

    // open(O_CREAT) that creates.
    let created = dir.join("created");
    std::fs::write(&created, b"#!/bin/sh\n").expect("create");
    let f = wait_file(&mut h, "create", &created);
    assert_eq!(f.process.pid, pid);
    assert_eq!(f.mode, format!("{:o}", mode_of(&created)));
    assert_eq!(f.source, None);

    // mknod (a FIFO).
    let fifo = dir.join("fifo");
    let c = CString::new(fifo.as_os_str().as_encoded_bytes()).expect("path");
    // SAFETY: a valid C string.
    assert_eq!(
        unsafe { libc::mknod(c.as_ptr(), libc::S_IFIFO | 0o640, 0) },
        0
    );
    let f = wait_file(&mut h, "mknod", &fifo);
    assert_eq!(f.mode, format!("{:o}", libc::S_IFIFO | 0o640));

    // Hard link, symlink, rename.
    let linked = dir.join("linked");
    std::fs::hard_link(&created, &linked).expect("link");
    let f = wait_file(&mut h, "link", &linked);
    assert_eq!(f.source.as_deref(), Some(created.to_str().expect("utf8")));

    let symlink = dir.join("symlink");
    std::os::unix::fs::symlink("created", &symlink).expect("symlink");
    let f = wait_file(&mut h, "symlink", &symlink);
    assert_eq!(f.source.as_deref(), Some("created"));
    assert_eq!(f.mode, "120777");

    let renamed = dir.join("renamed");
    std::fs::rename(&linked, &renamed).expect("rename");
    let f = wait_file(&mut h, "rename", &renamed);
    assert_eq!(f.source.as_deref(), Some(linked.to_str().expect("utf8")));

    // chmod +x by path, then fchmod +x on another file.
    std::fs::set_permissions(&created, std::fs::Permissions::from_mode(0o755)).expect("chmod");
    let f = wait_file(&mut h, "chmod_exec", &created);
    assert_eq!(f.mode, "755");
    let other = dir.join("other");
    let file = std::fs::File::create(&other).expect("create other");
    let _ = wait_file(&mut h, "create", &other);
    file.set_permissions(std::fs::Permissions::from_mode(0o700))
        .expect("fchmod");
    let f = wait_file(&mut h, "chmod_exec", &other);
    assert_eq!(f.mode, format!("{:o}", mode_of(&other)));
    assert_eq!(
        f.old_mode.as_deref(),
        Some(format!("{:o}", 0o100000 | 0o644 & !umask()).as_str())
    );
    // fchmod that adds no execute bit: no event.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .expect("fchmod -x");
    file.set_permissions(std::fs::Permissions::from_mode(0o640))
        .expect("fchmod r");

    // A relative name resolves against the working directory of the caller.
    let status = Command::new("/bin/sh")
        .args([
            "-c",
            "cd \"$1\" && mkfifo rel-fifo && ln -s created rel-link",
            "sh",
        ])
        .arg(dir.path())
        .status()
        .expect("sh");
    assert!(status.success());
    let f = wait_file(&mut h, "mknod", &dir.join("rel-fifo"));
    assert_ne!(f.process.pid, pid);
    let f = wait_file(&mut h, "symlink", &dir.join("rel-link"));
    assert_eq!(f.source.as_deref(), Some("created"));

    // Opening existing files creates nothing: no event, even with O_CREAT.
    std::fs::OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(false)
        .open(&created)
        .expect("reopen");
    std::fs::File::open(&created).expect("open");
    // A failed create (no such directory) is not an event either.
    assert!(std::fs::File::create(dir.join("missing/x")).is_err());
    let marker = dir.join("marker");
    std::fs::write(&marker, b"").expect("marker");
    let _ = wait_file(&mut h, "create", &marker);
    h.drain(Duration::from_millis(200));
    let creates: Vec<_> = h
        .events
        .iter()
        .filter_map(as_file)
        .filter(|f| f.operation == "create" && f.path == created.to_string_lossy())
        .collect();
    assert_eq!(
        creates.len(),
        1,
        "only the first open created {}",
        created.display()
    );
    let chmods = h
        .events
        .iter()
        .filter_map(as_file)
        .filter(|f| f.operation == "chmod_exec" && f.path == other.to_string_lossy())
        .count();
    assert_eq!(
        chmods, 1,
        "fchmod without a new execute bit is not reported"
    );
    assert!(
        !h.events
            .iter()
            .filter_map(as_file)
            .any(|f| f.path.contains("missing"))
    );
}

fn umask() -> u32 {
    // SAFETY: umask is read by setting and restoring it.
    unsafe {
        let m = libc::umask(0o022);
        libc::umask(m);
        m
    }
}

/// Unmounts a bind mount when dropped, also when the test fails.
struct BindMount(PathBuf);

impl BindMount {
    fn new(source: &Path, target: &Path) -> BindMount {
        let c = |p: &Path| CString::new(p.as_os_str().as_encoded_bytes()).expect("path");
        let (src, dst) = (c(source), c(target));
        // SAFETY: valid C strings; a bind mount takes no file system type or data.
        let rc = unsafe {
            libc::mount(
                src.as_ptr(),
                dst.as_ptr(),
                std::ptr::null(),
                libc::MS_BIND,
                std::ptr::null(),
            )
        };
        assert_eq!(rc, 0, "bind mount: {}", std::io::Error::last_os_error());
        BindMount(target.to_path_buf())
    }
}

impl Drop for BindMount {
    fn drop(&mut self) {
        let dst = CString::new(self.0.as_os_str().as_encoded_bytes()).expect("path");
        // SAFETY: a valid C string.
        unsafe { libc::umount2(dst.as_ptr(), libc::MNT_DETACH) };
    }
}

/// Makes directories named `component` under `root`, one inside the other, while another one
/// still leaves more than `reserve` bytes of `PATH_MAX`, and returns the path of a file in the
/// deepest whose name (of `fill`) makes it exactly `PATH_MAX` bytes long.
fn path_of_path_max(root: &Path, component: &str, reserve: usize, fill: char) -> PathBuf {
    let mut deep = root.to_path_buf();
    while deep.as_os_str().len() + 1 + component.len() + 1 + reserve < sensor_common::PATH_MAX {
        deep.push(component);
    }
    std::fs::create_dir_all(&deep).expect("deep dirs");
    let name = fill
        .to_string()
        .repeat(sensor_common::PATH_MAX - deep.as_os_str().len() - 1);
    assert!(
        (1..=255).contains(&name.len()),
        "name of {} bytes",
        name.len()
    );
    let whole = deep.join(&name);
    assert_eq!(whole.as_os_str().len(), sensor_common::PATH_MAX);
    whole
}

#[test]
fn long_paths_are_whole_up_to_path_max_then_keep_their_root_side() {
    if !privileged("long_paths_are_whole_up_to_path_max_then_keep_their_root_side") {
        return;
    }
    let dir = TempDir::new("long");
    let mut h = Harness::start(&Config::default());
    let component = "d".repeat(200);

    // A path of exactly PATH_MAX bytes is reported whole.
    let whole = path_of_path_max(dir.path(), &component, 101, 'f');
    std::fs::write(&whole, b"").expect("create at PATH_MAX");
    let f = wait_file(&mut h, "create", &whole);
    assert!(!f.path_truncated && !f.read_error);

    // One byte longer: the path is cut at a component boundary, its root side kept (what
    // the prefix filters match), and flagged.
    let mut longer = whole.clone().into_os_string();
    longer.push("x");
    let longer = PathBuf::from(longer);
    std::fs::write(&longer, b"").expect("create past PATH_MAX");
    let full = longer.to_string_lossy().into_owned();
    let root = format!("{}/", dir.path().display());
    let e = h
        .wait_for(WAIT, |e| {
            as_file(e).is_some_and(|f| {
                f.operation == "create" && f.path_truncated && f.path.starts_with(&root)
            })
        })
        .expect("a truncated create event");
    let f = as_file(&e).expect("file event");
    assert!(
        full.starts_with(&format!("{}/", f.path)),
        "{} is not a leading part of {full}",
        f.path
    );
    assert!(
        f.path.len() <= sensor_common::PATH_MAX,
        "{} bytes",
        f.path.len()
    );
    assert!(!f.read_error);
}

/// Names shorter than the dentry's inline name are taken from the walk's one read of the
/// dentry, longer ones read where they live: every length around the boundary (39 bytes fit
/// `d_shortname`'s 40, 40 and more do not) comes out whole and in order, and so does a path
/// of exactly `PATH_MAX` bytes of short names, whose root side is written where the inline
/// copy has no room in front of it and falls back to reading the name.
#[test]
fn names_of_every_length_around_the_inline_boundary_are_whole() {
    if !privileged("names_of_every_length_around_the_inline_boundary_are_whole") {
        return;
    }
    let dir = TempDir::new("inline");
    let mut h = Harness::start(&Config::default());

    let mut nested = dir.path().to_path_buf();
    for (c, len) in [
        ('a', 1),
        ('b', 31),
        ('c', 32),
        ('d', 38),
        ('e', 39),
        ('f', 40),
        ('g', 41),
    ] {
        nested.push(c.to_string().repeat(len));
    }
    std::fs::create_dir_all(&nested).expect("nested dirs");
    for (c, len) in [('h', 1), ('i', 39), ('j', 40), ('k', 255)] {
        let file = nested.join(c.to_string().repeat(len));
        std::fs::write(&file, b"").expect("create");
        let f = wait_file(&mut h, "create", &file);
        assert!(!f.path_truncated && !f.read_error, "{}", file.display());
    }

    // Exactly PATH_MAX bytes of 30-byte names.
    let whole = path_of_path_max(dir.path(), &"s".repeat(30), 30, 't');
    let name_len = whole.file_name().expect("a name").len();
    assert!((30..=255).contains(&name_len), "name of {name_len} bytes");
    std::fs::write(&whole, b"").expect("create at PATH_MAX");
    let f = wait_file(&mut h, "create", &whole);
    assert!(!f.path_truncated && !f.read_error);
}

#[test]
fn paths_cross_mount_points() {
    if !privileged("paths_cross_mount_points") {
        return;
    }
    let dir = TempDir::new("mounts");
    let (source, target) = (dir.join("source"), dir.join("target"));
    std::fs::create_dir_all(source.join("sub")).expect("source dirs");
    std::fs::create_dir(&target).expect("target dir");
    let _mount = BindMount::new(&source, &target);
    let mut h = Harness::start(&Config::default());

    // Created through the mount: named by the mount point, not by the mounted directory.
    let through = target.join("sub/created");
    std::fs::write(&through, b"").expect("create through the mount");
    let f = wait_file(&mut h, "create", &through);
    assert!(!f.path_truncated && !f.read_error);
    // The mount's own root, and the source side still named as itself.
    let at_root = target.join("at-root");
    std::fs::write(&at_root, b"").expect("create at the mount's root");
    let _ = wait_file(&mut h, "create", &at_root);
    let direct = source.join("sub/direct");
    std::fs::write(&direct, b"").expect("create in the source");
    let _ = wait_file(&mut h, "create", &direct);
}

#[test]
fn path_and_host_filters_apply_in_the_kernel() {
    if !privileged("path_and_host_filters_apply_in_the_kernel") {
        return;
    }
    let dir = TempDir::new("filters");
    let ignored = dir.join("ignored");
    std::fs::create_dir(&ignored).expect("dir");
    let config = Config {
        ignore_path_prefixes: vec![format!("{}/", ignored.display())],
        ..Config::default()
    };
    let mut h = Harness::start(&config);
    std::fs::write(ignored.join("quiet"), b"").expect("quiet");
    let kept = dir.join("kept");
    std::fs::write(&kept, b"").expect("kept");
    let _ = wait_file(&mut h, "create", &kept);
    h.drain(Duration::from_millis(200));
    assert!(
        !h.events
            .iter()
            .filter_map(as_file)
            .any(|f| f.path.contains("/ignored/"))
    );
    assert!(h.kernel_counters().get(counter::FILTERED_PATH) >= 1);
    h.stop();

    // Containers only: this host process's exec is dropped in the kernel.
    let config = Config {
        report_host_processes: false,
        ..Config::default()
    };
    let mut h = Harness::start(&config);
    let before = h.kernel_counters().get(counter::FILTERED_HOST);
    let mut child = Command::new("/bin/true").spawn().expect("spawn");
    let pid = child.id();
    child.wait().expect("wait");
    assert!(
        h.wait_for(Duration::from_secs(1), |e| as_exec(e)
            .is_some_and(|x| x.process.pid == pid))
            .is_none()
    );
    assert!(h.kernel_counters().get(counter::FILTERED_HOST) > before);
}

#[test]
fn tiny_ring_buffer_counts_every_drop() {
    if !privileged("tiny_ring_buffer_counts_every_drop") {
        return;
    }
    let dir = TempDir::new("burst");
    let config = Config {
        ring_buffer_bytes: 4096,
        // Only this burst's files reach the ring buffer.
        include_path_prefixes: vec![format!("{}/", dir.path().display())],
        report_host_processes: true,
        ..Config::default()
    };
    let rt = runtime();
    let probes = {
        let _guard = rt.enter();
        Probes::load(&config).expect("probes load")
    };
    // Nothing reads while the burst runs: a 4 KiB ring holds a handful of records.
    const FILES: usize = 2000;
    for i in 0..FILES {
        std::fs::write(dir.join(&format!("f{i}")), b"").expect("create");
    }
    let mut h = Harness::from_probes(rt, probes, &config);
    h.drain(Duration::from_millis(1500));
    // Stopping detaches first, then reports the final losses: the counts are then exact.
    h.stop();
    let prefix = format!("{}/", dir.path().display());
    let received = h
        .events
        .iter()
        .filter_map(as_file)
        .filter(|f| f.operation == "create" && f.path.starts_with(&prefix))
        .count() as u64;
    let counters = h.final_counters.expect("final counters");
    let lost = counters.get(counter::LOST_RINGBUF_FILE);
    assert!(
        lost > 0,
        "a 4 KiB ring buffer must overflow under {FILES} creations"
    );
    assert!(received > 0, "the ring buffer held some records");
    assert_eq!(
        received + lost,
        FILES as u64,
        "received {received} + lost {lost}"
    );
    // The loss is reported in the stream as well.
    let reported: u64 = h
        .events
        .iter()
        .filter_map(|e| match &e.kind {
            EventKind::LostEvents(l) if l.cause == "ring_buffer_full" => Some(l.count),
            _ => None,
        })
        .sum();
    assert_eq!(
        reported,
        counters.lost_ringbuf(),
        "every kernel loss is reported"
    );
}

#[test]
fn detaches_on_shutdown() {
    if !privileged("detaches_on_shutdown") {
        return;
    }
    let dir = TempDir::new("detach");
    // Only this sensor's programs count: another sensor may run on the machine.
    let others = loaded_programs();
    let mut h = Harness::start(&Config::default());
    let before = dir.join("before");
    std::fs::write(&before, b"").expect("create");
    let _ = wait_file(&mut h, "create", &before);
    let ours: Vec<(u32, String)> = loaded_programs()
        .into_iter()
        .filter(|p| !others.contains(p))
        .collect();
    assert!(
        ours.iter().any(|(_, n)| n.starts_with("exit_open")),
        "loaded: {ours:?}"
    );
    h.stop();
    // The kernel frees a program after an RCU grace period once its last
    // link and fd are closed, so a program may stay listed for a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    let left = loop {
        let left: Vec<(u32, String)> = loaded_programs()
            .into_iter()
            .filter(|p| ours.contains(p))
            .collect();
        if left.is_empty() || std::time::Instant::now() > deadline {
            break left;
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    };
    assert!(left.is_empty(), "still loaded 10 s after stop: {left:?}");
}

/// (id, name) of every BPF program loaded in the kernel.
fn loaded_programs() -> Vec<(u32, String)> {
    aya::programs::loaded_programs()
        .filter_map(Result::ok)
        .map(|p| (p.id(), p.name_as_str().unwrap_or_default().to_string()))
        .collect()
}
