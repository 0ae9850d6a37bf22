//! The media session over real loopback UDP sockets: two fake phones exchange RTP
//! through Hotline; latching, rewriting, hijack guard, DTMF, music-to-agent
//! continuity, dead-leg detection, recording and port release are checked.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hotline_media::dtmf::EventPayload;
use hotline_media::g711::Law;
use hotline_media::leg::{LegEvent, LegTiming};
use hotline_media::player::{Player, Prompt};
use hotline_media::ports::PortAllocator;
use hotline_media::recorder::start_recording;
use hotline_media::sdp::{Codec, Direction};
use hotline_media::session::{MediaEvent, MediaLeg, SessionHandle, Side, spawn_session};
use rtp_rs::RtpReader;
use support::{leg_cfg as cfg, rtp};
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

const GUARD: Duration = Duration::from_secs(5);
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

#[derive(Debug, Clone, Copy)]
struct Hdr {
    pt: u8,
    ssrc: u32,
    seq: u16,
    ts: u32,
    mark: bool,
    first_byte: u8,
}

async fn recv_rtp(sock: &UdpSocket) -> Hdr {
    let mut buf = [0u8; 1500];
    loop {
        let (n, _) = timeout(GUARD, sock.recv_from(&mut buf))
            .await
            .expect("RTP in time")
            .unwrap();
        if let Ok(r) = RtpReader::new(&buf[..n]) {
            return Hdr {
                pt: r.payload_type(),
                ssrc: r.ssrc(),
                seq: r.sequence_number().into(),
                ts: r.timestamp(),
                mark: r.mark(),
                first_byte: r.payload().first().copied().unwrap_or(0),
            };
        }
    }
}

async fn next_event(
    rx: &mut mpsc::Receiver<MediaEvent>,
    want: impl Fn(&MediaEvent) -> bool,
) -> MediaEvent {
    loop {
        let e = timeout(GUARD, rx.recv())
            .await
            .expect("event in time")
            .expect("session alive");
        if want(&e) {
            return e;
        }
    }
}

struct Call {
    alloc: PortAllocator,
    session: SessionHandle,
    events: mpsc::Receiver<MediaEvent>,
    /// Caller phone: `caller_sdp` is what its SDP announced, `caller` the NATed socket
    /// it really sends from.
    caller: UdpSocket,
    caller_sdp: UdpSocket,
    agent: UdpSocket,
    hotline_a: SocketAddr,
    hotline_b: SocketAddr,
}

async fn setup(base: u16, timing: LegTiming, agent_codec: Codec) -> Call {
    let alloc = PortAllocator::new(base, base + 19).unwrap();
    let caller = UdpSocket::bind((LO, 0)).await.unwrap();
    let caller_sdp = UdpSocket::bind((LO, 0)).await.unwrap();
    let agent = UdpSocket::bind((LO, 0)).await.unwrap();
    let a = MediaLeg::new(
        alloc.bind(LO.into()).await.unwrap(),
        cfg(Codec::Pcmu, caller_sdp.local_addr().unwrap()),
        timing,
    );
    let b = MediaLeg::new(
        alloc.bind(LO.into()).await.unwrap(),
        cfg(agent_codec, agent.local_addr().unwrap()),
        timing,
    );
    let hotline_a = a.local_rtp_addr().unwrap();
    let hotline_b = b.local_rtp_addr().unwrap();
    let (tx, events) = mpsc::channel(64);
    let session = spawn_session(a, tx);
    session.attach(b).await.unwrap();
    Call {
        alloc,
        session,
        events,
        caller,
        caller_sdp,
        agent,
        hotline_a,
        hotline_b,
    }
}

