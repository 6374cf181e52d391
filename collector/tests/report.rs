//! Reports, acks, de-duplication, queries and restart, over a real Unix socket and SQLite file.

mod common;

use common::*;
use jobwatch_proto::v1 as pb;

fn batches() -> Vec<pb::ReportBatch> {
    let job = Some(cref("abc123", "batch", "report"));
    let web = Some(cref("def456", "web", "nightly"));
    vec![
        batch(
            "run-1",
            vec![
                exec(1, "/usr/bin/date", job.clone()),
                exec(2, "/tmp/evil", job.clone()),
                file(3, pb::FileOperation::Create as i32, job.clone()),
            ],
        ),
        batch(
            "run-1",
            vec![
                exec(4, "/usr/bin/curl", web.clone()),
                exec(5, "/bin/sh", None),
                file(6, pb::FileOperation::Rename as i32, web.clone()),
            ],
        ),
        batch(
            "run-1",
            vec![
                exec(7, "/tmp/a%b", job.clone()),
                exec(8, "/tmp/aXb", web),
                exec(9, "/usr/bin/env", job),
            ],
        ),
    ]
}

fn allow(f: pb::EventFilter) -> pb::QueryEventsRequest {
    pb::QueryEventsRequest {
        allow_list: vec![f],
        ..Default::default()
    }
}

