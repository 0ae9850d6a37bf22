//! Legs on one shared media port over real loopback sockets: a bridged call relays
//! both ways through the one socket, senders no leg has are dropped and counted, a
//! second leg with a taken remote address is refused and leaves nothing behind, a
//! leg's end frees its address and ports, a re-INVITE's new address moves its route, and
//! a leg reserved for an offer is routed by its answer, a browser leg by its ICE fragment.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use hotline_media::leg::{LegConfig, LegTiming};
use hotline_media::session::{MediaLeg, SessionHandle, spawn_session};
use hotline_media::{MediaError, Player, Prompt, SharedPort};
use rtp_rs::RtpReader;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

const GUARD: Duration = Duration::from_secs(5);
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;

fn cfg(remote: SocketAddr) -> LegConfig {
    LegConfig {
        telephone_event: None,
        ..support::pcmu_leg(remote)
    }
}

fn rtp(ssrc: u32, seq: u16, first: u8) -> Vec<u8> {
    let mut payload = [0xffu8; 160];
    payload[0] = first;
    support::rtp(0, ssrc, seq, u32::from(seq) * 160, &payload)
}

/// The next RTP packet on `sock`: its sender and its payload's first byte.
async fn recv_rtp(sock: &UdpSocket) -> (SocketAddr, u8) {
    let mut buf = [0u8; 1500];
    loop {
        let (n, from) = timeout(GUARD, sock.recv_from(&mut buf))
            .await
            .expect("RTP in time")
            .unwrap();
        if let Ok(r) = RtpReader::new(&buf[..n]) {
            return (from, r.payload().first().copied().unwrap_or(0));
        }
    }
}

struct Call {
    port: SharedPort,
    alloc: hotline_media::PortAllocator,
    session: SessionHandle,
    caller: UdpSocket,
    agent: UdpSocket,
}

async fn bridged_call() -> Call {
    let port = SharedPort::bind(SocketAddr::new(LO.into(), 0))
        .await
        .unwrap();
    let alloc = support::port_range(8);
    let caller = UdpSocket::bind((LO, 0)).await.unwrap();
    let agent = UdpSocket::bind((LO, 0)).await.unwrap();
    let (ca, aa) = (caller.local_addr().unwrap(), agent.local_addr().unwrap());
    let a = MediaLeg::new(
        port.bind_leg(ca, &alloc, LO.into()).await.unwrap(),
        cfg(ca),
        LegTiming::default(),
    );
    let b = MediaLeg::new(
        port.bind_leg(aa, &alloc, LO.into()).await.unwrap(),
        cfg(aa),
        LegTiming::default(),
    );
    assert!(a.state().config().remote_rtp == Some(ca));
    let (tx, mut events) = mpsc::channel(64);
    tokio::spawn(async move { while events.recv().await.is_some() {} });
    let session = spawn_session(a, tx);
    session.attach(b).await.unwrap();
    session.bridge().await.unwrap();
    Call {
        port,
        alloc,
        session,
        caller,
        agent,
    }
}

#[tokio::test]
async fn a_bridged_call_relays_both_ways_through_one_shared_port() {
    let c = bridged_call().await;
    let shared = c.port.local_addr().unwrap();
    assert_eq!(c.port.stats().legs, 2);
    for i in 0..20u16 {
        c.caller.send_to(&rtp(1, i, i as u8), shared).await.unwrap();
        let (from, first) = recv_rtp(&c.agent).await;
        assert_eq!(
            (from, first),
            (shared, i as u8),
            "caller's packet {i} at the agent"
        );
        c.agent
            .send_to(&rtp(2, i, 100 + i as u8), shared)
            .await
            .unwrap();
        let (from, first) = recv_rtp(&c.caller).await;
        assert_eq!(
            (from, first),
            (shared, 100 + i as u8),
            "agent's packet {i} at the caller"
        );
    }
    let stats = c.session.stats().await.unwrap();
    assert_eq!(stats.a.rx_packets, 20, "{stats:?}");
    assert_eq!(stats.b.map(|b| b.rx_packets), Some(20), "{stats:?}");
    let port = c.port.stats();
    assert_eq!(
        (port.routed, port.unknown, port.overflow),
        (40, 0, 0),
        "{port:?}"
    );
}

