//! G.711 mixing for conferences and whisper: decode each input, sum with saturation,
//! encode. Inputs shorter than the output count as silence for the missing part.

use crate::g711::Law;

/// Mixes G.711 frames (each with its own law) into `out` encoded with `out_law`.
/// Returns the number of bytes written (the length of `out`).
pub fn mix_into(inputs: &[(&[u8], Law)], out_law: Law, out: &mut [u8]) -> usize {
    for (i, o) in out.iter_mut().enumerate() {
        let sum: i32 = inputs
            .iter()
            .filter_map(|(frame, law)| frame.get(i).map(|&c| law.decode(c) as i32))
            .sum();
        *o = out_law.encode(sum.clamp(i16::MIN as i32, i16::MAX as i32) as i16);
    }
    out.len()
}

/// Mixes into `out` every input except `exclude` (the "everyone but me" mix that each
/// conference member hears).
pub fn mix_excluding(
    inputs: &[(&[u8], Law)],
    exclude: usize,
    out_law: Law,
    out: &mut [u8],
) -> usize {
    for (i, o) in out.iter_mut().enumerate() {
        let sum: i32 = inputs
            .iter()
            .enumerate()
            .filter(|(k, _)| *k != exclude)
            .filter_map(|(_, (frame, law))| frame.get(i).map(|&c| law.decode(c) as i32))
            .sum();
        *o = out_law.encode(sum.clamp(i16::MIN as i32, i16::MAX as i32) as i16);
    }
    out.len()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sums_and_saturates() {
        let u = Law::Ulaw;
        let a = [u.encode(1000); 4];
        let b = [u.encode(2000); 4];
        let mut out = [0u8; 4];
        mix_into(&[(&a, u), (&b, u)], u, &mut out);
        let expect = u.encode(u.decode(a[0]) + u.decode(b[0]));
        assert_eq!(out, [expect; 4]);
        let loud = [u.encode(30000); 4];
        mix_into(&[(&loud, u), (&loud, u)], u, &mut out);
        assert_eq!(
            out,
            [u.encode(i16::MAX); 4],
            "saturates instead of wrapping"
        );
        let quiet = [u.encode(-30000); 4];
        mix_into(&[(&quiet, u), (&quiet, u)], u, &mut out);
        assert_eq!(out, [u.encode(i16::MIN); 4]);
    }

    #[test]
    fn mixes_across_laws_and_handles_short_inputs() {
        let a = [Law::Alaw.encode(500); 2];
        let b = [Law::Ulaw.encode(500); 4];
        let mut out = [0u8; 4];
        mix_into(&[(&a, Law::Alaw), (&b, Law::Ulaw)], Law::Alaw, &mut out);
        let both = Law::Alaw.decode(a[0]) + Law::Ulaw.decode(b[0]);
        assert_eq!(
            Law::Alaw.decode(out[0]),
            Law::Alaw.decode(Law::Alaw.encode(both))
        );
        assert_eq!(out[3], Law::Alaw.encode(Law::Ulaw.decode(b[0])));
        // No inputs: silence.
        mix_into(&[], Law::Ulaw, &mut out);
        assert_eq!(out, [Law::Ulaw.silence(); 4]);
    }

    #[test]
    fn excluding_leaves_out_own_voice() {
        let u = Law::Ulaw;
        let me = [u.encode(8000); 2];
        let other = [u.encode(-300); 2];
        let mut out = [0u8; 2];
        mix_excluding(&[(&me, u), (&other, u)], 0, u, &mut out);
        assert_eq!(out, other);
    }
}
