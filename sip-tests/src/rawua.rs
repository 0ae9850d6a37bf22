//! Scripted SIP user agents on raw UDP for tests that must see exactly what one party
//! hears: a caller (`Caller`, from the trusted address, so it needs no digest) and an
//! agent's or trunk's phone (`RawPhone`). Each sends RTP whose every payload byte is its
//! mark and counts what comes back, so a constant heard tells whom a party hears (one
//! byte: one speaker relayed; the G.711 sum of two bytes: the mix of those two).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::net::UdpSocket;
use tokio::sync::watch;

use crate::{TRUSTED_IP, free_port};

const WAIT: Duration = Duration::from_secs(10);
/// The byte every payload of the caller's audio is made of.
pub const MARK: u8 = 0x11;
/// The caller's number (From).
pub const CALLER: &str = "+49301234567";

/// What the caller received so far.
#[derive(Debug, Clone, Default)]
pub struct Heard {
    /// Its own audio, echoed by the agent: the agent hears the caller.
    pub echo: u64,
    /// Other audio (music on hold).
    pub other: u64,
    /// RFC 4733 keys (one per event, at its first end packet).
    pub keys: String,
    /// Audio packets whose payload is one byte repeated, by that byte (what a party
    /// sending a constant sounds like after relay or mix).
    pub uniform: std::collections::HashMap<u8, u64>,
}

impl Heard {
    /// Packets of the party whose audio is `mark` repeated (see [`Heard::uniform`]).
    pub fn of(&self, mark: u8) -> u64 {
        self.uniform.get(&mark).copied().unwrap_or(0)
    }
}

/// The calling phone: SIP on raw UDP, RTP out every 20 ms, RTP in counted.
pub struct Caller {
    sip: UdpSocket,
    server: SocketAddr,
    pub call_id: String,
    /// Our From, Hotline's To (with its tag) and Contact: for our BYE.
    from: String,
    to: String,
    target: String,
    heard: watch::Receiver<Heard>,
    _tasks: Vec<tokio::task::AbortHandle>,
}

pub fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n")
        .take_while(|l| !l.is_empty())
        .find_map(|l| {
            let (n, v) = l.split_once(':')?;
            n.trim().eq_ignore_ascii_case(name).then_some(v.trim())
        })
}

pub fn rtp_header(pt: u8, seq: u16, ts: u32, ssrc: u32) -> [u8; 12] {
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
    pub async fn call(server: SocketAddr, number: &str) -> anyhow::Result<Caller> {
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

    pub fn heard(&self) -> Heard {
        self.heard.borrow().clone()
    }

    /// Waits until `done` holds for what the caller heard.
    pub async fn until(
        &mut self,
        what: &str,
        done: impl Fn(&Heard) -> bool,
    ) -> anyhow::Result<Heard> {
        let got = tokio::time::timeout(WAIT, self.heard.wait_for(|h| done(h)))
            .await
            .map(|r| r.map(|h| h.clone()));
        match got {
            Ok(Ok(h)) => Ok(h),
            _ => bail!("caller: {what} within 10 s (heard {:?})", self.heard()),
        }
    }

    /// Hangs up (BYE) and waits for the 200.
    pub async fn hangup(&self) -> anyhow::Result<()> {
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

    /// Waits for Hotline's BYE and answers it.
    pub async fn bye(&self) -> anyhow::Result<()> {
        loop {
            let m = recv(&self.sip).await.context("BYE to the caller")?;
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

pub async fn recv(sock: &UdpSocket) -> anyhow::Result<String> {
    let mut buf = vec![0u8; 65_535];
    let (n, _) = tokio::time::timeout(WAIT, sock.recv_from(&mut buf))
        .await
        .context("no SIP message within 10 s")??;
    Ok(String::from_utf8_lossy(&buf[..n]).to_string())
}

/// An agent's phone on raw UDP (registered with SIPp, then its port taken over): answers
/// one INVITE, sends `mark` as audio and counts what it hears; hangs up or takes a BYE.
pub struct RawPhone {
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
    /// A trunk behind `[sip] static_route`: the same raw UA on a fresh port, unregistered.
    pub async fn trunk(server: SocketAddr, mark: u8) -> anyhow::Result<RawPhone> {
        Ok(RawPhone {
            sip: UdpSocket::bind("127.0.0.1:0").await?,
            server,
            media: Some(Arc::new(UdpSocket::bind("127.0.0.1:0").await?)),
            mark,
            dialog: None,
            heard: None,
            _tasks: Vec::new(),
        })
    }

    pub async fn register(server: SocketAddr, user: &str, mark: u8) -> anyhow::Result<RawPhone> {
        let port = free_port();
        crate::calls::register(server, user, port).await?;
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

    /// Answers the next INVITE with 200 + SDP, waits for the ACK, starts RTP; returns the
    /// INVITE's request line.
    pub async fn answer(&mut self) -> anyhow::Result<String> {
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
        Ok(invite.lines().next().unwrap_or_default().to_string())
    }

    /// Refuses the next INVITE with `status` (486 Busy Here, 603 Decline, …) and takes
    /// its ACK; returns the INVITE's request line.
    pub async fn decline(&self, status: u16) -> anyhow::Result<String> {
        let invite = loop {
            let m = recv(&self.sip).await.context("INVITE to the phone")?;
            if m.starts_with("INVITE ") {
                break m;
            }
        };
        let port = self.sip.local_addr()?.port();
        let mut out = format!("SIP/2.0 {status} Refused\r\n");
        for name in ["Via", "From", "Call-ID", "CSeq"] {
            if let Some(v) = header(&invite, name) {
                out.push_str(&format!("{name}: {v}\r\n"));
            }
        }
        let to = header(&invite, "To").context("To")?;
        out.push_str(&format!(
            "To: {to};tag=raw{port}\r\nContent-Length: 0\r\n\r\n"
        ));
        self.sip.send_to(out.as_bytes(), self.server).await?;
        loop {
            let m = recv(&self.sip).await.context("ACK of the refusal")?;
            if m.starts_with("ACK ") {
                break;
            }
        }
        Ok(invite.lines().next().unwrap_or_default().to_string())
    }

    /// The phone's SIP port (where a trunk's static route points).
    pub fn port(&self) -> anyhow::Result<u16> {
        Ok(self.sip.local_addr()?.port())
    }

    /// Where the phone sends its SIP (a trunk made before Hotline knows its address).
    pub fn set_server(&mut self, server: SocketAddr) {
        self.server = server;
    }

    /// What the phone heard so far (`None` before it answered).
    pub fn heard(&self) -> Option<Heard> {
        self.heard.as_ref().map(|h| h.borrow().clone())
    }

    pub async fn until(&mut self, what: &str, done: impl Fn(&Heard) -> bool) -> anyhow::Result<()> {
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

    pub async fn hangup(&self) -> anyhow::Result<()> {
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

    pub async fn bye(&self) -> anyhow::Result<()> {
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
