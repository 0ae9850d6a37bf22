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
        /// The offending key below `[acd]` as TOML keys and array indices (`["queue",
        /// "1", "overflow", "0", "after_secs"]`), so the loader can point at its line and
        /// column; empty where no one key is to blame.
        key: Vec<String>,
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

impl AcdError {
    /// The offending key of an [`AcdError::InvalidConfig`] below `[acd]` (empty for
    /// other errors and where no one key is to blame).
    pub fn config_key(&self) -> &[String] {
        match self {
            AcdError::InvalidConfig { key, .. } => key,
            _ => &[],
        }
    }

    /// The error with `outer` put in front of its key: a queue's or an agent's own check
    /// knows its fields, the whole config's knows where the entry stands.
    pub(crate) fn under(mut self, outer: &[&str]) -> Self {
        if let AcdError::InvalidConfig { key, .. } = &mut self {
            key.splice(0..0, outer.iter().map(|k| k.to_string()));
        }
        self
    }
}

/// Shorthand used throughout the crate.
pub type Result<T> = std::result::Result<T, AcdError>;
