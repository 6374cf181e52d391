//! Pod, Job and CronJob identity from a pod sandbox's containerd labels.
//!
//! What the node knows (see `docs/machine.md`): the pod sandbox's containerd labels are all pod
//! labels plus `io.kubernetes.pod.name|namespace|uid` and `io.cri-containerd.kind=sandbox`; an app
//! container only carries `io.kubernetes.*` and `io.cri-containerd.kind=container`, so its Job is
//! found through its sandbox. A Job pod carries `batch.kubernetes.io/job-name` and
//! `batch.kubernetes.io/controller-uid` (Kubernetes >= 1.27) and/or the legacy `job-name` and
//! `controller-uid`. The owning CronJob is nowhere on the node: the CronJob controller names its
//! Jobs `<cronjob>-<scheduled time in minutes since the Unix epoch>`, so it can only be *inferred*
//! from the Job name here; the API server's ownerReferences make it certain.
//!
//! Pod labels come from the pod template and are under the user's control, and containerd labels
//! set with `ctr` are not validated by Kubernetes at all: every value read here is validated or
//! sanitised, and nothing panics on hostile input.

use std::collections::BTreeMap;

use serde::Serialize;

use super::cgroup_path::normalize_pod_uid;
use crate::clock;

/// Label with the pod's name (set by the kubelet on every container of the pod).
pub const POD_NAME_LABEL: &str = "io.kubernetes.pod.name";
/// Label with the pod's namespace.
pub const POD_NAMESPACE_LABEL: &str = "io.kubernetes.pod.namespace";
/// Label with the pod's uid.
pub const POD_UID_LABEL: &str = "io.kubernetes.pod.uid";
/// The Job name labels, preferred first (the `batch.kubernetes.io/` form exists since 1.27).
pub const JOB_NAME_LABELS: [&str; 2] = ["batch.kubernetes.io/job-name", "job-name"];
/// The Job uid labels, preferred first.
pub const CONTROLLER_UID_LABELS: [&str; 2] =
    ["batch.kubernetes.io/controller-uid", "controller-uid"];
/// The label the Deployment controller puts on its ReplicaSets' pods.
pub const POD_TEMPLATE_HASH_LABEL: &str = "pod-template-hash";

/// Longest label key kept by [`sanitize_label`]: a 253-byte prefix, `/` and a 63-byte name.
pub const MAX_LABEL_KEY_BYTES: usize = 317;
/// Longest label value kept by [`sanitize_label`]. Kubernetes allows 63 bytes, but labels set
/// through containerd directly are only bounded by containerd (key + value <= 4096 bytes).
pub const MAX_LABEL_VALUE_BYTES: usize = 4096;
/// At most this many user labels are kept in a [`PodIdentity`] (the first ones in key order).
pub const MAX_USER_LABELS: usize = 256;
/// Longest CronJob name the API server accepts (so that `<name>-<minutes>` fits in 63 bytes).
pub const MAX_CRONJOB_NAME_LEN: usize = 52;
/// Earliest plausible scheduled time of a CronJob run: 2015-01-01T00:00:00Z.
pub const MIN_SCHEDULED_UNIX_SECS: i64 = 1_420_070_400;
/// How far past "now" a scheduled time may lie (clock skew between node and control plane).
pub const MAX_SCHEDULE_AHEAD_SECS: i64 = 86_400;

/// A pod, from the `io.kubernetes.pod.*` labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct PodIdentity {
    /// Pod name.
    pub name: String,
    /// Pod namespace.
    pub namespace: String,
    /// Pod uid (with dashes).
    pub uid: String,
    /// The pod's own labels, sanitised: without the runtime's `io.kubernetes.*` and
    /// `io.cri-containerd.*` keys, at most [`MAX_USER_LABELS`] of them.
    pub labels: BTreeMap<String, String>,
}

/// The Job a pod belongs to, from its labels.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct JobRef {
    /// Job name.
    pub name: String,
    /// The Job's uid, when a well-formed `controller-uid` label is present.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub controller_uid: Option<String>,
}

/// Where an ownership fact comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum OwnerSource {
    /// Labels the controller put on the pod.
    Labels,
    /// The shape of a name (e.g. `<cronjob>-<minutes>`); plausible, not certain.
    NameInference,
    /// ownerReferences read from the Kubernetes API server.
    KubernetesApi,
}

