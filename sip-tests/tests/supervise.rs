//! Supervisor monitor / whisper / barge end to end (issue #7). The caller is a scripted UA
//! on raw UDP sending RTP whose every payload byte is `MARK`; the agent's (bob's) and the
//! supervisor's (alice's) phones register with SIPp, then answer on the same port with
//! raw UDP and send their own constant bytes. A constant heard by a party tells exactly
//! whom it hears: a byte alone is one speaker relayed, the G.711 sum of two bytes is the
//! mix of those two. The supervisor drives everything from a CTI desk (`supervise.*`).

#[path = "../../crates/cti/tests/client/mod.rs"]
mod client;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use client::{Desk, ORIGIN};
use hotline_media::g711::Law;
use hotline_sip_tests::{Proto, SippBuilder, TRUSTED_IP, free_port};
use serde_json::{Value, json};
use tokio::net::UdpSocket;
use tokio::sync::watch;

const WAIT: Duration = Duration::from_secs(10);
/// The byte every payload of the caller's audio is made of.
const MARK: u8 = 0x11;
/// Bob's (the agent's) audio.
const BOB: u8 = 0x33;
/// Alice's (the supervisor's) audio.
const SUP: u8 = 0x22;
const CALLER: &str = "+49301234567";

/// What the caller received so far.
#[derive(Debug, Clone, Default)]
struct Heard {
    /// Its own audio, echoed by the agent: the agent hears the caller.
    echo: u64,
    /// Other audio (music on hold).
    other: u64,
    /// RFC 4733 keys (one per event, at its first end packet).
    keys: String,
    /// Audio packets whose payload is one byte repeated, by that byte (what a party
    /// sending a constant sounds like after relay or mix).
    uniform: std::collections::HashMap<u8, u64>,
}

/// The calling phone: SIP on raw UDP, RTP out every 20 ms, RTP in counted.
struct Caller {
    sip: UdpSocket,
    server: SocketAddr,
    call_id: String,
    /// Our From, Hotline's To (with its tag) and Contact: for our BYE.
    from: String,
    to: String,
    target: String,
    heard: watch::Receiver<Heard>,
    _tasks: Vec<tokio::task::AbortHandle>,
}

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
}

fn rtp_header(pt: u8, seq: u16, ts: u32, ssrc: u32) -> [u8; 12] {
    let mut h = [0u8; 12];
    h[0] = 0x80;
    h[1] = pt;
    h[2..4].copy_from_slice(&seq.to_be_bytes());
    h[4..8].copy_from_slice(&ts.to_be_bytes());
    h[8..12].copy_from_slice(&ssrc.to_be_bytes());
    h
}

