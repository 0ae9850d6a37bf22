//! The message path as one function, shared by the `cargo fuzz` target (`fuzz/`) and a
//! proptest run in the normal test suite, so both exercise exactly the same code.

use std::time::{Duration, Instant};

use bytes::BytesMut;

use crate::flow::{Flow, Transport};
use crate::msg::Limits;
use crate::proxy::{Core, CoreConfig};

/// Feeds `data` to a fresh core as a UDP datagram (twice: the second is a retransmission),
/// through the TCP framer, and fires the timers. Panics only on a bug.
pub fn message_path(data: &[u8]) {
    let now = Instant::now();
    let us: std::net::SocketAddr = ([127, 0, 0, 1], 5060).into();
    let cfg = CoreConfig {
        trusted: vec!["127.0.0.0/8".parse().expect("valid CIDR")],
        users: [("alice".to_string(), "pw".to_string())].into(),
        limits: Limits {
            max_message_size: 4096,
            max_headers: 64,
        },
        ..CoreConfig::default()
    };
    let mut core = Core::new(cfg, vec![(Transport::Udp, us), (Transport::Tcp, us)], now);
    let udp = Flow {
        transport: Transport::Udp,
        local: us,
        remote: ([127, 0, 0, 1], 7000).into(),
    };
    core.handle_input(udp, data, now);
    core.handle_input(udp, data, now);
    let tcp = Flow {
        transport: Transport::Tcp,
        ..udp
    };
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = crate::server::frame(&mut buf, &Limits::default()) {
        core.handle_input(tcp, &frame, now);
    }
    core.handle_timeout(now + Duration::from_secs(40));
    while let Some(t) = core.poll_transmit() {
        assert!(
            t.data.starts_with(b"SIP/2.0 ") || t.data.first().is_some_and(u8::is_ascii_uppercase),
            "transmitted something that is not SIP"
        );
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    const SEEDS: &[&[u8]] = &[
        b"INVITE sip:bob@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-1;rport\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:bob@h>\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 3\r\n\r\nv=0",
        b"REGISTER sip:127.0.0.1 SIP/2.0\r\nv: SIP/2.0/TCP [::1]:5060;branch=z9hG4bK-r\r\nf: <sip:alice@h>;tag=1\r\nt: <sip:alice@h>\r\ni: r1\r\nCSeq: 1 REGISTER\r\nm: <sip:alice@[::1]:5060>;expires=60;q=0.5\r\nl: 0\r\n\r\n",
        b"SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-hl2.1f, SIP/2.0/UDP x;branch=z9hG4bK-2\r\nFrom: <sip:a@h>;tag=1\r\nTo: <sip:b@h>;tag=2\r\nCall-ID: c\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n",
    ];

    proptest! {
        #![proptest_config(ProptestConfig { cases: 2000, ..ProptestConfig::default() })]

        /// Random bytes through the whole message path.
        #[test]
        fn fuzzing_random_bytes(data in proptest::collection::vec(any::<u8>(), 0..800)) {
            super::message_path(&data);
        }

        /// Valid messages with random byte edits: reaches far deeper than pure noise.
        #[test]
        fn fuzzing_mutated_messages(
            seed in 0..SEEDS.len(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
        ) {
            let mut m = SEEDS[seed].to_vec();
            for (i, b) in edits {
                let at = i.index(m.len());
                m[at] = b;
            }
            super::message_path(&m);
        }
    }
}
