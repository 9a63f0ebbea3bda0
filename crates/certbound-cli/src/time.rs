//! Times for people: `2026-01-27 10:00:00 UTC`, "in 42 min", "3 h ago".

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A duration in one unit, rounded down: `12 s`, `42 min`, `3 h`, `12 d`.
pub(crate) fn span(secs: i64) -> String {
    let secs = secs.unsigned_abs();
    match secs {
        0..100 => format!("{secs} s"),
        100..6_000 => format!("{} min", secs / 60),
        6_000..172_800 => format!("{} h", secs / 3600),
        _ => format!("{} d", secs / 86_400),
    }
}

/// `in 42 min` for the future, `3 h ago` for the past, `just now` (relative to `now`).
pub(crate) fn relative(at: i64, now: i64) -> String {
    if at == now {
        "just now".to_owned()
    } else if at > now {
        format!("in {}", span(at - now))
    } else {
        format!("{} ago", span(now - at))
    }
}

/// `2026-01-27 10:00:00 UTC` (proleptic Gregorian calendar).
pub(crate) fn utc(ts: i64) -> String {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
        secs / 3600,
        secs / 60 % 60,
        secs % 60
    )
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day).
fn civil_from_days(z: i64) -> (i64, i64, i64) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    (if m <= 2 { y + 1 } else { y }, m, d)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_800_000_000), "2027-01-15 08:00:00 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn spans() {
        assert_eq!(relative(1000 + 42 * 60, 1000), "in 42 min");
        assert_eq!(relative(1000, 1000 + 3 * 3600 + 5), "3 h ago");
        assert_eq!(relative(1030, 1000), "in 30 s");
        assert_eq!(span(3 * 86_400), "3 d");
    }
}
