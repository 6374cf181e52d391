//! Benchmark 5: memory. The sensor's (and the collector's) resident set after start, during and
//! after an exec churn (two generators, fork + exec + wait, as fast as they go).

use std::{
    fmt::Write as _,
    sync::atomic::{AtomicBool, Ordering},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

use super::{
    Ctx,
    peers::{Kind, Observer, SensorOptions},
    report::{Json, Section, ahead_json, fmt},
};

const MIB: f64 = 1024.0 * 1024.0;
const GENERATORS: u64 = 2;

pub fn run(ctx: &Ctx) -> Result<Section> {
    let execs: u64 = if ctx.quick { 20_000 } else { 200_000 };
    let opts = SensorOptions {
        include: vec![ctx.keep()],
        report_host_processes: true,
    };
    let observer = Observer::start(ctx, Kind::Sensor, &opts)?;
    std::thread::sleep(Duration::from_secs(3));
    let start = observer.sensor_rss().context("sensor RSS")?;
    let running = AtomicBool::new(true);
    let mut samples: Vec<(f64, u64, u64)> = Vec::new();
    let t0 = Instant::now();
    let done = std::thread::scope(|s| -> Result<u64> {
        let workers: Vec<_> = (0..GENERATORS)
            .map(|_| {
                s.spawn(|| {
                    let mut spec = ctx.spec("exec", 0.0, 1e9, false);
                    spec.max_ops = execs / GENERATORS;
                    ctx.load(&spec, Some(&observer))
                })
            })
            .collect();
        let sampler = s.spawn(|| {
            let mut v = Vec::new();
            while running.load(Ordering::Relaxed) {
                if let Some((a, b)) = observer.sensor_rss() {
                    v.push((t0.elapsed().as_secs_f64(), a, b));
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            v
        });
        let mut total = 0;
        for w in workers {
            total += w
                .join()
                .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??
                .execs;
        }
        running.store(false, Ordering::Relaxed);
        samples = sampler
            .join()
            .map_err(|_| anyhow::anyhow!("the sampler panicked"))?;
        Ok(total)
    })?;
    let churn_secs = t0.elapsed().as_secs_f64();
    std::thread::sleep(Duration::from_secs(3));
    let end = observer.sensor_rss().context("sensor RSS")?;
    let maps = observer.sensor_bpf_map_rss().unwrap_or(0);
    let peak = samples
        .iter()
        .map(|s| s.1)
        .chain([end.0])
        .max()
        .unwrap_or(0);
    // Growth: the second half of the churn against the first.
    let half = samples.get(samples.len() / 2).map_or(start.0, |s| s.1);
    let growth = end.0 as f64 - half as f64;
    eprintln!(
        "    {done} execs in {churn_secs:.0} s; sensor RSS {:.1} -> {:.1} MiB (peak {:.1}), \
         collector {:.1} -> {:.1} MiB",
        start.0 as f64 / MIB,
        end.0 as f64 / MIB,
        peak as f64 / MIB,
        start.1 as f64 / MIB,
        end.1 as f64 / MIB
    );
    let mut md = format!(
        "## 5. Memory (one run)\n\nResident set (VmRSS) of the sensor and of the collector 3 s \
         after start, during an exec churn of {} execs ({GENERATORS} generators, {churn_secs:.0} \
         s) and 3 s after it. Growth: the end against the middle of the churn (the process \
         table is bounded at 65,536 processes and fills during the first half).\n\n\
         | process | after start MiB | middle of churn MiB | peak MiB | after churn MiB |\n\
         |---|---|---|---|---|\n",
        fmt(done as f64, 0)
    );
    let mid_collector = samples.get(samples.len() / 2).map_or(start.1, |s| s.2);
    let peak_collector = samples
        .iter()
        .map(|s| s.2)
        .chain([end.1])
        .max()
        .unwrap_or(0);
    let mb = |b: u64| format!("{:.1}", b as f64 / MIB);
    let _ = writeln!(
        md,
        "| sensor | {} | {} | {} | {} |\n| collector | {} | {} | {} | {} |",
        mb(start.0),
        mb(half),
        mb(peak),
        mb(end.0),
        mb(start.1),
        mb(mid_collector),
        mb(peak_collector),
        mb(end.1)
    );
    let _ = writeln!(
        md,
        "\nOf the sensor's RSS after the churn, {} MiB are its mappings of BPF maps (the 8 MiB \
         ring buffer's pages are mapped twice); without them: {} MiB.",
        mb(maps),
        mb(end.0.saturating_sub(maps))
    );
    let verdicts = vec![
        (
            format!(
                "sensor RSS <= 50 MB throughout (peak {:.1} MB)",
                peak as f64 / 1e6
            ),
            peak as f64 <= 50e6,
        ),
        (
            format!(
                "no growth: second half of the churn {:+.2} MiB (limit +1 MiB)",
                growth / MIB
            ),
            growth <= MIB,
        ),
    ];
    let json = Json::obj([
        ("execs", Json::num(done as f64)),
        ("churn_secs", Json::num(churn_secs)),
        ("sensor_rss_start", Json::num(start.0 as f64)),
        ("sensor_rss_middle", Json::num(half as f64)),
        ("sensor_rss_peak", Json::num(peak as f64)),
        ("sensor_rss_end", Json::num(end.0 as f64)),
        ("sensor_bpf_map_rss_end", Json::num(maps as f64)),
        ("collector_rss_start", Json::num(start.1 as f64)),
        ("collector_rss_end", Json::num(end.1 as f64)),
        (
            "samples",
            Json::Arr(
                samples
                    .iter()
                    .map(|(t, a, b)| {
                        Json::Arr(vec![
                            Json::num(*t),
                            Json::num(*a as f64),
                            Json::num(*b as f64),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("ahead", ahead_json(&verdicts)),
    ]);
    Ok(Section {
        name: "memory",
        markdown: md,
        json,
        verdicts,
    })
}
