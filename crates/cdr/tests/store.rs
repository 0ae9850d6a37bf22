//! The CDR store and writer against real SQLite and PostgreSQL.

mod common;

use std::time::Duration;

use common::{TestDb, answered};
use hotline_cdr::{
    CallResult, CdrError, CdrWriter, HangupSide, QueueEvent, QueueEventKind, StartedCall,
    VoicemailFilter, VoicemailMessage, WriterConfig,
};

fn event(at: i64, call: &str, kind: QueueEventKind, data: &str) -> QueueEvent {
    QueueEvent {
        at,
        call_id: call.into(),
        queue: "support".into(),
        agent: Some("1001".into()),
        event: kind,
        data: data.into(),
    }
}

async fn record_is_committed_when_it_returns(db: TestDb) {
    let store = db.open().await;
    let (sink, task) = CdrWriter::spawn(store.clone());
    let r = answered("c-1", 1_700_000_000_000);
    sink.record(r.clone()).await.unwrap();
    // Read through a second, independent store: the row is committed, not cached.
    let other = db.open().await;
    assert_eq!(other.call("c-1").await.unwrap(), Some(r.clone()));
    assert_eq!(
        other.calls(r.arrived_at, r.arrived_at + 1).await.unwrap(),
        vec![r.clone()]
    );
    assert_eq!(other.call("unknown").await.unwrap(), None);
    drop(sink);
    tokio::time::timeout(Duration::from_secs(10), task)
        .await
        .expect("writer exits when every sink is dropped")
        .unwrap();
    other.close().await;
    store.close().await;
}

async fn in_progress_row_is_completed_by_the_record(db: TestDb) {
    let store = db.open().await;
    let (sink, _task) = CdrWriter::spawn(store.clone());
    let r = answered("c-2", 1_700_000_000_000);
    sink.started(
        &r.call_id,
        &r.sip_call_id,
        &r.caller,
        &r.dialed,
        r.arrived_at,
    );
    sink.flush().await.unwrap();
    let open = store.in_progress().await.unwrap();
    assert_eq!(
        open,
        vec![StartedCall {
            call_id: r.call_id.clone(),
            sip_call_id: r.sip_call_id.clone(),
            caller: r.caller.clone(),
            dialed: r.dialed.clone(),
            arrived_at: r.arrived_at,
        }]
    );
    assert_eq!(store.call("c-2").await.unwrap(), None, "not finished yet");
    sink.record(r.clone()).await.unwrap();
    assert!(store.in_progress().await.unwrap().is_empty());
    assert_eq!(store.call("c-2").await.unwrap(), Some(r.clone()));
    // A late duplicate "started" never reopens a finished call.
    sink.started(
        &r.call_id,
        &r.sip_call_id,
        &r.caller,
        &r.dialed,
        r.arrived_at,
    );
    sink.flush().await.unwrap();
    assert_eq!(store.call("c-2").await.unwrap(), Some(r));
    store.close().await;
}

/// A crash leaves rows in progress; the next start settles them as interrupted.
async fn mark_interrupted_settles_calls_left_in_progress(db: TestDb) {
    let store = db.open().await;
    let t0 = 1_700_000_000_000;
    for (i, id) in ["a", "b", "c"].iter().enumerate() {
        store
            .start_call(&StartedCall {
                call_id: id.to_string(),
                sip_call_id: format!("{id}@sip"),
                caller: "+4930111".into(),
                dialed: "4000".into(),
                arrived_at: t0 + i as i64,
            })
            .await
            .unwrap();
    }
    store.write_call(&answered("b", t0 + 1)).await.unwrap();
    store.close().await;

    // "Restart": a new store on the same database.
    let store = db.open().await;
    assert_eq!(store.in_progress().await.unwrap().len(), 2);
    assert_eq!(store.mark_interrupted().await.unwrap(), 2);
    assert_eq!(store.mark_interrupted().await.unwrap(), 0, "idempotent");
    assert!(store.in_progress().await.unwrap().is_empty());
    let calls = store.calls(t0, t0 + 10).await.unwrap();
    let results: Vec<(&str, CallResult)> = calls
        .iter()
        .map(|c| (c.call_id.as_str(), c.result.clone()))
        .collect();
    assert_eq!(
        results,
        vec![
            ("a", CallResult::Interrupted),
            ("b", CallResult::Answered),
            ("c", CallResult::Interrupted)
        ]
    );
    let a = &calls[0];
    assert_eq!(a.hangup_side, HangupSide::System);
    assert_eq!(a.ended_at, a.arrived_at);
    assert_eq!(a.sip_call_id, "a@sip");
    store.close().await;
}

