//! `cargo xtask image`: the sensor and collector container images, built without a Docker
//! engine, as OCI image-layout tarballs that `ctr -n k8s.io images import` (and `docker load`,
//! `podman load`) accept.
//!
//! Each image is one uncompressed layer holding what the `Dockerfile`'s runtime stages hold
//! (distroless `cc-debian12`: glibc and libgcc_s, `/etc/passwd` with `root` and `nonroot`
//! 65532, `/tmp`) plus the release binaries with their debug info stripped: the shared
//! libraries are the ones `ldd` names for the binaries, copied from this (Debian 12) build host.
//! [`IMAGES`] is the one description of both images; a unit test checks that the `Dockerfile`
//! says the same (binaries, entrypoint, user, labels, ports).

use std::{
    collections::BTreeSet,
    path::{Path, PathBuf},
    process::Command,
};

use anyhow::{Context as _, Result, bail};

use crate::{
    oci::{self, ImageConfig, ImageDigests, TarWriter},
    process, run, setup,
};

/// A binary of the workspace in an image.
#[derive(Clone, Copy, Debug)]
pub struct ImageBinary {
    /// The cargo binary name (`target/<profile>/<name>`).
    pub name: &'static str,
    /// Where it is in the image.
    pub path: &'static str,
}

/// One image: what `cargo xtask image` writes and what the `Dockerfile` target of the same
/// name builds.
#[derive(Clone, Copy, Debug)]
pub struct ImageSpec {
    /// The `Dockerfile` target and the tarball's name (`jobwatch-<target>.tar`).
    pub target: &'static str,
    /// The repository, as manifests name it (`jobwatch/sensor`); containerd stores it as
    /// `docker.io/<repository>:<version>`.
    pub repository: &'static str,
    pub binaries: &'static [ImageBinary],
    pub entrypoint: &'static [&'static str],
    /// `uid:gid`.
    pub user: &'static str,
    pub description: &'static str,
    /// `<port>/tcp`.
    pub exposed_ports: &'static [&'static str],
}

/// The sensor runs as root: loading eBPF programs needs CAP_BPF, CAP_PERFMON and CAP_SYS_ADMIN.
pub const SENSOR_IMAGE: ImageSpec = ImageSpec {
    target: "sensor",
    repository: "jobwatch/sensor",
    binaries: &[ImageBinary {
        name: "sensor",
        path: "/usr/local/bin/sensor",
    }],
    entrypoint: &["/usr/local/bin/sensor"],
    user: "0:0",
    description: "jobwatch node sensor (eBPF): execs, exits and file creations of Job and CronJob pods",
    exposed_ports: &["9090/tcp", "9464/tcp"],
};

/// The collector (and the `jobwatch` CLI, for `kubectl exec`) runs as the unprivileged
/// `nonroot` user.
pub const COLLECTOR_IMAGE: ImageSpec = ImageSpec {
    target: "collector",
    repository: "jobwatch/collector",
    binaries: &[
        ImageBinary {
            name: "collector",
            path: "/usr/local/bin/collector",
        },
        ImageBinary {
            name: "jobwatch",
            path: "/usr/local/bin/jobwatch",
        },
    ],
    entrypoint: &["/usr/local/bin/collector"],
    user: "65532:65532",
    description: "jobwatch collector: stores what the sensors report (embedded SQLite) and serves queries",
    exposed_ports: &["7443/tcp", "9464/tcp"],
};

/// Both images.
pub const IMAGES: &[ImageSpec] = &[SENSOR_IMAGE, COLLECTOR_IMAGE];

/// The version every image is tagged with: the workspace version.
pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// `PATH` in the images.
pub const IMAGE_PATH: &str = "PATH=/usr/local/bin:/usr/bin:/bin";

/// The `nonroot` user of distroless images.
pub const NONROOT_UID: u32 = 65532;

const PASSWD: &str = "root:x:0:0:root:/root:/sbin/nologin\n\
                      nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin\n\
                      nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n";
const GROUP: &str = "root:x:0:\nnogroup:x:65534:\nnonroot:x:65532:\n";

impl ImageSpec {
    /// The reference containerd stores the image under.
    #[must_use]
    pub fn reference(&self) -> String {
        format!("docker.io/{}:{VERSION}", self.repository)
    }