impl Caller {
    /// Calls `number` and waits for the answer (Hotline answers queue calls at once);
    /// then streams marked audio and counts what comes back.
    async fn call(server: SocketAddr, number: &str) -> anyhow::Result<Caller> {
        let sip = UdpSocket::bind((TRUSTED_IP, 0)).await?;
        let media = Arc::new(UdpSocket::bind((TRUSTED_IP, 0)).await?);
        let (sip_port, media_port) = (sip.local_addr()?.port(), media.local_addr()?.port());
        let call_id = format!("desk-cmd-{}-{sip_port}@{TRUSTED_IP}", std::process::id());
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 {TRUSTED_IP}\r\ns=-\r\nc=IN IP4 {TRUSTED_IP}\r\nt=0 0\r\n\
             m=audio {media_port} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\n\
             a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\na=sendrecv\r\n"
        );
        let invite = format!(
            "INVITE sip:{number}@{server} SIP/2.0\r\n\
             Via: SIP/2.0/UDP {TRUSTED_IP}:{sip_port};branch=z9hG4bK-inv{sip_port};rport\r\n\
             From: <sip:{CALLER}@{TRUSTED_IP}>;tag=caller{sip_port}\r\n\
             To: <sip:{number}@{server}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\n\
             Contact: <sip:{CALLER}@{TRUSTED_IP}:{sip_port}>\r\nMax-Forwards: 70\r\n\
             Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        sip.send_to(invite.as_bytes(), server).await?;
        let ok = loop {
            let m = recv(&sip).await.context("the caller's 200 OK")?;
            if m.starts_with("SIP/2.0 200") {
                break m;
            }
            if !m.starts_with("SIP/2.0 1") {
                bail!("caller: unexpected answer {m}");
            }
        };
        let to = header(&ok, "To").context("To")?.to_string();
        let target = header(&ok, "Contact")
            .and_then(|c| c.split(['<', '>']).nth(1))
            .context("Contact")?
            .to_string();
        let ack = format!(
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {TRUSTED_IP}:{sip_port};branch=z9hG4bK-ack{sip_port};rport\r\n\
             From: <sip:{CALLER}@{TRUSTED_IP}>;tag=caller{sip_port}\r\nTo: {to}\r\nCall-ID: {call_id}\r\n\
             CSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        );
        sip.send_to(ack.as_bytes(), server).await?;
        let body = ok.split("\r\n\r\n").nth(1).unwrap_or_default();
        let port: u16 = body
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .and_then(|p| p.parse().ok())
            .context("m=audio port in the answer")?;
        let rtp_to: SocketAddr = (std::net::Ipv4Addr::LOCALHOST, port).into();
        let (heard, tasks) = rtp_party(media, rtp_to, MARK);
        Ok(Caller {
            from: format!("<sip:{CALLER}@{TRUSTED_IP}>;tag=caller{sip_port}"),
            to,
            target,
            sip,
            server,
            call_id,
            heard,
            _tasks: tasks,
        })
    }

    fn heard(&self) -> Heard {
        self.heard.borrow().clone()
    }

    /// Waits until `done` holds for what the caller heard.
    async fn until(&mut self, what: &str, done: impl Fn(&Heard) -> bool) -> anyhow::Result<Heard> {
        let got = tokio::time::timeout(WAIT, self.heard.wait_for(|h| done(h)))
            .await
            .map(|r| r.map(|h| h.clone()));
        match got {
            Ok(Ok(h)) => Ok(h),
            _ => bail!("caller: {what} within 10 s (heard {:?})", self.heard()),
        }
    }

    /// Hangs up (BYE) and waits for the 200.
    async fn hangup(&self) -> anyhow::Result<()> {
        let port = self.sip.local_addr()?.port();
        let bye = format!(
            "BYE {} SIP/2.0\r\nVia: SIP/2.0/UDP {TRUSTED_IP}:{port};branch=z9hG4bK-bye{port};rport\r\n\
             From: {}\r\nTo: {}\r\nCall-ID: {}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n",
            self.target, self.from, self.to, self.call_id
        );
        self.sip.send_to(bye.as_bytes(), self.server).await?;
        loop {
            let m = recv(&self.sip).await.context("200 to the caller's BYE")?;
            if m.starts_with("SIP/2.0 200") && header(&m, "CSeq").is_some_and(|c| c.contains("BYE"))
            {
                return Ok(());
            }
        }
    }
}

