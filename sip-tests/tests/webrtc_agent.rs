//! A browser agent through the switch: bob registers a SIP-over-WebSocket contact
//! (`;transport=ws`, as JsSIP does; the test's SIP runs over UDP from the trusted
//! address), alice calls his extension, and Hotline's INVITE to bob carries the WebRTC
//! gateway's offer (ICE, DTLS-SRTP). bob's "browser" (a `webrtc`-crate peer) answers in
//! the 200 OK, and RTP flows both ways between alice's plain RTP and the browser; the
//! browser's hold and resume re-INVITEs get WebRTC answers and alice hears music on hold;
//! an offer-less re-INVITE gets a WebRTC offer in the 200 and the ACK's answer holds.

#[path = "../../crates/media/tests/webrtc_common/mod.rs"]
mod webrtc_common;

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use hotline_sip_tests::{TRUSTED_IP, free_port, media, start_hotline_with};
use rtp_rs::{RtpPacketBuilder, RtpReader, Seq};
use tokio::net::UdpSocket;
use webrtc_common::{Browser, RTCRtpTransceiverDirection};

/// The rest of `[media]` (after [`media`]) and bob's number.
const CONFIG: &str = "no_rtp_timeout_secs = 0\n\
                      [[numbers]]\nnumber = \"4351\"\nextension = \"bob\"\n";
const GUARD: Duration = Duration::from_secs(10);

fn header<'a>(msg: &'a str, name: &str) -> Option<&'a str> {
    msg.split("\r\n").skip(1).find_map(|l| {
        let (n, v) = l.split_once(':')?;
        n.trim().eq_ignore_ascii_case(name).then(|| v.trim())
    })
}

fn body(msg: &str) -> &str {
    msg.split_once("\r\n\r\n").map_or("", |(_, b)| b)
}

async fn expect(
    sock: &UdpSocket,
    what: &str,
    want: impl Fn(&str) -> bool,
) -> anyhow::Result<String> {
    let mut buf = vec![0u8; 16384];
    let deadline = tokio::time::Instant::now() + GUARD;
    loop {
        let (n, _) = tokio::time::timeout_at(deadline, sock.recv_from(&mut buf))
            .await
            .with_context(|| format!("no {what} in time"))??;
        let m = String::from_utf8_lossy(&buf[..n]).to_string();
        if want(&m) {
            return Ok(m);
        }
    }
}

/// bob's side of Hotline's call to his browser: his re-INVITEs in that dialog and their
/// ACKs.
struct BobDialog<'a> {
    sock: &'a UdpSocket,
    server: SocketAddr,
    contact: &'a str,
    /// Hotline's Contact: the request URI.
    target: String,
    from: String,
    to: String,
    call_id: String,
    cseq: u32,
}

impl BobDialog<'_> {
    /// Request `method` with `sdp` as its body (none when empty).
    async fn send(&self, method: &str, branch: &str, sdp: &str) -> anyhow::Result<()> {
        let BobDialog {
            target,
            from,
            to,
            call_id,
            cseq,
            contact,
            ..
        } = self;
        let addr = self.sock.local_addr()?;
        let typed = if sdp.is_empty() {
            ""
        } else {
            "Content-Type: application/sdp\r\n"
        };
        let contact = if method == "INVITE" {
            format!("Contact: {contact}\r\n")
        } else {
            String::new()
        };
        let msg = format!(
            "{method} {target} SIP/2.0\r\nVia: SIP/2.0/UDP {addr};branch=z9hG4bK-{branch}{cseq};rport\r\nFrom: {from};tag=bob1\r\nTo: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n{contact}Max-Forwards: 70\r\n{typed}Content-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        );
        self.sock.send_to(msg.as_bytes(), self.server).await?;
        Ok(())
    }

    /// A re-INVITE offering `sdp` (none when empty): the body of Hotline's 200.
    async fn reinvite(&mut self, sdp: &str) -> anyhow::Result<String> {
        self.cseq += 1;
        self.send("INVITE", "re", sdp).await?;
        let cseq = format!("{} INVITE", self.cseq);
        let reply = expect(self.sock, "a final answer to the re-INVITE", |m| {
            m.starts_with("SIP/2.0 ")
                && header(m, "CSeq") == Some(cseq.as_str())
                && !m.starts_with("SIP/2.0 100 ")
        })
        .await?;
        if !reply.starts_with("SIP/2.0 200 ") {
            bail!("re-INVITE refused: {reply}");
        }
        Ok(body(&reply).to_owned())
    }

    /// The ACK of the last re-INVITE, with `sdp` (the answer to Hotline's offer) or none.
    async fn ack(&self, sdp: &str) -> anyhow::Result<()> {
        self.send("ACK", "ra", sdp).await
    }
}

