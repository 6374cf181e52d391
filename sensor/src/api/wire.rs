//! The sensor's events encoded straight into `jobwatch.v1.Event` protobuf bytes, for the
//! reporter.
//!
//! [`convert::event`](super::convert::event) builds a `pb::Event`: every string of the event is
//! copied into a message that is then encoded and freed. For the reporter, which only needs the
//! bytes, that was about a third of the sensor's CPU per exec event (about 25 allocations,
//! the copies, prost's recursive length computations and the frees). This module writes the
//! same bytes directly from the sensor's event, one event after the other into a shared block
//! ([`Arena`]): no allocation per event. The frequent kinds (exec, exit, file) are written
//! here; the rare ones (container created and exited, loss records) go through `convert`. The
//! unit tests check that both produce the same bytes.

use bytes::{BufMut, Bytes, BytesMut};
use jobwatch_proto::v1 as pb;
use prost::{
    Message,
    encoding::{WireType, encode_key, encode_varint, encoded_len_varint},
};

use crate::{
    api::convert::{self, ExecIds},
    attribution::workload::{CronJobRef, Workload},
    containers::index::ContainerRef,
    event::{self, Event, EventKind},
    loss::LossKind,
    process_table::ProcessSource,
};

/// One event encoded as a `jobwatch.v1.Event`, with what the reporter needs to know of it
/// without decoding it.
#[derive(Clone, Debug, PartialEq)]
pub struct EncodedEvent {
    pub seq: u64,
    pub time_unix_nano: i64,
    pub boot_ns: u64,
    /// What its loss is counted as, should the reporter drop it.
    pub kind: LossKind,
    pub bytes: Bytes,
}

impl EncodedEvent {
    /// The encoding of an API message (loss records, tests).
    pub fn of(e: &pb::Event) -> EncodedEvent {
        EncodedEvent {
            seq: e.seq,
            time_unix_nano: e.time_unix_nano,
            boot_ns: e.boot_ns,
            kind: match e.kind {
                Some(pb::event::Kind::ProcessExec(_)) => LossKind::Exec,
                Some(pb::event::Kind::ProcessExit(_)) => LossKind::Exit,
                Some(pb::event::Kind::FileCreated(_)) => LossKind::File,
                _ => LossKind::Other,
            },
            bytes: Bytes::from(e.encode_to_vec()),
        }
    }
}

/// Bytes of one arena block: a few hundred events.
const ARENA_BLOCK: usize = 64 << 10;
/// Room made before each event; a larger one grows the block as it is written.
const ARENA_RESERVE: usize = 1024;

/// Where events are encoded one after the other: each event's bytes are a slice of a shared
/// block, so encoding costs one allocation per block instead of one per event. A block is
/// freed when the last event written in it is (the reporter frees them in order, once the
/// collector has them).
#[derive(Debug, Default)]
pub struct Arena {
    block: BytesMut,
}

impl Arena {
    /// The sensor's event `e`, numbered `seq`, as the API message `convert::event` makes.
    pub fn encode(
        &mut self,
        ids: &ExecIds,
        clock_unix_ns: i128,
        e: &Event,
        seq: u64,
    ) -> EncodedEvent {
        if self.block.capacity() < ARENA_RESERVE {
            // A new block (the full one stays alive as long as its events do).
            self.block = BytesMut::with_capacity(ARENA_BLOCK);
        }
        let time_unix_nano = i64::try_from(clock_unix_ns).unwrap_or(0);
        encode_event(ids, clock_unix_ns, time_unix_nano, e, seq, &mut self.block);
        EncodedEvent {
            seq,
            time_unix_nano,
            boot_ns: e.boot_ns,
            kind: e.kind.loss_kind(),
            bytes: self.block.split().freeze(),
        }
    }
}

fn encode_event(
    ids: &ExecIds,
    clock_unix_ns: i128,
    time_unix_nano: i64,
    e: &Event,
    seq: u64,
    buf: &mut BytesMut,
) {
    let mut w = Writer(buf);
    let kind_tag = match &e.kind {
        EventKind::ProcessExec(_) => 10,
        EventKind::ProcessExit(_) => 11,
        EventKind::FileCreated(_) => 12,
        _ => {
            // Rare kinds: through the API message.
            convert::event(ids, clock_unix_ns, e, seq).encode_raw(w.0);
            return;
        }
    };
    w.string(1, &ids.node);
    w.int64(2, time_unix_nano);
    w.uint64(3, e.boot_ns);
    w.uint64(4, seq);
    w.message(kind_tag, |w| match &e.kind {
        EventKind::ProcessExec(x) => exec(w, ids, x),
        EventKind::ProcessExit(x) => exit(w, ids, x),
        EventKind::FileCreated(x) => file(w, ids, x),
        _ => {}
    });
}

