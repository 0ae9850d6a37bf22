//! What the server knows across sockets: users, sessions, each agent's desk (sockets,
//! current call and its pop, the customers they may read) and supervisors' sockets. One
//! task turns the switch's events into frames for the right sockets.

use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::ws::Utf8Bytes;
use hotline_crm::NewAuditEntry;
use hotline_switch::{Offered, SwitchEvent, SwitchHandle};
use serde_json::{Value, json};
use tokio::sync::{Notify, broadcast, mpsc};

use crate::auth::Sessions;
use crate::protocol;
use crate::{CtiConfig, CtiUser, Role};

/// A frame queued for one socket; `ack` is confirmed once the frame is written.
pub(crate) struct Outbound {
    pub text: Utf8Bytes,
    pub ack: Option<Arc<Offered>>,
}

/// One socket's way in: its queue and its kill switch (slow consumer, shutdown).
#[derive(Clone)]
pub(crate) struct ConnTx {
    pub id: u64,
    pub tx: mpsc::Sender<Outbound>,
    pub kill: Arc<Notify>,
}

impl ConnTx {
    /// Queues a frame; a full queue means the desk is not reading: it is disconnected
    /// (and resumes), never buffered without bound.
    pub fn push(&self, text: Utf8Bytes, ack: Option<Arc<Offered>>) -> bool {
        match self.tx.try_send(Outbound { text, ack }) {
            Ok(()) => true,
            Err(mpsc::error::TrySendError::Full(_)) => {
                tracing::warn!(conn = self.id, "CTI socket not reading; disconnecting");
                self.kill.notify_one();
                false
            }
            Err(mpsc::error::TrySendError::Closed(_)) => false,
        }
    }
}

/// Remembered customers per agent or queue: enough for the calls of a shift, bounded.
const REMEMBERED: usize = 4096;

#[derive(Default)]
struct Remembered {
    set: HashSet<i64>,
    order: VecDeque<i64>,
}

impl Remembered {
    fn add(&mut self, id: i64) {
        if self.set.insert(id) {
            self.order.push_back(id);
            if self.order.len() > REMEMBERED
                && let Some(old) = self.order.pop_front()
            {
                self.set.remove(&old);
            }
        }
    }
}

/// An agent's desk.
#[derive(Default)]
pub(crate) struct Desk {
    pub conns: Vec<ConnTx>,
    /// The call offered or in progress (kept through wrap-up, for resume).
    pub current: Option<Arc<Offered>>,
    pub answered: bool,
    pub ended: Option<Value>,
    /// Customers of calls offered to this agent: the only records they may read.
    customers: Remembered,
    /// Call-IDs offered to this agent.
    calls: HashSet<String>,
}

#[derive(Default)]
pub(crate) struct Live {
    pub desks: HashMap<String, Desk>,
    /// Supervisor/admin sockets and the queues they watch (empty: all).
    pub watchers: HashMap<u64, (ConnTx, Arc<Vec<String>>)>,
    /// Customers of calls offered in each queue (supervisors' reach).
    queue_customers: HashMap<String, Remembered>,
    /// Live calls → queue (supervisors may act on calls of their queues).
    pub call_queue: HashMap<String, String>,
}

pub(crate) struct Hub {
    pub cfg: CtiConfig,
    pub users: HashMap<String, CtiUser>,
    pub sessions: Sessions,
    pub switch: SwitchHandle,
    pub live: Mutex<Live>,
    /// The admin service: the current word lists (none: those loaded at start).
    pub admin: Option<crate::admin::AdminHandle>,
    next_conn: AtomicU64,
}

impl Hub {
    pub fn new(
        cfg: CtiConfig,
        switch: SwitchHandle,
        admin: Option<crate::admin::AdminHandle>,
    ) -> Self {
        let users = cfg
            .users
            .iter()
            .map(|u| (u.name.clone(), u.clone()))
            .collect();
        Hub {
            sessions: Sessions::new(Duration::from_secs(cfg.token_ttl_secs)),
            cfg,
            users,
            switch,
            live: Mutex::new(Live::default()),
            admin,
            next_conn: AtomicU64::new(1),
        }
    }

    /// A word list as it is now: from the admin service when it runs (it reads the file
    /// the admin API edits), else as loaded at start.
    pub async fn words(&self, which: crate::admin::WordList) -> Result<Vec<String>, String> {
        use crate::admin::WordList;
        match &self.admin {
            Some(a) => a.words(which).await.map_err(|f| f.message),
            None => Ok(match which {
                WordList::Dispositions => self.cfg.desk.dispositions.clone(),
                WordList::NotReadyReasons => self.cfg.desk.not_ready_reasons.clone(),
            }),
        }
    }

