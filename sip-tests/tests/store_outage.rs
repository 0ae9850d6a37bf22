//! PostgreSQL outage under load: Hotline's CRM and CDR stores reach a real PostgreSQL
//! through a TCP relay the test cuts (every connection dropped, new ones refused, as a
//! database restart does). SIPp trunk callers keep dialling a queue whose agent (a SIPp
//! UAS) answers; the agent's desk (a WebSocket client) gets every offer.
//!
//! Store up: pops name the customer. Cut: every call is still queued, offered and answered,
//! the pop degrades to `pop: null`, `pop_error: "lookup unavailable"` with the caller's
//! number, and no CDR reaches the database (they are buffered). Restored: every CDR of
//! both phases is written once, answered by bob, none left in progress.

#[path = "../../crates/cti/tests/client/mod.rs"]
mod client;

use std::collections::HashSet;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use anyhow::{Context, bail, ensure};
use client::{Desk, ORIGIN};
use hotline_cdr::{CallResult, CdrStore, StoreOptions};
use hotline_crm::{CustomerData, Store, StoreConfig, Tier};
use hotline_sip_tests::{CutProxy, Proto, SippBuilder, TRUSTED_IP, free_port, start_hotline_with};
use serde_json::json;

const CALLER: &str = "+49301234567";
/// Calls per phase (store up, store cut).
const CALLS: usize = 4;

