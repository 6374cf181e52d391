//! The metrics endpoint over a real TCP socket: raw HTTP/1.1 requests, hostile clients.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use jobwatch_proto::v1 as pb;
use sensor::{
    api::service::StatusFn,
    metrics::{self, HEAD_TIMEOUT, MAX_HEAD_BYTES, MetricsError},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpStream,
    task::JoinHandle,
};
use tokio_util::sync::CancellationToken;

fn status() -> pb::Status {
    pb::Status {
        version: "0.1.0".to_string(),
        node: "node-a".to_string(),
        kernel: "6.8.0".to_string(),
        programs_attached: vec!["exec".to_string()],
        containerd_connected: true,
        containerd_error: String::new(),
        containers_tracked: 3,
        subscribers: 1,
        counters: vec![
            pb::Counter {
                name: "exec_events".to_string(),
                value: 42,
            },
            pb::Counter {
                name: "kernel_lost_ringbuf_full_exec".to_string(),
                value: 5,
            },
            pb::Counter {
                name: "records".to_string(),
                value: 100,
            },
        ],
    }
}

struct Server {
    addr: SocketAddr,
    cancel: CancellationToken,
    task: JoinHandle<()>,
}

impl Server {
    async fn start() -> Server {
        let (listener, addr) = metrics::bind("127.0.0.1:0".parse().expect("address"))
            .await
            .expect("bind");
        assert_ne!(addr.port(), 0);
        let cancel = CancellationToken::new();
        let source: StatusFn = Arc::new(status);
        let task = tokio::spawn(metrics::serve_listener(
            listener,
            source,
            || vec![("ring_buffer_bytes", 4096)],
            cancel.clone(),
        ));
        Server { addr, cancel, task }
    }

    async fn stop(self) {
        self.cancel.cancel();
        tokio::time::timeout(Duration::from_secs(5), self.task)
            .await
            .expect("serve_listener ends on cancel")
            .expect("serve_listener task");
    }
}

/// Sends `request` raw and returns everything the server answers until it closes.
async fn exchange(addr: SocketAddr, request: &[u8]) -> String {
    let mut stream = TcpStream::connect(addr).await.expect("connect");
    stream.write_all(request).await.expect("write request");
    let mut response = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("response within 5 s")
        .expect("read response");
    String::from_utf8(response).expect("UTF-8 response")
}

fn body(response: &str) -> &str {
    response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body)
        .expect("head and body")
}

#[tokio::test]
async fn get_metrics() {
    let server = Server::start().await;
    let response = exchange(
        server.addr,
        b"GET /metrics HTTP/1.1\r\nHost: localhost\r\nAccept: */*\r\n\r\n",
    )
    .await;
    assert!(response.starts_with("HTTP/1.1 200 OK\r\n"), "{response}");
    assert!(
        response.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
        "{response}"
    );
    let body = body(&response);
    assert!(
        response.contains(&format!("\r\nContent-Length: {}\r\n", body.len())),
        "{response}"
    );
    let lines: Vec<&str> = body.lines().collect();
    for want in [
        "# TYPE jobwatch_sensor_events_total counter",
        "jobwatch_sensor_events_total{kind=\"exec\"} 42",
        "jobwatch_sensor_events_lost_total{cause=\"ring_buffer_full\",kind=\"exec\"} 5",
        "jobwatch_sensor_records_total 100",
        "jobwatch_sensor_containers_tracked 3",
        "jobwatch_sensor_containerd_connected 1",
        "jobwatch_sensor_subscribers 1",
        "jobwatch_sensor_ring_buffer_bytes 4096",
        "jobwatch_sensor_info{version=\"0.1.0\",node=\"node-a\",kernel=\"6.8.0\"} 1",
    ] {
        assert!(lines.contains(&want), "missing {want:?} in\n{body}");
    }
    server.stop().await;
}

