//! Reporting the sensor's events to a collector (`jobwatch.v1.Collector/Report`).
//!
//! The hot path ([`Reporter::offer`]) only takes a short lock and appends the event to a
//! bounded in-memory buffer; it never waits for the network. A background task keeps ONE
//! long-lived `Report` stream open to the collector (over a Unix socket, or HTTPS with optional
//! mutual TLS), sends the buffered events in sequence order in batches, and forgets them only
//! once the collector acknowledges them (`ReportAck{seq}`: everything up to `seq` is stored).
//! When the stream breaks the task reconnects with exponential backoff and jitter and re-sends
//! every unacknowledged event from the oldest; the collector stores an event once (an event at or
//! below the highest seq it stored for the run is a re-send).
//!
//! # Loss accounting
//!
//! The buffer holds at most `buffer_events` real events. When an event arrives and the buffer
//! is full, the oldest event never sent is dropped, counted (`reporter_buffer_lost`, and by
//! kind `reporter_buffer_lost_{exec,exit,file,other}`) and merged into a pending
//! `LostEvents{count, cause: REPORTER_BUFFER}` record, whose `seq` is the seq of the **first**
//! dropped event of the run of drops (the collector stores the record in place of the dropped
//! range; the range's other seqs are simply never seen). So *events stored by the collector +
//! lost counts stored by the collector == events generated*, and the sensor's counters say
//! exactly what the collector lacks.
//!
//! Events already sent but not yet acknowledged are never dropped: the collector may have
//! stored them, and a loss counted for them might be no loss at all. They are at most
//! `buffer_events` (no more is sent while that many wait for their acknowledgement); when
//! they fill the buffer, the arriving event is the one dropped.

use std::{
    collections::VecDeque,
    hash::{BuildHasher, Hasher},
    path::{Path, PathBuf},
    sync::{
        Arc, Mutex, MutexGuard,
        atomic::{AtomicBool, AtomicU64, Ordering},
    },
    time::{Duration, SystemTime, UNIX_EPOCH},
};

use bytes::Bytes;
use jobwatch_proto::v1 as pb;
use prost::Message;
use tokio::{sync::Notify, time::Instant};
use tokio_util::sync::CancellationToken;
use tonic::{
    Code, Request,
    metadata::MetadataValue,
    transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity},
};
use tracing::{debug, error, info, warn};

use crate::{
    api::wire::EncodedEvent,
    loss::{LossKind, PerKind},
};

/// Default for [`ReporterSettings::buffer_events`].
pub const DEFAULT_BUFFER_EVENTS: usize = 100_000;
/// Default for [`ReporterSettings::batch_max`].
pub const DEFAULT_BATCH_MAX: usize = 1000;
/// Default for [`ReporterSettings::batch_delay`].
/// A second: at low rates every batch costs the sensor and the collector wakeups, a write and a
/// database transaction whatever its size (200 ms cost the collector 47 instead of 25 µs of CPU
/// per exec at 100 execs/s, see docs/performance.md); busy sensors fill batches sooner.
pub const DEFAULT_BATCH_DELAY: Duration = Duration::from_millis(1000);
/// Default for [`ReporterSettings::max_backoff`].
pub const DEFAULT_MAX_BACKOFF: Duration = Duration::from_secs(30);

/// The `Report` method of `jobwatch.v1.Collector`.
const REPORT_PATH: &str = "/jobwatch.v1.Collector/Report";
/// Smallest buffer the reporter accepts (smaller settings are raised to it).
const MIN_BUFFER_EVENTS: usize = 4;
/// A batch stops growing past this many encoded bytes (a single larger event is sent alone),
/// well under the usual 1 MiB / 4 MiB gRPC message limits.
const MAX_BATCH_BYTES: usize = 768 * 1024;
/// First retry delay after a failure.
const INITIAL_BACKOFF: Duration = Duration::from_millis(100);
/// Shortest retry delay, whatever `max_backoff` says.
const MIN_BACKOFF: Duration = Duration::from_millis(10);
/// How long establishing a connection may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// HTTP/2 keep-alive: detects a collector that vanished without closing the connection.
const KEEP_ALIVE_INTERVAL: Duration = Duration::from_secs(20);
const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(10);

