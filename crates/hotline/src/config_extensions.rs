//! `[[extensions]]`: how a SIP user Hotline calls by itself (a number routed to the
//! extension, a blind or attended transfer's target, the transferring agent called back)
//! is rung, and where a call they do not answer goes. Kept out of `config.rs` so the
//! section can grow without touching the shared file.
//!
//! ```toml
//! [[extensions]]
//! user = "1003"
//! ring_timeout_secs = 20            # default 30
//! no_answer = { voicemail = "1003" } # refused, unreachable or rung out
//! ```

use std::collections::HashMap;
use std::path::Path;
use std::time::Duration;

use hotline_switch::{DEFAULT_RING_TIMEOUT_SECS, ExtensionOptions};
use serde::Deserialize;
use toml::Spanned;

use crate::config::{Config, ConfigError, RouteTarget, locate};
use crate::prompts::Voice;

/// One user's entry.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExtensionConfig {
    /// The SIP user (`[[users]] name`).
    pub user: Spanned<String>,
    /// Seconds it rings before Hotline cancels the call to it.
    #[serde(default = "default_ring")]
    pub ring_timeout_secs: Spanned<u64>,
    /// Where a call it refuses, cannot take or lets ring out goes (a route target:
    /// `voicemail`, `queue`, `extension`, `menu`, a message or `hangup = true`).
    pub no_answer: Option<Spanned<RouteTarget>>,
}

fn default_ring() -> Spanned<u64> {
    Spanned::new(0..0, DEFAULT_RING_TIMEOUT_SECS)
}

/// Every error of the `[[extensions]]` entries.
pub fn validate(
    cfg: &Config,
    users: &std::collections::HashSet<&String>,
    path: &Path,
    text: &str,
) -> Vec<ConfigError> {
    let mut errs = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for e in &cfg.extensions {
        let user = e.user.get_ref();
        let at = e.user.span().start;
        if !users.contains(user) {
            errs.push(locate(
                path,
                text,
                at,
                format!("extension {user:?} is not a user"),
            ));
        } else if !seen.insert(user.as_str()) {
            errs.push(locate(
                path,
                text,
                at,
                format!("duplicate extension {user:?}"),
            ));
        }
        let ring = *e.ring_timeout_secs.get_ref();
        if !(1..=600).contains(&ring) {
            errs.push(locate(
                path,
                text,
                e.ring_timeout_secs.span().start.max(at),
                format!("extension {user:?}: ring_timeout_secs ({ring}) must be 1 to 600"),
            ));
        }
        if let Some(t) = &e.no_answer
            && let Err(m) = cfg.check_target(t.get_ref(), users)
        {
            errs.push(locate(
                path,
                text,
                t.span().start,
                format!("extension {user:?} no_answer: {m}"),
            ));
        }
    }
    errs
}

/// The validated entries for the switch.
pub fn options(
    cfg: &Config,
    voice: &Voice,
    closed: &hotline_media::Prompt,
) -> anyhow::Result<HashMap<String, ExtensionOptions>> {
    let mut out = HashMap::new();
    for e in &cfg.extensions {
        let no_answer = match &e.no_answer {
            Some(t) => Some(crate::target_route(t.get_ref(), voice, closed)?),
            None => None,
        };
        out.insert(
            e.user.get_ref().clone(),
            ExtensionOptions {
                ring_timeout: Duration::from_secs(*e.ring_timeout_secs.get_ref()),
                no_answer,
            },
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[sip]\nudp = [\"127.0.0.1:5060\"]\n\
        [[users]]\nname = \"carol\"\npassword = \"x\"\n\
        [[voicemail]]\nname = \"carol-box\"\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("test.toml"), &format!("{BASE}{extra}"))
    }

    #[test]
    fn an_extension_with_its_ring_timeout_and_no_answer_destination() {
        let cfg = parse(
            "[[extensions]]\nuser = \"carol\"\nring_timeout_secs = 20\n\
             no_answer = { voicemail = \"carol-box\" }\n",
        )
        .unwrap();
        let e = &cfg.extensions[0];
        assert_eq!(
            (e.user.get_ref().as_str(), *e.ring_timeout_secs.get_ref()),
            ("carol", 20)
        );
        let t = e.no_answer.as_ref().unwrap().get_ref();
        assert_eq!(t.voicemail.as_deref(), Some("carol-box"));
    }

    /// Each mistake is named at its line: not a user, a repeated user, a ring timeout
    /// out of range, a no-answer target that does not exist.
    #[test]
    fn bad_entries_are_refused_where_they_are() {
        let cases = [
            ("[[extensions]]\nuser = \"dave\"\n", 9, "is not a user"),
            (
                "[[extensions]]\nuser = \"carol\"\n[[extensions]]\nuser = \"carol\"\n",
                11,
                "duplicate extension",
            ),
            (
                "[[extensions]]\nuser = \"carol\"\nring_timeout_secs = 0\n",
                10,
                "must be 1 to 600",
            ),
            (
                "[[extensions]]\nuser = \"carol\"\nno_answer = { voicemail = \"nope\" }\n",
                10,
                "no_answer: voicemail box \"nope\" is not defined",
            ),
        ];
        for (extra, line, want) in cases {
            let e = parse(extra).unwrap_err();
            assert!(e.message.contains(want), "{extra}: {e}");
            assert_eq!(e.line, line, "{extra}: {e}");
        }
    }
}
