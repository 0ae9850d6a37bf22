//! The store: one API over SQLite or PostgreSQL.
//!
//! Every statement is portable SQL with `$n` placeholders and runs unchanged on both
//! backends; [`on_pool!`] expands a block once per backend so the code exists once.

use crate::error::{Entity, Error, Result};
use crate::greeting;
use crate::model::*;
use crate::phone::{CallerNumber, Normalizer};
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous,
};
use std::collections::HashMap;
use std::path::Path;
use std::str::FromStr;
use std::time::Duration;

/// Runs `$body` with `$p` bound to the concrete pool of whichever backend is open.
macro_rules! on_pool {
    ($store:expr, |$p:ident| $body:expr) => {
        match &$store.pool {
            $crate::store::Pool::Sqlite($p) => $body,
            $crate::store::Pool::Postgres($p) => $body,
        }
    };
}

#[derive(Debug, Clone)]
pub(crate) enum Pool {
    Sqlite(SqlitePool),
    Postgres(PgPool),
}

/// Which database is behind a [`Store`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Sqlite,
    Postgres,
}

/// How an SQLite file trades write latency for durability.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Durability {
    /// WAL + `synchronous=NORMAL`: a commit survives a crash of Hotline; a power cut may
    /// lose the last commits but never corrupts the file. Wrap-ups stay fast.
    #[default]
    Normal,
    /// WAL + `synchronous=FULL`: every commit is fsynced before it returns.
    Full,
}

/// Settings for opening a store.
#[derive(Debug, Clone)]
pub struct StoreConfig {
    /// ISO 3166 region used to read national-format numbers (`030 1234` → `+4930...`).
    pub default_region: String,
    /// SQLite only.
    pub durability: Durability,
    /// PostgreSQL only: the schema to use (search_path); `None` uses the server default.
    pub pg_schema: Option<String>,
    /// Connection pool size.
    pub max_connections: u32,
}

impl Default for StoreConfig {
    fn default() -> Self {
        StoreConfig {
            default_region: "DE".into(),
            durability: Durability::Normal,
            pg_schema: None,
            max_connections: 8,
        }
    }
}

/// The CRM store. Cheap to clone (a pool handle).
#[derive(Debug, Clone)]
pub struct Store {
    pub(crate) pool: Pool,
    normalizer: Normalizer,
}

/// Most candidates a shared number returns: enough to choose from, bounded for the pop.
pub const MAX_CANDIDATES: i64 = 10;
/// Upper bound for search results.
pub const MAX_SEARCH: i64 = 100;
const TRAIL_LEN: i64 = 10;
const OPEN_TICKETS_SHOWN: i64 = 20;

pub(crate) fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

macro_rules! customer_cols {
    () => {
        "c.id, c.title, c.first_name, c.surname, c.company, c.language, c.tier, c.segment, \
         c.account_manager, c.notes, c.custom_fields, c.provisional, c.created_at, c.updated_at"
    };
}
macro_rules! interaction_cols {
    () => {
        "id, customer_id, channel, direction, call_id, queue, agent, started_at, ended_at, \
         disposition, notes, recording_path"
    };
}
macro_rules! ticket_cols {
    () => {
        "id, customer_id, reference, subject, status, priority, assignee, due_at, created_at, updated_at"
    };
}

#[derive(sqlx::FromRow)]
pub(crate) struct CustomerRow {
    id: i64,
    title: Option<String>,
    first_name: Option<String>,
    surname: String,
    company: Option<String>,
    language: Option<String>,
    tier: String,
    segment: Option<String>,
    account_manager: Option<String>,
    notes: Option<String>,
    custom_fields: String,
    provisional: bool,
    created_at: i64,
    updated_at: i64,
    number: Option<String>,
}

#[derive(sqlx::FromRow)]
struct InteractionRow {
    id: i64,
    customer_id: i64,
    channel: String,
    direction: String,
    call_id: Option<String>,
    queue: Option<String>,
    agent: Option<String>,
    started_at: i64,
    ended_at: Option<i64>,
    disposition: Option<String>,
    notes: Option<String>,
    recording_path: Option<String>,
}

#[derive(sqlx::FromRow)]
struct TicketRow {
    id: i64,
    customer_id: i64,
    reference: String,
    subject: String,
    status: String,
    priority: String,
    assignee: Option<String>,
    due_at: Option<i64>,
    created_at: i64,
    updated_at: i64,
}

#[derive(sqlx::FromRow)]
struct OfferRow {
    id: i64,
    name: String,
    text: String,
    tier: Option<String>,
    segment: Option<String>,
    min_interactions: Option<i64>,
    max_open_tickets: Option<i64>,
    last_disposition: Option<String>,
    rank: i64,
}

/// Stored values were written through this API, but a hand-edited database must still not
/// break a screen pop: unknown enum text falls back to a neutral value.
fn lenient<T: Copy>(parsed: Result<T>, fallback: T) -> T {
    parsed.unwrap_or(fallback)
}

