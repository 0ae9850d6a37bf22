//! The admin REST API of a running Hotline (`/api/…` on the CTI server): every resource
//! valid, invalid and unauthorised; versions, diff, rollback and the audit log; the
//! OpenAPI document. Each change is checked on disk (the file stays the source).

use std::path::{Path, PathBuf};

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const ADMIN_PW: &str = "admin-secret";
const AGENT_PW: &str = "agent-secret";

struct Api {
    addr: std::net::SocketAddr,
    token: String,
}

/// One HTTP/1.1 request over a fresh connection; status and JSON body (Null if none).
async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: &[u8],
) -> (u16, Value) {
    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes()).await.unwrap();
    s.write_all(body).await.unwrap();
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.unwrap();
    let text = String::from_utf8_lossy(&out);
    let status: u16 = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .expect("status line");
    let (headers, body) = text.split_once("\r\n\r\n").unwrap_or((&text, ""));
    // Bodies are small; axum answers with Content-Length (no chunking) here.
    assert!(
        !headers
            .to_ascii_lowercase()
            .contains("transfer-encoding: chunked"),
        "{headers}"
    );
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

impl Api {
    async fn call(&self, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
        let b = body.map(|b| b.to_string()).unwrap_or_default();
        http(self.addr, method, path, Some(&self.token), b.as_bytes()).await
    }
}

async fn login(addr: std::net::SocketAddr, user: &str, pw: &str) -> String {
    let body = json!({"user": user, "password": pw}).to_string();
    let (st, v) = http(addr, "POST", "/api/login", None, body.as_bytes()).await;
    assert_eq!(st, 200, "{v}");
    v["token"].as_str().unwrap().to_string()
}

fn config_text(dir: &Path) -> String {
    let admin = hotline_cti::hash_password(ADMIN_PW).unwrap();
    let agent = hotline_cti::hash_password(AGENT_PW).unwrap();
    let d = dir.display();
    format!(
        r#"# Admin API test configuration.
[sip]
udp = ["127.0.0.1:0"]
authenticate_requests = false
trusted = ["127.0.0.0/8"]

[[users]]
name = "1001"
password = "x"

[[users]]
name = "1002"
password = "x"

[media]
rtp_ports = [48600, 48699]
voice = false
record = false

# The support line.
[[numbers]]
number = "4001"
queue = "support"

[acd]
[[acd.queue]]
name = "support"
fallback = "hangup"

[[acd.queue]]
name = "sales"
fallback = {{ queue = "support" }}

[[acd.agent]]
id = "1001"
queues = {{ support = 0 }}

[cti]
listen = "127.0.0.1:0"

[[cti.user]]
name = "root"
password_hash = "{admin}"
role = "admin"

[[cti.user]]
name = "bob"
password_hash = "{agent}"
role = "agent"
agent = "1001"

[store]
url = "memory"

[admin]
versions = "{d}/versions"
audit_log = "{d}/audit.jsonl"
prompts = "{d}/prompts"
"#
    )
}

/// An 8 kHz mono WAV (format tag 7 = µ-law, 8 bits) of `n` samples at `rate`.
fn wav(rate: u32, tag: u16, bits: u16, n: usize) -> Vec<u8> {
    let bytes_per = usize::from(bits / 8);
    let data = vec![0xFFu8; n * bytes_per];
    let mut w = Vec::new();
    w.extend_from_slice(b"RIFF");
    w.extend_from_slice(&(36 + data.len() as u32).to_le_bytes());
    w.extend_from_slice(b"WAVEfmt ");
    w.extend_from_slice(&16u32.to_le_bytes());
    w.extend_from_slice(&tag.to_le_bytes());
    w.extend_from_slice(&1u16.to_le_bytes());
    w.extend_from_slice(&rate.to_le_bytes());
    w.extend_from_slice(&(rate * u32::from(bits / 8)).to_le_bytes());
    w.extend_from_slice(&(bits / 8).to_le_bytes());
    w.extend_from_slice(&bits.to_le_bytes());
    w.extend_from_slice(b"data");
    w.extend_from_slice(&(data.len() as u32).to_le_bytes());
    w.extend_from_slice(&data);
    w
}

struct Setup {
    dir: PathBuf,
    file: PathBuf,
    original: String,
    hotline: hotline::Hotline,
}

