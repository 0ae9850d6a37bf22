//! Tokio layer.
