//! OCI image-layout tarballs (what `ctr images import` and `docker load` read), written by hand:
//! a ustar writer, SHA-256, and the index/manifest/config JSON. No tar, hashing or JSON crate:
//! this crate is a build-dependency of the sensor and stays light.
//!
//! `cargo xtask image` builds the sensor and collector images with it, and the integration tests
//! build their busybox and pause images with it (`jobwatch_tests::image`), so both go through
//! one writer.

use std::{fmt::Write as _, path::Path};

use anyhow::{Context as _, Result, bail};

use crate::json::Json;

/// The modification time of every tar entry and the `created` time of every image, so that the
/// same inputs give the same digests on every build.
pub const EPOCH: &str = "2026-01-01T00:00:00Z";
const MTIME: u64 = 1_767_225_600; // EPOCH in seconds

/// What an image runs and how (the `config` object of an OCI image config).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct ImageConfig {
    /// The name containerd gives the image on import (`docker.io/library/busybox:jobwatch`).
    pub reference: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    /// `KEY=value` pairs.
    pub env: Vec<String>,
    /// `uid:gid`, or empty for root.
    pub user: String,
    pub working_dir: String,
    /// Image labels (OCI annotations keys such as `org.opencontainers.image.title`).
    pub labels: Vec<(String, String)>,
    /// `<port>/tcp`.
    pub exposed_ports: Vec<String>,
    /// What made the layer (the image history's `created_by`).
    pub created_by: String,
}

/// The digests of a written image.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ImageDigests {
    /// `sha256:<hex>` of the image manifest.
    pub manifest: String,
    /// `sha256:<hex>` of the image config: the image id CRI reports.
    pub config: String,
    /// `sha256:<hex>` of the (uncompressed) layer.
    pub layer: String,
}

/// The image config JSON (`application/vnd.oci.image.config.v1+json`) for one layer.
#[must_use]
pub fn config_json(image: &ImageConfig, layer_digest: &str) -> String {
    let optional =
        |list: &Option<Vec<String>>| list.as_ref().map_or(Json::Null, |l| Json::strings(l));
    let mut config = vec![
        ("Env", Json::strings(&image.env)),
        ("Entrypoint", optional(&image.entrypoint)),
        ("Cmd", optional(&image.cmd)),
        ("WorkingDir", Json::str(&image.working_dir)),
    ];
    if !image.user.is_empty() {
        config.push(("User", Json::str(&image.user)));
    }
    if !image.labels.is_empty() {
        config.push((
            "Labels",
            Json::object(image.labels.iter().map(|(k, v)| (k.clone(), Json::str(v)))),
        ));
    }
    if !image.exposed_ports.is_empty() {
        config.push((
            "ExposedPorts",
            Json::object(
                image
                    .exposed_ports
                    .iter()
                    .map(|p| (p.clone(), Json::object::<&str>([]))),
            ),
        ));
    }
    Json::object([
        ("architecture", Json::str("amd64")),
        ("os", Json::str("linux")),
        ("created", Json::str(EPOCH)),
        ("config", Json::object(config)),
        (
            "rootfs",
            Json::object([
                ("type", Json::str("layers")),
                ("diff_ids", Json::strings(&[layer_digest])),
            ]),
        ),
        (
            "history",
            Json::Array(vec![Json::object([
                ("created", Json::str(EPOCH)),
                ("created_by", Json::str(&image.created_by)),
            ])]),
        ),
    ])
    .render()
}

/// Writes an OCI image-layout tarball with one uncompressed `layer` to `path`.
pub fn write_image_layout(path: &Path, image: &ImageConfig, layer: &[u8]) -> Result<ImageDigests> {
    let tarball = image_layout(image, layer)?;
    std::fs::write(path, &tarball.0).with_context(|| format!("writing {}", path.display()))?;
    Ok(tarball.1)
}

