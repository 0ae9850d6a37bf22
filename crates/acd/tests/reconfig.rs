//! Live routing edits on a running engine: queues added and retired while calls wait.

use hotline_acd::{
    AcdConfig, AgentConfig, CallId, Decision, Engine, Fallback, FallbackReason, Millis, NewCall,
    QueueConfig,
};

fn drain(e: &mut Engine) -> Vec<Decision> {
    let mut v = Vec::new();
    while let Some(d) = e.poll_decision() {
        v.push(d);
    }
    e.check_invariants().expect("invariants");
    v
}

fn fallbacks(d: &[Decision]) -> Vec<(u64, Fallback, FallbackReason)> {
    d.iter()
        .filter_map(|d| match d {
            Decision::Fallback {
                call,
                target,
                reason,
                ..
            } => Some((call.0, target.clone(), *reason)),
            _ => None,
        })
        .collect()
}

/// A retired queue sends its waiting calls to its fallback oldest first, leaves the call
/// in talk alone, and refuses later arrivals to the fallback.
#[test]
fn retired_queue_drains_waiting_calls_to_its_fallback_in_order() {
    let cfg = AcdConfig::from_toml(
        "[[queue]]\nname = \"old\"\nfallback = { queue = \"main\" }\n[[queue]]\nname = \"main\"\n\
         [[agent]]\nid = \"bob\"\nqueues = { old = 0 }\n",
    )
    .unwrap();
    let mut e = Engine::new(&cfg, Millis(0)).unwrap();
    let bob = e.agent_id("bob").unwrap();
    e.agent_login(Millis(0), bob, true).unwrap();
    let old = e.queue_id("old").unwrap();
    for (t, id) in [(1, 1), (2, 2), (3, 3), (4, 4)] {
        e.call_arrived(Millis::from_secs(t), NewCall::new(CallId(id), old))
            .unwrap();
    }
    // Call 1 goes to bob and is answered; 2, 3, 4 wait.
    drain(&mut e);
    e.offer_answered(Millis::from_secs(5), CallId(1), bob)
        .unwrap();
    drain(&mut e);
    e.retire_queue(Millis::from_secs(6), "old").unwrap();
    let to_main = Fallback::Queue("main".into());
    let got = fallbacks(&drain(&mut e));
    assert_eq!(
        got,
        vec![
            (2, to_main.clone(), FallbackReason::Removed),
            (3, to_main.clone(), FallbackReason::Removed),
            (4, to_main.clone(), FallbackReason::Removed),
        ]
    );
    // The call in talk is untouched; it ends normally.
    e.call_ended(Millis::from_secs(7), CallId(1)).unwrap();
    drain(&mut e);
    e.call_arrived(Millis::from_secs(8), NewCall::new(CallId(5), old))
        .unwrap();
    let got = fallbacks(&drain(&mut e));
    assert_eq!(got, vec![(5, to_main, FallbackReason::QueueFull)]);
}

/// A queue added at run time takes calls; an agent re-skilled into it is offered them.
#[test]
fn added_queue_takes_calls_for_agents_moved_into_it() {
    let cfg = AcdConfig::from_toml(
        "[[queue]]\nname = \"main\"\n[[agent]]\nid = \"bob\"\nqueues = { main = 0 }\n",
    )
    .unwrap();
    let mut e = Engine::new(&cfg, Millis(0)).unwrap();
    let bob = e.agent_id("bob").unwrap();
    e.agent_login(Millis(0), bob, true).unwrap();
    let mut q = QueueConfig::new("vip");
    q.fallback = Fallback::Queue("main".into());
    let vip = e.add_queue(&q).unwrap();
    assert!(e.add_queue(&q).is_err(), "duplicate name refused");
    let mut bad = QueueConfig::new("bad");
    bad.fallback = Fallback::Queue("nowhere".into());
    assert!(e.add_queue(&bad).is_err(), "unknown fallback refused");
    assert_eq!(e.queue_id("bad"), None, "a refused queue leaves no trace");
    e.update_agent(Millis(1), &AgentConfig::new("bob", &["vip"]))
        .unwrap();
    e.call_arrived(Millis(2), NewCall::new(CallId(9), vip))
        .unwrap();
    let offers: Vec<u64> = drain(&mut e)
        .iter()
        .filter_map(|d| match d {
            Decision::Offer { call, .. } => Some(call.0),
            _ => None,
        })
        .collect();
    assert_eq!(offers, vec![9]);
}

