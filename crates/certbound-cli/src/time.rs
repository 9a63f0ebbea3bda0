//! Times for people: `2026-01-27 10:00:00 UTC`, "in 42 min", "3 h ago".
//!
//! Every input may come from a token, so nothing here can overflow or panic: differences are taken
//! in `i128` (two `i64`s always fit), and timestamps outside the years 0000–9999 are not given a
//! calendar date.

use std::time::{SystemTime, UNIX_EPOCH};

/// Seconds since the Unix epoch, now.
pub(crate) fn now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_secs()).unwrap_or(i64::MAX))
}

/// A JSON NumericDate as whole seconds: fractions rounded down (towards the past), values beyond
/// the `i64` range (`1e300`) clamped to it, NaN and infinities refused.
pub(crate) fn seconds(value: f64) -> Option<i64> {
    // `as` from float to int saturates at the bounds of `i64`.
    value.is_finite().then(|| value.floor() as i64)
}

/// Seconds in an average Gregorian year (365.2425 days).
const YEAR: u128 = 31_556_952;

/// Spans this long are not worth a number: every timestamp that far away is outside the calendar.
const FOREVER_YEARS: u128 = 10_000;

/// A duration in one unit, rounded down: `12 s`, `42 min`, `3 h`, `12 d`, `7 y`, and
/// `over 10000 y` for anything longer (the clamped ends of the `i64` range included).
pub(crate) fn span(secs: i128) -> String {
    let secs = secs.unsigned_abs();
    match secs {
        0..100 => format!("{secs} s"),
        100..6_000 => format!("{} min", secs / 60),
        6_000..172_800 => format!("{} h", secs / 3600),
        172_800..63_072_000 => format!("{} d", secs / 86_400),
        _ if secs / YEAR < FOREVER_YEARS => format!("{} y", secs / YEAR),
        _ => format!("over {FOREVER_YEARS} y"),
    }
}

/// `at - now` without overflow.
pub(crate) fn diff(at: i64, now: i64) -> i128 {
    i128::from(at) - i128::from(now)
}

/// `in 42 min` for the future, `3 h ago` for the past, `just now` (relative to `now`).
pub(crate) fn relative(at: i64, now: i64) -> String {
    let d = diff(at, now);
    match d {
        0 => "just now".to_owned(),
        1.. => format!("in {}", span(d)),
        _ => format!("{} ago", span(d)),
    }
}

/// `2026-01-27 10:00:00 UTC` (proleptic Gregorian calendar), or `None` outside the years
/// 0000–9999 (what four digits and people can read).
pub(crate) fn calendar(ts: i64) -> Option<String> {
    let days = ts.div_euclid(86_400);
    let secs = ts.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days)?;
    (0..=9999).contains(&y).then(|| {
        format!(
            "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02} UTC",
            secs / 3600,
            secs / 60 % 60,
            secs % 60
        )
    })
}

/// [`calendar`], or the raw number and why there is no date.
pub(crate) fn utc(ts: i64) -> String {
    calendar(ts).unwrap_or_else(|| no_date(ts))
}

/// What stands in for a date outside the calendar: the raw number, said as such.
pub(crate) fn no_date(raw: impl std::fmt::Display) -> String {
    format!("{raw} s since 1970: no calendar date (outside the years 0000–9999)")
}

/// Howard Hinnant's `civil_from_days`: days since 1970-01-01 → (year, month, day). `None` only
/// if the arithmetic would overflow, which the `i64`-seconds range of [`calendar`] never reaches;
/// checked anyway so that no input can panic.
fn civil_from_days(z: i64) -> Option<(i64, i64, i64)> {
    let z = z.checked_add(719_468)?;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = era.checked_mul(400)?.checked_add(yoe)?;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    Some((if m <= 2 { y.checked_add(1)? } else { y }, m, d))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_dates() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(utc(951_782_400), "2000-02-29 00:00:00 UTC");
        assert_eq!(utc(1_800_000_000), "2027-01-15 08:00:00 UTC");
        assert_eq!(utc(-1), "1969-12-31 23:59:59 UTC");
    }

    #[test]
    fn calendar_edges() {
        // The first and last second with a four-digit year.
        assert_eq!(utc(-62_167_219_200), "0000-01-01 00:00:00 UTC");
        assert_eq!(utc(253_402_300_799), "9999-12-31 23:59:59 UTC");
        // One second outside: the raw number, no date.
        assert_eq!(calendar(-62_167_219_201), None);
        assert_eq!(calendar(253_402_300_800), None);
        assert_eq!(
            utc(253_402_300_800),
            "253402300800 s since 1970: no calendar date (outside the years 0000–9999)"
        );
    }

    #[test]
    fn calendar_never_panics_at_the_ends_of_i64() {
        for ts in [i64::MIN, i64::MIN + 1, i64::MAX, i64::MAX - 1] {
            assert_eq!(calendar(ts), None, "{ts}");
            assert!(utc(ts).starts_with(&ts.to_string()), "{}", utc(ts));
        }
        assert_eq!(civil_from_days(i64::MAX), None);
    }

    #[test]
    fn spans() {
        assert_eq!(relative(1000 + 42 * 60, 1000), "in 42 min");
        assert_eq!(relative(1000, 1000 + 3 * 3600 + 5), "3 h ago");
        assert_eq!(relative(1030, 1000), "in 30 s");
        assert_eq!(relative(1000, 1000), "just now");
        assert_eq!(span(3 * 86_400), "3 d");
        assert_eq!(span(729 * 86_400), "729 d");
        assert_eq!(span(-(5 * 31_556_952)), "5 y");
        assert_eq!(span(9_999 * 31_556_952), "9999 y");
        assert_eq!(span(10_000 * 31_556_952), "over 10000 y");
    }

    #[test]
    fn relative_times_never_overflow() {
        let ends = [i64::MIN, i64::MIN + 1, -1, 0, 1, i64::MAX - 1, i64::MAX];
        for at in ends {
            for now in ends {
                let text = relative(at, now);
                assert!(!text.is_empty());
            }
        }
        assert_eq!(relative(i64::MIN, i64::MAX), "over 10000 y ago");
        assert_eq!(relative(i64::MAX, i64::MIN), "in over 10000 y");
        assert_eq!(diff(i64::MIN, i64::MAX), -(i128::from(u64::MAX)));
        assert_eq!(span(i128::MIN), "over 10000 y");
    }

    #[test]
    fn seconds_from_json_numbers() {
        assert_eq!(seconds(1.5), Some(1));
        assert_eq!(seconds(-0.5), Some(-1));
        assert_eq!(seconds(-1.0), Some(-1));
        assert_eq!(seconds(1e300), Some(i64::MAX));
        assert_eq!(seconds(-1e300), Some(i64::MIN));
        assert_eq!(seconds(9.3e18), Some(i64::MAX));
        assert_eq!(seconds(f64::NAN), None);
        assert_eq!(seconds(f64::INFINITY), None);
    }
}
