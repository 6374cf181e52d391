//! Events that beat their container's metadata.
//!
//! The first exec of a new container can reach the sensor before containerd has told it about
//! the container. Such events wait here, in order, for a short configurable time; when the
//! container becomes known they leave with its identity, otherwise they leave without it and
//! flagged. Both outcomes are counted; the cache is bounded, and an event pushed out by a full
//! cache leaves flagged like an expired one.

use std::{
    collections::VecDeque,
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

pub struct PendingCache<T> {
    waiting: VecDeque<Waiting<T>>,
    capacity: usize,
    wait: Duration,
    stats: PendingStats,
}

impl<T> PendingCache<T> {
    pub fn new(capacity: usize, wait: Duration) -> PendingCache<T> {
        PendingCache {
            waiting: VecDeque::with_capacity(capacity.min(1024)),
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
            self.waiting.pop_front().map(|w| w.item)
        } else {
            None
        };
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
        self.waiting
            .iter()
            .any(|w| w.cgroup_id == cgroup_id && w.cgroup_v1_id == cgroup_v1_id)
    }

    /// Sends, in order, every waiting item whose container `resolve` now knows (with it) and
    /// every item whose time is up (without). The others keep waiting.
    pub fn release<R>(
        &mut self,
        now: Instant,
        mut resolve: impl FnMut(u64, u64) -> Option<R>,
        mut send: impl FnMut(T, Option<R>),
    ) {
        let mut kept = VecDeque::with_capacity(self.waiting.len());
        while let Some(w) = self.waiting.pop_front() {
            if let Some(r) = resolve(w.cgroup_id, w.cgroup_v1_id) {
                self.stats.resolved += 1;
                send(w.item, Some(r));
            } else if now >= w.deadline {
                self.stats.expired += 1;
                send(w.item, None);
            } else {
                kept.push_back(w);
            }
        }
        self.waiting = kept;
    }

    /// Sends everything still waiting without its container (shutdown).
    pub fn flush(&mut self, mut send: impl FnMut(T)) {
        while let Some(w) = self.waiting.pop_front() {
            self.stats.expired += 1;
            send(w.item);
        }
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
        cache.release(t0, |_, _| None::<&str>, |i, r| out.push((i, r)));
        assert!(out.is_empty(), "nothing known, nothing expired");
        cache.release(
            t0,
            |id, _| (id == 7).then_some("c1"),
            |i, r| out.push((i, r)),
        );
        assert_eq!(out, vec![("exec", Some("c1")), ("file", Some("c1"))]);
        assert_eq!(cache.len(), 1);
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
            |_, _| None::<()>,
            |i, r| out.push((i, r)),
        );
        assert!(out.is_empty());
        cache.release(
            t0 + Duration::from_millis(100),
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
    }
}