fn exec(w: &mut Writer<'_>, ids: &ExecIds, x: &event::ProcessExec) {
    w.message(1, |w| {
        process(
            w,
            ids,
            &x.process,
            x.parent.as_ref().map(|p| p.start_boot_ns),
        );
    });
    w.string(2, &x.filename);
    w.string(3, &x.binary);
    for a in x.args.iter() {
        w.repeated_string(4, a);
    }
    w.string(5, &x.cwd);
    w.message(6, |w| {
        let f = &x.flags;
        w.bool(1, f.deleted);
        w.bool(2, f.memfd);
        w.bool(3, f.upper_layer);
        w.bool(4, f.args_truncated);
        w.bool(5, f.path_truncated);
        w.bool(6, f.read_error);
    });
    if let Some(p) = &x.parent {
        w.message(7, |w| {
            w.uint32(1, p.pid);
            w.string(2, &p.binary);
            for a in p.args.iter() {
                w.repeated_string(3, a);
            }
            w.string(
                4,
                match p.source {
                    ProcessSource::Exec => "exec",
                    ProcessSource::Procfs => "procfs",
                    ProcessSource::Fork => "fork",
                },
            );
        });
    }
    if let Some(c) = &x.container {
        w.message(8, |w| container_ref(w, c));
    }
}

fn exit(w: &mut Writer<'_>, ids: &ExecIds, x: &event::ProcessExit) {
    w.uint32(1, x.pid);
    w.uint32(2, x.tid);
    w.optional_uint32(3, x.exit_code);
    w.optional_uint32(4, x.signal);
    w.uint64(5, x.start_boot_ns);
    w.uint64(6, x.duration_ns);
    w.string(7, &x.binary);
    if let Some(c) = &x.container {
        w.message(8, |w| container_ref(w, c));
    }
    w.exec_id(9, ids, x.pid, x.start_boot_ns);
}

fn file(w: &mut Writer<'_>, ids: &ExecIds, x: &event::FileCreated) {
    w.message(1, |w| process(w, ids, &x.process, None));
    w.enumeration(2, convert::file_operation(x.operation) as i32);
    w.string(3, &x.path);
    if let Some(s) = &x.source {
        w.repeated_string(4, s);
    }
    w.uint32(5, x.mode.bits());
    w.optional_uint32(6, x.old_mode.map(|m| m.bits()));
    w.bool(7, x.replaced);
    w.bool(8, x.path_truncated);
    w.bool(9, x.read_error);
    if let Some(c) = &x.container {
        w.message(10, |w| container_ref(w, c));
    }
}

fn process(w: &mut Writer<'_>, ids: &ExecIds, p: &event::Process, parent_start: Option<u64>) {
    w.exec_id(1, ids, p.pid, p.start_boot_ns);
    if let Some(start) = parent_start {
        w.exec_id(2, ids, p.ppid, start);
    }
    w.uint32(3, p.pid);
    w.uint32(4, p.tid);
    w.uint32(5, p.ppid);
    w.uint32(6, p.uid);
    w.uint32(7, p.gid);
    w.uint32(8, p.euid);
    w.uint32(9, p.egid);
    w.optional_uint32(10, p.loginuid);
    w.uint64(11, p.cap_effective.0);
    w.string(12, &p.comm.text());
    w.uint64(13, p.cgroup_id);
    w.uint64(14, p.cgroup_v1_id);
    w.uint32(15, p.mntns);
    w.bool(16, p.host);
    w.uint64(17, p.start_boot_ns);
    w.string(18, &p.binary);
}

fn container_ref(w: &mut Writer<'_>, c: &ContainerRef) {
    w.string(1, &c.id);
    w.string(2, &c.name);
    w.string(3, &c.image);
    if let Some(p) = &c.pod {
        w.message(4, |w| {
            w.string(1, &p.name);
            w.string(2, &p.namespace);
            w.string(3, &p.uid);
        });
    }
    if let Some(wl) = &c.workload {
        w.message(5, |w| workload(w, wl));
    }
    w.bool(6, c.metadata_pending);
}

fn workload(w: &mut Writer<'_>, wl: &Workload) {
    w.enumeration(1, convert::workload_kind(wl.kind) as i32);
    w.string(2, &wl.name);
    if let Some(j) = &wl.job {
        w.message(3, |w| {
            w.string(1, &j.name);
            w.string(2, j.controller_uid.as_deref().unwrap_or_default());
        });
    }
    if let Some(c) = &wl.cronjob {
        w.message(4, |w| cronjob(w, c));
    }
    w.enumeration(5, convert::owner_source(wl.source));
}

