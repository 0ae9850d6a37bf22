//! The ACD task: the only owner of the `hotline_acd::Engine`. Call tasks feed it through a
//! bounded channel; its decisions go back to the call tasks they name.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hotline_acd::{
    AcdConfig, AgentId, AgentState, CallId, Decision, Engine, Fallback, Millis, NewCall,
    NotReadyReason,
};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::time::Instant;

use crate::callback::CallbackJob;
use crate::events::{AgentCommand, AgentStateEvent, AgentStatus, QueueStat, SwitchEvent};
use crate::{Control, SwitchError};
use hotline_cdr::{QueueEvent, QueueEventKind};

/// What a call task tells the ACD.
#[derive(Debug)]
pub(crate) enum AcdInput {
    /// A caller entered `queue`; decisions for the call go to `inbox`.
    Arrived {
        call: CallId,
        queue: String,
        inbox: mpsc::Sender<AcdOutput>,
        /// The caller's Call-ID (shown in agent states) and CRM tier (priority).
        sip_call_id: String,
        tier: Option<String>,
    },
    /// A bridged call back in `queue` at the head (its agent's phone was lost).
    Requeued {
        call: CallId,
        queue: String,
        inbox: mpsc::Sender<AcdOutput>,
        sip_call_id: String,
        tier: Option<String>,
    },
    Answered {
        call: CallId,
        agent: AgentId,
    },
    Rejected {
        call: CallId,
        agent: AgentId,
    },
    /// The caller hung up while waiting or ringing.
    Abandoned {
        call: CallId,
    },
    /// A bridged call ended.
    Ended {
        call: CallId,
    },
    /// A desk sets its agent's state.
    Agent {
        agent: String,
        cmd: AgentCommand,
        reply: oneshot::Sender<Result<AgentStateEvent, SwitchError>>,
    },
    /// Every agent's state and version.
    Agents {
        reply: oneshot::Sender<Vec<AgentStateEvent>>,
    },
    QueueStats {
        reply: oneshot::Sender<Vec<QueueStat>>,
    },
    /// The agent's disposition is in: wrap-up ends.
    WrapupDone {
        agent: String,
    },
    /// A SIP user is on (`busy`) or off a call that is not the ACD's (an extension call):
    /// while busy, an agent with that id is not offered queue calls.
    Busy {
        user: String,
        busy: bool,
    },
    /// The waiting caller keeps their place as a callback to `number`; `done` says
    /// whether the ACD took the request.
    RequestCallback {
        call: CallId,
        number: String,
        done: tokio::sync::oneshot::Sender<bool>,
    },
    /// The outcome of placing a callback: the customer answered or not.
    CallbackResult {
        call: CallId,
        connected: bool,
    },
    /// A new validated ACD configuration, applied while calls flow (see
    /// [`AcdTask::reconfigure`]); the reply lists what changed.
    Reconfigure {
        cfg: Box<AcdConfig>,
        reply: oneshot::Sender<Result<Vec<String>, SwitchError>>,
    },
    /// The prober found the agent's device gone (`false`) or answering again.
    Reachable {
        user: String,
        reachable: bool,
    },
    /// The state of the agent with this id (for status displays and tests).
    State {
        user: String,
        reply: tokio::sync::oneshot::Sender<Option<AgentState>>,
    },
}

/// Not-ready reasons are strings on the wire and codes in the engine; code 0 is the
/// state a desk login starts in, the others are interned here (bounded).
const LOGIN_REASON: &str = "login";
const MAX_REASONS: usize = 64;
const MAX_REASON_LEN: usize = 40;
/// How often queue figures are published (`queue.stats`).
const STATS_EVERY: Duration = Duration::from_secs(5);

/// The not-ready reason code that marks "busy on a non-queue call".
pub(crate) const BUSY_CODE: u16 = 9001;
/// The not-ready reason code of an agent whose device does not answer ([`crate::qualify`]).
pub(crate) const UNREACHABLE_CODE: u16 = 9002;

/// What the ACD tells a call task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum AcdOutput {
    /// Ring this agent (the agent's id is their SIP user name).
    Offer { agent: AgentId, user: String },
    /// Stop ringing this agent.
    CancelOffer { agent: AgentId },
    /// The call left the ACD for its queue's fallback target.
    Fallback { target: Fallback },
    /// Tell the caller their position (1 = next) and expected wait.
    Announce { position: u32, ewt_secs: u64 },
    /// Position and expected wait at entry (not announced: for the callback offer).
    Estimate { ewt_secs: u64 },
    /// The queue is unknown to the ACD.
    Refused,
}

/// What the ACD task keeps for one agent beside the engine.
#[derive(Debug, Clone, Default)]
struct AgentSlot {
    name: String,
    /// The last published state (with the pending not-ready reason).
    published: Option<AgentStateEvent>,
    pending: Option<String>,
    /// The engine state at the last publish: unchanged agents are skipped without
    /// building their status (the scan runs after every ACD input).
    seen: Option<AgentState>,
    /// In wrap-up: when it started and for which call (for `WRAPUP_END`).
    wrap_started: Option<(i64, String)>,
    /// What the queue log last said of the agent (`None`: logged out).
    logged: Option<LogClass>,
}

/// An agent's state as the queue log classes it: available, ringing, talking and wrap-up
/// are all "ready" (the reports count ready time from it). Not-ready codes stand for
/// their names (interned reasons keep their code), so comparing codes compares names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LogClass {
    Ready,
    NotReady(NotReadyReason),
}

impl AgentSlot {
    fn named(name: String) -> Self {
        AgentSlot {
            name,
            ..Default::default()
        }
    }
}

pub(crate) struct AcdTask {
    engine: Engine,
    start: Instant,
    calls: HashMap<CallId, mpsc::Sender<AcdOutput>>,
    /// Per agent (by `AgentId`): one slot, so an agent added live grows everything at once.
    agents: Vec<AgentSlot>,
    bus: broadcast::Sender<SwitchEvent>,
    /// Not-ready reason texts by code - 1.
    reasons: Vec<String>,
    /// ACD call → the caller's Call-ID, while the call is in the ACD.
    sip_ids: HashMap<CallId, String>,
    /// The one version counter for agent states.
    version: u64,
    /// Agents on a non-queue call.
    busy: HashSet<AgentId>,
    /// Queue of each call in the ACD (for callbacks placed later).
    queue_of: HashMap<CallId, String>,
    /// The dispatcher, which starts callback calls.
    control: mpsc::Sender<Control>,
    /// The queue log gets the agents' login / ready / not-ready / logout changes.
    cdr: hotline_cdr::CdrSink,
    /// The configuration in force (live edits are diffed against it).
    current: AcdConfig,
    /// Agents who log in from a desk (added agents among them start logged out).
    desk_login: HashSet<String>,
    /// Agents whose device does not answer probes.
    unreachable: HashSet<AgentId>,
    /// The device prober, told of every offer (so a dead device is found at once).
    pub(crate) qualify: Option<mpsc::Sender<crate::qualify::QualifyInput>>,
    /// Agents whose desk view may have changed without an engine state change (a desk
    /// command's pending not-ready): looked at on the next publish beside the engine's
    /// changed agents.
    recheck: Vec<AgentId>,
    /// Scratch list for [`Engine::take_changed`] (kept to reuse its allocation).
    changed: Vec<AgentId>,
}

