//! The event store: one SQLite database (WAL, `synchronous=NORMAL`).
//!
//! `events` holds every stored event (its prost encoding in `body`, the facts filters use in
//! columns); `containers` the last known state of each container of each node; `runs` the
//! highest stored (and acknowledged) sequence number of each sensor run, so that the ack state
//! and de-duplication survive a restart. All methods are blocking: call them from a blocking
//! thread (`tokio::task::spawn_blocking`). A batch is written in one transaction, together with
//! its run's new `last_seq`.

use std::{
    collections::HashMap,
    path::{Path, PathBuf},
    sync::{Mutex, MutexGuard},
};

use jobwatch_proto::v1 as pb;
use prost::Message;
use rusqlite::{Connection, OpenFlags, OptionalExtension, params, params_from_iter, types::Value};

use crate::filter::{Compiled, Facts, Filter};

mod alerts;
mod schema;
pub use alerts::AlertQuery;

/// Default number of events kept.
pub const DEFAULT_MAX_EVENTS: u64 = 10_000_000;
/// Default age of the oldest event kept, seconds (7 days).
pub const DEFAULT_MAX_AGE_SECS: u64 = 7 * 24 * 3600;
/// Most events one retention pass deletes.
pub const RETENTION_BATCH: u64 = 10_000;
/// Default number of events a query returns.
pub const DEFAULT_QUERY_LIMIT: usize = 1000;
/// Most events a query returns.
pub const MAX_QUERY_LIMIT: usize = 10_000;

/// The version of the schema below, kept in the database's `user_version`. Version 1 (0 in
/// `user_version`: it did not set it) had a TEXT `run_id` in every event, `UNIQUE(run_id, seq)`
/// and an `events_node_time` index; [`Store::open`] migrates such a database once.
pub const SCHEMA_VERSION: i64 = 2;

/// `events` carries no uniqueness constraint: a run's events arrive in sequence order (the
/// sensor sends them so, and re-sends from its oldest unacknowledged one), so an event whose seq
/// is at or below the highest stored seq of its run (`runs.last_seq`, written in the same
/// transaction as the events) is a re-send. `events.run` is the `runs` row id. Queries by node
/// walk the primary key (they return events in id order) or `events_time` when a time range
/// is given.
const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    run INTEGER NOT NULL,
    seq INTEGER NOT NULL,
    time_unix_nano INTEGER NOT NULL,
    kind INTEGER NOT NULL,
    namespace TEXT,
    pod TEXT,
    workload_kind INTEGER,
    workload TEXT,
    cronjob TEXT,
    container_id TEXT,
    binary TEXT,
    body BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events(time_unix_nano);
CREATE TABLE IF NOT EXISTS containers(
    node TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    updated_unix_nano INTEGER NOT NULL,
    exited_unix_nano INTEGER,
    PRIMARY KEY(node, id)
);
CREATE TABLE IF NOT EXISTS runs(
    id INTEGER PRIMARY KEY,
    sensor TEXT NOT NULL,
    run_id TEXT NOT NULL UNIQUE,
    last_seq INTEGER,
    last_seen INTEGER NOT NULL
);
";

/// Errors of the store.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The database could not be opened or set up.
    #[error("opening the database {path}: {source}")]
    Open {
        /// The database path.
        path: PathBuf,
        /// What SQLite said.
        source: rusqlite::Error,
    },
    /// A statement failed.
    #[error("database: {0}")]
    Sql(#[from] rusqlite::Error),
    /// The database file has a schema this collector does not know.
    #[error(
        "the database {path} has schema version {found}, newer than this collector's \
         ({SCHEMA_VERSION}): run the collector version that wrote it, or move the file aside to \
         start with an empty database"
    )]
    NewerSchema {
        /// The database path.
        path: PathBuf,
        /// Its `user_version`.
        found: i64,
    },
    /// The database file is not one of this collector's (nor of an earlier version).
    #[error(
        "the database {path} is not a jobwatch collector database ({problem}): point db_path \
         at another file, or move this one aside"
    )]
    Foreign {
        /// The database path.
        path: PathBuf,
        /// What does not fit.
        problem: String,
    },
    /// An event did not encode (prost refuses only a full buffer; ours grows).
    #[error("encoding an event: {0}")]
    Encode(#[from] prost::EncodeError),
    /// A stored body did not decode.
    #[error("stored event {id} does not decode: {source}")]
    Decode {
        /// The event's id.
        id: i64,
        /// What prost said.
        source: prost::DecodeError,
    },
}

