//! The WebRTC gateway against a real headless Chromium (Debian's `chromium`, driven by
//! `playwright-core` from `tests/browser/answer.mjs`): Hotline offers, the page's
//! `RTCPeerConnection` answers with its fake microphone, and the Rust side bridges it to
//! a plain RTP phone sending PCMU. Packets are counted both ways on Hotline's counters
//! and on the page's `getStats()`; a key pressed with the page's `RTCDTMFSender` reaches
//! the call as RFC 4733; the page's hold, resume and ICE-restart re-offers are answered
//! on the running connection.
//!
//! Needs `/usr/bin/chromium` and `npm ci` in `tests/browser` (`sip-tests/run-tests.sh`
//! does both). Without them the test says so and passes, except under CI (`CI` set),
//! where it fails.

mod support;
use std::net::{IpAddr, Ipv4Addr};
use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use hotline_media::SharedPort;
use hotline_media::leg::{LegConfig, LegEvent, LegTiming};
use hotline_media::sdp::{Codec, Direction};
use hotline_media::session::{MediaEvent, MediaLeg, Side, spawn_session};
use hotline_media::webrtc::{WebRtcLeg, WebRtcSettings};
use rtp_rs::RtpReader;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader, Lines};
use tokio::net::UdpSocket;
use tokio::process::{Child, ChildStdin, ChildStdout, Command};
use tokio::sync::mpsc;
use tokio::time::timeout;

const LO: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);
const GUARD: Duration = Duration::from_secs(30);
/// Packets each way that must be seen (3 s of 20 ms audio is 150).
const N: u64 = 50;

struct Page {
    child: Child,
    stdin: ChildStdin,
    lines: Lines<BufReader<ChildStdout>>,
}

impl Page {
    fn start() -> Option<Page> {
        let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/browser");
        let chromium =
            std::env::var("CHROMIUM").unwrap_or_else(|_| "/usr/bin/chromium".to_string());
        let missing = if !std::path::Path::new(&chromium).exists() {
            Some(format!("{chromium} not installed"))
        } else if !dir.join("node_modules/playwright-core").exists() {
            Some(format!("run `npm ci` in {}", dir.display()))
        } else {
            None
        };
        if let Some(why) = missing {
            assert!(
                std::env::var_os("CI").is_none(),
                "browser test cannot run under CI: {why}"
            );
            eprintln!("skipped: {why}");
            return None;
        }
        let mut child = Command::new("node")
            .arg("answer.mjs")
            .current_dir(&dir)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .expect("node runs");
        let stdin = child.stdin.take().unwrap();
        let lines = BufReader::new(child.stdout.take().unwrap()).lines();
        Some(Page {
            child,
            stdin,
            lines,
        })
    }

    async fn ask(&mut self, msg: Value) -> Value {
        let mut line = msg.to_string();
        line.push('\n');
        self.stdin.write_all(line.as_bytes()).await.unwrap();
        let reply = timeout(GUARD, self.lines.next_line())
            .await
            .expect("page answers in time")
            .unwrap()
            .expect("page alive");
        let v: Value = serde_json::from_str(&reply).expect("JSON from the page");
        assert!(v.get("error").is_none(), "page error: {v}");
        v
    }

