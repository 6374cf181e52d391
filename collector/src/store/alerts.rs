//! Alerts and the detection engine's memory in the store: `alerts` (the prost encoding in
//! `body`, the facts `ListAlerts` filters on in columns), `detection_seen` (workloads already
//! alerted on), `cronjob_runs` and `baseline_items` (the per-CronJob baselines).

use jobwatch_proto::v1 as pb;
use prost::Message;
use rusqlite::{params, params_from_iter, types::Value};

use super::{Store, StoreError, marks};
use crate::detect::{Change, Output, Persisted};

pub(super) const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS alerts(
    id INTEGER PRIMARY KEY,
    time_unix_nano INTEGER NOT NULL,
    rule TEXT NOT NULL,
    severity INTEGER NOT NULL,
    node TEXT NOT NULL,
    namespace TEXT NOT NULL,
    cronjob TEXT NOT NULL,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS alerts_time ON alerts(time_unix_nano);
CREATE TABLE IF NOT EXISTS detection_seen(
    key TEXT PRIMARY KEY,
    first_seen_unix_nano INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS cronjob_runs(
    cronjob TEXT NOT NULL,
    job TEXT NOT NULL,
    ordinal INTEGER NOT NULL,
    scheduled_minutes INTEGER,
    PRIMARY KEY(cronjob, job)
);
CREATE TABLE IF NOT EXISTS baseline_items(
    cronjob TEXT NOT NULL,
    item TEXT NOT NULL,
    run INTEGER NOT NULL,
    PRIMARY KEY(cronjob, item)
);
";

/// A query of stored alerts.
#[derive(Debug, Clone, Default)]
pub struct AlertQuery {
    /// Lowest severity (protobuf value; 0 for any).
    pub min_severity: i32,
    /// Rule ids (any when empty).
    pub rules: Vec<String>,
    /// Namespaces (any when empty).
    pub namespaces: Vec<String>,
    /// CronJobs (any when empty).
    pub cronjobs: Vec<String>,
    /// Nodes (any when empty).
    pub nodes: Vec<String>,
    /// Time range (0: unbounded).
    pub since_unix_nano: i64,
    /// Time range (0: unbounded).
    pub until_unix_nano: i64,
    /// Most returned.
    pub limit: usize,
    /// Only ids above this.
    pub after_id: u64,
}

impl Store {
    /// The engine's memory, as stored.
    pub fn detection_state(&self) -> Result<Persisted, StoreError> {
        let guard = self.lock();
        let conn = &guard.conn;
        let seen = conn
            .prepare("SELECT key FROM detection_seen")?
            .query_map([], |r| r.get::<_, String>(0))?
            .collect::<Result<Vec<_>, _>>()?;
        let runs = conn
            .prepare("SELECT cronjob, job, ordinal, scheduled_minutes FROM cronjob_runs")?
            .query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    r.get::<_, String>(1)?,
                    r.get::<_, i64>(2)?.clamp(0, i64::from(u32::MAX)) as u32,
                    r.get::<_, Option<i64>>(3)?.map(|m| m.max(0) as u64),
                ))
            })?
            .collect::<Result<Vec<_>, _>>()?;
        let items = conn
            .prepare("SELECT cronjob, item FROM baseline_items")?
            .query_map([], |r| Ok((r.get::<_, String>(0)?, r.get::<_, String>(1)?)))?
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Persisted { seen, runs, items })
    }

    /// Stores what the engine produced in one transaction and gives each alert its id.
    pub fn record_detection(
        &self,
        output: &mut Output,
        now_unix_nano: i64,
    ) -> Result<(), StoreError> {
        if output.alerts.is_empty() && output.seen.is_empty() && output.changes.is_empty() {
            return Ok(());
        }
        let mut guard = self.lock();
        let tx = guard.conn.transaction()?;
        {
            let mut seen = tx.prepare_cached(
                "INSERT OR IGNORE INTO detection_seen(key, first_seen_unix_nano) VALUES (?1, ?2)",
            )?;
            for key in &output.seen {
                seen.execute(params![key, now_unix_nano])?;
            }
            let mut run = tx.prepare_cached(
                "INSERT OR IGNORE INTO cronjob_runs(cronjob, job, ordinal, scheduled_minutes)
                 VALUES (?1, ?2, ?3, ?4)",
            )?;
            let mut item = tx.prepare_cached(
                "INSERT OR IGNORE INTO baseline_items(cronjob, item, run) VALUES (?1, ?2, ?3)",
            )?;
            for c in &output.changes {
                match c {
                    Change::Run(cj, job, ordinal, minutes) => {
                        run.execute(params![cj, job, ordinal, minutes.map(|m| m as i64)])?;
                    }
                    Change::Item(cj, it, ordinal) => {
                        item.execute(params![cj, it, ordinal])?;
                    }
                }
            }
            let mut insert = tx.prepare_cached(
                "INSERT INTO alerts(time_unix_nano, rule, severity, node, namespace, cronjob, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
            )?;
            for a in &mut output.alerts {
                // The body is encoded without its id; reads set it from the row.
                a.id = 0;
                insert.execute(params![
                    a.time_unix_nano,
                    a.rule.as_ref().map(|r| r.id.as_str()).unwrap_or(""),
                    a.severity,
                    a.node,
                    a.namespace,
                    a.cronjob,
                    a.encode_to_vec(),
                ])?;
                a.id = tx.last_insert_rowid() as u64;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Stored alerts matching the query, oldest (lowest id) first.
    pub fn alerts(&self, q: &AlertQuery) -> Result<Vec<pb::Alert>, StoreError> {
        let mut conds = vec!["id > ?".to_string()];
        let mut args: Vec<Value> = vec![Value::Integer(q.after_id.min(i64::MAX as u64) as i64)];
        if q.min_severity > 0 {
            conds.push("severity >= ?".into());
            args.push(Value::Integer(i64::from(q.min_severity)));
        }
        if q.since_unix_nano != 0 {
            conds.push("time_unix_nano >= ?".into());
            args.push(Value::Integer(q.since_unix_nano));
        }
        if q.until_unix_nano != 0 {
            conds.push("time_unix_nano <= ?".into());
            args.push(Value::Integer(q.until_unix_nano));
        }
        for (col, vals) in [
            ("rule", &q.rules),
            ("namespace", &q.namespaces),
            ("cronjob", &q.cronjobs),
            ("node", &q.nodes),
        ] {
            if !vals.is_empty() {
                conds.push(format!("{col} IN ({})", marks(vals.len())));
                args.extend(vals.iter().map(|v| Value::Text(v.clone())));
            }
        }
        let sql = format!(
            "SELECT id, body FROM alerts WHERE {} ORDER BY id LIMIT {}",
            conds.join(" AND "),
            q.limit
        );
        self.read(|conn| {
            let mut stmt = conn.prepare(&sql)?;
            let rows = stmt.query_map(params_from_iter(args), |r| {
                Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
            })?;
            let mut out = Vec::new();
            for row in rows {
                let (id, body) = row?;
                let mut a = pb::Alert::decode(body.as_slice())
                    .map_err(|source| StoreError::Decode { id, source })?;
                a.id = id as u64;
                out.push(a);
            }
            Ok(out)
        })
    }
}
