//! Cost of counting one SIP message for Prometheus (`wire_metrics::count`) with the real
//! recorder installed, next to the no-recorder case: the price the core pays per datagram
//! in and out (compare with ~9.6 µs for the core to answer a REGISTER, `benches/guard.rs`).

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use hotline_sip::wire_metrics::{Direction, count};

const INVITE: &[u8] =
    b"INVITE sip:4000@127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:5061\r\n\r\n";
const OK: &[u8] = b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5061\r\n\r\n";

fn bench(c: &mut Criterion) {
    c.bench_function("count_request_no_recorder", |b| {
        b.iter(|| count(Direction::In, black_box(INVITE)))
    });
    let handle = metrics_exporter_prometheus::PrometheusBuilder::new()
        .install_recorder()
        .expect("recorder");
    c.bench_function("count_request", |b| {
        b.iter(|| count(Direction::In, black_box(INVITE)))
    });
    c.bench_function("count_response", |b| {
        b.iter(|| count(Direction::Out, black_box(OK)))
    });
    assert!(handle.render().contains("hotline_sip_requests_total"));
}

criterion_group!(benches, bench);
criterion_main!(benches);
