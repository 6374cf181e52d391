//! The sensor's configuration: one struct, documented defaults, unknown fields rejected, and
//! every invalid value reported with the name of its field.

use std::path::{Path, PathBuf};

use sensor_common::{ARGS_MAX, PATH_FILTER_KEY_LEN};
use serde::Deserialize;

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("config field `{field}`: {reason}")]
    Invalid { field: &'static str, reason: String },
    #[error("config file {path}: field `{field}`: {reason}")]
    InvalidInFile {
        path: PathBuf,
        field: &'static str,
        reason: String,
    },
}

/// Sensor settings. A TOML file sets any subset; the rest keep their defaults.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct Config {
    /// Size of the kernel ring buffer in bytes: a power of two, at least 4096. Default 8 MiB.
    pub ring_buffer_bytes: u32,
    /// The kernel wakes the reader once this many bytes wait; 0 wakes on every record.
    /// Default 64 KiB: bursts cost one wakeup. Smaller batches wait at most `poll_interval_ms`.
    pub wakeup_bytes: u64,
    /// How often the reader drains the ring buffer without a wakeup, in ms. Default 1000: the
    /// latency bound of events at low rates (a burst of `wakeup_bytes` wakes the reader at
    /// once), and the sensor's only wakeups when idle. Each drain costs a wakeup whatever it
    /// finds: 250 ms cost 12.2 instead of 6.3 µs of sensor CPU per exec at 100 execs/s, and
    /// 683 instead of 212 µs per second on an idle node (see docs/performance.md).
    pub poll_interval_ms: u64,
    /// Most bytes of argv captured per exec (1..=4096). Longer argv is flagged truncated.
    pub args_max_bytes: u32,
    /// Report processes of the host (not in a container). Default true.
    pub report_host_processes: bool,
    /// File events under these path prefixes are dropped in the kernel.
    pub ignore_path_prefixes: Vec<String>,
    /// When set, only file events under these prefixes are reported (the longest matching
    /// prefix of either list wins).
    pub include_path_prefixes: Vec<String>,
    /// Most processes the process table keeps. Default 65536.
    pub process_table_capacity: usize,
    /// Events waiting for the output; beyond that they are dropped and counted. Default 65536.
    pub event_queue_capacity: usize,
    /// The cgroup v1 controller whose hierarchy identifies a task's cgroup on v1 and hybrid
    /// hosts ("auto": the first mounted of memory, pids, cpu, cpuacct, blkio; "none").
    pub cgroup_v1_controller: String,
    /// How often lost-event counters are checked and reported, in ms. Default 1000.
    pub loss_report_interval_ms: u64,
    /// Where container metadata comes from.
    pub containerd: ContainerdConfig,
    /// How long an event from an unknown container waits for its metadata, in ms. Default
    /// 2000; then it is sent without it, flagged `metadata_pending`.
    pub metadata_wait_ms: u64,
    /// Most events waiting for container metadata at once. Default 4096.
    pub metadata_pending_capacity: usize,
    /// Inside a cluster (KUBERNETES_SERVICE_HOST set, a service account mounted), confirm pod
    /// owners (Job, CronJob, Deployment, ...) through the Kubernetes API. Default true.
    pub kubernetes_api: bool,
    /// This node's name in events. Default: $NODE_NAME, else the host name.
    pub node_name: Option<String>,
    /// Print every event as a JSON line on stdout. Default true.
    pub stdout_json: bool,
    /// The gRPC API.
    pub api: ApiConfig,
    /// Where to report events; none by default.
    pub report: ReportConfig,
    /// Serve Prometheus metrics at http://<address>/metrics (e.g. "127.0.0.1:9464"). Off by
    /// default.
    pub metrics_address: Option<std::net::SocketAddr>,
}

/// The `[report]` table: the collector this sensor streams its events to.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize, Default)]
#[serde(deny_unknown_fields, default)]
pub struct ReportConfig {
    /// The collector's Unix socket (same node).
    pub socket: Option<PathBuf>,
    /// The collector over the network: an https:// URL (TLS required).
    pub address: Option<String>,
    /// CA that signed the collector's certificate (with `address`).
    pub ca: Option<PathBuf>,
    /// Client certificate and key for mutual TLS.
    pub cert: Option<PathBuf>,
    pub key: Option<PathBuf>,
    /// A file holding a bearer token for the collector.
    pub token_file: Option<PathBuf>,
    /// Events kept until the collector acknowledges them (default 100000); beyond that the
    /// oldest are dropped, counted and reported as lost.
    pub buffer_events: Option<usize>,
    /// How long the first event of a batch waits for others before the batch is sent, in ms
    /// (default 1000; a full batch of 1000 leaves at once). Longer batches cost the sensor and
    /// the collector less per event (one write and one database transaction per batch).
    pub batch_delay_ms: Option<u64>,
}

