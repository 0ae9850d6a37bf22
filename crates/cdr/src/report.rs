//! Reports per queue / agent / hour / day from the CDRs and the queue log.
//!
//! [`build`] is a pure function of the rows ([`crate::ReportInput`], read by
//! [`crate::CdrStore::report_input`]) so the figures are checked against hand-computed
//! ones. Hour and day buckets are UTC ([`build`]) or a time zone's local hours and days
//! ([`build_in`] with a [`Calendar`]); a call belongs to the bucket of its arrival.
//!
//! Definitions (the same as the ACD's live statistics, `hotline_acd` crate docs):
//! * **Offered**: calls that entered a queue (`queue` set), short abandons included. For an
//!   agent: the offers (`OFFER` lines) made to the agent.
//! * **Short abandon**: abandoned after waiting less than `short_abandon_secs`; excluded from
//!   service level and abandonment rate (misdials, callers who left during the greeting).
//! * **Abandoned**: the other abandons.
//! * **Service level** = answered within `service_level_secs` / (answered + abandoned +
//!   left to the fallback). Abandons count against it whether before or after the threshold.
//!   Not given for agents.
//! * **Abandonment rate** = abandoned / (offered − short abandons).
//! * **ASA** = total wait of answered calls / answered (the wait runs from queue entry to
//!   the answer, ring time included).
//! * **AHT** = (talk + hold + wrap-up) / answered. Wrap-up is the `WRAPUP_END` line of the
//!   call: its `data` in milliseconds, or (when `data` is not a number) the time from the
//!   call's end to that line.
//! * **Occupancy** = (talk + hold + wrap-up) / ready time, where ready time is the time an
//!   agent was logged in and not in not-ready (Hotline's queue log keeps an agent ready
//!   while talking and in wrap-up; not-ready is a pause with a reason). For agents, hours
//!   and days; not for queues (agents serve several).
//! * **Agent time**: logged-in, ready and not-ready time (by reason) from `AGENT_LOGIN`,
//!   `AGENT_READY`, `AGENT_NOT_READY` (data = reason) and `AGENT_LOGOUT`, clipped to the
//!   window (and to `now`); a login starts in not-ready "login" until the first ready.
//!
//! Hour and day rows count queue calls; agent rows count every call the agent answered
//! (queue or extension).

use std::collections::{BTreeMap, HashMap};

use crate::store::ReportInput;
use crate::time::{DAY_MS, HOUR_MS, format_day, format_hour};
use crate::{CallRecord, CallResult, CdrError, QueueEventKind, Result, UnixMillis};

/// Where hour and day buckets start: UTC, or the local clock of a time zone (a local hour
/// is always 60 minutes; a local day may be 23 or 25 hours around a DST change).
#[derive(Debug, Clone, Default)]
pub struct Calendar {
    tz: Option<jiff::tz::TimeZone>,
}

impl Calendar {
    pub fn utc() -> Calendar {
        Calendar { tz: None }
    }

    pub fn zone(tz: jiff::tz::TimeZone) -> Calendar {
        Calendar { tz: Some(tz) }
    }

    fn zoned(&self, at: UnixMillis) -> Option<jiff::ZonedDateTime> {
        let tz = self.tz.as_ref()?;
        Some(
            jiff::Timestamp::from_millisecond(at)
                .ok()?
                .to_zoned_datetime(tz.clone()),
        )
    }

    /// Start of the bucket holding `at` and the start of the next one.
    fn span(&self, at: UnixMillis, by: GroupBy) -> (UnixMillis, UnixMillis) {
        let utc = |size: i64| {
            let start = at.div_euclid(size) * size;
            (start, start + size)
        };
        let Some(z) = self.zoned(at) else {
            return utc(if by == GroupBy::Hour { HOUR_MS } else { DAY_MS });
        };
        if by == GroupBy::Hour {
            let into = (i64::from(z.minute()) * 60 + i64::from(z.second())) * 1000
                + i64::from(z.millisecond());
            return (at - into, at - into + HOUR_MS);
        }
        let day = z.start_of_day().and_then(|s| {
            let next = z.tomorrow()?.start_of_day()?;
            Ok((
                s.timestamp().as_millisecond(),
                next.timestamp().as_millisecond(),
            ))
        });
        day.unwrap_or_else(|_| utc(DAY_MS))
    }

