//! Per-CronJob memory: the runs (Jobs) seen, in order, and the baseline of what the runs did
//! (binaries executed, files created, parent/child shapes). Loaded from the store at start;
//! every change is handed back to be stored, so a collector restart forgets nothing.

use std::collections::{HashMap, HashSet};

/// A CronJob's identity: `namespace/name`.
pub type CronJobKey = String;

/// A change to persist.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A new run of a CronJob: (cronjob, job, ordinal, scheduled minutes since the epoch).
    Run(CronJobKey, String, u32, Option<u64>),
    /// A new baseline item: (cronjob, item, ordinal of the run that added it).
    Item(CronJobKey, String, u32),
}

#[derive(Debug, Default)]
struct CronJob {
    /// Job name -> (ordinal, 1-based; scheduled minutes).
    runs: HashMap<String, (u32, Option<u64>)>,
    items: HashSet<String>,
}

/// What happened to one item.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// In the baseline already.
    Known,
    /// Learned (the run is within the learning period).
    Learned,
    /// New after the learning period (and now learned, when there was room).
    New,
}

/// Every CronJob's runs and baseline.
#[derive(Debug, Default)]
pub struct Baselines {
    cronjobs: HashMap<CronJobKey, CronJob>,
    /// Items not kept because a baseline was full.
    pub items_dropped: u64,
    /// Runs not tracked because too many CronJobs have baselines.
    pub cronjobs_dropped: u64,
}

impl Baselines {
    /// Restores persisted runs.
    pub fn load_run(&mut self, cronjob: &str, job: &str, ordinal: u32, minutes: Option<u64>) {
        self.cronjobs
            .entry(cronjob.to_string())
            .or_default()
            .runs
            .insert(job.to_string(), (ordinal, minutes));
    }

    /// Restores a persisted item.
    pub fn load_item(&mut self, cronjob: &str, item: &str) {
        self.cronjobs
            .entry(cronjob.to_string())
            .or_default()
            .items
            .insert(item.to_string());
    }

