//! Loading the eBPF object into the kernel and attaching its programs.
//!
//! Which program hooks where lives in one table, [`HOOKS`]; a hook that is optional may fail
//! to attach (an older kernel without the function) with a warning, a required one stops the
//! sensor with a message that names it and, for verifier rejections, the verifier's log.

use std::path::Path;

use aya::{
    Btf, Ebpf, EbpfLoader,
    maps::{Array, LpmTrie, MapData, PerCpuArray, RingBuf, lpm_trie::Key},
    programs::{BtfTracePoint, ProgramError, TracePoint},
};
use sensor_common::{FilterConfig, LoadConfig, PATH_FILTER_KEY_LEN, counter, path_action};

use crate::{btf, config::Config, host, kernel_offsets};

/// The eBPF object, built by `cargo xtask build-ebpf` (the same build sensor/build.rs runs).
pub static EBPF_OBJECT: &[u8] = aya::include_bytes_aligned!(env!("JOBWATCH_EBPF_OBJECT"));

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HookKind {
    /// A BTF-enabled raw tracepoint (`tp_btf`); the target is the tracepoint's name.
    BtfTracepoint,
    /// A `syscalls/<target>` tracepoint; one program may serve several.
    SyscallTracepoint,
}

/// One program and where it attaches.
#[derive(Debug, Clone, Copy)]
pub struct Hook {
    pub program: &'static str,
    pub kind: HookKind,
    /// Where it attaches. Targets the kernel lacks (legacy syscalls on arm64) are skipped.
    pub targets: &'static [&'static str],
    /// The sensor refuses to run unless at least one target attached.
    pub required: bool,
    /// What is missing when it cannot attach.
    pub covers: &'static str,
}

const fn hook(
    program: &'static str,
    kind: HookKind,
    targets: &'static [&'static str],
    required: bool,
    covers: &'static str,
) -> Hook {
    Hook {
        program,
        kind,
        targets,
        required,
        covers,
    }
}

use HookKind::{BtfTracepoint as Btf_, SyscallTracepoint as Sys};

/// Every hook the sensor uses: the one place that says which kernel event feeds what.
pub const HOOKS: &[Hook] = &[
    hook(
        "sched_process_exec",
        Btf_,
        &["sched_process_exec"],
        true,
        "process exec",
    ),
    hook(
        "sched_process_exit",
        Btf_,
        &["sched_process_exit"],
        true,
        "process exit",
    ),
    hook(
        "exit_open",
        Sys,
        &[
            "sys_exit_openat",
            "sys_exit_open",
            "sys_exit_openat2",
            "sys_exit_creat",
        ],
        true,
        "file creation by open",
    ),
    hook("enter_mknod", Sys, &["sys_enter_mknod"], false, "mknod"),
    hook("enter_mknodat", Sys, &["sys_enter_mknodat"], false, "mknod"),
    hook("enter_link", Sys, &["sys_enter_link"], false, "hard links"),
    hook(
        "enter_linkat",
        Sys,
        &["sys_enter_linkat"],
        false,
        "hard links",
    ),
    hook(
        "enter_symlink",
        Sys,
        &["sys_enter_symlink"],
        false,
        "symlinks",
    ),
    hook(
        "enter_symlinkat",
        Sys,
        &["sys_enter_symlinkat"],
        false,
        "symlinks",
    ),
    hook("enter_rename", Sys, &["sys_enter_rename"], false, "renames"),
    hook(
        "enter_renameat",
        Sys,
        &["sys_enter_renameat", "sys_enter_renameat2"],
        false,
        "renames",
    ),
    hook("enter_chmod", Sys, &["sys_enter_chmod"], false, "chmod +x"),
    hook(
        "enter_fchmodat",
        Sys,
        &["sys_enter_fchmodat", "sys_enter_fchmodat2"],
        false,
        "chmod +x",
    ),
    hook(
        "enter_fchmod",
        Sys,
        &["sys_enter_fchmod"],
        false,
        "chmod +x",
    ),
    hook(
        "exit_file_syscall",
        Sys,
        &[
            "sys_exit_mknod",
            "sys_exit_mknodat",
            "sys_exit_link",
            "sys_exit_linkat",
            "sys_exit_symlink",
            "sys_exit_symlinkat",
            "sys_exit_rename",
            "sys_exit_renameat",
            "sys_exit_renameat2",
            "sys_exit_chmod",
            "sys_exit_fchmodat",
            "sys_exit_fchmodat2",
            "sys_exit_fchmod",
        ],
        true,
        "mknod, link, symlink, rename and chmod results",
    ),
];