/// Where the collector listens.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReportEndpoint {
    /// A Unix socket (plaintext gRPC; access is controlled by the socket's permissions).
    Unix(PathBuf),
    /// An `https://host:port` URL; the collector's certificate is verified against `ca_pem_path`.
    /// With `client_cert_path` and `client_key_path` (both or neither) the sensor presents a
    /// client certificate (mutual TLS).
    Https {
        /// `https://host:port`.
        url: String,
        /// PEM CA bundle that signs the collector's certificate.
        ca_pem_path: PathBuf,
        /// PEM client certificate for mutual TLS.
        client_cert_path: Option<PathBuf>,
        /// PEM private key of `client_cert_path`.
        client_key_path: Option<PathBuf>,
    },
}

impl std::fmt::Display for ReportEndpoint {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ReportEndpoint::Unix(path) => write!(f, "unix:{}", path.display()),
            ReportEndpoint::Https { url, .. } => f.write_str(url),
        }
    }
}

/// How the reporter reaches the collector and how it batches.
#[derive(Clone, Debug)]
pub struct ReporterSettings {
    /// The collector.
    pub endpoint: ReportEndpoint,
    /// File holding a bearer token, sent as `authorization: Bearer <token>`; re-read on every
    /// connection attempt, so a rotated or fixed token is picked up without a restart.
    pub token_file: Option<PathBuf>,
    /// This sensor's identity (its node name), sent in every batch.
    pub sensor: String,
    /// Most unacknowledged events kept in memory (at least 4).
    pub buffer_events: usize,
    /// Most events per batch.
    pub batch_max: usize,
    /// How long a partial batch waits for more events before it is sent.
    pub batch_delay: Duration,
    /// Longest wait between reconnection attempts.
    pub max_backoff: Duration,
}

impl ReporterSettings {
    /// Settings with the default buffer, batching and backoff.
    pub fn new(endpoint: ReportEndpoint, sensor: impl Into<String>) -> ReporterSettings {
        ReporterSettings {
            endpoint,
            token_file: None,
            sensor: sensor.into(),
            buffer_events: DEFAULT_BUFFER_EVENTS,
            batch_max: DEFAULT_BATCH_MAX,
            batch_delay: DEFAULT_BATCH_DELAY,
            max_backoff: DEFAULT_MAX_BACKOFF,
        }
    }
}

/// Why a connection or a stream to the collector failed. Every variant names the endpoint.
#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    /// A file the connection needs (token, certificate, key) is unreadable.
    #[error("collector {endpoint}: cannot read the {what} {}: {source}", path.display())]
    Read {
        endpoint: String,
        what: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
    /// The configuration cannot work (bad URL, half a client identity, unusable token).
    #[error("collector {endpoint}: {message}")]
    Config { endpoint: String, message: String },
    /// The transport could not connect.
    #[error("cannot connect to the collector at {endpoint}: {message}")]
    Connect { endpoint: String, message: String },
    /// The collector answered the stream with an error.
    #[error("the collector at {endpoint} failed the report stream: {code:?}: {message}")]
    Status {
        endpoint: String,
        code: Code,
        message: String,
    },
    /// The collector ended the stream.
    #[error("the collector at {endpoint} closed the report stream")]
    Closed { endpoint: String },
}

impl ReportError {
    fn status(endpoint: &str, status: &tonic::Status) -> ReportError {
        ReportError::Status {
            endpoint: endpoint.to_string(),
            code: status.code(),
            message: status.message().to_string(),
        }
    }

    /// The collector rejected the sensor's credentials.
    pub fn is_auth(&self) -> bool {
        matches!(
            self,
            ReportError::Status {
                code: Code::Unauthenticated | Code::PermissionDenied,
                ..
            }
        )
    }
}

