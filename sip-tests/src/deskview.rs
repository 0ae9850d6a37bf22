//! What an agent's desk shows, rebuilt from the CTI frames it received (the login or resume
//! reply, then events), and the check that it agrees with the ACD's own agent state. The
//! chaos test uses it after every reconnect; the unit tests below show that it catches a
//! divergence, so a green chaos run means something.

use serde_json::Value;

/// An agent state as the protocol carries it (`agent.state` data, the `agent_state` of a
/// login reply, or the ACD's `AgentStateEvent` serialised).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AgentView {
    pub agent: String,
    pub version: u64,
    pub state: String,
    pub call_id: Option<String>,
    pub reason: Option<String>,
    pub pending_not_ready: Option<String>,
}

impl AgentView {
    pub fn from_json(v: &Value) -> Result<AgentView, String> {
        let s = |k: &str| v[k].as_str().map(str::to_string);
        Ok(AgentView {
            agent: s("agent").ok_or_else(|| format!("no agent in {v}"))?,
            version: v["version"]
                .as_u64()
                .ok_or_else(|| format!("no version in {v}"))?,
            state: s("state").ok_or_else(|| format!("no state in {v}"))?,
            call_id: s("call_id"),
            reason: s("reason"),
            pending_not_ready: s("pending_not_ready"),
        })
    }

    /// The states that belong to a call (the desk must show that call).
    fn call_state(&self) -> bool {
        matches!(self.state.as_str(), "reserved" | "on_call" | "wrap_up")
    }
}

/// The call the desk shows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CallView {
    pub call_id: String,
    pub answered: bool,
    /// `call.ended` or `call.transferred` arrived: the desk shows it as finished.
    pub ended: bool,
}

/// A desk's view: the agent's state and the current call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DeskView {
    pub agent: AgentView,
    pub call: Option<CallView>,
}

impl DeskView {
    /// From the `data` of an `auth.login` / `auth.resume` reply.
    pub fn from_login(data: &Value) -> Result<DeskView, String> {
        let agent = AgentView::from_json(&data["agent_state"])?;
        let c = &data["call"];
        let call = if c.is_null() {
            None
        } else {
            Some(CallView {
                call_id: c["offer"]["call_id"]
                    .as_str()
                    .ok_or_else(|| format!("no offer.call_id in {c}"))?
                    .to_string(),
                answered: c["answered"].as_bool().unwrap_or(false),
                ended: !c["ended"].is_null(),
            })
        };
        Ok(DeskView { agent, call })
    }

    /// Applies one event frame as a desk does: agent states by version (older ones are
    /// dropped), call events for its agent. A state without a call clears a finished call
    /// (wrap-up is over) and an unanswered offer (withdrawn: not ready, ring timeout).
    pub fn apply(&mut self, frame: &Value) {
        let data = &frame["data"];
        let ours = data["agent"].as_str() == Some(self.agent.agent.as_str());
        let call_id = data["call_id"].as_str();
        let current = self.call.as_ref().map(|c| c.call_id.clone());
        let is_current = call_id.is_some() && call_id == current.as_deref();
        match frame["type"].as_str() {
            Some("agent.state") if ours => {
                if let Ok(s) = AgentView::from_json(data)
                    && s.version > self.agent.version
                {
                    // Out of the call states: a finished call (wrap-up over) or an offer
                    // that never got answered (withdrawn) leaves the desk.
                    if !s.call_state() && self.call.as_ref().is_some_and(|c| c.ended || !c.answered)
                    {
                        self.call = None;
                    }
                    self.agent = s;
                }
            }
            Some("call.offered") if ours => {
                self.call = call_id.map(|id| CallView {
                    call_id: id.to_string(),
                    answered: false,
                    ended: false,
                });
            }
            Some("call.answered") if ours && is_current => {
                if let Some(c) = &mut self.call {
                    c.answered = true;
                }
            }
            Some("call.ended") if ours && is_current => {
                if self.call.as_ref().is_some_and(|c| c.answered) {
                    if let Some(c) = &mut self.call {
                        c.ended = true;
                    }
                } else {
                    self.call = None; // never answered: nothing to wrap up
                }
            }
            Some("call.transferred") if ours && is_current => {
                if let Some(c) = &mut self.call {
                    c.ended = true;
                }
            }
            _ => {}
        }
    }
}

