//! Token authentication of reports, and refusal of malformed batches.

mod common;

use common::*;
use jobwatch_proto::codec::RawCodec;
use jobwatch_proto::v1 as pb;

#[tokio::test]
async fn reports_need_the_token() {
    let dir = tempfile::tempdir().expect("tempdir");
    let token_file = dir.path().join("token");
    std::fs::write(&token_file, "s3cret-token\n").expect("write token");
    let h = Harness::start(dir.path(), |c| c.token_file = Some(token_file.clone())).await;
    let mut c = h.client().await;
    let one = || vec![batch("run-1", vec![exec(1, "/bin/true", None)])];

    let none = report(&mut c, one(), None).await.expect_err("no token");
    assert_eq!(none.code(), tonic::Code::Unauthenticated, "{none:?}");
    let wrong = report(&mut c, one(), Some("s3cret-tokeN"))
        .await
        .expect_err("wrong token");
    assert_eq!(wrong.code(), tonic::Code::Unauthenticated, "{wrong:?}");
    assert!(
        query(&mut c, pb::QueryEventsRequest::default())
            .await
            .is_empty(),
        "nothing stored"
    );
    let acks = report(&mut c, one(), Some("s3cret-token"))
        .await
        .expect("right token");
    assert_eq!(acks[0].seq, 1);
    // Queries on the local socket need no credentials.
    assert_eq!(counter(&mut c, "auth_failures").await, 2);
    assert_eq!(counter(&mut c, "events_stored").await, 1);
    drop(c);
    h.stop().await;
}

#[tokio::test]
async fn malformed_batches_are_refused_whole() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |_| {}).await;
    let mut c = h.client().await;

    // The bad event is the last one: the good ones before it must not be stored either.
    let bad_op = batch(
        "run-1",
        vec![
            exec(1, "/bin/true", None),
            file(2, pb::FileOperation::Create as i32, None),
            file(3, 99, None),
        ],
    );
    let e = report(&mut c, vec![bad_op], None)
        .await
        .expect_err("unknown file operation");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().contains("batch 0") && e.message().contains("events[2].file_created.operation"),
        "{}",
        e.message()
    );
    assert!(e.message().contains("99"), "{}", e.message());

    let mut no_sensor = batch("run-1", vec![exec(1, "/bin/true", None)]);
    no_sensor.sensor.clear();
    let e = report(&mut c, vec![no_sensor], None)
        .await
        .expect_err("empty sensor");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(e.message().contains("sensor"), "{}", e.message());

    // A good batch, then a bad one on the same stream: the first is kept and acknowledged.
    let lost_bad = pb::Event {
        seq: 2,
        kind: Some(pb::event::Kind::LostEvents(pb::LostEvents {
            count: 1,
            cause: 42,
        })),
        ..exec(2, "", None)
    };
    let (tx, rx) = tokio::sync::mpsc::channel(4);
    let mut acks = c
        .report(tokio_stream::wrappers::ReceiverStream::new(rx))
        .await
        .expect("stream")
        .into_inner();
    tx.send(batch("run-1", vec![exec(1, "/bin/true", None)]))
        .await
        .expect("send");
    assert_eq!(acks.message().await.expect("ack").expect("ack").seq, 1);
    tx.send(batch("run-1", vec![lost_bad])).await.expect("send");
    let e = acks.message().await.expect_err("unknown loss cause");
    assert_eq!(e.code(), tonic::Code::InvalidArgument);
    assert!(
        e.message().contains("batch 1") && e.message().contains("lost_events.cause"),
        "{}",
        e.message()
    );

    let stored = query(&mut c, pb::QueryEventsRequest::default()).await;
    assert_eq!(seqs(&stored), [1]);
    assert_eq!(counter(&mut c, "rejected_batches").await, 3);
    let status = c
        .get_status(pb::CollectorStatusRequest {})
        .await
        .expect("status")
        .into_inner();
    assert_eq!(status.events_stored, 1);
    drop(c);
    h.stop().await;
}

#[tokio::test]
async fn a_garbage_report_frame_is_an_invalid_argument_and_stores_nothing() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |_| {}).await;
    let mut c = h.client().await;
    // Field 3 (events) claims 100 bytes and has 2.
    let garbage = vec![0x1a, 100, 0x08, 0x01];
    let channel = h.channel().await;
    let mut raw = tonic::client::Grpc::new(channel);
    raw.ready().await.expect("ready");
    let path =
        tonic::codegen::http::uri::PathAndQuery::from_static("/jobwatch.v1.Collector/Report");
    let frames = tokio_stream::iter(vec![garbage]);
    let mut acks = raw
        .streaming(tonic::Request::new(frames), path, RawCodec)
        .await
        .expect("the stream opens")
        .into_inner();
    let e = acks.message().await.expect_err("refused");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message()
            .starts_with("the message does not decode as ReportBatch: "),
        "{}",
        e.message()
    );
    assert_eq!(counter(&mut c, "rejected_batches").await, 1);
    assert_eq!(counter(&mut c, "events_stored").await, 0);
    // The next sensor is served as usual.
    let acks = report(
        &mut c,
        vec![batch("run-1", vec![exec(1, "/bin/true", None)])],
        None,
    )
    .await
    .expect("valid report");
    assert_eq!(acks[0].seq, 1);
    drop(c);
    h.stop().await;
}

#[tokio::test]
async fn an_oversized_batch_is_an_invalid_argument() {
    let dir = tempfile::tempdir().expect("tempdir");
    let h = Harness::start(dir.path(), |_| {}).await;
    let mut c = h.client().await;
    let mut big = exec(1, "/bin/true", None);
    if let Some(pb::event::Kind::ProcessExec(x)) = big.kind.as_mut() {
        x.args = vec!["a".repeat(collector::server::MAX_DECODING_MESSAGE_BYTES + 1)];
    }
    let e = report(&mut c, vec![batch("run-1", vec![big])], None)
        .await
        .expect_err("too large");
    assert_eq!(e.code(), tonic::Code::InvalidArgument, "{e:?}");
    assert!(
        e.message().starts_with("oversized batch: "),
        "{}",
        e.message()
    );
    assert_eq!(counter(&mut c, "rejected_batches").await, 1);
    assert_eq!(counter(&mut c, "events_stored").await, 0);
    drop(c);
    h.stop().await;
}
