//! The SIP server core: registrar, digest auth, OPTIONS and a transaction-stateful proxy
//! (RFC 3261 §16), sans-IO.
//!
//! Feed it datagrams/stream frames with [`Core::handle_input`], fire timers with
//! [`Core::handle_timeout`] at [`Core::poll_timeout`], and send what
//! [`Core::poll_transmit`] returns. It owns all SIP state; nothing in here locks or reads
//! the clock, so one task can own it and tests can drive it with a fake clock.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap, HashSet, VecDeque};
use std::hash::{Hash, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::app::{AppEvent, AppResponse, ClientTxId, ServerTxId};
use crate::auth::{Algorithm, Authenticator, NonceStore, Verdict};
use crate::flow::{Flow, Transmit, Transport};
use crate::guard::{Admit, Guard, GuardConfig};
use crate::msg::{self, Header, Limits, Method, Request, Response, SipMessage};
use crate::registrar::{
    ContactSpec, Location, RegisterError, RegisterRequest, RegistrarConfig, parse_q,
};
use crate::transaction::{
    ClientAction, ClientEvent, ClientState, ClientTx, ServerEvent, ServerState, ServerTx,
    TimerConfig,
};
use crate::{Cidr, Error};

/// Our branch prefix: the magic cookie plus a marker so we recognise our own Via hops.
const BRANCH_PREFIX: &str = "z9hG4bK-hl";
/// The mark of Hotline's own INVITE calling a reloaded desk page back into its call: the
/// page answers such an INVITE by itself, so no relayed request may carry it.
pub const REJOIN_HEADER: &str = "X-Hotline-Rejoin";
const ALLOW: &str = "Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER, MESSAGE, INFO, UPDATE, REFER, NOTIFY, SUBSCRIBE, PRACK";

/// Where a static route (trunk) or a resolved URI points.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Target {
    pub transport: Transport,
    pub addr: SocketAddr,
}

/// Configuration of the core.
#[derive(Debug, Clone)]
pub struct CoreConfig {
    /// Host names that mean "this server" in Request-URIs and Routes (besides our
    /// listen addresses).
    pub domains: Vec<String>,
    pub realm: String,
    /// user → password.
    pub users: HashMap<String, String>,
    pub algorithms: Vec<Algorithm>,
    pub nonce_ttl: Duration,
    /// Secret for nonce generation (fill from the OS RNG).
    pub secret: [u8; 32],
    /// Sources that skip digest authentication.
    pub trusted: Vec<Cidr>,
    /// Requests for users we do not know go here (a trunk).
    pub static_route: Option<Target>,
    pub registrar: RegistrarConfig,
    pub timers: TimerConfig,
    pub limits: Limits,
    /// Challenge out-of-dialog requests (INVITE, MESSAGE, …) from untrusted sources (407).
    pub authenticate_requests: bool,
    /// Admission control: above this many live server transactions new requests get a
    /// stateless 503 before any state is created.
    pub max_transactions: usize,
    /// Request-URI users (dialled numbers) handed to the application instead of being
    /// proxied (see [`crate::app`]). Empty: no application, a pure proxy.
    pub numbers: HashSet<String>,
    /// Flood, brute-force and scanner defence (see [`crate::guard`]).
    pub guard: GuardConfig,
}

impl Default for CoreConfig {
    fn default() -> Self {
        Self {
            domains: vec![],
            realm: "hotline".into(),
            users: HashMap::new(),
            algorithms: vec![Algorithm::Sha256, Algorithm::Md5],
            nonce_ttl: Duration::from_secs(300),
            secret: [0; 32],
            trusted: vec![],
            static_route: None,
            registrar: RegistrarConfig::default(),
            timers: TimerConfig::default(),
            limits: Limits::default(),
            authenticate_requests: true,
            max_transactions: 500_000,
            numbers: HashSet::new(),
            guard: GuardConfig::default(),
        }
    }
}

/// Counters readable from other tasks (relaxed atomics: statistics, not synchronisation).
#[derive(Debug, Default)]
pub struct Counters {
    pub received: AtomicU64,
    pub malformed: AtomicU64,
    /// Malformed messages no response could be formed for.
    pub dropped: AtomicU64,
    pub retransmissions_absorbed: AtomicU64,
    pub forwarded: AtomicU64,
    pub registered: AtomicU64,
    /// Requests refused with 503 by admission control.
    pub overloaded: AtomicU64,
    /// Sources blocked for flooding (once per block).
    pub flood_blocked: AtomicU64,
    /// Requests dropped because their source was blocked or locked out.
    pub guard_dropped: AtomicU64,
    /// Sources locked out after repeated digest failures.
    pub lockouts: AtomicU64,
    /// Requests dropped for a scanner User-Agent.
    pub scanners_dropped: AtomicU64,
    /// Stream connections (TCP, TLS, WS, WSS) closed at accept: blocked source, or over
    /// the per-source or total connection cap.
    pub refused_at_accept: AtomicU64,
    /// TLS handshakes that failed or timed out (SIP/TLS and WSS).
    pub tls_handshake_failed: AtomicU64,
    /// WebSocket upgrades refused or failed (no `sip` subprotocol, bad Origin, not HTTP).
    pub ws_handshake_failed: AtomicU64,
    /// WebSocket connections closed for a frame or message above the size limit.
    pub ws_oversize: AtomicU64,
    /// Certificate reloads that took effect.
    pub tls_reloads: AtomicU64,
    /// Certificate reloads that failed (the previous certificate stays in use).
    pub tls_reload_failed: AtomicU64,
    /// Messages for a TLS or WebSocket flow that is no longer open (Hotline does not dial
    /// those out).
    pub no_flow: AtomicU64,
}

