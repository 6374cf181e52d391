//! Losses counted by event kind: which events a full userspace queue or reporter buffer
//! dropped, as the kernel counts its own per kind (`kernel_lost_ringbuf_full_{exec,exit,file}`).
//! An operator sees which half of a process's story, or which files, went missing; the
//! benchmark checks that what the collector lacks equals what the sensor reported lost.

use std::sync::atomic::{AtomicU64, Ordering};

/// The kinds losses are counted by.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum LossKind {
    Exec,
    Exit,
    File,
    /// Containers, loss records.
    #[default]
    Other,
}

impl LossKind {
    pub const ALL: [LossKind; 4] = [
        LossKind::Exec,
        LossKind::Exit,
        LossKind::File,
        LossKind::Other,
    ];

    /// The suffix of its counters (`queue_full_exec`, ...) and its metrics label.
    pub fn name(self) -> &'static str {
        match self {
            LossKind::Exec => "exec",
            LossKind::Exit => "exit",
            LossKind::File => "file",
            LossKind::Other => "other",
        }
    }

    fn index(self) -> usize {
        self as usize
    }
}

/// Drops of one cause, by kind.
#[derive(Debug, Default)]
pub struct PerKind([AtomicU64; 4]);

impl PerKind {
    pub fn add(&self, kind: LossKind, n: u64) {
        self.0[kind.index()].fetch_add(n, Ordering::Relaxed);
    }

    pub fn get(&self, kind: LossKind) -> u64 {
        self.0[kind.index()].load(Ordering::Relaxed)
    }

    /// Every kind's drops.
    pub fn total(&self) -> u64 {
        LossKind::ALL.iter().map(|&k| self.get(k)).sum()
    }

    /// `(prefix_kind, count)` for every kind, as status counters.
    pub fn named(&self, prefix: &str) -> Vec<(String, u64)> {
        LossKind::ALL
            .iter()
            .map(|&k| (format!("{prefix}_{}", k.name()), self.get(k)))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counts_each_kind_apart_and_sums_them() {
        let p = PerKind::default();
        p.add(LossKind::Exec, 2);
        p.add(LossKind::File, 5);
        p.add(LossKind::File, 1);
        assert_eq!(p.get(LossKind::Exec), 2);
        assert_eq!(p.get(LossKind::Exit), 0);
        assert_eq!(p.get(LossKind::File), 6);
        assert_eq!(p.get(LossKind::Other), 0);
        assert_eq!(p.total(), 8);
        assert_eq!(
            p.named("queue_full"),
            vec![
                ("queue_full_exec".to_string(), 2),
                ("queue_full_exit".to_string(), 0),
                ("queue_full_file".to_string(), 6),
                ("queue_full_other".to_string(), 0),
            ]
        );
    }
}
