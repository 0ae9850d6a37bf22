//! The ACD task: the only owner of the `hotline_acd::Engine`. Call tasks feed it through a
//! bounded channel; its decisions go back to the call tasks they name.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use hotline_acd::{
    AcdConfig, AgentId, AgentState, CallId, Decision, Engine, Fallback, Millis, NewCall,
    NotReadyReason,
};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::callback::CallbackJob;
use crate::{Control, SwitchError};

/// What a call task tells the ACD.
#[derive(Debug)]
pub(crate) enum AcdInput {
    /// A caller entered `queue`; decisions for the call go to `inbox`.
    Arrived {
        call: CallId,
        queue: String,
        inbox: mpsc::Sender<AcdOutput>,
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
    /// The state of the agent with this id (for status displays and tests).
    State {
        user: String,
        reply: tokio::sync::oneshot::Sender<Option<AgentState>>,
    },
}

/// The not-ready reason code that marks "busy on a non-queue call".
pub(crate) const BUSY_CODE: u16 = 9001;

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

pub(crate) struct AcdTask {
    engine: Engine,
    start: Instant,
    calls: HashMap<CallId, mpsc::Sender<AcdOutput>>,
    names: Vec<String>,
    /// Agents on a non-queue call.
    busy: HashSet<AgentId>,
    /// Queue of each call in the ACD (for callbacks placed later).
    queue_of: HashMap<CallId, String>,
    /// The dispatcher, which starts callback calls.
    control: mpsc::Sender<Control>,
}

impl AcdTask {
    /// The engine with every configured agent logged in and ready: a stand-in until agents
    /// log in from their desktop (CTI).
    pub(crate) fn new(
        cfg: &AcdConfig,
        control: mpsc::Sender<Control>,
    ) -> Result<Self, SwitchError> {
        let mut engine =
            Engine::new(cfg, Millis(0)).map_err(|e| SwitchError::Acd(e.to_string()))?;
        let mut names = Vec::new();
        for a in &cfg.agents {
            if let Some(id) = engine.agent_id(&a.id) {
                engine
                    .agent_login(Millis(0), id, true)
                    .map_err(|e| SwitchError::Acd(e.to_string()))?;
                let i = id.0 as usize;
                if names.len() <= i {
                    names.resize(i + 1, String::new());
                }
                names[i] = a.id.clone();
            }
        }
        Ok(AcdTask {
            engine,
            start: Instant::now(),
            calls: HashMap::new(),
            names,
            busy: HashSet::new(),
            queue_of: HashMap::new(),
            control,
        })
    }

    fn now(&self) -> Millis {
        Millis(self.start.elapsed().as_millis() as u64)
    }

    pub(crate) async fn run(mut self, mut input: mpsc::Receiver<AcdInput>) {
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
            }
        }
    }

    fn input(&mut self, m: AcdInput) {
        let now = self.now();
        let r = match m {
            AcdInput::Arrived { call, queue, inbox } => {
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
                self.queue_of.insert(call, queue);
                self.engine.call_arrived(now, NewCall::new(call, q))
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
                if busy {
                    self.busy.insert(agent);
                    self.hold_if_busy(now, agent)
                } else {
                    self.busy.remove(&agent);
                    match self.engine.agent_state(agent) {
                        Ok(AgentState::NotReady(NotReadyReason::Code(BUSY_CODE))) => {
                            self.engine.agent_ready(now, agent)
                        }
                        _ => Ok(()),
                    }
                }
            }
        };
        if let Err(e) = r {
            // Races (an offer answered after the caller left) are expected, not fatal.
            tracing::debug!(error = %e, "ACD refused an event");
        }
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

    fn decide(&mut self) {
        while let Some(d) = self.engine.poll_decision() {
            let (call, out) = match d {
                Decision::Offer { call, agent, .. } => {
                    let user = self
                        .names
                        .get(agent.0 as usize)
                        .cloned()
                        .unwrap_or_default();
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
                        agent,
                        user: self
                            .names
                            .get(agent.0 as usize)
                            .cloned()
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