/// The reporter's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ReporterStats {
    /// Events offered.
    pub offered: u64,
    /// Highest sequence number the collector acknowledged.
    pub acked: u64,
    /// Batches sent (re-sent ones included).
    pub sent_batches: u64,
    /// Events sent again after a reconnection.
    pub resent_events: u64,
    /// Events dropped because the buffer was full (`reporter_buffer_lost`), all kinds.
    pub buffer_lost: u64,
    /// The same, by kind (`reporter_buffer_lost_exec`, ...).
    pub buffer_lost_by_kind: [(LossKind, u64); 4],
    /// Report streams opened after the first one.
    pub reconnects: u64,
    /// A report stream is open now.
    pub connected: bool,
    /// `offered - acked`.
    pub lag_events: u64,
    /// Real events in the buffer now (loss records not included).
    pub buffered: usize,
}

/// One buffered record. Shared with the batch being written, so sending copies no event.
struct Entry {
    event: EncodedEvent,
    /// An event the sensor generated, as opposed to a loss record the reporter made.
    real: bool,
}

/// The unacknowledged events, in seq order: `sent` (sent at least once, maybe stored by the
/// collector), then the pending loss record, then `pending` (never sent).
struct Buffer {
    sent: VecDeque<Entry>,
    /// Real events in `sent`.
    sent_real: usize,
    /// Loss record for never-sent events dropped since the last send.
    pending_lost: Option<pb::Event>,
    pending: VecDeque<EncodedEvent>,
    capacity: usize,
    /// The node the loss records name (the sensor's identity).
    node: String,
}

impl Buffer {
    fn real(&self) -> usize {
        self.sent_real + self.pending.len()
    }

    /// Drops the oldest event never sent, keeping the loss accounting exact (see the module
    /// docs). Returns its kind, or None when nothing unsent is left.
    fn drop_oldest(&mut self) -> Option<LossKind> {
        let dropped = self.pending.pop_front()?;
        match self.pending_lost.as_mut() {
            Some(record) => {
                if let Some(pb::event::Kind::LostEvents(lost)) = record.kind.as_mut() {
                    lost.count += 1;
                }
            }
            None => self.pending_lost = Some(loss_record(&self.node, &dropped, 1)),
        }
        Some(dropped.kind)
    }

    /// Forgets everything up to and including `seq`; returns how many records went.
    fn ack(&mut self, seq: u64) -> usize {
        let mut n = 0;
        while self.sent.front().is_some_and(|e| e.event.seq <= seq) {
            if let Some(entry) = self.sent.pop_front() {
                if entry.real {
                    self.sent_real -= 1;
                }
                n += 1;
            }
        }
        n
    }

    /// Records ready to go on a stream that has sent `sent[..cursor]`: (re-sends, new ones).
    fn sendable(&self, cursor: usize) -> (usize, usize) {
        let resend = self.sent.len().saturating_sub(cursor);
        let room = self.capacity.saturating_sub(self.sent.len());
        let fresh = usize::from(self.pending_lost.is_some()) + self.pending.len();
        (resend, fresh.min(room))
    }

    /// The next batch (at most `max` records) for a stream that has sent `sent[..*cursor]`.
    /// Returns the events and how many of them are re-sends. The events' bytes are shared with
    /// the buffer (no copy).
    fn take_batch(&mut self, cursor: &mut usize, max: usize) -> (Vec<Bytes>, usize) {
        let mut out = Vec::new();
        let mut bytes = 0usize;
        // Whether an event of `len` encoded bytes still fits (a first event always does).
        let fits = |out: &Vec<Bytes>, bytes: usize, len: usize| {
            out.len() < max && (out.is_empty() || bytes + len <= MAX_BATCH_BYTES)
        };
        while let Some(entry) = self.sent.get(*cursor) {
            let len = entry.event.bytes.len();
            if !fits(&out, bytes, len) {
                // The batch filled up with re-sends only.
                let resent = out.len();
                return (out, resent);
            }
            bytes += len;
            out.push(entry.event.bytes.clone());
            *cursor += 1;
        }
        let resent = out.len();
        // The window: never more records in flight than the buffer holds.
        if let Some(record) = self.pending_lost.take() {
            let len = record.encoded_len();
            if self.sent.len() < self.capacity && fits(&out, bytes, len) {
                bytes += len;
                let record = EncodedEvent::of(&record);
                out.push(record.bytes.clone());
                self.sent.push_back(Entry {
                    event: record,
                    real: false,
                });
                *cursor += 1;
            } else {
                self.pending_lost = Some(record);
                return (out, resent);
            }
        }
        while self.sent.len() < self.capacity {
            let Some(event) = self.pending.front() else {
                break;
            };
            let len = event.bytes.len();
            if !fits(&out, bytes, len) {
                break;
            }
            let Some(event) = self.pending.pop_front() else {
                break;
            };
            bytes += len;
            out.push(event.bytes.clone());
            self.sent.push_back(Entry { event, real: true });
            self.sent_real += 1;
            *cursor += 1;
        }
        (out, resent)
    }
}

