//! The switch's public face for desktops (CTI): events out on a broadcast bus, commands in
//! through [`SwitchHandle`]. The switch never knows who listens (the design keeps `switch`
//! independent of `cti`): it publishes, and only the screen-pop offer waits, briefly, for
//! a listener to confirm that the pop reached the agent's desk before the phone rings.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use hotline_crm::{Identification, InteractionId, NewInteraction, ScreenPop, Store};
use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use crate::SwitchError;
use crate::acd::AcdInput;
use crate::call::EndReason;

/// Events kept for slow subscribers; one that falls further behind gets `Lagged` and
/// resynchronises from [`SwitchHandle::agents`].
pub const BUS_CAPACITY: usize = 8192;

/// An agent's state as desks see it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "snake_case")]
pub enum AgentStatus {
    LoggedOut,
    Ready,
    /// A call is offered (ringing).
    Reserved {
        call_id: Option<String>,
    },
    OnCall {
        call_id: Option<String>,
    },
    WrapUp {
        call_id: Option<String>,
    },
    NotReady {
        reason: String,
    },
}

/// One agent-state change. `version` comes from one counter owned by the ACD task, so it
/// grows with every change of any agent: a desk keeps the highest it saw and ignores
/// anything older (e.g. a stale event that overtook a resync).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AgentStateEvent {
    pub agent: String,
    #[serde(flatten)]
    pub status: AgentStatus,
    /// Not-ready reason that applies when the current call (and wrap-up) ends.
    pub pending_not_ready: Option<String>,
    pub version: u64,
    /// When the agent entered this state (Unix ms): the floor view shows time in state.
    pub since: i64,
}

/// What a desk asks of the ACD for its agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentCommand {
    /// Take calls (logs in if logged out; ends wrap-up early).
    Ready,
    /// Stop taking calls now (a ringing offer goes back to the queue); on a call it applies
    /// when the call ends.
    NotReady {
        reason: String,
    },
    /// Go not-ready when the current call and its wrap-up end.
    NotReadyAfterCall {
        reason: String,
    },
    Logout,
}

/// Commands to a live call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallCommand {
    Hangup,
    Hold,
    Resume,
    /// `role` is the desk user's (`agent`, `supervisor`, `admin`): an outside number
    /// must pass that role's `[[dial_rules]]` (the toll-fraud guard).
    Transfer {
        to: String,
        attended: bool,
        role: String,
    },
    /// Attended transfer: bridge the caller to the consulted party, release the agent.
    TransferComplete,
    /// Attended transfer: hang up the consulted party, back to the caller.
    TransferCancel,
    /// Adds `to`; an outside number must pass `role`'s `[[dial_rules]]`.
    Conference {
        to: String,
        role: String,
    },
    Dtmf {
        digits: String,
    },
    PauseRecording,
    ResumeRecording,
    /// The agent picked this customer among the pop's candidates: the call's trail entry
    /// goes to them.
    Identify {
        customer_id: i64,
    },
    /// A supervisor (SIP user `supervisor`) listens in on the agent's call: Hotline calls
    /// their phone and adds it in `mode` once answered.
    Supervise {
        supervisor: String,
        mode: crate::SuperviseMode,
    },
    /// The supervisor changes mode, live.
    SuperviseMode {
        supervisor: String,
        mode: crate::SuperviseMode,
    },
    /// The supervisor leaves (the call goes on).
    SuperviseStop {
        supervisor: String,
    },
}

impl CallCommand {
    pub fn name(&self) -> &'static str {
        match self {
            CallCommand::Hangup => "hangup",
            CallCommand::Hold => "hold",
            CallCommand::Resume => "resume",
            CallCommand::Transfer { .. } => "transfer",
            CallCommand::TransferComplete => "transfer_complete",
            CallCommand::TransferCancel => "transfer_cancel",
            CallCommand::Conference { .. } => "conference",
            CallCommand::Dtmf { .. } => "dtmf",
            CallCommand::PauseRecording => "pause_recording",
            CallCommand::ResumeRecording => "resume_recording",
            CallCommand::Identify { .. } => "identify",
            CallCommand::Supervise { .. } => "supervise",
            CallCommand::SuperviseMode { .. } => "supervise_mode",
            CallCommand::SuperviseStop { .. } => "supervise_stop",
        }
    }
}

/// A queue's live figures for wallboards and supervisors.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct QueueStat {
    pub queue: String,
    pub waiting: u32,
    pub longest_wait_secs: f64,
    pub offered: u64,
    pub answered: u64,
    pub abandoned: u64,
    pub service_level: Option<f64>,
    pub asa_secs: Option<f64>,
    pub agents_ready: u32,
    pub agents_busy: u32,
    pub agents_not_ready: u32,
}

