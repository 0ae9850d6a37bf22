//! Sans-IO state of one call leg's RTP: symmetric latching, inbound statistics,
//! the outbound stream's SSRC/sequence/timestamp rewriting, DTMF detection, RTCP
//! report generation and dead-leg detection. The relay, the player and the recorder
//! all drive a [`LegState`]; it outlives each of them so a leg's outbound stream stays
//! continuous when its source changes (music → agent → music).

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};

use crate::dtmf::{Digit, DtmfReceiver};
use crate::error::Result;
use crate::rtcp::{self, ReportBlock, SenderInfo};
use crate::sdp::{Codec, Direction, Negotiated};

/// Payload type of comfort noise (RFC 3389), passed through untouched.
pub const PT_COMFORT_NOISE: u8 = 13;
/// Events kept for a driver that has not drained them yet.
const MAX_QUEUED_EVENTS: usize = 256;
/// An RTP header without CSRCs or extension (what the in-kernel relay's byte counts
/// include besides payload).
const RTP_HEADER_LEN: u64 = 12;
/// Largest datagram handled; bigger ones are dropped (G.711 at 60 ms is 492 bytes).
pub const MAX_PACKET: usize = 1500;

/// What a leg negotiated, from SDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegConfig {
    /// Audio codec.
    pub codec: Codec,
    /// Its payload type.
    pub payload_type: u8,
    /// telephone-event payload type, if negotiated.
    pub telephone_event: Option<u8>,
    /// RTP address from SDP (until latching finds the real one).
    pub remote_rtp: Option<SocketAddr>,
    /// RTCP address from SDP.
    pub remote_rtcp: Option<SocketAddr>,
    /// Our direction on this leg (hold = we only send, or inactive).
    pub direction: Direction,
    /// Packetisation time for audio we generate, in ms.
    pub ptime: u32,
}

impl From<&Negotiated> for LegConfig {
    fn from(n: &Negotiated) -> Self {
        LegConfig {
            codec: n.codec,
            payload_type: n.payload_type,
            telephone_event: n.telephone_event,
            remote_rtp: n.remote_rtp,
            remote_rtcp: n.remote_rtcp,
            direction: n.local_direction,
            ptime: n.ptime,
        }
    }
}

/// Timers and latching rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LegTiming {
    /// Report [`LegEvent::NoRtp`] after this long without valid RTP while receiving.
    pub no_rtp_timeout: Duration,
    /// A latched source silent this long may be replaced by a new one.
    pub relatch_after: Duration,
    /// Interval between our RTCP reports.
    pub rtcp_interval: Duration,
}

impl Default for LegTiming {
    fn default() -> Self {
        LegTiming {
            no_rtp_timeout: Duration::from_secs(30),
            relatch_after: Duration::from_secs(2),
            rtcp_interval: Duration::from_secs(5),
        }
    }
}

/// Things the call task should hear about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LegEvent {
    /// The first valid RTP came from this address; we send there from now on.
    Latched(SocketAddr),
    /// The source moved (same SSRC from a new address, or a new source after the old
    /// one was silent for `relatch_after`).
    Relatched {
        /// Previous address.
        from: SocketAddr,
        /// New address.
        to: SocketAddr,
    },
    /// A key press (RFC 4733) from this leg.
    Dtmf(Digit),
    /// No RTP for `no_rtp_timeout`: the leg is probably dead.
    NoRtp,
    /// RTP came back after [`LegEvent::NoRtp`].
    RtpResumed,
    /// The peer sent an RTCP BYE.
    RtcpBye,
}

/// Why an inbound packet was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reject {
    /// Not an RTP packet (or too big).
    Malformed,
    /// A payload type that was not negotiated.
    UnknownPayloadType,
    /// From an address other than the latched one while the latched source is alive.
    Hijack,
}

/// Per-leg counters; a plain snapshot.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LegCounters {
    /// Valid RTP packets received from the peer.
    pub rx_packets: u64,
    /// Their bytes (whole datagrams).
    pub rx_bytes: u64,
    /// Packets lost, estimated from sequence gaps (RFC 3550 A.3).
    pub rx_lost: u64,
    /// Packets rejected as malformed or of unknown payload type.
    pub rx_invalid: u64,
    /// Packets rejected by the latching guard.
    pub rx_hijack: u64,
    /// RTP packets sent to the peer.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// RTCP packets received / sent.
    pub rtcp_rx: u64,
    /// RTCP packets sent.
    pub rtcp_tx: u64,
    /// Interarrival jitter in samples (RFC 3550 A.8).
    pub jitter: u32,
}

/// Kind of an accepted inbound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// The negotiated audio codec.
    Audio,
    /// telephone-event.
    Event,
    /// Comfort noise.
    ComfortNoise,
}

#[derive(Debug, Default, Clone, Copy)]
struct Inbound {
    ssrc: Option<u32>,
    base_seq: u32,
    max_seq: u16,
    cycles: u64,
    received: u64,
    lost_before: u64,
    expected_prior: u64,
    received_prior: u64,
    transit: Option<i64>,
    jitter: f64,
}

