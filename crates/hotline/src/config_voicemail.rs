//! `[[voicemail]]`: voicemail boxes a queue's `fallback = { voicemail = "box" }`, a menu
//! choice or a closed branch (`voicemail = "box"`) sends callers to. Kept out of
//! `config.rs` so the section can grow without touching the shared file.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use hotline_acd::Fallback;
use hotline_switch::VoicemailBox;
use serde::Deserialize;
use toml::Spanned;

use crate::config::{Config, ConfigError, locate, span_at};
use crate::prompts::Voice;

/// The spoken greeting of a box without one of its own.
pub const DEFAULT_GREETING: &str =
    "Please leave a message after the tone. Press the hash key when you are done.";

/// One box.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct VoicemailConfig {
    pub name: Spanned<String>,
    /// The greeting: an 8 kHz WAV file …
    pub greeting: Option<PathBuf>,
    /// … or text spoken with espeak-ng. Neither: [`DEFAULT_GREETING`] (a tone when no
    /// voice is available); the beep follows either way.
    pub greeting_say: Option<String>,
    /// Where messages are written (mono 8 kHz WAV).
    #[serde(default = "default_dir")]
    pub dir: PathBuf,
    /// Longest message.
    #[serde(default = "default_max")]
    pub max_secs: Spanned<u64>,
    /// Shorter messages are discarded.
    #[serde(default = "default_min")]
    pub min_secs: u64,
    /// Seconds without voice that end a message (0 = off).
    #[serde(default = "default_silence")]
    pub silence_secs: u64,
    /// The key that ends a message (`""` = none).
    #[serde(default = "default_key")]
    pub end_key: Spanned<String>,
}

fn default_dir() -> PathBuf {
    PathBuf::from("data/voicemail")
}
fn default_max() -> Spanned<u64> {
    Spanned::new(0..0, 120)
}
fn default_min() -> u64 {
    1
}
fn default_silence() -> u64 {
    10
}
fn default_key() -> Spanned<String> {
    Spanned::new(0..0, "#".into())
}

/// Every error of the `[[voicemail]]` boxes and of the references to them.
pub fn validate(cfg: &Config, path: &Path, text: &str) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut names = std::collections::HashSet::new();
    for b in &cfg.voicemail {
        let name = b.name.get_ref();
        let at = b.name.span().start;
        let bad = if name.is_empty() || name.contains(['/', '\\', ' ']) {
            Some(format!("invalid voicemail box name {name:?}"))
        } else if !names.insert(name.as_str()) {
            Some(format!("duplicate voicemail box {name:?}"))
        } else if b.greeting.is_some() && b.greeting_say.is_some() {
            Some(format!(
                "voicemail {name:?}: greeting and greeting_say both set"
            ))
        } else {
            None
        };
        if let Some(m) = bad {
            errs.push(locate(path, text, at, m));
        }
        let max = *b.max_secs.get_ref();
        if max == 0 || max > 3600 || b.min_secs > max {
            errs.push(locate(
                path,
                text,
                b.max_secs.span().start.max(at),
                format!(
                    "voicemail {name:?}: need 0 < max_secs ({max}) <= 3600 and min_secs ({}) <= max_secs",
                    b.min_secs
                ),
            ));
        }
        let key = b.end_key.get_ref();
        let mut chars = key.chars();
        let ok = match (chars.next(), chars.next()) {
            (None, _) => true,
            (Some(c), None) => c.is_ascii_digit() || c == '*' || c == '#',
            _ => false,
        };
        if !ok {
            errs.push(locate(
                path,
                text,
                b.end_key.span().start.max(at),
                format!("voicemail {name:?}: end_key {key:?} is not a key (0-9, *, #) or \"\""),
            ));
        }
    }
    // Queues' fallbacks name boxes too.
    for (i, q) in cfg.acd.iter().flat_map(|a| a.queues.iter()).enumerate() {
        if let Fallback::Voicemail(b) = &q.fallback
            && !names.contains(b.as_str())
        {
            let at = span_at(
                text,
                &["acd", "queue", &i.to_string(), "fallback", "voicemail"],
            );
            errs.push(locate(
                path,
                text,
                at,
                format!(
                    "queue {:?} fallback: voicemail box {b:?} is not defined in [[voicemail]]",
                    q.name
                ),
            ));
        }
    }
    errs
}

