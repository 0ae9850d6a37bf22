//! One call: its task owns the caller's dialog, the agent leg (if any) and the media
//! session, and walks the call's [`Route`]: hours, menus, queues, extensions, messages.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use hotline_media::ports::BoundPorts;
use hotline_media::recorder::{Channel, RecorderTap, RecordingJob, start_recording};
use hotline_media::sdp::{
    Direction, LocalMedia, SessionDescription, answer_offer, build_offer, offered_rtp,
    process_answer,
};
use hotline_media::session::SessionStats;
use hotline_media::{
    LegConfig, LegEvent, MediaError, MediaEvent, MediaLeg, Player, PortAllocator, Prompt,
    SessionHandle, Side, session::spawn_session_with,
};
use hotline_sip::msg::{self, Header, Request, Response, SipMessage};
use hotline_sip::server::AppHandle;
use hotline_sip::{AppEvent, AppResponse, ClientTxId, Flow, ServerTxId};
use tokio::sync::{mpsc, oneshot};

use hotline_acd::{AgentId, CallId, Fallback};
use hotline_cdr::{CallRecord, CallResult, HangupSide, QueueEvent, QueueEventKind};

use crate::acd::{AcdInput, AcdOutput};
use crate::ivr::{Menu, MenuRun, MenuStep};
use crate::{CallInput, Control, Route, SwitchConfig, announce, incall, webrtc_leg};

#[path = "supervise.rs"]
mod supervise;

mod rejoin;
mod voicemail_call;

/// How a call ended: for tests, CDRs and logs.
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
    /// The route taken, e.g. `menu:main>queue:sales`.
    pub route: String,
    /// The last queue the call was in.
    pub queue: Option<String>,
    /// The agent/extension user who answered.
    pub agent: Option<String>,
    /// The recording of the bridged call.
    pub recording: Option<PathBuf>,
    /// Position/wait announcements played to the caller.
    pub announcements: u32,
    /// Time on hold (either side holding), for the CDR.
    pub hold_ms: u64,
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
    /// Out of hours: the closed message was played and Hotline hung up.
    Closed,
    /// The route ended in a hangup (a menu's default).
    Hangup,
    /// The caller chose to be called back and Hotline hung up (their place is kept).
    Callback,
    /// The route could not be carried out after answer (unknown menu, unreachable
    /// extension, an agent answer with unusable media).
    Failed,
    /// The switch went away.
    Shutdown,
    /// Still up at the end of a graceful drain: Hotline sent BYE to both legs.
    Drained,
    /// The agent's desk hung up (CTI): Hotline sent BYE to both sides.
    DeskHangup,
    /// A session timer (RFC 4028) expired without refresh: Hotline sent BYE to both legs.
    SessionExpired,
    /// A leg sent no RTP for `[media] no_rtp_timeout_secs`: Hotline sent BYE to both legs.
    NoRtp,
    /// Attended transfer: this call's agent was handed to another call (whose agent
    /// asked with REFER/Replaces); Hotline sent BYE to this call's caller (the referrer).
    Transferred,
    /// The caller left a voicemail message (ended by key, limit or silence: Hotline said
    /// goodbye and sent BYE; a caller hanging up after a message also ends this way).
    Voicemail,
    /// A conference the caller had left lost its added party: with fewer than two
    /// parties it ends, and Hotline sent BYE to the agent.
    ConferenceEnded,
    /// A transfer target did not answer and nothing could take the caller back (no
    /// no-answer destination, not a queue call, the transferring agent busy or not
    /// answering either), or the call followed more than [`MAX_RECALLS`]
    /// no-answer destinations: Hotline sent BYE to the caller. CDR result `failed`.
    TransferNotAnswered,
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

/// Builds and boxes a future inside its own stack frame. A debug build keeps every
/// future the call loop awaits on that loop's poll stack (over 1 MB of them), which
/// overflowed a tokio worker's 2 MiB stack once a WebRTC offer was built on top; boxed
/// here, the loop only holds pointers.
///
/// The box is allocated before the future is made: `Box::pin(make())` builds the whole
/// future (its size is that of its largest await, kilobytes) on the stack and copies it
/// over, while a new future holds only its arguments; made into the allocation, only
/// they are written.
pub(crate) fn boxed<'a, T, F>(
    make: impl FnOnce() -> F,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = T> + Send + 'a>>
where
    F: std::future::Future<Output = T> + Send + 'a,
{
    let slot = Box::<F>::new_uninit();
    let made: Box<F> = Box::write(slot, make());
    Box::into_pin(made)
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

/// Parses a request we wrote (no Via: the core adds its own). Trusted text, so not
/// through [`msg::parse`]'s checks for the network's messages (and no Via added for them
/// and taken off again): three of these per queue call.
pub(crate) fn own_request(text: &str) -> Option<Request> {
    match msg::parse_own(text.as_bytes()) {
        Ok(SipMessage::Request(r)) => Some(r),
        _ => None,
    }
}

/// The caller's dialog, as a UAS: what we need to send requests to the caller.
pub(crate) struct CallerDialog {
    pub flow: Flow,
    /// The caller's Contact (remote target).
    pub target: String,
    /// Our To (with our tag) becomes From in our requests.
    pub ours: String,
    /// Our tag (in the To of the caller's in-dialog requests).
    pub tag: String,
    /// The caller's From becomes To.
    pub theirs: String,
    /// CSeq of our last request in this dialog.
    pub cseq: u32,
    /// The negotiated caller media (from the INVITE's offer and our answer).
    #[allow(dead_code)] // for the in-call features (re-INVITE, transfer)
    pub local_sdp: SessionDescription,
    /// In-call state of this dialog (owned by `incall`).
    #[allow(dead_code)] // for the in-call features
    pub ext: incall::CallerExt,
}

/// The agent leg, as a UAC.
pub(crate) struct AgentLeg {
    pub call_id: String,
    pub flow: Flow,
    /// The INVITE transaction (for CANCEL).
    pub tx: ClientTxId,
    /// Our From (with our tag).
    pub from: String,
    /// To of the request; with the agent's tag once answered.
    pub to: String,
    /// The agent's Contact from the 2xx.
    pub target: Option<String>,
    /// Our SDP offer to the agent.
    pub offer: SessionDescription,
    pub ports: Option<BoundPorts>,
    pub answered: bool,
    /// Refused, timed out or unusable: the offer is over.
    pub failed: bool,
    /// The ACD's agent this leg offers the call to (none for an extension).
    pub offer_of: Option<AgentId>,
    /// The agent's SIP user.
    #[allow(dead_code)] // for the in-call features (re-INVITE, transfer)
    pub user: String,
    /// CSeq of our last request in this dialog (the INVITE is 1).
    pub cseq: u32,
    /// In-call state of this dialog (owned by `incall`).
    #[allow(dead_code)] // for the in-call features
    pub ext: incall::AgentExt,
    /// A browser agent's WebRTC gateway until its answer arrives (`webrtc_leg`). Boxed:
    /// the peer is large and only browser legs have one, and every call holds several
    /// `AgentLeg` slots (agent, conference party, consultation, supervisor, rejoin).
    pub webrtc: Option<Box<hotline_media::WebRtcLeg>>,
    /// Our INVITE, to send again after a 422 (`timer_retry`).
    pub invite: crate::timer_retry::AgentInvite,
    /// An outside number called through the trunk (a transfer or conference target):
    /// nobody's desk, never the call's agent in the CDR or the trail.
    pub outside: bool,
    /// A transfer target (blind, or left ringing by an agent who hung up while
    /// consulting): where the caller goes if it does not answer ([`Call::unanswered`]).
    pub back_to: Option<TransferBack>,
    /// A user or number Hotline rings by itself (not an ACD offer, whose queue times it):
    /// when it has rung long enough (`[[extensions]] ring_timeout_secs`).
    pub ring_until: Option<tokio::time::Instant>,
}

/// Where a caller goes whose transfer target did not answer (a blind transfer, or an
/// attended one whose agent hung up while the target rang), unless the target has a
/// no-answer destination of its own.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum TransferBack {
    /// A queue call: back to the head of the queue it came from.
    Queue(String),
    /// Any other call: to the transferring agent again, if free.
    Agent(String),
}

/// Where the call is on its route.
enum Phase {
    /// Not yet routed.
    Start,
    /// In a menu; the no-key deadline runs once its prompt has played.
    Menu { menu: Arc<Menu>, run: MenuRun },
    /// Waiting in a queue (with music), possibly ringing agents.
    Queue { name: String },
    /// Ringing or talking to an extension (no ACD).
    Extension,
    /// Playing a message; the call ends with `then` when it has played.
    Message { then: EndReason },
    /// In a voicemail box: greeting, then recording the caller.
    Voicemail(Box<voicemail_call::InBox>),
}

/// What the CDR will say about the call, filled in as it goes.
#[derive(Debug, Default)]
pub(crate) struct Trace {
    /// The caller's user (From), the number a callback goes to.
    pub caller: String,
    pub caller_name: Option<String>,
    pub dialed: String,
    pub sip_call_id: String,
    pub direction: &'static str,
    pub route: Vec<String>,
    pub queue: Option<String>,
    pub agent: Option<String>,
    pub arrived_at: i64,
    pub queued_at: Option<i64>,
    pub offered_at: Option<i64>,
    pub answered_at: Option<i64>,
    pub recording: Option<PathBuf>,
    pub announcements: u32,
    /// The call's outcome is settled (closed message, callback accepted, goodbye) even
    /// if the caller hangs up before the message ends.
    pub settled: Option<EndReason>,
    /// Time the caller spent held by the agent (from the in-call state), for the CDR.
    pub hold_ms: i64,
    /// Transfers carried out (from the in-call state), for the CDR.
    pub transfers: u32,
}

/// The call's mutable state once answered.
struct State {
    caller: CallerDialog,
    agent: Option<AgentLeg>,
    media: SessionHandle,
    bridged: bool,
    phase: Phase,
    /// The menu's no-key deadline.
    deadline: Option<tokio::time::Instant>,
    /// In the ACD now (an Abandoned/Ended is owed when the call ends).
    queued: bool,
    /// Where the ACD sends this call's decisions.
    acd_tx: mpsc::Sender<AcdOutput>,
    /// The agent hears the whisper; bridge when it ends.
    whispering: bool,
    recording: Option<RecordingJob>,
    /// The recording's tap, kept while paused so the writer keeps the file open.
    recording_tap: Option<RecorderTap>,
    /// The SIP user marked busy in the ACD for an extension call.
    busy_user: Option<String>,
    /// The ACD's latest expected wait for this caller.
    ewt: Option<u64>,
    /// Keys the desk sends to the caller, one after the other.
    dtmf: DeskDtmf,
    /// The desk paused the recording (card numbers): the media session has no tap.
    recording_paused: bool,
    /// The desk's attended transfer, while the agent consults the target. This and the
    /// next two are boxed: rare, and inline they would size every call's task.
    consult: Option<Box<Consult>>,
    /// The party the desk added for a conference (ringing or answered).
    third: Option<Box<AgentLeg>>,
    /// The caller hung up in a conference: agent and added party talk on (the caller's
    /// dialog is over).
    caller_left: bool,
    /// A supervisor listening in (`supervise`), ringing or joined.
    supervisor: Option<Box<supervise::Supervisor>>,
    /// The callback offer was played (the key is honoured from then on).
    callback_offered: bool,
    /// A browser agent's phone, watched for a reload or blip (`rejoin`).
    rejoin: rejoin::Rejoin,
    /// No-answer destinations followed so far ([`Call::recall`]).
    recalls: u32,
    number: String,
    host: String,
    trace: Trace,
}

/// No-answer destinations one call follows before it ends: each ring-out starts a new
/// route walk, so [`MAX_HOPS`] cannot stop destinations that lead back round (through a
/// menu's default or a queue's fallback; direct cycles are refused by the config).
pub const MAX_RECALLS: u32 = 8;

/// Routes followed in a row without the caller doing anything (hours → menu → …); a
/// configuration whose routes loop stops here instead of spinning.
const MAX_HOPS: usize = 16;

impl State {
    /// When the leg Hotline rings by itself (not an ACD offer) rings out.
    fn ring_until(&self) -> Option<tokio::time::Instant> {
        self.agent
            .as_ref()
            .filter(|a| !a.answered && !a.failed && a.offer_of.is_none())
            .and_then(|a| a.ring_until)
    }

    /// An answered call's state before routing: no agent, nothing playing or pending.
    fn new(
        caller: CallerDialog,
        media: SessionHandle,
        acd_tx: mpsc::Sender<AcdOutput>,
        number: String,
        host: String,
        trace: Trace,
    ) -> State {
        State {
            caller,
            agent: None,
            media,
            bridged: false,
            phase: Phase::Start,
            deadline: None,
            queued: false,
            acd_tx,
            whispering: false,
            recording: None,
            recording_tap: None,
            busy_user: None,
            ewt: None,
            dtmf: DeskDtmf::default(),
            recording_paused: false,
            consult: None,
            third: None,
            caller_left: false,
            supervisor: None,
            callback_offered: false,
            rejoin: rejoin::Rejoin::default(),
            recalls: 0,
            number,
            host,
            trace,
        }
    }

    fn caller_number(&self) -> String {
        self.trace.caller.clone()
    }
}

impl Call {
    pub(crate) fn end(
        &self,
        status: u16,
        reason: EndReason,
        media: Option<SessionStats>,
    ) -> CallEnd {
        CallEnd {
            call_id: self.call_id.clone(),
            status,
            reason,
            bridged: false,
            media,
            route: String::new(),
            queue: None,
            agent: None,
            recording: None,
            announcements: 0,
            hold_ms: 0,
        }
    }

    /// The caller's leg on the shared RTP port, when there is one and the caller's SDP
    /// names the address its INVITE came from: the port knows a leg only by its remote
    /// address, so a caller behind NAT (media from elsewhere) or a second leg with the
    /// same address gets a port pair of its own (`None` here).
    async fn shared_leg(&self, offer: &SessionDescription, flow: Flow) -> Option<BoundPorts> {
        let sp = self.cfg.shared_rtp.as_ref()?;
        let ours = LocalMedia::new(self.cfg.media_ip, sp.local_addr().ok()?.port());
        let remote = offered_rtp(offer, &ours).ok()??;
        if remote.ip() != flow.remote.ip() {
            tracing::debug!(call_id = %self.call_id, %remote, from = %flow.remote, "caller's media address differs from its signalling: own RTP ports");
            return None;
        }
        match sp.bind_leg(remote, &self.ports, self.cfg.media_ip).await {
            Ok(b) => Some(b),
            Err(e) => {
                tracing::debug!(call_id = %self.call_id, error = %e, "own RTP ports");
                None
            }
        }
    }

