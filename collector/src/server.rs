//! Running the collector: the store, the retention task, the gRPC listeners (a Unix socket,
//! mode 0600, and TCP with TLS), `grpc.health.v1`, and the `/metrics` endpoint.

use std::{
    io,
    net::SocketAddr,
    os::unix::fs::{DirBuilderExt, FileTypeExt, PermissionsExt},
    path::{Path, PathBuf},
    sync::Arc,
    time::Duration,
};

use jobwatch_proto::v1::collector_server::CollectorServer;
use tokio::task::JoinHandle;
use tokio_stream::wrappers::UnixListenerStream;
use tokio_util::sync::CancellationToken;
use tonic::transport::{Certificate, Identity, Server, ServerTlsConfig, server::TcpIncoming};

use crate::{
    alerts::{Detection, DetectionError},
    auth::{Policy, Token, TokenError},
    config::{Config, ConfigError},
    detect::rules::{self, RulesError},
    hub::{Hub, SUBSCRIBER_QUEUE},
    metrics::{self, Counters},
    service::{CollectorApi, Shared, now_unix_nano},
    store::{Retention, Store, StoreError},
};

/// Largest `ReportBatch` accepted, bytes.
pub const MAX_DECODING_MESSAGE_BYTES: usize = 16 << 20;
/// Largest HTTP/2 frame a client may send (HTTP/2's default is 16 KiB). A sensor's batch of a
/// thousand events is a few hundred KiB: in 16 KiB frames it took both sides about a third
/// more thread wakeups (11,200-12,100 -> 7,600-9,200 in 4 s of 60,000 files/s; collector CPU
/// per file 1.74-1.95 -> 1.67-1.79 µs).
pub const MAX_FRAME_BYTES: u32 = 1 << 20;

