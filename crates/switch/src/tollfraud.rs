//! Toll-fraud guard: which outside numbers a role may send a call to (blind transfer,
//! desk transfer, click-to-dial). Internal destinations (configured numbers, queues, SIP
//! users) are not numbers and never reach this check; every other destination must match
//! one of the role's `allow` patterns, or it is refused and logged. With no rules at all
//! nothing outside is reachable: a fresh install cannot be abused to call premium lines.
//!
//! Patterns are `regex` syntax and always match the whole destination (they are anchored
//! here), so `\+49\d+` cannot be satisfied by `00900…+49…`.

use std::collections::HashMap;

use regex::Regex;

use crate::SwitchError;

/// Largest compiled pattern: rules come from the admin, but a typo such as `\d{1000000}`
/// must fail the config load, not eat the heap.
const PATTERN_SIZE_LIMIT: usize = 1 << 20;
/// Longest destination looked at; longer ones are refused without matching.
pub const MAX_DESTINATION: usize = 64;

/// One `[[dial_rules]]` entry: the patterns a role may dial.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DialRule {
    pub role: String,
    pub allow: Vec<String>,
}

/// The compiled rules, by role.
#[derive(Debug, Clone, Default)]
pub struct DialRules {
    by_role: HashMap<String, Vec<Regex>>,
}

impl DialRules {
    /// Compiles the rules; a bad pattern is named with its rule and position.
    pub fn new(rules: &[DialRule]) -> Result<Self, SwitchError> {
        let mut by_role: HashMap<String, Vec<Regex>> = HashMap::new();
        for (i, r) in rules.iter().enumerate() {
            let list = by_role.entry(r.role.clone()).or_default();
            for (j, p) in r.allow.iter().enumerate() {
                let re = regex::RegexBuilder::new(&format!("^(?:{p})$"))
                    .size_limit(PATTERN_SIZE_LIMIT)
                    .build()
                    .map_err(|e| {
                        SwitchError::Config(format!(
                            "dial_rules[{i}].allow[{j}] {p:?}: {}",
                            first_line(&e.to_string())
                        ))
                    })?;
                list.push(re);
            }
        }
        Ok(DialRules { by_role })
    }

    /// Whether `role` may send a call to the outside number `number`; a refusal is
    /// logged (who, where, why) and returned as [`SwitchError::Forbidden`].
    pub fn check(&self, role: &str, number: &str, context: &str) -> Result<(), SwitchError> {
        match self.verdict(role, number) {
            Ok(()) => Ok(()),
            Err(why) => {
                let shown: String = number.chars().take(MAX_DESTINATION).collect();
                tracing::warn!(role, number = %shown, context, why, "toll-fraud guard refused a destination");
                Err(SwitchError::Forbidden(format!(
                    "destination {shown:?} is not allowed for role {role:?}"
                )))
            }
        }
    }

    /// The decision without the log line.
    fn verdict(&self, role: &str, number: &str) -> Result<(), &'static str> {
        if number.is_empty() || number.len() > MAX_DESTINATION {
            return Err("empty or overlong destination");
        }
        let Some(patterns) = self.by_role.get(role) else {
            return Err("no dial rules for this role");
        };
        if patterns.iter().any(|re| re.is_match(number)) {
            Ok(())
        } else {
            Err("no pattern matches")
        }
    }
}

impl crate::SwitchConfig {
    /// Whether `dest` is a destination inside Hotline (a configured number, queue or menu
    /// number, or a SIP user), which the dial rules do not govern.
    pub fn is_internal(&self, dest: &str) -> bool {
        self.routes.contains_key(dest) || self.users.contains(dest)
    }

    /// The toll-fraud check for a destination chosen by someone of `role`: internal
    /// destinations pass, outside numbers must match the role's dial rules.
    pub fn check_destination(
        &self,
        role: &str,
        dest: &str,
        context: &str,
    ) -> Result<(), SwitchError> {
        if self.is_internal(dest) {
            return Ok(());
        }
        self.dial_rules.check(role, dest, context)
    }
}