    /// `2026-11-23T14:00Z` / `2026-11-23` in UTC; `2026-11-23T14:00+01:00` / `2026-11-23`
    /// in a zone.
    pub fn key(&self, at: UnixMillis, by: GroupBy) -> String {
        match (self.zoned(at), by) {
            (None, GroupBy::Hour) => format_hour(at),
            (None, _) => format_day(at),
            (Some(z), GroupBy::Hour) => z.strftime("%Y-%m-%dT%H:00%:z").to_string(),
            (Some(z), _) => z.strftime("%Y-%m-%d").to_string(),
        }
    }

    /// The start of the local day holding `at` (for "today" defaults).
    pub fn day_start(&self, at: UnixMillis) -> UnixMillis {
        self.span(at, GroupBy::Day).0
    }
}

/// How rows are grouped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupBy {
    Queue,
    Agent,
    Hour,
    Day,
}

impl std::str::FromStr for GroupBy {
    type Err = CdrError;
    fn from_str(s: &str) -> Result<GroupBy> {
        match s {
            "queue" => Ok(GroupBy::Queue),
            "agent" => Ok(GroupBy::Agent),
            "hour" => Ok(GroupBy::Hour),
            "day" => Ok(GroupBy::Day),
            _ => Err(CdrError::Invalid {
                what: "grouping",
                reason: format!("{s:?} (use queue, agent, hour or day)"),
            }),
        }
    }
}

/// Parameters of a report.
#[derive(Debug, Clone)]
pub struct ReportOptions {
    pub by: GroupBy,
    /// Service-level threshold T: answered within T seconds counts as in service level.
    pub service_level_secs: u32,
    /// Abandons after a shorter wait are short abandons.
    pub short_abandon_secs: u32,
    /// Agent states still open are counted up to here (or the window's end if earlier).
    pub now: UnixMillis,
}

/// One row of a report (or the total).
#[derive(Debug, Clone, Default, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct ReportRow {
    /// Queue name, agent, `2026-11-23T14:00Z` or `2026-11-23`; `total` for the total.
    pub key: String,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub short_abandoned: u64,
    /// Left the queue to its fallback.
    pub fallback: u64,
    pub answered_within_sl: u64,
    /// Offers the agent let ring out (`RING_NO_ANSWER`).
    pub missed_offers: u64,
    pub transfers: u64,
    /// 0..1; `None` when nothing counts towards it.
    pub service_level: Option<f64>,
    pub abandon_rate: Option<f64>,
    pub asa_secs: Option<f64>,
    pub aht_secs: Option<f64>,
    pub occupancy: Option<f64>,
    /// Totals behind the averages, in milliseconds.
    pub wait_ms: i64,
    pub talk_ms: i64,
    pub hold_ms: i64,
    pub wrapup_ms: i64,
    pub logged_in_ms: i64,
    pub ready_ms: i64,
    pub not_ready_ms: i64,
    pub not_ready_by_reason: BTreeMap<String, i64>,
}

/// A whole report.
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct Report {
    pub from: UnixMillis,
    pub to: UnixMillis,
    pub by: GroupBy,
    pub service_level_secs: u32,
    pub short_abandon_secs: u32,
    pub rows: Vec<ReportRow>,
    pub total: ReportRow,
}

impl ReportRow {
    fn handle_ms(&self) -> i64 {
        self.talk_ms + self.hold_ms + self.wrapup_ms
    }

    fn add_queue_call(&mut self, c: &CallRecord, o: &ReportOptions) {
        self.offered += 1;
        match c.result {
            CallResult::Abandoned if c.wait_ms < i64::from(o.short_abandon_secs) * 1000 => {
                self.short_abandoned += 1
            }
            CallResult::Abandoned => self.abandoned += 1,
            // A message left in the queue's voicemail box is the queue's fallback.
            CallResult::Fallback | CallResult::Voicemail => self.fallback += 1,
            _ => {}
        }
    }

    fn add_answered(&mut self, c: &CallRecord, wrapup_ms: i64, o: &ReportOptions) {
        if c.answered_at.is_none() {
            return;
        }
        self.answered += 1;
        self.wait_ms += c.wait_ms;
        if c.wait_ms <= i64::from(o.service_level_secs) * 1000 {
            self.answered_within_sl += 1;
        }
        self.talk_ms += c.talk_ms;
        self.hold_ms += c.hold_ms;
        self.wrapup_ms += wrapup_ms;
    }

