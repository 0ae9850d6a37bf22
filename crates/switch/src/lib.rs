//! Hotline's call control: a B2BUA with one tokio task per call.
//!
//! The dispatcher task takes the SIP core's application events ([`hotline_sip::AppEvent`])
//! and routes them by Call-ID to the call tasks; each call task owns its media session
//! (`hotline_media`) and talks to the SIP core through the [`AppHandle`].
//!
//! An INVITE to a configured number is answered with Hotline's SDP (media anchored
//! here); its [`Route`] then leads through business hours ([`hours`]), IVR menus
//! ([`ivr`]) and queues (music, [`announce`]ments, the ACD's offers) or to an extension,
//! until an agent is bridged or the call ends.

mod acd;
pub mod announce;
mod call;
mod callback;
mod direct_calls;
mod drain;
mod error;
pub mod events;
pub mod hours;
mod incall;
pub mod ivr;
mod qualify;
mod reconfig;
mod timer_retry;
pub mod tollfraud;
pub mod voicemail;
mod webrtc_leg;

use std::collections::{HashMap, HashSet};
use std::net::IpAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hotline_acd::{AcdConfig, CallId};
use hotline_media::{LegTiming, PortAllocator, Prompt};
use hotline_sip::msg::{self, Method};
use hotline_sip::server::AppHandle;
use hotline_sip::{AppEvent, ServerTxId};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

pub use call::{CallEnd, EndReason, MAX_RECALLS};
pub use drain::{DrainPolicy, DrainReport};
pub use error::SwitchError;
pub use events::{
    AgentCommand, AgentStateEvent, AgentStatus, CallCommand, Offered, QueueStat, SwitchEvent,
    SwitchHandle, VoicemailLeft,
};
/// How a supervisor takes part in a call (the media hear-matrix): monitor, whisper, barge.
pub use hotline_media::mix::SuperviseMode;
pub use qualify::{Qualify, QualifyPolicy};
pub use reconfig::ReconfigReport;

/// What desks (CTI) need from call control: the CRM store for screen pops and the service
/// trail, which agents log in from a desk, and how long an offer waits for its pop.
#[derive(Clone)]
pub struct DeskConfig {
    pub store: Option<hotline_crm::Store>,
    /// Agents who start logged out and log in from their desk; every other `[acd]` agent
    /// is logged in and ready at start (phones-only centers, tests).
    pub desk_login: std::collections::HashSet<String>,
    /// How long an offer waits for the desk server to confirm the pop reached the agent
    /// before the phone rings anyway.
    pub offer_ack_timeout: std::time::Duration,
    /// Bound on the caller lookup at arrival; past it the call is routed without a pop.
    pub lookup_timeout: std::time::Duration,
    /// Networks whose P-Asserted-Identity is believed (`[sip] trusted`, the trunks);
    /// from anywhere else the caller is identified from From.
    pub trusted: Vec<hotline_sip::Cidr>,
    /// How long a bridged call waits for an agent's lost in-page phone (reload, blip)
    /// before it goes back to the head of its queue.
    pub phone_rejoin: std::time::Duration,
}

impl Default for DeskConfig {
    fn default() -> Self {
        DeskConfig {
            store: None,
            desk_login: Default::default(),
            offer_ack_timeout: std::time::Duration::from_millis(250),
            lookup_timeout: std::time::Duration::from_millis(1000),
            trusted: Vec::new(),
            phone_rejoin: std::time::Duration::from_secs(30),
        }
    }
}
pub use hours::{Clock, Hours};
pub use ivr::Menu;
pub use tollfraud::{DialRule, DialRules};
pub use voicemail::VoicemailBox;

/// Where a dialled number (or a menu choice, or a queue's fallback) goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// A queue (by name): answered, music on hold; with an ACD, the call enters its queue
    /// and is offered to agents.
    Queue(String),
    /// An agent/extension (SIP user): answered with music while Hotline calls the
    /// user's registered contact with its own SDP; on answer the legs are bridged.
    Extension(String),
    /// An IVR menu (by name).
    Menu(String),
    /// `open` while the named hours are open, `closed` otherwise.
    Hours {
        hours: String,
        open: Box<Route>,
        closed: Box<Route>,
    },
    /// Play the prompt, then hang up (the closed message; CDR result `Closed`).
    Closed(Prompt),
    /// Hang up (a menu's default, a fallback).
    Hangup,
    /// An outside number, called through `[sip] static_route` (the trunk): only a desk or
    /// phone transfer that passed the toll-fraud guard leads here.
    Outside(String),
    /// A voicemail box (by name): greeting, beep, the caller's message recorded.
    Voicemail(String),
}

