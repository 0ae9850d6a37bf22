//! Live apply: a new routing configuration replaces the running one without a restart
//! and without touching calls in progress.
//!
//! * The ACD task applies the queue and agent changes first (queues updated in place,
//!   so waiting callers keep their places and a new strategy applies to the next
//!   decision; removed queues drain to their fallbacks).
//! * Then the dispatcher swaps the routing tables (numbers, menus, hours, queue
//!   options, users) that *new* calls read, and tells the SIP core which numbers to
//!   deliver. A call already running keeps the tables it started with, so a caller in a
//!   menu finishes that menu.

use tokio::sync::oneshot;

use crate::acd::AcdInput;
use crate::{Control, SwitchConfig, SwitchError, SwitchHandle};

/// What a live apply changed, for the admin's audit trail.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconfigReport {
    /// One line per ACD change (`queue support updated`, `agent 1004 added`, …).
    pub acd: Vec<String>,
    /// Numbers now answered.
    pub numbers: usize,
}

/// The routing parts of a [`SwitchConfig`] a live apply replaces; media, clock, CDR sink
/// and timers stay as started.
pub(crate) fn merge(running: &SwitchConfig, new: SwitchConfig) -> SwitchConfig {
    SwitchConfig {
        routes: new.routes,
        menus: new.menus,
        hours: new.hours,
        queues: new.queues,
        users: new.users,
        extensions: new.extensions,
        acd: new.acd,
        voice: new.voice.or_else(|| running.voice.clone()),
        trunk: new.trunk,
        ..running.clone()
    }
}

impl SwitchHandle {
    /// Applies a new validated configuration while calls flow (see the module docs).
    /// Starting or removing the ACD altogether needs a restart and is refused.
    pub async fn reconfigure(&self, new: SwitchConfig) -> Result<ReconfigReport, SwitchError> {
        let acd = match (&self.acd, &new.acd) {
            (Some(tx), Some(cfg)) => {
                let (reply, rx) = oneshot::channel();
                tx.send(AcdInput::Reconfigure {
                    cfg: Box::new(cfg.clone()),
                    reply,
                })
                .await
                .map_err(|_| SwitchError::Unavailable)?;
                rx.await.map_err(|_| SwitchError::Unavailable)??
            }
            (None, None) => Vec::new(),
            (None, Some(_)) => {
                return Err(SwitchError::InvalidState(
                    "adding [acd] to a running switch needs a restart".into(),
                ));
            }
            (Some(_), None) => {
                return Err(SwitchError::InvalidState(
                    "removing [acd] from a running switch needs a restart".into(),
                ));
            }
        };
        let numbers = new.routes.len();
        let (reply, rx) = oneshot::channel();
        self.control
            .send(Control::Reconfigure {
                cfg: Box::new(new),
                reply,
            })
            .await
            .map_err(|_| SwitchError::Unavailable)?;
        rx.await.map_err(|_| SwitchError::Unavailable)??;
        Ok(ReconfigReport { acd, numbers })
    }
}
