//! Lower-case names of the API's enums ("cron_job", "process_exec", ...), for JSON and text.

use jobwatch_proto::v1 as pb;
use serde_json::Value;

/// The lower-case name of a proto enum value without its type prefix.
fn short(full: &str, prefix: &str) -> String {
    full.strip_prefix(prefix)
        .unwrap_or(full)
        .to_ascii_lowercase()
}

/// Generates a function rendering an `i32` enum field: its short lower-case name, or the number
/// itself when this build of the CLI does not know the value (a newer sensor).
macro_rules! enum_json {
    ($fn_name:ident, $ty:ty, $prefix:literal) => {
        pub fn $fn_name(value: i32) -> Value {
            match <$ty>::try_from(value) {
                Ok(known) => Value::String(short(known.as_str_name(), $prefix)),
                Err(_) => Value::from(value),
            }
        }
    };
}

enum_json!(file_operation, pb::FileOperation, "FILE_OPERATION_");
enum_json!(workload_kind, pb::WorkloadKind, "WORKLOAD_KIND_");
enum_json!(owner_source, pb::OwnerSource, "OWNER_SOURCE_");
enum_json!(container_kind, pb::ContainerKind, "CONTAINER_KIND_");
enum_json!(loss_cause, pb::LossCause, "LOSS_CAUSE_");
enum_json!(severity, pb::Severity, "SEVERITY_");

/// The text form of an enum rendered by one of the functions above.
pub fn text(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// The compact name of a workload kind, as kubectl spells it: `cronjob`, `daemonset`, ...
pub fn workload_kind_compact(value: i32) -> String {
    text(&workload_kind(value)).replace('_', "")
}

/// The short name of the payload of an event ("process_exec", ...; "none" without one).
pub fn event_payload(kind: Option<&pb::event::Kind>) -> &'static str {
    use pb::event::Kind;
    match kind {
        Some(Kind::ProcessExec(_)) => "process_exec",
        Some(Kind::ProcessExit(_)) => "process_exit",
        Some(Kind::FileCreated(_)) => "file_created",
        Some(Kind::ContainerCreated(_)) => "container_created",
        Some(Kind::ContainerExited(_)) => "container_exited",
        Some(Kind::LostEvents(_)) => "lost_events",
        None => "none",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_values_are_short_lower_case() {
        assert_eq!(workload_kind(pb::WorkloadKind::CronJob as i32), "cron_job");
        assert_eq!(loss_cause(3), "slow_subscriber");
        assert_eq!(file_operation(6), "chmod_exec");
        assert_eq!(owner_source(2), "name_inference");
        assert_eq!(container_kind(1), "sandbox");
        assert_eq!(workload_kind(0), "unspecified");
        assert_eq!(severity(pb::Severity::Critical as i32), "critical");
        assert_eq!(severity(1), "info");
    }

    #[test]
    fn unknown_values_stay_numbers() {
        assert_eq!(workload_kind(99), Value::from(99));
        assert_eq!(text(&workload_kind(99)), "99");
    }

    #[test]
    fn compact_workload_kinds() {
        assert_eq!(workload_kind_compact(1), "cronjob");
        assert_eq!(workload_kind_compact(6), "statefulset");
    }
}
