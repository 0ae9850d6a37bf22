//! Configuration types, loaded from TOML by the binary and validated here.
//!
//! Every struct rejects unknown fields so that a typo in `hotline.toml` is an error with a
//! line and column, not a silently ignored setting. [`AcdConfig::validate`] checks the
//! cross-references (overflow queues, fallback queues, skills) and ranges.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::error::{AcdError, Result};

/// The whole ACD section of the configuration.
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AcdConfig {
    /// Seconds of waiting that are worth one priority point (aging, so nothing starves).
    /// `0` disables aging: strict priority, FIFO within a priority.
    #[serde(default = "d_aging")]
    pub aging_secs: u32,
    /// Abandons shorter than this are "short abandons": excluded from service level and
    /// abandonment rate (callers who misdialled or hung up during the greeting).
    #[serde(default = "d_short_abandon")]
    pub short_abandon_secs: u32,
    /// A caller who abandoned and calls the same queue again within this many seconds
    /// resumes their old place (a call refused at entry leaves the place for the next
    /// try). `0` disables it.
    #[serde(default)]
    pub resume_window_secs: u32,
    /// Priority points per customer tier (e.g. `{ vip = 10, gold = 5 }`), added to a call's
    /// own priority: the tier from the CRM sets the place in line, as data.
    #[serde(default)]
    pub tier_priority: BTreeMap<String, i32>,
    /// Seed for the `random` strategy, so runs are reproducible.
    #[serde(default)]
    pub seed: u64,
    /// The queues (skill groups).
    #[serde(default, rename = "queue")]
    pub queues: Vec<QueueConfig>,
    /// The agents known at start; more can be added with `Engine::add_agent`.
    #[serde(default, rename = "agent")]
    pub agents: Vec<AgentConfig>,
}

fn d_aging() -> u32 {
    60
}
fn d_short_abandon() -> u32 {
    5
}

impl AcdConfig {
    /// Parses and validates a TOML document holding an `AcdConfig` at its root.
    pub fn from_toml(text: &str) -> Result<Self> {
        let cfg: AcdConfig = toml::from_str(text).map_err(|e| AcdError::Parse(e.to_string()))?;
        cfg.validate()?;
        Ok(cfg)
    }

    /// Checks ranges and cross-references; the engine refuses a config that fails this.
    pub fn validate(&self) -> Result<()> {
        let mut names: BTreeMap<&str, usize> = BTreeMap::new();
        for (i, q) in self.queues.iter().enumerate() {
            if names.insert(q.name.as_str(), i).is_some() {
                return Err(invalid_at(
                    &["queue", &i.to_string(), "name"],
                    &format!("queue {:?}", q.name),
                    "duplicate queue name",
                ));
            }
        }
        if self.queues.len() > u32::MAX as usize / 2 {
            return Err(invalid_at(&["queue"], "queues", "too many queues"));
        }
        for (i, q) in self.queues.iter().enumerate() {
            q.validate(&names)
                .map_err(|e| e.under(&["queue", &i.to_string()]))?;
        }
        for (tier, p) in &self.tier_priority {
            if p.abs() > MAX_PRIORITY {
                return Err(invalid_at(
                    &["tier_priority", tier],
                    &format!("tier_priority {tier:?}"),
                    "must be within -1000..=1000",
                ));
            }
        }
        // A fallback chain of queues must end somewhere, or an empty center would loop.
        for (qi, q) in self.queues.iter().enumerate() {
            let mut seen = vec![false; self.queues.len()];
            let mut cur = q;
            while let Fallback::Queue(next) = &cur.fallback {
                let Some(&i) = names.get(next.as_str()) else {
                    return Err(AcdError::UnknownQueue(next.clone()));
                };
                if seen[i] {
                    return Err(invalid_at(
                        &["queue", &qi.to_string(), "fallback"],
                        &format!("queue {:?} fallback", q.name),
                        "fallback queues form a cycle",
                    ));
                }
                seen[i] = true;
                cur = &self.queues[i];
            }
        }
        let mut ids = std::collections::BTreeSet::new();
        for (i, a) in self.agents.iter().enumerate() {
            let at = ["agent", &i.to_string()];
            if !ids.insert(a.id.as_str()) {
                return Err(invalid_at(
                    &[at[0], at[1], "id"],
                    &format!("agent {:?}", a.id),
                    "duplicate agent id",
                ));
            }
            a.validate(&names).map_err(|e| e.under(&at))?;
        }
        Ok(())
    }
}

