//! A deterministic discrete-event simulator that drives the real [`Engine`].
//!
//! Calls arrive as Poisson streams per queue (optionally split into priority classes),
//! handle times are exponential, callers optionally abandon after an exponential
//! patience. Agents answer offers at once (or after a fixed delay) and are all logged in
//! and ready at the start. Everything is seeded: the same config and seed give the same
//! report, bit for bit.
//!
//! Calls are *measured* if they arrive after the warm-up; the run ends at `hours` of
//! simulated time, after which no new calls arrive and the measured calls still in the
//! system are played out so that none is silently dropped.
//!
//! Measured figures per queue (see the crate docs for the definitions):
//! P(wait) = share of answered calls whose wait was > 0; service level = answered within
//! the threshold / (answered + abandoned − short abandons + timed out); ASA = mean wait of
//! answered calls; mean queue time = mean wait of all calls (answered or not), the
//! quantity Erlang A gives.

use std::cmp::Reverse;
use std::collections::{BTreeMap, BinaryHeap};
use std::fmt::Write as _;

use rand_chacha::ChaCha8Rng;
use rand_chacha::rand_core::{Rng, SeedableRng};
use serde::Deserialize;

use crate::config::{AcdConfig, AgentConfig, QueueConfig, SkillReq, invalid};
use crate::engine::{AgentState, Decision, Engine, NewCall};
use crate::erlang;
use crate::error::{AcdError, Result};
use crate::stats::QueueSnapshot;
use crate::{AgentId, CallId, Millis, QueueId};

/// A simulation file: run parameters, the ACD config, agent groups and traffic.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimConfig {
    /// Run parameters.
    #[serde(default)]
    pub sim: SimParams,
    /// The ACD configuration (queues, individually listed agents).
    pub acd: AcdConfig,
    /// Groups of identical agents (expanded to `prefix-1`, `prefix-2`, …).
    #[serde(default, rename = "agents")]
    pub agent_groups: Vec<AgentGroup>,
    /// Offered traffic per queue.
    #[serde(default)]
    pub traffic: Vec<Traffic>,
}

/// Run parameters.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SimParams {
    /// Simulated hours of arrivals.
    #[serde(default = "d_hours")]
    pub hours: f64,
    /// Hours at the start whose calls are not measured (the center fills up).
    #[serde(default = "d_warmup")]
    pub warmup_hours: f64,
    /// RNG seed.
    #[serde(default = "d_seed")]
    pub seed: u64,
    /// Seconds an agent takes to answer an offer.
    #[serde(default)]
    pub answer_delay_secs: f64,
}
fn d_hours() -> f64 {
    8.0
}
fn d_warmup() -> f64 {
    0.5
}
fn d_seed() -> u64 {
    1
}
impl Default for SimParams {
    fn default() -> Self {
        SimParams {
            hours: d_hours(),
            warmup_hours: d_warmup(),
            seed: d_seed(),
            answer_delay_secs: 0.0,
        }
    }
}

/// `count` identical agents.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentGroup {
    /// Agent ids are `prefix-1` … `prefix-count`.
    pub prefix: String,
    /// How many.
    pub count: u32,
    /// Site.
    #[serde(default = "d_site")]
    pub site: String,
    /// Skill → proficiency.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    /// Queue → penalty.
    #[serde(default)]
    pub queues: BTreeMap<String, u32>,
}
fn d_site() -> String {
    "office".into()
}

/// A Poisson stream of calls into one queue.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Traffic {
    /// Queue name.
    pub queue: String,
    /// Mean arrivals per hour.
    pub calls_per_hour: f64,
    /// Mean talk time, seconds (exponential); wrap-up comes from the queue config.
    pub aht_secs: f64,
    /// Mean caller patience, seconds (exponential). `None` = callers never hang up.
    #[serde(default)]
    pub patience_secs: Option<f64>,
    /// Priority classes; empty = everyone priority 0.
    #[serde(default, rename = "class")]
    pub classes: Vec<PriorityClass>,
    /// Extra skills every call of this stream needs (e.g. a language).
    #[serde(default)]
    pub skills: Vec<SkillReq>,
}

/// A share of a stream's calls with a given static priority (e.g. VIP customers).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PriorityClass {
    /// Static priority of these calls.
    pub priority: i32,
    /// Relative share (shares are normalised).
    pub share: f64,
}

