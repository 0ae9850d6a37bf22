//! `Engine::take_changed`: the owner publishes agent states from this list instead of
//! scanning every agent, so a state change missing from it would never reach a desk. Each
//! test compares the engine's states before and after an event with the list.

use std::collections::BTreeSet;

use hotline_acd::{
    AcdConfig, AgentConfig, AgentId, AgentState, CallId, Decision, Engine, Millis, NewCall,
    NotReadyReason,
};
use proptest::prelude::*;

/// What the owner last saw of every agent, and the check that the list covers each change.
struct Watch {
    last: Vec<AgentState>,
}

impl Watch {
    fn new() -> Self {
        Watch { last: Vec::new() }
    }

    /// The changed list after an event; fails if an agent whose state differs from the last
    /// look (or a new agent) is not on it, or if an agent is listed twice.
    fn check(&mut self, e: &mut Engine) -> Result<Vec<u32>, String> {
        let mut got = Vec::new();
        e.take_changed(&mut got);
        let ids: Vec<u32> = got.iter().map(|a| a.0).collect();
        let set: BTreeSet<u32> = ids.iter().copied().collect();
        if set.len() != ids.len() {
            return Err(format!("an agent listed twice: {ids:?}"));
        }
        for i in 0..e.agent_count() as u32 {
            let now = e.agent_state(AgentId(i)).map_err(|x| x.to_string())?;
            let before = self.last.get(i as usize).copied();
            if before != Some(now) && !set.contains(&i) {
                return Err(format!(
                    "agent {i}: {before:?} -> {now:?} not listed ({ids:?})"
                ));
            }
            if (i as usize) < self.last.len() {
                self.last[i as usize] = now;
            } else {
                self.last.push(now);
            }
        }
        let mut again = Vec::new();
        e.take_changed(&mut again);
        if !again.is_empty() {
            return Err(format!("taken twice: {again:?}"));
        }
        Ok(ids)
    }
}

fn drain(e: &mut Engine) -> Vec<Decision> {
    std::iter::from_fn(|| e.poll_decision()).collect()
}

const CFG: &str = "[[queue]]\nname = \"q\"\nring_timeout_secs = 10\nwrapup_secs = 5\n\
    [[agent]]\nid = \"a\"\nqueues = { q = 0 }\n[[agent]]\nid = \"b\"\nqueues = { q = 0 }\n";

/// Agents configured at start are listed once (they are new); login and logout are listed.
#[test]
fn new_agents_login_and_logout_are_listed() {
    let mut e = Engine::new(&AcdConfig::from_toml(CFG).unwrap(), Millis(0)).unwrap();
    let mut w = Watch::new();
    assert_eq!(w.check(&mut e).unwrap(), vec![0, 1]);
    assert_eq!(w.check(&mut e).unwrap(), Vec::<u32>::new());
    e.agent_login(Millis(1), AgentId(1), true).unwrap();
    assert_eq!(w.check(&mut e).unwrap(), vec![1]);
    e.agent_logout(Millis(2), AgentId(1)).unwrap();
    assert_eq!(w.check(&mut e).unwrap(), vec![1]);
    assert_eq!(e.agent_state(AgentId(1)).unwrap(), AgentState::LoggedOut);
}

/// Changes the engine makes on its own, in `handle_timeout`: a ring timeout makes the agent
/// not-ready (missed offer), and the wrap-up timer makes the next agent available.
#[test]
fn ring_timeout_and_wrap_up_end_are_listed() {
    let mut e = Engine::new(&AcdConfig::from_toml(CFG).unwrap(), Millis(0)).unwrap();
    let mut w = Watch::new();
    w.check(&mut e).unwrap();
    let (a, b) = (AgentId(0), AgentId(1));
    e.agent_login(Millis(0), a, true).unwrap();
    w.check(&mut e).unwrap();
    let q = e.queue_id("q").unwrap();
    e.call_arrived(Millis(1_000), NewCall::new(CallId(1), q))
        .unwrap();
    assert!(matches!(drain(&mut e)[..], [Decision::Offer { agent, .. }] if agent == a));
    assert_eq!(w.check(&mut e).unwrap(), vec![0], "reserved");
    let ring_out = e.poll_timeout().unwrap();
    e.handle_timeout(ring_out);
    drain(&mut e);
    assert_eq!(
        e.agent_state(a).unwrap(),
        AgentState::NotReady(NotReadyReason::MissedOffer)
    );
    assert_eq!(w.check(&mut e).unwrap(), vec![0], "ring timeout");
    // b takes the call, talks, and wrap-up ends on its timer.
    e.agent_login(Millis(12_000), b, true).unwrap();
    drain(&mut e);
    assert_eq!(e.agent_state(b).unwrap(), AgentState::Reserved(CallId(1)));
    w.check(&mut e).unwrap();
    e.offer_answered(Millis(13_000), CallId(1), b).unwrap();
    e.call_ended(Millis(20_000), CallId(1)).unwrap();
    drain(&mut e);
    assert_eq!(e.agent_state(b).unwrap(), AgentState::WrapUp);
    assert_eq!(w.check(&mut e).unwrap(), vec![1]);
    let wrap_end = e.poll_timeout().unwrap();
    e.handle_timeout(wrap_end);
    drain(&mut e);
    assert_eq!(e.agent_state(b).unwrap(), AgentState::Available);
    assert_eq!(w.check(&mut e).unwrap(), vec![1], "wrap-up end");
}

