//! Screen pop end to end, on SQLite and PostgreSQL: a SIPp caller dials a queue, the
//! agent's desk (a Rust WebSocket client logged in as the agent) gets `call.offered` with
//! the right customer before the agent's phone (a SIP UA in this test, on the port the
//! agent registered from with SIPp) receives the INVITE; the agent answers, the desk drops
//! and resumes, hangs up and sends the disposition; the interaction is in the trail.
//! Unknown callers get a provisional customer, a shared number gives candidates, and
//! another agent cannot read the customer.

#[path = "../../crates/cti/tests/client/mod.rs"]
mod client;

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use client::{Desk, ORIGIN};
use hotline_crm::{CustomerData, Store, StoreConfig, Tier};
use hotline_sip_tests::{Proto, SippBuilder, free_port, start_hotline_with};
use serde_json::{Value, json};
use tokio::net::UdpSocket;

const WAIT: Duration = Duration::from_secs(10);
const WEBER: &str = "+49301234567";
const SHARED: &str = "+49307777777";
const UNKNOWN: &str = "+49309999999";

/// The agent's phone: answers an INVITE with 200 + SDP, takes ACK and BYE.
struct Phone {
    sock: UdpSocket,
    port: u16,
    _media: std::net::UdpSocket,
}

fn header_lines<'a>(msg: &'a str, names: &[&str]) -> Vec<&'a str> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .filter(|l| {
            let name = l.split(':').next().unwrap_or("").trim();
            names.iter().any(|n| n.eq_ignore_ascii_case(name))
        })
        .collect()
}

impl Phone {
    /// Waits for a request of `method` (answering stray retransmissions with nothing).
    async fn request(&self, method: &str) -> anyhow::Result<(Instant, String, SocketAddr)> {
        let mut buf = vec![0u8; 65_535];
        loop {
            let (n, from) = tokio::time::timeout(WAIT, self.sock.recv_from(&mut buf))
                .await
                .with_context(|| format!("phone: no {method} within 10 s"))??;
            let at = Instant::now();
            let text = String::from_utf8_lossy(&buf[..n]).to_string();
            if text.starts_with(&format!("{method} ")) {
                return Ok((at, text, from));
            }
        }
    }

    async fn respond(&self, req: &str, to: SocketAddr, sdp: bool) -> anyhow::Result<()> {
        let mut out = String::from("SIP/2.0 200 OK\r\n");
        for l in header_lines(
            req,
            &[
                "via",
                "v",
                "record-route",
                "from",
                "f",
                "call-id",
                "i",
                "cseq",
            ],
        ) {
            out.push_str(l);
            out.push_str("\r\n");
        }
        let to_line = header_lines(req, &["to", "t"])
            .first()
            .map(|s| s.to_string())
            .context("To header")?;
        out.push_str(&to_line);
        if !to_line.contains(";tag=") {
            out.push_str(";tag=phone1");
        }
        out.push_str(&format!(
            "\r\nContact: <sip:bob@127.0.0.1:{}>\r\n",
            self.port
        ));
        if sdp {
            let media = self._media.local_addr()?.port();
            let body = format!(
                "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio {media} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
            );
            out.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            ));
        } else {
            out.push_str("Content-Length: 0\r\n\r\n");
        }
        self.sock.send_to(out.as_bytes(), to).await?;
        Ok(())
    }
}

/// Registers `bob` from a fresh port with SIPp, then takes that port over as bob's phone.
async fn register_phone(server: SocketAddr) -> anyhow::Result<Phone> {
    let port = free_port();
    SippBuilder::new("cti-bob-register", "register_once.xml", Proto::Udp, port)
        .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    Ok(Phone {
        sock: UdpSocket::bind(("127.0.0.1", port)).await?,
        port,
        _media: std::net::UdpSocket::bind("127.0.0.1:0")?,
    })
}

fn config(store: &str, ports: [u16; 2], hash: &str) -> String {
    format!(
        "[media]\nrtp_ip = \"127.0.0.1\"\nrtp_ports = [{}, {}]\n\
         [[numbers]]\nnumber = \"4100\"\nqueue = \"support\"\n\
         [acd]\n[acd.tier_priority]\nvip = 100\n\
         [[acd.queue]]\nname = \"support\"\nwrapup_secs = 60\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = {{ support = 0 }}\n\
         [[acd.agent]]\nid = \"carol\"\nqueues = {{ support = 0 }}\n\
         [crm]\n[store]\nurl = \"{store}\"\n\
         [cti]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"{ORIGIN}\"]\n\
         [[cti.user]]\nname = \"bob\"\npassword_hash = \"{hash}\"\nrole = \"agent\"\nagent = \"bob\"\n\
         [[cti.user]]\nname = \"carol\"\npassword_hash = \"{hash}\"\nrole = \"agent\"\nagent = \"carol\"\n",
        ports[0], ports[1]
    )
}

