//! The relay in tick mode over real loopback sockets: every packet relayed in order and
//! none lost, one task wake-up per tick instead of per packet, RTP sockets kept out of
//! the reactor's epoll set (checked in `/proc/self/fdinfo`), legs moved between a
//! per-datagram and a ticking session, DTMF both ways and music paced at 20 ms.

mod support;

use std::collections::HashSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use hotline_media::dtmf::EventPayload;
use hotline_media::leg::{LegEvent, LegTiming};
use hotline_media::player::{Player, Prompt};
use hotline_media::ports::PortAllocator;
use hotline_media::session::{MediaEvent, MediaLeg, SessionHandle, Side, spawn_session_with_tick};
use rtp_rs::RtpReader;
use support::pcmu_leg as cfg;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

const GUARD: Duration = Duration::from_secs(5);
const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
const TICK: Duration = Duration::from_millis(10);

fn rtp(pt: u8, ssrc: u32, seq: u16, payload: &[u8]) -> Vec<u8> {
    support::rtp(pt, ssrc, seq, u32::from(seq) * 160, payload)
}

/// Descriptors some epoll instance of this process watches (the runtimes' reactors),
/// from the `tfd:` lines of `/proc/self/fdinfo/<epoll fd>`.
fn epoll_watched() -> HashSet<i32> {
    epoll_sets(|epfd| Some(epfd) != hotline_media::ports::tick_readiness_fd())
}

/// Descriptors in the epoll set that only notes which ticked sockets hold datagrams
/// (nothing waits on it, so its sockets wake nobody).
fn tick_watched() -> HashSet<i32> {
    epoll_sets(|epfd| Some(epfd) == hotline_media::ports::tick_readiness_fd())
}

/// Descriptors watched by this process's epoll sets that `which` picks.
fn epoll_sets(which: impl Fn(i32) -> bool) -> HashSet<i32> {
    let mut out = HashSet::new();
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        let Ok(link) = std::fs::read_link(e.path()) else {
            continue;
        };
        if link.to_string_lossy() != "anon_inode:[eventpoll]" {
            continue;
        }
        let epfd = e.file_name().to_string_lossy().parse().unwrap_or(-1);
        if !which(epfd) {
            continue;
        }
        let info = format!("/proc/self/fdinfo/{}", e.file_name().to_string_lossy());
        for line in std::fs::read_to_string(info).unwrap_or_default().lines() {
            if let Some(fd) = line
                .strip_prefix("tfd:")
                .and_then(|r| r.split_whitespace().next())
                .and_then(|n| n.parse().ok())
            {
                out.insert(fd);
            }
        }
    }
    out
}

/// A phone: its socket, and Hotline's leg towards it with the leg's RTP descriptor.
struct Phone {
    sock: UdpSocket,
    hotline: SocketAddr,
}

async fn leg(alloc: &PortAllocator) -> (Phone, MediaLeg, i32) {
    let sock = UdpSocket::bind((LO, 0)).await.unwrap();
    let ports = alloc.bind(LO.into()).await.unwrap();
    let fd = ports.rtp.as_raw_fd();
    let hotline = ports.rtp.local_addr().unwrap();
    let leg = MediaLeg::new(ports, cfg(sock.local_addr().unwrap()), LegTiming::default());
    (Phone { sock, hotline }, leg, fd)
}

/// `(sequence, payload index)` of the next RTP packet of payload type `pt` at `p`.
async fn recv(p: &Phone, pt: u8) -> (u16, u16, u8) {
    let mut buf = [0u8; 1500];
    loop {
        let n = timeout(GUARD, p.sock.recv(&mut buf))
            .await
            .expect("RTP in time")
            .unwrap();
        if let Ok(r) = RtpReader::new(&buf[..n])
            && r.payload_type() == pt
        {
            let pl = r.payload();
            let idx = u16::from_be_bytes([pl[0], pl[1]]);
            return (r.sequence_number().into(), idx, pl[0]);
        }
    }
}