/// The screen pop offered with a call. `pop` is `None` when the CRM lookup failed or took
/// too long (`pop_error` says why): the call is routed anyway.
#[derive(Debug, Serialize)]
pub struct Offered {
    pub call_id: String,
    pub queue: String,
    pub agent: String,
    /// The caller id as received (From / P-Asserted-Identity URI).
    pub caller: String,
    pub pop: Option<Arc<ScreenPop>>,
    pub pop_error: Option<String>,
    #[serde(skip)]
    ack: Mutex<Option<oneshot::Sender<()>>>,
}

impl Offered {
    /// Tells the switch the pop is on the agent's desk (or that the agent has none): the
    /// agent's phone may ring now. Later calls do nothing.
    pub fn ack(&self) {
        if let Some(tx) = self.ack.lock().ok().and_then(|mut a| a.take()) {
            let _ = tx.send(());
        }
    }

    /// Customer ids this pop shows (the one customer, or every candidate).
    pub fn customer_ids(&self) -> Vec<i64> {
        match self.pop.as_deref().map(|p| &p.identification) {
            Some(Identification::Known { customer } | Identification::Provisional { customer }) => {
                vec![customer.id]
            }
            Some(Identification::Candidates { customers }) => {
                customers.iter().map(|c| c.id).collect()
            }
            _ => Vec::new(),
        }
    }
}

/// Everything the switch publishes.
#[derive(Debug, Clone)]
pub enum SwitchEvent {
    AgentState(AgentStateEvent),
    CallOffered(Arc<Offered>),
    CallAnswered {
        call_id: String,
        agent: String,
        queue: Option<String>,
    },
    CallHeld {
        call_id: String,
        agent: String,
    },
    CallResumed {
        call_id: String,
        agent: String,
    },
    CallTransferred {
        call_id: String,
        agent: String,
        to: String,
    },
    CallEnded {
        call_id: String,
        agent: Option<String>,
        queue: Option<String>,
        reason: String,
        /// The service-trail entry written for the call (dispositions attach to it).
        interaction_id: Option<InteractionId>,
    },
    WrapupStarted {
        call_id: Option<String>,
        agent: String,
    },
    /// The agent's in-page phone left the bridged call (page reload, network blip): the
    /// caller hears music; the call waits `rejoin_secs` for the phone, then is requeued.
    PhoneLost {
        call_id: String,
        agent: String,
        rejoin_secs: u64,
    },
    /// The phone is back on the call (re-registered, or its new registration answered).
    PhoneBack {
        call_id: String,
        agent: String,
    },
    QueueStats(Arc<Vec<QueueStat>>),
    /// A caller left a voicemail message (stored; listed by the voicemail API).
    VoicemailLeft(Arc<VoicemailLeft>),
}

/// A message left in a voicemail box, for supervisors of its queue.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct VoicemailLeft {
    /// The call that left it: the message's id.
    pub call_id: String,
    pub mailbox: String,
    pub queue: Option<String>,
    pub caller: String,
    pub caller_name: Option<String>,
    pub duration_ms: i64,
    /// `hangup`, `key`, `limit` or `silence`.
    pub ended_by: String,
}

/// Shared by the switch's tasks: the bus, the store and the offer bound.
#[derive(Clone)]
pub(crate) struct Desk {
    pub bus: broadcast::Sender<SwitchEvent>,
    pub store: Option<Store>,
    pub ack_timeout: Duration,
    pub lookup_timeout: Duration,
    /// Sources whose P-Asserted-Identity is believed.
    pub trusted: Arc<Vec<hotline_sip::Cidr>>,
    /// How long a call waits for a lost in-page phone (`[cti] phone_rejoin_secs`).
    pub phone_rejoin: Duration,
}

/// Commands in, events out: what a CTI server holds. Cheap to clone.
#[derive(Clone)]
pub struct SwitchHandle {
    pub(crate) desk: Desk,
    pub(crate) acd: Option<mpsc::Sender<AcdInput>>,
    pub(crate) control: mpsc::Sender<crate::Control>,
}

