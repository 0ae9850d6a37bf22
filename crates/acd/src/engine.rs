//! The engine: state, indexes and the event handlers.

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::hash::{BuildHasherDefault, Hasher};

use crate::config::{
    AcdConfig, AgentConfig, Fallback, MAX_PRIORITY, QueueConfig, Strategy, invalid,
};
use crate::error::{AcdError, Result};
use crate::stats::{AgentCounts, AgentSnapshot, QueueSnapshot, Snapshot};
use crate::{AgentId, CallId, Millis, QueueId};

/// Why an agent is not ready.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NotReadyReason {
    /// The engine made the agent not-ready because an offer rang out unanswered.
    MissedOffer,
    /// A reason code chosen by the agent or supervisor (break, training, …).
    Code(u16),
}

/// An agent's state as seen from outside.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum AgentState {
    /// Not logged in.
    LoggedOut,
    /// Logged in and waiting for a call.
    Available,
    /// A call is being offered (ringing) or a callback is being placed for the agent.
    Reserved(CallId),
    /// Talking.
    OnCall(CallId),
    /// After-call work.
    WrapUp,
    /// Logged in but not taking calls.
    NotReady(NotReadyReason),
}

impl AgentState {
    fn slot(&self) -> usize {
        match self {
            AgentState::LoggedOut => 0,
            AgentState::Available => 1,
            AgentState::Reserved(_) => 2,
            AgentState::OnCall(_) => 3,
            AgentState::WrapUp => 4,
            AgentState::NotReady(_) => 5,
        }
    }
    fn logged_in(&self) -> bool {
        !matches!(self, AgentState::LoggedOut)
    }
    fn working(&self) -> bool {
        !matches!(self, AgentState::LoggedOut | AgentState::NotReady(_))
    }
}

/// Why a call was sent to its fallback.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FallbackReason {
    /// The queue was at `max_len` when the call arrived.
    QueueFull,
    /// No logged-in agent could ever serve the call (join/leave-when-empty).
    Empty,
    /// The call waited `max_wait_secs`.
    MaxWait,
    /// Every callback attempt failed.
    CallbackFailed,
    /// The queue was removed from the configuration while the call waited.
    Removed,
}

/// What the engine asks its owner to do. Drain with [`Engine::poll_decision`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Ring `agent` with `call` (screen pop, device call). `via` is the queue whose agent
    /// pool it came from (the call's own queue or an overflow queue).
    Offer {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
        /// The queue whose agents the agent was taken from.
        via: QueueId,
    },
    /// Stop ringing `agent` (another agent answered, the ring timed out, the caller left).
    CancelOffer {
        /// The call.
        call: CallId,
        /// The agent.
        agent: AgentId,
    },
    /// A queued callback reached the head: `agent` is reserved; place the outbound call.
    PlaceCallback {
        /// The callback request.
        call: CallId,
        /// The reserved agent.
        agent: AgentId,
        /// The number to call.
        number: String,
    },
    /// Tell the caller their position and expected wait.
    Announce {
        /// The call.
        call: CallId,
        /// 1 = next.
        position: u32,
        /// Expected wait in seconds.
        ewt_secs: u64,
    },
    /// A bullseye step was applied (informational: for the queue log).
    Overflow {
        /// The call.
        call: CallId,
        /// Index of the step in the queue's `overflow` list.
        step: u32,
    },
    /// The call leaves the ACD for its queue's fallback target.
    Fallback {
        /// The call.
        call: CallId,
        /// The queue it leaves.
        queue: QueueId,
        /// Where to send it.
        target: Fallback,
        /// Why.
        reason: FallbackReason,
    },
    /// The engine changed an agent's state on its own (wrap-up timer ended, not-ready after
    /// a missed offer): tell the desktop.
    AgentStateChanged {
        /// The agent.
        agent: AgentId,
        /// The new state.
        state: AgentState,
    },
}

/// A call entering a queue.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewCall {
    /// Owner's id for the call.
    pub id: CallId,
    /// The queue.
    pub queue: QueueId,
    /// Static priority (higher = sooner), e.g. from the customer tier or the dialed number;
    /// clamped to ±1000.
    pub priority: i32,
    /// Customer tier (e.g. `"vip"`); adds the config's `tier_priority` for it.
    pub tier: Option<String>,
    /// Extra skills this call requires beyond its queue's, e.g. `("lang-de", 5)`.
    pub skills: Vec<(String, u8)>,
    /// Account manager or last agent, tried alone for the queue's `preferred_agent_secs`.
    pub preferred_agent: Option<AgentId>,
    /// Caller identity (E.164) for resuming an abandoned call's place.
    pub caller: Option<String>,
}

impl NewCall {
    /// A plain call: priority 0, no extra skills, no preference.
    pub fn new(id: CallId, queue: QueueId) -> Self {
        NewCall {
            id,
            queue,
            priority: 0,
            tier: None,
            skills: Vec::new(),
            preferred_agent: None,
            caller: None,
        }
    }
}

/// Position and expected wait, for announcements and for diverting before queueing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitEstimate {
    /// 1 = next in line.
    pub position: u32,
    /// Expected wait in seconds.
    pub ewt_secs: u64,
}

// ---------------------------------------------------------------------------------------
// Internals

/// A fast hasher for integer ids (the default SipHash costs more than the whole decision).
#[derive(Default)]
struct IdHasher(u64);
impl Hasher for IdHasher {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for b in bytes {
            self.0 = (self.0.rotate_left(8) ^ u64::from(*b)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        }
    }
    fn write_u64(&mut self, n: u64) {
        self.0 = (self.0 ^ n).wrapping_mul(0x9E37_79B9_7F4A_7C15);
        self.0 ^= self.0 >> 29;
    }
}
type IdMap<K, V> = HashMap<K, V, BuildHasherDefault<IdHasher>>;

/// Waiting-call order: ascending `(ord, seq)` is best first. `ord` = entry time minus the
/// priority expressed in milliseconds of aging, so it never changes while the call waits.
type CKey = (i64, u64);

/// Available-agent order inside one queue: ascending is best first.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct AKey {
    penalty: u32,
    k1: i64,
    k2: u64,
    agent: u32,
}

const NO_SKILL: u16 = u16::MAX;
const ALL_SITES: u64 = u64::MAX;
const MAX_SITES: usize = 64;
/// Without aging a priority point is worth ~139 years of waiting, i.e. strict priority.
const NO_AGING_STEP_MS: i64 = 1 << 42;
const AHT_ALPHA: f64 = 0.02;
/// Service gaps averaged for the EWT: a running mean up to this many, then a moving one.
const GAP_WINDOW: u32 = 50;
const MAX_SIGS: usize = 1024;
/// Most requirement classes tracked for leave/join-when-empty (see [`Class`]).
const MAX_CLASSES: usize = 1 << 16;
/// The class of a call past `MAX_CLASSES`: only the coarse per-queue check applies to it.
const NO_CLASS: u32 = u32::MAX;

struct Step {
    after_ms: u64,
    min: Option<u8>,
    add_queues: Vec<u32>,
    add_sites: u64,
}

#[derive(Default, Clone)]
pub(crate) struct QStats {
    pub offered: u64,
    pub answered: u64,
    pub answered_in_sl: u64,
    pub wait_answered_ms: u64,
    pub abandoned: u64,
    pub short_abandoned: u64,
    pub wait_abandoned_ms: u64,
    pub timed_out: u64,
    pub refused: u64,
    pub callback_failed: u64,
    pub handled: u64,
    pub handle_ms: u64,
}

struct Queue {
    name: String,
    strategy: Strategy,
    skills: Vec<(u16, u8)>,
    max_len: Option<u32>,
    join_empty: bool,
    leave_empty: bool,
    ring_ms: u64,
    /// Ring-all: most agents rung at once (`usize::MAX` = no limit).
    ring_cap: usize,
    nr_on_no_answer: bool,
    wrap_ms: u64,
    sl_ms: u64,
    announce_ms: u64,
    max_wait_ms: Option<u64>,
    fallback: Fallback,
    weight: i64,
    sites: u64,
    steps: Vec<Step>,
    pref_ms: u64,
    cb_retry_ms: u64,
    cb_attempts: u32,
    /// Lowest proficiency any step relaxes to: decides who could *ever* serve the queue.
    loosest: Option<u8>,
    /// Sites the queue's calls may ever reach (own sites plus every step's).
    ever_sites: u64,
    /// Requirement classes whose home queue can reach this queue's agents: the counts an
    /// agent of this queue updates when logging in or out.
    classes: Vec<u32>,
    available: BTreeSet<AKey>,
    waiting: BTreeMap<CKey, CallId>,
    /// Ring-all calls of (or overflowed to) this queue that are ringing: an agent who
    /// becomes free joins the best of them that is below its cap rather than sit idle.
    ringing: BTreeMap<CKey, CallId>,
    /// The same calls split by the set of extra skills they need, so that an agent skips
    /// whole groups it can never serve (e.g. a language it does not speak) instead of
    /// stepping over each such call at the head of the queue.
    buckets: Vec<(u32, BTreeMap<CKey, CallId>)>,
    own_waiting: u32,
    /// Logged-in members who could ever serve the queue.
    capable: u32,
    /// Logged-in, not not-ready members (the EWT's server count).
    working: u32,
    reach: Vec<u32>,
    rev_reach: Vec<u32>,
    rr_last: u32,
    aht_ms: f64,
    /// Time this queue's own calls have waited (some call waiting) since its last service.
    busy_ms: u64,
    busy_mark: Millis,
    /// Mean time between services while calls wait, times the working members then: the
    /// measured time one member takes per call of *this* queue. Shared agents who also
    /// serve other queues make it longer than the AHT, which the EWT needs to know.
    gap_ms: f64,
    gap_n: u32,
    members: Vec<u32>,
    st: QStats,
}

/// One kind of call for join/leave-when-empty: a home queue plus the extra skills the call
/// needs. `able` counts the logged-in (agent, queue) memberships that could serve such a
/// call at its loosest bullseye step, so servability is O(1) per call and an agent's login
/// or logout touches only the classes of its own queues, never every waiting call.
struct Class {
    home: u32,
    extra: Vec<(u16, u8)>,
    able: u32,
    /// Calls of this class not yet connected, in queue order (they are stranded together).
    calls: BTreeSet<(CKey, CallId)>,
}

/// Whether agent `ag`, through its membership of queue `t` (which must be capable), could
/// serve a call of class `cl` once every bullseye step of its home queue has applied.
fn can_ever_serve(queues: &[Queue], ag: &Agent, t: u32, cl: &Class) -> bool {
    let h = &queues[cl.home as usize];
    if h.ever_sites & (1u64 << ag.site) == 0 {
        return false;
    }
    let relax = |m: u8| h.loosest.map_or(m, |l| m.min(l));
    queues[t as usize]
        .skills
        .iter()
        .chain(cl.extra.iter())
        .all(|&(s, m)| ag.prof(s) >= relax(m))
}

struct Member {
    queue: u32,
    penalty: u32,
    score: i64,
    capable: bool,
    key: Option<AKey>,
}

struct Agent {
    name: String,
    site: u8,
    skills: Vec<(u16, u8)>,
    members: Vec<Member>,
    state: AgentState,
    state_since: Millis,
    acc_since: Millis,
    time_in: [u64; 6],
    idle_since: Millis,
    handled: u64,
    talk_ms: u64,
    wrap_ms: u64,
    missed: u64,
    preferred: Vec<CallId>,
    pending_nr: Option<NotReadyReason>,
    pending_logout: bool,
    wrap_start: Millis,
    wrap_until: Option<Millis>,
    last_talk_ms: u64,
    last_queue: u32,
    /// On `Engine::changed` (its state changed since the last `take_changed`).
    dirty: bool,
}

impl Queue {
    /// Adds the time calls have waited since the last change to the busy clock.
    fn tick_busy(&mut self, now: Millis) {
        if self.own_waiting > 0 {
            self.busy_ms += now.since(self.busy_mark);
        }
        self.busy_mark = now;
    }

