//! Business hours and holidays: a sans-IO check of "is this set open at instant T?", with
//! the clock injected (the call task asks [`Clock::now`]) so routing is tested without
//! waiting for a weekday.

use std::collections::HashSet;
use std::sync::Arc;

use jiff::Timestamp;
use jiff::civil::Date;
use jiff::tz::{Offset, TimeZone};

/// Where the current time comes from: the system clock, or a fixed/test clock.
#[derive(Clone)]
pub struct Clock(Arc<dyn Fn() -> Timestamp + Send + Sync>);

impl Clock {
    /// The system clock.
    pub fn system() -> Self {
        Clock(Arc::new(Timestamp::now))
    }

    /// A clock that reads `f` (tests).
    pub fn from_fn(f: impl Fn() -> Timestamp + Send + Sync + 'static) -> Self {
        Clock(Arc::new(f))
    }

    /// Now.
    pub fn now(&self) -> Timestamp {
        (self.0)()
    }

    /// Now in milliseconds since the Unix epoch (CDR times).
    pub fn now_ms(&self) -> i64 {
        self.now().as_millisecond()
    }
}

impl std::fmt::Debug for Clock {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Clock")
    }
}

/// One opening range: these weekdays, from `from` to `to` minutes after midnight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OpenRange {
    /// Monday = 0 … Sunday = 6.
    pub days: [bool; 7],
    pub from_min: u16,
    /// Exclusive; 1440 = midnight at the end of the day.
    pub to_min: u16,
}

/// A named set of opening hours in one time zone, with holidays (closed all day).
#[derive(Debug, Clone)]
pub struct Hours {
    pub tz: TimeZone,
    pub open: Vec<OpenRange>,
    pub holidays: HashSet<Date>,
}

impl Hours {
    /// Whether the set is open at `t`.
    pub fn is_open(&self, t: Timestamp) -> bool {
        let z = t.to_zoned_datetime(self.tz.clone());
        if self.holidays.contains(&z.date()) {
            return false;
        }
        let day = z.weekday().to_monday_zero_offset() as usize;
        let min = z.time().hour() as u16 * 60 + z.time().minute() as u16;
        self.open
            .iter()
            .any(|r| r.days[day] && r.from_min <= min && min < r.to_min)
    }
}

/// A time zone: `"UTC"`, a fixed offset (`"+02:00"`, `"-05:30"`) or an IANA name
/// (`"Europe/Berlin"`, from the system's tz database).
pub fn parse_tz(s: &str) -> Result<TimeZone, String> {
    if s.eq_ignore_ascii_case("utc") || s == "Z" {
        return Ok(TimeZone::UTC);
    }
    if let Some(rest) = s.strip_prefix(['+', '-']) {
        let sign = if s.starts_with('-') { -1 } else { 1 };
        let (h, m) = rest.split_once(':').unwrap_or((rest, "0"));
        let bad = || format!("invalid UTC offset {s:?} (expected +HH:MM)");
        let h: i32 = h.parse().map_err(|_| bad())?;
        let m: i32 = m.parse().map_err(|_| bad())?;
        if h > 18 || m > 59 {
            return Err(bad());
        }
        let off = Offset::from_seconds(sign * (h * 3600 + m * 60)).map_err(|_| bad())?;
        return Ok(TimeZone::fixed(off));
    }
    TimeZone::get(s).map_err(|e| format!("unknown time zone {s:?}: {e}"))
}

/// Weekdays: `"mon-fri"`, `"sat"`, `"mon,wed,fri"`, `"sat-sun"`, `"daily"`.
pub fn parse_days(s: &str) -> Result<[bool; 7], String> {
    const NAMES: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];
    let idx = |d: &str| {
        NAMES
            .iter()
            .position(|n| d.trim().eq_ignore_ascii_case(n))
            .ok_or_else(|| format!("unknown weekday {d:?} (mon … sun)"))
    };
    let mut days = [false; 7];
    if s.trim().eq_ignore_ascii_case("daily") {
        return Ok([true; 7]);
    }
    for part in s.split(',') {
        match part.split_once('-') {
            Some((a, b)) => {
                let (a, b) = (idx(a)?, idx(b)?);
                // A wrapping range ("fri-mon") covers the weekend.
                let mut i = a;
                loop {
                    days[i] = true;
                    if i == b {
                        break;
                    }
                    i = (i + 1) % 7;
                }
            }
            None => days[idx(part)?] = true,
        }
    }
    Ok(days)
}

