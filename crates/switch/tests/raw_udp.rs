//! The switch behind a real SIP server on loopback, driven with raw UDP from a trusted
//! address (no digest): the refusals that need no media peer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hotline_media::{PortAllocator, Prompt};
use hotline_sip::CoreConfig;
use hotline_sip::server::{Server, ServerConfig};
use hotline_switch::{EndReason, Route, Switch, SwitchConfig};
use tokio::net::UdpSocket;

async fn start() -> (Server, Switch) {
    let core = CoreConfig {
        trusted: vec!["127.0.0.0/8".parse().unwrap()],
        numbers: ["4000".to_string(), "4001".to_string()].into(),
        ..CoreConfig::default()
    };
    let cfg = ServerConfig {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        tcp: vec![],
        core,
        tcp_queue: 16,
        max_connections: 16,
        ..ServerConfig::default()
    };
    let (server, app, events) = Server::start_with_app(cfg, 64).await.unwrap();
    let switch = Switch::start(
        SwitchConfig::new(
            HashMap::from([
                ("4000".to_string(), Route::Queue("q".into())),
                ("4001".to_string(), Route::Extension("bob".into())),
            ]),
            "127.0.0.1".parse().unwrap(),
            Prompt::from_samples(vec![0; 160]),
            hotline_cdr::CdrSink::memory().0,
        ),
        app,
        events,
        Arc::new(PortAllocator::new(25000, 25099).unwrap()),
    )
    .unwrap();
    (server, switch)
}

/// Sends `msg` and returns the status codes received until `last` (bounded).
async fn exchange(sock: &UdpSocket, to: std::net::SocketAddr, msg: &str, last: u16) -> Vec<u16> {
    sock.send_to(msg.as_bytes(), to).await.unwrap();
    let mut codes = vec![];
    let mut buf = vec![0u8; 4096];
    while codes.last() != Some(&last) {
        let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
            .await
            .expect("a response within 5 s")
            .unwrap();
        let text = String::from_utf8_lossy(&buf[..n]);
        codes.push(text[8..11].parse().unwrap());
    }
    codes
}

fn request(method: &str, body: &str, port: u16, server: std::net::SocketAddr) -> String {
    format!(
        "{method} sip:4000@{server} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK-{method}{}\r\nFrom: <sip:c@127.0.0.1>;tag=c1\r\nTo: <sip:4000@127.0.0.1>\r\nCall-ID: raw-{method}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{body}",
        body.len(),
        body.len()
    )
}

#[tokio::test]
async fn malformed_sdp_is_400_options_is_200_and_nothing_leaks() {
    let (server, mut switch) = start().await;
    let mut ended = switch.take_ended().unwrap();
    let to = server.udp_addrs()[0];
    let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let port = sock.local_addr().unwrap().port();
    let codes = exchange(
        &sock,
        to,
        &request("INVITE", "v=0\r\nnonsense\r\n", port, to),
        400,
    )
    .await;
    assert_eq!(codes, vec![100, 400]);
    let end = tokio::time::timeout(Duration::from_secs(5), ended.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!((end.status, end.reason), (400, EndReason::Rejected));
    let codes = exchange(&sock, to, &request("OPTIONS", "", port, to), 200).await;
    assert_eq!(codes, vec![200]);
    let codes = exchange(&sock, to, &request("MESSAGE", "", port, to), 405).await;
    assert_eq!(codes, vec![405]);
    assert_eq!(switch.stats().active_calls(), 0);
    assert_eq!(switch.ports().in_use(), 0);
    assert_eq!(switch.sip_dialogs().await.unwrap(), 0);
    switch.shutdown().await;
    server.shutdown().await;
}

async fn recv_text(sock: &UdpSocket) -> String {
    let mut buf = vec![0u8; 4096];
    let (n, _) = tokio::time::timeout(Duration::from_secs(5), sock.recv_from(&mut buf))
        .await
        .expect("a message within 5 s")
        .unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

/// Receives until a message whose first line starts with `start`.
async fn recv_until(sock: &UdpSocket, start: &str) -> String {
    loop {
        let t = recv_text(sock).await;
        if t.starts_with(start) {
            return t;
        }
    }
}

fn header<'a>(text: &'a str, name: &str) -> &'a str {
    text.lines()
        .find_map(|l| l.strip_prefix(name).and_then(|r| r.strip_prefix(':')))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no {name} in {text}"))
}

const SDP: &str = "v=0\r\no=a 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 40000 RTP/AVP 0\r\n";