/// Retention limits.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Retention {
    /// Most events kept (the oldest beyond are deleted).
    pub max_events: u64,
    /// Oldest event kept, seconds (by the event's time).
    pub max_age_secs: u64,
}

impl Default for Retention {
    fn default() -> Self {
        Retention {
            max_events: DEFAULT_MAX_EVENTS,
            max_age_secs: DEFAULT_MAX_AGE_SECS,
        }
    }
}

/// An event as a sensor sent it: decoded, and the bytes it came in.
#[derive(Clone, Debug, PartialEq)]
pub struct Received {
    pub event: pb::Event,
    /// Its encoding as received, stored as it is (`None`: encode `event`).
    pub body: Option<bytes::Bytes>,
}

impl From<pb::Event> for Received {
    fn from(event: pb::Event) -> Received {
        Received { event, body: None }
    }
}

/// What storing a batch did.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct BatchOutcome {
    /// The sequence number to acknowledge.
    pub ack_seq: u64,
    /// The events newly stored, with their ids, in order.
    pub stored: Vec<pb::StoredEvent>,
    /// Events already stored (re-sent).
    pub duplicates: u64,
}

/// A query of stored events.
#[derive(Clone, Debug, Default)]
pub struct Query {
    /// Oldest event time, ns (0: unbounded).
    pub since_unix_nano: i64,
    /// Newest event time, ns (0: unbounded).
    pub until_unix_nano: i64,
    /// Only these nodes (any, when empty).
    pub nodes: Vec<String>,
    /// Allow and deny lists.
    pub filter: Compiled,
    /// Most events returned.
    pub limit: usize,
    /// Only events with a larger id.
    pub after_id: u64,
}

/// The last report of one sensor.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SensorRow {
    /// Sensor name.
    pub sensor: String,
    /// Its latest run.
    pub run_id: String,
    /// Highest acknowledged sequence number of that run.
    pub last_seq: u64,
    /// When it last reported, ns since the epoch.
    pub last_seen_unix_nano: i64,
}

/// What the store knows of one sensor run (mirrors its `runs` row).
#[derive(Clone, Copy, Debug)]
struct Run {
    /// The `runs` row id (`events.run`).
    key: i64,
    /// Highest stored seq; None before the run's first event.
    last_seq: Option<u64>,
}

struct Inner {
    conn: Connection,
    /// Every run, by run id.
    runs: HashMap<String, Run>,
    /// Events in the table now.
    events: u64,
    /// Scratch buffer for event bodies (one allocation for the life of the store).
    body: Vec<u8>,
}

/// The store; share it behind an `Arc`.
pub struct Store {
    inner: Mutex<Inner>,
    /// A second, read-only connection for queries, so that a long query does not hold up
    /// writes (WAL lets them run side by side). None for an in-memory database.
    reader: Option<Mutex<Connection>>,
    retention: Retention,
}

impl std::fmt::Debug for Store {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Store")
            .field("retention", &self.retention)
            .finish_non_exhaustive()
    }
}

fn seq_sql(seq: u64) -> i64 {
    seq as i64
}

fn seq_of(v: i64) -> u64 {
    v as u64
}

