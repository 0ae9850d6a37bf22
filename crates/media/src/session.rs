//! The tokio layer: one media task per call owning its legs' sockets. Leg A is the
//! caller (left channel of recordings), leg B the agent (right). Each leg's outbound
//! audio comes from a *feed*: silence, a [`Player`] (prompts, music on hold) or the
//! other leg (bridged). Switching feeds keeps each leg's RTP stream continuous, since
//! the [`LegState`] (and its outbound SSRC/sequence/timestamp) lives for the whole call.

use std::future::Future;
use std::io;
use std::net::{SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::dtmf::DtmfGenerator;
use crate::error::{MediaError, Result};
use crate::g711::Law;
use crate::kernel::{Flow, FlowStats, Forward, KernelRelay};
use crate::leg::{
    Kind, LegConfig, LegCounters, LegEvent, LegState, LegTiming, MAX_PACKET, Translation,
    relay_packet,
};
use crate::mix::{Hears, SuperviseMode, mix_selected};
use crate::player::Player;
use crate::ports::{BoundPorts, PortPair};
use crate::recorder::{Channel, RecorderTap};
use crate::webrtc::{BrowserCommand, BrowserLink};

/// A sender's address as the kernel wrote it (for the shared port's reader too).
pub(crate) use batch::to_socket_addr as socket_addr;

/// Which leg of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Side {
    /// The caller.
    A = 0,
    /// The agent (or any second party).
    B = 1,
}

impl Side {
    fn other(self) -> Side {
        match self {
            Side::A => Side::B,
            Side::B => Side::A,
        }
    }
}

/// A leg: its bound sockets (holding the port pair) and its RTP state; a browser's leg
/// also carries its peer connection, which the session drives on the same socket.
#[derive(Debug)]
pub struct MediaLeg {
    ports: BoundPorts,
    state: LegState,
    /// A browser leg's WebRTC side (ICE, DTLS-SRTP); `None` for a plain leg, which then
    /// pays one branch per send and per read for it.
    browser: Option<Box<BrowserLink>>,
}

impl MediaLeg {
    /// A leg on `ports` as negotiated in `cfg`.
    pub fn new(ports: BoundPorts, cfg: LegConfig, timing: LegTiming) -> Self {
        MediaLeg {
            ports,
            state: LegState::new(cfg, timing, Instant::now()),
            browser: None,
        }
    }

    /// A browser's leg on its public socket's `ports`.
    pub(crate) fn browser(
        ports: BoundPorts,
        cfg: LegConfig,
        timing: LegTiming,
        link: Box<BrowserLink>,
    ) -> Self {
        MediaLeg {
            ports,
            state: LegState::new(cfg, timing, Instant::now()),
            browser: Some(link),
        }
    }

    /// The WebRTC side of this leg, if it is a browser's (renegotiation, counters).
    pub fn gateway(&self) -> Option<&BrowserLink> {
        self.browser.as_deref()
    }

    /// Releases the leg: a browser's connection is closed (DTLS close_notify) and every
    /// port it held is back in the pool when this returns; dropping does the same.
    pub async fn release(self) {
        drop(self);
    }

    /// Sends an RTP packet built for this leg: to `dest` for a phone, encrypted by the
    /// peer connection (which knows where the browser is) for a browser.
    fn send_rtp(&mut self, pkt: &[u8], dest: SocketAddr, now: Instant) {
        match self.browser.as_deref_mut() {
            None => match self.ports.rtp.shared_leg() {
                Some(shared) => shared.send(|push| push(pkt, dest)),
                None => {
                    let _ = self.ports.rtp.send_to(pkt, dest);
                }
            },
            Some(b) => {
                b.send(pkt, now);
                b.transmit(&self.ports.rtp);
            }
        }
    }

    /// Sends the relayed packets queued in `out` (see [`MediaLeg::send_rtp`]).
    fn send_batch(&mut self, out: &mut batch::SendBatch, now: Instant) {
        match self.browser.as_deref_mut() {
            None => match self.ports.rtp.shared_leg() {
                Some(shared) => shared.send(|push| out.take_each_to(push)),
                None => {
                    out.flush(&self.ports.rtp);
                }
            },
            Some(b) => {
                out.take_each(|pkt| b.send(pkt, now));
                b.transmit(&self.ports.rtp);
            }
        }
    }

    /// Reads what the RTP socket holds into `batch` (see [`batch::RecvBatch::recv`]). A
    /// browser's datagrams go through its peer connection first, so `batch` ends up
    /// holding the decrypted RTP, attributed to the leg's fixed source.
    fn recv(&mut self, batch: &mut batch::RecvBatch, now: Instant) -> bool {
        // ICMP errors from earlier sends surface as errors here; they are not fatal.
        let more = batch.recv(&self.ports.rtp).unwrap_or(true);
        if let Some(b) = self.browser.as_deref_mut() {
            for (d, src) in batch.iter() {
                b.receive(src, d, now);
            }
            b.flush(&self.ports.rtp);
            batch.refill(b.source(), |buf| b.poll_rtp(buf));
        }
        more
    }

    /// Readies the leg's RTP socket for a session that reads it per datagram (registered
    /// with the reactor) or on its tick (`false`, also for a leg leaving its session). A
    /// failed registration leaves the socket to the session's fallback tick.
    fn adopt(&mut self, per_datagram: bool) {
        if let Err(e) = self.ports.rtp.set_registered(per_datagram) {
            tracing::warn!(error = %e, "RTP socket not registered; read on a tick instead");
        }
    }

    /// Leaves the leg's RTP socket unread by any session (a leg between sessions).
    fn park(&mut self) {
        self.ports.rtp.park();
    }

    /// Datagrams read per turn: a registered socket keeps its readiness when more
    /// remain (the task comes back at once); a ticked one waits a whole tick, so its
    /// turn drains a deeper queue.
    fn recv_rounds(&self) -> usize {
        if self.ports.rtp.is_registered() {
            BATCH / batch::N
        } else {
            TICK_BATCH / batch::N
        }
    }

    /// Sends our RTCP report to a phone, or to a browser as SRTCP on its muxed socket.
    fn send_rtcp(&mut self, pkt: &[u8], dest: SocketAddr) {
        match self.browser.as_deref_mut() {
            None => {
                let _ = self.ports.rtcp.try_send_to(pkt, dest);
            }
            Some(b) => b.send_rtcp(pkt, Instant::now(), &self.ports.rtp),
        }
    }

    /// A browser leg's renegotiation requests and timers: the next deadline.
    fn browser_deadline(&self) -> Option<Instant> {
        self.browser.as_deref().map(BrowserLink::deadline)
    }

    fn browser_timeout(&mut self, now: Instant) {
        if let Some(b) = self.browser.as_deref_mut() {
            b.handle_timeout(now, &self.ports.rtp);
        }
    }

    fn browser_command(&mut self, cmd: BrowserCommand, now: Instant) {
        if let Some(b) = self.browser.as_deref_mut() {
            b.command(cmd, self.state.config(), now, &self.ports.rtp);
            // On a shared port, an ICE restart's new fragment must find the leg too.
            if self.ports.rtp.is_shared()
                && let Some(u) = b.ice_ufrag()
                && let Err(e) = self.ports.rtp.route_ice(&u)
            {
                tracing::warn!(error = %e, "ICE restart on the shared port");
            }
        }
    }
}

impl Drop for MediaLeg {
    fn drop(&mut self) {
        if let Some(b) = self.browser.as_deref_mut() {
            b.close(&self.ports.rtp);
        }
    }
}

impl MediaLeg {
    /// Our RTP address (for SDP).
    pub fn local_rtp_addr(&self) -> io::Result<SocketAddr> {
        self.ports.rtp.local_addr()
    }

    /// The allocated port pair.
    pub fn ports(&self) -> &PortPair {
        &self.ports.pair
    }

    /// The RTP state (counters, targets).
    pub fn state(&self) -> &LegState {
        &self.state
    }
}

/// What the session reports to the call task.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MediaEvent {
    /// Something happened on a leg (latching, DTMF, dead leg, ...).
    Leg(Side, LegEvent),
    /// A non-looping playlist on this side finished.
    PlaybackDone(Side),
}

/// Counters of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SessionStats {
    /// Leg A.
    pub a: LegCounters,
    /// Leg B, if attached.
    pub b: Option<LegCounters>,
    /// The third party (conference member or supervisor), if any.
    pub third: Option<LegCounters>,
    /// Recording frames dropped because the writer was behind.
    pub recording_dropped: u64,
    /// Events dropped because the event channel was full.
    pub events_dropped: u64,
    /// Times the session's task ran: once per datagram (or burst) per leg when reading
    /// per datagram, about once per tick in tick mode, plus commands and timers.
    pub wakeups: u64,
}

enum Command {
    Attach(Box<MediaLeg>),
    Detach(oneshot::Sender<Option<MediaLeg>>),
    Play(Side, Box<Player>),
    Announce(Side, Box<Player>),
    Silence(Side),
    Bridge,
    SendDtmf(Side, char, Duration, oneshot::Sender<Result<()>>),
    Reconfigure(Side, LegConfig),
    Record(Option<RecorderTap>),
    Stats(oneshot::Sender<SessionStats>),
    Hold(Side, Box<Player>),
    Conference(Box<MediaLeg>),
    EndConference(oneshot::Sender<Option<MediaLeg>>),
    CallerLeft(oneshot::Sender<Option<MediaLeg>>),
    Supervise(Box<MediaLeg>, SuperviseMode, oneshot::Sender<Result<()>>),
    SuperviseMode(SuperviseMode, oneshot::Sender<Result<()>>),
    EndSupervise(oneshot::Sender<Option<MediaLeg>>),
}

enum Feed {
    Silence,
    Peer,
    Player(Box<Player>),
}

/// Handle to a running media session. Dropping it stops the task (the legs and their
/// ports are then released); [`SessionHandle::stop`] returns the legs instead.
#[derive(Debug)]
pub struct SessionHandle {
    cmd: mpsc::Sender<Command>,
    join: JoinHandle<Option<(MediaLeg, Option<MediaLeg>)>>,
}

fn gone() -> MediaError {
    MediaError::TaskGone("media session")
}

impl SessionHandle {
    async fn send(&self, c: Command) -> Result<()> {
        self.cmd.send(c).await.map_err(|_| gone())
    }

    /// Attaches leg B (e.g. the agent once answered). Its feed starts as silence.
    pub async fn attach(&self, leg: MediaLeg) -> Result<()> {
        self.send(Command::Attach(Box::new(leg))).await
    }

