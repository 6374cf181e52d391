//! RFC 3339 UTC timestamps with millisecond precision, and the `--since`/`--until` times,
//! without a date-time crate.

use std::time::{SystemTime, UNIX_EPOCH};

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

/// Converts a (year, month, day) of the proleptic Gregorian calendar to days since 1970-01-01
/// (Howard Hinnant's `days_from_civil`, the inverse of `civil_from_days`).
fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
    let y = if month <= 2 { year - 1 } else { year };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = if month > 2 { month - 3 } else { month + 9 };
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(year: i64, month: i64) -> i64 {
    let leap = year % 4 == 0 && (year % 100 != 0 || year % 400 == 0);
    match month {
        2 if leap => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// What `--since` and `--until` accept, for error messages.
const TIME_FORMS: &str = "an RFC 3339 time (2026-11-27T06:40:00Z, 2026-11-27T07:40:00.5+01:00), \
                          a UTC date (2026-11-27), `now`, or a time ago (90s, 10m, 2h, 7d)";

/// Parses a `--since`/`--until` value into ns since the Unix epoch (clap value parser).
pub fn parse_time(text: &str) -> Result<i64, String> {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX));
    parse_time_at(text, now)
}

/// [`parse_time`] with the current time given, ns since the epoch.
pub fn parse_time_at(text: &str, now_unix_nanos: i64) -> Result<i64, String> {
    let text = text.trim();
    let parsed = if text == "now" {
        Some(now_unix_nanos)
    } else if let Some(ago) = parse_ago(text) {
        ago.and_then(|ns| now_unix_nanos.checked_sub(ns))
    } else {
        match parse_rfc3339(text)? {
            Some(nanos) => Some(nanos),
            None => return Err(format!("expected {TIME_FORMS}")),
        }
    };
    parsed.ok_or_else(|| format!("{text:?} is out of range (1677-09-21 to 2262-04-11)"))
}

/// `<digits><s|m|h|d>`: `None` when `text` has not that shape, `Some(None)` when it overflows.
fn parse_ago(text: &str) -> Option<Option<i64>> {
    let unit_at = text.len().checked_sub(1)?;
    let (digits, unit) = text.split_at(unit_at);
    let unit_nanos: i64 = match unit {
        "s" => 1_000_000_000,
        "m" => 60 * 1_000_000_000,
        "h" => 3600 * 1_000_000_000,
        "d" => 86_400 * 1_000_000_000,
        _ => return None,
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some(
        digits
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_mul(unit_nanos)),
    )
}

/// Reads exactly `n` ASCII digits at the start of `s`.
fn digits(s: &str, n: usize) -> Option<(i64, &str)> {
    let head = s.get(..n)?;
    if !head.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((head.parse().ok()?, &s[n..]))
}

/// `YYYY-MM-DD` (midnight UTC) or `YYYY-MM-DDTHH:MM:SS[.fraction](Z|+HH:MM|-HH:MM)`.
/// `Ok(None)` when `text` does not have that shape; an error when it has it but a field is
/// impossible (month 13, 31 April, ...).
fn parse_rfc3339(text: &str) -> Result<Option<i64>, String> {
    let Some((date, rest)) = parse_date(text) else {
        return Ok(None);
    };
    let (year, month, day) = date;
    if !(1..=12).contains(&month) || day < 1 || day > days_in_month(year, month) {
        return Err(format!("{text:?} is not a valid date"));
    }
    let days = days_from_civil(year, month, day);
    let (secs_of_day, nanos, offset_secs) = if rest.is_empty() {
        (0, 0, 0)
    } else {
        let Some(time) = rest.strip_prefix(['T', 't', ' ']) else {
            return Ok(None);
        };
        let Some(parsed) = parse_clock(time) else {
            return Ok(None);
        };
        let (hour, minute, second, nanos, offset) = parsed;
        if hour > 23 || minute > 59 || second > 59 {
            return Err(format!("{text:?} is not a valid time of day"));
        }
        let Some(offset) = offset else {
            return Err(format!(
                "{text:?} has no time zone: add Z for UTC or an offset such as +01:00"
            ));
        };
        (hour * 3600 + minute * 60 + second, nanos, offset)
    };
    let total = i128::from(days) * 86_400 + i128::from(secs_of_day - offset_secs);
    let nanos = total * 1_000_000_000 + i128::from(nanos);
    i64::try_from(nanos)
        .map(Some)
        .map_err(|_| format!("{text:?} is out of range (1677-09-21 to 2262-04-11)"))
}

fn parse_date(text: &str) -> Option<((i64, i64, i64), &str)> {
    let (year, rest) = digits(text, 4)?;
    let (month, rest) = digits(rest.strip_prefix('-')?, 2)?;
    let (day, rest) = digits(rest.strip_prefix('-')?, 2)?;
    Some(((year, month, day), rest))
}

