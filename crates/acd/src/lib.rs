//! # hotline-acd — the routing brain of Hotline
//!
//! A sans-IO automatic call distributor. [`Engine`] owns queues (skill groups), agents and
//! waiting calls. It is fed events with the current time (`call_arrived`, `offer_answered`,
//! `handle_timeout`, …) and emits [`Decision`]s (`Offer`, `Announce`, `Fallback`, …) that the
//! owning task carries out; [`Engine::poll_timeout`] says when it must be woken next. It has
//! no clock, no IO, no threads: time is the injected [`Millis`], so everything is
//! deterministic and testable at simulation speed.
//!
//! ## Driving the engine
//! ```
//! use hotline_acd::{AcdConfig, CallId, Decision, Engine, Millis, NewCall};
//!
//! let cfg = AcdConfig::from_toml(r#"
//!     [[queue]]
//!     name = "sales"
//!     [[agent]]
//!     id = "anna"
//!     queues = { sales = 0 }
//! "#)?;
//! let mut acd = Engine::new(&cfg, Millis(0))?;
//! let anna = acd.agent_id("anna").expect("configured");
//! let sales = acd.queue_id("sales").expect("configured");
//! acd.agent_login(Millis(1_000), anna, true)?;
//! acd.call_arrived(Millis(2_000), NewCall::new(CallId(7), sales))?;
//! // The owning task carries out every decision…
//! assert_eq!(
//!     acd.poll_decision(),
//!     Some(Decision::Offer { call: CallId(7), agent: anna, via: sales })
//! );
//! // …and sleeps until the next deadline (here: the offer's ring timeout), then calls
//! // `handle_timeout`, unless an event comes first.
//! assert_eq!(acd.poll_timeout(), Some(Millis(17_000)));
//! acd.offer_answered(Millis(5_000), CallId(7), anna)?;
//! acd.call_ended(Millis(65_000), CallId(7))?;
//! # Ok::<(), hotline_acd::AcdError>(())
//! ```
//!
//! ## Routing in one paragraph
//! A call waits in its queue ordered by *effective priority* = static priority + queue
//! weight + seconds waited / `aging_secs`, FIFO within equal effective priority. Because
//! aging is linear and shared by all calls, that order never changes while calls wait, so
//! every queue keeps a B-tree of waiting calls and a B-tree of available agents ordered by
//! the queue's [`Strategy`] key: a decision touches a handful of tree nodes, not every agent.
//! An agent who serves several queues compares the heads of all of them and takes the best
//! effective priority (fairness across queues). Bullseye [`OverflowStep`]s widen the set of
//! agents over time (lower proficiency, more queues, more sites); after `max_wait_secs` the
//! call goes to its [`Fallback`].
//!
//! **Ring-all** rings up to `ring_all_limit` (default 20, `0` = no limit) eligible agents at
//! once. An agent who becomes free takes a waiting call first (it has nobody); otherwise it
//! joins the best ring-all call still ringing below its limit, as do free agents when a
//! ringing agent declines or a bullseye step widens the call. The first answer wins and the
//! others get `CancelOffer`. The ring timeout runs from the start of the ring: agents who
//! rang all of it count as no-answer (not-ready if configured); late joiners are only
//! cancelled and offered the call afresh, with a new timeout.
//!
//! ## When nobody can serve a call
//! With `leave_when_empty` (or `join_when_empty = false`), a call that no logged-in agent
//! could *ever* serve goes to its fallback at once: at arrival, and as soon as a logout or a
//! re-skilling leaves it without anyone. "Could ever serve" is judged against the call's
//! full requirements (its queue's skills and its own, e.g. a language) at the loosest
//! proficiency its bullseye steps reach, over the agents of every queue and site those steps
//! could add; not-ready and busy agents count (they may come back). Calls are grouped into
//! classes (home queue + extra skills) that each keep a count of the logged-in agents able
//! to serve them, so an agent's login or logout updates only the classes of its queues and
//! servability is a lookup, not a scan. Past 65,536 classes (only a hostile event stream
//! gets there) new classes are not tracked: such calls are checked per queue on arrival
//! only.
//!
//! ## Statistics definitions
//! Counted per queue from the last [`Engine::reset_stats`] (the binary resets per interval):
//! * **Offered**: calls that entered the queue (including those refused at entry).
//! * **Short abandon**: caller hung up within `short_abandon_secs` of entering; such calls
//!   are excluded from service level and abandonment rate (common practice: they are
//!   misdials or callers who heard the greeting and left, not failures of service).
//! * **Service level** = answered within `sl_secs` / (answered + abandoned − short
//!   abandons + timed out to the fallback). Abandoned calls count against SL whether they
//!   hung up before or after the threshold (the stricter of the usual variants); calls
//!   refused at entry (queue full/empty) are not counted. Without abandons it is
//!   P(wait ≤ T), the quantity Erlang C predicts.
//! * **ASA** (average speed of answer) = total wait of answered calls / answered; wait runs
//!   from entry to the agent answering, so it includes ring time.
//! * **Abandonment rate** = (abandoned − short abandons) / (offered − short abandons).
//! * **AHT** (average handle time) = (talk + wrap-up) / calls handled, counted when
//!   wrap-up ends.
//! * **Occupancy** = time reserved, on call or in wrap-up / time logged in and not in
//!   not-ready: the share of staffed time spent handling calls. For a queue it is
//!   taken over the agents who are members of it.
//! * **Longest wait**: the longest current wait among calls waiting in the queue.
//!
//! ## Expected wait time
//! EWT for position *k* = k × G / working members, where *G* is the queue's measured time
//! per call per working member: the mean time between two of its calls being taken by an
//! agent while its calls wait, times the members then working (logged in, not not-ready).
//! It is a running mean of the first 50 such gaps (seeded with the AHT, a moving average
//! of measured handle times), then a moving average. With dedicated agents all busy, calls
//! leave at rate c/AHT, so G = AHT and this is exactly the expected wait of the k-th call
//! for exponential service. Agents shared with other queues give this queue only part of
//! their time; counting them as whole servers would make the EWT optimistic, while G
//! measures the share they actually give (see the simulator tests: a single queue, and two
//! queues sharing agents, each within ±10% of the mean actual wait). Dividing by the
//! working members now lets the estimate follow staffing changes at once. Calls that
//! abandon ahead of a caller are not predicted, so the EWT errs long for patient callers.
//! The position is counted in the waiting-call tree, O(position) per announcement.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod config;
mod engine;
pub mod erlang;
mod error;
pub mod sim;
pub mod stats;

pub use config::{AcdConfig, AgentConfig, Fallback, OverflowStep, QueueConfig, SkillReq, Strategy};
pub use engine::{
    AgentState, Decision, Engine, FallbackReason, NewCall, NotReadyReason, WaitEstimate,
};
pub use error::{AcdError, Result};

/// Milliseconds since an epoch chosen by the owner (e.g. UNIX time, or process start).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Millis(pub u64);

impl Millis {
    /// From seconds.
    pub const fn from_secs(s: u64) -> Self {
        Millis(s.saturating_mul(1000))
    }
    /// `self + ms`, saturating.
    pub const fn plus(self, ms: u64) -> Self {
        Millis(self.0.saturating_add(ms))
    }
    /// `self - earlier`, or 0 if `earlier` is later.
    pub const fn since(self, earlier: Millis) -> u64 {
        self.0.saturating_sub(earlier.0)
    }
}

/// A call, identified by the owner (the switch's call id).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CallId(pub u64);

/// An agent: a dense index assigned by the engine (config order, then `add_agent` order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct AgentId(pub u32);

/// A queue: its index in the configuration.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct QueueId(pub u32);
