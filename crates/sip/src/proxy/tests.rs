//! Core tests: the proxy/registrar driven with raw messages and a fake clock.

use super::*;
use crate::auth::digest_response;

pub(crate) struct Harness {
    pub core: Core,
    pub now: Instant,
    pub us: SocketAddr,
}

pub(crate) fn udp(local: SocketAddr, remote: &str) -> Flow {
    Flow {
        transport: Transport::Udp,
        local,
        remote: remote.parse().unwrap(),
    }
}

impl Harness {
    pub fn new(cfg: CoreConfig) -> Self {
        let us: SocketAddr = "127.0.0.1:5060".parse().unwrap();
        let now = Instant::now();
        Self {
            core: Core::new(cfg, vec![(Transport::Udp, us)], now),
            now,
            us,
        }
    }

    pub fn input(&mut self, from: &str, msg: &str) -> Vec<Transmit> {
        let flow = udp(self.us, from);
        self.core.handle_input(flow, msg.as_bytes(), self.now);
        std::iter::from_fn(|| self.core.poll_transmit()).collect()
    }

    pub fn advance(&mut self, d: Duration) -> Vec<Transmit> {
        let until = self.now + d;
        let mut out = vec![];
        while let Some(t) = self.core.poll_timeout() {
            if t > until {
                break;
            }
            self.now = t;
            self.core.handle_timeout(t);
            out.extend(std::iter::from_fn(|| self.core.poll_transmit()));
        }
        self.now = until;
        out
    }
}

pub(crate) fn text(t: &Transmit) -> String {
    String::from_utf8_lossy(&t.data).into_owned()
}

pub(crate) fn status(t: &Transmit) -> u16 {
    text(t)[8..11].parse().unwrap()
}

fn cfg() -> CoreConfig {
    CoreConfig {
        users: HashMap::from([
            ("alice".to_string(), "pw-a".to_string()),
            ("bob".to_string(), "pw-b".to_string()),
        ]),
        algorithms: vec![Algorithm::Md5],
        ..CoreConfig::default()
    }
}

fn register(user: &str, port: u16, cseq: u32, extra: &str) -> String {
    format!(
        "REGISTER sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-r{user}{cseq};rport\r\nFrom: <sip:{user}@127.0.0.1>;tag=f{user}\r\nTo: <sip:{user}@127.0.0.1>\r\nCall-ID: reg-{user}\r\nCSeq: {cseq} REGISTER\r\nContact: <sip:{user}@127.0.0.1:{port}>\r\nMax-Forwards: 70\r\n{extra}Content-Length: 0\r\n\r\n"
    )
}

fn nonce(resp: &str) -> String {
    let i = resp.find("nonce=\"").unwrap() + 7;
    resp[i..].split('"').next().unwrap().to_string()
}

fn authorization(
    user: &str,
    pw: &str,
    nonce: &str,
    nc: &str,
    header: &str,
    method: &str,
) -> String {
    let r = digest_response(
        Algorithm::Md5,
        user,
        "hotline",
        pw,
        method,
        "sip:127.0.0.1:5060",
        nonce,
        Some((nc, "cn")),
    );
    format!(
        "{header}: Digest username=\"{user}\", realm=\"hotline\", nonce=\"{nonce}\", uri=\"sip:127.0.0.1:5060\", response=\"{r}\", algorithm=MD5, qop=auth, nc={nc}, cnonce=\"cn\"\r\n"
    )
}

/// Registers `user` from `port` through the digest exchange.
fn do_register(h: &mut Harness, user: &str, pw: &str, port: u16) {
    let from = format!("127.0.0.1:{port}");
    let out = h.input(&from, &register(user, port, 1, ""));
    assert_eq!(status(&out[0]), 401, "{}", text(&out[0]));
    let n = nonce(&text(&out[0]));
    let auth = authorization(user, pw, &n, "00000001", "Authorization", "REGISTER");
    let out = h.input(&from, &register(user, port, 2, &auth));
    assert_eq!(status(&out[0]), 200, "{}", text(&out[0]));
}

#[test]
fn register_challenge_then_200_with_binding() {
    let mut h = Harness::new(cfg());
    let out = h.input("127.0.0.1:7000", &register("alice", 7000, 1, ""));
    assert_eq!(out.len(), 1);
    let t = text(&out[0]);
    assert!(t.starts_with("SIP/2.0 401 Unauthorized\r\n"), "{t}");
    assert!(
        t.contains("WWW-Authenticate: Digest realm=\"hotline\""),
        "{t}"
    );
    // rport filled in and received added (RFC 3581).
    assert!(t.contains(";received=127.0.0.1;rport=7000"), "{t}");
    assert_eq!(out[0].flow.remote, "127.0.0.1:7000".parse().unwrap());
    let n = nonce(&t);
    let auth = authorization("alice", "pw-a", &n, "00000001", "Authorization", "REGISTER");
    let out = h.input("127.0.0.1:7000", &register("alice", 7000, 2, &auth));
    let t = text(&out[0]);
    assert!(t.starts_with("SIP/2.0 200 OK\r\n"), "{t}");
    assert!(
        t.contains("Contact: <sip:alice@127.0.0.1:7000>;expires=3600"),
        "{t}"
    );
    assert_eq!(h.core.location().lookup("alice", h.now).len(), 1);
}

#[test]
fn register_wrong_password_is_403_and_nothing_bound() {
    let mut h = Harness::new(cfg());
    let out = h.input("127.0.0.1:7000", &register("alice", 7000, 1, ""));
    let n = nonce(&text(&out[0]));
    let auth = authorization(
        "alice",
        "wrong",
        &n,
        "00000001",
        "Authorization",
        "REGISTER",
    );
    let out = h.input("127.0.0.1:7000", &register("alice", 7000, 2, &auth));
    assert_eq!(status(&out[0]), 403);
    assert!(h.core.location().lookup("alice", h.now).is_empty());
}

#[test]
fn register_for_someone_else_is_403() {
    let mut h = Harness::new(cfg());
    let out = h.input("127.0.0.1:7000", &register("bob", 7000, 1, ""));
    let n = nonce(&text(&out[0]));
    // alice's valid credentials, bob's AoR.
    let auth = authorization("alice", "pw-a", &n, "00000001", "Authorization", "REGISTER");
    let out = h.input("127.0.0.1:7000", &register("bob", 7000, 2, &auth));
    assert_eq!(status(&out[0]), 403);
}

#[test]
fn retransmitted_register_gets_the_same_response_without_reprocessing() {
    let mut h = Harness::new(cfg());
    let first = h.input("127.0.0.1:7000", &register("alice", 7000, 1, ""));
    let again = h.input("127.0.0.1:7000", &register("alice", 7000, 1, ""));
    assert_eq!(first[0].data, again[0].data, "same nonce, same to-tag");
    assert_eq!(
        Counters::get(&h.core.counters().retransmissions_absorbed),
        1
    );
}

