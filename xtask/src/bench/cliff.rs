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
    /// The node-side process's CPU limit.
    limit: Option<f64>,
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

    /// Anything missing or reported lost, for any cause.
    fn lossy(&self) -> bool {
        self.kind.records() && (self.shortfall() > 0 || self.got.lost > 0)
    }

    /// The drops reported for the workload's kinds (exec, file creation).
    fn reported(&self) -> u64 {
        match self.kind {
            Kind::Sensor => self.got.lost_exec + self.got.lost_file,
            _ => self.got.lost,
        }
    }
}

/// The node-side agents' CPU limit in the limited run: a twentieth of one CPU, as a DaemonSet's
/// `resources.limits.cpu: 50m` would give them: low enough that both agents' cliffs fall
/// within the generator's reach on two CPUs.
const LIMIT_CPUS: f64 = 0.05;
/// The limited run's configurations: the node-side agents.
const LIMITED_KINDS: [Kind; 2] = [Kind::Sensor, Kind::Bpftrace];

/// How a configuration runs its steps.
#[derive(Clone, Copy)]
struct Schedule {
    /// CPUs the node-side process may use (None: no limit).
    limit: Option<f64>,
    start: f64,
    max: f64,
    /// The target's growth from one step to the next.
    factor: f64,
    /// Past the first step with losses, this many steps halve (in ratio) the interval
    /// between the highest rate without losses and the lowest with, then the configuration
    /// stops (None: it goes on growing until the generator saturates).
    refine: Option<usize>,
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let (secs, reps, start, max) = if ctx.quick {
        (1.5, 1, 8_000.0, 64_000.0)
    } else {
        (4.0, 5, 4_000.0, 256_000.0)
    };
    let free = Schedule {
        limit: None,
        start,
        max,
        factor: 2.0,
        refine: None,
    };
    // Finer steps where the cliff is within the generator's reach, and the cliff located
    // within a factor of 2^(1/8) (about 9%).
    let limited = Schedule {
        limit: Some(LIMIT_CPUS),
        start: start * 2.0,
        factor: std::f64::consts::SQRT_2,
        refine: Some(2),
        ..free
    };
    let opts = SensorOptions {
        include: vec![ctx.keep()],
        // Host processes are dropped in the kernel: only the workload (in its container)
        // reaches the ring buffer, so every loss counted is the workload's.
        report_host_processes: false,
    };
    let configs = KINDS
        .iter()
        .map(|&k| (k, free))
        .chain(LIMITED_KINDS.iter().map(|&k| (k, limited)));
    let configs: Vec<(Kind, Schedule)> = configs.collect();
    let mut steps = Vec::new();
    let mut skipped: Vec<(Kind, Option<f64>, String)> = Vec::new();
    for rep in 0..reps {
        for &(kind, schedule) in &configs {
            if skipped
                .iter()
                .any(|(k, l, _)| *k == kind && *l == schedule.limit)
            {
                continue;
            }
            let started = Observer::start(ctx, kind, &opts).and_then(|mut o| {
                if let Some(cpus) = schedule.limit {
                    o.limit_cpu(cpus)?;
                }
                Ok(o)
            });
            let observer = match started {
                Ok(o) => o,
                Err(e) => {
                    eprintln!(
                        "bench cliff: {} not measured: {e:#}",
                        label(kind, schedule.limit)
                    );
                    skipped.push((kind, schedule.limit, format!("{e:#}")));
                    continue;
                }
            };
            run_steps(ctx, &observer, rep, schedule, secs, &mut steps)?;
        }
    }
    Ok(section(reps, secs, limited.start, &steps, &skipped))
}

fn label(kind: Kind, limit: Option<f64>) -> String {
    match limit {
        None => kind.name().to_string(),
        Some(cpus) => format!("{}, {cpus} CPU", kind.name()),
    }
}

