//! The in-kernel relay on loopback, with real sockets: what it forwards, how it
//! rewrites, what it leaves to Hotline's socket, and that taking a flow back works.
//!
//! Needs root (CAP_BPF and CAP_NET_ADMIN) and a build with clang; it fails, with the
//! reason, where either is missing: `sip-tests/run-tests.sh` installs clang.

mod support;

use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4, UdpSocket};
use std::sync::Arc;
use std::time::{Duration, Instant};

use hotline_media::kernel::{Flow, Forward, KernelRelay};
use hotline_media::leg::{LegEvent, LegTiming};
use hotline_media::player::{Player, Prompt};
use hotline_media::recorder::start_recording;
use hotline_media::session::{
    MediaEvent, MediaLeg, SessionHandle, SessionOptions, Side, spawn_session_with,
};
use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::sync::mpsc;

fn relay() -> KernelRelay {
    assert!(
        KernelRelay::built(),
        "this build has no kernel relay: install clang and rebuild"
    );
    // SAFETY: geteuid has no preconditions.
    let root = unsafe { libc::geteuid() } == 0;
    KernelRelay::attach(&["lo"]).unwrap_or_else(|e| {
        panic!("the kernel relay did not start (it needs root: CAP_BPF, CAP_NET_ADMIN; running as root: {root}): {e}")
    })
}

fn sock() -> UdpSocket {
    let s = UdpSocket::bind((Ipv4Addr::LOCALHOST, 0)).expect("bind");
    s.set_read_timeout(Some(Duration::from_secs(2)))
        .expect("timeout");
    s
}

fn v4(s: &UdpSocket) -> SocketAddrV4 {
    match s.local_addr().expect("addr") {
        SocketAddr::V4(a) => a,
        SocketAddr::V6(_) => unreachable!("bound to 127.0.0.1"),
    }
}

fn rtp(pt: u8, ssrc: u32, seq: u16, ts: u32, marked: bool, payload: &[u8]) -> Vec<u8> {
    RtpPacketBuilder::new()
        .payload_type(pt)
        .ssrc(ssrc)
        .sequence(Seq::from(seq))
        .timestamp(ts)
        .marked(marked)
        .payload(payload)
        .build()
        .expect("rtp")
}

/// The next datagram on `s` and where it came from.
fn recv(s: &UdpSocket) -> (Vec<u8>, SocketAddr) {
    let mut buf = [0u8; 1500];
    let (n, from) = s
        .recv_from(&mut buf)
        .expect("a datagram before the timeout");
    (buf[..n].to_vec(), from)
}

/// A packet with a SSRC no flow has: never forwarded, so once a socket has it, every
/// datagram sent to that socket before it has been through the program.
const SENTINEL_SSRC: u32 = 0x5E57_1E11;

/// A call's four sockets: Hotline's two legs (`a`, `b`) and their peers (`p`, `q`).
struct Call {
    a: UdpSocket,
    b: UdpSocket,
    p: UdpSocket,
    q: UdpSocket,
}

impl Call {
    fn new() -> Call {
        Call {
            a: sock(),
            b: sock(),
            p: sock(),
            q: sock(),
        }
    }

    /// p → a is forwarded to q from b, and q → b to p from a.
    fn offload(&self, k: &KernelRelay) -> (Flow, Flow) {
        let pa = Flow {
            local: v4(&self.a),
            remote: v4(&self.p),
            ssrc: 0x1111,
        };
        k.offload(
            pa,
            Forward {
                from: v4(&self.b),
                to: v4(&self.q),
                ssrc: 0xAAAA_0001,
                seq_offset: 1000,
                ts_offset: 5000,
                in_pt: 0,
                out_pt: 8,
                tag: 0,
            },
        )
        .expect("offload p→q");
        let qb = Flow {
            local: v4(&self.b),
            remote: v4(&self.q),
            ssrc: 0x2222,
        };
        k.offload(
            qb,
            Forward {
                from: v4(&self.a),
                to: v4(&self.p),
                ssrc: 0xBBBB_0002,
                seq_offset: 65530,
                ts_offset: u32::MAX - 100,
                in_pt: 8,
                out_pt: 0,
                tag: 0,
            },
        )
        .expect("offload q→p");
        (pa, qb)
    }
}

