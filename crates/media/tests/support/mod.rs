//! Helpers shared by the media crate's integration tests and benchmarks.
#![allow(dead_code)]

use std::net::UdpSocket;

use hotline_media::ports::PortAllocator;

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