    /// The in-page phone's settings for `agent` (their SIP user and password), when
    /// Hotline has a SIP-over-WebSocket URL and the agent a SIP account.
    pub fn phone_settings(&self, agent: &str) -> Value {
        let d = &self.cfg.desk;
        match (&d.phone_ws_url, d.sip_passwords.0.get(agent)) {
            (Some(url), Some(pw)) => json!({
                "ws_url": url,
                "domain": d.phone_domain,
                "user": agent,
                "password": pw,
            }),
            _ => Value::Null,
        }
    }

    pub fn conn_id(&self) -> u64 {
        self.next_conn.fetch_add(1, Ordering::Relaxed)
    }

    /// Attaches a socket to the user's views: the agent's desk, or the watchers.
    pub fn attach(&self, user: &CtiUser, conn: &ConnTx) {
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        if let Some(agent) = &user.agent {
            let desk = live.desks.entry(agent.clone()).or_default();
            desk.conns.retain(|c| c.id != conn.id);
            desk.conns.push(conn.clone());
        }
        if user.role != Role::Agent {
            live.watchers
                .insert(conn.id, (conn.clone(), Arc::new(user.queues.clone())));
        }
    }

    pub fn detach(&self, conn_id: u64) {
        let Ok(mut live) = self.live.lock() else {
            return;
        };
        for d in live.desks.values_mut() {
            d.conns.retain(|c| c.id != conn_id);
        }
        live.watchers.remove(&conn_id);
    }

    /// The agent's current call frame data (for resume): offer, answered, ended.
    pub fn current_call(&self, agent: &str) -> Value {
        let Ok(live) = self.live.lock() else {
            return Value::Null;
        };
        match live
            .desks
            .get(agent)
            .and_then(|d| d.current.clone().map(|c| (c, d)))
        {
            Some((offer, d)) => json!({
                "offer": offered_json(&offer),
                "answered": d.answered,
                "ended": d.ended,
            }),
            None => Value::Null,
        }
    }

    /// May `user` read (or change) customer `id`? Agents: customers of calls offered to
    /// them; supervisors: of calls offered in their queues; admins: all.
    pub fn may_read(&self, user: &CtiUser, id: i64) -> bool {
        let Ok(live) = self.live.lock() else {
            return false;
        };
        match user.role {
            Role::Admin => true,
            Role::Agent => user
                .agent
                .as_ref()
                .and_then(|a| live.desks.get(a))
                .is_some_and(|d| d.customers.set.contains(&id)),
            Role::Supervisor => live.queue_customers.iter().any(|(q, r)| {
                (user.queues.is_empty() || user.queues.contains(q)) && r.set.contains(&id)
            }),
        }
    }

    /// May `user` act on call `call_id`?
    pub fn may_control(&self, user: &CtiUser, call_id: &str) -> bool {
        let Ok(live) = self.live.lock() else {
            return false;
        };
        match user.role {
            Role::Admin => true,
            Role::Agent => user
                .agent
                .as_ref()
                .and_then(|a| live.desks.get(a))
                .is_some_and(|d| d.calls.contains(call_id)),
            Role::Supervisor => live
                .call_queue
                .get(call_id)
                .is_some_and(|q| user.queues.is_empty() || user.queues.contains(q)),
        }
    }

    /// A call the agent placed (click-to-dial): theirs to control.
    pub fn own_call(&self, agent: &str, call_id: &str) {
        if let Ok(mut live) = self.live.lock() {
            let desk = live.desks.entry(agent.to_string()).or_default();
            desk.calls.insert(call_id.to_string());
        }
    }

    /// Whether `call_id` was offered to `agent` and `customer` is one of its pop's.
    pub fn offered_customer(&self, agent: &str, call_id: &str, customer: i64) -> bool {
        let Ok(live) = self.live.lock() else {
            return false;
        };
        live.desks.get(agent).is_some_and(|d| {
            d.calls.contains(call_id)
                && d.current
                    .as_ref()
                    .is_some_and(|c| c.call_id == call_id && c.customer_ids().contains(&customer))
        })
    }

    /// Logs an access to customer records (off the caller's path: a slow store must not
    /// delay frames).
    pub fn audit(
        &self,
        actor: &str,
        action: &str,
        customer_id: Option<i64>,
        allowed: bool,
        detail: String,
    ) {
        let Some(store) = self.switch.store().cloned() else {
            return;
        };
        let e = NewAuditEntry {
            actor: actor.to_string(),
            action: action.to_string(),
            customer_id,
            allowed,
            detail,
        };
        tokio::spawn(async move {
            if let Err(err) = store.audit(&e).await {
                tracing::warn!(error = %err, "audit entry not written");
            }
        });
    }
}

