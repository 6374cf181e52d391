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
    let secs = unix_ns.div_euclid(1_000_000_000) as i64;
    let nanos = unix_ns.rem_euclid(1_000_000_000) as u32;
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{nanos:09}Z",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
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