    /// Detaches leg B (agent hung up or transfer) and returns it.
    pub async fn detach(&self) -> Result<Option<MediaLeg>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Detach(tx)).await?;
        rx.await.map_err(|_| gone())
    }

    /// Plays to one side (prompt, announcement, music on hold), replacing its feed.
    pub async fn play(&self, side: Side, player: Player) -> Result<()> {
        self.send(Command::Play(side, Box::new(player))).await
    }

    /// Interrupts what plays to one side (typically music on hold) with `announcement`,
    /// then resumes it where it stopped. [`MediaEvent::PlaybackDone`] reports the end
    /// of the announcement. Without a current player this is the same as `play`.
    pub async fn announce(&self, side: Side, announcement: Player) -> Result<()> {
        self.send(Command::Announce(side, Box::new(announcement)))
            .await
    }

    /// Sends silence (nothing) to one side.
    pub async fn silence(&self, side: Side) -> Result<()> {
        self.send(Command::Silence(side)).await
    }

    /// Bridges A and B both ways.
    pub async fn bridge(&self) -> Result<()> {
        self.send(Command::Bridge).await
    }

    /// Generates an RFC 4733 key press towards one side; fails if that leg did not
    /// negotiate telephone-event.
    pub async fn send_dtmf(&self, side: Side, digit: char, duration: Duration) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::SendDtmf(side, digit, duration, tx))
            .await?;
        rx.await.map_err(|_| gone())?
    }

    /// Applies a renegotiation (re-INVITE/UPDATE, e.g. hold) to one leg.
    pub async fn reconfigure(&self, side: Side, cfg: LegConfig) -> Result<()> {
        self.send(Command::Reconfigure(side, cfg)).await
    }

    /// Starts (Some) or stops (None) feeding received audio to a recorder.
    pub async fn record(&self, tap: Option<RecorderTap>) -> Result<()> {
        self.send(Command::Record(tap)).await
    }

    /// Hold (an agent's or caller's re-INVITE with `sendonly`/`inactive`): `listener`
    /// hears `music` and nothing of the other side, and the other side hears silence,
    /// in one step so no audio slips through between the two. [`SessionHandle::bridge`]
    /// resumes the conversation.
    pub async fn hold(&self, listener: Side, music: Player) -> Result<()> {
        self.send(Command::Hold(listener, Box::new(music))).await
    }

    /// Adds a third party: A, B and `leg` hear each other in a 3-way G.711 mix (each
    /// hears the other two, every 20 ms). Players and DTMF stop while mixing. While in
    /// the conference, [`SessionHandle::detach`] (B leaves) makes the third party leg B,
    /// bridged to A. A recording has every party meanwhile: the caller left, the agent
    /// and the third party mixed right.
    pub async fn conference(&self, leg: MediaLeg) -> Result<()> {
        self.send(Command::Conference(Box::new(leg))).await
    }

    /// The caller (A) left a conference: their leg is removed (returned; drop it to free
    /// its ports) and B and the third party go on hearing each other in the mix; a
    /// recording goes on with the caller's channel silent. `None`, changing nothing,
    /// outside a conference. Leg A stays gone: [`SessionHandle::stop`] then fails (the
    /// other legs are released with the task).
    pub async fn caller_left(&self) -> Result<Option<MediaLeg>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::CallerLeft(tx)).await?;
        rx.await.map_err(|_| gone())
    }

    /// Ends the 3-way mix (the third party left): A and B are bridged again; returns the
    /// third leg.
    pub async fn end_conference(&self) -> Result<Option<MediaLeg>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::EndConference(tx)).await?;
        rx.await.map_err(|_| gone())
    }

    /// Adds a supervisor's leg in `mode` (see [`SuperviseMode`]); caller and agent keep
    /// their relay wherever the mode lets them hear only each other. Refused while a
    /// conference (or another supervisor) holds the third place. The supervisor is not
    /// recorded: the recording stays caller left, agent right, in every mode.
    pub async fn supervise(&self, leg: MediaLeg, mode: SuperviseMode) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Supervise(Box::new(leg), mode, tx))
            .await?;
        rx.await.map_err(|_| gone())?
    }

    /// Changes the supervisor's mode live; fails without a supervisor.
    pub async fn supervise_mode(&self, mode: SuperviseMode) -> Result<()> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::SuperviseMode(mode, tx)).await?;
        rx.await.map_err(|_| gone())?
    }

    /// Removes the supervisor's leg (returned; drop it to free its ports): caller and
    /// agent are as before the supervisor came.
    pub async fn end_supervise(&self) -> Result<Option<MediaLeg>> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::EndSupervise(tx)).await?;
        rx.await.map_err(|_| gone())
    }

    /// Current counters.
    pub async fn stats(&self) -> Result<SessionStats> {
        let (tx, rx) = oneshot::channel();
        self.send(Command::Stats(tx)).await?;
        rx.await.map_err(|_| gone())
    }

    /// Stops the task and returns the legs (drop them to release their ports).
    pub async fn stop(self) -> Result<(MediaLeg, Option<MediaLeg>)> {
        drop(self.cmd);
        self.join.await.ok().flatten().ok_or_else(gone)
    }
}

/// Default period at which a session reads its RTP sockets (see [`spawn_session_with_tick`]):
/// zero, per datagram. Tick mode is opt-in until it is measured on a quiet machine: on the
/// loaded development machine it saved no CPU at 1,000-1,500 calls, and its sessions went
/// unread for seconds (`max_read_gap_ms` in the end-of-call log line); per-datagram
/// sessions' datagrams waited as long there (`rtp_wait_max_ms`), the machine being
/// saturated, so a quiet machine's waits decide.
pub const DEFAULT_TICK: Duration = Duration::ZERO;
/// Longest tick accepted by configuration: every tick adds up to its length of one-way
/// delay, and beyond this the delay budget of a conversation (ITU-T G.114) suffers.
pub const MAX_TICK: Duration = Duration::from_millis(40);
/// Tick of a per-datagram session for a leg whose socket could not be registered.
const FALLBACK_TICK: Duration = Duration::from_millis(10);

/// The configured default tick in microseconds; `u64::MAX` until set.
static TICK_US: AtomicU64 = AtomicU64::new(u64::MAX);

/// Sets the tick of sessions started by [`spawn_session`] from now on (`[media]
/// tick_ms`); zero reads RTP per datagram.
pub fn set_default_tick(tick: Duration) {
    TICK_US.store(tick.min(MAX_TICK).as_micros() as u64, Ordering::Relaxed);
}

/// The tick [`spawn_session`] uses: as set by [`set_default_tick`], else the
/// `HOTLINE_MEDIA_TICK_MS` environment variable (to run test suites in either mode),
/// else [`DEFAULT_TICK`].
pub fn default_tick() -> Duration {
    static FROM_ENV: OnceLock<Duration> = OnceLock::new();
    match TICK_US.load(Ordering::Relaxed) {
        u64::MAX => *FROM_ENV.get_or_init(|| {
            std::env::var("HOTLINE_MEDIA_TICK_MS")
                .ok()
                .and_then(|v| v.trim().parse::<u64>().ok())
                .map_or(DEFAULT_TICK, |ms| Duration::from_millis(ms).min(MAX_TICK))
        }),
        us => Duration::from_micros(us),
    }
}

/// Starts the media task for a call with its first leg, with the [`default_tick`].
/// `events` should be bounded; when it is full, events are dropped and counted rather
/// than stalling media.
pub fn spawn_session(a: MediaLeg, events: mpsc::Sender<MediaEvent>) -> SessionHandle {
    spawn_session_with_tick(a, events, default_tick())
}

/// Starts the media task with an explicit `tick`. Zero: the legs' RTP sockets are
/// registered with the reactor and every datagram wakes the task (lowest delay, one
/// thread wake-up per packet). Otherwise the sockets stay unregistered and the task
/// reads them all every `tick`, on a grid shared by every session of the process so
/// that one timer turn serves them all; relayed packets wait up to one tick.
pub fn spawn_session_with_tick(
    a: MediaLeg,
    events: mpsc::Sender<MediaEvent>,
    tick: Duration,
) -> SessionHandle {
    let opts = SessionOptions {
        tick: Some(tick),
        kernel: None,
    };
    spawn_session_with(a, events, &opts)
}

/// How a session runs, beyond its first leg.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// How often RTP sockets are read (see [`spawn_session_with_tick`]); None: the
    /// [`default_tick`].
    pub tick: Option<Duration>,
    /// The process's in-kernel relay, if it has one: a bridged call's audio goes
    /// through it whenever the call allows (see [`crate::kernel`] and
    /// `Task::kernel_wanted`).
    pub kernel: Option<Arc<KernelRelay>>,
}

/// Starts the media task with `opts`.
pub fn spawn_session_with(
    a: MediaLeg,
    events: mpsc::Sender<MediaEvent>,
    opts: &SessionOptions,
) -> SessionHandle {
    let (cmd, rx) = mpsc::channel(16);
    let task = Task {
        tick: opts.tick.unwrap_or_else(default_tick),
        offload: opts.kernel.clone().map(|relay| Offload {
            tags: [relay.new_tag(), relay.new_tag()],
            relay,
            installed: [None, None],
        }),
        wakeups: 0,
        last_read: None,
        lag: Lag::new(),
        legs: [Some(a), None],
        feeds: [Feed::Silence, Feed::Silence],
        paused: [None, None],
        dtmf: [None, None],
        tr: [None, None],
        recorder: None,
        recording_dropped_before: 0,
        third: None,
        mix: None,
        events,
        events_dropped: 0,
        buf_in: vec![0; MAX_PACKET].into_boxed_slice(),
        buf_out: vec![0; MAX_PACKET].into_boxed_slice(),
        far_future: Instant::now() + Duration::from_secs(86_400 * 365),
    };
    let join = tokio::spawn(task.run(rx));
    SessionHandle { cmd, join }
}

struct Task {
    /// Period of reading the RTP sockets; zero: per datagram.
    tick: Duration,
    /// The directions the in-kernel relay forwards for this call, if it has one.
    offload: Option<Offload>,
    /// Turns of the run loop (see [`SessionStats::wakeups`]).
    wakeups: u64,
    /// When the ticked sockets were last read.
    last_read: Option<Instant>,
    /// How far reads fell behind (logged at the end: a stalled runtime shows here
    /// before in the loss).
    lag: Lag,
    legs: [Option<MediaLeg>; 2],
    feeds: [Feed; 2],
    /// A player interrupted by an announcement, resumed when it ends.
    paused: [Option<Box<Player>>; 2],
    dtmf: [Option<DtmfGenerator>; 2],
    /// Translation for packets going *to* each side.
    tr: [Option<Translation>; 2],
    recorder: Option<RecorderTap>,
    recording_dropped_before: u64,
    /// A conference's third party, mixed with A and B while `mix` is set.
    third: Option<MediaLeg>,
    mix: Option<Mix>,
    events: mpsc::Sender<MediaEvent>,
    events_dropped: u64,
    buf_in: Box<[u8]>,
    buf_out: Box<[u8]>,
    far_future: Instant,
}

