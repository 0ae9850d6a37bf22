//! The WebRTC gateway against a real `webrtc`-crate peer playing the browser: Hotline
//! offers, the browser answers, ICE + DTLS-SRTP connect on loopback, and RTP flows
//! both ways between the browser and a plain RTP "phone" through the media session
//! with the payload untouched; RFC 4733 passes both ways; garbage on the public port
//! is refused without harm; teardown returns every port.

mod webrtc_common;

mod support;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};

use hotline_media::dtmf::EventPayload;
use hotline_media::leg::{LegConfig, LegEvent, LegTiming};
use hotline_media::ports::PortAllocator;
use hotline_media::sdp::{Codec, Direction};
use hotline_media::session::{MediaEvent, MediaLeg, SessionHandle, Side, spawn_session};
use hotline_media::webrtc::{WebRtcControl, WebRtcLeg, WebRtcSettings, WebRtcState, WebRtcStats};
use rtp_rs::RtpReader;
use support::rtp;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;
use webrtc_common::{Browser, GUARD, RTCRtpTransceiverDirection};

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const PACKETS: u16 = 50;

fn phone_cfg(remote: SocketAddr) -> LegConfig {
    LegConfig {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
        remote_rtp: Some(remote),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        ptime: 20,
    }
}

/// A payload whose bytes say which packet it is, so pass-through is checkable.
fn payload(i: u16, salt: u8) -> Vec<u8> {
    (0..160u16)
        .map(|k| (k as u8).wrapping_mul(3) ^ (i as u8) ^ salt)
        .collect()
}

