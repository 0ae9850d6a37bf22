//! The fuzz targets' bodies, one function per input surface. The `cargo fuzz` binaries
//! (`fuzz_targets/`) call them, and so does the stable in-tree loop (`tests/smoke.rs`),
//! so both exercise exactly the same code. Each function panics only on a bug.

use std::net::SocketAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use hotline_media::leg::{LegState, Translation, relay_packet};
use hotline_media::sdp::{self, Codec, Direction, LocalMedia, SessionDescription};
use hotline_media::{LegConfig, LegTiming};

/// SDP text: parse; what parses must print as SDP that parses again and prints the same
/// (printing may normalise once, e.g. an empty `s=` becomes `s=-`), and answering it (or
/// taking it as the answer to our offer) must not panic.
pub fn sdp(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(offer) = SessionDescription::parse(text) else {
        return;
    };
    let printed = offer.to_string();
    match SessionDescription::parse(&printed) {
        Ok(again) => assert_eq!(again.to_string(), printed, "SDP round trip changed it"),
        Err(e) => panic!("printed SDP does not parse ({e}):\n{printed}"),
    }
    let local = LocalMedia::new([127, 0, 0, 1].into(), 40_000);
    for willing in [
        Direction::SendRecv,
        Direction::SendOnly,
        Direction::Inactive,
    ] {
        if let Ok((answer, _)) = sdp::answer_offer(&offer, &local, willing) {
            let _ = sdp::process_answer(&offer, &answer);
        }
    }
    let ours = sdp::build_offer(&local, Direction::SendRecv);
    let _ = sdp::process_answer(&ours, &offer);
}

/// One RTP/RTCP leg: the first byte picks what each following chunk is fed as (RTP, RTCP,
/// relayed RTP, a timer tick), chunks are length-prefixed by one byte.
pub fn rtp(data: &[u8]) {
    let _ = hotline_media::rtcp::parse(data);
    let now = Instant::now();
    let cfg = LegConfig {
        codec: Codec::Pcmu,
        payload_type: 0,
        telephone_event: Some(101),
        remote_rtp: Some(([127, 0, 0, 1], 7000).into()),
        remote_rtcp: None,
        direction: Direction::SendRecv,
        ptime: 20,
    };
    let other = LegConfig {
        codec: Codec::Pcma,
        payload_type: 8,
        ..cfg
    };
    let mut a = LegState::new(cfg, LegTiming::default(), now);
    let mut b = LegState::new(other, LegTiming::default(), now);
    let tr = Translation::new(Codec::Pcmu, Codec::Pcma);
    let src: SocketAddr = ([127, 0, 0, 1], 7000).into();
    let mut out = [0u8; 2048];
    let mut rest = data;
    let mut t = now;
    while let [kind, len, tail @ ..] = rest {
        let n = (*len as usize).min(tail.len());
        let (pkt, next) = tail.split_at(n);
        rest = next;
        match kind % 4 {
            0 => {
                let _ = a.accept_rtp(src, pkt, t);
            }
            1 => {
                let _ = a.accept_rtcp(src, pkt, t);
            }
            2 => {
                let _ = relay_packet(&mut a, &mut b, &tr, src, pkt, t, &mut out);
            }
            _ => {
                t += Duration::from_millis(u64::from(*len) * 10);
                a.handle_timeout(t);
            }
        }
        while a.poll_event().is_some() {}
    }
    let _ = hotline_media::dtmf::EventPayload::parse(data);
}

/// One CTI text frame through the protocol parser.
pub fn cti(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = hotline_cti::protocol::parse(text, 64 * 1024);
}

/// A configuration file: parse and validate (a rejection is fine, a panic is not).
pub fn config(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = hotline::config::Config::parse(Path::new("fuzz.toml"), text);
}

/// A customer CSV file through the importer's validation (the part that reads the file;
/// writing takes a store and only sees validated rows).
pub fn csv(data: &[u8]) {
    thread_local! {
        static NORM: hotline_crm::Normalizer =
            hotline_crm::Normalizer::new("DE").expect("DE is a region");
    }
    NORM.with(|n| {
        let _ = hotline_crm::import::validate(data, n, |_| {});
    });
}