/// A `LostEvents{count, REPORTER_BUFFER}` record standing in for `dropped` (same seq, node
/// and times).
fn loss_record(node: &str, dropped: &EncodedEvent, count: u64) -> pb::Event {
    pb::Event {
        node: node.to_owned(),
        time_unix_nano: dropped.time_unix_nano,
        boot_ns: dropped.boot_ns,
        seq: dropped.seq,
        kind: Some(pb::event::Kind::LostEvents(pb::LostEvents {
            count,
            cause: pb::LossCause::ReporterBuffer as i32,
        })),
    }
}

struct Shared {
    buffer: Mutex<Buffer>,
    /// Wakes the task when events arrive: on the first event of a batch (it starts the
    /// batch's delay) and once a full batch waits, not on every event.
    wake: Notify,
    /// `ReporterSettings::batch_max` (at least 1).
    batch_max: usize,
    run_id: String,
    offered: AtomicU64,
    acked: AtomicU64,
    sent_batches: AtomicU64,
    resent_events: AtomicU64,
    buffer_lost: PerKind,
    reconnects: AtomicU64,
    connected: AtomicBool,
}

impl Shared {
    /// The buffer; a panic elsewhere while it was held leaves it usable.
    fn lock(&self) -> MutexGuard<'_, Buffer> {
        self.buffer
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// Handle on the reporting task; cheap to clone (all clones feed the same task).
#[derive(Clone)]
pub struct Reporter {
    shared: Arc<Shared>,
}

impl std::fmt::Debug for Reporter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reporter")
            .field("run_id", &self.shared.run_id)
            .field("stats", &self.stats())
            .finish()
    }
}

impl Reporter {
    /// Starts the reporting task (on the current Tokio runtime) and returns the handle used to
    /// offer events. The task runs until `cancel` is cancelled; unacknowledged events are then
    /// abandoned. Called outside a Tokio runtime, it logs an error and the reporter only
    /// buffers.
    pub fn start(settings: ReporterSettings, cancel: CancellationToken) -> Reporter {
        let capacity = settings.buffer_events.max(MIN_BUFFER_EVENTS);
        let shared = Arc::new(Shared {
            buffer: Mutex::new(Buffer {
                sent: VecDeque::new(),
                sent_real: 0,
                pending_lost: None,
                pending: VecDeque::new(),
                capacity,
                node: settings.sensor.clone(),
            }),
            wake: Notify::new(),
            batch_max: settings.batch_max.max(1),
            run_id: new_run_id(),
            offered: AtomicU64::new(0),
            acked: AtomicU64::new(0),
            sent_batches: AtomicU64::new(0),
            resent_events: AtomicU64::new(0),
            buffer_lost: PerKind::default(),
            reconnects: AtomicU64::new(0),
            connected: AtomicBool::new(false),
        });
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                let task = Task {
                    settings,
                    shared: Arc::clone(&shared),
                    endpoint: String::new(),
                };
                runtime.spawn(task.run(cancel));
            }
            Err(e) => error!("collector reporter not started (no Tokio runtime): {e}"),
        }
        Reporter { shared }
    }

    /// This sensor run's identity, sent with every batch.
    pub fn run_id(&self) -> &str {
        &self.shared.run_id
    }

    /// Buffers an event (its seq already assigned) for the collector. Never blocks and never
    /// awaits: when the buffer is full the oldest event is dropped, counted and replaced by a
    /// `LostEvents{cause: REPORTER_BUFFER}` record (see the module docs).
    pub fn offer(&self, event: pb::Event) {
        self.offer_encoded(EncodedEvent::of(&event));
    }

    /// [`Reporter::offer`] for an event already encoded (the sensor's hot path).
    pub fn offer_encoded(&self, event: EncodedEvent) {
        let (dropped, waiting) = {
            let mut buffer = self.shared.lock();
            buffer.pending.push_back(event);
            let mut dropped = 0u64;
            while buffer.real() > buffer.capacity {
                let Some(kind) = buffer.drop_oldest() else {
                    break;
                };
                self.shared.buffer_lost.add(kind, 1);
                dropped += 1;
            }
            (dropped, buffer.pending.len())
        };
        self.shared.offered.fetch_add(1, Ordering::Relaxed);
        // The task sleeps until a batch is due: it needs waking only when the first event of
        // a batch arrives (it then starts the batch delay) or when a full batch is waiting.
        // One wake-up per event cost a cross-thread wake (futex) per event.
        if waiting <= 1 || waiting >= self.shared.batch_max || dropped > 0 {
            self.shared.wake.notify_one();
        }
    }

    /// The counters.
    pub fn stats(&self) -> ReporterStats {
        let s = &self.shared;
        let buffered = s.lock().real();
        let offered = s.offered.load(Ordering::Relaxed);
        let acked = s.acked.load(Ordering::Relaxed);
        ReporterStats {
            offered,
            acked,
            sent_batches: s.sent_batches.load(Ordering::Relaxed),
            resent_events: s.resent_events.load(Ordering::Relaxed),
            buffer_lost: s.buffer_lost.total(),
            buffer_lost_by_kind: LossKind::ALL.map(|k| (k, s.buffer_lost.get(k))),
            reconnects: s.reconnects.load(Ordering::Relaxed),
            connected: s.connected.load(Ordering::Relaxed),
            lag_events: offered.saturating_sub(acked),
            buffered,
        }
    }
}

