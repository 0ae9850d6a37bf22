//! The floor view's supervisor actions, `POST /api/floor/{agent}/{action}`, against the
//! real ACD task: a supervisor forces an agent not ready and logs them out (the agent's
//! desk gets the `agent.state` events), with 401/403/400/404/409 for what is not allowed.
//! Also the supervisor pages and their config are served.

mod client;
#[path = "../../../sip-tests/tests/http/mod.rs"]
mod http;

use std::net::SocketAddr;
use std::sync::OnceLock;

use client::{Desk, ORIGIN};
use hotline_cti::{CtiConfig, CtiServer, CtiUser, Role};
use hotline_switch::{DeskConfig, SwitchHandle};
use serde_json::json;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

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

async fn start() -> CtiServer {
    let acd = hotline_acd::AcdConfig::from_toml(
        "[[queue]]\nname = \"support\"\n[[agent]]\nid = \"bob\"\nqueues = { support = 0 }\n",
    )
    .expect("acd config");
    let mut cfg: CtiConfig = serde_json::from_value(json!({
        "listen": "127.0.0.1:0",
        "allowed_origins": [ORIGIN],
        "wall": {"waiting_warn": 2, "waiting_alarm": 4},
    }))
    .expect("config");
    cfg.users = vec![
        user("bob", Role::Agent, Some("bob"), &[]),
        user("sue", Role::Supervisor, None, &[]),
        user("sal", Role::Supervisor, None, &["sales"]),
    ];
    let desk = DeskConfig {
        desk_login: cfg.desk_agents(),
        ..DeskConfig::default()
    };
    let switch = SwitchHandle::standalone(&acd, desk).expect("switch");
    CtiServer::start(cfg, switch).await.expect("cti")
}

/// `POST path` with a Bearer token and a body; (status, JSON body).
async fn post(addr: SocketAddr, path: &str, token: &str, body: &str) -> (u16, serde_json::Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAuthorization: Bearer {token}\r\n\
         Content-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).await.expect("write");
    let mut raw = String::new();
    s.read_to_string(&mut raw).await.expect("read");
    let status = raw
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status");
    let body = raw.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
    (
        status,
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// The next `agent.state` event with `state` (earlier ones are skipped; bounded by the
/// client's 10 s frame timeout).
async fn state_event(desk: &mut Desk, state: &str) -> serde_json::Value {
    loop {
        let (_, ev) = desk.event("agent.state").await;
        if ev["data"]["state"] == state {
            return ev["data"].clone();
        }
    }
}

async fn token(addr: SocketAddr, desk: &mut Desk, name: &str) -> String {
    let _ = addr;
    desk.login(name, "s3cret").await["token"]
        .as_str()
        .expect("token")
        .to_string()
}

#[tokio::test]
async fn supervisors_force_agents_not_ready_and_out() {
    let server = start().await;
    let addr = server.local_addr();
    let mut bob = Desk::connect(addr, Some(ORIGIN)).await.expect("bob");
    let bob_token = token(addr, &mut bob, "bob").await;
    bob.ok(json!({"type": "agent.ready"})).await;
    let mut sup = Desk::connect(addr, Some(ORIGIN)).await.expect("sue");
    let sue = token(addr, &mut sup, "sue").await;

    let (status, state) = post(
        addr,
        "/api/floor/bob/not_ready",
        &sue,
        r#"{"reason":"coaching"}"#,
    )
    .await;
    assert_eq!(status, 200, "{state}");
    assert_eq!(
        (state["state"].as_str(), state["reason"].as_str()),
        (Some("not_ready"), Some("coaching"))
    );
    let ev = state_event(&mut bob, "not_ready").await;
    assert_eq!(ev["version"], state["version"]);
    assert_eq!(ev["reason"], "coaching");

    // No body: the reason is "supervisor".
    let (status, state) = post(addr, "/api/floor/bob/not_ready", &sue, "").await;
    assert_eq!(
        (status, state["reason"].as_str()),
        (200, Some("supervisor"))
    );

    let (status, state) = post(addr, "/api/floor/bob/logout", &sue, "").await;
    assert_eq!((status, state["state"].as_str()), (200, Some("logged_out")));
    state_event(&mut bob, "logged_out").await;
    // Logging out twice is harmless: the agent stays logged out.
    let (status, again) = post(addr, "/api/floor/bob/logout", &sue, "").await;
    assert_eq!(
        (status, again["state"].as_str()),
        (200, Some("logged_out")),
        "{again}"
    );
    // Forcing "not ready" must not log an absent agent in.
    let (status, err) = post(addr, "/api/floor/bob/not_ready", &sue, "").await;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("invalid_state")),
        "{err}"
    );

    for (path, tok, body, want, code) in [
        (
            "/api/floor/bob/not_ready",
            bob_token.as_str(),
            "",
            403,
            "forbidden",
        ),
        ("/api/floor/bob/not_ready", "nope", "", 401, "unauthorized"),
        (
            "/api/floor/nobody/not_ready",
            sue.as_str(),
            "",
            404,
            "not_found",
        ),
        ("/api/floor/bob/dance", sue.as_str(), "", 404, "not_found"),
        (
            "/api/floor/bob/not_ready",
            sue.as_str(),
            "{bad",
            400,
            "bad_request",
        ),
        (
            "/api/floor/bob/not_ready",
            sue.as_str(),
            r#"{"why":"x"}"#,
            400,
            "bad_request",
        ),
        (
            "/api/floor/bob/logout",
            sue.as_str(),
            r#"{"reason":"x"}"#,
            400,
            "bad_request",
        ),
    ] {
        let (status, err) = post(addr, path, tok, body).await;
        assert_eq!(
            (status, err["error"].as_str()),
            (want, Some(code)),
            "{path} {body}: {err}"
        );
    }
    // A reason the ACD refuses (over 40 bytes) is its precise error.
    bob.ok(json!({"type": "agent.ready"})).await;
    let long = format!(r#"{{"reason":"{}"}}"#, "x".repeat(41));
    let (status, err) = post(addr, "/api/floor/bob/not_ready", &sue, &long).await;
    assert_eq!(
        (status, err["error"].as_str()),
        (409, Some("invalid_state")),
        "{err}"
    );
    // A supervisor limited to some queues may not force agents.
    let mut sal_desk = Desk::connect(addr, Some(ORIGIN)).await.expect("sal");
    let sal = token(addr, &mut sal_desk, "sal").await;
    let (status, _) = post(addr, "/api/floor/bob/not_ready", &sal, "").await;
    assert_eq!(status, 403);
    server.shutdown().await;
}