impl Counters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }

    pub fn get(c: &AtomicU64) -> u64 {
        c.load(Ordering::Relaxed)
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum TimerRef {
    Server(u64),
    Client(u64),
    /// Retransmission of an application's 2xx to INVITE (server transaction id).
    Answer(u64),
    Purge,
}

struct ServerEntry {
    tx: ServerTx,
    key: String,
    /// Where responses go (§18.2.2, RFC 3581).
    flow: Flow,
    /// Via/From/Call-ID/CSeq lines of the request, for responses we make up later.
    head: Vec<u8>,
    to: String,
    client: Option<u64>,
    armed: Option<Instant>,
    /// Owned by the application: (Call-ID, CSeq number), for matching the 2xx's ACK.
    app: Option<Box<(String, u32)>>,
}

impl ServerEntry {
    /// After a final response the request head is never needed again; a UDP transaction
    /// lives on for 32 s (Timer J), so free it now.
    fn release_head(&mut self) {
        self.head = Vec::new();
        self.to = String::new();
    }
}

struct ClientEntry {
    tx: ClientTx,
    flow: Flow,
    server: Option<u64>,
    cancel: Option<ClientTx>,
    cancel_pending: bool,
    armed: Option<Instant>,
    /// Started by the application: responses go up as events.
    app: bool,
    /// A proxied initial INVITE: its 2xx establishes a dialog the application hears of.
    dialog: bool,
}

/// An application's 2xx to INVITE, retransmitted until its ACK (§13.3.1.4).
struct Answer {
    call_id: String,
    cseq: u32,
    data: Bytes,
    flow: Flow,
    interval: Duration,
    give_up: Instant,
}

/// The sans-IO server core.
pub struct Core {
    cfg: CoreConfig,
    /// Our listen addresses.
    locals: Vec<(Transport, SocketAddr)>,
    auth: Authenticator,
    guard: Guard,
    location: Location,
    /// Boxed so that the map's buckets stay small (cheap to pre-size and to rehash).
    servers: HashMap<u64, Box<ServerEntry>>,
    server_index: HashMap<String, u64>,
    clients: HashMap<u64, Box<ClientEntry>>,
    next_id: u64,
    timers: BinaryHeap<Reverse<(Instant, TimerRef)>>,
    out: VecDeque<Transmit>,
    counters: Arc<Counters>,
    app_events: VecDeque<AppEvent>,
    /// Call-IDs of dialogs the application owns: their in-dialog requests go up.
    app_dialogs: HashSet<String>,
    answers: HashMap<u64, Answer>,
    /// Phone-to-phone dialogs we carry, reported to the application as they start/end.
    proxied: crate::proxied::ProxiedDialogs,
    /// Sources blocked or locked out since the IO layer last asked (it closes their
    /// stream connections).
    newly_blocked: VecDeque<IpAddr>,
    /// Every new INVITE goes to the application ([`Core::set_draining`]).
    draining: bool,
    /// An application takes calls ([`Core::set_gateway_browsers`]).
    gateway_browsers: bool,
}

/// Outcome of routing a request.
enum Route {
    Forward { dest: Flow, ruri: Option<String> },
    Respond(u16, &'static str),
}

impl Core {
    /// Replaces the set of numbers delivered to the application (live routing edits):
    /// requests already delivered keep their transactions.
    pub fn set_numbers(&mut self, numbers: HashSet<String>) {
        self.cfg.numbers = numbers;
    }

    /// Draining (SIGTERM): every new INVITE goes to the application, phone-to-phone calls
    /// included, so it refuses them all the same way and records each refusal.
    pub fn set_draining(&mut self, on: bool) {
        self.draining = on;
    }

    /// A browser's INVITE (a DTLS-SRTP offer) to a registered user whose phone is not a
    /// browser goes to the application, whose WebRTC gateway answers it and calls the
    /// user with plain RTP: proxied, the browser's SDP would reach a phone that cannot use
    /// it. Set by the server when it runs with an application.
    pub fn set_gateway_browsers(&mut self, on: bool) {
        self.gateway_browsers = on;
    }

    /// Whether `req` is a browser calling a user of ours who is on a plain SIP phone.
    fn browser_to_phone(&self, req: &Request, now: Instant) -> bool {
        if !self.gateway_browsers || req.method != Method::Invite || !is_webrtc_offer(&req.body) {
            return false;
        }
        let Some(user) = req.uri.user() else {
            return false;
        };
        self.location.lookup(user, now).first().is_some_and(|b| {
            !matches!(b.flow.transport, Transport::Ws | Transport::Wss)
                && !matches!(
                    msg::param(&b.uri, "transport"),
                    Some(t) if t.eq_ignore_ascii_case("ws") || t.eq_ignore_ascii_case("wss")
                )
        })
    }

    pub fn new(cfg: CoreConfig, locals: Vec<(Transport, SocketAddr)>, now: Instant) -> Self {
        let auth = Authenticator::new(
            cfg.realm.clone(),
            cfg.users.clone(),
            cfg.algorithms.clone(),
            NonceStore::new(cfg.secret, cfg.nonce_ttl, 100_000),
        );
        let guard = Guard::new(cfg.guard.clone(), &cfg.trusted, now);
        let location = Location::new(cfg.registrar);
        let cap = cfg.max_transactions.min(1 << 18);
        let mut core = Self {
            cfg,
            locals,
            auth,
            guard,
            location,
            // Pre-sized: growing a map of 100k transactions rehashes everything at once,
            // a stall long enough (seen in the benchmark) for UDP peers to retransmit.
            servers: HashMap::with_capacity(cap),
            server_index: HashMap::with_capacity(cap),
            clients: HashMap::with_capacity(cap),
            next_id: 1,
            timers: BinaryHeap::new(),
            out: VecDeque::new(),
            counters: Arc::new(Counters::default()),
            app_events: VecDeque::new(),
            app_dialogs: HashSet::new(),
            answers: HashMap::new(),
            proxied: crate::proxied::ProxiedDialogs::new(cap),
            newly_blocked: VecDeque::new(),
            draining: false,
            gateway_browsers: false,
        };
        core.timers
            .push(Reverse((now + Duration::from_secs(30), TimerRef::Purge)));
        core
    }

    pub fn counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    pub fn location(&self) -> &Location {
        &self.location
    }

    /// Number of live transactions (server, client).
    pub fn transactions(&self) -> (usize, usize) {
        (self.servers.len(), self.clients.len())
    }

    /// Next message to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        let t = self.out.pop_front()?;
        crate::wire_metrics::count(crate::wire_metrics::Direction::Out, &t.data);
        Some(t)
    }

    /// A source the guard has just blocked or locked out: the IO layer closes the stream
    /// connections it holds (new ones are refused at accept while the block lasts).
    pub fn poll_blocked(&mut self) -> Option<IpAddr> {
        self.newly_blocked.pop_front()
    }

    /// When [`Core::handle_timeout`] must be called next.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.peek().map(|Reverse((t, _))| *t)
    }

    fn send(&mut self, flow: Flow, data: impl Into<Bytes>) {
        self.out.push_back(Transmit {
            flow,
            data: data.into(),
        });
    }

    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    /// One complete message (a UDP datagram or a framed TCP message) from `flow`.
    pub fn handle_input(&mut self, flow: Flow, data: &[u8], now: Instant) {
        Counters::inc(&self.counters.received);
        crate::wire_metrics::count(crate::wire_metrics::Direction::In, data);
        if data
            .iter()
            .all(|b| matches!(b, b'\r' | b'\n' | b' ' | b'\t' | 0))
        {
            return; // keepalive (RFC 5626 CRLF) or padding
        }
        // Requests are metered before parsing: a flood costs no parse and no state.
        if !data.starts_with(b"SIP/") {
            match self.guard.admit(flow.remote.ip(), now) {
                Admit::Pass => {}
                Admit::Drop => {
                    Counters::inc(&self.counters.guard_dropped);
                    return;
                }
                Admit::Blocked => {
                    self.newly_blocked.push_back(flow.remote.ip());
                    Counters::inc(&self.counters.flood_blocked);
                    Counters::inc(&self.counters.guard_dropped);
                    tracing::warn!(source = %flow.remote.ip(), "request flood: source blocked");
                    return;
                }
            }
        }
        match msg::parse(data, &self.cfg.limits, flow.transport.message_framed()) {
            Ok(SipMessage::Request(req)) => self.handle_request(flow, req, now),
            Ok(SipMessage::Response(resp)) => self.handle_response(resp, now),
            Err(e) => {
                Counters::inc(&self.counters.malformed);
                let (code, reason) = match &e {
                    Error::TooLarge(_) => (513, "Message Too Large".to_string()),
                    Error::UnsupportedMethod(_) => (501, "Not Implemented".to_string()),
                    _ if unsupported_scheme(data) => (416, "Unsupported URI Scheme".to_string()),
                    _ => (400, e.to_string()),
                };
                tracing::debug!(remote = %flow.remote, %reason, "malformed message");
                match msg::raw_error_response(data, code, &reason) {
                    Some(resp) => {
                        let dest = Flow {
                            remote: flow.remote,
                            ..flow
                        };
                        self.send(dest, resp);
                    }
                    None => Counters::inc(&self.counters.dropped),
                }
            }
        }
    }

    /// Whether the guard blocks `ip` now (flood or digest lockout): stream transports ask
    /// this at accept, before reading a byte.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        !self.is_trusted(ip) && self.guard.is_blocked(ip, now)
    }

    /// Whether `ip` is in a trusted network (exempt from connection caps too).
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.cfg.trusted.iter().any(|c| c.contains(ip))
    }

    /// Is `host[:port]` (from a URI) this server?
    fn is_us(&self, host: &str, port: Option<u16>) -> bool {
        if self
            .cfg
            .domains
            .iter()
            .any(|d| d.eq_ignore_ascii_case(host))
        {
            return true;
        }
        let Ok(ip) = host.parse::<IpAddr>() else {
            return false;
        };
        let port = port.unwrap_or(5060);
        self.locals
            .iter()
            .any(|(_, a)| a.port() == port && (a.ip() == ip || a.ip().is_unspecified()))
    }

    fn uri_is_us(&self, uri: &str) -> bool {
        match msg::uri_hostport(uri) {
            Some((host, port)) => {
                let sips = uri
                    .get(..5)
                    .is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
                self.is_us(host, port.or(sips.then_some(5061)))
            }
            None => false,
        }
    }

    /// Host text to put in our Via / Record-Route for a local address.
    fn advertised(&self, local: SocketAddr) -> String {
        if local.ip().is_unspecified() {
            let host = self
                .cfg
                .domains
                .first()
                .map(String::as_str)
                .unwrap_or("127.0.0.1");
            return format!("{host}:{}", local.port());
        }
        local.to_string()
    }

    fn local_for(&self, transport: Transport, remote: SocketAddr) -> Option<SocketAddr> {
        self.locals
            .iter()
            .filter(|(t, _)| *t == transport)
            .map(|(_, a)| *a)
            .find(|a| a.is_ipv4() == remote.is_ipv4())
    }

    fn flow_to(&self, target: Target) -> Option<Flow> {
        Some(Flow {
            transport: target.transport,
            local: self.local_for(target.transport, target.addr)?,
            remote: target.addr,
        })
    }

    fn respond_stateless(
        &mut self,
        flow: Flow,
        req: &Request,
        code: u16,
        reason: &str,
        extra: &[&str],
    ) {
        let tag = (code > 100).then(|| self.new_tag());
        let resp = msg::build_response(req, code, reason, tag.as_deref(), extra);
        self.send(response_flow(flow, req), resp);
    }

    fn new_tag(&mut self) -> String {
        let id = self.id();
        format!("hl{id:x}")
    }

    fn handle_request(&mut self, flow: Flow, mut req: Request, now: Instant) {
        if let Some(ua) = msg::find(&req.headers, |h| matches!(h, Header::UserAgent(_)))
            && self.guard.is_scanner(ua)
        {
            Counters::inc(&self.counters.scanners_dropped);
            tracing::debug!(source = %flow.remote, user_agent = ua, "scanner dropped");
            return;
        }
        msg::stamp_received(&mut req, flow.remote);
        let Some(key) = server_key(&req) else {
            self.respond_stateless(flow, &req, 400, "Invalid Via", &[]);
            return;
        };
        if req.method == Method::Ack {
            let invite_key = key.replacen("|ACK", "|INVITE", 1);
            if let Some(&id) = self.server_index.get(&invite_key)
                && let Some(e) = self.servers.get_mut(&id)
                && e.tx.handle_ack(now)
            {
                Counters::inc(&self.counters.retransmissions_absorbed);
                self.rearm_server(id);
                return;
            }
            if let Some(call_id) = msg::call_id(&req.headers)
                && self.app_dialogs.contains(call_id)
            {
                let cseq = msg::cseq(&req.headers).map(|c| c.0);
                let call_id = call_id.to_string();
                self.answers
                    .retain(|_, a| !(a.call_id == call_id && Some(a.cseq) == cseq));
                self.app_events.push_back(AppEvent::Ack {
                    request: Box::new(req),
                    flow,
                });
                return;
            }
            // ACK for a 2xx: end to end, forwarded without a transaction.
            self.route_and_forward(flow, req, None, now);
            return;
        }
        if let Some(&id) = self.server_index.get(&key) {
            Counters::inc(&self.counters.retransmissions_absorbed);
            if let Some(e) = self.servers.get(&id)
                && let Some(resp) = e.tx.handle_retransmission()
            {
                let f = e.flow;
                self.send(f, resp);
            }
            return;
        }
        if self.servers.len() >= self.cfg.max_transactions {
            Counters::inc(&self.counters.overloaded);
            self.respond_stateless(flow, &req, 503, "Service Unavailable", &["Retry-After: 5"]);
            return;
        }
        if req.method == Method::Cancel {
            self.handle_cancel(flow, &req, &key, now);
            return;
        }
        let to_tag = msg::to_value(&req.headers).and_then(msg::tag).is_some();
        if to_tag && msg::call_id(&req.headers).is_some_and(|c| self.app_dialogs.contains(c)) {
            self.deliver(flow, req, key, now);
            return;
        }
        let ruri = req.uri.to_string();
        if !["sip:", "sips:", "tel:"].iter().any(|s| {
            ruri.len() > s.len()
                && ruri
                    .get(..s.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(s))
        }) {
            let st = self.local_server_tx(flow, &req, key);
            self.reply(st, &req, 416, "Unsupported URI Scheme", &[], now);
            return;
        }
        let ruri_is_us = self.uri_is_us(&ruri);
        let has_route = req.headers.iter().any(|h| matches!(h, Header::Route(_)));
        // We are the registrar for every domain we serve: REGISTER is never proxied.
        if req.method == Method::Register {
            self.handle_register(flow, &req, key, now);
            return;
        }
        if !has_route && ruri_is_us && !to_tag {
            match req.method {
                Method::Options if req.uri.user().is_none() => {
                    let st = self.local_server_tx(flow, &req, key);
                    self.reply(
                        st,
                        &req,
                        200,
                        "OK",
                        &[ALLOW, "Accept: application/sdp"],
                        now,
                    );
                    return;
                }
                _ if req.uri.user().is_none() => {
                    let st = self.local_server_tx(flow, &req, key);
                    self.reply(st, &req, 405, "Method Not Allowed", &[ALLOW], now);
                    return;
                }
                _ => {}
            }
        }
        // Out-of-dialog requests from untrusted sources must authenticate (407).
        if self.cfg.authenticate_requests && !to_tag && !self.is_trusted(flow.remote.ip()) {
            let cred = msg::find(&req.headers, |h| matches!(h, Header::ProxyAuthorization(_)));
            let method = req.method.to_string();
            match self.auth.verify(&method, cred, now) {
                // Credentials only count for the identity they belong to: no calling as
                // someone else with your own password.
                Verdict::Ok(user)
                    if msg::from_value(&req.headers).and_then(|f| uri_user(msg::addr_uri(f)))
                        != Some(user.as_str()) =>
                {
                    let st = self.local_server_tx(flow, &req, key);
                    self.reply(
                        st,
                        &req,
                        403,
                        "Forbidden: From is not the authenticated user",
                        &[],
                        now,
                    );
                    return;
                }
                Verdict::Ok(_) => {}
                Verdict::Challenge { stale } => {
                    let lines = self.auth.challenge(true, stale, now);
                    let extra: Vec<&str> = lines.iter().map(String::as_str).collect();
                    let st = self.local_server_tx(flow, &req, key);
                    self.reply(st, &req, 407, "Proxy Authentication Required", &extra, now);
                    return;
                }
                Verdict::Forbidden => {
                    self.auth_failed(flow, cred, now);
                    let st = self.local_server_tx(flow, &req, key);
                    self.reply(st, &req, 403, "Forbidden", &[], now);
                    return;
                }
            }
        }
        let number = !has_route
            && ruri_is_us
            && (req.uri.user().is_some_and(|u| self.cfg.numbers.contains(u))
                || self.browser_to_phone(&req, now));
        if !to_tag && (number || (self.draining && req.method == Method::Invite)) {
            self.deliver(flow, req, key, now);
            return;
        }
        if req.method == Method::Bye
            && let Some(ev) = msg::call_id(&req.headers).and_then(|c| self.proxied.ended(c))
        {
            self.app_events.push_back(ev);
        }
        self.route_and_forward(flow, req, Some(key), now);
    }

    /// Hands a request to the application on a new server transaction.
    fn deliver(&mut self, flow: Flow, req: Request, key: String, now: Instant) {
        let invite = req.method == Method::Invite;
        let sid = self.new_server(flow, &req, key, invite);
        let call_id = msg::call_id(&req.headers).unwrap_or_default().to_string();
        let cseq = msg::cseq(&req.headers).map(|c| c.0).unwrap_or(0);
        if let Some(e) = self.servers.get_mut(&sid) {
            e.app = Some(Box::new((call_id.clone(), cseq)));
        }
        if invite {
            self.app_dialogs.insert(call_id);
            // At once, so the caller stops retransmitting while the application decides.
            self.reply_late(sid, 100, "Trying", now);
        }
        let local = self.advertised(flow.local);
        self.app_events.push_back(AppEvent::Request {
            tx: ServerTxId(sid),
            request: Box::new(req),
            flow,
            local,
        });
    }

    /// Next event for the application.
    pub fn poll_app_event(&mut self) -> Option<AppEvent> {
        self.app_events.pop_front()
    }

    /// Number of dialogs the application owns (calls not yet forgotten).
    pub fn app_dialogs(&self) -> usize {
        self.app_dialogs.len()
    }

    /// The application is done with a dialog: its requests are no longer delivered, and a
    /// pending 2xx retransmission stops.
    pub fn forget_dialog(&mut self, call_id: &str) {
        self.app_dialogs.remove(call_id);
        self.answers.retain(|_, a| a.call_id != call_id);
    }

    /// Answers application transaction `tx`.
    pub fn respond(
        &mut self,
        tx: ServerTxId,
        resp: AppResponse,
        now: Instant,
    ) -> Result<(), Error> {
        let id = tx.0;
        let t1 = self.cfg.timers.t1;
        let t64 = self.cfg.timers.t1 * 64;
        let Some(e) = self.servers.get_mut(&id) else {
            return Err(Error::UnknownTransaction);
        };
        let Some(app) = e.app.as_deref().cloned() else {
            return Err(Error::UnknownTransaction);
        };
        if e.tx.last_status() >= 200 {
            return Err(Error::UnknownTransaction); // answered already (e.g. cancelled: 487)
        }
        let code = resp.status;
        let mut out = Vec::with_capacity(e.head.len() + 300);
        out.extend_from_slice(
            format!(
                "SIP/2.0 {code} {}\r\n",
                resp.reason.replace(['\r', '\n'], " ")
            )
            .as_bytes(),
        );
        out.extend_from_slice(&e.head);
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(e.to.as_bytes());
        if code > 100 && msg::tag(&e.to).is_none() {
            let tag = resp.to_tag.unwrap_or_else(|| format!("hl{id:x}"));
            out.extend_from_slice(format!(";tag={tag}").as_bytes());
        }
        out.extend_from_slice(b"\r\n");
        for h in &resp.headers {
            out.extend_from_slice(h.as_bytes());
            out.extend_from_slice(b"\r\n");
        }
        out.extend_from_slice(b"Server: Hotline\r\n");
        match &resp.body {
            Some((ct, body)) => {
                out.extend_from_slice(
                    format!(
                        "Content-Type: {ct}\r\nContent-Length: {}\r\n\r\n",
                        body.len()
                    )
                    .as_bytes(),
                );
                out.extend_from_slice(body);
            }
            None => out.extend_from_slice(b"Content-Length: 0\r\n\r\n"),
        }
        let data = Bytes::from(out);
        let invite = e.tx.is_invite();
        let sent = e.tx.send_response(code, data.clone(), now);
        if code >= 200 {
            e.release_head();
        }
        let f = e.flow;
        if sent {
            self.send(f, data.clone());
            if invite && (200..300).contains(&code) && !f.transport.reliable() {
                self.answers.insert(
                    id,
                    Answer {
                        call_id: app.0,
                        cseq: app.1,
                        data,
                        flow: f,
                        interval: t1,
                        give_up: now + t64,
                    },
                );
                self.timers.push(Reverse((now + t1, TimerRef::Answer(id))));
            }
        }
        self.rearm_server(id);
        Ok(())
    }

    /// A stream connection from `remote` closed: its TLS/WS bindings go (a browser's
    /// `*.invalid` contact reaches nobody once its WebSocket is gone).
    pub fn connection_closed(&mut self, remote: SocketAddr) {
        let n = self.location.drop_connection(remote);
        if n > 0 {
            tracing::info!(%remote, bindings = n, "connection closed; its registrations dropped");
        }
    }

    /// The next binding that appeared or went (see [`crate::registrar::BindingEvent`]).
    pub fn poll_binding_event(&mut self) -> Option<crate::registrar::BindingEvent> {
        self.location.poll_event()
    }

    /// The contact registered for `aor` (highest q first) and the flow to reach it.
    pub fn contact_for(&self, aor: &str, now: Instant) -> Option<(String, Flow)> {
        let b = self.location.lookup(aor, now).first().copied()?;
        Some((b.uri.clone(), self.binding_flow(b)))
    }

    /// Every contact registered for `aor` (highest q first) and the flows to reach them.
    pub fn contacts_for(&self, aor: &str, now: Instant) -> Vec<(String, Flow)> {
        self.location
            .lookup(aor, now)
            .into_iter()
            .map(|b| (b.uri.clone(), self.binding_flow(b)))
            .collect()
    }

    /// A flow from one of our addresses to `target`.
    pub fn flow_for(&self, target: Target) -> Option<Flow> {
        self.flow_to(target)
    }

    /// Sends a request as a UAC on `dest`: the core adds its Via (and Max-Forwards when
    /// missing) and runs the client transaction; the dialog's Call-ID becomes the
    /// application's. Responses come back as [`AppEvent::Response`].
    pub fn send_request(&mut self, req: Request, dest: Flow, now: Instant) -> ClientTxId {
        let cid = self.id();
        let invite = req.method == Method::Invite;
        if let Some(c) = msg::call_id(&req.headers) {
            self.app_dialogs.insert(c.to_string());
        }
        let data = self.stamp_request(req, dest, cid);
        self.send(dest, data.clone());
        self.clients.insert(
            cid,
            Box::new(ClientEntry {
                tx: ClientTx::new(
                    invite,
                    data,
                    dest.transport.reliable(),
                    self.cfg.timers,
                    now,
                ),
                flow: dest,
                server: None,
                cancel: None,
                cancel_pending: false,
                armed: None,
                app: true,
                dialog: false,
            }),
        );
        self.rearm_client(cid);
        ClientTxId(cid)
    }

    /// Sends a request without a transaction (the ACK of a 2xx).
    pub fn send_stateless(&mut self, req: Request, dest: Flow) {
        let id = self.id();
        let data = self.stamp_request(req, dest, id);
        self.send(dest, data);
    }

    /// CANCELs application INVITE `tx` (deferred until a provisional arrived, §9.1).
    pub fn cancel(&mut self, tx: ClientTxId, now: Instant) {
        if self.clients.get(&tx.0).is_some_and(|c| c.app) {
            self.cancel_client(tx.0, now);
        }
    }

    fn stamp_request(&self, mut req: Request, dest: Flow, id: u64) -> Bytes {
        let via = format!(
            "SIP/2.0/{} {};branch={BRANCH_PREFIX}{id:x}.0;rport",
            dest.transport.via_token(),
            self.advertised(dest.local)
        );
        let mut headers: Vec<Header> = Vec::with_capacity(req.headers.len() + 2);
        headers.push(Header::Via(msg::rsip::Via::new(via)));
        if !req
            .headers
            .iter()
            .any(|h| matches!(h, Header::MaxForwards(_)))
        {
            headers.push(Header::MaxForwards(msg::rsip::MaxForwards::new("70")));
        }
        headers.extend(std::mem::take(&mut req.headers));
        req.headers = headers.into();
        Bytes::from(msg::request_bytes(&req))
    }

    fn answer_timer(&mut self, id: u64, now: Instant) {
        let t2 = self.cfg.timers.t2;
        let Some(a) = self.answers.get_mut(&id) else {
            return;
        };
        if now >= a.give_up {
            if let Some(a) = self.answers.remove(&id) {
                self.app_events.push_back(AppEvent::AckTimeout {
                    tx: ServerTxId(id),
                    call_id: a.call_id,
                });
            }
            return;
        }
        a.interval = (a.interval * 2).min(t2);
        let next = (now + a.interval).min(a.give_up);
        let (flow, data) = (a.flow, a.data.clone());
        self.send(flow, data);
        self.timers.push(Reverse((next, TimerRef::Answer(id))));
    }

    /// A server transaction for a request we answer ourselves.
    fn local_server_tx(&mut self, flow: Flow, req: &Request, key: String) -> u64 {
        let invite = req.method == Method::Invite;
        self.new_server(flow, req, key, invite)
    }

    fn new_server(&mut self, flow: Flow, req: &Request, key: String, invite: bool) -> u64 {
        let id = self.id();
        let (head, to) = response_head(req);
        self.server_index.insert(key.clone(), id);
        self.servers.insert(
            id,
            Box::new(ServerEntry {
                tx: ServerTx::new(invite, flow.transport.reliable(), self.cfg.timers),
                key,
                flow: response_flow(flow, req),
                head,
                to,
                client: None,
                armed: None,
                app: None,
            }),
        );
        id
    }

    /// Sends a response we generate on server transaction `id`.
    fn reply(
        &mut self,
        id: u64,
        req: &Request,
        code: u16,
        reason: &str,
        extra: &[&str],
        now: Instant,
    ) {
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        // Our To tag is derived from the transaction id: stable across retransmissions
        // without storing it.
        let tag = (code > 100).then(|| format!("hl{id:x}"));
        let data = Bytes::from(msg::build_response(
            req,
            code,
            reason,
            tag.as_deref(),
            extra,
        ));
        let sent = e.tx.send_response(code, data.clone(), now);
        if code >= 200 {
            e.release_head();
        }
        let f = e.flow;
        if sent {
            self.send(f, data);
        }
        self.rearm_server(id);
    }

    /// A response made up later (408, 487) from the stored request head.
    fn reply_late(&mut self, id: u64, code: u16, reason: &str, now: Instant) {
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        let mut out = Vec::with_capacity(e.head.len() + 200);
        out.extend_from_slice(format!("SIP/2.0 {code} {reason}\r\n").as_bytes());
        out.extend_from_slice(&e.head);
        out.extend_from_slice(b"To: ");
        out.extend_from_slice(e.to.as_bytes());
        if code > 100 && msg::tag(&e.to).is_none() {
            out.extend_from_slice(format!(";tag=hl{id:x}").as_bytes());
        }
        out.extend_from_slice(b"\r\nServer: Hotline\r\nContent-Length: 0\r\n\r\n");
        let data = Bytes::from(out);
        let sent = e.tx.send_response(code, data.clone(), now);
        if code >= 200 {
            e.release_head();
        }
        let f = e.flow;
        if sent {
            self.send(f, data);
        }
        self.rearm_server(id);
    }

    fn handle_register(&mut self, flow: Flow, req: &Request, key: String, now: Instant) {
        let st = self.local_server_tx(flow, req, key);
        let Some(to) = msg::to_value(&req.headers) else {
            return self.reply(st, req, 400, "Missing To", &[], now);
        };
        let to_uri = msg::addr_uri(to);
        let Some(aor) = uri_user(to_uri).map(str::to_string) else {
            return self.reply(st, req, 404, "Not Found", &[], now);
        };
        if !self.is_trusted(flow.remote.ip()) {
            let cred = msg::find(&req.headers, |h| matches!(h, Header::Authorization(_)));
            match self.auth.verify("REGISTER", cred, now) {
                Verdict::Ok(user) if user == aor => {}
                Verdict::Ok(_) => return self.reply(st, req, 403, "Forbidden", &[], now),
                Verdict::Forbidden => {
                    self.auth_failed(flow, cred, now);
                    return self.reply(st, req, 403, "Forbidden", &[], now);
                }
                Verdict::Challenge { stale } => {
                    let lines = self.auth.challenge(false, stale, now);
                    let extra: Vec<&str> = lines.iter().map(String::as_str).collect();
                    return self.reply(st, req, 401, "Unauthorized", &extra, now);
                }
            }
        }
        let reg = match register_request(req) {
            Ok(r) => r,
            Err(reason) => return self.reply(st, req, 400, reason, &[], now),
        };
        let bindings = if reg.contacts.as_ref().is_some_and(|c| c.is_empty()) {
            Ok(self
                .location
                .lookup(&aor, now)
                .into_iter()
                .cloned()
                .collect())
        } else {
            self.location.register(&aor, &reg, flow, now)
        };
        match bindings {
            Ok(bs) => {
                Counters::inc(&self.counters.registered);
                let lines: Vec<String> = bs
                    .iter()
                    .map(|b| {
                        let left = b.expires_at.saturating_duration_since(now).as_secs();
                        if b.q == 1000 {
                            format!("Contact: <{}>;expires={left}", b.uri)
                        } else {
                            format!("Contact: <{}>;expires={left};q={}", b.uri, q_text(b.q))
                        }
                    })
                    .collect();
                let extra: Vec<&str> = lines.iter().map(String::as_str).collect();
                self.reply(st, req, 200, "OK", &extra, now);
            }
            Err(RegisterError::IntervalTooBrief(min)) => {
                let line = format!("Min-Expires: {min}");
                self.reply(st, req, 423, "Interval Too Brief", &[&line], now);
            }
            Err(RegisterError::Bad(r)) => self.reply(st, req, 400, r, &[], now),
            Err(RegisterError::OutOfOrder) => {
                self.reply(st, req, 500, "Out of order CSeq", &[], now)
            }
            Err(RegisterError::TooManyContacts) => {
                self.reply(st, req, 403, "Too many contacts", &[], now)
            }
        }
    }

    /// A wrong password (or unknown user) from `flow`: counted towards a lockout.
    fn auth_failed(&mut self, flow: Flow, cred: Option<&str>, now: Instant) {
        let user = cred
            .and_then(crate::auth::parse_credentials)
            .map_or("", |c| c.username);
        if self.guard.auth_failed(flow.remote.ip(), user, now) {
            Counters::inc(&self.counters.lockouts);
            self.newly_blocked.push_back(flow.remote.ip());
            tracing::warn!(source = %flow.remote.ip(), user, "repeated digest failures: source locked out");
        }
    }

    fn handle_cancel(&mut self, flow: Flow, req: &Request, key: &str, now: Instant) {
        let invite_key = key.replacen("|CANCEL", "|INVITE", 1);
        let target = self.server_index.get(&invite_key).copied();
        let st = self.local_server_tx(flow, req, key.to_string());
        let Some(inv) = target else {
            return self.reply(st, req, 481, "Call/Transaction Does Not Exist", &[], now);
        };
        self.reply(st, req, 200, "OK", &[], now);
        let Some(e) = self.servers.get(&inv) else {
            return;
        };
        if e.tx.last_status() >= 200 {
            return;
        }
        let app = e.app.is_some();
        match e.client {
            Some(cid) => self.cancel_client(cid, now),
            // Nothing downstream: answer the INVITE ourselves.
            None => {
                self.reply_late(inv, 487, "Request Terminated", now);
                if app {
                    self.app_events.push_back(AppEvent::Cancelled {
                        tx: ServerTxId(inv),
                    });
                }
            }
        }
    }

    /// Sends CANCEL for client INVITE `cid` (§9.1: only after a provisional response).
    fn cancel_client(&mut self, cid: u64, now: Instant) {
        let timers = self.cfg.timers;
        let limits = self.cfg.limits;
        let Some(c) = self.clients.get_mut(&cid) else {
            return;
        };
        if c.cancel.is_some() {
            return;
        }
        if c.tx.state() != ClientState::Proceeding {
            c.cancel_pending = true;
            return;
        }
        let Some(cancel) = build_cancel(c.tx.request(), &limits) else {
            return;
        };
        let data = Bytes::from(cancel);
        c.cancel = Some(ClientTx::new(
            false,
            data.clone(),
            c.flow.transport.reliable(),
            timers,
            now,
        ));
        c.cancel_pending = false;
        let f = c.flow;
        self.send(f, data);
        self.rearm_client(cid);
    }

    /// Decides where a request goes and forwards it (or answers it).
    fn route_and_forward(
        &mut self,
        flow: Flow,
        mut req: Request,
        key: Option<String>,
        now: Instant,
    ) {
        // Loose routing: remove the Route entries that name us (two after double RR).
        while let Some(first) = msg::find(&req.headers, |h| matches!(h, Header::Route(_))) {
            let (top, _) = msg::split_first(first);
            if !self.uri_is_us(msg::addr_uri(top)) {
                break;
            }
            pop_first_value(&mut req.headers, |h| matches!(h, Header::Route(_)));
        }
        let route = self.route(&req, now);
        let is_ack = req.method == Method::Ack;
        match route {
            Route::Respond(code, reason) => {
                if !is_ack {
                    let invite = req.method == Method::Invite;
                    let key = key.unwrap_or_default();
                    let st = self.new_server(flow, &req, key, invite);
                    self.reply(st, &req, code, reason, &[], now);
                }
            }
            Route::Forward { dest, ruri } => self.forward(flow, req, key, dest, ruri, now),
        }
    }

    fn route(&self, req: &Request, now: Instant) -> Route {
        if let Some(first) = msg::find(&req.headers, |h| matches!(h, Header::Route(_))) {
            let uri = msg::addr_uri(msg::split_first(first).0);
            return match self.resolve(uri) {
                Some(dest) => Route::Forward { dest, ruri: None },
                None => Route::Respond(404, "Route Not Resolvable"),
            };
        }
        let ruri = req.uri.to_string();
        let is_tel = ruri
            .get(..4)
            .is_some_and(|p| p.eq_ignore_ascii_case("tel:"));
        if is_tel || self.uri_is_us(&ruri) {
            if !is_tel && let Some(user) = req.uri.user() {
                let binding = self.location.lookup(user, now).first().copied();
                match binding {
                    Some(b) => {
                        return Route::Forward {
                            dest: self.binding_flow(b),
                            ruri: Some(b.uri.clone()),
                        };
                    }
                    None if self.auth.has_user(user) => {
                        return Route::Respond(480, "Temporarily Unavailable");
                    }
                    // Not a user of ours: the trunk, or 404 below.
                    None => {}
                }
            }
            return match self.cfg.static_route.and_then(|t| self.flow_to(t)) {
                Some(dest) => Route::Forward { dest, ruri: None },
                None => Route::Respond(404, "Not Found"),
            };
        }
        // A foreign domain: relay by the Request-URI, or through the trunk.
        match self.resolve(&ruri) {
            Some(dest) => Route::Forward { dest, ruri: None },
            None => match self.cfg.static_route.and_then(|t| self.flow_to(t)) {
                Some(dest) => Route::Forward { dest, ruri: None },
                None => Route::Respond(404, "Not Found"),
            },
        }
    }

    /// Where to send requests for a binding. The flow the REGISTER came on when the
    /// contact is not reachable as written (NAT: its IP differs from the source, RFC 3581
    /// style), so home agents behind NAT and TCP clients that do not listen keep working;
    /// the contact address when it is on the registering host itself.
    /// TLS and WebSocket bindings always use their connection: Hotline does not dial
    /// those out, and a browser's `*.invalid` contact is reachable no other way.
    fn binding_flow(&self, b: &crate::registrar::Binding) -> Flow {
        if matches!(
            b.flow.transport,
            Transport::Tls | Transport::Ws | Transport::Wss
        ) {
            return b.flow;
        }
        if let Some(f) = self.resolve(&b.uri)
            && f.remote.ip() == b.flow.remote.ip()
        {
            let transport = if msg::param(&b.uri, "transport").is_some() {
                f.transport
            } else {
                b.flow.transport
            };
            if f.remote == b.flow.remote && transport == b.flow.transport {
                return b.flow;
            }
            if let Some(local) = self.local_for(transport, f.remote) {
                return Flow {
                    transport,
                    local,
                    remote: f.remote,
                };
            }
        }
        b.flow
    }

    /// IP-literal SIP URIs only (no DNS in the core).
    fn resolve(&self, uri: &str) -> Option<Flow> {
        let (host, port) = msg::uri_hostport(uri)?;
        let ip: IpAddr = host.parse().ok()?;
        let sips = uri
            .get(..5)
            .is_some_and(|s| s.eq_ignore_ascii_case("sips:"));
        let transport = match msg::param(uri, "transport").and_then(Transport::from_token) {
            Some(t) => t,
            None if sips => Transport::Tls,
            None => Transport::Udp,
        };
        let default_port = if transport == Transport::Tls {
            5061
        } else {
            5060
        };
        self.flow_to(Target {
            transport,
            addr: SocketAddr::new(ip, port.unwrap_or(default_port)),
        })
    }

    fn forward(
        &mut self,
        flow: Flow,
        mut req: Request,
        key: Option<String>,
        dest: Flow,
        ruri: Option<String>,
        now: Instant,
    ) {
        let is_ack = req.method == Method::Ack;
        let invite = req.method == Method::Invite;
        // Max-Forwards (§16.3 step 3, §16.6 step 3).
        let mut mf_found = false;
        let mut exhausted = false;
        for h in req.headers.iter_mut() {
            if let Header::MaxForwards(mf) = h {
                mf_found = true;
                match mf.0.trim().parse::<u8>() {
                    Ok(n) if n > 0 => mf.0 = (n - 1).to_string(),
                    _ => exhausted = true,
                }
            }
        }
        if exhausted {
            if !is_ack {
                let st = self.new_server(flow, &req, key.unwrap_or_default(), invite);
                self.reply(st, &req, 483, "Too Many Hops", &[], now);
            }
            return;
        }
        if !mf_found {
            req.headers
                .push(Header::MaxForwards(msg::rsip::MaxForwards::new("69")));
        }
        // Loop detection (§16.3 step 4): our own Via with the same request hash.
        let hash = loop_hash(&req);
        if !is_ack && self.is_loop(&req, hash) {
            let st = self.new_server(flow, &req, key.unwrap_or_default(), invite);
            self.reply(st, &req, 482, "Loop Detected", &[], now);
            return;
        }
        // The server transaction is made from the request as received (its Via routes
        // our responses).
        let sid = (!is_ack).then(|| self.new_server(flow, &req, key.unwrap_or_default(), invite));
        strip_rejoin_mark(&mut req.headers);
        if let Some(r) = ruri
            && let Ok(u) = msg::rsip::Uri::try_from(r.as_str())
        {
            req.uri = u;
        }
        let cid = self.id();
        let branch = format!("{BRANCH_PREFIX}{cid:x}.{hash:x}");
        let via = format!(
            "SIP/2.0/{} {};branch={branch};rport",
            dest.transport.via_token(),
            self.advertised(dest.local)
        );
        let mut headers: Vec<Header> = Vec::with_capacity(req.headers.len() + 3);
        headers.push(Header::Via(msg::rsip::Via::new(via)));
        let needs_rr = invite && msg::to_value(&req.headers).and_then(msg::tag).is_none();
        if needs_rr {
            // Double Record-Route (RFC 5658) when we change transport or interface.
            if dest.local != flow.local || dest.transport != flow.transport {
                headers.push(Header::RecordRoute(msg::rsip::RecordRoute::new(
                    self.rr_value(dest),
                )));
            }
            headers.push(Header::RecordRoute(msg::rsip::RecordRoute::new(
                self.rr_value(flow),
            )));
        }
        headers.extend(std::mem::take(&mut req.headers));
        req.headers = headers.into();
        let data = Bytes::from(msg::request_bytes(&req));
        Counters::inc(&self.counters.forwarded);
        self.send(dest, data.clone());
        let Some(sid) = sid else {
            return; // ACK: no transaction
        };
        if invite {
            // 100 Trying at once: the proxy takes over retransmissions (§16.2).
            self.reply_late(sid, 100, "Trying", now);
        }
        if let Some(e) = self.servers.get_mut(&sid) {
            e.client = Some(cid);
        }
        self.clients.insert(
            cid,
            Box::new(ClientEntry {
                tx: ClientTx::new(
                    invite,
                    data,
                    dest.transport.reliable(),
                    self.cfg.timers,
                    now,
                ),
                flow: dest,
                server: Some(sid),
                cancel: None,
                cancel_pending: false,
                armed: None,
                app: false,
                dialog: needs_rr,
            }),
        );
        self.rearm_client(cid);
    }

    fn rr_value(&self, flow: Flow) -> String {
        let t = flow.transport.uri_param();
        format!("<sip:{}{t};lr>", self.advertised(flow.local))
    }

    fn is_loop(&self, req: &Request, hash: u64) -> bool {
        for h in req.headers.iter() {
            let Header::Via(v) = h else { continue };
            let mut rest = Some(v.0.as_str());
            while let Some(r) = rest {
                let (hop, tail) = msg::split_first(r);
                rest = tail;
                let Some(b) = msg::branch(hop) else { continue };
                let Some(ours) = b.strip_prefix(BRANCH_PREFIX) else {
                    continue;
                };
                let Some((sent_by, _)) = msg::via_sent_by(hop) else {
                    continue;
                };
                let host = msg::hostport_host(sent_by);
                if !self.is_us(host, msg::hostport_port(sent_by)) {
                    continue;
                }
                if ours
                    .split_once('.')
                    .and_then(|(_, h)| u64::from_str_radix(h, 16).ok())
                    == Some(hash)
                {
                    return true;
                }
            }
        }
        false
    }

    fn handle_response(&mut self, mut resp: Response, now: Instant) {
        let status = u16::from(resp.status_code.clone());
        let Some(cid) = msg::top_via(&resp.headers)
            .and_then(msg::branch)
            .and_then(|b| b.strip_prefix(BRANCH_PREFIX))
            .and_then(|b| b.split('.').next())
            .and_then(|id| u64::from_str_radix(id, 16).ok())
        else {
            Counters::inc(&self.counters.dropped);
            return;
        };
        let is_cancel =
            msg::cseq(&resp.headers).is_some_and(|(_, m)| m.eq_ignore_ascii_case("CANCEL"));
        let limits = self.cfg.limits;
        let Some(c) = self.clients.get_mut(&cid) else {
            Counters::inc(&self.counters.retransmissions_absorbed);
            return;
        };
        if is_cancel {
            if let Some(tx) = c.cancel.as_mut() {
                tx.handle_response(status, now);
            }
            self.rearm_client(cid);
            return;
        }
        let action = c.tx.handle_response(status, now);
        let flow = c.flow;
        let server = c.server;
        let app = c.app;
        let dialog = c.dialog;
        let pending_cancel = c.cancel_pending && status < 200;
        match action {
            ClientAction::Absorb => {
                Counters::inc(&self.counters.retransmissions_absorbed);
                self.rearm_client(cid);
                return;
            }
            ClientAction::ResendAck(ack) => {
                Counters::inc(&self.counters.retransmissions_absorbed);
                self.send(flow, ack);
                return;
            }
            ClientAction::DeliverAndAck => {
                if let Some(ack) = build_ack(c.tx.request(), &resp, &limits) {
                    let ack = Bytes::from(ack);
                    c.tx.set_ack(ack.clone());
                    self.send(flow, ack);
                }
            }
            ClientAction::Deliver => {}
        }
        if pending_cancel {
            self.cancel_client(cid, now);
        }
        self.rearm_client(cid);
        if status == 100 {
            return; // 100 is hop by hop (§16.7 step 5)
        }
        if app {
            msg::pop_top_via(&mut resp.headers);
            self.app_events.push_back(AppEvent::Response {
                tx: ClientTxId(cid),
                response: Box::new(resp),
                flow,
            });
            return;
        }
        msg::pop_top_via(&mut resp.headers);
        if dialog
            && (200..300).contains(&status)
            && let Some(call_id) = msg::call_id(&resp.headers)
        {
            let from = msg::from_value(&resp.headers).and_then(|v| uri_user(msg::addr_uri(v)));
            let to = msg::to_value(&resp.headers).and_then(|v| uri_user(msg::addr_uri(v)));
            if let Some(ev) = self.proxied.established(call_id, from, to) {
                self.app_events.push_back(ev);
            }
        }
        let data = Bytes::from(msg::response_bytes(&resp));
        let Some(sid) = server else { return };
        let Some(e) = self.servers.get_mut(&sid) else {
            return;
        };
        let f = e.flow;
        if e.tx.send_response(status, data.clone(), now) {
            if status >= 200 {
                e.release_head();
            }
            self.send(f, data);
            self.rearm_server(sid);
        } else if (200..300).contains(&status) && e.tx.is_invite() {
            // Retransmitted 2xx: forwarded statelessly (§16.7 step 10).
            self.send(f, data);
        }
    }

    fn rearm_server(&mut self, id: u64) {
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        let t = e.tx.poll_timeout();
        if t != e.armed {
            e.armed = t;
            if let Some(t) = t {
                self.timers.push(Reverse((t, TimerRef::Server(id))));
            }
        }
    }

    fn rearm_client(&mut self, id: u64) {
        let Some(e) = self.clients.get_mut(&id) else {
            return;
        };
        let t = [
            e.tx.poll_timeout(),
            e.cancel.as_ref().and_then(|c| c.poll_timeout()),
        ]
        .into_iter()
        .flatten()
        .min();
        if t != e.armed {
            e.armed = t;
            if let Some(t) = t {
                self.timers.push(Reverse((t, TimerRef::Client(id))));
            }
        }
    }

    /// Fires every timer due at `now`.
    pub fn handle_timeout(&mut self, now: Instant) {
        while let Some(Reverse((t, r))) = self.timers.peek().copied() {
            if t > now {
                break;
            }
            self.timers.pop();
            match r {
                TimerRef::Purge => {
                    self.location.purge(now);
                    self.timers
                        .push(Reverse((now + Duration::from_secs(30), TimerRef::Purge)));
                }
                TimerRef::Server(id) => self.server_timer(id, t, now),
                TimerRef::Client(id) => self.client_timer(id, t, now),
                TimerRef::Answer(id) => self.answer_timer(id, now),
            }
        }
    }

    fn server_timer(&mut self, id: u64, t: Instant, now: Instant) {
        let Some(e) = self.servers.get_mut(&id) else {
            return;
        };
        if e.armed != Some(t) {
            return; // superseded
        }
        e.armed = None;
        let mut done = false;
        while let Some(ev) = e.tx.poll(now) {
            match ev {
                ServerEvent::Retransmit(b) => self.out.push_back(Transmit {
                    flow: e.flow,
                    data: b,
                }),
                ServerEvent::TimedOut | ServerEvent::Terminated => done = true,
            }
        }
        if done || e.tx.state() == ServerState::Terminated {
            if let Some(e) = self.servers.remove(&id) {
                self.server_index.remove(&e.key);
            }
        } else {
            self.rearm_server(id);
        }
    }

    fn client_timer(&mut self, id: u64, t: Instant, now: Instant) {
        let Some(c) = self.clients.get_mut(&id) else {
            return;
        };
        if c.armed != Some(t) {
            return;
        }
        c.armed = None;
        let ringing = c.tx.is_invite() && c.tx.state() == ClientState::Proceeding;
        let mut timed_out = false;
        let mut done = false;
        while let Some(ev) = c.tx.poll(now) {
            match ev {
                ClientEvent::Retransmit(b) => self.out.push_back(Transmit {
                    flow: c.flow,
                    data: b,
                }),
                ClientEvent::TimedOut => timed_out = true,
                ClientEvent::Terminated => done = true,
            }
        }
        if let Some(cancel) = c.cancel.as_mut() {
            while let Some(ev) = cancel.poll(now) {
                if let ClientEvent::Retransmit(b) = ev {
                    self.out.push_back(Transmit {
                        flow: c.flow,
                        data: b,
                    });
                }
            }
        }
        let server = c.server;
        let flow = c.flow;
        if timed_out && c.app {
            // Rare path: read the Call-ID back from the request rather than store it.
            let call_id = match msg::parse(c.tx.request(), &self.cfg.limits, false) {
                Ok(SipMessage::Request(r)) => msg::call_id(&r.headers).unwrap_or("").to_string(),
                _ => String::new(),
            };
            self.app_events.push_back(AppEvent::Timeout {
                tx: ClientTxId(id),
                call_id,
            });
        }
        if timed_out && ringing {
            // Timer C: give up on the ringing branch (§16.6 step 11) with a CANCEL.
            if let Some(cancel) = build_cancel(c.tx.request(), &self.cfg.limits) {
                self.out.push_back(Transmit {
                    flow,
                    data: cancel.into(),
                });
            }
        }
        if timed_out || done {
            self.clients.remove(&id);
        } else {
            self.rearm_client(id);
        }
        if timed_out
            && let Some(sid) = server
            && self
                .servers
                .get(&sid)
                .is_some_and(|e| e.tx.last_status() < 200)
        {
            self.reply_late(sid, 408, "Request Timeout", now);
        }
    }
}

