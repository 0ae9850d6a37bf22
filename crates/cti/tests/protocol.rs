//! The CTI server against a real WebSocket client, the real ACD task and the CRM store on
//! SQLite and PostgreSQL: origin checks, login, roles, bad frames, agent states with
//! versions, resume after a dropped socket, audited customer access.

mod client;
#[path = "../../crm/tests/common/mod.rs"]
mod common;

use std::sync::OnceLock;

use client::{Desk, ORIGIN};
use hotline_crm::{CustomerData, Store, Tier};
use hotline_cti::{CtiConfig, CtiServer, CtiUser, Role};
use hotline_switch::{DeskConfig, SwitchHandle};
use serde_json::json;
use tokio_tungstenite::tungstenite::Message;

/// Hashing is slow by design: once per test binary.
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

fn config() -> CtiConfig {
    let mut cfg: CtiConfig = toml_cfg();
    cfg.users = vec![
        user("bob", Role::Agent, Some("bob"), &[]),
        user("carol", Role::Agent, Some("carol"), &[]),
        user("sue", Role::Supervisor, None, &["support"]),
    ];
    cfg
}

fn toml_cfg() -> CtiConfig {
    serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "allowed_origins": [ORIGIN],
        "heartbeat_secs": 5,
    }))
    .expect("config")
}

async fn start(store: Option<Store>) -> (CtiServer, SwitchHandle) {
    let acd = hotline_acd::AcdConfig::from_toml(
        "[[queue]]\nname = \"support\"\n[[agent]]\nid = \"bob\"\nqueues = { support = 0 }\n\
         [[agent]]\nid = \"carol\"\nqueues = { support = 0 }\n",
    )
    .expect("acd config");
    let cfg = config();
    let desk = DeskConfig {
        store,
        desk_login: cfg.desk_agents(),
        ..DeskConfig::default()
    };
    let switch = SwitchHandle::standalone(&acd, desk).expect("switch");
    let server = CtiServer::start(cfg, switch.clone()).await.expect("cti");
    (server, switch)
}

