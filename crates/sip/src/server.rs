//! The tokio layer: UDP, TCP, TLS and WebSocket (WS/WSS) transports around the sans-IO
//! [`Core`].
//!
//! One task owns the core and the UDP sockets and polls them directly (no task or channel
//! hop per datagram); each stream connection has a small task that frames messages (by
//! Content-Length for TCP and TLS, one per frame for WebSocket) and hands them to the core
//! task through a bounded channel.
//!
//! Stream connections are admitted by the core task before a byte is read: a source the
//! guard has blocked, or one holding [`ServerConfig::max_per_source`] connections already,
//! is closed at accept (no TLS handshake, no parsing).

use std::collections::HashMap;
use std::future::poll_fn;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream, UdpSocket};
use tokio::sync::{broadcast, mpsc, oneshot};
use tokio::task::JoinHandle;

use crate::Error;
use crate::app::{AppEvent, AppResponse, ClientTxId, ServerTxId};
use crate::flow::{Flow, Transmit, Transport};
use crate::msg::{self, Limits, Request};
use crate::proxy::{Core, CoreConfig, Counters, Target};
use crate::registrar::BindingEvent;
use crate::tls::{TlsConfig, TlsServer};
use crate::ws::{self, WsConfig};

/// Listen addresses and the core's configuration.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub udp: Vec<SocketAddr>,
    pub tcp: Vec<SocketAddr>,
    /// SIP over TLS listeners (usually port 5061); need [`ServerConfig::tls_config`].
    pub tls: Vec<SocketAddr>,
    /// SIP over plain WebSocket listeners (RFC 7118).
    pub ws: Vec<SocketAddr>,
    /// SIP over secure WebSocket listeners; need [`ServerConfig::tls_config`].
    pub wss: Vec<SocketAddr>,
    /// Certificate and key for the TLS and WSS listeners.
    pub tls_config: Option<TlsConfig>,
    /// WebSocket upgrade checks (Origin allow-list).
    pub ws_config: WsConfig,
    /// PEM roots for TLS peers Hotline dials (a `;transport=tls` trunk). Without them
    /// TLS messages go only over connections peers opened.
    pub tls_dial_roots: Option<std::path::PathBuf>,
    pub core: CoreConfig,
    /// Per-connection outbound queue; a peer that does not read is dropped when it fills.
    pub tcp_queue: usize,
    /// Inbound stream connections (all stream transports together) beyond this are
    /// closed at once.
    pub max_connections: usize,
    /// Inbound stream connections one source IP may hold at once; trusted networks are
    /// exempt. Agents behind one office NAT share an address: size it for them.
    pub max_per_source: usize,
    /// Bound on a TLS or WebSocket handshake; slower peers are closed and counted.
    pub handshake_timeout: Duration,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            udp: vec![],
            tcp: vec![],
            tls: vec![],
            ws: vec![],
            wss: vec![],
            tls_config: None,
            ws_config: WsConfig::default(),
            tls_dial_roots: None,
            core: CoreConfig::default(),
            tcp_queue: 1024,
            max_connections: 10_000,
            max_per_source: 200,
            handshake_timeout: Duration::from_secs(10),
        }
    }
}

/// A running server. Dropping it does not stop it; call [`Server::shutdown`].
pub struct Server {
    addrs: Vec<(Transport, SocketAddr)>,
    udp_addrs: Vec<SocketAddr>,
    tcp_addrs: Vec<SocketAddr>,
    tls: Option<TlsServer>,
    counters: Arc<Counters>,
    stop: Option<oneshot::Sender<()>>,
    task: JoinHandle<()>,
    accept_tasks: Vec<JoinHandle<()>>,
}

enum Inbound {
    /// A stream connection was accepted: may it stay (guard, per-source cap)?
    Admit {
        ip: std::net::IpAddr,
        reply: oneshot::Sender<bool>,
    },
    /// A connection is ready for traffic (after its TLS / WebSocket handshake).
    Opened {
        remote: SocketAddr,
        tx: mpsc::Sender<Bytes>,
    },
    Frame {
        flow: Flow,
        data: Bytes,
    },
    /// A connection ended; `admitted` ones (inbound) release their per-source slot.
    Closed {
        remote: SocketAddr,
        admitted: bool,
    },
}

fn io_err(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

fn bind_udp(addr: SocketAddr) -> Result<UdpSocket, Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = || io_err(format!("udp {addr}"));
    let s =
        Socket::new(Domain::for_address(addr), Type::DGRAM, Some(Protocol::UDP)).map_err(err())?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(err())?;
    }
    // Large buffers absorb bursts (SIPp at thousands of messages per second).
    let _ = s.set_recv_buffer_size(4 << 20);
    let _ = s.set_send_buffer_size(4 << 20);
    s.set_nonblocking(true).map_err(err())?;
    s.bind(&addr.into()).map_err(err())?;
    UdpSocket::from_std(s.into()).map_err(err())
}

fn bind_tcp(addr: SocketAddr) -> Result<TcpListener, Error> {
    use socket2::{Domain, Protocol, Socket, Type};
    let err = || io_err(format!("tcp {addr}"));
    let s =
        Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP)).map_err(err())?;
    if addr.is_ipv6() {
        s.set_only_v6(true).map_err(err())?;
    }
    s.set_reuse_address(true).map_err(err())?;
    s.set_nonblocking(true).map_err(err())?;
    s.bind(&addr.into()).map_err(err())?;
    s.listen(1024).map_err(err())?;
    TcpListener::from_std(s.into()).map_err(err())
}

