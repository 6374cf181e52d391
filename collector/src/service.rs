//! The `jobwatch.v1.Collector` gRPC service.

use std::{
    pin::Pin,
    sync::Arc,
    time::{SystemTime, UNIX_EPOCH},
};

use futures_util::{Stream, StreamExt, stream::TakeUntil};
use jobwatch_proto::v1::{self as pb, collector_server::Collector};
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;
use tokio_util::sync::{CancellationToken, WaitForCancellationFutureOwned};
use tonic::{Request, Response, Status, Streaming};

use crate::{
    alerts::{self, Detection},
    auth::{Access, Policy},
    filter,
    hub::{Hub, Item},
    metrics::{Counters, Gauges},
    store::{AlertQuery, DEFAULT_QUERY_LIMIT, MAX_QUERY_LIMIT, Query, Store, StoreError},
    validate,
};

/// State shared by every listener's service.
#[derive(Debug)]
pub struct Shared {
    /// The event store.
    pub store: Arc<Store>,
    /// Live subscribers.
    pub hub: Hub,
    /// Counters.
    pub counters: Counters,
    /// The detection rules, their alerts and subscribers (None when detection is off).
    pub detection: Option<Arc<Detection>>,
}

impl Shared {
    /// The gauges of `/metrics` and `GetStatus`.
    pub fn gauges(&self) -> Gauges {
        Gauges {
            store_bytes: self.store.store_bytes().unwrap_or(0),
            subscribers: self.hub.subscribers() as u64,
            slow_subscriber_lost: self.hub.slow_subscriber_lost(),
            sensors: self.store.sensors().unwrap_or_default(),
            detection: self
                .detection
                .as_ref()
                .map(|d| d.counters())
                .unwrap_or_default(),
        }
    }
}

/// Now, ns since the epoch.
pub fn now_unix_nano() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX))
}

fn store_status(e: StoreError) -> Status {
    tracing::error!(error = %e, "store failed");
    Status::internal(format!("store: {e}"))
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, Status> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| Status::internal(format!("store task failed: {e}")))?
        .map_err(store_status)
}

/// The service of one listener (its own auth policy, shared state).
#[derive(Clone, Debug)]
pub struct CollectorApi {
    shared: Arc<Shared>,
    policy: Policy,
    cancel: CancellationToken,
}

impl CollectorApi {
    /// A service over `shared` enforcing `policy`; its streams end when `cancel` fires.
    pub fn new(shared: Arc<Shared>, policy: Policy, cancel: CancellationToken) -> CollectorApi {
        CollectorApi {
            shared,
            policy,
            cancel,
        }
    }

    fn check<T>(&self, req: &Request<T>, access: Access) -> Result<(), Status> {
        self.policy.check(req, access).inspect_err(|_| {
            Counters::add(&self.shared.counters.auth_failures, 1);
        })
    }
}