    async fn quit(mut self) {
        let _ = self.stdin.write_all(b"{\"quit\":true}\n").await;
        drop(self.stdin);
        let status = timeout(GUARD, self.child.wait()).await;
        assert!(
            matches!(status, Ok(Ok(s)) if s.success()),
            "page exits cleanly: {status:?}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_answers_and_media_flows_both_ways() {
    chromium_answers(false).await;
}

/// The same with the browser leg on a shared media port: ICE, DTLS, SRTP and SRTCP all
/// come in on the one port, sorted out to the leg by our ICE username fragment (also
/// after the page's ICE restart), and the leg's end leaves nothing routed there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_answers_on_the_shared_port_and_media_flows_both_ways() {
    chromium_answers(true).await;
}

async fn chromium_answers(shared: bool) {
    let Some(mut page) = Page::start() else {
        return;
    };
    let alloc = support::port_range(50);
    let port = match shared {
        true => Some(SharedPort::bind((LO, 0).into()).await.unwrap()),
        false => None,
    };
    let (leg, offer) = WebRtcLeg::offer_on(&alloc, &WebRtcSettings::new(LO), port.as_ref())
        .await
        .unwrap();
    if let Some(p) = &port {
        assert_eq!(
            leg.local_addr(),
            p.local_addr().unwrap(),
            "offered on the shared port"
        );
    }
    let stats = leg.stats();
    let reply = page.ask(json!({ "offer": offer })).await;
    let answer = reply["answer"].as_str().expect("answer SDP").to_string();
    assert!(answer.contains("a=setup:active"), "{answer}");

    let phone = UdpSocket::bind((LO, 0)).await.unwrap();
    let a_ports = alloc.bind(LO).await.unwrap();
    let a_addr = a_ports.rtp.local_addr().unwrap();
    let a = MediaLeg::new(
        a_ports,
        LegConfig {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(101),
            remote_rtp: Some(phone.local_addr().unwrap()),
            remote_rtcp: None,
            direction: Direction::SendRecv,
            ptime: 20,
        },
        LegTiming::default(),
    );
    let b = leg
        .connect(Some(&answer), LegTiming::default())
        .await
        .unwrap();
    let te = b.state().config().telephone_event;
    let ctl = b.gateway().expect("browser leg").control();
    assert!(te.is_some(), "Chromium kept telephone-event in its answer");
    let (ev_tx, mut events) = mpsc::channel(256);
    let session = spawn_session(a, ev_tx);
    session.attach(b).await.unwrap();
    session.bridge().await.unwrap();

    // The phone talks at the real pace (a 400 Hz-ish µ-law pattern) and counts what
    // comes back, while the page waits for its own counters.
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let phone_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let payload: Vec<u8> = (0..160).map(|i| [0xFF, 0xA0, 0x90, 0xA0][i % 4]).collect();
        let mut buf = [0u8; 1500];
        let (mut sent, mut got_audio, mut got_events) = (0u16, 0u64, 0u64);
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = tick.tick() => {
                    let p = support::rtp(0, 0x0BAD_CAFE, sent, sent as u32 * 160, &payload);
                    let _ = phone.send_to(&p, a_addr).await;
                    sent = sent.wrapping_add(1);
                }
                r = phone.recv_from(&mut buf) => {
                    if let Ok((n, _)) = r && let Ok(r) = RtpReader::new(&buf[..n]) {
                        match r.payload_type() {
                            0 => got_audio += 1,
                            pt if Some(pt) == te => got_events += 1,
                            _ => {}
                        }
                    }
                }
            }
        }
        (sent, got_audio, got_events)
    });

    let s = page
        .ask(json!({ "waitStats": { "inbound": N, "outbound": N, "timeoutMs": 20000 } }))
        .await;
    let st = &s["stats"];
    assert_eq!(st["state"], "connected", "{s}");
    assert!(
        st["inbound"].as_u64().unwrap_or(0) >= N,
        "page received: {s}"
    );
    assert!(st["outbound"].as_u64().unwrap_or(0) >= N, "page sent: {s}");
    assert_eq!(
        st["codec"], "audio/PCMU",
        "G.711 pass-through, no Opus: {s}"
    );

    // A key on the page's RTCDTMFSender reaches the call as RFC 4733 from leg B.
    let d = page.ask(json!({ "dtmf": "5" })).await;
    assert_eq!(d["dtmf"], true, "{d}");
    let digit = timeout(GUARD, async {
        loop {
            match events.recv().await {
                Some(MediaEvent::Leg(Side::B, LegEvent::Dtmf(d))) => return d.digit,
                Some(_) => continue,
                None => panic!("session ended"),
            }
        }
    })
    .await
    .expect("the page's DTMF reaches the call");
    assert_eq!(digit, '5');

    // Hold, resume and an ICE restart from the page (a softphone's re-INVITEs): each
    // re-offer is answered on the running connection and Chromium accepts the answer
    // (it refuses a changed DTLS role or fingerprint), then media flows again.
    let mut base = st["inbound"].as_u64().unwrap_or(0);
    for (direction, restart, ours) in [
        ("sendonly", false, "a=recvonly"),
        ("sendrecv", false, "a=sendrecv"),
        ("sendrecv", true, "a=sendrecv"),
    ] {
        let o = page
            .ask(json!({ "reoffer": { "direction": direction, "iceRestart": restart } }))
            .await;
        let offer = o["offer"].as_str().expect("re-offer SDP");
        let (re, cfg) = ctl.reoffer(offer).await.expect("re-offer answered");
        assert!(re.sdp.contains(ours), "{direction}: {}", re.sdp);
        assert_eq!(
            cfg.direction.sends(),
            direction == "sendrecv",
            "the session sends to the page unless it holds"
        );
        session.reconfigure(Side::B, cfg).await.unwrap();
        let a = page.ask(json!({ "answer": re.sdp })).await;
        assert_eq!(a["accepted"], true, "Chromium takes the re-answer: {a}");
        if direction == "sendrecv" {
            let s = page
                .ask(json!({ "waitStats": { "inbound": base + N, "outbound": 0, "timeoutMs": 20000 } }))
                .await;
            let now = s["stats"]["inbound"].as_u64().unwrap_or(0);
            assert!(
                now >= base + N,
                "page hears the phone again after {direction} (restart {restart}): {s}"
            );
            assert_eq!(s["stats"]["state"], "connected", "{s}");
            base = now;
        }
    }

    // The gateway's RTCP (SR + RR, every 5 s) reaches the page as SRTCP it accepts.
    let s = page
        .ask(json!({ "waitStats": { "inbound": 0, "outbound": 0, "timeoutMs": 20000, "rtcp": true } }))
        .await;
    assert!(
        s["stats"]["remoteSenderReports"].as_u64().unwrap_or(0) > 0,
        "page has the gateway's sender report: {s}"
    );
    assert!(
        s["stats"]["remoteReceiverReports"].as_u64().unwrap_or(0) > 0,
        "page has the gateway's receiver report: {s}"
    );
    assert!(
        stats.lean(),
        "media past the peer connection ({}): {s}",
        s["stats"]["srtpCipher"]
    );

    let _ = stop_tx.send(());
    let (sent, got_audio, got_events) = phone_task.await.unwrap();
    assert!(
        got_audio >= N,
        "phone heard the browser: {got_audio} of its packets"
    );
    assert!(got_events > 0, "the key was relayed to the phone too");
    let ss = session.stats().await.unwrap();
    let sb = ss.b.unwrap();
    assert!(sb.rx_packets >= N && sb.tx_packets >= N, "{ss:?}");
    assert!(stats.from_browser() >= N && stats.to_browser() >= N);
    eprintln!(
        "chromium: page {st}; phone sent {sent}, heard {got_audio}; gateway from {} to {}",
        stats.from_browser(),
        stats.to_browser()
    );

    let (a, b) = session.stop().await.unwrap();
    drop(a);
    b.unwrap().release().await;
    assert_eq!(alloc.in_use(), 0);
    if let Some(p) = &port {
        let st = p.stats();
        assert!(
            st.routed >= stats.from_browser(),
            "the browser came in there: {st:?}"
        );
        assert_eq!(
            st.legs, 0,
            "every address the browser was seen from is gone: {st:?}"
        );
    }
    page.quit().await;
}