/// The caller hangs up while the agent rings; Hotline CANCELs, but the agent's 200 crosses
/// the CANCEL: Hotline ACKs that 200 and sends BYE, so the agent's phone is not left in a
/// call, and nothing is left over.
#[tokio::test]
async fn agent_answer_crossing_the_cancel_is_acked_and_hung_up() {
    let (server, mut switch) = start().await;
    let mut ended = switch.take_ended().unwrap();
    let to = server.udp_addrs()[0];
    let agent = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let ap = agent.local_addr().unwrap().port();
    let register = format!(
        "REGISTER sip:{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{ap};branch=z9hG4bK-reg\r\nFrom: <sip:bob@127.0.0.1>;tag=r1\r\nTo: <sip:bob@127.0.0.1>\r\nCall-ID: reg-bob\r\nCSeq: 1 REGISTER\r\nContact: <sip:bob@127.0.0.1:{ap}>\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    assert_eq!(exchange(&agent, to, &register, 200).await, vec![200]);

    let caller = UdpSocket::bind("127.0.0.1:0").await.unwrap();
    let cp = caller.local_addr().unwrap().port();
    let invite = format!(
        "INVITE sip:4001@{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cp};branch=z9hG4bK-inv\r\nFrom: <sip:c@127.0.0.1>;tag=c1\r\nTo: <sip:4001@127.0.0.1>\r\nCall-ID: crossing\r\nCSeq: 1 INVITE\r\nContact: <sip:c@127.0.0.1:{cp}>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    caller.send_to(invite.as_bytes(), to).await.unwrap();
    let ok = recv_until(&caller, "SIP/2.0 200").await;
    let caller_to = header(&ok, "To").to_string();

    // Hotline calls the agent; the agent rings.
    let inv = recv_until(&agent, "INVITE ").await;
    let (via, from, call_id) = (
        header(&inv, "Via"),
        header(&inv, "From"),
        header(&inv, "Call-ID"),
    );
    let ringing = format!(
        "SIP/2.0 180 Ringing\r\nVia: {via}\r\nFrom: {from}\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    );
    agent.send_to(ringing.as_bytes(), to).await.unwrap();

    // A BYE with the right Call-ID but not our tag is refused, and changes nothing.
    let forged = format!(
        "BYE sip:4001@{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cp};branch=z9hG4bK-forged\r\nFrom: <sip:c@127.0.0.1>;tag=c1\r\nTo: <sip:4001@127.0.0.1>;tag=guessed\r\nCall-ID: crossing\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(forged.as_bytes(), to).await.unwrap();
    recv_until(&caller, "SIP/2.0 481").await;
    assert_eq!(switch.stats().active_calls(), 1);

    // The caller hangs up: Hotline CANCELs the ringing agent.
    let bye = format!(
        "BYE sip:4001@{to} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{cp};branch=z9hG4bK-bye\r\nFrom: <sip:c@127.0.0.1>;tag=c1\r\nTo: {caller_to}\r\nCall-ID: crossing\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    );
    caller.send_to(bye.as_bytes(), to).await.unwrap();
    recv_until(&caller, "SIP/2.0 200").await;
    recv_until(&agent, "CANCEL ").await;

    // ...but the agent had just answered.
    let answer = format!(
        "SIP/2.0 200 OK\r\nVia: {via}\r\nFrom: {from}\r\nTo: <sip:bob@127.0.0.1>;tag=b1\r\nCall-ID: {call_id}\r\nCSeq: 1 INVITE\r\nContact: <sip:bob@127.0.0.1:{ap}>\r\nContent-Type: application/sdp\r\nContent-Length: {}\r\n\r\n{SDP}",
        SDP.len()
    );
    agent.send_to(answer.as_bytes(), to).await.unwrap();
    let ack = recv_until(&agent, "ACK ").await;
    assert!(
        ack.starts_with(&format!("ACK sip:bob@127.0.0.1:{ap} SIP/2.0")),
        "{ack}"
    );
    assert!(ack.contains("CSeq: 1 ACK"), "{ack}");
    let hangup = recv_until(&agent, "BYE ").await;
    assert_eq!(header(&hangup, "Call-ID"), call_id);
    assert!(header(&hangup, "To").ends_with(";tag=b1"), "{hangup}");
    let ok_bye = format!(
        "SIP/2.0 200 OK\r\nVia: {}\r\nFrom: {}\r\nTo: {}\r\nCall-ID: {call_id}\r\nCSeq: 2 BYE\r\nContent-Length: 0\r\n\r\n",
        header(&hangup, "Via"),
        header(&hangup, "From"),
        header(&hangup, "To")
    );
    agent.send_to(ok_bye.as_bytes(), to).await.unwrap();

    let end = tokio::time::timeout(Duration::from_secs(5), ended.recv())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(end.reason, EndReason::CallerHangup);
    assert!(!end.bridged);
    assert_eq!(switch.stats().active_calls(), 0);
    assert_eq!(switch.ports().in_use(), 0, "both legs' ports back");
    // The BYE's 200 lets the agent's dialog go (bounded wait, no sleep-and-hope).
    let mut dialogs = usize::MAX;
    for _ in 0..100 {
        dialogs = switch.sip_dialogs().await.unwrap();
        if dialogs == 0 {
            break;
        }
        tokio::task::yield_now().await;
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert_eq!(dialogs, 0, "SIP dialogs left behind");
    switch.shutdown().await;
    server.shutdown().await;
}