/// Handles one `Report` stream until the client ends it, a batch is refused or `cancel` fires.
async fn report_loop(
    shared: Arc<Shared>,
    mut inbound: Streaming<pb::ReportBatch>,
    tx: mpsc::Sender<Result<pb::ReportAck, Status>>,
    cancel: CancellationToken,
) {
    let c = &shared.counters;
    let mut index = 0u64;
    let mut sensor: Option<String> = None;
    loop {
        let next = tokio::select! {
            () = cancel.cancelled() => return,
            m = inbound.message() => m,
        };
        let batch = match next {
            Ok(Some(b)) => b,
            Ok(None) => return,
            Err(status) => {
                // A frame that does not decode is InvalidArgument (jobwatch's codec): say so
                // to the sender. Nothing of it was stored.
                tracing::debug!(%status, "report stream ended");
                // tonic refuses an oversized frame with OutOfRange before any decoding: to
                // the sender, that is bad input too.
                let bad = match status.code() {
                    tonic::Code::InvalidArgument => Some(status.message().to_string()),
                    tonic::Code::OutOfRange => {
                        Some(format!("oversized batch: {}", status.message()))
                    }
                    _ => None,
                };
                if let Some(msg) = bad {
                    Counters::add(&c.rejected_batches, 1);
                    let _ = tx.send(Err(Status::invalid_argument(msg))).await;
                }
                return;
            }
        };
        Counters::add(&c.batches, 1);
        let this = index;
        index += 1;
        let mut check = validate::batch(&batch);
        if check.is_ok()
            && let Some(s) = &sensor
            && *s != batch.sensor
        {
            check = Err(validate::Invalid {
                field: "sensor".into(),
                problem: format!("{:?} changed to {:?} within a stream", s, batch.sensor),
            });
        }
        let events = match check {
            Ok(events) => events,
            Err(e) => {
                Counters::add(&c.rejected_batches, 1);
                let msg = format!("batch {this} (run_id {:?}): {e}", batch.run_id);
                tracing::warn!(sensor = %batch.sensor, "{msg}");
                let _ = tx.send(Err(Status::invalid_argument(msg))).await;
                return;
            }
        };
        sensor.get_or_insert_with(|| batch.sensor.clone());
        let received = events.len() as u64;
        let store = shared.store.clone();
        let pb::ReportBatch {
            sensor: name,
            run_id,
            ..
        } = batch;
        let rid = run_id.clone();
        let detection = shared.detection.clone();
        let outcome = blocking(move || {
            let outcome = store.insert_batch(&name, &rid, events, now_unix_nano())?;
            if let Some(d) = detection {
                // The events are stored: a failure here loses alerts, not events.
                if let Err(e) = d.process(&store, &outcome.stored, now_unix_nano()) {
                    tracing::error!(error = %e, "detection failed on a batch");
                }
            }
            Ok(outcome)
        });
        let outcome = match outcome.await {
            Ok(o) => o,
            Err(status) => {
                let _ = tx.send(Err(status)).await;
                return;
            }
        };
        Counters::add(&c.events_received, received);
        Counters::add(&c.events_duplicate, outcome.duplicates);
        Counters::add(&c.events_stored, outcome.stored.len() as u64);
        shared.hub.publish(&outcome.stored);
        let ack = pb::ReportAck {
            run_id,
            seq: outcome.ack_seq,
        };
        if tx.send(Ok(ack)).await.is_err() {
            return;
        }
    }
}

type AckStream = Pin<Box<dyn Stream<Item = Result<pb::ReportAck, Status>> + Send>>;

#[tonic::async_trait]
impl Collector for CollectorApi {
    type ReportStream = AckStream;
    type StreamEventsStream = TakeUntil<ReceiverStream<Item>, WaitForCancellationFutureOwned>;
    type StreamAlertsStream =
        TakeUntil<ReceiverStream<alerts::AlertItem>, WaitForCancellationFutureOwned>;

    async fn report(
        &self,
        request: Request<Streaming<pb::ReportBatch>>,
    ) -> Result<Response<Self::ReportStream>, Status> {
        self.check(&request, Access::Report)?;
        let (tx, rx) = mpsc::channel(16);
        tokio::spawn(report_loop(
            self.shared.clone(),
            request.into_inner(),
            tx,
            self.cancel.clone(),
        ));
        Ok(Response::new(Box::pin(ReceiverStream::new(rx))))
    }

    async fn query_events(
        &self,
        request: Request<pb::QueryEventsRequest>,
    ) -> Result<Response<pb::QueryEventsResponse>, Status> {
        self.check(&request, Access::Query)?;
        let r = request.into_inner();
        let filter = filter::compile(&r.allow_list, &r.deny_list)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        if r.since_unix_nano != 0 && r.until_unix_nano != 0 && r.since_unix_nano > r.until_unix_nano
        {
            return Err(Status::invalid_argument(
                "since_unix_nano is after until_unix_nano",
            ));
        }
        let limit = match r.limit {
            0 => DEFAULT_QUERY_LIMIT,
            n => (n as usize).min(MAX_QUERY_LIMIT),
        };
        let q = Query {
            since_unix_nano: r.since_unix_nano,
            until_unix_nano: r.until_unix_nano,
            nodes: r.nodes,
            filter,
            limit,
            after_id: r.after_id,
        };
        let store = self.shared.store.clone();
        let events = blocking(move || store.query(&q)).await?;
        Ok(Response::new(pb::QueryEventsResponse { events }))
    }

