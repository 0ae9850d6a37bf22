//! The switch behind a real SIP server on loopback, driven with raw UDP from a trusted
//! address (no digest): the refusals that need no media peer.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use hotline_media::{LegTiming, PortAllocator, Prompt};
use hotline_sip::CoreConfig;
use hotline_sip::server::{Server, ServerConfig};
use hotline_switch::{EndReason, Route, Switch, SwitchConfig};
use tokio::net::UdpSocket;

async fn start() -> (Server, Switch) {
    let core = CoreConfig {
        trusted: vec!["127.0.0.0/8".parse().unwrap()],
        numbers: ["4000".to_string()].into(),
        ..CoreConfig::default()
    };
    let cfg = ServerConfig {
        udp: vec!["127.0.0.1:0".parse().unwrap()],
        tcp: vec![],
        core,
        tcp_queue: 16,
        max_connections: 16,
    };
    let (server, app, events) = Server::start_with_app(cfg, 64).await.unwrap();
    let switch = Switch::start(
        SwitchConfig {
            routes: HashMap::from([("4000".to_string(), Route::Queue("q".into()))]),
            media_ip: "127.0.0.1".parse().unwrap(),
            music: Prompt::from_samples(vec![0; 160]),
            leg_timing: LegTiming::default(),
            acd: None,
        },
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