/// A configuration reload: an added agent is listed even before it logs in; an agent
/// taken out of every queue and logged out is listed; re-skilling alone changes no state.
#[test]
fn config_reload_adding_and_removing_agents_is_listed() {
    let mut e = Engine::new(&AcdConfig::from_toml(CFG).unwrap(), Millis(0)).unwrap();
    let mut w = Watch::new();
    e.agent_login(Millis(0), AgentId(0), true).unwrap();
    w.check(&mut e).unwrap();
    let c = e
        .add_agent(&AgentConfig::new("c", &["q"]), Millis(1))
        .unwrap();
    assert_eq!(w.check(&mut e).unwrap(), vec![c.0], "added, logged out");
    e.agent_login(Millis(2), c, true).unwrap();
    assert_eq!(w.check(&mut e).unwrap(), vec![c.0]);
    // "a" removed: out of every queue, then logged out.
    let gone = AgentConfig::new("a", &[]);
    e.update_agent(Millis(3), &gone).unwrap();
    assert_eq!(w.check(&mut e).unwrap(), Vec::<u32>::new());
    e.agent_logout(Millis(3), AgentId(0)).unwrap();
    assert_eq!(w.check(&mut e).unwrap(), vec![0]);
}

#[derive(Debug, Clone)]
enum Op {
    Arrive,
    Abandon(u64),
    Login(u32, bool),
    Logout(u32),
    Ready(u32),
    NotReady(u32),
    Answer(u64),
    Reject(u64),
    End(u64),
    WrapDone(u32),
    Advance(u64),
    AddAgent,
    Remove(u32),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        3 => Just(Op::Arrive),
        1 => (0u64..30).prop_map(Op::Abandon),
        2 => (0u32..5, any::<bool>()).prop_map(|(a, r)| Op::Login(a, r)),
        1 => (0u32..5).prop_map(Op::Logout),
        2 => (0u32..5).prop_map(Op::Ready),
        1 => (0u32..5).prop_map(Op::NotReady),
        3 => (0u64..30).prop_map(Op::Answer),
        1 => (0u64..30).prop_map(Op::Reject),
        2 => (0u64..30).prop_map(Op::End),
        1 => (0u32..5).prop_map(Op::WrapDone),
        3 => (0u64..20_000).prop_map(Op::Advance),
        1 => Just(Op::AddAgent),
        1 => (0u32..5).prop_map(Op::Remove),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    /// Random events, valid and not: after each, every agent whose state changed is on
    /// the list exactly once.
    #[test]
    fn every_state_change_is_listed(ops in proptest::collection::vec(op(), 1..120)) {
        let cfg = AcdConfig::from_toml(
            "[[queue]]\nname = \"q\"\nring_timeout_secs = 10\nwrapup_secs = 5\n\
             [[queue]]\nname = \"r\"\nstrategy = \"ring-all\"\nring_timeout_secs = 8\n\
             not_ready_on_no_answer = false\n\
             [[agent]]\nid = \"a\"\nqueues = { q = 0, r = 0 }\n\
             [[agent]]\nid = \"b\"\nqueues = { q = 0 }\n\
             [[agent]]\nid = \"c\"\nqueues = { r = 0 }\n",
        )
        .unwrap();
        let mut e = Engine::new(&cfg, Millis(0)).unwrap();
        let mut w = Watch::new();
        w.check(&mut e).map_err(TestCaseError::fail)?;
        let (mut now, mut next, mut added) = (0u64, 0u64, 0u32);
        let q = [e.queue_id("q").unwrap(), e.queue_id("r").unwrap()];
        for op in &ops {
            let t = Millis(now);
            let agents = e.agent_count() as u32;
            let ag = |a: u32| AgentId(a % agents);
            // Errors (unknown call, wrong state) are part of the stream: they must not
            // list anything that did not change, nor hide what did.
            let _ = match *op {
                Op::Arrive => {
                    next += 1;
                    e.call_arrived(t, NewCall::new(CallId(next), q[(next % 2) as usize]))
                }
                Op::Abandon(c) => e.call_abandoned(t, CallId(c)),
                Op::Login(a, r) => e.agent_login(t, ag(a), r),
                Op::Logout(a) => e.agent_logout(t, ag(a)),
                Op::Ready(a) => e.agent_ready(t, ag(a)),
                Op::NotReady(a) => e.agent_not_ready(t, ag(a), 3),
                Op::Answer(c) => {
                    let who = (0..agents)
                        .find(|&a| e.agent_state(AgentId(a)).ok()
                            == Some(AgentState::Reserved(CallId(c))));
                    match who {
                        Some(a) => e.offer_answered(t, CallId(c), AgentId(a)),
                        None => e.offer_answered(t, CallId(c), AgentId(0)),
                    }
                }
                Op::Reject(c) => {
                    let who = (0..agents)
                        .find(|&a| e.agent_state(AgentId(a)).ok()
                            == Some(AgentState::Reserved(CallId(c))));
                    e.offer_rejected(t, CallId(c), AgentId(who.unwrap_or(0)))
                }
                Op::End(c) => e.call_ended(t, CallId(c)),
                Op::WrapDone(a) => e.wrapup_done(t, ag(a)),
                Op::Advance(ms) => {
                    now += ms;
                    while let Some(at) = e.poll_timeout().filter(|at| at.0 <= now) {
                        e.handle_timeout(at);
                    }
                    Ok(())
                }
                Op::AddAgent => {
                    added += 1;
                    e.add_agent(&AgentConfig::new(&format!("x{added}"), &["q"]), t)
                        .map(|_| ())
                }
                Op::Remove(a) => {
                    let name = ["a", "b", "c"][(a % 3) as usize];
                    e.update_agent(t, &AgentConfig::new(name, &[]))
                        .and_then(|_| e.agent_logout(t, e.agent_id(name).unwrap()))
                }
            };
            drain(&mut e);
            w.check(&mut e).map_err(|m| TestCaseError::fail(format!("after {op:?}: {m}")))?;
        }
    }
}