#[test]
fn trusted_source_registers_without_challenge_and_423_for_brief_expiry() {
    let mut c = cfg();
    c.trusted = vec!["127.0.0.0/8".parse().unwrap()];
    let mut h = Harness::new(c);
    let out = h.input(
        "127.0.0.1:7000",
        &register("carol", 7000, 1, "Expires: 10\r\n"),
    );
    let t = text(&out[0]);
    assert!(t.starts_with("SIP/2.0 423 Interval Too Brief"), "{t}");
    assert!(t.contains("Min-Expires: 60"), "{t}");
    let out = h.input(
        "127.0.0.1:7000",
        &register("carol", 7000, 2, "Expires: 120\r\n"),
    );
    assert!(text(&out[0]).contains(";expires=120"), "{}", text(&out[0]));
}

#[test]
fn options_to_us_is_200_with_allow_and_accept() {
    let mut h = Harness::new(cfg());
    let out = h.input(
        "127.0.0.1:7000",
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-o1\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: o1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
    );
    let t = text(&out[0]);
    assert!(t.starts_with("SIP/2.0 200 OK"), "{t}");
    assert!(
        t.contains("Allow: INVITE, ACK, CANCEL, BYE, OPTIONS, REGISTER"),
        "{t}"
    );
    assert!(t.contains("Accept: application/sdp"), "{t}");
    assert!(t.contains("To: <sip:127.0.0.1>;tag="), "{t}");
}

fn invite(to_user: &str, from_port: u16, branch: &str, extra: &str) -> String {
    format!(
        "INVITE sip:{to_user}@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{from_port};branch={branch}\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:{to_user}@127.0.0.1>\r\nCall-ID: call-{branch}\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@127.0.0.1:{from_port}>\r\nMax-Forwards: 70\r\n{extra}Content-Type: application/sdp\r\nContent-Length: 4\r\n\r\nv=0\n"
    )
}

fn trusted_cfg() -> CoreConfig {
    let mut c = cfg();
    c.trusted = vec!["127.0.0.0/8".parse().unwrap()];
    c
}

#[test]
fn invite_from_untrusted_is_challenged_407_then_forwarded() {
    let mut h = Harness::new(cfg());
    do_register(&mut h, "bob", "pw-b", 8000);
    let out = h.input("127.0.0.1:7000", &invite("bob", 7000, "z9hG4bK-i1", ""));
    let t = text(&out[0]);
    assert!(t.starts_with("SIP/2.0 407"), "{t}");
    assert!(t.contains("Proxy-Authenticate: Digest"), "{t}");
    // ACK for the 407 is absorbed by the server transaction.
    let ack = "ACK sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-i1\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>;tag=x\r\nCall-ID: call-z9hG4bK-i1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    assert!(h.input("127.0.0.1:7000", ack).is_empty());
    let n = nonce(&t);
    let r = digest_response(
        Algorithm::Md5,
        "alice",
        "hotline",
        "pw-a",
        "INVITE",
        "sip:bob@127.0.0.1:5060",
        &n,
        Some(("00000001", "cn")),
    );
    let auth = format!(
        "Proxy-Authorization: Digest username=\"alice\", realm=\"hotline\", nonce=\"{n}\", uri=\"sip:bob@127.0.0.1:5060\", response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"cn\"\r\n"
    );
    let out = h.input("127.0.0.1:7000", &invite("bob", 7000, "z9hG4bK-i2", &auth));
    assert_eq!(out.len(), 2, "forwarded INVITE + 100 Trying");
    assert_eq!(out[0].flow.remote, "127.0.0.1:8000".parse().unwrap());
    assert!(text(&out[0]).starts_with("INVITE sip:bob@127.0.0.1:8000 SIP/2.0"));
    assert_eq!(status(&out[1]), 100);
}

/// Drives a whole proxied call: INVITE/100/180/200/ACK/BYE/200, checking headers on the way.
#[test]
fn proxied_call_between_registered_users() {
    let mut h = Harness::new(trusted_cfg());
    do_register_trusted(&mut h, "bob", 8000);
    let out = h.input("127.0.0.1:7000", &invite("bob", 7000, "z9hG4bK-c1", ""));
    assert_eq!(out.len(), 2);
    let fwd = text(&out[0]);
    assert!(
        fwd.starts_with("INVITE sip:bob@127.0.0.1:8000 SIP/2.0\r\n"),
        "{fwd}"
    );
    assert!(
        fwd.contains("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-hl"),
        "{fwd}"
    );
    assert!(
        fwd.contains("Record-Route: <sip:127.0.0.1:5060;lr>"),
        "{fwd}"
    );
    assert!(fwd.contains("Max-Forwards: 69"), "{fwd}");
    assert!(fwd.ends_with("\r\n\r\nv=0\n"), "body kept: {fwd}");
    let branch = fwd
        .split("branch=")
        .nth(1)
        .unwrap()
        .split([';', '\r'])
        .next()
        .unwrap()
        .to_string();
    let resp = |code: &str, tag: &str| {
        format!(
            "SIP/2.0 {code}\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch};rport=5060\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-c1;received=127.0.0.1\r\nRecord-Route: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>{tag}\r\nCall-ID: call-z9hG4bK-c1\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:8000>\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let out = h.input("127.0.0.1:8000", &resp("180 Ringing", ";tag=b1"));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flow.remote, "127.0.0.1:7000".parse().unwrap());
    let t = text(&out[0]);
    assert!(!t.contains("z9hG4bK-hl"), "our Via removed: {t}");
    assert!(
        t.contains("Via: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-c1"),
        "{t}"
    );
    let out = h.input("127.0.0.1:8000", &resp("200 OK", ";tag=b1"));
    assert_eq!(status(&out[0]), 200);
    // 2xx retransmission from the UAS is forwarded too.
    let out = h.input("127.0.0.1:8000", &resp("200 OK", ";tag=b1"));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), 200);
    // ACK and BYE with our Route.
    let in_dialog = |method: &str, branch: &str, cseq: u32| {
        format!(
            "{method} sip:bob@127.0.0.1:8000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch={branch}\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\nCall-ID: call-z9hG4bK-c1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
    };
    let out = h.input("127.0.0.1:7000", &in_dialog("ACK", "z9hG4bK-ack", 1));
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flow.remote, "127.0.0.1:8000".parse().unwrap());
    assert!(!text(&out[0]).contains("Route:"), "{}", text(&out[0]));
    let out = h.input("127.0.0.1:7000", &in_dialog("BYE", "z9hG4bK-bye", 2));
    assert_eq!(out.len(), 1);
    let bye = text(&out[0]);
    let bbranch = bye
        .split("branch=")
        .nth(1)
        .unwrap()
        .split([';', '\r'])
        .next()
        .unwrap()
        .to_string();
    let ok = format!(
        "SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={bbranch}\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-bye\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\nCall-ID: call-z9hG4bK-c1\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n"
    );
    let out = h.input("127.0.0.1:8000", &ok);
    assert_eq!(status(&out[0]), 200);
    assert_eq!(out[0].flow.remote, "127.0.0.1:7000".parse().unwrap());
    // Everything is cleaned up once the timers have run.
    h.advance(Duration::from_secs(40));
    assert_eq!(h.core.transactions(), (0, 0));
}

