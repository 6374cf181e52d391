//! Pod owner chains from the Kubernetes API server.
//!
//! On the node a pod's CronJob can only be *inferred* from its Job's name (see
//! [`super::workload`]). Inside a cluster the sensor confirms the chain through the API:
//! Pod -> controller ownerReference -> Job -> controller ownerReference -> CronJob (likewise
//! Pod -> ReplicaSet -> Deployment, Pod -> DaemonSet / StatefulSet, and a pod without controller
//! is its own workload). The ServiceAccount needs `get`, `list` and `watch` on pods and `get` on
//! jobs and replicasets.
//!
//! Decisions:
//! - Only the fields needed are decoded (small serde structs, unknown fields ignored). Malformed
//!   objects and watch lines are counted ([`KubeStats::malformed`]) and skipped, never a panic.
//! - Every request is bounded: `request_timeout` per GET/LIST (connect to last body byte), bodies
//!   are capped at [`MAX_BODY_BYTES`], watch lines at [`MAX_WATCH_LINE_BYTES`]. The watch asks
//!   the server to end it after [`WATCH_TIMEOUT_SECS`] and gives up itself that plus
//!   `request_timeout` later.
//! - Names that go into URL paths (from the caller or from ownerReferences) must be DNS-1123
//!   names, so a hostile label can neither traverse paths nor inject queries. Owners whose names
//!   are not valid make the workload [`WorkloadKind::Unknown`].
//! - An owner fetched by name must carry the uid the ownerReference names; otherwise (or on 404)
//!   the owner is gone and the workload stops at what the ownerReference itself says (a Job or
//!   ReplicaSet), never at a same-named successor.
//! - When the caller knows the pod's uid and the API returns a pod with another uid (the name was
//!   reused), that is [`KubeError::UidMismatch`]: the caller falls back to label inference.
//! - Requests go straight to the API server (no proxy from the environment, no redirects); when
//!   a CA is given it is the only trust root.
//! - The watch re-lists after every end of the stream (server timeout, 410 Gone, ERROR event,
//!   broken connection): a node-scoped list is small, and re-listing also drops pods whose
//!   DELETED event was missed.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fmt;
use std::hash::Hash;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use reqwest::Url;
use reqwest::header::{ACCEPT, AUTHORIZATION, HeaderMap, HeaderValue};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use tokio_util::sync::CancellationToken;

use super::workload::{CronJobRef, JobRef, OwnerSource, Workload, WorkloadKind, infer_cronjob};
use crate::clock;

/// Where the kubelet mounts the pod's ServiceAccount token and the cluster CA.
pub const SERVICE_ACCOUNT_DIR: &str = "/var/run/secrets/kubernetes.io/serviceaccount";
/// The Job annotation with the scheduled time of the CronJob run that created it (RFC 3339).
pub const CRONJOB_SCHEDULED_TIMESTAMP_ANNOTATION: &str =
    "batch.kubernetes.io/cronjob-scheduled-timestamp";
/// Cache capacity of [`KubeSettings::in_cluster`] (pods, and again Jobs/ReplicaSets).
pub const DEFAULT_CACHE_CAPACITY: usize = 4096;
/// Request timeout of [`KubeSettings::in_cluster`].
pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// `timeoutSeconds` of a watch request: the server ends the watch after this long.
pub const WATCH_TIMEOUT_SECS: u64 = 300;
/// Largest response body read from a GET or LIST.
pub const MAX_BODY_BYTES: usize = 64 << 20;
/// Longest watch event line; longer lines are counted as malformed and skipped.
pub const MAX_WATCH_LINE_BYTES: usize = 16 << 20;
/// Most pages of a paginated pod list.
const MAX_LIST_PAGES: usize = 1000;
/// Page size of the pod list.
const LIST_PAGE_SIZE: &str = "500";
/// How much of an error response body is kept in [`KubeError::Status`].
const BODY_EXCERPT_BYTES: usize = 512;
/// Delay before the first re-list after a healthy watch, and the start of the backoff.
const BACKOFF_MIN: Duration = Duration::from_millis(250);
/// Longest delay between failed re-lists.
const BACKOFF_MAX: Duration = Duration::from_secs(30);
/// A watch that lasted this long without events still counts as healthy (no backoff).
const HEALTHY_WATCH: Duration = Duration::from_secs(10);

/// Why the API server could not tell a pod's owner.
#[derive(Debug, thiserror::Error)]
pub enum KubeError {
    /// The client is not (fully) configured; the message names the missing variable or file.
    #[error("Kubernetes API configuration: {0}")]
    Config(String),
    /// A name or namespace that cannot be used in an API path.
    #[error("invalid {what} for a Kubernetes API path: {reason}")]
    InvalidName {
        /// What the value is (`pod name`, `namespace`, ...).
        what: &'static str,
        /// Why it is rejected.
        reason: &'static str,
    },
    /// The request failed (connect, TLS, timeout, broken body).
    #[error("GET {url} failed: {}", error_chain(source))]
    Http {
        /// The request URL.
        url: String,
        /// The client error (without the URL, which is in `url`).
        source: reqwest::Error,
    },
    /// The request took longer than allowed.
    #[error("GET {url} timed out after {after:?}")]
    Timeout {
        /// The request URL.
        url: String,
        /// The limit.
        after: Duration,
    },
    /// The server answered with a non-2xx status.
    #[error("GET {url} returned HTTP {code}: {body_excerpt}")]
    Status {
        /// The request URL.
        url: String,
        /// The HTTP status code.
        code: u16,
        /// The start of the response body, without control characters.
        body_excerpt: String,
    },
    /// The response body is larger than [`MAX_BODY_BYTES`].
    #[error("GET {url}: response body larger than {limit} bytes")]
    TooLarge {
        /// The request URL.
        url: String,
        /// The limit in bytes.
        limit: usize,
    },
    /// The response body is not the JSON expected.
    #[error("GET {url}: cannot decode the response: {source}")]
    Decode {
        /// The request URL.
        url: String,
        /// The JSON error.
        source: serde_json::Error,
    },
    /// The response lacks a field the resolver needs.
    #[error("GET {url}: the response has no {field}")]
    Missing {
        /// The request URL.
        url: String,
        /// The missing field.
        field: &'static str,
    },
    /// The API returned a pod of the requested name but another uid: the pod asked about is gone
    /// and its name was reused.
    #[error("GET {url}: pod uid is {found}, expected {expected} (the pod was replaced)")]
    UidMismatch {
        /// The request URL.
        url: String,
        /// The uid the caller asked about.
        expected: String,
        /// The uid the API returned.
        found: String,
    },
}

