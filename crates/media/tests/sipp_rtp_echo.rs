//! The relay against a real peer no one here wrote: SIPp's RTP echo (`-rtp_echo`).
//! A fake caller sends RTP to leg A; leg B points at SIPp, which echoes everything back
//! to its sender; Hotline latches on SIPp and relays the echo back to the caller.
//! SIPp is installed by `sip-tests/run-tests.sh`; without it this test fails loudly.

mod support;

use std::net::{Ipv4Addr, SocketAddr};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use hotline_media::leg::{LegConfig, LegEvent, LegTiming};
use hotline_media::ports::PortAllocator;
use hotline_media::sdp::{Codec, Direction};
use hotline_media::session::{MediaEvent, MediaLeg, Side, spawn_session};
use rtp_rs::RtpReader;
use tokio::net::UdpSocket;
use tokio::sync::mpsc;
use tokio::time::timeout;

const LO: Ipv4Addr = Ipv4Addr::LOCALHOST;
const SIPP_MEDIA: u16 = 47530;
const SIPP_SIGNALLING: u16 = 47540;
const GUARD: Duration = Duration::from_secs(10);

/// Kills SIPp by its own PID however the test ends.
struct Sipp(Child);
impl Drop for Sipp {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
    support::rtp(0, 0xCA11, seq, u32::from(seq) * 160, payload)
}

#[tokio::test]
async fn relay_round_trip_through_sipp_rtp_echo() {
    let child = Command::new("sipp")
        .args(["-sn", "uas", "-rtp_echo", "-nostdin", "-i", "127.0.0.1"])
        .args([
            "-mp",
            &SIPP_MEDIA.to_string(),
            "-p",
            &SIPP_SIGNALLING.to_string(),
        ])
        .args(["-timeout", "60s"])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("sipp must be installed (sip-tests/run-tests.sh installs sip-tester)");
    let _sipp = Sipp(child);
    let sipp_addr = SocketAddr::from((LO, SIPP_MEDIA));

    // Wait until SIPp echoes: probe until the first echo comes back (bounded).
    let probe = UdpSocket::bind((LO, 0)).await.unwrap();
    let mut buf = [0u8; 1500];
    let ready = timeout(GUARD, async {
        loop {
            probe.send_to(&rtp(0, b"probe"), sipp_addr).await.unwrap();
            if let Ok(Ok(_)) = timeout(Duration::from_millis(100), probe.recv_from(&mut buf)).await
            {
                break;
            }
        }
    })
    .await;
    assert!(ready.is_ok(), "SIPp did not start echoing");

    let alloc = PortAllocator::new(41400, 41419).unwrap();
    let caller = UdpSocket::bind((LO, 0)).await.unwrap();
    let cfg = |remote| LegConfig {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: None,
        remote_rtp: Some(remote),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        ptime: 20,
    };
    let a = MediaLeg::new(
        alloc.bind(LO.into()).await.unwrap(),
        cfg(caller.local_addr().unwrap()),
        LegTiming::default(),
    );
    let b = MediaLeg::new(
        alloc.bind(LO.into()).await.unwrap(),
        cfg(sipp_addr),
        LegTiming::default(),
    );
    let hotline_a = a.local_rtp_addr().unwrap();
    let (tx, mut events) = mpsc::channel(64);
    let session = spawn_session(a, tx);
    session.attach(b).await.unwrap();
    session.bridge().await.unwrap();

    let n = 100u16;
    let mut received = Vec::new();
    for i in 0..n {
        let payload = [i as u8; 160];
        caller.send_to(&rtp(i, &payload), hotline_a).await.unwrap();
        // One at a time: every packet must make the whole round trip.
        let (len, _) = timeout(GUARD, caller.recv_from(&mut buf))
            .await
            .expect("echo relayed back")
            .unwrap();
        let r = RtpReader::new(&buf[..len]).unwrap();
        assert_eq!(r.payload(), &payload[..]);
        received.push((r.ssrc(), u16::from(r.sequence_number())));
    }
    assert_eq!(received.len(), n as usize);
    assert!(
        received
            .iter()
            .all(|(s, _)| *s == received[0].0 && *s != 0xCA11)
    );
    for w in received.windows(2) {
        assert_eq!(w[1].1, w[0].1.wrapping_add(1));
    }
    // Hotline latched on SIPp's echo source.
    let latched = timeout(GUARD, async {
        loop {
            if let Some(MediaEvent::Leg(Side::B, LegEvent::Latched(addr))) = events.recv().await {
                return addr;
            }
        }
    })
    .await
    .unwrap();
    assert_eq!(latched, sipp_addr);
    let stats = session.stats().await.unwrap();
    assert_eq!(stats.a.rx_packets, n as u64);
    assert_eq!(stats.b.unwrap().rx_packets, n as u64);
    assert_eq!(stats.b.unwrap().tx_packets, n as u64);
    drop(session.stop().await.unwrap());
    assert_eq!(alloc.in_use(), 0);
}
