//! The rules file: the shipped default set (`default_rules.yaml`), a user's file layered on
//! top, and exceptions. Every error names the file, the line and the reason.

use std::{
    collections::BTreeMap,
    fmt,
    path::{Path, PathBuf},
};

use jobwatch_proto::v1 as pb;
use serde::Deserialize;

use super::glob::Glob;

/// The shipped rules.
pub const DEFAULT_RULES: &str = include_str!("default_rules.yaml");
/// The name the shipped rules are reported under in errors.
pub const DEFAULT_RULES_NAME: &str = "<default rules>";

/// A rules file that cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RulesError {
    /// The file.
    pub file: PathBuf,
    /// 1-based line, when known.
    pub line: Option<usize>,
    /// What is wrong.
    pub reason: String,
}

impl fmt::Display for RulesError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.line {
            Some(line) => write!(f, "{}:{line}: {}", self.file.display(), self.reason),
            None => write!(f, "{}: {}", self.file.display(), self.reason),
        }
    }
}

impl std::error::Error for RulesError {}

/// Alert severity, lowest first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    /// For the record.
    Info,
    /// Worth knowing.
    Low,
    /// Worth a look.
    Medium,
    /// Likely an attack.
    High,
    /// An attack.
    Critical,
}

impl Severity {
    /// The protobuf value.
    pub fn to_pb(self) -> pb::Severity {
        match self {
            Severity::Info => pb::Severity::Info,
            Severity::Low => pb::Severity::Low,
            Severity::Medium => pb::Severity::Medium,
            Severity::High => pb::Severity::High,
            Severity::Critical => pb::Severity::Critical,
        }
    }

    /// The lowercase name.
    pub fn name(self) -> &'static str {
        match self {
            Severity::Info => "info",
            Severity::Low => "low",
            Severity::Medium => "medium",
            Severity::High => "high",
            Severity::Critical => "critical",
        }
    }
}

/// Which processes and containers a rule looks at.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Scope {
    /// Containers of Job and CronJob pods.
    Jobs,
    /// Any container.
    Containers,
    /// Containers and host processes.
    All,
}

/// The detectors a rule can use (the rule's logic; the file gives its settings).
#[derive(Debug, Clone, PartialEq)]
pub enum Detector {
    /// Rule 1: a CronJob or Job never seen before.
    NewWorkload(NewWorkloadParams),
    /// Rule 2: privileged, host namespaces, sensitive host paths, dangerous capabilities.
    HostAccess(HostAccessParams),
    /// Rule 3: runs as root.
    RunsAsRoot,
    /// Rule 4: executes what was not in the image.
    Drift,
    /// Rule 5: memfd or deleted executables.
    Fileless,
    /// Rule 6: download-and-run, inline interpreters, netcat, miners.
    DownloadAndRun(DownloadParams),
    /// Rule 7: persistence paths and host-path mount writes.
    PersistenceWrite(PersistenceParams),
    /// Rule 8: per-CronJob baselines.
    CronJobBaseline(BaselineParams),
}

impl Detector {
    /// The detector's name in the rules file.
    pub fn name(&self) -> &'static str {
        match self {
            Detector::NewWorkload(_) => "new_workload",
            Detector::HostAccess(_) => "host_access",
            Detector::RunsAsRoot => "runs_as_root",
            Detector::Drift => "drift",
            Detector::Fileless => "fileless",
            Detector::DownloadAndRun(_) => "download_and_run",
            Detector::PersistenceWrite(_) => "persistence_write",
            Detector::CronJobBaseline(_) => "cronjob_baseline",
        }
    }
}

/// Names of every detector.
pub const DETECTORS: &[&str] = &[
    "new_workload",
    "host_access",
    "runs_as_root",
    "drift",
    "fileless",
    "download_and_run",
    "persistence_write",
    "cronjob_baseline",
];

/// Settings of `new_workload`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewWorkloadParams {
    /// Namespaces that raise `system_severity`.
    #[serde(default)]
    pub system_namespaces: Vec<String>,
    /// Severity in a system namespace.
    pub system_severity: Option<Severity>,
    /// Severity of the "runs every minute" follow-up (none: no follow-up).
    pub every_minute_severity: Option<Severity>,
    /// Alert on Jobs no CronJob owns.
    #[serde(default = "yes")]
    pub ad_hoc_jobs: bool,
}