impl KubeError {
    /// [`KubeError::Http`] for `url`; the URL is dropped from `source` (it is in `url`).
    fn http(url: &str, source: reqwest::Error) -> KubeError {
        KubeError::Http {
            url: url.to_owned(),
            source: source.without_url(),
        }
    }

    /// The HTTP status code, for [`KubeError::Status`].
    pub fn status_code(&self) -> Option<u16> {
        match self {
            KubeError::Status { code, .. } => Some(*code),
            _ => None,
        }
    }
}

/// How to reach the API server.
#[derive(Clone)]
pub struct KubeSettings {
    /// `https://host:port` (or `http://` for tests), without trailing path.
    pub base_url: String,
    /// Bearer token sent with every request.
    pub token: Option<String>,
    /// PEM bundle of the CA that signs the API server's certificate; when set, it is the only
    /// trust root.
    pub ca_pem: Option<Vec<u8>>,
    /// The node whose pods [`OwnerResolver::watch_node`] watches.
    pub node_name: String,
    /// At most this many pods are cached, and again this many Jobs/ReplicaSets.
    pub cache_capacity: usize,
    /// Timeout of each GET/LIST (and of connecting and waiting for a watch's headers).
    pub request_timeout: Duration,
}

impl fmt::Debug for KubeSettings {
    /// Like a derived `Debug`, with the token redacted and the CA shown by size.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KubeSettings")
            .field("base_url", &self.base_url)
            .field("token", &self.token.as_ref().map(|_| "<redacted>"))
            .field(
                "ca_pem",
                &self.ca_pem.as_ref().map(|p| format!("<{} bytes>", p.len())),
            )
            .field("node_name", &self.node_name)
            .field("cache_capacity", &self.cache_capacity)
            .field("request_timeout", &self.request_timeout)
            .finish()
    }
}

impl KubeSettings {
    /// The in-cluster settings: `KUBERNETES_SERVICE_HOST` / `KUBERNETES_SERVICE_PORT`, token and
    /// CA from `/var/run/secrets/kubernetes.io/serviceaccount/{token,ca.crt}`, node name from
    /// `NODE_NAME` (downward API). `Ok(None)` when `KUBERNETES_SERVICE_HOST` is unset (not in a
    /// cluster); `Err` naming what is missing when half-configured.
    pub fn in_cluster() -> Result<Option<KubeSettings>, KubeError> {
        Self::in_cluster_from(|k| std::env::var(k).ok(), Path::new(SERVICE_ACCOUNT_DIR))
    }

    /// [`KubeSettings::in_cluster`] with the environment read through `env` and the token and CA
    /// read from `service_account_dir`.
    pub fn in_cluster_from(
        env: impl Fn(&str) -> Option<String>,
        service_account_dir: &Path,
    ) -> Result<Option<KubeSettings>, KubeError> {
        let nonempty = |k: &str| {
            env(k)
                .map(|v| v.trim().to_owned())
                .filter(|v| !v.is_empty())
        };
        let Some(host) = nonempty("KUBERNETES_SERVICE_HOST") else {
            return Ok(None);
        };
        let port = nonempty("KUBERNETES_SERVICE_PORT").ok_or_else(|| {
            KubeError::Config(
                "KUBERNETES_SERVICE_HOST is set but KUBERNETES_SERVICE_PORT is not".to_owned(),
            )
        })?;
        let port: u16 = port.parse().map_err(|_| {
            KubeError::Config(format!(
                "KUBERNETES_SERVICE_PORT={port:?} is not a port number"
            ))
        })?;
        let host = if host.contains(':') && !host.starts_with('[') {
            format!("[{host}]")
        } else {
            host
        };
        let read = |file: &str| {
            let path = service_account_dir.join(file);
            std::fs::read(&path)
                .map_err(|e| KubeError::Config(format!("cannot read {}: {e}", path.display())))
        };
        let token_path = service_account_dir.join("token");
        let token = String::from_utf8(read("token")?)
            .map_err(|_| KubeError::Config(format!("{} is not UTF-8", token_path.display())))?
            .trim()
            .to_owned();
        if token.is_empty() {
            return Err(KubeError::Config(format!(
                "{} is empty",
                token_path.display()
            )));
        }
        let ca = read("ca.crt")?;
        let node_name = nonempty("NODE_NAME").ok_or_else(|| {
            KubeError::Config(
                "NODE_NAME is not set (set it from spec.nodeName with the downward API)".to_owned(),
            )
        })?;
        Ok(Some(KubeSettings {
            base_url: format!("https://{host}:{port}"),
            token: Some(token),
            ca_pem: Some(ca),
            node_name,
            cache_capacity: DEFAULT_CACHE_CAPACITY,
            request_timeout: DEFAULT_REQUEST_TIMEOUT,
        }))
    }
}

/// Counters of an [`OwnerResolver`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize)]
pub struct KubeStats {
    /// HTTP requests sent (GET, LIST and WATCH).
    pub requests: u64,
    /// Requests that failed (including 404s and undecodable bodies).
    pub errors: u64,
    /// [`OwnerResolver::workload_of`] calls answered from the pod cache.
    pub cache_hits: u64,
    /// [`OwnerResolver::workload_of`] calls that went to the API.
    pub cache_misses: u64,
    /// Re-lists after the first one (after a watch ended or a list failed).
    pub watch_restarts: u64,
    /// Malformed list items and watch lines skipped.
    pub malformed: u64,
    /// Pods in the cache now.
    pub cached_pods: u64,
    /// Jobs and ReplicaSets in the cache now.
    pub cached_owners: u64,
}

/// Resolves and caches pod owner chains. Bounded: at most `cache_capacity` pods and the same
/// number of Jobs/ReplicaSets (the least recently used are evicted); entries of deleted pods are
/// dropped by the watch.
pub struct OwnerResolver {
    /// `base_url` without trailing slash.
    base: String,
    node_name: String,
    request_timeout: Duration,
    client: reqwest::Client,
    pods: Mutex<PodCache>,
    owners: Mutex<Lru<OwnerKey, OwnerInfo>>,
    counters: Counters,
}

impl fmt::Debug for OwnerResolver {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("OwnerResolver")
            .field("base", &self.base)
            .field("node_name", &self.node_name)
            .field("stats", &self.stats())
            .finish_non_exhaustive()
    }
}

