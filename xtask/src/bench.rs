//! `cargo xtask bench`: sensor -> collector throughput on this machine.
//!
//! Starts the release collector (SQLite in a temporary directory) and the release sensor
//! reporting to it, filtered in the kernel to one benchmark directory; creates files there as
//! fast as two threads can (on tmpfs); and measures how fast the events are stored by the collector, and
//! what was lost and where (kernel ring buffer, sensor queue, reporter buffer). Several runs;
//! the median is reported. Results go to `target/bench/throughput.{md,json}`.

use std::{
    io::{BufRead, BufReader},
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result, bail};

use crate::{process, run, setup};

/// Threads creating files: one per core of the 2-core machine.
const GENERATOR_THREADS: usize = 2;

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

/// A child killed when dropped.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        // SAFETY: signalling our own child by pid.
        unsafe { libc::kill(self.0.id() as i32, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.0.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

pub fn run(workspace_root: &Path, quick: bool) -> Result<()> {
    setup::run(workspace_root)?;
    run::build(workspace_root)?;
    let release = crate::host_target_dir(workspace_root).join("release");
    let (files, runs) = if quick { (20_000, 1) } else { (200_000, 5) };
    let mut samples = Vec::new();
    for i in 0..runs {
        let sample = one_run(&release, files).with_context(|| format!("run {}", i + 1))?;
        eprintln!(
            "==> run {}: generated {} in {:.2}s ({:.0}/s); stored {} in {:.2}s ({:.0}/s); lost {}",
            i + 1,
            sample.generated,
            sample.generate_secs,
            sample.generated_per_sec(),
            sample.stored,
            sample.end_to_end_secs,
            sample.stored_per_sec(),
            sample.lost
        );
        samples.push(sample);
    }
    report(workspace_root, &samples, quick)
}

fn one_run(release: &Path, files: u64) -> Result<Sample> {
    let dir = std::env::temp_dir().join(format!("jobwatch-bench-{}", std::process::id()));
    // The files are created on tmpfs: the disk of a small VM creates only a few thousand files
    // a second, which would measure the disk, not the sensor.
    let load = Path::new("/dev/shm").join(format!("jobwatch-bench-{}", std::process::id()));
    for d in [&dir, &load] {
        let _ = std::fs::remove_dir_all(d);
        std::fs::create_dir_all(d).with_context(|| format!("creating {}", d.display()))?;
    }
    let result = measure(release, &dir, &load, files);
    let _ = std::fs::remove_dir_all(&dir);
    let _ = std::fs::remove_dir_all(&load);
    result
}

fn measure(release: &Path, dir: &Path, load: &Path, files: u64) -> Result<Sample> {
    let socket = dir.join("collector.sock");
    let mut collector = Command::new(release.join("collector"));
    collector
        .arg("--db")
        .arg(dir.join("bench.db"))
        .arg("--socket")
        .arg(&socket);
    process::remove_outer_cargo_env(&mut collector);
    let _collector = Running(
        collector
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()?,
    );
    wait_for(|| socket.exists(), "the collector's socket")?;

    let config = dir.join("sensor.toml");
    std::fs::write(
        &config,
        format!(
            "stdout_json = false\nring_buffer_bytes = 67108864\nevent_queue_capacity = 262144\n\
             include_path_prefixes = [\"{}/\"]\n[containerd]\nenabled = false\n[api]\nsocket = \
             \"{}\"\n[report]\nsocket = \"{}\"\nbuffer_events = 1000000\n",
            load.display(),
            dir.join("sensor.sock").display(),
            socket.display()
        ),
    )?;
    let mut sensor = Command::new(release.join("sensor"));
    sensor.arg("--config").arg(&config).env("RUST_LOG", "info");
    process::remove_outer_cargo_env(&mut sensor);
    let mut sensor = sensor
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()?;
    let stderr = sensor.stderr.take().context("sensor stderr")?;
    let _sensor = Running(sensor);
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            if line.contains("sensor running") {
                let _ = tx.send(());
            }
        }
    });
    rx.recv_timeout(Duration::from_secs(60))
        .context("the sensor did not start")?;

    let cli = release.join("jobwatch");
    let baseline = stored(&cli, &socket)?;
    let start = Instant::now();
    let threads = GENERATOR_THREADS as u64;
    let workers: Vec<_> = (0..threads)
        .map(|t| {
            let dir = load.join(format!("t{t}"));
            std::thread::spawn(move || -> std::io::Result<()> {
                std::fs::create_dir_all(&dir)?;
                for i in 0..files / threads {
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
    // Done when the collector stops growing for a second (or has everything).
    let mut last = baseline;
    let mut last_change = Instant::now();
    let mut done_at = start.elapsed();
    loop {
        std::thread::sleep(Duration::from_millis(100));
        let now = stored(&cli, &socket)?;
        if now != last {
            last = now;
            last_change = Instant::now();
            done_at = start.elapsed();
        }
        if last - baseline >= files || last_change.elapsed() > Duration::from_secs(2) {
            break;
        }
    }
    let counters = sensor_counters(&cli, &dir.join("sensor.sock"))?;
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

fn wait_for(ready: impl Fn() -> bool, what: &str) -> Result<()> {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !ready() {
        if Instant::now() > deadline {
            bail!("{what} did not appear within 30 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(())
}

/// Events stored by the collector, from `jobwatch status`.
fn stored(cli: &Path, socket: &Path) -> Result<u64> {
    let out = Command::new(cli)
        .arg("--collector")
        .arg(socket)
        .arg("status")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    text.lines()
        .find_map(|l| l.strip_prefix("events stored: "))
        .and_then(|v| v.trim().parse().ok())
        .with_context(|| format!("no 'events stored' in the collector status: {text}"))
}

/// The sensor's counters, from `jobwatch status` (lines `name=value`).
fn sensor_counters(cli: &Path, socket: &Path) -> Result<Vec<(String, u64)>> {
    let out = Command::new(cli)
        .arg("--sensor")
        .arg(socket)
        .arg("status")
        .output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    Ok(text
        .lines()
        .filter_map(|l| {
            let (name, value) = l.trim().split_once('=')?;
            Some((name.trim().to_string(), value.trim().parse().ok()?))
        })
        .collect())
}

fn median(mut values: Vec<f64>) -> f64 {
    values.sort_by(|a, b| a.total_cmp(b));
    values.get(values.len() / 2).copied().unwrap_or(0.0)
}

fn report(workspace_root: &Path, samples: &[Sample], quick: bool) -> Result<()> {
    let out_dir: PathBuf = crate::host_target_dir(workspace_root).join("bench");
    std::fs::create_dir_all(&out_dir)?;
    let stored = median(samples.iter().map(Sample::stored_per_sec).collect());
    let generated = median(samples.iter().map(Sample::generated_per_sec).collect());
    let (min, max) = samples
        .iter()
        .map(Sample::stored_per_sec)
        .fold((f64::MAX, 0.0f64), |(lo, hi), v| (lo.min(v), hi.max(v)));
    let lost: u64 = samples.iter().map(|s| s.lost).sum();
    let all_stored = samples.iter().all(|s| s.stored + s.lost >= s.generated);
    let mut md = format!(
        "# sensor -> collector throughput ({})\n\n| runs | events per run | generated/s (median) | \
         stored/s end to end (median) | min | max | lost (all runs) |\n|---|---|---|---|---|---|---|\n\
         | {} | {} | {generated:.0} | {stored:.0} | {min:.0} | {max:.0} | {lost} |\n",
        if quick { "quick" } else { "full" },
        samples.len(),
        samples.first().map(|s| s.generated).unwrap_or(0),
    );
    md.push_str(&format!(
        "\nEvery generated event stored or counted lost: {all_stored}. Target: 50,000 events/s \
         sustained with zero loss.\n"
    ));
    let json = format!(
        "{{\"quick\":{quick},\"runs\":{},\"generated_per_sec_median\":{generated:.0},\
         \"stored_per_sec_median\":{stored:.0},\"stored_per_sec_min\":{min:.0},\
         \"stored_per_sec_max\":{max:.0},\"lost_total\":{lost}}}\n",
        samples.len()
    );
    std::fs::write(out_dir.join("throughput.md"), &md)?;
    std::fs::write(out_dir.join("throughput.json"), json)?;
    println!("{md}");
    eprintln!("==> results in {}", out_dir.display());
    Ok(())
}
