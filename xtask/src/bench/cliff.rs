//! Benchmark 4: the drop cliff. A mixed load (one fork + exec + wait per 100 operations, the
//! rest `openat(O_CREAT|O_EXCL)` + close + unlink) in a container's cgroup, its rate doubling
//! every step, against jobwatch and bpftrace (and with nothing observing, the generator's own
//! maximum). The zero-loss ceiling is the highest rate
//! achieved with nothing missing; past it, the sensor's reported drops must equal the
//! shortfall exactly (exec and file losses are counted per kind in the kernel).

use std::{fmt::Write as _, time::Duration};

use anyhow::Result;

use super::{
    Ctx, load,
    peers::{Counts, Kind, Observer, SensorOptions},
    report::{Json, Section, Spread, Table, ahead_json, fmt},
};

/// `None` measures the generator alone: how fast it goes with nothing observing it.
const KINDS: [Kind; 3] = [Kind::None, Kind::Sensor, Kind::Bpftrace];
const EXEC_EVERY: u64 = 100;
/// Generator processes: one per core, so that the load can outrun the observers.
const GENERATORS: usize = 2;

struct Step {
    kind: Kind,
    rep: usize,
    target: f64,
    execs: u64,
    files: u64,
    secs: f64,
    got: Counts,
}

impl Step {
    fn achieved(&self) -> f64 {
        (self.execs + self.files) as f64 / self.secs.max(1e-9)
    }

    fn shortfall(&self) -> u64 {
        self.execs.saturating_sub(self.got.execs) + self.files.saturating_sub(self.got.files)
    }

    /// The drops reported for the workload's kinds (exec, file creation).
    fn reported(&self) -> u64 {
        match self.kind {
            Kind::Sensor => self.got.lost_exec + self.got.lost_file,
            _ => self.got.lost,
        }
    }
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let (secs, reps, start, max) = if ctx.quick {
        (1.5, 1, 8_000.0, 64_000.0)
    } else {
        (4.0, 5, 4_000.0, 256_000.0)
    };
    let opts = SensorOptions {
        include: vec![ctx.keep()],
        // Host processes are dropped in the kernel: only the workload (in its container)
        // reaches the ring buffer, so every loss counted is the workload's.
        report_host_processes: false,
    };
    let mut steps = Vec::new();
    let mut skipped: Vec<(Kind, String)> = Vec::new();
    for rep in 0..reps {
        for kind in KINDS {
            if skipped.iter().any(|(k, _)| *k == kind) {
                continue;
            }
            let observer = match Observer::start(ctx, kind, &opts) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("bench cliff: {} not measured: {e:#}", kind.name());
                    skipped.push((kind, format!("{e:#}")));
                    continue;
                }
            };
            let mut target = start;
            while target <= max {
                let before = observer.counts(ctx)?;
                let mut spec = ctx.spec("mix", target / GENERATORS as f64, secs, true);
                spec.exec_every = EXEC_EVERY;
                let done = std::thread::scope(|s| -> Result<load::Done> {
                    let runs: Vec<_> = (0..GENERATORS)
                        .map(|g| {
                            let mut spec = spec.clone();
                            let dir = ctx.keep().join(format!("g{g}"));
                            spec.dir = Some(dir.clone());
                            let observer = &observer;
                            s.spawn(move || {
                                std::fs::create_dir_all(&dir)?;
                                ctx.load(&spec, Some(observer))
                            })
                        })
                        .collect();
                    let mut sum = load::Done::default();
                    for r in runs {
                        let d = r
                            .join()
                            .map_err(|_| anyhow::anyhow!("a generator thread panicked"))??;
                        sum.execs += d.execs;
                        sum.files += d.files;
                        sum.secs = sum.secs.max(d.secs);
                    }
                    Ok(sum)
                })?;
                let want = Counts {
                    execs: before.execs + done.execs,
                    files: before.files + done.files,
                    ..before
                };
                let after = observer.settle(ctx, want, Duration::from_secs(3))?.counts;
                let s = Step {
                    kind,
                    rep,
                    target,
                    execs: done.execs,
                    files: done.files,
                    secs: done.secs,
                    got: after.minus(before),
                };
                eprintln!(
                    "    rep {} {:>9} target {:>7.0}/s: achieved {:.0}/s, missing {}, reported lost {} \
                     (all causes {})",
                    rep + 1,
                    kind.name(),
                    target,
                    s.achieved(),
                    s.shortfall(),
                    s.reported(),
                    s.got.lost
                );
                let saturated = s.achieved() < 0.8 * target;
                steps.push(s);
                if saturated {
                    break; // the generator cannot go faster
                }
                target *= 2.0;
            }
        }
    }
    Ok(section(reps, secs, &steps, &skipped))
}