impl SwitchHandle {
    /// The ACD task and the event bus without call control (no SIP): for desk servers'
    /// tests and tools. Call commands answer `unavailable`.
    pub fn standalone(
        acd: &hotline_acd::AcdConfig,
        desk_cfg: crate::DeskConfig,
    ) -> Result<SwitchHandle, SwitchError> {
        let (bus, _) = broadcast::channel(BUS_CAPACITY);
        // No dispatcher: requests of the ACD to call control (callbacks) are dropped.
        let (control, _) = mpsc::channel(1);
        // No call records either: the queue log stays in memory and is dropped.
        let (cdr, _) = hotline_cdr::CdrSink::memory();
        let task =
            crate::acd::AcdTask::new(acd, &desk_cfg.desk_login, bus.clone(), control.clone(), cdr)?;
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(task.run(rx));
        Ok(SwitchHandle {
            desk: Desk {
                bus,
                store: desk_cfg.store,
                ack_timeout: desk_cfg.offer_ack_timeout,
                lookup_timeout: desk_cfg.lookup_timeout,
                trusted: Arc::new(desk_cfg.trusted),
                phone_rejoin: desk_cfg.phone_rejoin,
            },
            acd: Some(tx),
            control,
        })
    }

    /// The desk half of a call's arrival and offer, without SIP: identify `caller` for
    /// `queue`, publish `call.offered` to `agent` and wait for the desk server's ack, as a
    /// call task does before ringing. For benchmarks of the screen-pop path.
    #[doc(hidden)]
    pub async fn pop_and_offer(&self, call_id: &str, caller: &str, queue: &str, agent: &str) {
        let cd = CallDesk::with_caller(&self.desk, call_id, caller.to_string());
        cd.arrived(queue).await;
        cd.offered(agent).await;
    }

    /// A receiver of every event from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<SwitchEvent> {
        self.desk.bus.subscribe()
    }

    /// The CRM store the switch identifies callers in.
    pub fn store(&self) -> Option<&Store> {
        self.desk.store.as_ref()
    }

    fn acd(&self) -> Result<&mpsc::Sender<AcdInput>, SwitchError> {
        self.acd
            .as_ref()
            .ok_or(SwitchError::NotSupported("no [acd] configured"))
    }

    /// Sets an agent's state through the ACD task (the one owner) and returns the state
    /// that resulted, with its version.
    pub async fn agent_state(
        &self,
        agent: &str,
        cmd: AgentCommand,
    ) -> Result<AgentStateEvent, SwitchError> {
        let (reply, rx) = oneshot::channel();
        self.acd()?
            .send(AcdInput::Agent {
                agent: agent.to_string(),
                cmd,
                reply,
            })
            .await
            .map_err(|_| SwitchError::Unavailable)?;
        rx.await.map_err(|_| SwitchError::Unavailable)?
    }

    /// Every agent's current state and version (a reconnecting desk resynchronises here).
    pub async fn agents(&self) -> Result<Vec<AgentStateEvent>, SwitchError> {
        let (reply, rx) = oneshot::channel();
        self.acd()?
            .send(AcdInput::Agents { reply })
            .await
            .map_err(|_| SwitchError::Unavailable)?;
        rx.await.map_err(|_| SwitchError::Unavailable)
    }

    /// Live queue figures.
    pub async fn queue_stats(&self) -> Result<Vec<QueueStat>, SwitchError> {
        let (reply, rx) = oneshot::channel();
        self.acd()?
            .send(AcdInput::QueueStats { reply })
            .await
            .map_err(|_| SwitchError::Unavailable)?;
        rx.await.map_err(|_| SwitchError::Unavailable)
    }

    /// Carries out a command on a live call (by the caller's Call-ID). The call task
    /// validates it against the call's state: a refused command changes nothing.
    pub async fn call_command(&self, call_id: &str, cmd: CallCommand) -> Result<(), SwitchError> {
        let (reply, rx) = oneshot::channel();
        self.control
            .send(crate::Control::Command {
                call_id: call_id.to_string(),
                cmd,
                reply,
            })
            .await
            .map_err(|_| SwitchError::Unavailable)?;
        rx.await.map_err(|_| SwitchError::Unavailable)?
    }

    /// Click-to-dial for `agent` (a SIP user with a registered phone): Hotline calls the
    /// agent's phone, then `number` (a registered user, else through `[sip]
    /// static_route`), bridges and records them; the call lands in the trail of
    /// `customer` (or of whoever the CRM finds for the number). Returns the call's id
    /// at once; how it goes is told by `call.ended`. An outside number must pass the
    /// `[[dial_rules]]` of `role` (the desk user's), else `Forbidden` and nothing is dialled.
    pub async fn dial(
        &self,
        agent: &str,
        number: &str,
        customer: Option<i64>,
        role: &str,
    ) -> Result<String, SwitchError> {
        let (reply, rx) = oneshot::channel();
        self.control
            .send(crate::Control::Dial {
                agent: agent.to_string(),
                number: number.to_string(),
                customer,
                role: role.to_string(),
                reply,
            })
            .await
            .map_err(|_| SwitchError::Unavailable)?;
        rx.await.map_err(|_| SwitchError::Unavailable)?
    }

    /// Attaches the wrap-up disposition and notes to the call's service-trail entry and
    /// ends the agent's wrap-up (the agent becomes available).
    pub async fn disposition(
        &self,
        call_id: &str,
        agent: &str,
        code: &str,
        notes: Option<&str>,
    ) -> Result<InteractionId, SwitchError> {
        let store = self
            .desk
            .store
            .as_ref()
            .ok_or(SwitchError::NotSupported("no CRM store configured"))?;
        let mut i = store
            .interaction_by_call_id(call_id)
            .await?
            .ok_or_else(|| SwitchError::NotFound(format!("no trail entry for call {call_id}")))?;
        if i.agent.as_deref() != Some(agent) {
            // A call served in parts (an agent's lost phone, then a colleague) has an entry
            // per agent; the newest is the last part's.
            i = store
                .trail(i.customer_id, EARLIER_PARTS)
                .await?
                .into_iter()
                .find(|e| {
                    e.call_id.as_deref() == Some(call_id) && e.agent.as_deref() == Some(agent)
                })
                .ok_or_else(|| {
                    SwitchError::Forbidden(format!("call {call_id} was not handled by {agent}"))
                })?;
        }
        store.wrap_up(i.id, code, notes).await?;
        if let Some(acd) = &self.acd {
            let _ = acd
                .send(AcdInput::WrapupDone {
                    agent: agent.to_string(),
                })
                .await;
        }
        Ok(i.id)
    }
}

