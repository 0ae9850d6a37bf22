//! In-dialog handling of an answered call: requests that arrive inside the caller's or the
//! agent's dialog (BYE, INFO, re-INVITE, UPDATE, REFER, OPTIONS …), media events of the
//! legs that are not routing matters (dead legs, RTCP BYE), and the call's in-dialog
//! timers (session timers).
//!
//! The call loop (`call.rs`) owns routing (IVR, queue, offers, bridge) and calls into this
//! module through these seams: [`caller_request`], [`agent_request`], [`caller_response`],
//! [`agent_response`], [`media_event`] (caller key presses excepted) and
//! [`InCall::deadline`]/[`InCall::timeout`]. Each returns an [`Outcome`] the loop acts on.
//! Per-dialog state this module needs lives in [`CallerExt`] / [`AgentExt`], fields of the
//! call loop's `CallerDialog` / `AgentLeg`, so it can grow here without touching `call.rs`.
//!
//! What happens here:
//! - **Hold**: a re-INVITE/UPDATE whose offer stops us sending to a phone (`sendonly`,
//!   `inactive`, `c=0.0.0.0`) puts the call on hold: the *other* side hears music on hold
//!   and nothing is relayed either way; `sendrecv` bridges again. Hold time is accumulated
//!   ([`CallerExt::hold_ms`]) for the CDR.
//! - **Media changes** (codec, address, port) from either side are answered with Hotline's
//!   SDP for that leg (media stays anchored; the other leg is not re-INVITEd).
//! - **Blind transfer**: REFER from the agent (RFC 3515): 202, NOTIFY `100 Trying`, NOTIFY
//!   `200 OK` (Hotline now owns the transfer), BYE to the agent; the loop then re-routes
//!   the caller ([`Outcome::Transfer`]).
//! - **Attended transfer**: REFER with Replaces naming another call's caller dialog (the
//!   agent consulted a colleague through Hotline): 202, the loop takes that call's agent
//!   leg ([`Outcome::Replace`], [`GiveAgent`]), NOTIFY `200 OK` and BYE to the referrer.
//! - **Session timers** (RFC 4028) on the caller's dialog as UAS, and on either dialog when
//!   the peer refreshes: expiry sends BYE to both legs.
//! - **No RTP** on a leg for `[media] no_rtp_timeout_secs` (not while on hold): BYE to both.

use std::time::{Duration, Instant};

use hotline_media::dtmf::parse_info_body;
use hotline_media::sdp::{Direction, LegSdp, LocalMedia, SessionDescription, process_answer};
use hotline_media::{
    LegConfig, LegEvent, MediaError, MediaEvent, MediaLeg, Player, SessionHandle, Side,
    WebRtcControl,
};
use hotline_sip::msg::{self, Header, Method, Request, Response};
use hotline_sip::refer::{self, ReferTo, Replaces};
use hotline_sip::session_timer::{self, SessionTimer, TimerAction, TimerPolicy, UasDecision};
use hotline_sip::{AppResponse, Flow, ServerTxId};

use crate::call::{AgentLeg, Call, CallerDialog, EndReason, own_request};
use crate::{Route, SwitchError};

/// The in-dialog handlers cannot reach [`InCall`], so a timer they start or move is
/// picked up at the next look: the first comes soon after answer, later ones at the
/// earliest timer but at most this far apart (cheap: a wake-up every few seconds).
const FIRST_LOOK: Duration = Duration::from_secs(1);
const MAX_LOOK: Duration = Duration::from_secs(5);

/// How long a transfer waits for the referrer's answers to our NOTIFYs before it goes on
/// regardless.
const NOTIFY_PATIENCE: Duration = Duration::from_secs(4);

/// What the call loop does after an in-dialog event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Outcome {
    /// Nothing for the loop to do.
    Continue,
    /// End the call; the loop releases the other side (BYE/CANCEL) and writes the CDR.
    End(EndReason),
    /// A key the caller pressed out of band (SIP INFO); the loop feeds it to the IVR or
    /// the queue's leave/callback keys, as it does with RFC 4733 events.
    Digit(char),
    /// The agent transferred the caller (blind REFER) and has been released: the loop
    /// drops the agent leg and routes the caller to this target (the caller hears music
    /// meanwhile).
    Transfer(Route),
    /// The agent transferred the caller to another call's agent (REFER with Replaces,
    /// already answered 202): the loop asks that call for its agent leg, then calls
    /// [`transfer_done`].
    Replace(Replaces),
}

/// Attended transfer: what a call asks of the call whose caller dialog a Replaces named.
pub(crate) struct GiveAgent {
    pub replaces: Replaces,
    /// The Call-ID of the asking call (where the agent's dialog goes).
    pub taker: String,
    pub reply: tokio::sync::oneshot::Sender<Handover>,
}

impl std::fmt::Debug for GiveAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GiveAgent")
            .field("replaces", &self.replaces)
            .field("taker", &self.taker)
            .finish()
    }
}

/// The agent leg of a call, handed to another call with its media leg (sockets, RTP
/// state): the agent's phone sees no change at all.
pub(crate) struct Handover {
    pub agent: AgentLeg,
    pub leg: MediaLeg,
}

/// Whether `replaces` names this call's caller dialog (either tag orientation).
pub(crate) fn names_caller(replaces: &Replaces, call_id: &str, caller: &CallerDialog) -> bool {
    let theirs = msg::tag(&caller.theirs).unwrap_or_default();
    !replaces.early_only && replaces.names(call_id, &caller.tag, theirs)
}

/// Our offer in the 2xx to an offer-less re-INVITE, kept until the ACK's answer.
#[derive(Debug)]
enum OfferIn2xx {
    /// A phone's leg: our plain SDP.
    Plain(SessionDescription),
    /// A browser's leg: made by its peer connection, which takes the answer too.
    WebRtc,
}

/// In-dialog state of the caller's dialog.
#[derive(Debug, Default)]
pub(crate) struct CallerExt {
    /// Our Contact in this dialog (for 2xx to re-INVITEs).
    contact: String,
    /// Our SDP towards the caller across re-offers.
    sdp: Option<LegSdp>,
    timer: Option<SessionTimer>,
    /// Our own re-INVITE in flight (a session refresh): its CSeq and offer.
    refresh: Option<(u32, SessionDescription)>,
    /// The caller put the call on hold.
    caller_holds: bool,
    /// The agent put the call on hold (kept here: it outlives one agent leg).
    agent_holds: bool,
    hold_since: Option<Instant>,
    hold_total: Duration,
    /// Transfers carried out (blind or attended), for the CDR.
    transfers: u32,
    /// Our offer in the 2xx to an offer-less re-INVITE: its CSeq and the offer, until the
    /// ACK brings the answer.
    offer_in_2xx: Option<(u32, OfferIn2xx)>,
    /// A browser caller's WebRTC gateway: its re-offers are answered there.
    webrtc: Option<WebRtcControl>,
}

