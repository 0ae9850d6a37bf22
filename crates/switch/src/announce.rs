//! Queue announcements ("you are number 3 in the queue, your expected wait is about 4
//! minutes") built from the project's own voice prompts (espeak-ng + sox, see
//! `crates/media/scripts/make-voice-prompts.sh`), numbers spoken digit by digit. Without
//! voice prompts the position is signalled with beeps instead.

use std::path::Path;

use hotline_media::Prompt;
use hotline_media::prompts::beep;

/// The spoken prompts Hotline uses; file names as written by `make-voice-prompts.sh`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicePrompts {
    pub position: Prompt,
    pub in_queue: Prompt,
    pub expected_wait: Prompt,
    pub minutes: Prompt,
    pub digits: [Prompt; 10],
    pub closed: Prompt,
    pub invalid: Prompt,
    pub goodbye: Prompt,
    pub callback: Prompt,
}

impl VoicePrompts {
    /// Loads the prompts from `dir` (`position.wav`, `digit-0.wav` …).
    pub fn load(dir: &Path) -> Result<Self, hotline_media::MediaError> {
        let p = |name: &str| Prompt::load(&dir.join(format!("{name}.wav")));
        let mut digits = Vec::with_capacity(10);
        for d in 0..10 {
            digits.push(p(&format!("digit-{d}"))?);
        }
        Ok(VoicePrompts {
            position: p("position")?,
            in_queue: p("in-queue")?,
            expected_wait: p("expected-wait")?,
            minutes: p("minutes")?,
            digits: digits
                .try_into()
                .map_err(|_| hotline_media::MediaError::Wav("digit prompts"))?,
            closed: p("closed")?,
            invalid: p("invalid")?,
            goodbye: p("goodbye")?,
            callback: p("callback")?,
        })
    }

    fn number(&self, n: u64) -> impl Iterator<Item = Prompt> + '_ {
        n.to_string()
            .into_bytes()
            .into_iter()
            .map(|b| self.digits[(b - b'0') as usize].clone())
    }
}

/// The playlist announcing `position` (1 = next) and the expected wait. The wait is
/// rounded up to whole minutes and left out when under a minute.
pub fn announcement(voice: Option<&VoicePrompts>, position: u32, ewt_secs: u64) -> Vec<Prompt> {
    match voice {
        Some(v) => {
            let mut out = vec![v.position.clone()];
            out.extend(v.number(position as u64));
            out.push(v.in_queue.clone());
            if ewt_secs >= 60 {
                out.push(v.expected_wait.clone());
                out.extend(v.number(ewt_secs.div_ceil(60)));
                out.push(v.minutes.clone());
            }
            out
        }
        // One beep per place ahead, at most nine: a tone cue when no voice is available.
        None => vec![Prompt::from_samples(beep()); position.clamp(1, 9) as usize],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn voice() -> VoicePrompts {
        let p = |v: i16| Prompt::from_samples(vec![v; 4]);
        VoicePrompts {
            position: p(100),
            in_queue: p(101),
            expected_wait: p(102),
            minutes: p(103),
            digits: std::array::from_fn(|d| p(d as i16)),
            closed: p(104),
            invalid: p(105),
            goodbye: p(106),
            callback: p(107),
        }
    }

    fn firsts(v: &[Prompt]) -> Vec<i16> {
        v.iter().map(|p| p.samples()[0]).collect()
    }

    #[test]
    fn position_and_wait_are_spoken_digit_by_digit() {
        let v = voice();
        let a = announcement(Some(&v), 12, 181);
        assert_eq!(firsts(&a), vec![100, 1, 2, 101, 102, 4, 103]);
        let a = announcement(Some(&v), 1, 30);
        assert_eq!(firsts(&a), vec![100, 1, 101], "no wait under a minute");
    }

    #[test]
    fn tones_without_voice() {
        assert_eq!(announcement(None, 3, 600).len(), 3);
        assert_eq!(announcement(None, 40, 600).len(), 9);
    }
}
