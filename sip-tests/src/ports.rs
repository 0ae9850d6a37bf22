//! Ports for the peers the tests start themselves (SIPp's SIP, control and media ports,
//! fixed listen ports). They come from a window between the servers' RTP blocks
//! ([`crate::rtp`]) and the kernel's ephemeral range: a port picked from the ephemeral
//! range and released for SIPp to bind could be handed meanwhile to any socket bound to
//! port 0 (ICE sockets of Chromium or the WebRTC stack, say, in a test running beside),
//! and SIPp then exits at once (`Unable to bind audio RTP socket`). Tests elsewhere in
//! the workspace bind port 0 for the same reason, not fixed ports in this window.

use std::net::{TcpListener, UdpSocket};
use std::sync::OnceLock;
use std::sync::atomic::{AtomicU32, Ordering};

/// The highest port below the kernel's ephemeral range (32768 unless the machine says
/// otherwise in /proc).
fn below_ephemeral() -> u16 {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|t| t.split_whitespace().next()?.parse::<u16>().ok())
        .unwrap_or(32_768)
        .saturating_sub(1)
}

/// `[first, last]` of the window: above the last RTP block, below the ephemeral range.
pub(crate) fn window() -> [u16; 2] {
    static W: OnceLock<[u16; 2]> = OnceLock::new();
    *W.get_or_init(|| {
        let first = (crate::rtp::blocks_end() + 1).next_multiple_of(4);
        let last = below_ephemeral();
        assert!(
            last > first + 1_000,
            "no room for test ports between the RTP blocks (ending {first}) and the \
             ephemeral range (from {})",
            last + 1
        );
        [first, last]
    })
}

/// Where this process walks the window next. Each test process starts at its own point
/// (from its pid), so side-by-side binaries rarely probe the same ports, and one process
/// comes back to a port only after it has walked the whole window (a port it used a
/// moment ago may still receive a retransmission meant for its last owner).
fn next(step: u32) -> u16 {
    static AT: OnceLock<AtomicU32> = OnceLock::new();
    let [first, last] = window();
    // Whole groups of four, so a media base and its next three stay in the window.
    let size = u32::from(last - first + 1) / 4 * 4;
    let at =
        AT.get_or_init(|| AtomicU32::new(std::process::id().wrapping_mul(2_654_435_761) % size));
    // Round up to a multiple of `step` first: rounding down would hand out again ports
    // the walk has just passed.
    let take = |cur: u32| Some(cur.next_multiple_of(step).wrapping_add(step));
    let cur = at
        .fetch_update(Ordering::Relaxed, Ordering::Relaxed, take)
        .unwrap_or_default();
    let n = cur.next_multiple_of(step) % size;
    first + n as u16
}

/// A port free for both UDP and TCP on 127.0.0.1 right now, outside the ephemeral range.
pub fn free_port() -> u16 {
    let tries = u32::from(window()[1] - window()[0]);
    for _ in 0..tries {
        let p = next(1);
        let free = TcpListener::bind(("127.0.0.1", p)).is_ok()
            && UdpSocket::bind(("127.0.0.1", p)).is_ok();
        if free {
            return p;
        }
    }
    panic!("no free port pair on 127.0.0.1 in {:?}", window());
}

/// A base port for SIPp's media (`-mp`): SIPp binds it and the next three (RTCP, video
/// RTP and RTCP), so all four must be free on 127.0.0.1.
pub fn free_media_port() -> u16 {
    let tries = u32::from(window()[1] - window()[0]) / 4;
    for _ in 0..tries {
        let base = next(4);
        let held: Vec<UdpSocket> = (0..4)
            .filter_map(|i| UdpSocket::bind(("127.0.0.1", base.checked_add(i)?)).ok())
            .collect();
        if held.len() == 4 {
            return base;
        }
    }
    panic!(
        "no four free UDP ports in a row on 127.0.0.1 in {:?}",
        window()
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_window_lies_between_the_rtp_blocks_and_the_ephemeral_range() {
        let [first, last] = window();
        assert!(first > crate::rtp::blocks_end(), "{first}");
        assert!(last < 32_768.min(below_ephemeral() + 1), "{last}");
        assert!(last - first >= 1_000, "{first}..{last}");
    }

    #[test]
    fn ports_are_free_in_the_window_and_not_handed_out_twice() {
        let [first, last] = window();
        let ports: Vec<u16> = (0..50).map(|_| free_port()).collect();
        assert!(
            ports.iter().all(|p| (first..=last).contains(p)),
            "{ports:?}"
        );
        let mut unique = ports.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ports.len(), "{ports:?}");
        let media = free_media_port();
        assert_eq!(media % 4, 0);
        assert!((first..=last - 3).contains(&media), "{media}");
        assert!(
            (media..media + 4).all(|m| !ports.contains(&m)),
            "{media} overlaps {ports:?}"
        );
        assert!(UdpSocket::bind(("127.0.0.1", media + 3)).is_ok());
        // Whatever the walk's position, a media block never takes a port just handed out.
        for _ in 0..4 {
            let p = free_port();
            let m = free_media_port();
            assert!(!(m..m + 4).contains(&p), "{p} inside {m}..{}", m + 3);
        }
    }
}