#[tokio::test]
async fn relays_both_ways_with_latching_and_rewriting() {
    let mut c = setup(41000, LegTiming::default(), Codec::Pcmu).await;
    c.session.bridge().await.unwrap();
    let n = 50u16;
    // Caller sends from its NATed socket, not the SDP address.
    for i in 0..n {
        c.caller
            .send_to(
                &rtp(0, 0x1111, 100 + i, 1000 + i as u32 * 160, &[0x55; 160]),
                c.hotline_a,
            )
            .await
            .unwrap();
    }
    let e = next_event(&mut c.events, |e| {
        matches!(e, MediaEvent::Leg(Side::A, LegEvent::Latched(_)))
    })
    .await;
    assert_eq!(
        e,
        MediaEvent::Leg(Side::A, LegEvent::Latched(c.caller.local_addr().unwrap()))
    );
    let mut at_agent = Vec::new();
    for _ in 0..n {
        at_agent.push(recv_rtp(&c.agent).await);
    }
    for i in 0..n {
        c.agent
            .send_to(
                &rtp(0, 0x2222, 5000 + i, 9000 + i as u32 * 160, &[0x66; 160]),
                c.hotline_b,
            )
            .await
            .unwrap();
    }
    let mut at_caller = Vec::new();
    for _ in 0..n {
        // Symmetric RTP: answers go to where the caller's packets came from.
        at_caller.push(recv_rtp(&c.caller).await);
    }
    for (got, orig_ssrc) in [(&at_agent, 0x1111), (&at_caller, 0x2222)] {
        assert!(
            got.iter()
                .all(|h| h.ssrc == got[0].ssrc && h.ssrc != orig_ssrc && h.pt == 0)
        );
        for w in got.windows(2) {
            assert_eq!(w[1].seq, w[0].seq.wrapping_add(1));
            assert_eq!(w[1].ts.wrapping_sub(w[0].ts), 160);
        }
        assert!(got[0].mark);
    }
    assert_eq!(at_agent[0].first_byte, 0x55);
    assert_eq!(at_caller[0].first_byte, 0x66);
    // Nothing went to the caller's SDP address.
    let mut buf = [0u8; 64];
    assert!(c.caller_sdp.try_recv_from(&mut buf).is_err());

    // A third party spraying packets at the caller's port is not relayed.
    let attacker = UdpSocket::bind((LO, 0)).await.unwrap();
    for i in 0..10u16 {
        attacker
            .send_to(&rtp(0, 0x6666, i, 0, &[0; 160]), c.hotline_a)
            .await
            .unwrap();
    }
    // A marker packet from the real caller after the attack still goes through, and
    // is the very next thing the agent sees.
    c.caller
        .send_to(
            &rtp(0, 0x1111, 100 + n, 1000 + n as u32 * 160, &[0x77; 160]),
            c.hotline_a,
        )
        .await
        .unwrap();
    let h = recv_rtp(&c.agent).await;
    assert_eq!(h.first_byte, 0x77);
    assert_eq!(h.seq, at_agent[49].seq.wrapping_add(1));
    let s = c.session.stats().await.unwrap();
    assert_eq!(s.a.rx_hijack, 10);
    assert_eq!(s.a.rx_packets, n as u64 + 1);
    assert_eq!(s.b.unwrap().tx_packets, n as u64 + 1);
    assert_eq!(s.b.unwrap().rx_packets, n as u64);
    assert_eq!(s.a.tx_packets, n as u64);
    assert_eq!(s.a.rx_lost, 0);

    let (a, b) = c.session.stop().await.unwrap();
    assert_eq!(c.alloc.in_use(), 2);
    drop((a, b));
    assert_eq!(c.alloc.in_use(), 0, "ports returned");
}

