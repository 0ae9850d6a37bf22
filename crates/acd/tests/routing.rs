//! Behaviour of the engine, one feature per test.

use hotline_acd::{
    AcdConfig, AcdError, AgentId, AgentState, CallId, Decision, Engine, Fallback, FallbackReason,
    Millis, NewCall, NotReadyReason,
};

struct H {
    e: Engine,
}

fn s(secs: u64) -> Millis {
    Millis::from_secs(secs)
}

impl H {
    fn new(toml: &str) -> H {
        let cfg = AcdConfig::from_toml(toml).expect("valid config");
        H {
            e: Engine::new(&cfg, Millis(0)).expect("engine"),
        }
    }
    fn a(&self, name: &str) -> AgentId {
        self.e.agent_id(name).expect("agent exists")
    }
    fn drain(&mut self) -> Vec<Decision> {
        let mut v = Vec::new();
        while let Some(d) = self.e.poll_decision() {
            v.push(d);
        }
        self.e.check_invariants().expect("invariants");
        v
    }
    fn login(&mut self, t: u64, name: &str) -> Vec<Decision> {
        let a = self.a(name);
        self.e.agent_login(s(t), a, true).expect("login");
        self.drain()
    }
    fn call(&mut self, t: u64, id: u64, queue: &str, prio: i32) -> Vec<Decision> {
        let mut c = NewCall::new(CallId(id), self.e.queue_id(queue).expect("queue"));
        c.priority = prio;
        self.e.call_arrived(s(t), c).expect("arrive");
        self.drain()
    }
    fn answer(&mut self, t: u64, id: u64, name: &str) -> Vec<Decision> {
        let a = self.a(name);
        self.e.offer_answered(s(t), CallId(id), a).expect("answer");
        self.drain()
    }
    fn end(&mut self, t: u64, id: u64) -> Vec<Decision> {
        self.e.call_ended(s(t), CallId(id)).expect("end");
        self.drain()
    }
    fn tick(&mut self, t: u64) -> Vec<Decision> {
        self.e.handle_timeout(s(t));
        self.drain()
    }
    fn name(&self, a: AgentId) -> String {
        self.e.agent_snapshot(Millis(0), a).expect("agent").id
    }
    /// (call, agent name) of every Offer in `ds`.
    fn offers(&self, ds: &[Decision]) -> Vec<(u64, String)> {
        ds.iter()
            .filter_map(|d| match d {
                Decision::Offer { call, agent, .. } => Some((call.0, self.name(*agent))),
                _ => None,
            })
            .collect()
    }
    fn offer1(&self, ds: &[Decision]) -> (u64, String) {
        let o = self.offers(ds);
        assert_eq!(o.len(), 1, "expected one offer in {ds:?}");
        o[0].clone()
    }
    /// Answer, talk, hang up at once: the agent is free again at `t`.
    fn serve(&mut self, t: u64, id: u64, name: &str) -> Vec<Decision> {
        self.answer(t, id, name);
        self.end(t, id)
    }
}

fn agents(queue: &str, names: &[&str]) -> String {
    names
        .iter()
        .map(|n| format!("[[agent]]\nid = \"{n}\"\nqueues = {{ {queue} = 0 }}\n"))
        .collect()
}

fn with_strategy(strategy: &str) -> H {
    H::new(&format!(
        "[[queue]]\nname = \"q\"\nstrategy = \"{strategy}\"\n{}",
        agents("q", &["a", "b", "c"])
    ))
}

#[test]
fn longest_idle_gets_the_call() {
    let mut h = with_strategy("longest-idle");
    h.login(0, "a");
    h.login(1, "b");
    h.login(2, "c");
    let d = h.call(10, 1, "q", 0);
    assert_eq!(h.offer1(&d), (1, "a".into()));
    h.serve(11, 1, "a"); // a is now the most recently idle
    let d = h.call(20, 2, "q", 0);
    assert_eq!(h.offer1(&d), (2, "b".into()));
    let d = h.call(21, 3, "q", 0);
    assert_eq!(h.offer1(&d), (3, "c".into()));
}

#[test]
fn most_skilled_first() {
    let mut h = H::new(
        r#"
[[queue]]
name = "q"
strategy = "most-skilled"
skills = [{ skill = "billing", min = 2 }]
[[agent]]
id = "a"
skills = { billing = 3 }
queues = { q = 0 }
[[agent]]
id = "b"
skills = { billing = 9 }
queues = { q = 0 }
[[agent]]
id = "c"
skills = { billing = 5 }
queues = { q = 0 }
"#,
    );
    for n in ["a", "b", "c"] {
        h.login(0, n);
    }
    let d = h.call(1, 1, "q", 0);
    assert_eq!(h.offer1(&d), (1, "b".into()));
    let d = h.call(1, 2, "q", 0);
    assert_eq!(h.offer1(&d), (2, "c".into()));
}

#[test]
fn round_robin_remembers_and_linear_restarts() {
    let mut rr = with_strategy("round-robin");
    let mut lin = with_strategy("linear");
    for h in [&mut rr, &mut lin] {
        for n in ["a", "b", "c"] {
            h.login(0, n);
        }
    }
    let mut got_rr = Vec::new();
    let mut got_lin = Vec::new();
    for id in 1..=4 {
        let d = rr.call(id, id, "q", 0);
        let who = rr.offer1(&d).1;
        rr.serve(id, id, &who);
        got_rr.push(who);
        let d = lin.call(id, id, "q", 0);
        let who = lin.offer1(&d).1;
        lin.serve(id, id, &who);
        got_lin.push(who);
    }
    assert_eq!(got_rr, ["a", "b", "c", "a"]);
    assert_eq!(got_lin, ["a", "a", "a", "a"]);
}

#[test]
fn fewest_calls_beats_longest_idle() {
    let mut h = with_strategy("fewest-calls");
    h.login(0, "a");
    for id in 1..=2 {
        h.call(id, id, "q", 0);
        h.serve(id, id, "a");
    }
    h.login(50, "b"); // idle for less time than a, but has handled no calls
    let d = h.call(60, 3, "q", 0);
    assert_eq!(h.offer1(&d), (3, "b".into()));
}