/// Sends `n` packets from each phone (payload = index), one pair every `gap`, and
/// checks that each side receives all of them, in order, sequence unbroken.
async fn talk(x: &Phone, y: &Phone, n: u16, gap: Duration) {
    let send = async {
        let mut tick = tokio::time::interval(gap);
        for i in 0..n {
            tick.tick().await;
            let mut payload = [0x55u8; 160];
            payload[..2].copy_from_slice(&i.to_be_bytes());
            x.sock
                .send_to(&rtp(0, 0x1111, 1000 + i, &payload), x.hotline)
                .await
                .unwrap();
            y.sock
                .send_to(&rtp(0, 0x2222, 9000 + i, &payload), y.hotline)
                .await
                .unwrap();
        }
    };
    tokio::join!(send, in_order("to y", y, n), in_order("to x", x, n));
}

/// Receives `n` relayed packets at `at`: payload indexes 0.., sequence unbroken.
async fn in_order(p: &str, at: &Phone, n: u16) {
    let mut last: Option<u16> = None;
    for i in 0..n {
        let (seq, idx, _) = recv(at, 0).await;
        assert_eq!(idx, i, "{p}: packet {i} relayed in order, none lost");
        if let Some(l) = last {
            assert_eq!(seq, l.wrapping_add(1), "{p}: sequence unbroken");
        }
        last = Some(seq);
    }
}

async fn session(a: MediaLeg, tick: Duration) -> (SessionHandle, mpsc::Receiver<MediaEvent>) {
    let (tx, rx) = mpsc::channel(64);
    (spawn_session_with_tick(a, tx, tick), rx)
}

#[tokio::test]
async fn tick_relays_every_packet_in_order_and_wakes_per_tick_not_per_packet() {
    let alloc = PortAllocator::new(42600, 42619).unwrap();
    let (x, a, _) = leg(&alloc).await;
    let (y, b, _) = leg(&alloc).await;
    let (s, _ev) = session(a, TICK).await;
    s.attach(b).await.unwrap();
    s.bridge().await.unwrap();
    let before = s.stats().await.unwrap().wakeups;
    let t0 = Instant::now();
    // 2 x 250 packets, a pair every 2 ms: five per leg per tick.
    talk(&x, &y, 250, Duration::from_millis(2)).await;
    let elapsed = t0.elapsed();
    let st = s.stats().await.unwrap();
    assert_eq!(st.a.rx_packets, 250);
    assert_eq!(st.b.unwrap().rx_packets, 250);
    assert_eq!((st.a.rx_lost, st.b.unwrap().rx_lost), (0, 0));
    let wakeups = st.wakeups - before;
    let ticks = (elapsed.as_millis() / TICK.as_millis()) as u64;
    // Per datagram this is one wake-up per packet or pair (250..500); ticking, one per
    // tick plus the stats command.
    assert!(
        wakeups <= ticks + 5,
        "{wakeups} wake-ups for 500 packets over {ticks} ticks"
    );
}

