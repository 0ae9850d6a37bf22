//! Report figures from a hand-built day, stored and read back on both backends. Every
//! expected figure is worked out by hand in the comments.

mod common;

use std::collections::BTreeMap;

use common::TestDb;
use hotline_cdr::report::{GroupBy, Report, ReportOptions, ReportRow, build};
use hotline_cdr::time::parse_time;
use hotline_cdr::{CallRecord, CallResult, CdrStore, HangupSide, QueueEvent, QueueEventKind};

const S: i64 = 1000;
const MIN: i64 = 60 * S;

fn at(hms: &str) -> i64 {
    parse_time(&format!("2026-11-23T{hms}Z")).unwrap()
}

/// A queue call: waits `wait` ms; answered by `agent` (talk/hold ms) or ending as `result`.
#[allow(clippy::too_many_arguments)]
fn call(
    id: &str,
    queue: Option<&str>,
    arrived: i64,
    wait: i64,
    agent: Option<&str>,
    talk: i64,
    hold: i64,
    result: CallResult,
) -> CallRecord {
    let answered_at = agent.map(|_| arrived + wait);
    CallRecord {
        call_id: id.into(),
        sip_call_id: format!("{id}@sipp"),
        direction: "inbound".into(),
        caller: "+4930555".into(),
        caller_name: None,
        dialed: "4000".into(),
        route: queue.map_or("extension:1002".into(), |q| format!("queue:{q}")),
        queue: queue.map(Into::into),
        agent: agent.map(Into::into),
        arrived_at: arrived,
        queued_at: queue.map(|_| arrived),
        offered_at: answered_at,
        answered_at,
        ended_at: arrived + wait + talk + hold,
        wait_ms: wait,
        talk_ms: talk,
        hold_ms: hold,
        result,
        hangup_side: HangupSide::Caller,
        sip_status: 200,
        recording: None,
        transfers: 0,
    }
}

fn ev(t: &str, call: &str, agent: &str, kind: QueueEventKind, data: &str) -> QueueEvent {
    QueueEvent {
        at: at(t),
        call_id: call.into(),
        queue: if call == "NONE" { "NONE" } else { "support" }.into(),
        agent: Some(agent.into()),
        event: kind,
        data: data.into(),
    }
}

/// The window is 09:00–11:00 UTC on 2026-11-23.
fn calls() -> Vec<CallRecord> {
    use CallResult::*;
    let mut c2 = call(
        "c2",
        Some("support"),
        at("09:10:00"),
        30 * S,
        Some("B"),
        200 * S,
        0,
        Transferred,
    );
    c2.transfers = 1;
    vec![
        // support: answered by A after 10 s; talk 120 s, hold 30 s; wrap-up 20 s.
        call(
            "c1",
            Some("support"),
            at("09:00:00"),
            10 * S,
            Some("A"),
            120 * S,
            30 * S,
            Answered,
        ),
        // support: answered by B after 30 s (outside the 20 s SL), talk 200 s, transferred;
        // its WRAPUP_END has no number: wrap-up = 09:14:00 − end 09:13:50 = 10 s.
        c2,
        // support: abandoned after 3 s — short (threshold 5 s).
        call(
            "c3",
            Some("support"),
            at("09:20:00"),
            3 * S,
            None,
            0,
            0,
            Abandoned,
        ),
        // support: abandoned after 40 s (A let it ring out first).
        call(
            "c4",
            Some("support"),
            at("09:30:00"),
            40 * S,
            None,
            0,
            0,
            Abandoned,
        ),
        // sales: answered by A after 5 s, talk 60 s; wrap-up 15 s logged at 11:05, after
        // the window.
        call(
            "c5",
            Some("sales"),
            at("10:05:00"),
            5 * S,
            Some("A"),
            60 * S,
            0,
            Answered,
        ),
        // sales: left to the fallback after 120 s.
        call(
            "c6",
            Some("sales"),
            at("10:15:00"),
            120 * S,
            None,
            0,
            0,
            Fallback,
        ),
        // Not a queue call: extension call answered by B at once, talk 50 s.
        call(
            "c7",
            None,
            at("10:30:00"),
            0,
            Some("B"),
            50 * S,
            0,
            Answered,
        ),
        // Outside the window (half-open 09:00 ≤ t < 11:00).
        call(
            "c8",
            Some("support"),
            at("11:00:00"),
            S,
            Some("A"),
            10 * S,
            0,
            Answered,
        ),
        call(
            "c9",
            Some("support"),
            at("08:59:00"),
            S,
            Some("A"),
            10 * S,
            0,
            Answered,
        ),
    ]
}

