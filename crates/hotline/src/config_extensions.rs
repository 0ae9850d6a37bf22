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
//!
//! `no_answer` destinations must not lead back round to the extension (carol → bob →
//! carol would ring them in turn until the caller hangs up): such a cycle is refused.

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
    for (i, cycle) in no_answer_cycles(cfg) {
        let e = &cfg.extensions[i];
        let at = e
            .no_answer
            .as_ref()
            .map_or(e.user.span().start, |t| t.span().start);
        errs.push(locate(
            path,
            text,
            at,
            format!(
                "extension {:?} no_answer: cycle {} would ring them in turn forever",
                e.user.get_ref(),
                cycle.join(" > ")
            ),
        ));
    }
    errs
}

/// The extensions a no-answer destination rings next: its own, and its `closed`
/// alternative's (outside its hours). Menus and queues are left out: what follows them
/// depends on the caller or the agents, and the switch bounds recalls at run time.
fn rung_next<'a>(t: &'a RouteTarget, out: &mut Vec<&'a str>) {
    if let Some(x) = &t.extension {
        out.push(x);
    }
    if let Some(c) = &t.closed {
        rung_next(c, out);
    }
}

/// Each cycle of the `no_answer` graph once, as (index of its first entry in file
/// order, the users round the cycle back to that one). An entry on several cycles is
/// named with one of them.
fn no_answer_cycles(cfg: &Config) -> Vec<(usize, Vec<String>)> {
    let mut index: HashMap<&str, usize> = HashMap::new();
    for (i, e) in cfg.extensions.iter().enumerate() {
        index.entry(e.user.get_ref().as_str()).or_insert(i);
    }
    let next = |i: usize| {
        let mut out = Vec::new();
        if let Some(t) = &cfg.extensions[i].no_answer {
            rung_next(t.get_ref(), &mut out);
        }
        out.into_iter()
            .filter_map(|u| index.get(u).copied())
            .collect::<Vec<_>>()
    };
    let mut found = Vec::new();
    for start in 0..cfg.extensions.len() {
        if index.get(cfg.extensions[start].user.get_ref().as_str()) != Some(&start) {
            continue; // a duplicate entry, refused on its own
        }
        // Depth-first through later entries only: a cycle is found from its first entry.
        let mut path = vec![start];
        let mut stack = vec![next(start)];
        let mut seen = std::collections::HashSet::new();
        while let Some(top) = stack.last_mut() {
            let Some(n) = top.pop() else {
                stack.pop();
                path.pop();
                continue;
            };
            if n == start {
                path.push(start);
                let users = path
                    .iter()
                    .map(|&i| cfg.extensions[i].user.get_ref().clone())
                    .collect();
                found.push((start, users));
                break;
            }
            if n > start && seen.insert(n) {
                path.push(n);
                stack.push(next(n));
            }
        }
    }
    found
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

    const BOB: &str = "[[users]]\nname = \"bob\"\npassword = \"x\"\n\
        [[users]]\nname = \"dave\"\npassword = \"x\"\n";

    /// carol's no-answer rings bob, whose no-answer rings carol: refused at carol's
    /// `no_answer` (line 16, column 13: the first entry of the cycle), naming the cycle;
    /// `config check` (the admin API's validation) says the same.
    #[test]
    fn a_no_answer_cycle_is_refused_at_its_first_entry() {
        let extra = format!(
            "{BOB}[[extensions]]\nuser = \"carol\"\nno_answer = {{ extension = \"bob\" }}\n\
             [[extensions]]\nuser = \"bob\"\nno_answer = {{ extension = \"carol\" }}\n"
        );
        let e = parse(&extra).unwrap_err();
        assert_eq!((e.line, e.column), (16, 13), "{e}");
        assert!(
            e.message
                .contains("extension \"carol\" no_answer: cycle carol > bob > carol"),
            "{e}"
        );
        let all = Config::check(Path::new("test.toml"), &format!("{BASE}{extra}")).unwrap_err();
        assert_eq!(all.len(), 1, "one error per cycle: {all:?}");
        assert_eq!((all[0].line, all[0].column), (16, 13), "{all:?}");
    }

    /// A cycle through an extension's own entry, and one through the `closed` side of
    /// an hours-gated destination, are cycles too; a chain that ends (voicemail) or
    /// leaves through a menu is not.
    #[test]
    fn cycles_through_itself_or_closed_hours_are_refused_chains_are_not() {
        let own = "[[extensions]]\nuser = \"carol\"\nno_answer = { extension = \"carol\" }\n";
        let e = parse(&format!("{BOB}{own}")).unwrap_err();
        assert_eq!((e.line, e.column), (16, 13), "{e}");
        assert!(e.message.contains("cycle carol > carol"), "{e}");
        let closed = format!(
            "{BOB}[[hours]]\nname = \"day\"\n\
             [[extensions]]\nuser = \"dave\"\nno_answer = {{ extension = \"bob\" }}\n\
             [[extensions]]\nuser = \"bob\"\n\
             no_answer = {{ extension = \"carol\", hours = \"day\", closed = {{ extension = \"dave\" }} }}\n"
        );
        let e = parse(&closed).unwrap_err();
        assert_eq!((e.line, e.column), (18, 13), "{e}");
        assert!(e.message.contains("cycle dave > bob > dave"), "{e}");
        let chain = format!(
            "{BOB}[[menus]]\nname = \"again\"\nsay = \"Again?\"\n\
             default = {{ extension = \"carol\" }}\n\
             [[extensions]]\nuser = \"carol\"\nno_answer = {{ extension = \"bob\" }}\n\
             [[extensions]]\nuser = \"bob\"\nno_answer = {{ voicemail = \"carol-box\" }}\n\
             [[extensions]]\nuser = \"dave\"\nno_answer = {{ menu = \"again\" }}\n"
        );
        parse(&chain).unwrap();
    }
}
