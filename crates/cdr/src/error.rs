//! The crate's one error type.

/// Everything that can go wrong writing or reading call records.
#[derive(Debug, thiserror::Error)]
pub enum CdrError {
    /// The database rejected or failed a statement (connection lost, constraint, ...).
    #[error("database: {0}")]
    Db(#[from] sqlx::Error),
    /// Schema migration failed on open.
    #[error("migration: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    /// A store URL or path that names no supported backend.
    #[error("unsupported store location {0:?} (use a file path, sqlite:PATH or postgres://...)")]
    BadLocation(String),
    /// The row was accepted and is buffered, but the store has not committed it within the
    /// caller's bound (the store is slow or down). The writer keeps retrying it.
    #[error("call record {0} buffered, not yet committed (store unavailable)")]
    NotYetDurable(String),
    /// The writer's queue stayed full for the whole bound: the row was not accepted.
    #[error("CDR writer overloaded: call record {0} not accepted")]
    Overloaded(String),
    /// The writer task has stopped (shutdown).
    #[error("CDR writer stopped")]
    Closed,
    /// A stored value this version does not understand (hand-edited database).
    #[error("stored {column} value {value:?} is not valid")]
    Corrupt { column: &'static str, value: String },
    /// A report or export argument that makes no sense (e.g. `to` before `from`).
    #[error("invalid {what}: {reason}")]
    Invalid { what: &'static str, reason: String },
    /// Writing a CSV export failed.
    #[error("CSV: {0}")]
    Csv(String),
}

pub type Result<T, E = CdrError> = std::result::Result<T, E>;