/// `unsupported_scheme`: the request line's URI has a scheme other than sip/sips/tel.
fn unsupported_scheme(data: &[u8]) -> bool {
    let line_end = memchr::memchr(b'\n', data).unwrap_or(data.len());
    let Ok(line) = std::str::from_utf8(&data[..line_end]) else {
        return false;
    };
    let mut parts = line.split_whitespace();
    let (Some(_m), Some(uri), Some(v)) = (parts.next(), parts.next(), parts.next()) else {
        return false;
    };
    if !v.starts_with("SIP/") {
        return false;
    }
    match uri.split_once(':') {
        Some((scheme, _)) => {
            !["sip", "sips", "tel"]
                .iter()
                .any(|s| s.eq_ignore_ascii_case(scheme))
                && scheme
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "+-.".contains(c))
        }
        None => false,
    }
}

/// Server transaction key (§17.2.3), or the RFC 2543 fallback for branches without the
/// magic cookie. ACK and CANCEL keep their own method; callers map them to INVITE.
fn server_key(req: &Request) -> Option<String> {
    let via = msg::top_via(&req.headers)?;
    let method = req.method.to_string();
    match msg::branch(via) {
        Some(b) if b.starts_with("z9hG4bK") => {
            let (sent_by, _) = msg::via_sent_by(via)?;
            Some(format!("{b}|{sent_by}|{method}"))
        }
        _ => {
            // RFC 2543: Request-URI, To tag, From tag, Call-ID, CSeq number, top Via.
            let to_tag = if req.method == Method::Ack || req.method == Method::Cancel {
                "" // the ACK for a non-2xx carries the tag the 2543 INVITE did not have
            } else {
                msg::to_value(&req.headers).and_then(msg::tag).unwrap_or("")
            };
            let from_tag = msg::from_value(&req.headers)
                .and_then(msg::tag)
                .unwrap_or("");
            let call_id = msg::call_id(&req.headers)?;
            let (n, _) = msg::cseq(&req.headers)?;
            Some(format!(
                "2543|{}|{to_tag}|{from_tag}|{call_id}|{n}|{via}|{method}",
                req.uri
            ))
        }
    }
}