/// A session's use of the in-kernel relay: per receiving side, the flow the kernel has.
struct Offload {
    relay: Arc<KernelRelay>,
    installed: [Option<Installed>; 2],
    /// Per receiving side, the tag its audio has in the kernel's copies for the
    /// recorder (used while the call is recorded).
    tags: [u32; 2],
}

impl Offload {
    /// Takes side `from`'s direction back from the kernel (and its recording tap):
    /// what it forwarded, if the kernel had it.
    fn withdraw(&mut self, from: usize) -> Option<(Installed, FlowStats)> {
        let i = self.installed[from].take()?;
        let stats = self.relay.withdraw(&i.flow);
        if i.fwd.tag != 0 {
            self.relay.untap(i.fwd.tag);
        }
        match stats {
            Ok(Some(s)) => {
                if s.tap_dropped > 0 {
                    tracing::warn!(
                        dropped = s.tap_dropped,
                        "kernel relay: the recorder's copies overflowed"
                    );
                }
                Some((i, s))
            }
            _ => None,
        }
    }
}

/// A direction in the kernel, and how much of its count the legs already have.
struct Installed {
    flow: Flow,
    fwd: Forward,
    merged: (u64, u64),
    /// When its count was last merged into the legs (see `Task::kernel_refresh`).
    refreshed: Instant,
}

impl Drop for Offload {
    /// A session that ends without taking its flows back (aborted) still must not leave
    /// the kernel forwarding to ports that will be someone else's.
    fn drop(&mut self) {
        for from in 0..2 {
            let _ = self.withdraw(from);
        }
    }
}

/// How stale the kernel's count of a leg may be when a packet reaches its socket anyway
/// (well within the latching guard's 2 s `relatch_after`).
const KERNEL_REFRESH_ON_DRAIN: Duration = Duration::from_millis(200);

fn v4(a: SocketAddr) -> Option<SocketAddrV4> {
    match a {
        SocketAddr::V4(a) if !a.ip().is_unspecified() => Some(a),
        _ => None,
    }
}

/// Adds what the kernel forwarded for `i` (a direction from side `from`) since its last
/// merge to the legs: received on `from`, sent on the other.
fn merge_kernel(legs: &mut [Option<MediaLeg>; 2], from: usize, s: &FlowStats, i: &mut Installed) {
    let (p, b) = (
        s.packets - i.merged.0.min(s.packets),
        s.bytes - i.merged.1.min(s.bytes),
    );
    i.merged = (s.packets, s.bytes);
    if let Some(l) = legs[from].as_mut() {
        // The kernel reports the sequence number it sent; the peer's is before the offset.
        let last = s
            .last_packet
            .map(|t| (t, s.last_seq.wrapping_sub(i.fwd.seq_offset)));
        l.state.received_in_kernel(i.flow.ssrc, p, b, last);
    }
    if let Some(l) = legs[1 - from].as_mut() {
        let last = s.last_packet.map(|t| (t, s.last_seq, s.last_ts));
        l.state.sent_in_kernel(p, b, last);
    }
}

/// Where a call was when its reads fell behind, for the end-of-call line: only the
/// caller (queue, music), both legs not yet bridged, bridged, or with a third party.
#[derive(Debug, Clone, Copy, Default)]
enum Phase {
    #[default]
    OneLeg,
    TwoLegs,
    Bridged,
    Third,
}

impl Phase {
    fn as_str(self) -> &'static str {
        match self {
            Phase::OneLeg => "one_leg",
            Phase::TwoLegs => "two_legs",
            Phase::Bridged => "bridged",
            Phase::Third => "third",
        }
    }
}

/// How far a session's reads fell behind: the longest gap between two ticked reads and
/// the longest time a datagram waited in its socket (`HOTLINE_MEDIA_RTP_WAIT=1`), each
/// with when it ended (since the session began) and the call's [`Phase`] then. A gap
/// can span a stretch with nothing to read; a wait is delay a packet really had.
#[derive(Debug)]
struct Lag {
    started: Instant,
    max_gap: Duration,
    gap_at: Duration,
    gap_phase: Phase,
    /// Gaps between ticked reads of 50 ms or more.
    gaps_over_50ms: u64,
    waits: batch::Waits,
    wait_at: Duration,
    wait_phase: Phase,
}

impl Lag {
    fn new() -> Lag {
        Lag {
            started: Instant::now(),
            max_gap: Duration::ZERO,
            gap_at: Duration::ZERO,
            gap_phase: Phase::OneLeg,
            gaps_over_50ms: 0,
            waits: batch::Waits::default(),
            wait_at: Duration::ZERO,
            wait_phase: Phase::OneLeg,
        }
    }

    fn gap(&mut self, gap: Duration, now: Instant, phase: Phase) {
        if gap > self.max_gap {
            self.max_gap = gap;
            self.gap_at = now - self.started;
            self.gap_phase = phase;
        }
        self.gaps_over_50ms += u64::from(gap >= Duration::from_millis(50));
    }

    fn waits(&mut self, w: batch::Waits, phase: Phase) {
        if w.count == 0 {
            return;
        }
        if w.max > self.waits.max {
            self.waits.max = w.max;
            self.wait_at = self.started.elapsed();
            self.wait_phase = phase;
        }
        self.waits.sum += w.sum;
        self.waits.count += w.count;
        self.waits.over_50ms += w.over_50ms;
    }
}

const RTP_A: u8 = 1;
const RTCP_A: u8 = 4;
const TIMER: u8 = 16;
const RTP_C: u8 = 32;
const RTCP_C: u8 = 64;

/// Samples of one mixing tick (20 ms at 8 kHz).
const MIX_FRAME: usize = 160;
/// Received audio kept per party for the mix; older samples are dropped (a peer that
/// sends faster than real time cannot grow it).
const MIX_QUEUE: usize = 4 * MIX_FRAME;

/// The 3-way mix: G.711 audio received from A, B and the third party (with its law),
/// consumed one frame per tick; `hears` says who gets whose audio (a conference: all;
/// a supervisor: by mode). A or B hearing only the other keeps the plain relay.
struct Mix {
    queues: [std::collections::VecDeque<u8>; 3],
    laws: [Law; 3],
    next: Instant,
    hears: Hears,
    /// The third party is a supervisor (leaves with the agent, never takes B's place).
    supervisor: bool,
}

impl Mix {
    fn new(hears: Hears, supervisor: bool) -> Mix {
        Mix {
            queues: Default::default(),
            laws: [Law::Ulaw; 3],
            next: Instant::now() + Duration::from_millis(20),
            hears,
            supervisor,
        }
    }

    /// Queues audio received from party `i`.
    fn push(&mut self, i: usize, law: Law, payload: &[u8]) {
        self.laws[i] = law;
        let q = &mut self.queues[i];
        q.extend(payload);
        let excess = q.len().saturating_sub(MIX_QUEUE);
        q.drain(..excess);
    }
}

/// Packets handled per readiness wake-up before yielding to other branches.
const BATCH: usize = 64;
/// Packets read from one leg per tick at most (a tick's worth is one or two; the cap
/// only bounds a flood, whose rest waits in the socket for the next tick).
const TICK_BATCH: usize = 512;

/// The first multiple of `tick` since a process-wide epoch that is after `now`. Every
/// session ticks on this grid, so the runtime's timer fires them all in one turn: one
/// thread wake-up serves every call instead of one per datagram.
pub(crate) fn next_tick(now: Instant, tick: Duration) -> Instant {
    static EPOCH: OnceLock<Instant> = OnceLock::new();
    let epoch = *EPOCH.get_or_init(Instant::now);
    if now < epoch {
        return epoch;
    }
    let t = tick.as_nanos().max(1);
    let k = now.saturating_duration_since(epoch).as_nanos() / t + 1;
    epoch + Duration::from_nanos((k * t).min(u64::MAX as u128) as u64)
}

thread_local! {
    /// Receive buffers shared by the sessions running on this thread (a drain never
    /// awaits), so each call does not carry its own.
    static RECV: std::cell::RefCell<batch::RecvBatch> =
        std::cell::RefCell::new(batch::RecvBatch::new());
    /// Relayed datagrams of one received batch, sent together (same rule as `RECV`).
    static SEND: std::cell::RefCell<batch::SendBatch> =
        std::cell::RefCell::new(batch::SendBatch::new());
}

fn unix_now() -> Duration {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap_or_default()
}

