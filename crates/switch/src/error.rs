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
}
