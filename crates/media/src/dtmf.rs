//! DTMF: RFC 4733 telephone-event payloads (decode with end-bit and retransmission
//! dedup, and generation), and SIP INFO bodies (`application/dtmf-relay`,
//! `application/dtmf`) for phones that signal keys out of band.

use std::time::{Duration, Instant};

use crate::error::{MediaError, Result};

/// RTP clock of telephone-event at 8 kHz: samples per millisecond.
const SAMPLES_PER_MS: u32 = 8;

/// Maps a key to its RFC 4733 event code (0-9, `*`=10, `#`=11, A-D=12-15).
pub fn digit_to_event(digit: char) -> Option<u8> {
    Some(match digit.to_ascii_uppercase() {
        c @ '0'..='9' => c as u8 - b'0',
        '*' => 10,
        '#' => 11,
        c @ 'A'..='D' => c as u8 - b'A' + 12,
        _ => return None,
    })
}

/// Maps an RFC 4733 event code to its key; 16 (flash) and others are not keys.
pub fn event_to_digit(event: u8) -> Option<char> {
    Some(match event {
        0..=9 => (b'0' + event) as char,
        10 => '*',
        11 => '#',
        12..=15 => (b'A' + event - 12) as char,
        _ => return None,
    })
}

/// One telephone-event payload (RFC 4733 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventPayload {
    /// Event code.
    pub event: u8,
    /// End bit.
    pub end: bool,
    /// Volume in -dBm0 (0-63).
    pub volume: u8,
    /// Duration in timestamp units (samples).
    pub duration: u16,
}

impl EventPayload {
    /// Parses the first 4 bytes (redundant trailing blocks are ignored).
    pub fn parse(p: &[u8]) -> Result<Self> {
        if p.len() < 4 {
            return Err(MediaError::Dtmf(
                "telephone-event payload shorter than 4 bytes",
            ));
        }
        Ok(EventPayload {
            event: p[0],
            end: p[1] & 0x80 != 0,
            volume: p[1] & 0x3F,
            duration: u16::from_be_bytes([p[2], p[3]]),
        })
    }

    /// Serialises to the 4-byte wire form.
    pub fn to_bytes(self) -> [u8; 4] {
        let d = self.duration.to_be_bytes();
        [
            self.event,
            (if self.end { 0x80 } else { 0 }) | (self.volume & 0x3F),
            d[0],
            d[1],
        ]
    }
}

/// A key press recognised from telephone-events or SIP INFO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Digit {
    /// The key (`0-9*#A-D`).
    pub digit: char,
    /// How long it was held.
    pub duration: Duration,
}

#[derive(Debug, Clone, Copy)]
struct Current {
    timestamp: u32,
    event: u8,
    duration: u16,
    ended: bool,
    last_seen: Instant,
}

/// Turns a stream of telephone-event packets into key presses, each reported once:
/// on its first end packet, or when the next event starts / `poll_timeout` passes if
/// every end packet was lost. Retransmitted end packets (RFC 4733 sends three) and
/// late packets of an earlier event are ignored.
#[derive(Debug, Default)]
pub struct DtmfReceiver {
    current: Option<Current>,
    previous_ts: Option<u32>,
}

/// How long an event without an end packet may stay silent before it is reported.
pub const DTMF_END_TIMEOUT: Duration = Duration::from_millis(500);

impl DtmfReceiver {
    /// A fresh receiver.
    pub fn new() -> Self {
        Self::default()
    }

    fn report(c: &Current) -> Option<Digit> {
        event_to_digit(c.event).map(|digit| Digit {
            digit,
            duration: Duration::from_millis((c.duration as u32 / SAMPLES_PER_MS) as u64),
        })
    }