#[tokio::test]
async fn other_paths_methods_and_garbage() {
    let server = Server::start().await;
    let r = exchange(server.addr, b"GET /other HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    let r = exchange(server.addr, b"GET / HTTP/1.0\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 404 "), "{r}");
    let r = exchange(server.addr, b"POST /metrics HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 405 "), "{r}");
    let r = exchange(server.addr, b"HEAD /metrics HTTP/1.1\r\n\r\n").await;
    assert!(
        r.starts_with("HTTP/1.1 200 OK\r\n") && r.ends_with("\r\n\r\n"),
        "{r}"
    );
    let r = exchange(server.addr, b"\x16\x03\x01 garbage\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    let r = exchange(
        server.addr,
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
    )
    .await;
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");
    server.stop().await;
}

#[tokio::test]
async fn truncated_and_oversized_requests() {
    let server = Server::start().await;
    // Half a request, then the client closes its side.
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    stream.write_all(b"GET /metr").await.expect("write");
    stream.shutdown().await.expect("shutdown");
    let mut r = String::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_string(&mut r))
        .await
        .expect("answer in time")
        .expect("read");
    assert!(r.starts_with("HTTP/1.1 400 "), "{r}");

    // A head that never ends: cut off at the limit, whatever the client still sends.
    let mut request = b"GET /metrics HTTP/1.1\r\nX-Filler: ".to_vec();
    request.resize(MAX_HEAD_BYTES + 1024, b'a');
    let mut stream = TcpStream::connect(server.addr).await.expect("connect");
    let _ = stream.write_all(&request).await;
    let mut response = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut response))
        .await
        .expect("answer in time");
    let r = String::from_utf8_lossy(&response);
    assert!(r.starts_with("HTTP/1.1 431 "), "{r}");
    server.stop().await;
}

#[tokio::test]
async fn silent_client_does_not_block_others_and_times_out() {
    let server = Server::start().await;
    let mut idle = TcpStream::connect(server.addr).await.expect("connect");
    let mut slow = TcpStream::connect(server.addr).await.expect("connect");
    slow.write_all(b"GET /metrics HTTP/1.1\r\n")
        .await
        .expect("write");

    let started = tokio::time::Instant::now();
    let r = exchange(server.addr, b"GET /metrics HTTP/1.1\r\n\r\n").await;
    assert!(r.starts_with("HTTP/1.1 200 OK\r\n"), "{r}");
    assert!(started.elapsed() < Duration::from_secs(2));

    // The silent client is answered 408 and closed once its time is up.
    let mut response = Vec::new();
    tokio::time::timeout(
        HEAD_TIMEOUT + Duration::from_secs(3),
        idle.read_to_end(&mut response),
    )
    .await
    .expect("closed after the head timeout")
    .expect("read");
    let r = String::from_utf8_lossy(&response);
    assert!(r.starts_with("HTTP/1.1 408 "), "{r}");
    assert!(started.elapsed() >= HEAD_TIMEOUT - Duration::from_millis(500));
    server.stop().await;
}

#[tokio::test]
async fn bind_error_names_the_address() {
    let (_held, addr) = metrics::bind("127.0.0.1:0".parse().expect("address"))
        .await
        .expect("bind");
    let err = metrics::serve(addr, Arc::new(status), Vec::new, CancellationToken::new())
        .await
        .expect_err("address in use");
    assert!(matches!(err, MetricsError::Bind { addr: a, .. } if a == addr));
    assert!(err.to_string().contains(&addr.to_string()), "{err}");
}

#[tokio::test]
async fn serve_stops_on_cancel() {
    let cancel = CancellationToken::new();
    let task = tokio::spawn(metrics::serve(
        "127.0.0.1:0".parse().expect("address"),
        Arc::new(status),
        Vec::new,
        cancel.clone(),
    ));
    tokio::time::sleep(Duration::from_millis(50)).await;
    cancel.cancel();
    tokio::time::timeout(Duration::from_secs(5), task)
        .await
        .expect("ends on cancel")
        .expect("task")
        .expect("no error");
}
