//! Cost of the flood guard: the core dropping a request from a blocked source (what a
//! flood costs per datagram), next to the guard's check for a source within its rate.

use std::hint::black_box;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hotline_sip::guard::{Guard, GuardConfig};
use hotline_sip::{Core, CoreConfig, Flow, Transport};

const OPTIONS: &[u8] = b"OPTIONS sip:127.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.1:5090;branch=z9hG4bK-1\r\nFrom: <sip:x@192.0.2.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: 1@192.0.2.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";

fn benches(c: &mut Criterion) {
    let us: std::net::SocketAddr = ([127, 0, 0, 1], 5070).into();
    let t0 = Instant::now();
    let mut core = Core::new(CoreConfig::default(), vec![(Transport::Udp, us)], t0);
    let flow = Flow {
        transport: Transport::Udp,
        local: us,
        remote: ([192, 0, 2, 1], 5090).into(),
    };
    // Exhaust the burst so the source is blocked.
    for _ in 0..1000 {
        core.handle_input(flow, OPTIONS, t0);
        while core.poll_transmit().is_some() {}
    }
    c.bench_function("core drops a blocked source's request", |b| {
        b.iter(|| {
            core.handle_input(flow, black_box(OPTIONS), t0);
            assert!(core.poll_transmit().is_none());
        })
    });
    let cfg = GuardConfig {
        rate: 1_000_000_000,
        burst: 1_000_000_000,
        ..GuardConfig::default()
    };
    let mut guard = Guard::new(cfg, &[], t0);
    let ips: Vec<IpAddr> = (0..10_000u32)
        .map(|i| IpAddr::from((0xC000_0000u32 + i).to_be_bytes()))
        .collect();
    let mut i = 0usize;
    c.bench_function("guard admits one of 10k sources", |b| {
        b.iter(|| {
            i = (i + 1) % ips.len();
            black_box(guard.admit(ips[i], t0 + Duration::from_secs(1)))
        })
    });
}

criterion_group!(guard_benches, benches);
criterion_main!(guard_benches);