    /// The image labels (the `Dockerfile` sets the same with `LABEL`).
    #[must_use]
    pub fn labels(&self) -> Vec<(String, String)> {
        [
            (
                "org.opencontainers.image.title",
                format!("jobwatch-{}", self.target),
            ),
            (
                "org.opencontainers.image.description",
                self.description.to_string(),
            ),
            ("org.opencontainers.image.version", VERSION.to_string()),
            (
                "org.opencontainers.image.licenses",
                "Apache-2.0".to_string(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect()
    }

    /// The OCI image config.
    #[must_use]
    pub fn config(&self) -> ImageConfig {
        ImageConfig {
            reference: self.reference(),
            entrypoint: Some(self.entrypoint.iter().map(|s| (*s).to_string()).collect()),
            cmd: None,
            env: vec![IMAGE_PATH.to_string()],
            user: self.user.to_string(),
            working_dir: "/".to_string(),
            labels: self.labels(),
            exposed_ports: self
                .exposed_ports
                .iter()
                .map(|s| (*s).to_string())
                .collect(),
            created_by: format!("cargo xtask image ({})", self.target),
        }
    }
}

/// An image tarball written to disk.
#[derive(Clone, Debug)]
pub struct BuiltImage {
    pub reference: String,
    pub tarball: PathBuf,
    pub digests: ImageDigests,
    /// Bytes of the tarball.
    pub size: u64,
}

/// `cargo xtask image`: set up, build the release binaries, write both images to `out` (default
/// `target/images`).
pub fn run(workspace_root: &Path, out: Option<&Path>) -> Result<()> {
    setup::run(workspace_root)?;
    run::build(workspace_root)?;
    let release = crate::host_target_dir(workspace_root).join("release");
    let out = out.map_or_else(
        || crate::host_target_dir(workspace_root).join("images"),
        Path::to_path_buf,
    );
    for spec in IMAGES {
        let image = build(spec, &release, &out)?;
        println!(
            "{} {} ({:.1} MiB, manifest {}, image id {})",
            image.tarball.display(),
            image.reference,
            image.size as f64 / f64::from(1 << 20),
            image.digests.manifest,
            image.digests.config
        );
    }
    eprintln!(
        "==> import on a node with: ctr -n k8s.io images import <tarball> (the manifests in \
         deploy/ name these references)"
    );
    Ok(())
}

/// Writes the image `spec` from the binaries in `bin_dir` (a cargo profile directory such as
/// `target/release`) to `<out>/jobwatch-<target>.tar`.
pub fn build(spec: &ImageSpec, bin_dir: &Path, out: &Path) -> Result<BuiltImage> {
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let layer = layer(spec, bin_dir, out)?;
    let tarball = out.join(format!("jobwatch-{}.tar", spec.target));
    let digests = oci::write_image_layout(&tarball, &spec.config(), &layer)?;
    let size = std::fs::metadata(&tarball)
        .with_context(|| format!("stat {}", tarball.display()))?
        .len();
    Ok(BuiltImage {
        reference: spec.reference(),
        tarball,
        digests,
        size,
    })
}

/// The image's one layer: the base files, the shared libraries the binaries need, and the
/// stripped binaries.
fn layer(spec: &ImageSpec, bin_dir: &Path, scratch: &Path) -> Result<Vec<u8>> {
    let mut binaries = Vec::new();
    let mut libraries = BTreeSet::new();
    for binary in spec.binaries {
        let path = bin_dir.join(binary.name);
        if !process::is_executable(&path) {
            bail!(
                "{} is missing: build it first (`cargo build --release -p <package> --bin {}`)",
                path.display(),
                binary.name
            );
        }
        libraries.extend(shared_libraries(&path)?);
        binaries.push((binary.path, stripped(&path, scratch)?));
    }

    let mut tar = TarWriter::default();
    let mut dirs = BTreeSet::new();
    for dir in [
        "etc",
        "home",
        "root",
        "tmp",
        "usr",
        "usr/local",
        "usr/local/bin",
        "var",
        "var/lib",
    ] {
        dirs.insert(dir.to_string());
    }
    for library in &libraries {
        dirs.extend(parents(library));
    }
    for dir in &dirs {
        tar.dir(
            &format!("{dir}/"),
            if dir == "tmp" { 0o1777 } else { 0o755 },
        );
    }
    tar.file("etc/passwd", 0o644, PASSWD.as_bytes());
    tar.file("etc/group", 0o644, GROUP.as_bytes());
    for library in &libraries {
        let bytes =
            std::fs::read(library).with_context(|| format!("reading {}", library.display()))?;
        let name = library.to_string_lossy();
        tar.file(name.trim_start_matches('/'), 0o755, &bytes);
    }
    for (path, bytes) in &binaries {
        tar.file(path.trim_start_matches('/'), 0o755, bytes);
    }
    // nonroot's home belongs to it, as in distroless.
    tar.owner(NONROOT_UID, NONROOT_UID);
    tar.dir("home/nonroot/", 0o700);
    tar.finish()
}

/// `a/b/c.so` -> `a`, `a/b` (relative, without the file itself).
fn parents(path: &Path) -> Vec<String> {
    let relative = path.to_string_lossy().trim_start_matches('/').to_string();
    let parts: Vec<&str> = relative.split('/').collect();
    (1..parts.len()).map(|n| parts[..n].join("/")).collect()
}

/// The binary's bytes without debug info (`strip --strip-debug`; the symbols stay, for
/// backtraces). Without `strip`, the binary as it is.
fn stripped(path: &Path, scratch: &Path) -> Result<Vec<u8>> {
    let name = path.file_name().map_or_else(
        || "binary".to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let target = scratch.join(format!(".{name}.stripped"));
    let mut strip = Command::new("strip");
    strip.arg("--strip-debug").arg("-o").arg(&target).arg(path);
    let bytes = match strip.output() {
        Ok(out) if out.status.success() => {
            std::fs::read(&target).with_context(|| format!("reading {}", target.display()))?
        }
        Ok(out) => bail!(
            "`{}` failed: {}",
            process::describe(&strip),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => {
            eprintln!("image: `strip` not available ({e}); {name} keeps its debug info");
            std::fs::read(path).with_context(|| format!("reading {}", path.display()))?
        }
    };
    let _ = std::fs::remove_file(&target);
    Ok(bytes)
}

/// The shared libraries (and the program interpreter) `ldd` names for `binary`; none for a
/// static binary.
fn shared_libraries(binary: &Path) -> Result<Vec<PathBuf>> {
    let bytes = std::fs::read(binary).with_context(|| format!("reading {}", binary.display()))?;
    match oci::elf_is_static(&bytes) {
        None => bail!("{} is not a 64-bit ELF executable", binary.display()),
        Some(true) => return Ok(Vec::new()),
        Some(false) => {}
    }
    let mut ldd = Command::new("ldd");
    ldd.arg(binary);
    let out = ldd
        .output()
        .with_context(|| format!("running `{}`", process::describe(&ldd)))?;
    if !out.status.success() {
        bail!(
            "`{}` failed: {}",
            process::describe(&ldd),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    parse_ldd(&String::from_utf8_lossy(&out.stdout))
        .with_context(|| format!("libraries of {}", binary.display()))
}

/// Paths in `ldd` output: `libc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x...)` and
/// `/lib64/ld-linux-x86-64.so.2 (0x...)`; the vDSO has no file. A library that is `not found`
/// is an error.
fn parse_ldd(text: &str) -> Result<Vec<PathBuf>> {
    let mut paths = Vec::new();
    for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
        if line.contains("not found") {
            bail!("a shared library is missing: {line}");
        }
        let path = match line.split_once("=>") {
            Some((_, right)) => right.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(path) = path.filter(|p| p.starts_with('/')) {
            paths.push(PathBuf::from(path));
        }
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ldd_output_gives_the_library_files() {
        let text = "\tlinux-vdso.so.1 (0x00007ffd)\n\
                    \tlibgcc_s.so.1 => /lib/x86_64-linux-gnu/libgcc_s.so.1 (0x00007f57)\n\
                    \tlibc.so.6 => /lib/x86_64-linux-gnu/libc.so.6 (0x00007f57)\n\
                    \t/lib64/ld-linux-x86-64.so.2 (0x00007f57)\n";
        assert_eq!(
            parse_ldd(text).expect("parses"),
            vec![
                PathBuf::from("/lib/x86_64-linux-gnu/libgcc_s.so.1"),
                PathBuf::from("/lib/x86_64-linux-gnu/libc.so.6"),
                PathBuf::from("/lib64/ld-linux-x86-64.so.2"),
            ]
        );
        let error = parse_ldd("\tlibfoo.so.1 => not found\n").expect_err("missing library");
        assert!(error.to_string().contains("libfoo.so.1"), "{error}");
    }

    #[test]
    fn parents_lists_every_directory_above_a_file() {
        assert_eq!(
            parents(Path::new("/lib/x86_64-linux-gnu/libc.so.6")),
            vec!["lib".to_string(), "lib/x86_64-linux-gnu".to_string()]
        );
    }

    #[test]
    fn references_are_fully_qualified_and_versioned() {
        assert_eq!(
            SENSOR_IMAGE.reference(),
            format!("docker.io/jobwatch/sensor:{VERSION}")
        );
        assert_eq!(COLLECTOR_IMAGE.user, "65532:65532");
        assert_eq!(SENSOR_IMAGE.user, "0:0");
    }
}
