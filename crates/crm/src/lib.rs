//! Hotline's CRM store: customers and their numbers, the service trail, tickets, greeting
//! scripts and next-best offers, over SQLite (embedded default) or PostgreSQL (at scale).
//!
//! The call path uses [`Store::screen_pop`] when a call is offered (identify the caller by
//! number, then the 360° view), [`Store::record_interaction`] at call end and
//! [`Store::wrap_up`] when the agent picks a disposition.

mod bulk;
mod error;
pub mod generate;
pub mod greeting;
pub mod import;
mod model;
pub mod phone;
mod store;

pub use error::{Entity, Error, Result, RowError};
pub use model::*;
pub use phone::{CallerNumber, Normalizer};
pub use store::{Backend, Durability, MAX_CANDIDATES, MAX_SEARCH, Store, StoreConfig};