/// Settings of `host_access`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct HostAccessParams {
    /// Host paths (and everything above them: mounting `/` exposes `/etc`) that are sensitive.
    #[serde(default)]
    pub sensitive_host_paths: Vec<String>,
    /// Added capabilities that are dangerous (`CAP_` prefix optional).
    #[serde(default)]
    pub dangerous_capabilities: Vec<String>,
}

/// Settings of `download_and_run`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DownloadParams {
    /// Shell names.
    #[serde(default)]
    pub shells: Vec<String>,
    /// Download tools.
    #[serde(default)]
    pub network_tools: Vec<String>,
    /// Interpreter name -> the flags that take inline code.
    #[serde(default)]
    pub inline_interpreters: BTreeMap<String, Vec<String>>,
    /// netcat-like tools.
    #[serde(default)]
    pub netcat_tools: Vec<String>,
    /// Miner names.
    #[serde(default)]
    pub miners: Vec<String>,
    /// Argument substrings that mark a miner.
    #[serde(default)]
    pub miner_arguments: Vec<String>,
}

/// Settings of `persistence_write`, as written in the file.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
struct PersistenceParamsFile {
    #[serde(default)]
    paths: Vec<String>,
    host_severity: Option<Severity>,
    #[serde(default)]
    any_host_mount_write: bool,
    host_mount_write_severity: Option<Severity>,
}

/// Settings of `persistence_write`.
#[derive(Debug, Clone, PartialEq)]
pub struct PersistenceParams {
    /// Persistence locations.
    pub paths: Vec<Glob>,
    /// Severity when the target is on the host.
    pub host_severity: Option<Severity>,
    /// Alert on any creation through a writable host-path mount.
    pub any_host_mount_write: bool,
    /// Severity of those.
    pub host_mount_write_severity: Option<Severity>,
}

/// Settings of `cronjob_baseline`.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BaselineParams {
    /// Runs that only learn.
    #[serde(default = "two")]
    pub learning_runs: u32,
    /// Most items per CronJob.
    #[serde(default = "thousand")]
    pub max_items: usize,
    /// Most CronJobs tracked.
    #[serde(default = "ten_thousand")]
    pub max_cronjobs: usize,
}

fn yes() -> bool {
    true
}
fn two() -> u32 {
    2
}
fn thousand() -> usize {
    1024
}
fn ten_thousand() -> usize {
    10_000
}

/// One rule, ready to run.
#[derive(Debug, Clone, PartialEq)]
pub struct Rule {
    /// Stable id.
    pub id: String,
    /// One line.
    pub title: String,
    /// Why it matters.
    pub description: String,
    /// Severity of its alerts (detectors may raise some, as their settings say).
    pub severity: Severity,
    /// ATT&CK technique.
    pub technique: String,
    /// ATT&CK data sources.
    pub data_sources: Vec<String>,
    /// ATT&CK mitigations.
    pub mitigations: Vec<String>,
    /// What it looks at.
    pub scope: Scope,
    /// Its logic and settings.
    pub detector: Detector,
}

impl Rule {
    /// The protobuf reference to the rule.
    pub fn to_pb(&self) -> pb::RuleRef {
        pb::RuleRef {
            id: self.id.clone(),
            title: self.title.clone(),
            description: self.description.clone(),
            technique: self.technique.clone(),
            data_sources: self.data_sources.clone(),
            mitigations: self.mitigations.clone(),
        }
    }
}

/// An exception: alerts matching every field given (any value of a field) are suppressed.
#[derive(Debug, Clone, PartialEq)]
pub struct Exception {
    /// Rule ids (every rule when empty).
    pub rules: Vec<String>,
    /// Pod namespaces (globs).
    pub namespaces: Vec<Glob>,
    /// Images (globs).
    pub images: Vec<Glob>,
    /// CronJob names (globs).
    pub cronjobs: Vec<Glob>,
    /// Acting binaries (globs).
    pub binaries: Vec<Glob>,
    /// Why (free text).
    pub comment: String,
}

/// What an exception is matched against.
#[derive(Debug, Clone, Copy, Default)]
pub struct Subject<'a> {
    /// Rule id.
    pub rule: &'a str,
    /// Pod namespace.
    pub namespace: &'a str,
    /// Image.
    pub image: &'a str,
    /// CronJob name.
    pub cronjob: &'a str,
    /// Acting binary.
    pub binary: &'a str,
}

