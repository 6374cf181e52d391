//! The command line, and how the event filter flags become a `GetEventsRequest` (and the alert
//! filter flags an `AlertFilter`).

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use jobwatch_proto::v1 as pb;

use crate::error::UsageError;

/// The sensor's default Unix socket.
pub const DEFAULT_SOCKET: &str = "/run/jobwatch/sensor.sock";

/// Events, containers and status from a jobwatch sensor or collector, and the collector's alerts.
#[derive(Debug, Parser)]
#[command(name = "jobwatch", version)]
pub struct Cli {
    #[command(flatten)]
    pub target: Target,
    #[command(subcommand)]
    pub command: Command,
}

/// Where the sensor is: a local Unix socket (the default) or a TLS address.
#[derive(Debug, Args)]
pub struct Target {
    /// The sensor's Unix socket [default: /run/jobwatch/sensor.sock].
    #[arg(long, global = true, value_name = "PATH", conflicts_with = "address")]
    pub sensor: Option<PathBuf>,
    /// Ask a collector (its Unix socket) instead of a sensor: events of every node, with their
    /// history (`events` without --follow queries what is stored), and alerts.
    #[arg(long, global = true, value_name = "PATH", conflicts_with_all = ["sensor", "address"])]
    pub collector: Option<PathBuf>,
    /// A sensor over TCP with TLS, as https://HOST:PORT (needs --ca).
    #[arg(long, global = true, value_name = "URL", requires = "ca")]
    pub address: Option<String>,
    /// The CA certificate (PEM) that signed the sensor's certificate.
    #[arg(long, global = true, value_name = "FILE", requires = "address")]
    pub ca: Option<PathBuf>,
    /// The client certificate (PEM) for mutual TLS.
    #[arg(long, global = true, value_name = "FILE", requires_all = ["key", "address"])]
    pub cert: Option<PathBuf>,
    /// The client certificate's private key (PEM).
    #[arg(long, global = true, value_name = "FILE", requires = "cert")]
    pub key: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Live events from the sensor (needs --follow: history comes from the collector).
    Events(Box<EventsArgs>),
    /// The containers the sensor tracks.
    Containers {
        #[arg(short, long, value_enum, default_value_t = TableFormat::Table)]
        output: TableFormat,
        /// Include pod sandbox (pause) containers.
        #[arg(long)]
        all: bool,
    },
    /// One container, by id or unique id prefix.
    Container {
        #[arg(value_name = "ID-PREFIX", value_parser = clap::builder::NonEmptyStringValueParser::new())]
        id: String,
        #[arg(short, long, value_enum, default_value_t = TableFormat::Table)]
        output: TableFormat,
    },
    /// The sensor's health and counters.
    Status {
        #[arg(short, long, value_enum, default_value_t = StatusFormat::Text)]
        output: StatusFormat,
    },
    /// Alerts of the collector's detection rules (needs --collector).
    ///
    /// Stored alerts, oldest first, or with --follow new ones as they are raised.
    Alerts(Box<AlertsArgs>),
}

/// The alert flags. Flags of different kinds must all match; values of one flag are
/// alternatives (`--rule A --rule B --namespace n`: alerts of rule A or B in namespace n).
#[derive(Debug, Args, Default)]
pub struct AlertsArgs {
    /// Stream alerts as they are raised until interrupted (Ctrl-C).
    #[arg(short, long)]
    pub follow: bool,
    /// Most stored alerts to print, oldest first.
    #[arg(
        long,
        default_value_t = 1000,
        value_parser = clap::value_parser!(u32).range(1..),
        conflicts_with = "follow"
    )]
    pub limit: u32,
    #[arg(short, long, value_enum, default_value_t = AlertFormat::Compact)]
    pub output: AlertFormat,
    /// Only alerts of this severity or a higher one.
    #[arg(long, value_enum, value_name = "LEVEL")]
    pub severity: Option<Severity>,
    /// Only alerts of this rule (e.g. JW-T1053.007-004).
    #[arg(long, value_name = "ID", value_parser = non_empty())]
    pub rule: Vec<String>,
    /// Only alerts from pods in this namespace.
    #[arg(long, value_name = "NS", value_parser = non_empty())]
    pub namespace: Vec<String>,
    /// Only alerts from the runs of this CronJob.
    #[arg(long, value_name = "NAME", value_parser = non_empty())]
    pub cronjob: Vec<String>,
    /// Only alerts from this node.
    #[arg(long, value_name = "NODE", value_parser = non_empty())]
    pub node: Vec<String>,
    /// Only alerts at or after this time: RFC 3339 (2026-11-27T06:40:00Z), a UTC date
    /// (2026-11-27), `now`, or a time ago (90s, 10m, 2h, 7d).
    #[arg(long, value_name = "TIME", value_parser = crate::time::parse_time, conflicts_with = "follow")]
    pub since: Option<i64>,
    /// Only alerts at or before this time (same forms as --since).
    #[arg(long, value_name = "TIME", value_parser = crate::time::parse_time, conflicts_with = "follow")]
    pub until: Option<i64>,
}

