//! Measures the store's ingest path alone: `Store::insert_batch` on a fresh database, with
//! batches shaped like the sensor's (FileCreated and ProcessExec events of CronJob pods, a
//! 60-character run id), as the collector receives them (decoded protobuf).
//!
//! ```text
//! cargo run --release -p jobwatch-collector --example store_ingest -- [BATCHES] [EVENTS] [DIR]
//! ```
//!
//! Defaults: 200 batches of 1,000 events into a database under `/dev/shm`. Prints the insert
//! rate (wall clock) and the CPU (user + system, of this single-threaded process) per event,
//! counted around `insert_batch` only: building the batches is not measured. Then re-sends the
//! last 10 batches and checks that nothing is stored twice. With `STORE_INGEST_KEEP` set in the
//! environment the database is kept (its path is printed); with `STORE_INGEST_DB=PATH`, the
//! example only opens that database (timing a migration, if it needs one) and re-sends the first
//! events of the run it holds, which must all be duplicates.

use std::{path::PathBuf, time::Instant};

use collector::store::{Retention, Store};
use jobwatch_proto::v1 as pb;

/// User + system CPU of this process, µs.
fn cpu_us() -> u64 {
    // SAFETY: getrusage only writes the struct it is given.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF is always valid.
    let rc = unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    assert_eq!(rc, 0, "getrusage failed");
    let us = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    us(ru.ru_utime) + us(ru.ru_stime)
}

fn container(i: u64) -> pb::ContainerRef {
    let cronjob = format!("backup-{}", i % 7);
    let job = format!("{cronjob}-2900{:04}", i % 50);
    pb::ContainerRef {
        id: format!("{:064x}", 0x5eed_0000_u64 + i % 40),
        name: "dump".into(),
        image: "registry.example.com/tools/backup:1.4.2".into(),
        pod: Some(pb::Pod {
            name: format!("{job}-x7k2p"),
            namespace: format!("team-{}", i % 5),
            uid: "0b6c3f0e-9a55-4c1b-8f3e-6f1f2d0f9a11".into(),
            labels: Default::default(),
        }),
        workload: Some(pb::Workload {
            kind: pb::WorkloadKind::CronJob as i32,
            name: cronjob.clone(),
            job: Some(pb::JobRef {
                name: job,
                controller_uid: "5d1d8c22-4b0e-4f7a-9d36-1c2b3a4d5e6f".into(),
            }),
            cronjob: Some(pb::CronJobRef {
                name: cronjob,
                scheduled_time: "2026-11-27T09:00:00Z".into(),
                source: pb::OwnerSource::NameInference as i32,
                inferred: true,
            }),
            source: pb::OwnerSource::Labels as i32,
        }),
        metadata_pending: false,
    }
}

fn process(seq: u64, binary: &str) -> pb::Process {
    pb::Process {
        exec_id: format!("node-bench-1764230000-{}-{}", 4000 + seq % 3000, seq * 7),
        parent_exec_id: format!("node-bench-1764230000-{}-{}", 3000 + seq % 100, seq),
        pid: 4000 + (seq % 3000) as u32,
        tid: 4000 + (seq % 3000) as u32,
        ppid: 3000 + (seq % 100) as u32,
        uid: 1000,
        gid: 1000,
        euid: 1000,
        egid: 1000,
        loginuid: None,
        cap_effective: 0,
        comm: binary
            .rsplit('/')
            .next()
            .unwrap_or("")
            .chars()
            .take(15)
            .collect(),
        cgroup_id: 12345 + seq % 40,
        cgroup_v1_id: 0,
        mntns: 4026532000 + (seq % 40) as u32,
        host: false,
        start_boot_ns: 1_000_000_000 + seq * 1000,
        binary: binary.into(),
    }
}

fn event(seq: u64, t0: i64) -> pb::Event {
    let c = Some(container(seq / 100));
    let kind = if seq.is_multiple_of(4) {
        pb::event::Kind::ProcessExec(pb::ProcessExec {
            process: Some(process(seq, "/usr/bin/pg_dump")),
            filename: "/usr/bin/pg_dump".into(),
            binary: "/usr/bin/pg_dump".into(),
            args: vec![
                "pg_dump".into(),
                "--format=custom".into(),
                format!("--file=/backup/db-{seq}.dump"),
                "inventory".into(),
            ],
            cwd: "/backup".into(),
            flags: Some(pb::ExecFlags::default()),
            parent: Some(pb::Parent {
                pid: 3000 + (seq % 100) as u32,
                binary: "/bin/sh".into(),
                args: vec!["sh".into(), "-c".into(), "/scripts/backup.sh".into()],
                source: "exec".into(),
            }),
            container: c,
        })
    } else {
        pb::event::Kind::FileCreated(pb::FileCreated {
            process: Some(process(seq, "/usr/bin/pg_dump")),
            operation: pb::FileOperation::Create as i32,
            path: format!("/backup/tmp/part-{seq:08}.dat"),
            source: None,
            mode: 0o100644,
            old_mode: None,
            replaced: false,
            path_truncated: false,
            read_error: false,
            container: c,
        })
    };
    pb::Event {
        node: "node-bench-01.cluster.example.com".into(),
        time_unix_nano: t0 + seq as i64 * 25_000,
        boot_ns: 1_000_000_000 + seq * 25_000,
        seq,
        kind: Some(kind),
    }
}