impl Task {
    async fn run(
        mut self,
        mut rx: mpsc::Receiver<Command>,
    ) -> Option<(MediaLeg, Option<MediaLeg>)> {
        let per_datagram = self.tick.is_zero();
        if let Some(a) = self.legs[0].as_mut() {
            a.adopt(per_datagram);
        }
        // Two timers: the next deadline, and in tick mode the grid point after it too.
        // Re-arming a fired tick for the point after next leaves the next one in tokio's
        // timer wheel, so the wheel's next wake-up is never later than the new deadline:
        // a timer set earlier than that makes tokio wake its driver through an eventfd
        // (a `write` per session per tick, and a spurious turn of the reactor), which is
        // what re-arming a single timer on every tick did.
        let mut at = [self.next_deadline(), self.far_future];
        let sleep = tokio::time::sleep_until(at[0].into());
        let ahead = tokio::time::sleep_until(at[1].into());
        tokio::pin!(sleep);
        tokio::pin!(ahead);
        loop {
            // Ticking (some RTP socket unregistered): wake on the grid only, where every
            // timer that fell due meanwhile runs too.
            let tick = self.tick_period();
            let want = match tick {
                Some(t) => {
                    let d = next_tick(Instant::now(), t);
                    [d, d + t]
                }
                None => [self.next_deadline(), self.far_future],
            };
            let deadline = want[0];
            let next = if at[0] == want[1] || at[1] == want[0] {
                [want[1], want[0]]
            } else {
                want
            };
            if next[0] != at[0] {
                sleep.as_mut().reset(next[0].into());
            }
            if next[1] != at[1] {
                ahead.as_mut().reset(next[1].into());
            }
            at = next;
            // One hand-written poll over everything instead of `select!`: it collects
            // every ready source in one pass and uses the sockets' single waker slots
            // (`poll_recv_ready`), which is cheaper per packet than readiness futures.
            let (cmd, ready, link_cmd) = {
                let legs = &mut self.legs;
                let third = &mut self.third;
                let (sleep, ahead) = (&mut sleep, &mut ahead);
                std::future::poll_fn(|cx| {
                    let mut ready = 0u8;
                    if let Poll::Ready(c) = rx.poll_recv(cx) {
                        return Poll::Ready((Some(c), 0, None));
                    }
                    for (i, leg) in legs.iter_mut().chain([&mut *third]).enumerate() {
                        if let Some(l) = leg {
                            if let Some(reg) = l.ports.rtp.registration() {
                                if let Poll::Ready(Ok(_)) = reg.poll_read_ready(cx) {
                                    ready |= [RTP_A, RTP_A << 1, RTP_C][i];
                                }
                            } else if let Some(inbox) = l.ports.rtp.inbox()
                                && inbox.poll_ready(cx)
                            {
                                ready |= [RTP_A, RTP_A << 1, RTP_C][i];
                            }
                            if let Poll::Ready(Ok(())) = l.ports.rtcp.poll_recv_ready(cx) {
                                ready |= [RTCP_A, RTCP_A << 1, RTCP_C][i];
                            }
                            // Only a browser leg has renegotiation requests to wait for.
                            if let Some(b) = l.browser.as_deref_mut()
                                && let Poll::Ready(Some(c)) = b.poll_command(cx)
                            {
                                return Poll::Ready((None, ready, Some((i, c))));
                            }
                        }
                    }
                    // Both polled: a timer registers (and wakes) only once polled.
                    let fired = sleep.as_mut().poll(cx).is_ready();
                    if ahead.as_mut().poll(cx).is_ready() || fired {
                        ready |= TIMER;
                    }
                    if ready == 0 {
                        Poll::Pending
                    } else {
                        Poll::Ready((None, ready, None))
                    }
                })
                .await
            };
            self.wakeups += 1;
            match cmd {
                Some(None) => break,
                Some(Some(c)) => self.command(c),
                None => {}
            }
            if let Some((i, c)) = link_cmd {
                let leg = match i {
                    0 | 1 => self.legs[i].as_mut(),
                    _ => self.third.as_mut(),
                };
                if let Some(leg) = leg {
                    leg.browser_command(c, Instant::now());
                }
            }
            if ready & TIMER != 0 && tick.is_some() {
                self.drain_unregistered(deadline);
            }
            if ready & RTP_A != 0 {
                self.drain_rtp(Side::A);
            }
            if ready & (RTP_A << 1) != 0 {
                self.drain_rtp(Side::B);
            }
            if ready & RTCP_A != 0 {
                self.drain_rtcp(Side::A);
            }
            if ready & (RTCP_A << 1) != 0 {
                self.drain_rtcp(Side::B);
            }
            if ready & RTP_C != 0 {
                self.drain_third();
            }
            if ready & RTCP_C != 0
                && let Some(leg) = self.third.as_mut()
            {
                let now = Instant::now();
                while let Ok((n, src)) = leg.ports.rtcp.try_recv_from(&mut self.buf_in) {
                    if leg.browser.is_none() {
                        let _ = leg.state.accept_rtcp(src, &self.buf_in[..n], now);
                    }
                }
            }
            if ready & TIMER != 0 {
                let now = Instant::now();
                // A tick between two due timers has nothing more to do.
                if tick.is_none() || now >= self.next_deadline() {
                    self.on_timer(now);
                    self.on_mix_timer(now);
                }
            }
            self.kernel_sync();
            self.flush_events();
        }
        self.kernel_withdraw_all();
        self.log_end();
        // Leg A is never removed, so this is always `Some`.
        let [a, b] = self.legs;
        a.map(|mut a| {
            a.park();
            (a, b.map(Self::release))
        })
    }

    /// A leg leaving the session: no longer registered with the reactor, nor watched.
    fn release(mut leg: MediaLeg) -> MediaLeg {
        leg.park();
        leg
    }

    /// A leg joining the session: registered or not as the session reads RTP.
    fn admit(&self, mut leg: MediaLeg) -> MediaLeg {
        leg.adopt(self.tick.is_zero());
        leg
    }

    /// The period to read unregistered RTP sockets at: the configured tick, or in a
    /// per-datagram session the fallback for a leg that could not be registered.
    fn tick_period(&self) -> Option<Duration> {
        if !self.tick.is_zero() {
            return Some(self.tick);
        }
        let unregistered = self
            .legs
            .iter()
            .chain([&self.third])
            .flatten()
            .any(|l| !l.ports.rtp.is_registered());
        unregistered.then_some(FALLBACK_TICK)
    }

    /// On the tick that fell due at `tick`: reads every RTP socket that is not registered
    /// with the reactor and holds datagrams until it is empty (or a flood's cap), and
    /// relays, mixes or records what it held. Empty sockets are not read at all (see
    /// [`RtpSocket::tick_ready`](crate::ports::RtpSocket::tick_ready)).
    fn drain_unregistered(&mut self, tick: Instant) {
        let now = Instant::now();
        if let Some(last) = self.last_read.replace(now) {
            let phase = self.phase();
            self.lag.gap(now - last, now, phase);
        }
        let due = |l: &MediaLeg| !l.ports.rtp.is_registered() && l.ports.rtp.tick_ready(tick);
        for side in [Side::A, Side::B] {
            if self.legs[side as usize].as_ref().is_some_and(due) {
                self.drain_rtp(side);
            }
        }
        if self.third.as_ref().is_some_and(due) {
            self.drain_third();
        }
    }

    /// Reads the third party's RTP into the mix.
    fn drain_third(&mut self) {
        RECV.with_borrow_mut(|batch| {
            self.drain_mixed(2, batch);
            let (w, phase) = (batch.take_waits(), self.phase());
            self.lag.waits(w, phase);
        });
    }

    /// The call's phase, for [`Lag`].
    fn phase(&self) -> Phase {
        match (&self.legs[1], &self.third, &self.feeds[0]) {
            (_, Some(_), _) => Phase::Third,
            (Some(_), None, Feed::Peer) => Phase::Bridged,
            (Some(_), None, _) => Phase::TwoLegs,
            (None, None, _) => Phase::OneLeg,
        }
    }

    /// One line per call with the relay's counters (target `hotline_media::stats`): loss
    /// and volume per leg for operations and the call-path benchmark, without a query.
    fn log_end(&self) {
        let c = |i: usize| {
            self.legs[i]
                .as_ref()
                .map(|l| l.state.counters())
                .unwrap_or_default()
        };
        let (a, b) = (c(0), c(1));
        let shared = |i: usize| {
            self.legs[i]
                .as_ref()
                .is_some_and(|l| l.ports.rtp.is_shared())
        };
        metrics::counter!("hotline_rtp_packets_received_total")
            .increment(a.rx_packets + b.rx_packets);
        metrics::counter!("hotline_rtp_packets_sent_total").increment(a.tx_packets + b.tx_packets);
        metrics::counter!("hotline_rtp_packets_lost_total").increment(a.rx_lost + b.rx_lost);
        tracing::info!(
            target: "hotline_media::stats",
            a_rx = a.rx_packets,
            a_lost = a.rx_lost,
            a_tx = a.tx_packets,
            b_rx = b.rx_packets,
            b_lost = b.rx_lost,
            b_tx = b.tx_packets,
            a_shared_port = shared(0),
            b_shared_port = shared(1),
            a_jitter = a.jitter,
            b_jitter = b.jitter,
            age_ms = self.lag.started.elapsed().as_millis() as u64,
            max_read_gap_ms = self.lag.max_gap.as_millis() as u64,
            max_read_gap_at_ms = self.lag.gap_at.as_millis() as u64,
            max_read_gap_phase = self.lag.gap_phase.as_str(),
            read_gaps_over_50ms = self.lag.gaps_over_50ms,
            rtp_wait_max_ms = self.lag.waits.max.as_millis() as u64,
            rtp_wait_mean_us = self
                .lag
                .waits
                .sum
                .as_micros()
                .checked_div(u128::from(self.lag.waits.count))
                .unwrap_or(0) as u64,
            rtp_wait_over_50ms = self.lag.waits.over_50ms,
            rtp_wait_max_at_ms = self.lag.wait_at.as_millis() as u64,
            rtp_wait_max_phase = self.lag.wait_phase.as_str(),
            "media session ended"
        );
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.far_future;
        for i in 0..2 {
            if let Some(l) = &self.legs[i] {
                t = t.min(l.state.poll_timeout());
                if let Some(d) = l.browser_deadline() {
                    t = t.min(d);
                }
            }
            if let Feed::Player(p) = &self.feeds[i]
                && let Some(d) = p.next_deadline()
            {
                t = t.min(d);
            }
            if let Some(d) = self.dtmf[i].as_ref().and_then(|g| g.next_deadline()) {
                t = t.min(d);
            }
        }
        if let Some(l) = &self.third {
            t = t.min(l.state.poll_timeout());
            if let Some(d) = l.browser_deadline() {
                t = t.min(d);
            }
        }
        if let Some(m) = &self.mix {
            t = t.min(m.next);
        }
        t
    }

    fn emit(&mut self, e: MediaEvent) {
        tracing::debug!(event = ?e, "media event");
        if self.events.try_send(e).is_err() {
            self.events_dropped += 1;
            tracing::warn!(event = ?e, "media event channel full or closed; event dropped");
        }
    }

    fn flush_events(&mut self) {
        for i in 0..2 {
            let side = if i == 0 { Side::A } else { Side::B };
            while let Some(e) = self.legs[i].as_mut().and_then(|l| l.state.poll_event()) {
                self.emit(MediaEvent::Leg(side, e));
            }
        }
    }

