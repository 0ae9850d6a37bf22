//! Hotline's call detail records (CDRs) and queue log.
//!
//! Call control hands every finished call to a [`CdrSink`] ([`CdrSink::record`] returns once
//! the row is committed, so a CDR is durable before the dialog is released) and every queue
//! step as a [`QueueEvent`] (fire-and-forget, batched). The [`CdrWriter`] task owns the
//! [`CdrStore`] (SQLite or PostgreSQL); when the store fails it keeps rows in a bounded
//! buffer and retries, so a database restart loses nothing. [`report`] turns the stored rows
//! into per queue / agent / hour / day figures.

mod error;
pub mod report;
mod sink;
mod store;
pub mod time;
mod voicemail;

pub use error::{CdrError, Result};
pub use sink::{CdrSink, CdrWriter, MemoryCdrs, StartedCall, WriterConfig};
pub use store::{CdrStore, ReportInput, StoreOptions};
pub use voicemail::{VoicemailFilter, VoicemailMessage};

/// Wall-clock milliseconds since the Unix epoch.
pub type UnixMillis = i64;

/// Current wall-clock time in [`UnixMillis`].
pub fn now_millis() -> UnixMillis {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// How a call ended. Stored as lower-case text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CallResult {
    /// Bridged to an agent/extension.
    Answered,
    /// The caller hung up before an agent answered (queue or IVR).
    Abandoned,
    /// Refused before answer (404, 488, 503 …).
    Rejected,
    /// Answered by Hotline but could not complete (no agent leg, media failure …).
    Failed,
    /// Left the queue to its fallback (hangup / voicemail-like / other number).
    Fallback,
    /// The caller chose a callback and hung up; the callback itself is a new record.
    Callback,
    /// Out of hours: the closed message played.
    Closed,
    /// Blind-transferred away by the agent.
    Transferred,
    /// In progress when Hotline stopped or crashed (set at the next start).
    Interrupted,
    /// The caller left a voicemail message (`recording` is the message's WAV).
    Voicemail,
}

impl CallResult {
    pub const ALL: [CallResult; 10] = [
        CallResult::Answered,
        CallResult::Abandoned,
        CallResult::Rejected,
        CallResult::Failed,
        CallResult::Fallback,
        CallResult::Callback,
        CallResult::Closed,
        CallResult::Transferred,
        CallResult::Interrupted,
        CallResult::Voicemail,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            CallResult::Answered => "answered",
            CallResult::Abandoned => "abandoned",
            CallResult::Rejected => "rejected",
            CallResult::Failed => "failed",
            CallResult::Fallback => "fallback",
            CallResult::Callback => "callback",
            CallResult::Closed => "closed",
            CallResult::Transferred => "transferred",
            CallResult::Interrupted => "interrupted",
            CallResult::Voicemail => "voicemail",
        }
    }

    pub fn parse(s: &str) -> Option<CallResult> {
        CallResult::ALL.into_iter().find(|r| r.as_str() == s)
    }
}

/// Who ended the call. Stored as lower-case text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HangupSide {
    Caller,
    Agent,
    System,
}

impl HangupSide {
    pub fn as_str(&self) -> &'static str {
        match self {
            HangupSide::Caller => "caller",
            HangupSide::Agent => "agent",
            HangupSide::System => "system",
        }
    }

    pub fn parse(s: &str) -> Option<HangupSide> {
        [HangupSide::Caller, HangupSide::Agent, HangupSide::System]
            .into_iter()
            .find(|h| h.as_str() == s)
    }
}

/// One finished call (one row of the `calls` table).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct CallRecord {
    /// Hotline's id for the call (unique).
    pub call_id: String,
    /// The caller leg's SIP Call-ID.
    pub sip_call_id: String,
    /// "inbound" | "outbound" (callbacks, click-to-dial).
    pub direction: String,
    /// Caller number/user as received (From user).
    pub caller: String,
    pub caller_name: Option<String>,
    /// Request-URI user.
    pub dialed: String,
    /// E.g. "queue:support", "menu:main>queue:sales", "extension:1001", "closed".
    pub route: String,
    pub queue: Option<String>,
    /// The agent who answered (SIP user / agent name).
    pub agent: Option<String>,
    pub arrived_at: UnixMillis,
    pub queued_at: Option<UnixMillis>,
    /// First offer to an agent.
    pub offered_at: Option<UnixMillis>,
    /// Agent answered (bridge).
    pub answered_at: Option<UnixMillis>,
    pub ended_at: UnixMillis,
    /// queued_at → answered_at or end.
    pub wait_ms: i64,
    /// answered_at → end, minus hold.
    pub talk_ms: i64,
    pub hold_ms: i64,
    pub result: CallResult,
    pub hangup_side: HangupSide,
    /// Final status of the caller's INVITE.
    pub sip_status: u16,
    /// Path of the WAV recording.
    pub recording: Option<String>,
    pub transfers: u32,
}