async fn queue_events_are_batched_in_order(db: TestDb) {
    let store = db.open().await;
    let (sink, task) = CdrWriter::spawn(store.clone());
    let t0 = 1_700_000_000_000;
    let kinds = QueueEventKind::ALL;
    let n = 2_000;
    for i in 0..n {
        let kind = kinds[i % kinds.len()].clone();
        sink.queue_event(event(
            t0 + i as i64,
            &format!("c{}", i / 10),
            kind,
            &i.to_string(),
        ));
    }
    sink.flush().await.unwrap();
    assert_eq!(sink.dropped_events(), 0);
    let log = store.queue_log(t0, t0 + n as i64).await.unwrap();
    assert_eq!(log.len(), n);
    for (i, e) in log.iter().enumerate() {
        assert_eq!(e.data, i.to_string());
        assert_eq!(e.event, kinds[i % kinds.len()]);
    }
    // The window is half-open.
    assert_eq!(store.queue_log(t0 + 10, t0 + 20).await.unwrap().len(), 10);
    drop(sink);
    task.await.unwrap();
    store.close().await;
}

/// The CRM store and the CDR store migrate and work on one database, in either order.
async fn shares_a_database_with_the_crm_store(db: TestDb) {
    let crm_config = hotline_crm::StoreConfig {
        pg_schema: db.pg_schema.clone(),
        max_connections: 2,
        ..hotline_crm::StoreConfig::default()
    };
    let crm = hotline_crm::Store::open(&db.location, &crm_config)
        .await
        .expect("CRM store migrates first");
    let cdr = db.open().await;
    // Reopen both: each now finds the other's migration applied and must not object.
    crm.close().await;
    cdr.close().await;
    let cdr = db.open().await;
    let crm = hotline_crm::Store::open(&db.location, &crm_config)
        .await
        .expect("CRM store reopens next to the CDR migrations");
    let id = crm
        .create_customer(
            &hotline_crm::CustomerData {
                surname: "Mustermann".into(),
                ..Default::default()
            },
            &["+493012345678"],
        )
        .await
        .unwrap();
    assert!(crm.customer(id).await.unwrap().is_some());
    cdr.write_call(&answered("shared", 1)).await.unwrap();
    assert!(cdr.call("shared").await.unwrap().is_some());
    crm.close().await;
    cdr.close().await;
}

/// A record the writer cannot commit in time is reported, not silently lost, and a flush
/// waits for it.
async fn record_reports_not_yet_durable_when_the_writer_is_stuck(db: TestDb) {
    let store = db.open().await;
    let (sink, _task) = CdrWriter::spawn_with(
        store.clone(),
        WriterConfig {
            record_timeout: Duration::from_millis(300),
            ..WriterConfig::default()
        },
    );
    store.close().await; // every statement now fails
    let err = sink.record(answered("late", 1)).await.unwrap_err();
    assert!(
        matches!(err, CdrError::NotYetDurable(ref id) if id == "late"),
        "{err}"
    );
}

on_both_backends!(
    record_is_committed_when_it_returns,
    in_progress_row_is_completed_by_the_record,
    mark_interrupted_settles_calls_left_in_progress,
    queue_events_are_batched_in_order,
    shares_a_database_with_the_crm_store,
    record_reports_not_yet_durable_when_the_writer_is_stuck,
    commits_are_durable,
    voicemail_messages_commit_with_the_call_and_can_be_marked,
);