/// The CronJob a Job belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct CronJobRef {
    /// CronJob name.
    pub name: String,
    /// RFC 3339 UTC of the scheduled run, when inferred from the Job name.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub scheduled_time: Option<String>,
    /// Where this comes from.
    pub source: OwnerSource,
    /// True when inferred from the name (not confirmed by the API).
    pub inferred: bool,
}

/// The kind of a pod's top-level owner.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "PascalCase")]
pub enum WorkloadKind {
    /// A CronJob (through its Job).
    CronJob,
    /// A Job not created by a CronJob.
    Job,
    /// A Deployment (through its ReplicaSet).
    Deployment,
    /// A ReplicaSet.
    ReplicaSet,
    /// A DaemonSet.
    DaemonSet,
    /// A StatefulSet.
    StatefulSet,
    /// A bare pod without owner.
    Pod,
    /// Not known.
    Unknown,
}

/// A pod's top-level owner as far as known.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Workload {
    /// The owner's kind.
    pub kind: WorkloadKind,
    /// The owner's name; empty when `kind` is [`WorkloadKind::Unknown`].
    pub name: String,
    /// The Job, for Job and CronJob pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub job: Option<JobRef>,
    /// The CronJob, for CronJob pods.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cronjob: Option<CronJobRef>,
    /// Where `kind` and `name` come from.
    pub source: OwnerSource,
}

/// A required pod label is missing or malformed. The offending value is not included: it may be
/// hostile and arbitrarily long.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LabelError {
    /// The label is absent.
    #[error("label {0} is missing")]
    Missing(&'static str),
    /// The label is present but its value is not acceptable.
    #[error("label {label} is invalid: {reason}")]
    Invalid {
        /// The label key.
        label: &'static str,
        /// Why the value was rejected.
        reason: &'static str,
    },
}

/// The pod from a sandbox's (or container's) labels: needs `io.kubernetes.pod.name` (a DNS-1123
/// subdomain), `io.kubernetes.pod.namespace` (a DNS-1123 label) and `io.kubernetes.pod.uid` (a
/// lowercase UUID, or the 32 hex digits of a static pod). The other labels, sanitised with
/// [`sanitize_label`] and without `io.kubernetes.*` / `io.cri-containerd.*` keys, become
/// [`PodIdentity::labels`]; when sanitising makes two keys equal, the one that was already clean
/// wins.
pub fn pod_from_labels(labels: &BTreeMap<String, String>) -> Result<PodIdentity, LabelError> {
    let name = required(labels, POD_NAME_LABEL)?;
    if !is_dns1123_subdomain(name) {
        return Err(LabelError::Invalid {
            label: POD_NAME_LABEL,
            reason: "not a DNS-1123 subdomain",
        });
    }
    let namespace = required(labels, POD_NAMESPACE_LABEL)?;
    if !is_dns1123_label(namespace) {
        return Err(LabelError::Invalid {
            label: POD_NAMESPACE_LABEL,
            reason: "not a DNS-1123 label",
        });
    }
    let uid = required(labels, POD_UID_LABEL)?;
    if !is_k8s_uid(uid) {
        return Err(LabelError::Invalid {
            label: POD_UID_LABEL,
            reason: "not a lowercase UUID or static pod uid",
        });
    }

    let mut user = BTreeMap::new();
    for (key, value) in labels {
        let Some((k, v)) = sanitize_label(key, value) else {
            continue;
        };
        if is_runtime_key(&k) || (user.len() >= MAX_USER_LABELS && !user.contains_key(&k)) {
            continue;
        }
        if k == *key && v == *value {
            user.insert(k, v);
        } else {
            user.entry(k).or_insert(v);
        }
    }
    Ok(PodIdentity {
        name: name.to_owned(),
        namespace: namespace.to_owned(),
        uid: uid.to_owned(),
        labels: user,
    })
}