impl SimConfig {
    /// Parses and validates a simulation file.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: SimConfig = toml::from_str(text).map_err(|e| AcdError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// One queue, `agents` identical agents, one stream: the M/M/c(+M) setting.
    pub fn single_queue(agents: u32, queue: QueueConfig, traffic: Traffic, sim: SimParams) -> Self {
        let name = queue.name.clone();
        SimConfig {
            sim,
            acd: AcdConfig {
                aging_secs: 60,
                short_abandon_secs: 0,
                resume_window_secs: 0,
                tier_priority: Default::default(),
                seed: 0,
                queues: vec![queue],
                agents: Vec::new(),
            },
            agent_groups: vec![AgentGroup {
                prefix: "agent".into(),
                count: agents,
                site: d_site(),
                skills: BTreeMap::new(),
                queues: [(name, 0)].into_iter().collect(),
            }],
            traffic: vec![traffic],
        }
    }

    /// Checks the run parameters and traffic besides the ACD config.
    pub fn validate(&self) -> Result<()> {
        self.acd.validate()?;
        let p = &self.sim;
        if !(p.hours > 0.0 && p.hours <= 24.0 * 365.0) {
            return Err(invalid("sim.hours", "must be in (0, 8760]"));
        }
        if !(p.warmup_hours >= 0.0 && p.warmup_hours < p.hours) {
            return Err(invalid("sim.warmup_hours", "must be >= 0 and < hours"));
        }
        if !(p.answer_delay_secs >= 0.0 && p.answer_delay_secs.is_finite()) {
            return Err(invalid("sim.answer_delay_secs", "must be >= 0"));
        }
        for t in &self.traffic {
            let w = format!("traffic {:?}", t.queue);
            if !self.acd.queues.iter().any(|q| q.name == t.queue) {
                return Err(AcdError::UnknownQueue(t.queue.clone()));
            }
            // Bounded so that a typo cannot make a run take hours or exhaust memory.
            if !(0.0..=1_000_000.0).contains(&t.calls_per_hour) {
                return Err(invalid(&w, "calls_per_hour must be within 0..=1000000"));
            }
            if !(t.aht_secs > 0.0 && t.aht_secs.is_finite()) {
                return Err(invalid(&w, "aht_secs must be > 0"));
            }
            if t.skills.iter().any(|r| !(1..=10).contains(&r.min)) {
                return Err(invalid(&w, "skill proficiency outside 1..=10"));
            }
            if t.patience_secs.is_some_and(|p| !(p > 0.0 && p.is_finite())) {
                return Err(invalid(&w, "patience_secs must be > 0"));
            }
            if t.classes
                .iter()
                .any(|c| !(c.share >= 0.0 && c.share.is_finite()))
                || (!t.classes.is_empty() && t.classes.iter().map(|c| c.share).sum::<f64>() <= 0.0)
            {
                return Err(invalid(&w, "class shares must be >= 0 and not all 0"));
            }
        }
        for g in &self.agent_groups {
            if g.count > 1_000_000 {
                return Err(invalid(
                    &format!("agents {:?}", g.prefix),
                    "count too large",
                ));
            }
        }
        // The groups expand to agents: their queues, skills and ids must hold up too.
        self.expanded_acd().validate()?;
        Ok(())
    }

    /// The ACD config with agent groups expanded.
    pub fn expanded_acd(&self) -> AcdConfig {
        let mut acd = self.acd.clone();
        for g in &self.agent_groups {
            for i in 1..=g.count {
                acd.agents.push(AgentConfig {
                    id: format!("{}-{i}", g.prefix),
                    site: g.site.clone(),
                    skills: g.skills.clone(),
                    queues: g.queues.clone(),
                });
            }
        }
        acd
    }
}

