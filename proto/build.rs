//! Generates the Rust code of `jobwatch/v1/jobwatch.proto` (needs `protoc`, which
//! `cargo xtask setup` installs).

fn main() -> Result<(), Box<dyn std::error::Error>> {
    println!("cargo:rerun-if-changed=jobwatch/v1/jobwatch.proto");
    tonic_prost_build::configure().compile_protos(&["jobwatch/v1/jobwatch.proto"], &["."])?;
    Ok(())
}
