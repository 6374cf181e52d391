//! Container images built locally, for a containerd that cannot reach any registry.
//!
//! Both images are OCI image-layout tarballs (what `ctr images import` reads) with one
//! uncompressed layer: a statically linked busybox at `/bin/busybox`, a symlink for every applet
//! it has (`/bin/sh`, `/bin/ls`, ...), `/tmp` (mode 1777), and `/etc/passwd` and `/etc/group` with
//! root and nobody. The busybox image runs `sh` by default; the pause image (the pod sandbox) is
//! the same layer with the entrypoint `/bin/sleep 2147483647`.
//!
//! The tar files and the SHA-256 digests are made here (no tar or hashing crate is needed).

use std::{
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Command,
};

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
    let layer = Blob {
        digest: format!("sha256:{}", sha256_hex(&layer)),
        bytes: layer,
    };
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

/// Whether a 64-bit little-endian ELF file has no program interpreter (`PT_INTERP`): `None`
/// when it is not such an ELF file.
fn elf_is_static(bytes: &[u8]) -> Option<bool> {
    if bytes.get(..4)? != b"\x7fELF" || *bytes.get(4)? != 2 || *bytes.get(5)? != 1 {
        return None;
    }
    let u16_at = |at: usize| -> Option<usize> {
        Some(u16::from_le_bytes(bytes.get(at..at + 2)?.try_into().ok()?) as usize)
    };
    let phoff =
        usize::try_from(u64::from_le_bytes(bytes.get(0x20..0x28)?.try_into().ok()?)).ok()?;
    let (phentsize, phnum) = (u16_at(0x36)?, u16_at(0x38)?);
    let mut interp = false;
    for i in 0..phnum {
        let at = phoff + i * phentsize;
        let p_type = u32::from_le_bytes(bytes.get(at..at + 4)?.try_into().ok()?);
        interp |= p_type == 3;
    }
    Some(!interp)
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
}

/// Bytes and their `sha256:<hex>` digest.
struct Blob {
    digest: String,
    bytes: Vec<u8>,
}

/// Writes one OCI image-layout tarball: `<dir>/<name>.tar`.
fn write_image(
    dir: &Path,
    name: &str,
    reference: &'static str,
    layer: &Blob,
    entrypoint: Option<&[&str]>,
    cmd: Option<&[&str]>,
) -> BuiltImage {
    let layer_digest = &layer.digest;
    let config = serde_json::json!({
        "architecture": "amd64",
        "os": "linux",
        "created": "2026-01-01T00:00:00Z",
        "config": {
            "Env": [IMAGE_PATH],
            "Entrypoint": entrypoint,
            "Cmd": cmd,
            "WorkingDir": "/",
        },
        "rootfs": { "type": "layers", "diff_ids": [layer_digest] },
        "history": [{ "created": "2026-01-01T00:00:00Z", "created_by": "jobwatch tests" }],
    });
    let config = serde_json::to_vec(&config).expect("image config serializes");
    let config_digest = format!("sha256:{}", sha256_hex(&config));
    let manifest = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.manifest.v1+json",
        "config": {
            "mediaType": "application/vnd.oci.image.config.v1+json",
            "digest": config_digest,
            "size": config.len(),
        },
        "layers": [{
            "mediaType": "application/vnd.oci.image.layer.v1.tar",
            "digest": layer_digest,
            "size": layer.bytes.len(),
        }],
    });
    let manifest = serde_json::to_vec(&manifest).expect("image manifest serializes");
    let manifest_digest = format!("sha256:{}", sha256_hex(&manifest));
    let tag = reference.rsplit(':').next().unwrap_or("latest");
    let index = serde_json::json!({
        "schemaVersion": 2,
        "mediaType": "application/vnd.oci.image.index.v1+json",
        "manifests": [{
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "digest": manifest_digest,
            "size": manifest.len(),
            "platform": { "architecture": "amd64", "os": "linux" },
            "annotations": {
                "io.containerd.image.name": reference,
                "org.opencontainers.image.ref.name": tag,
            },
        }],
    });
    let index = serde_json::to_vec(&index).expect("image index serializes");

    let mut tar = TarWriter::default();
    tar.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar.file("index.json", 0o644, &index);
    tar.dir("blobs/", 0o755);
    tar.dir("blobs/sha256/", 0o755);
    for (digest, blob) in [
        (layer_digest, &layer.bytes[..]),
        (&config_digest, &config[..]),
        (&manifest_digest, &manifest[..]),
    ] {
        let hex = digest.trim_start_matches("sha256:");
        tar.file(&format!("blobs/sha256/{hex}"), 0o644, blob);
    }
    let tarball = dir.join(format!("{name}.tar"));
    std::fs::write(&tarball, tar.finish())
        .unwrap_or_else(|e| panic!("write {}: {e}", tarball.display()));
    BuiltImage {
        reference,
        tarball,
        manifest_digest,
        config_digest,
    }
}

/// A minimal ustar writer: directories, regular files and symlinks, owned by root, with a fixed
/// modification time (so the layer digest is the same on every build).
#[derive(Default)]
struct TarWriter {
    out: Vec<u8>,
}

const MTIME: u64 = 1_767_225_600; // 2026-01-01T00:00:00Z

impl TarWriter {
    fn dir(&mut self, name: &str, mode: u32) {
        self.header(name, mode, 0, b'5', "");
    }

    fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        self.header(name, mode, data.len() as u64, b'0', "");
        self.out.extend_from_slice(data);
        let pad = (512 - data.len() % 512) % 512;
        self.out.extend(std::iter::repeat_n(0, pad));
    }

    fn symlink(&mut self, name: &str, target: &str) {
        self.header(name, 0o777, 0, b'2', target);
    }

    fn header(&mut self, name: &str, mode: u32, size: u64, kind: u8, link: &str) {
        assert!(name.len() <= 100, "tar name too long: {name}");
        assert!(link.len() <= 100, "tar link target too long: {link}");
        let mut h = [0u8; 512];
        let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| {
            h[at..at + bytes.len()].copy_from_slice(bytes);
        };
        let octal = |width: usize, value: u64| format!("{value:0w$o}\0", w = width - 1);
        put(&mut h, 0, name.as_bytes());
        put(&mut h, 100, octal(8, u64::from(mode)).as_bytes());
        put(&mut h, 108, octal(8, 0).as_bytes());
        put(&mut h, 116, octal(8, 0).as_bytes());
        put(&mut h, 124, octal(12, size).as_bytes());
        put(&mut h, 136, octal(12, MTIME).as_bytes());
        put(&mut h, 148, b"        ");
        h[156] = kind;
        put(&mut h, 157, link.as_bytes());
        put(&mut h, 257, b"ustar\0");
        put(&mut h, 263, b"00");
        put(&mut h, 265, b"root");
        put(&mut h, 297, b"root");
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
        self.out.extend_from_slice(&h);
    }

    fn finish(mut self) -> Vec<u8> {
        self.out.extend(std::iter::repeat_n(0, 1024));
        self.out
    }
}

/// SHA-256 of `data` (FIPS 180-4), as lowercase hex.
pub fn sha256_hex(data: &[u8]) -> String {
    const K: [u32; 64] = [
        0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4,
        0xab1c5ed5, 0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe,
        0x9bdc06a7, 0xc19bf174, 0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f,
        0x4a7484aa, 0x5cb0a9dc, 0x76f988da, 0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7,
        0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967, 0x27b70a85, 0x2e1b2138, 0x4d2c6dfc,
        0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85, 0xa2bfe8a1, 0xa81a664b,
        0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070, 0x19a4c116,
        0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
        0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7,
        0xc67178f2,
    ];
    let mut h: [u32; 8] = [
        0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab,
        0x5be0cd19,
    ];
    let mut message = data.to_vec();
    message.push(0x80);
    while message.len() % 64 != 56 {
        message.push(0);
    }
    message.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
    for block in message.chunks_exact(64) {
        let mut w = [0u32; 64];
        for (i, word) in block.chunks_exact(4).enumerate() {
            w[i] = u32::from_be_bytes([word[0], word[1], word[2], word[3]]);
        }
        for i in 16..64 {
            let s0 = w[i - 15].rotate_right(7) ^ w[i - 15].rotate_right(18) ^ (w[i - 15] >> 3);
            let s1 = w[i - 2].rotate_right(17) ^ w[i - 2].rotate_right(19) ^ (w[i - 2] >> 10);
            w[i] = w[i - 16]
                .wrapping_add(s0)
                .wrapping_add(w[i - 7])
                .wrapping_add(s1);
        }
        let [mut a, mut b, mut c, mut d, mut e, mut f, mut g, mut hh] = h;
        for i in 0..64 {
            let s1 = e.rotate_right(6) ^ e.rotate_right(11) ^ e.rotate_right(25);
            let ch = (e & f) ^ (!e & g);
            let t1 = hh
                .wrapping_add(s1)
                .wrapping_add(ch)
                .wrapping_add(K[i])
                .wrapping_add(w[i]);
            let s0 = a.rotate_right(2) ^ a.rotate_right(13) ^ a.rotate_right(22);
            let maj = (a & b) ^ (a & c) ^ (b & c);
            let t2 = s0.wrapping_add(maj);
            hh = g;
            g = f;
            f = e;
            e = d.wrapping_add(t1);
            d = c;
            c = b;
            b = a;
            a = t1.wrapping_add(t2);
        }
        for (state, v) in h.iter_mut().zip([a, b, c, d, e, f, g, hh]) {
            *state = state.wrapping_add(v);
        }
    }
    h.iter().fold(String::with_capacity(64), |mut s, v| {
        let _ = write!(s, "{v:08x}");
        s
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_the_standard_vectors() {
        assert_eq!(
            sha256_hex(b""),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            sha256_hex(b"abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            sha256_hex(b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
        // 56 and 64 bytes need a second padding block.
        assert_eq!(
            sha256_hex(&[b'a'; 56]),
            "b35439a4ac6f0948b6d6f9e3c6af0f5f590ce20f1bde7090ef7970686ec6738a"
        );
        assert_eq!(
            sha256_hex(&[b'a'; 64]),
            "ffe054fe7ae0cb6dc65c3af9b61d5209f439851db43d0ba5997337df154668eb"
        );
        assert_eq!(
            sha256_hex(&[b'a'; 1_000_000]),
            "cdc76e5c9914fb9281a1c7e284d73e67f1809a48a497200e046d39ccc7112cd0"
        );
    }

    #[test]
    fn tar_headers_have_valid_checksums() {
        let mut tar = TarWriter::default();
        tar.file("etc/passwd", 0o644, b"root:x:0:0::/:/bin/sh\n");
        tar.symlink("bin/sh", "busybox");
        let bytes = tar.finish();
        assert_eq!(bytes.len(), 512 * 2 + 512 + 1024);
        for header in [&bytes[..512], &bytes[1024..1536]] {
            let stored = std::str::from_utf8(&header[148..154]).expect("ascii checksum");
            let stored = u32::from_str_radix(stored, 8).expect("octal checksum");
            let computed: u32 = header
                .iter()
                .enumerate()
                .map(|(i, &b)| {
                    if (148..156).contains(&i) {
                        32
                    } else {
                        u32::from(b)
                    }
                })
                .sum();
            assert_eq!(stored, computed);
        }
        assert_eq!(&bytes[1024 + 157..1024 + 164], b"busybox");
    }
}