/// A 200 to `req` with `sdp`, our tag and contact.
fn ok_with(req: &str, contact: &str, sdp: &str) -> String {
    let mut out = String::from("SIP/2.0 200 OK\r\n");
    for l in req.split("\r\n").skip(1) {
        let name = l
            .split(':')
            .next()
            .unwrap_or("")
            .trim()
            .to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{l}\r\n")),
            "to" => out.push_str(&format!("{l};tag=bob1\r\n")),
            _ => {}
        }
    }
    out.push_str(&format!(
        "Contact: {contact}\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
        sdp.len()
    ));
    out
}

fn rtp(seq: u16, payload: &[u8]) -> Vec<u8> {
    RtpPacketBuilder::new()
        .payload_type(0)
        .ssrc(0xA11CE)
        .sequence(Seq::from(seq))
        .timestamp(seq as u32 * 160)
        .payload(payload)
        .build()
        .expect("rtp")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_agent_gets_webrtc_offer_and_talks_to_a_sip_caller() -> anyhow::Result<()> {
    browser_agent_call(None).await
}

/// The same with `[media] shared_rtp_port`: the gateway's offer to the browser and the
/// answer to alice both name the one shared port, and both parties' media (the browser's
/// ICE, DTLS and SRTP, alice's RTP) comes in there, through hold, resume and re-offers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_agent_and_sip_caller_on_the_shared_rtp_port() -> anyhow::Result<()> {
    browser_agent_call(Some(free_port())).await
}