impl Route {
    /// Short label for the CDR's route path (`queue:sales`, `menu:main` …).
    pub fn label(&self) -> String {
        match self {
            Route::Queue(q) => format!("queue:{q}"),
            Route::Extension(u) => format!("extension:{u}"),
            Route::Menu(m) => format!("menu:{m}"),
            Route::Hours { hours, .. } => format!("hours:{hours}"),
            Route::Closed(_) => "closed".into(),
            Route::Hangup => "hangup".into(),
            Route::Outside(n) => format!("number:{n}"),
            Route::Voicemail(b) => format!("voicemail:{b}"),
        }
    }
}

/// Switch-side behaviour of an ACD queue (the ACD config has the routing rules).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueOptions {
    /// A key that takes the caller out of the queue to its fallback.
    pub leave_key: Option<char>,
    /// Played to the agent on answer, before the legs are bridged.
    pub whisper: Option<Prompt>,
    /// Callers may keep their place and be called back by pressing this key, offered
    /// when the expected wait is at least `callback_min_ewt_secs`.
    pub callback_key: Option<char>,
    pub callback_min_ewt_secs: u64,
    /// The offer ("… press star"), played once when the wait is long enough.
    pub callback_prompt: Option<Prompt>,
}

/// How an extension (a SIP user called directly or by a transfer) is rung.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExtensionOptions {
    /// How long it rings before Hotline cancels the call to it.
    pub ring_timeout: std::time::Duration,
    /// Where a call it refuses, cannot take or lets ring out goes (e.g. a voicemail box);
    /// `None`: a transfer's recall rules, else the call ends.
    pub no_answer: Option<Route>,
}

impl Default for ExtensionOptions {
    fn default() -> Self {
        ExtensionOptions {
            ring_timeout: std::time::Duration::from_secs(DEFAULT_RING_TIMEOUT_SECS),
            no_answer: None,
        }
    }
}

/// How long an extension rings when `[[extensions]]` does not say.
pub const DEFAULT_RING_TIMEOUT_SECS: u64 = 30;

/// Call control configuration.
#[derive(Debug, Clone)]
pub struct SwitchConfig {
    /// Dialled number (Request-URI user) → route.
    pub routes: HashMap<String, Route>,
    /// Address RTP sockets bind to and SDP advertises.
    pub media_ip: IpAddr,
    /// Music on hold, looped while a caller waits.
    pub music: Prompt,
    pub leg_timing: LegTiming,
    /// Queues and agents; without it queue numbers only play music.
    pub acd: Option<AcdConfig>,
    /// Session timers (RFC 4028) on callers' dialogs (`[sip] session_expires_secs`).
    pub session_timer: hotline_sip::session_timer::TimerPolicy,
    /// IVR menus by name.
    pub menus: HashMap<String, Arc<Menu>>,
    /// Business-hours sets by name.
    pub hours: HashMap<String, Hours>,
    /// Per-queue options by queue name.
    pub queues: HashMap<String, QueueOptions>,
    /// SIP users (a fallback number that is a user is called as an extension).
    pub users: HashSet<String>,
    /// Ring timeout and no-answer destination by SIP user (`[[extensions]]`); a user
    /// without an entry gets [`ExtensionOptions::default`].
    pub extensions: HashMap<String, ExtensionOptions>,
    /// Spoken prompts for announcements; `None`: tones.
    pub voice: Option<Arc<announce::VoicePrompts>>,
    /// Directory for call recordings (stereo WAV, caller left); `None`: no recording.
    pub recordings: Option<PathBuf>,
    /// Wall clock for hours and CDR times.
    pub clock: Clock,
    /// Where callbacks to numbers that are not registered users go (the static route).
    pub trunk: Option<hotline_sip::Target>,
    /// Call detail records and the queue log.
    pub cdr: hotline_cdr::CdrSink,
    /// Which outside numbers each role may transfer or dial to ([`tollfraud`]).
    pub dial_rules: DialRules,
    /// Probe agents' devices with OPTIONS (`None`: off); needs the ACD.
    pub qualify: Option<QualifyPolicy>,
    /// How browser agents' WebRTC legs are offered (`[media] webrtc_*`).
    pub webrtc: hotline_media::WebRtcSettings,
    /// Voicemail boxes by name (`[[voicemail]]`).
    pub voicemail: HashMap<String, Arc<VoicemailBox>>,
    /// The shared RTP port (`[media] shared_rtp_port`): callers' and the ACD's agents'
    /// legs whose media comes from their signalling address take their RTP there;
    /// `None`: a port pair per leg.
    pub shared_rtp: Option<Arc<hotline_media::SharedPort>>,
    /// The in-kernel RTP relay (`[media] kernel_relay`): bridged calls' audio goes
    /// through it while nothing else needs it (no music, mix, browser; a recorded
    /// call's audio is copied to its recorder); `None`: user space relays everything.
    pub kernel_relay: Option<Arc<hotline_media::kernel::KernelRelay>>,
}