/// Folds rows of (customer, one number) into customers with all their numbers, in row order.
pub(crate) fn fold_customers(rows: Vec<CustomerRow>) -> Vec<Customer> {
    let mut out: Vec<Customer> = Vec::new();
    for r in rows {
        if let Some(last) = out.last_mut()
            && last.id == r.id
        {
            if let Some(n) = r.number
                && !last.numbers.contains(&n)
            {
                last.numbers.push(n);
                last.numbers.sort();
            }
            continue;
        }
        let custom_fields = serde_json::from_str(&r.custom_fields)
            .ok()
            .filter(serde_json::Value::is_object)
            .unwrap_or_else(|| serde_json::Value::Object(Default::default()));
        out.push(Customer {
            id: r.id,
            data: CustomerData {
                title: r.title,
                first_name: r.first_name,
                surname: r.surname,
                company: r.company,
                language: r.language,
                tier: lenient(Tier::parse(&r.tier), Tier::Public),
                segment: r.segment,
                account_manager: r.account_manager,
                notes: r.notes,
                custom_fields,
            },
            provisional: r.provisional,
            numbers: r.number.into_iter().collect(),
            created_at: r.created_at,
            updated_at: r.updated_at,
        });
    }
    out
}

fn interaction_from(r: InteractionRow, ticket_ids: Vec<TicketId>) -> Interaction {
    Interaction {
        id: r.id,
        customer_id: r.customer_id,
        channel: r.channel,
        direction: lenient(Direction::parse(&r.direction), Direction::Inbound),
        call_id: r.call_id,
        queue: r.queue,
        agent: r.agent,
        started_at: r.started_at,
        ended_at: r.ended_at,
        disposition: r.disposition,
        notes: r.notes,
        recording_path: r.recording_path,
        ticket_ids,
    }
}

fn ticket_from(r: TicketRow) -> Ticket {
    Ticket {
        id: r.id,
        customer_id: r.customer_id,
        reference: r.reference,
        subject: r.subject,
        status: lenient(TicketStatus::parse(&r.status), TicketStatus::Open),
        priority: lenient(TicketPriority::parse(&r.priority), TicketPriority::Normal),
        assignee: r.assignee,
        due_at: r.due_at,
        created_at: r.created_at,
        updated_at: r.updated_at,
    }
}

fn offer_from(r: OfferRow) -> Offer {
    Offer {
        id: r.id,
        name: r.name,
        text: r.text,
        tier: r.tier.and_then(|t| Tier::parse(&t).ok()),
        segment: r.segment,
        min_interactions: r.min_interactions,
        max_open_tickets: r.max_open_tickets,
        last_disposition: r.last_disposition,
        rank: r.rank,
    }
}

/// The lowercase key name searches use: "surname first".
pub(crate) fn name_key(surname: &str, first_name: Option<&str>) -> String {
    let mut k = surname.trim().to_lowercase();
    if let Some(f) = first_name.map(str::trim).filter(|f| !f.is_empty()) {
        k.push(' ');
        k.push_str(&f.to_lowercase());
    }
    k
}

/// Checks what the schema cannot: custom fields are an object, text sizes are sane.
pub(crate) fn validate_customer(d: &CustomerData) -> Result<()> {
    if !d.custom_fields.is_object() {
        return Err(Error::Invalid {
            field: "custom_fields",
            reason: "must be a JSON object".into(),
        });
    }
    let texts = [
        ("title", d.title.as_deref()),
        ("first_name", d.first_name.as_deref()),
        ("surname", Some(d.surname.as_str())),
        ("company", d.company.as_deref()),
        ("language", d.language.as_deref()),
        ("segment", d.segment.as_deref()),
        ("account_manager", d.account_manager.as_deref()),
    ];
    for (field, v) in texts {
        if v.is_some_and(|v| v.len() > 200) {
            return Err(Error::Invalid {
                field,
                reason: "longer than 200 bytes".into(),
            });
        }
    }
    if d.notes.as_deref().is_some_and(|n| n.len() > 10_000) {
        return Err(Error::Invalid {
            field: "notes",
            reason: "longer than 10000 bytes".into(),
        });
    }
    Ok(())
}

fn clamp_limit(limit: i64) -> i64 {
    limit.clamp(1, MAX_SEARCH)
}

/// Smallest string greater than every string starting with `prefix` (for index range scans,
/// which both backends can use, unlike LIKE under PostgreSQL's default collations).
fn prefix_end(prefix: &str) -> String {
    let mut s = prefix.to_string();
    s.push(char::MAX);
    s
}