impl OwnerResolver {
    /// A resolver talking to `settings.base_url`: a rustls client that trusts only
    /// `settings.ca_pem` when given, sends `Authorization: Bearer <token>` when a token is given,
    /// and bounds connects by `settings.request_timeout`. Fails on an unusable URL, token or CA,
    /// or an empty node name.
    pub fn new(settings: KubeSettings) -> Result<OwnerResolver, KubeError> {
        let base = settings.base_url.trim_end_matches('/').to_owned();
        let url = Url::parse(&base)
            .map_err(|e| KubeError::Config(format!("base URL {base:?} is not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") || url.host().is_none() {
            return Err(KubeError::Config(format!(
                "base URL {base:?} is not an http(s) URL with a host"
            )));
        }
        if settings.node_name.trim().is_empty() {
            return Err(KubeError::Config("the node name is empty".to_owned()));
        }
        let mut headers = HeaderMap::new();
        headers.insert(ACCEPT, HeaderValue::from_static("application/json"));
        if let Some(token) = &settings.token {
            let mut value =
                HeaderValue::from_str(&format!("Bearer {}", token.trim())).map_err(|_| {
                    KubeError::Config(
                        "the bearer token has characters not allowed in an HTTP header".to_owned(),
                    )
                })?;
            value.set_sensitive(true);
            headers.insert(AUTHORIZATION, value);
        }
        let mut builder = reqwest::Client::builder()
            .use_rustls_tls()
            .default_headers(headers)
            .user_agent(concat!("jobwatch-sensor/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(settings.request_timeout)
            .redirect(reqwest::redirect::Policy::none())
            .no_proxy();
        if let Some(pem) = &settings.ca_pem {
            let certs = reqwest::Certificate::from_pem_bundle(pem)
                .map_err(|e| KubeError::Config(format!("the CA bundle is not valid PEM: {e}")))?;
            if certs.is_empty() {
                return Err(KubeError::Config(
                    "the CA bundle has no certificate".to_owned(),
                ));
            }
            builder = builder.tls_built_in_root_certs(false);
            for cert in certs {
                builder = builder.add_root_certificate(cert);
            }
        }
        let client = builder
            .build()
            .map_err(|e| KubeError::Config(format!("cannot build the HTTP client: {e}")))?;
        let capacity = settings.cache_capacity;
        Ok(OwnerResolver {
            base,
            node_name: settings.node_name.trim().to_owned(),
            request_timeout: settings.request_timeout,
            client,
            pods: Mutex::new(PodCache::new(capacity)),
            owners: Mutex::new(Lru::new(capacity)),
            counters: Counters::default(),
        })
    }

    /// The workload of a pod, from the cache or the API: `GET /api/v1/namespaces/{ns}/pods/{name}`,
    /// then along the controller ownerReference:
    /// - Job (`GET /apis/batch/v1/namespaces/{ns}/jobs/{name}`) owned by a CronJob: kind CronJob,
    ///   with the Job (its uid) and the CronJob (scheduled time from the Job's
    ///   [`CRONJOB_SCHEDULED_TIMESTAMP_ANNOTATION`], else from the Job's name when it is exactly
    ///   `<cronjob>-<minutes>`; `inferred: false`); a Job without CronJob: kind Job;
    /// - ReplicaSet (`GET /apis/apps/v1/namespaces/{ns}/replicasets/{name}`): Deployment when a
    ///   Deployment controls it, else ReplicaSet;
    /// - DaemonSet, StatefulSet, Deployment, CronJob directly; other kinds are Unknown with the
    ///   owner's name kept;
    /// - no controller: kind Pod with the pod's name.
    ///
    /// `source` is [`OwnerSource::KubernetesApi`] everywhere. A missing pod is
    /// `Err(KubeError::Status { code: 404, .. })`; with `pod_uid`, a pod of another uid is
    /// [`KubeError::UidMismatch`]. The caller falls back to label inference on errors.
    pub async fn workload_of(
        &self,
        namespace: &str,
        pod: &str,
        pod_uid: Option<&str>,
    ) -> Result<Workload, KubeError> {
        let hit = lock(&self.pods).lookup(namespace, pod, pod_uid);
        if let Some(workload) = hit {
            self.counters.cache_hits.fetch_add(1, Ordering::Relaxed);
            return Ok(workload);
        }
        self.counters.cache_misses.fetch_add(1, Ordering::Relaxed);
        check_namespace(namespace)?;
        check_name("pod name", pod)?;
        let url = format!("{}/api/v1/namespaces/{namespace}/pods/{pod}", self.base);
        let object: Object = self.get_json(&url).await?;
        let meta = object.metadata;
        if let (Some(expected), Some(found)) = (pod_uid, meta.uid.as_deref())
            && expected != found
        {
            return Err(self.count_error(KubeError::UidMismatch {
                url,
                expected: expected.to_owned(),
                found: found.to_owned(),
            }));
        }
        let controller = controller_of(&meta).cloned();
        let workload = self.resolve(namespace, pod, controller.as_ref()).await?;
        if let Some(uid) = meta.uid {
            lock(&self.pods).insert(
                uid,
                PodEntry {
                    namespace: namespace.to_owned(),
                    name: pod.to_owned(),
                    controller,
                    workload: workload.clone(),
                },
            );
        }
        Ok(workload)
    }

    /// Node-scoped pod watch: LIST `/api/v1/pods?fieldSelector=spec.nodeName=<node>` (paginated),
    /// then WATCH from the list's resourceVersion (`watch=1&allowWatchBookmarks=true&
    /// timeoutSeconds=300`), resolving the owners of each pod that appears (ADDED/MODIFIED) into
    /// the cache and dropping DELETED ones. When the stream ends for any reason (server timeout,
    /// ERROR event such as 410 Gone, broken connection) it re-lists, which also drops cached pods
    /// that are no longer listed; failed lists are retried with exponential backoff (250 ms to
    /// 30 s). Runs until `cancel` fires. Calls `on_update(pod_uid, workload)` for each pod newly
    /// resolved (or whose controller changed).
    pub async fn watch_node(
        &self,
        cancel: CancellationToken,
        on_update: impl Fn(&str, &Workload) + Send + Sync,
    ) {
        let mut backoff = BACKOFF_MIN;
        let mut first = true;
        loop {
            if !first {
                self.counters.watch_restarts.fetch_add(1, Ordering::Relaxed);
            }
            first = false;
            let started = tokio::time::Instant::now();
            let outcome = tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                outcome = self.list_and_watch(&on_update) => outcome,
            };
            let delay = match outcome {
                // A watch that delivered events or ran a while was healthy; one that the server
                // ends at once, again and again, backs off like a failure.
                Ok(events) if events > 0 || started.elapsed() >= HEALTHY_WATCH => {
                    tracing::debug!(
                        node = %self.node_name,
                        events,
                        "pod watch ended; re-listing"
                    );
                    backoff = BACKOFF_MIN;
                    BACKOFF_MIN
                }
                Ok(_) => {
                    let delay = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    delay
                }
                Err(err) => {
                    tracing::warn!(
                        node = %self.node_name,
                        error = %err,
                        retry_in = ?backoff,
                        "pod list/watch failed"
                    );
                    let delay = backoff;
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                    delay
                }
            };
            tokio::select! {
                biased;
                () = cancel.cancelled() => return,
                () = tokio::time::sleep(delay) => {}
            }
        }
    }

    /// The cached workload of the pod with this uid, without touching the API.
    pub fn cached(&self, pod_uid: &str) -> Option<Workload> {
        lock(&self.pods)
            .by_uid
            .peek(pod_uid)
            .map(|entry| entry.workload.clone())
    }

    /// The counters so far, and the cache sizes now.
    pub fn stats(&self) -> KubeStats {
        let c = &self.counters;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        KubeStats {
            requests: get(&c.requests),
            errors: get(&c.errors),
            cache_hits: get(&c.cache_hits),
            cache_misses: get(&c.cache_misses),
            watch_restarts: get(&c.watch_restarts),
            malformed: get(&c.malformed),
            cached_pods: lock(&self.pods).by_uid.len() as u64,
            cached_owners: lock(&self.owners).len() as u64,
        }
    }

    /// The workload behind a pod's controller ownerReference (`None`: a bare pod).
    async fn resolve(
        &self,
        namespace: &str,
        pod: &str,
        controller: Option<&OwnerReference>,
    ) -> Result<Workload, KubeError> {
        let Some(owner) = controller else {
            return Ok(simple(WorkloadKind::Pod, pod));
        };
        if check_name("owner name", &owner.name).is_err() {
            return Ok(simple(WorkloadKind::Unknown, ""));
        }
        let kind = match (owner.kind.as_str(), api_group(owner)) {
            ("Job", Some("batch") | None) => return self.resolve_job(namespace, owner).await,
            ("ReplicaSet", Some("apps" | "extensions") | None) => {
                return self.resolve_replicaset(namespace, owner).await;
            }
            ("DaemonSet", Some("apps" | "extensions") | None) => WorkloadKind::DaemonSet,
            ("StatefulSet", Some("apps") | None) => WorkloadKind::StatefulSet,
            ("Deployment", Some("apps" | "extensions") | None) => WorkloadKind::Deployment,
            ("CronJob", Some("batch") | None) => {
                return Ok(Workload {
                    kind: WorkloadKind::CronJob,
                    name: owner.name.clone(),
                    job: None,
                    cronjob: Some(CronJobRef {
                        name: owner.name.clone(),
                        scheduled_time: None,
                        source: OwnerSource::KubernetesApi,
                        inferred: false,
                    }),
                    source: OwnerSource::KubernetesApi,
                });
            }
            _ => WorkloadKind::Unknown,
        };
        Ok(simple(kind, &owner.name))
    }

    /// A Job pod's workload: CronJob when a CronJob controls the Job, else Job.
    async fn resolve_job(
        &self,
        namespace: &str,
        owner: &OwnerReference,
    ) -> Result<Workload, KubeError> {
        let info = self.owner(namespace, OwnerKind::Job, owner).await?;
        let job = JobRef {
            name: owner.name.clone(),
            controller_uid: info
                .as_ref()
                .and_then(|i| i.uid.clone())
                .or_else(|| owner.uid.clone()),
        };
        let cronjob = info.as_ref().and_then(|info| {
            let cj = info.controller.as_ref()?;
            let valid = cj.kind == "CronJob"
                && matches!(api_group(cj), Some("batch") | None)
                && check_name("CronJob name", &cj.name).is_ok();
            valid.then(|| CronJobRef {
                name: cj.name.clone(),
                scheduled_time: info
                    .scheduled_time
                    .clone()
                    .or_else(|| scheduled_time_from_name(&owner.name, &cj.name)),
                source: OwnerSource::KubernetesApi,
                inferred: false,
            })
        });
        Ok(match cronjob {
            Some(cronjob) => Workload {
                kind: WorkloadKind::CronJob,
                name: cronjob.name.clone(),
                job: Some(job),
                cronjob: Some(cronjob),
                source: OwnerSource::KubernetesApi,
            },
            None => Workload {
                kind: WorkloadKind::Job,
                name: job.name.clone(),
                job: Some(job),
                cronjob: None,
                source: OwnerSource::KubernetesApi,
            },
        })
    }

    /// A ReplicaSet pod's workload: Deployment when a Deployment controls the ReplicaSet.
    async fn resolve_replicaset(
        &self,
        namespace: &str,
        owner: &OwnerReference,
    ) -> Result<Workload, KubeError> {
        let info = self.owner(namespace, OwnerKind::ReplicaSet, owner).await?;
        let deployment = info
            .as_ref()
            .and_then(|i| i.controller.as_ref())
            .filter(|d| {
                d.kind == "Deployment"
                    && matches!(api_group(d), Some("apps" | "extensions") | None)
                    && check_name("Deployment name", &d.name).is_ok()
            });
        Ok(match deployment {
            Some(d) => simple(WorkloadKind::Deployment, &d.name),
            None => simple(WorkloadKind::ReplicaSet, &owner.name),
        })
    }

    /// The Job or ReplicaSet an ownerReference names, from the cache or the API. `None` when it
    /// is gone: 404, or an object of that name with another uid.
    async fn owner(
        &self,
        namespace: &str,
        kind: OwnerKind,
        owner: &OwnerReference,
    ) -> Result<Option<OwnerInfo>, KubeError> {
        let key = OwnerKey {
            namespace: namespace.to_owned(),
            kind,
            name: owner.name.clone(),
        };
        let same_uid = |info: &OwnerInfo| match (&owner.uid, &info.uid) {
            (Some(want), Some(have)) => want == have,
            _ => true,
        };
        let cached = lock(&self.owners).get(&key).cloned();
        if let Some(info) = cached
            && same_uid(&info)
        {
            return Ok(Some(info));
        }
        let url = format!(
            "{}/{}/namespaces/{namespace}/{}/{}",
            self.base,
            kind.api_prefix(),
            kind.resource(),
            owner.name
        );
        let object: Object = match self.get_json(&url).await {
            Ok(object) => object,
            Err(KubeError::Status { code: 404, .. }) => return Ok(None),
            Err(err) => return Err(err),
        };
        let info = OwnerInfo {
            scheduled_time: object
                .metadata
                .annotations
                .as_ref()
                .and_then(|a| a.get(CRONJOB_SCHEDULED_TIMESTAMP_ANNOTATION))
                .and_then(|t| parse_rfc3339_ns(t))
                .map(clock::rfc3339),
            controller: controller_of(&object.metadata).cloned(),
            uid: object.metadata.uid,
        };
        lock(&self.owners).insert(key, info.clone());
        Ok(same_uid(&info).then_some(info))
    }

    /// One list followed by one watch; `Ok(number of events)` when the watch ended normally.
    async fn list_and_watch(
        &self,
        on_update: &(impl Fn(&str, &Workload) + Send + Sync),
    ) -> Result<u64, KubeError> {
        let resource_version = self.relist(on_update).await?;
        let mut url = self.pods_url()?;
        url.query_pairs_mut()
            .append_pair("resourceVersion", &resource_version)
            .append_pair("watch", "1")
            .append_pair("allowWatchBookmarks", "true")
            .append_pair("timeoutSeconds", &WATCH_TIMEOUT_SECS.to_string());
        let url_text = url.to_string();
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let sent = tokio::time::timeout(self.request_timeout, self.client.get(url).send()).await;
        let response = match sent {
            Err(_) => {
                return Err(self.count_error(KubeError::Timeout {
                    url: url_text,
                    after: self.request_timeout,
                }));
            }
            Ok(Err(source)) => {
                return Err(self.count_error(KubeError::http(&url_text, source)));
            }
            Ok(Ok(response)) => self.check_status(&url_text, response).await?,
        };
        self.read_watch(&url_text, response, on_update).await
    }

    /// Reads watch events, one JSON object a line, until the stream ends, an ERROR event comes,
    /// or the deadline passes.
    async fn read_watch(
        &self,
        url: &str,
        mut response: reqwest::Response,
        on_update: &(impl Fn(&str, &Workload) + Send + Sync),
    ) -> Result<u64, KubeError> {
        let deadline = tokio::time::Instant::now()
            + Duration::from_secs(WATCH_TIMEOUT_SECS)
            + self.request_timeout;
        let mut line: Vec<u8> = Vec::new();
        let mut discarding = false;
        let mut events = 0u64;
        loop {
            let chunk = match tokio::time::timeout_at(deadline, response.chunk()).await {
                Err(_) => return Ok(events),
                Ok(Err(source)) => {
                    return Err(self.count_error(KubeError::http(url, source)));
                }
                Ok(Ok(None)) => break,
                Ok(Ok(Some(chunk))) => chunk,
            };
            let mut rest: &[u8] = &chunk;
            while let Some(pos) = rest.iter().position(|&b| b == b'\n') {
                let (part, tail) = rest.split_at(pos);
                rest = tail.get(1..).unwrap_or_default();
                if discarding {
                    discarding = false;
                    continue;
                }
                if line.len() + part.len() > MAX_WATCH_LINE_BYTES {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    line.clear();
                    continue;
                }
                line.extend_from_slice(part);
                let flow = self.handle_event(&line, on_update).await;
                line.clear();
                match flow {
                    Flow::Continue => {}
                    Flow::Event => events += 1,
                    Flow::Stop => return Ok(events),
                }
            }
            if !discarding {
                if line.len() + rest.len() > MAX_WATCH_LINE_BYTES {
                    self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                    line.clear();
                    discarding = true;
                } else {
                    line.extend_from_slice(rest);
                }
            }
        }
        if !discarding
            && !line.is_empty()
            && self.handle_event(&line, on_update).await == Flow::Event
        {
            events += 1;
        }
        Ok(events)
    }

    /// Applies one watch line.
    async fn handle_event(
        &self,
        line: &[u8],
        on_update: &(impl Fn(&str, &Workload) + Send + Sync),
    ) -> Flow {
        if line.iter().all(u8::is_ascii_whitespace) {
            return Flow::Continue;
        }
        let event: WatchEvent = match serde_json::from_slice(line) {
            Ok(event) => event,
            Err(err) => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                tracing::debug!(error = %err, "skipping a malformed watch event");
                return Flow::Continue;
            }
        };
        match event.kind.as_str() {
            "ADDED" | "MODIFIED" => {
                self.observe_pod(event.object.metadata, on_update).await;
                Flow::Event
            }
            "DELETED" => {
                if let Some(uid) = &event.object.metadata.uid {
                    lock(&self.pods).remove(uid);
                }
                Flow::Event
            }
            "BOOKMARK" => Flow::Continue,
            "ERROR" => {
                tracing::debug!(
                    code = ?event.object.code,
                    reason = %excerpt(event.object.reason.as_deref().unwrap_or_default().as_bytes()),
                    message = %excerpt(event.object.message.as_deref().unwrap_or_default().as_bytes()),
                    "pod watch ERROR event; re-listing"
                );
                Flow::Stop
            }
            _ => {
                self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                Flow::Continue
            }
        }
    }

    /// Resolves a listed or watched pod into the cache unless it is cached with the same
    /// controller; calls `on_update` when resolved.
    async fn observe_pod(
        &self,
        meta: ObjectMeta,
        on_update: &(impl Fn(&str, &Workload) + Send + Sync),
    ) {
        let (Some(uid), Some(namespace), Some(name)) =
            (meta.uid.as_deref(), &meta.namespace, &meta.name)
        else {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        };
        if uid.is_empty()
            || check_namespace(namespace).is_err()
            || check_name("pod name", name).is_err()
        {
            self.counters.malformed.fetch_add(1, Ordering::Relaxed);
            return;
        }
        let controller = controller_of(&meta).cloned();
        let known = lock(&self.pods)
            .by_uid
            .peek(uid)
            .is_some_and(|entry| entry.controller == controller);
        if known {
            return;
        }
        match self.resolve(namespace, name, controller.as_ref()).await {
            Ok(workload) => {
                lock(&self.pods).insert(
                    uid.to_owned(),
                    PodEntry {
                        namespace: namespace.clone(),
                        name: name.clone(),
                        controller,
                        workload: workload.clone(),
                    },
                );
                on_update(uid, &workload);
            }
            Err(err) => tracing::debug!(
                namespace = %namespace,
                pod = %name,
                error = %err,
                "cannot resolve the owner of a watched pod"
            ),
        }
    }

    /// Lists this node's pods (all pages), resolves the new ones, drops cached pods that are not
    /// listed, and returns the list's resourceVersion.
    async fn relist(
        &self,
        on_update: &(impl Fn(&str, &Workload) + Send + Sync),
    ) -> Result<String, KubeError> {
        let mut seen: HashSet<String> = HashSet::new();
        let mut resource_version: Option<String> = None;
        let mut next: Option<String> = None;
        for _ in 0..MAX_LIST_PAGES {
            let mut url = self.pods_url()?;
            url.query_pairs_mut().append_pair("limit", LIST_PAGE_SIZE);
            if let Some(token) = &next {
                url.query_pairs_mut().append_pair("continue", token);
            }
            let url = url.to_string();
            let list: PodList = self.get_json(&url).await?;
            if resource_version.is_none() {
                resource_version = list.metadata.resource_version.filter(|rv| !rv.is_empty());
                if resource_version.is_none() {
                    return Err(self.count_error(KubeError::Missing {
                        url,
                        field: "metadata.resourceVersion",
                    }));
                }
            }
            for item in list.items {
                match serde_json::from_value::<Object>(item) {
                    Ok(object) => {
                        if let Some(uid) = &object.metadata.uid {
                            seen.insert(uid.clone());
                        }
                        self.observe_pod(object.metadata, on_update).await;
                    }
                    Err(err) => {
                        self.counters.malformed.fetch_add(1, Ordering::Relaxed);
                        tracing::debug!(error = %err, "skipping a malformed pod in the list");
                    }
                }
            }
            next = list.metadata.continue_token.filter(|t| !t.is_empty());
            if next.is_none() {
                lock(&self.pods).retain(|uid| seen.contains(uid));
                return resource_version.ok_or_else(|| KubeError::Missing {
                    url,
                    field: "metadata.resourceVersion",
                });
            }
        }
        Err(self.count_error(KubeError::TooLarge {
            url: self.pods_url()?.to_string(),
            limit: MAX_LIST_PAGES,
        }))
    }

    /// `/api/v1/pods?fieldSelector=spec.nodeName=<node>`.
    fn pods_url(&self) -> Result<Url, KubeError> {
        let text = format!("{}/api/v1/pods", self.base);
        let mut url = Url::parse(&text)
            .map_err(|e| KubeError::Config(format!("bad pods URL {text:?}: {e}")))?;
        url.query_pairs_mut().append_pair(
            "fieldSelector",
            &format!("spec.nodeName={}", self.node_name),
        );
        Ok(url)
    }

    /// GET `url` within the request timeout, reading at most [`MAX_BODY_BYTES`], decoded as `T`.
    async fn get_json<T: DeserializeOwned>(&self, url: &str) -> Result<T, KubeError> {
        self.counters.requests.fetch_add(1, Ordering::Relaxed);
        let response = self
            .client
            .get(url)
            .timeout(self.request_timeout)
            .send()
            .await
            .map_err(|source| self.count_error(KubeError::http(url, source)))?;
        let mut response = self.check_status(url, response).await?;
        if response
            .content_length()
            .is_some_and(|n| n > MAX_BODY_BYTES as u64)
        {
            return Err(self.count_error(KubeError::TooLarge {
                url: url.to_owned(),
                limit: MAX_BODY_BYTES,
            }));
        }
        let mut body = Vec::new();
        loop {
            match response.chunk().await {
                Ok(Some(chunk)) => {
                    if body.len() + chunk.len() > MAX_BODY_BYTES {
                        return Err(self.count_error(KubeError::TooLarge {
                            url: url.to_owned(),
                            limit: MAX_BODY_BYTES,
                        }));
                    }
                    body.extend_from_slice(&chunk);
                }
                Ok(None) => break,
                Err(source) => {
                    return Err(self.count_error(KubeError::http(url, source)));
                }
            }
        }
        serde_json::from_slice(&body).map_err(|source| {
            self.count_error(KubeError::Decode {
                url: url.to_owned(),
                source,
            })
        })
    }

    /// The response when its status is 2xx, else [`KubeError::Status`] with a body excerpt.
    async fn check_status(
        &self,
        url: &str,
        mut response: reqwest::Response,
    ) -> Result<reqwest::Response, KubeError> {
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let mut head = Vec::new();
        let read_head = async {
            while head.len() < BODY_EXCERPT_BYTES {
                match response.chunk().await {
                    Ok(Some(chunk)) => head.extend_from_slice(&chunk),
                    Ok(None) | Err(_) => break,
                }
            }
        };
        // The watch request has no client timeout: bound the error body here.
        let _ = tokio::time::timeout(self.request_timeout, read_head).await;
        Err(self.count_error(KubeError::Status {
            url: url.to_owned(),
            code: status.as_u16(),
            body_excerpt: excerpt(&head),
        }))
    }

    /// Counts `err` and returns it.
    fn count_error(&self, err: KubeError) -> KubeError {
        self.counters.errors.fetch_add(1, Ordering::Relaxed);
        err
    }
}

/// What a watch line did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Flow {
    /// Nothing (blank, BOOKMARK, malformed).
    Continue,
    /// A pod was added, modified or deleted.
    Event,
    /// The watch must end (ERROR event).
    Stop,
}

#[derive(Default)]
struct Counters {
    requests: AtomicU64,
    errors: AtomicU64,
    cache_hits: AtomicU64,
    cache_misses: AtomicU64,
    watch_restarts: AtomicU64,
    malformed: AtomicU64,
}

/// The owner kinds fetched by name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
enum OwnerKind {
    Job,
    ReplicaSet,
}

impl OwnerKind {
    fn api_prefix(self) -> &'static str {
        match self {
            OwnerKind::Job => "apis/batch/v1",
            OwnerKind::ReplicaSet => "apis/apps/v1",
        }
    }

