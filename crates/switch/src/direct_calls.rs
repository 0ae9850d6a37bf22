//! Agents on phone-to-phone calls the SIP core proxies (not the B2BUA's calls): the core
//! reports each such dialog as it is established and as it ends ([`AppEvent::Dialog`]);
//! a user with at least one is busy for the ACD (not offered queue calls) until the last
//! one ends. Users who are not agents are ignored by the ACD.
//!
//! [`AppEvent::Dialog`]: hotline_sip::AppEvent::Dialog

use std::collections::HashMap;

/// How many proxied dialogs each user is in.
#[derive(Debug, Default)]
pub(crate) struct DirectCalls {
    counts: HashMap<String, u32>,
}

impl DirectCalls {
    /// A dialog of `users` came up (`up`) or ended: the users whose busy state changes,
    /// with the new state (a user on both ends of one dialog counts once).
    pub(crate) fn change(&mut self, users: &[String], up: bool) -> Vec<(String, bool)> {
        let mut seen: Vec<&String> = Vec::with_capacity(users.len());
        let mut changed = Vec::new();
        for u in users {
            if u.is_empty() || seen.contains(&u) {
                continue;
            }
            seen.push(u);
            if up {
                let n = self.counts.entry(u.clone()).or_insert(0);
                *n += 1;
                if *n == 1 {
                    changed.push((u.clone(), true));
                }
            } else if let Some(n) = self.counts.get_mut(u) {
                *n -= 1;
                if *n == 0 {
                    self.counts.remove(u);
                    changed.push((u.clone(), false));
                }
            }
        }
        changed
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(u: &[&str]) -> Vec<String> {
        u.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn busy_from_the_first_dialog_until_the_last_ends() {
        let mut d = DirectCalls::default();
        assert_eq!(
            d.change(&users(&["1001", "1002"]), true),
            vec![("1001".into(), true), ("1002".into(), true)]
        );
        // 1001 takes a second direct call: already busy.
        assert_eq!(
            d.change(&users(&["1001", "1003"]), true),
            vec![("1003".into(), true)]
        );
        assert_eq!(
            d.change(&users(&["1001", "1002"]), false),
            vec![("1002".into(), false)]
        );
        assert_eq!(
            d.change(&users(&["1001", "1003"]), false),
            vec![("1001".into(), false), ("1003".into(), false)]
        );
        // An end never seen starting, or calling oneself, changes nothing odd.
        assert!(d.change(&users(&["1009"]), false).is_empty());
        assert_eq!(
            d.change(&users(&["1004", "1004"]), true),
            vec![("1004".into(), true)]
        );
        assert_eq!(
            d.change(&users(&["1004", "1004"]), false),
            vec![("1004".into(), false)]
        );
    }
}