#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error(transparent)]
    Privileges(#[from] host::PrivilegeError),
    #[error(
        "kernel BTF is not available at {path} ({source}); jobwatch needs a kernel built with \
         CONFIG_DEBUG_INFO_BTF=y"
    )]
    NoBtf { path: String, source: btf::BtfError },
    #[error("cannot read kernel BTF for attaching: {0}")]
    AyaBtf(#[from] aya::BtfError),
    #[error(transparent)]
    Offsets(#[from] kernel_offsets::OffsetsError),
    #[error("loading the eBPF object failed: {0}")]
    Object(#[from] aya::EbpfError),
    #[error("the eBPF object has no program {0}")]
    MissingProgram(&'static str),
    #[error(
        "the kernel verifier rejected program {program} (hook {target}): {io_error}\nverifier log:\n{log}"
    )]
    Verifier {
        program: &'static str,
        target: &'static str,
        io_error: std::io::Error,
        log: String,
    },
    #[error("cannot load program {program} for {target}: {source}")]
    Program {
        program: &'static str,
        target: &'static str,
        source: ProgramError,
    },
    #[error("cannot attach program {program} to {target}: {source}")]
    Attach {
        program: &'static str,
        target: &'static str,
        source: ProgramError,
    },
    #[error(
        "program {program} attached nowhere: the kernel offers none of its hooks, so there would be no {covers} events"
    )]
    NoTarget {
        program: &'static str,
        covers: &'static str,
    },
    #[error("eBPF map {name}: {source}")]
    Map {
        name: &'static str,
        source: aya::maps::MapError,
    },
}

/// The loaded programs and the maps userspace works with.
pub struct Probes {
    /// Keeps programs and links alive; dropping it detaches everything.
    ebpf: Ebpf,
    pub ring: RingBuf<MapData>,
    counters: PerCpuArray<MapData, u64>,
    /// The hooks attached, by program name.
    pub attached: Vec<&'static str>,
    /// Hook targets that could not attach (absent on this kernel), with the reason.
    pub skipped: Vec<(&'static str, String)>,
    /// The offsets and settings the programs run with.
    pub load_config: LoadConfig,
    pub v1_controller: Option<String>,
}

impl Probes {
    /// Loads and attaches everything, and sets the filters from `config`.
    pub fn load(config: &Config) -> Result<Probes, LoadError> {
        host::check_privileges()?;
        host::raise_memlock();

        let vmlinux = btf::Btf::from_file(Path::new(btf::Btf::VMLINUX)).map_err(|source| {
            LoadError::NoBtf {
                path: btf::Btf::VMLINUX.to_string(),
                source,
            }
        })?;
        let proc_cgroups = std::fs::read_to_string("/proc/cgroups").unwrap_or_default();
        let v1_controller = host::choose_v1_controller(&proc_cgroups, &config.cgroup_v1_controller);
        let offsets = kernel_offsets::resolve(&vmlinux, v1_controller.as_deref())?;
        let load_config = LoadConfig {
            offsets,
            host_mntns: host::host_mntns_or_own(Path::new("/proc")),
            args_max: config.args_max_bytes,
            _pad: 0,
            wakeup_bytes: config.wakeup_bytes,
        };

        let aya_btf = Btf::from_sys_fs()?;
        let mut ebpf = EbpfLoader::new()
            .btf(Some(&aya_btf))
            .override_global("LOAD_CONFIG", &load_config, true)
            .map_max_entries("EVENTS", config.ring_buffer_bytes)
            .load(EBPF_OBJECT)?;

        // eBPF-side diagnostics (rare errors) arrive through aya-log.
        match aya_log::EbpfLogger::init(&mut ebpf) {
            Ok(logger) => spawn_log_drain(logger),
            Err(e) => tracing::warn!(error = %e, "eBPF log channel unavailable"),
        }

        host::ensure_tracefs();
        let mut attached = Vec::new();
        let mut skipped = Vec::new();
        for hook in HOOKS {
            let (ok, failures) = attach(&mut ebpf, &aya_btf, hook)?;
            for (target, e) in failures {
                tracing::debug!(program = hook.program, target, error = %e, "hook target not attached");
                skipped.push((target, e.to_string()));
            }
            if ok > 0 {
                attached.push(hook.program);
            } else if hook.required {
                return Err(LoadError::NoTarget {
                    program: hook.program,
                    covers: hook.covers,
                });
            } else {
                tracing::warn!(
                    program = hook.program,
                    "hook not attached: no {} events",
                    hook.covers
                );
            }
        }

        let ring = take_map(&mut ebpf, "EVENTS")?;
        let counters = take_map(&mut ebpf, "COUNTERS")?;
        let mut probes = Probes {
            ebpf,
            ring,
            counters,
            attached,
            skipped,
            load_config,
            v1_controller,
        };
        probes.set_filters(config)?;
        Ok(probes)
    }