/// Per-queue (or per-class) outcome of a run, over measured calls.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimResult {
    /// Queue name, or `queue/priority N` for a class.
    pub name: String,
    /// Measured calls.
    pub offered: u64,
    /// Answered by an agent.
    pub answered: u64,
    /// Answered within the queue's SL threshold.
    pub answered_in_sl: u64,
    /// Answered after waiting > 0.
    pub answered_after_wait: u64,
    /// Hung up while waiting.
    pub abandoned: u64,
    /// Abandons shorter than the short-abandon threshold.
    pub short_abandoned: u64,
    /// Sent to the fallback (refused or timed out).
    pub fallback: u64,
    /// Sum of waits of answered calls, ms.
    pub wait_answered_ms: u64,
    /// Sum of time in queue of all calls, ms.
    pub wait_all_ms: u64,
    /// Longest wait of an answered call, ms.
    pub max_wait_ms: u64,
    /// Calls that got an announcement on arrival.
    pub announced: u64,
    /// Sum of those first EWTs, ms (whole seconds as announced).
    pub announced_ewt_ms: u64,
    /// Sum of those calls' actual waits (answered ones), ms.
    pub announced_wait_ms: u64,
    /// Occupancy of the queue's agents (engine statistics, after warm-up).
    pub occupancy: Option<f64>,
    /// SL threshold used, seconds.
    pub sl_secs: u32,
}

impl SimResult {
    /// Probability of waiting at all, among answered calls.
    pub fn p_wait(&self) -> f64 {
        ratio(self.answered_after_wait, self.answered)
    }
    /// Service level as defined in the crate docs.
    pub fn service_level(&self) -> f64 {
        ratio(
            self.answered_in_sl,
            self.answered + self.abandoned - self.short_abandoned + self.fallback,
        )
    }
    /// Average speed of answer, seconds.
    pub fn asa_secs(&self) -> f64 {
        ratio(self.wait_answered_ms, self.answered) / 1000.0
    }
    /// Abandoned (excluding short abandons) / (offered − short abandons).
    pub fn abandon_rate(&self) -> f64 {
        ratio(
            self.abandoned - self.short_abandoned,
            self.offered - self.short_abandoned,
        )
    }
    /// Mean time in queue over all measured calls, seconds.
    pub fn mean_queue_secs(&self) -> f64 {
        ratio(self.wait_all_ms, self.offered) / 1000.0
    }
    /// (mean announced EWT, mean actual wait) of answered calls announced on arrival.
    pub fn ewt_accuracy(&self) -> Option<(f64, f64)> {
        (self.announced > 0).then(|| {
            let n = self.announced as f64 * 1000.0;
            (
                self.announced_ewt_ms as f64 / n,
                self.announced_wait_ms as f64 / n,
            )
        })
    }
}

fn ratio(n: u64, d: u64) -> f64 {
    if d == 0 { 0.0 } else { n as f64 / d as f64 }
}

/// The outcome of a run.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SimReport {
    /// Per queue, config order.
    pub queues: Vec<SimResult>,
    /// Per (queue, priority) class, only for streams with classes.
    pub classes: Vec<SimResult>,
    /// Agents simulated.
    pub agents: u32,
    /// Engine events processed (for throughput figures).
    pub events: u64,
    /// Simulated hours measured (after warm-up).
    pub measured_hours: f64,
    /// The engine's own statistics per queue, counted from the end of the warm-up to the
    /// end of the run (a cross-check of the crate's statistics definitions).
    pub engine: Vec<QueueSnapshot>,
}

impl SimReport {
    /// A human-readable table.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "{} agents, {:.1} h measured\n{:<22} {:>8} {:>7} {:>8} {:>8} {:>7} {:>7} {:>6}",
            self.agents,
            self.measured_hours,
            "queue",
            "offered",
            "SL",
            "ASA s",
            "P(wait)",
            "aband",
            "occup",
            "maxW s"
        );
        for r in self.queues.iter().chain(self.classes.iter()) {
            let _ = writeln!(
                s,
                "{:<22} {:>8} {:>6.1}% {:>8.1} {:>7.1}% {:>6.1}% {:>7} {:>6.0}",
                format!("{} ({}s)", r.name, r.sl_secs),
                r.offered,
                100.0 * r.service_level(),
                r.asa_secs(),
                100.0 * r.p_wait(),
                100.0 * r.abandon_rate(),
                r.occupancy
                    .map_or("-".to_string(), |o| format!("{:.1}%", 100.0 * o)),
                r.max_wait_ms as f64 / 1000.0,
            );
        }
        s
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Ev {
    Arrival(u32),
    Answer(u64, u32),
    End(u64),
    Abandon(u64),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Status {
    Waiting,
    Answered,
    Gone,
}

struct SimCall {
    stream: u32,
    class: u32,
    arrived: u64,
    measured: bool,
    status: Status,
    ewt_ms: Option<u64>,
}

struct Stream {
    queue: QueueId,
    rate_per_ms: f64,
    aht_ms: f64,
    patience_ms: Option<f64>,
    classes: Vec<(i32, f64)>,
    class_base: usize,
    skills: Vec<(String, u8)>,
}

struct Run<'a> {
    engine: Engine,
    rng: ChaCha8Rng,
    heap: BinaryHeap<Reverse<(u64, u64, Ev)>>,
    seq: u64,
    calls: Vec<SimCall>,
    streams: Vec<Stream>,
    queues: Vec<SimResult>,
    classes: Vec<SimResult>,
    sl_ms: Vec<u64>,
    short_ms: u64,
    answer_delay_ms: u64,
    events: u64,
    cfg: &'a SimConfig,
}