fn first_line(s: &str) -> &str {
    s.lines().last().unwrap_or(s).trim()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rules() -> DialRules {
        DialRules::new(&[
            DialRule {
                role: "agent".into(),
                allow: vec![r"\+49[1-9]\d{6,12}".into()],
            },
            DialRule {
                role: "supervisor".into(),
                allow: vec![r"\+49[1-9]\d{6,12}".into(), r"\+4[13]\d{8,12}".into()],
            },
            // A second entry for a role adds to it.
            DialRule {
                role: "agent".into(),
                allow: vec![r"0800\d{7}".into()],
            },
        ])
        .unwrap()
    }

    #[test]
    fn allowed_numbers_pass() {
        let r = rules();
        r.check("agent", "+4930123456", "test").unwrap();
        r.check("agent", "08001234567", "test").unwrap();
        r.check("supervisor", "+41441234567", "test").unwrap();
    }

    #[test]
    fn other_numbers_are_refused() {
        let r = rules();
        for n in [
            "+88216123456",    // satellite
            "+4990012345678",  // German premium rate (9 after +49 is allowed, but…)
            "+49012345678",    // 0 after the country code
            "+4930",           // too short
            "+41441234567",    // Switzerland: supervisors only
            "4930123456",      // no +
            "+4930123456;x=1", // trailing junk
            "x+4930123456",    // leading junk
        ] {
            let e = r.check("agent", n, "test");
            if n == "+4990012345678" {
                // The rule as written allows it: rules are what the admin says.
                assert!(e.is_ok(), "{n}");
                continue;
            }
            assert!(
                matches!(e, Err(SwitchError::Forbidden(_))),
                "{n} should be refused: {e:?}"
            );
        }
    }

    #[test]
    fn patterns_are_anchored() {
        let r = DialRules::new(&[DialRule {
            role: "agent".into(),
            allow: vec![r"\+49\d+".into()],
        }])
        .unwrap();
        assert!(r.check("agent", "+49301", "t").is_ok());
        assert!(r.check("agent", "00900+49301", "t").is_err());
        assert!(r.check("agent", "+49301#900", "t").is_err());
        // An alternation stays inside the anchors.
        let r = DialRules::new(&[DialRule {
            role: "agent".into(),
            allow: vec![r"\+49\d+|\+43\d+".into()],
        }])
        .unwrap();
        assert!(r.check("agent", "+431", "t").is_ok());
        assert!(r.check("agent", "+431x", "t").is_err());
        assert!(r.check("agent", "y+491", "t").is_err());
    }

    #[test]
    fn no_rules_means_nothing_outside() {
        let r = DialRules::default();
        assert!(r.check("agent", "+4930123456", "t").is_err());
        assert!(r.check("admin", "+4930123456", "t").is_err());
        // A role without rules is refused even when others have some.
        assert!(rules().check("admin", "+4930123456", "t").is_err());
    }

    #[test]
    fn empty_and_overlong_destinations_are_refused() {
        let r = DialRules::new(&[DialRule {
            role: "agent".into(),
            allow: vec![r".*".into()],
        }])
        .unwrap();
        assert!(r.check("agent", "", "t").is_err());
        assert!(
            r.check("agent", &"1".repeat(MAX_DESTINATION + 1), "t")
                .is_err()
        );
        assert!(r.check("agent", &"1".repeat(MAX_DESTINATION), "t").is_ok());
    }

    #[test]
    fn bad_patterns_are_config_errors() {
        let e = DialRules::new(&[DialRule {
            role: "agent".into(),
            allow: vec![r"\+49\d+".into(), r"(\d".into()],
        }])
        .unwrap_err();
        let SwitchError::Config(m) = e else {
            panic!("{e:?}")
        };
        assert!(m.contains("dial_rules[0].allow[1]"), "{m}");
        // Huge repetitions hit the size limit instead of allocating.
        let e = DialRules::new(&[DialRule {
            role: "agent".into(),
            allow: vec![r"\d{100000}".into()],
        }])
        .unwrap_err();
        assert!(matches!(e, SwitchError::Config(_)), "{e:?}");
    }
}