#[test]
fn forwards_a_bridged_calls_audio_both_ways_with_the_relays_rewrite() {
    let k = relay();
    let c = Call::new();
    let (pa, qb) = c.offload(&k);
    let payload = [0xD5u8; 160];
    for i in 0..20u16 {
        let pkt = rtp(0, 0x1111, 100 + i, 160 * i as u32, i == 0, &payload);
        c.p.send_to(&pkt, c.a.local_addr().unwrap()).unwrap();
        let pkt = rtp(8, 0x2222, 200 + i, 160 * i as u32, false, &payload);
        c.q.send_to(&pkt, c.b.local_addr().unwrap()).unwrap();
    }
    for i in 0..20u16 {
        let (pkt, from) = recv(&c.q);
        assert_eq!(from, c.b.local_addr().unwrap(), "q hears it from b");
        let r = RtpReader::new(&pkt).expect("valid RTP");
        assert_eq!(r.ssrc(), 0xAAAA_0001);
        assert_eq!(u16::from(r.sequence_number()), 1100 + i);
        assert_eq!(r.timestamp(), 160 * i as u32 + 5000);
        assert_eq!(r.payload_type(), 8);
        assert_eq!(r.mark(), i == 0, "the marker bit is kept");
        assert_eq!(r.payload(), payload);

        let (pkt, from) = recv(&c.p);
        assert_eq!(from, c.a.local_addr().unwrap(), "p hears it from a");
        let r = RtpReader::new(&pkt).expect("valid RTP");
        assert_eq!(r.ssrc(), 0xBBBB_0002);
        assert_eq!(
            u16::from(r.sequence_number()),
            (200 + i).wrapping_add(65530),
            "sequence numbers wrap"
        );
        assert_eq!(r.timestamp(), (160 * i as u32).wrapping_add(u32::MAX - 100));
        assert_eq!(r.payload_type(), 0);
    }
    // Nothing of it reached Hotline's sockets: the first thing each has is a sentinel.
    let sentinel = rtp(0, SENTINEL_SSRC, 1, 1, false, &payload);
    c.p.send_to(&sentinel, c.a.local_addr().unwrap()).unwrap();
    c.q.send_to(&sentinel, c.b.local_addr().unwrap()).unwrap();
    assert_eq!(recv(&c.a).0, sentinel);
    assert_eq!(recv(&c.b).0, sentinel);

    let s = k.stats(&pa).unwrap().expect("p→a is in the kernel");
    assert_eq!(s.packets, 20);
    assert_eq!(s.bytes, 20 * (12 + 160));
    assert_eq!(s.last_seq, 1119);
    assert_eq!(s.last_ts, 19 * 160 + 5000);
    assert!(s.last_packet.is_some());
    let s = k.stats(&qb).unwrap().expect("q→b is in the kernel");
    assert_eq!(s.packets, 20);
    assert_eq!(s.last_seq, 219u16.wrapping_add(65530));
}

#[test]
fn what_the_flow_does_not_describe_reaches_hotlines_socket() {
    let k = relay();
    let c = Call::new();
    let (pa, _) = c.offload(&k);
    let a = c.a.local_addr().unwrap();
    // A DTMF event (payload type 101) from the latched source, and audio from another
    // SSRC: both are Hotline's to handle. Then one the flow describes.
    let event = rtp(101, 0x1111, 5, 800, true, &[1, 0x0a, 0, 160]);
    let other = rtp(0, 0x3333, 5, 800, false, &[0xD5; 160]);
    let audio = rtp(0, 0x1111, 6, 960, false, &[0xD5; 160]);
    c.p.send_to(&event, a).unwrap();
    c.p.send_to(&other, a).unwrap();
    c.p.send_to(&audio, a).unwrap();
    assert_eq!(recv(&c.a).0, event);
    assert_eq!(recv(&c.a).0, other);
    let (pkt, _) = recv(&c.q);
    assert_eq!(
        u16::from(RtpReader::new(&pkt).unwrap().sequence_number()),
        1006,
        "the first thing q hears is the audio"
    );
    // From another address (the phone moved): Hotline's too.
    let moved = sock();
    moved.send_to(&audio, a).unwrap();
    let (pkt, from) = recv(&c.a);
    assert_eq!((pkt, from), (audio.clone(), moved.local_addr().unwrap()));
    assert_eq!(k.stats(&pa).unwrap().unwrap().packets, 1);
}