/// How far back in the customer's trail an earlier part of a call is looked for.
const EARLIER_PARTS: i64 = 50;

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// The caller id to identify: P-Asserted-Identity when the INVITE came from a trusted
/// network (a trunk that asserts it, RFC 3325), else From: anyone can write a PAI header.
fn caller_id(
    invite: &hotline_sip::msg::Request,
    trusted: &[hotline_sip::Cidr],
    source: std::net::IpAddr,
) -> String {
    use hotline_sip::msg;
    let pai = trusted
        .iter()
        .any(|n| n.contains(source))
        .then(|| {
            // Read from the header's text: the typed value is not kept for this header.
            invite.headers.iter().find_map(|h| {
                let line = h.to_string();
                let (name, value) = line.split_once(':')?;
                name.trim()
                    .eq_ignore_ascii_case("p-asserted-identity")
                    .then(|| value.trim().to_string())
            })
        })
        .flatten();
    let raw = pai
        .or_else(|| msg::from_value(&invite.headers).map(str::to_string))
        .unwrap_or_default();
    msg::addr_uri(msg::split_first(&raw).0).to_string()
}

/// The desk side of one call, owned by its call task: the pop found at arrival, who was
/// offered and who answered, and the trail entry written at the end.
pub(crate) struct CallDesk {
    desk: Desk,
    call_id: String,
    caller: String,
    started_at: i64,
    /// Set from `&self` methods (the call task lends itself out while routing), hence the
    /// lock; only the call task takes it, never across an await.
    state: Mutex<DeskState>,
}

#[derive(Default)]
struct DeskState {
    queue: Option<String>,
    /// Looked up once per call (a second queue reuses it).
    looked_up: bool,
    pop: Option<Arc<ScreenPop>>,
    pop_error: Option<String>,
    offered_to: Option<String>,
    agent: Option<String>,
    /// Chosen by the agent among candidates (or dialled by the desk).
    chosen: Option<i64>,
    /// Click-to-dial: Hotline called out for the agent.
    outbound: bool,
    /// The current part began then (an earlier agent's part ended: [`CallDesk::part_ended`]).
    part_started: Option<i64>,
    /// The call's recording (one file for the whole call), for every part's trail entry.
    recording: Option<std::path::PathBuf>,
}

impl CallDesk {
    pub(crate) fn new(
        desk: &Desk,
        call_id: &str,
        invite: &hotline_sip::msg::Request,
        source: std::net::IpAddr,
    ) -> Self {
        CallDesk::with_caller(desk, call_id, caller_id(invite, &desk.trusted, source))
    }

    pub(crate) fn with_caller(desk: &Desk, call_id: &str, caller: String) -> Self {
        CallDesk {
            desk: desk.clone(),
            call_id: call_id.to_string(),
            caller,
            started_at: now_ms(),
            state: Mutex::new(DeskState::default()),
        }
    }

    fn with_state<T>(&self, f: impl FnOnce(&mut DeskState) -> T) -> Option<T> {
        self.state.lock().ok().map(|mut st| f(&mut st))
    }

