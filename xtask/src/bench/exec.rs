//! Benchmarks 1 and 2: the exec rate sweep (fork + exec + wait of a private copy of
//! /bin/true at fixed rates, then as fast as it goes, in a container's cgroup) and the exec
//! storm (that last, closed-loop step: its throughput against no sensor's).

use std::{fmt::Write as _, time::Duration};

use anyhow::Result;

use super::{
    Ctx,
    peers::{Counts, Cpu, Kind, Observer, SensorOptions},
    report::{Json, Section, Spread, Table, ahead_json},
};

const KINDS: [Kind; 4] = [Kind::None, Kind::Sensor, Kind::Bpftrace, Kind::Auditd];

/// One step of one repetition of one configuration.
struct Step {
    kind: Kind,
    rate: f64,
    execs: u64,
    secs: f64,
    stored: Counts,
    cpu: Cpu,
    load_cpu_ns: u64,
}

impl Step {
    fn achieved(&self) -> f64 {
        self.execs as f64 / self.secs.max(1e-9)
    }

    /// Observer CPU (processes + BPF) per exec, µs.
    fn us_per_exec(&self) -> f64 {
        self.per_exec(self.cpu.total())
    }

    fn per_exec(&self, ns: u64) -> f64 {
        ns as f64 / 1e3 / self.execs.max(1) as f64
    }

    /// jobwatch's node side alone (its BPF programs and the sensor process, not the
    /// collector), per exec, µs.
    fn node_us_per_exec(&self) -> f64 {
        self.per_exec(self.cpu.bpf_ns + self.cpu.first_ns)
    }
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let (rates, secs, reps): (&[f64], f64, usize) = if ctx.quick {
        (&[200.0, 0.0], 2.0, 1)
    } else {
        (&[100.0, 200.0, 400.0, 800.0, 0.0], 5.0, 5)
    };
    let opts = SensorOptions {
        include: vec![ctx.keep()],
        report_host_processes: true,
    };
    let mut steps = Vec::new();
    let mut skipped = Vec::new();
    for rep in 0..reps {
        for kind in KINDS {
            if skipped.iter().any(|(k, _)| *k == kind) {
                continue;
            }
            let observer = match Observer::start(ctx, kind, &opts) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("bench exec: {} not measured: {e:#}", kind.name());
                    skipped.push((kind, format!("{e:#}")));
                    continue;
                }
            };
            for &rate in rates {
                let before = observer.counts(ctx)?;
                let cpu0 = observer.cpu();
                let done = ctx.load(&ctx.spec("exec", rate, secs, true), Some(&observer))?;
                let want = Counts {
                    execs: before.execs + done.execs,
                    ..before
                };
                let settled = observer.settle(ctx, want, Duration::from_secs(3))?;
                let (after, cpu) = (settled.counts, settled.cpu.minus(cpu0));
                let step = Step {
                    kind,
                    rate,
                    execs: done.execs,
                    secs: done.secs,
                    stored: after.minus(before),
                    cpu,
                    load_cpu_ns: done.cpu_ns,
                };
                eprintln!(
                    "    rep {} {:>9} {:>5}: {} execs at {:.0}/s, stored {} (attributed {}), \
                     {:.1} µs CPU per exec ({:.1} in BPF)",
                    rep + 1,
                    kind.name(),
                    rate_name(rate),
                    step.execs,
                    step.achieved(),
                    step.stored.execs,
                    step.stored.attributed,
                    step.us_per_exec(),
                    step.cpu.bpf_ns as f64 / 1e3 / step.execs.max(1) as f64,
                );
                steps.push(step);
            }
        }
    }
    Ok(section(ctx, rates, secs, reps, &steps, &skipped))
}

/// jobwatch's CPU per exec by part, and its node side (BPF + sensor) against bpftrace, which
/// is a node-side tracer only (it stores nothing and detects nothing).
fn parts(rates: &[f64], steps: &[Step]) -> String {
    let mut t = Table::new(&[
        "rate",
        "BPF µs",
        "sensor µs",
        "collector µs",
        "node side (BPF + sensor) µs",
        "bpftrace / node side",
    ]);
    let mut any = false;
    for &rate in rates {
        let ours = of(steps, Kind::Sensor, rate);
        if ours.is_empty() {
            continue;
        }
        any = true;
        let spread =
            |f: &dyn Fn(&Step) -> f64| Spread::of(&ours.iter().map(|x| f(x)).collect::<Vec<_>>());
        let bpftrace = of(steps, Kind::Bpftrace, rate);
        let ratio = if bpftrace.is_empty() {
            "–".to_string()
        } else {
            let v: Vec<f64> = bpftrace
                .iter()
                .zip(&ours)
                .map(|(b, o)| b.us_per_exec() / o.node_us_per_exec())
                .collect();
            format!("{}x", Spread::of(&v).show(1))
        };
        t.row(vec![
            rate_name(rate),
            spread(&|x| x.per_exec(x.cpu.bpf_ns)).show(1),
            spread(&|x| x.per_exec(x.cpu.first_ns)).show(1),
            spread(&|x| x.per_exec(x.cpu.user_ns.saturating_sub(x.cpu.first_ns))).show(1),
            spread(&|x| x.node_us_per_exec()).show(1),
            ratio,
        ]);
    }
    if !any {
        return String::new();
    }
    format!(
        "\njobwatch's CPU per exec by part (median, min–max): its BPF programs, the sensor \
         process, the collector process (storage in SQLite and the detection rules), and the \
         node side alone against bpftrace's whole CPU per exec in the same repetition.\n\n{}",
        t.markdown()
    )
}

