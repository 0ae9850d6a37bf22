//! One call: its task owns the caller's dialog, the agent leg (if any) and the media
//! session.

use std::sync::Arc;
use std::time::Instant;

use hotline_media::ports::BoundPorts;
use hotline_media::sdp::{
    Direction, LocalMedia, SessionDescription, answer_offer, build_offer, process_answer,
};
use hotline_media::session::SessionStats;
use hotline_media::{
    LegConfig, MediaError, MediaEvent, MediaLeg, Player, PortAllocator, SessionHandle, Side,
    spawn_session,
};
use hotline_sip::msg::{self, Header, Limits, Method, Request, Response, SipMessage};
use hotline_sip::server::AppHandle;
use hotline_sip::{AppEvent, AppResponse, ClientTxId, Flow, ServerTxId};
use tokio::sync::{mpsc, oneshot};

use hotline_acd::{AgentId, CallId};

use crate::acd::{AcdInput, AcdOutput};
use crate::{CallInput, Control, Route, SwitchConfig};

/// How a call ended: for tests, CDRs (later) and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    pub call_id: String,
    /// The final status of the caller's INVITE (200 when answered).
    pub status: u16,
    pub reason: EndReason,
    /// Whether an agent leg answered and was bridged.
    pub bridged: bool,
    /// Media counters at the end (none when media never started).
    pub media: Option<SessionStats>,
}

/// Why a call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndReason {
    /// Refused before answer (no route, bad SDP, no ports).
    Rejected,
    /// CANCEL before answer.
    Cancelled,
    /// BYE from the caller.
    CallerHangup,
    /// BYE from the agent.
    AgentHangup,
    /// Our 2xx was never acknowledged.
    NoAck,
    /// The queue's fallback hung up (e.g. `max_wait_secs` passed): Hotline sent BYE.
    Fallback,
    /// The switch went away.
    Shutdown,
    /// The agent's desk hung up (CTI): Hotline sent BYE to both sides.
    DeskHangup,
}

pub(crate) struct Call {
    pub cfg: Arc<SwitchConfig>,
    pub sip: AppHandle,
    pub ports: Arc<PortAllocator>,
    pub call_id: String,
    pub inbox: mpsc::Receiver<CallInput>,
    pub control: mpsc::Sender<Control>,
    pub acd: Option<mpsc::Sender<AcdInput>>,
    pub acd_id: CallId,
    pub desk: crate::events::CallDesk,
}

/// A fresh token for tags and Call-IDs.
fn token() -> String {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per process and varied per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or(0),
    );
    format!("{:016x}", h.finish())
}

/// Parses a request we wrote (the parser wants a Via; the core adds its own).
pub(crate) fn own_request(text: &str) -> Option<Request> {
    let text = text.replacen(
        "\r\n",
        "\r\nVia: SIP/2.0/UDP 0.0.0.0;branch=z9hG4bK-tmp\r\n",
        1,
    );
    match msg::parse(text.as_bytes(), &Limits::default(), false) {
        Ok(SipMessage::Request(mut r)) => {
            msg::pop_top_via(&mut r.headers);
            Some(r)
        }
        _ => None,
    }
}

/// The caller's dialog, as a UAS: what we need to send BYE to the caller.
struct CallerDialog {
    flow: Flow,
    /// The caller's Contact (remote target).
    target: String,
    /// Our To (with our tag) becomes From in our requests.
    ours: String,
    /// The caller's From becomes To.
    theirs: String,
    cseq: u32,
}

/// The agent leg, as a UAC.
struct AgentLeg {
    call_id: String,
    flow: Flow,
    tx: ClientTxId,
    from: String,
    /// To of the request; with the agent's tag once answered.
    to: String,
    /// The agent's Contact from the 2xx.
    target: Option<String>,
    offer: SessionDescription,
    ports: Option<BoundPorts>,
    answered: bool,
    /// Refused, timed out or unusable: the offer is over.
    failed: bool,
    /// The ACD's agent this leg offers the call to (none for an extension).
    offer_of: Option<AgentId>,
}

impl Call {
    fn end(&self, status: u16, reason: EndReason, media: Option<SessionStats>) -> CallEnd {
        CallEnd {
            call_id: self.call_id.clone(),
            status,
            reason,
            bridged: false,
            media,
        }
    }

