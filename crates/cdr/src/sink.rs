//! The sink call control writes to, and the writer task behind it.
//!
//! Call records are durable before [`CdrSink::record`] returns (the switch writes the CDR
//! before it releases the dialog); queue events are fire-and-forget. Both travel through
//! one bounded channel, in order, to the [`CdrWriter`] task, which commits them in batches
//! (one transaction per batch: one fsync for many rows). Under load, commits start at most
//! every [`WriterConfig::commit_interval`] (group commit), so one transaction carries many
//! calls' rows; an idle writer commits at once. When the store fails, the batch
//! stays in the writer's bounded buffer and is retried with backoff; nothing is dropped
//! while the buffer has room, and when it is full the writer stops reading the channel, so
//! `record` callers see [`CdrError::Overloaded`] after their bound instead of waiting
//! forever, and `queue_event` counts what it had to drop.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::sync::{Notify, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::error::{CdrError, Result};
use crate::store::{CdrStore, WriterConn};
use crate::{CallRecord, QueueEvent, UnixMillis};

/// A call that has arrived and is not finished: written at once so that a crash leaves a
/// trace ([`CdrStore::mark_interrupted`] turns it into an `Interrupted` record at startup).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct StartedCall {
    pub call_id: String,
    pub sip_call_id: String,
    pub caller: String,
    pub dialed: String,
    pub arrived_at: UnixMillis,
}

/// What travels from the sinks to the writer.
#[derive(Debug)]
pub(crate) enum Msg {
    Started(StartedCall),
    Record(Box<CallRecord>, Option<oneshot::Sender<()>>),
    Event(QueueEvent),
    /// A voicemail message (written before the call's record, in the same order).
    Voicemail(Box<crate::VoicemailMessage>),
    /// Answered once everything sent before it is committed.
    Flush(oneshot::Sender<()>),
}

impl Msg {
    fn is_row(&self) -> bool {
        !matches!(self, Msg::Flush(_))
    }
}

/// Tuning of the writer.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Channel between the sinks and the writer.
    pub channel: usize,
    /// Rows kept in memory while the store is failing (beyond the channel).
    pub buffer: usize,
    /// Most rows per transaction.
    pub max_batch: usize,
    /// Least time between the starts of two commits. Rows arriving sooner wait for the
    /// next one: at 1,000 calls/s a commit per call or two cost ≈ 8 more page writes and
    /// 5 thread wake-ups per call than the rows themselves. A row arriving after a quiet
    /// spell is committed at once, so this adds latency only under load, and at most
    /// this much (the channel holds the rows meanwhile; see `channel`).
    pub commit_interval: Duration,
    /// How long [`CdrSink::record`] waits for the commit before it reports
    /// [`CdrError::NotYetDurable`] (the row stays buffered and is retried).
    pub record_timeout: Duration,
    /// First and longest pause between retries while the store fails.
    pub retry_min: Duration,
    pub retry_max: Duration,
}

impl Default for WriterConfig {
    fn default() -> Self {
        WriterConfig {
            channel: 8192,
            buffer: 200_000,
            max_batch: 512,
            commit_interval: Duration::from_millis(20),
            record_timeout: Duration::from_secs(2),
            retry_min: Duration::from_millis(100),
            retry_max: Duration::from_secs(5),
        }
    }
}

#[derive(Default)]
struct Counters {
    dropped_events: AtomicU64,
    dropped_started: AtomicU64,
    commits: AtomicU64,
}

#[derive(Clone)]
enum Target {
    Memory(Arc<MemoryInner>),
    Writer {
        tx: mpsc::Sender<Msg>,
        record_timeout: Duration,
    },
}

/// Cloneable handle to the writer task (or to memory, see [`CdrSink::memory`]).
#[derive(Clone)]
pub struct CdrSink {
    target: Target,
    counters: Arc<Counters>,
}

impl std::fmt::Debug for CdrSink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kind = match self.target {
            Target::Memory(_) => "memory",
            Target::Writer { .. } => "writer",
        };
        f.debug_struct("CdrSink").field("target", &kind).finish()
    }
}

impl CdrSink {
    /// A sink that keeps rows in memory (for tests and for running without a store).
    pub fn memory() -> (CdrSink, MemoryCdrs) {
        let inner = Arc::new(MemoryInner::default());
        (
            CdrSink {
                target: Target::Memory(inner.clone()),
                counters: Arc::default(),
            },
            MemoryCdrs { inner },
        )
    }