/// The filter flags. Allow flags of different kinds must all match (`--namespace a --kind
/// exec`: exec events in namespace a); values of one flag are alternatives. Each deny flag
/// excludes on its own: `--deny-kind file --deny-namespace kube-system` drops every file event
/// and every event from kube-system.
#[derive(Debug, Args, Default)]
pub struct EventsArgs {
    /// Stream events as they happen until interrupted (Ctrl-C).
    #[arg(short, long)]
    pub follow: bool,
    /// With --collector and without --follow: most stored events to print, oldest first.
    #[arg(long, default_value_t = 1000)]
    pub limit: u32,
    #[arg(short, long, value_enum, default_value_t = EventFormat::Compact)]
    pub output: EventFormat,
    /// Only events of this kind.
    #[arg(long, value_enum, value_name = "KIND")]
    pub kind: Vec<Kind>,
    /// Only events from pods in this namespace.
    #[arg(long, value_name = "NS", value_parser = non_empty())]
    pub namespace: Vec<String>,
    /// Only events from this pod.
    #[arg(long, value_name = "NAME", value_parser = non_empty())]
    pub pod: Vec<String>,
    /// Only events from workloads of this kind.
    #[arg(long, value_enum, value_name = "KIND")]
    pub workload_kind: Vec<WorkloadKind>,
    /// Only events from the workload of this name.
    #[arg(long, value_name = "NAME", value_parser = non_empty())]
    pub workload: Vec<String>,
    /// Only events from the runs of this CronJob.
    #[arg(long, value_name = "NAME", value_parser = non_empty())]
    pub cronjob: Vec<String>,
    /// Only events from the container with this id (or unique id prefix).
    #[arg(long, value_name = "ID-PREFIX", value_parser = non_empty())]
    pub container: Vec<String>,
    /// Only events of processes whose binary path starts with this.
    #[arg(long, value_name = "PATH", value_parser = non_empty())]
    pub binary_prefix: Vec<String>,
    /// Drop events of this kind.
    #[arg(long, value_enum, value_name = "KIND")]
    pub deny_kind: Vec<Kind>,
    /// Drop events from pods in this namespace.
    #[arg(long, value_name = "NS", value_parser = non_empty())]
    pub deny_namespace: Vec<String>,
    /// Drop events of processes whose binary path starts with this.
    #[arg(long, value_name = "PATH", value_parser = non_empty())]
    pub deny_binary_prefix: Vec<String>,
}

fn non_empty() -> clap::builder::NonEmptyStringValueParser {
    clap::builder::NonEmptyStringValueParser::new()
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum EventFormat {
    /// One JSON object per line.
    Json,
    /// One readable line per event.
    #[default]
    Compact,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum, Default)]
pub enum AlertFormat {
    /// One JSON object per line.
    Json,
    /// One readable line per alert.
    #[default]
    Compact,
}

/// The minimum severity of `alerts --severity`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, ValueEnum)]
pub enum Severity {
    Info,
    Low,
    Medium,
    High,
    Critical,
}

