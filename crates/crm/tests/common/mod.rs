//! Runs one test body against a fresh SQLite file or a fresh PostgreSQL schema, and
//! removes it afterwards even when the body panics.
#![allow(dead_code)]

use futures_util::FutureExt;
use hotline_crm::{Store, StoreConfig};
use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::sync::atomic::{AtomicU64, Ordering};

static COUNTER: AtomicU64 = AtomicU64::new(0);

/// The server the suite uses; override with HOTLINE_TEST_PG_URL.
pub fn pg_url() -> String {
    std::env::var("HOTLINE_TEST_PG_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/test".into())
}

fn unique(prefix: &str) -> String {
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

pub async fn with_sqlite<F, Fut>(body: F)
where
    F: FnOnce(Store) -> Fut,
    Fut: Future<Output = ()>,
{
    let path = std::env::temp_dir().join(format!("{}.db", unique("hotline_crm_test")));
    let store = Store::open_sqlite(&path, &StoreConfig::default())
        .await
        .expect("open sqlite store");
    let result = AssertUnwindSafe(body(store.clone())).catch_unwind().await;
    store.close().await;
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
    F: FnOnce(Store) -> Fut,
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
    let schema = unique("crm_test");
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE SCHEMA {schema}")))
        .execute(&admin)
        .await
        .expect("create test schema");
    let config = StoreConfig {
        pg_schema: Some(schema.clone()),
        max_connections: 4,
        ..StoreConfig::default()
    };
    let opened = Store::open(&url, &config).await;
    let result = match opened {
        Ok(store) => {
            assert_eq!(store.backend(), hotline_crm::Backend::Postgres);
            let r = AssertUnwindSafe(body(store.clone())).catch_unwind().await;
            store.close().await;
            r
        }
        Err(e) => {
            Err(Box::new(format!("open postgres store: {e}")) as Box<dyn std::any::Any + Send>)
        }
    };
    sqlx::query(sqlx::AssertSqlSafe(format!("DROP SCHEMA {schema} CASCADE")))
        .execute(&admin)
        .await
        .expect("drop test schema");
    admin.close().await;
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}

/// Declares each listed `async fn(Store)` as a test on both backends.
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