/// The Job from a pod's labels: the name from `batch.kubernetes.io/job-name`, else `job-name`
/// (the first one that is a valid Job name: a DNS-1123 subdomain of at most 63 bytes), the uid from
/// `batch.kubernetes.io/controller-uid`, else `controller-uid` (the first lowercase UUID). `None`
/// without a valid Job name.
pub fn job_from_labels(labels: &BTreeMap<String, String>) -> Option<JobRef> {
    let name = JOB_NAME_LABELS
        .iter()
        .filter_map(|k| labels.get(*k))
        .find(|v| v.len() <= 63 && is_dns1123_subdomain(v))?;
    let controller_uid = CONTROLLER_UID_LABELS
        .iter()
        .filter_map(|k| labels.get(*k))
        .find(|v| is_k8s_uid(v))
        .cloned();
    Some(JobRef {
        name: name.clone(),
        controller_uid,
    })
}

/// The CronJob a Job was created by, inferred from the Job's name `<cronjob>-<minutes>` (the
/// CronJob controller's `fmt.Sprintf("%s-%d", name, scheduledTime.Unix()/60)`).
///
/// `now_unix_secs` bounds plausibility: the minute count must lie between 2015-01-01T00:00:00Z and
/// now + 1 day inclusive (scheduled times are never far in the future). The Job name must be a valid
/// DNS-1123 label, the suffix 8 or more digits without a leading zero, and the CronJob part a
/// non-empty DNS-1123 label of at most 52 bytes. A Job that merely looks like this (a hand-made
/// `backup-29000000`) cannot be told apart without the API, hence `inferred: true`.
pub fn infer_cronjob(job_name: &str, now_unix_secs: i64) -> Option<CronJobRef> {
    if !is_dns1123_label(job_name) {
        return None;
    }
    let (cronjob, suffix) = job_name.rsplit_once('-')?;
    if cronjob.len() > MAX_CRONJOB_NAME_LEN || !is_dns1123_label(cronjob) {
        return None;
    }
    if suffix.len() < 8 || suffix.starts_with('0') || !suffix.bytes().all(|c| c.is_ascii_digit()) {
        return None;
    }
    let minutes: i64 = suffix.parse().ok()?;
    let secs = minutes.checked_mul(60)?;
    let latest = now_unix_secs.saturating_add(MAX_SCHEDULE_AHEAD_SECS);
    if !(MIN_SCHEDULED_UNIX_SECS..=latest).contains(&secs) {
        return None;
    }
    Some(CronJobRef {
        name: cronjob.to_owned(),
        scheduled_time: Some(clock::rfc3339(i128::from(secs) * 1_000_000_000)),
        source: OwnerSource::NameInference,
        inferred: true,
    })
}

/// The workload from a pod sandbox's labels alone (no API):
/// - a Job pod ([`job_from_labels`]) is [`WorkloadKind::CronJob`] (source `NameInference`, named
///   after the CronJob) when the Job name has the CronJob shape ([`infer_cronjob`]), else
///   [`WorkloadKind::Job`] (source `Labels`);
/// - a pod with a `pod-template-hash` label is [`WorkloadKind::ReplicaSet`] (source
///   `NameInference`) named `<pod name minus its last -xxxxx part>`, but only when that name ends
///   in `-<pod-template-hash>` and the last part is 5 characters of the name generator's alphabet.
///   Whether a Deployment owns the ReplicaSet, and the ReplicaSet's name when the pod name was
///   truncated (ReplicaSet names over 58 bytes), cannot be told from labels: such pods are
///   `Unknown`;
/// - anything else is [`WorkloadKind::Unknown`] with an empty name (a bare pod, a DaemonSet's or
///   StatefulSet's pod and an app container's labels all look alike here).
///
/// Pod labels come from the pod template, so a user can make any pod look like a Job pod; only
/// the API's ownerReferences are authoritative.
pub fn workload_from_labels(labels: &BTreeMap<String, String>, now_unix_secs: i64) -> Workload {
    if let Some(job) = job_from_labels(labels) {
        return match infer_cronjob(&job.name, now_unix_secs) {
            Some(cronjob) => Workload {
                kind: WorkloadKind::CronJob,
                name: cronjob.name.clone(),
                job: Some(job),
                cronjob: Some(cronjob),
                source: OwnerSource::NameInference,
            },
            None => Workload {
                kind: WorkloadKind::Job,
                name: job.name.clone(),
                job: Some(job),
                cronjob: None,
                source: OwnerSource::Labels,
            },
        };
    }
    if let Some(rs) = replicaset_name(labels) {
        return Workload {
            kind: WorkloadKind::ReplicaSet,
            name: rs.to_owned(),
            job: None,
            cronjob: None,
            source: OwnerSource::NameInference,
        };
    }
    Workload {
        kind: WorkloadKind::Unknown,
        name: String::new(),
        job: None,
        cronjob: None,
        source: OwnerSource::Labels,
    }
}