/// Commands from the application to the core task.
enum AppCommand {
    Respond(ServerTxId, Box<AppResponse>),
    SendRequest(Box<Request>, Flow, oneshot::Sender<ClientTxId>),
    SendStateless(Box<Request>, Flow),
    Cancel(ClientTxId),
    Forget(String),
    Contact(String, oneshot::Sender<Option<(String, Flow)>>),
    Contacts(String, oneshot::Sender<Vec<(String, Flow)>>),
    FlowFor(Target, oneshot::Sender<Option<Flow>>),
    Dialogs(oneshot::Sender<usize>),
    SetNumbers(std::collections::HashSet<String>, oneshot::Sender<()>),
    Draining(bool, oneshot::Sender<()>),
}

/// The application's side of the core (see [`crate::app`]): commands in; events come out
/// of the receiver returned by [`Server::start_with_app`]. Cheap to clone.
#[derive(Debug, Clone)]
pub struct AppHandle {
    cmd: mpsc::Sender<AppCommand>,
    bindings: broadcast::Sender<BindingEvent>,
}

/// Binding events a slow subscriber may fall behind by before it sees `Lagged` (and
/// should look the registrar up again).
const BINDING_EVENTS: usize = 256;

impl std::fmt::Debug for AppCommand {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("AppCommand")
    }
}

fn core_gone() -> Error {
    Error::Io {
        what: "SIP core task".into(),
        source: std::io::Error::new(std::io::ErrorKind::BrokenPipe, "stopped"),
    }
}

impl AppHandle {
    async fn send(&self, c: AppCommand) -> Result<(), Error> {
        self.cmd.send(c).await.map_err(|_| core_gone())
    }

    async fn ask<T>(&self, c: AppCommand, rx: oneshot::Receiver<T>) -> Result<T, Error> {
        self.send(c).await?;
        rx.await.map_err(|_| core_gone())
    }

    /// Answers server transaction `tx` (a transaction already answered is ignored).
    pub async fn respond(&self, tx: ServerTxId, resp: AppResponse) -> Result<(), Error> {
        self.send(AppCommand::Respond(tx, Box::new(resp))).await
    }

    /// Sends `req` as a UAC on `dest`; see [`Core::send_request`].
    pub async fn send_request(&self, req: Request, dest: Flow) -> Result<ClientTxId, Error> {
        let (tx, rx) = oneshot::channel();
        self.ask(AppCommand::SendRequest(Box::new(req), dest, tx), rx)
            .await
    }

    /// Sends `req` without a transaction (ACK of a 2xx).
    pub async fn send_stateless(&self, req: Request, dest: Flow) -> Result<(), Error> {
        self.send(AppCommand::SendStateless(Box::new(req), dest))
            .await
    }

    /// CANCELs an INVITE sent with [`AppHandle::send_request`].
    pub async fn cancel(&self, tx: ClientTxId) -> Result<(), Error> {
        self.send(AppCommand::Cancel(tx)).await
    }

    /// The application is done with the dialog `call_id`.
    pub async fn forget_dialog(&self, call_id: &str) -> Result<(), Error> {
        self.send(AppCommand::Forget(call_id.to_string())).await
    }

    /// Every binding that appears or goes from now on (registrations, unregistrations,
    /// expiries, closed connections), so a call can await its agent's phone.
    pub fn bindings(&self) -> broadcast::Receiver<BindingEvent> {
        self.bindings.subscribe()
    }

    /// The registered contact of `aor` and the flow to reach it (location service).
    pub async fn contact_for(&self, aor: &str) -> Result<Option<(String, Flow)>, Error> {
        let (tx, rx) = oneshot::channel();
        self.ask(AppCommand::Contact(aor.to_string(), tx), rx).await
    }

    /// Every registered contact of `aor` (highest q first) with its flow: a user may
    /// have a desk phone and a browser phone at once.
    pub async fn contacts_for(&self, aor: &str) -> Result<Vec<(String, Flow)>, Error> {
        let (tx, rx) = oneshot::channel();
        self.ask(AppCommand::Contacts(aor.to_string(), tx), rx)
            .await
    }

    /// A flow from one of our addresses to `target`.
    pub async fn flow_for(&self, target: Target) -> Result<Option<Flow>, Error> {
        let (tx, rx) = oneshot::channel();
        self.ask(AppCommand::FlowFor(target, tx), rx).await
    }

    /// Replaces the dialled numbers handed to the application (a live routing edit);
    /// returns once the core uses the new set.
    pub async fn set_numbers(
        &self,
        numbers: std::collections::HashSet<String>,
    ) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.ask(AppCommand::SetNumbers(numbers, tx), rx).await
    }

    /// Draining: every new INVITE (phone-to-phone too) is handed to the application,
    /// which refuses it; returns once the core does so.
    pub async fn set_draining(&self, on: bool) -> Result<(), Error> {
        let (tx, rx) = oneshot::channel();
        self.ask(AppCommand::Draining(on, tx), rx).await
    }

    /// Dialogs the application still owns (0 once every call is forgotten).
    pub async fn dialogs(&self) -> Result<usize, Error> {
        let (tx, rx) = oneshot::channel();
        self.ask(AppCommand::Dialogs(tx), rx).await
    }
}

impl Server {
    /// Binds every listen address and starts serving. Port 0 binds an ephemeral port;
    /// see [`Server::udp_addrs`] / [`Server::tcp_addrs`] for what was bound.
    pub async fn start(cfg: ServerConfig) -> Result<Server, Error> {
        Self::start_inner(cfg, None, broadcast::channel(1).0).await
    }

