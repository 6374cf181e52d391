//! A bounded table of live processes (thread groups), fed by exec and exit events, so that every
//! event can name its parent and its ancestry.
//!
//! The table is built for a daemon under heavy process churn:
//!
//! * memory is bounded: at most `capacity` entries, and the internal insertion-order queue never
//!   holds more than twice the live entries (at least [`COMPACT_MIN`], at most `capacity`), so
//!   a churn of short-lived processes keeps it small;
//! * every operation is O(1) (amortised for [`ProcessTable::on_exec`]);
//! * nothing panics.
//!
//! When the table is full, inserting a new process evicts the entry that was inserted (or last
//! replaced) the longest time ago. Evictions only happen when exit events were missed (lost
//! events, or processes that predate the sensor and were never seeded), so they are counted and
//! exposed by [`ProcessTable::evictions`].

use std::{
    collections::{HashMap, HashSet, VecDeque},
    sync::Arc,
};

use serde::Serialize;

/// Where the information about a process came from.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ProcessSource {
    /// Seen executing by the eBPF programs.
    Exec,
    /// Seeded from `/proc` when the sensor started (the process predates the sensor).
    Procfs,
    /// Created by a fork event: the image is the parent's, no exec has been seen yet.
    Fork,
}

/// What the sensor knows about one process (thread group).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ProcessInfo {
    /// Thread-group id (the "pid" as user space sees it, in the initial pid namespace).
    pub tgid: u32,
    /// Thread-group id of the parent (0 when there is none: init, kthreadd).
    pub ppid: u32,
    /// Start time in nanoseconds since boot (the kernel's `task->start_time`; from `/proc`:
    /// `starttime` ticks * 1e9 / `CLK_TCK`). Together with `tgid` it names a process uniquely.
    pub start_time_ns: u64,
    /// Real user id.
    pub uid: u32,
    /// Command name (`comm`, at most 15 bytes in the kernel).
    pub comm: String,
    /// Absolute path of the executable, as the kernel reports it ("" when unknown).
    pub binary: String,
    /// Command-line arguments, `argv[0]` first.
    /// Shared with the events that carry it (an exec's own argv, and its children's parent
    /// argv): copying it string by string for every event cost about 13 ns per byte.
    pub args: Arc<[String]>,
    /// Working directory ("" when unknown).
    pub cwd: String,
    /// Cgroup v2 id (0 when unknown).
    pub cgroup_id: u64,
    /// Inode number of the mount namespace (0 when unknown).
    pub mntns: u32,
    /// Where this information came from.
    pub source: ProcessSource,
}

/// A parent whose start time is later than its child's by more than this is not the child's real
/// parent: the real parent exited and its pid was reused. The slack absorbs the one-tick
/// (1/`USER_HZ` = 10 ms) truncation of start times read from `/proc`.
const START_TIME_SLACK_NS: u64 = 10_000_000;

/// Ancestry walks up to this many entries check for loops with a linear scan before switching to
/// a hash set.
const LINEAR_LOOP_CHECK_MAX: usize = 16;

/// Upper bound on what [`ProcessTable::new`] preallocates; the maps grow on demand beyond it.
/// Kept small: a node's live processes are usually a few hundred, and a preallocated table's
/// pages are all touched sooner or later (pids cycle through the whole table), so preallocating
/// for the capacity (65,536 by default, about 11 MiB) costs that much resident memory for good.
const MAX_PREALLOCATION: usize = 1 << 10;

/// The insertion-order queue is compacted once it holds more than twice this many items, or
/// twice the live entries when there are more.
pub const COMPACT_MIN: usize = 1 << 10;

#[derive(Debug)]
struct Entry {
    info: ProcessInfo,
    /// Matches the generation of this entry's live item in the insertion-order queue.
    generation: u64,
}

/// A bounded table of live processes keyed by tgid, with eviction of the least recently inserted
/// or updated entry when full. See the module documentation.
#[derive(Debug)]
pub struct ProcessTable {
    entries: HashMap<u32, Entry>,
    /// Insertion order, oldest first. An item is live when `entries[tgid].generation` equals its
    /// generation; other items are stale (the entry exited or was replaced since) and are skipped
    /// lazily. Every live entry has exactly one live item here.
    order: VecDeque<(u32, u64)>,
    next_generation: u64,
    capacity: usize,
    evictions: u64,
}