/// Why the desk's view disagrees with the ACD's state `acd` (same agent, same version),
/// or `None` when it agrees: the same state, call, reason and pending not-ready; a call
/// state shows that call (offered and not yet answered while reserved, answered once on
/// a call); any other state shows no call in progress.
pub fn divergence(desk: &DeskView, acd: &AgentView) -> Option<String> {
    if desk.agent != *acd {
        return Some(format!("state {:?} ≠ ACD {acd:?}", desk.agent));
    }
    let shown = desk.call.as_ref();
    if acd.call_state() {
        let Some(c) = shown else {
            return Some(format!(
                "ACD has {} {:?}, the desk shows no call",
                acd.state, acd.call_id
            ));
        };
        if Some(c.call_id.as_str()) != acd.call_id.as_deref() {
            return Some(format!(
                "desk shows call {} but the ACD has {} {:?}",
                c.call_id, acd.state, acd.call_id
            ));
        }
        let fits = match acd.state.as_str() {
            "reserved" => !c.answered && !c.ended,
            "on_call" => c.answered && !c.ended,
            _ => true,
        };
        if !fits {
            return Some(format!("desk shows {c:?} while the ACD has {}", acd.state));
        }
    } else if let Some(c) = shown.filter(|c| !c.ended) {
        return Some(format!(
            "desk shows call {} in progress but the ACD has {}",
            c.call_id, acd.state
        ));
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn state(version: u64, state: &str, call: Option<&str>) -> Value {
        json!({"agent": "a01", "state": state, "call_id": call, "reason": null,
               "pending_not_ready": null, "version": version, "since": 0})
    }

    fn login(agent: Value, call: Value) -> DeskView {
        DeskView::from_login(&json!({"agent_state": agent, "call": call})).expect("login")
    }

    fn acd(v: Value) -> AgentView {
        AgentView::from_json(&v).expect("state")
    }

    fn ev(kind: &str, data: Value) -> Value {
        json!({"v": 1, "type": kind, "data": data})
    }

    #[test]
    fn a_desk_following_the_events_agrees() {
        let mut d = login(state(1, "ready", None), Value::Null);
        assert_eq!(divergence(&d, &acd(state(1, "ready", None))), None);
        d.apply(&ev("agent.state", state(2, "reserved", Some("c1"))));
        d.apply(&ev(
            "call.offered",
            json!({"agent": "a01", "call_id": "c1"}),
        ));
        assert_eq!(divergence(&d, &acd(state(2, "reserved", Some("c1")))), None);
        d.apply(&ev(
            "call.answered",
            json!({"agent": "a01", "call_id": "c1"}),
        ));
        d.apply(&ev("agent.state", state(3, "on_call", Some("c1"))));
        assert_eq!(divergence(&d, &acd(state(3, "on_call", Some("c1")))), None);
        d.apply(&ev("agent.state", state(5, "wrap_up", Some("c1"))));
        d.apply(&ev("call.ended", json!({"agent": "a01", "call_id": "c1"})));
        // A stale event (lower version) is ignored.
        d.apply(&ev("agent.state", state(4, "on_call", Some("c1"))));
        assert_eq!(divergence(&d, &acd(state(5, "wrap_up", Some("c1")))), None);
        d.apply(&ev("agent.state", state(6, "ready", None)));
        assert_eq!(
            d.call, None,
            "wrap-up over: the finished call leaves the desk"
        );
        assert_eq!(divergence(&d, &acd(state(6, "ready", None))), None);
    }

    #[test]
    fn a_withdrawn_offer_leaves_the_desk() {
        let mut d = login(state(1, "ready", None), Value::Null);
        d.apply(&ev("agent.state", state(2, "reserved", Some("c1"))));
        d.apply(&ev(
            "call.offered",
            json!({"agent": "a01", "call_id": "c1"}),
        ));
        d.apply(&ev("agent.state", state(3, "not_ready", None)));
        assert_eq!(d.call, None);
        assert_eq!(divergence(&d, &acd(state(3, "not_ready", None))), None);
    }

    #[test]
    fn a_resumed_call_agrees() {
        let d = login(
            state(7, "on_call", Some("c9")),
            json!({"offer": {"call_id": "c9"}, "answered": true, "ended": null}),
        );
        assert_eq!(divergence(&d, &acd(state(7, "on_call", Some("c9")))), None);
    }

    #[test]
    fn catches_a_different_state() {
        let d = login(state(4, "ready", None), Value::Null);
        let why = divergence(&d, &acd(state(4, "not_ready", None)));
        assert!(why.is_some_and(|w| w.contains("not_ready")));
    }

    #[test]
    fn catches_a_desk_behind_the_acd() {
        // The desk missed an event: its version is older than the ACD's.
        let d = login(state(4, "ready", None), Value::Null);
        assert!(divergence(&d, &acd(state(5, "ready", None))).is_some());
    }

    #[test]
    fn catches_a_missing_current_call() {
        // Resumed on a call, but the reply lost the call (the desk could not act on it).
        let d = login(state(7, "on_call", Some("c9")), Value::Null);
        let why = divergence(&d, &acd(state(7, "on_call", Some("c9"))));
        assert!(why.is_some_and(|w| w.contains("no call")));
    }

    #[test]
    fn catches_another_call() {
        let d = login(
            state(7, "on_call", Some("c9")),
            json!({"offer": {"call_id": "c8"}, "answered": true, "ended": null}),
        );
        assert!(divergence(&d, &acd(state(7, "on_call", Some("c9")))).is_some());
    }

    #[test]
    fn catches_a_call_still_shown_after_it_left_the_agent() {
        // Offer withdrawn (agent went not ready while it rang) but the desk still has it.
        let d = login(
            state(8, "not_ready", None),
            json!({"offer": {"call_id": "c9"}, "answered": false, "ended": null}),
        );
        assert!(divergence(&d, &acd(state(8, "not_ready", None))).is_some());
        // Ringing shown as answered.
        let d = login(
            state(8, "reserved", Some("c9")),
            json!({"offer": {"call_id": "c9"}, "answered": true, "ended": null}),
        );
        assert!(divergence(&d, &acd(state(8, "reserved", Some("c9")))).is_some());
    }
}
