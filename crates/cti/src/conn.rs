//! One desk socket: a reader that answers requests and a writer that drains the socket's
//! bounded queue (and sends heartbeats), polled together so a slow store query never
//! holds up a screen pop.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, Utf8Bytes, WebSocket};
use futures_util::{SinkExt, StreamExt};
use hotline_switch::{AgentCommand, CallCommand, SwitchError};
use serde_json::{Value, json};
use tokio::sync::{Notify, mpsc};

use crate::admin::WordList;
use crate::auth::now_ms;
use crate::hub::{ConnTx, Hub, Outbound};
use crate::protocol::{self, Fault, Request};
use crate::{CtiUser, Role};

/// Failed logins on one socket before it is closed.
const MAX_FAILED_LOGINS: u32 = 5;

/// A hash to verify against when the user is unknown, so both answers take as long.
static DUMMY_HASH: std::sync::OnceLock<String> = std::sync::OnceLock::new();

struct Conn {
    hub: Arc<Hub>,
    out: ConnTx,
    user: Option<CtiUser>,
    token: Option<String>,
    failed_logins: u32,
    /// The call this supervisor's socket listens in on (`supervise.*`).
    supervising: Option<String>,
}

pub(crate) async fn serve(hub: Arc<Hub>, socket: WebSocket) {
    let (tx, rx) = mpsc::channel(hub.cfg.outbound_queue);
    let kill = Arc::new(Notify::new());
    let out = ConnTx {
        id: hub.conn_id(),
        tx,
        kill: kill.clone(),
    };
    let id = out.id;
    let (sink, stream) = socket.split();
    let last_seen = Arc::new(AtomicI64::new(now_ms()));
    let heartbeat = Duration::from_secs(hub.cfg.heartbeat_secs);
    let mut conn = Conn {
        hub: hub.clone(),
        out,
        user: None,
        token: None,
        failed_logins: 0,
        supervising: None,
    };
    let reason = tokio::select! {
        r = conn.read(stream, last_seen.clone()) => r,
        r = write(sink, rx, kill, heartbeat, last_seen) => r,
    };
    tracing::debug!(conn = id, reason, "CTI socket closed");
    hub.detach(id);
}

