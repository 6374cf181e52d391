//! Events that beat their container's metadata.
//!
//! The first exec of a new container can reach the sensor before containerd has told it about
//! the container. Such events wait here, in order, for a short configurable time; when the
//! container becomes known they leave with its identity, otherwise they leave without it and
//! flagged. Both outcomes are counted; the cache is bounded, and an event pushed out by a full
//! cache leaves flagged like an expired one.

use std::{
    collections::{HashMap, VecDeque},
    time::{Duration, Instant},
};

struct Waiting<T> {
    item: T,
    cgroup_id: u64,
    cgroup_v1_id: u64,
    deadline: Instant,
}

/// The outcome counters.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PendingStats {
    /// Events that had to wait.
    pub held: u64,
    /// Waiting events whose container became known in time.
    pub resolved: u64,
    /// Waiting events sent without their container (time ran out).
    pub expired: u64,
    /// Waiting events pushed out early because the cache was full.
    pub overflowed: u64,
}

/// Every operation is O(1) per event (amortised): the deadlines grow with the queue (one
/// fixed wait), so the expired items are always at its front, and a count per cgroup answers
/// [`holds`](PendingCache::holds). Only a change of what is known (a new container) makes
/// [`release`](PendingCache::release) look at every waiting item.
pub struct PendingCache<T> {
    waiting: VecDeque<Waiting<T>>,
    /// How many items wait for each (cgroup v2 id, v1 id).
    per_cgroup: HashMap<(u64, u64), usize>,
    capacity: usize,
    wait: Duration,
    stats: PendingStats,
}

impl<T> PendingCache<T> {
    pub fn new(capacity: usize, wait: Duration) -> PendingCache<T> {
        PendingCache {
            waiting: VecDeque::with_capacity(capacity.min(1024)),
            per_cgroup: HashMap::new(),
            capacity: capacity.max(1),
            wait,
            stats: PendingStats::default(),
        }
    }

    pub fn len(&self) -> usize {
        self.waiting.len()
    }

    pub fn is_empty(&self) -> bool {
        self.waiting.is_empty()
    }

    pub fn stats(&self) -> PendingStats {
        self.stats
    }

    /// Holds `item` for the container of these cgroup ids. When the cache is full the oldest
    /// waiting item is returned, to be sent without its container.
    pub fn push(&mut self, item: T, cgroup_id: u64, cgroup_v1_id: u64, now: Instant) -> Option<T> {
        self.stats.held += 1;
        let evicted = if self.waiting.len() >= self.capacity {
            self.stats.overflowed += 1;
            self.pop_front().map(|w| w.item)
        } else {
            None
        };
        *self
            .per_cgroup
            .entry((cgroup_id, cgroup_v1_id))
            .or_default() += 1;
        self.waiting.push_back(Waiting {
            item,
            cgroup_id,
            cgroup_v1_id,
            deadline: now + self.wait,
        });
        evicted
    }

    /// Whether events of this cgroup are waiting (later events of the same container must
    /// wait behind them to keep their order).
    pub fn holds(&self, cgroup_id: u64, cgroup_v1_id: u64) -> bool {
        self.per_cgroup.contains_key(&(cgroup_id, cgroup_v1_id))
    }

    /// Sends, in order, the waiting items whose time is up: with their container if `resolve`
    /// knows it now, else without. With `rescan` (what is known changed), every waiting item
    /// whose container `resolve` knows leaves too; the others keep waiting.
    pub fn release<R>(
        &mut self,
        now: Instant,
        rescan: bool,
        mut resolve: impl FnMut(u64, u64) -> Option<R>,
        mut send: impl FnMut(T, Option<R>),
    ) {
        if !rescan {
            while self.waiting.front().is_some_and(|w| now >= w.deadline) {
                let Some(w) = self.pop_front() else { break };
                match resolve(w.cgroup_id, w.cgroup_v1_id) {
                    Some(r) => {
                        self.stats.resolved += 1;
                        send(w.item, Some(r));
                    }
                    None => {
                        self.stats.expired += 1;
                        send(w.item, None);
                    }
                }
            }
            return;
        }
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        while let Some(w) = self.pop_front() {
            if let Some(r) = resolve(w.cgroup_id, w.cgroup_v1_id) {
                self.stats.resolved += 1;
                send(w.item, Some(r));
            } else if now >= w.deadline {
                self.stats.expired += 1;
                send(w.item, None);
            } else {
                *self
                    .per_cgroup
                    .entry((w.cgroup_id, w.cgroup_v1_id))
                    .or_default() += 1;
                kept.push_back(w);
            }
        }
        self.waiting = kept;
    }

