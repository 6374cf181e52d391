//! Turning the kernel's boot-time nanoseconds into wall-clock time.

use std::time::{SystemTime, UNIX_EPOCH};

/// Maps `CLOCK_BOOTTIME` nanoseconds (what `bpf_ktime_get_boot_ns` returns) to wall time.
#[derive(Debug, Clone, Copy)]
pub struct BootClock {
    /// Unix time in ns at boot.
    boot_epoch_ns: i128,
}

impl BootClock {
    /// Measures the offset between the two clocks now.
    pub fn now() -> BootClock {
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128)
            .unwrap_or(0);
        BootClock {
            boot_epoch_ns: wall - boot_ns() as i128,
        }
    }

    /// A clock whose boot happened at `boot_epoch_ns` (tests).
    pub fn fixed(boot_epoch_ns: i128) -> BootClock {
        BootClock { boot_epoch_ns }
    }

    /// When the machine booted, seconds since the Unix epoch.
    pub fn boot_unix_secs(&self) -> i64 {
        self.boot_epoch_ns.div_euclid(1_000_000_000) as i64
    }

    /// Unix time in ns of a boot-time stamp.
    pub fn unix_ns(&self, boot_ns: u64) -> i128 {
        self.boot_epoch_ns + boot_ns as i128
    }

    /// RFC 3339 UTC with nanoseconds, e.g. `2026-11-27T03:12:00.123456789Z`.
    pub fn rfc3339(&self, boot_ns: u64) -> String {
        rfc3339(self.unix_ns(boot_ns))
    }
}

/// `CLOCK_BOOTTIME` now, in ns.
pub fn boot_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: ts is a valid timespec to write into.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_BOOTTIME, &mut ts) };
    if rc != 0 {
        return 0;
    }
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Formats Unix ns as RFC 3339 UTC (proleptic Gregorian calendar).
pub fn rfc3339(unix_ns: i128) -> String {
    let mut buf = [0u8; RFC3339_LEN];
    match write_rfc3339(unix_ns, &mut buf) {
        Some(text) => text.to_owned(),
        None => rfc3339_any_year(unix_ns),
    }
}

/// Serializes Unix ns as [`rfc3339`] text without allocating (serde `serialize_with`): events
/// keep their time as a number and are formatted only when printed.
pub fn serialize_rfc3339<S: serde::Serializer>(unix_ns: &i128, s: S) -> Result<S::Ok, S::Error> {
    let mut buf = [0u8; RFC3339_LEN];
    match write_rfc3339(*unix_ns, &mut buf) {
        Some(text) => s.serialize_str(text),
        None => s.serialize_str(&rfc3339_any_year(*unix_ns)),
    }
}

/// Length of the RFC 3339 text of a four-digit year: `YYYY-MM-DDTHH:MM:SS.nnnnnnnnnZ`.
const RFC3339_LEN: usize = 30;

/// Seconds, nanoseconds and calendar fields of Unix ns, as [`rfc3339`] prints them.
struct Civil {
    year: i64,
    month: u32,
    day: u32,
    /// Seconds into the day.
    secs: i64,
    nanos: u32,
}

fn civil(unix_ns: i128) -> Civil {
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    let (year, month, day) = civil_from_days(secs.div_euclid(86_400));
    Civil {
        year,
        month,
        day,
        secs: secs.rem_euclid(86_400),
        nanos,
    }
}

/// Writes the RFC 3339 text into `buf` with plain digit arithmetic (no `fmt` machinery, no
/// allocation); `None` when the year does not have four digits.
fn write_rfc3339(unix_ns: i128, buf: &mut [u8; RFC3339_LEN]) -> Option<&str> {
    let c = civil(unix_ns);
    if !(0..=9999).contains(&c.year) {
        return None;
    }
    fn digits(out: &mut [u8], mut v: u64) {
        for slot in out.iter_mut().rev() {
            *slot = b'0' + (v % 10) as u8;
            v /= 10;
        }
    }
    *buf = *b"0000-00-00T00:00:00.000000000Z";
    digits(&mut buf[0..4], c.year as u64);
    digits(&mut buf[5..7], u64::from(c.month));
    digits(&mut buf[8..10], u64::from(c.day));
    digits(&mut buf[11..13], (c.secs / 3600) as u64);
    digits(&mut buf[14..16], (c.secs % 3600 / 60) as u64);
    digits(&mut buf[17..19], (c.secs % 60) as u64);
    digits(&mut buf[20..29], u64::from(c.nanos));
    std::str::from_utf8(buf).ok()
}