impl Conn {
    async fn read(
        &mut self,
        mut stream: futures_util::stream::SplitStream<WebSocket>,
        last_seen: Arc<AtomicI64>,
    ) -> &'static str {
        while let Some(msg) = stream.next().await {
            last_seen.store(now_ms(), Ordering::Relaxed);
            let text = match msg {
                Ok(Message::Text(t)) => t,
                Ok(Message::Binary(_)) => {
                    self.send(protocol::error(
                        None,
                        &Fault::new(
                            "bad_frame",
                            "binary frames are not spoken here; send JSON text",
                        ),
                    ));
                    continue;
                }
                Ok(Message::Close(_)) => return "closed by peer",
                Ok(_) => continue, // ping/pong: the transport answers pings
                Err(_) => return "transport error",
            };
            match protocol::parse(text.as_str(), self.hub.cfg.max_frame_bytes) {
                Err((id, fault)) => self.send(protocol::error(id, &fault)),
                Ok((id, req)) => {
                    let name = req.name();
                    // Boxed: the request future is large (one state per request type) and a debug
                    // build must not carry it on the socket task's stack.
                    match Box::pin(self.handle(req)).await {
                        Ok(Some(data)) => self.send(protocol::reply(id, data)),
                        Ok(None) => {}
                        Err(fault) => {
                            tracing::debug!(
                                request = name,
                                code = fault.code,
                                "CTI request refused"
                            );
                            self.send(protocol::error(id, &fault))
                        }
                    }
                    if self.failed_logins >= MAX_FAILED_LOGINS {
                        return "too many failed logins";
                    }
                }
            }
        }
        "stream ended"
    }

    fn send(&self, text: String) {
        self.out.push(Utf8Bytes::from(text), None);
    }

    fn user(&mut self) -> Result<&CtiUser, Fault> {
        // Tokens expire even on a socket that stays open.
        if let Some(t) = &self.token
            && self.hub.sessions.get(t).is_none()
        {
            self.user = None;
            self.token = None;
            self.hub.detach(self.out.id);
            return Err(Fault::new(
                "token_expired",
                "the session expired; log in again",
            ));
        }
        self.user.as_ref().ok_or_else(|| {
            Fault::new(
                "unauthenticated",
                "log in first (auth.login or auth.resume)",
            )
        })
    }

    fn agent_of(&mut self) -> Result<(CtiUser, String), Fault> {
        let u = self.user()?.clone();
        match u.agent.clone() {
            Some(a) => Ok((u, a)),
            None => Err(Fault::new("forbidden", "this login is not an agent")),
        }
    }

    fn require(&mut self, roles: &[Role]) -> Result<CtiUser, Fault> {
        let u = self.user()?.clone();
        if roles.contains(&u.role) {
            Ok(u)
        } else {
            Err(Fault::new(
                "forbidden",
                format!("role {:?} may not do this", u.role),
            ))
        }
    }

    async fn handle(&mut self, req: Request) -> Result<Option<Value>, Fault> {
        match req {
            Request::Ping => {
                self.send(json!({"v": protocol::VERSION, "type": "pong"}).to_string());
                Ok(None)
            }
            Request::Pong => Ok(None),
            Request::Login { user, password } => self.login(&user, &password).await.map(Some),
            Request::Resume { token } => {
                let s = self
                    .hub
                    .sessions
                    .get(&token)
                    .ok_or_else(|| Fault::new("token_invalid", "unknown or expired token"))?;
                let user = self
                    .hub
                    .users
                    .get(&s.user)
                    .cloned()
                    .ok_or_else(|| Fault::new("token_invalid", "the user no longer exists"))?;
                self.start_session(user, token, s.expires_at_ms)
                    .await
                    .map(Some)
            }
            Request::SignOut => {
                if let Some(t) = self.token.take() {
                    self.hub.sessions.remove(&t);
                }
                self.user = None;
                self.hub.detach(self.out.id);
                Ok(Some(json!({"signed_out": true})))
            }
            Request::Ready => self.agent_cmd(AgentCommand::Ready).await,
            Request::NotReady { reason } => {
                self.check_word(WordList::NotReadyReasons, &reason).await?;
                self.agent_cmd(AgentCommand::NotReady { reason }).await
            }
            Request::NotReadyAfterCall { reason } => {
                self.check_word(WordList::NotReadyReasons, &reason).await?;
                self.agent_cmd(AgentCommand::NotReadyAfterCall { reason })
                    .await
            }
            Request::AgentLogout => self.agent_cmd(AgentCommand::Logout).await,
            Request::Agents => {
                self.require(&[Role::Supervisor, Role::Admin])?;
                let states = self.hub.switch.agents().await.map_err(switch_fault)?;
                Ok(Some(json!({ "agents": states })))
            }
            Request::QueueStats => {
                let u = self.require(&[Role::Supervisor, Role::Admin])?;
                let stats = self.hub.switch.queue_stats().await.map_err(switch_fault)?;
                let mine: Vec<_> = stats
                    .into_iter()
                    .filter(|s| u.queues.is_empty() || u.queues.contains(&s.queue))
                    .collect();
                Ok(Some(json!({ "queues": mine })))
            }
            Request::SuperviseStart { agent, mode } => self.supervise_start(&agent, &mode).await,
            Request::SuperviseMode { mode } => {
                let mode = supervise_mode(&mode)?;
                self.supervise_cmd(|supervisor| CallCommand::SuperviseMode { supervisor, mode })
                    .await
            }
            Request::SuperviseStop => {
                let r = self
                    .supervise_cmd(|supervisor| CallCommand::SuperviseStop { supervisor })
                    .await;
                self.supervising = None;
                r
            }
            Request::Hangup { call_id } => self.call_cmd(&call_id, CallCommand::Hangup).await,
            Request::Hold { call_id } => self.call_cmd(&call_id, CallCommand::Hold).await,
            Request::Unhold { call_id } => self.call_cmd(&call_id, CallCommand::Resume).await,
            Request::Transfer {
                call_id,
                to,
                attended,
            } => {
                let role = self.user()?.role.as_str().to_string();
                let cmd = CallCommand::Transfer {
                    to: to.clone(),
                    attended,
                    role,
                };
                let r = self.call_cmd(&call_id, cmd).await;
                self.guarded(r, "transfer", &to)
            }
            Request::TransferComplete { call_id } => {
                self.call_cmd(&call_id, CallCommand::TransferComplete).await
            }
            Request::TransferCancel { call_id } => {
                self.call_cmd(&call_id, CallCommand::TransferCancel).await
            }
            Request::Conference { call_id, to } => {
                let role = self.user()?.role.as_str().to_string();
                let cmd = CallCommand::Conference {
                    to: to.clone(),
                    role,
                };
                let r = self.call_cmd(&call_id, cmd).await;
                self.guarded(r, "conference", &to)
            }
            Request::Dtmf { call_id, digits } => {
                if digits.is_empty()
                    || digits.len() > 32
                    || !digits
                        .chars()
                        .all(|c| c.is_ascii_digit() || "*#ABCD".contains(c))
                {
                    return Err(Fault::new("bad_request", "digits: 1-32 of 0-9 * # A-D"));
                }
                self.call_cmd(&call_id, CallCommand::Dtmf { digits }).await
            }
            Request::PauseRecording { call_id } => {
                self.call_cmd(&call_id, CallCommand::PauseRecording).await
            }
            Request::ResumeRecording { call_id } => {
                self.call_cmd(&call_id, CallCommand::ResumeRecording).await
            }
            Request::Disposition {
                call_id,
                code,
                notes,
            } => {
                let (_, agent) = self.agent_of()?;
                if code.trim().is_empty() || code.len() > 64 {
                    return Err(Fault::new("bad_request", "code: 1-64 bytes"));
                }
                if notes.as_ref().is_some_and(|n| n.len() > 10_000) {
                    return Err(Fault::new("bad_request", "notes: at most 10000 bytes"));
                }
                self.check_word(WordList::Dispositions, code.trim()).await?;
                let id = self
                    .hub
                    .switch
                    .disposition(&call_id, &agent, code.trim(), notes.as_deref())
                    .await
                    .map_err(switch_fault)?;
                Ok(Some(json!({"interaction_id": id})))
            }
            Request::Dial {
                customer_id,
                number,
            } => self.dial(customer_id, number).await,
            Request::CustomerGet { customer_id } => {
                let u = self.checked_customer(customer_id, "read")?;
                let store = self.store()?;
                let view = store.view(customer_id, None).await.map_err(crm_fault)?;
                self.hub
                    .audit(&u.name, "read", Some(customer_id), true, String::new());
                Ok(Some(serde_json::to_value(view).unwrap_or(Value::Null)))
            }
            Request::CustomerChoose {
                call_id,
                customer_id,
            } => {
                let (u, agent) = self.agent_of()?;
                if !self.hub.offered_customer(&agent, &call_id, customer_id) {
                    self.hub.audit(
                        &u.name,
                        "choose",
                        Some(customer_id),
                        false,
                        format!("call {call_id}"),
                    );
                    return Err(Fault::new(
                        "forbidden",
                        "not a candidate of a call offered to you",
                    ));
                }
                // The call's trail entry goes to the chosen customer (if the call is
                // still up; after it ended, the choice only shows the record).
                match self
                    .hub
                    .switch
                    .call_command(&call_id, CallCommand::Identify { customer_id })
                    .await
                {
                    Ok(()) | Err(SwitchError::NotFound(_) | SwitchError::Unavailable) => {}
                    Err(e) => return Err(switch_fault(e)),
                }
                let store = self.store()?;
                let view = store.view(customer_id, None).await.map_err(crm_fault)?;
                self.hub.audit(
                    &u.name,
                    "choose",
                    Some(customer_id),
                    true,
                    format!("call {call_id}"),
                );
                Ok(Some(serde_json::to_value(view).unwrap_or(Value::Null)))
            }
            Request::CustomerUpdate { customer_id, data } => {
                let u = self.checked_customer(customer_id, "update")?;
                let store = self.store()?;
                store
                    .update_customer(customer_id, &data)
                    .await
                    .map_err(crm_fault)?;
                self.hub
                    .audit(&u.name, "update", Some(customer_id), true, String::new());
                Ok(Some(json!({"customer_id": customer_id})))
            }
            Request::CustomerSearch { query, limit } => {
                let u = self.user()?.clone();
                if !self.hub.cfg.search_roles.contains(&u.role) {
                    self.hub
                        .audit(&u.name, "search", None, false, truncated(&query));
                    return Err(Fault::new(
                        "forbidden",
                        "your role may not search customers",
                    ));
                }
                let store = self.store()?;
                let hits = store
                    .search_customers(&query, limit.unwrap_or(20))
                    .await
                    .map_err(crm_fault)?;
                self.hub
                    .audit(&u.name, "search", None, true, truncated(&query));
                Ok(Some(json!({"customers": hits})))
            }
            Request::TicketCreate { ticket } => {
                let u = self.checked_customer(ticket.customer_id, "ticket_create")?;
                let store = self.store()?;
                let id = store
                    .create_ticket(&ticket, &u.name)
                    .await
                    .map_err(crm_fault)?;
                self.hub.audit(
                    &u.name,
                    "ticket_create",
                    Some(ticket.customer_id),
                    true,
                    format!("ticket {id}"),
                );
                Ok(Some(json!({"ticket_id": id})))
            }
            Request::TicketUpdate { ticket_id, update } => {
                self.user()?;
                let store = self.store()?;
                let t = store
                    .ticket(ticket_id)
                    .await
                    .map_err(crm_fault)?
                    .ok_or_else(|| Fault::new("not_found", format!("ticket {ticket_id}")))?;
                let u = self.checked_customer(t.customer_id, "ticket_update")?;
                store
                    .update_ticket(ticket_id, &update, &u.name)
                    .await
                    .map_err(crm_fault)?;
                self.hub.audit(
                    &u.name,
                    "ticket_update",
                    Some(t.customer_id),
                    true,
                    format!("ticket {ticket_id}"),
                );
                Ok(Some(json!({"ticket_id": ticket_id})))
            }
        }
    }

    fn store(&self) -> Result<hotline_crm::Store, Fault> {
        self.hub
            .switch
            .store()
            .cloned()
            .ok_or_else(|| Fault::new("not_supported", "no CRM store configured"))
    }

    /// Authorises access to a customer record; a refusal is audited too.
    fn checked_customer(&mut self, id: i64, action: &str) -> Result<CtiUser, Fault> {
        let u = self.user()?.clone();
        if self.hub.may_read(&u, id) {
            Ok(u)
        } else {
            self.hub
                .audit(&u.name, action, Some(id), false, "denied".into());
            Err(Fault::new(
                "forbidden",
                format!("customer {id} is not in your reach"),
            ))
        }
    }

    async fn login(&mut self, name: &str, password: &str) -> Result<Value, Fault> {
        let hash = match self.hub.users.get(name) {
            Some(u) => u.password_hash.clone(),
            None => DUMMY_HASH
                .get_or_init(|| crate::hash_password("not a password").unwrap_or_default())
                .clone(),
        };
        let pw = password.to_string();
        // Argon2 is deliberately slow: off the async threads.
        let ok = tokio::task::spawn_blocking(move || crate::verify_password(&hash, &pw))
            .await
            .unwrap_or(false);
        let user = match self.hub.users.get(name) {
            Some(u) if ok => u.clone(),
            _ => {
                self.failed_logins += 1;
                tracing::info!(user = %truncated(name), "CTI login failed");
                // One answer for unknown users and wrong passwords: no enumeration.
                return Err(Fault::new("auth_failed", "wrong user or password"));
            }
        };
        let (token, s) = self
            .hub
            .sessions
            .create(&user.name)
            .ok_or_else(|| Fault::new("unavailable", "too many sessions"))?;
        self.start_session(user, token, s.expires_at_ms).await
    }

    /// Binds the socket to the user and answers with what a desk needs to (re)draw: the
    /// token, the agent's state with its version, the current call and its pop.
    async fn start_session(
        &mut self,
        user: CtiUser,
        token: String,
        expires_at: i64,
    ) -> Result<Value, Fault> {
        if self.user.is_some() {
            self.hub.detach(self.out.id);
        }
        self.hub.attach(&user, &self.out);
        let (state, call) = match &user.agent {
            Some(a) => {
                let states = self.hub.switch.agents().await.unwrap_or_default();
                (
                    states.into_iter().find(|s| &s.agent == a),
                    self.hub.current_call(a),
                )
            }
            None => (None, Value::Null),
        };
        // The page's lists and phone come from the server: nothing is hard-coded there.
        let (reasons, dispositions, phone) = match &user.agent {
            Some(a) => (
                self.hub
                    .words(WordList::NotReadyReasons)
                    .await
                    .unwrap_or_default(),
                self.hub
                    .words(WordList::Dispositions)
                    .await
                    .unwrap_or_default(),
                self.hub.phone_settings(a),
            ),
            None => (Vec::new(), Vec::new(), Value::Null),
        };
        let data = json!({
            "user": user.name,
            "role": user.role,
            "agent": user.agent,
            "token": token,
            "expires_at": expires_at,
            "heartbeat_secs": self.hub.cfg.heartbeat_secs,
            "agent_state": state,
            "call": call,
            "not_ready_reasons": reasons,
            "dispositions": dispositions,
            "phone": phone,
        });
        self.user = Some(user);
        self.token = Some(token);
        Ok(data)
    }

    /// Click-to-dial: the agent's phone first, then the customer's (first) number or
    /// the number given. Dialling a customer needs the right to read them.
    async fn dial(
        &mut self,
        customer_id: Option<i64>,
        number: Option<String>,
    ) -> Result<Option<Value>, Fault> {
        let (_, agent) = self.agent_of()?;
        let number = match (customer_id, number) {
            (Some(id), None) => {
                self.checked_customer(id, "dial")?;
                let c = self
                    .store()?
                    .customer(id)
                    .await
                    .map_err(crm_fault)?
                    .ok_or_else(|| Fault::new("not_found", format!("customer {id}")))?;
                c.numbers
                    .first()
                    .cloned()
                    .ok_or_else(|| Fault::new("invalid_state", "the customer has no number"))?
            }
            (None, Some(n)) => n,
            _ => {
                return Err(Fault::new(
                    "bad_request",
                    "call.dial: give customer_id or number",
                ));
            }
        };
        let dialable = |c: char| c.is_ascii_alphanumeric() || "+*#._-".contains(c);
        if number.is_empty() || number.len() > 32 || !number.chars().all(dialable) {
            return Err(Fault::new(
                "bad_request",
                "number: 1-32 of digits, letters and + * # . _ -",
            ));
        }
        let role = self.user()?.role.as_str();
        let placed = self
            .hub
            .switch
            .dial(&agent, &number, customer_id, role)
            .await
            .map_err(switch_fault);
        let call_id = self.guarded(placed, "dial", &number)?;
        self.hub.own_call(&agent, &call_id);
        Ok(Some(json!({"call_id": call_id, "number": number})))
    }

    /// A destination the toll-fraud guard refused is written to the audit log (who,
    /// what, where) next to the switch's own log line; the fault goes to the desk as is.
    fn guarded<T>(&mut self, r: Result<T, Fault>, action: &str, to: &str) -> Result<T, Fault> {
        if let Err(f) = &r
            && f.code == "forbidden"
            && let Some(u) = self.user.as_ref()
        {
            let detail = format!("destination {}: {}", truncated(to), f.message);
            self.hub.audit(&u.name, action, None, false, detail);
        }
        r
    }

    /// Only the configured words are accepted (reports group by them); an empty list
    /// accepts any. An empty word is left to the ACD, which has its own error for it.
    async fn check_word(&self, list: WordList, word: &str) -> Result<(), Fault> {
        if word.is_empty() {
            return Ok(());
        }
        let words = self
            .hub
            .words(list)
            .await
            .map_err(|m| Fault::new("unavailable", m))?;
        if words.is_empty() || words.iter().any(|w| w == word) {
            return Ok(());
        }
        let (code, what) = match list {
            WordList::Dispositions => ("unknown_disposition", "a disposition"),
            WordList::NotReadyReasons => ("unknown_reason", "a not-ready reason"),
        };
        Err(Fault::new(
            code,
            format!(
                "{:?} is not {what}; use one of: {}",
                truncated(word),
                words.join(", ")
            ),
        ))
    }

    async fn agent_cmd(&mut self, cmd: AgentCommand) -> Result<Option<Value>, Fault> {
        let (_, agent) = self.agent_of()?;
        let s = self
            .hub
            .switch
            .agent_state(&agent, cmd)
            .await
            .map_err(switch_fault)?;
        Ok(Some(serde_json::to_value(s).unwrap_or(Value::Null)))
    }

    async fn call_cmd(&mut self, call_id: &str, cmd: CallCommand) -> Result<Option<Value>, Fault> {
        let u = self.user()?.clone();
        if !self.hub.may_control(&u, call_id) {
            return Err(Fault::new(
                "forbidden",
                format!("call {} is not yours", truncated(call_id)),
            ));
        }
        self.hub
            .switch
            .call_command(call_id, cmd)
            .await
            .map_err(switch_fault)?;
        Ok(Some(json!({"call_id": call_id})))
    }
}