    fn resource(self) -> &'static str {
        match self {
            OwnerKind::Job => "jobs",
            OwnerKind::ReplicaSet => "replicasets",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct OwnerKey {
    namespace: String,
    kind: OwnerKind,
    name: String,
}

/// What is kept of a Job or ReplicaSet.
#[derive(Clone, Debug)]
struct OwnerInfo {
    uid: Option<String>,
    controller: Option<OwnerReference>,
    /// Normalised RFC 3339 (as [`clock::rfc3339`] prints it).
    scheduled_time: Option<String>,
}

/// A cached pod.
#[derive(Clone, Debug)]
struct PodEntry {
    namespace: String,
    name: String,
    controller: Option<OwnerReference>,
    workload: Workload,
}

/// Pods by uid, with a (namespace, name) index.
struct PodCache {
    by_uid: Lru<String, PodEntry>,
    by_name: HashMap<(String, String), String>,
}

impl PodCache {
    fn new(capacity: usize) -> PodCache {
        PodCache {
            by_uid: Lru::new(capacity),
            by_name: HashMap::new(),
        }
    }

    /// The cached workload of a pod: by uid when given (and the name matches), else by name.
    fn lookup(&mut self, namespace: &str, name: &str, uid: Option<&str>) -> Option<Workload> {
        let key = match uid {
            Some(uid) => uid.to_owned(),
            None => self
                .by_name
                .get(&(namespace.to_owned(), name.to_owned()))?
                .clone(),
        };
        let entry = self.by_uid.get(&key)?;
        (entry.namespace == namespace && entry.name == name).then(|| entry.workload.clone())
    }

    fn insert(&mut self, uid: String, entry: PodEntry) {
        let name_key = (entry.namespace.clone(), entry.name.clone());
        if let Some(old) = self.by_uid.peek(&uid) {
            let old_key = (old.namespace.clone(), old.name.clone());
            if old_key != name_key && self.by_name.get(&old_key) == Some(&uid) {
                self.by_name.remove(&old_key);
            }
        }
        self.by_name.insert(name_key, uid.clone());
        for (evicted_uid, evicted) in self.by_uid.insert(uid, entry) {
            self.unindex(&evicted_uid, evicted);
        }
    }

    fn remove(&mut self, uid: &str) {
        if let Some(entry) = self.by_uid.remove(uid) {
            self.unindex(uid, entry);
        }
    }

    fn retain(&mut self, keep: impl Fn(&str) -> bool) {
        let gone: Vec<String> = self
            .by_uid
            .keys()
            .filter(|uid| !keep(uid))
            .cloned()
            .collect();
        for uid in gone {
            self.remove(&uid);
        }
    }

    fn unindex(&mut self, uid: &str, entry: PodEntry) {
        let key = (entry.namespace, entry.name);
        if self.by_name.get(&key).is_some_and(|u| u == uid) {
            self.by_name.remove(&key);
        }
    }
}

/// A map of at most `capacity` entries that evicts the least recently used.
struct Lru<K, V> {
    capacity: usize,
    tick: u64,
    map: HashMap<K, (V, u64)>,
    order: BTreeMap<u64, K>,
}

impl<K: Clone + Eq + Hash, V> Lru<K, V> {
    fn new(capacity: usize) -> Lru<K, V> {
        Lru {
            capacity,
            tick: 0,
            map: HashMap::new(),
            order: BTreeMap::new(),
        }
    }

    fn len(&self) -> usize {
        self.map.len()
    }

    fn keys(&self) -> impl Iterator<Item = &K> {
        self.map.keys()
    }

    fn peek<Q>(&self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.map.get(key).map(|(v, _)| v)
    }

    /// The value, marked as most recently used.
    fn get<Q>(&mut self, key: &Q) -> Option<&V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.tick += 1;
        let tick = self.tick;
        let (value, used) = self.map.get_mut(key)?;
        if let Some(k) = self.order.remove(used) {
            self.order.insert(tick, k);
        }
        *used = tick;
        Some(value)
    }

    /// Inserts or replaces; returns the evicted entries.
    fn insert(&mut self, key: K, value: V) -> Vec<(K, V)> {
        self.tick += 1;
        if let Some((_, used)) = self.map.insert(key.clone(), (value, self.tick)) {
            self.order.remove(&used);
        }
        self.order.insert(self.tick, key);
        let mut evicted = Vec::new();
        while self.map.len() > self.capacity {
            let Some((_, oldest)) = self.order.pop_first() else {
                break;
            };
            if let Some((value, _)) = self.map.remove(&oldest) {
                evicted.push((oldest, value));
            }
        }
        evicted
    }

    fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: std::borrow::Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let (value, used) = self.map.remove(key)?;
        self.order.remove(&used);
        Some(value)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

/// A workload that is just its owner's kind and name.
fn simple(kind: WorkloadKind, name: &str) -> Workload {
    Workload {
        kind,
        name: name.to_owned(),
        job: None,
        cronjob: None,
        source: OwnerSource::KubernetesApi,
    }
}

/// The first ownerReference with `controller: true`.
fn controller_of(meta: &ObjectMeta) -> Option<&OwnerReference> {
    meta.owner_references
        .as_deref()?
        .iter()
        .find(|o| o.controller == Some(true))
}

/// The API group of an ownerReference (`""` for the core group), `None` without apiVersion.
fn api_group(owner: &OwnerReference) -> Option<&str> {
    let version = owner.api_version.as_deref()?;
    Some(version.rsplit_once('/').map_or("", |(group, _)| group))
}

/// The scheduled time of a Job named exactly `<cronjob>-<minutes>` by the CronJob controller.
fn scheduled_time_from_name(job: &str, cronjob: &str) -> Option<String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX));
    infer_cronjob(job, now)
        .filter(|c| c.name == cronjob)
        .and_then(|c| c.scheduled_time)
}