    /// Writes the runtime filters: host processes and path prefixes.
    pub fn set_filters(&mut self, config: &Config) -> Result<(), LoadError> {
        let map_err = |name| move |source| LoadError::Map { name, source };
        let mut trie: LpmTrie<&mut MapData, [u8; PATH_FILTER_KEY_LEN], u32> =
            map_mut(&mut self.ebpf, "PATH_FILTER")?
                .try_into()
                .map_err(map_err("PATH_FILTER"))?;
        let entries = config
            .ignore_path_prefixes
            .iter()
            .map(|p| (p, path_action::IGNORE))
            .chain(
                config
                    .include_path_prefixes
                    .iter()
                    .map(|p| (p, path_action::REPORT)),
            );
        let mut active = 0;
        for (prefix, action) in entries {
            let mut data = [0u8; PATH_FILTER_KEY_LEN];
            let bytes = prefix.as_bytes();
            let n = bytes.len().min(PATH_FILTER_KEY_LEN);
            data[..n].copy_from_slice(&bytes[..n]);
            trie.insert(&Key::new((n * 8) as u32, data), action, 0)
                .map_err(map_err("PATH_FILTER"))?;
            active = 1;
        }
        let filter = FilterConfig {
            report_host: u32::from(config.report_host_processes),
            path_filter_active: active,
            path_default: if config.include_path_prefixes.is_empty() {
                path_action::REPORT
            } else {
                path_action::IGNORE
            },
            _pad: 0,
        };
        let mut array: Array<&mut MapData, FilterConfig> = map_mut(&mut self.ebpf, "FILTER")?
            .try_into()
            .map_err(map_err("FILTER"))?;
        array.set(0, filter, 0).map_err(map_err("FILTER"))?;
        Ok(())
    }

    /// The kernel-side counters, summed over CPUs, indexed by `sensor_common::counter`.
    pub fn counters(&self) -> KernelCounters {
        sum_counters(&self.counters)
    }

    /// The ring buffer and the counters, for the reader; the rest stays attached while the
    /// returned [`Attached`] lives.
    pub fn split(self) -> (RingBuf<MapData>, KernelCounterReader, Attached) {
        (
            self.ring,
            KernelCounterReader {
                counters: self.counters,
            },
            Attached {
                _ebpf: self.ebpf,
                attached: self.attached,
            },
        )
    }
}

/// Owns the loaded programs: dropping it detaches them.
pub struct Attached {
    _ebpf: Ebpf,
    pub attached: Vec<&'static str>,
}

/// Reads the kernel counters after the probes were split.
pub struct KernelCounterReader {
    counters: PerCpuArray<MapData, u64>,
}

impl KernelCounterReader {
    pub fn read(&self) -> KernelCounters {
        sum_counters(&self.counters)
    }

    /// [`KernelCounters::lost_ringbuf`], reading only its three counters (the reader asks
    /// every tick; each counter is a lookup, a system call).
    pub fn lost_ringbuf(&self) -> u64 {
        [
            counter::LOST_RINGBUF_EXEC,
            counter::LOST_RINGBUF_EXIT,
            counter::LOST_RINGBUF_FILE,
        ]
        .iter()
        .filter_map(|i| self.counters.get(i, 0).ok())
        .map(|per_cpu| per_cpu.iter().sum::<u64>())
        .sum()
    }
}

fn sum_counters(map: &PerCpuArray<MapData, u64>) -> KernelCounters {
    let mut values = [0u64; counter::COUNT as usize];
    for (i, slot) in values.iter_mut().enumerate() {
        if let Ok(per_cpu) = map.get(&(i as u32), 0) {
            *slot = if i as u32 == counter::RINGBUF_USED_BYTES {
                // A gauge: the fullest any CPU saw it.
                per_cpu.iter().copied().max().unwrap_or(0)
            } else {
                per_cpu.iter().sum()
            };
        }
    }
    KernelCounters { values }
}

/// Kernel counters summed over CPUs.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct KernelCounters {
    pub values: [u64; counter::COUNT as usize],
}

impl KernelCounters {
    pub fn get(&self, index: u32) -> u64 {
        self.values.get(index as usize).copied().unwrap_or(0)
    }

    /// Records lost in the kernel because the ring buffer was full, all kinds.
    pub fn lost_ringbuf(&self) -> u64 {
        self.get(counter::LOST_RINGBUF_EXEC)
            + self.get(counter::LOST_RINGBUF_EXIT)
            + self.get(counter::LOST_RINGBUF_FILE)
    }