impl Conn {
    /// `supervise.start`: supervisors only, on an agent talking on a call of one of their
    /// queues; Hotline then calls the supervisor's phone (their `agent` SIP user, else
    /// their login name).
    async fn supervise_start(&mut self, agent: &str, mode: &str) -> Result<Option<Value>, Fault> {
        let u = self.require(&[Role::Supervisor])?;
        let mode = supervise_mode(mode)?;
        let states = self.hub.switch.agents().await.map_err(switch_fault)?;
        let state = states
            .iter()
            .find(|s| s.agent == agent)
            .ok_or_else(|| Fault::new("not_found", format!("no agent {}", truncated(agent))))?;
        let hotline_switch::AgentStatus::OnCall {
            call_id: Some(call_id),
        } = &state.status
        else {
            return Err(Fault::new(
                "invalid_state",
                format!("agent {} is not on a call", truncated(agent)),
            ));
        };
        if !self.hub.may_control(&u, call_id) {
            return Err(Fault::new(
                "forbidden",
                format!("agent {}'s call is not in your queues", truncated(agent)),
            ));
        }
        let supervisor = u.agent.clone().unwrap_or_else(|| u.name.clone());
        self.hub
            .switch
            .call_command(call_id, CallCommand::Supervise { supervisor, mode })
            .await
            .map_err(switch_fault)?;
        self.supervising = Some(call_id.clone());
        Ok(Some(
            json!({"call_id": call_id, "agent": agent, "mode": mode.as_str()}),
        ))
    }