async fn browser_agent_call(shared: Option<u16>) -> anyhow::Result<()> {
    let shared_cfg = shared.map_or(String::new(), |p| format!("shared_rtp_port = {p}\n"));
    let h = start_hotline_with(&(media(100) + &shared_cfg + CONFIG)).await?;
    let server = h.sip.udp_addrs()[0];
    let port_of = |sdp: &str| -> Option<u16> {
        sdp.lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|p| p.parse().ok())
    };

    // bob registers a WebSocket contact.
    let bob = UdpSocket::bind((TRUSTED_IP, 0)).await?;
    let bob_addr = bob.local_addr()?;
    let contact = format!("<sip:bob@{bob_addr};transport=ws>");
    bob.send_to(
        format!(
            "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {bob_addr};branch=z9hG4bK-reg;rport\r\nFrom: <sip:bob@{server}>;tag=r\r\nTo: <sip:bob@{server}>\r\nCall-ID: reg-bob\r\nCSeq: 1 REGISTER\r\nContact: {contact}\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
        server,
    )
    .await?;
    expect(&bob, "200 to REGISTER", |m| m.starts_with("SIP/2.0 200 ")).await?;

    // alice calls 4351 with plain RTP.
    let alice = UdpSocket::bind((TRUSTED_IP, 0)).await?;
    let alice_addr = alice.local_addr()?;
    let alice_rtp = UdpSocket::bind((TRUSTED_IP, 0)).await?;
    let sdp = format!(
        "v=0\r\no=alice 1 1 IN IP4 {TRUSTED_IP}\r\ns=-\r\nc=IN IP4 {TRUSTED_IP}\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        alice_rtp.local_addr()?.port()
    );
    alice
        .send_to(
            format!(
                "INVITE sip:4351@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {alice_addr};branch=z9hG4bK-inv;rport\r\nFrom: <sip:alice@{server}>;tag=al\r\nTo: <sip:4351@{server}>\r\nCall-ID: webrtc-call-1\r\nCSeq: 1 INVITE\r\nContact: <sip:alice@{alice_addr}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
                sdp.len()
            )
            .as_bytes(),
            server,
        )
        .await?;

    // Hotline INVITEs bob with the gateway's offer.
    let inv = expect(&bob, "INVITE", |m| m.starts_with("INVITE ")).await?;
    let offer = body(&inv);
    for needle in [
        "UDP/TLS/RTP/SAVPF",
        "a=fingerprint:",
        "a=ice-ufrag:",
        "a=rtcp-mux",
        "telephone-event",
    ] {
        if !offer.contains(needle) {
            bail!("INVITE to the browser lacks {needle}:\n{offer}");
        }
    }
    if header(&inv, "Session-Expires").is_some() {
        bail!("no session timer offered to a browser (a refresh would re-offer plain RTP)");
    }
    if let Some(p) = shared
        && !offer.contains(&format!(" {p} typ host"))
    {
        bail!("the browser is not offered the shared port {shared:?}:\n{offer}");
    }
    let (mut browser, answer) = Browser::answer(offer).await;
    bob.send_to(ok_with(&inv, &contact, &answer).as_bytes(), server)
        .await?;
    expect(&bob, "ACK", |m| m.starts_with("ACK ")).await?;

    // alice's 200: Hotline's RTP address for her leg.
    let ok = expect(&alice, "200 to INVITE", |m| {
        m.starts_with("SIP/2.0 200 ") && header(m, "CSeq").is_some_and(|c| c.ends_with("INVITE"))
    })
    .await?;
    let port: u16 = port_of(body(&ok)).context("Hotline's audio port")?;
    if shared.is_some() && Some(port) != shared {
        bail!("alice is not answered on the shared port {shared:?}:\n{ok}");
    }
    let hotline_rtp = SocketAddr::new("127.0.0.1".parse()?, port);
    let to = header(&ok, "To").context("To")?;
    let target = header(&ok, "Contact")
        .and_then(|c| c.split('<').nth(1))
        .and_then(|c| c.split('>').next())
        .context("Contact")?;
    alice
        .send_to(
            format!(
                "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {alice_addr};branch=z9hG4bK-ack;rport\r\nFrom: <sip:alice@{server}>;tag=al\r\nTo: {to}\r\nCall-ID: webrtc-call-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
            server,
        )
        .await?;
    browser.connected().await;

    // Media both ways, paced like phones, until each side has heard 40 packets.
    let payload = [0x5Au8; 160];
    let mut buf = [0u8; 1500];
    let (mut to_browser, mut to_alice) = (0u32, 0u32);
    let mut seq = 0u16;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while to_browser < 40 || to_alice < 40 {
        if tokio::time::Instant::now() > deadline {
            bail!("media: browser heard {to_browser}, alice heard {to_alice}");
        }
        tick.tick().await;
        alice_rtp.send_to(&rtp(seq, &payload), hotline_rtp).await?;
        browser.send(0, seq == 0, 160, &[0xA5; 160]).await;
        seq = seq.wrapping_add(1);
        while let Ok(p) = browser.rtp.try_recv() {
            if p.header.payload_type == 0 && p.payload[..] == payload[..] {
                to_browser += 1;
            }
        }
        while let Ok((n, _)) = alice_rtp.try_recv_from(&mut buf) {
            if RtpReader::new(&buf[..n])
                .is_ok_and(|r| r.payload_type() == 0 && r.payload() == [0xA5; 160])
            {
                to_alice += 1;
            }
        }
    }

    // Hold from the page: the browser re-INVITEs with a sendonly re-offer. Hotline
    // answers on the running connection (WebRTC answer, same DTLS identity and ICE
    // credentials, recvonly) and alice hears music instead of the browser.
    let mut dialog = BobDialog {
        sock: &bob,
        server,
        contact: &contact,
        target: header(&inv, "Contact")
            .and_then(|c| c.split('<').nth(1))
            .and_then(|c| c.split('>').next())
            .context("Hotline's Contact")?
            .to_owned(),
        from: header(&inv, "To").context("To")?.to_owned(),
        to: header(&inv, "From").context("From")?.to_owned(),
        call_id: header(&inv, "Call-ID").context("Call-ID")?.to_owned(),
        cseq: 1,
    };
    let mut reinvite = async |browser: &mut Browser, dir, restart| -> anyhow::Result<String> {
        let offer = browser.reoffer(dir, restart).await;
        let answer = dialog.reinvite(&offer).await?;
        dialog.ack("").await?;
        browser.accept(&answer).await;
        Ok(answer)
    };
    let attr = |sdp: &str, name: &str| {
        sdp.lines()
            .find_map(|l| l.strip_prefix(name))
            .map(|v| v.trim().to_owned())
    };
    let answer_on_hold =
        reinvite(&mut browser, RTCRtpTransceiverDirection::Sendonly, false).await?;
    for needle in ["UDP/TLS/RTP/SAVPF", "a=recvonly", "a=rtcp-mux", "PCMU/8000"] {
        if !answer_on_hold.contains(needle) {
            bail!("hold answer lacks {needle}:\n{answer_on_hold}");
        }
    }
    if attr(&answer_on_hold, "a=fingerprint:") != attr(offer, "a=fingerprint:")
        || attr(&answer_on_hold, "a=ice-ufrag:") != attr(offer, "a=ice-ufrag:")
    {
        bail!("hold answer changed DTLS or ICE:\n{answer_on_hold}");
    }
    // alice hears music (not the browser, which keeps sending) until 40 packets of it.
    let (mut music, mut leaked) = (0u32, 0u32);
    let deadline = tokio::time::Instant::now() + GUARD;
    while music < 40 {
        if tokio::time::Instant::now() > deadline {
            bail!("on hold alice heard {music} music packets");
        }
        tick.tick().await;
        browser.send(0, false, 160, &[0xA5; 160]).await;
        while let Ok((n, _)) = alice_rtp.try_recv_from(&mut buf) {
            match RtpReader::new(&buf[..n]) {
                Ok(r) if r.payload() == [0xA5; 160] => leaked += 1,
                Ok(r) if r.payload_type() == 0 => music += 1,
                _ => {}
            }
        }
    }
    // A few of the browser's packets may have been in flight when the hold began.
    if leaked > 3 {
        bail!("alice heard the browser {leaked} times while on hold");
    }

    // Resume: sendrecv, both ways again.
    let resumed = reinvite(&mut browser, RTCRtpTransceiverDirection::Sendrecv, false).await?;
    if !resumed.contains("a=sendrecv") {
        bail!("resume answer is not sendrecv:\n{resumed}");
    }
    let (mut to_browser, mut to_alice) = (0u32, 0u32);
    let deadline = tokio::time::Instant::now() + GUARD;
    while to_browser < 20 || to_alice < 20 {
        if tokio::time::Instant::now() > deadline {
            bail!("after resume: browser heard {to_browser}, alice heard {to_alice}");
        }
        tick.tick().await;
        alice_rtp.send_to(&rtp(seq, &payload), hotline_rtp).await?;
        browser.send(0, false, 160, &[0xA5; 160]).await;
        seq = seq.wrapping_add(1);
        while let Ok(p) = browser.rtp.try_recv() {
            if p.header.payload_type == 0 && p.payload[..] == payload[..] {
                to_browser += 1;
            }
        }
        while let Ok((n, _)) = alice_rtp.try_recv_from(&mut buf) {
            if RtpReader::new(&buf[..n]).is_ok_and(|r| r.payload() == [0xA5; 160]) {
                to_alice += 1;
            }
        }
    }

    // An offer-less re-INVITE from the page: Hotline's 200 carries a WebRTC offer made on
    // the running connection (same DTLS identity and ICE credentials), the ACK the
    // browser's answer. Answering `sendonly` holds (alice hears music, not the browser).
    let reoffer = dialog.reinvite("").await?;
    for needle in ["UDP/TLS/RTP/SAVPF", "a=sendrecv", "a=rtcp-mux", "PCMU/8000"] {
        if !reoffer.contains(needle) {
            bail!("Hotline's offer in the 200 lacks {needle}:\n{reoffer}");
        }
    }
    if attr(&reoffer, "a=fingerprint:") != attr(offer, "a=fingerprint:")
        || attr(&reoffer, "a=ice-ufrag:") != attr(offer, "a=ice-ufrag:")
        || attr(&reoffer, "a=setup:").as_deref() == Some("actpass")
    {
        bail!("Hotline's offer changed DTLS or ICE:\n{reoffer}");
    }
    let held = browser
        .answer_offer(&reoffer, RTCRtpTransceiverDirection::Sendonly)
        .await;
    dialog.ack(&held).await?;
    // alice hears music again once the ACK's answer is applied, not the browser.
    let (mut music, mut leaked) = (0u32, 0u32);
    let deadline = tokio::time::Instant::now() + GUARD;
    while music < 40 {
        if tokio::time::Instant::now() > deadline {
            bail!("after the ACK's hold answer alice heard {music} music packets");
        }
        tick.tick().await;
        browser.send(0, false, 160, &[0xA5; 160]).await;
        while let Ok((n, _)) = alice_rtp.try_recv_from(&mut buf) {
            match RtpReader::new(&buf[..n]) {
                // Before the ACK is handled the browser is still heard.
                Ok(r) if r.payload() == [0xA5; 160] && music > 0 => leaked += 1,
                Ok(r) if r.payload() == [0xA5; 160] => {}
                Ok(r) if r.payload_type() == 0 => music += 1,
                _ => {}
            }
        }
    }
    if leaked > 3 {
        bail!("alice heard the browser {leaked} times after its hold answer");
    }

    // alice hangs up: Hotline BYEs the browser's dialog.
    alice
        .send_to(
            format!(
                "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {alice_addr};branch=z9hG4bK-bye;rport\r\nFrom: <sip:alice@{server}>;tag=al\r\nTo: {to}\r\nCall-ID: webrtc-call-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
            )
            .as_bytes(),
            server,
        )
        .await?;
    expect(&bob, "BYE", |m| m.starts_with("BYE ")).await?;
    browser.close().await;
    if shared.is_some() {
        let port = h
            .switch
            .as_ref()
            .and_then(|s| s.shared_rtp())
            .context("shared port stats")?;
        // alice sent 60+ and the browser 140+ packets; all came in on the shared port.
        if port.routed < 200 {
            bail!("both parties' media came in on the shared port: {port:?}");
        }
    }
    Ok(())
}

/// A browser calling out (click-to-dial, agent to agent): its INVITE carries a WebRTC
/// offer (DTLS-SRTP, ICE). Hotline answers it through the gateway (ICE candidates, DTLS
/// fingerprint and role, G.711 + telephone-event), calls carol's plain SIP phone on
/// extension 4352, and RTP flows both ways between the browser and carol. Garbage
/// dressed as a browser's offer gets a 4xx and leaves no call behind.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_calls_out_and_talks_to_a_sip_phone() -> anyhow::Result<()> {
    browser_calls_carol("4352").await
}