fn do_register_trusted(h: &mut Harness, user: &str, port: u16) {
    let out = h.input(&format!("127.0.0.1:{port}"), &register(user, port, 1, ""));
    assert_eq!(status(&out[0]), 200, "{}", text(&out[0]));
}

#[test]
fn unknown_user_404_and_unregistered_user_480() {
    let mut h = Harness::new(trusted_cfg());
    let out = h.input("127.0.0.1:7000", &invite("nobody", 7000, "z9hG4bK-u1", ""));
    assert_eq!(status(&out[0]), 404);
    let out = h.input("127.0.0.1:7000", &invite("bob", 7000, "z9hG4bK-u2", ""));
    assert_eq!(status(&out[0]), 480);
}

#[test]
fn unknown_user_goes_to_static_route() {
    let mut c = trusted_cfg();
    c.static_route = Some(Target {
        transport: Transport::Udp,
        addr: "127.0.0.1:5080".parse().unwrap(),
    });
    let mut h = Harness::new(c);
    let out = h.input("127.0.0.1:7000", &invite("5551234", 7000, "z9hG4bK-s1", ""));
    assert_eq!(out[0].flow.remote, "127.0.0.1:5080".parse().unwrap());
    assert!(text(&out[0]).starts_with("INVITE sip:5551234@127.0.0.1:5060 SIP/2.0"));
}

#[test]
fn max_forwards_zero_is_483() {
    let mut h = Harness::new(trusted_cfg());
    do_register_trusted(&mut h, "bob", 8000);
    let msg = invite("bob", 7000, "z9hG4bK-m1", "").replace("Max-Forwards: 70", "Max-Forwards: 0");
    let out = h.input("127.0.0.1:7000", &msg);
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), 483);
}

#[test]
fn request_coming_back_unchanged_is_482_loop_detected() {
    let mut c = trusted_cfg();
    c.static_route = Some(Target {
        transport: Transport::Udp,
        addr: "127.0.0.1:5060".parse().unwrap(), // routes to ourselves
    });
    let mut h = Harness::new(c);
    let out = h.input("127.0.0.1:7000", &invite("x", 7000, "z9hG4bK-l1", ""));
    let fwd = text(&out[0]);
    let back = h.input("127.0.0.1:5060", &fwd);
    let last = back.last().unwrap();
    assert_eq!(status(last), 482, "{}", text(last));
}

#[test]
fn cancel_while_ringing_is_propagated_and_487_relayed() {
    let mut h = Harness::new(trusted_cfg());
    do_register_trusted(&mut h, "bob", 8000);
    let out = h.input("127.0.0.1:7000", &invite("bob", 7000, "z9hG4bK-x1", ""));
    let fwd = text(&out[0]);
    let branch = fwd
        .split("branch=")
        .nth(1)
        .unwrap()
        .split([';', '\r'])
        .next()
        .unwrap()
        .to_string();
    let cancel = "CANCEL sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-x1\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: call-z9hG4bK-x1\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    // Before any provisional from downstream, the CANCEL is held (§9.1).
    let out = h.input("127.0.0.1:7000", cancel);
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), 200);
    assert!(text(&out[0]).contains("CSeq: 1 CANCEL"));
    let ringing = format!(
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-x1\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\nCall-ID: call-z9hG4bK-x1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    let out = h.input("127.0.0.1:8000", &ringing);
    // The CANCEL goes downstream with the INVITE's branch, and the 180 upstream.
    let c = out
        .iter()
        .find(|t| text(t).starts_with("CANCEL "))
        .expect("CANCEL sent");
    assert!(text(c).contains(&format!("branch={branch}")));
    assert_eq!(c.flow.remote, "127.0.0.1:8000".parse().unwrap());
    assert!(out.iter().any(|t| text(t).starts_with("SIP/2.0 180")));
    let terminated = ringing.replace("180 Ringing", "487 Request Terminated");
    let out = h.input("127.0.0.1:8000", &terminated);
    let ack = out
        .iter()
        .find(|t| text(t).starts_with("ACK "))
        .expect("ACK for 487");
    assert!(text(ack).contains("CSeq: 1 ACK"));
    assert!(text(ack).contains("To: <sip:bob@127.0.0.1>;tag=b1"));
    assert!(
        out.iter()
            .any(|t| t.flow.remote.port() == 7000 && status(t) == 487)
    );
}

#[test]
fn cancel_for_unknown_transaction_is_481() {
    let mut h = Harness::new(trusted_cfg());
    let cancel = "CANCEL sip:bob@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-none\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: nope\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let out = h.input("127.0.0.1:7000", cancel);
    assert_eq!(status(&out[0]), 481);
}

#[test]
fn downstream_silence_times_out_with_408_after_retransmissions() {
    let mut h = Harness::new(trusted_cfg());
    do_register_trusted(&mut h, "bob", 8000);
    let out = h.input("127.0.0.1:7000", &invite("bob", 7000, "z9hG4bK-t1", ""));
    assert_eq!(out.len(), 2);
    let later = h.advance(Duration::from_secs(33));
    let retrans = later
        .iter()
        .filter(|t| text(t).starts_with("INVITE"))
        .count();
    assert_eq!(retrans, 6, "Timer A: 0.5, 1.5, 3.5, 7.5, 15.5, 31.5 s");
    let resp: Vec<_> = later
        .iter()
        .filter(|t| t.flow.remote.port() == 7000)
        .collect();
    assert_eq!(status(resp[0]), 408);
}

#[test]
fn rfc2543_request_without_magic_cookie_matches_retransmission() {
    let mut h = Harness::new(trusted_cfg());
    let msg = "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: old\r\nCSeq: 7 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let a = h.input("127.0.0.1:7000", msg);
    let b = h.input("127.0.0.1:7000", msg);
    assert_eq!(status(&a[0]), 200);
    assert_eq!(a[0].data, b[0].data);
    assert_eq!(
        Counters::get(&h.core.counters().retransmissions_absorbed),
        1
    );
}