#[tokio::test]
async fn music_then_agent_is_one_continuous_stream_and_dtmf_is_detected() {
    let mut c = setup(41100, LegTiming::default(), Codec::Pcma).await;
    // Caller sends first so Hotline latches; then hears music.
    c.caller
        .send_to(&rtp(0, 0x1111, 1, 0, &[0xFF; 160]), c.hotline_a)
        .await
        .unwrap();
    next_event(&mut c.events, |e| {
        matches!(e, MediaEvent::Leg(Side::A, LegEvent::Latched(_)))
    })
    .await;
    let music = Prompt::from_samples(vec![3000; 8000]);
    c.session
        .play(Side::A, Player::new(vec![music], true, Instant::now()))
        .await
        .unwrap();
    let mut seen = Vec::new();
    for _ in 0..5 {
        seen.push(recv_rtp(&c.caller).await);
    }
    c.session.bridge().await.unwrap();
    // The agent (PCMA) talks; the caller (PCMU) must get transcoded audio.
    for i in 0..5u16 {
        c.agent
            .send_to(
                &rtp(8, 0x2222, 700 + i, 50_000 + i as u32 * 160, &[0xD5; 160]),
                c.hotline_b,
            )
            .await
            .unwrap();
    }
    // Music frames may still be in flight before the bridge took effect; skip them.
    let transcoded = Law::Ulaw.encode(Law::Alaw.decode(0xD5));
    let mut agent_part = Vec::new();
    while agent_part.len() < 5 {
        let h = recv_rtp(&c.caller).await;
        if h.first_byte == transcoded {
            agent_part.push(h);
        } else {
            seen.push(h);
        }
    }
    let switch_at = seen.len();
    seen.extend(agent_part);
    assert!(seen.iter().all(|h| h.ssrc == seen[0].ssrc && h.pt == 0));
    for w in seen.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "continuous sequence");
        assert!(
            w[1].ts.wrapping_sub(w[0].ts) >= 160,
            "timestamps move forward"
        );
    }
    assert!(seen[switch_at].mark, "marker on source change");

    // Caller presses 5 (RFC 4733, three end packets): reported once, forwarded to agent.
    let ev = |end, d| {
        EventPayload {
            event: 5,
            end,
            volume: 10,
            duration: d,
        }
        .to_bytes()
    };
    for (i, (end, d)) in [
        (false, 160),
        (false, 320),
        (true, 480),
        (true, 480),
        (true, 480),
    ]
    .into_iter()
    .enumerate()
    {
        c.caller
            .send_to(
                &rtp(101, 0x1111, 2 + i as u16, 160, &ev(end, d)),
                c.hotline_a,
            )
            .await
            .unwrap();
    }
    let e = next_event(&mut c.events, |e| {
        matches!(e, MediaEvent::Leg(_, LegEvent::Dtmf(_)))
    })
    .await;
    let MediaEvent::Leg(Side::A, LegEvent::Dtmf(d)) = e else {
        panic!("{e:?}")
    };
    assert_eq!(d.digit, '5');
    let mut events_at_agent = 0;
    while events_at_agent < 5 {
        if recv_rtp(&c.agent).await.pt == 101 {
            events_at_agent += 1;
        }
    }
    // Hotline generates a key towards the agent.
    c.session
        .send_dtmf(Side::B, '#', Duration::from_millis(60))
        .await
        .unwrap();
    let mut ends = 0;
    while ends < 3 {
        let h = recv_rtp(&c.agent).await;
        if h.pt == 101 && h.first_byte == 11 {
            ends += 1;
        }
    }
    drop(c.session);
}

#[tokio::test]
async fn dead_leg_is_reported_and_playback_end_signalled() {
    let timing = LegTiming {
        no_rtp_timeout: Duration::from_millis(300),
        ..Default::default()
    };
    let mut c = setup(41200, timing, Codec::Pcmu).await;
    c.session
        .play(
            Side::A,
            Player::new(
                vec![Prompt::from_samples(vec![100; 480])],
                false,
                Instant::now(),
            ),
        )
        .await
        .unwrap();
    let e = next_event(&mut c.events, |e| matches!(e, MediaEvent::PlaybackDone(_))).await;
    assert_eq!(e, MediaEvent::PlaybackDone(Side::A));
    // Before latching, prompts go to the SDP address.
    let mut got = 0;
    while got < 3 {
        let _ = recv_rtp(&c.caller_sdp).await;
        got += 1;
    }
    let e = next_event(&mut c.events, |e| {
        matches!(e, MediaEvent::Leg(_, LegEvent::NoRtp))
    })
    .await;
    assert!(matches!(e, MediaEvent::Leg(_, LegEvent::NoRtp)));
    let stats = c.session.stats().await.unwrap();
    assert_eq!(stats.a.tx_packets, 3);
}

#[tokio::test]
async fn records_both_directions_into_a_stereo_wav() {
    let c = setup(41300, LegTiming::default(), Codec::Pcmu).await;
    let path = std::env::temp_dir().join(format!("hotline-loop-rec-{}.wav", std::process::id()));
    let (tap, job) = start_recording(&path, 256, Instant::now()).unwrap();
    c.session.record(Some(tap)).await.unwrap();
    c.session.bridge().await.unwrap();
    for i in 0..50u16 {
        c.caller
            .send_to(&rtp(0, 1, i, i as u32 * 160, &[0x90; 160]), c.hotline_a)
            .await
            .unwrap();
        c.agent
            .send_to(&rtp(0, 2, i, i as u32 * 160, &[0x10; 160]), c.hotline_b)
            .await
            .unwrap();
    }
    for _ in 0..50 {
        recv_rtp(&c.agent).await;
        recv_rtp(&c.caller).await;
    }
    let stats = c.session.stats().await.unwrap();
    assert_eq!(stats.recording_dropped, 0);
    drop(c.session.stop().await.unwrap());
    let rec = job.finish().await.unwrap();
    assert_eq!(rec.path, path);
    let r = hound::WavReader::open(&path).unwrap();
    assert_eq!(r.spec().channels, 2);
    assert_eq!(r.spec().sample_rate, 8000);
    assert_eq!(
        rec.duration,
        Duration::from_micros(r.duration() as u64 * 125)
    );
    // 50 frames of 20 ms per side: one second of audio each, plus whatever silence
    // alignment inserted if the scheduler delayed one side (bounded by the test guard).
    assert!(
        rec.duration >= Duration::from_secs(1) && rec.duration < Duration::from_secs(1) + GUARD
    );
    support::assert_caller_left_agent_right(r);
}