impl ProcessTable {
    /// Creates an empty table holding at most `capacity` processes (a capacity of 0 is treated
    /// as 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            entries: HashMap::with_capacity(capacity.min(MAX_PREALLOCATION)),
            order: VecDeque::with_capacity(capacity.min(MAX_PREALLOCATION)),
            next_generation: 0,
            capacity,
            evictions: 0,
        }
    }

    /// Records a process: inserts it, or replaces the entry with the same tgid (an exec replaces
    /// the image of an existing process; a reused pid replaces the dead process that held it).
    ///
    /// When the table is full and the tgid is new, the least recently inserted or updated entry
    /// is evicted first and counted in [`evictions`](Self::evictions). O(1) amortised.
    pub fn on_exec(&mut self, info: ProcessInfo) {
        let tgid = info.tgid;
        if !self.entries.contains_key(&tgid) {
            while self.entries.len() >= self.capacity {
                if !self.evict_oldest() {
                    // Unreachable while the queue invariant holds; never loop forever.
                    break;
                }
            }
        }
        let generation = self.next_generation;
        self.next_generation = self.next_generation.wrapping_add(1);
        // Replacing an entry leaves its old queue item behind as a stale one.
        self.entries.insert(tgid, Entry { info, generation });
        self.order.push_back((tgid, generation));
        let floor = COMPACT_MIN.min(self.capacity);
        if self.order.len() > self.entries.len().max(floor).saturating_mul(2) {
            self.compact();
        }
    }

    /// Removes a process that exited and returns what was known about it. O(1).
    pub fn on_exit(&mut self, tgid: u32) -> Option<ProcessInfo> {
        // The queue item becomes stale; it is skipped on eviction and dropped on compaction.
        self.entries.remove(&tgid).map(|entry| entry.info)
    }

    /// Looks a process up by tgid.
    pub fn get(&self, tgid: u32) -> Option<&ProcessInfo> {
        self.entries.get(&tgid).map(|entry| &entry.info)
    }

    /// Ancestry of `tgid`, nearest parent first, at most `max` entries (the process itself is not
    /// included; an unknown `tgid` has no ancestry).
    ///
    /// The walk stops
    /// * at a parent that is not in the table,
    /// * at the pid 0/1 boundary: a process whose ppid is 0 has no parent, and init (pid 1) is
    ///   the last ancestor listed (its own parent is never followed),
    /// * at a parent that started after its child (more than one clock tick later): that entry
    ///   holds a reused pid, not the real parent, which has exited,
    /// * on loops (a tgid already visited).
    ///
    /// Costs O(number of entries returned).
    pub fn ancestors(&self, tgid: u32, max: usize) -> Vec<&ProcessInfo> {
        let mut out: Vec<&ProcessInfo> = Vec::new();
        if max == 0 {
            return out;
        }
        let Some(mut child) = self.get(tgid) else {
            return out;
        };
        // Visited tgids beyond the linear-scan threshold (deep chains only).
        let mut visited: Option<HashSet<u32>> = None;
        while out.len() < max {
            let ppid = child.ppid;
            if ppid == 0 || child.tgid == 1 {
                break;
            }
            let seen = ppid == tgid
                || match &visited {
                    Some(set) => set.contains(&ppid),
                    None => out.iter().any(|p| p.tgid == ppid),
                };
            if seen {
                break;
            }
            let Some(parent) = self.get(ppid) else {
                break;
            };
            if !plausible_parent(parent, child) {
                break;
            }
            out.push(parent);
            if let Some(set) = visited.as_mut() {
                set.insert(ppid);
            } else if out.len() >= LINEAR_LOOP_CHECK_MAX {
                visited = Some(out.iter().map(|p| p.tgid).collect());
            }
            child = parent;
        }
        out
    }

    /// Number of processes in the table.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether the table holds no process.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Maximum number of processes the table holds.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// How many entries were evicted for lack of room since the table was created. Each one is
    /// an exit that was missed (lost events) or a process that was never seen exiting.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }

    /// Evicts the oldest live entry; returns false when there was none.
    fn evict_oldest(&mut self) -> bool {
        while let Some((tgid, generation)) = self.order.pop_front() {
            if self.is_live(tgid, generation) {
                self.entries.remove(&tgid);
                self.evictions = self.evictions.saturating_add(1);
                return true;
            }
        }
        false
    }

    /// Drops the stale items of the insertion-order queue. Afterwards the queue holds exactly one
    /// item per entry. A compaction runs when more than half of the queue is stale, so it
    /// examines at most twice as many items as it drops, and every item is dropped once: O(1)
    /// amortised.
    fn compact(&mut self) {
        let entries = &self.entries;
        self.order.retain(|&(tgid, generation)| {
            entries
                .get(&tgid)
                .is_some_and(|e| e.generation == generation)
        });
    }

    fn is_live(&self, tgid: u32, generation: u64) -> bool {
        self.entries
            .get(&tgid)
            .is_some_and(|entry| entry.generation == generation)
    }

    #[cfg(test)]
    fn order_len(&self) -> usize {
        self.order.len()
    }
}

