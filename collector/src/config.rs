//! The collector's configuration (TOML; unknown fields are refused, naming the field).

use std::{
    net::SocketAddr,
    path::{Path, PathBuf},
};

use serde::Deserialize;

use crate::store::{DEFAULT_MAX_AGE_SECS, DEFAULT_MAX_EVENTS};

/// Default database path.
pub const DEFAULT_DB_PATH: &str = "./jobwatch-collector.db";
/// Default Unix socket.
pub const DEFAULT_SOCKET: &str = "/run/jobwatch/collector.sock";
/// Default seconds between retention passes.
pub const DEFAULT_RETENTION_INTERVAL_SECS: u64 = 10;

/// Errors loading or checking a configuration.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("reading the config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("config file {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What is wrong, naming the field.
        source: toml::de::Error,
    },
    /// Fields that do not go together.
    #[error("config: {0}")]
    Invalid(String),
}

/// Everything the collector needs to know; every field has a documented default.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// SQLite database (default `./jobwatch-collector.db`; `:memory:` for a private one).
    pub db_path: PathBuf,
    /// Unix socket for local reports and queries, mode 0600 (default
    /// `/run/jobwatch/collector.sock`; an empty path disables it).
    pub socket: PathBuf,
    /// TCP address (default none); requires `tls_cert` and `tls_key`.
    pub listen_address: Option<SocketAddr>,
    /// PEM certificate chain of the TCP listener.
    pub tls_cert: Option<PathBuf>,
    /// PEM private key of the TCP listener.
    pub tls_key: Option<PathBuf>,
    /// PEM CA that client certificates must chain to (mTLS).
    pub tls_client_ca: Option<PathBuf>,
    /// File holding the bearer token reporters send (default none).
    pub token_file: Option<PathBuf>,
    /// Queries on TCP need credentials too (default true).
    pub require_auth_for_queries: bool,
    /// Most events kept (default 10,000,000).
    pub max_events: u64,
    /// Oldest event kept, seconds (default 7 days).
    pub max_age_secs: u64,
    /// Seconds between retention passes (default 10).
    pub retention_interval_secs: u64,
    /// Address of the Prometheus endpoint, `GET /metrics` (default none).
    pub metrics_address: Option<SocketAddr>,
    /// Run the T1053.007 detection rules (default true).
    pub detection: bool,
    /// A rules file layered on the shipped rules (YAML; default none: the shipped rules).
    pub rules: Option<PathBuf>,
    /// Also write alerts as JSON lines here (`-` for stdout; default none).
    pub alerts_output: Option<PathBuf>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            db_path: PathBuf::from(DEFAULT_DB_PATH),
            socket: PathBuf::from(DEFAULT_SOCKET),
            listen_address: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            token_file: None,
            require_auth_for_queries: true,
            max_events: DEFAULT_MAX_EVENTS,
            max_age_secs: DEFAULT_MAX_AGE_SECS,
            retention_interval_secs: DEFAULT_RETENTION_INTERVAL_SECS,
            metrics_address: None,
            detection: true,
            rules: None,
            alerts_output: None,
        }
    }
}

impl Config {
    /// Parses a configuration.
    pub fn parse(path: &Path, text: &str) -> Result<Config, ConfigError> {
        toml::from_str(text).map_err(|source| ConfigError::Parse {
            path: path.to_path_buf(),
            source,
        })
    }

    /// Reads and parses the configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Config::parse(path, &text)
    }

    /// Checks the fields that go together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if let Some(addr) = self.listen_address {
            if self.tls_cert.is_none() || self.tls_key.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "listen_address {addr} requires TLS: set tls_cert and tls_key"
                )));
            }
            if self.tls_client_ca.is_none() && self.token_file.is_none() {
                return Err(ConfigError::Invalid(format!(
                    "listen_address {addr}: set tls_client_ca or token_file, or no sensor can \
                     authenticate"
                )));
            }
        }
        if self.socket.as_os_str().is_empty() && self.listen_address.is_none() {
            return Err(ConfigError::Invalid(
                "no listener: socket is empty and listen_address is not set".into(),
            ));
        }
        if self.retention_interval_secs == 0 {
            return Err(ConfigError::Invalid(
                "retention_interval_secs must be at least 1".into(),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_unknown_fields() {
        let c = Config::parse(Path::new("c.toml"), "max_events = 5\n").expect("valid");
        assert_eq!(c.max_events, 5);
        assert_eq!(c.db_path, PathBuf::from(DEFAULT_DB_PATH));
        assert!(c.require_auth_for_queries);
        let e = Config::parse(Path::new("c.toml"), "max_event = 5\n").expect_err("unknown");
        assert!(e.to_string().contains("max_event"), "{e}");
        let tcp = Config {
            listen_address: Some(([127, 0, 0, 1], 1).into()),
            ..Config::default()
        };
        assert!(tcp.validate().is_err());
    }
}