fn unit(rng: &mut ChaCha8Rng) -> f64 {
    // 53 random bits → [0, 1).
    (rng.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
}

fn exp_sample(rng: &mut ChaCha8Rng, mean: f64) -> f64 {
    -mean * (1.0 - unit(rng)).ln()
}

/// Runs the simulation described by `cfg`.
pub fn simulate(cfg: &SimConfig) -> Result<SimReport> {
    cfg.validate()?;
    let acd = cfg.expanded_acd();
    let mut engine = Engine::new(&acd, Millis(0))?;
    let n_agents = engine.agent_count() as u32;
    for a in 0..n_agents {
        engine.agent_login(Millis(0), AgentId(a), true)?;
    }
    let mut streams = Vec::new();
    let mut classes = Vec::new();
    for t in &cfg.traffic {
        let queue = engine
            .queue_id(&t.queue)
            .ok_or_else(|| AcdError::UnknownQueue(t.queue.clone()))?;
        let total: f64 = t.classes.iter().map(|c| c.share).sum();
        let class_base = classes.len();
        let cls: Vec<(i32, f64)> = t
            .classes
            .iter()
            .map(|c| (c.priority, c.share / total))
            .collect();
        for c in &cls {
            classes.push(SimResult {
                name: format!("{}/priority {}", t.queue, c.0),
                sl_secs: acd.queues[queue.0 as usize].sl_secs,
                ..SimResult::default()
            });
        }
        streams.push(Stream {
            queue,
            rate_per_ms: t.calls_per_hour / 3_600_000.0,
            aht_ms: t.aht_secs * 1000.0,
            patience_ms: t.patience_secs.map(|p| p * 1000.0),
            classes: cls,
            class_base,
            skills: t.skills.iter().map(|r| (r.skill.clone(), r.min)).collect(),
        });
    }
    let run = Run {
        engine,
        rng: ChaCha8Rng::seed_from_u64(cfg.sim.seed),
        heap: BinaryHeap::new(),
        seq: 0,
        calls: Vec::new(),
        queues: acd
            .queues
            .iter()
            .map(|q| SimResult {
                name: q.name.clone(),
                sl_secs: q.sl_secs,
                ..SimResult::default()
            })
            .collect(),
        sl_ms: acd
            .queues
            .iter()
            .map(|q| u64::from(q.sl_secs) * 1000)
            .collect(),
        streams,
        classes,
        short_ms: u64::from(acd.short_abandon_secs) * 1000,
        answer_delay_ms: (cfg.sim.answer_delay_secs * 1000.0) as u64,
        events: 0,
        cfg,
    };
    run.go(n_agents)
}

impl Run<'_> {
    fn push(&mut self, at: u64, ev: Ev) {
        self.seq += 1;
        self.heap.push(Reverse((at, self.seq, ev)));
    }

    fn next_arrival(&mut self, now: u64, s: u32) {
        let rate = self.streams[s as usize].rate_per_ms;
        if rate > 0.0 {
            let dt = exp_sample(&mut self.rng, 1.0 / rate);
            self.push(now.saturating_add(dt.round() as u64), Ev::Arrival(s));
        }
    }

    fn go(mut self, n_agents: u32) -> Result<SimReport> {
        let end = (self.cfg.sim.hours * 3_600_000.0) as u64;
        let warm = (self.cfg.sim.warmup_hours * 3_600_000.0) as u64;
        let mut warmed = warm == 0;
        for s in 0..self.streams.len() as u32 {
            self.next_arrival(0, s);
        }
        loop {
            let next_ev = self.heap.peek().map(|Reverse((t, _, _))| *t);
            let next_timer = self.engine.poll_timeout().map(|m| m.0);
            let now = match (next_ev, next_timer) {
                (None, None) => break,
                (Some(e), Some(t)) if t <= e => {
                    self.engine.handle_timeout(Millis(t));
                    self.drain(t)?;
                    continue;
                }
                (None, Some(t)) => {
                    self.engine.handle_timeout(Millis(t));
                    self.drain(t)?;
                    continue;
                }
                (Some(e), _) => e,
            };
            if !warmed && now >= warm {
                warmed = true;
                self.engine.reset_stats(Millis(warm));
            }
            let Some(Reverse((_, _, ev))) = self.heap.pop() else {
                break;
            };
            self.events += 1;
            match ev {
                Ev::Arrival(s) => {
                    if now >= end {
                        continue;
                    }
                    self.next_arrival(now, s);
                    self.arrive(now, s, now >= warm)?;
                }
                Ev::Answer(c, a) => {
                    if self.calls[c as usize].status == Status::Waiting {
                        // The offer may have been withdrawn meanwhile; that is not an error.
                        if self
                            .engine
                            .offer_answered(Millis(now), CallId(c), AgentId(a))
                            .is_ok()
                        {
                            self.answered(now, c);
                        }
                    }
                }
                Ev::End(c) => {
                    self.engine.call_ended(Millis(now), CallId(c))?;
                }
                Ev::Abandon(c) => {
                    if self.calls[c as usize].status == Status::Waiting {
                        self.engine.call_abandoned(Millis(now), CallId(c))?;
                        let sc = &mut self.calls[c as usize];
                        sc.status = Status::Gone;
                        let waited = now - sc.arrived;
                        let short = waited < self.short_ms;
                        let (measured, stream, class) = (sc.measured, sc.stream, sc.class);
                        if measured {
                            self.for_each_result(stream, class, |r| {
                                r.abandoned += 1;
                                r.short_abandoned += u64::from(short);
                                r.wait_all_ms += waited;
                            });
                        }
                    }
                }
            }
            self.drain(now)?;
        }
        let now = Millis(end.max(warm));
        let mut engine = Vec::with_capacity(self.queues.len());
        for (i, r) in self.queues.iter_mut().enumerate() {
            let snap = self.engine.queue_snapshot(now, QueueId(i as u32))?;
            r.occupancy = snap.occupancy;
            engine.push(snap);
        }
        for s in &self.streams {
            let occ = self.queues[s.queue.0 as usize].occupancy;
            for c in 0..s.classes.len() {
                self.classes[s.class_base + c].occupancy = occ;
            }
        }
        Ok(SimReport {
            queues: self.queues,
            classes: self.classes,
            agents: n_agents,
            events: self.events,
            measured_hours: (end - warm) as f64 / 3_600_000.0,
            engine,
        })
    }

    fn for_each_result(&mut self, stream: u32, class: u32, mut f: impl FnMut(&mut SimResult)) {
        let s = &self.streams[stream as usize];
        f(&mut self.queues[s.queue.0 as usize]);
        if !s.classes.is_empty() {
            f(&mut self.classes[s.class_base + class as usize]);
        }
    }

    fn arrive(&mut self, now: u64, s: u32, measured: bool) -> Result<()> {
        let id = self.calls.len() as u64;
        let st = &self.streams[s as usize];
        let mut class = 0u32;
        let mut priority = 0;
        if !st.classes.is_empty() {
            let u = unit(&mut self.rng);
            let mut acc = 0.0;
            for (i, (p, share)) in st.classes.iter().enumerate() {
                acc += share;
                class = i as u32;
                priority = *p;
                if u < acc {
                    break;
                }
            }
        }
        let (queue, patience) = (st.queue, st.patience_ms);
        let skills = st.skills.clone();
        self.calls.push(SimCall {
            stream: s,
            class,
            arrived: now,
            measured,
            status: Status::Waiting,
            ewt_ms: None,
        });
        if measured {
            self.for_each_result(s, class, |r| r.offered += 1);
        }
        if let Some(p) = patience {
            let dt = exp_sample(&mut self.rng, p);
            self.push(now.saturating_add(dt.round() as u64), Ev::Abandon(id));
        }
        let mut nc = NewCall::new(CallId(id), queue);
        nc.priority = priority;
        nc.skills = skills;
        self.engine.call_arrived(Millis(now), nc)
    }

    fn answered(&mut self, now: u64, c: u64) {
        let sc = &mut self.calls[c as usize];
        sc.status = Status::Answered;
        let wait = now - sc.arrived;
        let (measured, stream, class, ewt) = (sc.measured, sc.stream, sc.class, sc.ewt_ms);
        let st = &self.streams[stream as usize];
        let sl = self.sl_ms[st.queue.0 as usize];
        let talk = exp_sample(&mut self.rng, st.aht_ms).round() as u64;
        self.push(now.saturating_add(talk), Ev::End(c));
        if measured {
            self.for_each_result(stream, class, |r| {
                r.answered += 1;
                r.answered_in_sl += u64::from(wait <= sl);
                r.answered_after_wait += u64::from(wait > 0);
                r.wait_answered_ms += wait;
                r.wait_all_ms += wait;
                r.max_wait_ms = r.max_wait_ms.max(wait);
                if let Some(e) = ewt {
                    r.announced += 1;
                    r.announced_ewt_ms += e;
                    r.announced_wait_ms += wait;
                }
            });
        }
    }

    fn drain(&mut self, now: u64) -> Result<()> {
        while let Some(d) = self.engine.poll_decision() {
            match d {
                Decision::Offer { call, agent, .. } => {
                    if self.answer_delay_ms == 0 {
                        self.engine.offer_answered(Millis(now), call, agent)?;
                        self.answered(now, call.0);
                    } else {
                        self.push(
                            now.saturating_add(self.answer_delay_ms),
                            Ev::Answer(call.0, agent.0),
                        );
                    }
                }
                Decision::Announce { call, ewt_secs, .. } => {
                    let sc = &mut self.calls[call.0 as usize];
                    if sc.ewt_ms.is_none() && sc.arrived == now {
                        sc.ewt_ms = Some(ewt_secs * 1000);
                    }
                }
                Decision::Fallback { call, .. } => {
                    let sc = &mut self.calls[call.0 as usize];
                    sc.status = Status::Gone;
                    let waited = now - sc.arrived;
                    let (measured, stream, class) = (sc.measured, sc.stream, sc.class);
                    if measured {
                        self.for_each_result(stream, class, |r| {
                            r.fallback += 1;
                            r.wait_all_ms += waited;
                        });
                    }
                }
                Decision::AgentStateChanged {
                    agent,
                    state: AgentState::NotReady(_),
                } => {
                    // A simulated agent who missed an offer gets straight back to work.
                    self.engine.agent_ready(Millis(now), agent)?;
                }
                _ => {}
            }
        }
        Ok(())
    }
}