/// Sends `mark` as PCMU every 20 ms from `media` to `to` and counts what comes back.
fn rtp_party(
    media: Arc<UdpSocket>,
    rtp_to: SocketAddr,
    mark: u8,
) -> (watch::Receiver<Heard>, Vec<tokio::task::AbortHandle>) {
    let send = {
        let media = media.clone();
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(Duration::from_millis(20));
            for i in 0u32.. {
                tick.tick().await;
                let mut pkt = rtp_header(0, i as u16, i * 160, 0xCA11 + u32::from(mark)).to_vec();
                pkt.extend_from_slice(&[mark; 160]);
                let _ = media.send_to(&pkt, rtp_to).await;
            }
        })
    };
    let (tx, heard) = watch::channel(Heard::default());
    let count = tokio::spawn(async move {
        let mut buf = [0u8; 2048];
        let mut last_key_ts = None;
        while let Ok((n, _)) = media.recv_from(&mut buf).await {
            if n < 12 {
                continue;
            }
            let (pt, ts) = (
                buf[1] & 0x7f,
                u32::from_be_bytes([buf[4], buf[5], buf[6], buf[7]]),
            );
            let payload = &buf[12..n];
            tx.send_modify(|h| match pt {
                0 if !payload.is_empty() && payload.iter().all(|&b| b == payload[0]) => {
                    *h.uniform.entry(payload[0]).or_default() += 1;
                    if payload[0] == MARK {
                        h.echo += 1;
                    } else {
                        h.other += 1;
                    }
                }
                0 => h.other += 1,
                101 if payload.len() >= 4 && payload[1] & 0x80 != 0 && last_key_ts != Some(ts) => {
                    last_key_ts = Some(ts);
                    let key = b"0123456789*#ABCD".get(payload[0] as usize);
                    h.keys.push(key.map_or('?', |&k| k as char));
                }
                _ => {}
            });
        }
    });
    (heard, vec![send.abort_handle(), count.abort_handle()])
}

async fn recv(sock: &UdpSocket) -> anyhow::Result<String> {
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .context("no SIP message within 10 s")??;
    Ok(String::from_utf8_lossy(&buf[..n]).to_string())
}

/// An agent's phone on raw UDP (registered with SIPp, then its port taken over): answers
/// one INVITE, sends `mark` as audio and counts what it hears; hangs up or takes a BYE.
struct RawPhone {
    sip: UdpSocket,
    server: SocketAddr,
    media: Option<Arc<UdpSocket>>,
    mark: u8,
    /// The dialog (From and To as the phone sends them, Call-ID, Hotline's Contact).
    dialog: Option<(String, String, String, String)>,
    heard: Option<watch::Receiver<Heard>>,
    _tasks: Vec<tokio::task::AbortHandle>,
}

impl RawPhone {
    async fn register(server: SocketAddr, user: &str, mark: u8) -> anyhow::Result<RawPhone> {
        let port = free_port();
        let pw = format!("{user}-pw");
        SippBuilder::new(
            &format!("desk-raw-{user}"),
            "register_once.xml",
            Proto::Udp,
            port,
        )
        .args(["-s", user, "-au", user, "-ap", &pw])
        .spawn(Some(server))?
        .expect_success()
        .await?;
        Ok(RawPhone {
            sip: UdpSocket::bind(("127.0.0.1", port)).await?,
            server,
            media: Some(Arc::new(UdpSocket::bind("127.0.0.1:0").await?)),
            mark,
            dialog: None,
            heard: None,
            _tasks: Vec::new(),
        })
    }

