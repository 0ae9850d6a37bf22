//! Voicemail messages: what the switch records about a message a caller left, stored next
//! to the call records (same database, same writer) so the message row and the call's CDR
//! commit in order.

use crate::UnixMillis;

/// One voicemail message (a row of the `voicemail` table).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct VoicemailMessage {
    /// The call that left it (one message per call): the message's id in the API.
    pub call_id: String,
    /// The voicemail box (`[[voicemail]] name`).
    pub mailbox: String,
    /// The queue whose fallback led here, if any (supervisors see their queues' boxes).
    pub queue: Option<String>,
    pub caller: String,
    pub caller_name: Option<String>,
    /// When the recording started (after the greeting and the beep).
    pub recorded_at: UnixMillis,
    pub duration_ms: i64,
    /// The mono 8 kHz WAV file.
    pub path: String,
    /// `hangup`, `key`, `limit` or `silence`.
    pub ended_by: String,
    pub listened_at: Option<UnixMillis>,
    pub deleted_at: Option<UnixMillis>,
}

/// Which messages a list returns (newest first).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VoicemailFilter {
    /// Only this box.
    pub mailbox: Option<String>,
    /// Only messages left from these queues (empty: any, including none).
    pub queues: Vec<String>,
    /// Include messages marked deleted.
    pub deleted: bool,
    /// At most this many.
    pub limit: u32,
}