/// "How many agents for this service level?"
#[derive(Debug, Clone, PartialEq)]
pub struct StaffingQuery {
    /// The queue to staff (strategy, SL threshold, wrap-up…).
    pub queue: QueueConfig,
    /// Arrivals per hour.
    pub calls_per_hour: f64,
    /// Mean talk time, seconds.
    pub aht_secs: f64,
    /// Mean patience, seconds, if callers abandon.
    pub patience_secs: Option<f64>,
    /// Target service level, 0..=1, at the queue's `sl_secs`.
    pub target: f64,
    /// Run parameters of each trial.
    pub sim: SimParams,
    /// Give up above this many agents.
    pub max_agents: u32,
}

/// The staffing answer: simulated and by formula.
#[derive(Debug, Clone, PartialEq)]
pub struct StaffingAnswer {
    /// Smallest agent count whose simulated SL meets the target.
    pub simulated: Option<u32>,
    /// Erlang C's answer (no abandonment, exponential talk time, wrap-up added to AHT).
    pub erlang_c: Option<u32>,
    /// The simulation at the chosen count.
    pub report: Option<SimReport>,
}

impl StaffingAnswer {
    /// A human-readable summary.
    pub fn to_text(&self, q: &StaffingQuery) -> String {
        let mut s = format!(
            "staffing for {:.0}% in {} s at {} calls/h, AHT {} s{}\n",
            q.target * 100.0,
            q.queue.sl_secs,
            q.calls_per_hour,
            q.aht_secs,
            q.patience_secs
                .map_or(String::new(), |p| format!(", patience {p} s")),
        );
        let show =
            |x: Option<u32>| x.map_or(format!("more than {}", q.max_agents), |n| n.to_string());
        let _ = writeln!(s, "  simulated: {} agents", show(self.simulated));
        let _ = writeln!(s, "  Erlang C:  {} agents", show(self.erlang_c));
        if let Some(r) = &self.report {
            s.push_str(&r.to_text());
        }
        s
    }
}

