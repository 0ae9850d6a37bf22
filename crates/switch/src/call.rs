//! One call: its task owns the caller's dialog state and the media session.

use std::sync::Arc;
use std::time::Instant;

use hotline_media::sdp::{Direction, LocalMedia, SessionDescription, answer_offer};
use hotline_media::session::SessionStats;
use hotline_media::{
    LegConfig, MediaError, MediaEvent, MediaLeg, Player, PortAllocator, Side, spawn_session,
};
use hotline_sip::msg::{Method, Request};
use hotline_sip::server::AppHandle;
use hotline_sip::{AppEvent, AppResponse, Flow, ServerTxId};
use tokio::sync::mpsc;

use crate::{CallInput, Route, SwitchConfig};

/// How a call ended: for tests, CDRs (later) and logs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallEnd {
    pub call_id: String,
    /// The final status of the caller's INVITE (200 when answered).
    pub status: u16,
    pub reason: EndReason,
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
    /// Our 2xx was never acknowledged.
    NoAck,
    /// The switch went away.
    Shutdown,
}

pub(crate) struct Call {
    pub cfg: Arc<SwitchConfig>,
    pub sip: AppHandle,
    pub ports: Arc<PortAllocator>,
    pub call_id: String,
    pub inbox: mpsc::Receiver<CallInput>,
}

/// Our To tag on the caller's dialog: unique per call task.
fn local_tag() -> String {
    format!("hl{:016x}", rand_u64())
}

fn rand_u64() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    // RandomState is seeded from the OS once per process and varied per instance.
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_nanos() as u64)
            .unwrap_or(0),
    );
    h.finish()
}

impl Call {
    fn end(&self, status: u16, reason: EndReason, media: Option<SessionStats>) -> CallEnd {
        CallEnd {
            call_id: self.call_id.clone(),
            status,
            reason,
            media,
        }
    }

    async fn reject(&self, tx: ServerTxId, status: u16, reason: &str) -> CallEnd {
        tracing::info!(call_id = %self.call_id, status, reason, "call rejected");
        let _ = self.sip.respond(tx, AppResponse::new(status, reason)).await;
        self.end(status, EndReason::Rejected, None)
    }

    pub(crate) async fn run(mut self, tx: ServerTxId, invite: Request, flow: Flow) -> CallEnd {
        let number = invite.uri.user().unwrap_or_default().to_string();
        let Some(Route::Queue(queue)) = self.cfg.routes.get(&number).cloned() else {
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
        let tag = local_tag();
        let contact = format!("Contact: <sip:{number}@{}>", flow.local);
        let ok = AppResponse::new(200, "OK")
            .tag(&tag)
            .header(contact)
            .body("application/sdp", answer.to_string());
        if self.sip.respond(tx, ok).await.is_err() {
            drop(media.stop().await);
            return self.end(500, EndReason::Shutdown, None);
        }
        tracing::info!(call_id = %self.call_id, %queue, "call answered; music on hold");
        let reason = loop {
            tokio::select! {
                input = self.inbox.recv() => match input {
                    None => break EndReason::Shutdown,
                    Some(CallInput::Sip(ev)) => {
                        if let Some(r) = self.sip_event(ev).await {
                            break r;
                        }
                    }
                },
                Some(ev) = media_rx.recv() => self.media_event(ev),
            }
        };
        let stats = media.stats().await.ok();
        // Stopping returns the legs; dropping them closes the sockets and frees the ports.
        drop(media.stop().await);
        tracing::info!(call_id = %self.call_id, ?reason, "call ended");
        let status = if reason == EndReason::Cancelled {
            487
        } else {
            200
        };
        self.end(status, reason, stats)
    }

    /// Handles a SIP event of the caller's dialog; `Some` ends the call.
    async fn sip_event(&mut self, ev: AppEvent) -> Option<EndReason> {
        match ev {
            AppEvent::Ack { .. } => None,
            AppEvent::Cancelled { .. } => Some(EndReason::Cancelled),
            AppEvent::AckTimeout { .. } => Some(EndReason::NoAck),
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
            AppEvent::Response { .. } | AppEvent::Timeout { .. } => None,
        }
    }

    fn media_event(&self, ev: MediaEvent) {
        tracing::debug!(call_id = %self.call_id, ?ev, "media event");
    }
}