#[tokio::test]
async fn hold_stops_relaying_to_the_holding_agent_and_caller_hears_music() {
    let c = setup(41500, LegTiming::default(), Codec::Pcmu).await;
    c.session.bridge().await.unwrap();
    // Both phones talk once so Hotline latches on both.
    c.caller
        .send_to(&rtp(0, 1, 1, 0, &[0x11; 160]), c.hotline_a)
        .await
        .unwrap();
    assert_eq!(recv_rtp(&c.agent).await.first_byte, 0x11);
    c.agent
        .send_to(&rtp(0, 2, 1, 0, &[0x22; 160]), c.hotline_b)
        .await
        .unwrap();
    assert_eq!(recv_rtp(&c.caller).await.first_byte, 0x22);
    // The agent's re-INVITE says sendonly: we answer recvonly, so we must not send to it.
    let mut held = cfg(Codec::Pcmu, c.agent.local_addr().unwrap());
    held.direction = Direction::RecvOnly;
    c.session.reconfigure(Side::B, held).await.unwrap();
    let music = Prompt::from_samples(vec![-3000; 8000]);
    let music_byte = Law::Ulaw.encode(-3000);
    c.session
        .play(Side::A, Player::new(vec![music], true, Instant::now()))
        .await
        .unwrap();
    for i in 2..12u16 {
        c.caller
            .send_to(&rtp(0, 1, i, i as u32 * 160, &[0x11; 160]), c.hotline_a)
            .await
            .unwrap();
    }
    // The caller hears music, not the agent.
    for _ in 0..5 {
        assert_eq!(recv_rtp(&c.caller).await.first_byte, music_byte);
    }
    // Every caller packet was received but none went to the agent.
    let s = c.session.stats().await.unwrap();
    assert_eq!(s.a.rx_packets, 11);
    assert_eq!(s.b.unwrap().tx_packets, 1);
    let mut buf = [0u8; 64];
    assert!(c.agent.try_recv_from(&mut buf).is_err());
    // Resume: sendrecv again and bridged; the agent hears the caller again.
    c.session
        .reconfigure(Side::B, cfg(Codec::Pcmu, c.agent.local_addr().unwrap()))
        .await
        .unwrap();
    c.session.bridge().await.unwrap();
    c.caller
        .send_to(&rtp(0, 1, 20, 20 * 160, &[0x33; 160]), c.hotline_a)
        .await
        .unwrap();
    assert_eq!(recv_rtp(&c.agent).await.first_byte, 0x33);
}

#[tokio::test]
async fn dropping_the_handle_releases_every_port() {
    let mut c = setup(41600, LegTiming::default(), Codec::Pcmu).await;
    let leg = c.session.detach().await.unwrap().expect("leg B");
    assert_eq!(c.alloc.in_use(), 2);
    drop(leg);
    assert_eq!(c.alloc.in_use(), 1);
    drop(c.session);
    // The task owns the event sender: the channel closing means the task has ended
    // (and on this single-threaded runtime its output, the legs, is dropped with it).
    let closed = timeout(GUARD, async { while c.events.recv().await.is_some() {} }).await;
    assert!(closed.is_ok());
    assert_eq!(c.alloc.in_use(), 0);
}

