//! Reliability settings: `[drain]` (SIGTERM), `[qualify]` (agent devices probed with
//! OPTIONS) and `[[dial_rules]]` (the toll-fraud guard). Kept out of `config.rs` so the
//! sections can grow without touching the shared file.

use std::path::Path;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::config::{Config, ConfigError, locate, span_at};

/// `[drain]`: what SIGTERM does. New calls are refused at once; calls in progress get
/// `grace_secs` to end, then Hotline hangs them up and exits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DrainConfig {
    #[serde(default = "default_grace")]
    pub grace_secs: u64,
    /// `Retry-After` on the 503 new calls get.
    #[serde(default = "default_retry_after")]
    pub retry_after_secs: u32,
    /// Redirect new calls here (302) instead of refusing them, e.g. `sip:+4930999@10.0.0.9`.
    pub overflow: Option<Spanned<String>>,
}

fn default_grace() -> u64 {
    30
}
fn default_retry_after() -> u32 {
    60
}

impl Default for DrainConfig {
    fn default() -> Self {
        DrainConfig {
            grace_secs: default_grace(),
            retry_after_secs: default_retry_after(),
            overflow: None,
        }
    }
}

impl DrainConfig {
    pub fn policy(&self) -> hotline_switch::DrainPolicy {
        hotline_switch::DrainPolicy {
            grace: Duration::from_secs(self.grace_secs),
            retry_after_secs: self.retry_after_secs,
            overflow: self.overflow.as_ref().map(|o| o.get_ref().clone()),
        }
    }
}

/// `[qualify]`: registered agent contacts get an OPTIONS every `interval_secs` (0 = off,
/// the default: some softphones do not answer OPTIONS); `misses` unanswered probes in a
/// row (each waiting `timeout_ms`) make the agent not-ready "unreachable" until its
/// device answers again.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QualifyConfig {
    #[serde(default = "default_interval")]
    pub interval_secs: Spanned<u64>,
    #[serde(default = "default_qualify_timeout")]
    pub timeout_ms: u64,
    #[serde(default = "default_misses")]
    pub misses: Spanned<u32>,
}

fn default_interval() -> Spanned<u64> {
    Spanned::new(0..0, 0)
}
fn default_qualify_timeout() -> u64 {
    2000
}
fn default_misses() -> Spanned<u32> {
    Spanned::new(0..0, 2)
}

impl Default for QualifyConfig {
    fn default() -> Self {
        QualifyConfig {
            interval_secs: default_interval(),
            timeout_ms: default_qualify_timeout(),
            misses: default_misses(),
        }
    }
}

impl QualifyConfig {
    /// The switch's policy, `None` when qualifying is off.
    pub fn policy(&self) -> Option<hotline_switch::QualifyPolicy> {
        match *self.interval_secs.get_ref() {
            0 => None,
            s => Some(hotline_switch::QualifyPolicy {
                interval: Duration::from_secs(s),
                timeout: Duration::from_millis(self.timeout_ms),
                misses: *self.misses.get_ref(),
            }),
        }
    }
}

/// `[[dial_rules]]`: the outside numbers a role (`agent`, `supervisor`, `admin`) may
/// transfer or dial to; each `allow` pattern (regex) must match the whole number.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DialRuleConfig {
    pub role: Spanned<String>,
    #[serde(default)]
    pub allow: Vec<Spanned<String>>,
}

const ROLES: [&str; 3] = ["agent", "supervisor", "admin"];

/// The compiled dial rules (validated on load, so this does not fail after it).
pub fn dial_rules(cfg: &Config) -> Result<hotline_switch::DialRules, hotline_switch::SwitchError> {
    let rules: Vec<hotline_switch::DialRule> = cfg
        .dial_rules
        .iter()
        .map(|r| hotline_switch::DialRule {
            role: r.role.get_ref().clone(),
            allow: r.allow.iter().map(|a| a.get_ref().clone()).collect(),
        })
        .collect();
    hotline_switch::DialRules::new(&rules)
}