pub(crate) fn offered_json(o: &Offered) -> Value {
    serde_json::to_value(o).unwrap_or(Value::Null)
}

fn text(s: String) -> Utf8Bytes {
    Utf8Bytes::from(s)
}

/// The event task: switch events → frames. Offers are acknowledged to the switch once
/// written to a socket of the agent (or at once when the agent has no desk open).
pub(crate) async fn run_events(hub: Arc<Hub>, mut rx: broadcast::Receiver<SwitchEvent>) {
    loop {
        let ev = match rx.recv().await {
            Ok(ev) => ev,
            Err(broadcast::error::RecvError::Lagged(n)) => {
                tracing::warn!(
                    missed = n,
                    "CTI fell behind the switch's events; resynchronising"
                );
                resync(&hub).await;
                continue;
            }
            Err(broadcast::error::RecvError::Closed) => break,
        };
        dispatch(&hub, ev);
    }
}

/// After missed events every socket gets every agent state it may see again (the
/// versions let desks drop what they already had).
async fn resync(hub: &Hub) {
    let Ok(states) = hub.switch.agents().await else {
        return;
    };
    for s in states {
        dispatch(hub, SwitchEvent::AgentState(s));
    }
}

fn dispatch(hub: &Hub, ev: SwitchEvent) {
    let Ok(mut live) = hub.live.lock() else {
        return;
    };
    match ev {
        SwitchEvent::AgentState(s) => {
            let frame = text(protocol::event(
                "agent.state",
                serde_json::to_value(&s).unwrap_or(Value::Null),
            ));
            if let Some(d) = live.desks.get_mut(&s.agent) {
                use hotline_switch::AgentStatus as S;
                let with_call = matches!(
                    s.status,
                    S::Reserved { .. } | S::OnCall { .. } | S::WrapUp { .. }
                );
                if !with_call && d.current.is_some() && (d.ended.is_some() || !d.answered) {
                    // Wrap-up is over (into ready or a pending not-ready), or the offer
                    // was withdrawn unanswered (not ready, ring timeout): the call leaves
                    // the desk, so a resume does not bring it back (found by the chaos test).
                    d.current = None;
                    d.answered = false;
                    d.ended = None;
                }
                for c in &d.conns {
                    c.push(frame.clone(), None);
                }
            }
            // Supervisors see every agent state (agents serve several queues).
            for (c, _) in live.watchers.values() {
                c.push(frame.clone(), None);
            }
        }
        SwitchEvent::CallOffered(o) => {
            let frame = text(protocol::event("call.offered", offered_json(&o)));
            let ids = o.customer_ids();
            live.call_queue.insert(o.call_id.clone(), o.queue.clone());
            let qc = live.queue_customers.entry(o.queue.clone()).or_default();
            for id in &ids {
                qc.add(*id);
            }
            let desk = live.desks.entry(o.agent.clone()).or_default();
            for id in &ids {
                desk.customers.add(*id);
            }
            desk.calls.insert(o.call_id.clone());
            desk.current = Some(o.clone());
            desk.answered = false;
            desk.ended = None;
            let mut delivered = false;
            for c in &desk.conns {
                delivered |= c.push(frame.clone(), Some(o.clone()));
            }
            if !delivered {
                o.ack(); // no desk open: nothing to wait for
            }
            let has_desk = delivered;
            for (c, queues) in live.watchers.values() {
                if queues.is_empty() || queues.contains(&o.queue) {
                    c.push(frame.clone(), None);
                }
            }
            if let Some(id) = ids.first().copied().filter(|_| ids.len() == 1) {
                hub.audit(
                    &o.agent,
                    "pop",
                    Some(id),
                    true,
                    format!("call {} delivered={has_desk}", o.call_id),
                );
            } else {
                for id in ids {
                    hub.audit(
                        &o.agent,
                        "pop_candidate",
                        Some(id),
                        true,
                        format!("call {}", o.call_id),
                    );
                }
            }
        }
        SwitchEvent::CallAnswered {
            call_id,
            agent,
            queue,
        } => {
            let frame = text(protocol::event(
                "call.answered",
                json!({"call_id": call_id, "agent": agent, "queue": queue}),
            ));
            if let Some(d) = live.desks.get_mut(&agent) {
                if d.current.as_ref().is_some_and(|c| c.call_id == call_id) {
                    d.answered = true;
                }
                for c in &d.conns {
                    c.push(frame.clone(), None);
                }
            }
            to_watchers(&live, queue.as_deref(), &frame);
        }
        SwitchEvent::CallHeld { call_id, agent } => {
            let data = json!({"call_id": call_id, "agent": agent});
            to_agent(&live, &agent, "call.held", data.clone());
            let queue = live.call_queue.get(&call_id).cloned();
            to_watchers(
                &live,
                queue.as_deref(),
                &text(protocol::event("call.held", data)),
            );
        }
        SwitchEvent::CallResumed { call_id, agent } => {
            let data = json!({"call_id": call_id, "agent": agent});
            to_agent(&live, &agent, "call.resumed", data.clone());
            let queue = live.call_queue.get(&call_id).cloned();
            to_watchers(
                &live,
                queue.as_deref(),
                &text(protocol::event("call.resumed", data)),
            );
        }
        SwitchEvent::CallTransferred { call_id, agent, to } => {
            let data = json!({"call_id": call_id, "agent": agent, "to": to});
            // The call has left this agent: no more commands on it from their desk; the
            // desk keeps it as its finished call (wrap-up, resume).
            if let Some(d) = live.desks.get_mut(&agent) {
                d.calls.remove(&call_id);
                if d.current.as_ref().is_some_and(|c| c.call_id == call_id) {
                    d.ended = Some(data.clone());
                }
            }
            to_agent(&live, &agent, "call.transferred", data.clone());
            let queue = live.call_queue.get(&call_id).cloned();
            to_watchers(
                &live,
                queue.as_deref(),
                &text(protocol::event("call.transferred", data)),
            );
        }
        SwitchEvent::CallEnded {
            call_id,
            agent,
            queue,
            reason,
            interaction_id,
        } => {
            let data = json!({
                "call_id": call_id, "agent": agent, "queue": queue,
                "reason": reason, "interaction_id": interaction_id,
            });
            let frame = text(protocol::event("call.ended", data.clone()));
            live.call_queue.remove(&call_id);
            if let Some(d) = agent.as_ref().and_then(|a| live.desks.get_mut(a)) {
                d.calls.remove(&call_id);
                if d.current.as_ref().is_some_and(|c| c.call_id == call_id) {
                    if d.answered {
                        d.ended = Some(data);
                    } else {
                        // Never answered (caller left, offer withdrawn): nothing to wrap up.
                        d.current = None;
                    }
                }
                for c in &d.conns {
                    c.push(frame.clone(), None);
                }
            }
            to_watchers(&live, queue.as_deref(), &frame);
        }
        SwitchEvent::PhoneLost {
            call_id,
            agent,
            rejoin_secs,
        } => {
            let data = json!({"call_id": call_id, "agent": agent, "rejoin_secs": rejoin_secs});
            to_agent(&live, &agent, "call.phone_lost", data.clone());
            let queue = live.call_queue.get(&call_id).cloned();
            to_watchers(
                &live,
                queue.as_deref(),
                &text(protocol::event("call.phone_lost", data)),
            );
        }
        SwitchEvent::PhoneBack { call_id, agent } => {
            let data = json!({"call_id": call_id, "agent": agent});
            to_agent(&live, &agent, "call.phone_back", data.clone());
            let queue = live.call_queue.get(&call_id).cloned();
            to_watchers(
                &live,
                queue.as_deref(),
                &text(protocol::event("call.phone_back", data)),
            );
        }
        SwitchEvent::WrapupStarted { call_id, agent } => to_agent(
            &live,
            &agent,
            "wrapup.started",
            json!({"call_id": call_id, "agent": agent}),
        ),
        SwitchEvent::VoicemailLeft(v) => {
            let data = serde_json::to_value(&*v).unwrap_or(Value::Null);
            let frame = text(protocol::event("voicemail.left", data));
            to_watchers(&live, v.queue.as_deref(), &frame);
        }
        SwitchEvent::QueueStats(stats) => {
            for (c, queues) in live.watchers.values() {
                let mine: Vec<_> = stats
                    .iter()
                    .filter(|s| queues.is_empty() || queues.contains(&s.queue))
                    .collect();
                c.push(
                    text(protocol::event("queue.stats", json!({"queues": mine}))),
                    None,
                );
            }
        }
    }
}

fn to_agent(live: &Live, agent: &str, name: &str, data: Value) {
    let frame = text(protocol::event(name, data));
    if let Some(d) = live.desks.get(agent) {
        for c in &d.conns {
            c.push(frame.clone(), None);
        }
    }
}

fn to_watchers(live: &Live, queue: Option<&str>, frame: &Utf8Bytes) {
    for (c, queues) in live.watchers.values() {
        if queues.is_empty() || queue.is_some_and(|q| queues.iter().any(|w| w == q)) {
            c.push(frame.clone(), None);
        }
    }
}