/// Where responses to a request go: the source flow, but for UDP without `rport` the port
/// of the Via sent-by (§18.2.2).
fn response_flow(flow: Flow, req: &Request) -> Flow {
    if flow.transport == Transport::Udp
        && let Some(via) = msg::top_via(&req.headers)
        && msg::param(via, "rport").is_none_or(|v| v.is_empty())
        && let Some((sent_by, _)) = msg::via_sent_by(via)
    {
        let port = msg::hostport_port(sent_by).unwrap_or(5060);
        return Flow {
            remote: SocketAddr::new(flow.remote.ip(), port),
            ..flow
        };
    }
    flow
}

/// The Via/From/Call-ID/CSeq lines and the To value of a request.
fn response_head(req: &Request) -> (Vec<u8>, String) {
    let mut head = Vec::with_capacity(300);
    let mut to = String::new();
    for h in req.headers.iter() {
        match h {
            Header::Via(_) | Header::From(_) | Header::CallId(_) | Header::CSeq(_) => {
                head.extend_from_slice(h.to_string().as_bytes());
                head.extend_from_slice(b"\r\n");
            }
            Header::To(t) => to.clone_from(&t.0),
            _ => {}
        }
    }
    (head, to)
}

/// Hash over the fields that identify a request for loop detection (§16.6 step 8).
fn loop_hash(req: &Request) -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    req.uri.to_string().hash(&mut h);
    msg::from_value(&req.headers)
        .and_then(msg::tag)
        .hash(&mut h);
    msg::to_value(&req.headers).and_then(msg::tag).hash(&mut h);
    msg::call_id(&req.headers).hash(&mut h);
    msg::cseq(&req.headers).map(|c| c.0).hash(&mut h);
    for hd in req.headers.iter() {
        if matches!(hd, Header::Route(_) | Header::ProxyRequire(_)) {
            msg::header_value(hd).hash(&mut h);
        }
    }
    h.finish() & 0xffff_ffff
}