impl CallerExt {
    /// State for a caller whose INVITE was answered with `contact` and session `timer`.
    pub(crate) fn new(contact: &str, timer: Option<SessionTimer>) -> CallerExt {
        CallerExt {
            contact: contact.to_string(),
            timer,
            ..CallerExt::default()
        }
    }

    /// Time the call spent on hold (either side holding), including a hold in progress.
    /// For the CDR's hold field.
    pub(crate) fn hold_ms(&self) -> u64 {
        let running = self.hold_since.map_or(Duration::ZERO, |t| t.elapsed());
        (self.hold_total + running).as_millis() as u64
    }

    /// Transfers carried out on this call (blind or attended).
    pub(crate) fn transfers(&self) -> u32 {
        self.transfers
    }

    /// Whether the agent's side (phone or desk) holds the call.
    pub(crate) fn agent_holds(&self) -> bool {
        self.agent_holds
    }

    fn on_hold(&self) -> bool {
        self.caller_holds || self.agent_holds
    }

    /// Updates the hold bookkeeping after either side changed.
    fn hold_changed(&mut self, now: Instant) {
        match (self.on_hold(), self.hold_since) {
            (true, None) => self.hold_since = Some(now),
            (false, Some(t)) => {
                self.hold_total += now.saturating_duration_since(t);
                self.hold_since = None;
            }
            _ => {}
        }
    }
}

/// A blind transfer in progress on the agent's dialog.
#[derive(Debug)]
struct Transfer {
    route: Route,
    /// CSeq of the NOTIFY we wait on, and whether it is the final one.
    notify: u32,
    final_sent: bool,
    since: Instant,
}

/// In-dialog state of the agent's dialog.
#[derive(Debug, Default)]
pub(crate) struct AgentExt {
    sdp: Option<LegSdp>,
    timer: Option<SessionTimer>,
    /// Our own re-INVITE in flight (a session refresh): its CSeq and offer.
    refresh: Option<(u32, SessionDescription)>,
    transfer: Option<Transfer>,
    /// Our offer in the 2xx to an offer-less re-INVITE: its CSeq and the offer, until the
    /// ACK brings the answer.
    offer_in_2xx: Option<(u32, OfferIn2xx)>,
    /// A browser agent's running WebRTC gateway: its re-offers are answered there.
    webrtc: Option<WebRtcControl>,
}

/// In-call state of the whole call: when to look at the timers next.
#[derive(Debug)]
pub(crate) struct InCall {
    next: tokio::time::Instant,
}

impl Default for InCall {
    fn default() -> Self {
        InCall {
            next: tokio::time::Instant::now() + FIRST_LOOK,
        }
    }
}

impl InCall {
    /// When [`InCall::timeout`] must run next (session timers, transfer guards).
    pub(crate) fn deadline(&self) -> Option<tokio::time::Instant> {
        Some(self.next)
    }

    /// The deadline passed: refresh or expire session timers, unstick transfers.
    pub(crate) async fn timeout(&mut self, ctx: Ctx<'_>) -> Outcome {
        let Ctx {
            call,
            caller,
            agent,
            media,
            bridged,
        } = ctx;
        let ctx = Ctx {
            call,
            caller: &mut *caller,
            agent: &mut *agent,
            media,
            bridged,
        };
        let outcome = due(ctx, Instant::now()).await;
        self.reschedule(caller, agent.as_ref());
        outcome
    }

    /// Sets when to look next from the timers of `caller` and `agent`.
    pub(crate) fn reschedule(&mut self, caller: &CallerDialog, agent: Option<&AgentLeg>) {
        let now = Instant::now();
        let mut next = now + MAX_LOOK;
        let timers = caller
            .ext
            .timer
            .iter()
            .chain(agent.and_then(|a| a.ext.timer.as_ref()));
        for t in timers {
            next = next.min(t.poll_timeout());
        }
        if let Some(t) = agent.and_then(|a| a.ext.transfer.as_ref()) {
            next = next.min(t.since + NOTIFY_PATIENCE);
        }
        self.next = tokio::time::Instant::now() + next.saturating_duration_since(now);
    }
}

/// Runs the timers that are due: session refresh or expiry, a stuck transfer.
async fn due(ctx: Ctx<'_>, now: Instant) -> Outcome {
    let action = ctx
        .caller
        .ext
        .timer
        .as_mut()
        .and_then(|t| t.handle_timeout(now));
    match action {
        Some(TimerAction::Expired) => {
            // The loop's ending sends BYE to both legs.
            tracing::info!(call_id = %ctx.call.call_id, "caller's session timer expired");
            return Outcome::End(EndReason::SessionExpired);
        }
        Some(TimerAction::Refresh) => refresh_caller(ctx.call, ctx.caller).await,
        None => {}
    }
    let Some(a) = ctx.agent.as_mut() else {
        return Outcome::Continue;
    };
    match a.ext.timer.as_mut().and_then(|t| t.handle_timeout(now)) {
        Some(TimerAction::Expired) => {
            tracing::info!(call_id = %ctx.call.call_id, "agent's session timer expired");
            return Outcome::End(EndReason::SessionExpired);
        }
        Some(TimerAction::Refresh) => refresh_agent(ctx.call, a).await,
        None => {}
    }
    if a.ext
        .transfer
        .as_ref()
        .is_some_and(|t| now.saturating_duration_since(t.since) >= NOTIFY_PATIENCE)
    {
        // The referrer does not answer our NOTIFYs: finish the transfer anyway.
        return finish_transfer(ctx.call, ctx.caller, a).await;
    }
    Outcome::Continue
}

/// What the in-dialog handlers may look at and change.
pub(crate) struct Ctx<'a> {
    pub call: &'a Call,
    pub caller: &'a mut CallerDialog,
    /// The agent leg (ringing or answered), if any.
    pub agent: &'a mut Option<AgentLeg>,
    pub media: &'a SessionHandle,
    /// Whether the agent leg is bridged to the caller.
    pub bridged: bool,
}

/// The session-timer part of answering the caller's INVITE: the caller's state and the
/// header lines for our 2xx, or the 422 to send instead (RFC 4028 §9).
pub(crate) fn answer_caller(
    policy: &TimerPolicy,
    invite: &Request,
    contact: &str,
) -> Result<(CallerExt, Vec<String>), Box<AppResponse>> {
    match session_timer::uas_negotiate(&invite.headers, policy) {
        Ok(UasDecision::None) => Ok((CallerExt::new(contact, None), vec![])),
        Ok(UasDecision::Timer { timer, headers }) => Ok((
            CallerExt::new(contact, Some(SessionTimer::new(timer, Instant::now()))),
            headers,
        )),
        Ok(UasDecision::TooSmall { min_se }) => Err(Box::new(
            AppResponse::new(422, "Session Interval Too Small").header(format!("Min-SE: {min_se}")),
        )),
        Err(e) => Err(Box::new(AppResponse::new(400, &e.to_string()))),
    }
}