    /// The `call.offered` event for `agent`: the call with its pop as it stands.
    fn offer_event(&self, st: &DeskState, agent: &str, ack: oneshot::Sender<()>) -> Arc<Offered> {
        Arc::new(Offered {
            call_id: self.call_id.clone(),
            queue: st.queue.clone().unwrap_or_default(),
            agent: agent.to_string(),
            caller: self.caller.clone(),
            pop: st.pop.clone(),
            pop_error: st.pop_error.clone(),
            ack: Mutex::new(Some(ack)),
        })
    }

    /// Identifies the caller for `queue` (bounded in time); returns the customer's tier,
    /// which sets the call's priority through the ACD's `tier_priority`.
    pub(crate) async fn arrived(&self, queue: &str) -> Option<String> {
        let tier_of = |p: &ScreenPop| p.view.as_ref().map(|v| v.customer.data.tier.to_string());
        let again = self.with_state(|st| {
            st.queue = Some(queue.to_string());
            std::mem::replace(&mut st.looked_up, true)
        })?;
        if again {
            return self
                .with_state(|st| st.pop.as_deref().and_then(tier_of))
                .flatten();
        }
        let store = self.desk.store.as_ref()?;
        let lookup = store.screen_pop(&self.caller, Some(queue));
        let started = std::time::Instant::now();
        let looked = tokio::time::timeout(self.desk.lookup_timeout, lookup).await;
        metrics::histogram!("hotline_crm_lookup_seconds").record(started.elapsed().as_secs_f64());
        let (pop, error) = match looked {
            Ok(Ok(pop)) => (Some(Arc::new(pop)), None),
            Ok(Err(e)) => {
                tracing::warn!(call_id = %self.call_id, error = %e, "caller lookup failed");
                (None, Some("lookup unavailable".to_string()))
            }
            Err(_) => {
                tracing::warn!(call_id = %self.call_id, "caller lookup timed out");
                (None, Some("lookup unavailable".to_string()))
            }
        };
        let tier = pop.as_deref().and_then(tier_of);
        self.with_state(|st| {
            st.pop = pop;
            st.pop_error = error;
        });
        tier
    }

    /// Publishes `call.offered` with the pop and waits (bounded) until a desk server
    /// confirms delivery, so the pop is on screen before the phone rings.
    pub(crate) async fn offered(&self, agent: &str) {
        let (tx, rx) = oneshot::channel();
        let Some(ev) = self.with_state(|st| {
            st.offered_to = Some(agent.to_string());
            self.offer_event(st, agent, tx)
        }) else {
            return;
        };
        let started = std::time::Instant::now();
        if self.desk.bus.send(SwitchEvent::CallOffered(ev)).is_err() {
            return; // nobody listens
        }
        let acked = tokio::time::timeout(self.desk.ack_timeout, rx).await;
        // The pop's way to the desk: published → written to the agent's socket (or timed out).
        metrics::histogram!("hotline_screen_pop_seconds", "result" => if acked.is_ok() { "delivered" } else { "timeout" })
            .record(started.elapsed().as_secs_f64());
        if acked.is_err() {
            tracing::warn!(call_id = %self.call_id, agent, "screen pop not confirmed in time; ringing anyway");
        }
    }

    /// The agent chose this customer for the call (one of the pop's candidates).
    pub(crate) fn choose(&self, customer_id: i64) -> bool {
        self.with_state(|st| {
            let ok = st.pop.as_deref().is_some_and(|p| match &p.identification {
                Identification::Candidates { customers } => {
                    customers.iter().any(|c| c.id == customer_id)
                }
                _ => false,
            });
            if ok {
                st.chosen = Some(customer_id);
            }
            ok
        })
        .unwrap_or(false)
    }

    /// The offered agent answered.
    pub(crate) fn answered(&self) {
        let Some((Some(agent), queue)) = self.with_state(|st| {
            st.agent = st.offered_to.clone();
            (st.agent.clone(), st.queue.clone())
        }) else {
            return;
        };
        let _ = self.desk.bus.send(SwitchEvent::CallAnswered {
            call_id: self.call_id.clone(),
            agent,
            queue,
        });
    }

    /// The call went on hold (`held`) or came back, from the desk or either phone.
    pub(crate) fn held(&self, agent: &str, held: bool) {
        let (call_id, agent) = (self.call_id.clone(), agent.to_string());
        let ev = if held {
            SwitchEvent::CallHeld { call_id, agent }
        } else {
            SwitchEvent::CallResumed { call_id, agent }
        };
        let _ = self.desk.bus.send(ev);
    }