impl SwitchConfig {
    /// How every call's media session runs.
    pub(crate) fn session_options(&self) -> hotline_media::session::SessionOptions {
        hotline_media::session::SessionOptions {
            tick: None,
            kernel: self.kernel_relay.clone(),
        }
    }

    /// A configuration with only routes (no ACD, menus, hours, recording) writing its
    /// CDRs to `cdr`.
    pub fn new(
        routes: HashMap<String, Route>,
        media_ip: IpAddr,
        music: Prompt,
        cdr: hotline_cdr::CdrSink,
    ) -> Self {
        SwitchConfig {
            webrtc: hotline_media::WebRtcSettings::new(media_ip),
            routes,
            media_ip,
            music,
            leg_timing: LegTiming::default(),
            acd: None,
            menus: HashMap::new(),
            hours: HashMap::new(),
            queues: HashMap::new(),
            users: HashSet::new(),
            extensions: HashMap::new(),
            voice: None,
            recordings: None,
            clock: Clock::system(),
            session_timer: Default::default(),
            trunk: None,
            cdr,
            dial_rules: DialRules::default(),
            qualify: None,
            voicemail: HashMap::new(),
            shared_rtp: None,
            kernel_relay: None,
        }
    }
}

/// Counters readable from other tasks.
#[derive(Debug, Default)]
pub struct SwitchStats {
    active: AtomicUsize,
    total: AtomicUsize,
}

impl SwitchStats {
    /// Calls whose task is running.
    pub fn active_calls(&self) -> usize {
        self.active.load(Ordering::Relaxed)
    }

    /// Calls accepted since start.
    pub fn total_calls(&self) -> usize {
        self.total.load(Ordering::Relaxed)
    }
}

/// A running switch.
pub struct Switch {
    sip: AppHandle,
    acd: Option<mpsc::Sender<acd::AcdInput>>,
    stats: Arc<SwitchStats>,
    ports: Arc<PortAllocator>,
    shared_rtp: Option<Arc<hotline_media::SharedPort>>,
    kernel_relay: Option<Arc<hotline_media::kernel::KernelRelay>>,
    ended: Option<mpsc::Receiver<CallEnd>>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    handle: SwitchHandle,
}

impl Switch {
    /// Starts the dispatcher (and the ACD task) on the SIP core's application channel.
    pub fn start(
        cfg: SwitchConfig,
        sip: AppHandle,
        events: mpsc::Receiver<AppEvent>,
        ports: Arc<PortAllocator>,
    ) -> Result<Switch, SwitchError> {
        Switch::start_with_desk(cfg, DeskConfig::default(), sip, events, ports)
    }

    /// [`Switch::start`] with desks: screen pops from the CRM, events and commands.
    pub fn start_with_desk(
        cfg: SwitchConfig,
        desk_cfg: DeskConfig,
        sip: AppHandle,
        events: mpsc::Receiver<AppEvent>,
        ports: Arc<PortAllocator>,
    ) -> Result<Switch, SwitchError> {
        let (bus, _) = tokio::sync::broadcast::channel(events::BUS_CAPACITY);
        let desk = events::Desk {
            bus: bus.clone(),
            store: desk_cfg.store.clone(),
            ack_timeout: desk_cfg.offer_ack_timeout,
            lookup_timeout: desk_cfg.lookup_timeout,
            trusted: Arc::new(desk_cfg.trusted.clone()),
            phone_rejoin: desk_cfg.phone_rejoin,
        };
        let (control_tx, control_rx) = mpsc::channel(256);
        let mut qualify_tx = None;
        let acd = match &cfg.acd {
            Some(a) => {
                let mut task = acd::AcdTask::new(
                    a,
                    &desk_cfg.desk_login,
                    bus,
                    control_tx.clone(),
                    cfg.cdr.clone(),
                )?;
                let (tx, rx) = mpsc::channel(1024);
                if let Some(policy) = cfg.qualify {
                    let (q_tx, q_rx) = mpsc::channel(1024);
                    task.qualify = Some(q_tx.clone());
                    let users = a.agents.iter().map(|x| x.id.clone());
                    let q = Qualify::new(policy, users, std::time::Instant::now());
                    tokio::spawn(qualify::run(q, sip.clone(), tx.downgrade(), q_rx));
                    qualify_tx = Some(q_tx);
                }
                tokio::spawn(task.run(rx));
                Some(tx)
            }
            None => None,
        };
        let stats = Arc::new(SwitchStats::default());
        let (ended_tx, ended_rx) = mpsc::channel(1024);
        let (stop_tx, stop_rx) = oneshot::channel();
        let (done_tx, done_rx) = mpsc::channel(256);
        let handle = SwitchHandle {
            desk: desk.clone(),
            acd: acd.clone(),
            control: control_tx.clone(),
        };
        let d_acd = acd.clone();
        let shared_rtp = cfg.shared_rtp.clone();
        let kernel_relay = cfg.kernel_relay.clone();
        let d = Dispatcher {
            desk,
            control_tx,
            aliases: HashMap::new(),
            acd,
            next_call: 0,
            cfg: Arc::new(cfg),
            sip: sip.clone(),
            ports: ports.clone(),
            stats: stats.clone(),
            calls: HashMap::new(),
            invites: HashMap::new(),
            done_tx,
            ended: ended_tx,
            draining: None,
            idle: Vec::new(),
            refusals: tokio::task::JoinSet::new(),
            qualify: qualify_tx,
            direct: direct_calls::DirectCalls::default(),
        };
        let task = tokio::spawn(d.run(events, done_rx, control_rx, stop_rx));
        Ok(Switch {
            acd: d_acd,
            sip,
            stats,
            ports,
            shared_rtp,
            kernel_relay,
            ended: Some(ended_rx),
            stop: Some(stop_tx),
            task,
            handle,
        })
    }