    /// Like [`Server::start`], with an application owning the calls to
    /// `cfg.core.numbers`: its events arrive on the returned receiver (bounded by
    /// `capacity`; when it is full new requests are refused with 503).
    pub async fn start_with_app(
        cfg: ServerConfig,
        capacity: usize,
    ) -> Result<(Server, AppHandle, mpsc::Receiver<AppEvent>), Error> {
        let (ev_tx, ev_rx) = mpsc::channel(capacity.max(1));
        let (cmd_tx, cmd_rx) = mpsc::channel(capacity.max(1));
        let (bindings, _) = broadcast::channel(BINDING_EVENTS);
        let server = Self::start_inner(cfg, Some((ev_tx, cmd_rx)), bindings.clone()).await?;
        let app = AppHandle {
            cmd: cmd_tx,
            bindings,
        };
        Ok((server, app, ev_rx))
    }

    async fn start_inner(
        cfg: ServerConfig,
        app: Option<(mpsc::Sender<AppEvent>, mpsc::Receiver<AppCommand>)>,
        bindings: broadcast::Sender<BindingEvent>,
    ) -> Result<Server, Error> {
        let mut udp = Vec::new();
        let mut udp_addrs = Vec::new();
        for a in &cfg.udp {
            let s = bind_udp(*a)?;
            udp_addrs.push(s.local_addr().map_err(io_err("udp local_addr"))?);
            udp.push(s);
        }
        let secure = !cfg.tls.is_empty() || !cfg.wss.is_empty();
        let tls = match (&cfg.tls_config, secure) {
            (Some(t), true) => Some(TlsServer::new(t.clone())?),
            (None, true) => {
                return Err(Error::Config(
                    "TLS and WSS listeners need a certificate and key".into(),
                ));
            }
            (_, false) => None,
        };
        let dialer = match &cfg.tls_dial_roots {
            Some(ca) => Some(crate::tls::client_connector(ca)?),
            None => None,
        };
        let mut listeners = Vec::new();
        let mut addrs: Vec<(Transport, SocketAddr)> =
            udp_addrs.iter().map(|a| (Transport::Udp, *a)).collect();
        for (transport, list) in [
            (Transport::Tcp, &cfg.tcp),
            (Transport::Tls, &cfg.tls),
            (Transport::Ws, &cfg.ws),
            (Transport::Wss, &cfg.wss),
        ] {
            for a in list {
                let l = bind_tcp(*a)?;
                let bound = l.local_addr().map_err(io_err("tcp local_addr"))?;
                addrs.push((transport, bound));
                listeners.push((transport, l));
            }
        }
        let tcp_addrs = addrs_of(&addrs, Transport::Tcp);
        let limits = cfg.core.limits;
        let mut core = Core::new(cfg.core.clone(), addrs.clone(), Instant::now());
        core.set_gateway_browsers(app.is_some());
        let counters = core.counters();
        let (in_tx, in_rx) = mpsc::channel::<Inbound>(4096);
        let queue = cfg.tcp_queue.max(1);
        let shared = Arc::new(Accepting {
            inbound: in_tx.clone(),
            limits,
            queue,
            open: Arc::new(std::sync::atomic::AtomicUsize::new(0)),
            max: cfg.max_connections,
            tls: tls.clone(),
            ws: cfg.ws_config.clone(),
            counters: counters.clone(),
            handshake_timeout: cfg.handshake_timeout,
        });
        let mut accept_tasks: Vec<JoinHandle<()>> = listeners
            .into_iter()
            .map(|(t, l)| tokio::spawn(accept_loop(l, t, shared.clone())))
            .collect();
        if let Some(t) = &tls {
            accept_tasks.push(tokio::spawn(t.clone().watch_files(counters.clone())));
        }
        let (stop_tx, stop_rx) = oneshot::channel();
        let task = tokio::spawn(
            CoreTask {
                core,
                udp,
                udp_addrs: udp_addrs.clone(),
                inbound: in_rx,
                inbound_tx: in_tx,
                conns: HashMap::new(),
                per_source: HashMap::new(),
                max_per_source: cfg.max_per_source,
                dialer,
                counters: counters.clone(),
                limits,
                queue,
                app,
                bindings,
            }
            .run(stop_rx),
        );
        tracing::info!(?addrs, "SIP server listening");
        Ok(Server {
            addrs,
            udp_addrs,
            tcp_addrs,
            tls,
            counters,
            stop: Some(stop_tx),
            task,
            accept_tasks,
        })
    }

    pub fn udp_addrs(&self) -> &[SocketAddr] {
        &self.udp_addrs
    }

    pub fn tcp_addrs(&self) -> &[SocketAddr] {
        &self.tcp_addrs
    }

    /// Bound listen addresses of one transport.
    pub fn addrs(&self, transport: Transport) -> Vec<SocketAddr> {
        addrs_of(&self.addrs, transport)
    }

    /// The TLS side (certificate reloads), when TLS or WSS listeners run.
    pub fn tls(&self) -> Option<&TlsServer> {
        self.tls.as_ref()
    }

    pub fn counters(&self) -> &Counters {
        &self.counters
    }

    /// The counters, shared: a metrics exporter reads them at scrape time.
    pub fn shared_counters(&self) -> Arc<Counters> {
        self.counters.clone()
    }

    /// Stops accepting and processing, and waits for the core task to end.
    pub async fn shutdown(mut self) {
        for t in &self.accept_tasks {
            t.abort();
        }
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
        let _ = (&mut self.task).await;
        tracing::info!("SIP server stopped");
    }
}

