//! Event filters (`EventFilter` allow and deny lists), with the semantics of the sensor's
//! `GetEvents`: an event passes when it matches any allow filter (or there is none) and no
//! deny filter. A filter matches when each of its non-empty fields matches; a field matches
//! when any of its values does. Loss reports (`LostEvents`) always pass the allow list; only a
//! deny filter naming their kind hides them.

use crate::v1 as pb;

/// Most filters in an allow or deny list.
pub const MAX_FILTERS: usize = 64;
/// Most values in one field of a filter.
pub const MAX_VALUES: usize = 256;
/// Longest string value, bytes.
pub const MAX_STRING_BYTES: usize = 1024;

/// Why a filter list was refused; the message names the field and value.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct FilterError(String);

/// One validated filter.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Filter {
    /// Event kinds (any, when empty).
    pub kinds: Vec<pb::EventKind>,
    /// Pod namespaces.
    pub namespaces: Vec<String>,
    /// Pod names.
    pub pod_names: Vec<String>,
    /// Workload kinds.
    pub workload_kinds: Vec<pb::WorkloadKind>,
    /// Workload names.
    pub workload_names: Vec<String>,
    /// CronJob names.
    pub cronjobs: Vec<String>,
    /// Container id prefixes.
    pub container_ids: Vec<String>,
    /// Binary path prefixes.
    pub binary_prefixes: Vec<String>,
}

/// Validated allow and deny lists, ready to match events.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Compiled {
    /// Allow filters (everything, when empty).
    pub allow: Vec<Filter>,
    /// Deny filters.
    pub deny: Vec<Filter>,
}

/// Validates allow and deny lists.
pub fn compile(
    allow: &[pb::EventFilter],
    deny: &[pb::EventFilter],
) -> Result<Compiled, FilterError> {
    Ok(Compiled {
        allow: compile_list("allow_list", allow)?,
        deny: compile_list("deny_list", deny)?,
    })
}

fn compile_list(name: &str, list: &[pb::EventFilter]) -> Result<Vec<Filter>, FilterError> {
    if list.len() > MAX_FILTERS {
        return Err(FilterError(format!(
            "{name}: {} filters, at most {MAX_FILTERS} allowed",
            list.len()
        )));
    }
    list.iter()
        .enumerate()
        .map(|(i, f)| compile_filter(&format!("{name}[{i}]"), f))
        .collect()
}

fn compile_filter(at: &str, f: &pb::EventFilter) -> Result<Filter, FilterError> {
    Ok(Filter {
        kinds: enums(at, "kinds", &f.kinds, |v| {
            pb::EventKind::try_from(v)
                .ok()
                .filter(|k| *k != pb::EventKind::Unspecified)
        })?,
        namespaces: strings(at, "namespaces", &f.namespaces, false)?,
        pod_names: strings(at, "pod_names", &f.pod_names, false)?,
        workload_kinds: enums(at, "workload_kinds", &f.workload_kinds, |v| {
            pb::WorkloadKind::try_from(v)
                .ok()
                .filter(|k| *k != pb::WorkloadKind::Unspecified)
        })?,
        workload_names: strings(at, "workload_names", &f.workload_names, false)?,
        cronjobs: strings(at, "cronjobs", &f.cronjobs, false)?,
        container_ids: strings(at, "container_ids", &f.container_ids, true)?,
        binary_prefixes: strings(at, "binary_prefixes", &f.binary_prefixes, true)?,
    })
}

