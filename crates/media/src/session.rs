//! The tokio layer: one media task per call owning its legs' sockets. Leg A is the
//! caller (left channel of recordings), leg B the agent (right). Each leg's outbound
//! audio comes from a *feed*: silence, a [`Player`] (prompts, music on hold) or the
//! other leg (bridged). Switching feeds keeps each leg's RTP stream continuous, since
//! the [`LegState`] (and its outbound SSRC/sequence/timestamp) lives for the whole call.

use std::future::Future;
use std::io;
use std::net::SocketAddr;
use std::task::Poll;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::dtmf::DtmfGenerator;
use crate::error::{MediaError, Result};
use crate::leg::{
    Kind, LegConfig, LegCounters, LegEvent, LegState, LegTiming, MAX_PACKET, Translation,
    relay_packet,
};
use crate::player::Player;
use crate::ports::{BoundPorts, PortPair};
use crate::recorder::{Channel, RecorderTap};

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

/// A leg: its bound sockets (holding the port pair) and its RTP state.
#[derive(Debug)]
pub struct MediaLeg {
    ports: BoundPorts,
    state: LegState,
}

impl MediaLeg {
    /// A leg on `ports` as negotiated in `cfg`.
    pub fn new(ports: BoundPorts, cfg: LegConfig, timing: LegTiming) -> Self {
        MediaLeg {
            ports,
            state: LegState::new(cfg, timing, Instant::now()),
        }
    }

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
    /// Recording frames dropped because the writer was behind.
    pub recording_dropped: u64,
    /// Events dropped because the event channel was full.
    pub events_dropped: u64,
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

/// Starts the media task for a call with its first leg. `events` should be bounded;
/// when it is full, events are dropped and counted rather than stalling media.
pub fn spawn_session(a: MediaLeg, events: mpsc::Sender<MediaEvent>) -> SessionHandle {
    let (cmd, rx) = mpsc::channel(16);
    let task = Task {
        legs: [Some(a), None],
        feeds: [Feed::Silence, Feed::Silence],
        paused: [None, None],
        dtmf: [None, None],
        tr: [None, None],
        recorder: None,
        recording_dropped_before: 0,
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
    legs: [Option<MediaLeg>; 2],
    feeds: [Feed; 2],
    /// A player interrupted by an announcement, resumed when it ends.
    paused: [Option<Box<Player>>; 2],
    dtmf: [Option<DtmfGenerator>; 2],
    /// Translation for packets going *to* each side.
    tr: [Option<Translation>; 2],
    recorder: Option<RecorderTap>,
    recording_dropped_before: u64,
    events: mpsc::Sender<MediaEvent>,
    events_dropped: u64,
    buf_in: Box<[u8]>,
    buf_out: Box<[u8]>,
    far_future: Instant,
}

const RTP_A: u8 = 1;
const RTCP_A: u8 = 4;
const TIMER: u8 = 16;

/// Packets handled per readiness wake-up before yielding to other branches.
const BATCH: usize = 64;

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
        let mut deadline = self.next_deadline();
        let sleep = tokio::time::sleep_until(deadline.into());
        tokio::pin!(sleep);
        loop {
            let d = self.next_deadline();
            if d != deadline {
                deadline = d;
                sleep.as_mut().reset(d.into());
            }
            // One hand-written poll over everything instead of `select!`: it collects
            // every ready source in one pass and uses the sockets' single waker slots
            // (`poll_recv_ready`), which is cheaper per packet than readiness futures.
            let (cmd, ready) = {
                let legs = &self.legs;
                let sleep = &mut sleep;
                std::future::poll_fn(|cx| {
                    let mut ready = 0u8;
                    if let Poll::Ready(c) = rx.poll_recv(cx) {
                        return Poll::Ready((Some(c), 0));
                    }
                    for (i, leg) in legs.iter().enumerate() {
                        if let Some(l) = leg {
                            if let Poll::Ready(Ok(())) = l.ports.rtp.poll_recv_ready(cx) {
                                ready |= RTP_A << i;
                            }
                            if let Poll::Ready(Ok(())) = l.ports.rtcp.poll_recv_ready(cx) {
                                ready |= RTCP_A << i;
                            }
                        }
                    }
                    if sleep.as_mut().poll(cx).is_ready() {
                        ready |= TIMER;
                    }
                    if ready == 0 {
                        Poll::Pending
                    } else {
                        Poll::Ready((None, ready))
                    }
                })
                .await
            };
            match cmd {
                Some(None) => break,
                Some(Some(c)) => self.command(c),
                None => {}
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
            if ready & TIMER != 0 {
                self.on_timer(Instant::now());
            }
            self.flush_events();
        }
        self.log_end();
        // Leg A is never removed, so this is always `Some`.
        let [a, b] = self.legs;
        a.map(|a| (a, b))
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
        tracing::info!(
            target: "hotline_media::stats",
            a_rx = a.rx_packets,
            a_lost = a.rx_lost,
            a_tx = a.tx_packets,
            b_rx = b.rx_packets,
            b_lost = b.rx_lost,
            b_tx = b.tx_packets,
            a_jitter = a.jitter,
            b_jitter = b.jitter,
            "media session ended"
        );
    }

    fn next_deadline(&self) -> Instant {
        let mut t = self.far_future;
        for i in 0..2 {
            if let Some(l) = &self.legs[i] {
                t = t.min(l.state.poll_timeout());
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

    fn update_translations(&mut self) {
        self.tr = [None, None];
        if let (Some(a), Some(b)) = (&self.legs[0], &self.legs[1]) {
            let (ca, cb) = (a.state.config().codec, b.state.config().codec);
            self.tr[0] = Some(Translation::new(cb, ca));
            self.tr[1] = Some(Translation::new(ca, cb));
        }
    }

    fn command(&mut self, c: Command) {
        match c {
            Command::Attach(leg) => {
                self.legs[1] = Some(*leg);
                self.feeds[1] = Feed::Silence;
                self.update_translations();
            }
            Command::Detach(tx) => {
                let leg = self.legs[1].take();
                self.feeds[1] = Feed::Silence;
                self.dtmf[1] = None;
                if matches!(self.feeds[0], Feed::Peer) {
                    self.feeds[0] = Feed::Silence;
                }
                self.update_translations();
                let _ = tx.send(leg);
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
            Command::Stats(tx) => {
                let _ = tx.send(SessionStats {
                    a: self.legs[0]
                        .as_ref()
                        .map(|l| l.state.counters())
                        .unwrap_or_default(),
                    b: self.legs[1].as_ref().map(|l| l.state.counters()),
                    recording_dropped: self.recording_dropped_before
                        + self.recorder.as_ref().map_or(0, |r| r.dropped()),
                    events_dropped: self.events_dropped,
                });
            }
        }
    }

    fn drain_rtp(&mut self, side: Side) {
        let from_i = side as usize;
        let to_i = side.other() as usize;
        let now = Instant::now();
        let [l0, l1] = &mut self.legs;
        let (from, mut to) = if from_i == 0 {
            (l0.as_mut(), l1.as_mut())
        } else {
            (l1.as_mut(), l0.as_mut())
        };
        let Some(from) = from else { return };
        let relay = matches!(self.feeds[to_i], Feed::Peer) && self.dtmf[to_i].is_none();
        let channel = if side == Side::A {
            Channel::Caller
        } else {
            Channel::Agent
        };
        for _ in 0..BATCH {
            let (n, src) = match from.ports.rtp.try_recv_from(&mut self.buf_in) {
                Ok(r) => r,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                // ICMP errors from earlier sends surface here; they are not fatal.
                Err(_) => continue,
            };
            let pkt = &self.buf_in[..n];
            let (kind, payload, send) = match (relay, to.as_deref_mut(), &self.tr[to_i]) {
                (true, Some(to), Some(tr)) => {
                    match relay_packet(
                        &mut from.state,
                        &mut to.state,
                        tr,
                        src,
                        pkt,
                        now,
                        &mut self.buf_out,
                    ) {
                        Ok((k, p, Some(s))) => (k, p, Some((s, &to.ports.rtp))),
                        Ok((k, p, None)) => (k, p, None),
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
            if let Some(((len, dest), sock)) = send {
                // UDP: a full socket buffer means drop, as the network would.
                let _ = sock.try_send_to(&self.buf_out[..len], dest);
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
                Ok((n, src)) => {
                    let _ = leg.state.accept_rtcp(src, &self.buf_in[..n], now);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(_) => continue,
            }
        }
    }

    fn on_timer(&mut self, now: Instant) {
        let unix = unix_now();
        for i in 0..2 {
            let side = if i == 0 { Side::A } else { Side::B };
            let Some(leg) = self.legs[i].as_mut() else {
                continue;
            };
            leg.state.handle_timeout(now);
            if let Some((n, dest)) = leg.state.poll_rtcp(now, unix, &mut self.buf_out) {
                let _ = leg.ports.rtcp.try_send_to(&self.buf_out[..n], dest);
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
                        let _ = leg.ports.rtp.try_send_to(&self.buf_out[..n], dest);
                    }
                }
            }
            // While a key is being sent, the player keeps its pace but its frames are
            // not sent (the event replaces the audio), so its deadline never lags.
            let sending_dtmf = self.dtmf[i].as_ref().is_some_and(|g| !g.is_done());
            if !sending_dtmf {
                self.dtmf[i] = None;
            }
            let mut done = false;
            if let Feed::Player(p) = &mut self.feeds[i] {
                let advance = p.frame_samples() as u32;
                while let Some(frame) = p.poll(now) {
                    if sending_dtmf {
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
                        let _ = leg.ports.rtp.try_send_to(&self.buf_out[..n], dest);
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
