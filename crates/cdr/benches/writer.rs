//! The CDR path as call control drives it, under load: each call is `started`, four queue
//! events and an awaited `record` (commit), with many calls in flight. Prints, per backend,
//! calls/s, process CPU per call and the `record` latency (p50/p99).
//!
//! ```text
//! cargo bench -p hotline-cdr --bench writer                      # 20,000 calls, 200 in flight
//! CALLS=100000 CONCURRENCY=500 cargo bench -p hotline-cdr --bench writer
//! ```
//! PostgreSQL: `HOTLINE_TEST_PG_URL` (default the test server); skipped when unreachable.

use std::sync::Arc;
use std::time::{Duration, Instant};

use hotline_cdr::{
    CallRecord, CallResult, CdrStore, CdrWriter, HangupSide, QueueEvent, QueueEventKind,
    StoreOptions,
};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// Process CPU time (user + system) from /proc, in milliseconds.
fn cpu_ms() -> f64 {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    let after = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or("");
    let f: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| f.get(i).and_then(|v| v.parse::<f64>().ok()).unwrap_or(0.0);
    // Fields 14 and 15 (utime, stime) are at 11 and 12 after the ")".
    (ticks(11) + ticks(12)) * 10.0 // USER_HZ = 100
}

fn record(id: &str, t: i64) -> CallRecord {
    CallRecord {
        call_id: id.into(),
        sip_call_id: format!("{id}@bench"),
        direction: "inbound".into(),
        caller: "+493012345678".into(),
        caller_name: None,
        dialed: "4000".into(),
        route: "queue:support".into(),
        queue: Some("support".into()),
        agent: Some("1001".into()),
        arrived_at: t,
        queued_at: Some(t),
        offered_at: Some(t + 1),
        answered_at: Some(t + 2),
        ended_at: t + 3,
        wait_ms: 2,
        talk_ms: 1,
        hold_ms: 0,
        result: CallResult::Answered,
        hangup_side: HangupSide::Caller,
        sip_status: 200,
        recording: Some(format!("/rec/{id}.wav")),
        transfers: 0,
    }
}

fn event(id: &str, t: i64, kind: QueueEventKind) -> QueueEvent {
    QueueEvent {
        at: t,
        call_id: id.into(),
        queue: "support".into(),
        agent: Some("1001".into()),
        event: kind,
        data: String::new(),
    }
}

async fn load(name: &str, store: CdrStore, calls: usize, concurrency: usize) {
    let (sink, task) = CdrWriter::spawn(store.clone());
    let next = Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let cpu0 = cpu_ms();
    let t0 = Instant::now();
    let mut workers = Vec::new();
    for _ in 0..concurrency {
        let (sink, next, name) = (sink.clone(), next.clone(), name.to_string());
        workers.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            loop {
                let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                if i >= calls {
                    return lat;
                }
                let id = format!("{name}-{i}");
                let t = 1_700_000_000_000 + i as i64;
                sink.started(&id, format!("{id}@bench"), "+493012345678", "4000", t);
                for k in [
                    QueueEventKind::EnterQueue,
                    QueueEventKind::Offer,
                    QueueEventKind::Connect,
                    QueueEventKind::CompleteCaller,
                ] {
                    sink.queue_event(event(&id, t, k));
                }
                let s = Instant::now();
                sink.record(record(&id, t)).await.expect("record");
                lat.push(s.elapsed());
            }
        }));
    }
    let mut lat: Vec<Duration> = Vec::new();
    for w in workers {
        lat.extend(w.await.unwrap());
    }
    let wall = t0.elapsed();
    let cpu = cpu_ms() - cpu0;
    drop(sink);
    task.await.unwrap();
    lat.sort();
    let pct = |p: f64| lat[((lat.len() as f64 * p) as usize).min(lat.len() - 1)];
    println!(
        "{name:<14} {calls} calls, {concurrency} in flight: {:>8.0} calls/s, CPU {:.3} ms/call, record p50 {:.2} ms p99 {:.2} ms",
        calls as f64 / wall.as_secs_f64(),
        cpu / calls as f64,
        pct(0.5).as_secs_f64() * 1000.0,
        pct(0.99).as_secs_f64() * 1000.0,
    );
    store.close().await;
}

fn main() {
    // `cargo test --benches` runs bench targets with --bench absent: stay quick there.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    let calls = env("CALLS", 20_000);
    let concurrency = env("CONCURRENCY", 200);
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        for (name, full) in [("sqlite-full", true), ("sqlite-normal", false)] {
            let dir =
                std::env::temp_dir().join(format!("hotline-cdr-bench-{}", std::process::id()));
            let path = dir.join(format!("{name}.db"));
            let store = CdrStore::open_sqlite_with(
                &path,
                &StoreOptions {
                    sqlite_full_sync: full,
                    ..StoreOptions::default()
                },
            )
            .await
            .unwrap();
            load(name, store, calls, concurrency).await;
            let _ = std::fs::remove_dir_all(dir);
        }
        let url = std::env::var("HOTLINE_TEST_PG_URL")
            .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into());
        let schema = format!("cdr_bench_{}", std::process::id());
        let admin = match sqlx::postgres::PgPoolOptions::new()
            .max_connections(1)
            .connect(&url)
            .await
        {
            Ok(p) => p,
            Err(e) => {
                println!("postgres       skipped: {e}");
                return;
            }
        };
        sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
            .execute(&admin)
            .await
            .unwrap();
        let store = CdrStore::connect_postgres_with(
            &url,
            &StoreOptions {
                pg_schema: Some(schema.clone()),
                ..StoreOptions::default()
            },
        )
        .await
        .unwrap();
        load("postgres", store, calls, concurrency).await;
        sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
            .execute(&admin)
            .await
            .unwrap();
    });
}
