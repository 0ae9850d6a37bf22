//! Per-packet costs of the media hot path: relay (parse + latch/stats + rewrite +
//! build), with and without PCMU↔PCMA transcoding; player frame; SDP offer/answer.
//! The loopback many-calls run is `cargo run --release --example relay_load`.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use hotline_media::leg::{LegConfig, LegState, LegTiming, MAX_PACKET, Translation, relay_packet};
use hotline_media::player::{Player, Prompt};
use hotline_media::sdp::{Codec, Direction, LocalMedia, SessionDescription, answer_offer};
use rtp_rs::{RtpPacketBuilder, Seq};

fn cfg(codec: Codec, remote: &str) -> LegConfig {
    LegConfig {
        codec,
        payload_type: codec.payload_type(),
        telephone_event: Some(101),
        remote_rtp: Some(remote.parse().unwrap()),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        ptime: 20,
    }
}

fn bench_relay(c: &mut Criterion) {
    for (name, cb) in [
        ("relay_packet_pcmu", Codec::Pcmu),
        ("relay_packet_transcode", Codec::Pcma),
    ] {
        let t0 = Instant::now();
        let mut a = LegState::new(cfg(Codec::Pcmu, "127.0.0.1:4000"), LegTiming::default(), t0);
        let mut b = LegState::new(cfg(cb, "127.0.0.1:5000"), LegTiming::default(), t0);
        let tr = Translation::new(Codec::Pcmu, cb);
        let src: SocketAddr = "127.0.0.1:4000".parse().unwrap();
        let mut pkt = RtpPacketBuilder::new()
            .payload_type(0)
            .ssrc(42)
            .sequence(Seq::from(1))
            .timestamp(0)
            .payload(&[0x55; 160])
            .build()
            .unwrap();
        let mut out = [0u8; MAX_PACKET];
        let mut seq: u16 = 1;
        let mut now = t0;
        c.bench_function(name, |bench| {
            bench.iter(|| {
                seq = seq.wrapping_add(1);
                pkt[2..4].copy_from_slice(&seq.to_be_bytes());
                let ts = (seq as u32) * 160;
                pkt[4..8].copy_from_slice(&ts.to_be_bytes());
                now += Duration::from_millis(20);
                let r = relay_packet(&mut a, &mut b, &tr, src, black_box(&pkt), now, &mut out);
                black_box(r.ok().and_then(|(_, _, s)| s));
            })
        });
    }
}

fn bench_player(c: &mut Criterion) {
    let t0 = Instant::now();
    let mut p = Player::new(vec![Prompt::from_samples(vec![1234; 80_000])], true, t0);
    let mut now = t0;
    c.bench_function("player_frame_20ms", |b| {
        b.iter(|| {
            now += Duration::from_millis(20);
            black_box(p.poll(now).map(|f| f.len()));
        })
    });
}

fn bench_sdp(c: &mut Criterion) {
    let offer = "v=0\r\no=alice 2890844526 2890844526 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n\
m=audio 49170 RTP/AVP 8 0 18 101\r\na=rtpmap:8 PCMA/8000\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:18 G729/8000\r\n\
a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=ptime:20\r\na=sendrecv\r\n";
    let local = LocalMedia::new("198.51.100.1".parse().unwrap(), 20000);
    c.bench_function("sdp_parse_answer_serialise", |b| {
        b.iter(|| {
            let o = SessionDescription::parse(black_box(offer)).unwrap();
            let (answer, _) = answer_offer(&o, &local, Direction::SendRecv).unwrap();
            black_box(answer.to_string());
        })
    });
}

criterion_group!(benches, bench_relay, bench_player, bench_sdp);
criterion_main!(benches);