    /// A waiting call of this queue was taken by an agent: one service gap measured. A
    /// call taken the instant it arrived measures nothing (no gap, no wait).
    fn served(&mut self) {
        if self.busy_ms == 0 {
            return;
        }
        if self.gap_n == 0 {
            // The AHT-based estimate counts as the first sample, so that one gap does not
            // swing the EWT.
            self.gap_ms = self.aht_ms;
            self.gap_n = 1;
        }
        let sample = self.busy_ms as f64 * f64::from(self.working.max(1));
        self.gap_n = (self.gap_n + 1).min(GAP_WINDOW);
        self.gap_ms += (sample - self.gap_ms) / f64::from(self.gap_n);
        self.busy_ms = 0;
    }

    /// Expected wait of the call at `position`, ms.
    fn ewt_ms(&self, position: u32) -> u64 {
        let per_member = if self.gap_n == 0 {
            self.aht_ms
        } else {
            self.gap_ms
        };
        (f64::from(position) * per_member / f64::from(self.working.max(1))) as u64
    }

    fn wait_insert(&mut self, key: CKey, cid: CallId, sig: u32) {
        self.waiting.insert(key, cid);
        match self.buckets.iter_mut().find(|b| b.0 == sig) {
            Some(b) => {
                b.1.insert(key, cid);
            }
            None => {
                self.buckets.push((sig, BTreeMap::from([(key, cid)])));
            }
        }
    }

    fn wait_remove(&mut self, key: &CKey, sig: u32) {
        self.waiting.remove(key);
        // Empty buckets are kept: the common ones empty and refill all the time.
        if let Some(b) = self.buckets.iter_mut().find(|b| b.0 == sig) {
            b.1.remove(key);
        }
    }
}

impl Agent {
    fn prof(&self, skill: u16) -> u8 {
        prof(&self.skills, skill)
    }
}