/// `HH:MM:SS[.fraction][zone]`: hour, minute, second, nanoseconds, and the zone's offset in
/// seconds east of UTC (`None` without a zone).
fn parse_clock(text: &str) -> Option<(i64, i64, i64, i64, Option<i64>)> {
    let (hour, rest) = digits(text, 2)?;
    let (minute, rest) = digits(rest.strip_prefix(':')?, 2)?;
    let (second, mut rest) = digits(rest.strip_prefix(':')?, 2)?;
    let mut nanos = 0;
    if let Some(fraction) = rest.strip_prefix('.') {
        let len = fraction.bytes().take_while(u8::is_ascii_digit).count();
        if len == 0 || len > 9 {
            return None;
        }
        let (value, after) = digits(fraction, len)?;
        nanos = value * 10_i64.pow(9 - len as u32);
        rest = after;
    }
    let offset = match rest {
        "" => None,
        "Z" | "z" => Some(0),
        _ => {
            let sign = match rest.as_bytes()[0] {
                b'+' => 1,
                b'-' => -1,
                _ => return None,
            };
            let (hours, after) = digits(&rest[1..], 2)?;
            let (minutes, after) = digits(after.strip_prefix(':')?, 2)?;
            if !after.is_empty() || hours > 23 || minutes > 59 {
                return None;
            }
            Some(sign * (hours * 3600 + minutes * 60))
        }
    };
    Some((hour, minute, second, nanos, offset))
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

    /// 2026-11-27T06:40:00Z
    const NOW: i64 = 1_795_761_600_000_000_000;

    #[test]
    fn times_in_rfc3339() {
        assert_eq!(rfc3339_millis(NOW), "2026-11-27T06:40:00.000Z");
        assert_eq!(parse_time_at("2026-11-27T06:40:00Z", 0), Ok(NOW));
        assert_eq!(parse_time_at("2026-11-27t06:40:00z", 0), Ok(NOW));
        assert_eq!(parse_time_at("2026-11-27 06:40:00Z", 0), Ok(NOW));
        assert_eq!(
            parse_time_at("2026-11-27T07:40:00.5+01:00", 0),
            Ok(NOW + 500_000_000)
        );
        assert_eq!(
            parse_time_at("2026-11-27T01:40:00.123456789-05:00", 0),
            Ok(NOW + 123_456_789)
        );
        assert_eq!(
            parse_time_at("2026-11-27", 0),
            Ok(NOW - (6 * 3600 + 40 * 60) * 1_000_000_000)
        );
        assert_eq!(parse_time_at("1970-01-01T00:00:00Z", 5), Ok(0));
        assert_eq!(parse_time_at("1969-12-31T23:59:59.999Z", 0), Ok(-1_000_000));
        assert_eq!(
            parse_time_at("2024-02-29", 0),
            Ok(1_709_164_800_000_000_000)
        );
    }

    #[test]
    fn times_ago() {
        assert_eq!(parse_time_at("now", NOW), Ok(NOW));
        assert_eq!(parse_time_at("90s", NOW), Ok(NOW - 90_000_000_000));
        assert_eq!(parse_time_at("10m", NOW), Ok(NOW - 600_000_000_000));
        assert_eq!(parse_time_at("2h", NOW), Ok(NOW - 7_200_000_000_000));
        assert_eq!(parse_time_at("7d", NOW), Ok(NOW - 604_800_000_000_000));
        assert_eq!(parse_time_at("0s", NOW), Ok(NOW));
    }

    #[test]
    fn bad_times_say_why() {
        for bad in [
            "",
            "yesterday",
            "10",
            "m",
            "-5m",
            "1.5h",
            "10w",
            "2026-11-27T06:40Z",
        ] {
            let e = parse_time_at(bad, NOW).expect_err(bad);
            assert!(e.contains("RFC 3339"), "{bad:?}: {e}");
        }
        let e = parse_time_at("2026-11-27T06:40:00", NOW).unwrap_err();
        assert!(e.contains("no time zone"), "{e}");
        for impossible in ["2026-13-01", "2026-04-31", "2025-02-29", "2026-00-10"] {
            let e = parse_time_at(impossible, NOW).expect_err(impossible);
            assert!(e.contains("not a valid date"), "{impossible:?}: {e}");
        }
        let e = parse_time_at("2026-11-27T24:00:00Z", NOW).unwrap_err();
        assert!(e.contains("not a valid time of day"), "{e}");
        for huge in ["9999-01-01", "99999999999999999d", "1000-01-01T00:00:00Z"] {
            let e = parse_time_at(huge, NOW).expect_err(huge);
            assert!(e.contains("out of range"), "{huge:?}: {e}");
        }
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
