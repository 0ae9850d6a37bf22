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