/// Header lines (CRLF-terminated) for our INVITE to an agent: we offer a session timer
/// (RFC 4028 §7.1) so a dead agent phone is noticed even when RTP checks are off.
pub(crate) fn agent_invite_headers(policy: &TimerPolicy) -> String {
    if policy.session_expires == 0 {
        return String::new();
    }
    session_timer::uac_headers(policy.session_expires, policy.min_se, None)
        .into_iter()
        .map(|h| h + "\r\n")
        .collect()
}

/// The agent answered our INVITE: the session timer its 2xx agreed to, if any (§7.2).
pub(crate) fn agent_answered(a: &mut AgentLeg, resp: &Response) {
    a.ext.timer = uac_timer(resp);
}

/// The timer a 2xx to our INVITE agreed to, starting now (none without Session-Expires).
fn uac_timer(resp: &Response) -> Option<SessionTimer> {
    let t = session_timer::uac_negotiate(&resp.headers).ok().flatten()?;
    Some(SessionTimer::new(t, Instant::now()))
}

/// A browser caller's leg: keep a handle on its gateway for its re-INVITEs.
pub(crate) fn caller_webrtc(ext: &mut CallerExt, leg: &MediaLeg) {
    ext.webrtc = leg.gateway().map(|g| g.control());
}

/// A browser agent's leg started: keep a handle on its gateway for re-INVITEs.
pub(crate) fn agent_webrtc(a: &mut AgentLeg, leg: Option<&MediaLeg>) {
    a.ext.webrtc = leg.and_then(MediaLeg::gateway).map(|g| g.control());
}

/// A 2xx to our refresh re-INVITE: its SDP answer goes to `side`'s leg; returns the
/// timer it agreed to (none when the peer dropped it).
async fn refresh_answered(
    media: &SessionHandle,
    side: Side,
    offer: &SessionDescription,
    response: &Response,
) -> Option<SessionTimer> {
    if let Ok(answer) = std::str::from_utf8(&response.body)
        .map_err(|_| ())
        .and_then(|b| SessionDescription::parse(b).map_err(|_| ()))
        && let Ok(n) = process_answer(offer, &answer)
    {
        let _ = media.reconfigure(side, LegConfig::from(&n)).await;
    }
    uac_timer(response)
}

/// A request inside the caller's dialog (the To tag was checked to be ours).
pub(crate) async fn caller_request(
    ctx: Ctx<'_>,
    tx: ServerTxId,
    request: Request,
    _flow: Flow,
) -> Outcome {
    let sip = &ctx.call.sip;
    match request.method {
        Method::Bye => {
            let _ = sip.respond(tx, AppResponse::new(200, "OK")).await;
            Outcome::End(EndReason::CallerHangup)
        }
        Method::Invite | Method::Update => reoffer(ctx, tx, &request, Side::A).await,
        Method::Info => info(ctx, tx, &request).await,
        Method::Options => {
            let _ = sip.respond(tx, AppResponse::new(200, "OK")).await;
            Outcome::Continue
        }
        _ => {
            let _ = sip
                .respond(tx, AppResponse::new(501, "Not Implemented"))
                .await;
            Outcome::Continue
        }
    }
}

/// SIP INFO: a DTMF body becomes a key; other INFO packages are acknowledged and ignored
/// (RFC 6086 legacy usage), a malformed DTMF body is 400.
async fn info(ctx: Ctx<'_>, tx: ServerTxId, request: &Request) -> Outcome {
    let sip = &ctx.call.sip;
    // `msg::find` has no raw value for Content-Type: take it from the header's text.
    let ct = request
        .headers
        .iter()
        .find(|h| matches!(h, Header::ContentType(_)))
        .map(|h| {
            let line = h.to_string();
            line.split_once(':')
                .map(|(_, v)| v.trim().to_string())
                .unwrap_or_default()
        })
        .unwrap_or_default();
    let ct = ct.as_str();
    let is_dtmf = ct
        .split(';')
        .next()
        .map(str::trim)
        .is_some_and(|t| t.to_ascii_lowercase().starts_with("application/dtmf"));
    if !is_dtmf {
        let _ = sip.respond(tx, AppResponse::new(200, "OK")).await;
        return Outcome::Continue;
    }
    let body = std::str::from_utf8(&request.body).unwrap_or("");
    match parse_info_body(ct, body) {
        Ok(d) => {
            let _ = sip.respond(tx, AppResponse::new(200, "OK")).await;
            Outcome::Digit(d.digit)
        }
        Err(e) => {
            let _ = sip
                .respond(tx, AppResponse::new(400, &format!("Bad DTMF: {e}")))
                .await;
            Outcome::Continue
        }
    }
}

/// A request inside the agent's dialog (the To tag was checked to be ours).
pub(crate) async fn agent_request(
    ctx: Ctx<'_>,
    tx: ServerTxId,
    request: Request,
    _flow: Flow,
) -> Outcome {
    let sip = &ctx.call.sip;
    match request.method {
        Method::Bye => {
            let _ = sip.respond(tx, AppResponse::new(200, "OK")).await;
            Outcome::End(EndReason::AgentHangup)
        }
        Method::Invite | Method::Update => reoffer(ctx, tx, &request, Side::B).await,
        Method::Refer => refer_from_agent(ctx, tx, &request).await,
        Method::Options | Method::Info => {
            let _ = sip.respond(tx, AppResponse::new(200, "OK")).await;
            Outcome::Continue
        }
        _ => {
            let _ = sip
                .respond(tx, AppResponse::new(501, "Not Implemented"))
                .await;
            Outcome::Continue
        }
    }
}

/// Our SDP towards a leg, made from what we sent it first (so `o=` continues).
fn leg_sdp(first: &SessionDescription) -> Option<LegSdp> {
    let port = first.media.first()?.port;
    let addr = first
        .connection
        .map(|c| c.addr)
        .unwrap_or(first.origin.addr);
    let mut local = LocalMedia::new(addr, port);
    local.rtcp_port = first.media.first()?.rtcp_port;
    local.session_id = first.origin.session_id;
    local.session_version = first.origin.session_version;
    Some(LegSdp::sent(local, first.clone()))
}

