//! Attended transfer (REFER with Replaces, RFC 3891) through Hotline, with scripted SIP
//! phones on raw UDP sockets (SIPp cannot share one dialog's tags with another call's
//! scenario). The phones send from the trusted test address, so no digest.
//!
//! alice calls 4301 → Hotline rings bob (call 1). bob consults carol through Hotline
//! (4302, call 2), then REFERs alice to carol with Replaces naming his consultation
//! dialog. Hotline hands carol's leg (dialog and media) from call 2 to call 1, releases
//! bob on both dialogs, and alice and carol talk until alice hangs up.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use hotline_sip_tests::{TRUSTED_IP, media, start_hotline_with};
use hotline_switch::{CallEnd, EndReason};
use tokio::net::UdpSocket;

/// The rest of `[media]` (after [`media`]) and the numbers.
const CONFIG: &str = "no_rtp_timeout_secs = 0\n\
                      [[numbers]]\nnumber = \"4301\"\nextension = \"bob\"\n\
                      [[numbers]]\nnumber = \"4302\"\nextension = \"carol\"\n";

/// A phone: one UDP socket for its SIP (and an address it announces for RTP).
struct Phone {
    sock: UdpSocket,
    server: SocketAddr,
    user: &'static str,
}

/// A header's value (first occurrence, case-insensitive name).
fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn tag(value: &str) -> Option<&str> {
    value.split(';').find_map(|p| p.trim().strip_prefix("tag="))
}

fn uri(value: &str) -> &str {
    match (value.find('<'), value.find('>')) {
        (Some(a), Some(b)) if a < b => &value[a + 1..b],
        _ => value,
    }
}

fn sdp(port: u16) -> String {
    format!(
        "v=0\r\no=phone 1 1 IN IP4 {TRUSTED_IP}\r\ns=-\r\nc=IN IP4 {TRUSTED_IP}\r\nt=0 0\r\nm=audio {port} RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"
    )
}

impl Phone {
    async fn new(user: &'static str, server: SocketAddr) -> anyhow::Result<Phone> {
        let sock = UdpSocket::bind((TRUSTED_IP, 0)).await?;
        Ok(Phone { sock, server, user })
    }

    fn contact(&self) -> String {
        format!(
            "<sip:{}@{}>",
            self.user,
            self.sock
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        )
    }

    fn via(&self, branch: &str) -> String {
        format!(
            "SIP/2.0/UDP {};branch=z9hG4bK-{branch};rport",
            self.sock
                .local_addr()
                .map(|a| a.to_string())
                .unwrap_or_default()
        )
    }

    async fn send(&self, text: &str) -> anyhow::Result<()> {
        self.sock.send_to(text.as_bytes(), self.server).await?;
        Ok(())
    }

    /// The next message matching `want` (others, e.g. retransmissions, are skipped).
    async fn expect(&self, what: &str, want: impl Fn(&str) -> bool) -> anyhow::Result<String> {
        let mut buf = vec![0u8; 8192];
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        loop {
            let (n, _) = tokio::time::timeout_at(deadline, self.sock.recv_from(&mut buf))
                .await
                .with_context(|| format!("{}: no {what} within 5 s", self.user))??;
            let m = String::from_utf8_lossy(&buf[..n]).to_string();
            if want(&m) {
                return Ok(m);
            }
        }
    }

    async fn request(&self, method: &str) -> anyhow::Result<String> {
        let start = format!("{method} ");
        self.expect(method, |m| m.starts_with(&start)).await
    }

    async fn response(&self, code: u16, cseq_method: &str) -> anyhow::Result<String> {
        let start = format!("SIP/2.0 {code} ");
        self.expect(&format!("{code} to {cseq_method}"), |m| {
            m.starts_with(&start) && header(m, "CSeq").is_some_and(|c| c.ends_with(cseq_method))
        })
        .await
    }

