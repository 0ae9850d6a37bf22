//! Registrar and location service (RFC 3261 §10.3), sans-IO.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::flow::Flow;

/// One contact bound to an address-of-record.
#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    /// The contact URI as registered (without angle brackets).
    pub uri: String,
    pub expires_at: Instant,
    /// q-value in thousandths (1000 = 1.0), so bindings sort without floats.
    pub q: u16,
    pub call_id: String,
    pub cseq: u32,
    /// The flow the REGISTER came over: requests to this contact go back on it (NAT, TCP).
    pub flow: Flow,
}

/// A binding that appeared or went: published (through the server) so a call waiting for
/// an agent's phone learns of it at once instead of asking the registrar again and again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BindingEvent {
    pub aor: String,
    /// The contact URI as registered.
    pub uri: String,
    /// For [`BindingChange::Added`] the flow it is now reached on; for `Removed` the one it was.
    pub flow: Flow,
    pub change: BindingChange,
}

/// What happened to a binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingChange {
    /// New, or moved to another flow (a phone re-registering over a new connection).
    Added,
    /// Unregistered, expired, or its connection closed.
    Removed,
}

/// Events kept for [`Location::poll_event`] at most; older ones are dropped when nobody
/// polls (the server task polls after every input, so only a bare core fills this).
const MAX_EVENTS: usize = 1024;

/// Registrar limits.
#[derive(Debug, Clone, Copy)]
pub struct RegistrarConfig {
    pub min_expires: u32,
    pub max_expires: u32,
    pub default_expires: u32,
    pub max_contacts: usize,
}

impl Default for RegistrarConfig {
    fn default() -> Self {
        Self {
            min_expires: 60,
            max_expires: 7200,
            default_expires: 3600,
            max_contacts: 10,
        }
    }
}

/// One Contact of a REGISTER, already parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct ContactSpec {
    pub uri: String,
    pub expires: Option<u32>,
    pub q: Option<u16>,
}

/// The parts of a REGISTER the registrar needs.
#[derive(Debug, Clone, PartialEq)]
pub struct RegisterRequest {
    pub call_id: String,
    pub cseq: u32,
    /// `None` for `Contact: *`.
    pub contacts: Option<Vec<ContactSpec>>,
    pub expires_header: Option<u32>,
}

/// Why a REGISTER was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RegisterError {
    /// 423 with this Min-Expires.
    IntervalTooBrief(u32),
    /// 400 with this reason.
    Bad(&'static str),
    /// 500: out-of-order CSeq for the same Call-ID (§10.3 step 7).
    OutOfOrder,
    /// 403: more contacts than allowed.
    TooManyContacts,
}

/// Parses q-values like `0.5`, `1`, `0.125` into thousandths.
pub fn parse_q(s: &str) -> Option<u16> {
    let s = s.trim();
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if frac.len() > 3 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: u16 = match int {
        "0" => 0,
        "1" => 1,
        _ => return None,
    };
    let mut f = 0u16;
    for (i, b) in frac.bytes().enumerate() {
        f += u16::from(b - b'0') * [100, 10, 1][i];
    }
    let q = int * 1000 + f;
    (q <= 1000).then_some(q)
}

/// The location service: address-of-record → bindings.
#[derive(Debug, Default)]
pub struct Location {
    cfg: RegistrarConfig,
    aors: HashMap<String, Vec<Binding>>,
    events: VecDeque<BindingEvent>,
}

impl Location {
    pub fn new(cfg: RegistrarConfig) -> Self {
        Self {
            cfg,
            aors: HashMap::new(),
            events: VecDeque::new(),
        }
    }

    /// The next binding that appeared or went, oldest first.
    pub fn poll_event(&mut self) -> Option<BindingEvent> {
        self.events.pop_front()
    }

