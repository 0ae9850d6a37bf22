//! Prompts and music on hold: decoded audio shared between calls, and a sans-IO
//! player that paces frames every ptime (`poll(now)` → frame, `next_deadline`).

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{MediaError, Result};
use crate::g711::Law;
use crate::wav;

/// Decoded 8 kHz mono audio; cheap to clone, so one music file serves every call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Prompt {
    samples: Arc<[i16]>,
}

impl Prompt {
    /// Wraps samples.
    pub fn from_samples(samples: Vec<i16>) -> Self {
        Prompt {
            samples: samples.into(),
        }
    }

    /// Loads a WAV file (see [`wav::parse_wav`] for accepted formats).
    pub fn load(path: &Path) -> Result<Self> {
        let w = wav::read_wav(path)?;
        if w.samples.is_empty() {
            return Err(MediaError::Wav("no audio in file"));
        }
        Ok(Self::from_samples(w.samples))
    }

    /// Length.
    pub fn duration(&self) -> Duration {
        Duration::from_micros(self.samples.len() as u64 * 125)
    }

    /// The samples.
    pub fn samples(&self) -> &[i16] {
        &self.samples
    }
}

/// Most samples in one frame (60 ms).
pub const MAX_FRAME_SAMPLES: usize = 480;
/// If the caller falls this far behind schedule (a late timer, or frames held back
/// while DTMF was sent), skip ahead instead of sending a burst of frames.
const MAX_LAG: Duration = Duration::from_millis(60);

/// Plays a playlist of prompts, optionally looping, as encoded G.711 frames.
#[derive(Debug, Clone)]
pub struct Player {
    playlist: Vec<Prompt>,
    looping: bool,
    item: usize,
    pos: usize,
    next_at: Instant,
    ptime: Duration,
    frame_samples: usize,
    law: Law,
    buf: [u8; MAX_FRAME_SAMPLES],
    finished: bool,
}

impl Player {
    /// A player for `playlist` starting at `start`, 20 ms frames in µ-law until
    /// [`Player::set_format`] says otherwise. An empty playlist finishes at once.
    pub fn new(playlist: Vec<Prompt>, looping: bool, start: Instant) -> Self {
        let finished = playlist.iter().all(|p| p.samples.is_empty());
        Player {
            playlist,
            looping,
            item: 0,
            pos: 0,
            next_at: start,
            ptime: Duration::from_millis(20),
            frame_samples: 160,
            law: Law::Ulaw,
            buf: [0; MAX_FRAME_SAMPLES],
            finished,
        }
    }

    /// Sets the leg's law and packetisation time (clamped to 10-60 ms).
    pub fn set_format(&mut self, law: Law, ptime_ms: u32) {
        let ms = ptime_ms.clamp(10, 60);
        self.law = law;
        self.ptime = Duration::from_millis(ms as u64);
        self.frame_samples = ms as usize * 8;
    }

    /// Samples per frame (the RTP timestamp advance).
    pub fn frame_samples(&self) -> usize {
        self.frame_samples
    }

    /// True once a non-looping playlist has been played out.
    pub fn is_finished(&self) -> bool {
        self.finished
    }

    /// When the next frame is due.
    pub fn next_deadline(&self) -> Option<Instant> {
        (!self.finished).then_some(self.next_at)
    }

    fn next_sample(&mut self) -> Option<i16> {
        loop {
            let p = self.playlist.get(self.item)?;
            if let Some(&s) = p.samples.get(self.pos) {
                self.pos += 1;
                return Some(s);
            }
            self.pos = 0;
            self.item += 1;
            if self.item >= self.playlist.len() {
                if !self.looping {
                    return None;
                }
                self.item = 0;
            }
        }
    }

    /// Restarts pacing at `now` after the player was paused (e.g. music interrupted by
    /// an announcement); playback continues where it stopped.
    pub fn resume(&mut self, now: Instant) {
        self.next_at = now;
    }

