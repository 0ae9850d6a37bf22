//! Live apply through the admin API with real SIPp calls in progress: one caller talking
//! to an agent, others waiting in queues, while an admin adds an agent, takes the
//! talking agent out of the queue, removes a queue (its caller drains to the fallback)
//! and adds a number. No call is dropped, the waiting callers are served in their
//! order, and the next call follows the new number at once.

use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use hotline_sip_tests::{Proto, Sipp, SippBuilder, caller_audio, free_port};
use hotline_switch::{CallEnd, EndReason, SwitchEvent};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const PW: &str = "admin-pw";

fn config(dir: &Path) -> anyhow::Result<String> {
    let hash = hotline_cti::hash_password(PW)?;
    let d = dir.display();
    let [rtp_first, rtp_last] = hotline_sip_tests::rtp_ports(200);
    Ok(format!(
        r#"[sip]
udp = ["127.0.0.1:0"]
digest_algorithms = ["MD5"]
t1_ms = 100
t2_ms = 400

[[users]]
name = "alice"
password = "alice-pw"

[[users]]
name = "bob"
password = "bob-pw"

[[users]]
name = "carol"
password = "carol-pw"

[media]
rtp_ip = "127.0.0.1"
rtp_ports = [{rtp_first}, {rtp_last}]
voice = false
record = false

[[numbers]]
number = "4000"
queue = "support"

# Retired during the test: its caller drains to support.
[[numbers]]
number = "4009"
queue = "old"

[acd]
[[acd.queue]]
name = "support"
wrapup_secs = 0
ring_timeout_secs = 5

[[acd.queue]]
name = "old"
fallback = {{ queue = "support" }}

[[acd.agent]]
id = "bob"
queues = {{ support = 0 }}

[cti]
listen = "127.0.0.1:0"

[[cti.user]]
name = "root"
password_hash = "{hash}"
role = "admin"

[store]
url = "memory"

[admin]
versions = "{d}/versions"
audit_log = "{d}/audit.jsonl"
prompts = "{d}/prompts"
"#
    ))
}

async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Value,
) -> anyhow::Result<(u16, Value)> {
    let mut s = tokio::net::TcpStream::connect(addr).await?;
    let body = body.to_string();
    let auth = token
        .map(|t| format!("Authorization: Bearer {t}\r\n"))
        .unwrap_or_default();
    s.write_all(
        format!(
            "{method} {path} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n{auth}Content-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .as_bytes(),
    )
    .await?;
    let mut out = Vec::new();
    s.read_to_end(&mut out).await?;
    let text = String::from_utf8_lossy(&out);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|c| c.parse().ok())
        .context("status line")?;
    let body = text.split_once("\r\n\r\n").map(|x| x.1).unwrap_or("");
    Ok((status, serde_json::from_str(body).unwrap_or(Value::Null)))
}

/// A caller (waits in the queue until an agent answers, then until the agent hangs up)
/// with a Call-ID we can recognise.
fn caller(tag: &str, number: &str, server: std::net::SocketAddr) -> anyhow::Result<Sipp> {
    SippBuilder::new(tag, "uac_call_hung_up_on.xml", Proto::Udp, free_port())
        .set("-timeout", "40s")
        .args([
            "-s", number, "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
        ])
        .args(["-cid_str", &format!("{tag}-%u@%s")])
        .spawn(Some(server))
}

/// Registers `user` and starts its UAS (echoing RTP) for `calls` calls.
async fn agent(
    user: &str,
    scenario: &str,
    calls: u32,
    server: std::net::SocketAddr,
) -> anyhow::Result<Sipp> {
    let calls = calls.to_string();
    hotline_sip_tests::calls::agent(
        server,
        user,
        scenario,
        &["-m", &calls, "-timeout", "40s", "-rtp_echo"],
    )
    .await
}

