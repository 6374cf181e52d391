//! The schema version of the database file (`PRAGMA user_version`), and the migration from the
//! first schema.
//!
//! Version 1 (written by collectors that left `user_version` at 0) keyed every event by its TEXT
//! `run_id` with `UNIQUE(run_id, seq)`, had an `events_node_time` index, and kept the ack state
//! in `sensors`, keyed by the run id. Version 2 keys events by the `runs` row id, has no
//! uniqueness index (de-duplication uses `runs.last_seq`) and no `events_node_time`.
//!
//! The migration moves the events in chunks, each chunk copied and deleted in one transaction:
//! a collector stopped in the middle (a startup probe gives up, the node restarts) resumes
//! where it was on its next start, and the file needs no room for a second copy of the events.
//! The old table is renamed `events_v1` first; while it exists the migration is unfinished.

use std::{path::Path, time::Instant};

use rusqlite::{Connection, OptionalExtension};

use super::{SCHEMA, SCHEMA_VERSION, StoreError};

/// Events moved per transaction.
const MIGRATION_CHUNK: i64 = 20_000;

/// The start of the migration from version 1, in one transaction with [`SCHEMA`] in the
/// middle: the old events table is set aside without its secondary indexes (its uniqueness
/// index cannot be dropped) ...
const MIGRATE_1_TO_2_SET_ASIDE: &str = "
ALTER TABLE events RENAME TO events_v1;
DROP INDEX IF EXISTS events_time;
DROP INDEX IF EXISTS events_node_time;
";

/// ... then the ack state moves to `runs`. A run with `last_seq` 0 and no event of seq 0 had
/// stored nothing (NULL in version 2); runs that have events but no `sensors` row (not written
/// by any version, but cheap to cover) get one from their events.
const MIGRATE_1_TO_2_RUNS: &str = "
INSERT INTO runs(sensor, run_id, last_seq, last_seen)
    SELECT s.sensor, s.run_id,
        CASE WHEN s.last_seq <> 0
            OR EXISTS(SELECT 1 FROM events_v1 e WHERE e.run_id = s.run_id AND e.seq = 0)
        THEN s.last_seq END,
        s.last_seen
    FROM sensors s ORDER BY s.rowid;
INSERT INTO runs(sensor, run_id, last_seq, last_seen)
    SELECT (SELECT e.node FROM events_v1 e WHERE e.run_id = g.run_id LIMIT 1), g.run_id, g.m, 0
    FROM (SELECT run_id, max(seq) AS m FROM events_v1 GROUP BY run_id) g
    WHERE g.run_id NOT IN (SELECT run_id FROM runs);
DROP TABLE sensors;
";

/// One chunk: the events of `events_v1` up to id ?1, with their ids (clients page with them,
/// alerts name them).
const MIGRATE_1_TO_2_CHUNK: &str = "
INSERT INTO events(id, node, run, seq, time_unix_nano, kind, namespace, pod, workload_kind,
        workload, cronjob, container_id, binary, body)
    SELECT e.id, e.node, (SELECT r.id FROM runs r WHERE r.run_id = e.run_id), e.seq,
        e.time_unix_nano, e.kind, e.namespace, e.pod, e.workload_kind, e.workload, e.cronjob,
        e.container_id, e.binary, e.body
    FROM events_v1 e WHERE e.id <= ?1 ORDER BY e.id
";