/// The `[api]` table: where the sensor's gRPC API listens.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ApiConfig {
    /// Unix socket (mode 0600). Default /run/jobwatch/sensor.sock; "" disables it.
    pub socket: PathBuf,
    /// TCP address (e.g. "0.0.0.0:7443"); only with TLS. Default: none.
    pub tcp_address: Option<std::net::SocketAddr>,
    pub tls_cert: Option<PathBuf>,
    pub tls_key: Option<PathBuf>,
    /// When set, TCP clients must present a certificate signed by this CA (mTLS).
    pub tls_client_ca: Option<PathBuf>,
    /// Events buffered per GetEvents subscriber; a subscriber that falls further behind loses
    /// events (counted, and reported to it as lost_events). Default 4096.
    pub subscriber_queue: usize,
    /// Serve only the `grpc.health.v1` service here, in plaintext (e.g. "0.0.0.0:9090"), for
    /// the kubelet's gRPC probes, which cannot speak TLS. It answers nothing but health.
    /// Default: none.
    pub health_address: Option<std::net::SocketAddr>,
}

impl Default for ApiConfig {
    fn default() -> Self {
        ApiConfig {
            socket: PathBuf::from("/run/jobwatch/sensor.sock"),
            tcp_address: None,
            tls_cert: None,
            tls_key: None,
            tls_client_ca: None,
            subscriber_queue: 4096,
            health_address: None,
        }
    }
}

impl Config {
    /// The node name events carry.
    pub fn node(&self) -> String {
        if let Some(n) = &self.node_name {
            return n.clone();
        }
        if let Ok(n) = std::env::var("NODE_NAME")
            && !n.is_empty()
        {
            return n;
        }
        std::fs::read_to_string("/proc/sys/kernel/hostname")
            .map(|h| h.trim().to_string())
            .unwrap_or_else(|_| "unknown".to_string())
    }
}

/// The `[containerd]` table.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ContainerdConfig {
    /// Follow containerd for container metadata. Default true.
    pub enabled: bool,
    /// containerd's gRPC socket. Default /run/containerd/containerd.sock.
    pub socket: PathBuf,
    /// containerd namespaces to follow. Default ["k8s.io"] (the kubelet's).
    pub namespaces: Vec<String>,
    /// Longest wait between reconnection attempts, in ms. Default 30000.
    pub max_backoff_ms: u64,
}

impl Default for ContainerdConfig {
    fn default() -> Self {
        ContainerdConfig {
            enabled: true,
            socket: PathBuf::from("/run/containerd/containerd.sock"),
            namespaces: vec!["k8s.io".to_string()],
            max_backoff_ms: 30_000,
        }
    }
}

impl Default for Config {
    fn default() -> Self {
        Config {
            ring_buffer_bytes: 8 << 20,
            wakeup_bytes: 64 << 10,
            poll_interval_ms: 1000,
            args_max_bytes: ARGS_MAX as u32,
            report_host_processes: true,
            ignore_path_prefixes: Vec::new(),
            include_path_prefixes: Vec::new(),
            process_table_capacity: 65536,
            event_queue_capacity: 65536,
            cgroup_v1_controller: "auto".to_string(),
            loss_report_interval_ms: 1000,
            containerd: ContainerdConfig::default(),
            metadata_wait_ms: 2000,
            metadata_pending_capacity: 4096,
            kubernetes_api: true,
            node_name: None,
            stdout_json: true,
            api: ApiConfig::default(),
            report: ReportConfig::default(),
            metrics_address: None,
        }
    }
}

impl Config {
    /// Reads and validates a TOML config file.
    pub fn from_file(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        let config = Config::from_toml(&text).map_err(|e| match e {
            ConfigError::Parse { message, .. } => ConfigError::Parse {
                path: path.to_path_buf(),
                message,
            },
            other => other,
        })?;
        Ok(config)
    }

