//! RFC 3339 UTC timestamps with millisecond precision, without a date-time crate.

/// Formats nanoseconds since the Unix epoch as `YYYY-MM-DDTHH:MM:SS.mmmZ` (UTC).
///
/// Negative values (before 1970) are handled; the milliseconds are truncated, not rounded,
/// so an event never appears later than it happened.
pub fn rfc3339_millis(unix_nanos: i64) -> String {
    let total_millis = unix_nanos.div_euclid(1_000_000);
    let millis = total_millis.rem_euclid(1000);
    let total_secs = total_millis.div_euclid(1000);
    let days = total_secs.div_euclid(86_400);
    let secs_of_day = total_secs.rem_euclid(86_400);
    let (year, month, day) = civil_from_days(days);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        secs_of_day / 3600,
        secs_of_day % 3600 / 60,
        secs_of_day % 60
    )
}

/// Converts days since 1970-01-01 to a (year, month, day) of the proleptic Gregorian
/// calendar (Howard Hinnant's `civil_from_days`).
fn civil_from_days(days: i64) -> (i64, i64, i64) {
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day)
}

/// A duration for people: `850ms`, `1.2s`, `3m05s`, `2h03m`.
pub fn human_duration(nanos: u64) -> String {
    let millis = nanos / 1_000_000;
    if millis < 1000 {
        return format!("{millis}ms");
    }
    let secs = millis / 1000;
    if secs < 60 {
        return format!("{secs}.{}s", millis % 1000 / 100);
    }
    if secs < 3600 {
        return format!("{}m{:02}s", secs / 60, secs % 60);
    }
    format!("{}h{:02}m", secs / 3600, secs % 3600 / 60)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn epoch() {
        assert_eq!(rfc3339_millis(0), "1970-01-01T00:00:00.000Z");
    }

    #[test]
    fn example_from_the_docs() {
        // 2026-11-27T03:45:10.512Z
        let secs = 1_795_751_110_i64;
        assert_eq!(
            rfc3339_millis(secs * 1_000_000_000 + 512_999_999),
            "2026-11-27T03:45:10.512Z"
        );
    }

    #[test]
    fn leap_days_and_year_ends() {
        // 2024-02-29T23:59:59.999Z
        assert_eq!(
            rfc3339_millis(1_709_251_199_999_000_000),
            "2024-02-29T23:59:59.999Z"
        );
        // 2000-03-01T00:00:00.000Z (2000 is a leap year)
        assert_eq!(
            rfc3339_millis(951_868_800_000_000_000),
            "2000-03-01T00:00:00.000Z"
        );
        // 1999-12-31T23:59:59.000Z
        assert_eq!(
            rfc3339_millis(946_684_799_000_000_000),
            "1999-12-31T23:59:59.000Z"
        );
    }

    #[test]
    fn before_the_epoch() {
        assert_eq!(rfc3339_millis(-1), "1969-12-31T23:59:59.999Z");
        assert_eq!(
            rfc3339_millis(-86_400_000_000_000),
            "1969-12-31T00:00:00.000Z"
        );
    }

    #[test]
    fn extremes_do_not_panic() {
        let _ = rfc3339_millis(i64::MIN);
        let _ = rfc3339_millis(i64::MAX);
        assert_eq!(rfc3339_millis(i64::MAX), "2262-04-11T23:47:16.854Z");
    }

    #[test]
    fn durations() {
        assert_eq!(human_duration(0), "0ms");
        assert_eq!(human_duration(850_000_000), "850ms");
        assert_eq!(human_duration(1_234_000_000), "1.2s");
        assert_eq!(human_duration(185_000_000_000), "3m05s");
        assert_eq!(human_duration(7_380_000_000_000), "2h03m");
    }
}