    /// How long the call waits for a lost in-page phone.
    pub(crate) fn phone_rejoin(&self) -> Duration {
        self.desk.phone_rejoin
    }

    /// `agent`'s in-page phone left the call; it has `rejoin_secs` to come back.
    pub(crate) fn phone_lost(&self, agent: &str, rejoin_secs: u64) {
        let _ = self.desk.bus.send(SwitchEvent::PhoneLost {
            call_id: self.call_id.clone(),
            agent: agent.to_string(),
            rejoin_secs,
        });
    }

    /// `agent`'s in-page phone is back on the call.
    pub(crate) fn phone_back(&self, agent: &str) {
        let _ = self.desk.bus.send(SwitchEvent::PhoneBack {
            call_id: self.call_id.clone(),
            agent: agent.to_string(),
        });
    }

    /// Click-to-dial: `agent` called the customer (`customer`, else whoever the CRM
    /// finds for the number, created if unknown), for the trail entry and `call.ended`.
    pub(crate) async fn dialled(&self, agent: &str, customer: Option<i64>) {
        let customer = match (customer, &self.desk.store) {
            (Some(id), _) => Some(id),
            (None, Some(store)) => {
                let lookup = store.screen_pop(&self.caller, None);
                match tokio::time::timeout(self.desk.lookup_timeout, lookup).await {
                    Ok(Ok(pop)) => match pop.identification {
                        Identification::Known { customer }
                        | Identification::Provisional { customer } => Some(customer.id),
                        _ => None,
                    },
                    _ => None,
                }
            }
            (None, None) => None,
        };
        self.with_state(|st| {
            st.agent = Some(agent.to_string());
            st.chosen = customer;
            st.outbound = true;
        });
    }

    /// Click-to-dial: the customer answered and is bridged to the agent.
    pub(crate) fn connected(&self) {
        let Some(Some(agent)) = self.with_state(|st| st.agent.clone()) else {
            return;
        };
        let _ = self.desk.bus.send(SwitchEvent::CallAnswered {
            call_id: self.call_id.clone(),
            agent,
            queue: None,
        });
    }

    /// An agent reached by a transfer (not offered through the ACD) answered: they are the
    /// call's agent from now on, and their desk gets the call as if offered and answered,
    /// with the caller's pop, so they see who it is and can wrap it up.
    pub(crate) fn handed_to(&self, agent: &str) {
        let (tx, _rx) = oneshot::channel();
        let Some(ev) = self
            .with_state(|st| {
                if st.agent.is_some() {
                    return None;
                }
                st.agent = Some(agent.to_string());
                st.offered_to = Some(agent.to_string());
                Some(self.offer_event(st, agent, tx))
            })
            .flatten()
        else {
            return;
        };
        let queue = (!ev.queue.is_empty()).then(|| ev.queue.clone());
        let _ = self.desk.bus.send(SwitchEvent::CallOffered(ev));
        let _ = self.desk.bus.send(SwitchEvent::CallAnswered {
            call_id: self.call_id.clone(),
            agent: agent.to_string(),
            queue,
        });
    }

    /// The call's recording runs into `path`: each trail entry of the call names it, also
    /// those of agents whose part ends before the call does (transfer, lost phone).
    pub(crate) fn recording(&self, path: &std::path::Path) {
        self.with_state(|st| st.recording = Some(path.to_path_buf()));
    }

    /// Publishes `voicemail.left` (the message is stored by then).
    pub(crate) fn voicemail_left(&self, v: VoicemailLeft) {
        let _ = self.desk.bus.send(SwitchEvent::VoicemailLeft(Arc::new(v)));
    }

    /// Writes the call into the customer's service trail (when one customer is certain)
    /// with its recording, and publishes `call.ended`.
    pub(crate) async fn ended(&self, reason: EndReason, recording: Option<&std::path::Path>) {
        let end = PartEnd::Ended(format!("{reason:?}"));
        self.close_part(end, reason == EndReason::Voicemail, recording)
            .await;
    }

    /// The call's agent is out of it while the caller stays (their in-page phone never
    /// came back, `reason`): their part goes into the trail, so their wrap-up has an entry
    /// for its disposition, and their desk gets `call.ended`. Whoever answers next serves
    /// a part of their own.
    pub(crate) async fn part_ended(&self, reason: &str) {
        self.close_part(PartEnd::Ended(reason.to_string()), false, None)
            .await;
        self.next_part();
    }