#[test]
fn least_talk_time() {
    let mut h = with_strategy("least-talk-time");
    h.login(0, "a");
    h.login(0, "b");
    h.e.agent_not_ready(s(0), h.a("b"), 1).expect("nr");
    h.call(0, 1, "q", 0);
    h.answer(0, 1, "a");
    h.e.agent_ready(s(95), h.a("b")).expect("ready");
    h.call(95, 2, "q", 0);
    h.answer(95, 2, "b");
    h.end(100, 1); // a talked 100 s, idle since 100
    h.end(105, 2); // b talked 10 s, idle since 105
    let d = h.call(200, 3, "q", 0);
    assert_eq!(h.offer1(&d), (3, "b".into()));
}

#[test]
fn ring_all_rings_everyone_and_first_answer_wins() {
    let mut h = with_strategy("ring-all");
    for n in ["a", "b", "c"] {
        h.login(0, n);
    }
    let d = h.call(1, 1, "q", 0);
    let mut who: Vec<String> = h.offers(&d).into_iter().map(|o| o.1).collect();
    who.sort();
    assert_eq!(who, ["a", "b", "c"]);
    let d = h.answer(2, 1, "b");
    let cancelled: Vec<AgentId> = d
        .iter()
        .filter_map(|d| match d {
            Decision::CancelOffer { agent, .. } => Some(*agent),
            _ => None,
        })
        .collect();
    assert_eq!(cancelled.len(), 2);
    assert!(!cancelled.contains(&h.a("b")));
    assert_eq!(h.e.agent_state(h.a("a")).expect("a"), AgentState::Available);
    assert_eq!(
        h.e.agent_state(h.a("b")).expect("b"),
        AgentState::OnCall(CallId(1))
    );
}

#[test]
fn random_spreads_calls_over_agents() {
    let mut h = H::new(&format!(
        "seed = 42\n[[queue]]\nname = \"q\"\nstrategy = \"random\"\n{}",
        agents("q", &["a", "b", "c", "d"])
    ));
    for n in ["a", "b", "c", "d"] {
        h.login(0, n);
    }
    let mut count = std::collections::BTreeMap::new();
    for id in 1..=400 {
        let d = h.call(id, id, "q", 0);
        let who = h.offer1(&d).1;
        h.serve(id, id, &who);
        *count.entry(who).or_insert(0) += 1;
    }
    assert_eq!(count.len(), 4, "{count:?}");
    assert!(
        count.values().all(|&n| (60..=140).contains(&n)),
        "{count:?}"
    );
}

fn one_agent_busy(extra: &str) -> H {
    let mut h = H::new(&format!(
        "{extra}\n[[queue]]\nname = \"q\"\n{}",
        agents("q", &["a"])
    ));
    h.login(0, "a");
    h.call(0, 100, "q", 0);
    h.answer(0, 100, "a");
    h
}

#[test]
fn fifo_within_equal_priority() {
    let mut h = one_agent_busy("");
    for id in 1..=3 {
        h.call(id, id, "q", 0);
    }
    let d = h.end(10, 100);
    assert_eq!(h.offer1(&d).0, 1);
    h.answer(10, 1, "a");
    let d = h.end(11, 1);
    assert_eq!(h.offer1(&d).0, 2);
}

#[test]
fn higher_priority_goes_first() {
    let mut h = one_agent_busy("aging_secs = 60");
    h.call(1, 1, "q", 0);
    h.call(2, 2, "q", 10); // VIP
    let d = h.end(10, 100);
    assert_eq!(h.offer1(&d).0, 2);
}

#[test]
fn aging_lets_an_old_call_overtake_a_new_vip() {
    // 10 priority points are worth 600 s of waiting; call 1 has waited 700 s.
    let mut h = one_agent_busy("aging_secs = 60");
    h.call(0, 1, "q", 0);
    h.call(700, 2, "q", 10);
    let d = h.end(701, 100);
    assert_eq!(h.offer1(&d).0, 1);
}

#[test]
fn without_aging_priority_is_strict() {
    let mut h = one_agent_busy("aging_secs = 0");
    h.call(0, 1, "q", 0);
    h.call(100_000, 2, "q", 1);
    let d = h.end(100_001, 100);
    assert_eq!(h.offer1(&d).0, 2);
}

const BULLSEYE: &str = r#"
[[queue]]
name = "q"
skills = [{ skill = "tech", min = 8 }]
sites = ["office"]
overflow = [
  { after_secs = 30, min_proficiency = 5 },
  { after_secs = 60, add_queues = ["backup"] },
  { after_secs = 90, add_sites = ["home"] },
]
[[queue]]
name = "backup"
[[agent]]
id = "a"
skills = { tech = 6 }
queues = { q = 0 }
[[agent]]
id = "b"
queues = { backup = 0 }
[[agent]]
id = "h"
site = "home"
skills = { tech = 9 }
queues = { q = 0 }
"#;

#[test]
fn bullseye_relaxes_proficiency_after_its_step() {
    let mut h = H::new(BULLSEYE);
    h.login(0, "a");
    assert!(
        {
            let d = h.call(0, 1, "q", 0);
            h.offers(&d)
        }
        .is_empty()
    );
    assert_eq!(h.e.poll_timeout(), Some(s(30)));
    assert!(
        {
            let d = h.tick(29);
            h.offers(&d)
        }
        .is_empty()
    );
    let d = h.tick(30);
    assert!(d.contains(&Decision::Overflow {
        call: CallId(1),
        step: 0
    }));
    assert_eq!(h.offer1(&d), (1, "a".into()));
}

#[test]
fn bullseye_adds_overflow_queues_then_sites() {
    let mut h = H::new(BULLSEYE);
    h.login(0, "h"); // home agent, fully skilled, but not allowed at first
    h.call(0, 1, "q", 0);
    h.login(1, "b");
    assert!(
        {
            let d = h.tick(59);
            h.offers(&d)
        }
        .is_empty()
    );
    let d = h.tick(60);
    assert_eq!(h.offer1(&d), (1, "b".into()));
    h.answer(60, 1, "b");
    // A second call: b is busy now, so it waits for the home site.
    h.call(61, 2, "q", 0);
    assert!(
        {
            let d = h.tick(150);
            h.offers(&d)
        }
        .is_empty()
    );
    let d = h.tick(151);
    assert_eq!(h.offer1(&d), (2, "h".into()));
}

