//! The filters of `GetEvents`: allow and deny lists of `EventFilter`. The semantics (and the
//! implementation, shared with the collector) live in `jobwatch_proto::filter`; here they are
//! compiled from a request, with refusals as `InvalidArgument`.

use jobwatch_proto::v1 as pb;
use tonic::Status;

pub use jobwatch_proto::filter::{Compiled, MAX_FILTERS, MAX_STRING_BYTES, MAX_VALUES};

/// Validates a request's filter lists; a refusal names the field and value.
pub fn compile(req: &pb::GetEventsRequest) -> Result<Compiled, Status> {
    jobwatch_proto::filter::compile(&req.allow_list, &req.deny_list)
        .map_err(|e| Status::invalid_argument(e.to_string()))
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
