//! Fan-out of newly stored events to `StreamEvents` subscribers.
//!
//! Each subscriber has its own bounded queue and the publisher never waits: when a queue is
//! full the event is lost for that subscriber only, counted, and reported to it as a
//! `LostEvents{cause: SLOW_SUBSCRIBER}` before the next event it does get.

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};

use jobwatch_proto::{feed::Feed, v1 as pb};
use tokio::sync::mpsc;

use crate::filter::Compiled;

/// Default queue length of a subscriber.
pub const SUBSCRIBER_QUEUE: usize = 4096;

/// What a subscriber receives.
pub type Item = jobwatch_proto::feed::Item<pb::StoredEvent>;

struct Subscriber {
    filter: Compiled,
    nodes: Vec<String>,
    feed: Feed<pb::StoredEvent>,
}

struct Inner {
    queue: usize,
    subscribers: Mutex<Vec<Subscriber>>,
    slow_subscriber_lost: AtomicU64,
}

/// The fan-out point; clones share it.
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub")
            .field("queue", &self.inner.queue)
            .finish_non_exhaustive()
    }
}

/// The loss report sent before `next` (id 0: it is not a stored event).
fn loss_report(count: u64, next: &pb::Event) -> pb::StoredEvent {
    pb::StoredEvent {
        id: 0,
        event: Some(pb::Event {
            node: next.node.clone(),
            time_unix_nano: next.time_unix_nano,
            boot_ns: 0,
            seq: 0,
            kind: Some(pb::event::Kind::LostEvents(pb::LostEvents {
                count,
                cause: pb::LossCause::SlowSubscriber as i32,
            })),
        }),
    }
}

impl Hub {
    /// A hub giving each subscriber a queue of `queue` events (at least 1).
    pub fn new(queue: usize) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                queue: queue.max(1),
                subscribers: Mutex::new(Vec::new()),
                slow_subscriber_lost: AtomicU64::new(0),
            }),
        }
    }

    fn lock(&self) -> MutexGuard<'_, Vec<Subscriber>> {
        self.inner
            .subscribers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
    }

    /// Offers stored events to every matching subscriber. Never waits.
    pub fn publish(&self, events: &[pb::StoredEvent]) {
        let mut subs = self.lock();
        if subs.is_empty() {
            return;
        }
        let mut lost_now = 0u64;
        for stored in events {
            let Some(e) = &stored.event else { continue };
            subs.retain_mut(|sub| {
                if !sub.nodes.is_empty() && !sub.nodes.contains(&e.node) {
                    return true;
                }
                if !sub.filter.matches(e) {
                    return true;
                }
                let report = |count| {
                    let report = loss_report(count, e);
                    let shown = report.event.as_ref().is_some_and(|r| sub.filter.matches(r));
                    shown.then_some(report)
                };
                sub.feed.offer(stored, report, &mut lost_now)
            });
        }
        if lost_now > 0 {
            self.inner
                .slow_subscriber_lost
                .fetch_add(lost_now, Ordering::Relaxed);
        }
    }

    /// A new subscriber to events of `nodes` (any, when empty) that pass `filter`.
    pub fn subscribe(&self, filter: Compiled, nodes: Vec<String>) -> mpsc::Receiver<Item> {
        let (feed, rx) = Feed::channel(self.inner.queue);
        self.lock().push(Subscriber {
            filter,
            nodes,
            feed,
        });
        rx
    }

    /// Subscribers connected now.
    pub fn subscribers(&self) -> usize {
        let mut subs = self.lock();
        subs.retain(|s| !s.feed.is_closed());
        subs.len()
    }

    /// Events lost by slow subscribers, all together.
    pub fn slow_subscriber_lost(&self) -> u64 {
        self.inner.slow_subscriber_lost.load(Ordering::Relaxed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(id: u64) -> pb::StoredEvent {
        pb::StoredEvent {
            id,
            event: Some(pb::Event {
                node: "n".into(),
                seq: id,
                kind: Some(pb::event::Kind::ProcessExit(pb::ProcessExit::default())),
                ..Default::default()
            }),
        }
    }

    #[test]
    fn slow_subscriber_loses_and_is_told() {
        let h = Hub::new(2);
        let mut rx = h.subscribe(Compiled::default(), vec![]);
        h.publish(&[ev(1), ev(2), ev(3), ev(4)]);
        assert_eq!(h.slow_subscriber_lost(), 2);
        let ids: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.expect("ok").id)
            .collect();
        assert_eq!(ids, [1, 2]);
        h.publish(&[ev(5)]);
        let report = rx.try_recv().expect("report").expect("ok");
        assert!(matches!(
            report.event.and_then(|e| e.kind),
            Some(pb::event::Kind::LostEvents(pb::LostEvents { count: 2, .. }))
        ));
        assert_eq!(rx.try_recv().expect("event").expect("ok").id, 5);
    }
}