    /// Ports and our media for an offer to a phone. RTP goes on the shared port when
    /// there is one, the leg may use it (`shared_ok`: the ACD's offers, whose answers
    /// [`Call::ack_answer`] can move) and the phone's contact names the address its
    /// signalling comes from (else it is behind NAT, and its media would come from an
    /// address its SDP does not give), unless it answered unfit before; else a pair.
    async fn offer_ports(
        &self,
        uri: &str,
        flow: Flow,
        shared_ok: bool,
    ) -> Option<(BoundPorts, LocalMedia)> {
        if shared_ok
            && let Some(sp) = &self.cfg.shared_rtp
            && contact_ip(uri) == Some(flow.remote.ip())
            && !sp.is_misfit(flow.remote)
            && let (Ok(b), Ok(at)) = (
                sp.reserve_leg(&self.ports, self.cfg.media_ip, Some(flow.remote))
                    .await,
                sp.local_addr(),
            )
        {
            let mut local = LocalMedia::new(self.cfg.media_ip, at.port());
            local.rtcp_port = Some(b.pair.rtcp());
            return Some((b, local));
        }
        let ports = self.ports.bind(self.cfg.media_ip).await.ok()?;
        let local = LocalMedia::new(self.cfg.media_ip, ports.pair.rtp());
        Some((ports, local))
    }

    async fn reject(&self, tx: ServerTxId, status: u16, reason: &str, trace: Trace) -> CallEnd {
        tracing::info!(call_id = %self.call_id, status, reason, "call rejected");
        self.record(&trace, EndReason::Rejected, status).await;
        let _ = self.sip.respond(tx, AppResponse::new(status, reason)).await;
        let mut end = self.end(status, EndReason::Rejected, None);
        end.route = trace.route.join(">");
        end
    }

    /// Writes the call's CDR (before the dialog is released: the sink returns once the
    /// row is committed, or after its bounded timeout with the row still buffered).
    pub(crate) async fn record(&self, t: &Trace, reason: EndReason, status: u16) {
        let ended_at = self.now_ms();
        let (result, hangup_side) = outcome(reason, t);
        let waited_until = t.answered_at.unwrap_or(ended_at);
        let r = CallRecord {
            call_id: self.call_id.clone(),
            sip_call_id: t.sip_call_id.clone(),
            direction: t.direction.to_string(),
            caller: t.caller.clone(),
            caller_name: t.caller_name.clone(),
            dialed: t.dialed.clone(),
            route: t.route.join(">"),
            queue: t.queue.clone(),
            agent: t.agent.clone(),
            arrived_at: t.arrived_at,
            queued_at: t.queued_at,
            offered_at: t.offered_at,
            answered_at: t.answered_at,
            ended_at,
            wait_ms: t.queued_at.map_or(0, |q| (waited_until - q).max(0)),
            talk_ms: t
                .answered_at
                .map_or(0, |a| (ended_at - a - t.hold_ms).max(0)),
            hold_ms: t.hold_ms,
            result,
            hangup_side,
            sip_status: status,
            recording: t.recording.as_ref().map(|p| p.display().to_string()),
            transfers: t.transfers,
        };
        if let Err(e) = self.cfg.cdr.record(r).await {
            tracing::warn!(call_id = %self.call_id, error = %e, "CDR not yet durable");
        }
    }

    pub(crate) fn now_ms(&self) -> i64 {
        self.cfg.clock.now_ms()
    }

    pub(crate) async fn run(
        mut self,
        tx: ServerTxId,
        invite: Request,
        flow: Flow,
        local_host: String,
    ) -> CallEnd {
        let number = invite.uri.user().unwrap_or_default().to_string();
        let from = msg::from_value(&invite.headers).unwrap_or_default();
        let (caller_user, caller_name) = from_identity(from);
        let mut trace = Trace {
            arrived_at: self.now_ms(),
            caller: caller_user,
            caller_name,
            dialed: number.clone(),
            sip_call_id: self.call_id.clone(),
            direction: "inbound",
            ..Trace::default()
        };
        self.cfg.cdr.started(
            self.call_id.clone(),
            self.call_id.clone(),
            trace.caller.clone(),
            number.clone(),
            trace.arrived_at,
        );
        let route = match self.cfg.routes.get(&number) {
            Some(r) => r.clone(),
            // A browser calling a user directly (the SIP core hands those over when the
            // user's phone is not a browser): through the gateway, rung as an extension.
            None if self.cfg.users.contains(&number)
                && webrtc_leg::is_webrtc_offer(&invite.body) =>
            {
                Route::Extension(number.clone())
            }
            None => return self.reject(tx, 404, "Not Found", trace).await,
        };
        // WebRTC hook: a browser's offer (DTLS-SRTP) is answered by the gateway below.
        let browser = webrtc_leg::is_webrtc_offer(&invite.body);
        let offer = match std::str::from_utf8(&invite.body)
            .map_err(|_| MediaError::SdpMalformed {
                line: 0,
                reason: "SDP is not UTF-8",
            })
            .and_then(SessionDescription::parse)
        {
            Ok(o) => Some(o),
            Err(_) if browser => None,
            Err(e) => return self.reject(tx, e.sip_status(), &e.to_string(), trace).await,
        };
        // A number routed straight to an extension must be reachable before we answer.
        if let Route::Extension(user) = &route
            && !matches!(self.sip.contact_for(user).await, Ok(Some(_)))
        {
            trace.route.push(route.label());
            return self.reject(tx, 480, "Temporarily Unavailable", trace).await;
        }
        let contact = format!("<sip:{number}@{local_host}{}>", transport_param(flow));
        // In-call hook: the session timer (RFC 4028), or a 422 before anything is set up.
        let (caller_ext, timer_headers) =
            match incall::answer_caller(&self.caller_timer(browser), &invite, &contact) {
                Ok(x) => x,
                Err(resp) => {
                    let status = resp.status;
                    let reason = resp.reason.clone();
                    let _ = self.sip.respond(tx, *resp).await;
                    tracing::info!(call_id = %self.call_id, status, %reason, "call rejected");
                    return self.end(status, EndReason::Rejected, None);
                }
            };
        let (leg, answer, answer_sdp) = match offer {
            Some(offer) if !browser => {
                let bound = match self.shared_leg(&offer, flow).await {
                    Some(b) => b,
                    None => match self.ports.bind(self.cfg.media_ip).await {
                        Ok(b) => b,
                        Err(e) => return self.reject(tx, 503, &e.to_string(), trace).await,
                    },
                };
                let mut local = LocalMedia::new(self.cfg.media_ip, bound.pair.rtp());
                if bound.rtp.is_shared()
                    && let Ok(a) = bound.rtp.local_addr()
                {
                    local.rtp_port = a.port();
                    local.rtcp_port = Some(bound.pair.rtcp());
                }
                let (answer, negotiated) = match answer_offer(&offer, &local, Direction::SendRecv) {
                    Ok(a) => a,
                    Err(e) => {
                        return self.reject(tx, e.sip_status(), &e.to_string(), trace).await;
                    }
                };
                let leg = MediaLeg::new(bound, LegConfig::from(&negotiated), self.cfg.leg_timing);
                let sdp = answer.to_string();
                (leg, answer, sdp)
            }
            _ => {
                let timing = self.cfg.leg_timing;
                match boxed(|| webrtc_leg::answer(&self.ports, &self.cfg, &invite.body, timing))
                    .await
                {
                    Ok(x) => x,
                    Err(e) => {
                        return self.reject(tx, e.sip_status(), &e.to_string(), trace).await;
                    }
                }
            }
        };
        let mut caller_ext = caller_ext;
        incall::caller_webrtc(&mut caller_ext, &leg);
        let (media_tx, media_rx) = mpsc::channel(64);
        let media = spawn_session_with(leg, media_tx, &self.cfg.session_options());
        let tag = format!("hl{}", token());
        let mut ok = AppResponse::new(200, "OK")
            .tag(&tag)
            .header(format!("Contact: {contact}"))
            .body("application/sdp", answer_sdp);
        ok.headers.extend(timer_headers);
        if self.sip.respond(tx, ok).await.is_err() {
            drop(media.stop().await);
            return self.end(500, EndReason::Shutdown, None);
        }
        let to = msg::to_value(&invite.headers).unwrap_or_default();
        let caller = CallerDialog {
            flow,
            target: msg::find(&invite.headers, |h| matches!(h, Header::Contact(_)))
                .map(|c| msg::addr_uri(msg::split_first(c).0).to_string())
                .unwrap_or_else(|| invite.uri.to_string()),
            ours: format!("{to};tag={tag}"),
            tag: tag.clone(),
            theirs: msg::from_value(&invite.headers)
                .unwrap_or_default()
                .to_string(),
            cseq: 0,
            local_sdp: answer,
            ext: caller_ext,
        };
        tracing::info!(call_id = %self.call_id, ?route, "call answered");
        let (acd_tx, acd_rx) = mpsc::channel(16);
        let mut st = State::new(caller, media, acd_tx, number, local_host, trace);
        // Boxed like the serve loop: an awaited future is stored inline in the call's
        // own, which lives (and holds its memory) for the whole call.
        let first = boxed(|| self.go(route, &mut st)).await;
        boxed(|| self.serve(st, first, acd_rx, media_rx)).await
    }

    /// The answered call until it ends (`first`: it ended while being routed): SIP
    /// events of every leg, desk commands, ACD decisions, media events and timers, then
    /// [`Call::finish`]. Inbound calls come here once answered, click-to-dial calls once
    /// the customer answers (`serve_dial`).
    async fn serve(
        &mut self,
        mut st: State,
        first: Option<EndReason>,
        mut acd_rx: mpsc::Receiver<AcdOutput>,
        mut media_rx: mpsc::Receiver<MediaEvent>,
    ) -> CallEnd {
        let mut in_call = incall::InCall::default();
        let reason = match first {
            Some(r) => r,
            None => loop {
                // An offer that failed goes back to the ACD (requeue rules).
                if let Some(a) = st.agent.as_ref().filter(|a| a.failed) {
                    if let Some(who) = a.offer_of {
                        self.to_acd(AcdInput::Rejected {
                            call: self.acd_id,
                            agent: who,
                        })
                        .await;
                    }
                    st.agent = None;
                    // An extension that did not answer: the route ends here.
                    if matches!(st.phase, Phase::Extension) {
                        break EndReason::Failed;
                    }
                }
                let outcome = tokio::select! {
                    Some(out) = acd_rx.recv() => boxed(|| self.acd_output(out, &mut st)).await,
                    input = self.inbox.recv() => match input {
                        None => incall::Outcome::End(EndReason::Shutdown),
                        Some(CallInput::Drain) => incall::Outcome::End(EndReason::Drained),
                        Some(CallInput::Command(cmd, reply)) => {
                            let (result, outcome) = boxed(|| self.desk_command(cmd, &mut st)).await;
                            let _ = reply.send(result);
                            outcome
                        }
                        Some(CallInput::Sip(ev)) if st.supervisor.as_ref().is_some_and(|s| s.owns(&ev)) => {
                            boxed(|| self.supervisor_event(ev, &mut st)).await
                        }
                        Some(CallInput::Sip(ev)) if st.rejoin.owns(&ev) => boxed(|| rejoin::event(self, ev, &mut st)).await,
                        Some(CallInput::Sip(ev)) if st.third.as_ref().is_some_and(|t| event_call_id(&ev) == Some(t.call_id.as_str())) => {
                            boxed(|| self.third_event(ev, &mut st)).await
                        }
                        Some(CallInput::Sip(ev)) if st.consult.as_ref().is_some_and(|c| event_call_id(&ev) == Some(c.leg.call_id.as_str())) => {
                            boxed(|| self.consult_event(ev, &mut st)).await
                        }
                        Some(CallInput::Sip(ev)) => {
                            let is_agent = st.agent.as_ref().is_some_and(|a| event_call_id(&ev) == Some(a.call_id.as_str()));
                            if is_agent {
                                boxed(|| self.agent_event(ev, &mut st)).await
                            } else {
                                let ctx = incall::Ctx { call: self, caller: &mut st.caller, agent: &mut st.agent, media: &st.media, bridged: st.bridged };
                                boxed(|| self.caller_event(ev, ctx)).await
                            }
                        }
                        Some(CallInput::GiveAgent(ask)) => boxed(|| self.give_agent(ask, &mut st)).await,
                    },
                    Some(ev) = media_rx.recv() => boxed(|| self.media_event(ev, &mut st)).await,
                    _ = sleep_until_opt(st.deadline) => {
                        st.deadline = None;
                        boxed(|| self.menu_timeout(&mut st)).await
                    }
                    _ = sleep_until_opt(st.ring_until()) => boxed(|| self.ring_out(&mut st)).await,
                    _ = sleep_until_opt(st.dtmf.next) => boxed(|| self.next_dtmf(&mut st)).await,
                    () = st.rejoin.wake() => boxed(|| rejoin::tick(self, &mut st)).await,
                    _ = sleep_until_opt(in_call.deadline()) => {
                        let ctx = incall::Ctx { call: self, caller: &mut st.caller, agent: &mut st.agent, media: &st.media, bridged: st.bridged };
                        boxed(|| in_call.timeout(ctx)).await
                    }
                };
                let outcome = match outcome {
                    incall::Outcome::End(EndReason::CallerHangup)
                        if st.third.as_ref().is_some_and(|t| t.answered) =>
                    {
                        boxed(|| self.conference_caller_left(&mut st)).await
                    }
                    incall::Outcome::End(EndReason::AgentHangup)
                        if st.third.as_ref().is_some_and(|t| t.answered) && !st.caller_left =>
                    {
                        boxed(|| self.conference_agent_left(&mut st)).await
                    }
                    incall::Outcome::End(EndReason::AgentHangup) if st.consult.is_some() => {
                        boxed(|| self.consult_agent_left(&mut st)).await
                    }
                    incall::Outcome::Digit(d) => boxed(|| self.key(d, &mut st)).await,
                    incall::Outcome::Transfer(route) => {
                        boxed(|| self.transfer(route, &mut st)).await
                    }
                    incall::Outcome::Replace(r) => boxed(|| self.take_agent(r, &mut st)).await,
                    o => o,
                };
                // Checked here first: boxing the check per event costs an allocation and a
                // copy of its future, and almost no call is supervised.
                if st.supervisor.is_some() {
                    boxed(|| self.supervise_check(&mut st)).await;
                }
                if let incall::Outcome::End(r) = outcome {
                    break r;
                }
            },
        };
        // Boxed: `finish` (about 150 KB of state machine in a release build) would
        // otherwise be stored inline in this future for the whole call.
        boxed(|| self.finish(reason, st)).await
    }