fn addrs_of(addrs: &[(Transport, SocketAddr)], transport: Transport) -> Vec<SocketAddr> {
    addrs
        .iter()
        .filter(|(t, _)| *t == transport)
        .map(|(_, a)| *a)
        .collect()
}

/// What every accept loop shares.
struct Accepting {
    inbound: mpsc::Sender<Inbound>,
    limits: Limits,
    queue: usize,
    open: Arc<std::sync::atomic::AtomicUsize>,
    max: usize,
    tls: Option<TlsServer>,
    ws: WsConfig,
    counters: Arc<Counters>,
    handshake_timeout: Duration,
}

async fn accept_loop(l: TcpListener, transport: Transport, a: Arc<Accepting>) {
    use std::sync::atomic::Ordering;
    loop {
        match l.accept().await {
            Ok((stream, remote)) => {
                if a.open.load(Ordering::Relaxed) >= a.max {
                    tracing::warn!(%remote, "too many stream connections; closing");
                    Counters::inc(&a.counters.refused_at_accept);
                    drop(stream);
                    continue;
                }
                // The core task owns the guard: ask it before reading anything.
                let (reply, admitted) = oneshot::channel();
                let ask = Inbound::Admit {
                    ip: remote.ip(),
                    reply,
                };
                if a.inbound.send(ask).await.is_err() {
                    return;
                }
                if !admitted.await.unwrap_or(false) {
                    drop(stream); // counted by the core task
                    continue;
                }
                let Ok(local) = stream.local_addr() else {
                    let _ = a
                        .inbound
                        .send(Inbound::Closed {
                            remote,
                            admitted: true,
                        })
                        .await;
                    continue;
                };
                let _ = stream.set_nodelay(true);
                a.open.fetch_add(1, Ordering::Relaxed);
                let flow = Flow {
                    transport,
                    local,
                    remote,
                };
                let a = a.clone();
                tokio::spawn(async move {
                    serve(stream, flow, &a).await;
                    a.open.fetch_sub(1, Ordering::Relaxed);
                    let _ = a
                        .inbound
                        .send(Inbound::Closed {
                            remote,
                            admitted: true,
                        })
                        .await;
                });
            }
            Err(e) => {
                tracing::warn!(error = %e, "accept failed");
                tokio::task::yield_now().await;
            }
        }
    }
}

/// Registers an open connection with the core task; `None` when the core is gone.
async fn opened(a: &Accepting, remote: SocketAddr) -> Option<mpsc::Receiver<Bytes>> {
    let (tx, rx) = mpsc::channel(a.queue);
    a.inbound.send(Inbound::Opened { remote, tx }).await.ok()?;
    Some(rx)
}

/// One accepted connection: its handshakes (bounded in time, failures counted), then its
/// traffic until either side closes.
async fn serve(stream: TcpStream, flow: Flow, a: &Accepting) {
    let remote = flow.remote;
    let timeout = a.handshake_timeout;
    let tls_accept = |stream: TcpStream| async move {
        let acceptor = a.tls.as_ref()?.acceptor().clone();
        match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
            Ok(Ok(s)) => Some(s),
            Ok(Err(e)) => {
                Counters::inc(&a.counters.tls_handshake_failed);
                tracing::debug!(%remote, error = %e, "TLS handshake failed");
                None
            }
            Err(_) => {
                Counters::inc(&a.counters.tls_handshake_failed);
                tracing::debug!(%remote, "TLS handshake timed out");
                None
            }
        }
    };
    match flow.transport {
        Transport::Tcp => {
            if let Some(rx) = opened(a, remote).await {
                run_conn(stream, flow, &a.inbound, rx, a.limits).await;
            }
        }
        Transport::Tls => {
            if let Some(s) = tls_accept(stream).await
                && let Some(rx) = opened(a, remote).await
            {
                run_conn(s, flow, &a.inbound, rx, a.limits).await;
            }
        }
        Transport::Ws => serve_ws(stream, flow, a).await,
        Transport::Wss => {
            if let Some(s) = tls_accept(stream).await {
                serve_ws(s, flow, a).await;
            }
        }
        Transport::Udp => {}
    }
}

// The upgrade callback's result type is tungstenite's.
#[allow(clippy::result_large_err)]
async fn serve_ws<S: AsyncRead + AsyncWrite + Unpin>(stream: S, flow: Flow, a: &Accepting) {
    let check = |req: &ws::Request, resp: ws::Response| ws::check_upgrade(&a.ws, req, resp);
    let upgrade = tokio_tungstenite::accept_hdr_async_with_config(
        stream,
        check,
        Some(ws::ws_config(&a.limits)),
    );
    let ws = match tokio::time::timeout(a.handshake_timeout, upgrade).await {
        Ok(Ok(ws)) => ws,
        Ok(Err(e)) => {
            Counters::inc(&a.counters.ws_handshake_failed);
            tracing::debug!(remote = %flow.remote, error = %e, "WebSocket upgrade refused");
            return;
        }
        Err(_) => {
            Counters::inc(&a.counters.ws_handshake_failed);
            tracing::debug!(remote = %flow.remote, "WebSocket upgrade timed out");
            return;
        }
    };
    let Some(rx) = opened(a, flow.remote).await else {
        return;
    };
    let inbound = &a.inbound;
    let deliver =
        |flow, data| async move { inbound.send(Inbound::Frame { flow, data }).await.is_ok() };
    if ws::run(ws, flow, deliver, rx).await == ws::WsEnd::TooBig {
        Counters::inc(&a.counters.ws_oversize);
    }
}