#[tokio::test]
async fn dtmf_sent_over_music_keeps_the_stream_continuous() {
    let c = setup(41700, LegTiming::default(), Codec::Pcmu).await;
    let music = Prompt::from_samples(vec![2500; 8000]);
    c.session
        .play(Side::A, Player::new(vec![music], true, Instant::now()))
        .await
        .unwrap();
    for _ in 0..3 {
        assert_eq!(recv_rtp(&c.caller_sdp).await.pt, 0);
    }
    c.session
        .send_dtmf(Side::A, '1', Duration::from_millis(60))
        .await
        .unwrap();
    let mut seen = Vec::new();
    // Collect until music has come back after the event.
    loop {
        let h = recv_rtp(&c.caller_sdp).await;
        let back_to_music = h.pt == 0 && seen.iter().any(|p: &Hdr| p.pt == 101);
        seen.push(h);
        if back_to_music {
            break;
        }
    }
    for w in seen.windows(2) {
        assert_eq!(w[1].seq, w[0].seq.wrapping_add(1), "continuous sequence");
    }
    let events: Vec<&Hdr> = seen.iter().filter(|h| h.pt == 101).collect();
    assert!(
        events.iter().all(|h| h.ts == events[0].ts),
        "one timestamp per event"
    );
    assert!(events[0].mark, "marker on the event's first packet");
    assert_eq!(
        events.iter().filter(|h| h.first_byte == 1).count(),
        events.len()
    );
    let after = seen.last().unwrap();
    assert!(
        after.ts.wrapping_sub(events[0].ts) >= 480,
        "music resumes after the event's duration"
    );
}

#[tokio::test]
async fn announcement_interrupts_music_which_then_resumes() {
    let mut c = setup(41800, LegTiming::default(), Codec::Pcmu).await;
    let music = Prompt::from_samples(vec![1000; 80_000]);
    let music_byte = Law::Ulaw.encode(1000);
    let speech_byte = Law::Ulaw.encode(-7000);
    c.session
        .play(Side::A, Player::new(vec![music], true, Instant::now()))
        .await
        .unwrap();
    assert_eq!(recv_rtp(&c.caller_sdp).await.first_byte, music_byte);
    let announcement = Prompt::from_samples(vec![-7000; 480]); // three frames
    c.session
        .announce(
            Side::A,
            Player::new(vec![announcement], false, Instant::now()),
        )
        .await
        .unwrap();
    let done = next_event(&mut c.events, |e| matches!(e, MediaEvent::PlaybackDone(_))).await;
    assert_eq!(done, MediaEvent::PlaybackDone(Side::A));
    // Sequence at the caller: music..., exactly three announcement frames, music again.
    let mut kinds = Vec::new();
    loop {
        let b = recv_rtp(&c.caller_sdp).await.first_byte;
        assert!(
            b == music_byte || b == speech_byte,
            "unexpected byte {b:#x}"
        );
        let k = b == speech_byte;
        if !k && kinds.contains(&true) {
            break;
        }
        kinds.push(k);
    }
    assert_eq!(kinds.iter().filter(|&&k| k).count(), 3);
}

#[tokio::test]
async fn hold_api_plays_music_to_one_side_and_relays_nothing_until_bridged_again() {
    let c = setup(41900, LegTiming::default(), Codec::Pcmu).await;
    c.session.bridge().await.unwrap();
    c.caller
        .send_to(&rtp(0, 1, 1, 0, &[0x11; 160]), c.hotline_a)
        .await
        .unwrap();
    assert_eq!(recv_rtp(&c.agent).await.first_byte, 0x11);
    c.agent
        .send_to(&rtp(0, 2, 1, 0, &[0x22; 160]), c.hotline_b)
        .await
        .unwrap();
    assert_eq!(recv_rtp(&c.caller).await.first_byte, 0x22);
    // Hold in one step: the caller hears music, the agent nothing, whatever either sends.
    let music = Prompt::from_samples(vec![-3000; 8000]);
    let music_byte = Law::Ulaw.encode(-3000);
    c.session
        .hold(Side::A, Player::new(vec![music], true, Instant::now()))
        .await
        .unwrap();
    let before = c.session.stats().await.unwrap();
    for i in 2..12u16 {
        c.caller
            .send_to(&rtp(0, 1, i, i as u32 * 160, &[0x11; 160]), c.hotline_a)
            .await
            .unwrap();
        c.agent
            .send_to(&rtp(0, 2, i, i as u32 * 160, &[0x22; 160]), c.hotline_b)
            .await
            .unwrap();
    }
    for _ in 0..10 {
        assert_eq!(recv_rtp(&c.caller).await.first_byte, music_byte);
    }
    let s = c.session.stats().await.unwrap();
    assert_eq!(s.a.rx_packets, 11, "caller audio still arrives");
    assert_eq!(s.b.unwrap().rx_packets, 11, "agent audio still arrives");
    assert_eq!(
        s.b.unwrap().tx_packets,
        before.b.unwrap().tx_packets,
        "nothing relayed to the agent while held"
    );
    let mut buf = [0u8; 64];
    assert!(c.agent.try_recv_from(&mut buf).is_err());
    // Resume.
    c.session.bridge().await.unwrap();
    c.agent
        .send_to(&rtp(0, 2, 30, 30 * 160, &[0x44; 160]), c.hotline_b)
        .await
        .unwrap();
    // Music frames already in flight may arrive first.
    let mut heard = recv_rtp(&c.caller).await;
    while heard.first_byte == music_byte {
        heard = recv_rtp(&c.caller).await;
    }
    assert_eq!(heard.first_byte, 0x44);
    c.caller
        .send_to(&rtp(0, 1, 30, 30 * 160, &[0x33; 160]), c.hotline_a)
        .await
        .unwrap();
    assert_eq!(recv_rtp(&c.agent).await.first_byte, 0x33);
}