impl AcdTask {
    /// The engine with every configured agent logged in and ready, except those in
    /// `desk_login` (agents who log in from their desktop, CTI).
    pub(crate) fn new(
        cfg: &AcdConfig,
        desk_login: &HashSet<String>,
        bus: broadcast::Sender<SwitchEvent>,
        control: mpsc::Sender<Control>,
        cdr: hotline_cdr::CdrSink,
    ) -> Result<Self, SwitchError> {
        let mut engine =
            Engine::new(cfg, Millis(0)).map_err(|e| SwitchError::Acd(e.to_string()))?;
        let mut names = Vec::new();
        for a in &cfg.agents {
            if let Some(id) = engine.agent_id(&a.id) {
                if !desk_login.contains(&a.id) {
                    engine
                        .agent_login(Millis(0), id, true)
                        .map_err(|e| SwitchError::Acd(e.to_string()))?;
                }
                let i = id.0 as usize;
                if names.len() <= i {
                    names.resize(i + 1, String::new());
                }
                names[i] = a.id.clone();
            }
        }
        let mut task = AcdTask {
            engine,
            start: Instant::now(),
            calls: HashMap::new(),
            agents: names.into_iter().map(AgentSlot::named).collect(),
            bus,
            reasons: Vec::new(),
            sip_ids: HashMap::new(),
            version: 0,
            busy: HashSet::new(),
            queue_of: HashMap::new(),
            control,
            cdr,
            current: cfg.clone(),
            desk_login: desk_login.clone(),
            unreachable: HashSet::new(),
            qualify: None,
            recheck: Vec::new(),
            changed: Vec::new(),
        };
        // Agents logged in at start (those without a desk login) open the queue log.
        for a in &cfg.agents {
            if let Some(id) = task.engine.agent_id(&a.id)
                && let Ok(state) = task.engine.agent_state(id)
            {
                task.log_agent_state(id, state);
            }
        }
        task.publish_changes();
        Ok(task)
    }

    /// Writes an agent's state change to the queue log when its class changes (the reports
    /// count ready time from it: available, ringing, talking and wrap-up are all "ready").
    /// A not-ready row names its reason as desks see it.
    fn log_agent_state(&mut self, agent: AgentId, state: AgentState) {
        let class = match state {
            AgentState::LoggedOut => None,
            AgentState::NotReady(r) => Some(LogClass::NotReady(r)),
            _ => Some(LogClass::Ready),
        };
        let Some(slot) = self.agents.get_mut(agent.0 as usize) else {
            return;
        };
        let prev = std::mem::replace(&mut slot.logged, class);
        if prev == class {
            return;
        }
        let at = hotline_cdr::now_millis();
        let log = |event: QueueEventKind, data: String| {
            self.cdr.queue_event(QueueEvent {
                at,
                call_id: "NONE".into(),
                queue: "NONE".into(),
                agent: Some(slot.name.clone()),
                event,
                data,
            })
        };
        if prev.is_none() {
            log(QueueEventKind::AgentLogin, String::new());
        }
        match class {
            None => log(QueueEventKind::AgentLogout, String::new()),
            Some(LogClass::Ready) => log(QueueEventKind::AgentReady, String::new()),
            Some(LogClass::NotReady(r)) => {
                log(QueueEventKind::AgentNotReady, reason_name(&self.reasons, r))
            }
        }
    }

    /// Notes when agent `i` enters wrap-up and writes `WRAPUP_END` (its length in ms, for
    /// the reports' handle time) when it leaves, however it ends (disposition, timer,
    /// ready, logout).
    fn log_wrapup(&mut self, i: usize, status: &AgentStatus, entering: bool) {
        let at = hotline_cdr::now_millis();
        match status {
            AgentStatus::WrapUp { call_id } => {
                if entering && let Some(a) = self.agents.get_mut(i) {
                    a.wrap_started = call_id.clone().map(|c| (at, c));
                }
            }
            _ => {
                if let Some((since, call_id)) =
                    self.agents.get_mut(i).and_then(|a| a.wrap_started.take())
                {
                    self.cdr.queue_event(QueueEvent {
                        at,
                        call_id,
                        queue: "NONE".into(),
                        agent: self.agents.get(i).map(|a| a.name.clone()),
                        event: QueueEventKind::WrapupEnd,
                        data: (at - since).max(0).to_string(),
                    });
                }
            }
        }
    }

    fn now(&self) -> Millis {
        Millis(self.start.elapsed().as_millis() as u64)
    }