/// Cuts one message off the front of a TCP stream buffer (RFC 3261 §18.3).
/// `Ok(None)`: need more bytes. Errors mean the stream cannot be resynchronised.
pub fn frame(buf: &mut BytesMut, limits: &Limits) -> Result<Option<Bytes>, Error> {
    let skip = buf
        .iter()
        .take_while(|b| matches!(b, b'\r' | b'\n'))
        .count();
    let _ = buf.split_to(skip); // keepalive CRLFs between messages
    let Some(head_end) = memchr::memmem::find(buf, b"\r\n\r\n") else {
        if buf.len() > limits.max_message_size {
            return Err(Error::TooLarge(buf.len()));
        }
        return Ok(None);
    };
    let head = std::str::from_utf8(&buf[..head_end])
        .map_err(|_| Error::Malformed("Header not UTF-8".into()))?;
    let mut cl = 0usize;
    for line in head.split("\r\n").skip(1) {
        if let Some((name, value)) = line.split_once(':') {
            let name = name.trim();
            if name.eq_ignore_ascii_case("content-length") || name.eq_ignore_ascii_case("l") {
                cl = value
                    .trim()
                    .parse()
                    .map_err(|_| Error::Malformed("Invalid Content-Length".into()))?;
            }
        }
    }
    let total = head_end + 4 + cl;
    if total > limits.max_message_size {
        return Err(Error::TooLarge(total));
    }
    if buf.len() < total {
        return Ok(None);
    }
    Ok(Some(buf.split_to(total).freeze()))
}

/// A byte-stream connection (TCP or TLS): messages cut by Content-Length.
async fn run_conn<S: AsyncRead + AsyncWrite>(
    stream: S,
    flow: Flow,
    inbound: &mpsc::Sender<Inbound>,
    mut outbound: mpsc::Receiver<Bytes>,
    limits: Limits,
) {
    let (mut rd, mut wr) = tokio::io::split(stream);
    let mut buf = BytesMut::with_capacity(8192);
    'conn: loop {
        tokio::select! {
            r = rd.read_buf(&mut buf) => {
                match r {
                    Ok(0) | Err(_) => break 'conn,
                    Ok(_) => loop {
                        match frame(&mut buf, &limits) {
                            Ok(Some(data)) => {
                                if inbound.send(Inbound::Frame { flow, data }).await.is_err() {
                                    break 'conn;
                                }
                            }
                            Ok(None) => break,
                            Err(e) => {
                                let code = if matches!(e, Error::TooLarge(_)) { 513 } else { 400 };
                                if let Some(resp) = msg::raw_error_response(&buf, code, &e.to_string()) {
                                    let _ = wr.write_all(&resp).await;
                                    let _ = wr.flush().await;
                                }
                                tracing::debug!(remote = %flow.remote, error = %e, "closing TCP connection");
                                break 'conn;
                            }
                        }
                    },
                }
            }
            m = outbound.recv() => match m {
                Some(data) => {
                    // TLS buffers records: flush so the message leaves now.
                    if wr.write_all(&data).await.is_err() || wr.flush().await.is_err() {
                        break 'conn;
                    }
                }
                None => break 'conn,
            },
        }
    }
    let _ = wr.shutdown().await;
}

/// Dials `remote` (over TLS with `tls`, checking its certificate for its IP address) and
/// runs the connection.
async fn connect_out(
    remote: SocketAddr,
    inbound: mpsc::Sender<Inbound>,
    rx: mpsc::Receiver<Bytes>,
    limits: Limits,
    tls: Option<tokio_rustls::TlsConnector>,
) {
    match TcpStream::connect(remote).await {
        Ok(stream) => {
            let _ = stream.set_nodelay(true);
            if let Ok(local) = stream.local_addr() {
                let mut flow = Flow {
                    transport: Transport::Tcp,
                    local,
                    remote,
                };
                match tls {
                    None => run_conn(stream, flow, &inbound, rx, limits).await,
                    Some(tls) => {
                        let name = rustls::pki_types::ServerName::IpAddress(remote.ip().into());
                        let hs = tls.connect(name, stream);
                        match tokio::time::timeout(Duration::from_secs(10), hs).await {
                            Ok(Ok(s)) => {
                                flow.transport = Transport::Tls;
                                run_conn(s, flow, &inbound, rx, limits).await;
                            }
                            Ok(Err(e)) => {
                                tracing::warn!(%remote, error = %e, "TLS handshake to peer failed")
                            }
                            Err(_) => tracing::warn!(%remote, "TLS handshake to peer timed out"),
                        }
                    }
                }
            }
        }
        Err(e) => tracing::debug!(%remote, error = %e, "connect failed"),
    }
    let _ = inbound
        .send(Inbound::Closed {
            remote,
            admitted: false,
        })
        .await;
}

struct CoreTask {
    core: Core,
    udp: Vec<UdpSocket>,
    udp_addrs: Vec<SocketAddr>,
    inbound: mpsc::Receiver<Inbound>,
    inbound_tx: mpsc::Sender<Inbound>,
    conns: HashMap<SocketAddr, mpsc::Sender<Bytes>>,
    /// Inbound stream connections per source IP (admitted and not yet closed).
    per_source: HashMap<std::net::IpAddr, usize>,
    max_per_source: usize,
    /// Dials TLS peers that have no open connection (with `tls_dial_roots`).
    dialer: Option<tokio_rustls::TlsConnector>,
    counters: Arc<Counters>,
    limits: Limits,
    queue: usize,
    app: Option<(mpsc::Sender<AppEvent>, mpsc::Receiver<AppCommand>)>,
    bindings: broadcast::Sender<BindingEvent>,
}