/// Removes the first value of the first header matching `pred` (comma-joined aware).
/// A WebRTC offer (what browsers send: DTLS-SRTP, `UDP/TLS/RTP/SAVPF`), by its audio
/// line's profile (as the switch tells them apart); the application parses the SDP.
fn is_webrtc_offer(body: &[u8]) -> bool {
    let Ok(sdp) = std::str::from_utf8(body) else {
        return false;
    };
    sdp.lines().any(|l| {
        let mut f = l.split_whitespace();
        f.next().is_some_and(|m| m.starts_with("m=audio"))
            && f.nth(1).is_some_and(|p| p.contains("/TLS/"))
    })
}

/// Removes [`REJOIN_HEADER`] from a relayed request: a phone or trunk must not make a
/// desk page answer by itself (only the B2BUA's own rejoin INVITE carries it).
fn strip_rejoin_mark(headers: &mut msg::Headers) {
    let forged = |h: &Header| matches!(h, Header::Other(n, _) if n.trim().eq_ignore_ascii_case(REJOIN_HEADER));
    if headers.iter().any(forged) {
        let kept: Vec<Header> = std::mem::take(headers)
            .into_iter()
            .filter(|h| !forged(h))
            .collect();
        *headers = kept.into();
    }
}

fn pop_first_value(headers: &mut msg::Headers, pred: impl Fn(&Header) -> bool) {
    let mut all: Vec<Header> = std::mem::take(headers).into_iter().collect();
    if let Some(i) = all.iter().position(&pred) {
        let rest = msg::split_first(msg::header_value(&all[i]))
            .1
            .map(str::to_string);
        match (rest, &mut all[i]) {
            (Some(rest), Header::Route(r)) => r.0 = rest,
            _ => {
                all.remove(i);
            }
        }
    }
    *headers = all.into();
}

