//! The crate's one error type.

/// What can go wrong in call control.
#[derive(Debug, thiserror::Error)]
pub enum SwitchError {
    #[error("SIP: {0}")]
    Sip(#[from] hotline_sip::Error),
    #[error("media: {0}")]
    Media(#[from] hotline_media::MediaError),
    #[error("ACD: {0}")]
    Acd(String),
    #[error("invalid switch configuration: {0}")]
    Config(String),
    /// A desk command the switch does not carry out (yet), e.g. `hold`.
    #[error("not supported: {0}")]
    NotSupported(&'static str),
    #[error("not found: {0}")]
    NotFound(String),
    /// The command does not fit the current state (e.g. an agent not logged in).
    #[error("invalid state: {0}")]
    InvalidState(String),
    #[error("forbidden: {0}")]
    Forbidden(String),
    /// The switch (or its ACD task) is gone or too busy.
    #[error("call control unavailable")]
    Unavailable,
    #[error("CRM: {0}")]
    Crm(#[from] hotline_crm::Error),
}

impl SwitchError {
    /// A stable code for desks' error frames.
    pub fn code(&self) -> &'static str {
        match self {
            SwitchError::NotSupported(_) => "not_supported",
            SwitchError::NotFound(_) => "not_found",
            SwitchError::InvalidState(_) => "invalid_state",
            SwitchError::Forbidden(_) => "forbidden",
            SwitchError::Unavailable => "unavailable",
            SwitchError::Crm(_) => "store_error",
            _ => "internal",
        }
    }
}
