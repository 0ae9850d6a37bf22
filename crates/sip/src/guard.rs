//! Attack defence in front of the core (sans-IO, clock injected): per-source request rate
//! limits (like Kamailio's pike), lockout after repeated digest failures, and scanner
//! user-agents. Consulted before any transaction or dialog state exists, so a flood costs
//! a hash lookup per datagram and nothing else.
//!
//! Blocked and locked-out sources are dropped silently rather than answered 503: an
//! answer would make us a reflector, and silence costs a scanner its timeouts.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use crate::Cidr;

/// Tunables; [`GuardConfig::default`] suits a public-facing server.
#[derive(Debug, Clone)]
pub struct GuardConfig {
    /// Sustained requests per second allowed from one IP address (0 = no rate limit).
    pub rate: u32,
    /// Requests one IP address may send at once above the sustained rate.
    pub burst: u32,
    /// How long a source over its rate is ignored.
    pub block: Duration,
    /// Networks never limited (trunks); the core's trusted networks are exempt too.
    pub allow: Vec<Cidr>,
    /// Sources tracked at most; idle ones are forgotten first, and beyond the cap new
    /// sources pass unlimited (fail open) rather than growing memory.
    pub max_sources: usize,
    /// Digest failures (wrong password or unknown user) that lock a source out
    /// (0 = never).
    pub auth_failures: u32,
    /// Window the failures are counted in.
    pub auth_window: Duration,
    /// How long a locked-out source is ignored.
    pub lockout: Duration,
    /// Requests whose User-Agent contains one of these (case-insensitive) are dropped.
    pub scanner_agents: Vec<String>,
}

impl Default for GuardConfig {
    fn default() -> Self {
        Self {
            rate: 100,
            burst: 200,
            block: Duration::from_secs(60),
            allow: vec![],
            max_sources: 100_000,
            auth_failures: 10,
            auth_window: Duration::from_secs(300),
            lockout: Duration::from_secs(900),
            scanner_agents: [
                "friendly-scanner",
                "sipvicious",
                "sipcli",
                "VaxSIPUserAgent",
            ]
            .map(String::from)
            .to_vec(),
        }
    }
}

/// What to do with a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Admit {
    Pass,
    /// Dropped: the source is blocked or locked out.
    Drop,
    /// Dropped, and the source was blocked just now (log it, once).
    Blocked,
}

#[derive(Debug, Clone)]
struct Source {
    tokens: f64,
    last: Instant,
    blocked_until: Option<Instant>,
    fails: u32,
    fails_since: Instant,
}

#[derive(Debug, Clone, Copy)]
struct Fails {
    count: u32,
    since: Instant,
}

/// Per-source and per-user state, bounded by [`GuardConfig::max_sources`].
#[derive(Debug)]
pub struct Guard {
    cfg: GuardConfig,
    sources: HashMap<IpAddr, Source>,
    users: HashMap<String, Fails>,
    next_sweep: Instant,
    agents: Vec<String>,
}

impl Guard {
    /// `trusted` networks are added to the allow-list.
    pub fn new(mut cfg: GuardConfig, trusted: &[Cidr], now: Instant) -> Self {
        cfg.allow.extend_from_slice(trusted);
        cfg.max_sources = cfg.max_sources.max(1);
        let agents = cfg
            .scanner_agents
            .iter()
            .filter(|a| !a.is_empty())
            .map(|a| a.to_ascii_lowercase())
            .collect();
        Self {
            cfg,
            sources: HashMap::new(),
            users: HashMap::new(),
            next_sweep: now,
            agents,
        }
    }

    fn allowed(&self, ip: IpAddr) -> bool {
        self.cfg.allow.iter().any(|c| c.contains(ip))
    }

    /// Sources currently tracked.
    pub fn tracked(&self) -> usize {
        self.sources.len()
    }

    /// Whether `ip` is blocked or locked out at `now`.
    pub fn is_blocked(&self, ip: IpAddr, now: Instant) -> bool {
        self.sources
            .get(&ip)
            .and_then(|s| s.blocked_until)
            .is_some_and(|t| t > now)
    }

    /// Forgets sources that carry no information any more: not blocked, bucket full
    /// again, no digest failures in the window. At most once a second (it is O(n)).
    fn sweep(&mut self, now: Instant) {
        if now < self.next_sweep {
            return;
        }
        self.next_sweep = now + Duration::from_secs(1);
        let (rate, burst) = (f64::from(self.cfg.rate), f64::from(self.cfg.burst));
        let window = self.cfg.auth_window;
        self.sources.retain(|_, s| {
            let refilled = rate == 0.0
                || s.tokens + now.saturating_duration_since(s.last).as_secs_f64() * rate >= burst;
            let blocked = s.blocked_until.is_some_and(|t| t > now);
            let failing = s.fails > 0 && now.saturating_duration_since(s.fails_since) < window;
            blocked || failing || !refilled
        });
        self.users
            .retain(|_, f| now.saturating_duration_since(f.since) < window);
    }