#[test]
fn missed_offer_makes_agent_not_ready_and_call_keeps_its_place() {
    let mut h = H::new(&format!(
        "[[queue]]\nname = \"q\"\nring_timeout_secs = 15\n{}",
        agents("q", &["a", "b"])
    ));
    h.login(0, "a");
    assert_eq!(
        {
            let d = h.call(1, 1, "q", 0);
            h.offer1(&d)
        },
        (1, "a".into())
    );
    h.call(2, 2, "q", 0);
    let d = h.tick(16);
    assert!(d.contains(&Decision::CancelOffer {
        call: CallId(1),
        agent: h.a("a")
    }));
    assert!(d.contains(&Decision::AgentStateChanged {
        agent: h.a("a"),
        state: AgentState::NotReady(NotReadyReason::MissedOffer)
    }));
    let d = h.login(20, "b");
    assert_eq!(
        h.offer1(&d),
        (1, "b".into()),
        "call 1 kept its place ahead of call 2"
    );
    assert_eq!(
        h.e.agent_snapshot(s(20), h.a("a"))
            .expect("a")
            .missed_offers,
        1
    );
}

#[test]
fn missed_offer_without_not_ready_goes_to_someone_else() {
    let mut h = H::new(&format!(
        "[[queue]]\nname = \"q\"\nring_timeout_secs = 15\nnot_ready_on_no_answer = false\n{}",
        agents("q", &["a"])
    ));
    h.login(0, "a");
    h.call(1, 1, "q", 0);
    h.call(2, 2, "q", 0);
    let d = h.tick(16);
    // a stays ready, is not offered call 1 again, and takes call 2.
    assert_eq!(h.offer1(&d), (2, "a".into()));
}

#[test]
fn rejected_offer_returns_call_to_its_place() {
    let mut h = with_strategy("linear");
    h.login(0, "a");
    h.login(0, "b");
    h.e.agent_not_ready(s(0), h.a("b"), 3).expect("nr");
    h.call(1, 1, "q", 0);
    h.call(2, 2, "q", 0);
    h.e.offer_rejected(s(3), CallId(1), h.a("a"))
        .expect("reject");
    let d = h.drain();
    assert_eq!(h.offer1(&d), (2, "a".into()));
    h.e.agent_ready(s(4), h.a("b")).expect("ready");
    let d = h.drain();
    assert_eq!(h.offer1(&d), (1, "b".into()));
}

fn fallback_reason(ds: &[Decision], id: u64) -> Option<FallbackReason> {
    ds.iter().find_map(|d| match d {
        Decision::Fallback { call, reason, .. } if call.0 == id => Some(*reason),
        _ => None,
    })
}

#[test]
fn leave_when_empty_sends_to_fallback_at_once() {
    let mut h = H::new(&format!(
        "[[queue]]\nname = \"q\"\nleave_when_empty = true\nfallback = {{ voicemail = \"4000\" }}\n{}",
        agents("q", &["a"])
    ));
    // Nobody logged in: refused immediately.
    let d = h.call(0, 1, "q", 0);
    assert_eq!(fallback_reason(&d, 1), Some(FallbackReason::Empty));
    assert!(d.iter().any(
        |d| matches!(d, Decision::Fallback { target: Fallback::Voicemail(v), .. } if v == "4000")
    ));
    // Logged in but busy: the call waits; when the last agent logs out it leaves.
    h.login(1, "a");
    h.call(1, 2, "q", 0);
    h.answer(1, 2, "a");
    h.call(2, 3, "q", 0);
    h.e.agent_logout(s(3), h.a("a")).expect("logout");
    assert!(h.drain().is_empty(), "still on a call: logout is pending");
    let d = h.end(4, 2);
    assert_eq!(fallback_reason(&d, 3), Some(FallbackReason::Empty));
    assert_eq!(h.e.call_count(), 0);
}

#[test]
fn join_when_empty_false_refuses_but_default_queues() {
    let mut h = H::new(&format!(
        "[[queue]]\nname = \"q\"\njoin_when_empty = false\n[[queue]]\nname = \"open\"\n{}",
        agents("q", &["a"])
    ));
    assert_eq!(
        fallback_reason(&h.call(0, 1, "q", 0), 1),
        Some(FallbackReason::Empty)
    );
    assert_eq!(fallback_reason(&h.call(0, 2, "open", 0), 2), None);
    assert_eq!(h.e.waiting_in(h.e.queue_id("open").expect("open")), 1);
}

#[test]
fn max_len_and_max_wait() {
    let mut h = H::new(&format!(
        "[[queue]]\nname = \"q\"\nmax_len = 1\nmax_wait_secs = 60\nfallback = {{ queue = \"other\" }}\n[[queue]]\nname = \"other\"\n{}",
        agents("q", &["a"])
    ));
    h.login(0, "a");
    h.e.agent_not_ready(s(0), h.a("a"), 1).expect("nr");
    h.call(0, 1, "q", 0);
    assert_eq!(
        fallback_reason(&h.call(1, 2, "q", 0), 2),
        Some(FallbackReason::QueueFull)
    );
    assert!(h.tick(59).is_empty());
    let d = h.tick(60);
    assert_eq!(fallback_reason(&d, 1), Some(FallbackReason::MaxWait));
    assert!(d.iter().any(
        |d| matches!(d, Decision::Fallback { target: Fallback::Queue(q), .. } if q == "other")
    ));
}

fn preferred_setup() -> H {
    let mut h = H::new(&format!(
        "[[queue]]\nname = \"q\"\npreferred_agent_secs = 30\n{}",
        agents("q", &["a", "b"])
    ));
    h.login(0, "a");
    h.call(0, 100, "q", 0);
    h.answer(0, 100, "a");
    h.login(0, "b");
    h
}

fn preferred_call(h: &mut H, t: u64, id: u64, agent: &str) -> Vec<Decision> {
    let mut c = NewCall::new(CallId(id), h.e.queue_id("q").expect("q"));
    c.preferred_agent = Some(h.a(agent));
    h.e.call_arrived(s(t), c).expect("arrive");
    h.drain()
}

#[test]
fn preferred_agent_is_waited_for() {
    let mut h = preferred_setup();
    assert!(
        {
            let d = preferred_call(&mut h, 1, 1, "a");
            h.offers(&d)
        }
        .is_empty(),
        "b is free but not preferred"
    );
    let d = h.end(10, 100);
    assert_eq!(h.offer1(&d), (1, "a".into()));
}