fn events() -> Vec<QueueEvent> {
    use QueueEventKind::*;
    vec![
        ev("08:00:00", "NONE", "A", AgentLogin, ""),
        ev("08:00:00", "NONE", "A", AgentReady, ""),
        ev("08:59:02", "c9", "A", Offer, ""),
        ev("09:00:05", "c1", "A", Offer, ""),
        ev("09:03:00", "c1", "A", WrapupEnd, "20000"),
        ev("09:05:00", "NONE", "B", AgentLogin, ""),
        ev("09:05:00", "NONE", "B", AgentReady, ""),
        ev("09:10:20", "c2", "B", Offer, ""),
        ev("09:14:00", "c2", "B", WrapupEnd, "n/a"),
        ev("09:30:20", "c4", "A", Offer, ""),
        ev("09:30:35", "c4", "A", RingNoAnswer, "15000"),
        ev("09:40:00", "NONE", "A", AgentNotReady, "lunch"),
        ev("10:00:00", "NONE", "A", AgentReady, ""),
        ev("10:05:02", "c5", "A", Offer, ""),
        ev("10:40:00", "NONE", "B", AgentNotReady, "training"),
        ev("10:50:00", "NONE", "A", AgentLogout, ""),
        ev("11:00:01", "c8", "A", Offer, ""),
        ev("11:05:00", "c5", "A", WrapupEnd, "15000"),
    ]
}

async fn report(store: &CdrStore, by: GroupBy, now: i64) -> Report {
    let input = store
        .report_input(at("09:00:00"), at("11:00:00"))
        .await
        .unwrap();
    build(
        &input,
        &ReportOptions {
            by,
            service_level_secs: 20,
            short_abandon_secs: 5,
            now,
        },
    )
}

fn close(a: Option<f64>, b: f64) -> bool {
    a.is_some_and(|a| (a - b).abs() < 1e-9)
}

fn reasons(list: &[(&str, i64)]) -> BTreeMap<String, i64> {
    list.iter().map(|(k, v)| (k.to_string(), *v)).collect()
}

fn assert_row(r: &ReportRow, counts: [u64; 8], ratios: [Option<f64>; 5]) {
    let got = [
        r.offered,
        r.answered,
        r.abandoned,
        r.short_abandoned,
        r.fallback,
        r.answered_within_sl,
        r.missed_offers,
        r.transfers,
    ];
    assert_eq!(got, counts, "counts of {}", r.key);
    let have = [
        r.service_level,
        r.abandon_rate,
        r.asa_secs,
        r.aht_secs,
        r.occupancy,
    ];
    for (i, (h, want)) in have.iter().zip(ratios).enumerate() {
        match want {
            None => assert_eq!(*h, None, "ratio {i} of {}", r.key),
            Some(w) => assert!(close(*h, w), "ratio {i} of {}: {h:?} != {w}", r.key),
        }
    }
}

async fn seeded(db: &TestDb) -> CdrStore {
    let store = db.open().await;
    for c in calls() {
        store.write_call(&c).await.unwrap();
    }
    store.write_events(&events()).await.unwrap();
    store
}