/// Malformed input through the core: each gets its 4xx/5xx when a response can be formed,
/// is dropped and counted otherwise; the core keeps serving afterwards.
#[test]
fn malformed_requests_get_their_error_or_are_dropped_and_counted() {
    let mut h = Harness::new(trusted_cfg());
    let ok_head = "Via: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-{b}\r\nFrom: <sip:a@127.0.0.1>;tag=1\r\nTo: <sip:b@127.0.0.1>\r\nCall-ID: {b}\r\n";
    let cases: Vec<(String, Option<u16>)> = vec![
        // wrong Content-Length
        (format!("INVITE sip:b@127.0.0.1 SIP/2.0\r\n{ok_head}CSeq: 1 INVITE\r\nContent-Length: 500\r\n\r\nv=0"), Some(400)),
        // duplicate Call-ID
        (format!("OPTIONS sip:b@127.0.0.1 SIP/2.0\r\n{ok_head}Call-ID: dup\r\nCSeq: 1 OPTIONS\r\n\r\n"), Some(400)),
        // unknown URI scheme (RFC 4475 §3.3.6 unksm)
        (format!("OPTIONS nobody:b@127.0.0.1 SIP/2.0\r\n{ok_head}CSeq: 1 OPTIONS\r\n\r\n"), Some(416)),
        // unknown method
        (format!("FROBNICATE sip:b@127.0.0.1 SIP/2.0\r\n{ok_head}CSeq: 1 FROBNICATE\r\n\r\n"), Some(501)),
        // CSeq method mismatch
        (format!("OPTIONS sip:b@127.0.0.1 SIP/2.0\r\n{ok_head}CSeq: 1 INVITE\r\n\r\n"), Some(400)),
        // huge header: 513
        (format!("OPTIONS sip:b@127.0.0.1 SIP/2.0\r\n{ok_head}CSeq: 1 OPTIONS\r\nSubject: {}\r\n\r\n", "y".repeat(66_000)), Some(513)),
        // missing Call-ID: no response can be formed
        (format!("OPTIONS sip:b@127.0.0.1 SIP/2.0\r\n{}CSeq: 1 OPTIONS\r\n\r\n", ok_head.replace("Call-ID: {b}\r\n", "")), None),
        // no Via: nowhere to answer
        ("OPTIONS sip:b@127.0.0.1 SIP/2.0\r\nFrom: <sip:a@x>;tag=1\r\nTo: <sip:b@x>\r\nCall-ID: nv\r\nCSeq: 1 OPTIONS\r\n\r\n".to_string(), None),
        // garbage
        ("\u{1}\u{2}garbage without structure".to_string(), None),
        // a malformed response is never answered
        ("SIP/2.0 200 OK\r\nVia: broken\r\n\r\n".to_string(), None),
    ];
    let mut dropped = 0;
    for (i, (m, want)) in cases.iter().enumerate() {
        let m = m.replace("{b}", &format!("case{i}"));
        let out = h.input("127.0.0.1:7000", &m);
        match want {
            Some(code) => {
                assert_eq!(out.len(), 1, "case {i}: {m:.80}");
                assert_eq!(status(&out[0]), *code, "case {i}: {}", text(&out[0]));
                assert!(
                    text(&out[0]).contains(&format!("Call-ID: case{i}")),
                    "case {i}"
                );
            }
            None => {
                assert!(out.is_empty(), "case {i}: {:?}", out.first().map(text));
                dropped += 1;
            }
        }
    }
    let c = h.core.counters();
    // Everything but the unknown-scheme request (well-formed, answered 416 by routing) is
    // malformed; the malformed response (last case) is counted and dropped too.
    assert_eq!(Counters::get(&c.malformed), cases.len() as u64 - 1);
    assert_eq!(Counters::get(&c.dropped), dropped);
    let out = h.input(
        "127.0.0.1:7000",
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-after\r\nFrom: <sip:x@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: after\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n",
    );
    assert_eq!(status(&out[0]), 200);
}

/// Any bytes at all: no panic, and whatever is sent back is a response.
#[test]
fn arbitrary_bytes_never_panic() {
    use proptest::prelude::*;
    let mut runner = proptest::test_runner::TestRunner::new(proptest::test_runner::Config {
        cases: 2000,
        ..Default::default()
    });
    runner
        .run(&proptest::collection::vec(any::<u8>(), 0..600), |bytes| {
            let mut h = Harness::new(trusted_cfg());
            h.core
                .handle_input(udp(h.us, "127.0.0.1:7000"), &bytes, h.now);
            while let Some(t) = h.core.poll_transmit() {
                prop_assert!(t.data.starts_with(b"SIP/2.0 "));
            }
            Ok(())
        })
        .unwrap();
}

#[test]
fn admission_control_refuses_with_503_before_creating_state() {
    let mut c = trusted_cfg();
    c.max_transactions = 2;
    let mut h = Harness::new(c);
    for i in 0..2 {
        let out = h.input(
            "127.0.0.1:7000",
            &invite("nobody", 7000, &format!("z9hG4bK-a{i}"), ""),
        );
        assert_eq!(status(&out[0]), 404);
    }
    let out = h.input("127.0.0.1:7000", &invite("nobody", 7000, "z9hG4bK-a2", ""));
    let t = text(&out[0]);
    assert!(t.starts_with("SIP/2.0 503"), "{t}");
    assert!(t.contains("Retry-After: 5"), "{t}");
    assert_eq!(h.core.transactions().0, 2);
    // Once the transactions end (ACK never came: Timer H), requests are served again.
    h.advance(Duration::from_secs(40));
    let out = h.input("127.0.0.1:7000", &invite("nobody", 7000, "z9hG4bK-a3", ""));
    assert_eq!(status(&out[0]), 404);
}