async fn next_dtmf(rx: &mut mpsc::Receiver<MediaEvent>, side: Side) -> char {
    timeout(GUARD, async {
        loop {
            match rx.recv().await {
                Some(MediaEvent::Leg(s, LegEvent::Dtmf(d))) if s == side => return d.digit,
                Some(_) => continue,
                None => panic!("session ended"),
            }
        }
    })
    .await
    .expect("DTMF in time")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_answers_hotline_offer_and_rtp_flows_both_ways() {
    let alloc = support::port_range(50);
    let settings = WebRtcSettings::new(LO);

    // Hotline's offer: DTLS actpass, rtcp-mux, G.711 + telephone-event, our candidate.
    let (leg, offer) = WebRtcLeg::offer(&alloc, &settings).await.unwrap();
    for needle in [
        "UDP/TLS/RTP/SAVPF",
        "a=setup:actpass",
        "a=rtcp-mux",
        "PCMU/8000",
        "PCMA/8000",
        "telephone-event/8000",
        "a=fingerprint:sha-256",
        &format!("127.0.0.1 {} typ host", leg.local_addr().port()),
    ] {
        assert!(offer.contains(needle), "offer lacks {needle}:\n{offer}");
    }
    assert!(!offer.contains("opus"), "only G.711 is offered");
    let public = leg.local_addr();
    let stats = leg.stats();

    let (mut browser, answer) = Browser::answer(&offer).await;
    assert!(
        answer.contains("telephone-event"),
        "answer keeps DTMF:\n{answer}"
    );

    // The caller's plain leg and its phone.
    let (phone, a_addr, a) = phone_leg(&alloc).await;
    let b = leg
        .connect(Some(&answer), LegTiming::default())
        .await
        .unwrap();
    assert_eq!(b.state().config().codec, Codec::Pcmu);
    assert_eq!(b.state().config().telephone_event, Some(101));
    assert_eq!(
        b.local_rtp_addr().unwrap(),
        public,
        "the leg is the public socket"
    );
    assert_eq!(
        alloc.in_use(),
        2,
        "one port pair per leg, the browser's included"
    );
    let (ev_tx, mut events) = mpsc::channel(64);
    let session = spawn_session(a, ev_tx);
    session.attach(b).await.unwrap();
    session.bridge().await.unwrap();
    browser.connected().await;

    // Phone → browser: payload bytes arrive unchanged; SSRC/seq are Hotline's.
    let phone_ssrc = 0x1234_5678;
    let mut got = 0u16;
    let mut first_seq = None;
    for i in 0..PACKETS {
        phone
            .send_to(
                &rtp(0, phone_ssrc, 1000 + i, 160 * i as u32, &payload(i, 0x55)),
                a_addr,
            )
            .await
            .unwrap();
        // Pace like a phone; the browser's side is drained as it goes.
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        while let Ok(p) = browser.rtp.try_recv() {
            assert_eq!(p.header.payload_type, 0);
            let seq = p.header.sequence_number;
            let first = *first_seq.get_or_insert((seq, p.payload[0] ^ 0x55));
            let idx = seq.wrapping_sub(first.0).wrapping_add(first.1 as u16);
            assert_eq!(
                &p.payload[..],
                &payload(idx, 0x55)[..],
                "payload passes through"
            );
            got += 1;
        }
    }
    while got < PACKETS - 2 {
        let p = timeout(GUARD, browser.rtp.recv())
            .await
            .expect("phone's RTP reaches the browser")
            .unwrap();
        assert_eq!(p.header.payload_type, 0);
        got += 1;
    }

    // Browser → phone.
    let mut buf = [0u8; 1500];
    let mut back = 0u16;
    let mut b_ssrc = None;
    for i in 0..PACKETS {
        browser.send(0, i == 0, 160, &payload(i, 0xAA)).await;
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        while let Ok((n, _)) = phone.try_recv_from(&mut buf) {
            let r = RtpReader::new(&buf[..n]).unwrap();
            assert_eq!(r.payload_type(), 0);
            assert_eq!(r.payload().len(), 160);
            let salted = r.payload()[0] ^ 0xAA;
            assert_eq!(r.payload(), &payload(salted as u16, 0xAA)[..]);
            assert_ne!(r.ssrc(), browser.ssrc, "Hotline's SSRC towards the phone");
            assert_eq!(*b_ssrc.get_or_insert(r.ssrc()), r.ssrc());
            back += 1;
        }
    }
    while back < PACKETS - 2 {
        let (n, _) = timeout(GUARD, phone.recv_from(&mut buf))
            .await
            .expect("browser's RTP reaches the phone")
            .unwrap();
        if RtpReader::new(&buf[..n]).is_ok_and(|r| r.payload_type() == 0) {
            back += 1;
        }
    }
    assert!(stats.from_browser() >= (PACKETS - 2) as u64);
    assert!(stats.to_browser() >= (PACKETS - 2) as u64);
    assert!(
        stats.lean(),
        "media past the peer connection once DTLS-SRTP is up"
    );
    let s = session.stats().await.unwrap();
    let sb = s.b.unwrap();
    assert!(sb.rx_packets >= (PACKETS - 2) as u64, "{s:?}");
    assert!(sb.tx_packets >= (PACKETS - 2) as u64, "{s:?}");
    assert!(s.a.rx_packets >= PACKETS as u64 && s.a.tx_packets >= (PACKETS - 2) as u64);

    // Browser presses 7 (RFC 4733): the call task hears it from leg B, and the phone
    // gets the events relayed.
    for (k, (end, d)) in [(false, 160u16), (false, 320), (true, 480), (true, 480)]
        .into_iter()
        .enumerate()
    {
        let ev = EventPayload {
            event: 7,
            end,
            volume: 10,
            duration: d,
        };
        browser.send(101, k == 0, 0, &ev.to_bytes()).await;
    }
    assert_eq!(next_dtmf(&mut events, Side::B).await, '7');
    let mut relayed_events = 0;
    while relayed_events == 0 {
        let (n, _) = timeout(GUARD, phone.recv_from(&mut buf))
            .await
            .expect("DTMF reaches the phone")
            .unwrap();
        if let Ok(r) = RtpReader::new(&buf[..n])
            && r.payload_type() == 101
        {
            assert_eq!(EventPayload::parse(r.payload()).unwrap().event, 7);
            relayed_events += 1;
        }
    }

    // Hotline generates 3 towards the browser (as on a desk command or IVR transfer).
    session
        .send_dtmf(Side::B, '3', std::time::Duration::from_millis(100))
        .await
        .unwrap();
    let ev = timeout(GUARD, async {
        loop {
            let p = browser.rtp.recv().await.unwrap();
            if p.header.payload_type == 101 {
                return EventPayload::parse(&p.payload).unwrap();
            }
        }
    })
    .await
    .expect("telephone-event reaches the browser");
    assert_eq!(ev.event, 3);

    // Garbage on the public port: refused, counted, nothing breaks.
    while phone.try_recv_from(&mut buf).is_ok() {}
    let stranger = UdpSocket::bind((LO, 0)).await.unwrap();
    let before = stats.rejected();
    for junk in [
        &[0u8; 1][..],
        &[0x80, 0, 0, 1, 2, 3, 4, 5, 6, 7, 8, 9][..],
        &[0x16, 0xfe, 0xfd, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0][..],
        &[0x00, 0x01, 0x00, 0x08, 0x21, 0x12, 0xa4, 0x42, 1, 2][..],
        &[0xff; 1400][..],
    ] {
        stranger.send_to(junk, public).await.unwrap();
    }
    // Media still flows after the garbage (queued behind it on the same socket), so by
    // the time the phone hears the browser again the garbage has been handled.
    browser.send(0, false, 160, &payload(1, 0xAA)).await;
    loop {
        let (n, _) = timeout(GUARD, phone.recv_from(&mut buf))
            .await
            .expect("media survives garbage")
            .unwrap();
        if RtpReader::new(&buf[..n]).is_ok_and(|r| r.payload_type() == 0) {
            break;
        }
    }
    assert!(
        stats.rejected() >= before + 3,
        "short and non-demuxable datagrams are refused: {} → {}",
        before,
        stats.rejected()
    );
    assert_eq!(stats.state(), WebRtcState::Connected);

    // Teardown: the session returns both legs; releasing them frees every port.
    let (a, b) = session.stop().await.unwrap();
    drop(a);
    b.expect("agent leg").release().await;
    assert_eq!(alloc.in_use(), 0, "all port pairs back in the pool");
    assert_eq!(stats.state(), WebRtcState::Closed);
    browser.close().await;
}

/// A browser that answers with something that is not SDP, or with SDP offering no
/// G.711, gets a precise error and nothing is left allocated.
#[tokio::test]
async fn unusable_answers_are_refused_and_free_ports() {
    let alloc = support::port_range(10);
    let settings = WebRtcSettings::new(LO);
    let (leg, _offer) = WebRtcLeg::offer(&alloc, &settings).await.unwrap();
    let e = leg
        .connect(Some("this is not sdp"), LegTiming::default())
        .await
        .unwrap_err();
    assert!(matches!(e.sip_status(), 400 | 488), "{e}");
    assert_eq!(alloc.in_use(), 0);

    // A garbage offer from a browser calling in.
    let e = WebRtcLeg::answer(&alloc, &settings, "v=0\r\nm=audio x\r\n")
        .await
        .unwrap_err();
    assert!(matches!(e.sip_status(), 400 | 488), "{e}");
    assert_eq!(alloc.in_use(), 0);
}

/// Sends phone RTP every 20 ms until the browser has heard one (bounded by `GUARD`).
async fn phone_reaches_browser(phone: &UdpSocket, to: SocketAddr, browser: &mut Browser) {
    while browser.rtp.try_recv().is_ok() {}
    timeout(GUARD, async {
        for i in 0u16.. {
            phone
                .send_to(&rtp(0, 0x0BAD_CAFE, i, 160 * i as u32, &payload(i, 1)), to)
                .await
                .unwrap();
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            while let Ok(p) = browser.rtp.try_recv() {
                if p.header.payload_type == 0 {
                    return;
                }
            }
        }
    })
    .await
    .expect("the phone's RTP reaches the browser");
}

/// Sends browser RTP every 20 ms until the phone has heard one (bounded by `GUARD`).
async fn browser_reaches_phone(phone: &UdpSocket, browser: &mut Browser) {
    let mut buf = [0u8; 1500];
    while phone.try_recv_from(&mut buf).is_ok() {}
    timeout(GUARD, async {
        loop {
            browser.send(0, false, 160, &payload(9, 2)).await;
            tokio::time::sleep(std::time::Duration::from_millis(20)).await;
            while let Ok((n, _)) = phone.try_recv_from(&mut buf) {
                if RtpReader::new(&buf[..n]).is_ok_and(|r| r.payload_type() == 0) {
                    return;
                }
            }
        }
    })
    .await
    .expect("the browser's RTP reaches the phone");
}

/// A caller's plain leg on ports of `alloc` and its phone: the phone's socket, the
/// address it sends its RTP to, and the leg.
async fn phone_leg(alloc: &PortAllocator) -> (UdpSocket, SocketAddr, MediaLeg) {
    let phone = UdpSocket::bind((LO, 0)).await.unwrap();
    let a_ports = alloc.bind(LO).await.unwrap();
    let a_addr = a_ports.rtp.local_addr().unwrap();
    let a = MediaLeg::new(
        a_ports,
        phone_cfg(phone.local_addr().unwrap()),
        LegTiming::default(),
    );
    (phone, a_addr, a)
}

/// A call through the gateway: the phone's plain leg bridged to the browser's leg.
struct Bridged {
    phone: UdpSocket,
    /// Where the phone sends its RTP (the plain leg's socket).
    a_addr: SocketAddr,
    session: SessionHandle,
    ctl: WebRtcControl,
    stats: WebRtcStats,
    /// The session's events: kept open for the call, read by no one.
    _events: mpsc::Receiver<MediaEvent>,
}

/// Connects `leg` with the browser's `answer` and bridges it to a phone's plain leg from
/// `alloc`; returns once the browser is connected and hears the phone.
async fn bridge(
    alloc: &PortAllocator,
    leg: WebRtcLeg,
    answer: &str,
    browser: &mut Browser,
) -> Bridged {
    let (phone, a_addr, a) = phone_leg(alloc).await;
    let b = leg
        .connect(Some(answer), LegTiming::default())
        .await
        .unwrap();
    let link = b.gateway().expect("a browser leg");
    let (ctl, stats) = (link.control(), link.stats());
    let (ev_tx, _events) = mpsc::channel(64);
    let session = spawn_session(a, ev_tx);
    session.attach(b).await.unwrap();
    session.bridge().await.unwrap();
    browser.connected().await;
    phone_reaches_browser(&phone, a_addr, browser).await;
    Bridged {
        phone,
        a_addr,
        session,
        ctl,
        stats,
        _events,
    }
}

fn sdp_attr<'a>(sdp: &'a str, name: &str) -> Option<&'a str> {
    sdp.lines()
        .find_map(|l| l.trim().strip_prefix(name))
        .map(str::trim)
}