    /// Answers `req` with `code`; adds our tag to a To without one and our Contact.
    async fn reply(
        &self,
        req: &str,
        code: u16,
        our_tag: &str,
        body: Option<&str>,
    ) -> anyhow::Result<()> {
        let mut out = format!("SIP/2.0 {code} OK\r\n");
        for l in req.split("\r\n").skip(1) {
            let name = l
                .split(':')
                .next()
                .unwrap_or("")
                .trim()
                .to_ascii_lowercase();
            match name.as_str() {
                "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{l}\r\n")),
                "to" if tag(l).is_none() => out.push_str(&format!("{l};tag={our_tag}\r\n")),
                "to" => out.push_str(&format!("{l}\r\n")),
                _ => {}
            }
        }
        out.push_str(&format!("Contact: {}\r\n", self.contact()));
        match body {
            Some(b) => out.push_str(&format!(
                "Content-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{b}",
                b.len()
            )),
            None => out.push_str("Content-Length: 0\r\n\r\n"),
        }
        self.send(&out).await
    }

    async fn register(&self) -> anyhow::Result<()> {
        let s = self.server;
        self.send(&format!(
            "REGISTER sip:{s} SIP/2.0\r\nVia: {}\r\nFrom: <sip:{u}@{s}>;tag=r\r\nTo: <sip:{u}@{s}>\r\nCall-ID: reg-{u}\r\nCSeq: 1 REGISTER\r\nContact: {}\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            self.via("reg"),
            self.contact(),
            u = self.user,
        ))
        .await?;
        self.response(200, "REGISTER").await.map(drop)
    }

    /// Calls `number`; returns the 2xx (after ACKing it).
    async fn call(&self, number: &str, call_id: &str, from_tag: &str) -> anyhow::Result<String> {
        let s = self.server;
        let body = sdp(40_000);
        self.send(&format!(
            "INVITE sip:{number}@{s} SIP/2.0\r\nVia: {}\r\nFrom: <sip:{u}@{s}>;tag={from_tag}\r\nTo: <sip:{number}@{s}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: {}\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
            self.via(&format!("inv-{call_id}")),
            self.contact(),
            body.len(),
            u = self.user,
        ))
        .await?;
        let ok = self
            .expect("200 to INVITE", |m| {
                m.starts_with("SIP/2.0 200 ") && header(m, "Call-ID") == Some(call_id)
            })
            .await?;
        let to = header(&ok, "To").context("To")?;
        let target = uri(header(&ok, "Contact").context("Contact")?);
        self.send(&format!(
            "ACK {target} SIP/2.0\r\nVia: {}\r\nFrom: <sip:{u}@{s}>;tag={from_tag}\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            self.via(&format!("ack-{call_id}")),
            u = self.user,
        ))
        .await?;
        Ok(ok)
    }

    /// Answers Hotline's INVITE to this phone; returns it (after the ACK came).
    async fn answer(&self, our_tag: &str) -> anyhow::Result<String> {
        let inv = self.request("INVITE").await?;
        self.reply(&inv, 200, our_tag, Some(&sdp(40_002))).await?;
        self.request("ACK").await?;
        Ok(inv)
    }
}