#[test]
fn preferred_agent_window_expires_to_the_queue() {
    let mut h = preferred_setup();
    preferred_call(&mut h, 1, 1, "a");
    assert!(
        {
            let d = h.tick(30);
            h.offers(&d)
        }
        .is_empty()
    );
    assert_eq!(
        {
            let d = h.tick(31);
            h.offer1(&d)
        },
        (1, "b".into())
    );
}

#[test]
fn agent_in_two_queues_takes_the_longest_waiting_call() {
    let toml = |w: i32| {
        format!(
            "aging_secs = 60\n[[queue]]\nname = \"q1\"\n[[queue]]\nname = \"q2\"\nweight = {w}\n[[agent]]\nid = \"x\"\nqueues = {{ q1 = 0, q2 = 0 }}\n"
        )
    };
    let mut h = H::new(&toml(0));
    h.call(0, 1, "q1", 0);
    h.call(10, 2, "q2", 0);
    assert_eq!(
        {
            let d = h.login(20, "x");
            h.offer1(&d)
        }
        .0,
        1
    );
    // With weight 1 (= 60 s at aging 60 s), q2's call effectively waited longer.
    let mut h = H::new(&toml(1));
    h.call(0, 1, "q1", 0);
    h.call(10, 2, "q2", 0);
    assert_eq!(
        {
            let d = h.login(20, "x");
            h.offer1(&d)
        }
        .0,
        2
    );
}

#[test]
fn announcements_give_position_and_ewt() {
    let mut h = H::new(&format!(
        "[[queue]]\nname = \"q\"\nannounce_secs = 30\nexpected_aht_secs = 120\n{}",
        agents("q", &["a", "b"])
    ));
    for (i, n) in ["a", "b"].iter().enumerate() {
        h.login(0, n);
        h.call(0, 100 + i as u64, "q", 0);
        h.answer(0, 100 + i as u64, n);
    }
    let mut got = Vec::new();
    for id in 1..=3 {
        for d in h.call(id, id, "q", 0) {
            if let Decision::Announce {
                call,
                position,
                ewt_secs,
            } = d
            {
                got.push((call.0, position, ewt_secs));
            }
        }
    }
    // 2 working agents, AHT 120 s: EWT = position × 60 s.
    assert_eq!(got, [(1, 1, 60), (2, 2, 120), (3, 3, 180)]);
    let est =
        h.e.estimate_wait(s(4), h.e.queue_id("q").expect("q"), 0)
            .expect("estimate");
    assert_eq!((est.position, est.ewt_secs), (4, 240));
    // A VIP would be first.
    let est =
        h.e.estimate_wait(s(4), h.e.queue_id("q").expect("q"), 5)
            .expect("estimate");
    assert_eq!(est.position, 1);
    let d = h.tick(31);
    assert!(d.contains(&Decision::Announce {
        call: CallId(1),
        position: 1,
        ewt_secs: 60
    }));
}

#[test]
fn callback_keeps_its_place_and_retries() {
    let mut h = one_agent_busy("");
    h.call(1, 1, "q", 0);
    h.call(2, 2, "q", 0);
    h.e.request_callback(s(5), CallId(1), "+4930123".into())
        .expect("callback");
    let d = h.end(10, 100);
    assert_eq!(
        d,
        [Decision::PlaceCallback {
            call: CallId(1),
            agent: h.a("a"),
            number: "+4930123".into()
        }]
    );
    // No answer: the agent takes the next call; the request retries after 120 s.
    h.e.callback_result(s(20), CallId(1), false)
        .expect("result");
    let d = h.drain();
    assert_eq!(h.offer1(&d), (2, "a".into()));
    h.serve(21, 2, "a");
    assert_eq!(h.e.agent_state(h.a("a")).expect("a"), AgentState::Available);
    let d = h.tick(140);
    assert!(matches!(d[..], [Decision::PlaceCallback { .. }]), "{d:?}");
    h.e.callback_result(s(150), CallId(1), true)
        .expect("connected");
    assert_eq!(
        h.e.agent_state(h.a("a")).expect("a"),
        AgentState::OnCall(CallId(1))
    );
    h.end(200, 1);
    assert_eq!(h.e.call_count(), 0);
}

#[test]
fn callback_gives_up_after_its_attempts() {
    let mut h = one_agent_busy("");
    h.e.agent_not_ready(s(0), h.a("a"), 1).expect("pending nr");
    h.call(1, 1, "q", 0);
    h.e.request_callback(s(1), CallId(1), "+1".into())
        .expect("callback");
    h.end(2, 100);
    for attempt in 0..3u64 {
        h.e.agent_ready(s(3 + attempt * 200), h.a("a"))
            .expect("ready");
        let d = h.tick(3 + attempt * 200);
        assert!(h.drain().is_empty());
        let placed = d
            .iter()
            .any(|d| matches!(d, Decision::PlaceCallback { .. }))
            || h.e.agent_state(h.a("a")).expect("a") == AgentState::Reserved(CallId(1));
        assert!(placed, "attempt {attempt}");
        h.e.callback_result(s(4 + attempt * 200), CallId(1), false)
            .expect("fail");
        let d = h.drain();
        if attempt < 2 {
            assert!(fallback_reason(&d, 1).is_none());
            h.e.agent_not_ready(s(5 + attempt * 200), h.a("a"), 1)
                .expect("nr");
            h.tick(4 + attempt * 200 + 120);
        } else {
            assert_eq!(fallback_reason(&d, 1), Some(FallbackReason::CallbackFailed));
        }
    }
}

fn caller_call(h: &mut H, t: u64, id: u64, caller: &str) -> Vec<Decision> {
    let mut c = NewCall::new(CallId(id), h.e.queue_id("q").expect("q"));
    c.caller = Some(caller.into());
    h.e.call_arrived(s(t), c).expect("arrive");
    h.drain()
}

#[test]
fn abandoned_caller_calling_back_resumes_their_place() {
    let mut h = one_agent_busy("resume_window_secs = 300");
    caller_call(&mut h, 1, 1, "+49301");
    caller_call(&mut h, 2, 2, "+49302");
    h.e.call_abandoned(s(10), CallId(1)).expect("abandon");
    caller_call(&mut h, 60, 3, "+49301"); // back within 5 minutes
    let d = h.end(70, 100);
    assert_eq!(h.offer1(&d).0, 3);
}