    fn add_state(&mut self, state: &AgentState, ms: i64) {
        if ms <= 0 {
            return;
        }
        match state {
            AgentState::LoggedOut => return,
            AgentState::Ready => self.ready_ms += ms,
            AgentState::NotReady(reason) => {
                self.not_ready_ms += ms;
                *self.not_ready_by_reason.entry(reason.clone()).or_default() += ms;
            }
        }
        self.logged_in_ms += ms;
    }

    fn merge(&mut self, r: &ReportRow) {
        self.offered += r.offered;
        self.answered += r.answered;
        self.abandoned += r.abandoned;
        self.short_abandoned += r.short_abandoned;
        self.fallback += r.fallback;
        self.answered_within_sl += r.answered_within_sl;
        self.missed_offers += r.missed_offers;
        self.transfers += r.transfers;
        self.wait_ms += r.wait_ms;
        self.talk_ms += r.talk_ms;
        self.hold_ms += r.hold_ms;
        self.wrapup_ms += r.wrapup_ms;
    }

    fn finish(&mut self, service_level: bool, occupancy: bool) {
        let ratio = |n: f64, d: f64| (d > 0.0).then(|| n / d);
        let sl_base = self.answered + self.abandoned + self.fallback;
        self.service_level = if service_level {
            ratio(self.answered_within_sl as f64, sl_base as f64)
        } else {
            None
        };
        self.abandon_rate = if service_level {
            ratio(
                self.abandoned as f64,
                (self.offered - self.short_abandoned) as f64,
            )
        } else {
            None
        };
        self.asa_secs = ratio(self.wait_ms as f64 / 1000.0, self.answered as f64);
        self.aht_secs = ratio(self.handle_ms() as f64 / 1000.0, self.answered as f64);
        self.occupancy = if occupancy {
            ratio(self.handle_ms() as f64, self.ready_ms as f64).map(|o| o.min(1.0))
        } else {
            None
        };
    }
}

#[derive(Debug, Clone, PartialEq)]
enum AgentState {
    LoggedOut,
    Ready,
    NotReady(String),
}

/// (agent, start, end, state), clipped to `[from, until)`.
fn agent_intervals(
    input: &ReportInput,
    until: UnixMillis,
) -> Vec<(String, UnixMillis, UnixMillis, AgentState)> {
    let mut per_agent: BTreeMap<&str, Vec<(UnixMillis, AgentState)>> = BTreeMap::new();
    for e in &input.events {
        let Some(agent) = e.agent.as_deref() else {
            continue;
        };
        let state = match e.event {
            QueueEventKind::AgentLogin => AgentState::NotReady("login".into()),
            QueueEventKind::AgentReady => AgentState::Ready,
            QueueEventKind::AgentNotReady => AgentState::NotReady(e.data.clone()),
            QueueEventKind::AgentLogout => AgentState::LoggedOut,
            _ => continue,
        };
        per_agent.entry(agent).or_default().push((e.at, state));
    }
    let mut out = Vec::new();
    for (agent, mut changes) in per_agent {
        changes.sort_by_key(|(at, _)| *at); // stable: same-instant lines keep their order
        for (i, (at, state)) in changes.iter().enumerate() {
            let end = changes
                .get(i + 1)
                .map_or(until, |(next, _)| *next)
                .min(until);
            let start = (*at).max(input.from);
            if end > start && *state != AgentState::LoggedOut {
                out.push((agent.to_string(), start, end, state.clone()));
            }
        }
    }
    out
}

/// Wrap-up milliseconds per call id.
fn wrapups(input: &ReportInput) -> HashMap<&str, i64> {
    let ended: HashMap<&str, UnixMillis> = input
        .calls
        .iter()
        .map(|c| (c.call_id.as_str(), c.ended_at))
        .collect();
    let mut out: HashMap<&str, i64> = HashMap::new();
    for e in &input.events {
        if e.event != QueueEventKind::WrapupEnd {
            continue;
        }
        let ms = match e.data.trim().parse::<i64>() {
            Ok(ms) => ms,
            Err(_) => match ended.get(e.call_id.as_str()) {
                Some(end) => e.at - end,
                None => continue,
            },
        };
        *out.entry(e.call_id.as_str()).or_default() += ms.max(0);
    }
    out
}

