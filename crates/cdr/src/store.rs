//! The CDR store: one API over SQLite or PostgreSQL, portable SQL with `$n` placeholders.
//!
//! Durability: on SQLite the file is in WAL mode with `synchronous=FULL`, so a commit is
//! fsynced before it returns — a CDR [`crate::CdrSink::record`] acknowledged survives a
//! crash of Hotline *and* a power cut. The writer commits in batches, so the fsync is paid
//! once per batch, not per row. (`synchronous=NORMAL` would already survive `kill -9`;
//! [`StoreOptions::sqlite_full_sync`] = false selects it where the disk is slow.) On
//! PostgreSQL a commit returns after the server's WAL flush (`synchronous_commit=on`, the
//! server default).

use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};

use crate::error::{CdrError, Result};
use crate::sink::{Msg, StartedCall};
use crate::{CallRecord, CallResult, HangupSide, QueueEvent, QueueEventKind, UnixMillis};

/// Runs `$body` with `$p` bound to the concrete pool of whichever backend is open.
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.pool {
            Pool::Sqlite($p) => $body,
            Pool::Postgres($p) => $body,
        }
    };
}

#[path = "voicemail_store.rs"]
mod voicemail_store;

#[derive(Debug, Clone)]
enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Settings for opening a [`CdrStore`].
#[derive(Debug, Clone)]
pub struct StoreOptions {
    /// PostgreSQL only: the schema to use (search_path); `None` uses the server default.
    pub pg_schema: Option<String>,
    /// Connection pool size, for reports and tools (the CDR writer takes one out of it
    /// for itself, and the pool may open another in its place).
    pub max_connections: u32,
    /// SQLite only: `synchronous=FULL` (default) or `NORMAL`; see the module docs.
    pub sqlite_full_sync: bool,
}

impl Default for StoreOptions {
    fn default() -> Self {
        StoreOptions {
            pg_schema: None,
            max_connections: 4,
            sqlite_full_sync: true,
        }
    }
}

/// The CDR writer's own connection ([`CdrStore::writer_conn`]).
pub(crate) enum WriterConn {
    Sqlite(sqlx::SqliteConnection),
    Postgres(sqlx::PgConnection),
}

/// A batch's rows by table.
struct Rows<'a> {
    started: Vec<&'a StartedCall>,
    records: Vec<&'a CallRecord>,
    events: Vec<&'a QueueEvent>,
    messages: Vec<&'a crate::VoicemailMessage>,
}

