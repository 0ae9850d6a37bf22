//! `/api/reports/…` over HTTP against a known set of CDRs on SQLite and PostgreSQL:
//! figures per queue, hour, day and agent (worked out by hand below), CSV, the Bearer
//! token of a CTI login (401 without, 403 for agents), a supervisor limited to one queue,
//! and precise 400s for bad parameters.
//!
//! The day (2026-11-23, UTC), service level T = 20 s, short abandons < 5 s:
//! * c1 support 09:00:00, waited 10 s, answered by A, talk 120 s
//! * c2 support 09:30:00, waited 40 s, abandoned
//! * c3 sales   10:15:00, waited 5 s, answered by B, talk 60 s
//! * c4 support 10:45:00, waited 25 s, answered by A, talk 100 s
//! * c5 support 2026-11-24 08:00, outside the window

mod client;
#[macro_use]
#[path = "../../cdr/tests/common/mod.rs"]
mod common;
#[path = "../../../sip-tests/tests/http/mod.rs"]
mod http;

use std::net::SocketAddr;
use std::sync::OnceLock;

use client::{Desk, ORIGIN};
use common::TestDb;
use hotline_cdr::time::parse_time;
use hotline_cdr::{CallRecord, CallResult, CdrStore};
use hotline_cti::reports::ReportSource;
use hotline_cti::{CtiConfig, CtiServer, CtiUser, Role, Supervision};
use hotline_switch::{DeskConfig, SwitchHandle};
use serde_json::{Value, json};

const S: i64 = 1000;
const WINDOW: &str = "from=2026-11-23&to=2026-11-24";

fn hash() -> &'static str {
    static H: OnceLock<String> = OnceLock::new();
    H.get_or_init(|| hotline_cti::hash_password("s3cret").expect("hash"))
}

fn user(name: &str, role: Role, agent: Option<&str>, queues: &[&str]) -> CtiUser {
    CtiUser {
        name: name.into(),
        password_hash: hash().into(),
        role,
        agent: agent.map(str::to_string),
        queues: queues.iter().map(|q| q.to_string()).collect(),
    }
}

fn call(
    id: &str,
    queue: &str,
    at: &str,
    wait_s: i64,
    agent: Option<&str>,
    talk_s: i64,
) -> CallRecord {
    let arrived = parse_time(at).expect("time");
    let mut c = common::answered(id, arrived);
    c.route = format!("queue:{queue}");
    c.queue = Some(queue.into());
    c.agent = agent.map(Into::into);
    c.queued_at = Some(arrived);
    c.wait_ms = wait_s * S;
    c.talk_ms = talk_s * S;
    c.hold_ms = 0;
    c.transfers = 0;
    c.answered_at = agent.map(|_| arrived + wait_s * S);
    c.offered_at = c.answered_at;
    c.ended_at = arrived + (wait_s + talk_s) * S;
    if agent.is_none() {
        c.result = CallResult::Abandoned;
    }
    c
}

async fn seeded(db: &TestDb) -> CdrStore {
    let store = db.open().await;
    for c in [
        call("c1", "support", "2026-11-23T09:00:00Z", 10, Some("A"), 120),
        call("c2", "support", "2026-11-23T09:30:00Z", 40, None, 0),
        call("c3", "sales", "2026-11-23T10:15:00Z", 5, Some("B"), 60),
        call("c4", "support", "2026-11-23T10:45:00Z", 25, Some("A"), 100),
        call("c5", "support", "2026-11-24T08:00:00Z", 1, Some("A"), 10),
    ] {
        store.write_call(&c).await.expect("write call");
    }
    store
}

async fn start(reports: Option<CdrStore>) -> (CtiServer, SwitchHandle) {
    let acd = hotline_acd::AcdConfig::from_toml(
        "[[queue]]\nname = \"support\"\n[[queue]]\nname = \"sales\"\n\
         [[agent]]\nid = \"A\"\nqueues = { support = 0 }\n",
    )
    .expect("acd config");
    let mut cfg: CtiConfig = serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "allowed_origins": [ORIGIN],
    }))
    .expect("config");
    cfg.users = vec![
        user("ann", Role::Agent, Some("A"), &[]),
        user("sue", Role::Supervisor, None, &[]),
        user("sal", Role::Supervisor, None, &["sales"]),
        user("root", Role::Admin, None, &[]),
    ];
    cfg.supervision = Supervision {
        metrics: None,
        reports: reports.map(|store| ReportSource {
            store,
            service_level_secs: 20,
            short_abandon_secs: 5,
        }),
    };
    let switch = SwitchHandle::standalone(&acd, DeskConfig::default()).expect("switch");
    let server = CtiServer::start(cfg, switch.clone()).await.expect("cti");
    (server, switch)
}