    /// Records a finished call; returns once it is committed. Bounded: after the writer's
    /// `record_timeout` it returns [`CdrError::NotYetDurable`] (buffered, still retried) or
    /// [`CdrError::Overloaded`] (the queue to the writer stayed full; row not accepted).
    pub async fn record(&self, r: CallRecord) -> Result<()> {
        match &self.target {
            Target::Memory(m) => {
                m.push(|s| {
                    s.started.retain(|c| c.call_id != r.call_id);
                    s.calls.push(r);
                });
                Ok(())
            }
            Target::Writer { tx, record_timeout } => {
                let deadline = tokio::time::Instant::now() + *record_timeout;
                let call_id = r.call_id.clone();
                let (done_tx, done_rx) = oneshot::channel();
                match tokio::time::timeout_at(
                    deadline,
                    tx.send(Msg::Record(Box::new(r), Some(done_tx))),
                )
                .await
                {
                    Err(_) => return Err(CdrError::Overloaded(call_id)),
                    Ok(Err(_)) => return Err(CdrError::Closed),
                    Ok(Ok(())) => {}
                }
                match tokio::time::timeout_at(deadline, done_rx).await {
                    Ok(Ok(())) => Ok(()),
                    Ok(Err(_)) => Err(CdrError::Closed),
                    Err(_) => Err(CdrError::NotYetDurable(call_id)),
                }
            }
        }
    }

