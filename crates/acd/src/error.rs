//! The crate's single error type.

use crate::{AgentId, CallId};

/// Everything that can go wrong when configuring or driving the engine.
///
/// Events that refer to unknown or inconsistent calls/agents are rejected with an
/// error instead of panicking: they come from other tasks and may race (e.g. a caller
/// hangs up while the offer is being answered).
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AcdError {
    /// The TOML text could not be parsed into the config types (carries line/column).
    #[error("config parse error: {0}")]
    Parse(String),
    /// A config value is out of range or inconsistent.
    #[error("invalid config: {what}: {why}")]
    InvalidConfig {
        /// Where in the config (e.g. `queue "sales" overflow[1]`).
        what: String,
        /// What is wrong.
        why: String,
    },
    /// A name refers to a queue that does not exist.
    #[error("unknown queue {0:?}")]
    UnknownQueue(String),
    /// A name refers to an agent that does not exist.
    #[error("unknown agent {0:?}")]
    UnknownAgent(String),
    /// An agent id outside the engine's table.
    #[error("no such agent {0:?}")]
    NoSuchAgent(AgentId),
    /// A call id the engine does not know (already ended, or never arrived).
    #[error("no such call {0:?}")]
    NoSuchCall(CallId),
    /// A call id that is already in the engine.
    #[error("duplicate call {0:?}")]
    DuplicateCall(CallId),
    /// The event does not fit the current state (e.g. answering an offer that was cancelled).
    #[error("{what} not allowed: {why}")]
    InvalidState {
        /// The event.
        what: &'static str,
        /// The state that forbids it.
        why: String,
    },
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, AcdError>;