/// The bytes of an OCI image-layout tarball with one uncompressed `layer`, and its digests.
pub fn image_layout(image: &ImageConfig, layer: &[u8]) -> Result<(Vec<u8>, ImageDigests)> {
    let layer_digest = format!("sha256:{}", sha256_hex(layer));
    let config = config_json(image, &layer_digest);
    let config_digest = format!("sha256:{}", sha256_hex(config.as_bytes()));
    let manifest = Json::object([
        ("schemaVersion", Json::Number(2)),
        (
            "mediaType",
            Json::str("application/vnd.oci.image.manifest.v1+json"),
        ),
        (
            "config",
            Json::object([
                (
                    "mediaType",
                    Json::str("application/vnd.oci.image.config.v1+json"),
                ),
                ("digest", Json::str(&config_digest)),
                ("size", Json::Number(config.len() as u64)),
            ]),
        ),
        (
            "layers",
            Json::Array(vec![Json::object([
                (
                    "mediaType",
                    Json::str("application/vnd.oci.image.layer.v1.tar"),
                ),
                ("digest", Json::str(&layer_digest)),
                ("size", Json::Number(layer.len() as u64)),
            ])]),
        ),
    ])
    .render();
    let manifest_digest = format!("sha256:{}", sha256_hex(manifest.as_bytes()));
    let tag = image.reference.rsplit(':').next().unwrap_or("latest");
    let index = Json::object([
        ("schemaVersion", Json::Number(2)),
        (
            "mediaType",
            Json::str("application/vnd.oci.image.index.v1+json"),
        ),
        (
            "manifests",
            Json::Array(vec![Json::object([
                (
                    "mediaType",
                    Json::str("application/vnd.oci.image.manifest.v1+json"),
                ),
                ("digest", Json::str(&manifest_digest)),
                ("size", Json::Number(manifest.len() as u64)),
                (
                    "platform",
                    Json::object([
                        ("architecture", Json::str("amd64")),
                        ("os", Json::str("linux")),
                    ]),
                ),
                (
                    "annotations",
                    Json::object([
                        ("io.containerd.image.name", Json::str(&image.reference)),
                        ("org.opencontainers.image.ref.name", Json::str(tag)),
                    ]),
                ),
            ])]),
        ),
    ])
    .render();

    let mut tar = TarWriter::default();
    tar.file("oci-layout", 0o644, br#"{"imageLayoutVersion":"1.0.0"}"#);
    tar.file("index.json", 0o644, index.as_bytes());
    tar.dir("blobs/", 0o755);
    tar.dir("blobs/sha256/", 0o755);
    for (digest, blob) in [
        (&layer_digest, layer),
        (&config_digest, config.as_bytes()),
        (&manifest_digest, manifest.as_bytes()),
    ] {
        let hex = digest.trim_start_matches("sha256:");
        tar.file(&format!("blobs/sha256/{hex}"), 0o644, blob);
    }
    Ok((
        tar.finish()?,
        ImageDigests {
            manifest: manifest_digest,
            config: config_digest,
            layer: layer_digest,
        },
    ))
}

/// A minimal ustar writer: directories, regular files and symlinks, owned by root (or by the
/// uid/gid given with [`TarWriter::owner`]), with a fixed modification time (so the same content
/// gives the same digest on every build). The first name that does not fit is reported by
/// [`TarWriter::finish`].
#[derive(Default)]
pub struct TarWriter {
    out: Vec<u8>,
    owner: (u32, u32),
    error: Option<String>,
}

impl TarWriter {
    /// Entries added from now on belong to `uid:gid`.
    pub fn owner(&mut self, uid: u32, gid: u32) {
        self.owner = (uid, gid);
    }

    pub fn dir(&mut self, name: &str, mode: u32) {
        self.header(name, mode, 0, b'5', "");
    }

    pub fn file(&mut self, name: &str, mode: u32, data: &[u8]) {
        if self.header(name, mode, data.len() as u64, b'0', "") {
            self.out.extend_from_slice(data);
            let pad = (512 - data.len() % 512) % 512;
            self.out.extend(std::iter::repeat_n(0, pad));
        }
    }

    pub fn symlink(&mut self, name: &str, target: &str) {
        self.header(name, 0o777, 0, b'2', target);
    }

    /// Writes one header; false (and the error kept) when a name does not fit.
    fn header(&mut self, name: &str, mode: u32, size: u64, kind: u8, link: &str) -> bool {
        if name.len() > 100 || link.len() > 100 {
            self.error.get_or_insert_with(|| {
                format!("tar entry name or link target longer than 100 bytes: {name} -> {link}")
            });
            return false;
        }
        let mut h = [0u8; 512];
        let put = |h: &mut [u8; 512], at: usize, bytes: &[u8]| {
            h[at..at + bytes.len()].copy_from_slice(bytes);
        };
        let octal = |width: usize, value: u64| format!("{value:0w$o}\0", w = width - 1);
        let (uid, gid) = self.owner;
        put(&mut h, 0, name.as_bytes());
        put(&mut h, 100, octal(8, u64::from(mode)).as_bytes());
        put(&mut h, 108, octal(8, u64::from(uid)).as_bytes());
        put(&mut h, 116, octal(8, u64::from(gid)).as_bytes());
        put(&mut h, 124, octal(12, size).as_bytes());
        put(&mut h, 136, octal(12, MTIME).as_bytes());
        put(&mut h, 148, b"        ");
        h[156] = kind;
        put(&mut h, 157, link.as_bytes());
        put(&mut h, 257, b"ustar\0");
        put(&mut h, 263, b"00");
        if (uid, gid) == (0, 0) {
            put(&mut h, 265, b"root");
            put(&mut h, 297, b"root");
        }
        let sum: u32 = h.iter().map(|&b| u32::from(b)).sum();
        put(&mut h, 148, format!("{sum:06o}\0 ").as_bytes());
        self.out.extend_from_slice(&h);
        true
    }

    /// The archive, or the first entry that could not be written.
    pub fn finish(mut self) -> Result<Vec<u8>> {
        if let Some(error) = self.error {
            bail!(error);
        }
        self.out.extend(std::iter::repeat_n(0, 1024));
        Ok(self.out)
    }
}

/// Whether a 64-bit little-endian ELF file has no program interpreter (`PT_INTERP`): `None`
/// when it is not such an ELF file.
#[must_use]
pub fn elf_is_static(bytes: &[u8]) -> Option<bool> {
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
        let at = phoff.checked_add(i.checked_mul(phentsize)?)?;
        let p_type = u32::from_le_bytes(bytes.get(at..at.checked_add(4)?)?.try_into().ok()?);
        interp |= p_type == 3;
    }
    Some(!interp)
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
        let bytes = tar.finish().expect("short names");
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

    #[test]
    fn long_names_are_an_error_not_a_panic() {
        let mut tar = TarWriter::default();
        tar.file(&"x".repeat(101), 0o644, b"");
        let error = tar.finish().expect_err("a 101-byte name does not fit");
        assert!(
            error.to_string().contains("longer than 100 bytes"),
            "{error}"
        );
    }

    #[test]
    fn image_layout_names_its_blobs_by_digest() {
        let image = ImageConfig {
            reference: "example.invalid/x:1".into(),
            entrypoint: Some(vec!["/x".into()]),
            user: "65532:65532".into(),
            ..ImageConfig::default()
        };
        let mut layer = TarWriter::default();
        layer.file("x", 0o755, b"#!/bin/sh\n");
        let layer = layer.finish().expect("layer");
        let (tarball, digests) = image_layout(&image, &layer).expect("layout");
        let text = String::from_utf8_lossy(&tarball);
        for digest in [&digests.layer, &digests.config, &digests.manifest] {
            let hex = digest.trim_start_matches("sha256:");
            assert!(text.contains(&format!("blobs/sha256/{hex}")), "{digest}");
        }
        let config = config_json(&image, &digests.layer);
        assert_eq!(
            digests.config,
            format!("sha256:{}", sha256_hex(config.as_bytes()))
        );
        assert!(config.contains(r#""User":"65532:65532""#), "{config}");
        assert!(config.contains(r#""Entrypoint":["/x"]"#), "{config}");
        assert!(text.contains(r#""io.containerd.image.name":"example.invalid/x:1""#));
    }

    #[test]
    fn static_and_dynamic_elf_files_are_told_apart() {
        assert_eq!(elf_is_static(b"not an elf"), None);
        let me = std::fs::read(std::env::current_exe().expect("test binary")).expect("read self");
        assert_eq!(
            elf_is_static(&me),
            Some(false),
            "test binaries are dynamically linked"
        );
    }
}