/// Whether `parent` can be `child`'s parent as far as start times tell (unknown, i.e. zero, start
/// times prove nothing).
fn plausible_parent(parent: &ProcessInfo, child: &ProcessInfo) -> bool {
    parent.start_time_ns == 0
        || child.start_time_ns == 0
        || parent.start_time_ns <= child.start_time_ns.saturating_add(START_TIME_SLACK_NS)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn proc_info(tgid: u32, ppid: u32, start_time_ns: u64, comm: &str) -> ProcessInfo {
        ProcessInfo {
            tgid,
            ppid,
            start_time_ns,
            uid: 1000,
            comm: comm.to_string(),
            binary: format!("/usr/bin/{comm}"),
            args: vec![comm.to_string()].into(),
            cwd: "/".to_string(),
            cgroup_id: 42,
            mntns: 4026531841,
            source: ProcessSource::Exec,
        }
    }

    fn tgids(list: &[&ProcessInfo]) -> Vec<u32> {
        list.iter().map(|p| p.tgid).collect()
    }

    #[test]
    fn insert_get_exit() {
        let mut table = ProcessTable::new(8);
        assert!(table.is_empty());
        assert_eq!(table.capacity(), 8);
        let bash = proc_info(100, 1, 1_000, "bash");
        table.on_exec(bash.clone());
        table.on_exec(proc_info(101, 100, 2_000, "ls"));
        assert_eq!(table.len(), 2);
        assert_eq!(table.get(100), Some(&bash));
        assert_eq!(table.get(101).map(|p| p.comm.as_str()), Some("ls"));
        assert_eq!(table.get(102), None);

        assert_eq!(table.on_exit(100), Some(bash));
        assert_eq!(table.get(100), None);
        assert_eq!(table.on_exit(100), None, "a second exit finds nothing");
        assert_eq!(table.on_exit(555), None, "exit of an unknown process");
        assert_eq!(table.len(), 1);
        assert_eq!(table.on_exit(101).map(|p| p.tgid), Some(101));
        assert!(table.is_empty());
        assert_eq!(table.evictions(), 0);
    }

    #[test]
    fn zero_capacity_is_one() {
        let mut table = ProcessTable::new(0);
        assert_eq!(table.capacity(), 1);
        table.on_exec(proc_info(10, 1, 1, "a"));
        table.on_exec(proc_info(11, 1, 2, "b"));
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(11).map(|p| p.tgid), Some(11));
        assert_eq!(table.evictions(), 1);
    }

    #[test]
    fn huge_capacity_does_not_preallocate() {
        let mut table = ProcessTable::new(usize::MAX);
        table.on_exec(proc_info(10, 1, 1, "a"));
        assert_eq!(table.len(), 1);
    }

    #[test]
    fn exec_replaces_the_image() {
        let mut table = ProcessTable::new(2);
        table.on_exec(proc_info(200, 1, 5_000, "sh"));
        table.on_exec(proc_info(201, 1, 6_000, "other"));
        let mut curl = proc_info(200, 1, 5_000, "curl");
        curl.args = vec!["curl".into(), "-s".into(), "http://example.invalid".into()].into();
        table.on_exec(curl.clone());
        assert_eq!(table.len(), 2, "same tgid: replaced, not added");
        assert_eq!(table.get(200), Some(&curl));
        assert_eq!(table.evictions(), 0, "a replacement never evicts");

        // The replacement counts as the most recent update: the next insertion evicts 201.
        table.on_exec(proc_info(202, 1, 7_000, "new"));
        assert_eq!(table.evictions(), 1);
        assert!(table.get(201).is_none());
        assert_eq!(table.get(200), Some(&curl));
        assert!(table.get(202).is_some());
    }

    #[test]
    fn eviction_order_is_insertion_order() {
        let mut table = ProcessTable::new(3);
        for tgid in 1..=3 {
            table.on_exec(proc_info(tgid + 10, 1, u64::from(tgid), "p"));
        }
        table.on_exit(12);
        table.on_exec(proc_info(14, 1, 4, "p")); // fills the hole, no eviction
        assert_eq!(table.evictions(), 0);
        table.on_exec(proc_info(15, 1, 5, "p")); // evicts 11, the oldest live
        assert_eq!(table.evictions(), 1);
        assert!(table.get(11).is_none());
        for tgid in [13, 14, 15] {
            assert!(table.get(tgid).is_some(), "{tgid} should still be there");
        }
    }

    #[test]
    fn pid_reuse_replaces_the_old_entry() {
        let mut table = ProcessTable::new(4);
        table.on_exec(proc_info(300, 1, 1_000, "old"));
        // The exit of 300 was lost; the pid wraps around and is reused by a new process.
        let new = proc_info(300, 50, 9_000_000_000, "new");
        table.on_exec(new.clone());
        assert_eq!(table.len(), 1);
        assert_eq!(table.get(300), Some(&new));
        // The stale queue item of the old process must not evict the new one.
        for tgid in 301..304 {
            table.on_exec(proc_info(tgid, 1, 10_000_000_000, "x"));
        }
        assert_eq!(table.evictions(), 0);
        table.on_exec(proc_info(304, 1, 10_000_000_000, "x"));
        assert_eq!(table.evictions(), 1);
        assert!(table.get(300).is_none(), "300 was the oldest live entry");
        assert_eq!(table.len(), 4);

        // Reuse after a seen exit.
        table.on_exit(301);
        table.on_exec(proc_info(301, 1, 11_000_000_000, "again"));
        assert_eq!(table.get(301).map(|p| p.comm.as_str()), Some("again"));
        assert_eq!(table.evictions(), 1);
    }

    #[test]
    fn ancestry_nearest_first_up_to_init() {
        let mut table = ProcessTable::new(16);
        table.on_exec(proc_info(1, 0, 10, "systemd"));
        table.on_exec(proc_info(500, 1, 20, "containerd-shim"));
        table.on_exec(proc_info(600, 500, 30, "bash"));
        table.on_exec(proc_info(700, 600, 40, "python"));
        table.on_exec(proc_info(800, 700, 50, "sh"));

        assert_eq!(tgids(&table.ancestors(800, 10)), vec![700, 600, 500, 1]);
        assert_eq!(tgids(&table.ancestors(800, 2)), vec![700, 600]);
        assert!(table.ancestors(800, 0).is_empty());
        assert!(table.ancestors(1, 10).is_empty(), "init has no ancestry");
        assert!(table.ancestors(9999, 10).is_empty(), "unknown process");
    }

    #[test]
    fn ancestry_stops_at_unknown_parent_and_pid_boundaries() {
        let mut table = ProcessTable::new(16);
        // 600's parent 550 is unknown.
        table.on_exec(proc_info(600, 550, 30, "bash"));
        table.on_exec(proc_info(700, 600, 40, "python"));
        assert_eq!(tgids(&table.ancestors(700, 10)), vec![600]);

        // ppid 0 (kthreadd, or a bogus record) ends the walk.
        table.on_exec(proc_info(2, 0, 1, "kthreadd"));
        table.on_exec(proc_info(90, 2, 5, "kworker/0:1"));
        assert_eq!(tgids(&table.ancestors(90, 10)), vec![2]);

        // Init's own (bogus) parent is never followed.
        table.on_exec(proc_info(1, 77, 10, "init"));
        table.on_exec(proc_info(77, 0, 1, "bogus"));
        table.on_exec(proc_info(80, 1, 50, "getty"));
        assert_eq!(tgids(&table.ancestors(80, 10)), vec![1]);
    }

    #[test]
    fn ancestry_stops_on_loops() {
        let mut table = ProcessTable::new(16);
        // Self loop.
        table.on_exec(proc_info(10, 10, 0, "self"));
        assert!(table.ancestors(10, 10).is_empty());

        // 3-cycle: 20 -> 21 -> 22 -> 20 (zero start times: no ordering to stop it).
        table.on_exec(proc_info(20, 21, 0, "a"));
        table.on_exec(proc_info(21, 22, 0, "b"));
        table.on_exec(proc_info(22, 20, 0, "c"));
        assert_eq!(tgids(&table.ancestors(20, 10)), vec![21, 22]);

        // A loop that does not go through the starting process: 30 -> 31 -> 32 -> 31.
        table.on_exec(proc_info(30, 31, 0, "d"));
        table.on_exec(proc_info(31, 32, 0, "e"));
        table.on_exec(proc_info(32, 31, 0, "f"));
        assert_eq!(tgids(&table.ancestors(30, 10)), vec![31, 32]);
    }

    #[test]
    fn ancestry_loop_detection_on_deep_chains() {
        // A chain deeper than the linear-scan threshold that ends in a loop back to its middle.
        let depth = 100u32;
        let mut table = ProcessTable::new(1_000);
        for tgid in 1_000..1_000 + depth {
            table.on_exec(proc_info(tgid, tgid + 1, 0, "p"));
        }
        let last = 1_000 + depth;
        table.on_exec(proc_info(last, 1_050, 0, "p"));
        let chain = table.ancestors(1_000, usize::MAX);
        assert_eq!(chain.len(), depth as usize);
        assert_eq!(chain.first().map(|p| p.tgid), Some(1_001));
        assert_eq!(chain.last().map(|p| p.tgid), Some(last));
        assert_eq!(table.ancestors(1_000, 30).len(), 30);
    }

    #[test]
    fn ancestry_stops_at_reused_parent_pid() {
        let mut table = ProcessTable::new(16);
        table.on_exec(proc_info(1, 0, 1_000, "init"));
        // The real parent 300 exited (its exit lost or already processed) and pid 300 was
        // reused by a process that started after the child.
        table.on_exec(proc_info(300, 1, 5_000_000_000, "impostor"));
        table.on_exec(proc_info(400, 300, 2_000_000_000, "child"));
        assert!(table.ancestors(400, 10).is_empty());

        // Within one /proc tick of slack, the parent is accepted.
        table.on_exec(proc_info(300, 1, 2_005_000_000, "parent"));
        assert_eq!(tgids(&table.ancestors(400, 10)), vec![300, 1]);
    }

    #[test]
    fn bounded_under_churn_of_a_million_pids() {
        const CAPACITY: usize = 1_000;
        const PROCESSES: u32 = 1_000_000;
        let mut table = ProcessTable::new(CAPACITY);
        let mut leaked = 0u64;
        let mut max_order = 0usize;
        for i in 0..PROCESSES {
            let tgid = i + 2;
            table.on_exec(proc_info(tgid, 1, u64::from(i), "short"));
            if i % 10 == 0 {
                leaked += 1; // exit event lost
            } else {
                assert!(table.on_exit(tgid).is_some());
            }
            assert!(table.len() <= CAPACITY);
            max_order = max_order.max(table.order_len());
        }
        assert!(max_order <= 2 * CAPACITY, "queue grew to {max_order}");
        // A short-lived exec into a full table evicts one leaked entry before its own exit.
        assert!(table.len() >= CAPACITY - 1);
        // Every leaked process still present or evicted, none lost track of.
        assert_eq!(table.evictions(), leaked - table.len() as u64);
        assert!(table.evictions() >= leaked - CAPACITY as u64);
        // The survivors are the most recently leaked processes.
        assert!(table.get(PROCESSES - 10 + 2).is_some());
        assert!(table.get(2).is_none());
    }

    #[test]
    fn queue_follows_the_live_entries_not_the_capacity() {
        // The default capacity, a churn of short-lived processes whose exits are all seen: the
        // queue stays near the live set instead of growing towards twice the capacity.
        let mut table = ProcessTable::new(65_536);
        let mut max_order = 0usize;
        for i in 0..500_000u32 {
            let tgid = 300 + (i % 4_000_000);
            table.on_exec(proc_info(tgid, 1, u64::from(i), "true"));
            if i >= 3 {
                assert!(table.on_exit(tgid - 3).is_some());
            }
            max_order = max_order.max(table.order_len());
        }
        assert_eq!(table.len(), 3);
        assert_eq!(
            max_order,
            2 * COMPACT_MIN,
            "compacted once more than half stale"
        );
        assert_eq!(table.evictions(), 0);
    }

    #[test]
    fn bounded_under_churn_with_pid_reuse() {
        // pid_max-style wrap-around: tgids are reused constantly, some exits are lost.
        const CAPACITY: usize = 100;
        let mut table = ProcessTable::new(CAPACITY);
        for i in 0..200_000u32 {
            let tgid = 300 + (i % 32_768);
            table.on_exec(proc_info(tgid, 1, u64::from(i), "p"));
            if i % 7 != 0 {
                table.on_exit(tgid);
            }
            assert!(table.len() <= CAPACITY);
            assert!(table.order_len() <= 2 * CAPACITY);
        }
        assert!(table.len() >= CAPACITY - 1);
        assert!(table.evictions() > 0);
    }
}