    /// Commands in, events out: the handle a CTI server holds.
    pub fn handle(&self) -> SwitchHandle {
        self.handle.clone()
    }

    /// Every event from now on (agent states, offers with their pop, call events).
    pub fn subscribe(&self) -> tokio::sync::broadcast::Receiver<SwitchEvent> {
        self.handle.subscribe()
    }

    pub fn stats(&self) -> Arc<SwitchStats> {
        self.stats.clone()
    }

    /// What the shared RTP port has seen (`None` without `[media] shared_rtp_port`).
    pub fn shared_rtp(&self) -> Option<hotline_media::SharedPortStats> {
        self.shared_rtp.as_ref().map(|p| p.stats())
    }

    /// The in-kernel relay's totals (`None` without `[media] kernel_relay`).
    pub fn kernel_relay(&self) -> Option<hotline_media::kernel::KernelRelayStats> {
        self.kernel_relay.as_ref().map(|k| k.totals())
    }

    /// The RTP port allocator (its `in_use` count says whether calls leaked ports).
    pub fn ports(&self) -> Arc<PortAllocator> {
        self.ports.clone()
    }

    /// The ACD state of the agent `user` (`None` without an ACD or for an unknown agent).
    pub async fn agent_state(&self, user: &str) -> Option<hotline_acd::AgentState> {
        let acd = self.acd.as_ref()?;
        let (reply, rx) = oneshot::channel();
        acd.send(acd::AcdInput::State {
            user: user.to_string(),
            reply,
        })
        .await
        .ok()?;
        rx.await.ok().flatten()
    }

    /// The not-ready reason code an agent gets while busy on a non-queue call.
    pub const BUSY_CODE: u16 = acd::BUSY_CODE;

    /// The not-ready reason code (`unreachable` to desks) of an agent whose device does
    /// not answer OPTIONS probes (`[qualify]`).
    pub const UNREACHABLE_CODE: u16 = acd::UNREACHABLE_CODE;

    /// SIP dialogs the core still delivers to us (0 when no call is left over).
    pub async fn sip_dialogs(&self) -> Result<usize, SwitchError> {
        Ok(self.sip.dialogs().await?)
    }

    /// Reports of ended calls (a bounded channel: reports beyond its capacity are
    /// dropped, never blocking call teardown). Can be taken once.
    pub fn take_ended(&mut self) -> Option<mpsc::Receiver<CallEnd>> {
        self.ended.take()
    }

    /// Graceful drain: new calls are refused from now on ([`DrainPolicy::refusal`]); the
    /// calls in progress may finish within `policy.grace`, then the rest are hung up (BYE
    /// to both legs) and given a moment to write their CDRs. Call [`Switch::shutdown`]
    /// after it.
    pub async fn drain(&self, policy: &DrainPolicy) -> DrainReport {
        let mut report = DrainReport {
            calls_at_start: self.stats.active_calls(),
            ..DrainReport::default()
        };
        let (idle, done) = oneshot::channel();
        let control = &self.handle.control;
        let armed = control
            .send(Control::Drain {
                policy: Some(policy.clone()),
                idle,
            })
            .await;
        // Phone-to-phone INVITEs too: the core hands every new one to the dispatcher,
        // which has the drain armed before the first of them (control goes first).
        if let Err(e) = self.sip.set_draining(true).await {
            tracing::warn!(error = %e, "draining: SIP core gone");
        }
        tracing::info!(calls = report.calls_at_start, grace = ?policy.grace, "draining: new calls refused");
        if armed.is_err() || tokio::time::timeout(policy.grace, done).await.is_ok() {
            return report;
        }
        let (reply, hung) = oneshot::channel();
        let (idle, done) = oneshot::channel();
        if control.send(Control::HangupAll { reply }).await.is_err()
            || control
                .send(Control::Drain { policy: None, idle })
                .await
                .is_err()
        {
            return report;
        }
        report.hung_up = hung.await.unwrap_or(0);
        tracing::info!(calls = report.hung_up, "drain bound reached: hanging up");
        if tokio::time::timeout(drain::HANGUP_WAIT, done)
            .await
            .is_err()
        {
            report.left = self.stats.active_calls();
        }
        report
    }

