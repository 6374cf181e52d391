//! The collector's counters, and their Prometheus text exposition at `GET /metrics`.

use std::{
    fmt::Write as _,
    net::SocketAddr,
    sync::atomic::{AtomicU64, Ordering},
};

use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::TcpListener,
};
use tokio_util::sync::CancellationToken;

use crate::store::SensorRow;

/// Counters the service keeps.
#[derive(Debug, Default)]
pub struct Counters {
    /// Batches received (valid or not).
    pub batches: AtomicU64,
    /// Events received in valid batches.
    pub events_received: AtomicU64,
    /// Events received again (already stored).
    pub events_duplicate: AtomicU64,
    /// Events newly stored.
    pub events_stored: AtomicU64,
    /// Batches refused as invalid.
    pub rejected_batches: AtomicU64,
    /// Requests refused for want of credentials.
    pub auth_failures: AtomicU64,
    /// Events deleted by retention.
    pub retention_deleted: AtomicU64,
}

impl Counters {
    /// Adds `n` to a counter.
    pub fn add(c: &AtomicU64, n: u64) {
        c.fetch_add(n, Ordering::Relaxed);
    }

    /// Every counter, by name.
    pub fn snapshot(&self) -> Vec<(&'static str, u64)> {
        let g = |c: &AtomicU64| c.load(Ordering::Relaxed);
        vec![
            ("batches", g(&self.batches)),
            ("events_received", g(&self.events_received)),
            ("events_duplicate", g(&self.events_duplicate)),
            ("events_stored", g(&self.events_stored)),
            ("rejected_batches", g(&self.rejected_batches)),
            ("auth_failures", g(&self.auth_failures)),
            ("retention_deleted", g(&self.retention_deleted)),
        ]
    }
}

/// Values that are not counters.
#[derive(Debug, Default, Clone)]
pub struct Gauges {
    /// Database size, bytes.
    pub store_bytes: u64,
    /// Connected `StreamEvents` subscribers.
    pub subscribers: u64,
    /// Events lost by slow subscribers.
    pub slow_subscriber_lost: u64,
    /// The last report of each sensor.
    pub sensors: Vec<SensorRow>,
    /// Detection counters and table sizes, by name.
    pub detection: Vec<(String, u64)>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The Prometheus text exposition of the counters and gauges.
pub fn render(counters: &Counters, gauges: &Gauges) -> String {
    let mut out = String::new();
    for (name, value) in counters.snapshot() {
        let _ = writeln!(out, "# TYPE jobwatch_collector_{name}_total counter");
        let _ = writeln!(out, "jobwatch_collector_{name}_total {value}");
    }
    for (name, value) in [
        ("store_bytes", gauges.store_bytes),
        ("subscribers", gauges.subscribers),
    ] {
        let _ = writeln!(out, "# TYPE jobwatch_collector_{name} gauge");
        let _ = writeln!(out, "jobwatch_collector_{name} {value}");
    }
    let _ = writeln!(
        out,
        "# TYPE jobwatch_collector_slow_subscriber_lost_total counter"
    );
    let _ = writeln!(
        out,
        "jobwatch_collector_slow_subscriber_lost_total {}",
        gauges.slow_subscriber_lost
    );
    let _ = writeln!(
        out,
        "# TYPE jobwatch_collector_sensor_last_seen_seconds gauge"
    );
    for s in &gauges.sensors {
        let _ = writeln!(
            out,
            "jobwatch_collector_sensor_last_seen_seconds{{sensor=\"{}\"}} {}",
            escape(&s.sensor),
            s.last_seen_unix_nano / 1_000_000_000
        );
    }
    for (name, value) in &gauges.detection {
        // Table sizes are gauges; everything else counts.
        let (suffix, kind) = if name.starts_with("detection_") || name == "rules_enabled" {
            ("", "gauge")
        } else {
            ("_total", "counter")
        };
        let _ = writeln!(out, "# TYPE jobwatch_collector_{name}{suffix} {kind}");
        let _ = writeln!(out, "jobwatch_collector_{name}{suffix} {value}");
    }
    out
}

/// Serves `GET /metrics` (HTTP/1.1, one request per connection) on `listener` until `cancel`
/// fires; `render_now` renders the text for each request (on a blocking thread).
pub async fn serve(
    listener: TcpListener,
    render_now: impl Fn() -> String + Send + Sync + Clone + 'static,
    cancel: CancellationToken,
) {
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => return,
            a = listener.accept() => a,
        };
        let (mut sock, peer): (tokio::net::TcpStream, SocketAddr) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::debug!(error = %e, "metrics accept failed");
                continue;
            }
        };
        let render_now = render_now.clone();
        tokio::spawn(async move {
            let mut buf = vec![0u8; 4096];
            let mut len = 0;
            // Read the request head (bounded; a slow client gets 5 s).
            let read = tokio::time::timeout(std::time::Duration::from_secs(5), async {
                while len < buf.len() {
                    let n = sock.read(&mut buf[len..]).await?;
                    if n == 0 {
                        break;
                    }
                    len += n;
                    if buf[..len].windows(4).any(|w| w == b"\r\n\r\n") {
                        break;
                    }
                }
                Ok::<_, std::io::Error>(())
            })
            .await;
            if !matches!(read, Ok(Ok(()))) {
                tracing::debug!(%peer, "metrics request not read");
                return;
            }
            let head = String::from_utf8_lossy(&buf[..len]);
            let line = head.lines().next().unwrap_or_default();
            let mut parts = line.split_whitespace();
            let (status, body) = match (parts.next(), parts.next()) {
                // Rendering reads the database: not on the async threads.
                (Some("GET"), Some("/metrics")) => {
                    match tokio::task::spawn_blocking(render_now).await {
                        Ok(body) => ("200 OK", body),
                        Err(_) => ("500 Internal Server Error", "metrics failed\n".to_owned()),
                    }
                }
                (Some("GET"), Some(_)) => ("404 Not Found", "not found\n".to_owned()),
                _ => ("405 Method Not Allowed", "method not allowed\n".to_owned()),
            };
            let resp = format!(
                "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\n\
                 Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
                body.len()
            );
            if let Err(e) = sock.write_all(resp.as_bytes()).await {
                tracing::debug!(%peer, error = %e, "metrics response not written");
            }
            let _ = sock.shutdown().await;
        });
    }
}