    fn source(&mut self, ip: IpAddr, now: Instant) -> Option<&mut Source> {
        if !self.sources.contains_key(&ip) && self.sources.len() >= self.cfg.max_sources {
            self.sweep(now);
            if self.sources.len() >= self.cfg.max_sources {
                return None;
            }
        }
        let burst = f64::from(self.cfg.burst.max(1));
        Some(self.sources.entry(ip).or_insert(Source {
            tokens: burst,
            last: now,
            blocked_until: None,
            fails: 0,
            fails_since: now,
        }))
    }

    /// A request arrived from `ip`: spend a token, or drop it.
    pub fn admit(&mut self, ip: IpAddr, now: Instant) -> Admit {
        if self.allowed(ip) {
            return Admit::Pass;
        }
        let (rate, block) = (f64::from(self.cfg.rate), self.cfg.block);
        let burst = f64::from(self.cfg.burst.max(1));
        let Some(s) = self.source(ip, now) else {
            return Admit::Pass;
        };
        if let Some(t) = s.blocked_until {
            if t > now {
                return Admit::Drop;
            }
            s.blocked_until = None;
            s.tokens = burst;
            s.last = now;
        }
        if rate == 0.0 {
            return Admit::Pass;
        }
        let elapsed = now.saturating_duration_since(s.last).as_secs_f64();
        s.tokens = (s.tokens + elapsed * rate).min(burst);
        s.last = now;
        if s.tokens >= 1.0 {
            s.tokens -= 1.0;
            Admit::Pass
        } else {
            s.blocked_until = Some(now + block);
            Admit::Blocked
        }
    }

    /// A digest check from `ip` for `user` failed. Returns true if this locked the
    /// source out (log it, once).
    pub fn auth_failed(&mut self, ip: IpAddr, user: &str, now: Instant) -> bool {
        let limit = self.cfg.auth_failures;
        if limit == 0 || self.allowed(ip) {
            return false;
        }
        let (window, lockout) = (self.cfg.auth_window, self.cfg.lockout);
        // Failures for one user from anywhere: a distributed guess at one account locks
        // out every source that keeps failing for it.
        let user_hot = if self.users.len() < self.cfg.max_sources || self.users.contains_key(user) {
            let f = self.users.entry(user.to_string()).or_insert(Fails {
                count: 0,
                since: now,
            });
            if now.saturating_duration_since(f.since) >= window {
                *f = Fails {
                    count: 0,
                    since: now,
                };
            }
            f.count += 1;
            f.count >= limit
        } else {
            false
        };
        let Some(s) = self.source(ip, now) else {
            return false;
        };
        if now.saturating_duration_since(s.fails_since) >= window {
            s.fails = 0;
            s.fails_since = now;
        }
        s.fails += 1;
        if (s.fails >= limit || user_hot) && s.blocked_until.is_none_or(|t| t <= now) {
            s.blocked_until = Some(now + lockout);
            s.fails = 0;
            return true;
        }
        false
    }

