//! The wire protocol, version 1 (`docs/cti-protocol.md`): JSON text frames, each with
//! `"v": 1` and a `type`. Requests carry an `id` that the reply or error echoes.

use serde::Deserialize;
use serde_json::{Value, json};

pub const VERSION: u64 = 1;

/// A request from a desk. Unknown fields are ignored (forward compatibility).
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type")]
pub enum Request {
    #[serde(rename = "auth.login")]
    Login { user: String, password: String },
    #[serde(rename = "auth.resume")]
    Resume { token: String },
    #[serde(rename = "auth.logout")]
    SignOut,
    #[serde(rename = "ping")]
    Ping,
    #[serde(rename = "pong")]
    Pong,
    #[serde(rename = "agent.ready")]
    Ready,
    #[serde(rename = "agent.not_ready")]
    NotReady { reason: String },
    #[serde(rename = "agent.not_ready_after_call")]
    NotReadyAfterCall { reason: String },
    #[serde(rename = "agent.logout")]
    AgentLogout,
    #[serde(rename = "agents.snapshot")]
    Agents,
    #[serde(rename = "queue.stats")]
    QueueStats,
    #[serde(rename = "call.hangup")]
    Hangup { call_id: String },
    #[serde(rename = "call.hold")]
    Hold { call_id: String },
    #[serde(rename = "call.resume")]
    Unhold { call_id: String },
    #[serde(rename = "call.transfer")]
    Transfer {
        call_id: String,
        /// An agent, a queue or a number.
        to: String,
        #[serde(default)]
        attended: bool,
    },
    #[serde(rename = "call.transfer.complete")]
    TransferComplete { call_id: String },
    #[serde(rename = "call.transfer.cancel")]
    TransferCancel { call_id: String },
    #[serde(rename = "call.conference")]
    Conference { call_id: String, to: String },
    #[serde(rename = "call.dtmf")]
    Dtmf { call_id: String, digits: String },
    #[serde(rename = "recording.pause")]
    PauseRecording { call_id: String },
    #[serde(rename = "recording.resume")]
    ResumeRecording { call_id: String },
    #[serde(rename = "call.disposition")]
    Disposition {
        call_id: String,
        code: String,
        #[serde(default)]
        notes: Option<String>,
    },
    #[serde(rename = "call.dial")]
    Dial {
        #[serde(default)]
        customer_id: Option<i64>,
        #[serde(default)]
        number: Option<String>,
    },
    #[serde(rename = "customer.get")]
    CustomerGet { customer_id: i64 },
    #[serde(rename = "customer.choose")]
    CustomerChoose { call_id: String, customer_id: i64 },
    #[serde(rename = "customer.update")]
    CustomerUpdate {
        customer_id: i64,
        data: hotline_crm::CustomerData,
    },
    #[serde(rename = "customer.search")]
    CustomerSearch {
        query: String,
        #[serde(default)]
        limit: Option<i64>,
    },
    #[serde(rename = "ticket.create")]
    TicketCreate { ticket: hotline_crm::NewTicket },
    #[serde(rename = "ticket.update")]
    TicketUpdate {
        ticket_id: i64,
        update: hotline_crm::TicketUpdate,
    },
    /// A supervisor listens in on `agent`'s call: `mode` is monitor, whisper or barge.
    #[serde(rename = "supervise.start")]
    SuperviseStart { agent: String, mode: String },
    #[serde(rename = "supervise.mode")]
    SuperviseMode { mode: String },
    #[serde(rename = "supervise.stop")]
    SuperviseStop,
}