/// Rejects namespaces that are not DNS-1123 labels.
fn check_namespace(namespace: &str) -> Result<(), KubeError> {
    if namespace.len() > 63 || !is_dns1123_subdomain(namespace) || namespace.contains('.') {
        return Err(KubeError::InvalidName {
            what: "namespace",
            reason: "not a DNS-1123 label",
        });
    }
    Ok(())
}

/// Rejects object names that are not DNS-1123 subdomains.
fn check_name(what: &'static str, name: &str) -> Result<(), KubeError> {
    if !is_dns1123_subdomain(name) {
        return Err(KubeError::InvalidName {
            what,
            reason: "not a DNS-1123 subdomain",
        });
    }
    Ok(())
}

/// Dot-separated `[a-z0-9]([-a-z0-9]*[a-z0-9])?` labels of at most 63 bytes, 253 bytes in all.
fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.')
            .all(crate::attribution::workload::is_dns1123_label)
}

/// An error and its sources, `: `-separated (reqwest's own message rarely says what failed).
fn error_chain(err: &dyn std::error::Error) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// At most [`BODY_EXCERPT_BYTES`] of `bytes` as text without control characters.
fn excerpt(bytes: &[u8]) -> String {
    let head = bytes.get(..BODY_EXCERPT_BYTES).unwrap_or(bytes);
    String::from_utf8_lossy(head)
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>()
        .trim()
        .to_owned()
}