    async fn stream_events(
        &self,
        request: Request<pb::StreamEventsRequest>,
    ) -> Result<Response<Self::StreamEventsStream>, Status> {
        self.check(&request, Access::Query)?;
        let r = request.into_inner();
        let filter = filter::compile(&r.allow_list, &r.deny_list)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let rx = self.shared.hub.subscribe(filter, r.nodes);
        Ok(Response::new(
            ReceiverStream::new(rx).take_until(self.cancel.clone().cancelled_owned()),
        ))
    }

    async fn list_containers(
        &self,
        request: Request<pb::CollectorListContainersRequest>,
    ) -> Result<Response<pb::CollectorListContainersResponse>, Status> {
        self.check(&request, Access::Query)?;
        let nodes = request.into_inner().nodes;
        let store = self.shared.store.clone();
        let containers = blocking(move || store.containers(&nodes)).await?;
        Ok(Response::new(pb::CollectorListContainersResponse {
            containers,
        }))
    }

    async fn get_status(
        &self,
        request: Request<pb::CollectorStatusRequest>,
    ) -> Result<Response<pb::CollectorStatus>, Status> {
        self.check(&request, Access::Query)?;
        let shared = self.shared.clone();
        let (gauges, events_stored) =
            tokio::task::spawn_blocking(move || (shared.gauges(), shared.store.events_stored()))
                .await
                .map_err(|e| Status::internal(format!("status task failed: {e}")))?;
        let mut counters: Vec<pb::Counter> = self
            .shared
            .counters
            .snapshot()
            .into_iter()
            .map(|(name, value)| pb::Counter {
                name: name.into(),
                value,
            })
            .collect();
        counters.push(pb::Counter {
            name: "subscribers".into(),
            value: gauges.subscribers,
        });
        counters.push(pb::Counter {
            name: "slow_subscriber_lost".into(),
            value: gauges.slow_subscriber_lost,
        });
        counters.extend(
            gauges
                .detection
                .into_iter()
                .map(|(name, value)| pb::Counter { name, value }),
        );
        Ok(Response::new(pb::CollectorStatus {
            version: env!("CARGO_PKG_VERSION").into(),
            events_stored,
            store_bytes: gauges.store_bytes,
            sensors: gauges
                .sensors
                .into_iter()
                .map(|s| pb::SensorSeen {
                    sensor: s.sensor,
                    run_id: s.run_id,
                    last_seq: s.last_seq,
                    last_seen_unix_nano: s.last_seen_unix_nano,
                })
                .collect(),
            counters,
        }))
    }

    async fn list_alerts(
        &self,
        request: Request<pb::ListAlertsRequest>,
    ) -> Result<Response<pb::ListAlertsResponse>, Status> {
        self.check(&request, Access::Query)?;
        let r = request.into_inner();
        let filter = r.filter.unwrap_or_default();
        alerts::check_filter(&filter).map_err(Status::invalid_argument)?;
        if r.since_unix_nano != 0 && r.until_unix_nano != 0 && r.since_unix_nano > r.until_unix_nano
        {
            return Err(Status::invalid_argument(
                "since_unix_nano is after until_unix_nano",
            ));
        }
        let q = AlertQuery {
            min_severity: filter.min_severity,
            rules: filter.rules,
            namespaces: filter.namespaces,
            cronjobs: filter.cronjobs,
            nodes: filter.nodes,
            since_unix_nano: r.since_unix_nano,
            until_unix_nano: r.until_unix_nano,
            limit: match r.limit {
                0 => DEFAULT_QUERY_LIMIT,
                n => (n as usize).min(MAX_QUERY_LIMIT),
            },
            after_id: r.after_id,
        };
        let store = self.shared.store.clone();
        let alerts = blocking(move || store.alerts(&q)).await?;
        Ok(Response::new(pb::ListAlertsResponse { alerts }))
    }

    async fn stream_alerts(
        &self,
        request: Request<pb::StreamAlertsRequest>,
    ) -> Result<Response<Self::StreamAlertsStream>, Status> {
        self.check(&request, Access::Query)?;
        let filter = request.into_inner().filter.unwrap_or_default();
        alerts::check_filter(&filter).map_err(Status::invalid_argument)?;
        let Some(detection) = &self.shared.detection else {
            return Err(Status::failed_precondition(
                "detection is off in this collector's configuration",
            ));
        };
        let rx = detection.subscribe(filter);
        Ok(Response::new(
            ReceiverStream::new(rx).take_until(self.cancel.clone().cancelled_owned()),
        ))
    }
}