#[test]
fn abandoned_caller_after_the_window_starts_over() {
    let mut h = one_agent_busy("resume_window_secs = 300");
    caller_call(&mut h, 1, 1, "+49301");
    caller_call(&mut h, 2, 2, "+49302");
    h.e.call_abandoned(s(10), CallId(1)).expect("abandon");
    caller_call(&mut h, 400, 3, "+49301");
    let d = h.end(410, 100);
    assert_eq!(h.offer1(&d).0, 2);
}

#[test]
fn wrap_up_is_timed_extendable_and_can_end_early() {
    let mut h = H::new(&format!(
        "[[queue]]\nname = \"q\"\nwrapup_secs = 30\n{}",
        agents("q", &["a"])
    ));
    h.login(0, "a");
    h.call(0, 1, "q", 0);
    h.serve(10, 1, "a");
    assert_eq!(h.e.agent_state(h.a("a")).expect("a"), AgentState::WrapUp);
    h.e.extend_wrapup(s(20), h.a("a"), 10).expect("extend");
    assert!(h.tick(40 - 1).is_empty());
    let d = h.tick(50);
    assert_eq!(
        d,
        [Decision::AgentStateChanged {
            agent: h.a("a"),
            state: AgentState::Available
        }]
    );
    // Early end.
    h.call(60, 2, "q", 0);
    h.serve(61, 2, "a");
    h.e.wrapup_done(s(62), h.a("a")).expect("done");
    assert_eq!(h.e.agent_state(h.a("a")).expect("a"), AgentState::Available);
    let snap =
        h.e.queue_snapshot(s(62), h.e.queue_id("q").expect("q"))
            .expect("snap");
    // Handle times: (0 talk + 40 wrap) and (0 + 1).
    assert_eq!(snap.handled, 2);
    assert_eq!(snap.aht_secs, Some(20.5));
}

#[test]
fn statistics_follow_the_documented_definitions() {
    let mut h = H::new(&format!(
        "short_abandon_secs = 5\n[[queue]]\nname = \"q\"\nsl_secs = 20\n{}",
        agents("q", &["a"])
    ));
    h.login(0, "a");
    h.e.agent_not_ready(s(0), h.a("a"), 1).expect("nr");
    for id in 1..=4 {
        h.call(0, id, "q", 0);
    }
    h.e.call_abandoned(s(3), CallId(3)).expect("short abandon");
    h.e.call_abandoned(s(50), CallId(4)).expect("abandon");
    h.e.agent_ready(s(10), h.a("a")).expect("ready");
    h.drain();
    h.serve(10, 1, "a"); // waited 10 s: in SL
    h.answer(30, 2, "a"); // waited 30 s: out of SL
    let snap =
        h.e.queue_snapshot(s(100), h.e.queue_id("q").expect("q"))
            .expect("snap");
    assert_eq!(
        (
            snap.offered,
            snap.answered,
            snap.abandoned,
            snap.short_abandoned
        ),
        (4, 2, 2, 1)
    );
    assert_eq!(snap.service_level, Some(1.0 / 3.0));
    assert_eq!(snap.asa_secs, Some(20.0));
    assert_eq!(snap.abandon_rate, Some(1.0 / 3.0));
    assert_eq!(snap.agents.on_call, 1);
    // a: not ready 0–10, busy (reserved/on call) 10–100, never idle → occupancy 1.
    assert_eq!(snap.occupancy, Some(1.0));
    let a = h.e.agent_snapshot(s(100), h.a("a")).expect("a");
    assert_eq!(
        (a.not_ready_secs, a.logged_in_secs, a.calls_handled),
        (10.0, 100.0, 1)
    );
}

#[test]
fn bad_events_are_errors_not_panics() {
    let mut h = with_strategy("linear");
    h.login(0, "a");
    assert_eq!(
        h.e.call_ended(s(1), CallId(9)),
        Err(AcdError::NoSuchCall(CallId(9)))
    );
    h.call(1, 1, "q", 0);
    assert!(matches!(
        h.e.offer_answered(s(2), CallId(1), h.a("b")),
        Err(AcdError::InvalidState { .. })
    ));
    assert!(matches!(
        h.e.call_ended(s(2), CallId(1)),
        Err(AcdError::InvalidState { .. })
    ));
    let q = h.e.queue_id("q").expect("q");
    assert_eq!(
        h.e.call_arrived(s(2), NewCall::new(CallId(1), q)),
        Err(AcdError::DuplicateCall(CallId(1)))
    );
    assert_eq!(
        h.e.agent_login(s(2), AgentId(99), true),
        Err(AcdError::NoSuchAgent(AgentId(99)))
    );
    assert!(matches!(
        h.e.agent_login(s(2), h.a("a"), true),
        Err(AcdError::InvalidState { .. })
    ));
    let mut bad = NewCall::new(CallId(2), q);
    bad.skills = vec![("x".into(), 11)];
    assert!(matches!(
        h.e.call_arrived(s(2), bad),
        Err(AcdError::InvalidConfig { .. })
    ));
}

#[test]
fn lower_penalty_tier_first_even_if_others_idle_longer() {
    let mut h = H::new(
        "[[queue]]\nname = \"q\"\n[[agent]]\nid = \"backup\"\nqueues = { q = 1 }\n[[agent]]\nid = \"main\"\nqueues = { q = 0 }\n",
    );
    h.login(0, "backup");
    h.login(50, "main");
    let d = h.call(60, 1, "q", 0);
    assert_eq!(h.offer1(&d), (1, "main".into()));
    let d = h.call(61, 2, "q", 0);
    assert_eq!(
        h.offer1(&d),
        (2, "backup".into()),
        "the higher tier serves when the lower is busy"
    );
}

#[test]
fn snapshot_reports_waiting_and_longest_wait() {
    let mut h = one_agent_busy("");
    h.call(10, 1, "q", 0);
    h.call(40, 2, "q", 0);
    let snap = h.e.snapshot(s(100));
    let q = &snap.queues[0];
    assert_eq!((q.waiting, q.longest_wait_secs), (2, 90.0));
    assert_eq!(q.agents.on_call, 1);
    assert_eq!(snap.agents[0].state, AgentState::OnCall(CallId(100)));
    assert_eq!(snap.agents[0].state_secs, 100.0);
}