    /// What the kernel could forward from side `from`'s peer now: only plain audio
    /// between two plain-RTP legs that hear each other and nothing else (no player,
    /// DTMF being sent, mix, third party or browser), with the same codec, once the
    /// user-space relay has set the rewrite for the peer's current source. A recorded
    /// call's direction carries its tag: the kernel copies its audio to the recorder.
    fn kernel_wanted(&self, from: usize) -> Option<(Flow, Forward)> {
        let to = 1 - from;
        if self.mix.is_some() || self.third.is_some() {
            return None;
        }
        if !matches!(self.feeds[to], Feed::Peer)
            || self.dtmf[to].is_some()
            || !self.tr[to].as_ref()?.is_identity()
        {
            return None;
        }
        let (f, t) = (self.legs[from].as_ref()?, self.legs[to].as_ref()?);
        if f.browser.is_some() || t.browser.is_some() {
            return None;
        }
        let (fc, tc) = (f.state.config(), t.state.config());
        if !fc.direction.receives() || !tc.direction.sends() {
            return None;
        }
        let (remote, ssrc) = f.state.latched()?;
        let (seq_offset, ts_offset) = t.state.outbound_stream().relayed_offsets(ssrc)?;
        // The legs' own addresses change only with a command, which takes every flow
        // back first: while one is installed its addresses are current, and this runs
        // on every turn of the loop, so no `getsockname` then.
        let installed = self.offload.as_ref()?.installed[from].as_ref();
        let (local, ours) = match installed {
            Some(i) => (i.flow.local, i.fwd.from),
            None => (v4(f.local_rtp_addr().ok()?)?, v4(t.local_rtp_addr().ok()?)?),
        };
        let flow = Flow {
            local,
            remote: v4(remote)?,
            ssrc,
        };
        let fwd = Forward {
            from: ours,
            to: v4(t.state.rtp_target()?)?,
            ssrc: t.state.outbound_stream().ssrc(),
            seq_offset,
            ts_offset,
            in_pt: fc.payload_type,
            out_pt: tc.payload_type,
            tag: match self.recorder {
                Some(_) => self.offload.as_ref()?.tags[from],
                None => 0,
            },
        };
        Some((flow, fwd))
    }

    /// Brings the kernel's flows in line with [`Task::kernel_wanted`]: takes back what
    /// no longer holds (its count goes to the legs), hands over what now does. A
    /// kernel that refuses is not asked again for this call (user space relays it).
    fn kernel_sync(&mut self) {
        if self.offload.is_none() {
            return;
        }
        for from in 0..2 {
            let want = self.kernel_wanted(from);
            let Some(off) = self.offload.as_mut() else {
                return;
            };
            let same = match (&off.installed[from], &want) {
                (Some(i), Some((f, w))) => i.flow == *f && i.fwd == *w,
                (None, None) => true,
                _ => false,
            };
            if same {
                continue;
            }
            if let Some((mut i, s)) = off.withdraw(from) {
                merge_kernel(&mut self.legs, from, &s, &mut i);
            }
            if let Some((flow, fwd)) = want {
                if fwd.tag != 0
                    && let (Some(rec), Some(leg)) = (&self.recorder, &self.legs[from])
                {
                    let channel = [Channel::Caller, Channel::Agent][from];
                    let law = leg.state.config().codec.law();
                    off.relay.tap(fwd.tag, rec.clone(), channel, law);
                }
                match off.relay.offload(flow, fwd) {
                    Ok(()) => {
                        off.installed[from] = Some(Installed {
                            flow,
                            fwd,
                            merged: (0, 0),
                            refreshed: Instant::now(),
                        })
                    }
                    Err(e) => {
                        tracing::warn!(error = %e, "kernel relay refused a call: relayed in user space");
                        if fwd.tag != 0 {
                            off.relay.untap(fwd.tag);
                        }
                        self.kernel_withdraw_all();
                        self.offload = None;
                        return;
                    }
                }
            }
        }
    }

    /// Takes every flow of this call back from the kernel, counts and all (before a
    /// command changes what the legs hear; [`Task::kernel_sync`] hands back what still
    /// holds after it).
    fn kernel_withdraw_all(&mut self) {
        let Some(off) = self.offload.as_mut() else {
            return;
        };
        for from in 0..2 {
            if let Some((mut i, s)) = off.withdraw(from) {
                merge_kernel(&mut self.legs, from, &s, &mut i);
            }
        }
    }

    /// Brings side `from`'s counts and liveness up to date with what the kernel
    /// forwarded (before its timers run, or a packet that reached the socket anyway is
    /// judged: the latching guard needs to know the peer is alive).
    /// `every` bounds how often (a read of the kernel's map is a system call, and in
    /// tick mode every leg is drained on every tick): the latching guard needs the
    /// peer's liveness to well within its 2 s, timers need it exact.
    fn kernel_refresh(&mut self, from: usize, every: Duration) {
        let Some(off) = self.offload.as_mut() else {
            return;
        };
        let now = Instant::now();
        if let Some(i) = off.installed[from].as_mut()
            && now.saturating_duration_since(i.refreshed) >= every
            && let Ok(Some(s)) = off.relay.stats(&i.flow)
        {
            i.refreshed = now;
            merge_kernel(&mut self.legs, from, &s, i);
        }
    }

    fn update_translations(&mut self) {
        self.tr = [None, None];
        if let (Some(a), Some(b)) = (&self.legs[0], &self.legs[1]) {
            let (ca, cb) = (a.state.config().codec, b.state.config().codec);
            self.tr[0] = Some(Translation::new(cb, ca));
            self.tr[1] = Some(Translation::new(ca, cb));
        }
    }

    fn command(&mut self, c: Command) {
        self.kernel_withdraw_all();
        match c {
            Command::Attach(leg) => {
                self.legs[1] = Some(self.admit(*leg));
                self.feeds[1] = Feed::Silence;
                self.update_translations();
            }
            Command::Detach(tx) if self.mix.as_ref().is_some_and(|m| m.supervisor) => {
                // The agent left a supervised call: the supervisor's leg goes too.
                self.mix = None;
                self.third = None;
                self.command(Command::Detach(tx));
            }
            Command::Detach(tx) if self.mix.is_some() => {
                // B leaves the conference: the third party takes B's place.
                let leg = self.legs[1].take();
                self.legs[1] = self.third.take();
                self.mix = None;
                self.feeds = [Feed::Peer, Feed::Peer];
                self.update_translations();
                let _ = tx.send(leg.map(Self::release));
            }
            Command::Conference(leg) => {
                self.third = Some(self.admit(*leg));
                self.feeds = [Feed::Silence, Feed::Silence];
                self.paused = [None, None];
                self.dtmf = [None, None];
                self.mix = Some(Mix::new(Hears::CONFERENCE, false));
            }
            Command::Supervise(leg, mode, tx) => {
                let r = if self.third.is_some() {
                    Err(MediaError::Busy("the call already has a third party"))
                } else {
                    // Feeds stay: A's and B's players and relay go on where relayed.
                    self.third = Some(self.admit(*leg));
                    self.mix = Some(Mix::new(Hears::supervise(mode), true));
                    Ok(())
                };
                let _ = tx.send(r);
            }
            Command::SuperviseMode(mode, tx) => {
                let r = match self.mix.as_mut() {
                    Some(m) if m.supervisor => {
                        m.hears = Hears::supervise(mode);
                        Ok(())
                    }
                    _ => Err(MediaError::Busy("no supervisor on the call")),
                };
                let _ = tx.send(r);
            }
            Command::EndSupervise(tx) => {
                let leg = if self.mix.as_ref().is_some_and(|m| m.supervisor) {
                    self.mix = None;
                    self.third.take()
                } else {
                    None
                };
                let _ = tx.send(leg.map(Self::release));
            }
            Command::CallerLeft(tx) => {
                let leg = match self.mix.as_mut() {
                    Some(m) if !m.supervisor => {
                        m.hears = Hears::CALLER_LEFT;
                        m.queues[0].clear();
                        self.feeds[0] = Feed::Silence;
                        self.paused[0] = None;
                        self.dtmf[0] = None;
                        self.tr = [None, None];
                        self.legs[0].take()
                    }
                    _ => None,
                };
                let _ = tx.send(leg.map(Self::release));
            }
            Command::EndConference(tx) => {
                self.mix = None;
                self.feeds = [Feed::Peer, Feed::Peer];
                let _ = tx.send(self.third.take().map(Self::release));
            }
            Command::Detach(tx) => {
                let leg = self.legs[1].take();
                self.feeds[1] = Feed::Silence;
                self.dtmf[1] = None;
                if matches!(self.feeds[0], Feed::Peer) {
                    self.feeds[0] = Feed::Silence;
                }
                self.update_translations();
                let _ = tx.send(leg.map(Self::release));
            }
            Command::Play(side, mut player) => {
                if let Some(l) = &self.legs[side as usize] {
                    let cfg = l.state.config();
                    player.set_format(cfg.codec.law(), cfg.ptime);
                }
                self.paused[side as usize] = None;
                self.feeds[side as usize] = Feed::Player(player);
            }
            Command::Announce(side, mut player) => {
                let i = side as usize;
                if let Some(l) = &self.legs[i] {
                    let cfg = l.state.config();
                    player.set_format(cfg.codec.law(), cfg.ptime);
                }
                match std::mem::replace(&mut self.feeds[i], Feed::Player(player)) {
                    // Announcing over an announcement keeps the original music paused.
                    Feed::Player(current) if self.paused[i].is_none() => {
                        self.paused[i] = Some(current)
                    }
                    _ => {}
                }
            }
            Command::Silence(side) => {
                self.paused[side as usize] = None;
                self.feeds[side as usize] = Feed::Silence;
            }
            Command::Bridge => {
                self.paused = [None, None];
                self.feeds = [Feed::Peer, Feed::Peer];
            }
            Command::SendDtmf(side, digit, duration, tx) => {
                let r = match &self.legs[side as usize] {
                    Some(l) if l.state.config().telephone_event.is_some() => {
                        DtmfGenerator::new(digit, duration, Instant::now()).map(|g| {
                            self.dtmf[side as usize] = Some(g);
                        })
                    }
                    Some(_) => Err(MediaError::Dtmf("leg did not negotiate telephone-event")),
                    None => Err(MediaError::Dtmf("no such leg")),
                };
                let _ = tx.send(r);
            }
            Command::Reconfigure(side, cfg) => {
                if let Some(l) = self.legs[side as usize].as_mut() {
                    if let Some(remote) = cfg.remote_rtp
                        && !l.ports.rtp.reroute(remote)
                    {
                        tracing::warn!(%remote, "shared media port: another leg has this address; the leg keeps hearing its old one");
                    }
                    l.state.reconfigure(cfg, Instant::now());
                }
                if let Feed::Player(p) = &mut self.feeds[side as usize] {
                    p.set_format(cfg.codec.law(), cfg.ptime);
                }
                if let Some(p) = self.paused[side as usize].as_mut() {
                    p.set_format(cfg.codec.law(), cfg.ptime);
                }
                self.update_translations();
            }
            Command::Record(tap) => {
                if let Some(old) = &self.recorder {
                    self.recording_dropped_before += old.dropped();
                }
                self.recorder = tap;
            }
            Command::Hold(listener, player) => {
                self.command(Command::Play(listener, player));
                self.command(Command::Silence(listener.other()));
            }
            Command::Stats(tx) => {
                let _ = tx.send(SessionStats {
                    a: self.legs[0]
                        .as_ref()
                        .map(|l| l.state.counters())
                        .unwrap_or_default(),
                    b: self.legs[1].as_ref().map(|l| l.state.counters()),
                    third: self.third.as_ref().map(|l| l.state.counters()),
                    recording_dropped: self.recording_dropped_before
                        + self.recorder.as_ref().map_or(0, |r| r.dropped()),
                    events_dropped: self.events_dropped,
                    wakeups: self.wakeups,
                });
            }
        }
    }