    /// Click-to-dial or a queued callback, connected (`acd_callback`: the ACD's request,
    /// ended with it; else the agent was marked busy for the dial): the customer's dialog (we called it, with this call's
    /// Call-ID) becomes the caller's and the agent's leg the call's agent, in a media
    /// session of their own (customer left, agent right, as inbound calls), and the call
    /// is served like an inbound one: hold, transfers, conference, DTMF, recording pause
    /// and supervision from the desk; CDR, trail and `call.ended` at its end.
    #[allow(clippy::too_many_arguments)]
    pub(crate) async fn serve_dial(
        &mut self,
        agent: AgentLeg,
        agent_media: MediaLeg,
        customer: AgentLeg,
        customer_media: MediaLeg,
        mut trace: Trace,
        number: &str,
        host: String,
        acd_callback: bool,
    ) -> CallEnd {
        let (media_tx, media_rx) = mpsc::channel(64);
        let media = spawn_session_with(customer_media, media_tx, &self.cfg.session_options());
        let attached = media.attach(agent_media).await.is_ok();
        let (acd_tx, acd_rx) = mpsc::channel(16);
        let user = agent.user.clone();
        trace.agent = Some(user.clone());
        let caller = incall::caller_from_leg(customer);
        let mut st = State::new(caller, media, acd_tx, number.to_string(), host, trace);
        st.agent = Some(agent);
        st.phase = Phase::Extension;
        if acd_callback {
            // The ACD's own request, answered by the agent it reserved: ended with it.
            st.queued = true;
        } else {
            // Marked busy when the dial began; released at the end or by a transfer.
            st.busy_user = Some(user);
        }
        let first = if attached {
            self.bridge(&mut st).await;
            None
        } else {
            Some(EndReason::Failed)
        };
        tracing::info!(call_id = %self.call_id, "click-to-dial connected");
        boxed(|| self.serve(st, first, acd_rx, media_rx)).await
    }

    /// Releases everything once the call's outcome is known; returns the report.
    async fn finish(&self, reason: EndReason, mut st: State) -> CallEnd {
        // Hung up in a voicemail box: what was recorded is the message.
        voicemail_call::hangup(self, &mut st).await;
        // Still waiting in a queue (with or without the ACD): an abandon there.
        let in_queue = matches!(st.phase, Phase::Queue { .. });
        if st.queued {
            let call = self.acd_id;
            let answered = st
                .agent
                .as_ref()
                .is_some_and(|a| a.answered && a.offer_of.is_some());
            let msg = if answered {
                AcdInput::Ended { call }
            } else {
                AcdInput::Abandoned { call }
            };
            self.to_acd(msg).await;
        }
        self.clear_busy(&mut st).await;
        // A supervisor listening in.
        self.supervise_end(&mut st).await;
        // A conference party, too.
        if let Some(mut t) = st.third.take() {
            if t.answered {
                self.bye_agent(&mut t).await;
            } else if !t.failed {
                let _ = self.sip.cancel(t.tx).await;
            }
        }
        // A consultation in progress ends with the call.
        if let Some(mut c) = st.consult.take() {
            if c.answered {
                self.bye_agent(&mut c.leg).await;
            } else if !c.leg.failed {
                let _ = self.sip.cancel(c.leg.tx).await;
            }
            drop(c.media.stop().await);
        }
        // Release the other side.
        let caller_gone = st.caller_left
            || matches!(
                reason,
                EndReason::CallerHangup | EndReason::Cancelled | EndReason::NoAck
            );
        if !caller_gone && reason != EndReason::Shutdown {
            self.bye_caller(&mut st.caller).await;
        }
        match st.agent.as_mut() {
            Some(_) if reason == EndReason::AgentHangup => {}
            Some(a) if a.answered => self.bye_agent(a).await,
            Some(a) if !a.failed => {
                let _ = self.sip.cancel(a.tx).await;
            }
            _ => {}
        }
        let stats = st.media.stats().await.ok();
        // Stopping returns the legs; dropping them closes the sockets and frees the ports.
        // It also drops the recorder's tap, so the writer can finish the file.
        drop(st.media.stop().await);
        if let Some(tap) = st.recording_tap.take()
            && st.recording_paused
        {
            // Ended while paused: the silence runs up to the end of the call.
            pad_recording(&tap, Instant::now());
        }
        if let Some(job) = st.recording.take() {
            match job.finish().await {
                // A message left after talking (a transfer's no-answer destination): the
                // message is what this part of the call left; the conversation's file is
                // in the earlier parts' trail entries.
                Ok(_) if st.trace.settled == Some(EndReason::Voicemail) => {}
                Ok(r) => st.trace.recording = Some(r.path),
                Err(e) => tracing::warn!(call_id = %self.call_id, error = %e, "recording failed"),
            }
        }
        st.agent = None;
        let trail = match st.trace.settled {
            Some(EndReason::Voicemail) => EndReason::Voicemail,
            _ => reason,
        };
        self.desk.ended(trail, st.trace.recording.as_deref()).await;
        let status = if reason == EndReason::Cancelled {
            487
        } else {
            200
        };
        if st.trace.queue.is_some() {
            let kind = match (st.trace.answered_at.is_some(), reason) {
                // A conference the caller had left ends with its added party's hangup:
                // the agent's side ended it (as in the CDR).
                (true, EndReason::AgentHangup | EndReason::ConferenceEnded) => {
                    Some(QueueEventKind::CompleteAgent)
                }
                (true, _) => Some(QueueEventKind::CompleteCaller),
                (false, EndReason::CallerHangup | EndReason::Cancelled | EndReason::NoAck)
                    if in_queue =>
                {
                    Some(QueueEventKind::Abandon)
                }
                _ => None,
            };
            if let Some(kind) = kind {
                let talk = st
                    .trace
                    .answered_at
                    .map(|a| (self.now_ms() - a).max(0) / 1000);
                let wait = st.trace.queued_at.map_or(0, |q| {
                    (st.trace.answered_at.unwrap_or_else(|| self.now_ms()) - q).max(0) / 1000
                });
                let data = match talk {
                    Some(t) => format!("{wait},{t}"),
                    None => wait.to_string(),
                };
                let agent = st.trace.agent.clone();
                self.queue_log(&st.trace, kind, agent.as_deref(), data);
            }
        }
        st.trace.hold_ms = i64::try_from(st.caller.ext.hold_ms()).unwrap_or(i64::MAX);
        st.trace.transfers = st.caller.ext.transfers();
        self.record(&st.trace, reason, status).await;
        let t = &st.trace;
        tracing::info!(
            call_id = %self.call_id, sip_call_id = %t.sip_call_id, direction = t.direction,
            caller = %t.caller, caller_name = ?t.caller_name, dialed = %t.dialed,
            route = %t.route.join(">"), ?reason, bridged = st.bridged, "call ended"
        );
        let mut end = self.end(status, reason, stats);
        end.bridged = st.bridged;
        end.route = st.trace.route.join(">");
        end.queue = st.trace.queue;
        end.agent = st.trace.agent;
        end.recording = st.trace.recording;
        end.announcements = st.trace.announcements;
        end.hold_ms = st.caller.ext.hold_ms();
        end
    }

    /// Follows `route` until the call waits for something (a key, an agent, a message
    /// to play); `Some` ends the call.
    async fn go(&self, mut route: Route, st: &mut State) -> Option<EndReason> {
        st.deadline = None;
        for _ in 0..MAX_HOPS {
            if !matches!(route, Route::Hours { .. }) {
                st.trace.route.push(route.label());
            }
            match route {
                Route::Hours {
                    hours,
                    open,
                    closed,
                } => {
                    // Unknown hours are refused by config validation; open if it happens.
                    let is_open = self
                        .cfg
                        .hours
                        .get(&hours)
                        .is_none_or(|h| h.is_open(self.cfg.clock.now()));
                    route = if is_open { *open } else { *closed };
                }
                Route::Menu(name) => {
                    let Some(menu) = self.cfg.menus.get(&name).cloned() else {
                        tracing::warn!(call_id = %self.call_id, menu = %name, "unknown menu");
                        return Some(EndReason::Failed);
                    };
                    let (run, step) = MenuRun::start(&menu);
                    st.phase = Phase::Menu { menu, run };
                    match step {
                        MenuStep::Play(p) => return self.play(st, p).await,
                        MenuStep::Go(r) => route = r,
                    }
                }
                Route::Queue(name) => return self.enter_queue(name, st).await,
                Route::Extension(user) => {
                    // Not reachable at all: its no-answer destination, as if it had rung out.
                    let next = self
                        .cfg
                        .extensions
                        .get(&user)
                        .and_then(|e| e.no_answer.clone());
                    match (self.ring_extension(user, st).await, next) {
                        (Some(EndReason::Failed), Some(next)) => route = next,
                        (r, _) => return r,
                    }
                }
                Route::Outside(number) => return Box::pin(self.ring_outside(number, st)).await,
                Route::Voicemail(name) => return voicemail_call::enter(self, name, st).await,
                Route::Closed(prompt) => {
                    st.phase = Phase::Message {
                        then: EndReason::Closed,
                    };
                    st.trace.settled = Some(EndReason::Closed);
                    return self.play(st, vec![prompt]).await;
                }
                Route::Hangup => return Some(EndReason::Hangup),
            }
        }
        tracing::warn!(call_id = %self.call_id, "route loops; giving up");
        Some(EndReason::Failed)
    }

    /// In-call hook: the agent transferred the caller (blind REFER; `incall` has released
    /// the agent). The agent's leg goes (the ACD sees its call end), the caller hears
    /// music and follows `route` again; a recording runs on across the transfer.
    async fn transfer(&self, route: Route, st: &mut State) -> incall::Outcome {
        let back = Self::recall_of(st);
        let answered_offer = st
            .agent
            .as_ref()
            .is_some_and(|a| a.answered && a.offer_of.is_some());
        if st.queued && answered_offer {
            self.to_acd(AcdInput::Ended { call: self.acd_id }).await;
            st.queued = false;
        }
        self.clear_busy(st).await;
        if let Some(a) = st.agent.as_ref() {
            let label = route.label();
            self.desk.transferred(&a.user, &label).await;
            self.log_transfer(&st.trace, &a.user, &label);
        }
        st.agent = None;
        st.bridged = false;
        st.whispering = false;
        st.dtmf = DeskDtmf::default();
        drop(st.media.detach().await);
        self.ring_target(route, back, st).await
    }

    /// In-call hook (attended transfer, the consultation call's side): hand our agent
    /// leg to the call that asks, if its Replaces names our caller's dialog (the
    /// referrer consulting the agent through us); then end, releasing our caller.
    async fn give_agent(&self, ask: incall::GiveAgent, st: &mut State) -> incall::Outcome {
        let ours = incall::names_caller(&ask.replaces, &self.call_id, &st.caller)
            && st.agent.as_ref().is_some_and(|a| a.answered);
        if !ours {
            return incall::Outcome::Continue; // dropping `ask` answers no
        }
        let Ok(Some(leg)) = st.media.detach().await else {
            return incall::Outcome::Continue;
        };
        let Some(agent) = st.agent.take() else {
            return incall::Outcome::Continue;
        };
        // The agent's dialog routes to the taker before this call's end forgets it.
        let (done, registered) = oneshot::channel();
        let routed = self
            .control
            .send(Control::Alias {
                call_id: ask.taker.clone(),
                alias: agent.call_id.clone(),
                done,
            })
            .await
            .is_ok();
        if !routed || registered.await.is_err() {
            return incall::Outcome::End(EndReason::Failed);
        }
        if st.queued && agent.offer_of.is_some() {
            self.to_acd(AcdInput::Ended { call: self.acd_id }).await;
            st.queued = false;
        }
        // The taker marks the agent busy from now on.
        st.busy_user = None;
        st.bridged = false;
        tracing::info!(call_id = %self.call_id, taker = %ask.taker, "agent handed over");
        let _ = ask.reply.send(incall::Handover { agent, leg });
        incall::Outcome::End(EndReason::Transferred)
    }

    /// In-call hook (attended transfer, the transferred call's side): take the agent of
    /// the call `replaces` names, release our agent (the referrer) and bridge the caller
    /// to the new agent. On failure the referrer is told and keeps the call.
    async fn take_agent(
        &self,
        replaces: hotline_sip::refer::Replaces,
        st: &mut State,
    ) -> incall::Outcome {
        let (reply, answer) = oneshot::channel();
        let ask = incall::GiveAgent {
            replaces: replaces.clone(),
            taker: self.call_id.clone(),
            reply,
        };
        let sent = self
            .control
            .send(Control::Replace {
                call_id: replaces.call_id.clone(),
                ask,
            })
            .await
            .is_ok();
        let handover = if sent {
            tokio::time::timeout(std::time::Duration::from_secs(2), answer)
                .await
                .ok()
                .and_then(Result::ok)
        } else {
            None
        };
        let Some(referrer) = st.agent.as_mut() else {
            return incall::Outcome::Continue;
        };
        let Some(h) = handover else {
            tracing::info!(call_id = %self.call_id, "attended transfer: no such consultation call");
            incall::transfer_done(self, &mut st.caller, referrer, false).await;
            return incall::Outcome::Continue;
        };
        incall::transfer_done(self, &mut st.caller, referrer, true).await;
        let label = format!("extension:{}", h.agent.user);
        self.desk.transferred(&referrer.user, &label).await;
        self.log_transfer(&st.trace, &referrer.user, &label);
        self.desk.handed_to(&h.agent.user);
        let answered_offer = referrer.answered && referrer.offer_of.is_some();
        if st.queued && answered_offer {
            self.to_acd(AcdInput::Ended { call: self.acd_id }).await;
            st.queued = false;
        }
        self.clear_busy(st).await;
        drop(st.media.detach().await);
        let user = h.agent.user.clone();
        if st.media.attach(h.leg).await.is_err() {
            return incall::Outcome::End(EndReason::Failed);
        }
        st.agent = Some(h.agent);
        st.phase = Phase::Extension;
        st.trace.agent = Some(user.clone());
        self.mark_busy(st, user).await;
        self.bridge(st).await;
        tracing::info!(call_id = %self.call_id, "attended transfer done");
        incall::Outcome::Continue
    }