/// The browser re-offers on the running connection (its re-INVITE): hold (`sendonly`),
/// resume, an ICE restart, and garbage. Each usable offer gets a WebRTC answer from the
/// same DTLS identity (same fingerprint; same ICE credentials unless restarted) and media
/// carries on; the garbage gets a precise error and changes nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_reoffers_hold_resume_and_ice_restart_on_the_running_connection() {
    let alloc = support::port_range(10);
    let settings = WebRtcSettings::new(LO);
    let (leg, offer) = WebRtcLeg::offer(&alloc, &settings).await.unwrap();
    let fingerprint = sdp_attr(&offer, "a=fingerprint:").unwrap().to_owned();
    let ufrag = sdp_attr(&offer, "a=ice-ufrag:").unwrap().to_owned();
    let (mut browser, answer) = Browser::answer(&offer).await;

    let call = bridge(&alloc, leg, &answer, &mut browser).await;
    // `call` keeps the session's event channel open.
    let (phone, a_addr, session, ctl) = (call.phone, call.a_addr, call.session, call.ctl);
    browser_reaches_phone(&phone, &mut browser).await;

    // Hold from the page: sendonly → our answer is recvonly, the session stops sending.
    let hold = browser
        .reoffer(RTCRtpTransceiverDirection::Sendonly, false)
        .await;
    let (re, cfg) = ctl.reoffer(&hold).await.expect("hold answered");
    assert!(re.sdp.contains("a=recvonly"), "{}", re.sdp);
    for needle in ["UDP/TLS/RTP/SAVPF", "a=rtcp-mux", "PCMU/8000"] {
        assert!(
            re.sdp.contains(needle),
            "re-answer lacks {needle}:\n{}",
            re.sdp
        );
    }
    assert_eq!(sdp_attr(&re.sdp, "a=fingerprint:"), Some(&fingerprint[..]));
    assert_eq!(sdp_attr(&re.sdp, "a=ice-ufrag:"), Some(&ufrag[..]));
    assert_eq!(re.direction, Direction::RecvOnly);
    assert_eq!(cfg.direction, Direction::RecvOnly);
    assert_eq!(cfg.codec, Codec::Pcmu);
    browser.accept(&re.sdp).await;
    session.reconfigure(Side::B, cfg).await.unwrap();
    browser_reaches_phone(&phone, &mut browser).await;

    // Resume: sendrecv again, media both ways.
    let resume = browser
        .reoffer(RTCRtpTransceiverDirection::Sendrecv, false)
        .await;
    let (re, cfg) = ctl.reoffer(&resume).await.expect("resume answered");
    assert!(re.sdp.contains("a=sendrecv"), "{}", re.sdp);
    assert_eq!(cfg.direction, Direction::SendRecv);
    browser.accept(&re.sdp).await;
    session.reconfigure(Side::B, cfg).await.unwrap();
    phone_reaches_browser(&phone, a_addr, &mut browser).await;
    browser_reaches_phone(&phone, &mut browser).await;

    // Garbage as a re-offer: an error for the SIP layer, the connection unchanged.
    for junk in ["this is not sdp", "v=0\r\nm=audio x\r\n", ""] {
        let e = ctl.reoffer(junk).await.unwrap_err();
        assert!(matches!(e.sip_status(), 400 | 488), "{junk:?}: {e}");
    }
    phone_reaches_browser(&phone, a_addr, &mut browser).await;

    // ICE restart: new credentials in our answer, same DTLS, media carries on.
    let restart = browser
        .reoffer(RTCRtpTransceiverDirection::Sendrecv, true)
        .await;
    let (re, _cfg) = ctl.reoffer(&restart).await.expect("ICE restart answered");
    assert_eq!(sdp_attr(&re.sdp, "a=fingerprint:"), Some(&fingerprint[..]));
    assert_ne!(
        sdp_attr(&re.sdp, "a=ice-ufrag:"),
        Some(&ufrag[..]),
        "an ICE restart gets new credentials"
    );
    browser.accept(&re.sdp).await;
    phone_reaches_browser(&phone, a_addr, &mut browser).await;
    browser_reaches_phone(&phone, &mut browser).await;

    let (_a, b) = session.stop().await.unwrap();
    b.expect("agent leg").release().await;
    browser.close().await;
}