    /// Stops the dispatcher; running calls are dropped (their media released).
    pub async fn shutdown(mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
    }
}

/// What the dispatcher tells a call task.
#[derive(Debug)]
pub(crate) enum CallInput {
    Sip(AppEvent),
    /// A desk's command (hang up).
    Command(CallCommand, oneshot::Sender<Result<(), SwitchError>>),
    /// Attended transfer: another call asks for this call's agent leg (the REFER's
    /// Replaces named this call's caller dialog).
    GiveAgent(incall::GiveAgent),
    /// The drain's bound passed: hang up both legs ([`EndReason::Drained`]).
    Drain,
}

/// What a call task asks of the dispatcher.
#[derive(Debug)]
pub(crate) enum Control {
    /// Route events of another dialog (an agent leg's Call-ID) to `call_id`'s task; the
    /// reply comes once the route exists, so no response can overtake it.
    Alias {
        call_id: String,
        alias: String,
        done: oneshot::Sender<()>,
    },
    /// A desk's command for the call with this Call-ID.
    Command {
        call_id: String,
        cmd: CallCommand,
        reply: oneshot::Sender<Result<(), SwitchError>>,
    },
    /// Attended transfer: pass `ask` to the call whose caller dialog has `call_id`
    /// (dropped, which answers "no", when there is none).
    Replace {
        call_id: String,
        ask: incall::GiveAgent,
    },
    /// The ACD reserved an agent for a queued callback: place it.
    PlaceCallback(callback::CallbackJob),
    /// Live apply: new calls use these routing tables (`reconfig`).
    Reconfigure {
        cfg: Box<SwitchConfig>,
        reply: oneshot::Sender<Result<(), SwitchError>>,
    },
    /// Start draining (with `Some` policy) and report on `idle` once no call is left.
    Drain {
        policy: Option<DrainPolicy>,
        idle: oneshot::Sender<()>,
    },
    /// Hang up every call (the drain's bound); replies how many were told.
    HangupAll { reply: oneshot::Sender<usize> },
    /// A desk's click-to-dial: call the agent, then the number; replies the Call-ID.
    Dial {
        agent: String,
        number: String,
        customer: Option<i64>,
        /// The desk user's role, for the toll-fraud guard.
        role: String,
        reply: oneshot::Sender<Result<String, SwitchError>>,
    },
}

/// A call task's inbox: SIP events and control for one call (a few per second at most).
const CALL_INBOX: usize = 128;
/// How long the dispatcher waits on a full call inbox before dropping the event.
const INBOX_WAIT: std::time::Duration = std::time::Duration::from_millis(200);

struct Dispatcher {
    desk: events::Desk,
    cfg: Arc<SwitchConfig>,
    sip: AppHandle,
    ports: Arc<PortAllocator>,
    stats: Arc<SwitchStats>,
    /// Call-ID → the call task's input.
    calls: HashMap<String, mpsc::Sender<CallInput>>,
    /// Initial INVITE transaction → Call-ID (CANCEL is reported by transaction).
    invites: HashMap<ServerTxId, String>,
    done_tx: mpsc::Sender<(String, Option<ServerTxId>, CallEnd)>,
    ended: mpsc::Sender<CallEnd>,
    control_tx: mpsc::Sender<Control>,
    /// Call-ID → other dialogs of the same call.
    aliases: HashMap<String, Vec<String>>,
    /// The ACD task's input (dropped with the dispatcher, which ends the ACD task).
    acd: Option<mpsc::Sender<acd::AcdInput>>,
    next_call: u64,
    /// Set by a drain: new calls get its refusal.
    draining: Option<DrainPolicy>,
    /// Drains waiting for the last call to end.
    idle: Vec<oneshot::Sender<()>>,
    /// CDR writes of calls refused while draining.
    refusals: tokio::task::JoinSet<()>,
    /// The device prober, which gets the answers to its OPTIONS.
    qualify: Option<mpsc::Sender<qualify::QualifyInput>>,
    /// Users on proxied phone-to-phone calls (busy for the ACD).
    direct: direct_calls::DirectCalls,
}

