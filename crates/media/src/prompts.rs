//! Demo prompts made by the project, not downloaded: synthetic tones written as WAV in
//! each supported encoding, so a fresh checkout can play music on hold and
//! announcements without any external asset.

use std::f64::consts::PI;
use std::path::{Path, PathBuf};

use crate::error::Result;
use crate::wav::{WavEncoding, write_wav};

fn tone(freqs: &[f64], ms: u32, amplitude: f64) -> Vec<i16> {
    let n = ms as usize * 8;
    (0..n)
        .map(|i| {
            let t = i as f64 / 8000.0;
            // 10 ms fade in/out so notes do not click.
            let edge = (i.min(n - 1 - i) as f64 / 80.0).min(1.0);
            let v: f64 =
                freqs.iter().map(|f| (2.0 * PI * f * t).sin()).sum::<f64>() / freqs.len() as f64;
            (v * amplitude * edge * 32767.0) as i16
        })
        .collect()
}

fn silence(ms: u32) -> Vec<i16> {
    vec![0; ms as usize * 8]
}

/// A gentle arpeggio loop (C major, A minor, F major, G major), about 8 s.
pub fn hold_music() -> Vec<i16> {
    let chords: [[f64; 3]; 4] = [
        [261.63, 329.63, 392.00],
        [220.00, 261.63, 329.63],
        [174.61, 220.00, 261.63],
        [196.00, 246.94, 293.66],
    ];
    let mut out = Vec::new();
    for chord in chords {
        for _ in 0..2 {
            for f in chord {
                out.extend(tone(&[f, f * 2.0], 250, 0.25));
            }
            out.extend(tone(&chord, 250, 0.2));
        }
    }
    out
}

/// A three-note "welcome" chime.
pub fn welcome() -> Vec<i16> {
    let mut out = tone(&[523.25], 200, 0.4);
    out.extend(tone(&[659.25], 200, 0.4));
    out.extend(tone(&[783.99], 400, 0.4));
    out.extend(silence(200));
    out
}

/// A short beep (e.g. recording notice or whisper cue).
pub fn beep() -> Vec<i16> {
    let mut out = tone(&[1000.0], 150, 0.4);
    out.extend(silence(100));
    out
}

/// One cycle of North American ringback (440 + 480 Hz, 2 s on, 4 s off), for early
/// media while an agent's phone rings; loop it with a [`crate::player::Player`].
pub fn ringback() -> Vec<i16> {
    let mut out = tone(&[440.0, 480.0], 2000, 0.3);
    out.extend(silence(4000));
    out
}

/// Writes the demo prompts into `dir`: `moh.wav` (16-bit PCM), `welcome.wav`
/// (µ-law), `beep.wav` (A-law) and `ringback.wav` (µ-law). Returns the paths written.
pub fn write_demo_prompts(dir: &Path) -> Result<Vec<PathBuf>> {
    std::fs::create_dir_all(dir)?;
    let files = [
        ("moh.wav", WavEncoding::Pcm16, hold_music()),
        ("welcome.wav", WavEncoding::Ulaw, welcome()),
        ("beep.wav", WavEncoding::Alaw, beep()),
        ("ringback.wav", WavEncoding::Ulaw, ringback()),
    ];
    let mut paths = Vec::new();
    for (name, enc, samples) in files {
        let p = dir.join(name);
        write_wav(&p, enc, &samples)?;
        paths.push(p);
    }
    Ok(paths)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::player::Prompt;

    #[test]
    fn demo_prompts_are_written_and_load_back() {
        let dir = std::env::temp_dir().join(format!("hotline-prompts-{}", std::process::id()));
        let paths = write_demo_prompts(&dir).unwrap();
        assert_eq!(paths.len(), 4);
        let rb = Prompt::load(&paths[3]).unwrap();
        assert_eq!(rb.duration(), std::time::Duration::from_secs(6));
        // Tone for the first two seconds, then silence.
        assert!(
            rb.samples()[..16_000]
                .iter()
                .any(|s| s.unsigned_abs() > 5000)
        );
        assert!(rb.samples()[16_000..].iter().all(|&s| s == 0));
        let moh = Prompt::load(&paths[0]).unwrap();
        assert_eq!(moh.duration(), std::time::Duration::from_secs(8));
        assert_eq!(moh.samples(), hold_music().as_slice());
        let welcome = Prompt::load(&paths[1]).unwrap();
        assert_eq!(welcome.duration(), std::time::Duration::from_millis(1000));
        // Not silence: the chime reaches a clearly audible level.
        assert!(welcome.samples().iter().any(|s| s.unsigned_abs() > 8000));
        assert_eq!(
            Prompt::load(&paths[2]).unwrap().samples().len(),
            beep().len()
        );
    }
}