/// Hotline offers on the running connection (its 2xx to the browser's offer-less
/// re-INVITE): a WebRTC offer with the same DTLS identity and ICE credentials and our
/// DTLS role, not `actpass`. The browser's answer (the ACK's) is applied: `sendonly`
/// holds (the session stops sending), `sendrecv` resumes, and media flows on the same
/// connection. An unusable answer is refused and changes nothing: the browser's next
/// re-offer is answered as usual.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hotline_reoffers_on_the_running_connection_for_an_offerless_reinvite() {
    let alloc = support::port_range(10);
    let settings = WebRtcSettings::new(LO);
    let (leg, offer) = WebRtcLeg::offer(&alloc, &settings).await.unwrap();
    let fingerprint = sdp_attr(&offer, "a=fingerprint:").unwrap().to_owned();
    let ufrag = sdp_attr(&offer, "a=ice-ufrag:").unwrap().to_owned();
    let (mut browser, answer) = Browser::answer(&offer).await;
    // The browser answered our actpass; our role is the other one.
    let ours = match sdp_attr(&answer, "a=setup:") {
        Some("active") => "passive",
        _ => "active",
    };

    let call = bridge(&alloc, leg, &answer, &mut browser).await;
    // `call` keeps the session's event channel open.
    let (phone, a_addr, session, ctl) = (call.phone, call.a_addr, call.session, call.ctl);

    // Our offer, the browser holds in its answer.
    let reoffer = ctl
        .offer()
        .await
        .expect("an offer on the running connection");
    for needle in ["UDP/TLS/RTP/SAVPF", "a=rtcp-mux", "PCMU/8000", "a=sendrecv"] {
        assert!(
            reoffer.contains(needle),
            "re-offer lacks {needle}:\n{reoffer}"
        );
    }
    assert_eq!(sdp_attr(&reoffer, "a=fingerprint:"), Some(&fingerprint[..]));
    assert_eq!(sdp_attr(&reoffer, "a=ice-ufrag:"), Some(&ufrag[..]));
    assert_eq!(sdp_attr(&reoffer, "a=setup:"), Some(ours), "{reoffer}");
    let held = browser
        .answer_offer(&reoffer, RTCRtpTransceiverDirection::Sendonly)
        .await;
    let (media, cfg) = ctl.answer(&held).await.expect("hold answer applied");
    assert_eq!(media.codec, Codec::Pcmu);
    assert_eq!(cfg.direction, Direction::RecvOnly, "the browser holds");
    session.reconfigure(Side::B, cfg).await.unwrap();
    browser_reaches_phone(&phone, &mut browser).await;
    // On hold we send the browser nothing: the phone's audio stops here.
    while browser.rtp.try_recv().is_ok() {}
    for i in 0..10u16 {
        let p = rtp(0, 0x0BAD_CAFE, 600 + i, 160 * i as u32, &payload(i, 1));
        phone.send_to(&p, a_addr).await.unwrap();
    }
    tokio::time::sleep(std::time::Duration::from_millis(300)).await;
    assert!(
        browser.rtp.try_recv().is_err(),
        "nothing sent to a holding browser"
    );

    // Again, and the browser resumes in its answer: media both ways.
    let reoffer = ctl.offer().await.expect("a second offer");
    assert_eq!(sdp_attr(&reoffer, "a=setup:"), Some(ours));
    let resumed = browser
        .answer_offer(&reoffer, RTCRtpTransceiverDirection::Sendrecv)
        .await;
    let (_, cfg) = ctl.answer(&resumed).await.expect("resume answer applied");
    assert_eq!(cfg.direction, Direction::SendRecv);
    session.reconfigure(Side::B, cfg).await.unwrap();
    phone_reaches_browser(&phone, a_addr, &mut browser).await;
    browser_reaches_phone(&phone, &mut browser).await;

    // An answer that is not one: refused, our offer withdrawn, nothing else changes.
    let _ = ctl.offer().await.expect("a third offer");
    for junk in ["this is not sdp", ""] {
        let e = ctl.answer(junk).await.unwrap_err();
        assert!(matches!(e.sip_status(), 400 | 488), "{junk:?}: {e}");
    }
    phone_reaches_browser(&phone, a_addr, &mut browser).await;
    let hold = browser
        .reoffer(RTCRtpTransceiverDirection::Sendonly, false)
        .await;
    let (re, _) = ctl
        .reoffer(&hold)
        .await
        .expect("the browser's own re-offer still answered");
    assert!(re.sdp.contains("a=recvonly"), "{}", re.sdp);
    browser.accept(&re.sdp).await;
    browser_reaches_phone(&phone, &mut browser).await;

    let (a, b) = session.stop().await.unwrap();
    drop(a);
    b.expect("agent leg").release().await;
    assert_eq!(alloc.in_use(), 0);
    browser.close().await;
}