enum Event {
    Udp(usize, usize, SocketAddr),
    Inbound(Inbound),
    App(AppCommand),
    Timer,
    Stop,
}

impl CoreTask {
    async fn run(mut self, mut stop: oneshot::Receiver<()>) {
        let mut buf = vec![0u8; 65_536];
        let sleep = tokio::time::sleep(std::time::Duration::from_secs(3600));
        tokio::pin!(sleep);
        let mut armed: Option<Instant> = None;
        loop {
            self.flush().await;
            let next = self.core.poll_timeout();
            if next != armed {
                if let Some(t) = next {
                    sleep.as_mut().reset(tokio::time::Instant::from_std(t));
                }
                armed = next;
            }
            let udp = &self.udp;
            let inbound = &mut self.inbound;
            let mut commands = self.app.as_mut().map(|(_, rx)| rx);
            let ev = poll_fn(|cx| {
                if Pin::new(&mut stop).poll(cx).is_ready() {
                    return Poll::Ready(Event::Stop);
                }
                // The application's commands first: they finish work already admitted
                // (answers, BYEs, forgetting dialogs). Polled after UDP, they starved
                // whenever datagrams kept arriving, the application's channels filled,
                // and new requests got 503 while retransmissions grew the input: at
                // 1,000 calls/s through the queue that collapse came within seconds.
                if let Some(rx) = commands.as_mut()
                    && let Poll::Ready(Some(c)) = rx.poll_recv(cx)
                {
                    return Poll::Ready(Event::App(c));
                }
                for (i, s) in udp.iter().enumerate() {
                    let mut rb = tokio::io::ReadBuf::new(&mut buf);
                    match s.poll_recv_from(cx, &mut rb) {
                        Poll::Ready(Ok(from)) => {
                            return Poll::Ready(Event::Udp(i, rb.filled().len(), from));
                        }
                        Poll::Ready(Err(e)) => {
                            // ICMP errors surface here on Linux; they do not stop the socket.
                            tracing::trace!(error = %e, "udp recv error");
                            cx.waker().wake_by_ref();
                        }
                        Poll::Pending => {}
                    }
                }
                if let Poll::Ready(Some(m)) = inbound.poll_recv(cx) {
                    return Poll::Ready(Event::Inbound(m));
                }
                if armed.is_some() && sleep.as_mut().poll(cx).is_ready() {
                    return Poll::Ready(Event::Timer);
                }
                Poll::Pending
            })
            .await;
            match ev {
                Event::Stop => break,
                Event::Udp(i, len, from) => {
                    let flow = Flow {
                        transport: Transport::Udp,
                        local: self.udp_addrs[i],
                        remote: from,
                    };
                    self.core.handle_input(flow, &buf[..len], Instant::now());
                }
                Event::Inbound(Inbound::Admit { ip, reply }) => self.admit(ip, reply),
                Event::Inbound(Inbound::Opened { remote, tx }) => {
                    self.conns.insert(remote, tx);
                }
                Event::Inbound(Inbound::Closed { remote, admitted }) => {
                    self.conns.remove(&remote);
                    self.core.connection_closed(remote);
                    if admitted {
                        self.release(remote.ip());
                    }
                }
                Event::Inbound(Inbound::Frame { flow, data }) => {
                    self.core.handle_input(flow, &data, Instant::now());
                }
                Event::Timer => {
                    armed = None;
                    self.core.handle_timeout(Instant::now());
                }
                Event::App(c) => self.command(c),
            }
            while let Some(ip) = self.core.poll_blocked() {
                // Dropping a connection's sender ends its task, which closes it.
                let before = self.conns.len();
                self.conns.retain(|remote, _| remote.ip() != ip);
                let closed = before - self.conns.len();
                if closed > 0 {
                    tracing::info!(source = %ip, closed, "blocked source: its connections closed");
                }
            }
            self.deliver_app_events();
            while let Some(ev) = self.core.poll_binding_event() {
                // No subscriber (no call waiting for a phone) is the usual case.
                let _ = self.bindings.send(ev);
            }
        }
    }

    /// Decides whether a just-accepted connection from `ip` may stay.
    fn admit(&mut self, ip: std::net::IpAddr, reply: oneshot::Sender<bool>) {
        let now = Instant::now();
        let held = self.per_source.get(&ip).copied().unwrap_or(0);
        let why = if self.core.is_blocked(ip, now) {
            Some("blocked by the guard")
        } else if held >= self.max_per_source && !self.core.is_trusted(ip) {
            Some("too many connections from this source")
        } else {
            None
        };
        if let Some(why) = why {
            Counters::inc(&self.counters.refused_at_accept);
            tracing::debug!(source = %ip, why, "stream connection refused at accept");
            let _ = reply.send(false);
            return;
        }
        *self.per_source.entry(ip).or_insert(0) += 1;
        if reply.send(true).is_err() {
            self.release(ip); // the accept loop is gone
        }
    }