impl<'a> Rows<'a> {
    /// The rows of `batch` (none: nothing to write).
    fn of(batch: &'a [Msg]) -> Option<Rows<'a>> {
        let mut rows = Rows {
            started: Vec::new(),
            records: Vec::new(),
            events: Vec::new(),
            messages: Vec::new(),
        };
        for m in batch {
            match m {
                Msg::Started(c) => rows.started.push(c),
                Msg::Record(r, _) => rows.records.push(r),
                Msg::Event(e) => rows.events.push(e),
                Msg::Voicemail(v) => rows.messages.push(v),
                Msg::Flush(_) => {}
            }
        }
        if rows.started.is_empty()
            && rows.records.is_empty()
            && rows.events.is_empty()
            && rows.messages.is_empty()
        {
            return None;
        }
        // One statement may not touch a row twice: the last record of a call wins.
        let mut seen = std::collections::HashSet::new();
        rows.records.reverse();
        rows.records.retain(|r| seen.insert(r.call_id.as_str()));
        rows.records.reverse();
        Some(rows)
    }
}

/// Splits `rows` into slices whose lengths are powers of two (largest first, at most
/// `max`, itself a power of two). A multi-row statement's text depends on its row count,
/// and a connection caches prepared statements by text: with power-of-two counts a few
/// statements per table cover every batch size, so they stay prepared.
fn pow2_chunks<T>(mut rows: &[T], max: usize) -> impl Iterator<Item = &[T]> {
    std::iter::from_fn(move || {
        if rows.is_empty() {
            return None;
        }
        let n = if rows.len() >= max {
            max
        } else {
            1 << rows.len().ilog2()
        };
        let (chunk, rest) = rows.split_at(n);
        rows = rest;
        Some(chunk)
    })
}

/// Writes a batch's [`Rows`] in one transaction on `$c` (`&mut` an SQLite or PostgreSQL
/// connection): four multi-row statements (in-progress rows, finished records, queue
/// events, voicemail) per power-of-two slice, so a batch costs a few round trips, not one
/// per row. All of it is committed or none.
macro_rules! write_rows {
    ($c:expr, $rows:expr) => {{
        let rows: Rows<'_> = $rows;
        let mut tx = sqlx::Connection::begin($c).await?;
        // In-progress rows first: a finished record in the same batch then completes them
        // (and `DO NOTHING` keeps a late duplicate from reopening a finished call).
        for chunk in pow2_chunks(&rows.started, CHUNK) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO calls (call_id, sip_call_id, caller, dialed, arrived_at) ",
            );
            qb.push_values(chunk, |mut b, c| {
                b.push_bind(&c.call_id)
                    .push_bind(&c.sip_call_id)
                    .push_bind(&c.caller)
                    .push_bind(&c.dialed)
                    .push_bind(c.arrived_at);
            });
            qb.push(" ON CONFLICT (call_id) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        for chunk in pow2_chunks(&rows.records, CHUNK) {
            let mut qb = sqlx::QueryBuilder::new(format!("INSERT INTO calls ({CALL_COLS}) "));
            qb.push_values(chunk, |mut b, r| {
                b.push_bind(&r.call_id)
                    .push_bind(&r.sip_call_id)
                    .push_bind(&r.direction)
                    .push_bind(&r.caller)
                    .push_bind(&r.caller_name)
                    .push_bind(&r.dialed)
                    .push_bind(&r.route)
                    .push_bind(&r.queue)
                    .push_bind(&r.agent)
                    .push_bind(r.arrived_at)
                    .push_bind(r.queued_at)
                    .push_bind(r.offered_at)
                    .push_bind(r.answered_at)
                    .push_bind(r.ended_at)
                    .push_bind(r.wait_ms)
                    .push_bind(r.talk_ms)
                    .push_bind(r.hold_ms)
                    .push_bind(r.result.as_str())
                    .push_bind(r.hangup_side.as_str())
                    .push_bind(i64::from(r.sip_status))
                    .push_bind(&r.recording)
                    .push_bind(i64::from(r.transfers));
            });
            qb.push(UPSERT_TAIL);
            qb.build().execute(&mut *tx).await?;
        }
        for chunk in pow2_chunks(&rows.events, CHUNK * 2) {
            let mut qb = sqlx::QueryBuilder::new(
                "INSERT INTO queue_log (at, call_id, queue, agent, event, data) ",
            );
            qb.push_values(chunk, |mut b, e| {
                b.push_bind(e.at)
                    .push_bind(&e.call_id)
                    .push_bind(&e.queue)
                    .push_bind(&e.agent)
                    .push_bind(e.event.as_str())
                    .push_bind(&e.data);
            });
            qb.build().execute(&mut *tx).await?;
        }
        if !rows.messages.is_empty() {
            let mut qb = sqlx::QueryBuilder::new(format!(
                "INSERT INTO voicemail ({}) ",
                voicemail_store::COLS
            ));
            qb.push_values(&rows.messages, |mut b, v| {
                b.push_bind(&v.call_id)
                    .push_bind(&v.mailbox)
                    .push_bind(&v.queue)
                    .push_bind(&v.caller)
                    .push_bind(&v.caller_name)
                    .push_bind(v.recorded_at)
                    .push_bind(v.duration_ms)
                    .push_bind(&v.path)
                    .push_bind(&v.ended_by)
                    .push_bind(v.listened_at)
                    .push_bind(v.deleted_at);
            });
            // A retried batch must not fail on the message it already wrote.
            qb.push(" ON CONFLICT (call_id) DO NOTHING");
            qb.build().execute(&mut *tx).await?;
        }
        tx.commit().await?;
        Ok(())
    }};
}

