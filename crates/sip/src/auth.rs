//! Digest authentication (RFC 7616 algorithms as used by SIP, RFC 8760): MD5 and SHA-256,
//! qop=auth, nonces that expire and whose `nc` must increase (no replay).
//!
//! Credentials are parsed here rather than with rsip's typed `Authorization`, because that
//! one stores `nc` in a `u8` and so rejects every request after the 255th on one nonce.

use std::collections::{HashMap, VecDeque};
use std::fmt::Write as _;
use std::time::{Duration, Instant};

use md5::Md5;
use sha2::{Digest, Sha256};

/// Digest hash algorithm.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Algorithm {
    Md5,
    Sha256,
}

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Algorithm::Md5 => "MD5",
            Algorithm::Sha256 => "SHA-256",
        }
    }

    pub fn from_name(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("MD5") {
            Some(Algorithm::Md5)
        } else if s.eq_ignore_ascii_case("SHA-256") {
            Some(Algorithm::Sha256)
        } else {
            None
        }
    }

    /// Lower-case hex digest of `data`.
    pub fn hex(self, data: &[u8]) -> String {
        match self {
            Algorithm::Md5 => hex::encode(Md5::digest(data)),
            Algorithm::Sha256 => hex::encode(Sha256::digest(data)),
        }
    }
}

/// Parsed `Digest` credentials from an Authorization / Proxy-Authorization value.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Credentials<'a> {
    pub username: &'a str,
    pub realm: &'a str,
    pub nonce: &'a str,
    pub uri: &'a str,
    pub response: &'a str,
    pub algorithm: Option<&'a str>,
    pub cnonce: Option<&'a str>,
    pub nc: Option<&'a str>,
    pub qop: Option<&'a str>,
    pub opaque: Option<&'a str>,
}

/// Parses `Digest k=v, k="v", ...`. Returns `None` for other schemes or missing fields.
pub fn parse_credentials(value: &str) -> Option<Credentials<'_>> {
    let value = value.trim();
    let (scheme, rest) = value.split_once([' ', '\t'])?;
    if !scheme.eq_ignore_ascii_case("Digest") {
        return None;
    }
    let mut c = Credentials::default();
    let mut rest = rest.trim_start();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let key = key.trim().trim_start_matches(',').trim();
        let after = after.trim_start();
        let (val, tail) = if let Some(q) = after.strip_prefix('"') {
            let end = q.find('"')?;
            (&q[..end], &q[end + 1..])
        } else {
            let end = after.find(',').unwrap_or(after.len());
            (after[..end].trim(), &after[end..])
        };
        match key.to_ascii_lowercase().as_str() {
            "username" => c.username = val,
            "realm" => c.realm = val,
            "nonce" => c.nonce = val,
            "uri" => c.uri = val,
            "response" => c.response = val,
            "algorithm" => c.algorithm = Some(val),
            "cnonce" => c.cnonce = Some(val),
            "nc" => c.nc = Some(val),
            "qop" => c.qop = Some(val),
            "opaque" => c.opaque = Some(val),
            _ => {}
        }
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    if c.username.is_empty() || c.nonce.is_empty() || c.response.is_empty() {
        return None;
    }
    Some(c)
}

/// The expected `response` value (RFC 7616 §3.4.1 with qop=auth, or RFC 2069 without qop).
#[allow(clippy::too_many_arguments)]
pub fn digest_response(
    alg: Algorithm,
    username: &str,
    realm: &str,
    password: &str,
    method: &str,
    uri: &str,
    nonce: &str,
    qop: Option<(&str, &str)>, // (nc, cnonce)
) -> String {
    let ha1 = alg.hex(format!("{username}:{realm}:{password}").as_bytes());
    let ha2 = alg.hex(format!("{method}:{uri}").as_bytes());
    let input = match qop {
        Some((nc, cnonce)) => format!("{ha1}:{nonce}:{nc}:{cnonce}:auth:{ha2}"),
        None => format!("{ha1}:{nonce}:{ha2}"),
    };
    alg.hex(input.as_bytes())
}

#[derive(Debug)]
struct NonceState {
    expires: Instant,
    /// Highest nonce-count accepted; 0 = unused.
    max_nc: u32,
}

/// Issues nonces and remembers them for their lifetime, bounded in number.
#[derive(Debug)]
pub struct NonceStore {
    secret: [u8; 32],
    counter: u64,
    ttl: Duration,
    cap: usize,
    live: HashMap<String, NonceState>,
    order: VecDeque<(Instant, String)>,
}

/// Outcome of a nonce check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NonceCheck {
    Fresh,
    /// Unknown or expired: re-challenge with `stale=true`.
    Stale,
    /// `nc` not above the highest seen: a replay.
    Replay,
}

