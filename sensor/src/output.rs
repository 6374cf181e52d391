//! Writing events as JSON lines.

use std::io::Write;

use tokio::sync::{mpsc, oneshot};

use crate::{api::hub::Hub, event::Event};

/// Hands every event to the API's subscribers and the reporter (when there is a hub) and
/// writes it as one JSON object per line to `out` (when there is one), flushing whenever the
/// queue is empty, until the queue closes. Returns how many events went through.
///
/// When writing to `out` fails, the JSON output stops and the error goes to `failed` (the
/// sensor then shuts down), but the events still go to the hub until the queue closes: the
/// reporter and the API subscribers lose nothing to a broken stdout.
pub async fn dispatch<W: Write>(
    mut events: mpsc::Receiver<Event>,
    hub: Option<Hub>,
    out: Option<W>,
    mut failed: Option<oneshot::Sender<std::io::Error>>,
) -> u64 {
    let mut out = out.map(|o| std::io::BufWriter::with_capacity(64 * 1024, o));
    let mut count = 0u64;
    let mut batch = Vec::with_capacity(256);
    let mut stop_output = |out: &mut Option<_>, error: std::io::Error| {
        *out = None;
        if let Some(failed) = failed.take() {
            let _ = failed.send(error);
        }
    };
    while events.recv_many(&mut batch, 256).await > 0 {
        for event in batch.drain(..) {
            if let Some(hub) = &hub {
                hub.publish(&event);
            }
            if let Some(w) = out.as_mut() {
                let written = serde_json::to_writer(&mut *w, &event)
                    .map_err(std::io::Error::from)
                    .and_then(|()| w.write_all(b"\n"));
                if let Err(e) = written {
                    stop_output(&mut out, e);
                }
            }
            count += 1;
        }
        if events.is_empty()
            && let Some(Err(e)) = out.as_mut().map(Write::flush)
        {
            stop_output(&mut out, e);
        }
    }
    if let Some(Err(e)) = out.as_mut().map(Write::flush) {
        stop_output(&mut out, e);
    }
    count
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::{EventKind, LostEvents};

    #[tokio::test]
    async fn writes_one_object_per_line() {
        let (tx, rx) = mpsc::channel(4);
        for count in [1, 2] {
            let kind = EventKind::LostEvents(LostEvents {
                count,
                cause: "queue_full",
            });
            let ev = Event {
                time_unix_ns: 0,
                boot_ns: count,
                kind,
            };
            tx.send(ev).await.expect("queue open");
        }
        drop(tx);
        let mut buf = Vec::new();
        let n = dispatch(rx, None, Some(&mut buf), None).await;
        assert_eq!(n, 2);
        let text = String::from_utf8(buf).expect("utf8");
        let lines: Vec<serde_json::Value> = text
            .lines()
            .map(|l| serde_json::from_str(l).expect("json"))
            .collect();
        assert_eq!(lines.len(), 2);
        assert_eq!(lines[0]["type"], "lost_events");
        assert_eq!(lines[0]["count"], 1);
        assert_eq!(lines[1]["cause"], "queue_full");
        assert_eq!(lines[1]["boot_ns"], 2);
    }

    /// Accepts nothing: every write fails like a pipe nobody reads.
    struct Broken;

    impl Write for Broken {
        fn write(&mut self, _: &[u8]) -> std::io::Result<usize> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }

        fn flush(&mut self) -> std::io::Result<()> {
            Err(std::io::ErrorKind::BrokenPipe.into())
        }
    }

    #[tokio::test]
    async fn a_broken_output_is_reported_once_and_every_event_still_goes_through() {
        let (tx, rx) = mpsc::channel(4);
        let (failed_tx, failed) = oneshot::channel();
        for count in [1, 2, 3] {
            let kind = EventKind::LostEvents(LostEvents {
                count,
                cause: "queue_full",
            });
            tx.send(Event {
                time_unix_ns: 0,
                boot_ns: count,
                kind,
            })
            .await
            .expect("queue open");
        }
        drop(tx);
        let n = dispatch(rx, None, Some(Broken), Some(failed_tx)).await;
        assert_eq!(n, 3, "the events after the failure are dispatched too");
        let error = failed.await.expect("the failure is reported");
        assert_eq!(error.kind(), std::io::ErrorKind::BrokenPipe);
    }
}
