//! Benchmark 3: the file-create storm. `openat(O_CREAT|O_EXCL)` + close + unlink on tmpfs as
//! fast as one process goes, in a directory the sensor reports (`keep/`) and in one its kernel
//! filter drops (`drop/`), outside and inside a container's cgroup.

use std::{fmt::Write as _, time::Duration};

use anyhow::Result;

use super::{
    Ctx,
    peers::{Counts, Kind, Observer, SensorOptions},
    report::{Json, Section, Spread, Table, ahead_json},
};

/// `Hooks` is the floor: the sensor's syscall tracepoints with empty programs.
const KINDS: [Kind; 5] = [
    Kind::None,
    Kind::Hooks,
    Kind::Sensor,
    Kind::Bpftrace,
    Kind::Auditd,
];

#[derive(Clone, Copy, PartialEq, Eq)]
struct Variant {
    keep: bool,
    inside: bool,
}

impl Variant {
    fn name(self) -> String {
        format!(
            "{}, {}",
            if self.keep { "kept" } else { "filtered out" },
            if self.inside { "in container" } else { "host" }
        )
    }
}

struct Run {
    kind: Kind,
    variant: Variant,
    files: u64,
    secs: f64,
    stored: Counts,
}

impl Run {
    fn ns_per_op(&self) -> f64 {
        self.secs * 1e9 / self.files.max(1) as f64
    }

    fn per_sec(&self) -> f64 {
        self.files as f64 / self.secs.max(1e-9)
    }
}

