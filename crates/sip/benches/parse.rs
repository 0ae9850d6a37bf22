//! Message-path cost: parsing a REGISTER with the rsip API plus our validation, and the
//! whole core handling one (trusted, no auth) REGISTER and producing its 200.

use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use hotline_sip::msg::{Limits, parse};
use hotline_sip::{Core, CoreConfig, Flow, Transport};

const REGISTER: &[u8] = b"REGISTER sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5090;branch=z9hG4bK-1-1-0\r\nFrom: <sip:user00001@127.0.0.1>;tag=1R1\r\nTo: <sip:user00001@127.0.0.1>\r\nCall-ID: 1-1@127.0.0.1\r\nCSeq: 1 REGISTER\r\nContact: <sip:user00001@127.0.0.1:5090;transport=UDP>\r\nExpires: 3600\r\nMax-Forwards: 70\r\nUser-Agent: SIPp bench\r\nContent-Length: 0\r\n\r\n";

fn benches(c: &mut Criterion) {
    let limits = Limits::default();
    c.bench_function("parse REGISTER", |b| {
        b.iter(|| parse(black_box(REGISTER), &limits, true).unwrap())
    });
    let us: std::net::SocketAddr = ([127, 0, 0, 1], 5070).into();
    let cfg = CoreConfig {
        trusted: vec!["127.0.0.0/8".parse().unwrap()],
        ..CoreConfig::default()
    };
    let mut core = Core::new(cfg, vec![(Transport::Udp, us)], Instant::now());
    let flow = Flow {
        transport: Transport::Udp,
        local: us,
        remote: ([127, 0, 0, 1], 5090).into(),
    };
    let mut n = 0u64;
    c.bench_function("core REGISTER -> 200", |b| {
        b.iter(|| {
            // A new branch each time, as SIPp sends: no retransmission shortcut.
            n += 1;
            let msg =
                String::from_utf8_lossy(REGISTER).replace("z9hG4bK-1-1-0", &format!("z9hG4bK-{n}"));
            core.handle_input(flow, msg.as_bytes(), Instant::now());
            black_box(core.poll_transmit().unwrap());
        })
    });
}

criterion_group!(parse_benches, benches);
criterion_main!(parse_benches);