/// One configuration's steps in one repetition: the target rate grows until the generator
/// saturates or the maximum is passed, or, with `refine`, until the cliff has been located.
fn run_steps(
    ctx: &Ctx,
    observer: &Observer,
    rep: usize,
    schedule: Schedule,
    secs: f64,
    steps: &mut Vec<Step>,
) -> Result<()> {
    let kind = observer.kind;
    let mut target = schedule.start;
    // (highest target without losses, lowest with) once a step has lost events.
    let mut bracket: Option<(f64, f64)> = None;
    let mut refined = 0;
    let mut clean_below = 0.0;
    while target <= schedule.max * 1.001 {
        let before = observer.counts(ctx)?;
        let throttled_before = observer.throttled();
        let mut spec = ctx.spec("mix", target / GENERATORS as f64, secs, true);
        spec.exec_every = EXEC_EVERY;
        let done = std::thread::scope(|s| -> Result<load::Done> {
            let runs: Vec<_> = (0..GENERATORS)
                .map(|g| {
                    let mut spec = spec.clone();
                    let dir = ctx.keep().join(format!("g{g}"));
                    spec.dir = Some(dir.clone());
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
            limit: schedule.limit,
            rep,
            target,
            execs: done.execs,
            files: done.files,
            secs: done.secs,
            got: after.minus(before),
        };
        let throttled = match (throttled_before, observer.throttled()) {
            (Some(a), Some(b)) => format!(", throttled {} times", b.saturating_sub(a)),
            _ => String::new(),
        };
        eprintln!(
            "    rep {} {:>17} target {:>7.0}/s: achieved {:.0}/s, missing {}, reported lost {} \
             (all causes {}){throttled}",
            rep + 1,
            label(kind, schedule.limit),
            target,
            s.achieved(),
            s.shortfall(),
            s.reported(),
            s.got.lost
        );
        let saturated = s.achieved() < 0.8 * target;
        let lossy = s.lossy();
        if lossy && kind == Kind::Sensor {
            eprintln!(
                "      sensor's loss counters so far: {}",
                observer.sensor_losses()?
            );
        }
        steps.push(s);
        match (schedule.refine, bracket) {
            (Some(max_refine), Some((lo, hi))) => {
                refined += 1;
                let (lo, hi) = if lossy { (lo, target) } else { (target, hi) };
                bracket = Some((lo, hi));
                if refined >= max_refine {
                    break;
                }
                target = (lo * hi).sqrt();
            }
            (Some(_), None) if lossy => {
                if clean_below == 0.0 {
                    break; // lossy from the first step: nothing to refine
                }
                bracket = Some((clean_below, target));
                target = (clean_below * target).sqrt();
            }
            _ => {
                if !lossy {
                    clean_below = target;
                }
                if saturated {
                    break; // the generator cannot go faster
                }
                target *= schedule.factor;
            }
        }
    }
    Ok(())
}

/// One run's table rows and ceilings: the steps of `kinds` with the CPU limit `limit`.
struct Part {
    rows: Table,
    json_steps: Vec<Json>,
    ceilings: Vec<(Kind, Spread)>,
    /// Every sensor step's shortfall equals its reported drops.
    exact: bool,
    /// Sensor steps that lost anything.
    sensor_lossy: usize,
    /// The sensor lost nothing at any step.
    sensor_clean: bool,
}

fn part(steps: &[Step], kinds: &[Kind], limit: Option<f64>) -> Part {
    let mut p = Part {
        rows: Table::new(&[
            "configuration",
            "target/s",
            "achieved/s (median)",
            "missing (all reps)",
            "reported lost (all reps)",
            "missing == reported",
        ]),
        json_steps: Vec::new(),
        ceilings: Vec::new(),
        exact: true,
        sensor_lossy: 0,
        sensor_clean: true,
    };
    for &kind in kinds {
        let mine: Vec<&Step> = steps
            .iter()
            .filter(|s| s.kind == kind && s.limit == limit)
            .collect();
        if mine.is_empty() {
            continue;
        }
        if kind == Kind::Sensor {
            p.sensor_lossy = mine.iter().filter(|s| s.lossy()).count();
            p.sensor_clean = p.sensor_lossy == 0;
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
                p.exact &= same;
            }
            let or_dash = |cell: String| if kind.records() { cell } else { "–".into() };
            p.rows.row(vec![
                label(kind, limit),
                fmt(target, 0),
                achieved.show(0),
                or_dash(missing.to_string()),
                or_dash(reported.to_string()),
                or_dash(if same { "yes".into() } else { "**no**".into() }),
            ]);
            p.json_steps.push(Json::obj([
                ("configuration", Json::str(kind.key())),
                ("cpu_limit", limit.map_or(Json::Null, Json::num)),
                ("target_per_sec", Json::num(target)),
                ("achieved_per_sec", achieved.json()),
                ("missing", Json::num(missing as f64)),
                ("reported_lost", Json::num(reported as f64)),
                ("exact", Json::Bool(same)),
            ]));
        }
        let reps: Vec<usize> = {
            let mut r: Vec<usize> = mine.iter().map(|s| s.rep).collect();
            r.dedup();
            r
        };
        // Per repetition, the highest achieved rate of the steps without losses whose target
        // was below the lowest target that lost anything (a lossless step at a higher target,
        // of a starved generator, does not raise it).
        let per_rep: Vec<f64> = reps
            .iter()
            .map(|&rep| {
                let of_rep = || mine.iter().filter(|s| s.rep == rep);
                let cliff = of_rep()
                    .filter(|s| s.lossy())
                    .map(|s| s.target)
                    .fold(f64::INFINITY, f64::min);
                of_rep()
                    .filter(|s| !s.lossy() && s.target < cliff)
                    .map(|s| s.achieved())
                    .fold(0.0, f64::max)
            })
            .collect();
        p.ceilings.push((kind, Spread::of(&per_rep)));
    }
    p
}

impl Part {
    fn ceiling(&self, kind: Kind) -> Option<Spread> {
        self.ceilings.iter().find(|c| c.0 == kind).map(|c| c.1)
    }

    fn ceilings_markdown(&self, limit: Option<f64>) -> String {
        let mut md = String::from("\n| configuration | zero-loss ceiling, events/s |\n|---|---|\n");
        for (k, c) in &self.ceilings {
            let name = match k {
                Kind::None => "no sensor (the generator's own maximum)".to_string(),
                &k => label(k, limit),
            };
            let _ = writeln!(md, "| {name} | {} |", c.show(0));
        }
        md
    }

    fn ceilings_json(&self, limit: Option<f64>) -> Json {
        Json::Arr(
            self.ceilings
                .iter()
                .map(|(k, c)| {
                    Json::obj([
                        ("configuration", Json::str(k.key())),
                        ("cpu_limit", limit.map_or(Json::Null, Json::num)),
                        ("events_per_sec", c.json()),
                    ])
                })
                .collect(),
        )
    }

    /// The "ceiling >= 2x bpftrace's" line of this run, if both were measured.
    fn verdict(&self, what: &str) -> Option<(String, bool)> {
        let (o, b) = (self.ceiling(Kind::Sensor)?, self.ceiling(Kind::Bpftrace)?);
        let mut line = format!(
            "{what}: zero-loss ceiling {} /s vs bpftrace's {} /s: {:.2}x (needs >= 2x)",
            fmt(o.median, 0),
            fmt(b.median, 0),
            o.median / b.median,
        );
        if self.sensor_clean {
            line.push_str(
                "; jobwatch lost nothing even at the generator's maximum, so its ceiling is at \
                 least that",
            );
        }
        if let Some(a) = self.ceiling(Kind::None) {
            let _ = write!(
                line,
                "; the generator alone reaches {} /s (jobwatch {:.0}%, bpftrace {:.0}% of it)",
                fmt(a.median, 0),
                100.0 * o.median / a.median,
                100.0 * b.median / a.median
            );
        }
        Some((line, o.median >= 2.0 * b.median))
    }
}

fn section(
    reps: usize,
    secs: f64,
    limited_start: f64,
    steps: &[Step],
    skipped: &[(Kind, Option<f64>, String)],
) -> Section {
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
    let free = part(steps, &KINDS, None);
    let limited = part(steps, &LIMITED_KINDS, Some(LIMIT_CPUS));
    md.push_str(&free.rows.markdown());
    md.push_str(&free.ceilings_markdown(None));
    let _ = write!(
        md,
        "\n**With the node-side agents limited to {LIMIT_CPUS} CPU** (a DaemonSet's \
         `resources.limits.cpu: {}m`): the sensor process, or bpftrace, in a cgroup of its own \
         with a CFS quota; the collector is not limited (it runs off the node in a cluster), nor \
         is the benchmark's reader of bpftrace's output. The target grows by a factor of \
         {:.2} per step from {}/s; past the first step that lost events, two more steps halve \
         (in ratio) the interval between the highest target without losses and the lowest with, \
         so that the cliff is located within a factor of 2^(1/8), about 9%.\n\n",
        (LIMIT_CPUS * 1000.0) as u64,
        std::f64::consts::SQRT_2,
        fmt(limited_start, 0),
    );
    md.push_str(&limited.rows.markdown());
    md.push_str(&limited.ceilings_markdown(Some(LIMIT_CPUS)));

    let mut verdicts = Vec::new();
    verdicts.extend(free.verdict("no CPU limit"));
    verdicts.extend(limited.verdict(&format!("agents limited to {LIMIT_CPUS} CPU")));
    let lossy = free.sensor_lossy + limited.sensor_lossy;
    verdicts.push((
        format!(
            "past the ceiling, the sensor's reported drops equal the shortfall exactly, every \
             step ({lossy} sensor steps lost events{})",
            if lossy == 0 {
                ": the accounting was not exercised"
            } else {
                ""
            }
        ),
        free.exact && limited.exact,
    ));
    for (k, limit, why) in skipped {
        let _ = writeln!(md, "\n{} not measured: {why}", label(*k, *limit));
    }
    let mut json_steps = free.json_steps.clone();
    json_steps.extend(limited.json_steps.iter().cloned());
    let json = Json::obj([
        ("repetitions", Json::num(reps as f64)),
        ("step_secs", Json::num(secs)),
        ("cpu_limit_of_limited_run", Json::num(LIMIT_CPUS)),
        ("steps", Json::Arr(json_steps)),
        ("ceilings", free.ceilings_json(None)),
        ("ceilings_limited", limited.ceilings_json(Some(LIMIT_CPUS))),
        ("ahead", ahead_json(&verdicts)),
    ]);
    Section {
        name: "cliff",
        markdown: md,
        json,
        verdicts,
    }
}
