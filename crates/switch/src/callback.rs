//! Callbacks: a caller who chose to be called back kept their place in the ACD; when the
//! ACD reserves an agent for the request (`PlaceCallback`), this task calls the agent
//! first (they hear ringback while the customer is dialled), then the customer — their
//! registered contact, or the static route (trunk) for other numbers — and bridges them.
//! A desk's click-to-dial is placed the same way; once the customer answers, the call is
//! served like an inbound one (`Call::serve_dial`), with the desk's call control.

use std::time::{Duration, Instant};

use hotline_acd::{AgentId, CallId};
use hotline_media::{MediaLeg, Player, Prompt, Side, session::spawn_session_with};
use hotline_sip::msg::{Method, Request};
use hotline_sip::{AppEvent, AppResponse, Flow, ServerTxId};
use tokio::sync::mpsc;

use crate::CallInput;
use crate::acd::AcdInput;
use crate::call::{AgentLeg, Call, CallEnd, EndReason, Trace, event_call_id, to_tag};

/// What the ACD asks for (a callback) or a desk (click-to-dial): call `user` (agent
/// `agent`), then `number`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct CallbackJob {
    /// The callback request's id in the ACD (the original call's).
    pub call: CallId,
    /// The ACD's agent reserved for a callback (none for a desk's dial).
    pub agent: Option<AgentId>,
    /// Click-to-dial from the agent's desk, for this customer if known: no ACD request;
    /// the agent is marked busy meanwhile, and the call lands in the customer's trail.
    pub dial: Option<Option<i64>>,
    pub user: String,
    pub number: String,
    pub queue: String,
}

impl CallbackJob {
    /// The CDR's route: `callback:<queue>` or `dial` (click-to-dial from a desk).
    fn route(&self) -> String {
        match self.dial {
            Some(_) => "dial".into(),
            None => format!("callback:{}", self.queue),
        }
    }
}

/// How placing the legs went (once per call: the size does not matter).
#[allow(clippy::large_enum_variant)]
enum Legs {
    /// The call is over (a callback that ran its course, or a failure).
    Done(CallEnd),
    /// The customer answered (a click-to-dial or a queued callback): served as a call.
    Connected(Connected),
}

/// The answered legs of a click-to-dial or a callback.
struct Connected {
    agent: AgentLeg,
    agent_media: MediaLeg,
    customer: AgentLeg,
    customer_media: MediaLeg,
    host: String,
}

/// How long each leg may ring.
const RING: Duration = Duration::from_secs(30);

impl Call {
    /// Places the callback and writes its CDR (direction `outbound`, route
    /// `callback:<queue>`).
    pub(crate) async fn run_callback(mut self, job: CallbackJob) -> CallEnd {
        let dial = job.dial.is_some();
        let mut t = Trace {
            caller: job.number.clone(),
            dialed: job.number.clone(),
            sip_call_id: self.call_id.clone(),
            direction: "outbound",
            route: vec![job.route()],
            queue: (!dial).then(|| job.queue.clone()),
            arrived_at: self.now_ms(),
            ..Trace::default()
        };
        if !dial {
            t.queued_at = Some(t.arrived_at);
        }
        t.offered_at = Some(t.arrived_at);
        if let Some(customer) = job.dial {
            self.desk.dialled(&job.user, customer).await;
            self.to_acd(AcdInput::Busy {
                user: job.user.clone(),
                busy: true,
            })
            .await;
        }
        // Boxed, as is the dial served below: debug builds keep awaited futures on the
        // poll stack, and a served call nested in these frames overflowed a worker's.
        let mut end = match crate::call::boxed(|| self.callback_legs(&job, &mut t)).await {
            Legs::Done(end) => end,
            Legs::Connected(c) => {
                // A connected dial or callback is served as a call (`serve_dial`): its
                // end releases the agent and writes the CDR and the trail entry.
                let trace = std::mem::take(&mut t);
                let number = job.number.clone();
                return crate::call::boxed(|| {
                    self.serve_dial(
                        c.agent,
                        c.agent_media,
                        c.customer,
                        c.customer_media,
                        trace,
                        &number,
                        c.host,
                        !dial,
                    )
                })
                .await;
            }
        };
        t.agent = end.agent.clone();
        end.recording = t.recording.clone();
        if dial {
            self.to_acd(AcdInput::Busy {
                user: job.user.clone(),
                busy: false,
            })
            .await;
        }
        self.record(&t, end.reason, end.status).await;
        if dial {
            self.desk.ended(end.reason, t.recording.as_deref()).await;
        }
        end
    }

