//! Connecting to a sensor: over its Unix socket, or over TCP with TLS (mutual TLS with a client
//! certificate).

use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{Context, Result};
use jobwatch_proto::v1::sensor_client::SensorClient;
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::args::{DEFAULT_SOCKET, Target};
use crate::error::{UsageError, io_message};

/// How long connecting over TCP may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

pub async fn connect(target: &Target) -> Result<SensorClient<Channel>> {
    let channel = match &target.address {
        Some(address) => connect_tls(target, address).await?,
        None => {
            let path = target
                .sensor
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_SOCKET));
            connect_socket(path, "the sensor").await?
        }
    };
    Ok(SensorClient::new(channel))
}

/// Connects to the Unix socket of `what` ("the sensor", "the collector").
pub async fn connect_socket(path: PathBuf, what: &str) -> Result<Channel> {
    let shown = path.display().to_string();
    let connector = tower::service_fn(move |_| {
        let path = path.clone();
        async move {
            let stream = tokio::net::UnixStream::connect(path).await?;
            Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
        }
    });
    // The URI is a placeholder: the connector ignores it.
    let endpoint = Endpoint::try_from("http://[::]:50051")?;
    endpoint
        .connect_with_connector(connector)
        .await
        .map_err(|e| anyhow::anyhow!("cannot connect to {what} at {shown}: {}", cause(&e, what)))
}

async fn connect_tls(target: &Target, address: &str) -> Result<Channel> {
    if !address.starts_with("https://") {
        return Err(UsageError(format!(
            "--address must be an https:// URL (the sensor's TCP endpoint uses TLS), not {address:?}"
        ))
        .into());
    }
    let mut tls = ClientTlsConfig::new();
    if let Some(ca) = &target.ca {
        tls = tls.ca_certificate(Certificate::from_pem(read(ca, "CA certificate")?));
    }
    if let (Some(cert), Some(key)) = (&target.cert, &target.key) {
        tls = tls.identity(Identity::from_pem(
            read(cert, "client certificate")?,
            read(key, "client key")?,
        ));
    }
    let endpoint = Endpoint::from_shared(address.to_string())
        .map_err(|e| UsageError(format!("--address {address:?} is not a valid URL: {e}")))?
        .connect_timeout(CONNECT_TIMEOUT)
        .tls_config(tls)
        .with_context(|| format!("cannot set up TLS for {address}"))?;
    endpoint.connect().await.map_err(|e| {
        anyhow::anyhow!(
            "cannot connect to the sensor at {address}: {}",
            cause(&e, "the sensor")
        )
    })
}

fn read(path: &Path, what: &str) -> Result<Vec<u8>> {
    std::fs::read(path).map_err(|e| {
        anyhow::anyhow!(
            "cannot read the {what} {}: {}",
            path.display(),
            io_message(&e)
        )
    })
}

/// The innermost cause of a connection error, with a hint when `what` ("the sensor", "the
/// collector") seems absent.
fn cause(error: &tonic::transport::Error, what: &str) -> String {
    let mut innermost: &dyn std::error::Error = error;
    while let Some(source) = innermost.source() {
        innermost = source;
    }
    let mut io: Option<&std::io::Error> = None;
    let mut current: Option<&dyn std::error::Error> = Some(error);
    while let Some(e) = current {
        if let Some(found) = e.downcast_ref::<std::io::Error>() {
            io = Some(found);
        }
        current = e.source();
    }
    match io {
        Some(io) => {
            let hint = match io.kind() {
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused => {
                    format!(" (is {what} running?)")
                }
                std::io::ErrorKind::PermissionDenied => {
                    " (is this user allowed to use the socket?)".to_string()
                }
                _ => String::new(),
            };
            format!("{}{hint}", io_message(io))
        }
        None => innermost.to_string(),
    }
}