/// Group commit: rows that arrive within `commit_interval` of the last commit wait and
/// share the next one (at 1,000 calls/s, a commit per call cost more than the rows).
/// Time is paused once the writer has its connection, so the interval is exact.
#[tokio::test]
async fn rows_arriving_soon_after_a_commit_share_the_next() {
    common::with_sqlite(|db| async move {
        let store = db.open().await;
        let (sink, task) = CdrWriter::spawn_with(
            store.clone(),
            WriterConfig {
                commit_interval: Duration::from_secs(10),
                ..WriterConfig::default()
            },
        );
        let t0 = 1_700_000_000_000;
        sink.queue_event(event(t0, "c1", QueueEventKind::EnterQueue, "1"));
        sink.flush().await.unwrap();
        assert_eq!(sink.commits(), 1, "an idle writer commits at once");
        tokio::time::pause();
        sink.queue_event(event(t0 + 1, "c2", QueueEventKind::EnterQueue, "2"));
        tokio::time::sleep(Duration::from_millis(1)).await;
        sink.queue_event(event(t0 + 2, "c3", QueueEventKind::EnterQueue, "3"));
        sink.flush().await.unwrap();
        assert_eq!(sink.commits(), 2, "the two later rows shared one commit");
        tokio::time::resume();
        assert_eq!(store.queue_log(t0, t0 + 3).await.unwrap().len(), 3);
        drop(sink);
        task.await.unwrap();
        store.close().await;
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unsupported_locations_are_refused() {
    for bad in ["", "mysql://x/y"] {
        assert!(matches!(
            hotline_cdr::CdrStore::open(bad, &Default::default()).await,
            Err(CdrError::BadLocation(_))
        ));
    }
}

async fn commits_are_durable(db: TestDb) {
    let store = db.open().await;
    let d = store.durability().await.unwrap();
    if db.is_postgres() {
        assert_eq!(d, "synchronous_commit=on");
    } else {
        assert_eq!(d, "synchronous=full journal_mode=wal");
    }
    store.close().await;
}

fn message(call_id: &str, mailbox: &str, queue: Option<&str>, at: i64) -> VoicemailMessage {
    VoicemailMessage {
        call_id: call_id.into(),
        mailbox: mailbox.into(),
        queue: queue.map(str::to_string),
        caller: "+4930123".into(),
        caller_name: Some("Ann".into()),
        recorded_at: at,
        duration_ms: 2_040,
        path: format!("/tmp/{call_id}.wav"),
        ended_by: "key".into(),
        listened_at: None,
        deleted_at: None,
    }
}

async fn voicemail_messages_commit_with_the_call_and_can_be_marked(db: TestDb) {
    let store = db.open().await;
    let (sink, _task) = CdrWriter::spawn(store.clone());
    let a = message("vm-a", "support-box", Some("support"), 1_000);
    let b = message("vm-b", "sales-box", Some("sales"), 2_000);
    sink.voicemail(a.clone()).await.unwrap();
    sink.voicemail(b.clone()).await.unwrap();
    // The call's record returns once committed; the messages were sent before it.
    sink.record(answered("vm-b", 2_000)).await.unwrap();
    let other = db.open().await;
    let all = VoicemailFilter {
        limit: 10,
        ..VoicemailFilter::default()
    };
    assert_eq!(
        other.voicemail_list(&all).await.unwrap(),
        vec![b.clone(), a.clone()]
    );
    let support = VoicemailFilter {
        queues: vec!["support".into()],
        ..all.clone()
    };
    assert_eq!(
        other.voicemail_list(&support).await.unwrap(),
        vec![a.clone()]
    );
    let sales_box = VoicemailFilter {
        mailbox: Some("sales-box".into()),
        ..all.clone()
    };
    assert_eq!(
        other.voicemail_list(&sales_box).await.unwrap(),
        vec![b.clone()]
    );
    // Listened: the first time counts.
    assert!(other.voicemail_listened("vm-a", 5_000).await.unwrap());
    assert!(other.voicemail_listened("vm-a", 6_000).await.unwrap());
    let got = other.voicemail_get("vm-a").await.unwrap().unwrap();
    assert_eq!(got.listened_at, Some(5_000));
    // Deleted: hidden from lists unless asked for.
    assert!(other.voicemail_deleted("vm-b", 7_000).await.unwrap());
    let listed = other.voicemail_list(&all).await.unwrap();
    assert_eq!(
        listed
            .iter()
            .map(|m| m.call_id.as_str())
            .collect::<Vec<_>>(),
        ["vm-a"]
    );
    let with_deleted = VoicemailFilter {
        deleted: true,
        ..all
    };
    assert_eq!(other.voicemail_list(&with_deleted).await.unwrap().len(), 2);
    assert!(!other.voicemail_deleted("nope", 7_000).await.unwrap());
    assert_eq!(other.voicemail_get("nope").await.unwrap(), None);
    // A retried batch does not fail on a message already written.
    sink.voicemail(a.clone()).await.unwrap();
    sink.flush().await.unwrap();
    other.close().await;
    store.close().await;
}