/// Unix nanoseconds of an RFC 3339 timestamp (`2025-02-19T21:20:00Z`, optional fraction of up to
/// 9 digits, `Z` or a `±hh:mm` offset). `None` when malformed.
fn parse_rfc3339_ns(s: &str) -> Option<i128> {
    let b = s.as_bytes();
    let num = |range: std::ops::Range<usize>| -> Option<i64> {
        let digits = b.get(range)?;
        if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
            return None;
        }
        std::str::from_utf8(digits).ok()?.parse().ok()
    };
    let sep = |i: usize, c: &[u8]| b.get(i).is_some_and(|x| c.contains(x));
    if !(sep(4, b"-") && sep(7, b"-") && sep(10, b"Tt") && sep(13, b":") && sep(16, b":")) {
        return None;
    }
    let (year, month, day) = (num(0..4)?, num(5..7)?, num(8..10)?);
    let (hour, minute, second) = (num(11..13)?, num(14..16)?, num(17..19)?);
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    let month_days = match month {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if leap => 29,
        2 => 28,
        _ => return None,
    };
    if day < 1 || day > month_days || hour > 23 || minute > 59 || second > 59 {
        return None;
    }
    let mut i = 19;
    let mut nanos: i64 = 0;
    if sep(i, b".") {
        let start = i + 1;
        let end = start
            + b.get(start..)?
                .iter()
                .take_while(|c| c.is_ascii_digit())
                .count();
        if end == start || end - start > 9 {
            return None;
        }
        nanos = num(start..end)? * 10i64.pow(9 - (end - start) as u32);
        i = end;
    }
    let offset_secs = match b.get(i..)? {
        b"Z" | b"z" => 0,
        [sign @ (b'+' | b'-'), _, _, b':', _, _] => {
            let (h, m) = (num(i + 1..i + 3)?, num(i + 4..i + 6)?);
            if h > 23 || m > 59 {
                return None;
            }
            let secs = h * 3600 + m * 60;
            if *sign == b'+' { secs } else { -secs }
        }
        _ => return None,
    };
    let secs = days_from_civil(year, month, day) * 86_400 + hour * 3600 + minute * 60 + second
        - offset_secs;
    Some(i128::from(secs) * 1_000_000_000 + i128::from(nanos))
}

