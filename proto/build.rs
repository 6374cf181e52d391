//! Generates the Rust code of `jobwatch/v1/jobwatch.proto` (needs `protoc`, which
//! `cargo xtask setup` installs).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=jobwatch/v1/jobwatch.proto");
    // Undecodable requests are the client's fault: InvalidArgument, not tonic's Internal.
    tonic_prost_build::configure()
        .codec_path("crate::codec::StrictCodec")
        // Each reported event stays a slice of the received frame (no copy).
        .bytes(".jobwatch.v1.ReportBatch.events")
        .compile_protos(&["jobwatch/v1/jobwatch.proto"], &["."])?;
    Ok(())
}
