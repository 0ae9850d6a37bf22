//! Property tests: random event sequences (valid and invalid) against a small center.
//! The test keeps its own model of offers and calls, built only from the decisions the
//! engine emits and the events it accepted, and checks after every event:
//! * an agent is never offered a call while it holds another offer or call;
//! * a call is never offered to two agents at once (outside ring-all), and a ring-all
//!   call of q2 to at most its `ring_all_limit` of 2;
//! * an offered agent has every skill the call requires, at the call's current minimum
//!   proficiency, is a member of the queue it was taken from, and works at an allowed site;
//! * FIFO: a call is never offered while an older call of the same queue, priority and
//!   requirements waits (unless that one was declined or is a callback/preferred call);
//! * leave-when-empty: no call of q1 waits while no logged-in agent could ever serve it
//!   (logouts and re-skilling strand such calls at once);
//! * at the end, after everyone logs in and time runs on, every call ended answered,
//!   abandoned or at its fallback.

use std::collections::{BTreeMap, BTreeSet};

use hotline_acd::{
    AcdConfig, AgentId, AgentState, CallId, Decision, Engine, Millis, NewCall, QueueId,
};
use proptest::prelude::*;

const STRATEGIES: &[&str] = &[
    "longest-idle",
    "most-skilled",
    "round-robin",
    "fewest-calls",
    "least-talk-time",
    "random",
    "linear",
    "ring-all",
];

/// `v` varies timing settings the checked properties must not depend on: bit 0 → no ring
/// timeout, bit 1 → no wrap-up, bit 2 → q2 makes no-answer agents not-ready, bit 3 → q0
/// announces every 20 s.
fn config(strategy: &str, v: u8) -> String {
    let ring = if v & 1 != 0 { 0 } else { 10 };
    let wrap = if v & 2 != 0 { 0 } else { 5 };
    let nr = v & 4 != 0;
    let announce = if v & 8 != 0 { 20 } else { 0 };
    format!(
        r#"
aging_secs = 60
resume_window_secs = 60
[[queue]]
name = "q0"
strategy = "{strategy}"
skills = [{{ skill = "en", min = 5 }}]
ring_timeout_secs = {ring}
wrapup_secs = {wrap}
announce_secs = {announce}
max_wait_secs = 120
overflow = [{{ after_secs = 20, min_proficiency = 2 }}, {{ after_secs = 40, add_queues = ["q2"] }}]
[[queue]]
name = "q1"
strategy = "{strategy}"
skills = [{{ skill = "billing", min = 6 }}]
sites = ["office"]
overflow = [{{ after_secs = 30, add_sites = ["home"] }}]
max_len = 4
max_wait_secs = 90
preferred_agent_secs = 15
leave_when_empty = true
callback_attempts = 2
callback_retry_secs = 10
[[queue]]
name = "q2"
strategy = "{strategy}"
ring_all_limit = 2
max_wait_secs = 200
not_ready_on_no_answer = {nr}
[[agent]]
id = "a0"
skills = {{ en = 9, billing = 7, de = 5 }}
queues = {{ q0 = 0, q1 = 0 }}
[[agent]]
id = "a1"
skills = {{ en = 4 }}
queues = {{ q0 = 0 }}
[[agent]]
id = "a2"
site = "home"
skills = {{ en = 6, billing = 3 }}
queues = {{ q0 = 0, q1 = 0, q2 = 0 }}
[[agent]]
id = "a3"
site = "home"
skills = {{ billing = 9, de = 2 }}
queues = {{ q1 = 0 }}
[[agent]]
id = "a4"
queues = {{ q2 = 0 }}
[[agent]]
id = "a5"
skills = {{ en = 2, billing = 6, de = 8 }}
queues = {{ q0 = 1, q1 = 1, q2 = 1 }}
"#
    )
}

/// The test's own knowledge of the center (independent of the engine's internals).
struct World {
    skills: Vec<BTreeMap<&'static str, u8>>,
    home: Vec<bool>,
    members: Vec<Vec<u32>>,
    q0_min: u8,
}