#[test]
fn reskilling_an_agent_takes_effect_at_once() {
    let mut h = H::new(
        "[[queue]]\nname = \"q\"\nskills = [{ skill = \"fr\", min = 5 }]\nleave_when_empty = true\n\
         [[queue]]\nname = \"other\"\n[[agent]]\nid = \"a\"\nskills = { fr = 3 }\nqueues = { q = 0, other = 0 }\n\
         [[agent]]\nid = \"b\"\nskills = { fr = 9 }\nqueues = { q = 0 }\n",
    );
    h.login(0, "a");
    h.login(0, "b");
    h.e.agent_not_ready(s(0), h.a("b"), 1).expect("nr");
    assert!(
        {
            let d = h.call(1, 1, "q", 0);
            h.offers(&d)
        }
        .is_empty(),
        "a lacks fr 5"
    );
    let mut cfg = hotline_acd::AgentConfig::new("a", &["q", "other"]);
    cfg.skills.insert("fr".into(), 6);
    h.e.update_agent(s(2), &cfg).expect("update");
    let d = h.drain();
    assert_eq!(h.offer1(&d), (1, "a".into()));
    // Taking b out of q leaves q with a only; taking a out too empties it.
    h.answer(3, 1, "a");
    h.call(4, 2, "q", 0);
    h.e.update_agent(s(5), &hotline_acd::AgentConfig::new("b", &[]))
        .expect("update");
    assert!(h.drain().is_empty(), "a can still serve q");
    h.e.update_agent(s(6), &hotline_acd::AgentConfig::new("a", &["other"]))
        .expect("update");
    let d = h.drain();
    assert_eq!(fallback_reason(&d, 2), Some(FallbackReason::Empty));
    assert_eq!(
        h.e.agent_state(h.a("a")).expect("a"),
        AgentState::OnCall(CallId(1)),
        "call undisturbed"
    );
    assert!(matches!(
        h.e.update_agent(s(7), &hotline_acd::AgentConfig::new("zed", &[])),
        Err(AcdError::UnknownAgent(_))
    ));
    assert!(matches!(
        h.e.update_agent(s(7), &hotline_acd::AgentConfig::new("a", &["ghost"])),
        Err(AcdError::InvalidConfig { .. })
    ));
}

#[test]
fn editing_a_queue_while_calls_wait() {
    let mut h = H::new(
        "[[queue]]\nname = \"q\"\nskills = [{ skill = \"fr\", min = 5 }]\n\
         [[agent]]\nid = \"a\"\nskills = { fr = 3 }\nqueues = { q = 0 }\n\
         [[agent]]\nid = \"b\"\nskills = { fr = 4 }\nqueues = { q = 0 }\n",
    );
    h.login(0, "a");
    h.login(1, "b");
    h.call(2, 1, "q", 0);
    h.call(3, 2, "q", 0);
    assert_eq!(h.e.waiting_in(h.e.queue_id("q").expect("q")), 2);
    let mut q = hotline_acd::QueueConfig::new("q");
    q.skills = vec![hotline_acd::SkillReq {
        skill: "fr".into(),
        min: 4,
    }];
    q.strategy = hotline_acd::Strategy::MostSkilled;
    h.e.update_queue(s(4), &q).expect("update");
    let d = h.drain();
    // Only b qualifies now, and takes the first call in line.
    assert_eq!(h.offers(&d), [(1, "b".to_string())]);
    q.skills[0].min = 3;
    h.e.update_queue(s(5), &q).expect("update");
    let d = h.drain();
    assert_eq!(h.offers(&d), [(2, "a".to_string())]);
    // Validation as on load: unknown overflow queue, self-fallback, unknown queue name.
    q.overflow = vec![hotline_acd::OverflowStep {
        after_secs: 5,
        min_proficiency: None,
        add_queues: vec!["nope".into()],
        add_sites: Vec::new(),
        any_site: false,
    }];
    assert!(matches!(
        h.e.update_queue(s(6), &q),
        Err(AcdError::InvalidConfig { .. })
    ));
    q.overflow.clear();
    q.fallback = Fallback::Queue("q".into());
    assert!(matches!(
        h.e.update_queue(s(6), &q),
        Err(AcdError::InvalidConfig { .. })
    ));
    assert!(matches!(
        h.e.update_queue(s(6), &hotline_acd::QueueConfig::new("new")),
        Err(AcdError::UnknownQueue(_))
    ));
}

#[test]
fn a_call_needing_a_skill_nobody_has_leaves_at_once_when_leave_when_empty() {
    let mut h = H::new(&format!(
        "[[queue]]\nname = \"q\"\nleave_when_empty = true\n{}",
        agents("q", &["a"])
    ));
    h.login(0, "a");
    h.e.agent_not_ready(s(0), h.a("a"), 1).expect("nr");
    let mut c = NewCall::new(CallId(1), h.e.queue_id("q").expect("q"));
    c.skills = vec![("klingon".into(), 1)];
    h.e.call_arrived(s(1), c).expect("arrive");
    assert_eq!(fallback_reason(&h.drain(), 1), Some(FallbackReason::Empty));
    // A plain call waits for the (not-ready but logged-in) agent.
    assert_eq!(fallback_reason(&h.call(2, 2, "q", 0), 2), None);
}

#[test]
fn customer_tier_sets_the_priority() {
    let mut h = one_agent_busy("tier_priority = { vip = 10, gold = 5 }");
    let q = h.e.queue_id("q").expect("q");
    for (id, tier) in [
        (1, None),
        (2, Some("gold")),
        (3, Some("vip")),
        (4, Some("unknown")),
    ] {
        let mut c = NewCall::new(CallId(id), q);
        c.tier = tier.map(String::from);
        h.e.call_arrived(s(id), c).expect("arrive");
    }
    let mut order = Vec::new();
    let mut prev = 100;
    for t in 10..14 {
        let d = h.end(t, prev);
        let (next, _) = h.offer1(&d);
        h.answer(t, next, "a");
        order.push(next);
        prev = next;
    }
    assert_eq!(order, [3, 2, 1, 4]);
    assert!(AcdConfig::from_toml("tier_priority = { vip = 5000 }").is_err());
}