#[tokio::test]
async fn pages_and_thresholds_are_served() {
    let server = start().await;
    let addr = server.local_addr();
    for (path, ct, needle) in [
        ("/wall", "text/html", "Hotline wallboard"),
        ("/reports", "text/html", "Hotline reports"),
        ("/wall/common.js", "text/javascript", "const Hotline"),
        ("/wall/wall.js", "text/javascript", "queue.stats"),
        ("/wall/reports.js", "text/javascript", "downloadCsv"),
        ("/wall/style.css", "text/css", "--alarm"),
    ] {
        let r = http::get(addr, path, &[]).await.expect("GET");
        assert_eq!(r.status, 200, "{path}");
        assert!(
            r.header("content-type").unwrap_or_default().starts_with(ct),
            "{path}"
        );
        assert!(r.body.contains(needle), "{path}");
        // Like the desk's and the admin page's files: a strict CSP, and an ETag that a
        // browser's revalidation turns into a 304.
        let csp = r.header("content-security-policy").unwrap_or_default();
        assert!(csp.contains("script-src 'self'"), "{path}: {csp}");
        let etag = r.header("etag").unwrap_or_default();
        assert!(etag.starts_with('"'), "{path}: ETag {etag:?}");
        let again = http::get(addr, path, &[format!("If-None-Match: {etag}")])
            .await
            .expect("GET");
        assert_eq!(again.status, 304, "{path}");
    }
    let cfg = http::get(addr, "/wall/config.json", &[])
        .await
        .expect("GET")
        .json()
        .expect("JSON");
    assert_eq!(
        (cfg["waiting_warn"].as_u64(), cfg["waiting_alarm"].as_u64()),
        (Some(2), Some(4))
    );
    assert_eq!(cfg["service_level_warn"], 0.8);
    // Without a recorder, /metrics says so.
    assert_eq!(
        http::get(addr, "/metrics", &[]).await.expect("GET").status,
        404
    );
    server.shutdown().await;
}