impl NonceStore {
    pub fn new(secret: [u8; 32], ttl: Duration, cap: usize) -> Self {
        Self {
            secret,
            counter: 0,
            ttl,
            cap: cap.max(1),
            live: HashMap::new(),
            order: VecDeque::new(),
        }
    }

    fn evict(&mut self, now: Instant) {
        while let Some((exp, _)) = self.order.front() {
            if *exp > now && self.order.len() < self.cap {
                break;
            }
            if let Some((_, n)) = self.order.pop_front() {
                self.live.remove(&n);
            }
        }
    }

    /// A fresh nonce: unpredictable without the secret, never repeated by this store.
    pub fn issue(&mut self, now: Instant) -> String {
        self.evict(now);
        self.counter += 1;
        let mut h = Sha256::new();
        h.update(self.secret);
        h.update(self.counter.to_be_bytes());
        let nonce = hex::encode(&h.finalize()[..16]);
        let expires = now + self.ttl;
        self.live
            .insert(nonce.clone(), NonceState { expires, max_nc: 0 });
        self.order.push_back((expires, nonce.clone()));
        nonce
    }

    /// Accepts `nc` for `nonce` if the nonce is live and `nc` is higher than any seen.
    pub fn check(&mut self, nonce: &str, nc: u32, now: Instant) -> NonceCheck {
        match self.live.get_mut(nonce) {
            Some(s) if s.expires > now => {
                if nc <= s.max_nc {
                    NonceCheck::Replay
                } else {
                    s.max_nc = nc;
                    NonceCheck::Fresh
                }
            }
            _ => NonceCheck::Stale,
        }
    }

    pub fn is_live(&self, nonce: &str, now: Instant) -> bool {
        self.live.get(nonce).is_some_and(|s| s.expires > now)
    }

    pub fn len(&self) -> usize {
        self.live.len()
    }

    pub fn is_empty(&self) -> bool {
        self.live.is_empty()
    }
}

/// Result of checking a request's credentials.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Authenticated as this user.
    Ok(String),
    /// Send a (new) challenge; `stale` tells the client its password was right.
    Challenge { stale: bool },
    /// Wrong password or unknown user: 403.
    Forbidden,
}

/// Digest authenticator over the configured users.
#[derive(Debug)]
pub struct Authenticator {
    pub realm: String,
    users: HashMap<String, String>,
    /// Offered algorithms, most preferred first (RFC 8760 §2.4: one challenge per algorithm).
    algorithms: Vec<Algorithm>,
    nonces: NonceStore,
}

impl Authenticator {
    pub fn new(
        realm: String,
        users: HashMap<String, String>,
        algorithms: Vec<Algorithm>,
        nonces: NonceStore,
    ) -> Self {
        let algorithms = if algorithms.is_empty() {
            vec![Algorithm::Sha256, Algorithm::Md5]
        } else {
            algorithms
        };
        Self {
            realm,
            users,
            algorithms,
            nonces,
        }
    }

    pub fn has_user(&self, user: &str) -> bool {
        self.users.contains_key(user)
    }

    /// Checks a credentials header value for `method`.
    pub fn verify(&mut self, method: &str, value: Option<&str>, now: Instant) -> Verdict {
        let Some(c) = value.and_then(parse_credentials) else {
            return Verdict::Challenge { stale: false };
        };
        if c.realm != self.realm {
            return Verdict::Challenge { stale: false };
        }
        let alg = match c.algorithm {
            None => Algorithm::Md5,
            Some(a) => match Algorithm::from_name(a) {
                Some(a) if self.algorithms.contains(&a) => a,
                _ => return Verdict::Challenge { stale: false },
            },
        };
        // An unknown user is checked against a password no one has, so that it takes the
        // same path (and about the same time) as a wrong password: no user enumeration.
        let known = self.users.get(c.username);
        let password = known
            .map(String::as_str)
            .unwrap_or("\u{0}no such user\u{0}");
        let qop = match (c.qop, c.nc, c.cnonce) {
            (Some(q), Some(nc), Some(cn)) if q.eq_ignore_ascii_case("auth") => Some((nc, cn)),
            (None, _, _) => None,
            _ => return Verdict::Challenge { stale: false },
        };
        let nc = match qop {
            Some((nc, _)) => match u32::from_str_radix(nc, 16) {
                Ok(n) if nc.len() == 8 => n,
                _ => return Verdict::Challenge { stale: false },
            },
            None => 1, // RFC 2069 style: the nonce is good once
        };
        let expected = digest_response(
            alg,
            c.username,
            &self.realm,
            password,
            method,
            c.uri,
            c.nonce,
            qop,
        );
        if known.is_none() || !expected.eq_ignore_ascii_case(c.response) {
            // A wrong answer to a nonce we never issued (or that expired) gets a fresh
            // challenge; a wrong answer to a live one is a wrong password.
            return if self.nonces.is_live(c.nonce, now) {
                Verdict::Forbidden
            } else {
                Verdict::Challenge { stale: false }
            };
        }
        match self.nonces.check(c.nonce, nc, now) {
            NonceCheck::Fresh => Verdict::Ok(c.username.to_string()),
            NonceCheck::Stale => Verdict::Challenge { stale: true },
            NonceCheck::Replay => Verdict::Challenge { stale: false },
        }
    }