fn trial(q: &StaffingQuery, agents: u32) -> Result<SimReport> {
    let traffic = Traffic {
        queue: q.queue.name.clone(),
        calls_per_hour: q.calls_per_hour,
        aht_secs: q.aht_secs,
        patience_secs: q.patience_secs,
        classes: Vec::new(),
        skills: Vec::new(),
    };
    simulate(&SimConfig::single_queue(
        agents,
        q.queue.clone(),
        traffic,
        q.sim.clone(),
    ))
}

/// Finds the smallest agent count meeting the target by simulation (binary search with the
/// same seed for every trial, so trials share random numbers and SL is near-monotone).
pub fn staffing(q: &StaffingQuery) -> Result<StaffingAnswer> {
    if !(0.0..=1.0).contains(&q.target) {
        return Err(invalid("target", "must be within 0..=1"));
    }
    let lambda = q.calls_per_hour / 3600.0;
    let service = q.aht_secs + f64::from(q.queue.wrapup_secs);
    let ec = erlang::erlang_c_staffing(
        lambda,
        service,
        f64::from(q.queue.sl_secs),
        q.target,
        q.max_agents,
    );
    let meets = |r: &SimReport| r.queues[0].service_level() >= q.target;
    // Upper bound: Erlang C's answer usually suffices; grow if it does not.
    let mut hi = ec.unwrap_or(1).max(1);
    let mut hi_report = trial(q, hi)?;
    while !meets(&hi_report) {
        if hi >= q.max_agents {
            return Ok(StaffingAnswer {
                simulated: None,
                erlang_c: ec,
                report: None,
            });
        }
        hi = (hi + hi / 10 + 1).min(q.max_agents);
        hi_report = trial(q, hi)?;
    }
    let mut lo = 0; // lo never meets (0 agents cannot answer)
    while hi - lo > 1 {
        let mid = lo + (hi - lo) / 2;
        let r = trial(q, mid)?;
        if meets(&r) {
            hi = mid;
            hi_report = r;
        } else {
            lo = mid;
        }
    }
    Ok(StaffingAnswer {
        simulated: Some(hi),
        erlang_c: ec,
        report: Some(hi_report),
    })
}

