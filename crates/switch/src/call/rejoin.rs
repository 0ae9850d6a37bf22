//! The in-page phone's leg lost mid-call (issue #6): a browser agent's WebRTC phone lives
//! in the desk page, so a reload or a network blip takes its SIP-over-WebSocket connection
//! (and with it the registrar's binding, which drops with the connection) away while the
//! caller is still there. Instead of ending the call:
//!
//! * while a queue call is bridged to a browser contact, the call subscribes to the
//!   registrar's binding events ([`AppHandle::bindings`]) and looks the phone up once then
//!   and again on each event for its agent: among all of the agent's bindings (a desk
//!   phone may be registered too, with a higher q), the one on the leg's connection is
//!   the phone;
//! * binding gone → the phone is lost: the caller hears music, `call.phone_lost` goes to
//!   the desk, and the grace (`[cti] phone_rejoin_secs`) starts;
//! * the same phone back on a new connection (a blip: JsSIP reconnects and re-registers its
//!   contact) → the leg follows the new connection and the legs are bridged again; a new
//!   registration (the reloaded page) → a fresh INVITE with `X-Hotline-Rejoin: <call id>`,
//!   which the desk answers by itself; its answer replaces the agent's media leg and the
//!   legs are bridged again (the recording runs on: it is the session's);
//! * the grace over → the call goes back to its queue at the head: no call is lost. The
//!   agent did talk to the caller: their part ends as any call does (`call.ended`, their
//!   trail entry, wrap-up) and they are not ready (`phone_lost`) after it, never ready.
//!
//! The registrar is the SIP task's state (one owner): the call is told that its agent's
//! bindings changed and then asks for the current contact, so an idle browser call costs
//! nothing (no timer) and a lost phone is noticed as soon as its connection closes.

use std::time::{Duration, Instant as StdInstant};

use hotline_media::{Player, Side};
use hotline_sip::msg::{self, Response};
use hotline_sip::registrar::BindingEvent;
use hotline_sip::server::AppHandle;
use hotline_sip::{AppEvent, AppResponse, Flow};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::sync::oneshot;
use tokio::time::Instant;

use super::{AgentLeg, Call, Phase, State, event_call_id, sleep_until_opt, webrtc_leg};
use crate::acd::AcdInput;
use crate::events::AgentCommand;
use crate::incall::Outcome;

/// After a refused or failed rejoin INVITE, the next try waits this long.
const RETRY: Duration = Duration::from_secs(2);
/// The not-ready reason of an agent whose phone did not come back in time.
pub(crate) const PHONE_LOST: &str = "phone_lost";
/// The `reason` of the `call.ended` that ends such an agent's part of the call.
const PHONE_LOST_END: &str = "PhoneLost";

/// The watch over a browser agent's leg (owned by the call task's state).
#[derive(Default)]
pub(crate) struct Rejoin {
    /// Watching: the agent's binding events (`None`: not watching).
    bindings: Option<broadcast::Receiver<BindingEvent>>,
    /// The agent whose bindings matter.
    user: String,
    /// A look at the registrar is due then (at once after a bridge, the grace's end, a
    /// retry of the rejoin INVITE).
    next: Option<Instant>,
    /// The phone's registered contact (the binding on the leg's connection).
    contact: Option<String>,
    /// Lost: the grace ends then.
    until: Option<Instant>,
    /// The INVITE to the phone's new registration, until it is answered.
    leg: Option<AgentLeg>,
    retry_at: Option<Instant>,
}

impl Rejoin {
    /// Resolves when the call task must call [`tick`]: a look is due, or the agent's
    /// bindings changed (or events were missed). Cancel-safe: the call's `select!` drops
    /// it whenever something else happens first.
    pub(crate) async fn wake(&mut self) {
        let due = sleep_until_opt(self.next);
        tokio::pin!(due);
        loop {
            let closed = {
                let Some(rx) = self.bindings.as_mut() else {
                    return due.await;
                };
                tokio::select! {
                    () = &mut due => return,
                    r = rx.recv() => match r {
                        Ok(ev) if ev.aor == self.user => return,
                        Ok(_) => false,
                        Err(RecvError::Lagged(_)) => return,
                        Err(RecvError::Closed) => true,
                    },
                }
            };
            if closed {
                // The SIP task is gone; the call ends by other means.
                self.bindings = None;
            }
        }
    }

    /// The next look: the grace's end or the rejoin INVITE's retry, whichever is first.
    fn rearm(&mut self, now: Instant) {
        self.next = [self.until, self.retry_at.filter(|t| *t > now)]
            .into_iter()
            .flatten()
            .min();
    }

    /// Whether `ev` belongs to the rejoin INVITE's dialog.
    pub(crate) fn owns(&self, ev: &AppEvent) -> bool {
        self.leg
            .as_ref()
            .is_some_and(|l| event_call_id(ev) == Some(l.call_id.as_str()))
    }

    /// The phone is lost and the grace runs.
    pub(crate) fn lost(&self) -> bool {
        self.until.is_some()
    }
}

