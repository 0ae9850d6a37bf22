//! G.711 µ-law and A-law (ITU-T G.711), hand-written: decoding is a 256-entry table
//! computed at compile time, encoding is the segment search from the standard.

const fn ulaw_decode_calc(code: u8) -> i16 {
    let u = !code;
    let sign = u & 0x80;
    let exponent = ((u >> 4) & 0x07) as i32;
    let mantissa = (u & 0x0F) as i32;
    let magnitude = (((mantissa << 3) + 0x84) << exponent) - 0x84;
    if sign != 0 {
        -magnitude as i16
    } else {
        magnitude as i16
    }
}

const fn alaw_decode_calc(code: u8) -> i16 {
    let a = code ^ 0x55;
    let sign = a & 0x80;
    let exponent = ((a >> 4) & 0x07) as i32;
    let mantissa = (a & 0x0F) as i32;
    let magnitude = if exponent == 0 {
        (mantissa << 4) + 8
    } else {
        ((mantissa << 4) + 0x108) << (exponent - 1)
    };
    // A-law's sign bit set means positive.
    if sign != 0 {
        magnitude as i16
    } else {
        -magnitude as i16
    }
}

const fn build_table(alaw: bool) -> [i16; 256] {
    let mut t = [0i16; 256];
    let mut i = 0;
    while i < 256 {
        t[i] = if alaw {
            alaw_decode_calc(i as u8)
        } else {
            ulaw_decode_calc(i as u8)
        };
        i += 1;
    }
    t
}

static ULAW_TABLE: [i16; 256] = build_table(false);
static ALAW_TABLE: [i16; 256] = build_table(true);

/// Decodes one µ-law byte to 16-bit linear PCM.
#[inline]
pub fn ulaw_to_linear(code: u8) -> i16 {
    ULAW_TABLE[code as usize]
}

/// Decodes one A-law byte to 16-bit linear PCM.
#[inline]
pub fn alaw_to_linear(code: u8) -> i16 {
    ALAW_TABLE[code as usize]
}

/// Encodes one 16-bit linear sample to µ-law.
#[inline]
pub fn linear_to_ulaw(sample: i16) -> u8 {
    const BIAS: i32 = 0x84;
    const CLIP: i32 = 32635;
    let mut s = sample as i32;
    let sign = if s < 0 {
        s = -s;
        0x80
    } else {
        0
    };
    if s > CLIP {
        s = CLIP;
    }
    s += BIAS;
    // Segment = position of the highest set bit above bit 7.
    let exponent = (31 - (s as u32).leading_zeros() as i32 - 7).clamp(0, 7);
    let mantissa = (s >> (exponent + 3)) & 0x0F;
    !((sign | (exponent << 4) | mantissa) as u8)
}

/// Encodes one 16-bit linear sample to A-law.
#[inline]
pub fn linear_to_alaw(sample: i16) -> u8 {
    let s = sample as i32;
    let (sign, mut mag) = if s >= 0 { (0x80, s) } else { (0x00, -s - 1) };
    if mag > 32767 {
        mag = 32767;
    }
    let code = if mag < 256 {
        (mag >> 4) as u8
    } else {
        let exponent = (31 - (mag as u32).leading_zeros() as i32 - 7).clamp(1, 7);
        let mantissa = (mag >> (exponent + 3)) & 0x0F;
        ((exponent << 4) | mantissa) as u8
    };
    (code | sign) ^ 0x55
}

/// The two G.711 laws, as negotiated by SDP (PCMU = µ-law, PCMA = A-law).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Law {
    /// µ-law (PCMU, static payload type 0).
    Ulaw,
    /// A-law (PCMA, static payload type 8).
    Alaw,
}

impl Law {
    /// Decodes one byte.
    #[inline]
    pub fn decode(self, code: u8) -> i16 {
        match self {
            Law::Ulaw => ulaw_to_linear(code),
            Law::Alaw => alaw_to_linear(code),
        }
    }

    /// Encodes one sample.
    #[inline]
    pub fn encode(self, sample: i16) -> u8 {
        match self {
            Law::Ulaw => linear_to_ulaw(sample),
            Law::Alaw => linear_to_alaw(sample),
        }
    }

    /// The encoding of silence (digital zero), used to fill gaps.
    pub fn silence(self) -> u8 {
        self.encode(0)
    }

    /// Decodes `input` into `out` (`out` must be at least as long; extra is untouched).
    pub fn decode_into(self, input: &[u8], out: &mut [i16]) {
        for (o, &c) in out.iter_mut().zip(input) {
            *o = self.decode(c);
        }
    }

    /// Encodes `input` into `out`.
    pub fn encode_into(self, input: &[i16], out: &mut [u8]) {
        for (o, &s) in out.iter_mut().zip(input) {
            *o = self.encode(s);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ulaw_known_values_from_the_table() {
        assert_eq!(ulaw_to_linear(0xFF), 0);
        assert_eq!(ulaw_to_linear(0x7F), 0);
        assert_eq!(ulaw_to_linear(0x80), 32124);
        assert_eq!(ulaw_to_linear(0x00), -32124);
        assert_eq!(ulaw_to_linear(0xFE), 8);
        assert_eq!(ulaw_to_linear(0x7E), -8);
        assert_eq!(linear_to_ulaw(0), 0xFF);
        assert_eq!(linear_to_ulaw(i16::MAX), 0x80);
        assert_eq!(linear_to_ulaw(i16::MIN), 0x00);
    }

    #[test]
    fn alaw_known_values_from_the_table() {
        assert_eq!(alaw_to_linear(0xD5), 8);
        assert_eq!(alaw_to_linear(0x55), -8);
        assert_eq!(alaw_to_linear(0xAA), 32256);
        assert_eq!(alaw_to_linear(0x2A), -32256);
        assert_eq!(linear_to_alaw(0), 0xD5);
        assert_eq!(linear_to_alaw(i16::MAX), 0xAA);
        assert_eq!(linear_to_alaw(i16::MIN), 0x2A);
    }

    #[test]
    fn every_code_round_trips_through_linear() {
        for c in 0..=255u8 {
            let back = linear_to_alaw(alaw_to_linear(c));
            assert_eq!(back, c, "A-law code {c:#04x}");
            // µ-law has two zeros (0x7F and 0xFF); both decode to 0 which encodes to 0xFF.
            let u = linear_to_ulaw(ulaw_to_linear(c));
            if c == 0x7F {
                assert_eq!(u, 0xFF);
            } else {
                assert_eq!(u, c, "µ-law code {c:#04x}");
            }
        }
    }

    #[test]
    fn encoding_is_monotonic_in_magnitude() {
        // Quantisation error stays within half a step of the decoded level.
        for s in (-32768i32..=32767).step_by(7) {
            let s = s as i16;
            let d = ulaw_to_linear(linear_to_ulaw(s)) as i32;
            assert!((d - s as i32).abs() <= 1024, "µ-law {s} -> {d}");
            let d = alaw_to_linear(linear_to_alaw(s)) as i32;
            assert!((d - s as i32).abs() <= 1024, "A-law {s} -> {d}");
        }
    }
}
