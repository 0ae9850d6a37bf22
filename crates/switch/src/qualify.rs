//! Agent devices that vanish (phone unplugged, softphone killed, home network down): every
//! agent's registered contact gets a SIP OPTIONS each `interval`; `misses` unanswered
//! probes in a row, or a registration that is gone, make the agent not-ready
//! "unreachable" (published like any state change) until the device answers again.
//!
//! An offer also triggers a probe at once, and a device that misses that one is
//! unreachable without waiting for more misses: the ACD then withdraws the ringing offer
//! and the call goes back to the head of its queue, so no caller rings a dead phone for
//! longer than one probe timeout.
//!
//! [`Qualify`] is the sans-IO state (time is passed in); [`run`] drives it with the SIP
//! core and the ACD task.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use hotline_sip::server::AppHandle;
use tokio::sync::mpsc;

use crate::acd::AcdInput;

/// Call-IDs of probes start with this, so the dispatcher can pass their answers here.
pub(crate) const PROBE_PREFIX: &str = "hlq-";

/// How agent devices are probed (`[qualify]` in the config).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QualifyPolicy {
    /// Time between probes of one device.
    pub interval: Duration,
    /// How long a probe waits for any answer.
    pub timeout: Duration,
    /// Unanswered probes in a row before the device counts as gone.
    pub misses: u32,
}

/// Whether a Call-ID is one of our probes.
pub(crate) fn is_probe(call_id: &str) -> bool {
    call_id.starts_with(PROBE_PREFIX)
}

/// What the dispatcher and the ACD tell the prober.
#[derive(Debug)]
pub(crate) enum QualifyInput {
    /// A response (any status: the device is alive) to the probe with this Call-ID.
    Answered { call_id: String },
    /// The ACD just offered a call to this agent: probe the device now.
    Offered { user: String },
}

#[derive(Debug)]
struct Device {
    user: String,
    reachable: bool,
    missed: u32,
    next_probe: Instant,
    /// The probe in flight: its deadline and whether one miss is enough (offer probe).
    pending: Option<(Instant, bool)>,
    /// The next probe is an offer probe.
    urgent: bool,
}

/// The probing state of every agent device.
#[derive(Debug)]
pub struct Qualify {
    policy: QualifyPolicy,
    devices: Vec<Device>,
    by_user: HashMap<String, usize>,
    /// Probe Call-ID → device.
    in_flight: HashMap<String, usize>,
    changes: VecDeque<(String, bool)>,
}

impl Qualify {
    /// Every user starts reachable; first probes are spread over one interval.
    pub fn new(
        policy: QualifyPolicy,
        users: impl IntoIterator<Item = String>,
        now: Instant,
    ) -> Self {
        let users: Vec<String> = users.into_iter().collect();
        let n = users.len().max(1) as u32;
        let devices: Vec<Device> = users
            .into_iter()
            .enumerate()
            .map(|(i, user)| Device {
                user,
                reachable: true,
                missed: 0,
                next_probe: now + policy.interval * i as u32 / n,
                pending: None,
                urgent: false,
            })
            .collect();
        let by_user = devices
            .iter()
            .enumerate()
            .map(|(i, d)| (d.user.clone(), i))
            .collect();
        Qualify {
            policy,
            devices,
            by_user,
            in_flight: HashMap::new(),
            changes: VecDeque::new(),
        }
    }

    /// The next device due for a probe (its index and user); the caller sends the probe
    /// and reports it with [`Qualify::sent`] or [`Qualify::no_contact`].
    pub fn poll_probe(&mut self, now: Instant) -> Option<(usize, String)> {
        let (i, d) = self
            .devices
            .iter_mut()
            .enumerate()
            .find(|(_, d)| d.pending.is_none() && d.next_probe <= now)?;
        d.next_probe = now + self.policy.interval;
        Some((i, d.user.clone()))
    }

    /// A probe with `call_id` went to device `i`.
    pub fn sent(&mut self, i: usize, call_id: String, now: Instant) {
        let Some(d) = self.devices.get_mut(i) else {
            return;
        };
        d.pending = Some((now + self.policy.timeout, d.urgent));
        d.urgent = false;
        self.in_flight.insert(call_id, i);
    }

    /// Device `i` has no registered contact (never registered, expired, unregistered):
    /// unreachable at once.
    pub fn no_contact(&mut self, i: usize) {
        if let Some(d) = self.devices.get_mut(i) {
            d.urgent = false;
            d.missed = d.missed.max(self.policy.misses);
            Self::set(&mut self.changes, d, false);
        }
    }