/// The user part of a sip URI.
fn uri_user(uri: &str) -> Option<&str> {
    let rest = uri
        .strip_prefix("sip:")
        .or_else(|| uri.strip_prefix("sips:"))?;
    let (user, _) = rest.split_once('@')?;
    let user = user.split(':').next()?; // strip a password
    (!user.is_empty()).then_some(user)
}

fn q_text(q: u16) -> String {
    format!("{}.{:03}", q / 1000, q % 1000)
        .trim_end_matches('0')
        .trim_end_matches('.')
        .to_string()
}

/// Reads the registrar's view of a REGISTER.
fn register_request(req: &Request) -> Result<RegisterRequest, &'static str> {
    let call_id = msg::call_id(&req.headers)
        .ok_or("Missing Call-ID")?
        .to_string();
    let (cseq, _) = msg::cseq(&req.headers).ok_or("Invalid CSeq")?;
    let expires_header = match msg::find(&req.headers, |h| matches!(h, Header::Expires(_))) {
        Some(v) => Some(v.trim().parse::<u32>().map_err(|_| "Invalid Expires")?),
        None => None,
    };
    let mut contacts = Vec::new();
    let mut star = false;
    for h in req.headers.iter() {
        let Header::Contact(c) = h else { continue };
        let mut rest = Some(c.0.as_str());
        while let Some(r) = rest {
            let (v, tail) = msg::split_first(r);
            rest = tail;
            if v == "*" {
                star = true;
                continue;
            }
            let uri = msg::addr_uri(v);
            if uri.is_empty() {
                return Err("Invalid Contact");
            }
            let expires = match msg::param(v, "expires") {
                Some(e) => Some(e.parse::<u32>().map_err(|_| "Invalid Contact expires")?),
                None => None,
            };
            let q = match msg::param(v, "q") {
                Some(q) => Some(parse_q(q).ok_or("Invalid q-value")?),
                None => None,
            };
            contacts.push(ContactSpec {
                uri: uri.to_string(),
                expires,
                q,
            });
        }
    }
    if star && !contacts.is_empty() {
        return Err("Wildcard Contact mixed with others");
    }
    Ok(RegisterRequest {
        call_id,
        cseq,
        contacts: (!star).then_some(contacts),
        expires_header,
    })
}

