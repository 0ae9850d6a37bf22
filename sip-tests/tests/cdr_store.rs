//! A SIPp call into a queue lands in the CDR store (SQLite file and PostgreSQL database)
//! with its queue log, through the server's real `[store]` wiring.

use std::time::Duration;

use anyhow::Context;
use hotline_cdr::{CallResult, CdrStore, HangupSide, QueueEventKind, StoreOptions};
use hotline_sip_tests::{Proto, SippBuilder, free_port, start_hotline_with};

async fn queue_call_is_stored(url: &str) -> anyhow::Result<()> {
    let mut h = start_hotline_with(&format!(
        "{}\
         [[numbers]]\nnumber = \"4000\"\nqueue = \"support\"\n[store]\nurl = \"{url}\"\n",
        hotline_sip_tests::media(100)
    ))
    .await?;
    let server = Proto::Udp.server_addr(&h);
    let switch = h
        .switch
        .as_mut()
        .context("numbers configured: switch runs")?;
    let mut ended = switch.take_ended().context("ended reports")?;
    // The caller waits 2 s with music (no agents) and hangs up: abandoned in the queue.
    SippBuilder::new("cdr-caller", "uac_queue_call.xml", Proto::Udp, free_port())
        .args([
            "-s", "4000", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
        ])
        .spawn(Some(server))?
        .expect_success()
        .await?;
    let end = tokio::time::timeout(Duration::from_secs(10), ended.recv())
        .await
        .context("no call ended within 10 s")?
        .context("switch stopped")?;
    // The record is committed before the call reports its end: read it from the database.
    let store = CdrStore::open(url, &StoreOptions::default()).await?;
    let calls = store.calls(0, i64::MAX).await?;
    assert_eq!(calls.len(), 1, "{calls:?}");
    let c = &calls[0];
    assert_eq!(c.result, CallResult::Abandoned, "{c:?}");
    assert_eq!(c.hangup_side, HangupSide::Caller);
    assert_eq!(c.queue.as_deref(), Some("support"));
    assert_eq!((c.dialed.as_str(), c.caller.as_str()), ("4000", "alice"));
    assert_eq!(c.sip_status, end.status);
    assert!(c.ended_at >= c.arrived_at + 1_500, "2 s of music: {c:?}");
    assert!(c.wait_ms >= 1_500, "{c:?}");
    assert!(store.in_progress().await?.is_empty());
    h.shutdown().await;
    // Queue events are batched: after shutdown (which flushes) they are all there.
    let log: Vec<QueueEventKind> = store
        .queue_log(0, i64::MAX)
        .await?
        .into_iter()
        .filter(|e| e.call_id == c.call_id)
        .map(|e| e.event)
        .collect();
    assert_eq!(log.first(), Some(&QueueEventKind::EnterQueue), "{log:?}");
    assert!(log.contains(&QueueEventKind::Abandon), "{log:?}");
    store.close().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_call_is_stored_in_sqlite() -> anyhow::Result<()> {
    let dir = std::env::temp_dir().join(format!("hotline-cdr-e2e-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let url = format!("sqlite://{}/hotline.db", dir.display());
    let r = queue_call_is_stored(&url).await;
    let _ = std::fs::remove_dir_all(&dir);
    r
}

/// Fails (never skips) when PostgreSQL is unreachable.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_call_is_stored_in_postgres() -> anyhow::Result<()> {
    let base = std::env::var("HOTLINE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .connect(&base)
        .await
        .with_context(|| format!("PostgreSQL not reachable at {base}; start it with crates/crm/scripts/ensure-postgres.sh"))?;
    let schema = format!("cdr_e2e_{}", std::process::id());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await?;
    // The store URL selects the schema, as a deployment's config may.
    let sep = if base.contains('?') { '&' } else { '?' };
    let url = format!("{base}{sep}options[search_path]={schema}");
    let r = queue_call_is_stored(&url).await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await?;
    r
}