    /// A desk's command for this call (CTI): the result for the desk and what the loop
    /// does next. A refused command changes nothing.
    async fn desk_command(
        &self,
        cmd: crate::CallCommand,
        st: &mut State,
    ) -> (Result<(), crate::SwitchError>, incall::Outcome) {
        use crate::CallCommand as C;
        use crate::SwitchError as E;
        let go = incall::Outcome::Continue;
        let in_conference = !matches!(
            cmd,
            C::Hangup | C::Identify { .. } | C::PauseRecording | C::ResumeRecording
        );
        if in_conference && st.third.is_some() {
            let e = E::InvalidState("the call is a conference".into());
            return (Err(e), go);
        }
        // A supervisor holds the media session's third place.
        let third_party = matches!(
            cmd,
            C::Conference { .. } | C::Transfer { attended: true, .. }
        );
        if third_party && st.supervisor.is_some() {
            let e = E::InvalidState("a supervisor is on the call".into());
            return (Err(e), go);
        }
        let ctx = incall::Ctx {
            call: self,
            caller: &mut st.caller,
            agent: &mut st.agent,
            media: &st.media,
            bridged: st.bridged,
        };
        match cmd {
            C::Hangup => (Ok(()), incall::Outcome::End(EndReason::DeskHangup)),
            C::Identify { customer_id } => {
                let ok = self.desk.choose(customer_id);
                let r = ok
                    .then_some(())
                    .ok_or_else(|| E::NotFound(format!("candidate {customer_id}")));
                (r, go)
            }
            C::Hold => (incall::desk_hold(ctx, true).await, go),
            C::Resume => (incall::desk_hold(ctx, false).await, go),
            C::Transfer {
                to,
                attended: false,
                role,
            } => {
                let me = match incall::connected_agent(&ctx) {
                    Ok(me) => me,
                    Err(e) => return (Err(e), go),
                };
                match incall::desk_target(self, &to, &me, &role).await {
                    Ok(route) => {
                        tracing::info!(call_id = %self.call_id, ?route, "desk transfers blind");
                        (Ok(()), incall::desk_transfer(ctx, route).await)
                    }
                    Err(e) => (Err(e), go),
                }
            }
            C::Dtmf { digits } => {
                if let Err(e) = incall::connected_agent(&ctx) {
                    return (Err(e), go);
                }
                (self.desk_dtmf(&digits, st).await, go)
            }
            C::PauseRecording | C::ResumeRecording => {
                let pause = matches!(cmd, C::PauseRecording);
                (self.pause_recording(pause, st).await, go)
            }
            C::Transfer {
                to,
                attended: true,
                role,
            } => (Box::pin(self.consult_start(&to, &role, st)).await, go),
            C::TransferComplete => (self.consult_complete(st).await, go),
            C::TransferCancel => match st.consult.is_some() {
                true => {
                    self.consult_back(st, true).await;
                    (Ok(()), go)
                }
                false => (
                    Err(E::InvalidState("no consultation in progress".into())),
                    go,
                ),
            },
            // Boxed: the call task's future stays small enough for a worker's stack.
            C::Conference { to, role } => {
                (Box::pin(self.conference_start(&to, &role, st)).await, go)
            }
            C::Supervise { supervisor, mode } => {
                (self.supervise_start(&supervisor, mode, st).await, go)
            }
            C::SuperviseMode { supervisor, mode } => {
                (self.supervise_mode(&supervisor, mode, st).await, go)
            }
            C::SuperviseStop { supervisor } => (self.supervise_stop(&supervisor, st).await, go),
        }
    }

    /// Attended transfer from the desk, step one: the caller is held (music), the
    /// agent's leg moves to a media session of its own and hears ringback while Hotline
    /// calls `to` (an agent, an extension or an allowed outside number through the
    /// trunk); once answered the two talk.
    async fn consult_start(
        &self,
        to: &str,
        role: &str,
        st: &mut State,
    ) -> Result<(), crate::SwitchError> {
        use crate::SwitchError as E;
        if st.consult.is_some() {
            return Err(E::InvalidState("a consultation is in progress".into()));
        }
        let ctx = incall::Ctx {
            call: self,
            caller: &mut st.caller,
            agent: &mut st.agent,
            media: &st.media,
            bridged: st.bridged,
        };
        let me = incall::connected_agent(&ctx)?;
        let route = incall::desk_target(self, to, &me, role).await?;
        let Some((user, uri, flow)) = self.party(&route).await? else {
            return Err(E::InvalidState(
                "an attended transfer goes to an agent, an extension or a number; transfer \
                 blind to queues"
                    .into(),
            ));
        };
        let mut leg = self
            .call_agent(&st.number, &st.host, &user, &uri, flow)
            .await
            .ok_or(E::Unavailable)?;
        leg.outside = matches!(route, Route::Outside(_));
        // From here the call changes: the caller waits with music.
        let music = Player::new(vec![self.cfg.music.clone()], true, Instant::now());
        let _ = st.media.hold(Side::A, music).await;
        if !st.caller.ext.agent_holds() {
            incall::agent_hold(&mut st.caller, true);
            self.desk.held(&me, true);
        }
        let Ok(Some(agent_media)) = st.media.detach().await else {
            let _ = self.sip.cancel(leg.tx).await;
            return Err(E::Unavailable);
        };
        st.bridged = false;
        let (tx, events) = mpsc::channel(16);
        let media = spawn_session_with(agent_media, tx, &self.cfg.session_options());
        let ringback = hotline_media::Prompt::from_samples(hotline_media::prompts::ringback());
        let _ = media
            .play(Side::A, Player::new(vec![ringback], true, Instant::now()))
            .await;
        tracing::info!(call_id = %self.call_id, target = %user, "desk consults before transferring");
        st.consult = Some(Box::new(Consult {
            leg,
            media,
            _events: events,
            answered: false,
        }));
        Ok(())
    }

    /// An event of the consultation's dialog: the target answers, refuses or hangs up
    /// (the agent is then back with the caller).
    async fn consult_event(&self, ev: AppEvent, st: &mut State) -> incall::Outcome {
        let Some(c) = st.consult.as_mut() else {
            return incall::Outcome::Continue;
        };
        let initial = |r: &Response| {
            msg::cseq(&r.headers).is_some_and(|(n, m)| n == 1 && m.eq_ignore_ascii_case("INVITE"))
        };
        match ev {
            AppEvent::Response { response, .. } if initial(&response) && !c.answered => {
                let status = u16::from(response.status_code.clone());
                if (200..300).contains(&status) {
                    match self.ack_answer(&mut c.leg, &response).await {
                        Some(Some(leg)) => {
                            c.answered =
                                c.media.attach(leg).await.is_ok() && c.media.bridge().await.is_ok();
                            tracing::info!(call_id = %self.call_id, "consulted party answered");
                        }
                        Some(None) => {
                            self.bye_agent(&mut c.leg).await;
                            c.leg.failed = true;
                            self.consult_back(st, false).await;
                        }
                        None => {}
                    }
                } else if status >= 300 {
                    tracing::info!(call_id = %self.call_id, status, "consulted party refused");
                    c.leg.failed = true;
                    self.consult_back(st, false).await;
                }
            }
            AppEvent::Timeout { .. } if !c.answered => {
                c.leg.failed = true;
                self.consult_back(st, false).await;
            }
            ev => {
                if self.uac_event(&mut c.leg, ev).await {
                    // The consulted party hung up.
                    c.leg.failed = true;
                    c.answered = false;
                    self.consult_back(st, false).await;
                }
            }
        }
        incall::Outcome::Continue
    }

    /// The consultation ends without a transfer (the desk cancelled, the target refused
    /// or hung up): the target is released and the agent talks to the caller again.
    async fn consult_back(&self, st: &mut State, release: bool) {
        let Some(mut c) = st.consult.take() else {
            return;
        };
        if release {
            if c.answered {
                self.bye_agent(&mut c.leg).await;
            } else if !c.leg.failed {
                let _ = self.sip.cancel(c.leg.tx).await;
            }
        }
        let Ok((agent_media, _target)) = c.media.stop().await else {
            return;
        };
        if st.media.attach(agent_media).await.is_ok() && st.media.bridge().await.is_ok() {
            st.bridged = true;
        }
        incall::agent_hold(&mut st.caller, false);
        if let Some(a) = st.agent.as_ref() {
            self.desk.held(&a.user, false);
        }
        tracing::info!(call_id = %self.call_id, "consultation over; agent back with the caller");
    }

    /// Attended transfer from the desk, step two: the agent is released (BYE, wrap-up)
    /// and the caller is bridged to the consulted party, who is the call's agent now.
    async fn consult_complete(&self, st: &mut State) -> Result<(), crate::SwitchError> {
        use crate::SwitchError as E;
        match st.consult.as_ref() {
            None => return Err(E::InvalidState("no consultation in progress".into())),
            Some(c) if !c.answered => {
                return Err(E::InvalidState(
                    "the consulted party has not answered".into(),
                ));
            }
            Some(_) => {}
        }
        let Some(c) = st.consult.take() else {
            return Err(E::InvalidState("no consultation in progress".into()));
        };
        if let Some(a) = st.agent.as_mut() {
            self.bye_agent(a).await;
        }
        self.consult_to_agent(*c, st).await?;
        tracing::info!(call_id = %self.call_id, "desk's attended transfer done");
        Ok(())
    }

    /// The agent hung up while consulting (their BYE is answered): the transfer completes,
    /// as Asterisk's attended transfer does. A consulted party who answered is bridged to
    /// the caller at once; one still ringing goes on ringing with the caller on music (a
    /// blind transfer from then on). If it then refuses or times out the caller is not
    /// dropped ([`Call::transfer_back`]).
    async fn consult_agent_left(&self, st: &mut State) -> incall::Outcome {
        let Some(mut c) = st.consult.take() else {
            return incall::Outcome::End(EndReason::AgentHangup);
        };
        if !c.answered {
            c.leg.back_to = Self::recall_of(st);
        }
        match self.consult_to_agent(*c, st).await {
            Ok(()) => {
                tracing::info!(call_id = %self.call_id, "agent hung up while consulting; transfer completed");
                incall::Outcome::Continue
            }
            Err(_) => incall::Outcome::End(EndReason::Failed),
        }
    }

    /// The consultation becomes the call: its target is the call's agent (see
    /// [`Call::hand_over`]), bridged to the caller if it answered, else still ringing (its
    /// answer is bridged as an extension's). The old agent leg is released already.
    async fn consult_to_agent(&self, c: Consult, st: &mut State) -> Result<(), crate::SwitchError> {
        let Ok((agent_media, target_media)) = c.media.stop().await else {
            let mut leg = c.leg;
            if c.answered {
                self.bye_agent(&mut leg).await;
            } else if !leg.failed {
                let _ = self.sip.cancel(leg.tx).await;
            }
            return Err(crate::SwitchError::Unavailable);
        };
        drop(agent_media);
        st.dtmf = DeskDtmf::default();
        self.hand_over(c.leg, st).await;
        if let Some(target) = target_media.filter(|_| c.answered) {
            if st.media.attach(target).await.is_err() {
                return Err(crate::SwitchError::Unavailable);
            }
            self.bridge(st).await;
        }
        Ok(())
    }

    /// The call's agent is `user`: the ACD offers them no queue call meanwhile, until
    /// [`Call::clear_busy`].
    async fn mark_busy(&self, st: &mut State, user: String) {
        self.to_acd(AcdInput::Busy {
            user: user.clone(),
            busy: true,
        })
        .await;
        st.busy_user = Some(user);
    }

    /// Frees the agent [`Call::mark_busy`] held, if any.
    async fn clear_busy(&self, st: &mut State) {
        if let Some(user) = st.busy_user.take() {
            self.to_acd(AcdInput::Busy { user, busy: false }).await;
        }
    }

    /// Where a transfer's caller goes back to if its target does not answer: the head of
    /// the queue the call came from, else the transferring agent (none for an outside
    /// number, which has no desk).
    fn recall_of(st: &State) -> Option<TransferBack> {
        match &st.phase {
            Phase::Queue { name } => Some(TransferBack::Queue(name.clone())),
            _ => st
                .agent
                .as_ref()
                .filter(|a| !a.outside)
                .map(|a| TransferBack::Agent(a.user.clone())),
        }
    }

    /// The user or number Hotline rang by itself (an extension, a transfer target, the
    /// transferring agent called back) refused (`why`: the status), could not be reached
    /// or rang out: its leg is over. The caller, on music all along, is not dropped when
    /// something can take them: [`Call::recall`].
    async fn unanswered(&self, why: String, st: &mut State) -> incall::Outcome {
        let Some(mut a) = st.agent.take() else {
            return incall::Outcome::Continue;
        };
        let back = a.back_to.take();
        if back.is_some() {
            self.queue_log(&st.trace, QueueEventKind::RingNoAnswer, Some(&a.user), why);
        }
        let target = (!a.outside).then_some(a.user);
        self.recall(target.as_deref(), back, st).await
    }