/// Proficiency in a sorted skill list; 0 = lacks the skill.
fn prof(skills: &[(u16, u8)], skill: u16) -> u8 {
    match skills.binary_search_by_key(&skill, |s| s.0) {
        Ok(i) => skills[i].1,
        Err(_) => 0,
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum CState {
    Waiting,
    Held,
    Delayed,
    Offered(Vec<u32>),
    Dialing(u32),
    Connected(u32),
}

struct Call {
    home: u32,
    key: CKey,
    arrived: Millis,
    extra: Vec<(u16, u8)>,
    /// Interned set of the extra skills' ids (the queue bucket the call waits in).
    sig: u32,
    /// Requirement class (join/leave-when-empty), or `NO_CLASS`.
    class: u32,
    relax: Option<u8>,
    targets: Vec<u32>,
    sites: u64,
    step: usize,
    state: CState,
    declined: Vec<u32>,
    preferred: Option<u32>,
    caller: Option<String>,
    callback: Option<(String, u32)>,
    t_step: Option<Millis>,
    t_max: Option<Millis>,
    t_ann: Option<Millis>,
    t_ring: Option<Millis>,
    t_hold: Option<Millis>,
    t_retry: Option<Millis>,
    answered_at: Millis,
    /// When the current offer started ringing.
    ring_start: Millis,
    /// The current offer is a ring-all offer (decided when it starts, so a queue edit
    /// changes the next offer, not this one).
    ring_all: bool,
    /// Ring-all agents who joined the ring after it started: a ring timeout cancels their
    /// offer without counting it as missed (they have not rung a full timeout), and they
    /// are offered the call again at once.
    late: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Timer {
    Ring(u64),
    Step(u64),
    MaxWait(u64),
    Announce(u64),
    Hold(u64),
    Retry(u64),
    Wrap(u32),
}

struct Resume {
    queue: u32,
    key: CKey,
    until: Millis,
}

type Timers = BTreeSet<(Millis, Timer)>;

fn arm(timers: &mut Timers, slot: &mut Option<Millis>, at: Millis, t: Timer) {
    if let Some(old) = slot.take() {
        timers.remove(&(old, t));
    }
    timers.insert((at, t));
    *slot = Some(at);
}

fn disarm(timers: &mut Timers, slot: &mut Option<Millis>, t: Timer) {
    if let Some(old) = slot.take() {
        timers.remove(&(old, t));
    }
}

fn eligible(a: &Agent, aid: u32, c: &Call, q: &Queue) -> bool {
    if c.sites & (1u64 << a.site) == 0 || c.declined.contains(&aid) {
        return false;
    }
    q.skills.iter().chain(c.extra.iter()).all(|&(s, m)| {
        let need = c.relax.map_or(m, |r| m.min(r));
        a.prof(s) >= need
    })
}

/// The ACD engine. See the crate docs for the model; every `&mut self` method is an event.
pub struct Engine {
    queues: Vec<Queue>,
    agents: Vec<Agent>,
    calls: IdMap<CallId, Call>,
    timers: Timers,
    decisions: VecDeque<Decision>,
    seq: u64,
    step_ms: i64,
    short_ms: u64,
    resume_ms: u64,
    skill_ids: HashMap<String, u16>,
    site_ids: HashMap<String, u8>,
    agent_ids: HashMap<String, u32>,
    queue_ids: HashMap<String, u32>,
    resume: HashMap<String, Resume>,
    resume_order: VecDeque<(Millis, String)>,
    rng: u64,
    tiers: HashMap<String, i64>,
    sig_ids: HashMap<Vec<u16>, u32>,
    sig_skills: Vec<Vec<u16>>,
    classes: Vec<Class>,
    class_ids: HashMap<(u32, Vec<(u16, u8)>), u32>,
    /// Classes whose `able` count dropped to zero: their calls may be stranded.
    strand_pending: Vec<u32>,
    stats_since: Millis,
    scratch: Vec<(u32, u32)>,
    /// Agents whose state changed (or who were added) since the last
    /// [`Engine::take_changed`], each once: the owner publishes these instead of
    /// scanning every agent after every event.
    changed: Vec<u32>,
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("queues", &self.queues.len())
            .field("agents", &self.agents.len())
            .field("calls", &self.calls.len())
            .finish()
    }
}

impl Engine {
    /// Builds an engine from a validated config; every agent starts logged out.
    pub fn new(cfg: &AcdConfig, now: Millis) -> Result<Self> {
        cfg.validate()?;
        let mut e = Engine {
            queues: Vec::with_capacity(cfg.queues.len()),
            agents: Vec::new(),
            calls: IdMap::default(),
            timers: BTreeSet::new(),
            decisions: VecDeque::new(),
            seq: 0,
            step_ms: if cfg.aging_secs == 0 {
                NO_AGING_STEP_MS
            } else {
                i64::from(cfg.aging_secs) * 1000
            },
            short_ms: u64::from(cfg.short_abandon_secs) * 1000,
            resume_ms: u64::from(cfg.resume_window_secs) * 1000,
            skill_ids: HashMap::new(),
            site_ids: HashMap::new(),
            agent_ids: HashMap::new(),
            queue_ids: HashMap::new(),
            resume: HashMap::new(),
            resume_order: VecDeque::new(),
            rng: cfg.seed ^ 0x5DEE_CE66_D1CE_4E5B,
            sig_ids: HashMap::new(),
            sig_skills: Vec::new(),
            classes: Vec::new(),
            class_ids: HashMap::new(),
            strand_pending: Vec::new(),
            tiers: cfg
                .tier_priority
                .iter()
                .map(|(k, v)| (k.clone(), i64::from(*v)))
                .collect(),
            stats_since: now,
            scratch: Vec::new(),
            changed: Vec::new(),
        };
        for (i, q) in cfg.queues.iter().enumerate() {
            e.queue_ids.insert(q.name.clone(), i as u32);
        }
        // Errors of one entry (too many skills or sites) name it: `config_key`.
        for (i, q) in cfg.queues.iter().enumerate() {
            let compiled = e
                .compile_queue(q)
                .map_err(|e| e.under(&["queue", &i.to_string()]))?;
            e.queues.push(compiled);
        }
        e.link_reach();
        for (i, a) in cfg.agents.iter().enumerate() {
            e.add_agent(a, now)
                .map_err(|e| e.under(&["agent", &i.to_string()]))?;
        }
        Ok(e)
    }

    /// Interns the set of a call's extra skills. Past `MAX_SIGS` distinct sets (only a
    /// hostile event stream gets there) calls share one catch-all bucket that no agent
    /// skips, which is correct, only slower.
    fn intern_sig(&mut self, extra: &[(u16, u8)]) -> u32 {
        let mut key: Vec<u16> = extra.iter().map(|e| e.0).collect();
        key.sort_unstable();
        key.dedup();
        if let Some(&id) = self.sig_ids.get(&key) {
            return id;
        }
        if self.sig_skills.len() >= MAX_SIGS {
            return u32::MAX;
        }
        let id = self.sig_skills.len() as u32;
        self.sig_skills.push(key.clone());
        self.sig_ids.insert(key, id);
        id
    }

    fn skill(&mut self, name: &str) -> Result<u16> {
        if let Some(&s) = self.skill_ids.get(name) {
            return Ok(s);
        }
        let id = self.skill_ids.len();
        if id >= usize::from(NO_SKILL) {
            return Err(invalid("skills", "too many distinct skills"));
        }
        self.skill_ids.insert(name.to_string(), id as u16);
        Ok(id as u16)
    }

    fn site(&mut self, name: &str) -> Result<u8> {
        if let Some(&s) = self.site_ids.get(name) {
            return Ok(s);
        }
        let id = self.site_ids.len();
        if id >= MAX_SITES {
            return Err(invalid("sites", "more than 64 distinct sites"));
        }
        self.site_ids.insert(name.to_string(), id as u8);
        Ok(id as u8)
    }

    /// The mask of `names`; an error's key is the index of the name that overflowed.
    fn sites(&mut self, names: &[String]) -> Result<u64> {
        let mut m = 0u64;
        for (i, n) in names.iter().enumerate() {
            m |= 1u64 << self.site(n).map_err(|e| e.under(&[&i.to_string()]))?;
        }
        Ok(m)
    }

    /// Rebuilds every queue's reverse overflow reach (which queues can draw on it).
    fn link_reach(&mut self) {
        for q in &mut self.queues {
            q.rev_reach.clear();
        }
        for i in 0..self.queues.len() {
            let reach = self.queues[i].reach.clone();
            for r in reach {
                self.queues[r as usize].rev_reach.push(i as u32);
            }
        }
    }

    /// Replaces the settings of an existing queue (matched by name) while calls flow: an
    /// admin's routing edit. Waiting calls keep their place and their bullseye progress
    /// (later steps come from the new list); timers already running (ring, wrap-up, max
    /// wait) keep their deadlines, and waiting calls keep the weight they entered with; the
    /// new settings apply to every later decision and arrival. Agents
    /// are re-indexed for the new strategy and skills, and waiting calls are offered at
    /// once if the change lets someone take them.
    pub fn update_queue(&mut self, now: Millis, cfg: &QueueConfig) -> Result<QueueId> {
        let qi = *self
            .queue_ids
            .get(&cfg.name)
            .ok_or_else(|| AcdError::UnknownQueue(cfg.name.clone()))?;
        // Validate as part of the whole configuration (names, fallback cycles).
        let mut whole: Vec<QueueConfig> = self
            .queues
            .iter()
            .map(|q| {
                let mut c = QueueConfig::new(&q.name);
                c.fallback = q.fallback.clone();
                c
            })
            .collect();
        whole[qi as usize] = cfg.clone();
        AcdConfig {
            aging_secs: 0,
            short_abandon_secs: 0,
            resume_window_secs: 0,
            tier_priority: Default::default(),
            seed: 0,
            queues: whole,
            agents: Vec::new(),
        }
        .validate()?;
        let mut new = self.compile_queue(cfg)?;
        let members = self.queues[qi as usize].members.clone();
        // Take the members out of the counts and indexes under the old settings.
        for &a in &members {
            let st = self.agents[a as usize].state;
            if st == AgentState::Available {
                self.remove_available(a);
            }
            self.count(a, -i32::from(st.logged_in()), -i32::from(st.working()));
        }
        let old = &mut self.queues[qi as usize];
        new.waiting = std::mem::take(&mut old.waiting);
        new.ringing = std::mem::take(&mut old.ringing);
        new.buckets = std::mem::take(&mut old.buckets);
        new.own_waiting = old.own_waiting;
        new.rr_last = old.rr_last;
        new.aht_ms = old.aht_ms;
        new.busy_ms = old.busy_ms;
        new.busy_mark = old.busy_mark;
        new.gap_ms = old.gap_ms;
        new.gap_n = old.gap_n;
        new.members = std::mem::take(&mut old.members);
        new.st = std::mem::take(&mut old.st);
        *old = new;
        self.link_reach();
        for &a in &members {
            let skills = self.agents[a as usize].skills.clone();
            let q = &self.queues[qi as usize];
            let capable = q
                .skills
                .iter()
                .all(|&(s, m)| prof(&skills, s) >= q.loosest.map_or(m, |l| m.min(l)));
            let score = q
                .skills
                .iter()
                .map(|&(s, _)| i64::from(prof(&skills, s)))
                .sum();
            let st = self.agents[a as usize].state;
            if let Some(m) = self.agents[a as usize]
                .members
                .iter_mut()
                .find(|m| m.queue == qi)
            {
                m.capable = capable;
                m.score = score;
            }
            self.count(a, i32::from(st.logged_in()), i32::from(st.working()));
        }
        for &a in &members {
            if self.agents[a as usize].state == AgentState::Available {
                self.make_available(now, a);
            }
        }
        let waiting: Vec<CallId> = self.queues[qi as usize].waiting.values().copied().collect();
        for cid in waiting {
            if self
                .calls
                .get(&cid)
                .is_some_and(|c| c.state == CState::Waiting)
            {
                self.dispatch_call(now, cid);
            }
        }
        // The queue's skills, steps and reach feed every class that can reach it.
        self.rebuild_classes();
        self.flush_strands(now);
        Ok(QueueId(qi))
    }

    /// Adds a queue while calls flow (an admin's routing edit). It is validated with the
    /// existing queues (names, overflow and fallback references); calls may enter it at
    /// once and agents join it through [`Engine::update_agent`].
    pub fn add_queue(&mut self, cfg: &QueueConfig) -> Result<QueueId> {
        if self.queue_ids.contains_key(&cfg.name) {
            return Err(invalid(
                &format!("queue {:?}", cfg.name),
                "duplicate queue name",
            ));
        }
        let mut whole: Vec<QueueConfig> = self
            .queues
            .iter()
            .map(|q| {
                let mut c = QueueConfig::new(&q.name);
                c.fallback = q.fallback.clone();
                c
            })
            .collect();
        whole.push(cfg.clone());
        AcdConfig {
            aging_secs: 0,
            short_abandon_secs: 0,
            resume_window_secs: 0,
            tier_priority: Default::default(),
            seed: 0,
            queues: whole,
            agents: Vec::new(),
        }
        .validate()?;
        let qi =
            u32::try_from(self.queues.len()).map_err(|_| invalid("queues", "too many queues"))?;
        self.queue_ids.insert(cfg.name.clone(), qi);
        match self.compile_queue(cfg) {
            Ok(q) => self.queues.push(q),
            Err(e) => {
                self.queue_ids.remove(&cfg.name);
                return Err(e);
            }
        }
        self.link_reach();
        self.rebuild_classes();
        Ok(QueueId(qi))
    }

    /// Takes a queue out of service while calls flow (it was removed from the
    /// configuration): every call waiting or ringing in it goes to its fallback, oldest
    /// first ([`FallbackReason::Removed`]), except pending callback requests, which move
    /// to a fallback queue keeping their places; calls already talking are left alone, and later
    /// arrivals are refused to the fallback. The queue keeps its id (ids are indexes).
    pub fn retire_queue(&mut self, now: Millis, name: &str) -> Result<QueueId> {
        let qi = *self
            .queue_ids
            .get(name)
            .ok_or_else(|| AcdError::UnknownQueue(name.to_string()))?;
        let mut draining: Vec<(Millis, CKey, CallId)> = self
            .calls
            .iter()
            .filter(|(_, c)| {
                c.home == qi
                    && matches!(
                        c.state,
                        CState::Waiting | CState::Delayed | CState::Offered(_) | CState::Dialing(_)
                    )
            })
            .map(|(id, c)| (c.arrived, c.key, *id))
            .collect();
        draining.sort();
        // Pending callback requests (nobody is on the line to hear a fallback) move to the
        // fallback queue with their places; everything else falls back.
        let moves_to = match &self.queues[qi as usize].fallback {
            Fallback::Queue(next) => self.queue_ids.get(next).copied().filter(|&n| n != qi),
            _ => None,
        };
        for (_, _, cid) in draining {
            let pending_callback = self.calls.get(&cid).is_some_and(|c| {
                c.callback.is_some() && matches!(c.state, CState::Waiting | CState::Delayed)
            });
            match moves_to {
                Some(to) if pending_callback => self.move_callback(now, cid, to),
                _ => self.fallback(now, cid, FallbackReason::Removed),
            }
        }
        let q = &mut self.queues[qi as usize];
        q.max_len = Some(0);
        q.steps.clear();
        q.reach = vec![qi];
        self.link_reach();
        self.rebuild_classes();
        self.flush_strands(now);
        Ok(QueueId(qi))
    }

    /// A pending callback request of a retired queue goes on waiting in queue `to`: it
    /// keeps its key (its place by arrival and priority, so requests keep their order and
    /// rank fairly against `to`'s own callers), its number and attempts; `to`'s steps, max
    /// wait and skills apply from now. A full `to` refuses it to `to`'s fallback.
    fn move_callback(&mut self, now: Millis, cid: CallId, to: u32) {
        let Some(mut c) = self.detach(now, cid) else {
            return;
        };
        let q = &self.queues[to as usize];
        if q.max_len.is_some_and(|m| q.own_waiting >= m) {
            self.refuse(cid, to, FallbackReason::QueueFull);
            return;
        }
        c.class = self.class_for(to, &c.extra);
        let q = &mut self.queues[to as usize];
        q.st.offered += 1;
        c.home = to;
        c.targets = vec![to];
        c.sites = q.sites;
        c.step = 0;
        c.relax = None;
        c.declined.clear();
        c.preferred = None;
        if let Some(st) = q.steps.first() {
            arm(
                &mut self.timers,
                &mut c.t_step,
                now.plus(st.after_ms),
                Timer::Step(cid.0),
            );
        }
        if let Some(m) = q.max_wait_ms {
            arm(
                &mut self.timers,
                &mut c.t_max,
                now.plus(m),
                Timer::MaxWait(cid.0),
            );
        }
        self.enclass(cid, &c);
        self.calls.insert(cid, c);
        self.insert_waiting(now, cid);
        self.dispatch_call(now, cid);
    }

    /// The queue a call waits in now (a pending callback request moves when its queue
    /// is retired: see [`Engine::retire_queue`]).
    pub fn call_queue(&self, cid: CallId) -> Option<QueueId> {
        self.calls.get(&cid).map(|c| QueueId(c.home))
    }

    fn compile_queue(&mut self, q: &QueueConfig) -> Result<Queue> {
        let mut skills = Vec::new();
        for (i, s) in q.skills.iter().enumerate() {
            let id = self
                .skill(&s.skill)
                .map_err(|e| e.under(&["skills", &i.to_string(), "skill"]))?;
            skills.push((id, s.min));
        }
        let mut steps = Vec::new();
        let me = *self
            .queue_ids
            .get(&q.name)
            .ok_or_else(|| AcdError::UnknownQueue(q.name.clone()))?;
        let mut reach = vec![me];
        let mut loosest: Option<u8> = None;
        let own_sites = if q.sites.is_empty() {
            ALL_SITES
        } else {
            self.sites(&q.sites).map_err(|e| e.under(&["sites"]))?
        };
        let mut ever_sites = own_sites;
        for (si, st) in q.overflow.iter().enumerate() {
            let mut add = Vec::new();
            for n in &st.add_queues {
                let id = *self
                    .queue_ids
                    .get(n)
                    .ok_or_else(|| AcdError::UnknownQueue(n.clone()))?;
                add.push(id);
                if !reach.contains(&id) {
                    reach.push(id);
                }
            }
            if let Some(m) = st.min_proficiency {
                loosest = Some(loosest.map_or(m, |l| l.min(m)));
            }
            let add_sites = if st.any_site {
                ALL_SITES
            } else {
                self.sites(&st.add_sites)
                    .map_err(|e| e.under(&["overflow", &si.to_string(), "add_sites"]))?
            };
            ever_sites |= add_sites;
            steps.push(Step {
                after_ms: u64::from(st.after_secs) * 1000,
                min: st.min_proficiency,
                add_queues: add,
                add_sites,
            });
        }
        Ok(Queue {
            name: q.name.clone(),
            strategy: q.strategy,
            skills,
            max_len: q.max_len,
            join_empty: q.join_when_empty,
            leave_empty: q.leave_when_empty,
            ring_ms: u64::from(q.ring_timeout_secs) * 1000,
            ring_cap: match q.ring_all_limit {
                0 => usize::MAX,
                n => n as usize,
            },
            nr_on_no_answer: q.not_ready_on_no_answer,
            wrap_ms: u64::from(q.wrapup_secs) * 1000,
            sl_ms: u64::from(q.sl_secs) * 1000,
            announce_ms: u64::from(q.announce_secs) * 1000,
            max_wait_ms: q.max_wait_secs.map(|s| u64::from(s) * 1000),
            fallback: q.fallback.clone(),
            weight: i64::from(q.weight),
            sites: own_sites,
            steps,
            pref_ms: u64::from(q.preferred_agent_secs) * 1000,
            cb_retry_ms: u64::from(q.callback_retry_secs) * 1000,
            cb_attempts: q.callback_attempts,
            loosest,
            ever_sites,
            classes: Vec::new(),
            available: BTreeSet::new(),
            waiting: BTreeMap::new(),
            ringing: BTreeMap::new(),
            buckets: Vec::new(),
            own_waiting: 0,
            capable: 0,
            working: 0,
            reach,
            rev_reach: Vec::new(),
            rr_last: u32::MAX,
            aht_ms: f64::from(q.expected_aht_secs) * 1000.0,
            busy_ms: 0,
            busy_mark: Millis(0),
            gap_ms: 0.0,
            gap_n: 0,
            members: Vec::new(),
            st: QStats::default(),
        })
    }

    /// Adds an agent (logged out). Errors on a duplicate id or an unknown queue.
    pub fn add_agent(&mut self, cfg: &AgentConfig, now: Millis) -> Result<AgentId> {
        if self.agent_ids.contains_key(&cfg.id) {
            return Err(invalid(
                &format!("agent {:?}", cfg.id),
                "duplicate agent id",
            ));
        }
        let names: BTreeMap<&str, usize> = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.name.as_str(), i))
            .collect();
        cfg.validate(&names)?;
        let idx =
            u32::try_from(self.agents.len()).map_err(|_| invalid("agents", "too many agents"))?;
        let site = self.site(&cfg.site).map_err(|e| e.under(&["site"]))?;
        let mut skills = Vec::new();
        for (s, p) in &cfg.skills {
            let id = self.skill(s).map_err(|e| e.under(&["skills", s]))?;
            skills.push((id, *p));
        }
        skills.sort_unstable();
        let mut a = Agent {
            name: cfg.id.clone(),
            site,
            skills,
            members: Vec::new(),
            state: AgentState::LoggedOut,
            state_since: now,
            acc_since: now,
            time_in: [0; 6],
            idle_since: now,
            handled: 0,
            talk_ms: 0,
            wrap_ms: 0,
            missed: 0,
            preferred: Vec::new(),
            pending_nr: None,
            pending_logout: false,
            wrap_start: now,
            wrap_until: None,
            last_talk_ms: 0,
            last_queue: 0,
            dirty: false,
        };
        a.members = self.members_for(&a.skills, cfg, idx);
        self.agent_ids.insert(cfg.id.clone(), idx);
        self.agents.push(a);
        // A new agent is news to the owner even in its first state (logged out).
        self.mark_changed(idx);
        Ok(AgentId(idx))
    }

    /// Builds an agent's memberships and registers it in each queue's member list.
    fn members_for(&mut self, skills: &[(u16, u8)], cfg: &AgentConfig, idx: u32) -> Vec<Member> {
        let mut members = Vec::new();
        for (qn, pen) in &cfg.queues {
            let Some(&qi) = self.queue_ids.get(qn.as_str()) else {
                continue; // validated by the caller
            };
            let q = &mut self.queues[qi as usize];
            let capable = q
                .skills
                .iter()
                .all(|&(s, m)| prof(skills, s) >= q.loosest.map_or(m, |l| m.min(l)));
            let score = q
                .skills
                .iter()
                .map(|&(s, _)| i64::from(prof(skills, s)))
                .sum();
            q.members.push(idx);
            members.push(Member {
                queue: qi,
                penalty: *pen,
                score,
                capable,
                key: None,
            });
        }
        members
    }

    /// Changes an agent's site, skills and queue memberships while the center runs
    /// (supervisor re-skilling). Routing uses the new profile at once; a call in progress
    /// is not disturbed. Waiting calls nobody logged in can serve any more apply
    /// leave-when-empty.
    pub fn update_agent(&mut self, now: Millis, cfg: &AgentConfig) -> Result<AgentId> {
        let a = *self
            .agent_ids
            .get(&cfg.id)
            .ok_or_else(|| AcdError::UnknownAgent(cfg.id.clone()))?;
        let names: BTreeMap<&str, usize> = self
            .queues
            .iter()
            .enumerate()
            .map(|(i, q)| (q.name.as_str(), i))
            .collect();
        cfg.validate(&names)?;
        // Intern everything first so that an error leaves the agent untouched.
        let site = self.site(&cfg.site)?;
        let mut skills = Vec::new();
        for (s, p) in &cfg.skills {
            skills.push((self.skill(s)?, *p));
        }
        skills.sort_unstable();
        let state = self.agents[a as usize].state;
        let (li, w) = (i32::from(state.logged_in()), i32::from(state.working()));
        if state == AgentState::Available {
            self.remove_available(a);
        }
        self.count(a, -li, -w);
        let old: Vec<u32> = self.agents[a as usize]
            .members
            .iter()
            .map(|m| m.queue)
            .collect();
        for &q in &old {
            self.queues[q as usize].members.retain(|&x| x != a);
        }
        let ag = &mut self.agents[a as usize];
        ag.site = site;
        ag.members.clear();
        let members = self.members_for(&skills, cfg, a);
        let ag = &mut self.agents[a as usize];
        ag.skills = skills;
        ag.members = members;
        self.count(a, li, w);
        if state == AgentState::Available {
            self.make_available(now, a);
        }
        self.flush_strands(now);
        Ok(AgentId(a))
    }

    // ---- lookups ------------------------------------------------------------------------

    /// The id of a queue by name.
    pub fn queue_id(&self, name: &str) -> Option<QueueId> {
        self.queue_ids.get(name).map(|&i| QueueId(i))
    }
    /// The id of an agent by login name.
    pub fn agent_id(&self, name: &str) -> Option<AgentId> {
        self.agent_ids.get(name).map(|&i| AgentId(i))
    }
    /// Number of queues.
    pub fn queue_count(&self) -> usize {
        self.queues.len()
    }
    /// Number of agents (all states).
    pub fn agent_count(&self) -> usize {
        self.agents.len()
    }
    /// Calls the engine tracks (waiting, ringing, connected, callback requests).
    pub fn call_count(&self) -> usize {
        self.calls.len()
    }
    /// Calls waiting in a queue (its own calls, not overflowed-in ones).
    pub fn waiting_in(&self, q: QueueId) -> usize {
        self.queues
            .get(q.0 as usize)
            .map_or(0, |q| q.own_waiting as usize)
    }
    /// An agent's current state.
    pub fn agent_state(&self, a: AgentId) -> Result<AgentState> {
        Ok(self.agent(a)?.state)
    }

    /// Moves the agents whose state changed since the last call (and agents added since)
    /// to `out`, each once, in the order of their first change. Every state change goes
    /// through one place, so an owner that publishes agent states needs to look at these
    /// only. The list is bounded by the agent count, also when nobody takes it.
    pub fn take_changed(&mut self, out: &mut Vec<AgentId>) {
        for a in self.changed.drain(..) {
            if let Some(ag) = self.agents.get_mut(a as usize) {
                ag.dirty = false;
            }
            out.push(AgentId(a));
        }
    }

    /// The next decision to carry out, if any.
    pub fn poll_decision(&mut self) -> Option<Decision> {
        self.decisions.pop_front()
    }

    /// When the engine must next be called with [`Engine::handle_timeout`].
    pub fn poll_timeout(&self) -> Option<Millis> {
        self.timers.first().map(|t| t.0)
    }

    fn agent(&self, a: AgentId) -> Result<&Agent> {
        self.agents
            .get(a.0 as usize)
            .ok_or(AcdError::NoSuchAgent(a))
    }

    fn next_rand(&mut self) -> u64 {
        // splitmix64: tiny, seeded, good enough to shuffle agents.
        self.rng = self.rng.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.rng;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    // ---- agent bookkeeping ----------------------------------------------------------------

    fn mark_changed(&mut self, a: u32) {
        if let Some(ag) = self.agents.get_mut(a as usize)
            && !ag.dirty
        {
            ag.dirty = true;
            self.changed.push(a);
        }
    }

    /// The only place an agent's state changes (see [`Engine::take_changed`]).
    fn set_state(&mut self, now: Millis, a: u32, new: AgentState) {
        let old = self.agents[a as usize].state;
        if old != new {
            self.mark_changed(a);
        }
        let ag = &mut self.agents[a as usize];
        ag.time_in[old.slot()] += now.since(ag.acc_since);
        ag.acc_since = now;
        ag.state_since = now;
        ag.state = new;
        let (li_d, w_d) = (
            i32::from(new.logged_in()) - i32::from(old.logged_in()),
            i32::from(new.working()) - i32::from(old.working()),
        );
        self.count(a, li_d, w_d);
    }

    /// Adds `li_d` / `w_d` to the logged-in-capable / working counts of `a`'s queues.
    fn count(&mut self, a: u32, li_d: i32, w_d: i32) {
        if li_d == 0 && w_d == 0 {
            return;
        }
        for m in &self.agents[a as usize].members {
            let q = &mut self.queues[m.queue as usize];
            if m.capable {
                q.capable = q.capable.saturating_add_signed(li_d);
            }
            q.working = q.working.saturating_add_signed(w_d);
        }
        if li_d == 0 {
            return;
        }
        let ag = &self.agents[a as usize];
        for m in ag.members.iter().filter(|m| m.capable) {
            for &ci in &self.queues[m.queue as usize].classes {
                if can_ever_serve(&self.queues, ag, m.queue, &self.classes[ci as usize]) {
                    let cl = &mut self.classes[ci as usize];
                    cl.able = cl.able.saturating_add_signed(li_d);
                    if cl.able == 0 {
                        self.strand_pending.push(ci);
                    }
                }
            }
        }
    }

    /// Logged-in memberships that could serve a call of class `cl` (a scan: used when a
    /// class is created and after a queue edit, never per routing event).
    fn count_able(&self, cl: &Class) -> u32 {
        let mut n = 0u32;
        for &t in &self.queues[cl.home as usize].reach {
            for &a in &self.queues[t as usize].members {
                let ag = &self.agents[a as usize];
                let capable = ag.members.iter().any(|m| m.queue == t && m.capable);
                if capable && ag.state.logged_in() && can_ever_serve(&self.queues, ag, t, cl) {
                    n = n.saturating_add(1);
                }
            }
        }
        n
    }

    /// The class of a call of queue `home` needing `extra`; created (one scan of the agents
    /// its queue can reach) the first time such a call arrives, then kept.
    fn class_for(&mut self, home: u32, extra: &[(u16, u8)]) -> u32 {
        let mut key = extra.to_vec();
        key.sort_unstable();
        key.dedup();
        let key = (home, key);
        if let Some(&id) = self.class_ids.get(&key) {
            return id;
        }
        if self.classes.len() >= MAX_CLASSES {
            return NO_CLASS;
        }
        let id = self.classes.len() as u32;
        let mut cl = Class {
            home,
            extra: key.1.clone(),
            able: 0,
            calls: BTreeSet::new(),
        };
        cl.able = self.count_able(&cl);
        for t in self.queues[home as usize].reach.clone() {
            self.queues[t as usize].classes.push(id);
        }
        self.classes.push(cl);
        self.class_ids.insert(key, id);
        id
    }

    /// Recomputes every class's index and count after a queue edit; classes left with
    /// nobody are checked for stranded calls.
    fn rebuild_classes(&mut self) {
        for q in &mut self.queues {
            q.classes.clear();
        }
        for ci in 0..self.classes.len() {
            let able = self.count_able(&self.classes[ci]);
            let home = self.classes[ci].home;
            self.classes[ci].able = able;
            for t in self.queues[home as usize].reach.clone() {
                self.queues[t as usize].classes.push(ci as u32);
            }
            if able == 0 {
                self.strand_pending.push(ci as u32);
            }
        }
    }

    /// Whether anyone logged in could ever serve a call of `class` in queue `home`.
    fn class_servable(&self, class: u32, home: u32) -> bool {
        match self.classes.get(class as usize) {
            Some(cl) => cl.able > 0,
            None => self.servable(home),
        }
    }

    fn remove_available(&mut self, a: u32) {
        let ag = &mut self.agents[a as usize];
        for m in &mut ag.members {
            if let Some(k) = m.key.take() {
                self.queues[m.queue as usize].available.remove(&k);
            }
        }
    }

    fn insert_available(&mut self, a: u32) {
        let n = self.agents[a as usize].members.len();
        for i in 0..n {
            let (qi, capable) = {
                let m = &self.agents[a as usize].members[i];
                (m.queue as usize, m.capable)
            };
            if !capable {
                continue;
            }
            let r = if self.queues[qi].strategy == Strategy::Random {
                self.next_rand() as i64
            } else {
                0
            };
            let ag = &self.agents[a as usize];
            let m = &ag.members[i];
            let idle = ag.idle_since.0 as i64;
            let (k1, k2) = match self.queues[qi].strategy {
                Strategy::LongestIdle => (idle, 0),
                Strategy::MostSkilled => (-m.score, idle as u64),
                Strategy::RoundRobin | Strategy::Linear | Strategy::RingAll => (0, 0),
                Strategy::FewestCalls => (ag.handled as i64, idle as u64),
                Strategy::LeastTalkTime => (ag.talk_ms as i64, idle as u64),
                Strategy::Random => (r, 0),
            };
            let key = AKey {
                penalty: m.penalty,
                k1,
                k2,
                agent: a,
            };
            self.queues[qi].available.insert(key);
            self.agents[a as usize].members[i].key = Some(key);
        }
    }

    /// The agent is free: give them the best call they can take, or index them as available.
    fn make_available(&mut self, now: Millis, a: u32) {
        self.set_state(now, a, AgentState::Available);
        if let Some((cid, via)) = self.find_call_for(a) {
            self.offer(now, cid, &[(a, via)]);
        } else if let Some((cid, via)) = self.find_ring_for(a) {
            self.join_ring(now, cid, a, via);
        } else {
            self.insert_available(a);
        }
    }

    /// The best ring-all call, ringing below its cap, that agent `a` could join. Waiting
    /// calls come first (see `make_available`): they have nobody, a ringing call has someone.
    fn find_ring_for(&self, a: u32) -> Option<(CallId, u32)> {
        let ag = &self.agents[a as usize];
        let mut best: Option<(CKey, CallId, u32)> = None;
        for m in ag.members.iter().filter(|m| m.capable) {
            let q = &self.queues[m.queue as usize];
            for (&k, &cid) in &q.ringing {
                if best.is_some_and(|b| k >= b.0) {
                    break;
                }
                if let Some(c) = self.calls.get(&cid)
                    && let CState::Offered(list) = &c.state
                    && list.len() < self.queues[c.home as usize].ring_cap
                    && eligible(ag, a, c, q)
                {
                    best = Some((k, cid, m.queue));
                    break;
                }
            }
        }
        best.map(|b| (b.1, b.2))
    }

    /// A ringing ring-all call was widened by a bullseye step, or dropped below its cap (an
    /// agent declined or left): free agents it now reaches join the ring, up to its cap.
    fn widen_ring(&mut self, now: Millis, cid: CallId) {
        let Some(c) = self.calls.get(&cid) else {
            return;
        };
        let home = &self.queues[c.home as usize];
        let CState::Offered(list) = &c.state else {
            return;
        };
        if !c.ring_all {
            return;
        }
        let room = home.ring_cap.saturating_sub(list.len());
        let mut picks: Vec<(u32, u32)> = Vec::new();
        'targets: for &t in &c.targets {
            let q = &self.queues[t as usize];
            for k in &q.available {
                if picks.len() >= room {
                    break 'targets;
                }
                if eligible(&self.agents[k.agent as usize], k.agent, c, q)
                    && !picks.iter().any(|x| x.0 == k.agent)
                {
                    picks.push((k.agent, t));
                }
            }
        }
        for (a, via) in picks {
            self.join_ring(now, cid, a, via);
        }
    }

    /// Agent `a` starts ringing with ring-all call `cid` that already rings others.
    fn join_ring(&mut self, now: Millis, cid: CallId, a: u32, via: u32) {
        let Some(c) = self.calls.get_mut(&cid) else {
            return;
        };
        let CState::Offered(list) = &mut c.state else {
            return;
        };
        list.push(a);
        if now > c.ring_start {
            c.late.push(a);
        }
        self.decisions.push_back(Decision::Offer {
            call: cid,
            agent: AgentId(a),
            via: QueueId(via),
        });
        self.remove_available(a);
        self.set_state(now, a, AgentState::Reserved(cid));
        self.reindex_ring(cid);
    }

    /// Puts a ring-all call in its target queues' `ringing` index while it rings, and takes
    /// it out otherwise.
    fn reindex_ring(&mut self, cid: CallId) {
        let Some(c) = self.calls.get(&cid) else {
            return;
        };
        Self::unring(&mut self.queues, cid, c);
        if c.ring_all && matches!(c.state, CState::Offered(_)) {
            for &t in &c.targets {
                self.queues[t as usize].ringing.insert(c.key, cid);
            }
        }
    }

    fn unring(queues: &mut [Queue], cid: CallId, c: &Call) {
        for &t in &c.targets {
            let q = &mut queues[t as usize];
            if q.ringing.get(&c.key) == Some(&cid) {
                q.ringing.remove(&c.key);
            }
        }
    }

    /// Agent-driven choice: the best (lowest key) call among the heads of the agent's queues,
    /// after any call held for this agent as its preferred agent.
    fn find_call_for(&self, a: u32) -> Option<(CallId, u32)> {
        let ag = &self.agents[a as usize];
        let mut best: Option<(CKey, CallId, u32)> = None;
        for &cid in &ag.preferred {
            if let Some(c) = self.calls.get(&cid)
                && c.state == CState::Held
                && eligible(ag, a, c, &self.queues[c.home as usize])
                && best.is_none_or(|b| c.key < b.0)
            {
                best = Some((c.key, cid, c.home));
            }
        }
        if best.is_some() {
            return best.map(|b| (b.1, b.2));
        }
        for m in &ag.members {
            if !m.capable {
                continue;
            }
            let q = &self.queues[m.queue as usize];
            for (sig, calls) in &q.buckets {
                let hopeless = self
                    .sig_skills
                    .get(*sig as usize)
                    .is_some_and(|sk| sk.iter().any(|&s| ag.prof(s) == 0));
                if hopeless {
                    continue;
                }
                for (&k, &cid) in calls {
                    if best.is_some_and(|b| k >= b.0) {
                        break;
                    }
                    if let Some(c) = self.calls.get(&cid)
                        && eligible(ag, a, c, q)
                    {
                        best = Some((k, cid, m.queue));
                        break;
                    }
                }
            }
        }
        best.map(|b| (b.1, b.2))
    }

    /// Call-driven choice: the first eligible agent of the call's target queues in order
    /// (own queue first), by each queue's strategy; for ring-all, every eligible agent.
    fn find_agents_for(&self, cid: CallId, r: i64, out: &mut Vec<(u32, u32)>) {
        out.clear();
        let Some(c) = self.calls.get(&cid) else {
            return;
        };
        let home = &self.queues[c.home as usize];
        let ring_all = home.strategy == Strategy::RingAll && c.callback.is_none();
        let cap = home.ring_cap;
        for &t in &c.targets {
            let q = &self.queues[t as usize];
            if ring_all {
                for k in &q.available {
                    if out.len() >= cap {
                        return;
                    }
                    if eligible(&self.agents[k.agent as usize], k.agent, c, q)
                        && !out.iter().any(|x| x.0 == k.agent)
                    {
                        out.push((k.agent, t));
                    }
                }
            } else if let Some(a) = self.pick_in_queue(q, c, r) {
                out.push((a, t));
                return;
            }
        }
    }

    fn pick_in_queue(&self, q: &Queue, c: &Call, r: i64) -> Option<u32> {
        let ok = |k: &&AKey| eligible(&self.agents[k.agent as usize], k.agent, c, q);
        // Round robin starts after the last agent served; random starts at a random point
        // of the (randomly keyed) agents. Both wrap around within the best penalty tier
        // that has an eligible agent.
        let start = match q.strategy {
            Strategy::RoundRobin => (0, q.rr_last.saturating_add(1)),
            Strategy::Random => (r, 0),
            _ => return q.available.iter().find(ok).map(|k| k.agent),
        };
        let mut tier = q.available.first()?.penalty;
        loop {
            let k = |k1, agent| AKey {
                penalty: tier,
                k1,
                k2: 0,
                agent,
            };
            let from = k(start.0, start.1);
            let found = q
                .available
                .range(from..=k(i64::MAX, u32::MAX))
                .find(ok)
                .or_else(|| q.available.range(k(i64::MIN, 0)..from).find(ok));
            if let Some(f) = found {
                return Some(f.agent);
            }
            let next = AKey {
                penalty: tier.checked_add(1)?,
                k1: i64::MIN,
                k2: 0,
                agent: 0,
            };
            tier = q.available.range(next..).next()?.penalty;
        }
    }

    // ---- call bookkeeping -----------------------------------------------------------------

    fn insert_waiting(&mut self, now: Millis, cid: CallId) {
        if let Some(c) = self.calls.get_mut(&cid) {
            c.state = CState::Waiting;
            for &t in &c.targets {
                self.queues[t as usize].wait_insert(c.key, cid, c.sig);
            }
            let h = &mut self.queues[c.home as usize];
            h.tick_busy(now);
            h.own_waiting += 1;
        }
    }

    fn remove_waiting(queues: &mut [Queue], c: &Call, now: Millis) {
        if c.state == CState::Waiting {
            for &t in &c.targets {
                queues[t as usize].wait_remove(&c.key, c.sig);
            }
            let h = &mut queues[c.home as usize];
            h.tick_busy(now);
            h.own_waiting = h.own_waiting.saturating_sub(1);
        }
    }

    /// Tries to connect a waiting call to agents right now.
    fn dispatch_call(&mut self, now: Millis, cid: CallId) {
        let mut picks = std::mem::take(&mut self.scratch);
        let r = self.next_rand() as i64;
        self.find_agents_for(cid, r, &mut picks);
        if !picks.is_empty() {
            self.offer(now, cid, &picks);
        }
        self.scratch = picks;
    }

    fn offer(&mut self, now: Millis, cid: CallId, picks: &[(u32, u32)]) {
        let Some(c) = self.calls.get_mut(&cid) else {
            return;
        };
        if c.state == CState::Waiting {
            Self::remove_waiting(&mut self.queues, c, now);
            self.queues[c.home as usize].served();
        }
        // An offer to the preferred agent is theirs alone, even in a ring-all queue.
        let exclusive = c.state == CState::Held;
        if exclusive {
            disarm(&mut self.timers, &mut c.t_hold, Timer::Hold(cid.0));
            if let Some(p) = c.preferred {
                self.agents[p as usize].preferred.retain(|&x| x != cid);
            }
        }
        let home = c.home as usize;
        if let Some((number, _)) = &c.callback {
            let (a, _) = picks[0];
            c.state = CState::Dialing(a);
            self.decisions.push_back(Decision::PlaceCallback {
                call: cid,
                agent: AgentId(a),
                number: number.clone(),
            });
        } else {
            c.state = CState::Offered(picks.iter().map(|p| p.0).collect());
            c.ring_start = now;
            c.ring_all = !exclusive && self.queues[home].strategy == Strategy::RingAll;
            c.late.clear();
            let ring = self.queues[home].ring_ms;
            if ring > 0 {
                arm(
                    &mut self.timers,
                    &mut c.t_ring,
                    now.plus(ring),
                    Timer::Ring(cid.0),
                );
            }
            for &(a, via) in picks {
                self.decisions.push_back(Decision::Offer {
                    call: cid,
                    agent: AgentId(a),
                    via: QueueId(via),
                });
            }
        }
        for &(a, via) in picks {
            self.remove_available(a);
            self.set_state(now, a, AgentState::Reserved(cid));
            let q = &mut self.queues[via as usize];
            if q.strategy == Strategy::RoundRobin {
                q.rr_last = a;
            }
        }
        self.reindex_ring(cid);
    }

    /// A call whose offer failed goes back to its original place (its key is unchanged).
    fn requeue(&mut self, now: Millis, cid: CallId) {
        let Some(c) = self.calls.get_mut(&cid) else {
            return;
        };
        disarm(&mut self.timers, &mut c.t_ring, Timer::Ring(cid.0));
        let max = self.queues[c.home as usize].max_wait_ms;
        if max.is_some_and(|m| now.since(c.arrived) >= m) {
            c.state = CState::Delayed;
            self.fallback(now, cid, FallbackReason::MaxWait);
            return;
        }
        c.state = CState::Delayed;
        if self.strand_if_unservable(now, cid) {
            return;
        }
        self.insert_waiting(now, cid);
        self.reindex_ring(cid);
        self.dispatch_call(now, cid);
    }

    /// leave-when-empty for one call coming back from an offer or callback attempt: its
    /// class may have lost its last agent while it rang (nothing was stranded then).
    fn strand_if_unservable(&mut self, now: Millis, cid: CallId) -> bool {
        let Some(c) = self.calls.get(&cid) else {
            return false;
        };
        if self.queues[c.home as usize].leave_empty
            && self
                .classes
                .get(c.class as usize)
                .is_some_and(|cl| cl.able == 0)
        {
            self.fallback(now, cid, FallbackReason::Empty);
            return true;
        }
        false
    }

    /// Removes a call from every index and timer; agents it held are released afterwards.
    fn detach(&mut self, now: Millis, cid: CallId) -> Option<Call> {
        let mut c = self.calls.remove(&cid)?;
        Self::remove_waiting(&mut self.queues, &c, now);
        Self::unring(&mut self.queues, cid, &c);
        Self::declass(&mut self.classes, cid, &c);
        for (slot, t) in [
            (&mut c.t_step, Timer::Step(cid.0)),
            (&mut c.t_max, Timer::MaxWait(cid.0)),
            (&mut c.t_ann, Timer::Announce(cid.0)),
            (&mut c.t_ring, Timer::Ring(cid.0)),
            (&mut c.t_hold, Timer::Hold(cid.0)),
            (&mut c.t_retry, Timer::Retry(cid.0)),
        ] {
            disarm(&mut self.timers, slot, t);
        }
        if let Some(p) = c.preferred {
            self.agents[p as usize].preferred.retain(|&x| x != cid);
        }
        match &c.state {
            CState::Offered(list) => {
                for &a in list {
                    self.decisions.push_back(Decision::CancelOffer {
                        call: cid,
                        agent: AgentId(a),
                    });
                    self.make_available(now, a);
                }
            }
            CState::Dialing(a) => {
                self.decisions.push_back(Decision::CancelOffer {
                    call: cid,
                    agent: AgentId(*a),
                });
                self.make_available(now, *a);
            }
            _ => {}
        }
        Some(c)
    }

    fn fallback(&mut self, now: Millis, cid: CallId, reason: FallbackReason) {
        if let Some(c) = self.detach(now, cid) {
            let q = &mut self.queues[c.home as usize];
            match reason {
                FallbackReason::MaxWait => q.st.timed_out += 1,
                FallbackReason::CallbackFailed => q.st.callback_failed += 1,
                FallbackReason::QueueFull | FallbackReason::Empty | FallbackReason::Removed => {
                    q.st.refused += 1
                }
            }
            self.decisions.push_back(Decision::Fallback {
                call: cid,
                queue: QueueId(c.home),
                target: q.fallback.clone(),
                reason,
            });
        }
    }

    fn servable(&self, q: u32) -> bool {
        self.queues[q as usize]
            .reach
            .iter()
            .any(|&r| self.queues[r as usize].capable > 0)
    }

    // ---- events: calls --------------------------------------------------------------------

    /// A call enters a queue. It is offered at once if an agent can take it; otherwise it
    /// waits (and gets a first announcement), or goes to the fallback if refused.
    pub fn call_arrived(&mut self, now: Millis, call: NewCall) -> Result<()> {
        self.expire_resume(now);
        let cid = call.id;
        if self.calls.contains_key(&cid) {
            return Err(AcdError::DuplicateCall(cid));
        }
        let home = call.queue.0;
        if home as usize >= self.queues.len() {
            return Err(AcdError::UnknownQueue(format!("#{home}")));
        }
        if let Some(p) = call.preferred_agent {
            self.agent(p)?;
        }
        let mut extra = Vec::with_capacity(call.skills.len());
        for (s, m) in &call.skills {
            if !(1..=10).contains(m) {
                return Err(invalid("call skill", "proficiency outside 1..=10"));
            }
            extra.push((self.skill_ids.get(s).copied().unwrap_or(NO_SKILL), *m));
        }
        let sig = self.intern_sig(&extra);
        self.seq += 1;
        let q = &self.queues[home as usize];
        let tier = call
            .tier
            .as_ref()
            .and_then(|t| self.tiers.get(t))
            .copied()
            .unwrap_or(0);
        let prio = i64::from(call.priority.clamp(-MAX_PRIORITY, MAX_PRIORITY)) + tier + q.weight;
        let mut key = ((now.0 as i64).saturating_sub(prio * self.step_ms), self.seq);
        // A saved place is used up only once the call is accepted: a caller refused now
        // (queue full or empty) keeps it for the next try within the window.
        let resumed = call.caller.as_ref().filter(|caller| {
            self.resume
                .get(*caller)
                .is_some_and(|r| r.queue == home && r.until > now)
        });
        if let Some(r) = resumed.and_then(|caller| self.resume.get(caller)) {
            key = r.key;
        }
        let resumed = resumed.cloned();
        self.queues[home as usize].st.offered += 1;
        // Refused when nobody logged in could ever serve this call: its queue's skills and
        // its own (a language), counting every agent its bullseye steps could still add.
        // A skill no queue or agent mentions (an unknown language) cannot be served either.
        let hopeless = extra.iter().any(|e| e.0 == NO_SKILL);
        let class = self.class_for(home, &extra);
        let q = &self.queues[home as usize];
        if (!q.join_empty || q.leave_empty) && (hopeless || !self.class_servable(class, home)) {
            self.refuse(cid, home, FallbackReason::Empty);
            return Ok(());
        }
        if q.max_len.is_some_and(|m| q.own_waiting >= m) {
            self.refuse(cid, home, FallbackReason::QueueFull);
            return Ok(());
        }
        if let Some(caller) = &resumed {
            self.resume.remove(caller);
        }
        let mut c = Call {
            home,
            key,
            arrived: now,
            extra,
            sig,
            class,
            relax: None,
            targets: vec![home],
            sites: q.sites,
            step: 0,
            state: CState::Delayed,
            declined: Vec::new(),
            preferred: None,
            caller: call.caller,
            callback: None,
            t_step: None,
            t_max: None,
            t_ann: None,
            t_ring: None,
            t_hold: None,
            t_retry: None,
            answered_at: now,
            ring_start: now,
            ring_all: false,
            late: Vec::new(),
        };
        if let Some(st) = q.steps.first() {
            arm(
                &mut self.timers,
                &mut c.t_step,
                now.plus(st.after_ms),
                Timer::Step(cid.0),
            );
        }
        if let Some(m) = q.max_wait_ms {
            arm(
                &mut self.timers,
                &mut c.t_max,
                now.plus(m),
                Timer::MaxWait(cid.0),
            );
        }
        if q.announce_ms > 0 {
            arm(
                &mut self.timers,
                &mut c.t_ann,
                now.plus(q.announce_ms),
                Timer::Announce(cid.0),
            );
        }
        let pref_ms = q.pref_ms;
        let announce = q.announce_ms > 0;
        // Preferred agent: held for that agent alone while they are logged in and able.
        if let Some(p) = call.preferred_agent
            && pref_ms > 0
        {
            let ag = &self.agents[p.0 as usize];
            if ag.state.logged_in() && eligible(ag, p.0, &c, &self.queues[home as usize]) {
                c.preferred = Some(p.0);
                c.state = CState::Held;
                arm(
                    &mut self.timers,
                    &mut c.t_hold,
                    now.plus(pref_ms),
                    Timer::Hold(cid.0),
                );
                let avail = ag.state == AgentState::Available;
                self.enclass(cid, &c);
                self.calls.insert(cid, c);
                self.agents[p.0 as usize].preferred.push(cid);
                if avail {
                    self.offer(now, cid, &[(p.0, home)]);
                }
                return Ok(());
            }
        }
        self.enclass(cid, &c);
        self.calls.insert(cid, c);
        self.insert_waiting(now, cid);
        self.dispatch_call(now, cid);
        if announce
            && self
                .calls
                .get(&cid)
                .is_some_and(|c| c.state == CState::Waiting)
        {
            self.announce(cid);
        }
        Ok(())
    }

    fn enclass(&mut self, cid: CallId, c: &Call) {
        if let Some(cl) = self.classes.get_mut(c.class as usize) {
            cl.calls.insert((c.key, cid));
        }
    }

    fn declass(classes: &mut [Class], cid: CallId, c: &Call) {
        if let Some(cl) = classes.get_mut(c.class as usize) {
            cl.calls.remove(&(c.key, cid));
        }
    }

    fn refuse(&mut self, cid: CallId, home: u32, reason: FallbackReason) {
        let q = &mut self.queues[home as usize];
        q.st.refused += 1;
        self.decisions.push_back(Decision::Fallback {
            call: cid,
            queue: QueueId(home),
            target: q.fallback.clone(),
            reason,
        });
    }

    fn announce(&mut self, cid: CallId) {
        if let Some(c) = self.calls.get(&cid) {
            let q = &self.queues[c.home as usize];
            let position = q.waiting.range(..c.key).count() as u32 + 1;
            let ewt_secs = self.ewt_ms(c.home, position) / 1000;
            self.decisions.push_back(Decision::Announce {
                call: cid,
                position,
                ewt_secs,
            });
        }
    }

    fn ewt_ms(&self, q: u32, position: u32) -> u64 {
        self.queues[q as usize].ewt_ms(position)
    }

    /// Position and expected wait a new call of `priority` would get in `queue` now: the
    /// basis for "EWT > 5 min → offer a callback" before the call is queued.
    pub fn estimate_wait(
        &self,
        now: Millis,
        queue: QueueId,
        priority: i32,
    ) -> Result<WaitEstimate> {
        let q = self
            .queues
            .get(queue.0 as usize)
            .ok_or_else(|| AcdError::UnknownQueue(format!("#{}", queue.0)))?;
        let prio = i64::from(priority.clamp(-MAX_PRIORITY, MAX_PRIORITY)) + q.weight;
        let key = ((now.0 as i64).saturating_sub(prio * self.step_ms), u64::MAX);
        let ahead = q.waiting.range(..key).count() as u32;
        if ahead == 0 && !q.available.is_empty() {
            return Ok(WaitEstimate {
                position: 1,
                ewt_secs: 0,
            });
        }
        Ok(WaitEstimate {
            position: ahead + 1,
            ewt_secs: self.ewt_ms(queue.0, ahead + 1) / 1000,
        })
    }

    /// The caller hung up before being connected (while waiting, held or ringing).
    pub fn call_abandoned(&mut self, now: Millis, cid: CallId) -> Result<()> {
        let c = self.calls.get(&cid).ok_or(AcdError::NoSuchCall(cid))?;
        if matches!(c.state, CState::Connected(_) | CState::Dialing(_)) {
            return Err(AcdError::InvalidState {
                what: "call_abandoned",
                why: "the call is connected or its callback is being placed".into(),
            });
        }
        let Some(c) = self.detach(now, cid) else {
            return Ok(());
        };
        let waited = now.since(c.arrived);
        let q = &mut self.queues[c.home as usize];
        q.st.abandoned += 1;
        q.st.wait_abandoned_ms += waited;
        if waited < self.short_ms {
            q.st.short_abandoned += 1;
        }
        if self.resume_ms > 0
            && c.callback.is_none()
            && let Some(caller) = c.caller
        {
            let until = now.plus(self.resume_ms);
            self.resume_order.push_back((until, caller.clone()));
            self.resume.insert(
                caller,
                Resume {
                    queue: c.home,
                    key: c.key,
                    until,
                },
            );
        }
        Ok(())
    }

    fn expire_resume(&mut self, now: Millis) {
        while let Some((until, _)) = self.resume_order.front() {
            if *until > now {
                break;
            }
            if let Some((until, caller)) = self.resume_order.pop_front()
                && self.resume.get(&caller).is_some_and(|r| r.until == until)
            {
                self.resume.remove(&caller);
            }
        }
    }

    /// The caller leaves a callback request instead of waiting: the request keeps the call's
    /// place and priority; when it reaches an agent the engine emits `PlaceCallback`.
    pub fn request_callback(&mut self, _now: Millis, cid: CallId, number: String) -> Result<()> {
        let c = self.calls.get_mut(&cid).ok_or(AcdError::NoSuchCall(cid))?;
        if !matches!(c.state, CState::Waiting | CState::Held | CState::Delayed)
            || c.callback.is_some()
        {
            return Err(AcdError::InvalidState {
                what: "request_callback",
                why: "the call is not waiting".into(),
            });
        }
        // The request keeps the call's max wait: one that no agent takes in time must
        // still end at the fallback rather than wait forever.
        c.callback = Some((number, 0));
        disarm(&mut self.timers, &mut c.t_ann, Timer::Announce(cid.0));
        Ok(())
    }

    /// Outcome of a `PlaceCallback`: the customer answered (the agent is now on the call), or
    /// not (retried after the queue's delay, up to its attempts, then the fallback).
    pub fn callback_result(&mut self, now: Millis, cid: CallId, connected: bool) -> Result<()> {
        let c = self.calls.get_mut(&cid).ok_or(AcdError::NoSuchCall(cid))?;
        let CState::Dialing(a) = c.state else {
            return Err(AcdError::InvalidState {
                what: "callback_result",
                why: "no callback is being placed".into(),
            });
        };
        if connected {
            return self.connect(now, cid, a);
        }
        let q = &self.queues[c.home as usize];
        let (retry, max) = (q.cb_retry_ms, q.cb_attempts);
        let attempts = c.callback.as_ref().map_or(0, |cb| cb.1) + 1;
        if let Some(cb) = &mut c.callback {
            cb.1 = attempts;
        }
        c.state = CState::Delayed;
        if attempts >= max {
            self.fallback(now, cid, FallbackReason::CallbackFailed);
        } else if !self.strand_if_unservable(now, cid)
            && let Some(c) = self.calls.get_mut(&cid)
        {
            arm(
                &mut self.timers,
                &mut c.t_retry,
                now.plus(retry),
                Timer::Retry(cid.0),
            );
        }
        self.make_available(now, a);
        Ok(())
    }

    /// The agent answered the offer: the call is connected, other ring-all offers cancelled.
    /// Answers race with ring timeouts and hang-ups: if the offer was withdrawn meanwhile
    /// this returns `InvalidState` and changes nothing; the owner then drops the agent leg.
    pub fn offer_answered(&mut self, now: Millis, cid: CallId, agent: AgentId) -> Result<()> {
        let c = self.calls.get(&cid).ok_or(AcdError::NoSuchCall(cid))?;
        match &c.state {
            CState::Offered(list) if list.contains(&agent.0) => self.connect(now, cid, agent.0),
            _ => Err(AcdError::InvalidState {
                what: "offer_answered",
                why: format!("call {cid:?} is not offered to {agent:?}"),
            }),
        }
    }

    fn connect(&mut self, now: Millis, cid: CallId, a: u32) -> Result<()> {
        let Some(c) = self.calls.get_mut(&cid) else {
            return Err(AcdError::NoSuchCall(cid));
        };
        let others: Vec<u32> = match &c.state {
            CState::Offered(list) => list.iter().copied().filter(|&x| x != a).collect(),
            _ => Vec::new(),
        };
        for (slot, t) in [
            (&mut c.t_step, Timer::Step(cid.0)),
            (&mut c.t_max, Timer::MaxWait(cid.0)),
            (&mut c.t_ann, Timer::Announce(cid.0)),
            (&mut c.t_ring, Timer::Ring(cid.0)),
            (&mut c.t_hold, Timer::Hold(cid.0)),
            (&mut c.t_retry, Timer::Retry(cid.0)),
        ] {
            disarm(&mut self.timers, slot, t);
        }
        c.state = CState::Connected(a);
        c.answered_at = now;
        Self::declass(&mut self.classes, cid, c);
        Self::unring(&mut self.queues, cid, c);
        let wait = now.since(c.arrived);
        let q = &mut self.queues[c.home as usize];
        q.st.answered += 1;
        q.st.wait_answered_ms += wait;
        if wait <= q.sl_ms {
            q.st.answered_in_sl += 1;
        }
        self.set_state(now, a, AgentState::OnCall(cid));
        for o in others {
            self.decisions.push_back(Decision::CancelOffer {
                call: cid,
                agent: AgentId(o),
            });
            self.make_available(now, o);
        }
        Ok(())
    }

    /// The agent declined the offer (or their device failed): the call returns to its
    /// place, and is not offered to this agent again.
    pub fn offer_rejected(&mut self, now: Millis, cid: CallId, agent: AgentId) -> Result<()> {
        let c = self.calls.get_mut(&cid).ok_or(AcdError::NoSuchCall(cid))?;
        let CState::Offered(list) = &mut c.state else {
            return Err(AcdError::InvalidState {
                what: "offer_rejected",
                why: format!("call {cid:?} is not being offered"),
            });
        };
        let Some(pos) = list.iter().position(|&x| x == agent.0) else {
            return Err(AcdError::InvalidState {
                what: "offer_rejected",
                why: format!("call {cid:?} is not offered to {agent:?}"),
            });
        };
        list.swap_remove(pos);
        let empty = list.is_empty();
        c.declined.push(agent.0);
        if empty {
            self.requeue(now, cid);
        } else {
            self.reindex_ring(cid);
            self.widen_ring(now, cid);
        }
        self.make_available(now, agent.0);
        Ok(())
    }

    /// The connected call ended: the agent goes to wrap-up (or straight to available).
    pub fn call_ended(&mut self, now: Millis, cid: CallId) -> Result<()> {
        let c = self.calls.get(&cid).ok_or(AcdError::NoSuchCall(cid))?;
        let CState::Connected(a) = c.state else {
            return Err(AcdError::InvalidState {
                what: "call_ended",
                why: "the call is not connected (use call_abandoned)".into(),
            });
        };
        let Some(c) = self.detach(now, cid) else {
            return Ok(());
        };
        let talk = now.since(c.answered_at);
        let wrap = self.queues[c.home as usize].wrap_ms;
        let ag = &mut self.agents[a as usize];
        ag.talk_ms += talk;
        ag.handled += 1;
        ag.last_talk_ms = talk;
        ag.last_queue = c.home;
        ag.wrap_start = now;
        if wrap > 0 {
            self.set_state(now, a, AgentState::WrapUp);
            let ag = &mut self.agents[a as usize];
            arm(
                &mut self.timers,
                &mut ag.wrap_until,
                now.plus(wrap),
                Timer::Wrap(a),
            );
        } else {
            self.finish_wrap(now, a);
        }
        Ok(())
    }

    fn finish_wrap(&mut self, now: Millis, a: u32) {
        let ag = &mut self.agents[a as usize];
        disarm(&mut self.timers, &mut ag.wrap_until, Timer::Wrap(a));
        let wrap = now.since(ag.wrap_start);
        ag.wrap_ms += wrap;
        let handle = ag.last_talk_ms + wrap;
        let q = &mut self.queues[ag.last_queue as usize];
        q.st.handled += 1;
        q.st.handle_ms += handle;
        q.aht_ms += AHT_ALPHA * (handle as f64 - q.aht_ms);
        if ag.pending_logout {
            ag.pending_logout = false;
            self.logout_now(now, a);
        } else if let Some(r) = ag.pending_nr.take() {
            self.set_state(now, a, AgentState::NotReady(r));
        } else {
            ag.idle_since = now;
            self.make_available(now, a);
        }
    }

    // ---- events: agents -------------------------------------------------------------------

    /// The agent logs in, ready or not-ready (reason code 0).
    pub fn agent_login(&mut self, now: Millis, agent: AgentId, ready: bool) -> Result<()> {
        let ag = self.agent(agent)?;
        if ag.state.logged_in() {
            return Err(AcdError::InvalidState {
                what: "agent_login",
                why: "already logged in".into(),
            });
        }
        let a = agent.0;
        self.agents[a as usize].idle_since = now;
        if ready {
            self.make_available(now, a);
        } else {
            self.set_state(now, a, AgentState::NotReady(NotReadyReason::Code(0)));
        }
        Ok(())
    }

    /// The agent logs out. On a call, the logout happens when the call and wrap-up end.
    pub fn agent_logout(&mut self, now: Millis, agent: AgentId) -> Result<()> {
        let a = agent.0;
        match self.agent(agent)?.state {
            AgentState::LoggedOut => Err(AcdError::InvalidState {
                what: "agent_logout",
                why: "not logged in".into(),
            }),
            AgentState::OnCall(_) => {
                self.agents[a as usize].pending_logout = true;
                Ok(())
            }
            AgentState::WrapUp => {
                self.agents[a as usize].pending_logout = true;
                self.finish_wrap(now, a);
                Ok(())
            }
            AgentState::Reserved(cid) => {
                self.withdraw(now, cid, a);
                self.logout_now(now, a);
                Ok(())
            }
            AgentState::Available | AgentState::NotReady(_) => {
                self.logout_now(now, a);
                Ok(())
            }
        }
    }

    fn logout_now(&mut self, now: Millis, a: u32) {
        self.remove_available(a);
        self.set_state(now, a, AgentState::LoggedOut);
        let ag = &mut self.agents[a as usize];
        ag.pending_nr = None;
        ag.pending_logout = false;
        // Calls held for this agent go to the queue at large.
        let held = std::mem::take(&mut ag.preferred);
        for cid in held {
            if let Some(c) = self.calls.get_mut(&cid)
                && c.state == CState::Held
            {
                disarm(&mut self.timers, &mut c.t_hold, Timer::Hold(cid.0));
                c.preferred = None;
                self.insert_waiting(now, cid);
                self.dispatch_call(now, cid);
            }
        }
        self.flush_strands(now);
    }

    /// leave-when-empty: the calls of every class whose `able` count fell to zero (and is
    /// still zero once the event is complete) go to their fallback, in queue order.
    fn flush_strands(&mut self, now: Millis) {
        while let Some(ci) = self.strand_pending.pop() {
            let Some(cl) = self.classes.get(ci as usize) else {
                continue;
            };
            if cl.able > 0 || !self.queues[cl.home as usize].leave_empty {
                continue;
            }
            let stranded: Vec<CallId> = cl
                .calls
                .iter()
                .map(|x| x.1)
                .filter(|cid| {
                    self.calls.get(cid).is_some_and(|c| {
                        matches!(c.state, CState::Waiting | CState::Held | CState::Delayed)
                    })
                })
                .collect();
            for cid in stranded {
                self.fallback(now, cid, FallbackReason::Empty);
            }
        }
    }

    /// Takes agent `a` out of call `cid`'s offer (logout or not-ready while ringing).
    fn withdraw(&mut self, now: Millis, cid: CallId, a: u32) {
        let Some(c) = self.calls.get_mut(&cid) else {
            return;
        };
        self.decisions.push_back(Decision::CancelOffer {
            call: cid,
            agent: AgentId(a),
        });
        match &mut c.state {
            CState::Offered(list) => {
                list.retain(|&x| x != a);
                if list.is_empty() {
                    self.requeue(now, cid);
                } else {
                    self.reindex_ring(cid);
                    self.widen_ring(now, cid);
                }
            }
            CState::Dialing(_) => self.requeue(now, cid),
            _ => {}
        }
    }

    /// The agent becomes ready (from not-ready, or ends wrap-up early).
    pub fn agent_ready(&mut self, now: Millis, agent: AgentId) -> Result<()> {
        let a = agent.0;
        match self.agent(agent)?.state {
            AgentState::LoggedOut => Err(AcdError::InvalidState {
                what: "agent_ready",
                why: "not logged in".into(),
            }),
            AgentState::NotReady(_) => {
                self.make_available(now, a);
                Ok(())
            }
            AgentState::WrapUp => {
                self.agents[a as usize].pending_nr = None;
                self.finish_wrap(now, a);
                Ok(())
            }
            AgentState::OnCall(_) => {
                self.agents[a as usize].pending_nr = None;
                Ok(())
            }
            AgentState::Available | AgentState::Reserved(_) => Ok(()),
        }
    }

    /// The agent goes not-ready with a reason code (after the current call, if on one).
    pub fn agent_not_ready(&mut self, now: Millis, agent: AgentId, code: u16) -> Result<()> {
        let a = agent.0;
        let reason = NotReadyReason::Code(code);
        match self.agent(agent)?.state {
            AgentState::LoggedOut => Err(AcdError::InvalidState {
                what: "agent_not_ready",
                why: "not logged in".into(),
            }),
            AgentState::OnCall(_) | AgentState::WrapUp => {
                self.agents[a as usize].pending_nr = Some(reason);
                Ok(())
            }
            AgentState::Reserved(cid) => {
                self.withdraw(now, cid, a);
                self.set_state(now, a, AgentState::NotReady(reason));
                Ok(())
            }
            AgentState::Available | AgentState::NotReady(_) => {
                self.remove_available(a);
                self.set_state(now, a, AgentState::NotReady(reason));
                Ok(())
            }
        }
    }

    /// The agent finished after-call work early.
    pub fn wrapup_done(&mut self, now: Millis, agent: AgentId) -> Result<()> {
        if self.agent(agent)?.state != AgentState::WrapUp {
            return Err(AcdError::InvalidState {
                what: "wrapup_done",
                why: "not in wrap-up".into(),
            });
        }
        self.finish_wrap(now, agent.0);
        Ok(())
    }

    /// The agent needs more after-call time: the wrap-up deadline moves by `secs`.
    pub fn extend_wrapup(&mut self, _now: Millis, agent: AgentId, secs: u32) -> Result<()> {
        let a = agent.0;
        if self.agent(agent)?.state != AgentState::WrapUp {
            return Err(AcdError::InvalidState {
                what: "extend_wrapup",
                why: "not in wrap-up".into(),
            });
        }
        let ag = &mut self.agents[a as usize];
        if let Some(until) = ag.wrap_until {
            let at = until.plus(u64::from(secs) * 1000);
            arm(&mut self.timers, &mut ag.wrap_until, at, Timer::Wrap(a));
        }
        Ok(())
    }

    // ---- time -----------------------------------------------------------------------------

    /// Runs every timer due at or before `now` (ring timeouts, overflow steps, max wait,
    /// announcements, preferred-agent holds, callback retries, wrap-up ends). What they do
    /// is stamped `now`, not the deadline, so time never runs backwards for the statistics
    /// when the owner wakes late.
    pub fn handle_timeout(&mut self, now: Millis) {
        self.expire_resume(now);
        while let Some(&(at, t)) = self.timers.first() {
            if at > now {
                break;
            }
            self.timers.pop_first();
            self.fire(now, t);
        }
    }

    fn fire(&mut self, now: Millis, t: Timer) {
        match t {
            Timer::Wrap(a) => {
                let ag = &mut self.agents[a as usize];
                ag.wrap_until = None;
                if ag.state == AgentState::WrapUp {
                    self.finish_wrap(now, a);
                    let state = self.agents[a as usize].state;
                    self.decisions.push_back(Decision::AgentStateChanged {
                        agent: AgentId(a),
                        state,
                    });
                }
            }
            Timer::Ring(id) => {
                let cid = CallId(id);
                let Some(c) = self.calls.get_mut(&cid) else {
                    return;
                };
                c.t_ring = None;
                let CState::Offered(list) = &c.state else {
                    return;
                };
                let (late, list): (Vec<u32>, Vec<u32>) =
                    list.iter().partition(|a| c.late.contains(a));
                c.late.clear();
                c.declined.extend_from_slice(&list);
                let nr = self.queues[c.home as usize].nr_on_no_answer;
                c.state = CState::Delayed;
                for &a in &late {
                    self.decisions.push_back(Decision::CancelOffer {
                        call: cid,
                        agent: AgentId(a),
                    });
                }
                for &a in &list {
                    self.decisions.push_back(Decision::CancelOffer {
                        call: cid,
                        agent: AgentId(a),
                    });
                    self.agents[a as usize].missed += 1;
                    if nr {
                        let state = AgentState::NotReady(NotReadyReason::MissedOffer);
                        self.set_state(now, a, state);
                        self.decisions.push_back(Decision::AgentStateChanged {
                            agent: AgentId(a),
                            state,
                        });
                    }
                }
                self.requeue(now, cid);
                if !nr {
                    for &a in &list {
                        self.make_available(now, a);
                    }
                }
                // Late joiners are free again and take the call (or another) at once.
                for a in late {
                    self.make_available(now, a);
                }
            }
            Timer::Step(id) => {
                let cid = CallId(id);
                let Some(c) = self.calls.get_mut(&cid) else {
                    return;
                };
                c.t_step = None;
                let q = &self.queues[c.home as usize];
                let Some(st) = q.steps.get(c.step) else {
                    return;
                };
                if let Some(m) = st.min {
                    c.relax = Some(c.relax.map_or(m, |r| r.min(m)));
                }
                c.sites |= st.add_sites;
                let mut added = Vec::new();
                for &nq in &st.add_queues {
                    if !c.targets.contains(&nq) {
                        c.targets.push(nq);
                        added.push(nq);
                    }
                }
                let step = c.step as u32;
                c.step += 1;
                if let Some(next) = q.steps.get(c.step) {
                    let at = c.arrived.plus(next.after_ms).max(now);
                    arm(&mut self.timers, &mut c.t_step, at, Timer::Step(id));
                }
                let waiting = c.state == CState::Waiting;
                if waiting {
                    for nq in added {
                        self.queues[nq as usize].wait_insert(c.key, cid, c.sig);
                    }
                }
                self.decisions
                    .push_back(Decision::Overflow { call: cid, step });
                // A ringing ring-all call now also rings the new queues' free agents.
                self.reindex_ring(cid);
                if matches!(
                    self.calls.get(&cid).map(|c| &c.state),
                    Some(CState::Offered(_))
                ) {
                    self.widen_ring(now, cid);
                }
                if waiting {
                    self.dispatch_call(now, cid);
                }
            }
            Timer::MaxWait(id) => {
                let cid = CallId(id);
                let Some(c) = self.calls.get_mut(&cid) else {
                    return;
                };
                c.t_max = None;
                if matches!(c.state, CState::Waiting | CState::Held | CState::Delayed) {
                    self.fallback(now, cid, FallbackReason::MaxWait);
                }
            }
            Timer::Announce(id) => {
                let cid = CallId(id);
                let Some(c) = self.calls.get_mut(&cid) else {
                    return;
                };
                c.t_ann = None;
                let every = self.queues[c.home as usize].announce_ms;
                let waiting = c.state == CState::Waiting;
                arm(
                    &mut self.timers,
                    &mut c.t_ann,
                    now.plus(every),
                    Timer::Announce(id),
                );
                if waiting {
                    self.announce(cid);
                }
            }
            Timer::Hold(id) => {
                let cid = CallId(id);
                let Some(c) = self.calls.get_mut(&cid) else {
                    return;
                };
                c.t_hold = None;
                if c.state != CState::Held {
                    return;
                }
                if let Some(p) = c.preferred.take() {
                    self.agents[p as usize].preferred.retain(|&x| x != cid);
                }
                self.insert_waiting(now, cid);
                self.dispatch_call(now, cid);
            }
            Timer::Retry(id) => {
                let cid = CallId(id);
                let Some(c) = self.calls.get_mut(&cid) else {
                    return;
                };
                c.t_retry = None;
                if c.state == CState::Delayed {
                    self.requeue(now, cid);
                }
            }
        }
    }

    // ---- statistics ------------------------------------------------------------------------

    /// Zeroes the counters (start of a reporting interval); states and queues are kept.
    pub fn reset_stats(&mut self, now: Millis) {
        self.stats_since = now;
        for q in &mut self.queues {
            q.st = QStats::default();
        }
        for a in &mut self.agents {
            a.time_in = [0; 6];
            a.acc_since = now;
            a.handled = 0;
            a.talk_ms = 0;
            a.wrap_ms = 0;
            a.missed = 0;
        }
    }

    fn agent_times(a: &Agent, now: Millis) -> [u64; 6] {
        let mut t = a.time_in;
        t[a.state.slot()] += now.since(a.acc_since);
        t
    }

    /// Statistics of one queue (cheap: scans the queue's waiting calls and members only).
    pub fn queue_snapshot(&self, now: Millis, queue: QueueId) -> Result<QueueSnapshot> {
        let q = self
            .queues
            .get(queue.0 as usize)
            .ok_or_else(|| AcdError::UnknownQueue(format!("#{}", queue.0)))?;
        let mut longest = 0;
        for cid in q.waiting.values() {
            if let Some(c) = self.calls.get(cid)
                && c.home == queue.0
            {
                longest = longest.max(now.since(c.arrived));
            }
        }
        let mut counts = AgentCounts::default();
        let (mut busy, mut staffed) = (0u64, 0u64);
        for &a in &q.members {
            let ag = &self.agents[a as usize];
            counts.add(ag.state);
            let t = Self::agent_times(ag, now);
            busy += t[2] + t[3] + t[4];
            staffed += t[1] + t[2] + t[3] + t[4];
        }
        Ok(QueueSnapshot::build(
            &q.name,
            &q.st,
            q.own_waiting,
            longest,
            q.sl_ms,
            counts,
            busy,
            staffed,
        ))
    }

    /// Statistics of one agent.
    pub fn agent_snapshot(&self, now: Millis, agent: AgentId) -> Result<AgentSnapshot> {
        let a = self.agent(agent)?;
        let t = Self::agent_times(a, now);
        let busy = t[2] + t[3] + t[4];
        let staffed = busy + t[1];
        Ok(AgentSnapshot {
            id: a.name.clone(),
            state: a.state,
            state_secs: now.since(a.state_since) as f64 / 1000.0,
            calls_handled: a.handled,
            talk_secs: a.talk_ms as f64 / 1000.0,
            wrapup_secs: a.wrap_ms as f64 / 1000.0,
            missed_offers: a.missed,
            logged_in_secs: (staffed + t[5]) as f64 / 1000.0,
            not_ready_secs: t[5] as f64 / 1000.0,
            occupancy: (staffed > 0).then(|| busy as f64 / staffed as f64),
        })
    }

    /// Everything, for publishing to wallboards.
    pub fn snapshot(&self, now: Millis) -> Snapshot {
        let queues = (0..self.queues.len())
            .filter_map(|i| self.queue_snapshot(now, QueueId(i as u32)).ok())
            .collect();
        let agents: Vec<AgentSnapshot> = (0..self.agents.len())
            .filter_map(|i| self.agent_snapshot(now, AgentId(i as u32)).ok())
            .collect();
        Snapshot {
            since: self.stats_since,
            at: now,
            queues,
            agents,
        }
    }

    /// Checks the engine's internal indexes against its state (for tests): every available
    /// agent indexed, no waiting call an available agent could take, offers consistent.
    pub fn check_invariants(&self) -> std::result::Result<(), String> {
        for (i, a) in self.agents.iter().enumerate() {
            let indexed = a.members.iter().any(|m| m.key.is_some());
            if indexed && a.state != AgentState::Available {
                return Err(format!("agent {i} indexed while {:?}", a.state));
            }
            if let AgentState::Reserved(c) | AgentState::OnCall(c) = a.state {
                let Some(call) = self.calls.get(&c) else {
                    return Err(format!("agent {i} holds unknown call {c:?}"));
                };
                let ok = match &call.state {
                    CState::Offered(l) => l.contains(&(i as u32)),
                    CState::Dialing(x) | CState::Connected(x) => *x == i as u32,
                    _ => false,
                };
                if !ok {
                    return Err(format!(
                        "agent {i} {:?} but call is {:?}",
                        a.state, call.state
                    ));
                }
            }
            if a.state == AgentState::Available
                && let Some((cid, _)) = self.find_call_for(i as u32)
                && self
                    .calls
                    .get(&cid)
                    .is_some_and(|c| c.state == CState::Waiting)
            {
                return Err(format!("agent {i} available while {cid:?} waits for it"));
            }
            if a.state == AgentState::Available
                && let Some((cid, _)) = self.find_ring_for(i as u32)
            {
                return Err(format!("agent {i} available while ring-all {cid:?} rings"));
            }
        }
        for (i, q) in self.queues.iter().enumerate() {
            let in_buckets: usize = q.buckets.iter().map(|b| b.1.len()).sum();
            let mirrored = q
                .buckets
                .iter()
                .all(|(_, m)| m.iter().all(|(k, id)| q.waiting.get(k) == Some(id)));
            if in_buckets != q.waiting.len() || !mirrored {
                return Err(format!(
                    "queue {i}: buckets do not mirror the waiting calls"
                ));
            }
        }
        for (i, cl) in self.classes.iter().enumerate() {
            let able = self.count_able(cl);
            if able != cl.able {
                return Err(format!("class {i}: able {} but {able} counted", cl.able));
            }
            let leave = self.queues[cl.home as usize].leave_empty;
            for (_, cid) in &cl.calls {
                let stranded = self.calls.get(cid).is_some_and(|c| {
                    matches!(c.state, CState::Waiting | CState::Held | CState::Delayed)
                });
                if leave && able == 0 && stranded {
                    return Err(format!("{cid:?} waits but nobody could ever serve it"));
                }
            }
        }
        for (cid, c) in &self.calls {
            let n = c
                .targets
                .iter()
                .filter(|&&t| self.queues[t as usize].waiting.get(&c.key) == Some(cid))
                .count();
            let expected = if c.state == CState::Waiting {
                c.targets.len()
            } else {
                0
            };
            if n != expected {
                return Err(format!("call {cid:?} {:?} indexing mismatch", c.state));
            }
            let rings = c.ring_all && matches!(c.state, CState::Offered(_));
            let indexed = c
                .targets
                .iter()
                .filter(|&&t| self.queues[t as usize].ringing.get(&c.key) == Some(cid))
                .count();
            if indexed != if rings { c.targets.len() } else { 0 } {
                return Err(format!("call {cid:?} {:?} ring index mismatch", c.state));
            }
        }
        Ok(())
    }
}
