//! Live streams, retention, metrics, and the daemon's handling of a bad configuration.

mod common;

use std::time::Duration;

use common::*;
use jobwatch_proto::v1 as pb;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

#[tokio::test]
async fn stream_events_live() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |_| {}).await;
    let mut c = h.client().await;
    let mut stream = c
        .stream_events(pb::StreamEventsRequest {
            allow_list: vec![pb::EventFilter {
                binary_prefixes: vec!["/tmp/".into()],
                ..Default::default()
            }],
            ..Default::default()
        })
        .await
        .expect("subscribe")
        .into_inner();
    // The subscription is registered before the response headers arrive.
    assert_eq!(counter(&mut c, "subscribers").await, 1);
    report(
        &mut c,
        vec![batch(
            "run-1",
            vec![
                exec(1, "/usr/bin/id", None),
                exec(2, "/tmp/x", None),
                exec(3, "/tmp/y", None),
            ],
        )],
        None,
    )
    .await
    .expect("report");
    let mut got = Vec::new();
    for _ in 0..2 {
        let e = tokio::time::timeout(Duration::from_secs(5), stream.message())
            .await
            .expect("event in time")
            .expect("stream ok")
            .expect("an event");
        got.push(e.event.expect("event").seq);
    }
    assert_eq!(got, [2, 3]);
    drop(c);
    h.stop().await;
}

#[tokio::test]
async fn retention_deletes_the_oldest_beyond_max_events() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |c| {
        c.max_events = 5;
        c.retention_interval_secs = 1;
    })
    .await;
    let mut c = h.client().await;
    report(
        &mut c,
        vec![batch(
            "run-1",
            (1..=8).map(|s| exec(s, "/bin/true", None)).collect(),
        )],
        None,
    )
    .await
    .expect("report");
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    loop {
        let left = seqs(&query(&mut c, pb::QueryEventsRequest::default()).await);
        if left == [4, 5, 6, 7, 8] {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "retention did not run: {left:?}"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(counter(&mut c, "retention_deleted").await, 3);
    drop(c);
    h.stop().await;
}

#[tokio::test]
async fn metrics_in_prometheus_text() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |c| {
        c.metrics_address = Some(([127, 0, 0, 1], 0).into());
    })
    .await;
    let addr = h
        .running
        .as_ref()
        .and_then(|r| r.metrics_addr)
        .expect("metrics address");
    let mut c = h.client().await;
    let b = batch(
        "run-1",
        (1..=3).map(|s| exec(s, "/bin/true", None)).collect(),
    );
    report(&mut c, vec![b.clone(), b], None)
        .await
        .expect("report");

    let mut sock = tokio::net::TcpStream::connect(addr).await.expect("connect");
    sock.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
        .await
        .expect("request");
    let mut resp = String::new();
    sock.read_to_string(&mut resp).await.expect("response");
    let (head, body) = resp.split_once("\r\n\r\n").expect("head and body");
    assert!(head.starts_with("HTTP/1.1 200 OK\r\n"), "{head}");
    assert!(
        head.contains("Content-Type: text/plain; version=0.0.4"),
        "{head}"
    );
    let lines: Vec<&str> = body.lines().collect();
    for want in [
        "# TYPE jobwatch_collector_events_received_total counter",
        "jobwatch_collector_events_received_total 6",
        "jobwatch_collector_events_stored_total 3",
        "jobwatch_collector_events_duplicate_total 3",
        "jobwatch_collector_batches_total 2",
        "jobwatch_collector_rejected_batches_total 0",
        "jobwatch_collector_auth_failures_total 0",
        "jobwatch_collector_subscribers 0",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in:\n{body}");
    }
    assert!(
        lines
            .iter()
            .any(|l| l.starts_with("jobwatch_collector_store_bytes ")),
        "{body}"
    );
    assert!(
        lines.iter().any(|l| l
            .strip_prefix("jobwatch_collector_sensor_last_seen_seconds{sensor=\"node-a\"} ")
            .and_then(|v| v.parse::<u64>().ok())
            .is_some_and(|v| v > 1_700_000_000)),
        "{body}"
    );
    drop(c);
    h.stop().await;
}

#[test]
fn bad_config_exits_non_zero_naming_the_field() {
    let dir = tempfile::tempdir().expect("tempdir");
    let config = dir.path().join("collector.toml");
    std::fs::write(&config, "db_path = \"x.db\"\nmax_eventz = 3\n").expect("write config");
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_collector"))
        .arg("--config")
        .arg(&config)
        .output()
        .expect("run collector");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("max_eventz"), "{stderr}");

    let out = std::process::Command::new(env!("CARGO_BIN_EXE_collector"))
        .arg("--db")
        .arg(dir.path().join("no/such/dir/x.db"))
        .arg("--socket")
        .arg(dir.path().join("s.sock"))
        .output()
        .expect("run collector");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("opening the database"), "{stderr}");
}
