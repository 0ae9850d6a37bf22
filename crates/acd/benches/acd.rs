//! Benchmarks: decision latency in a large center, and simulating a day.
//!
//! `decision/*`: 10,000 agents in 200 queues (each agent in 2 queues, tiered), every agent
//! busy and 5,000 calls waiting. One iteration = an agent hangs up (the engine picks the
//! best call across the agent's queues and offers it: one decision), the agent answers,
//! and a new call arrives (the engine checks the call's queue for an agent and queues it:
//! a second decision), so the center stays at 5,000 waiting calls.
//! Besides criterion's figures, a plain loop prints the median and p99 of the single
//! "agent free → offer" decision, machine-readable, on one line.
//!
//! `simulate_day`: 24 h of a 1,000-agent center (20 queues, 85% occupancy, ~300k calls).

use std::collections::{BTreeMap, VecDeque};
use std::hint::black_box;
use std::time::Instant;

use criterion::{Criterion, criterion_group, criterion_main};
use hotline_acd::sim::{AgentGroup, SimConfig, SimParams, Traffic, simulate};
use hotline_acd::{
    AcdConfig, AgentConfig, AgentId, CallId, Decision, Engine, Millis, NewCall, QueueConfig,
    QueueId, SkillReq, Strategy,
};

const AGENTS: u32 = 10_000;
const QUEUES: u32 = 200;
const WAITING: u64 = 5_000;

struct Center {
    e: Engine,
    ring: VecDeque<(AgentId, CallId)>,
    next_call: u64,
    now: u64,
    rng: u64,
}