#[tokio::test]
async fn upgrade_checks_the_origin() {
    let (server, _) = start(None).await;
    let addr = server.local_addr();
    for bad in [Some("http://evil.test"), None] {
        match Desk::connect(addr, bad).await {
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => {
                assert_eq!(resp.status(), 403, "{bad:?}")
            }
            Err(e) => panic!("{bad:?}: expected 403, got {e}"),
            Ok(_) => panic!("{bad:?}: upgrade accepted"),
        }
    }
    let desk = Desk::connect(addr, Some(ORIGIN))
        .await
        .expect("allowed origin");
    desk.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn login_is_required_and_failures_do_not_tell_users_apart() {
    let (server, _) = start(None).await;
    let mut d = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    d.fails(json!({"type": "agent.ready"}), "unauthenticated")
        .await;
    let wrong = d
        .fails(
            json!({"type": "auth.login", "user": "bob", "password": "nope"}),
            "auth_failed",
        )
        .await;
    let unknown = d
        .fails(
            json!({"type": "auth.login", "user": "mallory", "password": "s3cret"}),
            "auth_failed",
        )
        .await;
    assert_eq!(wrong["message"], unknown["message"]);
    d.fails(
        json!({"type": "auth.resume", "token": "00"}),
        "token_invalid",
    )
    .await;
    let s = d.login("bob", "s3cret").await;
    assert_eq!(s["role"], "agent");
    assert_eq!(s["token"].as_str().map(str::len), Some(64));
    assert!(s["expires_at"].as_i64().unwrap() > 0);
    d.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn bad_frames_get_error_frames_and_the_session_stays() {
    let (server, _) = start(None).await;
    let mut d = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    d.login("bob", "s3cret").await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::text("not json"), "bad_frame"),
        (Message::text("[1,2]"), "bad_frame"),
        (Message::text(r#"{"type":"agent.ready"}"#), "bad_frame"),
        (
            Message::text(r#"{"v":2,"type":"agent.ready","id":"x"}"#),
            "unsupported_version",
        ),
        (
            Message::text(r#"{"v":1,"type":"agent.fly","id":"x"}"#),
            "unknown_type",
        ),
        (
            Message::text(r#"{"v":1,"type":"agent.not_ready","id":"x"}"#),
            "bad_request",
        ),
        (
            Message::text(r#"{"v":1,"type":"call.dtmf","call_id":"c","digits":"12x"}"#),
            "bad_request",
        ),
        (Message::binary(vec![0u8, 1, 2]), "bad_frame"),
        (
            Message::text(format!(
                "{{\"v\":1,\"type\":\"ping\",\"pad\":\"{}\"}}",
                "x".repeat(70_000)
            )),
            "frame_too_large",
        ),
    ];
    for (m, code) in cases {
        d.send_raw(m.clone()).await;
        let f = d.frame().await;
        assert_eq!(f["type"], "error", "{m:?} → {f}");
        assert_eq!(f["code"], code, "{m:?} → {f}");
    }
    // Same socket, same session: still logged in.
    let s = d.ok(json!({"type": "agent.ready"})).await;
    assert_eq!(s["state"], "ready");
    d.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn agent_states_carry_growing_versions_and_resume_restores_them() {
    let (server, switch) = start(None).await;
    let mut d = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    let s = d.login("bob", "s3cret").await;
    assert_eq!(
        s["agent_state"]["state"], "logged_out",
        "desk agents start logged out: {s}"
    );
    let v0 = s["agent_state"]["version"].as_u64().unwrap();
    let token = s["token"].as_str().unwrap().to_string();
    let ready = d.ok(json!({"type": "agent.ready"})).await;
    let v1 = ready["version"].as_u64().unwrap();
    assert!(v1 > v0);
    let (_, ev) = d.event("agent.state").await;
    assert_eq!(
        ev["data"]["version"].as_u64(),
        Some(v1),
        "event and reply agree: {ev}"
    );
    let nr = d
        .ok(json!({"type": "agent.not_ready", "reason": "break"}))
        .await;
    assert_eq!(nr["state"], "not_ready");
    assert_eq!(nr["reason"], "break");
    let v2 = nr["version"].as_u64().unwrap();
    assert!(v2 > v1);
    d.fails(
        json!({"type": "agent.not_ready", "reason": ""}),
        "invalid_state",
    )
    .await;
    // The socket drops; the ACD keeps the state; a new socket resumes with the token.
    drop(d);
    let mut d = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    let r = d.ok(json!({"type": "auth.resume", "token": token})).await;
    assert_eq!(r["agent_state"]["state"], "not_ready");
    assert_eq!(r["agent_state"]["reason"], "break");
    assert_eq!(r["agent_state"]["version"].as_u64(), Some(v2));
    // The ACD's view matches the desk's.
    let acd = switch.agents().await.unwrap();
    let bob = acd.iter().find(|a| a.agent == "bob").unwrap();
    assert_eq!(bob.version, v2);
    let out = d.ok(json!({"type": "agent.logout"})).await;
    assert_eq!(out["state"], "logged_out");
    d.close().await;
    server.shutdown().await;
}

/// The login/resume reply carries what the page would otherwise hard-code: the word lists
/// (the admin service's current ones) and, for agents, the in-page phone's settings;
/// a disposition or not-ready reason outside its list is refused with an error frame.
#[tokio::test]
async fn login_carries_the_lists_and_phone_and_words_are_checked() {
    use hotline_cti::admin::{AdminHandle, AdminOp, WordList};
    let acd = hotline_acd::AcdConfig::from_toml(
        "[[queue]]\nname = \"support\"\n[[agent]]\nid = \"bob\"\nqueues = { support = 0 }\n\
         [[agent]]\nid = \"carol\"\nqueues = { support = 0 }\n",
    )
    .expect("acd config");
    let mut cfg = config();
    // As loaded at start; the admin service's lists (below) win.
    cfg.desk.dispositions = vec!["stale".into()];
    cfg.desk.phone_ws_url = Some("wss://pbx.test:8089".into());
    cfg.desk.phone_domain = "pbx.test".into();
    cfg.desk
        .sip_passwords
        .0
        .insert("bob".into(), "bob-sip".into());
    let desk = DeskConfig {
        desk_login: cfg.desk_agents(),
        ..DeskConfig::default()
    };
    let switch = SwitchHandle::standalone(&acd, desk).expect("switch");
    let (admin, mut rx) = AdminHandle::channel(4);
    tokio::spawn(async move {
        while let Some(req) = rx.recv().await {
            let words = match req.op {
                AdminOp::GetWords(WordList::Dispositions) => json!(["resolved", "sale"]),
                AdminOp::GetWords(WordList::NotReadyReasons) => json!(["break", "lunch"]),
                _ => json!(null),
            };
            let _ = req.reply.send(Ok(words));
        }
    });
    let server = CtiServer::start_with_admin(cfg, switch, Some(admin))
        .await
        .expect("cti");
    let mut d = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    let s = d.login("bob", "s3cret").await;
    assert_eq!(s["dispositions"], json!(["resolved", "sale"]), "{s}");
    assert_eq!(s["not_ready_reasons"], json!(["break", "lunch"]), "{s}");
    assert_eq!(
        s["phone"],
        json!({"ws_url": "wss://pbx.test:8089", "domain": "pbx.test", "user": "bob", "password": "bob-sip"})
    );
    let token = s["token"].as_str().unwrap().to_string();
    let e = d
        .fails(
            json!({"type": "call.disposition", "call_id": "c1", "code": "stale"}),
            "unknown_disposition",
        )
        .await;
    assert!(
        e["message"].as_str().unwrap().contains("resolved, sale"),
        "{e}"
    );
    // A listed code passes the check (and then meets the switch: no such call).
    let e = d
        .request(json!({"type": "call.disposition", "call_id": "c1", "code": "sale"}))
        .await;
    assert_ne!(e["code"], "unknown_disposition", "{e}");
    // Not-ready reasons likewise: an unlisted one is refused, a listed one taken.
    for kind in ["agent.not_ready", "agent.not_ready_after_call"] {
        let e = d
            .fails(json!({"type": kind, "reason": "nap"}), "unknown_reason")
            .await;
        assert!(
            e["message"].as_str().unwrap().contains("break, lunch"),
            "{e}"
        );
    }
    let nr = d
        .ok(json!({"type": "agent.not_ready", "reason": "lunch"}))
        .await;
    assert_eq!(nr["reason"], "lunch", "{nr}");
    // Resume carries them too; carol has no SIP account, so no phone.
    drop(d);
    let mut d = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    let r = d.ok(json!({"type": "auth.resume", "token": token})).await;
    assert_eq!(r["phone"]["user"], "bob", "{r}");
    assert_eq!(r["dispositions"], json!(["resolved", "sale"]), "{r}");
    let mut c = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    let s = c.login("carol", "s3cret").await;
    assert_eq!(s["phone"], json!(null), "{s}");
    d.close().await;
    c.close().await;
    server.shutdown().await;
}

#[tokio::test]
async fn roles_limit_what_each_user_may_do() {
    let (server, _) = start(None).await;
    let mut agent = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    agent.login("bob", "s3cret").await;
    agent
        .fails(json!({"type": "agents.snapshot"}), "forbidden")
        .await;
    agent
        .fails(json!({"type": "queue.stats"}), "forbidden")
        .await;
    agent
        .fails(
            json!({"type": "call.hangup", "call_id": "someone-elses"}),
            "forbidden",
        )
        .await;
    let mut sup = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    sup.login("sue", "s3cret").await;
    let all = sup.ok(json!({"type": "agents.snapshot"})).await;
    assert_eq!(all["agents"].as_array().map(Vec::len), Some(2));
    let q = sup.ok(json!({"type": "queue.stats"})).await;
    assert_eq!(q["queues"][0]["queue"], "support");
    sup.fails(json!({"type": "agent.ready"}), "forbidden").await;
    // The supervisor sees agents' state changes.
    agent.ok(json!({"type": "agent.ready"})).await;
    let (_, ev) = sup.event("agent.state").await;
    assert_eq!(ev["data"]["agent"], "bob");
    agent.close().await;
    sup.close().await;
    server.shutdown().await;
}

/// A desk that stops answering the server's pings is closed after three intervals.
#[tokio::test]
async fn silent_desks_are_closed_by_the_heartbeat() {
    let acd =
        hotline_acd::AcdConfig::from_toml("[[queue]]\nname = \"support\"\n").expect("acd config");
    let switch = SwitchHandle::standalone(&acd, DeskConfig::default()).expect("switch");
    let mut cfg = config();
    cfg.heartbeat_secs = 1;
    let server = CtiServer::start(cfg, switch).await.expect("cti");
    let (mut ws, _) = {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = format!("ws://{}/cti", server.local_addr())
            .into_client_request()
            .unwrap();
        req.headers_mut().insert("Origin", ORIGIN.parse().unwrap());
        tokio_tungstenite::connect_async(req).await.unwrap()
    };
    // The silent socket sees pings, never answers, and is closed.
    use futures_util::StreamExt;
    let closed = tokio::time::timeout(std::time::Duration::from_secs(10), async {
        let mut pings = 0;
        while let Some(Ok(m)) = ws.next().await {
            match m {
                Message::Text(t) if t.as_str().contains("\"ping\"") => pings += 1,
                Message::Close(frame) => return (pings, frame.map(|f| f.reason.to_string())),
                _ => {}
            }
        }
        (pings, None)
    })
    .await
    .expect("closed within 10 s");
    assert!(closed.0 >= 2, "pings before the close: {closed:?}");
    assert_eq!(closed.1.as_deref(), Some("heartbeat timeout"));
    server.shutdown().await;
}

/// Customer records: agents only reach customers of calls offered to them, searching is
/// for roles that may; every access, allowed or denied, is in the audit log.
async fn customer_access_is_authorised_and_audited(store: Store) {
    let id = store
        .create_customer(
            &CustomerData {
                surname: "Weber".into(),
                tier: Tier::Vip,
                ..CustomerData::default()
            },
            &["+49301234567"],
        )
        .await
        .unwrap();
    let (server, _) = start(Some(store.clone())).await;
    let mut bob = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    bob.login("bob", "s3cret").await;
    bob.fails(
        json!({"type": "customer.get", "customer_id": id}),
        "forbidden",
    )
    .await;
    bob.fails(
        json!({"type": "customer.search", "query": "weber"}),
        "forbidden",
    )
    .await;
    bob.fails(
        json!({"type": "customer.update", "customer_id": id, "data": {"surname": "X", "tier": "public", "custom_fields": {}}}),
        "forbidden",
    )
    .await;
    let mut sue = Desk::connect(server.local_addr(), Some(ORIGIN))
        .await
        .unwrap();
    sue.login("sue", "s3cret").await;
    let hits = sue
        .ok(json!({"type": "customer.search", "query": "weber"}))
        .await;
    assert_eq!(hits["customers"][0]["id"], id);
    // No call of sue's queues offered this customer: out of her reach too.
    sue.fails(
        json!({"type": "customer.get", "customer_id": id}),
        "forbidden",
    )
    .await;
    // Audits are written off the request path: wait for them.
    let log = wait_for_audit(&store, Some(id), 3).await;
    assert!(log.iter().all(|e| !e.allowed), "{log:?}");
    assert!(log.iter().any(|e| e.actor == "bob" && e.action == "read"));
    assert!(log.iter().any(|e| e.actor == "sue" && e.action == "read"));
    let all = wait_for_audit(&store, None, 5).await;
    assert!(
        all.iter()
            .any(|e| e.actor == "sue" && e.action == "search" && e.allowed)
    );
    assert!(
        all.iter()
            .any(|e| e.actor == "bob" && e.action == "search" && !e.allowed)
    );
    bob.close().await;
    sue.close().await;
    server.shutdown().await;
}

async fn wait_for_audit(store: &Store, id: Option<i64>, n: usize) -> Vec<hotline_crm::AuditEntry> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let log = store.audit_log(id, 100).await.unwrap();
        if log.len() >= n || tokio::time::Instant::now() > deadline {
            assert!(log.len() >= n, "audit entries: {log:?}");
            return log;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
}

on_both_backends!(customer_access_is_authorised_and_audited);