/// An [`AcdError::InvalidConfig`] that no one key of `[acd]` is to blame for.
pub(crate) fn invalid(what: &str, why: &str) -> AcdError {
    invalid_at(&[], what, why)
}

/// An [`AcdError::InvalidConfig`] about the value at `key` (TOML keys and array indices
/// below `[acd]`, or below the queue or agent being checked).
fn invalid_at(key: &[&str], what: &str, why: &str) -> AcdError {
    AcdError::InvalidConfig {
        what: what.to_string(),
        why: why.to_string(),
        key: key.iter().map(|k| k.to_string()).collect(),
    }
}

/// How a queue chooses among the available agents that can take a call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Strategy {
    /// The agent who has been idle the longest (since the end of their last call).
    #[default]
    LongestIdle,
    /// Highest total proficiency in the queue's skills, then longest idle.
    MostSkilled,
    /// Agents in configuration order, starting after the one who got the last call.
    RoundRobin,
    /// Fewest calls handled since login/stat reset, then longest idle.
    FewestCalls,
    /// Least accumulated talk time, then longest idle.
    LeastTalkTime,
    /// Offer to every eligible available agent at once (up to the queue's `ring_all_limit`);
    /// agents who become free while it rings join the ring; the first to answer wins and
    /// the others' offers are cancelled.
    RingAll,
    /// A uniformly random eligible agent (seeded, reproducible).
    Random,
    /// Agents in configuration order, always from the top.
    Linear,
}

/// A skill a queue requires, with the minimum proficiency (1–10).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SkillReq {
    /// Skill name (languages are skills too, e.g. `"lang-de"`).
    pub skill: String,
    /// Minimum proficiency, 1–10.
    #[serde(default = "d_min")]
    pub min: u8,
}
fn d_min() -> u8 {
    1
}

/// Where a call goes when it cannot or may no longer be served by its queue.
#[derive(Debug, Clone, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Fallback {
    /// Play a goodbye prompt and hang up.
    #[default]
    Hangup,
    /// Send the call to another queue. The engine forgets the call; the owner submits it
    /// again with `call_arrived` into that queue (a new queue visit, with its own stats).
    Queue(String),
    /// Transfer to a number.
    Number(String),
    /// Send to a voicemail box.
    Voicemail(String),
    /// Offer the caller a callback (placeholder for the IVR to handle).
    Callback,
}

/// One bullseye step: after `after_secs` of waiting, widen the set of agents for the call.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OverflowStep {
    /// Seconds after the call entered the queue.
    pub after_secs: u32,
    /// Lower the minimum proficiency of every required skill to this value.
    #[serde(default)]
    pub min_proficiency: Option<u8>,
    /// Agents of these queues may now take the call.
    #[serde(default)]
    pub add_queues: Vec<String>,
    /// Agents of these sites may now take the call.
    #[serde(default)]
    pub add_sites: Vec<String>,
    /// Agents of every site may now take the call.
    #[serde(default)]
    pub any_site: bool,
}

