//! The `voicemail` table: reading messages back and marking them listened or deleted.

use super::{CdrStore, Pool};
use crate::error::Result;
use crate::{UnixMillis, VoicemailFilter, VoicemailMessage};

pub(super) const COLS: &str = "call_id, mailbox, queue, caller, caller_name, recorded_at, \
     duration_ms, path, ended_by, listened_at, deleted_at";

#[derive(sqlx::FromRow)]
struct Row {
    call_id: String,
    mailbox: String,
    queue: Option<String>,
    caller: String,
    caller_name: Option<String>,
    recorded_at: i64,
    duration_ms: i64,
    path: String,
    ended_by: String,
    listened_at: Option<i64>,
    deleted_at: Option<i64>,
}

impl From<Row> for VoicemailMessage {
    fn from(r: Row) -> Self {
        VoicemailMessage {
            call_id: r.call_id,
            mailbox: r.mailbox,
            queue: r.queue,
            caller: r.caller,
            caller_name: r.caller_name,
            recorded_at: r.recorded_at,
            duration_ms: r.duration_ms,
            path: r.path,
            ended_by: r.ended_by,
            listened_at: r.listened_at,
            deleted_at: r.deleted_at,
        }
    }
}

impl CdrStore {
    /// Messages matching `f`, newest first.
    pub async fn voicemail_list(&self, f: &VoicemailFilter) -> Result<Vec<VoicemailMessage>> {
        let rows: Vec<Row> = on_pool!(self, |p| {
            let mut qb =
                sqlx::QueryBuilder::new(format!("SELECT {COLS} FROM voicemail WHERE 1 = 1"));
            if let Some(m) = &f.mailbox {
                qb.push(" AND mailbox = ").push_bind(m);
            }
            if !f.queues.is_empty() {
                qb.push(" AND queue IN (");
                let mut sep = qb.separated(", ");
                for q in &f.queues {
                    sep.push_bind(q);
                }
                qb.push(")");
            }
            if !f.deleted {
                qb.push(" AND deleted_at IS NULL");
            }
            qb.push(" ORDER BY recorded_at DESC, call_id LIMIT ")
                .push_bind(i64::from(f.limit.max(1)));
            qb.build_query_as().fetch_all(p).await?
        });
        Ok(rows.into_iter().map(VoicemailMessage::from).collect())
    }

    /// One message by the id of the call that left it.
    pub async fn voicemail_get(&self, call_id: &str) -> Result<Option<VoicemailMessage>> {
        let sql = format!("SELECT {COLS} FROM voicemail WHERE call_id = $1");
        let row: Option<Row> = on_pool!(self, |p| sqlx::query_as(sqlx::AssertSqlSafe(sql))
            .bind(call_id)
            .fetch_optional(p)
            .await?);
        Ok(row.map(VoicemailMessage::from))
    }

    /// Marks a message listened (the first time counts); false if there is no such message.
    pub async fn voicemail_listened(&self, call_id: &str, at: UnixMillis) -> Result<bool> {
        self.voicemail_mark("listened_at", call_id, at).await
    }

    /// Marks a message deleted (hidden from lists); false if there is no such message.
    pub async fn voicemail_deleted(&self, call_id: &str, at: UnixMillis) -> Result<bool> {
        self.voicemail_mark("deleted_at", call_id, at).await
    }

    async fn voicemail_mark(&self, column: &str, call_id: &str, at: UnixMillis) -> Result<bool> {
        let sql =
            format!("UPDATE voicemail SET {column} = COALESCE({column}, $1) WHERE call_id = $2");
        let n = on_pool!(self, |p| sqlx::query(sqlx::AssertSqlSafe(sql))
            .bind(at)
            .bind(call_id)
            .execute(p)
            .await?
            .rows_affected());
        Ok(n > 0)
    }
}