    /// Answers the next INVITE with 200 + SDP, waits for the ACK, starts RTP.
    async fn answer(&mut self) -> anyhow::Result<()> {
        let invite = loop {
            let m = recv(&self.sip).await.context("INVITE to the phone")?;
            if m.starts_with("INVITE ") {
                break m;
            }
        };
        let media = self.media.take().context("one call per phone")?;
        let port = self.sip.local_addr()?.port();
        let to = format!("{};tag=raw{port}", header(&invite, "To").context("To")?);
        let from = header(&invite, "From").context("From")?.to_string();
        let call_id = header(&invite, "Call-ID").context("Call-ID")?.to_string();
        let target = header(&invite, "Contact")
            .and_then(|c| c.split(['<', '>']).nth(1))
            .context("Contact")?
            .to_string();
        let body = invite.split("\r\n\r\n").nth(1).unwrap_or_default();
        let rtp_port: u16 = body
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split(' ').next())
            .and_then(|p| p.parse().ok())
            .context("m=audio in the offer")?;
        let sdp = format!(
            "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n\
             m=audio {} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n",
            media.local_addr()?.port()
        );
        let mut ok = String::from("SIP/2.0 200 OK\r\n");
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            if let Some(v) = header(&invite, name) {
                ok.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        ok.push_str(&format!(
            "To: {to}\r\nContact: <sip:phone@127.0.0.1:{port}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        ));
        self.sip.send_to(ok.as_bytes(), self.server).await?;
        loop {
            let m = recv(&self.sip).await.context("ACK to the phone")?;
            if m.starts_with("ACK ") {
                break;
            }
        }
        let (heard, tasks) = rtp_party(
            media,
            (std::net::Ipv4Addr::LOCALHOST, rtp_port).into(),
            self.mark,
        );
        self.heard = Some(heard);
        self._tasks = tasks;
        // In our requests, our To is From and theirs is To.
        self.dialog = Some((to, from, call_id, target));
        Ok(())
    }

    async fn until(&mut self, what: &str, done: impl Fn(&Heard) -> bool) -> anyhow::Result<()> {
        let heard = self.heard.as_mut().context("answered")?;
        let ok = tokio::time::timeout(WAIT, heard.wait_for(|h| done(h)))
            .await
            .is_ok_and(|r| r.is_ok());
        if !ok {
            bail!(
                "phone: {what} within 10 s (heard {:?})",
                heard.borrow().clone()
            );
        }
        Ok(())
    }

    async fn hangup(&self) -> anyhow::Result<()> {
        let (from, to, call_id, target) = self.dialog.as_ref().context("answered")?;
        let port = self.sip.local_addr()?.port();
        let bye = format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-pbye{port};rport\r\n\
             From: {from}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 BYE\r\nMax-Forwards: 70\r\n\
             Content-Length: 0\r\n\r\n"
        );
        self.sip.send_to(bye.as_bytes(), self.server).await?;
        loop {
            let m = recv(&self.sip).await.context("200 to the phone's BYE")?;
            if m.starts_with("SIP/2.0 200") && header(&m, "CSeq").is_some_and(|c| c.contains("BYE"))
            {
                return Ok(());
            }
        }
    }

    async fn bye(&self) -> anyhow::Result<()> {
        loop {
            let m = recv(&self.sip).await.context("BYE to the phone")?;
            if !m.starts_with("BYE ") {
                continue;
            }
            let mut out = String::from("SIP/2.0 200 OK\r\n");
            for name in ["Via", "From", "To", "Call-ID", "CSeq"] {
                if let Some(v) = header(&m, name) {
                    out.push_str(&format!("{name}: {v}\r\n"));
                }
            }
            out.push_str("Content-Length: 0\r\n\r\n");
            self.sip.send_to(out.as_bytes(), self.server).await?;
            return Ok(());
        }
    }
}

/// The G.711 µ-law sum of two constant payloads: what a mix of those two sounds like.
fn sum(a: u8, b: u8) -> u8 {
    let u = Law::Ulaw;
    u.encode((i32::from(u.decode(a)) + i32::from(u.decode(b))).clamp(-32768, 32767) as i16)
}

fn n(h: &Heard, b: u8) -> u64 {
    h.uniform.get(&b).copied().unwrap_or(0)
}

struct Rig {
    h: hotline::Hotline,
    ended: tokio::sync::mpsc::Receiver<hotline_switch::CallEnd>,
    server: SocketAddr,
    cti: SocketAddr,
}

/// Hotline with queue `support` (4100, agent bob) and `sales` (agent carol); desk logins:
/// alice, supervisor of support (her phone is SIP user alice), dave, supervisor of sales
/// only (phone: SIP user dave), and carol, an agent.
async fn rig(ports: [u16; 2]) -> anyhow::Result<Rig> {
    let hash = hotline_cti::hash_password("desk-pw")?;
    let cfg = format!(
        "[[users]]\nname = \"dave\"\npassword = \"dave-pw\"\n\
         [media]\nrtp_ip = \"127.0.0.1\"\nrtp_ports = [{}, {}]\n\
         [[numbers]]\nnumber = \"4100\"\nqueue = \"support\"\n\
         [acd]\n[[acd.queue]]\nname = \"support\"\nwrapup_secs = 60\n\
         [[acd.queue]]\nname = \"sales\"\nwrapup_secs = 60\n\
         [[acd.agent]]\nid = \"bob\"\nqueues = {{ support = 0 }}\n\
         [[acd.agent]]\nid = \"carol\"\nqueues = {{ sales = 0 }}\n\
         [cti]\nlisten = \"127.0.0.1:0\"\nallowed_origins = [\"{ORIGIN}\"]\n\
         [[cti.user]]\nname = \"alice\"\npassword_hash = \"{hash}\"\nrole = \"supervisor\"\nqueues = [\"support\"]\n\
         [[cti.user]]\nname = \"dave\"\npassword_hash = \"{hash}\"\nrole = \"supervisor\"\nqueues = [\"sales\"]\n\
         [[cti.user]]\nname = \"carol\"\npassword_hash = \"{hash}\"\nrole = \"agent\"\nagent = \"carol\"\n",
        ports[0], ports[1],
    );
    let mut h = hotline_sip_tests::start_hotline_with(&cfg).await?;
    let ended = h
        .switch
        .as_mut()
        .and_then(|s| s.take_ended())
        .context("ended calls")?;
    let server = Proto::Udp.server_addr(&h);
    let cti = h.cti.as_ref().context("[cti]")?.local_addr();
    Ok(Rig {
        h,
        ended,
        server,
        cti,
    })
}

impl Rig {
    async fn desk(&self, user: &str) -> anyhow::Result<Desk> {
        let mut d = Desk::connect(self.cti, Some(ORIGIN)).await?;
        d.login(user, "desk-pw").await;
        Ok(d)
    }