    fn publish(&mut self, aor: &str, b: &Binding, change: BindingChange) {
        if self.events.len() >= MAX_EVENTS {
            self.events.pop_front();
        }
        self.events.push_back(BindingEvent {
            aor: aor.to_string(),
            uri: b.uri.clone(),
            flow: b.flow,
            change,
        });
    }

    pub fn config(&self) -> &RegistrarConfig {
        &self.cfg
    }

    /// Applies a REGISTER for `aor` and returns the bindings now current.
    pub fn register(
        &mut self,
        aor: &str,
        req: &RegisterRequest,
        flow: Flow,
        now: Instant,
    ) -> Result<Vec<Binding>, RegisterError> {
        let before = self.aors.get(aor).cloned().unwrap_or_default();
        let result = self.apply(aor, req, flow, now);
        let after = self.aors.get(aor).cloned().unwrap_or_default();
        if after.is_empty() {
            self.aors.remove(aor);
        }
        let same = |a: &Binding, b: &Binding| a.uri.eq_ignore_ascii_case(&b.uri);
        for b in &before {
            if !after.iter().any(|a| same(a, b)) {
                self.publish(aor, b, BindingChange::Removed);
            }
        }
        for a in &after {
            if !before.iter().any(|b| same(a, b) && a.flow == b.flow) {
                self.publish(aor, a, BindingChange::Added);
            }
        }
        result
    }

    fn apply(
        &mut self,
        aor: &str,
        req: &RegisterRequest,
        flow: Flow,
        now: Instant,
    ) -> Result<Vec<Binding>, RegisterError> {
        let cfg = self.cfg;
        let current = self.aors.entry(aor.to_string()).or_default();
        current.retain(|b| b.expires_at > now);
        match &req.contacts {
            None => {
                // `Contact: *` is only valid with Expires: 0 (§10.3 step 6).
                if req.expires_header != Some(0) {
                    return Err(RegisterError::Bad("Wildcard Contact needs Expires: 0"));
                }
                if current
                    .iter()
                    .any(|b| b.call_id == req.call_id && b.cseq >= req.cseq)
                {
                    return Err(RegisterError::OutOfOrder);
                }
                current.clear();
            }
            Some(contacts) => {
                // Validate everything first so a refused REGISTER changes nothing.
                for c in contacts {
                    let e = c
                        .expires
                        .or(req.expires_header)
                        .unwrap_or(cfg.default_expires);
                    if e != 0 && e < cfg.min_expires {
                        return Err(RegisterError::IntervalTooBrief(cfg.min_expires));
                    }
                    if let Some(b) = current.iter().find(|b| b.uri.eq_ignore_ascii_case(&c.uri))
                        && b.call_id == req.call_id
                        && b.cseq >= req.cseq
                    {
                        return Err(RegisterError::OutOfOrder);
                    }
                }
                for c in contacts {
                    let e = c
                        .expires
                        .or(req.expires_header)
                        .unwrap_or(cfg.default_expires)
                        .min(cfg.max_expires);
                    let pos = current
                        .iter()
                        .position(|b| b.uri.eq_ignore_ascii_case(&c.uri));
                    match (pos, e) {
                        (Some(i), 0) => {
                            current.remove(i);
                        }
                        (None, 0) => {}
                        (Some(i), e) => {
                            let b = &mut current[i];
                            b.expires_at = now + Duration::from_secs(e.into());
                            b.q = c.q.unwrap_or(1000);
                            b.call_id.clone_from(&req.call_id);
                            b.cseq = req.cseq;
                            b.flow = flow;
                        }
                        (None, e) => {
                            if current.len() >= cfg.max_contacts {
                                return Err(RegisterError::TooManyContacts);
                            }
                            current.push(Binding {
                                uri: c.uri.clone(),
                                expires_at: now + Duration::from_secs(e.into()),
                                q: c.q.unwrap_or(1000),
                                call_id: req.call_id.clone(),
                                cseq: req.cseq,
                                flow,
                            });
                        }
                    }
                }
            }
        }
        Ok(current.clone())
    }