/// A time of day `"HH:MM"` as minutes after midnight; `"24:00"` is the end of the day.
pub fn parse_hhmm(s: &str) -> Result<u16, String> {
    let bad = || format!("invalid time {s:?} (expected HH:MM)");
    let (h, m) = s.split_once(':').ok_or_else(bad)?;
    let (h, m): (u16, u16) = (h.parse().map_err(|_| bad())?, m.parse().map_err(|_| bad())?);
    if m > 59 || h > 24 || (h == 24 && m != 0) {
        return Err(bad());
    }
    Ok(h * 60 + m)
}

/// A holiday date `"YYYY-MM-DD"`.
pub fn parse_date(s: &str) -> Result<Date, String> {
    s.parse::<Date>()
        .map_err(|e| format!("invalid date {s:?} (expected YYYY-MM-DD): {e}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn office(tz: &str) -> Hours {
        Hours {
            tz: parse_tz(tz).unwrap(),
            open: vec![
                OpenRange {
                    days: parse_days("mon-fri").unwrap(),
                    from_min: parse_hhmm("08:00").unwrap(),
                    to_min: parse_hhmm("18:00").unwrap(),
                },
                OpenRange {
                    days: parse_days("sat").unwrap(),
                    from_min: parse_hhmm("09:00").unwrap(),
                    to_min: parse_hhmm("13:00").unwrap(),
                },
            ],
            holidays: [parse_date("2026-12-25").unwrap()].into_iter().collect(),
        }
    }

    fn at(s: &str) -> Timestamp {
        s.parse().unwrap()
    }

    #[test]
    fn weekday_ranges_in_a_fixed_offset() {
        let h = office("+02:00");
        // Monday 2026-11-23 07:59 local = 05:59Z: closed; 08:00 local: open.
        assert!(!h.is_open(at("2026-11-23T05:59:00Z")));
        assert!(h.is_open(at("2026-11-23T06:00:00Z")));
        // 17:59 local open, 18:00 closed (end exclusive).
        assert!(h.is_open(at("2026-11-23T15:59:00Z")));
        assert!(!h.is_open(at("2026-11-23T16:00:00Z")));
        // Saturday 2026-11-28 10:00 local open, 13:00 closed; Sunday closed.
        assert!(h.is_open(at("2026-11-28T08:00:00Z")));
        assert!(!h.is_open(at("2026-11-28T11:00:00Z")));
        assert!(!h.is_open(at("2026-11-29T08:00:00Z")));
    }

    #[test]
    fn holidays_close_the_whole_local_day() {
        let h = office("-05:00");
        // Friday 2026-12-25 10:00 local: a holiday.
        assert!(!h.is_open(at("2026-12-25T15:00:00Z")));
        // Thursday 12-24 10:00 local: open; and 12-25 02:00Z is still 12-24 21:00 local.
        assert!(h.is_open(at("2026-12-24T15:00:00Z")));
        assert!(!h.is_open(at("2026-12-25T02:00:00Z")), "closed at 21:00");
    }

    #[test]
    fn iana_zone_follows_daylight_saving() {
        let h = office("Europe/Berlin");
        // Summer (UTC+2): 08:00 local = 06:00Z. Winter (UTC+1): 08:00 local = 07:00Z.
        assert!(h.is_open(at("2026-07-06T06:00:00Z")));
        assert!(!h.is_open(at("2026-11-23T06:30:00Z")));
        assert!(h.is_open(at("2026-11-23T07:00:00Z")));
    }

    #[test]
    fn parsers_reject_nonsense() {
        assert!(parse_tz("Mars/Olympus").is_err());
        assert!(parse_tz("+25:00").is_err());
        assert_eq!(
            parse_days("fri-mon").unwrap(),
            [true, false, false, false, true, true, true]
        );
        assert!(parse_days("funday").is_err());
        assert_eq!(parse_hhmm("24:00").unwrap(), 1440);
        assert!(parse_hhmm("24:30").is_err());
        assert!(parse_hhmm("8").is_err());
        assert!(parse_date("2026-13-01").is_err());
    }

    #[test]
    fn injected_clock_is_read() {
        let c = Clock::from_fn(|| "2026-01-01T00:00:00Z".parse().unwrap());
        assert_eq!(c.now_ms(), 1_767_225_600_000);
    }
}
