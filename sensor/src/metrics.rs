//! Prometheus metrics: the sensor's status rendered in the text exposition format (0.0.4) and
//! served over a deliberately tiny HTTP/1.1 responder.
//!
//! The responder answers `GET /metrics` (and `HEAD /metrics`) with 200, any other path with
//! 404, any other method on `/metrics` with 405 and a malformed request with 400, then closes
//! the connection. Each connection runs in its own task; its request head is read with a hard
//! size limit ([`MAX_HEAD_BYTES`]) and deadline ([`HEAD_TIMEOUT`]), its response written under
//! [`WRITE_TIMEOUT`], and at most [`MAX_CONNECTIONS`] are served at once (more are closed at
//! once), so a slow or hostile client can neither stall others nor grow memory.

use std::{
    collections::{HashMap, HashSet},
    fmt::Write as _,
    net::SocketAddr,
    sync::Arc,
    time::Duration,
};

use jobwatch_proto::v1 as pb;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
    sync::Semaphore,
    task::JoinSet,
};
use tokio_util::sync::CancellationToken;

use crate::{api::service::StatusFn, loss::LossKind};

/// Largest request head (request line and headers) accepted, bytes.
pub const MAX_HEAD_BYTES: usize = 8 * 1024;
/// Time a client has to send its whole request head.
pub const HEAD_TIMEOUT: Duration = Duration::from_secs(5);
/// Time a client has to take the whole response.
pub const WRITE_TIMEOUT: Duration = Duration::from_secs(5);
/// Connections served at once; further ones are closed without an answer.
pub const MAX_CONNECTIONS: usize = 64;
/// Longest a connection is kept open after its response, waiting for the client to close.
const LINGER_TIMEOUT: Duration = Duration::from_secs(1);
/// Most bytes discarded from a client after its response.
const LINGER_BYTES: usize = 64 * 1024;
/// `Content-Type` of the metrics page.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4";

/// Prefix of every metric name.
const PREFIX: &str = "jobwatch_sensor_";

/// Failure to serve metrics.
#[derive(Debug, thiserror::Error)]
pub enum MetricsError {
    #[error("metrics: cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("metrics: cannot read the local address of the listener for {addr}: {source}")]
    LocalAddr {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
}

// ------------------------------------------------------------------------------------------
// Rendering
// ------------------------------------------------------------------------------------------

/// Status counters mapped to a dedicated metric below; every other counter is rendered under
/// its own (sanitised) name.
const MAPPED: &[&str] = &[
    "exec_events",
    "exit_events",
    "file_events",
    "kernel_emitted_exec",
    "kernel_emitted_exit",
    "kernel_emitted_file",
    "kernel_lost_ringbuf_full_exec",
    "kernel_lost_ringbuf_full_exit",
    "kernel_lost_ringbuf_full_file",
    "kernel_lost_no_scratch",
    "queue_full",
    "queue_full_exec",
    "queue_full_exit",
    "queue_full_file",
    "queue_full_other",
    "hub_slow_subscriber_lost",
    "reporter_buffer_lost",
    "reporter_buffer_lost_exec",
    "reporter_buffer_lost_exit",
    "reporter_buffer_lost_file",
    "reporter_buffer_lost_other",
    "decode_errors",
    "kernel_read_errors",
    "kernel_filtered_host",
    "kernel_filtered_path",
    "containerd_reconnects",
    "metadata_waited",
    "metadata_resolved",
    "metadata_expired",
    "metadata_overflowed",
    "kernel_ringbuf_used_bytes",
];

/// One sample: its labels (name, value) and its value.
type Sample<'a> = (Vec<(&'static str, &'a str)>, u64);

/// The exposition being written, and the metric names it already holds.
struct Exposition {
    text: String,
    names: HashSet<String>,
}

impl Exposition {
    /// Appends a metric family: HELP and TYPE once, then its samples. A family without samples
    /// is left out entirely.
    fn family(&mut self, name: &str, kind: &str, help: &str, samples: &[Sample<'_>]) {
        if samples.is_empty() {
            return;
        }
        self.names.insert(name.to_string());
        let _ = writeln!(self.text, "# HELP {name} {}", escape_help(help));
        let _ = writeln!(self.text, "# TYPE {name} {kind}");
        for (labels, value) in samples {
            self.text.push_str(name);
            if !labels.is_empty() {
                self.text.push('{');
                for (i, (label, v)) in labels.iter().enumerate() {
                    if i > 0 {
                        self.text.push(',');
                    }
                    let _ = write!(self.text, "{label}=\"{}\"", escape_label(v));
                }
                self.text.push('}');
            }
            let _ = writeln!(self.text, " {value}");
        }
    }

    /// `{PREFIX}{stem}{suffix}`, made unique among the names already written.
    fn unique_name(&self, stem: &str, suffix: &str) -> String {
        let name = format!("{PREFIX}{stem}{suffix}");
        if !self.names.contains(&name) {
            return name;
        }
        (2u64..)
            .map(|n| format!("{PREFIX}{stem}_{n}{suffix}"))
            .find(|name| !self.names.contains(name))
            .unwrap_or(name)
    }
}

/// Renders `status` (and `extra` gauges) in the Prometheus text exposition format 0.0.4.
///
/// Well-known counters become labelled metrics (`jobwatch_sensor_events_total{kind=..}`,
/// `jobwatch_sensor_events_lost_total{cause=..}`, ...); every other counter is rendered as
/// `jobwatch_sensor_<name>_total`, and every `extra` pair as the gauge
/// `jobwatch_sensor_<name>`, names sanitised to `[a-zA-Z0-9_]`. Counters named twice are
/// summed. A metric whose counter is absent from `status` is left out.
pub fn render(status: &pb::Status, extra: &[(&str, u64)]) -> String {
    // Counters by name, in first-seen order; repeated names are summed.
    let mut order: Vec<&str> = Vec::new();
    let mut counters: HashMap<&str, u64> = HashMap::new();
    for c in &status.counters {
        let slot = counters.entry(c.name.as_str()).or_insert_with(|| {
            order.push(c.name.as_str());
            0
        });
        *slot = slot.saturating_add(c.value);
    }
    let get = |name: &str| counters.get(name).copied();
    // Samples for those of `(labels, counter)` present in the status.
    let pick = |items: &[(Vec<(&'static str, &'static str)>, &str)]| -> Vec<Sample<'static>> {
        items
            .iter()
            .filter_map(|(labels, counter)| get(counter).map(|v| (labels.clone(), v)))
            .collect()
    };