impl Exception {
    /// Whether the exception covers `s`.
    pub fn covers(&self, s: &Subject<'_>) -> bool {
        let any = |globs: &[Glob], v: &str| globs.is_empty() || globs.iter().any(|g| g.matches(v));
        (self.rules.is_empty() || self.rules.iter().any(|r| r == s.rule))
            && any(&self.namespaces, s.namespace)
            && any(&self.images, s.image)
            && any(&self.cronjobs, s.cronjob)
            && any(&self.binaries, s.binary)
    }
}

/// The rules in force.
#[derive(Debug, Clone, PartialEq)]
pub struct RuleSet {
    /// Enabled rules, in file order.
    pub rules: Vec<Rule>,
    /// Exceptions.
    pub exceptions: Vec<Exception>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct File {
    /// Layer on top of the shipped rules (default true; ignored in the shipped file).
    #[serde(default = "yes")]
    defaults: bool,
    #[serde(default)]
    rules: Vec<RuleEntry>,
    #[serde(default)]
    exceptions: Vec<ExceptionEntry>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RuleEntry {
    id: String,
    detector: Option<String>,
    enabled: Option<bool>,
    title: Option<String>,
    description: Option<String>,
    severity: Option<Severity>,
    technique: Option<String>,
    data_sources: Option<Vec<String>>,
    mitigations: Option<Vec<String>>,
    scope: Option<Scope>,
    params: Option<serde_norway::Value>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct ExceptionEntry {
    #[serde(default)]
    rules: Vec<String>,
    #[serde(default)]
    namespaces: Vec<String>,
    #[serde(default)]
    images: Vec<String>,
    #[serde(default)]
    cronjobs: Vec<String>,
    #[serde(default)]
    binaries: Vec<String>,
    #[serde(default)]
    comment: String,
}

/// A rule while files are merged.
#[derive(Debug, Clone)]
struct Draft {
    id: String,
    enabled: bool,
    detector: Option<String>,
    title: Option<String>,
    description: Option<String>,
    severity: Option<Severity>,
    technique: Option<String>,
    data_sources: Vec<String>,
    mitigations: Vec<String>,
    scope: Option<Scope>,
    params: Option<serde_norway::Value>,
    /// Where the rule was (last) defined, for errors.
    file: PathBuf,
    line: Option<usize>,
}

/// Loads the shipped rules and, when given, a user's file on top.
pub fn load(user: Option<&Path>) -> Result<RuleSet, RulesError> {
    let user = user
        .map(|path| {
            std::fs::read_to_string(path)
                .map(|text| (path.to_path_buf(), text))
                .map_err(|e| RulesError {
                    file: path.to_path_buf(),
                    line: None,
                    reason: format!("cannot read the rules file: {e}"),
                })
        })
        .transpose()?;
    parse(user.as_ref().map(|(p, t)| (p.as_path(), t.as_str())))
}

/// The shipped rules and, when given, a user's file (path, text) on top.
pub fn parse(user: Option<(&Path, &str)>) -> Result<RuleSet, RulesError> {
    let shipped = Path::new(DEFAULT_RULES_NAME);
    let mut drafts: Vec<Draft> = Vec::new();
    let mut exceptions = Vec::new();
    let user_file = user
        .map(|(path, text)| parse_file(path, text))
        .transpose()?;
    if user_file.as_ref().is_none_or(|f| f.defaults) {
        let file = parse_file(shipped, DEFAULT_RULES)?;
        merge(&mut drafts, &mut exceptions, file, shipped, DEFAULT_RULES)?;
    }
    if let (Some(file), Some((path, text))) = (user_file, user) {
        merge(&mut drafts, &mut exceptions, file, path, text)?;
    }
    let mut rules = Vec::new();
    for d in drafts {
        if d.enabled {
            rules.push(finish(d)?);
        }
    }
    Ok(RuleSet { rules, exceptions })
}

fn parse_file(path: &Path, text: &str) -> Result<File, RulesError> {
    if text.trim().is_empty() {
        return Ok(File {
            defaults: true,
            rules: Vec::new(),
            exceptions: Vec::new(),
        });
    }
    serde_norway::from_str(text).map_err(|e| RulesError {
        file: path.to_path_buf(),
        line: e.location().map(|l| l.line()),
        reason: strip_location(&e.to_string()),
    })
}

/// serde_norway appends " at line L column C" to messages; the line is reported separately.
fn strip_location(msg: &str) -> String {
    match msg.find(" at line ") {
        Some(i) => msg[..i].to_string(),
        None => msg.to_string(),
    }
}

/// The line of `id: <id>` in `text` (1-based), for errors found after parsing.
fn line_of_id(text: &str, id: &str) -> Option<usize> {
    text.lines()
        .position(|l| {
            let l = l.trim_start().trim_start_matches("- ").trim();
            l.strip_prefix("id:")
                .map(|v| v.trim().trim_matches(['"', '\'']) == id)
                .unwrap_or(false)
        })
        .map(|i| i + 1)
}

fn merge(
    drafts: &mut Vec<Draft>,
    exceptions: &mut Vec<Exception>,
    file: File,
    path: &Path,
    text: &str,
) -> Result<(), RulesError> {
    for entry in file.rules {
        let line = line_of_id(text, &entry.id);
        let err = |reason: String| RulesError {
            file: path.to_path_buf(),
            line,
            reason,
        };
        if entry.id.trim().is_empty() {
            return Err(err("a rule has an empty id".into()));
        }
        if let Some(d) = &entry.detector
            && !DETECTORS.contains(&d.as_str())
        {
            return Err(err(format!(
                "rule {}: unknown detector {d:?} (one of: {})",
                entry.id,
                DETECTORS.join(", ")
            )));
        }
        match drafts.iter_mut().find(|d| d.id == entry.id) {
            Some(d) => {
                if d.file == path {
                    return Err(err(format!("rule {} is defined twice", entry.id)));
                }
                if let Some(det) = entry.detector
                    && Some(&det) != d.detector.as_ref()
                {
                    return Err(err(format!(
                        "rule {}: the detector of a shipped rule cannot change ({:?} -> {det:?}); \
                         add a rule with a new id instead",
                        entry.id,
                        d.detector.as_deref().unwrap_or("")
                    )));
                }
                d.enabled = entry.enabled.unwrap_or(d.enabled);
                d.title = entry.title.or(d.title.take());
                d.description = entry.description.or(d.description.take());
                d.severity = entry.severity.or(d.severity);
                d.technique = entry.technique.or(d.technique.take());
                if let Some(v) = entry.data_sources {
                    d.data_sources = v;
                }
                if let Some(v) = entry.mitigations {
                    d.mitigations = v;
                }
                d.scope = entry.scope.or(d.scope);
                if let Some(p) = entry.params {
                    d.params = Some(merge_params(d.params.take(), p));
                }
                d.file = path.to_path_buf();
                d.line = line;
            }
            None => {
                if entry.detector.is_none() {
                    return Err(err(format!(
                        "rule {}: no such rule to change; a new rule needs a detector (one of: {})",
                        entry.id,
                        DETECTORS.join(", ")
                    )));
                }
                drafts.push(Draft {
                    id: entry.id,
                    enabled: entry.enabled.unwrap_or(true),
                    detector: entry.detector,
                    title: entry.title,
                    description: entry.description,
                    severity: entry.severity,
                    technique: entry.technique,
                    data_sources: entry.data_sources.unwrap_or_default(),
                    mitigations: entry.mitigations.unwrap_or_default(),
                    scope: entry.scope,
                    params: entry.params,
                    file: path.to_path_buf(),
                    line,
                });
            }
        }
    }
    for (i, e) in file.exceptions.into_iter().enumerate() {
        let globs = |v: Vec<String>, what: &str| -> Result<Vec<Glob>, RulesError> {
            v.into_iter()
                .map(|p| {
                    Glob::new(&p).map_err(|reason| RulesError {
                        file: path.to_path_buf(),
                        line: None,
                        reason: format!("exception {}: {what} {p:?}: {reason}", i + 1),
                    })
                })
                .collect()
        };
        for r in &e.rules {
            if !drafts.iter().any(|d| &d.id == r) {
                return Err(RulesError {
                    file: path.to_path_buf(),
                    line: text
                        .lines()
                        .position(|l| l.contains(r.as_str()) && !l.contains("id:"))
                        .map(|i| i + 1),
                    reason: format!("exception {}: no rule {r:?}", i + 1),
                });
            }
        }
        exceptions.push(Exception {
            rules: e.rules,
            namespaces: globs(e.namespaces, "namespace")?,
            images: globs(e.images, "image")?,
            cronjobs: globs(e.cronjobs, "cronjob")?,
            binaries: globs(e.binaries, "binary")?,
            comment: e.comment,
        });
    }
    Ok(())
}

/// A user's `params` replace the shipped ones key by key.
fn merge_params(
    base: Option<serde_norway::Value>,
    over: serde_norway::Value,
) -> serde_norway::Value {
    use serde_norway::Value;
    match (base, over) {
        (Some(Value::Mapping(mut b)), Value::Mapping(o)) => {
            for (k, v) in o {
                b.insert(k, v);
            }
            Value::Mapping(b)
        }
        (_, o) => o,
    }
}

fn finish(d: Draft) -> Result<Rule, RulesError> {
    let err = |reason: String| RulesError {
        file: d.file.clone(),
        line: d.line,
        reason: format!("rule {}: {reason}", d.id),
    };
    let need = |v: Option<String>, what: &str| {
        v.filter(|s| !s.trim().is_empty())
            .ok_or_else(|| err(format!("missing {what}")))
    };
    let params = d.params.clone().unwrap_or(serde_norway::Value::Null);
    let params = match params {
        serde_norway::Value::Null => serde_norway::Value::Mapping(Default::default()),
        p => p,
    };
    let detector_name = d.detector.clone().unwrap_or_default();
    let bad = |e: serde_norway::Error| err(format!("params: {}", strip_location(&e.to_string())));
    let detector = match detector_name.as_str() {
        "new_workload" => {
            Detector::NewWorkload(serde_norway::from_value(params.clone()).map_err(bad)?)
        }
        "host_access" => {
            Detector::HostAccess(serde_norway::from_value(params.clone()).map_err(bad)?)
        }
        "runs_as_root" => no_params(&params, Detector::RunsAsRoot).map_err(err)?,
        "drift" => no_params(&params, Detector::Drift).map_err(err)?,
        "fileless" => no_params(&params, Detector::Fileless).map_err(err)?,
        "download_and_run" => {
            Detector::DownloadAndRun(serde_norway::from_value(params.clone()).map_err(bad)?)
        }
        "persistence_write" => {
            let p: PersistenceParamsFile = serde_norway::from_value(params.clone()).map_err(bad)?;
            let paths = p
                .paths
                .iter()
                .map(|s| Glob::new(s).map_err(|r| err(format!("params: paths: {s:?}: {r}"))))
                .collect::<Result<Vec<_>, _>>()?;
            Detector::PersistenceWrite(PersistenceParams {
                paths,
                host_severity: p.host_severity,
                any_host_mount_write: p.any_host_mount_write,
                host_mount_write_severity: p.host_mount_write_severity,
            })
        }
        "cronjob_baseline" => {
            let p: BaselineParams = serde_norway::from_value(params.clone()).map_err(bad)?;
            if p.max_items == 0 || p.max_cronjobs == 0 {
                return Err(err(
                    "params: max_items and max_cronjobs must be at least 1".into()
                ));
            }
            Detector::CronJobBaseline(p)
        }
        other => return Err(err(format!("unknown detector {other:?}"))),
    };
    Ok(Rule {
        title: need(d.title.clone(), "title")?,
        description: d.description.clone().unwrap_or_default(),
        severity: d.severity.ok_or_else(|| err("missing severity".into()))?,
        technique: d.technique.clone().unwrap_or_else(|| "T1053.007".into()),
        data_sources: d.data_sources.clone(),
        mitigations: d.mitigations.clone(),
        scope: d.scope.unwrap_or(Scope::Jobs),
        detector,
        id: d.id.clone(),
    })
}

fn no_params(params: &serde_norway::Value, detector: Detector) -> Result<Detector, String> {
    match params {
        serde_norway::Value::Mapping(m) if m.is_empty() => Ok(detector),
        _ => Err(format!(
            "params: detector {} takes no params",
            detector.name()
        )),
    }
}

#[cfg(test)]
mod tests;