/// The CDR store. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct CdrStore {
    pool: Pool,
}

const CALL_COLS: &str = "call_id, sip_call_id, direction, caller, caller_name, dialed, route, queue, agent, \
     arrived_at, queued_at, offered_at, answered_at, ended_at, wait_ms, talk_ms, hold_ms, result, \
     hangup_side, sip_status, recording, transfers";

/// Every column but the key is replaced: the finished record wins over the in-progress row.
const UPSERT_TAIL: &str = " ON CONFLICT (call_id) DO UPDATE SET sip_call_id = excluded.sip_call_id, direction = excluded.direction, \
     caller = excluded.caller, caller_name = excluded.caller_name, dialed = excluded.dialed, \
     route = excluded.route, queue = excluded.queue, agent = excluded.agent, arrived_at = excluded.arrived_at, \
     queued_at = excluded.queued_at, offered_at = excluded.offered_at, answered_at = excluded.answered_at, \
     ended_at = excluded.ended_at, wait_ms = excluded.wait_ms, talk_ms = excluded.talk_ms, \
     hold_ms = excluded.hold_ms, result = excluded.result, hangup_side = excluded.hangup_side, \
     sip_status = excluded.sip_status, recording = excluded.recording, transfers = excluded.transfers";

/// Most rows per multi-row statement (a power of two, see [`pow2_chunks`]): 22 parameters
/// a call row stays far below either backend's parameter limit (SQLite 32,766,
/// PostgreSQL 65,535).
const CHUNK: usize = 256;

const AGENT_EVENTS: &str = "('AGENT_LOGIN', 'AGENT_LOGOUT', 'AGENT_READY', 'AGENT_NOT_READY')";

#[derive(sqlx::FromRow)]
struct CallRow {
    call_id: String,
    sip_call_id: String,
    direction: String,
    caller: String,
    caller_name: Option<String>,
    dialed: String,
    route: String,
    queue: Option<String>,
    agent: Option<String>,
    arrived_at: i64,
    queued_at: Option<i64>,
    offered_at: Option<i64>,
    answered_at: Option<i64>,
    ended_at: Option<i64>,
    wait_ms: i64,
    talk_ms: i64,
    hold_ms: i64,
    result: Option<String>,
    hangup_side: Option<String>,
    sip_status: i64,
    recording: Option<String>,
    transfers: i64,
}

impl CallRow {
    fn into_record(self) -> Result<CallRecord> {
        let result_text = self.result.unwrap_or_default();
        let result = CallResult::parse(&result_text).ok_or(CdrError::Corrupt {
            column: "result",
            value: result_text,
        })?;
        let side_text = self.hangup_side.unwrap_or_default();
        let hangup_side = HangupSide::parse(&side_text).ok_or(CdrError::Corrupt {
            column: "hangup_side",
            value: side_text,
        })?;
        Ok(CallRecord {
            call_id: self.call_id,
            sip_call_id: self.sip_call_id,
            direction: self.direction,
            caller: self.caller,
            caller_name: self.caller_name,
            dialed: self.dialed,
            route: self.route,
            queue: self.queue,
            agent: self.agent,
            arrived_at: self.arrived_at,
            queued_at: self.queued_at,
            offered_at: self.offered_at,
            answered_at: self.answered_at,
            ended_at: self.ended_at.unwrap_or(self.arrived_at),
            wait_ms: self.wait_ms,
            talk_ms: self.talk_ms,
            hold_ms: self.hold_ms,
            result,
            hangup_side,
            sip_status: u16::try_from(self.sip_status).unwrap_or(0),
            recording: self.recording,
            transfers: u32::try_from(self.transfers).unwrap_or(0),
        })
    }
}

#[derive(sqlx::FromRow)]
struct EventRow {
    at: i64,
    call_id: String,
    queue: String,
    agent: Option<String>,
    event: String,
    data: String,
}

impl EventRow {
    fn into_event(self) -> Result<QueueEvent> {
        let event = QueueEventKind::parse(&self.event).ok_or(CdrError::Corrupt {
            column: "event",
            value: self.event,
        })?;
        Ok(QueueEvent {
            at: self.at,
            call_id: self.call_id,
            queue: self.queue,
            agent: self.agent,
            event,
            data: self.data,
        })
    }
}

