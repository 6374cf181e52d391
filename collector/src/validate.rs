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

impl Invalid {
    /// The same problem, its field named from one level up (`prefix.field`). Field paths are
    /// built on the way out of a failed check only: a valid event costs no string.
    fn under(mut self, prefix: &str) -> Invalid {
        self.field = format!("{prefix}.{}", self.field);
        self
    }
}

fn known<E: TryFrom<i32>>(field: &str, v: i32) -> Result<(), Invalid> {
    match E::try_from(v) {
        Ok(_) => Ok(()),
        Err(_) => Err(invalid(field, format!("unknown enum value {v}"))),
    }
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
        event(&e).map_err(|x| x.under(&format!("events[{i}]")))?;
        events.push(Received {
            event: e,
            body: Some(body.clone()),
        });
    }
    Ok(events)
}

fn event(e: &pb::Event) -> Result<(), Invalid> {
    use pb::event::Kind;
    match &e.kind {
        None => Err(invalid("kind", "missing")),
        Some(Kind::ProcessExec(x)) => {
            container_ref(&x.container).map_err(|e| e.under("process_exec"))
        }
        Some(Kind::ProcessExit(x)) => {
            container_ref(&x.container).map_err(|e| e.under("process_exit"))
        }
        Some(Kind::FileCreated(x)) => known::<pb::FileOperation>("operation", x.operation)
            .and_then(|()| container_ref(&x.container))
            .map_err(|e| e.under("file_created")),
        Some(Kind::ContainerCreated(x)) => match &x.container {
            Some(c) => known::<pb::ContainerKind>("kind", c.kind)
                .and_then(|()| workload(&c.workload).map_err(|e| e.under("workload")))
                .map_err(|e| e.under("container_created.container")),
            None => Ok(()),
        },
        Some(Kind::ContainerExited(x)) => {
            container_ref(&x.container).map_err(|e| e.under("container_exited"))
        }
        Some(Kind::LostEvents(x)) => {
            known::<pb::LossCause>("cause", x.cause).map_err(|e| e.under("lost_events"))
        }
    }
}

fn container_ref(c: &Option<pb::ContainerRef>) -> Result<(), Invalid> {
    match c {
        Some(c) => workload(&c.workload).map_err(|e| e.under("container.workload")),
        None => Ok(()),
    }
}

fn workload(w: &Option<pb::Workload>) -> Result<(), Invalid> {
    let Some(w) = w else { return Ok(()) };
    known::<pb::WorkloadKind>("kind", w.kind)?;
    known::<pb::OwnerSource>("source", w.source)?;
    if let Some(cj) = &w.cronjob {
        known::<pb::OwnerSource>("source", cj.source).map_err(|e| e.under("cronjob"))?;
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
        let err = batch(&batch_of(&[e])).expect_err("no kind");
        assert_eq!(
            (err.field.as_str(), err.problem.as_str()),
            ("events[0].kind", "missing")
        );
    }

    #[test]
    fn nested_fields_are_named_by_their_whole_path() {
        use pb::event::Kind;
        let bad_workload = |kind, source, cronjob_source| pb::Workload {
            kind,
            source,
            cronjob: Some(pb::CronJobRef {
                source: cronjob_source,
                ..Default::default()
            }),
            ..Default::default()
        };
        let container = |w| pb::ContainerRef {
            workload: Some(w),
            ..Default::default()
        };
        let event = |kind| pb::Event {
            seq: 1,
            kind: Some(kind),
            ..Default::default()
        };
        let cases = [
            (
                event(Kind::ProcessExec(pb::ProcessExec {
                    container: Some(container(bad_workload(77, 0, 0))),
                    ..Default::default()
                })),
                "events[2].process_exec.container.workload.kind",
            ),
            (
                event(Kind::ProcessExit(pb::ProcessExit {
                    container: Some(container(bad_workload(0, 78, 0))),
                    ..Default::default()
                })),
                "events[2].process_exit.container.workload.source",
            ),
            (
                event(Kind::ContainerExited(pb::ContainerExited {
                    container: Some(container(bad_workload(0, 0, 79))),
                    ..Default::default()
                })),
                "events[2].container_exited.container.workload.cronjob.source",
            ),
            (
                event(Kind::ContainerCreated(pb::ContainerCreated {
                    container: Some(pb::Container {
                        kind: 80,
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                "events[2].container_created.container.kind",
            ),
            (
                event(Kind::ContainerCreated(pb::ContainerCreated {
                    container: Some(pb::Container {
                        workload: Some(bad_workload(0, 0, 81)),
                        ..Default::default()
                    }),
                    ..Default::default()
                })),
                "events[2].container_created.container.workload.cronjob.source",
            ),
            (
                event(Kind::LostEvents(pb::LostEvents {
                    cause: 82,
                    ..Default::default()
                })),
                "events[2].lost_events.cause",
            ),
        ];
        for (bad, field) in cases {
            let err = batch(&batch_of(&[ok_event(), ok_event(), bad])).expect_err(field);
            assert_eq!(err.field, field);
            assert!(
                err.problem.starts_with("unknown enum value "),
                "{}",
                err.problem
            );
        }
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
