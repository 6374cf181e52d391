//! Serving the API: on a Unix socket by default (mode 0600 in a 0700 directory), and on TCP
//! only with TLS (mutual TLS when a client CA is given). Both serve the standard
//! `grpc.health.v1` service next to `jobwatch.v1.Sensor`.

use std::{
    io,
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
};

use jobwatch_proto::v1::sensor_server::SensorServer;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig, server::TcpIncoming};

use crate::api::service::SensorApi;

/// Largest request message accepted, bytes.
pub const MAX_DECODING_MESSAGE_BYTES: usize = 1 << 20;

/// Where and how to listen.
#[derive(Clone, Debug, Default)]
pub struct ApiSettings {
    /// Unix socket path.
    pub socket: Option<PathBuf>,
    /// TCP address; requires `tls_cert` and `tls_key`.
    pub tcp: Option<SocketAddr>,
    /// PEM certificate chain of the server.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the server.
    pub tls_key: Option<PathBuf>,
    /// PEM CA that client certificates must chain to; given, clients must present one.
    pub tls_client_ca: Option<PathBuf>,
}

#[derive(Debug, thiserror::Error)]
pub enum ServeError {
    #[error("no API listener configured (neither a Unix socket nor a TCP address)")]
    NoListener,
    #[error("API on TCP {addr} requires TLS: set both a certificate and a key")]
    TcpWithoutTls { addr: SocketAddr },
    #[error("creating the API socket directory {path}: {source}")]
    CreateDir { path: PathBuf, source: io::Error },
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket { path: PathBuf },
    #[error("API socket {path} is in use by another process")]
    SocketInUse { path: PathBuf },
    #[error("removing the stale API socket {path}: {source}")]
    RemoveStale { path: PathBuf, source: io::Error },
    #[error("binding the API socket {path}: {source}")]
    BindUnix { path: PathBuf, source: io::Error },
    #[error("setting the mode of the API socket {path}: {source}")]
    Chmod { path: PathBuf, source: io::Error },
    #[error("binding the API to TCP {addr}: {source}")]
    BindTcp { addr: SocketAddr, source: io::Error },
    #[error("reading the TLS file {path}: {source}")]
    ReadTls { path: PathBuf, source: io::Error },
    #[error("TLS configuration for TCP {addr}: {source}")]
    Tls {
        addr: SocketAddr,
        source: tonic::transport::Error,
    },
    #[error("serving the API on {listener}: {source}")]
    Serve {
        listener: String,
        source: tonic::transport::Error,
    },
}

/// Serves the API until `cancel` fires. Returns early with an error when a listener cannot be
/// set up or a server fails.
pub async fn serve(
    settings: ApiSettings,
    api: SensorApi,
    cancel: CancellationToken,
) -> Result<(), ServeError> {
    let tcp = match settings.tcp {
        Some(addr) => Some((addr, tls_config(&settings, addr)?)),
        None => None,
    };
    if settings.socket.is_none() && tcp.is_none() {
        return Err(ServeError::NoListener);
    }
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<SensorServer<SensorApi>>().await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    // Event streams end at shutdown; a graceful shutdown would otherwise wait for them forever.
    let sensor = SensorServer::new(api.end_streams_on(cancel.clone()))
        .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES);

    let unix = async {
        let Some(path) = &settings.socket else {
            return Ok(());
        };
        let listener = bind_unix(path)?;
        let result = Server::builder()
            .add_service(health.clone())
            .add_service(sensor.clone())
            .serve_with_incoming_shutdown(UnixListenerStream::new(listener), cancel.cancelled())
            .await;
        // The socket file is ours: leave no stale one behind.
        if let Err(e) = std::fs::remove_file(path) {
            tracing::debug!(path = %path.display(), error = %e, "API socket not removed");
        }
        result.map_err(|source| ServeError::Serve {
            listener: path.display().to_string(),
            source,
        })
    };
    let tcp = async {
        let Some((addr, tls)) = tcp else {
            return Ok(());
        };
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServeError::BindTcp { addr, source })?;
        Server::builder()
            .tls_config(tls)
            .map_err(|source| ServeError::Tls { addr, source })?
            .add_service(health.clone())
            .add_service(sensor.clone())
            .serve_with_incoming_shutdown(TcpIncoming::from(listener), cancel.cancelled())
            .await
            .map_err(|source| ServeError::Serve {
                listener: addr.to_string(),
                source,
            })
    };
    let result = tokio::try_join!(unix, tcp).map(|_| ());
    if result.is_err() {
        // One listener failed: stop the other one too.
        cancel.cancel();
    }
    result
}

/// Serves only `grpc.health.v1`, in plaintext, on `addr` until `cancel` fires: what the
/// kubelet's gRPC probes need (they cannot speak TLS). No sensor data is reachable here.
pub async fn serve_health(addr: SocketAddr, cancel: CancellationToken) -> Result<(), ServeError> {
    let listener = tokio::net::TcpListener::bind(addr)
        .await
        .map_err(|source| ServeError::BindTcp { addr, source })?;
    let (reporter, health) = tonic_health::server::health_reporter();
    reporter.set_serving::<SensorServer<SensorApi>>().await;
    reporter
        .set_service_status("", tonic_health::ServingStatus::Serving)
        .await;
    Server::builder()
        .add_service(health)
        .serve_with_incoming_shutdown(TcpIncoming::from(listener), cancel.cancelled())
        .await
        .map_err(|source| ServeError::Serve {
            listener: format!("health {addr}"),
            source,
        })
}

fn read(path: &Path) -> Result<Vec<u8>, ServeError> {
    std::fs::read(path).map_err(|source| ServeError::ReadTls {
        path: path.to_path_buf(),
        source,
    })
}

/// The TLS configuration TCP requires.
fn tls_config(settings: &ApiSettings, addr: SocketAddr) -> Result<ServerTlsConfig, ServeError> {
    let (Some(cert), Some(key)) = (&settings.tls_cert, &settings.tls_key) else {
        return Err(ServeError::TcpWithoutTls { addr });
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &settings.tls_client_ca {
        tls = tls.client_ca_root(Certificate::from_pem(read(ca)?));
    }
    Ok(tls)
}

/// Binds the Unix socket: parent directory created with mode 0700, a stale socket replaced
/// (never another kind of file, never a live socket), the socket itself made 0600.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServeError> {
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| ServeError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ServeError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServeError::SocketInUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(|source| ServeError::RemoveStale {
                path: path.to_path_buf(),
                source,
            })?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(source) => {
            return Err(ServeError::RemoveStale {
                path: path.to_path_buf(),
                source,
            });
        }
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(|source| ServeError::BindUnix {
        path: path.to_path_buf(),
        source,
    })?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(|source| {
        ServeError::Chmod {
            path: path.to_path_buf(),
            source,
        }
    })?;
    Ok(listener)
}