async fn token(addr: SocketAddr, name: &str) -> String {
    let mut d = Desk::connect(addr, Some(ORIGIN)).await.expect("connect");
    let r = d.login(name, "s3cret").await;
    r["token"].as_str().expect("token").to_string()
}

async fn get(addr: SocketAddr, path: &str, token: &str) -> http::Reply {
    http::get(addr, path, &[format!("Authorization: Bearer {token}")])
        .await
        .expect("HTTP")
}

async fn json_ok(addr: SocketAddr, path: &str, token: &str) -> Value {
    let r = get(addr, path, token).await;
    assert_eq!(r.status, 200, "{path}: {}", r.body);
    assert!(
        r.header("content-type")
            .unwrap_or_default()
            .starts_with("application/json")
    );
    r.json().expect("JSON")
}

fn close(v: &Value, want: f64) -> bool {
    v.as_f64().is_some_and(|x| (x - want).abs() < 1e-9)
}

fn row<'a>(report: &'a Value, key: &str) -> &'a Value {
    report["rows"]
        .as_array()
        .and_then(|rows| rows.iter().find(|r| r["key"] == key))
        .unwrap_or_else(|| panic!("no row {key}: {report}"))
}

async fn figures(db: TestDb) {
    let store = seeded(&db).await;
    let (server, _) = start(Some(store.clone())).await;
    let addr = server.local_addr();
    let sue = token(addr, "sue").await;

    let q = json_ok(addr, &format!("/api/reports/queue?{WINDOW}"), &sue).await;
    assert_eq!(q["by"], "queue");
    assert_eq!(q["service_level_secs"], 20);
    let keys: Vec<&str> = q["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["sales", "support"]);
    // sales: c3 only — within SL (5 s ≤ 20 s): SL 1, ASA 5 s, AHT 60 s.
    let sales = row(&q, "sales");
    assert_eq!(
        (sales["offered"].as_u64(), sales["answered"].as_u64()),
        (Some(1), Some(1))
    );
    assert!(close(&sales["service_level"], 1.0) && close(&sales["asa_secs"], 5.0));
    assert!(close(&sales["aht_secs"], 60.0), "{sales}");
    // support: c1, c2, c4 — answered 2, abandoned 1, within SL 1 (c1):
    // SL = 1 / (2 + 1) = 1/3, abandonment 1/3, ASA (10 + 25) / 2 = 17.5 s,
    // AHT (120 + 100) / 2 = 110 s. c5 is outside the window.
    let support = row(&q, "support");
    assert_eq!(support["offered"], 3);
    assert_eq!(support["answered"], 2);
    assert_eq!(support["abandoned"], 1);
    assert_eq!(support["answered_within_sl"], 1);
    assert!(close(&support["service_level"], 1.0 / 3.0), "{support}");
    assert!(close(&support["abandon_rate"], 1.0 / 3.0));
    assert!(close(&support["asa_secs"], 17.5) && close(&support["aht_secs"], 110.0));
    // Total: offered 4, within 2 of (3 answered + 1 abandoned): SL 0.5, ASA 40/3 s.
    assert_eq!(q["total"]["offered"], 4);
    assert!(close(&q["total"]["service_level"], 0.5));
    assert!(close(&q["total"]["asa_secs"], 40.0 / 3.0));

    // A threshold of 30 s puts c4 (25 s) in service level: support 2/3.
    let q30 = json_ok(
        addr,
        &format!("/api/reports/queue?{WINDOW}&sl_secs=30"),
        &sue,
    )
    .await;
    assert!(close(&row(&q30, "support")["service_level"], 2.0 / 3.0));

    // Hours: 09:00Z has c1 and c2 (SL 1/2), 10:00Z has c3 and c4 (within: c3 only).
    let h = json_ok(addr, &format!("/api/reports/hour?{WINDOW}"), &sue).await;
    let nine = row(&h, "2026-11-23T09:00Z");
    assert_eq!(
        (nine["offered"].as_u64(), nine["abandoned"].as_u64()),
        (Some(2), Some(1))
    );
    assert!(close(&nine["service_level"], 0.5));
    let ten = row(&h, "2026-11-23T10:00Z");
    assert_eq!(
        (ten["offered"].as_u64(), ten["answered"].as_u64()),
        (Some(2), Some(2))
    );
    assert!(close(&ten["service_level"], 0.5));
    assert_eq!(h["rows"].as_array().unwrap().len(), 2);

    // In Berlin (UTC+1 in November) the same calls fall in the local hours 10:00 and 11:00.
    let hb = json_ok(
        addr,
        &format!("/api/reports/hour?{WINDOW}&tz=Europe%2FBerlin"),
        &sue,
    )
    .await;
    let keys: Vec<&str> = hb["rows"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys, ["2026-11-23T10:00+01:00", "2026-11-23T11:00+01:00"]);

    // Days: a two-day window has both days; the 24th holds c5.
    let d = json_ok(addr, "/api/reports/day?from=2026-11-23&to=2026-11-25", &sue).await;
    assert_eq!(row(&d, "2026-11-23")["offered"], 4);
    assert_eq!(row(&d, "2026-11-24")["offered"], 1);

    // Agents: A answered c1 and c4 (talk 220 s), B answered c3.
    let a = json_ok(addr, &format!("/api/reports/agent?{WINDOW}"), &sue).await;
    assert_eq!(row(&a, "A")["answered"], 2);
    assert_eq!(row(&a, "A")["talk_ms"], 220 * S);
    assert_eq!(row(&a, "B")["answered"], 1);

    // CSV: a header, the rows and the total.
    let csv = get(
        addr,
        &format!("/api/reports/queue?{WINDOW}&format=csv"),
        &sue,
    )
    .await;
    assert_eq!(csv.status, 200);
    assert!(
        csv.header("content-type")
            .unwrap_or_default()
            .starts_with("text/csv")
    );
    assert!(
        csv.header("content-disposition")
            .unwrap_or_default()
            .contains("report-queue.csv")
    );
    let lines: Vec<&str> = csv.body.lines().collect();
    assert_eq!(lines.len(), 4, "{}", csv.body);
    assert!(
        lines[0].starts_with("key,offered,answered,abandoned"),
        "{}",
        lines[0]
    );
    assert!(
        lines[2].starts_with("support,3,2,1,0,0,1,0,0,0.3333,0.3333,17.5000,110.0000,"),
        "{}",
        lines[2]
    );
    assert!(lines[3].starts_with("total,4,3,1,"));

    // A supervisor of sales sees sales' calls only; an admin sees everything.
    let sal = token(addr, "sal").await;
    let qs = json_ok(addr, &format!("/api/reports/queue?{WINDOW}"), &sal).await;
    assert_eq!(qs["rows"].as_array().unwrap().len(), 1);
    assert_eq!(qs["total"]["offered"], 1);
    let root = token(addr, "root").await;
    let qa = json_ok(addr, &format!("/api/reports/queue?{WINDOW}"), &root).await;
    assert_eq!(qa["total"]["offered"], 4);

    server.shutdown().await;
    store.close().await;
}

async fn refusals(db: TestDb) {
    let store = seeded(&db).await;
    let (server, _) = start(Some(store.clone())).await;
    let addr = server.local_addr();
    let path = format!("/api/reports/queue?{WINDOW}");

    let none = http::get(addr, &path, &[]).await.expect("HTTP");
    assert_eq!(none.status, 401);
    assert_eq!(none.header("www-authenticate"), Some("Bearer"));
    assert_eq!(none.json().unwrap()["error"], "unauthorized");
    for bad in ["Bearer nope", "Basic c3VlOnMzY3JldA==", "Bearer "] {
        let r = http::get(addr, &path, &[format!("Authorization: {bad}")])
            .await
            .unwrap();
        assert_eq!(r.status, 401, "{bad}");
    }
    let ann = token(addr, "ann").await;
    let r = get(addr, &path, &ann).await;
    assert_eq!(r.status, 403);
    assert_eq!(r.json().unwrap()["error"], "forbidden");

    let sue = token(addr, "sue").await;
    for (query, needle) in [
        ("from=yesterday", "from: invalid time"),
        ("from=2026-11-24&to=2026-11-23", "must be after"),
        ("from=2026-11-23&format=xml", "format"),
        ("from=2026-11-23&sl_secs=abc", "sl_secs"),
        ("from=2026-11-23&queue=x", "unknown parameter \\\"queue\\\""),
        ("from=2020-01-01&to=2026-01-01", "366 days"),
    ] {
        let r = get(addr, &format!("/api/reports/queue?{query}"), &sue).await;
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        let v = r.json().unwrap();
        assert_eq!(v["error"], "bad_request");
        assert!(r.body.contains(needle), "{query}: {}", r.body);
    }
    let r = get(addr, &format!("/api/reports/week?{WINDOW}"), &sue).await;
    assert_eq!(r.status, 404);
    assert!(r.body.contains("use queue, agent, hour or day"));
    server.shutdown().await;

    // Without a CDR store (url = "memory") the endpoint says so.
    let (server, _) = start(None).await;
    let sue = token(server.local_addr(), "sue").await;
    let r = get(server.local_addr(), &path, &sue).await;
    assert_eq!(r.status, 503);
    assert_eq!(r.json().unwrap()["error"], "unavailable");
    server.shutdown().await;
    store.close().await;
}

on_both_backends!(figures, refusals);
