//! T1053.007 detection: the rules engine the collector runs over every newly stored event.
//!
//! [`Engine::observe`] takes events in arrival order and returns the alerts they raise and
//! the state changes (CronJob runs, baseline items, workloads seen) that must be stored so a
//! restarted collector carries on where it stopped. The engine is synchronous and does no
//! I/O; [`Detection`] wraps it with the store, the alert stream and the JSON-lines output.

mod baseline;
mod checks;
mod glob;
mod names;
pub mod output;
pub mod rules;
mod state;

use std::{
    collections::{BTreeMap, HashSet, VecDeque},
    sync::atomic::{AtomicU64, Ordering},
};

use jobwatch_proto::v1 as pb;

pub use self::baseline::Change;
use self::{
    baseline::{Baselines, Seen, job_minutes},
    rules::{Detector, Rule, RuleSet, Scope, Severity, Subject},
    state::{
        Bounded, Chain, ContainerState, MAX_CONTAINERS, MAX_EXITED_CONTAINERS, MAX_PROCESSES,
        ProcessInfo, Processes,
    },
};

/// Most alert keys remembered to raise each alert once.
const MAX_FIRED: usize = 262_144;
/// Siblings (earlier children of the same parent) a process is checked against.
const MAX_SIBLINGS: usize = 8;

/// State restored from the store at start.
#[derive(Debug, Default, Clone)]
pub struct Persisted {
    /// Keys of workloads (and follow-ups) already alerted on.
    pub seen: Vec<String>,
    /// CronJob runs: (cronjob, job, ordinal, scheduled minutes).
    pub runs: Vec<(String, String, u32, Option<u64>)>,
    /// Baseline items: (cronjob, item).
    pub items: Vec<(String, String)>,
}

/// What one call of [`Engine::observe`] produced.
#[derive(Debug, Default)]
pub struct Output {
    /// New alerts (id 0: the store assigns ids).
    pub alerts: Vec<pb::Alert>,
    /// Keys to add to the seen set.
    pub seen: Vec<String>,
    /// Runs and baseline items to store.
    pub changes: Vec<Change>,
}

/// The engine's counters.
#[derive(Debug, Default)]
pub struct EngineCounters {
    /// Events looked at.
    pub events: AtomicU64,
    /// Alerts raised, by severity (info..critical).
    pub alerts: [AtomicU64; 5],
    /// Alerts an exception suppressed.
    pub suppressed: AtomicU64,
}

impl EngineCounters {
    /// (name, value) of every counter, for metrics and status.
    pub fn snapshot(&self) -> Vec<(String, u64)> {
        let mut v = vec![
            (
                "detection_events".to_string(),
                self.events.load(Ordering::Relaxed),
            ),
            (
                "alerts_suppressed".to_string(),
                self.suppressed.load(Ordering::Relaxed),
            ),
        ];
        for (i, s) in [
            Severity::Info,
            Severity::Low,
            Severity::Medium,
            Severity::High,
            Severity::Critical,
        ]
        .iter()
        .enumerate()
        {
            v.push((
                format!("alerts_{}", s.name()),
                self.alerts[i].load(Ordering::Relaxed),
            ));
        }
        v
    }
}

/// A finding before it becomes an alert.
struct Finding {
    rule: usize,
    severity: Severity,
    message: String,
    details: BTreeMap<String, String>,
    evidence: Vec<pb::StoredEvent>,
    chain: Chain,
    /// The alert names the acting process (of the last evidence event) and its ancestry;
    /// built only when the alert is, not for every event.
    ancestry: bool,
    binary: String,
    time: i64,
}

/// The rules engine.
#[derive(Debug)]
pub struct Engine {
    rules: RuleSet,
    containers: Bounded<(String, String), ContainerState>,
    /// Containers that exited, kept a while: the sensor may send a container's last events
    /// after its exit (they can wait for metadata, the runtime's events do not).
    exited: Bounded<(String, String), ContainerState>,
    processes: Processes,
    baselines: Baselines,
    /// Created files not remembered: their container's table was full.
    created_dropped: u64,
    seen: HashSet<String>,
    fired: Bounded<String, ()>,
    /// Some rule looks at host processes (scope `all`); else host events are skipped at once.
    host_rules: bool,
    /// Counters.
    pub counters: EngineCounters,
}

