//! Event filters of `GetEvents`: validation of a request's allow and deny lists, and matching.
//!
//! An event is sent when it matches any allow filter (or the allow list is empty) and no deny
//! filter. A filter matches when each of its non-empty fields matches; a field matches when
//! any of its values does. Loss reports (`LostEvents`) always pass the allow list, since a loss
//! must never be hidden by a filter; a client that really does not want them denies them by
//! kind.

use jobwatch_proto::v1 as pb;
use tonic::Status;

use crate::api::convert;

/// Most filters in an allow or deny list.
pub const MAX_FILTERS: usize = 64;
/// Most values in one field of a filter.
pub const MAX_VALUES: usize = 256;
/// Longest string value, bytes.
pub const MAX_STRING_BYTES: usize = 1024;

/// One validated filter.
#[derive(Clone, Debug, Default, PartialEq)]
struct Filter {
    kinds: Vec<pb::EventKind>,
    namespaces: Vec<String>,
    pod_names: Vec<String>,
    workload_kinds: Vec<pb::WorkloadKind>,
    workload_names: Vec<String>,
    cronjobs: Vec<String>,
    container_ids: Vec<String>,
    binary_prefixes: Vec<String>,
}

/// A validated `GetEventsRequest`, ready to match events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Compiled {
    allow: Vec<Filter>,
    deny: Vec<Filter>,
}

/// Validates a request's filters. Errors are `InvalidArgument`, naming the field and value.
pub fn compile(req: &pb::GetEventsRequest) -> Result<Compiled, Status> {
    Ok(Compiled {
        allow: compile_list("allow_list", &req.allow_list)?,
        deny: compile_list("deny_list", &req.deny_list)?,
    })
}

fn compile_list(name: &str, list: &[pb::EventFilter]) -> Result<Vec<Filter>, Status> {
    if list.len() > MAX_FILTERS {
        return Err(Status::invalid_argument(format!(
            "{name}: {} filters, at most {MAX_FILTERS} allowed",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, f)| compile_filter(&format!("{name}[{i}]"), f))
        .collect()
}

fn compile_filter(at: &str, f: &pb::EventFilter) -> Result<Filter, Status> {
    let kinds = enums(at, "kinds", &f.kinds, |v| {
        pb::EventKind::try_from(v)
            .ok()
            .filter(|k| *k != pb::EventKind::Unspecified)
    })?;
    let workload_kinds = enums(at, "workload_kinds", &f.workload_kinds, |v| {
        pb::WorkloadKind::try_from(v)
            .ok()
            .filter(|k| *k != pb::WorkloadKind::Unspecified)
    })?;
    Ok(Filter {
        kinds,
        namespaces: strings(at, "namespaces", &f.namespaces, false)?,
        pod_names: strings(at, "pod_names", &f.pod_names, false)?,
        workload_kinds,
        workload_names: strings(at, "workload_names", &f.workload_names, false)?,
        cronjobs: strings(at, "cronjobs", &f.cronjobs, false)?,
        container_ids: strings(at, "container_ids", &f.container_ids, true)?,
        binary_prefixes: strings(at, "binary_prefixes", &f.binary_prefixes, true)?,
    })
}

fn count(at: &str, field: &str, n: usize) -> Result<(), Status> {
    if n > MAX_VALUES {
        return Err(Status::invalid_argument(format!(
            "{at}.{field}: {n} values, at most {MAX_VALUES} allowed"
        )));
    }
    Ok(())
}

fn enums<T>(
    at: &str,
    field: &str,
    values: &[i32],
    known: impl Fn(i32) -> Option<T>,
) -> Result<Vec<T>, Status> {
    count(at, field, values.len())?;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            known(v).ok_or_else(|| {
                Status::invalid_argument(format!(
                    "{at}.{field}[{i}]: unknown or unspecified enum value {v}"
                ))
            })
        })
        .collect()
}