async fn next_end(rx: &mut tokio::sync::mpsc::Receiver<CallEnd>) -> anyhow::Result<CallEnd> {
    tokio::time::timeout(Duration::from_secs(10), rx.recv())
        .await
        .context("no call ended within 10 s")?
        .context("switch stopped")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attended_transfer_hands_the_consulted_agent_to_the_caller() -> anyhow::Result<()> {
    let mut h = start_hotline_with(&(media(200) + CONFIG)).await?;
    let server = h.sip.udp_addrs()[0];
    let mut ended = h
        .switch
        .as_mut()
        .context("switch")?
        .take_ended()
        .context("ended")?;
    let alice = Phone::new("alice", server).await?;
    let bob = Phone::new("bob", server).await?;
    let carol = Phone::new("carol", server).await?;
    bob.register().await?;
    carol.register().await?;

    // Call 1: alice → 4301 → bob.
    let ok1 = alice.call("4301", "call-1", "al").await?;
    let inv1 = bob.answer("b1").await?;
    // Call 2: bob consults carol through 4302.
    let ok2 = bob.call("4302", "consult-1", "b2").await?;
    carol.answer("c2").await?;
    let hotline_tag2 = tag(header(&ok2, "To").context("To")?).context("Hotline's tag")?;

    // bob: REFER in call 1's dialog, Replaces naming his consultation dialog.
    let refer_to = format!(
        "<sip:carol@{server}?Replaces=consult-1%3Bto-tag%3D{hotline_tag2}%3Bfrom-tag%3Db2>"
    );
    let hotline_contact = uri(header(&inv1, "Contact").context("Contact")?);
    let to = header(&inv1, "From").context("From")?; // Hotline's side, with its tag
    let from = format!("{};tag=b1", header(&inv1, "To").context("To")?);
    let call_id1 = header(&inv1, "Call-ID").context("Call-ID")?;
    bob.send(&format!(
        "REFER {hotline_contact} SIP/2.0\r\nVia: {}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id1}\r\nCSeq: 1 REFER\r\nContact: {}\r\nRefer-To: {refer_to}\r\nReferred-By: {}\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        bob.via("refer"),
        bob.contact(),
        bob.contact(),
    ))
    .await?;
    bob.response(202, "REFER").await?;
    // bob hears the outcome and is released from both dialogs.
    let (mut notified, mut bye1, mut bye2) = (false, false, false);
    while !(notified && bye1 && bye2) {
        let m = bob
            .expect("NOTIFY or BYE", |m| {
                m.starts_with("NOTIFY ") || m.starts_with("BYE ")
            })
            .await?;
        bob.reply(&m, 200, "b", None).await?;
        let cid = header(&m, "Call-ID").unwrap_or_default();
        if m.starts_with("NOTIFY ") {
            if !m.contains("SIP/2.0 200") {
                bail!("transfer NOTIFY without 200: {m}");
            }
            notified = true;
        } else if cid == call_id1 {
            bye1 = true;
        } else if cid == "consult-1" {
            bye2 = true;
        }
    }
    // The consultation call ended by handing carol over.
    let end2 = next_end(&mut ended).await?;
    assert_eq!(end2.call_id, "consult-1");
    assert_eq!(end2.reason, EndReason::Transferred, "{end2:?}");

    // alice and carol are now one call; alice hangs up, Hotline releases carol.
    let to1 = header(&ok1, "To").context("To")?;
    let target1 = uri(header(&ok1, "Contact").context("Contact")?);
    alice
        .send(&format!(
            "BYE {target1} SIP/2.0\r\nVia: {}\r\nFrom: <sip:alice@{server}>;tag=al\r\nTo: {to1}\r\nCall-ID: call-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            alice.via("bye"),
        ))
        .await?;
    alice.response(200, "BYE").await?;
    let bye = carol.request("BYE").await?;
    carol.reply(&bye, 200, "c2", None).await?;
    let end1 = next_end(&mut ended).await?;
    assert_eq!(end1.call_id, "call-1");
    assert_eq!(end1.reason, EndReason::CallerHangup, "{end1:?}");
    assert!(end1.bridged, "{end1:?}");
    assert_eq!(end1.agent.as_deref(), Some("carol"), "{end1:?}");
    assert!(
        end1.media.and_then(|m| m.b).is_some(),
        "carol's media leg moved into call 1: {end1:?}"
    );
    let switch = h.switch.as_ref().context("switch")?;
    assert_eq!(switch.stats().active_calls(), 0);
    assert_eq!(switch.ports().in_use(), 0, "RTP ports leaked");
    assert_eq!(switch.sip_dialogs().await?, 0, "SIP dialogs left behind");
    h.shutdown().await;
    Ok(())
}

/// A Replaces naming no dialog Hotline holds: the REFER is accepted, the NOTIFY says
/// 481, and the agent keeps the caller (nothing is released).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attended_transfer_to_an_unknown_dialog_fails_and_keeps_the_call() -> anyhow::Result<()> {
    let mut h = start_hotline_with(&(media(100) + CONFIG)).await?;
    let server = h.sip.udp_addrs()[0];
    let mut ended = h
        .switch
        .as_mut()
        .context("switch")?
        .take_ended()
        .context("ended")?;
    let alice = Phone::new("alice", server).await?;
    let bob = Phone::new("bob", server).await?;
    bob.register().await?;
    let ok1 = alice.call("4301", "call-2", "al").await?;
    let inv1 = bob.answer("b1").await?;
    let hotline_contact = uri(header(&inv1, "Contact").context("Contact")?);
    let to = header(&inv1, "From").context("From")?;
    let from = format!("{};tag=b1", header(&inv1, "To").context("To")?);
    let call_id1 = header(&inv1, "Call-ID").context("Call-ID")?;
    bob.send(&format!(
        "REFER {hotline_contact} SIP/2.0\r\nVia: {}\r\nFrom: {from}\r\nTo: {to}\r\nCall-ID: {call_id1}\r\nCSeq: 1 REFER\r\nContact: {}\r\nRefer-To: <sip:carol@{server}?Replaces=nowhere%3Bto-tag%3Dx%3Bfrom-tag%3Dy>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
        bob.via("refer"),
        bob.contact(),
    ))
    .await?;
    bob.response(202, "REFER").await?;
    let notify = bob.request("NOTIFY").await?;
    assert!(notify.contains("SIP/2.0 481"), "{notify}");
    bob.reply(&notify, 200, "b", None).await?;
    // alice still talks to bob: her BYE reaches bob through Hotline.
    let to1 = header(&ok1, "To").context("To")?;
    let target1 = uri(header(&ok1, "Contact").context("Contact")?);
    alice
        .send(&format!(
            "BYE {target1} SIP/2.0\r\nVia: {}\r\nFrom: <sip:alice@{server}>;tag=al\r\nTo: {to1}\r\nCall-ID: call-2\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            alice.via("bye"),
        ))
        .await?;
    alice.response(200, "BYE").await?;
    let bye = bob.request("BYE").await?;
    assert_eq!(header(&bye, "Call-ID"), Some(call_id1));
    bob.reply(&bye, 200, "b1", None).await?;
    let end = next_end(&mut ended).await?;
    assert_eq!(end.reason, EndReason::CallerHangup, "{end:?}");
    assert_eq!(end.agent.as_deref(), Some("bob"), "{end:?}");
    let switch = h.switch.as_ref().context("switch")?;
    assert_eq!(switch.ports().in_use(), 0, "RTP ports leaked");
    assert_eq!(switch.sip_dialogs().await?, 0, "SIP dialogs left behind");
    h.shutdown().await;
    Ok(())
}