    fn queue_log(&self) -> anyhow::Result<Vec<hotline_cdr::QueueEvent>> {
        Ok(self
            .h
            .cdr
            .as_ref()
            .and_then(|c| c.memory.as_ref())
            .context("memory CDRs")?
            .events())
    }

    /// After `calls` calls have ended: no call task and no RTP port is left.
    async fn done(mut self, calls: usize) -> anyhow::Result<()> {
        for _ in 0..calls {
            tokio::time::timeout(WAIT, self.ended.recv())
                .await
                .context("a call's end within 10 s")?
                .context("switch stopped")?;
        }
        let sw = self.h.switch.as_ref().context("switch")?;
        assert_eq!(sw.stats().active_calls(), 0, "call tasks left");
        let ports = sw.ports();
        let deadline = tokio::time::Instant::now() + WAIT;
        while ports.in_use() != 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(ports.in_use(), 0, "RTP ports leaked");
        self.h.shutdown().await;
        Ok(())
    }
}

/// The caller dials support; bob's phone answers; returns once the caller hears bob.
async fn talking(rig: &Rig) -> anyhow::Result<(Caller, RawPhone)> {
    let mut bob = RawPhone::register(rig.server, "bob", BOB).await?;
    let mut caller = Caller::call(rig.server, "4100").await?;
    bob.answer().await?;
    caller.until("bob's audio", |h| n(h, BOB) >= 25).await?;
    bob.until("the caller's audio", |h| n(h, MARK) >= 25)
        .await?;
    Ok((caller, bob))
}

fn start(agent: &str, mode: &str) -> Value {
    json!({"type": "supervise.start", "agent": agent, "mode": mode})
}

fn mode(mode: &str) -> Value {
    json!({"type": "supervise.mode", "mode": mode})
}

/// Alice supervises bob's call from her desk, her SIP phone rings and answers; then mode
/// by mode, switched live: monitor (alice hears caller + bob, nobody hears alice), whisper
/// (bob hears caller + alice, the caller still bob alone), barge (all three), back to
/// monitor (alice is silent again for both). Stop hangs up alice's phone only: caller and
/// bob go on. Each step is a SUPERVISE queue-log line. Bad requests change nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_monitors_whispers_barges_live() -> anyhow::Result<()> {
    let rig = rig([13400, 13599]).await?;
    let mut alice = rig.desk("alice").await?;
    let mut alice_phone = RawPhone::register(rig.server, "alice", SUP).await?;
    alice.fails(start("bob", "listen"), "bad_request").await;
    alice.fails(start("bob", "monitor"), "invalid_state").await; // no call yet
    let (mut caller, mut bob) = talking(&rig).await?;
    alice.fails(start("nobody", "monitor"), "not_found").await;
    alice.fails(mode("whisper"), "invalid_state").await; // not supervising yet
    alice.ok(start("bob", "monitor")).await;
    alice_phone.answer().await?;

