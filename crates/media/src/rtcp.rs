//! Minimal RTCP (RFC 3550 §6): building SR/RR + SDES compound packets and validating
//! incoming ones. The relay rewrites SSRCs, so it generates its own reports per leg
//! instead of forwarding the peer's (which would describe SSRCs the receiver never saw).

use crate::error::{MediaError, Result};

/// RTCP packet types we look at.
pub const PT_SR: u8 = 200;
/// Receiver report.
pub const PT_RR: u8 = 201;
/// Source description.
pub const PT_SDES: u8 = 202;
/// Goodbye.
pub const PT_BYE: u8 = 203;

/// One reception report block (RFC 3550 §6.4.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ReportBlock {
    /// SSRC of the source reported on.
    pub ssrc: u32,
    /// Fraction lost since the last report, in 1/256.
    pub fraction_lost: u8,
    /// Cumulative packets lost (24-bit, clamped).
    pub cumulative_lost: u32,
    /// Extended highest sequence number received.
    pub highest_seq: u32,
    /// Interarrival jitter, timestamp units.
    pub jitter: u32,
    /// Middle 32 bits of the last SR's NTP timestamp from that source.
    pub last_sr: u32,
    /// Delay since that SR, 1/65536 s.
    pub delay_since_last_sr: u32,
}

/// Sender information for an SR.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SenderInfo {
    /// 64-bit NTP timestamp of now.
    pub ntp: u64,
    /// RTP timestamp corresponding to `ntp`.
    pub rtp_timestamp: u32,
    /// Packets sent.
    pub packets: u32,
    /// Payload octets sent.
    pub octets: u32,
}

struct Writer<'a> {
    buf: &'a mut [u8],
    pos: usize,
}

impl Writer<'_> {
    fn put(&mut self, bytes: &[u8]) -> Result<()> {
        let end = self.pos + bytes.len();
        let dst = self
            .buf
            .get_mut(self.pos..end)
            .ok_or(MediaError::Rtcp("output buffer too small"))?;
        dst.copy_from_slice(bytes);
        self.pos = end;
        Ok(())
    }
    fn u32(&mut self, v: u32) -> Result<()> {
        self.put(&v.to_be_bytes())
    }
}

/// Writes a compound packet: SR (if `sender` is given) or RR, with at most one report
/// block, then SDES with a CNAME. Returns the length written.
pub fn build_report(
    buf: &mut [u8],
    ssrc: u32,
    sender: Option<SenderInfo>,
    block: Option<ReportBlock>,
    cname: &str,
) -> Result<usize> {
    let mut w = Writer { buf, pos: 0 };
    let rc = block.is_some() as u8;
    let (pt, words) = match sender {
        Some(_) => (PT_SR, 6 + 6 * rc as u16),
        None => (PT_RR, 1 + 6 * rc as u16),
    };
    w.put(&[0x80 | rc, pt])?;
    w.put(&words.to_be_bytes())?;
    w.u32(ssrc)?;
    if let Some(s) = sender {
        w.u32((s.ntp >> 32) as u32)?;
        w.u32(s.ntp as u32)?;
        w.u32(s.rtp_timestamp)?;
        w.u32(s.packets)?;
        w.u32(s.octets)?;
    }
    if let Some(b) = block {
        w.u32(b.ssrc)?;
        let lost = b.cumulative_lost.min(0x7F_FFFF);
        w.u32(((b.fraction_lost as u32) << 24) | lost)?;
        w.u32(b.highest_seq)?;
        w.u32(b.jitter)?;
        w.u32(b.last_sr)?;
        w.u32(b.delay_since_last_sr)?;
    }
    // SDES: one chunk, CNAME item, END, padded to a word boundary.
    let cname = &cname.as_bytes()[..cname.len().min(255)];
    let chunk_len = 4 + 2 + cname.len() + 1;
    let padded = chunk_len.div_ceil(4) * 4;
    w.put(&[0x81, PT_SDES])?;
    w.put(&((padded / 4) as u16).to_be_bytes())?;
    w.u32(ssrc)?;
    w.put(&[1, cname.len() as u8])?;
    w.put(cname)?;
    for _ in 0..(padded - chunk_len + 1) {
        w.put(&[0])?;
    }
    Ok(w.pos)
}

/// What we keep from an incoming compound packet.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Received {
    /// SSRC of the first packet's sender.
    pub ssrc: u32,
    /// Middle 32 bits of the NTP time of an SR, for LSR in our reports.
    pub sr_ntp_middle: Option<u32>,
    /// The compound held a BYE.
    pub bye: bool,
}