    /// Sends everything still waiting without its container (shutdown).
    pub fn flush(&mut self, mut send: impl FnMut(T)) {
        while let Some(w) = self.pop_front() {
            self.stats.expired += 1;
            send(w.item);
        }
    }

    /// Takes the oldest waiting item, keeping the per-cgroup counts.
    fn pop_front(&mut self) -> Option<Waiting<T>> {
        let w = self.waiting.pop_front()?;
        let key = (w.cgroup_id, w.cgroup_v1_id);
        if let Some(n) = self.per_cgroup.get_mut(&key) {
            *n -= 1;
            if *n == 0 {
                self.per_cgroup.remove(&key);
            }
        }
        Some(w)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_in_order_when_the_container_appears() {
        let t0 = Instant::now();
        let mut cache = PendingCache::new(10, Duration::from_secs(2));
        assert!(cache.push("exec", 7, 0, t0).is_none());
        assert!(cache.push("file", 7, 0, t0).is_none());
        assert!(cache.push("other", 9, 0, t0).is_none());
        assert!(cache.holds(7, 0) && !cache.holds(8, 0));
        let mut out = Vec::new();
        cache.release(t0, true, |_, _| None::<&str>, |i, r| out.push((i, r)));
        assert!(out.is_empty(), "nothing known, nothing expired");
        cache.release(
            t0,
            true,
            |id, _| (id == 7).then_some("c1"),
            |i, r| out.push((i, r)),
        );
        assert_eq!(out, vec![("exec", Some("c1")), ("file", Some("c1"))]);
        assert_eq!(cache.len(), 1);
        assert!(!cache.holds(7, 0) && cache.holds(9, 0));
        let s = cache.stats();
        assert_eq!((s.held, s.resolved, s.expired), (3, 2, 0));
    }

    #[test]
    fn expires_after_the_wait() {
        let t0 = Instant::now();
        let mut cache = PendingCache::new(10, Duration::from_millis(100));
        cache.push(1, 7, 0, t0);
        let mut out = Vec::new();
        cache.release(
            t0 + Duration::from_millis(99),
            false,
            |_, _| None::<()>,
            |i, r| out.push((i, r)),
        );
        assert!(out.is_empty());
        cache.release(
            t0 + Duration::from_millis(100),
            false,
            |_, _| None::<()>,
            |i, r| out.push((i, r)),
        );
        assert_eq!(out, vec![(1, None)]);
        assert_eq!(cache.stats().expired, 1);
        assert!(cache.is_empty());
    }

    #[test]
    fn stays_bounded() {
        let t0 = Instant::now();
        let mut cache = PendingCache::new(2, Duration::from_secs(1));
        assert_eq!(cache.push(1, 1, 0, t0), None);
        assert_eq!(cache.push(2, 1, 0, t0), None);
        assert_eq!(cache.push(3, 1, 0, t0), Some(1));
        assert_eq!(cache.len(), 2);
        assert_eq!(cache.stats().overflowed, 1);
        let mut out = Vec::new();
        cache.flush(|i| out.push(i));
        assert_eq!(out, vec![2, 3]);
        assert!(!cache.holds(1, 0), "nothing waits after the flush");
    }

    #[test]
    fn without_a_rescan_only_the_expired_front_is_looked_at() {
        let t0 = Instant::now();
        let wait = Duration::from_millis(100);
        let mut cache = PendingCache::new(10, wait);
        cache.push("a1", 1, 0, t0);
        cache.push("b1", 2, 0, t0 + Duration::from_millis(50));
        cache.push("a2", 1, 0, t0 + Duration::from_millis(60));
        let mut looked = Vec::new();
        let mut out = Vec::new();
        // At 100 ms only a1 is due: it leaves (with its container, which is known by now),
        // and nothing behind it is looked at, known or not.
        cache.release(
            t0 + wait,
            false,
            |id, _| {
                looked.push(id);
                (id == 1).then_some("c1")
            },
            |i, r| out.push((i, r)),
        );
        assert_eq!(looked, vec![1]);
        assert_eq!(out, vec![("a1", Some("c1"))]);
        assert!(cache.holds(1, 0) && cache.holds(2, 0));
        // At 155 ms b1 is due and unknown; a2 waits on.
        cache.release(
            t0 + Duration::from_millis(155),
            false,
            |_, _| None::<&str>,
            |i, r| out.push((i, r)),
        );
        assert_eq!(out[1], ("b1", None));
        assert!(!cache.holds(2, 0) && cache.holds(1, 0));
        assert_eq!(cache.len(), 1);
        let s = cache.stats();
        assert_eq!((s.held, s.resolved, s.expired), (3, 1, 1));
    }
}