/// The same, dialling carol's user directly (no `[[numbers]]` entry of hers is used): the
/// SIP core hands the browser's INVITE to the switch instead of proxying its WebRTC SDP
/// to a plain phone, and the gateway answers it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browser_calling_a_sip_user_directly_goes_through_the_gateway() -> anyhow::Result<()> {
    browser_calls_carol("carol").await
}

/// bob's browser dials `dial` (carol's number or her user), media flows both ways between
/// the browser and carol's plain phone, and the browser hangs up.
async fn browser_calls_carol(dial: &str) -> anyhow::Result<()> {
    let h = start_hotline_with(&format!(
        "{}no_rtp_timeout_secs = 0\n[[numbers]]\nnumber = \"4352\"\nextension = \"carol\"\n",
        media(100)
    ))
    .await?;
    let server = h.sip.udp_addrs()[0];

    // carol: a plain SIP phone.
    let carol = UdpSocket::bind((TRUSTED_IP, 0)).await?;
    let carol_addr = carol.local_addr()?;
    let carol_rtp = UdpSocket::bind((TRUSTED_IP, 0)).await?;
    carol.send_to(
        format!(
            "REGISTER sip:{server} SIP/2.0\r\nVia: SIP/2.0/UDP {carol_addr};branch=z9hG4bK-creg;rport\r\nFrom: <sip:carol@{server}>;tag=r\r\nTo: <sip:carol@{server}>\r\nCall-ID: reg-carol\r\nCSeq: 1 REGISTER\r\nContact: <sip:carol@{carol_addr}>\r\nExpires: 600\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
        server,
    )
    .await?;
    expect(&carol, "200 to REGISTER", |m| m.starts_with("SIP/2.0 200 ")).await?;

    // The browser (bob) dials: first with garbage in a WebRTC-looking offer.
    let bob = UdpSocket::bind((TRUSTED_IP, 0)).await?;
    let bob_addr = bob.local_addr()?;
    let invite = |call_id: &str, sdp: &str| {
        format!(
            "INVITE sip:{dial}@{server} SIP/2.0\r\nVia: SIP/2.0/UDP {bob_addr};branch=z9hG4bK-{call_id};rport\r\nFrom: <sip:bob@{server}>;tag=bb\r\nTo: <sip:{dial}@{server}>\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@{bob_addr};transport=ws>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{sdp}",
            sdp.len()
        )
    };
    let junk = "v=0\r\nm=audio 9 UDP/TLS/RTP/SAVPF 0\r\na=fingerprint:nonsense\r\n";
    bob.send_to(invite("webrtc-out-junk", junk).as_bytes(), server)
        .await?;
    let refused = expect(&bob, "final response to the junk offer", |m| {
        m.starts_with("SIP/2.0 ") && !m.starts_with("SIP/2.0 1")
    })
    .await?;
    if !(refused.starts_with("SIP/2.0 400 ") || refused.starts_with("SIP/2.0 488 ")) {
        bail!("junk browser offer not refused with 400/488: {refused}");
    }

    let (mut browser, offer) = Browser::call().await;
    bob.send_to(invite("webrtc-out-1", &offer).as_bytes(), server)
        .await?;
    let ok = expect(&bob, "200 to the browser's INVITE", |m| {
        m.starts_with("SIP/2.0 200 ") && header(m, "Call-ID") == Some("webrtc-out-1")
    })
    .await?;
    let answer = body(&ok);
    for needle in [
        "UDP/TLS/RTP/SAVPF",
        "a=fingerprint:sha-256",
        "a=ice-ufrag:",
        "a=rtcp-mux",
        "PCMU/8000",
        "telephone-event/8000",
        "typ host",
    ] {
        if !answer.contains(needle) {
            bail!("answer to the browser lacks {needle}:\n{answer}");
        }
    }
    if !(answer.contains("a=setup:active") || answer.contains("a=setup:passive")) {
        bail!("the answer picks a DTLS role:\n{answer}");
    }
    if header(&ok, "Session-Expires").is_some() {
        bail!("no session timer imposed on a browser that did not ask");
    }
    let to = header(&ok, "To").context("To")?.to_owned();
    let target = header(&ok, "Contact")
        .and_then(|c| c.split('<').nth(1))
        .and_then(|c| c.split('>').next())
        .context("Contact")?
        .to_owned();
    bob.send_to(
        format!(
            "ACK {target} SIP/2.0\r\nVia: SIP/2.0/UDP {bob_addr};branch=z9hG4bK-oack;rport\r\nFrom: <sip:bob@{server}>;tag=bb\r\nTo: {to}\r\nCall-ID: webrtc-out-1\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
        server,
    )
    .await?;
    browser.accept(answer).await;
    browser.connected().await;

    // Hotline calls carol with plain SDP; she answers with her RTP address.
    let inv = expect(&carol, "INVITE to carol", |m| m.starts_with("INVITE ")).await?;
    let hotline_rtp: SocketAddr = {
        let offer = body(&inv);
        if offer.contains("SAVPF") {
            bail!("carol is a plain phone and gets plain RTP:\n{offer}");
        }
        let port: u16 = offer
            .lines()
            .find_map(|l| l.strip_prefix("m=audio "))
            .and_then(|l| l.split_whitespace().next())
            .and_then(|p| p.parse().ok())
            .context("Hotline's port for carol")?;
        SocketAddr::new("127.0.0.1".parse()?, port)
    };
    let carol_sdp = format!(
        "v=0\r\no=carol 1 1 IN IP4 {TRUSTED_IP}\r\ns=-\r\nc=IN IP4 {TRUSTED_IP}\r\nt=0 0\r\nm=audio {} RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n",
        carol_rtp.local_addr()?.port()
    );
    carol
        .send_to(
            ok_with(&inv, &format!("<sip:carol@{carol_addr}>"), &carol_sdp).as_bytes(),
            server,
        )
        .await?;
    expect(&carol, "ACK", |m| m.starts_with("ACK ")).await?;

    // Media both ways until each side has heard 40 packets.
    let payload = [0x3Cu8; 160];
    let mut buf = [0u8; 1500];
    let (mut to_browser, mut to_carol) = (0u32, 0u32);
    let mut seq = 0u16;
    let mut tick = tokio::time::interval(Duration::from_millis(20));
    let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
    while to_browser < 40 || to_carol < 40 {
        if tokio::time::Instant::now() > deadline {
            bail!("media: browser heard {to_browser}, carol heard {to_carol}");
        }
        tick.tick().await;
        carol_rtp.send_to(&rtp(seq, &payload), hotline_rtp).await?;
        browser.send(0, seq == 0, 160, &[0xC3; 160]).await;
        seq = seq.wrapping_add(1);
        while let Ok(p) = browser.rtp.try_recv() {
            if p.header.payload_type == 0 && p.payload[..] == payload[..] {
                to_browser += 1;
            }
        }
        while let Ok((n, _)) = carol_rtp.try_recv_from(&mut buf) {
            if RtpReader::new(&buf[..n])
                .is_ok_and(|r| r.payload_type() == 0 && r.payload() == [0xC3; 160])
            {
                to_carol += 1;
            }
        }
    }

    // The browser hangs up: Hotline BYEs carol.
    bob.send_to(
        format!(
            "BYE {target} SIP/2.0\r\nVia: SIP/2.0/UDP {bob_addr};branch=z9hG4bK-obye;rport\r\nFrom: <sip:bob@{server}>;tag=bb\r\nTo: {to}\r\nCall-ID: webrtc-out-1\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
        )
        .as_bytes(),
        server,
    )
    .await?;
    expect(&carol, "BYE", |m| m.starts_with("BYE ")).await?;
    browser.close().await;
    Ok(())
}
