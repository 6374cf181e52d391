//! Sensor -> collector throughput (issue #4): the release collector (SQLite in a temporary
//! directory) and the release sensor reporting to it, filtered in the kernel to one benchmark
//! directory; two threads create files there as fast as they can (on tmpfs). Measured: how fast
//! the collector stores the events (from the first creation until the last event is stored),
//! and what was lost and where (kernel ring buffer, sensor queue, reporter buffer).

use std::{
    path::Path,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{
    Ctx, peers,
    report::{Json, Section, Spread, Table, ahead_json, fmt},
};

/// Threads creating files: one per core of the 2-core machine.
const GENERATOR_THREADS: u64 = 2;
/// The target of issue #4.
const TARGET: f64 = 50_000.0;

/// One run's figures.
#[derive(Debug, Clone, Copy, Default)]
struct Sample {
    generated: u64,
    generate_secs: f64,
    stored: u64,
    lost: u64,
    /// Seconds from the first creation until the collector stored the last event.
    end_to_end_secs: f64,
}

impl Sample {
    fn stored_per_sec(&self) -> f64 {
        self.stored as f64 / self.end_to_end_secs.max(1e-9)
    }

    fn generated_per_sec(&self) -> f64 {
        self.generated as f64 / self.generate_secs.max(1e-9)
    }
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let (files, runs) = if ctx.quick { (50_000, 3) } else { (200_000, 5) };
    let mut builds = vec![("this build", ctx.release.clone())];
    if let Some(b) = &ctx.baseline {
        builds.push(("baseline", b.clone()));
    }
    let mut all: Vec<Vec<Sample>> = vec![Vec::new(); builds.len()];
    for i in 0..runs {
        for (b, (name, release)) in builds.iter().enumerate() {
            let s =
                one_run(ctx, release, files).with_context(|| format!("{name}, run {}", i + 1))?;
            eprintln!(
                "    {name} run {}: generated {} in {:.2}s ({:.0}/s); stored {} in {:.2}s ({:.0}/s); lost {}",
                i + 1,
                s.generated,
                s.generate_secs,
                s.generated_per_sec(),
                s.stored,
                s.end_to_end_secs,
                s.stored_per_sec(),
                s.lost
            );
            all[b].push(s);
        }
    }
    let names: Vec<&str> = builds.iter().map(|b| b.0).collect();
    Ok(section(&names, &all))
}

fn one_run(ctx: &Ctx, release: &Path, files: u64) -> Result<Sample> {
    {
        let dir = ctx.scratch.join("throughput");
        let load = ctx.keep().join("throughput");
        for d in [&dir, &load] {
            let _ = std::fs::remove_dir_all(d);
            std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
        }
        let sample = measure(release, &dir, &load, files);
        let _ = std::fs::remove_dir_all(&dir);
        let _ = std::fs::remove_dir_all(&load);
        sample
    }
}

fn measure(release: &Path, dir: &Path, load: &Path, files: u64) -> Result<Sample> {
    let config = format!(
        "stdout_json = false\nring_buffer_bytes = 67108864\nevent_queue_capacity = 262144\n\
         include_path_prefixes = [\"{}/\"]\n[containerd]\nenabled = false\n",
        load.display()
    );
    let (_collector, _sensor, sensor_sock) =
        peers::start_sensor_and_collector(release, dir, &config)?;
    // The sensor also reports the execs of the whole machine: count file events only.
    let db = dir.join("bench.db");
    let stored = || -> Result<u64> {
        let out = peers::sqlite(&db, "SELECT count(*) FROM events WHERE kind = 3;")?;
        out.trim()
            .parse()
            .with_context(|| format!("sqlite3 said {out:?}"))
    };
    let baseline = stored()?;
    let start = Instant::now();
    let workers: Vec<_> = (0..GENERATOR_THREADS)
        .map(|t| {
            let dir = load.join(format!("t{t}"));
            std::thread::spawn(move || -> std::io::Result<()> {
                std::fs::create_dir_all(&dir)?;
                for i in 0..files / GENERATOR_THREADS {
                    std::fs::File::create(dir.join(format!("f{i}")))?;
                }
                Ok(())
            })
        })
        .collect();
    for w in workers {
        w.join()
            .map_err(|_| anyhow::anyhow!("a load thread panicked"))??;
    }
    let generate_secs = start.elapsed().as_secs_f64();
    // Done when the collector has everything, or stops growing for two seconds.
    let mut last = baseline;
    let mut last_change = Instant::now();
    let mut done_at = start.elapsed();
    loop {
        std::thread::sleep(Duration::from_millis(50));
        let now = stored()?;
        if now != last {
            last = now;
            last_change = Instant::now();
            done_at = start.elapsed();
        }
        if last - baseline >= files || last_change.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let counters = peers::sensor_counters(&release.join("jobwatch"), &sensor_sock)?;
    let lost = [
        "kernel_lost_ringbuf_full_file",
        "queue_full",
        "reporter_buffer_lost",
    ]
    .iter()
    .map(|name| {
        counters
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| *v)
            .unwrap_or(0)
    })
    .sum();
    Ok(Sample {
        generated: files,
        generate_secs,
        stored: last - baseline,
        lost,
        end_to_end_secs: done_at.as_secs_f64(),
    })
}

fn section(names: &[&str], all: &[Vec<Sample>]) -> Section {
    let mut t = Table::new(&[
        "build",
        "runs",
        "events per run",
        "generated/s",
        "stored/s end to end",
        "ratio to this build",
        "stored / generated (all runs)",
        "lost (all runs)",
    ]);
    let mut rows = Vec::new();
    let mut verdicts = Vec::new();
    let ours: Vec<f64> = all[0].iter().map(Sample::stored_per_sec).collect();
    for (name, samples) in names.iter().zip(all) {
        let rates: Vec<f64> = samples.iter().map(Sample::stored_per_sec).collect();
        let stored = Spread::of(&rates);
        let generated = Spread::of(
            &samples
                .iter()
                .map(Sample::generated_per_sec)
                .collect::<Vec<_>>(),
        );
        let ratio = Spread::of(
            &rates
                .iter()
                .zip(&ours)
                .map(|(r, o)| r / o)
                .collect::<Vec<_>>(),
        );
        let lost: u64 = samples.iter().map(|s| s.lost).sum();
        let generated_total: u64 = samples.iter().map(|s| s.generated).sum();
        let stored_total: u64 = samples.iter().map(|s| s.stored).sum();
        t.row(vec![
            name.to_string(),
            samples.len().to_string(),
            fmt(samples.first().map_or(0, |s| s.generated) as f64, 0),
            generated.show(0),
            stored.show(0),
            format!("{}x", ratio.show(3)),
            format!("{stored_total} / {generated_total}"),
            lost.to_string(),
        ]);
        if verdicts.is_empty() {
            verdicts.push((
                format!(
                    "sensor -> collector {} events/s stored (median), target {} with zero loss; \
                     lost {lost}",
                    fmt(stored.median, 0),
                    fmt(TARGET, 0)
                ),
                stored.median >= TARGET && lost == 0 && stored_total == generated_total,
            ));
        }
        rows.push(Json::obj([
            ("build", Json::str(*name)),
            ("runs", Json::num(samples.len() as f64)),
            (
                "events_per_run",
                Json::num(samples.first().map_or(0, |s| s.generated) as f64),
            ),
            ("generated_per_sec", generated.json()),
            ("stored_per_sec", stored.json()),
            ("ratio_to_this_build", ratio.json()),
            ("generated_total", Json::num(generated_total as f64)),
            ("stored_total", Json::num(stored_total as f64)),
            ("lost_total", Json::num(lost as f64)),
        ]));
    }
    let md = format!(
        "## Sensor -> collector throughput (issue #4)\n\nTwo threads create files on tmpfs in a \
         directory the sensor's kernel filter reports; the sensor reports to the collector over \
         its Unix socket (SQLite, WAL, on tmpfs). Stored/s: file events the collector stored, \
         divided by the time from the first creation until the last was stored. Median \
         (min–max); builds alternated run by run.\n\n{}",
        t.markdown()
    );
    let json = Json::obj([
        ("builds", Json::Arr(rows)),
        ("ahead", ahead_json(&verdicts)),
    ]);
    Section {
        name: "throughput",
        markdown: md,
        json,
        verdicts,
    }
}
