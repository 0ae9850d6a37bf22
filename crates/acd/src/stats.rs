//! Statistics snapshots. Definitions are in the crate docs (service level, ASA,
//! abandonment, AHT, occupancy); this module only computes them from counters.

use crate::Millis;
use crate::engine::{AgentState, QStats};

/// Agents of a queue by state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct AgentCounts {
    /// Members not logged in.
    pub logged_out: u32,
    /// Waiting for a call.
    pub available: u32,
    /// Ringing / callback being placed.
    pub reserved: u32,
    /// Talking.
    pub on_call: u32,
    /// After-call work.
    pub wrap_up: u32,
    /// Logged in, not taking calls.
    pub not_ready: u32,
}

impl AgentCounts {
    pub(crate) fn add(&mut self, s: AgentState) {
        match s {
            AgentState::LoggedOut => self.logged_out += 1,
            AgentState::Available => self.available += 1,
            AgentState::Reserved(_) => self.reserved += 1,
            AgentState::OnCall(_) => self.on_call += 1,
            AgentState::WrapUp => self.wrap_up += 1,
            AgentState::NotReady(_) => self.not_ready += 1,
        }
    }
}

/// One queue's figures since the last reset. Ratios are `None` when their denominator is 0.
#[derive(Debug, Clone, PartialEq)]
pub struct QueueSnapshot {
    /// Queue name.
    pub name: String,
    /// Calls waiting now.
    pub waiting: u32,
    /// Longest current wait, seconds.
    pub longest_wait_secs: f64,
    /// Calls that entered (including refused ones).
    pub offered: u64,
    /// Calls answered by an agent.
    pub answered: u64,
    /// Calls answered within the SL threshold.
    pub answered_in_sl: u64,
    /// Callers who hung up before being answered (including short abandons).
    pub abandoned: u64,
    /// Abandons within `short_abandon_secs`.
    pub short_abandoned: u64,
    /// Calls sent to the fallback after `max_wait_secs`.
    pub timed_out: u64,
    /// Calls refused at entry (queue full or empty).
    pub refused: u64,
    /// Callback requests that failed every attempt.
    pub callback_failed: u64,
    /// Calls whose wrap-up ended (the AHT's denominator).
    pub handled: u64,
    /// Service level in 0..=1.
    pub service_level: Option<f64>,
    /// Average speed of answer, seconds.
    pub asa_secs: Option<f64>,
    /// Abandonment rate in 0..=1.
    pub abandon_rate: Option<f64>,
    /// Average handle time (talk + wrap-up), seconds.
    pub aht_secs: Option<f64>,
    /// Occupancy of the queue's member agents in 0..=1.
    pub occupancy: Option<f64>,
    /// Member agents by state.
    pub agents: AgentCounts,
}

fn ratio(n: u64, d: u64) -> Option<f64> {
    (d > 0).then(|| n as f64 / d as f64)
}

impl QueueSnapshot {
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn build(
        name: &str,
        st: &QStats,
        waiting: u32,
        longest_ms: u64,
        _sl_ms: u64,
        agents: AgentCounts,
        busy_ms: u64,
        staffed_ms: u64,
    ) -> Self {
        let counted_abandons = st.abandoned - st.short_abandoned.min(st.abandoned);
        let sl_den = st.answered + counted_abandons + st.timed_out;
        QueueSnapshot {
            name: name.to_string(),
            waiting,
            longest_wait_secs: longest_ms as f64 / 1000.0,
            offered: st.offered,
            answered: st.answered,
            answered_in_sl: st.answered_in_sl,
            abandoned: st.abandoned,
            short_abandoned: st.short_abandoned,
            timed_out: st.timed_out,
            refused: st.refused,
            callback_failed: st.callback_failed,
            handled: st.handled,
            service_level: ratio(st.answered_in_sl, sl_den),
            asa_secs: ratio(st.wait_answered_ms, st.answered).map(|x| x / 1000.0),
            abandon_rate: ratio(
                counted_abandons,
                st.offered.saturating_sub(st.short_abandoned),
            ),
            aht_secs: ratio(st.handle_ms, st.handled).map(|x| x / 1000.0),
            occupancy: ratio(busy_ms, staffed_ms),
            agents,
        }
    }
}

/// One agent's figures since the last reset.
#[derive(Debug, Clone, PartialEq)]
pub struct AgentSnapshot {
    /// Login name.
    pub id: String,
    /// Current state.
    pub state: AgentState,
    /// Seconds in the current state.
    pub state_secs: f64,
    /// Calls completed.
    pub calls_handled: u64,
    /// Total talk time, seconds.
    pub talk_secs: f64,
    /// Total wrap-up time, seconds.
    pub wrapup_secs: f64,
    /// Offers that rang out unanswered.
    pub missed_offers: u64,
    /// Seconds logged in.
    pub logged_in_secs: f64,
    /// Seconds in not-ready.
    pub not_ready_secs: f64,
    /// (reserved + on call + wrap-up) / (logged in − not ready), 0..=1.
    pub occupancy: Option<f64>,
}

/// Everything at one instant.
#[derive(Debug, Clone, PartialEq)]
pub struct Snapshot {
    /// Start of the counting interval.
    pub since: Millis,
    /// When the snapshot was taken.
    pub at: Millis,
    /// Per queue, in config order.
    pub queues: Vec<QueueSnapshot>,
    /// Per agent, in id order.
    pub agents: Vec<AgentSnapshot>,
}
