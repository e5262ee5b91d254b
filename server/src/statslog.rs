//! The periodic statistics line, in JackrabbitDLM's log format:
//! `YYYY-MM-DD HH:MM:SS.ffffff Key: value, Key: value` (sorted, non-zero
//! only), so its chart tool reads our logs. Timestamps are UTC.

use std::fmt::Write as _;
use std::time::{SystemTime, UNIX_EPOCH};

use dlm_core::stats::Stats;

/// `(year, month, day)` of a day number counted from 1970-01-01.
fn civil_from_days(days: i64) -> (i64, u32, u32) {
    // Shift the epoch to 0000-03-01 so leap days fall at the end of a year.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097); // day of era, 0..=146096
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365; // 0..=399
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100); // 0..=365
    let mp = (5 * doy + 2) / 153; // month from March, 0..=11
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    (year, month as u32, day as u32)
}

/// Formats a wall-clock time as `YYYY-MM-DD HH:MM:SS.ffffff` (UTC).
pub fn timestamp(t: SystemTime) -> String {
    let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = i64::try_from(d.as_secs()).unwrap_or(i64::MAX);
    let (y, mo, da) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    format!(
        "{y:04}-{mo:02}-{da:02} {:02}:{:02}:{:02}.{:06}",
        sod / 3600,
        sod / 60 % 60,
        sod % 60,
        d.subsec_micros()
    )
}

/// The whole line (with its newline), or `None` if every value is zero.
pub fn line(at: SystemTime, stats: &Stats) -> Option<String> {
    let mut body = String::new();
    // Writing to a String cannot fail.
    let _ = stats.write_log_line(&mut body);
    if body.is_empty() {
        return None;
    }
    let mut out = timestamp(at);
    let _ = writeln!(out, " {body}");
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use dlm_core::stats::Stat;
    use std::time::Duration;

    #[test]
    fn timestamps_are_civil_utc() {
        assert_eq!(timestamp(UNIX_EPOCH), "1970-01-01 00:00:00.000000");
        // 2000-02-29 12:34:56.789012 UTC
        let t = UNIX_EPOCH + Duration::new(951_827_696, 789_012_000);
        assert_eq!(timestamp(t), "2000-02-29 12:34:56.789012");
        // 2026-11-26 00:00:00 UTC
        let t = UNIX_EPOCH + Duration::from_secs(1_795_651_200);
        assert_eq!(timestamp(t), "2026-11-26 00:00:00.000000");
    }

    #[test]
    fn the_line_matches_jackrabbit_format() {
        let mut s = Stats::new();
        assert_eq!(line(UNIX_EPOCH, &s), None);
        s.add(Stat::Lock, 2);
        s.incr(Stat::BadPayload);
        assert_eq!(
            line(UNIX_EPOCH, &s).unwrap(),
            "1970-01-01 00:00:00.000000 BadPayload: 1, Lock: 2\n"
        );
    }
}