impl Inbound {
    fn extended_max(&self) -> u64 {
        self.cycles + self.max_seq as u64
    }
    fn expected(&self) -> u64 {
        (self.extended_max() + 1).saturating_sub(self.base_seq as u64)
    }
    fn lost(&self) -> u64 {
        self.expected().saturating_sub(self.received)
    }
    fn update(&mut self, ssrc: u32, seq: u16, ts: u32, arrival: i64) {
        if self.ssrc != Some(ssrc) {
            let lost_before = self.lost_before + if self.ssrc.is_some() { self.lost() } else { 0 };
            *self = Inbound {
                ssrc: Some(ssrc),
                base_seq: seq as u32,
                max_seq: seq,
                lost_before,
                ..Default::default()
            };
        } else {
            let delta = seq.wrapping_sub(self.max_seq);
            if delta != 0 && delta < 0x8000 {
                if seq < self.max_seq {
                    // u64: a hostile peer can force a wrap every few packets.
                    self.cycles = self.cycles.saturating_add(1 << 16);
                }
                self.max_seq = seq;
            }
        }
        self.received += 1;
        let transit = arrival - ts as i64;
        if let Some(prev) = self.transit {
            let d = ((transit - prev) as f64).abs();
            // Timestamps of a wrapped or restarted source would spike the estimate.
            if d < 8000.0 * 10.0 {
                self.jitter += (d - self.jitter) / 16.0;
            }
        }
        self.transit = Some(transit);
    }
    /// Packets of `ssrc` the in-kernel relay took, the highest with sequence number
    /// `seq`: counted as received, so what the kernel missed shows as lost and the
    /// jump past its packets does not (nor a jitter spike).
    fn kernel(&mut self, ssrc: u32, packets: u64, seq: u16) {
        if self.ssrc != Some(ssrc) || packets == 0 {
            return;
        }
        let delta = seq.wrapping_sub(self.max_seq);
        if delta != 0 && delta < 0x8000 {
            if seq < self.max_seq {
                self.cycles = self.cycles.saturating_add(1 << 16);
            }
            self.max_seq = seq;
        }
        self.received += packets;
        // The next packet's transit is not comparable with one from before the kernel's.
        self.transit = None;
    }
    fn report_block(
        &mut self,
        last_sr: Option<(u32, Instant)>,
        now: Instant,
    ) -> Option<ReportBlock> {
        let ssrc = self.ssrc?;
        let expected = self.expected();
        let exp_int = expected.saturating_sub(self.expected_prior);
        let rec_int = self.received.saturating_sub(self.received_prior);
        self.expected_prior = expected;
        self.received_prior = self.received;
        let lost_int = exp_int.saturating_sub(rec_int);
        let fraction = (lost_int << 8)
            .checked_div(exp_int)
            .map_or(0, |f| f.min(255) as u8);
        let (lsr, dlsr) = match last_sr {
            Some((mid, at)) => (
                mid,
                (now.saturating_duration_since(at).as_secs_f64() * 65536.0) as u32,
            ),
            None => (0, 0),
        };
        Some(ReportBlock {
            ssrc,
            fraction_lost: fraction,
            cumulative_lost: self.lost().min(0x7F_FFFF) as u32,
            highest_seq: self.extended_max() as u32,
            jitter: self.jitter as u32,
            last_sr: lsr,
            delay_since_last_sr: dlsr,
        })
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Source {
    None,
    Relayed(u32),
    Local,
}

/// The stream we send to a leg's peer: one SSRC for the whole call, with sequence
/// numbers and timestamps that continue across source changes.
#[derive(Debug, Clone)]
pub struct OutboundStream {
    ssrc: u32,
    source: Source,
    seq_offset: u16,
    ts_offset: u32,
    last_seq: u16,
    last_ts: u32,
    last_sent: Option<Instant>,
    local_ts: u32,
    packets: u32,
    octets: u32,
}

impl OutboundStream {
    /// A stream with random SSRC, sequence and timestamp origin (RFC 3550 §5.1).
    pub fn new() -> Self {
        OutboundStream {
            ssrc: rand::random(),
            source: Source::None,
            seq_offset: 0,
            ts_offset: 0,
            last_seq: rand::random(),
            last_ts: rand::random(),
            last_sent: None,
            local_ts: 0,
            packets: 0,
            octets: 0,
        }
    }

    /// Our SSRC towards the peer.
    pub fn ssrc(&self) -> u32 {
        self.ssrc
    }

    /// Where a new source starts: right after the last packet, with the timestamp moved
    /// on by the wall-clock time elapsed (at least one 20 ms frame).
    fn switch(&mut self, now: Instant) -> (u16, u32) {
        let seq = self.last_seq.wrapping_add(1);
        let ts = match self.last_sent {
            Some(t) => {
                let samples = (now.saturating_duration_since(t).as_micros() * 8 / 1000) as u32;
                self.last_ts.wrapping_add(samples.max(160))
            }
            None => self.last_ts,
        };
        (seq, ts)
    }

    /// Maps a relayed packet's sequence and timestamp into this stream. Returns the
    /// new values and whether the marker bit must be set (a new source began).
    pub fn map_relayed(&mut self, ssrc: u32, seq: u16, ts: u32, now: Instant) -> (u16, u32, bool) {
        let mut marker = false;
        if self.source != Source::Relayed(ssrc) {
            let (s, t) = self.switch(now);
            self.seq_offset = s.wrapping_sub(seq);
            self.ts_offset = t.wrapping_sub(ts);
            self.source = Source::Relayed(ssrc);
            marker = true;
        }
        let out_seq = seq.wrapping_add(self.seq_offset);
        let out_ts = ts.wrapping_add(self.ts_offset);
        let newer = out_seq.wrapping_sub(self.last_seq) < 0x8000 || marker;
        if newer {
            self.last_seq = out_seq;
            self.last_ts = out_ts;
            self.last_sent = Some(now);
        }
        (out_seq, out_ts, marker)
    }

    /// The sequence and timestamp offsets relayed packets of `ssrc` get, if that source
    /// is the one this stream carries now (what the in-kernel relay is given).
    pub fn relayed_offsets(&self, ssrc: u32) -> Option<(u16, u32)> {
        (self.source == Source::Relayed(ssrc)).then_some((self.seq_offset, self.ts_offset))
    }

    /// Next header values for a locally generated packet (prompt, music, DTMF);
    /// `advance` is how many samples the timestamp moves on after it.
    pub fn next_local(&mut self, now: Instant, advance: u32) -> (u16, u32, bool) {
        let mut marker = false;
        let seq = if self.source != Source::Local {
            let (s, t) = self.switch(now);
            self.local_ts = t;
            self.source = Source::Local;
            marker = true;
            s
        } else {
            self.last_seq.wrapping_add(1)
        };
        let ts = self.local_ts;
        self.local_ts = self.local_ts.wrapping_add(advance);
        self.last_seq = seq;
        self.last_ts = ts;
        self.last_sent = Some(now);
        (seq, ts, marker)
    }

    fn count(&mut self, payload_len: usize) {
        self.packets = self.packets.wrapping_add(1);
        self.octets = self.octets.wrapping_add(payload_len as u32);
    }
}

impl Default for OutboundStream {
    fn default() -> Self {
        Self::new()
    }
}

/// All RTP state of one leg.
#[derive(Debug)]
pub struct LegState {
    cfg: LegConfig,
    timing: LegTiming,
    latched: Option<(SocketAddr, u32)>,
    rtcp_from: Option<SocketAddr>,
    last_rx: Option<Instant>,
    watch_since: Instant,
    /// When to next look for a dead leg. Deliberately not moved by every packet, so
    /// the session's timer is not re-armed per packet.
    dead_check_at: Instant,
    dead_reported: bool,
    inbound: Inbound,
    out: OutboundStream,
    dtmf: DtmfReceiver,
    counters: LegCounters,
    events: VecDeque<LegEvent>,
    next_rtcp: Instant,
    last_sr: Option<(u32, Instant)>,
    epoch: Instant,
    cname: String,
}

impl LegState {
    /// A leg as negotiated, created at `now`.
    pub fn new(cfg: LegConfig, timing: LegTiming, now: Instant) -> Self {
        let out = OutboundStream::new();
        let cname = format!("hotline-{:08x}", out.ssrc());
        LegState {
            cfg,
            timing,
            latched: None,
            rtcp_from: None,
            last_rx: None,
            watch_since: now,
            dead_check_at: now + timing.no_rtp_timeout,
            dead_reported: false,
            inbound: Inbound::default(),
            out,
            dtmf: DtmfReceiver::new(),
            counters: LegCounters::default(),
            events: VecDeque::with_capacity(8),
            next_rtcp: now + timing.rtcp_interval,
            last_sr: None,
            epoch: now,
            cname,
        }
    }

    /// The negotiated parameters.
    pub fn config(&self) -> &LegConfig {
        &self.cfg
    }

    /// Applies a renegotiation (re-INVITE/UPDATE). If the peer's SDP address changed,
    /// the latch is dropped so the new address (or the first packet) wins.
    pub fn reconfigure(&mut self, cfg: LegConfig, now: Instant) {
        if cfg.remote_rtp != self.cfg.remote_rtp {
            self.latched = None;
            self.rtcp_from = None;
        }
        self.cfg = cfg;
        self.watch_since = now;
        self.dead_check_at = now + self.timing.no_rtp_timeout;
        self.last_rx = None;
        self.dead_reported = false;
    }

    /// Counters so far.
    pub fn counters(&self) -> LegCounters {
        let mut c = self.counters;
        c.rx_lost = self.inbound.lost_before
            + if self.inbound.ssrc.is_some() {
                self.inbound.lost()
            } else {
                0
            };
        c.jitter = self.inbound.jitter as u32;
        c
    }

    /// The peer's latched source: its address and SSRC.
    pub fn latched(&self) -> Option<(SocketAddr, u32)> {
        self.latched
    }

    /// Our outbound stream, read-only.
    pub fn outbound_stream(&self) -> &OutboundStream {
        &self.out
    }

    /// Counts what the in-kernel relay took from this leg's peer (`packets` of `bytes`
    /// RTP bytes from `ssrc`, the last at `last` with sequence number `seq` as the peer
    /// sent it): the leg is alive although its socket heard nothing.
    pub fn received_in_kernel(
        &mut self,
        ssrc: u32,
        packets: u64,
        bytes: u64,
        last: Option<(Instant, u16)>,
    ) {
        self.counters.rx_packets += packets;
        self.counters.rx_bytes += bytes;
        if let Some((_, seq)) = last {
            self.inbound.kernel(ssrc, packets, seq);
        }
        if let Some((t, _)) = last
            && self.last_rx.is_none_or(|r| r < t)
        {
            self.last_rx = Some(t);
            if self.dead_reported {
                self.dead_reported = false;
                self.dead_check_at = t + self.timing.no_rtp_timeout;
                self.push_event(LegEvent::RtpResumed);
            }
        }
    }

    /// Counts what the in-kernel relay sent to this leg's peer, the last with sequence
    /// number `seq` and timestamp `ts` at `at`: the stream goes on from there.
    pub fn sent_in_kernel(&mut self, packets: u64, bytes: u64, last: Option<(Instant, u16, u32)>) {
        self.counters.tx_packets += packets;
        self.counters.tx_bytes += bytes;
        self.out.packets = self.out.packets.wrapping_add(packets as u32);
        let payload = bytes.saturating_sub(packets * RTP_HEADER_LEN);
        self.out.octets = self.out.octets.wrapping_add(payload as u32);
        if let Some((at, seq, ts)) = last
            && self.out.last_sent.is_none_or(|s| s <= at)
        {
            self.out.last_seq = seq;
            self.out.last_ts = ts;
            self.out.last_sent = Some(at);
        }
    }

    /// The address we currently send RTP to: the latched source, else the SDP address.
    pub fn rtp_target(&self) -> Option<SocketAddr> {
        self.latched.map(|(a, _)| a).or(self.cfg.remote_rtp)
    }

    /// The address we send RTCP to.
    pub fn rtcp_target(&self) -> Option<SocketAddr> {
        self.rtcp_from
            .or_else(|| {
                self.latched
                    .map(|(a, _)| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
            })
            .or(self.cfg.remote_rtcp)
            .or_else(|| {
                self.cfg
                    .remote_rtp
                    .map(|a| SocketAddr::new(a.ip(), a.port().wrapping_add(1)))
            })
    }

    /// Queues an event; a driver that never drains cannot make this grow without bound
    /// (a peer can cause an event per packet, e.g. by hopping addresses).
    fn push_event(&mut self, e: LegEvent) {
        if self.events.len() < MAX_QUEUED_EVENTS {
            self.events.push_back(e);
        }
    }

    /// Next queued event.
    pub fn poll_event(&mut self) -> Option<LegEvent> {
        self.events.pop_front()
    }

    /// Our outbound stream (for locally generated packets).
    pub fn outbound(&mut self) -> &mut OutboundStream {
        &mut self.out
    }

    fn latch(
        &mut self,
        src: SocketAddr,
        ssrc: u32,
        now: Instant,
    ) -> std::result::Result<(), Reject> {
        match self.latched {
            None => {
                self.latched = Some((src, ssrc));
                self.push_event(LegEvent::Latched(src));
            }
            Some((addr, _)) if addr == src => {}
            Some((addr, old_ssrc)) => {
                let silent = self
                    .last_rx
                    .is_none_or(|t| now.saturating_duration_since(t) >= self.timing.relatch_after);
                // Same SSRC from a new address is a NAT rebinding of the same phone;
                // the address the peer's SDP announced always wins, so a stranger who
                // latched first (racing the real phone) is replaced when it speaks.
                if ssrc == old_ssrc || silent || Some(src) == self.cfg.remote_rtp {
                    self.latched = Some((src, ssrc));
                    if self.rtcp_from.is_some_and(|r| r.ip() != src.ip()) {
                        self.rtcp_from = None;
                    }
                    self.push_event(LegEvent::Relatched {
                        from: addr,
                        to: src,
                    });
                } else {
                    return Err(Reject::Hijack);
                }
            }
        }
        if let Some((a, _)) = self.latched.as_mut() {
            // Keep the SSRC current so a phone that restarts its stream can still move.
            if *a == src {
                self.latched = Some((src, ssrc));
            }
        }
        Ok(())
    }

    /// Accepts an RTP packet from the peer: validates it, applies the latching guard,
    /// updates statistics and DTMF detection.
    pub fn accept_rtp<'a>(
        &mut self,
        src: SocketAddr,
        pkt: &'a [u8],
        now: Instant,
    ) -> std::result::Result<(RtpReader<'a>, Kind), Reject> {
        if pkt.len() > MAX_PACKET {
            self.counters.rx_invalid += 1;
            return Err(Reject::Malformed);
        }
        let Ok(r) = RtpReader::new(pkt) else {
            self.counters.rx_invalid += 1;
            return Err(Reject::Malformed);
        };
        let pt = r.payload_type();
        let kind = if pt == self.cfg.payload_type {
            Kind::Audio
        } else if Some(pt) == self.cfg.telephone_event {
            Kind::Event
        } else if pt == PT_COMFORT_NOISE {
            Kind::ComfortNoise
        } else {
            self.counters.rx_invalid += 1;
            return Err(Reject::UnknownPayloadType);
        };
        if let Err(e) = self.latch(src, r.ssrc(), now) {
            self.counters.rx_hijack += 1;
            return Err(e);
        }
        self.last_rx = Some(now);
        if self.dead_reported {
            self.dead_reported = false;
            self.dead_check_at = now + self.timing.no_rtp_timeout;
            self.push_event(LegEvent::RtpResumed);
        }
        let arrival = (now.saturating_duration_since(self.epoch).as_micros() * 8 / 1000) as i64;
        self.inbound.update(
            r.ssrc(),
            u16::from(r.sequence_number()),
            r.timestamp(),
            arrival,
        );
        self.counters.rx_packets += 1;
        self.counters.rx_bytes += pkt.len() as u64;
        if kind == Kind::Event
            && let Ok(Some(d)) = self.dtmf.handle(r.timestamp(), r.payload(), now)
        {
            self.push_event(LegEvent::Dtmf(d));
        }
        Ok((r, kind))
    }

    /// Accepts an RTCP packet from the peer. Only a source on the latched RTP host (or
    /// any, before latching) may set where our RTCP goes.
    pub fn accept_rtcp(&mut self, src: SocketAddr, pkt: &[u8], now: Instant) -> Result<()> {
        let r = rtcp::parse(pkt)?;
        self.counters.rtcp_rx += 1;
        if self.latched.is_none_or(|(a, _)| a.ip() == src.ip()) {
            self.rtcp_from = Some(src);
        }
        if let Some(mid) = r.sr_ntp_middle {
            self.last_sr = Some((mid, now));
        }
        if r.bye {
            self.push_event(LegEvent::RtcpBye);
        }
        Ok(())
    }

    /// Builds a locally generated packet (audio from a player, or DTMF) into `out`.
    /// Returns the length and destination, or `None` if we may not send now.
    pub fn build_local(
        &mut self,
        kind: Kind,
        payload: &[u8],
        advance: u32,
        force_marker: bool,
        now: Instant,
        out: &mut [u8],
    ) -> Option<(usize, SocketAddr)> {
        if !self.cfg.direction.sends() {
            return None;
        }
        let dest = self.rtp_target()?;
        let pt = match kind {
            Kind::Audio => self.cfg.payload_type,
            Kind::Event => self.cfg.telephone_event?,
            Kind::ComfortNoise => PT_COMFORT_NOISE,
        };
        let (seq, ts, marker) = self.out.next_local(now, advance);
        let n = RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(self.out.ssrc)
            .sequence(Seq::from(seq))
            .timestamp(ts)
            .marked(marker || force_marker)
            .payload(payload)
            .build_into(out)
            .ok()?;
        self.out.count(payload.len());
        self.counters.tx_packets += 1;
        self.counters.tx_bytes += n as u64;
        Some((n, dest))
    }

    /// When [`LegState::handle_timeout`] should run next.
    pub fn poll_timeout(&self) -> Instant {
        let mut t = self.next_rtcp;
        if !self.dead_reported && self.cfg.direction.receives() {
            t = t.min(self.dead_check_at);
        }
        if let Some(d) = self.dtmf.poll_timeout() {
            t = t.min(d);
        }
        t
    }

    /// Runs timers: dead-leg detection and DTMF end timeout.
    pub fn handle_timeout(&mut self, now: Instant) {
        if !self.dead_reported && self.cfg.direction.receives() && now >= self.dead_check_at {
            let due = self.last_rx.unwrap_or(self.watch_since) + self.timing.no_rtp_timeout;
            if now >= due {
                self.dead_reported = true;
                self.push_event(LegEvent::NoRtp);
            } else {
                self.dead_check_at = due;
            }
        }
        if let Some(d) = self.dtmf.handle_timeout(now) {
            self.push_event(LegEvent::Dtmf(d));
        }
    }

    /// Our RTCP report if one is due: SR if we have sent RTP, else RR; with a report
    /// block on the peer's stream. `unix_now` is wall-clock time for the NTP field.
    pub fn poll_rtcp(
        &mut self,
        now: Instant,
        unix_now: Duration,
        out: &mut [u8],
    ) -> Option<(usize, SocketAddr)> {
        if now < self.next_rtcp {
            return None;
        }
        while self.next_rtcp <= now {
            self.next_rtcp += self.timing.rtcp_interval;
        }
        let dest = self.rtcp_target()?;
        let sender = (self.out.packets > 0).then(|| {
            let since = self.out.last_sent.map_or(0, |t| {
                (now.saturating_duration_since(t).as_micros() * 8 / 1000) as u32
            });
            SenderInfo {
                ntp: rtcp::ntp_from_unix(unix_now),
                rtp_timestamp: self.out.last_ts.wrapping_add(since),
                packets: self.out.packets,
                octets: self.out.octets,
            }
        });
        let block = self.inbound.report_block(self.last_sr, now);
        let n = rtcp::build_report(out, self.out.ssrc, sender, block, &self.cname).ok()?;
        self.counters.rtcp_tx += 1;
        Some((n, dest))
    }
}

/// A G.711 transcoding table from one law to the other (PCMU leg ↔ PCMA leg).
fn transcode_table(from: Codec, to: Codec) -> [u8; 256] {
    let mut t = [0u8; 256];
    for (i, v) in t.iter_mut().enumerate() {
        *v = to.law().encode(from.law().decode(i as u8));
    }
    t
}

/// Precomputed per-direction work for the relay.
#[derive(Debug, Clone)]
pub struct Translation {
    table: Option<Box<[u8; 256]>>,
}

impl Translation {
    /// Whether packets pass unchanged (same law both sides): what the in-kernel relay,
    /// which does not transcode, needs.
    pub fn is_identity(&self) -> bool {
        self.table.is_none()
    }

    /// Builds the table when the two legs use different laws.
    pub fn new(from: Codec, to: Codec) -> Self {
        Translation {
            table: (from != to).then(|| Box::new(transcode_table(from, to))),
        }
    }
}

/// An accepted packet's kind and payload (for recording) and, if it is to be sent, the
/// length written to the output buffer and the destination.
pub type Relayed<'a> = (Kind, &'a [u8], Option<(usize, SocketAddr)>);

/// Relays one RTP packet that arrived on `from` (from address `src`) to `to`'s peer:
/// validates and latches on `from`, then rewrites SSRC/sequence/timestamp/payload type
/// for `to` (transcoding PCMU↔PCMA when the legs differ) into `out`. No allocation.
///
/// Returns the accepted packet's kind and payload (for recording) and, if it is to be
/// sent, the length in `out` and destination.
#[allow(clippy::too_many_arguments)]
pub fn relay_packet<'a>(
    from: &mut LegState,
    to: &mut LegState,
    tr: &Translation,
    src: SocketAddr,
    pkt: &'a [u8],
    now: Instant,
    out: &mut [u8],
) -> std::result::Result<Relayed<'a>, Reject> {
    let (r, kind) = from.accept_rtp(src, pkt, now)?;
    let payload = r.payload();
    if !from.cfg.direction.receives() || !to.cfg.direction.sends() {
        return Ok((kind, payload, None));
    }
    let Some(dest) = to.rtp_target() else {
        return Ok((kind, payload, None));
    };
    let pt = match kind {
        Kind::Audio => to.cfg.payload_type,
        Kind::Event => match to.cfg.telephone_event {
            Some(pt) => pt,
            None => return Ok((kind, payload, None)),
        },
        Kind::ComfortNoise => PT_COMFORT_NOISE,
    };
    let (seq, ts, new_source) =
        to.out
            .map_relayed(r.ssrc(), u16::from(r.sequence_number()), r.timestamp(), now);
    let builder = RtpPacketBuilder::new()
        .payload_type(pt)
        .ssrc(to.out.ssrc)
        .sequence(Seq::from(seq))
        .timestamp(ts)
        .marked(r.mark() || (new_source && kind == Kind::Audio))
        .payload(payload);
    let Ok(n) = builder.build_into(out) else {
        return Ok((kind, payload, None));
    };
    if kind == Kind::Audio
        && let Some(t) = tr.table.as_deref()
    {
        for b in &mut out[n - payload.len()..n] {
            *b = t[*b as usize];
        }
    }
    to.out.count(payload.len());
    to.counters.tx_packets += 1;
    to.counters.tx_bytes += n as u64;
    Ok((kind, payload, Some((n, dest))))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cfg(codec: Codec, remote: &str) -> LegConfig {
        LegConfig {
            codec,
            payload_type: codec.payload_type(),
            telephone_event: Some(101),
            remote_rtp: Some(remote.parse().unwrap()),
            remote_rtcp: None,
            direction: Direction::SendRecv,
            ptime: 20,
        }
    }

    fn pkt(pt: u8, ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
        RtpPacketBuilder::new()
            .payload_type(pt)
            .ssrc(ssrc)
            .sequence(Seq::from(seq))
            .timestamp(ts)
            .payload(payload)
            .build()
            .unwrap()
    }

    fn addr(s: &str) -> SocketAddr {
        s.parse().unwrap()
    }

    struct Pair {
        a: LegState,
        b: LegState,
        tr: Translation,
        t0: Instant,
    }

    fn pair() -> Pair {
        let t0 = Instant::now();
        Pair {
            a: LegState::new(cfg(Codec::Pcmu, "10.0.0.1:4000"), LegTiming::default(), t0),
            b: LegState::new(cfg(Codec::Pcmu, "10.0.0.2:5000"), LegTiming::default(), t0),
            tr: Translation::new(Codec::Pcmu, Codec::Pcmu),
            t0,
        }
    }

    #[test]
    fn latches_on_first_packet_and_rejects_hijack_until_silent() {
        let mut p = pair();
        let mut out = [0u8; MAX_PACKET];
        let nat = addr("203.0.113.5:31000");
        let (_, _, sent) = relay_packet(
            &mut p.a,
            &mut p.b,
            &p.tr,
            nat,
            &pkt(0, 1, 1, 0, &[0xFF; 160]),
            p.t0,
            &mut out,
        )
        .unwrap();
        assert_eq!(sent.unwrap().1, addr("10.0.0.2:5000"));
        assert_eq!(p.a.poll_event(), Some(LegEvent::Latched(nat)));
        assert_eq!(
            p.a.rtp_target(),
            Some(nat),
            "send back where packets come from"
        );
        // Another source with another SSRC while the first is alive: rejected.
        let evil = addr("198.51.100.66:9999");
        let t1 = p.t0 + Duration::from_millis(20);
        let e = relay_packet(
            &mut p.a,
            &mut p.b,
            &p.tr,
            evil,
            &pkt(0, 2, 1, 0, &[0; 160]),
            t1,
            &mut out,
        )
        .map(|_| ());
        assert_eq!(e.unwrap_err(), Reject::Hijack);
        assert_eq!(p.a.rtp_target(), Some(nat));
        assert_eq!(p.a.counters().rx_hijack, 1);
        // Same SSRC from a new port (NAT rebinding) re-latches at once.
        let moved = addr("203.0.113.5:31002");
        relay_packet(
            &mut p.a,
            &mut p.b,
            &p.tr,
            moved,
            &pkt(0, 1, 2, 160, &[0; 160]),
            t1,
            &mut out,
        )
        .unwrap();
        assert_eq!(
            p.a.poll_event(),
            Some(LegEvent::Relatched {
                from: nat,
                to: moved
            })
        );
        // After the latched source is silent for relatch_after, a new one may take over.
        let t2 = t1 + LegTiming::default().relatch_after;
        relay_packet(
            &mut p.a,
            &mut p.b,
            &p.tr,
            evil,
            &pkt(0, 2, 9, 0, &[0; 160]),
            t2,
            &mut out,
        )
        .unwrap();
        assert_eq!(p.a.rtp_target(), Some(evil));
    }

    #[test]
    fn the_sdp_address_takes_over_from_a_stranger_who_latched_first() {
        let mut p = pair();
        let mut out = [0u8; MAX_PACKET];
        let stranger = addr("198.51.100.66:9999");
        let real = addr("10.0.0.1:4000");
        relay_packet(
            &mut p.a,
            &mut p.b,
            &p.tr,
            stranger,
            &pkt(0, 9, 1, 0, &[0; 160]),
            p.t0,
            &mut out,
        )
        .unwrap();
        assert_eq!(p.a.rtp_target(), Some(stranger));
        relay_packet(
            &mut p.a,
            &mut p.b,
            &p.tr,
            real,
            &pkt(0, 1, 1, 0, &[0; 160]),
            p.t0,
            &mut out,
        )
        .unwrap();
        assert_eq!(p.a.rtp_target(), Some(real));
        // And the stranger cannot take it back while the phone talks.
        let e = relay_packet(
            &mut p.a,
            &mut p.b,
            &p.tr,
            stranger,
            &pkt(0, 9, 2, 160, &[0; 160]),
            p.t0,
            &mut out,
        )
        .map(|_| ());
        assert_eq!(e.unwrap_err(), Reject::Hijack);
    }

    #[test]
    fn unknown_payload_types_and_garbage_are_dropped_without_latching() {
        let mut p = pair();
        let mut out = [0u8; MAX_PACKET];
        let src = addr("10.0.0.1:4000");
        assert_eq!(
            relay_packet(&mut p.a, &mut p.b, &p.tr, src, &[1, 2, 3], p.t0, &mut out)
                .map(|_| ())
                .unwrap_err(),
            Reject::Malformed
        );
        assert_eq!(
            relay_packet(
                &mut p.a,
                &mut p.b,
                &p.tr,
                src,
                &pkt(18, 1, 1, 0, &[0; 20]),
                p.t0,
                &mut out
            )
            .map(|_| ())
            .unwrap_err(),
            Reject::UnknownPayloadType
        );
        assert_eq!(p.a.poll_event(), None);
        assert_eq!(p.a.counters().rx_invalid, 2);
    }

    #[test]
    fn rewriting_keeps_the_stream_continuous_across_source_changes() {
        let mut p = pair();
        let mut out = [0u8; MAX_PACKET];
        let mut t = p.t0;
        let mut seen: Vec<(u32, u16, u32, bool)> = Vec::new();
        let mut record = |out: &[u8], n: usize| {
            let r = RtpReader::new(&out[..n]).unwrap();
            seen.push((
                r.ssrc(),
                u16::from(r.sequence_number()),
                r.timestamp(),
                r.mark(),
            ));
        };
        // Music on hold (local) for 5 frames.
        for _ in 0..5 {
            let (n, _) =
                p.b.build_local(Kind::Audio, &[0xFF; 160], 160, false, t, &mut out)
                    .unwrap();
            record(&out, n);
            t += Duration::from_millis(20);
        }
        // Then the agent's stream (arbitrary seq/ts) is relayed.
        let src = addr("10.0.0.1:4000");
        for i in 0..5u16 {
            let (_, _, s) = relay_packet(
                &mut p.a,
                &mut p.b,
                &p.tr,
                src,
                &pkt(0, 0xAAAA, 60000 + i, 7_000_000 + i as u32 * 160, &[1; 160]),
                t,
                &mut out,
            )
            .unwrap();
            record(&out, s.unwrap().0);
            t += Duration::from_millis(20);
        }
        // Back to music.
        let (n, _) =
            p.b.build_local(Kind::Audio, &[0xFF; 160], 160, false, t, &mut out)
                .unwrap();
        record(&out, n);
        let ssrc = seen[0].0;
        for w in seen.windows(2) {
            assert_eq!(w[1].0, ssrc, "one SSRC for the whole call");
            assert_eq!(w[1].1, w[0].1.wrapping_add(1), "sequence continuous");
            assert_eq!(
                w[1].2.wrapping_sub(w[0].2),
                160,
                "timestamp advances one frame"
            );
        }
        let markers: Vec<bool> = seen.iter().map(|s| s.3).collect();
        assert_eq!(
            markers,
            [
                true, false, false, false, false, true, false, false, false, false, true
            ]
        );
    }

    #[test]
    fn sequence_gaps_are_counted_as_loss_and_reorder_is_mapped() {
        let mut p = pair();
        let mut out = [0u8; MAX_PACKET];
        let src = addr("10.0.0.1:4000");
        let mut mapped = Vec::new();
        for seq in [65530u16, 65531, 65533, 65532, 2, 3] {
            let (_, _, s) = relay_packet(
                &mut p.a,
                &mut p.b,
                &p.tr,
                src,
                &pkt(0, 5, seq, seq as u32 * 160, &[0; 160]),
                p.t0,
                &mut out,
            )
            .unwrap();
            let r = RtpReader::new(&out[..s.unwrap().0]).unwrap();
            mapped.push(u16::from(r.sequence_number()));
        }
        // 65530..=3 across the wrap is 10 expected, 6 received.
        let c = p.a.counters();
        assert_eq!(c.rx_packets, 6);
        assert_eq!(c.rx_lost, 4);
        // Reordered packet keeps its relative position after rewriting.
        assert_eq!(mapped[3], mapped[0].wrapping_add(2));
        assert_eq!(mapped[2], mapped[0].wrapping_add(3));
        assert_eq!(mapped[5], mapped[0].wrapping_add(9));
        assert_eq!(p.b.counters().tx_packets, 6);
    }

    #[test]
    fn transcodes_between_laws_and_maps_event_payload_type() {
        let t0 = Instant::now();
        let mut a = LegState::new(cfg(Codec::Pcmu, "10.0.0.1:4000"), LegTiming::default(), t0);
        let mut bc = cfg(Codec::Pcma, "10.0.0.2:5000");
        bc.telephone_event = Some(96);
        let mut b = LegState::new(bc, LegTiming::default(), t0);
        let tr = Translation::new(Codec::Pcmu, Codec::Pcma);
        let mut out = [0u8; MAX_PACKET];
        let src = addr("10.0.0.1:4000");
        let (_, _, s) = relay_packet(
            &mut a,
            &mut b,
            &tr,
            src,
            &pkt(0, 5, 1, 0, &[0xFF, 0x80, 0x00]),
            t0,
            &mut out,
        )
        .unwrap();
        let r = RtpReader::new(&out[..s.unwrap().0]).unwrap();
        assert_eq!(r.payload_type(), 8);
        assert_eq!(r.payload(), &[0xD5, 0xAA, 0x2A]);
        let ev = crate::dtmf::EventPayload {
            event: 4,
            end: true,
            volume: 10,
            duration: 800,
        }
        .to_bytes();
        let (kind, _, s) = relay_packet(
            &mut a,
            &mut b,
            &tr,
            src,
            &pkt(101, 5, 2, 160, &ev),
            t0,
            &mut out,
        )
        .unwrap();
        assert_eq!(kind, Kind::Event);
        let r = RtpReader::new(&out[..s.unwrap().0]).unwrap();
        assert_eq!(r.payload_type(), 96);
        assert_eq!(r.payload(), &ev, "event payload untouched");
        assert_eq!(a.poll_event(), Some(LegEvent::Latched(src)));
        assert!(matches!(a.poll_event(), Some(LegEvent::Dtmf(d)) if d.digit == '4'));
    }

    #[test]
    fn hold_direction_stops_forwarding_but_keeps_counting() {
        let mut p = pair();
        let mut c = *p.b.config();
        c.direction = Direction::RecvOnly;
        p.b.reconfigure(c, p.t0);
        let mut out = [0u8; MAX_PACKET];
        let (_, _, s) = relay_packet(
            &mut p.a,
            &mut p.b,
            &p.tr,
            addr("10.0.0.1:4000"),
            &pkt(0, 5, 1, 0, &[0; 160]),
            p.t0,
            &mut out,
        )
        .unwrap();
        assert!(s.is_none());
        assert_eq!(p.a.counters().rx_packets, 1);
        assert!(
            p.b.build_local(Kind::Audio, &[0; 160], 160, false, p.t0, &mut out)
                .is_none()
        );
    }

    #[test]
    fn no_rtp_is_detected_and_resumption_reported() {
        let t0 = Instant::now();
        let timing = LegTiming {
            no_rtp_timeout: Duration::from_secs(3),
            rtcp_interval: Duration::from_secs(3600),
            ..Default::default()
        };
        let mut a = LegState::new(cfg(Codec::Pcmu, "10.0.0.1:4000"), timing, t0);
        let first = a.poll_timeout();
        assert_eq!(first, t0 + Duration::from_secs(3));
        a.handle_timeout(first - Duration::from_millis(1));
        assert_eq!(a.poll_event(), None);
        a.handle_timeout(first);
        assert_eq!(a.poll_event(), Some(LegEvent::NoRtp));
        a.handle_timeout(first + Duration::from_secs(10));
        assert_eq!(a.poll_event(), None, "reported once");
        a.accept_rtp(
            addr("10.0.0.1:4000"),
            &pkt(0, 1, 1, 0, &[0; 160]),
            first + Duration::from_secs(11),
        )
        .unwrap();
        assert_eq!(
            a.poll_event(),
            Some(LegEvent::Latched(addr("10.0.0.1:4000")))
        );
        assert_eq!(a.poll_event(), Some(LegEvent::RtpResumed));
        // Packets do not move the timer; a check before the due time re-arms it.
        let resumed = first + Duration::from_secs(11);
        let check = a.poll_timeout();
        assert_eq!(check, resumed + Duration::from_secs(3));
        a.accept_rtp(
            addr("10.0.0.1:4000"),
            &pkt(0, 1, 2, 160, &[0; 160]),
            resumed + Duration::from_secs(2),
        )
        .unwrap();
        assert_eq!(a.poll_timeout(), check);
        a.handle_timeout(check);
        assert_eq!(a.poll_event(), None);
        assert_eq!(a.poll_timeout(), resumed + Duration::from_secs(5));
        a.handle_timeout(resumed + Duration::from_secs(5));
        assert_eq!(a.poll_event(), Some(LegEvent::NoRtp));
    }

    proptest::proptest! {
        #[test]
        fn random_datagrams_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..1600)) {
            let mut p = pair();
            let mut out = [0u8; MAX_PACKET];
            let src = addr("10.0.0.1:4000");
            let _ = relay_packet(&mut p.a, &mut p.b, &p.tr, src, &data, p.t0, &mut out);
            let _ = p.a.accept_rtcp(src, &data, p.t0);
            p.a.handle_timeout(p.t0 + Duration::from_secs(60));
        }
    }

    #[test]
    fn receiver_report_block_describes_the_peer_stream() {
        let mut p = pair();
        let mut out = [0u8; MAX_PACKET];
        let src = addr("10.0.0.1:4000");
        // 10 expected (seq 100..=109), 8 received.
        for seq in (100u16..110).filter(|s| *s != 103 && *s != 107) {
            p.a.accept_rtp(src, &pkt(0, 0xABCD, seq, seq as u32 * 160, &[0; 160]), p.t0)
                .unwrap();
        }
        let due = p.t0 + LegTiming::default().rtcp_interval;
        let (n, dest) =
            p.a.poll_rtcp(due, Duration::from_secs(1), &mut out)
                .unwrap();
        assert_eq!(
            dest,
            addr("10.0.0.1:4001"),
            "RTCP to the latched host, port + 1"
        );
        assert_eq!(out[1], rtcp::PT_RR, "nothing sent yet: receiver report");
        assert_eq!(out[0] & 0x1F, 1, "one report block");
        let block = &out[8..32];
        assert_eq!(
            u32::from_be_bytes([block[0], block[1], block[2], block[3]]),
            0xABCD
        );
        assert_eq!(block[4], (2 * 256 / 10) as u8, "fraction lost 2/10");
        assert_eq!(
            u32::from_be_bytes([0, block[5], block[6], block[7]]),
            2,
            "cumulative lost"
        );
        assert_eq!(
            u32::from_be_bytes([block[8], block[9], block[10], block[11]]),
            109,
            "highest seq"
        );
        assert!(rtcp::parse(&out[..n]).is_ok());
    }

    #[test]
    fn rtcp_reports_are_generated_on_schedule() {
        let mut p = pair();
        let mut out = [0u8; MAX_PACKET];
        let unix = Duration::from_secs(1_700_000_000);
        assert!(p.b.poll_rtcp(p.t0, unix, &mut out).is_none());
        p.b.build_local(Kind::Audio, &[0; 160], 160, false, p.t0, &mut out)
            .unwrap();
        let due = p.t0 + LegTiming::default().rtcp_interval;
        let (n, dest) = p.b.poll_rtcp(due, unix, &mut out).unwrap();
        assert_eq!(dest, addr("10.0.0.2:5001"));
        assert_eq!(out[1], rtcp::PT_SR);
        assert!(rtcp::parse(&out[..n]).is_ok());
        assert!(p.b.poll_rtcp(due, unix, &mut out).is_none());
        assert_eq!(p.b.counters().rtcp_tx, 1);
        // A peer RTCP packet from its host moves our RTCP target.
        p.b.accept_rtcp(addr("10.0.0.2:7777"), &out[..n], due)
            .unwrap();
        assert_eq!(p.b.rtcp_target(), Some(addr("10.0.0.2:7777")));
    }
}