/// Checks the three sections; errors point at the offending value.
pub(crate) fn validate(cfg: &Config, path: &Path, text: &str) -> Result<(), ConfigError> {
    if let Some(o) = &cfg.drain.overflow {
        let uri = o.get_ref();
        let ok = (uri.starts_with("sip:") || uri.starts_with("sips:"))
            && uri.len() > 4
            && !uri.contains(|c: char| c.is_whitespace() || c == '<' || c == '>');
        if !ok {
            return Err(locate(
                path,
                text,
                o.span().start,
                format!("[drain] overflow {uri:?}: expected a SIP URI like sip:+4930999@10.0.0.9"),
            ));
        }
    }
    if *cfg.qualify.interval_secs.get_ref() > 0 {
        if *cfg.qualify.misses.get_ref() == 0 {
            return Err(locate(
                path,
                text,
                span_at(text, &["qualify", "misses"]),
                "[qualify] misses must be at least 1".into(),
            ));
        }
        if cfg.qualify.timeout_ms == 0
            || cfg.qualify.timeout_ms >= *cfg.qualify.interval_secs.get_ref() * 1000
        {
            return Err(locate(
                path,
                text,
                span_at(text, &["qualify", "timeout_ms"]),
                "[qualify] needs 0 < timeout_ms < interval_secs * 1000".into(),
            ));
        }
    }
    for r in &cfg.dial_rules {
        let role = r.role.get_ref();
        if !ROLES.contains(&role.as_str()) {
            return Err(locate(
                path,
                text,
                r.role.span().start,
                format!("[[dial_rules]] role {role:?}: expected one of agent, supervisor, admin"),
            ));
        }
        for a in &r.allow {
            let one = hotline_switch::DialRules::new(&[hotline_switch::DialRule {
                role: role.clone(),
                allow: vec![a.get_ref().clone()],
            }]);
            if let Err(e) = one {
                let msg = e.to_string();
                let why = msg.rsplit(": ").next().unwrap_or(&msg);
                return Err(locate(
                    path,
                    text,
                    a.span().start,
                    format!("[[dial_rules]] pattern {:?}: {why}", a.get_ref()),
                ));
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "[sip]\nudp = [\"127.0.0.1:0\"]\n";

    fn parse(extra: &str) -> Result<Config, ConfigError> {
        Config::parse(Path::new("t.toml"), &format!("{BASE}{extra}"))
    }

    #[test]
    fn defaults_are_drain_30s_and_no_qualify_and_no_outside_numbers() {
        let c = parse("").unwrap();
        assert_eq!(c.drain.policy(), hotline_switch::DrainPolicy::default());
        assert!(c.qualify.policy().is_none());
        let rules = dial_rules(&c).unwrap();
        assert!(rules.check("agent", "+4930123456", "t").is_err());
    }

    #[test]
    fn sections_parse() {
        let c = parse(
            "[drain]\ngrace_secs = 5\nretry_after_secs = 9\noverflow = \"sip:+4930999@192.0.2.1\"\n\
             [qualify]\ninterval_secs = 10\ntimeout_ms = 500\nmisses = 3\n\
             [[dial_rules]]\nrole = \"agent\"\nallow = ['^\\+49[1-9]\\d{6,12}$']\n",
        )
        .unwrap();
        let d = c.drain.policy();
        assert_eq!(d.grace, Duration::from_secs(5));
        assert_eq!(d.retry_after_secs, 9);
        assert_eq!(d.overflow.as_deref(), Some("sip:+4930999@192.0.2.1"));
        let q = c.qualify.policy().unwrap();
        assert_eq!(q.interval, Duration::from_secs(10));
        assert_eq!(q.timeout, Duration::from_millis(500));
        assert_eq!(q.misses, 3);
        let rules = dial_rules(&c).unwrap();
        assert!(rules.check("agent", "+4930123456", "t").is_ok());
        assert!(rules.check("agent", "+88216123456", "t").is_err());
    }

    /// The demo's rules: German numbers for agents, but not premium rate; supervisors also
    /// Austria and Switzerland. Probing and drain are on.
    #[test]
    fn demo_config_guards_and_probes() {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("../../config");
        let c = Config::load(&dir.join("hotline.toml")).unwrap();
        let r = dial_rules(&c).unwrap();
        assert!(r.check("agent", "+4930123456", "t").is_ok());
        assert!(r.check("agent", "+4915112345678", "t").is_ok());
        assert!(r.check("agent", "+499001234567", "t").is_err());
        assert!(r.check("agent", "+41441234567", "t").is_err());
        assert!(r.check("supervisor", "+41441234567", "t").is_ok());
        assert!(r.check("admin", "+4930123456", "t").is_err());
        assert_eq!(
            c.qualify.policy().unwrap().interval,
            Duration::from_secs(30)
        );
        assert_eq!(c.drain.policy().grace, Duration::from_secs(30));
    }

    #[test]
    fn bad_values_name_line_and_column() {
        let e = parse("[[dial_rules]]\nrole = \"agent\"\nallow = ['(\\d']\n").unwrap_err();
        assert_eq!((e.line, e.column), (5, 10), "{e}");
        assert!(e.message.contains("pattern"), "{e}");
        let e = parse("[[dial_rules]]\nrole = \"boss\"\n").unwrap_err();
        assert_eq!((e.line, e.column), (4, 8), "{e}");
        let e = parse("[drain]\noverflow = \"http://x\"\n").unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        let e = parse("[qualify]\ninterval_secs = 1\ntimeout_ms = 1000\n").unwrap_err();
        assert!(e.message.contains("timeout_ms"), "{e}");
        let e = parse("[qualify]\ninterval_secs = 5\nmisses = 0\n").unwrap_err();
        assert_eq!(e.line, 5, "{e}");
        let e = parse("[drain]\ngrace = 5\n").unwrap_err();
        assert!(e.message.contains("unknown field"), "{e}");
    }
}