#[test]
fn a_withdrawn_flow_goes_back_to_the_socket_with_its_count() {
    let k = relay();
    let c = Call::new();
    let (pa, _) = c.offload(&k);
    let a = c.a.local_addr().unwrap();
    for i in 0..5u16 {
        c.p.send_to(&rtp(0, 0x1111, i, 0, false, &[0xD5; 160]), a)
            .unwrap();
    }
    for _ in 0..5 {
        recv(&c.q);
    }
    let s = k.withdraw(&pa).unwrap().expect("it was in the kernel");
    assert_eq!(s.packets, 5);
    assert_eq!(s.last_seq, 1004);
    let after = rtp(0, 0x1111, 5, 0, false, &[0xD5; 160]);
    c.p.send_to(&after, a).unwrap();
    assert_eq!(recv(&c.a).0, after, "Hotline has the flow again");
    assert_eq!(k.withdraw(&pa).unwrap(), None);
    assert_eq!(k.stats(&pa).unwrap(), None);
    let t = k.totals();
    assert_eq!(
        (t.flows, t.forwarded),
        (1, 5),
        "q→b is still there; p→a's 5 counted"
    );
}

/// RFC 768's checksum over the IPv4 pseudo header and the UDP datagram.
fn udp_checksum(src: Ipv4Addr, dst: Ipv4Addr, udp: &[u8]) -> u16 {
    let mut sum: u32 = 0;
    let mut add = |b: &[u8]| {
        for c in b.chunks(2) {
            sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
        }
    };
    add(&src.octets());
    add(&dst.octets());
    add(&[0, 17]);
    add(&(udp.len() as u16).to_be_bytes());
    add(udp);
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    match !(sum as u16) {
        0 => 0xffff,
        c => c,
    }
}

/// A UDP datagram from `from` to `to` sent through a raw socket, so its checksum is
/// the one written here (`bad` spoils it) and the receiving socket checks it.
fn send_raw(raw: &Socket, from: SocketAddrV4, to: SocketAddrV4, payload: &[u8], bad: bool) {
    let mut udp = Vec::with_capacity(8 + payload.len());
    udp.extend_from_slice(&from.port().to_be_bytes());
    udp.extend_from_slice(&to.port().to_be_bytes());
    udp.extend_from_slice(&((8 + payload.len()) as u16).to_be_bytes());
    udp.extend_from_slice(&[0, 0]);
    udp.extend_from_slice(payload);
    let mut sum = udp_checksum(*from.ip(), *to.ip(), &udp);
    if bad {
        sum ^= 0x0101;
    }
    udp[6..8].copy_from_slice(&sum.to_be_bytes());
    raw.send_to(&udp, &SocketAddr::V4(to).into())
        .expect("raw send");
}

#[test]
fn checksums_stay_valid_when_the_sender_computed_them() {
    let k = relay();
    let c = Call::new();
    c.offload(&k);
    let raw = Socket::new(Domain::IPV4, Type::RAW, Some(Protocol::UDP)).expect("raw socket");
    let (p, q, a) = (v4(&c.p), v4(&c.q), v4(&c.a));
    // This path checks checksums: of two datagrams sent straight to q, the spoiled
    // one is dropped.
    let first = rtp(0, 0x4444, 1, 0, false, &[1; 160]);
    let second = rtp(0, 0x4444, 2, 0, false, &[2; 160]);
    send_raw(&raw, p, q, &first, true);
    send_raw(&raw, p, q, &second, false);
    assert_eq!(recv(&c.q).0, second, "the spoiled checksum was dropped");
    // Through the kernel relay, with every header word changed, the sum still holds.
    let audio = rtp(0, 0x1111, 77, 12345, false, &[0x7f; 160]);
    send_raw(&raw, p, a, &audio, false);
    let (pkt, from) = recv(&c.q);
    assert_eq!(from, c.b.local_addr().unwrap());
    let r = RtpReader::new(&pkt).unwrap();
    assert_eq!(
        (u16::from(r.sequence_number()), r.timestamp(), r.payload()),
        (1077, 12345 + 5000, &[0x7f; 160][..])
    );
}