/// Music a session plays on its own timer (no datagram from the port woke it) still
/// leaves on the shared socket: the session tells the reader to send what it queued.
#[tokio::test]
async fn music_played_on_the_shared_port_reaches_the_phone() {
    let c = bridged_call().await;
    let shared = c.port.local_addr().unwrap();
    let tune = Prompt::from_samples(vec![1000; 8000]);
    c.session
        .play(
            hotline_media::Side::A,
            Player::new(vec![tune], true, Instant::now()),
        )
        .await
        .unwrap();
    for _ in 0..10 {
        let (from, _) = recv_rtp(&c.caller).await;
        assert_eq!(from, shared, "music from the shared port");
    }
    assert_eq!(c.port.stats().routed, 0, "nothing came in to prompt a send");
}

#[tokio::test]
async fn a_sender_no_leg_has_is_dropped_and_counted() {
    let c = bridged_call().await;
    let shared = c.port.local_addr().unwrap();
    let stranger = UdpSocket::bind((LO, 0)).await.unwrap();
    stranger.send_to(&rtp(9, 0, 0xee), shared).await.unwrap();
    // The socket delivers in order: once the caller's packet is through, the
    // stranger's has been read and dropped.
    c.caller.send_to(&rtp(1, 0, 7), shared).await.unwrap();
    assert_eq!(
        recv_rtp(&c.agent).await.1,
        7,
        "only the caller's packet is relayed"
    );
    assert_eq!(c.port.stats().unknown, 1);
    let stats = c.session.stats().await.unwrap();
    assert_eq!(stats.a.rx_packets, 1, "{stats:?}");
}

/// A peer that sends two calls' RTP from one address (not symmetric RTP): the leg whose
/// SDP names that address hears the first stream only; the other is dropped and counted
/// instead of being mixed into this call.
#[tokio::test]
async fn a_second_stream_from_the_leg_address_is_not_mixed_in() {
    let c = bridged_call().await;
    let shared = c.port.local_addr().unwrap();
    for i in 0..10u16 {
        c.caller.send_to(&rtp(1, i, i as u8), shared).await.unwrap();
        c.caller.send_to(&rtp(77, i, 200), shared).await.unwrap();
    }
    // The last of the first stream marks the end: everything before it was judged.
    c.caller.send_to(&rtp(1, 10, 10), shared).await.unwrap();
    for i in 0..=10u16 {
        assert_eq!(
            recv_rtp(&c.agent).await.1,
            i as u8,
            "only the first stream reaches the agent"
        );
    }
    let port = c.port.stats();
    assert_eq!((port.routed, port.crossed), (11, 10), "{port:?}");
}

#[tokio::test]
async fn a_second_leg_with_a_taken_address_is_refused_and_leaves_nothing() {
    let port = SharedPort::bind(SocketAddr::new(LO.into(), 0))
        .await
        .unwrap();
    let alloc = support::port_range(4);
    let phone: SocketAddr = (LO, 40_000).into();
    let first = port.bind_leg(phone, &alloc, LO.into()).await.unwrap();
    assert!(first.rtp.is_shared());
    assert_eq!(first.rtp.local_addr().unwrap(), port.local_addr().unwrap());
    assert_eq!(alloc.in_use(), 1, "the RTCP port's pair");
    match port.bind_leg(phone, &alloc, LO.into()).await {
        Err(MediaError::SharedAddressTaken(a)) => assert_eq!(a, phone),
        other => panic!("expected SharedAddressTaken, got {other:?}"),
    }
    assert_eq!(alloc.in_use(), 1, "nothing allocated for the refused leg");
    assert_eq!(port.stats().legs, 1);
    drop(first);
    assert_eq!(
        (port.stats().legs, alloc.in_use()),
        (0, 0),
        "a leg's end frees its address and ports"
    );
    let again = port.bind_leg(phone, &alloc, LO.into()).await.unwrap();
    assert_eq!(port.stats().legs, 1);
    drop(again);
}