/// A fresh run identity: `<boot id or start time>-<pid>-<random>`.
fn new_run_id() -> String {
    let boot = std::fs::read_to_string("/proc/sys/kernel/random/boot_id")
        .ok()
        .map(|s| s.trim().to_string())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| unix_nanos().to_string());
    format!("{boot}-{}-{:016x}", std::process::id(), random_u64())
}

fn unix_nanos() -> u128 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// 64 random-enough bits (std's per-process random hash keys, mixed with the clock).
fn random_u64() -> u64 {
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(unix_nanos());
    hasher.finish()
}

/// `backoff` with jitter: uniformly in [backoff/2, backoff].
fn jittered(backoff: Duration) -> Duration {
    let half = backoff / 2;
    let span = u64::try_from(half.as_nanos()).unwrap_or(u64::MAX).max(1);
    half + Duration::from_nanos(random_u64() % span)
}

/// An open report stream: where batches go, where acks come from.
type Stream = (
    tokio::sync::mpsc::Sender<BatchRef>,
    tonic::Streaming<pb::ReportAck>,
);

/// A `ReportBatch` whose events are shared with the reporter's buffer. It is encoded on the
/// wire exactly as `pb::ReportBatch` (fields 1, 2 and repeated 3), without copying the events
/// into an owned message first.
pub struct BatchRef {
    pub sensor: String,
    pub run_id: String,
    /// Each one an encoded `jobwatch.v1.Event`.
    pub events: Vec<Bytes>,
}

impl BatchRef {
    fn encode(&self, buf: &mut impl bytes::BufMut) {
        use prost::encoding::{WireType, encode_key, encode_varint, string};
        if !self.sensor.is_empty() {
            string::encode(1, &self.sensor, buf);
        }
        if !self.run_id.is_empty() {
            string::encode(2, &self.run_id, buf);
        }
        for e in &self.events {
            encode_key(3, WireType::LengthDelimited, buf);
            encode_varint(e.len() as u64, buf);
            buf.put_slice(e);
        }
    }
}

/// The `Report` call's codec: [`BatchRef`] out, `pb::ReportAck` in.
#[derive(Clone, Copy, Debug, Default)]
struct ReportCodec;

struct BatchEncoder;
struct AckDecoder;

impl tonic::codec::Encoder for BatchEncoder {
    type Item = BatchRef;
    type Error = tonic::Status;