/// Validates a compound RTCP packet (RFC 3550 A.2: version 2, first packet SR or RR,
/// lengths adding up exactly) and extracts what reports need.
pub fn parse(pkt: &[u8]) -> Result<Received> {
    if pkt.len() < 8 {
        return Err(MediaError::Rtcp("shorter than an RTCP header"));
    }
    if pkt[1] != PT_SR && pkt[1] != PT_RR {
        return Err(MediaError::Rtcp("compound does not start with SR or RR"));
    }
    let mut out = Received {
        ssrc: u32::from_be_bytes([pkt[4], pkt[5], pkt[6], pkt[7]]),
        ..Default::default()
    };
    let mut pos = 0;
    while pos < pkt.len() {
        let hdr = pkt
            .get(pos..pos + 4)
            .ok_or(MediaError::Rtcp("truncated header"))?;
        if hdr[0] >> 6 != 2 {
            return Err(MediaError::Rtcp("version is not 2"));
        }
        let len = (u16::from_be_bytes([hdr[2], hdr[3]]) as usize + 1) * 4;
        let body = pkt
            .get(pos..pos + len)
            .ok_or(MediaError::Rtcp("length past the end"))?;
        match hdr[1] {
            PT_SR => {
                if body.len() < 28 {
                    return Err(MediaError::Rtcp("SR too short"));
                }
                let msw = u32::from_be_bytes([body[8], body[9], body[10], body[11]]);
                let lsw = u32::from_be_bytes([body[12], body[13], body[14], body[15]]);
                out.sr_ntp_middle = Some((msw << 16) | (lsw >> 16));
            }
            PT_BYE => out.bye = true,
            _ => {}
        }
        pos += len;
    }
    Ok(out)
}

/// Converts a Unix time to the 64-bit NTP format (seconds since 1900, 32.32 fixed).
pub fn ntp_from_unix(since_epoch: std::time::Duration) -> u64 {
    const UNIX_TO_NTP: u64 = 2_208_988_800;
    let secs = since_epoch.as_secs() + UNIX_TO_NTP;
    let frac = ((since_epoch.subsec_nanos() as u64) << 32) / 1_000_000_000;
    (secs << 32) | frac
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sr_with_block_round_trips_through_parse() {
        let mut buf = [0u8; 200];
        let ntp = 0x1122_3344_5566_7788;
        let n = build_report(
            &mut buf,
            0xDEAD_BEEF,
            Some(SenderInfo {
                ntp,
                rtp_timestamp: 1,
                packets: 2,
                octets: 3,
            }),
            Some(ReportBlock {
                ssrc: 7,
                cumulative_lost: 3,
                ..Default::default()
            }),
            "hotline@test",
        )
        .unwrap();
        assert_eq!(n % 4, 0);
        // SR header length field: 12 words total incl. header => 12.
        assert_eq!(u16::from_be_bytes([buf[2], buf[3]]), 12);
        let r = parse(&buf[..n]).unwrap();
        assert_eq!(r.ssrc, 0xDEAD_BEEF);
        assert_eq!(r.sr_ntp_middle, Some(0x3344_5566));
        assert!(!r.bye);
    }

    #[test]
    fn rr_without_block_is_valid() {
        let mut buf = [0u8; 64];
        let n = build_report(&mut buf, 1, None, None, "x").unwrap();
        assert_eq!(buf[1], PT_RR);
        assert_eq!(parse(&buf[..n]).unwrap().sr_ntp_middle, None);
        assert!(build_report(&mut [0u8; 10], 1, None, None, "x").is_err());
    }

    #[test]
    fn garbage_is_rejected_without_panicking() {
        assert!(parse(&[]).is_err());
        assert!(parse(&[0x80, 200, 0, 50, 0, 0, 0, 0]).is_err());
        assert!(parse(&[0x80, 96, 0, 1, 0, 0, 0, 0]).is_err());
        assert!(parse(&[0x40, 201, 0, 1, 0, 0, 0, 0]).is_err());
        for len in 0..40 {
            let junk: Vec<u8> = (0..len).map(|i| (i * 37 + 201) as u8).collect();
            let _ = parse(&junk);
        }
    }

    #[test]
    fn ntp_conversion() {
        let ntp = ntp_from_unix(std::time::Duration::from_millis(1500));
        assert_eq!(ntp >> 32, 2_208_988_801);
        assert_eq!(ntp as u32, 1 << 31);
    }
}
