//! Malformed messages sent raw over UDP and TCP: each gets its error response or is
//! dropped (and counted), and Hotline keeps serving (a following OPTIONS and REGISTER).

use std::net::SocketAddr;
use std::time::Duration;

use hotline_sip::Counters;
use hotline_sip_tests::{TRUSTED_IP, start_hotline};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpStream, UdpSocket};

fn msg(first: &str, id: &str, extra: &str, cseq: &str) -> String {
    format!(
        "{first}\r\nVia: SIP/2.0/UDP {TRUSTED_IP}:9;branch=z9hG4bK-{id};rport\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:u@127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: {cseq}\r\n{extra}\r\n"
    )
}

/// (message, expected status or None = no answer)
fn cases() -> Vec<(String, Option<u16>)> {
    vec![
        (
            msg(
                "INVITE sip:u@127.0.0.1 SIP/2.0",
                "cl",
                "Content-Length: 900\r\n",
                "1 INVITE",
            ) + "v=0",
            Some(400),
        ),
        (
            msg(
                "OPTIONS sip:u@127.0.0.1 SIP/2.0",
                "dup",
                "Call-ID: again\r\n",
                "1 OPTIONS",
            ),
            Some(400),
        ),
        (
            msg(
                "OPTIONS nobody:u@127.0.0.1 SIP/2.0",
                "scheme",
                "",
                "1 OPTIONS",
            ),
            Some(416),
        ),
        (
            msg("FROB sip:u@127.0.0.1 SIP/2.0", "method", "", "1 FROB"),
            Some(501),
        ),
        (
            msg(
                "OPTIONS sip:u@127.0.0.1 SIP/2.0",
                "mf",
                "Max-Forwards: many\r\n",
                "1 OPTIONS",
            ),
            Some(400),
        ),
        (
            msg(
                "OPTIONS sip:u@127.0.0.1 SIP/2.0",
                "nocolon",
                "no colon here\r\n",
                "1 OPTIONS",
            ),
            Some(400),
        ),
        (
            "OPTIONS sip:u@127.0.0.1 SIP/2.0\r\nCall-ID: nothing-else\r\n\r\n".into(),
            None,
        ),
        ("\0\0\0\0binary junk \u{7f}\r\n\r\n".into(), None),
    ]
}

fn status(resp: &[u8]) -> u16 {
    std::str::from_utf8(&resp[8..11]).unwrap().parse().unwrap()
}

async fn udp_roundtrip(
    sock: &UdpSocket,
    to: SocketAddr,
    m: &str,
    wait: Duration,
) -> Option<Vec<u8>> {
    sock.send_to(m.as_bytes(), to).await.unwrap();
    let mut buf = vec![0u8; 65_536];
    match tokio::time::timeout(wait, sock.recv_from(&mut buf)).await {
        Ok(Ok((n, _))) => Some(buf[..n].to_vec()),
        _ => None,
    }
}

fn options(id: &str, port: u16) -> String {
    msg(
        &format!("OPTIONS sip:127.0.0.1:{port} SIP/2.0"),
        id,
        "Content-Length: 0\r\n",
        "1 OPTIONS",
    )
}

fn register(id: &str, port: u16) -> String {
    format!(
        "REGISTER sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {TRUSTED_IP}:9;branch=z9hG4bK-{id};rport\r\nFrom: <sip:carol@127.0.0.1>;tag=1\r\nTo: <sip:carol@127.0.0.1>\r\nCall-ID: {id}\r\nCSeq: 1 REGISTER\r\nContact: <sip:carol@{TRUSTED_IP}:9>\r\nContent-Length: 0\r\n\r\n"
    )
}

#[tokio::test]
async fn malformed_over_udp_get_errors_or_are_dropped_and_server_keeps_serving() {
    let h = start_hotline().await.unwrap();
    let server = h.sip.udp_addrs()[0];
    let sock = UdpSocket::bind((TRUSTED_IP, 0)).await.unwrap();
    let mut expected_drops = 0;
    for (m, want) in cases() {
        match want {
            Some(code) => {
                let r = udp_roundtrip(&sock, server, &m, Duration::from_secs(5))
                    .await
                    .unwrap_or_else(|| panic!("no answer to {m:.60}"));
                assert_eq!(status(&r), code, "{}", String::from_utf8_lossy(&r));
            }
            None => {
                // No answer may come: prove it by sending an OPTIONS right behind it and
                // getting that OPTIONS' 200 as the very next datagram.
                expected_drops += 1;
                sock.send_to(m.as_bytes(), server).await.unwrap();
                let id = format!("probe{expected_drops}");
                let r = udp_roundtrip(
                    &sock,
                    server,
                    &options(&id, server.port()),
                    Duration::from_secs(5),
                )
                .await
                .expect("OPTIONS answered");
                assert!(String::from_utf8_lossy(&r).contains(&format!("Call-ID: {id}")));
                assert_eq!(status(&r), 200);
            }
        }
    }
    assert_eq!(Counters::get(&h.sip.counters().dropped), expected_drops);
    // Still serving: REGISTER from the trusted address.
    let r = udp_roundtrip(
        &sock,
        server,
        &register("reg-after", server.port()),
        Duration::from_secs(5),
    )
    .await
    .unwrap();
    assert_eq!(status(&r), 200, "{}", String::from_utf8_lossy(&r));
    h.shutdown().await;
}

async fn read_response(s: &mut TcpStream) -> Option<Vec<u8>> {
    let mut buf = bytes::BytesMut::new();
    let limits = hotline_sip::msg::Limits::default();
    tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            if let Some(m) = hotline_sip::server::frame(&mut buf, &limits).unwrap() {
                return Some(m.to_vec());
            }
            if s.read_buf(&mut buf).await.ok()? == 0 {
                return None;
            }
        }
    })
    .await
    .ok()
    .flatten()
}

#[tokio::test]
async fn malformed_over_tcp_get_errors_and_server_keeps_serving() {
    let h = start_hotline().await.unwrap();
    let server = h.sip.tcp_addrs()[0];
    for (m, want) in cases().into_iter().filter(|(_, w)| w.is_some()) {
        let mut s = TcpStream::connect(server).await.unwrap();
        // On a stream the claimed Content-Length is awaited: send it complete.
        let m = m.replace(
            "Content-Length: 900\r\n\r\nv=0",
            "Content-Length: 3\r\nContent-Length: 3\r\n\r\nv=0",
        );
        s.write_all(m.as_bytes()).await.unwrap();
        let r = read_response(&mut s)
            .await
            .unwrap_or_else(|| panic!("no answer to {m:.60}"));
        assert_eq!(Some(status(&r)), want, "{}", String::from_utf8_lossy(&r));
    }
    // A stream that cannot be framed (bad Content-Length) gets 400 and is closed.
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_all(
        msg(
            "OPTIONS sip:u@127.0.0.1 SIP/2.0",
            "bad-cl",
            "Content-Length: x\r\n",
            "1 OPTIONS",
        )
        .as_bytes(),
    )
    .await
    .unwrap();
    let r = read_response(&mut s).await.unwrap();
    assert_eq!(status(&r), 400);
    assert_eq!(read_response(&mut s).await, None, "connection closed");
    // Still serving over TCP.
    let mut s = TcpStream::connect(server).await.unwrap();
    s.write_all(options("tcp-after", server.port()).as_bytes())
        .await
        .unwrap();
    assert_eq!(status(&read_response(&mut s).await.unwrap()), 200);
    h.shutdown().await;
}