/// The rows a report over `[from, to)` needs (see [`CdrStore::report_input`]).
#[derive(Debug, Clone, Default)]
pub struct ReportInput {
    pub from: UnixMillis,
    pub to: UnixMillis,
    /// Finished calls that arrived in the window.
    pub calls: Vec<CallRecord>,
    /// Queue-log lines in the window, plus each agent's last state line before it and the
    /// wrap-up lines of the window's calls (which may end after it).
    pub events: Vec<QueueEvent>,
}

fn migrator_sqlite() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("./migrations/sqlite");
    m.set_ignore_missing(true);
    m
}

fn migrator_postgres() -> sqlx::migrate::Migrator {
    let mut m = sqlx::migrate!("./migrations/postgres");
    m.set_ignore_missing(true);
    m
}

impl CdrStore {
    /// Opens (creating if needed) an SQLite file in WAL mode and migrates it.
    pub async fn open_sqlite(path: impl AsRef<Path>) -> Result<CdrStore> {
        CdrStore::open_sqlite_with(path, &StoreOptions::default()).await
    }

    pub async fn open_sqlite_with(path: impl AsRef<Path>, o: &StoreOptions) -> Result<CdrStore> {
        if let Some(dir) = path.as_ref().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| CdrError::Db(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(if o.sqlite_full_sync {
                SqliteSynchronous::Full
            } else {
                SqliteSynchronous::Normal
            })
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(o.max_connections.max(1))
            .connect_with(opts)
            .await?;
        migrator_sqlite().run(&pool).await?;
        Ok(CdrStore {
            pool: Pool::Sqlite(pool),
        })
    }

    /// Connects to PostgreSQL by URL and migrates the (configured) schema.
    pub async fn connect_postgres(url: &str) -> Result<CdrStore> {
        CdrStore::connect_postgres_with(url, &StoreOptions::default()).await
    }

    pub async fn connect_postgres_with(url: &str, o: &StoreOptions) -> Result<CdrStore> {
        let mut opts = PgConnectOptions::from_str(url)?;
        if let Some(schema) = &o.pg_schema {
            opts = opts.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(o.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(opts)
            .await?;
        migrator_postgres().run(&pool).await?;
        Ok(CdrStore {
            pool: Pool::Postgres(pool),
        })
    }

    /// Opens `postgres://...` / `postgresql://...` with PostgreSQL, `sqlite:PATH`,
    /// `sqlite://PATH` or a plain path with SQLite (the `[store] url` of the config).
    pub async fn open(location: &str, o: &StoreOptions) -> Result<CdrStore> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            CdrStore::connect_postgres_with(location, o).await
        } else if let Some(path) = location.strip_prefix("sqlite:") {
            CdrStore::open_sqlite_with(path.trim_start_matches("//"), o).await
        } else if !location.is_empty() && !location.contains("://") {
            CdrStore::open_sqlite_with(location, o).await
        } else {
            Err(CdrError::BadLocation(location.to_string()))
        }
    }

    /// "sqlite" or "postgres".
    pub fn backend(&self) -> &'static str {
        match self.pool {
            Pool::Sqlite(_) => "sqlite",
            Pool::Postgres(_) => "postgres",
        }
    }

    /// The commit durability in force, for the startup log and tests:
    /// `synchronous=full journal_mode=wal` (SQLite) or `synchronous_commit=on` (PostgreSQL).
    pub async fn durability(&self) -> Result<String> {
        match &self.pool {
            Pool::Sqlite(p) => {
                let mut conn = p.acquire().await?;
                let (sync,): (i64,) = sqlx::query_as("PRAGMA synchronous")
                    .fetch_one(&mut *conn)
                    .await?;
                let (journal,): (String,) = sqlx::query_as("PRAGMA journal_mode")
                    .fetch_one(&mut *conn)
                    .await?;
                let sync = match sync {
                    0 => "off",
                    1 => "normal",
                    2 => "full",
                    _ => "extra",
                };
                Ok(format!("synchronous={sync} journal_mode={journal}"))
            }
            Pool::Postgres(p) => {
                let (v,): (String,) = sqlx::query_as("SHOW synchronous_commit")
                    .fetch_one(p)
                    .await?;
                Ok(format!("synchronous_commit={v}"))
            }
        }
    }

