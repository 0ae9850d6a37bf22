//! Simulator-level behaviour: priority classes, EWT accuracy, staffing, determinism.

use hotline_acd::QueueConfig;
use hotline_acd::erlang::{erlang_c_metrics, erlang_c_staffing};
use hotline_acd::sim::{
    PriorityClass, SimConfig, SimParams, StaffingQuery, Traffic, simulate, staffing,
};

fn params(hours: f64, seed: u64) -> SimParams {
    SimParams {
        hours,
        warmup_hours: 1.0,
        seed,
        answer_delay_secs: 0.0,
    }
}

fn traffic(calls_per_hour: f64, aht: f64, classes: Vec<PriorityClass>) -> Traffic {
    Traffic {
        queue: "q".into(),
        calls_per_hour,
        aht_secs: aht,
        patience_secs: None,
        classes,
        skills: Vec::new(),
    }
}

#[test]
fn vip_calls_wait_less_and_nobody_starves() {
    // 20 agents at 95% occupancy; 20% of callers are VIP (priority 10 = 10 minutes of aging).
    let classes = vec![
        PriorityClass {
            priority: 10,
            share: 0.2,
        },
        PriorityClass {
            priority: 0,
            share: 0.8,
        },
    ];
    let cfg = SimConfig::single_queue(
        20,
        QueueConfig::new("q"),
        traffic(0.95 * 20.0 * 3600.0 / 180.0, 180.0, classes),
        params(300.0, 3),
    );
    let r = simulate(&cfg).expect("runs");
    let (vip, normal) = (&r.classes[0], &r.classes[1]);
    println!("{}", r.to_text());
    assert!(vip.offered > 10_000 && normal.offered > 40_000);
    assert!(
        vip.asa_secs() < 0.5 * normal.asa_secs(),
        "VIP ASA {} vs normal {}",
        vip.asa_secs(),
        normal.asa_secs()
    );
    // Nobody starves: every measured call was answered (the run plays out the queue), and
    // the longest wait of a normal call stays within the aging horizon plus a few AHTs.
    assert_eq!(normal.answered, normal.offered);
    assert_eq!(vip.answered, vip.offered);
    assert!(
        normal.max_wait_ms < 30 * 60 * 1000,
        "max wait {} ms",
        normal.max_wait_ms
    );
    // Total ASA is conserved-ish: the mix still matches Erlang C for the whole queue.
    let f = erlang_c_metrics(20, 0.95 * 20.0 / 180.0, 180.0, 20.0);
    let all = &r.queues[0];
    assert!(
        (all.p_wait() - f.p_wait).abs() < 0.03,
        "{} vs {}",
        all.p_wait(),
        f.p_wait
    );
}

#[test]
fn announced_ewt_is_unbiased() {
    let mut q = QueueConfig::new("q");
    q.announce_secs = 60;
    q.expected_aht_secs = 60; // deliberately wrong start: the engine must learn the AHT
    let cfg = SimConfig::single_queue(
        10,
        q,
        traffic(0.92 * 10.0 * 20.0, 180.0, Vec::new()),
        params(400.0, 5),
    );
    let r = simulate(&cfg).expect("runs");
    let (ewt, actual) = r.queues[0].ewt_accuracy().expect("announcements were made");
    println!(
        "mean announced EWT {ewt:.1} s, mean actual wait {actual:.1} s over {} calls",
        r.queues[0].announced
    );
    assert!(r.queues[0].announced > 20_000);
    assert!(
        (ewt - actual).abs() < 0.1 * actual,
        "EWT {ewt} vs actual {actual}"
    );
}

#[test]
fn staffing_matches_erlang_c_without_abandonment() {
    let mut q = QueueConfig::new("q");
    q.sl_secs = 20;
    let query = StaffingQuery {
        queue: q,
        calls_per_hour: 300.0,
        aht_secs: 240.0,
        patience_secs: None,
        target: 0.8,
        sim: params(300.0, 9),
        max_agents: 500,
    };
    let ans = staffing(&query).expect("staffing");
    println!("{}", ans.to_text(&query));
    let ec = erlang_c_staffing(300.0 / 3600.0, 240.0, 20.0, 0.8, 500).expect("erlang");
    assert_eq!(ans.erlang_c, Some(ec));
    let sim = ans.simulated.expect("staffable");
    assert!(sim.abs_diff(ec) <= 1, "simulated {sim} vs Erlang C {ec}");
    let rep = ans.report.expect("report");
    assert!(rep.queues[0].service_level() >= 0.8);
    assert_eq!(rep.agents, sim);
}

#[test]
fn abandonment_lowers_the_staff_needed() {
    let base = StaffingQuery {
        queue: QueueConfig::new("q"),
        calls_per_hour: 300.0,
        aht_secs: 240.0,
        patience_secs: None,
        target: 0.8,
        sim: params(200.0, 9),
        max_agents: 500,
    };
    let patient = staffing(&base)
        .expect("staffing")
        .simulated
        .expect("staffable");
    let impatient = staffing(&StaffingQuery {
        patience_secs: Some(30.0),
        ..base.clone()
    })
    .expect("staffing")
    .simulated
    .expect("staffable");
    // Abandons count against SL, but they also shorten the queue for everyone else.
    assert!(impatient <= patient, "{impatient} vs {patient}");
}