impl Store {
    /// Opens (creating if needed) an SQLite file in WAL mode and migrates it.
    pub async fn open_sqlite(path: impl AsRef<Path>, config: &StoreConfig) -> Result<Store> {
        let normalizer = Normalizer::new(&config.default_region)?;
        if let Some(dir) = path.as_ref().parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::Db(sqlx::Error::Io(e)))?;
        }
        let opts = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match config.durability {
                Durability::Normal => SqliteSynchronous::Normal,
                Durability::Full => SqliteSynchronous::Full,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let pool = SqlitePoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .connect_with(opts)
            .await?;
        // Other stores (the CDRs, versions 1001..) may share the database and its
        // migrations table: their versions are not ours to complain about.
        let mut migrator = sqlx::migrate!("./migrations/sqlite");
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        Ok(Store {
            pool: Pool::Sqlite(pool),
            normalizer,
        })
    }

    /// Connects to PostgreSQL by URL and migrates the (configured) schema.
    pub async fn open_postgres(url: &str, config: &StoreConfig) -> Result<Store> {
        let normalizer = Normalizer::new(&config.default_region)?;
        let mut opts = PgConnectOptions::from_str(url)?;
        if let Some(schema) = &config.pg_schema {
            opts = opts.options([("search_path", schema.as_str())]);
        }
        let pool = PgPoolOptions::new()
            .max_connections(config.max_connections.max(1))
            .acquire_timeout(Duration::from_secs(10))
            .connect_with(opts)
            .await?;
        // Other stores (the CDRs, versions 1001..) may share the database and its
        // migrations table: their versions are not ours to complain about.
        let mut migrator = sqlx::migrate!("./migrations/postgres");
        migrator.set_ignore_missing(true);
        migrator.run(&pool).await?;
        Ok(Store {
            pool: Pool::Postgres(pool),
            normalizer,
        })
    }

    /// Opens `postgres://...` / `postgresql://...` URLs with PostgreSQL, `sqlite:PATH` or a
    /// plain path with SQLite.
    pub async fn open(location: &str, config: &StoreConfig) -> Result<Store> {
        if location.starts_with("postgres://") || location.starts_with("postgresql://") {
            Store::open_postgres(location, config).await
        } else if let Some(path) = location.strip_prefix("sqlite:") {
            Store::open_sqlite(path.trim_start_matches("//"), config).await
        } else if !location.is_empty() && !location.contains("://") {
            Store::open_sqlite(location, config).await
        } else {
            Err(Error::BadLocation(location.to_string()))
        }
    }

    pub fn backend(&self) -> Backend {
        match self.pool {
            Pool::Sqlite(_) => Backend::Sqlite,
            Pool::Postgres(_) => Backend::Postgres,
        }
    }

    pub fn normalizer(&self) -> &Normalizer {
        &self.normalizer
    }

    /// Waits for connections to finish and closes the pool.
    pub async fn close(&self) {
        on_pool!(self, |p| p.close().await)
    }

    // ---- customers ----------------------------------------------------------------------

    /// Creates a customer with the given (raw, any format) numbers.
    pub async fn create_customer(
        &self,
        data: &CustomerData,
        numbers: &[&str],
    ) -> Result<CustomerId> {
        validate_customer(data)?;
        let e164s = numbers
            .iter()
            .map(|n| self.normalizer.normalize(n))
            .collect::<Result<Vec<_>>>()?;
        let now = now_ms();
        let fields = data.custom_fields.to_string();
        let key = name_key(&data.surname, data.first_name.as_deref());
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO customers (title, first_name, surname, company, language, tier, segment, \
                 account_manager, notes, custom_fields, provisional, name_key, created_at, updated_at) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, FALSE, $11, $12, $12) RETURNING id",
            )
            .bind(&data.title)
            .bind(&data.first_name)
            .bind(&data.surname)
            .bind(&data.company)
            .bind(&data.language)
            .bind(data.tier.as_str())
            .bind(&data.segment)
            .bind(&data.account_manager)
            .bind(&data.notes)
            .bind(&fields)
            .bind(&key)
            .bind(now)
            .fetch_one(&mut *tx)
            .await?;
            for n in &e164s {
                sqlx::query("INSERT INTO phone_numbers (customer_id, e164) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                    .bind(id)
                    .bind(n)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Replaces a customer's editable fields. An edited record is no longer provisional:
    /// the agent has completed it.
    pub async fn update_customer(&self, id: CustomerId, data: &CustomerData) -> Result<()> {
        validate_customer(data)?;
        let fields = data.custom_fields.to_string();
        let key = name_key(&data.surname, data.first_name.as_deref());
        let done = on_pool!(self, |p| {
            sqlx::query(
                "UPDATE customers SET title = $2, first_name = $3, surname = $4, company = $5, language = $6, \
                 tier = $7, segment = $8, account_manager = $9, notes = $10, custom_fields = $11, \
                 name_key = $12, provisional = FALSE, provisional_for = NULL, updated_at = $13 WHERE id = $1",
            )
            .bind(id)
            .bind(&data.title)
            .bind(&data.first_name)
            .bind(&data.surname)
            .bind(&data.company)
            .bind(&data.language)
            .bind(data.tier.as_str())
            .bind(&data.segment)
            .bind(&data.account_manager)
            .bind(&data.notes)
            .bind(&fields)
            .bind(&key)
            .bind(now_ms())
            .execute(p)
            .await?
            .rows_affected()
        });
        if done == 0 {
            return Err(Error::NotFound(Entity::Customer(id)));
        }
        Ok(())
    }

    /// Adds a number (any format) to a customer; returns its E.164 form.
    pub async fn add_number(&self, id: CustomerId, raw: &str) -> Result<String> {
        let e164 = self.normalizer.normalize(raw)?;
        self.customer(id)
            .await?
            .ok_or(Error::NotFound(Entity::Customer(id)))?;
        on_pool!(self, |p| {
            sqlx::query("INSERT INTO phone_numbers (customer_id, e164) VALUES ($1, $2) ON CONFLICT DO NOTHING")
                .bind(id)
                .bind(&e164)
                .execute(p)
                .await?;
        });
        Ok(e164)
    }

    /// One customer with all numbers.
    pub async fn customer(&self, id: CustomerId) -> Result<Option<Customer>> {
        let rows: Vec<CustomerRow> = on_pool!(self, |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                customer_cols!(),
                ", n.e164 AS number FROM customers c LEFT JOIN phone_numbers n ON n.customer_id = c.id \
                 WHERE c.id = $1 ORDER BY n.e164"
            ))
            .bind(id)
            .fetch_all(p)
            .await?
        });
        Ok(fold_customers(rows).pop())
    }

    /// All customers having this E.164 number (bounded), each with all its numbers.
    /// One round trip, two index lookups.
    pub async fn customers_by_number(&self, e164: &str) -> Result<Vec<Customer>> {
        let rows: Vec<CustomerRow> = on_pool!(self, |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                customer_cols!(),
                ", n.e164 AS number FROM customers c JOIN phone_numbers n ON n.customer_id = c.id \
                 WHERE c.id IN (SELECT customer_id FROM phone_numbers WHERE e164 = $1 ORDER BY customer_id LIMIT $2) \
                 ORDER BY c.id, n.e164"
            ))
            .bind(e164)
            .bind(MAX_CANDIDATES)
            .fetch_all(p)
            .await?
        });
        Ok(fold_customers(rows))
    }

    /// Searches by number (input starting with `+` or a digit: a full number in any format, or a
    /// fragment as an E.164 prefix, national fragments through the default region) or by name
    /// (prefix of "surname first name", case-insensitive). At most `limit` (≤ 100) hits.
    pub async fn search_customers(&self, query: &str, limit: i64) -> Result<Vec<CustomerSummary>> {
        let q = query.trim();
        if q.is_empty() {
            return Ok(Vec::new());
        }
        let limit = clamp_limit(limit);
        let rows: Vec<CustomerRow> = if q.starts_with('+')
            || q.starts_with(|c: char| c.is_ascii_digit())
        {
            // A complete number is normalised; a fragment becomes an E.164 prefix.
            let prefix = match self.normalizer.normalize(q) {
                Ok(full) => full,
                Err(_) => match self.normalizer.e164_prefix(q) {
                    Some(p) => p,
                    None => return Ok(Vec::new()),
                },
            };
            let end = prefix_end(&prefix);
            on_pool!(self, |p| {
                sqlx::query_as(concat!(
                    "SELECT ",
                    customer_cols!(),
                    ", NULL AS number FROM customers c WHERE c.id IN \
                     (SELECT customer_id FROM phone_numbers WHERE e164 >= $1 AND e164 < $2 ORDER BY e164 LIMIT $3) \
                     ORDER BY c.name_key, c.id"
                ))
                .bind(&prefix)
                .bind(&end)
                .bind(limit)
                .fetch_all(p)
                .await?
            })
        } else {
            let prefix = q.to_lowercase();
            let end = prefix_end(&prefix);
            on_pool!(self, |p| {
                sqlx::query_as(concat!(
                    "SELECT ",
                    customer_cols!(),
                    ", NULL AS number FROM customers c WHERE c.name_key >= $1 AND c.name_key < $2 \
                     ORDER BY c.name_key, c.id LIMIT $3"
                ))
                .bind(&prefix)
                .bind(&end)
                .bind(limit)
                .fetch_all(p)
                .await?
            })
        };
        Ok(fold_customers(rows)
            .into_iter()
            .map(|c| CustomerSummary {
                id: c.id,
                title: c.data.title,
                first_name: c.data.first_name,
                surname: c.data.surname,
                company: c.data.company,
                tier: c.data.tier,
                provisional: c.provisional,
            })
            .collect())
    }

    // ---- identification and the 360° view -----------------------------------------------

    /// Identifies a caller from the From / P-Asserted-Identity user part (or a tel URI).
    /// Unknown numbers get a provisional customer; withheld or unusable ids touch nothing.
    pub async fn identify(&self, caller: &str) -> Result<Identification> {
        Ok(self.identify_number(caller).await?.1)
    }

    async fn identify_number(&self, caller: &str) -> Result<(Option<String>, Identification)> {
        let e164 = match self.normalizer.classify(caller) {
            CallerNumber::Withheld => return Ok((None, Identification::Withheld)),
            CallerNumber::Unusable(raw) => return Ok((None, Identification::Unusable { raw })),
            CallerNumber::E164(n) => n,
        };
        let mut found = self.customers_by_number(&e164).await?;
        if found.is_empty() {
            if let Some(id) = self.create_provisional(&e164).await? {
                let customer = self
                    .customer(id)
                    .await?
                    .ok_or(Error::NotFound(Entity::Customer(id)))?;
                return Ok((
                    Some(e164),
                    Identification::Provisional {
                        customer: Box::new(customer),
                    },
                ));
            }
            // Another call from the same number created it a moment ago.
            found = self.customers_by_number(&e164).await?;
        }
        let ident = match found.len() {
            0 => return Err(Error::NotFound(Entity::Customer(0))),
            1 => {
                let c = found.remove(0);
                if c.provisional {
                    Identification::Provisional {
                        customer: Box::new(c),
                    }
                } else {
                    Identification::Known {
                        customer: Box::new(c),
                    }
                }
            }
            _ => Identification::Candidates { customers: found },
        };
        Ok((Some(e164), ident))
    }

    /// Creates the provisional record for an unknown number, once: `None` if a concurrent
    /// call already did (the unique `provisional_for` column arbitrates).
    async fn create_provisional(&self, e164: &str) -> Result<Option<CustomerId>> {
        let now = now_ms();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let id: Option<(i64,)> = sqlx::query_as(
                "INSERT INTO customers (surname, tier, custom_fields, provisional, provisional_for, name_key, created_at, updated_at) \
                 VALUES ('', 'public', '{}', TRUE, $1, '', $2, $2) ON CONFLICT (provisional_for) DO NOTHING RETURNING id",
            )
            .bind(e164)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?;
            if let Some((id,)) = id {
                sqlx::query("INSERT INTO phone_numbers (customer_id, e164) VALUES ($1, $2)")
                    .bind(id)
                    .bind(e164)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(id.map(|(id,)| id))
        })
    }

    /// Identifies the caller and, if one customer results (known or provisional), builds the
    /// 360° view for `queue`. This is what the call path calls when the call is offered.
    pub async fn screen_pop(&self, caller: &str, queue: Option<&str>) -> Result<ScreenPop> {
        let (number, identification) = self.identify_number(caller).await?;
        let view = match &identification {
            Identification::Known { customer } | Identification::Provisional { customer } => {
                Some(self.view_of((**customer).clone(), queue).await?)
            }
            _ => None,
        };
        Ok(ScreenPop {
            number,
            identification,
            view,
        })
    }

    /// The 360° view of a customer chosen by id (e.g. after the agent picked a candidate).
    pub async fn view(&self, id: CustomerId, queue: Option<&str>) -> Result<View360> {
        let customer = self
            .customer(id)
            .await?
            .ok_or(Error::NotFound(Entity::Customer(id)))?;
        self.view_of(customer, queue).await
    }

    /// Trail, open tickets, script and offers are independent: fetched concurrently, each
    /// by an index (the scripts and offers tables are small rule tables).
    async fn view_of(&self, customer: Customer, queue: Option<&str>) -> Result<View360> {
        let (interactions, open_tickets, script, offers) = tokio::try_join!(
            self.trail(customer.id, TRAIL_LEN),
            self.open_tickets(customer.id),
            self.script_for(queue, customer.data.tier),
            self.offers_for(customer.data.tier, customer.data.segment.as_deref()),
        )?;
        let greeting = script
            .map(|t| greeting::render(&t, &greeting_values(&customer, &open_tickets, queue)))
            .unwrap_or_default();
        let last_disposition = interactions.first().and_then(|i| i.disposition.as_deref());
        let offer = offers.into_iter().find(|o| {
            o.min_interactions
                .is_none_or(|m| interactions.len() as i64 >= m)
                && o.max_open_tickets
                    .is_none_or(|m| open_tickets.len() as i64 <= m)
                && o.last_disposition
                    .as_deref()
                    .is_none_or(|d| Some(d) == last_disposition)
        });
        Ok(View360 {
            customer,
            interactions,
            open_tickets,
            greeting,
            offer,
        })
    }

    /// The newest `limit` contacts of a customer with their linked tickets.
    pub async fn trail(&self, customer_id: CustomerId, limit: i64) -> Result<Vec<Interaction>> {
        let limit = clamp_limit(limit);
        let (rows, links): (Vec<InteractionRow>, Vec<(i64, i64)>) = on_pool!(self, |p| {
            let rows: Vec<InteractionRow> = sqlx::query_as(concat!(
                "SELECT ",
                interaction_cols!(),
                " FROM interactions WHERE customer_id = $1 ORDER BY started_at DESC, id DESC LIMIT $2"
            ))
            .bind(customer_id)
            .bind(limit)
            .fetch_all(p)
            .await?;
            // Links are rare; fetched for the page just read, through the primary key.
            let links: Vec<(i64, i64)> = match (rows.last(), rows.first()) {
                (Some(lo), Some(hi)) => {
                    sqlx::query_as(
                        "SELECT l.interaction_id, l.ticket_id FROM interaction_tickets l \
                         JOIN interactions i ON i.id = l.interaction_id \
                         WHERE i.customer_id = $1 AND i.started_at >= $2 AND i.started_at <= $3 ORDER BY l.ticket_id",
                    )
                    .bind(customer_id)
                    .bind(lo.started_at)
                    .bind(hi.started_at)
                    .fetch_all(p)
                    .await?
                }
                _ => Vec::new(),
            };
            (rows, links)
        });
        Ok(rows
            .into_iter()
            .map(|r| {
                let ids = links
                    .iter()
                    .filter(|(i, _)| *i == r.id)
                    .map(|(_, t)| *t)
                    .collect();
                interaction_from(r, ids)
            })
            .collect())
    }

    async fn open_tickets(&self, customer_id: CustomerId) -> Result<Vec<Ticket>> {
        let rows: Vec<TicketRow> = on_pool!(self, |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                ticket_cols!(),
                " FROM tickets WHERE customer_id = $1 AND status IN ('open', 'in_progress', 'waiting') \
                 ORDER BY updated_at DESC, id DESC LIMIT $2"
            ))
            .bind(customer_id)
            .bind(OPEN_TICKETS_SHOWN)
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(ticket_from).collect())
    }

    /// The most specific script: queue+tier, then queue, then tier, then the default.
    async fn script_for(&self, queue: Option<&str>, tier: Tier) -> Result<Option<String>> {
        let row: Option<(String,)> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT template FROM greeting_scripts \
                 WHERE (queue IS NULL OR queue = $1) AND (tier IS NULL OR tier = $2) \
                 ORDER BY CASE WHEN queue IS NULL THEN 1 ELSE 0 END, CASE WHEN tier IS NULL THEN 1 ELSE 0 END, id DESC \
                 LIMIT 1",
            )
            .bind(queue)
            .bind(tier.as_str())
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(|(t,)| t))
    }

    async fn offers_for(&self, tier: Tier, segment: Option<&str>) -> Result<Vec<Offer>> {
        let rows: Vec<OfferRow> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, name, text, tier, segment, min_interactions, max_open_tickets, last_disposition, rank \
                 FROM offers WHERE active AND (tier IS NULL OR tier = $1) AND (segment IS NULL OR segment = $2) \
                 ORDER BY rank DESC, id LIMIT 50",
            )
            .bind(tier.as_str())
            .bind(segment)
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(offer_from).collect())
    }

    // ---- scripts and offers ------------------------------------------------------------

    /// Sets the greeting template for a queue and/or tier (`None` = any); replaces an
    /// existing one for the same pair.
    pub async fn set_script(
        &self,
        queue: Option<&str>,
        tier: Option<Tier>,
        template: &str,
    ) -> Result<()> {
        let tier = tier.map(Tier::as_str);
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            sqlx::query(
                "DELETE FROM greeting_scripts WHERE COALESCE(queue, '') = COALESCE($1, '') AND COALESCE(tier, '') = COALESCE($2, '')",
            )
            .bind(queue)
            .bind(tier)
            .execute(&mut *tx)
            .await?;
            sqlx::query("INSERT INTO greeting_scripts (queue, tier, template) VALUES ($1, $2, $3)")
                .bind(queue)
                .bind(tier)
                .bind(template)
                .execute(&mut *tx)
                .await?;
            tx.commit().await?;
            Ok(())
        })
    }

    /// Adds an active next-best-offer rule; returns its id.
    pub async fn add_offer(&self, offer: &Offer) -> Result<i64> {
        let (id,): (i64,) = on_pool!(self, |p| {
            sqlx::query_as(
                "INSERT INTO offers (name, text, tier, segment, min_interactions, max_open_tickets, last_disposition, rank, active) \
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $8, TRUE) RETURNING id",
            )
            .bind(&offer.name)
            .bind(&offer.text)
            .bind(offer.tier.map(Tier::as_str))
            .bind(&offer.segment)
            .bind(offer.min_interactions)
            .bind(offer.max_open_tickets)
            .bind(&offer.last_disposition)
            .bind(offer.rank)
            .fetch_one(p)
            .await?
        });
        Ok(id)
    }

    // ---- service trail -----------------------------------------------------------------

    /// Writes a contact into the trail (at call end), linking the given tickets.
    pub async fn record_interaction(&self, i: &NewInteraction) -> Result<InteractionId> {
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO interactions (customer_id, channel, direction, call_id, queue, agent, started_at, ended_at, recording_path) \
                 SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9 WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1) RETURNING id",
            )
            .bind(i.customer_id)
            .bind(&i.channel)
            .bind(i.direction.as_str())
            .bind(&i.call_id)
            .bind(&i.queue)
            .bind(&i.agent)
            .bind(i.started_at)
            .bind(i.ended_at)
            .bind(&i.recording_path)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::NotFound(Entity::Customer(i.customer_id)))?;
            for t in &i.ticket_ids {
                let linked = sqlx::query(
                    "INSERT INTO interaction_tickets (interaction_id, ticket_id) \
                     SELECT $1, id FROM tickets WHERE id = $2 ON CONFLICT DO NOTHING",
                )
                .bind(id)
                .bind(*t)
                .execute(&mut *tx)
                .await?;
                if linked.rows_affected() == 0 {
                    return Err(Error::NotFound(Entity::Ticket(*t)));
                }
            }
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Attaches the wrap-up disposition and notes to a contact.
    pub async fn wrap_up(
        &self,
        id: InteractionId,
        disposition: &str,
        notes: Option<&str>,
    ) -> Result<()> {
        let n = on_pool!(self, |p| {
            sqlx::query("UPDATE interactions SET disposition = $2, notes = $3 WHERE id = $1")
                .bind(id)
                .bind(disposition)
                .bind(notes)
                .execute(p)
                .await?
                .rows_affected()
        });
        if n == 0 {
            return Err(Error::NotFound(Entity::Interaction(id)));
        }
        Ok(())
    }

    /// The contact recorded for a call id (the newest, if a call was recorded twice).
    pub async fn interaction_by_call_id(&self, call_id: &str) -> Result<Option<Interaction>> {
        let row: Option<InteractionRow> = on_pool!(self, |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                interaction_cols!(),
                " FROM interactions WHERE call_id = $1 ORDER BY id DESC LIMIT 1"
            ))
            .bind(call_id)
            .fetch_optional(p)
            .await?
        });
        let Some(row) = row else { return Ok(None) };
        let links: Vec<(i64,)> = on_pool!(self, |p| {
            sqlx::query_as("SELECT ticket_id FROM interaction_tickets WHERE interaction_id = $1 ORDER BY ticket_id")
                .bind(row.id)
                .fetch_all(p)
                .await?
        });
        Ok(Some(interaction_from(
            row,
            links.into_iter().map(|(t,)| t).collect(),
        )))
    }

    // ---- tickets -----------------------------------------------------------------------

    /// Opens a ticket; the history starts with "created".
    pub async fn create_ticket(&self, t: &NewTicket, actor: &str) -> Result<TicketId> {
        let now = now_ms();
        on_pool!(self, |p| {
            let mut tx = p.begin().await?;
            let (id,): (i64,) = sqlx::query_as(
                "INSERT INTO tickets (customer_id, reference, subject, status, priority, assignee, due_at, created_at, updated_at) \
                 SELECT $1, '', $2, 'open', $3, $4, $5, $6, $6 WHERE EXISTS (SELECT 1 FROM customers WHERE id = $1) RETURNING id",
            )
            .bind(t.customer_id)
            .bind(&t.subject)
            .bind(t.priority.as_str())
            .bind(&t.assignee)
            .bind(t.due_at)
            .bind(now)
            .fetch_optional(&mut *tx)
            .await?
            .ok_or(Error::NotFound(Entity::Customer(t.customer_id)))?;
            let reference = t.reference.clone().unwrap_or_else(|| format!("T-{id}"));
            sqlx::query("UPDATE tickets SET reference = $2 WHERE id = $1")
                .bind(id)
                .bind(&reference)
                .execute(&mut *tx)
                .await?;
            sqlx::query(
                "INSERT INTO ticket_history (ticket_id, at, actor, change) VALUES ($1, $2, $3, $4)",
            )
            .bind(id)
            .bind(now)
            .bind(actor)
            .bind(format!("created: {} ({})", t.subject, t.priority))
            .execute(&mut *tx)
            .await?;
            tx.commit().await?;
            Ok(id)
        })
    }

    /// Applies changes and records one history line per changed field (and the note).
    /// Read and write happen in one locked transaction, so concurrent updates by two agents
    /// each see the other's result and the history stays a true sequence.
    pub async fn update_ticket(&self, id: TicketId, u: &TicketUpdate, actor: &str) -> Result<()> {
        let (begin, select) = match self.backend() {
            Backend::Sqlite => (
                "BEGIN IMMEDIATE",
                concat!("SELECT ", ticket_cols!(), " FROM tickets WHERE id = $1"),
            ),
            Backend::Postgres => (
                "BEGIN",
                concat!(
                    "SELECT ",
                    ticket_cols!(),
                    " FROM tickets WHERE id = $1 FOR UPDATE"
                ),
            ),
        };
        let now = now_ms();
        on_pool!(self, |p| {
            let mut tx = p.begin_with(begin).await?;
            let row: Option<TicketRow> = sqlx::query_as(select)
                .bind(id)
                .fetch_optional(&mut *tx)
                .await?;
            let current = ticket_from(row.ok_or(Error::NotFound(Entity::Ticket(id)))?);
            let (next, changes) = ticket_changes(&current, u);
            if changes.is_empty() {
                return Ok(());
            }
            sqlx::query("UPDATE tickets SET status = $2, priority = $3, assignee = $4, due_at = $5, updated_at = $6 WHERE id = $1")
                .bind(id)
                .bind(next.status.as_str())
                .bind(next.priority.as_str())
                .bind(&next.assignee)
                .bind(next.due_at)
                .bind(now)
                .execute(&mut *tx)
                .await?;
            for c in &changes {
                sqlx::query("INSERT INTO ticket_history (ticket_id, at, actor, change) VALUES ($1, $2, $3, $4)")
                    .bind(id)
                    .bind(now)
                    .bind(actor)
                    .bind(c)
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
            Ok(())
        })
    }

    pub async fn ticket(&self, id: TicketId) -> Result<Option<Ticket>> {
        let row: Option<TicketRow> = on_pool!(self, |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                ticket_cols!(),
                " FROM tickets WHERE id = $1"
            ))
            .bind(id)
            .fetch_optional(p)
            .await?
        });
        Ok(row.map(ticket_from))
    }

    /// All tickets of a customer, newest first (bounded by `limit` ≤ 100).
    pub async fn tickets_of(&self, customer_id: CustomerId, limit: i64) -> Result<Vec<Ticket>> {
        let rows: Vec<TicketRow> = on_pool!(self, |p| {
            sqlx::query_as(concat!(
                "SELECT ",
                ticket_cols!(),
                " FROM tickets WHERE customer_id = $1 ORDER BY created_at DESC, id DESC LIMIT $2"
            ))
            .bind(customer_id)
            .bind(clamp_limit(limit))
            .fetch_all(p)
            .await?
        });
        Ok(rows.into_iter().map(ticket_from).collect())
    }

    /// A ticket's history, oldest first.
    pub async fn ticket_history(&self, id: TicketId) -> Result<Vec<TicketEvent>> {
        let rows: Vec<(i64, String, String)> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT at, actor, change FROM ticket_history WHERE ticket_id = $1 ORDER BY id",
            )
            .bind(id)
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(|(at, actor, change)| TicketEvent { at, actor, change })
            .collect())
    }

    // ---- audit ---------------------------------------------------------------------------

    /// Logs an access to customer records (a read, a change, a search, or a denied try).
    pub async fn audit(&self, e: &NewAuditEntry) -> Result<()> {
        on_pool!(self, |p| {
            sqlx::query(
                "INSERT INTO audit_log (at, actor, action, customer_id, allowed, detail) VALUES ($1, $2, $3, $4, $5, $6)",
            )
            .bind(now_ms())
            .bind(&e.actor)
            .bind(&e.action)
            .bind(e.customer_id)
            .bind(e.allowed)
            .bind(&e.detail)
            .execute(p)
            .await?;
            Ok(())
        })
    }

    /// The newest audit entries about a customer (or all, with `None`), newest first.
    pub async fn audit_log(
        &self,
        customer_id: Option<CustomerId>,
        limit: i64,
    ) -> Result<Vec<AuditEntry>> {
        let rows: Vec<AuditRow> = on_pool!(self, |p| {
            sqlx::query_as(
                "SELECT id, at, actor, action, customer_id, allowed, detail FROM audit_log \
                 WHERE ($1 IS NULL OR customer_id = $1) ORDER BY id DESC LIMIT $2",
            )
            .bind(customer_id)
            .bind(limit.clamp(1, 10_000))
            .fetch_all(p)
            .await?
        });
        Ok(rows
            .into_iter()
            .map(
                |(id, at, actor, action, customer_id, allowed, detail)| AuditEntry {
                    id,
                    at,
                    actor,
                    action,
                    customer_id,
                    allowed,
                    detail,
                },
            )
            .collect())
    }

    /// Counts rows per table, for reports and tests: (customers, numbers, interactions, tickets).
    pub async fn counts(&self) -> Result<(i64, i64, i64, i64)> {
        on_pool!(self, |p| {
            let (a,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM customers")
                .fetch_one(p)
                .await?;
            let (b,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM phone_numbers")
                .fetch_one(p)
                .await?;
            let (c,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM interactions")
                .fetch_one(p)
                .await?;
            let (d,): (i64,) = sqlx::query_as("SELECT COUNT(*) FROM tickets")
                .fetch_one(p)
                .await?;
            Ok((a, b, c, d))
        })
    }
}

/// (id, at, actor, action, customer_id, allowed, detail).
type AuditRow = (i64, i64, String, String, Option<i64>, bool, String);

/// The ticket after `u`, and one human-readable line per actual change.
fn ticket_changes(current: &Ticket, u: &TicketUpdate) -> (Ticket, Vec<String>) {
    let mut changes = Vec::new();
    let mut next = current.clone();
    if let Some(s) = u.status.filter(|s| *s != current.status) {
        changes.push(format!("status: {} → {}", current.status, s));
        next.status = s;
    }
    if let Some(pr) = u.priority.filter(|pr| *pr != current.priority) {
        changes.push(format!("priority: {} → {}", current.priority, pr));
        next.priority = pr;
    }
    if let Some(a) = u.assignee.as_ref().filter(|a| **a != current.assignee) {
        changes.push(format!(
            "assignee: {} → {}",
            current.assignee.as_deref().unwrap_or("-"),
            a.as_deref().unwrap_or("-")
        ));
        next.assignee = a.clone();
    }
    if let Some(d) = u.due_at.filter(|d| *d != current.due_at) {
        changes.push(format!(
            "due: {} → {}",
            current.due_at.map_or("-".into(), |v| v.to_string()),
            d.map_or("-".into(), |v| v.to_string())
        ));
        next.due_at = d;
    }
    if let Some(n) = u.note.as_deref().map(str::trim).filter(|n| !n.is_empty()) {
        changes.push(format!("note: {n}"));
    }
    (next, changes)
}

/// Placeholder values for greeting scripts.
fn greeting_values<'a>(
    c: &Customer,
    open: &[Ticket],
    queue: Option<&str>,
) -> HashMap<&'a str, String> {
    let d = &c.data;
    let mut v = HashMap::new();
    let mut put = |k: &'a str, val: Option<&str>| {
        if let Some(val) = val {
            v.insert(k, val.to_string());
        }
    };
    put("title", d.title.as_deref());
    put("first_name", d.first_name.as_deref());
    put("surname", Some(d.surname.as_str()));
    put("company", d.company.as_deref());
    put("account_manager", d.account_manager.as_deref());
    put("language", d.language.as_deref());
    put("queue", queue);
    put("tier", Some(d.tier.as_str()));
    put("last_ticket", open.first().map(|t| t.reference.as_str()));
    let name = [d.first_name.as_deref(), Some(d.surname.as_str())]
        .into_iter()
        .flatten()
        .filter(|s| !s.is_empty())
        .collect::<Vec<_>>()
        .join(" ");
    put("name", Some(name.as_str()));
    v
}