    fn encode(
        &mut self,
        item: BatchRef,
        dst: &mut tonic::codec::EncodeBuf<'_>,
    ) -> Result<(), tonic::Status> {
        item.encode(dst);
        Ok(())
    }
}

impl tonic::codec::Decoder for AckDecoder {
    type Item = pb::ReportAck;
    type Error = tonic::Status;

    fn decode(
        &mut self,
        src: &mut tonic::codec::DecodeBuf<'_>,
    ) -> Result<Option<pb::ReportAck>, tonic::Status> {
        pb::ReportAck::decode(src)
            .map(Some)
            .map_err(|e| tonic::Status::internal(format!("undecodable ReportAck: {e}")))
    }
}

impl tonic::codec::Codec for ReportCodec {
    type Encode = BatchRef;
    type Decode = pb::ReportAck;
    type Encoder = BatchEncoder;
    type Decoder = AckDecoder;

    fn encoder(&mut self) -> BatchEncoder {
        BatchEncoder
    }

    fn decoder(&mut self) -> AckDecoder {
        AckDecoder
    }
}

/// How a session ended.
enum End {
    Cancelled,
    /// `acked`: the collector acknowledged something on this stream (it is healthy).
    Failed {
        error: ReportError,
        acked: bool,
    },
}

struct Task {
    settings: ReporterSettings,
    shared: Arc<Shared>,
    /// The endpoint as shown in messages.
    endpoint: String,
}

impl Task {
    async fn run(mut self, cancel: CancellationToken) {
        self.endpoint = self.settings.endpoint.to_string();
        info!(collector = %self.endpoint, run_id = %self.shared.run_id, "collector reporter started");
        // Never a busy loop, even with a zero `max_backoff`.
        let max_backoff = self.settings.max_backoff.max(MIN_BACKOFF);
        let mut backoff = INITIAL_BACKOFF.min(max_backoff);
        let mut opened_before = false;
        // Failures since the last healthy stream: the first is logged loudly, the rest quietly.
        let mut failing = false;
        loop {
            let end = match self.open(&cancel).await {
                Ok(None) => return,
                Ok(Some((tx, inbound))) => {
                    if opened_before {
                        self.shared.reconnects.fetch_add(1, Ordering::Relaxed);
                    }
                    opened_before = true;
                    self.shared.connected.store(true, Ordering::Relaxed);
                    let end = self.session(tx, inbound, &cancel).await;
                    self.shared.connected.store(false, Ordering::Relaxed);
                    end
                }
                Err(error) => End::Failed {
                    error,
                    acked: false,
                },
            };
            let (error, healthy) = match end {
                End::Cancelled => return,
                End::Failed { error, acked } => (error, acked),
            };
            if healthy {
                failing = false;
                backoff = INITIAL_BACKOFF.min(max_backoff);
            }
            if !failing && error.is_auth() {
                error!(
                    "{error} (authentication rejected: check the token file; retrying with backoff)"
                );
            } else if !failing {
                warn!("{error}; reconnecting");
            } else {
                debug!("{error}; retrying in up to {backoff:?}");
            }
            failing = true;
            tokio::select! {
                _ = cancel.cancelled() => return,
                _ = tokio::time::sleep(jittered(backoff)) => {}
            }
            backoff = backoff.saturating_mul(2).min(max_backoff);
        }
    }

    fn read(&self, what: &'static str, path: &Path) -> Result<Vec<u8>, ReportError> {
        std::fs::read(path).map_err(|source| ReportError::Read {
            endpoint: self.endpoint.clone(),
            what,
            path: path.to_path_buf(),
            source,
        })
    }

    fn config_error(&self, message: impl Into<String>) -> ReportError {
        ReportError::Config {
            endpoint: self.endpoint.clone(),
            message: message.into(),
        }
    }

    fn connect_error(&self, error: &tonic::transport::Error) -> ReportError {
        let mut message = error.to_string();
        let mut source = std::error::Error::source(error);
        while let Some(e) = source {
            message = format!("{message}: {e}");
            source = e.source();
        }
        ReportError::Connect {
            endpoint: self.endpoint.clone(),
            message,
        }
    }

