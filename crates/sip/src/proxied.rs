//! Phone-to-phone calls the proxy carries (not the application's): which users are on one.
//!
//! The proxy Record-Routes every dialog it forwards, so it sees the 2xx that establishes
//! it and the BYE that ends it. It tells the application ([`AppEvent::Dialog`]) so a call
//! center can treat an agent on a direct call as busy. Bounded: past `cap` dialogs new
//! ones are not tracked (and not reported) rather than growing without limit.

use std::collections::HashMap;

use crate::app::AppEvent;

/// The proxied dialogs being tracked, by Call-ID: the users at both ends.
#[derive(Debug, Default)]
pub(crate) struct ProxiedDialogs {
    dialogs: HashMap<String, [String; 2]>,
    cap: usize,
}

impl ProxiedDialogs {
    pub(crate) fn new(cap: usize) -> Self {
        ProxiedDialogs {
            dialogs: HashMap::new(),
            cap,
        }
    }

    /// A 2xx to an initial INVITE passed: the event to report, the first time only (2xx
    /// retransmissions and forked 2xx of the same call are not new dialogs for us).
    pub(crate) fn established(
        &mut self,
        call_id: &str,
        from_user: Option<&str>,
        to_user: Option<&str>,
    ) -> Option<AppEvent> {
        if self.dialogs.contains_key(call_id) || self.dialogs.len() >= self.cap {
            return None;
        }
        let users = [
            from_user.unwrap_or_default().to_string(),
            to_user.unwrap_or_default().to_string(),
        ];
        self.dialogs.insert(call_id.to_string(), users.clone());
        Some(AppEvent::Dialog {
            call_id: call_id.to_string(),
            users: users.into_iter().filter(|u| !u.is_empty()).collect(),
            up: true,
        })
    }

    /// A BYE passed in dialog `call_id`: the event to report if we tracked it.
    pub(crate) fn ended(&mut self, call_id: &str) -> Option<AppEvent> {
        let users = self.dialogs.remove(call_id)?;
        Some(AppEvent::Dialog {
            call_id: call_id.to_string(),
            users: users.into_iter().filter(|u| !u.is_empty()).collect(),
            up: false,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(e: Option<AppEvent>) -> Option<(Vec<String>, bool)> {
        match e? {
            AppEvent::Dialog { users, up, .. } => Some((users, up)),
            _ => None,
        }
    }

    #[test]
    fn up_once_down_once_and_bounded() {
        let mut d = ProxiedDialogs::new(1);
        let both = vec!["1001".to_string(), "1002".to_string()];
        assert_eq!(
            ev(d.established("c1", Some("1001"), Some("1002"))),
            Some((both.clone(), true))
        );
        assert_eq!(ev(d.established("c1", Some("1001"), Some("1002"))), None);
        // Full: a second dialog is not tracked.
        assert_eq!(ev(d.established("c2", Some("1003"), None)), None);
        assert_eq!(ev(d.ended("c2")), None);
        assert_eq!(ev(d.ended("c1")), Some((both, false)));
        assert_eq!(ev(d.ended("c1")), None);
        assert!(d.dialogs.is_empty());
        // A user-less end (a bare IP URI) is left out of the list.
        assert_eq!(
            ev(d.established("c3", None, Some("1002"))),
            Some((vec!["1002".to_string()], true))
        );
    }
}