    /// `agent` transferred the call to `to`: they are done with it (their wrap-up
    /// starts). Their part goes into the trail at once, so their disposition can be saved
    /// while the caller talks on, and `call.transferred` is the one end event their desk
    /// gets. Whoever answers next serves a part of their own (`call.ended` and its trail
    /// entry at the end); after an outside number (nobody's desk) the rest of the call
    /// has no agent (its entry has the recording).
    pub(crate) async fn transferred(&self, agent: &str, to: &str) {
        self.with_state(|st| st.agent = Some(agent.to_string()));
        self.close_part(PartEnd::Transferred(to), false, None).await;
        self.next_part();
    }

    /// Nobody serves the call until the next answer.
    fn next_part(&self) {
        self.with_state(|st| {
            st.agent = None;
            st.offered_to = None;
            st.part_started = Some(now_ms());
        });
    }

    /// Writes the trail entry of the call (or of its current part) with `recording`, else
    /// the call's, and tells its agent's desk (`call.ended` or `call.transferred`).
    async fn close_part(
        &self,
        end: PartEnd<'_>,
        voicemail: bool,
        recording: Option<&std::path::Path>,
    ) {
        let Some((customer, queue, agent, offered_to, outbound, started_at, call_recording)) = self
            .with_state(|st| {
                let identified = st.pop.as_deref().and_then(|p| match &p.identification {
                    Identification::Known { customer }
                    | Identification::Provisional { customer } => Some(customer.id),
                    _ => None,
                });
                (
                    st.chosen.or(identified),
                    st.queue.clone(),
                    st.agent.clone(),
                    st.offered_to.clone(),
                    st.outbound,
                    st.part_started.unwrap_or(self.started_at),
                    st.recording.clone(),
                )
            })
        else {
            return;
        };
        let mut interaction_id = None;
        if let (Some(store), Some(customer_id)) = (&self.desk.store, customer) {
            let entry = NewInteraction {
                customer_id,
                // A message left in a voicemail box shows as such in the trail.
                channel: if voicemail {
                    "voicemail".into()
                } else {
                    "voice".into()
                },
                direction: if outbound {
                    hotline_crm::Direction::Outbound
                } else {
                    hotline_crm::Direction::Inbound
                },
                call_id: Some(self.call_id.clone()),
                queue: queue.clone(),
                agent: agent.clone(),
                started_at,
                ended_at: Some(now_ms()),
                recording_path: recording
                    .or(call_recording.as_deref())
                    .map(|p| p.display().to_string()),
                ticket_ids: Vec::new(),
            };
            match store.record_interaction(&entry).await {
                Ok(id) => interaction_id = Some(id),
                Err(e) => {
                    tracing::warn!(call_id = %self.call_id, error = %e, "service trail not written")
                }
            }
        }
        let ev = match end {
            PartEnd::Ended(reason) => SwitchEvent::CallEnded {
                call_id: self.call_id.clone(),
                agent: agent.or(offered_to),
                queue,
                reason,
                interaction_id,
            },
            PartEnd::Transferred(to) => SwitchEvent::CallTransferred {
                call_id: self.call_id.clone(),
                agent: agent.unwrap_or_default(),
                to: to.to_string(),
            },
        };
        let _ = self.desk.bus.send(ev);
    }
}

/// How an agent's part of a call ends for their desk.
enum PartEnd<'a> {
    /// `call.ended` with this reason.
    Ended(String),
    /// `call.transferred` to this target.
    Transferred(&'a str),
}

#[cfg(test)]
mod tests {
    use super::*;

    fn desk(ack: Duration) -> (Desk, broadcast::Receiver<SwitchEvent>) {
        let (bus, rx) = broadcast::channel(16);
        let d = Desk {
            bus,
            store: None,
            ack_timeout: ack,
            lookup_timeout: Duration::from_millis(500),
            trusted: Arc::new(Vec::new()),
            phone_rejoin: Duration::from_secs(30),
        };
        (d, rx)
    }

    /// The offer (and so the INVITE after it) waits until the desk server confirms the
    /// pop was written to the agent's socket.
    #[tokio::test(start_paused = true)]
    async fn offer_waits_for_the_desk_ack() {
        let (d, mut rx) = desk(Duration::from_secs(5));
        let cd = CallDesk::with_caller(&d, "c1", "sip:+49301234567@trunk".into());
        let mut offered = Box::pin(cd.offered("bob"));
        let ev = tokio::select! {
            biased;
            _ = &mut offered => panic!("offer finished before anyone confirmed it"),
            ev = rx.recv() => ev.expect("event"),
        };
        let SwitchEvent::CallOffered(o) = ev else {
            panic!("expected call.offered, got {ev:?}")
        };
        assert_eq!((o.agent.as_str(), o.call_id.as_str()), ("bob", "c1"));
        // Without the ack the offer keeps waiting (virtual time: no real sleep).
        assert!(
            tokio::time::timeout(Duration::from_secs(4), &mut offered)
                .await
                .is_err()
        );
        let before = tokio::time::Instant::now();
        o.ack();
        offered.await;
        assert_eq!(
            tokio::time::Instant::now(),
            before,
            "released by the ack at once"
        );
    }