/// ACK for a non-2xx final (§17.1.1.3): Request-URI, top Via, From, Call-ID, Route and
/// CSeq number of the INVITE, To of the response.
fn build_ack(invite: &[u8], resp: &Response, limits: &Limits) -> Option<Vec<u8>> {
    let Ok(SipMessage::Request(inv)) = msg::parse(invite, limits, false) else {
        return None;
    };
    let to = msg::to_value(&resp.headers)?;
    in_transaction_request(&inv, "ACK", to)
}

/// CANCEL for an INVITE we sent (§9.1): same Request-URI, top Via, From, To, Call-ID,
/// CSeq number and Route.
fn build_cancel(invite: &[u8], limits: &Limits) -> Option<Vec<u8>> {
    let Ok(SipMessage::Request(inv)) = msg::parse(invite, limits, false) else {
        return None;
    };
    let to = msg::to_value(&inv.headers)?.to_string();
    in_transaction_request(&inv, "CANCEL", &to)
}

fn in_transaction_request(inv: &Request, method: &str, to: &str) -> Option<Vec<u8>> {
    let via = msg::top_via(&inv.headers)?;
    let from = msg::from_value(&inv.headers)?;
    let call_id = msg::call_id(&inv.headers)?;
    let (n, _) = msg::cseq(&inv.headers)?;
    let mut out = format!(
        "{method} {} SIP/2.0\r\nVia: {via}\r\nMax-Forwards: 70\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {n} {method}\r\n",
        inv.uri
    );
    for h in inv.headers.iter() {
        if let Header::Route(r) = h {
            out.push_str("Route: ");
            out.push_str(&r.0);
            out.push_str("\r\n");
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    Some(out.into_bytes())
}

#[cfg(test)]
mod tests;