fn cronjob(w: &mut Writer<'_>, c: &CronJobRef) {
    w.string(1, &c.name);
    w.string(2, c.scheduled_time.as_deref().unwrap_or_default());
    w.enumeration(3, convert::owner_source(c.source));
    w.bool(4, c.inferred);
}

/// Protobuf fields written as prost writes them: in tag order, proto3 defaults left out,
/// `optional` and message fields written when present.
struct Writer<'a>(&'a mut BytesMut);

impl Writer<'_> {
    fn key(&mut self, tag: u32, wire: WireType) {
        encode_key(tag, wire, self.0);
    }

    fn varint_field(&mut self, tag: u32, v: u64) {
        self.key(tag, WireType::Varint);
        encode_varint(v, self.0);
    }

    fn uint32(&mut self, tag: u32, v: u32) {
        if v != 0 {
            self.varint_field(tag, u64::from(v));
        }
    }

    fn optional_uint32(&mut self, tag: u32, v: Option<u32>) {
        if let Some(v) = v {
            self.varint_field(tag, u64::from(v));
        }
    }

    fn uint64(&mut self, tag: u32, v: u64) {
        if v != 0 {
            self.varint_field(tag, v);
        }
    }

    fn int64(&mut self, tag: u32, v: i64) {
        if v != 0 {
            // Two's complement, ten bytes when negative, as protobuf's int64.
            self.varint_field(tag, v as u64);
        }
    }

    fn enumeration(&mut self, tag: u32, v: i32) {
        if v != 0 {
            self.varint_field(tag, i64::from(v) as u64);
        }
    }

    fn bool(&mut self, tag: u32, v: bool) {
        if v {
            self.varint_field(tag, 1);
        }
    }

    /// A proto3 string field: left out when empty.
    fn string(&mut self, tag: u32, s: &str) {
        if !s.is_empty() {
            self.repeated_string(tag, s);
        }
    }

    /// An element of a repeated string, or an `optional string` that is present: written even
    /// when empty.
    fn repeated_string(&mut self, tag: u32, s: &str) {
        self.key(tag, WireType::LengthDelimited);
        encode_varint(s.len() as u64, self.0);
        self.0.extend_from_slice(s.as_bytes());
    }

    /// `<node>:<boot time>:<pid>:<start time>` (see [`ExecIds::exec_id`]), written in place.
    fn exec_id(&mut self, tag: u32, ids: &ExecIds, pid: u32, start_boot_ns: u64) {
        let mut boot = itoa::Buffer::new();
        let mut pid_digits = itoa::Buffer::new();
        let mut start = itoa::Buffer::new();
        let (boot, pid, start) = (
            boot.format(ids.boot_unix_secs),
            pid_digits.format(pid),
            start.format(start_boot_ns),
        );
        let len = ids.node.len() + boot.len() + pid.len() + start.len() + 3;
        self.key(tag, WireType::LengthDelimited);
        encode_varint(len as u64, self.0);
        for (i, part) in [ids.node.as_str(), boot, pid, start]
            .into_iter()
            .enumerate()
        {
            if i > 0 {
                self.0.put_u8(b':');
            }
            self.0.extend_from_slice(part.as_bytes());
        }
    }

    /// A message field: its body is written after a one-byte length, which is widened (the
    /// body moved) in the rare case the body is 128 bytes or more.
    fn message(&mut self, tag: u32, body: impl FnOnce(&mut Writer<'_>)) {
        self.key(tag, WireType::LengthDelimited);
        let at = self.0.len();
        self.0.put_u8(0);
        body(&mut Writer(self.0));
        let len = self.0.len() - at - 1;
        let width = encoded_len_varint(len as u64);
        if width == 1 {
            self.0[at] = len as u8;
            return;
        }
        // Move the body to make room for the whole prefix, then write it over the placeholder.
        let body_at = at + 1;
        self.0.resize(self.0.len() + width - 1, 0);
        self.0.copy_within(body_at..body_at + len, at + width);
        let mut prefix = &mut self.0[at..at + width];
        encode_varint(len as u64, &mut prefix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{
        attribution::workload::{JobRef, OwnerSource, WorkloadKind},
        containers::index::PodRef,
        event::{
            CapMask, ContainerExited, ExecFlags, FileCreated, LostEvents, Mode, Parent, Process,
            ProcessExec, ProcessExit,
        },
    };

    fn ids() -> ExecIds {
        ExecIds {
            node: "node-a".into(),
            boot_unix_secs: 1_795_737_600,
        }
    }

    fn process(pid: u32) -> Process {
        Process {
            pid,
            tid: pid + 1,
            ppid: 1,
            uid: 1000,
            gid: 0,
            euid: 0,
            egid: 1000,
            loginuid: Some(0),
            cap_effective: CapMask(0x1ff_ffff_ffff),
            comm: "kworker/ü".into(),
            cgroup_id: u64::MAX,
            cgroup_v1_id: 3,
            mntns: 4_026_531_840,
            host: true,
            start_boot_ns: 123_456_789,
            binary: "/usr/bin/busybox".into(),
        }
    }

    fn full_container() -> ContainerRef {
        ContainerRef {
            id: "a".repeat(64),
            name: "backup".into(),
            image: "registry.example/backup:1.2".into(),
            pod: Some(PodRef {
                name: "backup-28790000-x7k2p".into(),
                namespace: "prod".into(),
                uid: "0b8c3f1e-7c41-4a3a-9d7c-1f2e3d4c5b6a".into(),
            }),
            workload: Some(Workload {
                kind: WorkloadKind::CronJob,
                name: "backup".into(),
                job: Some(JobRef {
                    name: "backup-28790000".into(),
                    controller_uid: Some("uid-1".into()),
                }),
                cronjob: Some(CronJobRef {
                    name: "backup".into(),
                    scheduled_time: Some("2024-09-30T00:00:00Z".into()),
                    source: OwnerSource::NameInference,
                    inferred: true,
                }),
                source: OwnerSource::Labels,
            }),
            metadata_pending: true,
        }
    }

    fn sparse_container() -> ContainerRef {
        ContainerRef {
            id: "b".repeat(64),
            name: String::new(),
            image: String::new(),
            pod: None,
            workload: Some(Workload {
                kind: WorkloadKind::Unknown,
                name: String::new(),
                job: Some(JobRef {
                    name: String::new(),
                    controller_uid: None,
                }),
                cronjob: None,
                source: OwnerSource::KubernetesApi,
            }),
            metadata_pending: false,
        }
    }

    fn events() -> Vec<Event> {
        let long_arg = "x".repeat(300);
        let long_args: Vec<String> = (0..200).map(|i| format!("--flag-{i}")).collect();
        vec![
            Event {
                time_unix_ns: 0,
                boot_ns: 99,
                kind: EventKind::ProcessExec(ProcessExec {
                    process: process(10),
                    filename: "/bin/sh".into(),
                    binary: "/bin/busybox".into(),
                    args: vec!["sh".into(), String::new(), "-c".into(), long_arg.clone()].into(),
                    cwd: "/".into(),
                    flags: ExecFlags {
                        deleted: true,
                        memfd: true,
                        upper_layer: true,
                        args_truncated: true,
                        path_truncated: true,
                        read_error: true,
                    },
                    parent: Some(Parent {
                        pid: 1,
                        binary: "/sbin/init".into(),
                        args: vec![String::new(), "splash".into()].into(),
                        source: ProcessSource::Fork,
                        start_boot_ns: 3,
                    }),
                    container: Some(std::sync::Arc::new(full_container())),
                }),
            },
            Event {
                time_unix_ns: 0,
                boot_ns: 0,
                kind: EventKind::ProcessExec(ProcessExec {
                    process: Process {
                        loginuid: None,
                        host: false,
                        comm: "".into(),
                        binary: String::new(),
                        ..process(0)
                    },
                    filename: String::new(),
                    binary: String::new(),
                    args: long_args.into(),
                    cwd: String::new(),
                    flags: ExecFlags::default(),
                    parent: None,
                    container: Some(std::sync::Arc::new(sparse_container())),
                }),
            },
            Event {
                time_unix_ns: 0,
                boot_ns: 5,
                kind: EventKind::ProcessExit(ProcessExit {
                    pid: 7,
                    tid: 8,
                    exit_code: Some(0),
                    signal: Some(9),
                    start_boot_ns: 4,
                    duration_ns: 1,
                    binary: long_arg.clone(),
                    container: Some(std::sync::Arc::new(full_container())),
                }),
            },
            Event {
                time_unix_ns: 0,
                boot_ns: 5,
                kind: EventKind::ProcessExit(ProcessExit {
                    pid: 7,
                    tid: 7,
                    exit_code: None,
                    signal: None,
                    start_boot_ns: 0,
                    duration_ns: 0,
                    binary: String::new(),
                    container: None,
                }),
            },
            Event {
                time_unix_ns: 0,
                boot_ns: 6,
                kind: EventKind::FileCreated(FileCreated {
                    process: process(12),
                    operation: "rename",
                    path: format!("/etc/cron.d/{long_arg}"),
                    source: Some(String::new()),
                    mode: Mode::new(0o100644),
                    old_mode: Some(Mode::new(0)),
                    replaced: true,
                    path_truncated: true,
                    read_error: true,
                    container: Some(std::sync::Arc::new(sparse_container())),
                }),
            },
            Event {
                time_unix_ns: 0,
                boot_ns: 6,
                kind: EventKind::FileCreated(FileCreated {
                    process: process(13),
                    operation: "create",
                    path: "/tmp/x".into(),
                    source: None,
                    mode: Mode::new(0),
                    old_mode: None,
                    replaced: false,
                    path_truncated: false,
                    read_error: false,
                    container: None,
                }),
            },
            Event {
                time_unix_ns: 0,
                boot_ns: 7,
                kind: EventKind::ContainerExited(ContainerExited {
                    container: std::sync::Arc::new(full_container()),
                    exit_code: 1,
                    duration_ns: Some(2),
                }),
            },
            Event {
                time_unix_ns: 0,
                boot_ns: 8,
                kind: EventKind::LostEvents(LostEvents {
                    count: 3,
                    cause: "queue_full",
                }),
            },
        ]
    }

    #[test]
    fn the_bytes_are_those_of_the_api_message() {
        let ids = ids();
        for (i, e) in events().iter().enumerate() {
            for (clock, seq) in [
                (1_700_000_000_000_000_000i128, 42u64),
                (-5, 0),
                (0, u64::MAX),
            ] {
                let encoded = Arena::default().encode(&ids, clock, e, seq);
                let message = convert::event(&ids, clock, e, seq);
                assert_eq!(
                    encoded.bytes.as_ref(),
                    message.encode_to_vec().as_slice(),
                    "event {i}, clock {clock}, seq {seq}"
                );
                assert_eq!(
                    pb::Event::decode(encoded.bytes.clone()).expect("decodes"),
                    message,
                    "event {i}"
                );
                assert_eq!(
                    (encoded.seq, encoded.time_unix_nano, encoded.boot_ns),
                    (seq, message.time_unix_nano, e.boot_ns)
                );
                assert_eq!(encoded, EncodedEvent::of(&message));
            }
        }
    }

    /// An exit event whose binary is `binary` (any length).
    fn exit_of(boot_ns: u64, binary: String) -> Event {
        Event {
            time_unix_ns: 0,
            boot_ns,
            kind: EventKind::ProcessExit(ProcessExit {
                pid: 1,
                tid: 1,
                exit_code: None,
                signal: None,
                start_boot_ns: 0,
                duration_ns: 0,
                binary,
                container: None,
            }),
        }
    }

    #[test]
    fn events_of_one_arena_keep_their_bytes_across_blocks() {
        // Enough events to fill several blocks, one of them larger than a block: every
        // event's bytes stay its own after the arena has written the ones after it.
        let ids = ids();
        let mut arena = Arena::default();
        let kinds = events();
        let big = exit_of(9, "x".repeat(ARENA_BLOCK + 10));
        let event = |seq: u64| match seq {
            1_000 => &big,
            _ => &kinds[seq as usize % kinds.len()],
        };
        let mut written = Vec::new();
        for seq in 1..=2_000u64 {
            written.push((seq, arena.encode(&ids, 5, event(seq), seq)));
        }
        for (seq, encoded) in &written {
            assert_eq!(
                encoded.bytes.as_ref(),
                convert::event(&ids, 5, event(*seq), *seq)
                    .encode_to_vec()
                    .as_slice(),
                "seq {seq}"
            );
        }
        // An event follows the one before it in memory unless a new block began.
        let adjacent = written
            .windows(2)
            .filter(|w| w[0].1.bytes.as_ptr_range().end == w[1].1.bytes.as_ptr())
            .count();
        let new_blocks = written.len() - 1 - adjacent;
        assert!(new_blocks >= 2, "{new_blocks} new blocks for 2,000 events");
        assert!(new_blocks < 100, "{new_blocks} new blocks for 2,000 events");
    }

    #[test]
    fn lengths_of_every_width() {
        // A message body of 127, 128 and 16,384 bytes needs a length of 1, 2 and 3 bytes.
        let ids = ids();
        for len in [0, 1, 100, 127, 128, 129, 16_383, 16_384, 70_000] {
            let e = exit_of(1, "b".repeat(len));
            let encoded = Arena::default().encode(&ids, 1, &e, 1);
            assert_eq!(
                encoded.bytes.as_ref(),
                convert::event(&ids, 1, &e, 1).encode_to_vec().as_slice(),
                "binary of {len} bytes"
            );
        }
    }
}