    /// Feeds one telephone-event packet (RTP timestamp and payload). Returns the key
    /// when this packet completes one; a lost-end previous event is returned first
    /// and the new one later.
    pub fn handle(
        &mut self,
        timestamp: u32,
        payload: &[u8],
        now: Instant,
    ) -> Result<Option<Digit>> {
        let p = EventPayload::parse(payload)?;
        if let Some(c) = self.current.as_mut() {
            if c.timestamp == timestamp {
                if c.ended {
                    return Ok(None);
                }
                c.duration = c.duration.max(p.duration);
                c.last_seen = now;
                if p.end {
                    c.ended = true;
                    return Ok(Self::report(c));
                }
                return Ok(None);
            }
            if self.previous_ts == Some(timestamp) {
                return Ok(None);
            }
            // Older than the current event (wrapping compare): a late straggler.
            if (timestamp.wrapping_sub(c.timestamp) as i32) < 0 {
                return Ok(None);
            }
        } else if self.previous_ts == Some(timestamp) {
            return Ok(None);
        }
        let unfinished = self
            .current
            .filter(|c| !c.ended)
            .and_then(|c| Self::report(&c));
        if let Some(c) = self.current {
            self.previous_ts = Some(c.timestamp);
        }
        let new = Current {
            timestamp,
            event: p.event,
            duration: p.duration,
            ended: p.end,
            last_seen: now,
        };
        self.current = Some(new);
        if unfinished.is_some() {
            return Ok(unfinished);
        }
        Ok(if p.end { Self::report(&new) } else { None })
    }

    /// When to call [`DtmfReceiver::handle_timeout`] next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.current
            .filter(|c| !c.ended)
            .map(|c| c.last_seen + DTMF_END_TIMEOUT)
    }

    /// Reports an event whose end packets never came.
    pub fn handle_timeout(&mut self, now: Instant) -> Option<Digit> {
        let c = self.current.as_mut()?;
        if c.ended || now < c.last_seen + DTMF_END_TIMEOUT {
            return None;
        }
        c.ended = true;
        Self::report(c)
    }
}

/// One packet to send from a [`DtmfGenerator`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DtmfPacket {
    /// The 4-byte payload.
    pub payload: [u8; 4],
    /// RTP marker: set on the first packet of the event.
    pub marker: bool,
    /// Samples the sender's timestamp should advance after this packet (non-zero only
    /// on the last packet, so following audio continues after the event).
    pub advance: u32,
}

/// Generates the RFC 4733 packet train for one key: a start packet with marker,
/// updates every `interval`, then the end packet three times. Sans-IO: `poll(now)`.
#[derive(Debug, Clone)]
pub struct DtmfGenerator {
    event: u8,
    total: u16,
    step: u16,
    elapsed: u16,
    ends_sent: u8,
    next_at: Instant,
    interval: Duration,
    started: bool,
}

impl DtmfGenerator {
    /// A generator for `digit` lasting `duration` (clamped to 40 ms - 8 s), packets
    /// every 20 ms starting at `now`.
    pub fn new(digit: char, duration: Duration, now: Instant) -> Result<Self> {
        let event = digit_to_event(digit).ok_or(MediaError::Dtmf("not a DTMF key"))?;
        let ms = duration.as_millis().clamp(40, 8000) as u32;
        Ok(DtmfGenerator {
            event,
            total: (ms * SAMPLES_PER_MS) as u16,
            step: (20 * SAMPLES_PER_MS) as u16,
            elapsed: 0,
            ends_sent: 0,
            next_at: now,
            interval: Duration::from_millis(20),
            started: false,
        })
    }

    /// Whether the whole train has been produced.
    pub fn is_done(&self) -> bool {
        self.ends_sent >= 3
    }

    /// When the next packet is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        (!self.is_done()).then_some(self.next_at)
    }

    /// The packet due at `now`, if any.
    pub fn poll(&mut self, now: Instant) -> Option<DtmfPacket> {
        if self.is_done() || now < self.next_at {
            return None;
        }
        self.next_at += self.interval;
        let marker = !self.started;
        self.started = true;
        if self.elapsed < self.total {
            self.elapsed = (self.elapsed + self.step).min(self.total);
            if self.elapsed < self.total {
                let p = EventPayload {
                    event: self.event,
                    end: false,
                    volume: 10,
                    duration: self.elapsed,
                };
                return Some(DtmfPacket {
                    payload: p.to_bytes(),
                    marker,
                    advance: 0,
                });
            }
        }
        self.ends_sent += 1;
        let p = EventPayload {
            event: self.event,
            end: true,
            volume: 10,
            duration: self.total,
        };
        let advance = if self.is_done() { self.total as u32 } else { 0 };
        Some(DtmfPacket {
            payload: p.to_bytes(),
            marker,
            advance,
        })
    }
}