    // A userspace cause's samples by kind (`<counter>_exec`, ...), or its total alone when
    // the status has no per-kind counters.
    let by_kind = |cause: &'static str, counter: &str| -> Vec<Sample<'static>> {
        let kinds: Vec<Sample<'static>> = LossKind::ALL
            .iter()
            .filter_map(|k| {
                get(&format!("{counter}_{}", k.name()))
                    .map(|v| (vec![("cause", cause), ("kind", k.name())], v))
            })
            .collect();
        if kinds.is_empty() {
            pick(&[(vec![("cause", cause)], counter)])
        } else {
            kinds
        }
    };

    let mut out = Exposition {
        text: String::with_capacity(4096),
        names: HashSet::new(),
    };

    out.family(
        "jobwatch_sensor_info",
        "gauge",
        "Identity of the sensor: version, node and kernel release; always 1.",
        &[(
            vec![
                ("version", status.version.as_str()),
                ("node", status.node.as_str()),
                ("kernel", status.kernel.as_str()),
            ],
            1,
        )],
    );
    out.family(
        "jobwatch_sensor_events_total",
        "counter",
        "Events decoded and emitted, by kind.",
        &pick(&[
            (vec![("kind", "exec")], "exec_events"),
            (vec![("kind", "exit")], "exit_events"),
            (vec![("kind", "file")], "file_events"),
        ]),
    );
    out.family(
        "jobwatch_sensor_kernel_records_total",
        "counter",
        "Records the eBPF programs wrote to the ring buffer, by kind.",
        &pick(&[
            (vec![("kind", "exec")], "kernel_emitted_exec"),
            (vec![("kind", "exit")], "kernel_emitted_exit"),
            (vec![("kind", "file")], "kernel_emitted_file"),
        ]),
    );
    out.family(
        "jobwatch_sensor_events_lost_total",
        "counter",
        "Events lost, by cause (and by kind where the cause knows it).",
        &pick(&[
            (
                vec![("cause", "ring_buffer_full"), ("kind", "exec")],
                "kernel_lost_ringbuf_full_exec",
            ),
            (
                vec![("cause", "ring_buffer_full"), ("kind", "exit")],
                "kernel_lost_ringbuf_full_exit",
            ),
            (
                vec![("cause", "ring_buffer_full"), ("kind", "file")],
                "kernel_lost_ringbuf_full_file",
            ),
            (vec![("cause", "no_scratch")], "kernel_lost_no_scratch"),
            (
                vec![("cause", "slow_subscriber")],
                "hub_slow_subscriber_lost",
            ),
        ])
        .into_iter()
        .chain(by_kind("queue_full", "queue_full"))
        .chain(by_kind("reporter_buffer", "reporter_buffer_lost"))
        .collect::<Vec<_>>(),
    );
    out.family(
        "jobwatch_sensor_decode_errors_total",
        "counter",
        "Ring buffer records that could not be decoded.",
        &pick(&[(vec![], "decode_errors")]),
    );
    out.family(
        "jobwatch_sensor_kernel_read_errors_total",
        "counter",
        "Failed reads of kernel or user memory in the eBPF programs.",
        &pick(&[(vec![], "kernel_read_errors")]),
    );
    out.family(
        "jobwatch_sensor_filtered_total",
        "counter",
        "Events dropped in the kernel by a filter, by filter.",
        &pick(&[
            (vec![("filter", "host")], "kernel_filtered_host"),
            (vec![("filter", "path")], "kernel_filtered_path"),
        ]),
    );
    out.family(
        "jobwatch_sensor_ring_buffer_used_bytes",
        "gauge",
        "Bytes waiting in the kernel ring buffer when a record was last submitted.",
        &pick(&[(vec![], "kernel_ringbuf_used_bytes")]),
    );
    out.family(
        "jobwatch_sensor_containers_tracked",
        "gauge",
        "Containers in the sensor's container index.",
        &[(vec![], status.containers_tracked)],
    );
    out.family(
        "jobwatch_sensor_containerd_connected",
        "gauge",
        "1 while the sensor is connected to containerd, else 0.",
        &[(vec![], u64::from(status.containerd_connected))],
    );
    out.family(
        "jobwatch_sensor_containerd_reconnects_total",
        "counter",
        "Reconnections to containerd.",
        &pick(&[(vec![], "containerd_reconnects")]),
    );
    out.family(
        "jobwatch_sensor_subscribers",
        "gauge",
        "Event stream subscribers connected to the sensor's API.",
        &[(vec![], u64::from(status.subscribers))],
    );
    out.family(
        "jobwatch_sensor_programs_attached",
        "gauge",
        "eBPF programs attached.",
        &[(vec![], status.programs_attached.len() as u64)],
    );
    out.family(
        "jobwatch_sensor_metadata_pending_total",
        "counter",
        "Events held back waiting for container metadata, by outcome.",
        &pick(&[
            (vec![("outcome", "waited")], "metadata_waited"),
            (vec![("outcome", "resolved")], "metadata_resolved"),
            (vec![("outcome", "expired")], "metadata_expired"),
            (vec![("outcome", "overflowed")], "metadata_overflowed"),
        ]),
    );

