//! The spoken demo prompts: `scripts/make-voice-prompts.sh` installs espeak-ng + sox when
//! missing and renders them; every file must load as a playable prompt. No silent skip:
//! if the tools cannot be installed, this fails.

use std::process::Command;
use std::time::Duration;

use hotline_media::player::Prompt;
use hotline_media::wav::{WavEncoding, read_wav};

#[test]
fn voice_prompts_are_made_and_play() {
    let out = std::env::temp_dir().join(format!("hotline-voice-{}", std::process::id()));
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/make-voice-prompts.sh");
    let status = Command::new("bash")
        .arg(script)
        .arg(&out)
        .status()
        .expect("run script");
    assert!(status.success(), "make-voice-prompts.sh failed");
    let mut count = 0;
    for entry in std::fs::read_dir(&out).unwrap() {
        let path = entry.unwrap().path();
        let wav = read_wav(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
        assert_eq!(wav.encoding, WavEncoding::Ulaw, "{}", path.display());
        let p = Prompt::load(&path).unwrap();
        assert!(
            p.duration() > Duration::from_millis(200),
            "{} too short",
            path.display()
        );
        // Speech, not silence.
        assert!(
            p.samples().iter().any(|s| s.unsigned_abs() > 2000),
            "{} is silent",
            path.display()
        );
        count += 1;
    }
    assert_eq!(count, 20);
    let _ = std::fs::remove_dir_all(&out);
}