impl Store {
    /// Opens (creating when needed) the database at `path` (`:memory:` for a private
    /// in-memory one).
    pub fn open(path: &Path, retention: Retention) -> Result<Store, StoreError> {
        let open_err = |source| StoreError::Open {
            path: path.to_path_buf(),
            source,
        };
        let conn = Connection::open(path).map_err(open_err)?;
        // 16 KiB pages for a new file (an existing file keeps its own): fewer pages per event
        // to balance, write to the WAL and checkpoint (measured with the store_ingest example:
        // docs/performance.md).
        conn.execute_batch("PRAGMA page_size=16384")
            .map_err(open_err)?;
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .map_err(open_err)?;
        let page_size: i64 = conn
            .query_row("PRAGMA page_size", [], |r| r.get(0))
            .map_err(open_err)?;
        // Ingest: a larger page cache keeps the index pages that every insert touches in
        // memory, and a larger WAL checkpoint threshold (32 MiB instead of 1000 pages) copies
        // a page rewritten by many batches back to the database once instead of many times
        // (measured in docs/performance.md).
        conn.execute_batch(&format!(
            "PRAGMA synchronous=NORMAL; PRAGMA cache_size=-32768; PRAGMA wal_autocheckpoint={};",
            (32 << 20) / page_size.max(512)
        ))
        .map_err(open_err)?;
        schema::prepare(&conn, path)?;
        conn.execute_batch(alerts::SCHEMA).map_err(open_err)?;
        let runs = {
            let mut stmt = conn
                .prepare("SELECT run_id, id, last_seq FROM runs")
                .map_err(open_err)?;
            stmt.query_map([], |r| {
                Ok((
                    r.get::<_, String>(0)?,
                    Run {
                        key: r.get(1)?,
                        last_seq: r.get::<_, Option<i64>>(2)?.map(seq_of),
                    },
                ))
            })
            .map_err(open_err)?
            .collect::<Result<HashMap<_, _>, _>>()
            .map_err(open_err)?
        };
        let events: i64 = conn
            .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
            .map_err(open_err)?;
        let reader = if path == Path::new(":memory:") {
            None
        } else {
            let r = Connection::open_with_flags(
                path,
                OpenFlags::SQLITE_OPEN_READ_ONLY | OpenFlags::SQLITE_OPEN_NO_MUTEX,
            )
            .map_err(open_err)?;
            Some(Mutex::new(r))
        };
        Ok(Store {
            inner: Mutex::new(Inner {
                conn,
                runs,
                events: events.max(0) as u64,
                body: Vec::new(),
            }),
            reader,
            retention,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `f` on the read connection (the writer's, for an in-memory database).
    fn read<T>(&self, f: impl FnOnce(&Connection) -> T) -> T {
        match &self.reader {
            Some(r) => f(&r.lock().unwrap_or_else(|p| p.into_inner())),
            None => f(&self.lock().conn),
        }
    }

    /// The highest acknowledged seq of a run (0 when unknown).
    pub fn acked(&self, run_id: &str) -> u64 {
        self.lock()
            .runs
            .get(run_id)
            .and_then(|r| r.last_seq)
            .unwrap_or(0)
    }

    /// Stores a validated batch in one transaction. Re-sent events are ignored (counted as
    /// duplicates): the events of a run arrive in sequence order, so an event whose seq is not
    /// above the highest stored seq of its run is one. The ack is that highest seq: a jump in
    /// sequence numbers is accepted (the sensor reports such losses itself as `LostEvents`).
    pub fn insert_batch(
        &self,
        sensor: &str,
        run_id: &str,
        events: Vec<impl Into<Received>>,
        now_unix_nano: i64,
    ) -> Result<BatchOutcome, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let known = inner.runs.get(run_id).copied();
        let mut last_seq = known.and_then(|r| r.last_seq);
        let mut out = BatchOutcome {
            stored: Vec::with_capacity(events.len()),
            ..BatchOutcome::default()
        };
        let body = &mut inner.body;
        let tx = inner.conn.transaction()?;
        let key = {
            let key = match known {
                Some(r) => r.key,
                None => {
                    tx.prepare_cached(
                        "INSERT INTO runs(sensor, run_id, last_seq, last_seen)
                         VALUES (?1, ?2, NULL, ?3)",
                    )?
                    .execute(params![sensor, run_id, now_unix_nano])?;
                    tx.last_insert_rowid()
                }
            };
            let mut insert = tx.prepare_cached(
                "INSERT INTO events(node, run, seq, time_unix_nano, kind, namespace, pod,
                 workload_kind, workload, cronjob, container_id, binary, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13)",
            )?;
            let mut upsert = tx.prepare_cached(
                "INSERT INTO containers(node, id, body, updated_unix_nano, exited_unix_nano)
                 VALUES (?1, ?2, ?3, ?4, NULL)
                 ON CONFLICT(node, id) DO UPDATE SET body = excluded.body,
                 updated_unix_nano = excluded.updated_unix_nano, exited_unix_nano = NULL",
            )?;
            let mut exited = tx.prepare_cached(
                "UPDATE containers SET exited_unix_nano = ?3, updated_unix_nano = ?3
                 WHERE node = ?1 AND id = ?2",
            )?;
            for received in events {
                let Received {
                    mut event,
                    body: received_body,
                } = received.into();
                if last_seq.is_some_and(|last| event.seq <= last) {
                    out.duplicates += 1;
                    continue;
                }
                last_seq = Some(event.seq);
                // The bytes as received, unless the collector completes the event (a sensor
                // that leaves its node out); decoding and encoding again cost about a tenth of
                // the collector's CPU per event.
                let stored_body: &[u8] = match &received_body {
                    Some(b) if !event.node.is_empty() => b,
                    _ => {
                        if event.node.is_empty() {
                            event.node = sensor.to_owned();
                        }
                        body.clear();
                        event.encode(body)?;
                        body.as_slice()
                    }
                };
                let f = Facts::of(&event);
                insert.execute(params![
                    sensor,
                    key,
                    seq_sql(event.seq),
                    event.time_unix_nano,
                    f.kind.map_or(0, |k| k as i32),
                    f.namespace,
                    f.pod_name,
                    f.workload_kind,
                    f.workload_name,
                    f.cronjob,
                    f.container_id,
                    f.binary,
                    stored_body,
                ])?;
                let id = tx.last_insert_rowid();
                match &event.kind {
                    Some(pb::event::Kind::ContainerCreated(c)) => {
                        if let Some(c) = &c.container {
                            upsert.execute(params![
                                sensor,
                                c.id,
                                c.encode_to_vec(),
                                event.time_unix_nano
                            ])?;
                        }
                    }
                    Some(pb::event::Kind::ContainerExited(c)) => {
                        if let Some(c) = &c.container {
                            exited.execute(params![sensor, c.id, event.time_unix_nano])?;
                        }
                    }
                    _ => {}
                }
                out.stored.push(pb::StoredEvent {
                    id: id as u64,
                    event: Some(event),
                });
            }
            tx.prepare_cached(
                "UPDATE runs SET sensor = ?2, last_seq = ?3, last_seen = ?4 WHERE id = ?1",
            )?
            .execute(params![key, sensor, last_seq.map(seq_sql), now_unix_nano])?;
            key
        };
        tx.commit()?;
        if inner.body.capacity() > 1 << 20 {
            // One huge event does not keep its buffer for the life of the store.
            inner.body = Vec::new();
        }
        match inner.runs.get_mut(run_id) {
            Some(r) => r.last_seq = last_seq,
            None => {
                inner.runs.insert(run_id.to_owned(), Run { key, last_seq });
            }
        }
        inner.events += out.stored.len() as u64;
        out.ack_seq = last_seq.unwrap_or(0);
        Ok(out)
    }

    /// Events matching the query, oldest (lowest id) first.
    pub fn query(&self, q: &Query) -> Result<Vec<pb::StoredEvent>, StoreError> {
        let limit = q.limit.clamp(1, MAX_QUERY_LIMIT);
        let mut conds = vec!["id > ?".to_owned()];
        let mut base: Vec<Value> = Vec::new();
        if q.since_unix_nano != 0 {
            conds.push("time_unix_nano >= ?".into());
            base.push(Value::Integer(q.since_unix_nano));
        }
        if q.until_unix_nano != 0 {
            conds.push("time_unix_nano <= ?".into());
            base.push(Value::Integer(q.until_unix_nano));
        }
        if !q.nodes.is_empty() {
            conds.push(format!("node IN ({})", marks(q.nodes.len())));
            base.extend(q.nodes.iter().map(|n| Value::Text(n.clone())));
        }
        if let [only] = q.filter.allow.as_slice() {
            prefilter(only, &mut conds, &mut base);
        }
        let sql = format!(
            "SELECT id, body FROM events WHERE {} ORDER BY id LIMIT ?",
            conds.join(" AND ")
        );
        let chunk = limit.max(256);
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(&sql)?;
            let mut out = Vec::new();
            let mut cursor = q.after_id as i64;
            loop {
                let mut args = Vec::with_capacity(base.len() + 2);
                args.push(Value::Integer(cursor));
                args.extend(base.iter().cloned());
                args.push(Value::Integer(chunk as i64));
                let rows = stmt
                    .query_map(params_from_iter(args), |r| {
                        Ok((r.get::<_, i64>(0)?, r.get::<_, Vec<u8>>(1)?))
                    })?
                    .collect::<Result<Vec<_>, _>>()?;
                let fetched = rows.len();
                for (id, body) in rows {
                    cursor = id;
                    let event = pb::Event::decode(body.as_slice())
                        .map_err(|source| StoreError::Decode { id, source })?;
                    if q.filter.matches(&event) {
                        out.push(pb::StoredEvent {
                            id: id as u64,
                            event: Some(event),
                        });
                        if out.len() == limit {
                            return Ok(out);
                        }
                    }
                }
                if fetched < chunk {
                    return Ok(out);
                }
            }
        })
    }