    for name in order.iter().filter(|n| !MAPPED.contains(n)) {
        let value = counters.get(name).copied().unwrap_or_default();
        let stem = sanitise(name);
        let stem = stem.strip_suffix("_total").unwrap_or(&stem);
        let metric = out.unique_name(stem, "_total");
        out.family(
            &metric,
            "counter",
            &format!("Sensor counter {name}."),
            &[(vec![], value)],
        );
    }

    for (name, value) in extra {
        let metric = out.unique_name(&sanitise(name), "");
        out.family(
            &metric,
            "gauge",
            &format!("Sensor gauge {name}."),
            &[(vec![], *value)],
        );
    }

    out.text
}

/// `name` with every character outside `[a-zA-Z0-9_]` replaced by `_`; "unnamed" if empty.
fn sanitise(name: &str) -> String {
    if name.is_empty() {
        return "unnamed".to_string();
    }
    name.chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '_' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

/// A label value escaped for the exposition format: backslash, double quote and newline.
fn escape_label(value: &str) -> String {
    let mut s = String::with_capacity(value.len());
    for c in value.chars() {
        match c {
            '\\' => s.push_str("\\\\"),
            '"' => s.push_str("\\\""),
            '\n' => s.push_str("\\n"),
            c => s.push(c),
        }
    }
    s
}

/// A HELP text escaped for the exposition format: backslash and newline.
fn escape_help(text: &str) -> String {
    text.replace('\\', "\\\\").replace('\n', "\\n")
}

// ------------------------------------------------------------------------------------------
// HTTP
// ------------------------------------------------------------------------------------------

/// What a request head asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Route {
    /// `GET /metrics`; `head` for `HEAD /metrics` (no body).
    Metrics {
        head: bool,
    },
    /// `/metrics` with another method.
    MethodNotAllowed,
    NotFound,
    BadRequest,
}

/// Offset just past the empty line that ends the request head, if `buf` holds one. Lines end
/// with CRLF or a bare LF.
fn head_end(buf: &[u8]) -> Option<usize> {
    buf.iter().enumerate().find_map(|(i, &b)| {
        if b != b'\n' {
            return None;
        }
        let rest = &buf[i + 1..];
        if rest.starts_with(b"\n") {
            Some(i + 2)
        } else if rest.starts_with(b"\r\n") {
            Some(i + 3)
        } else {
            None
        }
    })
}

/// A `tchar` of RFC 9110 (method and header name characters).
fn is_token_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b)
}

