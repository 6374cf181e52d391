//! Container images built locally, for a containerd that cannot reach any registry.
//!
//! Both images are OCI image-layout tarballs (what `ctr images import` reads) with one
//! uncompressed layer: a statically linked busybox at `/bin/busybox`, a symlink for every applet
//! it has (`/bin/sh`, `/bin/ls`, ...), `/tmp` (mode 1777), and `/etc/passwd` and `/etc/group` with
//! root and nobody. The busybox image runs `sh` by default; the pause image (the pod sandbox) is
//! the same layer with the entrypoint `/bin/sleep 2147483647`.
//!
//! The tar files, SHA-256 digests and image layouts are written by `xtask::oci`, the same code
//! that builds the sensor and collector images (`cargo xtask image`).

use std::{
    path::{Path, PathBuf},
    process::Command,
};

pub use xtask::oci::sha256_hex;
use xtask::oci::{ImageConfig, TarWriter, elf_is_static};

/// The reference of the busybox image, as a pod spec's `image: busybox:jobwatch` normalizes.
pub const BUSYBOX_REF: &str = "docker.io/library/busybox:jobwatch";
/// The reference of the pause image, used as containerd's `sandbox_image`.
pub const PAUSE_REF: &str = "registry.k8s.io/pause:jobwatch";

/// Applets the images must have: scenario scripts rely on them.
pub const REQUIRED_APPLETS: &[&str] = &[
    "sh", "ls", "cat", "echo", "touch", "cp", "chmod", "mkdir", "rm", "sleep", "id", "wget", "nc",
    "tar", "gzip", "true", "false", "env", "mkfifo", "ln", "mv", "date", "find", "grep", "head",
    "tail", "sed",
];

/// Where the busybox-static package puts busybox.
const BUSYBOX_CANDIDATES: &[&str] = &["/bin/busybox", "/usr/bin/busybox"];

/// `PATH` inside the images.
const IMAGE_PATH: &str = "PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// An image tarball on disk.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    /// The name containerd gives it on import (`docker.io/library/busybox:jobwatch`).
    pub reference: &'static str,
    /// The OCI image-layout tarball.
    pub tarball: PathBuf,
    /// `sha256:<hex>` of the image manifest.
    pub manifest_digest: String,
    /// `sha256:<hex>` of the image config: the image id CRI reports.
    pub config_digest: String,
}

/// Builds the busybox and pause images into `dir` (created if missing); returns them in that
/// order. Panics with a clear message when busybox-static is missing.
pub fn build_images(dir: &Path) -> Vec<BuiltImage> {
    std::fs::create_dir_all(dir)
        .unwrap_or_else(|e| panic!("create image directory {}: {e}", dir.display()));
    let busybox = find_static_busybox();
    let layer = busybox_layer(&busybox);
    vec![
        write_image(dir, "busybox", BUSYBOX_REF, &layer, None, Some(&["sh"])),
        write_image(
            dir,
            "pause",
            PAUSE_REF,
            &layer,
            Some(&["/bin/sleep", "2147483647"]),
            None,
        ),
    ]
}

/// The statically linked busybox binary of this machine.
pub fn find_static_busybox() -> PathBuf {
    let mut found = Vec::new();
    for candidate in BUSYBOX_CANDIDATES {
        let path = Path::new(candidate);
        let Ok(bytes) = std::fs::read(path) else {
            continue;
        };
        match elf_is_static(&bytes) {
            Some(true) => return path.to_path_buf(),
            Some(false) => found.push(format!("{candidate} (dynamically linked)")),
            None => found.push(format!("{candidate} (not a 64-bit ELF executable)")),
        }
    }
    panic!(
        "no statically linked busybox (looked at {}; found: {}): a container image needs the \
         static one: `apt-get install -y busybox-static` (or `cargo xtask setup`)",
        BUSYBOX_CANDIDATES.join(", "),
        if found.is_empty() {
            "nothing".to_string()
        } else {
            found.join(", ")
        }
    )
}

/// The applets `busybox --list` names.
fn applets(busybox: &Path) -> Vec<String> {
    let out = Command::new(busybox)
        .arg("--list")
        .output()
        .unwrap_or_else(|e| panic!("run `{} --list`: {e}", busybox.display()));
    assert!(
        out.status.success(),
        "`{} --list` failed: {}",
        busybox.display(),
        String::from_utf8_lossy(&out.stderr)
    );
    let list: Vec<String> = String::from_utf8_lossy(&out.stdout)
        .lines()
        .map(str::trim)
        .filter(|a| !a.is_empty() && *a != "busybox" && !a.contains('/'))
        .map(str::to_string)
        .collect();
    let missing: Vec<&str> = REQUIRED_APPLETS
        .iter()
        .copied()
        .filter(|a| !list.iter().any(|l| l == a))
        .collect();
    assert!(
        missing.is_empty(),
        "{} lacks applets the test images need: {}",
        busybox.display(),
        missing.join(", ")
    );
    list
}

/// The image's only layer, an uncompressed tar.
fn busybox_layer(busybox: &Path) -> Vec<u8> {
    let binary =
        std::fs::read(busybox).unwrap_or_else(|e| panic!("read {}: {e}", busybox.display()));
    let mut tar = TarWriter::default();
    for dir in [
        "bin/", "dev/", "etc/", "proc/", "root/", "sys/", "usr/", "usr/bin/", "var/",
    ] {
        tar.dir(dir, 0o755);
    }
    tar.dir("tmp/", 0o1777);
    tar.file("bin/busybox", 0o755, &binary);
    for applet in applets(busybox) {
        tar.symlink(&format!("bin/{applet}"), "busybox");
    }
    // Shebangs such as `#!/usr/bin/env sh`.
    tar.symlink("usr/bin/env", "../../bin/busybox");
    tar.file(
        "etc/passwd",
        0o644,
        b"root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/false\n",
    );
    tar.file("etc/group", 0o644, b"root:x:0:\nnogroup:x:65534:\n");
    tar.finish()
        .expect("busybox layer entry names fit in a tar header")
}

/// Writes one OCI image-layout tarball: `<dir>/<name>.tar`.
fn write_image(
    dir: &Path,
    name: &str,
    reference: &'static str,
    layer: &[u8],
    entrypoint: Option<&[&str]>,
    cmd: Option<&[&str]>,
) -> BuiltImage {
    let strings = |list: &[&str]| list.iter().map(|s| (*s).to_string()).collect();
    let config = ImageConfig {
        reference: reference.to_string(),
        entrypoint: entrypoint.map(strings),
        cmd: cmd.map(strings),
        env: vec![IMAGE_PATH.to_string()],
        working_dir: "/".to_string(),
        created_by: "jobwatch tests".to_string(),
        ..ImageConfig::default()
    };
    let tarball = dir.join(format!("{name}.tar"));
    let digests = xtask::oci::write_image_layout(&tarball, &config, layer)
        .unwrap_or_else(|e| panic!("write {}: {e:#}", tarball.display()));
    BuiltImage {
        reference,
        tarball,
        manifest_digest: digests.manifest,
        config_digest: digests.config,
    }
}