    // Monitor: alice hears both; caller and bob hear only each other.
    alice_phone
        .until("caller + bob", |h| n(h, sum(MARK, BOB)) >= 25)
        .await?;
    let (c0, b0) = (
        caller.heard(),
        bob.heard.as_ref().context("bob")?.borrow().clone(),
    );
    caller
        .until("bob, 25 more", |h| n(h, BOB) >= n(&c0, BOB) + 25)
        .await?;
    bob.until("caller, 25 more", |h| n(h, MARK) >= n(&b0, MARK) + 25)
        .await?;
    let c = caller.heard();
    assert_eq!(
        n(&c, SUP) + n(&c, sum(BOB, SUP)),
        0,
        "the caller hears bob only: {c:?}"
    );
    assert!(c.echo == 0 && n(&c, sum(MARK, BOB)) == 0, "{c:?}");
    let b = bob.heard.as_ref().context("bob")?.borrow().clone();
    assert_eq!(
        n(&b, SUP) + n(&b, sum(MARK, SUP)),
        0,
        "bob hears the caller only: {b:?}"
    );

    // Whisper: bob hears caller + alice, the caller still bob alone.
    alice.ok(mode("whisper")).await;
    bob.until("caller + alice", |h| n(h, sum(MARK, SUP)) >= 25)
        .await?;
    let c0 = caller.heard();
    caller
        .until("bob, 25 more", |h| n(h, BOB) >= n(&c0, BOB) + 25)
        .await?;
    let c = caller.heard();
    assert_eq!(
        n(&c, SUP) + n(&c, sum(BOB, SUP)),
        0,
        "the caller never hears alice: {c:?}"
    );
    alice_phone
        .until("still caller + bob", |h| n(h, sum(MARK, BOB)) >= 75)
        .await?;

    // Barge: all three.
    alice.ok(mode("barge")).await;
    caller
        .until("bob + alice", |h| n(h, sum(BOB, SUP)) >= 25)
        .await?;
    bob.until("caller + alice", |h| {
        n(h, sum(MARK, SUP)) >= n(&b, sum(MARK, SUP)) + 50
    })
    .await?;

    // Back to monitor: alice's voice stops reaching the caller.
    alice.ok(mode("monitor")).await;
    caller
        .until("bob alone again", |h| n(h, BOB) >= n(&c, BOB) + 25)
        .await?;
    let settled = n(&caller.heard(), sum(BOB, SUP));
    let c0 = caller.heard();
    caller
        .until("bob, 25 more", |h| n(h, BOB) >= n(&c0, BOB) + 25)
        .await?;
    assert!(
        n(&caller.heard(), sum(BOB, SUP)) <= settled + 1,
        "alice still heard by the caller in monitor: {:?}",
        caller.heard()
    );

