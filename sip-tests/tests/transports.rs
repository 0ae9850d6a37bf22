//! SIP over TLS and over WebSocket (RFC 7118) against real peers, and the guard at accept.
//!
//! - TLS: baresip registers over TLS (digest 401 → 200) and takes a call a SIPp caller
//!   places through Hotline, which reaches it over the phone's own TLS connection. (Debian's
//!   SIPp is built without OpenSSL: `sipp -t l1` says "To use a TLS transport you must
//!   compile SIPp with OpenSSL", so baresip is the TLS peer.) A rustls client checks the
//!   certificate reload and bad handshakes.
//! - WebSocket: JsSIP (from npm, run by node over the `ws` package) registers over WS and
//!   WSS with digest auth and is offered calls a SIPp caller places: proxied to its AOR,
//!   and from the B2BUA for a number routed to its extension; each reaches it over its
//!   WebSocket flow, JsSIP rings and rejects it (486). A tokio-tungstenite client sends bad
//!   input: no subprotocol, a foreign Origin, garbage and oversize frames.
//! - A source the guard blocked is closed at accept, and a source over its connection cap.
//!
//! The test certificate is made here with rcgen.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use anyhow::{Context, bail, ensure};
use futures_util::{SinkExt, StreamExt};
use hotline::Hotline;
use hotline_sip::{Counters, Transport};
use hotline_sip_tests::{Proto, SippBuilder, free_port, out_dir, start_hotline_with_sip};
use hotline_switch::EndReason;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::process::Command;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

const WAIT: Duration = Duration::from_secs(10);

/// A self-signed certificate for `hotline.test` and 127.0.0.1, written as PEM files.
struct TestCert {
    cert: PathBuf,
    key: PathBuf,
    der: CertificateDer<'static>,
}

