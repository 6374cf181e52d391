//! jobwatch's public gRPC API, package `jobwatch.v1`: the event envelope, containers, the
//! sensor service. The `.proto` source is `proto/jobwatch/v1/jobwatch.proto`.

pub mod v1 {
    tonic::include_proto!("jobwatch.v1");
}

pub mod codec;
pub mod feed;
pub mod filter;