/// Chromium calls out (its own offer, as a page's click-to-dial INVITE carries): the
/// gateway answers, Chromium accepts the answer and connects, and RTP flows both ways
/// with a plain phone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn chromium_offers_and_the_gateway_answers() {
    let Some(mut page) = Page::start() else {
        return;
    };
    let alloc = support::port_range(10);
    let o = page.ask(json!({ "call": true })).await;
    let offer = o["offer"].as_str().expect("offer SDP").to_string();
    let (leg, answer) = WebRtcLeg::answer(&alloc, &WebRtcSettings::new(LO), &offer)
        .await
        .expect("Chromium's offer is answered");
    for needle in [
        "UDP/TLS/RTP/SAVPF",
        "a=fingerprint:sha-256",
        "a=rtcp-mux",
        "PCMU/8000",
        "typ host",
    ] {
        assert!(answer.contains(needle), "answer lacks {needle}:\n{answer}");
    }
    assert!(!answer.contains("opus"), "G.711 only:\n{answer}");
    let stats = leg.stats();
    let b = leg.connect(None, LegTiming::default()).await.unwrap();
    let a = page.ask(json!({ "answer": answer })).await;
    assert_eq!(a["accepted"], true, "{a}");

    let phone = UdpSocket::bind((LO, 0)).await.unwrap();
    let a_ports = alloc.bind(LO).await.unwrap();
    let a_addr = a_ports.rtp.local_addr().unwrap();
    let leg_a = MediaLeg::new(
        a_ports,
        LegConfig {
            codec: Codec::Pcmu,
            payload_type: 0,
            telephone_event: Some(101),
            remote_rtp: Some(phone.local_addr().unwrap()),
            remote_rtcp: None,
            direction: Direction::SendRecv,
            ptime: 20,
        },
        LegTiming::default(),
    );
    let (ev_tx, _events) = mpsc::channel(256);
    let session = spawn_session(leg_a, ev_tx);
    session.attach(b).await.unwrap();
    session.bridge().await.unwrap();
    let (stop_tx, mut stop_rx) = tokio::sync::oneshot::channel::<()>();
    let phone_task = tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_millis(20));
        let payload = [0xFFu8; 160];
        let mut buf = [0u8; 1500];
        let (mut sent, mut heard) = (0u16, 0u64);
        loop {
            tokio::select! {
                _ = &mut stop_rx => break,
                _ = tick.tick() => {
                    let p = support::rtp(0, 0x0C0F_FEE0, sent, sent as u32 * 160, &payload);
                    let _ = phone.send_to(&p, a_addr).await;
                    sent = sent.wrapping_add(1);
                }
                r = phone.recv_from(&mut buf) => {
                    if let Ok((n, _)) = r && RtpReader::new(&buf[..n]).is_ok_and(|r| r.payload_type() == 0) {
                        heard += 1;
                    }
                }
            }
        }
        heard
    });
    let s = page
        .ask(json!({ "waitStats": { "inbound": N, "outbound": N, "timeoutMs": 20000 } }))
        .await;
    let st = &s["stats"];
    assert_eq!(st["state"], "connected", "{s}");
    assert!(
        st["inbound"].as_u64().unwrap_or(0) >= N,
        "page received: {s}"
    );
    assert!(st["outbound"].as_u64().unwrap_or(0) >= N, "page sent: {s}");
    assert_eq!(st["codec"], "audio/PCMU", "{s}");
    let _ = stop_tx.send(());
    let heard = phone_task.await.unwrap();
    assert!(heard >= N, "phone heard the page: {heard}");
    assert!(stats.from_browser() >= N && stats.to_browser() >= N);
    assert!(stats.lean(), "media past the peer connection: {s}");
    let (_a, b) = session.stop().await.unwrap();
    b.unwrap().release().await;
    page.quit().await;
}