/// A re-INVITE or UPDATE from the caller (`Side::A`) or the agent (`Side::B`): session
/// timer refresh, media change, hold or resume. Answered with Hotline's SDP for that leg.
async fn reoffer(ctx: Ctx<'_>, tx: ServerTxId, req: &Request, side: Side) -> Outcome {
    let Ctx {
        call,
        caller,
        agent,
        media,
        bridged,
    } = ctx;
    let sip = &call.sip;
    // The agent's leg must have answered before it can re-offer.
    if side == Side::B && agent.as_ref().is_none_or(|a| !a.answered) {
        let _ = sip
            .respond(tx, AppResponse::new(491, "Request Pending"))
            .await;
        return Outcome::Continue;
    }
    // Session timer first: a 422 must not change the media.
    let policy = TimerPolicy {
        session_expires: 0, // only refreshes the peer asks for
        ..call.cfg.session_timer
    };
    let timer = match session_timer::uas_negotiate(&req.headers, &policy) {
        Ok(UasDecision::TooSmall { min_se }) => {
            let r = AppResponse::new(422, "Session Interval Too Small")
                .header(format!("Min-SE: {min_se}"));
            let _ = sip.respond(tx, r).await;
            return Outcome::Continue;
        }
        Ok(UasDecision::Timer { timer, headers }) => Some((timer, headers)),
        Ok(UasDecision::None) => None,
        Err(e) => {
            let _ = sip.respond(tx, AppResponse::new(400, &e.to_string())).await;
            return Outcome::Continue;
        }
    };
    // A target refresh (RFC 3261 §12.2): the phone may have moved its Contact.
    if let Some(c) = msg::find(&req.headers, |h| matches!(h, Header::Contact(_))) {
        let target = msg::addr_uri(msg::split_first(c).0).to_string();
        match side {
            Side::A => caller.target = target,
            Side::B => {
                if let Some(a) = agent.as_mut() {
                    a.target = Some(target);
                }
            }
        }
    }
    let webrtc = match side {
        Side::B => agent.as_ref().and_then(|a| a.ext.webrtc.clone()),
        Side::A => caller.ext.webrtc.clone(),
    };
    let (contact, sdp_state) = match side {
        Side::A => {
            if caller.ext.sdp.is_none() {
                caller.ext.sdp = leg_sdp(&caller.local_sdp);
            }
            (caller.ext.contact.clone(), &mut caller.ext.sdp)
        }
        Side::B => {
            let Some(a) = agent.as_mut() else {
                return Outcome::Continue;
            };
            if a.ext.sdp.is_none() {
                a.ext.sdp = leg_sdp(&a.offer);
            }
            let contact = format!("<{}{}>", msg::addr_uri(&a.from), transport_param(a.flow));
            (contact, &mut a.ext.sdp)
        }
    };
    let Some(sdp_state) = sdp_state.as_mut() else {
        let _ = sip
            .respond(tx, AppResponse::new(500, "No media for this leg"))
            .await;
        return Outcome::Continue;
    };
    let mut resp = AppResponse::new(200, "OK").header(format!("Contact: {contact}"));
    let mut hold = None;
    let mut offer_in_2xx = None;
    if req.body.is_empty() {
        // An offer-less re-INVITE (RFC 3264 §5, RFC 3261 §14.2): we offer in the 2xx what
        // we are willing to do (sendrecv) and the ACK brings the answer (see [`ack`]). An
        // empty UPDATE is only a refresh. A browser's offer is a WebRTC one, made by its
        // peer connection on the running DTLS/ICE.
        if req.method == Method::Invite {
            let cseq = msg::cseq(&req.headers).map_or(0, |(n, _)| n);
            match &webrtc {
                Some(ctl) => match ctl.offer().await {
                    Ok(offer) => {
                        resp = resp.body("application/sdp", offer);
                        offer_in_2xx = Some((cseq, OfferIn2xx::WebRtc));
                    }
                    Err(e) => {
                        let _ = sip
                            .respond(tx, AppResponse::new(e.sip_status(), &e.to_string()))
                            .await;
                        return Outcome::Continue;
                    }
                },
                None => {
                    let offer = sdp_state.offer(Direction::SendRecv);
                    resp = resp.body("application/sdp", offer.to_string());
                    offer_in_2xx = Some((cseq, OfferIn2xx::Plain(offer)));
                }
            }
        }
    } else {
        let text = std::str::from_utf8(&req.body).map_err(|_| MediaError::SdpMalformed {
            line: 0,
            reason: "SDP is not UTF-8",
        });
        let answered = match webrtc {
            // A browser's re-offer is answered by its gateway (same DTLS, ICE unless it
            // restarts), in WebRTC terms; the call leg only learns the direction.
            Some(ctl) => match text {
                Ok(t) => ctl.reoffer(t).await,
                Err(e) => Err(e),
            }
            .map(|(re, cfg)| (re.sdp, cfg, !re.direction.sends())),
            None => text
                .and_then(SessionDescription::parse)
                .and_then(|o| sdp_state.answer(&o, Direction::SendRecv))
                .map(|(answer, n)| (answer.to_string(), LegConfig::from(&n), n.peer_holds())),
        };
        let (answer, cfg, holds) = match answered {
            Ok(a) => a,
            Err(e) => {
                // The dialog and its media stay as they were (RFC 3261 §14.2).
                let _ = sip
                    .respond(tx, AppResponse::new(e.sip_status(), &e.to_string()))
                    .await;
                return Outcome::Continue;
            }
        };
        let _ = media.reconfigure(side, cfg).await;
        hold = Some(holds);
        resp = resp.body("application/sdp", answer);
    }
    if let Some((t, headers)) = timer {
        for h in headers {
            resp = resp.header(h);
        }
        let slot = match side {
            Side::A => &mut caller.ext.timer,
            Side::B => match agent.as_mut() {
                Some(a) => &mut a.ext.timer,
                None => return Outcome::Continue,
            },
        };
        match slot {
            Some(st) => st.refreshed(t, Instant::now()),
            None => *slot = Some(SessionTimer::new(t, Instant::now())),
        }
    }
    match side {
        Side::A => caller.ext.offer_in_2xx = offer_in_2xx,
        Side::B => {
            if let Some(a) = agent.as_mut() {
                a.ext.offer_in_2xx = offer_in_2xx;
            }
        }
    }
    let _ = sip.respond(tx, resp).await;
    if let Some(holds) = hold {
        let user = agent
            .as_ref()
            .filter(|a| a.answered)
            .map(|a| a.user.clone());
        set_hold(call, caller, user.as_deref(), media, bridged, side, holds).await;
    }
    Outcome::Continue
}