/// One queue (skill group).
#[derive(Debug, Clone, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct QueueConfig {
    /// Unique name, referenced by routes and overflow rules.
    pub name: String,
    /// Skills every call of this queue requires.
    #[serde(default)]
    pub skills: Vec<SkillReq>,
    /// How agents are chosen.
    #[serde(default)]
    pub strategy: Strategy,
    /// Most calls that may wait; further arrivals go to the fallback. `None` = unlimited.
    #[serde(default)]
    pub max_len: Option<u32>,
    /// Accept calls when no logged-in agent could ever serve them (with the call's own
    /// skills, counting every agent the bullseye steps could add).
    #[serde(default = "d_true")]
    pub join_when_empty: bool,
    /// Send calls to the fallback as soon as no logged-in agent could ever serve them: at
    /// arrival, and when a logout or re-skilling leaves waiting calls without anyone.
    #[serde(default)]
    pub leave_when_empty: bool,
    /// Seconds an offer rings before it is withdrawn. `0` = rings until answered/rejected.
    #[serde(default = "d_ring")]
    pub ring_timeout_secs: u32,
    /// Ring-all: most agents rung at once for one call (`0` = no limit). A bounded ring
    /// keeps a large group from all being tied up by one call; agents who become free
    /// while it rings join it up to this many.
    #[serde(default = "d_ring_all_limit")]
    pub ring_all_limit: u32,
    /// Whether an agent who lets an offer time out is made not-ready.
    #[serde(default = "d_true")]
    pub not_ready_on_no_answer: bool,
    /// Wrap-up (after-call work) seconds; the agent can end it early or extend it.
    #[serde(default)]
    pub wrapup_secs: u32,
    /// Service-level threshold: calls answered within this many seconds count as "in SL".
    #[serde(default = "d_sl")]
    pub sl_secs: u32,
    /// Service-level target in percent (informational; used by the staffing calculator).
    #[serde(default = "d_sl_target")]
    pub sl_target_pct: f64,
    /// Seconds between position/EWT announcements. `0` = no announcements.
    #[serde(default)]
    pub announce_secs: u32,
    /// Seconds after which a waiting call goes to its fallback. `None` = forever.
    #[serde(default)]
    pub max_wait_secs: Option<u32>,
    /// Where calls go when refused, timed out or stranded.
    #[serde(default)]
    pub fallback: Fallback,
    /// Priority points added to every call of this queue: fairness weight across queues for
    /// agents who serve several.
    #[serde(default)]
    pub weight: i32,
    /// Sites whose agents may take calls from the start; empty = every site.
    #[serde(default)]
    pub sites: Vec<String>,
    /// Bullseye steps, in increasing `after_secs`.
    #[serde(default)]
    pub overflow: Vec<OverflowStep>,
    /// Seconds a call with a preferred agent waits for that agent only.
    #[serde(default)]
    pub preferred_agent_secs: u32,
    /// Handle time (talk + wrap-up) assumed for the EWT before any call is measured.
    #[serde(default = "d_aht")]
    pub expected_aht_secs: u32,
    /// Seconds before a failed callback attempt is retried.
    #[serde(default = "d_cb_delay")]
    pub callback_retry_secs: u32,
    /// Callback attempts before the request goes to the fallback.
    #[serde(default = "d_cb_attempts")]
    pub callback_attempts: u32,
}

fn d_true() -> bool {
    true
}
fn d_ring() -> u32 {
    15
}
fn d_ring_all_limit() -> u32 {
    20
}
fn d_sl() -> u32 {
    20
}
fn d_sl_target() -> f64 {
    80.0
}
fn d_aht() -> u32 {
    180
}
fn d_cb_delay() -> u32 {
    120
}
fn d_cb_attempts() -> u32 {
    3
}

impl QueueConfig {
    /// A queue with every setting at its default (used by tests and the simulator).
    pub fn new(name: &str) -> Self {
        QueueConfig {
            name: name.to_string(),
            skills: Vec::new(),
            strategy: Strategy::default(),
            max_len: None,
            join_when_empty: true,
            leave_when_empty: false,
            ring_timeout_secs: d_ring(),
            ring_all_limit: d_ring_all_limit(),
            not_ready_on_no_answer: true,
            wrapup_secs: 0,
            sl_secs: d_sl(),
            sl_target_pct: d_sl_target(),
            announce_secs: 0,
            max_wait_secs: None,
            fallback: Fallback::Hangup,
            weight: 0,
            sites: Vec::new(),
            overflow: Vec::new(),
            preferred_agent_secs: 0,
            expected_aht_secs: d_aht(),
            callback_retry_secs: d_cb_delay(),
            callback_attempts: d_cb_attempts(),
        }
    }