#[test]
fn same_seed_same_report_other_seed_differs() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/simulate.toml"
    ))
    .expect("example config");
    let cfg = SimConfig::from_toml(&text).expect("valid");
    let a = simulate(&cfg).expect("runs");
    let b = simulate(&cfg).expect("runs");
    assert_eq!(a, b);
    let mut other = cfg.clone();
    other.sim.seed += 1;
    assert_ne!(simulate(&other).expect("runs"), a);
    // The example center is sane: both queues served, VIPs ahead in sales.
    assert_eq!(a.queues.len(), 2);
    for q in &a.queues {
        assert!(
            q.answered > 0 && q.service_level() > 0.0 && q.service_level() <= 1.0,
            "{q:?}"
        );
    }
    let vip = a
        .classes
        .iter()
        .find(|c| c.name == "sales/priority 10")
        .expect("vip class");
    let normal = a
        .classes
        .iter()
        .find(|c| c.name == "sales/priority 0")
        .expect("normal class");
    assert!(vip.asa_secs() < normal.asa_secs());
}

#[test]
fn engine_statistics_agree_with_the_simulators_own_bookkeeping() {
    // Abandonment and a short-abandon threshold exercise every term of the definitions.
    let mut q = QueueConfig::new("q");
    q.sl_secs = 30;
    let mut cfg = SimConfig::single_queue(
        12,
        q,
        Traffic {
            queue: "q".into(),
            calls_per_hour: 0.97 * 12.0 * 20.0,
            aht_secs: 180.0,
            patience_secs: Some(90.0),
            classes: Vec::new(),
            skills: Vec::new(),
        },
        params(300.0, 21),
    );
    cfg.acd.short_abandon_secs = 5;
    let r = simulate(&cfg).expect("runs");
    let (own, eng) = (&r.queues[0], &r.engine[0]);
    println!(
        "SL {:.4}/{:?} ASA {:.2}/{:?} abandon {:.4}/{:?}",
        own.service_level(),
        eng.service_level,
        own.asa_secs(),
        eng.asa_secs,
        own.abandon_rate(),
        eng.abandon_rate
    );
    assert!(own.short_abandoned > 100, "short abandons occur");
    // Only calls straddling the warm-up boundary are counted differently.
    let close = |a: f64, b: Option<f64>, tol: f64| b.is_some_and(|b| (a - b).abs() <= tol);
    assert!(close(own.service_level(), eng.service_level, 0.005));
    assert!(close(own.asa_secs(), eng.asa_secs, 0.5));
    assert!(close(own.abandon_rate(), eng.abandon_rate, 0.005));
    assert!(
        eng.aht_secs.is_some_and(|a| (a - 180.0).abs() < 5.0),
        "{:?}",
        eng.aht_secs
    );
}

#[test]
fn language_streams_are_served_only_by_speakers() {
    // 5 German speakers serve the German stream; 10 others cannot help with it.
    let text = r#"
[sim]
hours = 200
warmup_hours = 1
[acd]
[[acd.queue]]
name = "q"
[[agents]]
prefix = "de"
count = 5
skills = { lang-de = 7 }
queues = { q = 0 }
[[agents]]
prefix = "en"
count = 10
queues = { q = 0 }
[[traffic]]
queue = "q"
calls_per_hour = 60
aht_secs = 180
skills = [{ skill = "lang-de", min = 5 }]
"#;
    let cfg = SimConfig::from_toml(text).expect("valid");
    let r = simulate(&cfg).expect("runs");
    // German load is 3 erlangs on 5 speakers (60% occupancy), not on 15 agents:
    // the Erlang C wait for c = 5 applies.
    let f = erlang_c_metrics(5, 60.0 / 3600.0, 180.0, 20.0);
    let q = &r.queues[0];
    println!(
        "P(wait) {:.3} vs Erlang C {:.3} over {} calls",
        q.p_wait(),
        f.p_wait,
        q.offered
    );
    assert!(q.offered > 10_000);
    assert!(
        (q.p_wait() - f.p_wait).abs() < 0.04,
        "{} vs {}",
        q.p_wait(),
        f.p_wait
    );
    let all15 = erlang_c_metrics(15, 60.0 / 3600.0, 180.0, 20.0);
    assert!(
        q.p_wait() > 10.0 * all15.p_wait,
        "the 10 others must not take German calls"
    );
}

#[test]
fn announced_ewt_is_unbiased_with_agents_shared_between_queues() {
    // Two queues, 6 dedicated agents each and 8 shared: each queue counts 14 working
    // members, but only gets about 10 agents' worth of service. At 90% occupancy both
    // queues have calls waiting most of the time, so shared agents split their time.
    let text = r#"
[sim]
hours = 400
warmup_hours = 1
seed = 11
[acd]
[[acd.queue]]
name = "a"
announce_secs = 60
[[acd.queue]]
name = "b"
announce_secs = 60
[[agents]]
prefix = "only-a"
count = 6
queues = { a = 0 }
[[agents]]
prefix = "only-b"
count = 6
queues = { b = 0 }
[[agents]]
prefix = "both"
count = 8
queues = { a = 0, b = 0 }
[[traffic]]
queue = "a"
calls_per_hour = 200
aht_secs = 180
[[traffic]]
queue = "b"
calls_per_hour = 160
aht_secs = 180
"#;
    let cfg = SimConfig::from_toml(text).expect("valid");
    let r = simulate(&cfg).expect("runs");
    for q in &r.queues {
        let (ewt, actual) = q.ewt_accuracy().expect("announcements were made");
        println!(
            "queue {}: mean announced EWT {ewt:.1} s, mean actual wait {actual:.1} s over {} calls",
            q.name, q.announced
        );
        assert!(q.announced > 20_000, "{}", q.announced);
        // Tolerance: ±10% of the mean actual wait, as for a single queue.
        assert!(
            (ewt - actual).abs() < 0.1 * actual,
            "queue {}: EWT {ewt} vs actual {actual}",
            q.name
        );
    }
}
