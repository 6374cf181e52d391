//! Fan-out of the sensor's events to API subscribers.
//!
//! Every subscriber has its own bounded queue. The publisher never waits: when a subscriber's
//! queue is full the event is lost *for that subscriber only*, counted, and reported to it as
//! a `LostEvents{cause: SLOW_SUBSCRIBER}` event before the next event it does get. A slow
//! client therefore never slows the sensor or the other clients.

use std::sync::{
    Arc, Mutex, MutexGuard,
    atomic::{AtomicU64, Ordering},
};

use jobwatch_proto::{feed::Feed, v1 as pb};
use tokio::sync::mpsc;

use crate::{
    api::{
        convert::{self, ExecIds},
        filter::Compiled,
        wire::{Arena, EncodedEvent},
    },
    clock::BootClock,
    event::Event,
};

/// What a subscriber receives.
pub type Item = jobwatch_proto::feed::Item<pb::Event>;

/// The hub's counters.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct HubStats {
    /// Events published (the last sequence number given).
    pub published: u64,
    /// Events lost by subscribers that did not keep up, all subscribers together.
    pub slow_subscriber_lost: u64,
    /// Subscribers connected now.
    pub subscribers: usize,
}

struct Subscriber {
    filter: Compiled,
    feed: Feed<pb::Event>,
}

/// Where every numbered event goes besides the subscribers, encoded (must not block).
pub type Sink = Box<dyn Fn(EncodedEvent) + Send + Sync>;

struct Inner {
    ids: ExecIds,
    clock: BootClock,
    sink: Option<Sink>,
    queue: usize,
    state: Mutex<State>,
    published: AtomicU64,
    slow_subscriber_lost: AtomicU64,
}

/// What `publish` changes, under one lock.
#[derive(Default)]
struct State {
    subscribers: Vec<Subscriber>,
    /// Where the sink's events are encoded.
    arena: Arena,
}

/// The fan-out point; cheap to clone (all clones are the same hub).
#[derive(Clone)]
pub struct Hub {
    inner: Arc<Inner>,
}

impl std::fmt::Debug for Hub {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hub").field("stats", &self.stats()).finish()
    }
}

impl Hub {
    /// A hub whose subscribers each get a queue of `subscriber_queue` events (at least 1).
    pub fn new(ids: ExecIds, clock: BootClock, subscriber_queue: usize) -> Hub {
        Hub::with_sink(ids, clock, subscriber_queue, None)
    }

    /// A hub that also hands every event, numbered, to `sink` (the reporter to a collector).
    pub fn with_sink(
        ids: ExecIds,
        clock: BootClock,
        subscriber_queue: usize,
        sink: Option<Sink>,
    ) -> Hub {
        Hub {
            inner: Arc::new(Inner {
                ids,
                clock,
                sink,
                queue: subscriber_queue.max(1),
                state: Mutex::new(State::default()),
                published: AtomicU64::new(0),
                slow_subscriber_lost: AtomicU64::new(0),
            }),
        }
    }

    /// The subscribers and the arena; a panic elsewhere while they were held leaves them
    /// usable.
    fn lock(&self) -> MutexGuard<'_, State> {
        self.inner
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Gives the event the next sequence number and offers it to every subscriber whose filter
    /// matches. Never waits.
    pub fn publish(&self, event: &Event) {
        // The lock orders sequence numbers and deliveries the same way for every subscriber.
        let mut state = self.lock();
        let State {
            subscribers: subs,
            arena,
        } = &mut *state;
        let seq = self.inner.published.fetch_add(1, Ordering::Relaxed) + 1;
        if subs.is_empty() && self.inner.sink.is_none() {
            return;
        }
        let unix_ns = self.inner.clock.unix_ns(event.boot_ns);
        if let Some(sink) = &self.inner.sink {
            // The reporter needs only the bytes: encoded straight from the event, no message.
            sink(arena.encode(&self.inner.ids, unix_ns, event, seq));
        }
        if subs.is_empty() {
            return;
        }
        let pbe = convert::event(&self.inner.ids, unix_ns, event, seq);
        let mut lost_now = 0u64;
        subs.retain_mut(|sub| {
            if !sub.filter.matches(&pbe) {
                return true;
            }
            let report = |count| {
                let report = self.loss_report(count, &pbe);
                sub.filter.matches(&report).then_some(report)
            };
            sub.feed.offer(&pbe, report, &mut lost_now)
        });
        if lost_now > 0 {
            self.inner
                .slow_subscriber_lost
                .fetch_add(lost_now, Ordering::Relaxed);
        }
    }