/// The ACK of a 2xx we sent in the caller's (`Side::A`) or the agent's (`Side::B`)
/// dialog. After an offer-less re-INVITE it carries the answer to the offer in our 2xx:
/// the leg's media and hold follow it. An ACK cannot be refused, so an unusable answer (or
/// none) leaves the media as it was, with a warning.
pub(crate) async fn ack(ctx: Ctx<'_>, request: &Request, side: Side) -> Outcome {
    let Ctx {
        call,
        caller,
        agent,
        media,
        bridged,
    } = ctx;
    let slot = match side {
        Side::A => &mut caller.ext.offer_in_2xx,
        Side::B => match agent.as_mut() {
            Some(a) => &mut a.ext.offer_in_2xx,
            None => return Outcome::Continue,
        },
    };
    let cseq = msg::cseq(&request.headers).map(|(n, _)| n);
    let Some((_, offer)) = slot.take_if(|(n, _)| Some(*n) == cseq) else {
        return Outcome::Continue;
    };
    let text = std::str::from_utf8(&request.body).map_err(|_| MediaError::SdpMalformed {
        line: 0,
        reason: "SDP is not UTF-8",
    });
    let negotiated = match offer {
        OfferIn2xx::Plain(offer) => text
            .and_then(SessionDescription::parse)
            .and_then(|answer| process_answer(&offer, &answer))
            .map(|n| (LegConfig::from(&n), n.peer_holds())),
        // The browser's answer goes to the peer connection that made the offer.
        OfferIn2xx::WebRtc => {
            let ctl = match side {
                Side::A => caller.ext.webrtc.clone(),
                Side::B => agent.as_ref().and_then(|a| a.ext.webrtc.clone()),
            };
            match (ctl, text) {
                (Some(ctl), Ok(t)) => ctl
                    .answer(t)
                    .await
                    .map(|(_, cfg)| (cfg, !cfg.direction.sends())),
                (None, _) => Err(MediaError::WebRtc("browser leg gone".into())),
                (_, Err(e)) => Err(e),
            }
        }
    };
    let (cfg, holds) = match negotiated {
        Ok(n) => n,
        Err(e) => {
            tracing::warn!(call_id = %call.call_id, ?side, error = %e, "no usable answer in the ACK; media unchanged");
            return Outcome::Continue;
        }
    };
    let _ = media.reconfigure(side, cfg).await;
    let user = agent
        .as_ref()
        .filter(|a| a.answered)
        .map(|a| a.user.clone());
    set_hold(call, caller, user.as_deref(), media, bridged, side, holds).await;
    Outcome::Continue
}

/// One side started or stopped holding: the other side hears music while either holds;
/// when neither does (and the legs were bridged) they talk again.
async fn set_hold(
    call: &Call,
    caller: &mut CallerDialog,
    agent: Option<&str>,
    media: &SessionHandle,
    bridged: bool,
    side: Side,
    holds: bool,
) {
    let ext = &mut caller.ext;
    let was = ext.on_hold();
    match side {
        Side::A => ext.caller_holds = holds,
        Side::B => ext.agent_holds = holds,
    }
    ext.hold_changed(Instant::now());
    if !bridged {
        return;
    }
    // The desk hears of every change of the call's hold, whoever made it.
    if was != ext.on_hold()
        && let Some(a) = agent
    {
        call.desk.held(a, !was);
    }
    let music = || Player::new(vec![call.cfg.music.clone()], true, Instant::now());
    let r = if ext.agent_holds {
        media.hold(Side::A, music()).await
    } else if ext.caller_holds {
        media.hold(Side::B, music()).await
    } else {
        media.bridge().await
    };
    if r.is_err() {
        tracing::warn!(call_id = %call.call_id, "media session gone while changing hold");
    }
    tracing::info!(call_id = %call.call_id, ?side, holds, "hold changed");
}

/// REFER from the agent (RFC 3515): a blind transfer of the caller to an extension, queue
/// or number, or (Refer-To with Replaces) an attended one, carried out by the loop.
async fn refer_from_agent(ctx: Ctx<'_>, tx: ServerTxId, req: &Request) -> Outcome {
    let sip = &ctx.call.sip;
    let Some(a) = ctx.agent.as_mut().filter(|a| a.answered) else {
        let _ = sip
            .respond(tx, AppResponse::new(491, "Request Pending"))
            .await;
        return Outcome::Continue;
    };
    if a.ext.transfer.is_some() {
        let _ = sip
            .respond(tx, AppResponse::new(491, "Request Pending"))
            .await;
        return Outcome::Continue;
    }
    let target = match refer::refer_to(&req.headers) {
        Ok(t) => t,
        Err(e) => {
            let _ = sip.respond(tx, AppResponse::new(400, &e.to_string())).await;
            return Outcome::Continue;
        }
    };
    if let Some(r) = target.replaces {
        tracing::info!(call_id = %ctx.call.call_id, replaces = %r, "attended transfer");
        let _ = sip.respond(tx, AppResponse::new(202, "Accepted")).await;
        return Outcome::Replace(r);
    }
    // Toll-fraud guard: an agent's phone may only transfer outside to allowed numbers.
    if let Some(u) = target.user.as_deref()
        && ctx.call.cfg.check_destination("agent", u, "REFER").is_err()
    {
        let _ = sip.respond(tx, AppResponse::new(403, "Forbidden")).await;
        return Outcome::Continue;
    }
    let Some(route) = transfer_route(ctx.call, &target).await else {
        let _ = sip
            .respond(tx, AppResponse::new(404, "Transfer target not found"))
            .await;
        return Outcome::Continue;
    };
    tracing::info!(call_id = %ctx.call.call_id, ?route, referred_by = ?refer::referred_by(&req.headers), "blind transfer");
    let _ = sip.respond(tx, AppResponse::new(202, "Accepted")).await;
    // The caller hears music from now on; the agent's audio is no longer relayed.
    if ctx.bridged {
        let music = Player::new(vec![ctx.call.cfg.music.clone()], true, Instant::now());
        let _ = ctx.media.hold(Side::A, music).await;
    }
    let cseq = notify(ctx.call, a, 100, "Trying").await;
    a.ext.transfer = Some(Transfer {
        route,
        notify: cseq,
        final_sent: false,
        since: Instant::now(),
    });
    Outcome::Continue
}

/// The desk puts the call on hold (`hold`) or takes it back (CTI `call.hold` /
/// `call.resume`): as the agent's phone holding does, the caller hears music and the
/// agent hears nothing; hold time counts in the CDR. Refused, changing nothing, unless
/// the agent is talking to the caller (or, to resume, the agent's side holds).
pub(crate) async fn desk_hold(ctx: Ctx<'_>, hold: bool) -> Result<(), SwitchError> {
    let user = connected_agent(&ctx)?;
    match (hold, ctx.caller.ext.agent_holds) {
        (true, true) => return Err(SwitchError::InvalidState("the call is on hold".into())),
        (false, false) => {
            return Err(SwitchError::InvalidState(
                "the call is not on hold by the agent".into(),
            ));
        }
        _ => {}
    }
    set_hold(
        ctx.call,
        ctx.caller,
        Some(&user),
        ctx.media,
        ctx.bridged,
        Side::B,
        hold,
    )
    .await;
    Ok(())
}

