//! Prompts spoken from text: the project makes its own voice with espeak-ng + sox (as
//! `crates/media/scripts/make-voice-prompts.sh` does), cached as 8 kHz µ-law WAVs keyed
//! by the text, so only the first start pays. Without those tools (or with
//! `[media] voice = false`) text prompts become a chime and announcements tones.

use std::path::{Path, PathBuf};
use std::process::Command;

use anyhow::{Context, bail};
use hotline_media::Prompt;
use hotline_switch::announce::VoicePrompts;

use crate::config::MediaConfig;

/// Makes prompts from WAV files or text.
#[derive(Debug)]
pub struct Voice {
    cache: PathBuf,
    /// espeak-ng and sox are usable and voice is wanted.
    speaking: bool,
}

fn have(tool: &str) -> bool {
    Command::new(tool)
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success())
}

/// FNV-1a: a file name for a text that stays the same across builds.
fn fnv(text: &str) -> u64 {
    text.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}

impl Voice {
    pub fn new(media: &MediaConfig) -> Self {
        let speaking = media.voice && have("espeak-ng") && have("sox");
        if media.voice && !speaking {
            tracing::warn!("espeak-ng or sox not found: spoken prompts become tones");
        }
        Voice {
            cache: media.prompt_cache.clone(),
            speaking,
        }
    }

    /// Whether text is spoken (else tones).
    pub fn speaking(&self) -> bool {
        self.speaking
    }

    /// A prompt from a WAV file or from text.
    pub fn prompt(&self, path: Option<&Path>, say: Option<&str>) -> anyhow::Result<Prompt> {
        match (path, say) {
            (Some(p), _) => {
                Prompt::load(p).with_context(|| format!("loading prompt {}", p.display()))
            }
            (None, Some(text)) if self.speaking => self.speak(text),
            _ => Ok(Prompt::from_samples(hotline_media::prompts::welcome())),
        }
    }

    /// `text` spoken, from the cache or made now.
    pub fn speak(&self, text: &str) -> anyhow::Result<Prompt> {
        let out = self.cache.join(format!("say-{:016x}.wav", fnv(text)));
        if let Ok(p) = Prompt::load(&out) {
            return Ok(p);
        }
        std::fs::create_dir_all(&self.cache)
            .with_context(|| format!("creating {}", self.cache.display()))?;
        // Unique temporaries then a rename: several Hotlines may share the cache.
        let unique = format!("{}-{:?}", std::process::id(), std::thread::current().id());
        let unique: String = unique.chars().filter(|c| c.is_alphanumeric()).collect();
        let raw = self
            .cache
            .join(format!("tmp-{unique}-{:016x}.raw.wav", fnv(text)));
        let tmp = self
            .cache
            .join(format!("tmp-{unique}-{:016x}.wav", fnv(text)));
        let st = Command::new("espeak-ng")
            .args(["-v", "en-us", "-s", "150", "-w"])
            .arg(&raw)
            .arg(text)
            .output()
            .context("running espeak-ng")?;
        if !st.status.success() {
            bail!("espeak-ng failed: {}", String::from_utf8_lossy(&st.stderr));
        }
        let st = Command::new("sox")
            .arg(&raw)
            .args(["-r", "8000", "-c", "1", "-e", "u-law"])
            .arg(&tmp)
            .output()
            .context("running sox")?;
        let _ = std::fs::remove_file(&raw);
        if !st.status.success() {
            bail!("sox failed: {}", String::from_utf8_lossy(&st.stderr));
        }
        std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))?;
        Prompt::load(&out).with_context(|| format!("loading {}", out.display()))
    }

    /// The announcement voice, or `None` (tones) when text cannot be spoken.
    pub fn announcements(&self) -> anyhow::Result<Option<VoicePrompts>> {
        if !self.speaking {
            return Ok(None);
        }
        let s = |t: &str| self.speak(t);
        let mut digits = Vec::with_capacity(10);
        for d in 0..10 {
            digits.push(s(&d.to_string())?);
        }
        Ok(Some(VoicePrompts {
            position: s("You are number")?,
            in_queue: s("in the queue.")?,
            expected_wait: s("Your expected wait is about")?,
            minutes: s("minutes.")?,
            digits: digits
                .try_into()
                .map_err(|_| anyhow::anyhow!("digit prompts"))?,
            closed: s("We are closed right now. Please call again during business hours.")?,
            invalid: s("Sorry, that is not a valid choice.")?,
            goodbye: s("Thank you for calling. Goodbye.")?,
            callback: s("To keep your place and be called back, press star.")?,
        }))
    }
}