/// `ice_lite`: Hotline's offer says `a=ice-lite` and carries host candidates only (its
/// socket's address and the configured public one, no srflx); a full-ICE browser takes
/// the controlling role, runs the checks and connects, and RTP flows both ways. The
/// answer path is lite too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ice_lite_gateway_connects_with_a_full_ice_browser() {
    let alloc = support::port_range(10);
    let mut settings = WebRtcSettings::new(LO);
    settings.ice_lite = true;
    // Unreachable here (nothing listens on it): the browser must fall back to the host
    // address, as a LAN agent behind the same NAT would.
    settings.public_ip = Some(IpAddr::V4(Ipv4Addr::new(127, 0, 0, 9)));
    let (leg, offer) = WebRtcLeg::offer(&alloc, &settings).await.unwrap();
    let port = leg.local_addr().port();
    assert!(offer.contains("a=ice-lite"), "{offer}");
    assert!(
        offer.contains(&format!("127.0.0.1 {port} typ host")),
        "{offer}"
    );
    assert!(
        offer.contains(&format!("127.0.0.9 {port} typ host")),
        "{offer}"
    );
    assert!(
        !offer.contains("typ srflx"),
        "lite: host candidates only\n{offer}"
    );
    let (mut browser, answer) = Browser::answer(&offer).await;
    assert!(!answer.contains("a=ice-lite"), "the browser is full ICE");

    let call = bridge(&alloc, leg, &answer, &mut browser).await;
    let (phone, session, stats) = (call.phone, call.session, call.stats);
    browser_reaches_phone(&phone, &mut browser).await;
    assert_eq!(stats.state(), WebRtcState::Connected);
    let (a, b) = session.stop().await.unwrap();
    drop(a);
    b.expect("agent leg").release().await;
    browser.close().await;

    // Answering a browser's offer as a lite agent.
    let (caller, offer) = Browser::call().await;
    let (leg, answer) = WebRtcLeg::answer(&alloc, &settings, &offer).await.unwrap();
    assert!(answer.contains("a=ice-lite"), "{answer}");
    assert!(!answer.contains("typ srflx"), "{answer}");
    drop(leg);
    caller.close().await;
    assert_eq!(alloc.in_use(), 0);
}