    async fn reject(&self, tx: ServerTxId, status: u16, reason: &str) -> CallEnd {
        tracing::info!(call_id = %self.call_id, status, reason, "call rejected");
        let _ = self.sip.respond(tx, AppResponse::new(status, reason)).await;
        self.end(status, EndReason::Rejected, None)
    }

    pub(crate) async fn run(
        mut self,
        tx: ServerTxId,
        invite: Request,
        flow: Flow,
        local_host: String,
    ) -> CallEnd {
        let number = invite.uri.user().unwrap_or_default().to_string();
        let Some(route) = self.cfg.routes.get(&number).cloned() else {
            return self.reject(tx, 404, "Not Found").await;
        };
        let offer = match std::str::from_utf8(&invite.body)
            .map_err(|_| MediaError::SdpMalformed {
                line: 0,
                reason: "SDP is not UTF-8",
            })
            .and_then(SessionDescription::parse)
        {
            Ok(o) => o,
            Err(e) => return self.reject(tx, e.sip_status(), &e.to_string()).await,
        };
        // An extension must be reachable before we answer the caller.
        let agent_contact = match &route {
            Route::Extension(user) => match self.sip.contact_for(user).await {
                Ok(Some(c)) => Some((user.clone(), c)),
                _ => return self.reject(tx, 480, "Temporarily Unavailable").await,
            },
            Route::Queue(_) => None,
        };
        let bound = match self.ports.bind(self.cfg.media_ip).await {
            Ok(b) => b,
            Err(e) => return self.reject(tx, 503, &e.to_string()).await,
        };
        let local = LocalMedia::new(self.cfg.media_ip, bound.pair.rtp());
        let (answer, negotiated) = match answer_offer(&offer, &local, Direction::SendRecv) {
            Ok(a) => a,
            Err(e) => return self.reject(tx, e.sip_status(), &e.to_string()).await,
        };
        let leg = MediaLeg::new(bound, LegConfig::from(&negotiated), self.cfg.leg_timing);
        let (media_tx, mut media_rx) = mpsc::channel(64);
        let media = spawn_session(leg, media_tx);
        let music = Player::new(vec![self.cfg.music.clone()], true, Instant::now());
        if media.play(Side::A, music).await.is_err() {
            return self.reject(tx, 500, "Media session failed").await;
        }
        let tag = format!("hl{}", token());
        let contact = format!("<sip:{number}@{local_host}{}>", transport_param(flow));
        let ok = AppResponse::new(200, "OK")
            .tag(&tag)
            .header(format!("Contact: {contact}"))
            .body("application/sdp", answer.to_string());
        if self.sip.respond(tx, ok).await.is_err() {
            drop(media.stop().await);
            return self.end(500, EndReason::Shutdown, None);
        }
        let to = msg::to_value(&invite.headers).unwrap_or_default();
        let mut caller = CallerDialog {
            flow,
            target: msg::find(&invite.headers, |h| matches!(h, Header::Contact(_)))
                .map(|c| msg::addr_uri(msg::split_first(c).0).to_string())
                .unwrap_or_else(|| invite.uri.to_string()),
            ours: format!("{to};tag={tag}"),
            theirs: msg::from_value(&invite.headers)
                .unwrap_or_default()
                .to_string(),
            cseq: 0,
        };
        tracing::info!(call_id = %self.call_id, ?route, "call answered; music on hold");
        let mut agent = match agent_contact {
            Some((user, (uri, aflow))) => {
                self.call_agent(&number, &local_host, &user, &uri, aflow)
                    .await
            }
            None => None,
        };
        let mut bridged = false;
        let (acd_tx, mut acd_rx) = mpsc::channel(16);
        let mut queued = false;
        if let (Route::Queue(queue), Some(acd)) = (&route, &self.acd) {
            let tier = self.desk.arrived(queue).await;
            queued = acd
                .send(AcdInput::Arrived {
                    call: self.acd_id,
                    queue: queue.clone(),
                    inbox: acd_tx,
                    sip_call_id: self.call_id.clone(),
                    tier,
                })
                .await
                .is_ok();
        } else {
            drop(acd_tx);
        }
        let reason = loop {
            // An offer that failed goes back to the ACD (requeue rules).
            if let Some(a) = agent.as_ref().filter(|a| a.failed) {
                if let Some(who) = a.offer_of {
                    self.to_acd(AcdInput::Rejected {
                        call: self.acd_id,
                        agent: who,
                    })
                    .await;
                }
                agent = None;
            }
            tokio::select! {
                Some(out) = acd_rx.recv() => {
                    if let Some(r) = self.acd_output(out, &mut agent, &number, &local_host).await {
                        break r;
                    }
                }
                input = self.inbox.recv() => match input {
                    None => break EndReason::Shutdown,
                    Some(CallInput::Command(cmd, reply)) => {
                        if cmd == crate::CallCommand::Hangup {
                            let _ = reply.send(Ok(()));
                            break EndReason::DeskHangup;
                        }
                        let _ = reply.send(Err(crate::SwitchError::NotSupported(cmd.name())));
                    }
                    Some(CallInput::Sip(ev)) => {
                        let is_agent = agent.as_ref().is_some_and(|a| event_call_id(&ev) == Some(a.call_id.as_str()));
                        if is_agent {
                            if let Some(a) = agent.as_mut()
                                && let Some(r) = self.agent_event(a, ev, &media, &mut bridged).await
                            {
                                break r;
                            }
                        } else if let Some(r) = self.caller_event(ev, &tag).await {
                            break r;
                        }
                    }
                },
                Some(ev) = media_rx.recv() => self.media_event(ev),
            }
        };
        // After a fallback the ACD has already forgotten the call.
        if queued && reason != EndReason::Fallback {
            let call = self.acd_id;
            let answered = agent
                .as_ref()
                .is_some_and(|a| a.answered && a.offer_of.is_some());
            let msg = if answered {
                AcdInput::Ended { call }
            } else {
                AcdInput::Abandoned { call }
            };
            self.to_acd(msg).await;
        }
        // Release the other side.
        match (reason, agent.as_mut()) {
            (EndReason::DeskHangup, a) => {
                match a {
                    Some(a) if a.answered => self.bye_agent(a).await,
                    Some(a) => drop(self.sip.cancel(a.tx).await),
                    None => {}
                }
                self.bye_caller(&mut caller).await
            }
            (EndReason::AgentHangup | EndReason::Fallback, _) => self.bye_caller(&mut caller).await,
            (_, Some(a)) if a.answered => self.bye_agent(a).await,
            (_, Some(a)) => {
                let _ = self.sip.cancel(a.tx).await;
            }
            _ => {}
        }
        let stats = media.stats().await.ok();
        // Stopping returns the legs; dropping them closes the sockets and frees the ports.
        drop(media.stop().await);
        drop(agent);
        self.desk.ended(reason).await;
        tracing::info!(call_id = %self.call_id, ?reason, bridged, "call ended");
        let status = if reason == EndReason::Cancelled {
            487
        } else {
            200
        };
        let mut end = self.end(status, reason, stats);
        end.bridged = bridged;
        end
    }