    /// A call's target `user` (none: an outside number) did not answer or could not be
    /// reached. The caller goes to the target's no-answer destination
    /// (`[[extensions]] no_answer`), else a transfer's `back` ([`Call::transfer_back`]);
    /// only with neither does the call end (`Failed` for a call never transferred,
    /// `TransferNotAnswered` for one that was).
    async fn recall(
        &self,
        user: Option<&str>,
        back: Option<TransferBack>,
        st: &mut State,
    ) -> incall::Outcome {
        st.agent = None;
        self.clear_busy(st).await;
        let dest = user
            .and_then(|u| self.cfg.extensions.get(u))
            .and_then(|e| e.no_answer.clone());
        if let Some(route) = dest {
            st.recalls += 1;
            if st.recalls > MAX_RECALLS {
                tracing::warn!(call_id = %self.call_id, target = ?user, recalls = MAX_RECALLS, "no-answer destinations keep leading back; giving up");
                return incall::Outcome::End(EndReason::TransferNotAnswered);
            }
            tracing::info!(call_id = %self.call_id, target = ?user, to = %route.label(), "not answered; to its no-answer destination");
            return self.ring_target(route, back, st).await;
        }
        match back {
            Some(back) => self.transfer_back(back, st).await,
            None if st.caller.ext.transfers() > 0 => {
                tracing::info!(call_id = %self.call_id, target = ?user, "transfer target did not answer; nobody to take the caller back");
                incall::Outcome::End(EndReason::TransferNotAnswered)
            }
            None => incall::Outcome::End(EndReason::Failed),
        }
    }

    /// The leg Hotline rings by itself rang for its `ring_timeout_secs`: CANCEL, and the
    /// caller goes on as if it had refused ([`Call::unanswered`]).
    async fn ring_out(&self, st: &mut State) -> incall::Outcome {
        let Some(a) = st.agent.as_mut().filter(|a| !a.answered && !a.failed) else {
            return incall::Outcome::Continue;
        };
        tracing::info!(call_id = %self.call_id, target = %a.user, "rang out");
        let _ = self.sip.cancel(a.tx).await;
        a.ports = None;
        a.failed = true;
        self.unanswered("timeout".into(), st).await
    }

    /// Sends the caller to `route` (a transfer's target, a no-answer destination, the
    /// transferring agent called back) with `back` as the recall should a user or number
    /// rung there not answer ([`Call::unanswered`]); one that cannot be reached at all
    /// (not registered, no trunk) counts as not answering.
    async fn ring_target(
        &self,
        route: Route,
        back: Option<TransferBack>,
        st: &mut State,
    ) -> incall::Outcome {
        let rings = matches!(route, Route::Extension(_) | Route::Outside(_));
        match self.go(route, st).await {
            None => {
                if let Some(a) = st
                    .agent
                    .as_mut()
                    .filter(|a| !a.answered && a.offer_of.is_none())
                {
                    a.back_to = back;
                }
                incall::Outcome::Continue
            }
            Some(EndReason::Failed) if rings => match back {
                Some(back) => Box::pin(self.transfer_back(back, st)).await,
                None => incall::Outcome::End(EndReason::TransferNotAnswered),
            },
            Some(r) => incall::Outcome::End(r),
        }
    }

    /// A transfer target did not answer and has no no-answer destination: the caller,
    /// on music all along, is not dropped. A queue call goes back to the head of its
    /// queue (`ENTER_QUEUE` with `transfer_back`, the route gains the queue); any other
    /// call rings the transferring agent again if they are free (not on a call), else
    /// ends (`TransferNotAnswered`).
    async fn transfer_back(&self, back: TransferBack, st: &mut State) -> incall::Outcome {
        st.agent = None;
        self.clear_busy(st).await;
        match back {
            TransferBack::Queue(name) => {
                tracing::info!(call_id = %self.call_id, queue = %name, "transfer target did not answer; back to the queue");
                st.trace.route.push(Route::Queue(name.clone()).label());
                self.queue_log(
                    &st.trace,
                    QueueEventKind::EnterQueue,
                    None,
                    "transfer_back".into(),
                );
                self.requeue_at_head(name, st).await
            }
            TransferBack::Agent(user) => {
                let (reply, state) = oneshot::channel();
                self.to_acd(AcdInput::State {
                    user: user.clone(),
                    reply,
                })
                .await;
                let busy = matches!(
                    state.await.ok().flatten(),
                    Some(
                        hotline_acd::AgentState::OnCall(_)
                            | hotline_acd::AgentState::Reserved(_)
                            | hotline_acd::AgentState::NotReady(hotline_acd::NotReadyReason::Code(
                                crate::acd::BUSY_CODE
                            ))
                    )
                );
                if busy {
                    tracing::info!(call_id = %self.call_id, agent = %user, "transfer target did not answer; its agent is busy");
                    return incall::Outcome::End(EndReason::TransferNotAnswered);
                }
                tracing::info!(call_id = %self.call_id, agent = %user, "transfer target did not answer; back to its agent");
                // The agent's own no-answer destination applies if they do not answer.
                self.ring_target(Route::Extension(user), None, st).await
            }
        }
    }

    /// The call waits in `queue` again ahead of everyone (its agent's part is over): music,
    /// the ACD's `Requeued` (highest priority) with the caller's tier.
    async fn requeue_at_head(&self, queue: String, st: &mut State) -> incall::Outcome {
        st.phase = Phase::Queue {
            name: queue.clone(),
        };
        if let Some(r) = self.music(st).await {
            return incall::Outcome::End(r);
        }
        if let Some(acd) = &self.acd {
            let tier = self.desk.arrived(&queue).await;
            st.queued = acd
                .send(AcdInput::Requeued {
                    call: self.acd_id,
                    queue,
                    inbox: st.acd_tx.clone(),
                    sip_call_id: self.call_id.clone(),
                    tier,
                })
                .await
                .is_ok();
        }
        incall::Outcome::Continue
    }

    /// How a party the desk called (consultation, conference) counts: a SIP user is an
    /// agent or extension (`extension:USER`, busy in the ACD while on the call); an
    /// outside number through the trunk is `number:N`, nobody's desk.
    fn party_route(leg: &AgentLeg) -> Route {
        if leg.outside {
            Route::Outside(leg.user.clone())
        } else {
            Route::Extension(leg.user.clone())
        }
    }

    /// The call passes from its agent to `leg` (an attended transfer completed, or the
    /// agent left a consultation or a conference): the agent's desk gets
    /// `call.transferred` and the ACD ends their part (wrap-up), a `TRANSFER` line goes
    /// to the queue log ([`Call::log_transfer`]), the CDR counts a transfer and its
    /// route gains the target. A
    /// user becomes the call's agent (CDR, trail, busy in the ACD); an outside number
    /// does not: the CDR keeps the agent who sent the call out. Either way the old
    /// agent's trail entry (and disposition) covers their part
    /// ([`crate::events::CallDesk::transferred`]).
    async fn hand_over(&self, leg: AgentLeg, st: &mut State) {
        let target = Self::party_route(&leg);
        let label = target.label();
        if let Some(a) = st.agent.as_ref() {
            self.desk.transferred(&a.user, &label).await;
            self.log_transfer(&st.trace, &a.user, &label);
            if st.queued && a.answered && a.offer_of.is_some() {
                self.to_acd(AcdInput::Ended { call: self.acd_id }).await;
                st.queued = false;
            }
        }
        self.clear_busy(st).await;
        incall::count_transfer(&mut st.caller);
        st.trace.route.push(label);
        st.phase = Phase::Extension;
        if let Route::Extension(user) = target {
            if leg.answered {
                self.desk.handed_to(&user);
                st.trace.agent = Some(user.clone());
            }
            self.mark_busy(st, user).await;
        }
        st.agent = Some(leg);
    }

    /// Whom a consultation or conference calls for `route`: a registered extension's
    /// contact, or an outside number at the trunk; `None` for queues, menus and the rest.
    async fn party(
        &self,
        route: &Route,
    ) -> Result<Option<(String, String, Flow)>, crate::SwitchError> {
        use crate::SwitchError as E;
        match route {
            Route::Extension(user) => match self.sip.contact_for(user).await {
                Ok(Some((uri, flow))) => Ok(Some((user.clone(), uri, flow))),
                _ => Err(E::InvalidState(format!("{user} is not registered"))),
            },
            Route::Outside(n) => {
                let trunk = self
                    .cfg
                    .trunk
                    .ok_or_else(|| E::NotFound(format!("no trunk for {n:?}")))?;
                let flow = self
                    .sip
                    .flow_for(trunk)
                    .await
                    .ok()
                    .flatten()
                    .ok_or(E::Unavailable)?;
                Ok(Some((n.clone(), format!("sip:{n}@{}", trunk.addr), flow)))
            }
            _ => Ok(None),
        }
    }

    /// Conference from the desk: Hotline calls `to` (an agent, an extension, or a number
    /// through the static route); once answered, caller, agent and the new party hear each
    /// other in a 3-way mix.
    async fn conference_start(
        &self,
        to: &str,
        role: &str,
        st: &mut State,
    ) -> Result<(), crate::SwitchError> {
        use crate::SwitchError as E;
        if st.consult.is_some() {
            return Err(E::InvalidState("a consultation is in progress".into()));
        }
        let ctx = incall::Ctx {
            call: self,
            caller: &mut st.caller,
            agent: &mut st.agent,
            media: &st.media,
            bridged: st.bridged,
        };
        let me = incall::connected_agent(&ctx)?;
        if st.caller.ext.agent_holds() {
            return Err(E::InvalidState("the call is on hold".into()));
        }
        let route = incall::desk_target(self, to, &me, role).await?;
        let Some((user, uri, flow)) = self.party(&route).await? else {
            return Err(E::InvalidState(
                "a conference adds an agent, an extension or a number".into(),
            ));
        };
        let mut leg = self
            .call_agent(&st.number, &st.host, &user, &uri, flow)
            .await
            .ok_or(E::Unavailable)?;
        leg.outside = matches!(route, Route::Outside(_));
        tracing::info!(call_id = %self.call_id, party = %user, "desk adds a conference party");
        st.third = Some(Box::new(leg));
        Ok(())
    }

    /// An event of the conference party's dialog: their answer starts the 3-way mix; a
    /// refusal or their BYE leaves the caller and the agent talking.
    async fn third_event(&self, ev: AppEvent, st: &mut State) -> incall::Outcome {
        let Some(t) = st.third.as_mut() else {
            return incall::Outcome::Continue;
        };
        let initial = |r: &Response| {
            msg::cseq(&r.headers).is_some_and(|(n, m)| n == 1 && m.eq_ignore_ascii_case("INVITE"))
        };
        let mut gone = false;
        match ev {
            AppEvent::Response { response, .. } if initial(&response) && !t.answered => {
                let status = u16::from(response.status_code.clone());
                if (200..300).contains(&status) {
                    match self.ack_answer(t, &response).await {
                        Some(Some(leg)) => {
                            gone = st.media.conference(leg).await.is_err();
                            tracing::info!(call_id = %self.call_id, "conference: three parties");
                        }
                        Some(None) => {
                            self.bye_agent(t).await;
                            gone = true;
                        }
                        None => {}
                    }
                } else if status >= 300 {
                    tracing::info!(call_id = %self.call_id, status, "conference party refused");
                    gone = true;
                }
            }
            AppEvent::Timeout { .. } if !t.answered => gone = true,
            ev => {
                if self.uac_event(t, ev).await {
                    tracing::info!(call_id = %self.call_id, "conference party left");
                    drop(st.media.end_conference().await);
                    st.third = None;
                    if st.caller_left {
                        // Only the agent is left: the conference is over.
                        return incall::Outcome::End(EndReason::ConferenceEnded);
                    }
                }
            }
        }
        if gone {
            st.third = None;
        }
        incall::Outcome::Continue
    }

    /// The caller hung up in a conference (their BYE is answered): the agent and the
    /// party they added talk on, as in Asterisk's ConfBridge or FreeSWITCH's conference,
    /// which end when fewer than two parties remain. The recording goes on (the caller's
    /// channel silent) and the call ends when the agent or the party leaves.
    async fn conference_caller_left(&self, st: &mut State) -> incall::Outcome {
        match st.media.caller_left().await {
            Ok(Some(leg)) => drop(leg),
            _ => return incall::Outcome::End(EndReason::CallerHangup),
        }
        st.caller_left = true;
        incall::caller_left(&mut st.caller);
        tracing::info!(call_id = %self.call_id, "caller left the conference; agent and party talk on");
        incall::Outcome::Continue
    }

    /// The agent hung up in a conference: the party they added stays with the caller
    /// and is the call's agent from now on (the agent goes to wrap-up).
    async fn conference_agent_left(&self, st: &mut State) -> incall::Outcome {
        let Some(third) = st.third.take() else {
            return incall::Outcome::End(EndReason::AgentHangup);
        };
        // The third party takes the agent's place in the media, bridged to the caller.
        drop(st.media.detach().await);
        self.hand_over(*third, st).await;
        tracing::info!(call_id = %self.call_id, "agent left the conference; the call goes on");
        incall::Outcome::Continue
    }

    /// The desk sends keys to the caller as RFC 4733 events (the caller's leg must have
    /// negotiated telephone-event); the first goes now, the rest one after the other.
    async fn desk_dtmf(&self, digits: &str, st: &mut State) -> Result<(), crate::SwitchError> {
        let bad = || crate::SwitchError::InvalidState("DTMF: 1-32 keys of 0-9 * # A-D".into());
        if digits.is_empty()
            || digits.len() > DeskDtmf::MAX
            || st.dtmf.queue.len() + digits.len() > DeskDtmf::MAX
            || !digits
                .chars()
                .all(|c| hotline_media::dtmf::digit_to_event(c).is_some())
        {
            return Err(bad());
        }
        if st.dtmf.next.is_none() {
            let first = digits.chars().next().ok_or_else(bad)?;
            st.media
                .send_dtmf(Side::A, first, DeskDtmf::TONE)
                .await
                .map_err(|e| crate::SwitchError::InvalidState(format!("caller's leg: {e}")))?;
            st.dtmf.queue.extend(digits.chars().skip(1));
            st.dtmf.next = Some(tokio::time::Instant::now() + DeskDtmf::STEP);
        } else {
            st.dtmf.queue.extend(digits.chars());
        }
        tracing::info!(call_id = %self.call_id, keys = digits.len(), "desk sends DTMF to the caller");
        Ok(())
    }

    /// The next queued desk key is due.
    async fn next_dtmf(&self, st: &mut State) -> incall::Outcome {
        st.dtmf.next = None;
        if let Some(d) = st.dtmf.queue.pop_front() {
            if st.media.send_dtmf(Side::A, d, DeskDtmf::TONE).await.is_ok() {
                st.dtmf.next = Some(tokio::time::Instant::now() + DeskDtmf::STEP);
            } else {
                st.dtmf.queue.clear();
            }
        }
        incall::Outcome::Continue
    }

