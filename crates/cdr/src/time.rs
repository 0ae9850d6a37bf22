//! UTC calendar arithmetic for report buckets and command-line times, so the crate needs no
//! date library (days ↔ civil dates after Howard Hinnant's public-domain algorithms).

use crate::UnixMillis;
use crate::error::{CdrError, Result};

pub const HOUR_MS: i64 = 3_600_000;
pub const DAY_MS: i64 = 24 * HOUR_MS;

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

/// (year, month, day) of a day number since 1970-01-01.
pub fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `2026-11-23` (UTC).
pub fn format_day(at: UnixMillis) -> String {
    let (y, m, d) = civil_from_days(at.div_euclid(DAY_MS));
    format!("{y:04}-{m:02}-{d:02}")
}

/// `2026-11-23T14:00Z` (UTC, the start of the hour).
pub fn format_hour(at: UnixMillis) -> String {
    let h = at.rem_euclid(DAY_MS) / HOUR_MS;
    format!("{}T{h:02}:00Z", format_day(at))
}

/// Reads a UTC time: `2026-11-23`, `2026-11-23T14:05`, `2026-11-23T14:05:09Z` (a space may
/// replace the `T`) or Unix milliseconds.
pub fn parse_time(s: &str) -> Result<UnixMillis> {
    let bad = || CdrError::Invalid {
        what: "time",
        reason: format!("{s:?} is not YYYY-MM-DD, YYYY-MM-DDTHH:MM[:SS][Z] or Unix milliseconds"),
    };
    let s = s.trim();
    if !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit()) && s.len() > 8 {
        return s.parse().map_err(|_| bad());
    }
    let s = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = match s.split_once(['T', ' ']) {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let num = |t: &str, max: u32| -> Result<u32> {
        if t.is_empty() || t.len() > 4 || !t.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        t.parse::<u32>().ok().filter(|v| *v <= max).ok_or_else(bad)
    };
    let mut parts = date.split('-');
    let (Some(y), Some(m), Some(d), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    if y.len() != 4 {
        return Err(bad());
    }
    let (y, m, d) = (num(y, 9999)?, num(m, 12)?, num(d, 31)?);
    if m == 0 || d == 0 {
        return Err(bad());
    }
    let days = days_from_civil(i64::from(y), m, d);
    if civil_from_days(days) != (i64::from(y), m, d) {
        return Err(bad()); // 2026-02-30
    }
    let mut ms = days * DAY_MS;
    if let Some(t) = time {
        let f: Vec<&str> = t.split(':').collect();
        if !(2..=3).contains(&f.len()) {
            return Err(bad());
        }
        ms += i64::from(num(f[0], 23)?) * HOUR_MS + i64::from(num(f[1], 59)?) * 60_000;
        if let Some(sec) = f.get(2) {
            ms += i64::from(num(sec, 59)?) * 1000;
        }
    }
    Ok(ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn calendar_round_trips() {
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        // 2000-03-01 follows a leap day; 2026-11-23 is day 20 780.
        assert_eq!(
            days_from_civil(2000, 3, 1) - days_from_civil(2000, 2, 28),
            2
        );
        assert_eq!(days_from_civil(2026, 11, 23), 20_780);
        for z in (-800_000..800_000).step_by(997) {
            let (y, m, d) = civil_from_days(z);
            assert_eq!(days_from_civil(y, m, d), z);
        }
    }

    #[test]
    fn parses_and_formats_utc_times() {
        let t = parse_time("2026-11-23T14:05:09Z").unwrap();
        assert_eq!(t, 20_780 * DAY_MS + 14 * HOUR_MS + 5 * 60_000 + 9_000);
        assert_eq!(format_day(t), "2026-11-23");
        assert_eq!(format_hour(t), "2026-11-23T14:00Z");
        assert_eq!(parse_time("2026-11-23").unwrap(), 20_780 * DAY_MS);
        assert_eq!(parse_time("2026-11-23 14:05").unwrap(), t - 9_000);
        assert_eq!(parse_time("1795442709000").unwrap(), 1_795_442_709_000);
        for bad in [
            "",
            "2026-02-30",
            "2026-13-01",
            "2026-11-23T24:00",
            "yesterday",
            "26-1-1",
        ] {
            assert!(parse_time(bad).is_err(), "{bad:?} accepted");
        }
    }
}