    /// Places the legs: a callback to its end; a click-to-dial until it is connected.
    async fn callback_legs(&mut self, job: &CallbackJob, t: &mut Trace) -> Legs {
        tracing::info!(call_id = %self.call_id, agent = %job.user, number = %job.number, "placing a callback");
        let report = |this: &Call, reason: EndReason, agent: &Option<String>| {
            let mut e = this.end(200, reason, None);
            e.route = job.route();
            e.queue = job.dial.is_none().then(|| job.queue.clone());
            e.agent = agent.clone();
            e
        };
        // 1. The agent; for a queued callback the desk gets the customer's pop first, as
        // for an offered call.
        if job.dial.is_none() {
            self.desk.arrived(&job.queue).await;
            self.desk.offered(&job.user).await;
        }
        let agent_leg = match self.sip.contact_for(&job.user).await {
            Ok(Some((uri, flow))) => {
                let host = self.host_for(flow);
                self.call_agent(&job.number, &host, &job.user, &uri, flow)
                    .await
            }
            _ => None,
        };
        let Some(mut agent) = agent_leg else {
            self.callback_result(job, false).await;
            return Legs::Done(report(self, EndReason::Failed, &None));
        };
        agent.offer_of = job.agent;
        let agent_media = match self.await_answer(&mut agent, None).await {
            Ok(m) => m,
            Err(r) => {
                let _ = self.sip.cancel(agent.tx).await;
                self.callback_result(job, false).await;
                return Legs::Done(report(self, r, &None));
            }
        };
        let who = Some(job.user.clone());
        // 2. The agent hears ringback while the customer is called.
        let (media_tx, _media_rx) = mpsc::channel(64);
        let media = spawn_session_with(agent_media, media_tx, &self.cfg.session_options());
        let ringback = Prompt::from_samples(hotline_media::prompts::ringback());
        let _ = media
            .play(Side::A, Player::new(vec![ringback], true, Instant::now()))
            .await;
        // 3. The customer.
        let customer = match self.sip.contact_for(&job.number).await {
            Ok(Some((uri, flow))) => Some((uri, flow)),
            _ => match self.cfg.trunk {
                Some(t) => match self.sip.flow_for(t).await {
                    Ok(Some(flow)) => Some((format!("sip:{}@{}", job.number, t.addr), flow)),
                    _ => None,
                },
                None => None,
            },
        };
        let cust_leg = match customer {
            Some((uri, flow)) if job.dial.is_some() => {
                let host = self.host_for(flow);
                self.call_customer(&job.user, &host, &job.number, &uri, flow)
                    .await
            }
            Some((uri, flow)) => {
                let host = self.host_for(flow);
                self.call_agent(&job.queue, &host, &job.number, &uri, flow)
                    .await
            }
            None => None,
        };
        let Some(mut cust) = cust_leg else {
            tracing::info!(call_id = %self.call_id, number = %job.number, "callback number unreachable");
            self.callback_result(job, false).await;
            self.bye_agent(&mut agent).await;
            drop(media.stop().await);
            return Legs::Done(report(self, EndReason::Failed, &who));
        };
        let cust_media = match self.await_answer(&mut cust, Some(&mut agent)).await {
            Ok(m) => m,
            Err(r) => {
                self.callback_result(job, false).await;
                if r == EndReason::AgentHangup {
                    let _ = self.sip.cancel(cust.tx).await;
                } else {
                    let _ = self.sip.cancel(cust.tx).await;
                    self.bye_agent(&mut agent).await;
                }
                drop(media.stop().await);
                return Legs::Done(report(self, r, &who));
            }
        };
        // 4. Connected: the engine counts the callback as answered by the agent.
        self.callback_result(job, true).await;
        t.answered_at = Some(self.now_ms());
        // From here a call like an inbound one, with the desk's call control (hold,
        // transfers, conference, ...), in a new media session.
        if job.dial.is_some() {
            self.desk.connected();
        } else {
            self.desk.answered();
        }
        let Ok((agent_media, _)) = media.stop().await else {
            self.bye_agent(&mut cust).await;
            self.bye_agent(&mut agent).await;
            return Legs::Done(report(self, EndReason::Failed, &who));
        };
        let host = self.host_for(agent.flow);
        Legs::Connected(Connected {
            agent,
            agent_media,
            customer: cust,
            customer_media: cust_media,
            host,
        })
    }

