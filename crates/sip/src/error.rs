//! The crate's one error type.

/// Errors of the SIP stack. `Malformed` carries the text used as the 400 reason phrase.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("{0}")]
    Malformed(String),
    #[error("message too large ({0} bytes)")]
    TooLarge(usize),
    /// A syntactically valid method the message API cannot represent (answered 501).
    #[error("Not Implemented: method {0}")]
    UnsupportedMethod(String),
    #[error("too many headers")]
    TooManyHeaders,
    /// The application named a transaction that is gone or already answered.
    #[error("no such transaction (gone or already answered)")]
    UnknownTransaction,
    /// A certificate or key that cannot be loaded (the message names the file).
    #[error("TLS: {0}")]
    Tls(String),
    #[error("invalid configuration: {0}")]
    Config(String),
    #[error("i/o error on {what}: {source}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}