/// Prefix fields reject empty values: an empty prefix would match everything, which is what
/// leaving the field out already says.
fn strings(at: &str, field: &str, values: &[String], prefix: bool) -> Result<Vec<String>, Status> {
    count(at, field, values.len())?;
    for (i, v) in values.iter().enumerate() {
        if v.len() > MAX_STRING_BYTES {
            return Err(Status::invalid_argument(format!(
                "{at}.{field}[{i}]: {} bytes, at most {MAX_STRING_BYTES} allowed",
                v.len()
            )));
        }
        if prefix && v.is_empty() {
            return Err(Status::invalid_argument(format!(
                "{at}.{field}[{i}]: empty prefix (leave the field out to match everything)"
            )));
        }
    }
    Ok(values.to_vec())
}

/// The facts of an event that filters look at.
#[derive(Default)]
struct View<'a> {
    kind: Option<pb::EventKind>,
    namespace: Option<&'a str>,
    pod_name: Option<&'a str>,
    workload_kind: Option<i32>,
    workload_name: Option<&'a str>,
    cronjob: Option<&'a str>,
    container_id: Option<&'a str>,
    binary: Option<&'a str>,
}

impl<'a> View<'a> {
    fn of(e: &'a pb::Event) -> View<'a> {
        use pb::event::Kind;
        let mut v = View {
            kind: Some(convert::event_kind(e)),
            ..View::default()
        };
        match &e.kind {
            Some(Kind::ProcessExec(x)) => {
                v.binary = Some(&x.binary);
                v.set_ref(x.container.as_ref());
            }
            Some(Kind::ProcessExit(x)) => {
                v.binary = Some(&x.binary);
                v.set_ref(x.container.as_ref());
            }
            Some(Kind::FileCreated(x)) => {
                v.binary = x.process.as_ref().map(|p| p.binary.as_str());
                v.set_ref(x.container.as_ref());
            }
            Some(Kind::ContainerExited(x)) => v.set_ref(x.container.as_ref()),
            Some(Kind::ContainerCreated(x)) => {
                if let Some(c) = &x.container {
                    v.set(&c.id, c.pod.as_ref(), c.workload.as_ref());
                }
            }
            Some(Kind::LostEvents(_)) | None => {}
        }
        v
    }

    fn set_ref(&mut self, c: Option<&'a pb::ContainerRef>) {
        if let Some(c) = c {
            self.set(&c.id, c.pod.as_ref(), c.workload.as_ref());
        }
    }

    fn set(&mut self, id: &'a str, pod: Option<&'a pb::Pod>, workload: Option<&'a pb::Workload>) {
        self.container_id = Some(id);
        if let Some(p) = pod {
            self.namespace = Some(&p.namespace);
            self.pod_name = Some(&p.name);
        }
        if let Some(w) = workload {
            self.workload_kind = Some(w.kind);
            self.workload_name = Some(&w.name);
            self.cronjob = w.cronjob.as_ref().map(|c| c.name.as_str());
        }
    }
}

/// A field matches when it is empty or when `hit` holds for the event's value and any of the
/// field's values; an event without the value never matches a non-empty field.
fn field<T, V: Copy>(values: &[T], value: Option<V>, hit: impl Fn(&T, V) -> bool) -> bool {
    values.is_empty() || value.is_some_and(|v| values.iter().any(|x| hit(x, v)))
}

impl Filter {
    fn matches(&self, v: &View<'_>) -> bool {
        field(&self.kinds, v.kind, |k, e| *k == e)
            && field(&self.namespaces, v.namespace, |x, e| x == e)
            && field(&self.pod_names, v.pod_name, |x, e| x == e)
            && field(&self.workload_kinds, v.workload_kind, |k, e| *k as i32 == e)
            && field(&self.workload_names, v.workload_name, |x, e| x == e)
            && field(&self.cronjobs, v.cronjob, |x, e| x == e)
            && field(&self.container_ids, v.container_id, |x, e| {
                e.starts_with(x.as_str())
            })
            && field(&self.binary_prefixes, v.binary, |x, e| {
                e.starts_with(x.as_str())
            })
    }
}

impl Compiled {
    /// Whether the event is to be sent.
    pub fn matches(&self, e: &pb::Event) -> bool {
        let v = View::of(e);
        if v.kind == Some(pb::EventKind::LostEvents) {
            // Only a deny filter that names the kind hides losses.
            return !self
                .deny
                .iter()
                .any(|f| f.kinds.contains(&pb::EventKind::LostEvents) && f.matches(&v));
        }
        (self.allow.is_empty() || self.allow.iter().any(|f| f.matches(&v)))
            && !self.deny.iter().any(|f| f.matches(&v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pb::event::Kind;

    fn cref(id: &str, ns: &str, pod: &str, wk: pb::WorkloadKind, cj: &str) -> pb::ContainerRef {
        pb::ContainerRef {
            id: id.into(),
            pod: Some(pb::Pod {
                name: pod.into(),
                namespace: ns.into(),
                ..Default::default()
            }),
            workload: Some(pb::Workload {
                kind: wk as i32,
                name: if cj.is_empty() { pod.into() } else { cj.into() },
                cronjob: (!cj.is_empty()).then(|| pb::CronJobRef {
                    name: cj.into(),
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        }
    }

    fn ev(kind: Kind) -> pb::Event {
        pb::Event {
            kind: Some(kind),
            ..Default::default()
        }
    }

    fn exec(binary: &str, c: Option<pb::ContainerRef>) -> pb::Event {
        ev(Kind::ProcessExec(pb::ProcessExec {
            binary: binary.into(),
            container: c,
            ..Default::default()
        }))
    }

    fn exit(binary: &str, c: Option<pb::ContainerRef>) -> pb::Event {
        ev(Kind::ProcessExit(pb::ProcessExit {
            binary: binary.into(),
            container: c,
            ..Default::default()
        }))
    }

    fn file(binary: &str, c: Option<pb::ContainerRef>) -> pb::Event {
        ev(Kind::FileCreated(pb::FileCreated {
            process: Some(pb::Process {
                binary: binary.into(),
                ..Default::default()
            }),
            container: c,
            ..Default::default()
        }))
    }

    fn created(c: &pb::ContainerRef) -> pb::Event {
        ev(Kind::ContainerCreated(pb::ContainerCreated {
            container: Some(pb::Container {
                id: c.id.clone(),
                pod: c.pod.clone(),
                workload: c.workload.clone(),
                ..Default::default()
            }),
            seen_at_start: false,
        }))
    }

    fn exited(c: pb::ContainerRef) -> pb::Event {
        ev(Kind::ContainerExited(pb::ContainerExited {
            container: Some(c),
            ..Default::default()
        }))
    }

    fn lost() -> pb::Event {
        ev(Kind::LostEvents(pb::LostEvents {
            count: 3,
            cause: pb::LossCause::SlowSubscriber as i32,
        }))
    }

    fn job() -> pb::ContainerRef {
        cref(
            "abc123",
            "batch",
            "report-1",
            pb::WorkloadKind::CronJob,
            "report",
        )
    }

    fn web() -> pb::ContainerRef {
        cref("def456", "web", "nginx", pb::WorkloadKind::Deployment, "")
    }

    fn allow(f: pb::EventFilter) -> Compiled {
        compile(&pb::GetEventsRequest {
            allow_list: vec![f],
            deny_list: vec![],
        })
        .expect("valid filter")
    }

    fn code(req: pb::GetEventsRequest) -> tonic::Code {
        compile(&req).expect_err("invalid filter").code()
    }

    #[test]
    fn empty_request_matches_everything() {
        let c = compile(&pb::GetEventsRequest::default()).expect("valid");
        for e in [
            exec("/bin/sh", None),
            created(&job()),
            lost(),
            pb::Event::default(),
        ] {
            assert!(c.matches(&e));
        }
    }

    #[test]
    fn kinds() {
        let c = allow(pb::EventFilter {
            kinds: vec![
                pb::EventKind::ProcessExec as i32,
                pb::EventKind::FileCreated as i32,
            ],
            ..Default::default()
        });
        assert!(c.matches(&exec("/bin/sh", None)));
        assert!(c.matches(&file("/bin/sh", None)));
        assert!(!c.matches(&exit("/bin/sh", None)));
        assert!(!c.matches(&created(&job())));
        assert!(!c.matches(&exited(job())));
    }

    #[test]
    fn namespaces_from_every_kind_with_a_container() {
        let c = allow(pb::EventFilter {
            namespaces: vec!["batch".into()],
            ..Default::default()
        });
        assert!(c.matches(&exec("/x", Some(job()))));
        assert!(c.matches(&exit("/x", Some(job()))));
        assert!(c.matches(&file("/x", Some(job()))));
        assert!(c.matches(&created(&job())));
        assert!(c.matches(&exited(job())));
        assert!(!c.matches(&exec("/x", Some(web()))));
        assert!(
            !c.matches(&exec("/x", None)),
            "host process has no namespace"
        );
    }

    #[test]
    fn pod_names_workloads_and_cronjobs() {
        let pods = allow(pb::EventFilter {
            pod_names: vec!["nginx".into()],
            ..Default::default()
        });
        assert!(pods.matches(&exec("/x", Some(web()))));
        assert!(!pods.matches(&exec("/x", Some(job()))));

        let kinds = allow(pb::EventFilter {
            workload_kinds: vec![pb::WorkloadKind::CronJob as i32],
            ..Default::default()
        });
        assert!(kinds.matches(&exec("/x", Some(job()))));
        assert!(!kinds.matches(&exec("/x", Some(web()))));
        assert!(!kinds.matches(&exec("/x", None)));

        let names = allow(pb::EventFilter {
            workload_names: vec!["nginx".into()],
            ..Default::default()
        });
        assert!(names.matches(&created(&web())));
        assert!(!names.matches(&created(&job())));

        let cronjobs = allow(pb::EventFilter {
            cronjobs: vec!["report".into(), "other".into()],
            ..Default::default()
        });
        assert!(cronjobs.matches(&file("/x", Some(job()))));
        assert!(!cronjobs.matches(&file("/x", Some(web()))));
        assert!(!cronjobs.matches(&file("/x", None)));
    }

    #[test]
    fn container_ids_exact_or_prefix() {
        for id in ["abc123", "abc"] {
            let c = allow(pb::EventFilter {
                container_ids: vec![id.into()],
                ..Default::default()
            });
            assert!(c.matches(&exec("/x", Some(job()))), "{id}");
            assert!(c.matches(&created(&job())), "{id}");
            assert!(!c.matches(&exec("/x", Some(web()))), "{id}");
            assert!(!c.matches(&exec("/x", None)), "{id}");
        }
        let longer = allow(pb::EventFilter {
            container_ids: vec!["abc1234".into()],
            ..Default::default()
        });
        assert!(!longer.matches(&exec("/x", Some(job()))));
    }

    #[test]
    fn binary_prefixes() {
        let c = allow(pb::EventFilter {
            binary_prefixes: vec!["/tmp/".into(), "/dev/shm/".into()],
            ..Default::default()
        });
        assert!(c.matches(&exec("/tmp/x", None)));
        assert!(c.matches(&exit("/dev/shm/y", None)));
        assert!(c.matches(&file("/tmp/z", None)));
        assert!(!c.matches(&exec("/usr/bin/tmp", None)));
        assert!(!c.matches(&created(&job())), "no binary");
    }

    #[test]
    fn fields_are_anded_filters_are_ored() {
        let both = allow(pb::EventFilter {
            kinds: vec![pb::EventKind::ProcessExec as i32],
            namespaces: vec!["batch".into()],
            ..Default::default()
        });
        assert!(both.matches(&exec("/x", Some(job()))));
        assert!(!both.matches(&exit("/x", Some(job()))));
        assert!(!both.matches(&exec("/x", Some(web()))));

        let either = compile(&pb::GetEventsRequest {
            allow_list: vec![
                pb::EventFilter {
                    namespaces: vec!["web".into()],
                    ..Default::default()
                },
                pb::EventFilter {
                    kinds: vec![pb::EventKind::ProcessExit as i32],
                    ..Default::default()
                },
            ],
            deny_list: vec![],
        })
        .expect("valid");
        assert!(either.matches(&exec("/x", Some(web()))));
        assert!(either.matches(&exit("/x", Some(job()))));
        assert!(!either.matches(&exec("/x", Some(job()))));
    }

    #[test]
    fn deny_wins_over_allow() {
        let c = compile(&pb::GetEventsRequest {
            allow_list: vec![pb::EventFilter {
                namespaces: vec!["batch".into()],
                ..Default::default()
            }],
            deny_list: vec![pb::EventFilter {
                binary_prefixes: vec!["/usr/bin/".into()],
                ..Default::default()
            }],
        })
        .expect("valid");
        assert!(c.matches(&exec("/tmp/x", Some(job()))));
        assert!(!c.matches(&exec("/usr/bin/date", Some(job()))));
        assert!(!c.matches(&exec("/tmp/x", Some(web()))));

        let deny_only = compile(&pb::GetEventsRequest {
            allow_list: vec![],
            deny_list: vec![pb::EventFilter {
                kinds: vec![pb::EventKind::FileCreated as i32],
                ..Default::default()
            }],
        })
        .expect("valid");
        assert!(deny_only.matches(&exec("/x", None)));
        assert!(!deny_only.matches(&file("/x", None)));
    }

    #[test]
    fn losses_pass_the_allow_list_unless_denied_by_kind() {
        let c = allow(pb::EventFilter {
            kinds: vec![pb::EventKind::ProcessExec as i32],
            namespaces: vec!["batch".into()],
            ..Default::default()
        });
        assert!(c.matches(&lost()));

        let deny_everything = compile(&pb::GetEventsRequest {
            allow_list: vec![],
            deny_list: vec![pb::EventFilter::default()],
        })
        .expect("valid");
        assert!(!deny_everything.matches(&exec("/x", None)));
        assert!(deny_everything.matches(&lost()), "not denied by kind");

        let deny_lost = compile(&pb::GetEventsRequest {
            allow_list: vec![],
            deny_list: vec![pb::EventFilter {
                kinds: vec![pb::EventKind::LostEvents as i32],
                ..Default::default()
            }],
        })
        .expect("valid");
        assert!(!deny_lost.matches(&lost()));
        assert!(deny_lost.matches(&exec("/x", None)));
    }

    #[test]
    fn validation_errors() {
        let bad_kind = pb::GetEventsRequest {
            allow_list: vec![pb::EventFilter {
                kinds: vec![1, 99],
                ..Default::default()
            }],
            deny_list: vec![],
        };
        let e = compile(&bad_kind).expect_err("unknown kind");
        assert_eq!(e.code(), tonic::Code::InvalidArgument);
        assert!(
            e.message().contains("allow_list[0].kinds[1]"),
            "{}",
            e.message()
        );
        assert!(e.message().contains("99"), "{}", e.message());

        let bad_workload = pb::GetEventsRequest {
            allow_list: vec![],
            deny_list: vec![pb::EventFilter {
                workload_kinds: vec![0],
                ..Default::default()
            }],
        };
        let e = compile(&bad_workload).expect_err("unspecified workload kind");
        assert!(
            e.message().contains("deny_list[0].workload_kinds[0]"),
            "{}",
            e.message()
        );

        assert_eq!(
            code(pb::GetEventsRequest {
                allow_list: vec![pb::EventFilter::default(); MAX_FILTERS + 1],
                deny_list: vec![],
            }),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(pb::GetEventsRequest {
                allow_list: vec![pb::EventFilter {
                    namespaces: vec!["n".into(); MAX_VALUES + 1],
                    ..Default::default()
                }],
                deny_list: vec![],
            }),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(pb::GetEventsRequest {
                allow_list: vec![],
                deny_list: vec![pb::EventFilter {
                    cronjobs: vec!["x".repeat(MAX_STRING_BYTES + 1)],
                    ..Default::default()
                }],
            }),
            tonic::Code::InvalidArgument
        );
        assert_eq!(
            code(pb::GetEventsRequest {
                allow_list: vec![pb::EventFilter {
                    binary_prefixes: vec![String::new()],
                    ..Default::default()
                }],
                deny_list: vec![],
            }),
            tonic::Code::InvalidArgument
        );
        // At the limits: fine.
        compile(&pb::GetEventsRequest {
            allow_list: vec![
                pb::EventFilter {
                    pod_names: vec!["x".repeat(MAX_STRING_BYTES); MAX_VALUES],
                    ..Default::default()
                };
                MAX_FILTERS
            ],
            deny_list: vec![],
        })
        .expect("at the limits");
    }
}