/// Waits until the ACD's queues hold `want` waiting calls (the callers' INVITEs were
/// answered and entered their queues).
async fn until_waiting(h: &hotline::Hotline, want: &[(&str, u32)]) -> anyhow::Result<()> {
    let switch = h.switch.as_ref().context("switch")?.handle();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let stats = switch.queue_stats().await?;
        let ok = want
            .iter()
            .all(|(q, n)| stats.iter().any(|s| s.queue == *q && s.waiting == *n));
        if ok {
            return Ok(());
        }
        if Instant::now() > deadline {
            bail!("queues never reached {want:?}: {stats:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn routing_changes_apply_live_without_dropping_or_reordering_calls() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("hotline-live-apply-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir)?;
    let file = dir.join("hotline.toml");
    std::fs::write(&file, config(&dir)?)?;
    let mut h = hotline::start_file(&file).await?;
    let server = Proto::Udp.server_addr(&h);
    let api = h.cti.as_ref().context("cti")?.local_addr();
    let switch = h.switch.as_mut().context("switch")?;
    let mut ended = switch.take_ended().context("ended")?;
    let mut events = switch.subscribe();

    caller_audio()?;
    // bob talks to A for 6 s.
    let bob = agent("bob", "uas_answer_long_then_bye.xml", 1, server).await?;
    let a = caller("liveA", "4000", server)?;
    let answered = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            if let Ok(SwitchEvent::CallAnswered { call_id, agent, .. }) = events.recv().await {
                return (call_id, agent);
            }
        }
    })
    .await
    .context("A was never answered")?;
    assert!(answered.0.starts_with("liveA-"), "{answered:?}");
    assert_eq!(answered.1, "bob");
    // B then C wait in support, E in the queue that will be removed.
    let b = caller("liveB", "4000", server)?;
    until_waiting(&h, &[("support", 1)]).await?;
    let c = caller("liveC", "4000", server)?;
    until_waiting(&h, &[("support", 2)]).await?;
    let e = caller("liveE", "4009", server)?;
    until_waiting(&h, &[("support", 2), ("old", 1)]).await?;
    let carol = agent("carol", "uas_answer_then_bye.xml", 4, server).await?;

    // The admin's changes, while A talks and B, C, E wait.
    let body = json!({"user": "root", "password": PW});
    let (st, v) = http(api, "POST", "/api/login", None, body).await?;
    assert_eq!(st, 200, "{v}");
    let token = v["token"].as_str().context("token")?.to_string();
    let t = Some(token.as_str());
    // bob leaves support while talking to A: his call goes on.
    let (st, v) = http(api, "PUT", "/api/agents/bob", t, json!({"queues": {}})).await?;
    assert_eq!(
        (st, &v["applied"]),
        (200, &json!(["agent bob updated"])),
        "{v}"
    );
    // The queue's settings change under the waiting callers.
    let (st, v) = http(
        api,
        "PUT",
        "/api/queues/support",
        t,
        json!({"strategy": "round-robin", "wrapup_secs": 0, "ring_timeout_secs": 5}),
    )
    .await?;
    assert_eq!(st, 200, "{v}");
    // carol joins support: she is offered B first (B keeps the head of the line).
    let (st, v) = http(
        api,
        "PUT",
        "/api/agents/carol",
        t,
        json!({"queues": {"support": 0}}),
    )
    .await?;
    assert_eq!(
        (st, &v["applied"]),
        (201, &json!(["agent carol added"])),
        "{v}"
    );
    // The old queue goes (with its number): E drains to support, behind C.
    let (st, v) = http(api, "DELETE", "/api/numbers/4009", t, Value::Null).await?;
    assert_eq!(st, 200, "{v}");
    let (st, v) = http(api, "DELETE", "/api/queues/old", t, Value::Null).await?;
    assert_eq!(st, 200, "{v}");
    assert!(
        v["applied"].to_string().contains("queue old removed"),
        "{v}"
    );
    // A new number works for the very next call.
    let (st, v) = http(
        api,
        "PUT",
        "/api/numbers/4001",
        t,
        json!({"queue": "support"}),
    )
    .await?;
    assert_eq!(st, 201, "{v}");
    let f = caller("liveF", "4001", server)?;

    for (name, sipp) in [("A", a), ("B", b), ("C", c), ("E", e), ("F", f)] {
        sipp.expect_success()
            .await
            .with_context(|| format!("caller {name} was dropped"))?;
    }
    bob.expect_success().await?;
    carol.expect_success().await?;
    let mut ends: Vec<CallEnd> = Vec::new();
    while ends.len() < 5 {
        let end = tokio::time::timeout(Duration::from_secs(10), ended.recv())
            .await
            .context("a call end is missing")?
            .context("switch stopped")?;
        ends.push(end);
    }
    for end in &ends {
        assert_eq!(end.reason, EndReason::AgentHangup, "{end:?}");
        assert!(end.bridged, "{end:?}");
    }
    let by = |agent: &str| -> Vec<String> {
        ends.iter()
            .filter(|e| e.agent.as_deref() == Some(agent))
            .map(|e| e.call_id.split('-').next().unwrap_or("").to_string())
            .collect()
    };
    assert_eq!(by("bob"), ["liveA"]);
    assert_eq!(by("carol"), ["liveB", "liveC", "liveE", "liveF"]);
    let e_end = ends
        .iter()
        .find(|x| x.call_id.starts_with("liveE"))
        .context("E")?;
    assert_eq!(e_end.queue.as_deref(), Some("support"), "{e_end:?}");
    // Nothing leaked.
    let switch = h.switch.as_ref().context("switch")?;
    assert_eq!(switch.stats().active_calls(), 0);
    assert_eq!(switch.ports().in_use(), 0, "RTP ports leaked");
    // The file on disk has the changes (one truth) and passes the checker.
    let text = std::fs::read_to_string(&file)?;
    assert!(
        text.contains("number = \"4001\"") && !text.contains("\"old\""),
        "{text}"
    );
    hotline::Config::check(&file, &text).map_err(|e| anyhow::anyhow!("{e:?}"))?;
    h.shutdown().await;
    let _ = std::fs::remove_dir_all(&dir);
    Ok(())
}