/// Cleans a label key and value read from a possibly hostile container: removes control
/// characters (C0, DEL, C1), Unicode bidirectional overrides/isolates/marks and line/paragraph
/// separators (they can disguise log lines), then truncates the key to
/// [`MAX_LABEL_KEY_BYTES`] and the value to [`MAX_LABEL_VALUE_BYTES`] at a character boundary.
/// `None` when the key is empty or blank after cleaning.
pub fn sanitize_label(key: &str, value: &str) -> Option<(String, String)> {
    let key = clean(key, MAX_LABEL_KEY_BYTES);
    if key.trim().is_empty() {
        return None;
    }
    Some((key, clean(value, MAX_LABEL_VALUE_BYTES)))
}

/// Drops unsafe characters from `s` and truncates the result to `cap` bytes.
fn clean(s: &str, cap: usize) -> String {
    let mut out = String::with_capacity(s.len().min(cap));
    for ch in s.chars().filter(|c| !is_unsafe_char(*c)) {
        if out.len() + ch.len_utf8() > cap {
            break;
        }
        out.push(ch);
    }
    out
}

/// Control characters and the invisible characters that reorder or break displayed text.
fn is_unsafe_char(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{200e}' | '\u{200f}' | '\u{2028}' | '\u{2029}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}'
        )
}

/// Keys the runtime adds to the pod's own labels.
fn is_runtime_key(key: &str) -> bool {
    key.starts_with("io.kubernetes.") || key.starts_with("io.cri-containerd.")
}

/// A present label's value, `Missing` otherwise, `Invalid` when empty.
fn required<'a>(
    labels: &'a BTreeMap<String, String>,
    label: &'static str,
) -> Result<&'a str, LabelError> {
    match labels.get(label) {
        None => Err(LabelError::Missing(label)),
        Some(v) if v.is_empty() => Err(LabelError::Invalid {
            label,
            reason: "empty",
        }),
        Some(v) => Ok(v),
    }
}

/// The ReplicaSet of a pod created from a pod template with `pod-template-hash` (see
/// [`workload_from_labels`]).
fn replicaset_name(labels: &BTreeMap<String, String>) -> Option<&str> {
    let hash = labels.get(POD_TEMPLATE_HASH_LABEL)?;
    if hash.is_empty() || hash.len() > 63 || !hash.bytes().all(|c| c.is_ascii_alphanumeric()) {
        return None;
    }
    let pod = labels.get(POD_NAME_LABEL)?;
    if !is_dns1123_subdomain(pod) {
        return None;
    }
    let (rs, random) = pod.rsplit_once('-')?;
    // k8s.io/apimachinery/pkg/util/rand: the alphabet of generated name suffixes.
    const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
    if random.len() != 5 || !random.bytes().all(|c| ALPHABET.contains(&c)) {
        return None;
    }
    let deployment = rs.strip_suffix(hash.as_str())?.strip_suffix('-')?;
    (!deployment.is_empty()).then_some(rs)
}

/// A pod or Job uid: a lowercase UUID with dashes, or a static pod's 32 hex digits.
fn is_k8s_uid(s: &str) -> bool {
    normalize_pod_uid(s).is_some_and(|n| n == s)
}

/// `[a-z0-9]([-a-z0-9]*[a-z0-9])?`, at most 63 bytes.
pub(crate) fn is_dns1123_label(s: &str) -> bool {
    let b = s.as_bytes();
    let alnum = |c: &u8| c.is_ascii_lowercase() || c.is_ascii_digit();
    !b.is_empty()
        && b.len() <= 63
        && b.first().is_some_and(alnum)
        && b.last().is_some_and(alnum)
        && b.iter().all(|c| alnum(c) || *c == b'-')
}