/// Errors starting or running the collector.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// Bad configuration.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The store could not be opened.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The token file could not be read.
    #[error(transparent)]
    Token(#[from] TokenError),
    /// The rules file is not usable.
    #[error("rules: {0}")]
    Rules(#[from] RulesError),
    /// Detection could not be set up.
    #[error(transparent)]
    Detection(#[from] DetectionError),
    /// The socket's directory could not be created.
    #[error("creating the socket directory {path}: {source}")]
    CreateDir {
        /// The directory.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Something other than a socket is in the way.
    #[error("{path} exists and is not a socket; refusing to replace it")]
    NotASocket {
        /// The path.
        path: PathBuf,
    },
    /// Another process serves on the socket.
    #[error("socket {path} is in use by another process")]
    SocketInUse {
        /// The path.
        path: PathBuf,
    },
    /// Binding or preparing the socket failed.
    #[error("binding the socket {path}: {source}")]
    BindUnix {
        /// The path.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// Binding a TCP address failed.
    #[error("binding {what} to TCP {addr}: {source}")]
    BindTcp {
        /// Which listener.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// A TLS file could not be read.
    #[error("reading the TLS file {path}: {source}")]
    ReadTls {
        /// The file.
        path: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The TLS configuration was refused.
    #[error("TLS configuration for TCP {addr}: {source}")]
    Tls {
        /// The address.
        addr: SocketAddr,
        /// Why.
        source: tonic::transport::Error,
    },
    /// An internal task failed.
    #[error("{what} task failed: {source}")]
    Task {
        /// Which task.
        what: &'static str,
        /// Why.
        source: tokio::task::JoinError,
    },
    /// A gRPC server failed.
    #[error("serving on {listener}: {source}")]
    Serve {
        /// Which listener.
        listener: String,
        /// Why.
        source: tonic::transport::Error,
    },
}

/// A started collector.
#[derive(Debug)]
pub struct Running {
    /// The bound TCP address, when `listen_address` is set (useful with port 0).
    pub tcp_addr: Option<SocketAddr>,
    /// The bound metrics address, when `metrics_address` is set.
    pub metrics_addr: Option<SocketAddr>,
    /// The shared state (store, counters, hub).
    pub shared: Arc<Shared>,
    task: JoinHandle<Result<(), ServerError>>,
}

impl Running {
    /// Waits until the collector has stopped (after the cancellation token fired, or a
    /// listener failed).
    pub async fn wait(self) -> Result<(), ServerError> {
        drop(self.shared);
        match self.task.await {
            Ok(r) => r,
            Err(source) => Err(ServerError::Task {
                what: "collector",
                source,
            }),
        }
    }
}

/// Runs the collector until `cancel` fires.
pub async fn run(config: Config, cancel: CancellationToken) -> Result<(), ServerError> {
    start(config, cancel).await?.wait().await
}

/// Opens the store, binds every listener and starts serving; returns once everything is
/// listening. Errors in the configuration, the database or a listener are returned here.
pub async fn start(config: Config, cancel: CancellationToken) -> Result<Running, ServerError> {
    config.validate()?;
    let token = config.token_file.as_deref().map(Token::read).transpose()?;
    let rules = if config.detection {
        Some(rules::load(config.rules.as_deref())?)
    } else {
        None
    };
    let retention = Retention {
        max_events: config.max_events,
        max_age_secs: config.max_age_secs,
    };
    let db = config.db_path.clone();
    let store = Arc::new(
        tokio::task::spawn_blocking(move || Store::open(&db, retention))
            .await
            .map_err(|source| ServerError::Task {
                what: "store open",
                source,
            })??,
    );
    let detection = match rules {
        Some(rules) => {
            let store = store.clone();
            let output = config.alerts_output.clone();
            let d = tokio::task::spawn_blocking(move || {
                Detection::new(rules, &store, output.as_deref())
            })
            .await
            .map_err(|source| ServerError::Task {
                what: "detection setup",
                source,
            })??;
            Some(Arc::new(d))
        }
        None => None,
    };
    let shared = Arc::new(Shared {
        store,
        hub: Hub::new(SUBSCRIBER_QUEUE),
        counters: Counters::default(),
        detection,
    });

    let tcp = match config.listen_address {
        Some(addr) => {
            // A certificate or key that does not load stops the start here, before anything
            // listens.
            let tls = Server::builder()
                .max_frame_size(MAX_FRAME_BYTES)
                .tls_config(tls_config(&config, addr, token.is_some())?)
                .map_err(|source| ServerError::Tls { addr, source })?;
            let listener = tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::BindTcp {
                    what: "the gRPC API",
                    addr,
                    source,
                })?;
            let local = listener.local_addr().unwrap_or(addr);
            Some((listener, tls, local))
        }
        None => None,
    };
    let unix = if config.socket.as_os_str().is_empty() {
        None
    } else {
        Some((bind_unix(&config.socket)?, config.socket.clone()))
    };
    let metrics = match config.metrics_address {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .map_err(|source| ServerError::BindTcp {
                    what: "metrics",
                    addr,
                    source,
                })?,
        ),
        None => None,
    };
    let metrics_addr = metrics.as_ref().and_then(|l| l.local_addr().ok());
    let tcp_addr = tcp.as_ref().map(|t| t.2);

    let (reporter, health) = tonic_health::server::health_reporter();
    reporter
        .set_serving::<CollectorServer<CollectorApi>>()
        .await;
    let service = |policy: Policy| {
        CollectorServer::new(CollectorApi::new(shared.clone(), policy, cancel.clone()))
            .max_decoding_message_size(MAX_DECODING_MESSAGE_BYTES)
    };
    let unix_service = service(Policy {
        token: token.clone(),
        accept_client_cert: false,
        reports: token.is_some(),
        queries: false,
    });
    let tcp_service = service(Policy {
        token,
        accept_client_cert: config.tls_client_ca.is_some(),
        reports: true,
        queries: config.require_auth_for_queries,
    });

    let mut tasks: Vec<JoinHandle<Result<(), ServerError>>> = Vec::new();
    tasks.push(tokio::spawn(retention_task(
        shared.clone(),
        Duration::from_secs(config.retention_interval_secs),
        cancel.clone(),
    )));
    if let Some(listener) = metrics {
        let s = shared.clone();
        let render = move || metrics::render(&s.counters, &s.gauges());
        let c = cancel.clone();
        tasks.push(tokio::spawn(async move {
            metrics::serve(listener, render, c).await;
            Ok(())
        }));
    }
    if let Some((listener, path)) = unix {
        let (health, c) = (health.clone(), cancel.clone());
        tasks.push(tokio::spawn(async move {
            let result = Server::builder()
                .max_frame_size(MAX_FRAME_BYTES)
                .add_service(health)
                .add_service(unix_service)
                .serve_with_incoming_shutdown(UnixListenerStream::new(listener), c.cancelled())
                .await;
            if let Err(e) = std::fs::remove_file(&path) {
                tracing::debug!(path = %path.display(), error = %e, "socket not removed");
            }
            result.map_err(|source| ServerError::Serve {
                listener: path.display().to_string(),
                source,
            })
        }));
    }
    if let Some((listener, mut tls, addr)) = tcp {
        let c = cancel.clone();
        tasks.push(tokio::spawn(async move {
            tls.add_service(health)
                .add_service(tcp_service)
                .serve_with_incoming_shutdown(TcpIncoming::from(listener), c.cancelled())
                .await
                .map_err(|source| ServerError::Serve {
                    listener: addr.to_string(),
                    source,
                })
        }));
    }
    let c = cancel.clone();
    let task = tokio::spawn(async move {
        let mut result = Ok(());
        for t in tasks {
            let r = match t.await {
                Ok(r) => r,
                Err(source) => Err(ServerError::Task {
                    what: "listener",
                    source,
                }),
            };
            if let Err(e) = r {
                // One part failed: stop the others too.
                c.cancel();
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    });
    Ok(Running {
        tcp_addr,
        metrics_addr,
        shared,
        task,
    })
}

/// Deletes old events every `every` until `cancel` fires.
async fn retention_task(
    shared: Arc<Shared>,
    every: Duration,
    cancel: CancellationToken,
) -> Result<(), ServerError> {
    let mut tick = tokio::time::interval(every);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            () = cancel.cancelled() => return Ok(()),
            _ = tick.tick() => {}
        }
        let store = shared.store.clone();
        match tokio::task::spawn_blocking(move || store.retention_pass(now_unix_nano())).await {
            Ok(Ok(n)) => Counters::add(&shared.counters.retention_deleted, n),
            Ok(Err(e)) => tracing::warn!(error = %e, "retention pass failed"),
            Err(e) => tracing::warn!(error = %e, "retention task failed"),
        }
    }
}

fn read(path: &Path) -> Result<Vec<u8>, ServerError> {
    std::fs::read(path).map_err(|source| ServerError::ReadTls {
        path: path.to_path_buf(),
        source,
    })
}

/// The TLS configuration of the TCP listener. With a client CA, client certificates are
/// required, unless a token is configured too (then either credential will do).
fn tls_config(
    config: &Config,
    addr: SocketAddr,
    token: bool,
) -> Result<ServerTlsConfig, ServerError> {
    let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) else {
        return Err(ConfigError::Invalid(format!(
            "listen_address {addr} requires TLS: set tls_cert and tls_key"
        ))
        .into());
    };
    let mut tls = ServerTlsConfig::new().identity(Identity::from_pem(read(cert)?, read(key)?));
    if let Some(ca) = &config.tls_client_ca {
        tls = tls
            .client_ca_root(Certificate::from_pem(read(ca)?))
            .client_auth_optional(token);
    }
    Ok(tls)
}

/// Binds the Unix socket: parent directory created with mode 0700, a stale socket replaced
/// (never another kind of file, never a live socket), the socket made 0600.
fn bind_unix(path: &Path) -> Result<tokio::net::UnixListener, ServerError> {
    let bind_err = |source| ServerError::BindUnix {
        path: path.to_path_buf(),
        source,
    };
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(parent)
            .map_err(|source| ServerError::CreateDir {
                path: parent.to_path_buf(),
                source,
            })?;
    }
    match std::fs::symlink_metadata(path) {
        Ok(meta) if !meta.file_type().is_socket() => {
            return Err(ServerError::NotASocket {
                path: path.to_path_buf(),
            });
        }
        Ok(_) => {
            if std::os::unix::net::UnixStream::connect(path).is_ok() {
                return Err(ServerError::SocketInUse {
                    path: path.to_path_buf(),
                });
            }
            std::fs::remove_file(path).map_err(bind_err)?;
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(bind_err(e)),
    }
    let listener = tokio::net::UnixListener::bind(path).map_err(bind_err)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(bind_err)?;
    Ok(listener)
}