/// A media session between two tokio "phones", with the kernel relay.
struct Session {
    session: SessionHandle,
    events: mpsc::Receiver<MediaEvent>,
    caller: tokio::net::UdpSocket,
    agent: tokio::net::UdpSocket,
    hotline_a: SocketAddr,
    hotline_b: SocketAddr,
}

async fn session(k: &Arc<KernelRelay>, timing: LegTiming) -> Session {
    let alloc = support::port_range(4);
    let caller = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let agent = tokio::net::UdpSocket::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let lo = Ipv4Addr::LOCALHOST.into();
    let a = MediaLeg::new(
        alloc.bind(lo).await.unwrap(),
        support::pcmu_leg(caller.local_addr().unwrap()),
        timing,
    );
    let b = MediaLeg::new(
        alloc.bind(lo).await.unwrap(),
        support::pcmu_leg(agent.local_addr().unwrap()),
        timing,
    );
    let (hotline_a, hotline_b) = (a.local_rtp_addr().unwrap(), b.local_rtp_addr().unwrap());
    let (tx, events) = mpsc::channel(64);
    let opts = SessionOptions {
        tick: Some(Duration::ZERO),
        kernel: Some(Arc::clone(k)),
    };
    let session = spawn_session_with(a, tx, &opts);
    session.attach(b).await.unwrap();
    session.bridge().await.unwrap();
    Session {
        session,
        events,
        caller,
        agent,
        hotline_a,
        hotline_b,
    }
}

/// The next RTP header on `s`, from `from`: (SSRC, sequence, timestamp, first payload byte).
async fn hear(s: &tokio::net::UdpSocket, from: SocketAddr) -> (u32, u16, u32, u8) {
    let mut buf = [0u8; 1500];
    let (n, src) = tokio::time::timeout(Duration::from_secs(5), s.recv_from(&mut buf))
        .await
        .expect("RTP in time")
        .unwrap();
    assert_eq!(src, from);
    let r = RtpReader::new(&buf[..n]).expect("RTP");
    (
        r.ssrc(),
        r.sequence_number().into(),
        r.timestamp(),
        r.payload().first().copied().unwrap_or(0),
    )
}

/// `count` packets from one phone to Hotline, each awaited at the other phone, which
/// must hear one stream: one SSRC, consecutive sequence numbers. Returns the last
/// header heard.
async fn talk(
    from: &tokio::net::UdpSocket,
    to_hotline: SocketAddr,
    to: &tokio::net::UdpSocket,
    hotline_other: SocketAddr,
    ssrc: u32,
    seqs: std::ops::Range<u16>,
) -> (u32, u16, u32, u8) {
    let mut last: Option<(u32, u16, u32, u8)> = None;
    for seq in seqs {
        let pkt = support::rtp(0, ssrc, seq, seq as u32 * 160, &[0xD5; 160]);
        from.send_to(&pkt, to_hotline).await.unwrap();
        let h = hear(to, hotline_other).await;
        if let Some(l) = last {
            assert_eq!(h.0, l.0, "one SSRC towards the phone");
            assert_eq!(h.1, l.1.wrapping_add(1), "consecutive sequence numbers");
            assert_eq!(h.2, l.2.wrapping_add(160), "timestamps move on by a frame");
        }
        last = Some(h);
    }
    last.expect("at least one packet")
}