    /// The frame due at `now`, if any. The last frame of a prompt is padded with
    /// silence so every frame has the same length.
    pub fn poll(&mut self, now: Instant) -> Option<&[u8]> {
        if self.finished || now < self.next_at {
            return None;
        }
        if now.saturating_duration_since(self.next_at) > MAX_LAG {
            self.next_at = now;
        }
        self.next_at += self.ptime;
        let mut got = 0;
        for i in 0..self.frame_samples {
            match self.next_sample() {
                Some(s) => {
                    self.buf[i] = self.law.encode(s);
                    got += 1;
                }
                None => self.buf[i] = self.law.silence(),
            }
        }
        if got < self.frame_samples {
            self.finished = true;
            if got == 0 {
                return None;
            }
        }
        Some(&self.buf[..self.frame_samples])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_are_paced_and_the_prompt_ends_padded() {
        let t0 = Instant::now();
        let samples: Vec<i16> = (0..400).map(|i| i as i16 * 10).collect();
        let mut p = Player::new(vec![Prompt::from_samples(samples.clone())], false, t0);
        let f = p.poll(t0).unwrap().to_vec();
        assert_eq!(f.len(), 160);
        assert_eq!(f[5], Law::Ulaw.encode(50));
        assert!(
            p.poll(t0 + Duration::from_millis(19)).is_none(),
            "not before 20 ms"
        );
        assert_eq!(p.next_deadline(), Some(t0 + Duration::from_millis(20)));
        assert!(p.poll(t0 + Duration::from_millis(20)).is_some());
        let last = p.poll(t0 + Duration::from_millis(40)).unwrap().to_vec();
        assert_eq!(last[79], Law::Ulaw.encode(3990));
        assert!(last[80..].iter().all(|&b| b == Law::Ulaw.silence()));
        assert!(p.is_finished());
        assert_eq!(p.next_deadline(), None);
        assert!(p.poll(t0 + Duration::from_secs(1)).is_none());
    }

    #[test]
    fn looping_playlist_wraps_across_items() {
        let t0 = Instant::now();
        let a = Prompt::from_samples(vec![1000; 100]);
        let b = Prompt::from_samples(vec![-1000; 100]);
        let mut p = Player::new(vec![a, b], true, t0);
        p.set_format(Law::Alaw, 20);
        let mut t = t0;
        let mut decoded = Vec::new();
        for _ in 0..5 {
            decoded.extend(p.poll(t).unwrap().iter().map(|&c| Law::Alaw.decode(c)));
            t += Duration::from_millis(20);
        }
        assert!(!p.is_finished());
        // 800 samples = 4 full cycles of 200.
        for (i, s) in decoded.iter().enumerate() {
            let expect_pos = i % 200 < 100;
            assert_eq!(*s > 0, expect_pos, "sample {i}");
        }
    }

    #[test]
    fn falls_back_into_schedule_instead_of_bursting() {
        let t0 = Instant::now();
        let mut p = Player::new(vec![Prompt::from_samples(vec![0; 80_000])], false, t0);
        p.set_format(Law::Ulaw, 30);
        assert_eq!(p.frame_samples(), 240);
        p.poll(t0).unwrap();
        let late = t0 + Duration::from_secs(1);
        assert!(p.poll(late).is_some());
        assert!(p.poll(late).is_none(), "one frame per ptime even when late");
        assert_eq!(p.next_deadline(), Some(late + Duration::from_millis(30)));
    }

    #[test]
    fn resume_continues_where_it_stopped() {
        let t0 = Instant::now();
        let samples: Vec<i16> = (0..800).map(|i| i as i16 * 8).collect();
        let mut p = Player::new(vec![Prompt::from_samples(samples)], false, t0);
        p.poll(t0).unwrap();
        let later = t0 + Duration::from_secs(30);
        p.resume(later);
        assert_eq!(p.next_deadline(), Some(later));
        let f = p.poll(later).unwrap();
        assert_eq!(f[0], Law::Ulaw.encode(160 * 8));
    }

    #[test]
    fn empty_playlist_is_finished() {
        let mut p = Player::new(vec![], true, Instant::now());
        assert!(p.is_finished());
        assert!(p.poll(Instant::now()).is_none());
    }
}