impl Engine {
    /// An engine running `rules`, carrying on from `persisted`.
    pub fn new(rules: RuleSet, persisted: Persisted) -> Engine {
        let mut baselines = Baselines::default();
        for (c, j, o, m) in &persisted.runs {
            baselines.load_run(c, j, *o, *m);
        }
        for (c, i) in &persisted.items {
            baselines.load_item(c, i);
        }
        Engine {
            host_rules: rules.rules.iter().any(|r| r.scope == Scope::All),
            rules,
            containers: Bounded::new(MAX_CONTAINERS),
            exited: Bounded::new(MAX_EXITED_CONTAINERS),
            processes: Bounded::new(MAX_PROCESSES),
            baselines,
            created_dropped: 0,
            seen: persisted.seen.into_iter().collect(),
            fired: Bounded::new(MAX_FIRED),
            counters: EngineCounters::default(),
        }
    }

    /// The rules in force.
    pub fn rules(&self) -> &RuleSet {
        &self.rules
    }

    /// The paths a container's table remembers, sorted (tests).
    #[cfg(test)]
    pub fn created_paths(&self, node: &str, container: &str) -> Vec<String> {
        let mut paths: Vec<String> = self
            .containers
            .get(&(node.to_string(), container.to_string()))
            .map(|s| s.created.keys().cloned().collect())
            .unwrap_or_default();
        paths.sort();
        paths
    }