    /// Challenge header lines (`WWW-Authenticate: ...` or `Proxy-Authenticate: ...`), one
    /// per algorithm, sharing one nonce.
    pub fn challenge(&mut self, proxy: bool, stale: bool, now: Instant) -> Vec<String> {
        let nonce = self.nonces.issue(now);
        let name = if proxy {
            "Proxy-Authenticate"
        } else {
            "WWW-Authenticate"
        };
        self.algorithms
            .iter()
            .map(|a| {
                let mut s = format!(
                    "{name}: Digest realm=\"{}\", nonce=\"{nonce}\", qop=\"auth\", algorithm={}",
                    self.realm,
                    a.name()
                );
                if stale {
                    let _ = write!(s, ", stale=true");
                }
                s
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn auth(algs: Vec<Algorithm>) -> Authenticator {
        let users = HashMap::from([("alice".to_string(), "secret".to_string())]);
        Authenticator::new(
            "hotline".into(),
            users,
            algs,
            NonceStore::new([7; 32], Duration::from_secs(30), 1000),
        )
    }

    fn nonce_of(ch: &str) -> String {
        let i = ch.find("nonce=\"").unwrap() + 7;
        ch[i..i + 32].to_string()
    }

    fn creds(alg: Algorithm, nonce: &str, nc: &str, password: &str) -> String {
        let resp = digest_response(
            alg,
            "alice",
            "hotline",
            password,
            "REGISTER",
            "sip:hotline",
            nonce,
            Some((nc, "abc")),
        );
        format!(
            "Digest username=\"alice\", realm=\"hotline\", nonce=\"{nonce}\", uri=\"sip:hotline\", response=\"{resp}\", algorithm={}, qop=auth, nc={nc}, cnonce=\"abc\"",
            alg.name()
        )
    }

    /// RFC 2617 §3.5 example (MD5, qop=auth) — an independent check of the formula.
    #[test]
    fn md5_matches_rfc2617_example() {
        let r = digest_response(
            Algorithm::Md5,
            "Mufasa",
            "testrealm@host.com",
            "Circle Of Life",
            "GET",
            "/dir/index.html",
            "dcd98b7102dd2f0e8b11d0f600bfb0c093",
            Some(("00000001", "0a4f113b")),
        );
        assert_eq!(r, "6629fae49393a05397450978507c4ef1");
    }

    /// RFC 7616 §3.9.1 example (SHA-256, qop=auth).
    #[test]
    fn sha256_matches_rfc7616_example() {
        let r = digest_response(
            Algorithm::Sha256,
            "Mufasa",
            "http-auth@example.org",
            "Circle of Life",
            "GET",
            "/dir/index.html",
            "7ypf/xlj9XXwfDPEoM4URrv/xwf94BcCAzFZH4GiTo0v",
            Some(("00000001", "f2/wE4q74E6zIJEtWaHKaf5wv/H5QzzpXusqGemxURZJ")),
        );
        assert_eq!(
            r,
            "753927fa0e85d155564e2e272a28d1802ca10daf4496794697cf8db5856cb6c1"
        );
    }

    #[test]
    fn sha256_and_md5_challenges_share_a_nonce_and_both_verify() {
        let mut a = auth(vec![]);
        let t0 = Instant::now();
        let ch = a.challenge(false, false, t0);
        assert_eq!(ch.len(), 2);
        assert!(ch[0].contains("algorithm=SHA-256"), "{}", ch[0]);
        assert!(ch[1].contains("algorithm=MD5"));
        let n = nonce_of(&ch[0]);
        assert_eq!(n, nonce_of(&ch[1]));
        let v = creds(Algorithm::Sha256, &n, "00000001", "secret");
        assert_eq!(
            a.verify("REGISTER", Some(&v), t0),
            Verdict::Ok("alice".into())
        );
        let v = creds(Algorithm::Md5, &n, "00000002", "secret");
        assert_eq!(
            a.verify("REGISTER", Some(&v), t0),
            Verdict::Ok("alice".into())
        );
    }

    #[test]
    fn replayed_nc_is_rechallenged_and_higher_nc_accepted() {
        let mut a = auth(vec![Algorithm::Md5]);
        let t0 = Instant::now();
        let n = nonce_of(&a.challenge(false, false, t0)[0]);
        let v1 = creds(Algorithm::Md5, &n, "00000001", "secret");
        assert!(matches!(
            a.verify("REGISTER", Some(&v1), t0),
            Verdict::Ok(_)
        ));
        assert_eq!(
            a.verify("REGISTER", Some(&v1), t0),
            Verdict::Challenge { stale: false }
        );
        // nc beyond 255 works (rsip's typed header would overflow here).
        let v = creds(Algorithm::Md5, &n, "00000100", "secret");
        assert!(matches!(a.verify("REGISTER", Some(&v), t0), Verdict::Ok(_)));
    }

    #[test]
    fn expired_nonce_is_stale_and_wrong_password_forbidden() {
        let mut a = auth(vec![Algorithm::Md5]);
        let t0 = Instant::now();
        let n = nonce_of(&a.challenge(false, false, t0)[0]);
        let wrong = creds(Algorithm::Md5, &n, "00000001", "nope");
        assert_eq!(a.verify("REGISTER", Some(&wrong), t0), Verdict::Forbidden);
        let ok = creds(Algorithm::Md5, &n, "00000002", "secret");
        assert_eq!(
            a.verify("REGISTER", Some(&ok), t0 + Duration::from_secs(31)),
            Verdict::Challenge { stale: true }
        );
        // A nonce we never issued.
        let forged = creds(
            Algorithm::Md5,
            "0123456789abcdef0123456789abcdef",
            "00000001",
            "secret",
        );
        assert_eq!(
            a.verify("REGISTER", Some(&forged), t0),
            Verdict::Challenge { stale: true }
        );
    }

    /// No user enumeration: an unknown user gets exactly what a wrong password gets, on a
    /// live nonce (403) and on a forged one (a plain re-challenge), and even the digest of
    /// the placeholder password does not let an unknown user in.
    #[test]
    fn unknown_user_and_wrong_password_get_the_same_answer() {
        let mut a = auth(vec![Algorithm::Md5]);
        let t0 = Instant::now();
        let forged = "0123456789abcdef0123456789abcdef";
        for nonce in [nonce_of(&a.challenge(false, false, t0)[0]), forged.into()] {
            let wrong = creds(Algorithm::Md5, &nonce, "00000001", "nope");
            let unknown = wrong.replace("username=\"alice\"", "username=\"mallory\"");
            let resp = digest_response(
                Algorithm::Md5,
                "mallory",
                "hotline",
                "\u{0}no such user\u{0}",
                "REGISTER",
                "sip:hotline",
                &nonce,
                Some(("00000001", "abc")),
            );
            let placeholder = format!(
                "Digest username=\"mallory\", realm=\"hotline\", nonce=\"{nonce}\", uri=\"sip:hotline\", response=\"{resp}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"abc\""
            );
            let w = a.verify("REGISTER", Some(&wrong), t0);
            assert_eq!(a.verify("REGISTER", Some(&unknown), t0), w);
            assert_eq!(a.verify("REGISTER", Some(&placeholder), t0), w);
        }
    }

    #[test]
    fn algorithm_not_offered_is_rechallenged() {
        let mut a = auth(vec![Algorithm::Sha256]);
        let t0 = Instant::now();
        let n = nonce_of(&a.challenge(false, false, t0)[0]);
        let v = creds(Algorithm::Md5, &n, "00000001", "secret");
        assert_eq!(
            a.verify("REGISTER", Some(&v), t0),
            Verdict::Challenge { stale: false }
        );
    }

    #[test]
    fn nonce_store_is_bounded() {
        let mut s = NonceStore::new([1; 32], Duration::from_secs(300), 10);
        let t0 = Instant::now();
        let first = s.issue(t0);
        for _ in 0..50 {
            s.issue(t0);
        }
        assert!(s.len() <= 10);
        assert_eq!(s.check(&first, 1, t0), NonceCheck::Stale);
    }

    #[test]
    fn credentials_parser_handles_commas_in_quotes_and_unquoted_values() {
        let c = parse_credentials(
            "Digest username=\"a,b\", realm=\"r\",nonce=\"n\", uri=\"sip:x\", response=\"00\", qop=auth, nc=00000001, cnonce=\"c\"",
        )
        .unwrap();
        assert_eq!(c.username, "a,b");
        assert_eq!(c.qop, Some("auth"));
        assert_eq!(c.nc, Some("00000001"));
        assert!(parse_credentials("Basic abc").is_none());
        assert!(parse_credentials("Digest username=\"unterminated").is_none());
    }
}
