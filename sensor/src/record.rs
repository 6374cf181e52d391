//! Decoding of ring buffer records into borrowed views.
//!
//! One length check per part and one exhaustive `match` on the kind; bad bytes are a
//! [`DecodeError`], never a panic. Views borrow the ring buffer bytes: nothing is copied here.

use sensor_common::{
    EXEC_RECORD_SIZE, EXIT_RECORD_SIZE, ExecRecord, ExitRecord, FILE_RECORD_SIZE, FileRecord,
    RecordHeader, kind,
};

/// Why a record could not be decoded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    #[error("record of {len} bytes is shorter than its {need}-byte fixed part")]
    Short { len: usize, need: usize },
    #[error("record header says {declared} bytes but {len} arrived")]
    SizeMismatch { declared: usize, len: usize },
    #[error("unknown record kind {0}")]
    UnknownKind(u16),
    #[error("string lengths ({strings} bytes) overrun the record's {tail}-byte tail")]
    TailOverrun { strings: usize, tail: usize },
}

impl DecodeError {
    /// A short stable name for metrics.
    pub fn cause(&self) -> &'static str {
        match self {
            DecodeError::Short { .. } => "short",
            DecodeError::SizeMismatch { .. } => "size_mismatch",
            DecodeError::UnknownKind(_) => "unknown_kind",
            DecodeError::TailOverrun { .. } => "tail_overrun",
        }
    }
}

