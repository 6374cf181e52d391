# jobwatch container images, for users who build with Docker or buildah:
#
#   docker build --target sensor    -t jobwatch/sensor:0.1.0 .
#   docker build --target collector -t jobwatch/collector:0.1.0 .
#
# Without a Docker engine, `cargo xtask image` writes the same two images as OCI tarballs
# (target/images/jobwatch-{sensor,collector}.tar) from the release binaries. Both describe the
# same image: Debian 12 (bookworm) glibc and libgcc_s, the binaries with their debug info
# stripped at the same paths, the same entrypoint, user, labels and ports
# (xtask/src/image.rs holds that description; its unit tests check this file against it).

# --- build: the release binaries (the eBPF object is built and embedded by sensor/build.rs) ---
FROM rust:1.95-bookworm AS build
# What `cargo xtask setup` installs for building (xtask/src/setup.rs, BUILD_APT_PACKAGES and
# bpf-linker; a unit test keeps this list in step): LLVM 22 comes from apt.llvm.org on bookworm.
RUN apt-get update \
 && apt-get install -y --no-install-recommends ca-certificates gnupg wget \
 && wget -qO /etc/apt/trusted.gpg.d/apt.llvm.org.asc https://apt.llvm.org/llvm-snapshot.gpg.key \
 && echo "deb http://apt.llvm.org/bookworm/ llvm-toolchain-bookworm-22 main" \
      > /etc/apt/sources.list.d/llvm-22.list \
 && apt-get update \
 && apt-get install -y --no-install-recommends llvm-22-dev libpolly-22-dev libzstd-dev zlib1g-dev protobuf-compiler \
 && rm -rf /var/lib/apt/lists/*
RUN rustup component add rust-src \
 && PATH=/usr/lib/llvm-22/bin:$PATH cargo install bpf-linker --version ^0.13 --no-default-features --features llvm-22
WORKDIR /src
COPY . .
RUN cargo build --release --package jobwatch-sensor --bin sensor \
      --package jobwatch-collector --bin collector --package jobwatch-cli --bin jobwatch \
 && strip --strip-debug target/release/sensor target/release/collector target/release/jobwatch

# --- sensor: runs as root (loading eBPF programs needs CAP_BPF, CAP_PERFMON, CAP_SYS_ADMIN) ---
FROM gcr.io/distroless/cc-debian12 AS sensor
LABEL org.opencontainers.image.title="jobwatch-sensor" \
      org.opencontainers.image.description="jobwatch node sensor (eBPF): execs, exits and file creations of Job and CronJob pods" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/sensor /usr/local/bin/sensor
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 0:0
EXPOSE 9090/tcp 9464/tcp
ENTRYPOINT ["/usr/local/bin/sensor"]

# --- collector (and the jobwatch CLI): runs as nonroot (65532) ---
FROM gcr.io/distroless/cc-debian12 AS collector
LABEL org.opencontainers.image.title="jobwatch-collector" \
      org.opencontainers.image.description="jobwatch collector: stores what the sensors report (embedded SQLite) and serves queries" \
      org.opencontainers.image.version="0.1.0" \
      org.opencontainers.image.licenses="Apache-2.0"
COPY --from=build /src/target/release/collector /usr/local/bin/collector
COPY --from=build /src/target/release/jobwatch /usr/local/bin/jobwatch
ENV PATH=/usr/local/bin:/usr/bin:/bin
USER 65532:65532
EXPOSE 7443/tcp 9464/tcp
ENTRYPOINT ["/usr/local/bin/collector"]