impl Center {
    fn rand(&mut self) -> u64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        self.rng
    }

    fn new_call(&mut self) -> NewCall {
        self.next_call += 1;
        let q = (self.rand() % u64::from(QUEUES)) as u32;
        let mut c = NewCall::new(CallId(self.next_call), QueueId(q));
        c.priority = (self.rand() % 3) as i32;
        if self.rand().is_multiple_of(10) {
            c.skills = vec![("lang-de".into(), 3)];
        }
        c
    }

    /// Answers every offer in the decision queue; returns how many.
    fn answer_all(&mut self) -> usize {
        let mut n = 0;
        while let Some(d) = self.e.poll_decision() {
            if let Decision::Offer { call, agent, .. } = d {
                self.e
                    .offer_answered(Millis(self.now), call, agent)
                    .expect("answer");
                self.ring.push_back((agent, call));
                n += 1;
            }
        }
        n
    }

    /// `blocked_heads`: first queue that many calls needing a skill no agent has; they sit
    /// at the head of their queues and every agent-driven pick must skip them (the
    /// engine's worst case: it scans past calls the agent cannot take).
    fn build(blocked_heads: u64) -> Center {
        let strategies = [
            Strategy::LongestIdle,
            Strategy::MostSkilled,
            Strategy::RoundRobin,
            Strategy::FewestCalls,
            Strategy::LeastTalkTime,
            Strategy::Random,
            Strategy::Linear,
        ];
        let mut cfg = AcdConfig {
            aging_secs: 60,
            short_abandon_secs: 5,
            resume_window_secs: 0,
            tier_priority: Default::default(),
            seed: 1,
            queues: Vec::new(),
            agents: Vec::new(),
        };
        for q in 0..QUEUES {
            let mut qc = QueueConfig::new(&format!("q{q}"));
            qc.strategy = strategies[q as usize % strategies.len()];
            qc.skills = vec![SkillReq {
                skill: format!("s{q}"),
                min: 3,
            }];
            qc.ring_timeout_secs = 0;
            cfg.queues.push(qc);
        }
        for a in 0..AGENTS {
            let (q1, q2) = (a % QUEUES, (a * 7 + 3) % QUEUES);
            let mut ac = AgentConfig::new(&format!("a{a}"), &[]);
            ac.site = if a.is_multiple_of(3) {
                "home".into()
            } else {
                "office".into()
            };
            ac.skills =
                BTreeMap::from([(format!("s{q1}"), 5 + (a % 5) as u8), (format!("s{q2}"), 4)]);
            if a.is_multiple_of(3) {
                ac.skills.insert("lang-de".into(), 6);
            }
            ac.queues = BTreeMap::from([(format!("q{q1}"), 0), (format!("q{q2}"), 1)]);
            cfg.agents.push(ac);
        }
        let e = Engine::new(&cfg, Millis(0)).expect("engine");
        let mut c = Center {
            e,
            ring: VecDeque::new(),
            next_call: 0,
            now: 0,
            rng: 0x2545_F491_4F6C_DD1D,
        };
        for a in 0..AGENTS {
            c.e.agent_login(Millis(0), AgentId(a), true).expect("login");
        }
        // Fill every agent, then queue 5,000 more calls.
        while c.ring.len() < AGENTS as usize {
            c.now += 1;
            let call = c.new_call();
            c.e.call_arrived(Millis(c.now), call).expect("arrive");
            c.answer_all();
            let waiting: usize = (0..QUEUES).map(|q| c.e.waiting_in(QueueId(q))).sum();
            if waiting > 0 && c.ring.len() < AGENTS as usize {
                // Some agents may have no eligible call for the skills drawn; top up
                // with plain calls to each agent's primary queue.
                for a in 0..AGENTS {
                    if c.e.agent_state(AgentId(a)).expect("agent")
                        == hotline_acd::AgentState::Available
                    {
                        c.next_call += 1;
                        c.e.call_arrived(
                            Millis(c.now),
                            NewCall::new(CallId(c.next_call), QueueId(a % QUEUES)),
                        )
                        .expect("arrive");
                        c.answer_all();
                    }
                }
            }
        }
        for _ in 0..blocked_heads {
            c.now += 1;
            let mut call = c.new_call();
            call.skills = vec![("lang-xx".into(), 1)];
            c.e.call_arrived(Millis(c.now), call).expect("arrive");
            assert_eq!(c.answer_all(), 0, "nobody can take it");
        }
        let mut queued = 0;
        while queued < WAITING {
            c.now += 1;
            let call = c.new_call();
            c.e.call_arrived(Millis(c.now), call).expect("arrive");
            assert_eq!(c.answer_all(), 0, "all agents are busy");
            queued += 1;
        }
        c
    }

    /// One agent hangs up and takes the next call; one call arrives.
    fn step(&mut self) {
        self.now += 7;
        let (agent, call) = self.ring.pop_front().expect("busy agent");
        self.e.call_ended(Millis(self.now), call).expect("end");
        if self.answer_all() == 0 {
            // Nothing this agent can take: it is idle; keep the ring full with a call to it.
            self.next_call += 1;
            let q = QueueId(agent.0 % QUEUES);
            self.e
                .call_arrived(Millis(self.now), NewCall::new(CallId(self.next_call), q))
                .expect("arrive");
            self.answer_all();
        }
        let c = self.new_call();
        self.e.call_arrived(Millis(self.now), c).expect("arrive");
        self.answer_all();
    }
}

