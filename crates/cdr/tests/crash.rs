//! `kill -9` while calls are being recorded: every record acknowledged by
//! `CdrSink::record` is in the store afterwards, and the calls that were in progress are
//! settled as interrupted at the next start. The writer runs in a child process (this test
//! binary, re-run in child mode) that prints each acknowledged call id.

mod common;

use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::TestDb;
use hotline_cdr::{CallResult, CdrWriter};

const CHILD_ENV: &str = "HOTLINE_CDR_CRASH_CHILD";
const TEST_NAME: &str = "kill_9_loses_no_acknowledged_record";

/// Child mode: record calls forever (bounded), printing `ack ID` after each commit.
fn child(location: &str, schema: Option<String>) {
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let db = TestDb {
            location: location.to_string(),
            pg_schema: schema,
        };
        let store = db.open().await;
        let (sink, _task) = CdrWriter::spawn(store);
        let mut out = std::io::stdout().lock();
        for i in 0..1_000_000u64 {
            let id = format!("call-{i}");
            let r = common::answered(&id, 1_700_000_000_000 + i as i64);
            // Several calls in flight at once, like a busy switch: start two, finish one.
            sink.started(&id, &r.sip_call_id, &r.caller, &r.dialed, r.arrived_at);
            if i > 0 {
                let prev = format!("call-{}", i - 1);
                sink.record(common::answered(&prev, 1_700_000_000_000 + i as i64 - 1))
                    .await
                    .unwrap();
                writeln!(out, "ack {prev}").unwrap();
                out.flush().unwrap();
            }
        }
    });
}

fn run(db: &TestDb) {
    let exe = std::env::current_exe().unwrap();
    let mut cmd = Command::new(exe);
    cmd.args(["--exact", TEST_NAME, "--nocapture", "--test-threads=1"])
        .env(CHILD_ENV, &db.location)
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit());
    if let Some(s) = &db.pg_schema {
        cmd.env("HOTLINE_CDR_CRASH_SCHEMA", s);
    }
    let mut proc = cmd.spawn().unwrap();
    let mut acked = Vec::new();
    let lines = BufReader::new(proc.stdout.take().unwrap()).lines();
    let started = Instant::now();
    for line in lines {
        let line = line.unwrap();
        if let Some(id) = line.strip_prefix("ack ") {
            acked.push(id.to_string());
            if acked.len() == 300 {
                break;
            }
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "child too slow"
        );
    }
    proc.kill().unwrap(); // SIGKILL
    proc.wait().unwrap();
    assert_eq!(acked.len(), 300, "the child acknowledged records");

    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(async {
        let store = db.open().await;
        for id in &acked {
            let c = store.call(id).await.unwrap();
            assert_eq!(
                c.map(|c| c.result),
                Some(CallResult::Answered),
                "acknowledged {id} lost"
            );
        }
        let open = store.in_progress().await.unwrap();
        assert!(
            !open.is_empty(),
            "the call in flight at the kill is in progress"
        );
        let n = store.mark_interrupted().await.unwrap();
        assert_eq!(n as usize, open.len());
        for c in &open {
            let rec = store.call(&c.call_id).await.unwrap().unwrap();
            assert_eq!(rec.result, CallResult::Interrupted);
            assert!(!acked.contains(&c.call_id));
        }
        store.close().await;
    });
}

#[test]
fn kill_9_loses_no_acknowledged_record() {
    if let Ok(location) = std::env::var(CHILD_ENV) {
        child(&location, std::env::var("HOTLINE_CDR_CRASH_SCHEMA").ok());
        return;
    }
    let rt = tokio::runtime::Runtime::new().unwrap();
    rt.block_on(common::with_sqlite(|db| async move {
        tokio::task::spawn_blocking(move || run(&db)).await.unwrap();
    }));
    rt.block_on(common::with_postgres(|db| async move {
        tokio::task::spawn_blocking(move || run(&db)).await.unwrap();
    }));
}