/// The agent's user when the agent leg answered and is bridged to the caller (the only
/// state in which the desk's call commands apply).
pub(crate) fn connected_agent(ctx: &Ctx<'_>) -> Result<String, SwitchError> {
    match ctx.agent.as_ref() {
        Some(a) if a.answered && ctx.bridged && a.ext.transfer.is_none() => Ok(a.user.clone()),
        Some(a) if a.ext.transfer.is_some() => Err(SwitchError::InvalidState(
            "a transfer is in progress".into(),
        )),
        _ => Err(SwitchError::InvalidState(
            "the call is not connected to an agent".into(),
        )),
    }
}

/// Where a desk's transfer or conference target goes: `queue:NAME`, `agent:USER` or
/// `number:N` say it outright; a bare target is tried as a configured number, a queue,
/// then a SIP user. An unknown target is `not_found`, a user who is not registered (or
/// the agent themself) `invalid_state`.
pub(crate) async fn desk_target(
    call: &Call,
    to: &str,
    me: &str,
    role: &str,
) -> Result<Route, SwitchError> {
    let unknown = || SwitchError::NotFound(format!("transfer target {to:?}"));
    let (kind, name) = match to.split_once(':') {
        Some((k @ ("queue" | "agent" | "number"), n)) => (Some(k), n),
        _ => (None, to),
    };
    if name.is_empty()
        || name.len() > 64
        || !name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "+-_.*#".contains(c))
    {
        return Err(unknown());
    }
    let is_queue = |q: &str| {
        call.cfg.queues.contains_key(q)
            || call
                .cfg
                .acd
                .as_ref()
                .is_some_and(|a| a.queues.iter().any(|x| x.name == q))
    };
    if matches!(kind, None | Some("number"))
        && let Some(r) = call.cfg.routes.get(name)
    {
        return Ok(r.clone());
    }
    if matches!(kind, None | Some("queue")) && is_queue(name) {
        return Ok(Route::Queue(name.to_string()));
    }
    if matches!(kind, None | Some("agent")) && call.cfg.users.contains(name) {
        if name == me {
            return Err(SwitchError::InvalidState(
                "the call is already with this agent".into(),
            ));
        }
        return match call.sip.contact_for(name).await {
            Ok(Some(_)) => Ok(Route::Extension(name.to_string())),
            _ => Err(SwitchError::InvalidState(format!(
                "{name} is not registered"
            ))),
        };
    }
    // Anything else that looks like a phone number goes out through the trunk, if the
    // role's dial rules allow it (refusals are logged by the guard).
    if matches!(kind, None | Some("number")) && outside_number(name) && call.cfg.trunk.is_some() {
        call.cfg
            .check_destination(role, name, &format!("desk transfer by {me}"))?;
        return Ok(Route::Outside(name.to_string()));
    }
    Err(unknown())
}

/// A dialable outside number: digits with an optional leading `+`, at most 32.
pub(crate) fn outside_number(n: &str) -> bool {
    let digits = n.strip_prefix('+').unwrap_or(n);
    !digits.is_empty() && n.len() <= 32 && digits.chars().all(|c| c.is_ascii_digit())
}

/// The agent's side holds (`hold`) or not, for the hold time; media is the caller's.
pub(crate) fn agent_hold(caller: &mut CallerDialog, hold: bool) {
    caller.ext.agent_holds = hold;
    caller.ext.hold_changed(Instant::now());
}

/// A dialog Hotline opened as UAC and that was answered (a click-to-dial customer,
/// called with the call's own Call-ID) becomes the call's caller dialog, so everything
/// here serves it as it serves an inbound caller: its re-INVITEs and hold, session
/// refreshes, INFO keys, a REFER/Replaces naming it.
pub(crate) fn caller_from_leg(leg: AgentLeg) -> CallerDialog {
    let contact = format!(
        "<{}{}>",
        msg::addr_uri(&leg.from),
        transport_param(leg.flow)
    );
    let tag = msg::tag(&leg.from).unwrap_or_default().to_string();
    let target = leg
        .target
        .clone()
        .unwrap_or_else(|| format!("sip:{}@{}", leg.user, leg.flow.remote));
    let mut ext = CallerExt::new(&contact, leg.ext.timer);
    ext.sdp = leg.ext.sdp;
    ext.webrtc = leg.ext.webrtc;
    CallerDialog {
        flow: leg.flow,
        target,
        ours: leg.from,
        tag,
        theirs: leg.to,
        cseq: leg.cseq,
        local_sdp: leg.offer,
        ext,
    }
}

/// The caller's dialog ended while the call goes on (the caller left a conference): no
/// session refresh or expiry for it any more, and no hold.
pub(crate) fn caller_left(caller: &mut CallerDialog) {
    let ext = &mut caller.ext;
    ext.timer = None;
    ext.refresh = None;
    ext.offer_in_2xx = None;
    ext.caller_holds = false;
    ext.agent_holds = false;
    ext.hold_changed(Instant::now());
}

/// A transfer was carried out (a hold by the agent ends with the agent's leg).
pub(crate) fn count_transfer(caller: &mut CallerDialog) {
    caller.ext.transfers += 1;
    agent_hold(caller, false);
}

/// Blind transfer from the desk (`call.transfer`): the agent is released with BYE and
/// the loop re-routes the caller to `route` ([`Outcome::Transfer`]), as after a REFER.
pub(crate) async fn desk_transfer(ctx: Ctx<'_>, route: Route) -> Outcome {
    let Some(a) = ctx.agent.as_mut() else {
        return Outcome::Continue;
    };
    count_transfer(ctx.caller);
    ctx.call.bye_agent(a).await;
    Outcome::Transfer(route)
}

/// Where a Refer-To's user goes: a configured number's route, else a registered user.
async fn transfer_route(call: &Call, target: &ReferTo) -> Option<Route> {
    let user = target.user.as_deref()?;
    if let Some(r) = call.cfg.routes.get(user) {
        return Some(r.clone());
    }
    match call.sip.contact_for(user).await {
        Ok(Some(_)) => Some(Route::Extension(user.to_string())),
        // The dial rules passed (checked before): an outside number goes to the trunk.
        _ if outside_number(user) && call.cfg.trunk.is_some() => {
            Some(Route::Outside(user.to_string()))
        }
        _ => None,
    }
}