    /// Pauses (`pause`) or resumes the call's recording for the desk (card numbers):
    /// while paused nothing reaches the file, whose timeline goes on as silence.
    async fn pause_recording(&self, pause: bool, st: &mut State) -> Result<(), crate::SwitchError> {
        use crate::SwitchError as E;
        let Some(tap) = st.recording_tap.as_ref() else {
            return Err(E::InvalidState("the call is not being recorded".into()));
        };
        match (pause, st.recording_paused) {
            (true, true) => return Err(E::InvalidState("the recording is paused".into())),
            (false, false) => return Err(E::InvalidState("the recording is not paused".into())),
            _ => {}
        }
        let tap = (!pause).then(|| tap.clone());
        st.media.record(tap).await.map_err(E::from)?;
        st.recording_paused = pause;
        tracing::info!(call_id = %self.call_id, pause, "desk changed the recording");
        Ok(())
    }

    /// Plays `prompts` once to the caller (replacing music).
    async fn play(&self, st: &mut State, prompts: Vec<Prompt>) -> Option<EndReason> {
        let player = Player::new(prompts, false, Instant::now());
        st.media
            .play(Side::A, player)
            .await
            .err()
            .map(|_| EndReason::Failed)
    }

    async fn music(&self, st: &mut State) -> Option<EndReason> {
        let music = Player::new(vec![self.cfg.music.clone()], true, Instant::now());
        st.media
            .play(Side::A, music)
            .await
            .err()
            .map(|_| EndReason::Failed)
    }

    async fn enter_queue(&self, name: String, st: &mut State) -> Option<EndReason> {
        if let Some(r) = self.music(st).await {
            return Some(r);
        }
        st.phase = Phase::Queue { name: name.clone() };
        st.trace.queue = Some(name.clone());
        st.trace.queued_at.get_or_insert(self.now_ms());
        if let Some(acd) = &self.acd {
            let tier = self.desk.arrived(&name).await;
            st.queued = acd
                .send(AcdInput::Arrived {
                    call: self.acd_id,
                    queue: name.clone(),
                    inbox: st.acd_tx.clone(),
                    sip_call_id: self.call_id.clone(),
                    tier,
                })
                .await
                .is_ok();
        }
        self.queue_log(&st.trace, QueueEventKind::EnterQueue, None, String::new());
        tracing::info!(call_id = %self.call_id, queue = %name, "caller queued");
        None
    }

    async fn ring_extension(&self, user: String, st: &mut State) -> Option<EndReason> {
        let Ok(Some((uri, flow))) = self.sip.contact_for(&user).await else {
            tracing::info!(call_id = %self.call_id, %user, "extension not registered");
            return Some(EndReason::Failed);
        };
        if let Some(r) = self.music(st).await {
            return Some(r);
        }
        st.phase = Phase::Extension;
        let leg = self
            .call_agent(&st.number, &st.host, &user, &uri, flow)
            .await;
        if leg.is_none() {
            return Some(EndReason::Failed);
        }
        st.agent = leg;
        st.trace.offered_at.get_or_insert(self.now_ms());
        // An agent on this call must not be offered queue calls meanwhile.
        self.mark_busy(st, user).await;
        None
    }

    /// A transfer to an outside number (guarded before): the caller hears music while
    /// Hotline calls the number through the trunk; its answer is bridged as an
    /// extension's would be (no ACD agent is involved).
    async fn ring_outside(&self, number: String, st: &mut State) -> Option<EndReason> {
        let Ok(Some((_, uri, flow))) = self.party(&Route::Outside(number.clone())).await else {
            tracing::info!(call_id = %self.call_id, %number, "no trunk for the number");
            return Some(EndReason::Failed);
        };
        if let Some(r) = self.music(st).await {
            return Some(r);
        }
        st.phase = Phase::Extension;
        st.agent = self
            .call_agent(&st.number, &st.host, &number, &uri, flow)
            .await;
        let Some(a) = st.agent.as_mut() else {
            return Some(EndReason::Failed);
        };
        a.outside = true;
        st.trace.offered_at.get_or_insert(self.now_ms());
        None
    }

    /// A key from the caller (RFC 4733 or SIP INFO).
    async fn key(&self, d: char, st: &mut State) -> incall::Outcome {
        tracing::debug!(call_id = %self.call_id, digit = %d, "caller pressed a key");
        if matches!(st.phase, Phase::Voicemail(_)) {
            return voicemail_call::key(self, d, st).await;
        }
        let step = match &mut st.phase {
            Phase::Menu { menu, run } => run.key(&menu.clone(), d),
            Phase::Queue { name } => {
                let opts = self.cfg.queues.get(name);
                let waiting = st.agent.as_ref().is_none_or(|a| !a.answered);
                let leave = opts.and_then(|o| o.leave_key);
                if waiting && leave.is_some_and(|k| k.eq_ignore_ascii_case(&d)) {
                    let name = name.clone();
                    return self.leave_queue(&name, st).await;
                }
                let cb = opts.and_then(|o| o.callback_key);
                if waiting
                    && st.callback_offered
                    && st.queued
                    && cb.is_some_and(|k| k.eq_ignore_ascii_case(&d))
                {
                    return self.request_callback(st).await;
                }
                return incall::Outcome::Continue;
            }
            _ => return incall::Outcome::Continue,
        };
        self.menu_step(step, st).await
    }

    async fn menu_timeout(&self, st: &mut State) -> incall::Outcome {
        if matches!(st.phase, Phase::Voicemail(_)) {
            return voicemail_call::tick(self, st).await;
        }
        let step = match &mut st.phase {
            Phase::Menu { menu, run } => run.timeout(&menu.clone()),
            _ => return incall::Outcome::Continue,
        };
        self.menu_step(step, st).await
    }

    async fn menu_step(&self, step: MenuStep, st: &mut State) -> incall::Outcome {
        let r = match step {
            MenuStep::Play(p) => {
                st.deadline = None;
                self.play(st, p).await
            }
            MenuStep::Go(route) => self.go(route, st).await,
        };
        r.map_or(incall::Outcome::Continue, incall::Outcome::End)
    }

    /// The caller pressed the callback key: the ACD keeps their place as a callback
    /// request, Hotline says goodbye and hangs up.
    async fn request_callback(&self, st: &mut State) -> incall::Outcome {
        if st.caller_number().is_empty() {
            return incall::Outcome::Continue;
        }
        if let Some(a) = st.agent.take() {
            let _ = self.sip.cancel(a.tx).await;
        }
        let (done, taken) = oneshot::channel();
        self.to_acd(AcdInput::RequestCallback {
            call: self.acd_id,
            number: st.caller_number(),
            done,
        })
        .await;
        if !taken.await.unwrap_or(false) {
            return incall::Outcome::Continue;
        }
        st.queued = false;
        self.queue_log(
            &st.trace,
            QueueEventKind::Callback,
            None,
            st.caller_number(),
        );
        tracing::info!(call_id = %self.call_id, "caller chose a callback");
        match self.cfg.voice.as_ref() {
            Some(v) => {
                st.phase = Phase::Message {
                    then: EndReason::Callback,
                };
                st.trace.settled = Some(EndReason::Callback);
                let goodbye = v.goodbye.clone();
                self.play(st, vec![goodbye])
                    .await
                    .map_or(incall::Outcome::Continue, incall::Outcome::End)
            }
            None => incall::Outcome::End(EndReason::Callback),
        }
    }

    /// The callback offer, once, when the queue has one and the wait is long enough.
    fn callback_offer(&self, st: &mut State) -> Option<Prompt> {
        let Phase::Queue { name } = &st.phase else {
            return None;
        };
        let o = self.cfg.queues.get(name)?;
        o.callback_key?;
        if st.callback_offered || st.ewt? < o.callback_min_ewt_secs {
            return None;
        }
        st.callback_offered = true;
        Some(
            o.callback_prompt
                .clone()
                .unwrap_or_else(|| Prompt::from_samples(hotline_media::prompts::beep())),
        )
    }

    /// The caller pressed the queue's leave key: out of the ACD, to the queue's fallback.
    async fn leave_queue(&self, queue: &str, st: &mut State) -> incall::Outcome {
        if let Some(a) = st.agent.take() {
            let _ = self.sip.cancel(a.tx).await;
        }
        if st.queued {
            self.to_acd(AcdInput::Abandoned { call: self.acd_id }).await;
            st.queued = false;
        }
        let target = self
            .cfg
            .acd
            .as_ref()
            .and_then(|a| a.queues.iter().find(|q| q.name == queue))
            .map(|q| q.fallback.clone())
            .unwrap_or_default();
        self.queue_log(
            &st.trace,
            QueueEventKind::Fallback,
            None,
            "leave-key".into(),
        );
        self.fallback(target, st)
            .await
            .map_or(incall::Outcome::Continue, incall::Outcome::End)
    }

    /// Carries out a queue's fallback target.
    async fn fallback(&self, target: Fallback, st: &mut State) -> Option<EndReason> {
        st.queued = false;
        let route = match target {
            Fallback::Queue(q) => Route::Queue(q),
            Fallback::Voicemail(b) => Route::Voicemail(b),
            Fallback::Number(n) => match self.cfg.routes.get(&n) {
                Some(r) => r.clone(),
                None if self.cfg.users.contains(&n) => Route::Extension(n),
                None => {
                    tracing::warn!(call_id = %self.call_id, number = %n, "fallback number is neither a configured number nor a user; hanging up");
                    return Some(EndReason::Fallback);
                }
            },
            // No callback offer as a fallback yet: hang up, saying goodbye.
            Fallback::Hangup | Fallback::Callback => {
                return match self.cfg.voice.as_ref() {
                    Some(v) => {
                        st.phase = Phase::Message {
                            then: EndReason::Fallback,
                        };
                        st.trace.settled = Some(EndReason::Fallback);
                        self.play(st, vec![v.goodbye.clone()]).await
                    }
                    None => Some(EndReason::Fallback),
                };
            }
        };
        self.go(route, st).await
    }

    /// Media events: caller keys and the end of prompts are routing; the rest is in-call.
    async fn media_event(&self, ev: MediaEvent, st: &mut State) -> incall::Outcome {
        match ev {
            MediaEvent::Leg(Side::A, LegEvent::Dtmf(d)) => incall::Outcome::Digit(d.digit),
            MediaEvent::PlaybackDone(Side::A) if matches!(st.phase, Phase::Voicemail(_)) => {
                voicemail_call::greeting_played(self, st).await
            }
            MediaEvent::PlaybackDone(Side::A) => match &st.phase {
                Phase::Menu { menu, .. } => {
                    st.deadline = Some(tokio::time::Instant::now() + menu.timeout);
                    incall::Outcome::Continue
                }
                Phase::Message { then } => incall::Outcome::End(*then),
                _ => incall::Outcome::Continue,
            },
            // The lost phone's leg is silent until it rejoins or the call is requeued.
            MediaEvent::Leg(Side::B, hotline_media::LegEvent::NoRtp) if st.rejoin.lost() => {
                incall::Outcome::Continue
            }
            MediaEvent::PlaybackDone(Side::B) if st.whispering => {
                st.whispering = false;
                self.bridge(st).await;
                incall::Outcome::Continue
            }
            ev => {
                let ctx = incall::Ctx {
                    call: self,
                    caller: &mut st.caller,
                    agent: &mut st.agent,
                    media: &st.media,
                    bridged: st.bridged,
                };
                incall::media_event(ctx, ev).await
            }
        }
    }

    /// The `TRANSFER` queue-log line of `agent` passing the call to `to` (a route label):
    /// data `<to>,<wait s>,<talk s so far>`, like app_queue's.
    fn log_transfer(&self, t: &Trace, agent: &str, to: &str) {
        let now = self.now_ms();
        let wait = t
            .queued_at
            .map_or(0, |q| (t.answered_at.unwrap_or(now) - q).max(0) / 1000);
        let talk = t.answered_at.map_or(0, |a| (now - a).max(0) / 1000);
        let data = format!("{to},{wait},{talk}");
        self.queue_log(t, QueueEventKind::Transfer, Some(agent), data);
    }

    /// A queue-log line for this call (to the CDR store's queue log).
    fn queue_log(&self, t: &Trace, event: QueueEventKind, agent: Option<&str>, data: String) {
        self.cfg.cdr.queue_event(QueueEvent {
            at: self.now_ms(),
            call_id: self.call_id.clone(),
            queue: t.queue.clone().unwrap_or_else(|| "NONE".into()),
            agent: agent.map(str::to_string),
            event,
            data,
        });
    }

    /// The session timer policy for a caller: a browser gets one only if it asks (our own
    /// refresh would re-offer plain RTP to it).
    fn caller_timer(&self, browser: bool) -> hotline_sip::session_timer::TimerPolicy {
        let mut p = self.cfg.session_timer;
        if browser {
            p.session_expires = 0;
        }
        p
    }

    /// INVITEs the agent's contact with Hotline's SDP on a second port pair.
    pub(crate) async fn call_agent(
        &self,
        number: &str,
        host: &str,
        user: &str,
        uri: &str,
        flow: Flow,
    ) -> Option<AgentLeg> {
        self.call_agent_with(number, host, user, uri, flow, "")
            .await
    }

    /// [`Call::call_agent`] with extra header lines (each ending in CRLF).
    pub(crate) async fn call_agent_with(
        &self,
        number: &str,
        host: &str,
        user: &str,
        uri: &str,
        flow: Flow,
        extra: &str,
    ) -> Option<AgentLeg> {
        self.call_leg(number, host, user, uri, flow, extra, LegKind::Other)
            .await
    }

    /// Calls a click-to-dial customer: [`Call::call_agent`] with this call's own Call-ID,
    /// since the dialog becomes the call's caller dialog once answered (`serve_dial`).
    pub(crate) async fn call_customer(
        &self,
        number: &str,
        host: &str,
        user: &str,
        uri: &str,
        flow: Flow,
    ) -> Option<AgentLeg> {
        self.call_leg(number, host, user, uri, flow, "", LegKind::Customer)
            .await
    }

