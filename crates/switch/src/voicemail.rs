//! Voicemail boxes: the greeting, a beep, then the caller's message recorded (mono 8 kHz
//! WAV) until they hang up, press the end key, reach the box's limit or fall silent.
//!
//! [`Run`] is the sans-IO core the call task drives: inputs with the time they happened,
//! an [`Action`] back, and [`Run::deadline`] for the next time it must be asked again.
//! Silence is measured where the audio is (the recording's writer, see
//! `hotline_media::recorder::VoiceActivity`); the deadline is the first moment the
//! silence could be long enough, when the call task reads the last voice again.

use std::path::PathBuf;
use std::time::{Duration, Instant};

use hotline_media::Prompt;

/// A voicemail box (`[[voicemail]]`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoicemailBox {
    pub name: String,
    /// Played before the beep ("leave a message after the tone").
    pub greeting: Prompt,
    /// Where its messages are written.
    pub dir: PathBuf,
    /// Longest message; the recording stops there (with a goodbye).
    pub max: Duration,
    /// Shorter messages are discarded (a caller who hung up at the beep left nothing).
    pub min: Duration,
    /// This long without voice ends the message; `None`: off.
    pub silence: Option<Duration>,
    /// The key that ends the message (`#` by default); `None`: none.
    pub end_key: Option<char>,
}

/// How a message ended (stored with it, as `as_str`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum EndedBy {
    /// The caller hung up.
    Hangup,
    /// The caller pressed the end key.
    Key,
    /// The box's `max_secs` passed.
    Limit,
    /// `silence_secs` without voice.
    Silence,
}

impl EndedBy {
    pub fn as_str(self) -> &'static str {
        match self {
            EndedBy::Hangup => "hangup",
            EndedBy::Key => "key",
            EndedBy::Limit => "limit",
            EndedBy::Silence => "silence",
        }
    }
}

/// What happened to the caller in the box.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Input {
    /// The greeting and the beep have played.
    GreetingPlayed,
    Key(char),
    /// A deadline passed; `last_voice` is the recording's (time from its start).
    Tick {
        last_voice: Option<Duration>,
    },
    Hangup,
}