/// A "what-if" change to a simulation file's traffic, as given on a command line.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TrafficOverride {
    /// Only the stream(s) into this queue; `None` = every stream.
    pub queue: Option<String>,
    /// New arrivals per hour.
    pub calls_per_hour: Option<f64>,
    /// New mean talk time, seconds.
    pub aht_secs: Option<f64>,
    /// New mean patience, seconds (`Some(0.0)` = callers never abandon).
    pub patience_secs: Option<f64>,
}

impl SimConfig {
    /// Applies a what-if override; errors if it names a queue without traffic.
    pub fn with_override(mut self, o: &TrafficOverride) -> Result<Self> {
        let mut hit = false;
        for t in &mut self.traffic {
            if o.queue.as_ref().is_some_and(|q| *q != t.queue) {
                continue;
            }
            hit = true;
            if let Some(x) = o.calls_per_hour {
                t.calls_per_hour = x;
            }
            if let Some(x) = o.aht_secs {
                t.aht_secs = x;
            }
            if let Some(x) = o.patience_secs {
                t.patience_secs = (x > 0.0).then_some(x);
            }
        }
        if !hit {
            return Err(AcdError::UnknownQueue(o.queue.clone().unwrap_or_default()));
        }
        self.validate()?;
        Ok(self)
    }
}