    // Stop: alice's phone gets BYE; caller and bob keep talking.
    alice.ok(json!({"type": "supervise.stop"})).await;
    alice_phone.bye().await?;
    alice.fails(mode("barge"), "invalid_state").await;
    let c0 = caller.heard();
    caller
        .until("bob after stop", |h| n(h, BOB) >= n(&c0, BOB) + 25)
        .await?;

    let log: Vec<String> = rig
        .queue_log()?
        .into_iter()
        .filter(|e| e.event == hotline_cdr::QueueEventKind::Supervise)
        .map(|e| format!("{} {}", e.agent.unwrap_or_default(), e.data))
        .collect();
    assert_eq!(
        log,
        [
            "alice monitor bob",
            "alice whisper bob",
            "alice barge bob",
            "alice monitor bob",
            "alice stop bob"
        ],
        "SUPERVISE lines"
    );
    caller.hangup().await?;
    bob.bye().await?;
    alice.close().await;
    rig.done(1).await
}

/// Who may not supervise: an agent, a supervisor of other queues; nobody supervises an
/// agent who is not talking. The refusals change nothing (no phone rings). When the call
/// ends, the supervisor's leg ends with it and every port is returned.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn refusals_and_the_call_end_ends_the_supervisor() -> anyhow::Result<()> {
    let rig = rig([13600, 13799]).await?;
    let mut alice = rig.desk("alice").await?;
    let mut dave = rig.desk("dave").await?;
    let mut carol = rig.desk("carol").await?;
    let mut alice_phone = RawPhone::register(rig.server, "alice", SUP).await?;
    let (mut caller, bob) = talking(&rig).await?;
    carol.fails(start("bob", "monitor"), "forbidden").await;
    dave.fails(start("bob", "monitor"), "forbidden").await;
    alice
        .fails(start("carol", "monitor"), "invalid_state")
        .await;
    alice.ok(start("bob", "barge")).await;
    alice_phone.answer().await?;
    caller
        .until("bob + alice", |h| n(h, sum(BOB, SUP)) >= 25)
        .await?;
    // The caller hangs up: bob and alice both get BYE.
    caller.hangup().await?;
    bob.bye().await?;
    alice_phone.bye().await?;
    for d in [alice, dave, carol] {
        d.close().await;
    }
    rig.done(1).await
}

/// The supervisor's phone hangs up in whisper: only that leg ends; the caller and bob hear
/// each other as before (the relay, nothing mixed), and the desk's next mode change is
/// refused.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn supervisor_hanging_up_leaves_the_call_as_it_was() -> anyhow::Result<()> {
    let rig = rig([13800, 13999]).await?;
    let mut alice = rig.desk("alice").await?;
    let mut alice_phone = RawPhone::register(rig.server, "alice", SUP).await?;
    let (mut caller, mut bob) = talking(&rig).await?;
    alice.ok(start("bob", "whisper")).await;
    alice_phone.answer().await?;
    bob.until("caller + alice", |h| n(h, sum(MARK, SUP)) >= 25)
        .await?;
    alice_phone.hangup().await?;
    let heard = |p: &RawPhone| p.heard.as_ref().map(|h| h.borrow().clone());
    let b0 = heard(&bob).context("bob")?;
    bob.until("the caller alone", |h| n(h, MARK) >= n(&b0, MARK) + 25)
        .await?;
    let settled = n(&heard(&bob).context("bob")?, sum(MARK, SUP));
    let b1 = heard(&bob).context("bob")?;
    bob.until("the caller, 25 more", |h| n(h, MARK) >= n(&b1, MARK) + 25)
        .await?;
    let b = heard(&bob).context("bob")?;
    assert!(n(&b, sum(MARK, SUP)) <= settled + 1, "still mixed: {b:?}");
    alice.fails(mode("barge"), "invalid_state").await;
    let c0 = caller.heard();
    caller
        .until("bob", |h| n(h, BOB) >= n(&c0, BOB) + 25)
        .await?;
    caller.hangup().await?;
    bob.bye().await?;
    alice.close().await;
    rig.done(1).await
}