    /// Any answer to a probe: the device is alive.
    pub fn answered(&mut self, call_id: &str) {
        let Some(i) = self.in_flight.remove(call_id) else {
            return;
        };
        let d = &mut self.devices[i];
        d.pending = None;
        d.missed = 0;
        Self::set(&mut self.changes, d, true);
    }

    /// An offer went to `user`'s device: probe it now; one miss makes it unreachable.
    pub fn offered(&mut self, user: &str, now: Instant) {
        if let Some(&i) = self.by_user.get(user) {
            let d = &mut self.devices[i];
            d.urgent = true;
            d.next_probe = d.next_probe.min(now);
            // A probe already in flight decides as well.
            if let Some((_, urgent)) = d.pending.as_mut() {
                *urgent = true;
            }
        }
    }

    /// Counts the probes whose answer did not come in time.
    pub fn handle_timeout(&mut self, now: Instant) {
        let mut expired = Vec::new();
        for (id, &i) in &self.in_flight {
            if self.devices[i].pending.is_some_and(|(at, _)| at <= now) {
                expired.push(id.clone());
            }
        }
        for id in expired {
            let Some(i) = self.in_flight.remove(&id) else {
                continue;
            };
            let d = &mut self.devices[i];
            let urgent = d.pending.take().is_some_and(|(_, u)| u);
            d.missed = d.missed.saturating_add(1);
            if urgent || d.missed >= self.policy.misses {
                Self::set(&mut self.changes, d, false);
            }
        }
    }

    /// When [`Qualify::handle_timeout`] or [`Qualify::poll_probe`] has work next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.devices
            .iter()
            .map(|d| match d.pending {
                Some((at, _)) => at,
                None => d.next_probe,
            })
            .min()
    }

    /// The next reachability change: (user, reachable).
    pub fn poll_change(&mut self) -> Option<(String, bool)> {
        self.changes.pop_front()
    }

    fn set(changes: &mut VecDeque<(String, bool)>, d: &mut Device, reachable: bool) {
        if d.reachable != reachable {
            d.reachable = reachable;
            changes.push_back((d.user.clone(), reachable));
        }
    }
}

