//! Queueing formulas: Erlang B, Erlang C (M/M/c) and Erlang A (M/M/c+M, with exponential
//! patience), written from the textbook definitions, independent of the engine, so that
//! the simulator can be checked against them.
//!
//! Notation: `lambda` arrivals per second, `aht` mean handle time in seconds (μ = 1/aht),
//! `c` agents, offered load A = λ·aht erlangs, occupancy ρ = A/c.

/// Erlang B blocking probability by the stable recursion B(0)=1, B(k)=A·B/(k+A·B).
pub fn erlang_b(c: u32, a: f64) -> f64 {
    let mut b = 1.0;
    for k in 1..=c {
        b = a * b / (f64::from(k) + a * b);
    }
    b
}

/// Erlang C probability that an arriving call waits. 1.0 if the queue is unstable (A ≥ c).
pub fn erlang_c(c: u32, a: f64) -> f64 {
    if a >= f64::from(c) {
        return 1.0;
    }
    let b = erlang_b(c, a);
    let c = f64::from(c);
    c * b / (c - a * (1.0 - b))
}

/// The M/M/c results Erlang C gives for one load point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErlangC {
    /// Probability of waiting at all.
    pub p_wait: f64,
    /// Average speed of answer (mean wait over all calls), seconds.
    pub asa_secs: f64,
    /// Probability of being answered within the threshold.
    pub service_level: f64,
    /// Agent occupancy A/c.
    pub occupancy: f64,
}

/// Erlang C for `c` agents, `lambda` calls/s, handle time `aht` s, SL threshold `t` s.
pub fn erlang_c_metrics(c: u32, lambda: f64, aht: f64, t: f64) -> ErlangC {
    let a = lambda * aht;
    let p_wait = erlang_c(c, a);
    let cf = f64::from(c);
    if a >= cf {
        return ErlangC {
            p_wait: 1.0,
            asa_secs: f64::INFINITY,
            service_level: 0.0,
            occupancy: 1.0,
        };
    }
    // Waiting time given a wait is exponential with rate (c − A)/aht.
    let rate = (cf - a) / aht;
    ErlangC {
        p_wait,
        asa_secs: p_wait / rate,
        service_level: 1.0 - p_wait * (-rate * t).exp(),
        occupancy: a / cf,
    }
}

/// Smallest number of agents whose Erlang C service level reaches `target` (0..=1).
/// `None` if more than `max_agents` would be needed.
pub fn erlang_c_staffing(
    lambda: f64,
    aht: f64,
    t: f64,
    target: f64,
    max_agents: u32,
) -> Option<u32> {
    let a = lambda * aht;
    let start = (a.floor() as u32).max(1);
    (start..=max_agents).find(|&c| {
        let m = erlang_c_metrics(c, lambda, aht, t);
        m.occupancy < 1.0 && m.service_level >= target
    })
}

/// The M/M/c+M results for one load point.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ErlangA {
    /// Probability an arriving call has to wait (all agents busy).
    pub p_wait: f64,
    /// Probability an arriving call abandons.
    pub p_abandon: f64,
    /// Mean time in queue over all calls (answered and abandoned), seconds.
    pub mean_queue_secs: f64,
    /// Agent occupancy (busy agents / c).
    pub occupancy: f64,
}

/// Erlang A from the birth–death chain of the number of calls in the system: births at
/// λ, deaths at min(n,c)/aht + max(n−c,0)/patience. Solved in log space so c = 200 and
/// heavy load stay finite; the tail is cut when terms fall below e⁻⁶⁰ of the peak.
pub fn erlang_a(c: u32, lambda: f64, aht: f64, patience: f64) -> ErlangA {
    let mu = 1.0 / aht;
    let theta = 1.0 / patience;
    let mut logs: Vec<f64> = vec![0.0];
    let mut cur = 0.0f64;
    let mut peak = 0.0f64;
    let mut n: u64 = 0;
    loop {
        n += 1;
        let nf = n as f64;
        let cf = f64::from(c);
        let death = nf.min(cf) * mu + (nf - cf).max(0.0) * theta;
        cur += (lambda / death).ln();
        logs.push(cur);
        peak = peak.max(cur);
        if nf > cf && cur < peak - 60.0 {
            break;
        }
        if n > 10_000_000 {
            break;
        }
    }
    let z: f64 = logs.iter().map(|l| (l - peak).exp()).sum();
    let (mut p_wait, mut lq, mut busy) = (0.0, 0.0, 0.0);
    for (n, l) in logs.iter().enumerate() {
        let p = (l - peak).exp() / z;
        let n = n as f64;
        let cf = f64::from(c);
        if n >= cf {
            p_wait += p;
        }
        lq += p * (n - cf).max(0.0);
        busy += p * n.min(cf);
    }
    ErlangA {
        p_wait,
        p_abandon: theta * lq / lambda,
        mean_queue_secs: lq / lambda,
        occupancy: busy / f64::from(c),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn erlang_b_matches_direct_sum_for_small_c() {
        // B(c, A) = (A^c/c!) / Σ_{k≤c} A^k/k!
        let (c, a) = (6u32, 4.2f64);
        let mut term = 1.0;
        let mut sum = 1.0;
        for k in 1..=c {
            term *= a / f64::from(k);
            sum += term;
        }
        assert!((erlang_b(c, a) - term / sum).abs() < 1e-12);
    }

    #[test]
    fn erlang_c_known_value_and_large_c_is_finite() {
        // Textbook example: 2 agents, 1 erlang → P(wait) = 1/3.
        assert!((erlang_c(2, 1.0) - 1.0 / 3.0).abs() < 1e-12);
        let p = erlang_c(200, 190.0);
        assert!(p.is_finite() && p > 0.0 && p < 1.0, "{p}");
    }

    #[test]
    fn erlang_a_tends_to_erlang_c_with_infinite_patience() {
        let (c, lambda, aht) = (10u32, 8.0 / 180.0, 180.0);
        let a = erlang_a(c, lambda, aht, 1e12);
        let ec = erlang_c_metrics(c, lambda, aht, 20.0);
        assert!(
            (a.p_wait - ec.p_wait).abs() < 1e-6,
            "{} {}",
            a.p_wait,
            ec.p_wait
        );
        assert!((a.mean_queue_secs - ec.asa_secs).abs() < 1e-3);
        assert!(a.p_abandon < 1e-6);
    }

    #[test]
    fn staffing_for_300_calls_per_hour_at_240s() {
        // A = 20 erlangs; 80/20 needs more than A agents and the answer must be minimal.
        let lambda = 300.0 / 3600.0;
        let c = erlang_c_staffing(lambda, 240.0, 20.0, 0.8, 1000).expect("staffable");
        assert!(erlang_c_metrics(c, lambda, 240.0, 20.0).service_level >= 0.8);
        assert!(erlang_c_metrics(c - 1, lambda, 240.0, 20.0).service_level < 0.8);
        assert!(c > 20);
    }
}