/// Whether `name` is a box (for route targets).
pub fn known(cfg: &Config, name: &str) -> bool {
    cfg.voicemail.iter().any(|b| b.name.get_ref() == name)
}

/// The validated boxes for the switch; greetings are loaded or spoken now.
pub fn boxes(cfg: &Config, voice: &Voice) -> anyhow::Result<HashMap<String, Arc<VoicemailBox>>> {
    let mut out = HashMap::new();
    for b in &cfg.voicemail {
        let greeting = match (&b.greeting, &b.greeting_say) {
            (None, None) if voice.speaking() => voice.speak(DEFAULT_GREETING)?,
            (None, None) => hotline_media::Prompt::from_samples(hotline_media::prompts::welcome()),
            (p, s) => voice.prompt(p.as_deref(), s.as_deref())?,
        };
        let name = b.name.get_ref().clone();
        let vm = VoicemailBox {
            name: name.clone(),
            greeting,
            dir: b.dir.clone(),
            max: Duration::from_secs(*b.max_secs.get_ref()),
            min: Duration::from_secs(b.min_secs),
            silence: (b.silence_secs > 0).then(|| Duration::from_secs(b.silence_secs)),
            end_key: b.end_key.get_ref().chars().next(),
        };
        out.insert(name, Arc::new(vm));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[sip]\nudp = [\"127.0.0.1:0\"]\n";

    fn errors(extra: &str) -> Vec<ConfigError> {
        let text = format!("{BASE}{extra}");
        Config::parse(Path::new("t.toml"), &text)
            .err()
            .into_iter()
            .collect()
    }

    #[test]
    fn an_unknown_box_in_a_queue_fallback_is_located() {
        let e = errors(
            "[acd]\n[[acd.queue]]\nname = \"night\"\nmax_wait_secs = 1\n\
             fallback = { voicemail = \"nobody\" }\n",
        );
        assert_eq!(e.len(), 1, "{e:?}");
        assert_eq!((e[0].line, e[0].column), (7, 26), "{}", e[0]);
        assert!(
            e[0].message.contains("\"nobody\" is not defined"),
            "{}",
            e[0]
        );
    }

    #[test]
    fn a_defined_box_is_accepted_with_defaults() {
        let text = format!(
            "{BASE}[acd]\n[[acd.queue]]\nname = \"night\"\nfallback = {{ voicemail = \"night-box\" }}\n\
             [[voicemail]]\nname = \"night-box\"\n"
        );
        let cfg = Config::parse(Path::new("t.toml"), &text).unwrap();
        let b = &cfg.voicemail[0];
        assert_eq!(*b.max_secs.get_ref(), 120);
        assert_eq!(b.silence_secs, 10);
        assert_eq!(b.end_key.get_ref(), "#");
    }

    #[test]
    fn bad_boxes_are_located() {
        let e = errors("[[voicemail]]\nname = \"a\"\nmax_secs = 0\n");
        assert_eq!((e[0].line, e[0].column), (5, 12), "{}", e[0]);
        let e = errors("[[voicemail]]\nname = \"a\"\nend_key = \"x\"\n");
        assert_eq!((e[0].line, e[0].column), (5, 11), "{}", e[0]);
        let e = errors("[[voicemail]]\nname = \"a\"\n[[voicemail]]\nname = \"a\"\n");
        assert!(e[0].message.contains("duplicate"), "{}", e[0]);
        assert_eq!(e[0].line, 6);
    }

    #[test]
    fn a_menu_choice_may_go_to_a_box_that_exists() {
        let e =
            errors("[[menus]]\nname = \"m\"\nsay = \"hi\"\nchoices.1 = { voicemail = \"gone\" }\n");
        assert!(e[0].message.contains("voicemail box \"gone\""), "{}", e[0]);
        assert_eq!(e[0].line, 6);
    }
}
