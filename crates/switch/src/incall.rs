//! In-dialog handling of an answered call: requests that arrive inside the caller's or the
//! agent's dialog (BYE, INFO, re-INVITE, UPDATE, REFER, OPTIONS …), media events of the
//! legs that are not routing matters (dead legs, RTCP BYE), and the call's in-dialog
//! timers (session timers later).
//!
//! The call loop (`call.rs`) owns routing (IVR, queue, offers, bridge) and calls into this
//! module through these seams: [`caller_request`], [`agent_request`], [`caller_response`],
//! [`agent_response`], [`media_event`] (caller key presses excepted) and
//! [`InCall::deadline`]/[`InCall::timeout`]. Each returns an [`Outcome`] the loop acts on.
//! Per-dialog state this module needs lives in [`CallerExt`] / [`AgentExt`], fields of the
//! call loop's `CallerDialog` / `AgentLeg`, so it can grow here without touching `call.rs`.

use hotline_media::dtmf::parse_info_body;
use hotline_media::{LegEvent, MediaEvent, SessionHandle};
use hotline_sip::msg::{Header, Method, Request, Response};
use hotline_sip::{AppResponse, Flow, ServerTxId};

use crate::call::{AgentLeg, Call, CallerDialog, EndReason};

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
}

/// In-dialog state of the caller's dialog (extended by the in-call features).
#[derive(Debug, Default)]
pub(crate) struct CallerExt {}

/// In-dialog state of the agent's dialog (extended by the in-call features).
#[derive(Debug, Default)]
pub(crate) struct AgentExt {}

/// In-call state of the whole call, with its timers (none yet).
#[derive(Debug, Default)]
pub(crate) struct InCall {}

impl InCall {
    /// When [`InCall::timeout`] must run next (session timers, dead-leg checks).
    pub(crate) fn deadline(&self) -> Option<tokio::time::Instant> {
        None
    }

    /// The deadline passed.
    pub(crate) async fn timeout(&mut self, _ctx: Ctx<'_>) -> Outcome {
        Outcome::Continue
    }
}

/// What the in-dialog handlers may look at and change.
#[allow(dead_code)] // the in-call features (hold, transfer) use every field
pub(crate) struct Ctx<'a> {
    pub call: &'a Call,
    pub caller: &'a mut CallerDialog,
    /// The agent leg (ringing or answered), if any.
    pub agent: &'a mut Option<AgentLeg>,
    pub media: &'a SessionHandle,
    /// Whether the agent leg is bridged to the caller.
    pub bridged: bool,
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
        // The media stays as answered: re-offers are declined (the dialog stays up,
        // RFC 3261 §14.2).
        Method::Invite | Method::Update => {
            let _ = sip
                .respond(tx, AppResponse::new(488, "Not Acceptable Here"))
                .await;
            Outcome::Continue
        }
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
        Method::Options | Method::Info => {
            let _ = sip.respond(tx, AppResponse::new(200, "OK")).await;
            Outcome::Continue
        }
        _ => {
            let _ = sip
                .respond(tx, AppResponse::new(488, "Not Acceptable Here"))
                .await;
            Outcome::Continue
        }
    }
}

/// A response to a request we sent in the caller's dialog (our BYE, later re-INVITEs).
pub(crate) async fn caller_response(_ctx: Ctx<'_>, _response: Response) -> Outcome {
    Outcome::Continue
}

/// A response to a request we sent in the agent's dialog other than the initial INVITE
/// (our BYE, later re-INVITEs).
pub(crate) async fn agent_response(_ctx: Ctx<'_>, _response: Response) -> Outcome {
    Outcome::Continue
}

/// A media event that is not a key press (those go to routing): latching, dead legs.
pub(crate) async fn media_event(ctx: Ctx<'_>, ev: MediaEvent) -> Outcome {
    match ev {
        MediaEvent::Leg(side, LegEvent::NoRtp) => {
            tracing::info!(call_id = %ctx.call.call_id, ?side, "no RTP from a leg");
        }
        other => tracing::debug!(call_id = %ctx.call.call_id, ?other, "media event"),
    }
    Outcome::Continue
}