    /// Whether a User-Agent value names a known scanner.
    pub fn is_scanner(&self, user_agent: &str) -> bool {
        if self.agents.is_empty() {
            return false;
        }
        let ua = user_agent.to_ascii_lowercase();
        self.agents.iter().any(|a| ua.contains(a.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    fn guard(cfg: GuardConfig, t0: Instant) -> Guard {
        Guard::new(cfg, &["10.9.0.0/16".parse().unwrap()], t0)
    }

    fn cfg() -> GuardConfig {
        GuardConfig {
            rate: 10,
            burst: 20,
            block: Duration::from_secs(30),
            auth_failures: 3,
            auth_window: Duration::from_secs(60),
            lockout: Duration::from_secs(120),
            ..GuardConfig::default()
        }
    }

    #[test]
    fn burst_then_block_then_expiry() {
        let t0 = Instant::now();
        let mut g = guard(cfg(), t0);
        let a = ip("192.0.2.1");
        for _ in 0..20 {
            assert_eq!(g.admit(a, t0), Admit::Pass);
        }
        assert_eq!(g.admit(a, t0), Admit::Blocked);
        assert_eq!(g.admit(a, t0), Admit::Drop);
        // Still blocked just before expiry even though the bucket would have refilled.
        let t = t0 + Duration::from_millis(29_999);
        assert_eq!(g.admit(a, t), Admit::Drop);
        assert!(g.is_blocked(a, t));
        // After the block the source gets a full burst again.
        let t = t0 + Duration::from_secs(30);
        for _ in 0..20 {
            assert_eq!(g.admit(a, t), Admit::Pass);
        }
        assert_eq!(g.admit(a, t), Admit::Blocked);
        // Another source is unaffected.
        assert_eq!(g.admit(ip("192.0.2.2"), t), Admit::Pass);
    }

    #[test]
    fn sustained_rate_passes() {
        let t0 = Instant::now();
        let mut g = guard(cfg(), t0);
        let a = ip("192.0.2.1");
        // 10/s for 60 s, one every 100 ms: never blocked.
        for i in 0..600 {
            let t = t0 + Duration::from_millis(100 * i);
            assert_eq!(g.admit(a, t), Admit::Pass, "request {i}");
        }
        // 20/s exhausts the burst of 20 after about 2 s (20 + 10 refilled per s).
        let t1 = t0 + Duration::from_secs(60);
        let first_drop = (0..100)
            .find(|i| g.admit(a, t1 + Duration::from_millis(50 * i)) != Admit::Pass)
            .unwrap();
        assert!((38..=42).contains(&first_drop), "{first_drop}");
    }

    #[test]
    fn allow_list_and_trusted_are_exempt() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.allow = vec!["198.51.100.0/24".parse().unwrap()];
        let mut g = guard(c, t0);
        for a in ["198.51.100.7", "10.9.1.1"] {
            for _ in 0..1000 {
                assert_eq!(g.admit(ip(a), t0), Admit::Pass);
            }
            for _ in 0..10 {
                assert!(!g.auth_failed(ip(a), "alice", t0));
            }
        }
        assert_eq!(g.tracked(), 0);
    }

    #[test]
    fn tracked_sources_are_capped_and_idle_ones_evicted() {
        let t0 = Instant::now();
        let mut c = cfg();
        c.max_sources = 100;
        let mut g = guard(c, t0);
        for i in 0..200u32 {
            let a = IpAddr::from((0xC000_0000u32 + i).to_be_bytes());
            assert_eq!(g.admit(a, t0), Admit::Pass);
        }
        assert_eq!(g.tracked(), 100);
        // Cap full and nothing idle yet: a new source passes untracked.
        let bad = ip("192.0.2.250");
        assert_eq!(g.admit(bad, t0), Admit::Pass);
        assert_eq!(g.tracked(), 100);
        // Once the others are idle (buckets refilled) they go and the new one is tracked.
        let t2 = t0 + Duration::from_secs(5);
        for _ in 0..21 {
            let _ = g.admit(bad, t2);
        }
        assert!(g.is_blocked(bad, t2));
        assert_eq!(g.tracked(), 1);
        assert!(g.tracked() <= 100);
    }

    #[test]
    fn digest_failures_lock_out_the_source() {
        let t0 = Instant::now();
        let mut g = guard(cfg(), t0);
        let a = ip("192.0.2.1");
        assert!(!g.auth_failed(a, "alice", t0));
        assert!(!g.auth_failed(a, "bob", t0));
        assert!(g.auth_failed(a, "nobody", t0));
        assert_eq!(g.admit(a, t0), Admit::Drop);
        let t = t0 + Duration::from_secs(119);
        assert_eq!(g.admit(a, t), Admit::Drop);
        let t = t0 + Duration::from_secs(120);
        assert_eq!(g.admit(a, t), Admit::Pass);
    }

    #[test]
    fn failures_outside_the_window_do_not_add_up() {
        let t0 = Instant::now();
        let mut g = guard(cfg(), t0);
        let a = ip("192.0.2.1");
        for i in 0..10u64 {
            // Two failures a minute, each from a fresh user name: never three in 60 s.
            let t = t0 + Duration::from_secs(61 * i);
            assert!(!g.auth_failed(a, &format!("u{i}a"), t));
            assert!(!g.auth_failed(a, &format!("u{i}b"), t + Duration::from_secs(1)));
        }
    }

    #[test]
    fn failures_for_one_user_lock_out_each_guessing_source() {
        let t0 = Instant::now();
        let mut g = guard(cfg(), t0);
        assert!(!g.auth_failed(ip("192.0.2.1"), "alice", t0));
        assert!(!g.auth_failed(ip("192.0.2.2"), "alice", t0));
        assert!(g.auth_failed(ip("192.0.2.3"), "alice", t0));
        assert!(g.auth_failed(ip("192.0.2.4"), "alice", t0));
        assert!(!g.is_blocked(ip("192.0.2.1"), t0));
        assert!(g.is_blocked(ip("192.0.2.4"), t0));
    }

    #[test]
    fn scanner_agents_match_case_insensitively() {
        let g = guard(cfg(), Instant::now());
        assert!(g.is_scanner("friendly-scanner"));
        assert!(g.is_scanner("SIPVicious 0.3"));
        assert!(g.is_scanner("VaxSIPUserAgent/3.1"));
        assert!(!g.is_scanner("baresip v3.10"));
        let mut c = cfg();
        c.scanner_agents.clear();
        assert!(!guard(c, Instant::now()).is_scanner("friendly-scanner"));
    }
}