/// Dot-separated DNS-1123 labels, at most 253 bytes.
fn is_dns1123_subdomain(s: &str) -> bool {
    s.len() <= 253 && s.split('.').all(is_dns1123_label)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 2026-11-27T00:00:00Z.
    const NOW: i64 = 1_795_737_600;
    const POD_UID: &str = "6f1c2d3e-4a5b-4c6d-8e9f-0a1b2c3d4e5f";
    const JOB_UID: &str = "0b7e6a2c-3d4f-4e5a-9b8c-7d6e5f4a3b2c";

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect()
    }

    fn sandbox(extra: &[(&str, &str)]) -> BTreeMap<String, String> {
        let mut m = map(&[
            (POD_NAME_LABEL, "backup-29000000-x7k2p"),
            (POD_NAMESPACE_LABEL, "ops"),
            (POD_UID_LABEL, POD_UID),
            ("io.cri-containerd.kind", "sandbox"),
        ]);
        m.extend(map(extra));
        m
    }

    fn inferred(name: &str, time: &str) -> Option<CronJobRef> {
        Some(CronJobRef {
            name: name.to_owned(),
            scheduled_time: Some(time.to_owned()),
            source: OwnerSource::NameInference,
            inferred: true,
        })
    }

    #[test]
    fn infers_cronjob_from_job_name() {
        // 29000000 min = 1_740_000_000 s = 2025-02-19T21:20:00Z.
        assert_eq!(
            infer_cronjob("backup-29000000", NOW),
            inferred("backup", "2025-02-19T21:20:00.000000000Z")
        );
        // CronJob names with digits and dashes: the last dash splits.
        assert_eq!(
            infer_cronjob("db-backup-2-29000000", NOW),
            inferred("db-backup-2", "2025-02-19T21:20:00.000000000Z")
        );
        assert_eq!(
            infer_cronjob("a-29000000", NOW),
            inferred("a", "2025-02-19T21:20:00.000000000Z")
        );
        // Exactly 2015-01-01T00:00:00Z (23667840 min) is accepted, one minute earlier is not.
        assert_eq!(
            infer_cronjob("x-23667840", NOW),
            inferred("x", "2015-01-01T00:00:00.000000000Z")
        );
        assert_eq!(infer_cronjob("x-23667839", NOW), None);
        // Up to now + 1 day, inclusive.
        let limit = (NOW + 86_400) / 60;
        assert_eq!(
            infer_cronjob(&format!("x-{limit}"), NOW),
            inferred("x", "2026-11-28T00:00:00.000000000Z")
        );
        assert_eq!(infer_cronjob(&format!("x-{}", limit + 1), NOW), None);
        // A 52-byte CronJob name (the API maximum) makes a 61-byte Job name.
        let max = "c".repeat(52);
        assert_eq!(
            infer_cronjob(&format!("{max}-29000000"), NOW).map(|c| c.name),
            Some(max)
        );
    }

    #[test]
    fn rejects_non_cronjob_names() {
        for name in [
            "backup",
            "backup-123",
            "backup-1234567",
            "backup-0123456789",
            "backup-02900000",
            "-29000000",
            "29000000",
            "backup--29000000",
            "Backup-29000000",
            "backup-2900000x",
            "backup-29000000a",
            "backup-2.9000000",
            "backup-+29000000",
            "backup-\u{0661}9000000",
            "back_up-29000000",
            "back.up-29000000",
            "backup-29000000-",
            "",
            "-",
            "backup-99999999999999999999999",
            "backup-9223372036854775807",
        ] {
            assert_eq!(infer_cronjob(name, NOW), None, "{name:?}");
        }
        // Far in the future (2030) relative to now, and before 2015 however "now" is set.
        assert_eq!(infer_cronjob("backup-31600000", NOW), None);
        assert_eq!(infer_cronjob("backup-23000000", NOW), None);
        assert_eq!(infer_cronjob("backup-23000000", i64::MAX), None);
        // A clock before 2015 accepts nothing; extreme clocks do not overflow.
        assert_eq!(infer_cronjob("backup-29000000", 0), None);
        assert_eq!(infer_cronjob("backup-29000000", i64::MIN), None);
        assert!(infer_cronjob("backup-29000000", i64::MAX).is_some());
        // 53-byte CronJob names are rejected, as are Job names over 63 bytes.
        assert_eq!(
            infer_cronjob(&format!("{}-29000000", "c".repeat(53)), NOW),
            None
        );
        assert_eq!(
            infer_cronjob(&format!("{}-29000000", "c".repeat(60)), NOW),
            None
        );
    }

    #[test]
    fn job_labels_both_generations() {
        let both = map(&[
            ("batch.kubernetes.io/job-name", "backup-29000000"),
            ("job-name", "backup-29000000"),
            ("batch.kubernetes.io/controller-uid", JOB_UID),
            ("controller-uid", JOB_UID),
        ]);
        let expected = Some(JobRef {
            name: "backup-29000000".to_owned(),
            controller_uid: Some(JOB_UID.to_owned()),
        });
        assert_eq!(job_from_labels(&both), expected);
        let legacy = map(&[("job-name", "backup-29000000"), ("controller-uid", JOB_UID)]);
        assert_eq!(job_from_labels(&legacy), expected);
        // The batch.kubernetes.io/ form wins when they disagree.
        let mixed = map(&[
            ("batch.kubernetes.io/job-name", "new"),
            ("job-name", "old"),
            ("controller-uid", JOB_UID),
        ]);
        assert_eq!(
            job_from_labels(&mixed),
            Some(JobRef {
                name: "new".to_owned(),
                controller_uid: Some(JOB_UID.to_owned())
            })
        );
        // An invalid preferred value falls back to a valid legacy one; a bad uid is dropped.
        let bad_new = map(&[
            ("batch.kubernetes.io/job-name", "Not A Name"),
            ("job-name", "old"),
            ("batch.kubernetes.io/controller-uid", "nope"),
        ]);
        assert_eq!(
            job_from_labels(&bad_new),
            Some(JobRef {
                name: "old".to_owned(),
                controller_uid: None
            })
        );
        assert_eq!(job_from_labels(&map(&[])), None);
        assert_eq!(job_from_labels(&map(&[("controller-uid", JOB_UID)])), None);
        assert_eq!(job_from_labels(&map(&[("job-name", "")])), None);
        assert_eq!(
            job_from_labels(&map(&[("job-name", "j".repeat(64).as_str())])),
            None
        );
    }

    #[test]
    fn workload_of_a_cronjob_pod() {
        let labels = sandbox(&[
            ("batch.kubernetes.io/job-name", "backup-29000000"),
            ("job-name", "backup-29000000"),
            ("batch.kubernetes.io/controller-uid", JOB_UID),
            ("controller-uid", JOB_UID),
        ]);
        let w = workload_from_labels(&labels, NOW);
        assert_eq!(
            w,
            Workload {
                kind: WorkloadKind::CronJob,
                name: "backup".to_owned(),
                job: Some(JobRef {
                    name: "backup-29000000".to_owned(),
                    controller_uid: Some(JOB_UID.to_owned())
                }),
                cronjob: inferred("backup", "2025-02-19T21:20:00.000000000Z"),
                source: OwnerSource::NameInference,
            }
        );
        let json = serde_json::to_value(&w).map_err(|e| e.to_string());
        assert_eq!(
            json,
            Ok(serde_json::json!({
                "kind": "CronJob",
                "name": "backup",
                "job": {"name": "backup-29000000", "controller_uid": JOB_UID},
                "cronjob": {
                    "name": "backup",
                    "scheduled_time": "2025-02-19T21:20:00.000000000Z",
                    "source": "name_inference",
                    "inferred": true
                },
                "source": "name_inference"
            }))
        );
    }

    #[test]
    fn workload_of_other_pods() {
        let job = workload_from_labels(&sandbox(&[("job-name", "migrate")]), NOW);
        assert_eq!(job.kind, WorkloadKind::Job);
        assert_eq!(job.name, "migrate");
        assert_eq!(job.source, OwnerSource::Labels);
        assert_eq!(job.cronjob, None);
        let json = serde_json::to_value(&job).map_err(|e| e.to_string());
        assert_eq!(
            json,
            Ok(serde_json::json!({
                "kind": "Job", "name": "migrate", "job": {"name": "migrate"}, "source": "labels"
            }))
        );

        let mut rs = sandbox(&[("pod-template-hash", "5d8f7c9b4"), ("app", "web")]);
        rs.insert(POD_NAME_LABEL.to_owned(), "web-5d8f7c9b4-x2k9z".to_owned());
        let w = workload_from_labels(&rs, NOW);
        assert_eq!(
            (w.kind, w.name.as_str(), w.source),
            (
                WorkloadKind::ReplicaSet,
                "web-5d8f7c9b4",
                OwnerSource::NameInference
            )
        );
        // Truncated or foreign names are not guessed at.
        for pod in [
            "web-x2k9z",
            "web-5d8f7c9b-x2k9z",
            "web-5d8f7c9b4-xaeio",
            "web-5d8f7c9b4-x2k9",
            "-5d8f7c9b4-x2k9z",
            "5d8f7c9b4-x2k9z",
        ] {
            rs.insert(POD_NAME_LABEL.to_owned(), pod.to_owned());
            assert_eq!(
                workload_from_labels(&rs, NOW).kind,
                WorkloadKind::Unknown,
                "{pod}"
            );
        }

        let app_container = map(&[
            ("io.kubernetes.container.name", "main"),
            (POD_NAME_LABEL, "backup-29000000-x7k2p"),
            (POD_NAMESPACE_LABEL, "ops"),
            (POD_UID_LABEL, POD_UID),
            ("io.cri-containerd.kind", "container"),
        ]);
        let w = workload_from_labels(&app_container, NOW);
        assert_eq!(
            w,
            Workload {
                kind: WorkloadKind::Unknown,
                name: String::new(),
                job: None,
                cronjob: None,
                source: OwnerSource::Labels
            }
        );
        assert_eq!(
            workload_from_labels(&map(&[]), NOW).kind,
            WorkloadKind::Unknown
        );
    }

    #[test]
    fn pod_identity() {
        let labels = sandbox(&[("job-name", "backup-29000000"), ("app", "backup")]);
        let pod = pod_from_labels(&labels);
        assert_eq!(
            pod,
            Ok(PodIdentity {
                name: "backup-29000000-x7k2p".to_owned(),
                namespace: "ops".to_owned(),
                uid: POD_UID.to_owned(),
                labels: map(&[("app", "backup"), ("job-name", "backup-29000000")]),
            })
        );
        // Static pods have a 32-hex uid; pod names may be subdomains.
        let mut static_pod = sandbox(&[]);
        static_pod.insert(
            POD_UID_LABEL.to_owned(),
            "e3b0c44298fc1c149afbf4c8996fb924".to_owned(),
        );
        static_pod.insert(POD_NAME_LABEL.to_owned(), "etcd-node1.example".to_owned());
        assert!(pod_from_labels(&static_pod).is_ok());
    }

    #[test]
    fn pod_identity_errors() {
        for missing in [POD_NAME_LABEL, POD_NAMESPACE_LABEL, POD_UID_LABEL] {
            let mut labels = sandbox(&[]);
            labels.remove(missing);
            assert_eq!(pod_from_labels(&labels), Err(LabelError::Missing(missing)));
        }
        for (label, value) in [
            (POD_NAME_LABEL, ""),
            (POD_NAME_LABEL, "Web"),
            (POD_NAME_LABEL, "web..x"),
            (POD_NAMESPACE_LABEL, "a.b"),
            (POD_NAMESPACE_LABEL, "n".repeat(64).as_str()),
            (POD_UID_LABEL, "6F1C2D3E-4A5B-4C6D-8E9F-0A1B2C3D4E5F"),
            (POD_UID_LABEL, "6f1c2d3e_4a5b_4c6d_8e9f_0a1b2c3d4e5f"),
            (POD_UID_LABEL, "not-a-uid"),
        ] {
            let mut labels = sandbox(&[]);
            labels.insert(label.to_owned(), value.to_owned());
            let err = pod_from_labels(&labels);
            assert!(
                matches!(err, Err(LabelError::Invalid { label: l, .. }) if l == label),
                "{label}={value:?}: {err:?}"
            );
        }
        assert_eq!(
            LabelError::Missing(POD_UID_LABEL).to_string(),
            "label io.kubernetes.pod.uid is missing"
        );
        assert_eq!(
            LabelError::Invalid {
                label: POD_NAME_LABEL,
                reason: "empty"
            }
            .to_string(),
            "label io.kubernetes.pod.name is invalid: empty"
        );
    }

    #[test]
    fn sanitizes_labels() {
        assert_eq!(
            sanitize_label("app", "web"),
            Some(("app".to_owned(), "web".to_owned()))
        );
        assert_eq!(
            sanitize_label("a\0p\np", "w\u{1b}[31me\u{7f}b\u{85}\u{202e}\r\n"),
            Some(("app".to_owned(), "w[31meb".to_owned()))
        );
        assert_eq!(sanitize_label("", "v"), None);
        assert_eq!(sanitize_label("\0\n\t", "v"), None);
        assert_eq!(sanitize_label("  ", "v"), None);
        assert_eq!(
            sanitize_label("k", ""),
            Some(("k".to_owned(), String::new()))
        );
        // Caps, cut at a character boundary.
        let (k, v) = sanitize_label(&"k".repeat(1000), &"v".repeat(100_000)).unwrap_or_default();
        assert_eq!(
            (k.len(), v.len()),
            (MAX_LABEL_KEY_BYTES, MAX_LABEL_VALUE_BYTES)
        );
        let (k, v) =
            sanitize_label(&"\u{e9}".repeat(1000), &"\u{1F600}".repeat(2000)).unwrap_or_default();
        assert_eq!(k.len(), 316);
        assert_eq!(v.len(), MAX_LABEL_VALUE_BYTES);
        assert!(k.chars().all(|c| c == '\u{e9}'));
        // Kubernetes-sized labels are untouched.
        let key = format!("{}/{}", "p".repeat(253), "n".repeat(63));
        let value = "v".repeat(63);
        assert_eq!(sanitize_label(&key, &value), Some((key, value)));
    }

    #[test]
    fn hostile_labels_never_panic() {
        let huge = "x".repeat(1 << 20);
        let mut labels = sandbox(&[
            ("app\0", "shadow"),
            ("app", "web"),
            ("io.kubernetes\0.pod.name", "spoof"),
            ("\u{1b}", "esc"),
            ("job-name", huge.as_str()),
            ("batch.kubernetes.io/job-name", "\0backup-29000000"),
            ("controller-uid", huge.as_str()),
            ("pod-template-hash", huge.as_str()),
        ]);
        labels.insert(huge.clone(), huge.clone());
        labels.insert("nul".to_owned(), "\0\0\0".to_owned());
        for i in 0..1000 {
            labels.insert(format!("k{i:04}"), format!("v\u{0}{i}"));
        }
        let pod = pod_from_labels(&labels).map_err(|e| e.to_string());
        let Ok(pod) = pod else {
            panic!("{pod:?}");
        };
        assert_eq!(pod.labels.len(), MAX_USER_LABELS);
        assert_eq!(pod.labels.get("app").map(String::as_str), Some("web"));
        assert!(!pod.labels.contains_key("io.kubernetes.pod.name"));
        assert!(
            pod.labels
                .iter()
                .all(|(k, v)| k.len() <= MAX_LABEL_KEY_BYTES
                    && v.len() <= MAX_LABEL_VALUE_BYTES
                    && !k.contains('\0')
                    && !v.contains('\0'))
        );
        assert_eq!(job_from_labels(&labels), None);
        assert_eq!(
            workload_from_labels(&labels, NOW).kind,
            WorkloadKind::Unknown
        );

        let mut bad = BTreeMap::new();
        bad.insert(POD_NAME_LABEL.to_owned(), huge.clone());
        bad.insert(POD_NAMESPACE_LABEL.to_owned(), "\0".to_owned());
        bad.insert(POD_UID_LABEL.to_owned(), "\u{1F600}".repeat(9));
        assert!(pod_from_labels(&bad).is_err());
        bad.insert(POD_NAME_LABEL.to_owned(), "ok".to_owned());
        assert!(pod_from_labels(&bad).is_err());
        assert_eq!(infer_cronjob(&huge, NOW), None);
        assert_eq!(infer_cronjob("\u{1F600}-29000000", NOW), None);
        assert_eq!(infer_cronjob("backup-29000000\0", NOW), None);
    }
}