/// Waits until `sock` receives an RTP packet whose payload starts with `byte` (the first
/// ticks of a mix may still lack a party's frame).
async fn until_byte(sock: &UdpSocket, byte: u8) {
    for _ in 0..100 {
        if recv_rtp(sock).await.first_byte == byte {
            return;
        }
    }
    panic!("no packet of {byte:#04x} in 100");
}

/// A 3-way conference: each party hears the G.711 sum of the other two; ending it gives
/// the third leg back and A and B talk again; detaching B in a conference leaves the third
/// party bridged to A.
#[tokio::test]
async fn conference_mixes_the_other_two_for_each_party() {
    let c = setup(13000, LegTiming::default(), Codec::Pcmu).await;
    c.session.bridge().await.unwrap();
    let third = UdpSocket::bind((LO, 0)).await.unwrap();
    let leg = MediaLeg::new(
        c.alloc.bind(LO.into()).await.unwrap(),
        cfg(Codec::Pcmu, third.local_addr().unwrap()),
        LegTiming::default(),
    );
    let hotline_c = leg.local_rtp_addr().unwrap();
    c.session.conference(leg).await.unwrap();
    let u = Law::Ulaw;
    let sum = |a: u8, b: u8| u.encode(u.decode(a).saturating_add(u.decode(b)));
    // The three talk at once, a 20 ms frame each per 20 ms, while the listeners look.
    let talk = async {
        for i in 1..60u16 {
            for (sock, to, byte, ssrc) in [
                (&c.caller, c.hotline_a, 0x11, 1),
                (&c.agent, c.hotline_b, 0x22, 2),
                (&third, hotline_c, 0x33, 3),
            ] {
                let pkt = rtp(0, ssrc, i, u32::from(i) * 160, &[byte; 160]);
                sock.send_to(&pkt, to).await.unwrap();
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    };
    let listen = async {
        until_byte(&c.caller, sum(0x22, 0x33)).await;
        until_byte(&c.agent, sum(0x11, 0x33)).await;
        until_byte(&third, sum(0x11, 0x22)).await;
    };
    tokio::join!(talk, listen);
    // The third party leaves: A and B are relayed to each other again.
    let back = c
        .session
        .end_conference()
        .await
        .unwrap()
        .expect("third leg");
    c.agent
        .send_to(&rtp(0, 2, 100, 100 * 160, &[0x44; 160]), c.hotline_b)
        .await
        .unwrap();
    until_byte(&c.caller, 0x44).await;
    // Again, and this time B leaves: the third party takes B's place, bridged to A.
    c.session.conference(back).await.unwrap();
    let b = c.session.detach().await.unwrap().expect("leg B");
    drop(b);
    c.caller
        .send_to(&rtp(0, 1, 200, 200 * 160, &[0x55; 160]), c.hotline_a)
        .await
        .unwrap();
    until_byte(&third, 0x55).await;
}

/// First payload bytes of the next `n` RTP packets on `sock`.
async fn heard(sock: &UdpSocket, n: usize) -> Vec<u8> {
    let mut v = Vec::with_capacity(n);
    for _ in 0..n {
        v.push(recv_rtp(sock).await.first_byte);
    }
    v
}

/// A supervisor on the call, mode by mode, switched live: in monitor the supervisor hears
/// caller + agent and neither hears the supervisor (both still relayed packet by packet,
/// same stream); in whisper the agent hears caller + supervisor and the caller still only
/// the agent; in barge all three hear the other two. A second third party and a mode
/// change without a supervisor are refused; ending gives the leg back and the plain relay.
#[tokio::test]
async fn supervisor_hears_and_is_heard_by_mode() {
    use hotline_media::mix::SuperviseMode;
    let c = setup(13100, LegTiming::default(), Codec::Pcmu).await;
    c.session.bridge().await.unwrap();
    let sup = UdpSocket::bind((LO, 0)).await.unwrap();
    let to = sup.local_addr().unwrap();
    let leg = || async {
        MediaLeg::new(
            c.alloc.bind(LO.into()).await.unwrap(),
            cfg(Codec::Pcmu, to),
            LegTiming::default(),
        )
    };
    assert!(
        c.session
            .supervise_mode(SuperviseMode::Barge)
            .await
            .is_err(),
        "no supervisor yet"
    );
    let l = leg().await;
    let hotline_s = l.local_rtp_addr().unwrap();
    c.session
        .supervise(l, SuperviseMode::Monitor)
        .await
        .unwrap();
    let second = leg().await;
    assert!(
        c.session
            .supervise(second, SuperviseMode::Barge)
            .await
            .is_err()
    );
    let u = Law::Ulaw;
    let sum = |a: u8, b: u8| u.encode(u.decode(a).saturating_add(u.decode(b)));
    let (caller_b, agent_b, sup_b) = (0x11u8, 0x22u8, 0x33u8);
    let mut seq = 0u16;
    let mut phase = |frames: u16| {
        let start = seq;
        seq += frames;
        let (caller, agent) = (&c.caller, &c.agent);
        let (ha, hb) = (c.hotline_a, c.hotline_b);
        let sup = &sup;
        async move {
            for i in start..start + frames {
                for (sock, to, byte, ssrc) in [
                    (caller, ha, caller_b, 1),
                    (agent, hb, agent_b, 2),
                    (sup, hotline_s, sup_b, 3),
                ] {
                    let pkt = rtp(0, ssrc, i, u32::from(i) * 160, &[byte; 160]);
                    sock.send_to(&pkt, to).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        }
    };
    // Monitor.
    let (_, (to_caller, to_agent)) = tokio::join!(phase(40), async {
        until_byte(&sup, sum(caller_b, agent_b)).await;
        (heard(&c.caller, 25).await, heard(&c.agent, 25).await)
    });
    assert!(to_caller.iter().all(|&b| b == agent_b), "{to_caller:x?}");
    assert!(to_agent.iter().all(|&b| b == caller_b), "{to_agent:x?}");
    // Whisper, live.
    c.session
        .supervise_mode(SuperviseMode::Whisper)
        .await
        .unwrap();
    let (_, to_caller) = tokio::join!(phase(40), async {
        until_byte(&c.agent, sum(caller_b, sup_b)).await;
        until_byte(&sup, sum(caller_b, agent_b)).await;
        heard(&c.caller, 25).await
    });
    assert!(to_caller.iter().all(|&b| b == agent_b), "{to_caller:x?}");
    // Barge.
    c.session
        .supervise_mode(SuperviseMode::Barge)
        .await
        .unwrap();
    tokio::join!(phase(40), async {
        until_byte(&c.caller, sum(agent_b, sup_b)).await;
        until_byte(&c.agent, sum(caller_b, sup_b)).await;
        until_byte(&sup, sum(caller_b, agent_b)).await;
    });
    // The supervisor leaves: the plain relay again, and the leg comes back.
    let back = c.session.end_supervise().await.unwrap();
    assert!(back.is_some(), "the supervisor's leg");
    assert!(c.session.end_supervise().await.unwrap().is_none());
    let (_, (to_caller, to_agent)) = tokio::join!(phase(40), async {
        until_byte(&c.caller, agent_b).await;
        until_byte(&c.agent, caller_b).await;
        (heard(&c.caller, 10).await, heard(&c.agent, 10).await)
    });
    assert!(to_caller.iter().all(|&b| b == agent_b), "{to_caller:x?}");
    assert!(to_agent.iter().all(|&b| b == caller_b), "{to_agent:x?}");
    let stats = c.session.stats().await.unwrap();
    assert!(stats.third.is_none());
}