    /// Parses and validates TOML text.
    pub fn from_toml(text: &str) -> Result<Config, ConfigError> {
        let config: Config = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: PathBuf::from("<inline>"),
            message: e.to_string().trim_end().to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    /// Checks every value; the error names the field.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let invalid = |field, reason: String| Err(ConfigError::Invalid { field, reason });
        if !self.ring_buffer_bytes.is_power_of_two() || self.ring_buffer_bytes < 4096 {
            return invalid(
                "ring_buffer_bytes",
                format!(
                    "{} is not a power of two of at least 4096",
                    self.ring_buffer_bytes
                ),
            );
        }
        if self.args_max_bytes == 0 || self.args_max_bytes as usize > ARGS_MAX {
            return invalid(
                "args_max_bytes",
                format!("{} is not within 1..={ARGS_MAX}", self.args_max_bytes),
            );
        }
        if self.poll_interval_ms == 0 || self.poll_interval_ms > 10_000 {
            return invalid(
                "poll_interval_ms",
                format!("{} is not within 1..=10000", self.poll_interval_ms),
            );
        }
        if let Some(ms) = self.report.batch_delay_ms
            && !(1..=10_000).contains(&ms)
        {
            return invalid(
                "report.batch_delay_ms",
                format!("{ms} is not within 1..=10000"),
            );
        }
        if self.loss_report_interval_ms == 0 {
            return invalid("loss_report_interval_ms", "must be at least 1".to_string());
        }
        if self.process_table_capacity == 0 {
            return invalid("process_table_capacity", "must be at least 1".to_string());
        }
        if self.event_queue_capacity == 0 {
            return invalid("event_queue_capacity", "must be at least 1".to_string());
        }
        for (field, list) in [
            ("ignore_path_prefixes", &self.ignore_path_prefixes),
            ("include_path_prefixes", &self.include_path_prefixes),
        ] {
            for prefix in list {
                if !prefix.starts_with('/') {
                    return invalid(field, format!("{prefix:?} is not an absolute path"));
                }
                if prefix.len() > PATH_FILTER_KEY_LEN {
                    return invalid(
                        field,
                        format!("{prefix:?} is longer than {PATH_FILTER_KEY_LEN} bytes"),
                    );
                }
            }
        }
        if self.ignore_path_prefixes.len() + self.include_path_prefixes.len() > 256 {
            return invalid(
                "ignore_path_prefixes",
                "more than 256 prefixes in all".to_string(),
            );
        }
        if self.report.socket.is_some() && self.report.address.is_some() {
            return invalid(
                "report.address",
                "give either report.socket or report.address".to_string(),
            );
        }
        if let Some(address) = &self.report.address
            && (!address.starts_with("https://") || self.report.ca.is_none())
        {
            return invalid(
                "report.address",
                format!(
                    "{address:?}: a collector over the network needs an https:// URL and report.ca"
                ),
            );
        }
        if self.report.cert.is_some() != self.report.key.is_some() {
            return invalid(
                "report.cert",
                "report.cert and report.key go together".to_string(),
            );
        }
        if self.report.buffer_events == Some(0) {
            return invalid("report.buffer_events", "must be at least 1".to_string());
        }
        if self.api.subscriber_queue == 0 {
            return invalid("api.subscriber_queue", "must be at least 1".to_string());
        }
        if self.api.tcp_address.is_some()
            && (self.api.tls_cert.is_none() || self.api.tls_key.is_none())
        {
            return invalid(
                "api.tcp_address",
                "the API is served over TCP only with TLS: set api.tls_cert and api.tls_key"
                    .to_string(),
            );
        }
        if self.metadata_pending_capacity == 0 {
            return invalid(
                "metadata_pending_capacity",
                "must be at least 1".to_string(),
            );
        }
        if self.metadata_wait_ms > 60_000 {
            return invalid(
                "metadata_wait_ms",
                format!("{} is above 60000", self.metadata_wait_ms),
            );
        }
        if self.containerd.max_backoff_ms < 100 {
            return invalid(
                "containerd.max_backoff_ms",
                "must be at least 100".to_string(),
            );
        }
        for ns in &self.containerd.namespaces {
            let ok = !ns.is_empty()
                && ns.len() <= 76
                && ns
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
            if !ok {
                return invalid(
                    "containerd.namespaces",
                    format!("{ns:?} is not a containerd namespace name"),
                );
            }
        }
        match self.cgroup_v1_controller.as_str() {
            "auto" | "none" | "memory" | "pids" | "cpu" | "cpuacct" | "blkio" | "io" | "cpuset"
            | "devices" | "freezer" | "net_cls" | "perf_event" | "net_prio" | "hugetlb" => Ok(()),
            other => invalid(
                "cgroup_v1_controller",
                format!("unknown controller {other:?}"),
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn empty_file_gives_defaults() {
        assert_eq!(Config::from_toml("").expect("valid"), Config::default());
    }

    #[test]
    fn fields_are_read() {
        let c = Config::from_toml(
            "ring_buffer_bytes = 65536\nargs_max_bytes = 128\nreport_host_processes = false\n\
             ignore_path_prefixes = [\"/proc/\"]\n",
        )
        .expect("valid");
        assert_eq!(c.ring_buffer_bytes, 65536);
        assert_eq!(c.args_max_bytes, 128);
        assert!(!c.report_host_processes);
        assert_eq!(c.ignore_path_prefixes, vec!["/proc/".to_string()]);
    }

    #[test]
    fn containerd_table_is_read() {
        let c = Config::from_toml(
            "[containerd]\nsocket = \"/tmp/c.sock\"\nnamespaces = [\"a\", \"k8s.io\"]\n",
        )
        .expect("valid");
        assert_eq!(c.containerd.socket, PathBuf::from("/tmp/c.sock"));
        assert_eq!(
            c.containerd.namespaces,
            vec!["a".to_string(), "k8s.io".to_string()]
        );
        assert!(c.containerd.enabled);
        let e = Config::from_toml("[containerd]\nsock = 1").expect_err("unknown");
        assert!(e.to_string().contains("sock"), "{e}");
    }

    #[test]
    fn unknown_field_is_named() {
        let e = Config::from_toml("ring_bufer_bytes = 4096").expect_err("unknown field");
        let msg = e.to_string();
        assert!(msg.contains("ring_bufer_bytes"), "{msg}");
        assert!(msg.contains("unknown field"), "{msg}");
    }

    #[test]
    fn wrong_type_is_named() {
        let msg = Config::from_toml("args_max_bytes = \"many\"")
            .expect_err("type")
            .to_string();
        assert!(msg.contains("args_max_bytes"), "{msg}");
    }

    #[test]
    fn invalid_values_name_their_field() {
        for (toml, field) in [
            ("ring_buffer_bytes = 5000", "ring_buffer_bytes"),
            ("ring_buffer_bytes = 2048", "ring_buffer_bytes"),
            ("args_max_bytes = 0", "args_max_bytes"),
            ("args_max_bytes = 4097", "args_max_bytes"),
            ("poll_interval_ms = 0", "poll_interval_ms"),
            ("[report]\nbatch_delay_ms = 0", "report.batch_delay_ms"),
            ("[report]\nbatch_delay_ms = 10001", "report.batch_delay_ms"),
            ("process_table_capacity = 0", "process_table_capacity"),
            ("event_queue_capacity = 0", "event_queue_capacity"),
            ("ignore_path_prefixes = [\"tmp\"]", "ignore_path_prefixes"),
            ("cgroup_v1_controller = \"bogus\"", "cgroup_v1_controller"),
            ("metadata_pending_capacity = 0", "metadata_pending_capacity"),
            (
                "[containerd]\nnamespaces = [\"k8s io\"]",
                "containerd.namespaces",
            ),
            (
                "[containerd]\nmax_backoff_ms = 1",
                "containerd.max_backoff_ms",
            ),
        ] {
            match Config::from_toml(toml) {
                Err(ConfigError::Invalid { field: f, .. }) => assert_eq!(f, field, "{toml}"),
                other => panic!("{toml}: expected Invalid({field}), got {other:?}"),
            }
        }
        let long = format!("include_path_prefixes = [\"/{}\"]", "a".repeat(200));
        assert!(matches!(
            Config::from_toml(&long),
            Err(ConfigError::Invalid {
                field: "include_path_prefixes",
                ..
            })
        ));
    }

    #[test]
    fn missing_file_names_the_path() {
        let e = Config::from_file(Path::new("/nonexistent/jobwatch.toml")).expect_err("missing");
        assert!(e.to_string().contains("/nonexistent/jobwatch.toml"));
    }
}
