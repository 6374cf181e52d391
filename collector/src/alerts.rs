//! From stored events to served alerts: [`Detection`] runs the engine over each stored
//! batch, stores the alerts and the engine's memory, writes the JSON-lines output and fans the
//! alerts out to `StreamAlerts` subscribers (bounded queues; what a slow subscriber misses is
//! counted).

use std::{
    path::Path,
    sync::{
        Mutex, MutexGuard,
        atomic::{AtomicU64, Ordering},
    },
};

use jobwatch_proto::v1 as pb;
use tokio::sync::mpsc::{self, error::TrySendError};
use tonic::Status;

use crate::{
    detect::{Engine, output::Sink, rules::RuleSet},
    store::{Store, StoreError},
};

/// Queue length of an alert subscriber.
pub const ALERT_QUEUE: usize = 1024;

/// What an alert subscriber receives.
pub type AlertItem = Result<pb::Alert, Status>;

/// Checks an alert filter; unknown severities are refused.
pub fn check_filter(f: &pb::AlertFilter) -> Result<(), String> {
    if pb::Severity::try_from(f.min_severity).is_err() {
        return Err(format!("unknown min_severity {}", f.min_severity));
    }
    for (what, vals) in [
        ("rules", &f.rules),
        ("namespaces", &f.namespaces),
        ("cronjobs", &f.cronjobs),
        ("nodes", &f.nodes),
    ] {
        if vals.iter().any(String::is_empty) {
            return Err(format!("{what}: empty value"));
        }
    }
    Ok(())
}

/// Whether `a` passes `f`.
pub fn matches(f: &pb::AlertFilter, a: &pb::Alert) -> bool {
    let any = |vals: &[String], v: &str| vals.is_empty() || vals.iter().any(|x| x == v);
    a.severity >= f.min_severity
        && any(&f.rules, a.rule.as_ref().map_or("", |r| r.id.as_str()))
        && any(&f.namespaces, &a.namespace)
        && any(&f.cronjobs, &a.cronjob)
        && any(&f.nodes, &a.node)
}

struct Subscriber {
    filter: pb::AlertFilter,
    tx: mpsc::Sender<AlertItem>,
}

/// The engine, its outputs and its subscribers.
pub struct Detection {
    engine: Mutex<Engine>,
    sink: Option<Mutex<Sink>>,
    subscribers: Mutex<Vec<Subscriber>>,
    /// Alerts a slow subscriber missed.
    pub subscriber_lost: AtomicU64,
    /// Alerts the JSON-lines output failed to write.
    pub output_errors: AtomicU64,
}

impl std::fmt::Debug for Detection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Detection").finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Detection {
    /// The engine over `rules`, restored from `store`; alerts also go to `output` (`-` for
    /// stdout) when given.
    pub fn new(
        rules: RuleSet,
        store: &Store,
        output: Option<&Path>,
    ) -> Result<Detection, DetectionError> {
        let persisted = store.detection_state()?;
        let sink = output
            .map(|p| {
                Sink::open(p).map_err(|source| DetectionError::Output {
                    path: p.display().to_string(),
                    source,
                })
            })
            .transpose()?;
        Ok(Detection {
            engine: Mutex::new(Engine::new(rules, persisted)),
            sink: sink.map(Mutex::new),
            subscribers: Mutex::new(Vec::new()),
            subscriber_lost: AtomicU64::new(0),
            output_errors: AtomicU64::new(0),
        })
    }

    /// Runs the rules over newly stored events; stores, writes and publishes the alerts.
    /// Blocking (the store): call from a blocking thread.
    pub fn process(
        &self,
        store: &Store,
        events: &[pb::StoredEvent],
        now_unix_nano: i64,
    ) -> Result<Vec<pb::Alert>, StoreError> {
        // The engine lock is held until the state is stored, so that batches of different
        // sensors are recorded in the order the engine saw them.
        let mut engine = lock(&self.engine);
        let mut output = engine.observe(events);
        store.record_detection(&mut output, now_unix_nano)?;
        drop(engine);
        if let Some(sink) = &self.sink
            && let Err(e) = lock(sink).write(&output.alerts)
        {
            self.output_errors
                .fetch_add(output.alerts.len() as u64, Ordering::Relaxed);
            tracing::warn!(error = %e, "writing alerts failed");
        }
        self.publish(&output.alerts);
        Ok(output.alerts)
    }

    fn publish(&self, alerts: &[pb::Alert]) {
        if alerts.is_empty() {
            return;
        }
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| {
            for a in alerts.iter().filter(|a| matches(&s.filter, a)) {
                match s.tx.try_send(Ok(a.clone())) {
                    Ok(()) => {}
                    Err(TrySendError::Full(_)) => {
                        self.subscriber_lost.fetch_add(1, Ordering::Relaxed);
                    }
                    Err(TrySendError::Closed(_)) => return false,
                }
            }
            true
        });
    }

    /// A new subscriber's queue.
    pub fn subscribe(&self, filter: pb::AlertFilter) -> mpsc::Receiver<AlertItem> {
        let (tx, rx) = mpsc::channel(ALERT_QUEUE);
        lock(&self.subscribers).push(Subscriber { filter, tx });
        rx
    }

    /// Connected subscribers.
    pub fn subscribers(&self) -> usize {
        let mut subs = lock(&self.subscribers);
        subs.retain(|s| !s.tx.is_closed());
        subs.len()
    }

    /// Every counter of the engine and the outputs, by name.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let engine = lock(&self.engine);
        let mut v = engine.counters.snapshot();
        v.extend(
            engine
                .table_sizes()
                .iter()
                .map(|(n, x)| (n.to_string(), *x)),
        );
        v.push((
            "alert_subscriber_lost".into(),
            self.subscriber_lost.load(Ordering::Relaxed),
        ));
        v.push((
            "alert_output_errors".into(),
            self.output_errors.load(Ordering::Relaxed),
        ));
        v.push(("rules_enabled".into(), engine.rules().rules.len() as u64));
        v
    }
}

/// Errors setting detection up.
#[derive(Debug, thiserror::Error)]
pub enum DetectionError {
    /// The store could not give the engine's memory.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The alert output could not be opened.
    #[error("opening the alert output {path}: {source}")]
    Output {
        /// The path.
        path: String,
        /// Why.
        source: std::io::Error,
    },
}