    /// The ordinal of `job` among the CronJob's runs, assigning the next one to a new job
    /// (`None` when no room is left for another CronJob). The second value is true for a new
    /// run.
    pub fn run(
        &mut self,
        cronjob: &str,
        job: &str,
        minutes: Option<u64>,
        max_cronjobs: usize,
        changes: &mut Vec<Change>,
    ) -> Option<(u32, bool)> {
        if !self.cronjobs.contains_key(cronjob) && self.cronjobs.len() >= max_cronjobs {
            self.cronjobs_dropped += 1;
            return None;
        }
        let c = self.cronjobs.entry(cronjob.to_string()).or_default();
        if let Some((ordinal, _)) = c.runs.get(job) {
            return Some((*ordinal, false));
        }
        let ordinal = u32::try_from(c.runs.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        c.runs.insert(job.to_string(), (ordinal, minutes));
        changes.push(Change::Run(
            cronjob.to_string(),
            job.to_string(),
            ordinal,
            minutes,
        ));
        Some((ordinal, true))
    }

    /// Scheduled minutes of the CronJob's run just before `ordinal`.
    pub fn previous_minutes(&self, cronjob: &str, ordinal: u32) -> Option<u64> {
        let c = self.cronjobs.get(cronjob)?;
        c.runs
            .values()
            .find(|(o, _)| *o + 1 == ordinal)
            .and_then(|(_, m)| *m)
    }

    /// Records that run `ordinal` did `item`.
    pub fn observe(
        &mut self,
        cronjob: &str,
        item: &str,
        ordinal: u32,
        learning_runs: u32,
        max_items: usize,
        changes: &mut Vec<Change>,
    ) -> Seen {
        let c = self.cronjobs.entry(cronjob.to_string()).or_default();
        if c.items.contains(item) {
            return Seen::Known;
        }
        let seen = if ordinal <= learning_runs {
            Seen::Learned
        } else {
            Seen::New
        };
        if c.items.len() >= max_items {
            self.items_dropped += 1;
        } else {
            c.items.insert(item.to_string());
            changes.push(Change::Item(cronjob.to_string(), item.to_string(), ordinal));
        }
        seen
    }

    /// Items of a CronJob's baseline.
    #[cfg(test)]
    pub fn items(&self, cronjob: &str) -> usize {
        self.cronjobs.get(cronjob).map_or(0, |c| c.items.len())
    }
}

/// Scheduled minutes since the epoch from a CronJob's Job name (`<cronjob>-<minutes>`, as the
/// CronJob controller names them).
pub fn job_minutes(cronjob: &str, job: &str) -> Option<u64> {
    job.strip_prefix(cronjob)?
        .strip_prefix('-')?
        .parse::<u64>()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn runs_learn_then_report_new_items_once() {
        let mut b = Baselines::default();
        let mut ch = Vec::new();
        assert_eq!(
            b.run("ns/c", "c-100", Some(100), 10, &mut ch),
            Some((1, true))
        );
        assert_eq!(
            b.run("ns/c", "c-100", Some(100), 10, &mut ch),
            Some((1, false))
        );
        assert_eq!(
            b.observe("ns/c", "exec /bin/date", 1, 2, 10, &mut ch),
            Seen::Learned
        );
        assert_eq!(
            b.run("ns/c", "c-101", Some(101), 10, &mut ch),
            Some((2, true))
        );
        assert_eq!(b.previous_minutes("ns/c", 2), Some(100));
        assert_eq!(
            b.observe("ns/c", "exec /bin/date", 2, 2, 10, &mut ch),
            Seen::Known
        );
        assert_eq!(
            b.run("ns/c", "c-102", Some(102), 10, &mut ch),
            Some((3, true))
        );
        assert_eq!(
            b.observe("ns/c", "exec /bin/sh", 3, 2, 10, &mut ch),
            Seen::New
        );
        assert_eq!(
            b.observe("ns/c", "exec /bin/sh", 3, 2, 10, &mut ch),
            Seen::Known
        );
        assert_eq!(
            ch,
            vec![
                Change::Run("ns/c".into(), "c-100".into(), 1, Some(100)),
                Change::Item("ns/c".into(), "exec /bin/date".into(), 1),
                Change::Run("ns/c".into(), "c-101".into(), 2, Some(101)),
                Change::Run("ns/c".into(), "c-102".into(), 3, Some(102)),
                Change::Item("ns/c".into(), "exec /bin/sh".into(), 3),
            ]
        );
    }

    #[test]
    fn bounded_items_and_cronjobs() {
        let mut b = Baselines::default();
        let mut ch = Vec::new();
        assert!(b.run("ns/a", "a-1", None, 1, &mut ch).is_some());
        assert_eq!(b.run("ns/b", "b-1", None, 1, &mut ch), None);
        assert_eq!(b.cronjobs_dropped, 1);
        assert_eq!(b.observe("ns/a", "x", 1, 2, 1, &mut ch), Seen::Learned);
        assert_eq!(b.observe("ns/a", "y", 1, 2, 1, &mut ch), Seen::Learned);
        assert_eq!(b.items("ns/a"), 1);
        assert_eq!(b.items_dropped, 1);
        // A new item of a full baseline is still reported, every time.
        assert_eq!(b.observe("ns/a", "z", 3, 2, 1, &mut ch), Seen::New);
        assert_eq!(b.observe("ns/a", "z", 4, 2, 1, &mut ch), Seen::New);
    }

    #[test]
    fn job_names_give_minutes() {
        assert_eq!(job_minutes("backup", "backup-29391820"), Some(29_391_820));
        assert_eq!(job_minutes("backup", "backup-manual"), None);
        assert_eq!(job_minutes("backup", "other-1"), None);
    }
}