    /// Sizes of the bounded tables (containers, processes, alert keys) and what they dropped
    /// for want of room (baseline items, created files that could run that a container's
    /// table could not hold: drift by such a file is then seen only through the upper-layer
    /// flag).
    pub fn table_sizes(&self) -> [(&'static str, u64); 5] {
        [
            ("detection_containers", self.containers.len() as u64),
            ("detection_processes", self.processes.len() as u64),
            ("detection_alert_keys", self.fired.len() as u64),
            ("baseline_items_dropped", self.baselines.items_dropped),
            ("created_files_dropped", self.created_dropped),
        ]
    }

    /// Looks at newly stored events, in order.
    pub fn observe(&mut self, events: &[pb::StoredEvent]) -> Output {
        let mut out = Output::default();
        let mut findings = Vec::new();
        for stored in events {
            let Some(event) = &stored.event else {
                continue;
            };
            self.counters.events.fetch_add(1, Ordering::Relaxed);
            match &event.kind {
                Some(pb::event::Kind::ContainerCreated(c)) => {
                    if let Some(c) = &c.container {
                        self.container_created(stored, event, c, &mut out, &mut findings);
                    }
                }
                Some(pb::event::Kind::ContainerExited(c)) => {
                    if let Some(c) = &c.container {
                        let key = (event.node.clone(), c.id.clone());
                        if let Some(state) = self.containers.remove(&key) {
                            self.exited.insert(key, state);
                        }
                    }
                }
                Some(pb::event::Kind::ProcessExec(e)) => {
                    self.exec(stored, event, e, &mut out, &mut findings);
                }
                Some(pb::event::Kind::FileCreated(f)) => {
                    self.file(stored, event, f, &mut out, &mut findings);
                }
                _ => {}
            }
        }
        for f in findings {
            if let Some(a) = self.alert(f) {
                out.alerts.push(a);
            }
        }
        out
    }

    /// What is remembered of a container, running or recently exited.
    fn container(&self, node: &str, id: &str) -> Option<&ContainerState> {
        let key = (node.to_string(), id.to_string());
        self.containers.get(&key).or_else(|| self.exited.get(&key))
    }

    /// What is remembered of a container: running, recently exited, or new.
    fn container_state(&mut self, node: &str, id: &str) -> &mut ContainerState {
        let key = (node.to_string(), id.to_string());
        if self.containers.get(&key).is_none()
            && let Some(state) = self.exited.get_mut(&key)
        {
            return state;
        }
        self.containers.entry(key, ContainerState::default)
    }

    /// Rules of a detector that apply to `chain`.
    fn rules_for(&self, chain: &Chain, pick: fn(&Detector) -> bool) -> Vec<usize> {
        self.rules
            .rules
            .iter()
            .enumerate()
            .filter(|(_, r)| pick(&r.detector) && in_scope(r.scope, chain))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether the alert keyed `key` is new (and remembers it).
    fn first_time(&mut self, key: String) -> bool {
        if self.fired.get(&key).is_some() {
            return false;
        }
        self.fired.insert(key, ());
        true
    }

    fn container_created(
        &mut self,
        stored: &pb::StoredEvent,
        event: &pb::Event,
        c: &pb::Container,
        out: &mut Output,
        findings: &mut Vec<Finding>,
    ) {
        let chain = Chain::of_container(&event.node, c);
        let kind = pb::ContainerKind::try_from(c.kind).ok();
        let state = self
            .containers
            .entry((event.node.clone(), c.id.clone()), ContainerState::default);
        // Files the container created before its facts arrived (a short-lived container's
        // events often come before the runtime reports its start): look at them again now
        // that its host mounts are known.
        let mut early: Vec<pb::StoredEvent> = if state.security.is_none() {
            state.created.values().map(|c| c.event.clone()).collect()
        } else {
            Vec::new()
        };
        early.sort_by_key(|e| e.id);
        state.kind = kind;
        state.security = c.security.clone();
        self.new_workload(stored, event, &chain, out, findings);
        for e in &early {
            if let Some(ev) = &e.event
                && let Some(pb::event::Kind::FileCreated(f)) = &ev.kind
            {
                self.file(e, ev, f, out, findings);
            }
        }
        if !early.is_empty()
            && let Some(state) = self.containers.get_mut(&(event.node.clone(), c.id.clone()))
        {
            state.forget_unrunnable();
        }
        if kind == Some(pb::ContainerKind::Sandbox) {
            return;
        }
        let Some(security) = c.security.clone() else {
            return;
        };
        for i in self.rules_for(&chain, |d| matches!(d, Detector::HostAccess(_))) {
            let Detector::HostAccess(p) = &self.rules.rules[i].detector else {
                continue;
            };
            let reasons = checks::host_access_reasons(&security, p);
            let severity = self.rules.rules[i].severity;
            if reasons.is_empty() || !self.first_time(format!("{i}|{}|{}", event.node, c.id)) {
                continue;
            }
            findings.push(Finding {
                rule: i,
                severity,
                message: format!(
                    "Job container {} of pod {}/{} has host access: {}",
                    c.name,
                    chain.namespace,
                    chain.pod,
                    reasons.join(", ")
                ),
                details: BTreeMap::from([("reasons".to_string(), reasons.join("; "))]),
                evidence: vec![stored.clone()],
                chain: chain.clone(),
                ancestry: false,
                binary: String::new(),
                time: event.time_unix_nano,
            });
        }
        if security.runs_as_root {
            for i in self.rules_for(&chain, |d| matches!(d, Detector::RunsAsRoot)) {
                if !self.first_time(format!("{i}|{}|{}", event.node, c.id)) {
                    continue;
                }
                findings.push(Finding {
                    rule: i,
                    severity: self.rules.rules[i].severity,
                    message: format!(
                        "Job container {} of pod {}/{} runs as root (uid {})",
                        c.name, chain.namespace, chain.pod, security.uid
                    ),
                    details: BTreeMap::from([("uid".to_string(), security.uid.to_string())]),
                    evidence: vec![stored.clone()],
                    chain: chain.clone(),
                    ancestry: false,
                    binary: String::new(),
                    time: event.time_unix_nano,
                });
            }
        }
    }

    /// Rule 1: the first sight of a CronJob or an ad-hoc Job, and the every-minute follow-up.
    fn new_workload(
        &mut self,
        stored: &pb::StoredEvent,
        event: &pb::Event,
        chain: &Chain,
        out: &mut Output,
        findings: &mut Vec<Finding>,
    ) {
        if !chain.is_job() {
            return;
        }
        for i in self.rules_for(chain, |d| matches!(d, Detector::NewWorkload(_))) {
            let Detector::NewWorkload(p) = self.rules.rules[i].detector.clone() else {
                continue;
            };
            let system = p.system_namespaces.contains(&chain.namespace);
            let base = if system {
                p.system_severity.unwrap_or(self.rules.rules[i].severity)
            } else {
                self.rules.rules[i].severity
            };
            let (key, what) = if !chain.cronjob.is_empty() {
                (
                    format!("cronjob|{}/{}", chain.namespace, chain.cronjob),
                    format!("CronJob {}/{}", chain.namespace, chain.cronjob),
                )
            } else if p.ad_hoc_jobs {
                (
                    format!("job|{}/{}", chain.namespace, chain.job),
                    format!("Job {}/{} (no CronJob owns it)", chain.namespace, chain.job),
                )
            } else {
                continue;
            };
            if self.seen.insert(key.clone()) {
                out.seen.push(key.clone());
                let mut details = BTreeMap::new();
                if system {
                    details.insert("system_namespace".into(), chain.namespace.clone());
                }
                findings.push(Finding {
                    rule: i,
                    severity: base,
                    message: format!(
                        "first run of {what} seen (Job {}, node {})",
                        chain.job, chain.node
                    ),
                    details,
                    evidence: vec![stored.clone()],
                    chain: chain.clone(),
                    ancestry: false,
                    binary: String::new(),
                    time: event.time_unix_nano,
                });
            }
            // Every minute: two consecutive runs one scheduled minute apart.
            let (Some(sev), false) = (p.every_minute_severity, chain.cronjob.is_empty()) else {
                continue;
            };
            let cj = format!("{}/{}", chain.namespace, chain.cronjob);
            let minutes = job_minutes(&chain.cronjob, &chain.job);
            let max = self.baseline_max_cronjobs();
            let Some((ordinal, _)) =
                self.baselines
                    .run(&cj, &chain.job, minutes, max, &mut out.changes)
            else {
                continue;
            };
            let prev = self.baselines.previous_minutes(&cj, ordinal);
            if let (Some(m), Some(prev)) = (minutes, prev)
                && m.saturating_sub(prev) == 1
            {
                let key = format!("every_minute|{cj}");
                if self.seen.insert(key.clone()) {
                    out.seen.push(key);
                    findings.push(Finding {
                        rule: i,
                        severity: sev.max(base),
                        message: format!(
                            "CronJob {cj} runs every minute (Jobs {} and {} one minute apart)",
                            prev, m
                        ),
                        details: BTreeMap::from([(
                            "schedule".to_string(),
                            "every minute".to_string(),
                        )]),
                        evidence: vec![stored.clone()],
                        chain: chain.clone(),
                        ancestry: false,
                        binary: String::new(),
                        time: event.time_unix_nano,
                    });
                }
            }
        }
    }

    fn baseline_max_cronjobs(&self) -> usize {
        self.rules
            .rules
            .iter()
            .find_map(|r| match &r.detector {
                Detector::CronJobBaseline(p) => Some(p.max_cronjobs),
                _ => None,
            })
            .unwrap_or(10_000)
    }

    /// Where a process event happened; `None` for a host process when no rule looks at host
    /// processes (the cheap path of most of a busy node's events).
    fn chain(&self, event: &pb::Event, container: Option<&pb::ContainerRef>) -> Option<Chain> {
        match container {
            Some(c) => Some(Chain::of_ref(&event.node, c)),
            None if self.host_rules => Some(Chain::host(&event.node)),
            None => None,
        }
    }

    fn exec(
        &mut self,
        stored: &pb::StoredEvent,
        event: &pb::Event,
        e: &pb::ProcessExec,
        out: &mut Output,
        findings: &mut Vec<Finding>,
    ) {
        let Some(chain) = self.chain(event, e.container.as_ref()) else {
            return;
        };
        let no_process = pb::Process::default();
        let proc_ = e.process.as_ref().unwrap_or(&no_process);
        let exe = names::exe_path(e);
        let command = names::command_name(e);
        // Remember container processes for ancestry and sibling checks. This process is the
        // newest of its parent's children; the ones before it are its siblings.
        let mut has_parent = false;
        if chain.is_container() && !proc_.exec_id.is_empty() {
            if let Some(parent) = self.processes.get_mut(&proc_.parent_exec_id) {
                has_parent = true;
                parent
                    .children
                    .push_back((command.clone(), proc_.exec_id.clone()));
                if parent.children.len() > MAX_SIBLINGS + 1 {
                    parent.children.pop_front();
                }
            }
            let first_exec_unix_nano = self
                .processes
                .get(&proc_.exec_id)
                .map_or(event.time_unix_nano, |p| {
                    p.first_exec_unix_nano.min(event.time_unix_nano)
                });
            self.processes.insert(
                proc_.exec_id.clone(),
                Box::new(ProcessInfo {
                    pid: proc_.pid,
                    exe: exe.clone(),
                    args: e.args.clone(),
                    uid: proc_.uid,
                    parent_exec_id: proc_.parent_exec_id.clone(),
                    children: VecDeque::new(),
                    first_exec_unix_nano,
                }),
            );
        }
        if chain.is_container() {
            self.new_workload(stored, event, &chain, out, findings);
        }
        let finding = |rule: usize, severity, message: String, details, evidence| Finding {
            rule,
            severity,
            message,
            details,
            evidence,
            chain: chain.clone(),
            ancestry: true,
            binary: exe.clone(),
            time: event.time_unix_nano,
        };
        let flags = e.flags.unwrap_or_default();

        // Rule 5: fileless.
        if flags.memfd || flags.deleted {
            for i in self.rules_for(&chain, |d| matches!(d, Detector::Fileless)) {
                let what = if flags.memfd {
                    "a memfd"
                } else {
                    "a deleted file"
                };
                findings.push(finding(
                    i,
                    self.rules.rules[i].severity,
                    format!("{command} executed from {what} ({})", e.binary),
                    BTreeMap::from([
                        ("memfd".to_string(), flags.memfd.to_string()),
                        ("deleted".to_string(), flags.deleted.to_string()),
                    ]),
                    vec![stored.clone()],
                ));
            }
        }

        // Rule 4: drift.
        let drift_rules = self.rules_for(&chain, |d| matches!(d, Detector::Drift));
        if !drift_rules.is_empty() {
            let created = self
                .container(&event.node, &chain.container_id)
                .and_then(|s| {
                    s.created
                        .get(&exe)
                        .or_else(|| s.created.get(&e.binary))
                        .map(|c| c.event.clone())
                });
            if created.is_some() || flags.upper_layer {
                for i in drift_rules {
                    if !self.first_time(format!("{i}|{}|{}|{exe}", event.node, chain.container_id))
                    {
                        continue;
                    }
                    let how = match &created {
                        Some(_) => "created or made executable after the container started",
                        None => "in the container's writable layer",
                    };
                    let mut evidence = Vec::new();
                    evidence.extend(created.clone());
                    evidence.push(stored.clone());
                    findings.push(finding(
                        i,
                        self.rules.rules[i].severity,
                        format!("executed {exe}, {how}"),
                        BTreeMap::from([
                            ("path".to_string(), exe.clone()),
                            ("upper_layer".to_string(), flags.upper_layer.to_string()),
                        ]),
                        evidence,
                    ));
                }
            }
        }

        // Rule 6: download-and-run and tooling.
        for i in self.rules_for(&chain, |d| matches!(d, Detector::DownloadAndRun(_))) {
            let Detector::DownloadAndRun(p) = &self.rules.rules[i].detector else {
                continue;
            };
            let severity = self.rules.rules[i].severity;
            let mut hit = checks::tooling(e, &command, p);
            if hit.is_none() {
                // A shell reading stdin beside a download tool (or the reverse): `curl | sh`
                // run from a script.
                let is_shell = p.shells.contains(&command);
                let is_tool = p.network_tools.contains(&command);
                let mut siblings = self
                    .processes
                    .get(&proc_.parent_exec_id)
                    .filter(|_| has_parent && (is_shell || is_tool))
                    .map(|parent| parent.children.iter().rev().skip(1))
                    .into_iter()
                    .flatten();
                let partner = siblings.find(|(c, _)| {
                    (is_shell && p.network_tools.contains(c)) || (is_tool && p.shells.contains(c))
                });
                if let Some((c, _)) = partner
                    && (!is_shell || checks::reads_stdin(names::command_args(e)))
                {
                    hit = Some((
                        "download_piped_to_shell",
                        format!(
                            "{command} started beside {c} under the same parent: a download fed to a shell"
                        ),
                    ));
                }
            }
            if let Some((kind, msg)) = hit {
                // Once per pipeline (its parent), and once per tool and container for the
                // others: a Job that runs `nc` in a loop raises one alert, not thousands.
                let scope_key = if kind == "download_piped_to_shell" {
                    proc_.parent_exec_id.as_str()
                } else {
                    command.as_str()
                };
                let key = format!(
                    "{i}|{}|{}|{scope_key}|{kind}",
                    event.node, chain.container_id
                );
                if !self.first_time(key) {
                    continue;
                }
                findings.push(finding(
                    i,
                    severity,
                    msg,
                    BTreeMap::from([("kind".to_string(), kind.to_string())]),
                    vec![stored.clone()],
                ));
            }
        }

        // Rule 8: the CronJob's baseline.
        if chain.cronjob.is_empty() {
            return;
        }
        let mut items = vec![format!("exec {exe}")];
        let parent = self
            .processes
            .get(&proc_.parent_exec_id)
            .map(|p| p.exe.clone())
            .or_else(|| e.parent.as_ref().map(|p| p.binary.clone()))
            .unwrap_or_default();
        items.push(format!("shape {parent} > {exe}"));
        self.baseline(stored, &chain, &items, finding, out, findings);
    }

    fn baseline(
        &mut self,
        stored: &pb::StoredEvent,
        chain: &Chain,
        items: &[String],
        finding: impl Fn(
            usize,
            Severity,
            String,
            BTreeMap<String, String>,
            Vec<pb::StoredEvent>,
        ) -> Finding,
        out: &mut Output,
        findings: &mut Vec<Finding>,
    ) {
        if chain.cronjob.is_empty() || chain.job.is_empty() {
            return;
        }
        let cj = format!("{}/{}", chain.namespace, chain.cronjob);
        for i in self.rules_for(chain, |d| matches!(d, Detector::CronJobBaseline(_))) {
            let Detector::CronJobBaseline(p) = self.rules.rules[i].detector.clone() else {
                continue;
            };
            let minutes = job_minutes(&chain.cronjob, &chain.job);
            let Some((ordinal, _)) =
                self.baselines
                    .run(&cj, &chain.job, minutes, p.max_cronjobs, &mut out.changes)
            else {
                continue;
            };
            let new: Vec<&String> = items
                .iter()
                .filter(|item| {
                    self.baselines.observe(
                        &cj,
                        item,
                        ordinal,
                        p.learning_runs,
                        p.max_items,
                        &mut out.changes,
                    ) == Seen::New
                })
                .collect();
            if new.is_empty() {
                continue;
            }
            let list: Vec<&str> = new.iter().map(|s| s.as_str()).collect();
            findings.push(finding(
                i,
                self.rules.rules[i].severity,
                format!(
                    "run {ordinal} of CronJob {cj} (Job {}) did what none of its {} earlier runs did: {}",
                    chain.job,
                    ordinal - 1,
                    list.join("; ")
                ),
                BTreeMap::from([
                    ("new_items".to_string(), list.join("\n")),
                    ("run".to_string(), ordinal.to_string()),
                    ("learning_runs".to_string(), p.learning_runs.to_string()),
                ]),
                vec![stored.clone()],
            ));
        }
    }

    fn file(
        &mut self,
        stored: &pb::StoredEvent,
        event: &pb::Event,
        f: &pb::FileCreated,
        out: &mut Output,
        findings: &mut Vec<Finding>,
    ) {
        let Some(chain) = self.chain(event, f.container.as_ref()) else {
            return;
        };
        let no_process = pb::Process::default();
        let proc_ = f.process.as_ref().unwrap_or(&no_process);
        let mut overflowed = false;
        if chain.is_container() {
            let state = self.container_state(&event.node, &chain.container_id);
            // Before the container's facts arrive every file waits to be judged again with
            // its host mounts; after, only a file that could run (drift) is kept, so that data
            // files do not take the room of a binary the job writes later (not kept is not
            // dropped).
            let remembered = (state.security.is_some() && !state::may_run(f))
                || state.remember_created(&f.path, stored);
            if let Some(src) = &f.source
                && f.operation == pb::FileOperation::Rename as i32
            {
                state.created.remove(src);
            }
            // Once the facts are known only files that could run take room.
            overflowed = !remembered && state.security.is_some();
            self.created_dropped += u64::from(!remembered);
        }
        let finding = |rule: usize, severity, message: String, details, evidence| Finding {
            rule,
            severity,
            message,
            details,
            evidence,
            chain: chain.clone(),
            ancestry: true,
            binary: proc_.binary.clone(),
            time: event.time_unix_nano,
        };

        // Rule 4, drift: a container that created more files that could run than its table
        // holds hides the ones after from the rule's "created, then executed" half (the
        // upper-layer half still sees them). That is said once per container, when the first
        // such file is not remembered: a job does not write a thousand executables.
        if overflowed {
            for i in self.rules_for(&chain, |d| matches!(d, Detector::Drift)) {
                if !self.first_time(format!(
                    "{i}|{}|{}|table full",
                    event.node, chain.container_id
                )) {
                    continue;
                }
                findings.push(finding(
                    i,
                    self.rules.rules[i].severity,
                    format!(
                        "created more than {} files that could be executed; {} and the ones \
                         after it are not tracked for drift",
                        state::MAX_CREATED_PER_CONTAINER,
                        f.path
                    ),
                    BTreeMap::from([
                        ("path".to_string(), f.path.clone()),
                        (
                            "tracked_files".to_string(),
                            state::MAX_CREATED_PER_CONTAINER.to_string(),
                        ),
                    ]),
                    vec![stored.clone()],
                ));
            }
        }

        // Rule 7: persistence.
        for i in self.rules_for(&chain, |d| matches!(d, Detector::PersistenceWrite(_))) {
            let Detector::PersistenceWrite(p) = &self.rules.rules[i].detector else {
                continue;
            };
            let host = if chain.is_container() {
                self.container(&event.node, &chain.container_id)
                    .and_then(|s| s.host_path(&f.path))
                    .map(|(h, m)| (h, m.source.clone(), m.destination.clone()))
            } else {
                None
            };
            let hit = |path: &str| {
                p.paths
                    .iter()
                    .find(|g| g.matches(path))
                    .map(|g| g.as_str().to_string())
            };
            // (severity, message, the pattern that matched, the alert key), built for a hit
            // only (most files are none). The key: once per persistence file, and once per
            // host mount for other writes through it.
            let file_key = || format!("{i}|{}|{}|{}", event.node, chain.container_id, f.path);
            let found = if let Some((host_path, src, _)) = &host {
                if let Some(g) = hit(host_path) {
                    Some((
                        p.host_severity.unwrap_or(self.rules.rules[i].severity),
                        format!(
                            "{} created {host_path} on the host (as {} through the host-path mount {src})",
                            proc_.binary, f.path
                        ),
                        Some(g),
                        file_key(),
                    ))
                } else if p.any_host_mount_write {
                    Some((
                        p.host_mount_write_severity
                            .unwrap_or(self.rules.rules[i].severity),
                        format!(
                            "{} created {host_path} on the host through the host-path mount {src}",
                            proc_.binary
                        ),
                        None,
                        format!("{i}|{}|{}|mount {src}", event.node, chain.container_id),
                    ))
                } else {
                    None
                }
            } else {
                hit(&f.path).map(|g| {
                    (
                        self.rules.rules[i].severity,
                        format!(
                            "{} created {}, a persistence location",
                            proc_.binary, f.path
                        ),
                        Some(g),
                        file_key(),
                    )
                })
            };
            let Some((severity, message, pattern, key)) = found else {
                continue;
            };
            if !self.first_time(key) {
                continue;
            }
            let mut details = BTreeMap::from([("path".to_string(), f.path.clone())]);
            if let Some((host_path, src, dst)) = &host {
                details.insert("host_path".into(), host_path.clone());
                details.insert("host_mount".into(), format!("{src} -> {dst}"));
            }
            if let Some(g) = pattern {
                details.insert("pattern".into(), g);
            }
            findings.push(finding(i, severity, message, details, vec![stored.clone()]));
        }

        // Rule 8: files a CronJob creates, by processes it executed (not the runtime's setup
        // of the container, whose paths are the host's and differ in every run). By event
        // time, not arrival: the runtime's init process becomes the container's first process
        // by exec, and the sensor may deliver its setup's events after that exec (they wait
        // for the container's metadata separately when the init had not yet joined every
        // cgroup hierarchy).
        if self
            .processes
            .get(&proc_.exec_id)
            .is_some_and(|p| p.first_exec_unix_nano <= event.time_unix_nano)
        {
            let item = vec![format!("file {}", names::normalize_path(&f.path))];
            self.baseline(stored, &chain, &item, finding, out, findings);
        }
    }

    /// The process of an exec or file event, then its parents as far as they are known.
    fn ancestry_of(&self, stored: &pb::StoredEvent) -> Vec<pb::AlertProcess> {
        match stored.event.as_ref().and_then(|e| e.kind.as_ref()) {
            Some(pb::event::Kind::ProcessExec(e)) => {
                let p = e.process.clone().unwrap_or_default();
                let me = pb::AlertProcess {
                    exec_id: p.exec_id,
                    pid: p.pid,
                    binary: names::exe_path(e),
                    args: e.args.clone(),
                    uid: p.uid,
                    partial: false,
                };
                state::ancestry(&self.processes, me, &p.parent_exec_id, e.parent.as_ref())
            }
            Some(pb::event::Kind::FileCreated(f)) => {
                let p = f.process.clone().unwrap_or_default();
                let known = self.processes.get(&p.exec_id);
                let parent_exec_id = known
                    .map(|k| k.parent_exec_id.clone())
                    .unwrap_or_else(|| p.parent_exec_id.clone());
                let me = pb::AlertProcess {
                    args: known.map(|k| k.args.clone()).unwrap_or_default(),
                    exec_id: p.exec_id,
                    pid: p.pid,
                    binary: p.binary,
                    uid: p.uid,
                    partial: false,
                };
                state::ancestry(&self.processes, me, &parent_exec_id, None)
            }
            _ => Vec::new(),
        }
    }

    /// A finding as an alert, unless an exception covers it.
    fn alert(&self, f: Finding) -> Option<pb::Alert> {
        let rule: &Rule = &self.rules.rules[f.rule];
        let subject = Subject {
            rule: &rule.id,
            namespace: &f.chain.namespace,
            image: &f.chain.image,
            cronjob: &f.chain.cronjob,
            binary: &f.binary,
        };
        if self.rules.exceptions.iter().any(|x| x.covers(&subject)) {
            self.counters.suppressed.fetch_add(1, Ordering::Relaxed);
            return None;
        }
        self.counters.alerts[f.severity as usize].fetch_add(1, Ordering::Relaxed);
        Some(pb::Alert {
            id: 0,
            time_unix_nano: f.time,
            rule: Some(rule.to_pb()),
            severity: f.severity.to_pb() as i32,
            message: f.message,
            node: f.chain.node,
            namespace: f.chain.namespace,
            cronjob: f.chain.cronjob,
            job: f.chain.job,
            pod: f.chain.pod,
            container_id: f.chain.container_id,
            container_name: f.chain.container_name,
            image: f.chain.image,
            workload: f.chain.workload,
            ancestry: if f.ancestry {
                f.evidence
                    .last()
                    .map(|e| self.ancestry_of(e))
                    .unwrap_or_default()
            } else {
                Vec::new()
            },
            evidence: f.evidence,
            details: f.details.into_iter().collect(),
        })
    }
}

fn in_scope(scope: Scope, chain: &Chain) -> bool {
    match scope {
        Scope::Jobs => chain.is_job(),
        Scope::Containers => chain.is_container(),
        Scope::All => true,
    }
}

#[cfg(test)]
mod tests;