/// Parses a SIP INFO DTMF body by content type: `application/dtmf-relay`
/// (`Signal=5\r\nDuration=160`) or `application/dtmf` (just the key).
pub fn parse_info_body(content_type: &str, body: &str) -> Result<Digit> {
    let ct = content_type.split(';').next().unwrap_or("").trim();
    let parse_signal = |s: &str| -> Result<char> {
        let s = s.trim();
        let mut chars = s.chars();
        match (chars.next(), chars.next()) {
            (Some(c), None) if digit_to_event(c).is_some() => Ok(c.to_ascii_uppercase()),
            _ => s
                .parse::<u8>()
                .ok()
                .and_then(event_to_digit)
                .ok_or(MediaError::Dtmf("unknown DTMF signal")),
        }
    };
    if ct.eq_ignore_ascii_case("application/dtmf-relay") {
        let mut digit = None;
        let mut duration = None;
        for line in body.lines() {
            let Some((k, v)) = line.split_once('=') else {
                continue;
            };
            let k = k.trim();
            if k.eq_ignore_ascii_case("signal") {
                digit = Some(parse_signal(v)?);
            } else if k.eq_ignore_ascii_case("duration") {
                let ms: u32 = v
                    .trim()
                    .parse()
                    .map_err(|_| MediaError::Dtmf("bad Duration"))?;
                duration = Some(Duration::from_millis(ms.min(60_000) as u64));
            }
        }
        let digit = digit.ok_or(MediaError::Dtmf("dtmf-relay body without Signal"))?;
        Ok(Digit {
            digit,
            duration: duration.unwrap_or(Duration::from_millis(100)),
        })
    } else if ct.eq_ignore_ascii_case("application/dtmf") {
        Ok(Digit {
            digit: parse_signal(body)?,
            duration: Duration::from_millis(100),
        })
    } else {
        Err(MediaError::Dtmf("not a DTMF content type"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn pl(event: u8, end: bool, duration: u16) -> [u8; 4] {
        EventPayload {
            event,
            end,
            volume: 10,
            duration,
        }
        .to_bytes()
    }

    #[test]
    fn payload_round_trip_and_short_rejected() {
        let p = EventPayload {
            event: 11,
            end: true,
            volume: 63,
            duration: 1600,
        };
        assert_eq!(EventPayload::parse(&p.to_bytes()).unwrap(), p);
        assert!(EventPayload::parse(&[1, 2, 3]).is_err());
    }

    #[test]
    fn one_key_with_three_end_packets_is_reported_once() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        let mut got = Vec::new();
        let ts = 1000;
        for d in [160, 320, 480] {
            got.extend(rx.handle(ts, &pl(5, false, d), t0).unwrap());
        }
        for _ in 0..3 {
            got.extend(rx.handle(ts, &pl(5, true, 640), t0).unwrap());
        }
        assert_eq!(
            got,
            vec![Digit {
                digit: '5',
                duration: Duration::from_millis(80)
            }]
        );
    }

    #[test]
    fn sequence_of_keys_and_lost_end() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        let mut got = Vec::new();
        // '1' ends properly.
        got.extend(rx.handle(100, &pl(1, false, 160), t0).unwrap());
        got.extend(rx.handle(100, &pl(1, true, 800), t0).unwrap());
        // '#' loses all its end packets; the start of '2' reports it.
        got.extend(rx.handle(2000, &pl(11, false, 160), t0).unwrap());
        got.extend(rx.handle(2000, &pl(11, false, 320), t0).unwrap());
        got.extend(rx.handle(4000, &pl(2, false, 160), t0).unwrap());
        // A late end retransmission of '1' is ignored.
        got.extend(rx.handle(100, &pl(1, true, 800), t0).unwrap());
        got.extend(rx.handle(4000, &pl(2, true, 400), t0).unwrap());
        let keys: String = got.iter().map(|d| d.digit).collect();
        assert_eq!(keys, "1#2");
        assert_eq!(got[1].duration, Duration::from_millis(40));
    }

    #[test]
    fn timeout_reports_an_event_without_end() {
        let t0 = Instant::now();
        let mut rx = DtmfReceiver::new();
        assert_eq!(rx.handle(7, &pl(9, false, 160), t0).unwrap(), None);
        let deadline = rx.poll_timeout().unwrap();
        assert_eq!(rx.handle_timeout(deadline - Duration::from_millis(1)), None);
        assert_eq!(rx.handle_timeout(deadline).map(|d| d.digit), Some('9'));
        assert_eq!(rx.handle_timeout(deadline + DTMF_END_TIMEOUT), None);
        // Its end packet arriving afterwards does not report it again.
        assert_eq!(rx.handle(7, &pl(9, true, 320), t0).unwrap(), None);
    }

    #[test]
    fn generator_train_decodes_to_the_same_key() {
        let t0 = Instant::now();
        let mut g = DtmfGenerator::new('*', Duration::from_millis(100), t0).unwrap();
        let mut now = t0;
        let mut packets = Vec::new();
        while let Some(dl) = g.next_deadline() {
            now = now.max(dl);
            assert!(g.poll(dl - Duration::from_nanos(1)).is_none());
            packets.push(g.poll(now).unwrap());
        }
        // 100 ms at 20 ms steps: 4 updates, then 3 ends.
        assert_eq!(packets.len(), 7);
        assert!(packets[0].marker && packets[1..].iter().all(|p| !p.marker));
        assert_eq!(
            packets.iter().filter(|p| p.payload[1] & 0x80 != 0).count(),
            3
        );
        assert_eq!(packets.iter().map(|p| p.advance).sum::<u32>(), 800);
        let mut rx = DtmfReceiver::new();
        let digits: Vec<_> = packets
            .iter()
            .filter_map(|p| rx.handle(555, &p.payload, now).unwrap())
            .collect();
        assert_eq!(
            digits,
            vec![Digit {
                digit: '*',
                duration: Duration::from_millis(100)
            }]
        );
    }

    #[test]
    fn sip_info_bodies() {
        let d = parse_info_body("application/dtmf-relay", "Signal=5\r\nDuration=160\r\n").unwrap();
        assert_eq!(
            d,
            Digit {
                digit: '5',
                duration: Duration::from_millis(160)
            }
        );
        let d = parse_info_body(
            "Application/DTMF-Relay; charset=x",
            "signal = #\nduration= 250",
        )
        .unwrap();
        assert_eq!(d.digit, '#');
        assert_eq!(d.duration, Duration::from_millis(250));
        assert_eq!(
            parse_info_body("application/dtmf-relay", "Signal=11")
                .unwrap()
                .digit,
            '#'
        );
        assert_eq!(
            parse_info_body("application/dtmf", "7\r\n").unwrap().digit,
            '7'
        );
        assert_eq!(
            parse_info_body("application/dtmf", "10").unwrap().digit,
            '*'
        );
        assert!(parse_info_body("application/dtmf-relay", "Duration=100").is_err());
        assert!(parse_info_body("application/dtmf-relay", "Signal=X").is_err());
        assert!(parse_info_body("application/dtmf", "99").is_err());
        assert!(parse_info_body("text/plain", "5").is_err());
    }

    #[test]
    fn digit_mapping_is_bijective_for_keys() {
        for c in "0123456789*#ABCD".chars() {
            assert_eq!(event_to_digit(digit_to_event(c).unwrap()), Some(c));
        }
        assert_eq!(event_to_digit(16), None);
        assert_eq!(digit_to_event('x'), None);
    }
}