    pub(crate) async fn run(mut self, mut input: mpsc::Receiver<AcdInput>) {
        let mut stats = tokio::time::interval(STATS_EVERY);
        stats.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            self.decide();
            let wake = self
                .engine
                .poll_timeout()
                .map(|m| self.start + Duration::from_millis(m.0));
            tokio::select! {
                msg = input.recv() => match msg {
                    Some(m) => self.input(m),
                    None => break,
                },
                _ = async {
                    match wake {
                        Some(t) => tokio::time::sleep_until(t).await,
                        None => std::future::pending().await,
                    }
                } => {
                    let now = self.now();
                    self.engine.handle_timeout(now);
                }
                _ = stats.tick() => {
                    // Wallboards and supervisors; only built when someone listens.
                    if self.bus.receiver_count() > 0 {
                        let now = self.now();
                        let q = std::sync::Arc::new(self.queue_stats(now));
                        let _ = self.bus.send(SwitchEvent::QueueStats(q));
                    }
                }
            }
            self.decide();
            self.publish_changes();
        }
    }

    fn input(&mut self, m: AcdInput) {
        let now = self.now();
        let r = match m {
            AcdInput::Arrived {
                call,
                queue,
                inbox,
                sip_call_id,
                tier,
            } => {
                let Some(q) = self.engine.queue_id(&queue) else {
                    let _ = inbox.try_send(AcdOutput::Refused);
                    return;
                };
                if let Ok(e) = self.engine.estimate_wait(now, q, 0) {
                    let _ = inbox.try_send(AcdOutput::Estimate {
                        ewt_secs: e.ewt_secs,
                    });
                }
                self.calls.insert(call, inbox);
                self.sip_ids.insert(call, sip_call_id);
                self.queue_of.insert(call, queue);
                let mut new = NewCall::new(call, q);
                new.tier = tier;
                self.engine.call_arrived(now, new)
            }
            AcdInput::Requeued {
                call,
                queue,
                inbox,
                sip_call_id,
                tier,
            } => {
                let Some(q) = self.engine.queue_id(&queue) else {
                    let _ = inbox.try_send(AcdOutput::Refused);
                    return;
                };
                self.calls.insert(call, inbox);
                self.sip_ids.insert(call, sip_call_id);
                self.queue_of.insert(call, queue);
                let mut new = NewCall::new(call, q);
                new.tier = tier;
                // The highest priority there is: ahead of everyone who waits.
                new.priority = 1000;
                self.engine.call_arrived(now, new)
            }
            AcdInput::Answered { call, agent } => self.engine.offer_answered(now, call, agent),
            AcdInput::Rejected { call, agent } => self.engine.offer_rejected(now, call, agent),
            AcdInput::Abandoned { call } => {
                self.calls.remove(&call);
                self.queue_of.remove(&call);
                self.engine.call_abandoned(now, call)
            }
            AcdInput::Ended { call } => {
                self.calls.remove(&call);
                self.queue_of.remove(&call);
                self.engine.call_ended(now, call)
            }
            AcdInput::Agent { agent, cmd, reply } => {
                let r = self.agent_command(now, &agent, cmd);
                let _ = reply.send(r);
                return;
            }
            AcdInput::Agents { reply } => {
                self.decide();
                self.publish_changes();
                let _ = reply.send(
                    self.agents
                        .iter()
                        .filter_map(|a| a.published.clone())
                        .collect(),
                );
                return;
            }
            AcdInput::QueueStats { reply } => {
                let _ = reply.send(self.queue_stats(now));
                return;
            }
            AcdInput::WrapupDone { agent } => match self.engine.agent_id(&agent) {
                Some(id) if self.engine.agent_state(id).ok() == Some(AgentState::WrapUp) => {
                    self.engine.wrapup_done(now, id)
                }
                _ => return,
            },
            AcdInput::RequestCallback { call, number, done } => {
                let r = self.engine.request_callback(now, call, number);
                if r.is_ok() {
                    // The caller hangs up; the request lives on in the engine.
                    self.calls.remove(&call);
                }
                let _ = done.send(r.is_ok());
                r
            }
            AcdInput::CallbackResult { call, connected } => {
                self.engine.callback_result(now, call, connected)
            }
            AcdInput::Reconfigure { cfg, reply } => {
                let r = self.reconfigure(now, &cfg);
                let _ = reply.send(r);
                return;
            }
            AcdInput::State { user, reply } => {
                let state = self
                    .engine
                    .agent_id(&user)
                    .and_then(|a| self.engine.agent_state(a).ok());
                let _ = reply.send(state);
                return;
            }
            AcdInput::Busy { user, busy } => {
                let Some(agent) = self.engine.agent_id(&user) else {
                    return;
                };
                let r = if busy {
                    self.busy.insert(agent);
                    self.hold_if_busy(now, agent)
                } else {
                    self.busy.remove(&agent);
                    match self.engine.agent_state(agent) {
                        Ok(AgentState::NotReady(NotReadyReason::Code(BUSY_CODE)))
                            if self.unreachable.contains(&agent) =>
                        {
                            self.engine.agent_not_ready(now, agent, UNREACHABLE_CODE)
                        }
                        Ok(AgentState::NotReady(NotReadyReason::Code(BUSY_CODE))) => {
                            self.engine.agent_ready(now, agent)
                        }
                        _ => Ok(()),
                    }
                };
                if let Ok(state) = self.engine.agent_state(agent) {
                    self.log_agent_state(agent, state);
                }
                r
            }
            AcdInput::Reachable { user, reachable } => {
                let Some(agent) = self.engine.agent_id(&user) else {
                    return;
                };
                self.reachable(now, agent, reachable)
            }
        };
        if let Err(e) = r {
            // Races (an offer answered after the caller left) are expected, not fatal.
            tracing::debug!(error = %e, "ACD refused an event");
        }
    }

    /// Carries out a desk's state command and answers with the resulting state (published
    /// first, so the reply and the event carry the same version).
    fn agent_command(
        &mut self,
        now: Millis,
        agent: &str,
        cmd: AgentCommand,
    ) -> Result<AgentStateEvent, SwitchError> {
        let id = self
            .engine
            .agent_id(agent)
            .ok_or_else(|| SwitchError::NotFound(format!("agent {agent}")))?;
        let state = self
            .engine
            .agent_state(id)
            .map_err(|e| SwitchError::Acd(e.to_string()))?;
        let i = id.0 as usize;
        // A command may change what desks are told (the pending not-ready) without
        // changing the engine state: look at this agent again on the next publish.
        if let Some(a) = self.agents.get_mut(i) {
            a.seen = None;
            self.recheck.push(id);
        }
        let logged_out = state == AgentState::LoggedOut;
        let r = match cmd {
            // A dead device would only ring: a login waits not-ready for it to answer.
            AgentCommand::Ready if self.unreachable.contains(&id) => {
                if logged_out {
                    self.engine
                        .agent_login(now, id, false)
                        .and_then(|_| self.engine.agent_not_ready(now, id, UNREACHABLE_CODE))
                } else {
                    return Err(SwitchError::InvalidState(
                        "the agent's phone does not answer (unreachable)".into(),
                    ));
                }
            }
            AgentCommand::Ready if logged_out => self.engine.agent_login(now, id, true),
            AgentCommand::Ready => {
                if let Some(a) = self.agents.get_mut(i) {
                    a.pending = None;
                }
                self.engine.agent_ready(now, id)
            }
            AgentCommand::NotReady { reason } | AgentCommand::NotReadyAfterCall { reason } => {
                let code = self.reason_code(&reason)?;
                if logged_out {
                    self.engine
                        .agent_login(now, id, false)
                        .and_then(|_| self.engine.agent_not_ready(now, id, code))
                } else {
                    if matches!(state, AgentState::OnCall(_) | AgentState::WrapUp)
                        && let Some(a) = self.agents.get_mut(i)
                    {
                        a.pending = Some(reason);
                    }
                    self.engine.agent_not_ready(now, id, code)
                }
            }
            AgentCommand::Logout if logged_out => Ok(()),
            AgentCommand::Logout => self.engine.agent_logout(now, id),
        };
        r.map_err(|e| SwitchError::InvalidState(e.to_string()))?;
        self.decide();
        self.publish_changes();
        self.agents
            .get(i)
            .and_then(|a| a.published.clone())
            .ok_or(SwitchError::Unavailable)
    }

    fn reason_code(&mut self, reason: &str) -> Result<u16, SwitchError> {
        let reason = reason.trim();
        if reason.is_empty() || reason.len() > MAX_REASON_LEN {
            return Err(SwitchError::InvalidState(format!(
                "a not-ready reason is 1 to {MAX_REASON_LEN} bytes"
            )));
        }
        if reason == LOGIN_REASON {
            return Ok(0);
        }
        if let Some(i) = self.reasons.iter().position(|r| r == reason) {
            return Ok(i as u16 + 1);
        }
        if self.reasons.len() >= MAX_REASONS {
            return Err(SwitchError::InvalidState(format!(
                "more than {MAX_REASONS} distinct not-ready reasons"
            )));
        }
        self.reasons.push(reason.to_string());
        Ok(self.reasons.len() as u16)
    }

    fn status(&self, state: AgentState) -> AgentStatus {
        let sip = |c: CallId| self.sip_ids.get(&c).cloned();
        match state {
            AgentState::LoggedOut => AgentStatus::LoggedOut,
            AgentState::Available => AgentStatus::Ready,
            AgentState::Reserved(c) => AgentStatus::Reserved { call_id: sip(c) },
            AgentState::OnCall(c) => AgentStatus::OnCall { call_id: sip(c) },
            AgentState::WrapUp => AgentStatus::WrapUp { call_id: None },
            AgentState::NotReady(r) => AgentStatus::NotReady {
                reason: reason_name(&self.reasons, r),
            },
        }
    }

    /// Publishes every agent whose state changed since the last call, each with a new
    /// version. The engine is the truth and names the agents whose state changed (its
    /// changed list); agents a desk command touched are looked at too. Each is compared
    /// against what desks were told, so no change (commanded or the engine's own) goes
    /// unpublished, and an ACD step costs the agents it touched, not all of them.
    fn publish_changes(&mut self) {
        let mut todo = std::mem::take(&mut self.changed);
        self.engine.take_changed(&mut todo);
        todo.append(&mut self.recheck);
        for &id in &todo {
            self.publish_agent(id);
        }
        todo.clear();
        self.changed = todo;
        // Call-IDs are only needed while some agent state can still name the call. The
        // sweep is O(calls in the ACD): run at every step after a call left, it cost
        // ~1,000 lookups per call at 1,000 calls/s; with slack it runs once per about as
        // many calls as are left, so it is O(1) per call and the map stays < 2x + 64.
        if self.sip_ids.len() > 2 * self.calls.len() + 64 {
            let calls = &self.calls;
            self.sip_ids.retain(|c, _| calls.contains_key(c));
        }
    }

    /// Publishes agent `id` if what desks see of it changed.
    fn publish_agent(&mut self, id: AgentId) {
        let i = id.0 as usize;
        if i >= self.agents.len() {
            return;
        }
        let Ok(state) = self.engine.agent_state(id) else {
            return;
        };
        if self.agents[i].seen == Some(state) {
            return;
        }
        self.agents[i].seen = Some(state);
        let mut status = self.status(state);
        let slot = &mut self.agents[i];
        let prev = slot.published.as_ref();
        if let AgentStatus::WrapUp { call_id } = &mut status {
            // Wrap-up is for the call the agent was on.
            *call_id = match prev.map(|p| &p.status) {
                Some(AgentStatus::OnCall { call_id } | AgentStatus::WrapUp { call_id }) => {
                    call_id.clone()
                }
                _ => None,
            };
        }
        if matches!(
            status,
            AgentStatus::NotReady { .. } | AgentStatus::LoggedOut | AgentStatus::Ready
        ) {
            slot.pending = None;
        }
        let pending = slot.pending.clone();
        if prev.is_some_and(|p| p.status == status && p.pending_not_ready == pending) {
            return;
        }
        // A change of the pending reason alone is no new state: time in state goes on.
        let since = match prev {
            Some(p) if p.status == status => p.since,
            _ => hotline_cdr::now_millis(),
        };
        let entering_wrap = matches!(status, AgentStatus::WrapUp { .. })
            && !prev.is_some_and(|p| matches!(p.status, AgentStatus::WrapUp { .. }));
        self.log_wrapup(i, &status, entering_wrap);
        // The queue log sees every change the desks see (it skips repeats itself),
        // after the `WRAPUP_END` of a wrap-up that ends into it.
        self.log_agent_state(AgentId(i as u32), state);
        self.version += 1;
        let ev = AgentStateEvent {
            agent: self.agents[i].name.clone(),
            status,
            pending_not_ready: pending,
            version: self.version,
            since,
        };
        if entering_wrap && let AgentStatus::WrapUp { call_id } = &ev.status {
            let _ = self.bus.send(SwitchEvent::WrapupStarted {
                call_id: call_id.clone(),
                agent: ev.agent.clone(),
            });
        }
        let _ = self.bus.send(SwitchEvent::AgentState(ev.clone()));
        self.agents[i].published = Some(ev);
    }

    fn queue_stats(&self, now: Millis) -> Vec<QueueStat> {
        self.engine
            .snapshot(now)
            .queues
            .into_iter()
            .map(|q| QueueStat {
                queue: q.name,
                waiting: q.waiting,
                longest_wait_secs: q.longest_wait_secs,
                offered: q.offered,
                answered: q.answered,
                abandoned: q.abandoned,
                service_level: q.service_level,
                asa_secs: q.asa_secs,
                agents_ready: q.agents.available,
                agents_busy: q.agents.reserved + q.agents.on_call + q.agents.wrap_up,
                agents_not_ready: q.agents.not_ready,
            })
            .collect()
    }

    /// A busy agent is set not-ready with [`BUSY_CODE`]: at once when available (a
    /// ringing offer is withdrawn and requeued), after the current call or wrap-up
    /// otherwise. An agent already not-ready for another reason keeps that reason.
    fn hold_if_busy(&mut self, now: Millis, agent: AgentId) -> hotline_acd::Result<()> {
        match self.engine.agent_state(agent) {
            Ok(AgentState::LoggedOut | AgentState::NotReady(_)) | Err(_) => Ok(()),
            Ok(_) if self.busy.contains(&agent) => {
                self.engine.agent_not_ready(now, agent, BUSY_CODE)
            }
            Ok(_) => Ok(()),
        }
    }

    /// The prober's verdict on an agent's device: unreachable takes the agent out of the
    /// ready pool (a ringing offer is withdrawn and requeued; on a call, after it); an
    /// answer brings back an agent that was out for this reason only.
    fn reachable(
        &mut self,
        now: Millis,
        agent: AgentId,
        reachable: bool,
    ) -> hotline_acd::Result<()> {
        let state = self.engine.agent_state(agent);
        if reachable {
            self.unreachable.remove(&agent);
            match state {
                Ok(AgentState::NotReady(NotReadyReason::Code(UNREACHABLE_CODE))) => {
                    if self.busy.contains(&agent) {
                        self.engine.agent_not_ready(now, agent, BUSY_CODE)
                    } else {
                        self.engine.agent_ready(now, agent)
                    }
                }
                _ => Ok(()),
            }
        } else {
            self.unreachable.insert(agent);
            match state {
                // Logged out, or not ready for a reason of its own: that reason stays.
                Ok(AgentState::LoggedOut | AgentState::NotReady(_)) | Err(_) => Ok(()),
                Ok(_) => self.engine.agent_not_ready(now, agent, UNREACHABLE_CODE),
            }
        }
    }

    fn decide(&mut self) {
        while let Some(d) = self.engine.poll_decision() {
            let (call, out) = match d {
                Decision::Offer { call, agent, .. } => {
                    let user = self
                        .agents
                        .get(agent.0 as usize)
                        .map(|a| a.name.clone())
                        .unwrap_or_default();
                    if let Some(q) = &self.qualify {
                        let _ = q
                            .try_send(crate::qualify::QualifyInput::Offered { user: user.clone() });
                    }
                    (call, AcdOutput::Offer { agent, user })
                }
                Decision::CancelOffer { call, agent } => (call, AcdOutput::CancelOffer { agent }),
                Decision::Fallback { call, target, .. } => (call, AcdOutput::Fallback { target }),
                Decision::Announce {
                    call,
                    position,
                    ewt_secs,
                } => (call, AcdOutput::Announce { position, ewt_secs }),
                Decision::PlaceCallback {
                    call,
                    agent,
                    number,
                } => {
                    let job = CallbackJob {
                        call,
                        agent: Some(agent),
                        dial: None,
                        user: self
                            .agents
                            .get(agent.0 as usize)
                            .map(|a| a.name.clone())
                            .unwrap_or_default(),
                        number,
                        queue: self.queue_of.get(&call).cloned().unwrap_or_default(),
                    };
                    if self.control.try_send(Control::PlaceCallback(job)).is_err() {
                        let now = self.now();
                        let _ = self.engine.callback_result(now, call, false);
                    }
                    continue;
                }
                Decision::AgentStateChanged { agent, state } => {
                    // A busy mark that took effect after the non-queue call ended.
                    let now = self.now();
                    if state == AgentState::NotReady(NotReadyReason::Code(BUSY_CODE))
                        && !self.busy.contains(&agent)
                    {
                        let _ = self.engine.agent_ready(now, agent);
                    }
                    // The device came back while the agent finished a call.
                    if state == AgentState::NotReady(NotReadyReason::Code(UNREACHABLE_CODE))
                        && !self.unreachable.contains(&agent)
                    {
                        let _ = self.engine.agent_ready(now, agent);
                    }
                    if let Ok(state) = self.engine.agent_state(agent) {
                        self.log_agent_state(agent, state);
                    }
                    continue;
                }
                other => {
                    tracing::debug!(?other, "ACD decision not acted on in phase 1");
                    continue;
                }
            };
            let gone = match self.calls.get(&call) {
                Some(tx) => tx.try_send(out.clone()).is_err(),
                None => true,
            };
            // The engine has forgotten a call that went to its fallback: so do we (a
            // fallback to another queue arrives afresh).
            if matches!(out, AcdOutput::Fallback { .. }) {
                self.calls.remove(&call);
                self.queue_of.remove(&call);
            }
            if gone {
                tracing::debug!(?call, ?out, "ACD decision for a call that is gone");
                if let AcdOutput::Offer { agent, .. } = out {
                    let now = self.now();
                    let _ = self.engine.offer_rejected(now, call, agent);
                }
            }
        }
    }
}