#[tokio::test]
async fn a_bridged_session_hands_its_audio_to_the_kernel_and_takes_it_back_for_music() {
    let k = Arc::new(relay());
    let mut c = session(&k, LegTiming::default()).await;
    let w0 = c.session.stats().await.unwrap().wakeups;
    talk(&c.caller, c.hotline_a, &c.agent, c.hotline_b, 0x77, 0..100).await;
    talk(&c.agent, c.hotline_b, &c.caller, c.hotline_a, 0x88, 0..100).await;
    let st = c.session.stats().await.unwrap();
    // The counts are the kernel's and the session's together...
    assert_eq!(st.a.rx_packets, 100);
    assert_eq!(st.b.unwrap().rx_packets, 100);
    assert_eq!(st.b.unwrap().tx_packets, 100);
    assert_eq!(st.a.tx_packets, 100);
    // ...but the session woke for the first packet of each direction only (and the
    // commands), not per packet.
    assert!(
        st.wakeups - w0 < 20,
        "{} wake-ups for 200 packets: the kernel did not take over",
        st.wakeups - w0
    );

    // Music to the caller: the kernel gives the direction back, and the caller's
    // stream goes on from the last packet the kernel sent.
    let last = talk(
        &c.caller,
        c.hotline_a,
        &c.agent,
        c.hotline_b,
        0x77,
        100..101,
    )
    .await;
    let before = talk(
        &c.agent,
        c.hotline_b,
        &c.caller,
        c.hotline_a,
        0x88,
        100..105,
    )
    .await;
    let music = Prompt::from_samples(vec![3000; 8000]);
    c.session
        .play(Side::A, Player::new(vec![music], true, Instant::now()))
        .await
        .unwrap();
    let m = hear(&c.caller, c.hotline_a).await;
    assert_eq!(m.0, before.0, "same SSRC for music");
    assert_eq!(
        m.1,
        before.1.wrapping_add(1),
        "music follows the kernel's last packet"
    );
    assert_ne!(m.3, 0xD5, "it is the music");
    // The agent still hears the caller (that direction stays in the kernel).
    let after = talk(
        &c.caller,
        c.hotline_a,
        &c.agent,
        c.hotline_b,
        0x77,
        101..102,
    )
    .await;
    assert_eq!((after.0, after.1), (last.0, last.1.wrapping_add(1)));

    // Bridged again: the agent's audio reaches the caller again.
    c.session.bridge().await.unwrap();
    let mut heard_agent = false;
    let pkt = support::rtp(0, 0x88, 105, 105 * 160, &[0xD5; 160]);
    c.agent.send_to(&pkt, c.hotline_b).await.unwrap();
    for _ in 0..100 {
        if hear(&c.caller, c.hotline_a).await.3 == 0xD5 {
            heard_agent = true;
            break;
        }
    }
    assert!(heard_agent, "the caller hears the agent after the music");
    let _ = c.events.try_recv();
    // The agent's 106 packets, most through the kernel, none lost: the kernel's count
    // went into the loss estimate, so the jump past its packets is not a loss.
    let st = c.session.stats().await.unwrap();
    let b = st.b.unwrap();
    assert_eq!((b.rx_packets, b.rx_lost), (106, 0), "{b:?}");
    // Sent back to back, 20 ms of timestamp apart: the jitter estimate stays below what
    // one jump over the kernel's 104 packets (16,640 samples) would add to it (1,040).
    assert!(b.jitter < 500, "{b:?}");
    assert_eq!((st.a.rx_packets, st.a.rx_lost), (102, 0), "{:?}", st.a);
    // The session's end takes its flows back.
    let (a, b) = c.session.stop().await.unwrap();
    drop((a, b));
    let t = k.totals();
    assert_eq!(t.flows, 0, "{t:?}");
    assert!(t.forwarded >= 190, "{t:?}");
}

