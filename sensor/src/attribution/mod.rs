//! Attribution: which container, pod, Job and CronJob an event belongs to.

pub mod cgroup_path;
pub mod kube;
pub mod workload;