/// Days since 1970-01-01 of a proleptic Gregorian date; Howard Hinnant's algorithm.
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (month + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[derive(Clone, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct OwnerReference {
    api_version: Option<String>,
    kind: String,
    name: String,
    uid: Option<String>,
    controller: Option<bool>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ObjectMeta {
    name: Option<String>,
    namespace: Option<String>,
    uid: Option<String>,
    owner_references: Option<Vec<OwnerReference>>,
    annotations: Option<BTreeMap<String, String>>,
}

/// A pod, Job or ReplicaSet: only its metadata.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Object {
    metadata: ObjectMeta,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ListMeta {
    resource_version: Option<String>,
    #[serde(rename = "continue")]
    continue_token: Option<String>,
}

/// A pod list; items are decoded one by one so that one bad item does not spoil the list.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct PodList {
    metadata: ListMeta,
    items: Vec<serde_json::Value>,
}

/// A watch event: `{"type": "ADDED", "object": {...}}`.
#[derive(Debug, Deserialize)]
struct WatchEvent {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    object: WatchObject,
}

/// A watched pod, or the Status of an ERROR event.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WatchObject {
    metadata: ObjectMeta,
    code: Option<u16>,
    reason: Option<String>,
    message: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_rfc3339() {
        let fmt = |s: &str| parse_rfc3339_ns(s).map(clock::rfc3339);
        assert_eq!(
            fmt("2025-02-19T21:20:00Z").as_deref(),
            Some("2025-02-19T21:20:00.000000000Z")
        );
        assert_eq!(
            fmt("2025-02-19T23:20:00.5+02:00").as_deref(),
            Some("2025-02-19T21:20:00.500000000Z")
        );
        assert_eq!(
            fmt("2000-02-29t00:00:00.123456789-01:30").as_deref(),
            Some("2000-02-29T01:30:00.123456789Z")
        );
        for bad in [
            "",
            "2025-02-19",
            "2025-02-19T21:20:00",
            "2025-02-30T21:20:00Z",
            "2100-02-29T00:00:00Z",
            "2025-13-01T00:00:00Z",
            "2025-02-19T24:00:00Z",
            "2025-02-19T21:20:60Z",
            "2025-02-19T21:20:00.Z",
            "2025-02-19T21:20:00.1234567890Z",
            "2025-02-19T21:20:00+2:00",
            "2025-02-19T21:20:00Zjunk",
            "+025-02-19T21:20:00Z",
            "2025-02-19T21:20:00\u{1F600}",
        ] {
            assert_eq!(parse_rfc3339_ns(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn lru_evicts_least_recently_used() {
        let mut lru = Lru::new(2);
        assert!(lru.insert("a", 1).is_empty());
        assert!(lru.insert("b", 2).is_empty());
        assert_eq!(lru.get("a"), Some(&1));
        assert_eq!(lru.insert("c", 3), vec![("b", 2)]);
        assert_eq!(lru.insert("a", 10), vec![]);
        assert_eq!(lru.insert("d", 4), vec![("c", 3)]);
        assert_eq!(lru.len(), 2);
        assert_eq!(lru.remove("a"), Some(10));
        assert_eq!(lru.order.len(), 1);
        let mut none = Lru::new(0);
        assert_eq!(none.insert("x", 1), vec![("x", 1)]);
    }

    #[test]
    fn names_for_paths() {
        assert!(check_name("n", "backup-29000000-x7k2p").is_ok());
        assert!(check_name("n", "etcd-node1.example").is_ok());
        for bad in ["", "..", "a/b", "a?b", "A", "a b", "-a", "a%2f"] {
            assert!(check_name("n", bad).is_err(), "{bad:?}");
        }
        assert!(check_namespace("ops").is_ok());
        assert!(check_namespace("a.b").is_err());
        assert!(check_namespace(&"n".repeat(64)).is_err());
    }
}