#[tokio::test]
async fn tick_sockets_stay_out_of_epoll_and_legs_move_between_modes() {
    let alloc = PortAllocator::new(42620, 42649).unwrap();
    let (x1, a1, a1_fd) = leg(&alloc).await;
    let (x2, a2, a2_fd) = leg(&alloc).await;
    let (y, b, b_fd) = leg(&alloc).await;

    // A per-datagram session registers its legs' sockets (the control: the check sees
    // a registered socket)...
    let (per_datagram, _e1) = session(a1, Duration::ZERO).await;
    per_datagram.attach(b).await.unwrap();
    per_datagram.bridge().await.unwrap();
    per_datagram.stats().await.unwrap();
    let watched = epoll_watched();
    assert!(watched.contains(&a1_fd) && watched.contains(&b_fd));
    talk(&x1, &y, 20, Duration::from_millis(2)).await;

    // ...a ticking one does not, and a leg moved into it leaves the reactor.
    let (ticking, _e2) = session(a2, TICK).await;
    ticking.stats().await.unwrap();
    assert!(
        !epoll_watched().contains(&a2_fd),
        "tick-mode socket in epoll"
    );
    let b = per_datagram.detach().await.unwrap().expect("leg B");
    assert!(
        !epoll_watched().contains(&b_fd),
        "a detached leg is deregistered"
    );
    assert!(
        !tick_watched().contains(&b_fd),
        "a detached leg is not noted either (no readiness-set epoll_ctl per call end)"
    );
    ticking.attach(b).await.unwrap();
    ticking.bridge().await.unwrap();
    ticking.stats().await.unwrap();
    let watched = epoll_watched();
    assert!(!watched.contains(&b_fd) && !watched.contains(&a2_fd));
    let noted = tick_watched();
    assert!(
        noted.contains(&b_fd) && noted.contains(&a2_fd),
        "ticked sockets' readiness is noted (read only when they hold datagrams)"
    );
    talk(&x2, &y, 100, Duration::from_millis(2)).await;

    // And back: the per-datagram session registers it again and relays.
    let b = ticking.detach().await.unwrap().expect("leg B");
    per_datagram.attach(b).await.unwrap();
    per_datagram.bridge().await.unwrap();
    per_datagram.stats().await.unwrap();
    assert!(epoll_watched().contains(&b_fd));
    assert!(
        !tick_watched().contains(&b_fd),
        "registered: no longer noted"
    );
    talk(&x1, &y, 20, Duration::from_millis(2)).await;
}

#[tokio::test]
async fn tick_mode_detects_and_sends_dtmf_and_paces_music() {
    let alloc = PortAllocator::new(42650, 42669).unwrap();
    let (x, a, _) = leg(&alloc).await;
    let (y, b, _) = leg(&alloc).await;
    let (s, mut ev) = session(a, TICK).await;
    s.attach(b).await.unwrap();

    // Music to the caller: 25 frames take 24 x 20 ms, whatever the tick.
    s.play(
        Side::A,
        Player::new(
            vec![Prompt::from_samples(vec![3000; 8000])],
            true,
            Instant::now(),
        ),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 1500];
    let mut first = None;
    for _ in 0..25 {
        timeout(GUARD, x.sock.recv(&mut buf))
            .await
            .unwrap()
            .unwrap();
        first.get_or_insert_with(Instant::now);
    }
    let paced = first.unwrap().elapsed();
    assert!(
        paced >= Duration::from_millis(440) && paced <= Duration::from_millis(560),
        "25 frames in {paced:?}"
    );

    // The caller presses 7 (RFC 4733): reported once, relayed to the agent.
    s.bridge().await.unwrap();
    for (i, (end, d)) in [(false, 160u16), (false, 320), (true, 480), (true, 480)]
        .into_iter()
        .enumerate()
    {
        let p = EventPayload {
            event: 7,
            end,
            volume: 10,
            duration: d,
        }
        .to_bytes();
        x.sock
            .send_to(&rtp(101, 0x1111, 1 + i as u16, &p), x.hotline)
            .await
            .unwrap();
    }
    let digit = loop {
        match timeout(GUARD, ev.recv()).await.unwrap().unwrap() {
            MediaEvent::Leg(Side::A, LegEvent::Dtmf(d)) => break d.digit,
            _ => continue,
        }
    };
    assert_eq!(digit, '7');
    for _ in 0..4 {
        assert_eq!(recv(&y, 101).await.2, 7, "event relayed to the agent");
    }

    // Hotline presses # towards the agent: the key's end packets arrive.
    s.send_dtmf(Side::B, '#', Duration::from_millis(60))
        .await
        .unwrap();
    let mut ends = 0;
    while ends < 3 {
        if recv(&y, 101).await.2 == 11 {
            ends += 1;
        }
    }
}
