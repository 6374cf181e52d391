//! Validation of report batches: limits, and no unknown enum values (the proto contract says a
//! receiver must reject them, not guess).

use jobwatch_proto::v1 as pb;

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

/// Checks a batch; nothing of it may be stored when this fails.
pub fn batch(b: &pb::ReportBatch) -> Result<(), Invalid> {
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
    for (i, e) in b.events.iter().enumerate() {
        event(&format!("events[{i}]"), e)?;
    }
    Ok(())
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

    fn ok_batch() -> pb::ReportBatch {
        pb::ReportBatch {
            sensor: "n1".into(),
            run_id: "r1".into(),
            events: vec![pb::Event {
                seq: 1,
                kind: Some(pb::event::Kind::FileCreated(pb::FileCreated {
                    operation: pb::FileOperation::Create as i32,
                    ..Default::default()
                })),
                ..Default::default()
            }],
        }
    }

    #[test]
    fn checks() {
        assert_eq!(batch(&ok_batch()), Ok(()));
        let mut b = ok_batch();
        b.sensor.clear();
        assert_eq!(batch(&b).map_err(|e| e.field), Err("sensor".into()));
        let mut b = ok_batch();
        if let Some(pb::event::Kind::FileCreated(f)) = &mut b.events[0].kind {
            f.operation = 99;
        }
        let e = batch(&b).expect_err("unknown operation");
        assert_eq!(e.field, "events[0].file_created.operation");
        let mut b = ok_batch();
        b.events[0].kind = None;
        assert!(batch(&b).is_err());
    }
}