    /// `supervise.mode` / `supervise.stop` on the call this socket supervises.
    async fn supervise_cmd(
        &mut self,
        cmd: impl FnOnce(String) -> CallCommand,
    ) -> Result<Option<Value>, Fault> {
        let u = self.require(&[Role::Supervisor])?;
        let call_id = self
            .supervising
            .clone()
            .ok_or_else(|| Fault::new("invalid_state", "not supervising a call"))?;
        let supervisor = u.agent.clone().unwrap_or_else(|| u.name.clone());
        self.hub
            .switch
            .call_command(&call_id, cmd(supervisor))
            .await
            .map_err(switch_fault)?;
        Ok(Some(json!({"call_id": call_id})))
    }
}

fn supervise_mode(mode: &str) -> Result<hotline_switch::SuperviseMode, Fault> {
    hotline_switch::SuperviseMode::parse(mode)
        .ok_or_else(|| Fault::new("bad_request", "mode: monitor, whisper or barge"))
}

fn truncated(s: &str) -> String {
    s.chars().take(64).collect()
}

fn switch_fault(e: SwitchError) -> Fault {
    Fault::new(e.code(), e.to_string())
}

fn crm_fault(e: hotline_crm::Error) -> Fault {
    use hotline_crm::Error;
    match e {
        Error::NotFound(_) => Fault::new("not_found", e.to_string()),
        Error::Invalid { .. } | Error::BadNumber(_) | Error::Json(_) => {
            Fault::new("bad_request", e.to_string())
        }
        _ => Fault::new("store_error", "the CRM store failed; try again"),
    }
}