    /// Live bindings of `aor`, highest q first.
    pub fn lookup(&self, aor: &str, now: Instant) -> Vec<&Binding> {
        let mut v: Vec<&Binding> = self
            .aors
            .get(aor)
            .map(|bs| bs.iter().filter(|b| b.expires_at > now).collect())
            .unwrap_or_default();
        v.sort_by_key(|b| std::cmp::Reverse(b.q));
        v
    }

    /// Drops the bindings that live on the connection from `remote` (TLS, WS, WSS: Hotline
    /// cannot open those towards the phone, so once the connection closes the binding
    /// reaches nobody; a browser that reloads registers a new one). Returns how many.
    pub fn drop_connection(&mut self, remote: std::net::SocketAddr) -> usize {
        self.remove_where(|b| b.flow.remote == remote && b.flow.transport.connection_bound())
    }

    /// Drops expired bindings; returns how many were removed.
    pub fn purge(&mut self, now: Instant) -> usize {
        self.remove_where(|b| b.expires_at <= now)
    }

    /// Removes (and publishes) the bindings `gone` picks.
    fn remove_where(&mut self, gone: impl Fn(&Binding) -> bool) -> usize {
        let mut removed = Vec::new();
        self.aors.retain(|aor, bs| {
            bs.retain(|b| {
                let go = gone(b);
                if go {
                    removed.push((aor.clone(), b.clone()));
                }
                !go
            });
            !bs.is_empty()
        });
        for (aor, b) in &removed {
            self.publish(aor, b, BindingChange::Removed);
        }
        removed.len()
    }

    /// Number of AoRs with at least one binding.
    pub fn len(&self) -> usize {
        self.aors.len()
    }