impl Request {
    /// The `type` as sent, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            Request::Login { .. } => "auth.login",
            Request::Resume { .. } => "auth.resume",
            Request::SignOut => "auth.logout",
            Request::Ping => "ping",
            Request::Pong => "pong",
            Request::Ready => "agent.ready",
            Request::NotReady { .. } => "agent.not_ready",
            Request::NotReadyAfterCall { .. } => "agent.not_ready_after_call",
            Request::AgentLogout => "agent.logout",
            Request::Agents => "agents.snapshot",
            Request::QueueStats => "queue.stats",
            Request::Hangup { .. } => "call.hangup",
            Request::Hold { .. } => "call.hold",
            Request::Unhold { .. } => "call.resume",
            Request::Transfer { .. } => "call.transfer",
            Request::TransferComplete { .. } => "call.transfer.complete",
            Request::TransferCancel { .. } => "call.transfer.cancel",
            Request::Conference { .. } => "call.conference",
            Request::Dtmf { .. } => "call.dtmf",
            Request::PauseRecording { .. } => "recording.pause",
            Request::ResumeRecording { .. } => "recording.resume",
            Request::Disposition { .. } => "call.disposition",
            Request::Dial { .. } => "call.dial",
            Request::CustomerGet { .. } => "customer.get",
            Request::CustomerChoose { .. } => "customer.choose",
            Request::CustomerUpdate { .. } => "customer.update",
            Request::CustomerSearch { .. } => "customer.search",
            Request::TicketCreate { .. } => "ticket.create",
            Request::TicketUpdate { .. } => "ticket.update",
            Request::SuperviseStart { .. } => "supervise.start",
            Request::SuperviseMode { .. } => "supervise.mode",
            Request::SuperviseStop => "supervise.stop",
        }
    }
}

/// An error frame's code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fault {
    pub code: &'static str,
    pub message: String,
}

impl Fault {
    pub fn new(code: &'static str, message: impl Into<String>) -> Self {
        Fault {
            code,
            message: message.into(),
        }
    }
}

/// Parses one text frame: the request and its id, or an error frame's fault (with the id
/// when it could be read, so the desk can correlate it).
pub fn parse(
    text: &str,
    max_len: usize,
) -> Result<(Option<Value>, Request), (Option<Value>, Fault)> {
    if text.len() > max_len {
        return Err((
            None,
            Fault::new(
                "frame_too_large",
                format!("frames are at most {max_len} bytes"),
            ),
        ));
    }
    let value: Value = serde_json::from_str(text).map_err(|e| {
        (
            None,
            Fault::new(
                "bad_frame",
                format!("not JSON: line {} column {}", e.line(), e.column()),
            ),
        )
    })?;
    let Some(obj) = value.as_object() else {
        return Err((None, Fault::new("bad_frame", "a frame is a JSON object")));
    };
    // Ids are echoed: only short strings or numbers, never attacker-sized values.
    let id = obj.get("id").cloned().filter(|i| match i {
        Value::String(s) => s.len() <= 64,
        Value::Number(_) => true,
        _ => false,
    });
    match obj.get("v").and_then(Value::as_u64) {
        Some(VERSION) => {}
        Some(v) => {
            return Err((
                id,
                Fault::new(
                    "unsupported_version",
                    format!("version {v} is not spoken here; use 1"),
                ),
            ));
        }
        None => return Err((id, Fault::new("bad_frame", "missing \"v\": 1"))),
    }
    let Some(kind) = obj.get("type").and_then(Value::as_str) else {
        return Err((id, Fault::new("bad_frame", "missing \"type\"")));
    };
    let kind: String = kind.chars().take(40).collect();
    match serde_json::from_value::<Request>(value) {
        Ok(r) => Ok((id, r)),
        Err(e) => {
            let msg = e.to_string();
            let code = if msg.starts_with("unknown variant") {
                "unknown_type"
            } else {
                "bad_request"
            };
            Err((
                id,
                Fault::new(code, format!("{kind}: {}", truncate(&msg, 200))),
            ))
        }
    }
}

fn truncate(s: &str, n: usize) -> String {
    s.chars().take(n).collect()
}

pub fn reply(id: Option<Value>, data: Value) -> String {
    json!({"v": VERSION, "type": "reply", "id": id, "data": data}).to_string()
}

pub fn error(id: Option<Value>, f: &Fault) -> String {
    json!({"v": VERSION, "type": "error", "id": id, "code": f.code, "message": f.message})
        .to_string()
}

pub fn event(name: &str, data: Value) -> String {
    json!({"v": VERSION, "type": name, "data": data}).to_string()
}

pub fn ping() -> String {
    json!({"v": VERSION, "type": "ping"}).to_string()
}