    #[allow(clippy::too_many_arguments)]
    async fn call_leg(
        &self,
        number: &str,
        host: &str,
        user: &str,
        uri: &str,
        flow: Flow,
        extra: &str,
        kind: LegKind,
    ) -> Option<AgentLeg> {
        // WebRTC hook: a browser agent (WebSocket contact) gets the gateway's offer.
        let browser = webrtc_leg::is_browser_contact(uri);
        let (ports, webrtc, offer, sdp) = if browser {
            webrtc_leg::offer(&self.ports, &self.cfg).await?
        } else {
            let (ports, local) = self
                .offer_ports(uri, flow, kind == LegKind::QueueAgent)
                .await?;
            let offer = build_offer(&local, Direction::SendRecv);
            let sdp = offer.to_string();
            (Some(ports), None, offer, sdp)
        };
        let own_call_id = kind == LegKind::Customer;
        let call_id = if own_call_id {
            self.call_id.clone()
        } else {
            format!("{}-agent@hotline", token())
        };
        let from = format!("<sip:{number}@{host}>;tag=hl{}", token());
        let to = format!("<sip:{user}@{host}>");
        let text = format!(
            "INVITE {uri} SIP/2.0\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:{number}@{host}{}>\r\n{extra}{}Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            transport_param(flow),
            // In-call hook: offer the agent's phone a session timer (not a browser's:
            // a refresh would re-offer plain RTP).
            if browser {
                String::new()
            } else {
                incall::agent_invite_headers(&self.cfg.session_timer)
            },
            sdp.len()
        );
        let req = own_request(&text)?;
        let asked = if browser {
            0
        } else {
            self.cfg.session_timer.session_expires
        };
        let invite = crate::timer_retry::AgentInvite::new(text, asked);
        if !own_call_id {
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
        }
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
            ports,
            answered: false,
            failed: false,
            offer_of: None,
            user: user.to_string(),
            cseq: 1,
            ext: incall::AgentExt::default(),
            webrtc,
            invite,
            outside: false,
            back_to: None,
            ring_until: Some(tokio::time::Instant::now() + self.ring_timeout(user)),
        })
    }

    /// How long Hotline rings `user` by itself (`[[extensions]]`, else the default).
    fn ring_timeout(&self, user: &str) -> std::time::Duration {
        self.cfg.extensions.get(user).map_or(
            std::time::Duration::from_secs(crate::DEFAULT_RING_TIMEOUT_SECS),
            |e| e.ring_timeout,
        )
    }

    /// Handles an event of the agent's dialog: responses to our INVITE here, requests
    /// and responses to other requests in `incall`.
    async fn agent_event(&self, ev: AppEvent, st: &mut State) -> incall::Outcome {
        let Some(a) = st.agent.as_mut() else {
            return incall::Outcome::Continue;
        };
        match ev {
            AppEvent::Response { response, .. }
                if crate::timer_retry::answers_invite(&a.invite, &response) =>
            {
                let status = u16::from(response.status_code.clone());
                if (200..300).contains(&status) {
                    return self.agent_answered(&response, st).await;
                }
                // RFC 4028 §6: the phone wants a longer session interval; ask again.
                if status == 422
                    && !a.answered
                    && let Some(text) = a.invite.retry(&response)
                    && let Some(req) = own_request(&text)
                    && let Ok(tx) = self.sip.send_request(req, a.flow).await
                {
                    tracing::info!(call_id = %self.call_id, "agent wants a longer session interval; INVITE again");
                    a.tx = tx;
                    a.cseq = a.invite.cseq();
                    return incall::Outcome::Continue;
                }
                if status >= 300 {
                    tracing::info!(call_id = %self.call_id, status, "agent did not answer");
                    a.ports = None;
                    a.failed = !a.answered;
                    if a.failed && a.offer_of.is_some() {
                        let user = a.user.clone();
                        self.queue_log(
                            &st.trace,
                            QueueEventKind::RingNoAnswer,
                            Some(&user),
                            status.to_string(),
                        );
                    }
                    if a.failed && a.offer_of.is_none() {
                        // Boxed: the recall's routing would size every agent event.
                        return boxed(|| self.unanswered(status.to_string(), st)).await;
                    }
                }
                incall::Outcome::Continue
            }
            AppEvent::Timeout { .. } if !a.answered => {
                a.ports = None;
                a.failed = true;
                if a.offer_of.is_none() {
                    return boxed(|| self.unanswered("timeout".into(), st)).await;
                }
                incall::Outcome::Continue
            }
            AppEvent::Request { tx, request, .. } if to_tag(&request) != msg::tag(&a.from) => {
                let resp = AppResponse::new(481, "Call/Transaction Does Not Exist");
                let _ = self.sip.respond(tx, resp).await;
                incall::Outcome::Continue
            }
            AppEvent::Request {
                tx, request, flow, ..
            } => {
                let ctx = incall::Ctx {
                    call: self,
                    caller: &mut st.caller,
                    agent: &mut st.agent,
                    media: &st.media,
                    bridged: st.bridged,
                };
                incall::agent_request(ctx, tx, *request, flow).await
            }
            AppEvent::Response { response, .. } => {
                let ctx = incall::Ctx {
                    call: self,
                    caller: &mut st.caller,
                    agent: &mut st.agent,
                    media: &st.media,
                    bridged: st.bridged,
                };
                incall::agent_response(ctx, *response).await
            }
            AppEvent::Ack { request, .. } => {
                let ctx = incall::Ctx {
                    call: self,
                    caller: &mut st.caller,
                    agent: &mut st.agent,
                    media: &st.media,
                    bridged: st.bridged,
                };
                incall::ack(ctx, &request, Side::B).await
            }
            _ => incall::Outcome::Continue,
        }
    }

    /// 2xx from the agent: ACK it (again for every retransmission) and, the first time,
    /// attach the agent's leg, play the whisper if the queue has one, and bridge.
    async fn agent_answered(&self, resp: &Response, st: &mut State) -> incall::Outcome {
        let Some(a) = st.agent.as_mut() else {
            return incall::Outcome::Continue;
        };
        let leg = match self.ack_answer(a, resp).await {
            None => return incall::Outcome::Continue,
            Some(None) => {
                tracing::warn!(call_id = %self.call_id, "agent's answer unusable; call failed");
                return incall::Outcome::End(EndReason::Failed);
            }
            Some(Some(leg)) => leg,
        };
        let user = a.user.clone();
        let outside = a.outside;
        if a.offer_of.is_none() && !outside {
            self.desk.handed_to(&user);
        }
        if let Some(agent) = a.offer_of {
            self.desk.answered();
            self.to_acd(AcdInput::Answered {
                call: self.acd_id,
                agent,
            })
            .await;
        }
        if outside {
            // An outside number is nobody's desk: the call's agent stays the one who
            // sent it out, and no CONNECT line names the number as an agent.
            st.trace.answered_at.get_or_insert(self.now_ms());
        } else {
            st.trace.agent = Some(user.clone());
            st.trace.answered_at = Some(self.now_ms());
            let wait = st
                .trace
                .queued_at
                .map_or(0, |q| (self.now_ms() - q).max(0) / 1000);
            self.queue_log(
                &st.trace,
                QueueEventKind::Connect,
                Some(&user),
                wait.to_string(),
            );
        }
        if st.media.attach(leg).await.is_err() {
            return incall::Outcome::End(EndReason::Failed);
        }
        let whisper = match &st.phase {
            Phase::Queue { name } => self.cfg.queues.get(name).and_then(|o| o.whisper.clone()),
            _ => None,
        };
        match whisper {
            Some(w) => {
                let player = Player::new(vec![w], false, Instant::now());
                if st.media.play(Side::B, player).await.is_ok() {
                    st.whispering = true;
                    tracing::info!(call_id = %self.call_id, "agent answered; whisper");
                    return incall::Outcome::Continue;
                }
                self.bridge(st).await;
            }
            None => self.bridge(st).await,
        }
        incall::Outcome::Continue
    }

    /// ACKs a 2xx to one of our INVITEs (every retransmission); the first time, the
    /// media leg it negotiated: `None` for a retransmission, `Some(None)` when the
    /// answer's SDP is unusable.
    pub(crate) async fn ack_answer(
        &self,
        a: &mut AgentLeg,
        resp: &Response,
    ) -> Option<Option<MediaLeg>> {
        if let Some(to) = msg::to_value(&resp.headers) {
            a.to = to.to_string();
        }
        if let Some(c) = msg::find(&resp.headers, |h| matches!(h, Header::Contact(_))) {
            a.target = Some(msg::addr_uri(msg::split_first(c).0).to_string());
        }
        let target = a.target.clone().unwrap_or_default();
        let ack = format!(
            "ACK {target} SIP/2.0\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} ACK\r\nContent-Length: 0\r\n\r\n",
            a.from,
            a.to,
            a.call_id,
            a.invite.cseq()
        );
        if let Some(req) = own_request(&ack) {
            let _ = self.sip.send_stateless(req, a.flow).await;
        }
        if a.answered {
            return None;
        }
        a.answered = true;
        // In-call hook: the session timer the agent's 2xx agreed to, if any.
        incall::agent_answered(a, resp);
        // WebRTC hook: a browser's answer starts the gateway.
        if let Some(w) = a.webrtc.take() {
            let timing = self.cfg.leg_timing;
            let leg = webrtc_leg::answered(w, &resp.body, timing).await;
            incall::agent_webrtc(a, leg.as_ref());
            return Some(leg);
        }
        let negotiated = std::str::from_utf8(&resp.body)
            .map_err(|_| MediaError::SdpMalformed {
                line: 0,
                reason: "SDP is not UTF-8",
            })
            .and_then(SessionDescription::parse)
            .and_then(|answer| process_answer(&a.offer, &answer));
        let (Ok(n), Some(mut ports)) = (negotiated, a.ports.take()) else {
            return Some(None);
        };
        // An offer on the shared port: the route is the address the answer gives, if
        // the port can take it; else the leg moves to a pair of its own.
        let mut moved = None;
        if ports.rtp.is_shared()
            && let Some(remote) = n.remote_rtp
        {
            let fits = remote.ip() == a.flow.remote.ip() && ports.rtp.route(remote).is_ok();
            if !fits {
                tracing::info!(call_id = %self.call_id, %remote, phone = %a.flow.remote, "agent's media does not fit the shared port: moving it to its own ports");
                if let Some(sp) = &self.cfg.shared_rtp {
                    sp.note_misfit(a.flow.remote);
                }
                let Ok(pair) = self.ports.bind(self.cfg.media_ip).await else {
                    return Some(None);
                };
                moved = Some(pair.pair.rtp());
                ports = pair;
            }
        }
        let leg = MediaLeg::new(ports, LegConfig::from(&n), self.cfg.leg_timing);
        if let Some(port) = moved {
            incall::move_agent_media(self, a, port).await;
        }
        Some(Some(leg))
    }

    /// Bridges the legs and starts the recording.
    async fn bridge(&self, st: &mut State) {
        if st.media.bridge().await.is_err() {
            return;
        }
        st.bridged = true;
        tracing::info!(call_id = %self.call_id, "legs bridged");
        rejoin::watch(&self.sip, st);
        // After a transfer the call's recording is already running: one file per call.
        if st.recording.is_some() {
            return;
        }
        if let Some((tap, job, path)) = self.start_call_recording(st.trace.arrived_at)
            && st.media.record(Some(tap.clone())).await.is_ok()
        {
            self.desk.recording(&path);
            st.recording = Some(job);
            st.recording_tap = Some(tap);
        }
    }

    /// Opens this call's recording file under `[media] recordings` (none when recording
    /// is off or the file cannot be made).
    pub(crate) fn start_call_recording(
        &self,
        arrived_at: i64,
    ) -> Option<(RecorderTap, RecordingJob, PathBuf)> {
        let dir = self.cfg.recordings.as_ref()?;
        let name = file_safe(&self.call_id);
        let path = dir.join(format!("{arrived_at}-{name}.wav"));
        // The writer opens the file on this task; it is small and once per call.
        match start_recording(&path, 200, Instant::now()) {
            Ok((tap, job)) => Some((tap, job, path)),
            Err(e) => {
                tracing::warn!(call_id = %self.call_id, error = %e, path = %path.display(), "cannot record");
                None
            }
        }
    }

    pub(crate) async fn to_acd(&self, m: AcdInput) {
        if let Some(acd) = &self.acd {
            let _ = acd.send(m).await;
        }
    }

    /// Carries out an ACD decision for this call.
    async fn acd_output(&self, out: AcdOutput, st: &mut State) -> incall::Outcome {
        match out {
            AcdOutput::Offer { agent: who, user } => {
                let leg = if st.agent.is_some() {
                    None // one offer at a time (ring-all comes later)
                } else {
                    // The pop reaches the desk before the phone rings.
                    self.desk.offered(&user).await;
                    match self.sip.contact_for(&user).await {
                        Ok(Some((uri, flow))) => {
                            let (number, host) = (&st.number, &st.host);
                            self.call_leg(number, host, &user, &uri, flow, "", LegKind::QueueAgent)
                                .await
                        }
                        _ => None,
                    }
                };
                match leg {
                    Some(mut leg) => {
                        leg.offer_of = Some(who);
                        st.agent = Some(leg);
                        st.trace.offered_at.get_or_insert(self.now_ms());
                        self.queue_log(
                            &st.trace,
                            QueueEventKind::Offer,
                            Some(&user),
                            String::new(),
                        );
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
                if let Some(a) = st.agent.as_ref()
                    && a.offer_of == Some(who)
                    && !a.answered
                {
                    let _ = self.sip.cancel(a.tx).await;
                    let user = a.user.clone();
                    st.agent = None;
                    self.queue_log(
                        &st.trace,
                        QueueEventKind::RingNoAnswer,
                        Some(&user),
                        "cancelled".into(),
                    );
                }
            }
            AcdOutput::Fallback { target } => {
                st.queued = false;
                self.queue_log(
                    &st.trace,
                    QueueEventKind::Fallback,
                    None,
                    format!("{target:?}"),
                );
                if let Some(r) = self.fallback(target, st).await {
                    return incall::Outcome::End(r);
                }
            }
            AcdOutput::Estimate { ewt_secs } => {
                st.ewt = Some(ewt_secs);
                if let Some(offer) = self.callback_offer(st) {
                    let player = Player::new(vec![offer], false, Instant::now());
                    let _ = st.media.announce(Side::A, player).await;
                }
            }
            AcdOutput::Announce { position, ewt_secs } => {
                st.ewt = Some(ewt_secs);
                if matches!(st.phase, Phase::Queue { .. }) && !st.bridged && !st.whispering {
                    let mut list =
                        announce::announcement(self.cfg.voice.as_deref(), position, ewt_secs);
                    list.extend(self.callback_offer(st));
                    let player = Player::new(list, false, Instant::now());
                    if st.media.announce(Side::A, player).await.is_ok() {
                        st.trace.announcements += 1;
                    }
                    tracing::debug!(call_id = %self.call_id, position, ewt_secs, "announcement");
                }
            }
            AcdOutput::Refused => {
                tracing::info!(call_id = %self.call_id, "queue unknown to the ACD; caller stays on music");
            }
        }
        incall::Outcome::Continue
    }

    pub(crate) async fn bye_agent(&self, a: &mut AgentLeg) {
        let Some(target) = &a.target else { return };
        a.cseq += 1;
        let text = format!(
            "BYE {target} SIP/2.0\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
            a.from, a.to, a.call_id, a.cseq
        );
        if let Some(req) = own_request(&text) {
            let _ = self.sip.send_request(req, a.flow).await;
        }
    }

    pub(crate) async fn bye_caller(&self, c: &mut CallerDialog) {
        c.cseq += 1;
        let text = format!(
            "BYE {} SIP/2.0\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
            c.target, c.ours, c.theirs, self.call_id, c.cseq
        );
        if let Some(req) = own_request(&text) {
            let _ = self.sip.send_request(req, c.flow).await;
        }
    }

    /// Handles a SIP event of the caller's dialog (requests go to `incall`).
    async fn caller_event(&self, ev: AppEvent, ctx: incall::Ctx<'_>) -> incall::Outcome {
        match ev {
            AppEvent::Ack { request, .. } => incall::ack(ctx, &request, Side::A).await,
            AppEvent::Cancelled { .. } => incall::Outcome::End(EndReason::Cancelled),
            AppEvent::AckTimeout { .. } => incall::Outcome::End(EndReason::NoAck),
            // Knowing the Call-ID is not enough to act in the dialog: our tag must match.
            AppEvent::Request { tx, request, .. }
                if to_tag(&request) != Some(ctx.caller.tag.as_str()) =>
            {
                let resp = AppResponse::new(481, "Call/Transaction Does Not Exist");
                let _ = self.sip.respond(tx, resp).await;
                incall::Outcome::Continue
            }
            AppEvent::Request {
                tx, request, flow, ..
            } => incall::caller_request(ctx, tx, *request, flow).await,
            // An agent leg we gave up on answered after all: hang it up.
            AppEvent::Response { response, flow, .. }
                if msg::call_id(&response.headers) != Some(self.call_id.as_str()) =>
            {
                crate::hang_up_unwanted_answer(&self.sip, &response, flow).await;
                incall::Outcome::Continue
            }
            // Responses to our requests to the caller (BYE, in-call requests).
            AppEvent::Response { response, .. } => incall::caller_response(ctx, *response).await,
            AppEvent::Timeout { .. } | AppEvent::Dialog { .. } => incall::Outcome::Continue,
        }
    }
}

/// The CDR's result and hangup side for a call that ended with `reason`. A settled outcome
/// (closed message, callback accepted, goodbye) stands when the caller hangs up during it.
pub(crate) fn outcome(reason: EndReason, t: &Trace) -> (CallResult, HangupSide) {
    let hangup_side = match reason {
        EndReason::CallerHangup | EndReason::Cancelled => HangupSide::Caller,
        // The caller had left the conference; its added party (the agent's side) hung up.
        EndReason::AgentHangup | EndReason::DeskHangup | EndReason::ConferenceEnded => {
            HangupSide::Agent
        }
        _ => HangupSide::System,
    };
    let reason = match (reason, t.settled) {
        (EndReason::CallerHangup, Some(s)) => s,
        (r, _) => r,
    };
    let result = match reason {
        EndReason::Rejected => CallResult::Rejected,
        // Talked to an agent, then dropped: the record must not read as a served call.
        EndReason::TransferNotAnswered => CallResult::Failed,
        _ if t.answered_at.is_some() => CallResult::Answered,
        EndReason::Closed => CallResult::Closed,
        EndReason::Fallback | EndReason::Hangup => CallResult::Fallback,
        EndReason::Callback => CallResult::Callback,
        EndReason::Transferred => CallResult::Transferred,
        EndReason::Voicemail => CallResult::Voicemail,
        EndReason::Failed | EndReason::SessionExpired | EndReason::NoRtp => CallResult::Failed,
        EndReason::ConferenceEnded => CallResult::Answered,
        EndReason::Shutdown | EndReason::Drained => CallResult::Interrupted,
        EndReason::CallerHangup
        | EndReason::Cancelled
        | EndReason::NoAck
        | EndReason::AgentHangup
        | EndReason::DeskHangup => CallResult::Abandoned,
    };
    (result, hangup_side)
}

/// The user part and display name of a From/To value (`"Ann" <sip:ann@host>;tag=x`).
pub(crate) fn from_identity(v: &str) -> (String, Option<String>) {
    let (addr, _) = msg::split_first(v);
    let name = addr
        .split_once('<')
        .map(|(n, _)| n.trim().trim_matches('"').trim().to_string())
        .filter(|n| !n.is_empty());
    let uri = msg::addr_uri(addr);
    let user = uri
        .split_once(':')
        .map_or(uri, |(_, rest)| rest)
        .split(['@', ';'])
        .next()
        .unwrap_or_default()
        .to_string();
    (user, name)
}

/// An attended transfer from the desk in progress: the agent talks to `leg`'s user in a
/// media session of their own (A the agent, B the target) while the caller hears music.
struct Consult {
    leg: AgentLeg,
    media: SessionHandle,
    /// Kept open; the consultation's media events are not needed.
    _events: mpsc::Receiver<MediaEvent>,
    answered: bool,
}

/// The desk's keys for the caller (`call.dtmf`), sent one after the other.
#[derive(Debug, Default)]
struct DeskDtmf {
    queue: std::collections::VecDeque<char>,
    /// When the next key goes (the current one has ended by then).
    next: Option<tokio::time::Instant>,
}

impl DeskDtmf {
    /// Keys queued at most.
    const MAX: usize = 32;
    /// Each key's length (RFC 4733 events every 20 ms, then the end packet thrice).
    const TONE: std::time::Duration = std::time::Duration::from_millis(100);
    /// Key to key: the tone, its end packets and a pause.
    const STEP: std::time::Duration = std::time::Duration::from_millis(200);
}

/// Writes silence into a paused recording up to `now` (both channels), so the file's
/// length is the call's even when it ended while paused.
fn pad_recording(tap: &RecorderTap, now: Instant) {
    let silence = [hotline_media::g711::Law::Ulaw.silence(); 160];
    tap.push(
        Channel::Caller,
        hotline_media::g711::Law::Ulaw,
        &silence,
        now,
    );
    tap.push(
        Channel::Agent,
        hotline_media::g711::Law::Ulaw,
        &silence,
        now,
    );
}

/// A Call-ID as part of a file name: Call-IDs come from the network, so only safe
/// characters are kept, and at most 100 of them.
pub(crate) fn file_safe(call_id: &str) -> String {
    call_id
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '-' || c == '.' {
                c
            } else {
                '_'
            }
        })
        .take(100)
        .collect()
}