    /// Notes that a call has arrived (an in-progress row). Never blocks; counted if dropped.
    pub fn started(
        &self,
        call_id: impl Into<String>,
        sip_call_id: impl Into<String>,
        caller: impl Into<String>,
        dialed: impl Into<String>,
        arrived_at: UnixMillis,
    ) {
        let c = StartedCall {
            call_id: call_id.into(),
            sip_call_id: sip_call_id.into(),
            caller: caller.into(),
            dialed: dialed.into(),
            arrived_at,
        };
        match &self.target {
            Target::Memory(m) => m.push(|s| s.started.push(c)),
            Target::Writer { tx, .. } => {
                if tx.try_send(Msg::Started(c)).is_err() {
                    self.counters
                        .dropped_started
                        .fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Appends a queue-log line. Never blocks: when the writer's queue is full the event is
    /// dropped and counted ([`CdrSink::dropped_events`]).
    pub fn queue_event(&self, e: QueueEvent) {
        match &self.target {
            Target::Memory(m) => m.push(|s| s.events.push(e)),
            Target::Writer { tx, .. } => {
                if tx.try_send(Msg::Event(e)).is_err() {
                    self.counters.dropped_events.fetch_add(1, Ordering::Relaxed);
                }
            }
        }
    }

    /// Stores a voicemail message. Send it before the call's [`CdrSink::record`]: rows
    /// commit in order, so the record's return means the message is durable too. Waits
    /// at most the writer's `record_timeout` for room in its queue.
    pub async fn voicemail(&self, v: crate::VoicemailMessage) -> Result<()> {
        match &self.target {
            Target::Memory(m) => {
                m.push(|s| s.voicemail.push(v));
                Ok(())
            }
            Target::Writer { tx, record_timeout } => {
                let call_id = v.call_id.clone();
                match tokio::time::timeout(*record_timeout, tx.send(Msg::Voicemail(Box::new(v))))
                    .await
                {
                    Err(_) => Err(CdrError::Overloaded(call_id)),
                    Ok(Err(_)) => Err(CdrError::Closed),
                    Ok(Ok(())) => Ok(()),
                }
            }
        }
    }

    /// Waits until everything sent through any sink before this call is committed. While
    /// the store is down this waits for it; callers that must not wait bound it with a
    /// timeout.
    pub async fn flush(&self) -> Result<()> {
        match &self.target {
            Target::Memory(_) => Ok(()),
            Target::Writer { tx, .. } => {
                let (done_tx, done_rx) = oneshot::channel();
                tx.send(Msg::Flush(done_tx))
                    .await
                    .map_err(|_| CdrError::Closed)?;
                done_rx.await.map_err(|_| CdrError::Closed)
            }
        }
    }

    /// Queue events dropped because the writer's queue was full.
    pub fn dropped_events(&self) -> u64 {
        self.counters.dropped_events.load(Ordering::Relaxed)
    }

    /// In-progress notes dropped because the writer's queue was full (their calls' records
    /// still arrive through [`CdrSink::record`]).
    pub fn dropped_started(&self) -> u64 {
        self.counters.dropped_started.load(Ordering::Relaxed)
    }

    /// Transactions the writer has committed rows in (0 for a memory sink).
    pub fn commits(&self) -> u64 {
        self.counters.commits.load(Ordering::Relaxed)
    }
}

#[derive(Default)]
struct MemoryState {
    started: Vec<StartedCall>,
    calls: Vec<CallRecord>,
    events: Vec<QueueEvent>,
    voicemail: Vec<crate::VoicemailMessage>,
}

#[derive(Default)]
struct MemoryInner {
    state: Mutex<MemoryState>,
    changed: Notify,
}

impl MemoryInner {
    fn push(&self, f: impl FnOnce(&mut MemoryState)) {
        {
            let mut s = self.state.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut s);
        }
        self.changed.notify_waiters();
    }
}

/// Reads back what a [`CdrSink::memory`] sink was given.
#[derive(Clone)]
pub struct MemoryCdrs {
    inner: Arc<MemoryInner>,
}

impl MemoryCdrs {
    fn read<T>(&self, f: impl FnOnce(&MemoryState) -> T) -> T {
        let s = self.inner.state.lock().unwrap_or_else(|p| p.into_inner());
        f(&s)
    }

    /// Finished calls, in the order they were recorded.
    pub fn calls(&self) -> Vec<CallRecord> {
        self.read(|s| s.calls.clone())
    }

    /// Queue-log lines, in order.
    pub fn events(&self) -> Vec<QueueEvent> {
        self.read(|s| s.events.clone())
    }

    /// Calls noted by [`CdrSink::started`] and not yet recorded.
    pub fn voicemail(&self) -> Vec<crate::VoicemailMessage> {
        self.read(|s| s.voicemail.clone())
    }

    pub fn in_progress(&self) -> Vec<StartedCall> {
        self.read(|s| s.started.clone())
    }

    /// Waits until at least `n` calls are recorded (or `timeout`), then returns them all.
    pub async fn wait_calls(&self, n: usize, timeout: Duration) -> Vec<CallRecord> {
        self.wait(timeout, |s| s.calls.len() >= n).await;
        self.calls()
    }

    /// Waits until at least `n` queue events are logged (or `timeout`), then returns them.
    pub async fn wait_events(&self, n: usize, timeout: Duration) -> Vec<QueueEvent> {
        self.wait(timeout, |s| s.events.len() >= n).await;
        self.events()
    }

    async fn wait(&self, timeout: Duration, done: impl Fn(&MemoryState) -> bool) {
        let _ = tokio::time::timeout(timeout, async {
            loop {
                let changed = self.inner.changed.notified();
                tokio::pin!(changed);
                changed.as_mut().enable();
                if self.read(&done) {
                    return;
                }
                changed.await;
            }
        })
        .await;
    }
}

/// The task that owns the store and commits what the sinks send.
pub struct CdrWriter;

impl CdrWriter {
    /// Spawns the writer with default tuning. Dropping every sink (after a
    /// [`CdrSink::flush`], or not) lets it drain what it holds and exit.
    pub fn spawn(store: CdrStore) -> (CdrSink, JoinHandle<()>) {
        CdrWriter::spawn_with(store, WriterConfig::default())
    }

    pub fn spawn_with(store: CdrStore, config: WriterConfig) -> (CdrSink, JoinHandle<()>) {
        let (tx, rx) = mpsc::channel(config.channel.max(1));
        let counters = Arc::<Counters>::default();
        let sink = CdrSink {
            target: Target::Writer {
                tx,
                record_timeout: config.record_timeout,
            },
            counters: counters.clone(),
        };
        let task = tokio::spawn(run(store, rx, config, counters));
        (sink, task)
    }
}

async fn run(
    store: CdrStore,
    mut rx: mpsc::Receiver<Msg>,
    cfg: WriterConfig,
    counters: Arc<Counters>,
) {
    let mut pending: VecDeque<Msg> = VecDeque::new();
    let mut closed = false;
    let mut last_commit: Option<tokio::time::Instant> = None;
    let mut backoff = cfg.retry_min;
    let mut failing_since: Option<tokio::time::Instant> = None;
    let cap = cfg.buffer.max(cfg.max_batch).max(1);
    let mut conn: Option<WriterConn> = None;
    loop {
        while !closed && pending.len() < cap {
            match rx.try_recv() {
                Ok(m) => pending.push_back(m),
                Err(mpsc::error::TryRecvError::Empty) => break,
                Err(mpsc::error::TryRecvError::Disconnected) => closed = true,
            }
        }
        if pending.is_empty() {
            if closed {
                return;
            }
            match rx.recv().await {
                Some(m) => pending.push_back(m),
                None => closed = true,
            }
            continue;
        }
        // Group commit: too soon after the last one, let rows gather in the channel until
        // it is due. Not reading the channel meanwhile means senders wake nobody: the
        // writer wakes once per commit, not once per row.
        if let Some(due) = last_commit.map(|t| t + cfg.commit_interval)
            && !closed
            && pending.len() < cfg.max_batch
            && pending.iter().any(Msg::is_row)
            && tokio::time::Instant::now() < due
        {
            tokio::time::sleep_until(due).await;
            continue;
        }
        // Take up to max_batch rows (plus the flush markers between them).
        let mut n = 0;
        let mut rows = 0;
        while n < pending.len() && rows < cfg.max_batch {
            if pending[n].is_row() {
                rows += 1;
            }
            n += 1;
        }
        let batch = &pending.make_contiguous()[..n];
        let has_rows = batch.iter().any(Msg::is_row);
        if has_rows {
            last_commit = Some(tokio::time::Instant::now());
        }
        let started = std::time::Instant::now();
        let written = write(&store, &mut conn, batch).await;
        metrics::histogram!("hotline_cdr_write_seconds", "result" => if written.is_ok() { "ok" } else { "error" })
            .record(started.elapsed().as_secs_f64());
        match written {
            Ok(()) => {
                if has_rows {
                    counters.commits.fetch_add(1, Ordering::Relaxed);
                }
                if let Some(since) = failing_since.take() {
                    tracing::info!(
                        outage_ms = since.elapsed().as_millis() as u64,
                        buffered = pending.len(),
                        "CDR store reachable again; writing buffered rows"
                    );
                }
                backoff = cfg.retry_min;
                for m in pending.drain(..n) {
                    match m {
                        Msg::Record(_, Some(done)) | Msg::Flush(done) => {
                            let _ = done.send(());
                        }
                        _ => {}
                    }
                }
            }
            Err(e) => {
                if failing_since.is_none() {
                    failing_since = Some(tokio::time::Instant::now());
                }
                tracing::warn!(error = %e, buffered = pending.len(), retry_ms = backoff.as_millis() as u64,
                    "CDR store write failed; rows kept and retried");
                let sleep = tokio::time::sleep(backoff);
                tokio::pin!(sleep);
                loop {
                    tokio::select! {
                        _ = &mut sleep => break,
                        m = rx.recv(), if !closed && pending.len() < cap => match m {
                            Some(m) => pending.push_back(m),
                            None => closed = true,
                        },
                    }
                }
                backoff = (backoff * 2).min(cfg.retry_max);
            }
        }
    }
}

/// Writes `batch` on the writer's own connection, taken from the store when there is none
/// (at start, or after a failed write: a broken connection is not tried again).
async fn write(store: &CdrStore, conn: &mut Option<WriterConn>, batch: &[Msg]) -> Result<()> {
    let c = match conn {
        Some(c) => c,
        None => conn.insert(store.writer_conn().await?),
    };
    let written = CdrStore::write_batch_on(c, batch).await;
    if written.is_err() {
        *conn = None;
    }
    written
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{CallResult, HangupSide, QueueEventKind};

    pub(crate) fn record(id: &str) -> CallRecord {
        CallRecord {
            call_id: id.into(),
            sip_call_id: format!("{id}@test"),
            direction: "inbound".into(),
            caller: "+4930123".into(),
            caller_name: None,
            dialed: "4000".into(),
            route: "queue:support".into(),
            queue: Some("support".into()),
            agent: Some("1001".into()),
            arrived_at: 1_000,
            queued_at: Some(1_100),
            offered_at: Some(2_000),
            answered_at: Some(3_000),
            ended_at: 10_000,
            wait_ms: 1_900,
            talk_ms: 7_000,
            hold_ms: 0,
            result: CallResult::Answered,
            hangup_side: HangupSide::Caller,
            sip_status: 200,
            recording: None,
            transfers: 0,
        }
    }

    #[tokio::test]
    async fn memory_sink_keeps_rows_and_wakes_waiters() {
        let (sink, mem) = CdrSink::memory();
        sink.started("c1", "c1@test", "+4930123", "4000", 1_000);
        assert_eq!(mem.in_progress().len(), 1);
        let waiter = {
            let mem = mem.clone();
            tokio::spawn(async move { mem.wait_calls(1, Duration::from_secs(5)).await })
        };
        sink.queue_event(QueueEvent {
            at: 1_100,
            call_id: "c1".into(),
            queue: "support".into(),
            agent: None,
            event: QueueEventKind::EnterQueue,
            data: "1".into(),
        });
        sink.record(record("c1")).await.unwrap();
        let calls = waiter.await.unwrap();
        assert_eq!(calls, vec![record("c1")]);
        assert!(mem.in_progress().is_empty(), "recording completes the call");
        assert_eq!(mem.events().len(), 1);
        sink.flush().await.unwrap();
        assert_eq!(sink.dropped_events(), 0);
    }
}