    /// Waits for connections to finish and closes the pool.
    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await)
    }

    /// Settles the calls a previous run left in progress (crash, kill, power cut) as
    /// [`CallResult::Interrupted`], ended by the system; their end time is unknown and set to
    /// their arrival. Call it once at startup, before the writer runs: one Hotline per store.
    pub async fn mark_interrupted(&self) -> Result<u64> {
        let sql = "UPDATE calls SET result = 'interrupted', hangup_side = 'system', ended_at = arrived_at \
                   WHERE result IS NULL";
        Ok(on_pool!(self, |p| sqlx::query(sql)
            .execute(p)
            .await?
            .rows_affected()))
    }

    /// Writes one finished call now (outside the writer; tools and tests).
    pub async fn write_call(&self, r: &CallRecord) -> Result<()> {
        self.write_batch(&[Msg::Record(Box::new(r.clone()), None)])
            .await
    }

    /// Writes queue-log lines now (outside the writer; tools and tests).
    pub async fn write_events(&self, events: &[QueueEvent]) -> Result<()> {
        let msgs: Vec<Msg> = events.iter().cloned().map(Msg::Event).collect();
        self.write_batch(&msgs).await
    }

    /// Writes an in-progress row now (outside the writer; tools and tests).
    pub async fn start_call(&self, c: &StartedCall) -> Result<()> {
        self.write_batch(&[Msg::Started(c.clone())]).await
    }

    /// One transaction for the whole batch: all of it is committed or none (through a
    /// pooled connection; the writer keeps its own, see [`CdrStore::writer_conn`]).
    pub(crate) async fn write_batch(&self, batch: &[Msg]) -> Result<()> {
        let Some(rows) = Rows::of(batch) else {
            return Ok(());
        };
        on_pool!(self, |p| {
            let mut c = p.acquire().await?;
            write_rows!(&mut *c, rows)
        })
    }

    /// A connection for the CDR writer alone, taken out of the pool (detached: the pool
    /// may open another in its place, and closing the pool does not wait for it). Each
    /// connection caches the statements it prepared, and the pool hands its connections
    /// out in turn, so batches written through the pool kept preparing their statements
    /// again (in SQLite, preparing a multi-row insert cost more than running it).
    pub(crate) async fn writer_conn(&self) -> Result<WriterConn> {
        Ok(match &self.pool {
            Pool::Sqlite(p) => WriterConn::Sqlite(p.acquire().await?.detach()),
            Pool::Postgres(p) => WriterConn::Postgres(p.acquire().await?.detach()),
        })
    }

    /// [`CdrStore::write_batch`] on the writer's own connection.
    pub(crate) async fn write_batch_on(conn: &mut WriterConn, batch: &[Msg]) -> Result<()> {
        let Some(rows) = Rows::of(batch) else {
            return Ok(());
        };
        match conn {
            WriterConn::Sqlite(c) => write_rows!(c, rows),
            WriterConn::Postgres(c) => write_rows!(c, rows),
        }
    }

    /// One call by id: `Ok(None)` when unknown or still in progress.
    pub async fn call(&self, call_id: &str) -> Result<Option<CallRecord>> {
        let sql =
            format!("SELECT {CALL_COLS} FROM calls WHERE call_id = $1 AND result IS NOT NULL");
        let row: Option<CallRow> = on_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(call_id)
            .fetch_optional(p)
            .await?);
        row.map(CallRow::into_record).transpose()
    }

    /// Finished calls that arrived in `[from, to)`, oldest first.
    pub async fn calls(&self, from: UnixMillis, to: UnixMillis) -> Result<Vec<CallRecord>> {
        let sql = format!(
            "SELECT {CALL_COLS} FROM calls WHERE arrived_at >= $1 AND arrived_at < $2 \
             AND result IS NOT NULL ORDER BY arrived_at, call_id"
        );
        let rows: Vec<CallRow> = on_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(from)
            .bind(to)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(CallRow::into_record).collect()
    }

    /// Calls in progress (or left in progress by a crash, before [`Self::mark_interrupted`]).
    pub async fn in_progress(&self) -> Result<Vec<StartedCall>> {
        let rows: Vec<(String, String, String, String, i64)> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT call_id, sip_call_id, caller, dialed, arrived_at FROM calls \
                 WHERE result IS NULL ORDER BY arrived_at, call_id",
            )
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(call_id, sip_call_id, caller, dialed, arrived_at)| StartedCall {
                    call_id,
                    sip_call_id,
                    caller,
                    dialed,
                    arrived_at,
                },
            )
            .collect())
    }

    /// Queue-log lines in `[from, to)`, in the order they were written.
    pub async fn queue_log(&self, from: UnixMillis, to: UnixMillis) -> Result<Vec<QueueEvent>> {
        self.events_where("at >= $1 AND at < $2", from, to).await
    }

    async fn events_where(
        &self,
        cond: &str,
        a: UnixMillis,
        b: UnixMillis,
    ) -> Result<Vec<QueueEvent>> {
        let sql = format!(
            "SELECT at, call_id, queue, agent, event, data FROM queue_log WHERE {cond} ORDER BY at, id"
        );
        let rows: Vec<EventRow> = on_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(a)
            .bind(b)
            .fetch_all(p)
            .await?);
        rows.into_iter().map(EventRow::into_event).collect()
    }

    /// Everything [`crate::report::build`] needs for `[from, to)`.
    pub async fn report_input(&self, from: UnixMillis, to: UnixMillis) -> Result<ReportInput> {
        if to <= from {
            return Err(CdrError::Invalid {
                what: "time window",
                reason: "`to` must be after `from`".into(),
            });
        }
        let calls = self.calls(from, to).await?;
        // Each agent's state at `from`: its last state line before the window.
        let before = self
            .events_where(
                &format!(
                    "id IN (SELECT MAX(id) FROM queue_log WHERE at < $1 AND at >= $2 \
                     AND agent IS NOT NULL AND event IN {AGENT_EVENTS} GROUP BY agent)"
                ),
                from,
                i64::MIN,
            )
            .await?;
        let inside = self.queue_log(from, to).await?;
        // Wrap-ups of the window's calls that ended after it.
        let late_wrapups = self
            .events_where(
                "at >= $2 AND event = 'WRAPUP_END' AND call_id IN \
                 (SELECT call_id FROM calls WHERE arrived_at >= $1 AND arrived_at < $2)",
                from,
                to,
            )
            .await?;
        let mut events = before;
        events.extend(inside);
        events.extend(late_wrapups);
        Ok(ReportInput {
            from,
            to,
            calls,
            events,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::pow2_chunks;

    #[test]
    fn batches_split_into_power_of_two_statements() {
        let rows: Vec<u32> = (0..1_000).collect();
        for n in [1, 2, 3, 7, 8, 100, 255, 256, 257, 1_000] {
            let chunks: Vec<&[u32]> = pow2_chunks(&rows[..n], 256).collect();
            assert!(
                chunks
                    .iter()
                    .all(|c| c.len().is_power_of_two() && c.len() <= 256)
            );
            let back: Vec<u32> = chunks.concat();
            assert_eq!(back, rows[..n], "every row once, in order ({n} rows)");
        }
        // A few distinct statement sizes cover every batch of up to 1,000 rows.
        let sizes: std::collections::BTreeSet<usize> = (1..=1_000)
            .flat_map(|n| {
                pow2_chunks(&rows[..n], 256)
                    .map(<[u32]>::len)
                    .collect::<Vec<_>>()
            })
            .collect();
        assert_eq!(sizes.len(), 9, "{sizes:?}");
        assert_eq!(pow2_chunks(&rows[..0], 256).count(), 0);
    }
}