/// The legs were bridged: watch the agent's phone when it is a browser on a queue call.
/// Subscribing before the first look means no change between the two is missed.
pub(crate) fn watch(sip: &AppHandle, st: &mut State) {
    let browser = st.agent.as_ref().filter(|a| {
        a.answered
            && a.offer_of.is_some()
            && a.target
                .as_deref()
                .is_some_and(webrtc_leg::is_browser_contact)
    });
    if let Some(a) = browser
        && matches!(st.phase, Phase::Queue { .. })
        && !st.rejoin.lost()
    {
        if st.rejoin.bindings.is_none() || st.rejoin.user != a.user {
            st.rejoin.bindings = Some(sip.bindings());
            st.rejoin.user = a.user.clone();
        }
        st.rejoin.next = Some(Instant::now());
    } else if !st.rejoin.lost() {
        // Bridged to someone else now (a transfer to a SIP phone): nothing to watch.
        st.rejoin = Rejoin::default();
    }
}

/// A look at the registrar (and the grace's end).
pub(crate) async fn tick(call: &Call, st: &mut State) -> Outcome {
    st.rejoin.next = None;
    let Some(a) = st.agent.as_mut() else {
        st.rejoin = Rejoin::default();
        return Outcome::Continue;
    };
    let user = a.user.clone();
    let now = Instant::now();
    // All of the agent's bindings: a desk phone with a higher q must not hide the browser.
    let bindings = call.sip.contacts_for(&user).await.unwrap_or_default();
    // The binding on the leg's own connection: the phone is there.
    let here = bindings.iter().find(|(_, flow)| *flow == a.flow);
    // The same phone on a new connection (a blip).
    let moved = st
        .rejoin
        .contact
        .as_deref()
        .and_then(|c| bindings.iter().find(|(uri, _)| same_contact(c, uri)));
    match (here, moved) {
        (Some((uri, _)), _) if !st.rejoin.lost() => {
            st.rejoin.contact.get_or_insert_with(|| uri.clone());
        }
        (_, Some((_, flow))) => {
            a.flow = *flow;
            if st.rejoin.lost() {
                back(call, st, &user).await;
            }
        }
        _ => {
            if !st.rejoin.lost() {
                lose(call, st, &user).await;
            }
            let retry_ok = st.rejoin.retry_at.is_none_or(|t| now >= t);
            // A new registration of a browser phone (the reloaded page) is called back in;
            // a desk phone of the agent is not (it would only ring).
            let fresh = bindings
                .iter()
                .find(|(uri, _)| webrtc_leg::is_browser_contact(uri));
            if let Some((uri, flow)) = fresh
                && st.rejoin.leg.is_none()
                && retry_ok
            {
                invite(call, st, &user, uri, *flow).await;
            }
        }
    }
    if st.rejoin.until.is_some_and(|t| now >= t) {
        return requeue(call, st, &user).await;
    }
    st.rejoin.rearm(now);
    Outcome::Continue
}

/// Two contacts of one phone: JsSIP's random `*.invalid` host (or the host and port of
/// any other client) names the phone; parameters may differ between REGISTER and 2xx.
fn same_contact(a: &str, b: &str) -> bool {
    let host = |u: &str| {
        let u = msg::addr_uri(u);
        let u = u.split_once('@').map_or(u, |(_, h)| h);
        u.split([';', '>', '?'])
            .next()
            .unwrap_or(u)
            .to_ascii_lowercase()
    };
    host(a) == host(b)
}

async fn lose(call: &Call, st: &mut State, user: &str) {
    let grace = call.desk.phone_rejoin();
    st.rejoin.until = Some(Instant::now() + grace);
    let music = Player::new(vec![call.cfg.music.clone()], true, StdInstant::now());
    let _ = st.media.hold(Side::A, music).await;
    tracing::info!(call_id = %call.call_id, agent = user, grace_secs = grace.as_secs(), "agent's phone lost; caller on music");
    call.desk.phone_lost(user, grace.as_secs());
}

/// The phone is back on the call: the legs talk again (unless someone holds).
async fn back(call: &Call, st: &mut State, user: &str) {
    st.rejoin.until = None;
    st.rejoin.retry_at = None;
    if !st.caller.ext.agent_holds() {
        let _ = st.media.bridge().await;
    }
    tracing::info!(call_id = %call.call_id, agent = user, "agent's phone back; bridged again");
    call.desk.phone_back(user);
}

/// INVITEs the phone's new registration (the reloaded page), marked for the desk.
async fn invite(call: &Call, st: &mut State, user: &str, uri: &str, flow: Flow) {
    let mark = format!("{}: {}\r\n", hotline_sip::REJOIN_HEADER, call.call_id);
    match call
        .call_agent_with(&st.number, &st.host, user, uri, flow, &mark)
        .await
    {
        Some(mut leg) => {
            leg.offer_of = st.agent.as_ref().and_then(|a| a.offer_of);
            tracing::info!(call_id = %call.call_id, agent = user, "rejoining the agent's new registration");
            st.rejoin.leg = Some(leg);
        }
        None => retry_later(st),
    }
}