fn test_dir(name: &str) -> anyhow::Result<PathBuf> {
    let d = out_dir().join(format!("transports-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d)?;
    Ok(d)
}

fn make_cert(dir: &Path, name: &str) -> anyhow::Result<TestCert> {
    let ck = rcgen::generate_simple_self_signed(vec!["hotline.test".into(), "127.0.0.1".into()])?;
    let cert = dir.join(format!("{name}.crt"));
    let key = dir.join(format!("{name}.key"));
    std::fs::write(&cert, ck.cert.pem())?;
    std::fs::write(&key, ck.signing_key.serialize_pem())?;
    Ok(TestCert {
        cert,
        key,
        der: ck.cert.der().clone(),
    })
}

/// `[sip]` keys for TLS, WS and WSS listeners on ephemeral loopback ports.
fn transport_keys(cert: &TestCert, reload_secs: u64) -> String {
    format!(
        "domains = [\"hotline.test\"]\ntls_listen = [\"127.0.0.1:0\"]\nws_listen = [\"127.0.0.1:0\"]\n\
         wss_listen = [\"127.0.0.1:0\"]\n[sip.tls]\ncert = {:?}\nkey = {:?}\nreload_secs = {reload_secs}\n",
        cert.cert, cert.key
    )
}

fn addr(h: &Hotline, t: Transport) -> anyhow::Result<SocketAddr> {
    h.sip
        .addrs(t)
        .first()
        .copied()
        .with_context(|| format!("no {t:?} listener"))
}

fn count(h: &Hotline, f: impl Fn(&Counters) -> &AtomicU64) -> u64 {
    Counters::get(f(h.sip.counters()))
}

/// Waits (bounded) until a counter reaches `at_least`.
async fn counter_reaches(
    h: &Hotline,
    what: &str,
    f: impl Fn(&Counters) -> &AtomicU64,
    at_least: u64,
) -> anyhow::Result<()> {
    let wait = async {
        while count(h, &f) < at_least {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    };
    if tokio::time::timeout(WAIT, wait).await.is_err() {
        bail!("{what} stayed at {} (< {at_least})", count(h, &f));
    }
    Ok(())
}

fn client_tls(roots: &[&CertificateDer<'static>]) -> anyhow::Result<tokio_rustls::TlsConnector> {
    let mut store = rustls::RootCertStore::empty();
    for r in roots {
        store.add((*r).clone())?;
    }
    let cfg = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(store)
    .with_no_client_auth();
    Ok(tokio_rustls::TlsConnector::from(Arc::new(cfg)))
}

async fn tls_connect(
    to: SocketAddr,
    tls: &tokio_rustls::TlsConnector,
) -> anyhow::Result<tokio_rustls::client::TlsStream<TcpStream>> {
    let tcp = TcpStream::connect(to).await?;
    let name = ServerName::try_from("hotline.test")?;
    Ok(tokio::time::timeout(WAIT, tls.connect(name, tcp)).await??)
}

fn peer_leaf(s: &tokio_rustls::client::TlsStream<TcpStream>) -> Option<CertificateDer<'static>> {
    s.get_ref()
        .1
        .peer_certificates()
        .and_then(|c| c.first())
        .map(|c| c.clone().into_owned())
}

fn options(via: &str, n: u32) -> String {
    format!(
        "OPTIONS sip:hotline.test SIP/2.0\r\nVia: SIP/2.0/{via} client.invalid;branch=z9hG4bK-tr-{via}-{n};rport\r\n\
         From: <sip:probe@hotline.test>;tag=p{n}\r\nTo: <sip:hotline.test>\r\nCall-ID: transports-{via}-{n}\r\n\
         CSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    )
}

/// One SIP message from a byte stream (TCP or TLS), bounded in time.
async fn read_message<S: AsyncRead + Unpin>(s: &mut S) -> anyhow::Result<String> {
    let mut buf = bytes::BytesMut::new();
    let limits = hotline_sip::msg::Limits::default();
    tokio::time::timeout(WAIT, async {
        loop {
            if let Some(m) = hotline_sip::server::frame(&mut buf, &limits)? {
                return Ok(String::from_utf8_lossy(&m).into_owned());
            }
            if s.read_buf(&mut buf).await? == 0 {
                bail!("connection closed");
            }
        }
    })
    .await
    .context("no SIP message in time")?
}

/// Whether the server closed the connection without sending a byte.
async fn closed_without_data<S: AsyncRead + Unpin>(s: &mut S) -> anyhow::Result<bool> {
    let mut b = [0u8; 64];
    match tokio::time::timeout(WAIT, s.read(&mut b)).await {
        Ok(Ok(0)) | Ok(Err(_)) => Ok(true),
        Ok(Ok(_)) => Ok(false),
        Err(_) => bail!("connection neither closed nor answered"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_options_and_certificate_reload_for_new_connections_only() -> anyhow::Result<()> {
    let dir = test_dir("reload")?;
    let first = make_cert(&dir, "hotline")?;
    let h = start_hotline_with_sip(&transport_keys(&first, 1), "").await?;
    let to = addr(&h, Transport::Tls)?;
    let second = make_cert(&dir, "next")?;
    // One connector (session cache) per connection: a resumed session would show the
    // certificate of the session it resumes, not the one served now.
    let tls = || client_tls(&[&first.der, &second.der]);

    let mut old = tls_connect(to, &tls()?).await?;
    ensure!(
        peer_leaf(&old) == Some(first.der.clone()),
        "first certificate served"
    );
    old.write_all(options("TLS", 1).as_bytes()).await?;
    let resp = read_message(&mut old).await?;
    ensure!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
    ensure!(resp.contains("Via: SIP/2.0/TLS client.invalid"), "{resp}");

    // Replace the files the way certbot-like tools do: write aside, rename over.
    let mut reloads = h.sip.tls().context("TLS running")?.reloads();
    for (from, to) in [(&second.key, &first.key), (&second.cert, &first.cert)] {
        let tmp = to.with_extension("tmp");
        std::fs::copy(from, &tmp)?;
        std::fs::rename(&tmp, to)?;
    }
    tokio::time::timeout(WAIT, reloads.changed())
        .await
        .context("certificate not reloaded within 10 s")??;
    ensure!(count(&h, |c| &c.tls_reloads) >= 1);

    let mut new = tls_connect(to, &tls()?).await?;
    ensure!(
        peer_leaf(&new) == Some(second.der.clone()),
        "a new connection gets the new certificate"
    );
    // A sips: Request-URI (RFC 3261 §26) over TLS.
    let sips = options("TLS", 2).replacen("sip:hotline.test", "sips:hotline.test", 1);
    new.write_all(sips.as_bytes()).await?;
    let resp = read_message(&mut new).await?;
    ensure!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
    // The connection made before the reload keeps working.
    old.write_all(options("TLS", 3).as_bytes()).await?;
    let resp = read_message(&mut old).await?;
    ensure!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
    h.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_tls_handshakes_are_counted_and_tls_keeps_serving() -> anyhow::Result<()> {
    let dir = test_dir("badtls")?;
    let cert = make_cert(&dir, "hotline")?;
    let h = start_hotline_with_sip(&transport_keys(&cert, 0), "").await?;
    let to = addr(&h, Transport::Tls)?;

    // Plain SIP to the TLS port: not a ClientHello.
    let mut plain = TcpStream::connect(to).await?;
    plain.write_all(options("TCP", 1).as_bytes()).await?;
    let mut b = vec![0u8; 4096];
    let n = tokio::time::timeout(WAIT, plain.read(&mut b))
        .await
        .context("server neither answered nor closed")?
        .unwrap_or(0);
    ensure!(
        !String::from_utf8_lossy(&b[..n]).contains("SIP/2.0"),
        "plain SIP got a SIP answer on the TLS port"
    );
    counter_reaches(&h, "tls_handshake_failed", |c| &c.tls_handshake_failed, 1).await?;

    // A client that does not trust the certificate aborts the handshake.
    let other = make_cert(&dir, "other")?;
    let distrustful = client_tls(&[&other.der])?;
    ensure!(
        tls_connect(to, &distrustful).await.is_err(),
        "handshake with an untrusted certificate succeeded"
    );
    counter_reaches(&h, "tls_handshake_failed", |c| &c.tls_handshake_failed, 2).await?;

    // Half a ClientHello, then silence: bounded by the handshake timeout, not forever;
    // meanwhile others are served.
    let mut half = TcpStream::connect(to).await?;
    half.write_all(&[0x16, 0x03, 0x01, 0x02, 0x00]).await?;
    let mut good = tls_connect(to, &client_tls(&[&cert.der])?).await?;
    good.write_all(options("TLS", 2).as_bytes()).await?;
    ensure!(
        read_message(&mut good)
            .await?
            .starts_with("SIP/2.0 200 OK\r\n")
    );
    drop(half);
    h.shutdown().await;
    Ok(())
}

/// baresip's configuration: loopback only, G.711, the `aubridge` device echoing what it
/// hears, one account registered over TLS and auto-answering.
fn write_baresip_config(
    dir: &Path,
    sip_port: u16,
    rtp: u16,
    server: SocketAddr,
) -> anyhow::Result<()> {
    std::fs::create_dir_all(dir)?;
    std::fs::write(
        dir.join("config"),
        format!(
            "poll_method epoll\nsip_listen 127.0.0.1:{sip_port}\nsip_trans_def tls\n\
             net_interface 127.0.0.1\n\
             audio_player aubridge,hotline\naudio_source aubridge,hotline\n\
             audio_alert aufile,{}\nrtp_ports {rtp}-{}\n\
             module_path /usr/lib/baresip/modules\n\
             module g711.so\nmodule aufile.so\nmodule aubridge.so\n\
             module_app account.so\nmodule_app menu.so\n",
            dir.join("alert.wav").display(),
            rtp + 9
        ),
    )?;
    std::fs::write(
        dir.join("accounts"),
        format!(
            "<sip:bob@127.0.0.1:{};transport=tls>;auth_pass=bob-pw;answermode=auto;regint=600\n",
            server.port()
        ),
    )?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn baresip_registers_over_tls_and_takes_a_call_on_its_connection() -> anyhow::Result<()> {
    let dir = test_dir("baresip-tls")?;
    let cert = make_cert(&dir, "hotline")?;
    let mut h = start_hotline_with_sip(
        &transport_keys(&cert, 0),
        &(hotline_sip_tests::media(200)
            + "\
         [[numbers]]\nnumber = \"4261\"\nextension = \"bob\"\n"),
    )
    .await?;
    let tls_addr = addr(&h, Transport::Tls)?;
    let mut ended = h
        .switch
        .as_mut()
        .context("switch")?
        .take_ended()
        .context("ended")?;
    write_baresip_config(&dir, free_port(), 46900, tls_addr)?;
    let log_path = dir.join("baresip.log");
    let log = std::fs::File::create(&log_path)?;
    let mut baresip = Command::new("baresip")
        .arg("-s")
        .arg("-f")
        .arg(&dir)
        .stdout(log.try_clone()?)
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .context("spawning baresip (sip-tests/run-tests.sh installs it)")?;
    if let Err(e) = counter_reaches(&h, "registered", |c| &c.registered, 1).await {
        let _ = baresip.kill().await;
        bail!(
            "baresip did not register over TLS: {e} (see {})",
            log_path.display()
        );
    }
    ensure!(count(&h, |c| &c.tls_handshake_failed) == 0);
    hotline_sip_tests::caller_audio()?;
    let call = SippBuilder::new(
        "tls-caller",
        "uac_call_audio_long.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "4261", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice", "-d", "2000",
    ])
    .spawn(Some(Proto::Udp.server_addr(&h)))?
    .expect_success()
    .await;
    let end = tokio::time::timeout(Duration::from_secs(20), ended.recv()).await;
    let _ = baresip.kill().await;
    let trace = std::fs::read_to_string(&log_path).unwrap_or_default();
    call.with_context(|| format!("baresip log: {}", log_path.display()))?;
    let end = end
        .context("call ended in time")?
        .context("switch running")?;
    ensure!(end.reason == EndReason::CallerHangup, "{end:?}");
    ensure!(end.bridged, "{end:?}");
    let media = end.media.context("media")?;
    let b = media.b.context("baresip's leg")?;
    ensure!(b.tx_packets >= 50 && b.rx_packets >= 50, "{media:?}");
    // The INVITE reached baresip over TLS, on the connection it registered on (baresip
    // traces each message as `TLS from -> to` then the message), and nothing was dropped
    // for want of a connection.
    let lines: Vec<&str> = trace.lines().collect();
    let invite = lines
        .iter()
        .position(|l| l.starts_with("INVITE sip:bob"))
        .with_context(|| format!("no INVITE in baresip's trace ({})", log_path.display()))?;
    let hop = lines[..invite]
        .iter()
        .rev()
        .find(|l| !l.trim().is_empty())
        .copied()
        .unwrap_or("");
    ensure!(
        hop.starts_with(&format!("TLS {tls_addr} -> ")),
        "INVITE not from Hotline's TLS listener: {hop:?}"
    );
    ensure!(
        lines[invite + 1].starts_with("Via: SIP/2.0/TLS "),
        "{}",
        lines[invite + 1]
    );
    // Registered with digest auth: challenged first, then 200 over TLS.
    let challenged = trace.find("SIP/2.0 401 Unauthorized");
    let registered = trace.find("{0/TLS/v4} 200 OK");
    ensure!(
        challenged.is_some() && registered.is_some() && challenged < registered,
        "no 401 then 200 over TLS in baresip's trace ({})",
        log_path.display()
    );
    ensure!(
        count(&h, |c| &c.no_flow) == 0,
        "a message found no TLS flow"
    );
    h.shutdown().await;
    Ok(())
}

/// Lines (JSON objects) printed by the node JsSIP agent.
struct NodeAgent {
    child: tokio::process::Child,
    lines: tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStdout>>,
}

impl NodeAgent {
    /// `ca`: a PEM file node should trust (for `wss://`).
    fn spawn(
        ws_url: &str,
        uri: &str,
        password: &str,
        ca: Option<&Path>,
    ) -> anyhow::Result<NodeAgent> {
        let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("node");
        ensure!(
            dir.join("node_modules/jssip").exists(),
            "JsSIP is not installed: run `npm ci` in {} (sip-tests/run-tests.sh does)",
            dir.display()
        );
        let mut cmd = Command::new("node");
        if let Some(ca) = ca {
            cmd.env("NODE_EXTRA_CA_CERTS", ca);
        }
        let mut child = cmd
            .arg("jssip_agent.js")
            .current_dir(&dir)
            .env("WS_URL", ws_url)
            .env("SIP_URI", uri)
            .env("SIP_PASSWORD", password)
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::inherit())
            .kill_on_drop(true)
            .spawn()
            .context("spawning node")?;
        let out = child.stdout.take().context("node stdout")?;
        Ok(NodeAgent {
            child,
            lines: tokio::io::BufReader::new(out).lines(),
        })
    }

    /// The next event the agent reports; fails on its "error" event.
    async fn next(&mut self, want: &str) -> anyhow::Result<serde_json::Value> {
        let line = tokio::time::timeout(Duration::from_secs(20), self.lines.next_line())
            .await
            .with_context(|| format!("JsSIP: no {want:?} within 20 s"))??
            .with_context(|| format!("JsSIP exited before {want:?}"))?;
        let v: serde_json::Value = serde_json::from_str(&line)?;
        ensure!(v["event"] == want, "JsSIP said {line}, expected {want:?}");
        Ok(v)
    }
}

/// JsSIP registers on `url` as carol, is offered a call from a SIPp caller (alice, UDP)
/// to `service` that Hotline sends over the WebSocket flow (proxied to `carol`, or from
/// the B2BUA for a number routed to the extension), rings and rejects it, and
/// unregisters. `scenario` is what the caller expects of that; `from` is in the From
/// JsSIP sees (the caller when proxied, the number from the B2BUA). No INVITE it gets
/// may carry `X-Hotline-Rejoin`, even when the caller forged one.
async fn jssip_takes_a_call(
    h: &Hotline,
    url: &str,
    via: &str,
    ca: Option<&Path>,
    service: &str,
    scenario: &str,
    from: &str,
) -> anyhow::Result<()> {
    let mut agent = NodeAgent::spawn(url, "sip:carol@hotline.test", "carol-pw", ca)?;
    let registered_before = count(h, |c| &c.registered);
    let reg = agent.next("registered").await?;
    ensure!(reg["status"] == 200, "{reg}");
    let contact = reg["contact"].as_str().unwrap_or("");
    ensure!(contact.contains(".invalid"), "JsSIP's contact: {contact}");
    ensure!(count(h, |c| &c.registered) > registered_before);

    SippBuilder::new("ws-caller", scenario, Proto::Udp, free_port())
        .args([
            "-s", service, "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
        ])
        .spawn(Some(Proto::Udp.server_addr(h)))?
        .expect_success()
        .await?;
    let inc = agent.next("incoming").await?;
    ensure!(
        inc["from"].as_str().is_some_and(|f| f.contains(from)),
        "{inc}"
    );
    ensure!(
        inc["rejoin"].is_null(),
        "X-Hotline-Rejoin reached the phone: {inc}"
    );
    let top = inc["via"].as_str().unwrap_or("");
    ensure!(
        top.starts_with(&format!("SIP/2.0/{via} 127.0.0.1:")),
        "Hotline's Via: {top}"
    );
    agent.next("rejected").await?;
    agent.next("unregistered").await?;
    let status = tokio::time::timeout(WAIT, agent.child.wait()).await??;
    ensure!(status.success(), "JsSIP agent exited with {status}");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn jssip_registers_over_ws_and_wss_and_rejects_calls() -> anyhow::Result<()> {
    let dir = test_dir("jssip")?;
    let cert = make_cert(&dir, "hotline")?;
    let mut h = start_hotline_with_sip(
        &transport_keys(&cert, 0),
        &(hotline_sip_tests::media(100)
            + "\
         [[numbers]]\nnumber = \"4262\"\nextension = \"carol\"\n"),
    )
    .await?;
    let mut ended = h
        .switch
        .as_mut()
        .context("switch")?
        .take_ended()
        .context("ended")?;
    let ws = format!("ws://127.0.0.1:{}", addr(&h, Transport::Ws)?.port());
    // The caller forges the desk's auto-answer mark; the proxy strips it.
    let proxied = "uac_call_forged_rejoin.xml";
    jssip_takes_a_call(&h, &ws, "WS", None, "carol", proxied, "alice")
        .await
        .context("proxied over ws://")?;
    // wss: node checks the certificate (trusting the test's) against 127.0.0.1.
    let wss = format!("wss://127.0.0.1:{}", addr(&h, Transport::Wss)?.port());
    jssip_takes_a_call(&h, &wss, "WSS", Some(&cert.cert), "carol", proxied, "alice")
        .await
        .context("proxied over wss://")?;
    // Call control reaches the agent the same way (contact_for + send_request on its
    // Flow): the caller is answered with music, the agent's 486 ends the call.
    hotline_sip_tests::caller_audio()?;
    jssip_takes_a_call(
        &h,
        &ws,
        "WS",
        None,
        "4262",
        "uac_call_hung_up_on.xml",
        "4262",
    )
    .await
    .context("B2BUA over ws://")?;
    let end = tokio::time::timeout(WAIT, ended.recv())
        .await
        .context("call ended in time")?
        .context("switch running")?;
    ensure!(!end.bridged, "{end:?}");
    ensure!(count(&h, |c| &c.no_flow) == 0);
    ensure!(count(&h, |c| &c.tls_handshake_failed) == 0);
    h.shutdown().await;
    Ok(())
}

type Ws<S> = tokio_tungstenite::WebSocketStream<S>;

async fn ws_upgrade<S: AsyncRead + AsyncWrite + Unpin>(
    stream: S,
    url: &str,
    protocol: Option<&str>,
    origin: Option<&str>,
) -> Result<Ws<S>, tokio_tungstenite::tungstenite::Error> {
    let mut req = url.into_client_request()?;
    if let Some(p) = protocol {
        req.headers_mut()
            .insert("sec-websocket-protocol", p.parse().expect("header value"));
    }
    if let Some(o) = origin {
        req.headers_mut()
            .insert("origin", o.parse().expect("header value"));
    }
    let (ws, resp) = tokio_tungstenite::client_async(req, stream).await?;
    assert_eq!(
        resp.headers()
            .get("sec-websocket-protocol")
            .and_then(|v| v.to_str().ok()),
        Some("sip"),
        "the server confirms the sip subprotocol"
    );
    Ok(ws)
}

/// The next SIP message (text frame) on a WebSocket, bounded.
async fn ws_recv<S: AsyncRead + AsyncWrite + Unpin>(ws: &mut Ws<S>) -> anyhow::Result<String> {
    loop {
        match tokio::time::timeout(WAIT, ws.next()).await {
            Err(_) => bail!("no frame in time"),
            Ok(None) => bail!("WebSocket closed"),
            Ok(Some(m)) => match m? {
                Message::Text(t) => return Ok(t.to_string()),
                Message::Binary(b) => return Ok(String::from_utf8_lossy(&b).into_owned()),
                _ => continue,
            },
        }
    }
}

fn http_status(e: &tokio_tungstenite::tungstenite::Error) -> Option<u16> {
    match e {
        tokio_tungstenite::tungstenite::Error::Http(r) => Some(r.status().as_u16()),
        _ => None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_bad_input_is_refused_and_the_server_keeps_serving() -> anyhow::Result<()> {
    let dir = test_dir("wsbad")?;
    let cert = make_cert(&dir, "hotline")?;
    let h = start_hotline_with_sip(&transport_keys(&cert, 0), "").await?;
    let ws_addr = addr(&h, Transport::Ws)?;
    let url = format!("ws://127.0.0.1:{}/", ws_addr.port());

    // No subprotocol: refused with 400, counted.
    let e = ws_upgrade(TcpStream::connect(ws_addr).await?, &url, None, None)
        .await
        .err()
        .context("upgrade without the sip subprotocol accepted")?;
    ensure!(http_status(&e) == Some(400), "{e}");
    let e = ws_upgrade(TcpStream::connect(ws_addr).await?, &url, Some("chat"), None)
        .await
        .err()
        .context("upgrade with another subprotocol accepted")?;
    ensure!(http_status(&e) == Some(400), "{e}");
    counter_reaches(&h, "ws_handshake_failed", |c| &c.ws_handshake_failed, 2).await?;

    let mut ws = ws_upgrade(TcpStream::connect(ws_addr).await?, &url, Some("sip"), None).await?;
    // Garbage that is not SIP at all: nothing to answer, dropped.
    ws.send(Message::text("hello, is this SIP?")).await?;
    // A SIP request with a broken header: 400 on the same connection.
    ws.send(Message::text(
        "OPTIONS sip:hotline.test SIP/2.0\r\nVia: SIP/2.0/WS client.invalid;branch=z9hG4bK-bad\r\n\
         From: <sip:probe@hotline.test>;tag=b\r\nTo: <sip:hotline.test>\r\nCall-ID: bad\r\n\
         CSeq: 1 OPTIONS\r\nthis line is no header\r\nContent-Length: 0\r\n\r\n",
    ))
    .await?;
    ws.send(Message::binary(vec![0u8, 159, 146, 150, 255]))
        .await?;
    let resp = ws_recv(&mut ws).await?;
    ensure!(resp.starts_with("SIP/2.0 400 "), "{resp}");
    ensure!(resp.contains("Call-ID: bad"), "{resp}");
    // And a good request after all that is answered.
    ws.send(Message::text(options("WS", 2))).await?;
    let resp = ws_recv(&mut ws).await?;
    ensure!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
    ensure!(resp.contains("Via: SIP/2.0/WS client.invalid"), "{resp}");
    ensure!(count(&h, |c| &c.malformed) >= 2);

    // A frame larger than a SIP message may be: closed with 1009, counted.
    let big = format!("{}{}", options("WS", 3), "x".repeat(70_000));
    ws.send(Message::text(big)).await?;
    let closed = tokio::time::timeout(WAIT, async {
        while let Some(m) = ws.next().await {
            match m {
                Ok(Message::Close(f)) => return f.map(|f| f.code),
                Ok(_) => continue,
                Err(_) => return None,
            }
        }
        None
    })
    .await
    .context("oversize frame: connection not closed")?;
    ensure!(closed == Some(CloseCode::Size), "close code {closed:?}");
    counter_reaches(&h, "ws_oversize", |c| &c.ws_oversize, 1).await?;

    // WSS: the same over TLS, on its own listener.
    let wss_addr = addr(&h, Transport::Wss)?;
    let tls = client_tls(&[&cert.der])?;
    let stream = tls_connect(wss_addr, &tls).await?;
    let mut wss = ws_upgrade(
        stream,
        &format!("wss://hotline.test:{}/", wss_addr.port()),
        Some("sip"),
        None,
    )
    .await?;
    wss.send(Message::text(options("WSS", 4))).await?;
    let resp = ws_recv(&mut wss).await?;
    ensure!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
    ensure!(resp.contains("Via: SIP/2.0/WSS client.invalid"), "{resp}");
    h.shutdown().await;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn websocket_origin_allow_list() -> anyhow::Result<()> {
    let h = start_hotline_with_sip(
        "domains = [\"hotline.test\"]\nws_listen = [\"127.0.0.1:0\"]\n[sip.ws]\norigins = [\"https://desk.example\"]\n",
        "",
    )
    .await?;
    let ws_addr = addr(&h, Transport::Ws)?;
    let url = format!("ws://127.0.0.1:{}/", ws_addr.port());
    for origin in [Some("https://evil.example"), None] {
        let e = ws_upgrade(
            TcpStream::connect(ws_addr).await?,
            &url,
            Some("sip"),
            origin,
        )
        .await
        .err()
        .with_context(|| format!("Origin {origin:?} accepted"))?;
        ensure!(http_status(&e) == Some(403), "{origin:?}: {e}");
    }
    let mut ws = ws_upgrade(
        TcpStream::connect(ws_addr).await?,
        &url,
        Some("sip"),
        Some("https://desk.example"),
    )
    .await?;
    ws.send(Message::text(options("WS", 1))).await?;
    ensure!(ws_recv(&mut ws).await?.starts_with("SIP/2.0 200 OK\r\n"));
    h.shutdown().await;
    Ok(())
}

async fn connect_from(ip: &str, to: SocketAddr) -> anyhow::Result<TcpStream> {
    let s = TcpSocket::new_v4()?;
    s.bind(SocketAddr::new(ip.parse()?, 0))?;
    Ok(s.connect(to).await?)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blocked_source_and_sources_over_their_cap_are_closed_at_accept() -> anyhow::Result<()> {
    let h = start_hotline_with_sip(
        "domains = [\"hotline.test\"]\nmax_connections_per_source = 2\n[sip.guard]\nrate = 5\nburst = 10\nblock_secs = 60\n",
        "",
    )
    .await?;
    let udp = Proto::Udp.server_addr(&h);
    let tcp = Proto::Tcp.server_addr(&h);

    // A connection 127.0.0.7 opened before it misbehaves.
    let mut earlier = connect_from("127.0.0.7", tcp).await?;
    earlier.write_all(options("TCP", 99).as_bytes()).await?;
    ensure!(
        read_message(&mut earlier)
            .await?
            .starts_with("SIP/2.0 200 OK\r\n")
    );
    // 127.0.0.7 floods OPTIONS over UDP until the guard blocks it.
    let flooder = tokio::net::UdpSocket::bind("127.0.0.7:0").await?;
    let before_flood = count(&h, |c| &c.received);
    for n in 0..40 {
        flooder.send_to(options("UDP", n).as_bytes(), udp).await?;
    }
    counter_reaches(&h, "flood_blocked", |c| &c.flood_blocked, 1).await?;
    // Every flood datagram read (most are dropped by the guard), so none is still on its
    // way into `received` when the refused connection is checked below.
    counter_reaches(&h, "received", |c| &c.received, before_flood + 40).await?;
    // The block closes the connection it already had.
    ensure!(
        closed_without_data(&mut earlier).await?,
        "the blocked source's open connection got data"
    );
    // Its TCP connection is closed at accept: no answer to what it sends.
    let refused = count(&h, |c| &c.refused_at_accept);
    let received = count(&h, |c| &c.received);
    let mut s = connect_from("127.0.0.7", tcp).await?;
    let _ = s.write_all(options("TCP", 100).as_bytes()).await;
    ensure!(
        closed_without_data(&mut s).await?,
        "the blocked source got an answer"
    );
    ensure!(count(&h, |c| &c.refused_at_accept) == refused + 1);
    ensure!(
        count(&h, |c| &c.received) == received,
        "bytes of a refused connection reached the core"
    );

    // 127.0.0.8 may hold two connections; the third is closed at accept.
    let mut held = Vec::new();
    for n in 0..2 {
        let mut s = connect_from("127.0.0.8", tcp).await?;
        s.write_all(options("TCP", 200 + n).as_bytes()).await?;
        let resp = read_message(&mut s).await?;
        ensure!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
        held.push(s);
    }
    let mut third = connect_from("127.0.0.8", tcp).await?;
    ensure!(
        closed_without_data(&mut third).await?,
        "third connection stayed open"
    );
    ensure!(count(&h, |c| &c.refused_at_accept) == refused + 2);
    // Closing one frees its slot once the server has seen the close.
    drop(held.pop());
    let freed = tokio::time::timeout(WAIT, async {
        loop {
            let mut s = connect_from("127.0.0.8", tcp).await?;
            s.write_all(options("TCP", 300).as_bytes()).await?;
            if let Ok(r) = read_message(&mut s).await {
                return anyhow::Ok(r);
            }
        }
    })
    .await
    .context("slot not freed")??;
    ensure!(freed.starts_with("SIP/2.0 200 OK\r\n"), "{freed}");
    // A trusted source is not capped.
    let mut trusted = Vec::new();
    for n in 0..3 {
        let mut s = connect_from(hotline_sip_tests::TRUSTED_IP, tcp).await?;
        s.write_all(options("TCP", 400 + n).as_bytes()).await?;
        ensure!(
            read_message(&mut s)
                .await?
                .starts_with("SIP/2.0 200 OK\r\n")
        );
        trusted.push(s);
    }
    h.shutdown().await;
    Ok(())
}

/// TLS and WebSocket listeners on the IPv6 loopback. A host without `::1` fails this test
/// rather than skipping it silently.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_and_websocket_over_ipv6_loopback() -> anyhow::Result<()> {
    let dir = test_dir("ipv6")?;
    let cert = make_cert(&dir, "hotline")?;
    let h = start_hotline_with_sip(
        &format!(
            "domains = [\"hotline.test\"]\ntls_listen = [\"[::1]:0\"]\nws_listen = [\"[::1]:0\"]\n\
             [sip.tls]\ncert = {:?}\nkey = {:?}\n",
            cert.cert, cert.key
        ),
        "",
    )
    .await?;
    let tls_addr = addr(&h, Transport::Tls)?;
    ensure!(tls_addr.is_ipv6(), "{tls_addr}");
    let mut s = tls_connect(tls_addr, &client_tls(&[&cert.der])?)
        .await
        .context("this test needs an IPv6 loopback ([::1])")?;
    s.write_all(options("TLS", 1).as_bytes()).await?;
    let resp = read_message(&mut s).await?;
    ensure!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
    ensure!(
        resp.contains("received=::1") || resp.contains("received=[::1]"),
        "{resp}"
    );

    let ws_addr = addr(&h, Transport::Ws)?;
    let url = format!("ws://[::1]:{}/", ws_addr.port());
    let mut ws = ws_upgrade(TcpStream::connect(ws_addr).await?, &url, Some("sip"), None).await?;
    ws.send(Message::text(options("WS", 2))).await?;
    let resp = ws_recv(&mut ws).await?;
    ensure!(resp.starts_with("SIP/2.0 200 OK\r\n"), "{resp}");
    h.shutdown().await;
    Ok(())
}

/// A response to `req` (a SIP request's text) as a peer would send it.
fn respond(req: &str, code: u16, reason: &str) -> String {
    let mut out = format!("SIP/2.0 {code} {reason}\r\n");
    for line in req.split("\r\n") {
        let name = line.split(':').next().unwrap_or("").to_ascii_lowercase();
        match name.as_str() {
            "via" | "from" | "call-id" | "cseq" => out.push_str(&format!("{line}\r\n")),
            "to" => out.push_str(&format!("{line};tag=trunk\r\n")),
            _ => {}
        }
    }
    out.push_str("Content-Length: 0\r\n\r\n");
    out
}

/// A trunk on `static_route = "sip:IP:PORT;transport=tls"`: Hotline dials it, checking
/// its certificate against `[sip.tls] ca`, and the call's signalling goes over that TLS
/// connection (the trunk here is a rustls server in the test answering 180 and 486).
/// Under roots that did not sign the trunk's certificate, Hotline aborts the handshake.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_trunk_is_dialled_with_the_configured_roots() -> anyhow::Result<()> {
    for trusted in [true, false] {
        tls_trunk_call(trusted)
            .await
            .with_context(|| format!("trunk certificate trusted: {trusted}"))?;
    }
    Ok(())
}

async fn tls_trunk_call(trusted: bool) -> anyhow::Result<()> {
    let dir = test_dir("trunk")?;
    let ours = make_cert(&dir, "hotline")?;
    let theirs = make_cert(&dir, "trunk")?;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let trunk_addr = listener.local_addr()?;
    let acceptor = hotline_sip::tls::TlsServer::new(hotline_sip::tls::TlsConfig {
        cert: theirs.cert.clone(),
        key: theirs.key.clone(),
        reload_every: Duration::ZERO,
    })?
    .acceptor()
    .clone();
    let trunk = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await?;
        let mut s = match acceptor.accept(tcp).await {
            Ok(s) => s,
            Err(e) if !trusted => return anyhow::Ok(e.to_string()),
            Err(e) => return Err(e.into()),
        };
        ensure!(trusted, "handshake succeeded under the wrong roots");
        let invite = read_message(&mut s).await?;
        ensure!(invite.starts_with("INVITE sip:5551234@"), "{invite}");
        let via = invite.lines().find(|l| l.starts_with("Via:")).unwrap_or("");
        ensure!(via.starts_with("Via: SIP/2.0/TLS 127.0.0.1:"), "{via}");
        s.write_all(respond(&invite, 180, "Ringing").as_bytes())
            .await?;
        s.write_all(respond(&invite, 486, "Busy Here").as_bytes())
            .await?;
        let ack = read_message(&mut s).await?;
        ensure!(ack.starts_with("ACK sip:5551234@"), "{ack}");
        anyhow::Ok(String::new())
    });
    let roots = if trusted { &theirs.cert } else { &ours.cert };
    let h = start_hotline_with_sip(
        &format!(
            "domains = [\"hotline.test\"]\ntls_listen = [\"127.0.0.1:0\"]\n\
             static_route = \"sip:{trunk_addr};transport=tls\"\n\
             [sip.tls]\ncert = {:?}\nkey = {:?}\nca = {roots:?}\n",
            ours.cert, ours.key
        ),
        "",
    )
    .await?;
    let caller = SippBuilder::new(
        "trunk-caller",
        "uac_call_rejected.xml",
        Proto::Udp,
        free_port(),
    )
    .args([
        "-s", "5551234", "-au", "alice", "-ap", "alice-pw", "-key", "caller", "alice",
    ])
    .spawn(Some(Proto::Udp.server_addr(&h)))?;
    let refused = tokio::time::timeout(WAIT, trunk)
        .await
        .context("trunk did not finish")???;
    if trusted {
        caller.expect_success().await?;
    } else {
        // The caller's INVITE times out (408) in SIPp; it is killed when dropped.
        // Hotline (the client) aborts with an alert: the signature does not verify.
        ensure!(refused.contains("fatal alert"), "trunk saw: {refused}");
        drop(caller);
    }
    h.shutdown().await;
    Ok(())
}