/// Drives [`Qualify`]: sends the probes through the SIP core, hears their answers from
/// the dispatcher and the ACD's offers, tells the ACD who is (un)reachable. Ends with its
/// inbox, the ACD task or the SIP core.
pub(crate) async fn run(
    mut q: Qualify,
    sip: AppHandle,
    acd: mpsc::WeakSender<AcdInput>,
    mut inbox: mpsc::Receiver<QualifyInput>,
) {
    let mut seq: u64 = 0;
    let salt = std::process::id();
    loop {
        let now = tokio::time::Instant::now().into_std();
        q.handle_timeout(now);
        while let Some((i, user)) = q.poll_probe(now) {
            match sip.contact_for(&user).await {
                Ok(Some((uri, flow))) => {
                    seq += 1;
                    let call_id = format!("{PROBE_PREFIX}{salt:x}-{seq}@hotline");
                    let host = flow.local;
                    let text = format!(
                        "OPTIONS {uri} SIP/2.0\r\nFrom: <sip:hotline@{host}>;tag=q{seq}\r\nTo: <sip:{user}@{host}>\r\nCall-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nAccept: application/sdp\r\nContent-Length: 0\r\n\r\n"
                    );
                    let Some(req) = crate::call::own_request(&text) else {
                        // A contact we cannot write a request to is as good as none.
                        q.no_contact(i);
                        continue;
                    };
                    // A failed send counts like a contact we cannot reach; a core that is
                    // gone ends the loop at the next `contact_for`.
                    match sip.send_request(req, flow).await {
                        Ok(_) => q.sent(i, call_id, now),
                        Err(_) => q.no_contact(i),
                    }
                }
                Ok(None) => q.no_contact(i),
                Err(_) => return,
            }
        }
        while let Some((user, reachable)) = q.poll_change() {
            if reachable {
                tracing::info!(%user, "agent device answers again");
            } else {
                tracing::warn!(%user, "agent device unreachable: agent not ready");
            }
            // Weak: the ACD task ends with the switch, not with us.
            let Some(acd) = acd.upgrade() else {
                return;
            };
            if acd
                .send(AcdInput::Reachable { user, reachable })
                .await
                .is_err()
            {
                return;
            }
        }
        let wake = q
            .poll_timeout()
            .map(tokio::time::Instant::from_std)
            .unwrap_or_else(|| tokio::time::Instant::now() + Duration::from_secs(3600));
        tokio::select! {
            m = inbox.recv() => match m {
                None => return,
                Some(QualifyInput::Answered { call_id }) => q.answered(&call_id),
                Some(QualifyInput::Offered { user }) => {
                    q.offered(&user, tokio::time::Instant::now().into_std())
                }
            },
            _ = tokio::time::sleep_until(wake) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: Duration = Duration::from_millis(1);

    fn policy() -> QualifyPolicy {
        QualifyPolicy {
            interval: 1000 * MS,
            timeout: 200 * MS,
            misses: 2,
        }
    }

    /// Sends every due probe as `id-N`; returns the Call-IDs by user.
    fn probe_all(q: &mut Qualify, now: Instant, n: &mut u32) -> Vec<(String, String)> {
        let mut out = Vec::new();
        while let Some((i, user)) = q.poll_probe(now) {
            *n += 1;
            let id = format!("id-{n}");
            q.sent(i, id.clone(), now);
            out.push((user, id));
        }
        out
    }

    #[test]
    fn answering_devices_stay_reachable() {
        let t0 = Instant::now();
        let mut q = Qualify::new(policy(), ["bob".to_string()], t0);
        let mut n = 0;
        for k in 0..5 {
            let now = t0 + 1000 * MS * k;
            for (_, id) in probe_all(&mut q, now, &mut n) {
                q.answered(&id);
            }
            q.handle_timeout(now + 500 * MS);
        }
        assert_eq!(n, 5, "one probe per interval");
        assert_eq!(q.poll_change(), None);
    }

    #[test]
    fn misses_in_a_row_make_unreachable_and_an_answer_brings_back() {
        let t0 = Instant::now();
        let mut q = Qualify::new(policy(), ["bob".to_string()], t0);
        let mut n = 0;
        // First miss: still reachable.
        probe_all(&mut q, t0, &mut n);
        assert_eq!(q.poll_timeout(), Some(t0 + 200 * MS));
        q.handle_timeout(t0 + 200 * MS);
        assert_eq!(q.poll_change(), None);
        // The next probe is due an interval after the first was sent.
        assert_eq!(q.poll_timeout(), Some(t0 + 1000 * MS));
        assert!(q.poll_probe(t0 + 999 * MS).is_none());
        // Second miss: unreachable, once.
        probe_all(&mut q, t0 + 1000 * MS, &mut n);
        q.handle_timeout(t0 + 1200 * MS);
        assert_eq!(q.poll_change(), Some(("bob".into(), false)));
        q.handle_timeout(t0 + 1300 * MS);
        assert_eq!(q.poll_change(), None);
        // A late answer to an expired probe changes nothing.
        q.answered("id-2");
        assert_eq!(q.poll_change(), None);
        // It answers again.
        let ids = probe_all(&mut q, t0 + 2000 * MS, &mut n);
        q.answered(&ids[0].1);
        assert_eq!(q.poll_change(), Some(("bob".into(), true)));
    }

    #[test]
    fn an_offer_probes_at_once_and_one_miss_is_enough() {
        let t0 = Instant::now();
        let mut q = Qualify::new(policy(), ["bob".to_string()], t0);
        let mut n = 0;
        for (_, id) in probe_all(&mut q, t0, &mut n) {
            q.answered(&id);
        }
        // Offered 300 ms later: probed then, not at the next interval.
        let t = t0 + 300 * MS;
        q.offered("bob", t);
        assert_eq!(q.poll_timeout(), Some(t));
        assert_eq!(probe_all(&mut q, t, &mut n).len(), 1);
        q.handle_timeout(t + 200 * MS);
        assert_eq!(q.poll_change(), Some(("bob".into(), false)));
        // Unknown users are ignored.
        q.offered("nobody", t);
    }

    #[test]
    fn lost_registration_is_unreachable_at_once() {
        let t0 = Instant::now();
        let mut q = Qualify::new(policy(), ["bob".to_string(), "carol".to_string()], t0);
        // First probes are spread over the interval: bob now, carol half-way.
        let (i, user) = q.poll_probe(t0).unwrap();
        assert_eq!(user, "bob");
        assert!(q.poll_probe(t0).is_none());
        q.no_contact(i);
        assert_eq!(q.poll_change(), Some(("bob".into(), false)));
        let (_, user) = q.poll_probe(t0 + 500 * MS).unwrap();
        assert_eq!(user, "carol");
    }
}