/// q (leave/join-when-empty as given) overflows to `over` after 30 s; `en` speaks English only, `de`
/// German; `far` speaks German but works at home, which q never reaches; `ov` is in `over`.
fn language_center(leave: bool, join: bool) -> H {
    H::new(&format!(
        "[[queue]]\nname = \"q\"\nleave_when_empty = {leave}\njoin_when_empty = {join}\n\
         sites = [\"office\"]\n\
         overflow = [{{ after_secs = 30, add_queues = [\"over\"] }}]\n\
         [[queue]]\nname = \"over\"\n\
         [[agent]]\nid = \"en\"\nskills = {{ en = 9 }}\nqueues = {{ q = 0 }}\n\
         [[agent]]\nid = \"de\"\nskills = {{ de = 9 }}\nqueues = {{ q = 0 }}\n\
         [[agent]]\nid = \"far\"\nsite = \"home\"\nskills = {{ de = 9 }}\nqueues = {{ q = 0 }}\n\
         [[agent]]\nid = \"ov\"\nskills = {{ de = 3 }}\nqueues = {{ over = 0 }}\n"
    ))
}

fn lang_call(h: &mut H, t: u64, id: u64, lang: &str, min: u8) -> Vec<Decision> {
    let mut c = NewCall::new(CallId(id), h.e.queue_id("q").expect("q"));
    c.skills = vec![(lang.into(), min)];
    h.e.call_arrived(s(t), c).expect("arrive");
    h.drain()
}

#[test]
fn a_call_needing_a_language_no_logged_in_agent_speaks_is_refused_at_once() {
    let mut h = language_center(true, true);
    h.login(0, "en");
    h.login(0, "far");
    // Only the home agent speaks German, and q never reaches the home site.
    assert_eq!(
        fallback_reason(&lang_call(&mut h, 1, 1, "de", 5), 1),
        Some(FallbackReason::Empty)
    );
    // An English call is fine.
    assert_eq!(fallback_reason(&lang_call(&mut h, 1, 2, "en", 5), 2), None);
    // The overflow queue's agent speaks German at 3: enough for a call needing 3, which
    // waits for the overflow step instead of leaving; not enough for one needing 5.
    h.login(2, "ov");
    assert_eq!(fallback_reason(&lang_call(&mut h, 3, 3, "de", 3), 3), None);
    assert_eq!(
        fallback_reason(&lang_call(&mut h, 3, 4, "de", 5), 4),
        Some(FallbackReason::Empty)
    );
    let d = h.tick(33);
    assert_eq!(h.offers(&d), [(3, "ov".to_string())]);
    // join_when_empty = false refuses in the same way.
    let mut h = language_center(false, false);
    h.login(0, "en");
    assert_eq!(
        fallback_reason(&lang_call(&mut h, 1, 1, "de", 1), 1),
        Some(FallbackReason::Empty)
    );
    h.login(1, "de");
    assert_eq!(fallback_reason(&lang_call(&mut h, 2, 2, "de", 1), 2), None);
}

#[test]
fn logout_of_the_last_speaker_strands_the_calls_needing_the_language() {
    let mut h = language_center(true, true);
    h.login(0, "en");
    h.login(0, "de");
    // Both busy; a German call, an English call and another German call wait.
    h.call(1, 100, "q", 0);
    h.answer(1, 100, "en");
    h.call(1, 101, "q", 0);
    h.answer(1, 101, "de");
    lang_call(&mut h, 2, 1, "de", 5);
    lang_call(&mut h, 3, 2, "en", 5);
    lang_call(&mut h, 4, 3, "de", 5);
    h.e.agent_logout(s(5), h.a("de")).expect("logout");
    assert!(h.drain().is_empty(), "logout pending while on a call");
    let d = h.end(6, 101);
    // Both German calls leave at once, in queue order; the English call keeps waiting.
    let gone: Vec<u64> = d
        .iter()
        .filter_map(|d| match d {
            Decision::Fallback {
                call,
                reason: FallbackReason::Empty,
                ..
            } => Some(call.0),
            _ => None,
        })
        .collect();
    assert_eq!(gone, [1, 3]);
    assert_eq!(fallback_reason(&d, 2), None);
    assert_eq!(h.e.waiting_in(h.e.queue_id("q").expect("q")), 1);
    // The remaining agent takes the English call.
    let d = h.end(7, 100);
    assert_eq!(h.offer1(&d), (2, "en".into()));
}

#[test]
fn an_overflow_agent_keeps_a_call_servable_until_they_log_out() {
    let mut h = language_center(true, true);
    h.login(0, "en");
    h.login(0, "ov");
    h.e.agent_not_ready(s(0), h.a("ov"), 1).expect("nr");
    h.drain();
    // Nobody in q speaks German, but `ov` in the overflow queue does (at 3).
    assert_eq!(fallback_reason(&lang_call(&mut h, 1, 1, "de", 2), 1), None);
    h.e.agent_logout(s(2), h.a("ov")).expect("logout");
    assert_eq!(fallback_reason(&h.drain(), 1), Some(FallbackReason::Empty));
    assert_eq!(h.e.call_count(), 0);
}

#[test]
fn reskilling_away_the_last_speaker_strands_the_calls_needing_the_language() {
    let mut h = language_center(true, true);
    h.login(0, "en");
    h.login(0, "de");
    h.e.agent_not_ready(s(0), h.a("de"), 1).expect("nr");
    h.e.agent_not_ready(s(0), h.a("en"), 1).expect("nr");
    h.drain();
    lang_call(&mut h, 1, 1, "de", 5);
    lang_call(&mut h, 1, 2, "en", 5);
    // Still speaks German, at 6: the call stays.
    let mut cfg = hotline_acd::AgentConfig::new("de", &["q"]);
    cfg.skills.insert("de".into(), 6);
    h.e.update_agent(s(2), &cfg).expect("update");
    assert!(h.drain().is_empty());
    // Down to 4, below the call's 5: nobody could ever take it.
    cfg.skills.insert("de".into(), 4);
    h.e.update_agent(s(3), &cfg).expect("update");
    let d = h.drain();
    assert_eq!(fallback_reason(&d, 1), Some(FallbackReason::Empty));
    assert_eq!(fallback_reason(&d, 2), None);
}