    async fn channel(&self) -> Result<Channel, ReportError> {
        match &self.settings.endpoint {
            ReportEndpoint::Unix(path) => {
                let path = path.clone();
                let connector = tower::service_fn(move |_| {
                    let path = path.clone();
                    async move {
                        let stream = tokio::net::UnixStream::connect(path).await?;
                        Ok::<_, std::io::Error>(hyper_util::rt::TokioIo::new(stream))
                    }
                });
                // The URI is a placeholder: the connector ignores it.
                let endpoint = Endpoint::from_static("http://[::]:50051");
                keep_alive(endpoint)
                    .connect_with_connector(connector)
                    .await
                    .map_err(|e| self.connect_error(&e))
            }
            ReportEndpoint::Https {
                url,
                ca_pem_path,
                client_cert_path,
                client_key_path,
            } => {
                if !url.starts_with("https://") {
                    return Err(self.config_error("the endpoint must be an https:// URL"));
                }
                let mut tls = ClientTlsConfig::new()
                    .ca_certificate(Certificate::from_pem(self.read("CA bundle", ca_pem_path)?));
                match (client_cert_path, client_key_path) {
                    (Some(cert), Some(key)) => {
                        tls = tls.identity(Identity::from_pem(
                            self.read("client certificate", cert)?,
                            self.read("client key", key)?,
                        ));
                    }
                    (None, None) => {}
                    _ => {
                        return Err(self.config_error(
                            "a client certificate needs its key and a key its certificate",
                        ));
                    }
                }
                let endpoint = Endpoint::from_shared(url.clone())
                    .map_err(|e| self.config_error(format!("invalid URL: {e}")))?
                    .tls_config(tls)
                    .map_err(|e| self.config_error(format!("cannot set up TLS: {e}")))?;
                keep_alive(endpoint)
                    .connect()
                    .await
                    .map_err(|e| self.connect_error(&e))
            }
        }
    }

    /// `authorization: Bearer <token>` from the token file, when there is one.
    fn authorization(&self) -> Result<Option<MetadataValue<tonic::metadata::Ascii>>, ReportError> {
        let Some(path) = &self.settings.token_file else {
            return Ok(None);
        };
        let raw = self.read("token file", path)?;
        let token = String::from_utf8(raw).map_err(|_| {
            self.config_error(format!("the token in {} is not UTF-8", path.display()))
        })?;
        let token = token.trim();
        if token.is_empty() {
            return Err(self.config_error(format!("the token file {} is empty", path.display())));
        }
        MetadataValue::try_from(format!("Bearer {token}"))
            .map(Some)
            .map_err(|_| {
                self.config_error(format!(
                    "the token in {} is not a valid header value",
                    path.display()
                ))
            })
    }

    /// Connects and opens the report stream; `Ok(None)` when cancelled.
    async fn open(&self, cancel: &CancellationToken) -> Result<Option<Stream>, ReportError> {
        let authorization = self.authorization()?;
        let connect = async {
            let channel = self.channel().await?;
            // The generated client's `report`, with a codec that encodes shared events.
            let mut client = tonic::client::Grpc::new(channel);
            client.ready().await.map_err(|e| ReportError::Connect {
                endpoint: self.endpoint.clone(),
                message: format!("the channel is not ready: {e}"),
            })?;
            // A small queue: batches are taken from the buffer only when there is room.
            let (tx, rx) = tokio::sync::mpsc::channel(2);
            let mut request = Request::new(tokio_stream::wrappers::ReceiverStream::new(rx));
            if let Some(value) = authorization {
                request.metadata_mut().insert("authorization", value);
            }
            let path = tonic::codegen::http::uri::PathAndQuery::from_static(REPORT_PATH);
            let response = client
                .streaming(request, path, ReportCodec)
                .await
                .map_err(|status| ReportError::status(&self.endpoint, &status))?;
            Ok((tx, response.into_inner()))
        };
        tokio::select! {
            _ = cancel.cancelled() => Ok(None),
            opened = connect => opened.map(Some),
        }
    }