    fn release(&mut self, ip: std::net::IpAddr) {
        if let Some(n) = self.per_source.get_mut(&ip) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                self.per_source.remove(&ip);
            }
        }
    }

    fn command(&mut self, c: AppCommand) {
        let now = Instant::now();
        match c {
            AppCommand::Respond(tx, resp) => {
                if let Err(e) = self.core.respond(tx, *resp, now) {
                    tracing::debug!(error = %e, "application response not sent");
                }
            }
            AppCommand::SendRequest(req, dest, reply) => {
                let _ = reply.send(self.core.send_request(*req, dest, now));
            }
            AppCommand::SendStateless(req, dest) => self.core.send_stateless(*req, dest),
            AppCommand::Cancel(tx) => self.core.cancel(tx, now),
            AppCommand::Forget(call_id) => self.core.forget_dialog(&call_id),
            AppCommand::Contact(aor, reply) => {
                let _ = reply.send(self.core.contact_for(&aor, now));
            }
            AppCommand::Contacts(aor, reply) => {
                let _ = reply.send(self.core.contacts_for(&aor, now));
            }
            AppCommand::FlowFor(t, reply) => {
                let _ = reply.send(self.core.flow_for(t));
            }
            AppCommand::Dialogs(reply) => {
                let _ = reply.send(self.core.app_dialogs());
            }
            AppCommand::SetNumbers(numbers, reply) => {
                self.core.set_numbers(numbers);
                let _ = reply.send(());
            }
            AppCommand::Draining(on, reply) => {
                self.core.set_draining(on);
                let _ = reply.send(());
            }
        }
    }

    /// Hands the core's application events on. A full (or closed) channel refuses new
    /// requests with 503 rather than letting them wait unanswered.
    fn deliver_app_events(&mut self) {
        let now = Instant::now();
        while let Some(ev) = self.core.poll_app_event() {
            let Some((tx, _)) = &self.app else {
                // No application: refuse what was meant for one.
                if let AppEvent::Request { tx, .. } = ev {
                    let _ =
                        self.core
                            .respond(tx, AppResponse::new(503, "Service Unavailable"), now);
                }
                continue;
            };
            if let Err(e) = tx.try_send(ev) {
                let ev = e.into_inner();
                tracing::warn!(?ev, "application not keeping up; event dropped");
                if let AppEvent::Request { tx, request, .. } = ev {
                    if request.method == msg::Method::Invite
                        && let Some(c) = msg::call_id(&request.headers)
                    {
                        self.core.forget_dialog(c);
                    }
                    let resp =
                        AppResponse::new(503, "Service Unavailable").header("Retry-After: 5");
                    let _ = self.core.respond(tx, resp, now);
                }
            }
        }
    }

    async fn flush(&mut self) {
        while let Some(t) = self.core.poll_transmit() {
            self.transmit(t).await;
        }
    }

    async fn transmit(&mut self, t: Transmit) {
        match t.flow.transport {
            Transport::Udp => {
                let idx = self
                    .udp_addrs
                    .iter()
                    .position(|a| *a == t.flow.local)
                    .or_else(|| {
                        self.udp_addrs
                            .iter()
                            .position(|a| a.is_ipv4() == t.flow.remote.is_ipv4())
                    });
                let Some(sock) = idx.and_then(|i| self.udp.get(i)) else {
                    return;
                };
                match sock.try_send_to(&t.data, t.flow.remote) {
                    Ok(_) => {}
                    Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                        let _ = sock.send_to(&t.data, t.flow.remote).await;
                    }
                    Err(e) => {
                        tracing::debug!(remote = %t.flow.remote, error = %e, "udp send failed")
                    }
                }
            }
            Transport::Tcp => {
                let remote = t.flow.remote;
                if let Some(tx) = self.conns.get(&remote) {
                    if tx.try_send(t.data).is_err() {
                        // Full or closed: the peer is not reading; give up on the flow.
                        self.conns.remove(&remote);
                    }
                    return;
                }
                let (tx, rx) = mpsc::channel(self.queue);
                let _ = tx.try_send(t.data);
                self.conns.insert(remote, tx);
                tokio::spawn(connect_out(
                    remote,
                    self.inbound_tx.clone(),
                    rx,
                    self.limits,
                    None,
                ));
            }
            // A TLS peer without a connection is dialled when roots are configured.
            Transport::Tls if self.dialer.is_some() && !self.conns.contains_key(&t.flow.remote) => {
                let remote = t.flow.remote;
                let (tx, rx) = mpsc::channel(self.queue);
                let _ = tx.try_send(t.data);
                self.conns.insert(remote, tx);
                tokio::spawn(connect_out(
                    remote,
                    self.inbound_tx.clone(),
                    rx,
                    self.limits,
                    self.dialer.clone(),
                ));
            }
            // Hotline does not dial WebSocket flows (nor TLS ones without roots): they
            // exist while the peer (a registered phone or browser) keeps its connection.
            Transport::Tls | Transport::Ws | Transport::Wss => {
                let remote = t.flow.remote;
                match self.conns.get(&remote) {
                    Some(tx) => {
                        if tx.try_send(t.data).is_err() {
                            self.conns.remove(&remote);
                        }
                    }
                    None => {
                        Counters::inc(&self.counters.no_flow);
                        tracing::debug!(%remote, transport = t.flow.transport.via_token(), "no open connection; message dropped");
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tcp_framing_by_content_length() {
        let limits = Limits::default();
        let mut b = BytesMut::from(
            &b"\r\n\r\nOPTIONS sip:x SIP/2.0\r\nContent-Length: 3\r\n\r\nabcINVITE sip:y SIP/2.0\r\nl: 2\r\n\r\nx"[..],
        );
        let first = frame(&mut b, &limits).unwrap().unwrap();
        assert!(first.starts_with(b"OPTIONS"));
        assert!(first.ends_with(b"abc"));
        // Second message is incomplete (1 of 2 body bytes).
        assert_eq!(frame(&mut b, &limits).unwrap(), None);
        b.extend_from_slice(b"y");
        let second = frame(&mut b, &limits).unwrap().unwrap();
        assert!(second.ends_with(b"\r\n\r\nxy"));
        assert!(b.is_empty());
    }

    #[test]
    fn tcp_framing_enforces_limits() {
        let limits = Limits {
            max_message_size: 100,
            max_headers: 10,
        };
        let mut huge =
            BytesMut::from(&b"OPTIONS sip:x SIP/2.0\r\nContent-Length: 1000\r\n\r\n"[..]);
        assert!(matches!(frame(&mut huge, &limits), Err(Error::TooLarge(_))));
        let mut endless = BytesMut::from(&vec![b'a'; 101][..]);
        assert!(matches!(
            frame(&mut endless, &limits),
            Err(Error::TooLarge(_))
        ));
        let mut bad = BytesMut::from(&b"OPTIONS sip:x SIP/2.0\r\nContent-Length: -1\r\n\r\n"[..]);
        assert!(matches!(frame(&mut bad, &limits), Err(Error::Malformed(_))));
    }
}

#[cfg(test)]
mod live_tests {
    use super::*;
    use crate::proxy::CoreConfig;

    fn cfg() -> ServerConfig {
        ServerConfig {
            udp: vec!["127.0.0.1:0".parse().unwrap()],
            tcp: vec!["127.0.0.1:0".parse().unwrap()],
            core: CoreConfig::default(),
            tcp_queue: 16,
            max_connections: 8,
            ..ServerConfig::default()
        }
    }

    fn options(port: u16, transport: &str) -> String {
        format!(
            "OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/{transport} 127.0.0.1:9;branch=z9hG4bK-live-{transport};rport\r\nFrom: <sip:t@127.0.0.1>;tag=1\r\nTo: <sip:127.0.0.1>\r\nCall-ID: live\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n"
        )
    }

    #[tokio::test]
    async fn answers_options_over_udp_and_tcp() {
        let server = Server::start(cfg()).await.unwrap();
        let u = server.udp_addrs()[0];
        let sock = UdpSocket::bind("127.0.0.1:0").await.unwrap();
        sock.send_to(options(u.port(), "UDP").as_bytes(), u)
            .await
            .unwrap();
        let mut buf = [0u8; 4096];
        let (n, _) =
            tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
        assert!(buf[..n].starts_with(b"SIP/2.0 200 OK\r\n"));

        let t = server.tcp_addrs()[0];
        let mut stream = TcpStream::connect(t).await.unwrap();
        stream
            .write_all(options(t.port(), "TCP").as_bytes())
            .await
            .unwrap();
        let mut got = BytesMut::new();
        let resp = tokio::time::timeout(std::time::Duration::from_secs(5), async {
            loop {
                stream.read_buf(&mut got).await.unwrap();
                if let Some(m) = frame(&mut got, &Limits::default()).unwrap() {
                    return m;
                }
            }
        })
        .await
        .unwrap();
        assert!(resp.starts_with(b"SIP/2.0 200 OK\r\n"));
        server.shutdown().await;
    }
}

#[cfg(test)]
mod ipv6_tests {
    use super::*;
    use crate::proxy::CoreConfig;

    /// IPv6 listen address: REGISTER and OPTIONS over [::1]. A host without an IPv6
    /// loopback fails this test rather than skipping it silently.
    #[tokio::test]
    async fn serves_over_ipv6_loopback() {
        let sock = UdpSocket::bind("[::1]:0")
            .await
            .expect("this test needs an IPv6 loopback ([::1])");
        let server = Server::start(ServerConfig {
            udp: vec!["[::1]:0".parse().unwrap(), "127.0.0.1:0".parse().unwrap()],
            tcp: vec![],
            core: CoreConfig {
                trusted: vec!["::1".parse().unwrap()],
                ..CoreConfig::default()
            },
            tcp_queue: 16,
            max_connections: 8,
            ..ServerConfig::default()
        })
        .await
        .unwrap();
        let addr = server.udp_addrs()[0];
        assert!(addr.is_ipv6());
        let me = sock.local_addr().unwrap();
        let reg = format!(
            "REGISTER sip:[::1]:{} SIP/2.0\r\nVia: SIP/2.0/UDP [::1]:{};branch=z9hG4bK-v6;rport\r\nFrom: <sip:six@[::1]>;tag=1\r\nTo: <sip:six@[::1]>\r\nCall-ID: v6\r\nCSeq: 1 REGISTER\r\nContact: <sip:six@[::1]:{}>\r\nContent-Length: 0\r\n\r\n",
            addr.port(),
            me.port(),
            me.port()
        );
        sock.send_to(reg.as_bytes(), addr).await.unwrap();
        let mut buf = [0u8; 4096];
        let (n, from) =
            tokio::time::timeout(std::time::Duration::from_secs(5), sock.recv_from(&mut buf))
                .await
                .unwrap()
                .unwrap();
        assert_eq!(from, addr);
        let text = String::from_utf8_lossy(&buf[..n]);
        assert!(text.starts_with("SIP/2.0 200 OK\r\n"), "{text}");
        assert!(
            text.contains(&format!(
                "Contact: <sip:six@[::1]:{}>;expires=3600",
                me.port()
            )),
            "{text}"
        );
        server.shutdown().await;
    }
}
