//! Support for the SIPp integration tests (see `tests/`).