    /// Containers not known to have exited, of the given nodes (all, when empty).
    pub fn containers(&self, nodes: &[String]) -> Result<Vec<pb::NodeContainer>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
            "SELECT node, body FROM containers WHERE exited_unix_nano IS NULL ORDER BY node, id",
        )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok((r.get::<_, String>(0)?, r.get::<_, Vec<u8>>(1)?))
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows
                .into_iter()
                .filter(|(node, _)| nodes.is_empty() || nodes.contains(node))
                .filter_map(|(node, body)| {
                    pb::Container::decode(body.as_slice())
                        .ok()
                        .map(|c| pb::NodeContainer {
                            node,
                            container: Some(c),
                        })
                })
                .collect())
        })
    }

    /// Events stored now.
    pub fn events_stored(&self) -> u64 {
        self.lock().events
    }

    /// Size of the database, bytes (`page_count * page_size`).
    pub fn store_bytes(&self) -> Result<u64, StoreError> {
        self.read(|conn| {
            let pages: i64 = conn.query_row("PRAGMA page_count", [], |r| r.get(0))?;
            let size: i64 = conn.query_row("PRAGMA page_size", [], |r| r.get(0))?;
            Ok((pages.max(0) as u64).saturating_mul(size.max(0) as u64))
        })
    }

    /// The latest run of every sensor, by name.
    pub fn sensors(&self) -> Result<Vec<SensorRow>, StoreError> {
        self.read(|conn| {
            let mut stmt = conn.prepare_cached(
                "SELECT sensor, run_id, ifnull(last_seq, 0), max(last_seen) FROM runs
                 GROUP BY sensor ORDER BY sensor",
            )?;
            let rows = stmt
                .query_map([], |r| {
                    Ok(SensorRow {
                        sensor: r.get(0)?,
                        run_id: r.get(1)?,
                        last_seq: seq_of(r.get(2)?),
                        last_seen_unix_nano: r.get(3)?,
                    })
                })?
                .collect::<Result<Vec<_>, _>>()?;
            Ok(rows)
        })
    }

    /// One retention pass: deletes events older than `max_age_secs`, then the oldest beyond
    /// `max_events`, at most [`RETENTION_BATCH`] in all. Returns how many it deleted.
    pub fn retention_pass(&self, now_unix_nano: i64) -> Result<u64, StoreError> {
        let mut guard = self.lock();
        let inner = &mut *guard;
        let age_ns = i64::try_from(self.retention.max_age_secs)
            .unwrap_or(i64::MAX)
            .saturating_mul(1_000_000_000);
        let cutoff = now_unix_nano.saturating_sub(age_ns);
        let mut deleted = inner.conn.execute(
            "DELETE FROM events WHERE id IN
             (SELECT id FROM events WHERE time_unix_nano < ?1 LIMIT ?2)",
            params![cutoff, RETENTION_BATCH as i64],
        )? as u64;
        inner.events = inner.events.saturating_sub(deleted);
        let excess = inner
            .events
            .saturating_sub(self.retention.max_events)
            .min(RETENTION_BATCH - deleted);
        if excess > 0 {
            let n = inner.conn.execute(
                "DELETE FROM events WHERE id IN (SELECT id FROM events ORDER BY id LIMIT ?1)",
                params![excess as i64],
            )? as u64;
            inner.events = inner.events.saturating_sub(n);
            deleted += n;
        }
        Ok(deleted)
    }

    /// The stored event with this id, if any.
    pub fn get(&self, id: u64) -> Result<Option<pb::Event>, StoreError> {
        self.read(|conn| {
            let body: Option<Vec<u8>> = conn
                .query_row(
                    "SELECT body FROM events WHERE id = ?1",
                    params![id as i64],
                    |r| r.get(0),
                )
                .optional()?;
            body.map(|b| {
                pb::Event::decode(b.as_slice()).map_err(|source| StoreError::Decode {
                    id: id as i64,
                    source,
                })
            })
            .transpose()
        })
    }
}