fn table_exists(conn: &Connection, name: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?1",
        [name],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

fn has_column(conn: &Connection, table: &str, column: &str) -> rusqlite::Result<bool> {
    conn.query_row(
        "SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2",
        [table, column],
        |_| Ok(()),
    )
    .optional()
    .map(|r| r.is_some())
}

/// Brings the database at `path` (open on `conn`, no other connection yet) to
/// [`SCHEMA_VERSION`]: creates the tables of a new file, migrates (or goes on migrating) a
/// version 1 file, refuses a file of a newer version or one that is not a collector's.
pub(super) fn prepare(conn: &Connection, path: &Path) -> Result<(), StoreError> {
    prepare_with(conn, path, MIGRATION_CHUNK, None)
}

/// [`prepare`], moving `chunk` events per transaction and, when `stop_after` is given, leaving
/// the migration unfinished after that many chunks (tests).
fn prepare_with(
    conn: &Connection,
    path: &Path,
    chunk: i64,
    stop_after: Option<usize>,
) -> Result<(), StoreError> {
    let open_err = |source| StoreError::Open {
        path: path.to_path_buf(),
        source,
    };
    let foreign = |problem: &str| StoreError::Foreign {
        path: path.to_path_buf(),
        problem: problem.to_owned(),
    };
    let version: i64 = conn
        .query_row("PRAGMA user_version", [], |r| r.get(0))
        .map_err(open_err)?;
    match version {
        SCHEMA_VERSION => conn.execute_batch(SCHEMA).map_err(open_err),
        0 if table_exists(conn, "events_v1").map_err(open_err)? => {
            migrate_1_to_2(conn, path, chunk, stop_after).map_err(open_err)
        }
        0 if !table_exists(conn, "events").map_err(open_err)? => {
            let tx = conn.unchecked_transaction().map_err(open_err)?;
            tx.execute_batch(SCHEMA).map_err(open_err)?;
            tx.pragma_update(None, "user_version", SCHEMA_VERSION)
                .map_err(open_err)?;
            tx.commit().map_err(open_err)
        }
        0 => {
            if !has_column(conn, "events", "run_id").map_err(open_err)?
                || !table_exists(conn, "sensors").map_err(open_err)?
            {
                return Err(foreign(
                    "an `events` table, but not the one of schema version 1",
                ));
            }
            let events: i64 = conn
                .query_row("SELECT count(*) FROM events", [], |r| r.get(0))
                .map_err(open_err)?;
            tracing::warn!(
                path = %path.display(),
                events,
                "migrating the database from schema version 1 to {SCHEMA_VERSION}: every event \
                 is moved once (about 15 s per million events); a collector stopped meanwhile \
                 goes on where it was"
            );
            let tx = conn.unchecked_transaction().map_err(open_err)?;
            tx.execute_batch(MIGRATE_1_TO_2_SET_ASIDE)
                .map_err(open_err)?;
            tx.execute_batch(SCHEMA).map_err(open_err)?;
            tx.execute_batch(MIGRATE_1_TO_2_RUNS).map_err(open_err)?;
            tx.commit().map_err(open_err)?;
            migrate_1_to_2(conn, path, chunk, stop_after).map_err(open_err)
        }
        v if v > SCHEMA_VERSION => Err(StoreError::NewerSchema {
            path: path.to_path_buf(),
            found: v,
        }),
        v => Err(foreign(&format!("unknown schema version {v}"))),
    }
}

/// Moves what is left in `events_v1` to `events`, `chunk` events per transaction, then drops
/// it and sets the version.
fn migrate_1_to_2(
    conn: &Connection,
    path: &Path,
    chunk: i64,
    stop_after: Option<usize>,
) -> rusqlite::Result<()> {
    let started = Instant::now();
    let left: i64 = conn.query_row("SELECT count(*) FROM events_v1", [], |r| r.get(0))?;
    let mut moved = 0i64;
    let mut chunks = 0usize;
    loop {
        if stop_after.is_some_and(|n| chunks >= n) {
            return Ok(());
        }
        let tx = conn.unchecked_transaction()?;
        let last: Option<i64> = tx.query_row(
            "SELECT max(id) FROM (SELECT id FROM events_v1 ORDER BY id LIMIT ?1)",
            [chunk],
            |r| r.get(0),
        )?;
        let Some(last) = last else { break };
        let n = tx.execute(MIGRATE_1_TO_2_CHUNK, [last])?;
        tx.execute("DELETE FROM events_v1 WHERE id <= ?1", [last])?;
        tx.commit()?;
        moved += n as i64;
        chunks += 1;
        if chunks.is_multiple_of(50) {
            tracing::info!(path = %path.display(), moved, left, "migrating the database");
        }
    }
    let tx = conn.unchecked_transaction()?;
    tx.execute_batch("DROP TABLE events_v1;")?;
    tx.pragma_update(None, "user_version", SCHEMA_VERSION)?;
    tx.commit()?;
    // The migration's transactions grew the WAL file; give the space back.
    conn.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))?;
    tracing::warn!(
        path = %path.display(),
        moved,
        seconds = started.elapsed().as_secs_f64(),
        "database migrated to schema version {SCHEMA_VERSION}"
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use jobwatch_proto::v1 as pb;
    use prost::Message;
    use rusqlite::params;

    use super::super::{Retention, Store};
    use super::*;

    /// The schema of version 1, as those collectors created it.
    const V1_SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS events(
    id INTEGER PRIMARY KEY,
    node TEXT NOT NULL,
    run_id TEXT NOT NULL,
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
    body BLOB NOT NULL,
    UNIQUE(run_id, seq)
);
CREATE INDEX IF NOT EXISTS events_time ON events(time_unix_nano);
CREATE INDEX IF NOT EXISTS events_node_time ON events(node, time_unix_nano);
CREATE TABLE IF NOT EXISTS containers(
    node TEXT NOT NULL,
    id TEXT NOT NULL,
    body BLOB NOT NULL,
    updated_unix_nano INTEGER NOT NULL,
    exited_unix_nano INTEGER,
    PRIMARY KEY(node, id)
);
CREATE TABLE IF NOT EXISTS sensors(
    sensor TEXT NOT NULL,
    run_id TEXT NOT NULL PRIMARY KEY,
    last_seq INTEGER NOT NULL,
    last_seen INTEGER NOT NULL
);
";

    fn exec(node: &str, seq: u64, binary: &str) -> pb::Event {
        pb::Event {
            node: node.into(),
            time_unix_nano: 1_000 + seq as i64,
            seq,
            kind: Some(pb::event::Kind::ProcessExec(pb::ProcessExec {
                binary: binary.into(),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn db(dir: &tempfile::TempDir) -> PathBuf {
        dir.path().join("collector.db")
    }

    /// A version 1 file as such a collector left it (WAL, user_version 0): run `r1` of n1
    /// stored seqs 1..=3 (id 5 to 7: older events went to retention), run `r0` of n2 stored
    /// only seq 0, run `empty` of n2 stored nothing, and run `orphan` has events but no
    /// `sensors` row.
    fn v1_file(path: &Path) -> Vec<(i64, pb::Event)> {
        let conn = Connection::open(path).expect("open");
        conn.query_row("PRAGMA journal_mode=WAL", [], |r| r.get::<_, String>(0))
            .expect("wal");
        conn.execute_batch(V1_SCHEMA).expect("v1 schema");
        conn.execute_batch(super::super::alerts::SCHEMA)
            .expect("alerts schema");
        let rows = [
            (5, "r1", exec("n1", 1, "/bin/a")),
            (6, "r1", exec("n1", 2, "/tmp/b")),
            (7, "r1", exec("n1", 3, "/bin/c")),
            (8, "r0", exec("n2", 0, "/bin/d")),
            (9, "orphan", exec("n3", 7, "/bin/e")),
        ];
        for (id, run, e) in &rows {
            conn.execute(
                "INSERT INTO events(id, node, run_id, seq, time_unix_nano, kind, binary, body)
                 VALUES (?1, ?2, ?3, ?4, ?5, 1, ?6, ?7)",
                params![
                    id,
                    e.node,
                    run,
                    e.seq as i64,
                    e.time_unix_nano,
                    match &e.kind {
                        Some(pb::event::Kind::ProcessExec(x)) => x.binary.clone(),
                        _ => String::new(),
                    },
                    e.encode_to_vec()
                ],
            )
            .expect("v1 event");
        }
        for (sensor, run, last_seq, seen) in [
            ("n1", "r1", 3, 30),
            ("n2", "r0", 0, 20),
            ("n2", "empty", 0, 25),
        ] {
            conn.execute(
                "INSERT INTO sensors(sensor, run_id, last_seq, last_seen) VALUES (?1, ?2, ?3, ?4)",
                params![sensor, run, last_seq, seen],
            )
            .expect("v1 sensor");
        }
        conn.execute(
            "INSERT INTO containers(node, id, body, updated_unix_nano) VALUES ('n1', 'c1', ?1, 5)",
            [pb::Container {
                id: "c1".into(),
                ..Default::default()
            }
            .encode_to_vec()],
        )
        .expect("v1 container");
        rows.into_iter().map(|(id, _, e)| (id, e)).collect()
    }

    /// Every stored event (up to 100), with its id.
    fn stored(s: &Store) -> Vec<(i64, pb::Event)> {
        s.query(&crate::store::Query {
            limit: 100,
            ..Default::default()
        })
        .expect("query")
        .into_iter()
        .map(|e| (e.id as i64, e.event.expect("event")))
        .collect()
    }

    #[test]
    fn a_version_1_file_is_migrated_keeping_ids_acks_and_de_duplication() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db(&dir);
        let rows = v1_file(&path);
        let s = Store::open(&path, Retention::default()).expect("open a version 1 file");
        let got = stored(&s);
        assert_eq!(got, rows, "every event, with its id");
        assert_eq!(s.events_stored(), 5);
        let sensors: Vec<(String, String, u64)> = s
            .sensors()
            .expect("sensors")
            .into_iter()
            .map(|r| (r.sensor, r.run_id, r.last_seq))
            .collect();
        assert_eq!(
            sensors,
            [
                ("n1".to_owned(), "r1".to_owned(), 3),
                ("n2".to_owned(), "empty".to_owned(), 0),
                ("n3".to_owned(), "orphan".to_owned(), 7),
            ]
        );
        assert_eq!(s.containers(&[]).expect("containers").len(), 1);
        // Re-sends are still recognised, per run.
        let o = s
            .insert_batch(
                "n1",
                "r1",
                vec![exec("n1", 3, "/bin/c"), exec("n1", 4, "/x")],
                40,
            )
            .expect("r1");
        assert_eq!((o.ack_seq, o.duplicates, o.stored.len()), (4, 1, 1));
        assert_eq!(o.stored[0].id, 10, "ids continue after the highest");
        let o = s
            .insert_batch("n2", "r0", vec![exec("n2", 0, "/bin/d")], 40)
            .expect("r0");
        assert_eq!((o.ack_seq, o.duplicates), (0, 1), "seq 0 was stored");
        let o = s
            .insert_batch("n2", "empty", vec![exec("n2", 0, "/y")], 40)
            .expect("empty");
        assert_eq!((o.ack_seq, o.stored.len()), (0, 1), "nothing was stored");
        let o = s
            .insert_batch("n3", "orphan", vec![exec("n3", 7, "/bin/e")], 40)
            .expect("orphan");
        assert_eq!(o.duplicates, 1);
        // Filters still work on the migrated rows.
        let tmp = s
            .query(&crate::store::Query {
                filter: crate::filter::compile(
                    &[pb::EventFilter {
                        binary_prefixes: vec!["/tmp/".into()],
                        ..Default::default()
                    }],
                    &[],
                )
                .expect("filter"),
                nodes: vec!["n1".into()],
                limit: 100,
                ..Default::default()
            })
            .expect("query");
        assert_eq!(tmp.iter().map(|e| e.id).collect::<Vec<_>>(), [6]);
        drop(s);

        let conn = Connection::open(&path).expect("reopen");
        let version: i64 = conn
            .query_row("PRAGMA user_version", [], |r| r.get(0))
            .expect("user_version");
        assert_eq!(version, SCHEMA_VERSION);
        let mode: String = conn
            .query_row("PRAGMA journal_mode", [], |r| r.get(0))
            .expect("journal_mode");
        assert_eq!(mode, "wal");
        let mut names: Vec<String> = conn
            .prepare("SELECT name FROM sqlite_master WHERE name NOT LIKE 'sqlite_%' ORDER BY name")
            .expect("names")
            .query_map([], |r| r.get(0))
            .expect("names")
            .collect::<Result<_, _>>()
            .expect("names");
        names.retain(|n| !n.starts_with("alerts") && n != "detection_seen");
        assert_eq!(
            names,
            [
                "baseline_items",
                "containers",
                "cronjob_runs",
                "events",
                "events_time",
                "runs"
            ]
        );
        drop(conn);
        // And it opens as a current file from now on, de-duplicating across the restart.
        let s = Store::open(&path, Retention::default()).expect("open again");
        let o = s
            .insert_batch("n1", "r1", vec![exec("n1", 4, "/x")], 50)
            .expect("r1");
        assert_eq!((o.ack_seq, o.duplicates), (4, 1));
        assert_eq!(s.events_stored(), 7);
    }

    #[test]
    fn an_interrupted_migration_goes_on_at_the_next_start() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db(&dir);
        let rows = v1_file(&path);
        {
            let conn = Connection::open(&path).expect("open");
            // Two chunks of two events, then the collector is "stopped".
            prepare_with(&conn, &path, 2, Some(2)).expect("part of the migration");
            let count = |table: &str| -> i64 {
                conn.query_row(&format!("SELECT count(*) FROM {table}"), [], |r| r.get(0))
                    .expect("count")
            };
            assert_eq!((count("events"), count("events_v1")), (4, 1));
            let version: i64 = conn
                .query_row("PRAGMA user_version", [], |r| r.get(0))
                .expect("user_version");
            assert_eq!(version, 0, "unfinished");
        }
        let s = Store::open(&path, Retention::default()).expect("finish the migration");
        let got = stored(&s);
        assert_eq!(got, rows);
        assert_eq!(s.events_stored(), 5);
        let o = s
            .insert_batch("n1", "r1", vec![exec("n1", 3, "/bin/c")], 40)
            .expect("re-send");
        assert_eq!((o.ack_seq, o.duplicates), (3, 1));
        drop(s);
        let conn = Connection::open(&path).expect("reopen");
        let (version, v1): (i64, i64) = (
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))
                .expect("user_version"),
            conn.query_row(
                "SELECT count(*) FROM sqlite_master WHERE name IN ('events_v1', 'sensors')",
                [],
                |r| r.get(0),
            )
            .expect("old tables"),
        );
        assert_eq!((version, v1), (SCHEMA_VERSION, 0));
    }

    #[test]
    fn a_newer_or_foreign_file_is_refused_naming_it() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db(&dir);
        Store::open(&path, Retention::default()).expect("create");
        Connection::open(&path)
            .expect("open")
            .pragma_update(None, "user_version", SCHEMA_VERSION + 1)
            .expect("user_version");
        let e = Store::open(&path, Retention::default()).expect_err("newer");
        let msg = e.to_string();
        assert!(
            msg.contains(&path.display().to_string())
                && msg.contains("schema version 3")
                && msg.contains("move the file aside"),
            "{msg}"
        );

        let other = dir.path().join("other.db");
        Connection::open(&other)
            .expect("open")
            .execute_batch("CREATE TABLE events(id INTEGER PRIMARY KEY, what TEXT);")
            .expect("foreign table");
        let e = Store::open(&other, Retention::default()).expect_err("foreign");
        let msg = e.to_string();
        assert!(
            msg.contains(&other.display().to_string())
                && msg.contains("not a jobwatch collector database"),
            "{msg}"
        );
    }

    #[test]
    fn a_new_file_gets_the_current_version_and_16k_pages() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = db(&dir);
        drop(Store::open(&path, Retention::default()).expect("create"));
        let conn = Connection::open(&path).expect("open");
        let (version, page): (i64, i64) = (
            conn.query_row("PRAGMA user_version", [], |r| r.get(0))
                .expect("user_version"),
            conn.query_row("PRAGMA page_size", [], |r| r.get(0))
                .expect("page_size"),
        );
        assert_eq!((version, page), (SCHEMA_VERSION, 16384));
    }
}