    fn drain_rtp(&mut self, side: Side) {
        self.kernel_refresh(side as usize, KERNEL_REFRESH_ON_DRAIN);
        RECV.with_borrow_mut(|batch| {
            SEND.with_borrow_mut(|out| self.drain_rtp_with(side, batch, out));
            let (w, phase) = (batch.take_waits(), self.phase());
            self.lag.waits(w, phase);
        });
    }

    fn drain_rtp_with(
        &mut self,
        side: Side,
        batch: &mut batch::RecvBatch,
        out: &mut batch::SendBatch,
    ) {
        let from_i = side as usize;
        let to_i = side.other() as usize;
        // With a third party, the other leg gets this leg's packets relayed only if it
        // hears nobody else (monitor); the mix gets a copy if someone mixed hears it.
        let (relayed, to_mix) = match &self.mix {
            None => (true, false),
            Some(m) => (m.hears.relayed(to_i), m.hears.mixed_from(from_i)),
        };
        if !relayed {
            return self.drain_mixed(from_i, batch);
        }
        let now = Instant::now();
        let [l0, l1] = &mut self.legs;
        let (from, mut to) = if from_i == 0 {
            (l0.as_mut(), l1.as_mut())
        } else {
            (l1.as_mut(), l0.as_mut())
        };
        let Some(from) = from else { return };
        let relay = relayed && matches!(self.feeds[to_i], Feed::Peer) && self.dtmf[to_i].is_none();
        let channel = if side == Side::A {
            Channel::Caller
        } else {
            Channel::Agent
        };
        for _ in 0..from.recv_rounds() {
            let more = from.recv(batch, now);
            for (pkt, src) in batch.iter() {
                let (kind, payload, send) = match (relay, to.as_deref_mut(), &self.tr[to_i]) {
                    (true, Some(to), Some(tr)) => {
                        match relay_packet(
                            &mut from.state,
                            &mut to.state,
                            tr,
                            src,
                            pkt,
                            now,
                            out.next_buf(),
                        ) {
                            Ok((k, p, s)) => (k, p, s),
                            Err(_) => continue,
                        }
                    }
                    _ => match from.state.accept_rtp(src, pkt, now) {
                        Ok((r, k)) => (k, r.payload(), None),
                        Err(_) => continue,
                    },
                };
                if kind == Kind::Audio
                    && let Some(tap) = &self.recorder
                {
                    tap.push(channel, from.state.config().codec.law(), payload, now);
                }
                if kind == Kind::Audio
                    && to_mix
                    && let Some(mix) = self.mix.as_mut()
                {
                    mix.push(from_i, from.state.config().codec.law(), payload);
                }
                if let Some((len, dest)) = send {
                    out.commit(len, dest);
                }
            }
            if let Some(to) = to.as_deref_mut() {
                to.send_batch(out, now);
            }
            if !more {
                return;
            }
        }
    }

    /// In a conference: received audio of party `i` (0 A, 1 B, 2 the third) goes to the
    /// mix, not straight to another leg; A's and B's still go to the recording.
    fn drain_mixed(&mut self, i: usize, batch: &mut batch::RecvBatch) {
        let now = Instant::now();
        let leg = match i {
            0 | 1 => self.legs[i].as_mut(),
            _ => self.third.as_mut(),
        };
        let (Some(leg), Some(mix)) = (leg, self.mix.as_mut()) else {
            return;
        };
        let law = leg.state.config().codec.law();
        for _ in 0..leg.recv_rounds() {
            let more = leg.recv(batch, now);
            for (pkt, src) in batch.iter() {
                let Ok((r, kind)) = leg.state.accept_rtp(src, pkt, now) else {
                    continue;
                };
                if kind != Kind::Audio {
                    continue;
                }
                let payload = r.payload();
                mix.push(i, law, payload);
                // A conference is recorded from the mix tick (all parties); a supervisor
                // is not recorded, so caller and agent go in as they arrive.
                if i < 2
                    && mix.supervisor
                    && let Some(tap) = &self.recorder
                {
                    let channel = if i == 0 {
                        Channel::Caller
                    } else {
                        Channel::Agent
                    };
                    tap.push(channel, law, payload, now);
                }
            }
            if !more {
                return;
            }
        }
    }

    /// Every 20 ms of a conference or supervision: each party not relayed gets the sum
    /// of those it hears.
    fn on_mix_timer(&mut self, now: Instant) {
        let Some(mix) = self.mix.as_mut() else {
            return;
        };
        if mix.next + Duration::from_millis(200) < now {
            // Far behind (a stalled task): start again instead of a burst.
            mix.next = now;
        }
        while mix.next <= now {
            let at = mix.next;
            mix.next += Duration::from_millis(20);
            // A party that sent less this tick counts as silence for the rest.
            let frames: [Vec<u8>; 3] = std::array::from_fn(|i| {
                let q = &mut mix.queues[i];
                q.drain(..q.len().min(MIX_FRAME)).collect()
            });
            let inputs: [(&[u8], Law); 3] = std::array::from_fn(|i| (&frames[i][..], mix.laws[i]));
            // A conference's recording: the caller left, everyone else mixed right.
            if !mix.supervisor
                && let Some(tap) = &self.recorder
            {
                let mut out = [0u8; MIX_FRAME];
                mix_selected(&inputs, |k| k == 0, Law::Ulaw, &mut out);
                tap.push(Channel::Caller, Law::Ulaw, &out, at);
                mix_selected(&inputs, |k| k != 0, Law::Ulaw, &mut out);
                tap.push(Channel::Agent, Law::Ulaw, &out, at);
            }
            let [l0, l1] = &mut self.legs;
            let parties = [l0.as_mut(), l1.as_mut(), self.third.as_mut()];
            let hears = mix.hears;
            for (j, leg) in parties.into_iter().enumerate() {
                let Some(leg) = leg else { continue };
                if hears.relayed(j) {
                    continue;
                }
                let mut out = [0u8; MIX_FRAME];
                let law = leg.state.config().codec.law();
                mix_selected(&inputs, |k| hears.hears(j, k), law, &mut out);
                if let Some((n, dest)) = leg.state.build_local(
                    Kind::Audio,
                    &out,
                    MIX_FRAME as u32,
                    false,
                    now,
                    &mut self.buf_out,
                ) {
                    leg.send_rtp(&self.buf_out[..n], dest, now);
                }
            }
        }
    }

    fn drain_rtcp(&mut self, side: Side) {
        let Some(leg) = self.legs[side as usize].as_mut() else {
            return;
        };
        let now = Instant::now();
        for _ in 0..BATCH {
            match leg.ports.rtcp.try_recv_from(&mut self.buf_in) {
                // A browser's odd port is unused (rtcp-mux): whatever comes is dropped.
                Ok((n, src)) if leg.browser.is_none() => {
                    let _ = leg.state.accept_rtcp(src, &self.buf_in[..n], now);
                }
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            }
        }
    }

    fn on_timer(&mut self, now: Instant) {
        self.kernel_refresh(0, Duration::ZERO);
        self.kernel_refresh(1, Duration::ZERO);
        let unix = unix_now();
        if let Some(leg) = self.third.as_mut() {
            leg.browser_timeout(now);
            leg.state.handle_timeout(now);
            if let Some((n, dest)) = leg.state.poll_rtcp(now, unix, &mut self.buf_out) {
                leg.send_rtcp(&self.buf_out[..n], dest);
            }
        }
        for i in 0..2 {
            let side = if i == 0 { Side::A } else { Side::B };
            let Some(leg) = self.legs[i].as_mut() else {
                continue;
            };
            leg.browser_timeout(now);
            leg.state.handle_timeout(now);
            if let Some((n, dest)) = leg.state.poll_rtcp(now, unix, &mut self.buf_out) {
                leg.send_rtcp(&self.buf_out[..n], dest);
            }
            if let Some(g) = self.dtmf[i].as_mut() {
                while let Some(p) = g.poll(now) {
                    if let Some((n, dest)) = leg.state.build_local(
                        Kind::Event,
                        &p.payload,
                        p.advance,
                        p.marker,
                        now,
                        &mut self.buf_out,
                    ) {
                        leg.send_rtp(&self.buf_out[..n], dest, now);
                    }
                }
            }
            // While a key is being sent, the player keeps its pace but its frames are
            // not sent (the event replaces the audio), so its deadline never lags.
            let sending_dtmf = self.dtmf[i].as_ref().is_some_and(|g| !g.is_done());
            // A leg that gets the mix hears the mix, not its player (which keeps pace).
            let mixed = self.mix.as_ref().is_some_and(|m| !m.hears.relayed(i));
            if !sending_dtmf {
                self.dtmf[i] = None;
            }
            let mut done = false;
            if let Feed::Player(p) = &mut self.feeds[i] {
                let advance = p.frame_samples() as u32;
                while let Some(frame) = p.poll(now) {
                    if sending_dtmf || mixed {
                        continue;
                    }
                    if let Some((n, dest)) = leg.state.build_local(
                        Kind::Audio,
                        frame,
                        advance,
                        false,
                        now,
                        &mut self.buf_out,
                    ) {
                        leg.send_rtp(&self.buf_out[..n], dest, now);
                    }
                }
                done = p.is_finished();
            }
            if done {
                self.feeds[i] = match self.paused[i].take() {
                    Some(mut p) => {
                        p.resume(now);
                        Feed::Player(p)
                    }
                    None => Feed::Silence,
                };
                self.emit(MediaEvent::PlaybackDone(side));
            }
        }
    }
}

/// Several datagrams per system call (`recvmmsg(2)`). The relay's cost is almost all
/// kernel UDP work; besides batching, a short read tells us the socket is drained, so
/// tokio's readiness is cleared without the extra read that would only return EAGAIN.
mod batch {
    use std::io;
    use std::mem::{size_of, zeroed};
    use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
    use std::os::fd::AsRawFd;

    use std::net::UdpSocket;

    use tokio::io::Interest;

    use crate::leg::MAX_PACKET;
    use crate::ports::RtpSocket;