/// Sends a NOTIFY of the REFER subscription with a sipfrag of `status`; returns its CSeq.
async fn notify(call: &Call, a: &mut AgentLeg, status: u16, reason: &str) -> u32 {
    let mut extra = refer::notify_headers(status, 60);
    extra.push(format!(
        "Contact: <{}{}>",
        msg::addr_uri(&a.from),
        transport_param(a.flow)
    ));
    let body = refer::sipfrag(status, reason);
    if let Some(req) = agent_req(a, "NOTIFY", &extra, Some((refer::SIPFRAG, &body))) {
        let _ = call.sip.send_request(req, a.flow).await;
    }
    a.cseq
}

/// The end of an attended transfer: on success the referrer (still `agent`) hears
/// `200 OK` and is released with BYE; on failure it hears why and keeps the call.
pub(crate) async fn transfer_done(
    call: &Call,
    caller: &mut CallerDialog,
    agent: &mut AgentLeg,
    ok: bool,
) {
    if ok {
        caller.ext.transfers += 1;
        caller.ext.agent_holds = false;
        caller.ext.hold_changed(Instant::now());
        notify(call, agent, 200, "OK").await;
        call.bye_agent(agent).await;
    } else {
        notify(call, agent, 481, "Call/Transaction Does Not Exist").await;
    }
}

/// The final NOTIFY was answered (or never will be): release the agent and hand the
/// caller to the loop's routing.
async fn finish_transfer(call: &Call, caller: &mut CallerDialog, a: &mut AgentLeg) -> Outcome {
    let Some(t) = a.ext.transfer.take() else {
        return Outcome::Continue;
    };
    // Phones usually hold before they transfer: that hold ends with the agent's leg.
    caller.ext.transfers += 1;
    caller.ext.agent_holds = false;
    caller.ext.hold_changed(Instant::now());
    if !t.final_sent {
        notify(call, a, 200, "OK").await;
    }
    call.bye_agent(a).await;
    Outcome::Transfer(t.route)
}

/// A response to a request we sent in the caller's dialog (our BYE, session refreshes).
pub(crate) async fn caller_response(ctx: Ctx<'_>, response: Response) -> Outcome {
    let Some((seq, method)) = msg::cseq(&response.headers) else {
        return Outcome::Continue;
    };
    let status = u16::from(response.status_code.clone());
    if !method.eq_ignore_ascii_case("INVITE") || status < 200 {
        return Outcome::Continue;
    }
    let caller = ctx.caller;
    let Some((sent, offer)) = caller.ext.refresh.take_if(|(s, _)| *s == seq) else {
        // A retransmitted 2xx of a refresh already handled: ACK again.
        if (200..300).contains(&status) {
            ack_caller(ctx.call, caller, seq).await;
        }
        return Outcome::Continue;
    };
    if !(200..300).contains(&status) {
        // 408/481: the dialog is gone (RFC 4028 §10); otherwise the timer expires on
        // its own if nothing else refreshes.
        if matches!(status, 408 | 481) {
            return Outcome::End(EndReason::SessionExpired);
        }
        return Outcome::Continue;
    }
    ack_caller(ctx.call, caller, sent).await;
    caller.ext.timer = refresh_answered(ctx.media, Side::A, &offer, &response).await;
    Outcome::Continue
}

/// A response to a request we sent in the agent's dialog other than the initial INVITE
/// (our BYE, transfer NOTIFYs).
pub(crate) async fn agent_response(ctx: Ctx<'_>, response: Response) -> Outcome {
    let status = u16::from(response.status_code.clone());
    let Some((seq, method)) = msg::cseq(&response.headers) else {
        return Outcome::Continue;
    };
    if status < 200 {
        return Outcome::Continue;
    }
    let Some(a) = ctx.agent.as_mut() else {
        return Outcome::Continue;
    };
    if method.eq_ignore_ascii_case("INVITE") {
        return agent_refreshed(ctx.call, ctx.media, a, &response, seq, status).await;
    }
    if !method.eq_ignore_ascii_case("NOTIFY") {
        return Outcome::Continue;
    }
    let Some(t) = a.ext.transfer.as_mut().filter(|t| t.notify == seq) else {
        return Outcome::Continue;
    };
    if t.final_sent {
        return finish_transfer(ctx.call, ctx.caller, a).await;
    }
    // NOTIFYs go one at a time so the referrer sees them in order, even over UDP.
    let cseq = notify(ctx.call, a, 200, "OK").await;
    if let Some(t) = a.ext.transfer.as_mut() {
        t.notify = cseq;
        t.final_sent = true;
    }
    Outcome::Continue
}

/// A final response to our refresh re-INVITE `seq` of the agent's dialog.
async fn agent_refreshed(
    call: &Call,
    media: &SessionHandle,
    a: &mut AgentLeg,
    response: &Response,
    seq: u32,
    status: u16,
) -> Outcome {
    let ok = (200..300).contains(&status);
    let ack = |a: &AgentLeg| {
        build(
            a.target.as_deref().unwrap_or_default(),
            &a.from,
            &a.to,
            &a.call_id,
            seq,
            "ACK",
            &[],
            None,
        )
    };
    let Some((_, offer)) = a.ext.refresh.take_if(|(s, _)| *s == seq) else {
        // A retransmitted 2xx of a refresh already handled: ACK again.
        if ok && let Some(req) = ack(a) {
            let _ = call.sip.send_stateless(req, a.flow).await;
        }
        return Outcome::Continue;
    };
    if !ok {
        return if matches!(status, 408 | 481) {
            Outcome::End(EndReason::SessionExpired)
        } else {
            Outcome::Continue
        };
    }
    if let Some(req) = ack(a) {
        let _ = call.sip.send_stateless(req, a.flow).await;
    }
    a.ext.timer = refresh_answered(media, Side::B, &offer, response).await;
    Outcome::Continue
}

/// A media event that is not a key press (those go to routing): latching, dead legs.
pub(crate) async fn media_event(ctx: Ctx<'_>, ev: MediaEvent) -> Outcome {
    match ev {
        MediaEvent::Leg(side, LegEvent::NoRtp) => {
            // A phone on hold may rightly send nothing; session timers guard those calls.
            if ctx.caller.ext.on_hold() {
                tracing::debug!(call_id = %ctx.call.call_id, ?side, "no RTP while on hold");
                return Outcome::Continue;
            }
            // The loop's ending sends BYE to both legs.
            tracing::info!(call_id = %ctx.call.call_id, ?side, "no RTP from a leg; hanging up");
            Outcome::End(EndReason::NoRtp)
        }
        other => {
            tracing::debug!(call_id = %ctx.call.call_id, ?other, "media event");
            Outcome::Continue
        }
    }
}