    /// The report of `count` events a subscriber lost, sent just before `next`. It has no
    /// sequence number of its own (seq 0): it is not one of the sensor's events.
    fn loss_report(&self, count: u64, next: &pb::Event) -> pb::Event {
        pb::Event {
            node: self.inner.ids.node.clone(),
            time_unix_nano: next.time_unix_nano,
            boot_ns: next.boot_ns,
            seq: 0,
            kind: Some(pb::event::Kind::LostEvents(pb::LostEvents {
                count,
                cause: pb::LossCause::SlowSubscriber as i32,
            })),
        }
    }

    /// A new subscriber with the hub's queue size.
    pub fn subscribe(&self, filter: Compiled) -> mpsc::Receiver<Item> {
        self.subscribe_with_capacity(filter, self.inner.queue)
    }

    /// A new subscriber with its own queue size (at least 1).
    pub fn subscribe_with_capacity(
        &self,
        filter: Compiled,
        capacity: usize,
    ) -> mpsc::Receiver<Item> {
        let (feed, rx) = Feed::channel(capacity);
        self.lock().subscribers.push(Subscriber { filter, feed });
        rx
    }

    /// Subscribers connected now (those that went away are forgotten).
    pub fn subscribers(&self) -> usize {
        let subs = &mut self.lock().subscribers;
        subs.retain(|s| !s.feed.is_closed());
        subs.len()
    }

    /// The hub's counters.
    pub fn stats(&self) -> HubStats {
        HubStats {
            published: self.inner.published.load(Ordering::Relaxed),
            slow_subscriber_lost: self.inner.slow_subscriber_lost.load(Ordering::Relaxed),
            subscribers: self.subscribers(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{api::filter, event::test_exit as exit};

    fn hub(queue: usize) -> Hub {
        Hub::new(
            ExecIds {
                node: "n1".into(),
                boot_unix_secs: 1,
            },
            BootClock::fixed(1_000),
            queue,
        )
    }

    fn all() -> Compiled {
        filter::compile(&pb::GetEventsRequest::default()).expect("empty filter")
    }

    #[test]
    fn seq_counts_without_subscribers() {
        let h = hub(4);
        h.publish(&exit(1));
        h.publish(&exit(2));
        let mut rx = h.subscribe(all());
        h.publish(&exit(3));
        let e = rx.try_recv().expect("event").expect("ok");
        assert_eq!((e.seq, e.node.as_str(), e.time_unix_nano), (3, "n1", 1_003));
        assert_eq!(
            h.stats(),
            HubStats {
                published: 3,
                slow_subscriber_lost: 0,
                subscribers: 1
            }
        );
    }

    #[test]
    fn full_queue_loses_and_reports() {
        let h = hub(2);
        let mut rx = h.subscribe(all());
        for pid in 1..=5 {
            h.publish(&exit(pid));
        }
        assert_eq!(h.stats().slow_subscriber_lost, 3);
        let seqs: Vec<u64> = std::iter::from_fn(|| rx.try_recv().ok())
            .map(|e| e.expect("ok").seq)
            .collect();
        assert_eq!(seqs, [1, 2]);
        h.publish(&exit(6));
        let report = rx.try_recv().expect("report").expect("ok");
        assert_eq!(
            report.kind,
            Some(pb::event::Kind::LostEvents(pb::LostEvents {
                count: 3,
                cause: pb::LossCause::SlowSubscriber as i32
            }))
        );
        assert_eq!(rx.try_recv().expect("event").expect("ok").seq, 6);
    }

    #[test]
    fn closed_subscribers_are_removed() {
        let h = hub(2);
        let rx = h.subscribe(all());
        let _kept = h.subscribe(all());
        assert_eq!(h.subscribers(), 2);
        drop(rx);
        h.publish(&exit(1));
        assert_eq!(h.subscribers(), 1);
    }
}
