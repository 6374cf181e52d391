//! One subscriber of a `StreamEvents` stream, the sensor's and the collector's alike: a bounded
//! queue that the publisher offers items to without ever waiting, and the count of items that
//! did not fit since the last one the subscriber got. That count reaches the subscriber as a
//! loss report just before its next item, so a slow client learns what it missed and never
//! slows the publisher or the other clients.

use tokio::sync::mpsc::{self, error::TrySendError};
use tonic::Status;

/// What a subscriber receives.
pub type Item<T> = Result<T, Status>;

/// The publisher's side of one subscriber.
#[derive(Debug)]
pub struct Feed<T> {
    tx: mpsc::Sender<Item<T>>,
    /// Items lost since the last one this subscriber got.
    lost: u64,
}

/// What became of one offered item.
enum Sent {
    Yes,
    Full,
    Closed,
}

impl<T> Feed<T> {
    /// A subscriber with a queue of `capacity` items (at least 1), and its receiving end.
    pub fn channel(capacity: usize) -> (Feed<T>, mpsc::Receiver<Item<T>>) {
        let (tx, rx) = mpsc::channel(capacity.max(1));
        (Feed { tx, lost: 0 }, rx)
    }

    /// The subscriber went away.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }

    /// Offers a copy of `item`, preceded by the report of what this subscriber lost, if it lost
    /// any: `report(count)` builds that report, or gives None when the subscriber would not see
    /// it (its filter hides it), and then the count is forgotten. An item that does not fit, or
    /// whose report does not, is lost: counted here and added to `lost_now`, and not copied (a
    /// slot is reserved before the copy is made). Returns false when the subscriber has gone
    /// (the publisher drops it).
    pub fn offer(
        &mut self,
        item: &T,
        report: impl FnOnce(u64) -> Option<T>,
        lost_now: &mut u64,
    ) -> bool
    where
        T: Clone,
    {
        if self.lost > 0 {
            match report(self.lost) {
                Some(report) => match self.send(|| report) {
                    Sent::Yes => self.lost = 0,
                    Sent::Full => return self.lose(lost_now),
                    Sent::Closed => return false,
                },
                None => self.lost = 0,
            }
        }
        match self.send(|| item.clone()) {
            Sent::Yes => true,
            Sent::Full => self.lose(lost_now),
            Sent::Closed => false,
        }
    }

    /// Sends what `make` makes if there is room (made only then).
    fn send(&self, make: impl FnOnce() -> T) -> Sent {
        match self.tx.try_reserve() {
            Ok(permit) => {
                permit.send(Ok(make()));
                Sent::Yes
            }
            Err(TrySendError::Full(())) => Sent::Full,
            Err(TrySendError::Closed(())) => Sent::Closed,
        }
    }

    /// Counts the item that did not fit; the subscriber stays.
    fn lose(&mut self, lost_now: &mut u64) -> bool {
        self.lost += 1;
        *lost_now += 1;
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Reports are negative numbers: -count.
    fn report(count: u64) -> Option<i64> {
        Some(-(count as i64))
    }

    fn drain(rx: &mut mpsc::Receiver<Item<i64>>) -> Vec<i64> {
        std::iter::from_fn(|| rx.try_recv().ok())
            .map(|i| i.expect("ok"))
            .collect()
    }

    #[test]
    fn what_does_not_fit_is_counted_and_reported_before_the_next_item() {
        let (mut feed, mut rx) = Feed::channel(2);
        let mut lost_now = 0;
        for i in 1..=5 {
            assert!(feed.offer(&i, report, &mut lost_now));
        }
        assert_eq!(lost_now, 3);
        assert_eq!(drain(&mut rx), [1, 2]);
        assert!(feed.offer(&6, report, &mut lost_now));
        assert_eq!(drain(&mut rx), [-3, 6]);
        // Told once: the count starts again from zero.
        assert!(feed.offer(&7, report, &mut lost_now));
        assert_eq!(drain(&mut rx), [7]);
        assert_eq!(lost_now, 3);
    }

    #[test]
    fn a_report_that_does_not_fit_loses_the_item_too() {
        let (mut feed, mut rx) = Feed::channel(2);
        let mut lost_now = 0;
        for i in 1..=3 {
            assert!(feed.offer(&i, report, &mut lost_now));
        }
        // The report of the one lost (3) does not fit the full queue: 4 is lost and counted too.
        assert!(feed.offer(&4, report, &mut lost_now));
        assert_eq!(lost_now, 2);
        assert_eq!(drain(&mut rx), [1, 2]);
        assert!(feed.offer(&5, report, &mut lost_now));
        assert_eq!(drain(&mut rx), [-2, 5]);
        assert_eq!(lost_now, 2);
    }

    #[test]
    fn a_hidden_report_is_forgotten() {
        let (mut feed, mut rx) = Feed::channel(1);
        let mut lost_now = 0;
        assert!(feed.offer(&1, report, &mut lost_now));
        assert!(feed.offer(&2, report, &mut lost_now));
        assert_eq!(drain(&mut rx), [1]);
        assert!(feed.offer(&3, |_| None, &mut lost_now));
        assert!(feed.offer(&4, report, &mut lost_now));
        assert_eq!(drain(&mut rx), [3]);
        assert_eq!(lost_now, 2);
        assert_eq!(drain(&mut rx), Vec::<i64>::new());
    }

    #[test]
    fn a_gone_subscriber_is_dropped() {
        let (mut feed, rx) = Feed::channel(1);
        drop(rx);
        assert!(feed.is_closed());
        let mut lost_now = 0;
        assert!(!feed.offer(&1, report, &mut lost_now));
        assert_eq!(lost_now, 0);
    }
}