async fn per_queue(db: TestDb) {
    let store = seeded(&db).await;
    let r = report(&store, GroupBy::Queue, at("12:00:00")).await;
    let keys: Vec<&str> = r.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["sales", "support"]);
    // sales: offered 2 (c5, c6), answered 1, fallback 1, within SL 1 (5 s).
    // SL = 1 / (1 answered + 0 abandoned + 1 fallback) = 0.5; abandon rate 0 / 2 = 0;
    // ASA 5 s; AHT = (60 + 0 + 15) / 1 = 75 s. No occupancy for queues.
    assert_row(
        &r.rows[0],
        [2, 1, 0, 0, 1, 1, 0, 0],
        [Some(0.5), Some(0.0), Some(5.0), Some(75.0), None],
    );
    // support: offered 4 (c1–c4), answered 2, abandoned 1 (c4), short 1 (c3), within 1
    // (c1: 10 s; c2 waited 30 s). SL = 1 / (2 + 1 + 0) = 1/3; abandon rate = 1 / (4 − 1)
    // = 1/3; ASA = (10 + 30) / 2 = 20 s; AHT = ((120+30+20) + (200+0+10)) / 2 = 190 s;
    // transfers 1.
    assert_row(
        &r.rows[1],
        [4, 2, 1, 1, 0, 1, 0, 1],
        [
            Some(1.0 / 3.0),
            Some(1.0 / 3.0),
            Some(20.0),
            Some(190.0),
            None,
        ],
    );
    assert_eq!(r.rows[1].wrapup_ms, 30 * S);
    // Total: offered 6, answered 3, within 2: SL = 2 / (3 + 1 + 1) = 0.4, abandon rate
    // 1 / 5 = 0.2, ASA = 45 / 3 = 15 s, AHT = (170 + 210 + 75) / 3 s; occupancy = 455 s /
    // ready time of A and B (5 400 s... see per_agent: 5 400 000 + 5 700 000 ms).
    assert_row(
        &r.total,
        [6, 3, 1, 1, 1, 2, 0, 1],
        [
            Some(0.4),
            Some(0.2),
            Some(15.0),
            Some(455.0 / 3.0),
            Some(455_000.0 / 11_100_000.0),
        ],
    );
    store.close().await;
}

async fn per_agent(db: TestDb) {
    let store = seeded(&db).await;
    let r = report(&store, GroupBy::Agent, at("12:00:00")).await;
    let keys: Vec<&str> = r.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["A", "B"]);
    let (a, b) = (&r.rows[0], &r.rows[1]);
    // A: offers at 09:00:05, 09:30:20, 10:05:02 = 3 (08:59:02 and 11:00:01 are outside);
    // one rang out; answered c1 and c5: ASA (10 + 5) / 2 = 7.5 s; handle = (120+30+20) +
    // (60+0+15) = 245 s, AHT 122.5 s. Ready 09:00–09:40 (state READY since 08:00) and
    // 10:00–10:50 = 40 + 50 min = 5 400 000 ms; lunch 09:40–10:00 = 1 200 000 ms.
    // Occupancy = 245 000 / 5 400 000.
    assert_row(
        a,
        [3, 2, 0, 0, 0, 2, 1, 0],
        [
            None,
            None,
            Some(7.5),
            Some(122.5),
            Some(245_000.0 / 5_400_000.0),
        ],
    );
    assert_eq!(
        (a.logged_in_ms, a.ready_ms, a.not_ready_ms),
        (110 * MIN, 90 * MIN, 20 * MIN)
    );
    assert_eq!(a.not_ready_by_reason, reasons(&[("lunch", 20 * MIN)]));
    // B: one offer (c2); answered c2 (queue) and c7 (extension): ASA (30 + 0) / 2 = 15 s;
    // handle (200+0+10) + (50) = 260 s, AHT 130 s. Logged in 09:05 (ready at once) to the
    // window's end: ready 09:05–10:40 = 95 min, training 10:40–11:00 = 20 min. Within the
    // 20 s threshold: c7 only (c2 waited 30 s).
    assert_row(
        b,
        [1, 2, 0, 0, 0, 1, 0, 1],
        [
            None,
            None,
            Some(15.0),
            Some(130.0),
            Some(260_000.0 / 5_700_000.0),
        ],
    );
    assert_eq!(
        (b.logged_in_ms, b.ready_ms, b.not_ready_ms),
        (115 * MIN, 95 * MIN, 20 * MIN)
    );
    assert_eq!(b.not_ready_by_reason, reasons(&[("training", 20 * MIN)]));

    // A report taken at 10:00 counts open states only up to then: A ready 09:00–09:40,
    // lunch 09:40–10:00; B ready 09:05–10:00.
    let early = report(&store, GroupBy::Agent, at("10:00:00")).await;
    assert_eq!(early.rows[0].ready_ms, 40 * MIN);
    assert_eq!(early.rows[0].not_ready_ms, 20 * MIN);
    assert_eq!(early.rows[1].ready_ms, 55 * MIN);
    store.close().await;
}

