//! The simulator driving the real engine reproduces queueing theory:
//! Erlang C for M/M/c and Erlang A for M/M/c+M.

use hotline_acd::QueueConfig;
use hotline_acd::erlang::{erlang_a, erlang_c_metrics};
use hotline_acd::sim::{SimConfig, SimParams, SimReport, Traffic, simulate};

const AHT: f64 = 180.0;
const SL_SECS: u32 = 20;

fn run(c: u32, occupancy: f64, patience: Option<f64>, hours: f64, seed: u64) -> SimReport {
    let mut q = QueueConfig::new("q");
    q.sl_secs = SL_SECS;
    let calls_per_hour = occupancy * f64::from(c) * 3600.0 / AHT;
    let traffic = Traffic {
        queue: "q".into(),
        calls_per_hour,
        aht_secs: AHT,
        patience_secs: patience,
        classes: Vec::new(),
        skills: Vec::new(),
    };
    let sim = SimParams {
        hours,
        warmup_hours: 2.0,
        seed,
        answer_delay_secs: 0.0,
    };
    simulate(&SimConfig::single_queue(c, q, traffic, sim)).expect("simulation runs")
}

/// (agents, occupancy, simulated hours). Hours are chosen so that every point has at least
/// 300k measured calls; heavier load at small c needs more (longer correlation of the
/// queue length), which is why the 95% point uses c = 50 and 200.
const POINTS: &[(u32, f64, f64)] = &[
    (5, 0.50, 6500.0),
    (10, 0.80, 2500.0),
    (50, 0.80, 500.0),
    (50, 0.95, 800.0),
    (200, 0.95, 200.0),
];

#[test]
fn mmc_matches_erlang_c() {
    let mut failures = Vec::new();
    println!(
        "  c   occ   calls | P(wait) sim/formula | SL sim/formula | ASA s sim/formula | occupancy sim"
    );
    for &(c, occ, hours) in POINTS {
        let lambda = occ * f64::from(c) / AHT;
        let f = erlang_c_metrics(c, lambda, AHT, f64::from(SL_SECS));
        let r = run(c, occ, None, hours, 7);
        let q = &r.queues[0];
        assert!(
            q.offered >= 300_000,
            "too few calls for the tolerance: {}",
            q.offered
        );
        println!(
            "{c:>4} {occ:.2} {:>8} | {:6.3} / {:6.3} | {:6.3} / {:6.3} | {:7.2} / {:7.2} | {:.3}",
            q.offered,
            q.p_wait(),
            f.p_wait,
            q.service_level(),
            f.service_level,
            q.asa_secs(),
            f.asa_secs,
            q.occupancy.unwrap_or(0.0)
        );
        // Tolerances: ±2 pp for probabilities; ASA within 10% or 1 s; occupancy ±1 pp.
        if (q.p_wait() - f.p_wait).abs() > 0.02 {
            failures.push(format!(
                "c={c} occ={occ}: P(wait) {} vs {}",
                q.p_wait(),
                f.p_wait
            ));
        }
        if (q.service_level() - f.service_level).abs() > 0.02 {
            failures.push(format!(
                "c={c} occ={occ}: SL {} vs {}",
                q.service_level(),
                f.service_level
            ));
        }
        if (q.asa_secs() - f.asa_secs).abs() > (0.10 * f.asa_secs).max(1.0) {
            failures.push(format!(
                "c={c} occ={occ}: ASA {} vs {}",
                q.asa_secs(),
                f.asa_secs
            ));
        }
        if (q.occupancy.unwrap_or(0.0) - occ).abs() > 0.01 {
            failures.push(format!("c={c} occ={occ}: occupancy {:?}", q.occupancy));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn mmc_with_abandonment_matches_erlang_a() {
    let mut failures = Vec::new();
    // (agents, offered load as a share of c, mean patience s, hours)
    for &(c, load, patience, hours) in &[(10u32, 0.95, 120.0, 1500.0), (50, 1.05, 60.0, 300.0)] {
        let lambda = load * f64::from(c) / AHT;
        let f = erlang_a(c, lambda, AHT, patience);
        let r = run(c, load, Some(patience), hours, 11);
        let q = &r.queues[0];
        let p_wait_all = (q.answered_after_wait + q.abandoned) as f64 / q.offered as f64;
        let p_ab = q.abandoned as f64 / q.offered as f64;
        println!(
            "c={c} load={load} patience={patience}: calls {} P(wait) {:.3}/{:.3} P(abandon) {:.4}/{:.4} Wq {:.2}/{:.2} s",
            q.offered,
            p_wait_all,
            f.p_wait,
            p_ab,
            f.p_abandon,
            q.mean_queue_secs(),
            f.mean_queue_secs
        );
        if (p_wait_all - f.p_wait).abs() > 0.02 {
            failures.push(format!("c={c}: P(wait) {p_wait_all} vs {}", f.p_wait));
        }
        if (p_ab - f.p_abandon).abs() > 0.01 {
            failures.push(format!("c={c}: P(abandon) {p_ab} vs {}", f.p_abandon));
        }
        if (q.mean_queue_secs() - f.mean_queue_secs).abs() > (0.10 * f.mean_queue_secs).max(1.0) {
            failures.push(format!(
                "c={c}: Wq {} vs {}",
                q.mean_queue_secs(),
                f.mean_queue_secs
            ));
        }
    }
    assert!(failures.is_empty(), "{failures:#?}");
}