fn batch(first_seq: u64, n: u64, t0: i64) -> Vec<pb::Event> {
    (first_seq..first_seq + n).map(|s| event(s, t0)).collect()
}

fn main() {
    let sensor = "node-bench-01.cluster.example.com";
    // Shaped like the sensor's: `<boot id>-<pid>-<16 hex digits>`.
    let run_id = "3f0c8a4e-6b7d-4e21-9c55-0a1b2c3d4e5f-41234-9e3779b97f4a7c15";
    let t0 = 1_764_230_000_000_000_000i64;
    if let Some(db) = std::env::var_os("STORE_INGEST_DB") {
        // A database this example kept (maybe by an older collector): time the open (and its
        // migration), then re-send the first batches of the run it holds.
        let (c0, w0) = (cpu_us(), Instant::now());
        let store = Store::open(db.as_ref(), Retention::default()).expect("open the store");
        println!(
            "opened {} ({} events) in {:.2} s, CPU {:.2} s",
            PathBuf::from(&db).display(),
            store.events_stored(),
            w0.elapsed().as_secs_f64(),
            (cpu_us() - c0) as f64 / 1e6
        );
        let acked = store.acked(run_id);
        let out = store
            .insert_batch(sensor, run_id, batch(1, acked.min(10_000), t0), t0)
            .expect("re-send");
        println!(
            "re-sent seqs 1..={}: {} duplicates, {} stored",
            acked.min(10_000),
            out.duplicates,
            out.stored.len()
        );
        return;
    }
    let mut args = std::env::args().skip(1);
    let batches: u64 = args.next().map_or(200, |a| a.parse().expect("BATCHES"));
    let size: u64 = args.next().map_or(1000, |a| a.parse().expect("EVENTS"));
    let dir = PathBuf::from(args.next().unwrap_or_else(|| "/dev/shm".into()));
    let dir = dir.join(format!("store-ingest-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("create the database directory");
    let db = dir.join("collector.db");
    let store = Store::open(&db, Retention::default()).expect("open the store");

    let mut cpu = 0u64;
    let mut wall = std::time::Duration::ZERO;
    let mut stored = 0u64;
    for b in 0..batches {
        let events = batch(1 + b * size, size, t0);
        let (c0, w0) = (cpu_us(), Instant::now());
        let out = store
            .insert_batch(sensor, run_id, events, t0)
            .expect("insert");
        wall += w0.elapsed();
        cpu += cpu_us() - c0;
        stored += out.stored.len() as u64;
        assert_eq!(out.ack_seq, (b + 1) * size, "ack");
    }
    let n = batches * size;
    assert_eq!(stored, n, "every event stored once");

    // Re-sends: the last 10 batches again, then one that straddles the ack.
    let resend = batches.min(10);
    let (mut resend_cpu, mut resend_wall) = (0, std::time::Duration::ZERO);
    let mut duplicates = 0;
    for b in batches - resend..batches {
        let events = batch(1 + b * size, size, t0);
        let (c0, w0) = (cpu_us(), Instant::now());
        let out = store
            .insert_batch(sensor, run_id, events, t0)
            .expect("re-send");
        resend_wall += w0.elapsed();
        resend_cpu += cpu_us() - c0;
        assert!(out.stored.is_empty(), "a re-sent event was stored again");
        duplicates += out.duplicates;
    }
    assert_eq!(duplicates, resend * size);
    let out = store
        .insert_batch(sensor, run_id, batch(n - size / 2 + 1, size, t0), t0)
        .expect("straddling re-send");
    assert_eq!(
        (out.duplicates, out.stored.len() as u64),
        (size / 2, size - size / 2)
    );

    let bytes = store.store_bytes().expect("size");
    drop(store);
    println!(
        "{n} events in {batches} batches of {size}: {:.0} events/s (wall {:.2} s), \
         CPU {:.2} µs/event; re-send of {} events: CPU {:.2} µs/event, {:.0} events/s; \
         database {:.1} MiB ({:.0} bytes/event)",
        n as f64 / wall.as_secs_f64(),
        wall.as_secs_f64(),
        cpu as f64 / n as f64,
        resend * size,
        resend_cpu as f64 / (resend * size) as f64,
        (resend * size) as f64 / resend_wall.as_secs_f64(),
        bytes as f64 / (1 << 20) as f64,
        bytes as f64 / n as f64,
    );
    if std::env::var_os("STORE_INGEST_KEEP").is_some() {
        println!("kept {}", db.display());
    } else if let Err(e) = std::fs::remove_dir_all(&dir) {
        eprintln!("removing {}: {e}", dir.display());
    }
}