/// One queue-log line (like app_queue's queue_log).
#[derive(Debug, Clone, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct QueueEvent {
    pub at: UnixMillis,
    /// "NONE" for agent-only events.
    pub call_id: String,
    /// "NONE" for agent-only events.
    pub queue: String,
    pub agent: Option<String>,
    pub event: QueueEventKind,
    /// Free text: position, ring ms, not-ready reason; for `WrapupEnd` the wrap-up length
    /// in milliseconds (the reports add it to the handle time of `call_id`).
    pub data: String,
}

/// What a [`QueueEvent`] says. Stored as SCREAMING_SNAKE text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum QueueEventKind {
    EnterQueue,
    Offer,
    RingNoAnswer,
    Connect,
    Abandon,
    CompleteCaller,
    CompleteAgent,
    Fallback,
    Callback,
    Transfer,
    AgentLogin,
    AgentLogout,
    AgentReady,
    /// `data` is the not-ready reason.
    AgentNotReady,
    /// `data` is the wrap-up length in milliseconds.
    WrapupEnd,
    /// A supervisor (`agent`) listens in on a call: `data` is `<monitor|whisper|barge|stop>
    /// <the supervised agent>`.
    Supervise,
    /// The caller left a voicemail message: `data` is `<box>,<seconds>,<ended by>`.
    Voicemail,
}

impl QueueEventKind {
    pub const ALL: [QueueEventKind; 17] = [
        QueueEventKind::EnterQueue,
        QueueEventKind::Offer,
        QueueEventKind::RingNoAnswer,
        QueueEventKind::Connect,
        QueueEventKind::Abandon,
        QueueEventKind::CompleteCaller,
        QueueEventKind::CompleteAgent,
        QueueEventKind::Fallback,
        QueueEventKind::Callback,
        QueueEventKind::Transfer,
        QueueEventKind::AgentLogin,
        QueueEventKind::AgentLogout,
        QueueEventKind::AgentReady,
        QueueEventKind::AgentNotReady,
        QueueEventKind::WrapupEnd,
        QueueEventKind::Supervise,
        QueueEventKind::Voicemail,
    ];

    pub fn as_str(&self) -> &'static str {
        match self {
            QueueEventKind::EnterQueue => "ENTER_QUEUE",
            QueueEventKind::Offer => "OFFER",
            QueueEventKind::RingNoAnswer => "RING_NO_ANSWER",
            QueueEventKind::Connect => "CONNECT",
            QueueEventKind::Abandon => "ABANDON",
            QueueEventKind::CompleteCaller => "COMPLETE_CALLER",
            QueueEventKind::CompleteAgent => "COMPLETE_AGENT",
            QueueEventKind::Fallback => "FALLBACK",
            QueueEventKind::Callback => "CALLBACK",
            QueueEventKind::Transfer => "TRANSFER",
            QueueEventKind::AgentLogin => "AGENT_LOGIN",
            QueueEventKind::AgentLogout => "AGENT_LOGOUT",
            QueueEventKind::AgentReady => "AGENT_READY",
            QueueEventKind::AgentNotReady => "AGENT_NOT_READY",
            QueueEventKind::WrapupEnd => "WRAPUP_END",
            QueueEventKind::Supervise => "SUPERVISE",
            QueueEventKind::Voicemail => "VOICEMAIL",
        }
    }

    pub fn parse(s: &str) -> Option<QueueEventKind> {
        QueueEventKind::ALL.into_iter().find(|k| k.as_str() == s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stored_text_round_trips_and_matches_serde() {
        for r in CallResult::ALL {
            assert_eq!(CallResult::parse(r.as_str()), Some(r.clone()));
            assert_eq!(
                serde_json::to_string(&r).unwrap(),
                format!("\"{}\"", r.as_str())
            );
        }
        for k in QueueEventKind::ALL {
            assert_eq!(QueueEventKind::parse(k.as_str()), Some(k.clone()));
            assert_eq!(
                serde_json::to_string(&k).unwrap(),
                format!("\"{}\"", k.as_str())
            );
        }
        for h in [HangupSide::Caller, HangupSide::Agent, HangupSide::System] {
            assert_eq!(HangupSide::parse(h.as_str()), Some(h));
        }
        assert_eq!(CallResult::parse("Answered"), None);
    }
}