/// A recorded call goes through the kernel too: the kernel copies each packet's audio
/// into a ring buffer the recorder is fed from, so the stereo WAV has both sides whole
/// while the session sleeps.
#[tokio::test]
async fn a_recorded_call_goes_through_the_kernel_and_its_recording_has_both_sides() {
    let k = Arc::new(relay());
    let c = session(&k, LegTiming::default()).await;
    let path = std::env::temp_dir().join(format!("hotline-kr-rec-{}.wav", std::process::id()));
    let (tap, job) = start_recording(&path, 256, Instant::now()).unwrap();
    c.session.record(Some(tap)).await.unwrap();
    let w0 = c.session.stats().await.unwrap().wakeups;
    // One second each way at the real pace (the recorder places audio by arrival time).
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    for seq in 0..50u16 {
        tick.tick().await;
        let pkt = support::rtp(0, 0x77, seq, seq as u32 * 160, &[0x90; 160]);
        c.caller.send_to(&pkt, c.hotline_a).await.unwrap();
        let pkt = support::rtp(0, 0x88, seq, seq as u32 * 160, &[0x10; 160]);
        c.agent.send_to(&pkt, c.hotline_b).await.unwrap();
        hear(&c.agent, c.hotline_b).await;
        hear(&c.caller, c.hotline_a).await;
    }
    let st = c.session.stats().await.unwrap();
    assert!(
        st.wakeups - w0 < 20,
        "{} wake-ups for 100 recorded packets: the kernel did not take over",
        st.wakeups - w0
    );
    assert_eq!(st.recording_dropped, 0);
    drop(c.session.stop().await.unwrap());
    let rec = job.finish().await.unwrap();
    // All 50 frames of each side, whichever path (user space for the first, the
    // kernel's copies for the rest) they took.
    support::assert_caller_left_agent_right(hound::WavReader::open(&rec.path).unwrap());
    let _ = std::fs::remove_file(&rec.path);
}

#[tokio::test]
async fn a_peer_heard_only_by_the_kernel_is_alive_and_one_that_stops_is_dead() {
    let k = Arc::new(relay());
    let timing = LegTiming {
        no_rtp_timeout: Duration::from_millis(600),
        ..LegTiming::default()
    };
    let mut c = session(&k, timing).await;
    // 1.5 s of both phones talking at the real pace, through the kernel after the
    // first packets: neither leg may be declared dead.
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let mut buf = [0u8; 1500];
    for seq in 0..75u16 {
        tick.tick().await;
        let pkt = support::rtp(0, 0x77, seq, seq as u32 * 160, &[0xD5; 160]);
        c.caller.send_to(&pkt, c.hotline_a).await.unwrap();
        let pkt = support::rtp(0, 0x88, seq, seq as u32 * 160, &[0xD5; 160]);
        c.agent.send_to(&pkt, c.hotline_b).await.unwrap();
        let _ = c.agent.try_recv_from(&mut buf);
        let _ = c.caller.try_recv_from(&mut buf);
    }
    while let Ok(e) = c.events.try_recv() {
        assert!(
            !matches!(e, MediaEvent::Leg(_, LegEvent::NoRtp)),
            "a leg the kernel heard was declared dead: {e:?}"
        );
    }
    // Silence: the no-RTP timer fires for both.
    let mut dead = 0;
    while dead < 2 {
        let e = tokio::time::timeout(Duration::from_secs(5), c.events.recv())
            .await
            .expect("NoRtp in time")
            .expect("session alive");
        if matches!(e, MediaEvent::Leg(_, LegEvent::NoRtp)) {
            dead += 1;
        }
    }
}

/// A network namespace joined to this one by a veth pair, the phones' side of a "real"
/// interface: the kernel relay on the host end forwards by the routing table (FIB
/// lookup, the neighbour's MAC, out of the interface), as on a NIC, which loopback
/// does not exercise. Removed on drop.
struct Netns {
    name: String,
    host_if: String,
    host_ip: Ipv4Addr,
    peer_ip: Ipv4Addr,
}