fn section(reps: usize, secs: f64, steps: &[Step], skipped: &[(Kind, String)]) -> Section {
    let mut md = format!(
        "## 4. Drop cliff ({reps} repetitions, {secs} s per step, configurations alternated)\n\n\
         {GENERATORS} processes, one fork + exec + wait per {EXEC_EVERY} operations, the rest \
         `openat(O_CREAT|O_EXCL)` + close + unlink, in a container's cgroup; the target rate \
         doubles every step until the generator saturates. The sensor drops host processes \
         in the kernel here, so every loss it counts is the workload's. Zero-loss ceiling: the \
         highest achieved rate before the first step with anything missing or reported lost \
         (a lower bound when nothing was lost up to the generator's maximum). No sensor: the \
         generator with nothing observing it, its own maximum on this machine.\n\n"
    );
    let mut t = Table::new(&[
        "configuration",
        "target/s",
        "achieved/s (median)",
        "missing (all reps)",
        "reported lost (all reps)",
        "missing == reported",
    ]);
    let mut exact = true;
    let mut json_steps = Vec::new();
    let mut ceilings: Vec<(Kind, Spread)> = Vec::new();
    for kind in KINDS {
        let mine: Vec<&Step> = steps.iter().filter(|s| s.kind == kind).collect();
        if mine.is_empty() {
            continue;
        }
        let mut targets: Vec<f64> = mine.iter().map(|s| s.target).collect();
        targets.sort_by(f64::total_cmp);
        targets.dedup();
        for target in targets {
            let at: Vec<&&Step> = mine.iter().filter(|s| s.target == target).collect();
            let achieved = Spread::of(&at.iter().map(|s| s.achieved()).collect::<Vec<_>>());
            let missing: u64 = at.iter().map(|s| s.shortfall()).sum();
            let reported: u64 = at.iter().map(|s| s.reported()).sum();
            let same = at.iter().all(|s| s.shortfall() == s.reported());
            if kind == Kind::Sensor {
                exact &= same;
            }
            let or_dash = |cell: String| if kind.records() { cell } else { "–".into() };
            t.row(vec![
                kind.name().into(),
                fmt(target, 0),
                achieved.show(0),
                or_dash(missing.to_string()),
                or_dash(reported.to_string()),
                or_dash(if same { "yes".into() } else { "**no**".into() }),
            ]);
            json_steps.push(Json::obj([
                ("configuration", Json::str(kind.key())),
                ("target_per_sec", Json::num(target)),
                ("achieved_per_sec", achieved.json()),
                ("missing", Json::num(missing as f64)),
                ("reported_lost", Json::num(reported as f64)),
                ("exact", Json::Bool(same)),
            ]));
        }
        // Per repetition: the highest achieved rate with nothing missing.
        let reps: Vec<usize> = {
            let mut r: Vec<usize> = mine.iter().map(|s| s.rep).collect();
            r.dedup();
            r
        };
        // The highest achieved rate before the first step that lost anything (a later
        // lossless step of a starved generator does not raise it).
        let per_rep: Vec<f64> = reps
            .iter()
            .map(|&rep| {
                mine.iter()
                    .filter(|s| s.rep == rep)
                    .take_while(|s| !kind.records() || (s.shortfall() == 0 && s.got.lost == 0))
                    .map(|s| s.achieved())
                    .fold(0.0, f64::max)
            })
            .collect();
        ceilings.push((kind, Spread::of(&per_rep)));
    }
    md.push_str(&t.markdown());
    md.push_str("\n| configuration | zero-loss ceiling, events/s |\n|---|---|\n");
    for (k, c) in &ceilings {
        let name = match k {
            Kind::None => "no sensor (the generator's own maximum)",
            k => k.name(),
        };
        let _ = writeln!(md, "| {name} | {} |", c.show(0));
    }
    let ours = ceilings.iter().find(|c| c.0 == Kind::Sensor).map(|c| c.1);
    let theirs = ceilings.iter().find(|c| c.0 == Kind::Bpftrace).map(|c| c.1);
    let alone = ceilings.iter().find(|c| c.0 == Kind::None).map(|c| c.1);
    let mut verdicts = Vec::new();
    if let (Some(o), Some(b)) = (ours, theirs) {
        let saturated = steps
            .iter()
            .filter(|s| s.kind == Kind::Sensor)
            .all(|s| s.shortfall() == 0);
        verdicts.push((
            format!(
                "zero-loss ceiling {} /s vs bpftrace's {} /s: {:.2}x (needs >= 2x){}",
                fmt(o.median, 0),
                fmt(b.median, 0),
                o.median / b.median,
                if saturated {
                    "; jobwatch lost nothing even at the generator's maximum, so its ceiling is \
                     at least that"
                } else {
                    ""
                },
            ) + &alone.map_or(String::new(), |a| {
                format!(
                    "; the generator alone reaches {} /s (jobwatch {:.0}%, bpftrace {:.0}% of it)",
                    fmt(a.median, 0),
                    100.0 * o.median / a.median,
                    100.0 * b.median / a.median
                )
            }),
            o.median >= 2.0 * b.median,
        ));
    }
    verdicts.push((
        "past the ceiling, the sensor's reported drops equal the shortfall exactly, every step"
            .into(),
        exact,
    ));
    for (k, why) in skipped {
        let _ = writeln!(md, "\n{} not measured: {why}", k.name());
    }
    let json = Json::obj([
        ("repetitions", Json::num(reps as f64)),
        ("step_secs", Json::num(secs)),
        ("steps", Json::Arr(json_steps)),
        (
            "ceilings",
            Json::Arr(
                ceilings
                    .iter()
                    .map(|(k, c)| {
                        Json::obj([
                            ("configuration", Json::str(k.key())),
                            ("events_per_sec", c.json()),
                        ])
                    })
                    .collect(),
            ),
        ),
        ("ahead", ahead_json(&verdicts)),
    ]);
    Section {
        name: "cliff",
        markdown: md,
        json,
        verdicts,
    }
}