    /// A desk server that never confirms delays ringing by the bound only.
    #[tokio::test(start_paused = true)]
    async fn unconfirmed_offer_rings_after_the_bound() {
        let (d, _rx) = desk(Duration::from_millis(250));
        let cd = CallDesk::with_caller(&d, "c2", "sip:anonymous@x".into());
        let start = tokio::time::Instant::now();
        cd.offered("bob").await;
        assert_eq!(start.elapsed(), Duration::from_millis(250));
    }

    /// P-Asserted-Identity names the caller only when the INVITE came from a trusted
    /// network; from elsewhere it is ignored and From is used.
    #[test]
    fn pai_is_believed_only_from_trusted_networks() {
        let text = "INVITE sip:4100@h SIP/2.0\r\nVia: SIP/2.0/UDP 10.0.0.9;branch=z9hG4bK1\r\n\
             From: <sip:+4930111@10.0.0.9>;tag=a\r\nTo: <sip:4100@h>\r\nCall-ID: c\r\n\
             CSeq: 1 INVITE\r\nP-Asserted-Identity: <sip:+4930222@trunk>\r\n\
             Content-Length: 0\r\n\r\n";
        let Ok(hotline_sip::msg::SipMessage::Request(invite)) =
            hotline_sip::msg::parse(text.as_bytes(), &hotline_sip::msg::Limits::default(), false)
        else {
            panic!("test INVITE parses")
        };
        let trunks: Vec<hotline_sip::Cidr> = vec!["10.0.0.0/24".parse().unwrap()];
        let trunk = "10.0.0.9".parse().unwrap();
        let stranger = "192.0.2.7".parse().unwrap();
        assert_eq!(caller_id(&invite, &trunks, trunk), "sip:+4930222@trunk");
        assert_eq!(
            caller_id(&invite, &trunks, stranger),
            "sip:+4930111@10.0.0.9"
        );
        assert_eq!(caller_id(&invite, &[], trunk), "sip:+4930111@10.0.0.9");
    }

    /// An agent whose in-page phone never came back leaves the call before it ends: their
    /// trail entry names the call's recording (they talked on it), as the entry of the
    /// agent who takes the call next does.
    #[tokio::test]
    async fn a_part_ended_early_has_the_calls_recording_in_the_trail() {
        let dir = std::env::temp_dir().join(format!("hotline-part-{}", std::process::id()));
        let store = Store::open_sqlite(dir.join("crm.db"), &Default::default())
            .await
            .expect("store");
        let customer = store
            .create_customer(
                &hotline_crm::CustomerData {
                    surname: "Weber".into(),
                    ..Default::default()
                },
                &["+49301234567"],
            )
            .await
            .expect("customer");
        let (mut d, _rx) = desk(Duration::from_millis(10));
        d.store = Some(store.clone());
        let cd = CallDesk::with_caller(&d, "c-lost", "sip:+49301234567@trunk".into());
        cd.arrived("support").await;
        cd.offered("bob").await;
        cd.answered();
        let wav = std::path::Path::new("/recordings/1-c-lost.wav");
        cd.recording(wav);
        cd.part_ended("PhoneLost").await;
        cd.offered("carol").await;
        cd.answered();
        cd.ended(EndReason::CallerHangup, Some(wav)).await;
        let trail = store.trail(customer, 10).await.expect("trail");
        let parts: Vec<_> = trail
            .iter()
            .map(|i| (i.agent.as_deref(), i.recording_path.as_deref()))
            .collect();
        let path = wav.to_str();
        assert!(parts.contains(&(Some("bob"), path)), "{trail:?}");
        assert!(parts.contains(&(Some("carol"), path)), "{trail:?}");
        store.close().await;
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// Nobody subscribed (no CTI): no wait at all.
    #[tokio::test(start_paused = true)]
    async fn offer_without_listeners_does_not_wait() {
        let (d, rx) = desk(Duration::from_millis(250));
        drop(rx);
        let cd = CallDesk::with_caller(&d, "c3", "sip:1@x".into());
        let start = tokio::time::Instant::now();
        cd.offered("bob").await;
        assert_eq!(start.elapsed(), Duration::ZERO);
    }
}