impl From<Severity> for pb::Severity {
    fn from(severity: Severity) -> Self {
        match severity {
            Severity::Info => Self::Info,
            Severity::Low => Self::Low,
            Severity::Medium => Self::Medium,
            Severity::High => Self::High,
            Severity::Critical => Self::Critical,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum TableFormat {
    Json,
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StatusFormat {
    Json,
    Text,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Kind {
    Exec,
    Exit,
    File,
    ContainerCreated,
    ContainerExited,
    Lost,
}

impl From<Kind> for pb::EventKind {
    fn from(kind: Kind) -> Self {
        match kind {
            Kind::Exec => Self::ProcessExec,
            Kind::Exit => Self::ProcessExit,
            Kind::File => Self::FileCreated,
            Kind::ContainerCreated => Self::ContainerCreated,
            Kind::ContainerExited => Self::ContainerExited,
            Kind::Lost => Self::LostEvents,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum WorkloadKind {
    #[value(alias = "cron-job", alias = "cron_job")]
    Cronjob,
    Job,
    Deployment,
    #[value(alias = "replica-set")]
    Replicaset,
    #[value(alias = "daemon-set")]
    Daemonset,
    #[value(alias = "stateful-set")]
    Statefulset,
    /// A bare pod, owned by no controller.
    Pod,
    Unknown,
}

impl From<WorkloadKind> for pb::WorkloadKind {
    fn from(kind: WorkloadKind) -> Self {
        match kind {
            WorkloadKind::Cronjob => Self::CronJob,
            WorkloadKind::Job => Self::Job,
            WorkloadKind::Deployment => Self::Deployment,
            WorkloadKind::Replicaset => Self::ReplicaSet,
            WorkloadKind::Daemonset => Self::DaemonSet,
            WorkloadKind::Statefulset => Self::StatefulSet,
            WorkloadKind::Pod => Self::Pod,
            WorkloadKind::Unknown => Self::Unknown,
        }
    }
}

fn event_kinds(kinds: &[Kind]) -> Vec<i32> {
    kinds
        .iter()
        .map(|&k| pb::EventKind::from(k) as i32)
        .collect()
}

impl EventsArgs {
    /// The request the flags ask for: at most one allow filter (all allow flags), and one deny
    /// filter per deny flag given.
    pub fn request(&self) -> pb::GetEventsRequest {
        let allow = pb::EventFilter {
            kinds: event_kinds(&self.kind),
            namespaces: self.namespace.clone(),
            pod_names: self.pod.clone(),
            workload_kinds: self
                .workload_kind
                .iter()
                .map(|&k| pb::WorkloadKind::from(k) as i32)
                .collect(),
            workload_names: self.workload.clone(),
            cronjobs: self.cronjob.clone(),
            container_ids: self.container.clone(),
            binary_prefixes: self.binary_prefix.clone(),
        };
        let deny = [
            pb::EventFilter {
                kinds: event_kinds(&self.deny_kind),
                ..Default::default()
            },
            pb::EventFilter {
                namespaces: self.deny_namespace.clone(),
                ..Default::default()
            },
            pb::EventFilter {
                binary_prefixes: self.deny_binary_prefix.clone(),
                ..Default::default()
            },
        ];
        let empty = pb::EventFilter::default();
        pb::GetEventsRequest {
            allow_list: if allow == empty { vec![] } else { vec![allow] },
            deny_list: deny.into_iter().filter(|f| *f != empty).collect(),
        }
    }
}

impl AlertsArgs {
    /// The filter the flags ask for (every field empty: all alerts).
    pub fn filter(&self) -> pb::AlertFilter {
        pb::AlertFilter {
            min_severity: self
                .severity
                .map_or(pb::Severity::Unspecified, pb::Severity::from)
                as i32,
            rules: self.rule.clone(),
            namespaces: self.namespace.clone(),
            cronjobs: self.cronjob.clone(),
            nodes: self.node.clone(),
        }
    }

    /// Usage problems clap cannot see: a time range that ends before it starts.
    pub fn check(&self) -> Result<(), UsageError> {
        match (self.since, self.until) {
            (Some(since), Some(until)) if since > until => Err(UsageError(format!(
                "--since ({}) is after --until ({})",
                crate::time::rfc3339_millis(since),
                crate::time::rfc3339_millis(until)
            ))),
            _ => Ok(()),
        }
    }

    /// One page of stored alerts: at most `limit`, after the alert `after_id`.
    pub fn list_request(&self, after_id: u64, limit: u32) -> pb::ListAlertsRequest {
        pb::ListAlertsRequest {
            filter: Some(self.filter()),
            since_unix_nano: self.since.unwrap_or(0),
            until_unix_nano: self.until.unwrap_or(0),
            limit,
            after_id,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events(args: &[&str]) -> EventsArgs {
        let cli = Cli::try_parse_from([&["jobwatch", "events"], args].concat())
            .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Events(events) => *events,
            other => panic!("not events: {other:?}"),
        }
    }

    #[test]
    fn no_flags_no_filters() {
        let request = events(&["--follow"]).request();
        assert_eq!(request, pb::GetEventsRequest::default());
    }

    #[test]
    fn allow_flags_make_one_filter() {
        let request = events(&[
            "-f",
            "--kind",
            "exec",
            "--kind",
            "container-exited",
            "--namespace",
            "nightly",
            "--namespace",
            "batch",
            "--pod",
            "p1",
            "--workload-kind",
            "cronjob",
            "--workload-kind",
            "stateful-set",
            "--workload",
            "backup",
            "--cronjob",
            "backup",
            "--container",
            "7115",
            "--binary-prefix",
            "/tmp/",
        ])
        .request();
        assert_eq!(
            request.allow_list,
            vec![pb::EventFilter {
                kinds: vec![
                    pb::EventKind::ProcessExec as i32,
                    pb::EventKind::ContainerExited as i32
                ],
                namespaces: vec!["nightly".into(), "batch".into()],
                pod_names: vec!["p1".into()],
                workload_kinds: vec![
                    pb::WorkloadKind::CronJob as i32,
                    pb::WorkloadKind::StatefulSet as i32
                ],
                workload_names: vec!["backup".into()],
                cronjobs: vec!["backup".into()],
                container_ids: vec!["7115".into()],
                binary_prefixes: vec!["/tmp/".into()],
            }]
        );
        assert!(request.deny_list.is_empty());
    }

    #[test]
    fn each_deny_flag_is_its_own_filter() {
        let request = events(&[
            "-f",
            "--deny-kind",
            "file",
            "--deny-kind",
            "lost",
            "--deny-namespace",
            "kube-system",
            "--deny-binary-prefix",
            "/pause",
        ])
        .request();
        assert!(request.allow_list.is_empty());
        assert_eq!(
            request.deny_list,
            vec![
                pb::EventFilter {
                    kinds: vec![
                        pb::EventKind::FileCreated as i32,
                        pb::EventKind::LostEvents as i32
                    ],
                    ..Default::default()
                },
                pb::EventFilter {
                    namespaces: vec!["kube-system".into()],
                    ..Default::default()
                },
                pb::EventFilter {
                    binary_prefixes: vec!["/pause".into()],
                    ..Default::default()
                },
            ]
        );
    }

    #[test]
    fn only_the_deny_flags_given_make_filters() {
        let request = events(&["-f", "--namespace", "a", "--deny-namespace", "b"]).request();
        assert_eq!(request.allow_list.len(), 1);
        assert_eq!(
            request.deny_list,
            vec![pb::EventFilter {
                namespaces: vec!["b".into()],
                ..Default::default()
            }]
        );
    }

    #[test]
    fn every_kind_maps() {
        let request = events(&[
            "-f",
            "--kind",
            "exec",
            "--kind",
            "exit",
            "--kind",
            "file",
            "--kind",
            "container-created",
            "--kind",
            "container-exited",
            "--kind",
            "lost",
        ])
        .request();
        assert_eq!(request.allow_list[0].kinds, vec![1, 2, 3, 4, 5, 6]);
    }

    #[test]
    fn bad_usage_is_rejected() {
        for args in [
            &["jobwatch", "events", "--kind", "nope"][..],
            &["jobwatch", "events", "--namespace", ""],
            &[
                "jobwatch",
                "--sensor",
                "/s",
                "--address",
                "https://x:1",
                "--ca",
                "c",
                "status",
            ],
            &["jobwatch", "--address", "https://x:1", "status"],
            &[
                "jobwatch",
                "--address",
                "https://x:1",
                "--ca",
                "c",
                "--cert",
                "c",
                "status",
            ],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?} parsed");
        }
    }

    fn alerts(args: &[&str]) -> AlertsArgs {
        let cli = Cli::try_parse_from([&["jobwatch", "alerts"], args].concat())
            .unwrap_or_else(|e| panic!("{e}"));
        match cli.command {
            Command::Alerts(alerts) => *alerts,
            other => panic!("not alerts: {other:?}"),
        }
    }

    fn alerts_error(args: &[&str]) -> String {
        match Cli::try_parse_from([&["jobwatch", "alerts"], args].concat()) {
            Ok(cli) => panic!("{args:?} parsed: {cli:?}"),
            Err(e) => {
                assert_eq!(e.exit_code(), 2, "{args:?}: {e}");
                e.to_string()
            }
        }
    }

    #[test]
    fn alerts_without_flags_ask_for_everything() {
        let a = alerts(&[]);
        assert!(!a.follow);
        assert_eq!(a.limit, 1000);
        assert_eq!(a.output, AlertFormat::Compact);
        assert_eq!(
            a.list_request(0, 1000),
            pb::ListAlertsRequest {
                filter: Some(pb::AlertFilter::default()),
                since_unix_nano: 0,
                until_unix_nano: 0,
                limit: 1000,
                after_id: 0,
            }
        );
        assert_eq!(a.check(), Ok(()));
    }

    #[test]
    fn alert_flags_make_the_filter_and_the_range() {
        let a = alerts(&[
            "--severity",
            "medium",
            "--rule",
            "JW-T1053.007-004",
            "--rule",
            "JW-T1053.007-002",
            "--namespace",
            "jobs",
            "--cronjob",
            "nightly",
            "--cronjob",
            "backup",
            "--node",
            "node1",
            "--since",
            "2026-11-27T06:00:00Z",
            "--until",
            "2026-11-27T07:00:00.250+01:00",
            "--limit",
            "50",
            "-o",
            "json",
        ]);
        assert_eq!(a.output, AlertFormat::Json);
        assert_eq!(
            a.list_request(7, 50),
            pb::ListAlertsRequest {
                filter: Some(pb::AlertFilter {
                    min_severity: pb::Severity::Medium as i32,
                    rules: vec!["JW-T1053.007-004".into(), "JW-T1053.007-002".into()],
                    namespaces: vec!["jobs".into()],
                    cronjobs: vec!["nightly".into(), "backup".into()],
                    nodes: vec!["node1".into()],
                }),
                since_unix_nano: 1_795_759_200_000_000_000,
                until_unix_nano: 1_795_759_200_250_000_000,
                limit: 50,
                after_id: 7,
            }
        );
        assert_eq!(a.check(), Ok(()));
    }

    #[test]
    fn every_severity_maps() {
        let expected = [
            ("info", pb::Severity::Info),
            ("low", pb::Severity::Low),
            ("medium", pb::Severity::Medium),
            ("high", pb::Severity::High),
            ("critical", pb::Severity::Critical),
        ];
        for (flag, severity) in expected {
            let filter = alerts(&["--follow", "--severity", flag]).filter();
            assert_eq!(filter.min_severity, severity as i32, "{flag}");
        }
    }

    #[test]
    fn bad_severity_is_a_clear_error() {
        let e = alerts_error(&["--severity", "severe"]);
        assert!(
            e.contains("invalid value 'severe' for '--severity <LEVEL>'"),
            "{e}"
        );
        assert!(
            e.contains("[possible values: info, low, medium, high, critical]"),
            "{e}"
        );
    }

    #[test]
    fn bad_alert_flags_are_rejected() {
        let e = alerts_error(&["--since", "yesterday"]);
        assert!(
            e.contains("invalid value 'yesterday' for '--since <TIME>'"),
            "{e}"
        );
        assert!(e.contains("RFC 3339"), "{e}");
        let e = alerts_error(&["--until", "2026-02-30"]);
        assert!(e.contains("not a valid date"), "{e}");
        let e = alerts_error(&["--follow", "--since", "10m"]);
        assert!(e.contains("cannot be used with"), "{e}");
        let e = alerts_error(&["--follow", "--limit", "5"]);
        assert!(e.contains("cannot be used with"), "{e}");
        alerts_error(&["--limit", "0"]);
        alerts_error(&["--rule", ""]);
        alerts_error(&["--node", ""]);
        alerts_error(&["-o", "table"]);
        alerts_error(&["--kind", "exec"]);
    }

    #[test]
    fn a_range_that_ends_before_it_starts_is_a_usage_error() {
        let a = alerts(&["--since", "2026-11-27T07:00:00Z", "--until", "2026-11-27"]);
        assert_eq!(
            a.check().map_err(|e| e.0),
            Err(
                "--since (2026-11-27T07:00:00.000Z) is after --until (2026-11-27T00:00:00.000Z)"
                    .to_string()
            )
        );
        let same = alerts(&["--since", "2026-11-27", "--until", "2026-11-27"]);
        assert_eq!(same.check(), Ok(()));
    }

    #[test]
    fn global_flags_go_anywhere() {
        let cli = Cli::try_parse_from(["jobwatch", "status", "--sensor", "/x.sock"])
            .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.target.sensor, Some(PathBuf::from("/x.sock")));
        let cli = Cli::try_parse_from([
            "jobwatch",
            "--address",
            "https://s:1",
            "--ca",
            "ca.pem",
            "--cert",
            "c.pem",
            "--key",
            "k.pem",
            "containers",
        ])
        .unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(cli.target.key, Some(PathBuf::from("k.pem")));
    }
}