/// A decoded record, borrowing the bytes it came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Record<'a> {
    Exec(ExecView<'a>),
    Exit(ExitRecord),
    File(FileView<'a>),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExecView<'a> {
    pub fixed: ExecRecord,
    pub filename: &'a [u8],
    pub binary: &'a [u8],
    pub cwd: &'a [u8],
    /// NUL-separated arguments, as the kernel keeps them.
    pub args: &'a [u8],
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileView<'a> {
    pub fixed: FileRecord,
    pub path: &'a [u8],
    pub old_path: &'a [u8],
}

/// Copies a plain-data record out of possibly unaligned bytes.
fn read_fixed<T: Copy>(bytes: &[u8]) -> Result<T, DecodeError> {
    let need = size_of::<T>();
    if bytes.len() < need {
        return Err(DecodeError::Short {
            len: bytes.len(),
            need,
        });
    }
    // SAFETY: the length was checked; T is one of sensor_common's repr(C) records made only of
    // integers (every bit pattern is valid); read_unaligned copes with any alignment.
    Ok(unsafe { std::ptr::read_unaligned(bytes.as_ptr().cast::<T>()) })
}

/// Splits `tail` into consecutive strings of the given lengths.
fn split_tail<const N: usize>(tail: &[u8], lens: [usize; N]) -> Result<[&[u8]; N], DecodeError> {
    let total: usize = lens.iter().sum();
    if total > tail.len() {
        return Err(DecodeError::TailOverrun {
            strings: total,
            tail: tail.len(),
        });
    }
    let mut out = [&tail[..0]; N];
    let mut rest = tail;
    for (slot, len) in out.iter_mut().zip(lens) {
        let (head, after) = rest.split_at(len);
        *slot = head;
        rest = after;
    }
    Ok(out)
}

/// Decodes one ring buffer record.
pub fn decode(bytes: &[u8]) -> Result<Record<'_>, DecodeError> {
    let header: RecordHeader = read_fixed(bytes)?;
    let declared = header.size as usize;
    if declared != bytes.len() {
        return Err(DecodeError::SizeMismatch {
            declared,
            len: bytes.len(),
        });
    }
    match header.kind {
        kind::EXEC => {
            let fixed: ExecRecord = read_fixed(bytes)?;
            let [filename, binary, cwd, args] = split_tail(
                &bytes[EXEC_RECORD_SIZE..],
                [
                    fixed.filename_len as usize,
                    fixed.binary_len as usize,
                    fixed.cwd_len as usize,
                    fixed.args_len as usize,
                ],
            )?;
            Ok(Record::Exec(ExecView {
                fixed,
                filename,
                binary,
                cwd,
                args,
            }))
        }
        kind::EXIT => {
            if bytes.len() != EXIT_RECORD_SIZE {
                return Err(DecodeError::SizeMismatch {
                    declared: EXIT_RECORD_SIZE,
                    len: bytes.len(),
                });
            }
            Ok(Record::Exit(read_fixed(bytes)?))
        }
        kind::FILE => {
            let fixed: FileRecord = read_fixed(bytes)?;
            let [path, old_path] = split_tail(
                &bytes[FILE_RECORD_SIZE..],
                [fixed.path_len as usize, fixed.old_path_len as usize],
            )?;
            Ok(Record::File(FileView {
                fixed,
                path,
                old_path,
            }))
        }
        other => Err(DecodeError::UnknownKind(other)),
    }
}

/// Splits a NUL-separated argv block. A final argument cut by truncation is kept as is.
pub fn split_args(args: &[u8]) -> impl Iterator<Item = &[u8]> {
    let trimmed = args.strip_suffix(&[0]).unwrap_or(args);
    trimmed
        .split(|b| *b == 0)
        .filter(move |_| !trimmed.is_empty())
}

/// Lossy UTF-8 of kernel bytes, cut at the first NUL.
pub fn text(bytes: &[u8]) -> String {
    let end = bytes.iter().position(|b| *b == 0).unwrap_or(bytes.len());
    String::from_utf8_lossy(&bytes[..end]).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use sensor_common::{ProcessIdentity, exec_flag, file_flag, file_op};
    use std::mem::offset_of;

    fn bytes_of<T: Copy>(v: &T) -> Vec<u8> {
        // SAFETY: test helper over repr(C) plain-data records without hidden padding.
        unsafe { std::slice::from_raw_parts((v as *const T).cast::<u8>(), size_of::<T>()) }.to_vec()
    }

    fn identity() -> ProcessIdentity {
        ProcessIdentity {
            pid: 11,
            tgid: 10,
            ppid: 1,
            uid: 1000,
            gid: 1001,
            euid: 0,
            egid: 0,
            loginuid: u32::MAX,
            cap_effective: 0x1ff,
            cgroup_id: 77,
            cgroup_v1_id: 78,
            mntns: 4026531841,
            _pad: 0,
            start_time_ns: 5,
            comm: *b"true\0\0\0\0\0\0\0\0\0\0\0\0",
        }
    }

    fn exec_bytes(filename: &[u8], binary: &[u8], cwd: &[u8], args: &[u8]) -> Vec<u8> {
        let size = EXEC_RECORD_SIZE + filename.len() + binary.len() + cwd.len() + args.len();
        let rec = ExecRecord {
            header: RecordHeader {
                kind: kind::EXEC,
                _pad: 0,
                size: size as u32,
                ktime_ns: 42,
            },
            process: identity(),
            flags: exec_flag::MEMFD | exec_flag::DELETED,
            _pad: 0,
            filename_len: filename.len() as u16,
            binary_len: binary.len() as u16,
            cwd_len: cwd.len() as u16,
            args_len: args.len() as u16,
        };
        let mut b = bytes_of(&rec);
        for part in [filename, binary, cwd, args] {
            b.extend_from_slice(part);
        }
        b
    }

    #[test]
    fn layouts_are_pinned() {
        assert_eq!(offset_of!(RecordHeader, kind), 0);
        assert_eq!(offset_of!(RecordHeader, size), 4);
        assert_eq!(offset_of!(RecordHeader, ktime_ns), 8);
        assert_eq!(offset_of!(ProcessIdentity, cap_effective), 32);
        assert_eq!(offset_of!(ProcessIdentity, cgroup_id), 40);
        assert_eq!(offset_of!(ProcessIdentity, cgroup_v1_id), 48);
        assert_eq!(offset_of!(ProcessIdentity, mntns), 56);
        assert_eq!(offset_of!(ProcessIdentity, start_time_ns), 64);
        assert_eq!(offset_of!(ProcessIdentity, comm), 72);
        assert_eq!(offset_of!(ExecRecord, process), 16);
        assert_eq!(offset_of!(ExecRecord, flags), 104);
        assert_eq!(offset_of!(ExecRecord, filename_len), 112);
        assert_eq!(offset_of!(ExecRecord, args_len), 118);
        assert_eq!(offset_of!(ExitRecord, exit_code), 24);
        assert_eq!(offset_of!(ExitRecord, start_time_ns), 32);
        assert_eq!(offset_of!(FileRecord, op), 104);
        assert_eq!(offset_of!(FileRecord, mode), 108);
        assert_eq!(offset_of!(FileRecord, path_len), 116);
        assert_eq!(offset_of!(FileRecord, old_path_len), 118);
    }

    #[test]
    fn exec_round_trip() {
        let b = exec_bytes(
            b"/bin/true",
            b"/usr/bin/true",
            b"/tmp",
            b"/bin/true\0one\0two\0",
        );
        let Record::Exec(v) = decode(&b).expect("decodes") else {
            panic!("not an exec")
        };
        assert_eq!(v.fixed.process, identity());
        assert_eq!(v.fixed.header.ktime_ns, 42);
        assert_eq!(v.fixed.flags, exec_flag::MEMFD | exec_flag::DELETED);
        assert_eq!(v.filename, b"/bin/true");
        assert_eq!(v.binary, b"/usr/bin/true");
        assert_eq!(v.cwd, b"/tmp");
        let args: Vec<&[u8]> = split_args(v.args).collect();
        assert_eq!(args, vec![&b"/bin/true"[..], b"one", b"two"]);
    }

    #[test]
    fn file_round_trip() {
        let path = b"/tmp/new";
        let old = b"/tmp/old";
        let rec = FileRecord {
            header: RecordHeader {
                kind: kind::FILE,
                _pad: 0,
                size: (FILE_RECORD_SIZE + path.len() + old.len()) as u32,
                ktime_ns: 9,
            },
            process: identity(),
            op: file_op::RENAME,
            flags: file_flag::REPLACED,
            mode: 0o100644,
            old_mode: 0,
            path_len: path.len() as u16,
            old_path_len: old.len() as u16,
        };
        let mut b = bytes_of(&rec);
        b.extend_from_slice(path);
        b.extend_from_slice(old);
        let Record::File(v) = decode(&b).expect("decodes") else {
            panic!("not a file record")
        };
        assert_eq!(v.fixed, rec);
        assert_eq!(v.path, path);
        assert_eq!(v.old_path, old);
    }

    #[test]
    fn exit_round_trip() {
        let rec = ExitRecord {
            header: RecordHeader {
                kind: kind::EXIT,
                _pad: 0,
                size: EXIT_RECORD_SIZE as u32,
                ktime_ns: 1,
            },
            pid: 3,
            tgid: 3,
            exit_code: 256,
            _pad: 0,
            start_time_ns: 8,
        };
        assert_eq!(decode(&bytes_of(&rec)), Ok(Record::Exit(rec)));
    }

    #[test]
    fn truncated_records_are_rejected() {
        let b = exec_bytes(b"/bin/true", b"/usr/bin/true", b"/", b"x\0");
        for cut in 0..b.len() {
            assert!(decode(&b[..cut]).is_err(), "prefix of {cut} bytes decoded");
        }
    }

    #[test]
    fn lying_lengths_are_rejected() {
        let mut b = exec_bytes(b"/bin/true", b"/usr/bin/true", b"/", b"x\0");
        // args_len claims more than the tail holds.
        b[118] = 0xff;
        b[119] = 0x7f;
        assert!(matches!(decode(&b), Err(DecodeError::TailOverrun { .. })));
    }

    #[test]
    fn unknown_kind_and_garbage_are_rejected() {
        let mut b = exec_bytes(b"a", b"b", b"c", b"");
        b[0] = 99;
        assert_eq!(decode(&b), Err(DecodeError::UnknownKind(99)));
        // Deterministic pseudo-random garbage never panics.
        let mut x: u64 = 0x9e37_79b9_7f4a_7c15;
        for len in 0..600usize {
            let buf: Vec<u8> = (0..len)
                .map(|_| {
                    x ^= x << 13;
                    x ^= x >> 7;
                    x ^= x << 17;
                    x as u8
                })
                .collect();
            let _ = decode(&buf);
        }
    }

    #[test]
    fn args_split_handles_edges() {
        assert_eq!(split_args(b"").count(), 0);
        assert_eq!(split_args(b"a\0").collect::<Vec<_>>(), vec![&b"a"[..]]);
        assert_eq!(
            split_args(b"a\0\0b\0").collect::<Vec<_>>(),
            vec![&b"a"[..], b"", b"b"]
        );
        // Truncated final argument without its NUL.
        assert_eq!(
            split_args(b"a\0bc").collect::<Vec<_>>(),
            vec![&b"a"[..], b"bc"]
        );
    }
}