/// Our session refresh towards the caller: a re-INVITE repeating our last SDP, so a
/// phone sees no change (RFC 4028 §7.4), asking to stay the refresher.
async fn refresh_caller(call: &Call, caller: &mut CallerDialog) {
    if caller.ext.sdp.is_none() {
        caller.ext.sdp = leg_sdp(&caller.local_sdp);
    }
    let Some(offer) = caller.ext.sdp.as_ref().and_then(|s| s.last().cloned()) else {
        return;
    };
    let Some(timer) = caller.ext.timer else {
        return;
    };
    let mut extra = session_timer::uac_headers(
        timer.negotiated().interval,
        call.cfg.session_timer.min_se,
        Some(true),
    );
    extra.push(format!("Contact: {}", caller.ext.contact));
    let body = offer.to_string();
    if let Some(req) = caller_req(
        caller,
        &call.call_id,
        "INVITE",
        &extra,
        Some(("application/sdp", &body)),
    ) {
        caller.ext.refresh = Some((caller.cseq, offer));
        tracing::debug!(call_id = %call.call_id, "refreshing the caller's session");
        let _ = call.sip.send_request(req, caller.flow).await;
    }
}

/// Our session refresh towards the agent: a re-INVITE repeating our offer.
async fn refresh_agent(call: &Call, a: &mut AgentLeg) {
    if a.ext.sdp.is_none() {
        a.ext.sdp = leg_sdp(&a.offer);
    }
    let (Some(offer), Some(timer)) = (
        a.ext.sdp.as_ref().and_then(|s| s.last().cloned()),
        a.ext.timer,
    ) else {
        return;
    };
    tracing::debug!(call_id = %call.call_id, "refreshing the agent's session");
    reinvite_agent(call, a, offer, Some(timer)).await;
}

/// A re-INVITE to the agent with our `offer` (and the session `timer`, asking to stay
/// the refresher), whose 2xx [`agent_refreshed`] takes.
async fn reinvite_agent(
    call: &Call,
    a: &mut AgentLeg,
    offer: SessionDescription,
    timer: Option<SessionTimer>,
) {
    let mut extra = match timer {
        Some(timer) => session_timer::uac_headers(
            timer.negotiated().interval,
            call.cfg.session_timer.min_se,
            Some(true),
        ),
        None => Vec::new(),
    };
    extra.push(format!(
        "Contact: <{}{}>",
        msg::addr_uri(&a.from),
        transport_param(a.flow)
    ));
    let body = offer.to_string();
    if let Some(req) = agent_req(a, "INVITE", &extra, Some(("application/sdp", &body))) {
        a.ext.refresh = Some((a.cseq, offer));
        let _ = call.sip.send_request(req, a.flow).await;
    }
}

/// Moves the agent's RTP to `port` (a pair of its own, once its answer named an address
/// the shared port cannot take): a re-INVITE with our SDP on that port, whose 2xx is
/// taken as a refresh's ([`agent_refreshed`]). Until the phone has it, its media comes to
/// the shared port, which drops it.
pub(crate) async fn move_agent_media(call: &Call, a: &mut AgentLeg, port: u16) {
    let Some(mut sdp) = leg_sdp(&a.offer) else {
        return;
    };
    sdp.set_ports(port, None);
    let offer = sdp.offer(Direction::SendRecv);
    a.ext.sdp = Some(sdp);
    a.offer = offer.clone();
    reinvite_agent(call, a, offer, a.ext.timer).await;
}

/// An in-dialog request to the agent (as its UAC).
fn agent_req(
    a: &mut AgentLeg,
    method: &str,
    extra: &[String],
    body: Option<(&str, &str)>,
) -> Option<Request> {
    let target = a.target.clone()?;
    a.cseq += 1;
    build(
        &target, &a.from, &a.to, &a.call_id, a.cseq, method, extra, body,
    )
}

/// An in-dialog request to the caller (we are its UAS: our To is our From).
fn caller_req(
    c: &mut CallerDialog,
    call_id: &str,
    method: &str,
    extra: &[String],
    body: Option<(&str, &str)>,
) -> Option<Request> {
    c.cseq += 1;
    build(
        &c.target, &c.ours, &c.theirs, call_id, c.cseq, method, extra, body,
    )
}

#[allow(clippy::too_many_arguments)]
fn build(
    target: &str,
    from: &str,
    to: &str,
    call_id: &str,
    cseq: u32,
    method: &str,
    extra: &[String],
    body: Option<(&str, &str)>,
) -> Option<Request> {
    let mut text = format!(
        "{method} {target} SIP/2.0\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
    );
    for e in extra {
        text.push_str(&e.replace(['\r', '\n'], " "));
        text.push_str("\r\n");
    }
    match body {
        Some((ct, b)) => text.push_str(&format!(
            "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n{b}",
            b.len()
        )),
        None => text.push_str("Content-Length: 0\r\n\r\n"),
    }
    own_request(&text)
}

/// ACK of a 2xx to our re-INVITE `seq` in the caller's dialog.
async fn ack_caller(call: &Call, c: &CallerDialog, seq: u32) {
    if let Some(req) = build(
        &c.target,
        &c.ours,
        &c.theirs,
        &call.call_id,
        seq,
        "ACK",
        &[],
        None,
    ) {
        let _ = call.sip.send_stateless(req, c.flow).await;
    }
}

/// `;transport=tcp` (tls, ws, wss) for a Contact reached over that transport (UDP is the
/// default).
fn transport_param(flow: Flow) -> &'static str {
    flow.transport.uri_param()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hold_time_counts_while_either_side_holds() {
        let t0 = Instant::now();
        let ms = |n| t0 + Duration::from_millis(n);
        let mut ext = CallerExt::new("<sip:4000@127.0.0.1>", None);
        ext.agent_holds = true;
        ext.hold_changed(ms(0));
        // The caller also holds; the agent resumes; the caller resumes: one stretch.
        ext.caller_holds = true;
        ext.hold_changed(ms(500));
        ext.agent_holds = false;
        ext.hold_changed(ms(1000));
        ext.caller_holds = false;
        ext.hold_changed(ms(1500));
        assert_eq!(ext.hold_ms(), 1500);
        // A second hold adds up.
        ext.agent_holds = true;
        ext.hold_changed(ms(3000));
        ext.agent_holds = false;
        ext.hold_changed(ms(3250));
        assert_eq!(ext.hold_ms(), 1750);
        assert!(!ext.on_hold());
    }

    #[test]
    fn our_sdp_continues_the_first_one() {
        let first = SessionDescription::parse(
            "v=0\r\no=hotline 77 3 IN IP4 127.0.0.1\r\ns=Hotline\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 42000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n",
        )
        .unwrap();
        let leg = leg_sdp(&first).unwrap();
        assert_eq!(leg.local().rtp_port, 42000);
        assert_eq!(leg.local().session_id, 77);
        assert_eq!(leg.last(), Some(&first));
    }
}