fn marks(n: usize) -> String {
    vec!["?"; n].join(", ")
}

/// `s` with the `LIKE` wildcards escaped (escape character `\`).
fn like_prefix(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 1);
    for c in s.chars() {
        if matches!(c, '%' | '_' | '\\') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

/// SQL conditions that select a superset of what one allow filter matches (loss reports always
/// pass). The filter evaluator has the last word.
fn prefilter(f: &Filter, conds: &mut Vec<String>, args: &mut Vec<Value>) {
    let mut parts = Vec::new();
    let mut vals = Vec::new();
    let mut list = |col: &str, values: Vec<Value>| {
        if !values.is_empty() {
            parts.push(format!("{col} IN ({})", marks(values.len())));
            vals.extend(values);
        }
    };
    list(
        "kind",
        f.kinds.iter().map(|k| Value::Integer(*k as i64)).collect(),
    );
    let text = |v: &[String]| v.iter().map(|s| Value::Text(s.clone())).collect();
    list("namespace", text(&f.namespaces));
    list("pod", text(&f.pod_names));
    list(
        "workload_kind",
        f.workload_kinds
            .iter()
            .map(|k| Value::Integer(*k as i64))
            .collect(),
    );
    list("workload", text(&f.workload_names));
    list("cronjob", text(&f.cronjobs));
    for (col, prefixes) in [
        ("container_id", &f.container_ids),
        ("binary", &f.binary_prefixes),
    ] {
        if !prefixes.is_empty() {
            let ors = vec![format!("{col} LIKE ? || '%' ESCAPE '\\'"); prefixes.len()];
            parts.push(format!("({})", ors.join(" OR ")));
            vals.extend(prefixes.iter().map(|p| Value::Text(like_prefix(p))));
        }
    }
    if !parts.is_empty() {
        conds.push(format!(
            "(kind = {} OR ({}))",
            pb::EventKind::LostEvents as i32,
            parts.join(" AND ")
        ));
        args.extend(vals);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn exec(seq: u64, binary: &str) -> pb::Event {
        pb::Event {
            node: "n1".into(),
            time_unix_nano: seq as i64 * 10,
            seq,
            kind: Some(pb::event::Kind::ProcessExec(pb::ProcessExec {
                binary: binary.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    #[test]
    fn received_bytes_are_stored_as_they_came() {
        let s = Store::open(Path::new(":memory:"), Retention::default()).expect("open");
        let sent = exec(1, "/bin/a");
        // A field this collector does not know (tag 99) is kept: the body is not re-encoded.
        let mut body = sent.encode_to_vec();
        body.extend_from_slice(&[0x98, 0x06, 0x07]);
        let mut nodeless = exec(2, "/bin/b");
        nodeless.node.clear();
        let received = vec![
            Received {
                event: sent.clone(),
                body: Some(body.clone().into()),
            },
            Received {
                event: nodeless.clone(),
                body: Some(nodeless.encode_to_vec().into()),
            },
        ];
        let o = s.insert_batch("n9", "r1", received, 5).expect("insert");
        assert_eq!(o.stored.len(), 2);
        let bodies: Vec<Vec<u8>> = {
            let inner = s.lock();
            let mut stmt = inner
                .conn
                .prepare("SELECT body FROM events ORDER BY id")
                .expect("select");
            stmt.query_map([], |r| r.get(0))
                .expect("rows")
                .collect::<Result<_, _>>()
                .expect("bodies")
        };
        assert_eq!(bodies[0], body);
        // A sensor that leaves its node out gets the stream's sensor name, re-encoded.
        let completed = pb::Event {
            node: "n9".into(),
            ..nodeless
        };
        assert_eq!(bodies[1], completed.encode_to_vec());
        assert_eq!(o.stored[1].event.as_ref(), Some(&completed));
        assert_eq!(o.stored[0].event.as_ref(), Some(&sent));
    }

    #[test]
    fn a_large_batch_stores_every_row_with_its_own_id() {
        // A re-send in the middle, and a container created and exited in the same batch.
        let s = Store::open(Path::new(":memory:"), Retention::default()).expect("open");
        s.insert_batch("n1", "r0", vec![exec(1, "/before")], 1)
            .expect("first");
        let container = |seq: u64, created: bool| {
            let id = "c1".to_string();
            pb::Event {
                node: "n1".into(),
                time_unix_nano: seq as i64 * 10,
                seq,
                kind: Some(if created {
                    pb::event::Kind::ContainerCreated(pb::ContainerCreated {
                        container: Some(pb::Container {
                            id,
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                } else {
                    pb::event::Kind::ContainerExited(pb::ContainerExited {
                        container: Some(pb::ContainerRef {
                            id,
                            ..Default::default()
                        }),
                        ..Default::default()
                    })
                }),
                ..Default::default()
            }
        };
        let mut batch: Vec<pb::Event> = (1..=39).map(|i| exec(i, &format!("/bin/{i}"))).collect();
        batch.insert(20, exec(3, "/resent"));
        batch.push(container(100, true));
        batch.push(container(101, false));
        let sent = batch.len();
        let o = s.insert_batch("n1", "r1", batch, 2).expect("insert");
        assert_eq!((o.stored.len(), o.duplicates), (sent - 1, 1));
        assert_eq!(o.ack_seq, 101);
        for (i, stored) in o.stored.iter().enumerate() {
            // Ids follow the one event stored before, in batch order.
            assert_eq!(stored.id, i as u64 + 2, "row {i}");
            let got = s.get(stored.id).expect("get").expect("stored");
            assert_eq!(Some(got), stored.event, "row {i}");
        }
        assert_eq!(s.events_stored(), sent as u64);
        // The container's exit, later in the batch, is the state that stays.
        assert!(s.containers(&[]).expect("containers").is_empty());
        s.insert_batch("n1", "r1", vec![container(102, true)], 3)
            .expect("again");
        let running = s.containers(&[]).expect("containers");
        assert_eq!(running.len(), 1);
        assert_eq!(
            running[0].container.as_ref().map(|c| c.id.as_str()),
            Some("c1")
        );
    }

    #[test]
    fn insert_dedup_query_retention() {
        let s = Store::open(
            Path::new(":memory:"),
            Retention {
                max_events: 3,
                max_age_secs: 1_000_000,
            },
        )
        .expect("open");
        let o = s
            .insert_batch("n1", "r1", vec![exec(1, "/a_b"), exec(2, "/axb")], 5)
            .expect("insert");
        assert_eq!((o.ack_seq, o.stored.len(), o.duplicates), (2, 2, 0));
        let o = s
            .insert_batch("n1", "r1", vec![exec(2, "/axb"), exec(5, "/c")], 6)
            .expect("insert");
        assert_eq!((o.ack_seq, o.stored.len(), o.duplicates), (5, 1, 1));
        let q = Query {
            filter: crate::filter::compile(
                &[pb::EventFilter {
                    binary_prefixes: vec!["/a_".into()],
                    ..Default::default()
                }],
                &[],
            )
            .expect("filter"),
            limit: 10,
            ..Query::default()
        };
        let got = s.query(&q).expect("query");
        assert_eq!(got.len(), 1, "LIKE wildcard escaped");
        s.insert_batch("n1", "r1", vec![exec(6, "/d")], 7)
            .expect("insert");
        assert_eq!(s.retention_pass(100).expect("retention"), 1);
        assert_eq!(s.events_stored(), 3);
        assert!(s.get(1).expect("get").is_none());
        assert_eq!(s.sensors().expect("sensors")[0].last_seq, 6);
    }

    #[test]
    fn re_sends_are_recognised_by_the_runs_highest_stored_seq() {
        let s = Store::open(Path::new(":memory:"), Retention::default()).expect("open");
        let o = s
            .insert_batch("n1", "r1", Vec::<pb::Event>::new(), 1)
            .expect("empty");
        assert_eq!((o.ack_seq, o.stored.len()), (0, 0));
        assert_eq!(s.sensors().expect("sensors")[0].last_seq, 0);
        // Seq 0 is an event like any other, once.
        let o = s
            .insert_batch("n1", "r1", vec![exec(0, "/a"), exec(0, "/a")], 2)
            .expect("seq 0");
        assert_eq!((o.ack_seq, o.stored.len(), o.duplicates), (0, 1, 1));
        // A jump is accepted; what is not above the highest stored seq is a re-send, in a
        // batch or across batches.
        let o = s
            .insert_batch(
                "n1",
                "r1",
                vec![exec(1, "/b"), exec(4, "/c"), exec(3, "/d")],
                3,
            )
            .expect("jump");
        assert_eq!((o.ack_seq, o.stored.len(), o.duplicates), (4, 2, 1));
        let o = s
            .insert_batch(
                "n1",
                "r1",
                vec![exec(2, "/e"), exec(4, "/c"), exec(5, "/f")],
                4,
            )
            .expect("overlap");
        assert_eq!((o.ack_seq, o.stored.len(), o.duplicates), (5, 1, 2));
        assert_eq!(o.stored[0].id, 4);
        // Runs are independent; acked() follows.
        let o = s
            .insert_batch("n1", "r2", vec![exec(1, "/g")], 5)
            .expect("r2");
        assert_eq!((o.ack_seq, o.stored.len()), (1, 1));
        assert_eq!((s.acked("r1"), s.acked("r2"), s.acked("r3")), (5, 1, 0));
        assert_eq!(s.events_stored(), 5);
    }

    #[test]
    fn de_duplication_survives_a_restart() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("collector.db");
        let s = Store::open(&path, Retention::default()).expect("open");
        s.insert_batch("n1", "r1", (1..=3).map(|i| exec(i, "/a")).collect(), 1)
            .expect("insert");
        drop(s);
        let s = Store::open(&path, Retention::default()).expect("reopen");
        assert_eq!(s.acked("r1"), 3);
        let o = s
            .insert_batch("n1", "r1", (2..=5).map(|i| exec(i, "/a")).collect(), 2)
            .expect("re-send");
        assert_eq!((o.ack_seq, o.stored.len(), o.duplicates), (5, 2, 2));
        let seqs: Vec<u64> = s
            .query(&Query {
                limit: 10,
                ..Query::default()
            })
            .expect("query")
            .iter()
            .map(|e| e.event.as_ref().expect("event").seq)
            .collect();
        assert_eq!(seqs, [1, 2, 3, 4, 5]);
    }
}