/// Seeds the store: Dr. Weber (VIP, a greeting for the queue), two customers sharing a
/// number. Returns (weber, [shared ids]).
async fn seed(store: &Store) -> anyhow::Result<(i64, [i64; 2])> {
    let person = |first: &str, surname: &str, tier| CustomerData {
        title: Some("Dr.".into()),
        first_name: Some(first.into()),
        surname: surname.into(),
        tier,
        ..CustomerData::default()
    };
    let weber = store
        .create_customer(&person("Anna", "Weber", Tier::Vip), &[WEBER])
        .await?;
    let a = store
        .create_customer(&person("Jan", "Berg", Tier::Public), &[SHARED])
        .await?;
    let b = store
        .create_customer(&person("Ida", "Berg", Tier::Public), &[SHARED])
        .await?;
    store
        .set_script(Some("support"), None, "Good day {title} {surname}")
        .await?;
    Ok((weber, [a, b]))
}

/// One call from `number` to the queue, up to the agent's answer: returns the desk's
/// `call.offered` frame (checked to arrive before the phone's INVITE), the caller's SIPp.
async fn offered_call(
    server: SocketAddr,
    desk: Desk,
    phone: Phone,
    number: &str,
) -> anyhow::Result<(Desk, Phone, Value, hotline_sip_tests::Sipp)> {
    let mut desk = desk;
    let caller = SippBuilder::new(
        &format!("cti-caller-{}", &number[1..]),
        "uac_trunk_call_wait_bye.xml",
        Proto::Udp,
        free_port(),
    )
    // From the trusted trunk address: a caller id that is a number, not a user.
    .args([
        "-i",
        hotline_sip_tests::TRUSTED_IP,
        "-s",
        "4100",
        "-key",
        "caller",
        number,
    ])
    .spawn(Some(server))?;
    let (_, invite, from) = phone.request("INVITE").await?;
    // The moment the phone rings, the pop must already be at the desk.
    if !desk.has_arrived("\"call.offered\"") {
        bail!("the phone got the INVITE before call.offered reached the desk");
    }
    let (_, offered) = desk.event("call.offered").await;
    phone.respond(&invite, from, true).await?;
    phone.request("ACK").await?;
    Ok((desk, phone, offered, caller))
}

/// The desk hangs up; the phone and the caller get BYE; the desk sees `call.ended`.
async fn hang_up(
    desk: &mut Desk,
    phone: &Phone,
    caller: hotline_sip_tests::Sipp,
    call_id: &str,
) -> anyhow::Result<Value> {
    desk.ok(json!({"type": "call.hangup", "call_id": call_id}))
        .await;
    let (_, bye, from) = phone.request("BYE").await?;
    phone.respond(&bye, from, false).await?;
    caller.expect_success().await?;
    let (_, ended) = desk.event("call.ended").await;
    assert_eq!(ended["data"]["call_id"], call_id);
    Ok(ended)
}

/// Waits for an `agent.state` event with `state` and returns it.
async fn state(desk: &mut Desk, want: &str) -> Value {
    loop {
        let (_, ev) = desk.event("agent.state").await;
        if ev["data"]["state"] == want {
            return ev["data"].clone();
        }
    }
}

