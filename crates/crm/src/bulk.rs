//! Bulk writes shared by import and the generator: explicit ids reserved up front so
//! numbers and tickets can reference their customer without a round trip per row; multi-row
//! INSERTs on SQLite, COPY on PostgreSQL.

use crate::error::Result;
use crate::model::{CustomerData, Direction, TicketPriority, TicketStatus};
use crate::store::name_key;
use sqlx::{PgConnection, QueryBuilder, Sqlite, SqliteConnection};

pub(crate) struct CustomerRec {
    pub id: i64,
    pub data: CustomerData,
    pub created_at: i64,
}

pub(crate) struct InteractionRec {
    pub customer_id: i64,
    pub channel: &'static str,
    pub direction: Direction,
    pub call_id: Option<String>,
    pub queue: Option<&'static str>,
    pub agent: Option<String>,
    pub started_at: i64,
    pub ended_at: Option<i64>,
    pub disposition: Option<&'static str>,
    pub notes: Option<&'static str>,
    pub recording_path: Option<String>,
}

pub(crate) struct TicketRec {
    pub id: i64,
    pub customer_id: i64,
    pub reference: String,
    pub subject: &'static str,
    pub status: TicketStatus,
    pub priority: TicketPriority,
    pub assignee: Option<String>,
    pub due_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    /// (at, actor, change)
    pub history: Vec<(i64, String, String)>,
}

#[derive(Default)]
pub(crate) struct Batch {
    pub customers: Vec<CustomerRec>,
    pub numbers: Vec<(i64, String)>,
    pub interactions: Vec<InteractionRec>,
    pub tickets: Vec<TicketRec>,
}

/// Tables that get explicit ids in bulk writes.
#[derive(Clone, Copy)]
pub(crate) enum IdTable {
    Customers,
    Tickets,
}

/// Next `n` ids on SQLite. Only valid inside a `BEGIN IMMEDIATE` transaction, which holds
/// the write lock so nobody else can take them.
pub(crate) async fn reserve_sqlite(
    conn: &mut SqliteConnection,
    table: IdTable,
    n: usize,
) -> Result<Vec<i64>> {
    let sql = match table {
        IdTable::Customers => "SELECT COALESCE(MAX(id), 0) FROM customers",
        IdTable::Tickets => "SELECT COALESCE(MAX(id), 0) FROM tickets",
    };
    let (max,): (i64,) = sqlx::query_as(sql).fetch_one(conn).await?;
    Ok((1..=n as i64).map(|k| max + k).collect())
}

/// Next `n` ids on PostgreSQL, taken from the sequence so concurrent writers never collide.
pub(crate) async fn reserve_pg(
    conn: &mut PgConnection,
    table: IdTable,
    n: usize,
) -> Result<Vec<i64>> {
    let sql = match table {
        IdTable::Customers => {
            "SELECT nextval(pg_get_serial_sequence('customers', 'id')) FROM generate_series(1, $1)"
        }
        IdTable::Tickets => {
            "SELECT nextval(pg_get_serial_sequence('tickets', 'id')) FROM generate_series(1, $1)"
        }
    };
    let rows: Vec<(i64,)> = sqlx::query_as(sql).bind(n as i64).fetch_all(conn).await?;
    Ok(rows.into_iter().map(|(id,)| id).collect())
}

/// Rows per INSERT, under SQLite's 32766 bound variables.
const SQLITE_ROWS: usize = 500;