fn rate_name(rate: f64) -> String {
    if rate > 0.0 {
        format!("{rate:.0}/s")
    } else {
        "max".into()
    }
}

fn of(steps: &[Step], kind: Kind, rate: f64) -> Vec<&Step> {
    steps
        .iter()
        .filter(|s| s.kind == kind && s.rate == rate)
        .collect()
}

/// Per-repetition ratios a/b of two configurations' values at the same step.
fn paired(a: &[&Step], b: &[&Step], f: impl Fn(&Step) -> f64) -> Spread {
    let v: Vec<f64> = a.iter().zip(b).map(|(x, y)| f(x) / f(y)).collect();
    Spread::of(&v)
}

fn section(
    ctx: &Ctx,
    rates: &[f64],
    secs: f64,
    reps: usize,
    steps: &[Step],
    skipped: &[(Kind, String)],
) -> Section {
    let mut md = format!(
        "## 1. Exec rate sweep ({reps} repetitions, {secs:.0} s per step, configurations \
         alternated)\n\nfork + exec + wait of a private copy of /bin/true, inside a cgroup shaped \
         like a containerd container's (`/kubepods/besteffort/pod<uid>/<id>`, own mount \
         namespace). CPU = the CPU time, to the ns, of every process of the configuration \
         (sensor + collector; bpftrace; auditd + kauditd: each process counted in a cgroup of \
         its own, kauditd by its schedstat) + in-kernel BPF run time of its programs, \
         from the start of a step until its events are stored, per exec the workload made. \
         Median (min–max) over repetitions.\n\n"
    );
    let mut t = Table::new(&[
        "rate",
        "configuration",
        "execs/s achieved",
        "CPU µs per exec",
        "of which BPF µs",
        "ratio to jobwatch",
        "recorded / generated",
        "attributed",
        "lost (reported)",
    ]);
    let mut json_steps = Vec::new();
    let mut verdicts = Vec::new();
    let (mut vs_audit, mut vs_bpftrace, mut complete, mut attributed) = (true, true, true, true);
    let mut cpu_detail = String::new();
    for &rate in rates {
        let ours = of(steps, Kind::Sensor, rate);
        for kind in KINDS {
            let s = of(steps, kind, rate);
            if s.is_empty() {
                continue;
            }
            let cpu = Spread::of(&s.iter().map(|x| x.us_per_exec()).collect::<Vec<_>>());
            let bpf = Spread::of(
                &s.iter()
                    .map(|x| x.cpu.bpf_ns as f64 / 1e3 / x.execs.max(1) as f64)
                    .collect::<Vec<_>>(),
            );
            let achieved = Spread::of(&s.iter().map(|x| x.achieved()).collect::<Vec<_>>());
            let gen_: u64 = s.iter().map(|x| x.execs).sum();
            let rec: u64 = s.iter().map(|x| x.stored.execs).sum();
            let att: u64 = s.iter().map(|x| x.stored.attributed).sum();
            let lost: u64 = s.iter().map(|x| x.stored.lost).sum();
            let ratio = if kind == Kind::None || kind == Kind::Sensor || ours.is_empty() {
                None
            } else {
                Some(paired(&s, &ours, Step::us_per_exec))
            };
            let load = Spread::of(
                &s.iter()
                    .map(|x| x.load_cpu_ns as f64 / 1e3 / x.execs.max(1) as f64)
                    .collect::<Vec<_>>(),
            );
            let _ = writeln!(
                cpu_detail,
                "| {} | {} | {} |",
                rate_name(rate),
                kind.name(),
                load.show(0)
            );
            t.row(vec![
                rate_name(rate),
                kind.name().into(),
                achieved.show(0),
                if kind == Kind::None {
                    "–".into()
                } else {
                    cpu.show(1)
                },
                if kind == Kind::None {
                    "–".into()
                } else {
                    bpf.show(1)
                },
                ratio.map_or("–".into(), |r| format!("{}x", r.show(1))),
                if kind == Kind::None {
                    "–".into()
                } else {
                    format!(
                        "{rec} / {gen_} ({:.2}%)",
                        100.0 * rec as f64 / gen_.max(1) as f64
                    )
                },
                match kind {
                    Kind::None => "–".into(),
                    Kind::Auditd => "no container id in audit records".into(),
                    _ if ctx.container.is_none() => "not measured".into(),
                    _ => format!("{att} / {rec}"),
                },
                if kind == Kind::None {
                    "–".into()
                } else {
                    lost.to_string()
                },
            ]);
            if kind == Kind::Sensor {
                complete &= rec == gen_;
                attributed &= ctx.container.is_some() && att == rec;
            }
            if let Some(r) = ratio {
                // ours <= 1/3 of auditd's  <=>  auditd/ours >= 3.
                if kind == Kind::Auditd && rate > 0.0 {
                    vs_audit &= r.median >= 3.0;
                }
                if kind == Kind::Bpftrace && rate > 0.0 {
                    vs_bpftrace &= r.median >= 2.0;
                }
            }
            json_steps.push(Json::obj([
                ("rate", Json::num(rate)),
                ("configuration", Json::str(kind.key())),
                ("execs_per_sec", achieved.json()),
                ("cpu_us_per_exec", cpu.json()),
                ("bpf_us_per_exec", bpf.json()),
                ("workload_cpu_us_per_exec", load.json()),
                (
                    "cpu_ratio_to_jobwatch",
                    ratio.map_or(Json::Null, |r| r.json()),
                ),
                ("generated", Json::num(gen_ as f64)),
                ("recorded", Json::num(rec as f64)),
                ("attributed", Json::num(att as f64)),
                ("lost_reported", Json::num(lost as f64)),
            ]));
        }
    }
    md.push_str(&t.markdown());
    let _ = writeln!(
        md,
        "\nRatio to jobwatch: the configuration's CPU per exec divided by jobwatch's in the same \
         repetition. Attributed: exec events stored with the container id of the cgroup they \
         ran in (containerd is not running in the benchmark, so pod and workload metadata are \
         not part of this check)."
    );
    md.push_str(&parts(rates, steps));
    let have = |k| steps.iter().any(|s| s.kind == k);
    if have(Kind::Auditd) {
        verdicts.push((
            "CPU per exec <= 1/3 of auditd's at every fixed rate (median paired ratio >= 3)".into(),
            vs_audit,
        ));
    }
    if have(Kind::Bpftrace) {
        verdicts.push((
            "CPU per exec <= 1/2 of bpftrace's at every fixed rate (median paired ratio >= 2)"
                .into(),
            vs_bpftrace,
        ));
    }
    verdicts.push(("100% of execs stored, at every rate".into(), complete));
    verdicts.push((
        "every exec event attributed to its container".into(),
        attributed,
    ));

    // 2. Exec storm: the closed-loop step.
    let _ = write!(
        md,
        "\n## 2. Exec storm (closed fork + exec + wait loop: the sweep's `max` step)\n\n"
    );
    let none = of(steps, Kind::None, 0.0);
    let mut storm = Table::new(&["configuration", "execs/s", "ratio to no sensor"]);
    let mut storm_json = Vec::new();
    let mut storm_ok = false;
    for kind in KINDS {
        let s = of(steps, kind, 0.0);
        if s.is_empty() {
            continue;
        }
        let rate = Spread::of(&s.iter().map(|x| x.achieved()).collect::<Vec<_>>());
        let ratio = paired(&s, &none, Step::achieved);
        if kind == Kind::Sensor {
            storm_ok = ratio.median >= 0.95;
        }
        storm.row(vec![
            kind.name().into(),
            rate.show(0),
            format!("{}", ratio.show(3)),
        ]);
        storm_json.push(Json::obj([
            ("configuration", Json::str(kind.key())),
            ("execs_per_sec", rate.json()),
            ("ratio_to_none", ratio.json()),
        ]));
    }
    md.push_str(&storm.markdown());
    verdicts.push((
        "exec storm throughput >= 95% of no sensor's (median paired ratio)".into(),
        storm_ok,
    ));
    let _ = write!(
        md,
        "\nWorkload's own CPU per exec (fork, exec, wait; BPF programs run in its context):\n\n\
         | rate | configuration | µs per exec |\n|---|---|---|\n{cpu_detail}"
    );
    for (k, why) in skipped {
        let _ = writeln!(md, "\n{} not measured: {why}", k.name());
    }
    let json = Json::obj([
        ("repetitions", Json::num(reps as f64)),
        ("step_secs", Json::num(secs)),
        ("sweep", Json::Arr(json_steps)),
        ("storm", Json::Arr(storm_json)),
        ("ahead", ahead_json(&verdicts)),
    ]);
    Section {
        name: "exec",
        markdown: md,
        json,
        verdicts,
    }
}