#[test]
fn ringing_forever_hits_timer_c_cancel_downstream_and_408_upstream() {
    let mut h = Harness::new(trusted_cfg());
    do_register_trusted(&mut h, "bob", 8000);
    let out = h.input("127.0.0.1:7000", &invite("bob", 7000, "z9hG4bK-tc", ""));
    let fwd = text(&out[0]);
    let branch = fwd
        .split("branch=")
        .nth(1)
        .unwrap()
        .split([';', '\r'])
        .next()
        .unwrap()
        .to_string();
    let ringing = format!(
        "SIP/2.0 180 Ringing\r\nVia: SIP/2.0/UDP 127.0.0.1:5060;branch={branch}\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-tc\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\nCall-ID: call-z9hG4bK-tc\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    h.input("127.0.0.1:8000", &ringing);
    assert!(
        h.advance(Duration::from_secs(180)).is_empty(),
        "still ringing at 3 min"
    );
    let out = h.advance(Duration::from_secs(2));
    let cancel = out
        .iter()
        .find(|t| text(t).starts_with("CANCEL "))
        .expect("CANCEL on Timer C");
    assert_eq!(cancel.flow.remote.port(), 8000);
    let up = out
        .iter()
        .find(|t| t.flow.remote.port() == 7000)
        .expect("408 upstream");
    assert_eq!(status(up), 408);
}

/// Caller on UDP, callee registered over TCP: the INVITE leaves on TCP with our Via for
/// TCP and two Record-Routes (RFC 5658), the TCP one on top, facing the callee.
#[test]
fn transport_change_double_record_routes() {
    let us_tcp: SocketAddr = "127.0.0.1:5060".parse().unwrap();
    let now = Instant::now();
    let mut core = Core::new(
        trusted_cfg(),
        vec![
            (Transport::Udp, "127.0.0.1:5060".parse().unwrap()),
            (Transport::Tcp, us_tcp),
        ],
        now,
    );
    let tcp_flow = Flow {
        transport: Transport::Tcp,
        local: us_tcp,
        remote: "127.0.0.1:40001".parse().unwrap(),
    };
    let reg = register("bob", 40001, 1, "").replace("SIP/2.0/UDP", "SIP/2.0/TCP");
    core.handle_input(tcp_flow, reg.as_bytes(), now);
    let out = core.poll_transmit().unwrap();
    assert_eq!(out.flow, tcp_flow, "response on the same connection");
    core.handle_input(
        udp("127.0.0.1:5060".parse().unwrap(), "127.0.0.1:7000"),
        invite("bob", 7000, "z9hG4bK-dr", "").as_bytes(),
        now,
    );
    let fwd = core.poll_transmit().unwrap();
    assert_eq!(
        fwd.flow, tcp_flow,
        "request to the contact reuses the registration's connection"
    );
    let t = text(&fwd);
    assert!(
        t.contains("Via: SIP/2.0/TCP 127.0.0.1:5060;branch=z9hG4bK-hl"),
        "{t}"
    );
    assert!(
        t.contains("Record-Route: <sip:127.0.0.1:5060;transport=tcp;lr>\r\nRecord-Route: <sip:127.0.0.1:5060;lr>\r\n"),
        "{t}"
    );
}

/// A browser registered over WebSocket with a `*.invalid` contact, and a phone over TLS
/// whose contact names its own listening port: requests reach both over the connection
/// they registered on (Hotline dials neither), with Via and Record-Route for that
/// transport.
/// Only Hotline's own rejoin INVITE may make a desk page answer by itself: the mark is
/// taken off every request the proxy relays (initial and in-dialog, any spelling).
#[test]
fn relayed_requests_lose_the_rejoin_mark() {
    let mut h = Harness::new(trusted_cfg());
    do_register_trusted(&mut h, "bob", 8000);
    let forged =
        "X-Hotline-Rejoin: call-z9hG4bK-live\r\nx-hotline-rejoin: again\r\nX-Other: kept\r\n";
    let out = h.input(
        "127.0.0.1:7000",
        &invite("bob", 7000, "z9hG4bK-rj1", forged),
    );
    assert_eq!(out.len(), 2, "forwarded INVITE + 100 Trying");
    let fwd = text(&out[0]);
    assert!(fwd.starts_with("INVITE sip:bob@127.0.0.1:8000"), "{fwd}");
    assert!(
        !fwd.to_ascii_lowercase().contains("x-hotline-rejoin"),
        "{fwd}"
    );
    assert!(
        fwd.contains("X-Other: kept\r\n"),
        "other headers stay: {fwd}"
    );
    // An in-dialog request (a re-INVITE through our Record-Route) loses it too.
    let reinvite = format!(
        "INVITE sip:bob@127.0.0.1:8000 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-rj2\r\nRoute: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\nCall-ID: call-z9hG4bK-rj1\r\nCSeq: 2 INVITE\r\nMax-Forwards: 70\r\n{forged}Content-Length: 0\r\n\r\n"
    );
    let out = h.input("127.0.0.1:7000", &reinvite);
    let fwd = text(&out[0]);
    assert!(fwd.starts_with("INVITE sip:bob@127.0.0.1:8000"), "{fwd}");
    assert!(
        !fwd.to_ascii_lowercase().contains("x-hotline-rejoin"),
        "{fwd}"
    );
}

#[test]
fn websocket_and_tls_contacts_are_reached_over_their_connections() {
    let now = Instant::now();
    let ws_local: SocketAddr = "127.0.0.1:8088".parse().unwrap();
    let tls_local: SocketAddr = "127.0.0.1:5061".parse().unwrap();
    let mut core = Core::new(
        trusted_cfg(),
        vec![
            (Transport::Udp, "127.0.0.1:5060".parse().unwrap()),
            (Transport::Ws, ws_local),
            (Transport::Tls, tls_local),
        ],
        now,
    );
    let ws_flow = Flow {
        transport: Transport::Ws,
        local: ws_local,
        remote: "127.0.0.1:40002".parse().unwrap(),
    };
    let reg = register("bob", 40002, 1, "")
        .replace("SIP/2.0/UDP 127.0.0.1:40002", "SIP/2.0/WS df7jal23ls0d.invalid")
        .replace(
            "Contact: <sip:bob@127.0.0.1:40002>",
            "Contact: <sip:r1f0@df7jal23ls0d.invalid;transport=ws>;+sip.instance=\"<urn:uuid:1>\";expires=600",
        );
    core.handle_input(ws_flow, reg.as_bytes(), now);
    let ok = core.poll_transmit().unwrap();
    assert_eq!(ok.flow, ws_flow);
    assert!(
        text(&ok).contains("Contact: <sip:r1f0@df7jal23ls0d.invalid;transport=ws>;expires=600"),
        "{}",
        text(&ok)
    );
    core.handle_input(
        udp("127.0.0.1:5060".parse().unwrap(), "127.0.0.1:7000"),
        invite("bob", 7000, "z9hG4bK-ws1", "").as_bytes(),
        now,
    );
    let fwd = core.poll_transmit().unwrap();
    assert_eq!(fwd.flow, ws_flow, "INVITE on the browser's WebSocket");
    let t = text(&fwd);
    assert!(
        t.to_ascii_lowercase()
            .starts_with("invite sip:r1f0@df7jal23ls0d.invalid;transport=ws sip/2.0\r\n"),
        "{t}"
    );
    assert!(
        t.contains("Via: SIP/2.0/WS 127.0.0.1:8088;branch=z9hG4bK-hl"),
        "{t}"
    );
    assert!(
        t.contains("Record-Route: <sip:127.0.0.1:8088;transport=ws;lr>\r\nRecord-Route: <sip:127.0.0.1:5060;lr>\r\n"),
        "{t}"
    );

    while core.poll_transmit().is_some() {} // 100 Trying to the caller
    // TLS: the phone's Contact names its listening port, not the connection's source
    // port; Hotline still uses the connection.
    let tls_flow = Flow {
        transport: Transport::Tls,
        local: tls_local,
        remote: "127.0.0.1:40003".parse().unwrap(),
    };
    let reg = register("alice", 5071, 1, "")
        .replace("SIP/2.0/UDP", "SIP/2.0/TLS")
        .replace(
            "Contact: <sip:alice@127.0.0.1:5071>",
            "Contact: <sips:alice@127.0.0.1:5071>",
        );
    core.handle_input(tls_flow, reg.as_bytes(), now);
    let ok = core.poll_transmit().unwrap();
    assert_eq!((ok.flow, status(&ok)), (tls_flow, 200), "{}", text(&ok));
    core.handle_input(
        udp("127.0.0.1:5060".parse().unwrap(), "127.0.0.1:7000"),
        invite("alice", 7000, "z9hG4bK-tls1", "").as_bytes(),
        now,
    );
    let fwd = core.poll_transmit().unwrap();
    assert_eq!(
        fwd.flow,
        tls_flow,
        "INVITE on the phone's TLS connection: {}",
        text(&fwd)
    );
    assert!(
        text(&fwd).contains("Via: SIP/2.0/TLS 127.0.0.1:5061;branch="),
        "{}",
        text(&fwd)
    );
}

/// Authenticated as alice, claiming to be bob in From: refused.
#[test]
fn invite_credentials_must_match_from_user() {
    let mut h = Harness::new(cfg());
    do_register(&mut h, "bob", "pw-b", 8000);
    let spoof = |extra: &str, branch: &str| {
        invite("bob", 7000, branch, extra).replace("From: <sip:alice@", "From: <sip:bob@")
    };
    let out = h.input("127.0.0.1:7000", &spoof("", "z9hG4bK-sp1"));
    let n = nonce(&text(&out[0]));
    let r = digest_response(
        Algorithm::Md5,
        "alice",
        "hotline",
        "pw-a",
        "INVITE",
        "sip:bob@127.0.0.1:5060",
        &n,
        Some(("00000001", "cn")),
    );
    let auth = format!(
        "Proxy-Authorization: Digest username=\"alice\", realm=\"hotline\", nonce=\"{n}\", uri=\"sip:bob@127.0.0.1:5060\", response=\"{r}\", algorithm=MD5, qop=auth, nc=00000001, cnonce=\"cn\"\r\n"
    );
    let out = h.input("127.0.0.1:7000", &spoof(&auth, "z9hG4bK-sp2"));
    assert_eq!(out.len(), 1, "nothing forwarded");
    assert_eq!(status(&out[0]), 403);
}

/// Several contacts: the call goes to the one with the highest q-value.
#[test]
fn call_goes_to_highest_q_contact() {
    let mut h = Harness::new(trusted_cfg());
    let reg = register("bob", 8000, 1, "")
        .replace(
            "Contact: <sip:bob@127.0.0.1:8000>",
            "Contact: <sip:bob@127.0.0.1:8001>;q=0.2, <sip:bob@127.0.0.1:8002>;q=0.9\r\nContact: <sip:bob@127.0.0.1:8003>;q=0.5",
        );
    let out = h.input("127.0.0.1:8000", &reg);
    let t = text(&out[0]);
    assert_eq!(t.matches("Contact: ").count(), 3, "{t}");
    assert!(
        t.contains("<sip:bob@127.0.0.1:8002>;expires=3600;q=0.9"),
        "{t}"
    );
    let out = h.input("127.0.0.1:7000", &invite("bob", 7000, "z9hG4bK-q1", ""));
    assert!(
        text(&out[0]).starts_with("INVITE sip:bob@127.0.0.1:8002 SIP/2.0"),
        "{}",
        text(&out[0])
    );
    assert_eq!(out[0].flow.remote, "127.0.0.1:8002".parse().unwrap());
}

// ---- the application interface (B2BUA) ----

fn app_cfg() -> CoreConfig {
    let mut c = trusted_cfg();
    c.numbers = HashSet::from(["4000".to_string()]);
    c
}

fn in_dialog(method: &str, branch: &str, cseq: u32) -> String {
    format!(
        "{method} sip:4000@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch={branch}\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:4000@127.0.0.1>;tag=hl-call\r\nCall-ID: call-z9hG4bK-n1\r\nCSeq: {cseq} {method}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

fn app_events(h: &mut Harness) -> Vec<AppEvent> {
    std::iter::from_fn(|| h.core.poll_app_event()).collect()
}

fn request_tx(ev: &AppEvent) -> (ServerTxId, Method) {
    match ev {
        AppEvent::Request { tx, request, .. } => (*tx, request.method),
        other => panic!("expected a request, got {other:?}"),
    }
}

/// A browser (DTLS-SRTP offer) calling a user on a plain phone goes to the application
/// (its gateway answers); a plain offer to the same user, a browser calling a browser,
/// and any of it without an application are proxied as before.
#[test]
fn browser_calling_a_phone_user_goes_to_the_application() {
    let webrtc =
        "v=0\r\ns=-\r\nt=0 0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0 101\r\na=fingerprint:sha-256 AA\r\n";
    let invite_with = |to: &str, branch: &str, sdp: &str| {
        invite(to, 7000, branch, "").replace(
            "Content-Length: 4\r\n\r\nv=0\n",
            &format!("Content-Length: {}\r\n\r\n{sdp}", sdp.len()),
        )
    };
    for app in [true, false] {
        let mut h = Harness::new(app_cfg());
        h.core.set_gateway_browsers(app);
        do_register_trusted(&mut h, "bob", 8000);
        let out = h.input("127.0.0.1:7000", &invite_with("bob", "z9hG4bK-wb1", webrtc));
        let delivered = app_events(&mut h);
        if app {
            assert_eq!(delivered.len(), 1, "to the application");
            assert_eq!(request_tx(&delivered[0]).1, Method::Invite);
            assert!(
                out.iter().all(|t| t.flow.remote.port() != 8000),
                "not proxied to bob's phone"
            );
        } else {
            assert!(delivered.is_empty());
            assert_eq!(
                out[0].flow.remote.port(),
                8000,
                "proxied without an application"
            );
        }
        let out = h.input(
            "127.0.0.1:7000",
            &invite_with("bob", "z9hG4bK-wb2", "v=0\r\nm=audio 4000 RTP/AVP 0\r\n"),
        );
        assert!(app_events(&mut h).is_empty(), "plain offer");
        assert_eq!(out[0].flow.remote.port(), 8000, "plain offer proxied");
    }
    // A browser calling a browser: its SDP is of use there, so it is proxied.
    let mut h = Harness::new(app_cfg());
    h.core.set_gateway_browsers(true);
    let reg = register("carol", 8002, 1, "").replace(
        "Contact: <sip:carol@127.0.0.1:8002>",
        "Contact: <sip:c1@x.invalid;transport=ws>",
    );
    assert_eq!(status(&h.input("127.0.0.1:8002", &reg)[0]), 200);
    let out = h.input(
        "127.0.0.1:7000",
        &invite_with("carol", "z9hG4bK-wb3", webrtc),
    );
    assert!(app_events(&mut h).is_empty(), "browser to browser");
    assert!(
        text(&out[0])
            .to_ascii_lowercase()
            .starts_with("invite sip:c1@x.invalid;transport=ws"),
        "{}",
        text(&out[0])
    );
}

/// INVITE to a number: 100 from the core, 200 from the application retransmitted until
/// the ACK, then BYE delivered in-dialog; nothing is proxied.
#[test]
fn invite_to_number_is_delivered_answered_and_acked() {
    let mut h = Harness::new(app_cfg());
    let out = h.input("127.0.0.1:7000", &invite("4000", 7000, "z9hG4bK-n1", ""));
    assert_eq!(out.len(), 1);
    assert_eq!(status(&out[0]), 100);
    let evs = app_events(&mut h);
    assert_eq!(evs.len(), 1);
    assert!(matches!(&evs[0], AppEvent::Request { local, .. } if local == "127.0.0.1:5060"));
    let (tx, m) = request_tx(&evs[0]);
    assert_eq!(m, Method::Invite);
    assert_eq!(h.core.app_dialogs(), 1);
    let resp = AppResponse::new(200, "OK")
        .tag("hl-call")
        .header("Contact: <sip:4000@127.0.0.1:5060>")
        .body("application/sdp", "v=0\r\n");
    h.core.respond(tx, resp, h.now).unwrap();
    let out: Vec<_> = std::iter::from_fn(|| h.core.poll_transmit()).collect();
    assert_eq!(out.len(), 1);
    let t = text(&out[0]);
    assert!(t.starts_with("SIP/2.0 200 OK\r\n"), "{t}");
    assert!(
        t.contains("To: <sip:4000@127.0.0.1>;tag=hl-call\r\n"),
        "{t}"
    );
    assert!(
        t.contains("Content-Type: application/sdp\r\nContent-Length: 5\r\n\r\nv=0\r\n"),
        "{t}"
    );
    assert_eq!(out[0].flow.remote, "127.0.0.1:7000".parse().unwrap());
    // No ACK yet: the 2xx goes again at T1, then 2*T1.
    let again = h.advance(Duration::from_millis(500));
    assert_eq!(again.len(), 1);
    assert_eq!(again[0].data, out[0].data);
    assert_eq!(h.advance(Duration::from_millis(999)).len(), 0);
    assert_eq!(h.advance(Duration::from_millis(1)).len(), 1);
    // ACK stops the retransmissions and goes up.
    assert!(
        h.input("127.0.0.1:7000", &in_dialog("ACK", "z9hG4bK-a1", 1))
            .is_empty()
    );
    assert!(matches!(app_events(&mut h)[..], [AppEvent::Ack { .. }]));
    assert!(h.advance(Duration::from_secs(40)).is_empty());
    // BYE in the dialog is the application's too.
    assert!(
        h.input("127.0.0.1:7000", &in_dialog("BYE", "z9hG4bK-b1", 2))
            .is_empty()
    );
    let evs = app_events(&mut h);
    let (bye, m) = request_tx(&evs[0]);
    assert_eq!(m, Method::Bye);
    h.core
        .respond(bye, AppResponse::new(200, "OK"), h.now)
        .unwrap();
    let out: Vec<_> = std::iter::from_fn(|| h.core.poll_transmit()).collect();
    assert!(text(&out[0]).starts_with("SIP/2.0 200 OK"));
    // Answering twice is refused.
    assert!(matches!(
        h.core.respond(bye, AppResponse::new(200, "OK"), h.now),
        Err(Error::UnknownTransaction)
    ));
    h.core.forget_dialog("call-z9hG4bK-n1");
    assert_eq!(h.core.app_dialogs(), 0);
    assert_eq!(Counters::get(&h.core.counters().forwarded), 0);
    // After forgetting, a stray BYE is no longer the application's (no user: 404).
    h.input("127.0.0.1:7000", &in_dialog("BYE", "z9hG4bK-b2", 3));
    assert!(app_events(&mut h).is_empty());
}

#[test]
fn cancel_before_answer_is_487_and_reported() {
    let mut h = Harness::new(app_cfg());
    h.input("127.0.0.1:7000", &invite("4000", 7000, "z9hG4bK-n1", ""));
    let (tx, _) = request_tx(&app_events(&mut h)[0]);
    let cancel = "CANCEL sip:4000@127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:7000;branch=z9hG4bK-n1\r\nFrom: <sip:alice@127.0.0.1>;tag=a1\r\nTo: <sip:4000@127.0.0.1>\r\nCall-ID: call-z9hG4bK-n1\r\nCSeq: 1 CANCEL\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n";
    let out = h.input("127.0.0.1:7000", cancel);
    let codes: Vec<u16> = out.iter().map(status).collect();
    assert_eq!(codes, vec![200, 487]);
    assert!(matches!(app_events(&mut h)[..], [AppEvent::Cancelled { tx: t }] if t == tx));
    assert!(
        h.core
            .respond(tx, AppResponse::new(200, "OK"), h.now)
            .is_err()
    );
}

#[test]
fn unacknowledged_2xx_gives_up_after_64_t1() {
    let mut h = Harness::new(app_cfg());
    h.input("127.0.0.1:7000", &invite("4000", 7000, "z9hG4bK-n1", ""));
    let (tx, _) = request_tx(&app_events(&mut h)[0]);
    h.core
        .respond(tx, AppResponse::new(200, "OK"), h.now)
        .unwrap();
    let _ = h.core.poll_transmit();
    let resent = h.advance(Duration::from_secs(31));
    assert!(resent.len() >= 8, "{}", resent.len());
    assert!(app_events(&mut h).is_empty());
    h.advance(Duration::from_secs(2));
    assert!(matches!(
        &app_events(&mut h)[..],
        [AppEvent::AckTimeout { call_id, .. }] if call_id == "call-z9hG4bK-n1"
    ));
}

#[test]
fn numbers_do_not_change_proxying_of_users() {
    let mut h = Harness::new(app_cfg());
    do_register_trusted(&mut h, "bob", 8000);
    let out = h.input("127.0.0.1:7000", &invite("bob", 7000, "z9hG4bK-c1", ""));
    assert_eq!(out.len(), 2);
    assert!(text(&out[0]).starts_with("INVITE sip:bob@127.0.0.1:8000"));
    assert!(app_events(&mut h).is_empty());
}

/// A request as the application builds it (the parser wants a Via; the core adds its own).
fn app_request(text: &str) -> Request {
    let text = text.replacen(
        "\r\n",
        "\r\nVia: SIP/2.0/UDP 0.0.0.0;branch=z9hG4bKx\r\n",
        1,
    );
    let Ok(SipMessage::Request(mut req)) = msg::parse(text.as_bytes(), &Limits::default(), false)
    else {
        panic!("test request must parse")
    };
    msg::pop_top_via(&mut req.headers);
    req
}

/// The application as a UAC: its Via on the request, responses up as events, ACK of a
/// non-2xx by the transaction, and a silent peer reported as a timeout.
#[test]
fn application_requests_get_responses_and_timeouts() {
    let mut h = Harness::new(app_cfg());
    do_register_trusted(&mut h, "bob", 8000);
    let (uri, dest) = h.core.contact_for("bob", h.now).unwrap();
    assert_eq!(uri, "sip:bob@127.0.0.1:8000");
    let req = format!(
        "INVITE {uri} SIP/2.0\r\nFrom: <sip:4000@127.0.0.1>;tag=hl1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: agent-leg-1\r\nCSeq: 1 INVITE\r\nContact: <sip:4000@127.0.0.1:5060>\r\nContent-Length: 0\r\n\r\n"
    );
    let req = app_request(&req);
    let tx = h.core.send_request(req, dest, h.now);
    let out: Vec<_> = std::iter::from_fn(|| h.core.poll_transmit()).collect();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].flow.remote, "127.0.0.1:8000".parse().unwrap());
    let sent = text(&out[0]);
    let via = sent.lines().nth(1).unwrap().to_string();
    assert!(
        via.starts_with("Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-hl"),
        "{sent}"
    );
    assert!(sent.contains("Max-Forwards: 70"), "{sent}");
    let reply = |code: &str| {
        format!(
            "SIP/2.0 {code}\r\n{via}\r\nFrom: <sip:4000@127.0.0.1>;tag=hl1\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\nCall-ID: agent-leg-1\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
        )
    };
    assert!(h.input("127.0.0.1:8000", &reply("180 Ringing")).is_empty());
    match &app_events(&mut h)[..] {
        [
            AppEvent::Response {
                tx: t, response, ..
            },
        ] => {
            assert_eq!(*t, tx);
            assert_eq!(u16::from(response.status_code.clone()), 180);
        }
        other => panic!("{other:?}"),
    }
    let out = h.input("127.0.0.1:8000", &reply("486 Busy Here"));
    assert_eq!(out.len(), 1);
    assert!(text(&out[0]).starts_with("ACK sip:bob@127.0.0.1:8000"));
    assert!(matches!(
        &app_events(&mut h)[..],
        [AppEvent::Response { .. }]
    ));
    // A second request nobody answers: Timer B.
    let req = "OPTIONS sip:bob@127.0.0.1:8000 SIP/2.0\r\nFrom: <sip:4000@127.0.0.1>;tag=hl2\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: probe-1\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n";
    let req = app_request(req);
    let tx2 = h.core.send_request(req, dest, h.now);
    h.advance(Duration::from_secs(33));
    assert!(matches!(
        &app_events(&mut h)[..],
        [AppEvent::Timeout { tx, call_id }] if *tx == tx2 && call_id == "probe-1"
    ));
}

fn guarded_cfg() -> CoreConfig {
    CoreConfig {
        guard: GuardConfig {
            rate: 10,
            burst: 5,
            block: Duration::from_secs(30),
            auth_failures: 3,
            ..GuardConfig::default()
        },
        ..cfg()
    }
}

fn options(port: u16, n: u32, ua: &str) -> String {
    format!(
        "OPTIONS sip:127.0.0.1:5060 SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-o{n}\r\nFrom: <sip:x@127.0.0.1>;tag=o\r\nTo: <sip:127.0.0.1>\r\nCall-ID: opt-{port}-{n}\r\nCSeq: {n} OPTIONS\r\n{ua}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

#[test]
fn flooding_source_is_dropped_before_any_transaction_while_others_pass() {
    let mut h = Harness::new(guarded_cfg());
    for n in 0..5 {
        assert_eq!(
            status(&h.input("10.0.0.1:7000", &options(7000, n, ""))[0]),
            200
        );
    }
    let tx_before = h.core.transactions().0;
    for n in 5..1000 {
        assert!(h.input("10.0.0.1:7000", &options(7000, n, "")).is_empty());
    }
    assert_eq!(
        h.core.transactions().0,
        tx_before,
        "no state for dropped requests"
    );
    let c = h.core.counters();
    assert_eq!(Counters::get(&c.flood_blocked), 1);
    assert_eq!(Counters::get(&c.guard_dropped), 995);
    // Another source still gets through; once the block ends the source is served again.
    assert_eq!(
        status(&h.input("10.0.0.2:7000", &options(7000, 1, ""))[0]),
        200
    );
    h.advance(Duration::from_secs(30));
    assert_eq!(
        status(&h.input("10.0.0.1:7000", &options(7000, 2000, ""))[0]),
        200
    );
}

#[test]
fn wrong_passwords_lock_the_source_out_with_no_more_challenges() {
    let mut h = Harness::new(CoreConfig {
        guard: GuardConfig {
            auth_failures: 3,
            ..GuardConfig::default()
        },
        ..cfg()
    });
    let from = "10.0.0.1:7000";
    for (i, user) in ["alice", "nobody", "bob"].iter().enumerate() {
        let cseq = 2 * i as u32 + 1;
        let out = h.input(from, &register(user, 7000, cseq, ""));
        assert_eq!(status(&out[0]), 401);
        let n = nonce(&text(&out[0]));
        let auth = authorization(user, "guess", &n, "00000001", "Authorization", "REGISTER");
        let out = h.input(from, &register(user, 7000, cseq + 1, &auth));
        // Unknown user and wrong password: the same 403.
        assert_eq!(status(&out[0]), 403, "{}", text(&out[0]));
    }
    assert_eq!(Counters::get(&h.core.counters().lockouts), 1);
    assert!(h.input(from, &register("alice", 7000, 10, "")).is_empty());
    // A legitimate user elsewhere is unaffected.
    do_register(&mut h, "alice", "pw-a", 7001);
}

#[test]
fn scanner_user_agent_is_dropped_silently() {
    let mut h = Harness::new(cfg());
    let out = h.input(
        "10.0.0.1:7000",
        &options(7000, 1, "User-Agent: friendly-scanner\r\n"),
    );
    assert!(out.is_empty());
    assert_eq!(Counters::get(&h.core.counters().scanners_dropped), 1);
    let out = h.input(
        "10.0.0.1:7000",
        &options(7000, 2, "User-Agent: baresip\r\n"),
    );
    assert_eq!(status(&out[0]), 200);
}