/// Sleeps until `t`, or forever without one (a `select!` branch for optional timers).
pub(crate) async fn sleep_until_opt(t: Option<tokio::time::Instant>) {
    match t {
        Some(t) => tokio::time::sleep_until(t).await,
        None => std::future::pending().await,
    }
}

/// `;transport=tcp` (tls, ws, wss) for a Contact reached over that transport (UDP is the
/// default).
fn transport_param(flow: Flow) -> &'static str {
    flow.transport.uri_param()
}

/// The To tag of a request (ours, in requests of our dialogs).
pub(crate) fn to_tag(req: &Request) -> Option<&str> {
    msg::to_value(&req.headers).and_then(msg::tag)
}

/// The Call-ID an event belongs to.
pub(crate) fn event_call_id(ev: &AppEvent) -> Option<&str> {
    match ev {
        AppEvent::Request { request, .. } | AppEvent::Ack { request, .. } => {
            msg::call_id(&request.headers)
        }
        AppEvent::Response { response, .. } => msg::call_id(&response.headers),
        AppEvent::Timeout { call_id, .. } | AppEvent::AckTimeout { call_id, .. } => Some(call_id),
        AppEvent::Cancelled { .. } | AppEvent::Dialog { .. } => None,
    }
}

/// What a leg Hotline calls is for, which decides its dialog and its media ports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum LegKind {
    /// A dialog of its own on a port pair (transfer targets, conference parties,
    /// supervisors, callbacks, extensions).
    Other,
    /// The ACD's offer to an agent: a dialog of its own, RTP on the shared port when
    /// it can be there ([`Call::offer_ports`]; [`Call::ack_answer`] moves it if not).
    QueueAgent,
    /// A click-to-dial customer: this call's own Call-ID, since the dialog becomes the
    /// call's caller dialog once answered.
    Customer,
}

/// The IP address a contact URI names (none for a host name).
fn contact_ip(uri: &str) -> Option<std::net::IpAddr> {
    msg::uri_hostport(msg::addr_uri(uri))?.0.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The shared port is offered only to a phone whose contact names the IP its
    /// signalling comes from: the contact's IP (v4, v6 in brackets), none for a name.
    #[test]
    fn a_contact_names_its_ip() {
        let ip = |u: &str| contact_ip(u).map(|a| a.to_string());
        assert_eq!(
            ip("<sip:bob@127.0.0.1:5080;transport=udp>").as_deref(),
            Some("127.0.0.1")
        );
        assert_eq!(ip("sip:10.0.0.7").as_deref(), Some("10.0.0.7"));
        assert_eq!(
            ip("sip:bob@[2001:db8::1]:5060;ob").as_deref(),
            Some("2001:db8::1")
        );
        assert_eq!(ip("sip:bob@pc.example.com:5060"), None);
        assert_eq!(ip("sip:k3j2@a1b2c3.invalid;transport=ws"), None);
    }

    #[test]
    fn cdr_outcomes() {
        let mut t = Trace::default();
        let o = |r, t: &Trace| outcome(r, t);
        assert_eq!(
            o(EndReason::Rejected, &t),
            (CallResult::Rejected, HangupSide::System)
        );
        assert_eq!(
            o(EndReason::CallerHangup, &t),
            (CallResult::Abandoned, HangupSide::Caller)
        );
        assert_eq!(
            o(EndReason::Cancelled, &t),
            (CallResult::Abandoned, HangupSide::Caller)
        );
        assert_eq!(
            o(EndReason::Fallback, &t),
            (CallResult::Fallback, HangupSide::System)
        );
        assert_eq!(
            o(EndReason::Hangup, &t),
            (CallResult::Fallback, HangupSide::System)
        );
        assert_eq!(
            o(EndReason::Failed, &t),
            (CallResult::Failed, HangupSide::System)
        );
        assert_eq!(
            o(EndReason::Shutdown, &t),
            (CallResult::Interrupted, HangupSide::System)
        );
        t.settled = Some(EndReason::Closed);
        assert_eq!(
            o(EndReason::CallerHangup, &t),
            (CallResult::Closed, HangupSide::Caller)
        );
        t.settled = Some(EndReason::Callback);
        assert_eq!(
            o(EndReason::CallerHangup, &t),
            (CallResult::Callback, HangupSide::Caller)
        );
        t.settled = None;
        t.answered_at = Some(1);
        assert_eq!(
            o(EndReason::AgentHangup, &t),
            (CallResult::Answered, HangupSide::Agent)
        );
        assert_eq!(
            o(EndReason::CallerHangup, &t),
            (CallResult::Answered, HangupSide::Caller)
        );
    }

    /// Size of the future an async fn returns, from the fn alone (no call is made).
    fn future_size<A, B, C, D, E, F>(_: impl FnOnce(A, B, C, D, E) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    /// Every call's task holds its `State` and the futures of `run` and `serve` for the
    /// whole call, so their size is memory per call. Rare members (a browser leg's
    /// WebRTC peer, about 9 KB; consultation, conference party, supervisor) are boxed:
    /// inline they made `State` about 48 KB and the two futures about 160 KB (release).
    /// Bounds hold in debug and release builds (debug futures are the larger).
    #[test]
    fn a_call_holds_only_small_state_and_futures() {
        use std::mem::size_of;
        let (state, leg) = (size_of::<State>(), size_of::<AgentLeg>());
        let (run, serve) = (future_size(Call::run), future_size(Call::serve));
        assert!(leg <= 2 * 1024, "AgentLeg is {leg} bytes");
        assert!(state <= 6 * 1024, "State is {state} bytes");
        assert!(run <= 16 * 1024, "Call::run's future is {run} bytes");
        assert!(serve <= 16 * 1024, "Call::serve's future is {serve} bytes");
        // An agent's answer and a browser's offer (the WebRTC leg's futures are boxed)
        // are awaited by every SIP event handler and every route that rings someone:
        // inline they made those futures 35 KB and 10 KB in a debug build.
        let answer = future_size3(Call::ack_answer);
        let consult = future_size3(Call::consult_event);
        let agent = future_size3(Call::agent_event);
        let route = future_size3(Call::go);
        assert!(
            answer <= 4 * 1024,
            "Call::ack_answer's future is {answer} bytes"
        );
        assert!(
            consult <= 6 * 1024,
            "Call::consult_event's is {consult} bytes"
        );
        assert!(agent <= 6 * 1024, "Call::agent_event's is {agent} bytes");
        assert!(route <= 6 * 1024, "Call::go's is {route} bytes");
    }

    /// [`future_size`] for a method with two arguments.
    fn future_size3<A, B, C, F>(_: impl FnOnce(A, B, C) -> F) -> usize {
        std::mem::size_of::<F>()
    }

    #[test]
    fn caller_identity_from_the_from_header() {
        assert_eq!(
            from_identity("\"Ann Lee\" <sip:+4930123@example.com;user=phone>;tag=1"),
            ("+4930123".to_string(), Some("Ann Lee".to_string()))
        );
        assert_eq!(from_identity("sip:bob@h;tag=x"), ("bob".to_string(), None));
        assert_eq!(from_identity("<sips:carol@h>"), ("carol".to_string(), None));
    }
}
