//! Validation of report batches: limits, and no unknown enum values (the proto contract says a
//! receiver must reject them, not guess).

use jobwatch_proto::v1 as pb;
use prost::Message;

use crate::store::Received;

/// Longest sensor name, bytes (a DNS name).
pub const MAX_SENSOR_BYTES: usize = 253;
/// Longest run id, bytes.
pub const MAX_RUN_ID_BYTES: usize = 128;
/// Most events in one batch.
pub const MAX_BATCH_EVENTS: usize = 10_000;

/// Why a batch was refused: the path of the offending field and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct Invalid {
    /// The field, e.g. `events[3].file_created.operation`.
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

fn invalid(field: impl Into<String>, problem: impl Into<String>) -> Invalid {
    Invalid {
        field: field.into(),
        problem: problem.into(),
    }
}

fn known<E: TryFrom<i32>>(field: String, v: i32) -> Result<(), Invalid> {
    E::try_from(v)
        .map(|_| ())
        .map_err(|_| invalid(field, format!("unknown enum value {v}")))
}

/// Checks a batch and decodes its events; nothing of it may be stored when this fails.
pub fn batch(b: &pb::ReportBatch) -> Result<Vec<Received>, Invalid> {
    if b.sensor.is_empty() || b.sensor.len() > MAX_SENSOR_BYTES {
        return Err(invalid(
            "sensor",
            format!("{} bytes, must be 1 to {MAX_SENSOR_BYTES}", b.sensor.len()),
        ));
    }
    if b.run_id.is_empty() || b.run_id.len() > MAX_RUN_ID_BYTES {
        return Err(invalid(
            "run_id",
            format!("{} bytes, must be 1 to {MAX_RUN_ID_BYTES}", b.run_id.len()),
        ));
    }
    if b.events.len() > MAX_BATCH_EVENTS {
        return Err(invalid(
            "events",
            format!("{} events, at most {MAX_BATCH_EVENTS}", b.events.len()),
        ));
    }
    let mut events = Vec::with_capacity(b.events.len());
    for (i, body) in b.events.iter().enumerate() {
        let e = pb::Event::decode(body.as_ref()).map_err(|e| {
            invalid(
                format!("events[{i}]"),
                format!("does not decode as Event: {e}"),
            )
        })?;
        event(&format!("events[{i}]"), &e)?;
        events.push(Received {
            event: e,
            body: Some(body.clone()),
        });
    }
    Ok(events)
}

fn event(at: &str, e: &pb::Event) -> Result<(), Invalid> {
    use pb::event::Kind;
    match &e.kind {
        None => Err(invalid(format!("{at}.kind"), "missing")),
        Some(Kind::ProcessExec(x)) => container_ref(&format!("{at}.process_exec"), &x.container),
        Some(Kind::ProcessExit(x)) => container_ref(&format!("{at}.process_exit"), &x.container),
        Some(Kind::FileCreated(x)) => {
            let at = format!("{at}.file_created");
            known::<pb::FileOperation>(format!("{at}.operation"), x.operation)?;
            container_ref(&at, &x.container)
        }
        Some(Kind::ContainerCreated(x)) => {
            let at = format!("{at}.container_created.container");
            if let Some(c) = &x.container {
                known::<pb::ContainerKind>(format!("{at}.kind"), c.kind)?;
                workload(&format!("{at}.workload"), &c.workload)?;
            }
            Ok(())
        }
        Some(Kind::ContainerExited(x)) => {
            container_ref(&format!("{at}.container_exited"), &x.container)
        }
        Some(Kind::LostEvents(x)) => {
            known::<pb::LossCause>(format!("{at}.lost_events.cause"), x.cause)
        }
    }
}

fn container_ref(at: &str, c: &Option<pb::ContainerRef>) -> Result<(), Invalid> {
    match c {
        Some(c) => workload(&format!("{at}.container.workload"), &c.workload),
        None => Ok(()),
    }
}

fn workload(at: &str, w: &Option<pb::Workload>) -> Result<(), Invalid> {
    let Some(w) = w else { return Ok(()) };
    known::<pb::WorkloadKind>(format!("{at}.kind"), w.kind)?;
    known::<pb::OwnerSource>(format!("{at}.source"), w.source)?;
    if let Some(cj) = &w.cronjob {
        known::<pb::OwnerSource>(format!("{at}.cronjob.source"), cj.source)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ok_event() -> pb::Event {
        pb::Event {
            seq: 1,
            kind: Some(pb::event::Kind::FileCreated(pb::FileCreated {
                operation: pb::FileOperation::Create as i32,
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn batch_of(events: &[pb::Event]) -> pb::ReportBatch {
        pb::ReportBatch {
            sensor: "n1".into(),
            run_id: "r1".into(),
            events: events.iter().map(|e| e.encode_to_vec().into()).collect(),
        }
    }

    #[test]
    fn checks() {
        let ok = batch_of(&[ok_event()]);
        let decoded = batch(&ok).expect("valid");
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].event, ok_event());
        assert_eq!(decoded[0].body.as_ref(), Some(&ok.events[0]));
        let mut b = ok.clone();
        b.sensor.clear();
        assert_eq!(batch(&b).map_err(|e| e.field), Err("sensor".into()));
        let mut e = ok_event();
        if let Some(pb::event::Kind::FileCreated(f)) = &mut e.kind {
            f.operation = 99;
        }
        let err = batch(&batch_of(&[ok_event(), e])).expect_err("unknown operation");
        assert_eq!(err.field, "events[1].file_created.operation");
        let mut e = ok_event();
        e.kind = None;
        assert!(batch(&batch_of(&[e])).is_err());
    }

    #[test]
    fn an_undecodable_event_refuses_the_batch() {
        let mut b = batch_of(&[ok_event(), ok_event()]);
        // Field 10 (process_exec) claims 100 bytes and has none.
        b.events[1] = vec![0x52, 100].into();
        let err = batch(&b).expect_err("undecodable");
        assert_eq!(err.field, "events[1]");
        assert!(
            err.problem.starts_with("does not decode as Event: "),
            "{}",
            err.problem
        );
    }
}