pub fn run(ctx: &Ctx) -> Result<Section> {
    let (secs, reps) = if ctx.quick { (1.0, 1) } else { (3.0, 5) };
    let mut variants = vec![
        Variant {
            keep: true,
            inside: false,
        },
        Variant {
            keep: false,
            inside: false,
        },
    ];
    if ctx.container.is_some() {
        variants.push(Variant {
            keep: true,
            inside: true,
        });
        variants.push(Variant {
            keep: false,
            inside: true,
        });
    }
    let opts = SensorOptions {
        include: vec![ctx.keep()],
        report_host_processes: true,
    };
    let mut runs = Vec::new();
    let mut skipped: Vec<(Kind, String)> = Vec::new();
    for rep in 0..reps {
        for kind in KINDS {
            if skipped.iter().any(|(k, _)| *k == kind) {
                continue;
            }
            let observer = match Observer::start(ctx, kind, &opts) {
                Ok(o) => o,
                Err(e) => {
                    eprintln!("bench files: {} not measured: {e:#}", kind.name());
                    skipped.push((kind, format!("{e:#}")));
                    continue;
                }
            };
            for &variant in &variants {
                let before = observer.counts(ctx)?;
                let mut spec = ctx.spec("create", 0.0, secs, variant.inside);
                if !variant.keep {
                    spec.dir = Some(ctx.drop_dir());
                }
                let done = ctx.load(&spec, Some(&observer))?;
                let want = Counts {
                    files: before.files + if variant.keep { done.files } else { 0 },
                    ..before
                };
                let after = observer.settle(ctx, want, Duration::from_secs(3))?.counts;
                let r = Run {
                    kind,
                    variant,
                    files: done.files,
                    secs: done.secs,
                    stored: after.minus(before),
                };
                eprintln!(
                    "    rep {} {:>9} {:<25} {:.0} creates/s ({:.0} ns each), recorded {}, lost {}",
                    rep + 1,
                    kind.name(),
                    variant.name(),
                    r.per_sec(),
                    r.ns_per_op(),
                    r.stored.files,
                    r.stored.lost
                );
                runs.push(r);
            }
        }
    }

    let mut md = format!(
        "## 3. File-create storm ({reps} repetitions, {secs:.0} s per variant, configurations \
         alternated)\n\n`openat(O_CREAT|O_EXCL)` + close + unlink on tmpfs in a closed loop, one \
         process. Kept: a directory the sensor reports; filtered out: one its in-kernel path \
         filter drops (bpftrace and auditd have no such filter and record both). Latency is \
         the loop's time per file; ratio is to no sensor in the same repetition. Empty hooks: \
         the sensor's syscall tracepoints with empty programs (bpftrace), the floor of any \
         program on them.\n\n"
    );
    let mut t = Table::new(&[
        "variant",
        "configuration",
        "creates/s",
        "ns per create",
        "latency ratio to no sensor",
        "recorded / generated",
        "lost (reported)",
    ]);
    let mut json_rows = Vec::new();
    let mut verdicts = Vec::new();
    for &variant in &variants {
        let of = |k: Kind| -> Vec<&Run> {
            runs.iter()
                .filter(|r| r.kind == k && r.variant == variant)
                .collect()
        };
        let none = of(Kind::None);
        let ours = of(Kind::Sensor);
        let ratio_of = |rs: &[&Run]| {
            Spread::of(
                &rs.iter()
                    .zip(&none)
                    .map(|(r, n)| r.ns_per_op() / n.ns_per_op())
                    .collect::<Vec<_>>(),
            )
        };
        let floor = of(Kind::Hooks);
        for kind in KINDS {
            let rs = of(kind);
            if rs.is_empty() {
                continue;
            }
            let rate = Spread::of(&rs.iter().map(|r| r.per_sec()).collect::<Vec<_>>());
            let lat = Spread::of(&rs.iter().map(|r| r.ns_per_op()).collect::<Vec<_>>());
            let ratio = ratio_of(&rs);
            let gen_: u64 = rs.iter().map(|r| r.files).sum();
            let rec: u64 = rs.iter().map(|r| r.stored.files).sum();
            let lost: u64 = rs.iter().map(|r| r.stored.lost).sum();
            t.row(vec![
                variant.name(),
                kind.name().into(),
                rate.show(0),
                lat.show(0),
                if kind == Kind::None {
                    "1".into()
                } else {
                    format!("{}x", ratio.show(3))
                },
                match kind {
                    _ if !kind.records() => "–".into(),
                    Kind::Sensor if !variant.keep => format!("{rec} (filtered in the kernel)"),
                    _ => format!(
                        "{rec} / {gen_} ({:.1}%)",
                        100.0 * rec as f64 / gen_.max(1) as f64
                    ),
                },
                if kind.records() {
                    lost.to_string()
                } else {
                    "–".into()
                },
            ]);
            json_rows.push(Json::obj([
                ("variant", Json::str(variant.name())),
                ("kept", Json::Bool(variant.keep)),
                ("in_container", Json::Bool(variant.inside)),
                ("configuration", Json::str(kind.key())),
                ("creates_per_sec", rate.json()),
                ("ns_per_create", lat.json()),
                ("latency_ratio_to_none", ratio.json()),
                ("generated", Json::num(gen_ as f64)),
                ("recorded", Json::num(rec as f64)),
                ("lost_reported", Json::num(lost as f64)),
            ]));
            if kind == Kind::Sensor {
                let limit = if variant.keep { 1.25 } else { 1.05 };
                let floor_note = if floor.is_empty() {
                    String::new()
                } else {
                    format!(
                        "; the hooks alone, empty programs on the same tracepoints: {:.3}x",
                        ratio_of(&floor).median
                    )
                };
                verdicts.push((
                    format!(
                        "{}: latency {:.3}x no sensor's (limit {limit}x{floor_note})",
                        variant.name(),
                        ratio.median
                    ),
                    ratio.median <= limit,
                ));
            }
        }
        let audit = of(Kind::Auditd);
        if variant.keep && !audit.is_empty() && !ours.is_empty() {
            let r = Spread::of(
                &ours
                    .iter()
                    .zip(&audit)
                    .map(|(o, a)| o.per_sec() / a.per_sec())
                    .collect::<Vec<_>>(),
            );
            verdicts.push((
                format!(
                    "{}: throughput {:.1}x auditd's (needs >= 10x)",
                    variant.name(),
                    r.median
                ),
                r.median >= 10.0,
            ));
        }
    }
    md.push_str(&t.markdown());
    for (k, why) in &skipped {
        let _ = writeln!(md, "\n{} not measured: {why}", k.name());
    }
    let json = Json::obj([
        ("repetitions", Json::num(reps as f64)),
        ("secs", Json::num(secs)),
        ("rows", Json::Arr(json_rows)),
        ("ahead", ahead_json(&verdicts)),
    ]);
    Ok(Section {
        name: "files",
        markdown: md,
        json,
        verdicts,
    })
}