    async fn callback_result(&self, job: &CallbackJob, connected: bool) {
        if job.dial.is_none() {
            let call = job.call;
            self.to_acd(AcdInput::CallbackResult { call, connected })
                .await;
        }
    }

    /// Our address as the peer on `flow` sees it (the media address when we listen on
    /// an unspecified one).
    fn host_for(&self, flow: Flow) -> String {
        let ip = if flow.local.ip().is_unspecified() {
            self.cfg.media_ip
        } else {
            flow.local.ip()
        };
        std::net::SocketAddr::new(ip, flow.local.port()).to_string()
    }

    /// Waits (bounded) for the answer to `leg`'s INVITE. A BYE in the answered `other`
    /// leg meanwhile ends the wait with `AgentHangup`.
    async fn await_answer(
        &mut self,
        leg: &mut AgentLeg,
        mut other: Option<&mut AgentLeg>,
    ) -> Result<MediaLeg, EndReason> {
        let deadline = tokio::time::Instant::now() + RING;
        loop {
            let ev = tokio::select! {
                input = self.inbox.recv() => match input {
                    Some(CallInput::Sip(ev)) => ev,
                    Some(CallInput::GiveAgent(_)) => continue,
                    // The desk gives up on its dial while a phone rings.
                    Some(CallInput::Command(crate::CallCommand::Hangup, reply)) => {
                        let _ = reply.send(Ok(()));
                        return Err(EndReason::DeskHangup);
                    }
                    Some(CallInput::Command(cmd, reply)) => {
                        let _ = reply.send(Err(crate::SwitchError::NotSupported(cmd.name())));
                        continue;
                    }
                    None => return Err(EndReason::Shutdown),
                    Some(CallInput::Drain) => return Err(EndReason::Drained),
                },
                _ = tokio::time::sleep_until(deadline) => return Err(EndReason::Failed),
            };
            let cid = event_call_id(&ev).map(str::to_string);
            if let Some(o) = other.as_deref_mut()
                && cid.as_deref() == Some(o.call_id.as_str())
            {
                if self.uac_event(o, ev).await {
                    return Err(EndReason::AgentHangup);
                }
                continue;
            }
            match ev {
                AppEvent::Response { response, .. } => {
                    let status = u16::from(response.status_code.clone());
                    if (200..300).contains(&status) {
                        match self.ack_answer(leg, &response).await {
                            Some(Some(m)) => return Ok(m),
                            Some(None) => {
                                self.bye_agent(leg).await;
                                return Err(EndReason::Failed);
                            }
                            None => {}
                        }
                    } else if status >= 300 {
                        leg.failed = true;
                        return Err(EndReason::Failed);
                    }
                }
                AppEvent::Timeout { .. } => return Err(EndReason::Failed),
                AppEvent::Request { tx, .. } => {
                    let _ = self
                        .sip
                        .respond(tx, AppResponse::new(481, "Call/Transaction Does Not Exist"))
                        .await;
                }
                _ => {}
            }
        }
    }

    /// An event in an answered leg we called; true when it is the leg's BYE.
    pub(crate) async fn uac_event(&self, leg: &mut AgentLeg, ev: AppEvent) -> bool {
        match ev {
            // A retransmitted 2xx: ACK it again.
            AppEvent::Response { response, .. }
                if (200..300).contains(&u16::from(response.status_code.clone())) =>
            {
                let _ = self.ack_answer(leg, &response).await;
                false
            }
            AppEvent::Request { tx, request, .. } => self.uac_request(leg, tx, &request).await,
            _ => false,
        }
    }

    async fn uac_request(&self, leg: &AgentLeg, tx: ServerTxId, request: &Request) -> bool {
        let ours = hotline_sip::msg::tag(&leg.from);
        let resp = if to_tag(request) != ours {
            AppResponse::new(481, "Call/Transaction Does Not Exist")
        } else {
            match request.method {
                Method::Bye | Method::Options | Method::Info => AppResponse::new(200, "OK"),
                _ => AppResponse::new(488, "Not Acceptable Here"),
            }
        };
        let bye = resp.status == 200 && request.method == Method::Bye;
        let _ = self.sip.respond(tx, resp).await;
        bye
    }
}