async fn setup(name: &str) -> Setup {
    let dir = std::env::temp_dir().join(format!("hotline-admin-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("hotline.toml");
    let original = config_text(&dir);
    std::fs::write(&file, &original).unwrap();
    let hotline = hotline::start_file(&file).await.unwrap();
    Setup {
        dir,
        file,
        original,
        hotline,
    }
}

fn cti_addr(s: &Setup) -> std::net::SocketAddr {
    s.hotline.cti.as_ref().unwrap().local_addr()
}

#[tokio::test]
async fn unauthorised_requests_get_401_or_403_with_json_errors() {
    let s = setup("auth").await;
    let addr = cti_addr(&s);
    let (st, v) = http(addr, "GET", "/api/numbers", None, b"").await;
    assert_eq!(st, 401);
    assert_eq!(v["error"], "unauthorized", "{v}");
    assert!(v["message"].as_str().unwrap().contains("Bearer"), "{v}");
    let (st, v) = http(addr, "GET", "/api/queues", Some("not-a-token"), b"").await;
    assert_eq!(st, 401);
    assert!(v["message"].as_str().unwrap().contains("expired"), "{v}");
    let body = json!({"user": "root", "password": "wrong"}).to_string();
    let (st, v) = http(addr, "POST", "/api/login", None, body.as_bytes()).await;
    assert_eq!((st, v["error"].as_str()), (401, Some("unauthorized")));
    let agent = login(addr, "bob", AGENT_PW).await;
    for (method, path, body) in [
        ("GET", "/api/numbers", ""),
        ("PUT", "/api/numbers/4002", r#"{"queue": "support"}"#),
        ("DELETE", "/api/numbers/4001", ""),
        ("GET", "/api/versions", ""),
        ("POST", "/api/versions/1/rollback", ""),
        ("PUT", "/api/prompts/x", ""),
        ("PUT", "/api/dispositions", "[]"),
        ("POST", "/api/whatif", "{}"),
    ] {
        let (st, v) = http(addr, method, path, Some(&agent), body.as_bytes()).await;
        assert_eq!(st, 403, "{method} {path}: {v}");
        assert_eq!(v["error"], "forbidden");
        assert!(v["message"].as_str().unwrap().contains("role agent"), "{v}");
    }
    // Refused at the door: the file is untouched, no version was made.
    assert_eq!(std::fs::read_to_string(&s.file).unwrap(), s.original);
    let (st, _) = http(addr, "GET", "/api/openapi.json", None, b"").await;
    assert_eq!(st, 200, "the OpenAPI document is public");
    s.hotline.shutdown().await;
}

#[tokio::test]
async fn every_resource_valid_and_invalid() {
    let s = setup("resources").await;
    let addr = cti_addr(&s);
    let api = Api {
        addr,
        token: login(addr, "root", ADMIN_PW).await,
    };
    let file = || std::fs::read_to_string(&s.file).unwrap();

    // Numbers: create, then a route to a queue that does not exist.
    let (st, v) = api
        .call("PUT", "/api/numbers/4002", Some(json!({"queue": "sales"})))
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["version"], 2, "{v}");
    assert!(file().contains("number = \"4002\""));
    assert!(file().contains("# The support line."), "comments are kept");
    let (st, v) = api.call("GET", "/api/numbers/4002", None).await;
    assert_eq!((st, v["queue"].as_str()), (200, Some("sales")));
    let before = file();
    let (st, v) = api
        .call(
            "PUT",
            "/api/numbers/4003",
            Some(json!({"queue": "nowhere"})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert_eq!(v["error"], "invalid");
    assert!(
        v["message"]
            .as_str()
            .unwrap()
            .contains("queue \"nowhere\" is not in [acd]"),
        "{v}"
    );
    assert!(v["line"].as_u64().is_some(), "{v}");
    assert_eq!(v["field"], "queue", "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/numbers/4003",
            Some(json!({"number": "4999", "queue": "sales"})),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("number")), "{v}");
    let (st, v) = http(
        addr,
        "PUT",
        "/api/numbers/4003",
        Some(&api.token),
        b"{not json",
    )
    .await;
    assert_eq!((st, v["error"].as_str()), (400, Some("bad_request")), "{v}");
    let (st, v) = api.call("GET", "/api/numbers/9999", None).await;
    assert_eq!((st, v["error"].as_str()), (404, Some("not_found")));
    let (st, _) = api.call("GET", "/api/planets", None).await;
    assert_eq!(st, 404);
    assert_eq!(file(), before, "refused changes write nothing");

    // Menus.
    let menu = json!({"say": "Press one for sales", "choices": {"1": {"queue": "sales"}}, "default": {"hangup": true}});
    let (st, v) = api.call("PUT", "/api/menus/main", Some(menu)).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/menus/bad",
            Some(json!({"say": "x", "choices": {"12": {"hangup": true}}})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("not a key"), "{v}");
    assert_eq!(v["field"], "choices", "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/menus/bad",
            Some(json!({"say": "x", "timeout": 3})),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("timeout")), "{v}");

    // Hours and holidays.
    let hours = json!({"timezone": "Europe/Berlin", "open": [{"days": "mon-fri", "from": "08:00", "to": "18:00"}], "holidays": ["2026-12-25"]});
    let (st, v) = api.call("PUT", "/api/hours/office", Some(hours)).await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/hours/office",
            Some(json!({"timezone": "Mars/Olympus"})),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("timezone")), "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/hours/office",
            Some(json!({"holidays": ["2026-02-30"]})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("invalid date"),
        "{v}"
    );

    // Queues (strategy, timeouts, fallback) and their overflow.
    let (st, v) = api
        .call(
            "PUT",
            "/api/queues/sales",
            Some(json!({"strategy": "round-robin", "ring_timeout_secs": 12, "fallback": {"queue": "support"}})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["applied"], json!(["queue sales updated"]), "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/queues/sales",
            Some(json!({"strategy": "fastest"})),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("strategy")), "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/queues/sales/overflow",
            Some(json!([{"after_secs": 30, "add_queues": ["support"]}])),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = api.call("GET", "/api/queues/sales", None).await;
    assert_eq!(
        (st, &v["overflow"][0]["after_secs"]),
        (200, &json!(30)),
        "{v}"
    );
    let (st, v) = api
        .call(
            "PUT",
            "/api/queues/sales/overflow",
            Some(json!([{"after_secs": 30, "add_queues": ["nowhere"]}])),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    let (st, _) = api
        .call("PUT", "/api/queues/ghost/overflow", Some(json!([])))
        .await;
    assert_eq!(st, 404);

    // Queue options.
    let (st, v) = api
        .call(
            "PUT",
            "/api/queue-options/support",
            Some(json!({"leave_key": "*"})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/queue-options/support",
            Some(json!({"leave_key": "star"})),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("leave_key")), "{v}");

    // Agents and their skills; skills in use.
    let (st, v) = api
        .call(
            "PUT",
            "/api/agents/1002",
            Some(json!({"queues": {"sales": 0}})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["applied"], json!(["agent 1002 added"]), "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/agents/1002/skills",
            Some(json!({"lang-de": 8})),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = api.call("GET", "/api/skills", None).await;
    assert_eq!(st, 200);
    assert_eq!(v[0]["skill"], "lang-de");
    assert_eq!(v[0]["agents"]["1002"], 8, "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/agents/1002/skills",
            Some(json!({"lang-de": 11})),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/agents/1003",
            Some(json!({"queues": {"nowhere": 0}})),
        )
        .await;
    assert_eq!(st, 422, "{v}");

    // Dispositions and not-ready reasons.
    let (st, v) = api
        .call("PUT", "/api/dispositions", Some(json!(["sale", "no sale"])))
        .await;
    assert_eq!(st, 200, "{v}");
    let (st, v) = api.call("GET", "/api/dispositions", None).await;
    assert_eq!((st, v), (200, json!(["sale", "no sale"])));
    let (st, v) = api
        .call(
            "PUT",
            "/api/not-ready-reasons",
            Some(json!(["lunch", "lunch"])),
        )
        .await;
    assert_eq!(st, 422, "{v}");
    assert!(
        v["message"].as_str().unwrap().contains("listed twice"),
        "{v}"
    );
    let (st, _) = api
        .call("PUT", "/api/not-ready-reasons", Some(json!([1, 2])))
        .await;
    assert_eq!(st, 400);

    // Prompts: an 8 kHz µ-law file is stored and usable by a menu; 16 kHz is refused.
    let (st, v) = http(
        addr,
        "PUT",
        "/api/prompts/welcome",
        Some(&api.token),
        &wav(8000, 7, 8, 800),
    )
    .await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["encoding"], "Ulaw");
    let path = v["path"].as_str().unwrap().to_string();
    let (st, v) = api
        .call(
            "PUT",
            "/api/menus/recorded",
            Some(json!({"prompt": path, "choices": {"1": {"queue": "support"}}})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = http(
        addr,
        "PUT",
        "/api/prompts/hifi",
        Some(&api.token),
        &wav(16000, 1, 16, 800),
    )
    .await;
    assert_eq!(st, 422, "{v}");
    assert!(v["message"].as_str().unwrap().contains("8000 Hz"), "{v}");
    let (st, v) = http(
        addr,
        "PUT",
        "/api/prompts/..%2Fescape",
        Some(&api.token),
        &wav(8000, 7, 8, 8),
    )
    .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("name")), "{v}");
    let (st, v) = api.call("GET", "/api/prompts", None).await;
    assert_eq!((st, v.as_array().map(Vec::len)), (200, Some(1)), "{v}");

    // Deleting a queue a number routes to is refused; deleting the number first works.
    let (st, v) = api.call("DELETE", "/api/queues/sales", None).await;
    assert_eq!(st, 422, "{v}");
    let (st, v) = api.call("DELETE", "/api/numbers/4002", None).await;
    assert_eq!(st, 200, "{v}");
    let (st, _) = api.call("DELETE", "/api/numbers/4002", None).await;
    assert_eq!(st, 404);

    // The file on disk is what the API says, and it still passes `config check`.
    hotline::Config::check(&s.file, &file()).unwrap_or_else(|e| panic!("{e:?}"));
    s.hotline.shutdown().await;
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test]
async fn changes_are_versioned_with_diffs_audited_and_reversible() {
    let s = setup("versions").await;
    let addr = cti_addr(&s);
    let api = Api {
        addr,
        token: login(addr, "root", ADMIN_PW).await,
    };
    let (st, v) = api.call("GET", "/api/versions", None).await;
    assert_eq!((st, &v["current"]), (200, &json!(1)), "{v}");
    assert_eq!(v["versions"][0]["who"], "file");
    let (st, _) = api
        .call("PUT", "/api/numbers/4002", Some(json!({"queue": "sales"})))
        .await;
    assert_eq!(st, 201);
    let (st, _) = api
        .call(
            "PUT",
            "/api/queues/support",
            Some(json!({"strategy": "ring-all"})),
        )
        .await;
    assert_eq!(st, 200);
    let (st, v) = api.call("GET", "/api/versions/3", None).await;
    assert_eq!(st, 200);
    assert_eq!(v["who"], "root");
    assert_eq!(v["action"], "put queues/support");
    assert!(v["at_ms"].as_i64().unwrap() > 0);
    let diff = v["diff"].as_str().unwrap();
    assert!(diff.contains("+strategy = \"ring-all\""), "{diff}");
    assert!(v["config"].as_str().unwrap().contains("ring-all"));
    // Rollback to the start: the file is the original text again, as version 4.
    let (st, v) = api.call("POST", "/api/versions/1/rollback", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["version"], 4);
    assert_eq!(std::fs::read_to_string(&s.file).unwrap(), s.original);
    let (st, v) = api.call("POST", "/api/versions/99/rollback", None).await;
    assert_eq!((st, v["error"].as_str()), (404, Some("not_found")));
    // A refused change is audited too.
    let (st, _) = api
        .call("PUT", "/api/numbers/4009", Some(json!({"menu": "nowhere"})))
        .await;
    assert_eq!(st, 422);
    let (st, v) = api.call("GET", "/api/audit", None).await;
    assert_eq!(st, 200);
    let actions: Vec<(String, bool)> = v
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            assert_eq!(e["who"], "root");
            (
                e["action"].as_str().unwrap().to_string(),
                e["ok"].as_bool().unwrap(),
            )
        })
        .collect();
    assert_eq!(
        actions,
        [
            ("put numbers/4002".to_string(), true),
            ("put queues/support".to_string(), true),
            ("rollback to version 1".to_string(), true),
            ("rollback to version 99".to_string(), false),
            ("put numbers/4009".to_string(), false),
        ]
    );
    // A hand edit on disk since start is not overwritten: 409, the file keeps the edit.
    let edited = format!("{}\n# edited by hand\n", s.original);
    std::fs::write(&s.file, &edited).unwrap();
    let (st, v) = api
        .call("PUT", "/api/numbers/4002", Some(json!({"queue": "sales"})))
        .await;
    assert_eq!((st, v["error"].as_str()), (409, Some("conflict")), "{v}");
    assert_eq!(std::fs::read_to_string(&s.file).unwrap(), edited);
    // Versions survive a restart: the next start continues the numbering, and the
    // edited file becomes a version of its own.
    s.hotline.shutdown().await;
    let again = hotline::start_file(&s.file).await.unwrap();
    let addr = again.cti.as_ref().unwrap().local_addr();
    let api = Api {
        addr,
        token: login(addr, "root", ADMIN_PW).await,
    };
    let (_, v) = api.call("GET", "/api/versions", None).await;
    assert_eq!(v["current"], 5, "the hand-edited file is a new version");
    assert_eq!(v["versions"][4]["who"], "file");
    again.shutdown().await;
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// The what-if simulates the proposed routing (another agent in support) against the
/// current one at the given traffic: the service level goes up, nothing is saved.
#[tokio::test]
async fn whatif_simulates_the_proposed_routing_without_saving_it() {
    let s = setup("whatif").await;
    let addr = cti_addr(&s);
    let api = Api {
        addr,
        token: login(addr, "root", ADMIN_PW).await,
    };
    let body = json!({
        "changes": [{"resource": "agents", "id": "1002", "entry": {"queues": {"support": 0}}}],
        "traffic": {"support": {"calls_per_hour": 20, "aht_secs": 120}, "sales": {"calls_per_hour": 0}},
        "hours": 8
    });
    let (st, v) = api.call("POST", "/api/whatif", Some(body)).await;
    assert_eq!(st, 200, "{v}");
    let sl = |side: &str| -> f64 {
        v[side]
            .as_array()
            .unwrap()
            .iter()
            .find(|q| q["queue"] == "support")
            .unwrap()["service_level"]
            .as_f64()
            .unwrap()
    };
    let (now, then) = (sl("current"), sl("proposed"));
    assert!(
        then > now,
        "two agents serve better than one: {now} -> {then}: {v}"
    );
    assert!(v["current"][0]["asa_secs"].as_f64().is_some(), "{v}");
    assert_eq!(
        std::fs::read_to_string(&s.file).unwrap(),
        s.original,
        "not saved"
    );
    let (st, v) = api
        .call(
            "POST",
            "/api/whatif",
            Some(json!({"changes": [{"resource": "queues", "id": "support", "entry": {"strategy": "fastest"}}]})),
        )
        .await;
    assert_eq!((st, v["field"].as_str()), (422, Some("strategy")), "{v}");
    let (st, _) = api
        .call("POST", "/api/whatif", Some(json!({"hours": 100})))
        .await;
    assert_eq!(st, 422);
    // No traffic given and no calls in the CDRs: the configured default, and it says so.
    let (st, v) = api
        .call("POST", "/api/whatif", Some(json!({"hours": 1})))
        .await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["default_calls_per_hour"], 10.0, "{v}");
    for q in v["current"].as_array().unwrap() {
        assert_eq!(q["rate_source"], "default", "{v}");
        assert_eq!(q["calls_per_hour"], 10.0, "{v}");
        assert_eq!(q["recent_calls"], 0, "{v}");
    }
    let (st, _) = api
        .call("POST", "/api/whatif", Some(json!({"bogus": 1})))
        .await;
    assert_eq!(st, 400);
    s.hotline.shutdown().await;
}

/// Versions and diffs never show secrets: SIP passwords, CTI password hashes and TLS keys
/// are redacted (a changed one is marked changed), while the file keeps them and a
/// rollback restores them.
#[tokio::test]
async fn versions_and_diffs_redact_secrets() {
    let s = setup("redact").await;
    let hash_of_root = s
        .original
        .lines()
        .find(|l| l.starts_with("password_hash"))
        .unwrap()
        .to_string();
    // A hand edit (then a restart) changes 1002's SIP password: a new version.
    let edited = s.original.replace(
        "name = \"1002\"\npassword = \"x\"",
        "name = \"1002\"\npassword = \"s3cret-sip-pw\"",
    );
    assert_ne!(edited, s.original);
    s.hotline.shutdown().await;
    std::fs::write(&s.file, &edited).unwrap();
    let again = hotline::start_file(&s.file).await.unwrap();
    let addr2 = again.cti.as_ref().unwrap().local_addr();
    let api = Api {
        addr: addr2,
        token: login(addr2, "root", ADMIN_PW).await,
    };
    for n in [1, 2] {
        let (st, v) = api.call("GET", &format!("/api/versions/{n}"), None).await;
        assert_eq!(st, 200, "{v}");
        let shown = format!("{}{}", v["config"], v["diff"]);
        assert!(!shown.contains("s3cret-sip-pw"), "version {n}: {shown}");
        assert!(!shown.contains("$argon2"), "version {n}: {shown}");
        assert!(
            !shown.contains("password = \\\"x\\\""),
            "version {n}: {shown}"
        );
        assert!(
            v["config"]
                .as_str()
                .unwrap()
                .contains("password = \"<redacted>\""),
            "{v}"
        );
        assert!(v["config"].as_str().unwrap().contains("role = \"admin\""));
    }
    let (_, v) = api.call("GET", "/api/versions/2", None).await;
    let diff = v["diff"].as_str().unwrap();
    assert!(
        diff.contains("+password = \"<redacted, changed>\""),
        "the diff says the password changed: {diff}"
    );
    assert_eq!(diff.matches("<redacted, changed>").count(), 1, "{diff}");
    // The list and the audit log carry no configuration text at all.
    let (_, v) = api.call("GET", "/api/versions", None).await;
    assert!(!v.to_string().contains("s3cret"), "{v}");
    // A rollback restores the real secrets in the file.
    let (st, v) = api.call("POST", "/api/versions/1/rollback", None).await;
    assert_eq!(st, 200, "{v}");
    let disk = std::fs::read_to_string(&s.file).unwrap();
    assert_eq!(disk, s.original);
    assert!(disk.contains(&hash_of_root));
    let (_, v) = api.call("GET", "/api/versions/3", None).await;
    assert!(!v.to_string().contains("s3cret-sip-pw"), "{v}");
    assert!(
        v["diff"].as_str().unwrap().contains("<redacted, changed>"),
        "{v}"
    );
    again.shutdown().await;
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// An uploaded prompt is versioned: uploading again makes a new version, a rollback puts
/// the previous recording back (byte for byte), and a rollback to before the upload
/// removes it.
#[tokio::test]
async fn uploaded_prompts_are_versioned_and_rolled_back() {
    let s = setup("promptver").await;
    let addr = cti_addr(&s);
    let api = Api {
        addr,
        token: login(addr, "root", ADMIN_PW).await,
    };
    let first = wav(8000, 7, 8, 800);
    let mut second = wav(8000, 7, 8, 1600);
    second[44..50].copy_from_slice(&[0x10; 6]);
    let (st, v) = http(addr, "PUT", "/api/prompts/greet", Some(&api.token), &first).await;
    assert_eq!(st, 201, "{v}");
    assert_eq!(v["version"], 2, "{v}");
    let path = PathBuf::from(v["path"].as_str().unwrap());
    let (st, v) = http(addr, "PUT", "/api/prompts/greet", Some(&api.token), &second).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v["version"], 3, "{v}");
    assert_eq!(std::fs::read(&path).unwrap(), second);
    let (_, v) = api.call("GET", "/api/versions", None).await;
    let actions: Vec<&str> = v["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["action"].as_str().unwrap())
        .collect();
    assert_eq!(
        actions[1..],
        [
            "upload prompt greet (844 bytes)",
            "upload prompt greet (1644 bytes)"
        ]
    );
    // Back to the first recording.
    let (st, v) = api.call("POST", "/api/versions/2/rollback", None).await;
    assert_eq!((st, &v["version"]), (200, &json!(4)), "{v}");
    assert_eq!(std::fs::read(&path).unwrap(), first);
    let (_, v) = api.call("GET", "/api/prompts", None).await;
    assert_eq!(v[0]["seconds"], 0.1, "{v}");
    // Forward again, then back to before any upload: the prompt is gone.
    let (st, _) = api.call("POST", "/api/versions/3/rollback", None).await;
    assert_eq!(st, 200);
    assert_eq!(std::fs::read(&path).unwrap(), second);
    let (st, _) = api.call("POST", "/api/versions/1/rollback", None).await;
    assert_eq!(st, 200);
    assert!(!path.exists());
    let (_, v) = api.call("GET", "/api/prompts", None).await;
    assert_eq!(v, json!([]));
    // A refused upload makes no version and leaves no file.
    let (st, _) = http(
        addr,
        "PUT",
        "/api/prompts/greet",
        Some(&api.token),
        b"not a wav",
    )
    .await;
    assert_eq!(st, 422);
    let (_, v) = api.call("GET", "/api/versions", None).await;
    assert_eq!(v["current"], 6, "{v}");
    assert!(!path.exists());
    s.hotline.shutdown().await;
    let _ = std::fs::remove_dir_all(&s.dir);
}

/// The route tree follows a number through its queue to the queue's fallback, and
/// changes with the configuration.
#[tokio::test]
async fn route_tree_follows_numbers_to_their_fallbacks() {
    let s = setup("routes").await;
    let addr = cti_addr(&s);
    let (st, _) = http(addr, "GET", "/api/routes", None, b"").await;
    assert_eq!(st, 401);
    let api = Api {
        addr,
        token: login(addr, "root", ADMIN_PW).await,
    };
    let (st, v) = api.call("GET", "/api/routes", None).await;
    assert_eq!(st, 200, "{v}");
    assert_eq!(v[0]["number"], "4001");
    assert_eq!(v[0]["route"]["kind"], "queue", "{v}");
    assert_eq!(v[0]["route"]["name"], "support");
    assert_eq!(v[0]["route"]["strategy"], "longest-idle");
    assert_eq!(v[0]["route"]["fallback"], json!({"kind": "hangup"}));
    // A new number to sales, gated by hours: sales overflows to support and falls back
    // to it.
    let (st, v) = api
        .call(
            "PUT",
            "/api/hours/office",
            Some(json!({"timezone": "UTC", "open": [{"days": "mon-fri", "from": "08:00", "to": "18:00"}]})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/numbers/4002",
            Some(json!({"queue": "sales", "hours": "office", "closed": {"say": "closed"}})),
        )
        .await;
    assert_eq!(st, 201, "{v}");
    let (st, v) = api
        .call(
            "PUT",
            "/api/queues/sales/overflow",
            Some(json!([{"after_secs": 20, "add_queues": ["support"]}])),
        )
        .await;
    assert_eq!(st, 200, "{v}");
    let (_, v) = api.call("GET", "/api/routes", None).await;
    let r = &v[1]["route"];
    assert_eq!(
        (r["kind"].as_str(), r["name"].as_str()),
        (Some("hours"), Some("office")),
        "{v}"
    );
    assert_eq!(r["closed"], json!({"kind": "say", "text": "closed"}));
    assert_eq!(r["open"]["name"], "sales");
    assert_eq!(r["open"]["overflow"][0]["after_secs"], 20);
    assert_eq!(r["open"]["fallback"]["name"], "support");
    assert_eq!(r["open"]["fallback"]["fallback"]["kind"], "hangup");
    s.hotline.shutdown().await;
    let _ = std::fs::remove_dir_all(&s.dir);
}

#[tokio::test]
async fn openapi_document_lists_the_api() {
    let s = setup("openapi").await;
    let (st, v) = http(cti_addr(&s), "GET", "/api/openapi.json", None, b"").await;
    assert_eq!(st, 200);
    assert_eq!(v["info"]["title"], "Hotline admin API");
    for p in [
        "/api/login",
        "/api/{resource}",
        "/api/{resource}/{id}",
        "/api/agents/{id}/skills",
        "/api/queues/{name}/overflow",
        "/api/versions/{n}/rollback",
        "/api/prompts/{name}",
        "/api/audit",
        "/api/whatif",
        "/api/routes",
        "/api/voicemail",
        "/api/voicemail/{id}/audio",
    ] {
        assert!(v["paths"].get(p).is_some(), "{p} missing");
    }
    assert!(v["components"]["schemas"].get("AdminFault").is_some());
    s.hotline.shutdown().await;
}