/// Times only the decision "agent free → pick and offer" in a plain loop.
fn plain_loop(center: &mut Center, label: &str) {
    let mut samples = Vec::with_capacity(200_000);
    for _ in 0..200_000 {
        center.now += 7;
        let (agent, call) = center.ring.pop_front().expect("busy agent");
        let t = Instant::now();
        center.e.call_ended(Millis(center.now), call).expect("end");
        let d = center.e.poll_decision();
        samples.push(t.elapsed().as_nanos() as u64);
        match d {
            Some(Decision::Offer { call, agent: a, .. }) => {
                center
                    .e
                    .offer_answered(Millis(center.now), call, a)
                    .expect("answer");
                center.ring.push_back((a, call));
                center.answer_all();
            }
            _ => {
                center.answer_all();
                center.next_call += 1;
                let q = QueueId(agent.0 % QUEUES);
                center
                    .e
                    .call_arrived(
                        Millis(center.now),
                        NewCall::new(CallId(center.next_call), q),
                    )
                    .expect("arrive");
                center.answer_all();
            }
        }
        let nc = center.new_call();
        center
            .e
            .call_arrived(Millis(center.now), nc)
            .expect("arrive");
        center.answer_all();
    }
    samples.sort_unstable();
    let waiting: usize = (0..QUEUES).map(|q| center.e.waiting_in(QueueId(q))).sum();
    println!(
        "acd_decision scenario={label} agents={AGENTS} queues={QUEUES} waiting={waiting} samples={} median_ns={} p90_ns={} p99_ns={}",
        samples.len(),
        samples[samples.len() / 2],
        samples[samples.len() * 9 / 10],
        samples[samples.len() * 99 / 100]
    );
}

fn decision_latency(c: &mut Criterion) {
    let mut center = Center::build(0);
    let waiting: usize = (0..QUEUES).map(|q| center.e.waiting_in(QueueId(q))).sum();
    assert!(waiting >= WAITING as usize - 50, "{waiting} waiting");
    plain_loop(&mut center, "normal");
    c.bench_function("decision/hangup_offer_answer_arrive", |b| {
        b.iter(|| black_box(&mut center).step())
    });
    drop(center);
    let mut hostile = Center::build(WAITING);
    plain_loop(&mut hostile, "5000_unservable_calls_at_the_heads");
}

fn day_config() -> SimConfig {
    let queues = 20u32;
    let per_queue = 50u32;
    let aht = 240.0;
    let mut acd = AcdConfig {
        aging_secs: 60,
        short_abandon_secs: 5,
        resume_window_secs: 0,
        tier_priority: Default::default(),
        seed: 1,
        queues: Vec::new(),
        agents: Vec::new(),
    };
    let mut groups = Vec::new();
    let mut traffic = Vec::new();
    for q in 0..queues {
        let mut qc = QueueConfig::new(&format!("q{q}"));
        qc.wrapup_secs = 10;
        acd.queues.push(qc);
        groups.push(AgentGroup {
            prefix: format!("g{q}"),
            count: per_queue,
            site: "office".into(),
            skills: BTreeMap::new(),
            queues: BTreeMap::from([(format!("q{q}"), 0), (format!("q{}", (q + 1) % queues), 1)]),
        });
        traffic.push(Traffic {
            queue: format!("q{q}"),
            calls_per_hour: 0.85 * f64::from(per_queue) * 3600.0 / (aht + 10.0),
            aht_secs: aht,
            patience_secs: Some(180.0),
            classes: Vec::new(),
            skills: Vec::new(),
        });
    }
    SimConfig {
        sim: SimParams {
            hours: 24.0,
            warmup_hours: 0.5,
            seed: 1,
            answer_delay_secs: 0.0,
        },
        acd,
        agent_groups: groups,
        traffic,
    }
}

fn simulate_day(c: &mut Criterion) {
    let cfg = day_config();
    let r = simulate(&cfg).expect("day");
    let calls: u64 = r.queues.iter().map(|q| q.offered).sum();
    let t = Instant::now();
    let _ = simulate(&cfg).expect("day");
    println!(
        "acd_simulate_day agents={} calls={} events={} secs={:.3}",
        r.agents,
        calls,
        r.events,
        t.elapsed().as_secs_f64()
    );
    let mut g = c.benchmark_group("simulate");
    g.sample_size(10);
    g.bench_function("day_1000_agents", |b| {
        b.iter(|| simulate(black_box(&cfg)).expect("day"))
    });
    g.finish();
}

criterion_group!(benches, decision_latency, simulate_day);
criterion_main!(benches);