    fn validate(&self, names: &BTreeMap<&str, usize>) -> Result<()> {
        let w = |s: &str| format!("queue {:?} {s}", self.name);
        if self.name.is_empty() {
            return Err(invalid_at(&["name"], "queue", "empty name"));
        }
        for (i, s) in self.skills.iter().enumerate() {
            check_prof(&w(&format!("skill {:?}", s.skill)), s.min)
                .map_err(|e| e.under(&["skills", &i.to_string(), "min"]))?;
        }
        if !(0.0..=100.0).contains(&self.sl_target_pct) {
            return Err(invalid_at(
                &["sl_target_pct"],
                &w("sl_target_pct"),
                "must be within 0..=100",
            ));
        }
        if self.weight.abs() > MAX_PRIORITY {
            return Err(invalid_at(
                &["weight"],
                &w("weight"),
                "must be within -1000..=1000",
            ));
        }
        if self.expected_aht_secs == 0 {
            return Err(invalid_at(
                &["expected_aht_secs"],
                &w("expected_aht_secs"),
                "must be > 0",
            ));
        }
        let mut last = None;
        for (i, st) in self.overflow.iter().enumerate() {
            let sw = w(&format!("overflow[{i}]"));
            let i = i.to_string();
            let at = |field: &str, why: &str| invalid_at(&["overflow", &i, field], &sw, why);
            if last.is_some_and(|l| st.after_secs < l) {
                return Err(at("after_secs", "after_secs must not decrease"));
            }
            last = Some(st.after_secs);
            if let Some(p) = st.min_proficiency {
                check_prof(&sw, p).map_err(|e| e.under(&["overflow", &i, "min_proficiency"]))?;
            }
            for (j, q) in st.add_queues.iter().enumerate() {
                if !names.contains_key(q.as_str()) {
                    return Err(invalid_at(
                        &["overflow", &i, "add_queues", &j.to_string()],
                        &sw,
                        &format!("unknown queue {q:?}"),
                    ));
                }
            }
        }
        if let Fallback::Queue(q) = &self.fallback {
            if !names.contains_key(q.as_str()) {
                return Err(invalid_at(
                    &["fallback"],
                    &w("fallback"),
                    &format!("unknown queue {q:?}"),
                ));
            }
            if q == &self.name {
                return Err(invalid_at(
                    &["fallback"],
                    &w("fallback"),
                    "a queue cannot fall back to itself",
                ));
            }
        }
        Ok(())
    }
}

/// Largest absolute static priority or queue weight.
pub const MAX_PRIORITY: i32 = 1000;

fn check_prof(what: &str, p: u8) -> Result<()> {
    if (1..=10).contains(&p) {
        Ok(())
    } else {
        Err(invalid(what, &format!("proficiency {p} is outside 1..=10")))
    }
}

/// One agent.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AgentConfig {
    /// Unique id (login name).
    pub id: String,
    /// Where the agent works: `office`, `home`, or a remote site's name.
    #[serde(default = "d_site")]
    pub site: String,
    /// Skill name → proficiency 1–10.
    #[serde(default)]
    pub skills: BTreeMap<String, u8>,
    /// Queue name → penalty (tier): lower tiers get calls first.
    #[serde(default)]
    pub queues: BTreeMap<String, u32>,
}
fn d_site() -> String {
    "office".to_string()
}

impl AgentConfig {
    /// An agent at the `office` site with the given queue memberships (penalty 0).
    pub fn new(id: &str, queues: &[&str]) -> Self {
        AgentConfig {
            id: id.to_string(),
            site: d_site(),
            skills: BTreeMap::new(),
            queues: queues.iter().map(|q| (q.to_string(), 0)).collect(),
        }
    }

    pub(crate) fn validate(&self, names: &BTreeMap<&str, usize>) -> Result<()> {
        let w = |s: &str| format!("agent {:?} {s}", self.id);
        if self.id.is_empty() {
            return Err(invalid_at(&["id"], "agent", "empty id"));
        }
        for (s, p) in &self.skills {
            check_prof(&w(&format!("skill {s:?}")), *p).map_err(|e| e.under(&["skills", s]))?;
        }
        for q in self.queues.keys() {
            if !names.contains_key(q.as_str()) {
                return Err(invalid_at(
                    &["queues", q],
                    &w("queues"),
                    &format!("unknown queue {q:?}"),
                ));
            }
        }
        Ok(())
    }
}