/// A not-ready reason as desks see it (and the queue log writes it): code 0 is the
/// desk login's, the others are the interned texts or the switch's own reasons.
fn reason_name(reasons: &[String], r: NotReadyReason) -> String {
    match r {
        NotReadyReason::MissedOffer => "missed_offer".into(),
        NotReadyReason::Code(0) => LOGIN_REASON.into(),
        NotReadyReason::Code(BUSY_CODE) => "busy".into(),
        NotReadyReason::Code(UNREACHABLE_CODE) => "unreachable".into(),
        NotReadyReason::Code(c) => reasons
            .get(usize::from(c) - 1)
            .cloned()
            .unwrap_or_else(|| format!("code {c}")),
    }
}

impl AcdTask {
    /// Applies a new ACD configuration without disturbing calls: queues are matched by
    /// name (new ones added, changed ones updated in place so waiting calls keep their
    /// places, removed ones drained to their fallback), agents by id (new ones added and
    /// logged in unless they log in from a desk, changed ones re-skilled, removed ones
    /// taken out of every queue and logged out after their current call). The whole
    /// configuration is checked first; a refused one changes nothing. Engine-wide
    /// settings (aging, tiers, seed) need a restart and are reported as such.
    pub(crate) fn reconfigure(
        &mut self,
        now: Millis,
        new: &AcdConfig,
    ) -> Result<Vec<String>, SwitchError> {
        let err = |e: hotline_acd::AcdError| SwitchError::Acd(e.to_string());
        Engine::new(new, Millis(0)).map_err(err)?;
        let old = std::mem::replace(&mut self.current, new.clone());
        let mut changes = Vec::new();
        let old_q: HashMap<&str, &hotline_acd::QueueConfig> =
            old.queues.iter().map(|q| (q.name.as_str(), q)).collect();
        let new_q: HashSet<&str> = new.queues.iter().map(|q| q.name.as_str()).collect();
        // Added queues exist (plain) before any is configured, so fallbacks and overflow
        // may name each other.
        for q in &new.queues {
            if self.engine.queue_id(&q.name).is_none() {
                self.engine
                    .add_queue(&hotline_acd::QueueConfig::new(&q.name))
                    .map_err(err)?;
                changes.push(format!("queue {} added", q.name));
            }
        }
        for q in &new.queues {
            match old_q.get(q.name.as_str()) {
                Some(o) if *o == q => {}
                Some(_) => {
                    self.engine.update_queue(now, q).map_err(err)?;
                    changes.push(format!("queue {} updated", q.name));
                }
                None => {
                    self.engine.update_queue(now, q).map_err(err)?;
                }
            }
        }
        let old_a: HashMap<&str, &hotline_acd::AgentConfig> =
            old.agents.iter().map(|a| (a.id.as_str(), a)).collect();
        for a in &new.agents {
            match (old_a.get(a.id.as_str()), self.engine.agent_id(&a.id)) {
                (Some(o), _) if *o == a => {}
                (Some(_), Some(_)) => {
                    self.engine.update_agent(now, a).map_err(err)?;
                    changes.push(format!("agent {} updated", a.id));
                }
                (None, Some(id)) => {
                    // Removed earlier, back now.
                    self.engine.update_agent(now, a).map_err(err)?;
                    self.login_added(now, id, &a.id)?;
                    changes.push(format!("agent {} added", a.id));
                }
                (_, None) => {
                    let id = self.engine.add_agent(a, now).map_err(err)?;
                    let i = id.0 as usize;
                    if self.agents.len() <= i {
                        self.agents.resize(i + 1, AgentSlot::default());
                    }
                    self.agents[i] = AgentSlot::named(a.id.clone());
                    self.login_added(now, id, &a.id)?;
                    changes.push(format!("agent {} added", a.id));
                }
            }
        }
        let new_a: HashSet<&str> = new.agents.iter().map(|a| a.id.as_str()).collect();
        for a in &old.agents {
            if new_a.contains(a.id.as_str()) {
                continue;
            }
            if let Some(id) = self.engine.agent_id(&a.id) {
                let mut gone = a.clone();
                gone.queues.clear();
                self.engine.update_agent(now, &gone).map_err(err)?;
                if self.engine.agent_state(id).ok() != Some(AgentState::LoggedOut) {
                    self.engine.agent_logout(now, id).map_err(err)?;
                }
                changes.push(format!("agent {} removed", a.id));
            }
        }
        for q in &old.queues {
            if !new_q.contains(q.name.as_str()) {
                self.engine.retire_queue(now, &q.name).map_err(err)?;
                changes.push(format!(
                    "queue {} removed (waiting calls to its fallback)",
                    q.name
                ));
                // Pending callbacks moved on to the fallback queue: placed from there.
                for (call, queue) in self.queue_of.iter_mut() {
                    if *queue != q.name {
                        continue;
                    }
                    if let Some(id) = self.engine.call_queue(*call)
                        && let Some(to) = new
                            .queues
                            .iter()
                            .find(|n| self.engine.queue_id(&n.name) == Some(id))
                    {
                        *queue = to.name.clone();
                    }
                }
            }
        }
        if (
            old.aging_secs,
            &old.tier_priority,
            old.seed,
            old.short_abandon_secs,
            old.resume_window_secs,
        ) != (
            new.aging_secs,
            &new.tier_priority,
            new.seed,
            new.short_abandon_secs,
            new.resume_window_secs,
        ) {
            changes.push("[acd] engine-wide settings take effect at the next restart".into());
        }
        Ok(changes)
    }

