//! The crate's one error type.

use std::fmt;

/// Everything that can go wrong in the CRM store. Input problems are values, never panics.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The database rejected or failed a statement (connection lost, constraint, ...).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Schema migration failed on open.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A store URL or path that names no supported backend.
    #[error("unsupported store location {0:?} (use a file path, sqlite:PATH or postgres://...)")]
    BadLocation(String),
    /// The configured default region is not an ISO 3166 code the numbering plan knows.
    #[error("unknown default region {0:?}")]
    BadRegion(String),
    /// A phone number that is not a valid number (in the default region or internationally).
    #[error("invalid phone number {0:?}")]
    BadNumber(String),
    /// A field value that the schema does not allow (unknown tier, status, ...).
    #[error("invalid {field}: {reason}")]
    Invalid { field: &'static str, reason: String },
    /// The referenced record does not exist.
    #[error("{0} not found")]
    NotFound(Entity),
    /// A CSV import was rejected before anything was written.
    #[error("import rejected: {} bad row(s), first: {}", .0.len(), .0.first().map(|e| e.to_string()).unwrap_or_default())]
    ImportRejected(Vec<RowError>),
    /// The CSV stream itself could not be read.
    #[error("reading CSV: {0}")]
    Csv(String),
    /// Custom fields must be a JSON object.
    #[error("custom fields: {0}")]
    Json(#[from] serde_json::Error),
}

/// Which kind of record a [`Error::NotFound`] refers to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Entity {
    Customer(i64),
    Interaction(i64),
    Ticket(i64),
}

impl fmt::Display for Entity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Entity::Customer(id) => write!(f, "customer {id}"),
            Entity::Interaction(id) => write!(f, "interaction {id}"),
            Entity::Ticket(id) => write!(f, "ticket {id}"),
        }
    }
}

/// One rejected CSV row: the 1-based line in the file and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    pub line: u64,
    pub reason: String,
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "line {}: {}", self.line, self.reason)
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
