//! Writing events as JSON lines.

use std::io::Write;

use tokio::sync::mpsc;

use crate::{api::hub::Hub, event::Event};

/// Hands every event to the API's subscribers (when there is a hub) and writes it as one JSON
/// object per line to `out` (when there is one), flushing whenever the queue is empty, until
/// the queue closes. Returns how many events went through.
pub async fn dispatch<W: Write>(
    mut events: mpsc::Receiver<Event>,
    hub: Option<Hub>,
    out: Option<W>,
) -> std::io::Result<u64> {
    let mut out = out.map(|o| std::io::BufWriter::with_capacity(64 * 1024, o));
    let mut count = 0u64;
    let mut batch = Vec::with_capacity(256);
    while events.recv_many(&mut batch, 256).await > 0 {
        for event in batch.drain(..) {
            if let Some(hub) = &hub {
                hub.publish(&event);
            }
            if let Some(out) = out.as_mut() {
                serde_json::to_writer(&mut *out, &event)?;
                out.write_all(b"\n")?;
            }
            count += 1;
        }
        if events.is_empty()
            && let Some(out) = out.as_mut()
        {
            out.flush()?;
        }
    }
    if let Some(out) = out.as_mut() {
        out.flush()?;
    }
    Ok(count)
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
        let n = dispatch(rx, None, Some(&mut buf)).await.expect("written");
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
}