    /// A configured agent added at run time: logged in and ready, unless a desk logs in.
    fn login_added(&mut self, now: Millis, id: AgentId, name: &str) -> Result<(), SwitchError> {
        if self.desk_login.contains(name)
            || self.engine.agent_state(id).ok() != Some(AgentState::LoggedOut)
        {
            return Ok(());
        }
        self.engine
            .agent_login(now, id, true)
            .map_err(|e| SwitchError::Acd(e.to_string()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A task over `toml` (agents in `desk` log in from their desks), its queue log and
    /// its event bus.
    fn test_task(
        toml: &str,
        desk: &[&str],
    ) -> (
        AcdTask,
        hotline_cdr::MemoryCdrs,
        broadcast::Receiver<SwitchEvent>,
    ) {
        let cfg = AcdConfig::from_toml(toml).unwrap();
        let (control, _) = mpsc::channel(1);
        let (sink, log) = hotline_cdr::CdrSink::memory();
        let (bus, events) = broadcast::channel(256);
        let desk: HashSet<String> = desk.iter().map(|d| d.to_string()).collect();
        let task = AcdTask::new(&cfg, &desk, bus, control, sink).unwrap();
        (task, log, events)
    }

    /// A device that stops answering takes its agent out (published, logged), a desk cannot
    /// make the agent ready meanwhile, and the device's answer brings the agent back. An
    /// agent not ready for a reason of its own keeps that reason.
    #[test]
    fn unreachable_devices_leave_the_ready_pool_until_they_answer() {
        let cfg = AcdConfig::from_toml(
            "[[queue]]\nname = \"support\"\n[[agent]]\nid = \"bob\"\nqueues = { support = 0 }\n",
        )
        .unwrap();
        let (control, _rx) = mpsc::channel(1);
        let (sink, log) = hotline_cdr::CdrSink::memory();
        let (bus, mut events) = broadcast::channel(64);
        let mut task = AcdTask::new(&cfg, &HashSet::new(), bus, control, sink).unwrap();
        let bob = task.engine.agent_id("bob").unwrap();
        let reach = |task: &mut AcdTask, reachable| {
            task.input(AcdInput::Reachable {
                user: "bob".into(),
                reachable,
            });
            task.decide();
            task.publish_changes();
        };
        reach(&mut task, false);
        assert_eq!(
            task.engine.agent_state(bob).unwrap(),
            AgentState::NotReady(NotReadyReason::Code(UNREACHABLE_CODE))
        );
        let now = task.now();
        let e = task
            .agent_command(now, "bob", AgentCommand::Ready)
            .unwrap_err();
        assert!(matches!(e, SwitchError::InvalidState(_)), "{e:?}");
        reach(&mut task, true);
        assert_eq!(task.engine.agent_state(bob).unwrap(), AgentState::Available);
        // Not ready for lunch, then the phone dies and comes back: still at lunch.
        let now = task.now();
        task.agent_command(
            now,
            "bob",
            AgentCommand::NotReady {
                reason: "lunch".into(),
            },
        )
        .unwrap();
        reach(&mut task, false);
        reach(&mut task, true);
        let lunch = task.engine.agent_state(bob).unwrap();
        assert!(
            matches!(lunch, AgentState::NotReady(NotReadyReason::Code(c)) if c != UNREACHABLE_CODE),
            "{lunch:?}"
        );
        let mut published = Vec::new();
        while let Ok(ev) = events.try_recv() {
            if let SwitchEvent::AgentState(s) = ev {
                published.push(s.status);
            }
        }
        let unreachable = AgentStatus::NotReady {
            reason: "unreachable".into(),
        };
        assert_eq!(
            published.iter().filter(|s| **s == unreachable).count(),
            1,
            "{published:?}"
        );
        let logged: Vec<String> = log
            .events()
            .into_iter()
            .filter(|e| e.event == QueueEventKind::AgentNotReady)
            .map(|e| e.data)
            .collect();
        assert_eq!(
            logged.first().map(String::as_str),
            Some("unreachable"),
            "{logged:?}"
        );
    }

    /// What desks were last told of every agent matches the engine (state and pending
    /// reason), and each change was published once.
    fn assert_desks_match(task: &AcdTask, events: &mut broadcast::Receiver<SwitchEvent>) {
        let mut seen = HashMap::new();
        while let Ok(ev) = events.try_recv() {
            if let SwitchEvent::AgentState(s) = ev
                && let Some(prev) = seen.insert(s.agent.clone(), s.clone())
            {
                assert!(prev.version < s.version, "{prev:?} then {s:?}");
            }
        }
        for (i, slot) in task.agents.iter().enumerate() {
            let state = task.engine.agent_state(AgentId(i as u32)).unwrap();
            let published = slot.published.as_ref().expect("every agent published");
            let want = task.status(state);
            match (&want, &published.status) {
                (AgentStatus::WrapUp { .. }, AgentStatus::WrapUp { .. }) => {}
                _ => assert_eq!(published.status, want, "{}", slot.name),
            }
            if let Some(ev) = seen.get(&slot.name) {
                assert_eq!(ev, published, "the last event is what the desk shows");
            }
        }
    }

    /// What desks were last told of agent `a`.
    fn shown(task: &AcdTask, a: AgentId) -> AgentStatus {
        let slot = &task.agents[a.0 as usize];
        slot.published.as_ref().expect("published").status.clone()
    }

    /// Runs the engine's next timer as `run` does, on the paused tokio clock.
    async fn fire(task: &mut AcdTask, events: &mut broadcast::Receiver<SwitchEvent>) {
        let at = task.engine.poll_timeout().expect("a timer");
        let now = task.now();
        tokio::time::advance(Duration::from_millis(at.0.saturating_sub(now.0))).await;
        let now = task.now();
        task.engine.handle_timeout(now);
        task.decide();
        task.publish_changes();
        assert_desks_match(task, events);
    }

    /// Engine-driven changes reach the desks without a desk command: a ring timeout makes
    /// the agent not-ready (missed offer), the wrap-up timer makes the agent ready, a
    /// pending not-ready set during the call shows at once and applies after it, and a
    /// reload's added and removed agents are published (the task publishes the engine's
    /// changed list, not a scan).
    #[tokio::test(start_paused = true)]
    async fn engine_driven_changes_are_published() {
        let (mut task, _log, mut events) = test_task(
            "[[queue]]\nname = \"support\"\nring_timeout_secs = 5\nwrapup_secs = 10\n\
             [[agent]]\nid = \"bob\"\nqueues = { support = 0 }\n\
             [[agent]]\nid = \"carol\"\nqueues = { support = 0 }\n",
            &["carol"],
        );
        assert_desks_match(&task, &mut events);
        let step = |task: &mut AcdTask| {
            task.decide();
            task.publish_changes();
        };
        let (inbox, _out) = mpsc::channel(16);
        task.input(AcdInput::Arrived {
            call: CallId(1),
            queue: "support".into(),
            inbox,
            sip_call_id: "c1".into(),
            tier: None,
        });
        step(&mut task);
        let bob = task.engine.agent_id("bob").unwrap();
        assert_eq!(
            task.engine.agent_state(bob).unwrap(),
            AgentState::Reserved(CallId(1))
        );
        assert_desks_match(&task, &mut events);
        fire(&mut task, &mut events).await;
        assert_eq!(
            shown(&task, bob),
            AgentStatus::NotReady {
                reason: "missed_offer".into()
            }
        );
        // carol logs in from her desk, takes the call, sets a pending not-ready.
        let now = task.now();
        task.agent_command(now, "carol", AgentCommand::Ready)
            .unwrap();
        let carol = task.engine.agent_id("carol").unwrap();
        task.input(AcdInput::Answered {
            call: CallId(1),
            agent: carol,
        });
        step(&mut task);
        assert_desks_match(&task, &mut events);
        let now = task.now();
        let ev = task
            .agent_command(
                now,
                "carol",
                AgentCommand::NotReadyAfterCall {
                    reason: "lunch".into(),
                },
            )
            .unwrap();
        assert_eq!(ev.pending_not_ready.as_deref(), Some("lunch"));
        assert_desks_match(&task, &mut events);
        let now = task.now();
        task.agent_command(now, "bob", AgentCommand::Ready).unwrap();
        task.input(AcdInput::Ended { call: CallId(1) });
        step(&mut task);
        assert_desks_match(&task, &mut events);
        // bob: ready again (desk); carol: wrap-up, then lunch when its timer ends.
        assert!(matches!(shown(&task, carol), AgentStatus::WrapUp { .. }));
        fire(&mut task, &mut events).await;
        assert_eq!(
            shown(&task, carol),
            AgentStatus::NotReady {
                reason: "lunch".into()
            }
        );
        // A reload adds dave (logged in, ready) and removes bob (logged out).
        let new = AcdConfig::from_toml(
            "[[queue]]\nname = \"support\"\nring_timeout_secs = 5\nwrapup_secs = 10\n\
             [[agent]]\nid = \"carol\"\nqueues = { support = 0 }\n\
             [[agent]]\nid = \"dave\"\nqueues = { support = 0 }\n",
        )
        .unwrap();
        let now = task.now();
        task.reconfigure(now, &new).unwrap();
        step(&mut task);
        assert_desks_match(&task, &mut events);
        let dave = task.engine.agent_id("dave").unwrap();
        assert_eq!(shown(&task, dave), AgentStatus::Ready);
        assert_eq!(shown(&task, bob), AgentStatus::LoggedOut);
    }

    /// A not-ready row of the queue log names its reason as desks see it (a desk's own
    /// reason, `login` for a desk login that is not ready yet), not the engine's code.
    #[test]
    fn queue_log_names_not_ready_reasons() {
        let (mut task, log, _) = test_task(
            "[[queue]]\nname = \"support\"\n[[agent]]\nid = \"bob\"\nqueues = { support = 0 }\n",
            &["bob"],
        );
        let bob = task.engine.agent_id("bob").unwrap();
        let now = task.now();
        // A login not ready yet (code 0), as `agent_login(.., false)` leaves it.
        task.engine.agent_login(now, bob, false).unwrap();
        task.publish_changes();
        for reason in ["lunch", "training", "lunch"] {
            let now = task.now();
            task.agent_command(
                now,
                "bob",
                AgentCommand::NotReady {
                    reason: reason.into(),
                },
            )
            .unwrap();
        }
        let rows: Vec<String> = log
            .events()
            .into_iter()
            .filter(|e| e.event == QueueEventKind::AgentNotReady)
            .map(|e| e.data)
            .collect();
        assert_eq!(rows, ["login", "lunch", "training", "lunch"]);
    }

    /// Agents' state changes reach the queue log once per change of class: logged in and
    /// ready at start, not-ready while busy on a non-queue call, ready again after it.
    #[test]
    fn agent_state_changes_go_to_the_queue_log() {
        let cfg = AcdConfig::from_toml(
            "[[queue]]\nname = \"support\"\n[[agent]]\nid = \"bob\"\nqueues = { support = 0 }\n",
        )
        .unwrap();
        let (control, _rx) = mpsc::channel(1);
        let (sink, log) = hotline_cdr::CdrSink::memory();
        let (bus, _) = broadcast::channel(16);
        let mut task = AcdTask::new(&cfg, &HashSet::new(), bus, control, sink).unwrap();
        task.decide();
        for busy in [true, true, false] {
            task.input(AcdInput::Busy {
                user: "bob".into(),
                busy,
            });
            task.decide();
        }
        let got: Vec<(QueueEventKind, String)> = log
            .events()
            .into_iter()
            .inspect(|e| assert_eq!(e.agent.as_deref(), Some("bob")))
            .map(|e| (e.event, e.data))
            .collect();
        use QueueEventKind::*;
        assert_eq!(
            got,
            vec![
                (AgentLogin, String::new()),
                (AgentReady, String::new()),
                (AgentNotReady, "busy".into()),
                (AgentReady, String::new()),
            ]
        );
    }

    /// The end of wrap-up is logged with its call and length (the reports' AHT uses it),
    /// here ended by the disposition.
    #[test]
    fn wrap_up_end_is_logged_for_its_call() {
        let cfg = AcdConfig::from_toml(
            "[[queue]]\nname = \"support\"\nwrapup_secs = 60\n\
             [[agent]]\nid = \"bob\"\nqueues = { support = 0 }\n",
        )
        .unwrap();
        let (control, _rx) = mpsc::channel(1);
        let (sink, log) = hotline_cdr::CdrSink::memory();
        let (bus, _) = broadcast::channel(64);
        let mut task = AcdTask::new(&cfg, &HashSet::new(), bus, control, sink).unwrap();
        task.decide();
        let (inbox, mut rx) = mpsc::channel(16);
        let call = CallId(1);
        task.input(AcdInput::Arrived {
            call,
            queue: "support".into(),
            inbox,
            sip_call_id: "sip-1".into(),
            tier: None,
        });
        task.decide();
        task.publish_changes();
        let agent = std::iter::from_fn(|| rx.try_recv().ok())
            .find_map(|o| match o {
                AcdOutput::Offer { agent, .. } => Some(agent),
                _ => None,
            })
            .expect("offered to bob");
        for m in [
            AcdInput::Answered { call, agent },
            AcdInput::Ended { call },
            AcdInput::WrapupDone {
                agent: "bob".into(),
            },
        ] {
            task.input(m);
            task.decide();
            task.publish_changes();
        }
        let ends: Vec<QueueEvent> = log
            .events()
            .into_iter()
            .filter(|e| e.event == QueueEventKind::WrapupEnd)
            .collect();
        assert_eq!(ends.len(), 1, "{:?}", log.events());
        assert_eq!(ends[0].call_id, "sip-1");
        assert_eq!(ends[0].agent.as_deref(), Some("bob"));
        assert!(
            ends[0].data.parse::<i64>().is_ok_and(|ms| ms >= 0),
            "{ends:?}"
        );
    }

    /// A live reconfigure: an unchanged config changes nothing; an added agent is
    /// logged in (a desk agent is not); a removed agent on a call keeps the call and is
    /// logged out after it; a removed queue is reported; a bad config changes nothing.
    #[test]
    fn reconfigure_adds_removes_and_refuses_atomically() {
        let cfg = AcdConfig::from_toml(
            "[[queue]]\nname = \"support\"\nwrapup_secs = 0\n[[queue]]\nname = \"old\"\n\
             [[agent]]\nid = \"bob\"\nqueues = { support = 0 }\n",
        )
        .unwrap();
        let (control, _rx) = mpsc::channel(1);
        let (sink, _log) = hotline_cdr::CdrSink::memory();
        let (bus, _) = broadcast::channel(64);
        let desk: HashSet<String> = ["dave".to_string()].into();
        let mut task = AcdTask::new(&cfg, &desk, bus, control, sink).unwrap();
        let (tx, mut out) = mpsc::channel(16);
        task.input(AcdInput::Arrived {
            call: CallId(1),
            queue: "support".into(),
            inbox: tx,
            sip_call_id: "c1".into(),
            tier: None,
        });
        task.decide();
        let bob = task.engine.agent_id("bob").unwrap();
        task.input(AcdInput::Answered {
            call: CallId(1),
            agent: bob,
        });
        task.decide();
        assert!(matches!(out.try_recv(), Ok(AcdOutput::Estimate { .. })));
        assert!(matches!(out.try_recv(), Ok(AcdOutput::Offer { .. })));
        assert_eq!(
            task.reconfigure(Millis(1), &cfg).unwrap(),
            Vec::<String>::new()
        );
        let new = AcdConfig::from_toml(
            "[[queue]]\nname = \"support\"\nwrapup_secs = 0\n\
             [[agent]]\nid = \"carol\"\nqueues = { support = 0 }\n\
             [[agent]]\nid = \"dave\"\nqueues = { support = 0 }\n",
        )
        .unwrap();
        let changes = task.reconfigure(Millis(2), &new).unwrap();
        assert_eq!(
            changes,
            [
                "agent carol added",
                "agent dave added",
                "agent bob removed",
                "queue old removed (waiting calls to its fallback)"
            ]
        );
        let state =
            |t: &AcdTask, a: &str| t.engine.agent_state(t.engine.agent_id(a).unwrap()).unwrap();
        assert_eq!(state(&task, "carol"), AgentState::Available);
        assert_eq!(
            state(&task, "dave"),
            AgentState::LoggedOut,
            "desk agents log in themselves"
        );
        assert_eq!(
            state(&task, "bob"),
            AgentState::OnCall(CallId(1)),
            "the call goes on"
        );
        task.publish_changes();
        assert_eq!(
            task.agents[task.engine.agent_id("carol").unwrap().0 as usize].name,
            "carol"
        );
        task.input(AcdInput::Ended { call: CallId(1) });
        task.decide();
        assert_eq!(
            state(&task, "bob"),
            AgentState::LoggedOut,
            "logged out after the call"
        );
        // A fallback to a queue that does not exist: refused, nothing changes.
        let bad = AcdConfig {
            queues: vec![{
                let mut q = hotline_acd::QueueConfig::new("support");
                q.fallback = hotline_acd::Fallback::Queue("nowhere".into());
                q
            }],
            ..new.clone()
        };
        assert!(task.reconfigure(Millis(3), &bad).is_err());
        assert_eq!(task.current, new);
    }

    /// A callback request waiting in a queue removed live is placed from the fallback
    /// queue it moved to: the job names that queue (for the CDR and the desk).
    #[test]
    fn callback_of_a_removed_queue_is_placed_from_its_fallback_queue() {
        let cfg = AcdConfig::from_toml(
            "[[queue]]\nname = \"main\"\nwrapup_secs = 0\n\
             [[queue]]\nname = \"old\"\nfallback = { queue = \"main\" }\n\
             [[agent]]\nid = \"bob\"\nqueues = { main = 0, old = 0 }\n",
        )
        .unwrap();
        let (control, mut placed) = mpsc::channel(4);
        let (sink, _log) = hotline_cdr::CdrSink::memory();
        let (bus, _) = broadcast::channel(64);
        let mut task = AcdTask::new(&cfg, &HashSet::new(), bus, control, sink).unwrap();
        let bob = task.engine.agent_id("bob").unwrap();
        // bob talks on call 1 (main); call 2 waits in old and leaves a callback request.
        let (tx1, _out1) = mpsc::channel(16);
        task.input(AcdInput::Arrived {
            call: CallId(1),
            queue: "main".into(),
            inbox: tx1,
            sip_call_id: "c1".into(),
            tier: None,
        });
        task.decide();
        task.input(AcdInput::Answered {
            call: CallId(1),
            agent: bob,
        });
        task.decide();
        let (tx2, _out2) = mpsc::channel(16);
        task.input(AcdInput::Arrived {
            call: CallId(2),
            queue: "old".into(),
            inbox: tx2,
            sip_call_id: "c2".into(),
            tier: None,
        });
        task.decide();
        let (done, took) = tokio::sync::oneshot::channel();
        task.input(AcdInput::RequestCallback {
            call: CallId(2),
            number: "+4930123".into(),
            done,
        });
        task.decide();
        assert_eq!(took.blocking_recv(), Ok(true));
        let new = AcdConfig::from_toml(
            "[[queue]]\nname = \"main\"\nwrapup_secs = 0\n\
             [[agent]]\nid = \"bob\"\nqueues = { main = 0 }\n",
        )
        .unwrap();
        task.reconfigure(Millis(2), &new).unwrap();
        task.decide();
        assert!(placed.try_recv().is_err(), "bob is still on call 1");
        task.input(AcdInput::Ended { call: CallId(1) });
        task.decide();
        match placed.try_recv() {
            Ok(Control::PlaceCallback(job)) => {
                assert_eq!(
                    (
                        job.call,
                        job.number.as_str(),
                        job.queue.as_str(),
                        job.user.as_str()
                    ),
                    (CallId(2), "+4930123", "main", "bob")
                );
            }
            other => panic!("no callback placed: {:?}", other.is_ok()),
        }
    }
}