#[test]
fn a_ringing_call_whose_last_able_agent_was_reskilled_leaves_when_the_offer_fails() {
    let mut h = language_center(true, true);
    h.login(0, "de");
    let d = lang_call(&mut h, 1, 1, "de", 5);
    assert_eq!(h.offer1(&d), (1, "de".into()));
    let mut cfg = hotline_acd::AgentConfig::new("de", &["q"]);
    cfg.skills.insert("de".into(), 2);
    h.e.update_agent(s(2), &cfg).expect("update");
    assert!(h.drain().is_empty(), "the ringing call is left alone");
    h.e.offer_rejected(s(3), CallId(1), h.a("de"))
        .expect("reject");
    assert_eq!(fallback_reason(&h.drain(), 1), Some(FallbackReason::Empty));
    assert_eq!(h.e.call_count(), 0);
}

fn ring_all(limit: &str, names: &[&str]) -> H {
    H::new(&format!(
        "[[queue]]\nname = \"q\"\nstrategy = \"ring-all\"\n{limit}\n{}",
        agents("q", names)
    ))
}

fn cancelled(h: &H, ds: &[Decision]) -> Vec<String> {
    ds.iter()
        .filter_map(|d| match d {
            Decision::CancelOffer { agent, .. } => Some(h.name(*agent)),
            _ => None,
        })
        .collect()
}

#[test]
fn ring_all_agents_who_become_free_join_the_ring() {
    let mut h = ring_all("", &["a", "b", "c"]);
    h.login(0, "a");
    let d = h.call(1, 1, "q", 0);
    assert_eq!(h.offer1(&d), (1, "a".into()));
    // b logs in while it rings, c comes out of not-ready: both join.
    let d = h.login(2, "b");
    assert_eq!(h.offer1(&d), (1, "b".into()));
    let c = h.a("c");
    h.e.agent_login(s(3), c, false).expect("login");
    h.drain();
    h.e.agent_ready(s(4), c).expect("ready");
    let d = h.drain();
    assert_eq!(h.offer1(&d), (1, "c".into()));
    // c answers: a and b stop ringing and are free again.
    let d = h.answer(5, 1, "c");
    let mut gone = cancelled(&h, &d);
    gone.sort();
    assert_eq!(gone, ["a", "b"]);
    for n in ["a", "b"] {
        assert_eq!(h.e.agent_state(h.a(n)).expect(n), AgentState::Available);
    }
}

#[test]
fn ring_all_limit_caps_the_ring_and_a_free_slot_is_refilled() {
    let mut h = ring_all("ring_all_limit = 2", &["a", "b", "c"]);
    for n in ["a", "b", "c"] {
        h.login(0, n);
    }
    let d = h.call(1, 1, "q", 0);
    let mut who: Vec<String> = h.offers(&d).into_iter().map(|o| o.1).collect();
    who.sort();
    assert_eq!(who, ["a", "b"], "config order, two at most");
    assert_eq!(h.e.agent_state(h.a("c")).expect("c"), AgentState::Available);
    // a declines: its slot goes to c, who was waiting idle.
    h.e.offer_rejected(s(2), CallId(1), h.a("a"))
        .expect("reject");
    let d = h.drain();
    assert_eq!(h.offer1(&d), (1, "c".into()));
    // And a, free again, does not rejoin the call it declined.
    assert_eq!(h.e.agent_state(h.a("a")).expect("a"), AgentState::Available);
}

#[test]
fn ring_all_limit_defaults_to_twenty_and_zero_means_everyone() {
    let names: Vec<String> = (0..25).map(|i| format!("a{i}")).collect();
    let refs: Vec<&str> = names.iter().map(String::as_str).collect();
    for (limit, rung) in [("", 20), ("ring_all_limit = 0", 25)] {
        let mut h = ring_all(limit, &refs);
        for n in &refs {
            h.login(0, n);
        }
        let d = h.call(1, 1, "q", 0);
        assert_eq!(h.offers(&d).len(), rung, "{limit:?}");
    }
}

#[test]
fn a_late_joiner_is_not_blamed_for_the_ring_timeout() {
    let mut h = ring_all("ring_timeout_secs = 15", &["a", "b"]);
    h.login(0, "a");
    h.call(1, 1, "q", 0);
    let d = h.login(10, "b");
    assert_eq!(h.offer1(&d), (1, "b".into()));
    // a rang the full 15 s and goes not-ready; b rang 6 s: the call rings on at b alone.
    let d = h.tick(16);
    let mut gone = cancelled(&h, &d);
    gone.sort();
    assert_eq!(gone, ["a", "b"]);
    assert_eq!(h.offer1(&d), (1, "b".into()));
    assert_eq!(
        h.e.agent_state(h.a("a")).expect("a"),
        AgentState::NotReady(NotReadyReason::MissedOffer)
    );
    assert_eq!(
        h.e.agent_state(h.a("b")).expect("b"),
        AgentState::Reserved(CallId(1))
    );
    // The new ring has its own full timeout.
    assert_eq!(h.e.poll_timeout(), Some(s(31)));
}

#[test]
fn a_refused_call_back_keeps_the_saved_place_for_the_next_try() {
    let mut h = H::new(&format!(
        "resume_window_secs = 300\n[[queue]]\nname = \"q\"\nmax_len = 2\n{}",
        agents("q", &["a"])
    ));
    h.login(0, "a");
    h.call(0, 100, "q", 0);
    h.answer(0, 100, "a");
    caller_call(&mut h, 1, 1, "+49301");
    caller_call(&mut h, 2, 2, "+49302");
    h.e.call_abandoned(s(10), CallId(1)).expect("abandon");
    h.call(11, 4, "q", 0);
    // The queue is full: the caller is refused, but their place is not used up.
    let d = caller_call(&mut h, 20, 3, "+49301");
    assert_eq!(fallback_reason(&d, 3), Some(FallbackReason::QueueFull));
    h.e.call_abandoned(s(30), CallId(4)).expect("abandon");
    caller_call(&mut h, 40, 5, "+49301");
    let d = h.end(50, 100);
    assert_eq!(
        h.offer1(&d).0,
        5,
        "back at the place of call 1, ahead of call 2"
    );
}