    pub fn is_empty(&self) -> bool {
        self.aors.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::Transport;
    use std::net::SocketAddr;

    fn flow() -> Flow {
        Flow {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:40000".parse().unwrap(),
        }
    }

    fn reg(
        cseq: u32,
        contacts: &[(&str, Option<u32>, Option<u16>)],
        exp: Option<u32>,
    ) -> RegisterRequest {
        RegisterRequest {
            call_id: "c1".into(),
            cseq,
            contacts: Some(
                contacts
                    .iter()
                    .map(|(u, e, q)| ContactSpec {
                        uri: u.to_string(),
                        expires: *e,
                        q: *q,
                    })
                    .collect(),
            ),
            expires_header: exp,
        }
    }

    #[test]
    fn add_refresh_and_remove() {
        let mut l = Location::new(RegistrarConfig::default());
        let t0 = Instant::now();
        let b = l
            .register(
                "alice",
                &reg(1, &[("sip:a@1.2.3.4", None, None)], Some(600)),
                flow(),
                t0,
            )
            .unwrap();
        assert_eq!(b.len(), 1);
        assert_eq!(b[0].expires_at, t0 + Duration::from_secs(600));
        // Refresh with a later CSeq extends the binding.
        let t1 = t0 + Duration::from_secs(100);
        let b = l
            .register(
                "alice",
                &reg(2, &[("sip:a@1.2.3.4", None, None)], Some(600)),
                flow(),
                t1,
            )
            .unwrap();
        assert_eq!(b[0].expires_at, t1 + Duration::from_secs(600));
        // Expires 0 removes.
        let b = l
            .register(
                "alice",
                &reg(3, &[("sip:a@1.2.3.4", Some(0), None)], None),
                flow(),
                t1,
            )
            .unwrap();
        assert!(b.is_empty());
        assert!(l.lookup("alice", t1).is_empty());
    }

    #[test]
    fn too_brief_interval_is_423_and_changes_nothing() {
        let mut l = Location::new(RegistrarConfig::default());
        let t0 = Instant::now();
        assert_eq!(
            l.register(
                "a",
                &reg(1, &[("sip:x@h", Some(10), None)], None),
                flow(),
                t0
            ),
            Err(RegisterError::IntervalTooBrief(60))
        );
        assert!(l.is_empty());
    }

    #[test]
    fn several_contacts_sorted_by_q_and_expiry_is_clamped() {
        let mut l = Location::new(RegistrarConfig::default());
        let t0 = Instant::now();
        l.register(
            "a",
            &reg(
                1,
                &[
                    ("sip:low@h", None, Some(100)),
                    ("sip:high@h", Some(99999), Some(900)),
                ],
                Some(120),
            ),
            flow(),
            t0,
        )
        .unwrap();
        let v = l.lookup("a", t0);
        assert_eq!(v[0].uri, "sip:high@h");
        assert_eq!(v[0].expires_at, t0 + Duration::from_secs(7200));
        assert_eq!(v[1].uri, "sip:low@h");
        assert_eq!(v[1].expires_at, t0 + Duration::from_secs(120));
    }

    #[test]
    fn wildcard_removes_all_only_with_expires_zero() {
        let mut l = Location::new(RegistrarConfig::default());
        let t0 = Instant::now();
        l.register(
            "a",
            &reg(1, &[("sip:1@h", None, None), ("sip:2@h", None, None)], None),
            flow(),
            t0,
        )
        .unwrap();
        let mut star = RegisterRequest {
            call_id: "c2".into(),
            cseq: 1,
            contacts: None,
            expires_header: Some(60),
        };
        assert!(matches!(
            l.register("a", &star, flow(), t0),
            Err(RegisterError::Bad(_))
        ));
        star.expires_header = Some(0);
        assert_eq!(l.register("a", &star, flow(), t0), Ok(vec![]));
        assert!(l.lookup("a", t0).is_empty());
    }

    #[test]
    fn stale_cseq_for_same_call_id_is_rejected() {
        let mut l = Location::new(RegistrarConfig::default());
        let t0 = Instant::now();
        l.register("a", &reg(5, &[("sip:1@h", None, None)], None), flow(), t0)
            .unwrap();
        assert_eq!(
            l.register("a", &reg(5, &[("sip:1@h", None, None)], None), flow(), t0),
            Err(RegisterError::OutOfOrder)
        );
    }

    #[test]
    fn bindings_expire_and_purge_removes_them() {
        let mut l = Location::new(RegistrarConfig::default());
        let t0 = Instant::now();
        l.register(
            "a",
            &reg(1, &[("sip:1@h", Some(60), None)], None),
            flow(),
            t0,
        )
        .unwrap();
        let later = t0 + Duration::from_secs(61);
        assert!(l.lookup("a", later).is_empty());
        assert_eq!(l.purge(later), 1);
        assert!(l.is_empty());
    }

    #[test]
    fn a_closed_websocket_connection_drops_its_bindings_only() {
        let mut l = Location::new(RegistrarConfig::default());
        let t0 = Instant::now();
        let ws = |port| Flow {
            transport: Transport::Ws,
            local: "127.0.0.1:8088".parse().unwrap(),
            remote: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let udp = Flow {
            remote: SocketAddr::from(([127, 0, 0, 1], 40000)),
            ..flow()
        };
        l.register(
            "a",
            &reg(1, &[("sip:a@x.invalid;transport=ws", None, None)], None),
            ws(40000),
            t0,
        )
        .unwrap();
        l.register(
            "b",
            &reg(1, &[("sip:b@y.invalid;transport=ws", None, None)], None),
            ws(40001),
            t0,
        )
        .unwrap();
        l.register(
            "c",
            &reg(1, &[("sip:c@10.0.0.3", None, None)], None),
            udp,
            t0,
        )
        .unwrap();
        // UDP from the same address and port is no connection: it stays.
        assert_eq!(
            l.drop_connection(SocketAddr::from(([127, 0, 0, 1], 40000))),
            1
        );
        assert!(l.lookup("a", t0).is_empty());
        assert_eq!(l.lookup("b", t0).len(), 1);
        assert_eq!(l.lookup("c", t0).len(), 1);
        assert_eq!(
            l.drop_connection(SocketAddr::from(([127, 0, 0, 1], 40000))),
            0
        );
    }

    /// Every way a binding comes or goes is published once: register, a refresh on a new
    /// connection (moved), a refresh on the same one (nothing), the connection closing,
    /// unregister and expiry.
    #[test]
    fn binding_changes_are_published() {
        let mut l = Location::new(RegistrarConfig::default());
        let t0 = Instant::now();
        let ws = |port| Flow {
            transport: Transport::Ws,
            local: "127.0.0.1:8088".parse().unwrap(),
            remote: SocketAddr::from(([127, 0, 0, 1], port)),
        };
        let events = |l: &mut Location| {
            std::iter::from_fn(|| l.poll_event())
                .map(|e| (e.aor, e.uri, e.flow.remote.port(), e.change))
                .collect::<Vec<_>>()
        };
        let phone = "sip:k3@x.invalid;transport=ws";
        l.register("a", &reg(1, &[(phone, None, None)], None), ws(40000), t0)
            .unwrap();
        let added = |port| {
            (
                "a".to_string(),
                phone.to_string(),
                port,
                BindingChange::Added,
            )
        };
        let removed = |port| {
            (
                "a".to_string(),
                phone.to_string(),
                port,
                BindingChange::Removed,
            )
        };
        assert_eq!(events(&mut l), vec![added(40000)]);
        l.register("a", &reg(2, &[(phone, None, None)], None), ws(40000), t0)
            .unwrap();
        assert_eq!(events(&mut l), vec![], "a refresh changes nothing");
        l.register("a", &reg(3, &[(phone, None, None)], None), ws(40001), t0)
            .unwrap();
        assert_eq!(
            events(&mut l),
            vec![added(40001)],
            "moved to a new connection"
        );
        assert_eq!(
            l.drop_connection(SocketAddr::from(([127, 0, 0, 1], 40000))),
            0
        );
        assert_eq!(events(&mut l), vec![], "the old connection holds nothing");
        assert_eq!(
            l.drop_connection(SocketAddr::from(([127, 0, 0, 1], 40001))),
            1
        );
        assert_eq!(events(&mut l), vec![removed(40001)]);
        l.register(
            "a",
            &reg(4, &[(phone, Some(60), None)], None),
            ws(40002),
            t0,
        )
        .unwrap();
        l.register("a", &reg(5, &[(phone, Some(0), None)], None), ws(40002), t0)
            .unwrap();
        assert_eq!(events(&mut l), vec![added(40002), removed(40002)]);
        l.register(
            "a",
            &reg(6, &[(phone, Some(60), None)], None),
            ws(40003),
            t0,
        )
        .unwrap();
        events(&mut l);
        assert_eq!(l.purge(t0 + Duration::from_secs(61)), 1);
        assert_eq!(events(&mut l), vec![removed(40003)]);
    }

    #[test]
    fn max_contacts_enforced() {
        let mut l = Location::new(RegistrarConfig {
            max_contacts: 1,
            ..Default::default()
        });
        let t0 = Instant::now();
        assert_eq!(
            l.register(
                "a",
                &reg(1, &[("sip:1@h", None, None), ("sip:2@h", None, None)], None),
                flow(),
                t0
            ),
            Err(RegisterError::TooManyContacts)
        );
    }

    #[test]
    fn q_values_parse() {
        assert_eq!(parse_q("1"), Some(1000));
        assert_eq!(parse_q("0.5"), Some(500));
        assert_eq!(parse_q("0.125"), Some(125));
        assert_eq!(parse_q("1.0"), Some(1000));
        assert_eq!(parse_q("1.5"), None);
        assert_eq!(parse_q("0.1234"), None);
        assert_eq!(parse_q("x"), None);
    }
}
