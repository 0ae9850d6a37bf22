//! `hotline config check`: every mistake of a configuration file at once (a parse error
//! stops the parser, so it comes alone; validation errors are all listed), plus the
//! prompt files the server would fail to load at start.

use std::path::Path;

use crate::config::{Config, ConfigError, RouteTarget, locate, span_at};

impl Config {
    /// Parses and validates `text`, collecting every error instead of stopping at the
    /// first; prompt (WAV) files named by the file are loaded to prove they are usable.
    pub fn check(path: &Path, text: &str) -> Result<Config, Vec<ConfigError>> {
        let mut cfg: Config = toml::from_str(text).map_err(|e| {
            let offset = e.span().map(|s| s.start).unwrap_or(0);
            vec![locate(path, text, offset, e.message().to_string())]
        })?;
        cfg.resolve_store();
        let mut errs = cfg.validate_all(path, text);
        errs.extend(cfg.check_prompts(path, text));
        errs.sort_by_key(|e| (e.line, e.column));
        if errs.is_empty() { Ok(cfg) } else { Err(errs) }
    }

    /// Prompt files that do not load (missing, not an 8 kHz WAV), located at the entry
    /// that names them.
    fn check_prompts(&self, path: &Path, text: &str) -> Vec<ConfigError> {
        let mut errs = Vec::new();
        let mut check = |file: &Path, at: usize, what: String| {
            if let Err(e) = hotline_media::Prompt::load(file) {
                errs.push(locate(
                    path,
                    text,
                    at,
                    format!("{what}: prompt {}: {e}", file.display()),
                ));
            }
        };
        fn targets<'a>(t: &'a RouteTarget, out: &mut Vec<&'a Path>) {
            if let Some(p) = &t.prompt {
                out.push(p);
            }
            if let Some(c) = &t.closed {
                targets(c, out);
            }
        }
        if let Some(m) = &self.media.music {
            check(
                m,
                span_at(text, &["media", "music"]),
                "[media] music".into(),
            );
        }
        for n in &self.numbers {
            let mut files = Vec::new();
            if let Some(c) = &n.closed {
                targets(c.get_ref(), &mut files);
            }
            for f in files {
                check(
                    f,
                    n.number.span().start,
                    format!("number {:?}", n.number.get_ref()),
                );
            }
        }
        for m in &self.menus {
            let name = m.name.get_ref();
            if let Some(p) = &m.prompt {
                check(p, m.name.span().start, format!("menu {name:?}"));
            }
            for (key, t) in m
                .choices
                .iter()
                .map(|(k, t)| (k.as_str(), t))
                .chain(m.default.as_ref().map(|d| ("default", d)))
            {
                let mut files = Vec::new();
                targets(t.get_ref(), &mut files);
                for f in files {
                    check(f, t.span().start, format!("menu {name:?} {key}"));
                }
            }
        }
        for q in &self.queues {
            if let Some(w) = &q.whisper {
                check(
                    w,
                    q.name.span().start,
                    format!("queue {:?} whisper", q.name.get_ref()),
                );
            }
        }
        errs
    }

    /// One line saying what the file defines (for `config check` and the admin API).
    pub fn summary(&self) -> String {
        let (queues, agents) = self
            .acd
            .as_ref()
            .map_or((0, 0), |a| (a.queues.len(), a.agents.len()));
        format!(
            "{} numbers, {} menus, {} hours, {} queues, {} agents, {} users",
            self.numbers.len(),
            self.menus.len(),
            self.hours.len(),
            queues,
            agents,
            self.users.len()
        )
    }
}