fn world() -> World {
    let sk = |v: &[(&'static str, u8)]| v.iter().copied().collect::<BTreeMap<_, _>>();
    World {
        skills: vec![
            sk(&[("en", 9), ("billing", 7), ("de", 5)]),
            sk(&[("en", 4)]),
            sk(&[("en", 6), ("billing", 3)]),
            sk(&[("billing", 9), ("de", 2)]),
            sk(&[]),
            sk(&[("en", 2), ("billing", 6), ("de", 8)]),
        ],
        home: vec![false, false, true, true, false, false],
        members: vec![
            vec![0, 1],
            vec![0],
            vec![0, 1, 2],
            vec![1],
            vec![2],
            vec![0, 1, 2],
        ],
        q0_min: 5,
    }
}

/// An agent's profile: the configured one, or the alternative used by `Op::Reskill`.
fn profile(a: u32, alt: bool) -> (BTreeMap<&'static str, u8>, bool, Vec<u32>) {
    let w = world();
    let (mut skills, home, members) = (
        w.skills[a as usize].clone(),
        w.home[a as usize],
        w.members[a as usize].clone(),
    );
    if !alt {
        return (skills, home, members);
    }
    for p in skills.values_mut() {
        *p = (*p).saturating_sub(3).max(1);
    }
    (skills, !home, vec![0, 1, 2])
}

#[derive(Debug, Clone)]
enum Op {
    Arrive {
        queue: u32,
        prio: i32,
        de: bool,
        pref: Option<u32>,
        caller: Option<u8>,
    },
    Abandon(usize),
    Login(u32, bool),
    Logout(u32),
    Ready(u32),
    NotReady(u32),
    Answer(usize),
    Reject(usize),
    End(usize),
    WrapDone(u32),
    Callback(usize),
    CallbackResult(usize, bool),
    Advance(u64),
    Reskill(u32, bool),
    EditQ0(bool),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => (
            0u32..3,
            0i32..3,
            any::<bool>(),
            proptest::option::weighted(0.2, 0u32..6),
            proptest::option::weighted(0.5, 0u8..3),
        )
            .prop_map(|(queue, prio, de, pref, caller)| Op::Arrive { queue, prio, de, pref, caller }),
        1 => any::<usize>().prop_map(Op::Abandon),
        2 => (0u32..6, any::<bool>()).prop_map(|(a, r)| Op::Login(a, r)),
        1 => (0u32..6).prop_map(Op::Logout),
        2 => (0u32..6).prop_map(Op::Ready),
        1 => (0u32..6).prop_map(Op::NotReady),
        3 => any::<usize>().prop_map(Op::Answer),
        1 => any::<usize>().prop_map(Op::Reject),
        2 => any::<usize>().prop_map(Op::End),
        1 => (0u32..6).prop_map(Op::WrapDone),
        1 => any::<usize>().prop_map(Op::Callback),
        1 => (any::<usize>(), any::<bool>()).prop_map(|(i, b)| Op::CallbackResult(i, b)),
        3 => (0u64..40).prop_map(Op::Advance),
        1 => (0u32..6, any::<bool>()).prop_map(|(a, alt)| Op::Reskill(a, alt)),
        1 => any::<bool>().prop_map(Op::EditQ0),
    ]
}

#[derive(Debug, Clone, PartialEq)]
enum St {
    Waiting,
    Offered(BTreeSet<u32>),
    Dialing(u32),
    Connected(u32),
    Answered,
    Abandoned,
    Fallback,
}

#[derive(Debug, Clone)]
struct MCall {
    queue: u32,
    prio: i32,
    de: bool,
    arrived: u64,
    caller: Option<u8>,
    st: St,
    declined: bool,
    special: bool,
}

struct Model {
    e: Engine,
    w: World,
    now: u64,
    ring_all: bool,
    strategy: String,
    variant: u8,
    calls: BTreeMap<u64, MCall>,
    holding: BTreeMap<u32, u64>,
    abandoned: Vec<(u8, u64)>,
    next_id: u64,
}

impl Model {
    fn pick(&self, i: usize, f: impl Fn(&MCall) -> bool) -> Option<u64> {
        let v: Vec<u64> = self
            .calls
            .iter()
            .filter(|(_, c)| f(c))
            .map(|(id, _)| *id)
            .collect();
        (!v.is_empty()).then(|| v[i % v.len()])
    }

    fn apply(&mut self, op: &Op) -> Result<(), TestCaseError> {
        let t = Millis(self.now);
        match *op {
            Op::Arrive {
                queue,
                prio,
                de,
                pref,
                caller,
            } => {
                self.next_id += 1;
                let id = self.next_id;
                let mut c = NewCall::new(CallId(id), QueueId(queue));
                c.priority = prio;
                if de {
                    c.skills = vec![("de".into(), 4)];
                }
                c.preferred_agent = pref.map(AgentId);
                c.caller = caller.map(|n| format!("+1555000{n}"));
                // A caller back within the window may resume an old place: exempt from FIFO.
                let resumed = caller.is_some_and(|n| {
                    self.abandoned
                        .iter()
                        .any(|&(who, at)| who == n && self.now < at + 60_000)
                });
                self.calls.insert(
                    id,
                    MCall {
                        queue,
                        prio,
                        de,
                        arrived: self.now,
                        caller,
                        st: St::Waiting,
                        declined: false,
                        special: pref.is_some() || resumed,
                    },
                );
                prop_assert!(self.e.call_arrived(t, c).is_ok());
            }
            Op::Abandon(i) => {
                if let Some(id) = self.pick(i, |c| matches!(c.st, St::Waiting | St::Offered(_))) {
                    let r = self.e.call_abandoned(t, CallId(id));
                    // A callback request being dialled cannot be abandoned; anything else can.
                    if r.is_ok()
                        && let Some(c) = self.calls.get_mut(&id)
                    {
                        c.st = St::Abandoned;
                        if let Some(n) = c.caller {
                            self.abandoned.push((n, self.now));
                        }
                    }
                }
            }
            Op::Login(a, r) => {
                let _ = self.e.agent_login(t, AgentId(a), r);
            }
            Op::Logout(a) => {
                let _ = self.e.agent_logout(t, AgentId(a));
            }
            Op::Ready(a) => {
                let _ = self.e.agent_ready(t, AgentId(a));
            }
            Op::NotReady(a) => {
                let _ = self.e.agent_not_ready(t, AgentId(a), 7);
            }
            Op::WrapDone(a) => {
                let _ = self.e.wrapup_done(t, AgentId(a));
            }
            Op::Answer(i) => {
                if let Some(id) = self.pick(i, |c| matches!(c.st, St::Offered(_))) {
                    let St::Offered(s) = &self.calls[&id].st else {
                        unreachable!()
                    };
                    let a = *s.iter().next().expect("offered to someone");
                    prop_assert!(self.e.offer_answered(t, CallId(id), AgentId(a)).is_ok());
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.st = St::Connected(a);
                    }
                    self.holding.insert(a, id);
                }
            }
            Op::Reject(i) => {
                if let Some(id) = self.pick(i, |c| matches!(c.st, St::Offered(_))) {
                    let c = self.calls.get_mut(&id).expect("call");
                    let St::Offered(s) = &mut c.st else {
                        unreachable!()
                    };
                    let a = *s.iter().next().expect("offered to someone");
                    s.remove(&a);
                    if s.is_empty() {
                        c.st = St::Waiting;
                    }
                    c.declined = true;
                    self.holding.remove(&a);
                    prop_assert!(self.e.offer_rejected(t, CallId(id), AgentId(a)).is_ok());
                }
            }
            Op::End(i) => {
                if let Some(id) = self.pick(i, |c| matches!(c.st, St::Connected(_))) {
                    let St::Connected(a) = self.calls[&id].st else {
                        unreachable!()
                    };
                    prop_assert!(self.e.call_ended(t, CallId(id)).is_ok());
                    if let Some(c) = self.calls.get_mut(&id) {
                        c.st = St::Answered;
                    }
                    self.holding.remove(&a);
                }
            }
            Op::Callback(i) => {
                if let Some(id) = self.pick(i, |c| c.st == St::Waiting)
                    && self
                        .e
                        .request_callback(t, CallId(id), "+1555".into())
                        .is_ok()
                    && let Some(c) = self.calls.get_mut(&id)
                {
                    c.special = true;
                }
            }
            Op::CallbackResult(i, ok) => {
                if let Some(id) = self.pick(i, |c| matches!(c.st, St::Dialing(_))) {
                    let St::Dialing(a) = self.calls[&id].st else {
                        unreachable!()
                    };
                    prop_assert!(self.e.callback_result(t, CallId(id), ok).is_ok());
                    self.holding.remove(&a);
                    let c = self.calls.get_mut(&id).expect("call");
                    if ok {
                        c.st = St::Connected(a);
                        self.holding.insert(a, id);
                    } else {
                        c.st = St::Waiting;
                    }
                }
            }
            Op::Reskill(a, alt) => {
                // alt: every proficiency 3 lower, the other site, and member of all queues.
                let (skills, home, members) = profile(a, alt);
                let mut cfg = hotline_acd::AgentConfig::new(&format!("a{a}"), &[]);
                cfg.site = if home { "home".into() } else { "office".into() };
                cfg.skills = skills.iter().map(|(k, v)| (k.to_string(), *v)).collect();
                cfg.queues = members.iter().map(|q| (format!("q{q}"), 0)).collect();
                prop_assert!(self.e.update_agent(t, &cfg).is_ok());
                self.w.skills[a as usize] = skills;
                self.w.home[a as usize] = home;
                self.w.members[a as usize] = members;
            }
            Op::EditQ0(alt) => {
                // An admin edit of q0: minimum `en` 5 → 3 and a different strategy.
                let strategy = if alt {
                    "longest-idle"
                } else {
                    self.strategy.as_str()
                };
                let cfg = AcdConfig::from_toml(&config(strategy, self.variant)).expect("valid");
                let mut q0 = cfg.queues[0].clone();
                if alt {
                    q0.skills[0].min = 3;
                }
                prop_assert!(self.e.update_queue(t, &q0).is_ok());
                self.w.q0_min = q0.skills[0].min;
            }
            Op::Advance(secs) => {
                let target = self.now + secs * 1000;
                // Step through every deadline so timers fire at their exact times.
                while let Some(d) = self.e.poll_timeout() {
                    if d.0 > target {
                        break;
                    }
                    self.now = self.now.max(d.0);
                    self.e.handle_timeout(Millis(self.now));
                    self.check_decisions()?;
                }
                self.now = target;
                self.e.handle_timeout(Millis(self.now));
            }
        }
        self.check_decisions()?;
        self.check_not_stranded()?;
        prop_assert!(
            self.e.check_invariants().is_ok(),
            "{:?}",
            self.e.check_invariants()
        );
        Ok(())
    }

    /// leave-when-empty (q1): no q1 call still waits when no logged-in member of q1 has
    /// `billing` 6 (and `de` 4 if the call needs it) — q1 has no relaxing step and its
    /// bullseye adds the home site, so any site counts.
    fn check_not_stranded(&self) -> Result<(), TestCaseError> {
        for (id, c) in &self.calls {
            if c.queue != 1 || c.st != St::Waiting {
                continue;
            }
            let servable = (0..6u32).any(|a| {
                let sk = &self.w.skills[a as usize];
                let has = |s: &str, m: u8| sk.get(s).copied().unwrap_or(0) >= m;
                self.e.agent_state(AgentId(a)).ok() != Some(AgentState::LoggedOut)
                    && self.w.members[a as usize].contains(&1)
                    && has("billing", 6)
                    && (!c.de || has("de", 4))
            });
            prop_assert!(
                servable,
                "q1 call {id} (de: {}) waits with nobody able",
                c.de
            );
        }
        Ok(())
    }

    fn check_offer(&self, id: u64, a: u32, via: Option<u32>) -> Result<(), TestCaseError> {
        if let Some(&other) = self.holding.get(&a) {
            prop_assert!(
                false,
                "agent {a} offered call {id} while holding call {other}"
            );
        }
        let c = self.calls.get(&id).expect("offered call is known");
        match &c.st {
            St::Waiting => {}
            // Ring-all: more agents join a ringing call (at once or as they become free),
            // up to q2's `ring_all_limit` of 2 (the other queues allow 20, more than exist).
            St::Offered(s) if self.ring_all && !s.is_empty() => {
                prop_assert!(
                    c.queue != 2 || s.len() < 2,
                    "q2 call {id} rings {s:?} and is offered to {a} too"
                );
            }
            st => prop_assert!(false, "call {id} offered to {a} while {st:?}"),
        }
        let waited = self.now - c.arrived;
        let relaxed = c.queue == 0 && waited >= 20;
        let need = |m: u8| if relaxed { m.min(2) } else { m };
        let skills = &self.w.skills[a as usize];
        let has = |s: &str, m: u8| skills.get(s).copied().unwrap_or(0) >= need(m);
        if let Some(via) = via {
            prop_assert!(
                self.w.members[a as usize].contains(&via),
                "agent {a} not in queue {via}"
            );
            let allowed_via = via == c.queue || (c.queue == 0 && via == 2 && waited >= 40);
            prop_assert!(
                allowed_via,
                "call {id} of q{} taken via q{via} after {waited} ms",
                c.queue
            );
            match via {
                0 => prop_assert!(has("en", self.w.q0_min), "agent {a} lacks en for call {id}"),
                1 => prop_assert!(has("billing", 6), "agent {a} lacks billing for call {id}"),
                _ => {}
            }
        }
        if c.de {
            prop_assert!(has("de", 4), "agent {a} lacks de for call {id}");
        }
        if c.queue == 1 && waited < 30 {
            prop_assert!(
                !self.w.home[a as usize],
                "home agent {a} got office-only call {id}"
            );
        }
        // FIFO within equal priority and requirements.
        if !c.special && !c.declined {
            for (oid, o) in &self.calls {
                if *oid < id
                    && o.st == St::Waiting
                    && o.queue == c.queue
                    && o.prio == c.prio
                    && o.de == c.de
                    && !o.special
                    && !o.declined
                {
                    prop_assert!(false, "call {id} offered while older call {oid} waits");
                }
            }
        }
        Ok(())
    }

    fn check_decisions(&mut self) -> Result<(), TestCaseError> {
        while let Some(d) = self.e.poll_decision() {
            match d {
                Decision::Offer { call, agent, via } => {
                    self.check_offer(call.0, agent.0, Some(via.0))?;
                    let c = self.calls.get_mut(&call.0).expect("call");
                    match &mut c.st {
                        St::Offered(s) => {
                            s.insert(agent.0);
                        }
                        st => *st = St::Offered([agent.0].into_iter().collect()),
                    }
                    self.holding.insert(agent.0, call.0);
                }
                Decision::PlaceCallback { call, agent, .. } => {
                    self.check_offer(call.0, agent.0, None)?;
                    self.calls.get_mut(&call.0).expect("call").st = St::Dialing(agent.0);
                    self.holding.insert(agent.0, call.0);
                }
                Decision::CancelOffer { call, agent } => {
                    self.holding.remove(&agent.0);
                    if let Some(c) = self.calls.get_mut(&call.0) {
                        match &mut c.st {
                            St::Offered(s) => {
                                s.remove(&agent.0);
                                if s.is_empty() {
                                    c.st = St::Waiting;
                                    c.declined = true;
                                }
                            }
                            St::Dialing(_) => {
                                c.st = St::Waiting;
                                c.declined = true;
                            }
                            _ => {}
                        }
                    }
                }
                Decision::Fallback { call, .. } => {
                    let c = self
                        .calls
                        .get_mut(&call.0)
                        .expect("fallback of a known call");
                    prop_assert!(
                        matches!(c.st, St::Waiting | St::Offered(_)),
                        "fallback of call {} in {:?}",
                        call.0,
                        c.st
                    );
                    if let St::Offered(s) = &c.st {
                        for a in s {
                            self.holding.remove(a);
                        }
                    }
                    c.st = St::Fallback;
                }
                _ => {}
            }
        }
        Ok(())
    }

    /// Everyone logs in and works; time runs until the engine is empty.
    fn drain(&mut self) -> Result<(), TestCaseError> {
        for _ in 0..400 {
            for a in 0..6 {
                let _ = self.e.agent_login(Millis(self.now), AgentId(a), true);
                let _ = self.e.agent_ready(Millis(self.now), AgentId(a));
                let _ = self.e.wrapup_done(Millis(self.now), AgentId(a));
            }
            self.check_decisions()?;
            let open: Vec<u64> = self
                .calls
                .iter()
                .filter(|(_, c)| matches!(c.st, St::Offered(_) | St::Dialing(_) | St::Connected(_)))
                .map(|(id, _)| *id)
                .collect();
            for id in open {
                // Re-read the state: earlier steps of this loop may have changed it.
                let st = self.calls[&id].st.clone();
                let same = |c: &MCall| std::mem::discriminant(&c.st) == std::mem::discriminant(&st);
                // pick() indexes the calls in a given state; find this call's index.
                let Some(idx) = self
                    .calls
                    .iter()
                    .filter(|(_, c)| same(c))
                    .position(|(i, _)| *i == id)
                else {
                    continue;
                };
                let op = match st {
                    St::Offered(_) => Op::Answer(idx),
                    St::Dialing(_) => Op::CallbackResult(idx, true),
                    St::Connected(_) => Op::End(idx),
                    _ => continue,
                };
                self.apply(&op)?;
            }
            if self.e.call_count() == 0 {
                let unfinished: Vec<_> = self
                    .calls
                    .iter()
                    .filter(|(_, c)| !matches!(c.st, St::Answered | St::Abandoned | St::Fallback))
                    .collect();
                prop_assert!(unfinished.is_empty(), "engine empty but {unfinished:?}");
                return Ok(());
            }
            self.apply(&Op::Advance(10))?;
        }
        prop_assert!(false, "calls never finished: {} left", self.e.call_count());
        Ok(())
    }
}

fn run(strategy: &str, variant: u8, ops: &[Op]) -> Result<(), TestCaseError> {
    let cfg = AcdConfig::from_toml(&config(strategy, variant)).expect("valid");
    let mut m = Model {
        e: Engine::new(&cfg, Millis(0)).expect("engine"),
        w: world(),
        now: 0,
        ring_all: strategy == "ring-all",
        strategy: strategy.to_string(),
        variant,
        calls: BTreeMap::new(),
        holding: BTreeMap::new(),
        abandoned: Vec::new(),
        next_id: 0,
    };
    for op in ops {
        m.apply(op)?;
    }
    m.drain()?;
    for a in 0..6 {
        let st = m.e.agent_state(AgentId(a)).expect("agent");
        prop_assert!(
            !matches!(st, AgentState::Reserved(_) | AgentState::OnCall(_)),
            "agent {a} {st:?}"
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 400, ..ProptestConfig::default() })]

    #[test]
    fn random_event_sequences_keep_the_invariants(
        s in 0usize..STRATEGIES.len(),
        variant in 0u8..16,
        ops in proptest::collection::vec(op(), 1..80),
    ) {
        run(STRATEGIES[s], variant, &ops)?;
    }
}