    /// Runs one report stream until it fails or `cancel` fires.
    async fn session(
        &self,
        tx: tokio::sync::mpsc::Sender<BatchRef>,
        mut inbound: tonic::Streaming<pb::ReportAck>,
        cancel: &CancellationToken,
    ) -> End {
        let shared = &self.shared;
        let batch_max = self.settings.batch_max.max(1);
        // Records of `sent` already written on this stream.
        let mut cursor = 0usize;
        let mut deadline: Option<Instant> = None;
        let mut acked_here = false;
        debug!(collector = %self.endpoint, "report stream open");
        loop {
            let (resend, fresh) = shared.lock().sendable(cursor);
            if fresh == 0 {
                deadline = None;
            } else if deadline.is_none() {
                deadline = Some(Instant::now() + self.settings.batch_delay);
            }
            let want_send = resend > 0
                || fresh >= batch_max
                || (fresh > 0 && deadline.is_some_and(|d| d <= Instant::now()));
            let sleep_until = deadline.unwrap_or_else(Instant::now);
            tokio::select! {
                biased;
                _ = cancel.cancelled() => return End::Cancelled,
                message = inbound.message() => match message {
                    Ok(Some(ack)) => {
                        if ack.run_id != shared.run_id {
                            debug!(collector = %self.endpoint, run_id = %ack.run_id, "ack for another run ignored");
                            continue;
                        }
                        shared.lock().ack(ack.seq);
                        shared.acked.fetch_max(ack.seq, Ordering::Relaxed);
                        acked_here = true;
                    }
                    Ok(None) => {
                        return End::Failed {
                            error: ReportError::Closed { endpoint: self.endpoint.clone() },
                            acked: acked_here,
                        };
                    }
                    Err(status) => {
                        return End::Failed {
                            error: ReportError::status(&self.endpoint, &status),
                            acked: acked_here,
                        };
                    }
                },
                permit = tx.reserve(), if want_send => {
                    let Ok(permit) = permit else {
                        return End::Failed {
                            error: ReportError::Closed { endpoint: self.endpoint.clone() },
                            acked: acked_here,
                        };
                    };
                    let (events, resent) = shared.lock().take_batch(&mut cursor, batch_max);
                    if events.is_empty() {
                        continue;
                    }
                    permit.send(BatchRef {
                        sensor: self.settings.sensor.clone(),
                        run_id: shared.run_id.clone(),
                        events,
                    });
                    shared.sent_batches.fetch_add(1, Ordering::Relaxed);
                    if resent > 0 {
                        shared.resent_events.fetch_add(resent as u64, Ordering::Relaxed);
                    }
                    deadline = None;
                }
                _ = shared.wake.notified(), if !want_send => {}
                _ = tokio::time::sleep_until(sleep_until), if !want_send && deadline.is_some() => {}
            }
        }
    }
}

fn keep_alive(endpoint: Endpoint) -> Endpoint {
    endpoint
        .connect_timeout(CONNECT_TIMEOUT)
        .http2_keep_alive_interval(KEEP_ALIVE_INTERVAL)
        .keep_alive_timeout(KEEP_ALIVE_TIMEOUT)
        .keep_alive_while_idle(true)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn event(seq: u64) -> pb::Event {
        pb::Event {
            node: "n1".into(),
            time_unix_nano: 7,
            boot_ns: 8,
            seq,
            kind: Some(pb::event::Kind::LostEvents(pb::LostEvents {
                count: seq,
                cause: pb::LossCause::RingBufferFull as i32,
            })),
        }
    }

    #[test]
    fn batch_ref_encodes_as_report_batch() {
        let events: Vec<pb::Event> = (1..=3).map(event).collect();
        let owned = pb::ReportBatch {
            sensor: "node-a".into(),
            run_id: "run-1".into(),
            events: events.iter().map(|e| e.encode_to_vec().into()).collect(),
        };
        let shared = BatchRef {
            sensor: "node-a".into(),
            run_id: "run-1".into(),
            events: events.iter().map(|e| EncodedEvent::of(e).bytes).collect(),
        };
        let mut buf = Vec::new();
        shared.encode(&mut buf);
        assert_eq!(buf, owned.encode_to_vec());
        assert_eq!(
            pb::ReportBatch::decode(buf.as_slice()).expect("decodes"),
            owned
        );
    }
}