/// An offer to a phone reserves a leg before its address is known: it hears nothing
/// until its answer's address is routed, a taken address is refused without touching
/// the route, and one phone (by signalling address) gets one reserved leg at a time.
#[tokio::test]
async fn a_reserved_leg_is_routed_by_its_answer_one_per_phone() {
    let port = SharedPort::bind(SocketAddr::new(LO.into(), 0))
        .await
        .unwrap();
    let alloc = support::port_range(4);
    let device: SocketAddr = (LO, 5060).into();
    let taken: SocketAddr = (LO, 40_000).into();
    let other = port.bind_leg(taken, &alloc, LO.into()).await.unwrap();
    let mut leg = port
        .reserve_leg(&alloc, LO.into(), Some(device))
        .await
        .unwrap();
    assert!(leg.rtp.is_shared());
    assert_eq!((port.stats().legs, alloc.in_use()), (1, 2), "no route yet");
    match port.reserve_leg(&alloc, LO.into(), Some(device)).await {
        Err(MediaError::SharedAddressTaken(a)) => assert_eq!(a, device),
        other => panic!("a second leg for the phone: {other:?}"),
    }
    assert_eq!(alloc.in_use(), 2, "nothing allocated for the refused leg");
    match leg.rtp.route(taken) {
        Err(MediaError::SharedAddressTaken(a)) => assert_eq!(a, taken),
        other => panic!("routing a taken address: {other:?}"),
    }
    assert_eq!(port.stats().legs, 1, "the other leg keeps its route");
    leg.rtp.route((LO, 40_002).into()).unwrap();
    assert_eq!(port.stats().legs, 2);
    drop(leg);
    assert_eq!((port.stats().legs, alloc.in_use()), (1, 1));
    let again = port.reserve_leg(&alloc, LO.into(), Some(device)).await;
    assert!(again.is_ok(), "the phone's leg ended: {again:?}");
    drop(other);
}

/// A browser leg is found by our ICE username fragment: a connectivity check naming it
/// routes its sender's address to the leg, up to 16 addresses (checks from anywhere
/// cannot grow the table); other fragments are strangers; the leg's end removes every
/// address it was seen from.
#[tokio::test]
async fn connectivity_checks_route_a_browser_leg_by_its_ice_fragment() {
    let port = SharedPort::bind(SocketAddr::new(LO.into(), 0))
        .await
        .unwrap();
    let shared = port.local_addr().unwrap();
    let alloc = support::port_range(4);
    let mut leg = port.reserve_leg(&alloc, LO.into(), None).await.unwrap();
    leg.rtp.route_ice("frag").unwrap();
    let check = |ufrag: &str| {
        let user = format!("{ufrag}:browser");
        let padded = user.len().div_ceil(4) * 4;
        let mut m = vec![0x00, 0x01];
        m.extend_from_slice(&((4 + padded) as u16).to_be_bytes());
        m.extend_from_slice(&[0x21, 0x12, 0xa4, 0x42]);
        m.extend_from_slice(&[9; 12]);
        m.extend_from_slice(&[0x00, 0x06]);
        m.extend_from_slice(&(user.len() as u16).to_be_bytes());
        m.extend_from_slice(user.as_bytes());
        m.resize(20 + 4 + padded, 0);
        m
    };
    let mut socks = Vec::new();
    for _ in 0..20 {
        let s = UdpSocket::bind((LO, 0)).await.unwrap();
        s.send_to(&check("frag"), shared).await.unwrap();
        socks.push(s);
    }
    let stranger = UdpSocket::bind((LO, 0)).await.unwrap();
    stranger.send_to(&check("other"), shared).await.unwrap();
    let st = timeout(GUARD, async {
        loop {
            let st = port.stats();
            if st.routed + st.unknown >= 21 {
                return st;
            }
            tokio::task::yield_now().await;
        }
    })
    .await
    .expect("every check handled");
    assert_eq!((st.legs, st.routed, st.unknown), (16, 16, 5), "{st:?}");
    drop(leg);
    assert_eq!(port.stats().legs, 0, "its addresses went with the leg");
}

#[tokio::test]
async fn a_new_remote_address_moves_the_route() {
    let c = bridged_call().await;
    let shared = c.port.local_addr().unwrap();
    let moved = UdpSocket::bind((LO, 0)).await.unwrap();
    c.session
        .reconfigure(hotline_media::Side::A, cfg(moved.local_addr().unwrap()))
        .await
        .unwrap();
    // A reply from the session: the reconfiguration (queued before) is done.
    c.session.stats().await.unwrap();
    // The old address is no leg's now; the new one is the caller's.
    c.caller.send_to(&rtp(1, 0, 1), shared).await.unwrap();
    moved.send_to(&rtp(3, 0, 2), shared).await.unwrap();
    assert_eq!(recv_rtp(&c.agent).await.1, 2, "the moved caller is heard");
    assert_eq!(c.port.stats().unknown, 1, "the old address is not");
    c.agent.send_to(&rtp(2, 0, 3), shared).await.unwrap();
    let (from, first) = recv_rtp(&moved).await;
    assert_eq!(
        (from, first),
        (shared, 3),
        "the agent reaches the new address"
    );
    drop(c.session.stop().await.unwrap());
    assert_eq!((c.port.stats().legs, c.alloc.in_use()), (0, 0));
}
