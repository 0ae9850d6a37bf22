//! RTP port ranges for the test servers. Test binaries run side by side (and the tests in
//! one binary in parallel), so each binary owns a block of ports and each server it
//! starts takes the next part of that block: no two servers share a port, and a test
//! that counts or watches its ports sees only its own calls.

use std::sync::atomic::{AtomicU16, Ordering};

/// Where the blocks start.
const FIRST: u16 = 11_000;

/// Ranges tests outside sip-tests hard-code below the ephemeral ports, which run side by
/// side with these (`crates/media/tests/relay_loopback.rs`,
/// `crates/switch/tests/raw_udp.rs`); blocks stay clear of them.
const RESERVED: &[[u16; 2]] = &[[13_000, 13_199], [25_000, 25_099]];

/// Test binaries and the ports their servers take in all (the sum of their
/// [`rtp_ports`] calls), laid out one after the other from [`FIRST`], skipping
/// [`RESERVED`]. A binary not listed here gets no ports: add it.
const BLOCKS: &[(&str, u16)] = &[
    ("admin_browser", 200),
    ("attended_transfer", 300),
    ("baresip_agent", 200),
    ("callpath", 800),
    ("cdr_store", 200),
    ("chaos", 1000),
    ("cti", 1000),
    ("cti_commands", 3800),
    ("desk_browser", 800),
    ("drain", 200),
    ("incall", 1600),
    ("live_apply", 200),
    ("metrics", 200),
    ("qualify", 200),
    ("queue_call", 1400),
    ("routing", 1000),
    ("store_outage", 200),
    ("supervise", 600),
    ("tollfraud", 200),
    ("transfer_recall", 600),
    ("transports", 300),
    ("voicemail", 600),
    ("wallboard", 200),
    ("webrtc_agent", 400),
    ("extension_ring", 200),
];

/// Every block, `(binary, first, last)`, in the order of [`BLOCKS`].
fn layout() -> Vec<(&'static str, u16, u16)> {
    let mut next = FIRST;
    let mut out = Vec::with_capacity(BLOCKS.len());
    for &(name, size) in BLOCKS {
        let clash = |first: u16| {
            RESERVED
                .iter()
                .find(|r| first <= r[1] && first + size > r[0])
        };
        while let Some(r) = clash(next) {
            next = r[1] + 1;
        }
        out.push((name, next, next + size - 1));
        next += size;
    }
    out
}

/// The last port of the blocks and of [`RESERVED`]: the test peers' ports
/// ([`crate::ports`]) start above it.
pub(crate) fn blocks_end() -> u16 {
    let blocks = layout().into_iter().map(|(_, _, last)| last);
    blocks
        .chain(RESERVED.iter().map(|r| r[1]))
        .max()
        .unwrap_or(FIRST)
}

/// This test binary's name: `target/debug/deps/qualify-0123abcd` → `qualify`.
fn binary() -> String {
    let exe = std::env::current_exe().unwrap_or_default();
    let stem = exe.file_stem().unwrap_or_default().to_string_lossy();
    match stem.rsplit_once('-') {
        Some((name, _hash)) => name.to_string(),
        None => stem.into_owned(),
    }
}

/// The next `ports` ports of this binary's block, as `[first, last]` for `[media]
/// rtp_ports`. Panics when the binary is not in the table or its block is used up (a
/// test that needs more: raise its size in `BLOCKS`).
pub fn rtp_ports(ports: u16) -> [u16; 2] {
    static USED: AtomicU16 = AtomicU16::new(0);
    let name = binary();
    let Some(&(_, first, last)) = layout().iter().find(|(n, ..)| *n == name) else {
        panic!(
            "test binary {name:?} has no RTP port block: add it to BLOCKS in sip-tests/src/rtp.rs"
        );
    };
    next_part(&USED, [first, last], ports)
        .unwrap_or_else(|| panic!("{name}: {ports} more RTP ports do not fit its block [{first}, {last}]: raise its size in BLOCKS"))
}

/// `[media]` of a test server on loopback with the next `ports` RTP ports of this binary
/// ([`rtp_ports`]); more `[media]` keys may follow.
pub fn media(ports: u16) -> String {
    let [first, last] = rtp_ports(ports);
    format!("[media]\nrtp_ip = \"127.0.0.1\"\nrtp_ports = [{first}, {last}]\n")
}

/// The next `ports` ports of `block` after the `used` ones (an even start, so a range of
/// N ports holds N/2 RTP/RTCP pairs); `None` when they do not fit.
fn next_part(used: &AtomicU16, block: [u16; 2], ports: u16) -> Option<[u16; 2]> {
    let ports = ports.max(2).next_multiple_of(2);
    let start = used.fetch_add(ports, Ordering::SeqCst);
    let lo = block[0].checked_add(start)?;
    let hi = lo.checked_add(ports - 1)?;
    (hi <= block[1]).then_some([lo, hi])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_are_disjoint_and_clear_of_the_reserved_ranges() {
        let blocks = layout();
        assert_eq!(blocks.len(), BLOCKS.len());
        assert!(
            blocks.iter().all(|&(_, first, _)| first % 2 == 0),
            "{blocks:?}"
        );
        let mut all: Vec<[u16; 2]> = blocks.iter().map(|&(_, a, b)| [a, b]).collect();
        all.extend_from_slice(RESERVED);
        all.sort();
        for w in all.windows(2) {
            assert!(w[0][1] < w[1][0], "{:?} overlaps {:?}", w[0], w[1]);
        }
        // Below the ephemeral ports (32768–60999) that SIPp and the OS hand out.
        assert!(
            blocks.iter().all(|&(_, _, last)| last < 32_768),
            "{blocks:?}"
        );
    }

    #[test]
    fn each_server_takes_the_next_part_of_the_block() {
        let used = AtomicU16::new(0);
        assert_eq!(
            next_part(&used, [20_000, 20_299], 100),
            Some([20_000, 20_099])
        );
        assert_eq!(
            next_part(&used, [20_000, 20_299], 99),
            Some([20_100, 20_199])
        );
        assert_eq!(
            next_part(&used, [20_000, 20_299], 100),
            Some([20_200, 20_299])
        );
        assert_eq!(
            next_part(&used, [20_000, 20_299], 2),
            None,
            "the block is used up"
        );
    }

    #[test]
    fn a_binary_without_a_block_gets_no_ports() {
        // The unit tests run as binary `hotline_sip_tests`: not in the table.
        assert!(std::panic::catch_unwind(|| rtp_ports(100)).is_err());
    }
}