    /// (name, value) pairs, for logs and metrics.
    pub fn named(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        counter::NAMES
            .iter()
            .copied()
            .zip(self.values.iter().copied())
    }
}

fn missing_map(name: &'static str) -> LoadError {
    LoadError::Map {
        name,
        source: aya::maps::MapError::InvalidName {
            name: name.to_string(),
        },
    }
}

fn map_mut<'a>(
    ebpf: &'a mut Ebpf,
    name: &'static str,
) -> Result<&'a mut aya::maps::Map, LoadError> {
    ebpf.map_mut(name).ok_or_else(|| missing_map(name))
}

fn take_map<T>(ebpf: &mut Ebpf, name: &'static str) -> Result<T, LoadError>
where
    T: TryFrom<aya::maps::Map, Error = aya::maps::MapError>,
{
    let map = ebpf.take_map(name).ok_or_else(|| missing_map(name))?;
    T::try_from(map).map_err(|source| LoadError::Map { name, source })
}

fn load_error(hook: &Hook, target: &'static str, e: ProgramError) -> LoadError {
    match e {
        ProgramError::LoadError {
            io_error,
            verifier_log,
        } => LoadError::Verifier {
            program: hook.program,
            target,
            io_error,
            log: verifier_log.to_string(),
        },
        source => LoadError::Program {
            program: hook.program,
            target,
            source,
        },
    }
}

/// How many targets of a hook attached, and why the others did not.
type Attachments = (usize, Vec<(&'static str, LoadError)>);

/// Loads a hook's program and attaches it to each of its targets; a program the verifier
/// rejects is an error.
fn attach(ebpf: &mut Ebpf, btf: &Btf, hook: &Hook) -> Result<Attachments, LoadError> {
    let program = ebpf
        .program_mut(hook.program)
        .ok_or(LoadError::MissingProgram(hook.program))?;
    let attach_err = |target, source| LoadError::Attach {
        program: hook.program,
        target,
        source,
    };
    let mut ok = 0;
    let mut failures = Vec::new();
    match hook.kind {
        HookKind::BtfTracepoint => {
            let p: &mut BtfTracePoint = program
                .try_into()
                .map_err(|e| attach_err(hook.targets[0], e))?;
            for target in hook.targets {
                p.load(target, btf)
                    .map_err(|e| load_error(hook, target, e))?;
                p.attach().map_err(|e| attach_err(target, e))?;
                ok += 1;
            }
        }
        HookKind::SyscallTracepoint => {
            let p: &mut TracePoint = program
                .try_into()
                .map_err(|e| attach_err(hook.targets[0], e))?;
            p.load().map_err(|e| load_error(hook, hook.targets[0], e))?;
            for target in hook.targets {
                match p.attach("syscalls", target) {
                    Ok(_) => ok += 1,
                    Err(e) => failures.push((*target, attach_err(target, e))),
                }
            }
        }
    }
    Ok((ok, failures))
}

/// Forwards eBPF-side log records to `tracing` (through the `log` bridge).
fn spawn_log_drain(logger: aya_log::EbpfLogger<&'static dyn log::Log>) {
    let Ok(handle) = tokio::runtime::Handle::try_current() else {
        tracing::debug!("no async runtime: eBPF log records are not drained");
        return;
    };
    handle.spawn(async move {
        // SAFETY: the logger owns its ring buffer fd and the AsyncFd owns the logger.
        let registered = unsafe {
            tokio::io::unix::AsyncFd::register_with_interest(logger, tokio::io::Interest::READABLE)
        };
        let mut fd = match registered {
            Ok(fd) => fd,
            Err(e) => {
                tracing::warn!(error = %e, "cannot poll the eBPF log channel");
                return;
            }
        };
        loop {
            let Ok(mut guard) = fd.readable_mut().await else {
                return;
            };
            guard.get_inner_mut().flush();
            guard.clear_ready();
        }
    });
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use super::*;

    /// The benchmark's "empty hooks" configuration (its floor) attaches empty programs to
    /// exactly the syscall tracepoints the sensor uses.
    #[test]
    fn bench_floor_lists_every_syscall_tracepoint() {
        let script = include_str!("../../xtask/src/bench/hooks.bt");
        let listed: BTreeSet<&str> = script
            .lines()
            .filter_map(|l| {
                l.trim()
                    .trim_end_matches(',')
                    .strip_prefix("tracepoint:syscalls:")
            })
            .collect();
        let used: BTreeSet<&str> = HOOKS
            .iter()
            .filter(|h| h.kind == HookKind::SyscallTracepoint)
            .flat_map(|h| h.targets.iter().copied())
            .collect();
        assert_eq!(listed, used);
        assert!(used.contains("sys_exit_openat"));
    }
}