fn is_token(s: &[u8]) -> bool {
    !s.is_empty() && s.iter().all(|&b| is_token_char(b))
}

/// Routes a complete request head (up to and including its final empty line).
fn route(head: &[u8]) -> Route {
    let mut lines = head
        .split(|&b| b == b'\n')
        .map(|l| l.strip_suffix(b"\r").unwrap_or(l));
    let Some(request_line) = lines.next() else {
        return Route::BadRequest;
    };
    let parts: Vec<&[u8]> = request_line.split(|&b| b == b' ').collect();
    let [method, target, version] = parts.as_slice() else {
        return Route::BadRequest;
    };
    if !is_token(method)
        || target.is_empty()
        || !target.iter().all(|b| b.is_ascii_graphic())
        || !(target.starts_with(b"/") || *target == b"*")
        || !matches!(*version, b"HTTP/1.1" | b"HTTP/1.0")
    {
        return Route::BadRequest;
    }
    for line in lines {
        if line.is_empty() {
            // The empty line ending the head; nothing follows it in `head`.
            break;
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Route::BadRequest;
        };
        let (name, value) = (&line[..colon], &line[colon + 1..]);
        if !is_token(name) || value.iter().any(|&b| b.is_ascii_control() && b != b'\t') {
            return Route::BadRequest;
        }
    }
    let path = target
        .iter()
        .position(|&b| b == b'?')
        .map_or(*target, |q| &target[..q]);
    match (*method, path) {
        (b"GET", b"/metrics") => Route::Metrics { head: false },
        (b"HEAD", b"/metrics") => Route::Metrics { head: true },
        (_, b"/metrics") => Route::MethodNotAllowed,
        _ => Route::NotFound,
    }
}

/// What reading a request head gave.
#[derive(Debug, PartialEq, Eq)]
enum Head {
    /// A complete head, up to and including its final empty line.
    Complete(Vec<u8>),
    /// More than [`MAX_HEAD_BYTES`] without the end of the head.
    TooLarge,
    /// The client closed after sending part of a head.
    Truncated,
    /// The client closed without sending anything.
    Empty,
}

/// Reads a request head from `stream`, at most [`MAX_HEAD_BYTES`].
async fn read_head<R: AsyncReadExt + Unpin>(stream: &mut R) -> std::io::Result<Head> {
    let mut buf = vec![0u8; MAX_HEAD_BYTES];
    let mut len = 0;
    loop {
        if len == buf.len() {
            return Ok(Head::TooLarge);
        }
        let n = stream.read(&mut buf[len..]).await?;
        if n == 0 {
            return Ok(if len == 0 {
                Head::Empty
            } else {
                Head::Truncated
            });
        }
        // The end of the head can straddle reads: look back up to 2 bytes.
        let from = len.saturating_sub(2);
        len += n;
        if let Some(end) = head_end(&buf[from..len]) {
            buf.truncate(from + end);
            return Ok(Head::Complete(buf));
        }
    }
}

/// A complete response that closes the connection.
fn response(
    status: &str,
    content_type: &str,
    extra_headers: &str,
    body: &str,
    head: bool,
) -> Vec<u8> {
    let mut r = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n{extra_headers}\r\n",
        body.len()
    )
    .into_bytes();
    if !head {
        r.extend_from_slice(body.as_bytes());
    }
    r
}

fn plain(status: &str, extra_headers: &str, body: &str) -> Vec<u8> {
    response(
        status,
        "text/plain; charset=utf-8",
        extra_headers,
        body,
        false,
    )
}

/// The response to a request head read from a client.
fn answer(head: &Head, metrics: impl FnOnce() -> String) -> Option<Vec<u8>> {
    let bytes = match head {
        Head::Empty => return None,
        Head::TooLarge => plain(
            "431 Request Header Fields Too Large",
            "",
            "request head too large\n",
        ),
        Head::Truncated => plain("400 Bad Request", "", "bad request\n"),
        Head::Complete(head) => match route(head) {
            Route::Metrics { head } => response("200 OK", CONTENT_TYPE, "", &metrics(), head),
            Route::MethodNotAllowed => plain(
                "405 Method Not Allowed",
                "Allow: GET, HEAD\r\n",
                "method not allowed\n",
            ),
            Route::NotFound => plain("404 Not Found", "", "not found\n"),
            Route::BadRequest => plain("400 Bad Request", "", "bad request\n"),
        },
    };
    Some(bytes)
}