    /// Datagrams per call: a leg gets 50 packets/s, so a wake-up or a tick rarely finds
    /// more than one or two; 8 absorbs a scheduling hiccup in one call.
    pub(super) const N: usize = 8;

    pub(super) struct RecvBatch {
        bufs: Box<[[u8; MAX_PACKET]; N]>,
        addrs: Box<[libc::sockaddr_storage; N]>,
        lens: [usize; N],
        /// Datagrams from the last `recv`, in order; `None` for one not usable (truncated
        /// or of an unknown address family).
        from: [Option<SocketAddr>; N],
        count: usize,
        /// Control buffers for the receive timestamps (`HOTLINE_MEDIA_RTP_WAIT=1`); `u64`s
        /// so they are aligned as `cmsghdr` needs.
        ctrl: Option<Box<[[u64; CTRL_WORDS]; N]>>,
        /// How long the datagrams read since the last [`RecvBatch::take_waits`] waited in
        /// their sockets.
        waits: Waits,
    }

    /// Room for one `SCM_TIMESTAMPNS` message (a 16-byte header and a 16-byte timespec).
    const CTRL_WORDS: usize = 8;

    /// Time datagrams spent in their socket between the kernel's receive timestamp and
    /// the read that took them out.
    #[derive(Debug, Default, Clone, Copy)]
    pub(super) struct Waits {
        pub(super) max: std::time::Duration,
        pub(super) sum: std::time::Duration,
        pub(super) count: u64,
        /// Datagrams that waited 50 ms or more (a phone's jitter buffer starts to show it).
        pub(super) over_50ms: u64,
    }

    impl RecvBatch {
        pub(super) fn new() -> Self {
            Self::with_waits(crate::ports::rtp_wait_measured())
        }

        /// A batch that measures how long datagrams waited (`waits`), when their sockets
        /// carry arrival stamps.
        pub(super) fn with_waits(waits: bool) -> Self {
            RecvBatch {
                bufs: Box::new([[0; MAX_PACKET]; N]),
                // SAFETY: all-zero bytes are a valid `sockaddr_storage` (family AF_UNSPEC).
                addrs: Box::new(unsafe { zeroed() }),
                lens: [0; N],
                from: [None; N],
                count: 0,
                ctrl: waits.then(|| Box::new([[0; CTRL_WORDS]; N])),
                waits: Waits::default(),
            }
        }

        /// The waits of the datagrams read since the last call (all zero unless measured).
        pub(super) fn take_waits(&mut self) -> Waits {
            std::mem::take(&mut self.waits)
        }

        /// Adds the wait of each datagram just read (its `SCM_TIMESTAMPNS`, the kernel's
        /// receive time) up to `now`, both on the realtime clock.
        fn note_waits(&mut self, hdrs: &[libc::mmsghdr], now: libc::timespec) {
            let now = ns(&now);
            for h in hdrs {
                // SAFETY: the header's control buffer is one of `self.ctrl`'s, alive, and
                // the kernel set `msg_controllen` to what it wrote there.
                let mut c = unsafe { libc::CMSG_FIRSTHDR(&h.msg_hdr) };
                while !c.is_null() {
                    // SAFETY: `c` points at a complete cmsghdr inside the buffer.
                    let m = unsafe { &*c };
                    if m.cmsg_level == libc::SOL_SOCKET && m.cmsg_type == libc::SCM_TIMESTAMPNS {
                        // SAFETY: an SCM_TIMESTAMPNS message carries a timespec; it may be
                        // unaligned for it, hence the unaligned read.
                        let ts = unsafe {
                            std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::timespec>())
                        };
                        let w = std::time::Duration::from_nanos(now.saturating_sub(ns(&ts)));
                        self.waits.max = self.waits.max.max(w);
                        self.waits.sum += w;
                        self.waits.count += 1;
                        self.waits.over_50ms +=
                            u64::from(w >= std::time::Duration::from_millis(50));
                    }
                    // SAFETY: as for CMSG_FIRSTHDR; null after the last message.
                    c = unsafe { libc::CMSG_NXTHDR(&h.msg_hdr, c) };
                }
            }
        }

        /// Reads what `sock` holds, up to [`N`] datagrams. `Ok(true)`: the batch was
        /// full, there may be more; `Ok(false)`: the socket is drained (and tokio will
        /// wake us for the next datagram if it is registered).
        pub(super) fn recv(&mut self, sock: &RtpSocket) -> io::Result<bool> {
            self.count = 0;
            if let Some(inbox) = sock.inbox() {
                return Ok(inbox.take(N, |d, src| {
                    let i = self.count;
                    self.bufs[i][..d.len()].copy_from_slice(d);
                    self.lens[i] = d.len();
                    self.from[i] = Some(src);
                    self.count += 1;
                }));
            }
            let fd = sock.as_raw_fd();
            // SAFETY: all-zero bytes are valid `iovec`s and `mmsghdr`s (null pointers,
            // zero lengths); every field the kernel reads is set below.
            let mut iov: [libc::iovec; N] = unsafe { zeroed() };
            let mut hdrs: [libc::mmsghdr; N] = unsafe { zeroed() };
            for i in 0..N {
                iov[i].iov_base = self.bufs[i].as_mut_ptr().cast();
                iov[i].iov_len = MAX_PACKET;
                let h = &mut hdrs[i].msg_hdr;
                h.msg_name = (&mut self.addrs[i] as *mut libc::sockaddr_storage).cast();
                h.msg_namelen = size_of::<libc::sockaddr_storage>() as libc::socklen_t;
                h.msg_iov = &mut iov[i];
                h.msg_iovlen = 1;
                if let Some(ctrl) = self.ctrl.as_mut() {
                    h.msg_control = ctrl[i].as_mut_ptr().cast();
                    h.msg_controllen = (CTRL_WORDS * 8) as _;
                }
            }
            let mut got = 0usize;
            let mut read = || {
                // SAFETY: `hdrs` holds N headers whose name and iovec pointers point
                // into `self.addrs`, `iov` and `self.bufs`, all alive and exclusively
                // borrowed for the duration of the call, with their true sizes.
                let n = unsafe {
                    libc::recvmmsg(
                        fd,
                        hdrs.as_mut_ptr(),
                        N as libc::c_uint,
                        libc::MSG_DONTWAIT,
                        std::ptr::null_mut(),
                    )
                };
                if n < 0 {
                    return Err(io::Error::last_os_error());
                }
                got = n as usize;
                // A short batch means the queue ran dry: report it as WouldBlock so
                // tokio clears the readiness (a datagram arriving after the call sets
                // it again, so none is missed).
                if got < N {
                    Err(io::ErrorKind::WouldBlock.into())
                } else {
                    Ok(())
                }
            };
            let r = match sock.registration() {
                Some(reg) => reg.try_io(Interest::READABLE, |_| read()),
                None => read(),
            };
            for (i, h) in hdrs.iter().enumerate().take(got.min(N)) {
                self.lens[i] = h.msg_len as usize;
                self.from[i] = if h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0 {
                    None
                } else {
                    to_socket_addr(&self.addrs[i])
                };
            }
            self.count = got.min(N);
            if self.ctrl.is_some() && got > 0 {
                // SAFETY: an all-zero timespec is valid; clock_gettime only writes it.
                let mut now: libc::timespec = unsafe { zeroed() };
                // SAFETY: `now` is a live timespec.
                unsafe { libc::clock_gettime(libc::CLOCK_REALTIME, &mut now) };
                self.note_waits(&hdrs[..self.count], now);
            }
            match r {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(false),
                Err(e) => Err(e),
            }
        }

        /// Replaces the batch's contents with what `next` writes, up to [`N`] packets, all
        /// from `src` (a browser leg's decrypted RTP in place of its SRTP datagrams).
        pub(super) fn refill(
            &mut self,
            src: SocketAddr,
            mut next: impl FnMut(&mut [u8]) -> Option<usize>,
        ) {
            self.count = 0;
            while self.count < N {
                let Some(n) = next(&mut self.bufs[self.count][..]) else {
                    break;
                };
                self.lens[self.count] = n;
                self.from[self.count] = Some(src);
                self.count += 1;
            }
        }