async fn per_hour_and_day(db: TestDb) {
    let store = seeded(&db).await;
    let r = report(&store, GroupBy::Hour, at("12:00:00")).await;
    let keys: Vec<&str> = r.rows.iter().map(|r| r.key.as_str()).collect();
    assert_eq!(keys, ["2026-11-23T09:00Z", "2026-11-23T10:00Z"]);
    // 09h: the support calls c1–c4 (see per_queue); agent time 09:00–10:00: A ready 40 min
    // + lunch 20 min, B ready 55 min → ready 95 min; occupancy = 380 s / 5 700 s.
    let (h9, h10) = (&r.rows[0], &r.rows[1]);
    assert_row(
        h9,
        [4, 2, 1, 1, 0, 1, 0, 1],
        [
            Some(1.0 / 3.0),
            Some(1.0 / 3.0),
            Some(20.0),
            Some(190.0),
            Some(380.0 / 5_700.0),
        ],
    );
    assert_eq!((h9.logged_in_ms, h9.ready_ms), (115 * MIN, 95 * MIN));
    // 10h: c5 and c6 (c7 is no queue call); A ready 10:00–10:50, B ready 10:00–10:40 and
    // training 10:40–11:00 → ready 90 min; occupancy = 75 s / 5 400 s.
    assert_row(
        h10,
        [2, 1, 0, 0, 1, 1, 0, 0],
        [
            Some(0.5),
            Some(0.0),
            Some(5.0),
            Some(75.0),
            Some(75.0 / 5_400.0),
        ],
    );
    assert_eq!(h10.not_ready_by_reason, reasons(&[("training", 20 * MIN)]));

    let d = report(&store, GroupBy::Day, at("12:00:00")).await;
    assert_eq!(d.rows.len(), 1);
    assert_eq!(d.rows[0].key, "2026-11-23");
    // The day is the total of the queue report.
    assert_row(
        &d.rows[0],
        [6, 3, 1, 1, 1, 2, 0, 1],
        [
            Some(0.4),
            Some(0.2),
            Some(15.0),
            Some(455.0 / 3.0),
            Some(455_000.0 / 11_100_000.0),
        ],
    );
    assert_eq!(
        d.rows[0].not_ready_by_reason,
        reasons(&[("lunch", 20 * MIN), ("training", 20 * MIN)])
    );
    store.close().await;
}

async fn csv_export(db: TestDb) {
    let store = seeded(&db).await;
    let r = report(&store, GroupBy::Queue, at("12:00:00")).await;
    let mut out = Vec::new();
    r.write_csv(&mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 4, "{text}");
    assert!(lines[0].starts_with("key,offered,answered,abandoned,short_abandoned,"));
    assert!(lines[2].starts_with("support,4,2,1,1,0,1,0,1,0.3333,0.3333,20.0000,190.0000,,"));
    assert!(lines[3].starts_with("total,6,3,"), "{}", lines[3]);
    assert!(
        lines[3].ends_with("lunch=1200000;training=1200000"),
        "{}",
        lines[3]
    );
    // And JSON round-trips.
    let json = serde_json::to_string(&r).unwrap();
    let back: Report = serde_json::from_str(&json).unwrap();
    assert_eq!(back, r);
    store.close().await;
}

on_both_backends!(per_queue, per_agent, per_hour_and_day, csv_export);

#[test]
fn grouping_names() {
    assert_eq!("hour".parse::<GroupBy>().unwrap(), GroupBy::Hour);
    assert!("week".parse::<GroupBy>().is_err());
}