/// Serves one connection: one request, one response, close.
async fn handle(mut stream: TcpStream, metrics: impl FnOnce() -> String) {
    let head = match tokio::time::timeout(HEAD_TIMEOUT, read_head(&mut stream)).await {
        Ok(Ok(head)) => head,
        Ok(Err(e)) => {
            tracing::debug!(error = %e, "metrics: reading a request failed");
            return;
        }
        Err(_) => {
            // Best effort; the client may well not be listening.
            let timeout = plain("408 Request Timeout", "", "request timeout\n");
            let _ = tokio::time::timeout(WRITE_TIMEOUT, stream.write_all(&timeout)).await;
            return;
        }
    };
    let Some(bytes) = answer(&head, metrics) else {
        return;
    };
    let write = async {
        stream.write_all(&bytes).await?;
        stream.shutdown().await
    };
    match tokio::time::timeout(WRITE_TIMEOUT, write).await {
        Ok(Ok(())) => linger(&mut stream).await,
        Ok(Err(e)) => tracing::debug!(error = %e, "metrics: writing a response failed"),
        Err(_) => tracing::debug!("metrics: client too slow to take the response"),
    }
}

/// Discards what the client still sends (a request body, the rest of an oversized head) for a
/// short, bounded while before closing: closing with unread data makes the kernel send a reset,
/// which can destroy the response before the client has read it.
async fn linger(stream: &mut TcpStream) {
    let drain = async {
        let mut scratch = [0u8; 1024];
        let mut total = 0;
        while total < LINGER_BYTES {
            match stream.read(&mut scratch).await {
                Ok(0) | Err(_) => break,
                Ok(n) => total += n,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER_TIMEOUT, drain).await;
}

/// Binds the metrics listener; returns it with its local address (the port when `addr` asks
/// for port 0).
pub async fn bind(addr: SocketAddr) -> Result<(TcpListener, SocketAddr), MetricsError> {
    let listener = TcpListener::bind(addr)
        .await
        .map_err(|source| MetricsError::Bind { addr, source })?;
    let local = listener
        .local_addr()
        .map_err(|source| MetricsError::LocalAddr { addr, source })?;
    Ok((listener, local))
}

/// Binds `addr` and serves metrics on it until `cancel` is cancelled.
pub async fn serve(
    addr: SocketAddr,
    status: StatusFn,
    extra: impl Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    cancel: CancellationToken,
) -> Result<(), MetricsError> {
    let (listener, local) = bind(addr).await?;
    tracing::info!(address = %local, "serving metrics");
    serve_listener(listener, status, extra, cancel).await;
    Ok(())
}

/// Serves metrics on `listener` until `cancel` is cancelled; connections still open then are
/// dropped.
pub async fn serve_listener(
    listener: TcpListener,
    status: StatusFn,
    extra: impl Fn() -> Vec<(&'static str, u64)> + Send + Sync + 'static,
    cancel: CancellationToken,
) {
    let extra = Arc::new(extra);
    let slots = Arc::new(Semaphore::new(MAX_CONNECTIONS));
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            () = cancel.cancelled() => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => accepted,
        };
        let stream = match accepted {
            Ok((stream, _peer)) => stream,
            Err(e) => {
                // Typically out of file descriptors: back off instead of spinning.
                tracing::warn!(error = %e, "metrics: accepting a connection failed");
                tokio::select! {
                    () = cancel.cancelled() => break,
                    () = tokio::time::sleep(Duration::from_millis(100)) => continue,
                }
            }
        };
        let Ok(permit) = Arc::clone(&slots).try_acquire_owned() else {
            tracing::debug!("metrics: too many connections, closing a new one");
            drop(stream);
            continue;
        };
        let status = Arc::clone(&status);
        let extra = Arc::clone(&extra);
        connections.spawn(async move {
            let _permit = permit;
            handle(stream, move || {
                let extra = extra();
                render(&status(), &extra)
            })
            .await;
        });
    }
    connections.shutdown().await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn counter(name: &str, value: u64) -> pb::Counter {
        pb::Counter {
            name: name.to_string(),
            value,
        }
    }

    fn status() -> pb::Status {
        pb::Status {
            version: "0.1.0".to_string(),
            node: "node-\"a\"\\b\nc".to_string(),
            kernel: "6.8.0-generic".to_string(),
            programs_attached: vec!["exec".to_string(), "exit".to_string()],
            containerd_connected: true,
            containerd_error: String::new(),
            containers_tracked: 7,
            subscribers: 2,
            counters: vec![
                counter("kernel_lost_ringbuf_full_exec", 1),
                counter("kernel_lost_ringbuf_full_exit", 2),
                counter("kernel_lost_ringbuf_full_file", 3),
                counter("kernel_lost_no_scratch", 4),
                counter("kernel_read_errors", 5),
                counter("kernel_filtered_host", 6),
                counter("kernel_filtered_path", 7),
                counter("kernel_emitted_exec", 8),
                counter("kernel_emitted_exit", 9),
                counter("kernel_emitted_file", 10),
                counter("kernel_file_unpaired", 11),
                counter("records", 12),
                counter("decode_errors", 13),
                counter("queue_full", 14),
                counter("exec_events", 15),
                counter("exit_events", 16),
                counter("file_events", 17),
                counter("metadata_waited", 18),
                counter("metadata_resolved", 19),
                counter("metadata_expired", 20),
                counter("metadata_overflowed", 21),
                counter("hub_slow_subscriber_lost", 22),
                counter("containerd_reconnects", 23),
                counter("weird-name.x", 24),
            ],
        }
    }

    fn lines(text: &str) -> Vec<&str> {
        text.lines().collect()
    }

    #[test]
    fn renders_mapped_metrics() {
        let text = render(
            &status(),
            &[("ring_buffer_bytes", 4096), ("report_lag_events", 3)],
        );
        let l = lines(&text);
        for want in [
            "jobwatch_sensor_events_total{kind=\"exec\"} 15",
            "jobwatch_sensor_events_total{kind=\"exit\"} 16",
            "jobwatch_sensor_events_total{kind=\"file\"} 17",
            "jobwatch_sensor_kernel_records_total{kind=\"file\"} 10",
            "jobwatch_sensor_events_lost_total{cause=\"ring_buffer_full\",kind=\"exec\"} 1",
            "jobwatch_sensor_events_lost_total{cause=\"ring_buffer_full\",kind=\"exit\"} 2",
            "jobwatch_sensor_events_lost_total{cause=\"ring_buffer_full\",kind=\"file\"} 3",
            "jobwatch_sensor_events_lost_total{cause=\"no_scratch\"} 4",
            "jobwatch_sensor_events_lost_total{cause=\"queue_full\"} 14",
            "jobwatch_sensor_events_lost_total{cause=\"slow_subscriber\"} 22",
            "jobwatch_sensor_decode_errors_total 13",
            "jobwatch_sensor_kernel_read_errors_total 5",
            "jobwatch_sensor_filtered_total{filter=\"host\"} 6",
            "jobwatch_sensor_filtered_total{filter=\"path\"} 7",
            "jobwatch_sensor_containers_tracked 7",
            "jobwatch_sensor_containerd_connected 1",
            "jobwatch_sensor_containerd_reconnects_total 23",
            "jobwatch_sensor_subscribers 2",
            "jobwatch_sensor_programs_attached 2",
            "jobwatch_sensor_metadata_pending_total{outcome=\"waited\"} 18",
            "jobwatch_sensor_metadata_pending_total{outcome=\"overflowed\"} 21",
            "# TYPE jobwatch_sensor_events_total counter",
            "# TYPE jobwatch_sensor_subscribers gauge",
            "jobwatch_sensor_ring_buffer_bytes 4096",
            "jobwatch_sensor_report_lag_events 3",
            "# TYPE jobwatch_sensor_ring_buffer_bytes gauge",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{text}");
        }
        // No reporter_buffer_lost counter: no such sample.
        assert!(!text.contains("reporter_buffer"), "{text}");
        // Mapped counters are not rendered a second time under their raw names.
        assert!(!text.contains("jobwatch_sensor_exec_events"), "{text}");
        assert!(!text.contains("jobwatch_sensor_kernel_emitted"), "{text}");
        assert!(text.ends_with('\n'));
    }

    #[test]
    fn reporter_buffer_loss_when_present() {
        let mut s = status();
        s.counters.push(counter("reporter_buffer_lost", 9));
        let text = render(&s, &[]);
        assert!(
            lines(&text)
                .contains(&"jobwatch_sensor_events_lost_total{cause=\"reporter_buffer\"} 9")
        );
    }

    #[test]
    fn userspace_losses_by_kind_replace_their_total() {
        let mut s = status();
        for (name, v) in [
            ("queue_full_exec", 4),
            ("queue_full_exit", 0),
            ("queue_full_file", 10),
            ("queue_full_other", 0),
            ("reporter_buffer_lost", 9),
            ("reporter_buffer_lost_exec", 2),
            ("reporter_buffer_lost_exit", 1),
            ("reporter_buffer_lost_file", 6),
            ("reporter_buffer_lost_other", 0),
        ] {
            s.counters.push(counter(name, v));
        }
        let text = render(&s, &[]);
        let l = lines(&text);
        for want in [
            "jobwatch_sensor_events_lost_total{cause=\"queue_full\",kind=\"exec\"} 4",
            "jobwatch_sensor_events_lost_total{cause=\"queue_full\",kind=\"file\"} 10",
            "jobwatch_sensor_events_lost_total{cause=\"reporter_buffer\",kind=\"exit\"} 1",
            "jobwatch_sensor_events_lost_total{cause=\"reporter_buffer\",kind=\"file\"} 6",
        ] {
            assert!(l.contains(&want), "missing {want:?} in\n{text}");
        }
        // The totals are not samples of their own (a sum over the family stays right), and
        // the per-kind counters are not rendered again under their raw names.
        assert!(!l.contains(&"jobwatch_sensor_events_lost_total{cause=\"queue_full\"} 14"));
        assert!(!text.contains("{cause=\"reporter_buffer\"} 9"), "{text}");
        assert!(!text.contains("jobwatch_sensor_queue_full_exec"), "{text}");
        assert!(
            !text.contains("jobwatch_sensor_reporter_buffer_lost"),
            "{text}"
        );
    }

    #[test]
    fn unknown_counters_are_rendered() {
        let text = render(&status(), &[]);
        let l = lines(&text);
        assert!(l.contains(&"jobwatch_sensor_records_total 12"), "{text}");
        assert!(
            l.contains(&"jobwatch_sensor_kernel_file_unpaired_total 11"),
            "{text}"
        );
        assert!(
            l.contains(&"jobwatch_sensor_weird_name_x_total 24"),
            "{text}"
        );
        assert!(l.contains(&"# TYPE jobwatch_sensor_weird_name_x_total counter"));
    }

    #[test]
    fn help_and_type_once_per_metric_and_names_valid() {
        let text = render(&status(), &[("ring_buffer_bytes", 1)]);
        let mut help = HashSet::new();
        let mut types = HashSet::new();
        for line in text.lines() {
            if let Some(rest) = line.strip_prefix("# HELP ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(help.insert(name.to_string()), "HELP twice for {name}");
            } else if let Some(rest) = line.strip_prefix("# TYPE ") {
                let name = rest.split(' ').next().unwrap_or_default();
                assert!(types.insert(name.to_string()), "TYPE twice for {name}");
            } else {
                let name = line
                    .split(['{', ' '])
                    .next()
                    .unwrap_or_default()
                    .to_string();
                assert!(types.contains(&name), "sample before TYPE: {line}");
                assert!(
                    name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_'),
                    "bad name {name}"
                );
            }
        }
        assert_eq!(help, types);
        assert!(help.contains("jobwatch_sensor_events_lost_total"));
    }

    #[test]
    fn label_values_are_escaped() {
        let text = render(&status(), &[]);
        assert!(
            lines(&text).contains(
                &"jobwatch_sensor_info{version=\"0.1.0\",node=\"node-\\\"a\\\"\\\\b\\nc\",kernel=\"6.8.0-generic\"} 1"
            ),
            "{text}"
        );
        assert_eq!(escape_label("a\\b\"c\nd"), "a\\\\b\\\"c\\nd");
        assert_eq!(escape_help("a\\b\nc"), "a\\\\b\\nc");
    }

    #[test]
    fn absent_counters_and_collisions() {
        let s = pb::Status {
            counters: vec![
                counter("subscribers", 1),
                counter("a.b", 2),
                counter("a_b", 3),
                counter("x_total", 4),
                counter("x_total", 5),
            ],
            ..pb::Status::default()
        };
        let text = render(&s, &[("subscribers", 9), ("", 1)]);
        let l = lines(&text);
        // No exec/exit/file counters: the family is left out entirely.
        assert!(!text.contains("jobwatch_sensor_events_total"), "{text}");
        assert!(l.contains(&"jobwatch_sensor_subscribers 0"));
        assert!(l.contains(&"jobwatch_sensor_subscribers_total 1"));
        assert!(l.contains(&"jobwatch_sensor_a_b_total 2"));
        assert!(l.contains(&"jobwatch_sensor_a_b_2_total 3"));
        assert!(l.contains(&"jobwatch_sensor_x_total 9"), "{text}");
        assert!(l.contains(&"jobwatch_sensor_subscribers_2 9"), "{text}");
        assert!(l.contains(&"jobwatch_sensor_unnamed 1"), "{text}");
        assert!(l.contains(&"jobwatch_sensor_containerd_connected 0"));
    }

    #[test]
    fn head_end_detection() {
        assert_eq!(head_end(b"GET / HTTP/1.1\r\n\r\n"), Some(18));
        assert_eq!(head_end(b"GET / HTTP/1.1\n\n"), Some(16));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n\r\nbody"), Some(27));
        assert_eq!(head_end(b"GET / HTTP/1.1\r\nHost: x\r\n"), None);
        assert_eq!(head_end(b""), None);
    }

    #[test]
    fn routing() {
        let r = |s: &str| route(s.as_bytes());
        assert_eq!(
            r("GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            r("GET /metrics HTTP/1.0\n\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            r("GET /metrics?x=1 HTTP/1.1\r\n\r\n"),
            Route::Metrics { head: false }
        );
        assert_eq!(
            r("HEAD /metrics HTTP/1.1\r\n\r\n"),
            Route::Metrics { head: true }
        );
        assert_eq!(r("POST /metrics HTTP/1.1\r\n\r\n"), Route::MethodNotAllowed);
        assert_eq!(r("GET / HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("GET /metrics/ HTTP/1.1\r\n\r\n"), Route::NotFound);
        assert_eq!(r("GET /other HTTP/1.1\r\n\r\n"), Route::NotFound);
        for bad in [
            "\r\n\r\n",
            "garbage\r\n\r\n",
            "GET /metrics\r\n\r\n",
            "GET  /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/2\r\n\r\n",
            "GET metrics HTTP/1.1\r\n\r\n",
            "G(T /metrics HTTP/1.1\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nno colon\r\n\r\n",
            "GET /metrics HTTP/1.1\r\n: empty name\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nBad Name: x\r\n\r\n",
            "GET /metrics HTTP/1.1\r\nX: a\x00b\r\n\r\n",
            "GET /m\u{e9}trics HTTP/1.1\r\n\r\n",
        ] {
            assert_eq!(r(bad), Route::BadRequest, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn read_head_bounds() {
        let mut input: &[u8] = b"GET /metrics HTTP/1.1\r\n\r\nextra";
        let got = read_head(&mut input).await.ok();
        assert_eq!(
            got,
            Some(Head::Complete(b"GET /metrics HTTP/1.1\r\n\r\n".to_vec()))
        );

        let mut input: &[u8] = b"";
        assert_eq!(read_head(&mut input).await.ok(), Some(Head::Empty));

        let mut input: &[u8] = b"GET /metrics HTTP/1.1\r\n";
        assert_eq!(read_head(&mut input).await.ok(), Some(Head::Truncated));

        let big = vec![b'a'; MAX_HEAD_BYTES + 10];
        let mut input: &[u8] = &big;
        assert_eq!(read_head(&mut input).await.ok(), Some(Head::TooLarge));

        // The end of the head split across reads.
        let (mut client, mut server) = tokio::io::duplex(64);
        let reader = tokio::spawn(async move { read_head(&mut server).await.ok() });
        for part in [&b"GET /metrics HTTP/1.1\r"[..], b"\n\r", b"\n"] {
            client.write_all(part).await.ok();
            client.flush().await.ok();
            tokio::task::yield_now().await;
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert_eq!(
            reader.await.ok().flatten(),
            Some(Head::Complete(b"GET /metrics HTTP/1.1\r\n\r\n".to_vec()))
        );
    }

    #[test]
    fn answers() {
        let text = |h: &Head| {
            answer(h, || "m 1\n".to_string()).map(|b| String::from_utf8_lossy(&b).into_owned())
        };
        let ok =
            text(&Head::Complete(b"GET /metrics HTTP/1.1\r\n\r\n".to_vec())).unwrap_or_default();
        assert!(ok.starts_with("HTTP/1.1 200 OK\r\n"), "{ok}");
        assert!(
            ok.contains("\r\nContent-Type: text/plain; version=0.0.4\r\n"),
            "{ok}"
        );
        assert!(ok.contains("\r\nContent-Length: 4\r\n"), "{ok}");
        assert!(ok.ends_with("\r\n\r\nm 1\n"), "{ok}");
        let head =
            text(&Head::Complete(b"HEAD /metrics HTTP/1.1\r\n\r\n".to_vec())).unwrap_or_default();
        assert!(head.contains("\r\nContent-Length: 4\r\n") && head.ends_with("\r\n\r\n"));
        let too_large = text(&Head::TooLarge).unwrap_or_default();
        assert!(too_large.starts_with("HTTP/1.1 431 "), "{too_large}");
        let truncated = text(&Head::Truncated).unwrap_or_default();
        assert!(truncated.starts_with("HTTP/1.1 400 "), "{truncated}");
        let post =
            text(&Head::Complete(b"POST /metrics HTTP/1.1\r\n\r\n".to_vec())).unwrap_or_default();
        assert!(post.starts_with("HTTP/1.1 405 ") && post.contains("\r\nAllow: GET, HEAD\r\n"));
        assert_eq!(text(&Head::Empty), None);
    }
}