fn row<'a>(rows: &'a mut BTreeMap<String, ReportRow>, key: &str) -> &'a mut ReportRow {
    rows.entry(key.to_string()).or_insert_with(|| ReportRow {
        key: key.to_string(),
        ..ReportRow::default()
    })
}

/// Builds the report for `input`'s window, hours and days in UTC.
pub fn build(input: &ReportInput, o: &ReportOptions) -> Report {
    build_in(input, o, &Calendar::utc())
}

/// [`build`] with hour and day buckets of `calendar`.
pub fn build_in(input: &ReportInput, o: &ReportOptions, calendar: &Calendar) -> Report {
    let until = input.to.min(o.now.max(input.from));
    let wrap = wrapups(input);
    let mut rows: BTreeMap<String, ReportRow> = BTreeMap::new();
    let bucket = |at: UnixMillis| match o.by {
        GroupBy::Hour | GroupBy::Day => Some(calendar.key(at, o.by)),
        _ => None,
    };
    for c in &input.calls {
        let wrapup = wrap.get(c.call_id.as_str()).copied().unwrap_or(0);
        let key = match o.by {
            GroupBy::Queue => c.queue.clone(),
            GroupBy::Agent => c.agent.clone(),
            GroupBy::Hour | GroupBy::Day => c.queue.as_ref().and_then(|_| bucket(c.arrived_at)),
        };
        let Some(key) = key else { continue };
        let r = row(&mut rows, &key);
        if o.by != GroupBy::Agent {
            r.add_queue_call(c, o);
        }
        r.add_answered(c, wrapup, o);
        r.transfers += u64::from(c.transfers);
    }
    if o.by == GroupBy::Agent {
        for e in input
            .events
            .iter()
            .filter(|e| e.at >= input.from && e.at < input.to)
        {
            let Some(agent) = e.agent.as_deref() else {
                continue;
            };
            match e.event {
                QueueEventKind::Offer => row(&mut rows, agent).offered += 1,
                QueueEventKind::RingNoAnswer => row(&mut rows, agent).missed_offers += 1,
                _ => {}
            }
        }
    }
    let intervals = agent_intervals(input, until);
    let mut total = ReportRow {
        key: "total".into(),
        ..ReportRow::default()
    };
    for (agent, start, end, state) in &intervals {
        total.add_state(state, end - start);
        match o.by {
            GroupBy::Queue => {}
            GroupBy::Agent => row(&mut rows, agent).add_state(state, end - start),
            GroupBy::Hour | GroupBy::Day => {
                let mut t = *start;
                while t < *end {
                    let next = calendar.span(t, o.by).1.max(t + 1).min(*end);
                    if let Some(key) = bucket(t) {
                        row(&mut rows, &key).add_state(state, next - t);
                    }
                    t = next;
                }
            }
        }
    }
    let mut rows: Vec<ReportRow> = rows.into_values().collect();
    let per_queue = o.by != GroupBy::Agent;
    for r in &mut rows {
        total.merge(r);
        r.finish(per_queue, o.by != GroupBy::Queue);
    }
    total.finish(per_queue, true);
    Report {
        from: input.from,
        to: input.to,
        by: o.by,
        service_level_secs: o.service_level_secs,
        short_abandon_secs: o.short_abandon_secs,
        rows,
        total,
    }
}

/// The flat shape of a CSV line.
#[derive(serde::Serialize)]
struct CsvRow<'a> {
    key: &'a str,
    offered: u64,
    answered: u64,
    abandoned: u64,
    short_abandoned: u64,
    fallback: u64,
    answered_within_sl: u64,
    missed_offers: u64,
    transfers: u64,
    service_level: String,
    abandon_rate: String,
    asa_secs: String,
    aht_secs: String,
    occupancy: String,
    wait_ms: i64,
    talk_ms: i64,
    hold_ms: i64,
    wrapup_ms: i64,
    logged_in_ms: i64,
    ready_ms: i64,
    not_ready_ms: i64,
    /// `reason=ms;reason=ms`
    not_ready_by_reason: String,
}

fn fmt_opt(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.4}")).unwrap_or_default()
}