#[tokio::test]
async fn report_dedup_query_and_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |_| {}).await;
    let mut c = h.client().await;

    let acks = report(&mut c, batches(), None).await.expect("report");
    let acked: Vec<(String, u64)> = acks.into_iter().map(|a| (a.run_id, a.seq)).collect();
    assert_eq!(
        acked,
        [
            ("run-1".to_owned(), 3),
            ("run-1".to_owned(), 6),
            ("run-1".to_owned(), 9)
        ]
    );

    // Re-sending a batch stores nothing new.
    let again = report(&mut c, vec![batches().remove(1)], None)
        .await
        .expect("re-send");
    assert_eq!(again[0].seq, 9);
    assert_eq!(counter(&mut c, "events_duplicate").await, 3);
    assert_eq!(counter(&mut c, "events_stored").await, 9);
    assert_eq!(counter(&mut c, "batches").await, 4);
    let all = query(&mut c, pb::QueryEventsRequest::default()).await;
    assert_eq!(seqs(&all), (1..=9).collect::<Vec<_>>());
    let ids: Vec<u64> = all.iter().map(|e| e.id).collect();
    assert!(ids.windows(2).all(|w| w[0] < w[1]), "ids increase: {ids:?}");

    // Time range.
    let t = |seq: usize| all[seq - 1].event.as_ref().expect("event").time_unix_nano;
    let range = query(
        &mut c,
        pb::QueryEventsRequest {
            since_unix_nano: t(3),
            until_unix_nano: t(5),
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&range), [3, 4, 5]);

    // Kind.
    let files = query(
        &mut c,
        allow(pb::EventFilter {
            kinds: vec![pb::EventKind::FileCreated as i32],
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(seqs(&files), [3, 6]);

    // Namespace.
    let web = query(
        &mut c,
        allow(pb::EventFilter {
            namespaces: vec!["web".into()],
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(seqs(&web), [4, 6, 8]);

    // CronJob.
    let report_job = query(
        &mut c,
        allow(pb::EventFilter {
            cronjobs: vec!["report".into()],
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(seqs(&report_job), [1, 2, 3, 7, 9]);

    // Container prefix.
    let by_id = query(
        &mut c,
        allow(pb::EventFilter {
            container_ids: vec!["def".into()],
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(seqs(&by_id), [4, 6, 8]);

    // Binary prefix, with LIKE wildcards taken literally.
    let tmp = query(
        &mut c,
        allow(pb::EventFilter {
            binary_prefixes: vec!["/tmp/".into()],
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(seqs(&tmp), [2, 7, 8]);
    let percent = query(
        &mut c,
        allow(pb::EventFilter {
            binary_prefixes: vec!["/tmp/a%".into()],
            ..Default::default()
        }),
    )
    .await;
    assert_eq!(seqs(&percent), [7]);

    // Deny list and nodes.
    let denied = query(
        &mut c,
        pb::QueryEventsRequest {
            deny_list: vec![pb::EventFilter {
                binary_prefixes: vec!["/usr/".into()],
                ..Default::default()
            }],
            nodes: vec!["node-a".into()],
            ..Default::default()
        },
    )
    .await;
    assert_eq!(seqs(&denied), [2, 3, 5, 6, 7, 8]);
    let other_node = query(
        &mut c,
        pb::QueryEventsRequest {
            nodes: vec!["node-b".into()],
            ..Default::default()
        },
    )
    .await;
    assert!(other_node.is_empty());

    // Paging with after_id.
    let mut pages = Vec::new();
    let mut after_id = 0;
    loop {
        let page = query(
            &mut c,
            pb::QueryEventsRequest {
                limit: 4,
                after_id,
                ..Default::default()
            },
        )
        .await;
        let Some(last) = page.last() else { break };
        after_id = last.id;
        pages.push(seqs(&page));
    }
    assert_eq!(pages, [vec![1, 2, 3, 4], vec![5, 6, 7, 8], vec![9]]);

    // Restart on the same database file.
    drop(c);
    h.stop().await;
    let h = Harness::start(dir.path(), |_| {}).await;
    let mut c = h.client().await;
    let after = query(&mut c, pb::QueryEventsRequest::default()).await;
    assert_eq!(after, all, "stored events survive a restart");
    let status = c
        .get_status(pb::CollectorStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.events_stored, 9);
    assert!(status.store_bytes > 0);
    assert_eq!(
        (
            status.sensors[0].sensor.as_str(),
            status.sensors[0].run_id.as_str(),
            status.sensors[0].last_seq
        ),
        ("node-a", "run-1", 9)
    );
    // The ack state resumes: an old batch is acknowledged at 9 and stores nothing.
    let acks = report(&mut c, vec![batches().remove(0)], None)
        .await
        .expect("re-send after restart");
    assert_eq!(acks[0].seq, 9);
    assert_eq!(counter(&mut c, "events_stored").await, 0);
    assert_eq!(counter(&mut c, "events_duplicate").await, 3);
    // A jump (events the sensor lost) is accepted; a new run starts its own sequence.
    let acks = report(
        &mut c,
        vec![
            batch("run-1", vec![exec(12, "/bin/true", None)]),
            batch("run-2", vec![exec(1, "/bin/true", None)]),
        ],
        None,
    )
    .await
    .expect("report");
    assert_eq!(
        acks.iter()
            .map(|a| (a.run_id.as_str(), a.seq))
            .collect::<Vec<_>>(),
        [("run-1", 12), ("run-2", 1)]
    );
    drop(c);
    h.stop().await;
}

#[tokio::test]
async fn containers_are_listed_until_they_exit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |_| {}).await;
    let mut c = h.client().await;
    let created = |seq: u64, id: &str| pb::Event {
        seq,
        kind: Some(pb::event::Kind::ContainerCreated(pb::ContainerCreated {
            container: Some(pb::Container {
                id: id.into(),
                kind: pb::ContainerKind::Container as i32,
                ..Default::default()
            }),
            seen_at_start: false,
        })),
        ..exec(seq, "", None)
    };
    let exited = pb::Event {
        seq: 3,
        kind: Some(pb::event::Kind::ContainerExited(pb::ContainerExited {
            container: Some(pb::ContainerRef {
                id: "c1".into(),
                ..Default::default()
            }),
            ..Default::default()
        })),
        ..exec(3, "", None)
    };
    report(
        &mut c,
        vec![batch("r", vec![created(1, "c1"), created(2, "c2"), exited])],
        None,
    )
    .await
    .expect("report");
    let list = c
        .list_containers(pb::CollectorListContainersRequest { nodes: vec![] })
        .await
        .expect("list")
        .into_inner()
        .containers;
    let ids: Vec<(&str, &str)> = list
        .iter()
        .map(|nc| {
            (
                nc.node.as_str(),
                nc.container.as_ref().expect("container").id.as_str(),
            )
        })
        .collect();
    assert_eq!(ids, [("node-a", "c2")]);
    drop(c);
    h.stop().await;
}