impl Dispatcher {
    async fn run(
        mut self,
        mut events: mpsc::Receiver<AppEvent>,
        mut done: mpsc::Receiver<(String, Option<ServerTxId>, CallEnd)>,
        mut control: mpsc::Receiver<Control>,
        mut stop: oneshot::Receiver<()>,
    ) {
        loop {
            tokio::select! {
                biased;
                _ = &mut stop => break,
                Some(c) = control.recv() => match c {
                    Control::Alias { call_id, alias, done } => {
                        if let Some(tx) = self.calls.get(&call_id).cloned() {
                            self.calls.insert(alias.clone(), tx);
                            self.aliases.entry(call_id).or_default().push(alias);
                        }
                        let _ = done.send(());
                    }
                    Control::Command { call_id, cmd, reply } => match self.calls.get(&call_id) {
                        Some(call) => {
                            if let Err(mpsc::error::TrySendError::Full(CallInput::Command(_, reply)) | mpsc::error::TrySendError::Closed(CallInput::Command(_, reply))) = call.try_send(CallInput::Command(cmd, reply)) {
                                let _ = reply.send(Err(SwitchError::Unavailable));
                            }
                        }
                        None => {
                            let _ = reply.send(Err(SwitchError::NotFound(format!("call {call_id}"))));
                        }
                    },
                    Control::Replace { call_id, ask } => {
                        if let Some(tx) = self.calls.get(&call_id) {
                            let _ = tx.try_send(CallInput::GiveAgent(ask));
                        }
                    }
                    Control::PlaceCallback(job) => {
                        self.place_callback(job);
                    }
                    Control::Reconfigure { cfg, reply } => {
                        let cfg = reconfig::merge(&self.cfg, *cfg);
                        let numbers = cfg.routes.keys().cloned().collect();
                        self.cfg = Arc::new(cfg);
                        let r = self.sip.set_numbers(numbers).await.map_err(SwitchError::from);
                        let _ = reply.send(r);
                    }
                    Control::Drain { policy, idle } => {
                        if policy.is_some() {
                            self.draining = policy;
                        }
                        self.idle.push(idle);
                        self.wake_idle();
                    }
                    Control::HangupAll { reply } => {
                        let _ = reply.send(self.hang_up_all());
                    }
                    Control::Dial { agent, number, customer, role, reply } => {
                        if let Err(e) = self.cfg.check_destination(&role, &number, "click-to-dial") {
                            let _ = reply.send(Err(e));
                            continue;
                        }
                        let job = callback::CallbackJob {
                            call: CallId(u64::MAX),
                            agent: None,
                            dial: Some(customer),
                            user: agent,
                            number,
                            queue: String::new(),
                        };
                        let _ = reply.send(
                            self.place_callback(job)
                                .ok_or_else(|| SwitchError::InvalidState("draining: no new calls".into())),
                        );
                    }
                },
                ev = events.recv() => match ev {
                    Some(ev) => self.event(ev).await,
                    None => break,
                },
                Some((call_id, invite, end)) = done.recv() => {
                    let own = self.calls.remove(&call_id);
                    // The task reports its INVITE transaction: no scan over every call.
                    if let Some(invite) = invite {
                        self.invites.remove(&invite);
                    }
                    let _ = self.sip.forget_dialog(&call_id).await;
                    for alias in self.aliases.remove(&call_id).unwrap_or_default() {
                        // A dialog handed to another call (attended transfer) stays with it.
                        let moved = match (self.calls.get(&alias), &own) {
                            (Some(t), Some(o)) => !t.same_channel(o),
                            _ => false,
                        };
                        if !moved {
                            self.calls.remove(&alias);
                            let _ = self.sip.forget_dialog(&alias).await;
                        }
                    }
                    let _ = self.ended.try_send(end);
                    self.wake_idle();
                }
            }
        }
        let refusals = async { while self.refusals.join_next().await.is_some() {} };
        let _ = tokio::time::timeout(drain::HANGUP_WAIT, refusals).await;
    }