/// [`rfc3339`] for any year (five digits, negative), through `format!`.
fn rfc3339_any_year(unix_ns: i128) -> String {
    let c = civil(unix_ns);
    format!(
        "{:04}-{:02}-{:02}T{:02}:{:02}:{:02}.{:09}Z",
        c.year,
        c.month,
        c.day,
        c.secs / 3600,
        c.secs % 3600 / 60,
        c.secs % 60,
        c.nanos
    )
}

/// Days since 1970-01-01 to (year, month, day); Howard Hinnant's algorithm.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_known_instants() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00.000000000Z");
        // 2000-02-29T12:34:56.5Z
        assert_eq!(
            rfc3339(951_827_696_500_000_000),
            "2000-02-29T12:34:56.500000000Z"
        );
        // 2026-11-27T00:00:00Z
        assert_eq!(
            rfc3339(1_795_737_600 * 1_000_000_000),
            "2026-11-27T00:00:00.000000000Z"
        );
        assert_eq!(rfc3339(-1), "1969-12-31T23:59:59.999999999Z");
        assert_eq!(
            rfc3339(253_402_300_799_999_999_999),
            "9999-12-31T23:59:59.999999999Z"
        );
        // Outside four-digit years: the general path.
        assert_eq!(
            rfc3339(253_402_300_800 * 1_000_000_000),
            "10000-01-01T00:00:00.000000000Z"
        );
        assert_eq!(
            rfc3339(-62_167_219_200 * 1_000_000_000 - 1),
            "-001-12-31T23:59:59.999999999Z"
        );
    }

    #[test]
    fn fast_path_matches_format() {
        // Deterministic pseudo-random instants over years 0 to 9999, and day and year edges.
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let span = 253_402_300_800_i128 * 1_000_000_000 + 62_167_219_200 * 1_000_000_000;
        let mut instants = vec![0, -1, 1, 951_782_400 * 1_000_000_000 - 1];
        let mut next = || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            i128::from(x)
        };
        for _ in 0..20_000 {
            let wide = (next() << 64) | next();
            instants.push(wide.rem_euclid(span) - 62_167_219_200 * 1_000_000_000);
        }
        for ns in instants {
            let mut buf = [0u8; RFC3339_LEN];
            let fast = write_rfc3339(ns, &mut buf).map(str::to_owned);
            assert_eq!(fast, Some(rfc3339_any_year(ns)), "{ns}");
        }
    }

    #[test]
    fn serializes_as_text() {
        #[derive(serde::Serialize)]
        struct T {
            #[serde(serialize_with = "serialize_rfc3339")]
            time: i128,
        }
        let json = serde_json::to_string(&T {
            time: 951_827_696_500_000_000,
        });
        assert_eq!(
            json.expect("json"),
            r#"{"time":"2000-02-29T12:34:56.500000000Z"}"#
        );
        let far = serde_json::to_string(&T {
            time: 253_402_300_800 * 1_000_000_000,
        });
        assert_eq!(
            far.expect("json"),
            r#"{"time":"10000-01-01T00:00:00.000000000Z"}"#
        );
    }

    #[test]
    fn boot_clock_maps_now_to_now() {
        let clock = BootClock::now();
        let wall = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos() as i128);
        let wall = wall.unwrap_or(0);
        let mapped = clock.unix_ns(boot_ns());
        assert!(
            (mapped - wall).abs() < 1_000_000_000,
            "mapped {mapped}, wall {wall}"
        );
        assert_eq!(BootClock::fixed(10).unix_ns(5), 15);
    }
}
