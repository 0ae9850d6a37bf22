//! Runs one test body against a fresh SQLite file or a fresh PostgreSQL schema (so tests
//! run in parallel), and removes it afterwards even when the body panics.
#![allow(dead_code)]

use futures_util::FutureExt;
use hotline_cdr::{CallRecord, CallResult, CdrStore, HangupSide, StoreOptions};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The server the suite uses; override with HOTLINE_TEST_PG_URL.
pub fn pg_url() -> String {
    std::env::var("HOTLINE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

pub fn unique(prefix: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}_{}_{}_{nanos}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Where a test's database lives: open as many stores on it as the test needs.
#[derive(Clone, Debug)]
pub struct TestDb {
    /// A path (SQLite) or a URL (PostgreSQL).
    pub location: String,
    pub pg_schema: Option<String>,
}

impl TestDb {
    pub fn options(&self) -> StoreOptions {
        StoreOptions {
            pg_schema: self.pg_schema.clone(),
            ..StoreOptions::default()
        }
    }

    pub async fn open(&self) -> CdrStore {
        CdrStore::open(&self.location, &self.options())
            .await
            .expect("open CDR store")
    }

    /// The same database reached through another URL (e.g. a proxy in front of it).
    pub async fn open_at(&self, location: &str) -> CdrStore {
        CdrStore::open(location, &self.options())
            .await
            .expect("open CDR store")
    }

    pub fn is_postgres(&self) -> bool {
        self.pg_schema.is_some()
    }
}

pub async fn with_sqlite<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let path = std::env::temp_dir().join(format!("{}.db", unique("hotline_cdr_test")));
    let db = TestDb {
        location: path.display().to_string(),
        pg_schema: None,
    };
    let result = AssertUnwindSafe(body(db)).catch_unwind().await;
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.clone().into_os_string();
        p.push(suffix);
        let _ = std::fs::remove_file(p);
    }
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Fails (never skips) when PostgreSQL is unreachable: a green run must mean both backends.
pub async fn with_postgres<F, Fut>(body: F)
where
    F: FnOnce(TestDb) -> Fut,
    Fut: Future<Output = ()>,
{
    let url = pg_url();
    let admin = sqlx::postgres::PgPoolOptions::new()
        .max_connections(1)
        .acquire_timeout(std::time::Duration::from_secs(5))
        .connect(&url)
        .await
        .unwrap_or_else(|e| {
            panic!("PostgreSQL not reachable at {url}: {e}\nstart it with crates/crm/scripts/ensure-postgres.sh")
        });
    let schema = unique("cdr_test");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create test schema");
    let db = TestDb {
        location: url,
        pg_schema: Some(schema.clone()),
    };
    let result = AssertUnwindSafe(body(db)).catch_unwind().await;
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .expect("drop test schema");
    admin.close().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Declares each listed `async fn(TestDb)` as a test on both backends.
#[macro_export]
macro_rules! on_both_backends {
    ($($name:ident),* $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { $crate::common::with_sqlite(super::$name).await; })*
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { $crate::common::with_postgres(super::$name).await; })*
        }
    };
}

/// An answered queue call; tests change what they need.
pub fn answered(id: &str, arrived_at: i64) -> CallRecord {
    CallRecord {
        call_id: id.into(),
        sip_call_id: format!("{id}@caller.test"),
        direction: "inbound".into(),
        caller: "+493012345678".into(),
        caller_name: Some("Erika Mustermann".into()),
        dialed: "4000".into(),
        route: "queue:support".into(),
        queue: Some("support".into()),
        agent: Some("1001".into()),
        arrived_at,
        queued_at: Some(arrived_at + 100),
        offered_at: Some(arrived_at + 5_000),
        answered_at: Some(arrived_at + 8_100),
        ended_at: arrived_at + 68_100,
        wait_ms: 8_000,
        talk_ms: 55_000,
        hold_ms: 5_000,
        result: CallResult::Answered,
        hangup_side: HangupSide::Caller,
        sip_status: 200,
        recording: Some(format!("/var/lib/hotline/rec/{id}.wav")),
        transfers: 1,
    }
}