    async fn event(&mut self, ev: AppEvent) {
        if let AppEvent::Dialog { users, up, .. } = &ev {
            // A proxied phone-to-phone call: its agents are busy until it ends.
            for (user, busy) in self.direct.change(users, *up) {
                if let Some(acd) = &self.acd {
                    let _ = acd.send(acd::AcdInput::Busy { user, busy }).await;
                }
            }
            return;
        }
        let call_id = match &ev {
            AppEvent::Request { request, .. } | AppEvent::Ack { request, .. } => {
                msg::call_id(&request.headers).map(str::to_string)
            }
            AppEvent::Cancelled { tx } => self.invites.get(tx).cloned(),
            AppEvent::AckTimeout { call_id, .. } => Some(call_id.clone()),
            AppEvent::Response { response, .. } => {
                msg::call_id(&response.headers).map(str::to_string)
            }
            AppEvent::Timeout { call_id, .. } => Some(call_id.clone()),
            AppEvent::Dialog { .. } => None,
        };
        let Some(call_id) = call_id else {
            return;
        };
        if let Some(call) = self.calls.get(&call_id) {
            // A full inbox means the call task is momentarily behind (e.g. awaiting its
            // CDR commit). A dropped event may never come back (the transaction layer
            // absorbs retransmitted BYEs), so wait a bounded time before giving up.
            let delivered = match call.try_send(CallInput::Sip(ev)) {
                Ok(()) => true,
                Err(mpsc::error::TrySendError::Full(ev)) => {
                    let call = call.clone();
                    tokio::time::timeout(INBOX_WAIT, call.send(ev))
                        .await
                        .is_ok_and(|r| r.is_ok())
                }
                Err(mpsc::error::TrySendError::Closed(_)) => false,
            };
            if !delivered {
                tracing::warn!(%call_id, "call task not keeping up; SIP event dropped");
            }
            return;
        }
        match ev {
            AppEvent::Request {
                tx,
                request,
                flow,
                local,
            } if request.method == Method::Invite
                && msg::to_value(&request.headers).and_then(msg::tag).is_none() =>
            {
                if let Some(d) = &self.draining {
                    tracing::info!(%call_id, "draining: new call refused");
                    let refusal = d.refusal();
                    let record = drain::refused_record(
                        &call_id,
                        &request,
                        refusal.status,
                        self.cfg.clock.now_ms(),
                    );
                    let _ = self.sip.respond(tx, refusal).await;
                    let _ = self.sip.forget_dialog(&call_id).await;
                    // Its CDR off the dispatcher (a store outage must not stall routing);
                    // awaited at shutdown so the record is in before the writer closes.
                    while self.refusals.try_join_next().is_some() {}
                    let cdr = self.cfg.cdr.clone();
                    self.refusals.spawn(async move {
                        if let Err(e) = cdr.record(record).await {
                            tracing::warn!(error = %e, "refused call's CDR not yet durable");
                        }
                    });
                    return;
                }
                let (inbox_tx, inbox) = mpsc::channel(CALL_INBOX);
                self.calls.insert(call_id.clone(), inbox_tx);
                self.invites.insert(tx, call_id.clone());
                self.stats.active.fetch_add(1, Ordering::Relaxed);
                self.stats.total.fetch_add(1, Ordering::Relaxed);
                let call = call::Call {
                    cfg: self.cfg.clone(),
                    sip: self.sip.clone(),
                    ports: self.ports.clone(),
                    call_id: call_id.clone(),
                    inbox,
                    control: self.control_tx.clone(),
                    acd: self.acd.clone(),
                    acd_id: CallId(self.next_call),
                    desk: events::CallDesk::new(&self.desk, &call_id, &request, flow.remote.ip()),
                };
                self.next_call += 1;
                let stats = self.stats.clone();
                let done = self.done_tx.clone();
                tokio::spawn(async move {
                    let end = boxed_run(call, tx, *request, flow, local).await;
                    stats.active.fetch_sub(1, Ordering::Relaxed);
                    let _ = done.send((call_id, Some(tx), end)).await;
                });
            }
            AppEvent::Request { tx, request, .. } => {
                let in_dialog = msg::to_value(&request.headers).and_then(msg::tag).is_some();
                let resp = match request.method {
                    Method::Ack => return,
                    // Out of dialog: a capabilities probe of the number, or a method a
                    // number does not take.
                    Method::Options if !in_dialog => hotline_sip::AppResponse::new(200, "OK")
                        .header("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"),
                    _ if !in_dialog => hotline_sip::AppResponse::new(405, "Method Not Allowed")
                        .header("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS"),
                    // In-dialog request of a call that already ended (or never existed).
                    _ => hotline_sip::AppResponse::new(481, "Call/Transaction Does Not Exist"),
                };
                let _ = self.sip.respond(tx, resp).await;
                let _ = self.sip.forget_dialog(&call_id).await;
            }
            AppEvent::Response { response, flow, .. } => {
                if let Some(q) = &self.qualify
                    && qualify::is_probe(&call_id)
                {
                    let _ = q.try_send(qualify::QualifyInput::Answered {
                        call_id: call_id.clone(),
                    });
                }
                self.orphan_response(&call_id, &response, flow).await
            }
            AppEvent::Timeout { .. } => {
                let _ = self.sip.forget_dialog(&call_id).await;
            }
            _ => {}
        }
    }

    /// Tells the drains waiting for it that no call is left.
    fn wake_idle(&mut self) {
        if self.stats.active_calls() == 0 {
            for w in self.idle.drain(..) {
                let _ = w.send(());
            }
        }
    }

    /// Hangs up every call (each task sends BYE to its legs and writes its CDR); returns
    /// how many calls were told.
    fn hang_up_all(&mut self) -> usize {
        let aliases: HashSet<&String> = self.aliases.values().flatten().collect();
        let mut told = 0;
        for (id, call) in &self.calls {
            if aliases.contains(id) {
                continue;
            }
            if call.try_send(CallInput::Drain).is_ok() {
                told += 1;
            } else {
                tracing::warn!(call_id = %id, "drain: call did not take the hangup");
            }
        }
        told
    }