    /// INVITEs the agent's contact with Hotline's SDP on a second port pair.
    async fn call_agent(
        &self,
        number: &str,
        host: &str,
        user: &str,
        uri: &str,
        flow: Flow,
    ) -> Option<AgentLeg> {
        let ports = self.ports.bind(self.cfg.media_ip).await.ok()?;
        let local = LocalMedia::new(self.cfg.media_ip, ports.pair.rtp());
        let offer = build_offer(&local, Direction::SendRecv);
        let sdp = offer.to_string();
        let call_id = format!("{}-agent@hotline", token());
        let from = format!("<sip:{number}@{host}>;tag=hl{}", token());
        let to = format!("<sip:{user}@{host}>");
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{number}@{host}{}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            transport_param(flow),
            sdp.len()
        );
        let req = own_request(&text)?;
        let (done, registered) = oneshot::channel();
        self.control
            .send(Control::Alias {
                call_id: self.call_id.clone(),
                alias: call_id.clone(),
                done,
            })
            .await
            .ok()?;
        registered.await.ok()?;
        let tx = self.sip.send_request(req, flow).await.ok()?;
        tracing::info!(call_id = %self.call_id, agent = user, "calling the agent");
        Some(AgentLeg {
            call_id,
            flow,
            tx,
            from,
            to,
            target: None,
            offer,
            ports: Some(ports),
            answered: false,
            failed: false,
            offer_of: None,
        })
    }

    /// Handles an event of the agent's dialog; `Some` ends the call.
    async fn agent_event(
        &self,
        a: &mut AgentLeg,
        ev: AppEvent,
        media: &SessionHandle,
        bridged: &mut bool,
    ) -> Option<EndReason> {
        match ev {
            AppEvent::Response { response, .. } => {
                let status = u16::from(response.status_code.clone());
                if (200..300).contains(&status) {
                    self.agent_answered(a, &response, media, bridged).await;
                } else if status >= 300 {
                    // The agent refused: the caller keeps hearing music (the ACD's requeue
                    // rules take over in the next phase).
                    tracing::info!(call_id = %self.call_id, status, "agent did not answer");
                    a.ports = None;
                    a.failed = !a.answered;
                }
                None
            }
            AppEvent::Timeout { .. } => {
                a.ports = None;
                a.failed = !a.answered;
                None
            }
            AppEvent::Request { tx, request, .. } if to_tag(&request) != msg::tag(&a.from) => {
                let resp = AppResponse::new(481, "Call/Transaction Does Not Exist");
                let _ = self.sip.respond(tx, resp).await;
                None
            }
            AppEvent::Request { tx, request, .. } => {
                let bye = request.method == Method::Bye;
                let resp = if bye {
                    AppResponse::new(200, "OK")
                } else {
                    AppResponse::new(488, "Not Acceptable Here")
                };
                let _ = self.sip.respond(tx, resp).await;
                bye.then_some(EndReason::AgentHangup)
            }
            _ => None,
        }
    }

    /// 2xx from the agent: ACK it (again for every retransmission) and, the first time,
    /// attach the agent's leg and bridge.
    async fn agent_answered(
        &self,
        a: &mut AgentLeg,
        resp: &Response,
        media: &SessionHandle,
        bridged: &mut bool,
    ) {
        if let Some(to) = msg::to_value(&resp.headers) {
            a.to = to.to_string();
        }
        if let Some(c) = msg::find(&resp.headers, |h| matches!(h, Header::Contact(_))) {
            a.target = Some(msg::addr_uri(msg::split_first(c).0).to_string());
        }
        let target = a.target.clone().unwrap_or_default();
        let ack = format!(
            "ACK {target} SIP/2.0\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 1 ACK\r\nContent-Length: 0\r\n\r\n",
            a.from, a.to, a.call_id
        );
        if let Some(req) = own_request(&ack) {
            let _ = self.sip.send_stateless(req, a.flow).await;
        }
        if a.answered {
            return;
        }
        a.answered = true;
        let negotiated = std::str::from_utf8(&resp.body)
            .map_err(|_| MediaError::SdpMalformed {
                line: 0,
                reason: "SDP is not UTF-8",
            })
            .and_then(SessionDescription::parse)
            .and_then(|answer| process_answer(&a.offer, &answer));
        let (Ok(n), Some(ports)) = (negotiated, a.ports.take()) else {
            tracing::warn!(call_id = %self.call_id, "agent's answer unusable; leg not bridged");
            return;
        };
        if let Some(agent) = a.offer_of {
            self.desk.answered();
            self.to_acd(AcdInput::Answered {
                call: self.acd_id,
                agent,
            })
            .await;
        }
        let leg = MediaLeg::new(ports, LegConfig::from(&n), self.cfg.leg_timing);
        if media.attach(leg).await.is_ok() && media.bridge().await.is_ok() {
            *bridged = true;
            tracing::info!(call_id = %self.call_id, "agent answered; legs bridged");
        }
    }

    async fn to_acd(&self, m: AcdInput) {
        if let Some(acd) = &self.acd {
            let _ = acd.send(m).await;
        }
    }

    /// Carries out an ACD decision for this call; `Some` ends the call.
    async fn acd_output(
        &self,
        out: AcdOutput,
        agent: &mut Option<AgentLeg>,
        number: &str,
        host: &str,
    ) -> Option<EndReason> {
        match out {
            AcdOutput::Offer { agent: who, user } => {
                let leg = if agent.is_some() {
                    None // one offer at a time (ring-all comes later)
                } else {
                    // The pop reaches the desk before the phone rings.
                    self.desk.offered(&user).await;
                    match self.sip.contact_for(&user).await {
                        Ok(Some((uri, flow))) => {
                            self.call_agent(number, host, &user, &uri, flow).await
                        }
                        _ => None,
                    }
                };
                match leg {
                    Some(mut leg) => {
                        leg.offer_of = Some(who);
                        *agent = Some(leg);
                    }
                    None => {
                        tracing::info!(call_id = %self.call_id, agent = %user, "agent unreachable");
                        self.to_acd(AcdInput::Rejected {
                            call: self.acd_id,
                            agent: who,
                        })
                        .await;
                    }
                }
            }
            AcdOutput::CancelOffer { agent: who } => {
                if let Some(a) = agent.as_ref()
                    && a.offer_of == Some(who)
                    && !a.answered
                {
                    let _ = self.sip.cancel(a.tx).await;
                    *agent = None;
                }
            }
            AcdOutput::Fallback { hangup: true } => return Some(EndReason::Fallback),
            AcdOutput::Fallback { hangup: false } | AcdOutput::Refused => {
                tracing::info!(call_id = %self.call_id, ?out, "ACD gave up; caller stays on music");
            }
        }
        None
    }

    async fn bye_agent(&self, a: &AgentLeg) {
        let Some(target) = &a.target else { return };
        let text = format!(
            "BYE {target} SIP/2.0\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
            a.from, a.to, a.call_id
        );
        if let Some(req) = own_request(&text) {
            let _ = self.sip.send_request(req, a.flow).await;
        }
    }

    async fn bye_caller(&self, c: &mut CallerDialog) {
        c.cseq += 1;
        let text = format!(
            "BYE {} SIP/2.0\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
            c.target, c.ours, c.theirs, self.call_id, c.cseq
        );
        if let Some(req) = own_request(&text) {
            let _ = self.sip.send_request(req, c.flow).await;
        }
    }

    /// Handles a SIP event of the caller's dialog; `Some` ends the call.
    async fn caller_event(&mut self, ev: AppEvent, tag: &str) -> Option<EndReason> {
        match ev {
            AppEvent::Ack { .. } => None,
            AppEvent::Cancelled { .. } => Some(EndReason::Cancelled),
            AppEvent::AckTimeout { .. } => Some(EndReason::NoAck),
            // Knowing the Call-ID is not enough to act in the dialog: our tag must match.
            AppEvent::Request { tx, request, .. } if to_tag(&request) != Some(tag) => {
                let resp = AppResponse::new(481, "Call/Transaction Does Not Exist");
                let _ = self.sip.respond(tx, resp).await;
                None
            }
            AppEvent::Request { tx, request, .. } => match request.method {
                Method::Bye => {
                    let _ = self.sip.respond(tx, AppResponse::new(200, "OK")).await;
                    Some(EndReason::CallerHangup)
                }
                // Phase 1 keeps the media as answered: re-offers are declined (the
                // dialog stays up, RFC 3261 §14.2).
                Method::Invite | Method::Update => {
                    let _ = self
                        .sip
                        .respond(tx, AppResponse::new(488, "Not Acceptable Here"))
                        .await;
                    None
                }
                Method::Options | Method::Info => {
                    let _ = self.sip.respond(tx, AppResponse::new(200, "OK")).await;
                    None
                }
                _ => {
                    let _ = self
                        .sip
                        .respond(tx, AppResponse::new(501, "Not Implemented"))
                        .await;
                    None
                }
            },
            // An agent leg we gave up on answered after all: hang it up.
            AppEvent::Response { response, flow, .. }
                if msg::call_id(&response.headers) != Some(self.call_id.as_str()) =>
            {
                crate::hang_up_unwanted_answer(&self.sip, &response, flow).await;
                None
            }
            // Responses to our BYE to the caller: nothing to do.
            AppEvent::Response { .. } | AppEvent::Timeout { .. } => None,
        }
    }

    fn media_event(&self, ev: MediaEvent) {
        tracing::debug!(call_id = %self.call_id, ?ev, "media event");
    }
}

/// `;transport=tcp` for a Contact reached over TCP (UDP is the default).
fn transport_param(flow: Flow) -> &'static str {
    match flow.transport {
        hotline_sip::Transport::Tcp => ";transport=tcp",
        hotline_sip::Transport::Udp => "",
    }
}

/// The To tag of a request (ours, in requests of our dialogs).
fn to_tag(req: &Request) -> Option<&str> {
    msg::to_value(&req.headers).and_then(msg::tag)
}

/// The Call-ID an event belongs to.
fn event_call_id(ev: &AppEvent) -> Option<&str> {
    match ev {
        AppEvent::Request { request, .. } | AppEvent::Ack { request, .. } => {
            msg::call_id(&request.headers)
        }
        AppEvent::Response { response, .. } => msg::call_id(&response.headers),
        AppEvent::Timeout { call_id, .. } | AppEvent::AckTimeout { call_id, .. } => Some(call_id),
        AppEvent::Cancelled { .. } => None,
    }
}