/// What the call task does next.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Action {
    Nothing,
    /// Start recording the caller now.
    Record,
    /// Stop. `keep`: the recording is a message (long enough); `recorded`: a recording
    /// was running (else nothing was recorded: the caller left during the greeting).
    End {
        by: EndedBy,
        recorded: bool,
        keep: bool,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Stage {
    Greeting,
    Recording { since: Instant },
    Done,
}

/// One caller in one box (sans-IO).
#[derive(Debug)]
pub(crate) struct Run {
    stage: Stage,
    max: Duration,
    min: Duration,
    silence: Option<Duration>,
    end_key: Option<char>,
    /// The last voice known (from the recording's start).
    last_voice: Option<Duration>,
}

impl Run {
    pub(crate) fn new(b: &VoicemailBox) -> Self {
        Run {
            stage: Stage::Greeting,
            max: b.max,
            min: b.min,
            silence: b.silence,
            end_key: b.end_key,
            last_voice: None,
        }
    }

    /// When the recording started (none during the greeting).
    pub(crate) fn recording_since(&self) -> Option<Instant> {
        match self.stage {
            Stage::Recording { since } => Some(since),
            _ => None,
        }
    }

    pub(crate) fn handle(&mut self, input: Input, now: Instant) -> Action {
        match (self.stage, input) {
            (Stage::Done, _) => Action::Nothing,
            (Stage::Greeting, Input::GreetingPlayed) => {
                self.stage = Stage::Recording { since: now };
                Action::Record
            }
            (Stage::Greeting, Input::Hangup) => self.end(EndedBy::Hangup, now),
            // Keys during the greeting skip nothing (no early beep): they are ignored.
            (Stage::Greeting, _) => Action::Nothing,
            (Stage::Recording { .. }, Input::GreetingPlayed) => Action::Nothing,
            (Stage::Recording { .. }, Input::Hangup) => self.end(EndedBy::Hangup, now),
            (Stage::Recording { .. }, Input::Key(k)) => {
                if self.end_key.is_some_and(|e| e.eq_ignore_ascii_case(&k)) {
                    self.end(EndedBy::Key, now)
                } else {
                    Action::Nothing
                }
            }
            (Stage::Recording { since }, Input::Tick { last_voice }) => {
                self.last_voice = last_voice.or(self.last_voice);
                if now >= since + self.max {
                    return self.end(EndedBy::Limit, now);
                }
                match self.silence_until(since) {
                    Some(t) if now >= t => self.end(EndedBy::Silence, now),
                    _ => Action::Nothing,
                }
            }
        }
    }

    /// When the call task must tick next (none outside the recording).
    pub(crate) fn deadline(&self) -> Option<Instant> {
        let Stage::Recording { since } = self.stage else {
            return None;
        };
        let limit = since + self.max;
        Some(match self.silence_until(since) {
            Some(s) => s.min(limit),
            None => limit,
        })
    }

    /// The silence ends the message at this time unless the caller speaks meanwhile.
    fn silence_until(&self, since: Instant) -> Option<Instant> {
        let s = self.silence?;
        Some(since + self.last_voice.unwrap_or_default() + s)
    }

    fn end(&mut self, by: EndedBy, now: Instant) -> Action {
        let recorded = self.recording_since();
        self.stage = Stage::Done;
        Action::End {
            by,
            recorded: recorded.is_some(),
            keep: recorded.is_some_and(|since| now.saturating_duration_since(since) >= self.min),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vm_box(silence: Option<u64>) -> VoicemailBox {
        VoicemailBox {
            name: "support".into(),
            greeting: Prompt::from_samples(vec![0; 160]),
            dir: PathBuf::from("/tmp"),
            max: Duration::from_secs(120),
            min: Duration::from_secs(1),
            silence: silence.map(Duration::from_secs),
            end_key: Some('#'),
        }
    }

    const S: Duration = Duration::from_secs(1);

    #[test]
    fn greeting_then_recording_until_the_end_key() {
        let t0 = Instant::now();
        let mut r = Run::new(&vm_box(None));
        assert_eq!(r.deadline(), None, "no timer during the greeting");
        assert_eq!(r.handle(Input::Key('#'), t0), Action::Nothing);
        assert_eq!(r.handle(Input::GreetingPlayed, t0 + S), Action::Record);
        assert_eq!(r.deadline(), Some(t0 + S + 120 * S));
        assert_eq!(r.handle(Input::Key('5'), t0 + 2 * S), Action::Nothing);
        assert_eq!(
            r.handle(Input::Key('#'), t0 + 4 * S),
            Action::End {
                by: EndedBy::Key,
                recorded: true,
                keep: true
            }
        );
        assert_eq!(r.handle(Input::Hangup, t0 + 5 * S), Action::Nothing);
        assert_eq!(r.deadline(), None);
    }

    #[test]
    fn hangup_during_the_greeting_records_nothing() {
        let t0 = Instant::now();
        let mut r = Run::new(&vm_box(None));
        assert_eq!(
            r.handle(Input::Hangup, t0 + S),
            Action::End {
                by: EndedBy::Hangup,
                recorded: false,
                keep: false
            }
        );
    }

    #[test]
    fn a_message_shorter_than_min_is_not_kept() {
        let t0 = Instant::now();
        let mut r = Run::new(&vm_box(None));
        r.handle(Input::GreetingPlayed, t0);
        assert_eq!(
            r.handle(Input::Hangup, t0 + Duration::from_millis(400)),
            Action::End {
                by: EndedBy::Hangup,
                recorded: true,
                keep: false
            }
        );
    }

    #[test]
    fn the_limit_ends_the_message() {
        let t0 = Instant::now();
        let mut b = vm_box(None);
        b.max = 3 * S;
        let mut r = Run::new(&b);
        r.handle(Input::GreetingPlayed, t0);
        let tick = Input::Tick { last_voice: None };
        assert_eq!(r.handle(tick, t0 + 2 * S), Action::Nothing, "early tick");
        assert_eq!(
            r.handle(tick, t0 + 3 * S),
            Action::End {
                by: EndedBy::Limit,
                recorded: true,
                keep: true
            }
        );
    }

    #[test]
    fn silence_after_the_last_voice_ends_the_message() {
        let t0 = Instant::now();
        let mut r = Run::new(&vm_box(Some(5)));
        r.handle(Input::GreetingPlayed, t0);
        // Nobody spoke yet: the silence counts from the beep.
        assert_eq!(r.deadline(), Some(t0 + 5 * S));
        // At that deadline the caller has spoken until 4 s: the silence is not long yet.
        let spoke = Input::Tick {
            last_voice: Some(4 * S),
        };
        assert_eq!(r.handle(spoke, t0 + 5 * S), Action::Nothing);
        assert_eq!(r.deadline(), Some(t0 + 9 * S));
        // A tick without news keeps the last voice known.
        let quiet = Input::Tick { last_voice: None };
        assert_eq!(r.handle(quiet, t0 + 8 * S), Action::Nothing);
        assert_eq!(
            r.handle(spoke, t0 + 9 * S),
            Action::End {
                by: EndedBy::Silence,
                recorded: true,
                keep: true
            }
        );
    }

    #[test]
    fn no_end_key_means_keys_are_ignored() {
        let t0 = Instant::now();
        let mut b = vm_box(None);
        b.end_key = None;
        let mut r = Run::new(&b);
        r.handle(Input::GreetingPlayed, t0);
        assert_eq!(r.handle(Input::Key('#'), t0 + 2 * S), Action::Nothing);
    }
}