async fn screen_pop_flow(store_loc: &str, ports: [u16; 2]) -> anyhow::Result<()> {
    let store = Store::open(store_loc, &StoreConfig::default()).await?;
    let (weber, shared) = seed(&store).await?;
    let hash = hotline_cti::hash_password("desk-pw")?;
    let h = start_hotline_with(&config(store_loc, ports, &hash)).await?;
    let server = Proto::Udp.server_addr(&h);
    let cti = h.cti.as_ref().context("[cti] configured")?.local_addr();
    let switch = h.switch.as_ref().context("switch")?.handle();

    let mut bob = Desk::connect(cti, Some(ORIGIN)).await?;
    let login = bob.login("bob", "desk-pw").await;
    let token = login["token"].as_str().context("token")?.to_string();
    assert_eq!(login["agent_state"]["state"], "logged_out");
    bob.ok(json!({"type": "agent.ready"})).await;
    let mut carol = Desk::connect(cti, Some(ORIGIN)).await?;
    carol.login("carol", "desk-pw").await;
    let phone = register_phone(server).await?;

    // 1. A known VIP caller: the pop names her before the phone rings.
    let (bob_desk, phone, offered, caller) = offered_call(server, bob, phone, WEBER).await?;
    bob = bob_desk;
    let data = &offered["data"];
    let call_id = data["call_id"].as_str().context("call_id")?.to_string();
    assert_eq!(data["agent"], "bob");
    assert_eq!(data["queue"], "support");
    assert_eq!(data["pop"]["number"], WEBER);
    assert_eq!(data["pop"]["identification"]["kind"], "known", "{data}");
    assert_eq!(data["pop"]["identification"]["customer"]["id"], weber);
    assert_eq!(data["pop"]["view"]["greeting"], "Good day Dr. Weber");
    let (_, answered) = bob.event("call.answered").await;
    assert_eq!(answered["data"]["call_id"], call_id.as_str());
    let on_call = state(&mut bob, "on_call").await;
    assert_eq!(on_call["call_id"], call_id.as_str());

    // Another agent cannot read the caller's record.
    carol
        .fails(
            json!({"type": "customer.get", "customer_id": weber}),
            "forbidden",
        )
        .await;
    // Bob can, while it is his call.
    let view = bob
        .ok(json!({"type": "customer.get", "customer_id": weber}))
        .await;
    assert_eq!(view["customer"]["surname"], "Weber");

    // The desk drops mid-call; the call goes on; the token resumes state and call.
    drop(bob);
    let mut bob = Desk::connect(cti, Some(ORIGIN)).await?;
    let resumed = bob.ok(json!({"type": "auth.resume", "token": token})).await;
    assert_eq!(resumed["agent_state"]["state"], "on_call", "{resumed}");
    assert_eq!(resumed["agent_state"]["version"], on_call["version"]);
    assert_eq!(resumed["call"]["answered"], true);
    assert_eq!(resumed["call"]["offer"]["call_id"], call_id.as_str());
    assert_eq!(
        resumed["call"]["offer"]["pop"]["identification"]["customer"]["id"],
        weber
    );
    let acd = switch.agents().await?;
    let acd_bob = acd
        .iter()
        .find(|a| a.agent == "bob")
        .context("bob in the ACD")?;
    assert_eq!(
        Some(acd_bob.version),
        resumed["agent_state"]["version"].as_u64()
    );

    let ended = hang_up(&mut bob, &phone, caller, &call_id).await?;
    let interaction = ended["data"]["interaction_id"]
        .as_i64()
        .context("trail entry")?;
    let wrap = state(&mut bob, "wrap_up").await;
    assert_eq!(wrap["call_id"], call_id.as_str());
    let dispo = bob
        .ok(json!({"type": "call.disposition", "call_id": call_id, "code": "resolved", "notes": "address changed"}))
        .await;
    assert_eq!(dispo["interaction_id"], interaction);
    // The disposition ends wrap-up (60 s configured): the agent is available again.
    state(&mut bob, "ready").await;
    let trail = store
        .interaction_by_call_id(&call_id)
        .await?
        .context("interaction in the trail")?;
    assert_eq!(trail.id, interaction);
    assert_eq!(trail.customer_id, weber);
    assert_eq!(trail.queue.as_deref(), Some("support"));
    assert_eq!(trail.agent.as_deref(), Some("bob"));
    assert_eq!(trail.disposition.as_deref(), Some("resolved"));
    assert_eq!(trail.notes.as_deref(), Some("address changed"));
    assert!(trail.ended_at.is_some_and(|e| e >= trail.started_at));
    // Bridged calls are recorded ([media] record, on by default): the trail points at it.
    let recording = trail
        .recording_path
        .as_deref()
        .context("recording path in the trail")?;
    assert!(
        std::path::Path::new(recording).exists(),
        "recording {recording} exists"
    );

    // 2. An unknown caller: a provisional customer the agent can complete.
    let (bob_desk, phone, offered, caller) = offered_call(server, bob, phone, UNKNOWN).await?;
    bob = bob_desk;
    let data = &offered["data"];
    let call_id = data["call_id"].as_str().context("call_id")?.to_string();
    assert_eq!(
        data["pop"]["identification"]["kind"], "provisional",
        "{data}"
    );
    let provisional = data["pop"]["identification"]["customer"]["id"]
        .as_i64()
        .context("provisional id")?;
    bob.ok(
        json!({"type": "customer.update", "customer_id": provisional,
        "data": {"surname": "Neumann", "tier": "public", "custom_fields": {}}}),
    )
    .await;
    hang_up(&mut bob, &phone, caller, &call_id).await?;
    bob.ok(json!({"type": "call.disposition", "call_id": call_id, "code": "new_customer"}))
        .await;
    state(&mut bob, "ready").await;
    let c = store.customer(provisional).await?.context("customer")?;
    assert_eq!(c.data.surname, "Neumann");
    assert_eq!(c.numbers, vec![UNKNOWN.to_string()]);

    // 3. A number two customers share: candidates; the agent picks one.
    let (bob_desk, phone, offered, caller) = offered_call(server, bob, phone, SHARED).await?;
    bob = bob_desk;
    let data = &offered["data"];
    let call_id = data["call_id"].as_str().context("call_id")?.to_string();
    assert_eq!(
        data["pop"]["identification"]["kind"], "candidates",
        "{data}"
    );
    let mut ids: Vec<i64> = data["pop"]["identification"]["customers"]
        .as_array()
        .context("candidates")?
        .iter()
        .filter_map(|c| c["id"].as_i64())
        .collect();
    ids.sort();
    assert_eq!(ids, shared.to_vec());
    let chosen = bob
        .ok(json!({"type": "customer.choose", "call_id": call_id, "customer_id": shared[1]}))
        .await;
    assert_eq!(chosen["customer"]["first_name"], "Ida");
    carol
        .fails(
            json!({"type": "customer.choose", "call_id": call_id, "customer_id": shared[1]}),
            "forbidden",
        )
        .await;
    let ended = hang_up(&mut bob, &phone, caller, &call_id).await?;
    let interaction = ended["data"]["interaction_id"]
        .as_i64()
        .context("trail entry")?;
    bob.ok(json!({"type": "call.disposition", "call_id": call_id, "code": "info"}))
        .await;
    state(&mut bob, "ready").await;
    let trail = store
        .interaction_by_call_id(&call_id)
        .await?
        .context("interaction in the trail")?;
    assert_eq!(trail.id, interaction);
    assert_eq!(trail.customer_id, shared[1], "the chosen candidate");

    // The audit log has the pops and carol's denied read.
    let log = store.audit_log(Some(weber), 100).await?;
    assert!(
        log.iter()
            .any(|e| e.actor == "bob" && e.action == "pop" && e.allowed),
        "{log:?}"
    );
    assert!(
        log.iter().any(|e| e.actor == "carol" && !e.allowed),
        "{log:?}"
    );
    assert!(
        log.iter()
            .any(|e| e.actor == "bob" && e.action == "read" && e.allowed),
        "{log:?}"
    );

    let sw = h.switch.as_ref().context("switch")?;
    assert_eq!(sw.stats().active_calls(), 0);
    assert_eq!(sw.ports().in_use(), 0, "RTP ports leaked");
    bob.close().await;
    carol.close().await;
    h.shutdown().await;
    store.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_pop_before_ring_trail_and_authorisation_sqlite() -> anyhow::Result<()> {
    let path = std::env::temp_dir().join(format!("hotline_cti_e2e_{}.sqlite", std::process::id()));
    let loc = path.display().to_string();
    let r = screen_pop_flow(&loc, hotline_sip_tests::rtp_ports(500)).await;
    for suffix in ["", "-wal", "-shm"] {
        let _ = std::fs::remove_file(format!("{loc}{suffix}"));
    }
    r
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn screen_pop_before_ring_trail_and_authorisation_postgres() -> anyhow::Result<()> {
    let url = std::env::var("HOTLINE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&url)
        .await
        .with_context(|| format!("PostgreSQL not reachable at {url}"))?;
    let schema = format!("cti_e2e_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    // The one [store] URL selects the schema for the CRM and the call records alike.
    let sep = if url.contains('?') { '&' } else { '?' };
    let r = screen_pop_flow(
        &format!("{url}{sep}options[search_path]={schema}"),
        hotline_sip_tests::rtp_ports(500),
    )
    .await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    r
}