fn ip(args: &[&str]) {
    let out = std::process::Command::new("ip")
        .args(args)
        .output()
        .expect("the ip command (iproute2)");
    assert!(
        out.status.success(),
        "ip {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Netns {
    fn new() -> Netns {
        let id = std::process::id() % 10_000;
        let name = format!("hlkr{id}");
        let (host_if, peer_if) = (format!("hk{id}h"), format!("hk{id}p"));
        let net = (id % 250) as u8;
        let (host_ip, peer_ip) = (
            Ipv4Addr::new(10, 213, net, 1),
            Ipv4Addr::new(10, 213, net, 2),
        );
        // A namespace left by a crashed run of the same pid would be in the way.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &name])
            .output();
        ip(&["netns", "add", &name]);
        let ns = Netns {
            name,
            host_if,
            host_ip,
            peer_ip,
        };
        ip(&[
            "link",
            "add",
            &ns.host_if,
            "type",
            "veth",
            "peer",
            "name",
            &peer_if,
            "netns",
            &ns.name,
        ]);
        ip(&["addr", "add", &format!("{host_ip}/24"), "dev", &ns.host_if]);
        ip(&["link", "set", &ns.host_if, "up"]);
        ip(&[
            "-n",
            &ns.name,
            "addr",
            "add",
            &format!("{peer_ip}/24"),
            "dev",
            &peer_if,
        ]);
        ip(&["-n", &ns.name, "link", "set", &peer_if, "up"]);
        ns
    }

    /// A UDP socket bound inside the namespace (a socket stays in the namespace it was
    /// made in, whichever thread uses it later).
    fn bind(&self) -> tokio::net::UdpSocket {
        let path = format!("/var/run/netns/{}", self.name);
        let addr = SocketAddr::from((self.peer_ip, 0));
        let s = std::thread::spawn(move || {
            let f = std::fs::File::open(&path).expect("netns file");
            // SAFETY: setns on this short-lived thread only; the fd is valid and open.
            let r = unsafe { libc::setns(std::os::fd::AsRawFd::as_raw_fd(&f), libc::CLONE_NEWNET) };
            assert_eq!(r, 0, "setns: {}", std::io::Error::last_os_error());
            UdpSocket::bind(addr).expect("bind in the namespace")
        })
        .join()
        .expect("netns thread");
        s.set_nonblocking(true).unwrap();
        tokio::net::UdpSocket::from_std(s).unwrap()
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        // The veth pair goes with the namespace.
        let _ = std::process::Command::new("ip")
            .args(["netns", "del", &self.name])
            .output();
    }
}

#[tokio::test]
async fn phones_behind_an_interface_are_relayed_by_the_routed_path() {
    let ns = Netns::new();
    // The kernel forwards (and bpf_fib_lookup answers) only from an interface that
    // routes: refused, with the setting to change, until it does.
    let e = KernelRelay::attach(&[ns.host_if.as_str()]).unwrap_err();
    let want = format!("net.ipv4.conf.{}.forwarding", ns.host_if);
    assert!(e.to_string().contains(&want), "{e}");
    std::fs::write(
        format!("/proc/sys/net/ipv4/conf/{}/forwarding", ns.host_if),
        "1",
    )
    .expect("forwarding on the host's end");
    let k =
        Arc::new(KernelRelay::attach(&[ns.host_if.as_str()]).expect("kernel relay on the veth"));
    let alloc = support::port_range(4);
    let (caller, agent) = (ns.bind(), ns.bind());
    let a = MediaLeg::new(
        alloc.bind(ns.host_ip.into()).await.unwrap(),
        support::pcmu_leg(caller.local_addr().unwrap()),
        LegTiming::default(),
    );
    let b = MediaLeg::new(
        alloc.bind(ns.host_ip.into()).await.unwrap(),
        support::pcmu_leg(agent.local_addr().unwrap()),
        LegTiming::default(),
    );
    let (hotline_a, hotline_b) = (a.local_rtp_addr().unwrap(), b.local_rtp_addr().unwrap());
    let (tx, _events) = mpsc::channel(64);
    let opts = SessionOptions {
        tick: Some(Duration::ZERO),
        kernel: Some(Arc::clone(&k)),
    };
    let session = spawn_session_with(a, tx, &opts);
    session.attach(b).await.unwrap();
    session.bridge().await.unwrap();
    let w0 = session.stats().await.unwrap().wakeups;
    talk(&caller, hotline_a, &agent, hotline_b, 0x77, 0..100).await;
    talk(&agent, hotline_b, &caller, hotline_a, 0x88, 0..100).await;
    let st = session.stats().await.unwrap();
    assert_eq!((st.a.rx_packets, st.b.unwrap().rx_packets), (100, 100));
    assert!(
        st.wakeups - w0 < 20,
        "{} wake-ups for 200 packets: the kernel did not take over",
        st.wakeups - w0
    );
    drop(session.stop().await.unwrap());
    let t = k.totals();
    assert_eq!(t.flows, 0, "{t:?}");
    // All but the first packet or two of each direction (user space, while the
    // neighbour's address is learnt).
    assert!(t.forwarded >= 190, "{t:?}");
}
