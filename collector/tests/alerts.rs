//! Alerts over a real socket: raised from reported events, listed with filters, streamed live
//! by severity, kept across a restart with the engine's memory; bad requests and bad rules.

mod common;

use std::time::Duration;

use collector::{config::Config, server};
use common::*;
use jobwatch_proto::v1 as pb;
use tokio_util::sync::CancellationToken;

fn memfd_exec(seq: u64, c: pb::ContainerRef) -> pb::Event {
    let mut e = exec(seq, "/memfd:x (deleted)", Some(c));
    if let Some(pb::event::Kind::ProcessExec(x)) = e.kind.as_mut() {
        x.filename = "/proc/self/fd/3".into();
        x.args = vec!["x".into()];
        x.flags = Some(pb::ExecFlags {
            memfd: true,
            ..Default::default()
        });
    }
    e
}

async fn list(
    c: &mut pb::collector_client::CollectorClient<tonic::transport::Channel>,
    filter: pb::AlertFilter,
) -> Vec<pb::Alert> {
    c.list_alerts(pb::ListAlertsRequest {
        filter: Some(filter),
        ..Default::default()
    })
    .await
    .expect("list alerts")
    .into_inner()
    .alerts
}

fn rule_ids(alerts: &[pb::Alert]) -> Vec<String> {
    alerts
        .iter()
        .map(|a| a.rule.as_ref().expect("rule").id.clone())
        .collect()
}

#[tokio::test]
async fn alerts_are_listed_streamed_and_survive_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |_| {}).await;
    let mut c = h.client().await;
    let mut critical = c
        .stream_alerts(pb::StreamAlertsRequest {
            filter: Some(pb::AlertFilter {
                min_severity: pb::Severity::Critical as i32,
                ..Default::default()
            }),
        })
        .await
        .expect("subscribe")
        .into_inner();
    let job = cref("c1", "batch", "nightly");
    report(
        &mut c,
        vec![batch(
            "run-1",
            vec![exec(1, "/bin/date", Some(job.clone())), memfd_exec(2, job)],
        )],
        None,
    )
    .await
    .expect("report");

    // Only the critical alert reaches the critical stream.
    let got = tokio::time::timeout(Duration::from_secs(5), critical.message())
        .await
        .expect("alert in time")
        .expect("stream ok")
        .expect("an alert");
    assert_eq!(got.rule.as_ref().expect("rule").id, "JW005");
    assert_eq!(got.severity, pb::Severity::Critical as i32);
    assert_eq!(got.cronjob, "nightly");
    assert_eq!(got.namespace, "batch");
    assert_eq!(got.node, "node-a");
    assert_eq!(got.container_id, "c1");
    assert_eq!(got.evidence.len(), 1);
    assert_eq!(got.evidence[0].event.as_ref().expect("event").seq, 2);
    assert!(got.id > 0);

    let all = list(&mut c, pb::AlertFilter::default()).await;
    assert_eq!(rule_ids(&all), ["JW001", "JW005"]);
    assert!(all[0].id < all[1].id);
    assert_eq!(all[1], got, "listed as streamed");
    let high = list(
        &mut c,
        pb::AlertFilter {
            min_severity: pb::Severity::High as i32,
            ..Default::default()
        },
    )
    .await;
    assert_eq!(rule_ids(&high), ["JW005"]);
    let other = list(
        &mut c,
        pb::AlertFilter {
            cronjobs: vec!["other".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(other.is_empty());
    assert_eq!(counter(&mut c, "alerts_critical").await, 1);
    assert_eq!(counter(&mut c, "alerts_medium").await, 1);
    drop(critical);
    drop(c);
    h.stop().await;

    // Restarted on the same database: the alerts are there, and the CronJob is not new.
    let h = Harness::start(dir.path(), |_| {}).await;
    let mut c = h.client().await;
    assert_eq!(list(&mut c, pb::AlertFilter::default()).await, all);
    report(
        &mut c,
        vec![batch(
            "run-2",
            vec![exec(1, "/bin/date", Some(cref("c2", "batch", "nightly")))],
        )],
        None,
    )
    .await
    .expect("report");
    assert_eq!(list(&mut c, pb::AlertFilter::default()).await.len(), 2);
    drop(c);
    h.stop().await;
}

#[tokio::test]
async fn bad_alert_requests_are_invalid_arguments() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |_| {}).await;
    let mut c = h.client().await;
    let bad_severity = c
        .list_alerts(pb::ListAlertsRequest {
            filter: Some(pb::AlertFilter {
                min_severity: 42,
                ..Default::default()
            }),
            ..Default::default()
        })
        .await
        .expect_err("unknown severity");
    assert_eq!(bad_severity.code(), tonic::Code::InvalidArgument);
    assert_eq!(bad_severity.message(), "unknown min_severity 42");
    let range = c
        .list_alerts(pb::ListAlertsRequest {
            since_unix_nano: 10,
            until_unix_nano: 5,
            ..Default::default()
        })
        .await
        .expect_err("inverted range");
    assert_eq!(range.code(), tonic::Code::InvalidArgument);
    let empty = c
        .stream_alerts(pb::StreamAlertsRequest {
            filter: Some(pb::AlertFilter {
                rules: vec![String::new()],
                ..Default::default()
            }),
        })
        .await
        .expect_err("empty rule id");
    assert_eq!(empty.code(), tonic::Code::InvalidArgument);
    assert_eq!(empty.message(), "rules: empty value");
    drop(c);
    h.stop().await;
}

#[tokio::test]
async fn a_bad_rules_file_stops_the_collector_at_start() {
    let dir = tempfile::tempdir().expect("tempdir");
    let rules = dir.path().join("rules.yaml");
    std::fs::write(&rules, "rules:\n  - id: JW004\n    severity: severe\n").expect("write");
    let config = Config {
        db_path: dir.path().join("events.db"),
        socket: dir.path().join("collector.sock"),
        rules: Some(rules.clone()),
        ..Config::default()
    };
    let e = server::start(config, CancellationToken::new())
        .await
        .expect_err("refused");
    assert_eq!(
        e.to_string(),
        format!(
            "rules: {}:3: rules[0].severity: unknown variant `severe`, expected one of `info`, \
             `low`, `medium`, `high`, `critical`",
            rules.display()
        )
    );
    assert!(
        !dir.path().join("collector.sock").exists(),
        "nothing listens"
    );
}

#[tokio::test]
async fn detection_off_serves_no_stream() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |c| c.detection = false).await;
    let mut c = h.client().await;
    report(
        &mut c,
        vec![batch(
            "run-1",
            vec![memfd_exec(1, cref("c1", "batch", "nightly"))],
        )],
        None,
    )
    .await
    .expect("report");
    assert!(list(&mut c, pb::AlertFilter::default()).await.is_empty());
    let off = c
        .stream_alerts(pb::StreamAlertsRequest::default())
        .await
        .expect_err("no engine");
    assert_eq!(off.code(), tonic::Code::FailedPrecondition);
    drop(c);
    h.stop().await;
}