/// A queue's new strategy decides the very next offer: with `linear`, ann (first in the
/// file) gets every call while she is free; after the switch to `fewest-calls`, bea (who
/// has taken none) gets the next one.
#[test]
fn new_strategy_applies_to_the_next_decision() {
    let cfg = AcdConfig::from_toml(
        "[[queue]]\nname = \"q\"\nstrategy = \"linear\"\nwrapup_secs = 0\n\
         [[agent]]\nid = \"ann\"\nqueues = { q = 0 }\n[[agent]]\nid = \"bea\"\nqueues = { q = 0 }\n",
    )
    .unwrap();
    let mut e = Engine::new(&cfg, Millis(0)).unwrap();
    let q = e.queue_id("q").unwrap();
    let (ann, bea) = (e.agent_id("ann").unwrap(), e.agent_id("bea").unwrap());
    e.agent_login(Millis(0), ann, true).unwrap();
    e.agent_login(Millis(0), bea, true).unwrap();
    let offered = |d: &[Decision]| -> Vec<(u64, hotline_acd::AgentId)> {
        d.iter()
            .filter_map(|d| match d {
                Decision::Offer { call, agent, .. } => Some((call.0, *agent)),
                _ => None,
            })
            .collect()
    };
    e.call_arrived(Millis(1), NewCall::new(CallId(1), q))
        .unwrap();
    assert_eq!(offered(&drain(&mut e)), vec![(1, ann)], "linear: ann first");
    e.offer_answered(Millis(2), CallId(1), ann).unwrap();
    e.call_ended(Millis(3), CallId(1)).unwrap();
    e.handle_timeout(Millis(4));
    drain(&mut e);
    assert_eq!(
        e.agent_state(ann).unwrap(),
        hotline_acd::AgentState::Available
    );
    let mut changed = cfg.queues[0].clone();
    changed.strategy = hotline_acd::Strategy::FewestCalls;
    e.update_queue(Millis(5), &changed).unwrap();
    drain(&mut e);
    e.call_arrived(Millis(6), NewCall::new(CallId(2), q))
        .unwrap();
    assert_eq!(
        offered(&drain(&mut e)),
        vec![(2, bea)],
        "fewest calls: bea, not linear's ann"
    );
}

/// Pending callback requests of a retired queue are not dropped: they move to the
/// fallback queue, keep their places (ordered by arrival against that queue's own
/// callers) and are placed from there; a plain waiting call falls back as before.
#[test]
fn retired_queue_moves_pending_callbacks_to_its_fallback_queue_in_place_order() {
    let cfg = AcdConfig::from_toml(
        "[[queue]]\nname = \"old\"\nfallback = { queue = \"main\" }\n[[queue]]\nname = \"main\"\n\
         [[agent]]\nid = \"bob\"\nqueues = { old = 0 }\n[[agent]]\nid = \"carol\"\nqueues = { main = 0 }\n",
    )
    .unwrap();
    let mut e = Engine::new(&cfg, Millis(0)).unwrap();
    let bob = e.agent_id("bob").unwrap();
    let carol = e.agent_id("carol").unwrap();
    e.agent_login(Millis(0), bob, true).unwrap();
    e.agent_login(Millis(0), carol, false).unwrap();
    let (old, main) = (e.queue_id("old").unwrap(), e.queue_id("main").unwrap());
    // 1 talks to bob; 2 and 4 leave callback requests in old; 3 waits in old; 10 waits
    // in main, having arrived between 2 and 4.
    e.call_arrived(Millis::from_secs(1), NewCall::new(CallId(1), old))
        .unwrap();
    drain(&mut e);
    e.offer_answered(Millis::from_secs(1), CallId(1), bob)
        .unwrap();
    e.call_arrived(Millis::from_secs(2), NewCall::new(CallId(2), old))
        .unwrap();
    e.call_arrived(Millis::from_secs(3), NewCall::new(CallId(3), old))
        .unwrap();
    e.call_arrived(Millis::from_secs(3), NewCall::new(CallId(10), main))
        .unwrap();
    e.call_arrived(Millis::from_secs(4), NewCall::new(CallId(4), old))
        .unwrap();
    e.request_callback(Millis::from_secs(5), CallId(2), "+492".into())
        .unwrap();
    e.request_callback(Millis::from_secs(5), CallId(4), "+494".into())
        .unwrap();
    drain(&mut e);
    e.retire_queue(Millis::from_secs(6), "old").unwrap();
    let d = drain(&mut e);
    assert_eq!(
        fallbacks(&d),
        vec![(3, Fallback::Queue("main".into()), FallbackReason::Removed)],
        "only the plain waiting call falls back: {d:?}"
    );
    assert_eq!(e.call_queue(CallId(2)), Some(main));
    assert_eq!(e.call_queue(CallId(4)), Some(main));
    assert_eq!(e.waiting_in(main), 3, "2, 4 and main's own 10");
    // carol serves main in place order: callback 2, then caller 10, then callback 4.
    let mut order = Vec::new();
    for t in [10, 20, 30] {
        e.agent_ready(Millis::from_secs(t), carol).unwrap();
        let d = drain(&mut e);
        let next = d.iter().find_map(|d| match d {
            Decision::PlaceCallback {
                call,
                agent,
                number,
            } if *agent == carol => Some((call.0, number.clone())),
            Decision::Offer { call, agent, .. } if *agent == carol => Some((call.0, String::new())),
            _ => None,
        });
        let (call, number) = next.unwrap_or_else(|| panic!("nothing for carol: {d:?}"));
        if number.is_empty() {
            e.offer_answered(Millis::from_secs(t + 1), CallId(call), carol)
                .unwrap();
        } else {
            e.callback_result(Millis::from_secs(t + 1), CallId(call), true)
                .unwrap();
        }
        e.call_ended(Millis::from_secs(t + 2), CallId(call))
            .unwrap();
        e.agent_not_ready(Millis::from_secs(t + 3), carol, 1)
            .unwrap();
        drain(&mut e);
        order.push((call, number));
    }
    assert_eq!(
        order,
        vec![
            (2, "+492".to_string()),
            (10, String::new()),
            (4, "+494".to_string())
        ]
    );
    assert_eq!(e.call_count(), 1, "only bob's call 1 is left");
}