fn count(at: &str, field: &str, n: usize) -> Result<(), FilterError> {
    if n > MAX_VALUES {
        return Err(FilterError(format!(
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
) -> Result<Vec<T>, FilterError> {
    count(at, field, values.len())?;
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            known(v).ok_or_else(|| {
                FilterError(format!(
                    "{at}.{field}[{i}]: unknown or unspecified enum value {v}"
                ))
            })
        })
        .collect()
}

/// Prefix fields refuse empty values: an empty prefix would match everything.
fn strings(
    at: &str,
    field: &str,
    values: &[String],
    prefix: bool,
) -> Result<Vec<String>, FilterError> {
    count(at, field, values.len())?;
    for (i, v) in values.iter().enumerate() {
        if v.len() > MAX_STRING_BYTES {
            return Err(FilterError(format!(
                "{at}.{field}[{i}]: {} bytes, at most {MAX_STRING_BYTES} allowed",
                v.len()
            )));
        }
        if prefix && v.is_empty() {
            return Err(FilterError(format!(
                "{at}.{field}[{i}]: empty prefix (leave the field out to match everything)"
            )));
        }
    }
    Ok(values.to_vec())
}

/// The kind of an event (`Unspecified` when it has none).
pub fn event_kind(e: &pb::Event) -> pb::EventKind {
    use pb::event::Kind;
    match &e.kind {
        Some(Kind::ProcessExec(_)) => pb::EventKind::ProcessExec,
        Some(Kind::ProcessExit(_)) => pb::EventKind::ProcessExit,
        Some(Kind::FileCreated(_)) => pb::EventKind::FileCreated,
        Some(Kind::ContainerCreated(_)) => pb::EventKind::ContainerCreated,
        Some(Kind::ContainerExited(_)) => pb::EventKind::ContainerExited,
        Some(Kind::LostEvents(_)) => pb::EventKind::LostEvents,
        None => pb::EventKind::Unspecified,
    }
}

/// The facts of an event that filters look at (and that the store indexes).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Facts<'a> {
    /// The event's kind.
    pub kind: Option<pb::EventKind>,
    /// Pod namespace.
    pub namespace: Option<&'a str>,
    /// Pod name.
    pub pod_name: Option<&'a str>,
    /// Workload kind (raw enum value).
    pub workload_kind: Option<i32>,
    /// Workload name.
    pub workload_name: Option<&'a str>,
    /// CronJob name.
    pub cronjob: Option<&'a str>,
    /// Container id.
    pub container_id: Option<&'a str>,
    /// The process's binary.
    pub binary: Option<&'a str>,
}

impl<'a> Facts<'a> {
    /// The facts of `e`.
    pub fn of(e: &'a pb::Event) -> Facts<'a> {
        use pb::event::Kind;
        let mut v = Facts {
            kind: Some(event_kind(e)),
            ..Facts::default()
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
    fn matches(&self, v: &Facts<'_>) -> bool {
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
    /// Whether the event passes.
    pub fn matches(&self, e: &pb::Event) -> bool {
        let v = Facts::of(e);
        if v.kind == Some(pb::EventKind::LostEvents) {
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

    fn exec(binary: &str, ns: &str, cj: &str) -> pb::Event {
        pb::Event {
            kind: Some(Kind::ProcessExec(pb::ProcessExec {
                binary: binary.into(),
                container: Some(pb::ContainerRef {
                    id: "abc123".into(),
                    pod: Some(pb::Pod {
                        namespace: ns.into(),
                        name: "p".into(),
                        ..Default::default()
                    }),
                    workload: Some(pb::Workload {
                        kind: pb::WorkloadKind::CronJob as i32,
                        name: cj.into(),
                        cronjob: Some(pb::CronJobRef {
                            name: cj.into(),
                            ..Default::default()
                        }),
                        ..Default::default()
                    }),
                    ..Default::default()
                }),
                ..Default::default()
            })),
            ..Default::default()
        }
    }

    fn lost() -> pb::Event {
        pb::Event {
            kind: Some(Kind::LostEvents(pb::LostEvents {
                count: 1,
                cause: pb::LossCause::QueueFull as i32,
            })),
            ..Default::default()
        }
    }

    #[test]
    fn allow_deny_and_losses() {
        let c = compile(
            &[pb::EventFilter {
                namespaces: vec!["batch".into()],
                ..Default::default()
            }],
            &[pb::EventFilter {
                binary_prefixes: vec!["/usr/".into()],
                ..Default::default()
            }],
        )
        .expect("valid");
        assert!(c.matches(&exec("/tmp/x", "batch", "r")));
        assert!(!c.matches(&exec("/usr/bin/x", "batch", "r")));
        assert!(!c.matches(&exec("/tmp/x", "web", "r")));
        assert!(c.matches(&lost()));
        let deny_lost = compile(
            &[],
            &[pb::EventFilter {
                kinds: vec![pb::EventKind::LostEvents as i32],
                ..Default::default()
            }],
        )
        .expect("valid");
        assert!(!deny_lost.matches(&lost()));
        assert!(deny_lost.matches(&exec("/x", "a", "b")));
    }

    #[test]
    fn prefixes_and_validation() {
        let c = compile(
            &[pb::EventFilter {
                container_ids: vec!["abc".into()],
                cronjobs: vec!["r".into()],
                ..Default::default()
            }],
            &[],
        )
        .expect("valid");
        assert!(c.matches(&exec("/x", "n", "r")));
        assert!(!c.matches(&exec("/x", "n", "s")));
        let e = compile(
            &[pb::EventFilter {
                kinds: vec![99],
                ..Default::default()
            }],
            &[],
        )
        .expect_err("unknown kind");
        assert!(e.to_string().contains("allow_list[0].kinds[0]"), "{e}");
        assert!(
            compile(
                &[pb::EventFilter {
                    binary_prefixes: vec![String::new()],
                    ..Default::default()
                }],
                &[]
            )
            .is_err()
        );
    }
}