pub(crate) async fn write_sqlite(conn: &mut SqliteConnection, b: &Batch) -> Result<()> {
    for chunk in b.customers.chunks(SQLITE_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO customers (id, title, first_name, surname, company, language, tier, segment, \
             account_manager, notes, custom_fields, provisional, name_key, created_at, updated_at) ",
        );
        q.push_values(chunk, |mut r, c| {
            let d = &c.data;
            r.push_bind(c.id)
                .push_bind(&d.title)
                .push_bind(&d.first_name)
                .push_bind(&d.surname)
                .push_bind(&d.company)
                .push_bind(&d.language)
                .push_bind(d.tier.as_str())
                .push_bind(&d.segment)
                .push_bind(&d.account_manager)
                .push_bind(&d.notes)
                .push_bind(d.custom_fields.to_string())
                .push_bind(false)
                .push_bind(name_key(&d.surname, d.first_name.as_deref()))
                .push_bind(c.created_at)
                .push_bind(c.created_at);
        });
        q.build().execute(&mut *conn).await?;
    }
    for chunk in b.numbers.chunks(SQLITE_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new("INSERT INTO phone_numbers (customer_id, e164) ");
        q.push_values(chunk, |mut r, (id, n)| {
            r.push_bind(*id).push_bind(n);
        });
        q.push(" ON CONFLICT DO NOTHING");
        q.build().execute(&mut *conn).await?;
    }
    for chunk in b.interactions.chunks(SQLITE_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO interactions (customer_id, channel, direction, call_id, queue, agent, started_at, \
             ended_at, disposition, notes, recording_path) ",
        );
        q.push_values(chunk, |mut r, i| {
            r.push_bind(i.customer_id)
                .push_bind(i.channel)
                .push_bind(i.direction.as_str())
                .push_bind(&i.call_id)
                .push_bind(i.queue)
                .push_bind(&i.agent)
                .push_bind(i.started_at)
                .push_bind(i.ended_at)
                .push_bind(i.disposition)
                .push_bind(i.notes)
                .push_bind(&i.recording_path);
        });
        q.build().execute(&mut *conn).await?;
    }
    for chunk in b.tickets.chunks(SQLITE_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO tickets (id, customer_id, reference, subject, status, priority, assignee, due_at, \
             created_at, updated_at) ",
        );
        q.push_values(chunk, |mut r, t| {
            r.push_bind(t.id)
                .push_bind(t.customer_id)
                .push_bind(&t.reference)
                .push_bind(t.subject)
                .push_bind(t.status.as_str())
                .push_bind(t.priority.as_str())
                .push_bind(&t.assignee)
                .push_bind(t.due_at)
                .push_bind(t.created_at)
                .push_bind(t.updated_at);
        });
        q.build().execute(&mut *conn).await?;
    }
    let history: Vec<(i64, &(i64, String, String))> = b
        .tickets
        .iter()
        .flat_map(|t| t.history.iter().map(move |h| (t.id, h)))
        .collect();
    for chunk in history.chunks(SQLITE_ROWS) {
        let mut q = QueryBuilder::<Sqlite>::new(
            "INSERT INTO ticket_history (ticket_id, at, actor, change) ",
        );
        q.push_values(chunk, |mut r, (id, (at, actor, change))| {
            r.push_bind(*id)
                .push_bind(*at)
                .push_bind(actor)
                .push_bind(change);
        });
        q.build().execute(&mut *conn).await?;
    }
    Ok(())
}

/// Appends one COPY text-format field (`\N` for NULL, backslash escapes) and a separator.
fn field(buf: &mut String, v: Option<&str>, last: bool) {
    match v {
        None => buf.push_str("\\N"),
        Some(s) => {
            for c in s.chars() {
                match c {
                    '\\' => buf.push_str("\\\\"),
                    '\t' => buf.push_str("\\t"),
                    '\n' => buf.push_str("\\n"),
                    '\r' => buf.push_str("\\r"),
                    c => buf.push(c),
                }
            }
        }
    }
    buf.push(if last { '\n' } else { '\t' });
}

fn int(buf: &mut String, v: Option<i64>, last: bool) {
    field(buf, v.map(|v| v.to_string()).as_deref(), last)
}

async fn copy(conn: &mut PgConnection, statement: &str, data: String) -> Result<()> {
    if data.is_empty() {
        return Ok(());
    }
    let mut c = conn.copy_in_raw(statement).await?;
    c.send(data.into_bytes()).await?;
    c.finish().await?;
    Ok(())
}