fn pg_base() -> String {
    std::env::var("HOTLINE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

/// `base` with its host:port and database replaced.
fn pg_url(base: &str, hostport: &str, db: &str) -> anyhow::Result<String> {
    let (scheme_user, rest) = base.split_once('@').context("URL with user@host")?;
    let query = rest.split_once('?').map(|(_, q)| format!("?{q}"));
    let _ = rest.split_once('/').context("URL with a database")?;
    Ok(format!(
        "{scheme_user}@{hostport}/{db}{}",
        query.unwrap_or_default()
    ))
}

fn config(url: &str, hash: &str) -> String {
    format!(
        "{media}record = false\n\
         [[numbers]]\nnumber = \"4300\"\nqueue = \"support\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = {{ support = 0 }}\n\
         [crm]\nstore = \"{url}\"\nlookup_timeout_ms = 1000\n\
         [store]\nurl = \"{url}\"\n\
         [cti]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"{ORIGIN}\"]\n\
         [[cti.user]]\nname = \"bob\"\npassword_hash = \"{hash}\"\nrole = \"agent\"\nagent = \"bob\"\n",
        media = hotline_sip_tests::media(200)
    )
}

/// `CALLS` trunk calls from `CALLER` at 1/s, each staying 1.5 s after Hotline answers:
/// time for the pop (bounded at 1 s: a loaded machine took more than 300 ms to look the
/// caller up through the relay with the store up) and for bob to answer, also when the
/// call before is still his.
fn callers(server: SocketAddr, phase: &str) -> anyhow::Result<hotline_sip_tests::Sipp> {
    SippBuilder::new(
        &format!("outage-callers-{phase}"),
        "uac_trunk_call_bye.xml",
        Proto::Udp,
        free_port(),
    )
    .args(["-i", TRUSTED_IP, "-s", "4300", "-key", "caller", CALLER])
    .args(["-r", "1", "-d", "1500"])
    .set("-m", CALLS.to_string())
    .set("-timeout", "60s")
    .spawn(Some(server))
}

/// Collects the desk's `call.offered` data for `CALLS` calls.
async fn offers(desk: &mut Desk) -> Vec<serde_json::Value> {
    let mut out = Vec::new();
    while out.len() < CALLS {
        let (_, ev) = desk.event("call.offered").await;
        out.push(ev["data"].clone());
    }
    out
}

async fn outage_flow(base: &str, db: &str) -> anyhow::Result<()> {
    let direct = pg_url(base, "127.0.0.1:5432", db)?;
    let target: SocketAddr = ([127, 0, 0, 1], 5432).into();
    let proxy = CutProxy::start(target).await?;
    let via = pg_url(base, &proxy.addr().to_string(), db)?;

    let crm = Store::open(&direct, &StoreConfig::default()).await?;
    let weber = crm
        .create_customer(
            &CustomerData {
                surname: "Weber".into(),
                tier: Tier::Vip,
                ..CustomerData::default()
            },
            &[CALLER],
        )
        .await?;
    let hash = hotline_cti::hash_password("desk-pw")?;
    let mut h = start_hotline_with(&config(&via, &hash)).await?;
    let mut ended = h
        .switch
        .as_mut()
        .context("switch")?
        .take_ended()
        .context("ended reports")?;
    let server = Proto::Udp.server_addr(&h);
    let cti = h.cti.as_ref().context("[cti] configured")?.local_addr();
    let mut desk = Desk::connect(cti, Some(ORIGIN)).await?;
    desk.login("bob", "desk-pw").await;
    desk.ok(json!({"type": "agent.ready"})).await;

    let port = free_port();
    SippBuilder::new("outage-bob-register", "register_once.xml", Proto::Udp, port)
        .args(["-s", "bob", "-au", "bob", "-ap", "bob-pw"])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let bob = SippBuilder::new("outage-bob", "uas_call.xml", Proto::Udp, port)
        .args(["-s", "bob", "-rtp_echo"])
        .set("-m", (2 * CALLS).to_string())
        .set("-timeout", "90s")
        .spawn_bound()
        .await?;

    // 1. Store up: the pop names the customer; each CDR is committed before its call
    // reports its end. The caller's BYE is answered before that (SIPp may be done while
    // the last record is still being written), so the reports are what to wait for.
    let up = callers(server, "up")?;
    for o in offers(&mut desk).await {
        assert_eq!(o["pop"]["identification"]["customer"]["id"], weber, "{o}");
        assert!(o["pop_error"].is_null(), "{o}");
    }
    up.expect_success().await?;
    for _ in 0..CALLS {
        tokio::time::timeout(Duration::from_secs(10), ended.recv())
            .await
            .context("no call end within 10 s")?
            .context("switch stopped")?;
    }
    let cdrs = CdrStore::open(&direct, &StoreOptions::default()).await?;
    let before = cdrs.calls(0, i64::MAX).await?.len();
    ensure!(
        before == CALLS,
        "{before} of {CALLS} CDRs committed once the calls ended"
    );

    // 2. Cut: calls are still routed and answered, pops degrade, CDRs wait in the buffer.
    proxy.cut();
    let down = callers(server, "down")?;
    for o in offers(&mut desk).await {
        assert!(o["pop"].is_null(), "{o}");
        assert_eq!(o["pop_error"], "lookup unavailable", "{o}");
        let caller = o["caller"].as_str().unwrap_or_default();
        assert!(
            caller.contains(CALLER),
            "the desk still shows the number: {o}"
        );
    }
    down.expect_success().await?;
    let during = cdrs.calls(0, i64::MAX).await?.len();
    assert_eq!(during, CALLS, "no CDR can reach the store while it is cut");

    // 3. Restored: the buffered CDRs are written (polled with a deadline).
    proxy.restore();
    let deadline = Instant::now() + Duration::from_secs(40);
    let calls = loop {
        let calls = cdrs.calls(0, i64::MAX).await?;
        if calls.len() >= 2 * CALLS && cdrs.in_progress().await?.is_empty() {
            break calls;
        }
        if Instant::now() > deadline {
            bail!("CDRs after the outage: {} of {}", calls.len(), 2 * CALLS);
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    };
    assert_eq!(calls.len(), 2 * CALLS, "{calls:?}");
    let ids: HashSet<_> = calls.iter().map(|c| c.call_id.as_str()).collect();
    assert_eq!(ids.len(), 2 * CALLS, "one row per call");
    for c in &calls {
        assert_eq!(c.result, CallResult::Answered, "{c:?}");
        assert_eq!(c.agent.as_deref(), Some("bob"), "{c:?}");
        assert_eq!(c.caller, CALLER, "{c:?}");
    }
    bob.expect_success().await?;
    cdrs.close().await;
    desk.close().await;
    h.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_cut_under_calls_degrades_the_pop_and_loses_no_cdr() -> anyhow::Result<()> {
    let base = pg_base();
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(Duration::from_secs(5))
        .connect(&base)
        .await
        .with_context(|| format!("PostgreSQL not reachable at {base}"))?;
    let db = format!("hotline_outage_{}", std::process::id());
    let drop_db = format!("DROP DATABASE IF EXISTS {db} WITH (FORCE)");
    sqlx::query(sqlx::AssertSqlSafe(drop_db.clone()))
        .execute(&admin)
        .await?;
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {db}")))
        .execute(&admin)
        .await?;
    let r = outage_flow(&base, &db).await;
    sqlx::query(sqlx::AssertSqlSafe(drop_db))
        .execute(&admin)
        .await?;
    r
}