        /// The usable datagrams of the last `recv` with their sources.
        pub(super) fn iter(&self) -> impl Iterator<Item = (&[u8], SocketAddr)> {
            (0..self.count)
                .filter_map(|i| self.from[i].map(|src| (&self.bufs[i][..self.lens[i]], src)))
        }
    }

    /// Datagrams relayed out of one received batch, all leaving by the same socket (the
    /// other leg's): sent with one `sendmmsg(2)` when there are several. A wake-up that
    /// finds several datagrams waiting (a busy machine, a burst) then costs one send call
    /// instead of one per datagram; the usual single datagram goes out with `sendto`.
    pub(super) struct SendBatch {
        bufs: Box<[[u8; MAX_PACKET]; N]>,
        lens: [usize; N],
        dests: [Option<SocketAddr>; N],
        count: usize,
    }

    impl SendBatch {
        pub(super) fn new() -> Self {
            SendBatch {
                bufs: Box::new([[0; MAX_PACKET]; N]),
                lens: [0; N],
                dests: [None; N],
                count: 0,
            }
        }

        /// Where the next datagram is built; [`SendBatch::commit`] queues it. A full
        /// batch (never the case when fed from one [`RecvBatch`]) reuses the last slot.
        pub(super) fn next_buf(&mut self) -> &mut [u8] {
            &mut self.bufs[self.count.min(N - 1)][..]
        }

        /// Queues the datagram built in [`SendBatch::next_buf`].
        pub(super) fn commit(&mut self, len: usize, dest: SocketAddr) {
            let i = self.count.min(N - 1);
            self.lens[i] = len.min(MAX_PACKET);
            self.dests[i] = Some(dest);
            self.count = i + 1;
        }

        /// Sends the queued datagrams on `sock` and empties the batch. Those the socket
        /// cannot take (buffer full) are dropped, as a network would; the count sent is
        /// returned.
        pub(super) fn flush(&mut self, sock: &UdpSocket) -> usize {
            let count = std::mem::take(&mut self.count);
            match count {
                0 => 0,
                1 => match self.dests[0] {
                    Some(d) => usize::from(sock.send_to(&self.bufs[0][..self.lens[0]], d).is_ok()),
                    None => 0,
                },
                _ => self.send_many(sock, count),
            }
        }

        /// Hands each queued datagram to `f` (a browser leg's encryption) and empties
        /// the batch.
        pub(super) fn take_each(&mut self, mut f: impl FnMut(&[u8])) {
            let count = std::mem::take(&mut self.count);
            for i in 0..count {
                f(&self.bufs[i][..self.lens[i]]);
            }
        }

        /// Hands each queued datagram with its destination to `f` (a shared port's
        /// queue) and empties the batch.
        pub(super) fn take_each_to(&mut self, f: &mut dyn FnMut(&[u8], SocketAddr)) {
            let count = std::mem::take(&mut self.count);
            for i in 0..count {
                if let Some(d) = self.dests[i] {
                    f(&self.bufs[i][..self.lens[i]], d);
                }
            }
        }

        fn send_many(&mut self, sock: &UdpSocket, count: usize) -> usize {
            let names: [Option<socket2::SockAddr>; N] =
                std::array::from_fn(|i| self.dests[i].filter(|_| i < count).map(Into::into));
            // SAFETY: all-zero bytes are valid `iovec`s and `mmsghdr`s (null pointers,
            // zero lengths); every field the kernel reads is set below.
            let mut iov: [libc::iovec; N] = unsafe { zeroed() };
            let mut hdrs: [libc::mmsghdr; N] = unsafe { zeroed() };
            let mut n = 0;
            for (i, name) in names.iter().enumerate().take(count) {
                let Some(name) = name else { continue };
                iov[n].iov_base = self.bufs[i].as_mut_ptr().cast();
                iov[n].iov_len = self.lens[i];
                let h = &mut hdrs[n].msg_hdr;
                h.msg_name = name.as_ptr().cast_mut().cast();
                h.msg_namelen = name.len();
                h.msg_iov = &mut iov[n];
                h.msg_iovlen = 1;
                n += 1;
            }
            // SAFETY: the first `n` headers point into `names`, `iov` and `self.bufs`,
            // all alive for the call, with their true lengths; the kernel only reads
            // them (and writes each header's `msg_len`).
            let r = unsafe {
                libc::sendmmsg(
                    sock.as_raw_fd(),
                    hdrs.as_mut_ptr(),
                    n as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            // A full socket buffer drops the batch, as a network would.
            r.max(0) as usize
        }
    }

    fn ns(t: &libc::timespec) -> u64 {
        (t.tv_sec as u64).saturating_mul(1_000_000_000) + t.tv_nsec as u64
    }

    pub(crate) fn to_socket_addr(a: &libc::sockaddr_storage) -> Option<SocketAddr> {
        match a.ss_family as libc::c_int {
            libc::AF_INET => {
                // SAFETY: the kernel wrote a `sockaddr_in` (family AF_INET), which fits
                // in and is no more aligned than `sockaddr_storage`.
                let v4 =
                    unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in>() };
                Some(SocketAddr::V4(SocketAddrV4::new(
                    Ipv4Addr::from(u32::from_be(v4.sin_addr.s_addr)),
                    u16::from_be(v4.sin_port),
                )))
            }
            libc::AF_INET6 => {
                // SAFETY: as above, for `sockaddr_in6` (family AF_INET6).
                let v6 =
                    unsafe { &*(a as *const libc::sockaddr_storage).cast::<libc::sockaddr_in6>() };
                Some(SocketAddr::V6(SocketAddrV6::new(
                    Ipv6Addr::from(v6.sin6_addr.s6_addr),
                    u16::from_be(v6.sin6_port),
                    v6.sin6_flowinfo,
                    v6.sin6_scope_id,
                )))
            }
            _ => None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::batch::{N, RecvBatch, SendBatch};
    use super::next_tick;
    use crate::ports::RtpSocket;
    use std::time::{Duration, Instant};
    use tokio::net::UdpSocket;

    fn rtp_socket(registered: bool) -> RtpSocket {
        let mut s = RtpSocket::bind("127.0.0.1:0".parse().unwrap()).unwrap();
        s.set_registered(registered).unwrap();
        s
    }

    async fn readable(s: &RtpSocket) {
        let reg = s.registration().expect("registered");
        let _ready = tokio::time::timeout(Duration::from_secs(5), reg.readable())
            .await
            .expect("readable")
            .unwrap();
    }

    /// Sends `N + 3` datagrams (one oversized) to `to`; returns the sender's address.
    async fn burst(to: std::net::SocketAddr) -> (UdpSocket, std::net::SocketAddr) {
        let tx = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        for i in 0..N + 3 {
            let len = if i == N + 1 { 2000 } else { 20 + i };
            tx.send_to(&vec![i as u8; len], to).await.unwrap();
        }
        let from = tx.local_addr().unwrap();
        (tx, from)
    }

    /// Reads batches until the burst's usable datagrams are in; returns their first
    /// bytes in arrival order and the number of reads.
    async fn read_burst(rx: &RtpSocket, from: std::net::SocketAddr) -> (Vec<usize>, usize) {
        let mut b = RecvBatch::new();
        let mut seen = Vec::new();
        let mut calls = 0;
        loop {
            if rx.is_registered() {
                readable(rx).await;
            }
            let more = b.recv(rx).unwrap();
            calls += 1;
            for (pkt, src) in b.iter() {
                assert_eq!(src, from);
                assert_eq!(pkt.len(), 20 + pkt[0] as usize);
                seen.push(pkt[0] as usize);
            }
            if !more && seen.len() + 1 >= N + 3 {
                return (seen, calls);
            }
            assert!(calls < 100, "burst never arrived: {seen:?}");
            if !more {
                tokio::task::yield_now().await;
            }
        }
    }

    /// A burst larger than one batch comes out in order over two calls, the short one
    /// says "drained", an oversized (truncated) datagram is skipped, and readiness is
    /// armed again for the next datagram.
    #[tokio::test]
    async fn recv_batch_drains_in_order_and_rearms() {
        let rx = rtp_socket(true);
        let (tx, from) = burst(rx.local_addr().unwrap()).await;
        let (seen, calls) = read_burst(&rx, from).await;
        let expected: Vec<usize> = (0..N + 3).filter(|&i| i != N + 1).collect();
        assert_eq!(seen, expected);
        assert!(calls <= 3, "{calls} reads for {} datagrams", N + 3);
        // Drained: the next datagram must wake the socket again.
        tx.send_to(&[7u8; 27], rx.local_addr().unwrap())
            .await
            .unwrap();
        readable(&rx).await;
        let mut b = RecvBatch::new();
        b.recv(&rx).unwrap();
        assert_eq!(b.iter().map(|(p, _)| p[0]).collect::<Vec<_>>(), vec![7]);
    }

    /// With arrival stamps on, a read reports how long each datagram sat in the socket
    /// (here at least the 30 ms it was left there), and the count is taken once. The
    /// kernel turns arrival stamping on a moment after the first socket asks for it
    /// (until then datagrams are stamped when read, a wait of zero), so the burst is
    /// sent again until it has been.
    #[tokio::test]
    async fn recv_batch_measures_how_long_datagrams_waited() {
        let rx = rtp_socket(false);
        rx.timestamp_arrivals().unwrap();
        let mut b = RecvBatch::with_waits(true);
        let mut w = Default::default();
        for _ in 0..50 {
            let sent = Instant::now();
            let (_tx, _) = burst(rx.local_addr().unwrap()).await;
            std::thread::sleep(Duration::from_millis(30));
            while b.recv(&rx).unwrap() {}
            w = b.take_waits();
            assert_eq!(
                w.count,
                (N + 3) as u64,
                "every datagram, the truncated one too"
            );
            assert!(w.max <= sent.elapsed(), "{w:?}");
            assert!(w.sum >= w.max && w.over_50ms <= w.count);
            assert_eq!(b.take_waits().count, 0, "taken");
            if w.max >= Duration::from_millis(30) {
                return;
            }
        }
        panic!("no datagram waited 30 ms: {w:?}");
    }

    /// An unregistered socket (tick mode) is read directly: the same burst comes out
    /// in order, and an empty socket reads as drained, not as an error.
    #[tokio::test]
    async fn recv_batch_reads_an_unregistered_socket_directly() {
        let rx = rtp_socket(false);
        let mut b = RecvBatch::new();
        assert!(!b.recv(&rx).unwrap(), "empty socket is drained");
        assert_eq!(b.iter().count(), 0);
        let (_tx, from) = burst(rx.local_addr().unwrap()).await;
        let (seen, _) = read_burst(&rx, from).await;
        let expected: Vec<usize> = (0..N + 3).filter(|&i| i != N + 1).collect();
        assert_eq!(seen, expected);
    }

    /// Tick deadlines fall on one grid, strictly after `now`, at most one tick away.
    #[test]
    fn ticks_fall_on_a_shared_grid() {
        let tick = Duration::from_millis(10);
        let now = Instant::now();
        let a = next_tick(now, tick);
        assert!(a > now && a <= now + tick);
        let b = next_tick(now + Duration::from_micros(3_700), tick);
        assert!(b == a || b == a + tick);
        assert_eq!(
            next_tick(a, tick),
            a + tick,
            "a wake-up on the grid moves one tick on"
        );
        for k in 1..50u32 {
            let t = next_tick(now + Duration::from_micros(u64::from(k) * 1_337), tick);
            assert_eq!((t - a).as_nanos() % tick.as_nanos(), 0, "on the grid");
        }
    }

    /// Several queued datagrams leave in one `sendmmsg`, in order, each to its own
    /// destination; a single one by `sendto`; the batch is empty afterwards.
    #[tokio::test]
    async fn send_batch_delivers_each_datagram_to_its_destination() {
        let tx = rtp_socket(false);
        let r1 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let r2 = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        let (d1, d2) = (r1.local_addr().unwrap(), r2.local_addr().unwrap());
        let mut b = SendBatch::new();
        for (i, d) in [d1, d2, d1].into_iter().enumerate() {
            let buf = b.next_buf();
            buf[..10 + i].fill(i as u8);
            b.commit(10 + i, d);
        }
        assert_eq!(b.flush(&tx), 3);
        assert_eq!(b.flush(&tx), 0, "flushed batch is empty");
        b.next_buf()[..5].fill(9);
        b.commit(5, d2);
        assert_eq!(b.flush(&tx), 1);
        let mut buf = [0u8; 64];
        let mut got = |s: &UdpSocket| {
            let (n, from) = s.try_recv_from(&mut buf).unwrap();
            assert_eq!(from, tx.local_addr().unwrap());
            (n, buf[0])
        };
        r1.readable().await.unwrap();
        r2.readable().await.unwrap();
        assert_eq!(got(&r1), (10, 0));
        assert_eq!(got(&r1), (12, 2));
        assert_eq!(got(&r2), (11, 1));
        assert_eq!(got(&r2), (5, 9));
    }
}