pub(crate) async fn write_pg(conn: &mut PgConnection, b: &Batch) -> Result<()> {
    let mut buf = String::new();
    for c in &b.customers {
        let d = &c.data;
        int(&mut buf, Some(c.id), false);
        field(&mut buf, d.title.as_deref(), false);
        field(&mut buf, d.first_name.as_deref(), false);
        field(&mut buf, Some(&d.surname), false);
        field(&mut buf, d.company.as_deref(), false);
        field(&mut buf, d.language.as_deref(), false);
        field(&mut buf, Some(d.tier.as_str()), false);
        field(&mut buf, d.segment.as_deref(), false);
        field(&mut buf, d.account_manager.as_deref(), false);
        field(&mut buf, d.notes.as_deref(), false);
        field(&mut buf, Some(&d.custom_fields.to_string()), false);
        field(&mut buf, Some("f"), false);
        field(
            &mut buf,
            Some(&name_key(&d.surname, d.first_name.as_deref())),
            false,
        );
        int(&mut buf, Some(c.created_at), false);
        int(&mut buf, Some(c.created_at), true);
    }
    copy(
        conn,
        "COPY customers (id, title, first_name, surname, company, language, tier, segment, account_manager, \
         notes, custom_fields, provisional, name_key, created_at, updated_at) FROM STDIN",
        std::mem::take(&mut buf),
    )
    .await?;
    // COPY has no ON CONFLICT: duplicates within one customer are removed by the callers.
    for (id, n) in &b.numbers {
        int(&mut buf, Some(*id), false);
        field(&mut buf, Some(n), true);
    }
    copy(
        conn,
        "COPY phone_numbers (customer_id, e164) FROM STDIN",
        std::mem::take(&mut buf),
    )
    .await?;
    for i in &b.interactions {
        int(&mut buf, Some(i.customer_id), false);
        field(&mut buf, Some(i.channel), false);
        field(&mut buf, Some(i.direction.as_str()), false);
        field(&mut buf, i.call_id.as_deref(), false);
        field(&mut buf, i.queue, false);
        field(&mut buf, i.agent.as_deref(), false);
        int(&mut buf, Some(i.started_at), false);
        int(&mut buf, i.ended_at, false);
        field(&mut buf, i.disposition, false);
        field(&mut buf, i.notes, false);
        field(&mut buf, i.recording_path.as_deref(), true);
    }
    copy(
        conn,
        "COPY interactions (customer_id, channel, direction, call_id, queue, agent, started_at, ended_at, \
         disposition, notes, recording_path) FROM STDIN",
        std::mem::take(&mut buf),
    )
    .await?;
    for t in &b.tickets {
        int(&mut buf, Some(t.id), false);
        int(&mut buf, Some(t.customer_id), false);
        field(&mut buf, Some(&t.reference), false);
        field(&mut buf, Some(t.subject), false);
        field(&mut buf, Some(t.status.as_str()), false);
        field(&mut buf, Some(t.priority.as_str()), false);
        field(&mut buf, t.assignee.as_deref(), false);
        int(&mut buf, t.due_at, false);
        int(&mut buf, Some(t.created_at), false);
        int(&mut buf, Some(t.updated_at), true);
    }
    copy(
        conn,
        "COPY tickets (id, customer_id, reference, subject, status, priority, assignee, due_at, created_at, updated_at) FROM STDIN",
        std::mem::take(&mut buf),
    )
    .await?;
    for t in &b.tickets {
        for (at, actor, change) in &t.history {
            int(&mut buf, Some(t.id), false);
            int(&mut buf, Some(*at), false);
            field(&mut buf, Some(actor), false);
            field(&mut buf, Some(change), true);
        }
    }
    copy(
        conn,
        "COPY ticket_history (ticket_id, at, actor, change) FROM STDIN",
        buf,
    )
    .await?;
    Ok(())
}
