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
    mix_selected(inputs, |k| k != exclude, out_law, out)
}

/// Mixes into `out` the inputs whose index `pick` accepts (one row of a [`Hears`]).
pub fn mix_selected(
    inputs: &[(&[u8], Law)],
    pick: impl Fn(usize) -> bool,
    out_law: Law,
    out: &mut [u8],
) -> usize {
    for (i, o) in out.iter_mut().enumerate() {
        let sum: i32 = inputs
            .iter()
            .enumerate()
            .filter(|(k, _)| pick(*k))
            .filter_map(|(_, (frame, law))| frame.get(i).map(|&c| law.decode(c) as i32))
            .sum();
        *o = out_law.encode(sum.clamp(i16::MIN as i32, i16::MAX as i32) as i16);
    }
    out.len()
}

/// How a supervisor takes part in an agent's call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SuperviseMode {
    /// Hears caller and agent; nobody hears the supervisor.
    Monitor,
    /// Hears caller and agent; only the agent hears the supervisor (coaching).
    Whisper,
    /// All three hear each other.
    Barge,
}

impl SuperviseMode {
    /// The name used in CTI and the queue log (`monitor`, `whisper`, `barge`).
    pub fn as_str(self) -> &'static str {
        match self {
            SuperviseMode::Monitor => "monitor",
            SuperviseMode::Whisper => "whisper",
            SuperviseMode::Barge => "barge",
        }
    }

    /// Parses [`SuperviseMode::as_str`]'s names.
    pub fn parse(s: &str) -> Option<SuperviseMode> {
        match s {
            "monitor" => Some(SuperviseMode::Monitor),
            "whisper" => Some(SuperviseMode::Whisper),
            "barge" => Some(SuperviseMode::Barge),
            _ => None,
        }
    }
}

/// Who hears whom among the three parties of a session: 0 the caller (leg A), 1 the
/// agent (leg B), 2 the third party (a conference member or a supervisor).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hears([[bool; 3]; 3]);

impl Hears {
    /// A conference: everyone hears the other two.
    pub const CONFERENCE: Hears = Hears([
        [false, true, true],
        [true, false, true],
        [true, true, false],
    ]);

    /// A conference the caller (party 0) left: agent and third party hear each other;
    /// nobody hears or is sent anything for the caller.
    pub const CALLER_LEFT: Hears = Hears([
        [false, false, false],
        [false, false, true],
        [false, true, false],
    ]);

    /// A supervisor (party 2) on the caller–agent call in `mode`.
    pub fn supervise(mode: SuperviseMode) -> Hears {
        let (agent_hears_sup, caller_hears_sup) = match mode {
            SuperviseMode::Monitor => (false, false),
            SuperviseMode::Whisper => (true, false),
            SuperviseMode::Barge => (true, true),
        };
        Hears([
            [false, true, caller_hears_sup],
            [true, false, agent_hears_sup],
            [true, true, false],
        ])
    }

    /// Whether `listener` hears `speaker`.
    pub fn hears(&self, listener: usize, speaker: usize) -> bool {
        self.0
            .get(listener)
            .and_then(|r| r.get(speaker))
            .copied()
            .unwrap_or(false)
    }

    /// Whether caller or agent (`listener` 0 or 1) hears only the other one: its audio is
    /// then relayed packet by packet as without a third party (no mixing delay, same
    /// stream), which keeps a monitored call exactly as it was.
    pub fn relayed(&self, listener: usize) -> bool {
        listener < 2 && (0..3).all(|k| self.hears(listener, k) == (k == 1 - listener))
    }

    /// Whether anyone who gets the mix (not relayed) hears `speaker`.
    pub fn mixed_from(&self, speaker: usize) -> bool {
        (0..3).any(|j| !self.relayed(j) && self.hears(j, speaker))
    }
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

    /// The supervisor's matrix: monitor changes nothing for caller and agent (both
    /// relayed), whisper reaches the agent only, barge is a conference.
    #[test]
    fn supervise_modes_say_who_hears_the_supervisor() {
        let m = Hears::supervise(SuperviseMode::Monitor);
        assert!(m.relayed(0) && m.relayed(1));
        assert!(m.hears(2, 0) && m.hears(2, 1));
        assert!(!m.hears(0, 2) && !m.hears(1, 2));
        assert!(m.mixed_from(0) && m.mixed_from(1) && !m.mixed_from(2));
        let w = Hears::supervise(SuperviseMode::Whisper);
        assert!(w.relayed(0) && !w.relayed(1));
        assert!(w.hears(1, 2) && !w.hears(0, 2) && w.hears(1, 0));
        assert_eq!(Hears::supervise(SuperviseMode::Barge), Hears::CONFERENCE);
        assert!(!Hears::CONFERENCE.relayed(0) && !Hears::CONFERENCE.relayed(2));
        // The caller left a conference: agent and third get the mix of each other only.
        let left = Hears::CALLER_LEFT;
        assert!(!left.relayed(1) && left.hears(1, 2) && left.hears(2, 1));
        assert!(!left.mixed_from(0) && !left.hears(1, 0) && !left.hears(0, 1));
        for mode in [
            SuperviseMode::Monitor,
            SuperviseMode::Whisper,
            SuperviseMode::Barge,
        ] {
            assert_eq!(SuperviseMode::parse(mode.as_str()), Some(mode));
        }
        assert_eq!(SuperviseMode::parse("listen"), None);
    }

    #[test]
    fn selected_mixes_one_row() {
        let u = Law::Ulaw;
        let (a, b, c) = ([u.encode(100); 2], [u.encode(200); 2], [u.encode(400); 2]);
        let w = Hears::supervise(SuperviseMode::Whisper);
        let mut out = [0u8; 2];
        mix_selected(&[(&a, u), (&b, u), (&c, u)], |k| w.hears(1, k), u, &mut out);
        let expect = u.encode(u.decode(a[0]) + u.decode(c[0]));
        assert_eq!(out, [expect; 2], "the agent hears caller + supervisor");
    }
}
