//! Helpers shared by the media crate's integration tests and benchmarks.
#![allow(dead_code)]

use std::net::{SocketAddr, UdpSocket};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use hotline_media::leg::LegConfig;
use hotline_media::ports::PortAllocator;
use hotline_media::sdp::{Codec, Direction};
use rtp_rs::{RtpPacketBuilder, Seq};

/// An allocator over `pairs` port pairs starting at a port the OS has just handed out
/// on 127.0.0.1 (so free right now) instead of a fixed range: tests running in
/// parallel, and other helpers' processes, do not collide. A port taken later by
/// someone else is skipped by [`PortAllocator::bind`].
pub fn port_range(pairs: u16) -> PortAllocator {
    let span = pairs.saturating_mul(2);
    for _ in 0..100 {
        let Ok(s) = UdpSocket::bind("127.0.0.1:0") else {
            continue;
        };
        let Ok(addr) = s.local_addr() else { continue };
        let first = addr.port() & !1;
        if let Some(last) = first.checked_add(span)
            && let Ok(a) = PortAllocator::new(first, last)
        {
            return a;
        }
    }
    panic!("no port range of {pairs} pairs on 127.0.0.1");
}

/// The floor under any relay on these sockets: moves each datagram from one socket to
/// the other (`recv_from`, `try_send_to`) and counts it, nothing else — no RTP parsing,
/// latching, counters per leg or timers. Hotline's relay is measured against it
/// (`relay_load`'s `RELAY_MODE=bare`, `webrtc_bridge`'s `floor` phase).
pub async fn copy_datagrams(
    a: tokio::net::UdpSocket,
    b: tokio::net::UdpSocket,
    to_a: SocketAddr,
    to_b: SocketAddr,
    count: Arc<AtomicU64>,
) {
    let (mut buf_a, mut buf_b) = ([0u8; 1500], [0u8; 1500]);
    loop {
        tokio::select! {
            r = a.recv_from(&mut buf_a) => if let Ok((n, _)) = r {
                let _ = b.try_send_to(&buf_a[..n], to_b);
                count.fetch_add(1, Ordering::Relaxed);
            },
            r = b.recv_from(&mut buf_b) => if let Ok((n, _)) = r {
                let _ = a.try_send_to(&buf_b[..n], to_a);
                count.fetch_add(1, Ordering::Relaxed);
            },
        }
    }
}

/// A phone's leg: `codec` at 20 ms, telephone-event on 101, sending to `remote`.
pub fn leg_cfg(codec: Codec, remote: SocketAddr) -> LegConfig {
    LegConfig {
        codec,
        payload_type: codec.payload_type(),
        telephone_event: Some(101),
        remote_rtp: Some(remote),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        ptime: 20,
    }
}

/// [`leg_cfg`] with PCMU.
pub fn pcmu_leg(remote: SocketAddr) -> LegConfig {
    leg_cfg(Codec::Pcmu, remote)
}

/// An RTP packet as a phone sends it.
pub fn rtp(pt: u8, ssrc: u32, seq: u16, ts: u32, payload: &[u8]) -> Vec<u8> {
    RtpPacketBuilder::new()
        .payload_type(pt)
        .ssrc(ssrc)
        .sequence(Seq::from(seq))
        .timestamp(ts)
        .payload(payload)
        .build()
        .expect("RTP packet")
}

/// Checks a stereo recording of 50 frames per side where the caller sent µ-law 0x90
/// (decodes positive) and the agent 0x10 (negative): the caller whole on the left, the
/// agent whole on the right, nothing of either on the other side.
pub fn assert_caller_left_agent_right(r: hound::WavReader<std::io::BufReader<std::fs::File>>) {
    assert_eq!(r.spec().channels, 2);
    let samples: Vec<i16> = r.into_samples::<i16>().map(|s| s.unwrap()).collect();
    let left: Vec<i16> = samples.iter().step_by(2).copied().collect();
    let right: Vec<i16> = samples.iter().skip(1).step_by(2).copied().collect();
    assert_eq!(left.iter().filter(|&&s| s > 0).count(), 8000);
    assert_eq!(right.iter().filter(|&&s| s < 0).count(), 8000);
    assert!(left.iter().all(|&s| s >= 0) && right.iter().all(|&s| s <= 0));
}