    /// Starts the task of a callback the ACD wants placed (agent first, then customer).
    /// Starts the task of a callback or a desk's dial; returns its Call-ID (`None` while
    /// draining: no new call is placed).
    fn place_callback(&mut self, job: callback::CallbackJob) -> Option<String> {
        if self.draining.is_some() {
            tracing::info!(call = job.call.0, "draining: callback not placed");
            return None;
        }
        let call_id = match job.dial {
            Some(_) => format!("dial-{}-{}@hotline", self.next_call, std::process::id()),
            None => format!("callback-{}-{}@hotline", job.call.0, self.next_call),
        };
        // The customer's number: the desk's pop and trail look it up.
        let caller = job.number.clone();
        // A dial has no ACD request; it gets its own id, as an inbound call does, for a
        // transfer into a queue.
        let acd_id = match job.dial {
            Some(_) => CallId(self.next_call),
            None => job.call,
        };
        self.next_call += 1;
        let (inbox_tx, inbox) = mpsc::channel(CALL_INBOX);
        self.calls.insert(call_id.clone(), inbox_tx);
        self.stats.active.fetch_add(1, Ordering::Relaxed);
        self.stats.total.fetch_add(1, Ordering::Relaxed);
        let call = call::Call {
            cfg: self.cfg.clone(),
            sip: self.sip.clone(),
            ports: self.ports.clone(),
            call_id: call_id.clone(),
            inbox,
            control: self.control_tx.clone(),
            acd: self.acd.clone(),
            acd_id,
            desk: events::CallDesk::with_caller(&self.desk, &call_id, caller),
        };
        let stats = self.stats.clone();
        let done = self.done_tx.clone();
        let id = call_id.clone();
        tokio::spawn(async move {
            let end = call.run_callback(job).await;
            stats.active.fetch_sub(1, Ordering::Relaxed);
            let _ = done.send((call_id, None, end)).await;
        });
        Some(id)
    }

    /// A response for a call that is gone: a 2xx to INVITE is hung up; any other final
    /// response lets the dialog go.
    async fn orphan_response(
        &mut self,
        call_id: &str,
        resp: &hotline_sip::msg::Response,
        flow: hotline_sip::Flow,
    ) {
        if !hang_up_unwanted_answer(&self.sip, resp, flow).await
            && u16::from(resp.status_code.clone()) >= 200
        {
            let _ = self.sip.forget_dialog(call_id).await;
        }
    }
}

/// An agent who answered an offer we no longer want (cancelled as they answered, or the
/// caller left): ACK the 2xx and hang up, so the phone is not left in a call. Returns
/// whether `resp` was such a 2xx.
pub(crate) async fn hang_up_unwanted_answer(
    sip: &AppHandle,
    resp: &hotline_sip::msg::Response,
    flow: hotline_sip::Flow,
) -> bool {
    let status = u16::from(resp.status_code.clone());
    let cseq = msg::cseq(&resp.headers);
    let is_invite = cseq.is_some_and(|(_, m)| m.eq_ignore_ascii_case("INVITE"));
    if !(is_invite && (200..300).contains(&status)) {
        return false;
    }
    let (Some(from), Some(to), Some((n, _)), Some(call_id)) = (
        msg::from_value(&resp.headers),
        msg::to_value(&resp.headers),
        cseq,
        msg::call_id(&resp.headers),
    ) else {
        return true;
    };
    let Some(target) = msg::find(&resp.headers, |h| {
        matches!(h, hotline_sip::msg::Header::Contact(_))
    })
    .map(|c| msg::addr_uri(msg::split_first(c).0).to_string()) else {
        return true;
    };
    tracing::info!(%call_id, "answer for an offer no longer wanted; hanging up");
    let ack = format!(
        "ACK {target} SIP/2.0\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {n} ACK\r\nContent-Length: 0\r\n\r\n"
    );
    let bye = format!(
        "BYE {target} SIP/2.0\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {} BYE\r\nContent-Length: 0\r\n\r\n",
        n.saturating_add(1)
    );
    if let Some(req) = call::own_request(&ack) {
        let _ = sip.send_stateless(req, flow).await;
    }
    if let Some(req) = call::own_request(&bye) {
        let _ = sip.send_request(req, flow).await;
    }
    true
}

/// The call task's future, built in a plain function's frame and boxed: unboxed, debug
/// builds reserved its whole (very large) state in the spawned task's poll frame for
/// the call's life, and a browser agent's WebRTC setup below it overflowed the 2 MiB
/// worker stack.
#[inline(never)]
fn boxed_run(
    call: call::Call,
    tx: ServerTxId,
    request: msg::Request,
    flow: hotline_sip::Flow,
    local: String,
) -> std::pin::Pin<Box<dyn std::future::Future<Output = call::CallEnd> + Send>> {
    Box::pin(call.run(tx, request, flow, local))
}