/// Drains the socket's queue (acknowledging offers once written) and keeps the heartbeat.
async fn write(
    mut sink: futures_util::stream::SplitSink<WebSocket, Message>,
    mut rx: mpsc::Receiver<Outbound>,
    kill: Arc<Notify>,
    heartbeat: Duration,
    last_seen: Arc<AtomicI64>,
) -> &'static str {
    let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + heartbeat, heartbeat);
    let silent_limit = heartbeat.as_millis() as i64 * 3;
    let reason = loop {
        tokio::select! {
            biased;
            _ = kill.notified() => break "slow consumer",
            out = rx.recv() => {
                let Some(out) = out else { break "queue closed" };
                if sink.send(Message::Text(out.text)).await.is_err() {
                    break "write failed";
                }
                if let Some(o) = out.ack {
                    o.ack();
                }
            }
            _ = tick.tick() => {
                if now_ms() - last_seen.load(Ordering::Relaxed) > silent_limit {
                    break "heartbeat timeout";
                }
                if sink.send(Message::Text(Utf8Bytes::from(protocol::ping()))).await.is_err() {
                    break "write failed";
                }
            }
        }
    };
    let close = CloseFrame {
        code: if reason == "slow consumer" {
            1008
        } else {
            1000
        },
        reason: Utf8Bytes::from_static(reason),
    };
    let _ = tokio::time::timeout(
        Duration::from_secs(1),
        sink.send(Message::Close(Some(close))),
    )
    .await;
    reason
}