/// The rejoin INVITE failed: try again after [`RETRY`] (if the phone is still there).
fn retry_later(st: &mut State) {
    let now = Instant::now();
    st.rejoin.retry_at = Some(now + RETRY);
    st.rejoin.rearm(now);
}

/// An event of the rejoin INVITE's dialog.
pub(crate) async fn event(call: &Call, ev: AppEvent, st: &mut State) -> Outcome {
    if st.rejoin.leg.is_none() {
        return Outcome::Continue;
    }
    match ev {
        AppEvent::Response { response, .. } if initial_invite(&response) => {
            let status = u16::from(response.status_code.clone());
            if (200..300).contains(&status) {
                return rejoined(call, st, &response).await;
            }
            if status >= 300 {
                tracing::info!(call_id = %call.call_id, status, "rejoin INVITE refused");
                st.rejoin.leg = None;
                retry_later(st);
            }
        }
        AppEvent::Timeout { .. } => {
            st.rejoin.leg = None;
            retry_later(st);
        }
        AppEvent::Request { tx, .. } => {
            // Nothing is established yet on this dialog.
            let _ = call
                .sip
                .respond(tx, AppResponse::new(481, "Call/Transaction Does Not Exist"))
                .await;
        }
        _ => {}
    }
    Outcome::Continue
}

fn initial_invite(r: &Response) -> bool {
    msg::cseq(&r.headers).is_some_and(|(n, m)| n == 1 && m.eq_ignore_ascii_case("INVITE"))
}

/// The new registration answered: its leg replaces the lost one and the legs are bridged.
async fn rejoined(call: &Call, st: &mut State, resp: &Response) -> Outcome {
    let Some(mut leg) = st.rejoin.leg.take() else {
        return Outcome::Continue;
    };
    let media = match call.ack_answer(&mut leg, resp).await {
        Some(Some(m)) => m,
        None => {
            st.rejoin.leg = Some(leg);
            return Outcome::Continue;
        }
        Some(None) => {
            tracing::warn!(call_id = %call.call_id, "rejoin answer unusable");
            retry_later(st);
            return Outcome::Continue;
        }
    };
    // The lost phone's leg goes; the session's recording tap stays.
    if let Ok(Some(old)) = st.media.detach().await {
        old.release().await;
    }
    if st.media.attach(media).await.is_err() {
        return Outcome::End(super::EndReason::Failed);
    }
    let user = leg.user.clone();
    st.agent = Some(leg);
    st.rejoin.contact = None;
    back(call, st, &user).await;
    st.bridged = true;
    // Learn the new phone's contact at once; its bindings are watched from there.
    st.rejoin.next = Some(Instant::now());
    Outcome::Continue
}

/// The grace is over: the call goes back to the head of its queue; the agent's part ends
/// (`call.ended`, trail entry, wrap-up) and they are not ready (`phone_lost`) after it;
/// the next agent gets the call, its recording running on.
async fn requeue(call: &Call, st: &mut State, user: &str) -> Outcome {
    let Phase::Queue { name } = &st.phase else {
        return Outcome::End(super::EndReason::Failed);
    };
    let queue = name.clone();
    tracing::info!(call_id = %call.call_id, agent = user, %queue, "agent's phone did not come back; requeued at the head");
    st.rejoin = Rejoin::default();
    if let Ok(Some(old)) = st.media.detach().await {
        old.release().await;
    }
    st.agent = None;
    st.bridged = false;
    // Not ready after the call first, then the call's end: the agent goes through
    // wrap-up into not ready, and is never available in between (a queue without wrap-up
    // time ends it at once).
    let (reply, _) = oneshot::channel();
    call.to_acd(AcdInput::Agent {
        agent: user.to_string(),
        cmd: AgentCommand::NotReadyAfterCall {
            reason: PHONE_LOST.into(),
        },
        reply,
    })
    .await;
    if st.queued {
        call.to_acd(AcdInput::Ended { call: call.acd_id }).await;
        st.queued = false;
    }
    // The agent's part is over: a TRANSFER line back to the queue, their trail entry
    // and `call.ended` for their desk (wrap-up and disposition as for any call).
    call.log_transfer(&st.trace, user, &format!("queue:{queue}"));
    call.desk.part_ended(PHONE_LOST_END).await;
    call.requeue_at_head(queue, st).await
}

#[cfg(test)]
mod tests {
    use super::same_contact;

    #[test]
    fn a_phone_is_known_by_its_contact_host() {
        assert!(same_contact(
            "<sip:k3j2@a1b2c3.invalid;transport=ws>",
            "sip:bob@A1B2C3.invalid;transport=ws;ob"
        ));
        assert!(!same_contact(
            "sip:k3j2@a1b2c3.invalid;transport=ws",
            "sip:x9@ffee00.invalid;transport=ws"
        ));
    }
}