impl Report {
    /// CSV with a header line, one line per row and a last `total` line; ratios with four
    /// decimals, empty where undefined.
    pub fn write_csv<W: std::io::Write>(&self, out: W) -> Result<()> {
        let mut w = csv::Writer::from_writer(out);
        for r in self.rows.iter().chain(std::iter::once(&self.total)) {
            let reasons: Vec<String> = r
                .not_ready_by_reason
                .iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect();
            w.serialize(CsvRow {
                key: &r.key,
                offered: r.offered,
                answered: r.answered,
                abandoned: r.abandoned,
                short_abandoned: r.short_abandoned,
                fallback: r.fallback,
                answered_within_sl: r.answered_within_sl,
                missed_offers: r.missed_offers,
                transfers: r.transfers,
                service_level: fmt_opt(r.service_level),
                abandon_rate: fmt_opt(r.abandon_rate),
                asa_secs: fmt_opt(r.asa_secs),
                aht_secs: fmt_opt(r.aht_secs),
                occupancy: fmt_opt(r.occupancy),
                wait_ms: r.wait_ms,
                talk_ms: r.talk_ms,
                hold_ms: r.hold_ms,
                wrapup_ms: r.wrapup_ms,
                logged_in_ms: r.logged_in_ms,
                ready_ms: r.ready_ms,
                not_ready_ms: r.not_ready_ms,
                not_ready_by_reason: reasons.join(";"),
            })
            .map_err(|e| CdrError::Csv(e.to_string()))?;
        }
        w.flush().map_err(|e| CdrError::Csv(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::time::parse_time;

    fn berlin() -> Calendar {
        Calendar::zone(jiff::tz::TimeZone::get("Europe/Berlin").expect("tzdb"))
    }

    #[test]
    fn local_hours_and_days() {
        let t = parse_time("2026-11-23T14:05:09Z").unwrap();
        let c = berlin();
        assert_eq!(c.key(t, GroupBy::Hour), "2026-11-23T15:00+01:00");
        assert_eq!(
            c.span(t, GroupBy::Hour).0,
            parse_time("2026-11-23T14:00Z").unwrap()
        );
        // 23:30 UTC on the 22nd is already the 23rd in Berlin.
        let late = parse_time("2026-11-22T23:30Z").unwrap();
        assert_eq!(c.key(late, GroupBy::Day), "2026-11-23");
        assert_eq!(c.day_start(late), parse_time("2026-11-22T23:00Z").unwrap());
        // The day the clocks go back has 25 hours.
        let (s, e) = c.span(parse_time("2026-10-25T12:00Z").unwrap(), GroupBy::Day);
        assert_eq!(e - s, 25 * HOUR_MS);
        // UTC stays as before.
        assert_eq!(Calendar::utc().key(t, GroupBy::Hour), "2026-11-23T14:00Z");
        assert_eq!(
            Calendar::utc().span(t, GroupBy::Day).1 - Calendar::utc().span(t, GroupBy::Day).0,
            DAY_MS
        );
    }

    #[test]
    fn agent_time_splits_at_local_boundaries() {
        let at = |s: &str| parse_time(s).unwrap();
        let ev = |t: &str, kind| crate::QueueEvent {
            at: at(t),
            call_id: "NONE".into(),
            queue: "NONE".into(),
            agent: Some("A".into()),
            event: kind,
            data: String::new(),
        };
        let input = ReportInput {
            from: at("2026-11-22T00:00Z"),
            to: at("2026-11-24T00:00Z"),
            calls: Vec::new(),
            // Ready from 22:00 to 01:00 UTC: 23:00–02:00 in Berlin.
            events: vec![
                ev("2026-11-22T22:00Z", QueueEventKind::AgentReady),
                ev("2026-11-23T01:00Z", QueueEventKind::AgentLogout),
            ],
        };
        let o = ReportOptions {
            by: GroupBy::Day,
            service_level_secs: 20,
            short_abandon_secs: 5,
            now: at("2026-11-24T00:00Z"),
        };
        let local = build_in(&input, &o, &berlin());
        let ready: Vec<(&str, i64)> = local
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.ready_ms))
            .collect();
        assert_eq!(
            ready,
            [("2026-11-22", HOUR_MS), ("2026-11-23", 2 * HOUR_MS)]
        );
        let utc = build(&input, &o);
        let ready: Vec<(&str, i64)> = utc
            .rows
            .iter()
            .map(|r| (r.key.as_str(), r.ready_ms))
            .collect();
        assert_eq!(
            ready,
            [("2026-11-22", 2 * HOUR_MS), ("2026-11-23", HOUR_MS)]
        );
    }
}
